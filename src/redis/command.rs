//! A Redis command as the REST protocol carries it: a JSON array of strings and integers.

use serde::ser::{Serialize, SerializeSeq, Serializer};

/// One argument: a string, or an integer sent as a JSON number (its exact text reaches Redis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// A string argument (keys, values, flags).
    Str(String),
    /// An integer argument.
    Int(i64),
}

impl From<&str> for Arg {
    fn from(s: &str) -> Self {
        Arg::Str(s.to_owned())
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Self {
        Arg::Str(s)
    }
}

impl From<&String> for Arg {
    fn from(s: &String) -> Self {
        Arg::Str(s.clone())
    }
}

impl From<i64> for Arg {
    fn from(n: i64) -> Self {
        Arg::Int(n)
    }
}

impl From<u64> for Arg {
    fn from(n: u64) -> Self {
        Arg::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<u32> for Arg {
    fn from(n: u32) -> Self {
        Arg::Int(i64::from(n))
    }
}

impl From<usize> for Arg {
    fn from(n: usize) -> Self {
        Arg::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

/// A command: its name followed by its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    parts: Vec<Arg>,
}

impl Command {
    /// Starts a command named `name` (`"GET"`, `"EVALSHA"`, …).
    pub fn new(name: &str) -> Self {
        Self { parts: vec![Arg::Str(name.to_owned())] }
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<Arg>) -> Self {
        self.parts.push(arg.into());
        self
    }

    /// Appends several arguments.
    pub fn args<A: Into<Arg>>(mut self, args: impl IntoIterator<Item = A>) -> Self {
        self.parts.extend(args.into_iter().map(Into::into));
        self
    }

    /// The command name as given.
    pub fn name(&self) -> &str {
        match self.parts.first() {
            Some(Arg::Str(s)) => s,
            _ => "",
        }
    }

    /// Name and arguments, in order.
    pub fn parts(&self) -> &[Arg] {
        &self.parts
    }

    /// `GET key`.
    pub fn get(key: impl Into<String>) -> Self {
        Self::new("GET").arg(key.into())
    }

    /// `DEL key…`.
    pub fn del<K: Into<String>>(keys: impl IntoIterator<Item = K>) -> Self {
        Self::new("DEL").args(keys.into_iter().map(|k| Arg::Str(k.into())))
    }

    /// `SET key value PX ttl_ms`: every value Tollgate writes expires.
    pub fn set_px(key: impl Into<String>, value: impl Into<String>, ttl_ms: u64) -> Self {
        Self::new("SET").arg(key.into()).arg(value.into()).arg("PX").arg(ttl_ms)
    }
}

impl Serialize for Arg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Arg::Str(v) => s.serialize_str(v),
            Arg::Int(n) => s.serialize_i64(*n),
        }
    }
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.parts.len()))?;
        for p in &self.parts {
            seq.serialize_element(p)?;
        }
        seq.end()
    }
}
