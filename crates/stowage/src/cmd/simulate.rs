//! `stowage simulate`.

/// Arguments of `stowage simulate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`stowage simulate` is not built yet")
}
