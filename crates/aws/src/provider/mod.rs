//! `AwsCloudProvider`: `stowage_cloud::CloudProvider` over EC2.
//!
//! This module owns the provider's state and the trait's thin entry points: node classes
//! (resolved from the generic object the controllers hand over, cached by name for launches),
//! the coalescers, and the NodeClaim view of an instance. The steps live in their own modules:
//! [`instance_types`] (catalogue and prices per node class), [`launch`] (what `create` does),
//! [`crate::selection`] (which offerings a claim launches), [`crate::launch_template`] (which
//! templates they need), [`crate::fleet`] (the CreateFleet call and its answer) and
//! [`crate::instance`] (coalesced DescribeInstances and TerminateInstances).
//!
//! A retried create never buys twice: the ClientToken is derived from the NodeClaim's name and
//! uid, and an instance already tagged with the claim is returned instead of launching again.

mod instance_types;
mod launch;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use aws_sdk_ec2::types as ec2t;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};
use stowage_api::quantity::format_resource;
use stowage_api::{
    EC2NodeClass, EC2NodeClassStatus, HashStamp, NodeClaim, NodeClaimSpec, NodeClaimStatus,
    NodePool, StampCheck, labels,
};
use stowage_clock::SharedClock;
use stowage_cloud::{
    CloudProvider, DriftReason, Error as CloudError, NodeClassKind, NodeClassStatus, OfferingKey,
    Result,
};
use stowage_solver::{InstanceType, Resources};
use tracing::{debug, warn};

use crate::coalescer::{CoalescedCallDropped, Coalescer};
use crate::discovery::{self, ResolvedNodeClass};
use crate::errors::{self, error_chain};
use crate::fleet::{self, ClaimRef, FleetKey, LaunchResult};
use crate::instance::{self, DescribeResult, InstanceView, LIVE_STATES, TerminateResult};
pub use crate::instance::{EKS_CLUSTER_TAG, cluster_tag};
use crate::instance_profile::{InstanceProfiles, Stale};
use crate::launch_template::LaunchTemplates;
use crate::sdk::{Clients, Ec2Api, PricingApi, SsmApi};
use crate::settings::ProviderSettings;
use crate::unavailable::UnavailableOfferings;
use instance_types::BuiltTypes;
pub use instance_types::SharedCatalog;

/// The ClientToken of a NodeClaim's launch: stable across retries of the same claim object.
pub fn client_token(claim: &NodeClaim) -> String {
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    let uid = claim.metadata.uid.as_deref().unwrap_or_default();
    let digest = Sha256::digest(format!("{name}/{uid}").as_bytes());
    format!("stowage-{}", hex::encode(&digest[..24]))
}

/// A resolved node class: the object, what its selectors resolved to, and a hash of that.
struct ClassEntry {
    class: EC2NodeClass,
    resolved: ResolvedNodeClass,
    hash: String,
    /// The stamp of the class fields a node keeps, written on claims launched from it.
    stamp: HashStamp,
}

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
    /// Instance profiles made for node classes that name only a role.
    profiles: InstanceProfiles,
    /// The class names of the last completed sweep of managed instance profiles, and whether
    /// one is running (a sweep runs only when the set of classes changed).
    profile_sweep: Mutex<(Option<BTreeSet<String>>, bool)>,
    fleet: Coalescer<FleetKey, ClaimRef, LaunchResult>,
    describe: Coalescer<(), String, DescribeResult>,
    /// Live instances by NodeClaim name (the create-idempotency lookup), coalesced.
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
        message: "coalesced call ended without a result".to_string(),
    }
}

fn quantities(r: &Resources) -> BTreeMap<String, Quantity> {
    r.0.iter()
        .map(|(k, v)| (k.clone(), Quantity(format_resource(k, *v))))
        .collect()
}

/// The kind of this provider's node classes (checked against the CRD in the tests).
pub fn ec2_node_class_kind() -> NodeClassKind {
    NodeClassKind::new(labels::AWS_GROUP, "v1", "EC2NodeClass", "ec2nodeclasses")
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
            let (ec2, unavailable) = (Arc::clone(&ec2), Arc::clone(&unavailable));
            Coalescer::new(
                settings.launch_coalescing,
                move |key: FleetKey, claims: Vec<ClaimRef>| {
                    fleet::launch_batch(Arc::clone(&ec2), Arc::clone(&unavailable), key, claims)
                },
            )
        };
        let describe = {
            let ec2 = Arc::clone(&ec2);
            Coalescer::new(
                settings.describe_coalescing,
                move |_: (), ids: Vec<String>| instance::describe_batch(Arc::clone(&ec2), ids),
            )
        };
        let terminate = {
            let ec2 = Arc::clone(&ec2);
            Coalescer::new(
                settings.terminate_coalescing,
                move |_: (), ids: Vec<String>| instance::terminate_batch(Arc::clone(&ec2), ids),
            )
        };
        let lookup = {
            let ec2 = Arc::clone(&ec2);
            let cluster = settings.cluster.name.clone();
            Coalescer::new(
                settings.describe_coalescing,
                move |_: (), names: Vec<String>| {
                    instance::lookup_batch(Arc::clone(&ec2), cluster.clone(), names)
                },
            )
        };
        let templates = LaunchTemplates::new(Arc::clone(&ec2), &settings.cluster.name);
        let profiles = InstanceProfiles::new(
            Arc::clone(&clients.iam),
            Arc::clone(&ec2),
            &settings.cluster.name,
            &settings.region,
        );
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
                profiles,
                profile_sweep: Mutex::new((None, false)),
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
        let name = class.metadata.name.clone().unwrap_or_default();
        let managed_profile = match (&class.spec.instance_profile, &class.spec.role) {
            (None, Some(role)) => Some(
                i.profiles
                    .ensure(&name, role)
                    .await
                    .map_err(errors::to_cloud)?,
            ),
            _ => None,
        };
        let resolved = discovery::resolve(
            &*i.ec2,
            &*i.ssm,
            class,
            &i.settings.kubernetes_version,
            managed_profile,
        )
        .await
        .map_err(|e| CloudError::Api {
            operation: "ResolveNodeClass",
            message: error_chain(&e),
        })?;
        let status = resolved.status(class.metadata.generation);
        let hash = resolved.hash();
        let entry = Arc::new(ClassEntry {
            class: class.clone(),
            resolved,
            hash: hash.clone(),
            stamp: class.static_stamp(),
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

    /// Deletes the managed instance profiles of node classes not in `classes` (nor resolved since),
    /// keeping those whose class still has live instances. Returns the deleted profiles.
    pub async fn delete_stale_instance_profiles(
        &self,
        classes: &BTreeSet<String>,
    ) -> Result<Stale> {
        let mut keep = classes.clone();
        keep.extend(read(&self.inner.classes).keys().cloned());
        self.inner
            .profiles
            .delete_stale(&keep)
            .await
            .map_err(errors::to_cloud)
    }

    /// Sweeps managed instance profiles in the background when the set of classes changed since
    /// the last completed sweep and no sweep is running.
    fn sweep_instance_profiles(&self, classes: &BTreeSet<String>) {
        {
            let mut sweep = lock(&self.inner.profile_sweep);
            if sweep.1 || sweep.0.as_ref() == Some(classes) {
                return;
            }
            sweep.1 = true;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            lock(&self.inner.profile_sweep).1 = false;
            return;
        };
        let this = self.clone();
        let classes = classes.clone();
        runtime.spawn(async move {
            let mut keep = classes.clone();
            keep.extend(read(&this.inner.classes).keys().cloned());
            let done = match this.inner.profiles.delete_stale(&keep).await {
                Ok(stale) => {
                    if !stale.deleted.is_empty() {
                        debug!(deleted = ?stale.deleted, "deleted instance profiles of deleted node classes");
                    }
                    // Profiles kept for running instances are looked at again next time.
                    stale.kept.is_empty().then_some(classes)
                }
                // Without the IAM permissions (clusters using only spec.instanceProfile need
                // none): say so once per change of the classes, not on every pass.
                Err(e) if matches!(e.code(), Some("AccessDenied" | "AccessDeniedException")) => {
                    warn!(error = %e, "cannot sweep managed instance profiles: access denied");
                    Some(classes)
                }
                Err(e) => {
                    warn!(error = %e, "failed to delete instance profiles of deleted node classes");
                    None
                }
            };
            let mut sweep = lock(&this.inner.profile_sweep);
            if done.is_some() {
                sweep.0 = done;
            }
            sweep.1 = false;
        });
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

    /// The resolved node class `name`; `NodeClassNotResolved` until a resolution succeeded (the
    /// caller waits; whether the class exists at all is the controllers' to know).
    fn class(&self, name: &str) -> Result<Arc<ClassEntry>> {
        read(&self.inner.classes).get(name).cloned().ok_or_else(|| {
            CloudError::NodeClassNotResolved {
                name: name.to_string(),
            }
        })
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

/// The generic node-class status of an EC2NodeClass status: readiness from its `Ready`
/// condition, the other fields as JSON.
fn generic_status(status: &EC2NodeClassStatus) -> Result<NodeClassStatus> {
    let ready = status.condition(stowage_api::conditions::READY);
    let mut fields = match serde_json::to_value(status) {
        Ok(serde_json::Value::Object(map)) => map,
        Ok(_) => serde_json::Map::new(),
        Err(e) => {
            return Err(CloudError::Api {
                operation: "ResolveNodeClass",
                message: format!("failed to encode the node class status: {e}"),
            });
        }
    };
    fields.remove("conditions");
    Ok(NodeClassStatus {
        ready: ready.is_some_and(|c| c.is_true()),
        reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
        message: ready.map(|c| c.message.clone()).unwrap_or_default(),
        fields,
    })
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

#[async_trait]
impl CloudProvider for AwsCloudProvider {
    async fn create(&self, claim: &NodeClaim) -> Result<NodeClaim> {
        self.launch(claim).await
    }

    fn mark_unavailable(&self, offering: &OfferingKey, ttl: std::time::Duration) {
        self.inner.unavailable.mark_for(offering.clone(), ttl);
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
        // A claim without a stamp of this version is backfilled by the controllers, not drifted.
        let annotations = claim.metadata.annotations.clone().unwrap_or_default();
        if entry.stamp.check(&annotations) == StampCheck::Differs {
            return Ok(Some(DriftReason::NodeClassDrift));
        }
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

    fn node_class_kind(&self) -> Option<NodeClassKind> {
        Some(ec2_node_class_kind())
    }

    async fn reconcile_node_class(&self, class: &serde_json::Value) -> Result<NodeClassStatus> {
        let class: EC2NodeClass =
            serde_json::from_value(class.clone()).map_err(|e| CloudError::Api {
                operation: "ResolveNodeClass",
                message: format!("failed to read the EC2NodeClass: {e}"),
            })?;
        generic_status(&self.resolve_node_class(&class).await?)
    }

    fn retain_node_classes(&self, names: &BTreeSet<String>) {
        write(&self.inner.classes).retain(|name, _| names.contains(name));
        self.sweep_instance_profiles(names);
    }

    fn node_class_stamp(&self, name: &str) -> Option<HashStamp> {
        read(&self.inner.classes)
            .get(name)
            .map(|entry| entry.stamp.clone())
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

    #[test]
    fn the_node_class_kind_is_the_crds() {
        let kind = ec2_node_class_kind();
        let crds = stowage_api::crds::all().unwrap();
        let crd = crds
            .iter()
            .find(|c| c.spec.names.kind == kind.kind)
            .unwrap();
        assert_eq!(crd.spec.group, kind.group);
        assert_eq!(crd.spec.names.plural, kind.plural);
        assert!(crd.spec.versions.iter().any(|v| v.name == kind.version));
    }
}
