//! The chart's RBAC is least privilege, proven against the code: the real controllers (two
//! replicas electing a leader on a Lease, as `stowage run` starts them) run against the simulated
//! API server in audit mode through provisioning, termination (evictions a PDB blocks, then pods
//! deleted when the drain budget is spent), garbage collection, node-class and NodePool status,
//! a spot interruption (replacement, drain, learnt rates stored in their ConfigMap) and a leader
//! hand-over; then every request they made must be allowed by the ClusterRole and
//! Role that Helm renders from charts/stowage, and every rule there must have been used, or be
//! listed in [`NOT_EXERCISED`] with the reason it is needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{Value, json};
use stowage_api::NodeClaim;
use stowage_cloud::CloudProvider;
use stowage_controller::leader::LeaseConfig;
use stowage_controller::{Context, Leadership, Running, Settings};
use stowage_sim::apiserver::{ApiServerOptions, AuditLog, AuditRecord, ResourceRequest};
use stowage_sim::{Scenario, SimEnv, SimOptions, Simulation};
use stowage_tests::eventually;

/// The release the chart is rendered as.
const RELEASE: &str = "stowage";
/// The release namespace: the Lease and Events about cluster-scoped objects live here.
const NAMESPACE: &str = "stowage-system";
/// The chart's default `settings.leaseName`.
const LEASE: &str = "stowage-leader";

/// Rules the controllers need although no request in this test uses them, each with the reason:
/// (role kind, API group, resource, verb, why).
const NOT_EXERCISED: &[(&str, &str, &str, &str, &str)] = &[
    (
        "ClusterRole",
        "stowage.dev",
        "nodepools/finalizers",
        "update",
        "NodeClaims carry an owner reference to their NodePool with blockOwnerDeletion; the \
         OwnerReferencesPermissionEnforcement admission plugin requires update on the owner's \
         finalizers for that (an admission check, not a request)",
    ),
    (
        "ClusterRole",
        "stowage.dev",
        "nodeclaims/finalizers",
        "update",
        "registration gives the Node an owner reference to its NodeClaim with blockOwnerDeletion \
         (same admission check)",
    ),
];

/// The cluster: one pool whose claims have a drain budget, and a cloud node lifecycle slower than
/// Stowage's termination (so Stowage deletes the Nodes itself, as it does whenever it is first).
const POOL: &str = r#"
catalog: { source: synthetic, types: 8 }
timings: { nodeLifecycle: 10m }
nodeClasses:
  - name: default
    spec:
      amiSelectorTerms: [{ alias: al2023@latest }]
      subnetSelectorTerms: [{ tags: { stowage.dev/discovery: test } }]
      securityGroupSelectorTerms: [{ tags: { stowage.dev/discovery: test } }]
      role: NodeRole
nodePools:
  - name: default
    spec:
      template:
        spec:
          nodeClassRef: { group: aws.stowage.dev, kind: EC2NodeClass, name: default }
          terminationGracePeriod: 2m
"#;

// --- Rendering the chart with Helm's engine -----------------------------------------------------

/// The test venv's Python (`make venv` installs helm-python-sdk there).
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("STOWAGE_FAKEAWS_PYTHON").map(PathBuf::from)
        && p.exists()
    {
        return p;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let p = home.join(".cache/stowage/venv/bin/python");
    assert!(
        p.exists(),
        "the test venv's Python was not found (STOWAGE_FAKEAWS_PYTHON unset or missing, and no {}): run `make venv` first",
        p.display()
    );
    p
}

/// Renders charts/stowage with Helm's own engine (helm-python-sdk) and returns every object.
fn render_chart(values: &Value) -> Vec<Value> {
    const SCRIPT: &str = r#"
import json, sys
import helm_python as helm
import yaml
out = helm.Chart.load(sys.argv[1]).render(json.loads(sys.argv[2]), name=sys.argv[3], namespace=sys.argv[4], is_install=True)
docs = [d for path in sorted(out) if path.endswith((".yaml", ".yml")) for d in yaml.safe_load_all(out[path]) if d]
print(json.dumps(docs))
"#;
    let chart = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/stowage");
    let out = Command::new(python())
        .args(["-c", SCRIPT])
        .arg(&chart)
        .arg(values.to_string())
        .args([RELEASE, NAMESPACE])
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "rendering the chart failed (is helm-python-sdk in the venv? `make venv`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the render script prints JSON")
}

/// The RBAC objects of the rendered chart.
struct Rbac {
    cluster_role: ClusterRole,
    cluster_binding: ClusterRoleBinding,
    role: Role,
    role_binding: RoleBinding,
}

fn one<T: k8s_openapi::serde::de::DeserializeOwned>(objects: &[Value], kind: &str) -> T {
    let found: Vec<&Value> = objects.iter().filter(|o| o["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "the chart renders exactly one {kind}");
    serde_json::from_value(found[0].clone()).unwrap_or_else(|e| panic!("{kind}: {e}"))
}

fn rendered_rbac() -> Rbac {
    let objects = render_chart(&json!({ "settings": { "clusterName": "test" } }));
    Rbac {
        cluster_role: one(&objects, "ClusterRole"),
        cluster_binding: one(&objects, "ClusterRoleBinding"),
        role: one(&objects, "Role"),
        role_binding: one(&objects, "RoleBinding"),
    }
}

// --- RBAC evaluation (the authorizer's rule matching) -----------------------------------------

fn lists(rule: &PolicyRule) -> [&[String]; 3] {
    [
        rule.api_groups.as_deref().unwrap_or_default(),
        rule.resources.as_deref().unwrap_or_default(),
        &rule.verbs,
    ]
}

/// Whether `rule` allows `req`, as the RBAC authorizer decides it (no wildcards: the test
/// refuses them before asking).
fn allows(rule: &PolicyRule, req: &ResourceRequest) -> bool {
    let [groups, resources, verbs] = lists(rule);
    let names = rule.resource_names.as_deref().unwrap_or_default();
    verbs.contains(&req.verb)
        && groups.contains(&req.group)
        && resources.contains(&req.resource_path())
        && (names.is_empty() || (!req.name.is_empty() && names.contains(&req.name)))
}

/// One grant: (role kind, group, resource, verb).
type Grant = (String, String, String, String);

fn grants(kind: &str, rule: &PolicyRule) -> Vec<Grant> {
    let [groups, resources, verbs] = lists(rule);
    let mut out = Vec::new();
    for g in groups {
        for r in resources {
            for v in verbs {
                out.push((kind.into(), g.clone(), r.clone(), v.clone()));
            }
        }
    }
    out
}

// --- The run -----------------------------------------------------------------------------------

/// A replica as `stowage run` starts one in the chart's Deployment: Lease in the release
/// namespace, Events about cluster-scoped objects there too, every request audited.
fn replica(env: &SimEnv, audit: &AuditLog, identity: &str) -> Running {
    let client = kube::Client::new(env.api.audited_service(audit.clone()), "default");
    let settings = Settings {
        namespace: NAMESPACE.into(),
        lease_name: LEASE.into(),
        identity: identity.into(),
        ..Settings::default()
    };
    let ctx = Arc::new(
        Context::new(client, env.provider.clone(), env.clock.clone(), settings)
            .with_interruption_source(env.cloud.clone()),
    );
    stowage_controller::start(
        ctx,
        Leadership::Lease(LeaseConfig::new(LEASE, NAMESPACE, identity)),
    )
}

async fn claims(client: &kube::Client) -> Vec<NodeClaim> {
    Api::<NodeClaim>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

async fn running_pods(client: &kube::Client) -> usize {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let all = pods
        .list(&ListParams::default().labels("sim.stowage.dev/workload=web"))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    all.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .count()
}

/// What the controllers did, for the assertions that the run covered what it claims to.
#[derive(Debug, Default)]
struct Covered {
    terminated_by_hand: bool,
    orphan_terminated: bool,
    vanished_claim_deleted: bool,
    interrupted_replaced: bool,
    handed_over: bool,
}

/// Runs the controllers through every job they have and returns the audit log.
async fn audited_run() -> (AuditLog, Covered) {
    let yaml = format!(
        "name: rbac\nduration: 90m\n{POOL}\ntimeline:\n  - at: 0s\n    create: {{ name: web, replicas: 4, requests: {{ cpu: 300m, memory: 256Mi }}, pdb: {{ maxUnavailable: \"0\" }} }}\n"
    );
    let scenario = Scenario::from_yaml("rbac", &yaml).expect("valid scenario");
    let mut options = SimOptions::default();
    let mut api = ApiServerOptions::default();
    api.namespaces.push(NAMESPACE.into());
    options.api = api;
    let audit = AuditLog::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let log = audit.clone();
    Simulation::new(scenario, options)
        .run(move |env: SimEnv| async move {
            let covered = script(env, log).await;
            let _ = tx.send(covered);
        })
        .await
        .expect("the simulation runs");
    let covered = rx.await.expect("the script finished within the scenario");
    (audit, covered)
}

async fn script(env: SimEnv, audit: AuditLog) -> Covered {
    let mut covered = Covered::default();
    let client = env.client.clone();
    let a = replica(&env, &audit, "replica-a");
    let b = replica(&env, &audit, "replica-b");
    // Provisioning, registration, initialization, node-class and NodePool status.
    eventually("4 running pods", Duration::from_secs(600), || async {
        (running_pods(&client).await == 4).then_some(())
    })
    .await;
    // Termination of a claim deleted by hand: evictions blocked by the PDB, then the pods are
    // deleted once the pool's terminationGracePeriod is spent, the Node deleted, the finalizer
    // removed.
    let victim = claims(&client).await.remove(0).name_any();
    Api::<NodeClaim>::all(client.clone())
        .delete(&victim, &DeleteParams::default())
        .await
        .expect("delete a nodeclaim");
    eventually(
        "the deleted claim gone",
        Duration::from_secs(900),
        || async { (!claims(&client).await.iter().any(|c| c.name_any() == victim)).then_some(()) },
    )
    .await;
    covered.terminated_by_hand = true;
    // Garbage collection: an instance without a NodeClaim...
    let mut ghost = NodeClaim::new("ghost", Default::default());
    ghost.metadata.labels = Some(
        [(
            stowage_api::labels::NODEPOOL.to_string(),
            "default".to_string(),
        )]
        .into(),
    );
    let ghost = env.cloud.create(&ghost).await.expect("launch an orphan");
    let ghost_id = ghost.provider_id().unwrap_or_default().to_string();
    eventually(
        "the orphan terminated",
        Duration::from_secs(900),
        || async { env.cloud.instance(&ghost_id).is_none().then_some(()) },
    )
    .await;
    covered.orphan_terminated = true;
    // ...and a NodeClaim whose instance went away behind Stowage's back.
    eventually("running pods again", Duration::from_secs(900), || async {
        (running_pods(&client).await == 4).then_some(())
    })
    .await;
    let survivor = claims(&client)
        .await
        .into_iter()
        .find(|c| c.metadata.deletion_timestamp.is_none() && c.provider_id().is_some())
        .expect("a launched claim");
    let pid = survivor.provider_id().unwrap_or_default().to_string();
    env.cloud.vanish(&pid).expect("terminate the instance");
    eventually(
        "the claim without an instance deleted",
        Duration::from_secs(1200),
        || async {
            (!claims(&client)
                .await
                .iter()
                .any(|c| c.name_any() == survivor.name_any()))
            .then_some(())
        },
    )
    .await;
    covered.vanished_claim_deleted = true;
    // A spot interruption warning: the claim is marked, its Node cordoned, a replacement bought,
    // the claim drained and deleted; the learnt rate is stored in its ConfigMap.
    eventually("running pods again", Duration::from_secs(900), || async {
        (running_pods(&client).await == 4).then_some(())
    })
    .await;
    let interrupted = claims(&client)
        .await
        .into_iter()
        .find(|c| c.metadata.deletion_timestamp.is_none() && c.provider_id().is_some())
        .expect("a launched claim");
    env.cloud
        .interrupt(interrupted.provider_id().unwrap_or_default())
        .expect("interrupt the instance");
    eventually(
        "the interrupted claim replaced",
        Duration::from_secs(600),
        || async {
            let all = claims(&client).await;
            (!all.iter().any(|c| c.name_any() == interrupted.name_any())
                && env.cloud.acknowledged_messages() >= 1)
                .then_some(())
        },
    )
    .await;
    covered.interrupted_replaced = true;
    // Long enough for the periodic store of the rates (a patch of the ConfigMap by name).
    tokio::time::sleep(Duration::from_secs(360)).await;
    // Leader hand-over: the leader stops (SIGTERM) and releases the Lease; the standby leads.
    let (leader, standby) = if a.ctx.is_leader() { (a, b) } else { (b, a) };
    leader.shutdown().await;
    eventually("the standby to lead", Duration::from_secs(60), || async {
        standby.ctx.is_leader().then_some(())
    })
    .await;
    covered.handed_over = true;
    tokio::time::sleep(Duration::from_secs(120)).await;
    drop(standby);
    covered
}

#[tokio::test(start_paused = true)]
async fn the_charts_rbac_allows_every_request_of_the_controllers_and_no_more() {
    let rbac = rendered_rbac();
    let (audit, covered) = audited_run().await;
    assert!(
        covered.terminated_by_hand
            && covered.orphan_terminated
            && covered.vanished_claim_deleted
            && covered.interrupted_replaced
            && covered.handed_over,
        "{covered:?}"
    );

    // The bindings give the roles to the chart's ServiceAccount in the release namespace.
    let role_name = rbac.cluster_role.name_any();
    assert_eq!(rbac.cluster_binding.role_ref.kind, "ClusterRole");
    assert_eq!(rbac.cluster_binding.role_ref.name, role_name);
    assert_eq!(rbac.role.namespace().as_deref(), Some(NAMESPACE));
    assert_eq!(rbac.role_binding.namespace().as_deref(), Some(NAMESPACE));
    assert_eq!(rbac.role_binding.role_ref.kind, "Role");
    assert_eq!(rbac.role_binding.role_ref.name, rbac.role.name_any());
    for subjects in [&rbac.cluster_binding.subjects, &rbac.role_binding.subjects] {
        let subjects = subjects.as_deref().unwrap_or_default();
        assert_eq!(subjects.len(), 1, "{subjects:?}");
        assert_eq!(subjects[0].kind, "ServiceAccount");
        assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));
        assert_eq!(subjects[0].name, RELEASE, "the chart's ServiceAccount");
    }

    let cluster_rules = rbac.cluster_role.rules.clone().unwrap_or_default();
    let role_rules = rbac.role.rules.clone().unwrap_or_default();
    // No wildcards, no non-resource URLs (discovery is every user's by default).
    for rule in cluster_rules.iter().chain(&role_rules) {
        for list in lists(rule) {
            assert!(
                !list.iter().any(|s| s.contains('*')),
                "wildcard in {rule:?}"
            );
        }
        assert!(rule.non_resource_urls.is_none(), "{rule:?}");
    }

    // Every request is allowed.
    let requests = audit.distinct();
    assert!(
        requests.len() > 20,
        "the run made few distinct requests: {requests:?}"
    );
    let mut used: BTreeSet<Grant> = BTreeSet::new();
    let mut denied = Vec::new();
    for record in &requests {
        let req = match record {
            AuditRecord::Resource(r) => r,
            AuditRecord::NonResource { path, .. } => {
                // The default `system:discovery` ClusterRole lets every authenticated user read
                // discovery documents.
                assert!(
                    path == "/version" || path.starts_with("/api"),
                    "non-resource request {record}"
                );
                continue;
            }
        };
        let mut allowed = false;
        if cluster_rules.iter().any(|r| allows(r, req)) {
            allowed = true;
            used.insert((
                "ClusterRole".into(),
                req.group.clone(),
                req.resource_path(),
                req.verb.clone(),
            ));
        }
        if req.namespace == NAMESPACE && role_rules.iter().any(|r| allows(r, req)) {
            allowed = true;
            used.insert((
                "Role".into(),
                req.group.clone(),
                req.resource_path(),
                req.verb.clone(),
            ));
        }
        if !allowed {
            denied.push(record.to_string());
        }
    }
    assert!(
        denied.is_empty(),
        "{} requests the chart's RBAC does not allow (add a rule to \
         charts/stowage/templates/rbac.yaml, or change the code), first ones:\n  {}",
        denied.len(),
        denied[..denied.len().min(20)].join("\n  ")
    );

    // Every grant is used, or listed with its reason.
    let not_exercised: BTreeMap<Grant, &str> = NOT_EXERCISED
        .iter()
        .map(|(k, g, r, v, why)| (((*k).into(), (*g).into(), (*r).into(), (*v).into()), *why))
        .collect();
    let granted: BTreeSet<Grant> = cluster_rules
        .iter()
        .flat_map(|r| grants("ClusterRole", r))
        .chain(role_rules.iter().flat_map(|r| grants("Role", r)))
        .collect();
    let unused: Vec<String> = granted
        .iter()
        .filter(|g| !used.contains(*g) && !not_exercised.contains_key(*g))
        .map(|(k, g, r, v)| format!("{k}: {v} {g}/{r}"))
        .collect();
    assert!(
        unused.is_empty(),
        "rules no request used (remove them, or list them in NOT_EXERCISED with the reason):\n  {}",
        unused.join("\n  ")
    );
    // A listed exception is granted and really not used (else it is stale).
    for (grant, why) in &not_exercised {
        assert!(
            granted.contains(grant),
            "NOT_EXERCISED lists {grant:?}, which is not granted ({why})"
        );
        assert!(
            !used.contains(grant),
            "NOT_EXERCISED lists {grant:?}, which the run used"
        );
    }
}
