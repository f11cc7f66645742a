//! The in-memory configuration documents behind `/config/{name}`.
//!
//! Every name exists: a name never written answers a generated default at version 1. Every write
//! (`PUT`, `PATCH`, `DELETE`) bumps the name's version, so a cache can tell old from new.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

/// One stored configuration: its version and value.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEntry {
    pub version: u64,
    pub value: Value,
}

/// The configuration documents, seeded with `app` and `features`.
#[derive(Debug, Clone)]
pub struct ConfigStore {
    entries: HashMap<String, ConfigEntry>,
}

impl Default for ConfigStore {
    fn default() -> Self {
        Self::seeded()
    }
}

impl ConfigStore {
    /// The store as it is at start and after `/_origin/reset`.
    pub fn seeded() -> Self {
        let seeds = [
            (
                "app",
                json!({
                    "display_name": "Tollgate demo",
                    "theme": "dark",
                    "maintenance": false,
                    "max_upload_mb": 10,
                }),
            ),
            (
                "features",
                json!({
                    "chat": true,
                    "rag": true,
                    "search": true,
                    "upload": false,
                }),
            ),
        ];
        let entries =
            seeds.into_iter().map(|(name, value)| (name.to_owned(), ConfigEntry { version: 1, value })).collect();
        Self { entries }
    }

    /// The current entry for `name`, generated when the name was never written.
    pub fn get(&self, name: &str) -> ConfigEntry {
        self.entries.get(name).cloned().unwrap_or_else(|| ConfigEntry { version: 1, value: generated_default(name) })
    }

    /// Replaces the value and bumps the version.
    pub fn put(&mut self, name: &str, value: Value) -> ConfigEntry {
        let version = self.get(name).version + 1;
        self.store(name, ConfigEntry { version, value })
    }

    /// Applies a JSON merge patch (RFC 7396) to the current value and bumps the version.
    pub fn patch(&mut self, name: &str, patch: &Value) -> ConfigEntry {
        let current = self.get(name);
        let value = merge_patch(current.value, patch);
        self.store(name, ConfigEntry { version: current.version + 1, value })
    }

    /// Forgets the written value: the name answers its generated default again, one version on.
    pub fn delete(&mut self, name: &str) {
        let version = self.get(name).version + 1;
        self.store(name, ConfigEntry { version, value: generated_default(name) });
    }

    fn store(&mut self, name: &str, entry: ConfigEntry) -> ConfigEntry {
        self.entries.insert(name.to_owned(), entry.clone());
        entry
    }
}

/// The value of a configuration nobody wrote.
fn generated_default(name: &str) -> Value {
    json!({
        "generated": true,
        "enabled": true,
        "description": format!("default configuration for {name}"),
    })
}

/// RFC 7396: objects merge key by key, `null` removes a key, anything else replaces.
fn merge_patch(target: Value, patch: &Value) -> Value {
    let Value::Object(patch_fields) = patch else {
        return patch.clone();
    };
    let mut merged = match target {
        Value::Object(fields) => fields,
        _ => Map::new(),
    };
    for (key, patch_value) in patch_fields {
        if patch_value.is_null() {
            merged.remove(key);
        } else {
            let current = merged.remove(key).unwrap_or(Value::Null);
            merged.insert(key.clone(), merge_patch(current, patch_value));
        }
    }
    Value::Object(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_names_start_at_version_one() {
        let store = ConfigStore::seeded();
        assert_eq!(store.get("app").version, 1);
        assert_eq!(store.get("features").value["chat"], json!(true));
    }

    #[test]
    fn unknown_names_get_a_generated_default() {
        let store = ConfigStore::seeded();
        let entry = store.get("anything");
        assert_eq!(entry.version, 1);
        assert_eq!(entry.value["generated"], json!(true));
    }

    #[test]
    fn every_write_bumps_the_version() {
        let mut store = ConfigStore::seeded();
        assert_eq!(store.put("app", json!({"theme": "light"})).version, 2);
        assert_eq!(store.patch("app", &json!({"beta": true})).version, 3);
        store.delete("app");
        let after_delete = store.get("app");
        assert_eq!(after_delete.version, 4);
        assert_eq!(after_delete.value, generated_default("app"));
    }

    #[test]
    fn patch_merges_objects_and_removes_nulls() {
        let mut store = ConfigStore::seeded();
        let patched = store.patch("features", &json!({"upload": true, "chat": null, "limits": {"rpm": 5}}));
        assert_eq!(patched.value, json!({"rag": true, "search": true, "upload": true, "limits": {"rpm": 5}}));
    }

    #[test]
    fn a_non_object_patch_replaces_the_value() {
        assert_eq!(merge_patch(json!({"a": 1}), &json!([1, 2])), json!([1, 2]));
        assert_eq!(merge_patch(json!(3), &json!({"a": 1})), json!({"a": 1}));
    }
}
