//! `tollgate stats`: counters per route and tier, totals, and what the Worker asked of Redis.

use crate::api::{Counters, Stats};
use crate::client::ADMIN_PREFIX;
use crate::error::CliError;
use crate::exit::Exit;
use crate::style::Style;
use crate::table::{Align, Table};
use crate::time;

use super::{emit, emit_json, per, percent, ratio, Context};

pub fn run(ctx: &Context) -> Result<Exit, CliError> {
    let client = ctx.admin()?;
    let path = format!("{ADMIN_PREFIX}/stats");
    let reply = client.get(&path)?;
    if ctx.json() {
        emit_json(&reply.body)?;
    } else {
        let stats: Stats = reply.parse(&path)?;
        emit(&render(&stats, ctx.style))?;
    }
    Ok(Exit::Ok)
}

/// The stats table and its footer.
pub fn render(stats: &Stats, style: Style) -> String {
    let mut table = Table::new(&[
        ("ROUTE", Align::Left),
        ("TIER", Align::Left),
        ("REQUESTS", Align::Right),
        ("ALLOWED", Align::Right),
        ("DENIED", Align::Right),
        ("HIT", Align::Right),
        ("MISS", Align::Right),
        ("STALE", Align::Right),
        ("BYPASS", Align::Right),
        ("HIT RATE", Align::Right),
        ("SHADOW", Align::Right),
        ("WARNED", Align::Right),
    ]);
    for row in &stats.routes {
        table.row(cells(&row.route, &row.tier, &row.counters, style));
    }
    let mut out = String::new();
    if table.is_empty() {
        out.push_str("no requests counted yet\n");
    } else {
        table.rule();
        table.row(cells("TOTAL", "", &stats.totals, style));
        out.push_str(&table.render(style));
    }
    out.push('\n');

    let requests = stats.totals.requests();
    let redis = &stats.redis;
    let requests_per = redis.requests_per_request.or_else(|| per(redis.requests, requests));
    let commands_per = redis.commands_per_request.or_else(|| per(redis.commands, requests));
    out.push_str(&format!(
        "{}  {} REST requests, {} commands: {} requests and {} commands per request\n",
        style.bold("redis"),
        redis.requests,
        redis.commands,
        ratio(requests_per),
        ratio(commands_per),
    ));
    if let Some(since) = stats.since_ms {
        let now = stats.now_ms.unwrap_or_else(time::now_ms);
        out.push_str(&format!(
            "{}  {} UTC ({} ago)\n",
            style.bold("since"),
            time::utc_datetime(since),
            time::span(now.saturating_sub(since))
        ));
    }
    out
}

fn cells(route: &str, tier: &str, c: &Counters, style: Style) -> Vec<String> {
    let denied = if c.denied > 0 { style.warn(&c.denied.to_string()) } else { c.denied.to_string() };
    vec![
        route.to_owned(),
        tier.to_owned(),
        c.requests().to_string(),
        c.allowed.to_string(),
        denied,
        c.hit.to_string(),
        c.miss.to_string(),
        c.stale.to_string(),
        c.bypass.to_string(),
        percent(c.hit_rate()),
        c.shadow_denied.to_string(),
        c.warned.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rows_totals_and_redis_use() {
        let stats: Stats = serde_json::from_value(json!({
            "since_ms": 1_763_770_000_000u64, "now_ms": 1_763_770_123_000u64,
            "routes": [
                {"route": "config", "tier": "ANON", "allowed": 120, "denied": 3, "hit": 100, "miss": 5,
                 "stale": 2, "bypass": 0, "hit_rate": 0.9, "shadow_denied": 4, "warned": 1},
                {"route": "-", "tier": "PRO", "allowed": 7, "denied": 0, "hit": 0, "miss": 0,
                 "stale": 0, "bypass": 0, "hit_rate": null}
            ],
            "totals": {"requests": 130, "allowed": 127, "denied": 3, "hit": 100, "miss": 5, "stale": 2,
                       "bypass": 0, "hit_rate": 0.9, "shadow_denied": 4, "warned": 1},
            "redis": {"requests": 118, "commands": 190, "requests_per_request": 0.96, "commands_per_request": 1.54}
        }))
        .unwrap();
        let expected = "\
ROUTE   TIER  REQUESTS  ALLOWED  DENIED  HIT  MISS  STALE  BYPASS  HIT RATE  SHADOW  WARNED
config  ANON       123      120       3  100     5      2       0     90.0%       4       1
-       PRO          7        7       0    0     0      0       0         -       0       0
-------------------------------------------------------------------------------------------
TOTAL              130      127       3  100     5      2       0     90.0%       4       1

redis  118 REST requests, 190 commands: 0.96 requests and 1.54 commands per request
since  2025-11-22 00:06:40 UTC (2m 3s ago)
";
        assert_eq!(render(&stats, Style::plain()), expected);
    }

    #[test]
    fn an_empty_worker_says_so_and_computes_nothing_from_zero() {
        let out = render(&Stats::default(), Style::plain());
        assert_eq!(
            out,
            "no requests counted yet\n\nredis  0 REST requests, 0 commands: - requests and - commands per request\n"
        );
    }
}
