//! CustomResourceDefinitions for NodePool, NodeClaim and EC2NodeClass, generated from the Rust
//! types and finished by hand-written rules.
//!
//! Key decision: the schema comes from the types (kube + schemars), so a field can never exist in
//! Rust and not in the CRD; what a derive cannot say — CEL rules, bounds, patterns, concise
//! descriptions of Kubernetes quantities, formats the API server rejects — is added here by
//! path, in one place, next to the Rust validation it mirrors (`crate::validation`). Every rule
//! path is checked to exist, so a renamed field breaks generation instead of silently dropping
//! a rule.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Map, Value, json};

use crate::ec2nodeclass::EC2NodeClass;
use crate::labels;
use crate::nodeclaim::NodeClaim;
use crate::nodepool::{
    BUDGET_NODES_PATTERN, BUDGET_SCHEDULE_PATTERN, NodePool, ON_DEMAND_PERCENT_RANGE,
};
use crate::validation::{
    ALLOWED_LABEL_DOMAINS, MAX_BLOCK_DEVICE_MAPPINGS, MAX_BUDGETS, MAX_LABELS,
    MAX_REQUIREMENT_VALUES, MAX_REQUIREMENTS, MAX_SELECTOR_TERMS, NODECLAIM_REQUIREMENT_LABELS,
    RESTRICTED_LABEL_DOMAINS, RESTRICTED_LABELS, RESTRICTED_TAG_KEYS,
};

/// The error for a CRD that could not be generated (a rule names a field that does not exist).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to find schema path {path} in the {kind} CRD")]
    FindSchemaPath { kind: &'static str, path: String },
    #[error("failed to convert the {kind} CRD")]
    ConvertCrd {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to render the {kind} CRD as YAML")]
    RenderYaml {
        kind: String,
        #[source]
        source: serde_saphyr::SerializeError,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The Kubernetes quantity grammar without a minus sign: no quantity in these APIs may be
/// negative.
pub const QUANTITY_PATTERN: &str = r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$";
/// A label key: optional DNS-subdomain prefix and `/`, then a 63-character name.
pub const QUALIFIED_NAME_PATTERN: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
/// A label value (may be empty).
pub const LABEL_VALUE_PATTERN: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";
/// An AMI alias.
pub const ALIAS_PATTERN: &str = r"^(al2023|bottlerocket|al2)@(latest|v[A-Za-z0-9._-]+)$";

/// Formats the API server understands; anything else schemars emits (`uint32`, ...) is dropped.
const KNOWN_FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "binary",
    "date",
    "date-time",
    "duration",
    "password",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
];

/// The `openAPIV3Schema` of the CRD serving `group`/`kind` (as JSON, the form
/// [`crate::openapi`] reads), or `None` when Stowage serves no such kind.
pub fn schema(group: &str, kind: &str) -> Option<Value> {
    all()
        .ok()?
        .into_iter()
        .find(|c| c.spec.group == group && c.spec.names.kind == kind)
        .and_then(|c| serde_json::to_value(c).ok())?
        .pointer("/spec/versions/0/schema/openAPIV3Schema")
        .cloned()
}

/// Every CRD Stowage serves, in a stable order.
pub fn all() -> Result<Vec<CustomResourceDefinition>> {
    Ok(vec![nodepool()?, nodeclaim()?, ec2nodeclass()?])
}

/// The file name `stowage crds --out-dir` writes a CRD to: `<group>_<plural>.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// One CRD as a YAML document.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String> {
    serde_saphyr::to_string(crd).map_err(|source| Error::RenderYaml {
        kind: crd.spec.names.kind.clone(),
        source,
    })
}

/// All CRDs as one multi-document YAML stream.
pub fn all_to_yaml() -> Result<String> {
    let mut out = String::new();
    for crd in all()? {
        out.push_str("---\n");
        out.push_str(&to_yaml(&crd)?);
    }
    Ok(out)
}

// --- Post-processing -------------------------------------------------------------------------------

struct Patcher {
    kind: &'static str,
    crd: Value,
}

impl Patcher {
    fn new(kind: &'static str, crd: CustomResourceDefinition) -> Result<Self> {
        let crd = serde_json::to_value(crd).map_err(|source| Error::ConvertCrd { kind, source })?;
        let mut p = Patcher { kind, crd };
        tidy(p.root()?);
        Ok(p)
    }

    fn root(&mut self) -> Result<&mut Value> {
        let kind = self.kind;
        self.crd
            .pointer_mut("/spec/versions/0/schema/openAPIV3Schema")
            .ok_or(Error::FindSchemaPath {
                kind,
                path: "openAPIV3Schema".to_string(),
            })
    }

    /// The schema node at a dotted path: field names, `[]` for list items, `{}` for map values.
    fn at(&mut self, path: &str) -> Result<&mut Map<String, Value>> {
        let kind = self.kind;
        let missing = || Error::FindSchemaPath {
            kind,
            path: path.to_string(),
        };
        let mut node = self.root()?;
        if !path.is_empty() {
            for part in path.split('.') {
                node = match part {
                    "[]" => node.get_mut("items"),
                    "{}" => node.get_mut("additionalProperties"),
                    field => node.get_mut("properties").and_then(|p| p.get_mut(field)),
                }
                .ok_or_else(missing)?;
            }
        }
        node.as_object_mut().ok_or_else(missing)
    }

    /// Sets schema keywords at `path`.
    fn set(&mut self, path: &str, keywords: Value) -> Result<&mut Self> {
        let node = self.at(path)?;
        if let Value::Object(k) = keywords {
            for (key, value) in k {
                node.insert(key, value);
            }
        }
        Ok(self)
    }

    /// Adds a CEL rule at `path`.
    fn rule(&mut self, path: &str, rule: &str, message: &str) -> Result<&mut Self> {
        self.rule_with(path, json!({"rule": rule, "message": message}))
    }

    fn rule_with(&mut self, path: &str, rule: Value) -> Result<&mut Self> {
        let node = self.at(path)?;
        let rules = node
            .entry("x-kubernetes-validations")
            .or_insert_with(|| json!([]));
        if let Value::Array(list) = rules {
            list.push(rule);
        }
        Ok(self)
    }

    fn finish(self) -> Result<CustomResourceDefinition> {
        let kind = self.kind;
        serde_json::from_value(self.crd).map_err(|source| Error::ConvertCrd { kind, source })
    }
}

/// Marks `fields` of the object schema `node` required. A required field has no `default` in
/// the schema: the API server checks every default against its own schema, and an empty default
/// beside `minItems: 1` makes it refuse the whole CRD.
fn add_required(node: &mut Map<String, Value>, fields: &[&str]) {
    if let Some(Value::Object(props)) = node.get_mut("properties") {
        for f in fields {
            if let Some(Value::Object(prop)) = props.get_mut(*f) {
                prop.remove("default");
            }
        }
    }
    let required = node.entry("required").or_insert_with(|| json!([]));
    if let Value::Array(list) = required {
        for f in fields {
            if !list.iter().any(|v| v == f) {
                list.push(json!(f));
            }
        }
        list.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    }
}

/// Generic clean-ups over the whole schema: concise quantity schemas in the shape the API
/// server's own types use, unknown formats removed.
fn tidy(node: &mut Value) {
    let Value::Object(map) = node else { return };
    // Every int-or-string field of the Stowage types is a Quantity (no IntOrString is used).
    if map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        let upstream_text = map
            .get("description")
            .and_then(Value::as_str)
            .is_some_and(|d| d.starts_with("Quantity is a fixed-point"));
        if upstream_text {
            map.remove("description");
        }
        map.insert("pattern".into(), json!(QUANTITY_PATTERN));
        map.insert(
            "anyOf".into(),
            json!([{"type": "integer"}, {"type": "string"}]),
        );
    }
    if let Some(Value::String(format)) = map.get("format")
        && !KNOWN_FORMATS.contains(&format.as_str())
    {
        map.remove("format");
    }
    for (key, child) in map.iter_mut() {
        match key.as_str() {
            // Literal values, not schemas.
            "default" | "enum" | "example" | "x-kubernetes-validations" | "required" => {}
            "properties" => {
                if let Value::Object(props) = child {
                    props.values_mut().for_each(tidy);
                }
            }
            _ => tidy(child),
        }
    }
}

/// CEL that is true when `k` (a CEL expression of a label key) is a key users may set or
/// require: not restricted outright, and outside the restricted domains unless well known or in
/// an allowed subdomain.
/// `also_allowed` exempts labels from [`RESTRICTED_LABELS`].
fn label_key_allowed(k: &str, also_allowed: &[&str]) -> String {
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|i| format!("'{i}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let domains = |ds: &[&str]| {
        ds.iter()
            .map(|d| d.replace('.', "\\\\."))
            .collect::<Vec<_>>()
            .join("|")
    };
    let restricted: Vec<&str> = RESTRICTED_LABELS
        .iter()
        .copied()
        .filter(|l| !also_allowed.contains(l))
        .collect();
    let well_known: Vec<&str> = labels::WELL_KNOWN
        .iter()
        .copied()
        .filter(|l| !restricted.contains(l))
        .collect();
    format!(
        "!({k} in [{restricted}]) && ({k} in [{well_known}] || !{k}.matches('^([^/]+\\\\.)?({rd})/') || {k}.matches('^([^/]+\\\\.)?({ad})/'))",
        restricted = list(&restricted),
        well_known = list(&well_known),
        rd = domains(RESTRICTED_LABEL_DOMAINS),
        ad = domains(ALLOWED_LABEL_DOMAINS),
    )
}

/// CEL: every key of a map is a qualified name (`team`, `cpu`, `nvidia.com/gpu`).
const QUALIFIED_KEYS_RULE: &str = "self.all(k, k.size() <= 316 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))";

const LABEL_KEY_MESSAGE: &str = "label is restricted: stowage.dev/nodepool and kubernetes.io/hostname are set by Stowage, and the stowage.dev, kubernetes.io and k8s.io domains allow only their well-known labels (and node.kubernetes.io, node-restriction.kubernetes.io, kops.k8s.io)";

/// Rules on a requirement list at `path` (NodePool template and NodeClaim share them).
fn requirements_rules(p: &mut Patcher, path: &str, also_allowed: &[&str]) -> Result<()> {
    let item = format!("{path}.[]");
    p.set(path, json!({"maxItems": MAX_REQUIREMENTS}))?
        .set(&format!("{item}.key"), json!({"maxLength": 316, "pattern": QUALIFIED_NAME_PATTERN}))?
        .set(&format!("{item}.values"), json!({"maxItems": MAX_REQUIREMENT_VALUES}))?
        .set(&format!("{item}.values.[]"), json!({"maxLength": 63}))?
        .set(&format!("{item}.minValues"), json!({"minimum": 1, "maximum": 50}))?
        .rule(&item, &label_key_allowed("self.key", also_allowed), LABEL_KEY_MESSAGE)?
        .rule(
            &item,
            "(self.operator == 'In' || self.operator == 'NotIn') ? has(self.values) && self.values.size() != 0 : true",
            "operators In and NotIn need at least one value",
        )?
        .rule(
            &item,
            "(self.operator == 'Exists' || self.operator == 'DoesNotExist') ? !has(self.values) || self.values.size() == 0 : true",
            "operators Exists and DoesNotExist take no values",
        )?
        .rule(
            &item,
            "(self.operator == 'Gt' || self.operator == 'Lt' || self.operator == 'Gte' || self.operator == 'Lte') ? has(self.values) && self.values.size() == 1 && self.values[0].matches('^[0-9]+$') : true",
            "operators Gt, Lt, Gte and Lte need exactly one non-negative integer value",
        )?
        .rule(
            &item,
            "(self.operator == 'In' && has(self.minValues)) ? has(self.values) && self.values.size() >= self.minValues : true",
            "minValues must not exceed the number of values of an In requirement",
        )?;
    Ok(())
}

fn taints_rules(p: &mut Patcher, path: &str) -> Result<()> {
    p.set(
        &format!("{path}.[].key"),
        json!({"minLength": 1, "maxLength": 316, "pattern": QUALIFIED_NAME_PATTERN}),
    )?
    .set(
        &format!("{path}.[].value"),
        json!({"maxLength": 63, "pattern": LABEL_VALUE_PATTERN}),
    )?
    .set(
        &format!("{path}.[].effect"),
        json!({"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]}),
    )?;
    Ok(())
}

fn node_class_ref_rules(p: &mut Patcher, path: &str) -> Result<()> {
    p.set(
        &format!("{path}.group"),
        json!({"minLength": 1, "maxLength": 253, "pattern": "^[^/]*$"}),
    )?
    .set(
        &format!("{path}.kind"),
        json!({"minLength": 1, "maxLength": 63}),
    )?
    .set(
        &format!("{path}.name"),
        json!({"minLength": 1, "maxLength": 253}),
    )?
    .rule(
        path,
        "self.group == oldSelf.group",
        "nodeClassRef.group is immutable",
    )?
    .rule(
        path,
        "self.kind == oldSelf.kind",
        "nodeClassRef.kind is immutable",
    )?;
    Ok(())
}

fn nodepool() -> Result<CustomResourceDefinition> {
    let mut p = Patcher::new("NodePool", NodePool::crd())?;
    let spec = "spec.template.spec";
    p.rule(
        "",
        "self.metadata.name.size() <= 63",
        "a NodePool name is a label value and may have at most 63 characters",
    )?;
    p.set(
        "spec.template.metadata.labels",
        json!({"maxProperties": MAX_LABELS}),
    )?
    .set(
        "spec.template.metadata.labels.{}",
        json!({"maxLength": 63, "pattern": LABEL_VALUE_PATTERN}),
    )?
    .rule(
        "spec.template.metadata.labels",
        QUALIFIED_KEYS_RULE,
        "label keys must be qualified names",
    )?
    .rule(
        "spec.template.metadata.labels",
        &format!("self.all(k, {})", label_key_allowed("k", &[])),
        LABEL_KEY_MESSAGE,
    )?;
    requirements_rules(&mut p, &format!("{spec}.requirements"), &[])?;
    taints_rules(&mut p, &format!("{spec}.taints"))?;
    taints_rules(&mut p, &format!("{spec}.startupTaints"))?;
    node_class_ref_rules(&mut p, &format!("{spec}.nodeClassRef"))?;
    p.set("spec.disruption.budgets", json!({"maxItems": MAX_BUDGETS}))?
        .rule(
            "spec.disruption.budgets",
            "self.all(x, has(x.schedule) == has(x.duration))",
            "a budget needs both schedule and duration, or neither",
        )?
        .set(
            "spec.disruption.budgets.[].nodes",
            json!({"pattern": BUDGET_NODES_PATTERN}),
        )?
        .set(
            "spec.disruption.budgets.[].schedule",
            json!({"pattern": BUDGET_SCHEDULE_PATTERN}),
        )?
        .set(
            "spec.disruption.budgets.[].duration",
            json!({"pattern": "^((([0-9]+(h|m))|([0-9]+h[0-9]+m))(0s)?)$"}),
        )?
        .set("spec.disruption.budgets.[].reasons", json!({"maxItems": 3}))?
        .set("spec.limits", json!({"maxProperties": 64}))?
        .rule(
            "spec.limits",
            QUALIFIED_KEYS_RULE,
            "resource names must be qualified names",
        )?
        .set("spec.weight", json!({"minimum": 1, "maximum": 100}))?
        .set(
            "spec.capacityMix.onDemandPercentAboveBase",
            json!({
                "minimum": ON_DEMAND_PERCENT_RANGE.start(),
                "maximum": ON_DEMAND_PERCENT_RANGE.end(),
            }),
        )?
        .set(
            "spec.capacityMix.scope.nodePoolSelector.matchLabels",
            json!({"maxProperties": MAX_LABELS}),
        )?
        .set(
            "spec.capacityMix.scope.nodePoolSelector.matchLabels.{}",
            json!({"maxLength": 63, "pattern": LABEL_VALUE_PATTERN}),
        )?
        .rule(
            "spec.capacityMix.scope.nodePoolSelector.matchLabels",
            QUALIFIED_KEYS_RULE,
            "label keys must be qualified names",
        )?
        .set(
            "spec.spotBlastRadius.maxPodsPerWorkload",
            json!({"minimum": 1}),
        )?;
    p.finish()
}

fn nodeclaim() -> Result<CustomResourceDefinition> {
    let mut p = Patcher::new("NodeClaim", NodeClaim::crd())?;
    requirements_rules(&mut p, "spec.requirements", NODECLAIM_REQUIREMENT_LABELS)?;
    p.set("spec.resources.requests", json!({"maxProperties": 64}))?
        .rule(
            "spec.resources.requests",
            QUALIFIED_KEYS_RULE,
            "resource names must be qualified names",
        )?;
    taints_rules(&mut p, "spec.taints")?;
    taints_rules(&mut p, "spec.startupTaints")?;
    node_class_ref_rules(&mut p, "spec.nodeClassRef")?;
    p.rule("spec", "self == oldSelf", "spec is immutable")?;
    p.finish()
}

fn ec2nodeclass() -> Result<CustomResourceDefinition> {
    let mut p = Patcher::new("EC2NodeClass", EC2NodeClass::crd())?;
    let tag_map = |p: &mut Patcher, path: &str| -> Result<()> {
        p.set(path, json!({"maxProperties": 20}))?
            .set(&format!("{path}.{{}}"), json!({"minLength": 1}))?
            .rule(path, "self.all(k, k != '')", "tag keys must not be empty")?;
        Ok(())
    };
    // The selector lists default to empty in Rust (handy in tests) but are required of users.
    add_required(
        p.at("spec")?,
        &[
            "amiSelectorTerms",
            "subnetSelectorTerms",
            "securityGroupSelectorTerms",
        ],
    );
    // AMIs.
    let ami = "spec.amiSelectorTerms";
    p.set(ami, json!({"minItems": 1, "maxItems": MAX_SELECTOR_TERMS}))?
        .set(&format!("{ami}.[].alias"), json!({"maxLength": 64, "pattern": ALIAS_PATTERN}))?
        .set(&format!("{ami}.[].id"), json!({"pattern": "^ami-[0-9a-z]+$"}))?
        .rule(
            &format!("{ami}.[]"),
            "has(self.alias) || has(self.id) || has(self.name) || has(self.tags)",
            "a term needs one of alias, id, name or tags",
        )?
        .rule(
            &format!("{ami}.[]"),
            "has(self.alias) ? !(has(self.id) || has(self.name) || has(self.owner) || has(self.tags)) : true",
            "alias cannot be combined with id, name, owner or tags",
        )?
        .rule(
            &format!("{ami}.[]"),
            "has(self.id) ? !(has(self.name) || has(self.owner) || has(self.tags)) : true",
            "id cannot be combined with name, owner or tags",
        )?
        .rule(ami, "self.exists(x, has(x.alias)) ? self.size() == 1 : true", "an alias term must be the only AMI selector term")?;
    tag_map(&mut p, &format!("{ami}.[].tags"))?;
    p.rule(
        "spec",
        "has(self.amiFamily) || self.amiSelectorTerms.exists(x, has(x.alias))",
        "amiFamily is required when no amiSelectorTerm has an alias",
    )?
    .rule(
        "spec",
        "(has(self.amiFamily) && self.amiFamily != 'Custom' && self.amiSelectorTerms.exists(x, has(x.alias))) ? self.amiSelectorTerms.exists(x, has(x.alias) && x.alias.startsWith(self.amiFamily == 'AL2023' ? 'al2023@' : self.amiFamily == 'AL2' ? 'al2@' : 'bottlerocket@')) : true",
        "amiFamily must match the alias family (or be Custom)",
    )?;
    // Subnets, security groups, capacity reservations.
    let subnets = "spec.subnetSelectorTerms";
    p.set(
        subnets,
        json!({"minItems": 1, "maxItems": MAX_SELECTOR_TERMS}),
    )?
    .set(
        &format!("{subnets}.[].id"),
        json!({"pattern": "^subnet-[0-9a-z]+$"}),
    )?
    .rule(
        &format!("{subnets}.[]"),
        "has(self.id) != has(self.tags)",
        "a term needs exactly one of id or tags",
    )?;
    tag_map(&mut p, &format!("{subnets}.[].tags"))?;
    let sgs = "spec.securityGroupSelectorTerms";
    p.set(sgs, json!({"minItems": 1, "maxItems": MAX_SELECTOR_TERMS}))?
        .set(
            &format!("{sgs}.[].id"),
            json!({"pattern": "^sg-[0-9a-z]+$"}),
        )?
        .rule(
            &format!("{sgs}.[]"),
            "(has(self.id) ? 1 : 0) + (has(self.name) ? 1 : 0) + (has(self.tags) ? 1 : 0) == 1",
            "a term needs exactly one of id, name or tags",
        )?;
    tag_map(&mut p, &format!("{sgs}.[].tags"))?;
    let crs = "spec.capacityReservationSelectorTerms";
    p.set(crs, json!({"maxItems": MAX_SELECTOR_TERMS}))?
        .set(
            &format!("{crs}.[].id"),
            json!({"pattern": "^cr-[0-9a-z]+$"}),
        )?
        .set(
            &format!("{crs}.[].ownerID"),
            json!({"pattern": "^[0-9]{12}$"}),
        )?
        .rule(
            &format!("{crs}.[]"),
            "has(self.id) != has(self.tags)",
            "a term needs exactly one of id or tags",
        )?
        .rule(
            &format!("{crs}.[]"),
            "has(self.id) ? !has(self.ownerID) : true",
            "ownerID cannot be combined with id",
        )?;
    tag_map(&mut p, &format!("{crs}.[].tags"))?;
    // IAM.
    p.set("spec.role", json!({"minLength": 1}))?
        .set("spec.instanceProfile", json!({"minLength": 1}))?
        .rule(
            "spec",
            "has(self.role) != has(self.instanceProfile)",
            "exactly one of role or instanceProfile must be set",
        )?;
    // Disks.
    let bdm = "spec.blockDeviceMappings";
    p.set(bdm, json!({"maxItems": MAX_BLOCK_DEVICE_MAPPINGS}))?
        .rule(
            bdm,
            "self.filter(x, has(x.rootVolume) && x.rootVolume).size() <= 1",
            "at most one mapping may be the root volume",
        )?
        .rule(
            &format!("{bdm}.[].ebs"),
            "has(self.volumeSize) || has(self.snapshotID)",
            "one of volumeSize or snapshotID is required",
        )?
        .set(
            &format!("{bdm}.[].ebs.volumeType"),
            json!({"enum": ["standard", "io1", "io2", "gp2", "sc1", "st1", "gp3"]}),
        )?
        .set(&format!("{bdm}.[].ebs.iops"), json!({"minimum": 0}))?
        .set(&format!("{bdm}.[].ebs.throughput"), json!({"minimum": 0}))?;
    // Instance metadata.
    let md = "spec.metadataOptions";
    p.set(
        &format!("{md}.httpEndpoint"),
        json!({"enum": ["enabled", "disabled"]}),
    )?
    .set(
        &format!("{md}.httpProtocolIPv6"),
        json!({"enum": ["enabled", "disabled"]}),
    )?
    .set(
        &format!("{md}.httpPutResponseHopLimit"),
        json!({"minimum": 1, "maximum": 64}),
    )?
    .set(
        &format!("{md}.httpTokens"),
        json!({"enum": ["required", "optional"]}),
    )?;
    // Kubelet.
    let kubelet = "spec.kubelet";
    let reserved_keys = "self.all(k, k in ['cpu', 'memory', 'ephemeral-storage', 'pid'])";
    p.set(&format!("{kubelet}.maxPods"), json!({"minimum": 1}))?
        .set(&format!("{kubelet}.podsPerCore"), json!({"minimum": 0}))?
        .rule(&format!("{kubelet}.systemReserved"), reserved_keys, "valid keys are cpu, memory, ephemeral-storage and pid")?
        .rule(&format!("{kubelet}.kubeReserved"), reserved_keys, "valid keys are cpu, memory, ephemeral-storage and pid")?
        .rule(
            &format!("{kubelet}.evictionHard"),
            "self.all(k, k in ['memory.available', 'nodefs.available', 'nodefs.inodesFree', 'imagefs.available', 'imagefs.inodesFree', 'pid.available'])",
            "valid keys are memory.available, nodefs.available, nodefs.inodesFree, imagefs.available, imagefs.inodesFree and pid.available",
        )?
        .set(&format!("{kubelet}.systemReserved"), json!({"maxProperties": 4}))?
        .set(&format!("{kubelet}.kubeReserved"), json!({"maxProperties": 4}))?
        .set(&format!("{kubelet}.evictionHard"), json!({"maxProperties": 6}))?
        .set(&format!("{kubelet}.clusterDNS"), json!({"maxItems": 8}))?;
    // Tags.
    let restricted = RESTRICTED_TAG_KEYS
        .iter()
        .map(|k| format!("'{k}'"))
        .collect::<Vec<_>>()
        .join(", ");
    p.set("spec.tags", json!({"maxProperties": 50}))?
        .set("spec.tags.{}", json!({"maxLength": 256}))?
        .rule(
            "spec.tags",
            "self.all(k, k != '')",
            "tag keys must not be empty",
        )?
        .rule(
            "spec.tags",
            &format!(
                "self.all(k, !(k in [{restricted}]) && !k.startsWith('kubernetes.io/cluster/'))"
            ),
            "tag is restricted: Stowage or EKS sets it",
        )?;
    p.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_crd_renders_and_parses_back() {
        let crds = all().unwrap();
        assert_eq!(crds.len(), 3);
        for crd in &crds {
            let text = to_yaml(crd).unwrap();
            let back: CustomResourceDefinition = serde_saphyr::from_str(&text).unwrap();
            assert_eq!(&back, crd, "{} does not survive YAML", crd.spec.names.kind);
        }
        let names: Vec<_> = crds.iter().map(file_name).collect();
        assert_eq!(
            names,
            [
                "stowage.dev_nodepools.yaml",
                "stowage.dev_nodeclaims.yaml",
                "aws.stowage.dev_ec2nodeclasses.yaml"
            ]
        );
    }

    #[test]
    fn a_rule_on_a_missing_field_fails_generation() {
        let mut p = Patcher::new("NodePool", NodePool::crd()).unwrap();
        let err = p.set("spec.nope", json!({"minimum": 1})).err().unwrap();
        assert_eq!(
            err.to_string(),
            "failed to find schema path spec.nope in the NodePool CRD"
        );
    }
}
