//! eksctl `ClusterConfig`: `managedNodeGroups` and `nodeGroups` to [`Group`]s.

use std::collections::BTreeMap;

use crate::model::{
    Ami, CaOptions, Capacity, Class, Group, Iam, Selector, Src, Taint, Term, Volume,
};
use crate::source::{At, Doc};
use crate::{Error, Report, Result, Severity};

/// What the ClusterConfig says about the cluster as a whole.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub name: Option<String>,
    pub region: Option<String>,
    /// Subnet name -> (id, zone), private and public.
    pub private: BTreeMap<String, (String, Option<String>)>,
    pub public: BTreeMap<String, (String, Option<String>)>,
}

/// Fields of a node group this module maps (the rest are reported as not mapped).
const KNOWN: &[&str] = &[
    "name",
    "instanceType",
    "instanceTypes",
    "instanceSelector",
    "instancesDistribution",
    "spot",
    "minSize",
    "maxSize",
    "desiredCapacity",
    "labels",
    "taints",
    "volumeSize",
    "volumeType",
    "volumeEncrypted",
    "volumeIOPS",
    "volumeThroughput",
    "amiFamily",
    "ami",
    "privateNetworking",
    "subnets",
    "availabilityZones",
    "securityGroups",
    "iam",
    "tags",
    "maxPodsPerNode",
    "propagateASGTags",
    "disableIMDSv1",
];

/// The groups of one ClusterConfig document; fills `cluster` from its metadata and VPC.
pub fn groups(doc: &Doc, cluster: &mut Cluster, report: &mut Report) -> Result<Vec<Group>> {
    let root = doc.root();
    if let Some(m) = root.get("metadata") {
        if let Some(n) = m.get("name") {
            cluster.name = Some(n.str()?.to_string());
        }
        if let Some(r) = m.get("region") {
            cluster.region = Some(r.str()?.to_string());
        }
    }
    if let Some(subnets) = root.get("vpc").and_then(|v| v.get("subnets")) {
        for (kind, into) in [
            ("private", &mut cluster.private),
            ("public", &mut cluster.public),
        ] {
            if let Some(m) = subnets.get(kind) {
                for (name, s) in m.entries()? {
                    let id = subnet_id(&s.get("id").ok_or_else(|| s.err("field id is missing"))?)?;
                    let az = s
                        .get("az")
                        .map(|a| a.str().map(str::to_string))
                        .transpose()?;
                    into.insert(name.to_string(), (id, az));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (field, managed) in [("managedNodeGroups", true), ("nodeGroups", false)] {
        let Some(list) = root.get(field) else {
            continue;
        };
        for ng in list.items()? {
            if let Some(g) = group(&ng, managed, cluster, report)? {
                out.push(g);
            }
        }
    }
    Ok(out)
}

fn subnet_id(at: &At<'_>) -> Result<String> {
    let id = at.str()?;
    if !aws_id(id, "subnet-") {
        return Err(at.err(format!("{id:?} is not a subnet id (subnet-<hex>)")));
    }
    Ok(id.to_string())
}

pub(crate) fn aws_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The name at the end of an IAM ARN (`arn:aws:iam::1:role/path/name` -> `name`).
fn arn_name(at: &At<'_>, kind: &str) -> Result<String> {
    let arn = at.str()?;
    let rest = arn
        .split_once(&format!(":{kind}/"))
        .map(|(_, r)| r)
        .filter(|_| arn.starts_with("arn:"))
        .ok_or_else(|| at.err(format!("{arn:?} is not an IAM {kind} ARN")))?;
    Ok(rest.rsplit('/').next().unwrap_or(rest).to_string())
}

fn group(
    ng: &At<'_>,
    managed: bool,
    cluster: &Cluster,
    report: &mut Report,
) -> Result<Option<Group>> {
    let name_at = ng
        .get("name")
        .ok_or_else(|| ng.err("field name is missing"))?;
    let name = name_at.str()?.to_string();
    let at = ng.src();
    let kind = if managed {
        "managed node group"
    } else {
        "node group"
    };
    for (k, v) in ng.entries()? {
        if !KNOWN.contains(&k) {
            report.note(
                Severity::NotMapped,
                v.src(),
                format!("{kind} {name}: {k} has no NodePool or EC2NodeClass equivalent"),
            );
        }
    }

    // AMI first: a family Stowage cannot launch skips the group.
    let family_at = ng.get("amiFamily");
    let family = match &family_at {
        Some(f) => f.str()?.to_string(),
        None => "AmazonLinux2023".to_string(),
    };
    let family_src = family_at.map_or_else(|| ng.src(), |f| f.src());
    let alias = match family.as_str() {
        "AmazonLinux2023" => "al2023",
        "AmazonLinux2" => "al2",
        "Bottlerocket" => "bottlerocket",
        other => {
            report.note(
                Severity::NotMapped,
                family_src,
                format!("{kind} {name}: amiFamily {other} is not one Stowage launches (AL2023, AL2, Bottlerocket); the group is not migrated"),
            );
            return Ok(None);
        }
    };
    if family_at.is_none() {
        report.note(
            Severity::Assumed,
            ng.src(),
            format!("{kind} {name}: no amiFamily; eksctl's default AmazonLinux2023 assumed"),
        );
    }
    let ami = match ng.get("ami") {
        Some(a) if a.str()?.starts_with("ami-") => {
            let id = a.str()?;
            if !aws_id(id, "ami-") {
                return Err(a.err(format!("{id:?} is not an AMI id (ami-<hex>)")));
            }
            report.note(
                Severity::Mapped,
                a.src(),
                format!("{kind} {name}: custom AMI {id} is pinned by id (no tag selector to follow new builds); add tags to the AMI and select by tags to roll new builds out"),
            );
            let fam = match alias {
                "al2023" => "AL2023",
                "al2" => "AL2",
                _ => "Bottlerocket",
            };
            Src::new(
                Ami::Id {
                    id: id.to_string(),
                    family: fam.to_string(),
                },
                a.src(),
            )
        }
        Some(a) => {
            let v = a.str()?;
            report.note(
                Severity::Mapped,
                a.src(),
                format!("{kind} {name}: ami {v:?} (SSM or auto) becomes {alias}@latest"),
            );
            Src::new(Ami::Alias(format!("{alias}@latest")), a.src())
        }
        None => Src::new(Ami::Alias(format!("{alias}@latest")), family_src),
    };

    // Instance types, selector and capacity.
    let mut instance_types = None;
    if let Some(t) = ng.get("instanceType") {
        let t_name = t.str()?;
        if t_name != "mixed" {
            instance_types = Some(Src::new(vec![t_name.to_string()], t.src()));
        }
    }
    if let Some(t) = ng.get("instanceTypes") {
        instance_types = Some(Src::new(t.strings()?, t.src()));
    }
    let mut capacity = Src::new(Capacity::OnDemand, ng.src());
    if let Some(s) = ng.get("spot")
        && s.bool()?
    {
        capacity = Src::new(Capacity::Spot, s.src());
    }
    if let Some(d) = ng.get("instancesDistribution") {
        if let Some(t) = d.get("instanceTypes") {
            instance_types = Some(Src::new(t.strings()?, t.src()));
        }
        let base = d.get("onDemandBaseCapacity").map(|b| b.int()).transpose()?;
        let pct = d
            .get("onDemandPercentageAboveBaseCapacity")
            .map(|b| b.int())
            .transpose()?;
        if let Some(b) = base
            && b < 0
        {
            return Err(d.err("onDemandBaseCapacity must not be negative"));
        }
        if let Some(p) = pct
            && !(0..=100).contains(&p)
        {
            let at = d.get("onDemandPercentageAboveBaseCapacity").unwrap_or(d);
            return Err(at.err(format!("must be between 0 and 100, got {p}")));
        }
        capacity = Src::new(mix(base.unwrap_or(0), pct.unwrap_or(100)), d.src());
        for k in [
            "spotInstancePools",
            "spotAllocationStrategy",
            "maxPrice",
            "capacityRebalance",
        ] {
            if let Some(v) = d.get(k) {
                report.note(
                    Severity::NotMapped,
                    v.src(),
                    format!("{kind} {name}: {k}: Stowage picks the cheapest spot offerings itself (price and capacity aware)"),
                );
            }
        }
    }
    let selector = match ng.get("instanceSelector") {
        Some(s) => Some(Src::new(selector(&s)?, s.src())),
        None => None,
    };
    if instance_types.is_none() && selector.is_none() {
        return Err(ng.err(format!(
            "{kind} {name}: neither instanceType, instanceTypes nor instanceSelector is set"
        )));
    }

    // Sizes.
    let size = |k: &str| -> Result<Option<Src<i64>>> {
        match ng.get(k) {
            Some(v) => {
                let n = v.int()?;
                if n < 0 {
                    return Err(v.err("must not be negative"));
                }
                Ok(Some(Src::new(n, v.src())))
            }
            None => Ok(None),
        }
    };
    let (min, max, desired) = (size("minSize")?, size("maxSize")?, size("desiredCapacity")?);

    // Labels and taints.
    let mut labels = BTreeMap::new();
    if let Some(l) = ng.get("labels") {
        for (k, v) in l.entries()? {
            labels.insert(k.to_string(), Src::new(v.text()?, v.src()));
        }
    }
    let taints = match ng.get("taints") {
        Some(t) => taints(&t)?,
        None => Vec::new(),
    };
    let zones = match ng.get("availabilityZones") {
        Some(z) => Some(Src::new(z.strings()?, z.src())),
        None => None,
    };

    // Network.
    let private = match ng.get("privateNetworking") {
        Some(p) => Some(Src::new(p.bool()?, p.src())),
        None => None,
    };
    let is_private = private.as_ref().is_some_and(|p| p.v);
    let subnets = subnets(ng, &name, kind, cluster, is_private, report)?;
    let security_groups = security_groups(ng, &name, kind, cluster, report)?;
    let iam = iam(ng, &name, kind, cluster, report)?;

    let volume = match ng.get("volumeSize") {
        Some(v) => {
            let size = v.int()?;
            if size < 1 {
                return Err(v.err("must be at least 1 (GiB)"));
            }
            let opt_int = |k: &str| ng.get(k).map(|x| x.int()).transpose();
            Some(Src::new(
                Volume {
                    size_gib: size,
                    kind: ng
                        .get("volumeType")
                        .map(|t| t.str().map(str::to_string))
                        .transpose()?,
                    encrypted: ng.get("volumeEncrypted").map(|e| e.bool()).transpose()?,
                    iops: opt_int("volumeIOPS")?,
                    throughput: opt_int("volumeThroughput")?,
                },
                v.src(),
            ))
        }
        None => None,
    };
    let mut tags = BTreeMap::new();
    if let Some(t) = ng.get("tags") {
        for (k, v) in t.entries()? {
            tags.insert(k.to_string(), Src::new(v.text()?, v.src()));
        }
    }
    if let Some(p) = ng.get("propagateASGTags") {
        report.note(
            Severity::Mapped,
            p.src(),
            format!("{kind} {name}: propagateASGTags: Stowage buys no ASGs; the tags go on the instances (EC2NodeClass tags)"),
        );
    }
    let max_pods = match ng.get("maxPodsPerNode") {
        Some(m) => Some(Src::new(m.int()?, m.src())),
        None => None,
    };
    Ok(Some(Group {
        name: name.clone(),
        at,
        names: vec![name],
        instance_types,
        selector,
        capacity,
        min,
        max,
        desired,
        labels,
        taints,
        zones,
        class: Class {
            ami,
            subnets,
            security_groups,
            iam,
            volume,
            tags,
            public_ip: private.map(|p| Src::new(!p.v, p.at)),
            max_pods,
        },
        ca: CaOptions::default(),
    }))
}

/// An on-demand base and percentage as a capacity.
pub fn mix(base: i64, percent: i64) -> Capacity {
    match (base, percent) {
        (0, 0) => Capacity::Spot,
        (_, 100) => Capacity::OnDemand,
        (base, percent) => Capacity::Mixed { base, percent },
    }
}

fn selector(s: &At<'_>) -> Result<Selector> {
    let mut out = Selector::default();
    if let Some(v) = s.get("vCPUs") {
        out.vcpus = Some(v.int()?);
    }
    if let Some(m) = s.get("memory") {
        let text = m.text()?;
        let t = text.trim();
        let (num, scale) = if let Some(n) = t.strip_suffix("GiB").or_else(|| t.strip_suffix("Gi")) {
            (n, 1024.0)
        } else if let Some(n) = t.strip_suffix("MiB").or_else(|| t.strip_suffix("Mi")) {
            (n, 1.0)
        } else {
            (t, 1024.0)
        };
        let gib: f64 = num
            .trim()
            .parse()
            .map_err(|_| m.err(format!("{text:?} is not a memory size such as 16 or 16GiB")))?;
        out.memory_mib = Some((gib * scale).round() as i64);
    }
    if let Some(a) = s.get("cpuArchitecture") {
        out.arch = Some(match a.str()? {
            "x86_64" | "amd64" => "amd64".to_string(),
            "arm64" => "arm64".to_string(),
            other => {
                return Err(a.err(format!(
                    "unknown cpuArchitecture {other:?} (x86_64 or arm64)"
                )));
            }
        });
    }
    if let Some(g) = s.get("gpus") {
        out.gpus = Some(g.int()?);
    }
    Ok(out)
}

/// Taints: a list of `{key, value, effect}` or eksctl's older map `key: value:effect`.
pub fn taints(t: &At<'_>) -> Result<Vec<Src<Taint>>> {
    let mut out = Vec::new();
    if t.v.is_array() {
        for item in t.items()? {
            let key = item
                .get("key")
                .ok_or_else(|| item.err("field key is missing"))?;
            let effect = item
                .get("effect")
                .ok_or_else(|| item.err("field effect is missing"))?;
            let value = item.get("value").map(|v| v.text()).transpose()?;
            out.push(Src::new(
                Taint {
                    key: key.str()?.to_string(),
                    value,
                    effect: effect_of(&effect, effect.str()?)?,
                },
                item.src(),
            ));
        }
    } else {
        for (k, v) in t.entries()? {
            let text = v.text()?;
            let (value, effect) = text.rsplit_once(':').unwrap_or(("", text.as_str()));
            out.push(Src::new(
                Taint {
                    key: k.to_string(),
                    value: (!value.is_empty()).then(|| value.to_string()),
                    effect: effect_of(&v, effect)?,
                },
                v.src(),
            ));
        }
    }
    Ok(out)
}

pub(crate) fn effect_of(at: &At<'_>, effect: &str) -> Result<String> {
    match effect {
        "NoSchedule" | "PreferNoSchedule" | "NoExecute" => Ok(effect.to_string()),
        "NO_SCHEDULE" => Ok("NoSchedule".into()),
        "PREFER_NO_SCHEDULE" => Ok("PreferNoSchedule".into()),
        "NO_EXECUTE" => Ok("NoExecute".into()),
        other => Err(at.err(format!(
            "unknown taint effect {other:?} (NoSchedule, PreferNoSchedule or NoExecute)"
        ))),
    }
}

fn subnets(
    ng: &At<'_>,
    name: &str,
    kind: &str,
    cluster: &Cluster,
    private: bool,
    report: &mut Report,
) -> Result<Src<Vec<Term>>> {
    let known = if private {
        &cluster.private
    } else {
        &cluster.public
    };
    if let Some(s) = ng.get("subnets") {
        let mut ids = Vec::new();
        for item in s.items()? {
            let v = item.str()?;
            if v.starts_with("subnet-") {
                ids.push(Term::Id(subnet_id(&item)?));
            } else if let Some((id, _)) = cluster.private.get(v).or_else(|| cluster.public.get(v)) {
                ids.push(Term::Id(id.clone()));
            } else {
                return Err(item.err(format!(
                    "subnet {v:?} is neither a subnet id nor a subnet named in vpc.subnets"
                )));
            }
        }
        return Ok(Src::new(ids, s.src()));
    }
    if !known.is_empty() {
        // Every subnet of the kind: a group's availabilityZones become a zone requirement of
        // its NodePool, so groups that differ in zones can share one EC2NodeClass.
        let ids: Vec<Term> = known.values().map(|(id, _)| Term::Id(id.clone())).collect();
        let at = ng
            .get("privateNetworking")
            .map_or_else(|| ng.src(), |p| p.src());
        return Ok(Src::new(ids, at));
    }
    let cluster_name = cluster
        .name
        .clone()
        .unwrap_or_else(|| "CLUSTER".to_string());
    let role = if private {
        "kubernetes.io/role/internal-elb"
    } else {
        "kubernetes.io/role/elb"
    };
    report.note(
        Severity::Assumed,
        ng.src(),
        format!("{kind} {name}: no subnets in the config; selecting the eksctl VPC's {} subnets by their tags alpha.eksctl.io/cluster-name={cluster_name} and {role}=1", if private { "private" } else { "public" }),
    );
    let tags = BTreeMap::from([
        ("alpha.eksctl.io/cluster-name".to_string(), cluster_name),
        (role.to_string(), "1".to_string()),
    ]);
    Ok(Src::new(vec![Term::Tags(tags)], ng.src()))
}

fn security_groups(
    ng: &At<'_>,
    name: &str,
    kind: &str,
    cluster: &Cluster,
    report: &mut Report,
) -> Result<Src<Vec<Term>>> {
    let cluster_name = cluster
        .name
        .clone()
        .unwrap_or_else(|| "CLUSTER".to_string());
    let shared = || {
        Term::Tags(BTreeMap::from([(
            "aws:eks:cluster-name".to_string(),
            cluster_name.clone(),
        )]))
    };
    let Some(sg) = ng.get("securityGroups") else {
        report.note(
            Severity::Assumed,
            ng.src(),
            format!("{kind} {name}: no securityGroups; the EKS cluster security group (tag aws:eks:cluster-name={cluster_name}) is selected"),
        );
        return Ok(Src::new(vec![shared()], ng.src()));
    };
    let mut terms = Vec::new();
    if let Some(ids) = sg.get("attachIDs") {
        for item in ids.items()? {
            let id = item.str()?;
            if !aws_id(id, "sg-") {
                return Err(item.err(format!("{id:?} is not a security group id (sg-<hex>)")));
            }
            terms.push(Term::Id(id.to_string()));
        }
    }
    let with_shared = sg
        .get("withShared")
        .map(|w| w.bool())
        .transpose()?
        .unwrap_or(true);
    if with_shared {
        terms.push(shared());
    }
    if let Some(l) = sg.get("withLocal")
        && l.bool()?
    {
        report.note(
            Severity::NotMapped,
            l.src(),
            format!("{kind} {name}: withLocal: the group's own security group is created by eksctl; attach it by id if you still need it"),
        );
    }
    if terms.is_empty() {
        return Err(sg.err("no security group left: attachIDs is empty and withShared is false"));
    }
    Ok(Src::new(terms, sg.src()))
}

fn iam(
    ng: &At<'_>,
    name: &str,
    kind: &str,
    cluster: &Cluster,
    report: &mut Report,
) -> Result<Src<Iam>> {
    if let Some(i) = ng.get("iam") {
        for k in ["attachPolicyARNs", "withAddonPolicies", "attachPolicy"] {
            if let Some(v) = i.get(k) {
                report.note(
                    Severity::NotMapped,
                    v.src(),
                    format!("{kind} {name}: iam.{k}: attach these policies to the node role yourself (Stowage does not edit IAM roles)"),
                );
            }
        }
        if let Some(p) = i.get("instanceProfileARN") {
            return Ok(Src::new(
                Iam::Profile(arn_name(&p, "instance-profile")?),
                p.src(),
            ));
        }
        if let Some(r) = i.get("instanceRoleARN") {
            return Ok(Src::new(Iam::Role(arn_name(&r, "role")?), r.src()));
        }
        if let Some(r) = i.get("instanceRoleName") {
            return Ok(Src::new(Iam::Role(r.str()?.to_string()), r.src()));
        }
    }
    let role = format!(
        "StowageNodeRole-{}",
        cluster.name.as_deref().unwrap_or("CLUSTER")
    );
    report.note(
        Severity::Assumed,
        ng.src(),
        format!("{kind} {name}: eksctl generated this group's node role; the EC2NodeClass uses role {role} (create it as docs/install.md step 3 says, with the same policies)"),
    );
    Ok(Src::new(Iam::Role(role), ng.src()))
}

/// An AWS id (`sg-…`, `subnet-…`) at a field, or an error naming the field.
pub(crate) fn check_id(at: &At<'_>, prefix: &str, what: &str) -> Result<String, Error> {
    let id = at.str()?;
    if !aws_id(id, prefix) {
        return Err(at.err(format!("{id:?} is not a {what} id ({prefix}<hex>)")));
    }
    Ok(id.to_string())
}
