//! The controllers' error type: what failed, with the Kubernetes or cloud error as its source.
//! Messages never repeat their source (it is the `#[source]`), so logs render the whole chain
//! with [`Chain`].

use std::fmt;

/// A reconcile or loop step that failed; the caller retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {action} {name}")]
    Kube {
        action: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("cloud provider failed for {name}")]
    Cloud {
        name: String,
        #[source]
        source: stowage_cloud::Error,
    },
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

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Displays an error followed by each of its sources, `outer: cause: root cause` (what `{:#}`
/// shows for `anyhow`): `tracing::warn!(err = %Chain(&err), ...)`.
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_renders_its_source_once() {
        let err =
            Error::cloud("nodeclaim default-abc")(stowage_cloud::Error::NotFound("i-0123".into()));
        assert_eq!(
            err.to_string(),
            "cloud provider failed for nodeclaim default-abc"
        );
        let chain = Chain(&err).to_string();
        assert_eq!(
            chain,
            "cloud provider failed for nodeclaim default-abc: instance not found: i-0123"
        );
        assert_eq!(chain.matches("instance not found").count(), 1, "{chain}");
    }
}
