//! The unavailable-offerings cache: (instance type, zone, capacity type) triples that answered
//! insufficient capacity, kept out of the catalogue for a TTL (3 minutes by default) measured on
//! the shared `Clock`, so the next solve picks another offering instead of retrying the same one.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use stowage_clock::SharedClock;
use stowage_cloud::{CapacityType, OfferingKey};

/// Offerings that recently failed for lack of capacity.
#[derive(Debug)]
pub struct UnavailableOfferings {
    clock: SharedClock,
    ttl: SignedDuration,
    until: Mutex<BTreeMap<OfferingKey, Timestamp>>,
}

impl UnavailableOfferings {
    pub fn new(clock: SharedClock, ttl: Duration) -> Self {
        let ttl = SignedDuration::try_from(ttl).unwrap_or(SignedDuration::from_secs(180));
        Self {
            clock,
            ttl,
            until: Mutex::new(BTreeMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<OfferingKey, Timestamp>> {
        match self.until.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Marks the offering unavailable for the TTL from now (a longer mark already there, such
    /// as an interrupted offering's, is kept).
    pub fn mark(&self, key: OfferingKey) {
        let until = self
            .clock
            .now()
            .checked_add(self.ttl)
            .unwrap_or_else(|_| self.clock.now());
        let mut entries = self.entries();
        let entry = entries.entry(key).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Marks the offering unavailable for `ttl` from now (a longer mark already there is kept):
    /// an interrupted spot offering, kept out longer than an insufficient-capacity answer.
    pub fn mark_for(&self, key: OfferingKey, ttl: Duration) {
        let now = self.clock.now();
        let until = SignedDuration::try_from(ttl)
            .ok()
            .and_then(|ttl| now.checked_add(ttl).ok())
            .unwrap_or(now);
        let mut entries = self.entries();
        let entry = entries.entry(key).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Whether the offering is currently marked unavailable.
    pub fn is_unavailable(
        &self,
        instance_type: &str,
        zone: &str,
        capacity_type: CapacityType,
    ) -> bool {
        let key = OfferingKey {
            instance_type: instance_type.to_string(),
            zone: zone.to_string(),
            capacity_type,
        };
        let now = self.clock.now();
        let mut entries = self.entries();
        match entries.get(&key) {
            Some(until) if *until > now => true,
            Some(_) => {
                entries.remove(&key);
                false
            }
            None => false,
        }
    }

    /// The offerings currently marked (expired ones dropped), sorted.
    pub fn current(&self) -> Vec<OfferingKey> {
        let now = self.clock.now();
        let mut entries = self.entries();
        entries.retain(|_, until| *until > now);
        entries.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use stowage_clock::TokioClock;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn offerings_expire_after_the_ttl() {
        let clock = Arc::new(TokioClock::starting_at(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ));
        let cache = UnavailableOfferings::new(clock, Duration::from_secs(180));
        cache.mark(OfferingKey {
            instance_type: "m5.large".into(),
            zone: "us-east-1a".into(),
            capacity_type: CapacityType::Spot,
        });
        assert!(cache.is_unavailable("m5.large", "us-east-1a", CapacityType::Spot));
        assert!(!cache.is_unavailable("m5.large", "us-east-1a", CapacityType::OnDemand));
        assert!(!cache.is_unavailable("m5.large", "us-east-1b", CapacityType::Spot));
        tokio::time::sleep(Duration::from_secs(179)).await;
        assert!(cache.is_unavailable("m5.large", "us-east-1a", CapacityType::Spot));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!cache.is_unavailable("m5.large", "us-east-1a", CapacityType::Spot));
        assert!(cache.current().is_empty());
        // An interrupted offering is kept out for its own, longer TTL.
        let key = OfferingKey {
            instance_type: "m5.large".into(),
            zone: "us-east-1a".into(),
            capacity_type: CapacityType::Spot,
        };
        cache.mark_for(key.clone(), Duration::from_secs(900));
        cache.mark(key);
        tokio::time::sleep(Duration::from_secs(899)).await;
        assert!(cache.is_unavailable("m5.large", "us-east-1a", CapacityType::Spot));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!cache.is_unavailable("m5.large", "us-east-1a", CapacityType::Spot));
    }
}
