//! The object store behind the API server: every kind as JSON in a `BTreeMap`, one global
//! resourceVersion counter, per-kind watch history bounded as kube-apiserver's watch cache
//! bounds it ([`HistoryLimits`]), watchers with label/field filters, Events that expire
//! (`--event-ttl`), and the write semantics controllers depend on (optimistic concurrency,
//! finalizers, graceful pod deletion, owner-reference garbage collection, bindings, PDB-aware
//! evictions).
//!
//! Key decision: one `Mutex` around everything. Every write happens under it and fans out to the
//! watchers' channels before the lock is released, so watch streams see events in resourceVersion
//! order and a list's resourceVersion is always a consistent point to watch from.

use crate::json::JsonPointer as _;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use stowage_api::openapi;
use stowage_clock::SharedClock;
use tokio::sync::mpsc;

use super::budget;
use super::kinds::KindInfo;
use super::patch::{PatchKind, apply_patch};
use super::selector::{FieldSelector, LabelSelector};
use super::status::{ApiError, ApiResult};

/// Index of a kind in the server's registration table.
pub type KindId = usize;

/// What kind of change a watch event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// Serialized watch lines, computed at most once per event and type however many watchers see it.
#[derive(Debug, Default)]
pub struct LineCache([OnceLock<Bytes>; 3]);

impl LineCache {
    pub fn line(&self, etype: EventType, obj: &Value) -> Bytes {
        self.0[etype.index()]
            .get_or_init(|| {
                // Written into one buffer (not the object's JSON apart, then copied).
                let mut buf = Vec::with_capacity(2048);
                buf.extend_from_slice(b"{\"type\":\"");
                buf.extend_from_slice(etype.as_str().as_bytes());
                buf.extend_from_slice(b"\",\"object\":");
                let start = buf.len();
                if serde_json::to_writer(&mut buf, obj).is_err() {
                    buf.truncate(start);
                    buf.extend_from_slice(b"null");
                }
                buf.extend_from_slice(b"}\n");
                Bytes::from(buf)
            })
            .clone()
    }
}

/// One message on a watch channel.
#[derive(Clone, Debug)]
pub enum WatchMsg {
    Event {
        etype: EventType,
        object: Arc<Value>,
        cache: Arc<LineCache>,
    },
    /// A bookmark at this resourceVersion; `initial_events_end` marks the end of initial events.
    Bookmark { rv: u64, initial_events_end: bool },
    /// An error `Status` (410 Expired); the stream ends after it.
    Error(Value),
}

#[derive(Debug)]
struct HistEvent {
    rv: u64,
    /// When it happened (tokio's clock: the clock the watch streams' bookmarks run on).
    at: tokio::time::Instant,
    etype: EventType,
    old: Option<Arc<Value>>,
    new: Arc<Value>,
    cache: Arc<LineCache>,
}

/// Which objects a list or watch selects.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && obj
                .ptr("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default()
                != ns
        {
            return false;
        }
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

struct Watcher {
    id: u64,
    filter: Filter,
    tx: mpsc::UnboundedSender<WatchMsg>,
}

#[derive(Default)]
struct KindState {
    objects: BTreeMap<(String, String), Arc<Value>>,
    history: VecDeque<HistEvent>,
    /// The resourceVersion of the newest event dropped from `history` (watching from an older
    /// version is `410 Gone`).
    compacted_rv: u64,
    watchers: Vec<Watcher>,
}

/// What the eviction subresource needs of each PodDisruptionBudget, kept up to date on every pod
/// and PDB write (evictions used to count the namespace's pods each time: at 40,000 pods, an
/// interruption wave's evictions took minutes).
#[derive(Default)]
struct PdbIndex {
    /// Namespace -> its PDBs (name, selector; `None` when the selector is missing or empty,
    /// which selects nothing here).
    by_ns: HashMap<String, Vec<(String, Option<LabelSelector>)>>,
    /// (namespace, PDB name) -> what it counts of the pods it selects.
    counts: HashMap<(String, String), PdbCounts>,
}

/// What a PDB counts of the pods it selects (see [`super::budget`]).
#[derive(Default)]
struct PdbCounts {
    healthy: i64,
    pods: i64,
    /// The pods' controllers (kind, name, uid) -> how many of the pods they own.
    controllers: HashMap<(String, String, String), i64>,
}

impl PdbCounts {
    fn add(&mut self, pod: &Value, sign: i64) {
        self.healthy += sign * i64::from(pod_is_healthy(pod));
        self.pods += sign;
        if let Some(c) = budget::controller_of(pod) {
            let n = self.controllers.entry(c.clone()).or_default();
            *n += sign;
            if *n == 0 {
                self.controllers.remove(&c);
            }
        }
    }
}

struct Inner {
    rv: u64,
    pdbs: PdbIndex,
    kinds: Vec<KindState>,
    next_id: u64,
    /// owner uid -> dependents, for garbage collection.
    dependents: HashMap<String, BTreeSet<(KindId, String, String)>>,
    /// Owners waiting for their dependents before their `foregroundDeletion` finalizer goes.
    foreground: BTreeSet<(KindId, String, String)>,
    /// Objects of kinds with a time to live, in the order they expire: (when, kind, key, the
    /// resourceVersion written then). A later write of the same object queues it again, and
    /// the stale entry is skipped.
    expiring: VecDeque<(jiff::Timestamp, KindId, (String, String), u64)>,
}

/// How much watch history each kind keeps, as kube-apiserver's watch cache keeps it: every
/// event younger than `fresh` (75 s there: the one-minute bookmark interval plus 15 s, so a
/// client resuming from its latest bookmark is never too old), but at least the last `min`
/// events and at most `max` (100 and 102,400 there). Watching from an older resourceVersion is
/// `410 Expired` ("too old resource version"), upon which a client lists again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    pub min: usize,
    pub max: usize,
    pub fresh: Duration,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            min: 100,
            max: 100 * 1024,
            fresh: Duration::from_secs(75),
        }
    }
}

/// kube-apiserver's default `--event-ttl`: an Event is deleted an hour after its last write.
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(3600);

/// Options of a delete call (`DeleteOptions` body plus query parameters).
#[derive(Clone, Debug, Default)]
pub struct DeleteOpts {
    pub grace_period_seconds: Option<i64>,
    /// `Background` (default), `Foreground` or `Orphan`.
    pub propagation_policy: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sub {
    /// The main resource: everything but `status` when the kind has a status subresource.
    Main,
    /// The `status` subresource: only `status`.
    Status,
    /// Internal writers (the simulated kubelet and scheduler): spec and status together.
    All,
}

/// A page of a list.
#[derive(Clone, Debug)]
pub struct ListResult {
    pub items: Vec<Arc<Value>>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
}

type ObjIter<'a> = Box<dyn Iterator<Item = (&'a (String, String), &'a Arc<Value>)> + 'a>;

/// The store. Cheap to share behind an `Arc`.
pub struct Store {
    kinds: Vec<KindInfo>,
    /// The OpenAPI schema of each custom kind (from Stowage's own CRDs): objects are defaulted
    /// and validated against it on every write, as the real API server does.
    schemas: Vec<Option<Value>>,
    inner: Mutex<Inner>,
    clock: SharedClock,
    history: HistoryLimits,
    /// Per kind: how long an object lives after its last write (Events), if it expires.
    ttl: Vec<Option<jiff::SignedDuration>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("kinds", &self.kinds.len())
            .finish_non_exhaustive()
    }
}

const NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn meta(obj: &Value, field: &str) -> Option<String> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// `v` as a JSON object, replacing anything else with an empty object.
pub(crate) fn as_map(v: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(serde_json::Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("the value was just made an object"),
    }
}

fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    as_map(as_map(obj).entry("metadata").or_insert(Value::Null))
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.ptr("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.ptr("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Equal top-level fields, ignoring `skip`.
fn same_except(a: &Value, b: &Value, skip: &[&str]) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => {
            let keys = |m: &'_ serde_json::Map<String, Value>| {
                m.keys().filter(|k| !skip.contains(&k.as_str())).count()
            };
            keys(x) == keys(y)
                && x.iter()
                    .filter(|(k, _)| !skip.contains(&k.as_str()))
                    .all(|(k, v)| y.get(k) == Some(v))
        }
        _ => a == b,
    }
}

/// Equal except for `metadata.resourceVersion` (no copies).
fn same_ignoring_rv(a: &Value, b: &Value) -> bool {
    same_except(a, b, &["metadata"])
        && match (a.get("metadata"), b.get("metadata")) {
            (Some(x), Some(y)) => same_except(x, y, &["resourceVersion"]),
            (x, y) => x == y,
        }
}

fn pod_is_healthy(pod: &Value) -> bool {
    if pod
        .ptr("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        return false;
    }
    if pod.ptr("/status/phase").and_then(Value::as_str) != Some("Running") {
        return false;
    }
    let ready = pod
        .ptr("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        });
    match ready {
        Some(c) => c.get("status").and_then(Value::as_str) == Some("True"),
        None => true,
    }
}

/// Why `name` is not a valid name for an object of `info`'s kind, in the API server's words:
/// namespaces are RFC 1123 labels, services RFC 1035 labels, everything else RFC 1123 subdomains.
fn name_error(info: &KindInfo, name: &str) -> Option<&'static str> {
    let label = |n: &str| {
        let b = n.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    match (info.group, info.kind) {
        ("", "Namespace") if !label(name) => Some(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ),
        ("", "Service") if !label(name) || !name.as_bytes()[0].is_ascii_lowercase() => Some(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
        ),
        _ if !stowage_api::validation::is_dns_subdomain(name) => Some(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ),
        _ => None,
    }
}

/// The `openAPIV3Schema` of every custom kind that one of Stowage's CRDs defines.
fn custom_schemas(kinds: &[KindInfo]) -> Vec<Option<Value>> {
    kinds
        .iter()
        .map(|info| {
            info.custom
                .then(|| stowage_api::crds::schema(info.group, info.kind))
                .flatten()
        })
        .collect()
}

impl Store {
    /// A store of `kinds`; Events (core and `events.k8s.io`) expire `event_ttl` after their
    /// last write (`None`: never).
    pub fn new(
        kinds: Vec<KindInfo>,
        clock: SharedClock,
        history: HistoryLimits,
        event_ttl: Option<Duration>,
    ) -> Self {
        let states = kinds.iter().map(|_| KindState::default()).collect();
        let schemas = custom_schemas(&kinds);
        let ttl = kinds
            .iter()
            .map(|k| {
                (k.kind == "Event" && matches!(k.group, "" | "events.k8s.io"))
                    .then_some(event_ttl)
                    .flatten()
                    .and_then(|t| jiff::SignedDuration::try_from(t).ok())
            })
            .collect();
        Self {
            kinds,
            schemas,
            inner: Mutex::new(Inner {
                rv: 1,
                pdbs: PdbIndex::default(),
                kinds: states,
                next_id: 0,
                dependents: HashMap::new(),
                foreground: BTreeSet::new(),
                expiring: VecDeque::new(),
            }),
            clock,
            history: HistoryLimits {
                max: history.max.max(1),
                min: history.min.min(history.max.max(1)),
                fresh: history.fresh,
            },
            ttl,
        }
    }

    pub fn kinds(&self) -> &[KindInfo] {
        &self.kinds
    }

    pub fn kind(&self, id: KindId) -> &KindInfo {
        &self.kinds[id]
    }

    /// The id of a kind by group and kind name (`("", "Pod")`, `("stowage.dev", "NodeClaim")`).
    pub fn kind_id(&self, group: &str, kind: &str) -> Option<KindId> {
        self.kinds
            .iter()
            .position(|k| k.group == group && k.kind == kind)
    }

    /// The id of a kind by group, version and plural (as in a URL).
    pub fn kind_by_plural(&self, group: &str, version: &str, plural: &str) -> Option<KindId> {
        self.kinds
            .iter()
            .position(|k| k.group == group && k.version == version && k.plural == plural)
    }

    /// Keeps [`PdbIndex`] current for a write of `kind` from `old` to `new` (`None`: absent),
    /// called before the object store itself changes.
    fn index_pdbs(
        &self,
        inner: &mut Inner,
        kind: KindId,
        old: Option<&Value>,
        new: Option<&Value>,
    ) {
        let info = &self.kinds[kind];
        if info.group.is_empty() && info.kind == "Pod" {
            // Most pod writes change nothing a PDB counts (same labels, so the same PDBs; same
            // health; same controller): skip them without a pass over the namespace's PDBs.
            if let (Some(o), Some(n)) = (old, new)
                && o.ptr("/metadata/labels") == n.ptr("/metadata/labels")
                && o.ptr("/metadata/ownerReferences") == n.ptr("/metadata/ownerReferences")
                && pod_is_healthy(o) == pod_is_healthy(n)
            {
                return;
            }
            let ns = old
                .or(new)
                .and_then(|o| meta(o, "namespace"))
                .unwrap_or_default();
            let Some(pdbs) = inner.pdbs.by_ns.get(&ns) else {
                return;
            };
            for (name, sel) in pdbs {
                let Some(sel) = sel else { continue };
                let old = old.filter(|o| sel.matches(o));
                let new = new.filter(|n| sel.matches(n));
                if old.is_none() && new.is_none() {
                    continue;
                }
                let c = inner
                    .pdbs
                    .counts
                    .entry((ns.clone(), name.clone()))
                    .or_default();
                if let Some(o) = old {
                    c.add(o, -1);
                }
                if let Some(n) = new {
                    c.add(n, 1);
                }
            }
        } else if info.group == "policy" && info.kind == "PodDisruptionBudget" {
            let obj = old.or(new);
            let ns = obj.and_then(|o| meta(o, "namespace")).unwrap_or_default();
            let name = obj.and_then(|o| meta(o, "name")).unwrap_or_default();
            let list = inner.pdbs.by_ns.entry(ns.clone()).or_default();
            list.retain(|(n, _)| *n != name);
            let key = (ns.clone(), name.clone());
            inner.pdbs.counts.remove(&key);
            let Some(new) = new else { return };
            let sel = new
                .ptr("/spec/selector")
                .and_then(LabelSelector::from_object)
                .filter(|s| !s.is_empty());
            if let Some(sel) = &sel
                && let Some(pod_kind) = self.kind_id("", "Pod")
            {
                let mut counts = PdbCounts::default();
                for (_, p) in inner.kinds[pod_kind]
                    .objects
                    .range((ns.clone(), String::new())..)
                    .take_while(|(k, _)| k.0 == ns)
                    .filter(|(_, p)| sel.matches(p))
                {
                    counts.add(p, 1);
                }
                inner.pdbs.counts.insert(key, counts);
            }
            if let Some(list) = inner.pdbs.by_ns.get_mut(&ns) {
                list.push((name, sel));
            }
        }
    }

    /// The store, with the objects whose time to live ran out deleted first (etcd drops them
    /// when their lease expires, whoever looks; here, at the next look).
    fn lock(&self) -> MutexGuard<'_, Inner> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        self.expire_due(&mut inner);
        inner
    }

    /// Deletes the objects whose time to live has run out (a `DELETED` watch event each; no
    /// finalizer holds them, as none holds an expired etcd lease).
    fn expire_due(&self, inner: &mut Inner) {
        let Some(first) = inner.expiring.front().map(|e| e.0) else {
            return;
        };
        let now = self.clock.now();
        if first > now {
            return;
        }
        while inner.expiring.front().is_some_and(|e| e.0 <= now) {
            let Some((_, kind, key, rv)) = inner.expiring.pop_front() else {
                break;
            };
            let Some(obj) = inner.kinds[kind].objects.get(&key).cloned() else {
                continue;
            };
            if resource_version_of(&obj) == Some(rv) {
                self.remove_locked(inner, kind, obj);
            }
        }
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// The clock's current time.
    pub fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    fn now_string(&self) -> String {
        self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    fn key(&self, kind: KindId, ns: &str, name: &str) -> (String, String) {
        if self.kinds[kind].namespaced {
            (ns.to_string(), name.to_string())
        } else {
            (String::new(), name.to_string())
        }
    }

    // ---------------------------------------------------------------------------------------
    // Reads

    pub fn get(&self, kind: KindId, ns: &str, name: &str) -> ApiResult<Arc<Value>> {
        let key = self.key(kind, ns, name);
        self.lock().kinds[kind]
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&self.kinds[kind], name))
    }

    /// Lists objects in key order, a page at a time when `limit` is set.
    pub fn list(
        &self,
        kind: KindId,
        filter: &Filter,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> ApiResult<ListResult> {
        let inner = self.lock();
        let (rv, start) = match continue_token.filter(|t| !t.is_empty()) {
            Some(tok) => {
                let mut parts = tok.splitn(3, '|');
                let rv = parts.next().and_then(|r| r.parse::<u64>().ok());
                match (rv, parts.next(), parts.next()) {
                    (Some(rv), Some(ns), Some(name)) => {
                        (rv, Some((ns.to_string(), name.to_string())))
                    }
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "continue key is not valid: {tok:?}"
                        )));
                    }
                }
            }
            None => (inner.rv, None),
        };
        let objects = &inner.kinds[kind].objects;
        let range: ObjIter<'_> = match (&start, &filter.namespace) {
            (Some(s), _) => Box::new(objects.range((
                std::ops::Bound::Excluded(s.clone()),
                std::ops::Bound::Unbounded,
            ))),
            (None, Some(ns)) if self.kinds[kind].namespaced => {
                Box::new(objects.range((ns.clone(), String::new())..))
            }
            _ => Box::new(objects.iter()),
        };
        let namespaced = self.kinds[kind].namespaced;
        let mut items = Vec::new();
        let mut continue_token = None;
        for (key, obj) in range {
            if namespaced
                && let Some(ns) = &filter.namespace
                && &key.0 != ns
            {
                if key.0.as_str() > ns.as_str() {
                    break;
                }
                continue;
            }
            if !filter.matches(obj) {
                continue;
            }
            if let Some(l) = limit
                && l > 0
                && items.len() == l
            {
                if let Some(last) = items.last().map(|o: &Arc<Value>| {
                    (
                        meta(o, "namespace").unwrap_or_default(),
                        meta(o, "name").unwrap_or_default(),
                    )
                }) {
                    continue_token = Some(format!("{}|{}|{}", rv, last.0, last.1));
                }
                break;
            }
            items.push(obj.clone());
        }
        Ok(ListResult {
            items,
            resource_version: rv,
            continue_token,
        })
    }

    /// Every object of a kind (internal callers).
    pub fn all(&self, kind: KindId) -> Vec<Arc<Value>> {
        self.lock().kinds[kind].objects.values().cloned().collect()
    }

    /// Number of objects of a kind.
    pub fn count(&self, kind: KindId) -> usize {
        self.lock().kinds[kind].objects.len()
    }

    // ---------------------------------------------------------------------------------------
    // Watches

    /// Opens a watch. `from`: `None` = synthetic ADDED events for the current state first
    /// (resourceVersion unset or `0`), `Some(rv)` = every change after `rv` (410 when compacted).
    pub fn watch(
        &self,
        kind: KindId,
        filter: Filter,
        from: Option<u64>,
        send_initial_events_end: bool,
    ) -> (u64, mpsc::UnboundedReceiver<WatchMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        let cur = inner.rv;
        let state = &mut inner.kinds[kind];
        match from {
            None => {
                for obj in state.objects.values() {
                    if filter.matches(obj) {
                        let _ = tx.send(WatchMsg::Event {
                            etype: EventType::Added,
                            object: obj.clone(),
                            cache: Arc::new(LineCache::default()),
                        });
                    }
                }
                if send_initial_events_end {
                    let _ = tx.send(WatchMsg::Bookmark {
                        rv: cur,
                        initial_events_end: true,
                    });
                }
            }
            Some(rv) if rv < state.compacted_rv => {
                let _ = tx.send(WatchMsg::Error(
                    ApiError::gone(format!(
                        "too old resource version: {} ({})",
                        rv,
                        state.compacted_rv + 1
                    ))
                    .to_status(),
                ));
                return (id, rx);
            }
            Some(rv) => {
                for ev in state.history.iter().filter(|e| e.rv > rv) {
                    if let Some(msg) = translate(ev, &filter) {
                        let _ = tx.send(msg);
                    }
                }
            }
        }
        state.watchers.push(Watcher { id, filter, tx });
        (id, rx)
    }

    /// Sends a bookmark at the current resourceVersion to one watcher (ordered after every event
    /// already sent to it).
    pub fn bookmark(&self, kind: KindId, watcher: u64) {
        let inner = self.lock();
        let rv = inner.rv;
        if let Some(w) = inner.kinds[kind].watchers.iter().find(|w| w.id == watcher) {
            let _ = w.tx.send(WatchMsg::Bookmark {
                rv,
                initial_events_end: false,
            });
        }
    }

    /// Drops a watcher (its stream ended).
    pub fn unwatch(&self, kind: KindId, watcher: u64) {
        self.lock().kinds[kind].watchers.retain(|w| w.id != watcher);
    }

    // ---------------------------------------------------------------------------------------
    // Writes

    /// Prunes and defaults `obj` by its kind's schema and rejects it (422, one cause per field) when it
    /// violates the schema. Like the API server's validation ratcheting, a violation that the
    /// stored object already had at the same field does not block an update.
    fn default_and_validate(
        &self,
        kind: KindId,
        name: &str,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        let Some(schema) = &self.schemas[kind] else {
            return Ok(());
        };
        openapi::prune(schema, obj);
        openapi::apply_defaults(schema, obj);
        let violations = openapi::validate(schema, obj);
        if violations.is_empty() {
            return Ok(());
        }
        let before = old
            .map(|o| openapi::validate(schema, o))
            .unwrap_or_default();
        let causes: Vec<(String, String)> = violations
            .into_iter()
            .filter(|v| !before.contains(v))
            .map(|v| (v.path, v.message))
            .collect();
        if causes.is_empty() {
            return Ok(());
        }
        Err(ApiError::invalid_fields(&self.kinds[kind], name, &causes))
    }

    fn next_id(inner: &mut Inner) -> u64 {
        inner.next_id += 1;
        inner.next_id
    }

    fn commit(
        &self,
        inner: &mut Inner,
        kind: KindId,
        old: Option<Arc<Value>>,
        new: Option<Value>,
    ) -> Arc<Value> {
        inner.rv += 1;
        let rv = inner.rv;
        let (etype, key, mut obj) = match (&old, new) {
            (_, Some(n)) => {
                let key = self.key(
                    kind,
                    &meta(&n, "namespace").unwrap_or_default(),
                    &meta(&n, "name").unwrap_or_default(),
                );
                (
                    if old.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    },
                    key,
                    n,
                )
            }
            (Some(o), None) => {
                let key = self.key(
                    kind,
                    &meta(o, "namespace").unwrap_or_default(),
                    &meta(o, "name").unwrap_or_default(),
                );
                (EventType::Deleted, key, (**o).clone())
            }
            (None, None) => return Arc::new(Value::Null),
        };
        meta_mut(&mut obj).insert("resourceVersion".into(), Value::String(rv.to_string()));
        let obj = Arc::new(obj);
        // Owner index (most writes leave the owner references as they were).
        let same_refs = etype == EventType::Modified
            && old
                .as_deref()
                .and_then(|o| o.ptr("/metadata/ownerReferences"))
                == obj.ptr("/metadata/ownerReferences");
        let old_owners = if same_refs {
            Vec::new()
        } else {
            old.as_deref().map(owner_uids).unwrap_or_default()
        };
        let new_owners = if etype == EventType::Deleted || same_refs {
            Vec::new()
        } else {
            owner_uids(&obj)
        };
        if old_owners != new_owners {
            for uid in &old_owners {
                if let Some(set) = inner.dependents.get_mut(uid) {
                    set.remove(&(kind, key.0.clone(), key.1.clone()));
                    if set.is_empty() {
                        inner.dependents.remove(uid);
                    }
                }
            }
            for uid in &new_owners {
                inner.dependents.entry(uid.clone()).or_default().insert((
                    kind,
                    key.0.clone(),
                    key.1.clone(),
                ));
            }
        }
        let new_live = (etype != EventType::Deleted).then_some(&obj);
        self.index_pdbs(inner, kind, old.as_deref(), new_live.map(|o| &**o));
        if etype != EventType::Deleted
            && let Some(ttl) = self.ttl[kind]
        {
            let at = self
                .clock
                .now()
                .checked_add(ttl)
                .unwrap_or(jiff::Timestamp::MAX);
            inner.expiring.push_back((at, kind, key.clone(), rv));
        }
        let state = &mut inner.kinds[kind];
        if etype == EventType::Deleted {
            state.objects.remove(&key);
        } else {
            state.objects.insert(key, obj.clone());
        }
        let now = tokio::time::Instant::now();
        let ev = HistEvent {
            rv,
            at: now,
            etype,
            old,
            new: obj.clone(),
            cache: Arc::new(LineCache::default()),
        };
        state.watchers.retain(|w| match translate(&ev, &w.filter) {
            Some(msg) => w.tx.send(msg).is_ok(),
            None => !w.tx.is_closed(),
        });
        state.history.push_back(ev);
        let limits = self.history;
        while let Some(oldest) = state.history.front() {
            let len = state.history.len();
            let stale = len > limits.min && now.duration_since(oldest.at) > limits.fresh;
            if len <= limits.max && !stale {
                break;
            }
            state.compacted_rv = oldest.rv;
            state.history.pop_front();
        }
        obj
    }

    /// Creates an object (POST).
    pub fn create(&self, kind: KindId, ns: &str, mut obj: Value) -> ApiResult<Arc<Value>> {
        let info = &self.kinds[kind];
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be an object",
            ));
        }
        if let Some(k) = obj.get("kind").and_then(Value::as_str)
            && k != info.kind
        {
            return Err(ApiError::bad_request(format!(
                "the server rejected our request: kind {k} does not match {}",
                info.kind
            )));
        }
        obj["kind"] = json!(info.kind);
        obj["apiVersion"] = json!(info.api_version());
        let mut inner = self.lock();
        if info.namespaced {
            if let Some(body_ns) = meta(&obj, "namespace")
                && !body_ns.is_empty()
                && body_ns != ns
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            if let Some(ns_kind) = self.kind_id("", "Namespace")
                && !inner.kinds[ns_kind]
                    .objects
                    .contains_key(&(String::new(), ns.to_string()))
            {
                return Err(ApiError::namespace_not_found(ns));
            }
            meta_mut(&mut obj).insert("namespace".into(), json!(ns));
        } else {
            meta_mut(&mut obj).remove("namespace");
        }
        let name = match meta(&obj, "name").filter(|n| !n.is_empty()) {
            Some(n) => n,
            None => match meta(&obj, "generateName").filter(|n| !n.is_empty()) {
                Some(prefix) => loop {
                    let mut x = Self::next_id(&mut inner).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    let mut suffix = String::new();
                    for _ in 0..5 {
                        suffix
                            .push(NAME_ALPHABET[(x % NAME_ALPHABET.len() as u64) as usize] as char);
                        x /= NAME_ALPHABET.len() as u64;
                    }
                    let candidate = format!("{prefix}{suffix}");
                    if !inner.kinds[kind]
                        .objects
                        .contains_key(&self.key(kind, ns, &candidate))
                    {
                        break candidate;
                    }
                },
                None => {
                    return Err(ApiError::invalid(
                        info,
                        "",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    ));
                }
            },
        };
        if let Some(why) = name_error(info, &name) {
            return Err(ApiError::invalid(
                info,
                &name,
                "metadata.name",
                &format!("Invalid value: {name:?}: {why}"),
            ));
        }
        if inner.kinds[kind]
            .objects
            .contains_key(&self.key(kind, ns, &name))
        {
            return Err(ApiError::already_exists(info, &name));
        }
        let uid_n = Self::next_id(&mut inner);
        let now = self.now_string();
        {
            let m = meta_mut(&mut obj);
            m.insert("name".into(), json!(name));
            m.insert(
                "uid".into(),
                json!(format!(
                    "{:08x}-5eed-4000-8000-{:012x}",
                    (uid_n >> 48) as u32,
                    uid_n
                )),
            );
            m.insert("creationTimestamp".into(), json!(now));
            m.insert("generation".into(), json!(1));
            m.remove("resourceVersion");
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.remove("managedFields");
        }
        if info.custom
            && info.has_subresource("status")
            && let Some(o) = obj.as_object_mut()
        {
            o.remove("status");
        }
        match (info.group, info.kind) {
            ("", "Pod") => default_pod(&mut obj),
            ("", "Namespace") => obj["status"] = json!({ "phase": "Active" }),
            _ => {}
        }
        self.default_and_validate(kind, &name, &mut obj, None)?;
        Ok(self.commit(&mut inner, kind, None, Some(obj)))
    }

    /// Replaces an object (PUT) or its status (PUT .../status); `Sub::All` for internal writers.
    pub fn update(
        &self,
        kind: KindId,
        ns: &str,
        name: &str,
        body: Value,
        sub: Sub,
    ) -> ApiResult<Arc<Value>> {
        let mut inner = self.lock();
        self.update_locked(&mut inner, kind, ns, name, body, sub, true)
    }

    fn update_locked(
        &self,
        inner: &mut Inner,
        kind: KindId,
        ns: &str,
        name: &str,
        mut body: Value,
        sub: Sub,
        check_rv: bool,
    ) -> ApiResult<Arc<Value>> {
        let info = &self.kinds[kind];
        let key = self.key(kind, ns, name);
        let old = inner.kinds[kind]
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(info, name))?;
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be an object",
            ));
        }
        if let Some(n) = meta(&body, "name")
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        if check_rv
            && let Some(rv) = meta(&body, "resourceVersion").filter(|r| !r.is_empty())
            && Some(rv) != meta(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(info, name));
        }
        let has_status = info.has_subresource("status");
        let mut new = match sub {
            Sub::Status => {
                // The stored object with the body's status: the body's other fields are put
                // back to the stored ones where they differ (usually none: a status patch is
                // applied to a copy of the stored object), rather than copying it once more.
                let n = as_map(&mut body);
                let status = n.remove("status").filter(|s| !s.is_null());
                let stored = old.as_object();
                n.retain(|k, _| stored.is_some_and(|o| o.contains_key(k)));
                if let Some(o) = stored {
                    for (k, v) in o.iter().filter(|(k, _)| k.as_str() != "status") {
                        if n.get(k) != Some(v) {
                            n.insert(k.clone(), v.clone());
                        }
                    }
                }
                if let Some(status) = status {
                    n.insert("status".into(), status);
                }
                body
            }
            Sub::Main | Sub::All => {
                body["kind"] = json!(info.kind);
                body["apiVersion"] = json!(info.api_version());
                if sub == Sub::Main && has_status {
                    match old.get("status") {
                        // (A patched copy of the stored object usually has it already.)
                        Some(s) if body.get("status") == Some(s) => {}
                        Some(s) => body["status"] = s.clone(),
                        None => {
                            if let Some(o) = body.as_object_mut() {
                                o.remove("status");
                            }
                        }
                    }
                }
                let old_meta = old.get("metadata");
                let m = meta_mut(&mut body);
                for k in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "namespace",
                    "generation",
                ] {
                    match old_meta.and_then(|om| om.get(k)) {
                        Some(v) => m.insert(k.into(), v.clone()),
                        None => m.remove(k),
                    };
                }
                m.insert("name".into(), json!(name));
                body
            }
        };
        // Terminating objects accept no new finalizers.
        let terminating = old
            .ptr("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null());
        let new_finalizers = finalizers(&new);
        if terminating {
            let old_finalizers = finalizers(&old);
            if new_finalizers.iter().any(|f| !old_finalizers.contains(f)) {
                return Err(ApiError::invalid(
                    info,
                    name,
                    "metadata.finalizers",
                    "Forbidden: no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        if !same_except(&new, &old, &["metadata", "status"]) {
            let g = old
                .ptr("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            meta_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        self.default_and_validate(kind, name, &mut new, Some(&old))?;
        if same_ignoring_rv(&new, &old) {
            return Ok(old);
        }
        if terminating && new_finalizers.is_empty() && !self.waits_for_pod_termination(kind, &new) {
            self.commit(inner, kind, Some(old.clone()), Some(new));
            let cur = inner.kinds[kind].objects.get(&key).cloned();
            return Ok(self.remove_locked(inner, kind, cur.unwrap_or(old)));
        }
        Ok(self.commit(inner, kind, Some(old), Some(new)))
    }

    /// A bound pod with a deletion grace period stays until its kubelet confirms it stopped.
    fn waits_for_pod_termination(&self, kind: KindId, obj: &Value) -> bool {
        let info = &self.kinds[kind];
        info.group.is_empty()
            && info.kind == "Pod"
            && obj
                .ptr("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                > 0
    }

    /// Read-modify-write under the lock (internal writers); `f` returns false to leave it alone.
    pub fn modify(
        &self,
        kind: KindId,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value) -> bool,
    ) -> ApiResult<Arc<Value>> {
        let mut inner = self.lock();
        let key = self.key(kind, ns, name);
        let old = inner.kinds[kind]
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&self.kinds[kind], name))?;
        let mut new = (*old).clone();
        if !f(&mut new) {
            return Ok(old);
        }
        self.update_locked(&mut inner, kind, ns, name, new, Sub::All, false)
    }

    /// Patches an object or its status. Apply patches create the object when it is absent.
    pub fn patch(
        &self,
        kind: KindId,
        ns: &str,
        name: &str,
        patch_kind: &PatchKind,
        body: &[u8],
        sub: Sub,
    ) -> ApiResult<Arc<Value>> {
        let info = &self.kinds[kind];
        if *patch_kind == PatchKind::Strategic && info.custom {
            return Err(ApiError::unsupported_media_type(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        let mut inner = self.lock();
        let key = self.key(kind, ns, name);
        let Some(old) = inner.kinds[kind].objects.get(&key).cloned() else {
            if *patch_kind == PatchKind::Apply {
                drop(inner);
                let mut obj = super::patch::parse_body(body)?;
                meta_mut(&mut obj).insert("name".into(), json!(name));
                let status = obj.get("status").cloned();
                let created = self.create(kind, ns, obj)?;
                if sub == Sub::Status
                    && let Some(s) = status
                {
                    let mut with = (*created).clone();
                    with["status"] = s;
                    return self.update(kind, ns, name, with, Sub::Status);
                }
                return Ok(created);
            }
            return Err(ApiError::not_found(info, name));
        };
        let mut new = (*old).clone();
        apply_patch(patch_kind, &mut new, body)?;
        if meta(&new, "resourceVersion") != meta(&old, "resourceVersion") {
            return Err(ApiError::conflict(info, name));
        }
        self.update_locked(&mut inner, kind, ns, name, new, sub, false)
    }

    /// Deletes an object. Objects with finalizers, and bound pods with a grace period, get a
    /// `deletionTimestamp` and stay; everything else goes now. Returns the object's last state.
    pub fn delete(
        &self,
        kind: KindId,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> ApiResult<Arc<Value>> {
        let mut inner = self.lock();
        self.delete_locked(&mut inner, kind, ns, name, opts)
    }

    fn delete_locked(
        &self,
        inner: &mut Inner,
        kind: KindId,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> ApiResult<Arc<Value>> {
        let info = &self.kinds[kind];
        let key = self.key(kind, ns, name);
        let old = inner.kinds[kind]
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(info, name))?;
        if let Some(uid) = &opts.precondition_uid
            && Some(uid) != meta(&old, "uid").as_ref()
        {
            return Err(ApiError::conflict_message(
                info,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                    uid,
                    meta(&old, "uid").unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = &opts.precondition_rv
            && Some(rv) != meta(&old, "resourceVersion").as_ref()
        {
            return Err(ApiError::conflict(info, name));
        }
        let uid = meta(&old, "uid").unwrap_or_default();
        let policy = opts.propagation_policy.as_deref().unwrap_or("Background");
        if policy == "Orphan" {
            self.orphan_dependents(inner, &uid);
        }
        let is_pod = info.group.is_empty() && info.kind == "Pod";
        let mut grace = 0;
        if is_pod {
            let bound = old
                .ptr("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            let phase = old
                .ptr("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let terminal = phase == "Succeeded" || phase == "Failed";
            let default = old
                .ptr("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30);
            grace = opts.grace_period_seconds.unwrap_or(default).max(0);
            if !bound || terminal {
                grace = 0;
            }
        }
        let mut fins = finalizers(&old);
        if policy == "Foreground"
            && !fins.iter().any(|f| f == "foregroundDeletion")
            && inner.dependents.contains_key(&uid)
        {
            fins.push("foregroundDeletion".into());
        }
        let terminating = old
            .ptr("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null());
        if fins.is_empty() && grace == 0 {
            let removed = self.remove_locked(inner, kind, old);
            return Ok(removed);
        }
        if terminating {
            // Only a shorter grace period changes anything for an object already terminating.
            let cur = old
                .ptr("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if is_pod && grace < cur {
                let mut new = (*old).clone();
                let ts = self.clock.now() + jiff::SignedDuration::from_secs(grace);
                let m = meta_mut(&mut new);
                m.insert(
                    "deletionTimestamp".into(),
                    json!(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                );
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                return Ok(self.commit(inner, kind, Some(old), Some(new)));
            }
            return Ok(old);
        }
        let mut new = (*old).clone();
        let ts = self.clock.now() + jiff::SignedDuration::from_secs(grace);
        {
            let m = meta_mut(&mut new);
            m.insert(
                "deletionTimestamp".into(),
                json!(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
            );
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            m.insert("finalizers".into(), json!(fins));
            if fins.is_empty() {
                m.remove("finalizers");
            }
        }
        let obj = self.commit(inner, kind, Some(old), Some(new));
        if policy == "Foreground" {
            inner
                .foreground
                .insert((kind, key.0.clone(), key.1.clone()));
            self.delete_dependents(inner, &uid);
            self.settle_foreground(inner);
        }
        Ok(inner.kinds[kind].objects.get(&key).cloned().unwrap_or(obj))
    }

    fn remove_locked(&self, inner: &mut Inner, kind: KindId, obj: Arc<Value>) -> Arc<Value> {
        let uid = meta(&obj, "uid").unwrap_or_default();
        let removed = self.commit(inner, kind, Some(obj), None);
        // Background garbage collection of dependents.
        self.delete_dependents(inner, &uid);
        if !inner.foreground.is_empty() {
            self.settle_foreground(inner);
        }
        removed
    }

    fn delete_dependents(&self, inner: &mut Inner, owner_uid: &str) {
        let deps: Vec<_> = inner
            .dependents
            .get(owner_uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for (k, ns, name) in deps {
            let _ = self.delete_locked(inner, k, &ns, &name, &DeleteOpts::default());
        }
    }

    fn orphan_dependents(&self, inner: &mut Inner, owner_uid: &str) {
        let deps: Vec<_> = inner
            .dependents
            .get(owner_uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for (k, ns, name) in deps {
            let Some(old) = inner.kinds[k]
                .objects
                .get(&(ns.clone(), name.clone()))
                .cloned()
            else {
                continue;
            };
            let mut new = (*old).clone();
            if let Some(refs) = new
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
            }
            self.commit(inner, k, Some(old), Some(new));
        }
    }

    /// Removes `foregroundDeletion` from owners whose dependents are all gone.
    fn settle_foreground(&self, inner: &mut Inner) {
        let pending: Vec<_> = inner.foreground.iter().cloned().collect();
        for (k, ns, name) in pending {
            let Some(old) = inner.kinds[k]
                .objects
                .get(&(ns.clone(), name.clone()))
                .cloned()
            else {
                inner.foreground.remove(&(k, ns, name));
                continue;
            };
            let uid = meta(&old, "uid").unwrap_or_default();
            if inner.dependents.get(&uid).is_some_and(|d| !d.is_empty()) {
                continue;
            }
            inner.foreground.remove(&(k, ns.clone(), name.clone()));
            let mut new = (*old).clone();
            if let Some(f) = new
                .pointer_mut("/metadata/finalizers")
                .and_then(Value::as_array_mut)
            {
                f.retain(|x| x != "foregroundDeletion");
            }
            let _ = self.update_locked(inner, k, &ns, &name, new, Sub::All, false);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Pod subresources

    /// `POST pods/<name>/binding`: assigns the pod to a node.
    pub fn bind(
        &self,
        pod_kind: KindId,
        ns: &str,
        name: &str,
        node: &str,
    ) -> ApiResult<Arc<Value>> {
        let info = &self.kinds[pod_kind];
        let mut inner = self.lock();
        let key = self.key(pod_kind, ns, name);
        let old = inner.kinds[pod_kind]
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(info, name))?;
        if let Some(cur) = old
            .ptr("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict_message(
                info,
                name,
                &format!("pod {name} is already assigned to node \"{cur}\""),
            ));
        }
        if old
            .ptr("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
        {
            return Err(ApiError::conflict_message(
                info,
                name,
                "pod is being deleted, cannot be assigned to a host",
            ));
        }
        let mut new = (*old).clone();
        as_map(as_map(&mut new).entry("spec").or_insert(Value::Null))
            .insert("nodeName".into(), json!(node));
        let now = self.now_string();
        super::patch::strategic_merge(
            &mut new,
            &json!({ "status": { "conditions": [{ "type": "PodScheduled", "status": "True", "lastTransitionTime": now, "lastProbeTime": null }] } }),
        );
        if let Some(c) = new
            .pointer_mut("/status/conditions")
            .and_then(Value::as_array_mut)
            && let Some(ps) = c
                .iter_mut()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
            && let Some(o) = ps.as_object_mut()
        {
            o.remove("reason");
            o.remove("message");
        }
        Ok(self.commit(&mut inner, pod_kind, Some(old), Some(new)))
    }

    /// The sum of the `replicas` of the controllers of a PDB's pods (its expected count, see
    /// [`budget`]), each scale counted once.
    fn expected_scale(
        &self,
        inner: &Inner,
        ns: &str,
        counts: &PdbCounts,
    ) -> Result<i64, budget::CountError> {
        let mut seen = BTreeSet::new();
        let mut total = 0;
        for (kind, name, uid) in counts.controllers.keys() {
            let (scale_uid, replicas) =
                self.scale_of(inner, ns, kind, name, uid).ok_or_else(|| {
                    budget::CountError::NoScalableController(format!("{kind}/{name}"))
                })?;
            if seen.insert(scale_uid) {
                total += replicas;
            }
        }
        Ok(total)
    }

    /// The scale (uid, `replicas`) a controller counts with: its own, or its Deployment's for a
    /// ReplicaSet a Deployment owns; `None` when it is gone or has no scale.
    fn scale_of(
        &self,
        inner: &Inner,
        ns: &str,
        kind: &str,
        name: &str,
        uid: &str,
    ) -> Option<(String, i64)> {
        if !budget::is_scalable(kind) {
            return None;
        }
        let group = if kind == "ReplicationController" {
            ""
        } else {
            "apps"
        };
        let id = self.kind_id(group, kind)?;
        let obj = inner.kinds[id].objects.get(&self.key(id, ns, name))?;
        if meta(obj, "uid").as_deref() != Some(uid) {
            return None;
        }
        if kind == "ReplicaSet"
            && let Some((k, n, u)) = budget::controller_of(obj)
            && k == "Deployment"
        {
            return self.scale_of(inner, ns, &k, &n, &u);
        }
        Some((uid.to_string(), budget::replicas_of(obj)))
    }

    /// `POST pods/<name>/eviction`: deletes the pod unless that would break its
    /// PodDisruptionBudget (429 with the budget's numbers, like the real API server).
    pub fn evict(
        &self,
        pod_kind: KindId,
        pdb_kind: Option<KindId>,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> ApiResult<Arc<Value>> {
        let info = &self.kinds[pod_kind];
        let mut inner = self.lock();
        let key = self.key(pod_kind, ns, name);
        let pod = inner.kinds[pod_kind]
            .objects
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(info, name))?;
        let phase = pod
            .ptr("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let terminating = pod
            .ptr("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null());
        if terminating
            || phase == "Succeeded"
            || phase == "Failed"
            || phase == "Pending"
            || phase.is_empty()
        {
            return self.delete_locked(&mut inner, pod_kind, ns, name, opts);
        }
        if let Some(pdb_kind) = pdb_kind {
            // The namespace's PDBs with their selectors parsed once ([`PdbIndex`]).
            let pdbs: Vec<Arc<Value>> = inner
                .pdbs
                .by_ns
                .get(ns)
                .into_iter()
                .flatten()
                .filter(|(_, sel)| sel.as_ref().is_some_and(|s| s.matches(&pod)))
                .filter_map(|(n, _)| {
                    inner.kinds[pdb_kind]
                        .objects
                        .get(&(ns.to_string(), n.clone()))
                        .cloned()
                })
                .collect();
            if pdbs.len() > 1 {
                return Err(ApiError::internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                ));
            }
            if let Some(pdb) = pdbs.first() {
                let pdb_name = meta(pdb, "name").unwrap_or_default();
                let empty = PdbCounts::default();
                let counts = inner
                    .pdbs
                    .counts
                    .get(&(ns.to_string(), pdb_name.clone()))
                    .unwrap_or(&empty);
                let budget = budget::budget(pdb.get("spec"), counts.healthy, counts.pods, || {
                    self.expected_scale(&inner, ns, counts)
                });
                let refusal = match budget {
                    Ok(b) if budget::may_evict(&b, pod_is_healthy(&pod), counts.healthy) => None,
                    Ok(b) => Some(format!(
                        "The disruption budget {pdb_name} needs {} healthy pods and has {} currently",
                        b.desired, counts.healthy
                    )),
                    Err(e) => Some(format!(
                        "The disruption budget {pdb_name} allows no disruption: {e}"
                    )),
                };
                if let Some(message) = refusal {
                    return Err(ApiError::too_many_requests(
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                    )
                    .with_details(json!({
                        "causes": [{ "reason": "DisruptionBudget", "message": message }]
                    })));
                }
            }
        }
        self.delete_locked(&mut inner, pod_kind, ns, name, opts)
    }
}

/// `metadata.resourceVersion` as a number.
fn resource_version_of(obj: &Value) -> Option<u64> {
    obj.ptr("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
}

/// What a watcher with `filter` sees of a history event (transitions in and out of the filter
/// become ADDED and DELETED, as with the real watch cache).
fn translate(ev: &HistEvent, filter: &Filter) -> Option<WatchMsg> {
    let new_m = filter.matches(&ev.new);
    let old_m = ev.old.as_deref().is_some_and(|o| filter.matches(o));
    let etype = match ev.etype {
        EventType::Added => new_m.then_some(EventType::Added)?,
        EventType::Deleted => (old_m || new_m).then_some(EventType::Deleted)?,
        EventType::Modified => match (old_m, new_m) {
            (true, true) => EventType::Modified,
            (false, true) => EventType::Added,
            (true, false) => EventType::Deleted,
            (false, false) => return None,
        },
    };
    Some(WatchMsg::Event {
        etype,
        object: ev.new.clone(),
        cache: ev.cache.clone(),
    })
}

fn default_pod(obj: &mut Value) {
    if !obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"] = json!({});
    }
    let spec = &mut obj["spec"];
    for (k, v) in [
        ("schedulerName", json!("default-scheduler")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("restartPolicy", json!("Always")),
        ("dnsPolicy", json!("ClusterFirst")),
        ("priority", json!(0)),
    ] {
        if spec.get(k).is_none_or(Value::is_null) {
            spec[k] = v;
        }
    }
    let mut status = json!({ "phase": "Pending" });
    let requests_any = obj
        .ptr("/spec/containers")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.ptr("/resources/requests")
                    .is_some_and(|r| r.as_object().is_some_and(|o| !o.is_empty()))
            })
        });
    status["qosClass"] = json!(if requests_any {
        "Burstable"
    } else {
        "BestEffort"
    });
    obj["status"] = status;
}
