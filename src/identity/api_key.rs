//! API keys: `tg_<id>_<secret>`, shown once at creation, stored only as a SHA-256 in a registry in
//! Redis, looked up through a small in-isolate cache.
//!
//! # The key
//!
//! `tg_<id>_<secret>`: the id is 12 lowercase hex characters (shown in listings, names the key in
//! `DELETE keys/{id}`), the secret 32 random bytes in unpadded base64url (43 characters). The
//! shape is checked before any Redis lookup: a malformed key is a `401` that costs no command.
//!
//! # The registry
//!
//! - `{ns}:auth:v1:key:<sha256 of the whole key>` → the [`KeyRecord`] as compact JSON. It holds the
//!   caller's subject **hash**, never the raw subject, and never the key.
//! - `{ns}:auth:v1:keys` → a hash from key id to key hash, for listing and revoking by id.
//!
//! Records have **no TTL**: the one documented exception to "everything Tollgate writes expires".
//! An expiring key would silently break a customer's integration on some later day, and refreshing
//! a TTL on every use would add a billed write to every request. Records are small, their number is
//! bounded by the keys an operator issued, and the index lists every one, so none is ever lost
//! track of. Revoking replaces the record with a tombstone that does expire (30 days: long enough
//! for callers to be told "revoked" rather than "unknown"), and removes the key from the index.
//!
//! Because lookups are cached per isolate for `identity.api_key_cache` (30 s by default), a revoked
//! key can still pass in an isolate that saw it valid within that time.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AuthError;
use crate::clock::Random;
use crate::keys::{sha256_hex, Keys};
use crate::redis::{Command, Reply};

/// Every key starts with this.
pub const PREFIX: &str = "tg_";
/// Length of the id, lowercase hex characters.
pub const ID_LEN: usize = 12;
/// Length of the secret: 32 bytes in unpadded base64url.
pub const SECRET_LEN: usize = 43;
/// Length of a whole key.
pub const KEY_LEN: usize = PREFIX.len() + ID_LEN + 1 + SECRET_LEN;
/// How long a revoked key's tombstone stays, ms (30 days).
pub const TOMBSTONE_TTL_MS: u64 = 30 * 24 * 3_600_000;
/// How long an isolate remembers that a key is unknown or revoked, ms. Short, so a key created
/// a moment after a failed try works soon; long enough to absorb a retry storm with a bad key.
pub const NEGATIVE_TTL_MS: u64 = 5_000;

/// The two parts of a well-formed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyParts<'k> {
    /// The 12-hex-character id.
    pub id: &'k str,
    /// The 43-character secret.
    pub secret: &'k str,
}

/// Whether `token` claims to be an API key (and so must parse as one, or be refused).
pub fn looks_like_key(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// Splits a key into id and secret if it has exactly the shape `tg_<12 hex>_<43 base64url>`.
pub fn parse(key: &str) -> Option<KeyParts<'_>> {
    if key.len() != KEY_LEN {
        return None;
    }
    let rest = key.strip_prefix(PREFIX)?;
    let (id, rest) = rest.split_at_checked(ID_LEN)?;
    let secret = rest.strip_prefix('_')?;
    let secret_ok = secret.len() == SECRET_LEN
        && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && URL_SAFE_NO_PAD.decode(secret).is_ok_and(|bytes| bytes.len() == 32);
    (is_key_id(id) && secret_ok).then_some(KeyParts { id, secret })
}

/// Whether `id` is a key id (12 lowercase hex characters), as in `DELETE keys/{id}`.
pub fn is_key_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The registry's name for a key: lowercase hex SHA-256 of the whole plaintext key.
pub fn key_hash(plaintext: &str) -> String {
    sha256_hex(plaintext.as_bytes())
}

/// What the registry knows about a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The key's id.
    pub id: String,
    /// Hash of the subject the key acts for (see [`super::subject_hash_of`]).
    pub subject_hash: String,
    /// Tier the key's calls are limited by.
    pub tier: String,
    /// Creation time, Unix ms.
    pub created_ms: u64,
    /// The operator's label for the key (`ci`, `mobile-app`), if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Revocation time, Unix ms; set only on tombstones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<u64>,
}

impl KeyRecord {
    /// Compact JSON, as stored.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Whether the key was revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked_ms.is_some()
    }
}

/// Creates a key for `subject_hash` in `tier`: the plaintext (to show once) and its record.
///
/// The secret is the SHA-256 of two 128-bit random tokens, the id comes from a third, so the id
/// says nothing about the secret.
pub fn generate<R: Random + ?Sized>(random: &R, subject_hash: &str, tier: &str, now_ms: u64) -> (String, KeyRecord) {
    let mut h = Sha256::new();
    h.update(random.token().as_bytes());
    h.update(b":");
    h.update(random.token().as_bytes());
    let secret = URL_SAFE_NO_PAD.encode(h.finalize());
    let id: String = sha256_hex(random.token().as_bytes()).chars().take(ID_LEN).collect();
    let key = format!("{PREFIX}{id}_{secret}");
    let record = KeyRecord {
        id,
        subject_hash: subject_hash.to_owned(),
        tier: tier.to_owned(),
        created_ms: now_ms,
        name: None,
        revoked_ms: None,
    };
    (key, record)
}

/// Stores a new key: `SET record NX` (no TTL, see the module docs) and `HSETNX index id hash`.
/// Send them in one MULTI/EXEC; the key exists only if the replies are `OK` and `1`
/// ([`created`]), otherwise an id or hash collided and a new key should be generated.
pub fn create_commands(keys: &Keys, record: &KeyRecord, key_hash: &str) -> Vec<Command> {
    vec![
        Command::new("SET").arg(keys.api_key(key_hash)).arg(record.to_json()).arg("NX"),
        Command::new("HSETNX").arg(keys.api_key_index()).arg(&record.id).arg(key_hash),
    ]
}

/// Whether the replies to [`create_commands`] say the key was stored.
pub fn created(replies: &[Reply]) -> bool {
    matches!(replies, [Reply::Ok, Reply::Int(1)])
}

/// `GET` of a key's record.
pub fn lookup_command(keys: &Keys, key_hash: &str) -> Command {
    Command::get(keys.api_key(key_hash))
}

/// The record in a lookup reply: unknown, revoked, or the key's record.
pub fn parse_lookup(reply: &Reply) -> Result<KeyRecord, AuthError> {
    match reply {
        Reply::Nil => Err(AuthError::UnknownKey),
        Reply::Bulk(bytes) => match serde_json::from_slice::<KeyRecord>(bytes) {
            Ok(record) if record.is_revoked() => Err(AuthError::Revoked),
            Ok(record) if !record.tier.is_empty() && !record.subject_hash.is_empty() => Ok(record),
            _ => Err(AuthError::CorruptRecord),
        },
        _ => Err(AuthError::CorruptRecord),
    }
}

/// `HGETALL` of the index (id → key hash); follow with one [`lookup_command`] per key, pipelined
/// (not `MGET`: records live in different cluster slots).
pub fn index_command(keys: &Keys) -> Command {
    Command::new("HGETALL").arg(keys.api_key_index())
}

/// `(id, key_hash)` pairs of an `HGETALL` reply, sorted by id; malformed entries are skipped.
pub fn parse_index(reply: &Reply) -> Vec<(String, String)> {
    let Some(items) = reply.as_array() else {
        return Vec::new();
    };
    let mut pairs: Vec<(String, String)> = items
        .chunks_exact(2)
        .filter_map(|pair| Some((pair[0].as_str()?.to_owned(), pair[1].as_str()?.to_owned())))
        .collect();
    pairs.sort();
    pairs
}

/// `HGET` of one id in the index, to find the key hash to revoke.
pub fn index_lookup_command(keys: &Keys, id: &str) -> Command {
    Command::new("HGET").arg(keys.api_key_index()).arg(id)
}

/// The key hash in an [`index_lookup_command`] reply, if the id is known.
pub fn parse_index_lookup(reply: &Reply) -> Option<String> {
    reply.as_str().map(str::to_owned)
}

/// Revokes a key: its record becomes an expiring tombstone, and its id leaves the index.
pub fn revoke_commands(keys: &Keys, id: &str, key_hash: &str, now_ms: u64) -> Vec<Command> {
    let tombstone = KeyRecord {
        id: id.to_owned(),
        subject_hash: String::new(),
        tier: String::new(),
        created_ms: 0,
        name: None,
        revoked_ms: Some(now_ms),
    };
    vec![
        Command::set_px(keys.api_key(key_hash), tombstone.to_json(), TOMBSTONE_TTL_MS),
        Command::new("HDEL").arg(keys.api_key_index()).arg(id),
    ]
}

/// Lookups remembered by one isolate: key hash → outcome, until a deadline.
///
/// Found keys are kept for the positive TTL (`identity.api_key_cache`), unknown and revoked ones
/// for [`NEGATIVE_TTL_MS`]; registry faults are never kept. Bounded: when full, expired entries go
/// first, then the one closest to expiry.
#[derive(Debug)]
pub struct KeyCache {
    entries: HashMap<String, (Result<KeyRecord, AuthError>, u64)>,
    capacity: usize,
    positive_ttl_ms: u64,
    negative_ttl_ms: u64,
}

impl KeyCache {
    /// A cache of at most `capacity` keys, keeping found keys `positive_ttl_ms`.
    pub fn new(capacity: usize, positive_ttl_ms: u64) -> Self {
        Self { entries: HashMap::new(), capacity, positive_ttl_ms, negative_ttl_ms: NEGATIVE_TTL_MS }
    }

    /// The remembered outcome for `key_hash` at `now_ms`, if still valid.
    pub fn get(&mut self, key_hash: &str, now_ms: u64) -> Option<Result<KeyRecord, AuthError>> {
        match self.entries.get(key_hash) {
            Some((outcome, until)) if now_ms < *until => Some(outcome.clone()),
            _ => None,
        }
    }

    /// The record of a key found before, however long ago (kept until evicted): while the
    /// registry cannot be read, a key verified earlier keeps its tier.
    pub fn last_known(&self, key_hash: &str) -> Option<KeyRecord> {
        match self.entries.get(key_hash) {
            Some((Ok(record), _)) => Some(record.clone()),
            _ => None,
        }
    }

    /// Remembers the outcome of a lookup made at `now_ms`.
    pub fn put(&mut self, key_hash: &str, outcome: Result<KeyRecord, AuthError>, now_ms: u64) {
        let ttl = match &outcome {
            Ok(_) => self.positive_ttl_ms,
            Err(e) if e.is_definitive() => self.negative_ttl_ms,
            Err(_) => 0,
        };
        if ttl == 0 || self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(key_hash) {
            self.entries.retain(|_, (_, until)| *until > now_ms);
            if self.entries.len() >= self.capacity {
                let soonest = self.entries.iter().min_by_key(|(_, (_, until))| *until).map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    self.entries.remove(&k);
                }
            }
        }
        self.entries.insert(key_hash.to_owned(), (outcome, now_ms.saturating_add(ttl)));
    }

    /// Forgets one key (after revoking it through this isolate).
    pub fn remove(&mut self, key_hash: &str) {
        self.entries.remove(key_hash);
    }

    /// Number of remembered keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::clock::SystemRandom;

    /// Distinct tokens on every call, deterministically.
    struct Counter(Cell<u32>);

    impl Random for Counter {
        fn unit(&self) -> f64 {
            0.5
        }
        fn token(&self) -> String {
            self.0.set(self.0.get() + 1);
            format!("{:032x}", self.0.get())
        }
    }

    fn record() -> KeyRecord {
        KeyRecord {
            id: "0123456789ab".into(),
            subject_hash: "s".repeat(64),
            tier: "PRO".into(),
            created_ms: 1,
            name: None,
            revoked_ms: None,
        }
    }

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let (key, rec) = generate(&SystemRandom, "subj", "PRO", 1_700_000_000_000);
        assert_eq!(key.len(), KEY_LEN);
        let parts = parse(&key).unwrap();
        assert_eq!(parts.id, rec.id);
        assert_eq!((rec.subject_hash.as_str(), rec.tier.as_str(), rec.created_ms), ("subj", "PRO", 1_700_000_000_000));
        assert!(!rec.is_revoked());
        assert!(looks_like_key(&key));
    }

    #[test]
    fn generated_keys_differ() {
        let r = Counter(Cell::new(0));
        let (a, ra) = generate(&r, "s", "PRO", 0);
        let (b, rb) = generate(&r, "s", "PRO", 0);
        assert_ne!(a, b);
        assert_ne!(ra.id, rb.id);
        assert_ne!(parse(&a).unwrap().secret, parse(&b).unwrap().secret);
    }

    #[test]
    fn malformed_keys_are_refused_by_shape() {
        let (good, _) = generate(&SystemRandom, "s", "PRO", 0);
        assert!(parse(&good).is_some());
        let cases = [
            String::new(),
            "tg_".to_owned(),
            good[..KEY_LEN - 1].to_owned(),
            format!("{good}A"),
            good.replacen("tg_", "tk_", 1),
            format!("tg_0123456789AB_{}", &good[16..]),
            format!("tg_0123456789ab-{}", &good[16..]),
            format!("tg_0123456789ab_{}!", &good[16..KEY_LEN - 1]),
            format!("tg_0123456789ab_{}=", &good[16..KEY_LEN - 1]),
        ];
        for k in cases {
            assert!(parse(&k).is_none(), "{k}");
        }
    }

    #[test]
    fn key_ids_are_twelve_lowercase_hex() {
        assert!(is_key_id("0123456789ab"));
        assert!(!is_key_id("0123456789AB"));
        assert!(!is_key_id("0123456789a"));
        assert!(!is_key_id("0123456789ag"));
    }

    #[test]
    fn the_registry_stores_only_hashes() {
        let (key, rec) = generate(&SystemRandom, "subject-hash", "PRO", 5);
        let hash = key_hash(&key);
        assert_eq!(hash.len(), 64);
        let keys = Keys::default();
        let cmds = create_commands(&keys, &rec, &hash);
        assert_eq!(cmds.len(), 2);
        for c in &cmds {
            let json = serde_json::to_string(c).unwrap();
            assert!(!json.contains(&key), "{json}");
            assert!(!json.contains(parse(&key).unwrap().secret), "{json}");
        }
        assert_eq!(
            serde_json::to_value(&cmds[0]).unwrap(),
            serde_json::json!(["SET", format!("factory:auth:v1:key:{hash}"), rec.to_json(), "NX"])
        );
        assert_eq!(
            serde_json::to_value(&cmds[1]).unwrap(),
            serde_json::json!(["HSETNX", "factory:auth:v1:keys", rec.id, hash])
        );
    }

    #[test]
    fn records_are_compact_json() {
        assert_eq!(
            record().to_json(),
            format!(r#"{{"id":"0123456789ab","subject_hash":"{}","tier":"PRO","created_ms":1}}"#, "s".repeat(64))
        );
    }

    #[test]
    fn lookups_parse_found_unknown_revoked_and_corrupt() {
        assert_eq!(parse_lookup(&Reply::Bulk(record().to_json().into_bytes())), Ok(record()));
        assert_eq!(parse_lookup(&Reply::Nil), Err(AuthError::UnknownKey));
        assert_eq!(parse_lookup(&Reply::Bulk(b"{not json".to_vec())), Err(AuthError::CorruptRecord));
        assert_eq!(parse_lookup(&Reply::Int(1)), Err(AuthError::CorruptRecord));
        let keys = Keys::default();
        let revoke = revoke_commands(&keys, "0123456789ab", "h", 99);
        let tombstone = match &revoke[0].parts()[2] {
            crate::redis::Arg::Str(s) => s.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(parse_lookup(&Reply::Bulk(tombstone.into_bytes())), Err(AuthError::Revoked));
        assert_eq!(
            serde_json::to_value(&revoke[1]).unwrap(),
            serde_json::json!(["HDEL", "factory:auth:v1:keys", "0123456789ab"])
        );
        assert_eq!(revoke[0].name(), "SET");
        assert!(serde_json::to_string(&revoke[0]).unwrap().ends_with(&format!("\"PX\",{TOMBSTONE_TTL_MS}]")));
    }

    #[test]
    fn creation_succeeds_only_when_both_writes_happened() {
        assert!(created(&[Reply::Ok, Reply::Int(1)]));
        assert!(!created(&[Reply::Nil, Reply::Int(1)]));
        assert!(!created(&[Reply::Ok, Reply::Int(0)]));
    }

    #[test]
    fn the_index_lists_ids_and_hashes() {
        let reply = Reply::Array(vec![
            Reply::Bulk(b"bbbbbbbbbbbb".to_vec()),
            Reply::Bulk(b"h2".to_vec()),
            Reply::Bulk(b"aaaaaaaaaaaa".to_vec()),
            Reply::Bulk(b"h1".to_vec()),
        ]);
        assert_eq!(
            parse_index(&reply),
            [("aaaaaaaaaaaa".to_owned(), "h1".to_owned()), ("bbbbbbbbbbbb".to_owned(), "h2".to_owned())]
        );
        assert!(parse_index(&Reply::Nil).is_empty());
        assert_eq!(parse_index_lookup(&Reply::Bulk(b"h1".to_vec())).as_deref(), Some("h1"));
        assert_eq!(parse_index_lookup(&Reply::Nil), None);
        let keys = Keys::new("ns");
        assert_eq!(
            serde_json::to_value(index_command(&keys)).unwrap(),
            serde_json::json!(["HGETALL", "ns:auth:v1:keys"])
        );
        assert_eq!(
            serde_json::to_value(index_lookup_command(&keys, "aaaaaaaaaaaa")).unwrap(),
            serde_json::json!(["HGET", "ns:auth:v1:keys", "aaaaaaaaaaaa"])
        );
        assert_eq!(
            serde_json::to_value(lookup_command(&keys, "h1")).unwrap(),
            serde_json::json!(["GET", "ns:auth:v1:key:h1"])
        );
    }

    #[test]
    fn the_cache_keeps_found_keys_for_the_positive_ttl() {
        let mut c = KeyCache::new(8, 30_000);
        c.put("h", Ok(record()), 1_000);
        assert_eq!(c.get("h", 30_999), Some(Ok(record())));
        assert_eq!(c.get("h", 31_000), None);
        assert_eq!(c.last_known("h"), Some(record()), "still known for outages");
    }

    #[test]
    fn the_cache_keeps_unknown_keys_briefly_and_faults_not_at_all() {
        let mut c = KeyCache::new(8, 30_000);
        c.put("u", Err(AuthError::UnknownKey), 0);
        c.put("f", Err(AuthError::CorruptRecord), 0);
        assert_eq!(c.get("u", NEGATIVE_TTL_MS - 1), Some(Err(AuthError::UnknownKey)));
        assert_eq!(c.get("u", NEGATIVE_TTL_MS), None);
        assert_eq!(c.get("f", 0), None);
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_the_soonest_to_expire() {
        let mut c = KeyCache::new(2, 30_000);
        c.put("a", Ok(record()), 0);
        c.put("b", Err(AuthError::UnknownKey), 0);
        c.put("c", Ok(record()), 10);
        assert_eq!(c.len(), 2);
        assert!(c.get("b", 10).is_none());
        assert!(c.get("a", 10).is_some() && c.get("c", 10).is_some());
        c.remove("a");
        assert!(c.get("a", 10).is_none());
    }

    #[test]
    fn a_zero_ttl_or_capacity_caches_nothing() {
        let mut c = KeyCache::new(8, 0);
        c.put("a", Ok(record()), 0);
        assert!(c.is_empty());
        let mut c = KeyCache::new(0, 30_000);
        c.put("a", Ok(record()), 0);
        assert!(c.is_empty());
    }
}
