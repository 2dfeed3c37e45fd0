//! Lenient decoding of listed and watched objects: one object that does not decode as its type
//! (written by a newer CRD version, or corrupt) becomes an [`Undecodable`] carrying its identity
//! and the reason, instead of failing the whole list — which would fail again on every re-list and
//! keep the state unsynced forever. Objects are decoded through a `serde_json::Value`, so the
//! failure of one never touches its neighbours, and the error never carries the object's body.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// An object of kind `K` as the API server sent it: decoded, or not.
#[derive(Clone, Debug)]
pub enum Lenient<K> {
    Decoded(K),
    Undecodable(Undecodable),
}

/// An object that does not decode as its type.
#[derive(Clone, Debug, PartialEq)]
pub struct Undecodable {
    /// Its name, namespace, uid and resourceVersion, as far as they could be read.
    pub metadata: ObjectMeta,
    /// Why it does not decode (the decoder's message, at most [`MAX_ERROR_CHARS`] characters).
    pub error: String,
}

/// Longest decode error kept (a message can quote a field's value).
pub const MAX_ERROR_CHARS: usize = 300;

/// The identity fields of an object's metadata, read field by field so a corrupt neighbour field
/// does not hide them.
fn identity(value: &Value) -> ObjectMeta {
    let field = |name: &str| {
        value
            .get("metadata")
            .and_then(|m| m.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    ObjectMeta {
        name: field("name"),
        namespace: field("namespace"),
        uid: field("uid"),
        resource_version: field("resourceVersion"),
        ..ObjectMeta::default()
    }
}

fn bounded(mut message: String) -> String {
    if let Some((cut, _)) = message.char_indices().nth(MAX_ERROR_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    message
}

impl<K: DeserializeOwned> Lenient<K> {
    /// Decodes one object.
    pub fn from_value(value: Value) -> Self {
        let metadata = identity(&value);
        match serde_json::from_value(value) {
            Ok(obj) => Self::Decoded(obj),
            Err(err) => Self::Undecodable(Undecodable {
                metadata,
                error: bounded(err.to_string()),
            }),
        }
    }
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Lenient<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Self::from_value)
    }
}

/// The kind of `K` (what `Api<Lenient<K>>` lists and watches).
impl<K: Resource> Resource for Lenient<K> {
    type DynamicType = K::DynamicType;
    type Scope = K::Scope;

    fn kind(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::version(dt)
    }
    fn api_version(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::api_version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn url_path(dt: &Self::DynamicType, namespace: Option<&str>) -> String {
        K::url_path(dt, namespace)
    }
    fn meta(&self) -> &ObjectMeta {
        match self {
            Self::Decoded(obj) => obj.meta(),
            Self::Undecodable(u) => &u.metadata,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Self::Decoded(obj) => obj.meta_mut(),
            Self::Undecodable(u) => &mut u.metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::core::ObjectList;
    use serde_json::json;
    use stowage_api::NodePool;

    use super::*;

    fn pool(name: &str, weight: Value) -> Value {
        json!({
            "apiVersion": "stowage.dev/v1",
            "kind": "NodePool",
            "metadata": {"name": name, "resourceVersion": "7", "uid": format!("uid-{name}")},
            "spec": {
                "weight": weight,
                "template": {"spec": {"nodeClassRef": {"group": "aws.stowage.dev", "kind": "EC2NodeClass", "name": "default"}}}
            }
        })
    }

    #[test]
    fn one_object_that_does_not_decode_leaves_the_rest_of_the_list_readable() {
        let list = json!({
            "apiVersion": "stowage.dev/v1",
            "kind": "NodePoolList",
            "metadata": {"resourceVersion": "9"},
            "items": [pool("a", json!(10)), pool("b", json!("heavy")), pool("c", json!(20))],
        });
        // A typed list of the same body fails as a whole: what the watcher did before.
        assert!(serde_json::from_value::<ObjectList<NodePool>>(list.clone()).is_err());
        let list: ObjectList<Lenient<NodePool>> =
            serde_json::from_value(list).expect("the list decodes");
        let names: Vec<String> = list
            .items
            .iter()
            .map(|o| match o {
                Lenient::Decoded(p) => format!("ok {}", p.meta().name.clone().unwrap_or_default()),
                Lenient::Undecodable(u) => {
                    format!("bad {}", u.metadata.name.clone().unwrap_or_default())
                }
            })
            .collect();
        assert_eq!(names, ["ok a", "bad b", "ok c"]);
        let Lenient::Undecodable(bad) = &list.items[1] else {
            unreachable!()
        };
        assert_eq!(bad.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(bad.metadata.uid.as_deref(), Some("uid-b"));
        assert!(bad.error.contains("invalid type"), "{}", bad.error);
        assert!(
            !bad.error.contains("nodeClassRef"),
            "no body: {}",
            bad.error
        );
    }

    #[test]
    fn a_watch_event_with_an_undecodable_object_still_decodes() {
        use kube::api::WatchEvent;
        // The object before the type, as the simulated API server writes it.
        let line = json!({"object": pool("b", json!({"x": 1})), "type": "MODIFIED"});
        let event: WatchEvent<Lenient<NodePool>> =
            serde_json::from_value(line).expect("the event decodes");
        let WatchEvent::Modified(Lenient::Undecodable(u)) = event else {
            panic!("expected an undecodable modification: {event:?}")
        };
        assert_eq!(u.metadata.name.as_deref(), Some("b"));
    }

    #[test]
    fn errors_are_bounded() {
        let long = "x".repeat(5_000);
        let Lenient::<NodePool>::Undecodable(u) = Lenient::from_value(pool("b", json!(long)))
        else {
            panic!("a string weight does not decode")
        };
        assert!(
            u.error.chars().count() <= MAX_ERROR_CHARS + 1,
            "{}",
            u.error.len()
        );
    }
}
