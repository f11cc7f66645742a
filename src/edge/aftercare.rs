//! What an allowed request owes once its answer's body has ended (or its client went away): the
//! settlement of its usage reservation (which also removes its record in flight) and the release
//! of its concurrency lease, together in one background round trip (one `/pipeline`:
//! `settle.lua` + `release.lua`), or in the isolate's limiter when the check was decided there.

use std::rc::Rc;

use crate::limiter::{release_script, settle_script, Check, Decision, Release, Settlement};
use crate::policy::{Limit, Unit, UsageSource};
use crate::redis::Entry;

use super::mode::LimitMode;
use super::services::{Background, Platform, Services};

/// The debt of one request: run [`Aftercare::finish`] with the usage its answer reported.
pub struct Aftercare {
    /// Where the origin reports usage, when the route reserves some.
    pub source: Option<UsageSource>,
    run: Box<dyn FnOnce(Option<u32>) -> Background>,
}

impl Aftercare {
    /// What a request checked by `check` with `decision` (in `mode`) owes, if anything: nothing
    /// when it reserved nothing and took no lease, or when the route failed open.
    pub fn of<P: Platform>(
        services: &Rc<Services<P>>,
        check: &Check<'_>,
        decision: &Decision,
        mode: LimitMode,
        source: Option<&UsageSource>,
    ) -> Option<Aftercare> {
        if mode == LimitMode::Open || !decision.is_allowed() {
            return None;
        }
        let settlement = check.settlement(decision, 0);
        let release = check.release(decision);
        if settlement.is_none() && release.is_none() {
            return None;
        }
        let owed = Owed {
            subject: check.subject_hash.to_owned(),
            limits: settlement.as_ref().map(|s| s.limits.iter().map(|l| (*l).clone()).collect()).unwrap_or_default(),
            reserved_at_ms: settlement.as_ref().map_or(0, |s| s.reserved_at_ms),
            reserve: settlement.as_ref().map_or(0, |s| s.reserve),
            reservation: settlement.as_ref().map(|s| (s.reservation_id.to_owned(), s.unit.clone())),
            lease: release.map(|r| (r.route.to_owned(), r.lease_id.to_owned())),
        };
        let services = services.clone();
        let run = Box::new(move |actual: Option<u32>| -> Background {
            Box::pin(async move { owed.pay(&services, mode, actual).await })
        });
        Some(Aftercare { source: source.filter(|_| settlement.is_some()).cloned(), run })
    }

    /// The background work, once the body ended with `actual` units reported (`None`: settle at
    /// the reservation).
    pub fn finish(self, actual: Option<u32>) -> Background {
        (self.run)(actual)
    }
}

/// The owned parts of a settlement and a release.
struct Owed {
    subject: String,
    limits: Vec<Limit>,
    reserved_at_ms: u64,
    reserve: u32,
    /// The reservation's id and unit: its record in flight, removed by the settlement.
    reservation: Option<(String, Unit)>,
    lease: Option<(String, String)>,
}

impl Owed {
    async fn pay<P: Platform>(self, services: &Services<P>, mode: LimitMode, actual: Option<u32>) {
        let settlement = self.reservation.as_ref().filter(|_| !self.limits.is_empty()).map(|(id, unit)| Settlement {
            subject_hash: &self.subject,
            limits: self.limits.iter().collect(),
            reserved_at_ms: self.reserved_at_ms,
            reserve: self.reserve,
            actual: actual.unwrap_or(self.reserve),
            reservation_id: id,
            unit,
        });
        let release =
            self.lease.as_ref().map(|(route, lease_id)| Release { subject_hash: &self.subject, route, lease_id });
        match (&services.redis, mode) {
            (Some(client), LimitMode::Redis) => {
                let calls: Vec<_> = settlement
                    .iter()
                    .map(|s| (settle_script(), s.command(&services.keys)))
                    .chain(release.iter().map(|r| (release_script(), r.command(&services.keys))))
                    .collect();
                let entries =
                    calls.iter().map(|(script, call)| Entry::script(script, &call.keys, &call.args)).collect();
                // A lost settlement leaves the reservation charged and a lost release frees at
                // the lease's deadline: both err on the caller's side, never the origin's.
                let _ = client.pipeline_with_scripts(entries).await;
            }
            _ => {
                let now = services.clock.now_ms();
                let mut memory = services.limits.memory.borrow_mut();
                if let Some(s) = &settlement {
                    memory.settle(s, now);
                }
                if let Some(r) = &release {
                    memory.release(r.subject_hash, r.route, r.lease_id);
                }
            }
        }
    }
}
