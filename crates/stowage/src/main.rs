//! The `stowage` binary: CLI, settings, telemetry and wiring. The only crate that uses `anyhow`.

mod cmd;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Stowage: a Kubernetes node provisioner for AWS.
#[derive(Debug, Parser)]
#[command(name = "stowage", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controllers in a cluster (leader-elected; provisions, terminates, collects garbage).
    Run(cmd::run::Args),
    /// Run the real controllers against a simulated cluster in virtual time and report.
    Simulate(cmd::simulate::Args),
    /// Print what would be bought for a set of pending pods: offline from files, or from a live
    /// cluster (--kubeconfig) with what migrating its Cluster Autoscaler nodes would save.
    Plan(cmd::plan::Args),
    /// Turn Cluster Autoscaler node groups (eksctl, ASGs, priority expander) into NodePools and
    /// EC2NodeClasses, with a report of what could not be mapped.
    Migrate(cmd::migrate::Args),
    /// Print every CustomResourceDefinition Stowage serves, as multi-document YAML.
    Crds(cmd::crds::Args),
    /// Write the generated reference docs (CRD fields, metrics, settings) into docs/reference.
    Reference(cmd::reference::Args),
    /// The simulated cluster on its own.
    #[command(subcommand)]
    Sim(cmd::sim::Command),
    /// Instance catalogue tools (regenerate the embedded catalogue from the EC2 API).
    #[command(subcommand)]
    Catalog(cmd::catalog::Command),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // One TLS crypto provider for the whole process (kube and the AWS SDK both use rustls/ring).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cmd::run::run(args).await,
        Command::Simulate(args) => cmd::simulate::run(args).await,
        Command::Plan(args) => cmd::plan::run(args).await,
        Command::Migrate(args) => cmd::migrate::run(args).await,
        Command::Crds(args) => cmd::crds::run(args).await,
        Command::Reference(args) => cmd::reference::run(args).await,
        Command::Sim(command) => cmd::sim::run(command).await,
        Command::Catalog(command) => cmd::catalog::run(command).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(cmd::exit_code(&err))
        }
    }
}
