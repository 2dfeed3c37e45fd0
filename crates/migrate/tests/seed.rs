//! The seed-shaped estate (crates/migrate/testdata/seed): golden output, validity, and the
//! properties the issue asks for, read from the output rather than assumed.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use stowage_api::{EC2NodeClass, NodePool};
use stowage_migrate::{Options, Output, Severity, migrate};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/seed")
}

fn inputs(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                std::fs::read_to_string(dir().join(n)).unwrap(),
            )
        })
        .collect()
}

const ALL: &[&str] = &[
    "cluster.yaml",
    "cluster-autoscaler.yaml",
    "asgs.json",
    "launch-templates.json",
];

fn seed() -> Output {
    migrate(&inputs(ALL), &Options::default()).unwrap()
}

fn pools(out: &Output) -> Vec<NodePool> {
    out.nodepools
        .iter()
        .map(|m| serde_saphyr::from_str(&m.yaml).unwrap())
        .collect()
}

fn pool<'a>(pools: &'a [NodePool], name: &str) -> &'a NodePool {
    pools
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no NodePool {name}"))
}

fn values(p: &NodePool, key: &str) -> Vec<String> {
    p.spec
        .template
        .spec
        .requirements
        .iter()
        .find(|r| r.key == key)
        .map(|r| r.values.clone())
        .unwrap_or_default()
}

#[test]
fn golden_output() {
    let out = seed();
    let golden = dir().join("golden");
    let files = [
        (
            "nodeclasses.yaml",
            out.nodeclasses
                .iter()
                .map(|m| m.yaml.clone())
                .collect::<Vec<_>>()
                .join("---\n"),
        ),
        (
            "nodepools.yaml",
            out.nodepools
                .iter()
                .map(|m| m.yaml.clone())
                .collect::<Vec<_>>()
                .join("---\n"),
        ),
        ("report.md", out.report_text()),
    ];
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(&golden).unwrap();
        for (f, text) in &files {
            std::fs::write(golden.join(f), text).unwrap();
        }
    }
    for (f, text) in &files {
        let want = std::fs::read_to_string(golden.join(f)).unwrap();
        assert!(
            *text == want,
            "{f} differs from the golden file; rerun with UPDATE_GOLDEN=1 and review the diff"
        );
    }
}

#[test]
fn every_manifest_is_valid_and_every_field_says_where_it_came_from() {
    let out = seed();
    for m in &out.nodeclasses {
        stowage_migrate::validate::manifest("EC2NodeClass", m).unwrap();
        let c: EC2NodeClass = serde_saphyr::from_str(&m.yaml).unwrap();
        c.validate().unwrap();
    }
    for m in &out.nodepools {
        stowage_migrate::validate::manifest("NodePool", m).unwrap();
        for line in m.yaml.lines() {
            let t = line.trim_start();
            // Every leaf under spec (a scalar field or list item) carries a source comment,
            // directly or on the list item / key it belongs to.
            if t.starts_with("weight:")
                || t.starts_with("cpu:")
                || t.starts_with("onDemandPercentAboveBase:")
            {
                assert!(line.contains("  # "), "{}: {line}", m.name);
                assert!(
                    line.contains(".yaml:") || line.contains(".json:"),
                    "{}: {line} names no file:line",
                    m.name
                );
            }
        }
    }
}

#[test]
fn the_estate_maps_as_the_issue_says() {
    let out = seed();
    let pools = pools(&out);
    // 33 groups in (30 eksctl groups mapped, the Windows one skipped, 2 bare ASGs).
    assert_eq!(out.report.groups.len(), 32, "{:#?}", out.report.groups);
    // Groups that differ only in instance types are one pool.
    let wf = pool(&pools, "wf-spot");
    assert_eq!(values(wf, "node.kubernetes.io/instance-type").len(), 12);
    assert_eq!(values(wf, "stowage.dev/capacity-type"), ["spot"]);
    // maxSize x vCPU: 6 groups x 150 x 8 vCPU (the 2xlarge).
    assert_eq!(wf.spec.limits["cpu"].0, "7200");
    // Priorities 80/50/10 are the weights, order kept.
    assert_eq!(wf.spec.weight, Some(80));
    assert_eq!(pool(&pools, "mgmt-spot").spec.weight, Some(50));
    assert_eq!(pool(&pools, "batch-spot").spec.weight, Some(50));
    assert_eq!(pool(&pools, "gaudi-train").spec.weight, Some(10));
    // Per-zone groups differ in zones, so they stay apart.
    for z in ["a", "b", "c"] {
        let p = pool(&pools, &format!("api-ondemand-us-east-1{z}"));
        assert_eq!(
            values(p, "topology.kubernetes.io/zone"),
            [format!("us-east-1{z}")]
        );
        assert_eq!(values(p, "stowage.dev/capacity-type"), ["on-demand"]);
    }
    // The Gaudi group: its label, taint and only dl1.
    let gaudi = pool(&pools, "gaudi-train");
    assert_eq!(gaudi.spec.template.metadata.labels["accel"], "dl1.24xlarge");
    assert_eq!(
        values(gaudi, "node.kubernetes.io/instance-type"),
        ["dl1.24xlarge"]
    );
    assert_eq!(gaudi.spec.template.spec.taints[0].key, "habana.ai/gaudi");
    assert_eq!(gaudi.spec.limits["cpu"].0, "768");
    // Mixed instances: spot and on-demand with the ASG's split (base 2 instances x 8 vCPU x 3).
    let general = pool(&pools, "general-mixed");
    let mix = general.spec.capacity_mix.as_ref().unwrap();
    assert_eq!(mix.on_demand_percent_above_base, 20);
    assert_eq!(mix.on_demand_base.as_ref().unwrap().0, "48");
    assert_eq!(
        values(general, "stowage.dev/capacity-type"),
        ["spot", "on-demand"]
    );
    // The ASG's autoscaling option overrides the Deployment's flag; the flag applies elsewhere.
    assert_eq!(general.spec.disruption.consolidate_after.to_string(), "20m");
    assert_eq!(wf.spec.disruption.consolidate_after.to_string(), "15m");
    // A bare ASG: node-template tags become labels and taints, the mixed policy spot-only.
    let ci = pool(&pools, "legacy-ci-spot");
    assert_eq!(ci.spec.template.metadata.labels["workload"], "ci");
    assert_eq!(ci.spec.template.spec.taints[0].key, "dedicated");
    assert_eq!(values(ci, "stowage.dev/capacity-type"), ["spot"]);
    // What could not be mapped is in the report, with its reason and source.
    let not_mapped: Vec<String> = out
        .report
        .of(Severity::NotMapped)
        .map(|n| format!("{}: {}", n.at, n.message))
        .collect();
    let has = |s: &str| not_mapped.iter().any(|n| n.contains(s));
    assert!(has("fixed node count of 3"), "{not_mapped:#?}");
    assert!(
        has("amiFamily WindowsServer2022FullContainer"),
        "{not_mapped:#?}"
    );
    assert!(has("custom AMI ami-0123456789abcdef0"), "{not_mapped:#?}");
    assert!(has("efaEnabled"), "{not_mapped:#?}");
    assert!(has("--scale-down-delay-after-add"), "{not_mapped:#?}");
    assert!(has("ASG bastion"), "{not_mapped:#?}");
    assert!(
        not_mapped
            .iter()
            .all(|n| n.contains(".yaml") || n.contains(".json")),
        "{not_mapped:#?}"
    );
}

#[test]
fn each_input_works_alone() {
    for names in [
        &["cluster.yaml"][..],
        &["asgs.json", "launch-templates.json"],
        &["asgs.json"],
    ] {
        let out = migrate(&inputs(names), &Options::default()).unwrap();
        assert!(!out.nodepools.is_empty(), "{names:?}");
    }
    let err = migrate(&inputs(&["cluster-autoscaler.yaml"]), &Options::default()).unwrap_err();
    assert!(err.to_string().contains("no node groups"), "{err}");
}

#[test]
fn bad_input_names_file_document_and_field() {
    let cases = [
        (
            "maxSize: 150",
            "maxSize: lots",
            "cluster.yaml document 1 managedNodeGroups[0].maxSize: expected an integer",
        ),
        (
            "effect: NoSchedule",
            "effect: Sometimes",
            "cluster.yaml document 1 managedNodeGroups[10].taints[0].effect: unknown taint effect",
        ),
        (
            "attachIDs: [sg-0123456789abcdef0]",
            "attachIDs: [sg-XYZ]",
            "cluster.yaml document 1 managedNodeGroups[0].securityGroups.attachIDs[0]: \"sg-XYZ\" is not a security group id",
        ),
    ];
    for (from, to, want) in cases {
        let mut files = inputs(ALL);
        files[0].1 = files[0].1.replacen(from, to, 1);
        let err = migrate(&files, &Options::default()).unwrap_err();
        assert!(err.to_string().starts_with(want), "{err}\nwant {want}");
    }
    let mut files = inputs(ALL);
    files[1].1 = files[1].1.replace("    50:\n", "    fifty:\n");
    let err = migrate(&files, &Options::default()).unwrap_err();
    assert!(
        err.to_string().starts_with("cluster-autoscaler.yaml document 1 data.priorities[fifty]: priority \"fifty\" is not an integer"),
        "{err}"
    );
    // A bare ASG's sizes are read (an eksctl-made ASG only adds to its eksctl group).
    let mut files = inputs(ALL);
    files[2].1 = files[2]
        .1
        .replacen("\"MaxSize\": 40", "\"MaxSize\": \"forty\"", 1);
    let err = migrate(&files, &Options::default()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("asgs.json document 1 AutoScalingGroups[3].MaxSize: expected an integer"),
        "{err}"
    );
}

#[test]
fn nothing_is_written_on_error_and_everything_on_success() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("out");
    let out = seed();
    stowage_migrate::write_dir(&out, &out_dir).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["nodeclasses.yaml", "nodepools.yaml", "report.md"]);
    // A second run into the same (now full) directory is refused and leaves it as it was.
    let before = std::fs::read_to_string(out_dir.join("nodepools.yaml")).unwrap();
    let err = stowage_migrate::write_dir(&out, &out_dir).unwrap_err();
    assert!(err.to_string().contains("is not empty"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out_dir.join("nodepools.yaml")).unwrap(),
        before
    );
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "no temporary directory left behind");
}
