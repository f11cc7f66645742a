//! The command line: global options, subcommands and their arguments, with value parsers that
//! reject bad input before anything is sent.

use std::num::{NonZeroU32, NonZeroU64};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use tollgate::policy::raw::parse_duration_ms;
use tollgate::policy::Algorithm;

use crate::client::DEFAULT_URL;

/// Help heading of the options every command takes.
const GLOBAL: &str = "Global options";

/// Operate a Tollgate Worker: health, stats, cache and API keys.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, propagate_version = true, max_term_width = 100)]
#[command(after_help = "Exit codes: 0 ok, 1 failed or unhealthy, 2 usage or config error, 3 unauthorized (401), \
                        4 Worker unreachable.")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Base URL of the Worker.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "TOLLGATE_URL",
        default_value = DEFAULT_URL,
        value_name = "URL"
    )]
    pub url: String,

    /// Admin API bearer token.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        env = "TOLLGATE_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,

    /// Give up on one admin call after this long (e.g. 500ms, 10s).
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL,
        default_value = "10s",
        value_name = "DURATION",
        value_parser = parse_positive_duration
    )]
    pub timeout: Duration,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Status, mode, Redis latency, breaker, policy version and build; exit 1 unless ok.
    Health,
    /// Requests, limits and cache outcomes per route and tier, with totals and Redis use.
    Stats,
    /// A line per interval with requests/s, allowed vs denied, hit rate and Redis latency.
    Monitor(MonitorArgs),
    /// Delete cache entries by key, pattern, tag or namespace.
    Invalidate(InvalidateArgs),
    /// Fill cache entries ahead of traffic (default: every configured hot key).
    Warm(WarmArgs),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Show, override and reset a caller's limits.
    #[command(subcommand)]
    Limits(LimitsCommand),
    /// Validate TOLLGATE_POLICY offline, with the Worker's own parser.
    CheckConfig(CheckConfigArgs),
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Stop after this many samples (default: until Ctrl-C).
    #[arg(long, value_name = "N", conflicts_with = "events")]
    pub count: Option<NonZeroU64>,

    /// Time between samples.
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub interval: Duration,

    /// Show Tollgate's events live instead (invalidations, quota warnings), one line each.
    #[arg(long)]
    pub events: bool,

    /// With --events: only these channels, comma-separated (invalidation, quota_warning).
    #[arg(long, requires = "events", value_name = "LIST", value_parser = non_empty)]
    pub channels: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["key", "pattern", "tag", "namespace"])))]
pub struct InvalidateArgs {
    /// One entry of --route, by its key (e.g. `app` for /api/config/app).
    #[arg(long, requires = "route", value_name = "KEY", value_parser = non_empty)]
    pub key: Option<String>,

    /// Every entry of --route whose key matches this glob (e.g. `ap*`).
    #[arg(long, requires = "route", value_name = "GLOB", value_parser = non_empty)]
    pub pattern: Option<String>,

    /// Every entry carrying this tag.
    #[arg(long, conflicts_with = "route", value_name = "TAG", value_parser = non_empty)]
    pub tag: Option<String>,

    /// Every entry of this cache namespace (a route's name).
    #[arg(long, conflicts_with = "route", value_name = "NAME", value_parser = non_empty)]
    pub namespace: Option<String>,

    /// The route the key or pattern belongs to.
    #[arg(long, value_name = "ROUTE", value_parser = non_empty)]
    pub route: Option<String>,

    /// Do not ask before a broad delete (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct WarmArgs {
    /// Only this route's hot keys.
    #[arg(long, value_name = "ROUTE", value_parser = non_empty)]
    pub route: Option<String>,

    /// These keys of --route instead of the configured ones (repeatable).
    #[arg(long = "key", requires = "route", value_name = "KEY", value_parser = non_empty)]
    pub keys: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key; it is printed once and never shown again.
    Create(KeysCreateArgs),
    /// List API keys (never the keys themselves).
    List,
    /// Revoke an API key by its id.
    Revoke {
        /// The key's id (from `keys list`).
        #[arg(value_name = "ID", value_parser = non_empty)]
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct KeysCreateArgs {
    /// Who the key belongs to (a user or service id).
    #[arg(long, value_name = "SUBJECT", value_parser = non_empty)]
    pub subject: String,

    /// The tier the key's caller gets (e.g. PRO).
    #[arg(long, value_name = "TIER", value_parser = parse_tier)]
    pub tier: String,

    /// A label to recognise the key by in `keys list`.
    #[arg(long, value_name = "NAME", value_parser = non_empty)]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum LimitsCommand {
    /// A subject's limits and what remains of them (nothing is consumed).
    Show {
        /// `user_123` (key subject or JWT sub) or `ip:<address>` for an anonymous caller.
        #[arg(value_name = "SUBJECT", value_parser = non_empty)]
        subject: String,
        /// View the subject as if it were in this tier.
        #[arg(long, value_name = "TIER", value_parser = parse_tier)]
        tier: Option<String>,
    },
    /// Remove a subject's counters and override.
    Reset {
        /// The subject whose counters and override go.
        #[arg(value_name = "SUBJECT", value_parser = non_empty)]
        subject: String,
    },
    /// Give a subject another tier, or its own limit.
    Override(OverrideArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).args(["tier", "limit"])))]
pub struct OverrideArgs {
    /// The subject to override.
    #[arg(value_name = "SUBJECT", value_parser = non_empty)]
    pub subject: String,

    /// Put the subject in this tier.
    #[arg(long, value_name = "TIER", value_parser = parse_tier)]
    pub tier: Option<String>,

    /// Allow this many requests per --window.
    #[arg(long, requires = "window", value_name = "N", value_parser = parse_limit)]
    pub limit: Option<NonZeroU32>,

    /// The window of --limit (e.g. 1m, 1h, 1d).
    #[arg(long, requires = "limit", value_name = "DURATION", value_parser = parse_window)]
    pub window: Option<Window>,

    /// The algorithm of --limit: sliding_window, fixed_window, token_bucket or gcra.
    #[arg(long, requires = "limit", value_name = "NAME", value_parser = parse_algorithm)]
    pub algorithm: Option<Algorithm>,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// A wrangler.toml, or a .json policy file.
    #[arg(value_name = "PATH", default_value = "wrangler.toml")]
    pub path: PathBuf,
}

/// A limit window as written (`1h`) and in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub text: String,
    pub ms: NonZeroU64,
}

/// A duration in the policy's syntax (`150ms`, `30s`, `15m`, `1h`, `1d`) that is not zero.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    parse_window(text).map(|w| Duration::from_millis(w.ms.get()))
}

/// A limit window in the policy's syntax; the same parser the Worker uses.
pub fn parse_window(text: &str) -> Result<Window, String> {
    let ms = parse_duration_ms(text)
        .ok_or_else(|| format!("expected a whole number and a unit (ms, s, m, h, d), like 30s or 1h; got {text:?}"))?;
    let ms = NonZeroU64::new(ms).ok_or_else(|| "must be greater than 0".to_owned())?;
    Ok(Window { text: text.to_owned(), ms })
}

/// A request limit: a whole number greater than 0.
pub fn parse_limit(text: &str) -> Result<NonZeroU32, String> {
    let n: u32 = text.parse().map_err(|_| format!("expected a whole number up to {}; got {text:?}", u32::MAX))?;
    NonZeroU32::new(n).ok_or_else(|| "must be greater than 0".to_owned())
}

/// A limit algorithm by its policy name.
pub fn parse_algorithm(text: &str) -> Result<Algorithm, String> {
    Algorithm::parse(text)
        .ok_or_else(|| format!("unknown algorithm {text:?}: use sliding_window, fixed_window, token_bucket or gcra"))
}

/// A tier name, upper-cased (`pro` → `PRO`); tiers are `[A-Z][A-Z0-9_]*`.
pub fn parse_tier(text: &str) -> Result<String, String> {
    let tier = text.trim().to_ascii_uppercase();
    let mut chars = tier.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(tier)
    } else {
        Err(format!("invalid tier {text:?}: tier names are letters, digits and _ (e.g. PRO)"))
    }
}

/// Any text but the empty string.
pub fn non_empty(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tollgate").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn windows_use_the_policy_syntax() {
        assert_eq!(parse_window("1h").unwrap().ms.get(), 3_600_000);
        assert_eq!(parse_window("150ms").unwrap().ms.get(), 150);
        assert_eq!(parse_window("1h").unwrap().text, "1h");
        for bad in ["", "60", "1 h", "1.5h", "-1s", "1hr"] {
            assert!(parse_window(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_window("0s").unwrap_err(), "must be greater than 0");
        assert_eq!(parse_positive_duration("2s").unwrap(), Duration::from_secs(2));
    }

    #[test]
    fn limits_are_positive_whole_numbers() {
        assert_eq!(parse_limit("5000").unwrap().get(), 5000);
        assert!(parse_limit("0").is_err());
        assert!(parse_limit("-1").is_err());
        assert!(parse_limit("1e3").is_err());
    }

    #[test]
    fn tiers_are_upper_cased_and_checked() {
        assert_eq!(parse_tier("pro").unwrap(), "PRO");
        assert_eq!(parse_tier("TEAM_2").unwrap(), "TEAM_2");
        assert!(parse_tier("").is_err());
        assert!(parse_tier("2PRO").is_err());
        assert!(parse_tier("pro plus").is_err());
    }

    #[test]
    fn algorithms_are_the_policy_names() {
        assert_eq!(parse_algorithm("gcra").unwrap(), Algorithm::Gcra);
        assert!(parse_algorithm("leaky").is_err());
    }

    #[test]
    fn invalidate_takes_exactly_one_target() {
        assert!(parse(&["invalidate", "--key", "app", "--route", "config"]).is_ok());
        assert!(parse(&["invalidate", "--tag", "config", "--yes"]).is_ok());
        let none = parse(&["invalidate"]).unwrap_err();
        assert_eq!(none.kind(), ErrorKind::MissingRequiredArgument);
        let two = parse(&["invalidate", "--tag", "a", "--namespace", "b"]).unwrap_err();
        assert_eq!(two.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn keys_and_patterns_need_their_route_and_tags_take_none() {
        let no_route = parse(&["invalidate", "--key", "app"]).unwrap_err();
        assert_eq!(no_route.kind(), ErrorKind::MissingRequiredArgument);
        let tag_route = parse(&["invalidate", "--tag", "t", "--route", "config"]).unwrap_err();
        assert_eq!(tag_route.kind(), ErrorKind::ArgumentConflict);
    }

    #[test]
    fn an_override_is_a_tier_or_a_limit_with_its_window() {
        assert!(parse(&["limits", "override", "u", "--tier", "pro"]).is_ok());
        let limit = ["limits", "override", "u", "--limit", "5000", "--window", "1h", "--algorithm", "gcra"];
        assert!(parse(&limit).is_ok());
        assert!(parse(&["limits", "override", "u"]).is_err());
        assert!(parse(&["limits", "override", "u", "--limit", "5"]).is_err());
        assert!(parse(&["limits", "override", "u", "--tier", "PRO", "--limit", "5", "--window", "1m"]).is_err());
        assert!(parse(&["limits", "override", "u", "--limit", "0", "--window", "1m"]).is_err());
    }

    #[test]
    fn usage_errors_exit_with_2() {
        let err = parse(&["no-such-command"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = parse(&["monitor", "--count", "0"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn check_config_defaults_to_wrangler_toml() {
        match parse(&["check-config"]).unwrap().command {
            Command::CheckConfig(args) => assert_eq!(args.path, PathBuf::from("wrangler.toml")),
            other => panic!("{other:?}"),
        }
    }
}
