//! `tollgate monitor`: like `redis-cli --stat`, one line per interval with what changed since the
//! last one. Lines are appended, never redrawn, so it works in a pipe and a log; Ctrl-C ends it
//! cleanly (a second Ctrl-C ends it at once). `--events` streams Tollgate's events instead
//! ([`super::events`]).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::api::{hit_rate, Health, Stats};
use crate::cli::MonitorArgs;
use crate::client::{AdminClient, ADMIN_PREFIX};
use crate::error::CliError;
use crate::exit::Exit;
use crate::style::Style;
use crate::time;

use super::{emit, per, percent, Context};

/// On a terminal the header is repeated after this many lines.
const HEADER_EVERY: u64 = 20;
/// How often a sleep checks for Ctrl-C.
const POLL: Duration = Duration::from_millis(50);

/// What changed between two `/stats` replies, plus Redis latency from `/health`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// The Worker's clock at the second reply (this machine's when it gives none), Unix ms.
    pub time_ms: u64,
    /// Time between the two replies, ms.
    pub interval_ms: u64,
    pub requests: u64,
    pub requests_per_s: f64,
    pub allowed: u64,
    pub denied: u64,
    pub hit: u64,
    pub miss: u64,
    pub stale: u64,
    /// Hit rate within the interval; `null` without cache lookups.
    pub hit_rate: Option<f64>,
    pub redis_latency_ms: Option<f64>,
    /// Redis commands per request within the interval.
    pub redis_commands_per_request: Option<f64>,
}

impl Sample {
    /// The sample between `prev` and `cur`, `elapsed` apart. Counters that went down (an
    /// isolate restarted, stats were reset) count as zero rather than wrapping.
    pub fn between(prev: &Stats, cur: &Stats, elapsed: Duration, latency_ms: Option<f64>) -> Self {
        let (p, c) = (&prev.totals, &cur.totals);
        let requests = c.requests().saturating_sub(p.requests());
        let hit = c.hit.saturating_sub(p.hit);
        let miss = c.miss.saturating_sub(p.miss);
        let stale = c.stale.saturating_sub(p.stale);
        let commands = cur.redis.commands.saturating_sub(prev.redis.commands);
        let secs = elapsed.as_secs_f64();
        Self {
            time_ms: cur.now_ms.unwrap_or_else(time::now_ms),
            interval_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            requests,
            requests_per_s: if secs > 0.0 { requests as f64 / secs } else { 0.0 },
            allowed: c.allowed.saturating_sub(p.allowed),
            denied: c.denied.saturating_sub(p.denied),
            hit,
            miss,
            stale,
            hit_rate: hit_rate(hit, stale, miss),
            redis_latency_ms: latency_ms,
            redis_commands_per_request: per(commands, requests),
        }
    }
}

/// The column header, aligned with [`line`].
pub fn header(style: Style) -> String {
    style.bold(&format!(
        "{:<8}  {:>8}  {:>8}  {:>8}  {:>8}  {:>9}  {:>7}",
        "UTC", "req/s", "allowed", "denied", "hit rate", "redis ms", "cmd/req"
    ))
}

/// One sample as a line.
pub fn line(s: &Sample, style: Style) -> String {
    let denied = format!("{:>8}", s.denied);
    let denied = if s.denied > 0 { style.warn(&denied) } else { denied };
    let latency = s.redis_latency_ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"));
    let commands = s.redis_commands_per_request.map_or_else(|| "-".to_owned(), |c| format!("{c:.2}"));
    format!(
        "{:<8}  {:>8.1}  {:>8}  {denied}  {:>8}  {latency:>9}  {commands:>7}",
        time::utc_time(s.time_ms),
        s.requests_per_s,
        s.allowed,
        percent(s.hit_rate),
    )
}

pub fn run(ctx: &Context, args: &MonitorArgs) -> Result<Exit, CliError> {
    let stop = stop_flag()?;
    if args.events {
        return super::events::run(ctx, args.channels.as_deref(), &stop);
    }
    let client = ctx.admin()?;
    let terminal = std::io::stdout().is_terminal();

    let mut prev = fetch_stats(&client)?;
    let mut prev_at = Instant::now();
    let started = prev_at;
    if !ctx.json() {
        emit(&format!("{}\n", header(ctx.style)))?;
    }
    let mut taken: u64 = 0;
    while args.count.is_none_or(|n| taken < n.get()) {
        let deadline = started + args.interval.saturating_mul(u32::try_from(taken + 1).unwrap_or(u32::MAX));
        if !sleep_until(deadline, &stop) {
            break;
        }
        let cur = fetch_stats(&client)?;
        let at = Instant::now();
        let latency = fetch_latency(&client)?;
        let sample = Sample::between(&prev, &cur, at.duration_since(prev_at), latency);
        if ctx.json() {
            let text = serde_json::to_string(&sample).map_err(|e| CliError::Output(e.into()))?;
            emit(&format!("{text}\n"))?;
        } else {
            if terminal && taken > 0 && taken.is_multiple_of(HEADER_EVERY) {
                emit(&format!("{}\n", header(ctx.style)))?;
            }
            emit(&format!("{}\n", line(&sample, ctx.style)))?;
        }
        taken += 1;
        (prev, prev_at) = (cur, at);
        if stop.load(Ordering::Relaxed) {
            break;
        }
    }
    Ok(Exit::Ok)
}

/// A flag Ctrl-C (or SIGTERM) sets; a second signal, with the flag already set, exits at once.
fn stop_flag() -> Result<Arc<AtomicBool>, CliError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)))
            .map_err(CliError::Output)?;
    }
    Ok(stop)
}

fn fetch_stats(client: &AdminClient) -> Result<Stats, CliError> {
    let path = format!("{ADMIN_PREFIX}/stats");
    client.get(&path)?.parse(&path)
}

fn fetch_latency(client: &AdminClient) -> Result<Option<f64>, CliError> {
    let path = format!("{ADMIN_PREFIX}/health");
    // A degraded Worker may answer health with an error status; its latency is then unknown.
    let (status, body) = client.call(crate::client::Method::Get, &path, None)?;
    if status == 401 {
        return Err(CliError::Unauthorized);
    }
    let health: Health = serde_json::from_value(body).unwrap_or_default();
    Ok(health.redis.and_then(|r| r.latency_ms))
}

/// Sleeps until `deadline`; false when a stop signal came first.
fn sleep_until(deadline: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        thread::sleep(POLL.min(deadline - now));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stats(requests: u64, allowed: u64, denied: u64, hit: u64, miss: u64, commands: u64) -> Stats {
        serde_json::from_value(json!({
            "now_ms": 1_763_770_123_000u64,
            "totals": {"requests": requests, "allowed": allowed, "denied": denied, "hit": hit, "miss": miss,
                       "stale": 0, "bypass": 0},
            "redis": {"requests": commands, "commands": commands}
        }))
        .unwrap()
    }

    #[test]
    fn a_sample_is_the_difference_per_second() {
        let prev = stats(100, 90, 10, 50, 10, 200);
        let cur = stats(120, 108, 12, 59, 11, 230);
        let s = Sample::between(&prev, &cur, Duration::from_secs(2), Some(1.5));
        assert_eq!(s.requests, 20);
        assert_eq!(s.requests_per_s, 10.0);
        assert_eq!((s.allowed, s.denied), (18, 2));
        assert_eq!(s.hit_rate, Some(0.9));
        assert_eq!(s.redis_commands_per_request, Some(1.5));
        assert_eq!(s.interval_ms, 2000);
        assert_eq!(line(&s, Style::plain()), "00:08:43      10.0        18         2     90.0%        1.5     1.50");
    }

    #[test]
    fn counters_that_went_down_count_as_zero() {
        let prev = stats(100, 90, 10, 50, 10, 200);
        let cur = stats(5, 5, 0, 1, 0, 3);
        let s = Sample::between(&prev, &cur, Duration::from_secs(1), None);
        assert_eq!((s.requests, s.allowed, s.denied, s.hit), (0, 0, 0, 0));
        assert_eq!(s.hit_rate, None);
        assert_eq!(s.redis_commands_per_request, None);
        assert_eq!(line(&s, Style::plain()), "00:08:43       0.0         0         0         -          -        -");
    }

    #[test]
    fn the_header_lines_up_with_the_lines() {
        let s = Sample::between(&Stats::default(), &stats(1, 1, 0, 0, 0, 1), Duration::from_secs(1), None);
        assert_eq!(header(Style::plain()).len(), line(&s, Style::plain()).len());
    }

    #[test]
    fn a_stop_signal_ends_the_wait() {
        let stop = AtomicBool::new(true);
        assert!(!sleep_until(Instant::now() + Duration::from_secs(60), &stop));
        let go = AtomicBool::new(false);
        assert!(sleep_until(Instant::now(), &go));
    }
}
