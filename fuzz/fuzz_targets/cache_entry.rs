//! The cache entry envelope: any stored value decodes to a valid entry or a typed error, and a
//! decoded entry survives re-encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::cache::Entry;

fuzz_target!(|data: &[u8]| {
    let mut value = b"tgc1:".to_vec();
    value.extend_from_slice(data);
    for candidate in [data, value.as_slice()] {
        if let Ok(e) = Entry::decode(candidate, 1 << 20) {
            assert!((200..300).contains(&e.status) && e.status != 206);
            assert!(e.stored_ms <= e.fresh_until_ms && e.fresh_until_ms <= e.stale_until_ms);
            let again = Entry::decode(e.encode(1024).as_bytes(), 1 << 20);
            assert_eq!(again.as_ref(), Ok(&e));
        }
    }
});
