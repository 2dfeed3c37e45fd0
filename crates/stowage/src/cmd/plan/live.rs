//! `stowage plan --kubeconfig`: the plan of a live cluster. Reads pods, nodes, DaemonSets, PDBs,
//! NodeClaims, NodePools and EC2NodeClasses with read-only, paginated list calls (the Stowage
//! kinds may be absent: a cluster Cluster Autoscaler still runs has no Stowage CRDs, and its
//! NodePools come from `-f`), then reports:
//!
//! - what would be launched now for the pending pods, and why the rest stay pending (the same
//!   snapshot and solve as the offline plan);
//! - for nodes Stowage does not own (Cluster Autoscaler's, or any other), their estimated cost
//!   today against Stowage's re-pack of the same running pods onto the NodePools given with `-f`
//!   ("what would migrating save");
//! - what consolidation would remove or replace now and the $/h it saves: one round of the
//!   disruption controller's own candidates, budgets and methods ([`consolidation_of`]), with the
//!   cluster's PodDisruptionBudgets.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition, PodStatus};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;
use stowage_api::{CapacityType, EC2NodeClass, NodeClaim, NodePool, labels};
use stowage_clock::Clock;
use stowage_solver::{InstanceType, Plan, SolveOptions};

use super::Object;

/// Objects per list page.
pub const PAGE_SIZE: u32 = 500;
/// Hours in a month for the monthly figures (365 x 24 / 12).
pub const HOURS_PER_MONTH: f64 = 730.0;

/// What was read from the cluster.
#[derive(Debug, Default)]
pub struct Cluster {
    pub pods: Vec<Pod>,
    pub nodes: Vec<Node>,
    pub daemonsets: Vec<DaemonSet>,
    pub pdbs: Vec<PodDisruptionBudget>,
    /// `None`: the kind is not served (Stowage's CRDs are not installed).
    pub nodepools: Option<Vec<NodePool>>,
    pub nodeclaims: Option<Vec<NodeClaim>>,
    pub nodeclasses: Option<Vec<EC2NodeClass>>,
}

/// Every object of a kind, page by page.
async fn list_all<K>(api: &Api<K>) -> Result<Vec<K>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(PAGE_SIZE);
    loop {
        let page = api.list(&params).await?;
        out.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(out),
        }
    }
}

/// Like [`list_all`]; `None` when the API server does not serve the kind (404).
async fn list_optional<K>(api: &Api<K>) -> Result<Option<Vec<K>>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match list_all(api).await {
        Ok(items) => Ok(Some(items)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the cluster (list calls only).
pub async fn read(client: &Client) -> anyhow::Result<Cluster> {
    let pods = list_all(&Api::<Pod>::all(client.clone()))
        .await
        .context("failed to list pods")?;
    let nodes = list_all(&Api::<Node>::all(client.clone()))
        .await
        .context("failed to list nodes")?;
    let daemonsets = list_all(&Api::<DaemonSet>::all(client.clone()))
        .await
        .context("failed to list daemonsets")?;
    let pdbs = list_all(&Api::<PodDisruptionBudget>::all(client.clone()))
        .await
        .context("failed to list poddisruptionbudgets")?;
    let nodepools = list_optional(&Api::<NodePool>::all(client.clone()))
        .await
        .context("failed to list nodepools")?;
    let nodeclaims = list_optional(&Api::<NodeClaim>::all(client.clone()))
        .await
        .context("failed to list nodeclaims")?;
    let nodeclasses = list_optional(&Api::<EC2NodeClass>::all(client.clone()))
        .await
        .context("failed to list ec2nodeclasses")?;
    Ok(Cluster {
        pods,
        nodes,
        daemonsets,
        pdbs,
        nodepools,
        nodeclaims,
        nodeclasses,
    })
}

/// A client for `kubeconfig` (and `context`, else the current one).
pub async fn client(kubeconfig: &std::path::Path, context: Option<&str>) -> anyhow::Result<Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("failed to read kubeconfig {}", kubeconfig.display()))?;
    let options = kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &options)
        .await
        .with_context(|| format!("failed to load kubeconfig {}", kubeconfig.display()))?;
    Client::try_from(config).context("failed to create a Kubernetes client")
}

/// How much was read.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub pods: usize,
    pub nodes: usize,
    pub daemonsets: usize,
    pub pdbs: usize,
    /// Whether the cluster serves Stowage's NodePool kind.
    pub stowage_crds_installed: bool,
    pub nodepools_in_cluster: usize,
    pub nodepools_from_files: usize,
    pub nodeclaims: usize,
    pub ec2nodeclasses: usize,
}

/// Today's nodes that Stowage does not own, priced, against Stowage's re-pack of their pods.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Migration {
    /// Nodes without the `stowage.dev/nodepool` label.
    pub nodes: usize,
    /// Per node group (`eks.amazonaws.com/nodegroup` or `alpha.eksctl.io/nodegroup-name`).
    pub node_groups: Vec<GroupCost>,
    /// Nodes whose instance type or price is unknown (not in the sum).
    pub unpriced_nodes: Vec<String>,
    pub today_per_hour: f64,
    /// The running pods of those nodes (DaemonSet and static pods excepted).
    pub pods: usize,
    pub stowage_nodes: usize,
    pub stowage_per_hour: f64,
    /// Per NodePool of the re-pack.
    pub node_pools: Vec<GroupCost>,
    /// Pods the NodePools cannot hold, with the reason: they would stay pending after
    /// migrating (a label, taint or instance type the pools miss).
    pub unplaced: BTreeMap<String, String>,
    pub saving_per_hour: f64,
    pub saving_per_month: f64,
}

/// Nodes and their price per hour, by group.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupCost {
    pub name: String,
    pub nodes: usize,
    pub per_hour: f64,
}

/// What consolidation would remove or replace now, and the saving ([`consolidation_of`]).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Consolidation {
    /// Nodes deleted with no replacement.
    pub remove: Vec<String>,
    /// Nodes deleted once their (cheaper) replacement is up.
    pub replace: Vec<String>,
    pub saving_per_hour: f64,
    /// The method that found the command, and the command in words.
    pub method: Option<String>,
    pub description: Option<String>,
    /// Nodes the controller may disrupt now, and those blocked (with why).
    pub candidates: usize,
    pub blocked: Vec<super::Blocked>,
}

/// The report of `stowage plan --kubeconfig`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub read: Counts,
    /// What would be launched now for the pending pods, and why the rest stay pending.
    pub pending: Plan,
    /// `None` when every node is Stowage's or no NodePool was given with `-f`.
    pub migration: Option<Migration>,
    /// What consolidation would do now ([`consolidation_of`]).
    pub consolidation: Consolidation,
}

/// What one disruption round would do on the live cluster now: the disruption controller's
/// candidates (initialized, past `consolidateAfter`, not blocked by do-not-disrupt or `pdbs`),
/// budgets and methods, as `stowage plan --consolidate` runs them.
fn consolidation_of(
    mut state: stowage_controller::ClusterState,
    pdbs: &[PodDisruptionBudget],
    types: Vec<InstanceType>,
    options: &SolveOptions,
) -> Consolidation {
    for pdb in pdbs {
        state.apply_pdb(pdb.clone());
    }
    let c = super::consolidation(
        state,
        types,
        stowage_clock::SystemClock.now(),
        options.max_instance_types,
    );
    let mut out = Consolidation {
        candidates: c.candidates,
        blocked: c.blocked,
        saving_per_hour: c.savings_per_hour,
        ..Consolidation::default()
    };
    if let Some(plan) = c.command {
        let nodes: Vec<String> = plan.targets.iter().map(|t| t.node.clone()).collect();
        if plan.replacements.is_empty() {
            out.remove = nodes;
        } else {
            out.replace = nodes;
        }
        out.method = Some(plan.method.as_str().to_string());
        out.description = Some(plan.describe());
    }
    out
}

fn is_stowage_node(n: &Node) -> bool {
    n.labels().contains_key(labels::NODEPOOL)
}

fn node_group(n: &Node) -> String {
    let l = n.labels();
    for k in [
        "eks.amazonaws.com/nodegroup",
        "alpha.eksctl.io/nodegroup-name",
        labels::NODEPOOL,
    ] {
        if let Some(v) = l.get(k) {
            return v.clone();
        }
    }
    "(no node group label)".to_string()
}

/// The capacity type a node runs as, from the labels EKS, eksctl, Karpenter or Stowage put on it;
/// on-demand when none says.
fn capacity_of(n: &Node) -> CapacityType {
    let l = n.labels();
    let spot = [
        (labels::CAPACITY_TYPE, "spot"),
        ("karpenter.sh/capacity-type", "spot"),
        ("eks.amazonaws.com/capacityType", "SPOT"),
        ("node.kubernetes.io/lifecycle", "spot"),
        ("node-lifecycle", "spot"),
    ];
    if spot.iter().any(|(k, v)| l.get(*k).is_some_and(|x| x == v)) {
        CapacityType::Spot
    } else {
        CapacityType::OnDemand
    }
}

/// The price per hour of a node: its type's offering in its zone and capacity type, else the
/// cheapest of that capacity type.
fn node_price(n: &Node, types: &BTreeMap<&str, &InstanceType>) -> Option<f64> {
    let t = types.get(n.labels().get(labels::INSTANCE_TYPE)?.as_str())?;
    let cap = capacity_of(n);
    let zone = n.labels().get(labels::ZONE);
    let of_cap = || t.offerings.iter().filter(|o| o.capacity_type == cap);
    of_cap()
        .find(|o| Some(&o.zone) == zone)
        .map(|o| o.price_per_hour)
        .or_else(|| {
            of_cap()
                .map(|o| o.price_per_hour)
                .min_by(|a, b| a.total_cmp(b))
        })
}

/// A running pod as pending again (for the re-pack): unbound, `PodScheduled=False`.
fn as_pending(mut pod: Pod) -> Pod {
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = None;
    }
    pod.status = Some(PodStatus {
        phase: Some("Pending".into()),
        conditions: Some(vec![PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some("stowage plan: re-packed onto the NodePools given".into()),
            last_transition_time: Some(Time(stowage_clock::SystemClock.now())),
            ..Default::default()
        }]),
        ..Default::default()
    });
    pod
}

fn is_moving_pod(p: &Pod) -> bool {
    !stowage_controller::state::is_daemonset_pod(p)
        && !stowage_controller::state::is_static_pod(p)
        && !stowage_controller::state::is_terminal(p)
        && p.metadata.deletion_timestamp.is_none()
}

/// The report from what was read, the NodePools of the files and the catalogue.
pub fn report(
    cluster: Cluster,
    file_pools: Vec<NodePool>,
    types: Vec<InstanceType>,
    options: &SolveOptions,
) -> anyhow::Result<Report> {
    let read = Counts {
        pods: cluster.pods.len(),
        nodes: cluster.nodes.len(),
        daemonsets: cluster.daemonsets.len(),
        pdbs: cluster.pdbs.len(),
        stowage_crds_installed: cluster.nodepools.is_some(),
        nodepools_in_cluster: cluster.nodepools.as_ref().map_or(0, Vec::len),
        nodepools_from_files: file_pools.len(),
        nodeclaims: cluster.nodeclaims.as_ref().map_or(0, Vec::len),
        ec2nodeclasses: cluster.nodeclasses.as_ref().map_or(0, Vec::len),
    };
    // Pools of the files replace the cluster's of the same name.
    let mut pools: BTreeMap<String, NodePool> = BTreeMap::new();
    for p in cluster.nodepools.iter().flatten() {
        pools.insert(p.name_any(), p.clone());
    }
    for p in &file_pools {
        pools.insert(p.name_any(), p.clone());
    }

    // Migration: the nodes Stowage does not own, and their pods.
    let by_name: BTreeMap<&str, &InstanceType> =
        types.iter().map(|t| (t.name.as_str(), t)).collect();
    let foreign: Vec<&Node> = cluster
        .nodes
        .iter()
        .filter(|n| !is_stowage_node(n))
        .collect();
    let migration_input = (!foreign.is_empty() && !file_pools.is_empty()).then(|| {
        let names: std::collections::BTreeSet<String> =
            foreign.iter().map(|n| n.name_any()).collect();
        let moving: Vec<Pod> = cluster
            .pods
            .iter()
            .filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_ref())
                    .is_some_and(|n| names.contains(n))
                    && is_moving_pod(p)
            })
            .cloned()
            .map(as_pending)
            .collect();
        moving
    });

    // The pending plan: the cluster as it is, with the pools.
    let mut objects: Vec<Object> = Vec::new();
    objects.extend(cluster.pods.into_iter().map(|p| Object::Pod(Box::new(p))));
    objects.extend(
        cluster
            .nodes
            .iter()
            .cloned()
            .map(|n| Object::Node(Box::new(n))),
    );
    objects.extend(
        cluster
            .daemonsets
            .iter()
            .cloned()
            .map(|d| Object::DaemonSet(Box::new(d))),
    );
    objects.extend(
        cluster
            .nodeclaims
            .into_iter()
            .flatten()
            .map(|c| Object::NodeClaim(Box::new(c))),
    );
    objects.extend(
        pools
            .values()
            .cloned()
            .map(|p| Object::NodePool(Box::new(p))),
    );
    let (input, state) = super::input_and_state(objects, types.clone())?;
    let pending = stowage_solver::solve(&input, options);
    let consolidation = consolidation_of(state, &cluster.pdbs, types.clone(), options);

    let migration = match migration_input {
        None => None,
        Some(moving) => {
            let mut m = Migration {
                nodes: foreign.len(),
                pods: moving.len(),
                ..Migration::default()
            };
            let mut groups: BTreeMap<String, GroupCost> = BTreeMap::new();
            for n in &foreign {
                let g = groups.entry(node_group(n)).or_insert_with(|| GroupCost {
                    name: node_group(n),
                    ..GroupCost::default()
                });
                g.nodes += 1;
                match node_price(n, &by_name) {
                    Some(p) => {
                        g.per_hour += p;
                        m.today_per_hour += p;
                    }
                    None => m.unpriced_nodes.push(n.name_any()),
                }
            }
            m.node_groups = groups.into_values().collect();
            let mut objects: Vec<Object> = moving
                .into_iter()
                .map(|p| Object::Pod(Box::new(p)))
                .collect();
            objects.extend(
                cluster
                    .daemonsets
                    .into_iter()
                    .map(|d| Object::DaemonSet(Box::new(d))),
            );
            objects.extend(
                file_pools
                    .into_iter()
                    .map(|p| Object::NodePool(Box::new(p))),
            );
            let (input, _) = super::input_and_state(objects, types)?;
            let repack = stowage_solver::solve(&input, options);
            m.stowage_nodes = repack.new_claims.len();
            m.stowage_per_hour = repack.cost_per_hour();
            let mut by_pool: BTreeMap<String, GroupCost> = BTreeMap::new();
            for c in &repack.new_claims {
                let g = by_pool
                    .entry(c.nodepool.clone())
                    .or_insert_with(|| GroupCost {
                        name: c.nodepool.clone(),
                        ..GroupCost::default()
                    });
                g.nodes += 1;
                g.per_hour += c.cheapest_price;
            }
            m.node_pools = by_pool.into_values().collect();
            m.unplaced = repack.unschedulable;
            m.saving_per_hour = m.today_per_hour - m.stowage_per_hour;
            m.saving_per_month = m.saving_per_hour * HOURS_PER_MONTH;
            Some(m)
        }
    };
    Ok(Report {
        read,
        pending,
        migration,
        consolidation,
    })
}

/// The NodePools of the `-f` files (with `--kubeconfig` the files give NodePools only; their
/// EC2NodeClasses are skipped).
pub fn file_pools(objects: Vec<Object>) -> anyhow::Result<Vec<NodePool>> {
    let mut out = Vec::new();
    for o in objects {
        match o {
            Object::NodePool(p) => out.push(*p),
            other => bail!(
                "with --kubeconfig, -f gives NodePools only (the cluster gives the rest), got {} {}",
                other.kind(),
                other.key()
            ),
        }
    }
    Ok(out)
}

/// The report as a human-readable table.
pub fn render_table(r: &Report) -> String {
    let mut out = String::new();
    let c = &r.read;
    let _ = writeln!(
        out,
        "Read: {} pods, {} nodes, {} DaemonSets, {} PDBs; Stowage CRDs {}; NodePools: {} in the cluster, {} from files\n",
        c.pods,
        c.nodes,
        c.daemonsets,
        c.pdbs,
        if c.stowage_crds_installed {
            "installed"
        } else {
            "not installed"
        },
        c.nodepools_in_cluster,
        c.nodepools_from_files
    );
    out.push_str("== Pending pods: what would be launched now ==\n");
    out.push_str(&super::render_table(&r.pending));
    out.push_str("\n== What would migrating save (nodes Stowage does not own) ==\n");
    match &r.migration {
        None => out.push_str(
            "Not estimated: every node is Stowage's, or no NodePool was given with -f.\n",
        ),
        Some(m) => {
            let _ = writeln!(
                out,
                "Today: {} nodes, ${:.4}/hour{}",
                m.nodes,
                m.today_per_hour,
                if m.unpriced_nodes.is_empty() {
                    String::new()
                } else {
                    format!(" (+{} nodes of unknown price)", m.unpriced_nodes.len())
                }
            );
            let mut rows = vec![["NODE GROUP".to_string(), "NODES".into(), "$/HOUR".into()]];
            rows.extend(m.node_groups.iter().map(|g| {
                [
                    g.name.clone(),
                    g.nodes.to_string(),
                    format!("{:.4}", g.per_hour),
                ]
            }));
            out.push_str(&super::table(&rows));
            let _ = writeln!(
                out,
                "\nStowage re-pack of their {} pods: {} nodes, ${:.4}/hour",
                m.pods, m.stowage_nodes, m.stowage_per_hour
            );
            let mut rows = vec![["NODEPOOL".to_string(), "NODES".into(), "$/HOUR".into()]];
            rows.extend(m.node_pools.iter().map(|g| {
                [
                    g.name.clone(),
                    g.nodes.to_string(),
                    format!("{:.4}", g.per_hour),
                ]
            }));
            out.push_str(&super::table(&rows));
            let _ = writeln!(
                out,
                "\nSaving: ${:.4}/hour, ${:.0}/month ({HOURS_PER_MONTH} h)",
                m.saving_per_hour, m.saving_per_month
            );
            if !m.unplaced.is_empty() {
                let _ = writeln!(
                    out,
                    "\nPods the NodePools cannot hold (they would stay pending after migrating): {}",
                    m.unplaced.len()
                );
                let mut rows = vec![["POD".to_string(), "REASON".into()]];
                rows.extend(m.unplaced.iter().map(|(p, r)| [p.clone(), r.clone()]));
                out.push_str(&super::table(&rows));
            }
        }
    }
    out.push_str("\n== Consolidation ==\n");
    let c = &r.consolidation;
    match &c.description {
        None => {
            let _ = writeln!(
                out,
                "Nothing to consolidate ({} candidate node(s), {} blocked).",
                c.candidates,
                c.blocked.len()
            );
        }
        Some(d) => {
            let _ = writeln!(
                out,
                "{}: {d}. Remove {} node(s), replace {}: saves ${:.4}/hour",
                c.method.as_deref().unwrap_or("-"),
                c.remove.len(),
                c.replace.len(),
                c.saving_per_hour
            );
        }
    }
    for b in &c.blocked {
        let _ = writeln!(out, "  blocked {}: {}", b.node, b.reason);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use kube::api::PostParams;
    use serde_json::{Value, json};
    use stowage_sim::{ApiServer, ApiServerOptions};

    use super::*;

    /// The NodePools `stowage migrate` made of the seed estate (its golden output).
    const MIGRATED: &str = include_str!("../../../../migrate/testdata/seed/golden/nodepools.yaml");
    const MIGRATED_CLASSES: &str =
        include_str!("../../../../migrate/testdata/seed/golden/nodeclasses.yaml");

    fn migrated_pools() -> Vec<NodePool> {
        let files = [
            (
                PathBuf::from("nodeclasses.yaml"),
                MIGRATED_CLASSES.to_string(),
            ),
            (PathBuf::from("nodepools.yaml"), MIGRATED.to_string()),
        ];
        file_pools(super::super::parse_files(&files, super::super::Reader::Fast).unwrap()).unwrap()
    }

    fn catalogue() -> Vec<InstanceType> {
        stowage_aws_catalog::embedded("us-east-1", &Default::default()).unwrap()
    }

    /// A server without Stowage's kinds: a cluster Cluster Autoscaler runs.
    fn server(with_crds: bool) -> ApiServer {
        let mut options = ApiServerOptions::default();
        if !with_crds {
            options
                .kinds
                .retain(|k| k.group != labels::GROUP && k.group != labels::AWS_GROUP);
        }
        ApiServer::with_options(Arc::new(stowage_clock::SystemClock), options)
    }

    struct NodeSpec<'a> {
        group: &'a str,
        itype: &'a str,
        spot: bool,
        cpu: &'a str,
        memory: &'a str,
        labels: &'a [(&'a str, &'a str)],
        taint: Option<(&'a str, &'a str)>,
        extra: &'a [(&'a str, &'a str)],
    }

    fn node(name: &str, zone: &str, s: &NodeSpec<'_>) -> Value {
        let mut labels = json!({
            "node.kubernetes.io/instance-type": s.itype,
            "topology.kubernetes.io/zone": zone,
            "topology.kubernetes.io/region": "us-east-1",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/os": "linux",
            "kubernetes.io/hostname": name,
            "eks.amazonaws.com/nodegroup": s.group,
            "eks.amazonaws.com/capacityType": if s.spot { "SPOT" } else { "ON_DEMAND" },
        });
        for (k, v) in s.labels {
            labels[*k] = json!(v);
        }
        let mut resources = json!({"cpu": s.cpu, "memory": s.memory, "pods": "110"});
        for (k, v) in s.extra {
            resources[*k] = json!(v);
        }
        json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"providerID": format!("aws:///{zone}/i-0{name}"),
                     "taints": s.taint.map(|(k, v)| vec![json!({"key": k, "value": v, "effect": "NoSchedule"})]).unwrap_or_default()},
            "status": {"capacity": resources, "allocatable": resources,
                       "conditions": [{"type": "Ready", "status": "True"}]}
        })
    }

    fn pod(
        name: &str,
        node: Option<&str>,
        cpu: &str,
        memory: &str,
        selector: &[(&str, &str)],
        toleration: Option<&str>,
    ) -> Value {
        let sel: serde_json::Map<String, Value> = selector
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let mut p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default",
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name.rsplit_once('-').map_or(name, |(a, _)| a), "uid": "u", "controller": true}]},
            "spec": {"nodeSelector": sel,
                     "containers": [{"name": "c", "image": "app", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]},
        });
        if let Some(key) = toleration {
            p["spec"]["tolerations"] =
                json!([{"key": key, "operator": "Exists", "effect": "NoSchedule"}]);
        }
        match node {
            Some(n) => {
                p["spec"]["nodeName"] = json!(n);
                p["status"] = json!({"phase": "Running"});
            }
            None => {
                p["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]});
            }
        }
        p
    }

    /// A seed-shaped cluster that Cluster Autoscaler runs: node groups as the seed estate has
    /// them, running pods (many nodes underused), a pending Spark burst and Gaudi job, a pod
    /// pinned to a node-group label, DaemonSet pods, a PDB.
    async fn seed_cluster(client: &Client) -> (usize, usize) {
        let post = |v: Value| {
            let client = client.clone();
            async move {
                let kind = v["kind"].as_str().unwrap().to_string();
                match kind.as_str() {
                    "Node" => {
                        let api: Api<Node> = Api::all(client);
                        api.create(&PostParams::default(), &serde_json::from_value(v).unwrap())
                            .await
                            .unwrap();
                    }
                    "Pod" => {
                        let api: Api<Pod> = Api::namespaced(client, "default");
                        api.create(&PostParams::default(), &serde_json::from_value(v).unwrap())
                            .await
                            .unwrap();
                    }
                    "DaemonSet" => {
                        let api: Api<DaemonSet> = Api::namespaced(client, "kube-system");
                        api.create(&PostParams::default(), &serde_json::from_value(v).unwrap())
                            .await
                            .unwrap();
                    }
                    "PodDisruptionBudget" => {
                        let api: Api<PodDisruptionBudget> = Api::namespaced(client, "default");
                        api.create(&PostParams::default(), &serde_json::from_value(v).unwrap())
                            .await
                            .unwrap();
                    }
                    other => panic!("{other}"),
                }
            }
        };
        let zones = ["us-east-1a", "us-east-1b", "us-east-1c"];
        let mut nodes = 0;
        let mut pods = 0;
        // Workflows on spot: 12 x m5.2xlarge, 3 one-CPU pods each (CA keeps them above 0.6? no:
        // it never scales them down while pods are spread like this).
        let wf = NodeSpec {
            group: "wf-spot-m5",
            itype: "m5.2xlarge",
            spot: true,
            cpu: "7910m",
            memory: "30Gi",
            labels: &[("workload", "workflows")],
            taint: None,
            extra: &[],
        };
        for i in 0..12 {
            let n = format!("wf-{i}");
            post(node(&n, zones[i % 3], &wf)).await;
            nodes += 1;
            for j in 0..3 {
                post(pod(
                    &format!("argo-wf-{i}-{j}"),
                    Some(&n),
                    "1",
                    "2Gi",
                    &[("workload", "workflows")],
                    None,
                ))
                .await;
                pods += 1;
            }
        }
        // Pinned to a node-group label: no NodePool sets it.
        post(pod(
            "pinned-0",
            Some("wf-0"),
            "500m",
            "1Gi",
            &[("eks.amazonaws.com/nodegroup", "wf-spot-m5")],
            None,
        ))
        .await;
        pods += 1;
        let mgmt = NodeSpec {
            group: "mgmt-spot-m5",
            itype: "m5.4xlarge",
            spot: true,
            cpu: "15890m",
            memory: "60Gi",
            labels: &[("workload", "management")],
            taint: Some(("dedicated", "management")),
            extra: &[],
        };
        for (i, zone) in zones.iter().enumerate().take(2) {
            let n = format!("mgmt-{i}");
            post(node(&n, zone, &mgmt)).await;
            nodes += 1;
            post(pod(
                &format!("prometheus-{i}"),
                Some(&n),
                "4",
                "16Gi",
                &[("workload", "management")],
                Some("dedicated"),
            ))
            .await;
            pods += 1;
        }
        for (i, z) in zones.iter().enumerate() {
            let group = format!("api-ondemand-{z}");
            let api = NodeSpec {
                group: &group,
                itype: "m6i.2xlarge",
                spot: false,
                cpu: "7910m",
                memory: "30Gi",
                labels: &[("workload", "api")],
                taint: None,
                extra: &[],
            };
            for k in 0..2 {
                let n = format!("api-{i}-{k}");
                post(node(&n, z, &api)).await;
                nodes += 1;
                for j in 0..2 {
                    post(pod(
                        &format!("api-{i}{k}{j}"),
                        Some(&n),
                        "500m",
                        "1Gi",
                        &[("workload", "api")],
                        None,
                    ))
                    .await;
                    pods += 1;
                }
            }
        }
        let pay = NodeSpec {
            group: "payments-ondemand",
            itype: "m5.xlarge",
            spot: false,
            cpu: "3920m",
            memory: "14Gi",
            labels: &[("workload", "payments")],
            taint: Some(("dedicated", "payments")),
            extra: &[],
        };
        for (i, zone) in zones.iter().enumerate() {
            let n = format!("pay-{i}");
            post(node(&n, zone, &pay)).await;
            nodes += 1;
            post(pod(
                &format!("payments-{i}"),
                Some(&n),
                "1",
                "2Gi",
                &[("workload", "payments")],
                Some("dedicated"),
            ))
            .await;
            pods += 1;
        }
        let gaudi = NodeSpec {
            group: "gaudi-train",
            itype: "dl1.24xlarge",
            spot: false,
            cpu: "95690m",
            memory: "740Gi",
            labels: &[("accel", "dl1.24xlarge")],
            taint: Some(("habana.ai/gaudi", "true")),
            extra: &[("habana.ai/gaudi", "8")],
        };
        post(node("gaudi-0", "us-east-1a", &gaudi)).await;
        nodes += 1;
        let mut train = pod(
            "train-llm-0",
            Some("gaudi-0"),
            "40",
            "300Gi",
            &[("accel", "dl1.24xlarge")],
            Some("habana.ai/gaudi"),
        );
        train["spec"]["containers"][0]["resources"]["requests"]["habana.ai/gaudi"] = json!("8");
        train["spec"]["containers"][0]["resources"]["limits"] = json!({"habana.ai/gaudi": "8"});
        post(train).await;
        pods += 1;
        // DaemonSet pods on every node are not moved (the DaemonSet is overhead of the re-pack).
        post(json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "node-agent", "namespace": "kube-system"},
            "spec": {"selector": {"matchLabels": {"app": "node-agent"}}, "template": {"metadata": {"labels": {"app": "node-agent"}},
              "spec": {"tolerations": [{"operator": "Exists"}], "containers": [{"name": "a", "image": "agent", "resources": {"requests": {"cpu": "100m", "memory": "200Mi"}}}]}}}})).await;
        let mut ds = pod("node-agent-wf-1", Some("wf-1"), "100m", "200Mi", &[], None);
        ds["metadata"]["ownerReferences"][0]["kind"] = json!("DaemonSet");
        ds["metadata"]["ownerReferences"][0]["name"] = json!("node-agent");
        post(ds).await;
        pods += 1;
        post(json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "api", "namespace": "default"},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "api"}}}})).await;
        // Pending: a Spark burst of 600 executors (more than a list page), a Gaudi job, and a
        // pod no instance type holds.
        for i in 0..600 {
            post(pod(
                &format!("spark-exec-{i}"),
                None,
                "3",
                "12Gi",
                &[("workload", "spark")],
                None,
            ))
            .await;
            pods += 1;
        }
        let mut train = pod(
            "train-llm-1",
            None,
            "40",
            "300Gi",
            &[("accel", "dl1.24xlarge")],
            Some("habana.ai/gaudi"),
        );
        train["spec"]["containers"][0]["resources"]["requests"]["habana.ai/gaudi"] = json!("8");
        train["spec"]["containers"][0]["resources"]["limits"] = json!({"habana.ai/gaudi": "8"});
        post(train).await;
        post(pod("huge-0", None, "5000", "1Gi", &[], None)).await;
        pods += 2;
        (nodes, pods)
    }

    fn pool_of<'a>(plan: &'a Plan, pod: &str) -> Option<&'a str> {
        plan.new_claims
            .iter()
            .find(|c| c.pods.iter().any(|p| p == pod))
            .map(|c| c.nodepool.as_str())
    }

    #[tokio::test]
    async fn a_cluster_autoscaler_cluster_without_stowage_crds_is_planned_and_priced() {
        let server = server(false);
        let client = server.client();
        let (nodes, pods) = seed_cluster(&client).await;
        let cluster = read(&client).await.unwrap();
        // Every page was read.
        assert_eq!((cluster.nodes.len(), cluster.pods.len()), (nodes, pods));
        assert!(cluster.nodepools.is_none() && cluster.nodeclasses.is_none());
        let report = report(
            cluster,
            migrated_pools(),
            catalogue(),
            &SolveOptions::default(),
        )
        .unwrap();
        assert!(!report.read.stowage_crds_installed);
        assert_eq!(report.read.pdbs, 1);

        // Pending: the Spark burst on the spark pool, the Gaudi job on dl1, the huge pod not.
        let plan = &report.pending;
        assert_eq!(pool_of(plan, "default/spark-exec-0"), Some("spark-spot"));
        assert_eq!(pool_of(plan, "default/spark-exec-599"), Some("spark-spot"));
        let gaudi = plan
            .new_claims
            .iter()
            .find(|c| c.nodepool == "gaudi-train")
            .unwrap();
        assert_eq!(gaudi.instance_type_options, ["dl1.24xlarge"]);
        assert!(
            plan.unschedulable.contains_key("default/huge-0"),
            "{:?}",
            plan.unschedulable
        );
        assert_eq!(plan.unschedulable.len(), 1, "{:?}", plan.unschedulable);
        // Nothing already running is bought for again.
        assert!(plan.new_claims.iter().all(|c| {
            c.pods
                .iter()
                .all(|p| p.contains("spark-exec") || p.contains("train-llm-1"))
        }));

        // Migration: every node is Cluster Autoscaler's; the re-pack holds the running pods but
        // the one pinned to a node-group label, for less.
        let m = report.migration.as_ref().unwrap();
        assert_eq!(m.nodes, nodes);
        assert!(m.unpriced_nodes.is_empty(), "{:?}", m.unpriced_nodes);
        assert_eq!(
            m.pods,
            pods - 602 - 1,
            "running pods, DaemonSet pod excepted"
        );
        let groups: Vec<&str> = m.node_groups.iter().map(|g| g.name.as_str()).collect();
        assert!(
            groups.contains(&"gaudi-train") && groups.contains(&"wf-spot-m5"),
            "{groups:?}"
        );
        let sum: f64 = m.node_groups.iter().map(|g| g.per_hour).sum();
        assert!((sum - m.today_per_hour).abs() < 1e-9);
        assert_eq!(m.unplaced.keys().collect::<Vec<_>>(), ["default/pinned-0"]);
        assert!(
            m.unplaced["default/pinned-0"].contains("eks.amazonaws.com/nodegroup"),
            "{:?}",
            m.unplaced
        );
        assert!(
            m.stowage_per_hour > 0.0 && m.stowage_per_hour < m.today_per_hour,
            "{m:?}"
        );
        assert!((m.saving_per_hour - (m.today_per_hour - m.stowage_per_hour)).abs() < 1e-9);
        assert!((m.saving_per_month - m.saving_per_hour * HOURS_PER_MONTH).abs() < 1e-6);
        // Cluster Autoscaler's nodes are not Stowage's to consolidate.
        assert_eq!(report.consolidation.candidates, 0);
        assert!(report.consolidation.description.is_none());

        let table = render_table(&report);
        // The figures, for whoever runs the test with --nocapture.
        println!("{table}");
        assert!(table.contains("Stowage CRDs not installed"), "{table}");
        assert!(table.contains("== What would migrating save"), "{table}");
        assert!(table.contains("default/pinned-0"), "{table}");
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["migration"]["savingPerHour"].as_f64().unwrap() > 0.0);
        assert!(
            json["pending"]["new_claims"].is_array() || json["pending"]["newClaims"].is_array(),
            "{}",
            json["pending"]
        );
    }

    #[tokio::test]
    async fn the_cluster_nodepools_are_used_when_the_crds_are_installed() {
        let server = server(true);
        let client = server.client();
        let pool: NodePool = serde_saphyr::from_str(
            MIGRATED
                .split("---\n")
                .find(|d| d.contains("\n  name: spark-spot  #"))
                .unwrap(),
        )
        .unwrap();
        Api::<NodePool>::all(client.clone())
            .create(&PostParams::default(), &pool)
            .await
            .unwrap();
        let api: Api<Pod> = Api::namespaced(client.clone(), "default");
        for i in 0..3 {
            let p = pod(
                &format!("spark-exec-{i}"),
                None,
                "3",
                "12Gi",
                &[("workload", "spark")],
                None,
            );
            api.create(&PostParams::default(), &serde_json::from_value(p).unwrap())
                .await
                .unwrap();
        }
        let cluster = read(&client).await.unwrap();
        let report = report(cluster, Vec::new(), catalogue(), &SolveOptions::default()).unwrap();
        assert!(report.read.stowage_crds_installed);
        assert_eq!(report.read.nodepools_in_cluster, 1);
        assert_eq!(
            pool_of(&report.pending, "default/spark-exec-2"),
            Some("spark-spot")
        );
        assert!(
            report.migration.is_none(),
            "no node and no -f pools: nothing to compare"
        );
    }

    #[tokio::test]
    async fn consolidation_shows_what_the_disruption_controller_would_do_now() {
        let server = server(true);
        let client = server.client();
        let pool: NodePool = serde_saphyr::from_str(
            "apiVersion: stowage.dev/v1\nkind: NodePool\nmetadata: {name: general}\nspec:\n  template:\n    spec:\n      nodeClassRef: {group: aws.stowage.dev, kind: EC2NodeClass, name: default}\n      requirements: [{key: kubernetes.io/arch, operator: In, values: [amd64]}]\n  disruption: {consolidationPolicy: WhenEmptyOrUnderutilized, consolidateAfter: 0s}\n",
        )
        .unwrap();
        Api::<NodePool>::all(client.clone())
            .create(&PostParams::default(), &pool)
            .await
            .unwrap();
        let spec = NodeSpec {
            group: "stowage",
            itype: "m5.large",
            spot: true,
            cpu: "2",
            memory: "8Gi",
            labels: &[
                (labels::NODEPOOL, "general"),
                (labels::CAPACITY_TYPE, "spot"),
            ],
            taint: None,
            extra: &[],
        };
        let nodes: Api<Node> = Api::all(client.clone());
        for name in ["busy", "empty"] {
            nodes
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(node(name, "us-east-1a", &spec)).unwrap(),
                )
                .await
                .unwrap();
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let p = pod("web-0", Some("busy"), "1", "1Gi", &[], None);
        pods.create(&PostParams::default(), &serde_json::from_value(p).unwrap())
            .await
            .unwrap();

        let cluster = read(&client).await.unwrap();
        let report = report(cluster, Vec::new(), catalogue(), &SolveOptions::default()).unwrap();
        let c = &report.consolidation;
        assert_eq!(c.method.as_deref(), Some("emptiness"), "{c:?}");
        assert_eq!(c.remove, ["empty"], "{c:?}");
        assert!(c.replace.is_empty() && c.saving_per_hour > 0.0, "{c:?}");
        let table = render_table(&report);
        assert!(table.contains("emptiness: deleting 1 node"), "{table}");
    }

    #[tokio::test]
    async fn a_kubeconfig_and_context_reach_the_api_server_over_http() {
        let server = server(false);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let serving = server.clone();
        let task = tokio::spawn(async move { serving.serve(listener).await });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        ApiServer::write_kubeconfig(&url, &path).unwrap();
        let api: Api<Pod> = Api::namespaced(server.client(), "default");
        let p = pod("web-0", None, "1", "1Gi", &[], None);
        api.create(&PostParams::default(), &serde_json::from_value(p).unwrap())
            .await
            .unwrap();

        let client = client(&path, Some("stowage-sim")).await.unwrap();
        let cluster = read(&client).await.unwrap();
        assert_eq!(cluster.pods.len(), 1);
        let Err(err) = super::client(&path, Some("no-such-context")).await else {
            panic!("an unknown context is refused");
        };
        assert!(format!("{err:#}").contains("no-such-context"), "{err:#}");
        task.abort();
    }

    #[test]
    fn files_give_nodepools_only_with_a_kubeconfig() {
        let files = [(PathBuf::from("pods.yaml"), "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\nspec: {containers: []}\n".to_string())];
        let err =
            file_pools(super::super::parse_files(&files, super::super::Reader::Fast).unwrap())
                .unwrap_err();
        assert!(err.to_string().contains("NodePools only"), "{err}");
    }
}
