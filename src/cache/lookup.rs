//! The cache read that rides in the edge's `/pipeline` next to the rate-limit check, and what its
//! reply means.
//!
//! One `MGET` returns the namespace's generation and the entry together (both keys share the hash
//! tag `{c:<ns>}`). An entry is served only while its recorded generation equals the current one,
//! so bumping the generation invalidates a whole namespace at once.

use crate::keys::Keys;
use crate::redis::{Command, Reply};

use super::entry::{Entry, MAX_DECODED_BODY_BYTES};

/// What the cache holds for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A fresh entry: serve it.
    Fresh(Entry),
    /// An entry past freshness but inside its stale window: serve it and refresh.
    Stale(Entry),
    /// Nothing usable (absent, expired, invalidated, undecodable): fill it under `generation`.
    Miss {
        /// The namespace's current generation, recorded in the entry the fill stores.
        generation: u64,
    },
}

impl Lookup {
    /// The generation an entry stored after this read must carry.
    pub fn generation(&self) -> u64 {
        match self {
            Lookup::Fresh(e) | Lookup::Stale(e) => e.generation,
            Lookup::Miss { generation } => *generation,
        }
    }
}

/// `MGET <generation key> <entry key>` for `cache_key` in the cache namespace `route_ns`.
pub fn read_command(keys: &Keys, route_ns: &str, cache_key: &str) -> Command {
    Command::new("MGET").arg(keys.cache_generation(route_ns)).arg(keys.cache_entry(route_ns, cache_key))
}

/// Classifies the reply to [`read_command`] at `now_ms`, decoding bodies up to
/// [`MAX_DECODED_BODY_BYTES`].
pub fn classify_read(reply: &Reply, now_ms: u64) -> Lookup {
    classify_read_limited(reply, now_ms, MAX_DECODED_BODY_BYTES)
}

/// Like [`classify_read`], refusing bodies above `max_body_bytes` (the policy's limit).
///
/// A value that does not decode or validate is a miss (the fill overwrites it); so is a reply
/// of an unexpected shape, with generation 0.
pub fn classify_read_limited(reply: &Reply, now_ms: u64, max_body_bytes: u32) -> Lookup {
    let Some([generation, value]) = reply.as_array() else {
        return Lookup::Miss { generation: 0 };
    };
    let generation = match generation {
        Reply::Nil => 0,
        other => other.to_i64().and_then(|g| u64::try_from(g).ok()).unwrap_or(0),
    };
    let Some(bytes) = value.as_bytes() else {
        return Lookup::Miss { generation };
    };
    match Entry::decode(bytes, max_body_bytes) {
        Ok(entry) if entry.generation != generation => Lookup::Miss { generation },
        Ok(entry) if entry.is_fresh(now_ms) => Lookup::Fresh(entry),
        Ok(entry) if entry.is_servable(now_ms) => Lookup::Stale(entry),
        _ => Lookup::Miss { generation },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::tests::sample;

    fn reply(generation: Option<&str>, value: Option<Vec<u8>>) -> Reply {
        Reply::Array(vec![
            generation.map_or(Reply::Nil, |g| Reply::Bulk(g.as_bytes().to_vec())),
            value.map_or(Reply::Nil, Reply::Bulk),
        ])
    }

    #[test]
    fn the_read_is_one_mget_of_generation_and_entry_in_one_slot() {
        let cmd = read_command(&Keys::default(), "config", "app");
        assert_eq!(
            serde_json::to_string(&cmd).unwrap(),
            r#"["MGET","factory:cache:v1:{c:config}:gen","factory:cache:v1:{c:config}:e:app"]"#
        );
    }

    #[test]
    fn entries_are_fresh_then_stale_then_missing() {
        let e = sample(b"body"); // generation 3, fresh until 2000, stale until 3000
        let r = reply(Some("3"), Some(e.encode(0).into_bytes()));
        assert_eq!(classify_read(&r, 1500), Lookup::Fresh(e.clone()));
        assert_eq!(classify_read(&r, 2000), Lookup::Stale(e));
        assert_eq!(classify_read(&r, 3000), Lookup::Miss { generation: 3 });
    }

    #[test]
    fn an_entry_of_another_generation_is_a_miss() {
        let e = sample(b"body");
        let value = e.encode(0).into_bytes();
        assert_eq!(classify_read(&reply(Some("4"), Some(value.clone())), 1500), Lookup::Miss { generation: 4 });
        assert_eq!(classify_read(&reply(None, Some(value)), 1500), Lookup::Miss { generation: 0 });
        let mut e0 = sample(b"body");
        e0.generation = 0;
        assert_eq!(classify_read(&reply(None, Some(e0.encode(0).into_bytes())), 1500), Lookup::Fresh(e0));
    }

    #[test]
    fn corrupted_or_truncated_values_are_misses() {
        let value = sample(&b"body".repeat(50)).encode(0).into_bytes();
        for bad in [b"junk".to_vec(), value[..value.len() - 3].to_vec(), value[..20].to_vec()] {
            assert_eq!(classify_read(&reply(Some("3"), Some(bad)), 1500), Lookup::Miss { generation: 3 });
        }
        assert_eq!(classify_read(&reply(Some("3"), None), 1500), Lookup::Miss { generation: 3 });
        assert_eq!(classify_read(&Reply::Nil, 1500), Lookup::Miss { generation: 0 });
        assert_eq!(classify_read(&reply(Some("x"), None), 1500), Lookup::Miss { generation: 0 });
    }

    #[test]
    fn the_body_limit_applies() {
        let value = sample(&[b'x'; 100]).encode(1 << 20).into_bytes();
        assert_eq!(classify_read_limited(&reply(Some("3"), Some(value)), 1500, 99), Lookup::Miss { generation: 3 });
    }
}
