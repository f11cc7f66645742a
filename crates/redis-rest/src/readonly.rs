//! `FCALL_RO` the way Upstash runs it: a function that only reads may be called read-only
//! even when it is not registered with the `no-writes` flag (stock Redis refuses those with
//! "Can not execute a script with write flag using *_ro command"), and a write inside it is
//! refused with "Write commands are not allowed from read-only scripts".
//!
//! How: redis-rest creates an ACL user that may run everything except `@write` commands and
//! runs such calls as plain `FCALL` on a small pool of connections logged in as that user.
//! Redis's ACL check then refuses the function's first write before it happens; the ACL error
//! is reworded to Redis's own read-only wording. Where the user cannot be created (the
//! configured Redis user may not run `ACL SETUSER`), `FCALL_RO` goes to Redis unchanged.
//! Inside `/multi-exec` it always goes unchanged: a transaction cannot span two connections.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Mutex;

use crate::command::Command;
use crate::config::RedisTarget;
use crate::error::BackendError;
use crate::pool::Pool;
use crate::resp::Reply;

/// The ACL user read-only calls run as.
pub const USER: &str = "redis-rest-readonly";
/// Connections kept for read-only calls.
const POOL_SIZE: usize = 2;
/// Redis's wording for a write attempted by a read-only script.
const READ_ONLY_WRITE: &str = "ERR Write commands are not allowed from read-only scripts.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readiness {
    /// Not tried yet, or Redis lost the user (restart).
    Unknown,
    Ready,
    /// The configured user may not create users: pass `FCALL_RO` through.
    Unsupported,
}

/// Runs `FCALL_RO` with Upstash's semantics.
#[derive(Debug)]
pub struct ReadOnlyCalls {
    password: String,
    pool: Pool,
    readiness: Mutex<Readiness>,
}

impl ReadOnlyCalls {
    /// Needs a Tokio runtime (the pool's workers are spawned; they dial lazily).
    pub fn new(target: &RedisTarget, connect_timeout: Duration, command_timeout: Duration) -> Self {
        let password = random_password();
        let pool = Pool::new(target.as_user(USER, &password), POOL_SIZE, connect_timeout, command_timeout);
        Self { password, pool, readiness: Mutex::new(Readiness::Unknown) }
    }

    /// True for `FCALL_RO` (any case).
    pub fn applies_to(cmd: &Command) -> bool {
        cmd.upper_name().is_some_and(|n| n.as_bytes() == b"FCALL_RO")
    }

    /// Runs `cmd` (an `FCALL_RO`) read-only. `Ok(None)`: this Redis cannot host the
    /// read-only user, so the caller sends `cmd` as it is.
    pub async fn call(&self, main: &Pool, cmd: &Command) -> Result<Option<Reply>, BackendError> {
        let fcall = Command::new(Bytes::from_static(b"FCALL"), cmd.args().to_vec());
        for attempt in 0..2 {
            if !self.ensure_user(main).await? {
                return Ok(None);
            }
            match self.pool.run(std::slice::from_ref(&fcall)).await {
                Ok(mut replies) => return Ok(Some(reword(replies.pop().ok_or(BackendError::Closed)?))),
                // Redis restarted and forgot the user: create it again, once.
                Err(BackendError::Refused(msg)) if attempt == 0 && msg.contains("WRONGPASS") => {
                    *self.readiness.lock().await = Readiness::Unknown;
                }
                Err(e) => return Err(e),
            }
        }
        Err(BackendError::Refused(format!("cannot log in as the ACL user {USER}")))
    }

    /// Creates (or refreshes) the ACL user once; true when it exists.
    async fn ensure_user(&self, main: &Pool) -> Result<bool, BackendError> {
        let mut readiness = self.readiness.lock().await;
        if *readiness == Readiness::Unknown {
            let setup = Command::new(
                Bytes::from_static(b"ACL"),
                ["SETUSER", USER, "on", &format!(">{}", self.password), "resetkeys", "~*", "resetchannels", "&*"]
                    .into_iter()
                    .chain(["-@all", "+@all", "-@write"])
                    .map(|s| Bytes::from(s.to_owned()))
                    .collect(),
            );
            let replies = main.run(std::slice::from_ref(&setup)).await?;
            *readiness = match replies.first() {
                Some(Reply::Simple(ok)) if &ok[..] == b"OK" => Readiness::Ready,
                _ => Readiness::Unsupported,
            };
        }
        Ok(*readiness == Readiness::Ready)
    }
}

/// Rewords the ACL refusal of a write into Redis's read-only wording, keeping where it
/// happened (`script: NAME, on @user_function:LINE.`).
pub fn reword(reply: Reply) -> Reply {
    let Reply::Error(msg) = &reply else {
        return reply;
    };
    let text = String::from_utf8_lossy(msg);
    let acl_refusal = text.contains("can't run this command or subcommand") || text.starts_with("NOPERM");
    if !acl_refusal {
        return reply;
    }
    let place = text.find("script:").map(|i| text[i..].trim_end().to_owned());
    let reworded = match place {
        Some(place) => format!("{READ_ONLY_WRITE} {place}"),
        None => READ_ONLY_WRITE.to_owned(),
    };
    Reply::Error(Bytes::from(reworded))
}

/// 32 hex digits from the process's random hasher keys, the clock and the PID.
fn random_password() -> String {
    let word = || {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
        );
        h.write_u32(std::process::id());
        h.finish()
    };
    format!("{:016x}{:016x}", word(), word())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(s: &str) -> Reply {
        Reply::Error(Bytes::from(s.to_owned()))
    }

    #[test]
    fn rewords_the_acl_refusal_of_a_write() {
        let acl = error(
            "ERR The user executing the script can't run this command or subcommand script: set_value, on @user_function:2.",
        );
        assert_eq!(
            reword(acl),
            error("ERR Write commands are not allowed from read-only scripts. script: set_value, on @user_function:2.")
        );
        assert_eq!(
            reword(error("NOPERM this user has no permissions to run the 'set' command")),
            error("ERR Write commands are not allowed from read-only scripts.")
        );
    }

    #[test]
    fn leaves_other_replies_alone() {
        for r in [error("ERR Function not found"), Reply::Bulk(Bytes::from_static(b"v")), Reply::Nil] {
            assert_eq!(reword(r.clone()), r);
        }
    }

    #[test]
    fn passwords_differ() {
        let a = random_password();
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_password());
    }

    #[test]
    fn only_fcall_ro_is_taken() {
        let c = |n: &'static str| Command::from_static(n, &["f", "0"]);
        assert!(ReadOnlyCalls::applies_to(&c("fcall_ro")));
        assert!(ReadOnlyCalls::applies_to(&c("FCALL_RO")));
        assert!(!ReadOnlyCalls::applies_to(&c("FCALL")));
        assert!(!ReadOnlyCalls::applies_to(&c("EVAL_RO")));
    }
}
