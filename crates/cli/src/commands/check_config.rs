//! `tollgate check-config`: validate `TOLLGATE_POLICY` offline with the Worker's own parser, so
//! what passes here is what the deployed Worker accepts.

use std::io;
use std::path::Path;

use serde_json::json;
use tollgate::Policy;

use crate::cli::CheckConfigArgs;
use crate::error::CliError;
use crate::exit::Exit;

use super::{emit, emit_json, Context};

/// How the file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A `wrangler.toml`; the policy is `[vars] TOLLGATE_POLICY` (a table or a JSON string).
    WranglerToml,
    /// The policy itself, as JSON.
    Json,
}

impl Format {
    /// `.json` files are policies; everything else is read as a `wrangler.toml`.
    pub fn of(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::WranglerToml,
        }
    }
}

pub fn run(ctx: &Context, args: &CheckConfigArgs) -> Result<Exit, CliError> {
    let path = &args.path;
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Config(format!("cannot read {shown}: {}", describe_read_error(&e))))?;
    let parsed = match Format::of(path) {
        Format::Json => Policy::parse_json(&text),
        Format::WranglerToml => Policy::parse_wrangler_toml(&text),
    };
    match parsed {
        Ok(policy) => {
            let (tiers, routes, classes) = (policy.tiers.len(), policy.routes.len(), policy.cache_classes.len());
            if ctx.json() {
                emit_json(&json!({
                    "ok": true, "path": shown, "tiers": tiers, "routes": routes, "cache_classes": classes,
                }))?;
            } else {
                emit(&format!("ok: policy valid ({tiers} tiers, {routes} routes, {classes} cache classes)\n"))?;
            }
            Ok(Exit::Ok)
        }
        Err(e) => {
            if ctx.json() {
                emit_json(&json!({
                    "ok": false, "path": shown, "error": e.to_string(), "field": e.path, "message": e.message,
                }))?;
            }
            Err(CliError::Config(format!("{shown}: {e}")))
        }
    }
}

fn describe_read_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        io::ErrorKind::IsADirectory => "is a directory".to_owned(),
        io::ErrorKind::InvalidData => "not UTF-8 text".to_owned(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_files_are_policies_and_the_rest_wrangler_toml() {
        assert_eq!(Format::of(Path::new("policy.json")), Format::Json);
        assert_eq!(Format::of(Path::new("POLICY.JSON")), Format::Json);
        assert_eq!(Format::of(Path::new("wrangler.toml")), Format::WranglerToml);
        assert_eq!(Format::of(Path::new("config")), Format::WranglerToml);
    }

    #[test]
    fn read_errors_are_short() {
        assert_eq!(describe_read_error(&io::Error::from(io::ErrorKind::NotFound)), "no such file");
    }
}
