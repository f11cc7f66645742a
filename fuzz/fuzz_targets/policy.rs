//! The policy parser: any text is a policy or an error naming the field, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(e) = Policy::parse_json(text) {
        assert!(!e.to_string().is_empty());
    }
    let _ = Policy::parse_wrangler_toml(text);
});
