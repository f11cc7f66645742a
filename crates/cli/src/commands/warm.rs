//! `tollgate warm`: fill cache entries before traffic needs them, and show how each went.

use serde_json::{json, Map, Value};

use crate::api::Warmed;
use crate::cli::WarmArgs;
use crate::client::{Method, ADMIN_PREFIX};
use crate::error::CliError;
use crate::exit::Exit;
use crate::progress::Spinner;
use crate::style::Style;
use crate::table::{Align, Table};

use super::{emit, emit_json, plural, Context};

pub fn run(ctx: &Context, args: &WarmArgs) -> Result<Exit, CliError> {
    let client = ctx.admin()?;
    let path = format!("{ADMIN_PREFIX}/warm");
    let what = match (&args.route, args.keys.len()) {
        (None, _) => "warming every configured hot key".to_owned(),
        (Some(route), 0) => format!("warming the hot keys of route {route:?}"),
        (Some(route), n) => format!("warming {} of route {route:?}", plural(n as u64, "key", "keys")),
    };
    let spinner = Spinner::start(&what);
    let reply = client.send(Method::Post, &path, Some(&body(args)));
    spinner.finish();
    let reply = reply?;
    let warmed: Warmed = reply.parse(&path)?;
    if ctx.json() {
        emit_json(&reply.body)?;
    } else {
        emit(&render(&warmed, ctx.style))?;
    }
    let failed = warmed.warmed.iter().any(|w| w.status == "ERROR");
    Ok(if failed { Exit::Failed } else { Exit::Ok })
}

/// The request body: empty for everything, a route, or a route and its keys.
pub fn body(args: &WarmArgs) -> Value {
    let mut body = Map::new();
    if let Some(route) = &args.route {
        body.insert("route".to_owned(), json!(route));
    }
    if !args.keys.is_empty() {
        body.insert("keys".to_owned(), json!(args.keys));
    }
    Value::Object(body)
}

/// One row per key and a summary line.
pub fn render(warmed: &Warmed, style: Style) -> String {
    if warmed.warmed.is_empty() {
        return "nothing to warm: no hot keys are configured (cache.warm in TOLLGATE_POLICY)\n".to_owned();
    }
    let columns = [("ROUTE", Align::Left), ("KEY", Align::Left), ("STATUS", Align::Left), ("ERROR", Align::Left)];
    // The ERROR column only when some key has an error to show.
    let with_errors = warmed.warmed.iter().any(|w| w.error.as_deref().is_some_and(|e| !e.is_empty()));
    let mut table = Table::new(if with_errors { &columns } else { &columns[..3] });
    let (mut filled, mut cached, mut failed, mut other) = (0u64, 0u64, 0u64, 0u64);
    for w in &warmed.warmed {
        let status = match w.status.as_str() {
            "MISS" => {
                filled += 1;
                style.good("MISS")
            }
            "HIT" | "STALE" => {
                cached += 1;
                w.status.clone()
            }
            "ERROR" => {
                failed += 1;
                style.bad("ERROR")
            }
            _ => {
                other += 1;
                style.warn(&w.status)
            }
        };
        table.row([w.route.clone(), w.key.clone(), status, w.error.clone().unwrap_or_default()]);
    }
    let count = warmed.count.max(warmed.warmed.len() as u64);
    let mut out = table.render(style);
    out.push_str(&format!(
        "\nwarmed {}: {filled} filled from the origin, {cached} already cached, {failed} failed",
        plural(count, "key", "keys")
    ));
    if other > 0 {
        out.push_str(&format!(", {other} not cacheable"));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_says_only_what_was_asked() {
        assert_eq!(body(&WarmArgs { route: None, keys: vec![] }), json!({}));
        assert_eq!(body(&WarmArgs { route: Some("config".into()), keys: vec![] }), json!({"route": "config"}));
        assert_eq!(
            body(&WarmArgs { route: Some("config".into()), keys: vec!["app".into(), "flags".into()] }),
            json!({"route": "config", "keys": ["app", "flags"]})
        );
    }

    #[test]
    fn the_error_column_shows_only_with_errors() {
        let warmed: Warmed = serde_json::from_value(json!({"count": 1, "warmed": [
            {"route": "config", "key": "app", "status": "MISS"}
        ]}))
        .unwrap();
        let expected = "\
ROUTE   KEY  STATUS
config  app  MISS

warmed 1 key: 1 filled from the origin, 0 already cached, 0 failed
";
        assert_eq!(render(&warmed, Style::plain()), expected);
    }

    #[test]
    fn each_key_gets_a_row_and_the_summary_counts_them() {
        let warmed: Warmed = serde_json::from_value(json!({"count": 4, "warmed": [
            {"route": "config", "key": "app", "status": "MISS"},
            {"route": "config", "key": "flags", "status": "HIT"},
            {"route": "config", "key": "gone", "status": "ERROR", "error": "origin answered 404"},
            {"route": "config", "key": "raw", "status": "UNCACHEABLE"}
        ]}))
        .unwrap();
        let expected = "\
ROUTE   KEY    STATUS       ERROR
config  app    MISS
config  flags  HIT
config  gone   ERROR        origin answered 404
config  raw    UNCACHEABLE

warmed 4 keys: 1 filled from the origin, 1 already cached, 1 failed, 1 not cacheable
";
        assert_eq!(render(&warmed, Style::plain()), expected);
    }
}
