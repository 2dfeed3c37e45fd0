//! `FakeCloud`: an in-memory [`CloudProvider`] for tests, the simulator and benchmarks.
//!
//! It behaves like a cloud that sells the offerings of a catalogue:
//! - `create` picks, among the catalogue offerings compatible with the claim (instance-type options,
//!   zones, capacity types and any other well-known label requirement, plus the claim's resource
//!   requests), the most preferred capacity type (reserved, then spot, then on-demand), and within
//!   it the cheapest offering that has capacity. Like EC2 CreateFleet, it fails with
//!   `InsufficientCapacity` (listing the offerings it tried) only when *every* offering of that
//!   capacity type is out of capacity; those offerings are then shown unavailable by
//!   `instance_types` for `ice_cache_ttl` (3 minutes by default), as the AWS provider's cache does.
//! - `create` is idempotent per NodeClaim name; launches take `launch_latency` of tokio time, so a
//!   paused runtime makes it virtual time.
//! - instances get provider ids `fake:///<zone>/i-000001`; `delete` of a gone instance is `NotFound`.
//! - `interrupt` warns (event) and terminates the instance `interruption_notice` (2 minutes) later;
//!   the warning is also a spot-interruption message on the fake's [`InterruptionSource`] queue
//!   (at-least-once like SQS: a message not acknowledged comes back after 30 s), where tests can
//!   put any other message too ([`FakeCloud::send_message`]).
//! - `mark_unavailable` keeps an offering unavailable for a while, as a failed launch does.
//! - every call is recorded, and counted as the EC2 calls the AWS provider would make for it,
//!   coalesced as it coalesces them ([`crate::ec2_model`]; its batched calls take the batching
//!   window's 50 ms); one-shot errors can be injected per operation; offerings can be marked out
//!   of capacity one by one or through windows a script opens and closes.
//! - [`FakeCloud::subscribe`] streams [`FakeEvent`]s (launched, interruption warning, terminated),
//!   which the simulator's fake kubelet turns into Nodes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use stowage_api::requirements::Requirements;
use stowage_api::{CapacityType, NodeClaim, labels};
use stowage_solver::{InstanceType, Offering, Resources};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::ec2_model::{
    DESCRIBE_WINDOW, Ec2Action, Ec2Calls, LAUNCH_WINDOW, TERMINATE_WINDOW, shape_key,
};
use crate::interruption::{
    AckHandle, InterruptionEvent, InterruptionKind, InterruptionMessage, InterruptionSource,
    MAX_BATCH, MessageContent,
};
use crate::{
    CloudProvider, DriftReason, Error, NodeClassKind, NodeClassStatus, OfferingKey, Operation,
    Result,
};

/// How long a received, unacknowledged message stays invisible (SQS's default is 30 s).
const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `receive` waits for a message (SQS's longest long poll).
const LONG_POLL: Duration = Duration::from_secs(20);
/// Messages kept at most (the oldest are dropped: a run without a consumer stays bounded).
const MAX_QUEUED: usize = 100_000;
/// The image of instances whose node class the fake has not seen.
pub const DEFAULT_IMAGE: &str = "ami-fake";

/// The image a node class selects: one per distinct `spec.amiSelectorTerms` (so changing an
/// alias, say `al2023@latest` to `bottlerocket@latest`, selects another image and drifts the
/// class's nodes), [`DEFAULT_IMAGE`] for a class without terms.
fn image_of(class: &serde_json::Value) -> String {
    match class.pointer("/spec/amiSelectorTerms") {
        Some(terms) if !terms.is_null() => {
            let h = terms
                .to_string()
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
            format!("{DEFAULT_IMAGE}-{:08x}", h >> 32)
        }
        _ => DEFAULT_IMAGE.to_string(),
    }
}

/// The provider id scheme of fake instances.
pub const PROVIDER_ID_PREFIX: &str = "fake:///";

/// Tunables of the fake cloud.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeConfig {
    /// The region label of instances whose type has none.
    pub region: String,
    /// How long a launch takes (tokio time).
    pub launch_latency: Duration,
    /// Time between an interruption warning and the termination.
    pub interruption_notice: Duration,
    /// How long offerings that failed a launch show as unavailable.
    pub ice_cache_ttl: Duration,
    /// Capacity of the event channel (a subscriber lagging further loses events).
    pub event_capacity: usize,
    /// The node-class kind the fake reads (`None`: no node classes, every reference is ready).
    /// The simulator sets the AWS-shaped kind its cluster serves.
    pub node_class_kind: Option<NodeClassKind>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            region: "us-east-1".to_string(),
            launch_latency: Duration::ZERO,
            interruption_notice: Duration::from_secs(120),
            ice_cache_ttl: Duration::from_secs(180),
            event_capacity: 16_384,
            node_class_kind: None,
        }
    }
}

/// Where an instance is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceState {
    /// Launch requested; running after the launch latency.
    Pending,
    Running,
    /// An interruption warning was sent; terminated when the notice runs out.
    Interrupted,
}

/// One fake instance.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeInstance {
    /// `fake:///<zone>/i-000001`.
    pub provider_id: String,
    /// `i-000001`.
    pub instance_id: String,
    pub claim_name: String,
    pub nodepool: Option<String>,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
    pub price_per_hour: f64,
    pub capacity: Resources,
    pub allocatable: Resources,
    /// Claim labels plus the instance type's labels, zone, region and capacity type.
    pub labels: BTreeMap<String, String>,
    /// The claim's taints and startup taints (the node registers with both).
    pub taints: Vec<Taint>,
    pub startup_taints: Vec<Taint>,
    pub state: InstanceState,
    /// The image it booted: its node class's when it launched (see
    /// [`CloudProvider::reconcile_node_class`] of the fake).
    pub image_id: String,
}

/// Why an instance went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminationReason {
    /// `CloudProvider::delete`.
    Deleted,
    /// A spot interruption ran out its notice.
    Interrupted,
}

/// What happened in the fake cloud.
#[derive(Clone, Debug, PartialEq)]
pub enum FakeEvent {
    /// An instance finished launching (after the launch latency).
    Launched(FakeInstance),
    /// The instance will be terminated after `notice`.
    InterruptionWarning {
        claim_name: String,
        provider_id: String,
        notice: Duration,
    },
    Terminated {
        claim_name: String,
        provider_id: String,
        reason: TerminationReason,
    },
}

/// One recorded call: the operation and its subject (claim name, provider id, pool or class name;
/// empty for `list`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeCall {
    pub operation: Operation,
    pub subject: String,
}

/// Matches offerings; `None` fields match anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfferingMatcher {
    pub instance_type: Option<String>,
    pub zone: Option<String>,
    pub capacity_type: Option<CapacityType>,
}

impl OfferingMatcher {
    pub fn matches(&self, key: &OfferingKey) -> bool {
        self.matches_parts(&key.instance_type, &key.zone, key.capacity_type)
    }

    fn matches_parts(&self, instance_type: &str, zone: &str, capacity_type: CapacityType) -> bool {
        self.instance_type
            .as_deref()
            .is_none_or(|t| t == instance_type)
            && self.zone.as_deref().is_none_or(|z| z == zone)
            && self.capacity_type.is_none_or(|c| c == capacity_type)
    }
}

/// The handle of an insufficient-capacity window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IceWindowId(u64);

#[derive(Debug, Default)]
struct State {
    catalog: Vec<InstanceType>,
    /// `catalog[i].allocatable()`, computed once.
    allocatable: Vec<Resources>,
    /// Instance type name -> index in `catalog`.
    by_name: BTreeMap<String, usize>,
    instances: BTreeMap<String, FakeInstance>,
    /// Claim name -> provider id.
    by_claim: BTreeMap<String, String>,
    /// Provider id -> when its launch completes.
    ready_at: BTreeMap<String, Instant>,
    next_instance: u64,
    calls: Vec<FakeCall>,
    injected: BTreeMap<Operation, VecDeque<Error>>,
    out_of_capacity: BTreeSet<OfferingKey>,
    windows: BTreeMap<IceWindowId, OfferingMatcher>,
    next_window: u64,
    /// Offerings that failed a launch, unavailable until the instant.
    unavailable_until: BTreeMap<OfferingKey, Instant>,
    drifted: BTreeMap<String, DriftReason>,
    /// Node class name -> the image its `amiSelectorTerms` select now.
    class_images: BTreeMap<String, String>,
    node_classes_not_ready: BTreeMap<String, String>,
    launches: u64,
    interruptions: u64,
    /// The interruption queue: visible messages, oldest first.
    messages: VecDeque<InterruptionMessage>,
    /// Received and not acknowledged, visible again at the instant.
    in_flight: BTreeMap<AckHandle, (InterruptionMessage, Instant)>,
    next_message: u64,
    acknowledged: u64,
    /// Expected interruption cost per hour, added to the price when choosing among offerings.
    interruption_costs: BTreeMap<OfferingKey, f64>,
    /// The EC2 calls the AWS provider would have made for the calls so far.
    ec2: Ec2Calls,
}

impl State {
    fn record(&mut self, operation: Operation, subject: &str) -> Result<()> {
        self.calls.push(FakeCall {
            operation,
            subject: subject.to_string(),
        });
        match self
            .injected
            .get_mut(&operation)
            .and_then(VecDeque::pop_front)
        {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// Whether the offering can be filled now (no mark, no open window). Allocation-free unless
    /// single offerings are marked.
    fn has_capacity(&self, it: &InstanceType, o: &Offering) -> bool {
        (self.out_of_capacity.is_empty() || !self.out_of_capacity.contains(&key_of(it, o)))
            && !self
                .windows
                .values()
                .any(|w| w.matches_parts(&it.name, &o.zone, o.capacity_type))
    }

    /// Whether a failed launch cached the offering unavailable.
    fn cached_unavailable(&self, it: &InstanceType, o: &Offering, now: Instant) -> bool {
        !self.unavailable_until.is_empty()
            && self
                .unavailable_until
                .get(&key_of(it, o))
                .is_some_and(|until| *until > now)
    }

    fn set_catalog(&mut self, catalog: Vec<InstanceType>) {
        self.allocatable = catalog.iter().map(InstanceType::allocatable).collect();
        self.by_name = catalog
            .iter()
            .enumerate()
            .map(|(i, it)| (it.name.clone(), i))
            .collect();
        self.catalog = catalog;
    }
}

struct Shared {
    config: FakeConfig,
    state: Mutex<State>,
    events: broadcast::Sender<FakeEvent>,
    /// Wakes a waiting `receive` when a message is queued.
    message_ready: tokio::sync::Notify,
    /// Stamps interruption events with their time (none: events carry no time).
    clock: Option<stowage_clock::SharedClock>,
}

/// The fake cloud; clones share one cloud.
#[derive(Clone)]
pub struct FakeCloud {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FakeCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCloud")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

/// Builds a [`FakeCloud`].
#[derive(Clone, Default)]
pub struct FakeCloudBuilder {
    config: FakeConfig,
    catalog: Vec<InstanceType>,
    clock: Option<stowage_clock::SharedClock>,
}

impl std::fmt::Debug for FakeCloudBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCloudBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl FakeCloudBuilder {
    /// The instance types the cloud sells (e.g. `stowage_aws_catalog::embedded(..)`).
    pub fn catalog(mut self, types: Vec<InstanceType>) -> Self {
        self.catalog = types;
        self
    }

    /// `n` synthetic types in the shape of Karpenter's benchmark
    /// ([`stowage_solver::catalog::karpenter_shape`]).
    pub fn karpenter_catalog(self, n: usize) -> Self {
        self.catalog(stowage_solver::catalog::karpenter_shape(n))
    }

    pub fn region(mut self, region: &str) -> Self {
        self.config.region = region.to_string();
        self
    }

    pub fn launch_latency(mut self, latency: Duration) -> Self {
        self.config.launch_latency = latency;
        self
    }

    pub fn interruption_notice(mut self, notice: Duration) -> Self {
        self.config.interruption_notice = notice;
        self
    }

    pub fn ice_cache_ttl(mut self, ttl: Duration) -> Self {
        self.config.ice_cache_ttl = ttl;
        self
    }

    /// The node-class kind to report from `node_class_kind` (see [`FakeConfig::node_class_kind`]).
    pub fn node_class_kind(mut self, kind: NodeClassKind) -> Self {
        self.config.node_class_kind = Some(kind);
        self
    }

    /// The clock interruption events are stamped with (the simulator's).
    pub fn clock(mut self, clock: stowage_clock::SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.config.event_capacity = capacity.max(1);
        self
    }

    pub fn build(self) -> FakeCloud {
        let (events, _) = broadcast::channel(self.config.event_capacity.max(1));
        let mut state = State {
            next_instance: 1,
            ..State::default()
        };
        state.set_catalog(self.catalog);
        FakeCloud {
            shared: Arc::new(Shared {
                config: self.config,
                state: Mutex::new(state),
                events,
                message_ready: tokio::sync::Notify::new(),
                clock: self.clock,
            }),
        }
    }
}

fn quantities(r: &Resources) -> BTreeMap<String, Quantity> {
    r.0.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Quantity(stowage_api::quantity::format_resource(k, *v)),
            )
        })
        .collect()
}

/// The claim's resource requests in solver units.
fn requests_of(claim: &NodeClaim) -> Result<Resources> {
    let mut r = Resources::new();
    for (name, q) in &claim.spec.resources.requests {
        let v = stowage_api::quantity::parse_resource(name, &q.0).map_err(|e| Error::Launch {
            code: "InvalidRequest".to_string(),
            message: format!("spec.resources.requests.{name}: {e}"),
        })?;
        r.set(name.clone(), v);
    }
    Ok(r)
}

/// Whether the instance type satisfies every requirement the cloud can judge, zone and capacity
/// type aside (those are per offering, see [`offering_matches`]). Requirements on labels neither
/// the type nor the claim define are the claim's own custom labels (the node gets them from the
/// claim) and do not restrict the choice; a well-known label the type lacks counts as absent.
fn type_matches(
    requirements: &Requirements,
    it: &InstanceType,
    claim_labels: &BTreeMap<String, String>,
    region: &str,
) -> bool {
    requirements.iter().all(|(key, set)| {
        let value = match key {
            labels::ZONE | labels::CAPACITY_TYPE => return true,
            labels::REGION => Some(it.labels.get(key).map_or(region, String::as_str)),
            _ => match it.labels.get(key).or_else(|| claim_labels.get(key)) {
                Some(v) => Some(v.as_str()),
                None if labels::WELL_KNOWN.contains(&key) => None,
                None => return true,
            },
        };
        set.matches(value)
    })
}

/// Whether the offering's zone and capacity type satisfy the requirements.
fn offering_matches(requirements: &Requirements, offering: &Offering) -> bool {
    requirements
        .get(labels::ZONE)
        .is_none_or(|set| set.matches(Some(&offering.zone)))
        && requirements
            .get(labels::CAPACITY_TYPE)
            .is_none_or(|set| set.matches(Some(offering.capacity_type.as_str())))
}

fn key_of(it: &InstanceType, o: &Offering) -> OfferingKey {
    OfferingKey {
        instance_type: it.name.clone(),
        zone: o.zone.clone(),
        capacity_type: o.capacity_type,
    }
}

impl FakeCloud {
    pub fn builder() -> FakeCloudBuilder {
        FakeCloudBuilder::default()
    }

    /// A cloud selling `catalog` with default settings.
    pub fn new(catalog: Vec<InstanceType>) -> Self {
        Self::builder().catalog(catalog).build()
    }

    pub fn config(&self) -> &FakeConfig {
        &self.shared.config
    }

    fn state(&self) -> MutexGuard<'_, State> {
        match self.shared.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn emit(&self, event: FakeEvent) {
        // No subscriber is fine: nobody is watching.
        let _ = self.shared.events.send(event);
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<FakeEvent> {
        self.shared.events.subscribe()
    }

    // --- scripting -------------------------------------------------------------------------------

    /// Makes the next call of `operation` fail with `error` (errors queue per operation).
    pub fn fail_next(&self, operation: Operation, error: Error) {
        self.state()
            .injected
            .entry(operation)
            .or_default()
            .push_back(error);
    }

    /// Marks one offering out of capacity until [`FakeCloud::restore_capacity`].
    pub fn mark_insufficient(&self, key: OfferingKey) {
        self.state().out_of_capacity.insert(key);
    }

    pub fn restore_capacity(&self, key: &OfferingKey) {
        self.state().out_of_capacity.remove(key);
    }

    /// Opens an insufficient-capacity window over every offering `matcher` matches.
    pub fn open_ice_window(&self, matcher: OfferingMatcher) -> IceWindowId {
        let mut state = self.state();
        let id = IceWindowId(state.next_window);
        state.next_window += 1;
        state.windows.insert(id, matcher);
        id
    }

    /// Closes a window; returns whether it was open.
    pub fn close_ice_window(&self, id: IceWindowId) -> bool {
        self.state().windows.remove(&id).is_some()
    }

    /// Opens a window that closes by itself after `duration` (tokio time; needs a runtime).
    pub fn ice_window_for(&self, matcher: OfferingMatcher, duration: Duration) -> IceWindowId {
        let id = self.open_ice_window(matcher);
        let cloud = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            cloud.close_ice_window(id);
        });
        id
    }

    /// Makes `is_drifted` report `reason` for the claim.
    pub fn mark_drifted(&self, claim_name: &str, reason: DriftReason) {
        self.state().drifted.insert(claim_name.to_string(), reason);
    }

    /// Makes `reconcile_node_class` report the class not ready (`None` makes it ready again).
    pub fn set_node_class_not_ready(&self, class_name: &str, reason: Option<&str>) {
        let mut state = self.state();
        match reason {
            Some(r) => state
                .node_classes_not_ready
                .insert(class_name.to_string(), r.to_string()),
            None => state.node_classes_not_ready.remove(class_name),
        };
    }

    /// Replaces the catalogue.
    pub fn set_catalog(&self, types: Vec<InstanceType>) {
        self.state().set_catalog(types);
    }

    /// Interrupts an instance: a warning now, termination after the notice (needs a runtime).
    pub fn interrupt(&self, provider_id: &str) -> Result<()> {
        let notice = self.shared.config.interruption_notice;
        let claim_name = {
            let mut state = self.state();
            let instance = state
                .instances
                .get_mut(provider_id)
                .ok_or_else(|| Error::NotFound(provider_id.to_string()))?;
            if instance.state == InstanceState::Interrupted {
                return Ok(());
            }
            instance.state = InstanceState::Interrupted;
            let name = instance.claim_name.clone();
            let mut event =
                InterruptionEvent::new(InterruptionKind::SpotInterruption, &instance.instance_id);
            event.offering = Some(OfferingKey {
                instance_type: instance.instance_type.clone(),
                zone: instance.zone.clone(),
                capacity_type: instance.capacity_type,
            });
            event.time = self.shared.clock.as_ref().map(|c| c.now());
            state.interruptions += 1;
            Self::queue_message(&mut state, MessageContent::Events(vec![event]));
            name
        };
        self.shared.message_ready.notify_one();
        self.emit(FakeEvent::InterruptionWarning {
            claim_name,
            provider_id: provider_id.to_string(),
            notice,
        });
        let cloud = self.clone();
        let provider_id = provider_id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(notice).await;
            cloud.terminate(&provider_id, TerminationReason::Interrupted);
        });
        Ok(())
    }

    /// Terminates an instance at once, without a warning (it went away behind the core's back).
    pub fn vanish(&self, provider_id: &str) -> Result<()> {
        self.terminate(provider_id, TerminationReason::Interrupted)
            .map(|_| ())
            .ok_or_else(|| Error::NotFound(provider_id.to_string()))
    }

    /// Interrupts up to `n` running spot instances (lowest provider ids first, so the choice is
    /// deterministic); returns their provider ids.
    pub fn interrupt_spot(&self, n: usize) -> Vec<String> {
        let chosen: Vec<String> = self
            .state()
            .instances
            .values()
            .filter(|i| i.capacity_type == CapacityType::Spot && i.state == InstanceState::Running)
            .take(n)
            .map(|i| i.provider_id.clone())
            .collect();
        chosen
            .into_iter()
            .filter(|id| self.interrupt(id).is_ok())
            .collect()
    }

    fn queue_message(state: &mut State, content: MessageContent) {
        state.next_message += 1;
        let id = format!("m-{:06}", state.next_message);
        if state.messages.len() >= MAX_QUEUED {
            state.messages.pop_front();
        }
        state.messages.push_back(InterruptionMessage {
            ack: AckHandle(format!("receipt-{id}")),
            id,
            content,
        });
    }

    /// Puts a message on the interruption queue (any event, or an ignored or malformed one).
    pub fn send_message(&self, content: MessageContent) {
        Self::queue_message(&mut self.state(), content);
        self.shared.message_ready.notify_one();
    }

    /// Messages on the queue or received and not acknowledged yet.
    pub fn unacknowledged_messages(&self) -> usize {
        let state = self.state();
        state.messages.len() + state.in_flight.len()
    }

    /// Messages acknowledged so far.
    pub fn acknowledged_messages(&self) -> u64 {
        self.state().acknowledged
    }

    /// Whether the offering is shown unavailable now (a failed launch or `mark_unavailable`).
    pub fn is_unavailable(&self, key: &OfferingKey) -> bool {
        self.state()
            .unavailable_until
            .get(key)
            .is_some_and(|until| *until > Instant::now())
    }

    fn terminate(&self, provider_id: &str, reason: TerminationReason) -> Option<FakeInstance> {
        let removed = {
            let mut state = self.state();
            let removed = state.instances.remove(provider_id)?;
            state.ready_at.remove(provider_id);
            if state
                .by_claim
                .get(&removed.claim_name)
                .is_some_and(|id| id == provider_id)
            {
                state.by_claim.remove(&removed.claim_name);
            }
            removed
        };
        self.emit(FakeEvent::Terminated {
            claim_name: removed.claim_name.clone(),
            provider_id: provider_id.to_string(),
            reason,
        });
        Some(removed)
    }

    // --- inspection ------------------------------------------------------------------------------

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<FakeCall> {
        self.state().calls.clone()
    }

    pub fn call_count(&self, operation: Operation) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|c| c.operation == operation)
            .count()
    }

    /// How many calls so far, of every operation.
    pub fn call_total(&self) -> usize {
        self.state().calls.len()
    }

    pub fn clear_calls(&self) {
        self.state().calls.clear();
    }

    /// The EC2 calls the AWS provider would have made so far (coalesced as it coalesces them).
    pub fn ec2_call_total(&self) -> u64 {
        self.state().ec2.total()
    }

    /// [`FakeCloud::ec2_call_total`] by EC2 action name (`CreateFleet`, `DescribeInstances`, ...).
    pub fn ec2_calls(&self) -> BTreeMap<String, u64> {
        self.state().ec2.by_action()
    }

    /// Live instances, by provider id.
    pub fn instances(&self) -> Vec<FakeInstance> {
        self.state().instances.values().cloned().collect()
    }

    pub fn instance(&self, provider_id: &str) -> Option<FakeInstance> {
        self.state().instances.get(provider_id).cloned()
    }

    /// The catalogue as sold (without the failed-launch cache applied).
    pub fn catalog(&self) -> Vec<InstanceType> {
        self.state().catalog.clone()
    }

    /// Sum of the hourly prices of live instances.
    pub fn cost_per_hour(&self) -> f64 {
        self.state()
            .instances
            .values()
            .map(|i| i.price_per_hour)
            .sum()
    }

    /// Instances launched so far (repeated creates of one claim count once).
    pub fn launch_count(&self) -> u64 {
        self.state().launches
    }

    pub fn interruption_count(&self) -> u64 {
        self.state().interruptions
    }

    // --- the provider --------------------------------------------------------------------------

    /// The claim as the cloud reports it: labels merged, status filled.
    fn claim_with(claim: &NodeClaim, instance: &FakeInstance) -> NodeClaim {
        let mut out = claim.clone();
        out.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .extend(instance.labels.clone());
        let status = out.status_mut();
        status.provider_id = Some(instance.provider_id.clone());
        status.image_id = Some(instance.image_id.clone());
        status.capacity = quantities(&instance.capacity);
        status.allocatable = quantities(&instance.allocatable);
        out
    }

    /// A claim reconstructed from an instance (for `get` and `list`).
    fn claim_from(instance: &FakeInstance) -> NodeClaim {
        let mut claim = NodeClaim::new(&instance.claim_name, Default::default());
        claim.spec.taints = instance.taints.clone();
        claim.spec.startup_taints = instance.startup_taints.clone();
        Self::claim_with(&claim, instance)
    }

    /// Picks the offering for a claim, or the ICE error (caching the tried offerings).
    fn choose(
        &self,
        state: &mut State,
        claim: &NodeClaim,
        now: Instant,
    ) -> Result<(InstanceType, Offering, Resources)> {
        let requirements =
            Requirements::from_requirements(&claim.spec.requirements).map_err(|e| {
                Error::Launch {
                    code: "InvalidRequirements".to_string(),
                    message: e.to_string(),
                }
            })?;
        let requests = requests_of(claim)?;
        let claim_labels = claim.metadata.labels.clone().unwrap_or_default();
        let region = self.shared.config.region.as_str();
        // Claims usually list their instance-type options: look those up instead of scanning.
        let indexes: Vec<usize> = match requirements.get(labels::INSTANCE_TYPE) {
            Some(set) if set.is_finite() => set
                .values()
                .iter()
                .filter_map(|n| state.by_name.get(n).copied())
                .collect(),
            _ => (0..state.catalog.len()).collect(),
        };
        let mut candidates: Vec<(&InstanceType, &Offering, &Resources)> = Vec::new();
        for i in indexes {
            let (Some(it), Some(allocatable)) = (state.catalog.get(i), state.allocatable.get(i))
            else {
                continue;
            };
            if !type_matches(&requirements, it, &claim_labels, region)
                || !(requests.is_zero() || requests.fits_in(allocatable))
            {
                continue;
            }
            for o in &it.offerings {
                if o.available
                    && offering_matches(&requirements, o)
                    && !state.cached_unavailable(it, o, now)
                {
                    candidates.push((it, o, allocatable));
                }
            }
        }
        let Some(capacity_type) = candidates.iter().map(|(_, o, _)| o.capacity_type).min() else {
            return Err(Error::InsufficientCapacity {
                offerings: Vec::new(),
            });
        };
        candidates.retain(|(_, o, _)| o.capacity_type == capacity_type);
        let best = candidates
            .iter()
            .filter(|(it, o, _)| state.has_capacity(it, o))
            .min_by(|(ia, a, _), (ib, b, _)| {
                let cost = |it: &InstanceType, o: &Offering| {
                    o.price_per_hour
                        + if state.interruption_costs.is_empty() {
                            0.0
                        } else {
                            state
                                .interruption_costs
                                .get(&key_of(it, o))
                                .copied()
                                .unwrap_or(0.0)
                        }
                };
                cost(ia, a)
                    .total_cmp(&cost(ib, b))
                    .then_with(|| ia.name.cmp(&ib.name))
                    .then_with(|| a.zone.cmp(&b.zone))
            })
            .map(|(it, o, alloc)| ((*it).clone(), (*o).clone(), (*alloc).clone()));
        match best {
            Some(choice) => Ok(choice),
            None => {
                let mut tried: Vec<OfferingKey> =
                    candidates.iter().map(|(it, o, _)| key_of(it, o)).collect();
                tried.sort();
                tried.dedup();
                let until = now + self.shared.config.ice_cache_ttl;
                for key in &tried {
                    state.unavailable_until.insert(key.clone(), until);
                }
                Err(Error::InsufficientCapacity { offerings: tried })
            }
        }
    }
}

#[async_trait]
impl CloudProvider for FakeCloud {
    async fn create(&self, claim: &NodeClaim) -> Result<NodeClaim> {
        let name = claim.metadata.name.clone().unwrap_or_default();
        let latency = self.shared.config.launch_latency;
        let (instance, ready_at, is_new) = {
            let mut state = self.state();
            let recorded = state.record(Operation::Create, &name);
            let now = Instant::now();
            // The provider looks the claim's instance up by tag first (batched).
            state.ec2.describe(now);
            recorded?;
            let existing = state
                .by_claim
                .get(&name)
                .and_then(|id| state.instances.get(id))
                .cloned();
            if let Some(instance) = existing {
                let ready_at = state
                    .ready_at
                    .get(&instance.provider_id)
                    .copied()
                    .unwrap_or(now);
                (instance, ready_at, false)
            } else {
                // One CreateFleet per launch shape and window, whether it fills or not.
                let shape = shape_key(&(
                    &claim.spec.node_class_ref.name,
                    claim.nodepool_name(),
                    format!("{:?}", claim.spec.requirements),
                ));
                state
                    .ec2
                    .coalesced(Ec2Action::CreateFleet, shape, LAUNCH_WINDOW, now);
                let (it, offering, allocatable) = self.choose(&mut state, claim, now)?;
                let instance_id = format!("i-{:06}", state.next_instance);
                state.next_instance += 1;
                let provider_id = format!("{PROVIDER_ID_PREFIX}{}/{instance_id}", offering.zone);
                let mut labels = claim.metadata.labels.clone().unwrap_or_default();
                labels.extend(it.labels.clone());
                labels.insert(labels::ZONE.to_string(), offering.zone.clone());
                labels.insert(
                    labels::CAPACITY_TYPE.to_string(),
                    offering.capacity_type.as_str().to_string(),
                );
                labels
                    .entry(labels::REGION.to_string())
                    .or_insert_with(|| self.shared.config.region.clone());
                let instance = FakeInstance {
                    provider_id: provider_id.clone(),
                    instance_id,
                    claim_name: name.clone(),
                    nodepool: claim.nodepool_name().map(str::to_string),
                    instance_type: it.name.clone(),
                    zone: offering.zone.clone(),
                    capacity_type: offering.capacity_type,
                    price_per_hour: offering.price_per_hour,
                    capacity: it.capacity.clone(),
                    allocatable,
                    labels,
                    taints: claim.spec.taints.clone(),
                    startup_taints: claim.spec.startup_taints.clone(),
                    state: InstanceState::Pending,
                    image_id: state
                        .class_images
                        .get(&claim.spec.node_class_ref.name)
                        .cloned()
                        .unwrap_or_else(|| DEFAULT_IMAGE.to_string()),
                };
                let ready_at = now + latency;
                state
                    .instances
                    .insert(provider_id.clone(), instance.clone());
                state.by_claim.insert(name.clone(), provider_id.clone());
                state.ready_at.insert(provider_id, ready_at);
                state.launches += 1;
                (instance, ready_at, true)
            }
        };
        tokio::time::sleep_until(ready_at).await;
        // The instance comes up whether or not the call that launched it is still waiting (a
        // controller killed mid-launch): whichever call sees it first completes it.
        let (current, completed) = {
            let mut state = self.state();
            state.ready_at.remove(&instance.provider_id);
            match state.instances.get_mut(&instance.provider_id) {
                Some(i) => {
                    let completed = i.state == InstanceState::Pending;
                    if completed {
                        i.state = InstanceState::Running;
                    }
                    (Some(i.clone()), completed)
                }
                None => (None, false),
            }
        };
        match current {
            Some(launched) => {
                if is_new || completed {
                    self.emit(FakeEvent::Launched(launched.clone()));
                }
                Ok(Self::claim_with(claim, &launched))
            }
            None if is_new => Err(Error::Launch {
                code: "InstanceTerminated".to_string(),
                message: format!("{} was terminated while launching", instance.provider_id),
            }),
            None => Ok(Self::claim_with(claim, &instance)),
        }
    }

    async fn delete(&self, claim: &NodeClaim) -> Result<()> {
        let name = claim.metadata.name.clone().unwrap_or_default();
        let provider_id = {
            let mut state = self.state();
            let recorded = state.record(Operation::Delete, &name);
            let now = Instant::now();
            state.ec2.describe(now);
            recorded?;
            let provider_id = claim
                .provider_id()
                .map(str::to_string)
                .or_else(|| state.by_claim.get(&name).cloned());
            // TerminateInstances only for an instance that is still there (batched).
            if provider_id
                .as_ref()
                .is_some_and(|id| state.instances.contains_key(id))
            {
                state
                    .ec2
                    .coalesced(Ec2Action::TerminateInstances, 0, TERMINATE_WINDOW, now);
            }
            provider_id
        };
        // A batched call returns when its batch closes.
        tokio::time::sleep(DESCRIBE_WINDOW.idle).await;
        let Some(provider_id) = provider_id else {
            return Err(Error::NotFound(name));
        };
        match self.terminate(&provider_id, TerminationReason::Deleted) {
            Some(_) => Ok(()),
            None => Err(Error::NotFound(provider_id)),
        }
    }

    async fn get(&self, provider_id: &str) -> Result<NodeClaim> {
        {
            let mut state = self.state();
            let recorded = state.record(Operation::Get, provider_id);
            state.ec2.describe(Instant::now());
            recorded?;
        }
        // A batched call returns when its batch closes.
        tokio::time::sleep(DESCRIBE_WINDOW.idle).await;
        let state = self.state();
        state
            .instances
            .get(provider_id)
            .map(Self::claim_from)
            .ok_or_else(|| Error::NotFound(provider_id.to_string()))
    }

    async fn list(&self) -> Result<Vec<NodeClaim>> {
        let mut state = self.state();
        let recorded = state.record(Operation::List, "");
        // One DescribeInstances by cluster tag (its own call, not batched by id).
        state.ec2.single(Ec2Action::DescribeInstances);
        recorded?;
        Ok(state.instances.values().map(Self::claim_from).collect())
    }

    async fn instance_types(&self, pool: &stowage_api::NodePool) -> Result<Vec<InstanceType>> {
        let mut state = self.state();
        let recorded = state.record(
            Operation::InstanceTypes,
            pool.metadata.name.as_deref().unwrap_or_default(),
        );
        let now = Instant::now();
        state.ec2.catalog(now);
        recorded?;
        state.unavailable_until.retain(|_, until| *until > now);
        let mut types = state.catalog.clone();
        for it in &mut types {
            let name = it.name.clone();
            for o in &mut it.offerings {
                let key = OfferingKey {
                    instance_type: name.clone(),
                    zone: o.zone.clone(),
                    capacity_type: o.capacity_type,
                };
                if state.unavailable_until.contains_key(&key) {
                    o.available = false;
                }
            }
        }
        Ok(types)
    }

    async fn is_drifted(&self, claim: &NodeClaim) -> Result<Option<DriftReason>> {
        let name = claim.metadata.name.clone().unwrap_or_default();
        {
            let mut state = self.state();
            let recorded = state.record(Operation::IsDrifted, &name);
            state.ec2.describe(Instant::now());
            recorded?;
        }
        // A batched call returns when its batch closes.
        tokio::time::sleep(DESCRIBE_WINDOW.idle).await;
        let state = self.state();
        if let Some(reason) = state.drifted.get(&name) {
            return Ok(Some(reason.clone()));
        }
        // The image the node booted is no longer the one its class selects.
        let booted = state
            .by_claim
            .get(&name)
            .and_then(|id| state.instances.get(id))
            .map(|i| i.image_id.clone());
        let selected = state.class_images.get(&claim.spec.node_class_ref.name);
        Ok(match (booted, selected) {
            (Some(booted), Some(selected)) if booted != *selected => Some(DriftReason::AmiDrift),
            _ => None,
        })
    }

    fn node_class_kind(&self) -> Option<NodeClassKind> {
        self.shared.config.node_class_kind.clone()
    }

    /// Ranks offerings by price plus these costs in `create` (what the solver ranks by).
    fn set_interruption_costs(&self, costs: Vec<(OfferingKey, f64)>) {
        self.state().interruption_costs = costs.into_iter().filter(|(_, c)| *c > 0.0).collect();
    }

    fn mark_unavailable(&self, offering: &OfferingKey, ttl: Duration) {
        let until = Instant::now() + ttl;
        let mut state = self.state();
        let entry = state
            .unavailable_until
            .entry(offering.clone())
            .or_insert(until);
        *entry = (*entry).max(until);
    }

    /// A ready class with one subnet per catalogue zone, one security group and one image
    /// (status fields in the shape of the simulator's AWS-like node class), unless scripted not
    /// ready with [`FakeCloud::set_node_class_not_ready`].
    async fn reconcile_node_class(&self, class: &serde_json::Value) -> Result<NodeClassStatus> {
        let name = class
            .pointer("/metadata/name")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string();
        let mut state = self.state();
        let recorded = state.record(Operation::ReconcileNodeClass, &name);
        state.ec2.resolve_node_class();
        recorded?;
        if let Some(reason) = state.node_classes_not_ready.get(&name) {
            return Ok(NodeClassStatus::not_ready(reason));
        }
        let image = image_of(class);
        state.class_images.insert(name.clone(), image.clone());
        let zones: BTreeSet<&str> = state
            .catalog
            .iter()
            .flat_map(|it| it.offerings.iter().map(|o| o.zone.as_str()))
            .collect();
        let subnets: Vec<serde_json::Value> = zones
            .iter()
            .map(|z| serde_json::json!({"id": format!("subnet-fake-{z}"), "zone": z}))
            .collect();
        let mut status = NodeClassStatus::ready();
        status.fields.insert("subnets".into(), subnets.into());
        status.fields.insert(
            "securityGroups".into(),
            serde_json::json!([{"id": "sg-fake", "name": "fake"}]),
        );
        status.fields.insert(
            "amis".into(),
            serde_json::json!([{"id": image, "name": "fake"}]),
        );
        Ok(status)
    }

    fn name(&self) -> &'static str {
        "fake"
    }
}

#[async_trait]
impl InterruptionSource for FakeCloud {
    /// Up to [`MAX_BATCH`] visible messages, waiting up to 20 s (tokio time) for one.
    async fn receive(&self) -> Result<Vec<InterruptionMessage>> {
        let deadline = Instant::now() + LONG_POLL;
        loop {
            // Registered before looking, so a message queued in between is not missed.
            let notified = self.shared.message_ready.notified();
            let next_visible = {
                let mut state = self.state();
                let now = Instant::now();
                let expired: Vec<AckHandle> = state
                    .in_flight
                    .iter()
                    .filter(|(_, (_, at))| *at <= now)
                    .map(|(h, _)| h.clone())
                    .collect();
                for h in expired {
                    if let Some((m, _)) = state.in_flight.remove(&h) {
                        state.messages.push_back(m);
                    }
                }
                let n = state.messages.len().min(MAX_BATCH);
                let batch: Vec<InterruptionMessage> = state.messages.drain(..n).collect();
                for m in &batch {
                    state
                        .in_flight
                        .insert(m.ack.clone(), (m.clone(), now + VISIBILITY_TIMEOUT));
                }
                if !batch.is_empty() {
                    return Ok(batch);
                }
                state.in_flight.values().map(|(_, at)| *at).min()
            };
            let wake = next_visible.map_or(deadline, |t| t.min(deadline));
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn acknowledge(&self, ack: &AckHandle) -> Result<()> {
        let mut state = self.state();
        if state.in_flight.remove(ack).is_some() {
            state.acknowledged += 1;
        }
        Ok(())
    }

    fn name(&self) -> &'static str {
        "fake"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_api::{NodeClaimSpec, Requirement};
    use stowage_solver::catalog::{ZONES, karpenter_shape, type_name};

    /// A claim builder: `claim("a").types(&[..]).zones(&[..]).capacity(&[..]).cpu("3")`.
    struct ClaimBuilder(NodeClaim);

    fn claim(name: &str) -> ClaimBuilder {
        let mut c = NodeClaim::new(name, NodeClaimSpec::default());
        c.metadata.labels = Some([(labels::NODEPOOL.to_string(), "default".to_string())].into());
        ClaimBuilder(c)
    }

    impl ClaimBuilder {
        fn req(mut self, key: &str, values: &[&str]) -> Self {
            self.0
                .spec
                .requirements
                .push(Requirement::in_(key, values.iter().copied()));
            self
        }
        fn types(self, names: &[&str]) -> Self {
            self.req(labels::INSTANCE_TYPE, names)
        }
        fn zones(self, zones: &[&str]) -> Self {
            self.req(labels::ZONE, zones)
        }
        fn capacity(self, types: &[&str]) -> Self {
            self.req(labels::CAPACITY_TYPE, types)
        }
        fn cpu(mut self, q: &str) -> Self {
            self.0
                .spec
                .resources
                .requests
                .insert("cpu".into(), Quantity(q.into()));
            self
        }
        fn build(self) -> NodeClaim {
            self.0
        }
    }

    fn key(t: &str, z: &str, c: CapacityType) -> OfferingKey {
        OfferingKey {
            instance_type: t.into(),
            zone: z.into(),
            capacity_type: c,
        }
    }

    fn cloud() -> FakeCloud {
        FakeCloud::builder().karpenter_catalog(10).build()
    }

    fn pool() -> stowage_api::NodePool {
        stowage_api::NodePool::new("default", Default::default())
    }

    #[tokio::test(start_paused = true)]
    async fn create_picks_the_cheapest_spot_offering_and_fills_the_status() {
        let cloud = cloud();
        let mut events = cloud.subscribe();
        let out = cloud.create(&claim("a").cpu("3").build()).await.unwrap();
        // fake-it-2 (3 vCPU) is the smallest that fits; spot beats on-demand; zone a wins the tie.
        let status = out.status.as_ref().unwrap();
        assert_eq!(
            status.provider_id.as_deref(),
            Some("fake:///test-zone-a/i-000001")
        );
        assert_eq!(
            out.label(labels::INSTANCE_TYPE),
            Some(type_name(2).as_str())
        );
        assert_eq!(out.label(labels::CAPACITY_TYPE), Some("spot"));
        assert_eq!(out.label(labels::ZONE), Some(ZONES[0]));
        assert_eq!(out.label(labels::REGION), Some("us-east-1"));
        assert_eq!(out.label(labels::NODEPOOL), Some("default"));
        assert_eq!(out.label(labels::ARCH), Some("amd64"));
        assert_eq!(status.capacity["cpu"].0, "3");
        assert_eq!(status.allocatable["memory"].0, "6Gi");
        match events.recv().await.unwrap() {
            FakeEvent::Launched(i) => {
                assert_eq!(i.claim_name, "a");
                assert_eq!(i.instance_type, type_name(2));
                assert_eq!(i.capacity_type, CapacityType::Spot);
                assert_eq!(i.state, InstanceState::Running);
                assert_eq!(i.labels[labels::NODEPOOL], "default");
            }
            other => panic!("{other:?}"),
        }
        assert!((cloud.cost_per_hour() - 0.9 * 0.7).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn requirements_restrict_type_zone_and_capacity_type() {
        let cloud = cloud();
        let out = cloud
            .create(
                &claim("a")
                    .types(&["fake-it-5", "fake-it-7"])
                    .zones(&[ZONES[2]])
                    .capacity(&["on-demand"])
                    .build(),
            )
            .await
            .unwrap();
        assert_eq!(out.label(labels::INSTANCE_TYPE), Some("fake-it-5"));
        assert_eq!(out.label(labels::ZONE), Some(ZONES[2]));
        assert_eq!(out.label(labels::CAPACITY_TYPE), Some("on-demand"));
        // A custom label requirement is the claim's business, not the cloud's.
        let out = cloud
            .create(&claim("b").req("team", &["ml"]).build())
            .await
            .unwrap();
        assert_eq!(out.label(labels::INSTANCE_TYPE), Some("fake-it-0"));
        // A well-known label no type has cannot be satisfied.
        let err = cloud
            .create(&claim("c").req(labels::INSTANCE_GPU_NAME, &["h100"]).build())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InsufficientCapacity { ref offerings } if offerings.is_empty()),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_instance_type_options_are_insufficient_capacity() {
        let cloud = cloud();
        let err = cloud
            .create(&claim("a").types(&["m5.large"]).build())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::InsufficientCapacity { ref offerings } if offerings.is_empty())
        );
        // A new catalogue is sold from then on.
        cloud.set_catalog(karpenter_shape(20));
        let out = cloud
            .create(&claim("b").types(&["fake-it-15"]).build())
            .await
            .unwrap();
        assert_eq!(out.label(labels::INSTANCE_TYPE), Some("fake-it-15"));
        assert_eq!(out.status.unwrap().capacity["cpu"].0, "16");
    }

    #[tokio::test(start_paused = true)]
    async fn reserved_beats_spot_even_when_dearer() {
        let mut types = karpenter_shape(2);
        types[1].offerings.push(Offering {
            zone: ZONES[1].into(),
            capacity_type: CapacityType::Reserved,
            price_per_hour: 50.0,
            available: true,
            reservation_capacity: Some(1),
            reservation_id: Some("cr-1".into()),
            interruption_cost_per_hour: 0.0,
        });
        let cloud = FakeCloud::new(types);
        let out = cloud.create(&claim("a").build()).await.unwrap();
        assert_eq!(out.label(labels::CAPACITY_TYPE), Some("reserved"));
        assert_eq!(out.label(labels::INSTANCE_TYPE), Some("fake-it-1"));
    }

    #[tokio::test(start_paused = true)]
    async fn create_is_idempotent_per_claim_even_during_launch() {
        let cloud = FakeCloud::builder()
            .karpenter_catalog(3)
            .launch_latency(Duration::from_secs(30))
            .build();
        let c = claim("a").build();
        let start = Instant::now();
        let (first, second) = tokio::join!(cloud.create(&c), async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            cloud.create(&c).await
        });
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(30),
            "both wait for the one launch"
        );
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(first.provider_id(), second.provider_id());
        assert_eq!(cloud.instances().len(), 1);
        assert_eq!(cloud.launch_count(), 1);
        let third = cloud.create(&c).await.unwrap();
        assert_eq!(third.provider_id(), first.provider_id());
        assert_eq!(cloud.call_count(Operation::Create), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn ice_on_every_spot_offering_fails_and_is_then_shown_unavailable() {
        let cloud = cloud();
        let c = claim("a").types(&["fake-it-0"]).build();
        for z in ZONES {
            cloud.mark_insufficient(key("fake-it-0", z, CapacityType::Spot));
        }
        let err = cloud.create(&c).await.unwrap_err();
        let Error::InsufficientCapacity { offerings } = err else {
            panic!("{err}")
        };
        assert_eq!(
            offerings,
            ZONES
                .iter()
                .map(|z| key("fake-it-0", z, CapacityType::Spot))
                .collect::<Vec<_>>()
        );
        assert!(cloud.instances().is_empty());

        // The failed offerings show unavailable, so the next solve picks on-demand...
        let types = cloud.instance_types(&pool()).await.unwrap();
        let spot: Vec<bool> = types[0]
            .offerings
            .iter()
            .filter(|o| o.capacity_type == CapacityType::Spot)
            .map(|o| o.available)
            .collect();
        assert_eq!(spot, [false, false, false]);
        let out = cloud.create(&c).await.unwrap();
        assert_eq!(out.label(labels::CAPACITY_TYPE), Some("on-demand"));

        // ...until the cache expires.
        tokio::time::sleep(Duration::from_secs(181)).await;
        let types = cloud.instance_types(&pool()).await.unwrap();
        assert!(types[0].offerings.iter().all(|o| o.available));
    }

    #[tokio::test(start_paused = true)]
    async fn ice_on_one_zone_moves_to_the_next_cheapest() {
        let cloud = cloud();
        cloud.mark_insufficient(key("fake-it-0", ZONES[0], CapacityType::Spot));
        let out = cloud.create(&claim("a").build()).await.unwrap();
        assert_eq!(out.label(labels::ZONE), Some(ZONES[1]));
        assert_eq!(out.label(labels::CAPACITY_TYPE), Some("spot"));
        cloud.restore_capacity(&key("fake-it-0", ZONES[0], CapacityType::Spot));
        let out = cloud.create(&claim("b").build()).await.unwrap();
        assert_eq!(out.label(labels::ZONE), Some(ZONES[0]));
    }

    #[tokio::test(start_paused = true)]
    async fn ice_windows_open_and_close() {
        let cloud = cloud();
        let spot = OfferingMatcher {
            capacity_type: Some(CapacityType::Spot),
            ..Default::default()
        };
        let id = cloud.open_ice_window(spot.clone());
        assert!(matches!(
            cloud.create(&claim("a").build()).await,
            Err(Error::InsufficientCapacity { .. })
        ));
        assert!(cloud.close_ice_window(id));
        assert!(!cloud.close_ice_window(id));

        let cloud = FakeCloud::builder()
            .karpenter_catalog(2)
            .ice_cache_ttl(Duration::ZERO)
            .build();
        cloud.ice_window_for(spot, Duration::from_secs(600));
        tokio::task::yield_now().await;
        assert!(cloud.create(&claim("b").build()).await.is_err());
        tokio::time::sleep(Duration::from_secs(601)).await;
        let out = cloud.create(&claim("b").build()).await.unwrap();
        assert_eq!(out.label(labels::CAPACITY_TYPE), Some("spot"));
    }

    #[tokio::test(start_paused = true)]
    async fn delete_terminates_then_reports_not_found() {
        let cloud = cloud();
        let mut events = cloud.subscribe();
        let launched = cloud.create(&claim("a").build()).await.unwrap();
        let id = launched.provider_id().unwrap().to_string();
        assert_eq!(
            cloud.get(&id).await.unwrap().metadata.name.as_deref(),
            Some("a")
        );
        assert_eq!(cloud.list().await.unwrap().len(), 1);
        cloud.delete(&launched).await.unwrap();
        assert!(matches!(cloud.delete(&launched).await, Err(Error::NotFound(ref p)) if *p == id));
        assert!(matches!(cloud.get(&id).await, Err(Error::NotFound(_))));
        assert!(cloud.list().await.unwrap().is_empty());
        // A claim that never launched has nothing to delete.
        assert!(matches!(
            cloud.delete(&claim("never").build()).await,
            Err(Error::NotFound(_))
        ));
        let _launched = events.recv().await.unwrap();
        assert_eq!(
            events.recv().await.unwrap(),
            FakeEvent::Terminated {
                claim_name: "a".into(),
                provider_id: id,
                reason: TerminationReason::Deleted
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn interruption_warns_then_terminates_two_minutes_later() {
        let cloud = cloud();
        let out = cloud.create(&claim("a").build()).await.unwrap();
        let id = out.provider_id().unwrap().to_string();
        let mut events = cloud.subscribe();
        assert_eq!(cloud.interrupt_spot(5), vec![id.clone()]);
        assert_eq!(
            events.recv().await.unwrap(),
            FakeEvent::InterruptionWarning {
                claim_name: "a".into(),
                provider_id: id.clone(),
                notice: Duration::from_secs(120)
            }
        );
        let warned = Instant::now();
        assert_eq!(
            cloud.instance(&id).unwrap().state,
            InstanceState::Interrupted
        );
        match events.recv().await.unwrap() {
            FakeEvent::Terminated { reason, .. } => {
                assert_eq!(reason, TerminationReason::Interrupted)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(warned.elapsed(), Duration::from_secs(120));
        assert!(cloud.instance(&id).is_none());
        assert_eq!(cloud.interruption_count(), 1);
        assert!(matches!(cloud.interrupt(&id), Err(Error::NotFound(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn the_interruption_warning_is_a_message_redelivered_until_acknowledged() {
        let clock: stowage_clock::SharedClock = Arc::new(stowage_clock::TokioClock::starting_at(
            "2026-01-01T00:00:00Z".parse().unwrap(),
        ));
        let cloud = FakeCloud::builder()
            .karpenter_catalog(10)
            .clock(clock)
            .build();
        let out = cloud.create(&claim("a").build()).await.unwrap();
        let id = out.provider_id().unwrap().to_string();
        // Nothing queued: a receive long-polls 20 s and comes back empty.
        let t0 = Instant::now();
        assert!(cloud.receive().await.unwrap().is_empty());
        assert_eq!(t0.elapsed(), Duration::from_secs(20));
        // A receive waiting when the warning is sent gets it at once.
        let waiting = {
            let cloud = cloud.clone();
            tokio::spawn(async move { cloud.receive().await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        cloud.interrupt(&id).unwrap();
        let batch = waiting.await.unwrap().unwrap();
        assert_eq!(batch.len(), 1);
        let MessageContent::Events(events) = &batch[0].content else {
            panic!("{batch:?}");
        };
        assert_eq!(events[0].kind, InterruptionKind::SpotInterruption);
        assert!(events[0].is_for(&id));
        assert_eq!(
            events[0].time,
            Some("2026-01-01T00:00:21Z".parse().unwrap()),
            "stamped with the clock"
        );
        assert_eq!(
            events[0].offering,
            Some(key(&type_name(0), ZONES[0], CapacityType::Spot))
        );
        // Not acknowledged: invisible for 30 s, then delivered again.
        let t1 = Instant::now();
        let again = cloud.receive().await.unwrap();
        assert_eq!(t1.elapsed(), Duration::from_secs(20), "still invisible");
        assert!(again.is_empty());
        let again = cloud.receive().await.unwrap();
        assert_eq!(t1.elapsed(), Duration::from_secs(30));
        assert_eq!(again, batch);
        cloud.acknowledge(&again[0].ack).await.unwrap();
        assert_eq!(cloud.unacknowledged_messages(), 0);
        assert_eq!(cloud.acknowledged_messages(), 1);
        // Batches of at most ten.
        for _ in 0..12 {
            cloud.send_message(MessageContent::Ignored("x".into()));
        }
        assert_eq!(cloud.receive().await.unwrap().len(), 10);
        assert_eq!(cloud.receive().await.unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn offerings_marked_unavailable_are_not_sold_until_the_ttl_passes() {
        let cloud = cloud();
        let spot_a = key(&type_name(2), ZONES[0], CapacityType::Spot);
        cloud.mark_unavailable(&spot_a, Duration::from_secs(600));
        assert!(cloud.is_unavailable(&spot_a));
        let types = cloud.instance_types(&pool()).await.unwrap();
        let o = types[2]
            .offerings
            .iter()
            .find(|o| o.zone == ZONES[0] && o.capacity_type == CapacityType::Spot)
            .unwrap();
        assert!(!o.available);
        let out = cloud.create(&claim("a").cpu("3").build()).await.unwrap();
        assert_eq!(out.label(labels::ZONE), Some(ZONES[1]), "the next zone");
        tokio::time::sleep(Duration::from_secs(601)).await;
        assert!(!cloud.is_unavailable(&spot_a));
        let out = cloud.create(&claim("b").cpu("3").build()).await.unwrap();
        assert_eq!(out.label(labels::ZONE), Some(ZONES[0]));
        // An expected interruption cost on that offering makes the next zone the better buy.
        cloud.set_interruption_costs(vec![(spot_a.clone(), 1.0)]);
        let out = cloud.create(&claim("c").cpu("3").build()).await.unwrap();
        assert_eq!(out.label(labels::ZONE), Some(ZONES[1]));
        assert_eq!(
            out.label(labels::INSTANCE_TYPE),
            Some(type_name(2).as_str())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn injected_errors_are_one_shot_and_calls_are_recorded() {
        let cloud = cloud();
        cloud.fail_next(Operation::Create, Error::Throttled("slow down".into()));
        cloud.fail_next(
            Operation::List,
            Error::Api {
                operation: "list",
                message: "boom".into(),
            },
        );
        assert!(matches!(
            cloud.create(&claim("a").build()).await,
            Err(Error::Throttled(_))
        ));
        assert!(cloud.instances().is_empty());
        cloud.create(&claim("a").build()).await.unwrap();
        assert!(cloud.list().await.is_err());
        assert_eq!(cloud.list().await.unwrap().len(), 1);
        let calls: Vec<(Operation, String)> = cloud
            .calls()
            .into_iter()
            .map(|c| (c.operation, c.subject))
            .collect();
        assert_eq!(
            calls,
            vec![
                (Operation::Create, "a".into()),
                (Operation::Create, "a".into()),
                (Operation::List, String::new()),
                (Operation::List, String::new()),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn resource_requests_must_fit_and_be_valid() {
        let cloud = cloud();
        let err = cloud
            .create(&claim("a").cpu("64").build())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InsufficientCapacity { .. }), "{err}");
        let err = cloud
            .create(&claim("b").cpu("lots").build())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("spec.resources.requests.cpu"),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn drift_and_node_class_status_are_scriptable() {
        let cloud = cloud();
        let c = claim("a").build();
        assert_eq!(cloud.is_drifted(&c).await.unwrap(), None);
        cloud.mark_drifted("a", DriftReason::AmiDrift);
        assert_eq!(
            cloud.is_drifted(&c).await.unwrap(),
            Some(DriftReason::AmiDrift)
        );

        let class = serde_json::json!({"metadata": {"name": "default"}});
        let status = cloud.reconcile_node_class(&class).await.unwrap();
        assert!(status.ready);
        assert_eq!(status.fields["subnets"].as_array().map(Vec::len), Some(3));
        cloud.set_node_class_not_ready("default", Some("no subnets"));
        let status = cloud.reconcile_node_class(&class).await.unwrap();
        assert!(!status.ready);
        assert_eq!(status.message, "no subnets");
    }

    #[tokio::test(start_paused = true)]
    async fn nodes_booted_from_an_image_the_class_no_longer_selects_drift() {
        let cloud = cloud();
        let class = |alias: &str| {
            serde_json::json!({"metadata": {"name": "default"},
                "spec": {"amiSelectorTerms": [{"alias": alias}]}})
        };
        let status = cloud
            .reconcile_node_class(&class("al2023@latest"))
            .await
            .unwrap();
        let first = status.fields["amis"][0]["id"].as_str().unwrap().to_string();
        assert!(first.starts_with("ami-fake-"), "{first}");
        let old = cloud.create(&claim("old").build()).await.unwrap();
        assert_eq!(
            old.status.as_ref().unwrap().image_id.as_deref(),
            Some(first.as_str())
        );
        assert_eq!(cloud.is_drifted(&old).await.unwrap(), None);
        // Same terms, same image; another alias, another image.
        cloud
            .reconcile_node_class(&class("al2023@latest"))
            .await
            .unwrap();
        assert_eq!(cloud.is_drifted(&old).await.unwrap(), None);
        let status = cloud
            .reconcile_node_class(&class("bottlerocket@latest"))
            .await
            .unwrap();
        assert_ne!(
            status.fields["amis"][0]["id"].as_str(),
            Some(first.as_str())
        );
        assert_eq!(
            cloud.is_drifted(&old).await.unwrap(),
            Some(DriftReason::AmiDrift)
        );
        let new = cloud.create(&claim("new").build()).await.unwrap();
        assert_eq!(cloud.is_drifted(&new).await.unwrap(), None);
    }
}
