//! "Never panics, never accepts garbage" for the request parser: command bodies, batch bodies and
//! path-form commands. The `redis_rest_args` fuzz target (`fuzz/`) runs the same property longer.
#![cfg(not(target_arch = "wasm32"))]

use bytes::Bytes;
use proptest::prelude::*;
use redis_rest::args::{parse_batch, parse_command, parse_path};

fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(&b"["[..]),
        Just(&b"]"[..]),
        Just(&b","[..]),
        Just(&b"\""[..]),
        Just(&b"\"SET\""[..]),
        Just(&b"\"k\""[..]),
        Just(&b"\\u00e9"[..]),
        Just(&b"\\ud800"[..]),
        Just(&b"1"[..]),
        Just(&b"-2.5e3"[..]),
        Just(&b"null"[..]),
        Just(&b"{}"[..]),
        Just(&b" "[..]),
        Just(&b"\xff"[..]),
    ];
    prop_oneof![
        proptest::collection::vec(token, 0..30).prop_map(|t| t.concat()),
        proptest::collection::vec(any::<u8>(), 0..128),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn bodies_parse_or_fail_typed_and_garbage_is_refused(body in jsonish()) {
        let bytes = Bytes::from(body.clone());
        let command = parse_command(&bytes);
        let batch = parse_batch(&bytes);
        let not_json = serde_json::from_slice::<serde_json::Value>(&body)
            .is_err_and(|e| !e.to_string().contains("out of range"));
        if not_json {
            prop_assert!(command.is_err(), "garbage accepted as a command: {:?}", String::from_utf8_lossy(&body));
            prop_assert!(batch.is_err(), "garbage accepted as a batch: {:?}", String::from_utf8_lossy(&body));
        }
    }

    #[test]
    fn path_form_commands_never_panic(path in "/[ -~]{0,64}", query in proptest::option::of("[ -~]{0,32}"), body in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..32))) {
        let _ = parse_path(&path, query.as_deref(), body.map(Bytes::from));
    }
}
