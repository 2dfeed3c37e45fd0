//! Spot blast radius (`spotBlastRadius.maxPodsPerWorkload`): at most that many pods of one
//! workload on one spot node of a pool that sets it, so one spot interruption takes down a
//! bounded part of the workload. A *workload* is the pods of one controller owner in one
//! namespace (a ReplicaSet, StatefulSet, Job, the driver pod of Spark executors); pods without a
//! controller, and DaemonSet pods, are not limited. On-demand and reserved nodes are not limited.
//!
//! The cap is a per-node count like hostname spread: [`Engine::workload_room`] is checked by the
//! fit of every node (existing spot nodes of the pool included, their running pods counted),
//! [`Engine::count_workload`] is bumped by every placement, and a new spot claim's type is
//! chosen for the number of pods the cap lets it take ([`Engine::open_blast_cap`]). Counts only
//! grow, so a node that is full for a workload stays full (the node-scan cursors stay valid).
//! When any pool sets a cap, classes are split by workload (see `build_classes`).

use stowage_api::CapacityType;

use super::Engine;
use super::place::NodeOrigin;
use crate::domain::PodRequest;
use crate::hash::FastMap;

/// Workload ids and the per-node counts of capped workloads.
#[derive(Debug, Default)]
pub(super) struct BlastRadius {
    /// Whether any pool caps its spot nodes (else nothing here is used).
    pub(super) active: bool,
    workloads: FastMap<String, usize>,
    /// Per existing node (index into `Engine::existing`, which is also its node index): its
    /// cap, when it is a spot node of a pool with a blast radius.
    existing_caps: Vec<Option<u32>>,
    /// (node, workload): pods of the workload on the node, kept for capped nodes only.
    counts: FastMap<(usize, usize), u32>,
}

/// The workload a pod belongs to (`namespace/Kind/name` of its controller), if any.
pub(super) fn workload_key(p: &PodRequest) -> Option<String> {
    let owner = p.owner.as_deref()?;
    if owner.starts_with("DaemonSet/") {
        return None;
    }
    Some(format!("{}/{owner}", p.namespace))
}

impl Engine<'_> {
    /// Whether some pool sets a spot blast radius; then the caps of existing spot nodes and
    /// the counts of the pods on them. Runs before classes are built.
    pub(super) fn init_blast_radius(&mut self) {
        let caps: FastMap<&str, u32> = self
            .input
            .nodepools
            .iter()
            .filter_map(|p| Some((p.name.as_str(), p.spot_max_pods_per_workload?)))
            .collect();
        self.blast.active = !caps.is_empty();
        if !self.blast.active {
            return;
        }
        let existing = self.existing.clone();
        // With a base: each base workload's id here, interned when first met (as the pods'
        // own keys would be, in node and pod order).
        let mut ids: Vec<Option<usize>> = self
            .base
            .map_or_else(Vec::new, |b| vec![None; b.base.workloads.len()]);
        for (i, n) in existing.iter().enumerate() {
            let cap = n
                .nodepool
                .as_deref()
                .and_then(|p| caps.get(p).copied())
                .filter(|_| n.capacity_type == Some(CapacityType::Spot));
            self.blast.existing_caps.push(cap);
            if cap.is_none() {
                continue;
            }
            let Some(b) = self.base else {
                for p in &n.pods {
                    if let Some(w) = self.workload_id(p) {
                        *self.blast.counts.entry((i, w)).or_default() += 1;
                    }
                }
                continue;
            };
            for &(bw, k) in &b.node(i).workloads {
                let w = *ids[bw].get_or_insert_with(|| {
                    let next = self.blast.workloads.len();
                    *self
                        .blast
                        .workloads
                        .entry(b.base.workloads[bw].clone())
                        .or_insert(next)
                });
                *self.blast.counts.entry((i, w)).or_default() += k;
            }
        }
    }

    /// The workload id of a pod, when a blast radius is in force and the pod has a workload.
    pub(super) fn workload_id(&mut self, p: &PodRequest) -> Option<usize> {
        if !self.blast.active {
            return None;
        }
        let key = workload_key(p)?;
        let next = self.blast.workloads.len();
        Some(*self.blast.workloads.entry(key).or_insert(next))
    }

    /// The blast radius of node `n`: set when it is a spot node of a pool with one.
    fn node_blast_cap(&self, n: usize) -> Option<u32> {
        match &self.nodes[n].origin {
            NodeOrigin::Existing { index } => self.blast.existing_caps.get(*index).copied()?,
            NodeOrigin::New(claim) => {
                if claim.capacity_type != CapacityType::Spot {
                    return None;
                }
                self.catalog.pools[claim.pool]
                    .pool
                    .spot_max_pods_per_workload
            }
        }
    }

    /// How many more pods of class `c`'s workload node `n` may hold (`None`: not limited).
    pub(super) fn workload_room(&self, c: usize, n: usize) -> Option<usize> {
        let w = self.classes[c].workload?;
        let cap = self.node_blast_cap(n)?;
        let have = self.blast.counts.get(&(n, w)).copied().unwrap_or(0);
        Some(cap.saturating_sub(have) as usize)
    }

    /// Counts `k` pods of class `c` placed on node `n`.
    pub(super) fn count_workload(&mut self, c: usize, n: usize, k: usize) {
        if let Some(w) = self.classes[c].workload
            && self.node_blast_cap(n).is_some()
        {
            *self.blast.counts.entry((n, w)).or_default() += k as u32;
        }
    }

    /// The most pods of class `c` a new claim of pool `pi` as capacity type `ct` may hold.
    pub(super) fn open_blast_cap(&self, c: usize, pi: usize, ct: CapacityType) -> Option<usize> {
        self.classes[c].workload?;
        if ct != CapacityType::Spot {
            return None;
        }
        self.catalog.pools[pi]
            .pool
            .spot_max_pods_per_workload
            .map(|m| m as usize)
    }
}
