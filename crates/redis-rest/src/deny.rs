//! Commands that must never reach a pooled connection (protocol §10): they change the
//! connection's state (subscribe mode, MULTI, another DB, RESP3, no replies) or block it, and
//! every later request on that connection would then read someone else's reply.

use bytes::Bytes;

use crate::command::{eq_keyword, Command};

/// Rejected whatever their arguments.
const ALWAYS: &[&str] = &[
    "SUBSCRIBE",
    "PSUBSCRIBE",
    "SSUBSCRIBE",
    "UNSUBSCRIBE",
    "PUNSUBSCRIBE",
    "SUNSUBSCRIBE",
    "MONITOR",
    "MULTI",
    "EXEC",
    "DISCARD",
    "WATCH",
    "UNWATCH",
    "SELECT",
    "SWAPDB",
    "RESET",
    "QUIT",
    "HELLO",
    "AUTH",
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BLMOVE",
    "BLMPOP",
    "BZPOPMIN",
    "BZPOPMAX",
    "BZMPOP",
    "WAIT",
    "WAITAOF",
    "SYNC",
    "PSYNC",
    "REPLICAOF",
    "SLAVEOF",
    "SHUTDOWN",
];

/// `CLIENT` subcommands that alter the calling connection (the rest, e.g. `CLIENT LIST`, are fine).
const CLIENT_STATEFUL: &[&str] = &["REPLY", "TRACKING", "CACHING", "SETNAME", "SETINFO", "NO-EVICT", "NO-TOUCH"];

/// A command refused before reaching Redis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ERR Command is not available: '{name}'")]
pub struct Denied {
    name: String,
}

/// Refuses connection-state and blocking commands; everything else passes.
pub fn check(cmd: &Command) -> Result<(), Denied> {
    let denied = || Denied { name: cmd.display_name() };
    let Some(upper) = cmd.upper_name() else {
        return Ok(());
    };
    let name = upper.as_bytes();
    if ALWAYS.iter().any(|n| n.as_bytes() == name) {
        return Err(denied());
    }
    match name {
        b"CLIENT" => {
            let sub = cmd.args().first();
            if sub.is_some_and(|s| CLIENT_STATEFUL.iter().any(|k| eq_keyword(s, k))) {
                return Err(denied());
            }
        }
        b"XREAD" | b"XREADGROUP" if stream_read_blocks(cmd.args()) => return Err(denied()),
        _ => {}
    }
    Ok(())
}

/// True when the options before `STREAMS` include `BLOCK` (keys and IDs after it do not count).
fn stream_read_blocks(args: &[Bytes]) -> bool {
    let mut i = 0;
    while let Some(arg) = args.get(i) {
        if eq_keyword(arg, "STREAMS") {
            return false;
        }
        if eq_keyword(arg, "BLOCK") {
            return true;
        }
        i += if eq_keyword(arg, "GROUP") {
            3
        } else if eq_keyword(arg, "COUNT") {
            2
        } else {
            1
        };
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(parts: &[&str]) -> Command {
        let mut it = parts.iter().map(|p| Bytes::copy_from_slice(p.as_bytes()));
        let name = it.next().unwrap_or_default();
        Command::new(name, it.collect())
    }

    #[test]
    fn refuses_state_changing_and_blocking_commands_in_any_case() {
        for parts in [
            &["subscribe", "ch"][..],
            &["MULTI"],
            &["exec"],
            &["Select", "1"],
            &["hello", "3"],
            &["blpop", "q", "0"],
            &["BZMPOP", "0", "1", "z", "MIN"],
            &["wait", "1", "0"],
            &["client", "reply", "off"],
            &["CLIENT", "Tracking", "on"],
            &["xread", "BLOCK", "0", "STREAMS", "s", "$"],
            &["XREADGROUP", "GROUP", "g", "c", "count", "1", "block", "10", "STREAMS", "s", ">"],
        ] {
            let cmd = command(parts);
            assert_eq!(
                check(&cmd).map_err(|e| e.to_string()),
                Err(format!("ERR Command is not available: '{}'", parts[0])),
                "{parts:?}"
            );
        }
    }

    #[test]
    fn lets_ordinary_commands_through() {
        for parts in [
            &["GET", "k"][..],
            &["publish", "ch", "m"],
            &["ping"],
            &["client", "list"],
            &["client", "id"],
            &["XREAD", "COUNT", "2", "STREAMS", "block", "0"],
            &["XREADGROUP", "GROUP", "block", "BLOCK", "STREAMS", "s", ">"],
            &["evalsha", "abc", "0"],
        ] {
            assert_eq!(check(&command(parts)), Ok(()), "{parts:?}");
        }
    }
}
