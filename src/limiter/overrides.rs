//! Per-subject overrides: another tier name and the limits that replace the tier's, set through
//! the admin API and read by `check.lua` at every check, so no redeploy is needed.
//!
//! Stored as JSON under [`Keys::limit_override`]:
//! `{"tier":"PRO","limits":[{"id":"tier-pro","alg":"gcra","limit":1000,"window_ms":3600000}]}`.
//! The script validates it by the same rules as [`Override::parse_json`], and also refuses one whose
//! limit shares an id with a route limit of the check but not its algorithm and window; an
//! override that fails is ignored (the tier's own limits apply) and the snapshot says so.
//!
//! **TTL.** An override is configuration an operator chose, like the policy itself, not state the
//! limiter can rebuild: expiring it would silently downgrade a customer. It is therefore the one
//! key Tollgate may write without a TTL ([`Override::set_command`] with `ttl_ms: None`); a TTL is
//! for temporary grants (a trial, a promotion) and ends them on time without a cron job.

use std::num::{NonZeroU32, NonZeroU64};

use serde_json::{json, Map, Value};
use thiserror::Error;

use crate::keys::Keys;
use crate::policy::{Algorithm, Limit};
use crate::redis::{Command, Reply};

use super::model::{check_bounds, MAX_LIMIT_TIMES_WINDOW, MAX_WINDOW_MS};

/// Most limits one override may carry (the script checks the same bound).
pub const MAX_OVERRIDE_LIMITS: usize = 16;
/// Longest tier name or limit id in an override, bytes.
pub const MAX_OVERRIDE_NAME: usize = 64;

/// A subject's override: a tier name for display and the limits that replace the tier's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// Tier name reported in snapshots (`PRO`); letters, digits, `_` and `-`.
    pub tier: String,
    /// Limits applied instead of the tier's; route limits still apply. May be empty.
    pub limits: Vec<Limit>,
}

/// Why an override document was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OverrideError {
    /// Not JSON at all.
    #[error("override is not valid JSON: {0}")]
    Json(String),
    /// A field is missing or wrong.
    #[error("override field {field}: {reason}")]
    Field {
        /// Path of the field (`limits[2].window_ms`).
        field: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The stored value was not a string.
    #[error("override reply is not a string")]
    NotAString,
}

fn field_error(field: impl Into<String>, reason: &'static str) -> OverrideError {
    OverrideError::Field { field: field.into(), reason }
}

impl Override {
    /// Parses and validates an override document (the exact rules the script applies).
    pub fn parse_json(text: &str) -> Result<Self, OverrideError> {
        let value: Value = serde_json::from_str(text).map_err(|e| OverrideError::Json(e.to_string()))?;
        let obj = value.as_object().ok_or_else(|| field_error("$", "must be an object"))?;
        let tier = match obj.get("tier") {
            Some(Value::String(s)) if is_name(s, false) => s.clone(),
            Some(Value::String(_)) => return Err(field_error("tier", "1-64 letters, digits, _ or -")),
            _ => return Err(field_error("tier", "must be a string")),
        };
        let items: &[Value] = match obj.get("limits") {
            Some(Value::Array(items)) => items,
            // Lua's cjson cannot tell `{}` from `[]`; accept it here too so both agree.
            Some(Value::Object(m)) if m.is_empty() => &[],
            _ => return Err(field_error("limits", "must be an array")),
        };
        if items.len() > MAX_OVERRIDE_LIMITS {
            return Err(field_error("limits", "at most 16 limits"));
        }
        let mut limits: Vec<Limit> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let limit = parse_limit(item, i)?;
            if limits.iter().any(|l| l.id == limit.id) {
                return Err(field_error(format!("limits[{i}].id"), "duplicate id"));
            }
            limits.push(limit);
        }
        Ok(Override { tier, limits })
    }

    /// The stored JSON form.
    pub fn to_json(&self) -> String {
        let limits: Vec<Value> = self
            .limits
            .iter()
            .map(|l| {
                json!({"id": l.id, "alg": l.algorithm.as_str(), "limit": l.limit.get(), "window_ms": l.window_ms.get()})
            })
            .collect();
        json!({"tier": self.tier, "limits": limits}).to_string()
    }

    /// Checks a constructed override by the parsing rules (so it will not be ignored by the script).
    pub fn validate(&self) -> Result<(), OverrideError> {
        Self::parse_json(&self.to_json()).map(|_| ())
    }

    /// `SET` of the override, with `PX ttl_ms` for a temporary grant or none for a lasting one.
    pub fn set_command(&self, keys: &Keys, subject_hash: &str, ttl_ms: Option<NonZeroU64>) -> Command {
        let cmd = Command::new("SET").arg(keys.limit_override(subject_hash)).arg(self.to_json());
        match ttl_ms {
            Some(ttl) => cmd.arg("PX").arg(ttl.get()),
            None => cmd,
        }
    }

    /// `GET` of a subject's override.
    pub fn get_command(keys: &Keys, subject_hash: &str) -> Command {
        Command::get(keys.limit_override(subject_hash))
    }

    /// `DEL` of a subject's override (its limit states expire on their own).
    pub fn delete_command(keys: &Keys, subject_hash: &str) -> Command {
        Command::del([keys.limit_override(subject_hash)])
    }

    /// Reads the reply of [`Override::get_command`]: `None` when the subject has no override.
    pub fn from_reply(reply: &Reply) -> Result<Option<Self>, OverrideError> {
        match reply {
            Reply::Nil => Ok(None),
            Reply::Bulk(_) => reply.as_str().ok_or(OverrideError::NotAString).and_then(Self::parse_json).map(Some),
            _ => Err(OverrideError::NotAString),
        }
    }
}

impl Override {
    /// Whether the script would accept this override, clashes with route limits aside (the
    /// parsing rules, checked on the value without a JSON round trip).
    pub(crate) fn is_well_formed(&self) -> bool {
        is_name(&self.tier, false)
            && self.limits.len() <= MAX_OVERRIDE_LIMITS
            && self.limits.iter().enumerate().all(|(i, l)| {
                is_name(&l.id, true) && check_bounds(l).is_ok() && !self.limits[..i].iter().any(|o| o.id == l.id)
            })
    }

    /// Whether it may replace the tier limits of a check with these route limits: an id shared
    /// with a route limit must agree on algorithm and window (the two are then checked as one).
    pub(crate) fn fits_routes(&self, route_limits: &[Limit]) -> bool {
        self.limits.iter().all(|l| {
            route_limits.iter().all(|r| r.id != l.id || (r.algorithm == l.algorithm && r.window_ms == l.window_ms))
        })
    }
}

/// Tier names: `[A-Za-z0-9_-]`; limit ids also allow `.`; 1 to 64 bytes.
fn is_name(s: &str, allow_dot: bool) -> bool {
    !s.is_empty()
        && s.len() <= MAX_OVERRIDE_NAME
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (allow_dot && b == b'.'))
}

/// A JSON number holding a whole value in `1..=max` (cjson reads `1e3` and `1000.0` as 1000 too).
fn whole_number(obj: &Map<String, Value>, name: &str, max: u64, i: usize) -> Result<u64, OverrideError> {
    let field = || format!("limits[{i}].{name}");
    let n = obj.get(name).and_then(Value::as_f64).ok_or_else(|| field_error(field(), "must be a number"))?;
    if n.fract() != 0.0 || n < 1.0 || n > max as f64 {
        return Err(field_error(field(), "must be a whole number in range"));
    }
    Ok(n as u64)
}

fn parse_limit(item: &Value, i: usize) -> Result<Limit, OverrideError> {
    let obj = item.as_object().ok_or_else(|| field_error(format!("limits[{i}]"), "must be an object"))?;
    let id = match obj.get("id") {
        Some(Value::String(s)) if is_name(s, true) => s.clone(),
        _ => return Err(field_error(format!("limits[{i}].id"), "1-64 letters, digits, _ . or -")),
    };
    let algorithm =
        obj.get("alg").and_then(Value::as_str).and_then(Algorithm::parse).ok_or_else(|| {
            field_error(format!("limits[{i}].alg"), "fixed_window, sliding_window, token_bucket or gcra")
        })?;
    let limit = whole_number(obj, "limit", u64::from(u32::MAX), i)?;
    let window = whole_number(obj, "window_ms", MAX_WINDOW_MS, i)?;
    if u128::from(limit) * u128::from(window) > u128::from(MAX_LIMIT_TIMES_WINDOW) {
        return Err(field_error(format!("limits[{i}]"), "limit × window_ms exceeds 2^52"));
    }
    let limit = NonZeroU32::new(u32::try_from(limit).unwrap_or(0))
        .ok_or_else(|| field_error(format!("limits[{i}].limit"), "must be a whole number in range"))?;
    let window_ms = NonZeroU64::new(window)
        .ok_or_else(|| field_error(format!("limits[{i}].window_ms"), "must be a whole number in range"))?;
    Ok(Limit::requests(id, algorithm, limit, window_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRO: &str = r#"{"tier":"PRO","limits":[{"id":"tier-pro","alg":"gcra","limit":1000,"window_ms":3600000}]}"#;

    #[test]
    fn the_json_form_round_trips() {
        let o = Override::parse_json(PRO).expect("valid");
        assert_eq!(o.tier, "PRO");
        assert_eq!(o.limits[0].algorithm, Algorithm::Gcra);
        assert_eq!(Override::parse_json(&o.to_json()), Ok(o));
    }

    #[test]
    fn numbers_written_as_floats_are_read_as_cjson_reads_them() {
        let o = Override::parse_json(
            r#"{"tier":"X","limits":[{"id":"a","alg":"fixed_window","limit":1e3,"window_ms":60000.0}]}"#,
        )
        .expect("valid");
        assert_eq!((o.limits[0].limit.get(), o.limits[0].window_ms.get()), (1000, 60_000));
    }

    #[test]
    fn bad_documents_name_the_field() {
        let cases = [
            (r#"{"limits":[]}"#, "tier"),
            (r#"{"tier":"a b","limits":[]}"#, "tier"),
            (r#"{"tier":"X"}"#, "limits"),
            (r#"{"tier":"X","limits":[{"id":"a","alg":"leaky","limit":1,"window_ms":1}]}"#, "limits[0].alg"),
            (r#"{"tier":"X","limits":[{"id":"a","alg":"gcra","limit":0,"window_ms":1}]}"#, "limits[0].limit"),
            (r#"{"tier":"X","limits":[{"id":"a","alg":"gcra","limit":1.5,"window_ms":1}]}"#, "limits[0].limit"),
            (r#"{"tier":"X","limits":[{"id":"a","alg":"gcra","limit":4294967295,"window_ms":86400000}]}"#, "limits[0]"),
            (
                r#"{"tier":"X","limits":[{"id":"a","alg":"gcra","limit":1,"window_ms":1},{"id":"a","alg":"gcra","limit":1,"window_ms":1}]}"#,
                "limits[1].id",
            ),
        ];
        for (text, field) in cases {
            match Override::parse_json(text) {
                Err(OverrideError::Field { field: f, .. }) => assert_eq!(f, field, "{text}"),
                other => panic!("{text}: expected a field error, got {other:?}"),
            }
        }
        assert!(matches!(Override::parse_json("{"), Err(OverrideError::Json(_))));
    }

    #[test]
    fn set_command_adds_a_ttl_only_for_temporary_grants() {
        let o = Override::parse_json(PRO).expect("valid");
        let keys = Keys::new("ns");
        let lasting = o.set_command(&keys, "abc", None);
        assert_eq!(lasting.parts().len(), 3);
        let temporary = o.set_command(&keys, "abc", NonZeroU64::new(60_000));
        assert_eq!(temporary.parts().len(), 5);
        assert_eq!(Override::from_reply(&Reply::Nil), Ok(None));
        assert_eq!(Override::from_reply(&Reply::Bulk(PRO.as_bytes().to_vec())), Ok(Some(o)));
    }
}
