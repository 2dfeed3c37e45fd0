//! `stowage simulate` without the AWS SDK: the controllers against the simulated cluster in
//! virtual time, as the binary runs them, for profiling the simulator and the controllers in a
//! release build of this crate alone (the binary's build needs the SDK).
//!
//! ```sh
//! cargo run --release -p stowage-controller --example simulate -- seed-full [--json] [--report out.html]
//! ```
// An example's failures are the run's failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use stowage_controller::Context;
use stowage_sim::report::SolverFigures;
use stowage_sim::scenario::CatalogSource;
use stowage_sim::{Scenario, SimEnv, SimOptions, Simulation};

/// The `stowage` binary's allocator, so the figures are those `stowage simulate` gives.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Handoff = Arc<std::sync::Mutex<Option<Arc<Context>>>>;

/// The controllers as `stowage simulate` plugs them in (interruptions through the fake cloud).
async fn controllers(env: SimEnv, handoff: Handoff) {
    let ctx = Arc::new(Context::simulated(
        env.client.clone(),
        env.provider.clone(),
        env.clock.clone(),
        env.cloud.clone(),
    ));
    *handoff.lock().unwrap() = Some(ctx.clone());
    stowage_controller::run_until(ctx, env.shutdown.clone()).await;
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut name = "seed".to_string();
    let mut json = false;
    let mut html = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--report" => html = args.next(),
            _ => name = a,
        }
    }
    let scenario = Scenario::load(&name).expect("a scenario");
    let mut options = SimOptions::default();
    // Progress on stderr every 5 minutes of virtual time.
    let wall = std::time::Instant::now();
    options.on_sample = Some(stowage_sim::runner::OnSample(Arc::new(move |s| {
        if (s.t as u64).is_multiple_of(300) {
            eprintln!(
                "t={:>5.0}s wall={:>6.1}s nodes={} pending={} running={}",
                s.t,
                wall.elapsed().as_secs_f64(),
                s.nodes(),
                s.pending_pods,
                s.running_pods
            );
        }
    })));
    if scenario.catalog.source == CatalogSource::Aws {
        options.aws_catalog = Some(
            stowage_aws_catalog::embedded(
                "us-east-1",
                &stowage_aws_catalog::CatalogSettings::default(),
            )
            .expect("the embedded catalogue"),
        );
    }
    let handoff: Handoff = Arc::default();
    let plug = handoff.clone();
    let started = std::time::Instant::now();
    let mut report = Simulation::new(scenario, options)
        .run_blocking(move |env| controllers(env, plug))
        .expect("the simulation ran");
    if let Some(ctx) = handoff.lock().unwrap().take() {
        let passes = ctx.passes();
        let solves: Vec<f64> = passes.iter().map(|p| p.solve_seconds).collect();
        let largest = passes
            .iter()
            .max_by_key(|p| p.pods)
            .cloned()
            .unwrap_or_default();
        report.solver = SolverFigures {
            batches: passes.len(),
            p50_seconds: stowage_sim::report::percentile(&solves, 50.0),
            max_seconds: solves.iter().copied().fold(0.0, f64::max),
            largest_batch_pods: largest.pods,
            largest_batch_claims: largest.claims,
            largest_batch_seconds: largest.total_seconds,
        };
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).unwrap()
        );
    } else {
        println!("{}", report.summary_table());
    }
    if let Some(path) = html {
        std::fs::write(&path, report.to_html()).unwrap();
    }
    eprintln!("wall {:.1} s", started.elapsed().as_secs_f64());
}
