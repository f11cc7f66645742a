//! The JSON body normalizer behind JSON-body cache keys: accepts only JSON, and its canonical
//! form is a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::cache::key::canonical_json;

fuzz_target!(|data: &[u8]| {
    let refuses = |r: Result<serde_json::Value, serde_json::Error>| {
        r.is_err_and(|e| !e.to_string().contains("out of range") && !e.to_string().contains("recursion limit"))
    };
    let ours = canonical_json(data);
    if refuses(serde_json::from_slice(data)) {
        assert!(ours.is_err(), "garbage accepted");
    }
    if let Ok(canon) = ours {
        assert_eq!(canonical_json(canon.as_bytes()).as_ref(), Ok(&canon));
        assert!(!refuses(serde_json::from_str(&canon)));
    }
});
