//! The JWT parser: any token is refused with a typed error unless it carries a valid HS256
//! signature for the secret.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::identity::jwt;
use tollgate::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else { return };
    let settings = Policy::default().identity;
    // No input can carry a valid signature for a secret it never saw.
    assert!(jwt::verify(token, b"fuzz-secret", &settings, 1_800_000_000).is_err());
    let _ = jwt::verify(token, b"", &settings, 0);
});
