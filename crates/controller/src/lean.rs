//! What [`ClusterState`](crate::state::ClusterState) keeps of each pod ([`LeanPod`]), and the
//! [`Interner`] that lets thousands of pods share the strings and label sets they repeat.
//!
//! Key decision: a pod is kept as the solver's conversion of it (`PodRequest`, built once per
//! update) plus the few facts the other controllers decide on (termination tier, grace period,
//! owners, phase, readiness, the annotations they read), computed once from the full object when
//! it arrives. The Kubernetes object itself is not kept: a `k8s_openapi` `Pod` is 2 KB before any
//! of its strings, and a 40,000-pod cluster must fit in a controller of a few hundred MB (issue
//! 15; `cargo bench -p stowage-bench --bench state`). Labels are held once, in the `PodRequest`,
//! and identical label sets, namespaces, node names and phases are one shared allocation.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use stowage_api::labels;
use stowage_solver::PodRequest;
use stowage_solver::convert::{ContainerView, PodView};
use stowage_solver::hash::FastSet;

/// Pod annotations some controller reads; a pod's other annotations are not kept.
pub const KEPT_POD_ANNOTATIONS: [&str; 3] = [
    labels::DO_NOT_DISRUPT,
    crate::disruption::candidates::POD_DELETION_COST,
    MIRROR_ANNOTATION,
];

/// The annotation the kubelet puts on a static pod's mirror.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// A pod as the state keeps it (see the module docs). Built by
/// [`ClusterState::apply_pod`](crate::state::ClusterState::apply_pod).
#[derive(Clone, Debug)]
pub struct LeanPod {
    /// `namespace/name`, shared with the state's indexes.
    key: Arc<str>,
    pub uid: Option<String>,
    pub creation_timestamp: Option<Timestamp>,
    pub deletion_timestamp: Option<Timestamp>,
    /// Only [`KEPT_POD_ANNOTATIONS`].
    pub annotations: BTreeMap<String, String>,
    pub node_name: Option<Arc<str>>,
    pub priority: i32,
    pub phase: Option<Arc<str>>,
    /// The `Ready` condition's status, when the pod has one.
    pub ready: Option<bool>,
    /// `spec.terminationGracePeriodSeconds` (30 when unset), at least 0.
    pub grace_seconds: i64,
    /// The termination tier ([`crate::termination::tier`]).
    pub tier: u8,
    /// Tolerates the disrupted taint ([`crate::termination::tolerates_disrupted`]).
    pub tolerates_disrupted: bool,
    /// Owned by a DaemonSet.
    pub daemonset: bool,
    /// A static (mirror) pod: owned by its Node or carrying the mirror annotation.
    pub static_pod: bool,
    /// Has an owner reference with `controller: true`.
    pub has_controller: bool,
    /// The solver's conversion, or, for a pod it cannot read, the object (without managed
    /// fields) so that its error can be reported again.
    request: Result<Arc<PodRequest>, Box<Pod>>,
}

impl LeanPod {
    /// `namespace/name`.
    pub fn key(&self) -> &str {
        &self.key
    }

    pub(crate) fn shared_key(&self) -> &Arc<str> {
        &self.key
    }

    pub fn namespace(&self) -> &str {
        self.key.split_once('/').map_or("", |(ns, _)| ns)
    }

    pub fn name(&self) -> &str {
        self.key.split_once('/').map_or(&*self.key, |(_, n)| n)
    }

    /// The pod's labels (held once, in its `PodRequest`).
    pub fn labels(&self) -> &BTreeMap<String, String> {
        match &self.request {
            Ok(r) => &r.labels,
            Err(p) => p.metadata.labels.as_ref().unwrap_or(&NO_LABELS),
        }
    }

    /// The node it is bound to (not empty).
    pub fn node_name(&self) -> Option<&str> {
        self.node_name.as_deref()
    }

    /// The solver's view of it (`None`: the solver cannot read it).
    pub fn request(&self) -> Option<&Arc<PodRequest>> {
        self.request.as_ref().ok()
    }

    /// The object the solver could not read.
    pub fn unreadable(&self) -> Option<&Pod> {
        self.request.as_ref().err().map(|p| &**p)
    }

    /// Finished: holds no resources on its node any more.
    pub fn is_terminal(&self) -> bool {
        matches!(self.phase.as_deref(), Some("Succeeded" | "Failed"))
    }

    /// A pod that moves when its node goes (not a DaemonSet, mirror or finished pod).
    pub fn is_reschedulable(&self) -> bool {
        !self.is_terminal() && !self.daemonset && !self.static_pod
    }

    /// A `Pod` carrying only the identity (name, namespace, uid), for Events about it.
    pub fn object(&self) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(self.name().to_string()),
                namespace: Some(self.namespace().to_string()),
                uid: self.uid.clone(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// What the state keeps of `pod` (stripped of managed fields already), `key` its
    /// `namespace/name`.
    pub(crate) fn new(pod: Pod, key: Arc<str>, interner: &mut Interner) -> LeanPod {
        LeanPod::from_view(&PodView::of(&pod), key, interner, || pod.clone())
    }

    /// What the state keeps of the pod `view` reads (stripped of managed fields already),
    /// `key` its `namespace/name`; `whole` makes the object when the solver cannot read it.
    pub(crate) fn from_view<C: ContainerView>(
        view: &PodView<'_, C>,
        key: Arc<str>,
        interner: &mut Interner,
        whole: impl FnOnce() -> Pod,
    ) -> LeanPod {
        let annotations = view
            .annotations
            .into_iter()
            .flatten()
            .filter(|(k, _)| KEPT_POD_ANNOTATIONS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let spec = view.spec.as_ref();
        let status = view.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status == "True");
        let node_name = spec
            .and_then(|s| s.node_name)
            .filter(|n| !n.is_empty())
            .map(|n| interner.str(n));
        let phase = status.and_then(|s| s.phase).map(|p| interner.str(p));
        // Converted last: an unreadable pod is kept whole (no placeholder is built meanwhile).
        let request = match stowage_solver::convert::pod_from_view(view, |l| interner.labels_of(l))
        {
            Ok(r) => Ok(Arc::new(r)),
            Err(err) => {
                tracing::warn!(%err, "pod unreadable by the solver");
                Err(Box::new(whole()))
            }
        };
        LeanPod {
            uid: view.uid.map(String::from),
            creation_timestamp: view.creation_timestamp.map(|t| t.0),
            deletion_timestamp: view.deletion_timestamp.map(|t| t.0),
            annotations,
            node_name,
            priority: spec.and_then(|s| s.priority).unwrap_or(0),
            phase,
            ready,
            grace_seconds: crate::termination::pod_grace_of(view),
            tier: crate::termination::tier_of(view),
            tolerates_disrupted: crate::termination::tolerates_disrupted_of(view),
            daemonset: crate::state::owned_by_daemonset(view.owner_references),
            static_pod: crate::state::static_view(view),
            has_controller: view
                .owner_references
                .iter()
                .any(|o| o.controller == Some(true)),
            key,
            request,
        }
    }
}

/// Hands out one shared copy of each distinct string and label set it is given (one per
/// [`ClusterState`](crate::state::ClusterState)). Entries nobody else holds any more are dropped
/// as it grows, so it never holds much more than what is alive.
#[derive(Debug, Default)]
pub struct Interner {
    strs: Pool<Arc<str>>,
    labels: Pool<Arc<BTreeMap<String, String>>>,
}

impl Interner {
    /// The shared copy of `s`.
    pub fn str(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.strs.set.get(s) {
            return shared.clone();
        }
        self.strs.insert(Arc::from(s))
    }

    /// The shared copy of the label set `labels`.
    pub fn labels(
        &mut self,
        labels: Arc<BTreeMap<String, String>>,
    ) -> Arc<BTreeMap<String, String>> {
        if let Some(shared) = self.labels.set.get(&labels) {
            return shared.clone();
        }
        self.labels.insert(labels)
    }

    /// The shared copy of the label set `labels`, copied only when it is new.
    pub fn labels_of(
        &mut self,
        labels: &BTreeMap<String, String>,
    ) -> Arc<BTreeMap<String, String>> {
        if let Some(shared) = self.labels.set.get(labels) {
            return shared.clone();
        }
        self.labels.insert(Arc::new(labels.clone()))
    }

    /// Distinct strings and label sets held.
    pub fn len(&self) -> (usize, usize) {
        (self.strs.set.len(), self.labels.set.len())
    }
}

/// One kind of interned value. Hashed with the solver's fast hasher: every pod's label set is
/// looked up here (40,000 per whole-cluster `stowage plan`), and SipHash was most of that.
#[derive(Debug)]
struct Pool<T> {
    set: FastSet<T>,
    /// Size at which entries held only here are dropped next.
    purge_at: usize,
}

impl<T> Default for Pool<T> {
    fn default() -> Self {
        Pool {
            set: FastSet::default(),
            purge_at: 1024,
        }
    }
}

/// How many references a pooled value has.
trait Counted {
    fn holders(&self) -> usize;
}

impl<T: ?Sized> Counted for Arc<T> {
    fn holders(&self) -> usize {
        Arc::strong_count(self)
    }
}

impl<T: Clone + Eq + Hash + Counted> Pool<T> {
    fn insert(&mut self, value: T) -> T {
        if self.set.len() >= self.purge_at {
            self.set.retain(|v| v.holders() > 1);
            self.purge_at = (self.set.len() * 2).max(1024);
        }
        self.set.insert(value.clone());
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;

    #[test]
    fn pods_of_one_workload_share_their_labels_and_strings() {
        let mut i = Interner::default();
        let labelled = |name: &str| {
            let mut p = bound(pending_pod("default", name, "1"), "n1");
            p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
            p
        };
        let a = LeanPod::new(labelled("a"), "default/a".into(), &mut i);
        let b = LeanPod::new(labelled("b"), "default/b".into(), &mut i);
        let (ra, rb) = (a.request().unwrap(), b.request().unwrap());
        assert!(Arc::ptr_eq(&ra.labels, &rb.labels));
        assert_eq!(a.labels().get("app").map(String::as_str), Some("web"));
        assert!(Arc::ptr_eq(
            a.node_name.as_ref().unwrap(),
            b.node_name.as_ref().unwrap()
        ));
        assert_eq!((a.namespace(), a.name()), ("default", "a"));
    }

    #[test]
    fn the_interner_forgets_what_nobody_holds() {
        let mut i = Interner::default();
        let kept: Vec<Arc<str>> = (0..10).map(|n| i.str(&format!("kept-{n}"))).collect();
        for n in 0..5_000 {
            i.str(&format!("gone-{n}"));
        }
        let (strs, _) = i.len();
        assert!(strs < 2_100, "{strs} strings held");
        assert!(kept.iter().all(|k| Arc::ptr_eq(k, &i.str(k))));
    }
}
