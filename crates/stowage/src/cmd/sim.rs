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
    /// Also run this scenario (built-in or file) in real time, its fake cloud served to a
    /// controller process of its own (`stowage run --cloud-provider simulated`); prints the
    /// report when the scenario ends. Without it, the server starts empty and runs until Ctrl-C.
    #[arg(long)]
    pub scenario: Option<String>,
    /// With --scenario: run it this many times faster than written (every duration divided).
    #[arg(long, default_value_t = 1, requires = "scenario")]
    pub speed: u32,
    /// With --scenario: print the JSON report instead of the summary table.
    #[arg(long, requires = "scenario")]
    pub json: bool,
    /// Region of the embedded AWS catalogue for scenarios that use it.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
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
    if args.scenario.is_some() {
        return serve_scenario(args).await;
    }
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

/// `sim serve --scenario`: the simulation on the wall clock (a runtime that is not paused, on a
/// thread of its own), its API server and fake cloud on `--port`, no controllers in process.
async fn serve_scenario(args: ServeArgs) -> anyhow::Result<()> {
    let name = args.scenario.clone().unwrap_or_default();
    let scenario = Scenario::load(&name)
        .map_err(|e| super::bad_input(e.into()))?
        .sped_up(args.speed);
    let mut options = super::scenario::options_for(&scenario, &args.region)?;
    // The controllers read the wall clock: the simulation's time starts now.
    options.epoch = stowage_clock::Clock::now(&stowage_clock::SystemClock);
    let started = std::time::Instant::now();
    // How far behind its timeline the simulation runs: a sample is due every `sample_every`;
    // `late` is how long after that it was taken (the wall clock cannot be paused, so a
    // simulator that does not keep up shows here, not in a slower virtual clock).
    let every = scenario.sample_every.as_std().as_secs_f64();
    let taken = std::sync::atomic::AtomicU64::new(0);
    options.on_sample = Some(stowage_sim::runner::OnSample(Arc::new(move |s| {
        let k = taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        eprintln!(
            "t={:>6.0}s wall={:>6.1}s late={:.1}s nodes={} pods={} (pending {}) vcpu={:.0} nodeclaims={}",
            s.t,
            started.elapsed().as_secs_f64(),
            (s.t - k as f64 * every).max(0.0),
            s.nodes(),
            s.pending_pods + s.running_pods,
            s.pending_pods,
            s.vcpu(),
            s.nodeclaims
        );
    })));
    let listener = std::net::TcpListener::bind((args.bind.as_str(), args.port))
        .with_context(|| format!("failed to listen on {}:{}", args.bind, args.port))?;
    listener
        .set_nonblocking(true)
        .context("failed to set the listener non-blocking")?;
    let url = format!(
        "http://{}",
        listener
            .local_addr()
            .context("failed to read the listening address")?
    );
    ApiServer::write_kubeconfig(&url, &args.kubeconfig)?;
    eprintln!(
        "serving scenario {name} (speed {}) on {url}; kubeconfig written to {}; start the controllers with: KUBECONFIG={} stowage run --cluster-name sim --cloud-provider simulated --leader-elect false",
        args.speed,
        args.kubeconfig.display(),
        args.kubeconfig.display()
    );
    let simulation = Simulation::new(scenario, options);
    let report = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("failed to start the simulation runtime")?;
        rt.block_on(simulation.run(move |env| async move {
            env.api.attach_cloud(env.provider.clone());
            // Spot interruption warnings reach the controller process as `stowage simulate`'s
            // controllers read them: from the fake cloud's queue.
            env.api.attach_interruptions(env.cloud.clone());
            // The API server answers on a runtime of its own (SERVE_THREADS workers), not on
            // the thread that steps the cluster: at seed-full's size a controller's requests
            // waited behind the scheduler's cycles, and the cycles behind the requests.
            let api = env.api.clone();
            let mut shutdown = env.shutdown.clone();
            let served = std::thread::Builder::new()
                .name("sim-apiserver".into())
                .spawn(move || serve_apart(api, listener, &mut shutdown));
            if let Err(e) = served {
                tracing::error!(error = %e, "failed to start the API server's thread");
            }
        }))
        .context("the simulation failed")
    })
    .await
    .context("the simulation task failed")??;
    super::scenario::emit(&report, args.json, None)
}

/// Worker threads of the API server's runtime under `sim serve --scenario`.
const SERVE_THREADS: usize = 2;

/// Serves `api` on `listener` from a multi-thread runtime of its own until `shutdown` turns
/// true (the scenario's end) or the server stops.
fn serve_apart(
    api: ApiServer,
    listener: std::net::TcpListener,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(SERVE_THREADS)
        .thread_name("sim-apiserver")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "failed to start the API server's runtime");
            return;
        }
    };
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "failed to serve the listener");
                return;
            }
        };
        tokio::select! {
            r = api.serve(listener) => {
                if let Err(e) = r {
                    tracing::error!(error = %e, "the API server stopped");
                }
            }
            _ = shutdown.wait_for(|done| *done) => {}
        }
    });
    // Open watch streams end with the runtime.
    rt.shutdown_background();
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
