//! A decoded Redis reply, RESP2-shaped; [`super::decode`] builds it from the REST protocol's JSON.

/// One Redis reply, RESP2-shaped as the REST protocol carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Null bulk string or null array.
    Nil,
    /// An integer (Lua numbers arrive truncated to integers; Lua `true` as 1).
    Int(i64),
    /// A bulk string's raw bytes (nested simple strings decode to this too).
    Bulk(Vec<u8>),
    /// The top-level simple string `OK`.
    Ok,
    /// An array of replies.
    Array(Vec<Reply>),
}

impl Reply {
    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The bytes, if this is a bulk string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Reply::Bulk(b) => Some(b),
            _ => None,
        }
    }

    /// The bulk string as UTF-8, if it is one and valid.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Reply]> {
        match self {
            Reply::Array(items) => Some(items),
            _ => None,
        }
    }

    /// Whether this is `Nil`.
    pub fn is_nil(&self) -> bool {
        matches!(self, Reply::Nil)
    }

    /// An integer or a bulk string holding one (Lua may return either).
    pub fn to_i64(&self) -> Option<i64> {
        match self {
            Reply::Int(n) => Some(*n),
            Reply::Bulk(_) => self.as_str().and_then(|s| s.trim().parse().ok()),
            _ => None,
        }
    }
}
