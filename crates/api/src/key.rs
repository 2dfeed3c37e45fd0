//! The one way to name a namespaced object: `namespace/name`. Pods, DaemonSets and
//! PodDisruptionBudgets are keyed by it in the controllers' state, the solver's plan and the
//! simulator, so every place must build it the same way.

use kube::Resource;

/// The namespace a namespaced object without `metadata.namespace` is in (as `kubectl apply`
/// reads a manifest).
pub const DEFAULT_NAMESPACE: &str = "default";

/// `namespace/name`; an empty namespace is [`DEFAULT_NAMESPACE`].
pub fn namespaced_key(namespace: &str, name: &str) -> String {
    let namespace = if namespace.is_empty() {
        DEFAULT_NAMESPACE
    } else {
        namespace
    };
    // Built by hand: `format!` costs a visible share when 40,000 pods are keyed at once.
    let mut key = String::with_capacity(namespace.len() + 1 + name.len());
    key.push_str(namespace);
    key.push('/');
    key.push_str(name);
    key
}

/// The `namespace/name` key of a namespaced Kubernetes object.
pub fn key_of<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    namespaced_key(
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pod(namespace: Option<&str>, name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: namespace.map(str::to_string),
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            ..Pod::default()
        }
    }

    #[test]
    fn keys_are_namespace_slash_name_with_default_for_a_missing_namespace() {
        assert_eq!(key_of(&pod(Some("shop"), "web-1")), "shop/web-1");
        assert_eq!(namespaced_key("shop", "web-1"), "shop/web-1");
        assert_eq!(key_of(&pod(None, "web-1")), "default/web-1");
        assert_eq!(namespaced_key("", "web-1"), "default/web-1");
    }
}
