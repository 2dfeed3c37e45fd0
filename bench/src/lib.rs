//! Benchmark workloads for the solver: seeded pod mixes in the shape of Karpenter's scheduling
//! benchmark, the seed platform's own batch ([`Mix::Seed`]), and a runner that reports cost
//! against the lower bound.
//!
//! Key decision: no RNG crate; a SplitMix64 generator keeps every run with the same seed
//! identical across platforms and versions.

pub mod cluster;
pub mod pods;

use std::time::Instant;

use std::collections::BTreeMap;

use stowage_api::labels;
use stowage_api::requirements::Requirement;
use stowage_solver::bound::lower_bound;
use stowage_solver::catalog::karpenter_shape;
use stowage_solver::{
    DaemonSet, InstanceType, NodeTaint, PodRequest, PoolSpec, SolveInput, SolveOptions,
    TaintEffect, Toleration, WhenUnsatisfiable, solve,
};

/// Which pods a benchmark generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// Only generic pods (no topology constraints).
    Generic,
    /// One fifth each: generic, zonal spread, hostname spread, zonal self-affinity, hostname
    /// self-anti-affinity.
    Diverse,
    /// The seed platform's batch against its pools (see [`seed_input`]).
    Seed,
    /// The generic pods (same sizes), all spread over zones (maxSkew 1): compare with `generic`.
    Spread,
    /// As `Spread`, on a pool with a CPU limit ten times what the pods ask (never reached).
    SpreadLimit,
}

impl Mix {
    pub fn as_str(self) -> &'static str {
        match self {
            Mix::Generic => "generic",
            Mix::Diverse => "diverse",
            Mix::Seed => "seed",
            Mix::Spread => "spread",
            Mix::SpreadLimit => "spread-limit",
        }
    }

    pub fn parse(s: &str) -> Option<Mix> {
        match s {
            "generic" => Some(Mix::Generic),
            "diverse" => Some(Mix::Diverse),
            "seed" => Some(Mix::Seed),
            "spread" => Some(Mix::Spread),
            "spread-limit" => Some(Mix::SpreadLimit),
            _ => None,
        }
    }
}

/// SplitMix64.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[(self.next_u64() % items.len() as u64) as usize]
    }
}

const CPU_MILLIS: [i64; 5] = [100, 250, 500, 1000, 1500];
const MEMORY_MIB: [i64; 6] = [100, 256, 512, 1024, 2048, 4096];

/// `n` pods of the mix, seeded.
pub fn pods(n: usize, mix: Mix, seed: u64) -> Vec<PodRequest> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let kind = match mix {
                Mix::Generic | Mix::Seed => 0,
                Mix::Diverse => i * 5 / n.max(1),
                Mix::Spread | Mix::SpreadLimit => 1,
            };
            let cpu = rng.pick(&CPU_MILLIS);
            let mem = rng.pick(&MEMORY_MIB);
            let p = PodRequest::new("bench", &format!("pod-{i:06}"))
                .cpu_millis(cpu)
                .memory_mib(mem);
            match kind {
                0 => p.label("app", "generic"),
                1 => p.label("app", "zonal-spread").spread(
                    labels::ZONE,
                    1,
                    WhenUnsatisfiable::DoNotSchedule,
                ),
                2 => p.label("app", "host-spread").spread(
                    labels::HOSTNAME,
                    1,
                    WhenUnsatisfiable::DoNotSchedule,
                ),
                3 => p.label("app", "zonal-affinity").self_affinity(labels::ZONE),
                _ => p
                    .label("app", "host-anti")
                    .self_anti_affinity(labels::HOSTNAME),
            }
        })
        .collect()
}

/// The benchmark's input: one NodePool, `types` synthetic instance types, `n` pods; for
/// [`Mix::Seed`], the seed's pools and batch over the synthetic types (which have no
/// accelerators: the GPU and Gaudi pods stay unschedulable).
pub fn input(n: usize, types: usize, mix: Mix) -> SolveInput {
    if mix == Mix::Seed {
        return seed_input(n, karpenter_shape(types));
    }
    let pods = pods(n, mix, 42);
    let mut pool = PoolSpec::new("default");
    if mix == Mix::SpreadLimit {
        let cpu: i64 = pods.iter().map(|p| p.requests.cpu_millis()).sum();
        pool = pool.limit("cpu", 10 * cpu);
    }
    SolveInput {
        pods: pods.into_iter().map(std::sync::Arc::new).collect(),
        nodepools: vec![pool],
        instance_types: karpenter_shape(types),
        ..SolveInput::default()
    }
}

/// The seed batch's shares at 7,500 pods (the batch pods take the rest).
const SEED_SPARK: usize = 2_000;
const SEED_GPU: usize = 200;
const SEED_GAUDI: usize = 16;
const SEED_ON_DEMAND: usize = 300;
const SEED_PODS: usize = 7_500;

/// `count` scaled from 7,500 pods to `n`.
fn seed_share(count: usize, n: usize) -> usize {
    (count * n).div_ceil(SEED_PODS)
}

/// The seed platform's pending batch, `n` pods in the proportions of 7,500 (seeded): Spark
/// executors (2,000 at 7,500: 3-4 vCPU, 12-16 GiB), mixed batch pods (the rest: 0.5-8 vCPU at 1,
/// 2 or 4 GiB per vCPU), single-GPU pods (200: 1 NVIDIA GPU, 4 vCPU, 16 GiB), eight-Gaudi pods
/// (16: 8 Gaudi, 64 vCPU, 512 GiB) and pods that need on-demand capacity (300: 1-2 vCPU, 2-4 GiB,
/// a capacity-type node selector).
pub fn seed_pods(n: usize, seed: u64) -> Vec<PodRequest> {
    let mut rng = Rng::new(seed);
    let spark = seed_share(SEED_SPARK, n).min(n);
    let gpu = seed_share(SEED_GPU, n).min(n - spark);
    let gaudi = seed_share(SEED_GAUDI, n).min(n - spark - gpu);
    let on_demand = seed_share(SEED_ON_DEMAND, n).min(n - spark - gpu - gaudi);
    let batch = n - spark - gpu - gaudi - on_demand;
    let mut out = Vec::with_capacity(n);
    for i in 0..spark {
        out.push(
            PodRequest::new("spark", &format!("executor-{i:06}"))
                .label("app", "spark-executor")
                .cpu_millis(rng.pick(&[3000, 3500, 4000]))
                .memory_mib(rng.pick(&[12, 14, 16]) * 1024),
        );
    }
    for i in 0..batch {
        let cpu = rng.pick(&[500, 1000, 2000, 4000, 8000]);
        let gib_per_vcpu = rng.pick(&[1, 2, 4]);
        out.push(
            PodRequest::new("batch", &format!("job-{i:06}"))
                .label("app", "batch")
                .cpu_millis(cpu)
                .memory_mib(cpu * gib_per_vcpu * 1024 / 1000),
        );
    }
    for i in 0..gpu {
        out.push(
            PodRequest::new("ml", &format!("inference-{i:06}"))
                .label("app", "inference")
                .cpu_millis(4000)
                .memory_mib(16 * 1024)
                .request(labels::RESOURCE_NVIDIA_GPU, 1)
                .node_selector(labels::NODEPOOL, "gpu")
                .toleration(Toleration::exists(
                    labels::RESOURCE_NVIDIA_GPU,
                    Some(TaintEffect::NoSchedule),
                )),
        );
    }
    for i in 0..gaudi {
        out.push(
            PodRequest::new("ml", &format!("training-{i:06}"))
                .label("app", "training")
                .cpu_millis(64_000)
                .memory_mib(512 * 1024)
                .request(labels::RESOURCE_HABANA_GAUDI, 8)
                .node_selector(labels::NODEPOOL, "gaudi")
                .toleration(Toleration::exists(
                    labels::RESOURCE_HABANA_GAUDI,
                    Some(TaintEffect::NoSchedule),
                )),
        );
    }
    for i in 0..on_demand {
        let cpu = rng.pick(&[1000, 2000]);
        out.push(
            PodRequest::new("payments", &format!("api-{i:06}"))
                .label("app", "payments")
                .cpu_millis(cpu)
                .memory_mib(cpu * 2 * 1024 / 1000)
                .node_selector(labels::CAPACITY_TYPE, "on-demand"),
        );
    }
    out
}

/// The seed's NodePools: `spot` (weight 80, spot only), `on-demand` (weight 50), `gpu` (weight
/// 10, NVIDIA GPU types, tainted `nvidia.com/gpu`) and `gaudi` (weight 5, `dl1.24xlarge`
/// on-demand, tainted `habana.ai/gaudi`); no limits.
pub fn seed_pools() -> Vec<PoolSpec> {
    vec![
        PoolSpec::new("spot")
            .weight(80)
            .requirement(Requirement::in_(labels::CAPACITY_TYPE, ["spot"])),
        PoolSpec::new("on-demand")
            .weight(50)
            .requirement(Requirement::in_(labels::CAPACITY_TYPE, ["on-demand"])),
        PoolSpec::new("gpu")
            .weight(10)
            .requirement(Requirement::in_(
                labels::INSTANCE_GPU_MANUFACTURER,
                ["nvidia"],
            ))
            .taint(NodeTaint::new(
                labels::RESOURCE_NVIDIA_GPU,
                "true",
                TaintEffect::NoSchedule,
            )),
        PoolSpec::new("gaudi")
            .weight(5)
            .requirement(Requirement::in_(labels::INSTANCE_TYPE, ["dl1.24xlarge"]))
            .requirement(Requirement::in_(labels::CAPACITY_TYPE, ["on-demand"]))
            .taint(NodeTaint::new(
                labels::RESOURCE_HABANA_GAUDI,
                "true",
                TaintEffect::NoSchedule,
            )),
    ]
}

/// The seed batch ([`seed_pods`], seed 42) against [`seed_pools`] on `instance_types`, with a
/// node agent DaemonSet (100m, 128Mi) on every node.
pub fn seed_input(n: usize, instance_types: Vec<InstanceType>) -> SolveInput {
    SolveInput {
        pods: seed_pods(n, 42)
            .into_iter()
            .map(std::sync::Arc::new)
            .collect(),
        nodepools: seed_pools(),
        instance_types,
        daemonsets: vec![DaemonSet {
            name: "kube-system/node-agent".into(),
            pod: PodRequest::new("kube-system", "node-agent")
                .cpu_millis(100)
                .memory_mib(128)
                .toleration(Toleration::exists("", None)),
        }],
        ..SolveInput::default()
    }
}

/// What one benchmark run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub pods: usize,
    pub types: usize,
    pub mix: Mix,
    /// `karpenter` (synthetic) or `aws` (the embedded AWS catalogue).
    pub catalog: &'static str,
    pub nodes: usize,
    pub unschedulable: usize,
    pub cost_per_hour: f64,
    pub bound_per_hour: f64,
    pub elapsed_ms: f64,
    /// CPU time of the solving thread (Linux `/proc/thread-self/schedstat`; NaN elsewhere):
    /// on a loaded machine it varies far less than the elapsed time.
    pub cpu_ms: f64,
    pub bound_ms: f64,
    /// Per NodePool: (claims, $/h).
    pub pools: BTreeMap<String, (usize, f64)>,
}

impl Report {
    pub fn gap(&self) -> f64 {
        if self.bound_per_hour > 0.0 {
            self.cost_per_hour / self.bound_per_hour - 1.0
        } else {
            0.0
        }
    }

    /// The report line (`solve pods=.. types=.. mix=.. nodes=.. ...`).
    pub fn line(&self) -> String {
        format!(
            "solve pods={} types={} mix={} nodes={} cost_per_hour={:.2} bound_per_hour={:.2} gap={:.4} elapsed_ms={:.1} cpu_ms={:.1} pods_per_sec={:.0} catalog={} bound_ms={:.1}",
            self.pods,
            self.types,
            self.mix.as_str(),
            self.nodes,
            self.cost_per_hour,
            self.bound_per_hour,
            self.gap(),
            self.elapsed_ms,
            self.cpu_ms,
            self.pods as f64 / (self.elapsed_ms / 1000.0).max(1e-9),
            self.catalog,
            self.bound_ms,
        )
    }
}

/// Builds the input, times one solve and computes the bound.
pub fn run(n: usize, types: usize, mix: Mix) -> Report {
    run_input(&input(n, types, mix), mix, "karpenter", true)
}

/// CPU time the calling thread has run, in ms (NaN where `/proc/thread-self/schedstat` is
/// not readable).
pub fn thread_cpu_ms() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns / 1e6)
}

/// CPU time of the whole process (every thread) so far, in ms (`/proc/self/stat`; NaN where it
/// is not readable).
pub fn process_cpu_ms() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(u), Some(s)) => (u + s) * 10.0,
        _ => f64::NAN,
    }
}

/// Times one solve of `inp` and computes the bound (NaN without `with_bound`: on inputs with
/// tens of thousands of classes it takes minutes).
pub fn run_input(inp: &SolveInput, mix: Mix, catalog: &'static str, with_bound: bool) -> Report {
    let (start, cpu_start) = (Instant::now(), thread_cpu_ms());
    let plan = solve(inp, &SolveOptions::default());
    let elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
    let cpu_ms = thread_cpu_ms() - cpu_start;
    let start = Instant::now();
    let bound_per_hour = if with_bound {
        lower_bound(inp)
    } else {
        f64::NAN
    };
    let bound_ms = start.elapsed().as_secs_f64() * 1000.0;
    let mut pools: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for c in &plan.new_claims {
        let e = pools.entry(c.nodepool.clone()).or_default();
        e.0 += 1;
        e.1 += c.cheapest_price;
    }
    Report {
        pods: inp.pods.len(),
        types: inp.instance_types.len(),
        mix,
        catalog,
        nodes: plan.new_claims.len(),
        unschedulable: plan.unschedulable.len(),
        cost_per_hour: plan.cost_per_hour(),
        bound_per_hour,
        elapsed_ms,
        cpu_ms,
        bound_ms,
        pools,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_are_seeded_and_shaped() {
        let a = pods(100, Mix::Diverse, 42);
        assert_eq!(a, pods(100, Mix::Diverse, 42));
        assert_eq!(
            a.iter().filter(|p| p.labels["app"] == "host-anti").count(),
            20
        );
        assert!(
            pods(10, Mix::Generic, 1)
                .iter()
                .all(|p| p.topology_spread.is_empty())
        );
        // The spread mixes are the generic pods, spread.
        let spread = pods(100, Mix::Spread, 42);
        for (g, s) in pods(100, Mix::Generic, 42).iter().zip(&spread) {
            assert_eq!(g.requests, s.requests);
            assert_eq!(s.topology_spread[0].topology_key, labels::ZONE);
        }
        let cpu: i64 = spread.iter().map(|p| p.requests.cpu_millis()).sum();
        let limited = input(100, 10, Mix::SpreadLimit);
        assert_eq!(limited.nodepools[0].limits.cpu_millis(), 10 * cpu);
    }

    #[test]
    fn a_zone_spread_or_an_unreached_limit_costs_about_the_unconstrained_plan() {
        let generic = run(2_000, 50, Mix::Generic);
        for mix in [Mix::Spread, Mix::SpreadLimit] {
            let r = run(2_000, 50, mix);
            assert_eq!(r.unschedulable, 0);
            assert!(
                r.cost_per_hour <= generic.cost_per_hour * 1.03,
                "{} vs {}",
                r.line(),
                generic.line()
            );
        }
    }

    #[test]
    fn small_run_places_everything_above_the_bound() {
        let r = run(200, 50, Mix::Diverse);
        assert_eq!(r.unschedulable, 0);
        assert!(r.cost_per_hour >= r.bound_per_hour - 1e-9, "{}", r.line());
        assert!(
            r.line()
                .starts_with("solve pods=200 types=50 mix=diverse nodes=")
        );
    }

    #[test]
    fn seed_mix_keeps_its_proportions() {
        let count =
            |pods: &[PodRequest], app: &str| pods.iter().filter(|p| p.labels["app"] == app).count();
        let small = seed_pods(7_500, 42);
        assert_eq!(small.len(), 7_500);
        assert_eq!(count(&small, "spark-executor"), 2_000);
        assert_eq!(count(&small, "inference"), 200);
        assert_eq!(count(&small, "training"), 16);
        assert_eq!(count(&small, "payments"), 300);
        assert_eq!(count(&small, "batch"), 4_984);
        let big = seed_pods(40_000, 42);
        assert_eq!(big.len(), 40_000);
        assert_eq!(count(&big, "spark-executor"), 10_667);
        assert_eq!(count(&big, "training"), 86);
        assert_eq!(seed_pods(3, 1).len(), 3);
    }

    #[test]
    fn seed_mix_on_synthetic_types_places_cpu_pods_above_the_bound() {
        // The synthetic catalogue has no accelerators: only the GPU and Gaudi pods stay pending.
        let r = run(300, 50, Mix::Seed);
        let inp = input(300, 50, Mix::Seed);
        let accelerated = inp
            .pods
            .iter()
            .filter(|p| p.labels["app"] == "inference" || p.labels["app"] == "training")
            .count();
        assert_eq!(r.unschedulable, accelerated);
        assert!(r.cost_per_hour >= r.bound_per_hour - 1e-9, "{}", r.line());
        assert!(r.pools.contains_key("spot") && r.pools.contains_key("on-demand"));
    }

    #[test]
    fn seed_mix_on_the_aws_catalogue_uses_every_pool_above_the_bound() {
        let types = stowage_aws_catalog::embedded(
            "us-east-1",
            &stowage_aws_catalog::CatalogSettings::default(),
        )
        .unwrap();
        let r = run_input(&seed_input(400, types), Mix::Seed, "aws", true);
        assert_eq!(r.unschedulable, 0, "{}", r.line());
        assert!(r.bound_per_hour > 0.0);
        assert!(r.cost_per_hour >= r.bound_per_hour - 1e-9, "{}", r.line());
        // One eight-Gaudi pod per dl1.24xlarge, on-demand; GPU pods on the GPU pool.
        assert_eq!(r.pools["gaudi"].0, seed_share(SEED_GAUDI, 400));
        assert_eq!(
            ["spot", "on-demand", "gpu", "gaudi"].map(|p| r.pools.contains_key(p)),
            [true; 4]
        );
    }
}
