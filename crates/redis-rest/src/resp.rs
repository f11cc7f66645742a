//! RESP2 wire codec: commands out, replies in. Simple strings stay distinct from bulk strings
//! all the way to the JSON encoder, because only a top-level `+OK` escapes base64
//! (`docs/upstash-rest-protocol.md` §6).

use bytes::{Buf, Bytes, BytesMut};

use crate::command::Command;

/// Deepest array nesting accepted from Redis. Lua can build deeper tables than a JSON encoder
/// should recurse into; deeper replies are a protocol error and the connection is dropped.
pub const MAX_DEPTH: usize = 512;

/// One RESP2 reply as Redis sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+…`: a status such as `OK`, `PONG`, `QUEUED` or a TYPE name.
    Simple(Bytes),
    /// `-…`: an error reply, text without the leading `-`.
    Error(Bytes),
    /// `:…`
    Integer(i64),
    /// `$n…`: raw bytes, not necessarily UTF-8.
    Bulk(Bytes),
    /// `$-1` or `*-1`.
    Nil,
    /// `*n…`
    Array(Vec<Reply>),
}

impl Reply {
    /// True for an error reply (`-…`) at this level only.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }
}

/// A reply Redis sent that this codec cannot read; the connection is unusable afterwards.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("unexpected reply type byte 0x{0:02x}")]
    UnknownType(u8),
    #[error("malformed length or integer in reply header")]
    BadNumber,
    #[error("reply line is not terminated by CRLF")]
    MissingCrlf,
    #[error("reply nested deeper than {MAX_DEPTH} arrays")]
    TooDeep,
}

/// Appends `cmd` to `out` as a RESP2 array of bulk strings.
pub fn encode_command(out: &mut BytesMut, cmd: &Command) {
    let total = cmd.args().len() + 1;
    push_header(out, b'*', total);
    for part in std::iter::once(cmd.name()).chain(cmd.args().iter()) {
        push_header(out, b'$', part.len());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
}

fn push_header(out: &mut BytesMut, kind: u8, n: usize) {
    // Decimal digits on the stack: headers are written for every argument of every command.
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut n = n as u64;
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&[kind]);
    out.extend_from_slice(&tmp[i..]);
    out.extend_from_slice(b"\r\n");
}

/// Writes `reply` back in RESP2 form (for `Upstash-Response-Format: resp2`).
pub fn write_reply(out: &mut Vec<u8>, reply: &Reply) {
    match reply {
        Reply::Simple(s) => {
            out.push(b'+');
            out.extend_from_slice(s);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Error(s) => {
            out.push(b'-');
            out.extend_from_slice(s);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Integer(i) => {
            out.push(b':');
            out.extend_from_slice(i.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Reply::Bulk(b) => {
            out.push(b'$');
            out.extend_from_slice(b.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
        Reply::Array(items) => {
            out.push(b'*');
            out.extend_from_slice(items.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
            for item in items {
                write_reply(out, item);
            }
        }
    }
}

/// Incremental reply decoder. Arrays under construction survive between calls, so a large
/// reply arriving in many reads is parsed once, in linear time, without recursion.
#[derive(Debug, Default)]
pub struct Decoder {
    stack: Vec<Frame>,
}

#[derive(Debug)]
struct Frame {
    items: Vec<Reply>,
    remaining: usize,
}

enum Step {
    Value(Reply),
    ArrayStart(usize),
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one complete reply from the front of `buf`, consuming the bytes it used.
    /// `Ok(None)` means more bytes are needed; call again after the next read.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Reply>, ProtocolError> {
        loop {
            let mut value = match parse_step(buf)? {
                None => return Ok(None),
                Some(Step::Value(v)) => v,
                Some(Step::ArrayStart(0)) => Reply::Array(Vec::new()),
                Some(Step::ArrayStart(n)) => {
                    if self.stack.len() >= MAX_DEPTH {
                        return Err(ProtocolError::TooDeep);
                    }
                    self.stack.push(Frame { items: Vec::with_capacity(n.min(1024)), remaining: n });
                    continue;
                }
            };
            // Attach the finished value to its parents, closing every array it completes.
            loop {
                let Some(frame) = self.stack.last_mut() else {
                    return Ok(Some(value));
                };
                frame.items.push(value);
                frame.remaining -= 1;
                if frame.remaining > 0 {
                    break;
                }
                match self.stack.pop() {
                    Some(done) => value = Reply::Array(done.items),
                    None => return Err(ProtocolError::BadNumber),
                }
            }
        }
    }
}

/// Parses one header (and, for bulk strings, its payload) if `buf` holds all of it.
fn parse_step(buf: &mut BytesMut) -> Result<Option<Step>, ProtocolError> {
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    if nl < 1 || buf[nl - 1] != b'\r' {
        return Err(ProtocolError::MissingCrlf);
    }
    let line_end = nl - 1; // index of '\r'
    let header_len = nl + 1;
    match kind {
        b'+' | b'-' => {
            let mut line = buf.split_to(header_len);
            line.truncate(line_end);
            line.advance(1);
            let text = line.freeze();
            Ok(Some(Step::Value(if kind == b'+' { Reply::Simple(text) } else { Reply::Error(text) })))
        }
        b':' => {
            let n = parse_i64(&buf[1..line_end])?;
            buf.advance(header_len);
            Ok(Some(Step::Value(Reply::Integer(n))))
        }
        b'$' => {
            let n = parse_i64(&buf[1..line_end])?;
            if n == -1 {
                buf.advance(header_len);
                return Ok(Some(Step::Value(Reply::Nil)));
            }
            let len = usize::try_from(n).map_err(|_| ProtocolError::BadNumber)?;
            let total = header_len.checked_add(len).and_then(|t| t.checked_add(2)).ok_or(ProtocolError::BadNumber)?;
            if buf.len() < total {
                buf.reserve(total - buf.len());
                return Ok(None);
            }
            if &buf[total - 2..total] != b"\r\n" {
                return Err(ProtocolError::MissingCrlf);
            }
            buf.advance(header_len);
            let data = buf.split_to(len).freeze();
            buf.advance(2);
            Ok(Some(Step::Value(Reply::Bulk(data))))
        }
        b'*' => {
            let n = parse_i64(&buf[1..line_end])?;
            buf.advance(header_len);
            if n == -1 {
                return Ok(Some(Step::Value(Reply::Nil)));
            }
            let n = usize::try_from(n).map_err(|_| ProtocolError::BadNumber)?;
            Ok(Some(Step::ArrayStart(n)))
        }
        other => Err(ProtocolError::UnknownType(other)),
    }
}

fn parse_i64(digits: &[u8]) -> Result<i64, ProtocolError> {
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() {
        return Err(ProtocolError::BadNumber);
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return Err(ProtocolError::BadNumber);
        }
        let digit = i64::from(d - b'0');
        value = value
            .checked_mul(10)
            .and_then(|v| if negative { v.checked_sub(digit) } else { v.checked_add(digit) })
            .ok_or(ProtocolError::BadNumber)?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<Option<Reply>, ProtocolError> {
        let mut buf = BytesMut::from(input);
        Decoder::new().decode(&mut buf)
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn encodes_a_command_as_an_array_of_bulk_strings() {
        let cmd = Command::new(b("SET"), vec![b("k"), b(""), b("v\r\n")]);
        let mut out = BytesMut::new();
        encode_command(&mut out, &cmd);
        assert_eq!(&out[..], b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n$3\r\nv\r\n\r\n");
    }

    #[test]
    fn keeps_simple_strings_distinct_from_bulk_strings() {
        assert_eq!(decode_all(b"+OK\r\n"), Ok(Some(Reply::Simple(b("OK")))));
        assert_eq!(decode_all(b"$2\r\nOK\r\n"), Ok(Some(Reply::Bulk(b("OK")))));
    }

    #[test]
    fn decodes_every_reply_kind() {
        assert_eq!(decode_all(b"-ERR nope\r\n"), Ok(Some(Reply::Error(b("ERR nope")))));
        assert_eq!(decode_all(b":-42\r\n"), Ok(Some(Reply::Integer(-42))));
        assert_eq!(decode_all(b":9223372036854775807\r\n"), Ok(Some(Reply::Integer(i64::MAX))));
        assert_eq!(decode_all(b":-9223372036854775808\r\n"), Ok(Some(Reply::Integer(i64::MIN))));
        assert_eq!(decode_all(b"$-1\r\n"), Ok(Some(Reply::Nil)));
        assert_eq!(decode_all(b"*-1\r\n"), Ok(Some(Reply::Nil)));
        assert_eq!(decode_all(b"*0\r\n"), Ok(Some(Reply::Array(vec![]))));
        assert_eq!(
            decode_all(b"*3\r\n:1\r\n*2\r\n$1\r\na\r\n*0\r\n$-1\r\n"),
            Ok(Some(Reply::Array(vec![
                Reply::Integer(1),
                Reply::Array(vec![Reply::Bulk(b("a")), Reply::Array(vec![])]),
                Reply::Nil,
            ])))
        );
    }

    #[test]
    fn bulk_strings_carry_arbitrary_bytes() {
        assert_eq!(decode_all(b"$4\r\n\xff\r\n\x00\r\n"), Ok(Some(Reply::Bulk(Bytes::from_static(b"\xff\r\n\x00")))));
    }

    #[test]
    fn resumes_a_reply_split_at_every_byte() {
        let wire: &[u8] = b"*2\r\n$5\r\nhello\r\n*2\r\n:7\r\n+QUEUED\r\n+PONG\r\n";
        for split in 0..wire.len() {
            let mut decoder = Decoder::new();
            let mut buf = BytesMut::from(&wire[..split]);
            let first = decoder.decode(&mut buf).expect("valid prefix");
            buf.extend_from_slice(&wire[split..]);
            let reply = match first {
                Some(r) => r,
                None => decoder.decode(&mut buf).expect("valid").expect("complete"),
            };
            assert_eq!(
                reply,
                Reply::Array(vec![
                    Reply::Bulk(b("hello")),
                    Reply::Array(vec![Reply::Integer(7), Reply::Simple(b("QUEUED"))]),
                ]),
                "split at {split}"
            );
            // The following reply is left intact in the buffer.
            assert_eq!(decoder.decode(&mut buf).expect("valid"), Some(Reply::Simple(b("PONG"))), "split at {split}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn rejects_malformed_replies_without_panicking() {
        for bad in [
            &b"?x\r\n"[..],
            b":12a\r\n",
            b":\r\n",
            b":99999999999999999999\r\n",
            b"$-2\r\n",
            b"$3\r\nabcd\r\n",
            b"*-5\r\n",
            b"+OK\n",
            b"\n",
        ] {
            assert!(decode_all(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn refuses_absurd_nesting() {
        let mut wire = Vec::new();
        for _ in 0..(MAX_DEPTH + 1) {
            wire.extend_from_slice(b"*1\r\n");
        }
        wire.extend_from_slice(b":1\r\n");
        assert_eq!(decode_all(&wire), Err(ProtocolError::TooDeep));
    }

    #[test]
    fn round_trips_replies_through_write_reply() {
        let reply = Reply::Array(vec![
            Reply::Simple(b("OK")),
            Reply::Error(b("ERR x")),
            Reply::Integer(-3),
            Reply::Bulk(b("a\r\nb")),
            Reply::Nil,
            Reply::Array(vec![]),
        ]);
        let mut out = Vec::new();
        write_reply(&mut out, &reply);
        let mut nil_as_bulk = reply.clone();
        if let Reply::Array(items) = &mut nil_as_bulk {
            items[4] = Reply::Nil;
        }
        assert_eq!(decode_all(&out), Ok(Some(nil_as_bulk)));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn reply() -> impl Strategy<Value = Reply> {
            let leaf = prop_oneof![
                "[a-zA-Z ]{0,8}".prop_map(|s| Reply::Simple(Bytes::from(s))),
                "[a-zA-Z ]{0,8}".prop_map(|s| Reply::Error(Bytes::from(s))),
                any::<i64>().prop_map(Reply::Integer),
                proptest::collection::vec(any::<u8>(), 0..16).prop_map(|b| Reply::Bulk(Bytes::from(b))),
                Just(Reply::Nil),
            ];
            leaf.prop_recursive(4, 32, 6, |inner| proptest::collection::vec(inner, 0..6).prop_map(Reply::Array))
        }

        proptest! {
            #[test]
            fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..128)) {
                let mut buf = BytesMut::from(&input[..]);
                let mut d = Decoder::new();
                for _ in 0..4 {
                    match d.decode(&mut buf) {
                        Ok(Some(_)) => continue,
                        _ => break,
                    }
                }
            }

            #[test]
            fn written_replies_decode_to_themselves_in_any_chunking(
                r in reply(),
                chunk in 1usize..16,
            ) {
                let mut wire = Vec::new();
                write_reply(&mut wire, &r);
                let mut d = Decoder::new();
                let mut buf = BytesMut::new();
                let mut got = None;
                for piece in wire.chunks(chunk) {
                    buf.extend_from_slice(piece);
                    if let Some(x) = d.decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
                        got = Some(x);
                    }
                }
                prop_assert_eq!(got, Some(r));
                prop_assert!(buf.is_empty());
            }
        }
    }
}
