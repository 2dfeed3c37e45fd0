//! The workload controllers a scenario needs, kept minimal: ReplicaSet-like (Deployment) replicas
//! are replaced when deleted or evicted; Job pods finish after their run time and are retried
//! when lost; a SparkApplication-like workload starts a driver, then its executors (owned by the
//! driver, so they go with it) once the driver runs, and removes them when the driver finishes.
//! Also the bootstrap (NodeClasses, NodePools, DaemonSets, initial nodes); DaemonSet pods are
//! the DaemonSet controller's (`daemonsets.rs`), which creates them as nodes appear and change.

use crate::json::JsonPointer as _;
use std::collections::BTreeSet;

use serde_json::{Value, json};
use stowage_api::labels;

use super::{Cluster, Error, RUN_SECONDS_ANNOTATION, WORKLOAD_LABEL};
use crate::apiserver::{DeleteOpts, name_of};
use crate::scenario::{Scenario, TolerationDef, Workload, WorkloadKind};

/// A workload's live state.
#[derive(Clone, Debug)]
pub struct WorkloadState {
    pub def: Workload,
    pub desired: u32,
    /// The owner object (ReplicaSet or Job) and its uid.
    pub owner_kind: &'static str,
    pub owner_uid: String,
    /// Live (non-terminal, not terminating) pods, by name.
    pub active: BTreeSet<String>,
    pub succeeded: u32,
    pub deleted: bool,
    /// SparkApplication: the driver pod's name and uid, and whether executors were started.
    pub driver: Option<(String, String)>,
    pub executors_started: bool,
    pub done: bool,
}

/// A [`WorkloadState`] without its live pods' names (their count instead): what a reconcile
/// reads of it, cheap to copy out while the cluster is mutated.
struct WorkloadView {
    def: Workload,
    desired: u32,
    owner_uid: String,
    active_count: u32,
    succeeded: u32,
    deleted: bool,
    driver: Option<(String, String)>,
    done: bool,
}

impl WorkloadState {
    fn without_active(&self) -> WorkloadView {
        WorkloadView {
            def: self.def.clone(),
            desired: self.desired,
            owner_uid: self.owner_uid.clone(),
            active_count: u32::try_from(self.active.len()).unwrap_or(u32::MAX),
            succeeded: self.succeeded,
            deleted: self.deleted,
            driver: self.driver.clone(),
            done: self.done,
        }
    }
}

fn tolerations(ts: &[TolerationDef]) -> Value {
    json!(
        ts.iter()
            .map(|t| {
                let mut v = json!({});
                if !t.key.is_empty() {
                    v["key"] = json!(t.key);
                }
                let op = t.operator.clone().unwrap_or_else(|| {
                    if t.value.is_empty() && t.key.is_empty() {
                        "Exists".into()
                    } else {
                        "Equal".into()
                    }
                });
                v["operator"] = json!(op);
                if !t.value.is_empty() {
                    v["value"] = json!(t.value);
                }
                if !t.effect.is_empty() {
                    v["effect"] = json!(t.effect);
                }
                v
            })
            .collect::<Vec<_>>()
    )
}

fn int_or_string(s: &str) -> Value {
    s.parse::<i64>()
        .map(|n| json!(n))
        .unwrap_or_else(|_| json!(s))
}

pub(super) fn bootstrap(c: &mut Cluster, scenario: &Scenario) -> Result<(), Error> {
    let api = c.api.clone();
    let store = api.store();
    let create = |kind, ns: &str, obj: Value, what: String| {
        store
            .create(kind, ns, obj)
            .map_err(|source| Error::CreateObject { what, source })
    };
    let zones: BTreeSet<String> = c
        .catalog
        .values()
        .flat_map(|t| t.offerings.iter().map(|o| o.zone.clone()))
        .collect();
    for nc in &scenario.node_classes {
        let spec = serde_json::to_value(&nc.spec).unwrap_or_default();
        create(
            c.k.nodeclass,
            "",
            json!({ "metadata": { "name": nc.name }, "spec": spec }),
            format!("EC2NodeClass {}", nc.name),
        )?;
        // Resolved at once: the simulated cloud has a subnet per zone and nothing to discover.
        let now = c.now_string();
        let status = json!({ "status": {
            "subnets": zones.iter().enumerate().map(|(i, z)| json!({ "id": format!("subnet-{i:04}"), "zone": z })).collect::<Vec<_>>(),
            "securityGroups": [{ "id": "sg-0001", "name": "sim" }],
            "amis": [{ "id": "ami-fake", "name": "sim" }],
            "conditions": [{ "type": "Ready", "status": "True", "reason": "Ready", "message": "", "lastTransitionTime": now }]
        }});
        let _ = store.patch(
            c.k.nodeclass,
            "",
            &nc.name,
            &crate::apiserver::patch::PatchKind::Merge,
            status.to_string().as_bytes(),
            crate::apiserver::Sub::Status,
        );
    }
    for np in &scenario.node_pools {
        let spec = serde_json::to_value(&np.spec).unwrap_or_default();
        create(
            c.k.nodepool,
            "",
            json!({ "metadata": { "name": np.name, "labels": np.labels }, "spec": spec }),
            format!("NodePool {}", np.name),
        )?;
    }
    for ds in &scenario.daemon_sets {
        let pod_labels = json!({ "app": ds.name });
        let template = json!({
            "metadata": { "labels": pod_labels },
            "spec": {
                "containers": [{ "name": "main", "image": "busybox", "resources": { "requests": ds.requests } }],
                "nodeSelector": ds.node_selector,
                "tolerations": tolerations(&ds.tolerations),
                "priorityClassName": "system-node-critical",
                "priority": 2_000_001_000,
            }
        });
        let obj = json!({
            "metadata": { "name": ds.name },
            "spec": { "selector": { "matchLabels": pod_labels }, "template": template }
        });
        let created = create(
            c.k.daemonset,
            &ds.namespace,
            obj,
            format!("DaemonSet {}/{}", ds.namespace, ds.name),
        )?;
        let k8s: Option<k8s_openapi::api::apps::v1::DaemonSet> =
            serde::Deserialize::deserialize(&*created).ok();
        // Which nodes should run it: the template with the DaemonSet controller's tolerations.
        let mut pod_template = template.clone();
        pod_template["spec"] =
            super::daemonsets::with_default_tolerations(template["spec"].clone());
        let check = k8s.and_then(|mut d| {
            let spec = d.spec.as_mut()?;
            spec.template = serde::Deserialize::deserialize(&pod_template).ok()?;
            stowage_solver::convert::daemonset(&d).ok()
        });
        if let Some(d) = check {
            let uid = created
                .ptr("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let generation = created
                .ptr("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            c.daemonsets.push(super::daemonsets::DaemonSetInfo {
                namespace: ds.namespace.clone(),
                name: ds.name.clone(),
                uid,
                generation,
                revision_hash: super::daemonsets::revision_hash(&template),
                template: pod_template,
                pod: d.pod,
            });
        }
    }
    for group in &scenario.initial_nodes {
        let it = c
            .catalog
            .get(&group.instance_type)
            .cloned()
            .ok_or_else(|| Error::FindInstanceType(group.instance_type.clone()))?;
        let zone = group
            .zone
            .clone()
            .or_else(|| {
                it.offerings
                    .iter()
                    .find(|o| o.capacity_type == group.capacity_type)
                    .map(|o| o.zone.clone())
            })
            .unwrap_or_default();
        for _ in 0..group.count {
            let (name, ip) = c.next_node_name();
            let mut l = it.labels.clone();
            l.extend(group.labels.clone());
            l.insert(labels::ZONE.into(), zone.clone());
            l.insert(labels::REGION.into(), c.region.clone());
            l.insert(
                labels::CAPACITY_TYPE.into(),
                group.capacity_type.as_str().into(),
            );
            l.insert(labels::INSTANCE_TYPE.into(), it.name.clone());
            let taints: Vec<Value> = group
                .taints
                .iter()
                .map(|t| json!({ "key": t.key, "value": t.value, "effect": t.effect }))
                .collect();
            let pid = format!("aws:///{zone}/i-static{:06}", c.node_counter);
            let obj = super::kubelet::node_object(
                &name,
                &pid,
                &l,
                taints,
                &it.capacity,
                &it.allocatable(),
                &c.now_string(),
                &ip,
            );
            create(c.k.node, "", obj, format!("Node {name}"))?;
        }
    }
    Ok(())
}

fn pod_for(
    w: &Workload,
    owner: (&str, &str, &str, &str),
    requests: &std::collections::BTreeMap<String, String>,
    run: Option<u64>,
    role: &str,
) -> Value {
    let (api_version, kind, owner_name, owner_uid) = owner;
    let mut l = w.labels.clone();
    l.insert(WORKLOAD_LABEL.into(), w.name.clone());
    l.entry("app".into()).or_insert_with(|| w.name.clone());
    if !role.is_empty() {
        l.insert("spark-role".into(), role.into());
    }
    let mut annotations = w.annotations.clone();
    if let Some(r) = run {
        annotations.insert(RUN_SECONDS_ANNOTATION.into(), r.to_string());
    }
    let mut spec = json!({
        "containers": [{ "name": "main", "image": "busybox", "resources": { "requests": requests } }],
        "restartPolicy": if w.kind == WorkloadKind::Deployment { "Always" } else { "Never" },
    });
    if !w.node_selector.is_empty() {
        spec["nodeSelector"] = json!(w.node_selector);
    }
    if !w.tolerations.is_empty() {
        spec["tolerations"] = tolerations(&w.tolerations);
    }
    if let Some(p) = w.priority {
        spec["priority"] = json!(p);
    }
    if let Some(g) = w.termination_grace_period {
        spec["terminationGracePeriodSeconds"] = json!(g.as_std().as_secs());
    }
    let selector = json!({ "matchLabels": { WORKLOAD_LABEL: w.name } });
    if !w.spread.is_empty() {
        spec["topologySpreadConstraints"] = json!(w
            .spread
            .iter()
            .map(|s| json!({ "maxSkew": s.max_skew, "topologyKey": s.topology_key, "whenUnsatisfiable": s.when_unsatisfiable, "labelSelector": selector }))
            .collect::<Vec<_>>());
    }
    let mut affinity = json!({});
    if !w.node_affinity.is_empty() {
        let exprs: Vec<Value> = w
            .node_affinity
            .iter()
            .map(|(k, vs)| json!({ "key": k, "operator": "In", "values": vs }))
            .collect();
        affinity["nodeAffinity"] = json!({ "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [{ "matchExpressions": exprs }] } });
    }
    if let Some(key) = &w.anti_affinity {
        affinity["podAntiAffinity"] = json!({ "requiredDuringSchedulingIgnoredDuringExecution": [{ "labelSelector": selector, "topologyKey": key }] });
    }
    if affinity.as_object().is_some_and(|a| !a.is_empty()) {
        spec["affinity"] = affinity;
    }
    json!({
        "metadata": {
            "generateName": format!("{}-", if role == "driver" { format!("{}-driver", w.name) } else { w.name.clone() }),
            "labels": l,
            "annotations": annotations,
            "ownerReferences": [{ "apiVersion": api_version, "kind": kind, "name": owner_name, "uid": owner_uid, "controller": true, "blockOwnerDeletion": true }],
        },
        "spec": spec,
    })
}

pub(super) fn create(c: &mut Cluster, w: &Workload) {
    let key = (w.namespace.clone(), w.name.clone());
    if c.workloads.contains_key(&key) {
        tracing::warn!(workload = %w.name, "workload already exists; create ignored");
        return;
    }
    let selector = json!({ "matchLabels": { WORKLOAD_LABEL: w.name } });
    let (kind_id, owner_kind) = match w.kind {
        WorkloadKind::Deployment => (c.k.replicaset, "ReplicaSet"),
        WorkloadKind::Job | WorkloadKind::SparkApplication => (c.k.job, "Job"),
    };
    let spec = match w.kind {
        WorkloadKind::Deployment => {
            json!({ "replicas": w.replicas, "selector": selector, "template": { "metadata": { "labels": { WORKLOAD_LABEL: w.name } } } })
        }
        _ => {
            json!({ "completions": w.replicas, "parallelism": w.replicas, "selector": selector, "template": { "metadata": { "labels": { WORKLOAD_LABEL: w.name } } } })
        }
    };
    let owner = match c.api.store().create(
        kind_id,
        &w.namespace,
        json!({ "metadata": { "name": w.name }, "spec": spec }),
    ) {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, workload = %w.name, "failed to create the workload's owner");
            return;
        }
    };
    if let Some(pdb) = &w.pdb {
        let mut spec = json!({ "selector": selector });
        if let Some(m) = &pdb.min_available {
            spec["minAvailable"] = int_or_string(m);
        }
        if let Some(m) = &pdb.max_unavailable {
            spec["maxUnavailable"] = int_or_string(m);
        }
        let _ = c.api.store().create(
            c.k.pdb,
            &w.namespace,
            json!({ "metadata": { "name": w.name }, "spec": spec }),
        );
    }
    let uid = owner
        .ptr("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    c.workloads.insert(
        key.clone(),
        WorkloadState {
            def: w.clone(),
            desired: w.replicas,
            owner_kind,
            owner_uid: uid,
            active: BTreeSet::new(),
            succeeded: 0,
            deleted: false,
            driver: None,
            executors_started: false,
            done: false,
        },
    );
    reconcile(c, &key);
}

pub(super) fn scale(c: &mut Cluster, ns: &str, name: &str, replicas: u32) {
    let key = (ns.to_string(), name.to_string());
    let Some(w) = c.workloads.get_mut(&key) else {
        tracing::warn!(workload = %name, "scale of an unknown workload ignored");
        return;
    };
    w.desired = replicas;
    let kind = if w.owner_kind == "ReplicaSet" {
        c.k.replicaset
    } else {
        c.k.job
    };
    let _ = c.api.store().modify(kind, ns, name, |o| {
        o["spec"]["replicas"] = json!(replicas);
        true
    });
    reconcile(c, &key);
}

pub(super) fn delete(c: &mut Cluster, ns: &str, name: &str) {
    let key = (ns.to_string(), name.to_string());
    let Some(w) = c.workloads.get_mut(&key) else {
        return;
    };
    w.deleted = true;
    let uid = w.owner_uid.clone();
    c.referee.own_owner_deletion(&uid);
    let kind = if w.owner_kind == "ReplicaSet" {
        c.k.replicaset
    } else {
        c.k.job
    };
    let _ = c.api.store().delete(kind, ns, name, &DeleteOpts::default());
    let _ = c
        .api
        .store()
        .delete(c.k.pdb, ns, name, &DeleteOpts::default());
}

fn workload_of(c: &Cluster, obj: &Value) -> Option<(String, String)> {
    let name = crate::json::meta_str(obj, "labels", WORKLOAD_LABEL)?;
    let key = (
        crate::apiserver::namespace_of(obj).to_string(),
        name.to_string(),
    );
    c.workloads.contains_key(&key).then_some(key)
}

/// The workload (namespace, name) a pod belongs to, if the scenario made it.
pub(super) fn workload_key(c: &Cluster, obj: &Value) -> Option<(String, String)> {
    workload_of(c, obj)
}

pub(super) fn on_pod_gone(c: &mut Cluster, obj: &Value) {
    let Some(key) = workload_of(c, obj) else {
        return;
    };
    let name = name_of(obj).to_string();
    if let Some(w) = c.workloads.get_mut(&key) {
        w.active.remove(&name);
        if w.driver.as_ref().is_some_and(|(d, _)| *d == name) && !w.done {
            // The driver was lost: Spark restarts the application (executors go with it).
            w.driver = None;
            w.executors_started = false;
        }
    }
    reconcile(c, &key);
}

pub(super) fn on_pod_changed(c: &mut Cluster, pod_key: &str, prev_phase: Option<&str>) {
    let Some(p) = c.pods.get(pod_key) else { return };
    let Some(key) = workload_of(c, &p.obj) else {
        return;
    };
    let name = name_of(&p.obj).to_string();
    let phase = p.phase.clone();
    let terminating = p.terminating;
    let is_driver = p
        .obj
        .ptr("/metadata/labels/spark-role")
        .and_then(Value::as_str)
        == Some("driver");
    let Some(w) = c.workloads.get_mut(&key) else {
        return;
    };
    let mut changed = false;
    if terminating || phase == "Succeeded" || phase == "Failed" {
        changed |= w.active.remove(&name);
    }
    if phase == "Succeeded" && prev_phase != Some("Succeeded") {
        if is_driver {
            w.done = true;
        } else if w.def.kind == WorkloadKind::Job {
            w.succeeded += 1;
        }
        changed = true;
    }
    if is_driver && phase == "Running" && !w.executors_started {
        changed = true;
    }
    if changed {
        reconcile(c, &key);
    }
}

/// Brings a workload's pods to what it wants.
fn reconcile(c: &mut Cluster, key: &(String, String)) {
    // Everything but the live pods' names, which only a scale-down or a finished driver needs
    // (cloning them on every pod change cost a fifth of a 40,000-pod run).
    let Some(w) = c.workloads.get(key).map(WorkloadState::without_active) else {
        return;
    };
    if w.deleted {
        return;
    }
    let (ns, name) = key;
    let run = w.def.run_time.map(|r| r.as_std().as_secs());
    match w.def.kind {
        WorkloadKind::Deployment => {
            let have = w.active_count;
            if have < w.desired {
                let owner = ("apps/v1", "ReplicaSet", name.as_str(), w.owner_uid.as_str());
                create_pods(c, key, w.desired - have, |wd| {
                    pod_for(wd, owner, &wd.requests, None, "")
                });
            } else if have > w.desired {
                // Scale down: pending pods first, then the newest.
                let active = c
                    .workloads
                    .get(key)
                    .map(|ws| ws.active.clone())
                    .unwrap_or_default();
                let mut victims: Vec<(bool, u64, String)> = active
                    .iter()
                    .filter_map(|n| {
                        c.pods
                            .get(&stowage_api::namespaced_key(ns, n))
                            .map(|p| (p.node.is_some(), u64::MAX - p.seq, n.clone()))
                    })
                    .collect();
                victims.sort();
                for (_, _, n) in victims.into_iter().take((have - w.desired) as usize) {
                    c.delete_own_pod(ns, &n);
                }
            }
        }
        WorkloadKind::Job => {
            let remaining = w.desired.saturating_sub(w.succeeded);
            let have = w.active_count;
            if remaining == 0 {
                if !w.done {
                    if let Some(ws) = c.workloads.get_mut(key) {
                        ws.done = true;
                    }
                    // Completed workflow pods are cleaned up, as Argo's pod GC does.
                    let prefix = format!("{ns}/");
                    let names: Vec<String> = c
                        .pods
                        .iter()
                        .filter(|(k, p)| {
                            k.starts_with(&prefix)
                                && p.phase == "Succeeded"
                                && workload_of(c, &p.obj).as_ref() == Some(key)
                        })
                        .map(|(_, p)| name_of(&p.obj).to_string())
                        .collect();
                    for n in names {
                        c.delete_own_pod(ns, &n);
                    }
                }
            } else if have < remaining {
                let owner = ("batch/v1", "Job", name.as_str(), w.owner_uid.as_str());
                create_pods(c, key, remaining - have, |wd| {
                    pod_for(wd, owner, &wd.requests, run, "")
                });
            }
        }
        WorkloadKind::SparkApplication => {
            if w.done {
                // The driver finished: its executors are removed, each once. They leave the
                // live set as they are deleted (they are terminating or gone now), so the
                // events of their deletion find nothing more to do: deleting every remaining
                // executor again on each of them was quadratic (2,400 executors: ~3 million
                // no-op deletes).
                let names = c
                    .workloads
                    .get_mut(key)
                    .map(|ws| std::mem::take(&mut ws.active))
                    .unwrap_or_default();
                for n in names {
                    c.delete_own_pod(ns, &n);
                }
                return;
            }
            match &w.driver {
                None => {
                    let owner = ("batch/v1", "Job", name.as_str(), w.owner_uid.as_str());
                    let driver_requests = w
                        .def
                        .driver_requests
                        .clone()
                        .unwrap_or_else(|| w.def.requests.clone());
                    let obj = pod_for(&w.def, owner, &driver_requests, run, "driver");
                    if let Ok(created) = c.api.store().create(c.k.pod, ns, obj) {
                        c.recorder.pods_created += 1;
                        let dn = name_of(&created).to_string();
                        let uid = created
                            .ptr("/metadata/uid")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string();
                        if let Some(ws) = c.workloads.get_mut(key) {
                            ws.driver = Some((dn, uid));
                        }
                    }
                }
                Some((dn, duid)) => {
                    let running = c
                        .pods
                        .get(&stowage_api::namespaced_key(ns, dn))
                        .is_some_and(|p| p.phase == "Running");
                    if !running {
                        return;
                    }
                    if let Some(ws) = c.workloads.get_mut(key) {
                        ws.executors_started = true;
                    }
                    let executors = c.workloads.get(key).map_or(0, |ws| {
                        ws.active.len() as u32 - u32::from(ws.active.contains(dn))
                    });
                    if executors < w.desired {
                        let (dn, duid) = (dn.clone(), duid.clone());
                        let owner = ("v1", "Pod", dn.as_str(), duid.as_str());
                        create_pods(c, key, w.desired - executors, |wd| {
                            pod_for(wd, owner, &wd.requests, None, "executor")
                        });
                    }
                }
            }
        }
    }
}

fn create_pods(c: &mut Cluster, key: &(String, String), n: u32, make: impl Fn(&Workload) -> Value) {
    let Some(def) = c.workloads.get(key).map(|w| w.def.clone()) else {
        return;
    };
    let mut names = Vec::new();
    for _ in 0..n {
        match c.api.store().create(c.k.pod, &key.0, make(&def)) {
            Ok(p) => names.push(name_of(&p).to_string()),
            Err(e) => {
                tracing::warn!(error = %e, workload = %def.name, "failed to create a pod");
                break;
            }
        }
    }
    c.recorder.pods_created += names.len() as u64;
    if let Some(ws) = c.workloads.get_mut(key) {
        ws.active.extend(names);
    }
}
