//! The referee: what a disruption controller must never do, counted by the simulated cluster
//! itself from the API server's record of changes and the fake cloud's events — never from the
//! controllers' code or their view of the cluster.
//!
//! - **PDB violations.** A pod covered by a PodDisruptionBudget goes away (gets a deletion
//!   timestamp, is deleted, or is killed because its instance was terminated or its Node
//!   deleted) while it was healthy and the budget allowed no disruption (healthy pods minus the
//!   desired healthy count, both before the change, at most 0).
//! - **Budget violations.** A node of a NodePool starts disrupting (Node tainted
//!   `stowage.dev/disrupted` or being deleted; NodeClaim being deleted or condition `Disrupting`)
//!   while the pool's disrupting nodes, this one included, outnumber what
//!   `spec.disruption.budgets` allow for its reason (the `Disrupting` condition's reason; a node
//!   that leaves disruption without naming one is held to the strictest reason). The allowance
//!   comes from `stowage_api`'s `Disruption::allowed_disruptions` over the pool's initialized,
//!   not terminated nodes.
//! - **Exemptions.** Involuntary disruption is no controller's choice: nodes whose instance got
//!   an interruption warning or was terminated, and expired NodeClaims, are not counted against
//!   budgets, and pods killed with an interrupted instance are not disruptions, nor are pods
//!   deleted in its last moments (within their own grace period of the instance's end, when
//!   waiting for their PDB would have them killed anyway); those a PDB was guarding are counted
//!   apart (`pods_cut_short`). A pod deleted earlier on an interrupted instance is judged as
//!   any other. Pods the
//!   simulated workload controllers delete themselves (scale-down, finished Jobs and Spark
//!   applications, deleted workloads and everything their deletion cascades to) are not
//!   disruptions either; DaemonSet and mirror pods never are.
//! - **Pods lost.** A disrupted pod with no controller to recreate it, or a pod still running when
//!   its instance was terminated by the controllers (killed, not drained).
//!
//! Key decision: every change is replayed in resourceVersion order across kinds, so "at the
//! moment of the change" is exact however late the loop drains; cloud events are applied after
//! the store changes drained with them.

use crate::json::JsonPointer as _;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize as _, Serialize};
use serde_json::Value;
use stowage_api::nodepool::{Disruption, DisruptionReason};
use stowage_api::{NodeClaim, NodePool, conditions, labels};
use stowage_cloud::fake::{FakeCloud, FakeEvent, TerminationReason};
use tokio::sync::{broadcast, mpsc};

use crate::apiserver::budget;
use crate::apiserver::selector::LabelSelector;
use crate::apiserver::{ApiServer, CoreKinds, EventType, Filter, WatchMsg, name_of, namespace_of};

/// The controllers' annotation on a NodeClaim a disruption command is removing (JSON with the
/// command's `method`, its replacements and start time); its value is the same on every
/// NodeClaim of one command.
pub const COMMAND_ANNOTATION: &str = "stowage.dev/disruption-command";
/// The controllers' annotation on a NodeClaim launched to replace disrupted ones.
pub const REPLACEMENT_ANNOTATION: &str = "stowage.dev/replacement-for";

/// At most this many violations are described in the report (the counts are exact).
const MAX_DETAILS: usize = 20;

/// Leeway of [`Referee::cut_short`] on an interrupted instance's end.
const CUT_SHORT_SLACK: jiff::SignedDuration = jiff::SignedDuration::from_secs(5);

/// What the referee counted.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Pods covered by a PDB that went away while it allowed no disruption.
    pub pdb_violations: u64,
    /// Nodes that started disrupting beyond their NodePool's budget.
    pub budget_violations: u64,
    /// Pods disrupted (evicted, deleted or killed by someone other than the simulated cluster,
    /// interruptions excluded).
    pub pods_disrupted: u64,
    /// Of those, pods still running when their instance was terminated (not drained).
    pub pods_killed: u64,
    /// Disrupted pods nothing recreates, plus killed pods.
    pub pods_lost: u64,
    /// Pods that went away with an interrupted instance (involuntary, exempt): killed with it,
    /// or deleted within their grace period of its end.
    pub pods_interrupted: u64,
    /// Of those, pods deleted within their grace period of their interrupted instance's end
    /// while a PDB covering them allowed no disruption: the notice left no time to honour the
    /// budget (the pods would have been killed with the instance instead). Not violations.
    pub pods_cut_short: u64,
    /// Nodes that started a voluntary disruption, by reason (`Unknown` when the NodeClaim never
    /// named one).
    pub disruptions_by_reason: BTreeMap<String, u64>,
    /// Nodes that started a voluntary disruption, by method (from the controllers' command
    /// annotation on the NodeClaim; `unknown` when there is none).
    pub disruptions_by_method: BTreeMap<String, u64>,
    /// Disruption commands started (distinct command annotations: one per decision acted on).
    pub disruption_commands: u64,
    /// The most nodes of each NodePool disrupting at once.
    pub max_disrupting_by_pool: BTreeMap<String, u64>,
    /// Summed price of the nodes removed (NodeClaim gone or instance terminated) after a
    /// voluntary disruption started, $/h.
    pub removed_price_per_hour: f64,
    /// Summed price of the replacement nodes (NodeClaims annotated as replacements) that
    /// initialized, $/h.
    pub replacement_price_per_hour: f64,
    /// The first violations, described.
    pub details: Vec<String>,
}

impl Tally {
    fn note(&mut self, detail: String) {
        if self.details.len() < MAX_DETAILS {
            self.details.push(detail);
        }
    }
}

#[derive(Clone, Debug)]
struct PodView {
    obj: Arc<Value>,
    uid: String,
    node: Option<String>,
    healthy: bool,
    terminating: bool,
    terminal: bool,
    daemon_or_mirror: bool,
    /// The uid of the owner reference marked `controller`.
    controller: Option<String>,
    /// `spec.terminationGracePeriodSeconds` (30 when unset).
    grace: i64,
    /// Killed with its node: no longer counted, its later deletion is not a new event.
    gone: bool,
}

impl PodView {
    fn new(obj: Arc<Value>) -> Self {
        let s = |p: &str| obj.ptr(p).and_then(Value::as_str).map(str::to_string);
        let phase = s("/status/phase").unwrap_or_default();
        let terminating = obj
            .ptr("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null());
        let ready = obj
            .ptr("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
            })
            .is_none_or(|c| c.get("status").and_then(Value::as_str) == Some("True"));
        let controller_ref = obj
            .ptr("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|owners| {
                owners
                    .iter()
                    .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
            });
        let daemon = controller_ref
            .is_some_and(|o| o.get("kind").and_then(Value::as_str) == Some("DaemonSet"));
        let mirror = obj
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get("kubernetes.io/config.mirror"))
            .is_some();
        Self {
            uid: s("/metadata/uid").unwrap_or_default(),
            node: s("/spec/nodeName").filter(|n| !n.is_empty()),
            healthy: phase == "Running" && ready && !terminating,
            terminating,
            terminal: phase == "Succeeded" || phase == "Failed",
            daemon_or_mirror: daemon || mirror,
            controller: controller_ref
                .and_then(|o| o.get("uid").and_then(Value::as_str))
                .map(str::to_string),
            grace: obj
                .ptr("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
                .max(0),
            gone: false,
            obj,
        }
    }

    fn healthy_now(&self) -> bool {
        !self.gone && self.healthy
    }

    /// Present and not leaving yet: its going away would be a disruption.
    fn present(&self) -> bool {
        !self.gone && !self.terminating && !self.terminal
    }
}

#[derive(Clone, Debug)]
struct PdbView {
    ns: String,
    name: String,
    selector: Option<LabelSelector>,
    spec: Option<Value>,
    healthy: i64,
    /// Pods it selects (in the API server, whatever their phase).
    pods: i64,
    /// Their controllers' uids -> how many of the pods each owns.
    controllers: HashMap<String, i64>,
}

/// A scalable controller's `replicas`, and the Deployment whose scale counts instead (for a
/// ReplicaSet a Deployment owns).
#[derive(Clone, Debug)]
struct Scale {
    replicas: i64,
    owner: Option<String>,
}

impl PdbView {
    fn covers(&self, pod: &PodView) -> bool {
        self.selector.as_ref().is_some_and(|s| s.matches(&pod.obj))
    }

    /// The budget now, as the eviction subresource would see it (`None`: uncountable, which
    /// allows no disruption).
    fn budget(&self, scales: &HashMap<String, Scale>) -> Option<budget::Budget> {
        budget::budget(self.spec.as_ref(), self.healthy, self.pods, || {
            let mut seen = HashSet::new();
            let mut total = 0;
            for uid in self.controllers.keys() {
                let mut s = scales.get(uid);
                let mut at = uid;
                if let Some(owner) = s.and_then(|s| s.owner.as_ref()) {
                    s = scales.get(owner);
                    at = owner;
                }
                let s = s.ok_or_else(|| budget::CountError::NoScalableController(uid.clone()))?;
                if seen.insert(at) {
                    total += s.replicas;
                }
            }
            Ok(total)
        })
        .ok()
    }

    fn count(&mut self, pod: &PodView, sign: i64) {
        if self.covers(pod) {
            self.healthy += sign * i64::from(pod.healthy_now());
            self.pods += sign;
            if let Some(c) = &pod.controller {
                let n = self.controllers.entry(c.clone()).or_default();
                *n += sign;
                if *n == 0 {
                    self.controllers.remove(c);
                }
            }
        }
    }
}

#[derive(Clone, Debug)]
struct ClaimView {
    pool: Option<String>,
    node: Option<String>,
    provider_id: Option<String>,
    initialized: bool,
    deleting: bool,
    /// The `Disrupting` condition's reason when it is true.
    disrupting: Option<String>,
    /// The controllers' command annotation (the whole value, and its `method`).
    command: Option<(String, String)>,
    expires: Option<jiff::Timestamp>,
}

#[derive(Clone, Debug)]
struct NodeView {
    provider_id: String,
    /// Its NodeClaim (label, or the claim naming it).
    claim: Option<String>,
    tainted: bool,
    deleting: bool,
}

/// A node counted as disrupting, and what its pool looked like when it started.
#[derive(Clone, Debug)]
struct Entry {
    checked: bool,
    price: f64,
    count: u32,
    total: u32,
    at: jiff::Timestamp,
}

/// How a pod went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gone {
    /// Deleted or evicted (deletion timestamp set, or removed at once).
    Deleted,
    /// Still running when its instance was terminated or its Node deleted.
    Killed { interrupted: bool },
}

/// The referee (see the module docs). Created by the cluster, drained on every step.
pub(crate) struct Referee {
    cloud: FakeCloud,
    rx: Vec<mpsc::UnboundedReceiver<WatchMsg>>,
    cloud_rx: broadcast::Receiver<FakeEvent>,
    pods: HashMap<String, PodView>,
    pods_by_node: HashMap<String, BTreeSet<String>>,
    pdbs: BTreeMap<String, PdbView>,
    /// ReplicaSets' and Deployments' scales by uid (a PDB's expected count).
    scales: HashMap<String, Scale>,
    pools: BTreeMap<String, Disruption>,
    claims: BTreeMap<String, ClaimView>,
    nodes: HashMap<String, NodeView>,
    node_by_pid: HashMap<String, String>,
    /// Claims whose instance got an interruption warning -> when the instance ends.
    interrupted: HashMap<String, jiff::Timestamp>,
    terminated: HashSet<String>,
    /// Pool -> claims disrupting now.
    disrupting: BTreeMap<String, BTreeMap<String, Entry>>,
    /// Pods the simulated cluster deletes itself (announced before it deletes them).
    own_deletions: HashSet<String>,
    /// Owner uids whose dependents' deletion is the simulated cluster's own doing.
    own_owners: HashSet<String>,
    /// Command annotations seen (each is one command).
    commands: HashSet<String>,
    pub(crate) tally: Tally,
}

impl std::fmt::Debug for Referee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Referee")
            .field("tally", &self.tally)
            .finish_non_exhaustive()
    }
}

impl Referee {
    pub(crate) fn new(api: &ApiServer, k: CoreKinds, cloud: &FakeCloud) -> Self {
        let store = api.store();
        let deployment = store.kind_id("apps", "Deployment");
        let rx = [k.pod, k.node, k.nodeclaim, k.nodepool, k.pdb, k.replicaset]
            .into_iter()
            .chain(deployment)
            .map(|kind| store.watch(kind, Filter::default(), None, false).1)
            .collect();
        Self {
            cloud: cloud.clone(),
            rx,
            cloud_rx: cloud.subscribe(),
            pods: HashMap::new(),
            pods_by_node: HashMap::new(),
            pdbs: BTreeMap::new(),
            scales: HashMap::new(),
            pools: BTreeMap::new(),
            claims: BTreeMap::new(),
            nodes: HashMap::new(),
            node_by_pid: HashMap::new(),
            interrupted: HashMap::new(),
            terminated: HashSet::new(),
            disrupting: BTreeMap::new(),
            own_deletions: HashSet::new(),
            own_owners: HashSet::new(),
            commands: HashSet::new(),
            tally: Tally::default(),
        }
    }

    /// The simulated cluster is about to delete this pod itself (not a disruption).
    pub(crate) fn own_pod_deletion(&mut self, key: &str) {
        self.own_deletions.insert(key.to_string());
    }

    /// The simulated cluster is about to delete this owner: what its deletion cascades to is
    /// not a disruption.
    pub(crate) fn own_owner_deletion(&mut self, uid: &str) {
        if !uid.is_empty() {
            self.own_owners.insert(uid.to_string());
        }
    }

    /// Applies every change that happened since the last call, in order.
    pub(crate) fn drain(&mut self, now: jiff::Timestamp) {
        let mut events: Vec<(u64, usize, EventType, Arc<Value>)> = Vec::new();
        for (i, rx) in self.rx.iter_mut().enumerate() {
            while let Ok(msg) = rx.try_recv() {
                if let WatchMsg::Event { etype, object, .. } = msg {
                    let rv = object
                        .ptr("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    events.push((rv, i, etype, object));
                }
            }
        }
        events.sort_by_key(|(rv, i, _, _)| (*rv, *i));
        for (_, i, etype, obj) in events {
            match i {
                0 => self.on_pod(etype, obj, now),
                1 => self.on_node(etype, &obj, now),
                2 => self.on_claim(etype, &obj, now),
                3 => self.on_pool(etype, &obj, now),
                4 => self.on_pdb(etype, obj),
                _ => self.on_scale(etype, &obj),
            }
        }
        loop {
            match self.cloud_rx.try_recv() {
                Ok(ev) => self.on_cloud(ev, now),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    tracing::warn!(
                        lost = n,
                        "the referee lagged behind the fake cloud's events"
                    );
                }
                Err(_) => break,
            }
        }
    }

    /// Called once at the end: nodes still disrupting without a stated reason are judged now.
    pub(crate) fn finish(&mut self) {
        let open: Vec<(String, String)> = self
            .disrupting
            .iter()
            .flat_map(|(p, m)| {
                m.iter()
                    .filter(|(_, e)| !e.checked)
                    .map(|(c, _)| (p.clone(), c.clone()))
            })
            .collect();
        for (pool, claim) in open {
            self.check(&pool, &claim, None);
        }
    }

    // --- pods -----------------------------------------------------------------------------

    fn on_pod(&mut self, etype: EventType, obj: Arc<Value>, now: jiff::Timestamp) {
        let key = stowage_api::namespaced_key(namespace_of(&obj), name_of(&obj));
        let prev = self.pods.get(&key).cloned();
        let mut next = (etype != EventType::Deleted).then(|| PodView::new(obj));
        if let (Some(p), Some(n)) = (&prev, &mut next) {
            n.gone = p.gone;
        }
        if let Some(p) = &prev
            && p.present()
            && next.as_ref().is_none_or(|n| n.terminating || n.terminal)
        {
            // Finishing (Succeeded/Failed) is no disruption; anything else leaving is.
            if next.as_ref().is_none_or(|n| !n.terminal || n.terminating) {
                self.went_away(&key, p, Gone::Deleted, now);
            }
        }
        self.replace_pod(&key, prev.as_ref(), next);
    }

    fn replace_pod(&mut self, key: &str, prev: Option<&PodView>, next: Option<PodView>) {
        // A change that leaves the pod's labels (so the PDBs covering it), health and
        // controller as they were changes no PDB's counts (most changes: binds, starts).
        let same_counts = match (prev, &next) {
            (Some(p), Some(n)) => {
                p.healthy_now() == n.healthy_now()
                    && p.controller == n.controller
                    && p.obj.ptr("/metadata/labels") == n.obj.ptr("/metadata/labels")
            }
            _ => false,
        };
        let ns = key.split_once('/').map_or("", |(ns, _)| ns).to_string();
        for pdb in if same_counts {
            Vec::new()
        } else {
            self.pdbs_in(&ns)
        } {
            if let Some(v) = self.pdbs.get_mut(&pdb) {
                if let Some(p) = prev {
                    v.count(p, -1);
                }
                if let Some(n) = &next {
                    v.count(n, 1);
                }
            }
        }
        if let Some(n) = prev.and_then(|p| p.node.as_ref())
            && let Some(set) = self.pods_by_node.get_mut(n)
        {
            set.remove(key);
        }
        match next {
            Some(n) => {
                if let Some(node) = &n.node {
                    self.pods_by_node
                        .entry(node.clone())
                        .or_default()
                        .insert(key.to_string());
                }
                self.pods.insert(key.to_string(), n);
            }
            None => {
                self.pods.remove(key);
                self.own_deletions.remove(key);
            }
        }
    }

    fn pdbs_in(&self, ns: &str) -> Vec<String> {
        let prefix = format!("{ns}/");
        self.pdbs
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// A present pod leaves at `now`: attribute it and judge it against its PDBs (state
    /// before).
    fn went_away(&mut self, key: &str, pod: &PodView, how: Gone, now: jiff::Timestamp) {
        if pod.daemon_or_mirror {
            return;
        }
        let own = self.own_deletions.contains(key)
            || pod
                .controller
                .as_ref()
                .is_some_and(|o| self.own_owners.contains(o));
        if own && how == Gone::Deleted {
            self.own_owners.insert(pod.uid.clone());
            return;
        }
        if how == (Gone::Killed { interrupted: true }) {
            self.own_owners.insert(pod.uid.clone());
            self.tally.pods_interrupted += 1;
            return;
        }
        if how == Gone::Deleted && self.cut_short(pod, now) {
            self.own_owners.insert(pod.uid.clone());
            self.tally.pods_interrupted += 1;
            if pod.healthy_now() && !self.pdbs_allowing_none(key, pod).is_empty() {
                self.tally.pods_cut_short += 1;
            }
            return;
        }
        self.tally.pods_disrupted += 1;
        let killed = matches!(how, Gone::Killed { .. });
        if killed {
            self.tally.pods_killed += 1;
        }
        if killed || pod.controller.is_none() {
            self.tally.pods_lost += 1;
            self.tally.note(format!(
                "pod {key} lost ({})",
                if killed {
                    "killed with its node"
                } else {
                    "no controller recreates it"
                }
            ));
        }
        if !pod.healthy_now() {
            return;
        }
        for (name, healthy, desired) in self.pdbs_allowing_none(key, pod) {
            self.tally.pdb_violations += 1;
            self.tally.note(format!(
                "pod {key} went away ({how:?}) while PDB {name} allowed no disruption ({healthy} healthy, {desired} desired)"
            ));
        }
    }

    /// The PDBs covering `pod` that allow no disruption now: (`namespace/name`, healthy,
    /// desired; -1 when the budget cannot be counted).
    fn pdbs_allowing_none(&self, key: &str, pod: &PodView) -> Vec<(String, i64, i64)> {
        let ns = key.split_once('/').map_or("", |(ns, _)| ns);
        self.pdbs_in(ns)
            .iter()
            .filter_map(|name| self.pdbs.get(name))
            .filter(|pdb| pdb.covers(pod))
            .filter_map(|pdb| {
                let b = pdb.budget(&self.scales);
                b.is_none_or(|b| b.allowed <= 0).then(|| {
                    (
                        format!("{}/{}", pdb.ns, pdb.name),
                        pdb.healthy,
                        b.map_or(-1, |b| b.desired),
                    )
                })
            })
            .collect()
    }

    /// Whether `pod`, deleted at `now`, goes with an interrupted instance: its instance got a
    /// warning and ends within the pod's grace period (with [`CUT_SHORT_SLACK`] for the
    /// notice's event time, which a queue message carries in whole seconds).
    fn cut_short(&self, pod: &PodView, now: jiff::Timestamp) -> bool {
        let Some(end) = pod
            .node
            .as_ref()
            .and_then(|n| self.nodes.get(n))
            .and_then(|n| n.claim.as_ref())
            .and_then(|c| self.interrupted.get(c))
        else {
            return false;
        };
        let grace = jiff::SignedDuration::from_secs(pod.grace) + CUT_SHORT_SLACK;
        now.checked_add(grace).is_ok_and(|t| t >= *end)
    }

    /// Pods still on a node that dies with it at `now`.
    fn kill_pods_of(&mut self, node: &str, interrupted: bool, now: jiff::Timestamp) {
        let keys: Vec<String> = self
            .pods_by_node
            .get(node)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for key in keys {
            let Some(p) = self.pods.get(&key).cloned() else {
                continue;
            };
            if !p.present() {
                continue;
            }
            self.went_away(&key, &p, Gone::Killed { interrupted }, now);
            let mut gone = p.clone();
            gone.gone = true;
            self.replace_pod(&key, Some(&p), Some(gone));
        }
    }

    fn on_pdb(&mut self, etype: EventType, obj: Arc<Value>) {
        let ns = namespace_of(&obj).to_string();
        let name = name_of(&obj).to_string();
        let key = stowage_api::namespaced_key(&ns, &name);
        if etype == EventType::Deleted {
            self.pdbs.remove(&key);
            return;
        }
        let mut v = PdbView {
            ns: ns.clone(),
            name,
            selector: obj
                .ptr("/spec/selector")
                .and_then(LabelSelector::from_object)
                .filter(|s| !s.is_empty()),
            spec: obj.get("spec").cloned(),
            healthy: 0,
            pods: 0,
            controllers: HashMap::new(),
        };
        let prefix = format!("{ns}/");
        for (k, p) in &self.pods {
            if k.starts_with(&prefix) {
                v.count(p, 1);
            }
        }
        self.pdbs.insert(key, v);
    }

    /// A ReplicaSet or Deployment changed: its `replicas` are what PDBs over its pods expect.
    fn on_scale(&mut self, etype: EventType, obj: &Value) {
        let uid = obj
            .ptr("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if etype == EventType::Deleted {
            self.scales.remove(&uid);
            return;
        }
        let owner = budget::controller_of(obj)
            .filter(|(kind, _, _)| kind == "Deployment")
            .map(|(_, _, uid)| uid);
        self.scales.insert(
            uid,
            Scale {
                replicas: budget::replicas_of(obj),
                owner,
            },
        );
    }

    // --- nodes, claims, pools -------------------------------------------------------------

    fn on_node(&mut self, etype: EventType, obj: &Value, now: jiff::Timestamp) {
        let name = name_of(obj).to_string();
        let label = |k: &str| crate::json::meta_str(obj, "labels", k).map(str::to_string);
        let claim = label(labels::NODECLAIM).or_else(|| {
            self.claims
                .iter()
                .find(|(_, c)| c.node.as_deref() == Some(&name))
                .map(|(n, _)| n.clone())
        });
        if etype == EventType::Deleted {
            let interrupted = claim
                .as_ref()
                .is_some_and(|c| self.interrupted.contains_key(c));
            self.kill_pods_of(&name, interrupted, now);
            if let Some(v) = self.nodes.remove(&name) {
                self.node_by_pid.remove(&v.provider_id);
            }
            if let Some(c) = claim {
                self.reevaluate(&c, now);
            }
            return;
        }
        let provider_id = obj
            .ptr("/spec/providerID")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let tainted = obj
            .ptr("/spec/taints")
            .and_then(Value::as_array)
            .is_some_and(|ts| {
                ts.iter().any(|t| {
                    t.get("key").and_then(Value::as_str) == Some(labels::DISRUPTED_TAINT_KEY)
                })
            });
        let deleting = obj
            .ptr("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null());
        if !provider_id.is_empty() {
            self.node_by_pid.insert(provider_id.clone(), name.clone());
        }
        self.nodes.insert(
            name,
            NodeView {
                provider_id,
                claim: claim.clone(),
                tainted,
                deleting,
            },
        );
        if let Some(c) = claim {
            self.reevaluate(&c, now);
        }
    }

    fn on_claim(&mut self, etype: EventType, obj: &Value, now: jiff::Timestamp) {
        let name = name_of(obj).to_string();
        if etype == EventType::Deleted {
            self.claims.remove(&name);
            self.reevaluate(&name, now);
            return;
        }
        let claim = match NodeClaim::deserialize(obj) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, claim = %name, "the referee cannot read a NodeClaim");
                return;
            }
        };
        let was_initialized = self.claims.get(&name).is_some_and(|c| c.initialized);
        let created = claim.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let expires = match (created, claim.spec.expire_after.0) {
            (Some(c), Some(d)) => jiff::SignedDuration::try_from(d)
                .ok()
                .and_then(|d| c.checked_add(d).ok()),
            _ => None,
        };
        let disrupting = claim
            .condition(conditions::DISRUPTING)
            .filter(|c| c.is_true())
            .map(|c| c.reason.clone());
        let annotations = claim.metadata.annotations.clone().unwrap_or_default();
        let command = annotations.get(COMMAND_ANNOTATION).map(|v| {
            let method = serde_json::from_str::<Value>(v)
                .ok()
                .and_then(|m| m.get("method").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| "unknown".into());
            (v.clone(), method)
        });
        if let Some((v, _)) = &command
            && self.commands.insert(v.clone())
        {
            self.tally.disruption_commands += 1;
        }
        let replacement = annotations.contains_key(REPLACEMENT_ANNOTATION);
        let initialized = claim.is_true(conditions::INITIALIZED);
        if replacement
            && initialized
            && !was_initialized
            && let Some(i) = claim.provider_id().and_then(|p| self.cloud.instance(p))
        {
            self.tally.replacement_price_per_hour += i.price_per_hour;
        }
        self.claims.insert(
            name.clone(),
            ClaimView {
                pool: claim.nodepool_name().map(str::to_string),
                node: claim.node_name().map(str::to_string),
                provider_id: claim.provider_id().map(str::to_string),
                initialized: was_initialized || initialized,
                deleting: claim.metadata.deletion_timestamp.is_some(),
                disrupting,
                command,
                expires,
            },
        );
        self.reevaluate(&name, now);
    }

    fn on_pool(&mut self, etype: EventType, obj: &Value, now: jiff::Timestamp) {
        let name = name_of(obj).to_string();
        if etype == EventType::Deleted {
            self.pools.remove(&name);
            return;
        }
        match NodePool::deserialize(obj) {
            Ok(p) => {
                self.pools.insert(name.clone(), p.spec.disruption.clone());
            }
            Err(e) => {
                tracing::warn!(error = %e, pool = %name, "the referee cannot read a NodePool");
            }
        }
        let claims: Vec<String> = self
            .claims
            .iter()
            .filter(|(_, c)| c.pool.as_deref() == Some(&name))
            .map(|(n, _)| n.clone())
            .collect();
        for c in claims {
            self.reevaluate(&c, now);
        }
    }

    fn on_cloud(&mut self, ev: FakeEvent, now: jiff::Timestamp) {
        match ev {
            FakeEvent::Launched(_) => {}
            FakeEvent::InterruptionWarning {
                claim_name, notice, ..
            } => {
                let notice = jiff::SignedDuration::try_from(notice).unwrap_or_default();
                self.interrupted
                    .insert(claim_name.clone(), now.checked_add(notice).unwrap_or(now));
                self.reevaluate(&claim_name, now);
            }
            FakeEvent::Terminated {
                claim_name,
                provider_id,
                reason,
            } => {
                let interrupted = reason == TerminationReason::Interrupted
                    || self.interrupted.contains_key(&claim_name);
                self.terminated.insert(claim_name.clone());
                if let Some(node) = self.node_by_pid.get(&provider_id).cloned() {
                    self.kill_pods_of(&node, interrupted, now);
                }
                self.reevaluate(&claim_name, now);
            }
        }
    }

    /// Whether the claim counts for its pool's budget (initialized, alive, not interrupted or
    /// expired), and its pool.
    fn counted(&self, name: &str, now: jiff::Timestamp) -> Option<String> {
        let c = self.claims.get(name)?;
        let reason_exempt = c
            .disrupting
            .as_ref()
            .is_some_and(|r| matches!(r.as_str(), "Expired" | "Interrupted"))
            || c.command
                .as_ref()
                .is_some_and(|(_, m)| matches!(m.as_str(), "expiry" | "interruption"));
        (c.initialized
            && !self.interrupted.contains_key(name)
            && !self.terminated.contains(name)
            && c.expires.is_none_or(|e| e > now)
            && !reason_exempt)
            .then(|| c.pool.clone())
            .flatten()
            .filter(|p| self.pools.contains_key(p))
    }

    fn is_disrupting(&self, name: &str) -> bool {
        let Some(c) = self.claims.get(name) else {
            return false;
        };
        let node = c.node.as_ref().and_then(|n| self.nodes.get(n)).or_else(|| {
            c.provider_id
                .as_ref()
                .and_then(|p| self.node_by_pid.get(p))
                .and_then(|n| self.nodes.get(n))
        });
        c.deleting || c.disrupting.is_some() || node.is_some_and(|n| n.tainted || n.deleting)
    }

    /// The pool's nodes for budget percentages: initialized, instance not terminated.
    fn pool_total(&self, pool: &str) -> u32 {
        self.claims
            .iter()
            .filter(|(n, c)| {
                c.pool.as_deref() == Some(pool) && c.initialized && !self.terminated.contains(*n)
            })
            .count() as u32
    }

    fn reevaluate(&mut self, name: &str, now: jiff::Timestamp) {
        let in_pool = self
            .disrupting
            .iter()
            .find(|(_, m)| m.contains_key(name))
            .map(|(p, _)| p.clone());
        let counted = self.counted(name, now);
        let disrupting = counted.is_some() && self.is_disrupting(name);
        match (in_pool, disrupting) {
            (None, true) => {
                let Some(pool) = counted else { return };
                let total = self.pool_total(&pool);
                let price = self
                    .claims
                    .get(name)
                    .and_then(|c| c.provider_id.as_deref())
                    .and_then(|p| self.cloud.instance(p))
                    .map_or(0.0, |i| i.price_per_hour);
                let set = self.disrupting.entry(pool.clone()).or_default();
                set.insert(
                    name.to_string(),
                    Entry {
                        checked: false,
                        price,
                        count: 0,
                        total,
                        at: now,
                    },
                );
                let count = set.len() as u32;
                if let Some(e) = set.get_mut(name) {
                    e.count = count;
                }
                let peak = self
                    .tally
                    .max_disrupting_by_pool
                    .entry(pool.clone())
                    .or_default();
                *peak = (*peak).max(u64::from(count));
                let reason = self.reason_of(name);
                if reason.is_some() {
                    self.check(&pool, name, reason);
                }
            }
            (Some(pool), true) => {
                let unchecked = self
                    .disrupting
                    .get(&pool)
                    .and_then(|m| m.get(name))
                    .is_some_and(|e| !e.checked);
                let reason = self.reason_of(name);
                if unchecked && reason.is_some() {
                    self.check(&pool, name, reason);
                }
            }
            (Some(pool), false) => {
                let unchecked = self
                    .disrupting
                    .get(&pool)
                    .and_then(|m| m.get(name))
                    .is_some_and(|e| !e.checked);
                if unchecked {
                    let reason = self.reason_of(name);
                    self.check(&pool, name, reason);
                }
                // Gone (deleted or its instance terminated), not undone: its price is saved.
                let gone = !self.claims.contains_key(name) || self.terminated.contains(name);
                if let Some(e) = self.disrupting.get_mut(&pool).and_then(|m| m.remove(name))
                    && gone
                {
                    self.tally.removed_price_per_hour += e.price;
                }
            }
            (None, false) => {}
        }
    }

    /// The budget reason of a disrupting claim, from its `Disrupting` condition. Restoring spot
    /// capacity replaces a node to make the pool cheaper: it is held to `Underutilized`.
    fn reason_of(&self, name: &str) -> Option<DisruptionReason> {
        let reason = self.claims.get(name)?.disrupting.as_ref()?;
        match reason.as_str() {
            "Empty" => Some(DisruptionReason::Empty),
            "Underutilized" | "CapacityMixRestore" => Some(DisruptionReason::Underutilized),
            "Drifted" => Some(DisruptionReason::Drifted),
            _ => None,
        }
    }

    fn method_of(&self, name: &str) -> String {
        self.claims
            .get(name)
            .and_then(|c| c.command.as_ref())
            .map_or_else(|| "unknown".to_string(), |(_, m)| m.clone())
    }

    /// Judges a disrupting node against its pool's budget for `reason` (all reasons, the
    /// strictest, when unknown), with the pool as it was when the node started disrupting.
    fn check(&mut self, pool: &str, name: &str, reason: Option<DisruptionReason>) {
        let Some(entry) = self.disrupting.get_mut(pool).and_then(|m| m.get_mut(name)) else {
            return;
        };
        entry.checked = true;
        let entry = entry.clone();
        let Some(disruption) = self.pools.get(pool) else {
            return;
        };
        let reasons: Vec<DisruptionReason> = match reason {
            Some(r) => vec![r],
            None => vec![
                DisruptionReason::Empty,
                DisruptionReason::Underutilized,
                DisruptionReason::Drifted,
            ],
        };
        let allowed = reasons
            .iter()
            .map(|r| disruption.allowed_disruptions(*r, entry.total, entry.at))
            .min()
            .unwrap_or(0);
        let label = reason
            .map_or("Unknown", DisruptionReason::as_str)
            .to_string();
        *self
            .tally
            .disruptions_by_reason
            .entry(label.clone())
            .or_default() += 1;
        let method = self.method_of(name);
        *self.tally.disruptions_by_method.entry(method).or_default() += 1;
        if entry.count > allowed {
            self.tally.budget_violations += 1;
            self.tally.note(format!(
                "node of NodeClaim {name} started disrupting ({label}) as number {} in NodePool {pool}, whose budget allows {allowed} of {} nodes",
                entry.count, entry.total
            ));
        }
    }
}

#[cfg(test)]
#[path = "referee_tests.rs"]
mod tests;
