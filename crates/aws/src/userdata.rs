//! Instance user data: how a launched instance joins the cluster with its NodeClaim's labels and
//! taints, max pods, cluster DNS and reserved resources, merged with the user's own user data.
//!
//! - **AL2023** (`nodeadm`): a MIME multipart document. The user's parts come first, untouched
//!   (a MIME document keeps all its parts; a bare script, cloud-config or NodeConfig becomes one
//!   part), then Stowage's `NodeConfig` (`node.eks.aws/v1alpha1`), which `nodeadm` merges last,
//!   so Stowage's values win on the keys it sets and the user's other keys stay.
//! - **Bottlerocket**: one TOML document. The user's TOML is parsed and kept; Stowage sets its
//!   keys under `settings.kubernetes` (scalars replaced, label/taint/reserved tables merged key by
//!   key with Stowage's entries winning).
//! - **Custom** (and AL2, which Stowage does not bootstrap): the user's user data verbatim.
//!
//! The output is plain text; the launch-template code base64-encodes it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use stowage_api::ec2nodeclass::AmiFamily;
use stowage_api::quantity::format_resource;
use stowage_solver::Overhead;
use stowage_solver::model::resource;

/// Errors of user-data rendering; each names what was wrong with the user's user data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to parse userData as MIME multipart: {0}")]
    ParseMime(String),
    #[error("failed to parse userData as Bottlerocket TOML: {0}")]
    ParseToml(String),
    #[error("userData key {0} must be a TOML table")]
    NotATable(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The cluster a node joins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    pub name: String,
    /// The API server URL.
    pub endpoint: String,
    /// The cluster CA bundle, base64 (as EKS reports it).
    pub certificate_authority: String,
    /// The service CIDR (`nodeadm` requires it to derive cluster DNS when not given).
    pub cidr: String,
}

/// Everything Stowage puts into a node's bootstrap configuration.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeBootstrap {
    pub cluster: ClusterInfo,
    /// Labels the node registers with (the NodeClaim's labels).
    pub labels: BTreeMap<String, String>,
    /// Taints the node registers with (the NodeClaim's taints and startup taints).
    pub taints: Vec<Taint>,
    pub max_pods: Option<i64>,
    pub cluster_dns: Vec<String>,
    /// kubelet `kubeReserved`, e.g. `cpu` -> `70m`.
    pub kube_reserved: BTreeMap<String, String>,
    /// kubelet `systemReserved`.
    pub system_reserved: BTreeMap<String, String>,
    /// kubelet `evictionHard`, by signal, e.g. `memory.available` -> `100Mi`.
    pub eviction_hard: BTreeMap<String, String>,
}

/// The kubelet eviction signal of a resource the catalogue reserves for eviction.
fn eviction_signal(resource_name: &str) -> Option<&'static str> {
    match resource_name {
        resource::MEMORY => Some("memory.available"),
        resource::EPHEMERAL_STORAGE => Some("nodefs.available"),
        _ => None,
    }
}

impl NodeBootstrap {
    /// Sets the reserved resources and eviction thresholds from the catalogue's overhead, so the
    /// kubelet reserves exactly what the solver subtracted.
    pub fn with_overhead(mut self, overhead: &Overhead) -> Self {
        let fmt = |r: &stowage_solver::Resources| -> BTreeMap<String, String> {
            r.0.iter()
                .map(|(k, v)| (k.clone(), format_resource(k, *v)))
                .collect()
        };
        self.kube_reserved = fmt(&overhead.kube_reserved);
        self.system_reserved = fmt(&overhead.system_reserved);
        self.eviction_hard = overhead
            .eviction_threshold
            .0
            .iter()
            .filter_map(|(k, v)| Some((eviction_signal(k)?.to_string(), format_resource(k, *v))))
            .collect();
        self
    }

    fn taints_json(&self) -> Vec<Value> {
        self.taints
            .iter()
            .map(|t| {
                let mut v = json!({"key": t.key, "effect": t.effect});
                if let Some(value) = t.value.as_deref().filter(|v| !v.is_empty()) {
                    v["value"] = json!(value);
                }
                v
            })
            .collect()
    }

    /// `--node-labels=a=b,c=d` (sorted), if there are labels.
    fn node_labels_flag(&self) -> Option<String> {
        (!self.labels.is_empty()).then(|| {
            let pairs: Vec<String> = self
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("--node-labels={}", pairs.join(","))
        })
    }

    /// Stowage's `NodeConfig` as a JSON value.
    fn node_config(&self) -> Value {
        let mut cluster = serde_json::Map::new();
        for (key, value) in [
            ("name", &self.cluster.name),
            ("apiServerEndpoint", &self.cluster.endpoint),
            ("certificateAuthority", &self.cluster.certificate_authority),
            ("cidr", &self.cluster.cidr),
        ] {
            if !value.is_empty() {
                cluster.insert(key.to_string(), json!(value));
            }
        }
        let mut config = serde_json::Map::new();
        if let Some(max_pods) = self.max_pods {
            config.insert("maxPods".into(), json!(max_pods));
        }
        if !self.cluster_dns.is_empty() {
            config.insert("clusterDNS".into(), json!(self.cluster_dns));
        }
        for (key, map) in [
            ("kubeReserved", &self.kube_reserved),
            ("systemReserved", &self.system_reserved),
            ("evictionHard", &self.eviction_hard),
        ] {
            if !map.is_empty() {
                config.insert(key.into(), json!(map));
            }
        }
        if !self.taints.is_empty() {
            config.insert(
                "registerWithTaints".into(),
                Value::Array(self.taints_json()),
            );
        }
        let mut kubelet = serde_json::Map::new();
        kubelet.insert("config".into(), Value::Object(config));
        if let Some(flag) = self.node_labels_flag() {
            kubelet.insert("flags".into(), json!([flag]));
        }
        json!({
            "apiVersion": "node.eks.aws/v1alpha1",
            "kind": "NodeConfig",
            "spec": {"cluster": cluster, "kubelet": kubelet},
        })
    }
}

/// Renders user data for `family`, merged with the user's `user_data`.
pub fn render(
    family: AmiFamily,
    bootstrap: &NodeBootstrap,
    user_data: Option<&str>,
) -> Result<String> {
    match family {
        AmiFamily::AL2023 => al2023(bootstrap, user_data),
        AmiFamily::Bottlerocket => bottlerocket(bootstrap, user_data),
        AmiFamily::AL2 | AmiFamily::Custom => Ok(user_data.unwrap_or_default().to_string()),
    }
}

// --- AL2023 -------------------------------------------------------------------------------------

/// The content type of a `nodeadm` NodeConfig part.
pub const NODE_CONFIG_CONTENT_TYPE: &str = "application/node.eks.aws";

/// One MIME part: its header lines and body.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Part {
    headers: Vec<String>,
    body: String,
}

impl Part {
    fn new(content_type: &str, body: &str) -> Self {
        Self {
            headers: vec![format!("Content-Type: {content_type}")],
            body: body.to_string(),
        }
    }
}

/// Splits header lines from the body at the first empty line.
fn split_headers(text: &str) -> (Vec<String>, String) {
    let mut headers = Vec::new();
    let mut rest = text;
    loop {
        let (line, tail) = match rest.find('\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            return (headers, tail.to_string());
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.push(' ');
                last.push_str(line.trim());
            }
        } else {
            headers.push(line.to_string());
        }
        if tail.is_empty() {
            return (headers, String::new());
        }
        rest = tail;
    }
}

fn header_value<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
    headers.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// The `boundary` parameter of a Content-Type value.
fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

fn is_mime(text: &str) -> bool {
    let first = text
        .trim_start()
        .lines()
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    first.starts_with("mime-version:") || first.starts_with("content-type:")
}

/// Parses a MIME multipart document into its parts.
fn parse_mime(text: &str) -> Result<Vec<Part>> {
    let (headers, body) = split_headers(text.trim_start());
    let content_type = header_value(&headers, "Content-Type")
        .ok_or_else(|| Error::ParseMime("no Content-Type header".into()))?;
    if !content_type.to_ascii_lowercase().starts_with("multipart/") {
        // A single-part MIME document: keep it as one part.
        return Ok(vec![Part {
            headers: vec![format!("Content-Type: {content_type}")],
            body,
        }]);
    }
    let boundary = boundary_of(content_type)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| Error::ParseMime("Content-Type has no boundary parameter".into()))?;
    let delimiter = format!("--{boundary}");
    let closing = format!("--{boundary}--");
    let mut parts = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    let mut closed = false;
    for line in body.lines() {
        let trimmed = line.trim_end_matches('\r').trim_end();
        if trimmed == closing {
            if let Some(lines) = current.take() {
                parts.push(lines);
            }
            closed = true;
            break;
        }
        if trimmed == delimiter {
            if let Some(lines) = current.take() {
                parts.push(lines);
            }
            current = Some(Vec::new());
        } else if let Some(lines) = current.as_mut() {
            lines.push(line.trim_end_matches('\r'));
        }
    }
    if !closed {
        return Err(Error::ParseMime(format!("no closing boundary {closing}")));
    }
    Ok(parts
        .into_iter()
        .map(|lines| {
            let (headers, body) = split_headers(&lines.join("\n"));
            Part { headers, body }
        })
        .collect())
}

/// The user's user data as MIME parts.
fn user_parts(user_data: &str) -> Result<Vec<Part>> {
    if user_data.trim().is_empty() {
        return Ok(Vec::new());
    }
    if is_mime(user_data) {
        return parse_mime(user_data);
    }
    let trimmed = user_data.trim_start();
    let content_type = if trimmed.starts_with("#cloud-config") {
        "text/cloud-config; charset=\"us-ascii\""
    } else if trimmed.contains("node.eks.aws/") && trimmed.contains("NodeConfig") {
        NODE_CONFIG_CONTENT_TYPE
    } else {
        "text/x-shellscript; charset=\"us-ascii\""
    };
    Ok(vec![Part::new(content_type, user_data)])
}

/// A boundary that no part's lines start with.
fn choose_boundary(parts: &[Part]) -> String {
    let clashes = |b: &str| {
        parts
            .iter()
            .any(|p| p.body.lines().any(|l| l.starts_with(&format!("--{b}"))))
    };
    if !clashes("//") {
        return "//".to_string();
    }
    let mut hasher = Sha256::new();
    for p in parts {
        hasher.update(p.body.as_bytes());
    }
    let mut candidate = format!("stowage-{}", &hex::encode(hasher.finalize())[..24]);
    while clashes(&candidate) {
        candidate.push('x');
    }
    candidate
}

fn write_mime(parts: &[Part]) -> String {
    let boundary = choose_boundary(parts);
    let mut out =
        format!("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\n\n");
    for part in parts {
        out.push_str(&format!("--{boundary}\n"));
        for h in &part.headers {
            out.push_str(h);
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&part.body);
        if !part.body.ends_with('\n') {
            out.push('\n');
        }
    }
    out.push_str(&format!("--{boundary}--\n"));
    out
}

/// AL2023 user data: the user's parts, then Stowage's NodeConfig.
pub fn al2023(bootstrap: &NodeBootstrap, user_data: Option<&str>) -> Result<String> {
    let mut parts = user_parts(user_data.unwrap_or_default())?;
    parts.push(Part::new(
        NODE_CONFIG_CONTENT_TYPE,
        &to_yaml(&bootstrap.node_config()),
    ));
    Ok(write_mime(&parts))
}

/// YAML for a JSON value: block mappings and sequences, every scalar written as a JSON scalar
/// (double-quoted strings), which is valid YAML and needs no escaping rules of its own.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    write_yaml(value, 0, &mut out);
    out
}

fn yaml_key(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
        && key.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if plain {
        key.to_string()
    } else {
        Value::from(key).to_string()
    }
}

fn is_empty_container(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.is_empty()) || matches!(v, Value::Array(a) if a.is_empty())
}

fn write_yaml(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                out.push_str(&format!("{pad}{}:", yaml_key(k)));
                write_nested(v, indent, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                out.push_str(&format!("{pad}-"));
                match item {
                    Value::Object(m) if !m.is_empty() => {
                        // First key on the dash line, the rest aligned under it.
                        let mut first = true;
                        for (k, v) in m {
                            if first {
                                out.push_str(&format!(" {}:", yaml_key(k)));
                                first = false;
                            } else {
                                out.push_str(&format!("{pad}  {}:", yaml_key(k)));
                            }
                            write_nested(v, indent + 2, out);
                        }
                    }
                    other => write_nested(other, indent, out),
                }
            }
        }
        scalar => {
            out.push_str(&format!("{pad}{scalar}\n"));
        }
    }
}

/// Writes the value after `key:` or `-`: inline for scalars and empty containers, else on the
/// following lines indented by two.
fn write_nested(v: &Value, indent: usize, out: &mut String) {
    if is_empty_container(v) || !(v.is_object() || v.is_array()) {
        out.push_str(&format!(" {v}\n"));
    } else {
        out.push('\n');
        write_yaml(v, indent + 2, out);
    }
}

// --- Bottlerocket -------------------------------------------------------------------------------

/// Gets (creating) the table at `path` under `root`.
fn table_at<'a>(root: &'a mut toml::Table, path: &[&str]) -> Result<&'a mut toml::Table> {
    let mut current = root;
    let mut walked = String::new();
    for key in path {
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(key);
        let entry = current
            .entry((*key).to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| Error::NotATable(walked.clone()))?;
    }
    Ok(current)
}

/// Merges `entries` into the table `key` of `table` (creating it), ours winning per entry.
fn merge_table(
    table: &mut toml::Table,
    key: &str,
    entries: impl IntoIterator<Item = (String, toml::Value)>,
) -> Result<()> {
    let mut entries = entries.into_iter().peekable();
    if entries.peek().is_none() {
        return Ok(());
    }
    let target = table_at(table, &[key])
        .map_err(|_| Error::NotATable(format!("settings.kubernetes.{key}")))?;
    for (k, v) in entries {
        target.insert(k, v);
    }
    Ok(())
}

fn strings(map: &BTreeMap<String, String>) -> impl Iterator<Item = (String, toml::Value)> + '_ {
    map.iter()
        .map(|(k, v)| (k.clone(), toml::Value::String(v.clone())))
}

/// Bottlerocket user data: the user's TOML with Stowage's `settings.kubernetes` keys set.
pub fn bottlerocket(bootstrap: &NodeBootstrap, user_data: Option<&str>) -> Result<String> {
    let mut root: toml::Table = match user_data.map(str::trim).filter(|s| !s.is_empty()) {
        Some(text) => text
            .parse()
            .map_err(|e: toml::de::Error| Error::ParseToml(e.to_string()))?,
        None => toml::Table::new(),
    };
    let k8s = table_at(&mut root, &["settings", "kubernetes"])?;
    let cluster = &bootstrap.cluster;
    for (key, value) in [
        ("cluster-name", &cluster.name),
        ("api-server", &cluster.endpoint),
        ("cluster-certificate", &cluster.certificate_authority),
    ] {
        if !value.is_empty() {
            k8s.insert(key.into(), toml::Value::String(value.clone()));
        }
    }
    match bootstrap.cluster_dns.as_slice() {
        [] => {}
        [one] => {
            k8s.insert("cluster-dns-ip".into(), toml::Value::String(one.clone()));
        }
        many => {
            let list = many.iter().cloned().map(toml::Value::String).collect();
            k8s.insert("cluster-dns-ip".into(), toml::Value::Array(list));
        }
    }
    if let Some(max_pods) = bootstrap.max_pods {
        k8s.insert("max-pods".into(), toml::Value::Integer(max_pods));
    }
    merge_table(k8s, "node-labels", strings(&bootstrap.labels))?;
    let mut taints: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in &bootstrap.taints {
        taints.entry(t.key.clone()).or_default().push(format!(
            "{}:{}",
            t.value.as_deref().unwrap_or_default(),
            t.effect
        ));
    }
    merge_table(
        k8s,
        "node-taints",
        taints.into_iter().map(|(k, v)| {
            (
                k,
                toml::Value::Array(v.into_iter().map(toml::Value::String).collect()),
            )
        }),
    )?;
    merge_table(k8s, "kube-reserved", strings(&bootstrap.kube_reserved))?;
    merge_table(k8s, "system-reserved", strings(&bootstrap.system_reserved))?;
    merge_table(k8s, "eviction-hard", strings(&bootstrap.eviction_hard))?;
    Ok(root.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_solver::Resources;

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn bootstrap() -> NodeBootstrap {
        NodeBootstrap {
            cluster: ClusterInfo {
                name: "prod".into(),
                endpoint: "https://ABC.gr7.us-east-1.eks.amazonaws.com".into(),
                certificate_authority: "Q0EK".into(),
                cidr: "10.100.0.0/16".into(),
            },
            labels: [
                ("stowage.dev/nodepool".to_string(), "gaudi".to_string()),
                ("accel".to_string(), "gaudi".to_string()),
            ]
            .into(),
            taints: vec![
                taint("habana.ai/gaudi", Some("true"), "NoSchedule"),
                taint("stowage.dev/unregistered", None, "NoExecute"),
            ],
            max_pods: Some(29),
            cluster_dns: vec!["10.100.0.10".into()],
            ..NodeBootstrap::default()
        }
        .with_overhead(&Overhead {
            kube_reserved: Resources::new().with("cpu", 70).with("memory", 574 << 20),
            system_reserved: Resources::new(),
            eviction_threshold: Resources::new()
                .with("memory", 100 << 20)
                .with("ephemeral-storage", 2 << 30),
        })
    }

    /// Extracts the parts of a rendered MIME document as (content type, body).
    fn parts(text: &str) -> Vec<(String, String)> {
        parse_mime(text)
            .unwrap()
            .into_iter()
            .map(|p| {
                (
                    header_value(&p.headers, "Content-Type")
                        .unwrap_or_default()
                        .to_string(),
                    p.body,
                )
            })
            .collect()
    }

    #[test]
    fn al2023_without_user_data_is_one_node_config() {
        let out = al2023(&bootstrap(), None).unwrap();
        assert!(
            out.starts_with("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"//\"\n")
        );
        let p = parts(&out);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].0, NODE_CONFIG_CONTENT_TYPE);
        let expected = r#"apiVersion: "node.eks.aws/v1alpha1"
kind: "NodeConfig"
spec:
  cluster:
    apiServerEndpoint: "https://ABC.gr7.us-east-1.eks.amazonaws.com"
    certificateAuthority: "Q0EK"
    cidr: "10.100.0.0/16"
    name: "prod"
  kubelet:
    config:
      clusterDNS:
        - "10.100.0.10"
      evictionHard:
        memory.available: "100Mi"
        nodefs.available: "2Gi"
      kubeReserved:
        cpu: "70m"
        memory: "574Mi"
      maxPods: 29
      registerWithTaints:
        - effect: "NoSchedule"
          key: "habana.ai/gaudi"
          value: "true"
        - effect: "NoExecute"
          key: "stowage.dev/unregistered"
    flags:
      - "--node-labels=accel=gaudi,stowage.dev/nodepool=gaudi"
"#;
        // The newline before a boundary belongs to the delimiter (RFC 2046), so parts read back
        // without their final newline.
        assert_eq!(p[0].1, expected.trim_end());
    }

    #[test]
    fn al2023_merges_each_kind_of_user_data() {
        let script = "#!/bin/bash\necho hello\n";
        let cloud = "#cloud-config\npackages: [htop]\n";
        let node_config = "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  kubelet:\n    config:\n      imageGCHighThresholdPercent: 70\n";
        let mime = "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"BOUNDARY\"\n\n--BOUNDARY\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho one\n--BOUNDARY\nContent-Type: text/cloud-config\n\n#cloud-config\nruncmd: [ls]\n--BOUNDARY--\n";
        let cases: [(&str, Vec<&str>); 4] = [
            (script, vec!["text/x-shellscript; charset=\"us-ascii\""]),
            (cloud, vec!["text/cloud-config; charset=\"us-ascii\""]),
            (node_config, vec![NODE_CONFIG_CONTENT_TYPE]),
            (mime, vec!["text/x-shellscript", "text/cloud-config"]),
        ];
        for (user, user_types) in cases {
            let out = al2023(&bootstrap(), Some(user)).unwrap();
            let p = parts(&out);
            let types: Vec<&str> = p.iter().map(|(t, _)| t.as_str()).collect();
            let mut expected = user_types.clone();
            expected.push(NODE_CONFIG_CONTENT_TYPE);
            assert_eq!(types, expected, "{user}");
            // Ours is last, so nodeadm lets it win on the keys it sets.
            assert!(p.last().unwrap().1.contains("maxPods: 29"));
        }
        let out = al2023(&bootstrap(), Some(mime)).unwrap();
        let p = parts(&out);
        assert_eq!(p[0].1, "#!/bin/sh\necho one");
        assert_eq!(p[1].1, "#cloud-config\nruncmd: [ls]");
    }

    #[test]
    fn al2023_picks_a_boundary_the_user_data_does_not_use() {
        let tricky = "#!/bin/bash\ncat <<EOF\n--//\nEOF\n";
        let out = al2023(&bootstrap(), Some(tricky)).unwrap();
        assert!(!out.contains("boundary=\"//\""));
        let p = parts(&out);
        assert_eq!(p.len(), 2);
        assert!(p[0].1.contains("--//"));
    }

    #[test]
    fn malformed_mime_is_an_error() {
        let no_boundary =
            "MIME-Version: 1.0\nContent-Type: multipart/mixed\n\n--x\n\nbody\n--x--\n";
        assert!(matches!(
            al2023(&bootstrap(), Some(no_boundary)),
            Err(Error::ParseMime(_))
        ));
        let unclosed =
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=x\n\n--x\n\nbody\n";
        let err = al2023(&bootstrap(), Some(unclosed)).unwrap_err();
        assert!(err.to_string().contains("--x--"), "{err}");
    }

    #[test]
    fn bottlerocket_sets_our_keys_and_keeps_the_users() {
        let user = r#"
[settings.kubernetes]
max-pods = 500
cluster-name = "wrong"
image-gc-high-threshold-percent = 80

[settings.kubernetes.node-labels]
team = "ml"
accel = "user-value"

[settings.host-containers.admin]
enabled = true
"#;
        let out = bottlerocket(&bootstrap(), Some(user)).unwrap();
        let parsed: toml::Table = out.parse().unwrap();
        let k8s = parsed["settings"]["kubernetes"].as_table().unwrap();
        assert_eq!(k8s["max-pods"].as_integer(), Some(29));
        assert_eq!(k8s["cluster-name"].as_str(), Some("prod"));
        assert_eq!(
            k8s["api-server"].as_str(),
            Some("https://ABC.gr7.us-east-1.eks.amazonaws.com")
        );
        assert_eq!(k8s["cluster-certificate"].as_str(), Some("Q0EK"));
        assert_eq!(k8s["cluster-dns-ip"].as_str(), Some("10.100.0.10"));
        assert_eq!(
            k8s["image-gc-high-threshold-percent"].as_integer(),
            Some(80)
        );
        let labels = k8s["node-labels"].as_table().unwrap();
        assert_eq!(labels["team"].as_str(), Some("ml"));
        assert_eq!(labels["accel"].as_str(), Some("gaudi"));
        assert_eq!(labels["stowage.dev/nodepool"].as_str(), Some("gaudi"));
        let taints = k8s["node-taints"].as_table().unwrap();
        assert_eq!(
            taints["habana.ai/gaudi"].as_array().unwrap()[0].as_str(),
            Some("true:NoSchedule")
        );
        assert_eq!(
            taints["stowage.dev/unregistered"].as_array().unwrap()[0].as_str(),
            Some(":NoExecute")
        );
        assert_eq!(k8s["kube-reserved"]["memory"].as_str(), Some("574Mi"));
        assert_eq!(
            k8s["eviction-hard"]["memory.available"].as_str(),
            Some("100Mi")
        );
        assert!(
            parsed["settings"]["host-containers"]["admin"]["enabled"]
                .as_bool()
                .unwrap()
        );
    }

    #[test]
    fn bottlerocket_errors_name_the_problem() {
        assert!(matches!(
            bottlerocket(&bootstrap(), Some("settings = [")),
            Err(Error::ParseToml(_))
        ));
        let err = bottlerocket(&bootstrap(), Some("settings = 1")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "userData key settings must be a TOML table"
        );
        let err =
            bottlerocket(&bootstrap(), Some("[settings.kubernetes]\nnode-labels = 3")).unwrap_err();
        assert!(
            err.to_string().contains("settings.kubernetes.node-labels"),
            "{err}"
        );
    }

    #[test]
    fn custom_and_al2_pass_user_data_through() {
        for family in [AmiFamily::Custom, AmiFamily::AL2] {
            assert_eq!(
                render(family, &bootstrap(), Some("#!/bin/sh\nx\n")).unwrap(),
                "#!/bin/sh\nx\n"
            );
            assert_eq!(render(family, &bootstrap(), None).unwrap(), "");
        }
        assert!(
            render(AmiFamily::Bottlerocket, &bootstrap(), None)
                .unwrap()
                .contains("[settings.kubernetes]")
        );
    }
}
