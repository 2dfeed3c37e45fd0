//! `stowage run`: the controllers in a cluster. Settings come from flags or the environment,
//! leader election runs on a Lease (only the holder provisions and disrupts), `/metrics` is
//! served in Prometheus text format and `/healthz` / `/readyz` for probes; logs are JSON by default.

mod client;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use stowage_clock::{SharedClock, SystemClock};
use stowage_cloud::{CloudProvider, InterruptionSource};
use stowage_controller::leader::LeaseConfig;
use stowage_controller::{Context, Leadership, Settings};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Which cloud the controllers drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CloudProviderKind {
    /// AWS (EC2, SSM, IAM, Pricing).
    Aws,
    /// The fake cloud of a simulation served by `stowage sim serve --scenario ...`, reached on
    /// the API server's address (for measuring the controller on its own; never in a cluster).
    Simulated,
}

/// Arguments of `stowage run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster's name (instances are tagged with it).
    #[arg(long, env = "CLUSTER_NAME")]
    pub cluster_name: String,
    /// The cluster's API server URL, written into node bootstrap data.
    #[arg(long, env = "CLUSTER_ENDPOINT", default_value = "")]
    pub cluster_endpoint: String,
    /// The cluster's CA bundle (base64), written into node bootstrap data.
    #[arg(long, env = "CLUSTER_CA_BUNDLE", default_value = "")]
    pub cluster_ca_bundle: String,
    /// The cluster's service CIDR.
    #[arg(long, env = "CLUSTER_CIDR", default_value = "10.100.0.0/16")]
    pub cluster_cidr: String,
    /// The AWS region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// One endpoint URL for every AWS service (a VPC endpoint, or an emulator).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint_url: Option<String>,
    /// A batch of pending pods closes after this long without a new one (e.g. `1s`).
    #[arg(long, env = "BATCH_IDLE_DURATION", default_value = "1s")]
    pub batch_idle_duration: stowage_api::Duration,
    /// A batch of pending pods closes at the latest this long after it opened.
    #[arg(long, env = "BATCH_MAX_DURATION", default_value = "10s")]
    pub batch_max_duration: stowage_api::Duration,
    /// Fraction of memory the hypervisor takes, in [0, 1) (read by the AWS instance catalogue).
    #[arg(long, env = "VM_MEMORY_OVERHEAD_PERCENT", default_value_t = 0.075)]
    pub vm_memory_overhead_percent: f64,
    /// A pod nominated to a NodeClaim that has been Initialized this long and is still
    /// unschedulable is provisioned for again (e.g. `30s`).
    #[arg(long, env = "INITIALIZED_GRACE", default_value = "30s")]
    pub initialized_grace: stowage_api::Duration,
    /// The most instance types one NodeClaim offers the cloud (1..=500; the CRD's limit).
    #[arg(long, env = "MAX_INSTANCE_TYPES", default_value_t = Settings::default().max_instance_types)]
    pub max_instance_types: usize,
    /// The SQS queue (name or URL) EventBridge sends EC2 interruption events to (empty:
    /// interruption handling off); see docs/interruption.md.
    #[arg(long, env = "INTERRUPTION_QUEUE")]
    pub interruption_queue: Option<String>,
    /// Replace a node on an EC2 rebalance recommendation too (off: only count it and say so in
    /// an Event).
    #[arg(long, env = "ACT_ON_REBALANCE_RECOMMENDATION", default_value_t = false, action = clap::ArgAction::Set)]
    pub act_on_rebalance_recommendation: bool,
    /// How long the (instance type, zone) spot offering of an interrupted instance is not
    /// bought again.
    #[arg(long, env = "INTERRUPTED_OFFERING_TTL", default_value = "15m")]
    pub interrupted_offering_ttl: stowage_api::Duration,
    /// Half-life of the learnt spot interruption rate per (instance type, zone).
    #[arg(long, env = "SPOT_INTERRUPTION_HALF_LIFE", default_value = "6h")]
    pub spot_interruption_half_life: stowage_api::Duration,
    /// Node-hours of its own price one spot interruption is reckoned to cost: offerings are
    /// ranked at price x (1 + weight x interruptions per node-hour). 0: pure price.
    #[arg(long, env = "SPOT_INTERRUPTION_COST_WEIGHT", default_value_t = 1.0)]
    pub spot_interruption_cost_weight: f64,
    /// How often the disruption loop looks at the cluster (e.g. `10s`).
    #[arg(long, env = "DISRUPTION_INTERVAL", default_value = "10s")]
    pub disruption_interval: stowage_api::Duration,
    /// How long a consolidation decision waits before it is checked on fresh state and acted on.
    #[arg(long, env = "DISRUPTION_VALIDATION_DELAY", default_value = "15s")]
    pub disruption_validation_delay: stowage_api::Duration,
    /// A disruption whose replacement node is not initialized within this long is undone.
    #[arg(long, env = "DISRUPTION_REPLACEMENT_TIMEOUT", default_value = "20m")]
    pub disruption_replacement_timeout: stowage_api::Duration,
    /// `json` (in-cluster) or `text`.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
    /// A tracing filter (`info`, `stowage_controller=debug`, ...).
    #[arg(long, env = "LOG_LEVEL", default_value = "info", value_parser = parse_log_level)]
    pub log_level: String,
    /// Where `/metrics` is served.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Where `/healthz` and `/readyz` are served.
    #[arg(long, env = "HEALTH_PROBE_ADDR", default_value = "0.0.0.0:8081")]
    pub health_addr: SocketAddr,
    /// Run leader election (off: this replica always acts).
    #[arg(long, env = "LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the leader Lease and of Events about cluster-scoped objects.
    #[arg(long, env = "SYSTEM_NAMESPACE", default_value = "kube-system")]
    pub namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "stowage-leader")]
    pub lease_name: String,
    /// This replica's identity in leader election (default: the pod or host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// The cloud the controllers drive: `aws`, or `simulated` (the fake cloud of `stowage sim
    /// serve --scenario`, for measurements only).
    #[arg(long, env = "CLOUD_PROVIDER", value_enum, default_value = "aws")]
    pub cloud_provider: CloudProviderKind,
    /// Kubernetes API requests per second, client-side (a token bucket; 0 turns it off).
    #[arg(long, env = "KUBE_CLIENT_QPS", default_value_t = stowage_controller::ratelimit::DEFAULT_QPS)]
    pub kube_client_qps: f64,
    /// Kubernetes API requests that may be sent at once above the rate.
    #[arg(long, env = "KUBE_CLIENT_BURST", default_value_t = stowage_controller::ratelimit::DEFAULT_BURST)]
    pub kube_client_burst: u32,
    /// NodeClaim creations (what a batch's pods wait for) sent ahead of the other requests:
    /// they go at once while the shared bucket is at most this many tokens in debt, and the
    /// debt is paid back at the shared rate (0: they wait as any other request).
    #[arg(long, env = "KUBE_CLIENT_CREATE_BURST", default_value_t = stowage_controller::ratelimit::DEFAULT_CREATE_BURST)]
    pub kube_client_create_burst: u32,
    /// How often every initialized NodeClaim is checked for drift (it is also checked within
    /// seconds of a NodePool or node class change).
    #[arg(long, env = "DRIFT_INTERVAL", default_value = "5m")]
    pub drift_interval: stowage_api::Duration,
    /// Threads a disruption round's consolidation probes are solved on (1: one after another;
    /// 0: the cores the process may use, at most 4). The decision is the same whatever the count.
    #[arg(long, env = "PROBE_THREADS", default_value_t = Settings::default().probe_threads)]
    pub probe_threads: usize,
}

/// Installs the tracing subscriber (JSON or text).
/// Parses `--log-level`: comma-separated directives, each a level (`info`) or `target=level`
/// (`stowage_controller=debug`). Anything else is refused, rather than read as a target name
/// that silently turns logging off.
pub fn parse_log_level(s: &str) -> Result<String, String> {
    const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];
    let level_ok = |l: &str| LEVELS.contains(&l.to_ascii_lowercase().as_str());
    for directive in s.split(',').map(str::trim) {
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if directive.is_empty() || !level_ok(level) {
            return Err(format!(
                "invalid log level {directive:?}: use one of {} or target=level, comma-separated",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(s)
        .map_err(|e| format!("invalid log level {s:?}: {e}"))?;
    Ok(s.to_string())
}

pub fn init_tracing(format: LogFormat, filter: &str) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

fn settings(args: &Args, identity: &str) -> anyhow::Result<Settings> {
    let s = Settings {
        cluster_name: args.cluster_name.clone(),
        batch_idle: args.batch_idle_duration.0,
        batch_max: args.batch_max_duration.0,
        max_instance_types: args.max_instance_types,
        initialized_grace: args.initialized_grace.0,
        interruption_queue: args.interruption_queue.clone().filter(|q| !q.is_empty()),
        act_on_rebalance_recommendation: args.act_on_rebalance_recommendation,
        interrupted_offering_ttl: args.interrupted_offering_ttl.0,
        spot_interruption_half_life: args.spot_interruption_half_life.0,
        spot_interruption_cost_weight: args.spot_interruption_cost_weight,
        lease_name: args.lease_name.clone(),
        namespace: args.namespace.clone(),
        identity: identity.to_string(),
        disruption_interval: args.disruption_interval.0,
        disruption_validation_delay: args.disruption_validation_delay.0,
        disruption_replacement_timeout: args.disruption_replacement_timeout.0,
        drift_interval: args.drift_interval.0,
        probe_threads: args.probe_threads,
        ..Settings::default()
    };
    s.validate()?;
    // The AWS provider's catalogue reads this one; the controllers do not.
    if !(0.0..1.0).contains(&args.vm_memory_overhead_percent) {
        anyhow::bail!("invalid setting vm-memory-overhead-percent: must be in [0, 1)");
    }
    if !(args.kube_client_qps.is_finite() && args.kube_client_qps >= 0.0) {
        anyhow::bail!("invalid setting kube-client-qps: must be a number >= 0 (0: no limit)");
    }
    Ok(s)
}

/// The AWS provider and, when a queue is set, the interruption queue it reads.
type Aws = (Arc<dyn CloudProvider>, Option<Arc<dyn InterruptionSource>>);

async fn aws_provider(args: &Args, clock: SharedClock) -> anyhow::Result<Aws> {
    let config = stowage_aws::AwsConfig {
        region: args.region.clone(),
        endpoint_url: args.aws_endpoint_url.clone(),
        ..stowage_aws::AwsConfig::default()
    };
    let clients = stowage_aws::Clients::new(&config).await;
    let queue = match args.interruption_queue.as_deref().filter(|q| !q.is_empty()) {
        Some(q) => {
            let queue =
                stowage_aws::interruption::InterruptionQueue::new(Arc::clone(&clients.sqs), q)
                    .await
                    .with_context(|| format!("failed to find the interruption queue {q}"))?;
            tracing::info!(queue = %queue.url(), "interruption handling on");
            Some(Arc::new(queue) as Arc<dyn InterruptionSource>)
        }
        None => None,
    };
    let cluster = stowage_aws::userdata::ClusterInfo {
        name: args.cluster_name.clone(),
        endpoint: args.cluster_endpoint.clone(),
        certificate_authority: args.cluster_ca_bundle.clone(),
        cidr: args.cluster_cidr.clone(),
    };
    let mut provider_settings = stowage_aws::ProviderSettings::new(cluster, &args.region);
    provider_settings.vm_memory_overhead_percent = args.vm_memory_overhead_percent;
    let provider = stowage_aws::AwsCloudProvider::new(&clients, provider_settings, clock)
        .context("failed to set up the AWS provider")?;
    Ok((Arc::new(provider), queue))
}

async fn metrics(State(ctx): State<Arc<Context>>) -> String {
    ctx.render_metrics()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(ctx): State<Arc<Context>>) -> (StatusCode, &'static str) {
    if ctx.state().is_synced() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "cluster state not synced")
    }
}

async fn serve(addr: SocketAddr, router: Router) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("failed to listen on {addr}"))?;
    axum::serve(listener, router)
        .await
        .with_context(|| format!("server on {addr} failed"))
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    init_tracing(args.log_format, &args.log_level);
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "stowage".to_string());
    let settings = settings(&args, &identity)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let config = kube::Config::infer()
        .await
        .context("failed to find a Kubernetes configuration")?;
    let limit = stowage_controller::ratelimit::RateLimitLayer::new(
        args.kube_client_qps,
        args.kube_client_burst,
    );
    // NodeClaim creations on a client of their own (a client sends in order: on the shared
    // one they would queue behind every waiting request), on the same bucket, going ahead.
    let create_client = client::builder(config.clone())
        .context("failed to build a Kubernetes client")?
        .with_layer(&limit.ahead(args.kube_client_create_burst))
        .build();
    let client = client::builder(config)
        .context("failed to build a Kubernetes client")?
        .with_layer(&limit)
        .build();
    let (cloud, queue): Aws = match args.cloud_provider {
        CloudProviderKind::Aws => aws_provider(&args, clock.clone()).await?,
        // The simulated cloud and its interruption queue, both over the bridge.
        CloudProviderKind::Simulated => {
            let remote = Arc::new(
                stowage_sim::cloudbridge::RemoteCloud::connect(client.clone())
                    .await
                    .context("failed to reach the simulated cloud (is `stowage sim serve --scenario ...` running?)")?,
            );
            (remote.clone(), Some(remote))
        }
    };
    let mut ctx =
        Context::new(client, cloud, clock, settings.clone()).with_create_client(create_client);
    if let Some(queue) = queue {
        ctx = ctx.with_interruption_source(queue);
    }
    let ctx = Arc::new(ctx);
    let leadership = if args.leader_elect {
        Leadership::Lease(LeaseConfig::new(
            &settings.lease_name,
            &settings.namespace,
            &settings.identity,
        ))
    } else {
        Leadership::Always
    };
    tracing::info!(cluster = %settings.cluster_name, identity = %settings.identity, leader_elect = args.leader_elect, "starting controllers");
    let running = stowage_controller::start(ctx.clone(), leadership);
    let metrics_router = Router::new()
        .route("/metrics", get(metrics))
        .with_state(ctx.clone());
    let health_router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(ctx.clone());
    let result = tokio::select! {
        r = serve(args.metrics_addr, metrics_router) => r,
        r = serve(args.health_addr, health_router) => r,
        signal = shutdown_signal() => {
            let signal = signal?;
            tracing::info!(signal, "shutting down");
            Ok(())
        }
    };
    // Stop taking work and let a standby take over at once rather than after the lease expires;
    // bounded so the pod exits well within its termination grace period.
    if tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown did not finish within 10s; exiting anyway");
    }
    result
}

/// Resolves with the signal's name on SIGTERM (what Kubernetes sends on every rollout and node
/// drain) or SIGINT.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("failed to listen for SIGTERM")?;
        tokio::select! {
            _ = term.recv() => Ok("SIGTERM"),
            r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT").context("failed to listen for SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("failed to listen for Ctrl-C")?;
        Ok("SIGINT")
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["stowage", "--cluster-name", "demo"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn settings_refuse_what_nothing_reads_or_what_is_out_of_range() {
        let s = settings(&args(&[]), "replica-1").unwrap();
        assert_eq!(s.identity, "replica-1");
        assert_eq!(s.initialized_grace, Settings::default().initialized_grace);
        let s = settings(&args(&["--initialized-grace", "2m"]), "r").unwrap();
        assert_eq!(s.initialized_grace, Duration::from_secs(120));
        assert_eq!(s.interruption_queue, None);
        // An empty queue is the documented "off".
        assert!(settings(&args(&["--interruption-queue", ""]), "r").is_ok());
        // Issue 13: a queue was refused as "not supported yet"; it is read now.
        let s = settings(&args(&["--interruption-queue", "q"]), "r").unwrap();
        assert_eq!(s.interruption_queue.as_deref(), Some("q"));
        let s = settings(
            &args(&[
                "--spot-interruption-half-life",
                "2h",
                "--spot-interruption-cost-weight",
                "0",
                "--act-on-rebalance-recommendation",
                "true",
            ]),
            "r",
        )
        .unwrap();
        assert_eq!(s.spot_interruption_half_life, Duration::from_secs(7200));
        assert_eq!(s.spot_interruption_cost_weight, 0.0);
        assert!(s.act_on_rebalance_recommendation);
        let err = settings(&args(&["--spot-interruption-cost-weight=-1"]), "r").unwrap_err();
        assert!(format!("{err:#}").contains("cost-weight"), "{err:#}");
        let err = settings(&args(&["--vm-memory-overhead-percent", "1.5"]), "r").unwrap_err();
        assert!(format!("{err:#}").contains("vm-memory"), "{err:#}");
        let err = settings(&args(&["--kube-client-qps=-1"]), "r").unwrap_err();
        assert!(format!("{err:#}").contains("kube-client-qps"), "{err:#}");
        assert!(settings(&args(&["--kube-client-qps", "0"]), "r").is_ok());
        let a = args(&[]);
        assert_eq!(a.cloud_provider, CloudProviderKind::Aws);
        assert_eq!(
            (a.kube_client_qps, a.kube_client_burst),
            (
                stowage_controller::ratelimit::DEFAULT_QPS,
                stowage_controller::ratelimit::DEFAULT_BURST
            )
        );
        assert_eq!(s.drift_interval, Settings::default().drift_interval);
        let s = settings(&args(&["--drift-interval", "1m"]), "r").unwrap();
        assert_eq!(s.drift_interval, Duration::from_secs(60));
        let err = settings(&args(&["--drift-interval", "0s"]), "r").unwrap_err();
        assert!(format!("{err:#}").contains("drift-interval"), "{err:#}");
        let s = settings(&args(&[]), "r").unwrap();
        assert_eq!(s.probe_threads, 0);
        assert!((1..=4).contains(&s.probe_threads()));
        let s = settings(&args(&["--probe-threads", "3"]), "r").unwrap();
        assert_eq!((s.probe_threads, s.probe_threads()), (3, 3));
    }

    #[test]
    fn log_levels_are_levels_or_target_levels() {
        for ok in [
            "info",
            "WARN",
            "off",
            "stowage_controller=debug",
            "info,kube=warn",
        ] {
            assert_eq!(parse_log_level(ok).as_deref(), Ok(ok));
        }
        for bad in ["verbose", "", "info,", "stowage=loud", "=debug x"] {
            let err = parse_log_level(bad).unwrap_err();
            assert!(err.contains("invalid log level"), "{bad}: {err}");
        }
    }
}
