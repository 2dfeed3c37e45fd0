//! Controller settings: batch windows, lifecycle timeouts, garbage-collection grace, the cluster
//! name. Defaults follow the behaviour Karpenter users know (batch idle 1 s / max 10 s, launch
//! timeout 5 min, registration timeout 15 min).

use std::time::Duration;

use stowage_api::validation::MAX_REQUIREMENT_VALUES;

/// Why a settings value was refused.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid setting {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// Everything the controllers read that an operator may change.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The cluster this controller manages; instances are tagged with it.
    pub cluster_name: String,
    /// A batch closes when no new pending pod arrives for this long.
    pub batch_idle: Duration,
    /// A batch closes at the latest this long after it opened.
    pub batch_max: Duration,
    /// A NodeClaim not launched within this long is deleted.
    pub launch_timeout: Duration,
    /// A launched NodeClaim whose Node has not registered within this long is deleted.
    pub registration_timeout: Duration,
    /// How long pods stay nominated to in-flight capacity before they may be bought for again.
    pub nomination_window: Duration,
    /// A pod nominated to a NodeClaim that has been `Initialized` this long and is still
    /// unschedulable (its Node had less room than planned) is provisioned for again. Leaves the
    /// scheduler time to try the new Node.
    pub initialized_grace: Duration,
    /// An instance of this cluster without a NodeClaim for this long is terminated.
    pub gc_grace: Duration,
    /// How often garbage collection and NodePool status run.
    pub gc_interval: Duration,
    /// How long to wait before retrying an eviction refused by a PodDisruptionBudget.
    pub eviction_retry: Duration,
    /// The most instance types the solver offers on one NodeClaim (its instance-type options,
    /// cheapest first). The claim's options are authoritative: the cloud provider launches
    /// exactly them. At most [`MAX_REQUIREMENT_VALUES`], the CRD's limit on one requirement.
    pub max_instance_types: usize,
    /// The interruption queue name (the binary hands the provider's source for it to the
    /// [`crate::Context`]; `None`: interruption handling off).
    pub interruption_queue: Option<String>,
    /// The Lease used for leader election.
    pub lease_name: String,
    /// The namespace of the Lease and of Events on cluster-scoped objects.
    pub namespace: String,
    /// This replica's identity in leader election.
    pub identity: String,
    /// Events about the same object and reason are not re-sent within this window.
    pub event_dedupe: Duration,
    /// Act on a rebalance recommendation (replace the node as for a scheduled change); off:
    /// only count it and say so in an Event.
    pub act_on_rebalance_recommendation: bool,
    /// How long the offering of an interrupted spot instance is kept out of the catalogue.
    pub interrupted_offering_ttl: Duration,
    /// Half-life of the per-offering spot interruption rate (interruptions per node-hour).
    pub spot_interruption_half_life: Duration,
    /// Node-hours of its own price one interruption is reckoned to cost: a spot offering is
    /// ranked at `price * (1 + weight * rate)`. 0: pure price.
    pub spot_interruption_cost_weight: f64,
    /// How often the disruption loop looks at the cluster (it decides only when something
    /// changed since it last found nothing to do, or 5 minutes passed).
    pub disruption_interval: Duration,
    /// How long a consolidation decision waits before it is checked again on fresh state and
    /// carried out.
    pub disruption_validation_delay: Duration,
    /// A disruption whose replacement is not initialized within this long is undone.
    pub disruption_replacement_timeout: Duration,
    /// How often every initialized NodeClaim is checked for drift (also at once when a NodePool
    /// or node class changes).
    pub drift_interval: Duration,
    /// Threads a disruption round's consolidation probes are solved on (`1`: one after another,
    /// on the loop's thread; `0`: the cores this process may use, at most 4; see
    /// [`Settings::probe_threads`]). The decision is the same whatever the count.
    pub probe_threads: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            cluster_name: "stowage".to_string(),
            batch_idle: Duration::from_secs(1),
            batch_max: Duration::from_secs(10),
            launch_timeout: Duration::from_secs(5 * 60),
            registration_timeout: Duration::from_secs(15 * 60),
            nomination_window: Duration::from_secs(20),
            initialized_grace: Duration::from_secs(30),
            gc_grace: Duration::from_secs(2 * 60),
            gc_interval: Duration::from_secs(30),
            eviction_retry: Duration::from_secs(5),
            max_instance_types: 60,
            interruption_queue: None,
            lease_name: "stowage-leader".to_string(),
            namespace: "kube-system".to_string(),
            identity: "stowage".to_string(),
            event_dedupe: Duration::from_secs(5 * 60),
            act_on_rebalance_recommendation: false,
            interrupted_offering_ttl: Duration::from_secs(15 * 60),
            spot_interruption_half_life: Duration::from_secs(6 * 3600),
            spot_interruption_cost_weight: 1.0,
            disruption_interval: Duration::from_secs(10),
            disruption_validation_delay: Duration::from_secs(15),
            disruption_replacement_timeout: Duration::from_secs(20 * 60),
            drift_interval: Duration::from_secs(5 * 60),
            probe_threads: 0,
        }
    }
}

impl Settings {
    /// The threads a round's consolidation probes run on: [`Settings::probe_threads`], or when
    /// it is 0 the cores this process may use, at most 4.
    pub fn probe_threads(&self) -> usize {
        match self.probe_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4)),
            n => n,
        }
    }

    /// Checks values that would make the controllers misbehave.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |field, reason: &str| {
            Err(SettingsError::Invalid {
                field,
                reason: reason.to_string(),
            })
        };
        if self.cluster_name.trim().is_empty() {
            return invalid("cluster-name", "must not be empty");
        }
        if self.batch_idle.is_zero() {
            return invalid("batch-idle-duration", "must be greater than zero");
        }
        if self.batch_max < self.batch_idle {
            return invalid(
                "batch-max-duration",
                "must be at least the batch idle duration",
            );
        }
        if self
            .interruption_queue
            .as_deref()
            .is_some_and(|q| q.trim().is_empty())
        {
            return invalid("interruption-queue", "must not be blank (unset it instead)");
        }
        if self.spot_interruption_half_life.is_zero() {
            return invalid("spot-interruption-half-life", "must be greater than zero");
        }
        if !(0.0..=100.0).contains(&self.spot_interruption_cost_weight) {
            return invalid("spot-interruption-cost-weight", "must be in [0, 100]");
        }
        if !(1..=MAX_REQUIREMENT_VALUES).contains(&self.max_instance_types) {
            return invalid(
                "max-instance-types",
                &format!(
                    "must be in 1..={MAX_REQUIREMENT_VALUES} (a NodeClaim requirement holds at most {MAX_REQUIREMENT_VALUES} values)"
                ),
            );
        }
        if self.disruption_interval.is_zero() {
            return invalid("disruption-interval", "must be greater than zero");
        }
        if self.identity.is_empty() {
            return invalid("identity", "must not be empty");
        }
        if self.drift_interval < Duration::from_secs(1) {
            return invalid("drift-interval", "must be at least 1s");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_documented_windows() {
        let s = Settings::default();
        s.validate().unwrap();
        assert_eq!(s.batch_idle, Duration::from_secs(1));
        assert_eq!(s.batch_max, Duration::from_secs(10));
        assert_eq!(s.launch_timeout, Duration::from_secs(300));
        assert_eq!(s.registration_timeout, Duration::from_secs(900));
    }

    #[test]
    fn bad_values_name_the_field() {
        let s = Settings {
            batch_max: Duration::from_millis(10),
            ..Settings::default()
        };
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("batch-max-duration"), "{err}");
        let s = Settings {
            cluster_name: " ".into(),
            ..Settings::default()
        };
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .contains("cluster-name")
        );
    }

    /// Issue 13: a queue used to be refused as "not supported yet" (accepted and read by
    /// nothing before that); it is read now, so it is accepted, and a blank one is refused.
    #[test]
    fn an_interruption_queue_is_accepted_and_the_spot_choice_settings_are_bounded() {
        let s = Settings {
            interruption_queue: Some("stowage-interruptions".into()),
            ..Settings::default()
        };
        s.validate().unwrap();
        let s = Settings {
            interruption_queue: Some(" ".into()),
            ..Settings::default()
        };
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("interruption-queue"), "{err}");
        let d = Settings::default();
        assert_eq!(d.spot_interruption_half_life, Duration::from_secs(6 * 3600));
        assert!(!d.act_on_rebalance_recommendation);
        for (weight, ok) in [(0.0, true), (1.0, true), (-1.0, false), (f64::NAN, false)] {
            let s = Settings {
                spot_interruption_cost_weight: weight,
                ..Settings::default()
            };
            assert_eq!(s.validate().is_ok(), ok, "{weight}");
        }
    }

    #[test]
    fn max_instance_types_fits_the_nodeclaim_crd() {
        assert_eq!(Settings::default().max_instance_types, 60);
        let crds = stowage_api::crds::all().unwrap();
        let nodeclaim = crds
            .iter()
            .find(|c| c.spec.names.kind == "NodeClaim")
            .unwrap();
        let crd = serde_json::to_string(nodeclaim).unwrap();
        assert!(
            crd.contains(&format!("\"maxItems\":{MAX_REQUIREMENT_VALUES}")),
            "the CRD's limit is the constant"
        );
        for (n, ok) in [
            (0, false),
            (1, true),
            (MAX_REQUIREMENT_VALUES, true),
            (600, false),
        ] {
            let s = Settings {
                max_instance_types: n,
                ..Settings::default()
            };
            assert_eq!(s.validate().is_ok(), ok, "{n}");
            if !ok {
                let err = s.validate().unwrap_err().to_string();
                assert!(err.contains("max-instance-types"), "{err}");
            }
        }
    }
}

#[cfg(test)]
mod disruption_tests {
    use super::*;

    #[test]
    fn disruption_defaults_and_a_zero_interval_is_refused() {
        let s = Settings::default();
        assert_eq!(s.disruption_interval, Duration::from_secs(10));
        assert_eq!(s.disruption_validation_delay, Duration::from_secs(15));
        assert_eq!(s.disruption_replacement_timeout, Duration::from_secs(1200));
        let s = Settings {
            disruption_interval: Duration::ZERO,
            ..Settings::default()
        };
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("disruption-interval"), "{err}");
    }
}
