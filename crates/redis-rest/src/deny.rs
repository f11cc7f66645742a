//! Commands refused before they reach Redis, with Upstash's error text. Two reasons:
//!
//! * **Connection state.** Subscribe mode, MULTI, another DB, RESP3, no replies, blocking: on a
//!   pooled connection every later request would read someone else's reply.
//! * **The shared server.** Administration, debugging, replication, persistence, cluster and
//!   `CLIENT` subcommands that touch other connections (`CLIENT PAUSE`, `KILL`, …): Upstash does
//!   not offer them over REST, and on the local stack one such call would stop or poison the
//!   Redis every other test and developer shares.
//!
//! The same check runs for every form a command can arrive in (`POST /`, each `/pipeline`
//! entry, each `/multi-exec` entry, the path form), because all of them go through
//! [`check`]. Commands Redis marks `noscript` (all the administration ones) cannot be reached
//! from a Lua script or function either.

use bytes::Bytes;

use crate::command::{eq_keyword, Command};

/// Refused whatever their arguments.
const ALWAYS: &[&str] = &[
    // Connection state and blocking.
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
    "READONLY",
    "READWRITE",
    "ASKING",
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
    // Replication.
    "SYNC",
    "PSYNC",
    "REPLCONF",
    "REPLICAOF",
    "SLAVEOF",
    "FAILOVER",
    // Administration, persistence and debugging.
    "SHUTDOWN",
    "DEBUG",
    "BGSAVE",
    "BGREWRITEAOF",
    "SAVE",
    "MODULE",
    "LATENCY",
    "SLOWLOG",
    "PFDEBUG",
    "PFSELFTEST",
    "CLUSTER",
];

/// `CLIENT` subcommands that only read (everything else is refused: `PAUSE`, `KILL`,
/// `UNBLOCK`, `NO-EVICT`, and the ones that alter the calling, pooled connection).
const CLIENT_HARMLESS: &[&str] = &["ID", "INFO", "LIST", "GETNAME", "TRACKINGINFO", "GETREDIR", "HELP"];

/// `SCRIPT` subcommands refused (`DEBUG` turns the pooled connection into a debugger session).
const SCRIPT_REFUSED: &[&str] = &["DEBUG"];

/// `ACL` subcommands that only describe the caller or the categories.
const ACL_HARMLESS: &[&str] = &["CAT", "WHOAMI", "HELP"];

/// `MEMORY` subcommands that only read.
const MEMORY_HARMLESS: &[&str] = &["USAGE", "STATS", "DOCTOR", "MALLOC-STATS", "HELP"];

/// The one `CONFIG SET` parameter Upstash documents (keyspace notifications).
const CONFIG_SETTABLE: &[&str] = &["notify-keyspace-events"];

/// A command refused before reaching Redis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ERR Command is not available: '{name}'")]
pub struct Denied {
    name: String,
}

/// Refuses connection-state, blocking and server-administration commands; everything else
/// passes.
pub fn check(cmd: &Command) -> Result<(), Denied> {
    let denied = || Denied { name: cmd.display_name() };
    let Some(upper) = cmd.upper_name() else {
        return Ok(());
    };
    let name = upper.as_bytes();
    if ALWAYS.iter().any(|n| n.as_bytes() == name) {
        return Err(denied());
    }
    let args = cmd.args();
    let sub = args.first();
    let sub_in = |list: &[&str]| sub.is_some_and(|s| list.iter().any(|k| eq_keyword(s, k)));
    let refused = match name {
        b"CLIENT" => !sub_in(CLIENT_HARMLESS),
        b"SCRIPT" => sub_in(SCRIPT_REFUSED),
        b"ACL" => !sub_in(ACL_HARMLESS),
        b"MEMORY" => !sub_in(MEMORY_HARMLESS),
        b"CONFIG" => !config_set_is_allowed(args),
        b"XREAD" | b"XREADGROUP" => stream_read_blocks(args),
        _ => false,
    };
    if refused {
        Err(denied())
    } else {
        Ok(())
    }
}

/// `CONFIG SET name value [name value …]` where every name is one Upstash lets clients set.
fn config_set_is_allowed(args: &[Bytes]) -> bool {
    let Some((sub, pairs)) = args.split_first() else {
        return false;
    };
    eq_keyword(sub, "SET")
        && !pairs.is_empty()
        && pairs.len() % 2 == 0
        && pairs.chunks(2).all(|pair| CONFIG_SETTABLE.iter().any(|k| eq_keyword(&pair[0], k)))
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

    fn assert_refused(parts: &[&str]) {
        assert_eq!(
            check(&command(parts)).map_err(|e| e.to_string()),
            Err(format!("ERR Command is not available: '{}'", parts[0])),
            "{parts:?}"
        );
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
            assert_refused(parts);
        }
    }

    #[test]
    fn refuses_administration_debugging_and_replication() {
        for parts in [
            &["SCRIPT", "DEBUG", "YES"][..],
            &["script", "debug", "sync"],
            &["CLIENT", "PAUSE", "1000"],
            &["client", "kill", "ID", "1"],
            &["CLIENT", "UNBLOCK", "1"],
            &["CLIENT", "NO-EVICT", "on"],
            &["CLIENT", "SETNAME", "x"],
            &["CLIENT"],
            &["CONFIG", "SET", "maxmemory", "1"],
            &["config", "set", "notify-keyspace-events", "Kh", "maxmemory", "1"],
            &["CONFIG", "SET", "notify-keyspace-events"],
            &["CONFIG", "GET", "*"],
            &["CONFIG", "RESETSTAT"],
            &["CONFIG", "REWRITE"],
            &["DEBUG", "SLEEP", "10"],
            &["debug", "segfault"],
            &["SHUTDOWN", "NOSAVE"],
            &["MONITOR"],
            &["REPLICAOF", "127.0.0.1", "1"],
            &["SLAVEOF", "NO", "ONE"],
            &["FAILOVER"],
            &["SYNC"],
            &["BGSAVE"],
            &["save"],
            &["BGREWRITEAOF"],
            &["MODULE", "LOAD", "/tmp/x.so"],
            &["ACL", "SETUSER", "default", "off"],
            &["acl", "deluser", "x"],
            &["ACL", "LIST"],
            &["SLOWLOG", "RESET"],
            &["LATENCY", "RESET"],
            &["MEMORY", "PURGE"],
            &["CLUSTER", "INFO"],
            &["PFDEBUG", "GETREG", "k"],
            &["SWAPDB", "0", "1"],
        ] {
            assert_refused(parts);
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
            &["CLIENT", "GETNAME"],
            &["XREAD", "COUNT", "2", "STREAMS", "block", "0"],
            &["XREADGROUP", "GROUP", "block", "BLOCK", "STREAMS", "s", ">"],
            &["evalsha", "abc", "0"],
            &["SCRIPT", "LOAD", "return 1"],
            &["SCRIPT", "FLUSH"],
            &["script", "exists", "abc"],
            &["CONFIG", "SET", "notify-keyspace-events", "KEA"],
            &["ACL", "WHOAMI"],
            &["MEMORY", "USAGE", "k"],
            &["FLUSHDB"],
            &["DBSIZE"],
            &["INFO"],
            &["TIME"],
            &["FUNCTION", "LIST"],
            &["FCALL_RO", "f", "0"],
        ] {
            assert_eq!(check(&command(parts)), Ok(()), "{parts:?}");
        }
    }
}
