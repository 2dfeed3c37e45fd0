//! The NodeClaim lifecycle reconciler (a kube-rs `Controller` over NodeClaims that also watches
//! Nodes). Each reconcile is staged and idempotent; it does the first stage not yet done and
//! returns:
//!
//! 1. **Finalizer**: a claim without `stowage.dev/termination` gets it (so its instance is always
//!    released). A claim being deleted goes to [`crate::termination`].
//! 2. **Launch**: `CloudProvider::create` (idempotent per claim), then the instance's labels
//!    (instance type, zone, capacity type) and the annotations the provider stamped (its node
//!    class hash) go onto the claim and `providerID`, capacity,
//!    allocatable and `Launched=True` onto its status. `InsufficientCapacity` and
//!    `NodeClassNotReady` delete the claim so its pods are solved again against what is left;
//!    `NodeClassNotResolved` (the provider has not resolved the class yet, e.g. just after a
//!    restart) waits and retries, unless the node class does not exist at all (then it is
//!    `NodeClassNotReady`); other errors retry with per-claim backoff. Not launched within the
//!    launch timeout: deleted.
//! 3. **Registered**: a Node with the claim's `providerID` appears. Its labels and taints are
//!    synced from the claim (startup taints added once), the unregistered taint removed, the
//!    termination finalizer and an owner reference to the claim added; then `Registered=True` and
//!    `status.nodeName`. Not registered within the registration timeout: deleted.
//! 4. **Initialized**: the Node is `Ready`, the claim's startup taints and the known ephemeral
//!    taints are gone, and every extended resource the claim requested is advertised. Then the
//!    Node is labelled initialized and the claim gets `Initialized=True` and `Ready=True`.
//!
//! A Node deleted by hand deletes its claim, which then takes the termination path.
//!
//! Nothing is done before the state has synced (every watch listed once): a restarted
//! controller must not judge a claim on a partial view.
//!
//! Key decision: the `Controller`'s own reflector keeps only each claim's metadata (its watch
//! decodes the objects as `PartialObjectMeta`, dropping spec and status); a reconcile reads the
//! claim from [`ClusterState`](crate::state::ClusterState), once the state holds the version
//! that triggered it. A second full copy of every NodeClaim was ~20-30 MB at 3,700 claims.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use stowage_api::conditions::{INITIALIZED, LAUNCHED, READY, REGISTERED};
use stowage_api::labels;
use stowage_api::quantity::parse_resource;
use stowage_api::{NodeClaim, NodeClaimStatus};
use stowage_cloud::Error as CloudError;

use crate::context::Context;
use crate::error::{Chain, Error, Result, is_not_found};
use crate::termination;

/// Taints a node carries while it is coming up; initialization waits for them to go.
pub const EPHEMERAL_TAINTS: &[&str] = &[
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
    "node.cloudprovider.kubernetes.io/uninitialized",
    labels::UNREGISTERED_TAINT_KEY,
];

/// Resource names that are not extended resources.
const CORE_RESOURCES: &[&str] = &["cpu", "memory", "ephemeral-storage", "pods"];

/// How often an unfinished stage is looked at again when no watch event arrives.
const POLL: Duration = Duration::from_secs(5);

/// Runs the lifecycle controller while this replica is leader; stops it when leadership is lost.
pub async fn run(ctx: Arc<Context>) {
    let mut leader = ctx.subscribe_leader();
    loop {
        while !*leader.borrow_and_update() {
            if leader.changed().await.is_err() {
                return;
            }
        }
        let controller = controller(ctx.clone());
        tokio::select! {
            () = controller => {}
            () = async {
                loop {
                    if leader.changed().await.is_err() || !*leader.borrow() {
                        break;
                    }
                }
            } => tracing::info!("lost leadership; lifecycle controller stopped"),
        }
    }
}

/// A claim as the lifecycle controller's reflector keeps it: its metadata.
pub type ClaimMeta = PartialObjectMeta<NodeClaim>;

async fn controller(ctx: Arc<Context>) {
    // Listed and watched as full objects (the same requests as before), decoded without spec
    // and status.
    let claims: Api<ClaimMeta> = Api::all(ctx.client.clone());
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mapper_ctx = ctx.clone();
    Controller::new(claims, watcher::Config::default())
        .watches(nodes, watcher::Config::default(), move |node: Node| {
            let name = node.labels().get(labels::NODECLAIM).cloned().or_else(|| {
                mapper_ctx
                    .state()
                    .claim_for_node(&node)
                    .map(|c| c.name_any())
            });
            name.map(|n| ObjectRef::<ClaimMeta>::new(&n))
        })
        .run(reconcile_meta, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(err) = res {
                tracing::debug!(%err, "nodeclaim reconcile");
            }
        })
        .await;
}

/// Requeues a failed claim with per-claim exponential backoff.
pub fn error_policy(claim: Arc<ClaimMeta>, err: &Error, ctx: Arc<Context>) -> Action {
    let wait = ctx.backoff(&format!("nodeclaim/{}", claim.name_any()));
    tracing::warn!(claim = %claim.name_any(), err = %Chain(err), retry_in = ?wait, "nodeclaim reconcile failed");
    Action::requeue(wait)
}

fn pool_of(claim: &NodeClaim) -> String {
    claim.nodepool_name().unwrap_or("").to_string()
}

/// How soon a reconcile is retried while the state does not hold the claim's version the
/// controller's watch saw (the two watches deliver the same changes a moment apart).
const STATE_LAG_RETRY: Duration = Duration::from_millis(500);

/// The reconcile of the claim whose metadata the controller's watch delivered: [`reconcile`] on
/// the state's claim, once the state holds that version of it.
async fn reconcile_meta(meta: Arc<ClaimMeta>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.state().is_synced() {
        return Ok(Action::requeue(UNSYNCED_RETRY));
    }
    let claim = ctx.state().claim(&meta.name_any());
    match claim {
        Some(claim) if claim.metadata.resource_version == meta.metadata.resource_version => {
            reconcile(claim, ctx).await
        }
        // The state is behind the controller's watch (or ahead of it: then the watch brings
        // the newer version and a reconcile with it soon).
        _ => Ok(Action::requeue(STATE_LAG_RETRY)),
    }
}

/// One reconcile of one claim; see the module docs for the stages.
pub async fn reconcile(claim: Arc<NodeClaim>, ctx: Arc<Context>) -> Result<Action> {
    let name = claim.name_any();
    // Until every watch completed its first list (just after a start or restart), the state
    // may miss the claim's Node, the node class or the claims themselves: a stage deciding on
    // it could give up a claim that is fine. Nothing is decided before.
    if !ctx.state().is_synced() {
        return Ok(Action::requeue(UNSYNCED_RETRY));
    }
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    if claim.metadata.deletion_timestamp.is_some() {
        return termination::finalize(&claim, &ctx).await;
    }
    if !claim
        .finalizers()
        .iter()
        .any(|f| f == labels::TERMINATION_FINALIZER)
    {
        let mut finalizers = claim.finalizers().to_vec();
        finalizers.push(labels::TERMINATION_FINALIZER.to_string());
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": finalizers}})),
        )
        .await
        .map_err(Error::kube("add finalizer to nodeclaim", &name))?;
        return Ok(Action::requeue(Duration::ZERO));
    }
    let mut claim = (*claim).clone();
    if !claim.is_true(LAUNCHED)
        && let Some(action) = launch(&mut claim, &ctx).await?
    {
        return Ok(action);
    }
    if !claim.is_true(REGISTERED)
        && let Some(action) = register(&mut claim, &ctx).await?
    {
        return Ok(action);
    }
    if !claim.is_true(INITIALIZED)
        && let Some(action) = initialize(&mut claim, &ctx).await?
    {
        return Ok(action);
    }
    // A Node deleted by hand takes its claim (and so the termination path) with it.
    let node = ctx.state().claim_node(&claim);
    if let Some(node) = node
        && node.metadata.deletion_timestamp.is_some()
    {
        delete_claim(&ctx, &claim, "node_deleted").await?;
        return Ok(Action::requeue(Duration::ZERO));
    }
    ctx.reset_backoff(&format!("nodeclaim/{name}"));
    Ok(Action::requeue(Duration::from_secs(300)))
}

/// Deletes a claim (its finalizer then releases the instance) and forgets its nominations.
pub async fn delete_claim(ctx: &Context, claim: &NodeClaim, reason: &str) -> Result<()> {
    let name = claim.name_any();
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    tracing::info!(claim = %name, reason, "deleting nodeclaim");
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(Error::kube("delete nodeclaim", &name)(e)),
    }
    ctx.update_state(|s| s.clear_nominations(&name));
    Ok(())
}

/// How soon a reconcile is retried while the state has not synced yet.
const UNSYNCED_RETRY: Duration = Duration::from_secs(1);

/// How soon a launch waiting for its node class to be resolved is retried.
const NODE_CLASS_RETRY: Duration = Duration::from_secs(5);

/// `create`'s answer with `NodeClassNotResolved` sorted out: while the node class exists (or the
/// state has not seen every class yet) the launch waits (`Err` with the retry); a class that
/// does not exist is `NodeClassNotReady`, which gives the claim up.
fn unresolved_class(
    ctx: &Context,
    claim: &str,
    created: stowage_cloud::Result<NodeClaim>,
) -> std::result::Result<stowage_cloud::Result<NodeClaim>, Action> {
    let Err(CloudError::NodeClassNotResolved { name: class }) = created else {
        return Ok(created);
    };
    let absent = {
        let state = ctx.state();
        state.is_synced() && state.nodeclass(&class).is_none()
    };
    if !absent {
        tracing::debug!(claim, nodeclass = %class, "node class not resolved yet; waiting");
        return Err(Action::requeue(NODE_CLASS_RETRY));
    }
    Ok(Err(CloudError::NodeClassNotReady {
        reason: format!("node class {class} not found"),
    }))
}

fn age(ctx: &Context, since: Option<jiff::Timestamp>) -> Duration {
    since
        .map(|t| ctx.clock.now().duration_since(t))
        .and_then(|d| Duration::try_from(d).ok())
        .unwrap_or(Duration::ZERO)
}

async fn launch(claim: &mut NodeClaim, ctx: &Context) -> Result<Option<Action>> {
    let name = claim.name_any();
    let pool = pool_of(claim);
    let created_at = claim.metadata.creation_timestamp.as_ref().map(|t| t.0);
    if age(ctx, created_at) > ctx.settings.launch_timeout {
        ctx.metrics.nodeclaim_terminated(&pool, "launch_timeout");
        ctx.recorder
            .publish(
                claim,
                crate::events::EventType::Warning,
                "LaunchTimeout",
                "instance was not launched in time",
            )
            .await;
        delete_claim(ctx, claim, "launch timeout").await?;
        return Ok(Some(Action::await_change()));
    }
    let created = match unresolved_class(ctx, &name, ctx.cloud.create(claim).await) {
        Ok(created) => created,
        Err(wait) => return Ok(Some(wait)),
    };
    let launched = match created {
        Ok(c) => c,
        Err(
            err @ (CloudError::InsufficientCapacity { .. } | CloudError::NodeClassNotReady { .. }),
        ) => {
            ctx.metrics.launch_error(&pool, err.kind());
            let reason = match err {
                CloudError::InsufficientCapacity { .. } => "InsufficientCapacity",
                _ => "NodeClassNotReady",
            };
            ctx.recorder
                .publish(
                    claim,
                    crate::events::EventType::Warning,
                    reason,
                    &err.to_string(),
                )
                .await;
            ctx.metrics.nodeclaim_terminated(&pool, "launch_failed");
            delete_claim(ctx, claim, reason).await?;
            return Ok(Some(Action::await_change()));
        }
        Err(err) => {
            ctx.metrics.launch_error(&pool, err.kind());
            return Err(Error::cloud(&name)(err));
        }
    };
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    // Labels resolved by the launch (instance type, zone, capacity type, ...).
    let mut new_labels = claim.labels().clone();
    for (k, v) in launched.labels() {
        new_labels.insert(k.clone(), v.clone());
    }
    // On-demand bought although the claim allowed spot: spot could not be had (the provider
    // prefers it). Stamped so the capacity-mix restore can move it back to spot later.
    let fallback = spot_fallback(ctx, claim, &new_labels)
        .await
        .then(|| ctx.clock.now().to_string());
    // Annotations the provider stamped (its node class hash, for drift).
    let mut new_annotations: BTreeMap<String, String> = launched
        .annotations()
        .iter()
        .filter(|(k, v)| claim.annotations().get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(at) = &fallback {
        new_annotations.insert(
            crate::disruption::candidates::SPOT_FALLBACK.to_string(),
            at.clone(),
        );
    }
    if &new_labels != claim.labels() || !new_annotations.is_empty() {
        let patched = api
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"labels": new_labels, "annotations": new_annotations}}),
                ),
            )
            .await
            .map_err(Error::kube("label nodeclaim", &name))?;
        claim.metadata = patched.metadata;
    }
    let from = launched.status.clone().unwrap_or_default();
    let now = ctx.clock.now();
    let status = claim.status_mut();
    status.provider_id = from.provider_id.clone();
    status.image_id = from.image_id.clone().or(status.image_id.take());
    if !from.capacity.is_empty() {
        status.capacity = from.capacity.clone();
    }
    if !from.allocatable.is_empty() {
        status.allocatable = from.allocatable.clone();
    }
    status.set_true(LAUNCHED, "Launched", now);
    patch_status(&api, &name, claim).await?;
    ctx.metrics.nodeclaim_launched(&pool);
    let until = now + signed(ctx.settings.registration_timeout);
    ctx.update_state(|s| {
        s.apply_claim(claim.clone());
        s.extend_nominations(&name, until);
    });
    Ok(None)
}

/// True when the instance was launched on-demand because spot could not be had: the claim
/// allowed spot (the provider prefers it), or its pool allows spot and none of the claim's
/// instance types has an available spot offering now (the solve pinned the claim to on-demand
/// after spot ran out).
async fn spot_fallback(
    ctx: &Context,
    claim: &NodeClaim,
    launched: &BTreeMap<String, String>,
) -> bool {
    use stowage_cloud::CapacityType;
    let allows_spot = |reqs: &[stowage_api::Requirement]| {
        stowage_api::Requirements::from_requirements(reqs).is_ok_and(|r| {
            r.get(labels::CAPACITY_TYPE)
                .is_none_or(|s| s.has(CapacityType::Spot.as_str()))
        })
    };
    if launched.get(labels::CAPACITY_TYPE).map(String::as_str)
        != Some(CapacityType::OnDemand.as_str())
    {
        return false;
    }
    if allows_spot(&claim.spec.requirements) {
        return true;
    }
    let Some(pool) = claim.nodepool_name().and_then(|p| ctx.state().nodepool(p)) else {
        return false;
    };
    if !allows_spot(&pool.spec.template.spec.requirements) {
        return false;
    }
    let options: Vec<&str> = claim
        .spec
        .requirements
        .iter()
        .filter(|r| r.key == labels::INSTANCE_TYPE)
        .flat_map(|r| r.values.iter().map(String::as_str))
        .collect();
    match ctx.cloud.instance_types(&pool).await {
        Ok(types) => !types.iter().any(|t| {
            options.contains(&t.name.as_str())
                && t.offerings
                    .iter()
                    .any(|o| o.available && o.capacity_type == CapacityType::Spot)
        }),
        Err(_) => false,
    }
}

fn signed(d: Duration) -> jiff::SignedDuration {
    jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX)
}

async fn patch_status(api: &Api<NodeClaim>, name: &str, claim: &mut NodeClaim) -> Result<()> {
    let status = claim.status.clone().unwrap_or_default();
    let patched = api
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .map_err(Error::kube("update nodeclaim status", name))?;
    claim.metadata = patched.metadata;
    Ok(())
}

fn has_taint(taints: &[Taint], t: &Taint) -> bool {
    taints
        .iter()
        .any(|x| x.key == t.key && x.effect == t.effect)
}

async fn register(claim: &mut NodeClaim, ctx: &Context) -> Result<Option<Action>> {
    let name = claim.name_any();
    let pool = pool_of(claim);
    let node = ctx.state().claim_node(claim);
    let Some(node) = node else {
        let launched_at = claim.condition(LAUNCHED).and_then(|c| c.last_transition());
        let waited = age(ctx, launched_at);
        if waited > ctx.settings.registration_timeout {
            ctx.metrics
                .nodeclaim_terminated(&pool, "registration_timeout");
            ctx.recorder
                .publish(
                    claim,
                    crate::events::EventType::Warning,
                    "RegistrationTimeout",
                    "node did not register in time",
                )
                .await;
            delete_claim(ctx, claim, "registration timeout").await?;
            return Ok(Some(Action::await_change()));
        }
        let left = ctx.settings.registration_timeout.saturating_sub(waited);
        return Ok(Some(Action::requeue(
            left.min(Duration::from_secs(60)) + Duration::from_millis(100),
        )));
    };
    let node_name = node.name_any();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut node_labels: BTreeMap<String, String> = node.labels().clone();
    for (k, v) in claim.labels() {
        node_labels.insert(k.clone(), v.clone());
    }
    node_labels.insert(labels::REGISTERED.to_string(), "true".to_string());
    node_labels.insert(labels::NODECLAIM.to_string(), name.clone());
    let mut taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t.key != labels::UNREGISTERED_TAINT_KEY)
        .collect();
    for t in claim
        .spec
        .taints
        .iter()
        .chain(claim.spec.startup_taints.iter())
    {
        if !has_taint(&taints, t) {
            taints.push(t.clone());
        }
    }
    let mut finalizers = node.finalizers().to_vec();
    if !finalizers
        .iter()
        .any(|f| f == labels::TERMINATION_FINALIZER)
    {
        finalizers.push(labels::TERMINATION_FINALIZER.to_string());
    }
    let mut owners: Vec<OwnerReference> = node.owner_references().to_vec();
    if !owners.iter().any(|o| o.kind == "NodeClaim") {
        owners.push(OwnerReference {
            api_version: NodeClaim::api_version(&()).into_owned(),
            kind: NodeClaim::kind(&()).into_owned(),
            name: name.clone(),
            uid: claim.uid().unwrap_or_default(),
            block_owner_deletion: Some(true),
            controller: None,
        });
    }
    let patch = json!({
        "metadata": {"labels": node_labels, "finalizers": finalizers, "ownerReferences": owners},
        "spec": {"taints": taints},
    });
    nodes
        .patch(&node_name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(Error::kube("register node", &node_name))?;
    let now = ctx.clock.now();
    let status: &mut NodeClaimStatus = claim.status_mut();
    status.node_name = Some(node_name);
    status.set_true(REGISTERED, "Registered", now);
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    patch_status(&api, &name, claim).await?;
    ctx.metrics.nodeclaim_registered(&pool);
    ctx.update_state(|s| s.apply_claim(claim.clone()));
    Ok(None)
}

/// Why a registered node is not initialized yet, or `None` when it is.
pub fn not_initialized_reason(claim: &NodeClaim, node: &Node) -> Option<String> {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    if !ready {
        return Some("node is not ready".to_string());
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    if let Some(t) = claim
        .spec
        .startup_taints
        .iter()
        .find(|t| has_taint(&taints, t))
    {
        return Some(format!("startup taint {} is still present", t.key));
    }
    if let Some(t) = taints
        .iter()
        .find(|t| EPHEMERAL_TAINTS.contains(&t.key.as_str()))
    {
        return Some(format!("taint {} is still present", t.key));
    }
    let allocatable = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.clone())
        .unwrap_or_default();
    for (res, q) in &claim.spec.resources.requests {
        if CORE_RESOURCES.contains(&res.as_str()) {
            continue;
        }
        let requested = parse_resource(res, &q.0).unwrap_or(0);
        let have = allocatable
            .get(res)
            .and_then(|q| parse_resource(res, &q.0).ok())
            .unwrap_or(0);
        if requested > 0 && have <= 0 {
            return Some(format!("extended resource {res} is not advertised yet"));
        }
    }
    None
}

async fn initialize(claim: &mut NodeClaim, ctx: &Context) -> Result<Option<Action>> {
    let name = claim.name_any();
    let node = ctx.state().claim_node(claim);
    let Some(node) = node else {
        return Ok(Some(Action::requeue(POLL)));
    };
    if let Some(reason) = not_initialized_reason(claim, &node) {
        tracing::debug!(claim = %name, reason, "waiting for initialization");
        return Ok(Some(Action::requeue(POLL)));
    }
    let node_name = node.name_any();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    nodes
        .patch(
            &node_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {labels::INITIALIZED: "true"}}})),
        )
        .await
        .map_err(Error::kube("label node initialized", &node_name))?;
    let now = ctx.clock.now();
    let status = claim.status_mut();
    status.set_true(INITIALIZED, "Initialized", now);
    status.set_true(READY, "Ready", now);
    let api: Api<NodeClaim> = Api::all(ctx.client.clone());
    patch_status(&api, &name, claim).await?;
    ctx.metrics.nodeclaim_initialized(&pool_of(claim));
    if let Some(created) = &claim.metadata.creation_timestamp {
        ctx.metrics
            .nodeclaim_initialized_seconds
            .observe(now.duration_since(created.0).as_secs_f64().max(0.0));
    }
    ctx.update_state(|s| s.apply_claim(claim.clone()));
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;

    #[test]
    fn initialization_waits_for_ready_startup_taints_and_extended_resources() {
        let mut c = claim("c1", "pool");
        c.spec.startup_taints = vec![taint("example.com/agent", "NoSchedule")];
        c.spec.resources.requests.insert(
            "nvidia.com/gpu".into(),
            k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
        );
        let mut n = node("n1", "p", false);
        assert_eq!(
            not_initialized_reason(&c, &n).as_deref(),
            Some("node is not ready")
        );
        n = node("n1", "p", true);
        n.spec.as_mut().unwrap().taints = Some(vec![taint("example.com/agent", "NoSchedule")]);
        assert!(
            not_initialized_reason(&c, &n)
                .unwrap()
                .contains("startup taint")
        );
        n.spec.as_mut().unwrap().taints =
            Some(vec![taint(labels::UNREGISTERED_TAINT_KEY, "NoExecute")]);
        assert!(
            not_initialized_reason(&c, &n)
                .unwrap()
                .contains("stowage.dev/unregistered")
        );
        n.spec.as_mut().unwrap().taints = None;
        assert!(
            not_initialized_reason(&c, &n)
                .unwrap()
                .contains("nvidia.com/gpu")
        );
        n.status
            .as_mut()
            .unwrap()
            .allocatable
            .as_mut()
            .unwrap()
            .insert(
                "nvidia.com/gpu".into(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
            );
        assert_eq!(not_initialized_reason(&c, &n), None);
    }
}
