//! Structured log lines for failures nobody waits on (background refreshes, invalidations after
//! a write): one JSON object per line, with `console.error` in the Worker (so `wrangler tail` and
//! Logpush see them at error level) and on stderr natively.

use serde_json::{Map, Value};

/// One log line: `{"level":"error","event":…, …fields}`.
pub fn line(event: &str, fields: &[(&str, Value)]) -> String {
    let mut m = Map::new();
    m.insert("level".into(), Value::from("error"));
    m.insert("event".into(), Value::from(event));
    for (k, v) in fields {
        m.insert((*k).to_owned(), v.clone());
    }
    Value::Object(m).to_string()
}

/// Writes an error line built by [`line`].
pub fn error(event: &str, fields: &[(&str, Value)]) {
    emit(&line(event, fields));
}

#[cfg(target_arch = "wasm32")]
fn emit(text: &str) {
    crate::host::log_error(text);
}

#[cfg(not(target_arch = "wasm32"))]
fn emit(text: &str) {
    eprintln!("{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_json_object_with_level_and_event() {
        let l = line("cache_refresh_failed", &[("route", "config".into()), ("reason", "origin_timeout".into())]);
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["event"], "cache_refresh_failed");
        assert_eq!(v["route"], "config");
        assert!(!l.contains('\n'));
    }
}
