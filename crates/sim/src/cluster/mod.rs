//! The simulated cluster's own machinery, around the API server: a fake kube-scheduler, a fake
//! kubelet per cloud instance, the workload controllers a scenario needs (ReplicaSet-, Job- and
//! Spark-like), a DaemonSet controller, pod garbage collection and the cloud node lifecycle.
//!
//! Key decision: one event loop owns all of it (no per-pod tasks): it drains the store's watch
//! channels and the fake cloud's events, fires due timers from one heap, and runs a scheduling
//! cycle when something changed. Same inputs, same order, same run.

mod daemonsets;
mod kubelet;
mod referee;
mod scheduler;
mod workloads;

use crate::json::JsonPointer as _;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use stowage_clock::SharedClock;
use stowage_cloud::CapacityType;
use stowage_cloud::fake::{FakeCloud, FakeEvent};
use stowage_solver::InstanceType;
use stowage_solver::PodRequest;
use stowage_solver::predicates::ClusterIndex;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::apiserver::{ApiServer, CoreKinds, EventType, Filter, WatchMsg};
use crate::scenario::{Action, Scenario, Timings};

pub use referee::Tally;
pub(crate) use scheduler::signature;
pub use workloads::WorkloadState;

/// The node-class kind of the simulated cluster: it is AWS-shaped and serves `EC2NodeClass`, so
/// the fake cloud in it reads that kind (through the controllers' generic node-class path).
pub fn node_class_kind() -> stowage_cloud::NodeClassKind {
    use kube::Resource;
    type Class = stowage_api::EC2NodeClass;
    stowage_cloud::NodeClassKind::new(
        &Class::group(&()),
        &Class::version(&()),
        &Class::kind(&()),
        &Class::plural(&()),
    )
}

/// Label every simulated workload pod carries (the workload's name).
pub const WORKLOAD_LABEL: &str = "sim.stowage.dev/workload";
/// Annotation: how long a Job or Spark driver pod runs once started, in seconds.
pub const RUN_SECONDS_ANNOTATION: &str = "sim.stowage.dev/run-seconds";

/// Options of the cluster machinery.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub timings: Timings,
    /// Register nodes with `stowage.dev/unregistered:NoExecute` (the controller removes it when it
    /// registers the NodeClaim), as Stowage's user data does.
    pub register_with_unregistered_taint: bool,
    /// Quiet time the scheduler waits after a change before a scheduling cycle.
    pub scheduler_debounce: Duration,
    /// An unchanged Unschedulable condition is refreshed with a new message at most this often.
    pub unschedulable_refresh: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            timings: Timings::default(),
            register_with_unregistered_taint: true,
            scheduler_debounce: Duration::from_millis(100),
            unschedulable_refresh: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    RegisterNode(String),
    RemoveStartupTaints(String),
    NodeGone(String),
    PodStart(String),
    PodFinish(String),
    PodStop(String),
    Schedule,
}

/// What the cluster knows of one node.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    pub provider_id: String,
    pub capacity_type: Option<CapacityType>,
    pub instance_type: String,
    pub nodepool: Option<String>,
    pub price_per_hour: f64,
    /// vCPUs of its capacity.
    pub vcpu: f64,
    pub ready: bool,
    /// The instance behind it is gone (the node object may linger).
    pub dead: bool,
}

/// What the cluster knows of one pod.
#[derive(Clone, Debug)]
pub(crate) struct PodInfo {
    pub obj: Arc<Value>,
    pub node: Option<String>,
    pub phase: String,
    pub terminating: bool,
    pub daemonset: bool,
    pub created: jiff::Timestamp,
    /// Start or stop already scheduled.
    pub start_queued: bool,
    pub stop_queued: bool,
    /// Seconds from creation to Running, once it ran.
    pub seq: u64,
    /// `spec.priority` (0 when unset) and whether `spec.schedulerName` is the default one:
    /// read from the object once, not by every scheduling cycle for every queued pod.
    pub priority: i64,
    pub default_scheduler: bool,
}

/// Counters and samples the report is built from.
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    /// Pending-to-running latency of every workload pod that started, in seconds.
    pub pending_to_running: Vec<f64>,
    pub samples: Vec<crate::report::Sample>,
    pub interruption_warnings: u64,
    /// Per workload (namespace, name): the interruption warnings (instant, node) of its pods that
    /// have not been made good by a pod of it Running on another node yet, oldest first.
    pub interruption_debts:
        HashMap<(String, String), std::collections::VecDeque<(Instant, String)>>,
    /// Workload pods on a node when its interruption warning came.
    pub interrupted_pods: u64,
    /// Seconds from a warning to a replacement Running elsewhere, per displaced pod.
    pub interruption_rescheduled: Vec<f64>,
    /// Workload pods still on an interrupted instance when it went away.
    pub pods_killed_by_interruption: u64,
    pub pods_created: u64,
    pub binds: u64,
    pub scheduling_cycles: u64,
    /// Wall time spent in the cluster machinery, and in scheduling cycles within it.
    pub cluster_wall: Duration,
    pub scheduler_wall: Duration,
}

/// The cluster machinery. Created by the runner; `step` drives it.
pub struct Cluster {
    pub(crate) api: ApiServer,
    pub(crate) k: CoreKinds,
    pub(crate) cloud: FakeCloud,
    pub(crate) clock: SharedClock,
    pub(crate) options: ClusterOptions,
    pub(crate) catalog: BTreeMap<String, InstanceType>,
    pub(crate) region: String,
    pod_rx: mpsc::UnboundedReceiver<WatchMsg>,
    node_rx: mpsc::UnboundedReceiver<WatchMsg>,
    cloud_rx: broadcast::Receiver<FakeEvent>,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    timer_seq: u64,
    // scheduler
    pub(crate) index: ClusterIndex,
    pub(crate) nodes: BTreeMap<String, NodeInfo>,
    pub(crate) pods: HashMap<String, PodInfo>,
    pub(crate) pods_by_node: HashMap<String, BTreeSet<String>>,
    /// Unbound pods waiting for the scheduler, by arrival order.
    pub(crate) queue: BTreeMap<u64, String>,
    pub(crate) fresh: BTreeSet<String>,
    pub(crate) capacity_changed: bool,
    pub(crate) schedule_queued: bool,
    pub(crate) unschedulable_since: HashMap<String, (Instant, String)>,
    /// The solver's view of pending pods and their scheduling signature (pod specs do not change
    /// while pending, so it is computed once).
    pub(crate) domain_cache: HashMap<String, Arc<(PodRequest, u64)>>,
    pod_seq: u64,
    // controllers
    pub(crate) workloads: BTreeMap<(String, String), WorkloadState>,
    pub(crate) daemonsets: Vec<daemonsets::DaemonSetInfo>,
    /// (DaemonSet `namespace/name`, node) pairs that have their DaemonSet pod.
    pub(crate) daemon_pods: HashSet<(String, String)>,
    pub(crate) launched: HashMap<String, stowage_cloud::fake::FakeInstance>,
    pub(crate) node_counter: u64,
    /// Provider ids of instances that got an interruption warning.
    pub(crate) interrupted: HashSet<String>,
    pub recorder: Recorder,
    /// Counts what a disruption controller must never do (see `referee.rs`).
    pub(crate) referee: referee::Referee,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.nodes.len())
            .field("pods", &self.pods.len())
            .finish_non_exhaustive()
    }
}

/// Errors setting up the cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] crate::apiserver::Error),
    #[error("failed to create {what}")]
    CreateObject {
        what: String,
        #[source]
        source: crate::apiserver::ApiError,
    },
    #[error("initial node: unknown instance type {0:?}")]
    FindInstanceType(String),
}

impl Cluster {
    pub fn new(
        api: ApiServer,
        cloud: FakeCloud,
        clock: SharedClock,
        catalog: &[InstanceType],
        options: ClusterOptions,
    ) -> Result<Self, Error> {
        let k = api.core_kinds()?;
        let (_, pod_rx) = api.store().watch(k.pod, Filter::default(), None, false);
        let (_, node_rx) = api.store().watch(k.node, Filter::default(), None, false);
        let cloud_rx = cloud.subscribe();
        let referee = referee::Referee::new(&api, k, &cloud);
        let region = cloud.config().region.clone();
        Ok(Self {
            api,
            k,
            cloud,
            clock,
            options,
            catalog: catalog
                .iter()
                .map(|t| (t.name.clone(), t.clone()))
                .collect(),
            region,
            pod_rx,
            node_rx,
            cloud_rx,
            timers: BinaryHeap::new(),
            timer_seq: 0,
            index: ClusterIndex::default(),
            nodes: BTreeMap::new(),
            pods: HashMap::new(),
            pods_by_node: HashMap::new(),
            queue: BTreeMap::new(),
            fresh: BTreeSet::new(),
            capacity_changed: false,
            schedule_queued: false,
            unschedulable_since: HashMap::new(),
            domain_cache: HashMap::new(),
            pod_seq: 0,
            workloads: BTreeMap::new(),
            daemonsets: Vec::new(),
            daemon_pods: HashSet::new(),
            launched: HashMap::new(),
            node_counter: 0,
            interrupted: HashSet::new(),
            recorder: Recorder::default(),
            referee,
        })
    }

    pub(crate) fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    pub(crate) fn now_string(&self) -> String {
        self.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    fn at(&mut self, delay: Duration, timer: Timer) {
        self.timer_seq += 1;
        self.timers
            .push(Reverse((Instant::now() + delay, self.timer_seq, timer)));
    }

    /// Sets up what the scenario starts with: NodeClasses (resolved), NodePools, DaemonSets and
    /// pre-existing nodes.
    pub fn bootstrap(&mut self, scenario: &Scenario) -> Result<(), Error> {
        workloads::bootstrap(self, scenario)
    }

    /// Applies one timeline action.
    pub fn apply(&mut self, action: &Action) {
        match action {
            Action::Create(w) => workloads::create(self, w),
            Action::Scale(s) => workloads::scale(self, &s.namespace, &s.name, s.replicas),
            Action::Delete(d) => workloads::delete(self, &d.namespace, &d.name),
            Action::InsufficientCapacity(ice) => self.open_ice(ice),
            Action::Interrupt(x) => self.interrupt(x),
        }
    }

    fn open_ice(&mut self, ice: &crate::scenario::IceWindow) {
        let types: Vec<Option<String>> = if ice.instance_types.is_empty() {
            vec![None]
        } else {
            ice.instance_types.iter().cloned().map(Some).collect()
        };
        let zones: Vec<Option<String>> = if ice.zones.is_empty() {
            vec![None]
        } else {
            ice.zones.iter().cloned().map(Some).collect()
        };
        for t in &types {
            for z in &zones {
                self.cloud.ice_window_for(
                    stowage_cloud::fake::OfferingMatcher {
                        instance_type: t.clone(),
                        zone: z.clone(),
                        capacity_type: ice.capacity_type,
                    },
                    ice.duration.as_std(),
                );
            }
        }
    }

    fn interrupt(&mut self, x: &crate::scenario::Interrupt) {
        let chosen: Vec<String> = self
            .cloud
            .instances()
            .into_iter()
            .filter(|i| {
                i.capacity_type == CapacityType::Spot
                    && i.state == stowage_cloud::fake::InstanceState::Running
            })
            .filter(|i| {
                x.node_pool
                    .as_deref()
                    .is_none_or(|p| i.nodepool.as_deref() == Some(p))
                    && x.instance_type
                        .as_deref()
                        .is_none_or(|t| i.instance_type == t)
                    && x.zone.as_deref().is_none_or(|z| i.zone == z)
            })
            .map(|i| i.provider_id)
            .take(x.count as usize)
            .collect();
        for id in chosen {
            let _ = self.cloud.interrupt(&id);
        }
    }

    /// Processes everything that is ready now (watch events, cloud events, due timers) and a
    /// scheduling cycle when one is due. Returns the instant of the next timer, if any.
    pub fn step(&mut self) -> Option<Instant> {
        let t0 = std::time::Instant::now();
        let next = self.step_inner();
        self.recorder.cluster_wall += t0.elapsed();
        next
    }

    fn step_inner(&mut self) -> Option<Instant> {
        loop {
            let mut progressed = false;
            self.referee.drain(self.clock.now());
            while let Ok(msg) = self.node_rx.try_recv() {
                progressed = true;
                if let WatchMsg::Event { etype, object, .. } = msg {
                    self.on_node(etype, object);
                }
            }
            while let Ok(msg) = self.pod_rx.try_recv() {
                progressed = true;
                if let WatchMsg::Event { etype, object, .. } = msg {
                    self.on_pod(etype, object);
                }
            }
            loop {
                match self.cloud_rx.try_recv() {
                    Ok(ev) => {
                        progressed = true;
                        self.on_cloud(ev);
                    }
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        tracing::warn!(
                            lost = n,
                            "the simulated kubelet lagged behind the fake cloud's events"
                        );
                    }
                    Err(_) => break,
                }
            }
            let now = Instant::now();
            while let Some(Reverse((at, _, _))) = self.timers.peek()
                && *at <= now
            {
                if let Some(Reverse((_, _, timer))) = self.timers.pop() {
                    progressed = true;
                    self.fire(timer);
                }
            }
            if !progressed {
                break;
            }
        }
        self.referee.drain(self.clock.now());
        if (!self.fresh.is_empty() || (self.capacity_changed && !self.queue.is_empty()))
            && !self.schedule_queued
        {
            self.schedule_queued = true;
            self.at(self.options.scheduler_debounce, Timer::Schedule);
        }
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Waits until there is something to do (a watch event, a cloud event) or `deadline`.
    pub async fn wait(&mut self, deadline: Instant) {
        let next_timer = self.timers.peek().map(|Reverse((at, _, _))| *at);
        let until = next_timer.map_or(deadline, |t| t.min(deadline));
        tokio::select! {
            biased;
            m = self.node_rx.recv() => if let Some(WatchMsg::Event { etype, object, .. }) = m {
                let t0 = std::time::Instant::now();
                self.on_node(etype, object);
                self.recorder.cluster_wall += t0.elapsed();
            },
            m = self.pod_rx.recv() => if let Some(WatchMsg::Event { etype, object, .. }) = m {
                let t0 = std::time::Instant::now();
                self.on_pod(etype, object);
                self.recorder.cluster_wall += t0.elapsed();
            },
            ev = self.cloud_rx.recv() => if let Ok(ev) = ev { self.on_cloud(ev) },
            _ = tokio::time::sleep_until(until) => {}
        }
    }

    fn fire(&mut self, timer: Timer) {
        match timer {
            Timer::RegisterNode(pid) => self.register_node(&pid),
            Timer::RemoveStartupTaints(node) => self.remove_startup_taints(&node),
            Timer::NodeGone(pid) => self.node_gone(&pid),
            Timer::PodStart(key) => self.start_pod(&key),
            Timer::PodFinish(key) => self.finish_pod(&key),
            Timer::PodStop(key) => self.stop_pod(&key),
            Timer::Schedule => {
                self.schedule_queued = false;
                let t0 = std::time::Instant::now();
                self.schedule_cycle();
                self.recorder.scheduler_wall += t0.elapsed();
            }
        }
    }

    fn on_cloud(&mut self, ev: FakeEvent) {
        match ev {
            FakeEvent::Launched(instance) => {
                let pid = instance.provider_id.clone();
                self.launched.insert(pid.clone(), instance);
                self.at(
                    self.options.timings.node_registration.as_std(),
                    Timer::RegisterNode(pid),
                );
            }
            FakeEvent::InterruptionWarning { provider_id, .. } => {
                self.recorder.interruption_warnings += 1;
                self.on_interruption_warning(&provider_id);
            }
            FakeEvent::Terminated { provider_id, .. } => {
                if self.interrupted.remove(&provider_id) {
                    self.count_killed(&provider_id);
                }
                self.launched.remove(&provider_id);
                self.at(
                    self.options.timings.node_lifecycle.as_std(),
                    Timer::NodeGone(provider_id.clone()),
                );
                if let Some(n) = self
                    .nodes
                    .values_mut()
                    .find(|n| n.provider_id == provider_id)
                {
                    n.dead = true;
                }
            }
        }
    }

    /// The workload pods on the warned node become debts of their workloads (see
    /// [`Recorder::interruption_debts`]).
    fn on_interruption_warning(&mut self, provider_id: &str) {
        self.interrupted.insert(provider_id.to_string());
        let Some(node) = self
            .nodes
            .values()
            .find(|n| n.provider_id == provider_id)
            .map(|n| n.name.clone())
        else {
            return;
        };
        let now = Instant::now();
        let keys: Vec<String> = self
            .pods_by_node
            .get(&node)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for key in keys {
            let Some(p) = self.pods.get(&key) else {
                continue;
            };
            if p.daemonset || p.terminating || p.phase == "Succeeded" || p.phase == "Failed" {
                continue;
            }
            let Some(w) = workloads::workload_key(self, &p.obj) else {
                continue;
            };
            self.recorder.interrupted_pods += 1;
            self.recorder
                .interruption_debts
                .entry(w)
                .or_default()
                .push_back((now, node.clone()));
        }
    }

    /// A workload pod started on `node`: it makes good the oldest debt of its workload from
    /// another node.
    pub(crate) fn settle_interruption_debt(&mut self, obj: &Value, node: &str) {
        if self.recorder.interruption_debts.is_empty() {
            return;
        }
        let Some(w) = workloads::workload_key(self, obj) else {
            return;
        };
        let Some(debts) = self.recorder.interruption_debts.get_mut(&w) else {
            return;
        };
        if let Some(i) = debts.iter().position(|(_, n)| n != node)
            && let Some((at, _)) = debts.remove(i)
        {
            self.recorder
                .interruption_rescheduled
                .push(Instant::now().duration_since(at).as_secs_f64());
        }
        if debts.is_empty() {
            self.recorder.interruption_debts.remove(&w);
        }
    }

    /// Counts the workload pods an interrupted instance took with it.
    fn count_killed(&mut self, provider_id: &str) {
        let Some(node) = self
            .nodes
            .values()
            .find(|n| n.provider_id == provider_id)
            .map(|n| n.name.clone())
        else {
            return;
        };
        let killed = self
            .pods_by_node
            .get(&node)
            .into_iter()
            .flatten()
            .filter_map(|k| self.pods.get(k))
            .filter(|p| {
                p.node.as_deref() == Some(node.as_str())
                    && !p.daemonset
                    && p.phase != "Succeeded"
                    && p.phase != "Failed"
            })
            .count();
        self.recorder.pods_killed_by_interruption += killed as u64;
    }

    pub(crate) fn pod_key(obj: &Value) -> String {
        stowage_api::namespaced_key(
            crate::apiserver::namespace_of(obj),
            crate::apiserver::name_of(obj),
        )
    }

    fn on_pod(&mut self, etype: EventType, obj: Arc<Value>) {
        let key = Self::pod_key(&obj);
        if etype == EventType::Deleted {
            self.forget_pod(&key);
            workloads::on_pod_gone(self, &obj);
            daemonsets::on_pod_gone(self, &obj);
            return;
        }
        let node = obj
            .ptr("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let phase = obj
            .ptr("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("Pending")
            .to_string();
        let terminating = obj
            .ptr("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null());
        let daemonset = obj
            .ptr("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .is_some_and(|r| {
                r.iter()
                    .any(|o| o.get("kind").and_then(Value::as_str) == Some("DaemonSet"))
            });
        let created = obj
            .ptr("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| self.now());
        // What the previous version left (not a copy of it all: this runs for every change).
        let prev = self.pods.get_mut(&key).map(|p| {
            (
                p.seq,
                p.start_queued,
                p.stop_queued,
                std::mem::take(&mut p.phase),
            )
        });
        let seq = match &prev {
            Some(p) => p.0,
            None => {
                self.pod_seq += 1;
                self.pod_seq
            }
        };
        let info = PodInfo {
            obj: obj.clone(),
            node: node.clone(),
            phase: phase.clone(),
            terminating,
            daemonset,
            created,
            start_queued: prev.as_ref().is_some_and(|p| p.1),
            stop_queued: prev.as_ref().is_some_and(|p| p.2),
            seq,
            priority: obj
                .ptr("/spec/priority")
                .and_then(Value::as_i64)
                .unwrap_or(0),
            default_scheduler: obj
                .ptr("/spec/schedulerName")
                .and_then(Value::as_str)
                .is_none_or(|s| s == "default-scheduler"),
        };
        let terminal = phase == "Succeeded" || phase == "Failed";
        // Scheduler queue.
        if node.is_none() && !terminating && !terminal {
            if let std::collections::btree_map::Entry::Vacant(e) = self.queue.entry(seq) {
                e.insert(key.clone());
                self.fresh.insert(key.clone());
            }
        } else {
            self.queue.remove(&seq);
            self.fresh.remove(&key);
            self.unschedulable_since.remove(&key);
            self.domain_cache.remove(&key);
        }
        if let Some(n) = &node {
            self.pods_by_node
                .entry(n.clone())
                .or_default()
                .insert(key.clone());
        }
        // Resources held in the scheduler's index.
        let holds = node.is_some() && !terminal;
        let in_index = self.index.node_of(&key).is_some();
        if holds && !in_index {
            if let Some(n) = &node
                && self.index.node(n).is_some()
                && let Some(p) = self.domain_pod(&obj)
            {
                let _ = self.index.bind(p, n);
            }
        } else if !holds && in_index {
            self.index.unbind(&key);
            self.capacity_changed = true;
        }
        self.pods.insert(key.clone(), info);
        workloads::on_pod_changed(self, &key, prev.as_ref().map(|p| p.3.as_str()));
        kubelet::on_pod(self, &key);
    }

    fn forget_pod(&mut self, key: &str) {
        if let Some(p) = self.pods.remove(key) {
            self.queue.remove(&p.seq);
            if let Some(n) = &p.node
                && let Some(set) = self.pods_by_node.get_mut(n)
            {
                set.remove(key);
            }
        }
        self.fresh.remove(key);
        self.unschedulable_since.remove(key);
        self.domain_cache.remove(key);
        if self.index.unbind(key).is_some() {
            self.capacity_changed = true;
        }
    }

    fn on_node(&mut self, etype: EventType, obj: Arc<Value>) {
        let name = crate::apiserver::name_of(&obj).to_string();
        if etype == EventType::Deleted {
            self.index.remove_node(&name);
            self.nodes.remove(&name);
            self.capacity_changed = true;
            daemonsets::forget_node(self, &name);
            kubelet::collect_pods_of(self, &name);
            return;
        }
        kubelet::on_node(self, &name, &obj);
    }

    pub(crate) fn domain_pod(&self, obj: &Value) -> Option<PodRequest> {
        let pod: Pod = serde::Deserialize::deserialize(obj).ok()?;
        match stowage_solver::convert::pod(&pod) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "the simulated scheduler cannot read a pod");
                None
            }
        }
    }

    /// Unbound, non-terminating workload pods (what "pending" means in the report).
    pub fn pending_pods(&self) -> usize {
        self.queue
            .values()
            .filter(|k| self.pods.get(*k).is_some_and(|p| !p.daemonset))
            .count()
    }

    /// Pods with phase Running.
    pub fn running_pods(&self) -> usize {
        self.pods
            .values()
            .filter(|p| p.phase == "Running" && !p.daemonset)
            .count()
    }

    /// Nodes known to the cluster.
    pub fn node_infos(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values()
    }

    /// What the referee counted so far (nodes still disrupting without a stated reason are
    /// judged when `finish` is set: call it once, at the end).
    pub fn referee_tally(&mut self, finish: bool) -> Tally {
        self.referee.drain(self.clock.now());
        if finish {
            self.referee.finish();
        }
        self.referee.tally.clone()
    }

    /// Deletes a pod as the simulated cluster's own workload controllers do (not a disruption).
    pub(crate) fn delete_own_pod(&mut self, ns: &str, name: &str) {
        self.referee
            .own_pod_deletion(&stowage_api::namespaced_key(ns, name));
        let _ = self.api.store().delete(
            self.k.pod,
            ns,
            name,
            &crate::apiserver::DeleteOpts::default(),
        );
    }

    /// Ready nodes whose instance is alive and that hold no pod but DaemonSet and finished ones.
    pub fn empty_nodes(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| n.ready && !n.dead)
            .filter(|n| {
                self.pods_by_node.get(&n.name).is_none_or(|keys| {
                    keys.iter().all(|k| {
                        self.pods.get(k).is_none_or(|p| {
                            p.daemonset
                                || p.phase == "Succeeded"
                                || p.phase == "Failed"
                                || p.node.as_deref() != Some(n.name.as_str())
                        })
                    })
                })
            })
            .count()
    }

    /// Every pending pod's object (for the final report).
    pub(crate) fn pending_objects(&self) -> Vec<Arc<Value>> {
        self.queue
            .values()
            .filter_map(|k| self.pods.get(k))
            .filter(|p| !p.daemonset)
            .map(|p| p.obj.clone())
            .collect()
    }
}
