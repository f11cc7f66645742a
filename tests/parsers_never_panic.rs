//! "Never panics, never accepts garbage": every parser that reads what a client, a config or a
//! server reply can influence, fed arbitrary and corrupted input. The same properties run longer
//! as `cargo fuzz` targets (`fuzz/`); here the case counts are small so `cargo test` stays fast.
#![cfg(not(target_arch = "wasm32"))]

use proptest::prelude::*;
use serde_json::{json, Value};
use tollgate::cache::key::canonical_json;
use tollgate::cache::Entry;
use tollgate::identity::jwt;
use tollgate::path::normalize;
use tollgate::redis::decode::{decode_batch, decode_single};
use tollgate::redis::HttpReply;
use tollgate::Policy;

const CASES: u32 = 128;

/// Bytes that look a little like JSON, so the parsers get past their first byte.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(&b"{"[..]),
        Just(&b"}"[..]),
        Just(&b"["[..]),
        Just(&b"]"[..]),
        Just(&b","[..]),
        Just(&b":"[..]),
        Just(&b"\""[..]),
        Just(&b"\\u00"[..]),
        Just(&b"\\ud800"[..]),
        Just(&b"null"[..]),
        Just(&b"true"[..]),
        Just(&b"-0.5e+3"[..]),
        Just(&b"\"result\""[..]),
        Just(&b"\"error\""[..]),
        Just(&b"\"T0s=\""[..]),
        Just(&b" "[..]),
        Just(&b"\xff"[..]),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

fn any_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..256), jsonish()]
}

fn sample_entry(body: Vec<u8>) -> Entry {
    Entry {
        format_version: tollgate::cache::ENTRY_FORMAT,
        status: 200,
        body,
        content_type: Some("application/json".into()),
        etag: "\"abc\"".into(),
        stored_ms: 1,
        fresh_until_ms: 2,
        stale_until_ms: 3,
        fetch_ms: 4,
        generation: 5,
        tags: vec!["t".into()],
        headers: vec![("content-language".into(), "en".into())],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn rest_replies_decode_or_fail_typed(status in prop_oneof![Just(200u16), Just(400), 100u16..600], body in any_bytes(), n in 0usize..4) {
        let reply = HttpReply { status, body: body.clone(), sync_token: None };
        let single = decode_single(&reply);
        let batch = decode_batch(&reply, n);
        if serde_json::from_slice::<Value>(&body).is_err_and(|e| !e.to_string().contains("out of range")) {
            prop_assert!(single.is_err(), "garbage accepted: {:?}", String::from_utf8_lossy(&body));
            prop_assert!(batch.is_err());
        }
        if let Ok(entries) = batch {
            prop_assert_eq!(entries.len(), n, "a batch answers one entry per command");
        }
    }

    #[test]
    fn cache_entries_decode_only_when_whole(body in proptest::collection::vec(any::<u8>(), 1..300), cut in 0usize..400, junk in any_bytes()) {
        let _ = Entry::decode(&junk, 1 << 20);
        let mut prefixed = b"tgc1:".to_vec();
        prefixed.extend_from_slice(&junk);
        if let Ok(e) = Entry::decode(&prefixed, 1 << 20) {
            prop_assert!((200..300).contains(&e.status) && e.status != 206);
            prop_assert!(e.stored_ms <= e.fresh_until_ms && e.fresh_until_ms <= e.stale_until_ms);
        }
        let entry = sample_entry(body);
        for compress_min in [0u32, u32::MAX] {
            let encoded = entry.encode(compress_min);
            let decoded = Entry::decode(encoded.as_bytes(), 1 << 20);
            prop_assert_eq!(decoded.as_ref(), Ok(&entry));
            let cut = cut % encoded.len();
            let truncated = &encoded.as_bytes()[..cut];
            prop_assert!(Entry::decode(truncated, 1 << 20).is_err(), "a truncated value decoded (cut at {})", cut);
        }
    }

    #[test]
    fn the_json_body_normalizer_accepts_only_json(body in any_bytes()) {
        // serde_json refuses numbers beyond f64 that the normalizer keeps as written: not garbage.
        let refuses = |r: Result<Value, serde_json::Error>| r.is_err_and(|e| !e.to_string().contains("out of range"));
        let ours = canonical_json(&body);
        if refuses(serde_json::from_slice::<Value>(&body)) {
            prop_assert!(ours.is_err(), "garbage accepted: {:?}", String::from_utf8_lossy(&body));
        }
        if let Ok(canon) = ours {
            let again = canonical_json(canon.as_bytes());
            prop_assert_eq!(again.as_ref(), Ok(&canon), "canonical form is a fixed point");
            prop_assert!(!refuses(serde_json::from_str::<Value>(&canon)));
        }
    }

    #[test]
    fn jwts_never_verify_without_the_signature(token in "[A-Za-z0-9_.=-]{0,200}", claims in proptest::collection::btree_map("[a-z]{1,6}", any::<i64>(), 0..5)) {
        let settings = Policy::default().identity;
        prop_assert!(jwt::verify(&token, b"secret", &settings, 1_800_000_000).is_err());
        let signed = jwt::sign_hs256(&json!(claims), b"secret");
        let _ = jwt::verify(&signed, b"secret", &settings, 1_800_000_000);
        prop_assert!(jwt::verify(&signed, b"other", &settings, 1_800_000_000).is_err(), "wrong secret accepted");
        // Flip one character in the middle of the signature.
        let dot = signed.rfind('.').unwrap_or(0);
        let mid = dot + (signed.len() - dot) / 2;
        let mut forged: Vec<char> = signed.chars().collect();
        if let Some(c) = forged.get_mut(mid) {
            *c = if *c == 'A' { 'B' } else { 'A' };
        }
        let forged: String = forged.into_iter().collect();
        if forged != signed {
            prop_assert!(jwt::verify(&forged, b"secret", &settings, 1_800_000_000).is_err(), "forged signature accepted");
        }
    }

    #[test]
    fn the_policy_parser_fails_with_a_field_path_never_a_panic(text in "\\PC{0,200}", body in jsonish()) {
        let _ = Policy::parse_json(&text);
        let _ = Policy::parse_wrangler_toml(&text);
        if let Ok(text) = String::from_utf8(body) {
            let parsed = Policy::parse_json(&text);
            if serde_json::from_str::<Value>(&text).is_err() && !text.trim().is_empty() {
                prop_assert!(parsed.is_err(), "garbage accepted: {:?}", text);
            }
        }
    }

    #[test]
    fn random_policies_from_valid_pieces_parse_or_name_the_field(limit in any::<i64>(), window in "[0-9]{0,4}[a-z]{0,2}", path in "[/a-z{}*%.]{0,16}") {
        let text = json!({
            "routes": [{ "name": "r", "path": path, "methods": ["GET"], "limits": [{ "limit": limit, "window": window }] }]
        })
        .to_string();
        if let Err(e) = Policy::parse_json(&text) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn paths_normalize_then_match_without_panicking(path in "/[ -~]{0,64}", method in prop_oneof![Just("GET"), Just("POST"), Just("HEAD")]) {
        let policy = Policy::default();
        if let Ok(n) = normalize(&path) {
            let again = normalize(&n);
            prop_assert_eq!(again.as_ref(), Ok(&n));
            let _ = policy.route_for(method, &n);
        }
    }
}

#[test]
fn every_spelling_of_the_auth_path_meets_the_auth_route() {
    let policy = Policy::default();
    for spelling in [
        "/api/auth/login",
        "/api/%61uth/login",
        "//api/auth/login",
        "/api/./auth/login",
        "/API/auth/login",
        "/api/x/../auth/login",
        "/Api/AUTH/login",
    ] {
        let path = normalize(spelling).unwrap();
        let route = policy.route_for("POST", &path).map(|(r, _)| r.name.as_str());
        assert_eq!(route, Some("auth"), "{spelling} → {path}");
    }
    assert!(normalize("/api%2Fauth/login").is_err());
    assert!(normalize("/api\\auth/login").is_err());
}
