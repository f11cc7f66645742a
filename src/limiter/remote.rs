//! The limit check over Redis: the only code that builds the check's `/pipeline` (the script,
//! plus a command riding along in the same round trip, such as the cache read) and reads it back.

use thiserror::Error;

use crate::keys::Keys;
use crate::redis::{Client, Command, Entry, RedisError, Reply, Transport};

use super::{
    check_and_read_script, check_key_and_read_script, check_key_script, check_script, parse_key_reply, parse_reply,
    Check, Decision, KeyCheck, KeyChecked, LimiterError, Mode, Override,
};

/// Why a remote check could not be decided.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RemoteError {
    /// Redis could not be reached or answered with an error.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The check could not be built, or its reply read.
    #[error(transparent)]
    Limiter(#[from] LimiterError),
}

impl RemoteError {
    /// A short, internals-free name of the failure.
    pub fn reason(&self) -> &'static str {
        match self {
            RemoteError::Redis(e) | RemoteError::Limiter(LimiterError::Store(e)) => e.reason(),
            RemoteError::Limiter(LimiterError::MalformedReply(_)) => "redis_malformed_reply",
            RemoteError::Limiter(_) => "limit_invalid",
        }
    }
}

/// A decided check, with the reply of the command that rode along.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// Every limit's verdict.
    pub decision: Decision,
    /// The ride-along command's reply (`None` when there was none).
    pub ride_along: Option<Result<Reply, RedisError>>,
    /// Whether the check took the fill lock it was asked to take on a miss (`None`: not tried).
    pub lock: Option<bool>,
}

/// A fill lock for [`RemoteLimiter::check_and_read`] to take when it finds no entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillLock<'a> {
    /// The lock key.
    pub key: &'a str,
    /// The owner's token.
    pub token: &'a str,
    /// Its time to live, ms.
    pub ttl_ms: u32,
}

/// Checks limits on Redis for one isolate's client and key namespace.
#[derive(Debug, Clone, Copy)]
pub struct RemoteLimiter<'a, T: Transport> {
    client: &'a Client<T>,
    keys: &'a Keys,
}

impl<'a, T: Transport> RemoteLimiter<'a, T> {
    /// A limiter over `client`, naming keys with `keys`.
    pub fn new(client: &'a Client<T>, keys: &'a Keys) -> Self {
        Self { client, keys }
    }

    /// Runs `check` (one `EVALSHA`) and `ride_along` in one `/pipeline`: one HTTP round trip.
    pub async fn check(&self, check: &Check<'_>, ride_along: Option<Command>) -> Result<Checked, RemoteError> {
        let call = check.command(self.keys)?;
        let mut entries = vec![Entry::script(check_script(), &call.keys, &call.args)];
        entries.extend(ride_along.map(Entry::Command));
        let mut replies = self.client.pipeline_with_scripts(entries).await?.into_iter();
        let decision = match replies.next() {
            Some(reply) => parse_reply(&reply?)?,
            None => return Err(LimiterError::MalformedReply("empty pipeline reply").into()),
        };
        Ok(Checked { decision, ride_along: replies.next(), lock: None })
    }

    /// Runs `check` and, when it allows, reads `read_keys` (`MGET`), in ONE script call: one
    /// command and one round trip. The reply of the read rides along as with [`Self::check`];
    /// it is `None` when the check did not allow.
    /// With `lock`, a check that allows and finds no entry also takes that fill lock, so a miss
    /// needs no further round trip before the origin ([`Checked::lock`] says whether it did).
    pub async fn check_and_read(
        &self,
        check: &Check<'_>,
        read_keys: &[String; 2],
        lock: Option<FillLock<'_>>,
    ) -> Result<Checked, RemoteError> {
        let call = check.command(self.keys)?;
        let (decided, ride_along, lock) =
            self.with_read(check_and_read_script(), call.keys, call.args, read_keys, lock, false).await?;
        Ok(Checked { decision: parse_reply(&decided)?, ride_along, lock })
    }

    /// [`Self::check_key`] and, when the key is valid and the check allows, the cache read (and
    /// on a miss the fill lock), in ONE script call, as [`Self::check_and_read`] does for a
    /// caller already known.
    pub async fn check_key_and_read(
        &self,
        check: &KeyCheck<'_>,
        read_keys: &[String; 2],
        lock: Option<FillLock<'_>>,
    ) -> Result<(KeyChecked, Option<Result<Reply, RedisError>>, Option<bool>), RemoteError> {
        let call = check.command(self.keys)?;
        let (found, ride_along, lock) =
            self.with_read(check_key_and_read_script(), call.keys, call.args, read_keys, lock, true).await?;
        Ok((parse_key_reply(&found)?, ride_along, lock))
    }

    /// One call of a check wrapped by `check_and_read.lua`: the check's reply, the read (when
    /// the check allowed) and whether the fill lock was taken (`None`: not tried).
    async fn with_read(
        &self,
        script: &crate::redis::Script,
        mut keys: Vec<String>,
        mut args: Vec<crate::redis::Arg>,
        read_keys: &[String; 2],
        lock: Option<FillLock<'_>>,
        patient: bool,
    ) -> Result<(Reply, Option<Result<Reply, RedisError>>, Option<bool>), RemoteError> {
        keys.extend(read_keys.iter().cloned());
        match lock {
            Some(l) => {
                keys.push(l.key.to_owned());
                args.push(crate::redis::Arg::from(l.token));
                args.push(crate::redis::Arg::from(l.ttl_ms));
                args.push(crate::redis::Arg::from(3u32));
            }
            None => args.push(crate::redis::Arg::from(2u32)),
        }
        let reply = if patient {
            self.client.eval_patient(script, &keys, &args).await?
        } else {
            self.client.eval(script, &keys, &args).await?
        };
        let mut parts = match reply {
            Reply::Array(parts) if (2..=3).contains(&parts.len()) => parts.into_iter(),
            _ => return Err(LimiterError::MalformedReply("check_and_read reply").into()),
        };
        let decided = parts.next().unwrap_or(Reply::Nil);
        let read = parts.next().unwrap_or(Reply::Nil);
        let lock = parts.next().and_then(|r| r.to_i64()).map(|n| n == 1);
        let ride_along = match read {
            Reply::Nil => None,
            other => Some(Ok(other)),
        };
        Ok((decided, ride_along, lock))
    }

    /// Runs `check` for the subject and tier of an API key's record, read in the same script
    /// call: one command and one round trip for a key this isolate has not verified.
    pub async fn check_key(&self, check: &KeyCheck<'_>) -> Result<KeyChecked, RemoteError> {
        let call = check.command(self.keys)?;
        // Patient, as the registry's lookup: a key check given up on would be followed by that
        // lookup and another check, the limits charged twice if the first one ran.
        let reply = self.client.eval_patient(check_key_script(), &call.keys, &call.args).await?;
        Ok(parse_key_reply(&reply)?)
    }

    /// Decides `check` without charging anything, with the subject's stored override.
    pub async fn peek(&self, check: &Check<'_>) -> Result<(Decision, Option<Override>), RemoteError> {
        let peek = Check { mode: Mode::Peek, ..*check };
        let checked = self.check(&peek, Some(Override::get_command(self.keys, check.subject_hash))).await?;
        let stored = match checked.ride_along {
            Some(Ok(reply)) => Override::from_reply(&reply).ok().flatten(),
            _ => None,
        };
        Ok((checked.decision, stored))
    }
}
