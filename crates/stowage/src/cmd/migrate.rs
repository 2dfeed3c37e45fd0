//! `stowage migrate`: Cluster Autoscaler node groups to NodePools and EC2NodeClasses. The mapping
//! is `stowage-migrate`'s (pure, tested there); this module reads the files and writes the result:
//! without `-o`, the manifests to stdout as multi-document YAML and the report to stderr; with
//! `-o DIR`, `nodeclasses.yaml`, `nodepools.yaml` and `report.md` into a new or empty DIR, all or
//! nothing.

use std::path::PathBuf;

use anyhow::Context;

/// Arguments of `stowage migrate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Input files, each detected from its content: an eksctl ClusterConfig, the priority
    /// expander's ConfigMap, the Cluster Autoscaler Deployment, and the JSON output of `aws
    /// autoscaling describe-auto-scaling-groups` and `aws ec2 describe-launch-template-versions`.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Write nodeclasses.yaml, nodepools.yaml and report.md into this new or empty directory
    /// (default: manifests to stdout, report to stderr).
    #[arg(short = 'o', long = "output-dir")]
    pub output_dir: Option<PathBuf>,
    /// Region of the embedded catalogue (vCPU counts) when the ClusterConfig names none.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
}

/// The largest input file read.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut files = Vec::new();
    for f in &args.files {
        let size = std::fs::metadata(f)
            .with_context(|| format!("failed to read {}", f.display()))
            .map_err(super::bad_input)?
            .len();
        if size > MAX_FILE_BYTES {
            return Err(super::bad_input(anyhow::anyhow!(
                "{}: {size} bytes is over the limit of {MAX_FILE_BYTES} bytes per file",
                f.display()
            )));
        }
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("failed to read {}", f.display()))
            .map_err(super::bad_input)?;
        files.push((f.display().to_string(), text));
    }
    let options = stowage_migrate::Options {
        default_region: args.region.clone(),
    };
    let out = stowage_migrate::migrate(&files, &options).map_err(|e| match e {
        stowage_migrate::Error::Parse { .. }
        | stowage_migrate::Error::Field { .. }
        | stowage_migrate::Error::NoGroups => super::bad_input(e.into()),
        other => other.into(),
    })?;
    match &args.output_dir {
        Some(dir) => {
            stowage_migrate::write_dir(&out, dir).map_err(|e| match e {
                stowage_migrate::Error::OutputNotEmpty(_) => super::bad_input(e.into()),
                other => other.into(),
            })?;
            eprintln!(
                "wrote {} EC2NodeClasses and {} NodePools to {} (read report.md: {} items not mapped)",
                out.nodeclasses.len(),
                out.nodepools.len(),
                dir.display(),
                out.report.of(stowage_migrate::Severity::NotMapped).count()
            );
        }
        None => {
            print!("{}", out.yaml());
            eprint!("{}", out.report_text());
        }
    }
    Ok(())
}
