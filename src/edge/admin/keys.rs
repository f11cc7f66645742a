//! `POST|GET /_tollgate/keys`, `DELETE /_tollgate/keys/{id}`: the API-key registry.

use serde::Deserialize;
use serde_json::json;

use super::super::error::AdminError;
use super::super::http::{EdgeRequest, EdgeResponse};
use super::super::services::{Platform, Services};
use super::{json_body, need_redis, ok, AdminResult, MAX_SUBJECT};

/// Longest key name, bytes.
const MAX_KEY_NAME: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKeyBody {
    subject: String,
    tier: String,
    name: Option<String>,
}

pub(super) async fn create<P: Platform>(services: &Services<P>, req: &EdgeRequest) -> AdminResult {
    let body: CreateKeyBody = json_body(req)?;
    need_redis(services)?;
    let policy = &services.config.policy;
    if body.subject.len() > MAX_SUBJECT {
        return Err(AdminError::BadRequest(format!("subject: longer than {MAX_SUBJECT} bytes")));
    }
    let subject_hash = services.identifier.subject_hash_of(&body.subject, &policy.identity).ok_or_else(|| {
        AdminError::BadRequest("subject: must be a non-empty user id, ip:<address> or hash:<sha256>".into())
    })?;
    let tier = body.tier.to_ascii_uppercase();
    if policy.tier(&tier).is_none() {
        let known: Vec<&str> = policy.tiers.iter().map(|t| t.name.as_str()).collect();
        return Err(AdminError::BadRequest(format!(
            "tier: unknown tier {:?} (known: {})",
            body.tier,
            known.join(", ")
        )));
    }
    if let Some(name) = &body.name {
        if name.is_empty() || name.len() > MAX_KEY_NAME || name.chars().any(char::is_control) {
            return Err(AdminError::BadRequest(format!("name: 1 to {MAX_KEY_NAME} printable characters")));
        }
    }
    let (key, record) = services.registry.create(services.random.as_ref(), &subject_hash, &tier, body.name).await?;
    Ok(EdgeResponse::json(
        201,
        &json!({
            "id": record.id,
            "key": key,
            "tier": record.tier,
            "subject_hash": record.subject_hash,
            "name": record.name,
            "created_ms": record.created_ms,
        }),
    ))
}

pub(super) async fn list<P: Platform>(services: &Services<P>) -> AdminResult {
    need_redis(services)?;
    let keys: Vec<_> = services
        .registry
        .list()
        .await?
        .into_iter()
        .map(|r| json!({"id": r.id, "tier": r.tier, "subject_hash": r.subject_hash, "name": r.name, "created_ms": r.created_ms}))
        .collect();
    ok(json!({"keys": keys}))
}

pub(super) async fn revoke<P: Platform>(services: &Services<P>, id: &str) -> AdminResult {
    need_redis(services)?;
    if services.registry.revoke(id).await? {
        Ok(EdgeResponse::new(204))
    } else {
        Err(AdminError::NotFound(format!("no API key with id {id:?}")))
    }
}
