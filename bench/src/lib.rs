//! Benchmark workloads for the solver: seeded pod mixes in the shape of Karpenter's scheduling
//! benchmark, and a runner that reports cost against the lower bound.
//!
//! Key decision: no RNG crate; a SplitMix64 generator keeps every run with the same seed
//! identical across platforms and versions.

use std::time::Instant;

use stowage_api::labels;
use stowage_solver::bound::lower_bound;
use stowage_solver::catalog::karpenter_shape;
use stowage_solver::{PodRequest, PoolSpec, SolveInput, SolveOptions, WhenUnsatisfiable, solve};

/// Which pods a benchmark generates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// Only generic pods (no topology constraints).
    Generic,
    /// One fifth each: generic, zonal spread, hostname spread, zonal self-affinity, hostname
    /// self-anti-affinity.
    Diverse,
}

impl Mix {
    pub fn as_str(self) -> &'static str {
        match self {
            Mix::Generic => "generic",
            Mix::Diverse => "diverse",
        }
    }

    pub fn parse(s: &str) -> Option<Mix> {
        match s {
            "generic" => Some(Mix::Generic),
            "diverse" => Some(Mix::Diverse),
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
                Mix::Generic => 0,
                Mix::Diverse => i * 5 / n.max(1),
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

/// The benchmark's input: one NodePool, `types` synthetic instance types, `n` pods.
pub fn input(n: usize, types: usize, mix: Mix) -> SolveInput {
    SolveInput {
        pods: pods(n, mix, 42),
        nodepools: vec![PoolSpec::new("default")],
        instance_types: karpenter_shape(types),
        ..SolveInput::default()
    }
}

/// What one benchmark run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub pods: usize,
    pub types: usize,
    pub mix: Mix,
    pub nodes: usize,
    pub unschedulable: usize,
    pub cost_per_hour: f64,
    pub bound_per_hour: f64,
    pub elapsed_ms: f64,
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
            "solve pods={} types={} mix={} nodes={} cost_per_hour={:.2} bound_per_hour={:.2} gap={:.4} elapsed_ms={:.1} pods_per_sec={:.0}",
            self.pods,
            self.types,
            self.mix.as_str(),
            self.nodes,
            self.cost_per_hour,
            self.bound_per_hour,
            self.gap(),
            self.elapsed_ms,
            self.pods as f64 / (self.elapsed_ms / 1000.0).max(1e-9),
        )
    }
}

/// Builds the input, times one solve and computes the bound.
pub fn run(n: usize, types: usize, mix: Mix) -> Report {
    let inp = input(n, types, mix);
    let start = Instant::now();
    let plan = solve(&inp, &SolveOptions::default());
    let elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
    Report {
        pods: n,
        types,
        mix,
        nodes: plan.new_claims.len(),
        unschedulable: plan.unschedulable.len(),
        cost_per_hour: plan.cost_per_hour(),
        bound_per_hour: lower_bound(&inp),
        elapsed_ms,
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
}
