//! The fake kube-scheduler: binds pending pods to nodes they fit on, using the solver's
//! predicates (`stowage_solver::predicates::ClusterIndex`), and marks the rest
//! `PodScheduled=False, reason=Unschedulable` with kube-scheduler's message
//! (`0/12 nodes are available: 8 Insufficient cpu, 4 node(s) had untolerated taint {...}.`).
//!
//! Pods are tried in kube-scheduler's queue order: higher priority first (DaemonSet pods, which
//! it binds since Kubernetes 1.12, before workloads), then arrival.
//!
//! Efficiency at thousands of pods: pods already found
//! unschedulable are retried only after capacity changed (a node appeared or changed, a pod went
//! away), like kube-scheduler's unschedulable queue; and within one cycle, pods with the same
//! scheduling constraints as one that just failed fail with the same message without another pass
//! over the nodes.

use crate::json::JsonPointer as _;
use std::cmp::Reverse;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::Cluster;
use stowage_solver::PodRequest;
use stowage_solver::predicates::PodView;

fn fit_message(fit: &stowage_solver::predicates::FitError) -> String {
    if fit.nodes == 0 {
        "no nodes available to schedule pods".to_string()
    } else {
        fit.to_string()
    }
}

/// A hash of everything that decides where a pod can go (not its name).
pub(crate) fn signature(pod: &PodRequest) -> u64 {
    let mut h = DefaultHasher::new();
    pod.namespace.hash(&mut h);
    pod.requests.hash(&mut h);
    pod.node_selector.hash(&mut h);
    pod.required_node_affinity.hash(&mut h);
    pod.tolerations.hash(&mut h);
    pod.topology_spread.hash(&mut h);
    pod.pod_affinity.hash(&mut h);
    pod.pod_anti_affinity.hash(&mut h);
    pod.host_ports.hash(&mut h);
    if !pod.topology_spread.is_empty()
        || !pod.pod_affinity.is_empty()
        || !pod.pod_anti_affinity.is_empty()
    {
        pod.labels.hash(&mut h);
    }
    h.finish()
}

/// Whether a pod's fit on one node is independent of pods placed on other nodes in the same
/// cycle (no spread, no pod (anti-)affinity, no host ports): then a bind only changes the chosen
/// node, and one feasibility pass per signature serves every pod of that signature.
fn independent(pod: &PodRequest) -> bool {
    pod.topology_spread.is_empty()
        && pod.pod_affinity.is_empty()
        && pod.pod_anti_affinity.is_empty()
        && pod.host_ports.is_empty()
}

/// Feasible nodes of one signature, best first: the order of `ClusterIndex::find_node`
/// (preferred-affinity weight, then most requested cpu, then name).
type Candidates = BinaryHeap<(i32, i64, Reverse<String>)>;

/// For pods whose fit depends on other pods (topology spread, pod (anti-)affinity, host ports):
/// per signature, within one cycle, the nodes not yet ruled out, by their score now (a bind
/// pushes the bound node's new score, and an entry whose score is no longer the node's is
/// dropped when it comes up). A node refused for resources, taints, affinity to nodes, host
/// ports or anti-affinity stays refused for the rest of the cycle (binds only add pods); one
/// refused for spread or pod affinity is kept, as a later bind may let it in. The pod's view of
/// the cluster (spread domains' counts, affinity domains) is computed once and kept up to date
/// by each bind, instead of a pass over every node per pod.
struct Dependent {
    pod: Arc<(PodRequest, u64)>,
    view: PodView,
    nodes: Candidates,
}

impl Cluster {
    /// The solver's view of a pod and its signature, computed once per pod.
    fn scheduling_view(&mut self, key: &str) -> Option<Arc<(PodRequest, u64)>> {
        if let Some(v) = self.domain_cache.get(key) {
            return Some(v.clone());
        }
        let obj = self.pods.get(key)?.obj.clone();
        let pod = self.domain_pod(&obj)?;
        let sig = signature(&pod);
        let v = Arc::new((pod, sig));
        self.domain_cache.insert(key.to_string(), v.clone());
        Some(v)
    }

    fn score(&self, pod: &PodRequest, node: &str) -> (i32, i64) {
        let Some(n) = self.index.node(node) else {
            return (0, 0);
        };
        let pref: i32 = pod
            .preferred_node_affinity
            .iter()
            .filter(|t| t.matches(&n.name, &n.labels))
            .map(|t| t.weight)
            .sum();
        (
            pref,
            self.index.requested(node).map_or(0, |r| r.cpu_millis()),
        )
    }

    /// Picks a node for an independent pod from its signature's candidates (verifying the fit,
    /// dropping nodes that no longer fit).
    fn pick(&mut self, pod: &PodRequest, heap: &mut Candidates) -> Option<String> {
        while let Some((pref, cpu, Reverse(name))) = heap.pop() {
            if self.score(pod, &name) != (pref, cpu) {
                let (p, c) = self.score(pod, &name);
                heap.push((p, c, Reverse(name)));
                continue;
            }
            if self.index.check(pod, &name).is_ok() {
                return Some(name);
            }
        }
        None
    }

    /// Every node, scored for `pod` (see [`Dependent`]).
    fn all_candidates(&self, pod: &PodRequest) -> Candidates {
        self.index
            .node_names()
            .map(|n| {
                let (p, c) = self.score(pod, n);
                (p, c, Reverse(n.to_string()))
            })
            .collect()
    }

    /// The node `ClusterIndex::find_node` would choose for a dependent pod, from its signature's
    /// candidates: the best-scored node that fits now, with the pod's view of the cluster
    /// computed once instead of checking every node. `None`: no candidate fits.
    fn pick_dependent(&self, pod: &PodRequest, d: &mut Dependent) -> Option<String> {
        use stowage_solver::predicates::Misfit;
        let (view, nodes) = (&d.view, &mut d.nodes);
        let mut later = Vec::new();
        let mut found = None;
        while let Some((p, c, Reverse(name))) = nodes.pop() {
            if self.score(pod, &name) != (p, c) {
                // A newer entry of this node holds its score now.
                continue;
            }
            match self.index.check_view_of(pod, view, &name) {
                Ok(()) => {
                    found = Some(name.clone());
                    later.push((p, c, Reverse(name)));
                    break;
                }
                Err(Misfit::TopologySpread | Misfit::PodAffinity) => {
                    later.push((p, c, Reverse(name)));
                }
                Err(_) => {}
            }
        }
        nodes.extend(later);
        found
    }

    pub(crate) fn schedule_cycle(&mut self) {
        self.recorder.scheduling_cycles += 1;
        let retry_all = std::mem::take(&mut self.capacity_changed);
        let fresh = std::mem::take(&mut self.fresh);
        // kube-scheduler's queue order (PrioritySort): higher priority first, then arrival.
        let mut candidates: Vec<(Reverse<i64>, String)> = self
            .queue
            .values()
            .filter(|k| retry_all || fresh.contains(*k))
            .map(|k| (Reverse(self.priority_of(k)), k.clone()))
            .collect();
        candidates.sort_by_key(|(p, _)| *p);
        let candidates = candidates.into_iter().map(|(_, k)| k);
        let mut failed: HashMap<u64, String> = HashMap::new();
        let mut heaps: HashMap<u64, Candidates> = HashMap::new();
        let mut dependent: HashMap<u64, Dependent> = HashMap::new();
        for key in candidates {
            let Some(info) = self.pods.get(&key) else {
                continue;
            };
            if info.node.is_some() || info.terminating {
                continue;
            }
            if !info.default_scheduler {
                continue;
            }
            let obj = info.obj.clone();
            let Some(view) = self.scheduling_view(&key) else {
                continue;
            };
            let (pod, sig) = (&view.0, view.1);
            if let Some(msg) = failed.get(&sig).cloned() {
                self.mark_unschedulable(&key, &obj, &msg);
                continue;
            }
            let chosen = if independent(pod) {
                let mut heap = match heaps.remove(&sig) {
                    Some(h) => h,
                    None => match self.index.feasible(pod) {
                        Ok(names) => names
                            .into_iter()
                            .map(|n| {
                                let (p, c) = self.score(pod, &n);
                                (p, c, Reverse(n))
                            })
                            .collect(),
                        Err(fit) => {
                            let msg = fit_message(&fit);
                            failed.insert(sig, msg.clone());
                            self.mark_unschedulable(&key, &obj, &msg);
                            continue;
                        }
                    },
                };
                let picked = self.pick(pod, &mut heap);
                heaps.insert(sig, heap);
                match picked {
                    Some(n) => Ok(n),
                    // Every node that fitted this signature is full now: say why, as a full pass would.
                    None => self.index.find_node(pod),
                }
            } else if let Some(d) = dependent.get_mut(&sig) {
                match self.pick_dependent(pod, d) {
                    Some(n) => Ok(n),
                    // Nothing fits: say why, as a full pass would.
                    None => self.index.find_node(pod),
                }
            } else {
                // The first pod of its signature in this cycle: a full pass, and the
                // candidates for the next ones if it found a node.
                let found = self.index.find_node(pod);
                if found.is_ok() {
                    let nodes = self.all_candidates(pod);
                    dependent.insert(
                        sig,
                        Dependent {
                            pod: view.clone(),
                            view: self.index.view_of(pod),
                            nodes,
                        },
                    );
                }
                found
            };
            match chosen {
                Ok(node) => {
                    let (ns, name) = key.split_once('/').unwrap_or_default();
                    match self.api.store().bind(self.k.pod, ns, name, &node) {
                        Ok(_) => {
                            let indexed = self.index.bind(pod.clone(), &node).is_ok();
                            self.recorder.binds += 1;
                            self.unschedulable_since.remove(&key);
                            for d in dependent.values_mut() {
                                if indexed {
                                    self.index
                                        .view_after_bind(&d.pod.0, &mut d.view, pod, &node);
                                }
                                let (p, c) = self.score(&d.pod.0, &node);
                                d.nodes.push((p, c, Reverse(node.clone())));
                            }
                            if let Some(h) = heaps.get_mut(&sig) {
                                let (p, c) = self.score(pod, &node);
                                h.push((p, c, Reverse(node)));
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, pod = %key, "binding failed"),
                    }
                }
                Err(fit) => {
                    let msg = fit_message(&fit);
                    failed.insert(sig, msg.clone());
                    self.mark_unschedulable(&key, &obj, &msg);
                }
            }
        }
    }

    fn priority_of(&self, key: &str) -> i64 {
        self.pods.get(key).map_or(0, |p| p.priority)
    }

    fn mark_unschedulable(&mut self, key: &str, obj: &Value, message: &str) {
        // This scheduler wrote the pod's condition with this very message (nothing else writes
        // `PodScheduled`, and a bind forgets the entry): nothing to do, without reading the
        // object (a cycle passes every queued pod through here).
        if self
            .unschedulable_since
            .get(key)
            .is_some_and(|(_, m)| m == message)
        {
            return;
        }
        let cond = obj
            .ptr("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| {
                cs.iter()
                    .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
            });
        let already = cond.is_some_and(|c| {
            c.get("status").and_then(Value::as_str) == Some("False")
                && c.get("reason").and_then(Value::as_str) == Some("Unschedulable")
        });
        let now = Instant::now();
        if already {
            let same_message =
                cond.and_then(|c| c.get("message")).and_then(Value::as_str) == Some(message);
            let recent = self.unschedulable_since.get(key).is_some_and(|(at, _)| {
                now.duration_since(*at) < self.options.unschedulable_refresh
            });
            if same_message || recent {
                return;
            }
        }
        self.unschedulable_since
            .insert(key.to_string(), (now, message.to_string()));
        let ts = self.now_string();
        let (ns, name) = key.split_once('/').unwrap_or_default();
        let message = message.to_string();
        let _ = self.api.store().modify(self.k.pod, ns, name, move |pod| {
            if pod.ptr("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty()) {
                return false;
            }
            let cond = json!({ "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                               "lastTransitionTime": ts, "lastProbeTime": null });
            let status = crate::apiserver::store::as_map(crate::apiserver::store::as_map(pod).entry("status").or_insert(Value::Null));
            let conds = status.entry("conditions").or_insert_with(|| json!([]));
            if let Some(list) = conds.as_array_mut() {
                list.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
                list.push(cond);
            }
            true
        });
    }
}
