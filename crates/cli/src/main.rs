//! `tollgate`: the operations CLI of a Tollgate Worker (health, stats, monitor, invalidate, warm,
//! keys, limits, check-config), speaking its admin API under `/_tollgate/`.
#![forbid(unsafe_code)]

mod api;
mod cli;
mod client;
mod commands;
mod confirm;
mod error;
mod exit;
mod progress;
mod style;
mod table;
mod time;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::exit::Exit;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version print to stdout and exit 0; usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(Exit::Usage.code()));
        }
    };
    match commands::run(cli) {
        Ok(exit) => exit.into(),
        Err(e) if e.is_broken_pipe() => Exit::Ok.into(),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            e.exit().into()
        }
    }
}
