//! Percent-decoding for path segments and query strings of the path form (`/set/a%2Fb/v`),
//! into raw bytes: an encoded value need not be UTF-8.

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays literal.
/// With `plus_as_space`, `+` means a space (query strings, form encoding).
pub fn decode(input: &str, plus_as_space: bool) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| hex_value(*c));
            let lo = bytes.get(i + 2).and_then(|c| hex_value(*c));
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(if plus_as_space && b == b'+' { b' ' } else { b });
        i += 1;
    }
    out
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Splits a query string into decoded `(name, value)` pairs, in order. `a` and `a=` both give
/// an empty value.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(name, true), decode(value, true))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_into_raw_bytes() {
        assert_eq!(decode("a%2Fb%20c%ff", false), b"a/b c\xff");
        assert_eq!(decode("%e2%9C%93", false), "✓".as_bytes());
    }

    #[test]
    fn leaves_broken_escapes_literal() {
        assert_eq!(decode("100%", false), b"100%");
        assert_eq!(decode("%zz%4", false), b"%zz%4");
    }

    #[test]
    fn plus_is_a_space_only_in_queries() {
        assert_eq!(decode("a+b", false), b"a+b");
        assert_eq!(decode("a+b", true), b"a b");
    }

    #[test]
    fn query_pairs_keep_order_and_bare_names() {
        let pairs: Vec<_> = query_pairs("EX=100&NX&&v=a%3Db").collect();
        assert_eq!(
            pairs,
            vec![(b"EX".to_vec(), b"100".to_vec()), (b"NX".to_vec(), Vec::new()), (b"v".to_vec(), b"a=b".to_vec()),]
        );
    }
}
