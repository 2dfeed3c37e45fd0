//! Why pods stay unschedulable: per pool, the first thing that rules it out for a class (set
//! when the class is built, [`PoolRejection`]) or that stopped the last claim from opening
//! (limits, on-demand cap, offerings); topology reasons take precedence.

use stowage_api::quantity::format_resource;

use super::Engine;
use super::place::NodeOrigin;
use crate::domain::{NODE_NAME_FIELD, untolerated};
use crate::model::Resources;

/// Why a pool cannot take a pod of a class.
#[derive(Debug, Clone)]
pub(super) enum PoolRejection {
    /// A taint the pod does not tolerate (as text).
    Taint(String),
    /// No type matches the pod's node requirements on this key.
    Requirements(String),
    TooBig,
    NoOffering,
    /// A limit reached (as text: `cpu 100`).
    Limit(String),
    /// Spot unavailable and the on-demand cap (percent) reached.
    OnDemandCap(u32),
    /// The on-demand cap of a scope (the pool carrying it, percent) reached.
    ScopedOnDemandCap(String, u32),
    /// Fewer distinct values than `minValues` on a key can hold the pod.
    MinValues(String, i32),
    /// The pod is pinned to named nodes (`matchFields` on `metadata.name`): no node to buy
    /// can be given a chosen name.
    PinnedToNodes,
    /// Only types the pod does not ask for fit (what they are: accelerator and specialty types,
    /// previous-generation types).
    NotAskedFor(&'static str),
}

fn fmt_requests(r: &Resources) -> String {
    r.0.iter()
        .map(|(k, v)| format!("{k}={}", format_resource(k, *v)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl PoolRejection {
    fn text(&self, requests: &Resources) -> String {
        match self {
            PoolRejection::Taint(t) => format!("taint {t} not tolerated"),
            PoolRejection::Requirements(k) => {
                format!("no instance type matches the pod's node selector/affinity on {k}")
            }
            PoolRejection::TooBig => format!(
                "no instance type has room for requests {}",
                fmt_requests(requests)
            ),
            PoolRejection::NoOffering => {
                "no available offering in the allowed zones and capacity types".to_string()
            }
            PoolRejection::Limit(l) => format!("limit {l} reached"),
            PoolRejection::MinValues(key, mv) => {
                format!("fewer than {mv} distinct {key} values can hold the pod (minValues)")
            }
            PoolRejection::OnDemandCap(pct) => {
                format!("spot unavailable and on-demand cap {pct}% of pool reached")
            }
            PoolRejection::NotAskedFor(what) => format!(
                "only {what} fit, and neither the pod nor the NodePool asks for them (request the \
                 accelerator, or name the instance type, family or category in a requirement)"
            ),
            PoolRejection::ScopedOnDemandCap(owner, pct) => format!(
                "on-demand cap of NodePool {owner}'s capacityMix scope reached ({pct}% of the scope's spot and reserved vCPUs)"
            ),
            PoolRejection::PinnedToNodes => {
                format!(
                    "the pod is pinned to named nodes ({NODE_NAME_FIELD}); a new node cannot be given a chosen name"
                )
            }
        }
    }
}

impl Engine<'_> {
    /// Why the remaining pods of class `c` cannot be placed.
    pub(super) fn reason(&self, c: usize) -> String {
        let class = &self.classes[c];
        if let Some(pinned) = self.pinned_reason(c) {
            return pinned;
        }
        if let Some(t) = &class.topology_reason {
            return t.clone();
        }
        if self.catalog.pools.is_empty() {
            return "no NodePool exists and no existing node fits".into();
        }
        let per_pool: Vec<(&str, PoolRejection)> = self
            .catalog
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let r = class.pool_rejections[i]
                    .clone()
                    .or_else(|| self.pool_failures[i].clone())
                    .unwrap_or(PoolRejection::NoOffering);
                (p.pool.name.as_str(), r)
            })
            .collect();
        if let Some((_, PoolRejection::Taint(t))) = per_pool.first()
            && per_pool
                .iter()
                .all(|(_, r)| matches!(r, PoolRejection::Taint(_)))
        {
            return format!("no NodePool tolerates taint {t}");
        }
        per_pool
            .iter()
            .map(|(name, r)| format!("NodePool {name}: {}", r.text(&class.pod.requests)))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Engine<'_> {
    /// For a class pinned to named nodes (`matchFields` `metadata.name In [...]`): why none of
    /// those nodes takes its pods, node by node. `None` when the class pins no name.
    fn pinned_reason(&self, c: usize) -> Option<String> {
        let class = &self.classes[c];
        let names = class.node_names.pinned_names()?;
        let why: Vec<String> = names
            .iter()
            .map(|name| match self.existing_node_index(name) {
                Some(n) => format!("node {name} {}", self.why_not_on(c, n)),
                None => format!("node {name} does not exist"),
            })
            .collect();
        let nodes = if why.is_empty() {
            "no node".to_string()
        } else {
            why.join("; ")
        };
        Some(format!(
            "pinned by node affinity ({NODE_NAME_FIELD}) to {nodes}; a new node cannot be given a chosen name"
        ))
    }

    /// The solve's index of the existing (registered, not in-flight) node called `name`.
    fn existing_node_index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| {
            matches!(n.origin, NodeOrigin::Existing { index }
                if index < self.named && self.existing[index].name == name)
        })
    }

    /// Why existing node `n` takes no (more) pods of class `c`, in kube-scheduler's words.
    fn why_not_on(&self, c: usize, n: usize) -> String {
        let class = &self.classes[c];
        let node = &self.nodes[n];
        let NodeOrigin::Existing { index } = node.origin else {
            return "is not an existing node".into();
        };
        let existing = self.existing[index];
        let include_prefer = self.options.relax_preferences && !class.tolerate_prefer;
        if existing.unschedulable {
            return "is unschedulable".into();
        }
        if !class.node_names.node_names_match(&existing.name) {
            return "is excluded by the pod's node affinity".into();
        }
        if let Some(t) = untolerated(&existing.taints, &class.pod.tolerations, include_prefer) {
            return format!("has untolerated taint {t}");
        }
        if !class.node_requirements.matches(&existing.labels) {
            return "does not match the pod's node selector/affinity".into();
        }
        let short: Vec<&str> = class
            .requests
            .iter()
            .enumerate()
            .filter(|(r, want)| **want > 0 && node.capacity[*r] - node.used[*r] < **want)
            .map(|(r, _)| self.ids.resource_name(r))
            .collect();
        if !short.is_empty() {
            return format!("has no room: Insufficient {}", short.join(", "));
        }
        "has no room under the pod's host ports, topology spread or pod (anti-)affinity".into()
    }
}
