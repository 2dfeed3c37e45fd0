//! `stowage simulate`: the real controllers against the simulated cluster and the fake cloud, in
//! virtual time, with a summary table (or `--json`) and an optional HTML report.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use stowage_controller::{Context, Leadership, Settings};
use stowage_sim::{Scenario, SimEnv, Simulation};

use super::run::{LogFormat, init_tracing};

/// Arguments of `stowage simulate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A built-in scenario (`quickstart`, `seed`) or a scenario file.
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
async fn controllers(env: SimEnv) {
    let settings = Settings {
        cluster_name: "sim".to_string(),
        ..Settings::default()
    };
    // Interruption warnings reach the controllers through the fake cloud's queue, as they reach
    // `stowage run` through SQS.
    let ctx = Arc::new(
        Context::new(
            env.client.clone(),
            env.provider.clone(),
            env.clock.clone(),
            settings,
        )
        .with_interruption_source(env.cloud.clone()),
    );
    let running = stowage_controller::start(ctx, Leadership::Always);
    let mut shutdown = env.shutdown.clone();
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
    drop(running);
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    init_tracing(LogFormat::Text, &args.log_level);
    let scenario = Scenario::load(&args.scenario)
        .with_context(|| format!("failed to load scenario {}", args.scenario))
        .map_err(super::bad_input)?;
    let options = super::scenario::options_for(&scenario, &args.region)?;
    let simulation = Simulation::new(scenario, options);
    let report = tokio::task::spawn_blocking(move || simulation.run_blocking(controllers))
        .await
        .context("the simulation task failed")?
        .context("the simulation failed")?;
    super::scenario::emit(&report, args.json, args.report.as_deref())
}
