//! A Lua script as a value: its source and SHA-1, run EVALSHA-first by [`super::Client`].

use std::borrow::Cow;

use sha1::{Digest, Sha1};

use super::{Arg, Command};

/// A Lua script with its SHA-1 (lowercase hex of the UTF-8 source, as Redis computes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    source: Cow<'static, str>,
    sha1: String,
}

impl Script {
    /// Wraps a script source (usually `include_str!` of a `.lua` file, or a source built from
    /// such files once per isolate).
    pub fn new(source: impl Into<Cow<'static, str>>) -> Self {
        let source = source.into();
        let sha1 = hex::encode(Sha1::digest(source.as_bytes()));
        Self { source, sha1 }
    }

    /// The Lua source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Lowercase hex SHA-1 of the source.
    pub fn sha1(&self) -> &str {
        &self.sha1
    }

    /// `EVALSHA sha numkeys keys… args…`.
    pub fn evalsha(&self, keys: &[String], args: &[Arg]) -> Command {
        Command::new("EVALSHA").arg(self.sha1.as_str()).arg(keys.len()).args(keys.iter()).args(args.iter().cloned())
    }

    /// `EVAL source numkeys keys… args…`, the fallback after `NOSCRIPT`.
    pub fn eval(&self, keys: &[String], args: &[Arg]) -> Command {
        Command::new("EVAL").arg(self.source.as_ref()).arg(keys.len()).args(keys.iter()).args(args.iter().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_matches_redis_for_a_known_script() {
        // SCRIPT LOAD "return 1" answers e0e1f9fabfc9d4800c877a703b823ac0578ff8db.
        assert_eq!(Script::new("return 1").sha1(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }
}
