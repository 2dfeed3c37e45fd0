//! Criterion benchmark of the solve on the Karpenter-shaped catalogue (400 types), diverse mix.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use stowage_bench::{Mix, input};
use stowage_solver::{SolveOptions, solve};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("solve_diverse_400_types");
    group.sample_size(10);
    for n in [1usize, 100, 1_000, 5_000, 20_000, 50_000] {
        let inp = input(n, 400, Mix::Diverse);
        group.bench_with_input(BenchmarkId::from_parameter(n), &inp, |b, inp| {
            b.iter(|| solve(inp, &SolveOptions::default()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
