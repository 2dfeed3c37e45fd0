//! Runs a scenario in virtual time: the API server, the fake cloud, the cluster machinery and the
//! timeline in one loop on tokio's paused clock, with the controllers plugged in from outside
//! (crates/sim cannot depend on crates/controller):
//!
//! ```no_run
//! # use stowage_sim::{Scenario, Simulation, SimOptions, SimEnv};
//! let scenario = Scenario::builtin("quickstart")?;
//! let report = Simulation::new(scenario, SimOptions::default()).run_blocking(|env: SimEnv| async move {
//!     // start the controllers with env.client, env.provider, env.clock; return when
//!     // env.shutdown says so (or never: the task is dropped at the end).
//!     let _ = env;
//! })?;
//! println!("{}", report.summary_table());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::json::JsonPointer as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use stowage_clock::{SharedClock, TokioClock};
use stowage_cloud::fake::FakeCloud;
use stowage_cloud::{CapacityType, CloudProvider};
use stowage_solver::InstanceType;
use stowage_solver::predicates::ClusterIndex;
use tokio::time::Instant;

use crate::apiserver::{ApiServer, ApiServerOptions};
use crate::cluster::{Cluster, ClusterOptions};
use crate::report::{Report, Sample};
use crate::scenario::{CatalogSource, Scenario};

/// Errors of a simulation run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("scenario {0} uses the AWS catalogue, but none was given to the simulator")]
    MissingAwsCatalog(String),
    #[error("scenario {scenario}: the catalogue has no instance types{detail}")]
    EmptyCatalog { scenario: String, detail: String },
    #[error(transparent)]
    SetUpCluster(#[from] crate::cluster::Error),
    #[error("failed to start the simulation runtime")]
    StartRuntime(#[source] std::io::Error),
    #[error("the simulation thread panicked")]
    JoinThread,
}

/// Options of a run (the scenario carries the rest).
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// The embedded AWS catalogue, for scenarios with `catalog.source: aws` (the binary passes
    /// `stowage_aws_catalog::embedded`'s; crates/sim does not depend on it).
    pub aws_catalog: Option<Vec<InstanceType>>,
    /// What virtual time 0 reads as.
    pub epoch: jiff::Timestamp,
    pub api: ApiServerOptions,
    /// Cluster machinery options; `timings` is replaced by the scenario's.
    pub cluster: ClusterOptions,
    /// Called with every sample as it is taken (progress of a run served in real time).
    pub on_sample: Option<OnSample>,
}

/// A callback on each sample.
#[derive(Clone)]
pub struct OnSample(pub Arc<dyn Fn(&Sample) + Send + Sync>);

impl std::fmt::Debug for OnSample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnSample")
    }
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            aws_catalog: None,
            epoch: jiff::Timestamp::from_second(1_767_225_600)
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH),
            api: ApiServerOptions::default(),
            cluster: ClusterOptions::default(),
            on_sample: None,
        }
    }
}

/// What the plugged-in controllers get.
#[derive(Clone)]
pub struct SimEnv {
    /// A client on the simulated API server (in-process transport).
    pub client: kube::Client,
    pub api: ApiServer,
    /// The fake cloud (scripting, inspection, its event stream).
    pub cloud: Arc<FakeCloud>,
    /// The same cloud as the provider the controllers drive.
    pub provider: Arc<dyn CloudProvider>,
    /// The clock everyone reads (tokio's paused clock).
    pub clock: SharedClock,
    pub scenario: Arc<Scenario>,
    /// Turns true when the scenario's time is up.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl std::fmt::Debug for SimEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimEnv")
            .field("scenario", &self.scenario.name)
            .finish_non_exhaustive()
    }
}

/// A scenario ready to run.
#[derive(Debug)]
pub struct Simulation {
    scenario: Scenario,
    options: SimOptions,
}

impl Simulation {
    pub fn new(scenario: Scenario, options: SimOptions) -> Self {
        Self { scenario, options }
    }

    /// The instance types the scenario's cloud sells.
    pub fn catalog(&self) -> Result<Vec<InstanceType>, Error> {
        let c = &self.scenario.catalog;
        let types = match c.source {
            CatalogSource::Synthetic => {
                stowage_solver::catalog::karpenter_shape(c.types.unwrap_or(20))
            }
            CatalogSource::Aws => {
                let all = self
                    .options
                    .aws_catalog
                    .clone()
                    .ok_or_else(|| Error::MissingAwsCatalog(self.scenario.name.clone()))?;
                if c.families.is_empty() && c.instance_types.is_empty() {
                    all
                } else {
                    all.into_iter()
                        .filter(|t| {
                            let family = t.name.split('.').next().unwrap_or_default();
                            c.families.iter().any(|f| f == family)
                                || c.instance_types.contains(&t.name)
                        })
                        .collect()
                }
            }
        };
        if types.is_empty() {
            return Err(Error::EmptyCatalog {
                scenario: self.scenario.name.clone(),
                detail: " after filtering".into(),
            });
        }
        Ok(types)
    }

    /// Runs without controllers: pods stay pending, and the report shows it.
    pub async fn run_without_controllers(self) -> Result<Report, Error> {
        self.run_inner(None::<fn(SimEnv) -> std::future::Ready<()>>)
            .await
    }

    /// Runs with controllers. Must be called on a current-thread runtime with paused time
    /// (`#[tokio::test(start_paused = true)]`), or use [`Simulation::run_blocking`].
    pub async fn run<F, Fut>(self, controllers: F) -> Result<Report, Error>
    where
        F: FnOnce(SimEnv) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.run_inner(Some(controllers)).await
    }

    /// Runs on a fresh thread with its own paused current-thread runtime (what the binary uses).
    pub fn run_blocking<F, Fut>(self, controllers: F) -> Result<Report, Error>
    where
        F: FnOnce(SimEnv) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .map_err(Error::StartRuntime)?;
            rt.block_on(self.run(controllers))
        })
        .join()
        .map_err(|_| Error::JoinThread)?
    }

    /// [`Simulation::run_blocking`] without controllers.
    pub fn run_blocking_without_controllers(self) -> Result<Report, Error> {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .map_err(Error::StartRuntime)?;
            rt.block_on(self.run_without_controllers())
        })
        .join()
        .map_err(|_| Error::JoinThread)?
    }

    async fn run_inner<F, Fut>(self, controllers: Option<F>) -> Result<Report, Error>
    where
        F: FnOnce(SimEnv) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let wall = std::time::Instant::now();
        let catalog = self.catalog()?;
        let scenario = Arc::new(self.scenario);
        let clock: SharedClock = Arc::new(TokioClock::starting_at(self.options.epoch));
        let api = ApiServer::with_options(clock.clone(), self.options.api.clone());
        let timings = scenario.timings.clone();
        let cloud = Arc::new(
            FakeCloud::builder()
                .catalog(catalog.clone())
                .launch_latency(timings.launch_latency.as_std())
                .interruption_notice(timings.interruption_warning.as_std())
                .clock(clock.clone())
                .node_class_kind(crate::cluster::node_class_kind())
                .build(),
        );
        let mut options = self.options.cluster.clone();
        options.timings = timings;
        let mut cluster = Cluster::new(
            api.clone(),
            (*cloud).clone(),
            clock.clone(),
            &catalog,
            options,
        )?;
        cluster.bootstrap(&scenario)?;
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let has_controllers = controllers.is_some();
        // The controllers' requests, counted by verb and resource (audit mode, counting only).
        let audit = crate::apiserver::AuditLog::counting();
        let handle = controllers.map(|start| {
            let env = SimEnv {
                client: kube::Client::new(api.audited_service(audit.clone()), "default"),
                api: api.clone(),
                cloud: cloud.clone(),
                provider: cloud.clone(),
                clock: clock.clone(),
                scenario: scenario.clone(),
                shutdown: shutdown_rx,
            };
            tokio::spawn(start(env))
        });

        let start = Instant::now();
        let end = start + scenario.duration.as_std();
        let schedule = scenario.schedule();
        let sample_every = scenario.sample_every.as_std();
        let mut next_action = 0usize;
        let mut next_sample = start;
        loop {
            let now = Instant::now();
            while next_action < schedule.len() && start + schedule[next_action].0 <= now {
                cluster.apply(&schedule[next_action].1);
                next_action += 1;
            }
            cluster.step();
            if now >= next_sample {
                let mut s = sample(&cluster, &api, now.duration_since(start));
                s.api_requests = audit.total();
                s.cloud_calls = cloud.call_total() as u64;
                s.ec2_calls = cloud.ec2_call_total();
                if let Some(OnSample(f)) = &self.options.on_sample {
                    f(&s);
                }
                cluster.recorder.samples.push(s);
                next_sample += sample_every;
            }
            if now >= end {
                break;
            }
            let mut deadline = next_sample.min(end);
            if let Some((t, _)) = schedule.get(next_action) {
                deadline = deadline.min(start + *t);
            }
            cluster.wait(deadline).await;
        }
        let _ = shutdown_tx.send(true);
        // Give the controllers a moment of virtual time to see the shutdown, then drop them.
        tokio::time::sleep(Duration::from_millis(1)).await;
        if let Some(h) = handle {
            h.abort();
        }

        let (pending_at_end, unschedulable_at_end) = classify_pending(&cluster, &api, &catalog);
        let pending_by_workload = pending_by_workload(&cluster);
        let jobs_unfinished_at_end = cluster
            .workloads
            .values()
            .filter(|w| {
                w.def.kind != crate::scenario::WorkloadKind::Deployment && !w.done && !w.deleted
            })
            .count();
        let tally = cluster.referee_tally(true);
        let replicas_short_at_end = replicas_short(&cluster);
        let mut report = Report {
            scenario: scenario.name.clone(),
            duration_seconds: scenario.duration.as_std().as_secs_f64(),
            controllers: has_controllers,
            pending_at_end,
            unschedulable_at_end,
            pending_by_workload,
            jobs_unfinished_at_end,
            launches: cloud.launch_count(),
            interruptions: cloud.interruption_count(),
            pods_created: cluster.recorder.pods_created,
            binds: cluster.recorder.binds,
            samples: std::mem::take(&mut cluster.recorder.samples),
            replicas_short_at_end,
            ..Default::default()
        };
        report.set_referee(tally);
        report.finish(&cluster.recorder.pending_to_running);
        let rec = &cluster.recorder;
        report.interrupted_pods = rec.interrupted_pods;
        report.p95_interruption_rescheduled_seconds =
            crate::report::percentile(&rec.interruption_rescheduled, 95.0);
        report.max_interruption_rescheduled_seconds = rec
            .interruption_rescheduled
            .iter()
            .copied()
            .fold(0.0, f64::max);
        report.interrupted_pods_not_rescheduled = rec
            .interruption_debts
            .values()
            .map(|d| d.len() as u64)
            .sum();
        report.pods_killed_by_interruption = rec.pods_killed_by_interruption;
        report.wall_seconds = wall.elapsed().as_secs_f64();
        report.cluster_wall_seconds = cluster.recorder.cluster_wall.as_secs_f64();
        report.scheduler_wall_seconds = cluster.recorder.scheduler_wall.as_secs_f64();
        let (requests, busy) = api.load();
        report.api_requests = requests;
        report.api_wall_seconds = busy.as_secs_f64();
        report.controller_api_requests = audit.counts();
        report.cloud_calls = stowage_cloud::Operation::ALL
            .iter()
            .map(|op| (op.as_str().to_string(), cloud.call_count(*op) as u64))
            .filter(|(_, n)| *n > 0)
            .collect();
        report.ec2_calls = cloud.ec2_calls();
        report.finish_calls();
        Ok(report)
    }
}

fn sample(cluster: &Cluster, api: &ApiServer, elapsed: Duration) -> Sample {
    let mut s = Sample {
        t: elapsed.as_secs_f64(),
        ..Default::default()
    };
    for n in cluster.node_infos().filter(|n| !n.dead) {
        match n.capacity_type {
            Some(CapacityType::Spot) => {
                s.nodes_spot += 1;
                s.vcpu_spot += n.vcpu;
            }
            Some(CapacityType::OnDemand) => {
                s.nodes_on_demand += 1;
                s.vcpu_on_demand += n.vcpu;
            }
            Some(CapacityType::Reserved) => {
                s.nodes_reserved += 1;
                s.vcpu_other += n.vcpu;
            }
            None => {
                s.nodes_other += 1;
                s.vcpu_other += n.vcpu;
            }
        }
        s.cost_per_hour += n.price_per_hour;
    }
    // Instances that have not registered a node yet cost money too.
    let registered: std::collections::BTreeSet<&str> = cluster
        .node_infos()
        .map(|n| n.provider_id.as_str())
        .collect();
    s.cost_per_hour += cluster
        .launched
        .values()
        .filter(|i| !registered.contains(i.provider_id.as_str()))
        .map(|i| i.price_per_hour)
        .sum::<f64>();
    s.nodes_empty = cluster.empty_nodes();
    s.pending_pods = cluster.pending_pods();
    s.running_pods = cluster.running_pods();
    s.nodeclaims = api.store().count(cluster.k.nodeclaim);
    s
}

/// Replicas of live Deployments that are not Running (desired minus Running, summed).
fn replicas_short(cluster: &Cluster) -> usize {
    cluster
        .workloads
        .iter()
        .filter(|(_, w)| w.def.kind == crate::scenario::WorkloadKind::Deployment && !w.deleted)
        .map(|((ns, _), w)| {
            let running = w
                .active
                .iter()
                .filter(|n| {
                    cluster
                        .pods
                        .get(&stowage_api::namespaced_key(ns, n))
                        .is_some_and(|p| p.phase == "Running" && !p.terminating)
                })
                .count();
            (w.desired as usize).saturating_sub(running)
        })
        .sum()
}

/// Pods pending at the end by workload (`namespace/name`, or `-` for others), with the
/// scheduler's latest message.
fn pending_by_workload(cluster: &Cluster) -> Vec<crate::report::PendingGroup> {
    let mut groups: std::collections::BTreeMap<String, crate::report::PendingGroup> =
        Default::default();
    for obj in cluster.pending_objects() {
        let ns = crate::apiserver::namespace_of(&obj);
        let wl = crate::json::meta_str(&obj, "labels", crate::cluster::WORKLOAD_LABEL)
            .map_or_else(|| "-".to_string(), |w| stowage_api::namespaced_key(ns, w));
        let message = obj
            .ptr("/status/conditions")
            .and_then(serde_json::Value::as_array)
            .and_then(|cs| {
                cs.iter().find(|c| {
                    c.get("type").and_then(serde_json::Value::as_str) == Some("PodScheduled")
                })
            })
            .and_then(|c| c.get("message").and_then(serde_json::Value::as_str))
            .unwrap_or_default()
            .to_string();
        let g = groups
            .entry(wl.clone())
            .or_insert_with(|| crate::report::PendingGroup {
                workload: wl,
                pods: 0,
                message: String::new(),
            });
        g.pods += 1;
        if !message.is_empty() {
            g.message = message;
        }
    }
    groups.into_values().collect()
}

/// Splits the pods pending at the end into (could be served by some NodePool, could not).
fn classify_pending(
    cluster: &Cluster,
    api: &ApiServer,
    catalog: &[InstanceType],
) -> (usize, usize) {
    use stowage_api::labels;
    let pools: Vec<stowage_solver::PoolSpec> = api
        .store()
        .all(cluster.k.nodepool)
        .iter()
        .filter_map(|v| serde::Deserialize::deserialize(&**v).ok())
        .filter_map(|np: stowage_api::NodePool| {
            stowage_solver::convert::nodepool(&np, Default::default()).ok()
        })
        .collect();
    // Hypothetical empty nodes: every pool x type x distinct (zone, capacity type).
    let mut candidates = Vec::new();
    for pool in &pools {
        for it in catalog {
            let mut seen = std::collections::BTreeSet::new();
            for o in &it.offerings {
                if !seen.insert((o.zone.clone(), o.capacity_type)) {
                    continue;
                }
                let mut l = it.labels.clone();
                l.extend(pool.labels.clone());
                l.insert(labels::ZONE.into(), o.zone.clone());
                l.insert(
                    labels::CAPACITY_TYPE.into(),
                    o.capacity_type.as_str().into(),
                );
                l.insert(labels::NODEPOOL.into(), pool.name.clone());
                l.insert(labels::INSTANCE_TYPE.into(), it.name.clone());
                if !stowage_solver::domain::requirements_match(&pool.requirements, &l) {
                    continue;
                }
                let mut node = stowage_solver::ExistingNode::new("candidate", it.allocatable());
                node.labels = l;
                node.taints = pool.taints.clone();
                candidates.push(node);
            }
        }
    }
    let mut cache: std::collections::HashMap<u64, bool> = std::collections::HashMap::new();
    let (mut schedulable, mut not) = (0, 0);
    for obj in cluster.pending_objects() {
        let Some(pod) = cluster.domain_pod(&obj) else {
            continue;
        };
        let sig = crate::cluster::signature(&pod);
        let fits = *cache.entry(sig).or_insert_with(|| {
            candidates.iter().any(|n| {
                let mut idx = ClusterIndex::new(vec![n.clone()]);
                idx.check(&pod, "candidate").is_ok()
            })
        });
        if fits {
            schedulable += 1;
        } else {
            not += 1;
        }
    }
    (schedulable, not)
}
