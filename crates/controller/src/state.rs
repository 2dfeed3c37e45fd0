//! `ClusterState`: the controllers' synchronous, in-memory view of the cluster — pods, nodes,
//! NodeClaims, NodePools, node classes (of the cloud provider's kind, held as generic objects),
//! DaemonSets and PodDisruptionBudgets — plus what only
//! Stowage knows: which pods are nominated to in-flight capacity.
//!
//! It is fed by watchers (see [`crate::watch`]) through `apply`/`delete`/`replace`, and can be
//! driven the same way directly in tests, without an API server. Nothing here blocks or awaits;
//! callers hold the lock only for the duration of one call.
//!
//! It keeps only what decisions need: pods as [`LeanPod`]s (the solver's conversion plus a few
//! facts, label sets and repeated strings shared through one [`Interner`]), Nodes without their
//! images, node info and conditions other than `Ready`, every object without `managedFields`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::DynamicObject;
use kube::{Resource, ResourceExt};
use stowage_api::namespaced_key;
use stowage_api::{NodeClaim, NodePool, conditions, key_of};
use stowage_solver::PodRequest;
use stowage_solver::convert::{ContainerView, PodView};
use stowage_solver::hash::FastMap;

use crate::disruption::candidates::PdbCounts;
use crate::lean::{Interner, LeanPod};

/// The kinds the state tracks; the state is synced once each has completed its first list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Pod,
    Node,
    NodeClaim,
    NodePool,
    NodeClass,
    DaemonSet,
    Pdb,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Pod,
        Kind::Node,
        Kind::NodeClaim,
        Kind::NodePool,
        Kind::NodeClass,
        Kind::DaemonSet,
        Kind::Pdb,
    ];
}

/// Pods nominated to a NodeClaim that is not a Node yet, until `until`.
#[derive(Clone, Debug, PartialEq)]
pub struct Nomination {
    pub claim: String,
    pub until: Timestamp,
    /// When the pod was first nominated to this claim (kept when it is nominated to it again).
    pub since: Timestamp,
}

/// A pod made ready for the state ([`ClusterState::prepare_pod`], or [`PreparedPod::new`]
/// apart from any state).
#[derive(Debug)]
pub struct PreparedPod {
    lean: LeanPod,
    provisionable: bool,
}

impl PreparedPod {
    /// What a state will keep of `pod`, made apart from any state (`stowage plan` prepares the
    /// pods of a dump on the threads that read it), sharing strings and label sets through
    /// `interner`. The same as [`ClusterState::prepare_pod`] makes, but that the key is not
    /// shared with a state's pod of the same key.
    pub fn new(pod: Pod, interner: &mut Interner) -> PreparedPod {
        let pod = strip(pod);
        let key = Arc::from(key_of(&pod));
        PreparedPod::with_key(pod, key, interner)
    }

    /// [`PreparedPod::new`] of what Stowage reads of a Pod, from a form of it other than the
    /// `k8s_openapi` Pod (`stowage plan`'s fast reader never builds one): the same rules, read
    /// through the same view. `whole` makes the Pod only when the solver cannot read it (the
    /// state keeps that object to report its error again).
    pub fn from_view<C: ContainerView>(
        pod: &PodView<'_, C>,
        interner: &mut Interner,
        whole: impl FnOnce() -> Pod,
    ) -> PreparedPod {
        let key = Arc::from(namespaced_key(
            pod.namespace.unwrap_or_default(),
            pod.name.unwrap_or_default(),
        ));
        PreparedPod {
            lean: LeanPod::from_view(pod, key, interner, || strip(whole())),
            provisionable: is_provisionable_view(pod),
        }
    }

    /// `pod` (stripped) under `key`.
    fn with_key(pod: Pod, key: Arc<str>, interner: &mut Interner) -> PreparedPod {
        PreparedPod {
            provisionable: is_provisionable(&pod),
            lean: LeanPod::new(pod, key, interner),
        }
    }

    /// What the state will keep.
    pub fn lean(&self) -> &LeanPod {
        &self.lean
    }

    /// Whether the provisioner buys for it ([`is_provisionable`]).
    pub fn provisionable(&self) -> bool {
        self.provisionable
    }
}

/// Nominations indexed by pod and by claim (lookups both ways stay cheap at thousands of claims).
#[derive(Debug, Default)]
struct Nominations {
    by_pod: HashMap<String, Nomination>,
    by_claim: HashMap<String, BTreeSet<String>>,
}

impl Nominations {
    fn insert(&mut self, pod: String, claim: &str, now: Timestamp, until: Timestamp) {
        let since = self
            .by_pod
            .get(&pod)
            .filter(|n| n.claim == claim)
            .map_or(now, |n| n.since);
        self.remove_pod(&pod);
        self.by_claim
            .entry(claim.to_string())
            .or_default()
            .insert(pod.clone());
        self.by_pod.insert(
            pod,
            Nomination {
                claim: claim.to_string(),
                until,
                since,
            },
        );
    }

    fn remove_pod(&mut self, pod: &str) {
        if let Some(old) = self.by_pod.remove(pod)
            && let Some(set) = self.by_claim.get_mut(&old.claim)
        {
            set.remove(pod);
            if set.is_empty() {
                self.by_claim.remove(&old.claim);
            }
        }
    }

    /// Removes every nomination to `claim`; true when there was one.
    fn remove_claim(&mut self, claim: &str) -> bool {
        let Some(pods) = self.by_claim.remove(claim) else {
            return false;
        };
        for p in &pods {
            self.by_pod.remove(p);
        }
        !pods.is_empty()
    }

    fn extend(&mut self, claim: &str, until: Timestamp) {
        for p in self.by_claim.get(claim).into_iter().flatten() {
            if let Some(n) = self.by_pod.get_mut(p)
                && n.until < until
            {
                n.until = until;
            }
        }
    }

    fn pods_of(&self, claim: &str) -> Vec<String> {
        self.by_claim
            .get(claim)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn retain(&mut self, mut keep: impl FnMut(&str, &Nomination) -> bool) {
        let drop: Vec<String> = self
            .by_pod
            .iter()
            .filter(|(k, n)| !keep(k, n))
            .map(|(k, _)| k.clone())
            .collect();
        for k in drop {
            self.remove_pod(&k);
        }
    }
}

/// The state. See the module docs.
#[derive(Debug, Default)]
pub struct ClusterState {
    /// What is kept of each pod (its solver conversion included), by `namespace/name`; the
    /// indexes below share the key.
    pods: HashMap<Arc<str>, Arc<LeanPod>>,
    /// Node name -> its bound pods by key (the same `Arc`s as in `pods`, replaced with them):
    /// a loop over a node's pods needs no lookup per pod.
    pods_by_node: HashMap<Arc<str>, BTreeMap<Arc<str>, Arc<LeanPod>>>,
    provisionable: BTreeSet<Arc<str>>,
    /// Shared copies of the strings and label sets pods repeat.
    interner: Interner,
    nodes: BTreeMap<String, Arc<Node>>,
    /// Provider id -> the Node (the same `Arc` as in `nodes`): a lookup by provider id is
    /// one hash, not a hash and a search by name.
    node_by_provider: FastMap<String, Arc<Node>>,
    claims: BTreeMap<String, Arc<NodeClaim>>,
    /// Provider id -> the NodeClaim (the same `Arc` as in `claims`).
    claim_by_provider: FastMap<String, Arc<NodeClaim>>,
    nodepools: BTreeMap<String, Arc<NodePool>>,
    nodeclasses: BTreeMap<String, Arc<DynamicObject>>,
    daemonsets: BTreeMap<String, Arc<DaemonSet>>,
    pdbs: BTreeMap<String, Arc<PodDisruptionBudget>>,
    nominations: Nominations,
    /// Pod key -> Nodes it was nominated to and did not schedule on once they were initialized
    /// (the node had less room than planned); the next solves keep it off them.
    rejected: HashMap<String, BTreeSet<String>>,
    synced: BTreeSet<Kind>,
    /// Keys of listed or watched objects that do not decode, by kind. They are absent from the
    /// state, so a job that reads absence as "gone" must wait while its kind has any.
    undecodable: BTreeMap<Kind, BTreeSet<String>>,
    /// Bumped whenever a pod becomes provisionable that was not before (batcher trigger).
    provisionable_seq: u64,
    /// Bumped whenever something consolidation decides on changed (pods bound to or gone from
    /// a node, nodes, claims, pools, PDBs): the disruption loop skips a round while it is still
    /// what it was at the last "nothing to do".
    disruption_seq: u64,
    /// Nodes that had a pod bound to them or removed from them since the disruption loop last
    /// took them ([`ClusterState::take_pod_event_nodes`]); it stamps their claims'
    /// `status.lastPodEventTime`. Relists do not mark nodes.
    pod_event_nodes: BTreeSet<String>,
    /// Each PDB's selected pods, counted per pod event (the disruption candidates read them).
    pdb_counts: PdbCounts,
}

/// True for a pod the provisioner should buy capacity for: the scheduler marked it
/// `PodScheduled=False/Unschedulable`, it is not bound, not terminating, not preempting (no
/// nominated node), not finished, and neither a DaemonSet pod nor a static/mirror pod.
pub fn is_provisionable(pod: &Pod) -> bool {
    is_provisionable_view(&PodView::of(pod))
}

/// [`is_provisionable`] of what Stowage reads of a pod.
pub fn is_provisionable_view<C>(pod: &PodView<'_, C>) -> bool {
    if pod.deletion_timestamp.is_some() {
        return false;
    }
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    if spec.node_name.is_some_and(|n| !n.is_empty()) {
        return false;
    }
    if owned_by_daemonset(pod.owner_references) || static_view(pod) {
        return false;
    }
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    if status.nominated_node_name.is_some_and(|n| !n.is_empty()) {
        return false;
    }
    if matches!(status.phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    status.conditions.iter().any(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    })
}

/// Owned by a DaemonSet.
pub fn is_daemonset_pod(pod: &Pod) -> bool {
    owned_by_daemonset(pod.owner_references())
}

/// Owner references that name a DaemonSet.
pub fn owned_by_daemonset(owners: &[OwnerReference]) -> bool {
    owners.iter().any(|o| o.kind == "DaemonSet")
}

/// A static (mirror) pod: owned by its Node or carrying the mirror annotation.
pub fn is_static_pod(pod: &Pod) -> bool {
    static_view(&PodView::of(pod))
}

/// [`is_static_pod`] of what Stowage reads of a pod.
pub fn static_view<C>(pod: &PodView<'_, C>) -> bool {
    pod.owner_references.iter().any(|o| o.kind == "Node")
        || pod
            .annotations
            .is_some_and(|a| a.contains_key(crate::lean::MIRROR_ANNOTATION))
}

/// A pod that no longer holds resources on its node.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

fn strip<K: Resource>(mut obj: K) -> K {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
    obj
}

/// `kubectl apply`'s copy of the whole object: often the largest annotation, read by nobody here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What the state keeps of a Node: everything the controllers read (labels, taints, provider id,
/// capacity, allocatable, the `Ready` condition), without the image list, node info, addresses
/// and daemon endpoints the kubelet reports (the images alone are several KB per node), the
/// other conditions, and the heartbeat time and message of `Ready`.
pub fn slim_node(node: Node) -> Node {
    let mut node = strip(node);
    if let Some(status) = node.status.as_mut() {
        if let Some(conditions) = status.conditions.as_mut() {
            conditions.retain(|c| c.type_ == "Ready");
            for c in conditions.iter_mut() {
                c.last_heartbeat_time = None;
                c.message = None;
            }
            conditions.shrink_to_fit();
        }
        status.images = None;
        status.node_info = None;
        status.addresses = None;
        status.daemon_endpoints = None;
        status.volumes_attached = None;
        status.volumes_in_use = None;
        status.config = None;
        status.features = None;
        status.runtime_handlers = None;
    }
    node
}

impl ClusterState {
    pub fn new() -> Self {
        Self::default()
    }

    // --- sync -----------------------------------------------------------------------------------

    pub fn mark_synced(&mut self, kind: Kind) {
        self.synced.insert(kind);
    }

    /// True once every kind completed its initial list.
    pub fn is_synced(&self) -> bool {
        Kind::ALL.iter().all(|k| self.synced.contains(k))
    }

    /// Sets the keys of `kind`'s objects that do not decode (after a full list).
    pub fn set_undecodable(&mut self, kind: Kind, keys: BTreeSet<String>) {
        if keys.is_empty() {
            self.undecodable.remove(&kind);
        } else {
            self.undecodable.insert(kind, keys);
        }
    }

    /// Records whether the object `key` of `kind` does not decode (after a watch event).
    pub fn mark_undecodable(&mut self, kind: Kind, key: &str, undecodable: bool) {
        if undecodable {
            self.undecodable
                .entry(kind)
                .or_default()
                .insert(key.to_string());
        } else if let Some(keys) = self.undecodable.get_mut(&kind) {
            keys.remove(key);
            if keys.is_empty() {
                self.undecodable.remove(&kind);
            }
        }
    }

    /// Keys of `kind`'s objects that exist but do not decode (and so are absent here).
    pub fn undecodable(&self, kind: Kind) -> impl Iterator<Item = &str> {
        self.undecodable
            .get(&kind)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Changes whenever a new pod became provisionable.
    pub fn provisionable_seq(&self) -> u64 {
        self.provisionable_seq
    }

    /// Changes whenever something consolidation decides on changed (see the field).
    pub fn disruption_seq(&self) -> u64 {
        self.disruption_seq
    }

    /// The nodes that had a pod bound to or removed from them since the last call.
    pub fn take_pod_event_nodes(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.pod_event_nodes)
    }

    // --- pods -----------------------------------------------------------------------------------

    pub fn apply_pod(&mut self, pod: Pod) {
        let pod = self.prepare_pod(pod);
        self.apply_prepared_pod(pod);
    }

    /// What the state will keep of `pod`, made ahead of applying it: a watch's list holds each
    /// pod in this form, not whole, until the list completes.
    pub fn prepare_pod(&mut self, pod: Pod) -> PreparedPod {
        let pod = strip(pod);
        let key = key_of(&pod);
        let key = match self.pods.get_key_value(key.as_str()) {
            Some((shared, _)) => shared.clone(),
            None => Arc::from(key),
        };
        PreparedPod::with_key(pod, key, &mut self.interner)
    }

    /// Applies a pod update made ready by [`Self::prepare_pod`].
    pub fn apply_prepared_pod(&mut self, pod: PreparedPod) {
        self.note_pod_event(&pod.lean);
        self.insert_pod(pod);
    }

    /// Marks the nodes a pod update binds a pod to or removes it from (it finished, moved).
    fn note_pod_event(&mut self, pod: &LeanPod) {
        let node_of = |p: &LeanPod| p.node_name.clone().filter(|_| !p.is_terminal());
        let new_node = node_of(pod);
        let old_node = self.pods.get(pod.key()).and_then(|old| node_of(old));
        if new_node != old_node {
            self.disruption_seq += 1;
            self.pod_event_nodes.extend(new_node.map(|n| n.to_string()));
            self.pod_event_nodes.extend(old_node.map(|n| n.to_string()));
        }
    }

    fn insert_pod(&mut self, pod: PreparedPod) {
        let PreparedPod {
            lean,
            provisionable,
        } = pod;
        let key = lean.shared_key().clone();
        self.unindex_pod(&key);
        if let Some(old) = self.pods.get(&key) {
            self.pdb_counts.pod(old, -1);
        }
        self.pdb_counts.pod(&lean, 1);
        let lean = Arc::new(lean);
        if let Some(node) = &lean.node_name {
            self.pods_by_node
                .entry(node.clone())
                .or_default()
                .insert(key.clone(), lean.clone());
            self.nominations.remove_pod(&key);
            self.rejected.remove(&*key);
        }
        if provisionable {
            if self.provisionable.insert(key.clone()) {
                self.provisionable_seq += 1;
            }
        } else {
            self.provisionable.remove(&*key);
        }
        self.pods.insert(key, lean);
    }

    /// The pod as the solver reads it (`None` when absent or unreadable).
    pub fn domain_pod(&self, key: &str) -> Option<Arc<PodRequest>> {
        self.pods.get(key).and_then(|p| p.request().cloned())
    }

    fn unindex_pod(&mut self, key: &str) {
        if let Some(old) = self.pods.get(key)
            && let Some(node) = old.node_name()
            && let Some(set) = self.pods_by_node.get_mut(node)
        {
            set.remove(key);
            if set.is_empty() {
                self.pods_by_node.remove(node);
            }
        }
    }

    pub fn delete_pod(&mut self, key: &str) {
        if let Some(node) = self
            .pods
            .get(key)
            .filter(|p| !p.is_terminal())
            .and_then(|p| p.node_name())
        {
            self.disruption_seq += 1;
            self.pod_event_nodes.insert(node.to_string());
        }
        self.unindex_pod(key);
        if let Some(old) = self.pods.remove(key) {
            self.pdb_counts.pod(&old, -1);
        }
        self.provisionable.remove(key);
        self.nominations.remove_pod(key);
        self.rejected.remove(key);
    }

    pub fn replace_pods(&mut self, pods: Vec<Pod>) {
        let pods = pods.into_iter().map(|p| self.prepare_pod(p)).collect();
        self.replace_prepared_pods(pods);
    }

    /// [`Self::replace_pods`] with pods made ready by [`Self::prepare_pod`].
    pub fn replace_prepared_pods(&mut self, pods: Vec<PreparedPod>) {
        self.pods.clear();
        self.pods_by_node.clear();
        self.provisionable.clear();
        self.pdb_counts.zero();
        self.disruption_seq += 1;
        for p in pods {
            self.insert_pod(p);
        }
        let pods = &self.pods;
        self.nominations.retain(|k, _| pods.contains_key(k));
        self.rejected.retain(|k, _| pods.contains_key(k.as_str()));
    }

    pub fn pod(&self, key: &str) -> Option<Arc<LeanPod>> {
        self.pods.get(key).cloned()
    }

    pub fn pods(&self) -> impl Iterator<Item = &Arc<LeanPod>> {
        self.pods.values()
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// Keys of the pods bound to `node` (any phase), in order.
    pub fn pod_keys_on_node(&self, node: &str) -> impl Iterator<Item = &str> {
        self.pods_by_node
            .get(node)
            .into_iter()
            .flat_map(|m| m.keys())
            .map(|k| &**k)
    }

    pub fn pods_on_node(&self, node: &str) -> Vec<Arc<LeanPod>> {
        self.pods_on_node_iter(node).cloned().collect()
    }

    /// The pods bound to `node` (any phase), in key order, borrowed: what
    /// [`Self::pods_on_node`] collects, for loops over every node that need not keep them.
    pub fn pods_on_node_iter(&self, node: &str) -> impl Iterator<Item = &Arc<LeanPod>> {
        self.pods_by_node
            .get(node)
            .into_iter()
            .flat_map(|m| m.values())
    }

    /// Provisionable pods that are not nominated to a live in-flight NodeClaim at `now`: the ones
    /// the next batch must buy for.
    pub fn pending_pods(&self, now: Timestamp) -> Vec<Arc<LeanPod>> {
        self.provisionable
            .iter()
            .filter(|k| !self.is_nominated(k, now))
            .filter_map(|k| self.pods.get(k).cloned())
            .collect()
    }

    /// Number of provisionable pods.
    pub fn provisionable_count(&self) -> usize {
        self.provisionable.len()
    }

    /// Distinct strings and label sets the state's pods share.
    pub fn interned(&self) -> (usize, usize) {
        self.interner.len()
    }

    // --- nominations ----------------------------------------------------------------------------

    /// Records at `now` that `pods` are expected to land on `claim` until `until`.
    pub fn nominate(
        &mut self,
        pods: impl IntoIterator<Item = String>,
        claim: &str,
        now: Timestamp,
        until: Timestamp,
    ) {
        for p in pods {
            self.nominations.insert(p, claim, now, until);
        }
    }

    /// Extends every nomination to `claim` (it made progress: launched, registered).
    pub fn extend_nominations(&mut self, claim: &str, until: Timestamp) {
        self.nominations.extend(claim, until);
    }

    /// Drops nominations to `claim` (it failed or was deleted), so its pods are bought for again.
    /// Pods that lost their nomination become pending again, which triggers a batch.
    pub fn clear_nominations(&mut self, claim: &str) {
        if self.nominations.remove_claim(claim) {
            self.provisionable_seq += 1;
        }
    }

    /// Asks for a new batch even though no new pod arrived (a NodePool changed, a claim failed).
    pub fn retrigger(&mut self) {
        self.provisionable_seq += 1;
    }

    /// True when `pod_key` is nominated to a claim that still exists and the window is open.
    pub fn is_nominated(&self, pod_key: &str, now: Timestamp) -> bool {
        self.nominations.by_pod.get(pod_key).is_some_and(|n| {
            n.until > now
                && self
                    .claims
                    .get(&n.claim)
                    .is_some_and(|c| c.metadata.deletion_timestamp.is_none())
        })
    }

    /// Nominations that did not work out: the pod is still unschedulable although the claim it
    /// is nominated to has been `Initialized`, and it nominated to it, for at least `grace` (the
    /// scheduler had time to try its Node, and the Node had less room than the plan assumed). Each as (pod key,
    /// claim, node name).
    pub fn failed_nominations(
        &self,
        now: Timestamp,
        grace: jiff::SignedDuration,
    ) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for (pod, n) in &self.nominations.by_pod {
            if !self.provisionable.contains(pod.as_str()) {
                continue;
            }
            let Some(claim) = self.claims.get(&n.claim) else {
                continue;
            };
            let initialized_at = claim
                .condition(conditions::INITIALIZED)
                .filter(|c| c.is_true())
                .and_then(|c| c.last_transition());
            let Some(at) = initialized_at else {
                continue;
            };
            // The scheduler had `grace` to place the pod since the Node became usable and since
            // the pod was nominated to it (a pod placed on a Node initialized long ago).
            if now.duration_since(at.max(n.since)) < grace {
                continue;
            }
            let node = claim
                .node_name()
                .map(str::to_string)
                .or_else(|| self.claim_node(claim).map(|n| n.name_any()))
                .unwrap_or_default();
            out.push((pod.clone(), n.claim.clone(), node));
        }
        out.sort();
        out
    }

    /// Drops `pod`'s nomination because it did not schedule on `node` (see
    /// [`Self::failed_nominations`]): it is pending again, and the next solves keep it off `node`.
    pub fn nomination_failed(&mut self, pod: &str, node: &str) {
        self.nominations.remove_pod(pod);
        if !node.is_empty() {
            self.rejected
                .entry(pod.to_string())
                .or_default()
                .insert(node.to_string());
        }
        self.provisionable_seq += 1;
    }

    /// Nodes `pod` did not schedule on although it was nominated to them.
    pub fn rejected_nodes(&self, pod: &str) -> Option<&BTreeSet<String>> {
        self.rejected.get(pod)
    }

    pub fn nomination(&self, pod_key: &str) -> Option<&Nomination> {
        self.nominations.by_pod.get(pod_key)
    }

    /// Pod keys nominated to `claim`.
    pub fn nominated_to(&self, claim: &str) -> Vec<String> {
        self.nominations.pods_of(claim)
    }

    /// [`Self::nominated_to`], borrowed.
    pub fn nominated_to_iter(&self, claim: &str) -> impl Iterator<Item = &str> {
        self.nominations
            .by_claim
            .get(claim)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    // --- nodes ----------------------------------------------------------------------------------

    pub fn apply_node(&mut self, node: Node) {
        let node = slim_node(node);
        let name = node.name_any();
        if self.nodes.get(&name).is_none_or(|old| {
            old.spec.as_ref().map(|s| &s.taints) != node.spec.as_ref().map(|s| &s.taints)
                || old.metadata.deletion_timestamp != node.metadata.deletion_timestamp
                || old.metadata.annotations != node.metadata.annotations
                || crate::disruption::candidates::not_ready(old)
                    != crate::disruption::candidates::not_ready(&node)
        }) {
            self.disruption_seq += 1;
        }
        if let Some(old) = self.nodes.get(&name)
            && let Some(pid) = old.spec.as_ref().and_then(|s| s.provider_id.as_deref())
        {
            self.node_by_provider.remove(pid);
        }
        let node = Arc::new(node);
        if let Some(pid) = node.spec.as_ref().and_then(|s| s.provider_id.clone()) {
            self.node_by_provider.insert(pid, node.clone());
        }
        self.nodes.insert(name, node);
    }

    pub fn delete_node(&mut self, name: &str) {
        self.disruption_seq += 1;
        if let Some(old) = self.nodes.remove(name)
            && let Some(pid) = old.spec.as_ref().and_then(|s| s.provider_id.as_deref())
        {
            self.node_by_provider.remove(pid);
        }
    }

    pub fn replace_nodes(&mut self, nodes: Vec<Node>) {
        self.nodes.clear();
        self.node_by_provider.clear();
        for n in nodes {
            self.apply_node(n);
        }
    }

    pub fn node(&self, name: &str) -> Option<Arc<Node>> {
        self.nodes.get(name).cloned()
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.nodes.values()
    }

    pub fn node_by_provider_id(&self, provider_id: &str) -> Option<Arc<Node>> {
        self.node_by_provider.get(provider_id).cloned()
    }

    // --- nodeclaims -----------------------------------------------------------------------------

    pub fn apply_claim(&mut self, claim: NodeClaim) {
        let claim = strip(claim);
        let name = claim.name_any();
        if self.claims.get(&name).is_none_or(|old| {
            old.status.as_ref().map(|s| &s.conditions)
                != claim.status.as_ref().map(|s| &s.conditions)
                || old.metadata.deletion_timestamp != claim.metadata.deletion_timestamp
                || old.metadata.annotations != claim.metadata.annotations
                || old.metadata.labels != claim.metadata.labels
        }) {
            self.disruption_seq += 1;
        }
        if let Some(old) = self.claims.get(&name)
            && let Some(pid) = old.provider_id()
        {
            self.claim_by_provider.remove(pid);
        }
        let claim = Arc::new(claim);
        if let Some(pid) = claim.provider_id() {
            self.claim_by_provider
                .insert(pid.to_string(), claim.clone());
        }
        self.claims.insert(name, claim);
    }

    pub fn delete_claim(&mut self, name: &str) {
        self.disruption_seq += 1;
        if let Some(old) = self.claims.remove(name)
            && let Some(pid) = old.provider_id()
        {
            self.claim_by_provider.remove(pid);
        }
        self.clear_nominations(name);
    }

    pub fn replace_claims(&mut self, claims: Vec<NodeClaim>) {
        self.claims.clear();
        self.claim_by_provider.clear();
        for c in claims {
            self.apply_claim(c);
        }
        let claims = &self.claims;
        self.nominations
            .retain(|_, n| claims.contains_key(&n.claim));
    }

    pub fn claim(&self, name: &str) -> Option<Arc<NodeClaim>> {
        self.claims.get(name).cloned()
    }

    pub fn claims(&self) -> impl Iterator<Item = &Arc<NodeClaim>> {
        self.claims.values()
    }

    pub fn claim_by_provider_id(&self, provider_id: &str) -> Option<Arc<NodeClaim>> {
        self.claim_by_provider.get(provider_id).cloned()
    }

    /// The claim a node belongs to (by provider id).
    pub fn claim_for_node(&self, node: &Node) -> Option<Arc<NodeClaim>> {
        node.spec
            .as_ref()
            .and_then(|s| s.provider_id.as_deref())
            .and_then(|p| self.claim_by_provider_id(p))
    }

    /// The Node of a claim, if one with its provider id exists.
    pub fn claim_node(&self, claim: &NodeClaim) -> Option<Arc<Node>> {
        claim
            .provider_id()
            .and_then(|p| self.node_by_provider_id(p))
    }

    /// Claims not being deleted that have no initialized Node yet: capacity on the way.
    pub fn in_flight_claims(&self) -> Vec<Arc<NodeClaim>> {
        self.claims
            .values()
            .filter(|c| {
                c.metadata.deletion_timestamp.is_none() && !c.is_true(conditions::INITIALIZED)
            })
            .cloned()
            .collect()
    }

    // --- nodepools, nodeclasses, daemonsets, pdbs -----------------------------------------------

    pub fn apply_nodepool(&mut self, pool: NodePool) {
        self.disruption_seq += 1;
        let pool = strip(pool);
        self.nodepools.insert(pool.name_any(), Arc::new(pool));
    }

    pub fn delete_nodepool(&mut self, name: &str) {
        self.disruption_seq += 1;
        self.nodepools.remove(name);
    }

    pub fn replace_nodepools(&mut self, pools: Vec<NodePool>) {
        self.nodepools.clear();
        for p in pools {
            self.apply_nodepool(p);
        }
    }

    pub fn nodepool(&self, name: &str) -> Option<Arc<NodePool>> {
        self.nodepools.get(name).cloned()
    }

    pub fn nodepools(&self) -> impl Iterator<Item = &Arc<NodePool>> {
        self.nodepools.values()
    }

    pub fn apply_nodeclass(&mut self, class: DynamicObject) {
        let class = strip(class);
        self.nodeclasses.insert(class.name_any(), Arc::new(class));
    }

    pub fn delete_nodeclass(&mut self, name: &str) {
        self.nodeclasses.remove(name);
    }

    pub fn replace_nodeclasses(&mut self, classes: Vec<DynamicObject>) {
        self.nodeclasses.clear();
        for c in classes {
            self.apply_nodeclass(c);
        }
    }

    pub fn nodeclass(&self, name: &str) -> Option<Arc<DynamicObject>> {
        self.nodeclasses.get(name).cloned()
    }

    pub fn nodeclasses(&self) -> impl Iterator<Item = &Arc<DynamicObject>> {
        self.nodeclasses.values()
    }

    pub fn apply_daemonset(&mut self, ds: DaemonSet) {
        let ds = strip(ds);
        self.daemonsets.insert(key_of(&ds), Arc::new(ds));
    }

    pub fn delete_daemonset(&mut self, key: &str) {
        self.daemonsets.remove(key);
    }

    pub fn replace_daemonsets(&mut self, dss: Vec<DaemonSet>) {
        self.daemonsets.clear();
        for d in dss {
            self.apply_daemonset(d);
        }
    }

    pub fn daemonsets(&self) -> impl Iterator<Item = &Arc<DaemonSet>> {
        self.daemonsets.values()
    }

    pub fn apply_pdb(&mut self, pdb: PodDisruptionBudget) {
        self.disruption_seq += 1;
        let pdb = strip(pdb);
        let key = key_of(&pdb);
        self.pdb_counts.pdb(&key, &pdb, self.pods.values());
        self.pdbs.insert(key, Arc::new(pdb));
    }

    pub fn delete_pdb(&mut self, key: &str) {
        self.disruption_seq += 1;
        self.pdbs.remove(key);
        self.pdb_counts.remove(key);
    }

    pub fn replace_pdbs(&mut self, pdbs: Vec<PodDisruptionBudget>) {
        self.pdbs.clear();
        self.pdb_counts.clear();
        for p in pdbs {
            self.apply_pdb(p);
        }
    }

    pub fn pdbs(&self) -> impl Iterator<Item = &Arc<PodDisruptionBudget>> {
        self.pdbs.values()
    }

    /// The PDBs' selected pods, counted as pods come and go.
    pub fn pdb_counts(&self) -> &PdbCounts {
        &self.pdb_counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;

    /// `stowage plan` prepares pods on its reading threads, apart from the state: the state must
    /// keep exactly what it keeps of the same pod applied directly (one conversion).
    #[test]
    fn a_pod_prepared_apart_is_what_the_state_makes_of_it() {
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        let mut pods = vec![
            pending_pod("default", "a", "1"),
            bound(pending_pod("default", "b", "2"), "n1"),
            owned_by(pending_pod("default", "c", "1"), "DaemonSet"),
            owned_by(pending_pod("kube-system", "d", "1"), "ReplicaSet"),
        ];
        let mut labelled = pending_pod("shop", "e", "500m");
        labelled.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        labelled.metadata.annotations = Some(
            [
                (LAST_APPLIED.to_string(), "{}".to_string()),
                (
                    stowage_api::labels::DO_NOT_DISRUPT.to_string(),
                    "true".to_string(),
                ),
                ("other".to_string(), "y".to_string()),
            ]
            .into(),
        );
        pods.push(labelled);
        // Unreadable by the solver: kept whole to report its error.
        let mut unreadable = pending_pod("default", "f", "1");
        unreadable.spec.as_mut().unwrap().containers[0]
            .resources
            .as_mut()
            .unwrap()
            .requests = Some([("cpu".to_string(), Quantity("x".into()))].into());
        pods.push(unreadable);
        let mut direct = ClusterState::new();
        let mut apart = ClusterState::new();
        let mut interner = Interner::default();
        for p in pods {
            let prepared = PreparedPod::new(p.clone(), &mut interner);
            assert_eq!(prepared.lean().key(), key_of(&p));
            assert_eq!(prepared.provisionable(), is_provisionable(&p));
            apart.apply_prepared_pod(prepared);
            direct.apply_pod(p);
        }
        assert_eq!(apart.pod_count(), 6);
        for p in direct.pods() {
            let q = apart.pod(p.key()).unwrap();
            assert_eq!(format!("{p:?}"), format!("{q:?}"));
        }
        let keys = |s: &ClusterState| {
            let mut k: Vec<String> = s
                .pending_pods(ts("2026-01-01T00:00:00Z"))
                .iter()
                .map(|p| p.key().to_string())
                .collect();
            k.sort();
            k
        };
        assert_eq!(keys(&apart), keys(&direct));
        assert_eq!(
            keys(&apart),
            ["default/a", "default/f", "kube-system/d", "shop/e"]
        );
        assert_eq!(
            apart.pod_keys_on_node("n1").collect::<Vec<_>>(),
            ["default/b"]
        );
    }

    #[test]
    fn provisionable_follows_the_scheduler_condition_and_exclusions() {
        let p = pending_pod("default", "a", "1");
        assert!(is_provisionable(&p));
        assert!(!is_provisionable(&bound(p.clone(), "n1")));
        assert!(!is_provisionable(&owned_by(p.clone(), "DaemonSet")));
        assert!(!is_provisionable(&owned_by(p.clone(), "Node")));
        assert!(is_provisionable(&owned_by(p.clone(), "ReplicaSet")));
        let mut deleting = p.clone();
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts("2026-01-01T00:00:00Z")),
        );
        assert!(!is_provisionable(&deleting));
        let mut preempting = p.clone();
        preempting.status.as_mut().unwrap().nominated_node_name = Some("n2".into());
        assert!(!is_provisionable(&preempting));
        let mut not_yet = p.clone();
        not_yet.status.as_mut().unwrap().conditions = None;
        assert!(!is_provisionable(&not_yet));
    }

    #[test]
    fn tracks_pods_per_node_and_provisionable_sequence() {
        let mut s = ClusterState::new();
        s.apply_pod(pending_pod("default", "a", "1"));
        s.apply_pod(pending_pod("default", "b", "1"));
        assert_eq!(s.provisionable_seq(), 2);
        // Re-applying the same pending pod is not a new trigger.
        s.apply_pod(pending_pod("default", "a", "1"));
        assert_eq!(s.provisionable_seq(), 2);
        s.apply_pod(bound(pending_pod("default", "a", "1"), "n1"));
        assert_eq!(s.provisionable_count(), 1);
        assert_eq!(s.pods_on_node("n1").len(), 1);
        // Moving is re-indexed; deleting removes it.
        s.apply_pod(bound(pending_pod("default", "a", "1"), "n2"));
        assert!(s.pods_on_node("n1").is_empty());
        s.delete_pod("default/a");
        assert!(s.pods_on_node("n2").is_empty());
        assert_eq!(s.pod_count(), 1);
    }

    #[test]
    fn nominated_pods_are_not_pending_until_the_window_closes_or_the_claim_goes() {
        let mut s = ClusterState::new();
        s.apply_pod(pending_pod("default", "a", "1"));
        s.apply_pod(pending_pod("default", "b", "1"));
        s.apply_claim(claim("pool-x", "pool"));
        let now = ts("2026-01-01T00:00:00Z");
        s.nominate(
            ["default/a".to_string()],
            "pool-x",
            now,
            ts("2026-01-01T00:00:20Z"),
        );
        let pending: Vec<String> = s
            .pending_pods(now)
            .iter()
            .map(|p| p.key().to_string())
            .collect();
        assert_eq!(pending, vec!["default/b"]);
        assert_eq!(s.pending_pods(ts("2026-01-01T00:00:21Z")).len(), 2);
        let seq = s.provisionable_seq();
        s.delete_claim("pool-x");
        assert!(
            s.provisionable_seq() > seq,
            "losing a nomination triggers a batch"
        );
        assert_eq!(s.pending_pods(now).len(), 2);
    }

    #[test]
    fn finds_claims_and_nodes_by_provider_id() {
        let mut s = ClusterState::new();
        s.apply_claim(launched(claim("c1", "pool"), "fake:///z/i-1"));
        s.apply_claim(claim("c2", "pool"));
        assert_eq!(s.in_flight_claims().len(), 2);
        s.apply_node(node("n1", "fake:///z/i-1", true));
        let c1 = s.claim("c1").unwrap();
        assert_eq!(
            s.claim_node(&c1).unwrap().metadata.name.as_deref(),
            Some("n1")
        );
        assert_eq!(
            s.claim_for_node(&s.node("n1").unwrap())
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("c1")
        );
        s.delete_node("n1");
        assert!(s.claim_node(&c1).is_none());
        assert!(!s.is_synced());
        for k in Kind::ALL {
            s.mark_synced(k);
        }
        assert!(s.is_synced());
    }

    #[test]
    fn a_pod_still_unschedulable_after_its_claim_initialized_is_pending_again() {
        let mut s = ClusterState::new();
        s.apply_pod(pending_pod("default", "a", "1"));
        s.apply_pod(pending_pod("default", "b", "1"));
        let mut c = launched(claim("c1", "pool"), "fake:///z/i-1");
        s.apply_claim(c.clone());
        let far = ts("2026-01-01T01:00:00Z");
        s.nominate(
            ["default/a".to_string(), "default/b".to_string()],
            "c1",
            ts("2026-01-01T00:00:00Z"),
            far,
        );
        let grace = jiff::SignedDuration::from_secs(30);
        let t = |s: &str| ts(&format!("2026-01-01T00:{s}Z"));
        // Not initialized: the pods wait, however long.
        assert!(s.failed_nominations(t("10:00"), grace).is_empty());
        c.status_mut().node_name = Some("n1".into());
        c.status_mut()
            .set_true(conditions::INITIALIZED, "Initialized", t("01:00"));
        s.apply_claim(c);
        // b landed; a did not, but the scheduler gets its grace period.
        s.apply_pod(bound(pending_pod("default", "b", "1"), "n1"));
        assert!(s.failed_nominations(t("01:29"), grace).is_empty());
        let failed = s.failed_nominations(t("01:30"), grace);
        assert_eq!(
            failed,
            vec![("default/a".to_string(), "c1".to_string(), "n1".to_string())]
        );
        assert!(s.pending_pods(t("01:30")).is_empty());
        let seq = s.provisionable_seq();
        s.nomination_failed("default/a", "n1");
        assert!(s.provisionable_seq() > seq, "a batch is triggered");
        let pending: Vec<String> = s
            .pending_pods(t("01:30"))
            .iter()
            .map(|p| p.key().to_string())
            .collect();
        assert_eq!(pending, vec!["default/a"]);
        assert!(s.rejected_nodes("default/a").unwrap().contains("n1"));
        // Once bound anywhere, the record goes.
        s.apply_pod(bound(pending_pod("default", "a", "1"), "n2"));
        assert!(s.rejected_nodes("default/a").is_none());
    }

    #[test]
    fn a_pod_placed_on_a_node_initialized_long_ago_gets_the_grace_from_its_nomination() {
        let mut s = ClusterState::new();
        s.apply_pod(pending_pod("default", "a", "1"));
        let mut c = launched(claim("c1", "pool"), "fake:///z/i-1");
        c.status_mut().node_name = Some("n1".into());
        c.status_mut().set_true(
            conditions::INITIALIZED,
            "Initialized",
            ts("2026-01-01T00:00:00Z"),
        );
        s.apply_claim(c);
        let grace = jiff::SignedDuration::from_secs(30);
        let t = |s: &str| ts(&format!("2026-01-01T01:{s}Z"));
        s.nominate(["default/a".to_string()], "c1", t("00:00"), t("00:20"));
        assert!(s.failed_nominations(t("00:29"), grace).is_empty());
        // Nominated again to the same claim (the window closed, the solve placed it there
        // again): the grace still runs from the first nomination.
        s.nominate(["default/a".to_string()], "c1", t("00:25"), t("00:45"));
        assert_eq!(s.failed_nominations(t("00:30"), grace).len(), 1);
    }
}
