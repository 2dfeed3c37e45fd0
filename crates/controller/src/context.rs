//! `Context`: what every controller shares — the kube client, the cloud provider, the clock, the
//! settings, metrics, the event recorder, the cluster state, leadership and per-object backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use kube::Client;
use stowage_clock::SharedClock;
use stowage_cloud::metered::Metered;
use stowage_cloud::{CapacityType, CloudProvider, InterruptionSource};
use tokio::sync::watch;

use crate::events::Recorder;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::state::ClusterState;

/// Price key: (instance type, zone, capacity type).
pub type PriceKey = (String, String, CapacityType);

/// Shared by every controller. Cheap to clone behind an `Arc`.
pub struct Context {
    pub client: Client,
    /// The client NodeClaim creations go through: `client` unless [`Context::with_create_client`]
    /// gave one whose rate limit lets them go ahead of the other requests (see
    /// [`crate::ratelimit::RateLimitLayer::ahead`]).
    create_client: Client,
    /// The provider, metered (calls and errors per operation feed `/metrics`).
    pub cloud: Arc<dyn CloudProvider>,
    metered: Arc<Metered<Arc<dyn CloudProvider>>>,
    pub clock: SharedClock,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    state: RwLock<ClusterState>,
    /// Carries [`ClusterState::provisionable_seq`]; the batcher waits on it.
    pending_tx: watch::Sender<u64>,
    /// Carries the synced flag.
    synced_tx: watch::Sender<bool>,
    /// True while this replica may provision and disrupt.
    leader_tx: watch::Sender<bool>,
    backoff: Mutex<HashMap<String, u32>>,
    prices: RwLock<HashMap<PriceKey, f64>>,
    /// Where interruption events come from (`None`: interruption handling off).
    interruption_source: Option<Arc<dyn InterruptionSource>>,
    /// Spot interruption rates per (instance type, zone).
    rates: Mutex<crate::interruption::rates::RateBook>,
    /// The latest provisioning passes (what the simulator reports as solver figures).
    provision_log: Mutex<std::collections::VecDeque<crate::provisioning::PassRecord>>,
    /// The registered Nodes as the solver reads them, shared by the provisioner's passes, the
    /// interruption handler's replacement solves and the disruption rounds (see
    /// [`Context::solver_nodes`]).
    solver_nodes: tokio::sync::Mutex<crate::snapshot::NodeCache>,
}

/// The environment variable that sets [`Settings::probe_threads`] for the simulated cluster's
/// controllers (`stowage simulate` and its example); `stowage run` has `--probe-threads`.
pub const PROBE_THREADS_ENV: &str = "STOWAGE_PROBE_THREADS";

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context; leadership starts `false` (see [`Context::set_leader`]). The provider is
    /// wrapped in [`Metered`].
    pub fn new(
        client: Client,
        cloud: Arc<dyn CloudProvider>,
        clock: SharedClock,
        settings: Settings,
    ) -> Self {
        let half_life = settings.spot_interruption_half_life;
        let metered = Arc::new(Metered::new(cloud));
        let recorder = Recorder::new(
            client.clone(),
            clock.clone(),
            "stowage",
            settings.namespace.clone(),
            settings.event_dedupe,
        );
        Self {
            create_client: client.clone(),
            client,
            cloud: metered.clone(),
            metered,
            clock,
            settings,
            metrics: Arc::new(Metrics::new()),
            recorder,
            state: RwLock::new(ClusterState::new()),
            pending_tx: watch::channel(0).0,
            synced_tx: watch::channel(false).0,
            leader_tx: watch::channel(false).0,
            backoff: Mutex::new(HashMap::new()),
            prices: RwLock::new(HashMap::new()),
            interruption_source: None,
            rates: Mutex::new(crate::interruption::rates::RateBook::new(half_life)),
            provision_log: Mutex::new(std::collections::VecDeque::new()),
            solver_nodes: tokio::sync::Mutex::new(crate::snapshot::NodeCache::default()),
        }
    }

    /// The context of the controllers in the simulated cluster (`stowage simulate`, its
    /// SDK-free example, the simulator tests): default settings for a cluster named `sim`
    /// (the probe threads from [`PROBE_THREADS_ENV`] when set, to compare counts), and spot
    /// interruption warnings from the fake cloud's queue, as `stowage run` gets them from SQS.
    pub fn simulated(
        client: Client,
        cloud: Arc<dyn CloudProvider>,
        clock: SharedClock,
        interruptions: Arc<dyn InterruptionSource>,
    ) -> Self {
        let settings = Settings {
            cluster_name: "sim".to_string(),
            probe_threads: std::env::var(PROBE_THREADS_ENV)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_default(),
            ..Settings::default()
        };
        Self::new(client, cloud, clock, settings).with_interruption_source(interruptions)
    }

    /// Reads interruption events from `source` (the interruption controller runs only with one).
    pub fn with_interruption_source(mut self, source: Arc<dyn InterruptionSource>) -> Self {
        self.interruption_source = Some(source);
        self
    }

    /// Sends NodeClaim creations through `client` (same cluster, its own rate limit layer: a
    /// client sends its requests in order, so creations on the shared one would queue behind
    /// every request waiting there).
    pub fn with_create_client(mut self, client: Client) -> Self {
        self.create_client = client;
        self
    }

    /// The client for NodeClaim creations.
    pub fn create_client(&self) -> &Client {
        &self.create_client
    }

    pub fn interruption_source(&self) -> Option<Arc<dyn InterruptionSource>> {
        self.interruption_source.clone()
    }

    /// Runs `f` on the spot interruption rates (never hold across an await).
    pub fn with_rates<R>(
        &self,
        f: impl FnOnce(&mut crate::interruption::rates::RateBook) -> R,
    ) -> R {
        let mut book = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut book)
    }

    /// Records a provisioning pass; the last [`crate::provisioning::PASS_LOG_LEN`] are kept.
    pub fn record_pass(&self, pass: crate::provisioning::PassRecord) {
        let mut log = self.provision_log.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() >= crate::provisioning::PASS_LOG_LEN {
            log.pop_front();
        }
        log.push_back(pass);
    }

    /// The latest provisioning passes, oldest first.
    pub fn passes(&self) -> Vec<crate::provisioning::PassRecord> {
        self.provision_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// The node cache of the solves that place pods on the cluster (the provisioner's passes, the
    /// interruption handler's replacement solves), held from the snapshot to the end of the
    /// solve: one set of converted Nodes for both instead of a fresh conversion of every Node per
    /// interruption batch, and never two of these solves at once (each holds a working set the
    /// size of the cluster). A solve takes well under a second at `seed-full` scale, so the
    /// other waits about that long at most. The disruption loop's rounds take the same nodes
    /// (one cache for the cluster instead of a second one the size of the cluster) and hold the
    /// lock from their snapshot to the end of their decision (~0.5 s at `seed-full` scale, at
    /// most ~2 s measured): a round's working set and a pass's are never held at once either.
    /// (A borrower that let go of the lock while holding nodes would leave a pass to build them
    /// afresh: a second set of every Node, the peak this lock avoids.)
    pub async fn solver_nodes(&self) -> tokio::sync::MutexGuard<'_, crate::snapshot::NodeCache> {
        self.solver_nodes.lock().await
    }

    /// Read access to the cluster state (never hold across an await).
    pub fn state(&self) -> RwLockReadGuard<'_, ClusterState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Write access to the cluster state; notifies the batcher and the synced flag afterwards.
    pub fn update_state<R>(&self, f: impl FnOnce(&mut ClusterState) -> R) -> R {
        let (r, seq, synced) = {
            let mut s: RwLockWriteGuard<'_, ClusterState> =
                self.state.write().unwrap_or_else(|e| e.into_inner());
            let r = f(&mut s);
            (r, s.provisionable_seq(), s.is_synced())
        };
        self.pending_tx.send_if_modified(|v| {
            let changed = *v != seq;
            *v = seq;
            changed
        });
        self.synced_tx.send_if_modified(|v| {
            let changed = *v != synced;
            *v = synced;
            changed
        });
        r
    }

    pub fn subscribe_pending(&self) -> watch::Receiver<u64> {
        self.pending_tx.subscribe()
    }

    pub fn subscribe_synced(&self) -> watch::Receiver<bool> {
        self.synced_tx.subscribe()
    }

    pub fn subscribe_leader(&self) -> watch::Receiver<bool> {
        self.leader_tx.subscribe()
    }

    pub fn is_leader(&self) -> bool {
        *self.leader_tx.borrow()
    }

    pub fn set_leader(&self, leader: bool) {
        self.metrics.leader.set(i64::from(leader));
        self.leader_tx.send_if_modified(|v| {
            let changed = *v != leader;
            *v = leader;
            changed
        });
    }

    /// Records a failure of `key` and returns how long to wait before retrying: 1 s doubling to
    /// 5 min.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut m = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let secs = 1u64 << (*n - 1).min(9);
        Duration::from_secs(secs.min(300))
    }

    /// Forgets the failures of `key` (it succeeded).
    pub fn reset_backoff(&self, key: &str) {
        let mut m = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(key);
    }

    /// The metrics in Prometheus text format, cloud call counters refreshed first.
    pub fn render_metrics(&self) -> String {
        let snapshot = self.metered.snapshot();
        let calls: Vec<(&str, u64)> = snapshot
            .iter()
            .filter_map(|s| s.operation.map(|op| (op.as_str(), s.calls)))
            .collect();
        let errors: Vec<(&str, &str, u64)> = snapshot
            .iter()
            .filter_map(|s| s.operation.map(|op| (op, s)))
            .flat_map(|(op, s)| {
                s.errors
                    .iter()
                    .map(move |(kind, n)| (op.as_str(), *kind, *n))
            })
            .collect();
        self.metrics.set_cloud_calls(calls, errors);
        self.metrics.encode()
    }

    /// Records offering prices seen in the catalogue (for the cost metric).
    pub fn record_prices(&self, prices: impl IntoIterator<Item = (PriceKey, f64)>) {
        let mut p = self.prices.write().unwrap_or_else(|e| e.into_inner());
        p.extend(prices);
    }

    /// The last known price of an offering.
    pub fn price(&self, instance_type: &str, zone: &str, ct: CapacityType) -> Option<f64> {
        let p = self.prices.read().unwrap_or_else(|e| e.into_inner());
        p.get(&(instance_type.to_string(), zone.to_string(), ct))
            .copied()
    }
}
