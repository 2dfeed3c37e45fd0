//! `stowage simulate`: the real controllers against the simulated cluster and the fake cloud, in
//! virtual time, with a summary table (or `--json`) and an optional HTML report.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use stowage_controller::Context;
use stowage_sim::report::SolverFigures;
use stowage_sim::{Scenario, SimEnv, Simulation};

use super::run::{LogFormat, init_tracing};

/// Arguments of `stowage simulate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A built-in scenario (`quickstart`, `seed`, `seed-full`) or a scenario file.
    #[arg(long, default_value = "quickstart")]
    pub scenario: String,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print one JSON object instead of the summary table.
    #[arg(long)]
    pub json: bool,
    /// A tracing filter for the controllers' logs (on stderr).
    #[arg(long, env = "LOG_LEVEL", default_value = "warn", value_parser = super::run::parse_log_level)]
    pub log_level: String,
    /// Region of the embedded AWS catalogue for scenarios that use it.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
}

/// The controllers as the simulator's plug-in: one always-leader replica until the scenario ends.
/// Their context is left in `handoff` for the report's solver figures.
async fn controllers(env: SimEnv, handoff: Arc<std::sync::Mutex<Option<Arc<Context>>>>) {
    let ctx = Arc::new(Context::simulated(
        env.client.clone(),
        env.provider.clone(),
        env.clock.clone(),
        env.cloud.clone(),
    ));
    *handoff.lock().unwrap_or_else(|e| e.into_inner()) = Some(ctx.clone());
    stowage_controller::run_until(ctx, env.shutdown.clone()).await;
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    init_tracing(LogFormat::Text, &args.log_level);
    let scenario = Scenario::load(&args.scenario)
        .with_context(|| format!("failed to load scenario {}", args.scenario))
        .map_err(super::bad_input)?;
    let options = super::scenario::options_for(&scenario, &args.region)?;
    let simulation = Simulation::new(scenario, options);
    let handoff = Arc::new(std::sync::Mutex::new(None));
    let plug = handoff.clone();
    let mut report = tokio::task::spawn_blocking(move || {
        simulation.run_blocking(move |env| controllers(env, plug))
    })
    .await
    .context("the simulation task failed")?
    .context("the simulation failed")?;
    if let Some(ctx) = handoff.lock().unwrap_or_else(|e| e.into_inner()).take() {
        report.solver = solver_figures(&ctx.passes());
    }
    super::scenario::emit(&report, args.json, args.report.as_deref())
}

/// The report's solver figures from the provisioning passes.
fn solver_figures(passes: &[stowage_controller::provisioning::PassRecord]) -> SolverFigures {
    let solves: Vec<f64> = passes.iter().map(|p| p.solve_seconds).collect();
    let largest = passes
        .iter()
        .max_by_key(|p| p.pods)
        .cloned()
        .unwrap_or_default();
    SolverFigures {
        batches: passes.len(),
        p50_seconds: stowage_sim::report::percentile(&solves, 50.0),
        max_seconds: solves.iter().copied().fold(0.0, f64::max),
        largest_batch_pods: largest.pods,
        largest_batch_claims: largest.claims,
        largest_batch_seconds: largest.total_seconds,
    }
}
