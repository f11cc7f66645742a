//! `tollgate check-config` on real files, with the Worker's own policy parser: no server needed.

mod support;

use std::fs;
use std::path::PathBuf;

use support::{run, tollgate, Run};

const TABLE_POLICY: &str = r#"
name = "tollgate"
main = "build/index.js"

[vars]
ORIGIN_URL = "http://127.0.0.1:9000"

[vars.TOLLGATE_POLICY.tiers.ANON]
limits = [{ limit = 30, window = "1h" }]

[vars.TOLLGATE_POLICY.tiers.BASIC]
limits = [{ limit = 100, window = "1h" }]

[vars.TOLLGATE_POLICY.tiers.PRO]
limits = [{ limit = 1000, window = "1h", algorithm = "gcra" }]

[[vars.TOLLGATE_POLICY.routes]]
name = "chat"
path = "/api/chat*"
limits = [{ limit = 20, window = "1m" }]

[[vars.TOLLGATE_POLICY.routes]]
name = "config"
path = "/api/config/{name}"
methods = ["GET"]
upstream = "/config/{name}"
cache = { class = "STATIC_CONFIG", tags = ["config"], warm = ["app"] }
"#;

const JSON_STRING_POLICY: &str = r#"
name = "tollgate"

[vars]
TOLLGATE_POLICY = '''
{"tiers": {"ANON": {"limits": [{"limit": 30, "window": "1h"}]},
           "BASIC": {"limits": [{"limit": 100, "window": "1h"}]}},
 "routes": [{"name": "search", "path": "/api/search*", "limits": [{"limit": 30, "window": "1m"}]}]}
'''
"#;

/// `routes[2].limits[0].limit` is 0.
const ZERO_LIMIT_POLICY: &str = r#"
[vars.TOLLGATE_POLICY]
namespace = "factory"

[[vars.TOLLGATE_POLICY.routes]]
name = "chat"
path = "/api/chat*"
limits = [{ limit = 20, window = "1m" }]

[[vars.TOLLGATE_POLICY.routes]]
name = "auth"
path = "/api/auth*"
limits = [{ limit = 5, window = "15m" }]

[[vars.TOLLGATE_POLICY.routes]]
name = "upload"
path = "/api/upload*"
limits = [{ limit = 0, window = "1m" }]
"#;

const JSON_POLICY: &str = r#"{
  "tiers": {
    "ANON": { "limits": [ { "limit": 30, "window": "1h" } ] },
    "BASIC": { "limits": [ { "limit": 100, "window": "1h" } ] },
    "PRO": { "limits": [ { "limit": 1000, "window": "1h" } ] },
    "TEAM": { "limits": [ { "limit": 5000, "window": "1h" } ] }
  },
  "routes": [
    { "name": "chat", "path": "/api/chat*", "limits": [ { "limit": 20, "window": "1m" } ] }
  ],
  "cache_classes": { "HOT": { "ttl": "30s" } }
}"#;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, text).expect("write the fixture");
    path
}

fn check(path: &PathBuf, json: bool) -> Run {
    let mut cmd = tollgate();
    cmd.arg("check-config").arg(path);
    if json {
        cmd.arg("--json");
    }
    run(&mut cmd)
}

#[test]
fn a_wrangler_toml_with_a_policy_table_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let r = check(&write(&dir, "wrangler.toml", TABLE_POLICY), false);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "ok: policy valid (3 tiers, 2 routes, 3 cache classes)\n");
    assert_eq!(r.stderr, "");
}

#[test]
fn a_wrangler_toml_with_a_json_string_policy_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let r = check(&write(&dir, "wrangler.toml", JSON_STRING_POLICY), false);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "ok: policy valid (2 tiers, 1 routes, 3 cache classes)\n");
}

#[test]
fn a_zero_limit_is_named_by_its_field_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "wrangler.toml", ZERO_LIMIT_POLICY);
    let r = check(&path, false);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    assert!(
        r.stderr.starts_with(&format!("error: {}: TOLLGATE_POLICY: routes[2].limits[0].limit: ", path.display())),
        "{r:?}"
    );
    assert!(r.stderr.contains("greater than 0"), "{r:?}");
}

#[test]
fn json_output_names_the_field_too() {
    let dir = tempfile::tempdir().unwrap();
    let r = check(&write(&dir, "wrangler.toml", ZERO_LIMIT_POLICY), true);
    assert_eq!(r.code, 2, "{r:?}");
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON on stdout");
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["field"], "routes[2].limits[0].limit");

    let r = check(&write(&dir, "good.toml", TABLE_POLICY), true);
    assert_eq!(r.code, 0, "{r:?}");
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON on stdout");
    assert_eq!((doc["ok"].as_bool(), doc["tiers"].as_u64(), doc["routes"].as_u64()), (Some(true), Some(3), Some(2)));
}

#[test]
fn a_json_file_is_read_as_the_policy_itself() {
    let dir = tempfile::tempdir().unwrap();
    let r = check(&write(&dir, "policy.json", JSON_POLICY), false);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "ok: policy valid (4 tiers, 1 routes, 4 cache classes)\n");

    let broken = JSON_POLICY.replace("\"limit\": 20", "\"limit\": 0");
    let r = check(&write(&dir, "broken.json", &broken), false);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("TOLLGATE_POLICY: routes[0].limits[0].limit: "), "{r:?}");
}

#[test]
fn a_missing_file_is_a_clear_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    let r = check(&path, false);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(r.stderr, format!("error: cannot read {}: no such file\n", path.display()));
}

#[test]
fn the_default_path_is_wrangler_toml_in_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir, "wrangler.toml", TABLE_POLICY);
    let r = run(tollgate().arg("check-config").current_dir(dir.path()));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("ok: policy valid"), "{r:?}");

    let empty = tempfile::tempdir().unwrap();
    let r = run(tollgate().arg("check-config").current_dir(empty.path()));
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(r.stderr, "error: cannot read wrangler.toml: no such file\n");
}

#[test]
fn the_repository_wrangler_toml_is_valid() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../wrangler.toml");
    let r = check(&path, false);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("ok: policy valid ("), "{r:?}");
}

#[test]
fn the_readme_ai_example_is_valid_and_a_settled_unit_on_gcra_is_named() {
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("README");
    let section = readme.split("## AI traffic: tokens, concurrency, shadow limits").nth(1).expect("the AI section");
    let policy = section.split("```json\n").nth(1).and_then(|s| s.split("```").next()).expect("its policy");
    let dir = tempfile::tempdir().expect("tempdir");
    let r = check(&write(&dir, "ai.json", policy), false);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout, "ok: policy valid (3 tiers, 1 routes, 3 cache classes)\n");

    let gcra = policy.replacen(
        r#""limit": 500000, "window": "1d","#,
        r#""limit": 500000, "window": "1d", "algorithm": "gcra","#,
        1,
    );
    assert_ne!(gcra, policy);
    let r = check(&write(&dir, "gcra.json", &gcra), false);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("tiers.PRO.limits[1].algorithm: a limit of \"tokens\" is settled"), "{r:?}");
}
