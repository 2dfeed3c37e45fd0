//! Leader election on a `coordination.k8s.io/v1` Lease: one replica holds the lease and runs the
//! singletons (provisioning, termination, garbage collection); the others wait and take over when
//! the holder stops renewing.
//!
//! Protocol: every `retry_period` a replica reads the Lease. The holder renews `renewTime`; a
//! non-holder takes the Lease only when `renewTime + leaseDurationSeconds` has passed. Every write
//! is an update carrying the read `resourceVersion`, so two replicas racing for an expired Lease
//! cannot both win (the loser gets `409 Conflict`). A holder that cannot renew within
//! `renew_deadline` steps down before anyone else can take over.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use stowage_clock::SharedClock;
use tokio::sync::watch;

use crate::error::Chain;

/// Lease timing.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// The usual timings: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(
        name: impl Into<String>,
        namespace: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Why one election round failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("failed to read or write lease {name}")]
    Lease {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// Runs the election loop; `is_leader()` tells whether this replica currently holds the lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
    clock: SharedClock,
    tx: watch::Sender<bool>,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LeaderElector {
    pub fn new(client: Client, config: LeaseConfig, clock: SharedClock) -> Self {
        let api = Api::namespaced(client, &config.namespace);
        let (tx, _) = watch::channel(false);
        Self {
            api,
            config,
            clock,
            tx,
        }
    }

    /// A receiver that changes whenever leadership is gained or lost.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// Runs forever (until the task is dropped), updating the leadership flag.
    pub async fn run(self) {
        let mut last_renew = tokio::time::Instant::now();
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    last_renew = tokio::time::Instant::now();
                    self.set(true);
                }
                Ok(false) => self.set(false),
                Err(err) => {
                    tracing::warn!(err = %Chain(&err), "leader election round failed");
                    if *self.tx.borrow() && last_renew.elapsed() > self.config.renew_deadline {
                        self.set(false);
                    }
                }
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Gives the lease up (on shutdown) so another replica can take over at once.
    pub async fn release(&self) -> Result<(), LeaderError> {
        let lease = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.err(e))?;
        if let Some(mut lease) = lease {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() == Some(self.config.identity.as_str()) {
                spec.holder_identity = None;
                spec.renew_time = None;
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await
                    .map_err(|e| self.err(e))?;
            }
        }
        self.set(false);
        Ok(())
    }

    fn set(&self, leader: bool) {
        self.tx.send_if_modified(|cur| {
            if *cur != leader {
                tracing::info!(identity = %self.config.identity, leader, "leadership changed");
                *cur = leader;
                true
            } else {
                false
            }
        });
    }

    fn err(&self, source: kube::Error) -> LeaderError {
        LeaderError::Lease {
            name: self.config.name.clone(),
            source,
        }
    }

    /// One round: true when this replica holds the lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, LeaderError> {
        let now = self.clock.now();
        let duration_secs = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let existing = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.err(e))?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(self.err(e)),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.config.identity;
        if !mine && !holder.is_empty() {
            let held_for = spec.lease_duration_seconds.unwrap_or(duration_secs).max(1);
            let expires = spec
                .renew_time
                .as_ref()
                .map(|t| t.0 + jiff::SignedDuration::from_secs(i64::from(held_for)));
            if expires.is_some_and(|exp| exp > now) {
                return Ok(false);
            }
        }
        if !mine {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            spec.holder_identity = Some(self.config.identity.clone());
        }
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(duration_secs);
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }
}
