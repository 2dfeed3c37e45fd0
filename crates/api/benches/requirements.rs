//! Requirement algebra on the solver's hot paths: matching a node's labels, intersecting a pod's
//! requirements into a pool's, and the compatibility check.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use stowage_api::labels;
use stowage_api::requirements::{Requirement, Requirements};

fn pool() -> Requirements {
    let types: Vec<String> = (0..400)
        .map(|i| format!("m{}.{}xlarge", 5 + i % 4, i))
        .collect();
    Requirements::from_requirements(&[
        Requirement::in_(labels::CAPACITY_TYPE, ["spot", "on-demand"]),
        Requirement::in_(labels::ZONE, ["us-east-1a", "us-east-1b", "us-east-1c"]),
        Requirement::in_(labels::ARCH, ["amd64", "arm64"]),
        Requirement::in_(labels::INSTANCE_TYPE, types),
        Requirement::new(
            labels::INSTANCE_GENERATION,
            stowage_api::Operator::Gt,
            ["4"],
        ),
        Requirement::not_in("example.com/team", ["legacy"]),
    ])
    .expect("the benchmark requirements are valid")
}

fn node_labels() -> BTreeMap<String, String> {
    [
        (labels::CAPACITY_TYPE, "spot"),
        (labels::ZONE, "us-east-1b"),
        (labels::ARCH, "amd64"),
        (labels::INSTANCE_TYPE, "m6.201xlarge"),
        (labels::INSTANCE_GENERATION, "6"),
        (labels::OS, "linux"),
        (labels::REGION, "us-east-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn bench(c: &mut Criterion) {
    let pool = pool();
    let labels = node_labels();
    let pod = Requirements::from_requirements(&[
        Requirement::in_(labels::ZONE, ["us-east-1a", "us-east-1b"]),
        Requirement::in_(labels::CAPACITY_TYPE, ["on-demand"]),
    ])
    .expect("the benchmark requirements are valid");
    assert!(pool.matches(&labels));
    c.bench_function("requirements/matches (6 keys, 400 types)", |b| {
        b.iter(|| black_box(&pool).matches(black_box(&labels)))
    });
    c.bench_function("requirements/intersects", |b| {
        b.iter(|| black_box(&pool).intersects(black_box(&pod)))
    });
    c.bench_function("requirements/compatible", |b| {
        b.iter(|| {
            black_box(&pool)
                .compatible(black_box(&pod), labels::WELL_KNOWN)
                .is_ok()
        })
    });
    c.bench_function("requirements/intersection (alloc)", |b| {
        b.iter(|| black_box(&pool).intersection(black_box(&pod)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
