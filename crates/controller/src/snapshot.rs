//! The solver's input, built from [`ClusterState`]: pending pods that are not nominated,
//! existing nodes with their pods (and the pods nominated to them), in-flight NodeClaims modelled
//! as nodes (with the pods nominated to them), NodePools with their usage and instance types, and
//! DaemonSets. Objects the solver cannot read are skipped with a warning naming the field.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use stowage_api::labels;
use stowage_api::quantity::parse_resource;
use stowage_api::requirements::Operator;
use stowage_api::{NodeClaim, NodePool};
use stowage_solver::convert;
use stowage_solver::{InstanceType, Resources, SolveInput};

use crate::provisioning::{claim_capacity_type, claim_resources};
use crate::state::{ClusterState, is_terminal, pod_key};

/// Builds the input; also returns the pending pod objects by key (for Events).
pub fn build(
    state: &ClusterState,
    pools: &[Arc<NodePool>],
    mut types: BTreeMap<String, Vec<InstanceType>>,
    now: Timestamp,
) -> (SolveInput, BTreeMap<String, Arc<Pod>>) {
    let mut input = SolveInput::default();
    let mut objects = BTreeMap::new();
    for pod in state.pending_pods(now) {
        let key = pod_key(&pod);
        match state.domain_pod(&key) {
            Some(p) => {
                input.pods.push((*p).clone());
                objects.insert(key, pod.clone());
            }
            None => tracing::debug!(pod = %key, "pod skipped by the provisioner (unreadable)"),
        }
    }
    // Pods nominated to each claim that are not bound yet.
    let nominated = |claim: &str| -> Vec<stowage_solver::Pod> {
        state
            .nominated_to(claim)
            .iter()
            .filter(|k| state.is_nominated(k, now))
            .filter(|k| {
                state.pod(k).is_some_and(|p| {
                    p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_none_or(str::is_empty)
                })
            })
            .filter_map(|k| state.domain_pod(k).map(|p| (*p).clone()))
            .collect()
    };
    for node in state.nodes() {
        let name = node.name_any();
        let mut pods: Vec<stowage_solver::Pod> = state
            .pod_keys_on_node(&name)
            .filter(|k| state.pod(k).is_some_and(|p| !is_terminal(&p)))
            .filter_map(|k| state.domain_pod(k).map(|p| (*p).clone()))
            .collect();
        let claim = state.claim_for_node(node);
        if let Some(c) = &claim {
            pods.extend(nominated(&c.name_any()));
        }
        match convert::node(node, pods) {
            Ok(mut n) => {
                let disrupted = node
                    .spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|t| t.iter().any(|t| t.key == labels::DISRUPTED_TAINT_KEY));
                if node.metadata.deletion_timestamp.is_some()
                    || disrupted
                    || claim
                        .as_ref()
                        .is_some_and(|c| c.metadata.deletion_timestamp.is_some())
                {
                    n.unschedulable = true;
                }
                input.nodes.push(n);
            }
            Err(err) => tracing::warn!(%err, "node skipped by the provisioner"),
        }
    }
    for claim in state.claims() {
        if claim.metadata.deletion_timestamp.is_some() || state.claim_node(claim).is_some() {
            continue;
        }
        input
            .in_flight
            .push(in_flight_node(claim, nominated(&claim.name_any())));
    }
    let all: Vec<stowage_solver::Node> = input
        .nodes
        .iter()
        .chain(input.in_flight.iter())
        .cloned()
        .collect();
    for pool in pools {
        let name = pool.name_any();
        let Some(list) = types.remove(&name) else {
            continue;
        };
        let usage = convert::pool_usage(&name, &all);
        match convert::nodepool(pool, usage) {
            Ok(mut p) => {
                p.instance_types = Some(list);
                input.nodepools.push(p);
            }
            Err(err) => tracing::warn!(%err, "nodepool skipped by the provisioner"),
        }
    }
    for ds in state.daemonsets() {
        match convert::daemonset(ds) {
            Ok(d) => input.daemonsets.push(d),
            Err(err) => tracing::warn!(%err, "daemonset skipped by the provisioner"),
        }
    }
    (input, objects)
}

/// An in-flight claim as a node: the labels it will have (its own plus single-valued `In`
/// requirements), its taints, the allocatable it will have (the instance's once launched, its
/// requests before) and the pods nominated to it.
pub fn in_flight_node(claim: &NodeClaim, pods: Vec<stowage_solver::Pod>) -> stowage_solver::Node {
    let name = claim.name_any();
    let mut node_labels: BTreeMap<String, String> = claim.labels().clone();
    for r in &claim.spec.requirements {
        if r.operator == Operator::In && r.values.len() == 1 {
            node_labels
                .entry(r.key.clone())
                .or_insert_with(|| r.values[0].clone());
        }
    }
    node_labels.insert(labels::HOSTNAME.to_string(), name.clone());
    let taints = claim
        .spec
        .taints
        .iter()
        .filter_map(|t| convert::taint(&format!("NodeClaim {name}"), "spec.taints", t).ok())
        .collect();
    let mut allocatable = Resources::new();
    let alloc = claim
        .status
        .as_ref()
        .map(|s| &s.allocatable)
        .filter(|a| !a.is_empty());
    match alloc {
        Some(a) => {
            for (k, q) in a {
                if let Ok(v) = parse_resource(k, &q.0) {
                    allocatable.set(k.clone(), v);
                }
            }
        }
        None => allocatable = claim_resources(claim),
    }
    stowage_solver::Node {
        name,
        labels: node_labels,
        taints,
        capacity: claim_resources(claim),
        allocatable,
        pods,
        nodepool: claim.nodepool_name().map(str::to_string),
        capacity_type: claim_capacity_type(claim),
        instance_type: claim.label(labels::INSTANCE_TYPE).map(str::to_string),
        price_per_hour: None,
        unschedulable: false,
    }
}
