//! The first batch at the seed's full scale: how long 5,000 pods that turn pending at once take
//! to become NodeClaims, in wall time, with the real controllers and the client's real rate limit.
//!
//! The simulated API server (crates/sim, in-process) is set up with the seed-full scenario's
//! NodeClasses, NodePools and DaemonSets, 3,200 running nodes of 16 and 32 vCPU (95 % spot, the
//! rest tainted on-demand; pre-existing nodes, so garbage collection and disruption leave them
//! alone) and ~35,000 bound pods packed to ~97 % of their CPU, on the embedded AWS catalogue.
//! Every controller then starts on a client behind [`RateLimitLayer`] at the defaults of
//! `--kube-client-qps` / `--kube-client-burst`, NodeClaim creations on a second client going
//! ahead on the same bucket (`--kube-client-create-burst`, as `stowage run` builds them; the
//! third argument sets it, 0: creations wait as any other request), and once it is synced 5,000
//! pods of a seed-like
//! mix (workflow pods, Spark executors, zone-spread services, on-demand pods) are created
//! `PodScheduled=False/Unschedulable` at once.
//!
//! Reported: the pass's phases (snapshot, solve, NodeClaim creations) from when the batch window
//! closed (per pass: under load the bench's own creation of the pods can outlast the 1 s batch
//! window, which then closes on part of them), from the last pod created (all pending) to the
//! last NodeClaim created over every pass, the time until every created NodeClaim is launched (the lifecycle controller shares the
//! rate limit with everything else), when the batch's Events were all written, and the API
//! requests by verb and resource. The run is wall-clock and on a multi-threaded runtime of
//! two workers, as `stowage run` is.
//!
//! ```sh
//! cargo bench -p stowage-controller --bench first_batch            # 5,000 pods, 3,200 nodes
//! cargo bench -p stowage-controller --bench first_batch -- 2000 800 # pending pods, nodes
//! cargo bench -p stowage-controller --bench first_batch -- 5000 3200 0 # no creations ahead
//! ```
// A benchmark: a failure to set up is a panic with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use stowage_api::conditions::LAUNCHED;
use stowage_clock::{SharedClock, SystemClock};
use stowage_cloud::fake::FakeCloud;
use stowage_controller::ratelimit::{
    DEFAULT_BURST, DEFAULT_CREATE_BURST, DEFAULT_QPS, RateLimitLayer,
};
use stowage_controller::{Context, Leadership, Settings, provisioning};
use stowage_sim::apiserver::patch::PatchKind;
use stowage_sim::apiserver::{ApiServer, AuditLog, KindId, Store, Sub};
use stowage_sim::cluster::{Cluster, ClusterOptions};
use stowage_sim::{Scenario, SimOptions, Simulation};

/// Bound workload pods per node, by size: (name, cpu, memory GiB, count).
const PACK_32: [(&str, u32, u32, usize); 3] =
    [("workers", 4, 8, 5), ("jobs", 2, 4, 3), ("api", 1, 2, 5)];
const PACK_16: [(&str, u32, u32, usize); 3] =
    [("workers", 4, 8, 3), ("jobs", 2, 4, 1), ("api", 1, 2, 1)];

/// The pending batch: (name, share of the batch in ‰, cpu, memory GiB, kind of pod).
const BATCH: [(&str, usize, u32, u32, Shape); 5] = [
    ("argo-wf", 520, 2, 4, Shape::Plain),
    ("argo-small", 200, 1, 2, Shape::Plain),
    ("spark-etl", 240, 4, 16, Shape::Plain),
    ("api", 30, 1, 2, Shape::ZoneSpread),
    ("payments", 10, 2, 4, Shape::OnDemand),
];

#[derive(Clone, Copy, Debug)]
enum Shape {
    Plain,
    ZoneSpread,
    OnDemand,
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<usize> = argv.iter().filter_map(|a| a.parse().ok()).collect();
    // `cargo bench` passes `--bench`: seed-full's size. `cargo test` (which runs every target)
    // runs it small, as a check that the benchmark still works.
    let (default_pending, default_nodes) = if argv.iter().any(|a| a == "--bench") {
        (5_000, 3_200)
    } else {
        (200, 40)
    };
    let pending = args.first().copied().unwrap_or(default_pending);
    let nodes = args.get(1).copied().unwrap_or(default_nodes);
    let create_burst = args
        .get(2)
        .map_or(DEFAULT_CREATE_BURST, |&b| u32::try_from(b).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(pending, nodes, create_burst));
}

fn pod(name: &str, ns: &str, app: &str, cpu: u32, mem_gib: u32, shape: Shape) -> Value {
    let mut spec = json!({
        "containers": [{ "name": "main", "image": "busybox",
            "resources": { "requests": { "cpu": cpu.to_string(), "memory": format!("{mem_gib}Gi") } } }],
    });
    match shape {
        Shape::Plain => {}
        Shape::ZoneSpread => {
            spec["topologySpreadConstraints"] = json!([{ "maxSkew": 2,
                "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": { "matchLabels": { "app": app } } }]);
        }
        Shape::OnDemand => {
            spec["nodeSelector"] = json!({ "stowage.dev/capacity-type": "on-demand" });
            spec["tolerations"] = json!([{ "key": "example.com/on-demand", "operator": "Equal",
                "value": "true", "effect": "NoSchedule" }]);
        }
    }
    json!({ "metadata": { "name": name, "namespace": ns, "labels": { "app": app } }, "spec": spec })
}

fn bound(mut obj: Value, node: &str, now: &str) -> Value {
    obj["spec"]["nodeName"] = json!(node);
    obj["status"] = json!({ "phase": "Running", "startTime": now, "conditions": [
        { "type": "PodScheduled", "status": "True", "lastTransitionTime": now },
        { "type": "Ready", "status": "True", "lastTransitionTime": now }] });
    obj
}

fn unschedulable(mut obj: Value, now: &str) -> Value {
    obj["status"] = json!({ "phase": "Pending", "conditions": [{ "type": "PodScheduled",
        "status": "False", "reason": "Unschedulable", "lastTransitionTime": now,
        "message": "0/3200 nodes are available: Insufficient cpu." }] });
    obj
}

/// Creates `obj` and writes its status (a create drops it, as the real API server's does).
fn create_with_status(store: &Store, kind: KindId, ns: &str, mut obj: Value) {
    let status = obj["status"].take();
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    store.create(kind, ns, obj).unwrap();
    let body = json!({ "status": status }).to_string();
    store
        .patch(
            kind,
            ns,
            &name,
            &PatchKind::Merge,
            body.as_bytes(),
            Sub::Status,
        )
        .unwrap();
}

async fn run(pending: usize, nodes: usize, create_burst: u32) {
    let setup = Instant::now();
    let mut scenario = Scenario::builtin("seed-full").unwrap();
    scenario.timeline.clear();
    let catalog = stowage_aws_catalog::embedded(
        "us-east-1",
        &stowage_aws_catalog::CatalogSettings::default(),
    )
    .unwrap();
    let sim = Simulation::new(
        scenario.clone(),
        SimOptions {
            aws_catalog: Some(catalog),
            ..SimOptions::default()
        },
    );
    let catalog = sim.catalog().unwrap();
    let mut zones: Vec<String> = catalog
        .iter()
        .flat_map(|t| t.offerings.iter().map(|o| o.zone.clone()))
        .collect();
    zones.sort();
    zones.dedup();
    zones.truncate(3);

    // 95 % spot nodes of four families, half 32 and half 16 vCPU, over three zones; 5 %
    // on-demand, tainted as seed-full's on-demand pool is.
    let on_demand = nodes / 20;
    let spot_types = [
        "m5.8xlarge",
        "m6i.8xlarge",
        "m7i.8xlarge",
        "r6i.8xlarge",
        "m5.4xlarge",
        "m6i.4xlarge",
        "m7i.4xlarge",
        "r6i.4xlarge",
    ];
    let mut groups = Vec::new();
    let cells = spot_types.len() * zones.len();
    for (i, (ty, zone)) in spot_types
        .iter()
        .flat_map(|t| zones.iter().map(move |z| (t, z)))
        .enumerate()
    {
        let count = (nodes - on_demand) / cells + usize::from(i < (nodes - on_demand) % cells);
        groups.push(json!({ "instanceType": ty, "count": count, "zone": zone,
            "capacityType": "spot", "labels": { "tier": "general" } }));
    }
    for (i, zone) in zones.iter().enumerate() {
        let count = on_demand / zones.len() + usize::from(i < on_demand % zones.len());
        groups.push(json!({ "instanceType": "m6i.8xlarge", "count": count, "zone": zone,
            "capacityType": "on-demand", "labels": { "tier": "on-demand" },
            "taints": [{ "key": "example.com/on-demand", "value": "true", "effect": "NoSchedule" }] }));
    }
    scenario.initial_nodes = serde_json::from_value(json!(groups)).unwrap();

    let clock: SharedClock = Arc::new(SystemClock);
    let api = ApiServer::new(clock.clone());
    let cloud = Arc::new(
        FakeCloud::builder()
            .catalog(catalog.clone())
            .launch_latency(Duration::from_secs(2))
            .clock(clock.clone())
            .node_class_kind(stowage_sim::cluster::node_class_kind())
            .build(),
    );
    let mut cluster = Cluster::new(
        api.clone(),
        (*cloud).clone(),
        clock.clone(),
        &catalog,
        ClusterOptions::default(),
    )
    .unwrap();
    cluster.bootstrap(&scenario).unwrap();
    drop(cluster);

    // Bound pods: the DaemonSets' on every node, and the workload packed by node size.
    let k = api.core_kinds().unwrap();
    let store = api.store();
    let now = clock.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let daemonsets: Vec<(String, String, Value)> = store
        .all(k.daemonset)
        .iter()
        .map(|d| {
            let ns = d["metadata"]["namespace"].as_str().unwrap().to_string();
            let name = d["metadata"]["name"].as_str().unwrap().to_string();
            let uid = d["metadata"]["uid"].clone();
            let requests =
                d["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"].clone();
            let owner = json!([{ "apiVersion": "apps/v1", "kind": "DaemonSet", "name": name,
                "uid": uid, "controller": true }]);
            (ns, name, json!({ "owner": owner, "requests": requests }))
        })
        .collect();
    let mut bound_pods = 0usize;
    for n in store.all(k.node) {
        let node = n["metadata"]["name"].as_str().unwrap().to_string();
        let labels = &n["metadata"]["labels"];
        let big = labels["node.kubernetes.io/instance-type"]
            .as_str()
            .is_some_and(|t| t.ends_with(".8xlarge"));
        let od = labels["stowage.dev/capacity-type"].as_str() == Some("on-demand");
        for (ns, name, d) in &daemonsets {
            let mut p = json!({ "metadata": { "name": format!("{name}-{node}"), "namespace": ns,
                "ownerReferences": d["owner"], "labels": { "app": name } },
                "spec": { "containers": [{ "name": "main", "image": "busybox",
                    "resources": { "requests": d["requests"] } }] } });
            p = bound(p, &node, &now);
            create_with_status(store, k.pod, ns, p);
            bound_pods += 1;
        }
        let pack = if big { PACK_32 } else { PACK_16 };
        for (app, cpu, mem, count) in pack {
            for i in 0..count {
                let shape = if od { Shape::OnDemand } else { Shape::Plain };
                let p = pod(
                    &format!("{app}-{node}-{i}"),
                    "default",
                    app,
                    cpu,
                    mem,
                    shape,
                );
                create_with_status(store, k.pod, "default", bound(p, &node, &now));
                bound_pods += 1;
            }
        }
    }
    let node_count = store.count(k.node);
    eprintln!(
        "cluster: {node_count} nodes, {bound_pods} bound pods, {} NodePools, set up in {:.1}s",
        store.count(k.nodepool),
        setup.elapsed().as_secs_f64()
    );

    // The controllers, on a rate-limited client whose requests are counted.
    let audit = AuditLog::counting();
    let limit = RateLimitLayer::new(DEFAULT_QPS, DEFAULT_BURST);
    let client = kube::Client::new(
        tower::Layer::layer(&limit, api.audited_service(audit.clone())),
        "default",
    );
    let create_client = kube::Client::new(
        tower::Layer::layer(
            &limit.ahead(create_burst),
            api.audited_service(audit.clone()),
        ),
        "default",
    );
    let settings = Settings {
        cluster_name: "bench".to_string(),
        ..Settings::default()
    };
    let provider: Arc<dyn stowage_cloud::CloudProvider> = cloud.clone();
    let ctx = Arc::new(
        Context::new(client, provider, clock.clone(), settings.clone())
            .with_create_client(create_client),
    );
    let started = Instant::now();
    let _running = stowage_controller::start(ctx.clone(), Leadership::Always);
    let mut synced = ctx.subscribe_synced();
    while !*synced.borrow_and_update() {
        synced.changed().await.unwrap();
    }
    eprintln!(
        "controllers synced in {:.1}s ({} pods in their state)",
        started.elapsed().as_secs_f64(),
        ctx.state().pods().count()
    );
    // Let the first housekeeping pass resolve the node classes and the start-up requests pass.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = audit.counts();
    let passes_before = ctx.passes().len();

    // The batch: every pod at once, as a workflow controller creates them.
    let now = clock.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let created_at = Instant::now();
    let mut made = 0;
    for (app, share, cpu, mem, shape) in BATCH {
        let n = if app == BATCH[0].0 {
            pending
                - BATCH[1..]
                    .iter()
                    .map(|b| pending * b.1 / 1000)
                    .sum::<usize>()
        } else {
            pending * share / 1000
        };
        for i in 0..n {
            let p = pod(
                &format!("{app}-pending-{i}"),
                "default",
                app,
                cpu,
                mem,
                shape,
            );
            create_with_status(store, k.pod, "default", unschedulable(p, &now));
            made += 1;
        }
    }
    let create_secs = created_at.elapsed().as_secs_f64();
    let cpu0 = process_cpu();

    // Every pass until all the batch's pods were solved for, with when each was recorded (its
    // last NodeClaim was created `total - claims` seconds before).
    let mut passes: Vec<(provisioning::PassRecord, f64)> = Vec::new();
    let mut seen = passes_before;
    while passes.iter().map(|p| p.0.pods).sum::<usize>() < made {
        let log = ctx.passes();
        for p in &log[seen..] {
            let at = created_at.elapsed().as_secs_f64();
            if p.pods > 0 {
                passes.push((p.clone(), at - (p.total_seconds - p.claims_seconds)));
            }
        }
        seen = log.len();
        if created_at.elapsed() > Duration::from_secs(600) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pass = passes[0].0.clone();
    let pass_done = passes[0].1 + (pass.total_seconds - pass.claims_seconds);
    let last_claim = passes.last().map_or(f64::NAN, |p| p.1);
    let claim_names: Vec<String> = ctx
        .state()
        .claims()
        .map(|c| kube::ResourceExt::name_any(c.as_ref()))
        .collect();
    // How many claims the creation already pins to what a launch resolves (one instance type,
    // one zone): only those could launch without a label patch.
    let pinned = ctx
        .state()
        .claims()
        .filter(|c| {
            let one = |key: &str| {
                c.spec
                    .requirements
                    .iter()
                    .any(|r| r.key == key && r.values.len() == 1)
            };
            one(stowage_api::labels::INSTANCE_TYPE) && one(stowage_api::labels::ZONE)
        })
        .count();
    let options: usize = ctx
        .state()
        .claims()
        .flat_map(|c| c.spec.requirements.iter())
        .filter(|r| r.key == stowage_api::labels::INSTANCE_TYPE)
        .map(|r| r.values.len())
        .sum();
    // Every claim of the batch launched (the lifecycle's writes share the rate limit).
    let launched_at = loop {
        let launched = ctx.state().claims().filter(|c| c.is_true(LAUNCHED)).count();
        if launched >= claim_names.len() {
            break created_at.elapsed().as_secs_f64();
        }
        if created_at.elapsed() > Duration::from_secs(600) {
            break f64::NAN;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let cpu_launched = process_cpu() - cpu0;
    // The batch's Events (one per pod) are written when their count stops growing.
    let event_key = "create core/events";
    let mut last = (0, created_at.elapsed());
    let events_done = loop {
        let n = audit.counts().get(event_key).copied().unwrap_or(0)
            - before.get(event_key).copied().unwrap_or(0);
        if n != last.0 {
            last = (n, created_at.elapsed());
        } else if created_at.elapsed() - last.1 > Duration::from_secs(5) {
            break last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let after = audit.counts();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    println!(
        "first batch: {made} pending pods (created in {create_secs:.2}s) on {node_count} nodes / {bound_pods} bound pods; \
         client rate limit {DEFAULT_QPS} QPS, burst {DEFAULT_BURST}, creations ahead by {create_burst}; batch window {:?} idle",
        settings.batch_idle
    );
    println!(
        "pass: {} pods -> {} NodeClaims; snapshot {:.3}s, solve {:.3}s, creations {:.3}s; \
         batch start -> last NodeClaim created {:.3}s (pass end {:.3}s)",
        pass.pods,
        pass.claims,
        pass.snapshot_seconds,
        pass.solve_seconds,
        pass.claims_seconds - pass.solve_seconds - pass.snapshot_seconds,
        pass.claims_seconds,
        pass.total_seconds,
    );
    for (i, (p, _)) in passes.iter().enumerate().skip(1) {
        println!(
            "pass {}: {} pods -> {} NodeClaims; snapshot {:.3}s, solve {:.3}s, creations {:.3}s",
            i + 1,
            p.pods,
            p.claims,
            p.snapshot_seconds,
            p.solve_seconds,
            p.claims_seconds - p.solve_seconds - p.snapshot_seconds,
        );
    }
    println!(
        "all {made} pods: {} pass(es) -> {} NodeClaims; last NodeClaim created {:.3}s after the last pod was (all pending), {last_claim:.3}s after the first",
        passes.len(),
        passes.iter().map(|p| p.0.claims).sum::<usize>(),
        last_claim - create_secs,
    );
    println!(
        "from the first pod of the batch created: pass recorded {pass_done:.2}s, every NodeClaim launched {launched_at:.2}s, \
         last Event written {:.2}s ({} Events)",
        events_done.1.as_secs_f64(),
        events_done.0
    );
    println!(
        "claims: {pinned} of {} pinned to one instance type and zone; {:.1} instance-type options per claim",
        claim_names.len(),
        options as f64 / claim_names.len().max(1) as f64
    );
    println!(
        "process CPU from the batch to every claim launched: {cpu_launched:.2}s (controllers and the in-process API server); load {}",
        load.trim()
    );
    let mut writes = 0;
    let mut line = Vec::new();
    for (key, n) in &after {
        let d = n - before.get(key).copied().unwrap_or(0);
        if d == 0 {
            continue;
        }
        if !key.starts_with("get ") && !key.starts_with("list ") && !key.starts_with("watch ") {
            writes += d;
        }
        line.push(format!("{key}={d}"));
    }
    println!(
        "API requests after the batch: {writes} writes; {}",
        line.join(", ")
    );
}

/// CPU seconds (user + system) of this process so far (Linux; 0 elsewhere).
fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|x| x.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    ticks / 100.0
}
