//! `stowage plan` on the embedded AWS catalogue (issue 10): plain CPU pods' claims never list an
//! accelerator or specialty type (GPU, fractional GPU, FPGA, media accelerator, Inferentia,
//! Trainium, Gaudi, Qualcomm, Mac) or a previous-generation type; a GPU pod's options are all
//! types with that GPU (no GPU slices); a Gaudi pod's only `dl1`; a pool that names an old family
//! or a fractional GPU family gets it. And issue 10's tight NodePool limit: a `cpu: 300` limit
//! that the cheapest plan (134 small nodes) would exceed is spent on fewer, larger nodes, every
//! pod placed.
#![allow(clippy::unwrap_used)] // the fixture and plan helpers outside #[test] functions unwrap too

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use stowage_api::labels;
use stowage_aws_catalog::CatalogSettings;
use stowage_solver::InstanceType;

const POOLS: &str = r#"
apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: general}
spec:
  weight: 50
  template:
    spec:
      nodeClassRef: {group: aws.stowage.dev, kind: EC2NodeClass, name: default}
      requirements:
      - {key: stowage.dev/capacity-type, operator: In, values: [spot, on-demand]}
---
apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: gpu}
spec:
  weight: 10
  template:
    spec:
      nodeClassRef: {group: aws.stowage.dev, kind: EC2NodeClass, name: default}
      taints: [{key: nvidia.com/gpu, value: "true", effect: NoSchedule}]
      requirements:
      - {key: aws.stowage.dev/instance-gpu-count, operator: Exists}
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
"#;

/// A pending pod with these requests and pod-spec extras (YAML flow mappings).
fn pod(out: &mut String, name: &str, requests: &str, extra: &str) {
    write!(
        out,
        "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: t}}\nspec:\n  \
         containers: [{{name: c, image: i, resources: {{requests: {{{requests}}}, limits: {{{requests}}}}}}}]\n{extra}"
    )
    .unwrap();
}

/// Plain CPU pods from tiny to large, CPU- and memory-heavy, so claims span the catalogue.
fn cpu_pods(out: &mut String) {
    let shapes = [
        ("100m", "128Mi"),
        ("500m", "1Gi"),
        ("1", "2Gi"),
        ("2", "16Gi"),
        ("3500m", "14Gi"),
        ("4", "4Gi"),
        ("7", "60Gi"),
        ("15", "30Gi"),
        ("30", "240Gi"),
        ("60", "120Gi"),
        ("90", "700Gi"),
    ];
    for (i, (cpu, memory)) in shapes.iter().enumerate() {
        for j in 0..3 {
            pod(
                out,
                &format!("cpu-{i}-{j}"),
                &format!("cpu: \"{cpu}\", memory: {memory}"),
                "",
            );
        }
    }
}

fn plan(dir: &Path, files: &[(&str, &str)]) -> serde_json::Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stowage"));
    cmd.arg("plan").args(["-o", "json"]);
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        cmd.arg("-f").arg(path);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "stowage plan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (pods, instance type options) of every new claim.
fn claims(plan: &serde_json::Value) -> Vec<(Vec<String>, Vec<String>)> {
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    plan["new_claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (strings(&c["pods"]), strings(&c["instance_type_options"])))
        .collect()
}

fn catalogue() -> BTreeMap<String, InstanceType> {
    stowage_aws_catalog::embedded("us-east-1", &CatalogSettings::default())
        .unwrap()
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect()
}

/// The families the issue names as accelerator or specialty hardware.
fn specialty_by_name(name: &str) -> bool {
    let family = name.split('.').next().unwrap_or(name);
    family.starts_with('g')
        || family.starts_with('p')
        || ["vt1", "f1", "f2", "inf", "trn", "dl", "mac"]
            .iter()
            .any(|p| family.starts_with(p))
}

#[test]
fn cpu_pods_never_list_specialty_or_previous_generation_types() {
    let types = catalogue();
    // The catalogue has every kind of hardware the rule is about.
    for name in [
        "g6f.4xlarge",
        "gr6f.4xlarge",
        "vt1.6xlarge",
        "f2.12xlarge",
        "inf2.xlarge",
        "trn1.2xlarge",
        "dl1.24xlarge",
        "p5.48xlarge",
        "m4.large",
        "r3.large",
    ] {
        assert!(types.contains_key(name), "{name} in the embedded catalogue");
    }
    assert!(types["m4.large"].is_previous_generation());
    assert!(!types.keys().any(|n| n.starts_with("mac")));

    let dir = tempfile::tempdir().unwrap();
    let mut pods = String::new();
    cpu_pods(&mut pods);
    pod(
        &mut pods,
        "gpu-1",
        "cpu: \"4\", memory: 16Gi, nvidia.com/gpu: \"1\"",
        "  tolerations: [{key: nvidia.com/gpu, operator: Exists}]\n",
    );
    pod(
        &mut pods,
        "gaudi-1",
        "cpu: \"8\", memory: 64Gi, habana.ai/gaudi: \"8\"",
        "  tolerations: [{key: habana.ai/gaudi, operator: Exists}]\n",
    );
    let plan = plan(dir.path(), &[("pools.yaml", POOLS), ("pods.yaml", &pods)]);
    assert_eq!(
        plan["unschedulable"].as_object().unwrap().len(),
        0,
        "{}",
        plan["unschedulable"]
    );
    let claims = claims(&plan);
    let mut cpu_options = 0;
    for (pods, options) in &claims {
        assert!(!options.is_empty());
        if pods.iter().any(|p| p.contains("/gpu-")) {
            for o in options {
                let t = &types[o];
                assert!(
                    t.capacity.get(labels::RESOURCE_NVIDIA_GPU) >= 1 && !t.is_fractional_gpu(),
                    "GPU pod on {o}"
                );
            }
        } else if pods.iter().any(|p| p.contains("/gaudi-")) {
            assert_eq!(options, &["dl1.24xlarge"]);
        } else {
            for o in options {
                let t = &types[o];
                assert!(
                    !specialty_by_name(o) && !t.is_exotic(),
                    "CPU pods {pods:?} list {o}"
                );
                assert!(!t.is_previous_generation(), "CPU pods {pods:?} list {o}");
                cpu_options += 1;
            }
        }
    }
    assert!(
        cpu_options > 50,
        "the claims offer a real choice: {cpu_options}"
    );
}

#[test]
fn pools_and_pods_that_name_old_or_specialty_types_get_them() {
    let types = catalogue();
    let dir = tempfile::tempdir().unwrap();
    let pools = r#"
apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: old}
spec:
  template:
    spec:
      nodeClassRef: {group: aws.stowage.dev, kind: EC2NodeClass, name: default}
      requirements:
      - {key: aws.stowage.dev/instance-family, operator: In, values: [m4, m7i]}
---
apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: slices}
spec:
  template:
    spec:
      nodeClassRef: {group: aws.stowage.dev, kind: EC2NodeClass, name: default}
      taints: [{key: slices, value: "true", effect: NoSchedule}]
      requirements:
      - {key: aws.stowage.dev/instance-family, operator: In, values: [g6f]}
"#;
    let mut pods = String::new();
    pod(&mut pods, "web", "cpu: \"1\", memory: 2Gi", "");
    pod(
        &mut pods,
        "render",
        "cpu: \"1\", memory: 2Gi, nvidia.com/gpu: \"1\"",
        "  tolerations: [{key: slices, operator: Exists}]\n",
    );
    let plan = plan(dir.path(), &[("pools.yaml", pools), ("pods.yaml", &pods)]);
    let claims = claims(&plan);
    let options_of = |pod: &str| {
        claims
            .iter()
            .find(|(pods, _)| pods.iter().any(|p| p == pod))
            .map(|(_, o)| o.clone())
            .unwrap_or_else(|| panic!("{pod} has no claim: {plan}"))
    };
    let web = options_of("t/web");
    assert!(
        web.iter().any(|o| o.starts_with("m4.")) && web.iter().any(|o| o.starts_with("m7i.")),
        "the pool names m4: {web:?}"
    );
    let render = options_of("t/render");
    assert!(
        render.iter().all(|o| types[o].is_fractional_gpu()),
        "the pool names g6f: {render:?}"
    );
}

/// Issue 10's review case as manifests: one pool in three zones with a CPU limit, two
/// DaemonSets, 240 zone-spread web pods (500m/1Gi) and 60 batch pods (2 vCPU/8Gi).
fn tight_limit_manifests(limit: &str) -> (String, String) {
    let pool = format!(
        r#"
apiVersion: stowage.dev/v1
kind: NodePool
metadata: {{name: general}}
spec:
  limits: {{{limit}}}
  template:
    spec:
      nodeClassRef: {{group: aws.stowage.dev, kind: EC2NodeClass, name: default}}
      requirements:
      - {{key: topology.kubernetes.io/zone, operator: In, values: [us-east-1a, us-east-1b, us-east-1c]}}
"#
    );
    let mut pods = String::new();
    for (name, cpu, memory) in [("agent", "100m", "128Mi"), ("logs", "200m", "256Mi")] {
        write!(
            pods,
            "---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: {name}, namespace: kube-system}}\n\
             spec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    \
             spec:\n      containers: [{{name: c, image: i, resources: {{requests: {{cpu: {cpu}, memory: {memory}}}}}}}]\n"
        )
        .unwrap();
    }
    for i in 0..240 {
        write!(
            pods,
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: web-{i}, namespace: t, labels: {{app: web}}}}\n\
             spec:\n  containers: [{{name: c, image: i, resources: {{requests: {{cpu: 500m, memory: 1Gi}}}}}}]\n  \
             topologySpreadConstraints:\n  - {{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, \
             whenUnsatisfiable: DoNotSchedule, labelSelector: {{matchLabels: {{app: web}}}}}}\n"
        )
        .unwrap();
    }
    for i in 0..60 {
        pod(
            &mut pods,
            &format!("batch-{i}"),
            "cpu: \"2\", memory: 8Gi",
            "",
        );
    }
    (pool, pods)
}

#[test]
fn a_tight_limit_is_spent_on_fewer_larger_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let types = catalogue();
    for (limit, cap) in [("cpu: 1000", 1_000_000), ("cpu: 300", 300_000)] {
        let (pool, pods) = tight_limit_manifests(limit);
        let plan = plan(
            dir.path(),
            &[("pool.yaml", pool.as_str()), ("pods.yaml", pods.as_str())],
        );
        let unschedulable = plan["unschedulable"].as_object().unwrap().len();
        let claims = claims(&plan);
        let placed: usize = claims.iter().map(|(pods, _)| pods.len()).sum();
        let most_cpu: i64 = claims
            .iter()
            .map(|(_, options)| {
                options
                    .iter()
                    .map(|t| types[t].capacity.cpu_millis())
                    .max()
                    .unwrap()
            })
            .sum();
        let figures = format!(
            "{limit}: {} claims, {placed} pods placed, {unschedulable} unschedulable, up to {most_cpu}m",
            claims.len()
        );
        assert_eq!((placed, unschedulable), (300, 0), "{figures}");
        assert!(most_cpu <= cap, "{figures}");
    }
}
