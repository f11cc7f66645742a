//! The REST protocol's answers (status + JSON, base64 strings) decoded into replies and errors.
//!
//! The rules are those of `docs/upstash-rest-protocol.md` §4–§6 with `Upstash-Encoding: base64`, which
//! the client always sends: a top-level string `"OK"` is [`Reply::Ok`]; every other string, at any
//! depth, is standard padded base64 of the raw bytes; integers are exact; `null` is [`Reply::Nil`];
//! `{"error": …}` is an error reply, never encoded.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::Value;

use super::{HttpReply, RedisError, Reply};

/// How much of an unexpected body an error message quotes.
const QUOTE_LIMIT: usize = 200;

/// Decodes the answer to `POST /`: `200 {"result": …}`, `400 {"error": …}`, `401`, or another status.
pub fn decode_single(reply: &HttpReply) -> Result<Reply, RedisError> {
    if (200..=299).contains(&reply.status) {
        if let Some(fast) = super::fast::read_single(&reply.body) {
            return Ok(fast);
        }
    }
    let json = parse_body(reply)?;
    entry(&json)
}

/// Decodes the answer to `POST /pipeline` or `/multi-exec` for `expected` commands: a 200 array
/// of `{"result"}` / `{"error"}` entries, one per command, in order. A 400 `{"error"}` (a
/// transaction discarded with `EXECABORT`, a rejected request) fails the whole batch.
pub fn decode_batch(reply: &HttpReply, expected: usize) -> Result<Vec<Result<Reply, RedisError>>, RedisError> {
    if (200..=299).contains(&reply.status) {
        if let Some(fast) = super::fast::read_batch(&reply.body, expected) {
            return Ok(fast);
        }
    }
    let json = parse_body(reply)?;
    let Value::Array(entries) = json else {
        return match error_text(&json) {
            Some(message) => Err(RedisError::reply(message)),
            None => Err(malformed("batch answer is not an array", &json)),
        };
    };
    if entries.len() != expected {
        return Err(RedisError::Malformed(format!(
            "batch answer has {} entries for {expected} commands",
            entries.len()
        )));
    }
    entries
        .iter()
        .map(|e| match e {
            Value::Object(_) => Ok(entry(e)),
            other => Err(malformed("batch entry is not an object", other)),
        })
        .collect()
}

/// Decodes one `result` value. `top_level` says whether a bare `"OK"` means the status reply.
pub fn decode_value(value: &Value, top_level: bool) -> Result<Reply, RedisError> {
    match value {
        Value::Null => Ok(Reply::Nil),
        Value::Number(n) => n.as_i64().map(Reply::Int).ok_or_else(|| malformed("number is not an i64", value)),
        Value::String(s) if top_level && s == "OK" => Ok(Reply::Ok),
        Value::String(s) => match STANDARD.decode(s) {
            Ok(bytes) => Ok(Reply::Bulk(bytes)),
            // Only the status reply escapes encoding; a nested one is taken as its text.
            Err(_) if s == "OK" => Ok(Reply::Bulk(b"OK".to_vec())),
            Err(_) => Err(malformed("string is not base64", value)),
        },
        Value::Array(items) => items.iter().map(|x| decode_value(x, false)).collect::<Result<_, _>>().map(Reply::Array),
        Value::Object(_) => match error_text(value) {
            Some(message) => Err(RedisError::reply(message)),
            None => Err(malformed("object in a reply", value)),
        },
        Value::Bool(_) => Err(malformed("boolean in a reply", value)),
    }
}

/// Encodes a reply the way the server does with `Upstash-Encoding: base64` (docs/upstash-rest-protocol.md §6): the
/// inverse of [`decode_value`], for fake transports and tests. A nested [`Reply::Ok`] becomes
/// base64 `"T0s="`, as a server encodes a nested status reply.
pub fn encode_value(reply: &Reply, top_level: bool) -> Value {
    match reply {
        Reply::Nil => Value::Null,
        Reply::Int(n) => Value::from(*n),
        Reply::Ok if top_level => Value::from("OK"),
        Reply::Ok => Value::from(STANDARD.encode(b"OK")),
        Reply::Bulk(bytes) => Value::from(STANDARD.encode(bytes)),
        Reply::Array(items) => Value::Array(items.iter().map(|x| encode_value(x, false)).collect()),
    }
}

/// Encodes one envelope entry: `{"result": …}` or `{"error": "…"}` (the error text as is).
pub fn encode_entry(entry: &Result<Reply, String>) -> Value {
    match entry {
        Ok(reply) => serde_json::json!({ "result": encode_value(reply, true) }),
        Err(message) => serde_json::json!({ "error": message }),
    }
}

/// The body as JSON after the status is dealt with: 401 and non-JSON error statuses end here.
fn parse_body(reply: &HttpReply) -> Result<Value, RedisError> {
    let parsed = serde_json::from_slice::<Value>(&reply.body);
    match reply.status {
        200..=299 => parsed.map_err(|e| RedisError::Malformed(format!("body is not JSON: {e}"))),
        401 => Err(RedisError::Unauthorized),
        // A Redis error reply (or a discarded transaction) is a 400 with an `error` text.
        400 => match parsed.as_ref().ok().and_then(error_text) {
            Some(message) => Err(RedisError::reply(message)),
            None => Err(http_error(reply, parsed.ok())),
        },
        _ => Err(http_error(reply, parsed.ok())),
    }
}

/// One `{"result": …}` / `{"error": …}` object.
fn entry(json: &Value) -> Result<Reply, RedisError> {
    if let Some(message) = error_text(json) {
        return Err(RedisError::reply(message));
    }
    match json.as_object().and_then(|o| o.get("result")) {
        Some(result) => decode_value(result, true),
        None => Err(malformed("no result or error", json)),
    }
}

/// The `error` text of an `{"error": "…"}` object.
fn error_text(json: &Value) -> Option<&str> {
    json.as_object()?.get("error")?.as_str()
}

/// An unexpected status, with the body's `error` text or the start of the body.
fn http_error(reply: &HttpReply, json: Option<Value>) -> RedisError {
    let message = match json.as_ref().and_then(error_text) {
        Some(text) => text.to_owned(),
        None => quote(&String::from_utf8_lossy(&reply.body)),
    };
    RedisError::Http { status: reply.status, message }
}

fn malformed(what: &str, json: &Value) -> RedisError {
    RedisError::Malformed(format!("{what}: {}", quote(&json.to_string())))
}

/// At most [`QUOTE_LIMIT`] characters of `text`.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTE_LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::RedisErrorKind;

    fn http(status: u16, body: &str) -> HttpReply {
        HttpReply { status, body: body.as_bytes().to_vec(), sync_token: None }
    }

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(s.as_bytes().to_vec())
    }

    // docs/upstash-rest-protocol.md §15, one example per line, in their base64 form.

    #[test]
    fn set_answers_the_status_reply_ok() {
        assert_eq!(decode_single(&http(200, r#"{"result":"OK"}"#)), Ok(Reply::Ok));
    }

    #[test]
    fn get_answers_base64_of_the_value() {
        assert_eq!(decode_single(&http(200, r#"{"result":"YmFy"}"#)), Ok(bulk("bar")));
    }

    #[test]
    fn ping_answers_pong_encoded_like_any_other_simple_string() {
        assert_eq!(decode_single(&http(200, r#"{"result":"UE9ORw=="}"#)), Ok(bulk("PONG")));
    }

    #[test]
    fn hset_answers_an_integer() {
        assert_eq!(decode_single(&http(200, r#"{"result":2}"#)), Ok(Reply::Int(2)));
    }

    #[test]
    fn hgetall_answers_a_flat_array_of_encoded_strings() {
        let got = decode_single(&http(200, r#"{"result":["ZjE=","djE=","ZjI=","Mg=="]}"#));
        assert_eq!(got, Ok(Reply::Array(vec![bulk("f1"), bulk("v1"), bulk("f2"), bulk("2")])));
    }

    #[test]
    fn zrange_withscores_answers_scores_as_strings() {
        let got = decode_single(&http(200, r#"{"result":["bQ==","MS41"]}"#));
        assert_eq!(got, Ok(Reply::Array(vec![bulk("m"), bulk("1.5")])));
    }

    #[test]
    fn a_missing_key_is_nil() {
        assert_eq!(decode_single(&http(200, r#"{"result":null}"#)), Ok(Reply::Nil));
    }

    #[test]
    fn a_command_redis_rejects_is_a_400_with_its_error_text() {
        let got = decode_single(&http(400, r#"{"error":"ERR value is not an integer or out of range"}"#));
        assert_eq!(got, Err(RedisError::reply("ERR value is not an integer or out of range")));
        let got = decode_single(&http(400, r#"{"error":"ERR wrong number of arguments for 'get' command"}"#));
        assert!(matches!(got, Err(RedisError::Redis { kind: RedisErrorKind::Other, .. })));
    }

    #[test]
    fn pipeline_mixes_results_and_errors_and_nests_arrays() {
        let body = r#"[{"result":"OK"},{"error":"ERR value is not an integer or out of range"},
            {"result":["dmFsdWV4",null]},{"result":[1,"YQ==",["Yg=="]]}]"#;
        let got = decode_batch(&http(200, body), 4).unwrap();
        assert_eq!(
            got,
            vec![
                Ok(Reply::Ok),
                Err(RedisError::reply("ERR value is not an integer or out of range")),
                Ok(Reply::Array(vec![bulk("valuex"), Reply::Nil])),
                Ok(Reply::Array(vec![Reply::Int(1), bulk("a"), Reply::Array(vec![bulk("b")])])),
            ]
        );
    }

    #[test]
    fn multi_exec_applied_has_runtime_errors_per_entry() {
        let body = r#"[{"result":"OK"},{"error":"ERR value is not an integer or out of range"},{"result":"dg=="}]"#;
        let got = decode_batch(&http(200, body), 3).unwrap();
        assert_eq!(got[0], Ok(Reply::Ok));
        assert!(got[1].is_err());
        assert_eq!(got[2], Ok(bulk("v")));
    }

    #[test]
    fn multi_exec_discarded_fails_the_whole_batch_with_execabort() {
        let body = r#"{"error":"EXECABORT Transaction discarded because of previous errors."}"#;
        let got = decode_batch(&http(400, body), 2);
        assert!(matches!(got, Err(RedisError::Redis { kind: RedisErrorKind::ExecAbort, .. })));
    }

    #[test]
    fn evalsha_of_an_unknown_script_is_noscript() {
        let got = decode_single(&http(400, r#"{"error":"NOSCRIPT No matching script. Please use EVAL."}"#));
        assert!(got.unwrap_err().is_noscript());
    }

    #[test]
    fn binary_values_survive_base64() {
        assert_eq!(decode_single(&http(200, r#"{"result":"//4="}"#)), Ok(Reply::Bulk(vec![0xFF, 0xFE])));
    }

    #[test]
    fn a_bulk_string_ok_is_not_the_status_reply() {
        assert_eq!(decode_single(&http(200, r#"{"result":"T0s="}"#)), Ok(bulk("OK")));
    }

    #[test]
    fn a_nested_literal_ok_is_taken_as_text() {
        assert_eq!(
            decode_single(&http(200, r#"{"result":["OK","T0s="]}"#)),
            Ok(Reply::Array(vec![bulk("OK"), bulk("OK")]))
        );
    }

    #[test]
    fn the_empty_string_is_an_empty_bulk() {
        assert_eq!(decode_single(&http(200, r#"{"result":""}"#)), Ok(Reply::Bulk(Vec::new())));
    }

    #[test]
    fn integers_keep_all_64_bits() {
        let body = format!(r#"{{"result":[{},{}]}}"#, i64::MIN, i64::MAX);
        assert_eq!(
            decode_single(&http(200, &body)),
            Ok(Reply::Array(vec![Reply::Int(i64::MIN), Reply::Int(i64::MAX)]))
        );
    }

    // Malformed answers.

    #[test]
    fn an_unencoded_string_is_malformed() {
        assert!(matches!(decode_single(&http(200, r#"{"result":"bar"}"#)), Err(RedisError::Malformed(_))));
        assert!(matches!(decode_single(&http(200, r#"{"result":"PONG!"}"#)), Err(RedisError::Malformed(_))));
    }

    #[test]
    fn numbers_that_are_not_i64_are_malformed() {
        for body in [r#"{"result":1.5}"#, r#"{"result":18446744073709551615}"#, r#"{"result":1e3}"#] {
            assert!(matches!(decode_single(&http(200, body)), Err(RedisError::Malformed(_))), "{body}");
        }
    }

    #[test]
    fn booleans_and_stray_objects_are_malformed() {
        for body in [r#"{"result":true}"#, r#"{"result":{"a":1}}"#, r#"{"nothing":1}"#, r#"[1]"#, "null"] {
            assert!(matches!(decode_single(&http(200, body)), Err(RedisError::Malformed(_))), "{body}");
        }
    }

    #[test]
    fn a_body_that_is_not_json_is_malformed() {
        assert!(matches!(decode_single(&http(200, "<html>")), Err(RedisError::Malformed(_))));
        assert!(matches!(decode_batch(&http(200, ""), 1), Err(RedisError::Malformed(_))));
    }

    #[test]
    fn an_error_nested_in_a_result_fails_that_result() {
        let got = decode_single(&http(200, r#"{"result":[1,{"error":"WRONGTYPE Operation against a key"}]}"#));
        assert!(matches!(got, Err(RedisError::Redis { kind: RedisErrorKind::WrongType, .. })));
    }

    #[test]
    fn a_batch_of_the_wrong_length_is_malformed() {
        let body = r#"[{"result":1},{"result":2}]"#;
        assert!(matches!(decode_batch(&http(200, body), 3), Err(RedisError::Malformed(_))));
        assert!(matches!(decode_batch(&http(200, body), 1), Err(RedisError::Malformed(_))));
        assert!(matches!(decode_batch(&http(200, r#"[1,2]"#), 2), Err(RedisError::Malformed(_))));
    }

    // Status classification.

    #[test]
    fn a_401_is_unauthorized_whatever_the_body() {
        let body = r#"{"error":"WRONGPASS invalid or missing auth token"}"#;
        assert_eq!(decode_single(&http(401, body)), Err(RedisError::Unauthorized));
        assert_eq!(decode_batch(&http(401, "nope"), 1), Err(RedisError::Unauthorized));
    }

    #[test]
    fn a_5xx_is_an_http_error_carrying_its_text_and_is_transient() {
        let got = decode_single(&http(502, r#"{"error":"redis unreachable"}"#)).unwrap_err();
        assert_eq!(got, RedisError::Http { status: 502, message: "redis unreachable".to_owned() });
        assert!(got.is_transient());
        let got = decode_batch(&http(503, "<html>busy</html>"), 1).unwrap_err();
        assert_eq!(got, RedisError::Http { status: 503, message: "<html>busy</html>".to_owned() });
        assert!(got.is_transient());
    }

    #[test]
    fn a_400_without_an_error_text_is_an_http_error() {
        let got = decode_single(&http(400, "bad request")).unwrap_err();
        assert_eq!(got, RedisError::Http { status: 400, message: "bad request".to_owned() });
        assert!(!got.is_transient());
    }

    #[test]
    fn other_statuses_are_http_errors_not_transient_unless_429() {
        let got = decode_single(&http(404, r#"{"error":"not found"}"#)).unwrap_err();
        assert_eq!(got, RedisError::Http { status: 404, message: "not found".to_owned() });
        assert!(!got.is_transient());
        assert!(decode_single(&http(429, "slow down")).unwrap_err().is_transient());
    }

    #[test]
    fn long_bodies_are_quoted_briefly() {
        let body = "x".repeat(10_000);
        let RedisError::Http { message, .. } = decode_single(&http(500, &body)).unwrap_err() else { panic!() };
        assert!(message.chars().count() <= QUOTE_LIMIT + 1);
    }

    #[test]
    fn encode_follows_the_server_rules() {
        assert_eq!(encode_value(&Reply::Ok, true), Value::from("OK"));
        assert_eq!(encode_value(&Reply::Array(vec![Reply::Ok]), true), serde_json::json!(["T0s="]));
        assert_eq!(encode_value(&bulk("bar"), true), Value::from("YmFy"));
        assert_eq!(encode_entry(&Err("ERR x".to_owned())), serde_json::json!({"error": "ERR x"}));
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod props {
    use proptest::prelude::*;

    use super::*;

    fn reply_tree() -> impl Strategy<Value = Reply> {
        let leaf = prop_oneof![
            Just(Reply::Nil),
            Just(Reply::Ok),
            any::<i64>().prop_map(Reply::Int),
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(Reply::Bulk),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| proptest::collection::vec(inner, 0..6).prop_map(Reply::Array))
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
            "[A-Za-z0-9+/]{0,12}={0,2}".prop_map(Value::from),
            Just(Value::from("OK")),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![Just("result".to_owned()), Just("error".to_owned()), ".{0,6}"],
                    inner,
                    0..3
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// What a decoded tree equals: only the top level can hold the status reply `OK`.
    fn as_decoded(reply: &Reply, top_level: bool) -> Reply {
        match reply {
            Reply::Ok if !top_level => Reply::Bulk(b"OK".to_vec()),
            Reply::Array(items) => Reply::Array(items.iter().map(|x| as_decoded(x, false)).collect()),
            other => other.clone(),
        }
    }

    fn ok(body: String) -> HttpReply {
        HttpReply { status: 200, body: body.into_bytes(), sync_token: None }
    }

    proptest! {
        // The request path's reader (super::super::fast) reads what it takes exactly as the
        // general decoder does, and leaves the rest to it.

        #[test]
        fn the_fast_reader_reads_batches_as_the_general_decoder_does(entries in proptest::collection::vec(
            prop_oneof![4 => reply_tree().prop_map(Ok), 1 => "[a-zA-Z ]{0,12}".prop_map(Err)], 0..5)) {
            let body = Value::Array(entries.iter().map(encode_entry).collect()).to_string();
            let general = decode_batch(&ok(body.clone()), entries.len());
            match super::super::fast::read_batch(body.as_bytes(), entries.len()) {
                Some(fast) => prop_assert_eq!(Ok(fast), general),
                None => prop_assert!(entries.iter().any(Result::is_err), "only error entries leave the fast path"),
            }
        }

        #[test]
        fn the_fast_reader_reads_every_encoded_result_as_the_general_decoder_does(reply in reply_tree()) {
            let body = encode_entry(&Ok(reply)).to_string();
            let fast = super::super::fast::read_single(body.as_bytes());
            prop_assert!(fast.is_some(), "every result the server encodes is read: {}", body);
            prop_assert_eq!(fast.ok_or(RedisError::CircuitOpen), decode_single(&ok(body)));
        }

        #[test]
        fn the_fast_reader_reads_any_bytes_as_the_general_decoder_does_or_not_at_all(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(fast) = super::super::fast::read_batch(&body, 1) {
                prop_assert_eq!(Ok(fast), decode_batch(&HttpReply { status: 200, body: body.clone(), sync_token: None }, 1));
            }
            if let Some(fast) = super::super::fast::read_single(&body) {
                prop_assert_eq!(Ok(fast), decode_single(&HttpReply { status: 200, body, sync_token: None }));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(status in prop_oneof![Just(200u16), Just(400), Just(401), 100u16..600], body in proptest::collection::vec(any::<u8>(), 0..256), n in 0usize..4) {
            let reply = HttpReply { status, body, sync_token: None };
            let _ = decode_single(&reply);
            let _ = decode_batch(&reply, n);
        }

        #[test]
        fn arbitrary_json_never_panics(value in json_value(), status in prop_oneof![Just(200u16), Just(400), 100u16..600], n in 0usize..4) {
            let reply = HttpReply { status, body: value.to_string().into_bytes(), sync_token: None };
            let _ = decode_single(&reply);
            let _ = decode_batch(&reply, n);
            let _ = decode_value(&value, true);
        }

        #[test]
        fn encoding_then_decoding_gives_the_tree_back(tree in reply_tree()) {
            let body = serde_json::json!({ "result": encode_value(&tree, true) }).to_string();
            let decoded = decode_single(&HttpReply { status: 200, body: body.into_bytes(), sync_token: None });
            prop_assert_eq!(decoded, Ok(as_decoded(&tree, true)));
        }

        #[test]
        fn batches_round_trip_entry_by_entry(entries in proptest::collection::vec(prop_oneof![
            reply_tree().prop_map(Ok),
            "(ERR|NOSCRIPT|WRONGTYPE|BUSY) [a-z ]{0,10}".prop_map(Err),
        ], 1..6)) {
            let body = Value::Array(entries.iter().map(encode_entry).collect()).to_string();
            let decoded = decode_batch(&HttpReply { status: 200, body: body.into_bytes(), sync_token: None }, entries.len());
            let expected: Vec<Result<Reply, RedisError>> = entries
                .iter()
                .map(|e| match e {
                    Ok(tree) => Ok(as_decoded(tree, true)),
                    Err(message) => Err(RedisError::reply(message.clone())),
                })
                .collect();
            prop_assert_eq!(decoded, Ok(expected));
        }
    }
}
