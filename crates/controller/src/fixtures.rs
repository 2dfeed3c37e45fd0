//! Builders for the objects unit tests use (test-only).

use k8s_openapi::api::core::v1::{
    Container, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodCondition, PodSpec, PodStatus,
    ResourceRequirements, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use stowage_api::conditions::LAUNCHED;
use stowage_api::labels;
use stowage_api::{NodeClaim, NodeClaimSpec};

pub fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

/// A pod the scheduler marked unschedulable.
pub fn pending_pod(ns: &str, name: &str, cpu: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            uid: Some(format!("uid-{name}")),
            creation_timestamp: Some(Time(ts("2026-01-01T00:00:00Z"))),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "app".into(),
                resources: Some(ResourceRequirements {
                    requests: Some([("cpu".to_string(), Quantity(cpu.into()))].into()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("Unschedulable".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

/// The pod, bound to `node` and running.
pub fn bound(mut pod: Pod, node: &str) -> Pod {
    pod.spec.as_mut().unwrap().node_name = Some(node.into());
    pod.status = Some(PodStatus {
        phase: Some("Running".into()),
        ..Default::default()
    });
    pod
}

pub fn owned_by(mut pod: Pod, kind: &str) -> Pod {
    pod.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "apps/v1".into(),
        kind: kind.into(),
        name: "owner".into(),
        uid: "owner-uid".into(),
        ..Default::default()
    }]);
    pod
}

pub fn node(name: &str, provider_id: &str, ready: bool) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            provider_id: Some(provider_id.into()),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            allocatable: Some(
                [
                    ("cpu".to_string(), Quantity("4".into())),
                    ("memory".to_string(), Quantity("16Gi".into())),
                ]
                .into(),
            ),
            ..Default::default()
        }),
    }
}

pub fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        ..Default::default()
    }
}

pub fn claim(name: &str, pool: &str) -> NodeClaim {
    let mut c = NodeClaim::new(name, NodeClaimSpec::default());
    c.metadata.labels = Some([(labels::NODEPOOL.to_string(), pool.to_string())].into());
    c.metadata.uid = Some(format!("uid-{name}"));
    c
}

pub fn launched(mut c: NodeClaim, provider_id: &str) -> NodeClaim {
    let status = c.status_mut();
    status.provider_id = Some(provider_id.into());
    status.set_true(LAUNCHED, "Launched", ts("2026-01-01T00:00:00Z"));
    c
}
