//! The fake kubelet (one per instance, all in the cluster loop): registers a Node some time after
//! the fake cloud launches an instance (labels, taints and startup taints from the NodeClaim,
//! providerID, capacity and allocatable, Ready), removes startup taints later, runs bound pods,
//! honours deletion grace periods, finishes Job pods after their run time; plus the cloud node
//! lifecycle (Nodes of vanished instances go NotReady and are deleted), pod garbage collection
//! (pods of deleted Nodes are removed). DaemonSet pods are created by `daemonsets.rs` and bound
//! by the scheduler.

use crate::json::JsonPointer as _;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use stowage_api::labels;
use stowage_solver::Resources;

use super::{Cluster, NodeInfo, RUN_SECONDS_ANNOTATION, Timer};
use crate::apiserver::DeleteOpts;

fn quantities(r: &Resources) -> Value {
    let m: BTreeMap<String, String> =
        r.0.iter()
            .map(|(k, v)| (k.clone(), stowage_api::quantity::format_resource(k, *v)))
            .collect();
    json!(m)
}

fn taint_json(t: &k8s_openapi::api::core::v1::Taint) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// A node object as a kubelet registers it.
pub(crate) fn node_object(
    name: &str,
    provider_id: &str,
    labels_map: &BTreeMap<String, String>,
    taints: Vec<Value>,
    capacity: &Resources,
    allocatable: &Resources,
    now: &str,
    ip: &str,
) -> Value {
    let mut l = labels_map.clone();
    l.insert(labels::HOSTNAME.into(), name.into());
    l.entry(labels::OS.into()).or_insert_with(|| "linux".into());
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": name, "labels": l },
        "spec": { "providerID": provider_id, "taints": taints },
        "status": {
            "capacity": quantities(capacity),
            "allocatable": quantities(allocatable),
            "conditions": [
                { "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                  "lastHeartbeatTime": now, "lastTransitionTime": now },
            ],
            "addresses": [{ "type": "InternalIP", "address": ip }, { "type": "Hostname", "address": name }],
            "nodeInfo": {
                "kubeletVersion": "v1.33.0", "kubeProxyVersion": "v1.33.0", "operatingSystem": "linux",
                "architecture": l.get(labels::ARCH).cloned().unwrap_or_else(|| "amd64".into()),
                "containerRuntimeVersion": "containerd://2.0.0", "osImage": "Amazon Linux 2023",
                "kernelVersion": "6.1.0", "machineID": "", "systemUUID": "", "bootID": ""
            }
        }
    })
}

impl Cluster {
    pub(crate) fn next_node_name(&mut self) -> (String, String) {
        self.node_counter += 1;
        let n = self.node_counter;
        let ip = format!("10.{}.{}.{}", (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff);
        let suffix = if self.region == "us-east-1" {
            "ec2.internal".to_string()
        } else {
            format!("{}.compute.internal", self.region)
        };
        (format!("ip-{}.{}", ip.replace('.', "-"), suffix), ip)
    }

    pub(crate) fn register_node(&mut self, provider_id: &str) {
        let Some(instance) = self.launched.get(provider_id).cloned() else {
            return;
        };
        if self.cloud.instance(provider_id).is_none() {
            return;
        }
        let (name, ip) = self.next_node_name();
        let mut l = instance.labels.clone();
        if let Some(pool) = &instance.nodepool {
            l.insert(labels::NODEPOOL.into(), pool.clone());
        }
        l.insert(labels::NODECLAIM.into(), instance.claim_name.clone());
        let mut taints: Vec<Value> = instance
            .taints
            .iter()
            .chain(instance.startup_taints.iter())
            .map(taint_json)
            .collect();
        taints.dedup();
        if self.options.register_with_unregistered_taint {
            taints.push(json!({ "key": labels::UNREGISTERED_TAINT_KEY, "effect": "NoExecute" }));
        }
        let obj = node_object(
            &name,
            provider_id,
            &l,
            taints,
            &instance.capacity,
            &instance.allocatable,
            &self.now_string(),
            &ip,
        );
        match self.api.store().create(self.k.node, "", obj) {
            Ok(_) => {
                if !instance.startup_taints.is_empty() {
                    let delay = self.options.timings.startup_taint_removal.as_std();
                    self.at(delay, Timer::RemoveStartupTaints(name));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the simulated kubelet could not register its node")
            }
        }
    }

    pub(crate) fn remove_startup_taints(&mut self, node: &str) {
        let Some(pid) = self.nodes.get(node).map(|n| n.provider_id.clone()) else {
            return;
        };
        let Some(instance) = self.launched.get(&pid) else {
            return;
        };
        let startup: Vec<(String, String)> = instance
            .startup_taints
            .iter()
            .map(|t| (t.key.clone(), t.effect.clone()))
            .collect();
        let _ = self.api.store().modify(self.k.node, "", node, |n| {
            let Some(ts) = n.pointer_mut("/spec/taints").and_then(Value::as_array_mut) else {
                return false;
            };
            let before = ts.len();
            ts.retain(|t| {
                let k = t.get("key").and_then(Value::as_str).unwrap_or_default();
                let e = t.get("effect").and_then(Value::as_str).unwrap_or_default();
                !startup.iter().any(|(sk, se)| sk == k && se == e)
            });
            ts.len() != before
        });
    }

    pub(crate) fn node_gone(&mut self, provider_id: &str) {
        let Some(name) = self
            .nodes
            .values()
            .find(|n| n.provider_id == provider_id)
            .map(|n| n.name.clone())
        else {
            return;
        };
        let now = self.now_string();
        let _ = self.api.store().modify(self.k.node, "", &name, |n| {
            if let Some(cs) = n.pointer_mut("/status/conditions").and_then(Value::as_array_mut) {
                for c in cs.iter_mut().filter(|c| c.get("type").and_then(Value::as_str) == Some("Ready")) {
                    *c = json!({ "type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
                                 "message": "Kubelet stopped posting node status.", "lastHeartbeatTime": now, "lastTransitionTime": now });
                }
            }
            true
        });
        let _ = self
            .api
            .store()
            .delete(self.k.node, "", &name, &DeleteOpts::default());
    }

    pub(crate) fn start_pod(&mut self, key: &str) {
        let Some(p) = self.pods.get(key).cloned() else {
            return;
        };
        let Some(node) = p.node.clone() else { return };
        if p.terminating
            || p.phase != "Pending"
            || !self.nodes.get(&node).is_some_and(|n| n.ready && !n.dead)
        {
            if let Some(pp) = self.pods.get_mut(key) {
                pp.start_queued = false;
            }
            return;
        }
        let now = self.now_string();
        let (ns, name) = key.split_once('/').unwrap_or_default();
        let res = self.api.store().modify(self.k.pod, ns, name, |pod| {
            let status = super::super::apiserver::store::as_map(
                super::super::apiserver::store::as_map(pod).entry("status").or_insert(Value::Null),
            );
            status.insert("phase".into(), json!("Running"));
            status.insert("startTime".into(), json!(now));
            status.insert("hostIP".into(), json!("10.0.0.1"));
            status.insert(
                "conditions".into(),
                json!(["PodScheduled", "Initialized", "ContainersReady", "Ready"]
                    .iter()
                    .map(|t| json!({ "type": t, "status": "True", "lastTransitionTime": now, "lastProbeTime": null }))
                    .collect::<Vec<_>>()),
            );
            status.insert(
                "containerStatuses".into(),
                json!([{ "name": "main", "ready": true, "started": true, "restartCount": 0, "image": "busybox", "imageID": "",
                         "state": { "running": { "startedAt": now } } }]),
            );
            true
        });
        if res.is_err() {
            return;
        }
        if !p.daemonset {
            let secs = self.now().duration_since(p.created).as_secs_f64().max(0.0);
            self.recorder.pending_to_running.push(secs);
            self.settle_interruption_debt(&p.obj, &node);
        }
        if let Some(run) = crate::json::meta_str(&p.obj, "annotations", RUN_SECONDS_ANNOTATION)
            .and_then(|s| s.parse::<u64>().ok())
        {
            self.at(
                std::time::Duration::from_secs(run),
                Timer::PodFinish(key.to_string()),
            );
        }
    }

    pub(crate) fn finish_pod(&mut self, key: &str) {
        let Some(p) = self.pods.get(key) else { return };
        if p.phase != "Running" || p.terminating {
            return;
        }
        let now = self.now_string();
        let (ns, name) = key.split_once('/').unwrap_or_default();
        let _ = self.api.store().modify(self.k.pod, ns, name, |pod| {
            pod["status"]["phase"] = json!("Succeeded");
            if let Some(cs) = pod.pointer_mut("/status/conditions").and_then(Value::as_array_mut) {
                for c in cs.iter_mut() {
                    if matches!(c.get("type").and_then(Value::as_str), Some("Ready" | "ContainersReady")) {
                        c["status"] = json!("False");
                        c["reason"] = json!("PodCompleted");
                        c["lastTransitionTime"] = json!(now);
                    }
                }
            }
            pod["status"]["containerStatuses"] = json!([{ "name": "main", "ready": false, "started": false, "restartCount": 0,
                "image": "busybox", "imageID": "", "state": { "terminated": { "exitCode": 0, "reason": "Completed", "finishedAt": now } } }]);
            true
        });
    }

    pub(crate) fn stop_pod(&mut self, key: &str) {
        let (ns, name) = key.split_once('/').unwrap_or_default();
        let opts = DeleteOpts {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        let _ = self.api.store().delete(self.k.pod, ns, name, &opts);
    }
}

/// Kubelet reactions to a pod change: start bound pods, stop deleted ones.
pub(super) fn on_pod(c: &mut Cluster, key: &str) {
    let Some(p) = c.pods.get(key) else { return };
    let Some(node) = p.node.clone() else { return };
    let node_state = c.nodes.get(&node).map(|n| (n.ready, n.dead));
    if p.terminating {
        if p.stop_queued {
            return;
        }
        let grace = p
            .obj
            .ptr("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .max(0) as u64;
        let delay = match node_state {
            // The kubelet is gone: the pod waits for the node to be deleted (pod GC).
            Some((_, true)) => return,
            Some(_) => c
                .options
                .timings
                .pod_shutdown
                .as_std()
                .min(std::time::Duration::from_secs(grace)),
            None => std::time::Duration::ZERO,
        };
        if let Some(pp) = c.pods.get_mut(key) {
            pp.stop_queued = true;
        }
        c.at(delay, Timer::PodStop(key.to_string()));
        return;
    }
    if p.phase == "Pending"
        && !p.start_queued
        && node_state.is_some_and(|(ready, dead)| ready && !dead)
    {
        if let Some(pp) = c.pods.get_mut(key) {
            pp.start_queued = true;
        }
        c.at(
            c.options.timings.pod_startup.as_std(),
            Timer::PodStart(key.to_string()),
        );
    }
}

/// Pod garbage collection for a deleted node.
pub(super) fn collect_pods_of(c: &mut Cluster, node: &str) {
    let keys: Vec<String> = c
        .pods_by_node
        .remove(node)
        .map(|s| s.into_iter().collect())
        .unwrap_or_default();
    let opts = DeleteOpts {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    for key in keys {
        if c.pods
            .get(&key)
            .is_some_and(|p| p.node.as_deref() == Some(node))
        {
            let (ns, name) = key.split_once('/').unwrap_or_default();
            let _ = c.api.store().delete(c.k.pod, ns, name, &opts);
        }
    }
}

/// A node appeared or changed: track it, (re)index it for the scheduler, create the DaemonSet
/// pods it should run, start pods that were waiting for it.
pub(super) fn on_node(c: &mut Cluster, name: &str, obj: &Arc<Value>) {
    let ready = obj
        .ptr("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|x| x.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .is_some_and(|x| x.get("status").and_then(Value::as_str) == Some("True"));
    let provider_id = obj
        .ptr("/spec/providerID")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let label = |k: &str| crate::json::meta_str(obj, "labels", k).map(str::to_string);
    let capacity_type = label(labels::CAPACITY_TYPE).and_then(|v| v.parse().ok());
    let instance_type = label(labels::INSTANCE_TYPE).unwrap_or_default();
    let zone = label(labels::ZONE).unwrap_or_default();
    let price = match c.launched.get(&provider_id) {
        Some(i) => i.price_per_hour,
        None => c
            .catalog
            .get(&instance_type)
            .and_then(|t| {
                t.offerings
                    .iter()
                    .find(|o| {
                        Some(o.capacity_type) == capacity_type
                            && (zone.is_empty() || o.zone == zone)
                    })
                    .map(|o| o.price_per_hour)
            })
            .unwrap_or(0.0),
    };
    let vcpu = obj
        .ptr("/status/capacity/cpu")
        .and_then(Value::as_str)
        .and_then(|q| stowage_api::quantity::parse_resource("cpu", q).ok())
        .map_or(0.0, |milli| milli as f64 / 1000.0);
    let dead = c.nodes.get(name).is_some_and(|n| n.dead)
        || (!provider_id.is_empty()
            && provider_id.starts_with(stowage_cloud::fake::PROVIDER_ID_PREFIX)
            && c.cloud.instance(&provider_id).is_none());
    c.nodes.insert(
        name.to_string(),
        NodeInfo {
            name: name.to_string(),
            provider_id,
            capacity_type,
            instance_type,
            nodepool: label(labels::NODEPOOL),
            price_per_hour: price,
            vcpu,
            ready,
            dead,
        },
    );
    // Scheduler index.
    let k8s: Option<k8s_openapi::api::core::v1::Node> =
        serde::Deserialize::deserialize(&**obj).ok();
    let domain = k8s
        .as_ref()
        .and_then(|n| stowage_solver::convert::node(n, Vec::new()).ok());
    let schedulable = ready && !dead;
    let current = c.index.node(name).map(|n| {
        (
            n.labels.clone(),
            n.taints.clone(),
            n.allocatable.clone(),
            n.unschedulable,
        )
    });
    match (schedulable, domain) {
        (true, Some(mut d)) => {
            let same = current.as_ref().is_some_and(|(l, t, a, u)| {
                *l == d.labels && *t == d.taints && *a == d.allocatable && *u == d.unschedulable
            });
            if !same {
                let pods = match c.index.remove_node(name) {
                    Some(old) => old.pods,
                    None => {
                        let keys: Vec<String> = c
                            .pods_by_node
                            .get(name)
                            .map(|s| s.iter().cloned().collect())
                            .unwrap_or_default();
                        keys.iter()
                            .filter_map(|k| c.pods.get(k))
                            .filter(|p| p.phase != "Succeeded" && p.phase != "Failed")
                            .filter_map(|p| c.domain_pod(&p.obj).map(std::sync::Arc::new))
                            .collect()
                    }
                };
                d.pods = pods;
                c.index.add_node(d);
                c.capacity_changed = true;
            }
        }
        _ => {
            if c.index.remove_node(name).is_some() {
                c.capacity_changed = true;
            }
        }
    }
    // The DaemonSet controller looks at every node change (a taint gone may let a DaemonSet in).
    super::daemonsets::sync_node(c, name);
    if schedulable {
        let keys: Vec<String> = c
            .pods_by_node
            .get(name)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for k in keys {
            on_pod(c, &k);
        }
    }
}
