//! The DaemonSet controller, as kube-controller-manager's: for every node a DaemonSet should run
//! on (its template's node selector and required node affinity match the node, and its
//! tolerations, with the DaemonSet defaults added, tolerate every NoSchedule and NoExecute taint),
//! it creates one pod shaped as the real controller's: owned by the DaemonSet (`controller:
//! true`), labelled with `controller-revision-hash` and `pod-template-generation`, carrying the
//! default DaemonSet tolerations and pinned to its node by `matchFields` node affinity
//! (`metadata.name In [<node>]`). The pod is not bound: the scheduler binds it (as since
//! Kubernetes 1.12), so it may stay Pending on a node without room for it.
//!
//! Nodes are looked at whenever they change (a startup taint removed lets a DaemonSet in), and
//! a DaemonSet pod that goes away is replaced while its node should still run it.

use crate::json::JsonPointer as _;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde_json::{Value, json};
use stowage_solver::PodRequest;
use stowage_solver::domain::{NODE_NAME_FIELD, untolerated};

use super::Cluster;

/// A DaemonSet of the scenario, with what its pods are made from.
#[derive(Clone, Debug)]
pub(crate) struct DaemonSetInfo {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// `metadata.generation` of the DaemonSet (the pods' `pod-template-generation`).
    pub generation: i64,
    /// `spec.template`, with the default DaemonSet tolerations added to its spec.
    pub template: Value,
    /// The template as the solver reads it (node selector, affinity, tolerations), to decide
    /// which nodes should run the DaemonSet.
    pub pod: PodRequest,
    /// `controller-revision-hash` of the pods (a hash of the template).
    pub revision_hash: String,
}

impl DaemonSetInfo {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        stowage_api::namespaced_key(&self.namespace, &self.name)
    }
}

/// The tolerations the DaemonSet controller adds to every pod it creates
/// (`AddOrUpdateDaemonPodTolerations`), in its order: (key, effect).
pub(crate) const DEFAULT_TOLERATIONS: [(&str, &str); 6] = [
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];
/// Added too when the pod uses the host network.
const NETWORK_UNAVAILABLE: (&str, &str) = ("node.kubernetes.io/network-unavailable", "NoSchedule");

/// `spec` with the default DaemonSet tolerations added, as `AddOrUpdateTolerationInPodSpec`
/// does: a toleration with the same key, operator, value and effect is replaced, else appended.
pub(crate) fn with_default_tolerations(mut spec: Value) -> Value {
    let host_network = spec
        .get("hostNetwork")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut list: Vec<Value> = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let extra = host_network.then_some(NETWORK_UNAVAILABLE);
    for (key, effect) in DEFAULT_TOLERATIONS.into_iter().chain(extra) {
        let default = json!({ "key": key, "operator": "Exists", "effect": effect });
        let same = |t: &Value| {
            t.get("key").and_then(Value::as_str) == Some(key)
                && t.get("operator").and_then(Value::as_str) == Some("Exists")
                && t.get("effect").and_then(Value::as_str) == Some(effect)
                && t.get("value")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .is_empty()
        };
        match list.iter_mut().find(|t| same(t)) {
            Some(t) => *t = default,
            None => list.push(default),
        }
    }
    spec["tolerations"] = Value::Array(list);
    spec
}

/// A stable short hash of the template (the real controller hashes its ControllerRevision).
pub(crate) fn revision_hash(template: &Value) -> String {
    let mut h = DefaultHasher::new();
    template.to_string().hash(&mut h);
    format!("{:x}", h.finish() & 0xff_ffff_ffff)
}

/// The pod the DaemonSet controller creates for `node` (`NewPod` and the node-name affinity of
/// `syncNodes`): not bound; the scheduler binds it.
pub(crate) fn daemon_pod(ds: &DaemonSetInfo, node: &str) -> Value {
    let mut labels = ds
        .template
        .ptr("/metadata/labels")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    labels["controller-revision-hash"] = json!(ds.revision_hash);
    labels["pod-template-generation"] = json!(ds.generation.to_string());
    let mut metadata = json!({
        "generateName": format!("{}-", ds.name),
        "namespace": ds.namespace,
        "labels": labels,
        "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "DaemonSet", "name": ds.name, "uid": ds.uid,
            "controller": true, "blockOwnerDeletion": true,
        }],
    });
    if let Some(a) = ds.template.ptr("/metadata/annotations") {
        metadata["annotations"] = a.clone();
    }
    let mut spec = ds
        .template
        .get("spec")
        .cloned()
        .unwrap_or_else(|| json!({}));
    // ReplaceDaemonSetPodNodeNameNodeAffinity: the required terms become the node's name only.
    let pinned = json!({ "nodeSelectorTerms": [{ "matchFields": [
        { "key": NODE_NAME_FIELD, "operator": "In", "values": [node] }
    ] }] });
    if !spec.get("affinity").is_some_and(Value::is_object) {
        spec["affinity"] = json!({});
    }
    if !spec["affinity"]
        .get("nodeAffinity")
        .is_some_and(Value::is_object)
    {
        spec["affinity"]["nodeAffinity"] = json!({});
    }
    spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = pinned;
    json!({ "apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec })
}

/// The DaemonSet a pod belongs to (`namespace/name`) and the node it is pinned to.
fn owner_and_node(pod: &Value) -> Option<(String, String)> {
    let owner = pod
        .ptr("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|o| {
            o.get("kind").and_then(Value::as_str) == Some("DaemonSet")
                && o.get("controller").and_then(Value::as_bool) == Some(true)
        })?
        .get("name")
        .and_then(Value::as_str)?;
    let node = pod
        .ptr("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0")
        .and_then(Value::as_str)
        .or_else(|| pod.ptr("/spec/nodeName").and_then(Value::as_str))?;
    let ns = crate::apiserver::namespace_of(pod);
    Some((stowage_api::namespaced_key(ns, owner), node.to_string()))
}

/// Creates the DaemonSet pods node `node` should run and does not have yet.
pub(super) fn sync_node(c: &mut Cluster, node: &str) {
    let Some(n) = c.index.node(node) else {
        return;
    };
    let mut to_create = Vec::new();
    for ds in &c.daemonsets {
        if c.daemon_pods.contains(&(ds.key(), node.to_string())) {
            continue;
        }
        let tolerated = untolerated(&n.taints, &ds.pod.tolerations, false).is_none();
        if tolerated && ds.pod.node_affinity_matches(&n.name, &n.labels) {
            to_create.push((ds.key(), ds.namespace.clone(), daemon_pod(ds, node)));
        }
    }
    for (key, ns, obj) in to_create {
        match c.api.store().create(c.k.pod, &ns, obj) {
            Ok(_) => {
                c.daemon_pods.insert((key, node.to_string()));
            }
            Err(e) => {
                tracing::warn!(error = %e, daemonset = %key, node, "the simulated DaemonSet controller could not create a pod")
            }
        }
    }
}

/// A pod went away: if it was a DaemonSet's, its node may get a new one.
pub(super) fn on_pod_gone(c: &mut Cluster, pod: &Value) {
    if let Some((ds, node)) = owner_and_node(pod)
        && c.daemon_pods.remove(&(ds, node.clone()))
    {
        sync_node(c, &node);
    }
}

/// A node went away: its DaemonSet pods are garbage collected with it.
pub(super) fn forget_node(c: &mut Cluster, node: &str) {
    c.daemon_pods.retain(|(_, n)| n != node);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(template: Value) -> DaemonSetInfo {
        DaemonSetInfo {
            namespace: "kube-system".into(),
            name: "agent".into(),
            uid: "u1".into(),
            generation: 3,
            revision_hash: revision_hash(&template),
            template,
            pod: PodRequest::default(),
        }
    }

    #[test]
    fn default_tolerations_are_added_once_and_replace_their_match() {
        let spec = json!({
            "hostNetwork": true,
            "tolerations": [
                { "key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule" },
                { "key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300 },
            ]
        });
        let out = with_default_tolerations(spec);
        let list = out["tolerations"].as_array().unwrap();
        let keys: Vec<&str> = list.iter().map(|t| t["key"].as_str().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "dedicated",
                "node.kubernetes.io/not-ready",
                "node.kubernetes.io/unreachable",
                "node.kubernetes.io/disk-pressure",
                "node.kubernetes.io/memory-pressure",
                "node.kubernetes.io/pid-pressure",
                "node.kubernetes.io/unschedulable",
                "node.kubernetes.io/network-unavailable",
            ]
        );
        assert!(list[1].get("tolerationSeconds").is_none(), "{}", list[1]);
        assert_eq!(with_default_tolerations(out.clone()), out, "idempotent");
    }

    #[test]
    fn the_pod_is_owned_labelled_and_pinned_to_its_node_like_the_real_controllers() {
        let template = json!({
            "metadata": { "labels": { "app": "agent" }, "annotations": { "a": "b" } },
            "spec": {
                "containers": [{ "name": "main" }],
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [
                            { "matchExpressions": [{ "key": "kubernetes.io/os", "operator": "In", "values": ["linux"] }] }
                        ] },
                        "preferredDuringSchedulingIgnoredDuringExecution": [
                            { "weight": 1, "preference": { "matchExpressions": [{ "key": "x", "operator": "Exists" }] } }
                        ]
                    }
                }
            }
        });
        let ds = info(template);
        let pod = daemon_pod(&ds, "ip-10-0-0-1.ec2.internal");
        assert_eq!(pod["metadata"]["generateName"], "agent-");
        assert_eq!(pod["metadata"]["labels"]["app"], "agent");
        assert_eq!(pod["metadata"]["labels"]["pod-template-generation"], "3");
        assert_eq!(
            pod["metadata"]["labels"]["controller-revision-hash"],
            json!(ds.revision_hash)
        );
        assert_eq!(pod["metadata"]["annotations"]["a"], "b");
        let owner = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(
            (
                owner["kind"].as_str(),
                owner["name"].as_str(),
                owner["controller"].as_bool()
            ),
            (Some("DaemonSet"), Some("agent"), Some(true))
        );
        assert!(
            pod["spec"].get("nodeName").is_none(),
            "bound by the scheduler"
        );
        let na = &pod["spec"]["affinity"]["nodeAffinity"];
        assert_eq!(
            na["requiredDuringSchedulingIgnoredDuringExecution"],
            json!({ "nodeSelectorTerms": [{ "matchFields": [
                { "key": "metadata.name", "operator": "In", "values": ["ip-10-0-0-1.ec2.internal"] }
            ] }] })
        );
        assert_eq!(
            na["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"],
            1
        );
        assert_eq!(
            owner_and_node(&pod),
            Some((
                "kube-system/agent".to_string(),
                "ip-10-0-0-1.ec2.internal".to_string()
            ))
        );
        let read: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod).unwrap();
        let p = stowage_solver::convert::pod(&k8s_openapi::api::core::v1::Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("agent-x".into()),
                ..read.metadata
            },
            ..read
        })
        .unwrap();
        let labels = std::collections::BTreeMap::new();
        assert!(p.node_affinity_matches("ip-10-0-0-1.ec2.internal", &labels));
        assert!(!p.node_affinity_matches("ip-10-0-0-2.ec2.internal", &labels));
    }
}
