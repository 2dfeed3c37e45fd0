//! Status conditions shared by NodePool, NodeClaim and EC2NodeClass, and the condition types
//! Stowage sets.
//!
//! Key decision: callers pass the current time in (`now`); nothing here reads the clock, so the
//! controllers stay testable in virtual time. `lastTransitionTime` changes only when the status
//! of a condition changes.

use std::fmt;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

// --- Condition types -------------------------------------------------------------------------
/// NodeClaim: the cloud instance was created.
pub const LAUNCHED: &str = "Launched";
/// NodeClaim: a Node with the claim's provider id joined the cluster.
pub const REGISTERED: &str = "Registered";
/// NodeClaim: the Node is Ready, startup taints are gone and requested extended resources exist.
pub const INITIALIZED: &str = "Initialized";
/// NodeClaim: the claim no longer matches what would be launched today (reason says why).
pub const DRIFTED: &str = "Drifted";
/// NodeClaim: no pod came or went for `consolidateAfter`; consolidation may consider it.
pub const CONSOLIDATABLE: &str = "Consolidatable";
/// NodeClaim: the claim is being disrupted (reason says which method).
pub const DISRUPTING: &str = "Disrupting";
/// Every kind: the object is usable (a NodeClaim: launched, registered and initialized).
pub const READY: &str = "Ready";
/// NodePool / EC2NodeClass: the spec passed the controller's validation.
pub const VALIDATION_SUCCEEDED: &str = "ValidationSucceeded";
/// NodePool: the referenced node class exists and is Ready.
pub const NODE_CLASS_READY: &str = "NodeClassReady";
/// NodePool with a `capacityMix.scope`: which pools the scope counts (`False` when the selector
/// picks no pool but this one). A warning only: it does not make the pool not Ready.
pub const CAPACITY_MIX_SCOPE: &str = "CapacityMixScope";

/// `True`, `False` or `Unknown`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum ConditionStatus {
    True,
    False,
    #[default]
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(b: bool) -> Self {
        if b {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

impl fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One status condition (the shape of `metav1.Condition`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// A CamelCase machine-readable reason for the last transition.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// A human-readable message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// The `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl Condition {
    /// A condition without a transition time (set on insertion by [`set_condition`]).
    pub fn new(type_: &str, status: ConditionStatus, reason: &str, message: &str) -> Self {
        Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.to_string(),
            last_transition_time: None,
            observed_generation: None,
        }
    }

    pub fn with_observed_generation(mut self, generation: Option<i64>) -> Self {
        self.observed_generation = generation;
        self
    }

    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }

    pub fn is_false(&self) -> bool {
        self.status == ConditionStatus::False
    }

    /// When the status last changed, if recorded.
    pub fn last_transition(&self) -> Option<Timestamp> {
        self.last_transition_time.as_ref().map(|t| t.0)
    }
}

/// The condition of `type_` in `conditions`.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Inserts or updates `condition` by type. `lastTransitionTime` becomes `now` when the condition
/// is new or its status changed; otherwise the old transition time is kept. Returns whether
/// anything changed (status, reason, message or observed generation). Conditions stay sorted by
/// type so the serialized status is deterministic.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    mut condition: Condition,
    now: Timestamp,
) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => {
            if existing.status == condition.status && existing.last_transition_time.is_some() {
                condition.last_transition_time = existing.last_transition_time.clone();
            } else {
                condition.last_transition_time = Some(Time(now));
            }
            if *existing == condition {
                return false;
            }
            *existing = condition;
            true
        }
        None => {
            condition.last_transition_time = Some(Time(now));
            let at = conditions.partition_point(|c| c.type_ < condition.type_);
            conditions.insert(at, condition);
            true
        }
    }
}

/// Removes the condition of `type_`; returns whether one was there.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    before != conditions.len()
}

/// Inherent condition helpers for a status struct with a `conditions: Vec<Condition>` field.
macro_rules! impl_condition_helpers {
    ($status:ty) => {
        impl $status {
            /// The condition of `type_`, if set.
            pub fn condition(&self, type_: &str) -> Option<&$crate::conditions::Condition> {
                $crate::conditions::find_condition(&self.conditions, type_)
            }

            /// Whether the condition of `type_` is set and `True`.
            pub fn is_true(&self, type_: &str) -> bool {
                self.condition(type_).is_some_and(|c| c.is_true())
            }

            /// Inserts or updates a condition (see [`crate::conditions::set_condition`]).
            pub fn set_condition(
                &mut self,
                condition: $crate::conditions::Condition,
                now: jiff::Timestamp,
            ) -> bool {
                $crate::conditions::set_condition(&mut self.conditions, condition, now)
            }

            /// Sets `type_` to `True` with `reason` (message cleared).
            pub fn set_true(&mut self, type_: &str, reason: &str, now: jiff::Timestamp) -> bool {
                self.set_condition(
                    $crate::conditions::Condition::new(
                        type_,
                        $crate::conditions::ConditionStatus::True,
                        reason,
                        "",
                    ),
                    now,
                )
            }

            /// Sets `type_` to `False` with `reason` and `message`.
            pub fn set_false(
                &mut self,
                type_: &str,
                reason: &str,
                message: &str,
                now: jiff::Timestamp,
            ) -> bool {
                self.set_condition(
                    $crate::conditions::Condition::new(
                        type_,
                        $crate::conditions::ConditionStatus::False,
                        reason,
                        message,
                    ),
                    now,
                )
            }

            /// Sets `type_` to `Unknown` with `reason` and `message`.
            pub fn set_unknown(
                &mut self,
                type_: &str,
                reason: &str,
                message: &str,
                now: jiff::Timestamp,
            ) -> bool {
                self.set_condition(
                    $crate::conditions::Condition::new(
                        type_,
                        $crate::conditions::ConditionStatus::Unknown,
                        reason,
                        message,
                    ),
                    now,
                )
            }

            /// Removes the condition of `type_`; returns whether one was there.
            pub fn clear_condition(&mut self, type_: &str) -> bool {
                $crate::conditions::remove_condition(&mut self.conditions, type_)
            }
        }
    };
}
pub(crate) use impl_condition_helpers;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn transition_time_changes_only_with_status() {
        let mut conditions = Vec::new();
        assert!(set_condition(
            &mut conditions,
            Condition::new(READY, ConditionStatus::False, "Launching", ""),
            at(10)
        ));
        assert_eq!(conditions[0].last_transition(), Some(at(10)));
        // Same status, new reason: updated, transition time kept.
        assert!(set_condition(
            &mut conditions,
            Condition::new(READY, ConditionStatus::False, "Registering", ""),
            at(20)
        ));
        assert_eq!(conditions[0].reason, "Registering");
        assert_eq!(conditions[0].last_transition(), Some(at(10)));
        // Identical: no change.
        assert!(!set_condition(
            &mut conditions,
            Condition::new(READY, ConditionStatus::False, "Registering", ""),
            at(30)
        ));
        // Status flips: transition time moves.
        assert!(set_condition(
            &mut conditions,
            Condition::new(READY, ConditionStatus::True, "Ready", ""),
            at(40)
        ));
        assert_eq!(conditions[0].last_transition(), Some(at(40)));
        assert!(conditions[0].is_true());
    }

    #[test]
    fn conditions_stay_sorted_by_type_and_can_be_removed() {
        let mut conditions = Vec::new();
        for t in [READY, LAUNCHED, INITIALIZED, DRIFTED] {
            set_condition(
                &mut conditions,
                Condition::new(t, ConditionStatus::True, "X", ""),
                at(1),
            );
        }
        let types: Vec<_> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [DRIFTED, INITIALIZED, LAUNCHED, READY]);
        assert!(remove_condition(&mut conditions, LAUNCHED));
        assert!(!remove_condition(&mut conditions, LAUNCHED));
        assert!(find_condition(&conditions, LAUNCHED).is_none());
        assert!(find_condition(&conditions, READY).is_some());
    }

    #[test]
    fn serializes_like_metav1_condition() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            Condition::new(READY, ConditionStatus::True, "Ready", "")
                .with_observed_generation(Some(3)),
            at(0),
        );
        let json = serde_json::to_value(&conditions[0]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "Ready", "status": "True", "reason": "Ready",
                "lastTransitionTime": "1970-01-01T00:00:00Z", "observedGeneration": 3})
        );
    }
}
