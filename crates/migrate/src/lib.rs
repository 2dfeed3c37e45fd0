//! `stowage migrate`: Cluster Autoscaler node groups to Stowage NodePools and EC2NodeClasses.
//!
//! Inputs, any combination, each file's kind detected from its content ([`source`]): an eksctl
//! `ClusterConfig` ([`eksctl`]), the output of `aws autoscaling describe-auto-scaling-groups` and
//! `aws ec2 describe-launch-template-versions` ([`asg`]), the priority expander's ConfigMap and
//! the Cluster Autoscaler Deployment ([`ca`]). Every input becomes [`model::Group`]s, each value
//! with the place it came from; [`build`] merges groups that differ only in instance types and
//! maps them to NodePools and EC2NodeClasses; [`emit`] writes them as YAML with a comment naming
//! the source of each field. What cannot be mapped goes into the [`Report`].
//!
//! Key decisions:
//! - Nothing is written unless everything maps and validates: the output is parsed back and
//!   checked by the API's validation and the CRD schemas ([`validate`]) before [`write_dir`]
//!   writes it into a temporary directory that is renamed into place.
//! - Pure: no AWS SDK, no async runtime, no cluster access; the binary only reads files and
//!   prints.

pub mod asg;
pub mod build;
pub mod ca;
pub mod eksctl;
pub mod emit;
pub mod model;
pub mod source;
pub mod validate;

use std::fmt::Write as _;
use std::path::Path;

pub use source::Kind;

/// Why a migration failed. Input errors name the file, the document and the field.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file} document {document}{}: {message}", if field.is_empty() { String::new() } else { format!(" {field}") })]
    Field {
        file: String,
        document: usize,
        field: String,
        message: String,
    },
    #[error(
        "no node groups in the input: give an eksctl ClusterConfig or describe-auto-scaling-groups output"
    )]
    NoGroups,
    #[error(
        "produced {kind} {name} is invalid (a bug in the mapping, please report it): {message}"
    )]
    ValidateOutput {
        kind: &'static str,
        name: String,
        message: String,
    },
    #[error("failed to load the embedded catalogue: {0}")]
    Catalogue(String),
    #[error("failed to write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("output directory {0} exists and is not empty; give a new or empty directory")]
    OutputNotEmpty(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How serious a note of the report is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Something the input says that the output does not do.
    NotMapped,
    /// Something the output does that the input does not say (a guess to check).
    Assumed,
    /// How something was mapped, for the reviewer.
    Mapped,
}

impl Severity {
    fn heading(self) -> &'static str {
        match self {
            Severity::NotMapped => "Not mapped",
            Severity::Assumed => "Assumed (check these)",
            Severity::Mapped => "Mapped with a difference",
        }
    }
}

/// One finding: where, and what.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Note {
    pub severity: Severity,
    pub at: String,
    pub message: String,
}

/// What the migration did, and what it could not do.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub inputs: Vec<(String, usize, Kind)>,
    /// node group (with source) -> NodePool.
    pub groups: Vec<(String, String, String)>,
    pub notes: Vec<Note>,
}

impl Report {
    pub fn note(&mut self, severity: Severity, at: impl Into<String>, message: impl Into<String>) {
        let note = Note {
            severity,
            at: at.into(),
            message: message.into(),
        };
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    /// The notes of a severity.
    pub fn of(&self, severity: Severity) -> impl Iterator<Item = &Note> {
        self.notes.iter().filter(move |n| n.severity == severity)
    }

    /// The report as Markdown.
    pub fn render(&self, out: &Output) -> String {
        let mut s = String::from("# stowage migrate report\n\n");
        for (file, docs, kind) in &self.inputs {
            let _ = writeln!(s, "- input {file} document {docs}: {}", kind.describe());
        }
        let _ = writeln!(
            s,
            "\n{} node groups -> {} NodePools, {} EC2NodeClasses.\n",
            self.groups.len(),
            out.nodepools.len(),
            out.nodeclasses.len()
        );
        s.push_str("| node group | defined at | NodePool |\n|---|---|---|\n");
        for (g, at, pool) in &self.groups {
            let _ = writeln!(s, "| {g} | {at} | {pool} |");
        }
        let mut notes = self.notes.clone();
        notes.sort();
        for severity in [Severity::NotMapped, Severity::Assumed, Severity::Mapped] {
            let these: Vec<&Note> = notes.iter().filter(|n| n.severity == severity).collect();
            if these.is_empty() {
                continue;
            }
            let _ = writeln!(s, "\n## {} ({})\n", severity.heading(), these.len());
            for n in these {
                let _ = writeln!(s, "- {}: {}", n.at, n.message);
            }
        }
        s
    }
}

/// One produced object: its name and its YAML document (with comments).
#[derive(Clone, Debug)]
pub struct Manifest {
    pub name: String,
    pub yaml: String,
}

/// What a migration produced.
#[derive(Clone, Debug, Default)]
pub struct Output {
    pub nodeclasses: Vec<Manifest>,
    pub nodepools: Vec<Manifest>,
    pub report: Report,
}

impl Output {
    /// Every manifest as one multi-document YAML text (node classes first).
    pub fn yaml(&self) -> String {
        let docs: Vec<&str> = self
            .nodeclasses
            .iter()
            .chain(&self.nodepools)
            .map(|m| m.yaml.as_str())
            .collect();
        docs.join("---\n")
    }

    pub fn report_text(&self) -> String {
        self.report.render(self)
    }
}

/// Options of a migration.
#[derive(Clone, Debug)]
pub struct Options {
    /// Region of the embedded catalogue used for vCPU counts when the input names none.
    pub default_region: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            default_region: "us-east-1".to_string(),
        }
    }
}

/// Migrates the files (`(name, text)`): reads and detects them, maps, emits and validates.
pub fn migrate(files: &[(String, String)], options: &Options) -> Result<Output> {
    let mut docs = Vec::new();
    for (name, text) in files {
        docs.extend(source::read(name, text)?);
    }
    let mut report = Report::default();
    for d in &docs {
        report.inputs.push((d.file.clone(), d.index, d.kind));
    }
    let mut cluster = eksctl::Cluster::default();
    let mut groups = Vec::new();
    for d in docs.iter().filter(|d| d.kind == source::Kind::Eksctl) {
        groups.extend(eksctl::groups(d, &mut cluster, &mut report)?);
    }
    let templates = asg::templates(docs.iter().filter(|d| d.kind == Kind::LaunchTemplates))?;
    for d in docs.iter().filter(|d| d.kind == Kind::Asgs) {
        asg::groups(d, &templates, &cluster, &mut groups, &mut report)?;
    }
    let mut ca = model::CaOptions::default();
    for d in docs.iter().filter(|d| d.kind == Kind::CaDeployment) {
        ca::flags(d, &mut ca, &mut report)?;
    }
    let mut priorities = Vec::new();
    for d in docs.iter().filter(|d| d.kind == Kind::Priorities) {
        priorities.extend(ca::priorities(d)?);
    }
    if groups.is_empty() {
        return Err(Error::NoGroups);
    }
    let region = cluster
        .region
        .clone()
        .unwrap_or_else(|| options.default_region.clone());
    let mut out = build::build(groups, &priorities, &ca, &region, &mut report)?;
    out.report = report;
    validate::output(&out)?;
    Ok(out)
}

/// Writes `nodeclasses.yaml`, `nodepools.yaml` and `report.md` into `dir` (new or empty): into a
/// temporary sibling directory first, renamed into place when every file is written.
pub fn write_dir(out: &Output, dir: &Path) -> Result<()> {
    let werr = |path: &Path| {
        let path = path.display().to_string();
        move |source| Error::Write { path, source }
    };
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(werr(dir))?;
        if entries.next().is_some() {
            return Err(Error::OutputNotEmpty(dir.display().to_string()));
        }
    }
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "out".to_string());
    let tmp = dir.with_file_name(format!(".{name}.stowage-migrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(werr(&tmp))?;
    let join = |ms: &[Manifest]| {
        ms.iter()
            .map(|m| m.yaml.as_str())
            .collect::<Vec<_>>()
            .join("---\n")
    };
    let files = [
        ("nodeclasses.yaml", join(&out.nodeclasses)),
        ("nodepools.yaml", join(&out.nodepools)),
        ("report.md", out.report_text()),
    ];
    let result = (|| {
        for (f, text) in &files {
            let p = tmp.join(f);
            std::fs::write(&p, text).map_err(werr(&p))?;
        }
        if dir.exists() {
            std::fs::remove_dir(dir).map_err(werr(dir))?;
        }
        std::fs::rename(&tmp, dir).map_err(werr(dir))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}
