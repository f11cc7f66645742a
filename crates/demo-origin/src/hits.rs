//! Hit counters: how many requests reached the origin, by path and by route.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::route::RouteKind;

/// Counts of counted (non-control) requests since start or the last reset.
#[derive(Debug, Default, Clone)]
pub struct Hits {
    total: u64,
    by_path: BTreeMap<String, u64>,
    config: u64,
    rag: u64,
    echo: u64,
}

impl Hits {
    /// Records one request to `path` (without its query) on a route of `kind`.
    pub fn record(&mut self, kind: RouteKind, path: &str) {
        self.total += 1;
        *self.by_path.entry(path.to_owned()).or_insert(0) += 1;
        match kind {
            RouteKind::Config => self.config += 1,
            RouteKind::Rag => self.rag += 1,
            RouteKind::Echo => self.echo += 1,
        }
    }

    /// The `/_origin/hits` document; `by_route` always lists every route.
    pub fn to_json(&self) -> Value {
        json!({
            "total": self.total,
            "by_path": self.by_path,
            "by_route": {
                RouteKind::Config.as_str(): self.config,
                RouteKind::Rag.as_str(): self.rag,
                RouteKind::Echo.as_str(): self.echo,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_path_and_route() {
        let mut hits = Hits::default();
        hits.record(RouteKind::Config, "/config/app");
        hits.record(RouteKind::Config, "/config/app");
        hits.record(RouteKind::Echo, "/anything");
        assert_eq!(
            hits.to_json(),
            json!({
                "total": 3,
                "by_path": {"/config/app": 2, "/anything": 1},
                "by_route": {"config": 2, "rag": 0, "echo": 1},
            })
        );
    }

    #[test]
    fn an_empty_counter_still_lists_every_route() {
        assert_eq!(
            Hits::default().to_json(),
            json!({"total": 0, "by_path": {}, "by_route": {"config": 0, "rag": 0, "echo": 0}})
        );
    }
}
