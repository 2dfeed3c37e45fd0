//! The edge between Kubernetes objects and the solver's domain: `k8s_openapi` Pods, Nodes and
//! DaemonSets and the API's NodePool become [`crate::domain`] types.
//!
//! Key decision: this is the only module that reads `k8s_openapi` types, and every failure names
//! the object (`Pod default/web`) and the field (`spec.containers[0].resources.requests.cpu`).
//! Requests follow Kubernetes: a container's missing request defaults to its limit; the pod's
//! requests are max(any init container + the sidecars started before it, containers + all
//! sidecars) plus the pod overhead. Node affinity's `matchFields` are read on `metadata.name`
//! (the only node field Kubernetes supports; the DaemonSet controller pins each of its pods to
//! its node that way) and refused on any other field. A Pod is read through [`PodView`], so a
//! reader's leaner form of it (`stowage plan`'s) converts by the same rules as the full object;
//! field paths are written out only when a conversion fails.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use stowage_api::labels;
use stowage_api::quantity;
use stowage_api::requirements::{Operator, Requirement};

use crate::domain::{
    CapScope, DaemonSet, ExistingNode, HostPort, LabelSelector, NODE_NAME_FIELD, NodeAffinityTerm,
    NodeNameRequirement, NodeTaint, OnDemandCap, PodAffinityTerm, PodRequest, PoolSpec, PoolUsage,
    PreferredTerm, TaintEffect, Toleration, TolerationOperator, TopologySpread,
    WeightedPodAffinityTerm, WhenUnsatisfiable,
};
use crate::model::{Resources, resource};

/// A Kubernetes object the solver cannot read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{object}: {field} is not a valid quantity")]
    ParseQuantity {
        object: String,
        field: String,
        #[source]
        source: quantity::Error,
    },
    #[error("{object}: {field} is required")]
    MissingField { object: String, field: String },
    #[error("{object}: {field}: {message}")]
    InvalidValue {
        object: String,
        field: String,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What Stowage reads of a Pod, borrowed: from a `k8s_openapi` Pod ([`PodView::of`]) or from a
/// reader's leaner form of one (`stowage_dump`'s, which never builds the `k8s_openapi` Pod).
/// The solver's conversion ([`pod_from_view`]) and the controllers' facts (stowage-controller's
/// `LeanPod`) read a Pod only through it, so every form of a Pod goes through one conversion.
///
/// **Invariant:** a field Stowage reads of a Pod is read through this view; a reader that fills
/// it from its own form must fill every field (a field it leaves `None` is absent to the rules).
#[derive(Debug, Clone, Copy)]
pub struct PodView<'a, C = core::Container> {
    pub name: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub uid: Option<&'a str>,
    pub creation_timestamp: Option<&'a meta::Time>,
    pub deletion_timestamp: Option<&'a meta::Time>,
    pub labels: Option<&'a BTreeMap<String, String>>,
    pub annotations: Option<&'a BTreeMap<String, String>>,
    pub owner_references: &'a [meta::OwnerReference],
    pub spec: Option<SpecView<'a, C>>,
    pub status: Option<StatusView<'a>>,
}

/// What Stowage reads of a Pod's spec (see [`PodView`]).
#[derive(Debug, Clone, Copy)]
pub struct SpecView<'a, C = core::Container> {
    pub node_name: Option<&'a str>,
    pub containers: &'a [C],
    pub init_containers: &'a [C],
    pub overhead: Option<&'a BTreeMap<String, Quantity>>,
    pub node_selector: Option<&'a BTreeMap<String, String>>,
    pub priority: Option<i32>,
    pub priority_class_name: Option<&'a str>,
    pub termination_grace_period_seconds: Option<i64>,
    pub tolerations: &'a [core::Toleration],
    pub affinity: Option<&'a core::Affinity>,
    pub topology_spread_constraints: &'a [core::TopologySpreadConstraint],
}

/// What Stowage reads of a Pod's status (see [`PodView`]).
#[derive(Debug, Clone, Copy)]
pub struct StatusView<'a> {
    pub phase: Option<&'a str>,
    pub conditions: &'a [core::PodCondition],
    pub nominated_node_name: Option<&'a str>,
}

/// What Stowage reads of a container (see [`PodView`]).
pub trait ContainerView {
    fn resources(&self) -> Option<&core::ResourceRequirements>;
    fn ports(&self) -> &[core::ContainerPort];
    fn restart_policy(&self) -> Option<&str>;
}

impl ContainerView for core::Container {
    fn resources(&self) -> Option<&core::ResourceRequirements> {
        self.resources.as_ref()
    }

    fn ports(&self) -> &[core::ContainerPort] {
        self.ports.as_deref().unwrap_or_default()
    }

    fn restart_policy(&self) -> Option<&str> {
        self.restart_policy.as_deref()
    }
}

impl<'a> PodView<'a> {
    /// The view of a `k8s_openapi` Pod.
    pub fn of(p: &'a core::Pod) -> Self {
        let m = &p.metadata;
        PodView {
            name: m.name.as_deref(),
            namespace: m.namespace.as_deref(),
            uid: m.uid.as_deref(),
            creation_timestamp: m.creation_timestamp.as_ref(),
            deletion_timestamp: m.deletion_timestamp.as_ref(),
            labels: m.labels.as_ref(),
            annotations: m.annotations.as_ref(),
            owner_references: m.owner_references.as_deref().unwrap_or_default(),
            spec: p.spec.as_ref().map(SpecView::of),
            status: p.status.as_ref().map(|s| StatusView {
                phase: s.phase.as_deref(),
                conditions: s.conditions.as_deref().unwrap_or_default(),
                nominated_node_name: s.nominated_node_name.as_deref(),
            }),
        }
    }
}

impl<'a> SpecView<'a> {
    /// The view of a `k8s_openapi` PodSpec.
    pub fn of(s: &'a core::PodSpec) -> Self {
        SpecView {
            node_name: s.node_name.as_deref(),
            containers: &s.containers,
            init_containers: s.init_containers.as_deref().unwrap_or_default(),
            overhead: s.overhead.as_ref(),
            node_selector: s.node_selector.as_ref(),
            priority: s.priority,
            priority_class_name: s.priority_class_name.as_deref(),
            termination_grace_period_seconds: s.termination_grace_period_seconds,
            tolerations: s.tolerations.as_deref().unwrap_or_default(),
            affinity: s.affinity.as_ref(),
            topology_spread_constraints: s
                .topology_spread_constraints
                .as_deref()
                .unwrap_or_default(),
        }
    }
}

fn invalid(object: &str, field: &str, message: impl Into<String>) -> Error {
    Error::InvalidValue {
        object: object.to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

/// The quantity `q` of resource `k` at `{field}.{k}` of `object`: parsed, and never negative.
/// `field` is written out only when the quantity is refused (a pod's conversion formats no
/// path unless it fails).
fn checked_quantity(
    object: &str,
    field: &dyn Fn() -> String,
    k: &str,
    q: &Quantity,
) -> Result<i64> {
    let v = quantity::parse_resource(k, &q.0).map_err(|source| Error::ParseQuantity {
        object: object.to_string(),
        field: format!("{}.{k}", field()),
        source,
    })?;
    if v < 0 {
        return Err(invalid(
            object,
            &format!("{}.{k}", field()),
            format!("must not be negative, got {}", q.0),
        ));
    }
    Ok(v)
}

fn quantities(
    object: &str,
    field: &str,
    map: Option<&BTreeMap<String, Quantity>>,
) -> Result<Resources> {
    let mut r = Resources::new();
    for (k, q) in map.into_iter().flatten() {
        let v = checked_quantity(object, &|| field.to_string(), k, q)?;
        r.set(k.clone(), v);
    }
    Ok(r)
}

/// Quantities keyed by the pod's own resource names while its requests are summed: no name is
/// copied until the result (a `Resources` copies its key on every update; 40,000 pods are
/// converted at once in a whole-cluster plan). The arithmetic is [`Resources`']: an absent name
/// is zero, and no quantity is negative ([`quantities`] refuses them). Kept as a vector sorted by
/// name: a pod names a handful of resources, and a map allocated a node per container and per
/// sum.
#[derive(Debug, Default)]
struct Tally<'a>(Vec<(&'a str, i64)>);

impl<'a> Tally<'a> {
    /// The entry of `k`, made zero when absent (the order by name kept).
    fn entry(&mut self, k: &'a str) -> &mut i64 {
        let i = match self.0.binary_search_by(|(n, _)| (*n).cmp(k)) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (k, 0));
                i
            }
        };
        &mut self.0[i].1
    }

    /// `other`'s quantities replacing these, name by name.
    fn overwrite(&mut self, other: Tally<'a>) {
        for (k, v) in other.0 {
            *self.entry(k) = v;
        }
    }
}

/// [`quantities`] as a [`Tally`] (the same checks, in the same order).
fn tally<'a>(
    object: &str,
    field: &dyn Fn() -> String,
    map: Option<&'a BTreeMap<String, Quantity>>,
) -> Result<Tally<'a>> {
    let mut r = Tally::default();
    for (k, q) in map.into_iter().flatten() {
        let v = checked_quantity(object, field, k, q)?;
        // As `Resources::set`: a zero is no entry (so a zero request leaves the limit). The
        // map is in name order, so pushing keeps the tally's.
        if v != 0 {
            r.0.push((k, v));
        }
    }
    Ok(r)
}

fn tally_add<'a>(sum: &mut Tally<'a>, other: &Tally<'a>) {
    for &(k, v) in &other.0 {
        let cur = sum.entry(k);
        *cur = cur.saturating_add(v);
    }
}

fn tally_max<'a>(max: &mut Tally<'a>, other: &Tally<'a>) {
    for &(k, v) in &other.0 {
        let cur = max.entry(k);
        *cur = (*cur).max(v);
    }
}

fn container_requests<'a, C: ContainerView>(
    object: &str,
    field: &dyn Fn() -> String,
    c: &'a C,
) -> Result<Tally<'a>> {
    let res = c.resources();
    let mut r = tally(
        object,
        &|| format!("{}.resources.limits", field()),
        res.and_then(|r| r.limits.as_ref()),
    )?;
    let req = tally(
        object,
        &|| format!("{}.resources.requests", field()),
        res.and_then(|r| r.requests.as_ref()),
    )?;
    // A request overrides the limit (the limit is the default request).
    r.overwrite(req);
    Ok(r)
}

/// The pod's effective requests (Kubernetes' `PodRequests`).
pub fn pod_requests(object: &str, spec: &core::PodSpec) -> Result<Resources> {
    spec_requests(object, &SpecView::of(spec))
}

/// [`pod_requests`] of a borrowed spec.
fn spec_requests<C: ContainerView>(object: &str, spec: &SpecView<'_, C>) -> Result<Resources> {
    let mut sum = Tally::default();
    for (i, c) in spec.containers.iter().enumerate() {
        tally_add(
            &mut sum,
            &container_requests(object, &|| format!("spec.containers[{i}]"), c)?,
        );
    }
    let mut sidecars = Tally::default();
    let mut init_max = Tally::default();
    for (i, c) in spec.init_containers.iter().enumerate() {
        let r = container_requests(object, &|| format!("spec.initContainers[{i}]"), c)?;
        if c.restart_policy() == Some("Always") {
            tally_add(&mut sidecars, &r);
            tally_max(&mut init_max, &sidecars);
        } else {
            let mut with = r;
            tally_add(&mut with, &sidecars);
            tally_max(&mut init_max, &with);
        }
    }
    tally_add(&mut sum, &sidecars);
    tally_max(&mut sum, &init_max);
    tally_add(
        &mut sum,
        &tally(object, &|| "spec.overhead".to_string(), spec.overhead)?,
    );
    Ok(Resources(
        sum.0
            .into_iter()
            .filter(|(_, v)| *v != 0)
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    ))
}

fn operator(object: &str, field: &str, op: &str) -> Result<Operator> {
    Ok(match op {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::Gt,
        "Lt" => Operator::Lt,
        "Gte" => Operator::Gte,
        "Lte" => Operator::Lte,
        other => {
            return Err(invalid(
                object,
                field,
                format!("unknown operator {other:?}"),
            ));
        }
    })
}

fn node_selector_term(
    object: &str,
    field: &str,
    t: &core::NodeSelectorTerm,
) -> Result<NodeAffinityTerm> {
    let mut out = NodeAffinityTerm::default();
    for (i, e) in t.match_expressions.iter().flatten().enumerate() {
        let f = format!("{field}.matchExpressions[{i}]");
        out.requirements.push(Requirement::new(
            &e.key,
            operator(object, &format!("{f}.operator"), &e.operator)?,
            e.values.iter().flatten().cloned(),
        ));
    }
    for (i, e) in t.match_fields.iter().flatten().enumerate() {
        let f = format!("{field}.matchFields[{i}]");
        out.node_names.push(match_field(object, &f, e)?);
    }
    Ok(out)
}

/// A `matchFields` requirement: Kubernetes selects nodes on `metadata.name` only, with `In` or
/// `NotIn` (the DaemonSet controller pins its pods with `metadata.name In [<node>]`).
fn match_field(
    object: &str,
    field: &str,
    e: &core::NodeSelectorRequirement,
) -> Result<NodeNameRequirement> {
    if e.key != NODE_NAME_FIELD {
        return Err(invalid(
            object,
            &format!("{field}.key"),
            format!(
                "matchFields supports only {NODE_NAME_FIELD} (the one node field Kubernetes selects on), got {:?}",
                e.key
            ),
        ));
    }
    let names: BTreeSet<String> = e.values.iter().flatten().cloned().collect();
    match e.operator.as_str() {
        "In" => Ok(NodeNameRequirement::In(names)),
        "NotIn" => Ok(NodeNameRequirement::NotIn(names)),
        other => Err(invalid(
            object,
            &format!("{field}.operator"),
            format!("matchFields on {NODE_NAME_FIELD} takes In or NotIn, got {other:?}"),
        )),
    }
}

fn label_selector(object: &str, field: &str, s: &meta::LabelSelector) -> Result<LabelSelector> {
    let mut out = LabelSelector {
        match_labels: s.match_labels.clone().unwrap_or_default(),
        match_expressions: Vec::new(),
    };
    for (i, e) in s.match_expressions.iter().flatten().enumerate() {
        let f = format!("{field}.matchExpressions[{i}].operator");
        let op = operator(object, &f, &e.operator)?;
        if op.is_numeric() {
            return Err(invalid(
                object,
                &f,
                "label selectors take In, NotIn, Exists or DoesNotExist",
            ));
        }
        out.match_expressions.push(Requirement::new(
            &e.key,
            op,
            e.values.iter().flatten().cloned(),
        ));
    }
    Ok(out)
}

fn with_match_label_keys(
    mut sel: Option<LabelSelector>,
    keys: Option<&Vec<String>>,
    pod_labels: &BTreeMap<String, String>,
) -> Option<LabelSelector> {
    if let Some(s) = &mut sel {
        for k in keys.into_iter().flatten() {
            if let Some(v) = pod_labels.get(k) {
                s.match_expressions.push(Requirement::in_(k, [v.as_str()]));
            }
        }
    }
    sel
}

fn affinity_term(
    object: &str,
    field: &str,
    t: &core::PodAffinityTerm,
    namespace: &str,
    pod_labels: &BTreeMap<String, String>,
) -> Result<PodAffinityTerm> {
    let sel = t
        .label_selector
        .as_ref()
        .map(|s| label_selector(object, &format!("{field}.labelSelector"), s))
        .transpose()?;
    let namespaces = if t.namespace_selector.is_some() {
        // Namespace labels are not visible here: an empty selector means every namespace, and a
        // non-empty one is approximated by every namespace too (conservative for anti-affinity).
        None
    } else {
        let list: BTreeSet<String> = t.namespaces.iter().flatten().cloned().collect();
        Some(if list.is_empty() {
            BTreeSet::from([namespace.to_string()])
        } else {
            list
        })
    };
    if t.topology_key.is_empty() {
        return Err(Error::MissingField {
            object: object.to_string(),
            field: format!("{field}.topologyKey"),
        });
    }
    Ok(PodAffinityTerm {
        label_selector: with_match_label_keys(sel, t.match_label_keys.as_ref(), pod_labels),
        topology_key: t.topology_key.clone(),
        namespaces,
    })
}

fn effect(object: &str, field: &str, e: &str) -> Result<TaintEffect> {
    effect_lazy(object, &|| field.to_string(), e)
}

/// [`effect`] with the field's path written out only on error.
fn effect_lazy(object: &str, field: &dyn Fn() -> String, e: &str) -> Result<TaintEffect> {
    Ok(match e {
        "NoSchedule" => TaintEffect::NoSchedule,
        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
        "NoExecute" => TaintEffect::NoExecute,
        other => {
            return Err(invalid(
                object,
                &field(),
                format!("unknown taint effect {other:?}"),
            ));
        }
    })
}

/// A Kubernetes taint.
pub fn taint(object: &str, field: &str, t: &core::Taint) -> Result<NodeTaint> {
    Ok(NodeTaint {
        key: t.key.clone(),
        value: t.value.clone().unwrap_or_default(),
        effect: effect(object, &format!("{field}.effect"), &t.effect)?,
    })
}

/// A pod from its spec (used for pods and for daemonset templates).
pub fn pod_from_spec(
    object: &str,
    namespace: &str,
    name: &str,
    meta: &meta::ObjectMeta,
    spec: &core::PodSpec,
) -> Result<PodRequest> {
    let labels = Arc::new(meta.labels.clone().unwrap_or_default());
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    request(object, namespace, name, labels, owners, &SpecView::of(spec))
}

/// The pod `namespace/name` (`object` in messages) from the parts the solver reads.
fn request<C: ContainerView>(
    object: &str,
    namespace: &str,
    name: &str,
    labels: Arc<BTreeMap<String, String>>,
    owners: &[meta::OwnerReference],
    spec: &SpecView<'_, C>,
) -> Result<PodRequest> {
    let pod_labels = &*labels;
    let mut pod = PodRequest::new(namespace, name);
    pod.requests = spec_requests(object, spec)?;
    pod.node_selector = spec.node_selector.cloned().unwrap_or_default();
    pod.priority = spec.priority.unwrap_or(0);
    pod.owner = owners
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| format!("{}/{}", o.kind, o.name));
    pod.tolerations = tolerations(object, spec.tolerations)?;
    pod.host_ports = host_ports(spec);
    pod.topology_spread = topology_spread(object, spec.topology_spread_constraints, pod_labels)?;
    if let Some(aff) = spec.affinity {
        node_affinity(object, aff, &mut pod)?;
        pod_affinity(object, namespace, aff, pod_labels, &mut pod)?;
    }
    pod.labels = labels;
    Ok(pod)
}

fn tolerations(object: &str, tolerations: &[core::Toleration]) -> Result<Vec<Toleration>> {
    let mut out = Vec::with_capacity(tolerations.len());
    for (i, t) in tolerations.iter().enumerate() {
        let f = || format!("spec.tolerations[{i}]");
        let op = match t.operator.as_deref() {
            None | Some("Equal") => TolerationOperator::Equal,
            Some("Exists") => TolerationOperator::Exists,
            Some(o) => {
                return Err(invalid(
                    object,
                    &format!("{}.operator", f()),
                    format!("unknown operator {o:?}"),
                ));
            }
        };
        let eff = match t.effect.as_deref() {
            None | Some("") => None,
            Some(e) => Some(effect_lazy(object, &|| format!("{}.effect", f()), e)?),
        };
        out.push(Toleration {
            key: t.key.clone().unwrap_or_default(),
            operator: op,
            value: t.value.clone().unwrap_or_default(),
            effect: eff,
        });
    }
    Ok(out)
}

fn host_ports<C: ContainerView>(spec: &SpecView<'_, C>) -> Vec<HostPort> {
    let mut out = Vec::new();
    for c in spec.containers.iter().chain(spec.init_containers) {
        for p in c.ports() {
            if let Some(hp) = p.host_port.filter(|h| *h > 0) {
                out.push(HostPort {
                    port: hp,
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    host_ip: p.host_ip.clone().unwrap_or_default(),
                });
            }
        }
    }
    out
}

fn topology_spread(
    object: &str,
    spreads: &[core::TopologySpreadConstraint],
    pod_labels: &BTreeMap<String, String>,
) -> Result<Vec<TopologySpread>> {
    let mut out = Vec::new();
    for (i, s) in spreads.iter().enumerate() {
        let f = format!("spec.topologySpreadConstraints[{i}]");
        let when = match s.when_unsatisfiable.as_str() {
            "DoNotSchedule" => WhenUnsatisfiable::DoNotSchedule,
            "ScheduleAnyway" => WhenUnsatisfiable::ScheduleAnyway,
            o => {
                return Err(invalid(
                    object,
                    &format!("{f}.whenUnsatisfiable"),
                    format!("unknown value {o:?}"),
                ));
            }
        };
        if s.max_skew < 1 {
            return Err(invalid(
                object,
                &format!("{f}.maxSkew"),
                "must be at least 1",
            ));
        }
        let sel = s
            .label_selector
            .as_ref()
            .map(|x| label_selector(object, &format!("{f}.labelSelector"), x))
            .transpose()?;
        out.push(TopologySpread {
            max_skew: s.max_skew,
            topology_key: s.topology_key.clone(),
            when_unsatisfiable: when,
            label_selector: with_match_label_keys(sel, s.match_label_keys.as_ref(), pod_labels),
            min_domains: s.min_domains,
        });
    }
    Ok(out)
}

fn node_affinity(object: &str, aff: &core::Affinity, pod: &mut PodRequest) -> Result<()> {
    if let Some(na) = &aff.node_affinity {
        if let Some(req) = &na.required_during_scheduling_ignored_during_execution {
            for (i, t) in req.node_selector_terms.iter().enumerate() {
                let f = format!(
                    "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}]"
                );
                pod.required_node_affinity
                    .push(node_selector_term(object, &f, t)?);
            }
        }
        for (i, p) in na
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .enumerate()
        {
            let f = format!(
                "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[{i}].preference"
            );
            let term = node_selector_term(object, &f, &p.preference)?;
            pod.preferred_node_affinity.push(PreferredTerm {
                weight: p.weight,
                requirements: term.requirements,
                node_names: term.node_names,
            });
        }
    }
    Ok(())
}

fn pod_affinity(
    object: &str,
    namespace: &str,
    aff: &core::Affinity,
    pod_labels: &BTreeMap<String, String>,
    pod: &mut PodRequest,
) -> Result<()> {
    for (anti, pa) in [
        (
            false,
            aff.pod_affinity.as_ref().map(|a| {
                (
                    &a.required_during_scheduling_ignored_during_execution,
                    &a.preferred_during_scheduling_ignored_during_execution,
                )
            }),
        ),
        (
            true,
            aff.pod_anti_affinity.as_ref().map(|a| {
                (
                    &a.required_during_scheduling_ignored_during_execution,
                    &a.preferred_during_scheduling_ignored_during_execution,
                )
            }),
        ),
    ] {
        let Some((required, preferred)) = pa else {
            continue;
        };
        let base = if anti {
            "spec.affinity.podAntiAffinity"
        } else {
            "spec.affinity.podAffinity"
        };
        for (i, t) in required.iter().flatten().enumerate() {
            let f = format!("{base}.requiredDuringSchedulingIgnoredDuringExecution[{i}]");
            let term = affinity_term(object, &f, t, namespace, pod_labels)?;
            if anti {
                pod.pod_anti_affinity.push(term)
            } else {
                pod.pod_affinity.push(term)
            }
        }
        for (i, w) in preferred.iter().flatten().enumerate() {
            let f = format!(
                "{base}.preferredDuringSchedulingIgnoredDuringExecution[{i}].podAffinityTerm"
            );
            let term = WeightedPodAffinityTerm {
                weight: w.weight,
                term: affinity_term(object, &f, &w.pod_affinity_term, namespace, pod_labels)?,
            };
            if anti {
                pod.preferred_pod_anti_affinity.push(term)
            } else {
                pod.preferred_pod_affinity.push(term)
            }
        }
    }
    Ok(())
}

/// A Kubernetes Pod.
pub fn pod(p: &core::Pod) -> Result<PodRequest> {
    pod_from_view(&PodView::of(p), |labels| Arc::new(labels.clone()))
}

/// A Pod from what Stowage reads of it ([`PodView`]), its labels shared as `share_labels` makes
/// them (e.g. one allocation for every pod of a workload).
pub fn pod_from_view<C: ContainerView>(
    p: &PodView<'_, C>,
    share_labels: impl FnOnce(&BTreeMap<String, String>) -> Arc<BTreeMap<String, String>>,
) -> Result<PodRequest> {
    static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();
    let name = p.name.unwrap_or_default();
    let namespace = p.namespace.unwrap_or("default");
    let object = format!("Pod {namespace}/{name}");
    if name.is_empty() {
        return Err(Error::MissingField {
            object,
            field: "metadata.name".into(),
        });
    }
    let spec = p.spec.as_ref().ok_or_else(|| Error::MissingField {
        object: object.clone(),
        field: "spec".into(),
    })?;
    let labels = share_labels(p.labels.unwrap_or(&NO_LABELS));
    request(&object, namespace, name, labels, p.owner_references, spec)
}

/// A Kubernetes Node with the (already converted) pods bound to it.
pub fn node(n: &core::Node, pods: Vec<std::sync::Arc<PodRequest>>) -> Result<ExistingNode> {
    let name = n.metadata.name.clone().unwrap_or_default();
    let object = format!("Node {name}");
    if name.is_empty() {
        return Err(Error::MissingField {
            object,
            field: "metadata.name".into(),
        });
    }
    let status = n.status.as_ref();
    let allocatable = quantities(
        &object,
        "status.allocatable",
        status.and_then(|s| s.allocatable.as_ref()),
    )?;
    let mut capacity = quantities(
        &object,
        "status.capacity",
        status.and_then(|s| s.capacity.as_ref()),
    )?;
    if capacity.is_zero() {
        capacity = allocatable.clone();
    }
    let node_labels = n.metadata.labels.clone().unwrap_or_default();
    let mut taints = Vec::new();
    for (i, t) in n
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        taints.push(taint(&object, &format!("spec.taints[{i}]"), t)?);
    }
    let capacity_type = match node_labels.get(labels::CAPACITY_TYPE) {
        Some(v) => Some(
            v.parse()
                .map_err(|e: stowage_api::labels::UnknownCapacityType| {
                    invalid(
                        &object,
                        &format!("metadata.labels[{}]", labels::CAPACITY_TYPE),
                        e.to_string(),
                    )
                })?,
        ),
        None => None,
    };
    Ok(ExistingNode {
        labels: {
            let mut l = node_labels.clone();
            l.entry(labels::HOSTNAME.to_string())
                .or_insert_with(|| name.clone());
            l
        },
        nodepool: node_labels.get(labels::NODEPOOL).cloned(),
        instance_type: node_labels.get(labels::INSTANCE_TYPE).cloned(),
        capacity_type,
        taints,
        allocatable,
        capacity,
        pods,
        price_per_hour: None,
        unschedulable: n
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
        name,
    })
}

/// A Kubernetes DaemonSet (its pod template).
pub fn daemonset(d: &apps::DaemonSet) -> Result<DaemonSet> {
    let name = d.metadata.name.clone().unwrap_or_default();
    let namespace = d
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let object = format!("DaemonSet {namespace}/{name}");
    let template = d
        .spec
        .as_ref()
        .map(|s| &s.template)
        .ok_or_else(|| Error::MissingField {
            object: object.clone(),
            field: "spec".into(),
        })?;
    let spec = template.spec.as_ref().ok_or_else(|| Error::MissingField {
        object: object.clone(),
        field: "spec.template.spec".into(),
    })?;
    let meta = template.metadata.clone().unwrap_or_default();
    Ok(DaemonSet {
        name: stowage_api::namespaced_key(&namespace, &name),
        pod: pod_from_spec(&object, &namespace, &name, &meta, spec)?,
    })
}

/// What a pool holds, summed from the nodes (existing or in flight) labelled with its name.
pub fn pool_usage(pool: &str, nodes: &[ExistingNode]) -> PoolUsage {
    let mut u = PoolUsage::default();
    let mut count = 0;
    for n in nodes.iter().filter(|n| n.nodepool.as_deref() == Some(pool)) {
        count += 1;
        u.resources.add(&n.capacity);
        let cpu = n.capacity.get(resource::CPU);
        u.total_cpu_millis += cpu;
        if n.capacity_type == Some(stowage_api::CapacityType::OnDemand) {
            u.on_demand_cpu_millis += cpu;
        }
    }
    u.resources.set(resource::PODS, 0);
    u.resources.set("nodes", count);
    u
}

/// An API NodePool with its current usage (its instance types default to the solve's catalogue).
pub fn nodepool(np: &stowage_api::NodePool, usage: PoolUsage) -> Result<PoolSpec> {
    let name = np.metadata.name.clone().unwrap_or_default();
    let object = format!("NodePool {name}");
    if name.is_empty() {
        return Err(Error::MissingField {
            object,
            field: "metadata.name".into(),
        });
    }
    let spec = &np.spec.template.spec;
    let mut taints = Vec::new();
    for (i, t) in spec.taints.iter().enumerate() {
        taints.push(taint(
            &object,
            &format!("spec.template.spec.taints[{i}]"),
            t,
        )?);
    }
    let mut startup_taints = Vec::new();
    for (i, t) in spec.startup_taints.iter().enumerate() {
        startup_taints.push(taint(
            &object,
            &format!("spec.template.spec.startupTaints[{i}]"),
            t,
        )?);
    }
    let limits = quantities(&object, "spec.limits", Some(&np.spec.limits))?;
    let capacity_mix = match &np.spec.capacity_mix {
        None => None,
        Some(m) => {
            let base = match &m.on_demand_base {
                None => 0,
                Some(q) => quantity::parse_milli(&q.0).map_err(|source| Error::ParseQuantity {
                    object: object.clone(),
                    field: "spec.capacityMix.onDemandBase".into(),
                    source,
                })?,
            };
            let pct = m.on_demand_percent().ok_or_else(|| {
                invalid(
                    &object,
                    "spec.capacityMix.onDemandPercentAboveBase",
                    format!(
                        "must be within {}..{}",
                        stowage_api::nodepool::ON_DEMAND_PERCENT_RANGE.start(),
                        stowage_api::nodepool::ON_DEMAND_PERCENT_RANGE.end()
                    ),
                )
            })?;
            // A scope starts as the pool alone with its own usage; [`resolve_capacity_scopes`]
            // adds the pools its selector picks and what they hold.
            let scope = m.scope.as_ref().map(|_| CapScope {
                pools: vec![name.clone()],
                on_demand_cpu_millis: usage.on_demand_cpu_millis,
                other_cpu_millis: usage.total_cpu_millis - usage.on_demand_cpu_millis,
            });
            Some(OnDemandCap {
                on_demand_base_millis: base,
                on_demand_percent_above_base: pct,
                scope,
            })
        }
    };
    let spot_max_pods_per_workload = match &np.spec.spot_blast_radius {
        None => None,
        Some(b) => Some(
            u32::try_from(b.max_pods_per_workload)
                .ok()
                .filter(|m| *m >= 1)
                .ok_or_else(|| {
                    invalid(
                        &object,
                        "spec.spotBlastRadius.maxPodsPerWorkload",
                        format!("must be at least 1, got {}", b.max_pods_per_workload),
                    )
                })?,
        ),
    };
    Ok(PoolSpec {
        name,
        weight: np.weight(),
        labels: np.spec.template.metadata.labels.clone(),
        requirements: spec.requirements.clone(),
        taints,
        startup_taints,
        limits,
        capacity_mix,
        spot_max_pods_per_workload,
        usage,
        instance_types: None,
    })
}

/// The pools a NodePool's `capacityMix.scope` selects (by their labels), itself included,
/// sorted; `None` when its mix has no scope.
pub fn scope_members<'a>(
    np: &stowage_api::NodePool,
    all: impl IntoIterator<Item = &'a stowage_api::NodePool>,
) -> Option<Vec<String>> {
    let scope = np.spec.capacity_mix.as_ref()?.scope.as_ref()?;
    let own = np.metadata.name.clone().unwrap_or_default();
    let mut names: Vec<String> = all
        .into_iter()
        .filter(|p| {
            scope
                .node_pool_selector
                .matches(p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new()))
        })
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.push(own);
    names.sort();
    names.dedup();
    Some(names)
}

/// Fills in the scope of every scoped capacity mix in `pools`: the pools its NodePool's
/// selector picks among `all` (every NodePool of the cluster, including those that cannot buy
/// now: their nodes count) and what the nodes (existing and in flight) of those pools hold.
pub fn resolve_capacity_scopes(
    pools: &mut [PoolSpec],
    all: &[&stowage_api::NodePool],
    nodes: &[ExistingNode],
) {
    for p in pools.iter_mut() {
        let Some(scope) = p.capacity_mix.as_mut().and_then(|m| m.scope.as_mut()) else {
            continue;
        };
        let Some(np) = all
            .iter()
            .find(|np| np.metadata.name.as_deref() == Some(p.name.as_str()))
        else {
            continue;
        };
        let Some(members) = scope_members(np, all.iter().copied()) else {
            continue;
        };
        let mut on_demand = 0;
        let mut other = 0;
        for n in nodes.iter().filter(|n| {
            n.nodepool
                .as_deref()
                .is_some_and(|name| members.binary_search_by(|m| m.as_str().cmp(name)).is_ok())
        }) {
            let cpu = n.capacity.get(resource::CPU);
            if n.capacity_type == Some(stowage_api::CapacityType::OnDemand) {
                on_demand += cpu;
            } else {
                other += cpu;
            }
        }
        *scope = CapScope {
            pools: members,
            on_demand_cpu_millis: on_demand,
            other_cpu_millis: other,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: shop
  labels: {app: web}
spec:
  priority: 10
  initContainers:
  - name: migrate
    resources: {requests: {cpu: "2", memory: 1Gi}}
  - name: proxy
    restartPolicy: Always
    resources: {requests: {cpu: 100m, memory: 64Mi}}
  containers:
  - name: app
    resources: {requests: {cpu: 500m}, limits: {memory: 512Mi, nvidia.com/gpu: "1"}}
    ports: [{containerPort: 80, hostPort: 8080}]
  - name: logger
    resources: {requests: {cpu: 250m, memory: 128Mi}}
  overhead: {cpu: 10m}
  nodeSelector: {kubernetes.io/arch: amd64}
  tolerations:
  - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
  topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: DoNotSchedule
    labelSelector: {matchLabels: {app: web}}
    matchLabelKeys: [app]
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions: [{key: stowage.dev/capacity-type, operator: In, values: [spot]}]
        - matchExpressions: [{key: aws.stowage.dev/instance-cpu, operator: Gt, values: ["4"]}]
      preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 50
        preference: {matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [a]}]}
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - labelSelector: {matchLabels: {app: web}}
        topologyKey: kubernetes.io/hostname
"#;

    #[test]
    fn converts_a_pod_the_kubernetes_way() {
        let k: core::Pod = serde_saphyr::from_str(POD).unwrap();
        let p = pod(&k).unwrap();
        assert_eq!(p.key(), "shop/web-0");
        // containers 500m + 250m + sidecar 100m = 850m; init: migrate 2000m (before the sidecar
        // starts) -> max = 2000m; + 10m overhead.
        assert_eq!(p.requests.cpu_millis(), 2010);
        // memory: containers 512Mi (limit as request) + 128Mi + sidecar 64Mi = 704Mi vs 1Gi.
        assert_eq!(p.requests.memory_bytes(), 1 << 30);
        assert_eq!(p.requests.get("nvidia.com/gpu"), 1);
        assert_eq!(p.priority, 10);
        assert_eq!(p.host_ports, vec![HostPort::tcp(8080)]);
        assert_eq!(p.required_node_affinity.len(), 2);
        assert_eq!(
            p.required_node_affinity[1].requirements[0].operator,
            Operator::Gt
        );
        assert_eq!(p.preferred_node_affinity[0].weight, 50);
        assert_eq!(
            p.pod_anti_affinity[0].namespaces,
            Some(BTreeSet::from(["shop".to_string()]))
        );
        let spread = &p.topology_spread[0];
        assert_eq!(
            spread
                .label_selector
                .as_ref()
                .unwrap()
                .match_expressions
                .len(),
            1
        );
        assert_eq!(p.tolerations[0].operator, TolerationOperator::Exists);
    }

    /// The requests as `Resources`' own arithmetic sums them (what [`pod_requests`] computed
    /// before its [`Tally`]): the tally must agree on every shape, zeros and sidecars included.
    fn requests_by_resources(spec: &core::PodSpec) -> Resources {
        let container = |c: &core::Container| {
            let res = c.resources.as_ref();
            let mut r = quantities("p", "f", res.and_then(|r| r.limits.as_ref())).unwrap();
            let req = quantities("p", "f", res.and_then(|r| r.requests.as_ref())).unwrap();
            for (k, v) in req.0 {
                r.set(k, v);
            }
            r
        };
        let mut sum = Resources::new();
        for c in &spec.containers {
            sum.add(&container(c));
        }
        let (mut sidecars, mut init_max) = (Resources::new(), Resources::new());
        for c in spec.init_containers.iter().flatten() {
            let r = container(c);
            if c.restart_policy.as_deref() == Some("Always") {
                sidecars.add(&r);
                init_max.max_with(&sidecars);
            } else {
                let mut with = r;
                with.add(&sidecars);
                init_max.max_with(&with);
            }
        }
        sum.add(&sidecars);
        sum.max_with(&init_max);
        sum.add(&quantities("p", "f", spec.overhead.as_ref()).unwrap());
        sum
    }

    #[test]
    fn requests_are_summed_as_resources_sum_them() {
        let base: core::Pod = serde_saphyr::from_str(POD).unwrap();
        let zero_request = POD.replace(
            "requests: {cpu: 500m}, limits: {memory: 512Mi",
            "requests: {cpu: \"0\", memory: \"0\"}, limits: {cpu: \"1\", memory: 512Mi",
        );
        let big = POD.replace("cpu: \"2\"", "cpu: \"9000000000000000\"");
        let no_init = POD.replace("initContainers:", "xInitContainers:");
        let sidecars_only = POD.replace(
            "  - name: migrate\n    resources: {requests: {cpu: \"2\", memory: 1Gi}}\n",
            "",
        );
        for text in [POD.to_string(), zero_request, big, no_init, sidecars_only] {
            let k: core::Pod = serde_saphyr::from_str(&text).unwrap();
            let spec = k.spec.as_ref().unwrap();
            assert_eq!(
                pod_requests("p", spec).unwrap(),
                requests_by_resources(spec),
                "{text}"
            );
        }
        assert_ne!(
            requests_by_resources(base.spec.as_ref().unwrap()),
            Resources::new()
        );
    }

    #[test]
    fn names_object_and_field_on_bad_input() {
        let bad = POD.replace("cpu: 250m", "cpu: 25x");
        let k: core::Pod = serde_saphyr::from_str(&bad).unwrap();
        let err = pod(&k).unwrap_err().to_string();
        assert!(
            err.starts_with("Pod shop/web-0: spec.containers[1].resources.requests.cpu"),
            "{err}"
        );
        let bad = POD.replace("operator: Gt", "operator: Bigger");
        let k: core::Pod = serde_saphyr::from_str(&bad).unwrap();
        let err = pod(&k).unwrap_err().to_string();
        assert!(
            err.contains("nodeSelectorTerms[1].matchExpressions[0].operator"),
            "{err}"
        );
        assert!(err.contains("Bigger"), "{err}");
    }

    /// A pod as the DaemonSet controller creates it, with `matchFields` as given.
    fn daemon_pod(match_fields: &str) -> core::Pod {
        serde_saphyr::from_str(&format!(
            r#"
metadata:
  name: agent-x7k2p
  namespace: kube-system
  ownerReferences: [{{apiVersion: apps/v1, kind: DaemonSet, name: agent, uid: u1, controller: true}}]
spec:
  containers: [{{name: a, resources: {{requests: {{cpu: 100m}}}}}}]
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchFields: [{match_fields}]
"#
        ))
        .unwrap()
    }

    #[test]
    fn reads_match_fields_on_the_node_name() {
        let p = pod(&daemon_pod(
            "{key: metadata.name, operator: In, values: [ip-10-0-0-1]}",
        ))
        .unwrap();
        assert_eq!(p.owner.as_deref(), Some("DaemonSet/agent"));
        let term = &p.required_node_affinity[0];
        assert!(term.requirements.is_empty());
        assert_eq!(
            term.pinned_names(),
            Some(BTreeSet::from(["ip-10-0-0-1".to_string()]))
        );
        let labels = BTreeMap::new();
        assert!(p.node_affinity_matches("ip-10-0-0-1", &labels));
        assert!(!p.node_affinity_matches("ip-10-0-0-2", &labels));
        assert!(!term.admits_unnamed_node());
        let p = pod(&daemon_pod(
            "{key: metadata.name, operator: NotIn, values: [ip-10-0-0-1]}",
        ))
        .unwrap();
        assert!(!p.node_affinity_matches("ip-10-0-0-1", &labels));
        assert!(p.node_affinity_matches("ip-10-0-0-2", &labels));
        assert!(p.required_node_affinity[0].admits_unnamed_node());
    }

    #[test]
    fn refuses_match_fields_kubernetes_does_not_support_naming_the_field() {
        let field = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0]";
        let err = pod(&daemon_pod(
            "{key: spec.unschedulable, operator: In, values: [\"true\"]}",
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(&format!("Pod kube-system/agent-x7k2p: {field}.key: ")),
            "{err}"
        );
        assert!(
            err.contains("only metadata.name") && err.contains("spec.unschedulable"),
            "{err}"
        );
        let err = pod(&daemon_pod("{key: metadata.name, operator: Exists}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("{field}.operator")), "{err}");
        assert!(err.contains("In or NotIn"), "{err}");
    }

    #[test]
    fn converts_nodes_daemonsets_and_nodepools() {
        let n: core::Node = serde_saphyr::from_str(
            r#"
metadata:
  name: ip-10-0-0-1
  labels: {stowage.dev/nodepool: default, stowage.dev/capacity-type: on-demand, topology.kubernetes.io/zone: a}
spec:
  taints: [{key: dedicated, value: gpu, effect: NoSchedule}]
status:
  allocatable: {cpu: 3920m, memory: 15Gi, pods: "58"}
  capacity: {cpu: "4", memory: 16Gi, pods: "58"}
"#,
        )
        .unwrap();
        let node = node(&n, vec![]).unwrap();
        assert_eq!(node.allocatable.cpu_millis(), 3920);
        assert_eq!(node.taints[0].to_string(), "dedicated=gpu:NoSchedule");
        assert_eq!(node.labels.get(labels::HOSTNAME).unwrap(), "ip-10-0-0-1");
        let usage = pool_usage("default", &[node]);
        assert_eq!(usage.on_demand_cpu_millis, 4000);
        assert_eq!(usage.resources.get("nodes"), 1);

        let d: apps::DaemonSet = serde_saphyr::from_str(
            r#"
metadata: {name: agent, namespace: kube-system}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: a, resources: {requests: {cpu: 100m, memory: 50Mi}}}]
"#,
        )
        .unwrap();
        let ds = daemonset(&d).unwrap();
        assert_eq!(ds.name, "kube-system/agent");
        assert_eq!(ds.pod.requests.cpu_millis(), 100);

        let np_yaml = r#"
apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: spot-workflows}
spec:
  weight: 10
  limits: {cpu: "1000", nodes: "5"}
  capacityMix: {onDemandBase: "4", onDemandPercentAboveBase: 5}
  template:
    spec:
      nodeClassRef: {group: aws.stowage.dev, kind: EC2NodeClass, name: default}
      requirements: [{key: stowage.dev/capacity-type, operator: In, values: [spot, on-demand]}]
      taints: [{key: workflows, effect: NoSchedule}]
"#;
        let np: stowage_api::NodePool = serde_saphyr::from_str(np_yaml).unwrap();
        let pool = nodepool(&np, PoolUsage::default()).unwrap();
        assert_eq!(pool.weight, 10);
        assert_eq!(pool.limits.cpu_millis(), 1_000_000);
        assert_eq!(pool.limits.get("nodes"), 5);
        assert_eq!(
            pool.capacity_mix.as_ref().unwrap().on_demand_base_millis,
            4000
        );
        assert_eq!(pool.taints[0].to_string(), "workflows:NoSchedule");
        let bad: stowage_api::NodePool =
            serde_saphyr::from_str(&np_yaml.replace("cpu: \"1000\"", "cpu: lots")).unwrap();
        let err = nodepool(&bad, PoolUsage::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("NodePool spot-workflows: spec.limits.cpu"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod error_tests {
    use k8s_openapi::serde_json::{from_value, json};

    #[test]
    fn a_bad_quantity_names_its_field_and_says_why_once() {
        let pod: k8s_openapi::api::core::v1::Pod = from_value(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "lots"}}}]}
        }))
        .unwrap();
        let Err(err) = super::pod(&pod) else {
            panic!("a pod asking for cpu \"lots\" converts");
        };
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            text = format!("{text}: {s}");
            source = s.source();
        }
        assert!(text.contains("is not a valid quantity"), "{text}");
        assert_eq!(text.matches("lots").count(), 1, "the reason once: {text}");
    }

    #[test]
    fn a_negative_request_is_refused_naming_its_field() {
        let pod: k8s_openapi::api::core::v1::Pod = from_value(json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "-2"}}}]}
        }))
        .unwrap();
        let Err(err) = super::pod(&pod) else {
            panic!("a pod asking for cpu -2 converts");
        };
        let text = err.to_string();
        assert!(
            text.contains("requests.cpu") && text.contains("must not be negative"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod scope_tests {
    use super::*;

    #[test]
    fn scopes_count_the_pools_their_selector_picks_and_all_their_nodes() {
        let np = |name: &str, tier: &str, extra: &str| -> stowage_api::NodePool {
            serde_saphyr::from_str(&format!(
                "apiVersion: stowage.dev/v1\nkind: NodePool\nmetadata: {{name: {name}, labels: {{tier: {tier}}}}}\nspec:\n  template: {{spec: {{nodeClassRef: {{group: aws.stowage.dev, kind: EC2NodeClass, name: default}}}}}}\n{extra}"
            ))
            .unwrap()
        };
        let scoped = "  capacityMix: {onDemandPercentAboveBase: 5, scope: {nodePoolSelector: {matchLabels: {tier: general}}}}\n  spotBlastRadius: {maxPodsPerWorkload: 8}\n";
        let pools = [
            np("spot", "general", ""),
            // Not Ready or without types: not in the solve, but its nodes count.
            np("spot-b", "general", ""),
            np("od", "general", scoped),
            np("gpu", "gpu", ""),
        ];
        let node = |name: &str, pool: &str, ct: &str, cpu: i64| {
            let mut n = ExistingNode::new(name, Resources::new().with("cpu", cpu));
            n.nodepool = Some(pool.into());
            n.capacity_type = ct.parse().ok();
            n
        };
        let nodes = [
            node("a", "spot", "spot", 64_000),
            node("b", "spot-b", "spot", 32_000),
            node("c", "od", "on-demand", 4_000),
            node("d", "gpu", "on-demand", 48_000),
        ];
        let mut specs: Vec<PoolSpec> = [&pools[0], &pools[2], &pools[3]]
            .iter()
            .map(|p| nodepool(p, pool_usage(p.metadata.name.as_deref().unwrap(), &nodes)).unwrap())
            .collect();
        // Before resolution the scope is the pool alone.
        let own = specs[1]
            .capacity_mix
            .as_ref()
            .unwrap()
            .scope
            .clone()
            .unwrap();
        assert_eq!(own.pools, ["od"]);
        assert_eq!((own.on_demand_cpu_millis, own.other_cpu_millis), (4_000, 0));
        assert_eq!(specs[1].spot_max_pods_per_workload, Some(8));
        let all: Vec<&stowage_api::NodePool> = pools.iter().collect();
        resolve_capacity_scopes(&mut specs, &all, &nodes);
        let scope = specs[1]
            .capacity_mix
            .as_ref()
            .unwrap()
            .scope
            .clone()
            .unwrap();
        assert_eq!(scope.pools, ["od", "spot", "spot-b"]);
        assert_eq!(scope.on_demand_cpu_millis, 4_000);
        assert_eq!(scope.other_cpu_millis, 96_000, "the gpu pool is outside");
        assert!(specs[0].capacity_mix.is_none());
    }
}
