//! What the controllers' `ClusterState` holds per pod and per node: builds it from a generated
//! cluster (`stowage_bench::pods`' kubectl-shaped pods of the seed mix, bound and running, and
//! EKS-shaped Nodes with their labels, conditions, node info and image lists) and reports how
//! much the process's resident memory grew per object applied, each object decoded from its JSON
//! as a watch delivers it (the decoding temporaries are freed and reused as it goes; allocator
//! overhead and fragmentation count, as they do in the controller).
//!
//! The objects are generated and written out first, then applied in a fresh process of this
//! benchmark (`--measure`), so memory freed while generating cannot hide the state's growth.
//!
//! ```sh
//! cargo bench -p stowage-bench --bench state              # 40,000 pods on 3,200 nodes
//! cargo bench -p stowage-bench --bench state -- 10000 800 # pods, nodes
//! ```
//!
//! It also times, in a third process, what `stowage plan` spends between parsing and solving on
//! the same pods pending: applying them to a fresh state, `snapshot::build`, and dropping both
//! (CPU seconds of each).
//!
//! And, in two more processes on the same state, the memory of an interruption batch's
//! replacement solve (10 nodes interrupted): how far the resident size rises above the state
//! (`VmHWM` after resetting it) the way the interruption handler solved before (a fresh
//! `snapshot::build` of every Node, then `simulate_without`, which copies the input) and the way
//! it solves now (the provisioner's node cache, the nodes taken out in place), and what the
//! provisioner's cache of converted Nodes holds.

use std::io::{BufRead, Write};

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{Value, json};
use stowage_controller::ClusterState;

/// The process's resident memory in bytes (`VmRSS`; Linux).
fn rss() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<i64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];

/// An EKS worker Node as the API server returns it (what a watch delivers).
fn node(i: usize) -> Value {
    let zone = ZONES[i % 3];
    let name = format!(
        "ip-10-{}-{}-{}.ec2.internal",
        i / 65536 % 256,
        i / 256 % 256,
        i % 256
    );
    let node_conditions: Vec<Value> = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        .iter()
        .map(|t| {
            json!({
                "type": t, "status": if *t == "Ready" { "True" } else { "False" },
                "lastHeartbeatTime": "2026-11-29T08:10:00Z", "lastTransitionTime": "2026-11-29T08:00:30Z",
                "reason": format!("Kubelet{t}"), "message": format!("kubelet has no {t}")
            })
        })
        .collect();
    let images: Vec<Value> = (0..30)
        .map(|k| {
            json!({
                "names": [
                    format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/team-{k}/service@sha256:{:064x}", k * 7919 + 17),
                    format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/team-{k}/service:v1.{k}.0")
                ],
                "sizeBytes": 100_000_000 + k * 1_000_003
            })
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": format!("{:08x}-0000-4000-8000-{:012x}", i, i),
            "resourceVersion": format!("{}", 1_000_000 + i),
            "creationTimestamp": "2026-11-29T08:00:00Z",
            "labels": {
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/instance-type": "m6i.8xlarge",
                "beta.kubernetes.io/os": "linux",
                "failure-domain.beta.kubernetes.io/region": "us-east-1",
                "failure-domain.beta.kubernetes.io/zone": zone,
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "node.kubernetes.io/instance-type": "m6i.8xlarge",
                "topology.kubernetes.io/region": "us-east-1",
                "topology.kubernetes.io/zone": zone,
                "topology.k8s.aws/zone-id": "use1-az1",
                "stowage.dev/nodepool": "spot",
                "stowage.dev/capacity-type": "spot",
                "stowage.dev/initialized": "true",
                "stowage.dev/registered": "true",
                "aws.stowage.dev/ec2nodeclass": "default",
                "aws.stowage.dev/instance-category": "m",
                "aws.stowage.dev/instance-family": "m6i",
                "aws.stowage.dev/instance-generation": "6",
                "aws.stowage.dev/instance-size": "8xlarge",
                "aws.stowage.dev/instance-cpu": "32",
                "aws.stowage.dev/instance-memory": "131072",
                "aws.stowage.dev/instance-hypervisor": "nitro",
                "k8s.io/cloud-provider-aws": "0123456789abcdef0123456789abcdef"
            },
            "annotations": {
                "alpha.kubernetes.io/provided-node-ip": "10.0.0.1",
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "stowage.dev/nodepool-hash": "1234567890123456789"
            },
            "ownerReferences": [{"apiVersion": "stowage.dev/v1", "kind": "NodeClaim", "name": format!("spot-{i:05}"), "uid": format!("{:08x}-1111-4000-8000-{:012x}", i, i), "blockOwnerDeletion": true}],
            "finalizers": ["stowage.dev/termination"],
            "managedFields": [{"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2026-11-29T08:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {"f:kubernetes.io/hostname": {}}}, "f:status": {"f:conditions": {}, "f:images": {}}}}]
        },
        "spec": {
            "providerID": format!("aws:///{zone}/i-{i:017x}")
        },
        "status": {
            "capacity": {"cpu": "32", "ephemeral-storage": "104845292Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": "130451220Ki", "pods": "234"},
            "allocatable": {"cpu": "31850m", "ephemeral-storage": "95551679124", "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": "124734228Ki", "pods": "234"},
            "conditions": node_conditions,
            "addresses": [
                {"type": "InternalIP", "address": "10.0.0.1"},
                {"type": "InternalDNS", "address": name},
                {"type": "Hostname", "address": name}
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64", "bootID": "5c1b2a9e-0000-4000-8000-000000000000",
                "containerRuntimeVersion": "containerd://1.7.22", "kernelVersion": "6.1.112-122.189.amzn2023.x86_64",
                "kubeProxyVersion": "v1.31.2-eks-7f9249a", "kubeletVersion": "v1.31.2-eks-7f9249a",
                "machineID": "ec2a0f0000000000000000000000000a", "operatingSystem": "linux",
                "osImage": "Amazon Linux 2023.6.20241111", "systemUUID": "ec2a0f00-0000-0000-0000-00000000000a"
            },
            "images": images
        }
    })
}

/// A pod of the generated dump, bound to `node` and running.
fn bound(mut pod: Value, node: &str) -> Value {
    pod["spec"]["nodeName"] = json!(node);
    let conditions: Vec<Value> = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    .iter()
    .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": "2026-11-29T08:01:00Z"}))
    .collect();
    let running = json!({
        "phase": "Running",
        "hostIP": "10.0.0.1",
        "podIP": "10.1.2.3",
        "podIPs": [{"ip": "10.1.2.3"}],
        "qosClass": "Burstable",
        "startTime": "2026-11-29T08:01:00Z",
        "conditions": conditions,
        "containerStatuses": [{
            "name": "main", "ready": true, "restartCount": 0, "started": true,
            "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/service:v1.2.3",
            "imageID": "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/service@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "containerID": "containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "state": {"running": {"startedAt": "2026-11-29T08:01:02Z"}}
        }]
    });
    pod["status"] = running;
    pod
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if let Some(i) = argv.iter().position(|a| a == "--measure") {
        let path = argv.get(i + 1).cloned().unwrap_or_default();
        let nodes_n: usize = argv.get(i + 2).and_then(|n| n.parse().ok()).unwrap_or(0);
        let state = measure(&path, nodes_n);
        if let Some(mode) = argv.get(i + 3) {
            replacement(&state, mode == "old");
        }
        return;
    }
    if let Some(i) = argv.iter().position(|a| a == "--snapshot") {
        snapshot(argv.get(i + 1).map_or("", String::as_str));
        return;
    }
    if let Some(i) = argv.iter().position(|a| a == "--plan-dump") {
        plan_dump(argv.get(i + 1).map_or("", String::as_str));
        return;
    }
    let args: Vec<usize> = argv.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
    // `cargo bench` passes `--bench`: the seed's size. `cargo test` (which runs every target)
    // passes nothing: a small cluster, so the suite checks that the benchmark still runs
    // without spending minutes and gigabytes of a debug build on it.
    let (default_pods, default_nodes) = if argv.iter().any(|a| a == "--bench") {
        (40_000, 3_200)
    } else {
        (2_000, 160)
    };
    let pods_n = args.first().copied().unwrap_or(default_pods);
    let nodes_n = args.get(1).copied().unwrap_or(default_nodes).max(1);
    // Generated here, measured in a fresh process: memory freed while generating stays
    // resident and would be reused by the state without the resident size growing.
    let path =
        std::env::temp_dir().join(format!("stowage-state-bench-{}.jsonl", std::process::id()));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("temp file"));
    let mut names = Vec::with_capacity(nodes_n);
    let mut node_bytes = 0;
    for i in 0..nodes_n {
        let n = node(i);
        names.push(
            n["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        let line = serde_json::to_vec(&n).expect("json");
        node_bytes += line.len();
        out.write_all(&line)
            .and_then(|()| out.write_all(b"\n"))
            .expect("write");
    }
    let mut list = stowage_bench::pods::pod_list(pods_n, 42);
    let mut pod_bytes = 0;
    // The same pods pending, for the snapshot's CPU time.
    let pending_path = std::env::temp_dir().join(format!(
        "stowage-state-bench-pending-{}.jsonl",
        std::process::id()
    ));
    let mut pending =
        std::io::BufWriter::new(std::fs::File::create(&pending_path).expect("temp file"));
    if let Value::Array(items) = list["items"].take() {
        for (i, p) in items.into_iter().enumerate() {
            serde_json::to_writer(&mut pending, &p)
                .and_then(|()| pending.write_all(b"\n").map_err(serde_json::Error::io))
                .expect("write");
            let line = serde_json::to_vec(&bound(p, &names[i % nodes_n])).expect("json");
            pod_bytes += line.len();
            out.write_all(&line)
                .and_then(|()| out.write_all(b"\n"))
                .expect("write");
        }
    }
    drop(out);
    drop(pending);
    let own = std::env::current_exe().expect("own path");
    let status = std::process::Command::new(&own)
        .arg("--measure")
        .arg(&path)
        .arg(nodes_n.to_string())
        .status();
    let replace: Vec<bool> = ["old", "new"]
        .iter()
        .map(|mode| {
            std::process::Command::new(&own)
                .arg("--measure")
                .arg(&path)
                .arg(nodes_n.to_string())
                .arg(mode)
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    let _ = std::fs::remove_file(&path);
    let snapshot = std::process::Command::new(&own)
        .arg("--snapshot")
        .arg(&pending_path)
        .status();
    let _ = std::fs::remove_file(&pending_path);
    println!(
        "json bytes_per_pod={} bytes_per_node={}",
        pod_bytes / pods_n.max(1),
        node_bytes / nodes_n
    );
    assert!(
        status.is_ok_and(|s| s.success()),
        "the measuring process failed"
    );
    assert!(
        snapshot.is_ok_and(|s| s.success()),
        "the snapshot process failed"
    );
    assert!(
        replace.iter().all(|ok| *ok),
        "a replacement-solve process failed"
    );
}

/// CPU time of this thread so far, in seconds.
fn cpu_seconds() -> f64 {
    stowage_bench::thread_cpu_ms() / 1000.0
}

/// What `stowage plan` spends between parsing and solving: the pending pods of `path` (JSON
/// lines, decoded first) applied to a fresh state, the solver's input built from it
/// (`snapshot::build_owned`, which drops the state), and the input dropped; prints the CPU time
/// of each step.
fn snapshot(path: &str) {
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("the pods"));
    let pods: Vec<Pod> = file
        .lines()
        .map(|l| serde_json::from_str(&l.expect("a line")).expect("a pod"))
        .collect();
    let n = pods.len();
    let t0 = cpu_seconds();
    let mut state = ClusterState::new();
    for p in pods {
        state.apply_pod(p);
    }
    let t1 = cpu_seconds();
    let now = "2026-11-29T09:00:00Z".parse().expect("a time");
    // As `stowage plan` builds it: the state is given up (its pods move into the input).
    let snap = stowage_controller::snapshot::build_owned(state, &[], Default::default(), now);
    let t2 = cpu_seconds();
    assert_eq!(snap.input.pods.len(), n);
    drop(snap);
    let t3 = cpu_seconds();
    println!(
        "snapshot pods={n} apply_cpu_s={:.3} build_cpu_s={:.3} drop_input_cpu_s={:.3} total_cpu_s={:.3}",
        t1 - t0,
        t2 - t1,
        t3 - t2,
        t3 - t0
    );
}

/// CPU time of the whole process (every thread) so far, in seconds.
fn process_cpu_seconds() -> f64 {
    stowage_bench::process_cpu_ms() / 1000.0
}

/// Each Pod made ready for the state on the thread that read it, as `stowage plan` does.
struct Prepare;

impl stowage_dump::Convert for Prepare {
    type Pod = stowage_controller::state::PreparedPod;
    type Scratch = stowage_controller::lean::Interner;

    fn pod(
        &self,
        interner: &mut stowage_controller::lean::Interner,
        pod: Box<stowage_dump::LeanPod>,
    ) -> stowage_controller::state::PreparedPod {
        stowage_controller::state::PreparedPod::from_view(&pod.view(), interner, || {
            (*pod).clone().into_pod()
        })
    }
}

/// What `stowage plan -f FILE` does with a JSON dump (`stowage-bench gen-pods`) before solving,
/// without the binary (an SDK build): the file read in pieces, each Pod made ready for the state
/// on the thread that read it; the state assembled; the solver's input built
/// (`snapshot::build_owned`). Prints the wall and CPU time (the process's, every thread) of each
/// step; nothing is freed at the end, as in `plan`.
fn plan_dump(path: &str) {
    let (t0, c0) = (std::time::Instant::now(), process_cpu_seconds());
    let file = std::fs::File::open(path).expect("the dump");
    let docs =
        stowage_dump::json_reader_converted(file, &Prepare).expect("the fast reader reads it");
    let (t1, c1) = (std::time::Instant::now(), process_cpu_seconds());
    let mut state = ClusterState::new();
    let mut pods = 0;
    let mut stack = docs;
    while let Some(item) = stack.pop() {
        match item {
            stowage_dump::Item::Pod(p) => {
                state.apply_prepared_pod(p);
                pods += 1;
            }
            stowage_dump::Item::List(items) => stack.extend(items),
            stowage_dump::Item::Null | stowage_dump::Item::Other(_) => {}
        }
    }
    let (t2, c2) = (std::time::Instant::now(), process_cpu_seconds());
    let now = "2026-11-29T09:00:00Z".parse().expect("a time");
    let snap = stowage_controller::snapshot::build_owned(state, &[], Default::default(), now);
    let (t3, c3) = (std::time::Instant::now(), process_cpu_seconds());
    println!(
        "plan-dump pods={pods} pending={} read_ms={:.0} read_cpu_ms={:.0} apply_ms={:.0} apply_cpu_ms={:.0} build_ms={:.0} build_cpu_ms={:.0} total_ms={:.0} total_cpu_ms={:.0}",
        snap.input.pods.len(),
        (t1 - t0).as_secs_f64() * 1e3,
        (c1 - c0) * 1e3,
        (t2 - t1).as_secs_f64() * 1e3,
        (c2 - c1) * 1e3,
        (t3 - t2).as_secs_f64() * 1e3,
        (c3 - c2) * 1e3,
        (t3 - t0).as_secs_f64() * 1e3,
        (c3 - c0) * 1e3,
    );
    // As `plan`: the process ends without freeing the input.
    std::mem::forget(snap);
}

/// Applies the objects of `path` (JSON lines: `nodes_n` Nodes, then Pods) to a fresh state and
/// prints how much the resident size grew per node and per pod; returns the state.
fn measure(path: &str, nodes_n: usize) -> ClusterState {
    let file = std::io::BufReader::new(std::fs::File::open(path).expect("the objects"));
    let mut lines = file.lines();
    let base = rss();
    let mut state = ClusterState::new();
    for line in lines.by_ref().take(nodes_n) {
        let node: Node = serde_json::from_str(&line.expect("a line")).expect("a node");
        state.apply_node(node);
    }
    let with_nodes = rss();
    let mut pods_n = 0usize;
    for line in lines {
        let pod: Pod = serde_json::from_str(&line.expect("a line")).expect("a pod");
        state.apply_pod(pod);
        pods_n += 1;
    }
    let with_pods = rss();
    let per_node = (with_nodes - base) as f64 / nodes_n.max(1) as f64;
    let per_pod = (with_pods - with_nodes) as f64 / pods_n.max(1) as f64;
    println!(
        "state pods={pods_n} nodes={nodes_n} bytes_per_pod={per_pod:.0} bytes_per_node={per_node:.0} total_mb={:.1}",
        (with_pods - base) as f64 / 1e6
    );
    assert_eq!(state.pod_count(), pods_n);
    println!(
        "inline sizes: Pod {} B, LeanPod {} B, PodRequest {} B, Node {} B; interned: {:?}",
        std::mem::size_of::<Pod>(),
        std::mem::size_of::<stowage_controller::lean::LeanPod>(),
        std::mem::size_of::<stowage_solver::PodRequest>(),
        std::mem::size_of::<Node>(),
        state.interned()
    );
    state
}

/// The process's peak resident memory in bytes (`VmHWM`; Linux).
fn hwm() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<i64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// One interruption batch's replacement solve on `state` (its first 10 Nodes interrupted),
/// `old`: as the handler solved before (every Node converted afresh, then `simulate_without`,
/// which copies the input), else as it solves now (the provisioner's node cache, the nodes
/// taken out in place); prints the provisioner's cache size and how far the resident size rose
/// above what it was before the solve.
fn replacement(state: &ClusterState, old: bool) {
    use stowage_controller::snapshot;
    let now = "2026-11-29T09:00:00Z".parse().expect("a time");
    let before_cache = rss();
    // The provisioner's cache, as a pass leaves it (held in both cases).
    let mut cache = snapshot::NodeCache::default();
    let warm = snapshot::build_cached(state, &[], Default::default(), now, &mut cache);
    cache.recycle(warm.input, warm.lease);
    let cached = rss() - before_cache;
    let names: Vec<String> = state
        .nodes()
        .take(10)
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let options = stowage_solver::SolveOptions::default();
    // Resets VmHWM to the current resident size (Linux >= 4.0).
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM");
    let base = rss();
    let t0 = cpu_seconds();
    let plan = if old {
        let input = snapshot::build(state, &[], Default::default(), now).input;
        stowage_solver::simulate_without(&input, &refs, &options)
    } else {
        let snap = snapshot::build_bound(state, &[], Default::default(), now, &mut cache);
        let mut input = snap.input;
        drop(stowage_solver::displace(&mut input, &refs));
        let plan = stowage_solver::solve(&input, &options);
        cache.recycle(input, snap.lease);
        plan
    };
    let cpu = cpu_seconds() - t0;
    let placed = plan.existing_placements.len();
    println!(
        "replacement mode={} nodes={} displaced_placed={placed} unschedulable={} cached_nodes_mb={:.1} peak_above_state_mb={:.1} cpu_s={cpu:.2}",
        if old { "old" } else { "new" },
        names.len(),
        plan.unschedulable.len(),
        cached as f64 / 1e6,
        (hwm() - base) as f64 / 1e6,
    );
}
