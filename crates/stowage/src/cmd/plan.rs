//! `stowage plan`: offline, what would be bought for a set of pending pods and why pods stay
//! pending. Reads Pods, Nodes, NodePools and DaemonSets from multi-document YAML files or
//! `kubectl get -o yaml` Lists, solves against a catalogue (the embedded AWS snapshot, a JSON file
//! or the synthetic benchmark shape) and prints a table or the plan as JSON.
//!
//! The objects go through the provisioner's own snapshot (`stowage_controller::snapshot`): they
//! are loaded into a `ClusterState` and the solver input is built from it exactly as the
//! controllers build theirs, so `plan` and a running provisioner cannot disagree. Pods with
//! `spec.nodeName` are bound to that node (when the node is given); a pod without one and without
//! a `PodScheduled` condition is taken as the scheduler would report it (`PodScheduled=False`,
//! `Unschedulable`), so the provisioner's rules decide which are pending (DaemonSet and static
//! pods, terminating pods and pods with a nominated node are not bought for). NodeClaims in the
//! input are capacity on the way. Every input error names the file, the document and the field.
//!
//! With `--kubeconfig` the cluster is read live instead ([`live`]): the pending pods' plan, and
//! for nodes Stowage does not own what re-packing their pods onto the `-f` NodePools would cost.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use stowage_clock::Clock;
use stowage_controller::lean::Interner;
use stowage_controller::state::PreparedPod;
use stowage_controller::{ClusterState, snapshot};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::core::v1 as core;
use stowage_api::labels;
use stowage_api::quantity::format_resource;
use stowage_dump as lean;
use stowage_dump::Item;
use stowage_solver::{InstanceType, Plan, SolveInput, SolveOptions};

mod live;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Arguments of `stowage plan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// YAML files with Pods, NodePools, Nodes, NodeClaims and DaemonSets (multi-document or
    /// Lists; EC2NodeClasses are skipped). With --kubeconfig: NodePools only.
    #[arg(short = 'f', long = "filename", required_unless_present = "kubeconfig")]
    pub files: Vec<PathBuf>,
    /// Plan against a live cluster (read-only list calls): pending pods, and for nodes Stowage
    /// does not own (Cluster Autoscaler's) today's cost against a re-pack onto the -f NodePools.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long, requires = "kubeconfig")]
    pub context: Option<String>,
    /// A JSON catalogue: an array of instance types as the solver reads them.
    #[arg(long, conflicts_with = "synthetic")]
    pub catalog: Option<PathBuf>,
    /// Use the synthetic benchmark catalogue with this many instance types.
    #[arg(long)]
    pub synthetic: Option<usize>,
    /// Region of the embedded AWS catalogue (used when neither --catalog nor --synthetic is set).
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// How many instance types a new node lists (the controller's `max_instance_types`).
    #[arg(long, default_value_t = stowage_controller::Settings::default().max_instance_types)]
    pub max_instance_types: usize,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Exit 1 when any pod stays unschedulable (for scripts; the default exits 0 with the plan).
    #[arg(long)]
    pub fail_on_unschedulable: bool,
    /// Instead of buying for pending pods: what consolidation would do with the nodes given
    /// (the disruption controller's candidates, budgets and methods) and the $/h it saves.
    /// Nodes without a NodeClaim in the input stand for one (Initialized when the Node was
    /// created); PodDisruptionBudgets are not read.
    #[arg(long)]
    pub consolidate: bool,
    /// Print how long each phase took (read, with the catalogue built alongside; parse,
    /// snapshot, solve, output) to stderr.
    #[arg(long)]
    pub timings: bool,
    /// Also write the solver's input as JSON to this file (for `stowage-bench solve --input`).
    #[arg(long, hide = true)]
    pub write_input: Option<PathBuf>,
    /// The learnt spot interruption rates: the `rates.json` of the controller's ConfigMap
    /// (`kubectl -n NAMESPACE get configmap stowage-spot-interruption-rates -o
    /// jsonpath='{.data.rates\.json}'`). Spot offerings are then ranked, and priced in the table,
    /// with their expected interruption cost, as the controller does.
    #[arg(long)]
    pub spot_interruption_rates: Option<PathBuf>,
    /// The weight of that cost (the controller's `--spot-interruption-cost-weight`).
    #[arg(long, default_value_t = 1.0)]
    pub spot_interruption_cost_weight: f64,
}

/// Wall time per phase, printed to stderr when asked for (`--timings`), with the CPU time of
/// the whole process (all threads) where Linux's `/proc/self/stat` tells it: on a loaded
/// machine wall time says little.
struct Timings {
    on: bool,
    start: std::time::Instant,
    last: std::time::Instant,
    start_cpu: Option<f64>,
    last_cpu: Option<f64>,
}

/// CPU time of this process (user + system, every thread) in ms, at the kernel's 100 Hz tick.
fn process_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command (which may hold spaces) start at the state, field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) * 10.0)
}

impl Timings {
    fn new(on: bool) -> Self {
        let now = std::time::Instant::now();
        let cpu = if on { process_cpu_ms() } else { None };
        Timings {
            on,
            start: now,
            last: now,
            start_cpu: cpu,
            last_cpu: cpu,
        }
    }

    /// Ends the phase `name` (and prints its time when on).
    fn phase(&mut self, name: &str) {
        let now = std::time::Instant::now();
        if self.on {
            let cpu = process_cpu_ms();
            let cpu_text = match (cpu, self.last_cpu) {
                (Some(b), Some(a)) => format!(" (cpu {:>8.1} ms)", b - a),
                _ => String::new(),
            };
            eprintln!(
                "timing {name:<11} {:>8.1} ms{cpu_text}",
                (now - self.last).as_secs_f64() * 1e3
            );
            self.last_cpu = cpu;
        }
        self.last = now;
    }

    fn total(&self) {
        if self.on {
            let cpu_text = match (process_cpu_ms(), self.start_cpu) {
                (Some(b), Some(a)) => format!(" (cpu {:>8.1} ms)", b - a),
                _ => String::new(),
            };
            eprintln!(
                "timing {:<11} {:>8.1} ms{cpu_text}",
                "total",
                self.start.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}

/// The largest input file read (a `kubectl get pods -A -o yaml` of 40,000 pods is ~300 MB).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024 * 1024;
/// The most objects (after unpacking Lists) across all input files.
pub const MAX_OBJECTS: usize = 500_000;
/// The most NodePools in one plan.
pub const MAX_NODEPOOLS: usize = 1_000;
/// The most instance types `--synthetic` generates.
pub const MAX_SYNTHETIC_TYPES: usize = 10_000;

pub async fn run(args: Args) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut timings = Timings::new(args.timings);
    if let Some(kubeconfig) = &args.kubeconfig {
        let (types, _) = priced_catalogue(&args).map_err(super::bad_input)?;
        timings.phase("catalogue");
        return run_live(&args, kubeconfig, types).await;
    }
    // The catalogue needs none of the input: it is built on its own thread while the files
    // are read (reading waits on the disk and the parsing threads, the catalogue on neither).
    // Its errors still come first.
    let (types, sources) = std::thread::scope(|s| {
        let types = s.spawn(|| priced_catalogue(&args));
        let sources: anyhow::Result<Vec<_>> = args
            .files
            .iter()
            .map(|f| Ok((f.clone(), read_source(f)?)))
            .collect();
        let types = match types.join() {
            Ok(types) => types,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        (types, sources)
    });
    let (types, adjusted) = types.map_err(super::bad_input)?;
    let sources = sources.map_err(super::bad_input)?;
    // JSON files are parsed while they are read: "read" includes their parsing, and the
    // catalogue built alongside.
    timings.phase("read");
    let objects = parse_sources(sources).map_err(super::bad_input)?;
    timings.phase("parse");
    if args.consolidate {
        let state = state_from(objects).map_err(super::bad_input)?;
        timings.phase("snapshot");
        let c = consolidation(
            state,
            types,
            stowage_clock::SystemClock.now(),
            args.max_instance_types,
        );
        timings.phase("solve");
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        match args.output {
            Output::Json => {
                serde_json::to_writer_pretty(&mut out, &c)?;
                writeln!(out)?;
            }
            Output::Table => out.write_all(render_consolidation(&c).as_bytes())?,
        }
        out.flush()?;
        drop(out);
        timings.phase("output");
        timings.total();
        return Ok(());
    }
    let input = input_leaving_state(objects, types).map_err(super::bad_input)?;
    timings.phase("snapshot");
    if let Some(path) = &args.write_input {
        let file = std::fs::File::create(path)
            .with_context(|| format!("failed to write {}", path.display()))?;
        serde_json::to_writer(std::io::BufWriter::new(file), &input)
            .with_context(|| format!("failed to write {}", path.display()))?;
        timings.phase("write-input");
    }
    let options = SolveOptions {
        max_instance_types: args.max_instance_types,
        ..SolveOptions::default()
    };
    let plan = stowage_solver::solve(&input, &options);
    timings.phase("solve");
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.output {
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, &plan)?;
            writeln!(out)?;
        }
        Output::Table => {
            if adjusted > 0 {
                writeln!(
                    out,
                    "$/HOUR includes the expected interruption cost of {adjusted} spot offering(s) (learnt rates, weight {}): price x (1 + weight x interruptions per node-hour)",
                    args.spot_interruption_cost_weight
                )?;
            }
            out.write_all(render_table(&plan).as_bytes())?
        }
    }
    out.flush()?;
    drop(out);
    timings.phase("output");
    timings.total();
    let unschedulable = plan.unschedulable.len();
    // The process ends right after this: freeing the input and the plan (every pod's strings,
    // maps and vectors, 40,000 pods in a whole-cluster dump: ~0.1 s of one core) would only
    // give the memory back to an allocator that is about to be discarded, so they are not freed.
    std::mem::forget(input);
    std::mem::forget(plan);
    if args.fail_on_unschedulable && unschedulable > 0 {
        bail!("{unschedulable} pod(s) cannot be scheduled (--fail-on-unschedulable)");
    }
    Ok(())
}

/// `stowage plan --kubeconfig`.
async fn run_live(args: &Args, kubeconfig: &Path, types: Vec<InstanceType>) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut sources = Vec::new();
    for f in &args.files {
        sources.push((f.clone(), read_source(f).map_err(super::bad_input)?));
    }
    let pools = live::file_pools(parse_sources(sources).map_err(super::bad_input)?)
        .map_err(super::bad_input)?;
    let client = live::client(kubeconfig, args.context.as_deref()).await?;
    let cluster = live::read(&client).await?;
    let options = SolveOptions {
        max_instance_types: args.max_instance_types,
        ..SolveOptions::default()
    };
    let report = live::report(cluster, pools, types, &options).map_err(super::bad_input)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.output {
        Output::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Output::Table => out.write_all(live::render_table(&report).as_bytes())?,
    }
    out.flush()?;
    if args.fail_on_unschedulable && !report.pending.unschedulable.is_empty() {
        bail!(
            "{} pod(s) cannot be scheduled (--fail-on-unschedulable)",
            report.pending.unschedulable.len()
        );
    }
    Ok(())
}

/// Adds the expected interruption cost of the rates in `path` (the controller's stored
/// `rates.json`) to the spot offerings of `types`, as of `now`; returns how many got one.
fn apply_rates(
    types: &mut [InstanceType],
    path: &Path,
    weight: f64,
    now: jiff::Timestamp,
) -> anyhow::Result<usize> {
    use stowage_controller::interruption::rates::{RateBook, apply_costs};
    if !(0.0..=100.0).contains(&weight) {
        bail!("--spot-interruption-cost-weight must be in [0, 100], got {weight}");
    }
    let text = read_input(path)?;
    let mut book =
        RateBook::new(stowage_controller::Settings::default().spot_interruption_half_life);
    book.merge_json(&text).with_context(|| {
        format!(
            "{}: expected the rates.json of the ConfigMap stowage-spot-interruption-rates",
            path.display()
        )
    })?;
    Ok(apply_costs(types, &book, weight, now).len())
}

/// A file's text, refusing files over [`MAX_FILE_BYTES`] before reading them.
fn read_input(path: &Path) -> anyhow::Result<String> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("failed to read {}", path.display()))?
        .len();
    if size > MAX_FILE_BYTES {
        bail!(
            "{}: {size} bytes is over the limit of {MAX_FILE_BYTES} bytes per file; split the input",
            path.display()
        );
    }
    std::fs::read_to_string(path).with_context(|| format!("failed to read {}", path.display()))
}

/// One input file: its documents when the fast reader read them as it read the file (JSON), or
/// its text and which reader is to read it.
enum Source {
    Documents(Vec<Item<Box<PlanPod>>>),
    Text(String, Reader),
}

/// A Pod the fast reader read, made ready for the state on the thread that read it.
#[derive(Debug)]
struct PlanPod {
    pod: PreparedPod,
    /// The length of `metadata.name` (the end of the pod's key), `None` without one.
    name_len: Option<usize>,
}

impl PlanPod {
    /// `metadata.name`, `<unnamed>` without one (for messages).
    fn name(&self) -> &str {
        let key = self.pod.lean().key();
        self.name_len
            .and_then(|n| key.get(key.len() - n..))
            .unwrap_or("<unnamed>")
    }
}

/// What `plan` makes of each Pod the fast reader reads, on the reading threads: the Pod as the
/// scheduler would report it ([`as_scheduler_reports`]), then what the state keeps of it
/// ([`PreparedPod::from_view`]: the controllers' own conversion, read through the same view as a
/// `k8s_openapi` Pod, which is never built; each thread shares strings and label sets through its
/// own interner). The snapshot then only assembles the state.
struct Prepare {
    now: jiff::Timestamp,
}

impl Prepare {
    fn new() -> Self {
        Prepare {
            now: stowage_clock::SystemClock.now(),
        }
    }
}

impl lean::Convert for Prepare {
    type Pod = Box<PlanPod>;
    type Scratch = Interner;

    fn pod(&self, interner: &mut Interner, mut pod: Box<lean::LeanPod>) -> Box<PlanPod> {
        let meta = pod.metadata.as_ref();
        let name_len = meta.and_then(|m| m.name.as_ref()).map(String::len);
        let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let bound = is_bound(bound);
        let status = pod.status.get_or_insert_with(Default::default);
        mark_unschedulable(bound, &mut status.conditions, self.now);
        let pod = PreparedPod::from_view(&pod.view(), interner, || (*pod).clone().into_pod());
        Box::new(PlanPod { pod, name_len })
    }
}

/// An input file. JSON is parsed while it is read ([`lean::json_reader`]); when the fast reader
/// declines it, the text is read again for the exact reader, which names what is wrong.
fn read_source(path: &Path) -> anyhow::Result<Source> {
    let read = || format!("failed to read {}", path.display());
    let size = std::fs::metadata(path).with_context(read)?.len();
    if size > MAX_FILE_BYTES {
        bail!(
            "{}: {size} bytes is over the limit of {MAX_FILE_BYTES} bytes per file; split the input",
            path.display()
        );
    }
    let mut file = std::fs::File::open(path).with_context(read)?;
    if !lean::starts_like_json(&mut file).with_context(read)? {
        return Ok(Source::Text(read_input(path)?, Reader::Fast));
    }
    if let Some(docs) = lean::json_reader_converted(file, &Prepare::new()) {
        return Ok(Source::Documents(docs));
    }
    Ok(Source::Text(read_input(path)?, Reader::Exact))
}

/// The catalogue with the learnt interruption rates applied (`--spot-interruption-rates`), and
/// how many spot offerings they priced.
fn priced_catalogue(args: &Args) -> anyhow::Result<(Vec<InstanceType>, usize)> {
    let mut types = catalogue(args)?;
    let adjusted = match &args.spot_interruption_rates {
        Some(path) => apply_rates(
            &mut types,
            path,
            args.spot_interruption_cost_weight,
            jiff::Timestamp::now(),
        )?,
        None => 0,
    };
    Ok((types, adjusted))
}

fn catalogue(args: &Args) -> anyhow::Result<Vec<InstanceType>> {
    if let Some(n) = args.synthetic {
        if n == 0 || n > MAX_SYNTHETIC_TYPES {
            bail!("--synthetic takes 1 to {MAX_SYNTHETIC_TYPES} instance types, got {n}");
        }
        return Ok(stowage_solver::catalog::karpenter_shape(n));
    }
    if let Some(path) = &args.catalog {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read catalogue {}", path.display()))?;
        return serde_json::from_str(&text).with_context(|| {
            format!(
                "catalogue {}: expected a JSON array of instance types",
                path.display()
            )
        });
    }
    stowage_aws_catalog::embedded(
        &args.region,
        &stowage_aws_catalog::CatalogSettings::default(),
    )
    .with_context(|| format!("failed to load the embedded catalogue for {}", args.region))
}

/// One object found in the input files.
enum Object {
    Pod(Box<core::Pod>),
    /// A Pod made ready for the state as it was read ([`Prepare`]).
    Prepared(Box<PlanPod>),
    Node(Box<core::Node>),
    DaemonSet(Box<apps::DaemonSet>),
    NodePool(Box<stowage_api::NodePool>),
    NodeClaim(Box<stowage_api::NodeClaim>),
}

impl Object {
    fn kind(&self) -> &'static str {
        match self {
            Object::Pod(_) | Object::Prepared(_) => "Pod",
            Object::Node(_) => "Node",
            Object::DaemonSet(_) => "DaemonSet",
            Object::NodePool(_) => "NodePool",
            Object::NodeClaim(_) => "NodeClaim",
        }
    }

    /// `namespace/name` (or the name of a cluster-scoped object), borrowed where the object
    /// holds it whole.
    fn key(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow;
        match self {
            Object::Pod(p) => Cow::Owned(stowage_api::key_of(p.as_ref())),
            Object::Prepared(p) => Cow::Borrowed(p.pod.lean().key()),
            Object::DaemonSet(d) => Cow::Owned(stowage_api::key_of(d.as_ref())),
            Object::Node(n) => Cow::Owned(n.name_any()),
            Object::NodePool(p) => Cow::Owned(p.name_any()),
            Object::NodeClaim(c) => Cow::Owned(c.name_any()),
        }
    }
}

/// The documents of one input file: JSON (`kubectl get -o json`: one object, or an array of
/// objects) or YAML (multi-document), with reader limits sized for whole-cluster dumps. The fast
/// reader ([`lean`]) reads them when it can; otherwise (and for every error) the exact one.
fn documents(path: &Path, text: &str, reader: Reader) -> anyhow::Result<Vec<Item<Box<PlanPod>>>> {
    let fast = if reader == Reader::Exact {
        None
    } else if is_json(text) {
        lean::json_documents_converted(text, &Prepare::new())
    } else {
        lean::yaml_documents_converted(text, yaml_options, &Prepare::new())
    };
    if let Some(docs) = fast {
        return Ok(docs);
    }
    Ok(exact_documents(path, text)?
        .into_iter()
        .map(|v| {
            if v.is_null() {
                Item::Null
            } else {
                Item::Other(v)
            }
        })
        .collect())
}

/// Which reader reads the files: the fast one (falling back to the exact one), or only the exact
/// one (a JSON file the fast reader declined as it read it; tests compare the two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reader {
    Fast,
    Exact,
}

fn is_json(text: &str) -> bool {
    let trimmed = text.trim_start();
    trimmed.starts_with('{') || trimmed.starts_with('[')
}

/// The YAML reader's options: limits sized for whole-cluster dumps.
fn yaml_options() -> serde_saphyr::Options {
    lean::yaml_options(MAX_OBJECTS, MAX_FILE_BYTES as usize)
}

/// The documents of one input file as `Value`s (the exact reader).
fn exact_documents(path: &Path, text: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    // JSON is also YAML, but the JSON reader is several times faster on large dumps; a file that
    // is not one JSON value (e.g. flow-style YAML documents) goes to the YAML reader.
    if is_json(text)
        && let Ok(value) = serde_json::from_str::<serde_json::Value>(text)
    {
        return Ok(match value {
            serde_json::Value::Array(items) => items,
            one => vec![one],
        });
    }
    serde_saphyr::from_multiple_with_options(text, yaml_options())
        .map_err(|e| anyhow::anyhow!("{}: invalid YAML: {e}", path.display()))
}

/// Fields of a Stowage object that its CRD schema does not declare: the API server would drop
/// them (and `kubectl apply` refuses them), so `plan` refuses them rather than plan without them.
fn unknown_fields(kind: &str, value: &serde_json::Value) -> Vec<String> {
    static SCHEMAS: std::sync::OnceLock<Vec<(&str, Option<serde_json::Value>)>> =
        std::sync::OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| {
        ["NodePool", "NodeClaim"]
            .map(|k| (k, stowage_api::crds::schema(stowage_api::labels::GROUP, k)))
            .into()
    });
    let Some((_, Some(schema))) = schemas.iter().find(|(k, _)| *k == kind) else {
        return Vec::new();
    };
    let mut copy = value.clone();
    let mut removed = stowage_api::openapi::prune(schema, &mut copy);
    removed.retain(|f| f != "status" && !f.starts_with("status."));
    removed
}

/// The objects of a document (or List item) the fast reader read; `Other` ones go through
/// [`parse_object`], so errors and checks are the exact reader's.
fn objects_of(
    item: Item<Box<PlanPod>>,
    whence: &str,
    out: &mut Vec<(Object, Place)>,
) -> anyhow::Result<()> {
    match item {
        Item::Null => bail!("{whence}: field kind is missing"),
        Item::Pod(p) => {
            let what = format!("{whence} (Pod {})", p.name());
            out.push((Object::Prepared(p), Place::Text(what)));
        }
        Item::List(items) => {
            let list: std::rc::Rc<str> = whence.into();
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    // As below, named only when a message needs it (40,000 pods in a dump).
                    Item::Pod(p) => out.push((
                        Object::Prepared(p),
                        Place::Item {
                            whence: list.clone(),
                            item: i,
                        },
                    )),
                    other => objects_of(other, &format!("{whence} items[{i}]"), out)?,
                }
            }
        }
        Item::Other(v) => out.extend(
            parse_object(v, whence)?
                .into_iter()
                .map(|(o, at)| (o, Place::Text(at))),
        ),
    }
    Ok(())
}

/// Where an object was found, as messages name it.
enum Place {
    Text(String),
    /// A Pod the fast reader read as item `item` of the List in the document `whence`.
    Item {
        whence: std::rc::Rc<str>,
        item: usize,
    },
}

impl Place {
    /// The place as messages name it (`object` is the object found there).
    fn describe(&self, object: &Object) -> String {
        match (self, object) {
            (Place::Text(what), _) => what.clone(),
            (Place::Item { whence, item }, Object::Prepared(p)) => {
                format!("{whence} items[{item}] (Pod {})", p.name())
            }
            (Place::Item { whence, item }, _) => format!("{whence} items[{item}]"),
        }
    }
}

fn parse_object(
    mut value: serde_json::Value,
    whence: &str,
) -> anyhow::Result<Vec<(Object, String)>> {
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_string();
    let name = value
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .unwrap_or("<unnamed>")
        .to_string();
    let what = format!("{whence} ({kind} {name})");
    if matches!(kind.as_str(), "EC2NodeClass" | "EC2NodeClassList") {
        // `stowage migrate` writes them next to the NodePools; a plan does not need them, but
        // they must be what the API server would accept.
        let mut objects = match value.get_mut("items").map(serde_json::Value::take) {
            Some(serde_json::Value::Array(items)) if kind == "EC2NodeClassList" => items,
            _ => vec![value],
        };
        for v in objects.drain(..) {
            let class: stowage_api::EC2NodeClass = serde_json::from_value(v)
                .with_context(|| format!("{what}: invalid EC2NodeClass"))?;
            if let Err(errors) = class.validate() {
                bail!("{what}: {}", stowage_api::validation::summarize(&errors));
            }
        }
        return Ok(Vec::new());
    }
    if matches!(kind.as_str(), "NodePool" | "NodeClaim") {
        let unknown = unknown_fields(&kind, &value);
        if !unknown.is_empty() {
            bail!("{what}: unknown field {}", unknown.join(", "));
        }
    }
    Ok(match kind.as_str() {
        "List" | "PodList" | "NodeList" | "DaemonSetList" | "NodePoolList" | "NodeClaimList" => {
            let items = match value.get_mut("items").map(serde_json::Value::take) {
                Some(serde_json::Value::Array(items)) => items,
                _ => bail!("{whence} ({kind}): field items is missing or not a list"),
            };
            let mut out = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                out.extend(parse_object(item, &format!("{whence} items[{i}]"))?);
            }
            out
        }
        "Pod" => vec![(
            Object::Pod(Box::new(
                serde_json::from_value(value).with_context(|| format!("{what}: invalid Pod"))?,
            )),
            what,
        )],
        "Node" => vec![(
            Object::Node(Box::new(
                serde_json::from_value(value).with_context(|| format!("{what}: invalid Node"))?,
            )),
            what,
        )],
        "DaemonSet" => vec![(
            Object::DaemonSet(Box::new(
                serde_json::from_value(value)
                    .with_context(|| format!("{what}: invalid DaemonSet"))?,
            )),
            what,
        )],
        "NodePool" => vec![(
            Object::NodePool(Box::new(
                serde_json::from_value(value)
                    .with_context(|| format!("{what}: invalid NodePool"))?,
            )),
            what,
        )],
        "NodeClaim" => vec![(
            Object::NodeClaim(Box::new(
                serde_json::from_value(value)
                    .with_context(|| format!("{what}: invalid NodeClaim"))?,
            )),
            what,
        )],
        "" => bail!("{whence}: field kind is missing"),
        other => bail!(
            "{whence}: unknown kind {other:?} (expected Pod, Node, NodePool, NodeClaim, DaemonSet or a List of them)"
        ),
    })
}

/// Parses the files and builds the solve input (existing nodes with their pods, pools with their
/// usage, pending pods).
#[cfg(test)]
fn build_input(
    files: &[(PathBuf, String)],
    instance_types: Vec<InstanceType>,
) -> anyhow::Result<SolveInput> {
    input_from(parse_files(files, Reader::Fast)?, instance_types)
}

/// The objects of the files' texts, each once (see [`parse_sources`]).
#[cfg(test)]
fn parse_files(files: &[(PathBuf, String)], reader: Reader) -> anyhow::Result<Vec<Object>> {
    let mut objects = Objects::default();
    for (path, text) in files {
        objects.add(path, documents(path, text, reader)?)?;
    }
    Ok(objects.objects)
}

/// The objects of the files, each once (a second copy is refused, naming both places).
fn parse_sources(files: Vec<(PathBuf, Source)>) -> anyhow::Result<Vec<Object>> {
    let mut objects = Objects::default();
    for (path, source) in files {
        let docs = match source {
            Source::Documents(docs) => docs,
            Source::Text(text, reader) => documents(&path, &text, reader)?,
        };
        objects.add(&path, docs)?;
    }
    Ok(objects.objects)
}

/// The objects found so far, and where each was found (the index of the object found there).
#[derive(Default)]
struct Objects {
    objects: Vec<Object>,
    /// By kind and the hash of the key (a whole-cluster dump has 40,000 pods: no key is
    /// copied; an offline run of one user's files has no adversary to fear collisions from):
    /// the first object seen with that hash.
    seen: stowage_solver::hash::FastMap<(&'static str, u64), (Place, usize)>,
    /// Objects whose key's hash was taken by another key (rare), by kind and key.
    clashes: BTreeMap<(&'static str, String), (Place, usize)>,
}

impl Objects {
    /// The objects of one file's documents.
    fn add(&mut self, path: &Path, docs: Vec<Item<Box<PlanPod>>>) -> anyhow::Result<()> {
        let mut found = Vec::new();
        for (i, doc) in docs.into_iter().enumerate() {
            if matches!(doc, Item::Null) {
                continue;
            }
            let whence = format!("{} document {}", display(path), i + 1);
            found.clear();
            objects_of(doc, &whence, &mut found)?;
            self.seen.reserve(found.len());
            for (object, at) in found.drain(..) {
                // The same object twice (a file given twice, overlapping dumps) would count its
                // pods twice.
                let (kind, key) = (object.kind(), object.key());
                let hash = {
                    use std::hash::{Hash as _, Hasher as _};
                    let mut h = stowage_solver::hash::FastHasher::default();
                    key.hash(&mut h);
                    h.finish()
                };
                let index = self.objects.len();
                let first = match self.seen.entry((kind, hash)) {
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert((at, index));
                        None
                    }
                    std::collections::hash_map::Entry::Occupied(e) => {
                        let (first, i) = e.get();
                        if self.objects[*i].key() == key {
                            Some((first.describe(&self.objects[*i]), at))
                        } else {
                            match self.clashes.entry((kind, key.into_owned())) {
                                std::collections::btree_map::Entry::Vacant(e) => {
                                    e.insert((at, index));
                                    None
                                }
                                std::collections::btree_map::Entry::Occupied(e) => {
                                    let (first, i) = e.get();
                                    Some((first.describe(&self.objects[*i]), at))
                                }
                            }
                        }
                    }
                };
                if let Some((first, at)) = first {
                    bail!(
                        "{}: {kind} {} is also in {first}",
                        at.describe(&object),
                        object.key()
                    );
                }
                self.objects.push(object);
                if self.objects.len() > MAX_OBJECTS {
                    bail!("more than {MAX_OBJECTS} objects in the input; plan a part of it");
                }
            }
        }
        Ok(())
    }
}

/// The objects loaded into a cluster state, every NodePool valid.
fn state_from(objects: Vec<Object>) -> anyhow::Result<ClusterState> {
    let (state, invalid) = load(objects)?;
    if !invalid.is_empty() {
        bail!("invalid NodePool: {}", invalid.join("; "));
    }
    Ok(state)
}

/// The objects loaded into a cluster state, and what is wrong with each invalid NodePool.
fn load(objects: Vec<Object>) -> anyhow::Result<(ClusterState, Vec<String>)> {
    let pools = objects
        .iter()
        .filter(|o| matches!(o, Object::NodePool(_)))
        .count();
    if pools > MAX_NODEPOOLS {
        bail!("{pools} NodePools in the input; the limit is {MAX_NODEPOOLS}");
    }
    let mut state = ClusterState::new();
    let now = stowage_clock::SystemClock.now();
    // The controllers do not buy from a NodePool that fails validation (it is not Ready).
    let mut invalid = Vec::new();
    for o in &objects {
        if let Object::NodePool(np) = o
            && let Err(errors) = np.validate()
        {
            let errors = stowage_api::validation::summarize(&errors);
            invalid.push(format!("NodePool {}: {errors}", np.name_any()));
        }
    }
    for o in objects {
        match o {
            Object::Pod(p) => state.apply_pod(as_scheduler_reports(*p, now)),
            Object::Prepared(p) => state.apply_prepared_pod(p.pod),
            Object::Node(n) => state.apply_node(*n),
            Object::DaemonSet(d) => state.apply_daemonset(*d),
            Object::NodePool(np) => state.apply_nodepool(*np),
            Object::NodeClaim(c) => state.apply_claim(*c),
        }
    }
    Ok((state, invalid))
}

/// The solve input from the objects, through the controllers' snapshot.
#[cfg(test)]
fn input_from(
    objects: Vec<Object>,
    instance_types: Vec<InstanceType>,
) -> anyhow::Result<SolveInput> {
    let (state, invalid) = load(objects)?;
    let pools = snapshot::pools(&state);
    let types = pool_types(&pools, instance_types);
    // The state is not needed afterwards: its pods move into the input, not copied.
    let mut snap = snapshot::build_owned(state, &pools, types, stowage_clock::SystemClock.now());
    checked(&mut snap, &invalid)
}

/// One catalogue shared by every pool (not a copy per pool).
fn pool_types(
    pools: &[std::sync::Arc<stowage_api::NodePool>],
    instance_types: Vec<InstanceType>,
) -> BTreeMap<String, std::sync::Arc<Vec<InstanceType>>> {
    let catalogue = std::sync::Arc::new(instance_types);
    pools
        .iter()
        .map(|p| (p.name_any(), catalogue.clone()))
        .collect()
}

/// The solve input from the objects, through the controllers' snapshot, and the state it was
/// built from.
fn input_and_state(
    objects: Vec<Object>,
    instance_types: Vec<InstanceType>,
) -> anyhow::Result<(SolveInput, ClusterState)> {
    let (input, state, _) = input_state_snapshot(objects, instance_types)?;
    Ok((input, state))
}

/// The solve input from the objects, for a process that ends soon after: the state and the
/// rest of the snapshot (the pending pods by key) are left allocated, not freed. Freeing them
/// (40,000 pods' maps, keys and conversions' reference counts in a whole-cluster dump: ~10-15
/// ms of one core, while the other waits) would only give the memory back to an allocator that
/// is about to be discarded.
fn input_leaving_state(
    objects: Vec<Object>,
    instance_types: Vec<InstanceType>,
) -> anyhow::Result<SolveInput> {
    let (input, state, snap) = input_state_snapshot(objects, instance_types)?;
    std::mem::forget(state);
    std::mem::forget(snap);
    Ok(input)
}

/// The solve input, the state it was built from, and what else the snapshot holds.
fn input_state_snapshot(
    objects: Vec<Object>,
    instance_types: Vec<InstanceType>,
) -> anyhow::Result<(SolveInput, ClusterState, snapshot::Snapshot)> {
    let (state, invalid) = load(objects)?;
    let pools = snapshot::pools(&state);
    let types = pool_types(&pools, instance_types);
    let mut snap = snapshot::build(&state, &pools, types, stowage_clock::SystemClock.now());
    let input = checked(&mut snap, &invalid)?;
    Ok((input, state, snap))
}

/// The snapshot's input (taken out of it), unless an object or NodePool is unusable or
/// nothing could hold pods.
fn checked(snap: &mut snapshot::Snapshot, invalid: &[String]) -> anyhow::Result<SolveInput> {
    if !snap.skipped.is_empty() {
        let errors: Vec<String> = snap
            .skipped
            .iter()
            .map(|e| stowage_controller::error::Chain(e).to_string())
            .collect();
        bail!("the input cannot be read: {}", errors.join("; "));
    }
    if !invalid.is_empty() {
        bail!("invalid NodePool: {}", invalid.join("; "));
    }
    if snap.input.nodepools.is_empty() && snap.input.nodes.is_empty() {
        bail!("no NodePool and no Node in the input: nothing could hold the pods");
    }
    Ok(std::mem::take(&mut snap.input))
}

/// What `--consolidate` prints.
#[derive(Debug, serde::Serialize)]
pub struct Consolidation {
    /// Nodes the disruption controller could act on now (not blocked), and those blocked.
    pub candidates: usize,
    pub blocked: Vec<Blocked>,
    /// The command the first method that finds one would carry out (none: nothing to do).
    pub command: Option<stowage_controller::disruption::Plan>,
    pub savings_per_hour: f64,
}

/// A node that must not be disrupted, and why.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Blocked {
    pub node: String,
    pub reason: String,
}

/// One disruption round over the objects, as the controller runs it at `now` (budgets of the
/// pools applied). Nodes with a NodePool label and no NodeClaim get one, initialized when the
/// Node was created.
pub fn consolidation(
    mut state: ClusterState,
    types: Vec<InstanceType>,
    now: jiff::Timestamp,
    max_instance_types: usize,
) -> Consolidation {
    use stowage_controller::disruption;
    add_claims_for_nodes(&mut state);
    let catalogue = std::sync::Arc::new(types);
    let types: BTreeMap<String, std::sync::Arc<Vec<InstanceType>>> = state
        .nodepools()
        .map(|p| (p.name_any(), catalogue.clone()))
        .collect();
    let round = disruption::prepare(&state, &types, now);
    let options = stowage_solver::consolidate::ConsolidationOptions {
        solve: SolveOptions {
            max_instance_types,
            ..SolveOptions::default()
        },
        ..Default::default()
    };
    let choice = disruption::choose(&round, &options);
    let blocked = round
        .candidates
        .eligible
        .iter()
        .filter_map(|e| {
            Some(Blocked {
                node: e.candidate.node.clone(),
                reason: e.blocked.clone()?,
            })
        })
        .collect::<Vec<_>>();
    Consolidation {
        candidates: round.candidates.eligible.len() - blocked.len(),
        blocked,
        savings_per_hour: choice.plan.as_ref().map_or(0.0, |p| p.savings_per_hour),
        command: choice.plan,
    }
}

/// Gives every Node of a NodePool that has no NodeClaim an initialized one (in place: the state
/// keeps only what decisions need of its pods, so it is not rebuilt from them).
fn add_claims_for_nodes(state: &mut ClusterState) {
    let mut add = Vec::new();
    for node in state.nodes() {
        let mut node = (**node).clone();
        let name = node.name_any();
        let pid = node
            .spec
            .get_or_insert_with(Default::default)
            .provider_id
            .get_or_insert_with(|| format!("plan:///{name}"))
            .clone();
        if state.claim_by_provider_id(&pid).is_none()
            && let Some(pool) = node.labels().get(labels::NODEPOOL).cloned()
        {
            let created = node
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(jiff::Timestamp::UNIX_EPOCH, |t| t.0);
            let mut claim = stowage_api::NodeClaim::new(&name, Default::default());
            let mut claim_labels = BTreeMap::new();
            for key in [
                labels::NODEPOOL,
                labels::INSTANCE_TYPE,
                labels::ZONE,
                labels::CAPACITY_TYPE,
            ] {
                if let Some(v) = node.labels().get(key) {
                    claim_labels.insert(key.to_string(), v.clone());
                }
            }
            claim_labels.insert(labels::NODEPOOL.to_string(), pool.clone());
            claim.metadata.labels = Some(claim_labels);
            claim.metadata.creation_timestamp = Some(Time(created));
            // No expiry: a Node alone does not say when it expires.
            claim.spec.expire_after = stowage_api::NillableDuration::NEVER;
            let status = claim.status_mut();
            status.provider_id = Some(pid.clone());
            status.node_name = Some(name.clone());
            for c in [
                stowage_api::conditions::LAUNCHED,
                stowage_api::conditions::REGISTERED,
                stowage_api::conditions::INITIALIZED,
            ] {
                status.set_true(c, c, created);
            }
            add.push((node, claim));
        }
    }
    for (node, claim) in add {
        state.apply_node(node);
        state.apply_claim(claim);
    }
}

/// The consolidation report as a table.
pub fn render_consolidation(c: &Consolidation) -> String {
    let mut out = String::new();
    match &c.command {
        None => {
            let _ = writeln!(
                out,
                "Nothing to consolidate ({} candidate node(s), {} blocked).",
                c.candidates,
                c.blocked.len()
            );
        }
        Some(plan) => {
            let _ = writeln!(out, "{}: {}", plan.method.as_str(), plan.describe());
            let mut rows = vec![[
                "NODE".to_string(),
                "NODECLAIM".into(),
                "NODEPOOL".into(),
                "PRICE/H".into(),
            ]];
            for t in &plan.targets {
                rows.push([
                    t.node.clone(),
                    t.claim.clone(),
                    t.nodepool.clone(),
                    format!("${:.4}", t.price_per_hour),
                ]);
            }
            out.push_str(&table(&rows));
            for r in &plan.replacements {
                let _ = writeln!(
                    out,
                    "replacement in {}: {} ({} option(s)), from ${:.4}/h",
                    r.nodepool,
                    r.instance_type_options.first().map_or("-", String::as_str),
                    r.instance_type_options.len(),
                    r.cheapest_price
                );
            }
            let _ = writeln!(out, "Saves ${:.4}/h.", c.savings_per_hour);
        }
    }
    for b in &c.blocked {
        let _ = writeln!(out, "blocked {}: {}", b.node, b.reason);
    }
    out
}

/// A pod without `spec.nodeName` and without a `PodScheduled` condition, as the scheduler would
/// report it after failing to place it at `now`; other pods as they are.
fn as_scheduler_reports(mut pod: core::Pod, now: jiff::Timestamp) -> core::Pod {
    let bound = is_bound(pod.spec.as_ref().and_then(|s| s.node_name.as_deref()));
    let status = pod.status.get_or_insert_with(Default::default);
    mark_unschedulable(bound, &mut status.conditions, now);
    pod
}

/// A pod with a node name is bound.
fn is_bound(node_name: Option<&str>) -> bool {
    node_name.is_some_and(|n| !n.is_empty())
}

/// [`as_scheduler_reports`] on a pod's conditions: a pod neither `bound` nor with a
/// `PodScheduled` condition gets `PodScheduled=False/Unschedulable`.
fn mark_unschedulable(
    bound: bool,
    conditions: &mut Option<Vec<core::PodCondition>>,
    now: jiff::Timestamp,
) {
    let conditions = conditions.get_or_insert_with(Vec::new);
    if !bound && !conditions.iter().any(|c| c.type_ == "PodScheduled") {
        conditions.push(core::PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some("stowage plan: not bound to a node".into()),
            last_transition_time: Some(Time(now)),
            ..Default::default()
        });
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

fn values<'a>(c: &'a stowage_solver::NewClaim, key: &str) -> &'a [String] {
    c.requirements
        .iter()
        .find(|r| r.key == key)
        .map_or(&[], |r| r.values.as_slice())
}

/// The plan as a human-readable report.
pub fn render_table(plan: &Plan) -> String {
    let mut out = String::new();
    let mut rows = vec![[
        "NODECLAIM".to_string(),
        "NODEPOOL".into(),
        "CAPACITY".into(),
        "ZONES".into(),
        "CHEAPEST".into(),
        "$/HOUR".into(),
        "PODS".into(),
        "CPU".into(),
        "MEMORY".into(),
        "OPTIONS".into(),
    ]];
    for c in &plan.new_claims {
        rows.push([
            c.name.clone(),
            c.nodepool.clone(),
            values(c, labels::CAPACITY_TYPE).join(","),
            values(c, labels::ZONE).join(","),
            c.instance_type_options.first().cloned().unwrap_or_default(),
            format!("{:.4}", c.cheapest_price),
            c.pods.len().to_string(),
            format_resource("cpu", c.requests.cpu_millis()),
            format_resource("memory", c.requests.memory_bytes()),
            c.instance_type_options.len().to_string(),
        ]);
    }
    let _ = writeln!(
        out,
        "New nodes: {} (${:.4}/hour)",
        plan.new_claims.len(),
        plan.cost_per_hour()
    );
    if !plan.new_claims.is_empty() {
        out.push_str(&table(&rows));
    }
    let _ = writeln!(
        out,
        "\nPods on existing nodes: {}",
        plan.existing_placements.len()
    );
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for n in plan.existing_placements.values() {
        *per_node.entry(n).or_default() += 1;
    }
    if !per_node.is_empty() {
        let mut rows = vec![["NODE".to_string(), "PODS".into()]];
        rows.extend(per_node.iter().map(|(n, c)| [n.to_string(), c.to_string()]));
        out.push_str(&table(&rows));
    }
    let _ = writeln!(out, "\nUnschedulable pods: {}", plan.unschedulable.len());
    if !plan.unschedulable.is_empty() {
        let mut rows = vec![["POD".to_string(), "REASON".into()]];
        rows.extend(
            plan.unschedulable
                .iter()
                .map(|(p, r)| [p.clone(), r.clone()]),
        );
        out.push_str(&table(&rows));
    }
    out
}

fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i + 1 == N {
                    c.clone()
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOLS: &str = r#"
apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: default}
spec:
  template:
    spec:
      nodeClassRef: {group: aws.stowage.dev, kind: EC2NodeClass, name: default}
---
apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: gpu}
spec:
  weight: 10
  template:
    spec:
      nodeClassRef: {group: aws.stowage.dev, kind: EC2NodeClass, name: default}
      taints: [{key: dedicated, value: gpu, effect: NoSchedule}]
"#;

    const PODS: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: web-1, namespace: shop, labels: {app: web}}
  spec:
    containers: [{name: app, image: nginx, resources: {requests: {cpu: 500m, memory: 512Mi}}}]
- apiVersion: v1
  kind: Pod
  metadata: {name: web-2, namespace: shop, labels: {app: web}}
  spec:
    containers: [{name: app, image: nginx, resources: {requests: {cpu: 500m, memory: 512Mi}}}]
- apiVersion: v1
  kind: Pod
  metadata: {name: huge, namespace: shop}
  spec:
    containers: [{name: app, image: nginx, resources: {requests: {cpu: "5000"}}}]
- apiVersion: v1
  kind: Pod
  metadata: {name: running, namespace: shop}
  spec:
    nodeName: node-a
    containers: [{name: app, image: nginx, resources: {requests: {cpu: "1"}}}]
"#;

    const NODES: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: node-a
  labels: {stowage.dev/nodepool: default, topology.kubernetes.io/zone: test-zone-a}
status:
  allocatable: {cpu: 1500m, memory: 4Gi, pods: "10"}
"#;

    fn files(extra: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        let mut v = vec![
            (PathBuf::from("pools.yaml"), POOLS.to_string()),
            (PathBuf::from("pods.yaml"), PODS.to_string()),
            (PathBuf::from("nodes.yaml"), NODES.to_string()),
        ];
        v.extend(extra.iter().map(|(n, t)| (PathBuf::from(n), t.to_string())));
        v
    }

    /// Three 1-vCPU on-demand nodes of pool `od`, each running one 600m pod of a ReplicaSet,
    /// and pod `lone` (no owner) on node `n3`.
    fn half_empty_nodes() -> String {
        let mut y = String::from(
            "apiVersion: stowage.dev/v1\nkind: NodePool\nmetadata: {name: od}\nspec:\n  disruption: {budgets: [{nodes: '100%'}]}\n  template:\n    spec:\n      nodeClassRef: {group: aws.stowage.dev, kind: EC2NodeClass, name: default}\n      requirements: [{key: stowage.dev/capacity-type, operator: In, values: [on-demand]}]\n",
        );
        for i in 0..4 {
            y.push_str(&format!(
                "---\napiVersion: v1\nkind: Node\nmetadata:\n  name: n{i}\n  creationTimestamp: '2026-01-01T00:00:00Z'\n  labels: {{stowage.dev/nodepool: od, node.kubernetes.io/instance-type: fake-it-0, topology.kubernetes.io/zone: test-zone-a, stowage.dev/capacity-type: on-demand, kubernetes.io/hostname: n{i}}}\nspec: {{providerID: 'aws:///test-zone-a/i-{i}'}}\nstatus:\n  allocatable: {{cpu: '1', memory: 2Gi, pods: '10'}}\n  capacity: {{cpu: '1', memory: 2Gi, pods: '10'}}\n  conditions: [{{type: Ready, status: 'True'}}]\n"
            ));
        }
        for (pod, node, owned) in [
            ("a", "n0", true),
            ("b", "n1", true),
            ("c", "n2", true),
            ("lone", "n3", false),
        ] {
            let owner = if owned {
                "\n  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web, uid: u1, controller: true}]"
            } else {
                ""
            };
            y.push_str(&format!(
                "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: default{owner}\nspec:\n  nodeName: {node}\n  containers: [{{name: app, resources: {{requests: {{cpu: 600m, memory: 512Mi}}}}}}]\nstatus: {{phase: Running}}\n"
            ));
        }
        y
    }

    #[test]
    fn consolidate_plans_what_the_controller_would_do() {
        let objects = parse_files(
            &[(PathBuf::from("c.yaml"), half_empty_nodes())],
            Reader::Fast,
        )
        .unwrap();
        let state = state_from(objects).unwrap();
        let now = "2026-01-01T01:00:00Z".parse().unwrap();
        let c = consolidation(state, stowage_solver::catalog::karpenter_shape(8), now, 60);
        // n3 holds a pod that would be lost; n0..n2 (3 x $0.30/h) fit one 2-vCPU node ($0.60/h).
        assert_eq!(c.candidates, 3);
        assert_eq!(c.blocked.len(), 1);
        assert_eq!(c.blocked[0].node, "n3");
        assert!(
            c.blocked[0]
                .reason
                .contains("default/lone has no controller owner")
        );
        let plan = c.command.as_ref().unwrap();
        assert_eq!(plan.method.as_str(), "multi-node");
        let nodes: Vec<&str> = plan.targets.iter().map(|t| t.node.as_str()).collect();
        assert_eq!(nodes, ["n0", "n1", "n2"]);
        assert_eq!(plan.replacements.len(), 1);
        assert!(
            (c.savings_per_hour - 0.3).abs() < 1e-6,
            "{}",
            c.savings_per_hour
        );
        let table = render_consolidation(&c);
        assert!(
            table.contains(
                "multi-node: deleting 3 nodes, replacing with 1 fake-it-1 on-demand, saves $0.30/h"
            ),
            "{table}"
        );
        assert!(table.contains("Saves $0.3000/h."), "{table}");
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["command"]["method"], "multi-node");
    }

    #[test]
    fn plans_from_yaml_fixtures() {
        let input = build_input(&files(&[]), stowage_solver::catalog::karpenter_shape(20)).unwrap();
        assert_eq!(input.pods.len(), 3, "the bound pod is not pending");
        assert_eq!(input.nodes[0].pods.len(), 1);
        assert_eq!(input.nodepools.len(), 2);
        let plan = stowage_solver::solve(&input, &SolveOptions::default());
        // 500m of node-a is free: one web pod goes there, the other gets a new node.
        assert_eq!(plan.existing_placements.len(), 1);
        assert_eq!(plan.new_claims.len(), 1);
        assert_eq!(
            plan.new_claims[0].nodepool, "default",
            "the gpu pool's taint is not tolerated"
        );
        assert!(
            plan.unschedulable["shop/huge"].contains("no instance type has room"),
            "{plan:?}"
        );
        let table = render_table(&plan);
        assert!(table.contains("New nodes: 1"), "{table}");
        assert!(table.contains("shop/huge"), "{table}");
        assert!(table.contains("node-a  1"), "{table}");
    }

    /// `--spot-interruption-rates`: an often-interrupted pool is priced up and loses to another.
    #[test]
    fn learnt_interruption_rates_price_a_hot_pool_up() {
        let types = stowage_solver::catalog::karpenter_shape(20);
        let plain = stowage_solver::solve(
            &build_input(&files(&[]), types.clone()).unwrap(),
            &SolveOptions::default(),
        );
        let before = &plain.new_claims[0];
        let hot = before.instance_type_options[0].clone();
        let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let mut book = stowage_controller::interruption::rates::RateBook::new(
            std::time::Duration::from_secs(6 * 3600),
        );
        for zone in stowage_solver::catalog::ZONES {
            for _ in 0..3 {
                book.record_interruption(&hot, zone, now);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rates.json");
        std::fs::write(&path, book.to_json()).unwrap();
        let mut adjusted = types.clone();
        assert_eq!(apply_rates(&mut adjusted, &path, 1.0, now).unwrap(), 3);
        let plan = stowage_solver::solve(
            &build_input(&files(&[]), adjusted.clone()).unwrap(),
            &SolveOptions::default(),
        );
        let after = &plan.new_claims[0];
        assert_ne!(after.instance_type_options[0], hot, "{plan:?}");
        assert!(after.cheapest_price > before.cheapest_price, "{plan:?}");
        // Weight 0 is pure price: the same plan as without rates.
        let mut pure = types.clone();
        apply_rates(&mut pure, &path, 0.0, now).unwrap();
        let same = stowage_solver::solve(
            &build_input(&files(&[]), pure).unwrap(),
            &SolveOptions::default(),
        );
        assert_eq!(same, plain);
        std::fs::write(&path, "{").unwrap();
        assert!(apply_rates(&mut adjusted, &path, 1.0, now).is_err());
    }

    #[test]
    fn bad_input_names_document_and_field() {
        let bad_kind = "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n";
        let err = build_input(&files(&[("svc.yaml", bad_kind)]), vec![]).unwrap_err();
        assert!(
            format!("{err:#}").contains("svc.yaml document 1: unknown kind \"Service\""),
            "{err:#}"
        );

        let bad_qty = PODS.replace("cpu: 500m", "cpu: 5OOm");
        let err = build_input(
            &[
                (PathBuf::from("pods.yaml"), bad_qty),
                (PathBuf::from("pools.yaml"), POOLS.into()),
            ],
            vec![],
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("Pod shop/web-1: spec.containers[0].resources.requests.cpu"),
            "{msg}"
        );

        let no_kind = "metadata: {name: x}\n";
        let err = build_input(&files(&[("x.yaml", no_kind)]), vec![]).unwrap_err();
        assert!(
            format!("{err:#}").contains("x.yaml document 1: field kind is missing"),
            "{err:#}"
        );

        let bad_pool = POOLS.replace(
            "name: default}\nspec:",
            "name: default}\nspec:\n  limits: {cpu: lots}",
        );
        let err = build_input(&[(PathBuf::from("pools.yaml"), bad_pool)], vec![]).unwrap_err();
        assert!(
            format!("{err:#}").contains("NodePool default: spec.limits.cpu"),
            "{err:#}"
        );

        // restoreSpotAfter is read by the disruption controller: accepted.
        let restore = POOLS.replace(
            "name: default}\nspec:",
            "name: default}\nspec:\n  capacityMix: {restoreSpotAfter: 1h}",
        );
        let objects = parse_files(&[(PathBuf::from("pools.yaml"), restore)], Reader::Fast).unwrap();
        state_from(objects).unwrap();

        let list_without_items = "apiVersion: v1\nkind: List\n";
        let err = build_input(&files(&[("l.yaml", list_without_items)]), vec![]).unwrap_err();
        assert!(
            format!("{err:#}").contains("field items is missing"),
            "{err:#}"
        );
    }

    fn pod_json(i: usize) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("job-{i}"), "namespace": "batch", "labels": {"app": "job"}},
            "spec": {"containers": [{"name": "c", "image": "busybox",
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}]},
            "status": {"phase": "Pending"}
        })
    }

    #[test]
    fn reads_kubectl_json_and_dumps_larger_than_the_yaml_defaults() {
        // `kubectl get pods -A -o json`: one List object.
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List",
            "items": (0..9_000).map(pod_json).collect::<Vec<_>>()});
        let json = serde_json::to_string(&list).unwrap();
        let input = build_input(
            &[
                (PathBuf::from("pools.yaml"), POOLS.to_string()),
                (PathBuf::from("pods.json"), json),
            ],
            stowage_solver::catalog::karpenter_shape(20),
        )
        .unwrap();
        assert_eq!(input.pods.len(), 9_000);
        // 2,000 YAML documents (the YAML reader's default stops at 1,024) and a 9,000-pod List.
        let docs: Vec<String> = (0..2_000)
            .map(|i| serde_json::to_string(&pod_json(i)).unwrap())
            .collect();
        let many_docs = docs.join("\n---\n");
        let input = build_input(
            &[
                (PathBuf::from("pools.yaml"), POOLS.to_string()),
                (PathBuf::from("docs.yaml"), many_docs),
            ],
            stowage_solver::catalog::karpenter_shape(20),
        )
        .unwrap();
        assert_eq!(input.pods.len(), 2_000);
        let yaml_list = serde_saphyr::to_string(&list).unwrap();
        let input = build_input(
            &[
                (PathBuf::from("pools.yaml"), POOLS.to_string()),
                (PathBuf::from("pods.yaml"), yaml_list),
            ],
            stowage_solver::catalog::karpenter_shape(20),
        )
        .unwrap();
        assert_eq!(input.pods.len(), 9_000);
    }

    #[test]
    fn the_same_object_twice_is_refused() {
        let err = build_input(
            &files(&[("pods-again.yaml", PODS)]),
            stowage_solver::catalog::karpenter_shape(20),
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("pods-again.yaml document 1 items[0]")
                && text.contains("Pod shop/web-1 is also in pods.yaml document 1 items[0]"),
            "{text}"
        );
    }

    #[test]
    fn a_negative_request_is_refused_with_its_field() {
        let bad = "apiVersion: v1\nkind: Pod\nmetadata: {name: neg, namespace: shop}\nspec:\n  containers: [{name: app, image: x, resources: {requests: {cpu: \"-2\"}}}]\n";
        let err = build_input(
            &files(&[("neg.yaml", bad)]),
            stowage_solver::catalog::karpenter_shape(20),
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("shop/neg") && text.contains("requests.cpu: must not be negative"),
            "{text}"
        );
    }

    #[test]
    fn unknown_nodepool_fields_are_refused_by_name() {
        let pool = POOLS.replace("  weight: 10\n", "  weight: 10\n  wieght: 20\n");
        assert_ne!(pool, POOLS);
        let err = build_input(
            &[
                (PathBuf::from("pools.yaml"), pool),
                (PathBuf::from("pods.yaml"), PODS.to_string()),
            ],
            stowage_solver::catalog::karpenter_shape(20),
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("pools.yaml document 2 (NodePool gpu): unknown field spec.wieght"),
            "{text}"
        );
    }

    /// Pods using every field the provisioner reads, and fields it does not (env, volumes,
    /// probes), in the states it tells apart (pending, bound, terminating, preempting, DaemonSet,
    /// mirror, finished), one with `kind` after its body: a `kind: List` as JSON text.
    fn rich_pods() -> String {
        let pending = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "rich", "namespace": "shop", "uid": "u-1",
                "labels": {"app": "web", "tier": "front"},
                "annotations": {"stowage.dev/do-not-disrupt": "true", "note": "x"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
                    "uid": "u-2", "controller": true}],
                "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
            "spec": {
                "containers": [
                    {"name": "app", "image": "nginx", "env": [{"name": "A", "value": "1"}],
                     "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                                   "limits": {"cpu": "1", "nvidia.com/gpu": "1"}},
                     "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}],
                     "livenessProbe": {"httpGet": {"path": "/", "port": 80}},
                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                    {"name": "side", "image": "envoy", "resources": {"limits": {"memory": "1Gi"}}}
                ],
                "initContainers": [
                    {"name": "proxy", "image": "p", "restartPolicy": "Always",
                     "resources": {"requests": {"cpu": "100m"}},
                     "ports": [{"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"}]},
                    {"name": "migrate", "image": "m", "resources": {"requests": {"cpu": "3", "memory": "4Gi"}}}
                ],
                "overhead": {"cpu": "50m"},
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "priority": 1000,
                "priorityClassName": "high",
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule"},
                                {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]},
                            {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node-x"]}]}]},
                        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "preference":
                            {"matchExpressions": [{"key": "stowage.dev/capacity-type", "operator": "In", "values": ["spot"]}]}}]},
                    "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
                        "labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": "topology.kubernetes.io/zone"}]},
                    "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50,
                        "podAffinityTerm": {"labelSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]},
                            "namespaces": ["shop", "other"], "topologyKey": "kubernetes.io/hostname"}}]}
                },
                "topologySpreadConstraints": [{"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "DoNotSchedule", "minDomains": 3, "matchLabelKeys": ["tier"],
                    "labelSelector": {"matchLabels": {"app": "web"}}}],
                "volumes": [{"name": "data", "emptyDir": {}}]
            },
            "status": {"phase": "Pending", "qosClass": "Burstable", "conditions": [{"type": "PodScheduled",
                "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}]}
        });
        let mut pods = vec![pending.to_string()];
        let variant = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
            let mut p = pending.clone();
            p["metadata"]["name"] = name.into();
            edit(&mut p);
            p.to_string()
        };
        pods.push(variant("bound", &|p| {
            p["spec"]["nodeName"] = "node-a".into();
            p["status"] = serde_json::json!({"phase": "Running"});
        }));
        pods.push(variant("deleting", &|p| {
            p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        }));
        pods.push(variant("preempting", &|p| {
            p["status"]["nominatedNodeName"] = "node-a".into();
        }));
        pods.push(variant("ds", &|p| {
            p["metadata"]["ownerReferences"][0]["kind"] = "DaemonSet".into();
        }));
        pods.push(variant("mirror", &|p| {
            p["metadata"]["annotations"]["kubernetes.io/config.mirror"] = "abc".into();
        }));
        pods.push(variant("done", &|p| {
            p["status"]["phase"] = "Succeeded".into()
        }));
        pods.push(variant("unscheduled", &|p| {
            p["status"] = serde_json::json!({"phase": "Pending"});
        }));
        // `kind` after the body (the fast reader keeps those fields until it knows the kind).
        let mut late = pending.clone();
        late["metadata"]["name"] = "kind-last".into();
        let fields: Vec<String> = ["metadata", "spec", "status", "apiVersion", "kind"]
            .iter()
            .map(|k| format!("{:?}:{}", k, late[k]))
            .collect();
        pods.push(format!("{{{}}}", fields.join(",")));
        format!(
            "{{\"apiVersion\":\"v1\",\"items\":[{}],\"kind\":\"List\"}}",
            pods.join(",\n")
        )
    }

    /// What the state keeps of each pod that `plan` reads (the consolidation reads these), by
    /// key.
    fn kept_facts(state: &ClusterState) -> BTreeMap<String, String> {
        state
            .pods()
            .map(|p| {
                let facts = format!(
                    "{:?} {:?} {:?} {} {:?} {} {} {} {} {:?} {:?}",
                    p.node_name(),
                    p.phase,
                    p.ready,
                    p.priority,
                    p.deletion_timestamp,
                    p.daemonset,
                    p.static_pod,
                    p.has_controller,
                    p.tier,
                    p.annotations,
                    p.request(),
                );
                (p.key().to_string(), facts)
            })
            .collect()
    }

    /// The fast reader decodes every Pod on its reading threads straight into what the state
    /// keeps (`PreparedPod`); the exact reader builds the whole `k8s_openapi` Pod and the state
    /// converts it (`apply_pod`). Both must give the same solver input and keep the same facts,
    /// whichever way the fast reader reads the file.
    #[test]
    fn the_fast_reader_agrees_with_the_exact_one() {
        let json = rich_pods();
        assert!(json.contains("\"kind\":\"Pod\"}"), "a pod with kind last");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        let pieces = lean::json_reader_with(pretty.as_bytes(), 2, 700, &Prepare::new());
        let Some(pieces) = pieces else {
            panic!("the fast reader reads it in pieces");
        };
        let yaml = serde_saphyr::to_string(&value).unwrap();
        assert!(lean::json_documents(&json).is_some());
        assert!(lean::yaml_documents(&yaml, yaml_options).is_some());
        for (name, source) in [
            ("pods.json", Source::Text(json.clone(), Reader::Fast)),
            ("pods.yaml", Source::Text(yaml, Reader::Fast)),
            ("pieces.json", Source::Documents(pieces)),
        ] {
            let types = stowage_solver::catalog::karpenter_shape(20);
            let fast = parse_sources(vec![
                (
                    PathBuf::from("pools.yaml"),
                    Source::Text(POOLS.to_string(), Reader::Fast),
                ),
                (
                    PathBuf::from("nodes.yaml"),
                    Source::Text(NODES.to_string(), Reader::Fast),
                ),
                (PathBuf::from(name), source),
            ])
            .unwrap();
            assert!(
                fast.iter().all(|o| !matches!(o, Object::Pod(_))),
                "{name}: every Pod prepared as it was read"
            );
            let (fast, fast_state) = input_and_state(fast, types.clone()).unwrap();
            let files = [
                (PathBuf::from("pools.yaml"), POOLS.to_string()),
                (PathBuf::from("nodes.yaml"), NODES.to_string()),
                (PathBuf::from("pods.json"), json.clone()),
            ];
            let exact = parse_files(&files, Reader::Exact).unwrap();
            assert!(exact.iter().all(|o| !matches!(o, Object::Prepared(_))));
            let (exact, exact_state) = input_and_state(exact, types).unwrap();
            assert_eq!(fast, exact, "{name}");
            assert_eq!(fast_state.pod_count(), 9, "{name}");
            assert_eq!(kept_facts(&fast_state), kept_facts(&exact_state), "{name}");
            let pending: Vec<&str> = fast.pods.iter().map(|p| p.name.as_str()).collect();
            assert_eq!(pending, ["kind-last", "rich", "unscheduled"], "{name}");
            assert_eq!(fast.nodes[0].pods.len(), 1, "{name}: the bound pod");
            let rich = &fast.pods[1];
            assert!(
                !rich.host_ports.is_empty()
                    && !rich.topology_spread.is_empty()
                    && !rich.pod_affinity.is_empty()
                    && !rich.preferred_pod_anti_affinity.is_empty()
                    && rich.required_node_affinity.len() == 2
                    && rich.owner.as_deref() == Some("ReplicaSet/web-1")
                    && rich.priority == 1000,
                "{rich:?}"
            );
        }
    }

    #[test]
    fn json_files_are_parsed_as_they_are_read_and_agree_with_their_text() {
        let dir = tempfile::tempdir().unwrap();
        let value: serde_json::Value = serde_json::from_str(&rich_pods()).unwrap();
        let pretty = serde_json::to_string_pretty(&value).unwrap();
        let yaml = serde_saphyr::to_string(&value).unwrap();
        let v2 = "{\"apiVersion\": \"v2\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"x\"}, \"spec\": {\"containers\": []}}";
        let mut sources = Vec::new();
        for (name, text, expected) in [
            ("pods.json", pretty.as_str(), "documents"),
            ("pods.yaml", yaml.as_str(), "text for the fast reader"),
            ("v2.json", v2, "text for the exact reader"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let source = read_source(&path).unwrap();
            let got = match &source {
                Source::Documents(_) => "documents",
                Source::Text(t, Reader::Fast) if t == text => "text for the fast reader",
                Source::Text(t, Reader::Exact) if t == text => "text for the exact reader",
                Source::Text(..) => "another text",
            };
            assert_eq!(got, expected, "{name}");
            if name != "v2.json" {
                sources.push((PathBuf::from(name), source));
            }
        }
        // The same pods twice: the streamed file and the YAML text are read alike.
        let err = parse_sources(sources).err().unwrap();
        assert!(
            format!("{err:#}").contains("pods.yaml document 1 items[0] (Pod rich): Pod shop/rich is also in pods.json document 1 items[0] (Pod rich)"),
            "{err:#}"
        );
        let types = stowage_solver::catalog::karpenter_shape(20);
        let files = [
            (PathBuf::from("pools.yaml"), POOLS.to_string()),
            (PathBuf::from("pods.json"), pretty.clone()),
        ];
        let exact = input_from(parse_files(&files, Reader::Exact).unwrap(), types.clone()).unwrap();
        let path = dir.path().join("pods.json");
        let streamed = vec![
            (
                PathBuf::from("pools.yaml"),
                Source::Text(POOLS.to_string(), Reader::Fast),
            ),
            (PathBuf::from("pods.json"), read_source(&path).unwrap()),
        ];
        let streamed = input_from(parse_sources(streamed).unwrap(), types).unwrap();
        assert_eq!(streamed, exact);
        assert_eq!(streamed.pods.len(), 3);
    }

    #[test]
    fn the_exact_reader_takes_what_the_fast_one_declines() {
        // A Pod of another apiVersion and a List without kind on its items: declined, then
        // read (or refused) exactly as before.
        let v2 = "{\"apiVersion\": \"v2\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"x\"}, \"spec\": {\"containers\": []}}";
        assert!(lean::json_documents(v2).is_none());
        let err = build_input(&files(&[("v2.json", v2)]), vec![]).unwrap_err();
        assert!(
            format!("{err:#}").contains("v2.json document 1 (Pod x): invalid Pod"),
            "{err:#}"
        );
        let no_kind = "{\"kind\": \"PodList\", \"items\": [{\"metadata\": {\"name\": \"x\"}}]}";
        assert!(lean::json_documents(no_kind).is_none());
        let err = build_input(&files(&[("l.json", no_kind)]), vec![]).unwrap_err();
        assert!(
            format!("{err:#}").contains("l.json document 1 items[0]: field kind is missing"),
            "{err:#}"
        );
    }

    #[test]
    fn an_empty_plan_costs_zero_not_minus_zero() {
        let text = render_table(&Plan::default());
        assert!(text.starts_with("New nodes: 0 ($0.0000/hour)"), "{text}");
    }
    /// A seed-shaped batch (the seed scenario's workloads, selecting the labels the seed estate's
    /// node groups carry) against the NodePools `stowage migrate` made of that estate (its golden
    /// output, EC2NodeClasses included) on the embedded AWS catalogue: everything is placed, each
    /// workload on the pool its node group was.
    #[test]
    fn the_migrated_seed_estate_places_a_seed_shaped_batch() {
        let pools = include_str!("../../../migrate/testdata/seed/golden/nodepools.yaml");
        let classes = include_str!("../../../migrate/testdata/seed/golden/nodeclasses.yaml");
        // (workload, replicas, cpu, memory, toleration, gaudi, expected pool prefix)
        type Workload<'a> = (
            &'a str,
            usize,
            &'a str,
            &'a str,
            Option<&'a str>,
            bool,
            &'a str,
        );
        let batch: &[Workload] = &[
            (
                "management",
                3,
                "1",
                "2Gi",
                Some("dedicated"),
                false,
                "mgmt-spot",
            ),
            (
                "management",
                2,
                "4",
                "32Gi",
                Some("dedicated"),
                false,
                "mgmt-spot",
            ),
            (
                "api",
                120,
                "500m",
                "1Gi",
                None,
                false,
                "api-ondemand-us-east-1",
            ),
            (
                "payments",
                30,
                "1",
                "2Gi",
                Some("dedicated"),
                false,
                "payments-ondemand",
            ),
            ("workflows", 250, "1", "2Gi", None, false, "wf-spot"),
            ("spark", 2000, "3", "12Gi", None, false, "spark-spot"),
            (
                "batch",
                50,
                "2",
                "4Gi",
                Some("dedicated"),
                false,
                "batch-spot",
            ),
            (
                "ci",
                20,
                "2",
                "4Gi",
                Some("dedicated"),
                false,
                "legacy-ci-spot",
            ),
            (
                "dl1.24xlarge",
                4,
                "40",
                "300Gi",
                Some("habana.ai/gaudi"),
                true,
                "gaudi-train",
            ),
        ];
        let mut items = Vec::new();
        for (i, (workload, n, cpu, mem, tol, gaudi, _)) in batch.iter().enumerate() {
            let key = if *gaudi { "accel" } else { "workload" };
            for r in 0..*n {
                let mut requests = serde_json::json!({"cpu": cpu, "memory": mem});
                if *gaudi {
                    requests["habana.ai/gaudi"] = "8".into();
                }
                let mut p = serde_json::json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("w{i}-{r}"), "namespace": "seed",
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("w{i}"), "uid": format!("u{i}"), "controller": true}]},
                    "spec": {"nodeSelector": {key: workload},
                        "containers": [{"name": "c", "image": "x", "resources": {"requests": requests}}]}
                });
                if let Some(t) = tol {
                    p["spec"]["tolerations"] = serde_json::json!([{"key": t, "operator": "Exists", "effect": "NoSchedule"}]);
                }
                items.push(p);
            }
        }
        let pods =
            serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
        let input = build_input(
            &[
                (PathBuf::from("nodeclasses.yaml"), classes.to_string()),
                (PathBuf::from("nodepools.yaml"), pools.to_string()),
                (PathBuf::from("batch.json"), pods),
            ],
            stowage_aws_catalog::embedded("us-east-1", &Default::default()).unwrap(),
        )
        .unwrap();
        assert_eq!(input.nodepools.len(), 15);
        let plan = stowage_solver::solve(&input, &SolveOptions::default());
        assert!(plan.unschedulable.is_empty(), "{:#?}", plan.unschedulable);
        let placed: usize = plan.new_claims.iter().map(|c| c.pods.len()).sum();
        assert_eq!(placed, batch.iter().map(|b| b.1).sum::<usize>());
        for (i, b) in batch.iter().enumerate() {
            let prefix = format!("seed/w{i}-");
            for c in plan
                .new_claims
                .iter()
                .filter(|c| c.pods.iter().any(|p| p.starts_with(&prefix)))
            {
                assert!(
                    c.nodepool.starts_with(b.6),
                    "{} landed on {}",
                    b.0,
                    c.nodepool
                );
                if b.5 {
                    assert_eq!(c.instance_type_options, ["dl1.24xlarge"]);
                }
                let capacity = values(c, labels::CAPACITY_TYPE);
                if b.6.contains("ondemand") {
                    assert_eq!(capacity, ["on-demand"], "{}", c.nodepool);
                }
                if b.6.contains("spot") {
                    assert_eq!(capacity, ["spot"], "{}", c.nodepool);
                }
            }
        }
    }
}
