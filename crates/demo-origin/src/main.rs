//! `demo-origin`: binds a loopback address, prints the URL on stdout, serves until SIGTERM or
//! SIGINT, then shuts down gracefully.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use demo_origin::cli::{self, Command, LISTEN_ENV, USAGE};
use demo_origin::{serve, Origin};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main]
async fn main() -> ExitCode {
    let options = match cli::parse(std::env::args().skip(1), std::env::var(LISTEN_ENV).ok()) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            print_line(USAGE.trim_end());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            print_line(concat!("demo-origin ", env!("CARGO_PKG_VERSION")));
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            log(&format!("demo-origin: {err}"));
            return ExitCode::from(2);
        }
    };
    let (mut terminate, mut interrupt) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
        (Err(err), _) | (_, Err(err)) => {
            log(&format!("demo-origin: cannot watch for signals: {err}"));
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(options.listen).await {
        Ok(listener) => listener,
        Err(err) => {
            log(&format!("demo-origin: cannot listen on {}: {err}", options.listen));
            return ExitCode::FAILURE;
        }
    };
    let bound = match listener.local_addr() {
        Ok(bound) => bound,
        Err(err) => {
            log(&format!("demo-origin: cannot read the bound address: {err}"));
            return ExitCode::FAILURE;
        }
    };
    // Scripts and tests read this line to learn the port when they asked for port 0.
    print_line(&format!("demo-origin listening on http://{bound}"));
    let behaviour = options.behaviour;
    log(&format!(
        "demo-origin: delay {} ms, fail {}",
        behaviour.delay_ms,
        behaviour.fail.map_or_else(|| "none".to_owned(), |fail| fail.as_string())
    ));
    let origin = Arc::new(Origin::new(behaviour));
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        log("demo-origin: shutting down");
    };
    match serve(listener, origin, shutdown).await {
        Ok(()) => {
            log("demo-origin: stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            log(&format!("demo-origin: {err}"));
            ExitCode::FAILURE
        }
    }
}

/// Writes a line to stdout; a closed stdout is not worth a panic.
fn print_line(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// Writes a line to stderr, ignoring a closed stderr.
fn log(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
