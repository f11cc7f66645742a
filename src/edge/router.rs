//! The entrance: every request meets it once. It decides what kind of request this is
//! (preflight, admin, gated) and applies what holds for all of them, then hands the request to
//! the one handler for its kind; no handler calls back into another.
//!
//! What holds for all of them: the path is normalized once ([`crate::path`]) and the normalized
//! path is the one matched and forwarded; a body is read only where the edge needs it, within a
//! cap, and an admin body only once its token checked out ([`super::body`]).

use std::rc::Rc;

use crate::clock::{Clock, Random};
use crate::policy::CacheKeySource;

use super::admin;
use super::body::ADMIN_BODY_BYTES;
use super::config::Config;
use super::cors;
use super::error::GateError;
use super::gate;
use super::http::{EdgeRequest, EdgeResponse};
use super::respond::Handled;
use super::services::{Platform, Services};

/// The edge of one isolate for one configuration.
pub struct Edge<P: Platform> {
    services: Rc<Services<P>>,
}

impl<P: Platform> Edge<P> {
    /// The edge over `config`; `transport` is `None` in memory mode.
    pub fn new(
        config: Config,
        transport: Option<P::Transport>,
        origin: P::Origin,
        sleeper: P::Sleeper,
        clock: Rc<dyn Clock>,
        random: Rc<dyn Random>,
    ) -> Self {
        Self { services: Rc::new(Services::new(config, transport, origin, sleeper, clock, random)) }
    }

    /// The isolate's shared services.
    pub fn services(&self) -> &Rc<Services<P>> {
        &self.services
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.services.config
    }

    /// Whether the edge needs the request body before deciding (cache keys of JSON bodies,
    /// admin calls); other bodies are streamed to the origin untouched.
    pub fn needs_body(&self, method: &str, path: &str) -> bool {
        self.body_cap(method, path, None).is_some() || path.starts_with("/_tollgate/")
    }

    /// How many bytes of the body of a request to (normalized) `path` the edge reads: `None`
    /// streams it to the origin (or drops it) unread. Admin calls are read, up to
    /// [`ADMIN_BODY_BYTES`], only when `authorization` carries the admin token; JSON-body cache
    /// routes up to `cache.max_body_bytes`.
    pub fn body_cap(&self, method: &str, path: &str, authorization: Option<&str>) -> Option<usize> {
        let services = &self.services;
        if path.starts_with("/_tollgate/") {
            return admin::token_matches(services, authorization).then_some(ADMIN_BODY_BYTES);
        }
        let json_body = services
            .config
            .policy
            .route_for(method, path)
            .is_some_and(|(route, _)| route.cache.as_ref().is_some_and(|c| c.key == CacheKeySource::JsonBody));
        json_body.then_some(services.config.policy.cache.max_body_bytes as usize)
    }

    /// The request path in normal form, or the `400` problem to answer with.
    pub fn normalize_path(path: &str) -> Result<String, EdgeResponse> {
        crate::path::normalize(path)
            .map_err(|e| GateError::BadRequest(format!("{e}")).problem().with("reason", e.as_str()).to_response())
    }

    /// Handles one request.
    pub async fn handle(&self, mut req: EdgeRequest) -> Handled {
        let services = &self.services;
        match Self::normalize_path(&req.path) {
            Ok(path) => req.path = path,
            Err(mut resp) => {
                cors::decorate(&services.config.policy.cors, &req, &mut resp);
                return Handled::respond(resp);
            }
        }
        let mut handled = if cors::is_preflight(&req) {
            Handled::respond(cors::preflight(&services.config.policy.cors, &req))
        } else if req.path == "/_tollgate" {
            Handled::respond(EdgeResponse::new(308).with_header("location", "/_tollgate/"))
        } else if req.path.starts_with("/_tollgate/") {
            let mut resp = admin::handle(services, &req).await;
            cors::decorate(&services.config.policy.cors, &req, &mut resp);
            Handled::respond(resp)
        } else {
            gate::gated(services, req).await
        };
        if let Some(flush) = services.flush_if_due() {
            handled.background.push(flush);
        }
        handled
    }

    /// Warms every configured hot key (cron trigger).
    pub async fn warm_all(&self) {
        if let Some(cache) = &self.services.cache {
            let _ = crate::cache::warm(cache, &self.services.config.policy, None, &[]).await;
        }
    }
}
