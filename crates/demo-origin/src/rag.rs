//! `POST /rag/context`: deterministic retrieval results, a stand-in for a vector search.
//!
//! The same query (and `top_k`) always yields the same chunks, so tests can compare a cached
//! answer with a fresh one; only `generated_at_ms` changes between calls.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Chunks returned when the request names no `top_k`.
pub const DEFAULT_TOP_K: u8 = 3;
/// The most chunks one request may ask for.
pub const MAX_TOP_K: u8 = 10;

/// The passages retrieval draws from.
const PASSAGES: [(&str, &str); 6] = [
    ("kb/rate-limits.md", "Each tier has an hourly request budget; route limits apply on top of it."),
    ("kb/caching.md", "Hot configuration is cached for a day and RAG context for five minutes, with jitter."),
    ("kb/auth.md", "Callers present an API key or a signed JWT; anonymous callers are limited by IP."),
    ("kb/errors.md", "Errors are problem+json documents with a type, a title, a status and a detail."),
    ("kb/deploy.md", "Secrets are set with wrangler secret put; plain settings live under [vars]."),
    ("kb/origin.md", "The origin is reached only on a cache miss or for routes that are not cacheable."),
];

/// A request the route cannot answer; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RagRequestError(pub String);

/// A validated request: the query and how many chunks to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RagRequest {
    pub query: String,
    pub top_k: u8,
}

impl RagRequest {
    /// Validates a parsed body: `{"query": "<non-empty string>", "top_k": 1..=10 (optional)}`;
    /// other fields are allowed and ignored.
    pub fn from_json(body: &Value) -> Result<Self, RagRequestError> {
        let fields = body.as_object().ok_or_else(|| RagRequestError("the body must be a JSON object".to_owned()))?;
        let query = match fields.get("query") {
            Some(Value::String(query)) if !query.trim().is_empty() => query.clone(),
            Some(_) => return Err(RagRequestError("\"query\" must be a non-empty string".to_owned())),
            None => return Err(RagRequestError("\"query\" is required".to_owned())),
        };
        let top_k = match fields.get("top_k") {
            None | Some(Value::Null) => DEFAULT_TOP_K,
            Some(value) => value
                .as_u64()
                .and_then(|k| u8::try_from(k).ok())
                .filter(|k| (1..=MAX_TOP_K).contains(k))
                .ok_or_else(|| RagRequestError(format!("\"top_k\" must be an integer from 1 to {MAX_TOP_K}")))?,
        };
        Ok(Self { query, top_k })
    }

    /// The response document, stamped with `generated_at_ms`.
    pub fn answer(&self, generated_at_ms: u64) -> Value {
        json!({
            "query": self.query,
            "top_k": self.top_k,
            "chunks": self.chunks(),
            "generated_at_ms": generated_at_ms,
        })
    }

    fn chunks(&self) -> Vec<Value> {
        let digest = Sha256::digest(self.query.trim().to_lowercase().as_bytes());
        let query_id = hex_prefix(&digest, 4);
        (0..self.top_k)
            .map(|rank| {
                // Both indexes are reduced modulo the array length, so any rank is in bounds.
                let at = usize::from(rank) % digest.len();
                let (source, passage) = PASSAGES[usize::from(digest[at]) % PASSAGES.len()];
                // Scores fall with rank; the digest adds a stable per-query wobble below 0.01.
                let wobble = f64::from(digest[digest.len() - 1 - at]) / 25_600.0;
                let score = 0.95 - 0.07 * f64::from(rank) - wobble;
                json!({
                    "id": format!("ctx-{query_id}-{rank}"),
                    "source": source,
                    "score": (score * 10_000.0).round() / 10_000.0,
                    "text": passage,
                })
            })
            .collect()
    }
}

fn hex_prefix(bytes: &[u8], len: usize) -> String {
    bytes.iter().take(len).map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> Result<RagRequest, RagRequestError> {
        RagRequest::from_json(&body)
    }

    #[test]
    fn the_same_query_gets_the_same_chunks() {
        let one = request(json!({"query": "how are limits applied?"})).unwrap();
        let two = request(json!({"query": "how are limits applied?", "user": "x"})).unwrap();
        assert_eq!(one.answer(1)["chunks"], two.answer(2)["chunks"]);
        assert_eq!(one.answer(1)["chunks"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn different_queries_get_different_ids() {
        let one = request(json!({"query": "alpha"})).unwrap().answer(0);
        let two = request(json!({"query": "beta"})).unwrap().answer(0);
        assert_ne!(one["chunks"][0]["id"], two["chunks"][0]["id"]);
    }

    #[test]
    fn scores_fall_with_rank() {
        let answer = request(json!({"query": "q", "top_k": 10})).unwrap().answer(0);
        let scores: Vec<f64> =
            answer["chunks"].as_array().unwrap().iter().map(|chunk| chunk["score"].as_f64().unwrap()).collect();
        assert_eq!(scores.len(), 10);
        assert!(scores.windows(2).all(|pair| pair[0] > pair[1]), "{scores:?}");
    }

    #[test]
    fn rejects_requests_without_a_usable_query_or_top_k() {
        assert!(request(json!({})).is_err());
        assert!(request(json!({"query": ""})).is_err());
        assert!(request(json!({"query": 7})).is_err());
        assert!(request(json!({"query": "q", "top_k": 0})).is_err());
        assert!(request(json!({"query": "q", "top_k": 11})).is_err());
        assert!(request(json!(["q"])).is_err());
    }
}
