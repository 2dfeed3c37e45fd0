//! The instance types a node class can launch: the region's catalogue (DescribeInstanceTypes and
//! offerings, re-read every `catalog_refresh`) and prices (on-demand and spot, refreshed on their
//! own schedules), shared by every provider of one region and account, built into solver
//! instance types per node class (its zones, kubelet settings and images) and cached until an
//! input changes; availability comes from the insufficient-capacity cache on every read.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use stowage_api::EC2NodeClass;
use stowage_api::quantity::parse_resource;
use stowage_cloud::{Error as CloudError, Result};
use stowage_solver::{InstanceType, Resources};
use tracing::warn;

use super::{AwsCloudProvider, ClassEntry, Error, lock};
use crate::catalog::{self, CatalogSettings, Fetched};
use crate::errors::error_chain;
use crate::pricing::Pricing;

/// A catalogue and when it was read.
type FetchedAt = (Timestamp, Arc<Fetched>);

/// What built instance types depend on: equal inputs, equal types.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct BuildInputs {
    catalog_at: Timestamp,
    prices_at: (Option<Timestamp>, Option<Timestamp>),
    class_hash: String,
    generation: Option<i64>,
}

pub(super) type BuiltTypes = (BuildInputs, Arc<Vec<InstanceType>>);

fn since(now: Timestamp, then: Option<Timestamp>, every: std::time::Duration) -> bool {
    let every = SignedDuration::try_from(every).unwrap_or(SignedDuration::MAX);
    then.is_none_or(|t| now.duration_since(t) >= every)
}

/// The region's instance-type catalogue and prices with their refresh times: what every provider
/// of one region and account reads alike, so several providers (the tests' one per emulated
/// account) can share one copy instead of each reading and parsing it.
#[derive(Clone)]
pub struct SharedCatalog {
    catalog: Arc<tokio::sync::Mutex<Option<FetchedAt>>>,
    pricing: Arc<Pricing>,
    prices_at: Arc<tokio::sync::Mutex<(Option<Timestamp>, Option<Timestamp>)>>,
}

impl std::fmt::Debug for SharedCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCatalog")
            .field("region", &self.pricing.region())
            .finish()
    }
}

impl SharedCatalog {
    /// An empty catalogue for `region`; prices start from the embedded on-demand table.
    pub fn new(region: &str) -> Result<Self, Error> {
        Ok(Self {
            catalog: Arc::new(tokio::sync::Mutex::new(None)),
            pricing: Arc::new(Pricing::new(region).map_err(Error::LoadPrices)?),
            prices_at: Arc::new(tokio::sync::Mutex::new((None, None))),
        })
    }
}

impl AwsCloudProvider {
    /// The instance types and offerings (cached; refreshed after `catalog_refresh`), and when
    /// they were read.
    pub(super) async fn catalog(&self) -> Result<(Timestamp, Arc<Fetched>)> {
        let i = &self.inner;
        let mut guard = i.shared.catalog.lock().await;
        let now = i.clock.now();
        if let Some((at, fetched)) = guard.as_ref()
            && !since(now, Some(*at), i.settings.catalog_refresh)
        {
            return Ok((*at, Arc::clone(fetched)));
        }
        match catalog::fetch(&*i.ec2).await {
            Ok(fetched) => {
                let fetched = Arc::new(fetched);
                *guard = Some((now, Arc::clone(&fetched)));
                Ok((now, fetched))
            }
            // A failed refresh keeps serving the previous catalogue.
            Err(e) => match guard.as_ref() {
                Some((at, fetched)) => {
                    warn!(error = %error_chain(&e), "instance type refresh failed; keeping the previous catalogue");
                    Ok((*at, Arc::clone(fetched)))
                }
                None => Err(CloudError::Api {
                    operation: "DescribeInstanceTypes",
                    message: error_chain(&e),
                }),
            },
        }
    }

    /// Refreshes prices when due (callers wait for a refresh in flight); failures keep the
    /// previous (or embedded) prices. Returns when the current prices were last refreshed.
    async fn refresh_prices(&self) -> (Option<Timestamp>, Option<Timestamp>) {
        let i = &self.inner;
        let mut at = i.shared.prices_at.lock().await;
        let now = i.clock.now();
        if since(now, at.0, i.settings.on_demand_price_refresh) {
            at.0 = Some(now);
            if let Err(e) = i.shared.pricing.refresh_on_demand(&*i.pricing_api).await {
                warn!(error = %error_chain(&e), "on-demand price refresh failed; keeping the previous prices");
            }
        }
        if since(now, at.1, i.settings.spot_price_refresh) {
            at.1 = Some(now);
            let start = aws_smithy_types::DateTime::from_secs(now.as_second() - 3600);
            if let Err(e) = i.shared.pricing.refresh_spot(&*i.ec2, Some(start)).await {
                warn!(error = %error_chain(&e), "spot price refresh failed; keeping the previous prices");
            }
        }
        *at
    }

    fn catalog_settings(&self, class: &EC2NodeClass) -> CatalogSettings {
        let mut s = CatalogSettings {
            vm_memory_overhead_percent: self.inner.settings.vm_memory_overhead_percent,
            ..CatalogSettings::default()
        };
        let Some(k) = &class.spec.kubelet else {
            return s;
        };
        s.max_pods = k.max_pods.and_then(|v| u32::try_from(v).ok());
        s.pods_per_core = k.pods_per_core.and_then(|v| u32::try_from(v).ok());
        let parse = |m: &BTreeMap<String, String>| {
            let mut r = Resources::new();
            for (name, value) in m {
                if let Ok(v) = parse_resource(name, value) {
                    r.set(name.clone(), v);
                }
            }
            r
        };
        s.kube_reserved = parse(&k.kube_reserved);
        s.system_reserved = parse(&k.system_reserved);
        let mut eviction = Resources::new();
        for (signal, value) in &k.eviction_hard {
            let name = match signal.as_str() {
                "memory.available" => "memory",
                "nodefs.available" => "ephemeral-storage",
                _ => continue,
            };
            if let Ok(v) = parse_resource(name, value) {
                eviction.set(name, v);
            }
        }
        s.eviction_hard = eviction;
        s
    }

    /// The instance types a node class can launch: offerings limited to its zones, availability
    /// from the unavailable cache, types without a matching AMI left out.
    pub(super) async fn types_for(&self, entry: &ClassEntry) -> Result<Vec<InstanceType>> {
        let built = self.built_types(entry).await?;
        let mut types = Vec::clone(&built);
        for t in &mut types {
            for o in &mut t.offerings {
                if self
                    .inner
                    .unavailable
                    .is_unavailable(&t.name, &o.zone, o.capacity_type)
                {
                    o.available = false;
                }
            }
        }
        Ok(types)
    }

    /// The class's instance types before availability is applied (built once per catalogue,
    /// price and class version, shared without copying).
    pub(super) async fn built_types(&self, entry: &ClassEntry) -> Result<Arc<Vec<InstanceType>>> {
        let (catalog_at, fetched) = self.catalog().await?;
        let prices_at = self.refresh_prices().await;
        let inputs = BuildInputs {
            catalog_at,
            prices_at,
            class_hash: entry.hash.clone(),
            generation: entry.class.metadata.generation,
        };
        let cached = lock(&self.inner.built)
            .get(&entry.resolved.name)
            .filter(|(i, _)| *i == inputs)
            .map(|(_, types)| Arc::clone(types));
        let built = match cached {
            Some(types) => types,
            None => {
                let zones = entry.resolved.zones();
                let offered: BTreeMap<String, BTreeSet<String>> = fetched
                    .offerings
                    .iter()
                    .map(|(t, z)| {
                        (
                            t.clone(),
                            z.intersection(&zones).cloned().collect::<BTreeSet<_>>(),
                        )
                    })
                    .filter(|(_, z)| !z.is_empty())
                    .collect();
                let settings = self.catalog_settings(&entry.class);
                let mut types = catalog::build(
                    &fetched.records,
                    &offered,
                    &self.inner.settings.region,
                    &*self.inner.shared.pricing,
                    &settings,
                );
                types.retain(|t| entry.resolved.ami_for(&t.labels).is_some());
                let types = Arc::new(types);
                lock(&self.inner.built)
                    .insert(entry.resolved.name.clone(), (inputs, Arc::clone(&types)));
                types
            }
        };
        Ok(built)
    }
}
