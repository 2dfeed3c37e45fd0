//! The controllers' Prometheus metrics (`stowage_` prefix, bounded labels) and their text encoding
//! for `/metrics`.
//!
//! Labels are bounded by construction: nodepool names, capacity types, resource names, error
//! kinds and operation names; never pod or node names.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn labels<const N: usize>(pairs: [(&str, &str); N]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every metric the controllers export.
pub struct Metrics {
    registry: Registry,
    pub pending_pods: Gauge,
    pub cluster_state_synced: Gauge,
    pub leader: Gauge,
    pub batch_size: Histogram,
    pub batch_duration_seconds: Histogram,
    pub solve_duration_seconds: Histogram,
    pub unschedulable_pods: Gauge,
    nodeclaims_created: Family<Labels, Counter>,
    nodeclaims_launched: Family<Labels, Counter>,
    nodeclaims_registered: Family<Labels, Counter>,
    nodeclaims_initialized: Family<Labels, Counter>,
    nodeclaims_terminated: Family<Labels, Counter>,
    launch_errors: Family<Labels, Counter>,
    evictions: Family<Labels, Counter>,
    cloud_calls: Family<Labels, Gauge>,
    cloud_errors: Family<Labels, Gauge>,
    nodes: Family<Labels, Gauge>,
    node_allocatable: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    node_requested: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    cost_per_hour: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub pod_pending_to_bound_seconds: Histogram,
    pub nodeclaim_initialized_seconds: Histogram,
    nodepool_on_demand_base: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    nodepool_on_demand_percent: Family<Labels, Gauge>,
    watch_decode_errors: Family<Labels, Counter>,
    nodeclaims_drifted: Family<Labels, Gauge>,
    /// Label sets last written by [`Metrics::set_fleet`], so vanished series are removed.
    fleet_keys: Mutex<Vec<Labels>>,
    interruption_messages: Family<Labels, Counter>,
    interruption_actions: Family<Labels, Counter>,
    pub interruption_latency_seconds: Histogram,
    spot_interruption_rate: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Label sets last written by [`Metrics::set_spot_interruption_rates`].
    rate_keys: Mutex<Vec<Labels>>,
    /// The disruption controller's metrics.
    pub disruption: crate::disruption::metrics::DisruptionMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Per nodepool and capacity type: node count, resources and cost, as exported.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FleetSample {
    pub nodes: i64,
    /// Allocatable by resource name (cpu in cores, memory in bytes, others as counts).
    pub allocatable: BTreeMap<String, f64>,
    /// Requested by bound pods, same units.
    pub requested: BTreeMap<String, f64>,
    pub cost_per_hour: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("stowage");
        let m = Self {
            pending_pods: Gauge::default(),
            cluster_state_synced: Gauge::default(),
            leader: Gauge::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 16)),
            batch_duration_seconds: Histogram::new(exponential_buckets(0.25, 2.0, 8)),
            solve_duration_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            unschedulable_pods: Gauge::default(),
            nodeclaims_created: Family::default(),
            nodeclaims_launched: Family::default(),
            nodeclaims_registered: Family::default(),
            nodeclaims_initialized: Family::default(),
            nodeclaims_terminated: Family::default(),
            launch_errors: Family::default(),
            evictions: Family::default(),
            cloud_calls: Family::default(),
            cloud_errors: Family::default(),
            nodes: Family::default(),
            node_allocatable: Family::default(),
            node_requested: Family::default(),
            cost_per_hour: Family::default(),
            pod_pending_to_bound_seconds: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            nodeclaim_initialized_seconds: Histogram::new(exponential_buckets(5.0, 2.0, 10)),
            nodepool_on_demand_base: Family::default(),
            nodepool_on_demand_percent: Family::default(),
            watch_decode_errors: Family::default(),
            nodeclaims_drifted: Family::default(),
            registry: Registry::default(),
            fleet_keys: Mutex::new(Vec::new()),
            interruption_messages: Family::default(),
            interruption_actions: Family::default(),
            interruption_latency_seconds: Histogram::new(exponential_buckets(0.5, 2.0, 12)),
            spot_interruption_rate: Family::default(),
            rate_keys: Mutex::new(Vec::new()),
            disruption: Default::default(),
        };
        registry.register(
            "pending_pods",
            "Provisionable pods waiting for capacity",
            m.pending_pods.clone(),
        );
        registry.register(
            "cluster_state_synced",
            "1 when every watched kind has completed its initial list",
            m.cluster_state_synced.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            m.leader.clone(),
        );
        registry.register(
            "provisioner_batch_size",
            "Pods per provisioning batch",
            m.batch_size.clone(),
        );
        registry.register(
            "provisioner_batch_duration_seconds",
            "Time a provisioning batch stayed open",
            m.batch_duration_seconds.clone(),
        );
        registry.register(
            "solver_duration_seconds",
            "Wall time of one solve",
            m.solve_duration_seconds.clone(),
        );
        registry.register(
            "unschedulable_pods",
            "Pods the last solve could not place",
            m.unschedulable_pods.clone(),
        );
        registry.register(
            "nodeclaims_created",
            "NodeClaims created",
            m.nodeclaims_created.clone(),
        );
        registry.register(
            "nodeclaims_launched",
            "NodeClaims launched",
            m.nodeclaims_launched.clone(),
        );
        registry.register(
            "nodeclaims_registered",
            "NodeClaims whose Node registered",
            m.nodeclaims_registered.clone(),
        );
        registry.register(
            "nodeclaims_initialized",
            "NodeClaims whose Node initialized",
            m.nodeclaims_initialized.clone(),
        );
        registry.register(
            "nodeclaims_terminated",
            "NodeClaims terminated",
            m.nodeclaims_terminated.clone(),
        );
        registry.register(
            "launch_errors",
            "Failed launches by error kind",
            m.launch_errors.clone(),
        );
        registry.register(
            "eviction_requests",
            "Eviction requests by result",
            m.evictions.clone(),
        );
        registry.register(
            "cloudprovider_calls",
            "Cloud provider calls by operation",
            m.cloud_calls.clone(),
        );
        registry.register(
            "cloudprovider_errors",
            "Cloud provider errors by operation and kind",
            m.cloud_errors.clone(),
        );
        registry.register(
            "nodes",
            "Nodes by nodepool and capacity type",
            m.nodes.clone(),
        );
        registry.register(
            "nodes_allocatable",
            "Allocatable resources by nodepool, capacity type and resource",
            m.node_allocatable.clone(),
        );
        registry.register(
            "nodes_requested",
            "Requested resources of bound pods by nodepool, capacity type and resource",
            m.node_requested.clone(),
        );
        registry.register(
            "cost_per_hour_usd",
            "Estimated cost per hour by nodepool and capacity type",
            m.cost_per_hour.clone(),
        );
        registry.register(
            "pod_pending_to_bound_seconds",
            "Seconds from pod creation to binding",
            m.pod_pending_to_bound_seconds.clone(),
        );
        registry.register(
            "nodeclaims_initialized_duration_seconds",
            "Seconds from NodeClaim creation to its Node initialized (launch latency)",
            m.nodeclaim_initialized_seconds.clone(),
        );
        registry.register(
            "nodepool_on_demand_base_cores",
            "capacityMix.onDemandBase of each NodePool, in vCPUs",
            m.nodepool_on_demand_base.clone(),
        );
        registry.register(
            "nodepool_on_demand_percent_above_base",
            "capacityMix.onDemandPercentAboveBase of each NodePool (100: no cap)",
            m.nodepool_on_demand_percent.clone(),
        );
        registry.register(
            "watch_decode_errors",
            "Listed or watched objects skipped because they do not decode, by kind",
            m.watch_decode_errors.clone(),
        );
        registry.register(
            "interruption_messages",
            "Interruption queue messages received, by kind",
            m.interruption_messages.clone(),
        );
        registry.register(
            "interruption_actions",
            "What was done about interruption events, by action",
            m.interruption_actions.clone(),
        );
        registry.register(
            "interruption_message_latency_seconds",
            "Seconds from an interruption event's time to it being handled",
            m.interruption_latency_seconds.clone(),
        );
        registry.register(
            "spot_interruption_rate",
            "Spot interruptions per node-hour, exponentially decayed, by instance type and zone",
            m.spot_interruption_rate.clone(),
        );
        m.disruption.register(&mut registry);
        registry.register(
            "nodeclaims_drifted",
            "NodeClaims whose Drifted condition is True, by nodepool and drift reason",
            m.nodeclaims_drifted.clone(),
        );
        Self { registry, ..m }
    }

    /// One interruption queue message of `kind` (an event kind, `unknown` or `malformed`).
    pub fn interruption_message(&self, kind: &str) {
        self.interruption_messages
            .get_or_create(&labels([("kind", kind)]))
            .inc();
    }

    /// One interruption event handled with `action`.
    pub fn interruption_action(&self, action: &str) {
        self.interruption_actions
            .get_or_create(&labels([("action", action)]))
            .inc();
    }

    /// Reads `stowage_interruption_actions_total{action}` back.
    pub fn interruption_actions_total(&self, action: &str) -> u64 {
        self.interruption_actions
            .get(&labels([("action", action)]))
            .map(|c| c.get())
            .unwrap_or(0)
    }

    /// Reads `stowage_interruption_messages_total{kind}` back.
    pub fn interruption_messages_total(&self, kind: &str) -> u64 {
        self.interruption_messages
            .get(&labels([("kind", kind)]))
            .map(|c| c.get())
            .unwrap_or(0)
    }

    /// Replaces the spot interruption rates per (instance type, zone).
    pub fn set_spot_interruption_rates<'a>(
        &self,
        rates: impl IntoIterator<Item = (&'a str, &'a str, f64)>,
    ) {
        let mut keys = self.rate_keys.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys.drain(..) {
            self.spot_interruption_rate.remove(&key);
        }
        for (instance_type, zone, rate) in rates {
            let key = labels([("instance_type", instance_type), ("zone", zone)]);
            self.spot_interruption_rate.get_or_create(&key).set(rate);
            keys.push(key);
        }
    }

    /// Replaces the drifted-claim gauges: counts by (nodepool, reason); series no longer drifted
    /// are removed.
    pub fn set_drifted(&self, by_reason: &BTreeMap<(String, String), i64>) {
        self.nodeclaims_drifted.clear();
        for ((pool, reason), n) in by_reason {
            self.nodeclaims_drifted
                .get_or_create(&labels([("nodepool", pool), ("reason", reason)]))
                .set(*n);
        }
    }

    /// Reads `stowage_nodeclaims_drifted{nodepool,reason}` back.
    pub fn nodeclaims_drifted(&self, nodepool: &str, reason: &str) -> i64 {
        self.nodeclaims_drifted
            .get(&labels([("nodepool", nodepool), ("reason", reason)]))
            .map(|g| g.get())
            .unwrap_or(0)
    }

    pub fn nodeclaim_created(&self, nodepool: &str, reason: &str) {
        self.nodeclaims_created
            .get_or_create(&labels([("nodepool", nodepool), ("reason", reason)]))
            .inc();
    }

    pub fn nodeclaim_launched(&self, nodepool: &str) {
        self.nodeclaims_launched
            .get_or_create(&labels([("nodepool", nodepool)]))
            .inc();
    }

    pub fn nodeclaim_registered(&self, nodepool: &str) {
        self.nodeclaims_registered
            .get_or_create(&labels([("nodepool", nodepool)]))
            .inc();
    }

    pub fn nodeclaim_initialized(&self, nodepool: &str) {
        self.nodeclaims_initialized
            .get_or_create(&labels([("nodepool", nodepool)]))
            .inc();
    }

    pub fn nodeclaim_terminated(&self, nodepool: &str, reason: &str) {
        self.nodeclaims_terminated
            .get_or_create(&labels([("nodepool", nodepool), ("reason", reason)]))
            .inc();
    }

    pub fn launch_error(&self, nodepool: &str, code: &str) {
        self.launch_errors
            .get_or_create(&labels([("nodepool", nodepool), ("code", code)]))
            .inc();
    }

    pub fn eviction(&self, result: &str) {
        self.evictions
            .get_or_create(&labels([("result", result)]))
            .inc();
    }

    /// One object of `kind` (a Kubernetes kind name) that does not decode was skipped.
    pub fn watch_decode_error(&self, kind: &str) {
        self.watch_decode_errors
            .get_or_create(&labels([("kind", kind)]))
            .inc();
    }

    /// Reads `stowage_watch_decode_errors_total{kind}` back.
    pub fn watch_decode_errors_total(&self, kind: &str) -> u64 {
        self.watch_decode_errors
            .get(&labels([("kind", kind)]))
            .map(|c| c.get())
            .unwrap_or(0)
    }

    /// Reads a counter back (tests and the simulator's report).
    pub fn nodeclaims_created_total(&self, nodepool: &str, reason: &str) -> u64 {
        self.nodeclaims_created
            .get(&labels([("nodepool", nodepool), ("reason", reason)]))
            .map(|c| c.get())
            .unwrap_or(0)
    }

    /// Sets cloud API call and error totals from the provider's own counters.
    pub fn set_cloud_calls<'a>(
        &self,
        calls: impl IntoIterator<Item = (&'a str, u64)>,
        errors: impl IntoIterator<Item = (&'a str, &'a str, u64)>,
    ) {
        for (op, n) in calls {
            self.cloud_calls
                .get_or_create(&labels([("operation", op)]))
                .set(n as i64);
        }
        for (op, kind, n) in errors {
            self.cloud_errors
                .get_or_create(&labels([("operation", op), ("kind", kind)]))
                .set(n as i64);
        }
    }

    /// Replaces the per-nodepool fleet gauges; series for pools or types that vanished are removed.
    pub fn set_fleet(&self, samples: &BTreeMap<(String, String), FleetSample>) {
        let mut keys = self.fleet_keys.lock().unwrap_or_else(|e| e.into_inner());
        for key in keys.drain(..) {
            self.nodes.remove(&key);
            self.cost_per_hour.remove(&key);
        }
        self.node_allocatable.clear();
        self.node_requested.clear();
        for ((pool, ct), s) in samples {
            let key = labels([("nodepool", pool.as_str()), ("capacity_type", ct.as_str())]);
            self.nodes.get_or_create(&key).set(s.nodes);
            self.cost_per_hour.get_or_create(&key).set(s.cost_per_hour);
            for (res, v) in &s.allocatable {
                let mut k = key.clone();
                k.push(("resource".into(), res.clone()));
                self.node_allocatable.get_or_create(&k).set(*v);
            }
            for (res, v) in &s.requested {
                let mut k = key.clone();
                k.push(("resource".into(), res.clone()));
                self.node_requested.get_or_create(&k).set(*v);
            }
            keys.push(key);
        }
    }

    /// Replaces the per-nodepool on-demand cap gauges: `(nodepool, base vCPUs, percent above
    /// base)` for every NodePool; series of deleted pools are removed.
    pub fn set_on_demand_caps<'a>(&self, caps: impl IntoIterator<Item = (&'a str, f64, i64)>) {
        self.nodepool_on_demand_base.clear();
        self.nodepool_on_demand_percent.clear();
        for (pool, base, percent) in caps {
            let key = labels([("nodepool", pool)]);
            self.nodepool_on_demand_base.get_or_create(&key).set(base);
            self.nodepool_on_demand_percent
                .get_or_create(&key)
                .set(percent);
        }
    }

    /// A registry with a sample in every family (label values `example`). The text encoding
    /// leaves out families that have no series yet, so this is what lists every metric the
    /// controllers export: for reference docs and for checking dashboards and alert rules.
    pub fn example() -> Metrics {
        let m = Metrics::new();
        let x = "example";
        m.nodeclaim_created(x, x);
        m.nodeclaim_launched(x);
        m.nodeclaim_registered(x);
        m.nodeclaim_initialized(x);
        m.nodeclaim_terminated(x, x);
        m.launch_error(x, x);
        m.eviction(x);
        m.watch_decode_error(x);
        m.set_cloud_calls([(x, 1)], [(x, x, 1)]);
        let sample = FleetSample {
            nodes: 1,
            allocatable: [(x.to_string(), 1.0)].into(),
            requested: [(x.to_string(), 1.0)].into(),
            cost_per_hour: 1.0,
        };
        m.set_fleet(&[((x.to_string(), x.to_string()), sample)].into());
        m.set_on_demand_caps([(x, 0.0, 100)]);
        m.interruption_message(x);
        m.interruption_action(x);
        m.interruption_latency_seconds.observe(1.0);
        m.set_spot_interruption_rates([(x, x, 0.1)]);
        m.disruption.example();
        m.set_drifted(&[((x.to_string(), x.to_string()), 1)].into());
        m
    }

    /// The registry in Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_has_every_registered_family() {
        let source = include_str!("metrics.rs");
        let registered = source.matches(concat!("registry", ".register(")).count()
            + include_str!("disruption/metrics.rs")
                .matches(concat!("registry", ".register("))
                .count();
        let text = Metrics::example().encode();
        let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        assert_eq!(families, registered, "{text}");
        assert!(text.contains("# TYPE stowage_nodepool_on_demand_base_cores gauge"));
    }

    #[test]
    fn encodes_prefixed_metrics_with_bounded_labels() {
        let m = Metrics::new();
        m.nodeclaim_created("default", "provisioning");
        m.nodeclaim_created("default", "provisioning");
        m.launch_error("default", "insufficient_capacity");
        m.pending_pods.set(7);
        let mut fleet = BTreeMap::new();
        fleet.insert(
            ("default".to_string(), "spot".to_string()),
            FleetSample {
                nodes: 3,
                cost_per_hour: 0.25,
                ..Default::default()
            },
        );
        m.set_fleet(&fleet);
        let text = m.encode();
        assert!(
            text.contains(
                "stowage_nodeclaims_created_total{nodepool=\"default\",reason=\"provisioning\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("stowage_pending_pods 7"), "{text}");
        assert!(
            text.contains("stowage_nodes{nodepool=\"default\",capacity_type=\"spot\"} 3"),
            "{text}"
        );
        assert!(text.contains(
            "stowage_launch_errors_total{nodepool=\"default\",code=\"insufficient_capacity\"} 1"
        ));
        assert_eq!(m.nodeclaims_created_total("default", "provisioning"), 2);
        m.watch_decode_error("NodePool");
        assert!(
            m.encode()
                .contains("stowage_watch_decode_errors_total{kind=\"NodePool\"} 1")
        );
        assert_eq!(m.watch_decode_errors_total("NodePool"), 1);
        // A pool that disappears loses its series.
        m.set_fleet(&BTreeMap::new());
        assert!(!m.encode().contains("stowage_nodes{"));
        m.set_on_demand_caps([("default", 0.5, 5), ("gpu", 0.0, 100)]);
        let text = m.encode();
        assert!(
            text.contains("stowage_nodepool_on_demand_base_cores{nodepool=\"default\"} 0.5"),
            "{text}"
        );
        assert!(
            text.contains("stowage_nodepool_on_demand_percent_above_base{nodepool=\"gpu\"} 100"),
            "{text}"
        );
        m.set_on_demand_caps([("gpu", 0.0, 100)]);
        assert!(
            !m.encode()
                .contains("stowage_nodepool_on_demand_base_cores{nodepool=\"default\"}")
        );
    }
}
