//! The controllers' error type: what failed, with the Kubernetes or cloud error as its source.

/// A reconcile or loop step that failed; the caller retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {action} {name}: {source}")]
    Kube {
        action: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cloud provider failed for {name}: {source}")]
    Cloud {
        name: String,
        #[source]
        source: stowage_cloud::Error,
    },
    #[error("failed to build the solver input: {0}")]
    BuildSnapshot(String),
}

impl Error {
    pub fn kube(
        action: &'static str,
        name: impl Into<String>,
    ) -> impl FnOnce(kube::Error) -> Error {
        let name = name.into();
        move |source| Error::Kube {
            action,
            name,
            source,
        }
    }

    pub fn cloud(name: impl Into<String>) -> impl FnOnce(stowage_cloud::Error) -> Error {
        let name = name.into();
        move |source| Error::Cloud { name, source }
    }
}

/// True for a Kubernetes `404 Not Found`.
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

/// True for a Kubernetes `409 Conflict` or `AlreadyExists`.
pub fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409)
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
