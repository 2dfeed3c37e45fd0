//! What `stowage simulate` and `stowage sim run` share: the simulation options a scenario needs
//! (the embedded AWS catalogue for scenarios that ask for it) and how a report is printed.

use std::path::Path;

use anyhow::Context as _;
use stowage_sim::scenario::CatalogSource;
use stowage_sim::{Report, Scenario, SimOptions};

/// Simulation options for `scenario`, loading the embedded AWS catalogue of `region` when the
/// scenario's catalogue source is `aws`.
pub fn options_for(scenario: &Scenario, region: &str) -> anyhow::Result<SimOptions> {
    let mut options = SimOptions::default();
    if scenario.catalog.source == CatalogSource::Aws {
        let catalog =
            stowage_aws_catalog::embedded(region, &stowage_aws_catalog::CatalogSettings::default())
                .context("failed to load the embedded AWS catalogue")?;
        options.aws_catalog = Some(catalog);
    }
    Ok(options)
}

/// Prints the summary table (or one JSON object) and writes the HTML report if asked.
pub fn emit(report: &Report, json: bool, html: Option<&Path>) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        println!("{}", report.summary_table());
    }
    if let Some(path) = html {
        std::fs::write(path, report.to_html())
            .with_context(|| format!("failed to write {}", path.display()))?;
        if !json {
            println!("report written to {}", path.display());
        }
    }
    Ok(())
}
