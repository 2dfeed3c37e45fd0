//! `stowage plan`.

/// Arguments of `stowage plan`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`stowage plan` is not built yet")
}
