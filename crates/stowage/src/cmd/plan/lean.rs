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
#[derive(Debug)]
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
    let mut de = serde_json::Deserializer::from_str(text);
    let docs = Documents.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(docs)
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
