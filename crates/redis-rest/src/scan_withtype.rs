//! Upstash's `SCAN cursor [MATCH p] [COUNT n] [TYPE t] WITHTYPE` extension (`docs/upstash-rest-protocol.md` §12),
//! which `@upstash/redis` sends for `scan(c, {withType: true})`. Stock Redis has no WITHTYPE, so
//! it runs as one Lua script: SCAN, then TYPE for each key, answering
//! `[cursor, [key1, type1, key2, type2, …]]`.

use bytes::Bytes;

use crate::command::{eq_keyword, Command};

/// ARGV = the SCAN arguments without WITHTYPE.
const SCRIPT: &str = "local r = redis.call('SCAN', unpack(ARGV))
local out = {}
for _, k in ipairs(r[2]) do
  out[#out + 1] = k
  out[#out + 1] = redis.call('TYPE', k)['ok']
end
return {r[1], out}";

/// Turns `SCAN … WITHTYPE` into the emulating `EVAL`; any other command is returned as is.
pub fn rewrite(cmd: Command) -> Command {
    if !eq_keyword(cmd.name(), "SCAN") || cmd.args().is_empty() {
        return cmd;
    }
    let mut withtype = false;
    let mut kept: Vec<Bytes> = Vec::with_capacity(cmd.args().len() + 2);
    kept.push(Bytes::from_static(SCRIPT.as_bytes()));
    kept.push(Bytes::from_static(b"0"));
    let mut args = cmd.args().iter();
    // The cursor is never an option name.
    if let Some(cursor) = args.next() {
        kept.push(cursor.clone());
    }
    while let Some(arg) = args.next() {
        if eq_keyword(arg, "WITHTYPE") {
            withtype = true;
            continue;
        }
        kept.push(arg.clone());
        if ["MATCH", "COUNT", "TYPE"].iter().any(|k| eq_keyword(arg, k)) {
            if let Some(value) = args.next() {
                kept.push(value.clone());
            }
        }
    }
    if withtype {
        Command::new(Bytes::from_static(b"EVAL"), kept)
    } else {
        cmd
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

    #[test]
    fn rewrites_scan_withtype_into_eval() {
        let out = rewrite(cmd(&["scan", "0", "MATCH", "withtype", "withType", "count", "5"]));
        let parts: Vec<&[u8]> = out.args().iter().map(|b| &b[..]).collect();
        assert_eq!(&out.name()[..], b"EVAL");
        assert_eq!(parts, vec![SCRIPT.as_bytes(), b"0", b"0", b"MATCH", b"withtype", b"count", b"5"]);
    }

    #[test]
    fn leaves_plain_scan_alone() {
        let plain = cmd(&["SCAN", "0", "MATCH", "withtype"]);
        assert_eq!(rewrite(plain.clone()), plain);
        let other = cmd(&["GET", "WITHTYPE"]);
        assert_eq!(rewrite(other.clone()), other);
    }
}
