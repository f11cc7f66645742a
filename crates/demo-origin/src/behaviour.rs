//! Injected latency and failures: the global settings and the per-request header overrides.

use std::fmt;
use std::time::Duration;

use serde_json::{json, Map, Value};

/// Request header that overrides the global delay for one request (milliseconds).
pub const DELAY_HEADER: &str = "x-origin-delay-ms";
/// Request header that overrides the global failure mode for one request.
pub const FAIL_HEADER: &str = "x-origin-fail";
/// The longest delay accepted, so a typo cannot park a request for hours.
pub const MAX_DELAY_MS: u64 = 600_000;
/// How long a `timeout` failure holds the request: far longer than any client timeout.
pub const TIMEOUT_HOLD: Duration = Duration::from_secs(60);

/// How the origin fails a request, after any delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Answer with this status (400..=599) and a problem+json body.
    Status(u16),
    /// Hold the request for [`TIMEOUT_HOLD`], then answer 504; shutdown drops it sooner.
    Timeout,
    /// Drop the connection without answering.
    Close,
}

impl FailMode {
    /// Parses the spelling used by the header, the flag and the settings: `503`, `timeout`, `close`.
    pub fn parse(text: &str) -> Result<Self, BehaviourError> {
        let text = text.trim();
        match text.to_ascii_lowercase().as_str() {
            "timeout" => Ok(Self::Timeout),
            "close" => Ok(Self::Close),
            other => match other.parse::<u16>() {
                Ok(status) if (400..=599).contains(&status) => Ok(Self::Status(status)),
                _ => Err(BehaviourError::Fail(text.to_owned())),
            },
        }
    }

    /// The stable string form, the same spelling [`FailMode::parse`] accepts.
    pub fn as_string(self) -> String {
        match self {
            Self::Status(status) => status.to_string(),
            Self::Timeout => "timeout".to_owned(),
            Self::Close => "close".to_owned(),
        }
    }
}

/// Parses an optional failure mode, where `none`, `off` and the empty string mean "no failure".
pub fn parse_optional_fail(text: &str) -> Result<Option<FailMode>, BehaviourError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "none" | "off" | "null" => Ok(None),
        _ => FailMode::parse(text).map(Some),
    }
}

/// Parses a delay in whole milliseconds, at most [`MAX_DELAY_MS`].
pub fn parse_delay_ms(text: &str) -> Result<u64, BehaviourError> {
    match text.trim().parse::<u64>() {
        Ok(ms) if ms <= MAX_DELAY_MS => Ok(ms),
        _ => Err(BehaviourError::Delay(text.trim().to_owned())),
    }
}

/// A value that cannot be a delay or a failure mode; the message names what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BehaviourError {
    Delay(String),
    Fail(String),
    Settings(String),
}

impl fmt::Display for BehaviourError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Delay(got) => write!(f, "delay must be whole milliseconds between 0 and {MAX_DELAY_MS}, got {got:?}"),
            Self::Fail(got) => {
                write!(f, "fail must be a status 400..=599, \"timeout\", \"close\" or none, got {got:?}")
            }
            Self::Settings(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for BehaviourError {}

/// What happens to every counted request: first the delay, then the failure if any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Behaviour {
    pub delay_ms: u64,
    pub fail: Option<FailMode>,
}

impl Behaviour {
    /// The settings document: `{"delay_ms": 150, "fail": "503" | "timeout" | "close" | null}`.
    pub fn to_json(self) -> Value {
        json!({
            "delay_ms": self.delay_ms,
            "fail": self.fail.map(FailMode::as_string),
        })
    }

    /// Applies a settings update. Fields left out keep their value; `"fail": null` clears the
    /// failure; `"fail"` may be a string or a number (`503`). Unknown fields are rejected.
    pub fn updated(self, update: &Value) -> Result<Self, BehaviourError> {
        let fields =
            update.as_object().ok_or_else(|| BehaviourError::Settings("settings must be a JSON object".to_owned()))?;
        reject_unknown_fields(fields)?;
        let mut next = self;
        if let Some(delay) = fields.get("delay_ms") {
            next.delay_ms = match delay {
                Value::Null => 0,
                Value::Number(n) => {
                    n.as_u64().filter(|ms| *ms <= MAX_DELAY_MS).ok_or_else(|| BehaviourError::Delay(n.to_string()))?
                }
                other => return Err(BehaviourError::Delay(other.to_string())),
            };
        }
        if let Some(fail) = fields.get("fail") {
            next.fail = match fail {
                Value::Null => None,
                Value::String(text) => parse_optional_fail(text)?,
                Value::Number(n) => Some(FailMode::parse(&n.to_string())?),
                other => return Err(BehaviourError::Fail(other.to_string())),
            };
        }
        Ok(next)
    }

    /// This behaviour with the request's override headers applied (`None` = header absent).
    pub fn overridden(self, delay_header: Option<&str>, fail_header: Option<&str>) -> Result<Self, BehaviourError> {
        let mut next = self;
        if let Some(text) = delay_header {
            next.delay_ms = parse_delay_ms(text)?;
        }
        if let Some(text) = fail_header {
            next.fail = parse_optional_fail(text)?;
        }
        Ok(next)
    }

    /// The delay as a duration.
    pub fn delay(self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }
}

fn reject_unknown_fields(fields: &Map<String, Value>) -> Result<(), BehaviourError> {
    match fields.keys().find(|key| !matches!(key.as_str(), "delay_ms" | "fail")) {
        Some(key) => Err(BehaviourError::Settings(format!(
            "unknown settings field {key:?}; expected \"delay_ms\" and/or \"fail\""
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_fail_spelling() {
        assert_eq!(FailMode::parse("503"), Ok(FailMode::Status(503)));
        assert_eq!(FailMode::parse(" Timeout "), Ok(FailMode::Timeout));
        assert_eq!(FailMode::parse("close"), Ok(FailMode::Close));
        assert!(FailMode::parse("200").is_err());
        assert!(FailMode::parse("600").is_err());
        assert!(FailMode::parse("explode").is_err());
        assert_eq!(parse_optional_fail("none"), Ok(None));
        assert_eq!(parse_optional_fail(""), Ok(None));
    }

    #[test]
    fn fail_mode_round_trips_through_its_string_form() {
        for mode in [FailMode::Status(429), FailMode::Timeout, FailMode::Close] {
            assert_eq!(FailMode::parse(&mode.as_string()), Ok(mode));
        }
    }

    #[test]
    fn settings_update_keeps_fields_left_out() {
        let start = Behaviour { delay_ms: 10, fail: Some(FailMode::Close) };
        let next = start.updated(&json!({"delay_ms": 150})).unwrap();
        assert_eq!(next.delay_ms, 150);
        assert_eq!(next.fail, Some(FailMode::Close));
        let cleared = next.updated(&json!({"fail": null})).unwrap();
        assert_eq!(cleared.fail, None);
        let numeric = cleared.updated(&json!({"fail": 502})).unwrap();
        assert_eq!(numeric.fail, Some(FailMode::Status(502)));
    }

    #[test]
    fn settings_update_rejects_bad_values_and_unknown_fields() {
        let start = Behaviour::default();
        assert!(start.updated(&json!({"delay_ms": -1})).is_err());
        assert!(start.updated(&json!({"delay_ms": "fast"})).is_err());
        assert!(start.updated(&json!({"fail": "sometimes"})).is_err());
        assert!(start.updated(&json!({"delay": 5})).is_err());
        assert!(start.updated(&json!([1])).is_err());
    }

    #[test]
    fn headers_override_the_global_behaviour() {
        let global = Behaviour { delay_ms: 100, fail: Some(FailMode::Status(503)) };
        let per_request = global.overridden(Some("0"), Some("none")).unwrap();
        assert_eq!(per_request, Behaviour::default());
        assert_eq!(global.overridden(None, None).unwrap(), global);
        assert!(global.overridden(Some("soon"), None).is_err());
        assert!(global.overridden(Some(&(MAX_DELAY_MS + 1).to_string()), None).is_err());
    }
}
