//! Runs client commands against Redis: refuse (deny list), rewrite (SCAN WITHTYPE, script
//! normalization), execute on a pooled connection, fix up replies and count. The three shapes
//! are one command, a pipeline (one write, replies in order) and a transaction
//! (MULTI … EXEC on one connection). `FCALL_RO` outside transactions runs through
//! [`ReadOnlyCalls`].

use std::time::Duration;

use crate::command::Command;
use crate::deny::{self, Denied};
use crate::error::BackendError;
use crate::pool::Pool;
use crate::readonly::ReadOnlyCalls;
use crate::resp::Reply;
use crate::scan_withtype;
use crate::scripts::{Fixup, ScriptAliases};
use crate::stats::Stats;

/// One entry of a pipeline's answer.
#[derive(Debug)]
pub enum Entry {
    /// What Redis answered (possibly an error reply).
    Reply(Reply),
    /// Refused before reaching Redis.
    Denied(Denied),
}

/// Why a single command produced no reply.
#[derive(Debug, thiserror::Error)]
pub enum SingleError {
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Why a transaction produced no per-command results.
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    /// Not executed at all (refused command, queue-time error → EXECABORT): HTTP 400.
    #[error("{0}")]
    Discarded(String),
    #[error(transparent)]
    Backend(#[from] BackendError),
}

struct Prepared {
    wire: Command,
    fixup: Fixup,
    stat_name: String,
}

/// Everything a request needs to reach Redis.
#[derive(Debug)]
pub struct Gateway {
    pool: Pool,
    readonly: ReadOnlyCalls,
    scripts: ScriptAliases,
    stats: Stats,
}

impl Gateway {
    pub fn new(pool: Pool, readonly: ReadOnlyCalls) -> Self {
        Self { pool, readonly, scripts: ScriptAliases::new(), stats: Stats::new() }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn prepare(&self, cmd: Command) -> Result<Prepared, Denied> {
        deny::check(&cmd)?;
        let stat_name = cmd.lower_name();
        let cmd = scan_withtype::rewrite(cmd);
        let (wire, fixup) = self.scripts.prepare(cmd);
        Ok(Prepared { wire, fixup, stat_name })
    }

    /// `POST /` and the path form.
    pub async fn single(&self, cmd: Command) -> Result<Reply, SingleError> {
        let prepared = self.prepare(cmd)?;
        let reply = self.run_one(&prepared.wire).await?;
        self.stats.count_commands([prepared.stat_name]);
        Ok(prepared.fixup.apply(reply))
    }

    /// One command on a pooled connection, or read-only for `FCALL_RO`.
    async fn run_one(&self, wire: &Command) -> Result<Reply, BackendError> {
        if ReadOnlyCalls::applies_to(wire) {
            if let Some(reply) = self.readonly.call(&self.pool, wire).await? {
                return Ok(reply);
            }
        }
        let mut replies = self.pool.run(std::slice::from_ref(wire)).await?;
        replies.pop().ok_or(BackendError::Closed)
    }

    /// Runs `wire` in order: runs of ordinary commands go out in one write each, an `FCALL_RO`
    /// between them runs on its own once the commands before it have answered.
    async fn run_in_order(&self, wire: &[Command]) -> Result<Vec<Reply>, BackendError> {
        if !wire.iter().any(ReadOnlyCalls::applies_to) {
            return self.pool.run(wire).await;
        }
        let mut replies = Vec::with_capacity(wire.len());
        let mut start = 0;
        for (i, cmd) in wire.iter().enumerate() {
            if ReadOnlyCalls::applies_to(cmd) {
                replies.extend(self.pool.run(&wire[start..i]).await?);
                replies.push(self.run_one(cmd).await?);
                start = i + 1;
            }
        }
        replies.extend(self.pool.run(&wire[start..]).await?);
        Ok(replies)
    }

    /// `POST /pipeline`: refused entries answer an error in place; the rest go out in one write.
    pub async fn pipeline(&self, cmds: Vec<Command>) -> Result<Vec<Entry>, BackendError> {
        let mut slots: Vec<Result<Fixup, Denied>> = Vec::with_capacity(cmds.len());
        let mut wire = Vec::with_capacity(cmds.len());
        let mut names = Vec::with_capacity(cmds.len());
        for cmd in cmds {
            match self.prepare(cmd) {
                Ok(p) => {
                    wire.push(p.wire);
                    names.push(p.stat_name);
                    slots.push(Ok(p.fixup));
                }
                Err(denied) => slots.push(Err(denied)),
            }
        }
        let mut replies = if wire.is_empty() {
            Vec::new()
        } else {
            let replies = self.run_in_order(&wire).await?;
            self.stats.count_commands(names);
            replies
        }
        .into_iter();
        slots
            .into_iter()
            .map(|slot| match slot {
                Ok(fixup) => replies.next().map(|r| Entry::Reply(fixup.apply(r))).ok_or(BackendError::Closed),
                Err(denied) => Ok(Entry::Denied(denied)),
            })
            .collect()
    }

    /// `POST /multi-exec`: MULTI, the commands, EXEC on one connection. Any refused command
    /// discards the whole transaction before anything is sent. `FCALL_RO` keeps Redis's own
    /// rules here.
    pub async fn multi_exec(&self, cmds: Vec<Command>) -> Result<Vec<Reply>, TxError> {
        let n = cmds.len();
        let mut wire = Vec::with_capacity(n + 2);
        let mut fixups = Vec::with_capacity(n);
        let mut names = Vec::with_capacity(n);
        wire.push(Command::from_static("MULTI", &[]));
        for cmd in cmds {
            let p = self.prepare(cmd).map_err(|denied| TxError::Discarded(denied.to_string()))?;
            wire.push(p.wire);
            fixups.push(p.fixup);
            names.push(p.stat_name);
        }
        wire.push(Command::from_static("EXEC", &[]));

        let replies = self.pool.run(&wire).await?;
        self.stats.count_commands(names);
        let mut replies = replies.into_iter();
        if let Some(Reply::Error(e)) = replies.next() {
            return Err(TxError::Discarded(String::from_utf8_lossy(&e).into_owned()));
        }
        match replies.last() {
            Some(Reply::Array(results)) => Ok(results
                .into_iter()
                .zip(fixups.iter().chain(std::iter::repeat(&Fixup::None)))
                .map(|(r, f)| f.apply(r))
                .collect()),
            Some(Reply::Error(e)) => Err(TxError::Discarded(String::from_utf8_lossy(&e).into_owned())),
            Some(Reply::Nil) => Err(TxError::Discarded("EXECABORT Transaction discarded".to_owned())),
            Some(other) => Err(TxError::Discarded(format!("ERR unexpected EXEC reply: {other:?}"))),
            None => Err(TxError::Backend(BackendError::Closed)),
        }
    }

    /// Health probe: PING on a pooled connection within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), BackendError> {
        let probe = async {
            let replies = self.pool.run(&[Command::from_static("PING", &[])]).await?;
            match replies.first() {
                Some(Reply::Simple(_)) => Ok(()),
                Some(Reply::Error(e)) => Err(BackendError::Refused(String::from_utf8_lossy(e).into_owned())),
                _ => Err(BackendError::Closed),
            }
        };
        tokio::time::timeout(timeout, probe).await.unwrap_or(Err(BackendError::Timeout(timeout.as_millis() as u64)))
    }
}
