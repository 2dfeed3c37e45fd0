//! Step 1, interning: small integer ids for what the solve compares often. Resources become
//! indices into `Vec<i64>` quantity vectors; zones become bits of a `u64` zone mask (sorted by
//! name, at most [`MAX_ZONES`]); topology keys and their label values become ids so domain
//! counts are hash lookups on integers. Capacity types have fixed bits and indices.

use std::collections::BTreeSet;

use stowage_api::{CapacityType, labels};

use super::MAX_ZONES;
use crate::domain::{ExistingNode, SolveInput};
use crate::hash::FastMap;
use crate::model::{InstanceType, Resources, resource};

/// The bit of a capacity type in a capacity-type mask.
pub(super) fn capacity_type_bit(ct: CapacityType) -> u8 {
    match ct {
        CapacityType::Reserved => 1,
        CapacityType::Spot => 2,
        CapacityType::OnDemand => 4,
    }
}

/// The index of a capacity type (preference order: reserved, spot, on-demand); also its value
/// id under the capacity-type topology key.
pub(super) fn capacity_type_index(ct: CapacityType) -> usize {
    match ct {
        CapacityType::Reserved => 0,
        CapacityType::Spot => 1,
        CapacityType::OnDemand => 2,
    }
}

/// What a topology key's values are: node names, zones, capacity types or plain labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum KeyKind {
    Hostname,
    Zone,
    CapacityType,
    Label,
}

#[derive(Debug, Clone)]
struct TopologyKey {
    name: String,
    kind: KeyKind,
    /// Label values seen under this key (hostname and plain labels only).
    value_ids: FastMap<String, u32>,
    value_names: Vec<String>,
}

/// The id tables.
#[derive(Debug, Default, Clone)]
pub(super) struct Ids {
    resources: Vec<String>,
    resource_ids: FastMap<String, usize>,
    zones: Vec<String>,
    zone_ids: FastMap<String, usize>,
    keys: Vec<TopologyKey>,
    key_ids: FastMap<String, usize>,
}

impl Ids {
    /// Resources (cpu, memory, pods first, then every name the input mentions) and zones.
    pub(super) fn for_input(input: &SolveInput, existing: &[&ExistingNode]) -> Ids {
        let mut ids = Ids::default();
        for r in [resource::CPU, resource::MEMORY, resource::PODS] {
            ids.resource_id(r);
        }
        // The few distinct names of many pods: a scan of a short list per name (each pod's
        // names are mostly ones already seen), sorted into the set afterwards.
        let mut seen: Vec<&str> = Vec::new();
        let requests = input
            .pods
            .iter()
            .map(|p| &**p)
            .chain(input.daemonsets.iter().map(|d| &d.pod))
            .chain(existing.iter().flat_map(|n| n.pods.iter().map(|p| &**p)));
        for p in requests {
            for k in p.requests.0.keys() {
                if !seen.contains(&k.as_str()) {
                    seen.push(k);
                }
            }
        }
        let mut names: BTreeSet<&str> = seen.into_iter().collect();
        // Pools usually share one catalogue (the same `Arc`): visit each list once.
        let mut lists: Vec<&std::sync::Arc<Vec<InstanceType>>> = Vec::new();
        for list in input
            .nodepools
            .iter()
            .filter_map(|p| p.instance_types.as_ref())
        {
            if !lists.iter().any(|l| std::sync::Arc::ptr_eq(l, list)) {
                lists.push(list);
            }
        }
        let pool_types = lists.iter().map(|l| l.as_slice());
        for it in input
            .instance_types
            .iter()
            .chain(pool_types.clone().flatten())
        {
            names.extend(it.capacity.0.keys().map(String::as_str));
        }
        let mut seen: Vec<&str> = Vec::new();
        for n in existing {
            for k in n.allocatable.0.keys() {
                if !seen.contains(&k.as_str()) {
                    seen.push(k);
                }
            }
        }
        names.extend(seen);
        for p in &input.nodepools {
            names.extend(
                p.limits
                    .0
                    .keys()
                    .map(String::as_str)
                    .filter(|k| *k != "nodes"),
            );
        }
        for n in names {
            ids.resource_id(n);
        }

        // Zones, sorted by name so ids follow name order.
        let mut zones: BTreeSet<&str> = BTreeSet::new();
        for it in input.instance_types.iter().chain(pool_types.flatten()) {
            zones.extend(it.offerings.iter().map(|o| o.zone.as_str()));
        }
        for n in existing {
            if let Some(z) = n.labels.get(labels::ZONE) {
                zones.insert(z);
            }
        }
        for z in zones.into_iter().take(MAX_ZONES) {
            ids.zone_ids.insert(z.to_string(), ids.zones.len());
            ids.zones.push(z.to_string());
        }
        ids
    }

    fn resource_id(&mut self, name: &str) -> usize {
        if let Some(i) = self.resource_ids.get(name) {
            return *i;
        }
        self.resources.push(name.to_string());
        self.resource_ids
            .insert(name.to_string(), self.resources.len() - 1);
        self.resources.len() - 1
    }

    pub(super) fn resource_count(&self) -> usize {
        self.resources.len()
    }

    pub(super) fn resource_name(&self, r: usize) -> &str {
        &self.resources[r]
    }

    /// The id of a known resource.
    pub(super) fn known_resource(&self, name: &str) -> Option<usize> {
        self.resource_ids.get(name).copied()
    }

    /// `Resources` as a quantity vector indexed by resource id.
    pub(super) fn quantities(&self, r: &Resources) -> Vec<i64> {
        let mut v = vec![0; self.resources.len()];
        for (k, x) in &r.0 {
            if let Some(i) = self.resource_ids.get(k) {
                v[*i] = *x;
            }
        }
        v
    }

    /// `quantities(&n.requested())` summed straight into the vector (no map per node).
    pub(super) fn requested(&self, n: &ExistingNode) -> Vec<i64> {
        let mut v: Vec<i64> = vec![0; self.resources.len()];
        for p in &n.pods {
            for (k, x) in &p.requests.0 {
                if let Some(i) = self.resource_ids.get(k) {
                    v[*i] = v[*i].saturating_add(*x);
                }
            }
        }
        v[super::PODS] = n.pods.len() as i64;
        v
    }

    /// A quantity vector back as `Resources`.
    pub(super) fn to_resources(&self, v: &[i64]) -> Resources {
        let mut r = Resources::new();
        for (i, x) in v.iter().enumerate() {
            r.set(self.resources[i].clone(), *x);
        }
        r
    }

    pub(super) fn zones(&self) -> &[String] {
        &self.zones
    }

    pub(super) fn zone_id(&self, zone: &str) -> Option<usize> {
        self.zone_ids.get(zone).copied()
    }

    /// The mask with every known zone's bit set.
    pub(super) fn all_zones(&self) -> u64 {
        if self.zones.len() >= 64 {
            u64::MAX
        } else {
            (1u64 << self.zones.len()) - 1
        }
    }

    /// The id of a topology key (interned on first use).
    pub(super) fn key_id(&mut self, key: &str) -> usize {
        if let Some(i) = self.key_ids.get(key) {
            return *i;
        }
        let kind = match key {
            labels::HOSTNAME => KeyKind::Hostname,
            labels::ZONE => KeyKind::Zone,
            labels::CAPACITY_TYPE => KeyKind::CapacityType,
            _ => KeyKind::Label,
        };
        self.keys.push(TopologyKey {
            name: key.to_string(),
            kind,
            value_ids: FastMap::default(),
            value_names: Vec::new(),
        });
        self.key_ids.insert(key.to_string(), self.keys.len() - 1);
        self.keys.len() - 1
    }

    /// The id of a key already interned.
    pub(super) fn known_key(&self, key: &str) -> Option<usize> {
        self.key_ids.get(key).copied()
    }

    pub(super) fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn key_name(&self, key: usize) -> &str {
        &self.keys[key].name
    }

    pub(super) fn key_kind(&self, key: usize) -> KeyKind {
        self.keys[key].kind
    }

    pub(super) fn is_hostname(&self, key: usize) -> bool {
        self.keys[key].kind == KeyKind::Hostname
    }

    /// Value id of `value` under `key` (zone: zone id; capacity type: preference index).
    pub(super) fn value_id(&mut self, key: usize, value: &str) -> Option<u32> {
        let k = &mut self.keys[key];
        match k.kind {
            KeyKind::Zone => self.zone_ids.get(value).map(|z| *z as u32),
            KeyKind::CapacityType => value
                .parse::<CapacityType>()
                .ok()
                .map(|c| capacity_type_index(c) as u32),
            KeyKind::Hostname | KeyKind::Label => {
                if let Some(v) = k.value_ids.get(value) {
                    return Some(*v);
                }
                let id = k.value_names.len() as u32;
                k.value_names.push(value.to_string());
                k.value_ids.insert(value.to_string(), id);
                Some(id)
            }
        }
    }

    pub(super) fn value_name(&self, key: usize, v: u32) -> &str {
        let k = &self.keys[key];
        match k.kind {
            KeyKind::Zone => self.zones.get(v as usize).map_or("", String::as_str),
            KeyKind::CapacityType => CapacityType::ALL.get(v as usize).map_or("", |c| c.as_str()),
            _ => k.value_names.get(v as usize).map_or("", String::as_str),
        }
    }
}
