//! `stowage crds`.

/// Arguments of `stowage crds`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`stowage crds` is not built yet")
}
