//! Launch selection: which offerings one NodeClaim asks CreateFleet for.
//!
//! The claim's requirements are authoritative: the solver wrote its instance-type options, zones
//! and capacity type, and the selection launches exactly the offerings they allow. It never
//! widens them and never re-ranks them against the claim's resource requests; it only drops
//! offerings the provider cannot use now (zones without a subnet of the node class, offerings the
//! insufficient-capacity cache marks unavailable, reserved capacity) and orders what is left by
//! price for the fleet request. Matching uses the API's requirement algebra
//! ([`stowage_api::requirements::Requirements`]), the one matcher of the project.

use std::collections::{BTreeMap, BTreeSet};

use stowage_api::requirements::Requirements;
use stowage_api::{CapacityType, NodeClaim, labels};
use stowage_cloud::{Error as CloudError, OfferingKey, Result};
use stowage_solver::{InstanceType, Offering};

/// One instance type to launch and the zones it may launch in.
#[derive(Clone, Debug)]
pub struct LaunchOption<'a> {
    pub instance_type: &'a InstanceType,
    /// Zones with an available offering of the selection's capacity type.
    pub zones: BTreeSet<String>,
    /// The cheapest of those offerings, per hour.
    pub price: f64,
}

/// What one claim launches: one capacity type, its options cheapest first.
#[derive(Clone, Debug)]
pub struct Selection<'a> {
    pub capacity_type: CapacityType,
    pub options: Vec<LaunchOption<'a>>,
}

/// Whether a requirement key describes instance types and their offerings. Other keys (the
/// pool's own labels, `stowage.dev/nodepool`) become node labels and do not select offerings.
fn describes_offerings(key: &str, t: &InstanceType) -> bool {
    (key != labels::NODEPOOL && labels::WELL_KNOWN.contains(&key)) || t.labels.contains_key(key)
}

/// Whether the claim's requirements allow offering `o` of type `t`.
fn allows(reqs: &Requirements, t: &InstanceType, o: &Offering) -> bool {
    reqs.iter()
        .filter(|(key, _)| describes_offerings(key, t))
        .all(|(key, set)| {
            let value = match key {
                labels::INSTANCE_TYPE => Some(t.name.as_str()),
                labels::ZONE => Some(o.zone.as_str()),
                labels::CAPACITY_TYPE => Some(o.capacity_type.as_str()),
                _ => t.labels.get(key).map(String::as_str),
            };
            set.matches(value)
        })
}

/// The offerings of `types` (availability already applied) that `claim` allows in `zones`, for
/// one capacity type: spot when the claim allows spot and some allowed spot offering is
/// available, else on-demand. A claim written by the solver allows one capacity type, so this
/// only decides for hand-written claims.
pub fn select<'a>(
    claim: &NodeClaim,
    types: &'a [InstanceType],
    zones: &BTreeSet<String>,
) -> Result<Selection<'a>> {
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    let reqs = Requirements::from_requirements(&claim.spec.requirements).map_err(|e| {
        CloudError::Launch {
            code: "InvalidRequirements".to_string(),
            message: format!("nodeclaim {name}: {e}"),
        }
    })?;
    let allowed: Vec<(&InstanceType, &Offering)> = types
        .iter()
        .flat_map(|t| t.offerings.iter().map(move |o| (t, o)))
        .filter(|(_, o)| o.capacity_type != CapacityType::Reserved && zones.contains(&o.zone))
        .filter(|(t, o)| allows(&reqs, t, o))
        .collect();
    if allowed.is_empty() {
        return Err(CloudError::Launch {
            code: "NoCompatibleInstanceTypes".to_string(),
            message: format!("no offering of the node class satisfies nodeclaim {name}"),
        });
    }
    let capacity_type = [CapacityType::Spot, CapacityType::OnDemand]
        .into_iter()
        .find(|ct| {
            allowed
                .iter()
                .any(|(_, o)| o.available && o.capacity_type == *ct)
        });
    let Some(capacity_type) = capacity_type else {
        let mut offerings: Vec<OfferingKey> = allowed
            .iter()
            .map(|(t, o)| OfferingKey {
                instance_type: t.name.clone(),
                zone: o.zone.clone(),
                capacity_type: o.capacity_type,
            })
            .collect();
        offerings.sort();
        offerings.dedup();
        return Err(CloudError::InsufficientCapacity { offerings });
    };
    let mut by_type: BTreeMap<&str, LaunchOption<'a>> = BTreeMap::new();
    for (t, o) in allowed
        .iter()
        .filter(|(_, o)| o.available && o.capacity_type == capacity_type)
    {
        let option = by_type.entry(t.name.as_str()).or_insert(LaunchOption {
            instance_type: t,
            zones: BTreeSet::new(),
            price: f64::INFINITY,
        });
        option.price = option.price.min(o.price_per_hour);
        option.zones.insert(o.zone.clone());
    }
    let mut options: Vec<LaunchOption<'a>> = by_type.into_values().collect();
    options.sort_by(|a, b| {
        a.price
            .total_cmp(&b.price)
            .then_with(|| a.instance_type.name.cmp(&b.instance_type.name))
    });
    Ok(Selection {
        capacity_type,
        options,
    })
}

#[cfg(test)]
mod tests {
    use stowage_api::{NodeClaimSpec, Requirement};
    use stowage_solver::Resources;

    use super::*;

    fn offering(zone: &str, ct: CapacityType, price: f64, available: bool) -> Offering {
        Offering {
            zone: zone.to_string(),
            capacity_type: ct,
            price_per_hour: price,
            available,
            reservation_capacity: None,
            reservation_id: None,
            interruption_cost_per_hour: 0.0,
        }
    }

    fn itype(name: &str, cpu_millis: i64, offerings: Vec<Offering>) -> InstanceType {
        let mut capacity = Resources::new();
        capacity.set("cpu", cpu_millis);
        let mut t = InstanceType {
            name: name.to_string(),
            labels: BTreeMap::new(),
            capacity,
            overhead: Default::default(),
            offerings,
        };
        t.labels
            .insert(labels::INSTANCE_TYPE.to_string(), name.to_string());
        t.labels
            .insert(labels::ARCH.to_string(), "amd64".to_string());
        t
    }

    fn claim(requirements: Vec<Requirement>) -> NodeClaim {
        let mut c = NodeClaim::new("c", NodeClaimSpec::default());
        c.spec.requirements = requirements;
        c
    }

    fn catalogue() -> Vec<InstanceType> {
        use CapacityType::*;
        vec![
            // Too small for anything the claim requests: still launched when the claim names it.
            itype(
                "tiny",
                500,
                vec![
                    offering("a", Spot, 0.01, true),
                    offering("b", Spot, 0.02, true),
                ],
            ),
            itype(
                "big",
                64_000,
                vec![
                    offering("a", Spot, 0.5, false),
                    offering("b", Spot, 0.4, true),
                    offering("c", Spot, 0.3, true),
                    offering("a", OnDemand, 1.0, true),
                ],
            ),
            itype("other", 4_000, vec![offering("a", Spot, 0.001, true)]),
        ]
    }

    fn zones(z: &[&str]) -> BTreeSet<String> {
        z.iter().map(|s| s.to_string()).collect()
    }

    /// What `crates/aws/src/matching.rs` checked before the API algebra replaced it.
    #[test]
    fn absent_labels_follow_the_operator() {
        let t = itype("m5.large", 2_000, vec![]);
        let o = offering("a", CapacityType::Spot, 0.1, true);
        let ok = |r: Requirement| allows(&Requirements::from_requirements(&[r]).unwrap(), &t, &o);
        assert!(ok(Requirement::in_(labels::ARCH, ["amd64"])));
        assert!(!ok(Requirement::in_(labels::ARCH, ["arm64"])));
        assert!(ok(Requirement::not_in(
            labels::INSTANCE_GPU_MANUFACTURER,
            ["nvidia"]
        )));
        assert!(!ok(Requirement::in_(
            labels::INSTANCE_GPU_MANUFACTURER,
            ["nvidia"]
        )));
        // Keys that do not describe instance types (a pool's own labels) do not constrain them.
        assert!(ok(Requirement::in_("team", ["a"])));
        assert!(ok(Requirement::in_(labels::NODEPOOL, ["default"])));
    }

    #[test]
    fn launches_exactly_the_claims_options_cheapest_first() {
        let types = catalogue();
        let c = claim(vec![
            Requirement::in_(labels::NODEPOOL, ["default"]),
            Requirement::in_("team", ["ml"]),
            Requirement::in_(labels::INSTANCE_TYPE, ["big", "tiny"]),
            Requirement::in_(labels::ZONE, ["a", "b", "c"]),
            Requirement::in_(labels::CAPACITY_TYPE, ["spot"]),
        ]);
        let s = select(&c, &types, &zones(&["a", "b"])).unwrap();
        assert_eq!(s.capacity_type, CapacityType::Spot);
        let got: Vec<(&str, Vec<&str>)> = s
            .options
            .iter()
            .map(|o| {
                (
                    o.instance_type.name.as_str(),
                    o.zones.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        // `other` is cheaper but not an option; zone c has no subnet; big's spot in a is
        // unavailable.
        assert_eq!(got, [("tiny", vec!["a", "b"]), ("big", vec!["b"])]);
        assert_eq!(s.options[1].price, 0.4);
    }

    #[test]
    fn the_capacity_type_is_the_claims_and_unavailable_offerings_are_capacity_errors() {
        let types = catalogue();
        let c = claim(vec![
            Requirement::in_(labels::INSTANCE_TYPE, ["big"]),
            Requirement::in_(labels::ZONE, ["a"]),
            Requirement::in_(labels::CAPACITY_TYPE, ["on-demand"]),
        ]);
        let s = select(&c, &types, &zones(&["a", "b", "c"])).unwrap();
        assert_eq!(s.capacity_type, CapacityType::OnDemand);
        let c = claim(vec![
            Requirement::in_(labels::INSTANCE_TYPE, ["big"]),
            Requirement::in_(labels::ZONE, ["a"]),
            Requirement::in_(labels::CAPACITY_TYPE, ["spot"]),
        ]);
        match select(&c, &types, &zones(&["a"])) {
            Err(CloudError::InsufficientCapacity { offerings }) => assert_eq!(
                offerings,
                [OfferingKey {
                    instance_type: "big".into(),
                    zone: "a".into(),
                    capacity_type: CapacityType::Spot
                }]
            ),
            other => panic!("expected InsufficientCapacity, got {other:?}"),
        }
        let c = claim(vec![Requirement::in_(labels::ARCH, ["arm64"])]);
        assert!(matches!(
            select(&c, &types, &zones(&["a"])),
            Err(CloudError::Launch { code, .. }) if code == "NoCompatibleInstanceTypes"
        ));
    }
}
