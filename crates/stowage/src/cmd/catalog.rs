//! `stowage catalog`: regenerate the embedded instance catalogue from the EC2 API
//! (`generate`), regenerate the embedded on-demand fallback price table from a CSV (`prices`), and
//! print the embedded catalogue of a region (`show`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use stowage_api::CapacityType;
use stowage_aws::catalog;
use stowage_aws::sdk::{AwsConfig, Clients};
use stowage_aws_catalog::pricing::FallbackTable;
use stowage_aws_catalog::{CatalogSettings, EmbeddedCatalog, InstanceTypeRecord};
use stowage_solver::model::resource;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Regenerate the embedded catalogue from DescribeInstanceTypes and
    /// DescribeInstanceTypeOfferings (credentials from the standard AWS chain).
    Generate(GenerateArgs),
    /// Regenerate the on-demand fallback price table from a `region,instance_type,usd_per_hour` CSV.
    Prices(PricesArgs),
    /// Print the embedded catalogue of a region: capacity, allocatable and prices per type.
    Show(ShowArgs),
}

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// One endpoint URL for EC2 (a VPC endpoint or an emulator); AWS's public one if absent.
    #[arg(long, env = "STOWAGE_AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// Regions to include (repeat the flag); each region's zones and offerings are recorded.
    #[arg(long = "region", default_values_t = ["us-east-1".to_string(), "us-west-2".to_string()])]
    pub regions: Vec<String>,
    /// Where to write the embedded catalogue (e.g. crates/aws-catalog/data/catalog.json).
    #[arg(long)]
    pub out: PathBuf,
    /// The `source` line recorded in the embedded catalogue.
    #[arg(
        long,
        default_value = "EC2 DescribeInstanceTypes + DescribeInstanceTypeOfferings"
    )]
    pub source: String,
    /// Do not add dl1.24xlarge from its published figures (added by default: the emulator lacks it).
    #[arg(long)]
    pub no_dl1: bool,
}

#[derive(Debug, clap::Args)]
pub struct PricesArgs {
    /// The CSV (`region,instance_type,usd_per_hour`, with that header).
    #[arg(long)]
    pub csv: PathBuf,
    /// Where to write the table (e.g. crates/aws-catalog/data/on-demand-prices.json).
    #[arg(long)]
    pub out: PathBuf,
    /// The `source` line recorded in the table.
    #[arg(long, default_value = stowage_aws_catalog::pricing::fallback::DEFAULT_SOURCE)]
    pub source: String,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Only these instance types (repeat the flag); all if absent.
    #[arg(long = "type")]
    pub types: Vec<String>,
    /// Print the solver's view as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Generate(args) => generate(args).await,
        Command::Prices(args) => prices(args),
        Command::Show(args) => show(args),
    }
}

async fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.regions.is_empty(),
        "--region: at least one region is needed"
    );
    let mut records: BTreeMap<String, InstanceTypeRecord> = BTreeMap::new();
    let mut regions = BTreeMap::new();
    for region in &args.regions {
        let config = AwsConfig {
            region: region.clone(),
            endpoint_url: args.endpoint_url.clone(),
            ..AwsConfig::default()
        };
        let clients = Clients::new(&config).await;
        let fetched = catalog::fetch(clients.ec2.as_ref())
            .await
            .with_context(|| format!("failed to read the instance catalogue of {region}"))?;
        eprintln!(
            "{region}: {} instance types ({} skipped as not launchable), {} offered",
            fetched.records.len(),
            fetched.skipped,
            fetched.offerings.len()
        );
        for r in fetched.records {
            records.entry(r.name.clone()).or_insert(r);
        }
        regions.insert(region.clone(), fetched.offerings);
    }
    let mut embedded =
        EmbeddedCatalog::from_regions(&args.source, records.into_values().collect(), regions);
    if !args.no_dl1 {
        let names: Vec<&str> = args.regions.iter().map(String::as_str).collect();
        embedded.add_everywhere(InstanceTypeRecord::dl1_24xlarge(), &names);
    }
    let text = embedded.to_json()?;
    std::fs::write(&args.out, &text)
        .with_context(|| format!("failed to write {}", args.out.display()))?;
    eprintln!(
        "wrote {} ({} types, {} bytes)",
        args.out.display(),
        embedded.types.len(),
        text.len()
    );
    Ok(())
}

fn prices(args: PricesArgs) -> anyhow::Result<()> {
    let csv = std::fs::read_to_string(&args.csv)
        .with_context(|| format!("failed to read {}", args.csv.display()))?;
    let table = FallbackTable::from_csv(&csv, &args.csv.display().to_string(), &args.source)?;
    let text = table.to_json();
    std::fs::write(&args.out, &text)
        .with_context(|| format!("failed to write {}", args.out.display()))?;
    let count: usize = table.regions.values().map(BTreeMap::len).sum();
    eprintln!("wrote {} ({count} prices)", args.out.display());
    Ok(())
}

fn show(args: ShowArgs) -> anyhow::Result<()> {
    let mut types = stowage_aws_catalog::embedded(&args.region, &CatalogSettings::default())?;
    if !args.types.is_empty() {
        types.retain(|t| args.types.contains(&t.name));
        if let Some(missing) = args
            .types
            .iter()
            .find(|n| !types.iter().any(|t| &t.name == *n))
        {
            anyhow::bail!(
                "--type {missing}: not in the embedded catalogue of {}",
                args.region
            );
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&types)?);
        return Ok(());
    }
    println!(
        "{:<20} {:>5} {:>10} {:>5} {:>10} {:>12} {:>10} {:>10}",
        "TYPE", "VCPU", "MEM_MIB", "PODS", "ALLOC_CPU", "ALLOC_MEM_MIB", "OD_USD_H", "SPOT_MIN"
    );
    for t in &types {
        let a = t.allocatable();
        let price = |ct: CapacityType| {
            t.offerings
                .iter()
                .filter(|o| o.capacity_type == ct)
                .map(|o| o.price_per_hour)
                .min_by(f64::total_cmp)
                .map_or_else(|| "-".to_string(), |p| format!("{p:.4}"))
        };
        println!(
            "{:<20} {:>5} {:>10} {:>5} {:>9}m {:>12} {:>10} {:>10}",
            t.name,
            t.capacity.cpu_millis() / 1000,
            t.labels
                .get(stowage_api::labels::INSTANCE_MEMORY)
                .map_or("-", String::as_str),
            t.capacity.pods(),
            a.cpu_millis(),
            a.get(resource::MEMORY) >> 20,
            price(CapacityType::OnDemand),
            price(CapacityType::Spot),
        );
    }
    Ok(())
}
