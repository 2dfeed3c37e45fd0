//! The scheduling domain the solver reads and writes: pods (requests computed the Kubernetes way,
//! selectors, affinity, tolerations, topology spread, host ports), existing and in-flight nodes,
//! NodePools with their usage, daemonsets, the solve input and options, and the [`Plan`].
//!
//! Key decision: plain data with public fields and builder methods, converted once from Kubernetes
//! objects by [`crate::convert`]; the solver never sees a `k8s_openapi` type. Requirements reuse
//! the API's [`Requirement`] so NodePool requirements and pod node affinity share one algebra.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use stowage_api::CapacityType;
use stowage_api::requirements::{Requirement, Requirements, ValueSet};

use crate::model::{InstanceType, Resources};

/// `namespace/name` of a pod.
pub type PodKey = String;

/// What a taint does to pods that do not tolerate it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

/// A node taint.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeTaint {
    pub key: String,
    /// Empty when the taint has no value.
    pub value: String,
    pub effect: TaintEffect,
}

impl NodeTaint {
    pub fn new(key: &str, value: &str, effect: TaintEffect) -> Self {
        NodeTaint {
            key: key.into(),
            value: value.into(),
            effect,
        }
    }
}

impl fmt::Display for NodeTaint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}:{}", self.key, self.effect.as_str())
        } else {
            write!(f, "{}={}:{}", self.key, self.value, self.effect.as_str())
        }
    }
}

/// `Equal` (default) or `Exists`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TolerationOperator {
    Equal,
    Exists,
}

/// A pod toleration.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Toleration {
    /// Empty with `Exists` tolerates every taint.
    pub key: String,
    pub operator: TolerationOperator,
    pub value: String,
    /// `None` tolerates every effect.
    pub effect: Option<TaintEffect>,
}

impl Toleration {
    /// `key=value:effect` with operator Equal.
    pub fn equal(key: &str, value: &str, effect: Option<TaintEffect>) -> Self {
        Toleration {
            key: key.into(),
            operator: TolerationOperator::Equal,
            value: value.into(),
            effect,
        }
    }

    /// `key` Exists (empty key: everything).
    pub fn exists(key: &str, effect: Option<TaintEffect>) -> Self {
        Toleration {
            key: key.into(),
            operator: TolerationOperator::Exists,
            value: String::new(),
            effect,
        }
    }

    /// Whether this toleration tolerates `taint` (Kubernetes semantics).
    pub fn tolerates(&self, taint: &NodeTaint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        match self.operator {
            TolerationOperator::Exists => self.key.is_empty() || self.key == taint.key,
            TolerationOperator::Equal => self.key == taint.key && self.value == taint.value,
        }
    }
}

/// The first taint in `taints` that `tolerations` do not tolerate. `PreferNoSchedule` taints are
/// only considered when `include_prefer` is set (the solver treats them as hard until relaxed).
pub fn untolerated<'a>(
    taints: &'a [NodeTaint],
    tolerations: &[Toleration],
    include_prefer: bool,
) -> Option<&'a NodeTaint> {
    taints.iter().find(|t| {
        (include_prefer || t.effect != TaintEffect::PreferNoSchedule)
            && !tolerations.iter().any(|tol| tol.tolerates(t))
    })
}

/// Compiles requirements into the api's algebra ([`Requirements`]), the one matcher. A
/// requirement that cannot be compiled (a numeric operator without one integer value; API
/// validation rejects those) matches nothing.
pub fn compile_requirements(reqs: &[Requirement]) -> Requirements {
    let mut out = Requirements::new();
    for r in reqs {
        if out.add(r).is_err() {
            out.insert(&r.key, ValueSet::in_values(Vec::<String>::new()));
        }
    }
    out
}

/// Whether every requirement holds for `labels`.
pub fn requirements_match(reqs: &[Requirement], labels: &BTreeMap<String, String>) -> bool {
    compile_requirements(reqs).matches(labels)
}

/// A label selector (`matchLabels` AND `matchExpressions`). Empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    /// Operators In, NotIn, Exists, DoesNotExist.
    pub match_expressions: Vec<Requirement>,
}

impl LabelSelector {
    /// `matchLabels` only.
    pub fn labels<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        LabelSelector {
            match_labels: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            match_expressions: Vec::new(),
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && requirements_match(&self.match_expressions, labels)
    }
}

/// `DoNotSchedule` (hard) or `ScheduleAnyway` (soft: treated as hard until relaxed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WhenUnsatisfiable {
    DoNotSchedule,
    ScheduleAnyway,
}

/// A topology spread constraint, counted over pods in the pod's own namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TopologySpread {
    pub max_skew: i32,
    pub topology_key: String,
    pub when_unsatisfiable: WhenUnsatisfiable,
    /// `None` counts no pods (Kubernetes semantics of a missing selector). `matchLabelKeys` are
    /// folded in by [`crate::convert`].
    pub label_selector: Option<LabelSelector>,
    pub min_domains: Option<i32>,
}

/// A required pod (anti-)affinity term.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PodAffinityTerm {
    /// `None` matches no pod.
    pub label_selector: Option<LabelSelector>,
    pub topology_key: String,
    /// The namespaces whose pods are considered; `None` means all namespaces.
    pub namespaces: Option<BTreeSet<String>>,
}

impl PodAffinityTerm {
    /// Whether a pod in `namespace` with `labels` is selected by this term.
    pub fn selects(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|ns| ns.contains(namespace))
            && self
                .label_selector
                .as_ref()
                .is_some_and(|s| s.matches(labels))
    }
}

/// A preferred pod (anti-)affinity term.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WeightedPodAffinityTerm {
    pub weight: i32,
    pub term: PodAffinityTerm,
}

/// The node field a `matchFields` requirement may select on: Kubernetes supports only the
/// node's name.
pub const NODE_NAME_FIELD: &str = "metadata.name";

/// A `matchFields` requirement on the node's name ([`NODE_NAME_FIELD`]). The DaemonSet
/// controller pins each of its pods to its node with `metadata.name In [<node>]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NodeNameRequirement {
    /// The node is one of these.
    In(BTreeSet<String>),
    /// The node is none of these.
    NotIn(BTreeSet<String>),
}

impl NodeNameRequirement {
    /// Whether a node called `name` satisfies the requirement.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NodeNameRequirement::In(names) => names.contains(name),
            NodeNameRequirement::NotIn(names) => !names.contains(name),
        }
    }
}

/// A required node-affinity term (one of `nodeSelectorTerms`): its label requirements
/// (`matchExpressions`) AND its node-name requirements (`matchFields`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeAffinityTerm {
    pub requirements: Vec<Requirement>,
    pub node_names: Vec<NodeNameRequirement>,
}

impl NodeAffinityTerm {
    /// A term of label requirements only.
    pub fn labels(requirements: Vec<Requirement>) -> Self {
        NodeAffinityTerm {
            requirements,
            node_names: Vec::new(),
        }
    }

    /// The term `metadata.name In [name]` (what the DaemonSet controller writes).
    pub fn node_name(name: &str) -> Self {
        NodeAffinityTerm {
            requirements: Vec::new(),
            node_names: vec![NodeNameRequirement::In(BTreeSet::from([name.to_string()]))],
        }
    }

    /// Whether a node called `name` with `labels` satisfies the term.
    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.node_names_match(name) && requirements_match(&self.requirements, labels)
    }

    /// Whether a node called `name` satisfies the term's `matchFields`.
    pub fn node_names_match(&self, name: &str) -> bool {
        self.node_names.iter().all(|r| r.matches(name))
    }

    /// Whether a node whose name is not known yet (a node to buy, an in-flight claim) may
    /// satisfy the term's `matchFields`: only when they exclude names, never when they pin one
    /// (a new node cannot be given a chosen name).
    pub fn admits_unnamed_node(&self) -> bool {
        self.node_names
            .iter()
            .all(|r| matches!(r, NodeNameRequirement::NotIn(_)))
    }

    /// The names the term pins the node to (`In`, minus `NotIn`), or `None` when it pins none.
    pub fn pinned_names(&self) -> Option<BTreeSet<String>> {
        let mut pinned: Option<BTreeSet<String>> = None;
        for r in &self.node_names {
            if let NodeNameRequirement::In(names) = r {
                pinned = Some(match pinned {
                    None => names.clone(),
                    Some(p) => p.intersection(names).cloned().collect(),
                });
            }
        }
        let mut pinned = pinned?;
        for r in &self.node_names {
            if let NodeNameRequirement::NotIn(names) = r {
                pinned.retain(|n| !names.contains(n));
            }
        }
        Some(pinned)
    }
}

/// A preferred node affinity term.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PreferredTerm {
    pub weight: i32,
    pub requirements: Vec<Requirement>,
    /// `matchFields` on the node's name.
    #[serde(default)]
    pub node_names: Vec<NodeNameRequirement>,
}

impl PreferredTerm {
    /// Whether a node called `name` with `labels` satisfies the preference.
    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.node_names.iter().all(|r| r.matches(name))
            && requirements_match(&self.requirements, labels)
    }
}

/// A host port a container binds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostPort {
    pub port: i32,
    /// `TCP` (default), `UDP` or `SCTP`.
    pub protocol: String,
    /// Empty or `0.0.0.0` binds every address.
    pub host_ip: String,
}

impl HostPort {
    pub fn tcp(port: i32) -> Self {
        HostPort {
            port,
            protocol: "TCP".into(),
            host_ip: String::new(),
        }
    }

    /// Whether two host ports cannot share a node.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        let wild = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
        self.port == other.port
            && self.protocol == other.protocol
            && (wild(&self.host_ip) || wild(&other.host_ip) || self.host_ip == other.host_ip)
    }
}

/// A pod as the solver sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PodRequest {
    pub namespace: String,
    pub name: String,
    /// Shared: the controllers' state hands identical label sets out as one map (a workload's
    /// thousands of pods hold one), and its own view of the pod reads them from here.
    pub labels: Arc<BTreeMap<String, String>>,
    /// max(init containers, containers + restartable init containers) + pod overhead, in the
    /// solver's integer units. Does not include the `pods` count (the solver adds 1).
    pub requests: Resources,
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity: OR of terms, each an AND of label and node-name requirements.
    /// Empty: no constraint.
    pub required_node_affinity: Vec<NodeAffinityTerm>,
    pub preferred_node_affinity: Vec<PreferredTerm>,
    pub tolerations: Vec<Toleration>,
    pub topology_spread: Vec<TopologySpread>,
    pub pod_affinity: Vec<PodAffinityTerm>,
    pub pod_anti_affinity: Vec<PodAffinityTerm>,
    pub preferred_pod_affinity: Vec<WeightedPodAffinityTerm>,
    pub preferred_pod_anti_affinity: Vec<WeightedPodAffinityTerm>,
    pub host_ports: Vec<HostPort>,
    /// Identifies the workload (e.g. `ReplicaSet/web-7d9`); informational.
    pub owner: Option<String>,
    pub priority: i32,
}

impl PodRequest {
    /// A pod with no requests and no constraints.
    pub fn new(namespace: &str, name: &str) -> Self {
        PodRequest {
            namespace: namespace.into(),
            name: name.into(),
            ..PodRequest::default()
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> PodKey {
        stowage_api::namespaced_key(&self.namespace, &self.name)
    }

    pub fn cpu_millis(mut self, millis: i64) -> Self {
        self.requests.set(crate::model::resource::CPU, millis);
        self
    }

    pub fn memory_mib(mut self, mib: i64) -> Self {
        self.requests.set(crate::model::resource::MEMORY, mib << 20);
        self
    }

    pub fn request(mut self, name: &str, value: i64) -> Self {
        self.requests.set(name, value);
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        Arc::make_mut(&mut self.labels).insert(key.into(), value.into());
        self
    }

    pub fn node_selector(mut self, key: &str, value: &str) -> Self {
        self.node_selector.insert(key.into(), value.into());
        self
    }

    /// Sets the controller owner (`Kind/name`, e.g. `Pod/spark-driver`).
    pub fn owned_by(mut self, owner: &str) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Adds a required node-affinity term of label requirements (OR with the others).
    pub fn require_any(mut self, term: Vec<Requirement>) -> Self {
        self.required_node_affinity
            .push(NodeAffinityTerm::labels(term));
        self
    }

    /// Pins the pod to the node called `name` (`matchFields` `metadata.name In [name]`), as the
    /// DaemonSet controller does with its pods.
    pub fn pin_to_node(mut self, name: &str) -> Self {
        self.required_node_affinity
            .push(NodeAffinityTerm::node_name(name));
        self
    }

    pub fn prefer(mut self, weight: i32, requirements: Vec<Requirement>) -> Self {
        self.preferred_node_affinity.push(PreferredTerm {
            weight,
            requirements,
            node_names: Vec::new(),
        });
        self
    }

    pub fn toleration(mut self, toleration: Toleration) -> Self {
        self.tolerations.push(toleration);
        self
    }

    /// Spreads over `key` with `max_skew`, counting pods with the same `app` label as this pod.
    pub fn spread(mut self, key: &str, max_skew: i32, when: WhenUnsatisfiable) -> Self {
        let selector = LabelSelector {
            match_labels: (*self.labels).clone(),
            match_expressions: Vec::new(),
        };
        self.topology_spread.push(TopologySpread {
            max_skew,
            topology_key: key.into(),
            when_unsatisfiable: when,
            label_selector: Some(selector),
            min_domains: None,
        });
        self
    }

    /// Required affinity to pods carrying this pod's own labels, over `key`.
    pub fn self_affinity(mut self, key: &str) -> Self {
        let term = self.self_term(key);
        self.pod_affinity.push(term);
        self
    }

    /// Required anti-affinity to pods carrying this pod's own labels, over `key`.
    pub fn self_anti_affinity(mut self, key: &str) -> Self {
        let term = self.self_term(key);
        self.pod_anti_affinity.push(term);
        self
    }

    fn self_term(&self, key: &str) -> PodAffinityTerm {
        PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: (*self.labels).clone(),
                match_expressions: Vec::new(),
            }),
            topology_key: key.into(),
            namespaces: Some(BTreeSet::from([self.namespace.clone()])),
        }
    }

    pub fn host_port(mut self, port: i32) -> Self {
        self.host_ports.push(HostPort::tcp(port));
        self
    }

    /// Whether the pod requests an accelerator (GPU, Neuron, Gaudi).
    pub fn wants_accelerator(&self) -> bool {
        stowage_api::labels::ACCELERATOR_RESOURCES
            .iter()
            .any(|r| self.requests.get(r) > 0)
    }

    /// The label requirements the node must satisfy with the given required-affinity term: the
    /// node selector as `In` requirements plus that term's (its node-name requirements are not
    /// labels: see [`NodeAffinityTerm`]).
    pub fn node_requirements(&self, term: Option<usize>) -> Vec<Requirement> {
        let mut reqs: Vec<Requirement> = self
            .node_selector
            .iter()
            .map(|(k, v)| Requirement::in_(k, [v.as_str()]))
            .collect();
        if let Some(t) = term.and_then(|i| self.required_node_affinity.get(i)) {
            reqs.extend(t.requirements.iter().cloned());
        }
        reqs
    }

    /// Whether a node called `name` with `labels` satisfies the pod's node selector and required
    /// node affinity (kube-scheduler's NodeAffinity filter).
    pub fn node_affinity_matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.node_selector
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && (self.required_node_affinity.is_empty()
                || self
                    .required_node_affinity
                    .iter()
                    .any(|t| t.matches(name, labels)))
    }
}

/// An existing node (or an in-flight NodeClaim modelled as a node) with the pods bound to it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExistingNode {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// Taints pods must tolerate (for in-flight claims: the pool's taints, not startup taints).
    pub taints: Vec<NodeTaint>,
    pub allocatable: Resources,
    pub capacity: Resources,
    /// Pods bound (or nominated) to the node, daemonset pods included.
    pub pods: Vec<Arc<PodRequest>>,
    pub nodepool: Option<String>,
    pub capacity_type: Option<CapacityType>,
    pub instance_type: Option<String>,
    pub price_per_hour: Option<f64>,
    /// Cordoned or being deleted: nothing new goes there.
    pub unschedulable: bool,
}

impl ExistingNode {
    pub fn new(name: &str, allocatable: Resources) -> Self {
        let mut labels = BTreeMap::new();
        labels.insert(stowage_api::labels::HOSTNAME.to_string(), name.to_string());
        ExistingNode {
            name: name.into(),
            labels,
            capacity: allocatable.clone(),
            allocatable,
            ..ExistingNode::default()
        }
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub fn taint(mut self, taint: NodeTaint) -> Self {
        self.taints.push(taint);
        self
    }

    pub fn with_pod(mut self, pod: impl Into<Arc<PodRequest>>) -> Self {
        self.pods.push(pod.into());
        self
    }

    /// Sum of the requests of the pods on the node, `pods` count included.
    pub fn requested(&self) -> Resources {
        let mut r = Resources::new();
        for p in &self.pods {
            r.add(&p.requests);
        }
        r.set(crate::model::resource::PODS, self.pods.len() as i64);
        r
    }
}

/// The on-demand cap of a pool's capacity mix.
///
/// Without a scope it governs the pool alone: on-demand vCPUs may not pass
/// `on_demand_base + on_demand_percent_above_base % of the pool's total vCPUs` (AWS Auto
/// Scaling's meaning). With a [`CapScope`] it governs the scope's pools as one fleet: their
/// on-demand vCPUs may not pass `on_demand_base + on_demand_percent_above_base % of their spot
/// and reserved vCPUs` ("on-demand at most 5 % of the spot tier").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnDemandCap {
    pub on_demand_base_millis: i64,
    /// Within `stowage_api::nodepool::ON_DEMAND_PERCENT_RANGE` (checked by the API and at
    /// conversion, trusted here); 100 means no cap (unscoped).
    pub on_demand_percent_above_base: u32,
    /// The pools the cap counts against, when more than its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<CapScope>,
}

/// The pools a scoped capacity mix counts against and what they hold now (every node and
/// in-flight claim of each, also of pools that cannot buy in this solve).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapScope {
    /// Pool names, sorted; the pool carrying the mix is always one of them.
    pub pools: Vec<String>,
    pub on_demand_cpu_millis: i64,
    /// Spot and reserved millicores.
    pub other_cpu_millis: i64,
}

impl OnDemandCap {
    /// Whether adding `add_cpu` on-demand millicores keeps the pool within the cap, given its
    /// current on-demand and total millicores (unscoped reading; at 100 % the cap never binds:
    /// on-demand is part of the total).
    pub fn allows(&self, on_demand: i64, total: i64, add_cpu: i64) -> bool {
        self.excess(on_demand + add_cpu, total - on_demand) <= 0
    }

    /// By how much `on_demand` millicores exceed what the cap allows next to `other` (spot and
    /// reserved) millicores, in hundredths of a millicore; zero or less when within the cap.
    pub fn excess(&self, on_demand: i64, other: i64) -> i64 {
        let counted = if self.scope.is_some() {
            other
        } else {
            on_demand + other
        };
        on_demand * 100
            - (self.on_demand_base_millis * 100
                + i64::from(self.on_demand_percent_above_base) * counted)
    }
}

/// A change of a pool's capacity, in millicores (negative: removed), as consolidation would
/// make it (see [`on_demand_caps_allow`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapacityChange<'a> {
    pub pool: &'a str,
    pub on_demand_cpu_millis: i64,
    /// Spot and reserved millicores.
    pub other_cpu_millis: i64,
}

/// The on-demand cap a change would break: the pool whose capacity mix it is, and its
/// percentage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapViolation {
    pub owner: String,
    pub on_demand_percent_above_base: u32,
    pub scoped: bool,
}

/// The seam for consolidation (and anything else that adds or removes capacity outside a
/// solve): may `change.pool` add (or keep) on-demand capacity given the fleet in `input`? Every
/// cap covering the pool is checked: its own unscoped mix and every scope it is in (whichever
/// pool carries it). A change is refused when it leaves a cap exceeded and exceeded by more
/// than before, so a fleet already over a cap (spot was interrupted) may keep what it has or
/// move towards the cap, never away from it. The solve itself enforces the same caps when it
/// opens claims ([`crate::solve`]).
pub fn on_demand_caps_allow(
    input: &SolveInput,
    change: &CapacityChange,
) -> Result<(), CapViolation> {
    for p in &input.nodepools {
        let Some(cap) = &p.capacity_mix else {
            continue;
        };
        let (od, other) = match &cap.scope {
            None if p.name == change.pool => (
                p.usage.on_demand_cpu_millis,
                p.usage.total_cpu_millis - p.usage.on_demand_cpu_millis,
            ),
            Some(s) if s.pools.iter().any(|n| n == change.pool) => {
                (s.on_demand_cpu_millis, s.other_cpu_millis)
            }
            _ => continue,
        };
        let before = cap.excess(od, other);
        let after = cap.excess(
            od + change.on_demand_cpu_millis,
            other + change.other_cpu_millis,
        );
        if after > 0 && after > before {
            return Err(CapViolation {
                owner: p.name.clone(),
                on_demand_percent_above_base: cap.on_demand_percent_above_base,
                scoped: cap.scope.is_some(),
            });
        }
    }
    Ok(())
}

/// What a pool holds already (existing nodes and in-flight claims).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolUsage {
    /// Summed capacity, with `nodes` as the node count.
    pub resources: Resources,
    pub on_demand_cpu_millis: i64,
    pub total_cpu_millis: i64,
}

/// A NodePool as the solver sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolSpec {
    pub name: String,
    /// Higher first.
    pub weight: i32,
    /// `spec.template.metadata.labels`.
    pub labels: BTreeMap<String, String>,
    pub requirements: Vec<Requirement>,
    pub taints: Vec<NodeTaint>,
    /// Present at boot, removed by a daemon: pods need not tolerate them.
    pub startup_taints: Vec<NodeTaint>,
    /// Caps on total capacity (`cpu`, `memory`, `nodes`, extended resources). Absent: no cap.
    pub limits: Resources,
    pub capacity_mix: Option<OnDemandCap>,
    /// `spotBlastRadius.maxPodsPerWorkload`: at most this many pods of one workload (same
    /// namespace and controller owner) on one spot node of the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot_max_pods_per_workload: Option<u32>,
    pub usage: PoolUsage,
    /// The pool's own instance types; `None` uses [`SolveInput::instance_types`]. Shared: pools
    /// of one node class list the same catalogue, which is not copied per pool.
    pub instance_types: Option<std::sync::Arc<Vec<InstanceType>>>,
}

impl PoolSpec {
    pub fn new(name: &str) -> Self {
        PoolSpec {
            name: name.into(),
            ..PoolSpec::default()
        }
    }

    pub fn requirement(mut self, req: Requirement) -> Self {
        self.requirements.push(req);
        self
    }

    pub fn taint(mut self, taint: NodeTaint) -> Self {
        self.taints.push(taint);
        self
    }

    pub fn weight(mut self, weight: i32) -> Self {
        self.weight = weight;
        self
    }

    pub fn limit(mut self, name: &str, value: i64) -> Self {
        self.limits.set(name, value);
        self
    }

    pub fn capacity_mix(mut self, base_millis: i64, percent: u32) -> Self {
        self.capacity_mix = Some(OnDemandCap {
            on_demand_base_millis: base_millis,
            on_demand_percent_above_base: percent,
            scope: None,
        });
        self
    }

    /// A capacity mix over the pools `scope` (this one added), which hold `on_demand` and
    /// `other` (spot and reserved) millicores now.
    pub fn scoped_capacity_mix(
        mut self,
        base_millis: i64,
        percent: u32,
        scope: &[&str],
        on_demand: i64,
        other: i64,
    ) -> Self {
        let mut pools: Vec<String> = scope.iter().map(|s| s.to_string()).collect();
        pools.push(self.name.clone());
        pools.sort();
        pools.dedup();
        self.capacity_mix = Some(OnDemandCap {
            on_demand_base_millis: base_millis,
            on_demand_percent_above_base: percent,
            scope: Some(CapScope {
                pools,
                on_demand_cpu_millis: on_demand,
                other_cpu_millis: other,
            }),
        });
        self
    }

    /// At most `max` pods of one workload per spot node.
    pub fn spot_blast_radius(mut self, max: u32) -> Self {
        self.spot_max_pods_per_workload = Some(max);
        self
    }

    pub fn usage(mut self, usage: PoolUsage) -> Self {
        self.usage = usage;
        self
    }
}

/// A daemonset whose pods will land on new nodes they are compatible with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DaemonSet {
    /// `namespace/name`.
    pub name: String,
    /// The pod template as a pod (requests, selectors, tolerations).
    pub pod: PodRequest,
}

/// Everything a solve reads.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SolveInput {
    /// Pods to place.
    pub pods: Vec<Arc<PodRequest>>,
    /// Existing nodes, with the pods already on them.
    pub nodes: Vec<ExistingNode>,
    /// In-flight NodeClaims (launched, not yet registered), modelled as nodes: known labels,
    /// the allocatable the claim will have, pods nominated to it.
    pub in_flight: Vec<ExistingNode>,
    pub nodepools: Vec<PoolSpec>,
    /// The catalogue used by pools without their own list.
    pub instance_types: Vec<InstanceType>,
    pub daemonsets: Vec<DaemonSet>,
}

/// Knobs of a solve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SolveOptions {
    /// How many instance types a new claim lists (cheapest first). Default 60.
    pub max_instance_types: usize,
    /// Relax preferences (preferred affinity, ScheduleAnyway spread, PreferNoSchedule) when a
    /// pod would otherwise not fit. Default on.
    pub relax_preferences: bool,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            max_instance_types: 60,
            relax_preferences: true,
        }
    }
}

/// A node to buy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewClaim {
    /// A placeholder name (`<nodepool>-<n>`), unique within the plan; the hostname topology
    /// domain of the claim during the solve.
    pub name: String,
    pub nodepool: String,
    /// What the launched node must satisfy: the pool's requirements narrowed by the pods
    /// (instance types, zones, capacity type, pinned topology labels).
    pub requirements: Vec<Requirement>,
    /// Compatible instance types, cheapest available offering first, truncated to
    /// [`SolveOptions::max_instance_types`] while honouring `minValues`.
    pub instance_type_options: Vec<String>,
    pub pods: Vec<PodKey>,
    /// Summed requests of the pods (with the `pods` count) plus the daemonset overhead.
    pub requests: Resources,
    /// Price per hour of the cheapest compatible available offering.
    pub cheapest_price: f64,
}

/// What a solve decided. Same input, same plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub new_claims: Vec<NewClaim>,
    /// Pod -> existing node or in-flight claim name.
    pub existing_placements: BTreeMap<PodKey, String>,
    /// Pod -> why it cannot be placed, in words a human can act on.
    pub unschedulable: BTreeMap<PodKey, String>,
}

impl Plan {
    /// Summed cheapest price of the new claims, per hour.
    pub fn cost_per_hour(&self) -> f64 {
        // `+ 0.0`: the sum of nothing is -0.0, which prints as "$-0.0000".
        self.new_claims
            .iter()
            .map(|c| c.cheapest_price)
            .sum::<f64>()
            + 0.0
    }

    /// The claim (index) or existing node a pod went to.
    pub fn placement_of(&self, pod: &str) -> Option<Placement<'_>> {
        if let Some(n) = self.existing_placements.get(pod) {
            return Some(Placement::Existing(n));
        }
        self.new_claims
            .iter()
            .position(|c| c.pods.iter().any(|p| p == pod))
            .map(Placement::NewClaim)
    }
}

/// Where a pod went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement<'a> {
    Existing(&'a str),
    /// Index into [`Plan::new_claims`].
    NewClaim(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_api::requirements::Operator;

    #[test]
    fn tolerations_follow_kubernetes() {
        let t = NodeTaint::new("dedicated", "gpu", TaintEffect::NoSchedule);
        assert!(Toleration::equal("dedicated", "gpu", None).tolerates(&t));
        assert!(Toleration::equal("dedicated", "gpu", Some(TaintEffect::NoSchedule)).tolerates(&t));
        assert!(!Toleration::equal("dedicated", "gpu", Some(TaintEffect::NoExecute)).tolerates(&t));
        assert!(!Toleration::equal("dedicated", "cpu", None).tolerates(&t));
        assert!(Toleration::exists("dedicated", None).tolerates(&t));
        assert!(Toleration::exists("", None).tolerates(&t));
        assert!(!Toleration::exists("other", None).tolerates(&t));
        let prefer = NodeTaint::new("x", "", TaintEffect::PreferNoSchedule);
        assert_eq!(untolerated(std::slice::from_ref(&prefer), &[], false), None);
        assert_eq!(
            untolerated(std::slice::from_ref(&prefer), &[], true),
            Some(&prefer)
        );
        assert_eq!(t.to_string(), "dedicated=gpu:NoSchedule");
    }

    #[test]
    fn requirement_operators() {
        let r = |op, vals: &[&str]| Requirement::new("k", op, vals.iter().copied());
        let cases = [
            (r(Operator::In, &["a", "b"]), Some("a"), true),
            (r(Operator::In, &["a"]), None, false),
            (r(Operator::NotIn, &["a"]), None, true),
            (r(Operator::NotIn, &["a"]), Some("a"), false),
            (r(Operator::Exists, &[]), Some("x"), true),
            (r(Operator::DoesNotExist, &[]), Some("x"), false),
            (r(Operator::Gt, &["4"]), Some("5"), true),
            (r(Operator::Gt, &["4"]), Some("4"), false),
            (r(Operator::Gte, &["4"]), Some("4"), true),
            (r(Operator::Lt, &["4"]), Some("x"), false),
            (r(Operator::Lte, &["4"]), Some("4"), true),
        ];
        for (req, value, want) in cases {
            let labels: BTreeMap<String, String> = value
                .map(|v| ("k".to_string(), v.to_string()))
                .into_iter()
                .collect();
            assert_eq!(
                requirements_match(std::slice::from_ref(&req), &labels),
                want,
                "{req:?} {value:?}"
            );
        }
    }

    #[test]
    fn host_ports_conflict_on_wildcard_or_same_ip() {
        let a = HostPort::tcp(80);
        let mut b = HostPort::tcp(80);
        b.host_ip = "10.0.0.1".into();
        let mut c = b.clone();
        c.host_ip = "10.0.0.2".into();
        assert!(a.conflicts(&b));
        assert!(!b.conflicts(&c));
        assert!(!a.conflicts(&HostPort::tcp(81)));
    }

    #[test]
    fn capacity_mix_caps_on_demand_share() {
        let mix = OnDemandCap {
            on_demand_base_millis: 0,
            on_demand_percent_above_base: 5,
            scope: None,
        };
        // 100 vCPU of spot: 5 on-demand vCPU make 5/105 < 5 %.
        assert!(mix.allows(0, 100_000, 5_000));
        assert!(!mix.allows(5_000, 105_000, 1_000));
        let base = OnDemandCap {
            on_demand_base_millis: 4_000,
            on_demand_percent_above_base: 0,
            scope: None,
        };
        assert!(base.allows(0, 0, 4_000));
        assert!(!base.allows(4_000, 4_000, 1));
    }

    #[test]
    fn a_scoped_cap_counts_on_demand_against_spot_and_reserved() {
        let scoped = OnDemandCap {
            on_demand_base_millis: 0,
            on_demand_percent_above_base: 5,
            scope: Some(CapScope::default()),
        };
        // 5 % of 100 spot vCPUs: exactly 5 on-demand vCPUs (not 5/105 of the total).
        assert!(scoped.excess(5_000, 100_000) <= 0);
        assert!(scoped.excess(5_001, 100_000) > 0);
        assert!(scoped.excess(1, 0) > 0);
    }

    fn scoped_input() -> SolveInput {
        // The seed's tiers: `od` (on-demand, capped at 5 % of the scope's spot) and `spot`.
        let mut spot = PoolSpec::new("spot").weight(80);
        spot.usage.total_cpu_millis = 200_000;
        let od =
            PoolSpec::new("od")
                .weight(50)
                .scoped_capacity_mix(0, 5, &["spot"], 8_000, 200_000);
        SolveInput {
            nodepools: vec![spot, od],
            ..SolveInput::default()
        }
    }

    #[test]
    fn consolidation_asks_every_cap_covering_a_pool() {
        let input = scoped_input();
        let change = |pool, od, other| CapacityChange {
            pool,
            on_demand_cpu_millis: od,
            other_cpu_millis: other,
        };
        // 8 of 10 allowed on-demand vCPUs: 2 more fit, 3 do not.
        assert_eq!(
            on_demand_caps_allow(&input, &change("od", 2_000, 0)),
            Ok(())
        );
        let err = on_demand_caps_allow(&input, &change("od", 3_000, 0)).unwrap_err();
        assert_eq!(err.owner, "od");
        assert!(err.scoped);
        // The spot tier is in the scope: removing 60 spot vCPUs would leave 8 > 7 allowed.
        assert!(on_demand_caps_allow(&input, &change("spot", 0, -60_000)).is_err());
        assert_eq!(
            on_demand_caps_allow(&input, &change("spot", 0, -40_000)),
            Ok(())
        );
        // Over the cap already: moving on-demand to spot is allowed, adding more is not.
        let mut over = input.clone();
        over.nodepools[0].usage.total_cpu_millis = 100_000;
        over.nodepools[1]
            .capacity_mix
            .as_mut()
            .unwrap()
            .scope
            .as_mut()
            .unwrap()
            .other_cpu_millis = 100_000;
        assert_eq!(
            on_demand_caps_allow(&over, &change("od", -4_000, 4_000)),
            Ok(())
        );
        assert!(on_demand_caps_allow(&over, &change("od", 1_000, 0)).is_err());
        // A pool outside every scope is not limited.
        assert_eq!(
            on_demand_caps_allow(&input, &change("gpu", 64_000, 0)),
            Ok(())
        );
    }
}
