//! One module per command; each returns the [`Exit`] it ends with or a [`CliError`].

mod check_config;
mod events;
mod health;
mod invalidate;
mod keys;
mod limits;
mod monitor;
mod stats;
mod warm;

use std::io::Write;

use serde_json::Value;

use crate::cli::{Cli, Command, Global};
use crate::client::AdminClient;
use crate::error::CliError;
use crate::exit::Exit;
use crate::style::Style;

/// What every command shares: the global options and how to print.
pub struct Context {
    global: Global,
    style: Style,
}

impl Context {
    /// A client for the configured Worker (fails on an invalid URL).
    fn client(&self) -> Result<AdminClient, CliError> {
        AdminClient::new(&self.global.url, self.global.token.clone(), self.global.timeout)
    }

    /// A client that has a token: every admin call but `health` needs one.
    fn admin(&self) -> Result<AdminClient, CliError> {
        let client = self.client()?;
        client.require_token()?;
        Ok(client)
    }

    fn json(&self) -> bool {
        self.global.json
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<Exit, CliError> {
    let ctx = Context { global: cli.global, style: Style::detect() };
    match cli.command {
        Command::Health => health::run(&ctx),
        Command::Stats => stats::run(&ctx),
        Command::Monitor(args) => monitor::run(&ctx, &args),
        Command::Invalidate(args) => invalidate::run(&ctx, &args),
        Command::Warm(args) => warm::run(&ctx, &args),
        Command::Keys(command) => keys::run(&ctx, command),
        Command::Limits(command) => limits::run(&ctx, command),
        Command::CheckConfig(args) => check_config::run(&ctx, &args),
    }
}

/// Writes `text` to stdout as is.
fn emit(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Writes `value` to stdout as indented JSON and a newline.
fn emit_json(value: &Value) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Output(e.into()))?;
    emit(&format!("{text}\n"))
}

/// Writes a note for the person at the terminal to stderr (never part of the output proper).
fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// `1 entry` / `3 entries`.
fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A share as a percentage with one decimal (`90.0%`), `-` when unknown.
fn percent(share: Option<f64>) -> String {
    share.filter(|s| s.is_finite()).map_or_else(|| "-".to_owned(), |s| format!("{:.1}%", s * 100.0))
}

/// A ratio with two decimals, `-` when unknown.
fn ratio(value: Option<f64>) -> String {
    value.filter(|v| v.is_finite()).map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

/// `a / b`, or `None` when `b` is zero.
fn per(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// A subject hash shortened for tables (`9f8e7d6c5b4a…`).
fn short_hash(hash: &str) -> String {
    if hash.chars().count() > 12 {
        format!("{}…", hash.chars().take(12).collect::<String>())
    } else {
        hash.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_format_for_people() {
        assert_eq!(plural(1, "entry", "entries"), "1 entry");
        assert_eq!(plural(0, "entry", "entries"), "0 entries");
        assert_eq!(percent(Some(0.9)), "90.0%");
        assert_eq!(percent(None), "-");
        assert_eq!(percent(Some(f64::NAN)), "-");
        assert_eq!(ratio(Some(1.544)), "1.54");
        assert_eq!(per(3, 0), None);
        assert_eq!(per(3, 2), Some(1.5));
        assert_eq!(short_hash("0123456789abcdef"), "0123456789ab…");
        assert_eq!(short_hash("abc"), "abc");
    }
}
