//! Groups to NodePools and EC2NodeClasses: priorities to weights, groups that differ only in
//! instance types merged, spot/on-demand splits to `capacityMix`, `maxSize x vCPU` to a cpu limit,
//! scale-down settings to disruption settings; every field with a comment naming its source.

use std::collections::{BTreeMap, BTreeSet};

use stowage_api::labels;
use stowage_api::validation::{
    RESTRICTED_TAG_KEYS, RESTRICTED_TAG_PREFIXES, label_value_error, qualified_name_error,
    restricted_label_error,
};

use crate::ca::Tier;
use crate::emit::{self, Y};
use crate::model::{Ami, CaOptions, Capacity, Class, Group, Iam, Term};
use crate::{Error, Manifest, Output, Report, Result, Severity};

/// The weight of a group: the priority tier its names match first, mapped to 1..100.
#[derive(Clone, Debug)]
struct Weight {
    weight: i64,
    priority: i64,
    at: String,
}

/// Priorities to weights: kept as they are when all lie in 1..100, else spread evenly over
/// 1..100 in the same order.
fn weights(tiers: &[Tier]) -> BTreeMap<i64, i64> {
    let distinct: BTreeSet<i64> = tiers.iter().map(|t| t.priority).collect();
    if distinct.iter().all(|p| (1..=100).contains(p)) {
        return distinct.into_iter().map(|p| (p, p)).collect();
    }
    let n = distinct.len() as i64;
    distinct
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let w = if n == 1 {
                1
            } else {
                1 + (i as i64 * 99) / (n - 1)
            };
            (p, w)
        })
        .collect()
}

fn weight_of(g: &Group, tiers: &[Tier], map: &BTreeMap<i64, i64>) -> Option<Weight> {
    for t in tiers {
        for (re, at) in &t.patterns {
            if g.names.iter().any(|n| re.is_match(n)) {
                return Some(Weight {
                    weight: map.get(&t.priority).copied().unwrap_or(1),
                    priority: t.priority,
                    at: at.clone(),
                });
            }
        }
    }
    None
}

/// What makes two groups one NodePool: everything but the name, the sizes and the instance
/// types.
fn shape(g: &Group, w: &Option<Weight>, ca: &CaOptions) -> String {
    let labels: BTreeMap<&String, &String> = g.labels.iter().map(|(k, v)| (k, &v.v)).collect();
    let mut taints: Vec<_> = g.taints.iter().map(|t| &t.v).collect();
    taints.sort();
    serde_json::json!([
        g.capacity.v,
        g.selector.as_ref().map(|s| &s.v),
        labels,
        taints,
        g.zones.as_ref().map(|z| &z.v),
        g.class.key(),
        ca.threshold.as_ref().map(|t| t.v),
        ca.unneeded.as_ref().map(|t| &t.v),
        ca.enabled.as_ref().map(|t| t.v),
        w.as_ref().map(|w| w.weight),
    ])
    .to_string()
}

/// A DNS-1123 name (lower case, `[a-z0-9-.]`, at most 63 characters).
fn dns_name(s: &str) -> String {
    let mut out: String = s
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    out.truncate(63);
    let out = out.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if out.is_empty() {
        "pool".to_string()
    } else {
        out.to_string()
    }
}

fn pool_name(members: &[Group]) -> String {
    if members.len() == 1 {
        return dns_name(&members[0].name);
    }
    let first = &members[0].name;
    let mut len = first.len();
    for m in &members[1..] {
        len = len.min(
            first
                .bytes()
                .zip(m.name.bytes())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    let prefix = first[..len].trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
    if prefix.len() >= 3 {
        dns_name(prefix)
    } else {
        dns_name(first)
    }
}

/// vCPUs per instance type, from the embedded catalogue.
struct Catalogue {
    vcpus: BTreeMap<String, i64>,
    offered: Option<BTreeSet<String>>,
}

impl Catalogue {
    fn load(region: &str) -> Result<Self> {
        let c =
            stowage_aws_catalog::embedded_catalog().map_err(|e| Error::Catalogue(e.to_string()))?;
        Ok(Catalogue {
            vcpus: c
                .types
                .iter()
                .map(|t| (t.name.clone(), i64::from(t.vcpus)))
                .collect(),
            offered: c.region(region).map(|m| m.into_keys().collect()),
        })
    }
}

fn srcs<'a>(it: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut v: Vec<&str> = Vec::new();
    for s in it {
        if !v.contains(&s) {
            v.push(s);
        }
    }
    (!v.is_empty()).then(|| v.join("; "))
}

/// Builds the manifests (not yet validated).
pub fn build(
    mut groups: Vec<Group>,
    tiers: &[Tier],
    global_ca: &CaOptions,
    region: &str,
    report: &mut Report,
) -> Result<Output> {
    let catalogue = Catalogue::load(region)?;
    if catalogue.offered.is_none() {
        report.note(
            Severity::Assumed,
            format!("region {region}"),
            "the region is not in the embedded catalogue (us-east-1, us-west-2); instance types were checked against its types only",
        );
    }
    let map = weights(tiers);
    if !tiers.is_empty() && map.iter().any(|(p, w)| p != w) {
        let text: Vec<String> = map
            .iter()
            .rev()
            .map(|(p, w)| format!("{p} -> {w}"))
            .collect();
        report.note(
            Severity::Mapped,
            "priority expander",
            format!(
                "priorities outside 1..100 spread over weights 1..100 in the same order: {}",
                text.join(", ")
            ),
        );
    }
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    // Merge groups of one shape, in name order.
    let mut merged: Vec<(String, Option<Weight>, CaOptions, Vec<Group>)> = Vec::new();
    for g in groups {
        let mut ca = global_ca.clone();
        if g.ca.threshold.is_some() {
            ca.threshold = g.ca.threshold.clone();
        }
        if g.ca.unneeded.is_some() {
            ca.unneeded = g.ca.unneeded.clone();
        }
        let w = weight_of(&g, tiers, &map);
        if w.is_none() && !tiers.is_empty() {
            report.note(
                Severity::Mapped,
                g.at.clone(),
                format!("node group {}: no priority-expander pattern matches it; the NodePool gets no weight (tried last)", g.name),
            );
        }
        let key = shape(&g, &w, &ca);
        match merged.iter_mut().find(|(k, ..)| *k == key) {
            Some((_, _, _, members)) => members.push(g),
            None => merged.push((key, w, ca, vec![g])),
        }
    }

    // Node classes, shared by pools with equal launch settings: the one most pools use is
    // `default`, each other is named after the first pool using it.
    let mut uses: Vec<(String, usize)> = Vec::new();
    for (_, _, _, members) in &merged {
        let k = members[0].class.key();
        match uses.iter_mut().find(|(key, _)| *key == k) {
            Some((_, n)) => *n += 1,
            None => uses.push((k, 1)),
        }
    }
    let most = uses.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let default_key = uses
        .iter()
        .find(|(_, n)| *n == most)
        .map(|(k, _)| k.clone());
    let mut out = Output::default();
    let mut pool_names: BTreeSet<String> = BTreeSet::new();
    let mut class_names: BTreeMap<String, String> = BTreeMap::new();
    let mut pools = Vec::new();
    for (_, w, ca, members) in &merged {
        let mut name = pool_name(members);
        let mut n = 2;
        while pool_names.contains(&name) {
            name = format!("{}-{n}", pool_name(members));
            n += 1;
        }
        pool_names.insert(name.clone());
        let ck = members[0].class.key();
        let class_name = if Some(&ck) == default_key.as_ref() {
            "default".to_string()
        } else {
            class_names
                .entry(ck)
                .or_insert_with(|| name.clone())
                .clone()
        };
        for m in members {
            report
                .groups
                .push((m.name.clone(), m.at.clone(), name.clone()));
        }
        pools.push((name, class_name, w, ca, members));
    }
    let mut classes_done = BTreeSet::new();
    for (name, class_name, w, ca, members) in &pools {
        if classes_done.insert(class_name.clone()) {
            let users: Vec<&Group> = pools
                .iter()
                .filter(|p| p.1 == *class_name)
                .flat_map(|p| p.4.iter())
                .collect();
            out.nodeclasses
                .push(nodeclass(class_name, &members[0].class, &users, report));
        }
        out.nodepools.push(nodepool(
            name, class_name, w, ca, members, &catalogue, report,
        ));
    }
    out.nodeclasses.sort_by(|a, b| a.name.cmp(&b.name));
    out.nodepools.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn nodepool(
    name: &str,
    class: &str,
    w: &Option<Weight>,
    ca: &CaOptions,
    members: &[Group],
    cat: &Catalogue,
    report: &mut Report,
) -> Manifest {
    let g0 = &members[0];
    let what = format!("NodePool {name}");
    let mut root = Y::map();
    root.set("apiVersion", Y::str("stowage.dev/v1"), None);
    root.set("kind", Y::str("NodePool"), None);
    root.child("metadata").set(
        "name",
        Y::str(name),
        Some(
            members
                .iter()
                .map(|m| format!("{} ({})", m.name, m.at))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    );
    let spec = root.child("spec");
    if let Some(w) = w {
        spec.set(
            "weight",
            Y::Int(w.weight),
            Some(format!("priority {} at {}", w.priority, w.at)),
        );
    }

    // Instance types: the union, with every member's source.
    let mut types: BTreeSet<String> = BTreeSet::new();
    for m in members {
        if let Some(t) = &m.instance_types {
            types.extend(t.v.iter().cloned());
        }
    }
    for t in &types {
        if !cat.vcpus.contains_key(t) {
            report.note(Severity::NotMapped, g0.at.clone(), format!("{what}: instance type {t} is not in the embedded catalogue; it stays in the requirement but gives no vCPU count"));
        } else if cat.offered.as_ref().is_some_and(|o| !o.contains(t)) {
            report.note(Severity::NotMapped, g0.at.clone(), format!("{what}: instance type {t} is not offered in the region per the embedded catalogue"));
        }
    }
    let vcpus_of = |m: &Group| -> Option<(i64, i64)> {
        if let Some(t) = &m.instance_types {
            let v: Option<Vec<i64>> = t.v.iter().map(|t| cat.vcpus.get(t).copied()).collect();
            let v = v?;
            return Some((*v.iter().min()?, *v.iter().max()?));
        }
        m.selector.as_ref().and_then(|s| s.v.vcpus).map(|v| (v, v))
    };

    // Template: labels, requirements, taints.
    let template = spec.child("template");
    let mut label_map = Y::map();
    for (k, v) in &g0.labels {
        if let Some(e) = qualified_name_error(k)
            .or_else(|| restricted_label_error(k))
            .or_else(|| label_value_error(&v.v))
        {
            report.note(
                Severity::NotMapped,
                v.at.clone(),
                format!("{what}: label {k}={} dropped: {e}", v.v),
            );
            continue;
        }
        label_map.set(k, Y::str(&v.v), Some(v.at.clone()));
    }
    if let Y::Map(m) = &label_map
        && !m.is_empty()
    {
        template.child("metadata").set("labels", label_map, None);
    }
    let tspec = template.child("spec");
    let mut ref_ = Y::map();
    ref_.set("group", Y::str(labels::AWS_GROUP), None);
    ref_.set("kind", Y::str("EC2NodeClass"), None);
    ref_.set("name", Y::str(class), None);
    tspec.set("nodeClassRef", ref_, Some(format!("EC2NodeClass {class}")));
    let mut reqs = Vec::new();
    let req = |key: &str, op: &str, values: Vec<String>| {
        let mut r = Y::map();
        r.set("key", Y::str(key), None);
        r.set("operator", Y::str(op), None);
        r.set(
            "values",
            Y::List(values.into_iter().map(|v| (Y::Str(v), None)).collect()),
            None,
        );
        r
    };
    if !types.is_empty() {
        let at = srcs(
            members
                .iter()
                .filter_map(|m| m.instance_types.as_ref().map(|t| t.at.as_str())),
        );
        reqs.push((
            req(labels::INSTANCE_TYPE, "In", types.iter().cloned().collect()),
            at,
        ));
    }
    if let Some(s) = &g0.selector {
        let at = Some(s.at.clone());
        if let Some(v) = s.v.vcpus {
            reqs.push((
                req(labels::INSTANCE_CPU, "In", vec![v.to_string()]),
                at.clone(),
            ));
        }
        if let Some(m) = s.v.memory_mib {
            reqs.push((
                req(labels::INSTANCE_MEMORY, "In", vec![m.to_string()]),
                at.clone(),
            ));
        }
        if let Some(a) = &s.v.arch {
            reqs.push((req(labels::ARCH, "In", vec![a.clone()]), at.clone()));
        }
        if let Some(g) = s.v.gpus {
            if g == 0 {
                reqs.push((
                    req(labels::INSTANCE_GPU_COUNT, "DoesNotExist", vec![]),
                    at.clone(),
                ));
            } else {
                reqs.push((
                    req(labels::INSTANCE_GPU_COUNT, "In", vec![g.to_string()]),
                    at.clone(),
                ));
            }
        }
    }
    let capacity_values = match g0.capacity.v {
        Capacity::Spot => vec!["spot".to_string()],
        Capacity::OnDemand => vec!["on-demand".to_string()],
        Capacity::Mixed { .. } => vec!["spot".to_string(), "on-demand".to_string()],
    };
    let cap_at = match g0.capacity.v {
        Capacity::OnDemand if g0.capacity.at == g0.at => {
            Some(format!("{} (no spot setting: on-demand)", g0.at))
        }
        _ => Some(g0.capacity.at.clone()),
    };
    reqs.push((req(labels::CAPACITY_TYPE, "In", capacity_values), cap_at));
    if let Some(z) = &g0.zones {
        reqs.push((req(labels::ZONE, "In", z.v.clone()), Some(z.at.clone())));
    }
    tspec.set("requirements", Y::List(reqs), None);
    let mut taints = Vec::new();
    for t in &g0.taints {
        let bad = qualified_name_error(&t.v.key)
            .or_else(|| t.v.value.as_deref().and_then(label_value_error));
        if let Some(e) = bad {
            report.note(
                Severity::NotMapped,
                t.at.clone(),
                format!("{what}: taint {} dropped: {e}", t.v.key),
            );
            continue;
        }
        let mut y = Y::map();
        y.set("key", Y::str(&t.v.key), None);
        if let Some(v) = &t.v.value {
            y.set("value", Y::str(v), None);
        }
        y.set("effect", Y::str(&t.v.effect), None);
        taints.push((y, Some(t.at.clone())));
    }
    if !taints.is_empty() {
        tspec.set("taints", Y::List(taints), None);
    }

    // Limits: maxSize x vCPU of the largest type, summed over the merged groups.
    let mut cpu = Some(0i64);
    let mut limit_at = Vec::new();
    for m in members {
        match (&m.max, vcpus_of(m)) {
            (Some(max), Some((_, vmax))) => {
                cpu = cpu.map(|c| c + max.v * vmax);
                limit_at.push(format!(
                    "{}: maxSize {} x {vmax} vCPU at {}",
                    m.name, max.v, max.at
                ));
            }
            (None, _) => {
                report.note(
                    Severity::NotMapped,
                    m.at.clone(),
                    format!(
                        "{what}: node group {} has no maxSize; the NodePool gets no cpu limit",
                        m.name
                    ),
                );
                cpu = None;
            }
            (Some(_), None) => {
                report.note(Severity::NotMapped, m.at.clone(), format!("{what}: the vCPUs of node group {}'s instance types are unknown; the NodePool gets no cpu limit", m.name));
                cpu = None;
            }
        }
        if let (Some(min), Some(max)) = (&m.min, &m.max)
            && min.v == max.v
            && min.v > 0
        {
            report.note(Severity::NotMapped, min.at.clone(), format!("{what}: node group {} has a fixed node count of {} (minSize = maxSize): Stowage launches nodes for pending pods only, so the count is not kept; the cpu limit caps it at that size", m.name, min.v));
        } else if let Some(min) = &m.min
            && min.v > 0
        {
            report.note(Severity::NotMapped, min.at.clone(), format!("{what}: node group {} minSize {}: Stowage keeps no idle nodes; nodes exist while pods need them", m.name, min.v));
        }
        if let Some(max) = &m.max
            && max.v == 0
        {
            report.note(Severity::Mapped, max.at.clone(), format!("{what}: node group {} has maxSize 0 (disabled); its share of the cpu limit is 0", m.name));
        }
    }
    if let Some(c) = cpu {
        let mut limits = Y::map();
        limits.set("cpu", Y::str(c.to_string()), Some(limit_at.join("; ")));
        spec.set("limits", limits, None);
    }

    // Capacity mix.
    if let Capacity::Mixed { percent, .. } = g0.capacity.v {
        let mut mix = Y::map();
        let mut base_cpu = Some(0i64);
        let mut base_at = Vec::new();
        for m in members {
            if let Capacity::Mixed { base, .. } = m.capacity.v {
                match vcpus_of(m) {
                    Some((vmin, _)) => {
                        base_cpu = base_cpu.map(|b| b + base * vmin);
                        if base > 0 {
                            base_at.push(format!("{}: OnDemandBaseCapacity {base} instances x {vmin} vCPU (smallest type) at {}", m.name, m.capacity.at));
                        }
                    }
                    None if base > 0 => base_cpu = None,
                    None => {}
                }
            }
        }
        match base_cpu {
            Some(b) if b > 0 => {
                mix.set("onDemandBase", Y::str(b.to_string()), Some(base_at.join("; ")));
                report.note(Severity::Mapped, g0.capacity.at.clone(), format!("{what}: the on-demand base is counted in instances by the ASG and in vCPUs by Stowage ({b} vCPUs, the smallest type's)"));
            }
            Some(_) => {}
            None => report.note(Severity::NotMapped, g0.capacity.at.clone(), format!("{what}: the on-demand base cannot be turned into vCPUs (unknown instance types); left at 0")),
        }
        mix.set(
            "onDemandPercentAboveBase",
            Y::Int(percent),
            Some(g0.capacity.at.clone()),
        );
        spec.set("capacityMix", mix, None);
    }

    // Disruption from Cluster Autoscaler's scale-down settings.
    let mut disruption = Y::map();
    if let Some(t) = &ca.threshold {
        let policy = if t.v <= 0.0 {
            "WhenEmpty"
        } else {
            "WhenEmptyOrUnderutilized"
        };
        disruption.set(
            "consolidationPolicy",
            Y::str(policy),
            Some(format!(
                "scale-down-utilization-threshold {} at {}",
                t.v, t.at
            )),
        );
        report.note(Severity::Mapped, t.at.clone(), format!("scale-down utilisation threshold {} has no direct equivalent: Stowage removes a node when its pods fit on other nodes or a cheaper one ({policy})", t.v));
    }
    match (&ca.enabled, &ca.unneeded) {
        (Some(e), _) if !e.v => {
            disruption.set(
                "consolidateAfter",
                Y::str("Never"),
                Some(format!("scale-down-enabled=false at {}", e.at)),
            );
        }
        (_, Some(u)) => {
            disruption.set(
                "consolidateAfter",
                Y::str(&u.v),
                Some(format!("scale-down-unneeded-time at {}", u.at)),
            );
            report.note(Severity::Mapped, u.at.clone(), format!("scale-down unneeded time {} becomes consolidateAfter (how long a node goes without pod changes before consolidation looks at it)", u.v));
        }
        _ => {}
    }
    if let Y::Map(m) = &disruption
        && !m.is_empty()
    {
        spec.set("disruption", disruption, None);
    }

    let mut header = vec![format!(
        "NodePool {name} migrated by stowage migrate from node group(s):"
    )];
    header.extend(members.iter().map(|m| format!("  {} ({})", m.name, m.at)));
    Manifest {
        name: name.to_string(),
        yaml: emit::document(&root, &header),
    }
}

fn terms(terms: &[Term], at: &str) -> Y {
    Y::List(
        terms
            .iter()
            .map(|t| {
                let mut y = Y::map();
                match t {
                    Term::Id(id) => {
                        y.set("id", Y::str(id), None);
                    }
                    Term::Tags(tags) => {
                        let mut m = Y::map();
                        for (k, v) in tags {
                            m.set(k, Y::str(v), None);
                        }
                        y.set("tags", m, None);
                    }
                }
                (y, Some(at.to_string()))
            })
            .collect(),
    )
}

fn nodeclass(name: &str, c: &Class, members: &[&Group], report: &mut Report) -> Manifest {
    let what = format!("EC2NodeClass {name}");
    let mut root = Y::map();
    root.set("apiVersion", Y::str("aws.stowage.dev/v1"), None);
    root.set("kind", Y::str("EC2NodeClass"), None);
    root.child("metadata").set("name", Y::str(name), None);
    let spec = root.child("spec");
    let mut ami = Y::map();
    let bottlerocket = match &c.ami.v {
        Ami::Alias(a) => {
            ami.set("alias", Y::str(a), None);
            a.starts_with("bottlerocket")
        }
        Ami::Id { id, .. } => {
            ami.set("id", Y::str(id), None);
            false
        }
    };
    spec.set(
        "amiSelectorTerms",
        Y::List(vec![(ami, Some(c.ami.at.clone()))]),
        None,
    );
    if let Ami::Id { family, .. } = &c.ami.v {
        spec.set("amiFamily", Y::str(family), Some(c.ami.at.clone()));
    }
    spec.set(
        "subnetSelectorTerms",
        terms(&c.subnets.v, &c.subnets.at),
        None,
    );
    spec.set(
        "securityGroupSelectorTerms",
        terms(&c.security_groups.v, &c.security_groups.at),
        None,
    );
    match &c.iam.v {
        Iam::Role(r) => spec.set("role", Y::str(r), Some(c.iam.at.clone())),
        Iam::Profile(p) => spec.set("instanceProfile", Y::str(p), Some(c.iam.at.clone())),
    };
    if let Some(v) = &c.volume {
        let mut ebs = Y::map();
        ebs.set("volumeSize", Y::str(format!("{}Gi", v.v.size_gib)), None);
        if let Some(t) = &v.v.kind {
            if matches!(
                t.as_str(),
                "standard" | "io1" | "io2" | "gp2" | "sc1" | "st1" | "gp3"
            ) {
                ebs.set("volumeType", Y::str(t), None);
            } else {
                report.note(Severity::NotMapped, v.at.clone(), format!("{what}: volume type {t} is not an EBS type Stowage knows; left to the default"));
            }
        }
        if let Some(e) = v.v.encrypted {
            ebs.set("encrypted", Y::Bool(e), None);
        }
        if let Some(i) = v.v.iops {
            ebs.set("iops", Y::Int(i), None);
        }
        if let Some(t) = v.v.throughput {
            ebs.set("throughput", Y::Int(t), None);
        }
        let mut m = Y::map();
        m.set(
            "deviceName",
            Y::str(if bottlerocket {
                "/dev/xvdb"
            } else {
                "/dev/xvda"
            }),
            None,
        );
        m.set("rootVolume", Y::Bool(!bottlerocket), None);
        m.set("ebs", ebs, None);
        spec.set(
            "blockDeviceMappings",
            Y::List(vec![(m, Some(v.at.clone()))]),
            None,
        );
    }
    let mut tags = Y::map();
    for (k, v) in &c.tags {
        let restricted = RESTRICTED_TAG_KEYS.contains(&k.as_str())
            || RESTRICTED_TAG_PREFIXES.iter().any(|p| k.starts_with(p))
            || k.starts_with("aws:");
        if restricted || k.is_empty() || v.v.is_empty() {
            report.note(
                Severity::NotMapped,
                v.at.clone(),
                format!("{what}: tag {k} dropped (restricted or empty)"),
            );
            continue;
        }
        tags.set(k, Y::str(&v.v), Some(v.at.clone()));
    }
    if let Y::Map(m) = &tags
        && !m.is_empty()
    {
        spec.set("tags", tags, None);
    }
    if let Some(p) = &c.public_ip {
        spec.set(
            "associatePublicIPAddress",
            Y::Bool(p.v),
            Some(format!("privateNetworking at {}", p.at)),
        );
    }
    if let Some(m) = &c.max_pods {
        spec.child("kubelet")
            .set("maxPods", Y::Int(m.v), Some(m.at.clone()));
    }
    let mut header = vec![format!(
        "EC2NodeClass {name} migrated by stowage migrate; launch settings of (field sources from the first):"
    )];
    header.extend(members.iter().map(|m| format!("  {} ({})", m.name, m.at)));
    Manifest {
        name: name.to_string(),
        yaml: emit::document(&root, &header),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Src;

    fn tier(p: i64) -> Tier {
        Tier {
            priority: p,
            patterns: vec![],
        }
    }

    #[test]
    fn priorities_in_range_are_kept_and_others_spread_in_order() {
        let m = weights(&[tier(80), tier(50), tier(10)]);
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            [(10, 10), (50, 50), (80, 80)]
        );
        let m = weights(&[tier(1000), tier(0), tier(-5), tier(20)]);
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            [(-5, 1), (0, 34), (20, 67), (1000, 100)]
        );
    }

    #[test]
    fn merged_names_are_the_common_prefix() {
        let g = |n: &str| Group {
            name: n.into(),
            at: String::new(),
            names: vec![],
            instance_types: None,
            selector: None,
            capacity: Src::new(Capacity::Spot, ""),
            min: None,
            max: None,
            desired: None,
            labels: BTreeMap::new(),
            taints: vec![],
            zones: None,
            class: Class {
                ami: Src::new(Ami::Alias("al2023@latest".into()), ""),
                subnets: Src::new(vec![], ""),
                security_groups: Src::new(vec![], ""),
                iam: Src::new(Iam::Role("r".into()), ""),
                volume: None,
                tags: BTreeMap::new(),
                public_ip: None,
                max_pods: None,
            },
            ca: CaOptions::default(),
        };
        assert_eq!(pool_name(&[g("wf-spot-m5"), g("wf-spot-c5")]), "wf-spot");
        assert_eq!(pool_name(&[g("ab-1"), g("ab-2")]), "ab-1");
        assert_eq!(pool_name(&[g("Gaudi_Train")]), "gaudi-train");
    }
}
