//! Warming: fill the hot keys of path-keyed, shared routes before anyone asks (the cron trigger
//! and `POST /_tollgate/warm`). Each key is checked the way a request's path would be: it must
//! fill the route's pattern and match it back to the same values.

use crate::clock::Sleeper;
use crate::policy::{CacheKeySource, CacheScope, Policy};
use crate::redis::Transport;

use super::{key, CacheAside, CacheTarget, Origin, OriginRequest, Payload};

/// What warming did with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warmed {
    /// The route's name.
    pub route: String,
    /// The key as given (the route's path parameters joined by `/`).
    pub key: String,
    /// `HIT`, `MISS`, `STALE`, `UNCACHEABLE` (the origin's answer may not be stored) or `ERROR`.
    pub status: &'static str,
    /// What went wrong, for `ERROR`.
    pub error: Option<String>,
}

impl Warmed {
    fn error(route: &str, key: &str, error: String) -> Self {
        Self { route: route.to_owned(), key: key.to_owned(), status: "ERROR", error: Some(error) }
    }
}

/// Fills every configured `warm` key of every path-keyed, shared route of `policy` (or only of
/// `only_route`, with `keys` instead of its configured ones when given).
pub async fn warm<T, O, S>(
    cache: &CacheAside<T, O, S>,
    policy: &Policy,
    only_route: Option<&str>,
    keys: &[String],
) -> Vec<Warmed>
where
    T: Transport + Clone + 'static,
    O: Origin + 'static,
    S: Sleeper + 'static,
{
    let mut warmed = Vec::new();
    for route in policy.routes.iter().filter(|r| only_route.is_none_or(|n| r.name == n)) {
        let Some(rule) = &route.cache else { continue };
        if rule.key != CacheKeySource::Path || rule.scope != CacheScope::Global {
            continue;
        }
        let Some(class) = policy.cache_class(&rule.class) else { continue };
        let wanted: &[String] = if only_route.is_some() && !keys.is_empty() { keys } else { &rule.warm };
        let names = route.pattern.params().count();
        for raw in wanted {
            let values: Vec<&str> = raw.split('/').collect();
            if values.len() != names || values.iter().any(|v| v.is_empty()) {
                warmed.push(Warmed::error(&route.name, raw, format!("expected {names} path segment(s)")));
                continue;
            }
            // The key must be what a request's normalized path would carry: it fills the pattern,
            // the path is in normal form and reads back to the same values (no `/`, `?`, `#`, dot
            // segments or spellings a request could never have).
            let matched = match route.pattern.warm_match(raw) {
                Some(m) if route.pattern.params().zip(&values).all(|(n, v)| m.get(n) == Some(*v)) => m,
                _ => {
                    warmed.push(Warmed::error(&route.name, raw, "not a valid path segment".to_owned()));
                    continue;
                }
            };
            let Ok(cache_key) = key::cache_key(rule, &matched, None, b"", "") else { continue };
            let target = CacheTarget::new(&route.name, rule, class.clone(), cache_key);
            let request = OriginRequest {
                method: "GET".into(),
                path_and_query: route.fill_path(&matched),
                headers: vec![("x-tollgate-caller".into(), "warmer".into())],
                body: Vec::new(),
            };
            let entry = match cache.get_or_load(&target, request).await {
                Ok(served) => {
                    let status = match served.payload {
                        Payload::Cached(_) => served.status.as_str(),
                        Payload::Passthrough(_) => "UNCACHEABLE",
                    };
                    Warmed { route: route.name.clone(), key: raw.clone(), status, error: None }
                }
                Err(e) => Warmed::error(&route.name, raw, e.to_string()),
            };
            warmed.push(entry);
        }
    }
    warmed
}
