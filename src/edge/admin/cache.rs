//! `POST /_tollgate/invalidate` and `POST /_tollgate/warm`.

use serde::Deserialize;
use serde_json::json;

use crate::cache::{self, InvalidationTarget};
use crate::policy::{CacheKeySource, CacheRule, CacheScope, Route};

use super::super::error::AdminError;
use super::super::http::EdgeRequest;
use super::super::services::{Platform, Services};
use super::{json_body, need_redis, ok, AdminResult};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InvalidateBody {
    route: Option<String>,
    key: Option<String>,
    pattern: Option<String>,
    tag: Option<String>,
    namespace: Option<String>,
    subject: Option<String>,
}

/// A cached route by name, and its rule.
fn cached_route<'p, P: Platform>(
    services: &'p Services<P>,
    name: &str,
) -> Result<(&'p Route, &'p CacheRule), AdminError> {
    let route = services
        .config
        .policy
        .routes
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| AdminError::BadRequest(format!("route: no route named {name:?}")))?;
    let rule = route.cache.as_ref().ok_or_else(|| AdminError::BadRequest(format!("route: {name:?} is not cached")))?;
    Ok((route, rule))
}

pub(super) async fn invalidate<P: Platform>(services: &Services<P>, req: &EdgeRequest) -> AdminResult {
    let body: InvalidateBody = json_body(req)?;
    need_redis(services)?;
    let cache_aside = services.cache.as_ref().ok_or(AdminError::RedisRequired)?;
    let subject_hash = match &body.subject {
        Some(s) => services
            .identifier
            .subject_hash_of(s, &services.config.policy.identity)
            .ok_or_else(|| AdminError::BadRequest("subject: not a valid subject".into()))?,
        None => String::new(),
    };
    let target = match (&body.route, &body.key, &body.pattern, &body.tag, &body.namespace) {
        (Some(route), Some(key), None, None, None) => {
            let (route, rule) = cached_route(services, route)?;
            let raw = match rule.key {
                CacheKeySource::Path => cache::key::path_key(&key.split('/').collect::<Vec<_>>(), None),
                CacheKeySource::JsonBody => key.clone(),
            };
            if rule.scope == CacheScope::Caller && subject_hash.is_empty() {
                return Err(AdminError::BadRequest("subject: required for a per-caller route".into()));
            }
            InvalidationTarget::Key {
                ns: cache::key::namespace(&route.name, rule.scope),
                key: cache::key::scoped(rule.scope, &subject_hash, &raw),
            }
        }
        (Some(route), None, Some(pattern), None, None) => {
            let (route, rule) = cached_route(services, route)?;
            InvalidationTarget::Pattern { ns: cache::key::namespace(&route.name, rule.scope), pattern: pattern.clone() }
        }
        (None, None, None, Some(tag), None) => InvalidationTarget::Tag(tag.clone()),
        (None, None, None, None, Some(ns)) => {
            let (route, rule) = cached_route(services, ns)?;
            InvalidationTarget::Namespace(cache::key::namespace(&route.name, rule.scope))
        }
        _ => {
            return Err(AdminError::BadRequest(
                "give exactly one of {route, key}, {route, pattern}, {tag} or {namespace}".into(),
            ))
        }
    };
    let done = cache_aside.invalidate(&target, &services.config.policy.cache_classes).await?;
    ok(json!({
        "kind": done.kind,
        "target": done.target,
        "deleted": done.deleted,
        "generation": done.generation,
        "published": done.published,
        "at_ms": done.at_ms,
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WarmBody {
    route: Option<String>,
    #[serde(default)]
    keys: Vec<String>,
}

pub(super) async fn warm<P: Platform>(services: &Services<P>, req: &EdgeRequest) -> AdminResult {
    let body: WarmBody = json_body(req)?;
    need_redis(services)?;
    if let Some(name) = &body.route {
        cached_route(services, name)?;
    }
    let Some(cache_aside) = &services.cache else { return ok(json!({"count": 0, "warmed": []})) };
    let warmed = cache::warm(cache_aside, &services.config.policy, body.route.as_deref(), &body.keys).await;
    let items: Vec<_> = warmed
        .iter()
        .map(|w| match &w.error {
            Some(error) => json!({"route": w.route, "key": w.key, "status": w.status, "error": error}),
            None => json!({"route": w.route, "key": w.key, "status": w.status}),
        })
        .collect();
    ok(json!({"count": items.len(), "warmed": items}))
}
