//! Watchers that feed [`ClusterState`](crate::state::ClusterState): one kube-rs watcher per kind,
//! paginated initial lists (500 per page) so a 40,000-pod cluster is listed gently, bookmarks on,
//! and a re-list replaces the kind's objects wholesale. The state is synced once every kind has
//! completed its first list. Node classes are watched generically (`DynamicObject`) as the kind
//! the cloud provider names, so no cloud's type appears here.

use std::fmt::Debug;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use stowage_api::{NodeClaim, NodePool, key_of};
use stowage_cloud::NodeClassKind;

use crate::context::Context;
use crate::state::{ClusterState, Kind};

/// Page size of initial lists.
pub const PAGE_SIZE: u32 = 500;

/// A kind the state tracks.
pub trait Tracked: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static {
    const KIND: Kind;
    fn apply(state: &mut ClusterState, obj: Self);
    fn delete(state: &mut ClusterState, obj: &Self);
    fn replace(state: &mut ClusterState, objs: Vec<Self>);
    /// Seconds from creation to binding, when this update binds a pod the state saw unbound.
    fn bound_latency(_state: &ClusterState, _obj: &Self, _now: jiff::Timestamp) -> Option<f64> {
        None
    }
}

impl Tracked for Pod {
    const KIND: Kind = Kind::Pod;
    fn apply(state: &mut ClusterState, obj: Self) {
        state.apply_pod(obj)
    }
    fn delete(state: &mut ClusterState, obj: &Self) {
        state.delete_pod(&key_of(obj))
    }
    fn replace(state: &mut ClusterState, objs: Vec<Self>) {
        state.replace_pods(objs)
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
        if bound(&old) {
            return None;
        }
        let created = obj.metadata.creation_timestamp.as_ref()?.0;
        Some(now.duration_since(created).as_secs_f64().max(0.0))
    }
}

impl Tracked for Node {
    const KIND: Kind = Kind::Node;
    fn apply(state: &mut ClusterState, obj: Self) {
        state.apply_node(obj)
    }
    fn delete(state: &mut ClusterState, obj: &Self) {
        state.delete_node(&obj.name_any())
    }
    fn replace(state: &mut ClusterState, objs: Vec<Self>) {
        state.replace_nodes(objs)
    }
}

impl Tracked for NodeClaim {
    const KIND: Kind = Kind::NodeClaim;
    fn apply(state: &mut ClusterState, obj: Self) {
        state.apply_claim(obj)
    }
    fn delete(state: &mut ClusterState, obj: &Self) {
        state.delete_claim(&obj.name_any())
    }
    fn replace(state: &mut ClusterState, objs: Vec<Self>) {
        state.replace_claims(objs)
    }
}

impl Tracked for NodePool {
    const KIND: Kind = Kind::NodePool;
    fn apply(state: &mut ClusterState, obj: Self) {
        state.apply_nodepool(obj)
    }
    fn delete(state: &mut ClusterState, obj: &Self) {
        state.delete_nodepool(&obj.name_any())
    }
    fn replace(state: &mut ClusterState, objs: Vec<Self>) {
        state.replace_nodepools(objs)
    }
}

/// The cloud provider's node classes, whatever their kind.
impl Tracked for DynamicObject {
    const KIND: Kind = Kind::NodeClass;
    fn apply(state: &mut ClusterState, obj: Self) {
        state.apply_nodeclass(obj)
    }
    fn delete(state: &mut ClusterState, obj: &Self) {
        state.delete_nodeclass(&obj.name_any())
    }
    fn replace(state: &mut ClusterState, objs: Vec<Self>) {
        state.replace_nodeclasses(objs)
    }
}

impl Tracked for DaemonSet {
    const KIND: Kind = Kind::DaemonSet;
    fn apply(state: &mut ClusterState, obj: Self) {
        state.apply_daemonset(obj)
    }
    fn delete(state: &mut ClusterState, obj: &Self) {
        state.delete_daemonset(&key_of(obj))
    }
    fn replace(state: &mut ClusterState, objs: Vec<Self>) {
        state.replace_daemonsets(objs)
    }
}

impl Tracked for PodDisruptionBudget {
    const KIND: Kind = Kind::Pdb;
    fn apply(state: &mut ClusterState, obj: Self) {
        state.apply_pdb(obj)
    }
    fn delete(state: &mut ClusterState, obj: &Self) {
        state.delete_pdb(&key_of(obj))
    }
    fn replace(state: &mut ClusterState, objs: Vec<Self>) {
        state.replace_pdbs(objs)
    }
}

/// Runs one watcher, feeding the state until the stream ends (it does not, short of a bug).
pub async fn feed<K: Tracked>(ctx: Arc<Context>, api: Api<K>, config: watcher::Config) {
    let stream = watcher::watcher(api, config.page_size(PAGE_SIZE)).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut buffer: Vec<K> = Vec::new();
    loop {
        let event = match stream.try_next().await {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(err) => {
                tracing::warn!(kind = ?K::KIND, %err, "watch failed; retrying");
                continue;
            }
        };
        match event {
            Event::Init => buffer.clear(),
            Event::InitApply(obj) => buffer.push(obj),
            Event::InitDone => {
                let objs = std::mem::take(&mut buffer);
                ctx.update_state(|s| {
                    K::replace(s, objs);
                    s.mark_synced(K::KIND);
                });
            }
            Event::Apply(obj) => {
                let now = ctx.clock.now();
                let latency = ctx.update_state(|s| {
                    let latency = K::bound_latency(s, &obj, now);
                    K::apply(s, obj);
                    latency
                });
                if let Some(secs) = latency {
                    ctx.metrics.pod_pending_to_bound_seconds.observe(secs);
                }
            }
            Event::Delete(obj) => ctx.update_state(|s| K::delete(s, &obj)),
        }
    }
    let _ = stream.next().await;
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
    let c = ctx.client.clone();
    let cfg = watcher::Config::default;
    let mut handles = match ctx.cloud.node_class_kind() {
        Some(kind) => {
            let api = Api::<DynamicObject>::all_with(c.clone(), &node_class_resource(&kind));
            vec![tokio::spawn(feed::<DynamicObject>(ctx.clone(), api, cfg()))]
        }
        None => {
            ctx.update_state(|s| s.mark_synced(Kind::NodeClass));
            Vec::new()
        }
    };
    handles.extend([
        tokio::spawn(feed::<Pod>(ctx.clone(), Api::all(c.clone()), cfg())),
        tokio::spawn(feed::<Node>(ctx.clone(), Api::all(c.clone()), cfg())),
        tokio::spawn(feed::<NodeClaim>(ctx.clone(), Api::all(c.clone()), cfg())),
        tokio::spawn(feed::<NodePool>(ctx.clone(), Api::all(c.clone()), cfg())),
        tokio::spawn(feed::<DaemonSet>(ctx.clone(), Api::all(c.clone()), cfg())),
        tokio::spawn(feed::<PodDisruptionBudget>(ctx.clone(), Api::all(c), cfg())),
    ]);
    handles
}
