//! The fast reader of `stowage plan`: documents are deserialized straight from the text (no
//! `serde_json::Value` tree in between), and Pods keep only the fields the provisioner reads
//! (`ClusterState`, `snapshot`, `stowage_solver::convert::pod`); env, volumes, probes, images
//! and every other field are skipped without being built. Other kinds (Nodes, NodePools,
//! DaemonSets, NodeClaims: a handful in a dump) are kept as `Value`s for the exact reader.
//!
//! Key decision: this reader only ever says "these are the objects" or "not mine". Anything
//! unusual (a document without a kind, a Pod whose `apiVersion` is not `v1`, a List without
//! items, a Pod without containers, any syntax or type error) makes the caller read the whole
//! file again with the exact reader (`Value` then the full `k8s_openapi` types), which names the
//! document and the field. So every error message is the exact reader's; the fast reader only
//! has to agree with it on input both accept.
//!
//! **Invariant:** [`LeanSpec`], [`LeanMeta`], [`LeanContainer`] and [`LeanStatus`] carry every
//! Pod field the provisioner reads. A field read there and not here would be silently dropped;
//! `plan::tests::the_fast_reader_agrees_with_the_exact_one` compares both on a pod using each.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// One document (or List item) as the fast reader read it.
#[derive(Debug, PartialEq)]
pub enum Item {
    /// A YAML document that is empty or `null`.
    Null,
    Pod(Box<core::Pod>),
    /// The items of a List kind (`List`, `PodList`, ...).
    List(Vec<Item>),
    /// Any other object, for the exact reader.
    Other(serde_json::Value),
}

/// The fast reader declined the document: the caller reads the file with the exact reader.
const DECLINE: &str = "stowage plan: not for the fast reader";

fn decline<E: de::Error>() -> E {
    E::custom(DECLINE)
}

const LIST_KINDS: [&str; 6] = [
    "List",
    "PodList",
    "NodeList",
    "DaemonSetList",
    "NodePoolList",
    "NodeClaimList",
];

/// The documents of a JSON text (one object, or an array of objects as documents), or `None`
/// when the exact reader must read it.
pub fn json_documents(text: &str) -> Option<Vec<Item>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads > 1
        && text.len() >= PARALLEL_MIN_BYTES
        && let Some(docs) = parallel::documents(text, threads)
    {
        return Some(docs);
    }
    json_sequential(text)
}

/// Below this size a file is read on one thread.
const PARALLEL_MIN_BYTES: usize = 8 << 20;

fn json_sequential(text: &str) -> Option<Vec<Item>> {
    let mut de = serde_json::Deserializer::from_str(text);
    let docs = Documents.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(docs)
}

/// Reading one large pretty-printed JSON List (`kubectl get -o json`) on several threads.
///
/// The text is cut between two items of the List (or of a top-level array): where a line holds
/// only `{` at the items' indentation and the line before ends with `,`. A raw newline is never
/// inside a JSON string, so the `{` is structural and starts an element of some array; each
/// piece is then read strictly on its own, and the pieces only fit together when every cut is
/// between items of the top-level items array: the first piece (`text[..cut] + "]}"`) must close
/// with `items` as its last field, every middle piece (`"[" + piece + "]"`) must be a complete
/// array, and the last (`"[" + text[cut..]`) must close the array and then the document. Any
/// other text (compact JSON, a cut inside a nested array) fails one of these and is read on one
/// thread, so the result is the sequential reader's or nothing.
mod parallel {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde::Deserialize;
    use serde::de::{self, Deserializer as _, IgnoredAny, MapAccess, Visitor};

    use super::{Documents, Item, LIST_KINDS};
    use serde::de::DeserializeSeed as _;

    pub(super) fn documents(text: &str, threads: usize) -> Option<Vec<Item>> {
        let object = match text.trim_start().as_bytes().first() {
            Some(b'{') => true,
            Some(b'[') => false,
            _ => return None,
        };
        // The indentation unit: that of the second line.
        let second = text.find('\n')? + 1;
        let unit = text[second..].bytes().take_while(|b| *b == b' ').count();
        if unit == 0 {
            return None;
        }
        let level = if object { 2 * unit } else { unit };
        // A few pieces per thread, so a slow piece does not leave a thread idle.
        let pieces = threads * 4;
        let mut cuts: Vec<(usize, usize)> = Vec::new();
        for j in 1..pieces {
            let from = (text.len() * j / pieces).max(cuts.last().map_or(0, |c| c.1 + 1));
            if let Some(cut) = next_cut(text, from, level)
                && cuts.last().is_none_or(|last| cut.1 > last.1)
            {
                cuts.push(cut);
            }
        }
        if cuts.is_empty() {
            return None;
        }
        let n = cuts.len() + 1;
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Piece>>> = Mutex::new((0..n).map(|_| None).collect());
        let failed = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..threads.min(n) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n || failed.load(Ordering::Relaxed) {
                            return;
                        }
                        let piece = read_piece(text, &cuts, i, object);
                        match (piece, results.lock()) {
                            (Some(p), Ok(mut r)) => r[i] = Some(p),
                            _ => failed.store(true, Ordering::Relaxed),
                        }
                    }
                });
            }
        });
        if failed.load(Ordering::Relaxed) {
            return None;
        }
        let results = results.into_inner().ok()?;
        let mut kind = None;
        let mut items = Vec::new();
        for piece in results {
            let piece = piece?;
            kind = kind.or(piece.kind);
            items.extend(piece.items);
        }
        if !object {
            return Some(items);
        }
        if !LIST_KINDS.contains(&kind?.as_str()) {
            return None;
        }
        Some(vec![Item::List(items)])
    }

    /// The first cut at or after `from`: (the comma ending the item before, the `{` starting the
    /// next one at indentation `level`).
    fn next_cut(text: &str, from: usize, level: usize) -> Option<(usize, usize)> {
        let bytes = text.as_bytes();
        let mut at = from;
        loop {
            let line = at + text.get(at..)?.find('\n')? + 1;
            at = line;
            let rest = &bytes[line..];
            if rest.len() > level && rest[..level].iter().all(|b| *b == b' ') && rest[level] == b'{'
            {
                let before = bytes[..line]
                    .iter()
                    .rposition(|b| !b.is_ascii_whitespace())?;
                if bytes[before] == b',' {
                    return Some((before, line + level));
                }
            }
        }
    }

    /// What one piece holds: items (or documents) and, for the first and last piece of a
    /// List, the kind when it is there.
    struct Piece {
        kind: Option<String>,
        items: Vec<Item>,
    }

    fn read_piece(text: &str, cuts: &[(usize, usize)], i: usize, object: bool) -> Option<Piece> {
        let n = cuts.len() + 1;
        if i == 0 {
            let head = &text[..cuts[0].0];
            if object {
                let head = format!("{head}]}}");
                let mut de = serde_json::Deserializer::from_str(&head);
                let h = de
                    .deserialize_map(Head {
                        last_is_items: true,
                    })
                    .ok()?;
                de.end().ok()?;
                return Some(h);
            }
            let head = format!("{head}]");
            let mut de = serde_json::Deserializer::from_str(&head);
            let items = Documents.deserialize(&mut de).ok()?;
            de.end().ok()?;
            return Some(Piece { kind: None, items });
        }
        let start = cuts[i - 1].1;
        if i + 1 < n {
            let middle = format!("[{}]", &text[start..cuts[i].0]);
            let mut de = serde_json::Deserializer::from_str(&middle);
            let items = Vec::<Item>::deserialize(&mut de).ok()?;
            de.end().ok()?;
            return Some(Piece { kind: None, items });
        }
        let tail = format!("[{}", &text[start..]);
        let mut stream = serde_json::Deserializer::from_str(&tail).into_iter::<Vec<Item>>();
        let items = stream.next()?.ok()?;
        let rest = tail[stream.byte_offset()..].trim_start();
        if !object {
            return rest.is_empty().then_some(Piece { kind: None, items });
        }
        // The document's fields after the items array.
        let fields = if let Some(more) = rest.strip_prefix(',') {
            format!("{{{more}")
        } else if rest.starts_with('}') {
            rest.to_string()
        } else {
            return None;
        };
        let mut de = serde_json::Deserializer::from_str(&fields);
        let h = de
            .deserialize_map(Head {
                last_is_items: false,
            })
            .ok()?;
        de.end().ok()?;
        h.items.is_empty().then_some(Piece {
            kind: h.kind,
            items,
        })
    }

    /// The List's own fields around the items: in the first piece the items must be the last
    /// field (the cut is in them); after them there must be none.
    struct Head {
        last_is_items: bool,
    }

    impl<'de> Visitor<'de> for Head {
        type Value = Piece;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a List")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Piece, A::Error> {
            let mut kind = None;
            let mut items = None;
            let mut last = String::new();
            while let Some(key) = map.next_key::<String>()? {
                match key.as_str() {
                    "kind" => kind = Some(map.next_value::<String>()?),
                    "items" if self.last_is_items => items = Some(map.next_value::<Vec<Item>>()?),
                    "items" => return Err(de::Error::custom("items after the items")),
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                last = key;
            }
            if self.last_is_items && (last != "items" || items.is_none()) {
                return Err(de::Error::custom("the cut is not in the items"));
            }
            Ok(Piece {
                kind,
                items: items.unwrap_or_default(),
            })
        }
    }
}

/// The documents of a multi-document YAML text read with `options`, or `None` when the exact
/// reader must read it.
pub fn yaml_documents(text: &str, options: serde_saphyr::Options) -> Option<Vec<Item>> {
    serde_saphyr::from_multiple_with_options::<Item>(text, options).ok()
}

/// A JSON text's top level: an array of documents or one document.
struct Documents;

impl<'de> DeserializeSeed<'de> for Documents {
    type Value = Vec<Item>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<Item>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Documents {
    type Value = Vec<Item>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object or an array of objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Item>, A::Error> {
        let mut out = Vec::new();
        while let Some(item) = seq.next_element::<Item>()? {
            out.push(item);
        }
        Ok(out)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<Item>, A::Error> {
        Ok(vec![ItemVisitor.visit_map(map)?])
    }
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Item, D::Error> {
        d.deserialize_any(ItemVisitor)
    }
}

/// A top-level key of an object, borrowed from the text where the format allows.
enum Key {
    ApiVersion,
    Kind,
    Items,
    Metadata,
    Spec,
    Status,
    Other(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                Ok(match s {
                    "apiVersion" => Key::ApiVersion,
                    "kind" => Key::Kind,
                    "items" => Key::Items,
                    "metadata" => Key::Metadata,
                    "spec" => Key::Spec,
                    "status" => Key::Status,
                    other => Key::Other(other.to_string()),
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Item, E> {
        Ok(Item::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Item, E> {
        Ok(Item::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        let mut api_version: Option<String> = None;
        let mut kind: Option<String> = None;
        let mut items: Option<Vec<Item>> = None;
        let mut pod = LeanPod::default();
        // Fields seen before `kind` (or of a kind other than Pod), for the exact reader.
        let mut rest = serde_json::Map::new();
        while let Some(key) = map.next_key::<Key>()? {
            let is_pod = kind.as_deref() == Some("Pod");
            match key {
                Key::ApiVersion => api_version = Some(map.next_value()?),
                Key::Kind => kind = Some(map.next_value()?),
                Key::Items => items = Some(map.next_value()?),
                Key::Metadata if is_pod => pod.metadata = Some(map.next_value()?),
                Key::Spec if is_pod => pod.spec = Some(map.next_value()?),
                Key::Status if is_pod => pod.status = Some(map.next_value()?),
                // A Pod's other fields are not read (k8s_openapi ignores unknown ones too).
                Key::Other(_) if is_pod => {
                    map.next_value::<IgnoredAny>()?;
                }
                Key::Metadata => {
                    rest.insert("metadata".into(), map.next_value()?);
                }
                Key::Spec => {
                    rest.insert("spec".into(), map.next_value()?);
                }
                Key::Status => {
                    rest.insert("status".into(), map.next_value()?);
                }
                Key::Other(k) => {
                    rest.insert(k, map.next_value()?);
                }
            }
        }
        let Some(kind) = kind else {
            return Err(decline());
        };
        if let Some(items) = items {
            if !LIST_KINDS.contains(&kind.as_str()) {
                return Err(decline());
            }
            return Ok(Item::List(items));
        }
        if LIST_KINDS.contains(&kind.as_str()) {
            return Err(decline());
        }
        if kind != "Pod" {
            rest.insert("kind".into(), kind.into());
            if let Some(v) = api_version {
                rest.insert("apiVersion".into(), v.into());
            }
            return Ok(Item::Other(serde_json::Value::Object(rest)));
        }
        if api_version.as_deref() != Some("v1") {
            return Err(decline());
        }
        // Fields that came before `kind`.
        let lean = |v: serde_json::Value| serde_json::from_value(v).map_err(|_| decline());
        if let Some(v) = rest.remove("metadata") {
            pod.metadata = Some(lean(v)?);
        }
        if let Some(v) = rest.remove("spec") {
            pod.spec = Some(serde_json::from_value(v).map_err(|_| decline::<A::Error>())?);
        }
        if let Some(v) = rest.remove("status") {
            pod.status = Some(serde_json::from_value(v).map_err(|_| decline::<A::Error>())?);
        }
        pod.into_pod().map(|p| Item::Pod(Box::new(p)))
    }
}

#[derive(Default)]
struct LeanPod {
    metadata: Option<LeanMeta>,
    spec: Option<LeanSpec>,
    status: Option<LeanStatus>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LeanMeta {
    name: Option<String>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<meta::OwnerReference>>,
    deletion_timestamp: Option<meta::Time>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanSpec {
    node_name: Option<String>,
    containers: Option<Vec<LeanContainer>>,
    init_containers: Option<Vec<LeanContainer>>,
    overhead: Option<BTreeMap<String, Quantity>>,
    node_selector: Option<BTreeMap<String, String>>,
    priority: Option<i32>,
    tolerations: Option<Vec<core::Toleration>>,
    affinity: Option<core::Affinity>,
    topology_spread_constraints: Option<Vec<core::TopologySpreadConstraint>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanContainer {
    name: Option<String>,
    resources: Option<core::ResourceRequirements>,
    ports: Option<Vec<core::ContainerPort>>,
    restart_policy: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanStatus {
    phase: Option<String>,
    conditions: Option<Vec<core::PodCondition>>,
    nominated_node_name: Option<String>,
}

impl LeanContainer {
    fn into_container<E: de::Error>(self) -> Result<core::Container, E> {
        // k8s_openapi requires a container's name.
        let Some(name) = self.name else {
            return Err(decline());
        };
        Ok(core::Container {
            name,
            resources: self.resources,
            ports: self.ports,
            restart_policy: self.restart_policy,
            ..Default::default()
        })
    }
}

impl LeanPod {
    fn into_pod<E: de::Error>(self) -> Result<core::Pod, E> {
        let m = self.metadata.unwrap_or_default();
        let metadata = meta::ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            labels: m.labels,
            annotations: m.annotations,
            owner_references: m.owner_references,
            deletion_timestamp: m.deletion_timestamp,
            ..Default::default()
        };
        let spec = match self.spec {
            None => None,
            Some(s) => {
                // k8s_openapi requires `containers`.
                let Some(containers) = s.containers else {
                    return Err(decline());
                };
                let containers = containers
                    .into_iter()
                    .map(LeanContainer::into_container)
                    .collect::<Result<_, E>>()?;
                let init_containers = s
                    .init_containers
                    .map(|cs| {
                        cs.into_iter()
                            .map(LeanContainer::into_container)
                            .collect::<Result<Vec<_>, E>>()
                    })
                    .transpose()?;
                Some(core::PodSpec {
                    node_name: s.node_name,
                    containers,
                    init_containers,
                    overhead: s.overhead,
                    node_selector: s.node_selector,
                    priority: s.priority,
                    tolerations: s.tolerations,
                    affinity: s.affinity,
                    topology_spread_constraints: s.topology_spread_constraints,
                    ..Default::default()
                })
            }
        };
        let status = self.status.map(|s| core::PodStatus {
            phase: s.phase,
            conditions: s.conditions,
            nominated_node_name: s.nominated_node_name,
            ..Default::default()
        });
        Ok(core::Pod {
            metadata,
            spec,
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(i: usize) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("p-{i}"), "namespace": "ns", "labels": {"app": "a"}},
            "spec": {"containers": [
                {"name": "a", "env": [{"name": "X", "value": "},\n        {"}],
                 "resources": {"requests": {"cpu": "100m"}}},
                {"name": "b", "resources": {"requests": {"memory": "1Gi"}}}]},
            "status": {"phase": "Pending"}
        })
    }

    /// As kubectl prints it: 4-space indentation.
    fn kubectl(value: &serde_json::Value) -> String {
        use serde::Serialize as _;
        let mut out = Vec::new();
        let f = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        value
            .serialize(&mut serde_json::Serializer::with_formatter(&mut out, f))
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn parallel_reading_equals_sequential_reading() {
        let items: Vec<_> = (0..300).map(pod).collect();
        let list = serde_json::json!({"apiVersion": "v1", "items": items, "kind": "List",
            "metadata": {"resourceVersion": ""}});
        for text in [
            kubectl(&list),
            kubectl(&serde_json::Value::Array(items.clone())),
        ] {
            let sequential = json_sequential(&text).unwrap();
            for threads in [2, 3, 8] {
                let parallel = parallel::documents(&text, threads);
                assert_eq!(parallel.as_ref(), Some(&sequential), "{threads} threads");
            }
        }
        let Item::List(read) = &json_sequential(&kubectl(&list)).unwrap()[0] else {
            panic!("a List");
        };
        assert_eq!(read.len(), 300);
    }

    #[test]
    fn parallel_reading_declines_what_it_cannot_cut() {
        let items: Vec<_> = (0..50).map(pod).collect();
        // Compact: no line to cut at.
        let compact = serde_json::json!({"kind": "List", "items": items}).to_string();
        assert!(parallel::documents(&compact, 2).is_none());
        // Another array of objects after the items, at their indentation: a cut there does not
        // fit the items.
        let other: Vec<_> = (0..400).map(|i| serde_json::json!({"n": i})).collect();
        let text =
            kubectl(&serde_json::json!({"kind": "List", "items": &items[..2], "zother": other}));
        assert!(parallel::documents(&text, 2).is_none());
        // Not a List.
        let text = kubectl(&serde_json::json!({"kind": "Pod", "items": items}));
        assert!(parallel::documents(&text, 2).is_none());
    }
}
