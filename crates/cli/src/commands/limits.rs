//! `tollgate limits`: what a subject is allowed and has left, overrides, and resets.

use serde_json::{json, Map, Value};
use tollgate::policy::raw::format_duration_ms;

use crate::api::{KeyInfo, KeyList, LimitState, SubjectLimits};
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
    let base = subject_path(subject);
    let with_tier = |tier: &str| format!("{base}?tier={}", encode_component(tier));
    let path = tier.map_or_else(|| base.clone(), with_tier);
    let first = client.get(&path)?;
    let first_limits: SubjectLimits = first.parse(&path)?;

    // The tiers the subject's API keys carry: the registry lists every key with its subject hash.
    let keys_path = format!("{ADMIN_PREFIX}/keys");
    let credentials = match client.get(&keys_path).and_then(|r| r.parse::<KeyList>(&keys_path)) {
        Ok(list) => {
            Credentials::Known(list.keys.into_iter().filter(|k| k.subject_hash == first_limits.subject_hash).collect())
        }
        Err(e) => Credentials::Unknown(e.to_string()),
    };

    // One view per tier to show: the tier asked for; else, without an override, each tier the
    // subject's keys carry; else what the Worker chose (the override, or its default tier).
    let mut views =
        vec![View { chosen: choice(tier, &first_limits, &credentials), body: first.body, limits: first_limits }];
    if tier.is_none() && views[0].limits.override_.as_ref().is_none_or(Value::is_null) {
        let carried = credentials.tiers();
        if !carried.is_empty() {
            views.clear();
            for t in carried {
                let path = with_tier(&t);
                let reply = client.get(&path)?;
                let limits: SubjectLimits = reply.parse(&path)?;
                views.push(View { chosen: Chosen::Credential, body: reply.body, limits });
            }
        }
    }

    if ctx.json() {
        emit_json(&json_view(&views, &credentials))?;
    } else {
        let now_ms = views[0].limits.now_ms.unwrap_or_else(time::now_ms);
        emit(&render(subject, &views, &credentials, now_ms, ctx.style))?;
    }
    Ok(Exit::Ok)
}

/// The API keys registered for a subject, when the registry could be read.
#[derive(Debug, Clone)]
pub enum Credentials {
    Known(Vec<KeyInfo>),
    Unknown(String),
}

impl Credentials {
    /// The distinct tiers the keys carry, in name order.
    fn tiers(&self) -> Vec<String> {
        let mut tiers: Vec<String> = match self {
            Credentials::Known(keys) => keys.iter().map(|k| k.tier.clone()).collect(),
            Credentials::Unknown(_) => Vec::new(),
        };
        tiers.sort();
        tiers.dedup();
        tiers
    }
}

/// Why a view shows the tier it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chosen {
    /// `--tier` asked for it.
    Asked,
    /// One of the subject's API keys carries it.
    Credential,
    /// The stored override sets it.
    Override,
    /// No key on record: the Worker's default tier for authenticated callers.
    Default,
}

fn choice(asked: Option<&str>, limits: &SubjectLimits, credentials: &Credentials) -> Chosen {
    if asked.is_some() {
        Chosen::Asked
    } else if limits.override_.as_ref().is_some_and(|o| !o.is_null()) {
        Chosen::Override
    } else if credentials.tiers().contains(&limits.tier) {
        Chosen::Credential
    } else {
        Chosen::Default
    }
}

/// The subject's limits as seen for one tier.
#[derive(Debug, Clone)]
pub struct View {
    pub chosen: Chosen,
    pub body: Value,
    pub limits: SubjectLimits,
}

/// `--json`: the Worker's answer for the first tier shown (as before), plus the tiers the keys
/// carry, a `tier` on every limit line (`null` for route limits, which hold for every tier), and,
/// when the keys carry several tiers, every tier's answer under `by_tier`.
fn json_view(views: &[View], credentials: &Credentials) -> Value {
    let mut out = views[0].body.clone();
    let tag = |body: &Value, tier: &str| -> Vec<Value> {
        body.get("limits")
            .and_then(Value::as_array)
            .map(|ls| {
                ls.iter()
                    .map(|l| {
                        let mut l = l.clone();
                        let for_tier =
                            (l.get("scope").and_then(Value::as_str) == Some("tier")).then(|| tier.to_owned());
                        if let Some(m) = l.as_object_mut() {
                            m.insert("tier".to_owned(), json!(for_tier));
                        }
                        l
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    if let Some(m) = out.as_object_mut() {
        m.insert("limits".to_owned(), json!(tag(&views[0].body, &views[0].limits.tier)));
        m.insert(
            "credential_tiers".to_owned(),
            match credentials {
                Credentials::Known(_) => json!(credentials.tiers()),
                Credentials::Unknown(_) => Value::Null,
            },
        );
        if views.len() > 1 {
            let by_tier: Map<String, Value> = views
                .iter()
                .map(|v| {
                    let mut body = v.body.clone();
                    if let Some(b) = body.as_object_mut() {
                        b.insert("limits".to_owned(), json!(tag(&v.body, &v.limits.tier)));
                    }
                    (v.limits.tier.clone(), body)
                })
                .collect();
            m.insert("by_tier".to_owned(), Value::Object(by_tier));
        }
    }
    out
}

/// The subject, the API keys on record with their tiers, the tier(s) shown, the override, a row
/// per limit with what remains, then a line per route's concurrency slots and per unit of usage
/// reservations in flight (units reserved and not yet settled; counted in the limits' usage). A tier line's scope names its tier (`tier:PRO`); route lines
/// (`route:chat`) hold whatever the tier and are shown once.
pub fn render(subject: &str, views: &[View], credentials: &Credentials, now_ms: u64, style: Style) -> String {
    let mut out = String::new();
    let label = |l: &str| style.bold(&format!("{l:<11}"));
    let Some(first) = views.first() else { return out };
    out.push_str(&format!("{}  {subject} (hash {})\n", label("subject"), short_hash(&first.limits.subject_hash)));
    let note = match first.chosen {
        Chosen::Asked => "; shown as the tier asked for with --tier",
        Chosen::Credential => "",
        Chosen::Override => "; the override decides its limits",
        Chosen::Default => {
            "; shown: the default tier (a JWT caller's tier comes from its token; --tier to view another)"
        }
    };
    out.push_str(&format!("{}  {}{note}\n", label("credentials"), describe_credentials(credentials)));
    let shown: Vec<&str> = views.iter().map(|v| v.limits.tier.as_str()).collect();
    out.push_str(&format!("{}  {}\n", label("tier"), shown.join(", ")));
    let override_text = first.limits.override_.as_ref().map_or_else(|| "none".to_owned(), describe_override);
    out.push_str(&format!("{}  {override_text}\n\n", label("override")));

    let mut rows: Vec<(String, &LimitState)> = Vec::new();
    for v in views {
        rows.extend(
            v.limits.limits.iter().filter(|l| l.scope == "tier").map(|l| (format!("tier:{}", v.limits.tier), l)),
        );
    }
    rows.extend(first.limits.limits.iter().filter(|l| l.scope != "tier").map(|l| (l.scope.clone(), l)));
    if rows.is_empty() {
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
    for (scope, l) in rows {
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
        table.row([l.id.clone(), scope, l.algorithm.clone(), l.limit.to_string(), window, remaining, reset]);
    }
    out.push_str(&table.render(style));
    for lease in &first.limits.leases {
        let held = lease.in_flight.map_or_else(|| "?".to_owned(), |n| n.to_string());
        out.push_str(&format!(
            "{}  route {}: {held} of {} in flight ({})\n",
            label("slots"),
            lease.route,
            lease.limit,
            lease.id
        ));
    }
    for r in &first.limits.reservations {
        let line = match (r.units, r.in_flight) {
            (Some(units), Some(n)) => {
                format!("{units} {} in flight ({n} reservation{})", r.unit, if n == 1 { "" } else { "s" })
            }
            _ => format!("? {} in flight", r.unit),
        };
        out.push_str(&format!("{}  {line}\n", label("reserved")));
    }
    out
}

/// `API key abc (PRO)`, `API keys abc (PRO), def (BASIC)`, `no API key on record`.
fn describe_credentials(credentials: &Credentials) -> String {
    match credentials {
        Credentials::Unknown(reason) => format!("unknown (the key registry could not be read: {reason})"),
        Credentials::Known(keys) if keys.is_empty() => "no API key on record".to_owned(),
        Credentials::Known(keys) => {
            let list: Vec<String> = keys.iter().map(|k| format!("{} ({})", k.id, k.tier)).collect();
            format!("API key{} {}", if keys.len() == 1 { "" } else { "s" }, list.join(", "))
        }
    }
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

    fn view(chosen: Chosen, value: Value) -> View {
        View { chosen, limits: serde_json::from_value(value.clone()).unwrap(), body: value }
    }

    fn key(id: &str, tier: &str) -> KeyInfo {
        KeyInfo {
            id: id.into(),
            tier: tier.into(),
            subject_hash: "9f8e7d6c5b4a39281706f5e4".into(),
            name: None,
            created_ms: None,
        }
    }

    fn answer(tier: &str, id: &str, limit: u64, remaining: u64) -> Value {
        json!({
            "subject_hash": "9f8e7d6c5b4a39281706f5e4", "tier": tier, "override": null,
            "limits": [
                {"id": id, "scope": "tier", "algorithm": "sliding_window", "limit": limit,
                 "window_ms": 3_600_000, "remaining": remaining, "reset_ms": 1_000_000 + 3_540_000},
                {"id": "route-chat-1m", "scope": "route:chat", "algorithm": "gcra", "limit": 20,
                 "window_ms": 60_000, "remaining": 20, "reset_ms": 1_000_000}
            ]
        })
    }

    #[test]
    fn limits_show_the_tier_the_key_carries_and_which_tier_each_line_is_for() {
        let views = [view(Chosen::Credential, answer("PRO", "tier-pro-1h", 1000, 997))];
        let credentials = Credentials::Known(vec![key("k1a2b3c4d5e6", "PRO")]);
        let expected = "\
subject      user_123 (hash 9f8e7d6c5b4a…)
credentials  API key k1a2b3c4d5e6 (PRO)
tier         PRO
override     none

ID             SCOPE       ALGORITHM       LIMIT  WINDOW  REMAINING  RESETS IN
tier-pro-1h    tier:PRO    sliding_window   1000      1h        997     59m 0s
route-chat-1m  route:chat  gcra               20      1m         20          -
";
        assert_eq!(render("user_123", &views, &credentials, 1_000_000, Style::plain()), expected);
    }

    #[test]
    fn concurrency_leases_in_flight_get_a_line_each() {
        let mut value = answer("PRO", "tier-pro-1h", 1000, 997);
        value["leases"] = json!([{"route": "chat", "id": "route-chat-concurrency", "in_flight": 2, "limit": 2}]);
        let views = [view(Chosen::Credential, value)];
        let credentials = Credentials::Known(vec![key("k1a2b3c4d5e6", "PRO")]);
        let out = render("user_123", &views, &credentials, 1_000_000, Style::plain());
        assert!(out.ends_with("slots        route chat: 2 of 2 in flight (route-chat-concurrency)\n"), "{out}");
    }

    #[test]
    fn usage_reservations_in_flight_get_a_line_per_unit() {
        let mut value = answer("PRO", "tier-pro-1h", 1000, 997);
        value["leases"] = json!([{"route": "chat", "id": "route-chat-concurrency", "in_flight": 1, "limit": 2}]);
        value["reservations"] = json!([
            {"unit": "tokens", "in_flight": 2, "units": 600},
            {"unit": "images", "in_flight": 1, "units": 4},
            {"unit": "bytes", "in_flight": 0, "units": 0},
            {"unit": "seconds", "in_flight": null, "units": null}
        ]);
        let views = [view(Chosen::Credential, value)];
        let credentials = Credentials::Known(vec![key("k1a2b3c4d5e6", "PRO")]);
        let out = render("user_123", &views, &credentials, 1_000_000, Style::plain());
        assert!(
            out.ends_with(
                "slots        route chat: 1 of 2 in flight (route-chat-concurrency)\n\
                 reserved     600 tokens in flight (2 reservations)\n\
                 reserved     4 images in flight (1 reservation)\n\
                 reserved     0 bytes in flight (0 reservations)\n\
                 reserved     ? seconds in flight\n"
            ),
            "{out}"
        );
    }

    #[test]
    fn keys_of_several_tiers_get_a_line_per_tier_and_the_route_lines_once() {
        let views = [
            view(Chosen::Credential, answer("BASIC", "tier-basic-1h", 100, 100)),
            view(Chosen::Credential, answer("PRO", "tier-pro-1h", 1000, 997)),
        ];
        let credentials = Credentials::Known(vec![key("k1", "PRO"), key("k2", "BASIC")]);
        let text = render("user_123", &views, &credentials, 1_000_000, Style::plain());
        assert!(text.contains("credentials  API keys k1 (PRO), k2 (BASIC)\n"), "{text}");
        assert!(text.contains("\ntier         BASIC, PRO\n"), "{text}");
        let rows: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("ID")).skip(1).collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert!(rows[0].starts_with("tier-basic-1h  tier:BASIC "), "{text}");
        assert!(rows[1].starts_with("tier-pro-1h    tier:PRO "), "{text}");
        assert!(rows[2].starts_with("route-chat-1m  route:chat "), "{text}");

        let json = json_view(&views, &credentials);
        assert_eq!(json["credential_tiers"], json!(["BASIC", "PRO"]));
        assert_eq!(json["tier"], "BASIC");
        assert_eq!(json["limits"][0]["tier"], "BASIC");
        assert_eq!(json["limits"][1]["tier"], Value::Null);
        assert_eq!(json["by_tier"]["PRO"]["limits"][0]["tier"], "PRO");
    }

    #[test]
    fn without_a_key_on_record_the_default_tier_is_named_as_such() {
        let mut value = answer("BASIC", "tier-basic-1h", 100, 100);
        value["limits"].as_array_mut().unwrap().truncate(1);
        let views = [view(Chosen::Default, value)];
        let text = render("user_9", &views, &Credentials::Known(Vec::new()), 1_000_000, Style::plain());
        assert!(text.contains("credentials  no API key on record; shown: the default tier"), "{text}");
        assert!(text.contains("\ntier         BASIC\n"), "{text}");
        assert!(text.contains("tier-basic-1h  tier:BASIC "), "{text}");
        let unknown = render("user_9", &views, &Credentials::Unknown("HTTP 503".into()), 1_000_000, Style::plain());
        assert!(
            unknown.contains("credentials  unknown (the key registry could not be read: HTTP 503); shown"),
            "{unknown}"
        );
    }

    #[test]
    fn the_view_follows_the_flag_the_override_or_the_keys() {
        let limits: SubjectLimits = serde_json::from_value(answer("PRO", "tier-pro-1h", 1000, 997)).unwrap();
        let pro = Credentials::Known(vec![key("k1", "PRO")]);
        assert_eq!(choice(Some("PRO"), &limits, &pro), Chosen::Asked);
        assert_eq!(choice(None, &limits, &pro), Chosen::Credential);
        assert_eq!(choice(None, &limits, &Credentials::Known(Vec::new())), Chosen::Default);
        let overridden: SubjectLimits = serde_json::from_value(
            json!({"subject_hash": "x", "tier": "CUSTOM", "override": {"tier": "CUSTOM"}, "limits": []}),
        )
        .unwrap();
        assert_eq!(choice(None, &overridden, &pro), Chosen::Override);
    }
}
