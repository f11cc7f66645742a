//! Entry point: parse flags/env, run the server until SIGINT/SIGTERM.
#![forbid(unsafe_code)]

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    use clap::Parser;
    use std::process::ExitCode;

    let config = redis_rest::Config::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("redis-rest: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listen = config.listen;
    match runtime.block_on(redis_rest::serve(config, redis_rest::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redis-rest: cannot serve on {listen}: {e}");
            ExitCode::FAILURE
        }
    }
}
