//! `AwsCloudProvider`: `stowage_cloud::CloudProvider` over EC2.
//!
//! Flow of `create`: the claim's node class (resolved by [`AwsCloudProvider::resolve_node_class`])
//! gives subnets, security groups and AMIs; the catalogue (instance types x offerings in the class's
//! zones, priced, minus offerings in the unavailable cache) is filtered by the claim's requirements
//! and resource requests; the capacity type is spot when any spot offering fits, else on-demand; the
//! cheapest types are grouped by launch template (AMI + user data with the type's reserved
//! resources); identical launches arriving together become one CreateFleet (`Type=instant`,
//! overrides = types x the subnet with the most free addresses per zone). The ClientToken is
//! derived from the NodeClaim's name and uid, and an instance already tagged with the claim is
//! returned instead of launching again, so a retried create never buys twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use aws_sdk_ec2::types as ec2t;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};
use stowage_api::quantity::{format_resource, parse_resource};
use stowage_api::{
    AmiFamily, BlockDevice, BlockDeviceMapping, CapacityType, EC2NodeClass, EC2NodeClassStatus,
    NodeClaim, NodeClaimSpec, NodeClaimStatus, NodePool, labels,
};
use stowage_cloud::{
    CloudProvider, DriftReason, Error as CloudError, OfferingKey, Result, SharedClock,
};
use stowage_solver::{InstanceType, Resources};
use tracing::{debug, warn};

use crate::catalog::{self, CatalogSettings, Fetched};
use crate::coalescer::{CoalescedCallDropped, Coalescer};
use crate::discovery::{self, ResolvedNodeClass};
use crate::errors::{self, ErrorClass, classify, classify_code};
use crate::instance::{self, InstanceView};
use crate::launch_template::{LaunchTemplateSpec, LaunchTemplates, tag};
use crate::matching::requirements_match_keys;
use crate::pricing::Pricing;
use crate::sdk::{Clients, CreateFleetRequest, Ec2Api, PricingApi, SsmApi};
use crate::settings::ProviderSettings;
use crate::unavailable::UnavailableOfferings;
use crate::userdata::{self, NodeBootstrap};

/// EC2 tag naming the cluster for EKS.
pub const EKS_CLUSTER_TAG: &str = "eks:eks-cluster-name";
/// At most this many launch-template configs go into one CreateFleet call (the API's limit).
const MAX_LAUNCH_TEMPLATE_CONFIGS: usize = 50;
const LIVE_STATES: &[&str] = &["pending", "running", "stopping", "stopped"];

/// The `kubernetes.io/cluster/<name>` tag key.
pub fn cluster_tag(cluster: &str) -> String {
    format!("kubernetes.io/cluster/{cluster}")
}

/// The ClientToken of a NodeClaim's launch: stable across retries of the same claim object.
pub fn client_token(claim: &NodeClaim) -> String {
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    let uid = claim.metadata.uid.as_deref().unwrap_or_default();
    let digest = Sha256::digest(format!("{name}/{uid}").as_bytes());
    format!("stowage-{}", hex::encode(&digest[..24]))
}

/// A catalogue and when it was read.
type FetchedAt = (Timestamp, Arc<Fetched>);

type BuiltTypes = (BuildInputs, Arc<Vec<InstanceType>>);

#[derive(Clone, Debug, PartialEq)]
struct BuildInputs {
    catalog_at: Timestamp,
    prices_at: (Option<Timestamp>, Option<Timestamp>),
    class_hash: String,
    generation: Option<i64>,
}

struct ClassEntry {
    class: EC2NodeClass,
    resolved: ResolvedNodeClass,
    hash: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Override {
    instance_type: String,
    subnet_id: String,
    zone: String,
}

/// Everything of a launch except the claim it is for: equal keys are coalesced.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct FleetKey {
    capacity_type: CapacityType,
    configs: Vec<(String, Vec<Override>)>,
    tags: Vec<(String, String)>,
}

struct ClaimRef {
    name: String,
    token: String,
}

#[derive(Clone, Debug)]
struct Launched {
    id: String,
    instance_type: String,
    zone: String,
    capacity_type: CapacityType,
}

type LaunchResult = std::result::Result<Launched, CloudError>;
type DescribeResult = std::result::Result<Option<InstanceView>, CloudError>;
type TerminateResult = std::result::Result<(), CloudError>;

struct Inner {
    ec2: Arc<dyn Ec2Api>,
    ssm: Arc<dyn SsmApi>,
    pricing_api: Arc<dyn PricingApi>,
    settings: ProviderSettings,
    clock: SharedClock,
    unavailable: Arc<UnavailableOfferings>,
    shared: SharedCatalog,
    /// Built instance types per node class, with the inputs they were built from.
    built: Mutex<HashMap<String, BuiltTypes>>,
    classes: RwLock<BTreeMap<String, Arc<ClassEntry>>>,
    templates: LaunchTemplates,
    fleet: Coalescer<FleetKey, ClaimRef, LaunchResult>,
    describe: Coalescer<(), String, DescribeResult>,
    /// Live instances by NodeClaim name (the create-idempotency lookup), batched.
    lookup: Coalescer<(), String, DescribeResult>,
    terminate: Coalescer<(), String, TerminateResult>,
}

/// The AWS cloud provider.
#[derive(Clone)]
pub struct AwsCloudProvider {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AwsCloudProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCloudProvider")
            .field("cluster", &self.inner.settings.cluster.name)
            .finish()
    }
}

/// Errors the provider cannot express as a cloud error at construction.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to load the embedded prices")]
    LoadPrices(#[source] crate::pricing::Error),
}

fn dropped(operation: &'static str, _: CoalescedCallDropped) -> CloudError {
    CloudError::Api {
        operation,
        message: "batched call ended without a result".to_string(),
    }
}

fn since(now: Timestamp, then: Option<Timestamp>, every: std::time::Duration) -> bool {
    let every = SignedDuration::try_from(every).unwrap_or(SignedDuration::MAX);
    then.is_none_or(|t| now.duration_since(t) >= every)
}

fn quantities(r: &Resources) -> BTreeMap<String, Quantity> {
    r.0.iter()
        .map(|(k, v)| (k.clone(), Quantity(format_resource(k, *v))))
        .collect()
}

fn is_well_known(key: &str) -> bool {
    key != labels::NODEPOOL && labels::WELL_KNOWN.contains(&key)
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
    /// A provider over `clients`. Prices start from the embedded on-demand table.
    pub fn new(
        clients: &Clients,
        settings: ProviderSettings,
        clock: SharedClock,
    ) -> Result<Self, Error> {
        let shared = SharedCatalog::new(&settings.region)?;
        Ok(Self::with_catalog(clients, settings, clock, shared))
    }

    /// A provider reading the catalogue and prices through `shared` (same region and account).
    pub fn with_catalog(
        clients: &Clients,
        settings: ProviderSettings,
        clock: SharedClock,
        shared: SharedCatalog,
    ) -> Self {
        let unavailable = Arc::new(UnavailableOfferings::new(
            Arc::clone(&clock),
            settings.unavailable_offerings_ttl,
        ));
        let ec2 = Arc::clone(&clients.ec2);
        let fleet = {
            let ec2 = Arc::clone(&ec2);
            let unavailable = Arc::clone(&unavailable);
            Coalescer::new(
                settings.launch_coalescing,
                move |key: FleetKey, claims: Vec<ClaimRef>| {
                    launch_batch(Arc::clone(&ec2), Arc::clone(&unavailable), key, claims)
                },
            )
        };
        let describe = {
            let ec2 = Arc::clone(&ec2);
            Coalescer::new(
                settings.describe_coalescing,
                move |_: (), ids: Vec<String>| describe_batch(Arc::clone(&ec2), ids),
            )
        };
        let terminate = {
            let ec2 = Arc::clone(&ec2);
            Coalescer::new(
                settings.terminate_coalescing,
                move |_: (), ids: Vec<String>| terminate_batch(Arc::clone(&ec2), ids),
            )
        };
        let lookup = {
            let ec2 = Arc::clone(&ec2);
            let cluster = settings.cluster.name.clone();
            Coalescer::new(
                settings.describe_coalescing,
                move |_: (), names: Vec<String>| {
                    lookup_batch(Arc::clone(&ec2), cluster.clone(), names)
                },
            )
        };
        let templates = LaunchTemplates::new(Arc::clone(&ec2), &settings.cluster.name);
        Self {
            inner: Arc::new(Inner {
                ec2,
                ssm: Arc::clone(&clients.ssm),
                pricing_api: Arc::clone(&clients.pricing),
                settings,
                clock,
                unavailable,
                shared,
                built: Mutex::new(HashMap::new()),
                classes: RwLock::new(BTreeMap::new()),
                templates,
                fleet,
                describe,
                lookup,
                terminate,
            }),
        }
    }

    /// Resolves the node class's selectors, remembers the result for launches, and returns the
    /// status to write back (Ready is False with a reason when something did not resolve).
    pub async fn resolve_node_class(&self, class: &EC2NodeClass) -> Result<EC2NodeClassStatus> {
        let i = &self.inner;
        let resolved = discovery::resolve(&*i.ec2, &*i.ssm, class, &i.settings.kubernetes_version)
            .await
            .map_err(|e| CloudError::Api {
                operation: "ResolveNodeClass",
                message: error_chain(&e),
            })?;
        let status = resolved.status(class.metadata.generation);
        let name = class.metadata.name.clone().unwrap_or_default();
        let hash = resolved.hash();
        let entry = Arc::new(ClassEntry {
            class: class.clone(),
            resolved,
            hash: hash.clone(),
        });
        let previous = write(&i.classes).insert(name.clone(), entry);
        // The class now resolves differently: templates made for the old resolution are stale.
        if previous.is_some_and(|p| p.hash != hash) {
            match i.templates.delete_outdated(&name, &hash).await {
                Ok(deleted) if !deleted.is_empty() => {
                    debug!(class = %name, ?deleted, "deleted outdated launch templates");
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(class = %name, error = %e, "failed to delete outdated launch templates")
                }
            }
        }
        Ok(status)
    }

    /// Forgets a deleted node class.
    pub fn remove_node_class(&self, name: &str) {
        write(&self.inner.classes).remove(name);
    }

    /// Deletes this cluster's launch templates that no known node class would use any more.
    pub async fn delete_stale_launch_templates(&self) -> Result<Vec<String>> {
        let live: BTreeMap<String, String> = read(&self.inner.classes)
            .iter()
            .map(|(k, v)| (k.clone(), v.hash.clone()))
            .collect();
        self.inner
            .templates
            .delete_stale(&live)
            .await
            .map_err(errors::to_cloud)
    }

    /// The cluster's launch templates: name -> (node class, node class hash).
    pub async fn launch_templates(&self) -> Result<BTreeMap<String, (String, String)>> {
        self.inner.templates.list().await.map_err(errors::to_cloud)
    }

    /// Offerings currently cached unavailable.
    pub fn unavailable_offerings(&self) -> Vec<OfferingKey> {
        self.inner.unavailable.current()
    }

    fn class(&self, name: &str) -> Result<Arc<ClassEntry>> {
        read(&self.inner.classes)
            .get(name)
            .cloned()
            .ok_or_else(|| CloudError::NodeClassNotReady {
                reason: format!("EC2NodeClass {name} has not been resolved"),
            })
    }

    /// The instance types and offerings (cached; refreshed after `catalog_refresh`), and when
    /// they were read.
    async fn catalog(&self) -> Result<(Timestamp, Arc<Fetched>)> {
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
    async fn types_for(&self, entry: &ClassEntry) -> Result<Vec<InstanceType>> {
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
    async fn built_types(&self, entry: &ClassEntry) -> Result<Arc<Vec<InstanceType>>> {
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

    fn instance_tags(&self, entry: &ClassEntry, pool: Option<&str>) -> BTreeMap<String, String> {
        let s = &self.inner.settings;
        let mut tags = s.tags.clone();
        tags.extend(entry.class.spec.tags.clone());
        tags.insert(EKS_CLUSTER_TAG.to_string(), s.cluster.name.clone());
        tags.insert(cluster_tag(&s.cluster.name), "owned".to_string());
        tags.insert(
            labels::EC2NODECLASS.to_string(),
            entry.resolved.name.clone(),
        );
        if let Some(pool) = pool {
            tags.insert(labels::NODEPOOL.to_string(), pool.to_string());
        }
        tags
    }

    fn default_block_devices(family: AmiFamily) -> Vec<BlockDeviceMapping> {
        let volume = |device: &str, size: &str, root: bool| BlockDeviceMapping {
            device_name: Some(device.to_string()),
            root_volume: root,
            ebs: Some(BlockDevice {
                delete_on_termination: Some(true),
                encrypted: Some(true),
                volume_size: Some(Quantity(size.to_string())),
                volume_type: Some("gp3".to_string()),
                ..BlockDevice::default()
            }),
        };
        match family {
            AmiFamily::Bottlerocket => vec![
                volume("/dev/xvda", "4Gi", false),
                volume("/dev/xvdb", "20Gi", true),
            ],
            _ => vec![volume("/dev/xvda", "20Gi", true)],
        }
    }

    /// The claim's live instance, found by its NodeClaim tag.
    async fn find_claim_instance(&self, name: &str) -> Result<Option<InstanceView>> {
        self.inner
            .lookup
            .call((), name.to_string())
            .await
            .map_err(|e| dropped("DescribeInstances", e))?
    }

    async fn describe(&self, id: &str) -> Result<Option<InstanceView>> {
        self.inner
            .describe
            .call((), id.to_string())
            .await
            .map_err(|e| dropped("DescribeInstances", e))?
    }

    /// The NodeClaim view of an instance (capacity from the catalogue when the class is known).
    async fn claim_from_instance(
        &self,
        view: &InstanceView,
        base: Option<&NodeClaim>,
    ) -> NodeClaim {
        let class = view
            .tags
            .get(labels::EC2NODECLASS)
            .and_then(|c| self.class(c).ok());
        let it = match &class {
            Some(entry) => match self.built_types(entry).await {
                Ok(types) => types.iter().find(|t| t.name == view.instance_type).cloned(),
                Err(_) => None,
            },
            None => None,
        };
        let mut claim = base.cloned().unwrap_or_else(|| {
            let name = view
                .tags
                .get(labels::NODECLAIM)
                .cloned()
                .unwrap_or_else(|| view.id.clone());
            NodeClaim {
                metadata: ObjectMeta {
                    name: Some(name),
                    ..ObjectMeta::default()
                },
                spec: NodeClaimSpec {
                    node_class_ref: stowage_api::NodeClassRef::ec2(
                        view.tags
                            .get(labels::EC2NODECLASS)
                            .map(String::as_str)
                            .unwrap_or_default(),
                    ),
                    ..NodeClaimSpec::default()
                },
                status: None,
            }
        });
        let mut l = claim.metadata.labels.take().unwrap_or_default();
        if let Some(t) = &it {
            l.extend(t.labels.clone());
        }
        l.insert(
            labels::INSTANCE_TYPE.to_string(),
            view.instance_type.clone(),
        );
        l.insert(labels::ZONE.to_string(), view.zone.clone());
        l.insert(
            labels::CAPACITY_TYPE.to_string(),
            view.capacity_type.as_str().to_string(),
        );
        if let Some(pool) = view.tags.get(labels::NODEPOOL) {
            l.insert(labels::NODEPOOL.to_string(), pool.clone());
        }
        claim.metadata.labels = Some(l);
        let status = claim.status.get_or_insert_with(NodeClaimStatus::default);
        status.provider_id = Some(view.provider_id());
        status.image_id = view.image_id.clone();
        if let Some(t) = &it {
            status.capacity = quantities(&t.capacity);
            status.allocatable = quantities(&t.allocatable());
        }
        claim
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    match l.read() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    match l.write() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn lock<T>(l: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match l.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// The ClientToken of one CreateFleet: the claims' tokens and the request itself, so a retry of
/// the same request is idempotent while a changed request (other offerings after an
/// insufficient-capacity answer) is a new one.
fn fleet_token(claims: &[ClaimRef], key: &FleetKey) -> String {
    let mut tokens: Vec<&str> = claims.iter().map(|c| c.token.as_str()).collect();
    tokens.sort_unstable();
    let digest = Sha256::digest(format!("{}|{key:?}", tokens.join(",")).as_bytes());
    format!("stowage-{}", hex::encode(&digest[..24]))
}

/// One CreateFleet for every claim in the batch; instances are handed out in claim order.
async fn launch_batch(
    ec2: Arc<dyn Ec2Api>,
    unavailable: Arc<UnavailableOfferings>,
    key: FleetKey,
    claims: Vec<ClaimRef>,
) -> Vec<LaunchResult> {
    let n = claims.len();
    let spot = key.capacity_type == CapacityType::Spot;
    let mut tags: Vec<ec2t::Tag> = key.tags.iter().map(|(k, v)| tag(k, v)).collect();
    let single = match claims.as_slice() {
        [only] => Some(only),
        _ => None,
    };
    if let Some(c) = single {
        tags.push(tag(labels::NODECLAIM, &c.name));
        tags.push(tag("Name", &c.name));
    }
    let tag_specifications = [
        ec2t::ResourceType::Instance,
        ec2t::ResourceType::Volume,
        ec2t::ResourceType::Fleet,
    ]
    .into_iter()
    .map(|rt| {
        ec2t::TagSpecification::builder()
            .resource_type(rt)
            .set_tags(Some(tags.clone()))
            .build()
    })
    .collect();
    let configs = key
        .configs
        .iter()
        .map(|(lt, overrides)| {
            ec2t::FleetLaunchTemplateConfigRequest::builder()
                .launch_template_specification(
                    ec2t::FleetLaunchTemplateSpecificationRequest::builder()
                        .launch_template_name(lt)
                        .version("$Latest")
                        .build(),
                )
                .set_overrides(Some(
                    overrides
                        .iter()
                        .map(|o| {
                            ec2t::FleetLaunchTemplateOverridesRequest::builder()
                                .instance_type(ec2t::InstanceType::from(o.instance_type.as_str()))
                                .subnet_id(&o.subnet_id)
                                .build()
                        })
                        .collect(),
                ))
                .build()
        })
        .collect();
    let request = CreateFleetRequest {
        client_token: Some(fleet_token(&claims, &key)),
        launch_template_configs: configs,
        target_capacity: Some(
            ec2t::TargetCapacitySpecificationRequest::builder()
                .total_target_capacity(i32::try_from(n).unwrap_or(i32::MAX))
                .default_target_capacity_type(if spot {
                    ec2t::DefaultTargetCapacityType::Spot
                } else {
                    ec2t::DefaultTargetCapacityType::OnDemand
                })
                .build(),
        ),
        spot_options: spot.then(|| {
            ec2t::SpotOptionsRequest::builder()
                .allocation_strategy(ec2t::SpotAllocationStrategy::PriceCapacityOptimized)
                .build()
        }),
        on_demand_options: (!spot).then(|| {
            ec2t::OnDemandOptionsRequest::builder()
                .allocation_strategy(ec2t::FleetOnDemandAllocationStrategy::LowestPrice)
                .build()
        }),
        tag_specifications,
    };
    let response = match ec2.create_fleet(request).await {
        Ok(r) => r,
        Err(e) => {
            let err = errors::launch_to_cloud(e);
            return claims.iter().map(|_| Err(err.clone())).collect();
        }
    };
    let zone_of: HashMap<&str, &str> = key
        .configs
        .iter()
        .flat_map(|(_, o)| o.iter().map(|o| (o.subnet_id.as_str(), o.zone.as_str())))
        .collect();
    let lifecycle = |l: Option<&ec2t::InstanceLifecycle>| match l {
        Some(ec2t::InstanceLifecycle::Spot) => CapacityType::Spot,
        Some(ec2t::InstanceLifecycle::OnDemand) => CapacityType::OnDemand,
        _ => key.capacity_type,
    };
    let mut ice: Vec<OfferingKey> = Vec::new();
    let mut other: Option<(String, String)> = None;
    for err in &response.errors {
        let code = err.error_code().unwrap_or_default();
        let o = err
            .launch_template_and_overrides()
            .and_then(|l| l.overrides());
        let itype = o
            .and_then(|o| o.instance_type())
            .map(|t| t.as_str().to_string());
        let zone = o
            .and_then(|o| {
                o.subnet_id()
                    .and_then(|s| zone_of.get(s).map(|z| z.to_string()))
            })
            .or_else(|| o.and_then(|o| o.availability_zone()).map(str::to_string));
        if classify_code(code) == ErrorClass::InsufficientCapacity {
            if let (Some(instance_type), Some(zone)) = (itype, zone) {
                let k = OfferingKey {
                    instance_type,
                    zone,
                    capacity_type: lifecycle(err.lifecycle()),
                };
                unavailable.mark(k.clone());
                ice.push(k);
            }
        } else if other.is_none() {
            other = Some((
                code.to_string(),
                err.error_message().unwrap_or_default().to_string(),
            ));
        }
    }
    ice.sort();
    ice.dedup();
    let mut launched: Vec<Launched> = Vec::new();
    for inst in &response.instances {
        let o = inst
            .launch_template_and_overrides()
            .and_then(|l| l.overrides());
        let zone = o
            .and_then(|o| o.subnet_id())
            .and_then(|s| zone_of.get(s))
            .map(|z| z.to_string())
            .unwrap_or_default();
        let instance_type = inst
            .instance_type()
            .or_else(|| o.and_then(|o| o.instance_type()))
            .map(|t| t.as_str().to_string())
            .unwrap_or_default();
        for id in inst.instance_ids() {
            launched.push(Launched {
                id: id.clone(),
                instance_type: instance_type.clone(),
                zone: zone.clone(),
                capacity_type: lifecycle(inst.lifecycle()),
            });
        }
    }
    debug!(
        requested = n,
        launched = launched.len(),
        errors = response.errors.len(),
        "create fleet"
    );
    let mut out = Vec::with_capacity(n);
    let mut instances = launched.into_iter();
    for claim in &claims {
        match instances.next() {
            Some(l) => {
                if single.is_none() {
                    let tags = vec![
                        tag(labels::NODECLAIM, &claim.name),
                        tag("Name", &claim.name),
                    ];
                    if let Err(e) = ec2.create_tags(vec![l.id.clone()], tags).await {
                        warn!(instance = %l.id, error = %e, "failed to tag instance with its nodeclaim");
                    }
                }
                out.push(Ok(l));
            }
            None => out.push(Err(match &other {
                Some((code, message)) if ice.is_empty() => CloudError::Launch {
                    code: code.clone(),
                    message: message.clone(),
                },
                _ if !ice.is_empty() => CloudError::InsufficientCapacity {
                    offerings: ice.clone(),
                },
                _ => CloudError::InsufficientCapacity {
                    offerings: key
                        .configs
                        .iter()
                        .flat_map(|(_, o)| o.iter())
                        .map(|o| OfferingKey {
                            instance_type: o.instance_type.clone(),
                            zone: o.zone.clone(),
                            capacity_type: key.capacity_type,
                        })
                        .collect(),
                },
            })),
        }
    }
    // More instances than claims would be leaked capacity nobody owns: give it back.
    let extra: Vec<String> = instances.map(|l| l.id).collect();
    if !extra.is_empty() {
        warn!(
            ?extra,
            "fleet returned more instances than claims; terminating the extra ones"
        );
        if let Err(e) = ec2.terminate_instances(extra).await {
            warn!(error = %e, "failed to terminate extra fleet instances");
        }
    }
    out
}

/// One DescribeInstances (by `instance-id` filter, so unknown ids are simply absent).
async fn describe_batch(ec2: Arc<dyn Ec2Api>, ids: Vec<String>) -> Vec<DescribeResult> {
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    let filter = ec2t::Filter::builder()
        .name("instance-id")
        .set_values(Some(unique.into_iter().collect()))
        .build();
    match ec2.describe_instances(Vec::new(), vec![filter]).await {
        Ok(found) => {
            let by_id: HashMap<String, InstanceView> = found
                .iter()
                .filter_map(InstanceView::from_sdk)
                .map(|v| (v.id.clone(), v))
                .collect();
            ids.iter().map(|id| Ok(by_id.get(id).cloned())).collect()
        }
        Err(e) => {
            let err = errors::to_cloud(e);
            ids.iter().map(|_| Err(err.clone())).collect()
        }
    }
}

/// One DescribeInstances for the live instances of many NodeClaims (tag filter values are ORed).
async fn lookup_batch(
    ec2: Arc<dyn Ec2Api>,
    cluster: String,
    names: Vec<String>,
) -> Vec<DescribeResult> {
    let unique: BTreeSet<String> = names.iter().cloned().collect();
    let filters = vec![
        ec2t::Filter::builder()
            .name(format!("tag:{}", labels::NODECLAIM))
            .set_values(Some(unique.into_iter().collect()))
            .build(),
        ec2t::Filter::builder()
            .name(format!("tag:{}", cluster_tag(&cluster)))
            .values("owned")
            .build(),
        ec2t::Filter::builder()
            .name("instance-state-name")
            .set_values(Some(LIVE_STATES.iter().map(|s| s.to_string()).collect()))
            .build(),
    ];
    match ec2.describe_instances(Vec::new(), filters).await {
        Ok(found) => {
            let mut by_claim: BTreeMap<String, InstanceView> = BTreeMap::new();
            let mut views: Vec<InstanceView> =
                found.iter().filter_map(InstanceView::from_sdk).collect();
            // Lowest instance id first, so the answer is the same on every call.
            views.sort_by(|a, b| a.id.cmp(&b.id));
            for v in views {
                if let Some(claim) = v.tags.get(labels::NODECLAIM).cloned() {
                    by_claim.entry(claim).or_insert(v);
                }
            }
            names.iter().map(|n| Ok(by_claim.get(n).cloned())).collect()
        }
        Err(e) => {
            let err = errors::to_cloud(e);
            names.iter().map(|_| Err(err.clone())).collect()
        }
    }
}

/// One TerminateInstances; if one id is unknown the call fails as a whole, so then each id is
/// retried alone to tell which are gone.
async fn terminate_batch(ec2: Arc<dyn Ec2Api>, ids: Vec<String>) -> Vec<TerminateResult> {
    let unique: Vec<String> = ids
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    match ec2.terminate_instances(unique.clone()).await {
        Ok(_) => ids.iter().map(|_| Ok(())).collect(),
        Err(e) if classify(&e) == ErrorClass::NotFound && unique.len() > 1 => {
            let mut each: HashMap<String, TerminateResult> = HashMap::new();
            for id in unique {
                let r = ec2
                    .terminate_instances(vec![id.clone()])
                    .await
                    .map(|_| ())
                    .map_err(errors::to_cloud);
                each.insert(id, r);
            }
            ids.iter()
                .map(|id| match each.get(id) {
                    Some(Ok(())) => Ok(()),
                    Some(Err(e)) => Err(e.clone()),
                    None => Err(CloudError::NotFound(id.clone())),
                })
                .collect()
        }
        Err(e) => {
            let err = errors::to_cloud(e);
            ids.iter().map(|_| Err(err.clone())).collect()
        }
    }
}

fn claim_requests(claim: &NodeClaim) -> Resources {
    let mut r = Resources::new();
    for (name, q) in &claim.spec.resources.requests {
        if let Ok(v) = parse_resource(name, &q.0) {
            r.set(name.clone(), v);
        }
    }
    r
}

#[async_trait]
impl CloudProvider for AwsCloudProvider {
    async fn create(&self, claim: &NodeClaim) -> Result<NodeClaim> {
        let name = claim.metadata.name.clone().unwrap_or_default();
        let entry = self.class(&claim.spec.node_class_ref.name)?;
        if let Some(reason) = &entry.resolved.not_ready {
            return Err(CloudError::NodeClassNotReady {
                reason: reason.clone(),
            });
        }
        if let Some(existing) = self.find_claim_instance(&name).await? {
            debug!(claim = %name, instance = %existing.id, "instance already launched for claim");
            return Ok(self.claim_from_instance(&existing, Some(claim)).await);
        }
        let types = self.types_for(&entry).await?;
        let requests = claim_requests(claim);
        let reqs = &claim.spec.requirements;
        let per_zone = entry.resolved.subnet_per_zone();
        // (type, offering) pairs the claim accepts.
        let mut matching: Vec<(&InstanceType, &stowage_solver::Offering)> = Vec::new();
        for t in &types {
            if !requests.fits_in(&t.allocatable()) {
                continue;
            }
            let keys = |k: &str| is_well_known(k) || t.labels.contains_key(k);
            for o in &t.offerings {
                if !per_zone.contains_key(&o.zone) || o.capacity_type == CapacityType::Reserved {
                    continue;
                }
                let mut l = t.labels.clone();
                l.insert(labels::ZONE.to_string(), o.zone.clone());
                l.insert(
                    labels::CAPACITY_TYPE.to_string(),
                    o.capacity_type.as_str().to_string(),
                );
                if requirements_match_keys(reqs, &l, &keys) {
                    matching.push((t, o));
                }
            }
        }
        let capacity_type = [CapacityType::Spot, CapacityType::OnDemand]
            .into_iter()
            .find(|ct| {
                matching
                    .iter()
                    .any(|(_, o)| o.available && o.capacity_type == *ct)
            });
        let Some(capacity_type) = capacity_type else {
            if matching.is_empty() {
                return Err(CloudError::Launch {
                    code: "NoCompatibleInstanceTypes".to_string(),
                    message: format!(
                        "no instance type of EC2NodeClass {} satisfies nodeclaim {name}",
                        entry.resolved.name
                    ),
                });
            }
            let mut offerings: Vec<OfferingKey> = matching
                .iter()
                .map(|(t, o)| OfferingKey {
                    instance_type: t.name.clone(),
                    zone: o.zone.clone(),
                    capacity_type: o.capacity_type,
                })
                .collect();
            offerings.sort();
            offerings.dedup();
            return Err(CloudError::InsufficientCapacity { offerings });
        };
        // Cheapest available price per type, then zones per type.
        let mut by_type: BTreeMap<&str, (f64, &InstanceType, BTreeSet<String>)> = BTreeMap::new();
        for (t, o) in matching
            .iter()
            .filter(|(_, o)| o.available && o.capacity_type == capacity_type)
        {
            let e = by_type
                .entry(t.name.as_str())
                .or_insert((f64::INFINITY, t, BTreeSet::new()));
            e.0 = e.0.min(o.price_per_hour);
            e.2.insert(o.zone.clone());
        }
        let mut ranked: Vec<(f64, &InstanceType, BTreeSet<String>)> =
            by_type.into_values().collect();
        ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
        ranked.truncate(self.inner.settings.max_instance_types.max(1));

        // Group the types by launch template.
        let class = &entry.class;
        let family = entry.resolved.family;
        let mut claim_labels = claim.metadata.labels.clone().unwrap_or_default();
        claim_labels.insert(
            labels::EC2NODECLASS.to_string(),
            entry.resolved.name.clone(),
        );
        let mut taints = claim.spec.taints.clone();
        taints.extend(claim.spec.startup_taints.clone());
        let base = NodeBootstrap {
            cluster: self.inner.settings.cluster.clone(),
            labels: claim_labels,
            taints,
            max_pods: None,
            cluster_dns: class
                .spec
                .kubelet
                .as_ref()
                .map(|k| k.cluster_dns.clone())
                .unwrap_or_default(),
            ..NodeBootstrap::default()
        };
        let mut security_group_ids: Vec<String> = entry
            .resolved
            .security_groups
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        security_group_ids.sort();
        let block_devices = if class.spec.block_device_mappings.is_empty() {
            Self::default_block_devices(family)
        } else {
            class.spec.block_device_mappings.clone()
        };
        let mut groups: Vec<(LaunchTemplateSpec, Vec<(&InstanceType, BTreeSet<String>)>)> =
            Vec::new();
        for (_, t, zones) in &ranked {
            let Some(ami) = entry.resolved.ami_for(&t.labels) else {
                continue;
            };
            let pods = t.capacity.pods();
            let bootstrap = NodeBootstrap {
                max_pods: (pods > 0).then_some(pods),
                ..base.clone()
            }
            .with_overhead(&t.overhead);
            let user_data = userdata::render(family, &bootstrap, class.spec.user_data.as_deref())
                .map_err(|e| CloudError::NodeClassNotReady {
                reason: format!("invalid userData: {e}"),
            })?;
            let spec = LaunchTemplateSpec {
                image_id: ami.id.clone(),
                security_group_ids: security_group_ids.clone(),
                user_data,
                instance_profile: entry.resolved.instance_profile.clone(),
                block_devices: block_devices.clone(),
                metadata: class.spec.metadata_options.clone(),
                associate_public_ip_address: class.spec.associate_public_ip_address,
                detailed_monitoring: class.spec.detailed_monitoring,
            };
            match groups.iter().position(|(s, _)| *s == spec) {
                Some(i) => groups[i].1.push((t, zones.clone())),
                None if groups.len() < MAX_LAUNCH_TEMPLATE_CONFIGS => {
                    groups.push((spec, vec![(t, zones.clone())]))
                }
                None => {}
            }
        }
        let mut configs = Vec::with_capacity(groups.len());
        let mut image_of: HashMap<String, String> = HashMap::new();
        for (spec, members) in &groups {
            let lt = self
                .inner
                .templates
                .ensure(spec, &entry.resolved.name, &entry.hash)
                .await
                .map_err(errors::launch_to_cloud)?;
            let mut overrides = Vec::new();
            for (t, zones) in members {
                image_of.insert(t.name.clone(), spec.image_id.clone());
                for zone in zones {
                    if let Some(subnet) = per_zone.get(zone) {
                        overrides.push(Override {
                            instance_type: t.name.clone(),
                            subnet_id: subnet.id.clone(),
                            zone: zone.clone(),
                        });
                    }
                }
            }
            configs.push((lt, overrides));
        }
        let tags = self
            .instance_tags(&entry, claim.nodepool_name())
            .into_iter()
            .collect();
        let key = FleetKey {
            capacity_type,
            configs,
            tags,
        };
        let launched = self
            .inner
            .fleet
            .call(
                key,
                ClaimRef {
                    name: name.clone(),
                    token: client_token(claim),
                },
            )
            .await
            .map_err(|e| dropped("CreateFleet", e))??;
        let view = InstanceView {
            id: launched.id.clone(),
            instance_type: launched.instance_type.clone(),
            zone: launched.zone.clone(),
            capacity_type: launched.capacity_type,
            state: "pending".to_string(),
            image_id: image_of.get(&launched.instance_type).cloned(),
            subnet_id: None,
            security_group_ids: Vec::new(),
            tags: self.instance_tags(&entry, claim.nodepool_name()),
        };
        Ok(self.claim_from_instance(&view, Some(claim)).await)
    }

    async fn delete(&self, claim: &NodeClaim) -> Result<()> {
        let name = claim.metadata.name.clone().unwrap_or_default();
        let view = match claim.provider_id().and_then(instance::instance_id) {
            Some(id) => self.describe(id).await?,
            None => self.find_claim_instance(&name).await?,
        };
        let Some(view) = view.filter(|v| !v.is_gone()) else {
            return Err(CloudError::NotFound(
                claim.provider_id().unwrap_or(&name).to_string(),
            ));
        };
        self.inner
            .terminate
            .call((), view.id.clone())
            .await
            .map_err(|e| dropped("TerminateInstances", e))?
    }

    async fn get(&self, provider_id: &str) -> Result<NodeClaim> {
        let id = instance::instance_id(provider_id).ok_or_else(|| {
            CloudError::NotFound(format!("{provider_id} is not an EC2 provider id"))
        })?;
        match self.describe(id).await? {
            Some(view) if !view.is_gone() => Ok(self.claim_from_instance(&view, None).await),
            _ => Err(CloudError::NotFound(provider_id.to_string())),
        }
    }

    async fn list(&self) -> Result<Vec<NodeClaim>> {
        let cluster = &self.inner.settings.cluster.name;
        let filters = vec![
            ec2t::Filter::builder()
                .name(format!("tag:{}", cluster_tag(cluster)))
                .values("owned")
                .build(),
            ec2t::Filter::builder()
                .name("tag-key")
                .values(labels::NODEPOOL)
                .build(),
            ec2t::Filter::builder()
                .name("instance-state-name")
                .set_values(Some(LIVE_STATES.iter().map(|s| s.to_string()).collect()))
                .build(),
        ];
        let found = self
            .inner
            .ec2
            .describe_instances(Vec::new(), filters)
            .await
            .map_err(errors::to_cloud)?;
        let mut views: Vec<InstanceView> =
            found.iter().filter_map(InstanceView::from_sdk).collect();
        views.sort_by(|a, b| a.id.cmp(&b.id));
        let mut out = Vec::with_capacity(views.len());
        for v in &views {
            out.push(self.claim_from_instance(v, None).await);
        }
        Ok(out)
    }

    async fn instance_types(&self, pool: &NodePool) -> Result<Vec<InstanceType>> {
        let entry = self.class(&pool.spec.template.spec.node_class_ref.name)?;
        self.types_for(&entry).await
    }

    async fn is_drifted(&self, claim: &NodeClaim) -> Result<Option<DriftReason>> {
        let id = claim
            .provider_id()
            .and_then(instance::instance_id)
            .ok_or_else(|| CloudError::NotFound(claim.metadata.name.clone().unwrap_or_default()))?;
        let view = match self.describe(id).await? {
            Some(v) if !v.is_gone() => v,
            _ => return Err(CloudError::NotFound(id.to_string())),
        };
        let entry = self.class(&claim.spec.node_class_ref.name)?;
        let r = &entry.resolved;
        if let Some(image) = &view.image_id
            && !r.amis.iter().any(|a| &a.id == image)
        {
            return Ok(Some(DriftReason::AmiDrift));
        }
        if let Some(subnet) = &view.subnet_id
            && !r.subnets.iter().any(|s| &s.id == subnet)
        {
            return Ok(Some(DriftReason::SubnetDrift));
        }
        let want: BTreeSet<&str> = r
            .security_groups
            .iter()
            .map(|(id, _)| id.as_str())
            .collect();
        let have: BTreeSet<&str> = view.security_group_ids.iter().map(String::as_str).collect();
        if !have.is_empty() && have != want {
            return Ok(Some(DriftReason::SecurityGroupDrift));
        }
        let (_, fetched) = self.catalog().await?;
        if !fetched.records.iter().any(|t| t.name == view.instance_type) {
            return Ok(Some(DriftReason::InstanceTypeNotFound));
        }
        Ok(None)
    }

    async fn node_class_status(&self, class: &EC2NodeClass) -> Result<EC2NodeClassStatus> {
        self.resolve_node_class(class).await
    }

    fn name(&self) -> &'static str {
        "aws"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_token_is_stable_per_claim_and_fits_the_api_limit() {
        let claim = |name: &str, uid: &str| NodeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            spec: NodeClaimSpec::default(),
            status: None,
        };
        let a = client_token(&claim("default-abc", "u1"));
        assert_eq!(a, client_token(&claim("default-abc", "u1")));
        assert_ne!(a, client_token(&claim("default-abc", "u2")));
        assert!(a.len() <= 64);
    }
}

#[cfg(test)]
mod launch_tests {
    use std::time::Duration;

    use async_trait::async_trait;
    use stowage_cloud::TokioClock;

    use super::*;
    use crate::sdk::{self, CreateFleetResponse};

    /// An EC2 whose CreateFleet answers with canned instances and errors, recording tags.
    #[derive(Debug, Default)]
    struct CannedFleet {
        response: CreateFleetResponse,
        tagged: Mutex<Vec<(String, String)>>,
        terminated: Mutex<Vec<String>>,
    }

    fn unused<T>(op: &'static str) -> sdk::Result<T> {
        Err(sdk::Error::Transport {
            operation: op,
            message: "not used by this test".into(),
        })
    }

    #[async_trait]
    impl Ec2Api for CannedFleet {
        async fn describe_instance_types(
            &self,
            _: Vec<ec2t::Filter>,
        ) -> sdk::Result<Vec<ec2t::InstanceTypeInfo>> {
            unused("DescribeInstanceTypes")
        }
        async fn describe_instance_type_offerings(
            &self,
            _: ec2t::LocationType,
            _: Vec<ec2t::Filter>,
        ) -> sdk::Result<Vec<ec2t::InstanceTypeOffering>> {
            unused("DescribeInstanceTypeOfferings")
        }
        async fn describe_spot_price_history(
            &self,
            _: Vec<String>,
            _: Option<aws_smithy_types::DateTime>,
            _: Vec<ec2t::Filter>,
        ) -> sdk::Result<Vec<ec2t::SpotPrice>> {
            unused("DescribeSpotPriceHistory")
        }
        async fn describe_subnets(
            &self,
            _: Vec<String>,
            _: Vec<ec2t::Filter>,
        ) -> sdk::Result<Vec<ec2t::Subnet>> {
            unused("DescribeSubnets")
        }
        async fn describe_security_groups(
            &self,
            _: Vec<String>,
            _: Vec<ec2t::Filter>,
        ) -> sdk::Result<Vec<ec2t::SecurityGroup>> {
            unused("DescribeSecurityGroups")
        }
        async fn describe_images(
            &self,
            _: Vec<String>,
            _: Vec<String>,
            _: Vec<ec2t::Filter>,
        ) -> sdk::Result<Vec<ec2t::Image>> {
            unused("DescribeImages")
        }
        async fn create_launch_template(
            &self,
            _: String,
            _: ec2t::RequestLaunchTemplateData,
            _: Vec<ec2t::TagSpecification>,
        ) -> sdk::Result<ec2t::LaunchTemplate> {
            unused("CreateLaunchTemplate")
        }
        async fn describe_launch_templates(
            &self,
            _: Vec<String>,
            _: Vec<ec2t::Filter>,
        ) -> sdk::Result<Vec<ec2t::LaunchTemplate>> {
            unused("DescribeLaunchTemplates")
        }
        async fn delete_launch_template(&self, _: String) -> sdk::Result<()> {
            unused("DeleteLaunchTemplate")
        }
        async fn create_fleet(&self, _: CreateFleetRequest) -> sdk::Result<CreateFleetResponse> {
            Ok(self.response.clone())
        }
        async fn describe_instances(
            &self,
            _: Vec<String>,
            _: Vec<ec2t::Filter>,
        ) -> sdk::Result<Vec<ec2t::Instance>> {
            unused("DescribeInstances")
        }
        async fn terminate_instances(
            &self,
            ids: Vec<String>,
        ) -> sdk::Result<Vec<ec2t::InstanceStateChange>> {
            lock(&self.terminated).extend(ids);
            Ok(Vec::new())
        }
        async fn create_tags(
            &self,
            resources: Vec<String>,
            tags: Vec<ec2t::Tag>,
        ) -> sdk::Result<()> {
            for r in resources {
                for t in &tags {
                    if t.key() == Some(labels::NODECLAIM) {
                        lock(&self.tagged)
                            .push((r.clone(), t.value().unwrap_or_default().to_string()));
                    }
                }
            }
            Ok(())
        }
    }

    fn overrides(t: &str, subnet: &str) -> ec2t::FleetLaunchTemplateOverrides {
        ec2t::FleetLaunchTemplateOverrides::builder()
            .instance_type(ec2t::InstanceType::from(t))
            .subnet_id(subnet)
            .build()
    }

    fn instance(id: &str, t: &str, subnet: &str) -> ec2t::CreateFleetInstance {
        ec2t::CreateFleetInstance::builder()
            .instance_ids(id)
            .instance_type(ec2t::InstanceType::from(t))
            .lifecycle(ec2t::InstanceLifecycle::Spot)
            .launch_template_and_overrides(
                ec2t::LaunchTemplateAndOverridesResponse::builder()
                    .overrides(overrides(t, subnet))
                    .build(),
            )
            .build()
    }

    fn ice(t: &str, subnet: &str) -> ec2t::CreateFleetError {
        ec2t::CreateFleetError::builder()
            .error_code("InsufficientInstanceCapacity")
            .error_message("no capacity")
            .lifecycle(ec2t::InstanceLifecycle::Spot)
            .launch_template_and_overrides(
                ec2t::LaunchTemplateAndOverridesResponse::builder()
                    .overrides(overrides(t, subnet))
                    .build(),
            )
            .build()
    }

    fn key() -> FleetKey {
        let o = |t: &str, s: &str, z: &str| Override {
            instance_type: t.into(),
            subnet_id: s.into(),
            zone: z.into(),
        };
        FleetKey {
            capacity_type: CapacityType::Spot,
            configs: vec![(
                "lt".into(),
                vec![
                    o("m5.large", "subnet-a", "zone-a"),
                    o("m5.large", "subnet-b", "zone-b"),
                    o("c5.large", "subnet-a", "zone-a"),
                ],
            )],
            tags: vec![],
        }
    }

    fn claims(n: usize) -> Vec<ClaimRef> {
        (0..n)
            .map(|i| ClaimRef {
                name: format!("claim-{i}"),
                token: format!("t{i}"),
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_partly_filled_batch_tags_what_it_got_and_reports_capacity_for_the_rest() {
        let ec2 = Arc::new(CannedFleet {
            response: CreateFleetResponse {
                fleet_id: Some("fleet-1".into()),
                instances: vec![
                    instance("i-1", "c5.large", "subnet-a"),
                    instance("i-2", "c5.large", "subnet-a"),
                ],
                errors: vec![ice("m5.large", "subnet-a"), ice("m5.large", "subnet-b")],
            },
            ..CannedFleet::default()
        });
        let clock = Arc::new(TokioClock::starting_at(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ));
        let unavailable = Arc::new(UnavailableOfferings::new(clock, Duration::from_secs(180)));
        let out = launch_batch(ec2.clone(), Arc::clone(&unavailable), key(), claims(3)).await;
        assert_eq!(out[0].as_ref().unwrap().id, "i-1");
        assert_eq!(out[0].as_ref().unwrap().zone, "zone-a");
        assert_eq!(out[1].as_ref().unwrap().capacity_type, CapacityType::Spot);
        match &out[2] {
            Err(CloudError::InsufficientCapacity { offerings }) => {
                let zones: Vec<&str> = offerings.iter().map(|k| k.zone.as_str()).collect();
                assert_eq!(zones, ["zone-a", "zone-b"]);
            }
            other => panic!("expected InsufficientCapacity, got {other:?}"),
        }
        assert!(unavailable.is_unavailable("m5.large", "zone-b", CapacityType::Spot));
        assert!(!unavailable.is_unavailable("c5.large", "zone-a", CapacityType::Spot));
        assert_eq!(
            *lock(&ec2.tagged),
            [
                ("i-1".to_string(), "claim-0".to_string()),
                ("i-2".to_string(), "claim-1".to_string())
            ]
        );
        assert!(lock(&ec2.terminated).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn extra_instances_are_terminated_and_other_errors_keep_their_code() {
        let ec2 = Arc::new(CannedFleet {
            response: CreateFleetResponse {
                fleet_id: None,
                instances: vec![
                    instance("i-1", "c5.large", "subnet-a"),
                    instance("i-9", "c5.large", "subnet-a"),
                ],
                errors: vec![],
            },
            ..CannedFleet::default()
        });
        let clock = Arc::new(TokioClock::starting_at(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ));
        let unavailable = Arc::new(UnavailableOfferings::new(clock, Duration::from_secs(180)));
        let out = launch_batch(ec2.clone(), Arc::clone(&unavailable), key(), claims(1)).await;
        assert_eq!(out.len(), 1);
        assert_eq!(*lock(&ec2.terminated), ["i-9".to_string()]);
        assert!(
            lock(&ec2.tagged).is_empty(),
            "a single claim is tagged at launch"
        );

        let denied = ec2t::CreateFleetError::builder()
            .error_code("UnauthorizedOperation")
            .error_message("denied")
            .build();
        let ec2 = Arc::new(CannedFleet {
            response: CreateFleetResponse {
                fleet_id: None,
                instances: vec![],
                errors: vec![denied],
            },
            ..CannedFleet::default()
        });
        let out = launch_batch(ec2, unavailable, key(), claims(1)).await;
        assert!(
            matches!(&out[0], Err(CloudError::Launch { code, .. }) if code == "UnauthorizedOperation")
        );
    }
}
