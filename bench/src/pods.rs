//! `stowage-bench gen-pods`: a `kubectl get pods -A -o json` dump of pending pods in the seed's
//! mix, and the seed's NodePools, as input for timing `stowage plan` end to end.
//!
//! The pods are full objects as kubectl prints them (metadata with labels, annotations and owner
//! references; containers with env, ports, probes and volume mounts; the default tolerations; the
//! service-account volume; `status` Pending with `PodScheduled=False/Unschedulable`), so parsing
//! costs what it costs on a real dump (~5 KB of JSON per pod). The mix scales the issue's seed
//! batch (2,000 Spark executors, 5,000 batch pods, 200 GPU pods, 16 Gaudi pods, 300 on-demand
//! pods) to any count.
//!
//! Key decision: the objects are `serde_json::Value`s written by hand, not `k8s_openapi` types:
//! kubectl prints keys in sorted order with 4-space indentation, which `Value` (a sorted map)
//! reproduces, and the benchmark crate stays free of the Kubernetes type crates.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{Value, json};

use crate::Rng;

/// The seed batch the mix is scaled from: (class, pods).
const SEED: [(Class, usize); 5] = [
    (Class::Spark, 2_000),
    (Class::Batch, 5_000),
    (Class::Gpu, 200),
    (Class::Gaudi, 16),
    (Class::OnDemand, 300),
];

/// A workload class of the seed mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Spark executors: 4 vCPU / 16 GiB, owned by their driver pod.
    Spark,
    /// Argo workflow steps: 0.5-8 vCPU, 2-8 GiB per vCPU, a `wait` sidecar and an init container.
    Batch,
    /// One NVIDIA GPU, 8 vCPU / 32 GiB, tolerating the GPU pool's taint.
    Gpu,
    /// Eight Gaudi accelerators (a whole `dl1.24xlarge`).
    Gaudi,
    /// A Deployment pinned to on-demand, spread over zones (maxSkew 1).
    OnDemand,
}

/// How many pods of each class `n` pods hold (the seed's proportions; the remainder goes to
/// batch).
pub fn mix(n: usize) -> Vec<(Class, usize)> {
    let total: usize = SEED.iter().map(|(_, c)| c).sum();
    let mut out: Vec<(Class, usize)> = SEED.iter().map(|&(k, c)| (k, n * c / total)).collect();
    let given: usize = out.iter().map(|(_, c)| c).sum();
    if let Some(batch) = out.iter_mut().find(|(k, _)| *k == Class::Batch) {
        batch.1 += n - given;
    }
    out
}

/// `n` pending pods of the seed mix as one `kind: List`, seeded.
pub fn pod_list(n: usize, seed: u64) -> Value {
    let mut g = Gen {
        rng: Rng::new(seed),
        serial: 0,
    };
    let mut items = Vec::with_capacity(n);
    for (class, count) in mix(n) {
        for i in 0..count {
            items.push(g.pod(class, i));
        }
    }
    json!({"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}})
}

/// The seed's NodePools as a user writes them (spot tier weight 80, on-demand tier weight 50,
/// a GPU pool and a Gaudi pool) and its two DaemonSets, as multi-document YAML.
pub const NODEPOOLS_YAML: &str = r#"apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: spot}
spec:
  weight: 80
  template:
    spec:
      nodeClassRef: {group: aws.stowage.dev, kind: EC2NodeClass, name: default}
      requirements:
        - {key: stowage.dev/capacity-type, operator: In, values: [spot]}
        - {key: aws.stowage.dev/instance-category, operator: In, values: [c, m, r]}
        - {key: kubernetes.io/arch, operator: In, values: [amd64]}
  limits: {cpu: "400000"}
---
apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: on-demand}
spec:
  weight: 50
  template:
    spec:
      nodeClassRef: {group: aws.stowage.dev, kind: EC2NodeClass, name: default}
      requirements:
        - {key: stowage.dev/capacity-type, operator: In, values: [on-demand]}
        - {key: aws.stowage.dev/instance-category, operator: In, values: [c, m, r]}
        - {key: kubernetes.io/arch, operator: In, values: [amd64]}
---
apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: gpu}
spec:
  weight: 20
  template:
    spec:
      nodeClassRef: {group: aws.stowage.dev, kind: EC2NodeClass, name: default}
      taints: [{key: nvidia.com/gpu, value: "true", effect: NoSchedule}]
      requirements:
        - {key: aws.stowage.dev/instance-category, operator: In, values: [g, p]}
        - {key: aws.stowage.dev/instance-gpu-manufacturer, operator: In, values: [nvidia]}
---
apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: gaudi}
spec:
  weight: 5
  template:
    spec:
      nodeClassRef: {group: aws.stowage.dev, kind: EC2NodeClass, name: default}
      taints: [{key: habana.ai/gaudi, value: "true", effect: NoSchedule}]
      requirements:
        - {key: node.kubernetes.io/instance-type, operator: In, values: [dl1.24xlarge]}
        - {key: stowage.dev/capacity-type, operator: In, values: [on-demand]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: node-agent, namespace: kube-system}
spec:
  selector: {matchLabels: {app: node-agent}}
  template:
    metadata: {labels: {app: node-agent}}
    spec:
      tolerations: [{operator: Exists}]
      containers:
        - name: agent
          image: registry.example.com/node-agent:1.4.2
          resources: {requests: {cpu: 100m, memory: 200Mi}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: log-shipper, namespace: kube-system}
spec:
  selector: {matchLabels: {app: log-shipper}}
  template:
    metadata: {labels: {app: log-shipper}}
    spec:
      tolerations: [{operator: Exists}]
      containers:
        - name: shipper
          image: registry.example.com/log-shipper:3.1.0
          resources: {requests: {cpu: 50m, memory: 100Mi}}
"#;

/// `stowage-bench gen-pods [--pods N] [--seed N] [--format json|yaml] --out FILE
/// [--nodepools FILE]`: writes the pod dump (and the NodePools and DaemonSets) to files.
pub fn main(args: &[String]) -> ExitCode {
    let usage = || {
        eprintln!(
            "usage: stowage-bench gen-pods [--pods N] [--seed N] [--format json|yaml] --out FILE [--nodepools FILE]"
        );
        ExitCode::from(2)
    };
    let (mut n, mut seed, mut yaml) = (40_000usize, 42u64, false);
    let (mut out, mut pools): (Option<PathBuf>, Option<PathBuf>) = (None, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else {
            return usage();
        };
        let ok = match flag.as_str() {
            "--pods" => value.parse().map(|v| n = v).is_ok(),
            "--seed" => value.parse().map(|v| seed = v).is_ok(),
            "--format" => match value.as_str() {
                "json" | "yaml" => {
                    yaml = value == "yaml";
                    true
                }
                _ => false,
            },
            "--out" => {
                out = Some(value.into());
                true
            }
            "--nodepools" => {
                pools = Some(value.into());
                true
            }
            _ => false,
        };
        if !ok {
            eprintln!("bad argument {flag} {value}");
            return usage();
        }
    }
    let Some(out) = out else {
        return usage();
    };
    let list = pod_list(n, seed);
    let bytes = if yaml {
        match serde_saphyr::to_string(&list) {
            Ok(s) => s.into_bytes(),
            Err(e) => {
                eprintln!("failed to write YAML: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        to_kubectl_json(&list)
    };
    let mut written = vec![(out, bytes)];
    if let Some(p) = pools {
        written.push((p, NODEPOOLS_YAML.as_bytes().to_vec()));
    }
    for (path, bytes) in written {
        if let Err(e) = std::fs::write(&path, &bytes) {
            eprintln!("failed to write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
    }
    ExitCode::SUCCESS
}

/// Writes `value` as `kubectl -o json` does: keys sorted, 4-space indentation, a final newline.
pub fn to_kubectl_json(value: &Value) -> Vec<u8> {
    use serde::Serialize as _;
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    // Writing a `Value` to a Vec cannot fail.
    let _ = value.serialize(&mut ser);
    out.push(b'\n');
    out
}

struct Gen {
    rng: Rng,
    serial: u64,
}

const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const CREATED: &str = "2026-11-29T04:12:37Z";

impl Gen {
    fn hex(&mut self, digits: usize) -> String {
        let mut s = String::with_capacity(digits);
        while s.len() < digits {
            s.push_str(&format!("{:016x}", self.rng.next_u64()));
        }
        s.truncate(digits);
        s
    }

    fn suffix(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..len)
            .map(|_| ALPHABET[(self.rng.next_u64() % ALPHABET.len() as u64) as usize] as char)
            .collect()
    }

    fn uid(&mut self) -> String {
        let h = self.hex(32);
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    fn resource_version(&mut self) -> String {
        self.serial += 1;
        (418_000_000 + self.serial * 7).to_string()
    }

    fn pod(&mut self, class: Class, i: usize) -> Value {
        match class {
            Class::Spark => self.spark(i),
            Class::Batch => self.batch(i),
            Class::Gpu => self.accelerated(i, "gpu"),
            Class::Gaudi => self.accelerated(i, "gaudi"),
            Class::OnDemand => self.on_demand(i),
        }
    }

    /// The service-account token volume every pod gets.
    fn api_access(&mut self) -> (Value, Value) {
        let name = format!("kube-api-access-{}", self.suffix(5));
        let volume = json!({
            "name": name,
            "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
                {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}}
            ]}
        });
        let mount = json!({"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            "name": name, "readOnly": true});
        (volume, mount)
    }

    fn status(qos: &str, message: &str) -> Value {
        json!({
            "conditions": [{
                "lastProbeTime": null,
                "lastTransitionTime": CREATED,
                "message": message,
                "reason": "Unschedulable",
                "status": "False",
                "type": "PodScheduled"
            }],
            "phase": "Pending",
            "qosClass": qos
        })
    }

    fn default_tolerations(extra: Vec<Value>) -> Value {
        let mut t = extra;
        t.push(json!({"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300}));
        t.push(json!({"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}));
        Value::Array(t)
    }

    fn field_env(name: &str, path: &str) -> Value {
        json!({"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}})
    }

    fn spark(&mut self, i: usize) -> Value {
        // 20 applications, executors numbered within each.
        let app = i % 20;
        let exec = i / 20 + 1;
        let app_id = format!("spark-{:032x}", app as u64 * 0x9E37_79B9 + 17);
        let driver = format!("etl-daily-{app:02}-driver");
        let name = format!("etl-daily-{app:02}-exec-{exec}");
        let (api_vol, api_mount) = self.api_access();
        let driver_uid = format!("7d3c{app:04x}-1b2e-4f0a-9c51-0d4e8f6a{app:04x}");
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "creationTimestamp": CREATED,
                "labels": {
                    "spark-app-name": format!("etl-daily-{app:02}"),
                    "spark-app-selector": app_id,
                    "spark-exec-id": exec.to_string(),
                    "spark-exec-resourceprofile-id": "0",
                    "spark-role": "executor",
                    "spark-version": "3.5.3"
                },
                "name": name,
                "namespace": "spark",
                "ownerReferences": [{"apiVersion": "v1", "controller": true, "kind": "Pod",
                    "name": driver, "uid": driver_uid}],
                "resourceVersion": self.resource_version(),
                "uid": self.uid()
            },
            "spec": {
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
                "containers": [{
                    "args": ["executor"],
                    "env": [
                        {"name": "SPARK_USER", "value": "etl"},
                        {"name": "SPARK_DRIVER_URL", "value": format!("spark://CoarseGrainedScheduler@{driver}-svc.spark.svc:7078")},
                        {"name": "SPARK_EXECUTOR_CORES", "value": "4"},
                        {"name": "SPARK_EXECUTOR_MEMORY", "value": "14g"},
                        {"name": "SPARK_APPLICATION_ID", "value": app_id},
                        {"name": "SPARK_CONF_DIR", "value": "/opt/spark/conf"},
                        {"name": "SPARK_EXECUTOR_ID", "value": exec.to_string()},
                        {"name": "SPARK_RESOURCE_PROFILE_ID", "value": "0"},
                        Self::field_env("SPARK_EXECUTOR_POD_IP", "status.podIP"),
                        Self::field_env("SPARK_EXECUTOR_POD_NAME", "metadata.name"),
                        {"name": "SPARK_JAVA_OPT_0", "value": "-Djava.net.preferIPv6Addresses=false"},
                        {"name": "SPARK_JAVA_OPT_1", "value": "-Dspark.driver.port=7078"},
                        {"name": "SPARK_LOCAL_DIRS", "value": "/var/data/spark-8f1c2a6e-4b7d-4e0f-a2c3-5d6e7f809a1b"}
                    ],
                    "image": "registry.example.com/spark:3.5.3-scala2.12-java17",
                    "imagePullPolicy": "IfNotPresent",
                    "name": "spark-kubernetes-executor",
                    "ports": [{"containerPort": 7079, "name": "blockmanager", "protocol": "TCP"}],
                    "resources": {"limits": {"memory": "16Gi"}, "requests": {"cpu": "4", "memory": "16Gi"}},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "volumeMounts": [
                        {"mountPath": "/var/data/spark-8f1c2a6e-4b7d-4e0f-a2c3-5d6e7f809a1b", "name": "spark-local-dir-1"},
                        {"mountPath": "/opt/spark/conf", "name": "spark-conf-volume-exec"},
                        api_mount
                    ]
                }],
                "dnsPolicy": "ClusterFirst",
                "enableServiceLinks": true,
                "hostname": name,
                "preemptionPolicy": "PreemptLowerPriority",
                "priority": 0,
                "restartPolicy": "Never",
                "schedulerName": "default-scheduler",
                "securityContext": {},
                "serviceAccount": "spark",
                "serviceAccountName": "spark",
                "terminationGracePeriodSeconds": 30,
                "tolerations": Self::default_tolerations(vec![]),
                "volumes": [
                    {"emptyDir": {}, "name": "spark-local-dir-1"},
                    {"configMap": {"defaultMode": 420, "items": [
                        {"key": "log4j2.properties", "mode": 420, "path": "log4j2.properties"},
                        {"key": "spark-env.sh", "mode": 420, "path": "spark-env.sh"}],
                        "name": format!("spark-exec-{app:02}-conf-map")}, "name": "spark-conf-volume-exec"},
                    api_vol
                ]
            },
            "status": Self::status("Burstable", "0/412 nodes are available: 412 Insufficient cpu. preemption: 0/412 nodes are available: 412 No preemption victims found for incoming pod.")
        })
    }

    fn batch(&mut self, i: usize) -> Value {
        const CPU: [&str; 6] = ["500m", "1", "2", "3", "4", "8"];
        const GIB_PER_CPU: [u64; 3] = [2, 4, 8];
        let cpu = self.rng.pick(&CPU);
        let millis: u64 = if cpu == "500m" {
            500
        } else {
            cpu.parse::<u64>().unwrap_or(1) * 1000
        };
        let memory = format!("{}Mi", millis * 1024 / 1000 * self.rng.pick(&GIB_PER_CPU));
        let wf = format!("nightly-{:04}", i / 50);
        let name = format!("{wf}-step-{}", self.hex(10).trim_start_matches('0'));
        let node_id = format!("{wf}-{}", self.rng.next_u64() % 10_000_000_000);
        let (api_vol, api_mount) = self.api_access();
        let template = format!(
            "{{\"name\":\"step\",\"inputs\":{{\"parameters\":[{{\"name\":\"shard\",\"value\":\"{i}\"}}]}},\"outputs\":{{}},\"metadata\":{{}},\"container\":{{\"name\":\"\",\"image\":\"registry.example.com/batch/transform:2.14.0\",\"command\":[\"python\",\"-m\",\"transform\"],\"args\":[\"--shard\",\"{i}\",\"--date\",\"2026-11-28\"],\"resources\":{{\"requests\":{{\"cpu\":\"{cpu}\",\"memory\":\"{memory}\"}}}}}}}}"
        );
        let mut spec = json!({
            "containers": [
                {
                    "command": ["argoexec", "wait", "--loglevel", "info", "--log-format", "text"],
                    "env": [
                        Self::field_env("ARGO_POD_NAME", "metadata.name"),
                        Self::field_env("ARGO_POD_UID", "metadata.uid"),
                        {"name": "ARGO_WORKFLOW_NAME", "value": wf},
                        {"name": "ARGO_CONTAINER_NAME", "value": "wait"},
                        {"name": "ARGO_NODE_ID", "value": node_id}
                    ],
                    "image": "quay.io/argoproj/argoexec:v3.6.2",
                    "imagePullPolicy": "IfNotPresent",
                    "name": "wait",
                    "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "volumeMounts": [{"mountPath": "/var/run/argo", "name": "var-run-argo"}, api_mount.clone()]
                },
                {
                    "args": ["--shard", i.to_string(), "--date", "2026-11-28"],
                    "command": ["/var/run/argo/argoexec", "emissary", "--loglevel", "info", "--log-format", "text", "--", "python", "-m", "transform"],
                    "env": [
                        {"name": "ARGO_CONTAINER_NAME", "value": "main"},
                        {"name": "ARGO_TEMPLATE", "value": template},
                        {"name": "ARGO_NODE_ID", "value": node_id}
                    ],
                    "image": "registry.example.com/batch/transform:2.14.0",
                    "imagePullPolicy": "IfNotPresent",
                    "name": "main",
                    "resources": {"requests": {"cpu": cpu, "memory": memory}},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "volumeMounts": [{"mountPath": "/var/run/argo", "name": "var-run-argo"}, api_mount.clone()]
                }
            ],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "initContainers": [{
                "command": ["argoexec", "init", "--loglevel", "info", "--log-format", "text"],
                "env": [
                    Self::field_env("ARGO_POD_NAME", "metadata.name"),
                    {"name": "ARGO_CONTAINER_NAME", "value": "init"},
                    {"name": "ARGO_NODE_ID", "value": node_id}
                ],
                "image": "quay.io/argoproj/argoexec:v3.6.2",
                "imagePullPolicy": "IfNotPresent",
                "name": "init",
                "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "volumeMounts": [{"mountPath": "/var/run/argo", "name": "var-run-argo"}, api_mount]
            }],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": "Never",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccount": "argo-workflow",
            "serviceAccountName": "argo-workflow",
            "terminationGracePeriodSeconds": 30,
            "tolerations": Self::default_tolerations(vec![]),
            "volumes": [{"emptyDir": {}, "name": "var-run-argo"}, api_vol]
        });
        // One workflow in four spreads its steps over zones (best effort), as a
        // zone-redundant pipeline does.
        if (i / 50).is_multiple_of(4)
            && let Some(s) = spec.as_object_mut()
        {
            s.insert(
                "topologySpreadConstraints".into(),
                json!([{"labelSelector": {"matchLabels": {"workflows.argoproj.io/workflow": wf}},
                    "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway"}]),
            );
        }
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "annotations": {
                    "kubectl.kubernetes.io/default-container": "main",
                    "workflows.argoproj.io/node-id": node_id,
                    "workflows.argoproj.io/node-name": format!("{wf}[0].transform({i}:{i})")
                },
                "creationTimestamp": CREATED,
                "labels": {
                    "workflows.argoproj.io/completed": "false",
                    "workflows.argoproj.io/workflow": wf
                },
                "name": name,
                "namespace": "argo",
                "ownerReferences": [{"apiVersion": "argoproj.io/v1alpha1", "blockOwnerDeletion": true,
                    "controller": true, "kind": "Workflow", "name": wf,
                    "uid": "3f0b2d4c-6a8e-4c1f-b9d7-2e5a7c9f1b3d"}],
                "resourceVersion": self.resource_version(),
                "uid": self.uid()
            },
            "spec": spec,
            "status": Self::status("Burstable", "0/412 nodes are available: 380 Insufficient cpu, 32 node(s) had untolerated taint {dedicated: management}. preemption: 0/412 nodes are available: 412 No preemption victims found for incoming pod.")
        })
    }

    /// A training pod on one NVIDIA GPU (`kind == "gpu"`) or eight Gaudi accelerators.
    fn accelerated(&mut self, i: usize, kind: &str) -> Value {
        let (resource, count, cpu, memory, taint) = if kind == "gpu" {
            ("nvidia.com/gpu", "1", "8", "32Gi", "nvidia.com/gpu")
        } else {
            ("habana.ai/gaudi", "8", "40", "300Gi", "habana.ai/gaudi")
        };
        let job = format!("train-{kind}-{:03}", i / 8);
        let name = format!("{job}-{}", self.suffix(5));
        let (api_vol, api_mount) = self.api_access();
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "creationTimestamp": CREATED,
                "generateName": format!("{job}-"),
                "labels": {
                    "batch.kubernetes.io/controller-uid": "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f",
                    "batch.kubernetes.io/job-name": job,
                    "controller-uid": "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f",
                    "job-name": job
                },
                "name": name,
                "namespace": "ml",
                "ownerReferences": [{"apiVersion": "batch/v1", "blockOwnerDeletion": true,
                    "controller": true, "kind": "Job", "name": job,
                    "uid": "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"}],
                "resourceVersion": self.resource_version(),
                "uid": self.uid()
            },
            "spec": {
                "containers": [{
                    "command": ["torchrun", "--nproc-per-node", count, "train.py"],
                    "env": [
                        {"name": "NCCL_DEBUG", "value": "WARN"},
                        {"name": "MODEL", "value": "llm-7b"},
                        Self::field_env("POD_NAME", "metadata.name")
                    ],
                    "image": "registry.example.com/ml/trainer:2025.11",
                    "imagePullPolicy": "IfNotPresent",
                    "name": "trainer",
                    "resources": {"limits": {resource: count}, "requests": {"cpu": cpu, "memory": memory, resource: count}},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "volumeMounts": [{"mountPath": "/dev/shm", "name": "dshm"}, api_mount]
                }],
                "dnsPolicy": "ClusterFirst",
                "enableServiceLinks": true,
                "preemptionPolicy": "PreemptLowerPriority",
                "priority": 0,
                "restartPolicy": "Never",
                "schedulerName": "default-scheduler",
                "securityContext": {},
                "serviceAccount": "default",
                "serviceAccountName": "default",
                "terminationGracePeriodSeconds": 30,
                "tolerations": Self::default_tolerations(vec![
                    json!({"effect": "NoSchedule", "key": taint, "operator": "Exists"})
                ]),
                "volumes": [{"emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}, "name": "dshm"}, api_vol]
            },
            "status": Self::status("Burstable", format!("0/412 nodes are available: 412 Insufficient {resource}. preemption: 0/412 nodes are available: 412 No preemption victims found for incoming pod.").as_str())
        })
    }

    fn on_demand(&mut self, i: usize) -> Value {
        let rs = format!("payments-{}", ["7c9d8f6b5", "5f4b7d9c8"][i % 2]);
        let name = format!("{rs}-{}", self.suffix(5));
        let (api_vol, api_mount) = self.api_access();
        let zone = ZONES[i % ZONES.len()];
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-20T09:00:00Z",
                    "prometheus.io/port": "9090", "prometheus.io/scrape": "true"},
                "creationTimestamp": CREATED,
                "generateName": format!("{rs}-"),
                "labels": {"app.kubernetes.io/name": "payments", "pod-template-hash": &rs[9..],
                    "tier": "critical"},
                "name": name,
                "namespace": "payments",
                "ownerReferences": [{"apiVersion": "apps/v1", "blockOwnerDeletion": true,
                    "controller": true, "kind": "ReplicaSet", "name": rs,
                    "uid": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"}],
                "resourceVersion": self.resource_version(),
                "uid": self.uid()
            },
            "spec": {
                "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                    "podAffinityTerm": {"labelSelector": {"matchLabels": {"app.kubernetes.io/name": "payments"}},
                        "topologyKey": "kubernetes.io/hostname"}, "weight": 100}]}},
                "containers": [{
                    "env": [
                        {"name": "ZONE_HINT", "value": zone},
                        {"name": "DB_HOST", "value": "payments-db.payments.svc"},
                        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"key": "password", "name": "payments-db"}}},
                        Self::field_env("POD_IP", "status.podIP")
                    ],
                    "image": "registry.example.com/payments/api:4.2.1",
                    "imagePullPolicy": "IfNotPresent",
                    "livenessProbe": {"failureThreshold": 3, "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                        "periodSeconds": 10, "successThreshold": 1, "timeoutSeconds": 1},
                    "name": "api",
                    "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"},
                        {"containerPort": 9090, "name": "metrics", "protocol": "TCP"}],
                    "readinessProbe": {"failureThreshold": 3, "httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"},
                        "periodSeconds": 5, "successThreshold": 1, "timeoutSeconds": 1},
                    "resources": {"limits": {"cpu": "1", "memory": "2Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "volumeMounts": [api_mount]
                }],
                "dnsPolicy": "ClusterFirst",
                "enableServiceLinks": true,
                "nodeSelector": {"stowage.dev/capacity-type": "on-demand"},
                "preemptionPolicy": "PreemptLowerPriority",
                "priority": 1_000_000,
                "priorityClassName": "critical",
                "restartPolicy": "Always",
                "schedulerName": "default-scheduler",
                "securityContext": {"fsGroup": 2000, "runAsNonRoot": true},
                "serviceAccount": "payments",
                "serviceAccountName": "payments",
                "terminationGracePeriodSeconds": 60,
                "tolerations": Self::default_tolerations(vec![]),
                "topologySpreadConstraints": [{"labelSelector": {"matchLabels": {"app.kubernetes.io/name": "payments"}},
                    "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}],
                "volumes": [api_vol]
            },
            "status": Self::status("Guaranteed", "0/412 nodes are available: 412 node(s) didn't match Pod's node affinity/selector. preemption: 0/412 nodes are available: 412 Preemption is not helpful for scheduling.")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_scales_the_seed_batch() {
        assert_eq!(
            mix(7_516),
            vec![
                (Class::Spark, 2_000),
                (Class::Batch, 5_000),
                (Class::Gpu, 200),
                (Class::Gaudi, 16),
                (Class::OnDemand, 300)
            ]
        );
        let forty: Vec<usize> = mix(40_000).iter().map(|(_, c)| *c).collect();
        assert_eq!(forty.iter().sum::<usize>(), 40_000);
        assert_eq!(forty, vec![10_643, 26_612, 1_064, 85, 1_596]);
    }

    #[test]
    fn pods_are_seeded_pending_and_uniquely_named() {
        let list = pod_list(300, 7);
        assert_eq!(list, pod_list(300, 7));
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 300);
        let mut names: Vec<String> = items
            .iter()
            .map(|p| format!("{}/{}", p["metadata"]["namespace"], p["metadata"]["name"]))
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 300);
        for p in items {
            assert_eq!(p["status"]["phase"], "Pending");
            assert_eq!(p["status"]["conditions"][0]["reason"], "Unschedulable");
        }
        let json = to_kubectl_json(&list);
        // kubectl's shape: 4-space indentation, ~10 KB per pod (~4 KB without whitespace).
        assert!(json.starts_with(b"{\n    \"apiVersion\": \"v1\",\n    \"items\": ["));
        let per_pod = json.len() / 300;
        assert!(
            (5_000..16_000).contains(&per_pod),
            "{per_pod} bytes per pod"
        );
    }
}
