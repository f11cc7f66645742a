//! Counters that tests and benchmarks read to assert round trips: HTTP requests per endpoint,
//! Redis commands run for clients (total and per lowercase name) and errors returned.
//! `/health` and `/_rest/*` are never counted.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::encode::write_str;

/// Distinct command names tracked before the rest are counted under [`OTHER`].
const MAX_NAMES: usize = 512;
/// Bucket for names beyond [`MAX_NAMES`] (clients choose names, so the map must stay bounded).
pub const OTHER: &str = "(other)";

/// The Upstash endpoint a request was routed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /`
    Single,
    /// `POST /pipeline`
    Pipeline,
    /// `POST /multi-exec`
    MultiExec,
    /// `/CMD/arg…`
    Path,
}

impl Endpoint {
    const ALL: [Endpoint; 4] = [Endpoint::Single, Endpoint::Pipeline, Endpoint::MultiExec, Endpoint::Path];

    /// Stable name used in the stats JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Single => "single",
            Endpoint::Pipeline => "pipeline",
            Endpoint::MultiExec => "multi_exec",
            Endpoint::Path => "path",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    http: [AtomicU64; 4],
    commands: AtomicU64,
    by_name: Mutex<HashMap<String, u64>>,
    errors: AtomicU64,
}

impl Stats {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn count_request(&self, endpoint: Endpoint) {
        self.http[endpoint.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts commands that were sent to Redis on a client's behalf (one lock per request).
    pub fn count_commands<I: IntoIterator<Item = String>>(&self, names: I) {
        let mut map = self.by_name.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0u64;
        for name in names {
            n += 1;
            if let Some(c) = map.get_mut(&name) {
                *c += 1;
            } else if map.len() < MAX_NAMES {
                map.insert(name, 1);
            } else {
                *map.entry(OTHER.to_owned()).or_insert(0) += 1;
            }
        }
        self.commands.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts error objects returned to clients (whole responses or pipeline entries).
    pub fn count_errors(&self, n: u64) {
        if n > 0 {
            self.errors.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn reset(&self) {
        for c in &self.http {
            c.store(0, Ordering::Relaxed);
        }
        self.commands.store(0, Ordering::Relaxed);
        self.errors.store(0, Ordering::Relaxed);
        self.by_name.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// `{"http_requests":{"total":N,"single":N,"pipeline":N,"multi_exec":N,"path":N},
    ///   "commands":{"total":N,"by_name":{"get":N,…}},"errors":N}` (names sorted).
    pub fn to_json(&self) -> String {
        let http: Vec<u64> = self.http.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let by_name: BTreeMap<String, u64> =
            self.by_name.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (k.clone(), *v)).collect();
        let mut out = String::with_capacity(256);
        out.push_str("{\"http_requests\":{\"total\":");
        out.push_str(&http.iter().sum::<u64>().to_string());
        for endpoint in Endpoint::ALL {
            out.push_str(",\"");
            out.push_str(endpoint.as_str());
            out.push_str("\":");
            out.push_str(&http[endpoint.index()].to_string());
        }
        out.push_str("},\"commands\":{\"total\":");
        out.push_str(&self.commands.load(Ordering::Relaxed).to_string());
        out.push_str(",\"by_name\":{");
        for (i, (name, count)) in by_name.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(&mut out, name);
            out.push(':');
            out.push_str(&count.to_string());
        }
        out.push_str("}},\"errors\":");
        out.push_str(&self.errors.load(Ordering::Relaxed).to_string());
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_shape() {
        let s = Stats::new();
        s.count_request(Endpoint::Pipeline);
        s.count_request(Endpoint::Pipeline);
        s.count_request(Endpoint::Path);
        s.count_commands(["evalsha".to_owned(), "get".to_owned(), "get".to_owned()]);
        s.count_errors(2);
        assert_eq!(
            s.to_json(),
            r#"{"http_requests":{"total":3,"single":0,"pipeline":2,"multi_exec":0,"path":1},"commands":{"total":3,"by_name":{"evalsha":1,"get":2}},"errors":2}"#
        );
        s.reset();
        assert_eq!(
            s.to_json(),
            r#"{"http_requests":{"total":0,"single":0,"pipeline":0,"multi_exec":0,"path":0},"commands":{"total":0,"by_name":{}},"errors":0}"#
        );
    }

    #[test]
    fn the_name_map_stays_bounded() {
        let s = Stats::new();
        s.count_commands((0..MAX_NAMES + 5).map(|i| format!("cmd{i}")));
        let map = s.by_name.lock().map(|m| m.clone()).unwrap_or_default();
        assert_eq!(map.len(), MAX_NAMES + 1);
        assert_eq!(map.get(OTHER), Some(&5));
        assert!(s.to_json().contains(&format!("\"commands\":{{\"total\":{}", MAX_NAMES + 5)));
    }
}
