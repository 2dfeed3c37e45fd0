//! Scenario files: what the simulated cluster starts with (catalogue, NodePools, EC2NodeClasses,
//! DaemonSets, pre-existing nodes) and a timeline of actions in virtual time (create, scale or
//! delete a workload, open an insufficient-capacity window, interrupt spot nodes). The format is
//! documented in docs/simulator.md; the built-in scenarios live in `scenarios/`.
//!
//! Unknown fields are errors: a typo fails with the file, line and field named.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use stowage_api::{CapacityType, Duration};

/// Scenario loading and validation errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read scenario {path}")]
    ReadScenario {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    ParseScenario { path: String, message: String },
    #[error("{path}: {field}: {message}")]
    ValidateScenario {
        path: String,
        field: String,
        message: String,
    },
    #[error("unknown built-in scenario {0:?} (expected one of: {names})", names = BUILTIN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))]
    FindBuiltin(String),
}

/// The most pods a scenario may create or scale to, summed over its timeline.
pub const MAX_SCENARIO_PODS: u64 = 200_000;
/// The most timeline actions, recurring steps expanded.
pub const MAX_SCENARIO_ACTIONS: usize = 100_000;
/// The longest scenario (virtual time).
pub const MAX_SCENARIO_DURATION: std::time::Duration =
    std::time::Duration::from_secs(7 * 24 * 3600);

/// The built-in scenarios: name and YAML.
pub const BUILTIN: &[(&str, &str)] = &[
    ("quickstart", include_str!("../scenarios/quickstart.yaml")),
    ("seed", include_str!("../scenarios/seed.yaml")),
    ("seed-full", include_str!("../scenarios/seed-full.yaml")),
];

/// A whole scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Total virtual time simulated.
    pub duration: Duration,
    /// How often the report samples the cluster (default 30s).
    #[serde(default = "default_sample")]
    pub sample_every: Duration,
    #[serde(default)]
    pub catalog: CatalogSpec,
    #[serde(default)]
    pub timings: Timings,
    #[serde(default)]
    pub node_classes: Vec<NodeClassDef>,
    #[serde(default)]
    pub node_pools: Vec<NodePoolDef>,
    #[serde(default)]
    pub daemon_sets: Vec<DaemonSetDef>,
    #[serde(default)]
    pub initial_nodes: Vec<InitialNodes>,
    #[serde(default)]
    pub timeline: Vec<Step>,
}

fn default_sample() -> Duration {
    Duration::from_secs(30)
}

/// Where instance types come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogSource {
    /// `stowage_solver::catalog::karpenter_shape(types)`.
    #[default]
    Synthetic,
    /// The embedded AWS catalogue, handed to the simulator by the binary.
    Aws,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogSpec {
    #[serde(default)]
    pub source: CatalogSource,
    /// Synthetic: how many types (default 20).
    #[serde(default)]
    pub types: Option<usize>,
    /// AWS: keep only these families (`m5`, `c6i`, ...); empty keeps all.
    #[serde(default)]
    pub families: Vec<String>,
    /// AWS: keep these instance types as well (`dl1.24xlarge`).
    #[serde(default)]
    pub instance_types: Vec<String>,
}

/// Delays of the simulated machinery (all in virtual time).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timings {
    /// From the cloud returning an instance to its Node object appearing.
    #[serde(default = "d30")]
    pub node_registration: Duration,
    /// From registration to the startup taints being removed.
    #[serde(default = "d10")]
    pub startup_taint_removal: Duration,
    /// From binding to the pod Running.
    #[serde(default = "d2")]
    pub pod_startup: Duration,
    /// How long a pod takes to stop once deleted (capped by its grace period).
    #[serde(default = "d3")]
    pub pod_shutdown: Duration,
    /// Cloud launch latency (CreateFleet to instance).
    #[serde(default = "d3")]
    pub launch_latency: Duration,
    /// Notice between a spot interruption warning and the instance going away.
    #[serde(default = "d120")]
    pub interruption_warning: Duration,
    /// From an instance disappearing to its Node being deleted (cloud node lifecycle).
    #[serde(default = "d5")]
    pub node_lifecycle: Duration,
}

fn d2() -> Duration {
    Duration::from_secs(2)
}
fn d3() -> Duration {
    Duration::from_secs(3)
}
fn d5() -> Duration {
    Duration::from_secs(5)
}
fn d10() -> Duration {
    Duration::from_secs(10)
}
fn d30() -> Duration {
    Duration::from_secs(30)
}
fn d120() -> Duration {
    Duration::from_secs(120)
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            node_registration: d30(),
            startup_taint_removal: d10(),
            pod_startup: d2(),
            pod_shutdown: d3(),
            launch_latency: d3(),
            interruption_warning: d120(),
            node_lifecycle: d5(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeClassDef {
    pub name: String,
    /// Omitted: [`simulated_node_class`], a class a real API server accepts.
    #[serde(default = "simulated_node_class")]
    pub spec: stowage_api::EC2NodeClassSpec,
}

/// The class a scenario gets when it names a node class without a spec: the latest AL2023 AMI,
/// subnets and security groups tagged `stowage.dev/discovery: sim`, the node role
/// `StowageNodeRole`.
pub fn simulated_node_class() -> stowage_api::EC2NodeClassSpec {
    let discovery: BTreeMap<String, String> =
        [("stowage.dev/discovery".to_string(), "sim".to_string())].into();
    stowage_api::EC2NodeClassSpec {
        ami_selector_terms: vec![stowage_api::AmiSelectorTerm {
            alias: Some("al2023@latest".into()),
            ..Default::default()
        }],
        subnet_selector_terms: vec![stowage_api::SubnetSelectorTerm {
            tags: discovery.clone(),
            ..Default::default()
        }],
        security_group_selector_terms: vec![stowage_api::SecurityGroupSelectorTerm {
            tags: discovery,
            ..Default::default()
        }],
        role: Some("StowageNodeRole".into()),
        ..Default::default()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodePoolDef {
    pub name: String,
    /// The NodePool's own labels (`metadata.labels`), e.g. for a `capacityMix.scope` selector.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    pub spec: stowage_api::NodePoolSpec,
}

/// A DaemonSet whose pods run on every node they tolerate and select.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DaemonSetDef {
    pub name: String,
    #[serde(default = "kube_system")]
    pub namespace: String,
    pub requests: BTreeMap<String, String>,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub tolerations: Vec<TolerationDef>,
}

fn kube_system() -> String {
    "kube-system".into()
}

/// Nodes that exist before the scenario starts (not managed by Stowage).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InitialNodes {
    pub instance_type: String,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default = "on_demand")]
    pub capacity_type: CapacityType,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub taints: Vec<TaintDef>,
}

fn one() -> u32 {
    1
}
fn on_demand() -> CapacityType {
    CapacityType::OnDemand
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaintDef {
    pub key: String,
    #[serde(default)]
    pub value: String,
    pub effect: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TolerationDef {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub operator: Option<String>,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub effect: String,
}

/// One timeline entry: when (`at`, or `every` from `at` until `until`) and exactly one action.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    #[serde(default)]
    pub at: Option<Duration>,
    #[serde(default)]
    pub every: Option<Duration>,
    #[serde(default)]
    pub until: Option<Duration>,
    #[serde(default)]
    pub create: Option<Workload>,
    #[serde(default)]
    pub scale: Option<Scale>,
    #[serde(default)]
    pub delete: Option<DeleteWorkload>,
    #[serde(default)]
    pub insufficient_capacity: Option<IceWindow>,
    #[serde(default)]
    pub interrupt: Option<Interrupt>,
}

/// How a workload's pods are owned and when they finish.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkloadKind {
    /// Long-running replicas (a ReplicaSet); deleted or evicted pods are replaced.
    #[default]
    Deployment,
    /// Pods that finish after `runTime`; failed or evicted pods are retried.
    Job,
    /// A driver pod, then `replicas` executors owned by it once it runs; finishes after `runTime`.
    SparkApplication,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    #[serde(default = "default_ns")]
    pub namespace: String,
    #[serde(default)]
    pub kind: WorkloadKind,
    pub replicas: u32,
    /// Resource requests per pod (`cpu: 500m`, `memory: 1Gi`, `habana.ai/gaudi: "8"`).
    pub requests: BTreeMap<String, String>,
    /// SparkApplication: the driver's requests (default: the executors').
    #[serde(default)]
    pub driver_requests: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Required node affinity: every entry is `key: [values]` (operator In), ANDed.
    #[serde(default)]
    pub node_affinity: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub tolerations: Vec<TolerationDef>,
    #[serde(default)]
    pub spread: Vec<SpreadDef>,
    /// Required pod anti-affinity against the workload's own pods on this topology key.
    #[serde(default)]
    pub anti_affinity: Option<String>,
    /// Job and SparkApplication: how long each pod runs once started.
    #[serde(default)]
    pub run_time: Option<Duration>,
    #[serde(default)]
    pub priority: Option<i32>,
    #[serde(default)]
    pub termination_grace_period: Option<Duration>,
    /// A PodDisruptionBudget over the workload's pods.
    #[serde(default)]
    pub pdb: Option<PdbDef>,
}

fn default_ns() -> String {
    "default".into()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpreadDef {
    pub topology_key: String,
    #[serde(default = "one_i32")]
    pub max_skew: i32,
    #[serde(default = "do_not_schedule")]
    pub when_unsatisfiable: String,
}

fn one_i32() -> i32 {
    1
}
fn do_not_schedule() -> String {
    "DoNotSchedule".into()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PdbDef {
    #[serde(default)]
    pub min_available: Option<String>,
    #[serde(default)]
    pub max_unavailable: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Scale {
    pub name: String,
    #[serde(default = "default_ns")]
    pub namespace: String,
    pub replicas: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteWorkload {
    pub name: String,
    #[serde(default = "default_ns")]
    pub namespace: String,
}

/// An insufficient-capacity window: matching offerings fail to launch while it is open.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IceWindow {
    /// Instance types (empty = every type).
    #[serde(default)]
    pub instance_types: Vec<String>,
    /// Zones (empty = every zone).
    #[serde(default)]
    pub zones: Vec<String>,
    /// Capacity type (absent = both).
    #[serde(default)]
    pub capacity_type: Option<CapacityType>,
    /// How long the window stays open.
    pub duration: Duration,
}

/// Interrupt `count` running spot instances (optionally only of one NodePool, instance type or
/// zone: `instanceType` and `zone` together make one capacity pool "hot"), with the warning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Interrupt {
    pub count: u32,
    #[serde(default)]
    pub node_pool: Option<String>,
    #[serde(default)]
    pub instance_type: Option<String>,
    #[serde(default)]
    pub zone: Option<String>,
}

/// An action resolved to its virtual time.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    Create(Workload),
    Scale(Scale),
    Delete(DeleteWorkload),
    InsufficientCapacity(IceWindow),
    Interrupt(Interrupt),
}

impl Scenario {
    /// Parses YAML; `path` names the source in errors (`seed.yaml: line 12 column 5: unknown field ...`).
    pub fn from_yaml(path: &str, yaml: &str) -> Result<Self, Error> {
        let s: Scenario = serde_saphyr::from_str(yaml).map_err(|e| Error::ParseScenario {
            path: path.to_string(),
            message: e
                .to_string()
                .trim_start_matches("error: ")
                .replace("<input>", path),
        })?;
        s.validate(path)?;
        Ok(s)
    }

    /// Loads a file.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadScenario {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&path.display().to_string(), &text)
    }

    /// A built-in scenario by name.
    pub fn builtin(name: &str) -> Result<Self, Error> {
        let (n, yaml) = BUILTIN
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| Error::FindBuiltin(name.into()))?;
        Self::from_yaml(&format!("<built-in {n}>"), yaml)
    }

    /// A built-in name, or else a path to a file.
    pub fn load(name_or_path: &str) -> Result<Self, Error> {
        if BUILTIN.iter().any(|(n, _)| *n == name_or_path) {
            Self::builtin(name_or_path)
        } else if !Path::new(name_or_path).exists() && !name_or_path.contains(['/', '.']) {
            Err(Error::FindBuiltin(name_or_path.to_string()))
        } else {
            Self::from_file(Path::new(name_or_path))
        }
    }

    fn validate(&self, path: &str) -> Result<(), Error> {
        let err = |field: String, message: &str| Error::ValidateScenario {
            path: path.to_string(),
            field,
            message: message.to_string(),
        };
        if self.duration.as_std().is_zero() {
            return Err(err("duration".into(), "must be positive"));
        }
        if self.sample_every.as_std().is_zero() {
            return Err(err("sampleEvery".into(), "must be positive"));
        }
        for (i, step) in self.timeline.iter().enumerate() {
            let field = format!("timeline[{i}]");
            let actions = [
                step.create.is_some(),
                step.scale.is_some(),
                step.delete.is_some(),
                step.insufficient_capacity.is_some(),
                step.interrupt.is_some(),
            ];
            if actions.iter().filter(|a| **a).count() != 1 {
                return Err(err(
                    field,
                    "needs exactly one of create, scale, delete, insufficientCapacity, interrupt",
                ));
            }
            if step.at.is_none() && step.every.is_none() {
                return Err(err(field, "needs `at` or `every`"));
            }
            if step.every.is_some_and(|e| e.as_std().is_zero()) {
                return Err(err(format!("{field}.every"), "must be positive"));
            }
            if let Some(w) = &step.create {
                for (k, v) in w.requests.iter().chain(w.driver_requests.iter().flatten()) {
                    if stowage_api::quantity::parse_resource(k, v).is_err() {
                        return Err(err(
                            format!("{field}.create.requests.{k}"),
                            &format!("invalid quantity {v:?}"),
                        ));
                    }
                }
                if w.kind != WorkloadKind::Deployment && w.run_time.is_none() {
                    return Err(err(
                        format!("{field}.create.runTime"),
                        "required for Job and SparkApplication",
                    ));
                }
            }
        }
        // NodePools and node classes as the API server and the controllers would judge them.
        for (i, p) in self.node_pools.iter().enumerate() {
            let pool = stowage_api::NodePool::new(&p.name, p.spec.clone());
            if let Err(errors) = pool.validate() {
                let first = &errors[0];
                return Err(err(
                    format!("nodePools[{i}].{}", first.path),
                    &first.message,
                ));
            }
        }
        for (i, c) in self.node_classes.iter().enumerate() {
            let class = stowage_api::EC2NodeClass::new(&c.name, c.spec.clone());
            if let Err(errors) = class.validate() {
                let first = &errors[0];
                return Err(err(
                    format!("nodeClasses[{i}].{}", first.path),
                    &first.message,
                ));
            }
        }
        self.check_size(path)?;
        for (i, ds) in self.daemon_sets.iter().enumerate() {
            for (k, v) in &ds.requests {
                if stowage_api::quantity::parse_resource(k, v).is_err() {
                    return Err(err(
                        format!("daemonSets[{i}].requests.{k}"),
                        &format!("invalid quantity {v:?}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Refuses scenarios past the documented limits ([`MAX_SCENARIO_PODS`] pods created or scaled
    /// to, [`MAX_SCENARIO_ACTIONS`] timeline actions, [`MAX_SCENARIO_DURATION`]) before anything
    /// runs, instead of taking the machine's memory.
    fn check_size(&self, path: &str) -> Result<(), Error> {
        let err = |field: &str, message: String| Error::ValidateScenario {
            path: path.to_string(),
            field: field.to_string(),
            message,
        };
        if self.duration.as_std() > MAX_SCENARIO_DURATION {
            return Err(err(
                "duration",
                format!("at most {} hours", MAX_SCENARIO_DURATION.as_secs() / 3600),
            ));
        }
        let schedule = self.schedule();
        if schedule.len() > MAX_SCENARIO_ACTIONS {
            return Err(err(
                "timeline",
                format!(
                    "{} actions (recurring steps expanded); the limit is {MAX_SCENARIO_ACTIONS}",
                    schedule.len()
                ),
            ));
        }
        let pods: u64 = schedule
            .iter()
            .map(|(_, a)| match a {
                Action::Create(w) => {
                    u64::from(w.replicas) + u64::from(w.kind == WorkloadKind::SparkApplication)
                }
                Action::Scale(s) => u64::from(s.replicas),
                _ => 0,
            })
            .sum();
        if pods > MAX_SCENARIO_PODS {
            return Err(err(
                "timeline",
                format!(
                    "creates or scales to {pods} pods in all; the limit is {MAX_SCENARIO_PODS}"
                ),
            ));
        }
        Ok(())
    }

    /// The same scenario `speed` times faster: every duration (the run, sampling, the
    /// machinery's timings, timeline times, run times, insufficient-capacity windows) divided by
    /// `speed`. For serving a scenario in real time (`stowage sim serve --scenario`) to a
    /// controller process that runs on the wall clock. A speed of 0 is taken as 1.
    pub fn sped_up(mut self, speed: u32) -> Self {
        let speed = speed.max(1);
        let f = |d: &mut Duration| *d = Duration(d.as_std() / speed);
        f(&mut self.duration);
        f(&mut self.sample_every);
        let t = &mut self.timings;
        for d in [
            &mut t.node_registration,
            &mut t.startup_taint_removal,
            &mut t.pod_startup,
            &mut t.pod_shutdown,
            &mut t.launch_latency,
            &mut t.interruption_warning,
            &mut t.node_lifecycle,
        ] {
            f(d);
        }
        for step in &mut self.timeline {
            for d in [&mut step.at, &mut step.every, &mut step.until]
                .into_iter()
                .flatten()
            {
                f(d);
            }
            if let Some(w) = &mut step.create
                && let Some(r) = &mut w.run_time
            {
                f(r);
            }
            if let Some(ice) = &mut step.insufficient_capacity {
                f(&mut ice.duration);
            }
        }
        self
    }

    /// Every action at its virtual time (offset from the start), in time order; recurring steps
    /// are expanded (their workloads get a `-<n>` suffix).
    pub fn schedule(&self) -> Vec<(std::time::Duration, Action)> {
        let end = self.duration.as_std();
        let mut out = Vec::new();
        for (i, step) in self.timeline.iter().enumerate() {
            let start = step.at.map(Duration::as_std).unwrap_or_default();
            let times: Vec<std::time::Duration> = match step.every {
                None => vec![start],
                Some(every) => {
                    let until = step.until.map_or(end, Duration::as_std).min(end);
                    let mut ts = Vec::new();
                    let mut t = start;
                    while t < until {
                        ts.push(t);
                        t += every.as_std();
                    }
                    ts
                }
            };
            let recurring = step.every.is_some();
            for (n, t) in times.into_iter().enumerate() {
                let action = if let Some(w) = &step.create {
                    let mut w = w.clone();
                    if recurring {
                        w.name = format!("{}-{}", w.name, n + 1);
                    }
                    Action::Create(w)
                } else if let Some(s) = &step.scale {
                    Action::Scale(s.clone())
                } else if let Some(d) = &step.delete {
                    Action::Delete(d.clone())
                } else if let Some(ice) = &step.insufficient_capacity {
                    Action::InsufficientCapacity(ice.clone())
                } else if let Some(x) = &step.interrupt {
                    Action::Interrupt(x.clone())
                } else {
                    continue;
                };
                out.push((t, i, action));
            }
        }
        out.sort_by_key(|(t, i, _)| (*t, *i));
        out.into_iter().map(|(t, _, a)| (t, a)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_field_names_the_file_line_and_field() {
        let yaml = "name: x\nduration: 10m\ntimeline:\n  - at: 1m\n    create:\n      name: web\n      replicas: 3\n      requests: { cpu: 100m }\n      replicaz: 4\n";
        let err = Scenario::from_yaml("bad.yaml", yaml)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bad.yaml: "), "{err}");
        assert!(err.contains("line 9"), "{err}");
        assert!(err.contains("replicaz"), "{err}");
    }

    #[test]
    fn validation_names_the_step() {
        let yaml = "name: x\nduration: 10m\ntimeline:\n  - at: 1m\n    create: { name: a, replicas: 1, requests: { cpu: lots } }\n";
        let err = Scenario::from_yaml("v.yaml", yaml).unwrap_err().to_string();
        assert_eq!(
            err,
            "v.yaml: timeline[0].create.requests.cpu: invalid quantity \"lots\""
        );
        let yaml = "name: x\nduration: 10m\ntimeline:\n  - at: 1m\n";
        assert!(
            Scenario::from_yaml("v.yaml", yaml)
                .unwrap_err()
                .to_string()
                .contains("exactly one of")
        );
    }

    #[test]
    fn node_pools_and_classes_are_validated_like_the_controllers_do() {
        let pool = "nodeClasses: [{ name: default }]\nnodePools:\n  - name: p\n    spec:\n      weight: 500\n      template: { spec: { nodeClassRef: { group: aws.stowage.dev, kind: EC2NodeClass, name: default } } }\n";
        let yaml = format!("name: x\nduration: 10m\n{pool}");
        let err = Scenario::from_yaml("w.yaml", &yaml)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "w.yaml: nodePools[0].spec.weight: weight must be between 1 and 100, got 500"
        );
        let yaml = "name: x\nduration: 10m\nnodeClasses: [{ name: c, spec: { amiSelectorTerms: [{ alias: al2023@latest }] } }]\n";
        let err = Scenario::from_yaml("c.yaml", yaml).unwrap_err().to_string();
        assert!(err.starts_with("c.yaml: nodeClasses[0].spec."), "{err}");
    }

    #[test]
    fn scenarios_past_the_limits_are_refused_before_they_run() {
        let yaml = "name: x\nduration: 10m\ntimeline:\n  - at: 1m\n    create: { name: a, replicas: 1000000, requests: { cpu: 1 } }\n";
        let err = Scenario::from_yaml("big.yaml", yaml)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "big.yaml: timeline: creates or scales to 1000000 pods in all; the limit is 200000"
        );
        let yaml =
            "name: x\nduration: 48h\ntimeline:\n  - every: 1s\n    interrupt: { count: 1 }\n";
        let err = Scenario::from_yaml("many.yaml", yaml)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("many.yaml: timeline: 172800 actions"),
            "{err}"
        );
        let yaml = "name: x\nduration: 400h\n";
        let err = Scenario::from_yaml("long.yaml", yaml)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "long.yaml: duration: at most 168 hours");
    }

    #[test]
    fn recurring_steps_expand_in_time_order() {
        let yaml = "name: x\nduration: 10m\ntimeline:\n  - every: 4m\n    at: 1m\n    create: { name: burst, replicas: 1, kind: Job, runTime: 1m, requests: { cpu: 1 } }\n  - at: 2m\n    interrupt: { count: 1 }\n";
        let s = Scenario::from_yaml("r.yaml", yaml).unwrap();
        let sched = s.schedule();
        let names: Vec<String> = sched
            .iter()
            .map(|(t, a)| match a {
                Action::Create(w) => format!("{}@{}", w.name, t.as_secs()),
                other => {
                    format!("{other:?}").chars().take(9).collect::<String>()
                        + &format!("@{}", t.as_secs())
                }
            })
            .collect();
        assert_eq!(
            names,
            ["burst-1@60", "Interrupt@120", "burst-2@300", "burst-3@540"]
        );
    }

    #[test]
    fn sped_up_divides_every_duration() {
        let s = Scenario::builtin("seed").unwrap();
        let fast = s.clone().sped_up(4);
        assert_eq!(fast.duration.as_std(), s.duration.as_std() / 4);
        assert_eq!(
            fast.timings.node_registration.as_std(),
            s.timings.node_registration.as_std() / 4
        );
        let times = |s: &Scenario| -> Vec<u64> {
            s.schedule()
                .iter()
                .map(|(t, _)| t.as_millis() as u64)
                .collect()
        };
        assert_eq!(
            times(&fast),
            times(&s).iter().map(|t| t / 4).collect::<Vec<_>>()
        );
        assert_eq!(s.clone().sped_up(0), s);
    }

    /// The full-scale seed keeps the proportions the issue asks for.
    #[test]
    fn seed_full_is_the_seed_at_full_scale() {
        let s = Scenario::builtin("seed-full").unwrap();
        let pools: Vec<&str> = s.node_pools.iter().map(|p| p.name.as_str()).collect();
        for p in ["spot", "spot-mgmt", "on-demand", "gpu", "gaudi"] {
            assert!(pools.contains(&p), "{p}: {pools:?}");
        }
        let od = s.node_pools.iter().find(|p| p.name == "on-demand").unwrap();
        let mix = od.spec.capacity_mix.as_ref().unwrap();
        assert!(
            mix.scope.is_some(),
            "on-demand is capped against the spot fleet"
        );
        let sched = s.schedule();
        let creates: Vec<&Workload> = sched
            .iter()
            .filter_map(|(_, a)| match a {
                Action::Create(w) => Some(w),
                _ => None,
            })
            .collect();
        let bursts: Vec<u32> = creates
            .iter()
            .filter(|w| w.kind == WorkloadKind::Job && w.name.starts_with("argo-"))
            .map(|w| w.replicas)
            .collect();
        assert!(bursts.len() >= 20, "{bursts:?}");
        assert!(
            bursts.iter().all(|r| (1_000..=5_000).contains(r)),
            "{bursts:?}"
        );
        assert!(
            creates
                .iter()
                .any(|w| w.kind == WorkloadKind::SparkApplication && w.replicas >= 2_000)
        );
        let long_running: u32 = creates
            .iter()
            .filter(|w| w.kind == WorkloadKind::Deployment)
            .map(|w| w.replicas)
            .sum();
        assert!(long_running >= 15_000, "{long_running}");
        assert!(
            sched
                .iter()
                .any(|(_, a)| matches!(a, Action::InsufficientCapacity(_)))
        );
        assert!(
            sched
                .iter()
                .filter(|(_, a)| matches!(a, Action::Interrupt(_)))
                .count()
                >= 2
        );
    }

    #[test]
    fn builtins_parse() {
        for (name, _) in BUILTIN {
            let s = Scenario::builtin(name).unwrap();
            assert!(!s.timeline.is_empty(), "{name}");
        }
    }
}
