//! `stowage sim`: the simulated cluster on its own — serve its API server over HTTP for kubectl
//! and the real binary, or run a scenario without controllers (pods stay pending).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use stowage_sim::{ApiServer, Scenario, Simulation};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Serve the simulated Kubernetes API server over HTTP and write a kubeconfig for it.
    Serve(ServeArgs),
    /// Run a scenario in virtual time without controllers and report (pods stay pending).
    Run(RunArgs),
    /// Print a built-in scenario's YAML (a starting point for your own).
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TCP port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Where to write the kubeconfig that points at the server.
    #[arg(long, default_value = "stowage-sim.kubeconfig")]
    pub kubeconfig: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A built-in scenario (`quickstart`, `seed`) or a scenario file.
    #[arg(long, default_value = "quickstart")]
    pub scenario: String,
    /// Write a self-contained HTML report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print one JSON object instead of the summary table.
    #[arg(long)]
    pub json: bool,
    /// Region of the embedded AWS catalogue for scenarios that use it.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// The built-in scenario.
    #[arg(default_value = "quickstart")]
    pub name: String,
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(args).await,
        Command::Run(args) => run_scenario(args).await,
        Command::Show(args) => {
            let (_, yaml) = stowage_sim::scenario::BUILTIN
                .iter()
                .find(|(n, _)| *n == args.name)
                .ok_or_else(|| stowage_sim::scenario::Error::FindBuiltin(args.name.clone()))?;
            print!("{yaml}");
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let server = ApiServer::new(Arc::new(stowage_clock::SystemClock));
    let listener = tokio::net::TcpListener::bind((args.bind.as_str(), args.port))
        .await
        .with_context(|| format!("failed to listen on {}:{}", args.bind, args.port))?;
    let addr = listener
        .local_addr()
        .context("failed to read the listening address")?;
    let url = format!("http://{addr}");
    ApiServer::write_kubeconfig(&url, &args.kubeconfig)?;
    eprintln!(
        "serving the simulated API server on {url}; kubeconfig written to {} (Ctrl-C to stop)",
        args.kubeconfig.display()
    );
    tokio::select! {
        r = server.serve(listener) => r.context("the API server stopped")?,
        r = tokio::signal::ctrl_c() => r.context("failed to wait for Ctrl-C")?,
    }
    Ok(())
}

async fn run_scenario(args: RunArgs) -> anyhow::Result<()> {
    let scenario = Scenario::load(&args.scenario).map_err(|e| super::bad_input(e.into()))?;
    let options = super::scenario::options_for(&scenario, &args.region)?;
    let simulation = Simulation::new(scenario, options);
    let report = tokio::task::spawn_blocking(move || simulation.run_blocking_without_controllers())
        .await
        .context("the simulation task failed")??;
    super::scenario::emit(&report, args.json, args.report.as_deref())
}
