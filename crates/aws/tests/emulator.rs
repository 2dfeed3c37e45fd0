//! The AWS provider through the real SDK against the emulator (moto + tests/fakeaws): catalogue,
//! discovery, launch templates, CreateFleet allocation, insufficient capacity, throttling,
//! idempotent create, batching, get/list/delete, drift, and how CreateFleet answers (partly
//! filled, over-filled, per-override errors) are read.

// Test helpers unwrap like the tests themselves (clippy.toml only exempts #[test] bodies).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use aws_sdk_ec2::types as ec2t;
use common::Account;
use serde_json::json;
use stowage_api::{CapacityType, EC2NodeClass, NodeClaim, NodePool, labels};
use stowage_aws::catalog::{self, CatalogSettings};
use stowage_aws::fleet::{ClaimRef, FleetKey, Override, launch_batch};
use stowage_aws::interruption::{InterruptionKind, InterruptionQueue};
use stowage_aws::provider::{AwsCloudProvider, SharedCatalog, cluster_tag};
use stowage_aws::settings::ProviderSettings;
use stowage_aws::unavailable::UnavailableOfferings;
use stowage_aws::userdata::ClusterInfo;
use stowage_clock::SystemClock;
use stowage_cloud::{CloudProvider, DriftReason, Error as CloudError};
use stowage_solver::InstanceType;

const ZONES: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const MIB: i64 = 1 << 20;

/// One test's world: an account with three tagged subnets and a tagged security group, a provider
/// and a resolved node class `default`.
struct World {
    account: Account,
    provider: AwsCloudProvider,
    cluster: String,
    subnets: BTreeMap<String, String>,
    security_group: String,
}

fn node_class(cluster: &str, profile: Option<&str>) -> EC2NodeClass {
    serde_json::from_value(json!({
        "apiVersion": "aws.stowage.dev/v1",
        "kind": "EC2NodeClass",
        "metadata": {"name": "default", "generation": 1},
        "spec": {
            "amiSelectorTerms": [{"alias": "al2023@latest"}],
            "subnetSelectorTerms": [{"tags": {"stowage.dev/discovery": cluster}}],
            "securityGroupSelectorTerms": [{"tags": {"stowage.dev/discovery": cluster}}],
            "instanceProfile": profile,
            "tags": {"team": "ml"}
        }
    }))
    .unwrap()
}

fn pool() -> NodePool {
    serde_json::from_value(json!({
        "apiVersion": "stowage.dev/v1",
        "kind": "NodePool",
        "metadata": {"name": "default"},
        "spec": {"template": {"spec": {"nodeClassRef": {"group": "aws.stowage.dev", "kind": "EC2NodeClass", "name": "default"}}}}
    }))
    .unwrap()
}

/// A claim of pool `default` for `types` and `capacity_types`.
fn claim(name: &str, types: &[&str], capacity_types: &[&str]) -> NodeClaim {
    serde_json::from_value(json!({
        "apiVersion": "stowage.dev/v1",
        "kind": "NodeClaim",
        "metadata": {"name": name, "uid": format!("uid-{name}"), "labels": {labels::NODEPOOL: "default"}},
        "spec": {
            "requirements": [
                {"key": labels::INSTANCE_TYPE, "operator": "In", "values": types},
                {"key": labels::CAPACITY_TYPE, "operator": "In", "values": capacity_types}
            ],
            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
            "nodeClassRef": {"group": "aws.stowage.dev", "kind": "EC2NodeClass", "name": "default"}
        }
    }))
    .unwrap()
}

impl World {
    async fn new() -> World {
        World::with_settings(|_| {}).await
    }

    async fn with_settings(tune: impl FnOnce(&mut ProviderSettings)) -> World {
        let account = Account::new().await;
        let ec2 = Arc::clone(&account.clients.ec2);
        let cluster = format!("c{}", account.id);
        let mut subnets = BTreeMap::new();
        for s in ec2.describe_subnets(vec![], vec![]).await.unwrap() {
            let zone = s.availability_zone().unwrap().to_string();
            if ZONES.contains(&zone.as_str()) {
                subnets.insert(zone, s.subnet_id().unwrap().to_string());
            }
        }
        assert_eq!(subnets.len(), 3, "default subnets in {ZONES:?}");
        let groups = ec2
            .describe_security_groups(
                vec![],
                vec![
                    ec2t::Filter::builder()
                        .name("group-name")
                        .values("default")
                        .build(),
                ],
            )
            .await
            .unwrap();
        let security_group = groups[0].group_id().unwrap().to_string();
        let mut resources: Vec<String> = subnets.values().cloned().collect();
        resources.push(security_group.clone());
        let discovery = ec2t::Tag::builder()
            .key("stowage.dev/discovery")
            .value(&cluster)
            .build();
        ec2.create_tags(resources, vec![discovery]).await.unwrap();

        let cluster_info = ClusterInfo {
            name: cluster.clone(),
            endpoint: "https://api.example.internal".to_string(),
            certificate_authority: "Q0EK".to_string(),
            cidr: "10.100.0.0/16".to_string(),
        };
        let mut settings = ProviderSettings::new(cluster_info, "us-east-1");
        tune(&mut settings);
        // One catalogue for every test of the binary: each account sees the same emulated region.
        static CATALOG: OnceLock<SharedCatalog> = OnceLock::new();
        let shared = CATALOG
            .get_or_init(|| SharedCatalog::new("us-east-1").unwrap())
            .clone();
        let provider = AwsCloudProvider::with_catalog(
            &account.clients,
            settings,
            Arc::new(SystemClock),
            shared,
        );
        let status = provider
            .resolve_node_class(&node_class(&cluster, Some("stowage-node")))
            .await
            .unwrap();
        assert!(
            status.is_true("Ready"),
            "node class not ready: {:?}",
            status.conditions
        );
        World {
            account,
            provider,
            cluster,
            subnets,
            security_group,
        }
    }

    async fn types(&self) -> Vec<InstanceType> {
        self.provider.instance_types(&pool()).await.unwrap()
    }

    /// Instances of this cluster that are not terminated.
    async fn live_instances(&self) -> Vec<ec2t::Instance> {
        let filters = vec![
            ec2t::Filter::builder()
                .name(format!("tag:{}", cluster_tag(&self.cluster)))
                .values("owned")
                .build(),
            ec2t::Filter::builder()
                .name("instance-state-name")
                .values("running")
                .values("pending")
                .build(),
        ];
        self.account
            .clients
            .ec2
            .describe_instances(vec![], filters)
            .await
            .unwrap()
    }
}

fn find<'a>(types: &'a [InstanceType], name: &str) -> &'a InstanceType {
    types
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("{name} not in the catalogue"))
}

fn label<'a>(claim: &'a NodeClaim, key: &str) -> &'a str {
    claim
        .label(key)
        .unwrap_or_else(|| panic!("claim has no label {key}"))
}

/// The cheapest available offering of `capacity_type` among `names`: (type, zone, price).
fn cheapest(
    types: &[InstanceType],
    names: &[&str],
    capacity_type: CapacityType,
) -> (String, String, f64) {
    let mut best: Option<(String, String, f64)> = None;
    for t in types.iter().filter(|t| names.contains(&t.name.as_str())) {
        for o in t
            .offerings
            .iter()
            .filter(|o| o.available && o.capacity_type == capacity_type)
        {
            if best.as_ref().is_none_or(|b| o.price_per_hour < b.2) {
                best = Some((t.name.clone(), o.zone.clone(), o.price_per_hour));
            }
        }
    }
    best.expect("an available offering")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_and_allocatable_from_the_api() {
    let w = World::new().await;
    let types = w.types().await;

    let m5 = find(&types, "m5.large");
    assert_eq!(m5.capacity.cpu_millis(), 2000);
    assert_eq!(m5.capacity.pods(), 29, "3 ENIs x (10 - 1) + 2");
    let reserved_memory = (11 * 29 + 255) * MIB;
    let vm_memory = m5.capacity.memory_bytes();
    assert!(
        (7577 * MIB..=7578 * MIB).contains(&vm_memory),
        "8 GiB minus 7.5 %: {vm_memory}"
    );
    let a = m5.allocatable();
    assert_eq!(
        a.cpu_millis(),
        2000 - 70,
        "6 % of the first core + 1 % of the second"
    );
    assert_eq!(a.memory_bytes(), vm_memory - reserved_memory - 100 * MIB);
    let zones: Vec<&str> = m5.offerings.iter().map(|o| o.zone.as_str()).collect();
    assert!(
        zones.iter().all(|z| ZONES.contains(z)),
        "offerings only in the node class's zones: {zones:?}"
    );
    for zone in ZONES {
        let od = m5
            .offerings
            .iter()
            .find(|o| o.zone == zone && o.capacity_type == CapacityType::OnDemand)
            .unwrap();
        let spot = m5
            .offerings
            .iter()
            .find(|o| o.zone == zone && o.capacity_type == CapacityType::Spot)
            .unwrap();
        assert!(
            (od.price_per_hour - 0.096).abs() < 1e-9,
            "on-demand price from GetProducts"
        );
        assert!(spot.price_per_hour < od.price_per_hour && spot.price_per_hour > 0.0);
    }

    let p5 = find(&types, "p5.48xlarge");
    assert_eq!(p5.capacity.get(labels::RESOURCE_NVIDIA_GPU), 8);
    assert_eq!(p5.capacity.cpu_millis(), 192_000);
    assert_eq!(
        p5.labels.get(labels::INSTANCE_GPU_NAME).map(String::as_str),
        Some("h100")
    );
    assert_eq!(
        p5.labels
            .get(labels::INSTANCE_GPU_MANUFACTURER)
            .map(String::as_str),
        Some("nvidia")
    );
    assert!(p5.capacity.get(labels::RESOURCE_EFA) > 0);
    assert_eq!(p5.allocatable().get(labels::RESOURCE_NVIDIA_GPU), 8);

    let inf2 = find(&types, "inf2.xlarge");
    assert_eq!(inf2.capacity.get(labels::RESOURCE_NEURON), 1);
    assert_eq!(inf2.capacity.get(labels::RESOURCE_NEURONCORE), 2);
    assert_eq!(
        inf2.labels
            .get(labels::INSTANCE_ACCELERATOR_NAME)
            .map(String::as_str),
        Some("inferentia2")
    );
    assert_eq!(inf2.allocatable().cpu_millis(), 4000 - 80);

    // Specialty hardware the live API reports, and the embedded catalogue (generated from the
    // same answers) carries the same labels and resources for it.
    let embedded = catalog::embedded("us-east-1", &CatalogSettings::default()).unwrap();
    let label = |t: &InstanceType, k: &str| t.labels.get(k).cloned();
    for (name, key, value) in [
        ("g6f.4xlarge", labels::INSTANCE_GPU_PARTITION_SIZE, "0.5"),
        ("g6f.4xlarge", labels::INSTANCE_GPU_NAME, "l4"),
        ("gr6f.4xlarge", labels::INSTANCE_GPU_MEMORY, "11444"),
        ("f2.6xlarge", labels::INSTANCE_FPGA_COUNT, "1"),
        ("f2.48xlarge", labels::INSTANCE_FPGA_MANUFACTURER, "xilinx"),
        (
            "vt1.6xlarge",
            labels::INSTANCE_MEDIA_ACCELERATOR_NAME,
            "u30",
        ),
        ("vt1.6xlarge", labels::INSTANCE_MEDIA_ACCELERATOR_COUNT, "2"),
        ("m4.large", labels::INSTANCE_CURRENT_GENERATION, "false"),
        ("m7i.large", labels::INSTANCE_CURRENT_GENERATION, "true"),
    ] {
        let live = find(&types, name);
        assert_eq!(label(live, key).as_deref(), Some(value), "{name} {key}");
        assert_eq!(live.is_exotic(), !name.starts_with('m'), "{name}");
        let offline = find(&embedded, name);
        assert_eq!(
            offline.labels, live.labels,
            "{name}: embedded and live labels"
        );
    }
    assert_eq!(
        find(&types, "g6f.4xlarge")
            .capacity
            .get(labels::RESOURCE_NVIDIA_GPU),
        1,
        "a GPU slice is one GPU to the device plugin"
    );

    // dl1.24xlarge is absent from the emulator; it comes from the embedded catalogue.
    assert!(types.iter().all(|t| t.name != "dl1.24xlarge"));
    let dl1 = find(&embedded, "dl1.24xlarge");
    assert_eq!(dl1.capacity.get(labels::RESOURCE_HABANA_GAUDI), 8);
    assert_eq!(dl1.capacity.cpu_millis(), 96_000);
    assert!(dl1.allocatable().get(labels::RESOURCE_HABANA_GAUDI) == 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_resolves_tagged_subnets_groups_and_alias_images() {
    let w = World::new().await;
    let status = w
        .provider
        .resolve_node_class(&node_class(&w.cluster, Some("stowage-node")))
        .await
        .unwrap();
    let subnets: BTreeMap<String, String> = status
        .subnets
        .iter()
        .map(|s| (s.zone.clone(), s.id.clone()))
        .collect();
    assert_eq!(subnets, w.subnets);
    assert_eq!(
        status
            .security_groups
            .iter()
            .map(|g| g.id.as_str())
            .collect::<Vec<_>>(),
        [w.security_group.as_str()]
    );
    assert_eq!(status.instance_profile.as_deref(), Some("stowage-node"));
    let standard = w
        .account
        .clients
        .ssm
        .get_parameter("/aws/service/eks/optimized-ami/1.33/amazon-linux-2023/x86_64/standard/recommended/image_id".into())
        .await
        .unwrap()
        .unwrap();
    let ami = status
        .amis
        .iter()
        .find(|a| a.id == standard)
        .expect("the standard x86_64 image");
    assert!(
        ami.requirements
            .iter()
            .any(|r| r.key == labels::ARCH && r.values == ["amd64"])
    );
    assert!(
        status.amis.len() >= 4,
        "standard and nvidia for both arches, and neuron: {:?}",
        status.amis
    );

    // Selectors that match nothing: not ready, with a reason.
    let status = w
        .provider
        .resolve_node_class(&node_class("no-such-cluster", Some("p")))
        .await
        .unwrap();
    let ready = status.condition("Ready").unwrap();
    assert!(
        !ready.is_true() && ready.message.contains("subnet"),
        "{ready:?}"
    );
    let status = w
        .provider
        .resolve_node_class(&node_class(&w.cluster, None))
        .await
        .unwrap();
    assert!(
        status
            .condition("Ready")
            .unwrap()
            .message
            .contains("instanceProfile")
    );
    match w
        .provider
        .create(&claim("x", &["m5.large"], &["on-demand"]))
        .await
    {
        Err(CloudError::NodeClassNotReady { .. }) => {}
        other => panic!("expected NodeClassNotReady, got {other:?}"),
    }
    // A class the provider has not resolved (yet) is not a failure: the caller waits.
    let mut unresolved = claim("y", &["m5.large"], &["on-demand"]);
    unresolved.spec.node_class_ref.name = "not-resolved-yet".into();
    match w.provider.create(&unresolved).await {
        Err(CloudError::NodeClassNotResolved { name }) => assert_eq!(name, "not-resolved-yet"),
        other => panic!("expected NodeClassNotResolved, got {other:?}"),
    }
    // The generic path the controllers use: the object as JSON in, readiness and fields out.
    let generic = w
        .provider
        .reconcile_node_class(
            &serde_json::to_value(node_class(&w.cluster, Some("stowage-node"))).unwrap(),
        )
        .await
        .unwrap();
    assert!(generic.ready, "{generic:?}");
    assert_eq!(
        generic.fields["subnets"].as_array().map(Vec::len),
        Some(w.subnets.len())
    );
    assert!(!generic.fields.contains_key("conditions"));
    let generic = w
        .provider
        .reconcile_node_class(
            &serde_json::to_value(node_class("no-such-cluster", Some("p"))).unwrap(),
        )
        .await
        .unwrap();
    assert!(
        !generic.ready && generic.message.contains("subnet"),
        "{generic:?}"
    );

    // Images by name and owner: only arm64 images match, so only arm64 types are offered.
    let mut by_name = node_class(&w.cluster, Some("stowage-node"));
    by_name.spec.ami_selector_terms = vec![stowage_api::AmiSelectorTerm {
        name: Some("al2023-ami-2023*-kernel-6.1-arm64".into()),
        owner: Some("amazon".into()),
        ..Default::default()
    }];
    let status = w.provider.resolve_node_class(&by_name).await.unwrap();
    assert!(status.is_true("Ready"), "{:?}", status.conditions);
    assert!(!status.amis.is_empty());
    for ami in &status.amis {
        assert!(ami.name.as_deref().unwrap().ends_with("arm64"), "{ami:?}");
        assert!(
            ami.requirements
                .iter()
                .any(|r| r.key == labels::ARCH && r.values == ["arm64"])
        );
    }
    let types = w.types().await;
    assert!(types.iter().any(|t| t.name == "m6g.large"));
    assert!(
        types
            .iter()
            .all(|t| t.labels.get(labels::ARCH).map(String::as_str) == Some("arm64"))
    );
    let got = w
        .provider
        .create(&claim("arm", &["m6g.large", "m5.large"], &["on-demand"]))
        .await
        .unwrap();
    assert_eq!(label(&got, labels::INSTANCE_TYPE), "m6g.large");
    let image = got.status.as_ref().unwrap().image_id.as_deref().unwrap();
    assert!(status.amis.iter().any(|a| a.id == image));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_templates_are_reused_and_stale_ones_deleted() {
    let w = World::new().await;
    let a = w
        .provider
        .create(&claim("lt-a", &["m5.large"], &["on-demand"]))
        .await
        .unwrap();
    let first = w.provider.launch_templates().await.unwrap();
    assert_eq!(first.len(), 1, "one type, one template: {first:?}");
    let b = w
        .provider
        .create(&claim("lt-b", &["m5.large"], &["on-demand"]))
        .await
        .unwrap();
    assert_ne!(a.provider_id(), b.provider_id());
    assert_eq!(
        w.provider.launch_templates().await.unwrap(),
        first,
        "the second launch reused the template"
    );
    assert_eq!(w.account.call_count("CreateLaunchTemplate"), 1);

    // Still current: nothing to delete.
    assert!(
        w.provider
            .delete_stale_launch_templates()
            .await
            .unwrap()
            .is_empty()
    );

    // The class switches to Bottlerocket: the AL2023 template is stale and deleted on resolve.
    let mut bottlerocket = node_class(&w.cluster, Some("stowage-node"));
    bottlerocket.spec.ami_selector_terms[0].alias = Some("bottlerocket@latest".into());
    bottlerocket.metadata.generation = Some(2);
    let status = w.provider.resolve_node_class(&bottlerocket).await.unwrap();
    assert!(status.is_true("Ready"));
    assert!(w.provider.launch_templates().await.unwrap().is_empty());
    let c = w
        .provider
        .create(&claim("lt-c", &["m5.large"], &["on-demand"]))
        .await
        .unwrap();
    // Nodes launched from the old image drifted; the new one did not.
    assert_eq!(
        w.provider.is_drifted(&a).await.unwrap(),
        Some(DriftReason::AmiDrift)
    );
    assert_eq!(w.provider.is_drifted(&c).await.unwrap(), None);
    let second = w.provider.launch_templates().await.unwrap();
    assert_eq!(second.len(), 1);
    assert_ne!(
        second.keys().collect::<Vec<_>>(),
        first.keys().collect::<Vec<_>>()
    );

    // Once the class is gone, its templates are stale.
    w.provider.remove_node_class("default");
    let deleted = w.provider.delete_stale_launch_templates().await.unwrap();
    assert_eq!(deleted, second.keys().cloned().collect::<Vec<_>>());
    assert!(w.provider.launch_templates().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_fleet_buys_the_cheapest_offering() {
    let w = World::new().await;
    let names = [
        "m5.large",
        "m5.xlarge",
        "c5.large",
        "c5.xlarge",
        "m6i.large",
    ];
    let types = w.types().await;

    let (want_type, want_zone, _) = cheapest(&types, &names, CapacityType::Spot);
    let got = w
        .provider
        .create(&claim("cheap-spot", &names, &["spot", "on-demand"]))
        .await
        .unwrap();
    assert_eq!(
        label(&got, labels::CAPACITY_TYPE),
        "spot",
        "spot is preferred when offered"
    );
    assert_eq!(
        (
            label(&got, labels::INSTANCE_TYPE),
            label(&got, labels::ZONE)
        ),
        (want_type.as_str(), want_zone.as_str())
    );
    let status = got.status.as_ref().unwrap();
    assert!(
        status
            .provider_id
            .as_deref()
            .unwrap()
            .starts_with(&format!("aws:///{want_zone}/i-"))
    );
    assert!(status.capacity.contains_key("cpu") && status.allocatable.contains_key("memory"));
    assert!(
        status
            .image_id
            .as_deref()
            .is_some_and(|i| i.starts_with("ami-"))
    );

    let (od_type, _, _) = cheapest(&types, &names, CapacityType::OnDemand);
    let got = w
        .provider
        .create(&claim("cheap-od", &names, &["on-demand"]))
        .await
        .unwrap();
    assert_eq!(label(&got, labels::CAPACITY_TYPE), "on-demand");
    assert_eq!(label(&got, labels::INSTANCE_TYPE), od_type);

    // The instance carries the cluster, pool, claim and user tags.
    let instances = w.live_instances().await;
    let tags: BTreeMap<&str, &str> = instances
        .iter()
        .find(|i| i.tags().iter().any(|t| t.value() == Some("cheap-od")))
        .unwrap()
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert_eq!(tags.get(labels::NODECLAIM), Some(&"cheap-od"));
    assert_eq!(tags.get(labels::NODEPOOL), Some(&"default"));
    assert_eq!(tags.get("eks:eks-cluster-name"), Some(&w.cluster.as_str()));
    assert_eq!(tags.get("team"), Some(&"ml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insufficient_spot_capacity_is_cached_and_the_retry_moves_on() {
    let w = World::new().await;
    let names = ["m5.large", "m5.xlarge"];
    let types = w.types().await;
    let (first_choice, _, _) = cheapest(&types, &names, CapacityType::Spot);
    let other = names.iter().find(|n| **n != first_choice).unwrap();
    w.account.post(
        "/_fake/ice",
        json!([{"instance_type": first_choice, "capacity_type": "spot"}]),
    );

    // The fleet reports the ICE'd offerings and fills the request from the other type.
    let got = w
        .provider
        .create(&claim("ice-1", &names, &["spot", "on-demand"]))
        .await
        .unwrap();
    assert_eq!(label(&got, labels::INSTANCE_TYPE), *other);
    assert_eq!(label(&got, labels::CAPACITY_TYPE), "spot");
    let marked = w.provider.unavailable_offerings();
    for zone in ZONES {
        assert!(
            marked.iter().any(|k| k.instance_type == first_choice
                && k.zone == zone
                && k.capacity_type == CapacityType::Spot),
            "{first_choice} spot in {zone} cached unavailable: {marked:?}"
        );
    }
    let types = w.types().await;
    let t = find(&types, &first_choice);
    assert!(
        t.offerings
            .iter()
            .filter(|o| o.capacity_type == CapacityType::Spot)
            .all(|o| !o.available)
    );
    assert!(
        t.offerings
            .iter()
            .filter(|o| o.capacity_type == CapacityType::OnDemand)
            .all(|o| o.available)
    );

    // No spot capacity at all: the launch fails with InsufficientCapacity, the retry buys on-demand.
    w.account.post(
        "/_fake/ice",
        json!([{"instance_type": other, "capacity_type": "spot"}]),
    );
    let c = claim("ice-2", &names, &["spot", "on-demand"]);
    match w.provider.create(&c).await {
        Err(CloudError::InsufficientCapacity { offerings }) => {
            assert!(
                offerings
                    .iter()
                    .all(|k| k.capacity_type == CapacityType::Spot && k.instance_type == *other)
            );
            assert_eq!(offerings.len(), 3, "{offerings:?}");
        }
        other => panic!("expected InsufficientCapacity, got {other:?}"),
    }
    let got = w.provider.create(&c).await.unwrap();
    assert_eq!(label(&got, labels::CAPACITY_TYPE), "on-demand");
    assert_eq!(w.live_instances().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_then_surfaces_as_throttled() {
    let w = World::new().await;
    let fault = |count: u32| json!([{"action": "CreateFleet", "count": count, "status": 503, "code": "RequestLimitExceeded"}]);
    w.account.post("/_fake/faults", fault(2));
    let got = w
        .provider
        .create(&claim("throttled", &["m5.large"], &["on-demand"]))
        .await
        .unwrap();
    assert_eq!(label(&got, labels::INSTANCE_TYPE), "m5.large");
    assert_eq!(
        w.account.call_count("CreateFleet"),
        3,
        "two throttled attempts, then success"
    );

    w.account.post("/_fake/faults", fault(3));
    match w
        .provider
        .create(&claim("throttled-2", &["m5.large"], &["on-demand"]))
        .await
    {
        Err(CloudError::Throttled(message)) => {
            assert!(message.contains("RequestLimitExceeded"), "{message}")
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    assert_eq!(w.live_instances().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_create_never_launches_a_second_instance() {
    let w = World::new().await;
    let c = claim("once", &["m5.large", "c5.large"], &["spot"]);
    let first = w.provider.create(&c).await.unwrap();
    let again = w.provider.create(&c).await.unwrap();
    assert_eq!(first.provider_id(), again.provider_id());
    assert_eq!(w.account.call_count("CreateFleet"), 1);
    assert_eq!(w.live_instances().await.len(), 1);
    let listed = w.provider.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].metadata.name.as_deref(), Some("once"));
    assert_eq!(listed[0].provider_id(), first.provider_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_launches_are_coalesced_into_one_fleet() {
    // A wider window than the 35 ms default: the three creates run on one task of a debug build.
    let w = World::with_settings(|s| {
        s.launch_coalescing.idle = std::time::Duration::from_secs(1);
        s.launch_coalescing.max_wait = std::time::Duration::from_secs(5);
    })
    .await;
    let p = &w.provider;
    let claims: Vec<NodeClaim> = (0..3)
        .map(|i| claim(&format!("batch-{i}"), &["m5.large"], &["on-demand"]))
        .collect();
    let results = futures::future::join_all(claims.iter().map(|c| p.create(c))).await;
    let ids: std::collections::BTreeSet<String> = results
        .into_iter()
        .map(|r| r.unwrap().provider_id().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3, "one instance per claim");
    assert_eq!(
        w.account.call_count("CreateFleet"),
        1,
        "one CreateFleet for the three claims"
    );
    let mut names: Vec<String> = p
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["batch-0", "batch-1", "batch-2"],
        "each instance tagged with its claim"
    );

    // Concurrent gets and deletes are batched too.
    let gets = futures::future::join_all(ids.iter().map(|id| p.get(id))).await;
    assert!(gets.iter().all(|g| g.is_ok()));
    let before = w.account.call_count("TerminateInstances");
    let listed = p.list().await.unwrap();
    let deletes = futures::future::join_all(listed.iter().map(|c| p.delete(c))).await;
    assert!(deletes.iter().all(|d| d.is_ok()), "{deletes:?}");
    assert_eq!(w.account.call_count("TerminateInstances") - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_of_a_terminated_instance_is_not_found() {
    let w = World::new().await;
    let c = w
        .provider
        .create(&claim("gone", &["m5.large"], &["on-demand"]))
        .await
        .unwrap();
    let id = c.provider_id().unwrap().to_string();
    assert_eq!(
        w.provider.get(&id).await.unwrap().metadata.name.as_deref(),
        Some("gone")
    );
    w.provider.delete(&c).await.unwrap();
    assert!(matches!(
        w.provider.delete(&c).await,
        Err(CloudError::NotFound(_))
    ));
    assert!(matches!(
        w.provider.get(&id).await,
        Err(CloudError::NotFound(_))
    ));
    assert!(matches!(
        w.provider
            .get("aws:///us-east-1a/i-0000000000000000f")
            .await,
        Err(CloudError::NotFound(_))
    ));
    assert!(w.provider.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interruption_messages_are_received_parsed_and_acknowledged() {
    let w = World::new().await;
    let c = w
        .provider
        .create(&claim("interrupted", &["m5.large"], &["spot"]))
        .await
        .unwrap();
    let instance = stowage_aws::instance::instance_id(c.provider_id().unwrap())
        .unwrap()
        .to_string();
    let url = w
        .account
        .sqs("CreateQueue", json!({"QueueName": "interruptions"}))["QueueUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let warning = json!({
        "version": "0", "id": "evt-1", "detail-type": "EC2 Spot Instance Interruption Warning",
        "source": "aws.ec2", "time": "2026-11-28T10:00:00Z", "region": "us-east-1",
        "resources": [format!("arn:aws:ec2:us-east-1:{}:instance/{instance}", w.account.id)],
        "detail": {"instance-id": instance, "instance-action": "terminate"}
    });
    w.account.sqs(
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": warning.to_string()}),
    );
    w.account.sqs(
        "SendMessage",
        json!({"QueueUrl": url, "MessageBody": "{not json"}),
    );

    let queue = InterruptionQueue::new(Arc::clone(&w.account.clients.sqs), "interruptions")
        .await
        .unwrap();
    assert_eq!(queue.url(), url);
    let received = queue.receive(1).await.unwrap();
    assert_eq!(received.len(), 2);
    let events: Vec<_> = received
        .iter()
        .filter_map(|r| r.event.as_ref().ok().cloned().flatten())
        .collect();
    assert_eq!(
        events.len(),
        1,
        "the malformed message is an error, not an event"
    );
    assert_eq!(events[0].kind, InterruptionKind::SpotInterruption);
    assert_eq!(events[0].instance_ids, [instance]);
    for r in &received {
        queue.acknowledge(&r.receipt_handle).await.unwrap();
    }
    assert!(
        queue.receive(0).await.unwrap().is_empty(),
        "acknowledged messages are gone"
    );
}

/// One EventBridge event as the rule delivers it to SQS.
fn eventbridge(
    account: &str,
    id: &str,
    detail_type: &str,
    source: &str,
    instance: &str,
    detail: serde_json::Value,
) -> String {
    json!({
        "version": "0", "id": id, "detail-type": detail_type, "source": source,
        "account": account, "time": "2026-11-28T10:00:00Z", "region": "us-east-1",
        "resources": [format!("arn:aws:ec2:us-east-1:{account}:instance/{instance}")],
        "detail": detail
    })
    .to_string()
}

/// Each of the four EventBridge rules' messages, a state change that is not an interruption and
/// a malformed body, sent to the emulator's SQS and read back through the provider's
/// `InterruptionSource` (the real SDK: ReceiveMessage with a long poll, DeleteMessage).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_interruption_rule_becomes_a_typed_event_through_sqs() {
    use stowage_cloud::{
        InstanceStateChange, InterruptionKind as Kind, InterruptionSource, MessageContent,
    };
    let account = Account::new().await;
    let id = account.id.to_string();
    let url = account.sqs("CreateQueue", json!({"QueueName": "stowage-interruptions"}))["QueueUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let bodies = [
        eventbridge(
            &id,
            "e-spot",
            "EC2 Spot Instance Interruption Warning",
            "aws.ec2",
            "i-0001",
            json!({"instance-id": "i-0001", "instance-action": "terminate"}),
        ),
        eventbridge(
            &id,
            "e-rebalance",
            "EC2 Instance Rebalance Recommendation",
            "aws.ec2",
            "i-0002",
            json!({"instance-id": "i-0002"}),
        ),
        eventbridge(
            &id,
            "e-health",
            "AWS Health Event",
            "aws.health",
            "i-0003",
            json!({"service": "EC2", "eventTypeCategory": "scheduledChange",
                   "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
                   "affectedEntities": [{"entityValue": "i-0003"}, {"entityValue": "i-0004"}]}),
        ),
        eventbridge(
            &id,
            "e-stopping",
            "EC2 Instance State-change Notification",
            "aws.ec2",
            "i-0005",
            json!({"instance-id": "i-0005", "state": "stopping"}),
        ),
        eventbridge(
            &id,
            "e-running",
            "EC2 Instance State-change Notification",
            "aws.ec2",
            "i-0006",
            json!({"instance-id": "i-0006", "state": "running"}),
        ),
        "{\"detail-type\": 42".to_string(),
    ];
    for body in &bodies {
        account.sqs("SendMessage", json!({"QueueUrl": url, "MessageBody": body}));
    }
    let queue = InterruptionQueue::new(Arc::clone(&account.clients.sqs), "stowage-interruptions")
        .await
        .unwrap();
    let source: &dyn InterruptionSource = &queue;
    let mut messages = Vec::new();
    while messages.len() < bodies.len() {
        let batch = source.receive().await.unwrap();
        assert!(!batch.is_empty(), "messages are waiting");
        assert!(batch.len() <= 10);
        messages.extend(batch);
    }
    let mut events: Vec<(Kind, String)> = Vec::new();
    let (mut ignored, mut malformed) = (0, 0);
    for m in &messages {
        assert!(!m.id.is_empty() && !m.ack.0.is_empty());
        match &m.content {
            MessageContent::Events(es) => {
                for e in es {
                    assert_eq!(e.time, Some("2026-11-28T10:00:00Z".parse().unwrap()));
                    events.push((e.kind, e.instance_id.clone()));
                }
            }
            MessageContent::Ignored(why) => {
                assert!(why.contains("running"), "{why}");
                ignored += 1;
            }
            MessageContent::Malformed(why) => {
                assert!(why.contains("failed to parse"), "{why}");
                malformed += 1;
            }
        }
    }
    events.sort();
    assert_eq!(
        events,
        [
            (Kind::SpotInterruption, "i-0001".to_string()),
            (Kind::RebalanceRecommendation, "i-0002".to_string()),
            (Kind::ScheduledChange, "i-0003".to_string()),
            (Kind::ScheduledChange, "i-0004".to_string()),
            (
                Kind::StateChange(InstanceStateChange::Stopping),
                "i-0005".to_string()
            ),
        ]
    );
    assert_eq!((ignored, malformed), (1, 1));
    for m in &messages {
        source.acknowledge(&m.ack).await.unwrap();
    }
    assert!(
        queue.receive(0).await.unwrap().is_empty(),
        "acknowledged messages are deleted"
    );
    assert_eq!(account.call_count("DeleteMessage"), bodies.len() as u64);
}

/// `default` naming only an IAM role, as most Karpenter users write it.
fn role_class(cluster: &str, role: &str, generation: i64) -> EC2NodeClass {
    let mut class = node_class(cluster, None);
    class.spec.role = Some(role.to_string());
    class.metadata.generation = Some(generation);
    class
}

/// The managed instance profiles in the account: name -> role names.
async fn managed_profiles(w: &World) -> BTreeMap<String, Vec<String>> {
    w.account
        .clients
        .iam
        .list_instance_profiles("/stowage/".into())
        .await
        .unwrap()
        .into_iter()
        .map(|p| {
            let roles = p
                .roles()
                .iter()
                .map(|r| r.role_name().to_string())
                .collect();
            (p.instance_profile_name().to_string(), roles)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_only_class_gets_a_managed_instance_profile_until_it_goes() {
    let w = World::new().await;
    w.account.create_role("nodes-a");
    w.account.create_role("nodes-b");

    let status = w
        .provider
        .resolve_node_class(&role_class(&w.cluster, "nodes-a", 2))
        .await
        .unwrap();
    assert!(status.is_true("Ready"), "{status:?}");
    let profile = status.instance_profile.clone().expect("a managed profile");
    assert!(profile.starts_with("stowage_"), "{profile}");
    assert_eq!(
        managed_profiles(&w).await,
        BTreeMap::from([(profile.clone(), vec!["nodes-a".to_string()])])
    );
    let full = w
        .account
        .clients
        .iam
        .get_instance_profile(profile.clone())
        .await
        .unwrap()
        .unwrap();
    let tags: BTreeMap<&str, &str> = full.tags().iter().map(|t| (t.key(), t.value())).collect();
    assert_eq!(tags.get("stowage.dev/cluster"), Some(&w.cluster.as_str()));
    assert_eq!(tags.get("aws.stowage.dev/ec2nodeclass"), Some(&"default"));

    // Launches use it: the launch template names the profile.
    let node = w
        .provider
        .create(&claim("role-a", &["m5.large"], &["on-demand"]))
        .await
        .unwrap();
    let templates = w.provider.launch_templates().await.unwrap();
    assert_eq!(templates.len(), 1, "{templates:?}");
    let template = templates.keys().next().unwrap();
    let answer = w.account.ec2_query(
        "DescribeLaunchTemplateVersions",
        &[("LaunchTemplateName", template)],
    );
    assert!(
        answer.contains(&format!("<iamInstanceProfile><name>{profile}</name>")),
        "{answer}"
    );

    // Resolving again reuses it; a new role replaces the old one in the same profile.
    let again = w
        .provider
        .resolve_node_class(&role_class(&w.cluster, "nodes-a", 2))
        .await
        .unwrap();
    assert_eq!(again.instance_profile.as_deref(), Some(profile.as_str()));
    assert_eq!(w.account.call_count("CreateInstanceProfile"), 1);
    let changed = w
        .provider
        .resolve_node_class(&role_class(
            &w.cluster,
            "arn:aws:iam::123456789012:role/nodes-b",
            3,
        ))
        .await
        .unwrap();
    assert_eq!(changed.instance_profile.as_deref(), Some(profile.as_str()));
    assert_eq!(
        managed_profiles(&w).await,
        BTreeMap::from([(profile.clone(), vec!["nodes-b".to_string()])])
    );
    assert_eq!(w.account.call_count("CreateInstanceProfile"), 1);

    // The class goes: its profile stays while its instance runs, then is deleted.
    w.provider.remove_node_class("default");
    let none = std::collections::BTreeSet::new();
    let stale = w
        .provider
        .delete_stale_instance_profiles(&none)
        .await
        .unwrap();
    assert_eq!(stale.kept, vec![profile.clone()]);
    assert!(stale.deleted.is_empty());
    w.provider.delete(&node).await.unwrap();
    // The controller's hook sweeps in the background.
    w.provider.retain_node_classes(&none);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !managed_profiles(&w).await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the profile of the deleted class was not deleted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(w.account.call_count("DeleteInstanceProfile"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_denied_by_iam_is_not_retried_until_the_classes_change() {
    let w = World::new().await;
    w.account.post(
        "/_fake/faults",
        json!([{"action": "ListInstanceProfiles", "count": 100, "status": 403, "code": "AccessDenied", "message": "not authorized"}]),
    );
    let wait_for_calls = |n: u64| {
        let account = &w.account;
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while account.call_count("ListInstanceProfiles") < n {
                assert!(std::time::Instant::now() < deadline, "no sweep");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    let one = std::collections::BTreeSet::from(["default".to_string()]);
    w.provider.retain_node_classes(&one);
    wait_for_calls(1).await;
    // Let the sweep finish, then pass the same classes again: no second listing.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    w.provider.retain_node_classes(&one);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(w.account.call_count("ListInstanceProfiles"), 1);
    // A changed set of classes sweeps again.
    w.provider
        .retain_node_classes(&std::collections::BTreeSet::new());
    wait_for_calls(2).await;
}

// --- Drift: what the provider compares with each launched node ---------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_class_drift_is_judged_against_the_stamp_written_at_launch() {
    let w = World::new().await;
    let a = w
        .provider
        .create(&claim("stamped", &["m5.large"], &["on-demand"]))
        .await
        .unwrap();
    let stamp = w.provider.node_class_stamp("default").unwrap();
    let annotations = a.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get(labels::EC2NODECLASS_HASH),
        Some(&stamp.hash),
        "create stamps the class hash: {annotations:?}"
    );
    assert_eq!(
        annotations
            .get(labels::EC2NODECLASS_HASH_VERSION)
            .map(String::as_str),
        Some(stamp.version)
    );
    assert_eq!(w.provider.is_drifted(&a).await.unwrap(), None);

    // A selector edit that still selects the node's image, subnet and group: no drift.
    let mut reworded = node_class(&w.cluster, Some("stowage-node"));
    reworded.spec.subnet_selector_terms = w
        .subnets
        .values()
        .map(|id| stowage_api::SubnetSelectorTerm {
            id: Some(id.clone()),
            ..Default::default()
        })
        .collect();
    reworded.metadata.generation = Some(2);
    w.provider.resolve_node_class(&reworded).await.unwrap();
    assert_eq!(w.provider.node_class_stamp("default").unwrap(), stamp);
    assert_eq!(w.provider.is_drifted(&a).await.unwrap(), None);

    // A field the node keeps (its tags) changed: drifted.
    let mut retagged = reworded.clone();
    retagged.spec.tags.insert("team".into(), "search".into());
    retagged.metadata.generation = Some(3);
    w.provider.resolve_node_class(&retagged).await.unwrap();
    assert_ne!(w.provider.node_class_stamp("default").unwrap(), stamp);
    assert_eq!(
        w.provider.is_drifted(&a).await.unwrap(),
        Some(DriftReason::NodeClassDrift)
    );
    // A claim launched before stamps existed is not drifted by the hash (it is backfilled).
    let mut unstamped = a.clone();
    unstamped.metadata.annotations = None;
    assert_eq!(w.provider.is_drifted(&unstamped).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_outside_the_selected_subnets_or_groups_drift() {
    let w = World::new().await;
    let a = w
        .provider
        .create(&claim("placed", &["m5.large"], &["on-demand"]))
        .await
        .unwrap();
    let zone = label(&a, labels::ZONE).to_string();
    assert_eq!(w.provider.is_drifted(&a).await.unwrap(), None);

    // Another group now matches the selector: the node lacks it.
    let created = w.account.ec2_query(
        "CreateSecurityGroup",
        &[
            ("GroupName", "stowage-extra"),
            ("GroupDescription", "extra nodes group"),
        ],
    );
    let extra = created
        .split("<groupId>")
        .nth(1)
        .and_then(|s| s.split("</groupId>").next())
        .unwrap()
        .to_string();
    let discovery = ec2t::Tag::builder()
        .key("stowage.dev/discovery")
        .value(&w.cluster)
        .build();
    w.account
        .clients
        .ec2
        .create_tags(vec![extra], vec![discovery])
        .await
        .unwrap();
    let class = node_class(&w.cluster, Some("stowage-node"));
    w.provider.resolve_node_class(&class).await.unwrap();
    assert_eq!(
        w.provider.is_drifted(&a).await.unwrap(),
        Some(DriftReason::SecurityGroupDrift)
    );

    // Only the subnets of the other zones are selected now.
    let mut elsewhere = class.clone();
    elsewhere.spec.subnet_selector_terms = w
        .subnets
        .iter()
        .filter(|(z, _)| **z != zone)
        .map(|(_, id)| stowage_api::SubnetSelectorTerm {
            id: Some(id.clone()),
            ..Default::default()
        })
        .collect();
    elsewhere.metadata.generation = Some(2);
    w.provider.resolve_node_class(&elsewhere).await.unwrap();
    assert_eq!(
        w.provider.is_drifted(&a).await.unwrap(),
        Some(DriftReason::SubnetDrift)
    );
}

// --- CreateFleet answers, read by `fleet::launch_batch` (formerly against a canned EC2 stub) ---

/// An account with a launch template `lt` and the fleet key of the old canned tests: m5.large in
/// subnets of us-east-1a and us-east-1b, c5.large in us-east-1a, spot.
async fn fleet_world() -> (World, FleetKey) {
    let w = World::new().await;
    let ec2 = &w.account.clients.ec2;
    let image = w
        .account
        .clients
        .ssm
        .get_parameter("/aws/service/eks/optimized-ami/1.33/amazon-linux-2023/x86_64/standard/recommended/image_id".into())
        .await
        .unwrap()
        .unwrap();
    ec2.create_launch_template(
        "stowage-fleet-test".into(),
        ec2t::RequestLaunchTemplateData::builder()
            .image_id(image)
            .build(),
        vec![],
    )
    .await
    .unwrap();
    let o = |t: &str, zone: &str| Override {
        instance_type: t.into(),
        subnet_id: w.subnets[zone].clone(),
        zone: zone.into(),
    };
    let key = FleetKey {
        capacity_type: CapacityType::Spot,
        configs: vec![(
            "stowage-fleet-test".into(),
            vec![
                o("m5.large", "us-east-1a"),
                o("m5.large", "us-east-1b"),
                o("c5.large", "us-east-1a"),
            ],
        )],
        tags: vec![("team".into(), "fleet-test".into())],
    };
    (w, key)
}

fn claim_refs(n: usize) -> Vec<ClaimRef> {
    (0..n)
        .map(|i| ClaimRef {
            name: format!("claim-{i}"),
            token: format!("t{i}"),
        })
        .collect()
}

fn unavailable_cache() -> Arc<UnavailableOfferings> {
    Arc::new(UnavailableOfferings::new(
        Arc::new(SystemClock),
        std::time::Duration::from_secs(180),
    ))
}

/// Every instance of the account (any state): id -> (state, its NodeClaim tag).
async fn fleet_instances(w: &World) -> BTreeMap<String, (String, Option<String>)> {
    w.account
        .clients
        .ec2
        .describe_instances(vec![], vec![])
        .await
        .unwrap()
        .iter()
        .map(|i| {
            let state = i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_default();
            let claim = i
                .tags()
                .iter()
                .find(|t| t.key() == Some(labels::NODECLAIM))
                .and_then(|t| t.value())
                .map(str::to_string);
            (i.instance_id().unwrap().to_string(), (state, claim))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_filled_batch_tags_what_it_got_and_reports_capacity_for_the_rest() {
    let (w, key) = fleet_world().await;
    // m5.large has no spot capacity in either zone; the fleet fills two of three from c5.large.
    w.account.post(
        "/_fake/ice",
        json!([{"instance_type": "m5.large", "capacity_type": "spot"}]),
    );
    w.account.post("/_fake/fleet-fill", json!([{"extra": -1}]));
    let unavailable = unavailable_cache();
    let out = launch_batch(
        Arc::clone(&w.account.clients.ec2),
        Arc::clone(&unavailable),
        key,
        claim_refs(3),
    )
    .await;
    let first = out[0].as_ref().unwrap();
    assert_eq!(first.zone, "us-east-1a");
    assert_eq!(first.instance_type, "c5.large");
    assert_eq!(out[1].as_ref().unwrap().capacity_type, CapacityType::Spot);
    match &out[2] {
        Err(CloudError::InsufficientCapacity { offerings }) => {
            let zones: Vec<&str> = offerings.iter().map(|k| k.zone.as_str()).collect();
            assert_eq!(zones, ["us-east-1a", "us-east-1b"]);
        }
        other => panic!("expected InsufficientCapacity, got {other:?}"),
    }
    assert!(unavailable.is_unavailable("m5.large", "us-east-1b", CapacityType::Spot));
    assert!(!unavailable.is_unavailable("c5.large", "us-east-1a", CapacityType::Spot));
    // Each instance of the shared fleet is tagged with its claim, in claim order; none is
    // terminated.
    let instances = fleet_instances(&w).await;
    let second = out[1].as_ref().unwrap();
    assert_eq!(instances.len(), 2, "{instances:?}");
    assert_eq!(
        instances[&first.id],
        ("running".to_string(), Some("claim-0".to_string()))
    );
    assert_eq!(
        instances[&second.id],
        ("running".to_string(), Some("claim-1".to_string()))
    );
    assert_eq!(w.account.call_count("TerminateInstances"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_instances_are_terminated_and_other_errors_keep_their_code() {
    let (w, key) = fleet_world().await;
    let tags_before = w.account.call_count("CreateTags");
    // The fleet launches one instance more than the single claim asked for.
    w.account.post("/_fake/fleet-fill", json!([{"extra": 1}]));
    let unavailable = unavailable_cache();
    let out = launch_batch(
        Arc::clone(&w.account.clients.ec2),
        Arc::clone(&unavailable),
        key.clone(),
        claim_refs(1),
    )
    .await;
    assert_eq!(out.len(), 1);
    let kept = out[0].as_ref().unwrap();
    let instances = fleet_instances(&w).await;
    assert_eq!(instances.len(), 2, "the fleet over-filled: {instances:?}");
    for (id, (state, claim)) in &instances {
        if *id == kept.id {
            assert_eq!(state, "running");
        } else {
            assert!(
                state == "terminated" || state == "shutting-down",
                "the extra instance is given back: {id} {state}"
            );
        }
        // A single claim is tagged at launch (tag specifications), never afterwards.
        assert_eq!(claim.as_deref(), Some("claim-0"));
    }
    assert_eq!(
        w.account.call_count("CreateTags"),
        tags_before,
        "tagged at launch"
    );

    // An error that is not about capacity keeps its AWS code and marks nothing unavailable.
    w.account.post(
        "/_fake/ice",
        json!([{"code": "UnauthorizedOperation", "message": "denied"}]),
    );
    let out = launch_batch(
        Arc::clone(&w.account.clients.ec2),
        Arc::clone(&unavailable),
        key,
        vec![ClaimRef {
            name: "claim-denied".into(),
            token: "t-denied".into(),
        }],
    )
    .await;
    assert!(
        matches!(&out[0], Err(CloudError::Launch { code, .. }) if code == "UnauthorizedOperation"),
        "{out:?}"
    );
    assert!(unavailable.current().is_empty());
}
