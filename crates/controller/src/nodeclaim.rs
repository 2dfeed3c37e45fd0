//! Reading a NodeClaim the way the controllers count it: the resources it stands for (its
//! instance's capacity once launched, its requests before) and the capacity type it resolved to.
//! Shared by the snapshot (in-flight claims as nodes) and NodePool status (usage).

use stowage_api::NodeClaim;
use stowage_api::conditions::LAUNCHED;
use stowage_api::labels;
use stowage_api::quantity::parse_resource;
use stowage_cloud::CapacityType;
use stowage_solver::Resources;

/// A claim's resources: its instance's capacity once launched, its requests before.
pub fn claim_resources(claim: &NodeClaim) -> Resources {
    let launched = claim.is_true(LAUNCHED);
    let src = if launched {
        claim
            .status
            .as_ref()
            .map(|s| &s.capacity)
            .filter(|c| !c.is_empty())
    } else {
        None
    }
    .unwrap_or(&claim.spec.resources.requests);
    let mut r = Resources::new();
    for (k, q) in src {
        if let Ok(v) = parse_resource(k, &q.0) {
            r.set(k.clone(), v);
        }
    }
    r
}

/// The capacity type a claim resolved to (or was limited to).
pub fn claim_capacity_type(claim: &NodeClaim) -> Option<CapacityType> {
    claim
        .label(labels::CAPACITY_TYPE)
        .and_then(|v| v.parse().ok())
}
