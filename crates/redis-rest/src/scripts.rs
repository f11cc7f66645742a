//! Lua shebang normalization and SHA aliasing (`docs/upstash-rest-protocol.md` §9). `@upstash/ratelimit` starts every
//! script with `#!lua flags=allow-key-locking`, which stock Redis rejects; we strip flags Redis
//! does not know and map the client's SHA of the original text to the SHA Redis caches, so a
//! steady-state `limit()` stays one EVALSHA round trip.

use std::collections::HashMap;
use std::sync::RwLock;

use bytes::Bytes;
use sha1::{Digest, Sha1};

use crate::command::{eq_keyword, Command};
use crate::resp::Reply;

/// Shebang flags Redis 7 understands; any other flag is dropped.
const KNOWN_FLAGS: &[&str] = &["no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys"];

/// Aliases kept before the map is cleared; a forgotten alias costs one NOSCRIPT round trip.
const MAX_ALIASES: usize = 4096;

type Sha = [u8; 20];

/// Returns the script with unknown shebang flags removed, or `None` when nothing changes.
/// A shebang left without flags is dropped as a whole line.
pub fn normalize(script: &[u8]) -> Option<Vec<u8>> {
    if !script.starts_with(b"#!lua") {
        return None;
    }
    let (line, rest) = match script.iter().position(|&b| b == b'\n') {
        Some(i) => (&script[..i], &script[i + 1..]),
        None => (script, &b""[..]),
    };
    let (line, cr) = match line.strip_suffix(b"\r") {
        Some(l) => (l, true),
        None => (line, false),
    };
    let line = std::str::from_utf8(line).ok()?;
    let mut tokens = line.split_ascii_whitespace();
    if tokens.next() != Some("#!lua") {
        return None;
    }
    let mut changed = false;
    let mut kept_tokens: Vec<String> = Vec::new();
    let mut flags_left = false;
    let mut had_other_tokens = false;
    for token in tokens {
        match token.strip_prefix("flags=") {
            Some(flags) => {
                let all: Vec<&str> = flags.split(',').filter(|f| !f.is_empty()).collect();
                let known: Vec<&str> = all.iter().copied().filter(|f| KNOWN_FLAGS.contains(f)).collect();
                if known.len() != all.len() {
                    changed = true;
                }
                if !known.is_empty() {
                    flags_left = true;
                    kept_tokens.push(format!("flags={}", known.join(",")));
                }
            }
            None => {
                had_other_tokens = true;
                kept_tokens.push(token.to_owned());
            }
        }
    }
    if !changed {
        return None;
    }
    let mut out = Vec::with_capacity(script.len());
    if flags_left || had_other_tokens {
        out.extend_from_slice(b"#!lua");
        for token in &kept_tokens {
            out.push(b' ');
            out.extend_from_slice(token.as_bytes());
        }
        if cr {
            out.push(b'\r');
        }
        out.push(b'\n');
    }
    out.extend_from_slice(rest);
    Some(out)
}

/// Lowercase hex SHA-1, as Redis and both official clients compute it.
pub fn sha1_hex(data: &[u8]) -> String {
    hex::encode(sha1_raw(data))
}

fn sha1_raw(data: &[u8]) -> Sha {
    Sha1::digest(data).into()
}

fn parse_sha(arg: &[u8]) -> Option<Sha> {
    let mut sha = [0u8; 20];
    hex::decode_to_slice(arg, &mut sha).ok()?;
    Some(sha)
}

/// What to do to a reply before it goes back to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fixup {
    None,
    /// `SCRIPT LOAD` of a normalized script: answer the SHA of the text the client sent.
    ScriptSha(Bytes),
}

impl Fixup {
    pub fn apply(&self, reply: Reply) -> Reply {
        match (self, reply) {
            (Fixup::ScriptSha(sha), Reply::Bulk(_)) => Reply::Bulk(sha.clone()),
            (_, reply) => reply,
        }
    }
}

/// Server-global map from the SHA of a client's script to the SHA of its normalized text.
#[derive(Debug, Default)]
pub struct ScriptAliases {
    map: RwLock<HashMap<Sha, Sha>>,
}

impl ScriptAliases {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rewrites script-bearing commands (EVAL, EVAL_RO, EVALSHA, EVALSHA_RO, SCRIPT LOAD,
    /// SCRIPT EXISTS) and says how to fix up the reply.
    pub fn prepare(&self, mut cmd: Command) -> (Command, Fixup) {
        let Some(upper) = cmd.upper_name() else {
            return (cmd, Fixup::None);
        };
        match upper.as_bytes() {
            b"EVAL" | b"EVAL_RO" => {
                if let Some(script) = cmd.args_mut().first_mut() {
                    if let Some(normalized) = self.normalize_and_alias(script) {
                        *script = normalized;
                    }
                }
                (cmd, Fixup::None)
            }
            b"EVALSHA" | b"EVALSHA_RO" => {
                if let Some(sha) = cmd.args_mut().first_mut() {
                    self.substitute(sha);
                }
                (cmd, Fixup::None)
            }
            b"SCRIPT" => {
                let args = cmd.args_mut();
                let sub = args.first().cloned().unwrap_or_default();
                if eq_keyword(&sub, "LOAD") && args.len() == 2 {
                    let original = sha1_hex(&args[1]);
                    if let Some(normalized) = self.normalize_and_alias(&args[1]) {
                        args[1] = normalized;
                        return (cmd, Fixup::ScriptSha(Bytes::from(original)));
                    }
                } else if eq_keyword(&sub, "EXISTS") {
                    for sha in args.iter_mut().skip(1) {
                        self.substitute(sha);
                    }
                }
                (cmd, Fixup::None)
            }
            _ => (cmd, Fixup::None),
        }
    }

    fn normalize_and_alias(&self, script: &[u8]) -> Option<Bytes> {
        let normalized = normalize(script)?;
        self.insert(sha1_raw(script), sha1_raw(&normalized));
        Some(Bytes::from(normalized))
    }

    fn insert(&self, original: Sha, normalized: Sha) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ALIASES && !map.contains_key(&original) {
            map.clear();
        }
        map.insert(original, normalized);
    }

    fn substitute(&self, sha: &mut Bytes) {
        let Some(key) = parse_sha(sha) else {
            return;
        };
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        if let Some(target) = map.get(&key) {
            *sha = Bytes::from(hex::encode(target));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(parts: &[&str]) -> Command {
        let mut it = parts.iter().map(|p| Bytes::copy_from_slice(p.as_bytes()));
        let name = it.next().unwrap_or_default();
        Command::new(name, it.collect())
    }

    fn text(b: &[u8]) -> &str {
        std::str::from_utf8(b).unwrap_or("<binary>")
    }

    #[test]
    fn drops_a_shebang_left_without_flags() {
        let script = b"#!lua flags=allow-key-locking\n  local key = KEYS[1]\n";
        assert_eq!(normalize(script).as_deref().map(text), Some("  local key = KEYS[1]\n"));
    }

    #[test]
    fn keeps_the_flags_redis_knows() {
        let script = b"#!lua flags=no-writes,allow-key-locking,allow-stale\nreturn 1";
        assert_eq!(normalize(script).as_deref().map(text), Some("#!lua flags=no-writes,allow-stale\nreturn 1"));
        let script = b"#!lua name=x flags=allow-key-locking\r\nreturn 1";
        assert_eq!(normalize(script).as_deref().map(text), Some("#!lua name=x\r\nreturn 1"));
    }

    #[test]
    fn leaves_scripts_redis_accepts_alone() {
        assert_eq!(normalize(b"return 1"), None);
        assert_eq!(normalize(b"#!lua\nreturn 1"), None);
        assert_eq!(normalize(b"#!lua flags=no-writes\nreturn 1"), None);
        assert_eq!(normalize(b"#!luax flags=allow-key-locking\nreturn 1"), None);
        assert_eq!(normalize(b"-- #!lua flags=allow-key-locking\n"), None);
    }

    #[test]
    fn a_script_that_is_only_a_shebang_normalizes_to_nothing() {
        assert_eq!(normalize(b"#!lua flags=allow-key-locking").as_deref().map(text), Some(""));
    }

    #[test]
    fn sha1_matches_the_well_known_value() {
        // redis-cli SCRIPT LOAD "return 1"
        assert_eq!(sha1_hex(b"return 1"), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }

    #[test]
    fn eval_of_a_flagged_script_aliases_its_sha_for_evalsha() {
        let aliases = ScriptAliases::new();
        let original = "#!lua flags=allow-key-locking\nreturn 1";
        let (eval, _) = aliases.prepare(cmd(&["eval", original, "0"]));
        assert_eq!(text(&eval.args()[0]), "return 1");

        let client_sha = sha1_hex(original.as_bytes()).to_uppercase();
        let (evalsha, _) = aliases.prepare(cmd(&["EVALSHA_RO", &client_sha, "0"]));
        assert_eq!(text(&evalsha.args()[0]), sha1_hex(b"return 1"));

        let (exists, _) = aliases.prepare(cmd(&["SCRIPT", "exists", &client_sha, "nope"]));
        assert_eq!(text(&exists.args()[1]), sha1_hex(b"return 1"));
        assert_eq!(text(&exists.args()[2]), "nope");
    }

    #[test]
    fn unknown_shas_pass_through_unchanged() {
        let aliases = ScriptAliases::new();
        let sha = "0000000000000000000000000000000000000000";
        let (c, _) = aliases.prepare(cmd(&["EVALSHA", sha, "0"]));
        assert_eq!(text(&c.args()[0]), sha);
    }

    #[test]
    fn script_load_answers_the_sha_of_the_original_text() {
        let aliases = ScriptAliases::new();
        let original = "#!lua flags=allow-key-locking\nreturn 2";
        let (load, fixup) = aliases.prepare(cmd(&["script", "load", original]));
        assert_eq!(text(&load.args()[1]), "return 2");
        let redis_answer = Reply::Bulk(Bytes::from(sha1_hex(b"return 2")));
        assert_eq!(fixup.apply(redis_answer), Reply::Bulk(Bytes::from(sha1_hex(original.as_bytes()))));
        // Errors are not rewritten.
        let err = Reply::Error(Bytes::from_static(b"ERR x"));
        assert_eq!(fixup.apply(err.clone()), err);
    }

    #[test]
    fn unflagged_scripts_need_no_fixup() {
        let aliases = ScriptAliases::new();
        let (load, fixup) = aliases.prepare(cmd(&["SCRIPT", "LOAD", "return 3"]));
        assert_eq!(text(&load.args()[1]), "return 3");
        assert_eq!(fixup, Fixup::None);
    }

    #[test]
    fn the_alias_map_stays_bounded() {
        let aliases = ScriptAliases::new();
        for i in 0..(MAX_ALIASES + 10) {
            aliases.insert(sha1_raw(&i.to_le_bytes()), [0; 20]);
        }
        let len = aliases.map.read().map(|m| m.len()).unwrap_or(usize::MAX);
        assert!(len <= MAX_ALIASES);
    }
}
