//! What a PodDisruptionBudget allows, counted as Kubernetes' disruption controller counts it,
//! for the eviction subresource and for the referee (one rule for both).
//!
//! - `minAvailable` as a number: that many healthy pods are desired; the expected count is the
//!   number of pods the selector matches.
//! - `maxUnavailable`, or `minAvailable` as a percentage: the expected count is the sum of the
//!   `replicas` of the pods' controllers (a ReplicaSet owned by a Deployment counts as the
//!   Deployment), not the pods present: pods deleted and not yet recreated still count. A pod
//!   whose controller has no scale (a Job) or cannot be found makes the budget uncountable,
//!   and an uncountable budget allows no disruption (the disruption controller's fail-safe).
//!   Pods without a controller are left out.
//! - Disruptions allowed: healthy pods minus desired ones, and none while nothing is expected.

use serde_json::Value;

/// A PDB's numbers: the `status` fields the eviction subresource reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// `status.desiredHealthy`.
    pub desired: i64,
    /// `status.disruptionsAllowed`.
    pub allowed: i64,
}

/// Why a PDB's expected count could not be computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CountError {
    #[error("the pods' controller {0} is gone or has no scale")]
    NoScalableController(String),
}

/// The budget of a PDB with `spec` (`minAvailable`/`maxUnavailable`), `healthy` healthy
/// pods of `pods` it selects, and `scale()` the sum of their controllers' replicas (only
/// called where the rule needs it).
pub fn budget(
    spec: Option<&Value>,
    healthy: i64,
    pods: i64,
    scale: impl FnOnce() -> Result<i64, CountError>,
) -> Result<Budget, CountError> {
    let min = spec.and_then(|s| s.get("minAvailable"));
    let max = spec.and_then(|s| s.get("maxUnavailable"));
    let (expected, desired) = if let Some(max) = max {
        let expected = scale()?;
        let unavailable = scaled(max, expected).unwrap_or(0);
        (expected, (expected - unavailable).max(0))
    } else if let Some(min) = min {
        if min.is_number() {
            (pods, min.as_i64().unwrap_or(0))
        } else {
            let expected = scale()?;
            (expected, scaled(min, expected).unwrap_or(0))
        }
    } else {
        (pods, 0)
    };
    let allowed = if expected <= 0 {
        0
    } else {
        (healthy - desired).max(0)
    };
    Ok(Budget { desired, allowed })
}

/// Whether a pod may be evicted under `budget`, with `healthy_pods` healthy pods counted:
/// a healthy pod needs an allowed disruption; one that is not healthy costs the budget
/// nothing while the budget is met (the `IfHealthyBudget` policy, Kubernetes' default).
pub fn may_evict(budget: &Budget, pod_healthy: bool, healthy_pods: i64) -> bool {
    budget.allowed > 0 || (!pod_healthy && budget.desired > 0 && healthy_pods >= budget.desired)
}

/// An int-or-percent value of `total` (percentages round up, as for PDBs).
fn scaled(v: &Value, total: i64) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => match s.strip_suffix('%') {
            Some(p) => Some((p.trim().parse::<i64>().ok()? * total + 99) / 100),
            None => s.parse().ok(),
        },
        _ => None,
    }
}

/// The controller of an object: (kind, name, uid) of its `controller: true` owner reference.
pub fn controller_of(obj: &Value) -> Option<(String, String, String)> {
    obj.get("metadata")?
        .get("ownerReferences")?
        .as_array()?
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|o| {
            let s = |k: &str| {
                o.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            (s("kind"), s("name"), s("uid"))
        })
}

/// The kinds whose `spec.replicas` a PDB's expected count takes.
pub fn is_scalable(kind: &str) -> bool {
    matches!(
        kind,
        "ReplicaSet" | "Deployment" | "StatefulSet" | "ReplicationController"
    )
}

/// `spec.replicas` of a scalable controller (1 when unset, as the API defaults it).
pub fn replicas_of(obj: &Value) -> i64 {
    obj.get("spec")
        .and_then(|s| s.get("replicas"))
        .and_then(Value::as_i64)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b(spec: Value, healthy: i64, pods: i64, scale: Option<i64>) -> Option<Budget> {
        budget(Some(&spec), healthy, pods, || {
            scale.ok_or_else(|| CountError::NoScalableController("p".into()))
        })
        .ok()
    }

    #[test]
    fn max_unavailable_counts_the_controllers_replicas_not_the_pods_present() {
        // 10 replicas, 8 pods left (2 deleted, not yet recreated), all healthy: 10 % of 10 is
        // 1 unavailable, so 9 desired and none allowed; counting the 8 present pods would
        // have allowed 8 - 7 = 1.
        let got = b(json!({ "maxUnavailable": "10%" }), 8, 8, Some(10));
        assert_eq!(
            got,
            Some(Budget {
                desired: 9,
                allowed: 0
            })
        );
        let full = b(json!({ "maxUnavailable": 1 }), 10, 10, Some(10));
        assert_eq!(
            full,
            Some(Budget {
                desired: 9,
                allowed: 1
            })
        );
    }

    #[test]
    fn min_available_as_a_number_counts_pods_and_as_a_percentage_replicas() {
        assert_eq!(
            b(json!({ "minAvailable": 2 }), 3, 3, None),
            Some(Budget {
                desired: 2,
                allowed: 1
            })
        );
        assert_eq!(
            b(json!({ "minAvailable": "80%" }), 4, 4, Some(5)),
            Some(Budget {
                desired: 4,
                allowed: 0
            })
        );
    }

    #[test]
    fn an_uncountable_budget_and_an_empty_one_allow_nothing() {
        assert_eq!(b(json!({ "maxUnavailable": 1 }), 5, 5, None), None);
        assert_eq!(
            b(json!({ "maxUnavailable": 1 }), 0, 0, Some(0)),
            Some(Budget {
                desired: 0,
                allowed: 0
            })
        );
    }

    #[test]
    fn an_unhealthy_pod_may_go_while_the_budget_is_met() {
        let met = Budget {
            desired: 2,
            allowed: 0,
        };
        assert!(may_evict(&met, false, 2));
        assert!(!may_evict(&met, true, 2));
        assert!(!may_evict(&met, false, 1));
    }
}
