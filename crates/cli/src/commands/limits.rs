//! `tollgate limits`: what a subject is allowed and has left, overrides, and resets.

use serde_json::{json, Map, Value};
use tollgate::policy::raw::format_duration_ms;

use crate::api::SubjectLimits;
use crate::cli::{LimitsCommand, OverrideArgs};
use crate::client::{encode_component, Method, ADMIN_PREFIX};
use crate::error::CliError;
use crate::exit::Exit;
use crate::style::Style;
use crate::table::{Align, Table};
use crate::time;

use super::{emit, emit_json, short_hash, Context};

pub fn run(ctx: &Context, command: LimitsCommand) -> Result<Exit, CliError> {
    match command {
        LimitsCommand::Show { subject, tier } => show(ctx, &subject, tier.as_deref()),
        LimitsCommand::Reset { subject } => reset(ctx, &subject),
        LimitsCommand::Override(args) => set_override(ctx, &args),
    }
}

fn subject_path(subject: &str) -> String {
    format!("{ADMIN_PREFIX}/limits/{}", encode_component(subject))
}

fn show(ctx: &Context, subject: &str, tier: Option<&str>) -> Result<Exit, CliError> {
    let client = ctx.admin()?;
    let mut path = subject_path(subject);
    if let Some(tier) = tier {
        path.push_str(&format!("?tier={}", encode_component(tier)));
    }
    let reply = client.get(&path)?;
    if ctx.json() {
        emit_json(&reply.body)?;
    } else {
        let limits: SubjectLimits = reply.parse(&path)?;
        let now_ms = limits.now_ms.unwrap_or_else(time::now_ms);
        emit(&render(subject, &limits, now_ms, ctx.style))?;
    }
    Ok(Exit::Ok)
}

/// The subject's tier and override, and a row per limit with what remains.
pub fn render(subject: &str, limits: &SubjectLimits, now_ms: u64, style: Style) -> String {
    let mut out = String::new();
    let label = |l: &str| style.bold(&format!("{l:<8}"));
    out.push_str(&format!("{}  {subject} (hash {})\n", label("subject"), short_hash(&limits.subject_hash)));
    out.push_str(&format!("{}  {}\n", label("tier"), limits.tier));
    let override_text = limits.override_.as_ref().map_or_else(|| "none".to_owned(), describe_override);
    out.push_str(&format!("{}  {override_text}\n\n", label("override")));
    if limits.limits.is_empty() {
        out.push_str("no limits apply\n");
        return out;
    }
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("SCOPE", Align::Left),
        ("ALGORITHM", Align::Left),
        ("LIMIT", Align::Right),
        ("WINDOW", Align::Right),
        ("REMAINING", Align::Right),
        ("RESETS IN", Align::Right),
    ]);
    for l in &limits.limits {
        let remaining = match l.remaining {
            Some(0) => style.bad("0"),
            Some(n) => n.to_string(),
            None => "-".to_owned(),
        };
        let reset = match l.reset_ms {
            Some(at) if at > now_ms && l.remaining != Some(l.limit) => time::span(at - now_ms),
            _ => "-".to_owned(),
        };
        let window = if l.window_ms > 0 { format_duration_ms(l.window_ms) } else { "-".to_owned() };
        table.row([l.id.clone(), l.scope.clone(), l.algorithm.clone(), l.limit.to_string(), window, remaining, reset]);
    }
    out.push_str(&table.render(style));
    out
}

/// An override in words: `tier PRO`, `5000 per 1h (gcra)`; anything else as compact JSON.
pub fn describe_override(value: &Value) -> String {
    if value.is_null() {
        return "none".to_owned();
    }
    let mut parts = Vec::new();
    if let Some(tier) = value.get("tier").and_then(Value::as_str) {
        parts.push(format!("tier {tier}"));
    }
    if let Some(limits) = value.get("limits").and_then(Value::as_array) {
        for limit in limits {
            let n = limit.get("limit").and_then(Value::as_u64);
            let window = limit
                .get("window")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| limit.get("window_ms").and_then(Value::as_u64).map(format_duration_ms));
            match (n, window) {
                (Some(n), Some(window)) => {
                    let algorithm = ["algorithm", "alg"]
                        .iter()
                        .find_map(|k| limit.get(*k).and_then(Value::as_str))
                        .map(|a| format!(" ({a})"))
                        .unwrap_or_default();
                    parts.push(format!("{n} per {window}{algorithm}"));
                }
                _ => parts.push(limit.to_string()),
            }
        }
    }
    if parts.is_empty() {
        value.to_string()
    } else {
        parts.join(", ")
    }
}

fn reset(ctx: &Context, subject: &str) -> Result<Exit, CliError> {
    let client = ctx.admin()?;
    client.send(Method::Delete, &subject_path(subject), None)?;
    if ctx.json() {
        emit_json(&json!({ "reset": subject }))?;
    } else {
        emit(&format!("reset {subject}: counters and override removed\n"))?;
    }
    Ok(Exit::Ok)
}

/// The body of `PUT /_tollgate/limits/{subject}`.
pub fn override_body(args: &OverrideArgs) -> Result<Value, CliError> {
    match (&args.tier, args.limit, &args.window) {
        (Some(tier), None, None) => Ok(json!({ "tier": tier })),
        (None, Some(limit), Some(window)) => {
            let mut entry = Map::new();
            entry.insert("limit".to_owned(), json!(limit.get()));
            entry.insert("window".to_owned(), json!(window.text));
            if let Some(algorithm) = args.algorithm {
                entry.insert("algorithm".to_owned(), json!(algorithm.as_str()));
            }
            Ok(json!({ "limits": [Value::Object(entry)] }))
        }
        _ => Err(CliError::Usage("give --tier, or --limit with --window".to_owned())),
    }
}

fn set_override(ctx: &Context, args: &OverrideArgs) -> Result<Exit, CliError> {
    let body = override_body(args)?;
    let client = ctx.admin()?;
    let reply = client.send(Method::Put, &subject_path(&args.subject), Some(&body))?;
    if ctx.json() {
        emit_json(&reply.body)?;
    } else {
        // The reply holds the stored override (bare or under "override"); what was sent if neither.
        let stored = match reply.body.get("override") {
            Some(stored) if !stored.is_null() => stored,
            _ if reply.body.is_object() => &reply.body,
            _ => &body,
        };
        emit(&format!("override set for {}: {}\n", args.subject, describe_override(stored)))?;
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use tollgate::policy::Algorithm;

    use super::*;
    use crate::cli::parse_window;

    fn args() -> OverrideArgs {
        OverrideArgs { subject: "user_123".into(), tier: None, limit: None, window: None, algorithm: None }
    }

    #[test]
    fn an_override_body_is_a_tier_or_one_limit() {
        let tier = OverrideArgs { tier: Some("PRO".into()), ..args() };
        assert_eq!(override_body(&tier).unwrap(), json!({"tier": "PRO"}));
        let limit = OverrideArgs {
            limit: NonZeroU32::new(5000),
            window: Some(parse_window("1h").unwrap()),
            algorithm: Some(Algorithm::Gcra),
            ..args()
        };
        assert_eq!(
            override_body(&limit).unwrap(),
            json!({"limits": [{"limit": 5000, "window": "1h", "algorithm": "gcra"}]})
        );
        assert!(matches!(override_body(&args()), Err(CliError::Usage(_))));
    }

    #[test]
    fn overrides_read_as_words() {
        assert_eq!(describe_override(&json!({"tier": "PRO"})), "tier PRO");
        assert_eq!(
            describe_override(&json!({"limits": [{"limit": 5000, "window": "1h", "algorithm": "gcra"}]})),
            "5000 per 1h (gcra)"
        );
        assert_eq!(describe_override(&json!({"limits": [{"limit": 5, "window_ms": 60000}]})), "5 per 1m");
        assert_eq!(
            describe_override(&json!({"tier": "CUSTOM", "limits": [
                {"id": "override-1h", "alg": "gcra", "limit": 5000, "window_ms": 3_600_000}
            ]})),
            "tier CUSTOM, 5000 per 1h (gcra)"
        );
        assert_eq!(describe_override(&json!({"other": 1})), "{\"other\":1}");
        assert_eq!(describe_override(&Value::Null), "none");
    }

    #[test]
    fn limits_show_what_remains_and_when_it_resets() {
        let limits: SubjectLimits = serde_json::from_value(json!({
            "subject_hash": "9f8e7d6c5b4a39281706f5e4", "tier": "PRO", "override": null,
            "limits": [
                {"id": "tier-pro-1h", "scope": "tier", "algorithm": "sliding_window", "limit": 1000,
                 "window_ms": 3_600_000, "remaining": 997, "reset_ms": 1_000_000 + 3_540_000},
                {"id": "route-chat-1m", "scope": "route:chat", "algorithm": "gcra", "limit": 20,
                 "window_ms": 60_000, "remaining": 20, "reset_ms": 1_000_000}
            ]
        }))
        .unwrap();
        let expected = "\
subject   user_123 (hash 9f8e7d6c5b4a…)
tier      PRO
override  none

ID             SCOPE       ALGORITHM       LIMIT  WINDOW  REMAINING  RESETS IN
tier-pro-1h    tier        sliding_window   1000      1h        997     59m 0s
route-chat-1m  route:chat  gcra               20      1m         20          -
";
        assert_eq!(render("user_123", &limits, 1_000_000, Style::plain()), expected);
    }
}
