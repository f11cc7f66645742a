//! redis-rest's request parser: command bodies, batch bodies and path-form commands parse or
//! fail with a typed error.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use redis_rest::args::{parse_batch, parse_command, parse_path};

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    let command = parse_command(&body);
    let batch = parse_batch(&body);
    if serde_json::from_slice::<serde_json::Value>(data).is_err_and(|e| !e.to_string().contains("out of range")) {
        assert!(command.is_err() && batch.is_err(), "garbage accepted");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let (path, query) = text.split_once('?').map_or((text, None), |(p, q)| (p, Some(q)));
        let _ = parse_path(path, query, None);
        let _ = parse_path(path, query, Some(body.clone()));
    }
});
