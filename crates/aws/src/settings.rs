//! Provider settings and their defaults (documented in docs/aws.md).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::coalescer::CoalesceWindow;
use crate::userdata::ClusterInfo;

/// How the AWS provider behaves. `ProviderSettings::new(cluster)` gives the defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct ProviderSettings {
    /// The cluster: name (tags, launch-template names), API endpoint, CA bundle, service CIDR.
    pub cluster: ClusterInfo,
    /// The Kubernetes minor version nodes run (`1.33`), for AMI aliases.
    pub kubernetes_version: String,
    /// The region (labels, pricing).
    pub region: String,
    /// Memory the hypervisor takes, as a fraction of the advertised memory (default 0.075).
    pub vm_memory_overhead_percent: f64,
    /// How long an offering that answered insufficient capacity stays unavailable (default 3 min).
    pub unavailable_offerings_ttl: Duration,
    /// How often the instance-type catalogue and offerings are re-read (default 5 min).
    pub catalog_refresh: Duration,
    /// How often on-demand prices are re-read from the Pricing API (default 12 h).
    pub on_demand_price_refresh: Duration,
    /// How often spot prices are re-read (default 30 min).
    pub spot_price_refresh: Duration,
    /// Coalescing window of identical launches (default 35 ms idle, 1 s max, 100 claims).
    pub launch_coalescing: CoalesceWindow,
    /// Coalescing window of DescribeInstances (default 50 ms idle, 1 s max, 500 ids).
    pub describe_coalescing: CoalesceWindow,
    /// Coalescing window of TerminateInstances (default 50 ms idle, 1 s max, 500 ids).
    pub terminate_coalescing: CoalesceWindow,
    /// Tags put on every instance, volume and fleet (in addition to Stowage's own).
    pub tags: BTreeMap<String, String>,
}

impl ProviderSettings {
    /// Defaults for `cluster` in `region`.
    pub fn new(cluster: ClusterInfo, region: &str) -> Self {
        Self {
            cluster,
            kubernetes_version: "1.33".to_string(),
            region: region.to_string(),
            vm_memory_overhead_percent: 0.075,
            unavailable_offerings_ttl: Duration::from_secs(180),
            catalog_refresh: Duration::from_secs(300),
            on_demand_price_refresh: Duration::from_secs(12 * 3600),
            spot_price_refresh: Duration::from_secs(1800),
            launch_coalescing: CoalesceWindow {
                idle: Duration::from_millis(35),
                max_wait: Duration::from_secs(1),
                max_items: 100,
            },
            describe_coalescing: CoalesceWindow {
                idle: Duration::from_millis(50),
                max_wait: Duration::from_secs(1),
                max_items: 500,
            },
            terminate_coalescing: CoalesceWindow {
                idle: Duration::from_millis(50),
                max_wait: Duration::from_secs(1),
                max_items: 500,
            },
            tags: BTreeMap::new(),
        }
    }
}
