//! `stowage crds`: print every CustomResourceDefinition Stowage serves, or write one file per CRD.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

/// Arguments of `stowage crds`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write one file per CRD (`<group>_<plural>.yaml`) into this directory instead of printing
    /// a multi-document stream to stdout.
    #[arg(long)]
    out_dir: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let crds = stowage_api::crds::all().context("failed to generate CRDs")?;
    match args.out_dir {
        None => {
            let text = stowage_api::crds::all_to_yaml().context("failed to render CRDs")?;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .context("failed to write CRDs to stdout")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("failed to create {}", dir.display()))?;
            for crd in &crds {
                let path = dir.join(stowage_api::crds::file_name(crd));
                let text = stowage_api::crds::to_yaml(crd).context("failed to render CRD")?;
                std::fs::write(&path, text)
                    .with_context(|| format!("failed to write {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}
