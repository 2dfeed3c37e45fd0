//! Drift and expiry on the whole simulated cluster: editing a node class's AMI alias or a
//! NodePool's template marks every node launched before as `Drifted` with the reason, within
//! seconds of virtual time (reverting the edit clears it), and the disruption controller replaces
//! them all under a budget of one; `expireAfter` rotates every node. The simulated cluster's
//! referee checks that no PDB or budget was broken and no pod lost.
#![allow(clippy::unwrap_used)] // the script helpers unwrap like the tests

use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::json;
use stowage_api::conditions::{DRIFTED, INITIALIZED};
use stowage_api::{NodeClaim, NodePool};
use stowage_tests::{eventually, simulate};

const SCENARIO: &str = r#"
name: drift
duration: 20m
catalog: { source: synthetic, types: 8 }
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
        metadata: { labels: { team: web } }
        spec:
          nodeClassRef: { group: aws.stowage.dev, kind: EC2NodeClass, name: default }
timeline:
  - at: 0s
    create: { name: web, replicas: 12, requests: { cpu: 500m, memory: 512Mi } }
"#;

/// Initialized claims not being deleted: name -> the reason of their `Drifted` condition.
async fn drift_reasons(client: &kube::Client) -> BTreeMap<String, Option<String>> {
    let claims: Vec<NodeClaim> = Api::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items;
    claims
        .into_iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none() && c.is_true(INITIALIZED))
        .map(|c| {
            let reason = c
                .condition(DRIFTED)
                .filter(|d| d.is_true())
                .map(|d| d.reason.clone());
            (c.name_any(), reason)
        })
        .collect()
}

/// Waits until every claim of `before` still there has `reason` (a drifted claim may already
/// have been replaced by the disruption controller), and at least one is left to show it.
async fn all_drifted(client: &kube::Client, before: &[String], reason: &str, within: Duration) {
    eventually(&format!("every node {reason}"), within, || async {
        let now = drift_reasons(client).await;
        let left: Vec<&Option<String>> = before.iter().filter_map(|n| now.get(n)).collect();
        (!left.is_empty() && left.iter().all(|r| r.as_deref() == Some(reason))).then_some(())
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn an_ami_alias_or_template_change_drifts_every_node_and_reverting_clears_it() {
    let (_report, metrics) = simulate(SCENARIO, |env, ctx| async move {
        let client = env.client.clone();
        let before: Vec<String> = eventually(
            "12 pods on initialized nodes",
            Duration::from_secs(300),
            || async {
                let claims = drift_reasons(&client).await;
                let pods: Vec<k8s_openapi::api::core::v1::Pod> =
                    Api::namespaced(client.clone(), "default")
                        .list(&ListParams::default().labels("sim.stowage.dev/workload=web"))
                        .await
                        .unwrap()
                        .items;
                let running = pods
                    .iter()
                    .filter(|p| {
                        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    })
                    .count();
                (running == 12 && !claims.is_empty()).then(|| claims.into_keys().collect())
            },
        )
        .await;
        assert!(
            drift_reasons(&client).await.values().all(Option::is_none),
            "nothing drifted before the edits"
        );
        // Editing only what governs the pool drifts nothing.
        let pools: Api<NodePool> = Api::all(client.clone());
        pools
            .patch(
                "default",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"weight": 10, "limits": {"cpu": "1000"}}})),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(drift_reasons(&client).await.values().all(Option::is_none));

        // Another AMI: the class resolves again (housekeeping, every 30 s), its nodes drift.
        let kind = stowage_sim::node_class_kind();
        let resource = kube::api::ApiResource {
            group: kind.group.clone(),
            version: kind.version.clone(),
            api_version: kind.api_version(),
            kind: kind.kind.clone(),
            plural: kind.plural.clone(),
        };
        let classes: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let alias = |a: &str| json!({"spec": {"amiSelectorTerms": [{"alias": a}]}});
        classes
            .patch(
                "default",
                &PatchParams::default(),
                &Patch::Merge(alias("bottlerocket@latest")),
            )
            .await
            .unwrap();
        all_drifted(&client, &before, "AMIDrift", Duration::from_secs(90)).await;
        // The gauge is written at the end of the pass that drifted them.
        let ami = eventually("the drifted gauge", Duration::from_secs(30), || async {
            let m = ctx.render_metrics();
            m.contains("stowage_nodeclaims_drifted{nodepool=\"default\",reason=\"AMIDrift\"}")
                .then_some(m)
        })
        .await;
        classes
            .patch(
                "default",
                &PatchParams::default(),
                &Patch::Merge(alias("al2023@latest")),
            )
            .await
            .unwrap();
        eventually("the AMI drift cleared", Duration::from_secs(90), || async {
            drift_reasons(&client)
                .await
                .values()
                .all(Option::is_none)
                .then_some(())
        })
        .await;

        // A template label: every node drifts by the NodePool's hash.
        pools
            .patch(
                "default",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"spec": {"template": {"metadata": {"labels": {"team": "search"}}}}}),
                ),
            )
            .await
            .unwrap();
        all_drifted(&client, &before, "NodePoolDrifted", Duration::from_secs(30)).await;
        ami
    })
    .await;
    let counted: usize = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("stowage_nodeclaims_drifted{nodepool=\"default\",reason=\"AMIDrift\"} ")
        })
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(counted >= 1, "{metrics}");
}

/// Initialized claims not being deleted, by name.
async fn live_claims(client: &kube::Client) -> Vec<String> {
    drift_reasons(client).await.into_keys().collect()
}

/// Running pods of the `web` workload.
async fn running_web(client: &kube::Client) -> usize {
    let pods: Vec<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels("sim.stowage.dev/workload=web"))
        .await
        .unwrap()
        .items;
    pods.iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .count()
}

/// Waits for the 12 web pods on initialized nodes; the claims then.
async fn settled(client: &kube::Client) -> Vec<String> {
    eventually(
        "12 pods on initialized nodes",
        Duration::from_secs(600),
        || async {
            let claims = live_claims(client).await;
            (running_web(client).await == 12 && claims.len() >= 3).then_some(claims)
        },
    )
    .await
}

const ROTATION: &str = r#"
name: rotation
duration: 3h
catalog: { source: synthetic, types: 8 }
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
        metadata: { labels: { team: web } }
        spec:
          nodeClassRef: { group: aws.stowage.dev, kind: EC2NodeClass, name: default }
          EXPIRE
      disruption:
        consolidateAfter: Never
        budgets: [{ nodes: "1" }]
timeline:
  - at: 0s
    create: { name: web, replicas: 12, requests: { cpu: "3", memory: 1Gi }, pdb: { maxUnavailable: "1" } }
"#;

/// What the rotation tests edit to drift every node.
#[derive(Clone, Copy)]
enum Edit {
    TemplateLabel,
    AmiAlias,
}

/// Drifts every node with `edit` under a budget of one; all are replaced, one at a time, with no
/// PDB broken and no pod lost.
async fn drift_rotation(edit: Edit) {
    let yaml = ROTATION.replace("EXPIRE", "expireAfter: Never");
    let (report, replaced) = simulate(&yaml, move |env, _ctx| async move {
        let client = env.client.clone();
        let before = settled(&client).await;
        match edit {
            Edit::TemplateLabel => {
                let pools: Api<NodePool> = Api::all(client.clone());
                pools
                    .patch(
                        "default",
                        &PatchParams::default(),
                        &Patch::Merge(json!({"spec": {"template": {"metadata": {"labels": {"team": "search"}}}}})),
                    )
                    .await
                    .unwrap();
            }
            Edit::AmiAlias => {
                let kind = stowage_sim::node_class_kind();
                let resource = kube::api::ApiResource {
                    group: kind.group.clone(),
                    version: kind.version.clone(),
                    api_version: kind.api_version(),
                    kind: kind.kind.clone(),
                    plural: kind.plural.clone(),
                };
                let classes: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
                classes
                    .patch(
                        "default",
                        &PatchParams::default(),
                        &Patch::Merge(
                            json!({"spec": {"amiSelectorTerms": [{"alias": "bottlerocket@latest"}]}}),
                        ),
                    )
                    .await
                    .unwrap();
            }
        }
        eventually(
            "every drifted node replaced, the pods Running",
            Duration::from_secs(2 * 3600),
            || async {
                let now = live_claims(&client).await;
                (before.iter().all(|c| !now.contains(c)) && running_web(&client).await == 12)
                    .then_some(())
            },
        )
        .await;
        before.len()
    })
    .await;
    assert!(replaced >= 3);
    assert_eq!(report.budget_violations, 0, "{:?}", report.violations);
    assert_eq!(report.pdb_violations, 0, "{:?}", report.violations);
    assert_eq!(report.pods_lost, 0);
    let drifted = report
        .disruptions_by_reason
        .get("Drifted")
        .copied()
        .unwrap_or(0);
    assert!(
        drifted >= replaced as u64,
        "{:?}",
        report.disruptions_by_reason
    );
    let most = report
        .max_disrupting_by_pool
        .get("default")
        .copied()
        .unwrap_or(0);
    assert_eq!(most, 1, "a budget of one: one node disrupting at a time");
}

#[tokio::test(start_paused = true)]
async fn a_template_change_replaces_every_node_under_a_budget_of_one() {
    drift_rotation(Edit::TemplateLabel).await;
}

#[tokio::test(start_paused = true)]
async fn an_ami_alias_change_replaces_every_node_under_a_budget_of_one() {
    drift_rotation(Edit::AmiAlias).await;
}

#[tokio::test(start_paused = true)]
async fn expire_after_rotates_every_node_without_breaking_the_pdb() {
    let yaml = ROTATION.replace("EXPIRE", "expireAfter: 1h");
    let (report, rotated) = simulate(&yaml, |env, _ctx| async move {
        let client = env.client.clone();
        let before = settled(&client).await;
        eventually(
            "every node past its expireAfter replaced, the pods Running",
            Duration::from_secs(2 * 3600),
            || async {
                let now = live_claims(&client).await;
                (before.iter().all(|c| !now.contains(c)) && running_web(&client).await == 12)
                    .then_some(())
            },
        )
        .await;
        before.len()
    })
    .await;
    assert!(rotated >= 3);
    assert_eq!(report.pdb_violations, 0, "{:?}", report.violations);
    assert_eq!(report.pods_lost, 0);
}
