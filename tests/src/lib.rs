//! Shared harness of the end-to-end tests: the simulated API server, the fake cloud and the real
//! controllers wired through a real `kube::Client`, plus builders for the objects tests create and
//! a virtual-time `eventually`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use stowage_api::{EC2NodeClass, NodeClaimTemplate, NodeClassRef, NodePool, NodePoolSpec};
use stowage_clock::{SharedClock, TokioClock};
use stowage_cloud::fake::FakeCloud;
use stowage_controller::{Context, Leadership, Running, Settings};
use stowage_sim::{ApiServer, Report, Scenario, SimEnv, SimOptions, Simulation};

/// The epoch virtual time starts at.
pub const EPOCH: &str = "2026-01-01T00:00:00Z";

/// A simulated API server, a fake cloud and (optionally) running controllers.
pub struct Harness {
    pub api: ApiServer,
    pub client: Client,
    pub cloud: FakeCloud,
    pub clock: SharedClock,
    pub settings: Settings,
}

impl Harness {
    /// A harness with a fake cloud selling `n` synthetic instance types.
    pub fn new(types: usize) -> Self {
        Self::with_cloud(
            FakeCloud::builder()
                .karpenter_catalog(types)
                .node_class_kind(stowage_sim::node_class_kind())
                .build(),
        )
    }

    pub fn with_cloud(cloud: FakeCloud) -> Self {
        let clock: SharedClock =
            Arc::new(TokioClock::starting_at(EPOCH.parse().unwrap_or_default()));
        let api = ApiServer::new(clock.clone());
        let client = api.client();
        Self {
            api,
            client,
            cloud,
            clock,
            settings: Settings::default(),
        }
    }

    /// A controller context on this cluster and cloud.
    pub fn context(&self) -> Arc<Context> {
        Arc::new(Context::new(
            self.client.clone(),
            Arc::new(self.cloud.clone()),
            self.clock.clone(),
            self.settings.clone(),
        ))
    }

    /// Starts the controllers (always leader).
    pub fn start(&self) -> Running {
        stowage_controller::start(self.context(), Leadership::Always)
    }

    /// Starts the controllers as a replica electing its leader on a Lease.
    pub fn start_replica(&self, identity: &str) -> Running {
        let config =
            stowage_controller::leader::LeaseConfig::new("stowage-leader", "kube-system", identity);
        stowage_controller::start(self.context(), Leadership::Lease(config))
    }

    /// Creates the `default` EC2NodeClass and a NodePool `name` using it.
    pub async fn nodepool(&self, name: &str, edit: impl FnOnce(&mut NodePool)) -> NodePool {
        let classes: Api<EC2NodeClass> = Api::all(self.client.clone());
        if classes.get_opt("default").await.ok().flatten().is_none() {
            let class = EC2NodeClass::new("default", stowage_sim::scenario::simulated_node_class());
            classes
                .create(&PostParams::default(), &class)
                .await
                .expect("the default EC2NodeClass is valid");
        }
        let mut pool = NodePool::new(
            name,
            NodePoolSpec {
                template: NodeClaimTemplate::default(),
                ..Default::default()
            },
        );
        pool.spec.template.spec.node_class_ref = NodeClassRef::ec2("default");
        edit(&mut pool);
        let pools: Api<NodePool> = Api::all(self.client.clone());
        pools
            .create(&PostParams::default(), &pool)
            .await
            .unwrap_or(pool)
    }

    /// Creates a pod and marks it unschedulable, as kube-scheduler would.
    pub async fn pending_pod(&self, pod: Pod) -> Pod {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let created = match api.create(&PostParams::default(), &pod).await {
            Ok(p) => p,
            Err(err) => panic!("create pod: {err}"),
        };
        let name = created.metadata.name.clone().unwrap_or_default();
        let status = json!({"status": {"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/0 nodes are available"}]}});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
            .await
        {
            Ok(p) => p,
            Err(err) => panic!("mark pod unschedulable: {err}"),
        }
    }
}

/// A pod requesting `cpu` (e.g. `"500m"`) and `memory`.
pub fn pod(name: &str, cpu: &str, memory: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some("default".to_string()),
            labels: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                image: Some("registry.example/app:1".into()),
                resources: Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([
                        ("cpu".to_string(), Quantity(cpu.to_string())),
                        ("memory".to_string(), Quantity(memory.to_string())),
                    ])),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    }
}

/// Polls `check` every 100 ms of (virtual) time until it returns `Some`, or panics after `limit`
/// naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs a scenario (YAML) in virtual time with the real controllers (always leader) plugged in,
/// and `script` alongside them (it gets the simulator's environment and the controllers'
/// context); returns the report and what the script returned. Must run on a paused
/// current-thread runtime (`#[tokio::test(start_paused = true)]`).
pub async fn simulate<T, F, Fut>(yaml: &str, script: F) -> (Report, T)
where
    T: Send + 'static,
    F: FnOnce(SimEnv, Arc<Context>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let report = run_plugged(yaml, move |env: SimEnv| async move {
        let running = start_controllers(&env);
        let ctx = running.ctx.clone();
        let mut shutdown = env.shutdown.clone();
        let out = script(env, ctx).await;
        let _ = tx.send(out);
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        drop(running);
    })
    .await;
    match rx.await {
        Ok(out) => (report, out),
        Err(_) => panic!("the test script did not finish before the scenario ended"),
    }
}

/// Starts the real controllers (always leader) on the simulated cluster, with a fresh context:
/// what a newly started (or restarted) process has (reading interruption events from the fake
/// cloud, as `stowage run` reads its queue).
pub fn start_controllers(env: &SimEnv) -> Running {
    let ctx = Arc::new(
        Context::new(
            env.client.clone(),
            env.provider.clone(),
            env.clock.clone(),
            Settings::default(),
        )
        .with_interruption_source(env.cloud.clone()),
    );
    stowage_controller::start(ctx, Leadership::Always)
}

/// Like [`simulate`], but the script runs the controllers itself ([`start_controllers`]), for
/// example to kill and restart them; they stop at the latest when the script returns.
pub async fn simulate_unmanaged<T, F, Fut>(yaml: &str, script: F) -> (Report, T)
where
    T: Send + 'static,
    F: FnOnce(SimEnv) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let report = run_plugged(yaml, move |env: SimEnv| async move {
        let out = script(env).await;
        let _ = tx.send(out);
    })
    .await;
    match rx.await {
        Ok(out) => (report, out),
        Err(_) => panic!("the test script did not finish before the scenario ended"),
    }
}

/// Runs a scenario (YAML) in virtual time with `plug` as the simulator's plug-in.
async fn run_plugged<F, Fut>(yaml: &str, plug: F) -> Report
where
    F: FnOnce(SimEnv) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let scenario = match Scenario::from_yaml("test scenario", yaml) {
        Ok(s) => s,
        Err(err) => panic!("bad test scenario: {err}"),
    };
    match Simulation::new(scenario, SimOptions::default())
        .run(plug)
        .await
    {
        Ok(r) => r,
        Err(err) => panic!("simulation failed: {err}"),
    }
}
