//! The Helm chart (charts/stowage), rendered and linted by Helm's own engine: `helm-python-sdk`
//! bundles Helm v4 as a library and `tests/chart/render.py` drives it (in the venv `make venv`
//! creates; `$STOWAGE_FAKEAWS_PYTHON` or `~/.cache/stowage/venv/bin/python`).
//!
//! Checked here: every rendered object deserializes into its k8s-openapi type (or, for the
//! prometheus-operator kinds, a typed subset of their API) with no field left over; lint is clean;
//! bad values fail at install naming the value; the Deployment is what the issue asks (replicas,
//! probes, security context, placement); every `stowage run` flag is reachable from values with
//! the same default; the dashboard and alerts use only metrics the controllers register; every
//! value is documented in the chart README.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

const NAMESPACE: &str = "platform";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/stowage is two levels below the workspace")
        .to_path_buf()
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("STOWAGE_FAKEAWS_PYTHON").map(PathBuf::from)
        && p.exists()
    {
        return p;
    }
    let fallback = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/stowage/venv/bin/python");
    assert!(
        fallback.exists(),
        "the test venv's Python was not found (STOWAGE_FAKEAWS_PYTHON unset or missing, and no {}): run `make venv` first",
        fallback.display()
    );
    fallback
}

fn values_file(name: &str) -> String {
    workspace()
        .join("tests/chart/values")
        .join(name)
        .display()
        .to_string()
}

/// One render: the objects (with the template each came from), NOTES.txt, or Helm's error.
#[derive(Debug, Deserialize)]
struct Rendered {
    name: String,
    objects: Vec<RenderedObject>,
    notes: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RenderedObject {
    template: String,
    object: Value,
}

#[derive(Debug, Deserialize)]
struct Lint {
    name: String,
    messages: Vec<LintMessage>,
    errors: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct LintMessage {
    severity: u8,
    path: String,
    error: String,
}

#[derive(Debug, Deserialize)]
struct Answer {
    renders: Vec<Rendered>,
    lints: Vec<Lint>,
}

/// Runs tests/chart/render.py once with every case.
fn helm(request: &Value) -> Answer {
    let mut child = Command::new(python())
        .arg(workspace().join("tests/chart/render.py"))
        .current_dir(workspace())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tests/chart/render.py");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(request.to_string().as_bytes())
            .expect("write the request");
    }
    let out = child.wait_with_output().expect("render.py finished");
    assert!(
        out.status.success(),
        "render.py failed (is helm-python-sdk in the venv? `make venv`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("render.py answers JSON")
}

/// The renders every test reads, made once per test binary.
fn renders() -> &'static BTreeMap<String, Rendered> {
    static RENDERS: OnceLock<BTreeMap<String, Rendered>> = OnceLock::new();
    RENDERS.get_or_init(|| {
        let cluster = json!({"settings": {"clusterName": "demo"}});
        let answer = helm(&json!({
            "chart": "charts/stowage",
            "renders": [
                {"name": "defaults", "values": cluster},
                {"name": "monitoring", "values_files": [values_file("monitoring.yaml")]},
                {"name": "custom", "values_files": [values_file("custom.yaml")]},
                {"name": "bad", "values_files": [values_file("bad.yaml")]},
                {"name": "no-cluster-name"},
                {"name": "unknown-key", "values": {"settings": {"clusterName": "demo"}, "replica": 3}},
                {"name": "interruption-queue", "values": {"settings": {"clusterName": "demo", "interruptionQueue": "not a queue!"}}},
                {"name": "log-level", "values": {"settings": {"clusterName": "demo", "logLevel": "verbose"}}},
                {"name": "overhead", "values": {"settings": {"clusterName": "demo", "vmMemoryOverheadPercent": 1.5}}},
                {"name": "instance-types", "values": {"settings": {"clusterName": "demo", "maxInstanceTypes": 600}}},
                {"name": "service-monitor-without-service", "values": {"settings": {"clusterName": "demo"}, "metrics": {"service": {"enabled": false}, "serviceMonitor": {"enabled": true}}}},
            ],
        }));
        answer
            .renders
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect()
    })
}

fn render(name: &str) -> &'static Rendered {
    let r = &renders()[name];
    assert!(r.error.is_none(), "{name}: {:?}", r.error);
    r
}

fn objects<'a>(r: &'a Rendered, kind: &str) -> Vec<&'a Value> {
    r.objects
        .iter()
        .map(|o| &o.object)
        .filter(|o| o["kind"] == kind)
        .collect()
}

fn one<T: DeserializeOwned>(r: &Rendered, kind: &str) -> T {
    let found = objects(r, kind);
    assert_eq!(found.len(), 1, "{}: one {kind}", r.name);
    serde_json::from_value(found[0].clone()).expect("typed")
}

/// Paths of `original` that did not survive the round trip through the typed value: fields the
/// type does not know (a typo, a wrong indentation level) or values it reads differently.
fn lost_fields(original: &Value, round_trip: &Value, path: &str, out: &mut Vec<String>) {
    match (original, round_trip) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(w) => lost_fields(v, w, &p, out),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                out.push(format!("{path} (length {} -> {})", a.len(), b.len()));
            }
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                lost_fields(v, w, &format!("{path}[{i}]"), out);
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path}: {a} -> {b}")),
    }
}

/// Deserializes `object` into `T` and fails on any field `T` does not carry.
fn strict<T: DeserializeOwned + Serialize>(object: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut lost = Vec::new();
    lost_fields(object, &back, "", &mut lost);
    if lost.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fields the type does not know: {}",
            lost.join(", ")
        ))
    }
}

// The prometheus-operator kinds (monitoring.coreos.com/v1) have no k8s-openapi type: these are the
// parts of their API the chart uses, closed to unknown fields.

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitor {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: ServiceMonitorSpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ServiceMonitorSpec {
    namespace_selector: NamespaceSelector,
    selector: LabelSelector,
    endpoints: Vec<Endpoint>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NamespaceSelector {
    match_names: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Endpoint {
    port: String,
    path: String,
    interval: String,
    scrape_timeout: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    relabelings: Option<Vec<RelabelConfig>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metric_relabelings: Option<Vec<RelabelConfig>>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RelabelConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    source_labels: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    separator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    modulus: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replacement: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    action: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PrometheusRule {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    spec: PrometheusRuleSpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrometheusRuleSpec {
    groups: Vec<RuleGroup>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleGroup {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    alert: String,
    expr: String,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    for_: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn check_kind(object: &Value) -> Result<(), String> {
    let api = object["apiVersion"].as_str().unwrap_or_default();
    match (api, object["kind"].as_str().unwrap_or_default()) {
        ("apps/v1", "Deployment") => strict::<Deployment>(object),
        ("v1", "ServiceAccount") => strict::<ServiceAccount>(object),
        ("v1", "Service") => strict::<Service>(object),
        ("v1", "ConfigMap") => strict::<ConfigMap>(object),
        ("policy/v1", "PodDisruptionBudget") => strict::<PodDisruptionBudget>(object),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => strict::<ClusterRole>(object),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            strict::<ClusterRoleBinding>(object)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => strict::<Role>(object),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => strict::<RoleBinding>(object),
        ("monitoring.coreos.com/v1", "ServiceMonitor") => strict::<ServiceMonitor>(object),
        ("monitoring.coreos.com/v1", "PrometheusRule") => strict::<PrometheusRule>(object),
        (api, kind) => Err(format!("no type for {api} {kind}: add it to check_kind")),
    }
}

#[test]
fn every_rendered_object_is_its_kubernetes_type_with_no_unknown_field() {
    for case in ["defaults", "monitoring", "custom"] {
        let r = render(case);
        assert!(!r.objects.is_empty(), "{case}: nothing rendered");
        for o in &r.objects {
            if let Err(e) = check_kind(&o.object) {
                panic!("{case}: {} ({}): {e}", o.template, o.object["kind"]);
            }
            // No hard-coded namespaces: every namespaced object lands in the release's.
            if let Some(ns) = o.object["metadata"]["namespace"].as_str() {
                assert_eq!(ns, NAMESPACE, "{case}: {}", o.template);
            }
        }
    }
}

#[test]
fn the_strict_check_catches_a_misplaced_field() {
    // The check itself can fail: a field at the wrong level of a Deployment is reported.
    let mut d = objects(render("defaults"), "Deployment")[0].clone();
    d["spec"]["template"]["spec"]["containers"][0]["resource"] = json!({"limits": {}});
    let err = check_kind(&d).unwrap_err();
    assert!(
        err.contains(".spec.template.spec.containers[0].resource"),
        "{err}"
    );
    let mut m = objects(render("monitoring"), "ServiceMonitor")[0].clone();
    m["spec"]["endpoint"] = json!([]);
    assert!(check_kind(&m).unwrap_err().contains("unknown field"));
}

#[test]
fn defaults_monitoring_and_custom_render_the_expected_objects() {
    let kinds = |case: &str| -> BTreeSet<String> {
        render(case)
            .objects
            .iter()
            .filter_map(|o| o.object["kind"].as_str().map(str::to_string))
            .collect()
    };
    let base = [
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
    ];
    for kind in base {
        assert!(kinds("defaults").contains(kind), "defaults: {kind}");
    }
    for kind in ["ServiceMonitor", "PrometheusRule", "ConfigMap"] {
        assert!(!kinds("defaults").contains(kind), "off by default: {kind}");
        assert!(kinds("monitoring").contains(kind), "monitoring: {kind}");
    }
    let notes = &render("defaults").notes;
    assert!(notes.contains("kubectl get ec2nodeclasses,nodepools,nodeclaims"));
    assert!(notes.contains("no IRSA role annotation"), "{notes}");
    assert!(
        !render("monitoring")
            .notes
            .contains("no IRSA role annotation")
    );
}

#[test]
fn the_deployment_runs_two_hardened_leader_elected_replicas_off_stowage_nodes() {
    let r = render("defaults");
    let d: Deployment = one(r, "Deployment");
    let spec = d.spec.expect("spec");
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-cluster-critical")
    );
    assert_eq!(pod.automount_service_account_token, Some(true));
    let psc = pod.security_context.expect("pod security context");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(
        psc.seccomp_profile.map(|s| s.type_),
        Some("RuntimeDefault".into())
    );
    let c = &pod.containers[0];
    assert_eq!(c.args.as_deref(), Some(&["run".to_string()][..]));
    let sc = c
        .security_context
        .as_ref()
        .expect("container security context");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );
    let res = c.resources.as_ref().expect("resources");
    assert!(
        res.requests
            .as_ref()
            .is_some_and(|r| r.contains_key("memory"))
    );
    // Both probes hit the health port, which HEALTH_PROBE_ADDR listens on.
    let health = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("http-health"))
        .expect("health port");
    assert_eq!(health.container_port, 8081);
    for (probe, path) in [
        (c.liveness_probe.as_ref(), "/healthz"),
        (c.readiness_probe.as_ref(), "/readyz"),
    ] {
        let get = probe.and_then(|p| p.http_get.as_ref()).expect(path);
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            serde_json::to_value(&get.port).unwrap(),
            json!("http-health")
        );
    }
    let env = env_of(r);
    assert_eq!(env["HEALTH_PROBE_ADDR"], json!("0.0.0.0:8081"));
    assert_eq!(env["LEADER_ELECT"], json!("true"));
    // Off the nodes Stowage manages: the label Stowage puts on every node it launches.
    let affinity = serde_json::to_value(pod.affinity.expect("affinity")).unwrap();
    let term = &affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        [0]["matchExpressions"][0];
    assert_eq!(term["key"], stowage_api::labels::NODEPOOL);
    assert_eq!(term["operator"], "DoesNotExist");
    let spread = &pod.topology_spread_constraints.expect("spread")[0];
    assert_eq!(spread.topology_key, stowage_api::labels::ZONE);
    assert_eq!(
        spread
            .label_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone()),
        spec.selector.match_labels
    );
    // The ServiceAccount mounts no token by default; the pod asks for one.
    let sa: ServiceAccount = one(r, "ServiceAccount");
    assert_eq!(sa.automount_service_account_token, Some(false));
    assert_eq!(pod.service_account_name, sa.metadata.name);
    let pdb: PodDisruptionBudget = one(r, "PodDisruptionBudget");
    assert_eq!(
        pdb.spec
            .and_then(|s| s.selector)
            .and_then(|s| s.match_labels),
        spec.selector.match_labels
    );
}

#[test]
fn custom_values_reach_the_pod() {
    let r = render("custom");
    let d: Deployment = one(r, "Deployment");
    let spec = d.spec.expect("spec");
    assert_eq!(spec.replicas, Some(3));
    let pod = spec.template.spec.expect("pod spec");
    let c = &pod.containers[0];
    let res = serde_json::to_value(c.resources.as_ref().expect("resources")).unwrap();
    assert_eq!(res["requests"], json!({"cpu": "500m", "memory": "512Mi"}));
    assert_eq!(res["limits"]["memory"], "2Gi");
    let tolerations = serde_json::to_value(pod.tolerations.expect("tolerations")).unwrap();
    assert_eq!(
        tolerations,
        json!([
            {"key": "CriticalAddonsOnly", "operator": "Exists"},
            {"key": "dedicated", "value": "system", "effect": "NoSchedule"}
        ])
    );
    assert_eq!(
        pod.node_selector.expect("node selector").get("node-role"),
        Some(&"system".to_string())
    );
    assert!(c.image.as_deref().is_some_and(|i| {
        i.ends_with("@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
    }));
    let env = env_of(r);
    assert_eq!(env["METRICS_ADDR"], json!("0.0.0.0:9090"));
    assert_eq!(env["RUST_BACKTRACE"], json!("1"));
    assert_eq!(env["LOG_LEVEL"], json!("info,stowage_controller=debug"));
    let svc: Service = one(r, "Service");
    let port = &svc.spec.and_then(|s| s.ports).expect("ports")[0];
    assert_eq!(port.port, 9090);
    // IRSA: the role annotation lands on the ServiceAccount.
    let sa: ServiceAccount = one(render("monitoring"), "ServiceAccount");
    assert_eq!(
        sa.metadata
            .annotations
            .and_then(|a| a.get("eks.amazonaws.com/role-arn").cloned())
            .as_deref(),
        Some("arn:aws:iam::111122223333:role/StowageController")
    );
    let cm: ConfigMap = one(render("monitoring"), "ConfigMap");
    assert_eq!(
        cm.metadata
            .labels
            .and_then(|l| l.get("grafana_dashboard").cloned())
            .as_deref(),
        Some("1")
    );
}

#[test]
fn bad_values_fail_at_install_naming_the_value() {
    for (case, names) in [
        (
            "bad",
            &["/settings/batchIdleDuration", "does not match pattern"][..],
        ),
        ("no-cluster-name", &["settings.clusterName is required"]),
        ("unknown-key", &["'replica' not allowed"]),
        ("interruption-queue", &["/settings/interruptionQueue"]),
        ("log-level", &["/settings/logLevel"]),
        ("overhead", &["/settings/vmMemoryOverheadPercent"]),
        ("instance-types", &["/settings/maxInstanceTypes"]),
        (
            "service-monitor-without-service",
            &["metrics.serviceMonitor.enabled needs metrics.service.enabled"],
        ),
    ] {
        let r = &renders()[case];
        let err = r
            .error
            .as_deref()
            .unwrap_or_else(|| panic!("{case}: rendered: {:?}", r.objects));
        for name in names {
            assert!(err.contains(name), "{case}: {err}");
        }
    }
}

#[test]
fn lint_is_clean() {
    let answer = helm(&json!({
        "chart": "charts/stowage",
        "lints": [
            {"name": "defaults", "values": {"settings": {"clusterName": "demo"}}},
            {"name": "monitoring", "values_files": [values_file("monitoring.yaml")]},
            {"name": "custom", "values_files": [values_file("custom.yaml")]},
        ],
    }));
    for lint in &answer.lints {
        assert!(lint.errors.is_empty(), "{}: {:?}", lint.name, lint.errors);
        // Severity 1 is informational (Helm only recommends an icon); 2 warning, 3 error.
        let findings: Vec<_> = lint
            .messages
            .iter()
            .filter(|m| m.severity >= 2)
            .map(|m| format!("{}: {}", m.path, m.error))
            .collect();
        assert!(findings.is_empty(), "{}: {findings:?}", lint.name);
    }
}

/// The container's environment: literal values as strings, `valueFrom` as its JSON.
fn env_of(r: &Rendered) -> BTreeMap<String, Value> {
    let d = objects(r, "Deployment")[0];
    d["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let v = e
                .get("value")
                .cloned()
                .or_else(|| e.get("valueFrom").cloned())
                .unwrap_or(Value::Null);
            (e["name"].as_str().expect("name").to_string(), v)
        })
        .collect()
}

/// A flag of `stowage run`, from its `--help`.
#[derive(Debug)]
struct Flag {
    long: String,
    env: String,
    default: Option<String>,
}

/// Parses clap's help: each option starts with a `--name` line; its description follows, with
/// `[env: X=]` and `[default: Y]` (quoted when empty or with spaces).
fn run_flags() -> Vec<Flag> {
    let out = Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(["run", "--help"])
        // clap shows an env variable's current value; the flags' defaults are wanted.
        .env_clear()
        .output()
        .expect("stowage run --help");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).expect("utf-8");
    let env_re = regex::Regex::new(r"\[env: ([A-Z0-9_]+)=[^\]]*\]").expect("a valid regex");
    let default_re = regex::Regex::new(r"\[default: ([^\]]*)\]").expect("a valid regex");
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("--") {
            let long = rest.split([' ', '=']).next().unwrap_or_default();
            blocks.push((long.to_string(), String::new()));
        } else if t.starts_with('-') && !t.starts_with("- ") {
            // A short-only option (`-h, --help`): not a setting.
            blocks.push(("help".into(), String::new()));
        } else if let Some((_, text)) = blocks.last_mut() {
            text.push_str(t);
            text.push(' ');
        }
    }
    let flags: Vec<Flag> = blocks
        .into_iter()
        .filter(|(long, _)| long != "help")
        .map(|(long, text)| Flag {
            env: env_re
                .captures(&text)
                .map(|c| c[1].to_string())
                .unwrap_or_else(|| panic!("--{long} has no env variable: {text}")),
            default: default_re
                .captures(&text)
                .map(|c| c[1].trim_matches('"').to_string()),
            long,
        })
        .collect();
    flags
}

fn camel(flag: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in flag.chars() {
        if c == '-' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A values scalar as the flag reads it.
fn as_flag_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn every_run_flag_is_reachable_from_values_with_the_same_default() {
    let flags = run_flags();
    assert!(flags.len() >= 20, "parsed too few flags: {flags:?}");
    let defaults: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(workspace().join("charts/stowage/values.yaml")).unwrap(),
    )
    .unwrap();
    let settings = defaults["settings"].as_object().expect("settings");
    let env = env_of(render("defaults"));
    // Flags the chart sets from elsewhere than `settings`, with the value it passes by default.
    let elsewhere: BTreeMap<&str, Value> = [
        ("metrics-addr", json!("0.0.0.0:8080")),
        ("health-addr", json!("0.0.0.0:8081")),
        (
            "namespace",
            json!({"fieldRef": {"fieldPath": "metadata.namespace"}}),
        ),
        (
            "identity",
            json!({"fieldRef": {"fieldPath": "metadata.name"}}),
        ),
    ]
    .into_iter()
    .collect();
    let mut overrides = serde_json::Map::new();
    let mut expected_env = BTreeMap::new();
    for flag in &flags {
        if let Some(want) = elsewhere.get(flag.long.as_str()) {
            assert_eq!(env.get(&flag.env), Some(want), "--{}", flag.long);
            continue;
        }
        let key = camel(&flag.long);
        let value = settings
            .get(&key)
            .unwrap_or_else(|| panic!("--{} has no value settings.{key}", flag.long));
        let text = as_flag_text(value);
        match (&flag.default, env.get(&flag.env)) {
            // Rendered: the same value as the flag's default.
            (Some(d), Some(v)) => {
                assert_eq!(&text, d, "settings.{key} vs --{} default", flag.long);
                assert_eq!(v, &json!(d), "{}", flag.env);
            }
            // Left out while empty: the flag's own default (or none) applies.
            (_, None) => assert_eq!(text, "", "settings.{key} is set but {} is not", flag.env),
            // Required, with no default on either side; the template refuses an empty one.
            (None, Some(v)) if flag.long == "cluster-name" => {
                assert_eq!((text.as_str(), v), ("", &json!("demo")));
            }
            (None, Some(v)) => panic!("--{} has no default but {} is {v}", flag.long, flag.env),
        }
        // Reachable: a changed value reaches the variable.
        let changed = match value {
            Value::Bool(b) => json!(!b),
            Value::Number(_) if key == "vmMemoryOverheadPercent" => json!(0.1),
            Value::Number(n) => json!(n.as_i64().expect("integer") + 1),
            _ if key.ends_with("Duration")
                || key.ends_with("Ttl")
                || key.ends_with("HalfLife")
                || key == "initializedGrace"
                || key.starts_with("disruption")
                || key.ends_with("Interval") =>
            {
                json!("7m")
            }
            _ if key == "logFormat" => json!("text"),
            _ if key == "logLevel" => json!("debug"),
            _ if key == "region" => json!("eu-west-1"),
            _ if key == "awsEndpointUrl" => json!("http://localhost:5000"),
            _ if key == "cloudProvider" => json!("simulated"),
            _ => json!("changed"),
        };
        expected_env.insert(flag.env.clone(), as_flag_text(&changed));
        overrides.insert(key, changed);
    }
    // No value in `settings` that no flag reads.
    let flag_keys: BTreeSet<String> = flags.iter().map(|f| camel(&f.long)).collect();
    for key in settings.keys() {
        assert!(flag_keys.contains(key), "settings.{key}: no such flag");
    }
    overrides.insert("clusterName".into(), json!("changed"));
    let answer = helm(&json!({
        "chart": "charts/stowage",
        "renders": [{"name": "changed", "values": {"settings": overrides, "metrics": {"port": 9000}, "healthProbe": {"port": 9001}}}],
    }));
    let changed = &answer.renders[0];
    assert!(changed.error.is_none(), "{:?}", changed.error);
    let env = env_of(changed);
    expected_env.insert("CLUSTER_NAME".into(), "changed".into());
    expected_env.insert("METRICS_ADDR".into(), "0.0.0.0:9000".into());
    expected_env.insert("HEALTH_PROBE_ADDR".into(), "0.0.0.0:9001".into());
    for (name, want) in expected_env {
        assert_eq!(env.get(&name), Some(&json!(want)), "{name}");
    }
}

/// Metric names the controllers register, as Prometheus scrapes them (counters get `_total`,
/// histograms `_bucket`, `_sum` and `_count`).
fn registered_metrics() -> BTreeSet<String> {
    let text = stowage_controller::Metrics::example().encode();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    assert!(names.len() > 20, "{text}");
    names
}

/// Metrics from outside Stowage that the alerts may read, with where they come from.
const EXTERNAL_METRICS: &[(&str, &str)] = &[(
    "kube_pod_container_status_restarts_total",
    "kube-state-metrics (kube-prometheus-stack); a process cannot count its own restarts",
)];

/// Every metric an expression reads: `stowage_*` names anywhere, and any name before a `{`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let selector = regex::Regex::new(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{").expect("a valid regex");
    let ours = regex::Regex::new(r"\bstowage_[a-z0-9_]+").expect("a valid regex");
    selector
        .captures_iter(expr)
        .map(|c| c[1].to_string())
        .chain(ours.find_iter(expr).map(|m| m.as_str().to_string()))
        .collect()
}

#[test]
fn dashboard_and_alerts_use_only_metrics_that_exist() {
    let registered = registered_metrics();
    let r = render("monitoring");
    let rule: PrometheusRule = one(r, "PrometheusRule");
    let mut exprs: Vec<(String, String)> = rule
        .spec
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .map(|r| (format!("alert {}", r.alert), r.expr.clone()))
        .collect();
    let alerts: BTreeSet<&str> = rule
        .spec
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .map(|r| r.alert.as_str())
        .collect();
    for want in [
        "StowagePodsPendingTooLong",
        "StowageLaunchFailures",
        "StowageInsufficientCapacity",
        "StowageOnDemandAboveCap",
        "StowageNoLeader",
        "StowageControllerRestarts",
    ] {
        assert!(alerts.contains(want), "{want}: {alerts:?}");
    }
    let cm: ConfigMap = one(r, "ConfigMap");
    let dashboard: Value = serde_json::from_str(
        cm.data
            .as_ref()
            .and_then(|d| d.get("stowage.json"))
            .expect("stowage.json"),
    )
    .expect("the dashboard is JSON");
    for panel in dashboard["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            exprs.push((
                format!("panel {}", panel["title"]),
                t["expr"].as_str().expect("expr").to_string(),
            ));
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if let Some(q) = v["query"]["query"].as_str() {
            exprs.push((format!("variable {}", v["name"]), q.to_string()));
        }
    }
    let mut used = BTreeSet::new();
    for (what, expr) in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{what}: no metric in {expr}");
        for name in names {
            let known =
                registered.contains(&name) || EXTERNAL_METRICS.iter().any(|(n, _)| *n == name);
            assert!(known, "{what}: {name} is not a registered metric ({expr})");
            used.insert(name);
        }
    }
    // What the dashboard is for: nodes by pool and capacity type, pending pods, launch latency,
    // cost, spot share (allocatable by capacity type), disruptions.
    for name in [
        "stowage_nodes",
        "stowage_pending_pods",
        "stowage_nodeclaims_initialized_duration_seconds_bucket",
        "stowage_cost_per_hour_usd",
        "stowage_nodes_allocatable",
        "stowage_nodeclaims_terminated_total",
    ] {
        assert!(used.contains(name), "{name} unused");
    }
}

#[test]
fn the_metric_check_refuses_an_unknown_name() {
    let registered = registered_metrics();
    let names = metric_names("sum(rate(stowage_launch_failures_total{job=\"x\"}[5m]))");
    assert!(names.iter().any(|n| !registered.contains(n)));
    assert!(registered.contains("stowage_launch_errors_total"));
}

/// Leaf paths of a values tree (`a.b.c`); empty maps and lists are leaves.
fn leaves(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) if !m.is_empty() && !prefix.ends_with("nodeSelector") => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                // Maps of Kubernetes fields are one value each.
                if ["resources", "podSecurityContext", "securityContext"].contains(&p.as_str()) {
                    out.push(p);
                } else {
                    leaves(v, &p, out);
                }
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[test]
fn every_value_is_documented_and_in_the_schema() {
    let chart = workspace().join("charts/stowage");
    let values: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart.join("values.yaml")).unwrap())
            .unwrap();
    let readme = std::fs::read_to_string(chart.join("README.md")).unwrap();
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(chart.join("values.schema.json")).unwrap())
            .unwrap();
    let mut paths = Vec::new();
    leaves(&values, "", &mut paths);
    assert!(paths.len() > 40, "{paths:?}");
    for path in paths {
        assert!(
            readme.contains(&format!("| `{path}` |")),
            "{path} is not in the chart README's values table"
        );
        let mut node = &schema;
        for part in path.split('.') {
            node = &node["properties"][part];
        }
        assert!(
            node["description"].is_string(),
            "{path} has no description in values.schema.json"
        );
    }
}
