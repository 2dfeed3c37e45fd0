//! The kinds the API server serves: one registration line per kind (group, version, kind, plural,
//! scope, subresources). Storage, discovery and routing are all driven from this table, so a new
//! kind is one more line in [`builtin`].

/// What the server knows about one kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindInfo {
    /// API group; `""` for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    /// Subresources served (`status`, `binding`, `eviction`).
    pub subresources: &'static [&'static str],
    pub short_names: &'static [&'static str],
    /// A custom resource: strategic merge patch is refused (415) and `status` is dropped on create
    /// when a status subresource exists, as the real API server does for CRDs.
    pub custom: bool,
}

impl KindInfo {
    /// A namespaced or cluster-scoped kind without subresources.
    pub const fn new(
        group: &'static str,
        version: &'static str,
        kind: &'static str,
        plural: &'static str,
        namespaced: bool,
    ) -> Self {
        Self {
            group,
            version,
            kind,
            plural,
            namespaced,
            subresources: &[],
            short_names: &[],
            custom: false,
        }
    }

    pub const fn subresources(mut self, subresources: &'static [&'static str]) -> Self {
        self.subresources = subresources;
        self
    }

    pub const fn short_names(mut self, short_names: &'static [&'static str]) -> Self {
        self.short_names = short_names;
        self
    }

    pub const fn custom(mut self) -> Self {
        self.custom = true;
        self
    }

    /// `v1` or `group/version`, as in `apiVersion`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `pods` or `nodepools.stowage.dev`, as in error messages.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.contains(&name)
    }

    /// The lower-case singular name used in discovery.
    pub fn singular(&self) -> String {
        self.kind.to_ascii_lowercase()
    }
}

/// Every kind the simulated cluster serves.
pub fn builtin() -> Vec<KindInfo> {
    vec![
        KindInfo::new("", "v1", "Pod", "pods", true)
            .subresources(&["status", "binding", "eviction"])
            .short_names(&["po"]),
        KindInfo::new("", "v1", "Node", "nodes", false)
            .subresources(&["status"])
            .short_names(&["no"]),
        KindInfo::new("", "v1", "Namespace", "namespaces", false)
            .subresources(&["status"])
            .short_names(&["ns"]),
        KindInfo::new("", "v1", "Event", "events", true).short_names(&["ev"]),
        KindInfo::new("", "v1", "Service", "services", true)
            .subresources(&["status"])
            .short_names(&["svc"]),
        KindInfo::new("", "v1", "ConfigMap", "configmaps", true).short_names(&["cm"]),
        KindInfo::new("apps", "v1", "DaemonSet", "daemonsets", true)
            .subresources(&["status"])
            .short_names(&["ds"]),
        KindInfo::new("apps", "v1", "ReplicaSet", "replicasets", true)
            .subresources(&["status"])
            .short_names(&["rs"]),
        KindInfo::new("apps", "v1", "Deployment", "deployments", true)
            .subresources(&["status"])
            .short_names(&["deploy"]),
        KindInfo::new("batch", "v1", "Job", "jobs", true).subresources(&["status"]),
        KindInfo::new(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
        )
        .subresources(&["status"])
        .short_names(&["pdb"]),
        KindInfo::new("coordination.k8s.io", "v1", "Lease", "leases", true),
        KindInfo::new("events.k8s.io", "v1", "Event", "events", true).short_names(&["ev"]),
        KindInfo::new("stowage.dev", "v1", "NodePool", "nodepools", false)
            .subresources(&["status"])
            .custom(),
        KindInfo::new("stowage.dev", "v1", "NodeClaim", "nodeclaims", false)
            .subresources(&["status"])
            .custom(),
        KindInfo::new(
            "aws.stowage.dev",
            "v1",
            "EC2NodeClass",
            "ec2nodeclasses",
            false,
        )
        .subresources(&["status"])
        .short_names(&["ec2nc"])
        .custom(),
    ]
}
