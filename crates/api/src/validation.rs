//! Validation of NodePool, NodeClaim and EC2NodeClass specs, every error naming its field path
//! (`spec.template.spec.requirements[2].operator`).
//!
//! Key decision: these are the same rules the generated CRDs give the API server (schema
//! constraints and CEL), written once more in Rust so the controllers can put a clear
//! `ValidationSucceeded=False` condition on anything that slipped past (an older CRD, a
//! disabled admission path, a hand-built object in tests).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::cron::CronSchedule;
use crate::ec2nodeclass::{AMI_ALIAS_FAMILIES, AmiFamily, EC2NodeClass, EC2NodeClassSpec};
use crate::labels;
use crate::nodeclaim::{NodeClaim, NodeClaimSpec, NodeClassRef};
use crate::nodepool::{Budget, NodePool, NodePoolSpec, ON_DEMAND_PERCENT_RANGE};
use crate::quantity;
use crate::requirements::{Operator, Requirement};

/// Most requirements a NodePool template or NodeClaim may carry.
pub const MAX_REQUIREMENTS: usize = 100;
/// Most values of one requirement (the CRD's `maxItems`): a NodeClaim's instance-type options
/// are bounded by it.
pub const MAX_REQUIREMENT_VALUES: usize = 500;
/// Most template labels.
pub const MAX_LABELS: usize = 100;
/// Most budgets.
pub const MAX_BUDGETS: usize = 50;
/// Most selector terms of each kind.
pub const MAX_SELECTOR_TERMS: usize = 30;
/// Most block device mappings.
pub const MAX_BLOCK_DEVICE_MAPPINGS: usize = 50;
/// `minValues` bounds.
pub const MIN_VALUES_RANGE: std::ops::RangeInclusive<i32> = 1..=50;

/// Label domains users may not set or require (their labels are Stowage's or Kubernetes' own),
/// apart from the well-known labels and [`ALLOWED_LABEL_DOMAINS`].
pub const RESTRICTED_LABEL_DOMAINS: &[&str] = &["stowage.dev", "kubernetes.io", "k8s.io"];
/// Subdomains of restricted domains that remain free for users.
pub const ALLOWED_LABEL_DOMAINS: &[&str] = &[
    "node.kubernetes.io",
    "node-restriction.kubernetes.io",
    "kops.k8s.io",
];
/// Labels Stowage sets itself on every node; users may not set or require them.
pub const RESTRICTED_LABELS: &[&str] = &[labels::NODEPOOL, labels::HOSTNAME];

/// One validation failure: the field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path with indices, e.g. `spec.template.spec.requirements[2].operator`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// All errors as one line (for a condition message or a log).
pub fn summarize(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Collects errors under path prefixes.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

// --- Names ---------------------------------------------------------------------------------------

fn is_dns_label_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'
}

/// A DNS-1123 subdomain: lower-case alphanumerics, `-` and `.`, alphanumeric at both ends, ≤253.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b.iter().all(|&c| is_dns_label_char(c))
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// The name part of a qualified name or a label value: ≤63 of `[A-Za-z0-9_.-]`, alphanumeric
/// at both ends. `allow_empty` for label values.
fn is_label_name(s: &str, allow_empty: bool) -> bool {
    if s.is_empty() {
        return allow_empty;
    }
    let b = s.as_bytes();
    s.len() <= 63
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// A label key (or taint key): `[prefix/]name`, prefix a DNS subdomain.
pub fn qualified_name_error(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !is_dns_subdomain(p)
    {
        return Some(format!("prefix {p:?} of {key:?} is not a DNS subdomain"));
    }
    if !is_label_name(name, false) {
        return Some(format!(
            "{key:?} is not a qualified name (at most 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends, optionally prefixed by a DNS subdomain and '/')"
        ));
    }
    None
}

/// A label value: empty or ≤63 of `[A-Za-z0-9_.-]`, alphanumeric at both ends.
pub fn label_value_error(value: &str) -> Option<String> {
    (!is_label_name(value, true)).then(|| {
        format!("{value:?} is not a valid label value (at most 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends)")
    })
}

fn domain_of(key: &str) -> Option<&str> {
    key.split_once('/').map(|(d, _)| d)
}

fn in_domain(domain: &str, of: &str) -> bool {
    domain == of
        || domain
            .strip_suffix(of)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// Why a user may not set or require the label `key`, if they may not.
pub fn restricted_label_error(key: &str) -> Option<String> {
    restricted_label_error_except(key, &[])
}

/// [`restricted_label_error`], with `allowed` labels exempt.
fn restricted_label_error_except(key: &str, allowed: &[&str]) -> Option<String> {
    if allowed.contains(&key) {
        return None;
    }
    if RESTRICTED_LABELS.contains(&key) {
        return Some(format!(
            "label {key:?} is restricted: Stowage sets it itself"
        ));
    }
    if labels::WELL_KNOWN.contains(&key) {
        return None;
    }
    let domain = domain_of(key)?;
    if ALLOWED_LABEL_DOMAINS.iter().any(|d| in_domain(domain, d)) {
        return None;
    }
    RESTRICTED_LABEL_DOMAINS.iter().find(|d| in_domain(domain, d)).map(|d| {
        format!("label domain {d:?} is restricted (only its well-known labels may be used), got {key:?}")
    })
}

// --- Quantities, cron ------------------------------------------------------------------------------

fn quantity_error(resource: &str, q: &Quantity) -> Option<String> {
    match quantity::parse_resource(resource, &q.0) {
        Ok(v) if v < 0 => Some(format!("{:?} must not be negative", q.0)),
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    }
}

/// Whether `name` is a resource name: a qualified name (`cpu`, `nvidia.com/gpu`).
fn resource_name_error(name: &str) -> Option<String> {
    qualified_name_error(name).map(|e| format!("invalid resource name: {e}"))
}

/// Why `schedule` is not a cron schedule (5 fields, or `@hourly`, `@daily`, ...), if it is not.
pub fn cron_error(schedule: &str) -> Option<String> {
    CronSchedule::parse(schedule).err().map(|e| e.to_string())
}

/// Why budget `nodes` is not `N%` (0..100) or a count, if it is not.
pub fn budget_nodes_error(nodes: &str) -> Option<String> {
    Budget::nodes(nodes)
        .allowed_disruptions(0)
        .err()
        .map(|e| e.to_string())
}

// --- Shared pieces -----------------------------------------------------------------------------------

/// Labels a NodeClaim's requirements may name although a NodePool's may not: the provisioner
/// pins every claim to its pool.
pub const NODECLAIM_REQUIREMENT_LABELS: &[&str] = &[labels::NODEPOOL];

fn validate_requirements(
    errs: &mut Errors,
    path: &str,
    requirements: &[Requirement],
    allowed: &[&str],
) {
    if requirements.len() > MAX_REQUIREMENTS {
        errs.push(
            path,
            format!(
                "at most {MAX_REQUIREMENTS} requirements are allowed, got {}",
                requirements.len()
            ),
        );
    }
    for (i, r) in requirements.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if let Some(e) = qualified_name_error(&r.key) {
            errs.push(format!("{p}.key"), e);
        } else if let Some(e) = restricted_label_error_except(&r.key, allowed) {
            errs.push(format!("{p}.key"), e);
        }
        match r.operator {
            Operator::In | Operator::NotIn => {
                if r.values.is_empty() {
                    errs.push(
                        format!("{p}.values"),
                        format!("operator {} needs at least one value", r.operator),
                    );
                }
            }
            Operator::Exists | Operator::DoesNotExist => {
                if !r.values.is_empty() {
                    errs.push(
                        format!("{p}.values"),
                        format!("operator {} takes no values", r.operator),
                    );
                }
            }
            Operator::Gt | Operator::Lt | Operator::Gte | Operator::Lte => {
                let ok = matches!(r.values.as_slice(), [v] if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && v.parse::<i64>().is_ok());
                if !ok {
                    errs.push(
                        format!("{p}.values"),
                        format!(
                            "operator {} needs exactly one non-negative integer value, got {:?}",
                            r.operator, r.values
                        ),
                    );
                }
            }
        }
        if !r.operator.is_numeric() {
            for (j, v) in r.values.iter().enumerate() {
                if let Some(e) = label_value_error(v) {
                    errs.push(format!("{p}.values[{j}]"), e);
                }
            }
        }
        if let Some(m) = r.min_values {
            if !MIN_VALUES_RANGE.contains(&m) {
                errs.push(
                    format!("{p}.minValues"),
                    format!("minValues must be between 1 and 50, got {m}"),
                );
            } else if r.operator == Operator::In
                && usize::try_from(m).is_ok_and(|m| m > r.values.len())
            {
                errs.push(
                    format!("{p}.minValues"),
                    format!("minValues {m} exceeds the {} values listed", r.values.len()),
                );
            }
        }
    }
}

fn validate_taints(errs: &mut Errors, path: &str, taints: &[Taint]) {
    for (i, t) in taints.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if let Some(e) = qualified_name_error(&t.key) {
            errs.push(format!("{p}.key"), e);
        }
        if let Some(v) = &t.value
            && let Some(e) = label_value_error(v)
        {
            errs.push(format!("{p}.value"), e);
        }
        if !matches!(
            t.effect.as_str(),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute"
        ) {
            errs.push(
                format!("{p}.effect"),
                format!(
                    "effect must be NoSchedule, PreferNoSchedule or NoExecute, got {:?}",
                    t.effect
                ),
            );
        }
    }
}

fn validate_node_class_ref(errs: &mut Errors, path: &str, r: &NodeClassRef) {
    for (field, value) in [("group", &r.group), ("kind", &r.kind), ("name", &r.name)] {
        if value.is_empty() {
            errs.push(format!("{path}.{field}"), format!("{field} is required"));
        }
    }
    if r.group.contains('/') {
        errs.push(
            format!("{path}.group"),
            format!("group must not contain '/', got {:?}", r.group),
        );
    } else if !r.group.is_empty() && r.group != labels::AWS_GROUP {
        errs.push(
            format!("{path}.group"),
            format!(
                "unsupported node class group {:?} (expected {:?})",
                r.group,
                labels::AWS_GROUP
            ),
        );
    }
    if !r.kind.is_empty() && r.kind != "EC2NodeClass" {
        errs.push(
            format!("{path}.kind"),
            format!(
                "unsupported node class kind {:?} (expected \"EC2NodeClass\")",
                r.kind
            ),
        );
    }
}

fn validate_resource_list(errs: &mut Errors, path: &str, list: &BTreeMap<String, Quantity>) {
    for (name, q) in list {
        let p = format!("{path}[{name}]");
        if let Some(e) = resource_name_error(name) {
            errs.push(p, e);
        } else if let Some(e) = quantity_error(name, q) {
            errs.push(p, e);
        }
    }
}

fn validate_string_map_keys(errs: &mut Errors, path: &str, map: &BTreeMap<String, String>) {
    for key in map.keys() {
        if let Some(e) = qualified_name_error(key) {
            errs.push(format!("{path}[{key}]"), e);
        }
    }
}

// --- NodePool ------------------------------------------------------------------------------------

impl NodePoolSpec {
    /// Checks the spec; every error names its field under `spec.`.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errs = Errors::default();
        let t = &self.template;
        let labels_path = "spec.template.metadata.labels";
        if t.metadata.labels.len() > MAX_LABELS {
            errs.push(
                labels_path,
                format!("at most {MAX_LABELS} labels are allowed"),
            );
        }
        for (k, v) in &t.metadata.labels {
            let p = format!("{labels_path}[{k}]");
            if let Some(e) = qualified_name_error(k).or_else(|| restricted_label_error(k)) {
                errs.push(p, e);
            } else if let Some(e) = label_value_error(v) {
                errs.push(p, e);
            }
        }
        validate_string_map_keys(
            &mut errs,
            "spec.template.metadata.annotations",
            &t.metadata.annotations,
        );
        let s = &t.spec;
        validate_requirements(
            &mut errs,
            "spec.template.spec.requirements",
            &s.requirements,
            &[],
        );
        validate_taints(&mut errs, "spec.template.spec.taints", &s.taints);
        validate_taints(
            &mut errs,
            "spec.template.spec.startupTaints",
            &s.startup_taints,
        );
        validate_node_class_ref(
            &mut errs,
            "spec.template.spec.nodeClassRef",
            &s.node_class_ref,
        );

        let budgets = &self.disruption.budgets;
        if budgets.len() > MAX_BUDGETS {
            errs.push(
                "spec.disruption.budgets",
                format!("at most {MAX_BUDGETS} budgets are allowed"),
            );
        }
        for (i, b) in budgets.iter().enumerate() {
            let p = format!("spec.disruption.budgets[{i}]");
            if let Some(e) = budget_nodes_error(&b.nodes) {
                errs.push(format!("{p}.nodes"), e);
            }
            if let Some(schedule) = &b.schedule
                && let Some(e) = cron_error(schedule)
            {
                errs.push(format!("{p}.schedule"), e);
            }
            match (&b.schedule, &b.duration) {
                (Some(_), None) => errs.push(
                    format!("{p}.duration"),
                    "a budget with a schedule needs a duration",
                ),
                (None, Some(_)) => errs.push(
                    format!("{p}.schedule"),
                    "a budget with a duration needs a schedule",
                ),
                _ => {}
            }
        }

        validate_resource_list(&mut errs, "spec.limits", &self.limits);
        if let Some(w) = self.weight
            && !(1..=100).contains(&w)
        {
            errs.push(
                "spec.weight",
                format!("weight must be between 1 and 100, got {w}"),
            );
        }
        if let Some(mix) = &self.capacity_mix {
            if mix.on_demand_percent().is_none() {
                errs.push(
                    "spec.capacityMix.onDemandPercentAboveBase",
                    format!(
                        "must be between {} and {}, got {}",
                        ON_DEMAND_PERCENT_RANGE.start(),
                        ON_DEMAND_PERCENT_RANGE.end(),
                        mix.on_demand_percent_above_base
                    ),
                );
            }
            if let Some(base) = &mix.on_demand_base
                && let Some(e) = quantity_error("cpu", base)
            {
                errs.push("spec.capacityMix.onDemandBase", e);
            }
            if let Some(scope) = &mix.scope {
                let path = "spec.capacityMix.scope.nodePoolSelector.matchLabels";
                for (k, v) in &scope.node_pool_selector.match_labels {
                    let p = format!("{path}[{k}]");
                    if let Some(e) = qualified_name_error(k).or_else(|| label_value_error(v)) {
                        errs.push(p, e);
                    }
                }
            }
        }
        if let Some(b) = &self.spot_blast_radius
            && b.max_pods_per_workload < 1
        {
            errs.push(
                "spec.spotBlastRadius.maxPodsPerWorkload",
                format!("must be at least 1, got {}", b.max_pods_per_workload),
            );
        }
        errs.finish()
    }
}

impl NodePool {
    /// Checks the name (it becomes the `stowage.dev/nodepool` label value, so at most 63
    /// characters) and the spec (see [`NodePoolSpec::validate`]).
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = match self.spec.validate() {
            Ok(()) => Vec::new(),
            Err(e) => e,
        };
        if let Some(name) = &self.metadata.name
            && name.len() > 63
        {
            errors.insert(
                0,
                FieldError {
                    path: "metadata.name".to_string(),
                    message: format!(
                        "a NodePool name is a label value and may have at most 63 characters, got {}",
                        name.len()
                    ),
                },
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

// --- NodeClaim -----------------------------------------------------------------------------------

impl NodeClaimSpec {
    /// Checks the spec; every error names its field under `spec.`.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errs = Errors::default();
        validate_requirements(
            &mut errs,
            "spec.requirements",
            &self.requirements,
            NODECLAIM_REQUIREMENT_LABELS,
        );
        validate_resource_list(
            &mut errs,
            "spec.resources.requests",
            &self.resources.requests,
        );
        validate_taints(&mut errs, "spec.taints", &self.taints);
        validate_taints(&mut errs, "spec.startupTaints", &self.startup_taints);
        validate_node_class_ref(&mut errs, "spec.nodeClassRef", &self.node_class_ref);
        errs.finish()
    }
}

impl NodeClaim {
    /// Checks the spec (see [`NodeClaimSpec::validate`]).
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        self.spec.validate()
    }
}

// --- EC2NodeClass ----------------------------------------------------------------------------------

/// Tag keys users may not set on instances: Stowage and EKS own them.
pub const RESTRICTED_TAG_KEYS: &[&str] = &[
    "eks:eks-cluster-name",
    labels::NODEPOOL,
    labels::NODECLAIM,
    labels::EC2NODECLASS,
];
/// Tag key prefixes users may not set.
pub const RESTRICTED_TAG_PREFIXES: &[&str] = &["kubernetes.io/cluster/"];

fn aws_id_ok(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

fn validate_tags_non_empty(errs: &mut Errors, path: &str, tags: &BTreeMap<String, String>) {
    for (k, v) in tags {
        if k.is_empty() {
            errs.push(format!("{path}[]"), "tag keys must not be empty");
        } else if v.is_empty() {
            errs.push(format!("{path}[{k}]"), "tag values must not be empty");
        }
    }
}

fn alias_error(alias: &str) -> Option<String> {
    let Some((family, version)) = alias.split_once('@') else {
        return Some(format!(
            "alias {alias:?} must be family@version, e.g. al2023@latest"
        ));
    };
    if !AMI_ALIAS_FAMILIES.contains(&family) {
        return Some(format!(
            "unknown AMI family {family:?} in alias (expected one of {})",
            AMI_ALIAS_FAMILIES.join(", ")
        ));
    }
    let version_ok = version == "latest"
        || (version.len() > 1
            && version.starts_with('v')
            && version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')));
    (!version_ok).then(|| {
        format!("alias version {version:?} must be \"latest\" or start with 'v' (e.g. v1.30.0)")
    })
}

impl EC2NodeClassSpec {
    /// Checks the spec; every error names its field under `spec.`.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errs = Errors::default();
        self.validate_amis(&mut errs);
        self.validate_network(&mut errs);

        match (&self.role, &self.instance_profile) {
            (Some(_), Some(_)) => errs.push(
                "spec.role",
                "role and instanceProfile are mutually exclusive; set exactly one",
            ),
            (None, None) => errs.push("spec.role", "one of role or instanceProfile is required"),
            (Some(r), None) if r.is_empty() => errs.push("spec.role", "role must not be empty"),
            (None, Some(p)) if p.is_empty() => {
                errs.push("spec.instanceProfile", "instanceProfile must not be empty")
            }
            _ => {}
        }

        let roots = self
            .block_device_mappings
            .iter()
            .filter(|m| m.root_volume)
            .count();
        if roots > 1 {
            errs.push(
                "spec.blockDeviceMappings",
                format!("at most one mapping may be the root volume, got {roots}"),
            );
        }
        if self.block_device_mappings.len() > MAX_BLOCK_DEVICE_MAPPINGS {
            errs.push(
                "spec.blockDeviceMappings",
                format!("at most {MAX_BLOCK_DEVICE_MAPPINGS} mappings are allowed"),
            );
        }
        for (i, m) in self.block_device_mappings.iter().enumerate() {
            let p = format!("spec.blockDeviceMappings[{i}]");
            let Some(ebs) = &m.ebs else { continue };
            if ebs.volume_size.is_none() && ebs.snapshot_id.is_none() {
                errs.push(
                    format!("{p}.ebs"),
                    "one of volumeSize or snapshotID is required",
                );
            }
            if let Some(size) = &ebs.volume_size {
                match quantity::parse_value(&size.0) {
                    Ok(bytes) if (1 << 30..=64 << 40).contains(&bytes) => {}
                    Ok(_) => errs.push(
                        format!("{p}.ebs.volumeSize"),
                        format!("{:?} must be between 1Gi and 64Ti", size.0),
                    ),
                    Err(e) => errs.push(format!("{p}.ebs.volumeSize"), e.to_string()),
                }
            }
            if let Some(t) = &ebs.volume_type
                && !matches!(
                    t.as_str(),
                    "standard" | "io1" | "io2" | "gp2" | "sc1" | "st1" | "gp3"
                )
            {
                errs.push(
                    format!("{p}.ebs.volumeType"),
                    format!("unknown volume type {t:?}"),
                );
            }
            for (field, v) in [("iops", ebs.iops), ("throughput", ebs.throughput)] {
                if v.is_some_and(|v| v < 0) {
                    errs.push(
                        format!("{p}.ebs.{field}"),
                        format!("{field} must not be negative"),
                    );
                }
            }
        }

        let md = &self.metadata_options;
        let p = "spec.metadataOptions";
        for (field, value) in [
            ("httpEndpoint", &md.http_endpoint),
            ("httpProtocolIPv6", &md.http_protocol_ipv6),
        ] {
            if !matches!(value.as_str(), "enabled" | "disabled") {
                errs.push(
                    format!("{p}.{field}"),
                    format!("must be enabled or disabled, got {value:?}"),
                );
            }
        }
        if !(1..=64).contains(&md.http_put_response_hop_limit) {
            errs.push(
                format!("{p}.httpPutResponseHopLimit"),
                format!(
                    "must be between 1 and 64, got {}",
                    md.http_put_response_hop_limit
                ),
            );
        }
        if !matches!(md.http_tokens.as_str(), "required" | "optional") {
            errs.push(
                format!("{p}.httpTokens"),
                format!("must be required or optional, got {:?}", md.http_tokens),
            );
        }

        if let Some(k) = &self.kubelet {
            self.validate_kubelet(&mut errs, k);
        }

        for k in self.tags.keys() {
            if k.is_empty() {
                errs.push("spec.tags[]", "tag keys must not be empty");
            } else if RESTRICTED_TAG_KEYS.contains(&k.as_str())
                || RESTRICTED_TAG_PREFIXES.iter().any(|p| k.starts_with(p))
            {
                errs.push(
                    format!("spec.tags[{k}]"),
                    format!("tag {k:?} is restricted: Stowage or EKS sets it"),
                );
            }
        }
        errs.finish()
    }

    fn validate_amis(&self, errs: &mut Errors) {
        let terms = &self.ami_selector_terms;
        let path = "spec.amiSelectorTerms";
        if terms.is_empty() {
            errs.push(path, "at least one AMI selector term is required");
        } else if terms.len() > MAX_SELECTOR_TERMS {
            errs.push(
                path,
                format!("at most {MAX_SELECTOR_TERMS} terms are allowed"),
            );
        }
        let mut alias_family = None;
        for (i, t) in terms.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let others =
                t.id.is_some() || t.name.is_some() || t.owner.is_some() || !t.tags.is_empty();
            if let Some(alias) = &t.alias {
                if others {
                    errs.push(
                        format!("{p}.alias"),
                        "alias cannot be combined with id, name, owner or tags",
                    );
                }
                if terms.len() > 1 {
                    errs.push(
                        format!("{p}.alias"),
                        "an alias term must be the only AMI selector term",
                    );
                }
                match alias_error(alias) {
                    Some(e) => errs.push(format!("{p}.alias"), e),
                    None => {
                        alias_family = t
                            .alias_parts()
                            .and_then(|(f, _)| AmiFamily::from_alias_family(f))
                    }
                }
                continue;
            }
            if let Some(id) = &t.id {
                if t.name.is_some() || t.owner.is_some() || !t.tags.is_empty() {
                    errs.push(
                        format!("{p}.id"),
                        "id cannot be combined with name, owner or tags",
                    );
                }
                if !aws_id_ok(id, "ami-") {
                    errs.push(
                        format!("{p}.id"),
                        format!("{id:?} is not an AMI id (ami-<hex>)"),
                    );
                }
            } else if t.name.is_none() && t.tags.is_empty() {
                errs.push(p.clone(), "a term needs one of alias, id, name or tags");
            }
            validate_tags_non_empty(errs, &format!("{p}.tags"), &t.tags);
        }
        match (alias_family, self.ami_family) {
            (None, None) if !terms.iter().any(|t| t.alias.is_some()) => {
                errs.push(
                    "spec.amiFamily",
                    "amiFamily is required when no amiSelectorTerm has an alias",
                );
            }
            (Some(from_alias), Some(f)) if f != from_alias && f != AmiFamily::Custom => {
                errs.push(
                    "spec.amiFamily",
                    format!("amiFamily {f:?} contradicts the alias family {from_alias:?}"),
                );
            }
            _ => {}
        }
    }

    fn validate_network(&self, errs: &mut Errors) {
        let path = "spec.subnetSelectorTerms";
        if self.subnet_selector_terms.is_empty() {
            errs.push(path, "at least one subnet selector term is required");
        } else if self.subnet_selector_terms.len() > MAX_SELECTOR_TERMS {
            errs.push(
                path,
                format!("at most {MAX_SELECTOR_TERMS} terms are allowed"),
            );
        }
        for (i, t) in self.subnet_selector_terms.iter().enumerate() {
            let p = format!("{path}[{i}]");
            match (&t.id, t.tags.is_empty()) {
                (Some(_), false) => errs.push(format!("{p}.id"), "id cannot be combined with tags"),
                (None, true) => errs.push(p.clone(), "a term needs an id or tags"),
                (Some(id), true) if !aws_id_ok(id, "subnet-") => errs.push(
                    format!("{p}.id"),
                    format!("{id:?} is not a subnet id (subnet-<hex>)"),
                ),
                _ => {}
            }
            validate_tags_non_empty(errs, &format!("{p}.tags"), &t.tags);
        }

        let path = "spec.securityGroupSelectorTerms";
        if self.security_group_selector_terms.is_empty() {
            errs.push(
                path,
                "at least one security group selector term is required",
            );
        } else if self.security_group_selector_terms.len() > MAX_SELECTOR_TERMS {
            errs.push(
                path,
                format!("at most {MAX_SELECTOR_TERMS} terms are allowed"),
            );
        }
        for (i, t) in self.security_group_selector_terms.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let set = usize::from(t.id.is_some())
                + usize::from(t.name.is_some())
                + usize::from(!t.tags.is_empty());
            if set == 0 {
                errs.push(p.clone(), "a term needs one of id, name or tags");
            } else if set > 1 {
                let field = if t.id.is_some() { "id" } else { "name" };
                errs.push(
                    format!("{p}.{field}"),
                    "id, name and tags are mutually exclusive",
                );
            }
            if let Some(id) = &t.id
                && !aws_id_ok(id, "sg-")
            {
                errs.push(
                    format!("{p}.id"),
                    format!("{id:?} is not a security group id (sg-<hex>)"),
                );
            }
            validate_tags_non_empty(errs, &format!("{p}.tags"), &t.tags);
        }

        let path = "spec.capacityReservationSelectorTerms";
        if !self.capacity_reservation_selector_terms.is_empty() {
            errs.push(
                path,
                "not supported yet: capacity reservations are neither discovered nor launched into; remove the field",
            );
        }
        if self.capacity_reservation_selector_terms.len() > MAX_SELECTOR_TERMS {
            errs.push(
                path,
                format!("at most {MAX_SELECTOR_TERMS} terms are allowed"),
            );
        }
        for (i, t) in self.capacity_reservation_selector_terms.iter().enumerate() {
            let p = format!("{path}[{i}]");
            match (&t.id, t.tags.is_empty()) {
                (Some(_), false) => errs.push(format!("{p}.id"), "id cannot be combined with tags"),
                (None, true) => errs.push(p.clone(), "a term needs an id or tags"),
                _ => {}
            }
            if let Some(id) = &t.id {
                if t.owner_id.is_some() {
                    errs.push(format!("{p}.ownerID"), "ownerID cannot be combined with id");
                }
                if !aws_id_ok(id, "cr-") {
                    errs.push(
                        format!("{p}.id"),
                        format!("{id:?} is not a capacity reservation id (cr-<hex>)"),
                    );
                }
            }
            if let Some(owner) = &t.owner_id
                && !(owner.len() == 12 && owner.bytes().all(|b| b.is_ascii_digit()))
            {
                errs.push(
                    format!("{p}.ownerID"),
                    format!("{owner:?} is not a 12-digit account id"),
                );
            }
            validate_tags_non_empty(errs, &format!("{p}.tags"), &t.tags);
        }
    }

    fn validate_kubelet(&self, errs: &mut Errors, k: &crate::ec2nodeclass::KubeletConfiguration) {
        let p = "spec.kubelet";
        if k.max_pods.is_some_and(|v| v < 1) {
            errs.push(format!("{p}.maxPods"), "maxPods must be at least 1");
        }
        if k.pods_per_core.is_some_and(|v| v < 0) {
            errs.push(
                format!("{p}.podsPerCore"),
                "podsPerCore must not be negative",
            );
        }
        for (field, map) in [
            ("systemReserved", &k.system_reserved),
            ("kubeReserved", &k.kube_reserved),
        ] {
            for (name, value) in map {
                let path = format!("{p}.{field}[{name}]");
                if !matches!(
                    name.as_str(),
                    "cpu" | "memory" | "ephemeral-storage" | "pid"
                ) {
                    errs.push(path, format!("unknown resource {name:?} (expected cpu, memory, ephemeral-storage or pid)"));
                } else if let Some(e) = quantity_error(name, &Quantity(value.clone())) {
                    errs.push(path, e);
                }
            }
        }
        for (signal, value) in &k.eviction_hard {
            let path = format!("{p}.evictionHard[{signal}]");
            const SIGNALS: &[&str] = &[
                "memory.available",
                "nodefs.available",
                "nodefs.inodesFree",
                "imagefs.available",
                "imagefs.inodesFree",
                "pid.available",
            ];
            if !SIGNALS.contains(&signal.as_str()) {
                errs.push(path, format!("unknown eviction signal {signal:?}"));
                continue;
            }
            let ok = match value.strip_suffix('%') {
                Some(p) => p.parse::<f64>().is_ok_and(|p| (0.0..=100.0).contains(&p)),
                None => quantity::parse_value(value).is_ok_and(|v| v >= 0),
            };
            if !ok {
                errs.push(
                    path,
                    format!("{value:?} is neither a percentage (0%..100%) nor a quantity"),
                );
            }
        }
        for (i, ip) in k.cluster_dns.iter().enumerate() {
            if ip.parse::<std::net::IpAddr>().is_err() {
                errs.push(
                    format!("{p}.clusterDNS[{i}]"),
                    format!("{ip:?} is not an IP address"),
                );
            }
        }
    }
}

impl EC2NodeClass {
    /// Checks the spec (see [`EC2NodeClassSpec::validate`]).
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        self.spec.validate()
    }
}
