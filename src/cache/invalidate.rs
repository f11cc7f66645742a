//! Invalidation: by exact key, by glob pattern over cache keys, by tag, or a whole namespace, each
//! announced on the `system:cache_invalidation` channel; and which entry a write request touches.
//!
//! Costs: a key is one `DEL`; a pattern walks the keyspace with `SCAN MATCH … COUNT` (never
//! `KEYS`) and deletes what matches; a tag is one script (`SMEMBERS`, `DEL` members, `DEL` set,
//! atomically); a namespace is one script moving its generation forward, O(1) however many
//! entries it has (they become misses and expire on their own).
//!
//! Patterns are globs over the *cache key* of one namespace (config names such as `app*`); the
//! fixed prefix in front is escaped, so only the user's text acts as a glob. To match a literal
//! `*`, `?`, `[` or `\` in a name, write it with a backslash (`feature\*` matches `feature*`).

use std::sync::LazyLock;

use serde::Serialize;

use crate::keys::{escape_glob, Feature, Keys};
use crate::policy::{CacheClass, CacheKeySource, Policy};
use crate::redis::{Arg, Client, Command, RedisError, Reply, Script, Transport};

use super::key::{cache_key, namespace};
use super::ttl::max_entry_lifetime_ms;

/// The channel every invalidation is published on, as JSON.
pub const INVALIDATION_CHANNEL: &str = "system:cache_invalidation";

/// Shortest life of a generation key, ms (one day), whatever the classes say.
const MIN_GENERATION_TTL_MS: u64 = 24 * 60 * 60 * 1000;

static INVALIDATE_TAG: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/invalidate_tag.lua")));
static BUMP_GENERATION: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/bump_generation.lua")));

/// What to invalidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidationTarget {
    /// One entry: cache namespace and cache key.
    Key {
        /// Cache namespace (see [`super::key::namespace`]).
        ns: String,
        /// Cache key within it.
        key: String,
    },
    /// Entries of one namespace whose cache key matches a glob.
    Pattern {
        /// Cache namespace.
        ns: String,
        /// Redis glob over cache keys (`app*`, `feature\*x`).
        pattern: String,
    },
    /// Every entry carrying a tag.
    Tag(String),
    /// Every entry of a cache namespace.
    Namespace(String),
}

impl InvalidationTarget {
    /// `key`, `pattern`, `tag` or `namespace`.
    pub fn kind(&self) -> &'static str {
        match self {
            InvalidationTarget::Key { .. } => "key",
            InvalidationTarget::Pattern { .. } => "pattern",
            InvalidationTarget::Tag(_) => "tag",
            InvalidationTarget::Namespace(_) => "namespace",
        }
    }

    /// The target as announced: `ns/key`, `ns/pattern`, the tag, or the namespace.
    pub fn describe(&self) -> String {
        match self {
            InvalidationTarget::Key { ns, key } => format!("{ns}/{key}"),
            InvalidationTarget::Pattern { ns, pattern } => format!("{ns}/{pattern}"),
            InvalidationTarget::Tag(tag) => tag.clone(),
            InvalidationTarget::Namespace(ns) => ns.clone(),
        }
    }
}

/// The outcome of an invalidation; its JSON form is what is published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invalidation {
    /// `key`, `pattern`, `tag` or `namespace`.
    pub kind: &'static str,
    /// What was invalidated ([`InvalidationTarget::describe`]).
    pub target: String,
    /// Entries deleted (0 for a namespace: its entries become misses without being touched).
    pub deleted: u64,
    /// When, Unix ms (the isolate's clock).
    pub at_ms: u64,
    /// The namespace's new generation, for a namespace invalidation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Whether the announcement reached the channel (the invalidation itself happened anyway).
    #[serde(skip)]
    pub published: bool,
}

/// Runs invalidations against Redis.
#[derive(Debug)]
pub struct Invalidator<'a, T: Transport> {
    client: &'a Client<T>,
    keys: &'a Keys,
    generation_ttl_ms: u64,
}

impl<'a, T: Transport> Invalidator<'a, T> {
    /// An invalidator whose namespace bumps keep the generation at least as long as any entry of
    /// `classes` can live.
    pub fn new(client: &'a Client<T>, keys: &'a Keys, classes: &[CacheClass]) -> Self {
        let generation_ttl_ms = max_entry_lifetime_ms(classes).max(MIN_GENERATION_TTL_MS);
        Self { client, keys, generation_ttl_ms }
    }

    /// Invalidates `target` at `now_ms` and publishes the outcome.
    pub async fn run(&self, target: &InvalidationTarget, now_ms: u64) -> Result<Invalidation, RedisError> {
        let (deleted, generation) = match target {
            InvalidationTarget::Key { ns, key } => {
                let reply = self.client.command(Command::del([self.keys.cache_entry(ns, key)])).await?;
                (count(&reply)?, None)
            }
            InvalidationTarget::Pattern { ns, pattern } => {
                (self.client.delete_matching(&entry_match(self.keys, ns, pattern)).await?, None)
            }
            InvalidationTarget::Tag(tag) => {
                let (keys, args) = tag_args(self.keys, tag);
                (count(&self.client.eval(&INVALIDATE_TAG, &keys, &args).await?)?, None)
            }
            InvalidationTarget::Namespace(ns) => {
                let keys = vec![self.keys.cache_generation(ns)];
                let reply = self.client.eval(&BUMP_GENERATION, &keys, &[Arg::from(self.generation_ttl_ms)]).await?;
                (0, Some(count(&reply)?))
            }
        };
        let mut outcome = Invalidation {
            kind: target.kind(),
            target: target.describe(),
            deleted,
            at_ms: now_ms,
            generation,
            published: false,
        };
        if let Ok(message) = serde_json::to_string(&outcome) {
            let publish = Command::new("PUBLISH").arg(INVALIDATION_CHANNEL).arg(message);
            outcome.published = self.client.command(publish).await.is_ok();
        }
        Ok(outcome)
    }
}

/// The full `SCAN MATCH` pattern for a user's glob over the cache keys of namespace `ns`.
pub fn entry_match(keys: &Keys, ns: &str, pattern: &str) -> String {
    format!("{}{pattern}", escape_glob(&keys.cache_entry(ns, "")))
}

/// The tag-invalidation script (`scripts/invalidate_tag.lua`).
pub fn tag_script() -> &'static Script {
    &INVALIDATE_TAG
}

/// The namespace-bump script (`scripts/bump_generation.lua`).
pub fn bump_script() -> &'static Script {
    &BUMP_GENERATION
}

/// `KEYS` and `ARGV` of the tag script for `tag`.
pub fn tag_args(keys: &Keys, tag: &str) -> (Vec<String>, Vec<Arg>) {
    (vec![keys.cache_tag(tag)], vec![Arg::from(keys.key(Feature::Cache, "{c:"))])
}

/// The cached entry a successful write request makes out of date, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteTarget {
    /// The cached route's name (for stats and logs).
    pub route: String,
    /// The entry to invalidate.
    pub target: InvalidationTarget,
}

/// The entry a successful write to `path` invalidates: the one a `GET` of the same path (without
/// query) is served from, when that route is cached by path and lists `method` in its
/// `invalidate_on` (`PUT`, `PATCH`, `DELETE`, `POST` by default). `PUT /api/config/app` maps to
/// the `GET /api/config/app` entry; writes to JSON-body routes, to uncached paths, and methods
/// the route does not list map to none. Per-caller entries are the writer's own.
pub fn key_for_write(policy: &Policy, method: &str, path: &str, subject_hash: &str) -> Option<WriteTarget> {
    let (route, matched) = policy.route_for("GET", path)?;
    let rule = route.cache.as_ref()?;
    if rule.key != CacheKeySource::Path || !rule.invalidate_on.iter().any(|m| m.eq_ignore_ascii_case(method)) {
        return None;
    }
    let key = cache_key(rule, &matched, None, b"", subject_hash).ok()?;
    Some(WriteTarget {
        route: route.name.clone(),
        target: InvalidationTarget::Key { ns: namespace(&route.name, rule.scope), key },
    })
}

/// An integer reply as a count (negative values are not counts).
fn count(reply: &Reply) -> Result<u64, RedisError> {
    reply
        .to_i64()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| RedisError::Malformed(format!("expected a count, got {reply:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_escape_the_fixed_prefix_but_not_the_users_glob() {
        let keys = Keys::new("fa*ctory");
        assert_eq!(entry_match(&keys, "config", "app*"), "fa\\*ctory:cache:v1:{c:config}:e:app*");
        assert_eq!(entry_match(&Keys::default(), "cfg?", "feature\\*x"), "factory:cache:v1:{c:cfg\\?}:e:feature\\*x");
    }

    #[test]
    fn announcements_are_json_with_kind_target_deleted_and_time() {
        let t = InvalidationTarget::Pattern { ns: "config".into(), pattern: "app*".into() };
        let inv = Invalidation {
            kind: t.kind(),
            target: t.describe(),
            deleted: 3,
            at_ms: 17,
            generation: None,
            published: true,
        };
        assert_eq!(
            serde_json::to_string(&inv).unwrap(),
            r#"{"kind":"pattern","target":"config/app*","deleted":3,"at_ms":17}"#
        );
        let ns = InvalidationTarget::Namespace("rag".into());
        let inv = Invalidation {
            kind: ns.kind(),
            target: ns.describe(),
            deleted: 0,
            at_ms: 1,
            generation: Some(9),
            published: false,
        };
        assert_eq!(
            serde_json::to_string(&inv).unwrap(),
            r#"{"kind":"namespace","target":"rag","deleted":0,"at_ms":1,"generation":9}"#
        );
        assert_eq!(InvalidationTarget::Tag("t".into()).kind(), "tag");
        assert_eq!(InvalidationTarget::Key { ns: "a".into(), key: "b".into() }.describe(), "a/b");
    }

    #[test]
    fn scripts_state_their_contract() {
        for s in [tag_script(), bump_script()] {
            assert!(s.source().contains("KEYS[1]") && s.source().contains("ARGV[1]") && s.source().contains("Returns"));
        }
        let (keys, args) = tag_args(&Keys::default(), "config");
        assert_eq!(keys, ["factory:cache:v1:tag:config"]);
        assert_eq!(args, [Arg::from("factory:cache:v1:{c:")]);
    }

    #[test]
    fn a_write_to_a_cached_path_maps_to_the_entry_its_get_reads() {
        let policy = Policy::default();
        let expected = |key: &str| WriteTarget {
            route: "config".into(),
            target: InvalidationTarget::Key { ns: "config".into(), key: key.into() },
        };
        for method in ["PUT", "patch", "DELETE", "POST"] {
            assert_eq!(key_for_write(&policy, method, "/api/config/app", "h"), Some(expected("app")), "{method}");
        }
        assert_eq!(key_for_write(&policy, "PUT", "/api/config/app?v=2", "h"), Some(expected("app")));
        assert_eq!(key_for_write(&policy, "GET", "/api/config/app", "h"), None);
        assert_eq!(key_for_write(&policy, "HEAD", "/api/config/app", "h"), None);
        assert_eq!(key_for_write(&policy, "POST", "/api/rag/context", "h"), None, "body-keyed routes are reads");
        assert_eq!(key_for_write(&policy, "PUT", "/api/chat/1", "h"), None);
        assert_eq!(key_for_write(&policy, "PUT", "/api/config/a/b", "h"), None);
        let mut narrow = policy.clone();
        for route in &mut narrow.routes {
            if let Some(rule) = route.cache.as_mut() {
                rule.invalidate_on = vec!["PUT".to_owned()];
            }
        }
        assert_eq!(key_for_write(&narrow, "PUT", "/api/config/app", "h"), Some(expected("app")));
        for method in ["POST", "DELETE", "PATCH"] {
            assert_eq!(key_for_write(&narrow, method, "/api/config/app", "h"), None, "{method} is not listed");
        }
    }
}
