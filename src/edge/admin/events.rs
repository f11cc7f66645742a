//! `GET /_tollgate/events`: Tollgate's own channels, live. The admin API decides what is
//! subscribed to (only Tollgate's channels, never a name the caller makes up) and with which
//! credentials (the Worker's own: the Redis token never leaves it); the Worker streams.

use crate::edge::events::{EventChannel, EventsPlan};

use super::super::error::AdminError;
use super::super::http::EdgeRequest;
use super::super::services::{Platform, Services};
use super::{percent_decode, query_param};

/// The subscription for `req` (`?channels=invalidation,quota_warning`, all by default).
pub(super) fn open<P: Platform>(services: &Services<P>, req: &EdgeRequest) -> Result<EventsPlan, AdminError> {
    let channels = channels(query_param(&req.query, "channels").as_deref())?;
    let redis = services.config.redis.as_ref().ok_or(AdminError::RedisRequired)?;
    Ok(EventsPlan::new(redis, channels))
}

/// The channels named in `?channels=` (comma-separated event or channel names), each once.
fn channels(given: Option<&str>) -> Result<Vec<EventChannel>, AdminError> {
    let given = given.map(percent_decode).unwrap_or_default();
    if given.trim().is_empty() {
        return Ok(EventChannel::ALL.to_vec());
    }
    let mut out = Vec::new();
    for name in given.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let channel = EventChannel::parse(name).ok_or_else(|| {
            let known: Vec<&str> = EventChannel::ALL.iter().map(|c| c.as_str()).collect();
            AdminError::BadRequest(format!("channels: unknown channel {name:?}; Tollgate's are {}", known.join(", ")))
        })?;
        if !out.contains(&channel) {
            out.push(channel);
        }
    }
    Ok(if out.is_empty() { EventChannel::ALL.to_vec() } else { out })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_channels_every_channel_is_streamed() {
        assert_eq!(channels(None).ok(), Some(EventChannel::ALL.to_vec()));
        assert_eq!(channels(Some("")).ok(), Some(EventChannel::ALL.to_vec()));
    }

    #[test]
    fn channels_are_named_once_each_by_event_or_channel() {
        assert_eq!(
            channels(Some("quota_warning,system%3Acache_invalidation,quota_warning")).ok(),
            Some(vec![EventChannel::QuotaWarning, EventChannel::Invalidation])
        );
    }

    #[test]
    fn any_other_channel_is_refused_naming_it() {
        for bad in ["system:*", "invalidation,tollgate:keys", "a%2Fb", ",*"] {
            match channels(Some(bad)) {
                Err(AdminError::BadRequest(detail)) => assert!(detail.starts_with("channels: unknown"), "{detail}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
