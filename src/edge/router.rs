//! The entrance: every request meets it once. It decides what kind of request this is
//! (preflight, admin, gated) and applies what holds for all of them, then hands the request to
//! the one handler for its kind; no handler calls back into another.

use std::rc::Rc;

use crate::clock::{Clock, Random};
use crate::policy::CacheKeySource;

use super::admin;
use super::config::Config;
use super::cors;
use super::gate;
use super::http::{EdgeRequest, EdgeResponse};
use super::respond::{Handled, Outcome};
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
        Self::from_services(Services::new(config, transport, origin, sleeper, clock, random))
    }

    /// The edge over services built by the caller (with key sets, say).
    pub fn from_services(services: Services<P>) -> Self {
        Self { services: Rc::new(services) }
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
        path.starts_with("/_tollgate/")
            || self
                .services
                .config
                .policy
                .route_for(method, path)
                .is_some_and(|(route, _)| route.cache.as_ref().is_some_and(|c| c.key == CacheKeySource::JsonBody))
    }

    /// Handles one request.
    pub async fn handle(&self, req: EdgeRequest) -> Handled {
        let services = &self.services;
        let mut handled = if cors::is_preflight(&req) {
            Handled::respond(cors::preflight(&services.config.policy.cors, &req))
        } else if req.path == "/_tollgate" {
            Handled::respond(EdgeResponse::new(308).with_header("location", "/_tollgate/"))
        } else if req.path.starts_with("/_tollgate/") {
            let mut outcome = admin::handle(services, &req).await;
            match &mut outcome {
                Outcome::Respond(resp) => cors::decorate(&services.config.policy.cors, &req, resp),
                Outcome::Events(plan) => cors::decorate(&services.config.policy.cors, &req, &mut plan.head),
                Outcome::Proxy(_) => {}
            }
            Handled { outcome, background: Vec::new() }
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
