//! The fleet's own spot interruption rate per (instance type, zone): interruptions per node-hour,
//! both counts exponentially decayed with one half-life (default 6 h), so the rate follows what
//! the pool does now and forgets an old storm. Persisted in a ConfigMap in the controller's
//! namespace, so a restart or a new leader keeps what was learnt.
//!
//! Key decisions:
//! - The rate is `interruptions / (node_hours + 1)`: one interruption in the first minutes of a
//!   pool is not read as an infinite rate (the `+ 1` is a prior of one quiet node-hour).
//! - The book is pure (time is an argument); the controller feeds it handled interruptions and,
//!   once a minute, the node-hours of live spot nodes.
//! - A ConfigMap, not NodePool or EC2NodeClass status: the rate belongs to an AWS capacity pool
//!   (type, zone), which every NodePool shares; per-pool status would copy it into every pool,
//!   lose it when a pool is deleted, and need a status write on every pool per interruption. One
//!   small namespaced object needs only a namespaced Role on one name.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};

use crate::context::Context;
use crate::error::{Error, Result, is_not_found};

/// The ConfigMap the rates are kept in (in the controller's namespace).
pub const CONFIGMAP: &str = "stowage-spot-interruption-rates";
/// Its data key.
const DATA_KEY: &str = "rates.json";
/// Node-hours of prior exposure (see the module docs).
const PRIOR_NODE_HOURS: f64 = 1.0;
/// Entries whose decayed counts fell below this are dropped.
const NEGLIGIBLE: f64 = 1e-3;

/// Decayed counts of one (instance type, zone), as of `updated`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolRecord {
    pub instance_type: String,
    pub zone: String,
    pub interruptions: f64,
    pub node_hours: f64,
    pub updated: Timestamp,
}

/// The factor a count decays by from `from` to `to`.
fn decay(half_life: Duration, from: Timestamp, to: Timestamp) -> f64 {
    let dt = to.duration_since(from).as_secs_f64().max(0.0);
    0.5f64.powf(dt / half_life.as_secs_f64().max(1.0))
}

/// Interruption rates per (instance type, zone).
#[derive(Clone, Debug, PartialEq)]
pub struct RateBook {
    half_life: Duration,
    pools: BTreeMap<(String, String), PoolRecord>,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    pools: Vec<PoolRecord>,
}

impl RateBook {
    pub fn new(half_life: Duration) -> Self {
        Self {
            half_life,
            pools: BTreeMap::new(),
        }
    }

    fn decay(&self, from: Timestamp, to: Timestamp) -> f64 {
        decay(self.half_life, from, to)
    }

    fn entry(&mut self, instance_type: &str, zone: &str, now: Timestamp) -> &mut PoolRecord {
        let key = (instance_type.to_string(), zone.to_string());
        let half_life = self.half_life;
        let record = self.pools.entry(key).or_insert_with(|| PoolRecord {
            instance_type: instance_type.to_string(),
            zone: zone.to_string(),
            interruptions: 0.0,
            node_hours: 0.0,
            updated: now,
        });
        let f = decay(half_life, record.updated, now);
        if record.updated < now {
            record.interruptions *= f;
            record.node_hours *= f;
            record.updated = now;
        }
        record
    }

    /// One handled interruption of a spot instance of `instance_type` in `zone`.
    pub fn record_interruption(&mut self, instance_type: &str, zone: &str, now: Timestamp) {
        self.entry(instance_type, zone, now).interruptions += 1.0;
    }

    /// `hours` of spot node time in (type, zone).
    pub fn add_node_hours(&mut self, instance_type: &str, zone: &str, hours: f64, now: Timestamp) {
        if hours > 0.0 {
            self.entry(instance_type, zone, now).node_hours += hours;
        }
    }

    /// Interruptions per node-hour at `now` (0 for a pool never seen).
    pub fn rate(&self, instance_type: &str, zone: &str, now: Timestamp) -> f64 {
        self.pools
            .get(&(instance_type.to_string(), zone.to_string()))
            .map_or(0.0, |r| {
                let f = self.decay(r.updated, now);
                (r.interruptions * f) / (r.node_hours * f + PRIOR_NODE_HOURS)
            })
    }

    /// Every pool with a rate above zero at `now`: (type, zone, rate), sorted.
    pub fn rates(&self, now: Timestamp) -> Vec<(String, String, f64)> {
        self.pools
            .keys()
            .map(|(t, z)| (t.clone(), z.clone(), self.rate(t, z, now)))
            .filter(|(_, _, r)| *r > 0.0)
            .collect()
    }

    /// Drops pools whose decayed counts are negligible.
    pub fn prune(&mut self, now: Timestamp) {
        let half_life = self.half_life;
        self.pools.retain(|_, r| {
            let f = decay(half_life, r.updated, now);
            r.interruptions * f >= NEGLIGIBLE
        });
    }

    /// The book as stored in the ConfigMap.
    pub fn to_json(&self) -> String {
        let stored = Stored {
            pools: self.pools.values().cloned().collect(),
        };
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// Merges a stored book (a record newer than the one held wins).
    pub fn merge_json(&mut self, json: &str) -> std::result::Result<(), serde_json::Error> {
        let stored: Stored = serde_json::from_str(json)?;
        for r in stored.pools {
            let key = (r.instance_type.clone(), r.zone.clone());
            match self.pools.get(&key) {
                Some(mine) if mine.updated >= r.updated => {}
                _ => {
                    self.pools.insert(key, r);
                }
            }
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.pools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }
}

/// Fills in the expected interruption cost of every spot offering of `types` (`price x weight x
/// rate`) and returns the offerings that got one. Weight 0: nothing changes.
pub fn apply_costs(
    types: &mut [stowage_solver::InstanceType],
    book: &RateBook,
    weight: f64,
    now: Timestamp,
) -> Vec<(stowage_cloud::OfferingKey, f64)> {
    let mut applied = Vec::new();
    if weight <= 0.0 || book.is_empty() {
        return applied;
    }
    for it in types.iter_mut() {
        for o in it
            .offerings
            .iter_mut()
            .filter(|o| o.capacity_type == stowage_cloud::CapacityType::Spot)
        {
            let rate = book.rate(&it.name, &o.zone, now);
            if rate > 0.0 {
                o.interruption_cost_per_hour = o.price_per_hour * weight * rate;
                applied.push((
                    stowage_cloud::OfferingKey {
                        instance_type: it.name.clone(),
                        zone: o.zone.clone(),
                        capacity_type: o.capacity_type,
                    },
                    o.interruption_cost_per_hour,
                ));
            }
        }
    }
    applied
}

/// Reads the stored rates into the context's book (a missing ConfigMap is an empty book).
pub async fn load(ctx: &Context) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    let cm = match api.get(CONFIGMAP).await {
        Ok(cm) => cm,
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(Error::kube("get configmap", CONFIGMAP)(e)),
    };
    if let Some(json) = cm.data.as_ref().and_then(|d| d.get(DATA_KEY)) {
        let merged = ctx.with_rates(|book| book.merge_json(json));
        if let Err(err) = merged {
            tracing::warn!(%err, configmap = CONFIGMAP, "stored spot interruption rates unreadable; starting afresh");
        }
    }
    Ok(())
}

/// Writes the context's book to the ConfigMap (created on first use).
pub async fn save(ctx: &Context) -> Result<()> {
    let now = ctx.clock.now();
    let json = ctx.with_rates(|book| {
        book.prune(now);
        book.to_json()
    });
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    let patch = serde_json::json!({"data": {DATA_KEY: json}});
    match api
        .patch(CONFIGMAP, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => {
            let cm = ConfigMap {
                metadata: kube::api::ObjectMeta {
                    name: Some(CONFIGMAP.to_string()),
                    namespace: Some(ctx.settings.namespace.clone()),
                    labels: Some(
                        [(
                            "app.kubernetes.io/managed-by".to_string(),
                            "stowage".to_string(),
                        )]
                        .into(),
                    ),
                    ..Default::default()
                },
                data: Some([(DATA_KEY.to_string(), json)].into()),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &cm).await {
                Ok(_) => Ok(()),
                // Another writer created it in between: the next save patches it.
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(Error::kube("create configmap", CONFIGMAP)(e)),
            }
        }
        Err(e) => Err(Error::kube("patch configmap", CONFIGMAP)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn rates_are_interruptions_per_node_hour_and_halve_every_half_life() {
        let mut book = RateBook::new(Duration::from_secs(6 * 3600));
        assert_eq!(book.rate("m5.large", "a", t(0)), 0.0);
        book.add_node_hours("m5.large", "a", 9.0, t(0));
        book.record_interruption("m5.large", "a", t(0));
        book.record_interruption("m5.large", "a", t(0));
        // 2 interruptions over 9 node-hours (+1 prior).
        assert!((book.rate("m5.large", "a", t(0)) - 0.2).abs() < 1e-9);
        // Both counts decay alike: the ratio of the decayed counts, prior aside.
        let later = book.rate("m5.large", "a", t(6 * 3600));
        assert!((later - 1.0 / 5.5).abs() < 1e-9, "{later}");
        // Another pool is untouched.
        assert_eq!(book.rate("m5.large", "b", t(0)), 0.0);
        assert_eq!(book.rates(t(0)).len(), 1);
    }

    #[test]
    fn a_hot_pool_rates_above_a_calm_one_and_the_storm_is_forgotten() {
        let mut book = RateBook::new(Duration::from_secs(6 * 3600));
        for h in 0..24 {
            let now = t(h * 3600);
            book.add_node_hours("hot", "a", 10.0, now);
            book.add_node_hours("calm", "a", 10.0, now);
            book.record_interruption("hot", "a", now);
            book.record_interruption("hot", "a", now);
            if h % 12 == 0 {
                book.record_interruption("calm", "a", now);
            }
        }
        let now = t(24 * 3600);
        let (hot, calm) = (book.rate("hot", "a", now), book.rate("calm", "a", now));
        assert!(hot > 0.15 && calm < 0.02, "hot {hot} calm {calm}");
        // Five days without interruptions: the storm is gone.
        let quiet = t(24 * 3600 + 5 * 24 * 3600);
        assert!(book.rate("hot", "a", quiet) < 0.01);
        book.prune(quiet);
        assert!(book.is_empty());
    }

    #[test]
    fn the_book_round_trips_through_its_json_and_newer_records_win() {
        let mut book = RateBook::new(Duration::from_secs(3600));
        book.add_node_hours("m5.large", "a", 4.0, t(0));
        book.record_interruption("m5.large", "a", t(0));
        let json = book.to_json();
        let mut restored = RateBook::new(Duration::from_secs(3600));
        restored.merge_json(&json).unwrap();
        assert_eq!(restored, book);
        // A record this replica updated later is kept over the stored one.
        restored.record_interruption("m5.large", "a", t(60));
        let mine = restored.rate("m5.large", "a", t(60));
        restored.merge_json(&json).unwrap();
        assert_eq!(restored.rate("m5.large", "a", t(60)), mine);
        assert!(restored.merge_json("{").is_err());
    }
}
