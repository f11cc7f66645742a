//! The Redis key namespace: `{namespace}:{feature}:{version}:{key}`, and identifier hashing.
//!
//! Caller identifiers (user ids, IP addresses, API keys, tokens) never appear raw in a key or a
//! value: they pass through an [`IdentifierHasher`] first. Keys that one script touches together
//! share a hash tag (`{…}`), so they live in one Redis Cluster slot.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Version segment of every key; bumped when a stored format changes incompatibly.
pub const VERSION: &str = "v1";

/// Hashes caller identifiers: HMAC-SHA256 keyed by the deployment's `TOLLGATE_HASH_SECRET`, or
/// plain SHA-256 without one.
///
/// The IPv4 space is small enough to hash whole, so a plain hash in Redis gives the address
/// away; a keyed one does not, without the secret. Hashes are stable for one secret (Redis keys
/// survive restarts and are shared by every isolate); a new secret gives every caller new keys.
#[derive(Clone)]
pub struct IdentifierHasher {
    /// The HMAC state after absorbing the key, cloned for each hash; `None` hashes plainly.
    keyed: Option<Hmac<Sha256>>,
}

impl IdentifierHasher {
    /// Plain SHA-256: what a deployment without `TOLLGATE_HASH_SECRET` gets.
    pub fn plain() -> Self {
        Self { keyed: None }
    }

    /// HMAC-SHA256 keyed by `secret`; an empty or absent secret hashes plainly.
    pub fn new(secret: Option<&[u8]>) -> Self {
        let keyed = secret.filter(|s| !s.is_empty()).and_then(|s| Hmac::<Sha256>::new_from_slice(s).ok());
        Self { keyed }
    }

    /// Whether hashes are keyed by a secret.
    pub fn is_keyed(&self) -> bool {
        self.keyed.is_some()
    }

    /// Lowercase hex hash of `kind:raw` (`kind` keeps `ip:1.2.3.4` and `user:1.2.3.4` apart).
    pub fn hash(&self, kind: &str, raw: &str) -> String {
        match &self.keyed {
            Some(mac) => {
                let mut mac = mac.clone();
                mac.update(kind.as_bytes());
                mac.update(b":");
                mac.update(raw.as_bytes());
                hex::encode(mac.finalize().into_bytes())
            }
            None => hash_identifier(kind, raw),
        }
    }
}

impl Default for IdentifierHasher {
    fn default() -> Self {
        Self::plain()
    }
}

impl fmt::Debug for IdentifierHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentifierHasher").field("keyed", &self.is_keyed()).finish()
    }
}

/// Lowercase hex SHA-256 of `kind:raw`, unkeyed: [`IdentifierHasher::plain`]'s hash. Callers on
/// the request path hash through the deployment's [`IdentifierHasher`] instead.
pub fn hash_identifier(kind: &str, raw: &str) -> String {
    let mut h = Sha256::new();
    h.update(kind.as_bytes());
    h.update(b":");
    h.update(raw.as_bytes());
    hex::encode(h.finalize())
}

/// Lowercase hex SHA-256 of arbitrary bytes (cache keys of request bodies, API keys).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The features that own parts of the namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    /// Limiter state and per-subject overrides.
    RateLimit,
    /// Cache entries, generations and tags.
    Cache,
    /// The API-key registry.
    Auth,
    /// Fill locks.
    Lock,
    /// Counters flushed from isolates.
    Stats,
}

impl Feature {
    /// The feature's key segment.
    pub fn as_str(self) -> &'static str {
        match self {
            Feature::RateLimit => "ratelimit",
            Feature::Cache => "cache",
            Feature::Auth => "auth",
            Feature::Lock => "lock",
            Feature::Stats => "stats",
        }
    }
}

/// Builds every key Tollgate writes, under one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    namespace: String,
}

impl Keys {
    /// Keys under `namespace` (`factory` by default).
    pub fn new(namespace: impl Into<String>) -> Self {
        Self { namespace: namespace.into() }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// `{namespace}:{feature}:v1:{rest}`.
    pub fn key(&self, feature: Feature, rest: &str) -> String {
        format!("{}:{}:{}:{}", self.namespace, feature.as_str(), VERSION, rest)
    }

    /// Prefix of every key of a feature, for `SCAN MATCH` (glob characters of the namespace escaped).
    pub fn feature_pattern(&self, feature: Feature) -> String {
        format!("{}:{}:{}:*", escape_glob(&self.namespace), feature.as_str(), VERSION)
    }

    /// State of one limit of one subject; all of a subject's keys share the tag `{subject_hash}`.
    pub fn limit_state(&self, subject_hash: &str, limit_id: &str) -> String {
        self.key(Feature::RateLimit, &format!("{{{subject_hash}}}:{limit_id}"))
    }

    /// What every subject's rate-limit key starts with: [`Keys::limit_state`] is this, then
    /// `{<subject_hash>}:<limit id>` (for the script that learns the subject from a key record).
    pub fn limit_base(&self) -> String {
        self.key(Feature::RateLimit, "")
    }

    /// A subject's override (another tier or limits), set through the admin API.
    pub fn limit_override(&self, subject_hash: &str) -> String {
        self.key(Feature::RateLimit, &format!("{{{subject_hash}}}:override"))
    }

    /// Concurrency leases of one subject on one route: a sorted set of lease ids scored by deadline.
    /// `:` never occurs in a limit id, so this never names a limit's state.
    pub fn limit_leases(&self, subject_hash: &str, route: &str) -> String {
        self.key(Feature::RateLimit, &format!("{{{subject_hash}}}:lease:{route}"))
    }

    /// Usage reservations of one subject in flight: a sorted set of `<id>:<units>:<unit>` scored by
    /// deadline, which the limiter scripts find under the subject's prefix
    /// ([`Keys::limit_state`] with an empty id). Holds `:`, so it never names a limit's state.
    pub fn limit_reservations(&self, subject_hash: &str) -> String {
        self.key(Feature::RateLimit, &format!("{{{subject_hash}}}:usage:reservations"))
    }

    /// Pattern matching every limiter key of one subject.
    pub fn limit_subject_pattern(&self, subject_hash: &str) -> String {
        format!("{}*", escape_glob(&self.key(Feature::RateLimit, &format!("{{{subject_hash}}}:"))))
    }

    /// Registry record of an API key, by the key's SHA-256.
    pub fn api_key(&self, key_hash: &str) -> String {
        self.key(Feature::Auth, &format!("key:{key_hash}"))
    }

    /// Index of API keys: a hash from key id to key hash.
    pub fn api_key_index(&self) -> String {
        self.key(Feature::Auth, "keys")
    }

    /// Generation counter of a cache namespace; bumping it invalidates the namespace in O(1).
    /// Shares the hash tag `{c:<cache_ns>}` with the namespace's entries.
    pub fn cache_generation(&self, cache_ns: &str) -> String {
        self.key(Feature::Cache, &format!("{{c:{cache_ns}}}:gen"))
    }

    /// One cache entry of a cache namespace (usually the route name), by its key's hash.
    pub fn cache_entry(&self, cache_ns: &str, key_hash: &str) -> String {
        self.key(Feature::Cache, &format!("{{c:{cache_ns}}}:e:{key_hash}"))
    }

    /// Pattern for every entry of a cache namespace (glob characters escaped).
    pub fn cache_entry_pattern(&self, cache_ns: &str) -> String {
        format!("{}*", escape_glob(&self.key(Feature::Cache, &format!("{{c:{cache_ns}}}:e:"))))
    }

    /// Set of entry keys carrying a tag.
    pub fn cache_tag(&self, tag: &str) -> String {
        self.key(Feature::Cache, &format!("tag:{tag}"))
    }

    /// Fill lock of one cache entry key.
    pub fn lock(&self, entry_key: &str) -> String {
        self.key(Feature::Lock, &sha256_hex(entry_key.as_bytes()))
    }

    /// Counters flushed by isolates, one hash per UTC hour bucket.
    pub fn stats(&self, bucket: &str) -> String {
        self.key(Feature::Stats, bucket)
    }
}

impl Default for Keys {
    fn default() -> Self {
        Self::new("factory")
    }
}

/// Escapes Redis glob characters (`* ? [ ] \`) so `s` matches only itself in `SCAN MATCH`.
pub fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_namespace_feature_version_key() {
        let k = Keys::default();
        assert_eq!(k.key(Feature::Cache, "x"), "factory:cache:v1:x");
        assert_eq!(k.api_key("ab"), "factory:auth:v1:key:ab");
    }

    #[test]
    fn a_subjects_limit_keys_share_one_hash_tag() {
        let k = Keys::new("ns");
        let a = k.limit_state("abc", "tier-basic");
        let b = k.limit_state("abc", "route-chat");
        assert_eq!(a, "ns:ratelimit:v1:{abc}:tier-basic");
        assert!(b.contains("{abc}"));
        assert!(k.limit_override("abc").contains("{abc}"));
        assert_eq!(k.limit_reservations("abc"), format!("{}usage:reservations", k.limit_state("abc", "")));
    }

    #[test]
    fn identifiers_are_hashed_with_their_kind() {
        let ip = hash_identifier("ip", "10.0.0.1");
        assert_eq!(ip.len(), 64);
        assert_ne!(ip, hash_identifier("user", "10.0.0.1"));
        assert!(!ip.contains("10.0.0.1"));
    }

    #[test]
    fn without_a_secret_the_hash_is_plain_sha256() {
        for hasher in [IdentifierHasher::plain(), IdentifierHasher::new(None), IdentifierHasher::new(Some(b""))] {
            assert!(!hasher.is_keyed());
            assert_eq!(hasher.hash("ip", "10.0.0.1"), hex::encode(Sha256::digest(b"ip:10.0.0.1")));
        }
    }

    #[test]
    fn a_secret_keys_the_hash_with_hmac_sha256() {
        let hasher = IdentifierHasher::new(Some(b"deployment-secret"));
        assert!(hasher.is_keyed());
        let mut mac = Hmac::<Sha256>::new_from_slice(b"deployment-secret").unwrap();
        mac.update(b"ip:10.0.0.1");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(hasher.hash("ip", "10.0.0.1"), expected);
        assert_ne!(expected, hash_identifier("ip", "10.0.0.1"));
        assert_ne!(hasher.hash("ip", "10.0.0.1"), hasher.hash("user", "10.0.0.1"));
    }

    #[test]
    fn keyed_hashes_are_stable_for_one_secret_and_change_with_it() {
        let a = IdentifierHasher::new(Some(b"one"));
        assert_eq!(a.hash("user", "u1"), IdentifierHasher::new(Some(b"one")).hash("user", "u1"));
        assert_eq!(a.hash("user", "u1"), a.clone().hash("user", "u1"));
        assert_ne!(a.hash("user", "u1"), IdentifierHasher::new(Some(b"two")).hash("user", "u1"));
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let text = format!("{:?}", IdentifierHasher::new(Some(b"very-secret")));
        assert_eq!(text, "IdentifierHasher { keyed: true }");
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(escape_glob("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
