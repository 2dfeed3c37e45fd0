//! Audit mode: what each request of one client asked for, in the terms RBAC authorizes (verb,
//! API group, resource, subresource, namespace, name), as the real API server's request-info
//! resolver derives them from the method and the path. Opt-in per client
//! ([`super::ApiServer::audited_client`]); other clients cost nothing.
//!
//! The record is taken before the request is served, so refused requests (a `404`, a `409`) are
//! recorded too: RBAC is checked before the server looks at the object.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// One request, as RBAC sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuditRecord {
    /// A request on a resource (`/api/v1/...`, `/apis/<group>/<version>/...`).
    Resource(ResourceRequest),
    /// A request on any other path (discovery: `/api`, `/apis`, `/version`).
    NonResource { verb: String, path: String },
}

/// The attributes of a resource request that RBAC rules match.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceRequest {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or `deletecollection`.
    pub verb: String,
    /// `""` for the core group.
    pub group: String,
    /// The plural (`pods`).
    pub resource: String,
    /// `status`, `eviction`, `binding`, ... (empty for the object itself).
    pub subresource: String,
    /// Empty for cluster-scoped kinds and for requests across all namespaces.
    pub namespace: String,
    /// Empty for collection requests (list, watch, create, deletecollection).
    pub name: String,
}

impl ResourceRequest {
    /// `pods` or `pods/eviction`, as an RBAC rule's `resources` names it.
    pub fn resource_path(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

impl std::fmt::Display for AuditRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditRecord::NonResource { verb, path } => write!(f, "{verb} {path}"),
            AuditRecord::Resource(r) => {
                let group = if r.group.is_empty() { "core" } else { &r.group };
                write!(f, "{} {group}/{}", r.verb, r.resource_path())?;
                if !r.namespace.is_empty() {
                    write!(f, " in {}", r.namespace)?;
                }
                if !r.name.is_empty() {
                    write!(f, " named {}", r.name)?;
                }
                Ok(())
            }
        }
    }
}

impl AuditRecord {
    /// What `method` on `uri` asks for, following the API server's request-info resolver:
    /// `GET` on a collection is `list` (`watch` with `?watch=true`), on an object `get`; `POST`
    /// is `create`, `PUT` `update`, `PATCH` `patch`; `DELETE` on a collection is
    /// `deletecollection`.
    pub fn from_request(method: &http::Method, uri: &http::Uri) -> Self {
        let path = uri.path().trim_end_matches('/');
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, rest) = match segs.as_slice() {
            ["api", _version, rest @ ..] if !rest.is_empty() => ("", rest),
            ["apis", group, _version, rest @ ..] if !rest.is_empty() => (*group, rest),
            _ => {
                return AuditRecord::NonResource {
                    verb: method.as_str().to_ascii_lowercase(),
                    path: if path.is_empty() { "/" } else { path }.to_string(),
                };
            }
        };
        let mut parts = rest;
        let mut namespace = "";
        if parts.first() == Some(&"namespaces") && parts.len() > 1 {
            namespace = parts[1];
            if parts.len() > 2 {
                parts = &parts[2..];
            }
        }
        let resource = parts.first().copied().unwrap_or_default();
        let name = parts.get(1).copied().unwrap_or_default();
        let subresource = parts.get(2).copied().unwrap_or_default();
        let watch = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1");
        let verb = match (method.as_str(), name.is_empty()) {
            ("GET" | "HEAD", true) if watch => "watch",
            ("GET" | "HEAD", true) => "list",
            ("GET" | "HEAD", false) => "get",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "deletecollection",
            ("DELETE", false) => "delete",
            // Not a verb RBAC knows (OPTIONS, ...): kept as is, so no rule allows it.
            (other, _) => other,
        };
        AuditRecord::Resource(ResourceRequest {
            verb: verb.to_ascii_lowercase(),
            group: group.to_string(),
            resource: resource.to_string(),
            subresource: subresource.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

/// The requests one client made, in order, and their counts by verb and resource. Cheap to
/// clone; clones share the log.
#[derive(Clone, Debug, Default)]
pub struct AuditLog {
    records: Arc<Mutex<Vec<AuditRecord>>>,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Only count (a long run's requests would pile up as records).
    counting_only: bool,
}

impl AuditLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// A log that keeps only the counts ([`Self::counts`]), not each request.
    pub fn counting() -> Self {
        Self {
            counting_only: true,
            ..Self::default()
        }
    }

    pub(crate) fn record(&self, record: AuditRecord) {
        let key = match &record {
            AuditRecord::Resource(r) => {
                let group = if r.group.is_empty() { "core" } else { &r.group };
                format!("{} {group}/{}", r.verb, r.resource_path())
            }
            AuditRecord::NonResource { verb, .. } => format!("{verb} non-resource"),
        };
        *self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default() += 1;
        if !self.counting_only {
            self.records
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(record);
        }
    }

    /// Requests so far by `verb group/resource[/subresource]` (`create core/pods/eviction`; the
    /// core group is `core`; requests on other paths are `<verb> non-resource`).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Requests so far, also in counting mode.
    pub fn total(&self) -> u64 {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }

    /// Every request so far, in order.
    pub fn records(&self) -> Vec<AuditRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The distinct requests so far, sorted.
    pub fn distinct(&self) -> BTreeSet<AuditRecord> {
        self.records().into_iter().collect()
    }

    pub fn len(&self) -> usize {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(method: &str, uri: &str) -> AuditRecord {
        AuditRecord::from_request(
            &http::Method::from_bytes(method.as_bytes()).unwrap(),
            &uri.parse().unwrap(),
        )
    }

    fn res(
        verb: &str,
        group: &str,
        resource: &str,
        sub: &str,
        ns: &str,
        name: &str,
    ) -> AuditRecord {
        AuditRecord::Resource(ResourceRequest {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
        })
    }

    #[test]
    fn paths_and_methods_become_rbac_attributes() {
        let cases = [
            (
                rec("GET", "/api/v1/pods?limit=500"),
                res("list", "", "pods", "", "", ""),
            ),
            (
                rec("GET", "/api/v1/pods?watch=true&resourceVersion=5"),
                res("watch", "", "pods", "", "", ""),
            ),
            (
                rec("POST", "/api/v1/namespaces/default/pods/web/eviction"),
                res("create", "", "pods", "eviction", "default", "web"),
            ),
            (
                rec("PATCH", "/apis/stowage.dev/v1/nodeclaims/c-1/status"),
                res("patch", "stowage.dev", "nodeclaims", "status", "", "c-1"),
            ),
            (
                rec(
                    "PUT",
                    "/apis/coordination.k8s.io/v1/namespaces/stowage/leases/stowage-leader",
                ),
                res(
                    "update",
                    "coordination.k8s.io",
                    "leases",
                    "",
                    "stowage",
                    "stowage-leader",
                ),
            ),
            (
                rec("GET", "/api/v1/namespaces/kube-system"),
                res("get", "", "namespaces", "", "kube-system", "kube-system"),
            ),
            (
                rec("DELETE", "/api/v1/namespaces/default/pods"),
                res("deletecollection", "", "pods", "", "default", ""),
            ),
            (
                rec("DELETE", "/api/v1/nodes/n-1"),
                res("delete", "", "nodes", "", "", "n-1"),
            ),
            (
                rec("POST", "/api/v1/namespaces/default/events"),
                res("create", "", "events", "", "default", ""),
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
        assert_eq!(
            rec("GET", "/apis"),
            AuditRecord::NonResource {
                verb: "get".into(),
                path: "/apis".into()
            }
        );
        assert_eq!(
            rec("GET", "/apis/stowage.dev/v1").to_string(),
            "get /apis/stowage.dev/v1"
        );
        let log = AuditLog::counting();
        for (m, u) in [
            ("GET", "/api/v1/pods?watch=true"),
            ("POST", "/api/v1/namespaces/default/pods/web/eviction"),
            ("POST", "/api/v1/namespaces/default/pods/db/eviction"),
            ("GET", "/apis"),
        ] {
            log.record(rec(m, u));
        }
        assert!(log.is_empty(), "counting mode keeps no records");
        assert_eq!(log.total(), 4);
        assert_eq!(
            log.counts().into_iter().collect::<Vec<_>>(),
            [
                ("create core/pods/eviction".to_string(), 2),
                ("get non-resource".to_string(), 1),
                ("watch core/pods".to_string(), 1),
            ]
        );
        assert_eq!(
            rec("POST", "/api/v1/namespaces/default/pods/web/eviction").to_string(),
            "create core/pods/eviction in default named web"
        );
    }
}
