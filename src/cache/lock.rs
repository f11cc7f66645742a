//! The fill lock across isolates: `SET lock token NX PX ttl` to take it, a compare-and-delete
//! script to give it back, so only the owner ever releases it and a crashed owner's lock simply
//! expires after `lock_ttl_ms`. Pure command builders and reply parsing; the caller sends them.

use std::sync::LazyLock;

use crate::keys::Keys;
use crate::redis::{Arg, Command, RedisError, Reply, Script};

static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/release_lock.lua")));
static STORE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("scripts/store_entry.lua")));

/// The script that stores a filled entry with its tags and releases the fill lock
/// (`scripts/store_entry.lua`): the whole write of a miss in one command.
pub fn store_script() -> &'static Script {
    &STORE
}

/// The lock key guarding the fill of `entry_key`.
pub fn lock_key(keys: &Keys, entry_key: &str) -> String {
    keys.lock(entry_key)
}

/// `SET lock_key token NX PX lock_ttl_ms`: takes the lock if nobody holds it.
pub fn acquire_command(lock_key: &str, token: &str, lock_ttl_ms: u32) -> Command {
    Command::new("SET").arg(lock_key).arg(token).arg("NX").arg("PX").arg(lock_ttl_ms.max(1))
}

/// Whether the reply to [`acquire_command`] means the lock was taken (`OK`; nil = held by another).
pub fn lock_acquired(reply: &Reply) -> bool {
    match reply {
        Reply::Ok => true,
        Reply::Bulk(b) => b == b"OK",
        _ => false,
    }
}

/// The compare-and-delete script (`scripts/release_lock.lua`).
pub fn release_script() -> &'static Script {
    &RELEASE
}

/// `KEYS` and `ARGV` of [`release_script`] for the owner holding `token`.
pub fn release_args(lock_key: &str, token: &str) -> (Vec<String>, Vec<Arg>) {
    (vec![lock_key.to_owned()], vec![Arg::from(token)])
}

/// What releasing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockRelease {
    /// The caller owned the lock; it is gone.
    Released,
    /// The caller did not own it (expired, or now another owner's); nothing was deleted.
    NotOwner,
}

impl LockRelease {
    /// Reads the release script's reply (1 or 0).
    pub fn from_reply(reply: &Reply) -> Result<Self, RedisError> {
        match reply.to_i64() {
            Some(1) => Ok(LockRelease::Released),
            Some(0) => Ok(LockRelease::NotOwner),
            _ => Err(RedisError::Malformed(format!("lock release answered {reply:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acquire_is_set_nx_px_with_the_token() {
        let cmd = acquire_command("l", "tok", 5000);
        let json = serde_json::to_string(&cmd).unwrap();
        assert_eq!(json, r#"["SET","l","tok","NX","PX",5000]"#);
        assert!(serde_json::to_string(&acquire_command("l", "t", 0)).unwrap().ends_with(",1]"));
    }

    #[test]
    fn replies_are_read_as_redis_sends_them() {
        assert!(lock_acquired(&Reply::Ok));
        assert!(lock_acquired(&Reply::Bulk(b"OK".to_vec())));
        assert!(!lock_acquired(&Reply::Nil));
        assert_eq!(LockRelease::from_reply(&Reply::Int(1)), Ok(LockRelease::Released));
        assert_eq!(LockRelease::from_reply(&Reply::Int(0)), Ok(LockRelease::NotOwner));
        assert!(LockRelease::from_reply(&Reply::Nil).is_err());
    }

    #[test]
    fn the_release_script_states_its_contract_and_compares_before_deleting() {
        let src = release_script().source();
        assert!(src.contains("KEYS[1]") && src.contains("ARGV[1]") && src.contains("Returns"));
        assert!(src.find("GET").unwrap() < src.find("DEL").unwrap());
        let (keys, args) = release_args("l", "tok");
        assert_eq!(keys, ["l"]);
        assert_eq!(args, [Arg::from("tok")]);
    }

    #[test]
    fn lock_keys_hash_the_entry_key() {
        let k = lock_key(&Keys::default(), "factory:cache:v1:{c:config}:e:app");
        assert!(k.starts_with("factory:lock:v1:") && !k.contains("app"));
    }
}
