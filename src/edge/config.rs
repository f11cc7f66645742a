//! The Worker's configuration, read once from its environment into validated values.

use thiserror::Error;

use crate::keys::sha256_hex;
use crate::policy::{Policy, PolicyError};

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `UPSTASH_REDIS_REST_URL`, without a trailing slash.
    pub url: String,
    /// `UPSTASH_REDIS_REST_TOKEN`.
    pub token: String,
}

/// Everything the Worker is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Redis over REST; `None` is memory mode.
    pub redis: Option<RedisConfig>,
    /// Why the Worker runs in memory mode, when it does.
    pub memory_reason: Option<&'static str>,
    /// `ORIGIN_URL` without a trailing slash; `None` answers proxied paths with 502.
    pub origin_url: Option<String>,
    /// `TOLLGATE_ADMIN_TOKEN`; `None` disables the admin API (404).
    pub admin_token: Option<String>,
    /// `TOLLGATE_JWT_SECRET`; `None` refuses every HS256 JWT.
    pub jwt_secret: Option<String>,
    /// `TOLLGATE_JWKS_URL`, split at commas; empty refuses every ES256, RS256 and EdDSA JWT.
    pub jwks_urls: Vec<String>,
    /// `TOLLGATE_HASH_SECRET`; `None` hashes identifiers with plain SHA-256.
    pub hash_secret: Option<String>,
    /// `TOLLGATE_ORIGIN_SECRET`; when set, requests to the origin carry `X-Tollgate-Signature`.
    pub origin_secret: Option<String>,
    /// The validated policy.
    pub policy: Policy,
    /// First 12 hex digits of the SHA-256 of `TOLLGATE_POLICY` as given (`default` when unset).
    pub policy_version: String,
}

/// A configuration value that cannot be used; the message names the variable.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConfigError {
    /// `TOLLGATE_POLICY` is invalid.
    #[error("{0}")]
    Policy(#[from] PolicyError),
    /// A URL variable is not an absolute http(s) URL.
    #[error("{name}: {message}")]
    Url {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
    /// `REDIS_ENABLED` is neither true nor false.
    #[error("REDIS_ENABLED: expected true or false, got {0:?}")]
    RedisEnabled(String),
    /// The Redis URL is set without a token.
    #[error("UPSTASH_REDIS_REST_TOKEN: must be set when UPSTASH_REDIS_REST_URL is")]
    MissingToken,
}

impl Config {
    /// Reads the configuration through `var`, which returns a variable's text (a policy given as
    /// a TOML table arrives as its JSON text).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let nonempty = |name: &str| var(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());

        let (policy, policy_version) = match nonempty("TOLLGATE_POLICY") {
            Some(text) => {
                let version = sha256_hex(text.as_bytes())[..12].to_owned();
                (Policy::parse_json(&text)?, version)
            }
            None => (Policy::default(), "default".to_owned()),
        };

        let enabled = match nonempty("REDIS_ENABLED").map(|v| v.to_ascii_lowercase()) {
            None => true,
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes") => true,
            Some(v) if matches!(v.as_str(), "false" | "0" | "no") => false,
            Some(v) => return Err(ConfigError::RedisEnabled(v)),
        };
        let (redis, memory_reason) = match (enabled, nonempty("UPSTASH_REDIS_REST_URL")) {
            (false, _) => (None, Some("REDIS_ENABLED=false")),
            (true, None) => (None, Some("UPSTASH_REDIS_REST_URL is not set")),
            (true, Some(url)) => {
                let url = http_url("UPSTASH_REDIS_REST_URL", &url)?;
                let token = nonempty("UPSTASH_REDIS_REST_TOKEN").ok_or(ConfigError::MissingToken)?;
                (Some(RedisConfig { url, token }), None)
            }
        };

        let origin_url = match nonempty("ORIGIN_URL") {
            Some(u) => Some(http_url("ORIGIN_URL", &u)?),
            None => None,
        };

        let jwks_urls = match nonempty("TOLLGATE_JWKS_URL") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(|u| http_url("TOLLGATE_JWKS_URL", u))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };

        Ok(Self {
            redis,
            memory_reason,
            origin_url,
            admin_token: nonempty("TOLLGATE_ADMIN_TOKEN"),
            jwt_secret: nonempty("TOLLGATE_JWT_SECRET"),
            jwks_urls,
            hash_secret: nonempty("TOLLGATE_HASH_SECRET"),
            origin_secret: nonempty(super::signature::SECRET_VAR),
            policy,
            policy_version,
        })
    }
}

/// Checks that `value` is an absolute http(s) URL and drops a trailing slash.
fn http_url(name: &'static str, value: &str) -> Result<String, ConfigError> {
    let rest = value.strip_prefix("http://").or_else(|| value.strip_prefix("https://")).ok_or_else(|| {
        ConfigError::Url { name, message: format!("expected an http:// or https:// URL, got {value:?}") }
    })?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains(char::is_whitespace) {
        return Err(ConfigError::Url { name, message: format!("URL has no host: {value:?}") });
    }
    Ok(value.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn without_redis_url_the_worker_runs_in_memory_mode() {
        let c = Config::from_env(env(&[("ORIGIN_URL", "http://127.0.0.1:8788/")])).unwrap();
        assert!(c.redis.is_none());
        assert_eq!(c.memory_reason, Some("UPSTASH_REDIS_REST_URL is not set"));
        assert_eq!(c.origin_url.as_deref(), Some("http://127.0.0.1:8788"));
        assert_eq!(c.policy_version, "default");
    }

    #[test]
    fn redis_enabled_false_forces_memory_mode() {
        let c = Config::from_env(env(&[
            ("UPSTASH_REDIS_REST_URL", "http://127.0.0.1:8079"),
            ("UPSTASH_REDIS_REST_TOKEN", "t"),
            ("REDIS_ENABLED", "false"),
        ]))
        .unwrap();
        assert!(c.redis.is_none());
        assert_eq!(c.memory_reason, Some("REDIS_ENABLED=false"));
    }

    #[test]
    fn a_redis_url_without_token_is_an_error_naming_the_variable() {
        let e = Config::from_env(env(&[("UPSTASH_REDIS_REST_URL", "http://127.0.0.1:8079")])).unwrap_err();
        assert!(e.to_string().contains("UPSTASH_REDIS_REST_TOKEN"));
    }

    #[test]
    fn a_bad_origin_url_is_an_error_naming_the_variable() {
        let e = Config::from_env(env(&[("ORIGIN_URL", "127.0.0.1:8788")])).unwrap_err();
        assert!(e.to_string().starts_with("ORIGIN_URL:"), "{e}");
    }

    #[test]
    fn jwks_urls_are_a_comma_separated_list_of_http_urls() {
        let c = Config::from_env(env(&[(
            "TOLLGATE_JWKS_URL",
            " https://a.supabase.co/auth/v1/.well-known/jwks.json , http://127.0.0.1:8788/.well-known/jwks.json,",
        )]))
        .unwrap();
        assert_eq!(
            c.jwks_urls,
            ["https://a.supabase.co/auth/v1/.well-known/jwks.json", "http://127.0.0.1:8788/.well-known/jwks.json"]
        );
        assert!(Config::from_env(env(&[])).unwrap().jwks_urls.is_empty());
        let e = Config::from_env(env(&[("TOLLGATE_JWKS_URL", "https://a.example/jwks, ftp://b.example/jwks")]))
            .unwrap_err();
        assert!(e.to_string().starts_with("TOLLGATE_JWKS_URL:"), "{e}");
    }

    #[test]
    fn the_hash_secret_is_read_when_set() {
        assert_eq!(
            Config::from_env(env(&[("TOLLGATE_HASH_SECRET", " s3 ")])).unwrap().hash_secret.as_deref(),
            Some("s3")
        );
        assert_eq!(Config::from_env(env(&[("TOLLGATE_HASH_SECRET", "")])).unwrap().hash_secret, None);
    }

    #[test]
    fn an_invalid_policy_is_an_error_naming_the_field() {
        let e = Config::from_env(env(&[(
            "TOLLGATE_POLICY",
            r#"{"routes":[{"name":"x","path":"/x","limits":[{"limit":0,"window":"1m"}]}]}"#,
        )]))
        .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("TOLLGATE_POLICY") && text.contains("routes[0].limits[0].limit"), "{text}");
    }
}
