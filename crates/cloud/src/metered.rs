//! `Metered<P>`: a [`CloudProvider`] decorator that counts calls, errors (by [`Error::kind`]) and
//! durations per [`Operation`], for the controller's `/metrics`.
//!
//! Key decision: the decorator keeps its own plain counters and exposes a [`Metered::snapshot`]
//! (plus an optional per-call observer) instead of registering Prometheus metrics itself, so this
//! crate stays free of the metrics library and the exporter decides names and labels.
//! Durations are read from tokio's clock, so under a paused runtime they are virtual time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use stowage_solver::InstanceType;

use crate::{CloudProvider, DriftReason, Error, NodeClassKind, NodeClassStatus, Operation, Result};

/// Upper bounds (seconds) of the duration histogram buckets; a final `+Inf` bucket is implied.
pub const DURATION_BUCKETS_SECONDS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The totals of one operation since the decorator was created.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OperationStats {
    pub operation: Option<Operation>,
    pub calls: u64,
    /// Failed calls by error kind (`not_found`, `insufficient_capacity`, ...).
    pub errors: BTreeMap<&'static str, u64>,
    /// Sum of call durations.
    pub total_duration: Duration,
    /// The longest call.
    pub max_duration: Duration,
    /// Calls per bucket of [`DURATION_BUCKETS_SECONDS`] (not cumulative); the last entry counts
    /// calls above the largest bound.
    pub buckets: Vec<u64>,
}

impl OperationStats {
    fn new(operation: Operation) -> Self {
        Self {
            operation: Some(operation),
            buckets: vec![0; DURATION_BUCKETS_SECONDS.len() + 1],
            ..Self::default()
        }
    }

    /// All failed calls.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn record(&mut self, elapsed: Duration, error: Option<&'static str>) {
        self.calls += 1;
        if let Some(kind) = error {
            *self.errors.entry(kind).or_default() += 1;
        }
        self.total_duration += elapsed;
        self.max_duration = self.max_duration.max(elapsed);
        let secs = elapsed.as_secs_f64();
        let bucket = DURATION_BUCKETS_SECONDS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(DURATION_BUCKETS_SECONDS.len());
        if let Some(count) = self.buckets.get_mut(bucket) {
            *count += 1;
        }
    }
}

/// One finished call, as passed to an observer.
#[derive(Clone, Debug, PartialEq)]
pub struct CallRecord {
    pub provider: &'static str,
    pub operation: Operation,
    pub duration: Duration,
    /// `None` on success, else the error kind.
    pub error: Option<&'static str>,
}

/// A callback run after every call (e.g. to feed a Prometheus histogram).
pub type Observer = Arc<dyn Fn(&CallRecord) + Send + Sync>;

/// Wraps a provider and meters every call.
pub struct Metered<P> {
    inner: P,
    stats: Mutex<BTreeMap<Operation, OperationStats>>,
    observer: Option<Observer>,
}

impl<P: std::fmt::Debug> std::fmt::Debug for Metered<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metered")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<P: CloudProvider> Metered<P> {
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            stats: Mutex::new(BTreeMap::new()),
            observer: None,
        }
    }

    /// Also calls `observer` after every call.
    pub fn with_observer(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The wrapped provider.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// Totals per operation, one entry for every operation (zeros included), in [`Operation::ALL`]
    /// order.
    pub fn snapshot(&self) -> Vec<OperationStats> {
        let stats = match self.stats.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        Operation::ALL
            .iter()
            .map(|op| {
                stats
                    .get(op)
                    .cloned()
                    .unwrap_or_else(|| OperationStats::new(*op))
            })
            .collect()
    }

    /// The totals of one operation.
    pub fn stats(&self, operation: Operation) -> OperationStats {
        self.snapshot()
            .into_iter()
            .find(|s| s.operation == Some(operation))
            .unwrap_or_else(|| OperationStats::new(operation))
    }

    async fn metered<T>(
        &self,
        operation: Operation,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let start = tokio::time::Instant::now();
        let result = call.await;
        let duration = start.elapsed();
        let error = result.as_ref().err().map(Error::kind);
        {
            let mut stats = match self.stats.lock() {
                Ok(s) => s,
                Err(poisoned) => poisoned.into_inner(),
            };
            stats
                .entry(operation)
                .or_insert_with(|| OperationStats::new(operation))
                .record(duration, error);
        }
        if let Some(observer) = &self.observer {
            observer(&CallRecord {
                provider: self.inner.name(),
                operation,
                duration,
                error,
            });
        }
        result
    }
}

#[async_trait]
impl<P: CloudProvider> CloudProvider for Metered<P> {
    async fn create(&self, claim: &stowage_api::NodeClaim) -> Result<stowage_api::NodeClaim> {
        self.metered(Operation::Create, self.inner.create(claim))
            .await
    }

    async fn delete(&self, claim: &stowage_api::NodeClaim) -> Result<()> {
        self.metered(Operation::Delete, self.inner.delete(claim))
            .await
    }

    async fn get(&self, provider_id: &str) -> Result<stowage_api::NodeClaim> {
        self.metered(Operation::Get, self.inner.get(provider_id))
            .await
    }

    async fn list(&self) -> Result<Vec<stowage_api::NodeClaim>> {
        self.metered(Operation::List, self.inner.list()).await
    }

    async fn instance_types(&self, pool: &stowage_api::NodePool) -> Result<Vec<InstanceType>> {
        self.metered(Operation::InstanceTypes, self.inner.instance_types(pool))
            .await
    }

    async fn is_drifted(&self, claim: &stowage_api::NodeClaim) -> Result<Option<DriftReason>> {
        self.metered(Operation::IsDrifted, self.inner.is_drifted(claim))
            .await
    }

    fn node_class_kind(&self) -> Option<NodeClassKind> {
        self.inner.node_class_kind()
    }

    async fn reconcile_node_class(&self, class: &serde_json::Value) -> Result<NodeClassStatus> {
        self.metered(
            Operation::ReconcileNodeClass,
            self.inner.reconcile_node_class(class),
        )
        .await
    }

    fn retain_node_classes(&self, names: &std::collections::BTreeSet<String>) {
        self.inner.retain_node_classes(names)
    }

    fn mark_unavailable(&self, offering: &crate::OfferingKey, ttl: Duration) {
        self.inner.mark_unavailable(offering, ttl)
    }

    fn set_interruption_costs(&self, costs: Vec<(crate::OfferingKey, f64)>) {
        self.inner.set_interruption_costs(costs)
    }

    fn node_class_stamp(&self, name: &str) -> Option<stowage_api::HashStamp> {
        self.inner.node_class_stamp(name)
    }

    fn name(&self) -> &'static str {
        self.inner.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A provider whose calls take a fixed (virtual) time and fail as told.
    struct Scripted {
        delay: Duration,
    }

    #[async_trait]
    impl CloudProvider for Scripted {
        async fn create(&self, claim: &stowage_api::NodeClaim) -> Result<stowage_api::NodeClaim> {
            tokio::time::sleep(self.delay).await;
            Ok(claim.clone())
        }
        async fn delete(&self, _claim: &stowage_api::NodeClaim) -> Result<()> {
            Err(Error::NotFound("i-1".into()))
        }
        async fn get(&self, provider_id: &str) -> Result<stowage_api::NodeClaim> {
            Err(Error::NotFound(provider_id.into()))
        }
        async fn list(&self) -> Result<Vec<stowage_api::NodeClaim>> {
            Err(Error::Throttled("slow down".into()))
        }
        async fn instance_types(&self, _pool: &stowage_api::NodePool) -> Result<Vec<InstanceType>> {
            Ok(Vec::new())
        }
        async fn is_drifted(&self, _claim: &stowage_api::NodeClaim) -> Result<Option<DriftReason>> {
            Ok(None)
        }
        fn name(&self) -> &'static str {
            "scripted"
        }
    }

    #[tokio::test(start_paused = true)]
    async fn counts_calls_errors_and_virtual_durations() {
        let seen = Arc::new(AtomicUsize::new(0));
        let seen2 = Arc::clone(&seen);
        let metered = Metered::new(Scripted {
            delay: Duration::from_millis(300),
        })
        .with_observer(Arc::new(move |r: &CallRecord| {
            assert_eq!(r.provider, "scripted");
            seen2.fetch_add(1, Ordering::SeqCst);
        }));
        let claim = stowage_api::NodeClaim::new("a", Default::default());
        metered.create(&claim).await.unwrap();
        metered.create(&claim).await.unwrap();
        assert!(matches!(
            metered.delete(&claim).await,
            Err(Error::NotFound(_))
        ));
        assert!(metered.get("x").await.is_err());
        assert!(metered.list().await.is_err());

        let create = metered.stats(Operation::Create);
        assert_eq!(create.calls, 2);
        assert_eq!(create.error_count(), 0);
        assert_eq!(create.total_duration, Duration::from_millis(600));
        assert_eq!(create.max_duration, Duration::from_millis(300));
        // 0.3 s falls in the (0.25, 0.5] bucket.
        assert_eq!(create.buckets[6], 2);
        assert_eq!(create.buckets.iter().sum::<u64>(), 2);

        assert_eq!(
            metered.stats(Operation::Delete).errors.get("not_found"),
            Some(&1)
        );
        assert_eq!(
            metered.stats(Operation::Get).errors.get("not_found"),
            Some(&1)
        );
        assert_eq!(
            metered.stats(Operation::List).errors.get("throttled"),
            Some(&1)
        );
        assert_eq!(metered.stats(Operation::InstanceTypes).calls, 0);

        let snapshot = metered.snapshot();
        assert_eq!(snapshot.len(), Operation::ALL.len());
        assert_eq!(snapshot.iter().map(|s| s.calls).sum::<u64>(), 5);
        assert_eq!(seen.load(Ordering::SeqCst), 5);
        assert_eq!(metered.name(), "scripted");
    }

    #[tokio::test]
    async fn default_node_class_status_is_ready() {
        let metered = Metered::new(Arc::new(Scripted {
            delay: Duration::ZERO,
        }));
        let class = serde_json::json!({"metadata": {"name": "default"}});
        let status = metered.reconcile_node_class(&class).await.unwrap();
        assert!(status.ready);
        assert_eq!(metered.stats(Operation::ReconcileNodeClass).calls, 1);
    }
}
