//! `stowage reference`: writes the generated reference documentation (docs/reference): one field
//! reference per CRD from its schema, the metrics from the controllers' registry, the settings of
//! `stowage run` from its command line definition. Tests fail when the committed files differ
//! (`make reference` regenerates them).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;

/// Arguments of `stowage reference`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to write the reference files into (docs/reference in the repository).
    #[arg(long, default_value = "docs/reference")]
    out_dir: PathBuf,
}

/// Every generated file: (file name, content).
pub fn files() -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for crd in stowage_api::crds::all().context("failed to generate CRDs")? {
        out.push((
            stowage_api::reference::file_name(&crd),
            stowage_api::reference::markdown(&crd),
        ));
    }
    out.push(("metrics.md".into(), metrics_markdown()));
    out.push(("settings.md".into(), settings_markdown()));
    Ok(out)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("failed to create {}", args.out_dir.display()))?;
    for (name, text) in files()? {
        let path = args.out_dir.join(name);
        std::fs::write(&path, text)
            .with_context(|| format!("failed to write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

// --- Metrics -----------------------------------------------------------------------------------

/// What the values of each label of each labelled metric (registry name without the `stowage_`
/// prefix) are; the label names themselves come from the registry, and a test checks that this
/// table describes exactly those.
const METRIC_LABELS: &[(&str, &[(&str, &str)])] = &[
    (
        "interruption_messages",
        &[(
            "kind",
            "`spot_interruption`, `rebalance_recommendation`, `scheduled_change`, `state_change`, `unknown`, `malformed`",
        )],
    ),
    (
        "interruption_actions",
        &[(
            "action",
            "`replaced` (cordoned, replacement launched, drained within the notice), `deleted` (state change), `recorded` (rebalance recommendation, no action), `not_owned` (an instance of another cluster), `failed` (retried on redelivery)",
        )],
    ),
    (
        "spot_interruption_rate",
        &[("instance_type", "instance type"), ("zone", "zone")],
    ),
    (
        "nodeclaims_created",
        &[("nodepool", "pool name"), ("reason", "`provisioning`")],
    ),
    ("nodeclaims_launched", &[("nodepool", "pool name")]),
    (
        "disruption_decisions",
        &[
            (
                "method",
                "`emptiness`, `expiry`, `drift`, `capacity-mix-restore`, `multi-node`, `single-node`; `any` for `undone`",
            ),
            ("result", "`executed`, `churn`, `failed`, `undone`"),
        ],
    ),
    ("disruption_eligible_nodes", &[("nodepool", "pool name")]),
    (
        "disruption_budgets_allowed_disruptions",
        &[
            ("nodepool", "pool name"),
            ("reason", "`Empty`, `Underutilized`, `Drifted`"),
        ],
    ),
    ("nodeclaims_registered", &[("nodepool", "pool name")]),
    ("nodeclaims_initialized", &[("nodepool", "pool name")]),
    (
        "nodeclaims_terminated",
        &[
            ("nodepool", "pool name"),
            (
                "reason",
                "`deleted`, `launch_failed`, `launch_timeout`, `registration_timeout`, `garbage_collected`",
            ),
        ],
    ),
    (
        "launch_errors",
        &[
            ("nodepool", "pool name"),
            (
                "code",
                "`insufficient_capacity`, `node_class_not_ready`, `node_class_not_resolved`, `launch`, `throttled`, `api`, `not_found`",
            ),
        ],
    ),
    (
        "eviction_requests",
        &[(
            "result",
            "`evicted`, `blocked` (a PodDisruptionBudget refused), `error`, `deleted_after_grace_period`",
        )],
    ),
    (
        "cloudprovider_calls",
        &[(
            "operation",
            "`create`, `delete`, `get`, `list`, `instance_types`, `is_drifted`, `reconcile_node_class`",
        )],
    ),
    (
        "cloudprovider_errors",
        &[
            ("operation", "as above"),
            ("kind", "as `launch_errors`' `code`"),
        ],
    ),
    (
        "nodes",
        &[
            ("nodepool", "pool name"),
            ("capacity_type", "`spot`, `on-demand`, `reserved`"),
        ],
    ),
    (
        "nodes_allocatable",
        &[
            ("nodepool", "pool name"),
            ("capacity_type", "as `nodes`"),
            (
                "resource",
                "`cpu` (cores), `memory` (bytes), `pods`, extended resources (counts)",
            ),
        ],
    ),
    (
        "nodes_requested",
        &[
            ("nodepool", "pool name"),
            ("capacity_type", "as `nodes`"),
            ("resource", "as `nodes_allocatable`"),
        ],
    ),
    (
        "cost_per_hour_usd",
        &[("nodepool", "pool name"), ("capacity_type", "as `nodes`")],
    ),
    (
        "nodepool_on_demand_base_cores",
        &[("nodepool", "pool name")],
    ),
    (
        "nodepool_on_demand_percent_above_base",
        &[("nodepool", "pool name")],
    ),
    (
        "watch_decode_errors",
        &[(
            "kind",
            "the Kubernetes kind (`Pod`, `Node`, `NodeClaim`, `NodePool`, ...)",
        )],
    ),
    (
        "nodeclaims_drifted",
        &[
            ("nodepool", "pool name"),
            (
                "reason",
                "`NodePoolDrifted`, `RequirementsDrifted`, `NodeClassDrift`, `AMIDrift`, `SubnetDrift`, `SecurityGroupDrift`, `InstanceTypeNotFound`",
            ),
        ],
    ),
];

/// One metric as the registry describes it.
#[derive(Debug, PartialEq)]
struct MetricDesc {
    /// The registered name, `stowage_` prefix included (`_total` excluded for counters).
    name: String,
    kind: String,
    help: String,
    /// Label names in the order the samples carry them (`le` excluded).
    labels: Vec<String>,
}

/// A registry with one series in every metric (a labelled family shows up in the exposition only
/// once it has a series): the controller's own [`stowage_controller::Metrics::example`], which a
/// controller test checks covers every registered metric.
fn populated_metrics() -> stowage_controller::Metrics {
    stowage_controller::Metrics::example()
}

/// The metrics of the populated registry, from its `# HELP` / `# TYPE` lines and samples.
fn registry_metrics() -> Vec<MetricDesc> {
    let text = populated_metrics().encode();
    let mut help: BTreeMap<String, String> = BTreeMap::new();
    let mut out: Vec<MetricDesc> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, h) = rest.split_once(' ').unwrap_or((rest, ""));
            help.insert(name.to_string(), h.trim_end_matches('.').to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push(MetricDesc {
                name: name.to_string(),
                kind: kind.to_string(),
                help: help.get(name).cloned().unwrap_or_default(),
                labels: Vec::new(),
            });
        } else if let Some((_, labels)) = line.split_once('{')
            && let Some(m) = out.last_mut()
            && m.labels.is_empty()
        {
            let labels = labels.split_once('}').map(|(l, _)| l).unwrap_or_default();
            m.labels = labels
                .split(',')
                .filter_map(|pair| pair.split_once('=').map(|(k, _)| k.to_string()))
                .filter(|k| k != "le")
                .collect();
        }
    }
    out
}

/// The series names a metric exposes (`_total` for counters; `_bucket`, `_sum`, `_count` for
/// histograms).
fn series(m: &MetricDesc) -> String {
    match m.kind.as_str() {
        "counter" => format!("`{}_total`", m.name),
        "histogram" => format!("`{0}_bucket`, `{0}_sum`, `{0}_count`", m.name),
        _ => format!("`{}`", m.name),
    }
}

fn metrics_markdown() -> String {
    let mut out = String::from("# Metrics\n\n");
    out.push_str(
        "<!-- Generated from the controllers' registry by `make reference` (`stowage reference --out-dir docs/reference`); do not edit. -->\n\n",
    );
    out.push_str(
        "Every replica serves these on `:8080/metrics` (`--metrics-addr`) in Prometheus text format; \
         the leader-only loops (provisioning, lifecycle, garbage collection, status) update theirs only \
         on the leader, so aggregate with `max` or select `stowage_leader == 1`. Labels are bounded: \
         pool names, capacity types, resource names, reasons and operations, never pod or node names.\n\n",
    );
    out.push_str("| Series | Type | Labels | Meaning |\n|---|---|---|---|\n");
    let labels: BTreeMap<&str, &[(&str, &str)]> = METRIC_LABELS.iter().copied().collect();
    for m in registry_metrics() {
        let short = m.name.strip_prefix("stowage_").unwrap_or(&m.name);
        let values: BTreeMap<&str, &str> = labels
            .get(short)
            .map(|ls| ls.iter().copied().collect())
            .unwrap_or_default();
        let label_text = m
            .labels
            .iter()
            .map(|l| match values.get(l.as_str()) {
                Some(v) => format!("`{l}`: {v}"),
                None => format!("`{l}`"),
            })
            .collect::<Vec<_>>()
            .join("<br>");
        let _ = writeln!(
            out,
            "| {} | {} | {label_text} | {}. |",
            series(&m),
            m.kind,
            m.help
        );
    }
    out
}

// --- Settings ----------------------------------------------------------------------------------

fn settings_markdown() -> String {
    use clap::Args as _;
    let cmd = super::run::Args::augment_args(clap::Command::new("run"));
    let mut out = String::from("# Settings of `stowage run`\n\n");
    out.push_str(
        "<!-- Generated from the command line definition by `make reference` (`stowage reference --out-dir docs/reference`); do not edit. -->\n\n",
    );
    out.push_str(
        "Each setting is a flag or its environment variable (the flag wins). The Helm chart sets them \
         from `values.yaml` (`settings.<flagInCamelCase>`, e.g. `settings.batchIdleDuration`; the \
         addresses from `metrics.port` and `healthProbe.port`; `--namespace` is the release \
         namespace and `--identity` the pod name).\n\n",
    );
    out.push_str("| Flag | Environment | Default | Description |\n|---|---|---|---|\n");
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        if long == "help" || long == "version" {
            continue;
        }
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        let default = if defaults.is_empty() {
            if arg.is_required_set() {
                "required".to_string()
            } else {
                "unset".to_string()
            }
        } else if defaults.iter().all(String::is_empty) {
            "empty".to_string()
        } else {
            format!("`{}`", defaults.join(","))
        };
        let mut help = arg
            .get_help()
            .map(|h| h.to_string())
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let possible: Vec<String> = arg
            .get_possible_values()
            .iter()
            .map(|p| format!("`{}`", p.get_name()))
            .collect();
        if !possible.is_empty() && arg.get_action().takes_values() {
            let _ = write!(help, " One of {}.", possible.join(", "));
        }
        let _ = writeln!(
            out,
            "| `--{long}` | {env} | {default} | {} |",
            help.replace('|', "\\|")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use super::*;

    fn reference_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/reference")
    }

    #[test]
    fn committed_reference_docs_match_the_generated_ones() {
        let dir = reference_dir();
        let mut problems = Vec::new();
        let generated = files().unwrap();
        for (name, want) in &generated {
            match std::fs::read_to_string(dir.join(name)) {
                Ok(have) if &have == want => {}
                Ok(_) => problems.push(format!("{name} differs from what the code generates")),
                Err(e) => problems.push(format!("{name} cannot be read: {e}")),
            }
        }
        let expected: BTreeSet<&str> = generated.iter().map(|(n, _)| n.as_str()).collect();
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".md") && name != "README.md" && !expected.contains(name.as_str()) {
                problems.push(format!("{name} is not generated by the code any more"));
            }
        }
        assert!(
            problems.is_empty(),
            "docs/reference is out of date (the CRDs, the metrics registry or the flags of `stowage run` changed); \
             run `make reference` (or `cargo run -p stowage -- reference --out-dir docs/reference`) and commit the result:\n{}",
            problems.join("\n")
        );
    }

    /// Every metric registered in crates/controller/src/metrics.rs comes out of the populated
    /// registry (so the reference misses none), and the label table describes exactly the labels
    /// the registry writes.
    #[test]
    fn the_metrics_reference_covers_every_registered_metric_and_label() {
        let source = include_str!("../../../controller/src/metrics.rs");
        let registered: BTreeSet<String> = source
            .split("registry.register(")
            .skip(1)
            .filter_map(|rest| rest.split('"').nth(1))
            .map(|n| format!("stowage_{n}"))
            .collect();
        assert!(registered.len() > 10, "{registered:?}");
        let described = registry_metrics();
        let names: BTreeSet<String> = described.iter().map(|d| d.name.clone()).collect();
        let missing: Vec<&String> = registered.difference(&names).collect();
        assert!(
            missing.is_empty(),
            "metrics without a series in Metrics::example() (call their recording method there): {missing:?}"
        );
        let table: BTreeMap<String, BTreeSet<String>> = METRIC_LABELS
            .iter()
            .map(|(n, ls)| {
                (
                    n.to_string(),
                    ls.iter().map(|(l, _)| l.to_string()).collect(),
                )
            })
            .collect();
        for d in &described {
            let short = d.name.trim_start_matches("stowage_");
            let labels: BTreeSet<String> = d.labels.iter().cloned().collect();
            assert_eq!(
                table.get(short).cloned().unwrap_or_default(),
                labels,
                "METRIC_LABELS must describe exactly the labels of {short}"
            );
        }
    }

    #[test]
    fn the_settings_reference_lists_every_flag_of_run_with_its_env_and_default() {
        let text = settings_markdown();
        assert!(
            text.contains("| `--batch-idle-duration` | `BATCH_IDLE_DURATION` | `1s` |"),
            "{text}"
        );
        assert!(
            text.contains("| `--cluster-name` | `CLUSTER_NAME` | required |"),
            "{text}"
        );
        assert!(
            text.contains("| `--leader-elect` | `LEADER_ELECT` | `true` |"),
            "{text}"
        );
        assert!(text.contains("One of `json`, `text`."), "{text}");
    }
}
