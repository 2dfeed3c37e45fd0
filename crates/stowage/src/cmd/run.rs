//! `stowage run`.

/// Arguments of `stowage run`.
#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`stowage run` is not built yet")
}
