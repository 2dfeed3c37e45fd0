//! Watchers that feed [`ClusterState`](crate::state::ClusterState): one kube-rs watcher per kind,
//! paginated initial lists (500 per page) so a 40,000-pod cluster is listed gently, bookmarks on,
//! and a re-list replaces the kind's objects wholesale. The state is synced once every kind has
//! completed its first list. Node classes are watched generically (`DynamicObject`) as the kind
//! the cloud provider names, so no cloud's type appears here.
//!
//! Two failure rules. A watcher that cannot reach the API server retries on its own
//! [`WatchBackoff`] (0.5 s doubling to 30 s, jittered; reset only by a successful sync, not by the
//! watcher's `Init` before each attempt) and logs once when it starts failing and once when it
//! recovers. An object that does not decode ([`Lenient`]) is skipped and reported
//! (`stowage_watch_decode_errors_total{kind}` and one warning naming it), never the whole list;
//! its key is kept in the state ([`ClusterState::undecodable`]) so that jobs which read absence
//! as "gone" can wait.

pub mod backoff;
pub mod lenient;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use stowage_api::key::namespaced_key;
use stowage_api::{NodeClaim, NodePool, key_of};
use stowage_cloud::NodeClassKind;

pub use self::backoff::WatchBackoff;
pub use self::lenient::{Lenient, Undecodable};
use crate::context::Context;
use crate::state::{ClusterState, Kind, PreparedPod};

/// Page size of initial lists.
pub const PAGE_SIZE: u32 = 500;

/// A kind the state tracks.
pub trait Tracked: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static {
    const KIND: Kind;
    /// What a list in progress holds of each object until the list completes: the object, or
    /// for kinds the state keeps only part of, that part (a 40,000-pod list is not held whole).
    type Listed: Send + 'static;
    /// The key the state files an object under: `namespace/name`, or the name of a
    /// cluster-scoped object.
    fn key(meta: &ObjectMeta) -> String;
    fn apply(state: &mut ClusterState, obj: Self);
    fn delete(state: &mut ClusterState, key: &str);
    /// What a list holds of `obj` until it completes.
    fn listed(ctx: &Context, obj: Self) -> Self::Listed;
    fn replace(state: &mut ClusterState, objs: Vec<Self::Listed>);
    /// Seconds from creation to binding, when this update binds a pod the state saw unbound.
    fn bound_latency(_state: &ClusterState, _obj: &Self, _now: jiff::Timestamp) -> Option<f64> {
        None
    }
}

fn namespaced_key_of(meta: &ObjectMeta) -> String {
    namespaced_key(
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

fn cluster_key_of(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

impl Tracked for Pod {
    const KIND: Kind = Kind::Pod;
    type Listed = PreparedPod;
    fn key(meta: &ObjectMeta) -> String {
        namespaced_key_of(meta)
    }
    fn apply(state: &mut ClusterState, obj: Self) {
        state.apply_pod(obj)
    }
    fn delete(state: &mut ClusterState, key: &str) {
        state.delete_pod(key)
    }
    fn listed(ctx: &Context, obj: Self) -> PreparedPod {
        ctx.update_state(|s| s.prepare_pod(obj))
    }
    fn replace(state: &mut ClusterState, objs: Vec<PreparedPod>) {
        state.replace_prepared_pods(objs)
    }
    fn bound_latency(state: &ClusterState, obj: &Self, now: jiff::Timestamp) -> Option<f64> {
        let bound = |p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
        };
        if !bound(obj) {
            return None;
        }
        let old = state.pod(&key_of(obj))?;
        if old.node_name().is_some() {
            return None;
        }
        let created = obj.metadata.creation_timestamp.as_ref()?.0;
        Some(now.duration_since(created).as_secs_f64().max(0.0))
    }
}

impl Tracked for Node {
    const KIND: Kind = Kind::Node;
    type Listed = Self;
    fn key(meta: &ObjectMeta) -> String {
        cluster_key_of(meta)
    }
    fn apply(state: &mut ClusterState, obj: Self) {
        state.apply_node(obj)
    }
    fn delete(state: &mut ClusterState, key: &str) {
        state.delete_node(key)
    }
    fn listed(_ctx: &Context, obj: Self) -> Self {
        crate::state::slim_node(obj)
    }
    fn replace(state: &mut ClusterState, objs: Vec<Self>) {
        state.replace_nodes(objs)
    }
}

impl Tracked for NodeClaim {
    const KIND: Kind = Kind::NodeClaim;
    type Listed = Self;
    fn key(meta: &ObjectMeta) -> String {
        cluster_key_of(meta)
    }
    fn apply(state: &mut ClusterState, obj: Self) {
        state.apply_claim(obj)
    }
    fn delete(state: &mut ClusterState, key: &str) {
        state.delete_claim(key)
    }
    fn listed(_ctx: &Context, obj: Self) -> Self {
        obj
    }
    fn replace(state: &mut ClusterState, objs: Vec<Self>) {
        state.replace_claims(objs)
    }
}

impl Tracked for NodePool {
    const KIND: Kind = Kind::NodePool;
    type Listed = Self;
    fn key(meta: &ObjectMeta) -> String {
        cluster_key_of(meta)
    }
    fn apply(state: &mut ClusterState, obj: Self) {
        state.apply_nodepool(obj)
    }
    fn delete(state: &mut ClusterState, key: &str) {
        state.delete_nodepool(key)
    }
    fn listed(_ctx: &Context, obj: Self) -> Self {
        obj
    }
    fn replace(state: &mut ClusterState, objs: Vec<Self>) {
        state.replace_nodepools(objs)
    }
}

/// The cloud provider's node classes, whatever their kind.
impl Tracked for DynamicObject {
    const KIND: Kind = Kind::NodeClass;
    type Listed = Self;
    fn key(meta: &ObjectMeta) -> String {
        cluster_key_of(meta)
    }
    fn apply(state: &mut ClusterState, obj: Self) {
        state.apply_nodeclass(obj)
    }
    fn delete(state: &mut ClusterState, key: &str) {
        state.delete_nodeclass(key)
    }
    fn listed(_ctx: &Context, obj: Self) -> Self {
        obj
    }
    fn replace(state: &mut ClusterState, objs: Vec<Self>) {
        state.replace_nodeclasses(objs)
    }
}

impl Tracked for DaemonSet {
    const KIND: Kind = Kind::DaemonSet;
    type Listed = Self;
    fn key(meta: &ObjectMeta) -> String {
        namespaced_key_of(meta)
    }
    fn apply(state: &mut ClusterState, obj: Self) {
        state.apply_daemonset(obj)
    }
    fn delete(state: &mut ClusterState, key: &str) {
        state.delete_daemonset(key)
    }
    fn listed(_ctx: &Context, obj: Self) -> Self {
        obj
    }
    fn replace(state: &mut ClusterState, objs: Vec<Self>) {
        state.replace_daemonsets(objs)
    }
}

impl Tracked for PodDisruptionBudget {
    const KIND: Kind = Kind::Pdb;
    type Listed = Self;
    fn key(meta: &ObjectMeta) -> String {
        namespaced_key_of(meta)
    }
    fn apply(state: &mut ClusterState, obj: Self) {
        state.apply_pdb(obj)
    }
    fn delete(state: &mut ClusterState, key: &str) {
        state.delete_pdb(key)
    }
    fn listed(_ctx: &Context, obj: Self) -> Self {
        obj
    }
    fn replace(state: &mut ClusterState, objs: Vec<Self>) {
        state.replace_pdbs(objs)
    }
}

/// Runs one watcher of `Api<Lenient<K>>` (`kind` names it in logs and metrics), feeding the
/// state; the stream never ends, so neither does this (abort the task to stop it).
pub async fn feed<K: Tracked>(
    ctx: Arc<Context>,
    api: Api<Lenient<K>>,
    kind: String,
    config: watcher::Config,
) {
    let stream = watcher::watcher(api, config.page_size(PAGE_SIZE));
    let mut stream = std::pin::pin!(stream);
    let mut feed = Feed::<K>::new(kind, WatchBackoff::new());
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => feed.event(&ctx, event),
            // Not polling the stream is the pause: the watcher retries on the next poll.
            Err(err) => {
                if let Some(pause) = feed.failed(&err) {
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// One watcher's bookkeeping between its stream and the state.
struct Feed<K: Tracked> {
    kind: String,
    backoff: WatchBackoff,
    /// What is held of the objects of the list in progress ([`Tracked::listed`]).
    listed: Vec<K::Listed>,
    /// Keys and resourceVersions of the list in progress's objects that do not decode.
    listed_undecodable: BTreeMap<String, String>,
    /// Objects that do not decode, as last reported (key to resourceVersion), so each version is
    /// reported once however often it is re-listed.
    undecodable: BTreeMap<String, String>,
}

impl<K: Tracked> Feed<K> {
    fn new(kind: String, backoff: WatchBackoff) -> Self {
        Self {
            kind,
            backoff,
            listed: Vec::new(),
            listed_undecodable: BTreeMap::new(),
            undecodable: BTreeMap::new(),
        }
    }

    fn event(&mut self, ctx: &Context, event: Event<Lenient<K>>) {
        match event {
            // Sent before each list attempt, so it proves nothing: no backoff reset here.
            Event::Init => {
                self.listed.clear();
                self.listed_undecodable.clear();
            }
            Event::InitApply(Lenient::Decoded(obj)) => self.listed.push(K::listed(ctx, obj)),
            Event::InitApply(Lenient::Undecodable(bad)) => {
                let (key, version) = self.report(ctx, &bad);
                self.listed_undecodable.insert(key, version);
            }
            Event::InitDone => {
                let objs = std::mem::take(&mut self.listed);
                self.undecodable = std::mem::take(&mut self.listed_undecodable);
                let keys: BTreeSet<String> = self.undecodable.keys().cloned().collect();
                ctx.update_state(|s| {
                    K::replace(s, objs);
                    s.set_undecodable(K::KIND, keys);
                    s.mark_synced(K::KIND);
                });
                self.synced();
            }
            Event::Apply(Lenient::Decoded(obj)) => {
                let key = K::key(obj.meta());
                if self.undecodable.remove(&key).is_some() {
                    tracing::info!(kind = %self.kind, name = %key, "object decodes again");
                }
                let now = ctx.clock.now();
                let latency = ctx.update_state(|s| {
                    s.mark_undecodable(K::KIND, &key, false);
                    let latency = K::bound_latency(s, &obj, now);
                    K::apply(s, obj);
                    latency
                });
                if let Some(secs) = latency {
                    ctx.metrics.pod_pending_to_bound_seconds.observe(secs);
                }
                self.synced();
            }
            // What the state held for it is stale: drop it rather than act on it.
            Event::Apply(Lenient::Undecodable(bad)) => {
                let (key, version) = self.report(ctx, &bad);
                ctx.update_state(|s| {
                    K::delete(s, &key);
                    s.mark_undecodable(K::KIND, &key, true);
                });
                self.undecodable.insert(key, version);
                self.synced();
            }
            Event::Delete(obj) => {
                let key = K::key(obj.meta());
                self.undecodable.remove(&key);
                ctx.update_state(|s| {
                    K::delete(s, &key);
                    s.mark_undecodable(K::KIND, &key, false);
                });
                self.synced();
            }
        }
    }

    /// Counts and logs an object that does not decode, once per resourceVersion; returns its key
    /// and resourceVersion.
    fn report(&self, ctx: &Context, bad: &Undecodable) -> (String, String) {
        let key = K::key(&bad.metadata);
        let version = bad.metadata.resource_version.clone().unwrap_or_default();
        if self.undecodable.get(&key) != Some(&version) {
            ctx.metrics.watch_decode_error(&self.kind);
            tracing::warn!(
                kind = %self.kind,
                name = %key,
                resource_version = %version,
                error = %bad.error,
                "object does not decode; skipped until it changes"
            );
        }
        (key, version)
    }

    /// A complete list, or an event from a working watch: the watch is healthy.
    fn synced(&mut self) {
        let failures = self.backoff.synced();
        if failures > 0 {
            tracing::info!(kind = %self.kind, failures, "watch recovered");
        }
    }

    /// The pause before the watcher may retry after `err` (`None`: at once).
    fn failed(&mut self, err: &watcher::Error) -> Option<std::time::Duration> {
        // 410 Gone: the watch's resourceVersion expired; the watcher re-lists. Routine.
        if let watcher::Error::WatchError(status) = err
            && status.code == 410
        {
            tracing::debug!(kind = %self.kind, %err, "watch expired; re-listing");
            return None;
        }
        let retry = self.backoff.failed();
        if retry.started_failing {
            tracing::warn!(
                kind = %self.kind,
                %err,
                "watch failing; retrying with backoff (logged again when it recovers)"
            );
        } else {
            tracing::debug!(
                kind = %self.kind,
                %err,
                failures = self.backoff.failures(),
                pause = ?retry.delay,
                "watch still failing"
            );
        }
        Some(retry.delay)
    }
}

/// The API resource of a node-class kind, for a generic `Api<DynamicObject>`.
pub fn node_class_resource(kind: &NodeClassKind) -> ApiResource {
    ApiResource {
        group: kind.group.clone(),
        version: kind.version.clone(),
        api_version: kind.api_version(),
        kind: kind.kind.clone(),
        plural: kind.plural.clone(),
    }
}

/// Spawns a watcher for every tracked kind (node classes only when the provider has a kind;
/// otherwise they count as synced at once).
pub fn spawn_all(ctx: &Arc<Context>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut handles = match ctx.cloud.node_class_kind() {
        Some(kind) => {
            let resource = node_class_resource(&kind);
            let api = Api::<Lenient<DynamicObject>>::all_with(ctx.client.clone(), &resource);
            vec![tokio::spawn(feed::<DynamicObject>(
                ctx.clone(),
                api,
                resource.kind,
                watcher::Config::default(),
            ))]
        }
        None => {
            ctx.update_state(|s| s.mark_synced(Kind::NodeClass));
            Vec::new()
        }
    };
    handles.extend([
        spawn::<Pod>(ctx),
        spawn::<Node>(ctx),
        spawn::<NodeClaim>(ctx),
        spawn::<NodePool>(ctx),
        spawn::<DaemonSet>(ctx),
        spawn::<PodDisruptionBudget>(ctx),
    ]);
    handles
}

/// Spawns the watcher of a kind with a static type, across all namespaces.
fn spawn<K>(ctx: &Arc<Context>) -> tokio::task::JoinHandle<()>
where
    K: Tracked + Resource<DynamicType = ()>,
{
    let api = Api::<Lenient<K>>::all(ctx.client.clone());
    let kind = K::kind(&()).into_owned();
    tokio::spawn(feed::<K>(
        ctx.clone(),
        api,
        kind,
        watcher::Config::default(),
    ))
}
