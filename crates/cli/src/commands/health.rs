//! `tollgate health`: is the Worker up, how does it reach Redis, what policy and build it runs.

use crate::api::Health;
use crate::client::{check_status, Method, ADMIN_PREFIX};
use crate::error::CliError;
use crate::exit::Exit;
use crate::style::Style;

use super::{emit, emit_json, note, Context};

pub fn run(ctx: &Context) -> Result<Exit, CliError> {
    let client = ctx.client()?;
    let path = format!("{ADMIN_PREFIX}/health");
    let (status, body) = client.call(Method::Get, &path, None)?;
    // A degraded Worker may answer with an error status and still describe itself.
    if status == 401 || body.get("status").and_then(|s| s.as_str()).is_none() {
        check_status(status, &body)?;
    }
    let health: Health =
        serde_json::from_value(body.clone()).map_err(|e| CliError::BadReply { path, reason: e.to_string() })?;
    if ctx.json() {
        emit_json(&body)?;
    } else {
        emit(&render(&health, ctx.style))?;
        if !client.has_token() {
            note(
                "note: only the public status is shown; \
                 set TOLLGATE_ADMIN_TOKEN or pass --token for details",
            );
        }
    }
    Ok(if health.status == "ok" { Exit::Ok } else { Exit::Failed })
}

/// The health report, one `label  value` line per part the reply has.
pub fn render(health: &Health, style: Style) -> String {
    let mut lines = vec![("status", status_word(&health.status, style))];
    if let Some(mode) = &health.mode {
        let painted = match mode.as_str() {
            "redis" => style.good(mode),
            "memory" => style.warn(mode),
            _ => style.bad(mode),
        };
        lines.push(("mode", painted));
    }
    if let Some(redis) = &health.redis {
        let mut parts = Vec::new();
        if !redis.configured {
            parts.push(style.warn("not configured"));
        } else if redis.reachable {
            parts.push(style.good("reachable"));
        } else {
            parts.push(style.bad("unreachable"));
        }
        if let Some(ms) = redis.latency_ms {
            parts.push(format!("latency {}", latency(ms)));
        }
        if let Some(breaker) = &redis.breaker {
            let painted = if breaker == "closed" { breaker.clone() } else { style.warn(breaker) };
            parts.push(format!("breaker {painted}"));
        }
        if let Some(reason) = redis.reason.as_deref().filter(|r| !r.is_empty()) {
            parts.push(reason.to_owned());
        }
        lines.push(("redis", parts.join(", ")));
    }
    if let Some(policy) = &health.policy {
        let mut text = policy.version.clone().unwrap_or_else(|| "-".to_owned());
        text.push_str(&format!(
            " ({} tiers: {}; {} routes: {})",
            policy.tiers.len(),
            list(&policy.tiers),
            policy.routes.len(),
            list(&policy.routes)
        ));
        lines.push(("policy", text));
    }
    if let Some(build) = &health.build {
        let name = build.name.as_deref().unwrap_or("tollgate");
        let version = build.version.as_deref().unwrap_or("?");
        lines.push(("build", format!("{name} {version}")));
    }
    let mut out = String::new();
    for (label, value) in lines {
        out.push_str(&format!("{}  {value}\n", style.bold(&format!("{label:<7}"))));
    }
    out
}

fn status_word(status: &str, style: Style) -> String {
    match status {
        "ok" => style.good(status),
        "degraded" => style.warn(status),
        "" => style.bad("unknown"),
        _ => style.bad(status),
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_owned()
    } else {
        items.join(", ")
    }
}

/// `2 ms`, `0.4 ms`.
fn latency(ms: f64) -> String {
    if ms.fract() == 0.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_full_report_has_a_line_per_part() {
        let health: Health = serde_json::from_value(json!({
            "status": "ok", "mode": "redis",
            "redis": {"configured": true, "reachable": true, "latency_ms": 2, "breaker": "closed", "reason": null},
            "policy": {"version": "3f2a9c1b7d4e", "tiers": ["ANON", "BASIC", "PRO"], "routes": ["chat", "config"]},
            "build": {"name": "tollgate", "version": "0.1.0"}
        }))
        .unwrap();
        let expected = "\
status   ok
mode     redis
redis    reachable, latency 2 ms, breaker closed
policy   3f2a9c1b7d4e (3 tiers: ANON, BASIC, PRO; 2 routes: chat, config)
build    tollgate 0.1.0
";
        assert_eq!(render(&health, Style::plain()), expected);
    }

    #[test]
    fn the_public_report_is_the_status_alone() {
        let health: Health = serde_json::from_value(json!({"status": "degraded"})).unwrap();
        assert_eq!(render(&health, Style::plain()), "status   degraded\n");
    }

    #[test]
    fn memory_mode_says_why() {
        let health: Health = serde_json::from_value(json!({
            "status": "ok", "mode": "memory",
            "redis": {"configured": false, "reachable": false, "latency_ms": null, "breaker": null,
                      "reason": "UPSTASH_REDIS_REST_URL is not set"}
        }))
        .unwrap();
        let out = render(&health, Style::plain());
        assert!(out.contains("redis    not configured, UPSTASH_REDIS_REST_URL is not set\n"), "{out}");
    }

    #[test]
    fn latency_keeps_a_decimal_only_when_it_has_one() {
        assert_eq!(latency(2.0), "2 ms");
        assert_eq!(latency(0.42), "0.4 ms");
    }
}
