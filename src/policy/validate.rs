//! From text to a [`Policy`]: JSON, or `[vars]` of a `wrangler.toml`, through the raw serde types
//! into validated values — or the first [`PolicyError`], naming its field.

use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroU64};

use serde_path_to_error::Segment;

use super::pattern::PathPattern;
use super::raw::{
    format_duration_ms, RawCache, RawCacheClass, RawCacheRule, RawConcurrency, RawCors, RawDuration, RawIdentity,
    RawLimit, RawPolicy, RawProxy, RawRedis, RawRoute, RawTier, RawUsage,
};
use super::{
    defaults, Algorithm, CacheClass, CacheKeySource, CacheRule, CacheScope, CacheSettings, ConcurrencyRule,
    CorsSettings, FailurePolicy, IdentitySettings, Limit, LimitMode, Policy, PolicyError, ProxySettings, RedisSettings,
    Route, Tier, Unit, UsageRule, UsageSource, WarnAt,
};

const SECOND_MS: u64 = 1_000;
const MINUTE_MS: u64 = 60 * SECOND_MS;
const HOUR_MS: u64 = 60 * MINUTE_MS;
const DAY_MS: u64 = 24 * HOUR_MS;
/// Longer TTLs count as infinite, and infinite TTLs are refused.
const MAX_TTL_MS: u64 = 365 * DAY_MS;
/// Longest limit window (a yearly quota with some slack).
const MAX_WINDOW_MS: u64 = 400 * DAY_MS;
/// Largest cacheable body: a stored entry must fit in one Upstash request (10 MB).
const MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;
/// Largest in-isolate cache layer accepted, bytes: half of an isolate's 128 MB.
const MAX_ISOLATE_BYTES: u32 = 64 * 1024 * 1024;

/// Parses a `TOLLGATE_POLICY` JSON document; blank text means the defaults.
pub(super) fn from_json(text: &str) -> Result<Policy, PolicyError> {
    if text.trim().is_empty() {
        return Ok(defaults::policy());
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let raw: RawPolicy = serde_path_to_error::deserialize(&mut de).map_err(serde_error)?;
    de.end().map_err(|e| json_error(String::new(), &e))?;
    validate(raw)
}

/// Reads `[vars].TOLLGATE_POLICY` of a `wrangler.toml` (a TOML table, or a string holding JSON);
/// absent means the defaults.
pub(super) fn from_wrangler_toml(text: &str) -> Result<Policy, PolicyError> {
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| PolicyError::new("", format!("wrangler.toml is not valid TOML: {e}")))?;
    let vars = match doc.get("vars") {
        None => return Ok(defaults::policy()),
        Some(toml::Value::Table(vars)) => vars,
        Some(_) => return Err(PolicyError::new("", "wrangler.toml: [vars] must be a table")),
    };
    match vars.get("TOLLGATE_POLICY") {
        None => Ok(defaults::policy()),
        Some(toml::Value::String(json)) => from_json(json),
        Some(table @ toml::Value::Table(_)) => {
            let raw: RawPolicy = serde_path_to_error::deserialize(toml_to_json(table)).map_err(serde_error)?;
            validate(raw)
        }
        Some(other) => Err(PolicyError::new(
            "",
            format!(
                "[vars] TOLLGATE_POLICY in wrangler.toml must be a table or a JSON string, not {}",
                other.type_str()
            ),
        )),
    }
}

/// A TOML value as the JSON value wrangler would hand the Worker.
fn toml_to_json(value: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(n) => J::from(*n),
        // NaN and infinities have no JSON form; as strings they fail with a type error at their path.
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f).map(J::Number).unwrap_or_else(|| J::String(f.to_string()))
        }
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => J::Object(t.iter().map(|(k, v)| (k.clone(), toml_to_json(v))).collect()),
    }
}

/// A serde error with the path it happened at, in the policy's own path syntax.
fn serde_error(e: serde_path_to_error::Error<serde_json::Error>) -> PolicyError {
    let mut segments: Vec<&Segment> = e.path().iter().filter(|s| !matches!(s, Segment::Unknown)).collect();
    // An unknown field is reported at the object holding it: `routes[0]: unknown field "limt"`.
    if e.inner().to_string().starts_with("unknown field") && matches!(segments.last(), Some(Segment::Map { .. })) {
        segments.pop();
    }
    let mut path = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    json_error(path, e.inner())
}

/// A JSON error's text with its position as `(line L, column C)` and quotes instead of backticks.
fn json_error(path: String, e: &serde_json::Error) -> PolicyError {
    let mut message = e.to_string();
    if e.line() > 0 {
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        if let Some(head) = message.strip_suffix(&suffix) {
            message = format!("{head} (line {}, column {})", e.line(), e.column());
        }
    }
    PolicyError::new(path, message.replace('`', "\""))
}

/// Turns the raw document into a policy, taking defaults for everything left out.
fn validate(raw: RawPolicy) -> Result<Policy, PolicyError> {
    let d = defaults::policy();
    let namespace = match raw.namespace {
        Some(ns) => namespace(ns)?,
        None => d.namespace,
    };
    let cache_classes = cache_classes(raw.cache_classes, d.cache_classes)?;
    let tiers = match raw.tiers {
        Some(raw_tiers) => tiers(raw_tiers)?,
        None => d.tiers,
    };
    let anonymous_tier = tier_ref(raw.anonymous_tier, d.anonymous_tier, "anonymous_tier", "anonymous", &tiers)?;
    let default_tier = tier_ref(raw.default_tier, d.default_tier, "default_tier", "default", &tiers)?;
    let routes = match raw.routes {
        Some(raw_routes) => routes(raw_routes, &cache_classes)?,
        None => d.routes,
    };
    shared_limit_ids_agree(&tiers, &routes)?;
    reservations_fit_tier_limits(&tiers, &routes)?;
    Ok(Policy {
        namespace,
        tiers,
        anonymous_tier,
        default_tier,
        routes,
        cache_classes,
        redis: redis(raw.redis, d.redis)?,
        identity: identity(raw.identity, d.identity)?,
        cache: cache(raw.cache, d.cache)?,
        cors: cors(raw.cors, d.cors)?,
        proxy: proxy(raw.proxy, d.proxy)?,
    })
}

fn proxy(raw: Option<RawProxy>, mut s: ProxySettings) -> Result<ProxySettings, PolicyError> {
    let Some(r) = raw else { return Ok(s) };
    if let Some(d) = r.timeout {
        s.timeout_ms = nonzero_ms(d, "proxy.timeout", 5 * MINUTE_MS)?;
    }
    Ok(s)
}

fn err<T>(path: impl Into<String>, message: impl Into<String>) -> Result<T, PolicyError> {
    Err(PolicyError::new(path, message))
}

fn namespace(ns: String) -> Result<String, PolicyError> {
    let ok =
        (1..=64).contains(&ns.len()) && ns.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ok {
        return err(
            "namespace",
            format!("{ns:?} must be 1 to 64 letters, digits, \"_\", \"-\" or \".\" (it starts every Redis key)"),
        );
    }
    Ok(ns)
}

/// `[A-Z][A-Z0-9_]*`, at most 32 characters: tier and cache class names.
fn is_upper_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 32
        && matches!(chars.next(), Some(c) if c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn upper_name(name: &str, path: &str, what: &str) -> Result<(), PolicyError> {
    if is_upper_name(name) {
        return Ok(());
    }
    err(
        path,
        format!("{what} names are upper-case ASCII letters, digits and \"_\", starting with a letter, at most 32 long (like \"PRO\"), not {name:?}"),
    )
}

fn tiers(raw: BTreeMap<String, RawTier>) -> Result<Vec<Tier>, PolicyError> {
    let mut out = Vec::with_capacity(raw.len());
    for (name, tier) in raw {
        let path = format!("tiers.{name}");
        upper_name(&name, &path, "tier")?;
        let limits = limits(&tier.limits, &format!("{path}.limits"), "tier", &name)?;
        out.push(Tier { name, limits });
    }
    Ok(out)
}

/// Checks that `anonymous_tier` / `default_tier` names a defined tier.
fn tier_ref(
    given: Option<String>,
    default: String,
    field: &str,
    role: &str,
    tiers: &[Tier],
) -> Result<String, PolicyError> {
    match given {
        Some(name) if tiers.iter().any(|t| t.name == name) => Ok(name),
        Some(name) => err(field, format!("tier {name:?} is not defined in \"tiers\"")),
        None if tiers.iter().any(|t| t.name == default) => Ok(default),
        None => err(
            "tiers",
            format!("the {role} tier {default:?} is not defined (define it, or set \"{field}\" to a tier that is)"),
        ),
    }
}

fn limits(raw: &[RawLimit], path: &str, kind: &str, owner: &str) -> Result<Vec<Limit>, PolicyError> {
    let mut out: Vec<Limit> = Vec::with_capacity(raw.len());
    for (i, r) in raw.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let l = limit(r, &at, kind, owner)?;
        if let Some(j) = out.iter().position(|o| o.id == l.id) {
            let hint = if r.id.is_none() { "; give one of them an \"id\"" } else { "" };
            return err(format!("{at}.id"), format!("duplicate limit id {:?} (also {path}[{j}]){hint}", l.id));
        }
        out.push(l);
    }
    Ok(out)
}

/// Limits of an admin override (`limits[i]`), validated like a tier's; an override holds enforced
/// request limits only (its stored form has no unit, mode or warnings).
pub(super) fn override_limits(raw: &[RawLimit]) -> Result<Vec<Limit>, PolicyError> {
    let out = limits(raw, "limits", "override", "custom")?;
    for (i, (r, l)) in raw.iter().zip(&out).enumerate() {
        let field = if !l.unit.is_requests() {
            Some("unit")
        } else if l.is_shadow() {
            Some("mode")
        } else if r.warn_at.is_some() {
            Some("warn_at")
        } else {
            None
        };
        if let Some(field) = field {
            return err(
                format!("limits[{i}].{field}"),
                "an override holds enforced request limits only; set units, shadow mode and warnings in the policy",
            );
        }
    }
    Ok(out)
}

fn limit(raw: &RawLimit, path: &str, kind: &str, owner: &str) -> Result<Limit, PolicyError> {
    let limit = nonzero_u32(raw.limit, &format!("{path}.limit"))?;
    let window_ms = raw.window.0;
    let window_path = format!("{path}.window");
    if window_ms == 0 {
        return err(window_path, "must be greater than 0");
    }
    if window_ms > MAX_WINDOW_MS {
        return err(window_path, format!("must be at most {}", format_duration_ms(MAX_WINDOW_MS)));
    }
    let window_ms =
        NonZeroU64::new(window_ms).ok_or_else(|| PolicyError::new(&window_path, "must be greater than 0"))?;
    let algorithm = match &raw.algorithm {
        None => defaults::ALGORITHM,
        Some(name) => Algorithm::parse(name).ok_or_else(|| {
            PolicyError::new(
                format!("{path}.algorithm"),
                format!("unknown algorithm {name:?} (expected \"sliding_window\", \"fixed_window\", \"token_bucket\" or \"gcra\")"),
            )
        })?,
    };
    let id = match &raw.id {
        Some(id) => limit_id(id, &format!("{path}.id"))?,
        None => Limit::derived_id(kind, owner, window_ms.get()),
    };
    let unit = match &raw.unit {
        None => Unit::requests(),
        Some(name) => unit(name, &format!("{path}.unit"))?,
    };
    if !unit.is_requests() && !matches!(algorithm, Algorithm::FixedWindow | Algorithm::SlidingWindow) {
        return err(
            format!("{path}.algorithm"),
            format!(
                "a limit of {:?} is settled after the answer, which only the window algorithms do exactly: use \"sliding_window\" or \"fixed_window\", not {:?}",
                unit.as_str(),
                algorithm.as_str()
            ),
        );
    }
    let mode = match &raw.mode {
        None => LimitMode::Enforce,
        Some(name) => mode(name, &format!("{path}.mode"))?,
    };
    let warn_at = match &raw.warn_at {
        None => Vec::new(),
        Some(fractions) => warn_at(fractions, &format!("{path}.warn_at"))?,
    };
    Ok(Limit { id, algorithm, limit, window_ms, unit, mode, warn_at })
}

/// A unit name; `concurrent-requests` is what a route's `concurrency` counts, not a limit unit.
fn unit(name: &str, path: &str) -> Result<Unit, PolicyError> {
    if name == "concurrent-requests" {
        return err(path, "\"concurrent-requests\" are counted by a route's \"concurrency\" slots, not by a limit");
    }
    Unit::parse(name).ok_or_else(|| {
        PolicyError::new(
            path,
            format!("{name:?} must be lower-case ASCII letters, digits, \"_\" or \"-\", starting with a letter, at most 32 long (like \"tokens\")"),
        )
    })
}

fn mode(name: &str, path: &str) -> Result<LimitMode, PolicyError> {
    LimitMode::parse(name)
        .ok_or_else(|| PolicyError::new(path, format!("unknown mode {name:?} (expected \"enforce\" or \"shadow\")")))
}

/// At most this many warning fractions per limit.
const MAX_WARN_AT: usize = 8;

fn warn_at(fractions: &[f64], path: &str) -> Result<Vec<WarnAt>, PolicyError> {
    if fractions.is_empty() || fractions.len() > MAX_WARN_AT {
        return err(path, format!("must list 1 to {MAX_WARN_AT} fractions (like [0.8, 1.0]); leave it out for none"));
    }
    let mut out: Vec<WarnAt> = Vec::with_capacity(fractions.len());
    for (j, f) in fractions.iter().enumerate() {
        let w = WarnAt::from_fraction(*f).ok_or_else(|| {
            PolicyError::new(format!("{path}[{j}]"), format!("{f} must be a fraction greater than 0 and at most 1"))
        })?;
        if out.contains(&w) {
            return err(format!("{path}[{j}]"), format!("{f} is listed twice"));
        }
        out.push(w);
    }
    out.sort_unstable();
    Ok(out)
}

/// `[a-z][a-z0-9_.-]*`, at most 64: safe in a Redis key and as a structured-field key.
fn limit_id(id: &str, path: &str) -> Result<String, PolicyError> {
    let mut chars = id.chars();
    let ok = id.len() <= 64
        && matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'));
    if !ok {
        return err(
            path,
            format!("{id:?} must be lower-case ASCII letters, digits, \"_\", \"-\" or \".\", starting with a letter, at most 64 long"),
        );
    }
    Ok(id.to_owned())
}

/// Limits sharing an id share their Redis state, so they must count the same way.
fn shared_limit_ids_agree(tiers: &[Tier], routes: &[Route]) -> Result<(), PolicyError> {
    let owners = tiers
        .iter()
        .map(|t| (format!("tiers.{}.limits", t.name), &t.limits))
        .chain(routes.iter().enumerate().map(|(i, r)| (format!("routes[{i}].limits"), &r.limits)));
    let mut seen: Vec<(String, &Limit)> = Vec::new();
    for (path, limits) in owners {
        for (i, l) in limits.iter().enumerate() {
            let at = format!("{path}[{i}]");
            match seen.iter().find(|(_, o)| o.id == l.id) {
                Some((other, o))
                    if o.window_ms != l.window_ms
                        || o.algorithm != l.algorithm
                        || o.unit != l.unit
                        || o.mode != l.mode =>
                {
                    return err(
                        format!("{at}.id"),
                        format!(
                            "limit id {:?} is also used at {other} with another window, algorithm, unit or mode; limits sharing an id share their state in Redis, so they must agree",
                            l.id
                        ),
                    );
                }
                Some(_) => {}
                None => seen.push((at, l)),
            }
        }
    }
    Ok(())
}

/// A reservation larger than a tier's limit of its unit could never pass on the route.
fn reservations_fit_tier_limits(tiers: &[Tier], routes: &[Route]) -> Result<(), PolicyError> {
    for (i, route) in routes.iter().enumerate() {
        let Some(usage) = &route.usage else { continue };
        for tier in tiers {
            if let Some((j, l)) =
                tier.limits.iter().enumerate().find(|(_, l)| l.unit == usage.unit && usage.reserve > l.limit)
            {
                return err(
                    format!("routes[{i}].usage.reserve"),
                    format!(
                        "a reservation of {} exceeds tiers.{}.limits[{j}] ({} {} per {}), so no request of that tier could ever pass",
                        usage.reserve,
                        tier.name,
                        l.limit,
                        l.unit.as_str(),
                        format_duration_ms(l.window_ms.get())
                    ),
                );
            }
        }
    }
    Ok(())
}

fn routes(raw: Vec<RawRoute>, classes: &[CacheClass]) -> Result<Vec<Route>, PolicyError> {
    let mut out: Vec<Route> = Vec::with_capacity(raw.len());
    for (i, r) in raw.into_iter().enumerate() {
        let path = format!("routes[{i}]");
        if let Some(j) = out.iter().position(|o| o.name == r.name) {
            return err(format!("{path}.name"), format!("duplicate route name {:?} (also routes[{j}])", r.name));
        }
        out.push(route(r, &path, classes)?);
    }
    Ok(out)
}

fn route(raw: RawRoute, path: &str, classes: &[CacheClass]) -> Result<Route, PolicyError> {
    let mut chars = raw.name.chars();
    let name_ok = raw.name.len() <= 64
        && matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if !name_ok {
        return err(
            format!("{path}.name"),
            format!("{:?} must be lower-case ASCII letters, digits, \"_\" or \"-\", starting with a letter, at most 64 long", raw.name),
        );
    }
    let pattern = PathPattern::parse(&raw.path)
        .map_err(|e| PolicyError::new(format!("{path}.path"), format!("{:?}: {e}", raw.path)))?;
    let methods = methods(raw.methods, path)?;
    let mut limits = limits(raw.limits.as_deref().unwrap_or(&[]), &format!("{path}.limits"), "route", &raw.name)?;
    let route_mode = match &raw.mode {
        None => LimitMode::Enforce,
        Some(name) => mode(name, &format!("{path}.mode"))?,
    };
    if route_mode == LimitMode::Shadow {
        for l in &mut limits {
            l.mode = LimitMode::Shadow;
        }
    }
    let usage = match &raw.usage {
        Some(u) => Some(usage(u, &format!("{path}.usage"))?),
        None => None,
    };
    if let Some(u) = &usage {
        if let Some((j, l)) = limits.iter().enumerate().find(|(_, l)| l.unit == u.unit && u.reserve > l.limit) {
            return err(
                format!("{path}.usage.reserve"),
                format!(
                    "a reservation of {} exceeds limits[{j}] ({} {} per {}), so no request could ever pass",
                    u.reserve,
                    l.limit,
                    l.unit.as_str(),
                    format_duration_ms(l.window_ms.get())
                ),
            );
        }
    }
    let concurrency = match &raw.concurrency {
        Some(c) => Some(concurrency(c, &format!("{path}.concurrency"), &raw.name, route_mode)?),
        None => None,
    };
    let cost = nonzero_u32(raw.cost.unwrap_or(1), &format!("{path}.cost"))?;
    if let Some((j, l)) = limits.iter().enumerate().find(|(_, l)| l.unit.is_requests() && cost > l.limit) {
        return err(
            format!("{path}.cost"),
            format!(
                "a cost of {cost} exceeds limits[{j}] ({} per {}), so no request could ever pass",
                l.limit,
                format_duration_ms(l.window_ms.get())
            ),
        );
    }
    let on_redis_failure = match raw.on_redis_failure.as_deref() {
        None => FailurePolicy::default(),
        Some("local") => FailurePolicy::Local,
        Some("open") => FailurePolicy::Open,
        Some("closed") => FailurePolicy::Closed,
        Some(other) => {
            return err(
                format!("{path}.on_redis_failure"),
                format!("unknown failure policy {other:?} (expected \"local\", \"open\" or \"closed\")"),
            )
        }
    };
    if let Some(template) = &raw.upstream {
        pattern
            .check_template(template)
            .map_err(|e| PolicyError::new(format!("{path}.upstream"), format!("{template:?}: {e}")))?;
    }
    let cache = match raw.cache {
        Some(rule) => Some(cache_rule(rule, path, &pattern, &methods, classes)?),
        None => None,
    };
    Ok(Route {
        name: raw.name,
        pattern,
        methods,
        limits,
        cost,
        on_redis_failure,
        upstream_path: raw.upstream,
        cache,
        usage,
        concurrency,
    })
}

/// Largest reservation: what one request may hold before its answer.
const MAX_RESERVE: u64 = 1 << 24;

fn usage(raw: &RawUsage, path: &str) -> Result<UsageRule, PolicyError> {
    let unit = unit(&raw.unit, &format!("{path}.unit"))?;
    if unit.is_requests() {
        return err(
            format!("{path}.unit"),
            "requests are counted by the check itself; usage names the unit the origin reports (like \"tokens\")",
        );
    }
    let source = match (raw.from.as_str(), &raw.name, &raw.pointer) {
        ("header", Some(name), None) => {
            let ok = (1..=64).contains(&name.len())
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
            if !ok {
                return err(format!("{path}.name"), format!("{name:?} is not a header name (letters, digits, \"-\")"));
            }
            UsageSource::Header(name.to_ascii_lowercase())
        }
        ("json", None, Some(pointer)) => {
            if !pointer.starts_with('/') || pointer.len() > 256 {
                return err(
                    format!("{path}.pointer"),
                    format!("{pointer:?} must be a JSON pointer (RFC 6901) starting with \"/\", like \"/usage/total_tokens\""),
                );
            }
            UsageSource::Json(pointer.clone())
        }
        ("header", _, _) => {
            return err(path, "\"from\": \"header\" needs \"name\" (the response header), and no \"pointer\"")
        }
        ("json", _, _) => return err(path, "\"from\": \"json\" needs \"pointer\" (a JSON pointer), and no \"name\""),
        (other, _, _) => {
            return err(
                format!("{path}.from"),
                format!("unknown usage source {other:?} (expected \"header\" or \"json\")"),
            )
        }
    };
    let reserve_path = format!("{path}.reserve");
    if raw.reserve > MAX_RESERVE {
        return err(reserve_path, format!("must be at most {MAX_RESERVE}"));
    }
    let reserve = nonzero_u32(raw.reserve, &reserve_path)?;
    Ok(UsageRule { unit, source, reserve })
}

/// Most slots of one caller on one route.
const MAX_CONCURRENCY: u64 = 10_000;

fn concurrency(raw: &RawConcurrency, path: &str, route: &str, mode: LimitMode) -> Result<ConcurrencyRule, PolicyError> {
    let limit_path = format!("{path}.limit");
    if raw.limit > MAX_CONCURRENCY {
        return err(limit_path, format!("must be at most {MAX_CONCURRENCY}"));
    }
    let limit = nonzero_u32(raw.limit, &limit_path)?;
    let lease = duration(raw.lease, &format!("{path}.lease"), SECOND_MS, DAY_MS)?;
    let lease_ms =
        NonZeroU64::new(lease).ok_or_else(|| PolicyError::new(format!("{path}.lease"), "must be greater than 0"))?;
    Ok(ConcurrencyRule { id: format!("route-{route}-concurrency"), limit, lease_ms, mode })
}

fn methods(raw: Option<Vec<String>>, path: &str) -> Result<Vec<String>, PolicyError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    if raw.is_empty() {
        return err(format!("{path}.methods"), "must not be empty; leave \"methods\" out to match every method");
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for (j, m) in raw.iter().enumerate() {
        if m.is_empty() || m.len() > 16 || !m.chars().all(|c| c.is_ascii_alphabetic()) {
            return err(format!("{path}.methods[{j}]"), format!("{m:?} is not an HTTP method"));
        }
        let upper = m.to_ascii_uppercase();
        if !out.contains(&upper) {
            out.push(upper);
        }
    }
    Ok(out)
}

fn cache_rule(
    raw: RawCacheRule,
    path: &str,
    pattern: &PathPattern,
    methods: &[String],
    classes: &[CacheClass],
) -> Result<CacheRule, PolicyError> {
    let at = format!("{path}.cache");
    if !classes.iter().any(|c| c.name == raw.class) {
        let known: Vec<&str> = classes.iter().map(|c| c.name.as_str()).collect();
        return err(
            format!("{at}.class"),
            format!("unknown cache class {:?} (defined: {})", raw.class, known.join(", ")),
        );
    }
    let key = match raw.key.as_deref() {
        None | Some("path") => CacheKeySource::Path,
        Some("json_body") => CacheKeySource::JsonBody,
        Some(other) => {
            return err(
                format!("{at}.key"),
                format!("unknown cache key {other:?} (expected \"path\" or \"json_body\")"),
            )
        }
    };
    let safe_methods = |m: &String| m == "GET" || m == "HEAD";
    match key {
        CacheKeySource::Path if methods.is_empty() || !methods.iter().all(safe_methods) => {
            return err(
                format!("{path}.methods"),
                "a route cached by \"path\" must list its methods, and only \"GET\" and \"HEAD\"",
            );
        }
        CacheKeySource::JsonBody if methods.is_empty() || methods.iter().any(safe_methods) => {
            return err(
                format!("{path}.methods"),
                "a route cached by \"json_body\" must list its methods, and only ones with a body (like \"POST\")",
            );
        }
        _ => {}
    }
    let scope = match raw.scope.as_deref() {
        None | Some("global") => CacheScope::Global,
        Some("caller") => CacheScope::Caller,
        Some(other) => {
            return err(
                format!("{at}.scope"),
                format!("unknown cache scope {other:?} (expected \"global\" or \"caller\")"),
            )
        }
    };
    let tags = raw.tags.unwrap_or_default();
    for (j, tag) in tags.iter().enumerate() {
        let ok = (1..=64).contains(&tag.len())
            && tag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
        if !ok {
            return err(
                format!("{at}.tags[{j}]"),
                format!("{tag:?} must be 1 to 64 ASCII letters, digits, \"_\", \"-\", \".\" or \":\""),
            );
        }
    }
    let warm = raw.warm.unwrap_or_default();
    if !warm.is_empty() {
        if key != CacheKeySource::Path {
            return err(format!("{at}.warm"), "warming needs \"key\": \"path\"");
        }
        if pattern.has_wildcard() {
            return err(
                format!("{at}.warm"),
                format!("warming needs a path pattern without \"*\", not {:?}", pattern.as_str()),
            );
        }
        let params = pattern.params().count();
        for (j, value) in warm.iter().enumerate() {
            let parts: Vec<&str> =
                if params == 0 && value.is_empty() { Vec::new() } else { value.split('/').collect() };
            if pattern.path_with(&parts).is_none() {
                return err(
                    format!("{at}.warm[{j}]"),
                    format!(
                        "{value:?} does not fill the pattern {:?}: it needs {params} safe value(s), joined by \"/\"",
                        pattern.as_str()
                    ),
                );
            }
        }
    }
    let invalidate_on = match raw.invalidate_on {
        None => defaults::write_methods(),
        Some(list) => {
            let mut methods = Vec::with_capacity(list.len());
            for (j, m) in list.iter().enumerate() {
                let upper = m.to_ascii_uppercase();
                if !["PUT", "PATCH", "DELETE", "POST"].contains(&upper.as_str()) {
                    return err(
                        format!("{at}.invalidate_on[{j}]"),
                        format!("{m:?} is not a write method (expected \"PUT\", \"PATCH\", \"DELETE\" or \"POST\")"),
                    );
                }
                methods.push(upper);
            }
            methods
        }
    };
    Ok(CacheRule { class: raw.class, key, scope, tags, warm, invalidate_on })
}

fn cache_classes(
    raw: Option<BTreeMap<String, RawCacheClass>>,
    mut classes: Vec<CacheClass>,
) -> Result<Vec<CacheClass>, PolicyError> {
    for (name, r) in raw.into_iter().flatten() {
        let path = format!("cache_classes.{name}");
        upper_name(&name, &path, "cache class")?;
        let base = classes.iter().position(|c| c.name == name);
        let ttl_ms = match (r.ttl, base.and_then(|i| classes.get(i))) {
            (Some(d), _) => ttl(d, &format!("{path}.ttl"))?,
            (None, Some(b)) => b.ttl_ms,
            (None, None) => return err(format!("{path}.ttl"), "required for a new cache class"),
        };
        let inherited = base.and_then(|i| classes.get(i));
        let jitter = match r.jitter {
            Some(j) if (0.0..=0.5).contains(&j) => j,
            Some(j) => return err(format!("{path}.jitter"), format!("{j} must be between 0 and 0.5 (0.1 = ±10%)")),
            None => inherited.map_or(defaults::JITTER, |b| b.jitter),
        };
        let stale_ms = match r.stale {
            Some(d) => duration(d, &format!("{path}.stale"), 0, MAX_TTL_MS)?,
            None => inherited.map_or(0, |b| b.stale_ms),
        };
        let browser_max_age_s = match r.browser_max_age {
            Some(d) => seconds(d, &format!("{path}.browser_max_age"), MAX_TTL_MS)?,
            None => inherited.map_or(0, |b| b.browser_max_age_s),
        };
        let class = CacheClass { name, ttl_ms, jitter, stale_ms, browser_max_age_s };
        match base.and_then(|i| classes.get_mut(i)) {
            Some(slot) => *slot = class,
            None => classes.push(class),
        }
    }
    Ok(classes)
}

/// A TTL: never zero, never "infinite" (over a year).
fn ttl(d: RawDuration, path: &str) -> Result<NonZeroU64, PolicyError> {
    if d.0 > MAX_TTL_MS {
        return err(
            path,
            format!(
                "must be finite and greater than 0: {d} is longer than {}, which counts as infinite",
                format_duration_ms(MAX_TTL_MS)
            ),
        );
    }
    NonZeroU64::new(d.0).ok_or_else(|| PolicyError::new(path, "must be finite and greater than 0"))
}

/// A duration within `[min_ms, max_ms]`, in ms.
fn duration(d: RawDuration, path: &str, min_ms: u64, max_ms: u64) -> Result<u64, PolicyError> {
    if d.0 < min_ms {
        return if min_ms == 1 {
            err(path, "must be greater than 0")
        } else {
            err(path, format!("must be at least {}", format_duration_ms(min_ms)))
        };
    }
    if d.0 > max_ms {
        return err(path, format!("must be at most {}", format_duration_ms(max_ms)));
    }
    Ok(d.0)
}

/// A duration within `[0, max_ms]` as `u32` ms (`max_ms` fits in a `u32`).
fn ms(d: RawDuration, path: &str, max_ms: u64) -> Result<u32, PolicyError> {
    let v = duration(d, path, 0, max_ms)?;
    u32::try_from(v).or_else(|_| err(path, "is too long"))
}

/// A duration within `[1 ms, max_ms]` as non-zero `u32` ms.
fn nonzero_ms(d: RawDuration, path: &str, max_ms: u64) -> Result<NonZeroU32, PolicyError> {
    let v = duration(d, path, 1, max_ms)?;
    u32::try_from(v).ok().and_then(NonZeroU32::new).ok_or_else(|| PolicyError::new(path, "is out of range"))
}

/// A duration of whole seconds within `[0, max_ms]`, in seconds.
fn seconds(d: RawDuration, path: &str, max_ms: u64) -> Result<u32, PolicyError> {
    let v = duration(d, path, 0, max_ms)?;
    if !v.is_multiple_of(SECOND_MS) {
        return err(path, format!("must be a whole number of seconds, not {d}"));
    }
    u32::try_from(v / SECOND_MS).or_else(|_| err(path, "is too long"))
}

/// An integer within `[min, max]` as `u32`.
fn int(v: u64, path: &str, min: u32, max: u32) -> Result<u32, PolicyError> {
    match u32::try_from(v) {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ if min == 1 && v == 0 => err(path, "must be greater than 0"),
        _ => err(path, format!("must be between {min} and {max}")),
    }
}

/// A positive `u32` count (limits, costs).
fn nonzero_u32(v: u64, path: &str) -> Result<NonZeroU32, PolicyError> {
    let n = int(v, path, 1, u32::MAX)?;
    NonZeroU32::new(n).ok_or_else(|| PolicyError::new(path, "must be greater than 0"))
}

fn redis(raw: Option<RawRedis>, mut s: RedisSettings) -> Result<RedisSettings, PolicyError> {
    let Some(r) = raw else { return Ok(s) };
    if let Some(d) = r.timeout {
        s.timeout_ms = Some(nonzero_ms(d, "redis.timeout", 30 * SECOND_MS)?);
    }
    if let Some(d) = r.budget_floor {
        s.budget_floor_ms = nonzero_ms(d, "redis.budget_floor", 30 * SECOND_MS)?;
    }
    if let Some(d) = r.budget_ceiling {
        s.budget_ceiling_ms = nonzero_ms(d, "redis.budget_ceiling", 60 * SECOND_MS)?;
    }
    if s.budget_ceiling_ms < s.budget_floor_ms {
        return err(
            "redis.budget_ceiling",
            format!(
                "{} must not be below redis.budget_floor ({})",
                format_duration_ms(u64::from(s.budget_ceiling_ms.get())),
                format_duration_ms(u64::from(s.budget_floor_ms.get()))
            ),
        );
    }
    if let Some(n) = r.breaker_failures {
        s.breaker_failures = NonZeroU32::new(int(n, "redis.breaker_failures", 1, 1000)?).unwrap_or(s.breaker_failures);
    }
    if let Some(rate) = r.breaker_failure_rate {
        if !(rate > 0.0 && rate <= 1.0) {
            return err("redis.breaker_failure_rate", format!("{rate} must be in (0, 1] (0.5 = half the calls)"));
        }
        s.breaker_failure_rate = rate;
    }
    if let Some(d) = r.breaker_window {
        s.breaker_window_ms = nonzero_ms(d, "redis.breaker_window", HOUR_MS)?;
    }
    if let Some(d) = r.breaker_cooldown {
        s.breaker_cooldown_ms = nonzero_ms(d, "redis.breaker_cooldown", HOUR_MS)?;
    }
    Ok(s)
}

fn identity(raw: Option<RawIdentity>, mut s: IdentitySettings) -> Result<IdentitySettings, PolicyError> {
    let Some(r) = raw else { return Ok(s) };
    if let Some(claim) = r.tier_claim {
        s.tier_claim = claim_path(&claim, "identity.tier_claim", "app_metadata.tier")?;
    }
    if let Some(claim) = r.subject_claim {
        s.subject_claim = claim_path(&claim, "identity.subject_claim", "sub")?;
    }
    if let Some(list) = r.issuers {
        s.issuers = claim_values(list, "identity.issuers")?;
    }
    if let Some(list) = r.audiences {
        s.audiences = claim_values(list, "identity.audiences")?;
    }
    if let Some(list) = r.anonymous_roles {
        s.anonymous_roles = claim_values(list, "identity.anonymous_roles")?;
    }
    if let Some(name) = r.token_cookie {
        let ok = (1..=128).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !ok {
            return err(
                "identity.token_cookie",
                format!("{name:?} must be a cookie name (1 to 128 letters, digits or !#$%&'*+-.^_`|~)"),
            );
        }
        s.token_cookie = Some(name);
    }
    if let Some(d) = r.jwks_refetch_interval {
        let v = duration(d, "identity.jwks_refetch_interval", SECOND_MS, HOUR_MS)?;
        s.jwks_refetch_interval_ms = u32::try_from(v).unwrap_or(s.jwks_refetch_interval_ms);
    }
    if let Some(d) = r.jwt_leeway {
        s.jwt_leeway_s = seconds(d, "identity.jwt_leeway", 10 * MINUTE_MS)?;
    }
    if let Some(d) = r.api_key_cache {
        s.api_key_cache_ms = ms(d, "identity.api_key_cache", HOUR_MS)?;
    }
    if let Some(p) = r.ipv6_prefix {
        s.ipv6_prefix = u8::try_from(int(p, "identity.ipv6_prefix", 32, 128)?).unwrap_or(s.ipv6_prefix);
    }
    Ok(s)
}

/// A dotted claim path (`app_metadata.tier` → `["app_metadata", "tier"]`).
fn claim_path(claim: &str, path: &str, example: &str) -> Result<Vec<String>, PolicyError> {
    let parts: Vec<String> = claim.split('.').map(str::to_owned).collect();
    if claim.is_empty() || parts.len() > 8 || parts.iter().any(String::is_empty) {
        return err(path, format!("{claim:?} must be a dotted claim path like \"{example}\""));
    }
    Ok(parts)
}

/// A list of claim values to compare with: each non-empty, at most 512 bytes, at most 32 of them.
fn claim_values(list: Vec<String>, path: &str) -> Result<Vec<String>, PolicyError> {
    if list.len() > 32 {
        return err(path, "lists at most 32 values");
    }
    for (i, value) in list.iter().enumerate() {
        if value.trim().is_empty() || value.len() > 512 {
            return err(format!("{path}[{i}]"), "must be a non-empty string of at most 512 bytes");
        }
    }
    Ok(list)
}

fn cache(raw: Option<RawCache>, mut s: CacheSettings) -> Result<CacheSettings, PolicyError> {
    let Some(r) = raw else { return Ok(s) };
    if let Some(d) = r.isolate_ttl {
        s.isolate_ttl_ms = ms(d, "cache.isolate_ttl", HOUR_MS)?;
    }
    if let Some(n) = r.isolate_capacity {
        s.isolate_capacity = int(n, "cache.isolate_capacity", 0, 100_000)?;
    }
    if let Some(n) = r.isolate_max_bytes {
        s.isolate_max_bytes = int(n, "cache.isolate_max_bytes", 0, MAX_ISOLATE_BYTES)?;
    }
    if let Some(n) = r.max_body_bytes {
        s.max_body_bytes = int(n, "cache.max_body_bytes", 1, MAX_BODY_BYTES as u32)?;
    }
    if let Some(n) = r.compress_min_bytes {
        s.compress_min_bytes = int(n, "cache.compress_min_bytes", 0, u32::MAX)?;
    }
    if let Some(d) = r.lock_ttl {
        s.lock_ttl_ms = nonzero_ms(d, "cache.lock_ttl", 5 * MINUTE_MS)?;
    }
    if let Some(d) = r.lock_wait {
        s.lock_wait_ms = ms(d, "cache.lock_wait", MINUTE_MS)?;
    }
    if s.lock_wait_ms > s.lock_ttl_ms.get() {
        return err(
            "cache.lock_wait",
            format!(
                "{} is longer than cache.lock_ttl ({}); waiting past the lock's life is pointless",
                format_duration_ms(u64::from(s.lock_wait_ms)),
                format_duration_ms(u64::from(s.lock_ttl_ms.get()))
            ),
        );
    }
    if let Some(d) = r.origin_timeout {
        s.origin_timeout_ms = nonzero_ms(d, "cache.origin_timeout", 5 * MINUTE_MS)?;
    }
    if let Some(beta) = r.early_refresh_beta {
        if !(0.0..=10.0).contains(&beta) {
            return err("cache.early_refresh_beta", format!("{beta} must be between 0 (off) and 10"));
        }
        s.early_refresh_beta = beta;
    }
    Ok(s)
}

fn cors(raw: Option<RawCors>, mut s: CorsSettings) -> Result<CorsSettings, PolicyError> {
    let Some(r) = raw else { return Ok(s) };
    if let Some(origins) = r.allow_origins {
        for (j, o) in origins.iter().enumerate() {
            let path = format!("cors.allow_origins[{j}]");
            if o == "*" {
                if origins.len() > 1 {
                    return err(path, "\"*\" allows every origin and cannot be combined with others");
                }
            } else if !is_origin(o) {
                return err(path, format!("{o:?} is not an origin: scheme://host[:port], no path or trailing \"/\""));
            }
        }
        s.allow_origins = origins;
    }
    if let Some(d) = r.max_age {
        s.max_age_s = seconds(d, "cors.max_age", DAY_MS)?;
    }
    Ok(s)
}

/// `http(s)://host[:port]` as browsers send it in `Origin`.
fn is_origin(o: &str) -> bool {
    let Some(rest) = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://")) else {
        return false;
    };
    let (host, port) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains(']') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => !v6.is_empty() && v6.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.')),
        None => !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-')),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.chars().all(|c| c.is_ascii_digit()));
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Policy, PolicyError> {
        from_json(json)
    }

    /// Parses and expects an error at `path` whose message contains `needle`.
    #[track_caller]
    fn rejects(json: &str, path: &str, needle: &str) {
        match parse(json) {
            Ok(_) => panic!("accepted {json}"),
            Err(e) => {
                assert_eq!(e.path, path, "path for {json}: {e}");
                assert!(e.message.contains(needle), "message for {json}: {e:?} lacks {needle:?}");
            }
        }
    }

    #[test]
    fn blank_text_and_an_empty_object_mean_the_defaults() {
        assert_eq!(parse("").unwrap(), defaults::policy());
        assert_eq!(parse("  \n").unwrap(), defaults::policy());
        assert_eq!(parse("{}").unwrap(), defaults::policy());
    }

    #[test]
    fn the_defaults_spelled_out_parse_to_the_built_in_policy() {
        let json = r#"{
          "namespace": "factory",
          "tiers": {
            "ANON": { "limits": [ { "limit": 30, "window": "1h" } ] },
            "BASIC": { "limits": [ { "limit": 100, "window": "60m", "algorithm": "sliding_window" } ] },
            "PRO": { "limits": [ { "id": "tier-pro-1h", "limit": 1000, "window": "3600s" } ] }
          },
          "anonymous_tier": "ANON", "default_tier": "BASIC",
          "routes": [
            { "name": "chat", "path": "/api/chat*", "limits": [ { "limit": 20, "window": "1m" } ] },
            { "name": "auth", "path": "/api/auth*", "limits": [ { "limit": 5, "window": "15m" } ] },
            { "name": "upload", "path": "/api/upload*", "limits": [ { "limit": 5, "window": "1m" } ], "cost": 1 },
            { "name": "search", "path": "/api/search*", "limits": [ { "limit": 30, "window": "1m" } ],
              "on_redis_failure": "local" },
            { "name": "config", "path": "/api/config/{name}", "methods": ["get"], "upstream": "/config/{name}",
              "cache": { "class": "STATIC_CONFIG", "key": "path", "scope": "global", "tags": ["config"], "warm": ["app"] } },
            { "name": "rag", "path": "/api/rag/context", "methods": ["POST"], "upstream": "/rag/context",
              "cache": { "class": "FREQUENT_DATA", "key": "json_body" } }
          ],
          "cache_classes": {
            "SESSION": { "ttl": "1h", "jitter": 0.1, "stale": "0s", "browser_max_age": "0s" },
            "FREQUENT_DATA": { "ttl": "5m", "stale": "5m" },
            "STATIC_CONFIG": { "ttl": "1d", "stale": "24h", "browser_max_age": "1m" }
          },
          "redis": { "budget_floor": "500ms", "budget_ceiling": "5s", "breaker_failures": 5,
                     "breaker_failure_rate": 0.5, "breaker_window": "10s", "breaker_cooldown": "5s" },
          "identity": { "tier_claim": "app_metadata.tier", "jwt_leeway": "30s", "api_key_cache": "30s", "ipv6_prefix": 64 },
          "cache": { "isolate_ttl": "2s", "isolate_capacity": 256, "max_body_bytes": 1048576, "compress_min_bytes": 1024,
                     "lock_ttl": "5s", "lock_wait": "2s", "origin_timeout": "5s", "early_refresh_beta": 1.0 },
          "cors": { "allow_origins": ["*"], "max_age": "600s" }
        }"#;
        assert_eq!(parse(json).unwrap(), defaults::policy());
    }

    #[test]
    fn identity_claims_checks_and_the_anonymous_rule_are_read() {
        let p = parse(
            r#"{"identity": {"issuers": ["https://x.supabase.co/auth/v1"], "audiences": ["authenticated", "api"],
                "subject_claim": "user.id", "anonymous_roles": [], "token_cookie": "sb-x-auth-token",
                "jwks_refetch_interval": "5s"}}"#,
        )
        .unwrap();
        assert_eq!(p.identity.issuers, ["https://x.supabase.co/auth/v1"]);
        assert_eq!(p.identity.audiences, ["authenticated", "api"]);
        assert_eq!(p.identity.subject_claim, ["user", "id"]);
        assert!(p.identity.anonymous_roles.is_empty());
        assert_eq!(p.identity.token_cookie.as_deref(), Some("sb-x-auth-token"));
        assert_eq!(p.identity.jwks_refetch_interval_ms, 5_000);
        let d = defaults::policy().identity;
        assert!(d.issuers.is_empty() && d.audiences.is_empty() && d.token_cookie.is_none());
        assert_eq!((d.subject_claim, d.anonymous_roles), (vec!["sub".to_owned()], vec!["anon".to_owned()]));
    }

    #[test]
    fn limit_ids_are_derived_from_owner_and_window() {
        let p = parse(
            r#"{"tiers": {"ANON": {"limits": []}, "BASIC": {"limits": [{"limit": 1, "window": "90m"},
                {"limit": 9, "window": "1d", "algorithm": "gcra"}]}},
               "routes": [{"name": "up-load", "path": "/u*", "limits": [{"limit": 2, "window": "1500ms"}]}]}"#,
        )
        .unwrap();
        let basic = p.tier("BASIC").unwrap();
        assert_eq!(basic.limits[0].id, "tier-basic-90m");
        assert_eq!(basic.limits[1].id, "tier-basic-1d");
        assert_eq!(basic.limits[1].algorithm, Algorithm::Gcra);
        assert_eq!(p.routes[0].limits[0].id, "route-up-load-1500ms");
        assert_eq!(p.tier("ANON").unwrap().limits, []);
    }

    #[test]
    fn given_routes_and_tiers_replace_the_defaults() {
        let p = parse(r#"{"routes": [], "tiers": {"ANON": {"limits": []}, "BASIC": {"limits": []}}}"#).unwrap();
        assert!(p.routes.is_empty());
        assert_eq!(p.tiers.len(), 2);
        assert!(p.tier("PRO").is_none());
        assert_eq!(p.cache_classes, defaults::cache_classes());
    }

    #[test]
    fn cache_classes_merge_over_the_defaults_field_by_field() {
        let p = parse(r#"{"cache_classes": {"STATIC_CONFIG": {"ttl": "12h"}, "HOT": {"ttl": "10s", "jitter": 0}}}"#)
            .unwrap();
        let sc = p.cache_class("STATIC_CONFIG").unwrap();
        assert_eq!(sc.ttl_ms.get(), 12 * HOUR_MS);
        assert_eq!(sc.jitter, 0.1);
        assert_eq!(sc.stale_ms, DAY_MS);
        assert_eq!(sc.browser_max_age_s, 60);
        assert!(p.cache_class("SESSION").is_some());
        let hot = p.cache_class("HOT").unwrap();
        assert_eq!((hot.ttl_ms.get(), hot.jitter, hot.stale_ms), (10_000, 0.0, 0));
    }

    #[test]
    fn settings_override_one_field_at_a_time() {
        let p = parse(
            r#"{"redis": {"timeout": "150ms"}, "identity": {"tier_claim": "tier"}, "cors": {"allow_origins": []}}"#,
        )
        .unwrap();
        assert_eq!(p.redis.timeout_ms.map(|t| t.get()), Some(150));
        assert_eq!(p.redis.breaker_failures.get(), 5);
        assert_eq!(p.identity.tier_claim, ["tier"]);
        assert_eq!(p.identity.jwt_leeway_s, 30);
        assert!(p.cors.allow_origins.is_empty());
        assert_eq!(p.cors.max_age_s, 600);
    }

    #[test]
    fn every_rejection_names_its_field() {
        let table: &[(&str, &str, &str)] = &[
            // limits and windows
            (
                r#"{"routes":[{"name":"a","path":"/a"},{"name":"b","path":"/b"},{"name":"c","path":"/c","limits":[{"limit":0,"window":"1m"}]}]}"#,
                "routes[2].limits[0].limit",
                "must be greater than 0",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a","limits":[{"limit":5000000000,"window":"1m"}]}]}"#,
                "routes[0].limits[0].limit",
                "between 1 and 4294967295",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a","limits":[{"limit":1,"window":"0s"}]}]}"#,
                "routes[0].limits[0].window",
                "must be greater than 0",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a","limits":[{"limit":1,"window":"401d"}]}]}"#,
                "routes[0].limits[0].window",
                "at most 400d",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a","limits":[{"limit":1,"window":60}]}]}"#,
                "routes[0].limits[0].window",
                "expected a duration string",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a","limits":[{"limit":1,"window":"1 minute"}]}]}"#,
                "routes[0].limits[0].window",
                "invalid duration \"1 minute\"",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a","limits":[{"limit":1,"window":"1m","algorithm":"leaky"}]}]}"#,
                "routes[0].limits[0].algorithm",
                "unknown algorithm \"leaky\"",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a","limits":[{"limit":1,"window":"1m"},{"limit":2,"window":"60s"}]}]}"#,
                "routes[0].limits[1].id",
                "duplicate limit id \"route-a-1m\"",
            ),
            (
                r#"{"tiers":{"ANON":{"limits":[]},"BASIC":{"limits":[{"id":"q","limit":1,"window":"1m"},{"id":"q","limit":2,"window":"1h"}]}}}"#,
                "tiers.BASIC.limits[1].id",
                "duplicate limit id \"q\"",
            ),
            (
                r#"{"tiers":{"ANON":{"limits":[]},"BASIC":{"limits":[{"id":"Daily","limit":1,"window":"1d"}]}}}"#,
                "tiers.BASIC.limits[0].id",
                "lower-case",
            ),
            (
                r#"{"tiers":{"ANON":{"limits":[]},"BASIC":{"limits":[{"id":"q","limit":1,"window":"1d"}]},"PRO":{"limits":[{"id":"q","limit":9,"window":"1h"}]}}}"#,
                "tiers.PRO.limits[0].id",
                "also used at tiers.BASIC.limits[0]",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a","limits":[{"id":"tier-basic-1h","limit":1,"window":"1h","algorithm":"gcra"}]}]}"#,
                "routes[0].limits[0].id",
                "share their state",
            ),
            // tiers
            (
                r#"{"tiers":{"BASIC":{"limits":[]},"PRO":{"limits":[]}}}"#,
                "tiers",
                "the anonymous tier \"ANON\" is not defined",
            ),
            (
                r#"{"tiers":{"ANON":{"limits":[]},"PRO":{"limits":[]}}}"#,
                "tiers",
                "the default tier \"BASIC\" is not defined",
            ),
            (r#"{"anonymous_tier":"GUEST"}"#, "anonymous_tier", "tier \"GUEST\" is not defined"),
            (r#"{"default_tier":"basic"}"#, "default_tier", "tier \"basic\" is not defined"),
            (
                r#"{"tiers":{"ANON":{"limits":[]},"BASIC":{"limits":[]},"pro":{"limits":[]}}}"#,
                "tiers.pro",
                "upper-case",
            ),
            (
                r#"{"tiers":{"ANON":{"limits":[]},"BASIC":{"limits":[]},"PRO-1":{"limits":[]}}}"#,
                "tiers.PRO-1",
                "upper-case",
            ),
            (r#"{"tiers":{"ANON":{}}}"#, "tiers.ANON", "missing field \"limits\""),
            // routes
            (
                r#"{"routes":[{"name":"a","path":"/a"},{"name":"a","path":"/b"}]}"#,
                "routes[1].name",
                "duplicate route name \"a\"",
            ),
            (r#"{"routes":[{"name":"Chat","path":"/a"}]}"#, "routes[0].name", "lower-case"),
            (r#"{"routes":[{"name":"a","path":"api/a"}]}"#, "routes[0].path", "must start with \"/\""),
            (r#"{"routes":[{"name":"a","path":"/a/*/b"}]}"#, "routes[0].path", "only allowed as the last character"),
            (r#"{"routes":[{"name":"a","path":"/a/{x"}]}"#, "routes[0].path", "unbalanced"),
            (r#"{"routes":[{"name":"a","path":"/a"}, {"path":"/b"}]}"#, "routes[1]", "missing field \"name\""),
            (
                r#"{"routes":[{"name":"a","path":"/a","on_redis_failure":"retry"}]}"#,
                "routes[0].on_redis_failure",
                "unknown failure policy \"retry\"",
            ),
            (r#"{"routes":[{"name":"a","path":"/a","cost":0}]}"#, "routes[0].cost", "must be greater than 0"),
            (
                r#"{"routes":[{"name":"a","path":"/a","cost":6,"limits":[{"limit":5,"window":"1m"}]}]}"#,
                "routes[0].cost",
                "no request could ever pass",
            ),
            (r#"{"routes":[{"name":"a","path":"/a","methods":[]}]}"#, "routes[0].methods", "must not be empty"),
            (
                r#"{"routes":[{"name":"a","path":"/a","methods":["GET","G ET"]}]}"#,
                "routes[0].methods[1]",
                "not an HTTP method",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a/{x}","upstream":"/b/{y}"}]}"#,
                "routes[0].upstream",
                "unknown parameter \"{y}\"",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a*","upstream":"/b/*"}]}"#,
                "routes[0].upstream",
                "not allowed in an upstream template",
            ),
            (r#"{"routes":[{"name":"a","path":"/a","upstream":"b"}]}"#, "routes[0].upstream", "must start with \"/\""),
            (r#"{"routes":[{"limt":1,"name":"a","path":"/a"}]}"#, "routes[0]", "unknown field \"limt\""),
            (
                r#"{"routes":[{"name":"a","path":"/a","limits":[{"limt":1,"window":"1m"}]}]}"#,
                "routes[0].limits[0]",
                "unknown field \"limt\"",
            ),
            (r#"{"routes":{"name":"a"}}"#, "routes", "invalid type: map"),
            // cache rules
            (
                r#"{"routes":[{"name":"a","path":"/a","methods":["GET"]},{"name":"b","path":"/b","methods":["GET"],"cache":{"class":"FOO"}}]}"#,
                "routes[1].cache.class",
                "unknown cache class \"FOO\"",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a","methods":["GET"],"cache":{"class":"SESSION","key":"query"}}]}"#,
                "routes[0].cache.key",
                "unknown cache key \"query\"",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a","methods":["GET"],"cache":{"class":"SESSION","scope":"user"}}]}"#,
                "routes[0].cache.scope",
                "unknown cache scope \"user\"",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a","cache":{"class":"SESSION"}}]}"#,
                "routes[0].methods",
                "only \"GET\" and \"HEAD\"",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a","methods":["GET","POST"],"cache":{"class":"SESSION"}}]}"#,
                "routes[0].methods",
                "only \"GET\" and \"HEAD\"",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a","methods":["GET"],"cache":{"class":"SESSION","key":"json_body"}}]}"#,
                "routes[0].methods",
                "with a body",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a","methods":["GET"],"cache":{"class":"SESSION","tags":["a b"]}}]}"#,
                "routes[0].cache.tags[0]",
                "1 to 64",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a/{x}","methods":["GET"],"cache":{"class":"SESSION","warm":["ok","a/b"]}}]}"#,
                "routes[0].cache.warm[1]",
                "needs 1 safe value",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a/{x}","methods":["GET"],"cache":{"class":"SESSION","warm":[".."]}}]}"#,
                "routes[0].cache.warm[0]",
                "does not fill",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a*","methods":["GET"],"cache":{"class":"SESSION","warm":["x"]}}]}"#,
                "routes[0].cache.warm",
                "without \"*\"",
            ),
            (
                r#"{"routes":[{"name":"a","path":"/a/{x}","methods":["POST"],"cache":{"class":"SESSION","key":"json_body","warm":["x"]}}]}"#,
                "routes[0].cache.warm",
                "needs \"key\": \"path\"",
            ),
            // cache classes
            (
                r#"{"cache_classes":{"SESSION":{"ttl":"0s"}}}"#,
                "cache_classes.SESSION.ttl",
                "must be finite and greater than 0",
            ),
            (r#"{"cache_classes":{"SESSION":{"ttl":"366d"}}}"#, "cache_classes.SESSION.ttl", "counts as infinite"),
            (r#"{"cache_classes":{"SESSION":{"jitter":0.6}}}"#, "cache_classes.SESSION.jitter", "between 0 and 0.5"),
            (r#"{"cache_classes":{"SESSION":{"jitter":-0.1}}}"#, "cache_classes.SESSION.jitter", "between 0 and 0.5"),
            (
                r#"{"cache_classes":{"SESSION":{"browser_max_age":"1500ms"}}}"#,
                "cache_classes.SESSION.browser_max_age",
                "whole number of seconds",
            ),
            (r#"{"cache_classes":{"SESSION":{"stale":"400d"}}}"#, "cache_classes.SESSION.stale", "at most 365d"),
            (r#"{"cache_classes":{"HOT":{"jitter":0.1}}}"#, "cache_classes.HOT.ttl", "required for a new cache class"),
            (r#"{"cache_classes":{"hot":{"ttl":"1s"}}}"#, "cache_classes.hot", "upper-case"),
            (r#"{"cache_classes":{"SESSION":{"tll":"1s"}}}"#, "cache_classes.SESSION", "unknown field \"tll\""),
            // settings
            (r#"{"namespace":"my app"}"#, "namespace", "letters, digits"),
            (r#"{"namespace":"a:b"}"#, "namespace", "letters, digits"),
            (r#"{"namespace":""}"#, "namespace", "1 to 64"),
            (r#"{"redis":{"timeout":"0ms"}}"#, "redis.timeout", "must be greater than 0"),
            (r#"{"redis":{"timeout":"1m"}}"#, "redis.timeout", "at most 30s"),
            (r#"{"redis":{"breaker_failures":0}}"#, "redis.breaker_failures", "must be greater than 0"),
            (r#"{"identity":{"tier_claim":"app_metadata..tier"}}"#, "identity.tier_claim", "dotted claim path"),
            (r#"{"identity":{"jwt_leeway":"1h"}}"#, "identity.jwt_leeway", "at most 10m"),
            (r#"{"identity":{"ipv6_prefix":129}}"#, "identity.ipv6_prefix", "between 32 and 128"),
            (r#"{"identity":{"subject_claim":""}}"#, "identity.subject_claim", "dotted claim path like \"sub\""),
            (r#"{"identity":{"issuers":["https://a.example", " "]}}"#, "identity.issuers[1]", "non-empty string"),
            (r#"{"identity":{"issuers":"https://a.example"}}"#, "identity.issuers", "a sequence"),
            (r#"{"identity":{"audiences":[""]}}"#, "identity.audiences[0]", "non-empty string"),
            (r#"{"identity":{"anonymous_roles":[7]}}"#, "identity.anonymous_roles[0]", "expected a string"),
            (r#"{"identity":{"token_cookie":"sb auth"}}"#, "identity.token_cookie", "must be a cookie name"),
            (r#"{"identity":{"token_cookie":""}}"#, "identity.token_cookie", "must be a cookie name"),
            (r#"{"identity":{"jwks_refetch_interval":"500ms"}}"#, "identity.jwks_refetch_interval", "at least 1s"),
            (r#"{"identity":{"jwks_refetch_interval":"2h"}}"#, "identity.jwks_refetch_interval", "at most 1h"),
            (r#"{"cache":{"max_body_bytes":0}}"#, "cache.max_body_bytes", "must be greater than 0"),
            (r#"{"cache":{"isolate_max_bytes":1000000000}}"#, "cache.isolate_max_bytes", "between 0 and 67108864"),
            (r#"{"proxy":{"timeout":"0s"}}"#, "proxy.timeout", "must be greater than 0"),
            (r#"{"proxy":{"timeout":"1h"}}"#, "proxy.timeout", "at most 5m"),
            (
                r#"{"routes":[{"name":"a","path":"/a/{x}","methods":["GET"],"cache":{"class":"SESSION","invalidate_on":["GET"]}}]}"#,
                "routes[0].cache.invalidate_on[0]",
                "not a write method",
            ),
            (r#"{"cache":{"max_body_bytes":100000000}}"#, "cache.max_body_bytes", "between 1 and 8388608"),
            (r#"{"cache":{"lock_wait":"10s"}}"#, "cache.lock_wait", "longer than cache.lock_ttl"),
            (r#"{"cache":{"early_refresh_beta":-1}}"#, "cache.early_refresh_beta", "between 0 (off) and 10"),
            (r#"{"cache":{"lock_ttl":"0s"}}"#, "cache.lock_ttl", "must be greater than 0"),
            (r#"{"cors":{"allow_origins":["https://a.example/"]}}"#, "cors.allow_origins[0]", "is not an origin"),
            (r#"{"cors":{"allow_origins":["a.example"]}}"#, "cors.allow_origins[0]", "is not an origin"),
            (r#"{"cors":{"allow_origins":["https://a.example","*"]}}"#, "cors.allow_origins[1]", "cannot be combined"),
            (r#"{"cors":{"max_age":"2d"}}"#, "cors.max_age", "at most 1d"),
            (r#"{"tirs":{}}"#, "", "unknown field \"tirs\""),
        ];
        for (json, path, needle) in table {
            rejects(json, path, needle);
        }
    }

    /// The worked example of the README: a token quota per tier, two streams per caller, a new
    /// limit in shadow.
    const AI_POLICY: &str = r#"{
      "tiers": {
        "ANON":  { "limits": [ { "limit": 30, "window": "1h" } ] },
        "BASIC": { "limits": [ { "limit": 100, "window": "1h" },
                               { "id": "tokens-basic", "unit": "tokens", "limit": 20000, "window": "1d",
                                 "warn_at": [1.0, 0.8] } ] },
        "PRO":   { "limits": [ { "limit": 1000, "window": "1h" },
                               { "id": "tokens-pro", "unit": "tokens", "limit": 500000, "window": "1d",
                                 "algorithm": "fixed_window" } ] }
      },
      "routes": [
        { "name": "chat", "path": "/v1/chat/completions", "methods": ["POST"],
          "limits": [ { "limit": 20, "window": "1m" },
                      { "id": "chat-burst", "limit": 5, "window": "10s", "mode": "shadow" } ],
          "usage": { "unit": "tokens", "from": "json", "pointer": "/usage/total_tokens", "reserve": 1000 },
          "concurrency": { "limit": 2, "lease": "2m" } },
        { "name": "embed", "path": "/v1/embeddings", "mode": "shadow",
          "limits": [ { "limit": 10, "window": "1m" } ],
          "usage": { "unit": "tokens", "from": "header", "name": "X-Usage-Tokens", "reserve": 50 },
          "concurrency": { "limit": 4, "lease": "30s" } }
      ]
    }"#;

    #[test]
    fn units_modes_warnings_usage_and_concurrency_parse() {
        let p = parse(AI_POLICY).expect("valid");
        let basic = &p.tier("BASIC").expect("BASIC").limits[1];
        assert_eq!((basic.unit.as_str(), basic.mode), ("tokens", LimitMode::Enforce));
        let ppm: Vec<u32> = basic.warn_at.iter().map(|w| w.ppm()).collect();
        assert_eq!(ppm, [800_000, 1_000_000], "fractions are sorted");
        assert!(p.tier("BASIC").expect("BASIC").limits[0].unit.is_requests(), "requests by default");
        let chat = &p.routes[0];
        assert_eq!(chat.limits[1].mode, LimitMode::Shadow);
        assert_eq!(chat.limits[0].mode, LimitMode::Enforce);
        let usage = chat.usage.as_ref().expect("usage");
        assert_eq!((usage.unit.as_str(), usage.reserve.get()), ("tokens", 1_000));
        assert_eq!(usage.source, UsageSource::Json("/usage/total_tokens".into()));
        let slots = chat.concurrency.as_ref().expect("concurrency");
        assert_eq!(
            (slots.id.as_str(), slots.limit.get(), slots.lease_ms.get()),
            ("route-chat-concurrency", 2, 120_000)
        );
        assert_eq!(slots.mode, LimitMode::Enforce);
        let embed = &p.routes[1];
        assert_eq!(embed.usage.as_ref().map(|u| u.source.clone()), Some(UsageSource::Header("x-usage-tokens".into())));
        assert!(embed.limits.iter().all(Limit::is_shadow), "a shadow route shadows all its limits");
        assert_eq!(embed.concurrency.as_ref().map(|c| c.mode), Some(LimitMode::Shadow));
    }

    #[test]
    fn ai_field_rejections_name_their_field() {
        let route = |extra: &str| format!(r#"{{"routes":[{{"name":"a","path":"/a",{extra}}}]}}"#);
        let table: Vec<(String, &str, &str)> = vec![
            (route(r#""limits":[{"limit":1,"window":"1m","unit":"Tokens"}]"#), "routes[0].limits[0].unit", "lower-case"),
            (route(r#""limits":[{"limit":1,"window":"1m","unit":"concurrent-requests"}]"#), "routes[0].limits[0].unit", "concurrency"),
            (
                route(r#""limits":[{"limit":1,"window":"1m","unit":"tokens","algorithm":"gcra"}]"#),
                "routes[0].limits[0].algorithm",
                "only the window algorithms",
            ),
            (route(r#""limits":[{"limit":1,"window":"1m","mode":"dry-run"}]"#), "routes[0].limits[0].mode", "unknown mode"),
            (route(r#""limits":[{"limit":1,"window":"1m","warn_at":[0]}]"#), "routes[0].limits[0].warn_at[0]", "greater than 0"),
            (route(r#""limits":[{"limit":1,"window":"1m","warn_at":[1.5]}]"#), "routes[0].limits[0].warn_at[0]", "at most 1"),
            (route(r#""limits":[{"limit":1,"window":"1m","warn_at":[0.5,0.5]}]"#), "routes[0].limits[0].warn_at[1]", "twice"),
            (route(r#""limits":[{"limit":1,"window":"1m","warn_at":[]}]"#), "routes[0].limits[0].warn_at", "1 to 8"),
            (route(r#""mode":"off""#), "routes[0].mode", "unknown mode"),
            (route(r#""usage":{"unit":"requests","from":"header","name":"x","reserve":1}"#), "routes[0].usage.unit", "counted by the check"),
            (route(r#""usage":{"unit":"tokens","from":"body","pointer":"/x","reserve":1}"#), "routes[0].usage.from", "unknown usage source"),
            (route(r#""usage":{"unit":"tokens","from":"json","name":"x","reserve":1}"#), "routes[0].usage", "needs \"pointer\""),
            (route(r#""usage":{"unit":"tokens","from":"header","pointer":"/x","reserve":1}"#), "routes[0].usage", "needs \"name\""),
            (route(r#""usage":{"unit":"tokens","from":"json","pointer":"usage","reserve":1}"#), "routes[0].usage.pointer", "JSON pointer"),
            (route(r#""usage":{"unit":"tokens","from":"header","name":"bad name","reserve":1}"#), "routes[0].usage.name", "header name"),
            (route(r#""usage":{"unit":"tokens","from":"header","name":"x","reserve":0}"#), "routes[0].usage.reserve", "greater than 0"),
            (
                route(r#""limits":[{"limit":100,"window":"1d","unit":"tokens"}],"usage":{"unit":"tokens","from":"header","name":"x","reserve":300}"#),
                "routes[0].usage.reserve",
                "exceeds limits[0]",
            ),
            (route(r#""usage":{"unit":"tokens","from":"header","name":"x"}"#), "routes[0].usage", "missing field"),
            (route(r#""concurrency":{"limit":0,"lease":"2m"}"#), "routes[0].concurrency.limit", "greater than 0"),
            (route(r#""concurrency":{"limit":2,"lease":"500ms"}"#), "routes[0].concurrency.lease", "at least 1s"),
            (route(r#""concurrency":{"limit":2,"lease":120}"#), "routes[0].concurrency.lease", "expected a duration string"),
            (route(r#""concurrency":{"limit":2,"lease":"2m","max":3}"#), "routes[0].concurrency", "unknown field"),
            (
                r#"{"tiers":{"ANON":{"limits":[]},"BASIC":{"limits":[{"id":"q","limit":100,"window":"1d","unit":"tokens"}]}},"routes":[{"name":"a","path":"/a","usage":{"unit":"tokens","from":"header","name":"x","reserve":300}}]}"#.to_owned(),
                "routes[0].usage.reserve",
                "tiers.BASIC.limits[0]",
            ),
            (
                r#"{"tiers":{"ANON":{"limits":[]},"BASIC":{"limits":[{"id":"q","limit":100,"window":"1d"}]}},"routes":[{"name":"a","path":"/a","limits":[{"id":"q","limit":100,"window":"1d","mode":"shadow"}]}]}"#.to_owned(),
                "routes[0].limits[0].id",
                "unit or mode",
            ),
        ];
        for (json, path, needle) in table {
            rejects(&json, path, needle);
        }
    }

    #[test]
    fn a_token_limit_does_not_bound_the_request_cost() {
        let p = parse(
            r#"{"routes":[{"name":"a","path":"/a","cost":5,"limits":[{"limit":1000,"window":"1d","unit":"tokens"}]}]}"#,
        );
        assert!(p.is_ok(), "{p:?}");
    }

    #[test]
    fn overrides_hold_enforced_request_limits_only() {
        let raw: Vec<RawLimit> = serde_json::from_str(r#"[{"limit":5,"window":"1h","mode":"shadow"}]"#).expect("raw");
        let e = override_limits(&raw).expect_err("shadow override");
        assert_eq!(e.path, "limits[0].mode");
        let raw: Vec<RawLimit> = serde_json::from_str(r#"[{"limit":5,"window":"1h","unit":"tokens"}]"#).expect("raw");
        assert_eq!(override_limits(&raw).expect_err("unit").path, "limits[0].unit");
    }

    #[test]
    fn valid_origins_are_accepted() {
        for o in ["https://app.example.com", "http://localhost:3000", "http://127.0.0.1:8787", "http://[::1]:3000"] {
            assert!(is_origin(o), "{o}");
        }
        for o in ["https://", "ftp://a.example", "https://a.example:", "https://a.example:123456", "https://a b"] {
            assert!(!is_origin(o), "{o}");
        }
    }

    #[test]
    fn json_syntax_errors_give_line_and_column() {
        let e = parse("{\n  \"namespace\": \"x\",\n  \"routes\": [,]\n}").unwrap_err();
        assert!(e.message.contains("line 3, column"), "{e}");
        assert_eq!(e.path, "routes[0]");
        let e = parse("{} {}").unwrap_err();
        assert_eq!(e.path, "");
        assert!(e.message.contains("trailing characters (line 1, column 4)"), "{e}");
        let e = parse("[]").unwrap_err();
        assert!(e.message.contains("expected a policy object"), "{e}");
        let e = parse("{\"routes\": [{\"name\": \"a\", \"name\": \"b\", \"path\": \"/\"}]}").unwrap_err();
        assert_eq!(e.path, "routes[0]");
        assert!(e.message.contains("duplicate field \"name\""), "{e}");
    }

    #[test]
    fn override_limits_are_validated_like_tier_limits() {
        let raw: Vec<RawLimit> =
            serde_json::from_str(r#"[{"limit": 5, "window": "1m"}, {"id": "daily", "limit": 50, "window": "1d"}]"#)
                .unwrap();
        let limits = override_limits(&raw).unwrap();
        assert_eq!(limits[0].id, "override-custom-1m");
        assert_eq!(limits[1].id, "daily");
        let zero: Vec<RawLimit> = serde_json::from_str(r#"[{"limit": 0, "window": "1m"}]"#).unwrap();
        assert_eq!(override_limits(&zero).unwrap_err().path, "limits[0].limit");
    }

    #[test]
    fn error_display_starts_with_the_variable_name() {
        let e = parse(r#"{"cache_classes":{"SESSION":{"ttl":"0s"}}}"#).unwrap_err();
        assert_eq!(e.to_string(), "TOLLGATE_POLICY: cache_classes.SESSION.ttl: must be finite and greater than 0");
    }

    #[test]
    fn wrangler_toml_without_the_variable_means_the_defaults() {
        assert_eq!(from_wrangler_toml("name = \"w\"\n").unwrap(), defaults::policy());
        assert_eq!(from_wrangler_toml("[vars]\nORIGIN_URL = \"http://127.0.0.1:9\"\n").unwrap(), defaults::policy());
    }

    #[test]
    fn wrangler_toml_accepts_a_table() {
        let toml = r#"
name = "tollgate"

[vars]
ORIGIN_URL = "http://127.0.0.1:8000"

[vars.TOLLGATE_POLICY]
namespace = "shop"
default_tier = "PRO"

[vars.TOLLGATE_POLICY.tiers.ANON]
limits = [ { limit = 10, window = "1m" } ]

[vars.TOLLGATE_POLICY.tiers.PRO]
limits = [ { limit = 1000, window = "1h", algorithm = "gcra" } ]

[[vars.TOLLGATE_POLICY.routes]]
name = "chat"
path = "/api/chat*"
limits = [ { limit = 20, window = "1m" } ]

[vars.TOLLGATE_POLICY.cache_classes.STATIC_CONFIG]
ttl = "12h"
jitter = 0.2
"#;
        let p = from_wrangler_toml(toml).unwrap();
        assert_eq!(p.namespace, "shop");
        assert_eq!(p.default_tier, "PRO");
        assert_eq!(p.tier("PRO").unwrap().limits[0].algorithm, Algorithm::Gcra);
        assert_eq!(p.routes.len(), 1);
        assert_eq!(p.cache_class("STATIC_CONFIG").unwrap().jitter, 0.2);
    }

    #[test]
    fn wrangler_toml_accepts_a_json_string() {
        let toml = "[vars]\nTOLLGATE_POLICY = '{\"namespace\": \"shop\", \"routes\": []}'\n";
        let p = from_wrangler_toml(toml).unwrap();
        assert_eq!(p.namespace, "shop");
        assert!(p.routes.is_empty());
    }

    #[test]
    fn wrangler_toml_errors_name_the_field_in_either_form() {
        let table = "[vars.TOLLGATE_POLICY]\nroutes = [ { name = \"a\", path = \"/a\", limits = [ { limit = 0, window = \"1m\" } ] } ]\n";
        let e = from_wrangler_toml(table).unwrap_err();
        assert_eq!(e.path, "routes[0].limits[0].limit");
        let e = from_wrangler_toml("[vars.TOLLGATE_POLICY]\nroutes = [ { name = \"a\", path = \"/a\", limt = 1 } ]\n")
            .unwrap_err();
        assert_eq!((e.path.as_str(), e.message.starts_with("unknown field \"limt\"")), ("routes[0]", true), "{e}");
        let e =
            from_wrangler_toml("[vars]\nTOLLGATE_POLICY = '{\"cache_classes\": {\"SESSION\": {\"ttl\": \"0s\"}}}'\n")
                .unwrap_err();
        assert_eq!(e.path, "cache_classes.SESSION.ttl");
        let e = from_wrangler_toml("[vars.TOLLGATE_POLICY]\nredis = { timeout = 50 }\n").unwrap_err();
        assert_eq!(e.path, "redis.timeout");
        assert!(e.message.contains("expected a duration string"), "{e}");
        let e = from_wrangler_toml("[vars.TOLLGATE_POLICY.cache_classes.SESSION]\njitter = nan\n").unwrap_err();
        assert_eq!(e.path, "cache_classes.SESSION.jitter");
    }

    #[test]
    fn wrangler_toml_that_is_not_toml_or_has_the_wrong_shape_is_rejected() {
        let e = from_wrangler_toml("[vars\n").unwrap_err();
        assert!(e.message.starts_with("wrangler.toml is not valid TOML"), "{e}");
        assert!(e.message.contains("line 1"), "{e}");
        let e = from_wrangler_toml("[vars]\nTOLLGATE_POLICY = 3\n").unwrap_err();
        assert!(e.message.contains("must be a table or a JSON string, not integer"), "{e}");
        let e = from_wrangler_toml("vars = 1\n").unwrap_err();
        assert!(e.message.contains("[vars] must be a table"), "{e}");
    }
}
