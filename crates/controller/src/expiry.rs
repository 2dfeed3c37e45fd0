//! Expiry: when a NodeClaim reaches its `expireAfter` (pure; the disruption controller's Expiry
//! method calls it and replaces expired claims without budgets).
//!
//! Key decision: the claim's own `spec.expireAfter` counts — the value it was launched with —
//! not its NodePool's current one. A changed `expireAfter` is part of the NodePool template hash,
//! so it reaches existing nodes by drift (budgeted replacement); read from the pool instead,
//! shortening it from 30 days to 1 day would expire most of a fleet at once, without budgets.

use std::time::Duration;

use jiff::Timestamp;
use stowage_api::NodeClaim;

/// When a claim expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// `expireAfter: Never`.
    Never,
    /// Not known yet: the claim has no creation time (not persisted by the API server).
    Unknown,
    /// At this instant; `expired` when it has passed.
    At { at: Timestamp, expired: bool },
}

impl Expiry {
    /// Whether the claim is due for replacement now.
    pub fn is_expired(self) -> bool {
        matches!(self, Expiry::At { expired: true, .. })
    }

    /// The instant it expires, if it ever does.
    pub fn at(self) -> Option<Timestamp> {
        match self {
            Expiry::At { at, .. } => Some(at),
            _ => None,
        }
    }
}

/// When `claim` expires as of `now`: its creation time plus its `spec.expireAfter`. A duration
/// too long to represent never expires.
pub fn expiry(claim: &NodeClaim, now: Timestamp) -> Expiry {
    let Some(after) = claim.spec.expire_after.as_std() else {
        return Expiry::Never;
    };
    let Some(created) = claim.metadata.creation_timestamp.as_ref().map(|t| t.0) else {
        return Expiry::Unknown;
    };
    match jiff::SignedDuration::try_from(after)
        .ok()
        .and_then(|d| created.checked_add(d).ok())
    {
        Some(at) => Expiry::At {
            at,
            expired: now >= at,
        },
        None => Expiry::Never,
    }
}

/// How long until `claim` expires (zero once it has), `None` when it never does or its creation
/// time is not known: for a loop that wants to wake up when the next claim expires.
pub fn time_to_expiry(claim: &NodeClaim, now: Timestamp) -> Option<Duration> {
    let at = expiry(claim, now).at()?;
    Some(Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use stowage_api::NillableDuration;

    use super::*;
    use crate::fixtures::{claim, ts};

    fn aged(expire_after: NillableDuration, created: Option<&str>) -> NodeClaim {
        let mut c = claim("general-a", "general");
        c.spec.expire_after = expire_after;
        c.metadata.creation_timestamp = created.map(|t| Time(ts(t)));
        c
    }

    #[test]
    fn a_claim_expires_its_expire_after_past_its_creation() {
        let c = aged(
            NillableDuration::from_hours(1),
            Some("2026-01-01T00:00:00Z"),
        );
        let before = expiry(&c, ts("2026-01-01T00:59:59Z"));
        assert_eq!(
            before,
            Expiry::At {
                at: ts("2026-01-01T01:00:00Z"),
                expired: false
            }
        );
        assert!(!before.is_expired());
        assert!(expiry(&c, ts("2026-01-01T01:00:00Z")).is_expired());
        assert!(expiry(&c, ts("2026-03-01T00:00:00Z")).is_expired());
        assert_eq!(
            time_to_expiry(&c, ts("2026-01-01T00:30:00Z")),
            Some(Duration::from_secs(1800))
        );
        assert_eq!(
            time_to_expiry(&c, ts("2026-01-02T00:00:00Z")),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn the_default_is_thirty_days_and_never_means_never() {
        let c = aged(
            stowage_api::nodeclaim::DEFAULT_EXPIRE_AFTER,
            Some("2026-01-01T00:00:00Z"),
        );
        assert_eq!(
            expiry(&c, ts("2026-01-01T00:00:00Z")).at(),
            Some(ts("2026-01-31T00:00:00Z"))
        );
        let never = aged(NillableDuration::NEVER, Some("2020-01-01T00:00:00Z"));
        assert_eq!(expiry(&never, ts("2026-01-01T00:00:00Z")), Expiry::Never);
        assert_eq!(time_to_expiry(&never, ts("2026-01-01T00:00:00Z")), None);
        // Seconds-long, and far beyond any timestamp: never reached.
        let short = aged(
            NillableDuration::from_secs(90),
            Some("2026-01-01T00:00:00Z"),
        );
        assert!(expiry(&short, ts("2026-01-01T00:01:30Z")).is_expired());
        let huge = aged(
            NillableDuration(Some(Duration::from_secs(u64::MAX / 2))),
            Some("2026-01-01T00:00:00Z"),
        );
        assert_eq!(expiry(&huge, ts("2026-01-01T00:00:00Z")), Expiry::Never);
    }

    #[test]
    fn a_claim_without_a_creation_time_is_not_judged() {
        let c = aged(NillableDuration::from_secs(1), None);
        let e = expiry(&c, ts("2030-01-01T00:00:00Z"));
        assert_eq!(e, Expiry::Unknown);
        assert!(!e.is_expired());
        assert_eq!(time_to_expiry(&c, ts("2030-01-01T00:00:00Z")), None);
    }
}
