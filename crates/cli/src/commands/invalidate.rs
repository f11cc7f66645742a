//! `tollgate invalidate`: delete cache entries. One key goes at once; a pattern, a tag or a
//! namespace may take many entries with it, so those ask first.

use serde_json::{json, Value};

use crate::api::Invalidated;
use crate::cli::InvalidateArgs;
use crate::client::{Method, ADMIN_PREFIX};
use crate::confirm::confirm;
use crate::error::CliError;
use crate::exit::Exit;
use crate::progress::Spinner;

use super::{emit, emit_json, plural, Context};

/// What to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Key { route: String, key: String },
    Pattern { route: String, pattern: String },
    Tag(String),
    Namespace(String),
}

impl Target {
    /// The target the arguments name (clap has checked that exactly one is given).
    pub fn from_args(args: &InvalidateArgs) -> Result<Self, CliError> {
        let route = || args.route.clone().ok_or_else(|| CliError::Usage("--key and --pattern need --route".to_owned()));
        match (&args.key, &args.pattern, &args.tag, &args.namespace) {
            (Some(key), None, None, None) => Ok(Target::Key { route: route()?, key: key.clone() }),
            (None, Some(pattern), None, None) => Ok(Target::Pattern { route: route()?, pattern: pattern.clone() }),
            (None, None, Some(tag), None) => Ok(Target::Tag(tag.clone())),
            (None, None, None, Some(namespace)) => Ok(Target::Namespace(namespace.clone())),
            _ => Err(CliError::Usage("give exactly one of --key, --pattern, --tag, --namespace".to_owned())),
        }
    }

    /// True when the target may cover many entries.
    pub fn is_broad(&self) -> bool {
        !matches!(self, Target::Key { .. })
    }

    /// The request body of `POST /_tollgate/invalidate`.
    pub fn body(&self) -> Value {
        match self {
            Target::Key { route, key } => json!({ "route": route, "key": key }),
            Target::Pattern { route, pattern } => json!({ "route": route, "pattern": pattern }),
            Target::Tag(tag) => json!({ "tag": tag }),
            Target::Namespace(namespace) => json!({ "namespace": namespace }),
        }
    }

    /// The target in words (`tag "config"`).
    pub fn describe(&self) -> String {
        match self {
            Target::Key { route, key } => format!("key {key:?} of route {route:?}"),
            Target::Pattern { route, pattern } => {
                format!("keys matching {pattern:?} in route {route:?}")
            }
            Target::Tag(tag) => format!("tag {tag:?}"),
            Target::Namespace(namespace) => format!("namespace {namespace:?}"),
        }
    }

    /// The question asked before a broad delete.
    pub fn question(&self) -> String {
        match self {
            Target::Key { route, key } => format!("delete the cache entry {key:?} of route {route:?}"),
            Target::Pattern { route, pattern } => {
                format!("delete every cache entry of route {route:?} matching {pattern:?}")
            }
            Target::Tag(tag) => format!("delete every cache entry tagged {tag:?}"),
            Target::Namespace(namespace) => format!("delete every cache entry in namespace {namespace:?}"),
        }
    }
}

pub fn run(ctx: &Context, args: &InvalidateArgs) -> Result<Exit, CliError> {
    let client = ctx.admin()?;
    let target = Target::from_args(args)?;
    confirm(&target.question(), target.is_broad(), args.yes)?;
    let spinner = Spinner::start(&format!("invalidating {}", target.describe()));
    let path = format!("{ADMIN_PREFIX}/invalidate");
    let reply = client.send(Method::Post, &path, Some(&target.body()));
    spinner.finish();
    let reply = reply?;
    if ctx.json() {
        emit_json(&reply.body)?;
    } else {
        let done: Invalidated = reply.parse(&path)?;
        emit(&format!("deleted {} ({})\n", plural(done.deleted, "cache entry", "cache entries"), target.describe()))?;
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> InvalidateArgs {
        InvalidateArgs { key: None, pattern: None, tag: None, namespace: None, route: None, yes: false }
    }

    #[test]
    fn a_key_is_narrow_everything_else_broad() {
        let key =
            Target::from_args(&InvalidateArgs { key: Some("app".into()), route: Some("config".into()), ..args() })
                .unwrap();
        assert_eq!(key, Target::Key { route: "config".into(), key: "app".into() });
        assert!(!key.is_broad());
        assert_eq!(key.body(), json!({"route": "config", "key": "app"}));

        let tag = Target::from_args(&InvalidateArgs { tag: Some("config".into()), ..args() }).unwrap();
        assert!(tag.is_broad());
        assert_eq!(tag.body(), json!({"tag": "config"}));
        assert_eq!(tag.question(), "delete every cache entry tagged \"config\"");

        let pattern =
            Target::from_args(&InvalidateArgs { pattern: Some("ap*".into()), route: Some("config".into()), ..args() })
                .unwrap();
        assert!(pattern.is_broad());
        assert_eq!(pattern.body(), json!({"route": "config", "pattern": "ap*"}));

        let namespace = Target::from_args(&InvalidateArgs { namespace: Some("rag".into()), ..args() }).unwrap();
        assert_eq!(namespace.body(), json!({"namespace": "rag"}));
    }

    #[test]
    fn no_target_or_a_key_without_route_is_a_usage_error() {
        assert!(matches!(Target::from_args(&args()), Err(CliError::Usage(_))));
        let no_route = InvalidateArgs { key: Some("app".into()), ..args() };
        assert!(matches!(Target::from_args(&no_route), Err(CliError::Usage(_))));
    }
}
