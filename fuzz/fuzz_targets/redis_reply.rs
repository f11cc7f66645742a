//! The REST reply decoder: any status and body decode to replies or a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::redis::decode::{decode_batch, decode_single};
use tollgate::redis::HttpReply;

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else { return };
    let status = match first % 4 {
        0 | 1 => 200,
        2 => 400,
        _ => 100 + u16::from(first),
    };
    let reply = HttpReply { status, body: body.to_vec(), sync_token: None };
    let single = decode_single(&reply);
    let expected = usize::from(first % 5);
    let batch = decode_batch(&reply, expected);
    if serde_json::from_slice::<serde_json::Value>(body).is_err_and(|e| !e.to_string().contains("out of range")) {
        assert!(single.is_err() && batch.is_err(), "garbage accepted");
    }
    if let Ok(entries) = batch {
        assert_eq!(entries.len(), expected);
    }
});
