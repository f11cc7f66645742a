//! A Redis command as raw bytes: a name that always exists plus its arguments, exactly as the
//! client sent them (no UTF-8 or number round trips).

use bytes::Bytes;

/// Longest command name worth upper-casing for a lookup; no Redis command is longer.
const MAX_NAME: usize = 32;

/// One command: `name arg…`. The name is never missing, so "empty command" cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    name: Bytes,
    args: Vec<Bytes>,
}

impl Command {
    pub fn new(name: Bytes, args: Vec<Bytes>) -> Self {
        Self { name, args }
    }

    /// Convenience for commands the server itself issues (`MULTI`, `PING`, …).
    pub fn from_static(name: &'static str, args: &[&'static str]) -> Self {
        Self {
            name: Bytes::from_static(name.as_bytes()),
            args: args.iter().map(|a| Bytes::from_static(a.as_bytes())).collect(),
        }
    }

    pub fn name(&self) -> &Bytes {
        &self.name
    }

    pub fn args(&self) -> &[Bytes] {
        &self.args
    }

    pub fn args_mut(&mut self) -> &mut Vec<Bytes> {
        &mut self.args
    }

    /// The name upper-cased for matching against command tables; `None` when it is too long
    /// to be any known command.
    pub fn upper_name(&self) -> Option<UpperName> {
        UpperName::new(&self.name)
    }

    /// The name in lowercase, as used for the per-command counters.
    pub fn lower_name(&self) -> String {
        String::from_utf8_lossy(&self.name).to_ascii_lowercase()
    }

    /// The name as sent, for error messages.
    pub fn display_name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// An ASCII-uppercased copy of a short name, kept on the stack.
#[derive(Clone, Copy)]
pub struct UpperName {
    buf: [u8; MAX_NAME],
    len: usize,
}

impl UpperName {
    pub fn new(raw: &[u8]) -> Option<Self> {
        if raw.len() > MAX_NAME {
            return None;
        }
        let mut buf = [0u8; MAX_NAME];
        for (dst, src) in buf.iter_mut().zip(raw) {
            *dst = src.to_ascii_uppercase();
        }
        Some(Self { buf, len: raw.len() })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Case-insensitive comparison of an argument with an ASCII keyword.
pub fn eq_keyword(arg: &[u8], keyword: &str) -> bool {
    arg.eq_ignore_ascii_case(keyword.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_name_folds_ascii_case_only() {
        let cmd = Command::new(Bytes::from_static(b"evalSha_ro"), vec![]);
        assert_eq!(cmd.upper_name().map(|n| n.as_bytes().to_vec()), Some(b"EVALSHA_RO".to_vec()));
        assert_eq!(cmd.lower_name(), "evalsha_ro");
    }

    #[test]
    fn overlong_names_have_no_upper_form() {
        let cmd = Command::new(Bytes::from(vec![b'a'; MAX_NAME + 1]), vec![]);
        assert!(cmd.upper_name().is_none());
    }
}
