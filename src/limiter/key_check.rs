//! The check of a caller known only by an API key this isolate has not verified: ONE script
//! call (`scripts/check_key.lua`) reads the key's record, and checks the limits of its subject
//! and tier, so a never-seen key costs one round trip before the origin instead of two.
//!
//! The Worker cannot name the subject's keys before it has read the record (the record holds the
//! subject hash), so the script names them, as [`crate::keys::Keys`] does, and picks the tier's
//! limits from a table of every tier of the policy.

use crate::keys::Keys;
use crate::policy::Tier;
use crate::redis::{Arg, Reply};

use super::check::push_limit;
use super::{parse_reply, Check, Decision, LimiterError, ScriptCall};

/// A [`Check`] whose subject and tier come from an API key's record, read in the same script.
#[derive(Debug, Clone, Copy)]
pub struct KeyCheck<'a> {
    /// The key record's Redis key ([`crate::keys::Keys::api_key`] of the key's hash).
    pub record_key: &'a str,
    /// Every tier a record may name, with its limits.
    pub tiers: &'a [Tier],
    /// The tier that applies when the record names none of `tiers` (the policy's default).
    pub fallback_tier: &'a str,
    /// The route's part of the check (its `subject_hash` and `tier_limits` are not used).
    pub check: Check<'a>,
}

/// What the script found.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyChecked {
    /// The key is valid: its stored record (as the registry's `GET` returns it) and the check.
    Valid {
        /// The record, a bulk reply of its JSON.
        record: Reply,
        /// Every limit's verdict, for the record's subject and tier.
        decision: Box<Decision>,
    },
    /// No record: an unknown key. Nothing was checked.
    Unknown,
    /// A revoked key's tombstone. Nothing was checked.
    Revoked,
    /// A record that is not one the registry writes. Nothing was checked.
    Corrupt,
}

impl KeyCheck<'_> {
    /// The script's keys and arguments; time comes from Redis `TIME`.
    pub fn command(&self, keys: &Keys) -> Result<ScriptCall, LimiterError> {
        self.build(keys, None)
    }

    /// Like [`KeyCheck::command`] at a given time: for the property tests only.
    pub fn command_at(&self, keys: &Keys, now_ms: u64) -> Result<ScriptCall, LimiterError> {
        self.build(keys, Some(now_ms))
    }

    fn build(&self, keys: &Keys, now_ms: Option<u64>) -> Result<ScriptCall, LimiterError> {
        let route_only = Check { subject_hash: "", tier_limits: &[], ..self.check };
        let mut args = vec![
            Arg::from(keys.limit_base()),
            Arg::from(self.fallback_tier),
            Arg::from(self.check.concurrency.map_or("", |slot| slot.route)),
            Arg::from(self.tiers.len()),
        ];
        let mut charges = Vec::with_capacity(self.tiers.len());
        for tier in self.tiers {
            // Each tier with the route must make a valid check on its own.
            Check { subject_hash: "-", tier_limits: &tier.limits, ..self.check }.validate()?;
            let charged: Vec<_> = tier.limits.iter().filter_map(|l| self.check.cost_of(l).map(|c| (l, c))).collect();
            args.push(Arg::from(tier.name.as_str()));
            args.push(Arg::from(charged.len()));
            charges.push(charged);
        }
        for charged in &charges {
            for (limit, cost) in charged {
                push_limit(&mut args, limit, *cost);
            }
        }
        let inner = match now_ms {
            Some(now) => route_only.command_at(keys, now)?,
            None => route_only.command(keys)?,
        };
        args.extend(inner.args);
        Ok(ScriptCall { keys: vec![self.record_key.to_owned()], args })
    }
}

/// Reads the script's reply (`{status, record, check reply}`); any other shape is an error.
pub fn parse_key_reply(reply: &Reply) -> Result<KeyChecked, LimiterError> {
    let items = reply.as_array().ok_or(LimiterError::MalformedReply("key check: not an array"))?;
    let [status, record, decided] = items else {
        return Err(LimiterError::MalformedReply("key check: not three fields"));
    };
    match status.to_i64() {
        Some(1) => {
            let decision = parse_reply(decided)?;
            Ok(KeyChecked::Valid { record: record.clone(), decision: Box::new(decision) })
        }
        Some(0) => Ok(KeyChecked::Unknown),
        Some(2) => Ok(KeyChecked::Revoked),
        Some(3) => Ok(KeyChecked::Corrupt),
        _ => Err(LimiterError::MalformedReply("key check: status")),
    }
}
