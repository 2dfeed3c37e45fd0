//! The simulated cloud's HTTP bridge: a `RemoteCloud` (what `stowage run --cloud-provider
//! simulated` drives) against the fake cloud attached to the simulated API server, through the
//! server's own transport, as a controller process of its own reaches it.
// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use stowage_api::{NodeClaim, NodeClaimSpec, Requirement, labels};
use stowage_clock::{SharedClock, TokioClock};
use stowage_cloud::fake::FakeCloud;
use stowage_cloud::interruption::{
    InstanceStateChange, InterruptionEvent, InterruptionKind, InterruptionSource, MessageContent,
};
use stowage_cloud::{CapacityType, CloudProvider, OfferingKey};
use stowage_sim::ApiServer;
use stowage_sim::cloudbridge::RemoteCloud;

fn clock() -> SharedClock {
    Arc::new(TokioClock::starting_at(
        "2026-01-01T00:00:00Z".parse().unwrap(),
    ))
}

/// A served fake cloud, with or without its interruption queue, and a remote client of it.
async fn bridge(with_queue: bool) -> (FakeCloud, RemoteCloud) {
    let clock = clock();
    let api = ApiServer::new(clock.clone());
    let cloud = FakeCloud::builder()
        .karpenter_catalog(20)
        .clock(clock)
        .build();
    api.attach_cloud(Arc::new(cloud.clone()));
    if with_queue {
        api.attach_interruptions(Arc::new(cloud.clone()));
    }
    let client = kube::Client::new(api.service(), "default");
    (cloud, RemoteCloud::connect(client).await.unwrap())
}

fn claim(name: &str) -> NodeClaim {
    let mut c = NodeClaim::new(name, NodeClaimSpec::default());
    c.metadata.labels = Some([(labels::NODEPOOL.to_string(), "default".to_string())].into());
    c.spec.requirements.push(Requirement::in_(
        labels::CAPACITY_TYPE,
        ["spot"].iter().copied(),
    ));
    c
}

#[tokio::test(start_paused = true)]
async fn interruption_messages_cross_the_bridge_and_are_acknowledged_there() {
    let (cloud, remote) = bridge(true).await;
    // A launch through the bridge, then the fake cloud's own spot interruption of it.
    let launched = remote.create(&claim("a")).await.unwrap();
    let provider_id = launched.status.unwrap().provider_id.unwrap();
    cloud.interrupt(&provider_id).unwrap();
    // Every other kind of message the core must count and acknowledge.
    let mut stopped = InterruptionEvent::new(
        InterruptionKind::StateChange(InstanceStateChange::ShuttingDown),
        "i-000042",
    )
    .at("2026-01-01T00:01:00Z".parse().unwrap());
    stopped.offering = Some(OfferingKey {
        instance_type: "m5.large".into(),
        zone: "zone-b".into(),
        capacity_type: CapacityType::OnDemand,
    });
    let rebalance = InterruptionEvent::new(InterruptionKind::RebalanceRecommendation, "i-7");
    cloud.send_message(MessageContent::Events(vec![
        stopped.clone(),
        rebalance.clone(),
    ]));
    cloud.send_message(MessageContent::Ignored("AWS Health Event".into()));
    cloud.send_message(MessageContent::Malformed("not JSON".into()));

    let got = remote.receive().await.unwrap();
    assert_eq!(got.len(), 4);
    match &got[0].content {
        MessageContent::Events(events) => {
            assert_eq!(events.len(), 1);
            let e = &events[0];
            assert_eq!(e.kind, InterruptionKind::SpotInterruption);
            assert!(e.is_for(&provider_id), "{e:?} is not for {provider_id}");
            assert!(e.time.is_some());
            let o = e.offering.as_ref().unwrap();
            assert_eq!(o.capacity_type, CapacityType::Spot);
            assert_eq!(
                cloud.instance(&provider_id).unwrap().instance_type,
                o.instance_type
            );
        }
        other => panic!("expected the interruption warning, got {other:?}"),
    }
    assert_eq!(
        got[1].content,
        MessageContent::Events(vec![stopped, rebalance])
    );
    assert_eq!(
        got[2].content,
        MessageContent::Ignored("AWS Health Event".into())
    );
    assert_eq!(got[3].content, MessageContent::Malformed("not JSON".into()));
    // Received but not acknowledged: still held by the fake queue, until acknowledged remotely.
    assert_eq!(cloud.unacknowledged_messages(), 4);
    for m in &got {
        remote.acknowledge(&m.ack).await.unwrap();
    }
    assert_eq!(cloud.unacknowledged_messages(), 0);
    assert_eq!(cloud.acknowledged_messages(), 4);
}

#[tokio::test(start_paused = true)]
async fn an_unacknowledged_message_comes_back_after_its_visibility_timeout() {
    let (cloud, remote) = bridge(true).await;
    cloud.send_message(MessageContent::Ignored("x".into()));
    let first = remote.receive().await.unwrap();
    assert_eq!(first.len(), 1);
    // Not acknowledged: invisible for the visibility timeout (longer than one long poll, which
    // comes back empty over the bridge as it does in process), then delivered again.
    let start = tokio::time::Instant::now();
    assert!(remote.receive().await.unwrap().is_empty());
    let again = remote.receive().await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, first[0].id);
    assert!(start.elapsed() >= std::time::Duration::from_secs(30));
    assert_eq!(cloud.acknowledged_messages(), 0);
}

#[tokio::test(start_paused = true)]
async fn without_an_attached_queue_receive_is_an_error_not_an_empty_queue() {
    let (_cloud, remote) = bridge(false).await;
    let err = remote.receive().await.unwrap_err();
    assert!(
        err.to_string().contains("no interruption queue"),
        "unexpected error: {err}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_offering_marked_unavailable_remotely_is_kept_out_of_launches_there() {
    let (cloud, remote) = bridge(false).await;
    let launched = remote.create(&claim("a")).await.unwrap();
    let instance = cloud
        .instance(&launched.status.unwrap().provider_id.unwrap())
        .unwrap();
    let key = OfferingKey {
        instance_type: instance.instance_type.clone(),
        zone: instance.zone.clone(),
        capacity_type: instance.capacity_type,
    };
    assert!(!cloud.is_unavailable(&key));
    remote.mark_unavailable(&key, std::time::Duration::from_secs(600));
    // The setter is synchronous; its call travels from a task of its own.
    for _ in 0..100 {
        if cloud.is_unavailable(&key) {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(cloud.is_unavailable(&key));
    let next = remote.create(&claim("b")).await.unwrap();
    let other = cloud
        .instance(&next.status.unwrap().provider_id.unwrap())
        .unwrap();
    assert_ne!(
        (other.instance_type, other.zone),
        (key.instance_type, key.zone),
        "the offering marked unavailable was bought again"
    );
}
