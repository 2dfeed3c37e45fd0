//! The controllers with the AWS provider against the AWS emulator (`tests/fakeaws`, moto), talking
//! to the simulated API server over HTTP (what `stowage sim serve` runs), in real time: a pending
//! pod gets a NodeClaim and the claim an EC2 instance.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, ListParams, PostParams};
use stowage_api::conditions::LAUNCHED;
use stowage_api::{EC2NodeClass, NodeClaim, labels};
use stowage_clock::{SharedClock, SystemClock};
use stowage_cloud::CloudProvider;
use stowage_controller::leader::LeaseConfig;
use stowage_controller::{Context, Leadership, Settings};
use stowage_sim::ApiServer;
use stowage_tests::{Harness, pod};

// The emulator harness the AWS crate's own tests use: one server per test binary, an account per test.
#[path = "../../crates/aws/tests/common/mod.rs"]
mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_pod_gets_an_ec2_instance_through_the_http_api_and_the_emulator() {
    let clients = common::Account::new().await.clients;
    let subnets: Vec<String> = clients
        .ec2
        .describe_subnets(vec![], vec![])
        .await
        .unwrap()
        .iter()
        .filter_map(|s| s.subnet_id().map(str::to_string))
        .collect();
    assert!(!subnets.is_empty());

    // The simulated API server over HTTP, as `stowage sim serve` runs it.
    let clock: SharedClock = Arc::new(SystemClock);
    let server = ApiServer::new(clock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(listener).await });
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&ApiServer::kubeconfig(&url)).unwrap();
    let kube_config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(kube_config).unwrap();

    let cluster = stowage_aws::userdata::ClusterInfo {
        name: "e2e".to_string(),
        endpoint: url.clone(),
        certificate_authority: "Q0EK".to_string(),
        cidr: "10.100.0.0/16".to_string(),
    };
    let provider: Arc<dyn CloudProvider> = Arc::new(
        stowage_aws::AwsCloudProvider::new(
            &clients,
            stowage_aws::ProviderSettings::new(cluster, "us-east-1"),
            clock.clone(),
        )
        .unwrap(),
    );
    let settings = Settings {
        cluster_name: "e2e".to_string(),
        ..Settings::default()
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        provider.clone(),
        clock.clone(),
        settings,
    ));
    let _running = stowage_controller::start(
        ctx.clone(),
        Leadership::Lease(LeaseConfig::new(
            "stowage-leader",
            "kube-system",
            "e2e-replica",
        )),
    );

    // The objects a user applies, through the HTTP client.
    let h = Harness {
        api: server.clone(),
        client: client.clone(),
        cloud: stowage_cloud::fake::FakeCloud::new(vec![]),
        clock,
        settings: Settings::default(),
    };
    let class: EC2NodeClass = serde_json::from_value(serde_json::json!({
        "apiVersion": "aws.stowage.dev/v1", "kind": "EC2NodeClass", "metadata": {"name": "default"},
        "spec": {
            "amiSelectorTerms": [{"alias": "al2023@latest"}],
            "subnetSelectorTerms": subnets.iter().map(|s| serde_json::json!({"id": s})).collect::<Vec<_>>(),
            "securityGroupSelectorTerms": [{"name": "default"}],
            "instanceProfile": "stowage-node"
        }
    }))
    .unwrap();
    Api::<EC2NodeClass>::all(client.clone())
        .create(&PostParams::default(), &class)
        .await
        .unwrap();
    h.nodepool("default", |p| {
        p.spec.template.spec.requirements = vec![stowage_api::Requirement::in_(
            labels::INSTANCE_TYPE,
            ["m5.large", "c5.large", "m5.xlarge"],
        )];
    })
    .await;
    h.pending_pod(pod("web", "500m", "512Mi")).await;

    let claims: Api<NodeClaim> = Api::all(client.clone());
    let started = std::time::Instant::now();
    let claim = loop {
        let list = claims.list(&ListParams::default()).await.unwrap().items;
        if let Some(c) = list.into_iter().find(|c| c.is_true(LAUNCHED)) {
            break c;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no launched nodeclaim within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let provider_id = claim.provider_id().unwrap().to_string();
    assert!(provider_id.starts_with("aws:///us-east-1"), "{provider_id}");
    assert!(
        ["m5.large", "c5.large", "m5.xlarge"]
            .contains(&claim.label(labels::INSTANCE_TYPE).unwrap())
    );
    let instances = provider.list().await.unwrap();
    assert_eq!(instances.len(), 1, "one instance tagged for the cluster");
    assert_eq!(instances[0].provider_id(), Some(provider_id.as_str()));
    assert!(ctx.is_leader());
}
