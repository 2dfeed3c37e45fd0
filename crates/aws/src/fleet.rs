//! Fleet calls: one CreateFleet (`Type=instant`) for a batch of identical launches, and what
//! its answer means — instances handed out to claims in order (tagged with their claim when the
//! batch had several), per-override insufficient-capacity errors marked in the
//! [`UnavailableOfferings`] cache, other errors kept with their AWS code, and instances beyond
//! the claims terminated at once so nothing is leaked.
//!
//! Tested through the real SDK against the emulator (`crates/aws/tests/emulator.rs`: partly
//! filled and over-filled fleets, per-override errors), whose `/_fake/ice` and
//! `/_fake/fleet-fill` controls shape the answers.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_ec2::types as ec2t;
use sha2::{Digest, Sha256};
use stowage_api::{CapacityType, labels};
use stowage_cloud::{Error as CloudError, OfferingKey};
use tracing::{debug, warn};

use crate::errors::{self, ErrorClass, classify_code};
use crate::launch_template::tag;
use crate::sdk::{CreateFleetRequest, CreateFleetResponse, Ec2Api};
use crate::unavailable::UnavailableOfferings;

/// One instance type in one subnet (and its zone) of a launch-template config.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Override {
    pub instance_type: String,
    pub subnet_id: String,
    pub zone: String,
}

/// Everything of a launch except the claim it is for: equal keys are coalesced into one fleet.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FleetKey {
    pub capacity_type: CapacityType,
    /// (launch template name, overrides), cheapest first.
    pub configs: Vec<(String, Vec<Override>)>,
    pub tags: Vec<(String, String)>,
}

/// A claim in a fleet batch: its name (tag) and its ClientToken.
#[derive(Clone, Debug)]
pub struct ClaimRef {
    pub name: String,
    pub token: String,
}

/// An instance the fleet launched.
#[derive(Clone, Debug)]
pub struct Launched {
    pub id: String,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
}

pub type LaunchResult = std::result::Result<Launched, CloudError>;

/// The ClientToken of one CreateFleet: the claims' tokens and the request itself, so a retry of
/// the same request is idempotent while a changed request (other offerings after an
/// insufficient-capacity answer) is a new one.
fn fleet_token(claims: &[ClaimRef], key: &FleetKey) -> String {
    let mut tokens: Vec<&str> = claims.iter().map(|c| c.token.as_str()).collect();
    tokens.sort_unstable();
    let digest = Sha256::digest(format!("{}|{key:?}", tokens.join(",")).as_bytes());
    format!("stowage-{}", hex::encode(&digest[..24]))
}

/// The tag specifications of a fleet: the key's tags, plus the claim's name when there is one.
fn tag_specifications(key: &FleetKey, single: Option<&ClaimRef>) -> Vec<ec2t::TagSpecification> {
    let mut tags: Vec<ec2t::Tag> = key.tags.iter().map(|(k, v)| tag(k, v)).collect();
    if let Some(c) = single {
        tags.push(tag(labels::NODECLAIM, &c.name));
        tags.push(tag("Name", &c.name));
    }
    [
        ec2t::ResourceType::Instance,
        ec2t::ResourceType::Volume,
        ec2t::ResourceType::Fleet,
    ]
    .into_iter()
    .map(|rt| {
        ec2t::TagSpecification::builder()
            .resource_type(rt)
            .set_tags(Some(tags.clone()))
            .build()
    })
    .collect()
}

fn launch_template_config(
    lt: &str,
    overrides: &[Override],
) -> ec2t::FleetLaunchTemplateConfigRequest {
    ec2t::FleetLaunchTemplateConfigRequest::builder()
        .launch_template_specification(
            ec2t::FleetLaunchTemplateSpecificationRequest::builder()
                .launch_template_name(lt)
                .version("$Latest")
                .build(),
        )
        .set_overrides(Some(
            overrides
                .iter()
                .map(|o| {
                    ec2t::FleetLaunchTemplateOverridesRequest::builder()
                        .instance_type(ec2t::InstanceType::from(o.instance_type.as_str()))
                        .subnet_id(&o.subnet_id)
                        .build()
                })
                .collect(),
        ))
        .build()
}

/// The CreateFleet request for `claims` (one instance each) under `key`.
fn fleet_request(key: &FleetKey, claims: &[ClaimRef]) -> CreateFleetRequest {
    let spot = key.capacity_type == CapacityType::Spot;
    let single = match claims {
        [only] => Some(only),
        _ => None,
    };
    CreateFleetRequest {
        client_token: Some(fleet_token(claims, key)),
        launch_template_configs: key
            .configs
            .iter()
            .map(|(lt, overrides)| launch_template_config(lt, overrides))
            .collect(),
        target_capacity: Some(
            ec2t::TargetCapacitySpecificationRequest::builder()
                .total_target_capacity(i32::try_from(claims.len()).unwrap_or(i32::MAX))
                .default_target_capacity_type(if spot {
                    ec2t::DefaultTargetCapacityType::Spot
                } else {
                    ec2t::DefaultTargetCapacityType::OnDemand
                })
                .build(),
        ),
        spot_options: spot.then(|| {
            ec2t::SpotOptionsRequest::builder()
                .allocation_strategy(ec2t::SpotAllocationStrategy::PriceCapacityOptimized)
                .build()
        }),
        on_demand_options: (!spot).then(|| {
            ec2t::OnDemandOptionsRequest::builder()
                .allocation_strategy(ec2t::FleetOnDemandAllocationStrategy::LowestPrice)
                .build()
        }),
        tag_specifications: tag_specifications(key, single),
    }
}

/// What a CreateFleet answer says, read against the request's key.
struct FleetAnswer {
    launched: Vec<Launched>,
    /// Offerings that answered insufficient capacity (sorted, deduplicated).
    ice: Vec<OfferingKey>,
    /// The first other error: (code, message).
    other: Option<(String, String)>,
}

impl FleetAnswer {
    fn read(key: &FleetKey, response: &CreateFleetResponse) -> Self {
        let zone_of: HashMap<&str, &str> = key
            .configs
            .iter()
            .flat_map(|(_, o)| o.iter().map(|o| (o.subnet_id.as_str(), o.zone.as_str())))
            .collect();
        let lifecycle = |l: Option<&ec2t::InstanceLifecycle>| match l {
            Some(ec2t::InstanceLifecycle::Spot) => CapacityType::Spot,
            Some(ec2t::InstanceLifecycle::OnDemand) => CapacityType::OnDemand,
            _ => key.capacity_type,
        };
        let mut ice: Vec<OfferingKey> = Vec::new();
        let mut other: Option<(String, String)> = None;
        for err in &response.errors {
            let code = err.error_code().unwrap_or_default();
            let o = err
                .launch_template_and_overrides()
                .and_then(|l| l.overrides());
            let itype = o
                .and_then(|o| o.instance_type())
                .map(|t| t.as_str().to_string());
            let zone = o
                .and_then(|o| {
                    o.subnet_id()
                        .and_then(|s| zone_of.get(s).map(|z| z.to_string()))
                })
                .or_else(|| o.and_then(|o| o.availability_zone()).map(str::to_string));
            if classify_code(code) == ErrorClass::InsufficientCapacity {
                if let (Some(instance_type), Some(zone)) = (itype, zone) {
                    ice.push(OfferingKey {
                        instance_type,
                        zone,
                        capacity_type: lifecycle(err.lifecycle()),
                    });
                }
            } else if other.is_none() {
                other = Some((
                    code.to_string(),
                    err.error_message().unwrap_or_default().to_string(),
                ));
            }
        }
        ice.sort();
        ice.dedup();
        let mut launched: Vec<Launched> = Vec::new();
        for inst in &response.instances {
            let o = inst
                .launch_template_and_overrides()
                .and_then(|l| l.overrides());
            let zone = o
                .and_then(|o| o.subnet_id())
                .and_then(|s| zone_of.get(s))
                .map(|z| z.to_string())
                .unwrap_or_default();
            let instance_type = inst
                .instance_type()
                .or_else(|| o.and_then(|o| o.instance_type()))
                .map(|t| t.as_str().to_string())
                .unwrap_or_default();
            for id in inst.instance_ids() {
                launched.push(Launched {
                    id: id.clone(),
                    instance_type: instance_type.clone(),
                    zone: zone.clone(),
                    capacity_type: lifecycle(inst.lifecycle()),
                });
            }
        }
        Self {
            launched,
            ice,
            other,
        }
    }

    /// The error of a claim the fleet left without an instance: another error's code when no
    /// offering ran out of capacity, else the capacity error (every requested offering when the
    /// answer named none).
    fn unfilled(&self, key: &FleetKey) -> CloudError {
        match &self.other {
            Some((code, message)) if self.ice.is_empty() => CloudError::Launch {
                code: code.clone(),
                message: message.clone(),
            },
            _ if !self.ice.is_empty() => CloudError::InsufficientCapacity {
                offerings: self.ice.clone(),
            },
            _ => CloudError::InsufficientCapacity {
                offerings: key
                    .configs
                    .iter()
                    .flat_map(|(_, o)| o.iter())
                    .map(|o| OfferingKey {
                        instance_type: o.instance_type.clone(),
                        zone: o.zone.clone(),
                        capacity_type: key.capacity_type,
                    })
                    .collect(),
            },
        }
    }
}

/// One CreateFleet for every claim in the batch; instances are handed out in claim order.
pub async fn launch_batch(
    ec2: Arc<dyn Ec2Api>,
    unavailable: Arc<UnavailableOfferings>,
    key: FleetKey,
    claims: Vec<ClaimRef>,
) -> Vec<LaunchResult> {
    let response = match ec2.create_fleet(fleet_request(&key, &claims)).await {
        Ok(r) => r,
        Err(e) => {
            let err = errors::launch_to_cloud(e);
            return claims.iter().map(|_| Err(err.clone())).collect();
        }
    };
    let answer = FleetAnswer::read(&key, &response);
    for k in &answer.ice {
        unavailable.mark(k.clone());
    }
    debug!(
        requested = claims.len(),
        launched = answer.launched.len(),
        errors = response.errors.len(),
        "create fleet"
    );
    let mut instances = answer.launched.clone().into_iter();
    let mut out = Vec::with_capacity(claims.len());
    for claim in &claims {
        match instances.next() {
            Some(l) => {
                if claims.len() > 1 {
                    tag_with_claim(&*ec2, &l.id, &claim.name).await;
                }
                out.push(Ok(l));
            }
            None => out.push(Err(answer.unfilled(&key))),
        }
    }
    terminate_extra(&*ec2, instances.map(|l| l.id).collect()).await;
    out
}

/// Tags an instance of a shared fleet with its claim (a single claim is tagged at launch).
async fn tag_with_claim(ec2: &dyn Ec2Api, id: &str, claim: &str) {
    let tags = vec![tag(labels::NODECLAIM, claim), tag("Name", claim)];
    if let Err(e) = ec2.create_tags(vec![id.to_string()], tags).await {
        warn!(instance = %id, error = %e, "failed to tag instance with its nodeclaim");
    }
}

/// More instances than claims would be leaked capacity nobody owns: give it back.
async fn terminate_extra(ec2: &dyn Ec2Api, extra: Vec<String>) {
    if extra.is_empty() {
        return;
    }
    warn!(
        ?extra,
        "fleet returned more instances than claims; terminating the extra ones"
    );
    if let Err(e) = ec2.terminate_instances(extra).await {
        warn!(error = %e, "failed to terminate extra fleet instances");
    }
}
