//! `GET|DELETE /_tollgate/stats`: the stored counters plus this isolate's unflushed ones.

use super::super::http::EdgeResponse;
use super::super::services::{Platform, Services};
use super::super::stats;
use super::{ok, AdminResult};

pub(super) async fn report<P: Platform>(services: &Services<P>) -> AdminResult {
    services.flush_stats().await;
    let stored = match &services.redis {
        Some(client) => stats::parse_stored(&client.command(stats::read_command(&services.keys)).await?),
        None => Default::default(),
    };
    let local = services.stats.borrow().pending().clone();
    ok(stats::report(&stored, &local, services.clock.now_ms()))
}

pub(super) async fn reset<P: Platform>(services: &Services<P>) -> AdminResult {
    services.stats.borrow_mut().drain(services.clock.now_ms());
    if let Some(client) = &services.redis {
        client.command(stats::reset_command(&services.keys)).await?;
    }
    Ok(EdgeResponse::new(204))
}
