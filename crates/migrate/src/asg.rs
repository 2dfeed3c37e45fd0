//! `aws autoscaling describe-auto-scaling-groups` and `aws ec2 describe-launch-template-versions`
//! output to [`Group`]s. An ASG that eksctl made (tag `alpha.eksctl.io/nodegroup-name` or
//! `eks:nodegroup-name`) for a group of the ClusterConfig adds to that group (its name for the
//! priority expander, Cluster Autoscaler's node-template labels and taints and its
//! autoscaling options); any other ASG of the cluster becomes a group of its own, launched as its
//! launch template says.

use std::collections::BTreeMap;

use crate::eksctl::{Cluster, check_id, effect_of, mix};
use crate::model::{Ami, CaOptions, Capacity, Class, Group, Iam, Src, Taint, Term, Volume};
use crate::source::{At, Doc};
use crate::{Report, Result, Severity};

const LABEL_TAG: &str = "k8s.io/cluster-autoscaler/node-template/label/";
const TAINT_TAG: &str = "k8s.io/cluster-autoscaler/node-template/taint/";
const OPTION_TAG: &str = "k8s.io/cluster-autoscaler/node-template/autoscaling-options/";
const RESOURCE_TAG: &str = "k8s.io/cluster-autoscaler/node-template/resources/";

/// One launch template version.
#[derive(Clone, Debug)]
pub struct Template<'a> {
    pub id: String,
    pub name: String,
    pub version: i64,
    pub default: bool,
    pub data: At<'a>,
}

/// Every launch template version of the documents.
pub fn templates<'a>(docs: impl Iterator<Item = &'a Doc>) -> Result<Vec<Template<'a>>> {
    let mut out = Vec::new();
    for d in docs {
        let root = d.root();
        let Some(list) = root.get("LaunchTemplateVersions") else {
            continue;
        };
        for v in list.items()? {
            let field = |k: &str| {
                v.get(k)
                    .ok_or_else(|| v.err(format!("field {k} is missing")))
            };
            out.push(Template {
                id: field("LaunchTemplateId")?.str()?.to_string(),
                name: v
                    .get("LaunchTemplateName")
                    .map(|n| n.str().map(str::to_string))
                    .transpose()?
                    .unwrap_or_default(),
                version: field("VersionNumber")?.int()?,
                default: v
                    .get("DefaultVersion")
                    .map(|b| b.bool())
                    .transpose()?
                    .unwrap_or(false),
                data: field("LaunchTemplateData")?,
            });
        }
    }
    Ok(out)
}

/// The template version an ASG's launch template specification names.
fn resolve<'a, 't>(
    spec: &At<'_>,
    templates: &'t [Template<'a>],
) -> Result<Option<&'t Template<'a>>> {
    let id = spec.get("LaunchTemplateId").map(|i| i.str()).transpose()?;
    let name = spec
        .get("LaunchTemplateName")
        .map(|i| i.str())
        .transpose()?;
    let version = spec
        .get("Version")
        .map(|v| v.text())
        .transpose()?
        .unwrap_or_else(|| "$Default".to_string());
    let same: Vec<&Template<'a>> = templates
        .iter()
        .filter(|t| Some(t.id.as_str()) == id || (name.is_some() && Some(t.name.as_str()) == name))
        .collect();
    Ok(match version.as_str() {
        "$Latest" => same.iter().max_by_key(|t| t.version).copied(),
        "$Default" => same.iter().find(|t| t.default).copied(),
        n => {
            let n: i64 = n.parse().map_err(|_| {
                spec.err(format!(
                    "Version {n:?} is neither $Latest, $Default nor a number"
                ))
            })?;
            same.iter().find(|t| t.version == n).copied()
        }
    })
}

/// Adds the ASGs of one describe-auto-scaling-groups document to `groups`.
pub fn groups(
    doc: &Doc,
    templates: &[Template<'_>],
    cluster: &Cluster,
    groups: &mut Vec<Group>,
    report: &mut Report,
) -> Result<()> {
    let root = doc.root();
    let Some(list) = root.get("AutoScalingGroups") else {
        return Ok(());
    };
    for asg in list.items()? {
        let name_at = asg
            .get("AutoScalingGroupName")
            .ok_or_else(|| asg.err("field AutoScalingGroupName is missing"))?;
        let asg_name = name_at.str()?.to_string();
        let mut tags: BTreeMap<String, (String, At<'_>)> = BTreeMap::new();
        let mut propagated = Vec::new();
        if let Some(t) = asg.get("Tags") {
            for item in t.items()? {
                let k = item
                    .get("Key")
                    .ok_or_else(|| item.err("field Key is missing"))?;
                let v = item
                    .get("Value")
                    .ok_or_else(|| item.err("field Value is missing"))?;
                if item
                    .get("PropagateAtLaunch")
                    .map(|p| p.bool())
                    .transpose()?
                    == Some(true)
                {
                    propagated.push(k.str()?.to_string());
                }
                tags.insert(k.str()?.to_string(), (v.text()?, v));
            }
        }
        let in_cluster = tags.keys().any(|k| {
            k.starts_with("k8s.io/cluster-autoscaler/") || k.starts_with("kubernetes.io/cluster/")
        });
        if !in_cluster {
            report.note(
                Severity::NotMapped,
                asg.src(),
                format!("ASG {asg_name}: no k8s.io/cluster-autoscaler/* or kubernetes.io/cluster/* tag; not a Cluster Autoscaler node group, skipped"),
            );
            continue;
        }
        let ng_name = tags
            .get("alpha.eksctl.io/nodegroup-name")
            .or_else(|| tags.get("eks:nodegroup-name"))
            .map_or_else(|| asg_name.clone(), |(v, _)| v.clone());

        let mut labels = BTreeMap::new();
        let mut taints = Vec::new();
        let mut ca = CaOptions::default();
        for (k, (v, at)) in &tags {
            if let Some(label) = k.strip_prefix(LABEL_TAG) {
                labels.insert(label.to_string(), Src::new(v.clone(), at.src()));
            } else if let Some(key) = k.strip_prefix(TAINT_TAG) {
                let (value, effect) = v.rsplit_once(':').unwrap_or(("", v.as_str()));
                taints.push(Src::new(
                    Taint {
                        key: key.to_string(),
                        value: (!value.is_empty()).then(|| value.to_string()),
                        effect: effect_of(at, effect)?,
                    },
                    at.src(),
                ));
            } else if let Some(option) = k.strip_prefix(OPTION_TAG) {
                match option {
                    "scaledownutilizationthreshold" => {
                        ca.threshold = Some(Src::new(at.float()?, at.src()));
                    }
                    "scaledownunneededtime" => {
                        ca.unneeded = Some(Src::new(crate::ca::go_duration(at, v)?, at.src()));
                    }
                    other => report.note(
                        Severity::NotMapped,
                        at.src(),
                        format!(
                            "ASG {asg_name}: autoscaling option {other} has no Stowage equivalent"
                        ),
                    ),
                }
            } else if k.starts_with(RESOURCE_TAG) {
                report.note(
                    Severity::Mapped,
                    at.src(),
                    format!("ASG {asg_name}: {k} is not needed: Stowage knows each instance type's resources"),
                );
            }
        }

        // An eksctl group of the ClusterConfig: the ASG adds to it.
        if let Some(g) = groups.iter_mut().find(|g| g.name == ng_name) {
            g.names.push(asg_name.clone());
            for (k, v) in labels {
                g.labels.entry(k).or_insert(v);
            }
            for t in taints {
                if !g
                    .taints
                    .iter()
                    .any(|x| x.v.key == t.v.key && x.v.effect == t.v.effect)
                {
                    g.taints.push(t);
                }
            }
            if ca.threshold.is_some() {
                g.ca.threshold = ca.threshold;
            }
            if ca.unneeded.is_some() {
                g.ca.unneeded = ca.unneeded;
            }
            continue;
        }

        let size = |k: &str| -> Result<Option<Src<i64>>> {
            asg.get(k)
                .map(|v| Ok(Src::new(v.int()?, v.src())))
                .transpose()
        };
        let (min, max, desired) = (size("MinSize")?, size("MaxSize")?, size("DesiredCapacity")?);
        let mip = asg.get("MixedInstancesPolicy");
        let spec = match &mip {
            Some(m) => m
                .get("LaunchTemplate")
                .and_then(|l| l.get("LaunchTemplateSpecification")),
            None => asg.get("LaunchTemplate"),
        };
        let template = match &spec {
            Some(s) => resolve(s, templates)?,
            None => None,
        };
        let data = template.map(|t| t.data);
        if template.is_none() {
            report.note(
                Severity::NotMapped,
                spec.map_or_else(|| asg.src(), |s| s.src()),
                format!("ASG {asg_name}: its launch template version is not in the describe-launch-template-versions input (or it uses a launch configuration); AMI, IAM, security groups and disks use defaults"),
            );
        }

        let mut instance_types = None;
        let mut capacity = Src::new(Capacity::OnDemand, asg.src());
        if let Some(d) = data {
            if let Some(t) = d.get("InstanceType") {
                instance_types = Some(Src::new(vec![t.str()?.to_string()], t.src()));
            }
            if let Some(m) = d
                .get("InstanceMarketOptions")
                .and_then(|m| m.get("MarketType"))
                && m.str()? == "spot"
            {
                capacity = Src::new(Capacity::Spot, m.src());
            }
        }
        if let Some(m) = &mip {
            if let Some(o) = m.get("LaunchTemplate").and_then(|l| l.get("Overrides")) {
                let mut types = Vec::new();
                for item in o.items()? {
                    if let Some(t) = item.get("InstanceType") {
                        types.push(t.str()?.to_string());
                    }
                    if let Some(r) = item.get("InstanceRequirements") {
                        report.note(
                            Severity::NotMapped,
                            r.src(),
                            format!("ASG {asg_name}: attribute-based InstanceRequirements are not mapped; write them as NodePool requirements (instance-cpu, instance-memory, ...)"),
                        );
                    }
                    if let Some(w) = item.get("WeightedCapacity") {
                        report.note(
                            Severity::Mapped,
                            w.src(),
                            format!("ASG {asg_name}: WeightedCapacity dropped: Stowage sizes nodes to the pods"),
                        );
                    }
                }
                if !types.is_empty() {
                    instance_types = Some(Src::new(types, o.src()));
                }
            }
            if let Some(d) = m.get("InstancesDistribution") {
                let base = d.get("OnDemandBaseCapacity").map(|b| b.int()).transpose()?;
                let pct = d
                    .get("OnDemandPercentageAboveBaseCapacity")
                    .map(|b| b.int())
                    .transpose()?;
                if let (Some(p), Some(at)) = (pct, d.get("OnDemandPercentageAboveBaseCapacity"))
                    && !(0..=100).contains(&p)
                {
                    return Err(at.err(format!("must be between 0 and 100, got {p}")));
                }
                capacity = Src::new(mix(base.unwrap_or(0).max(0), pct.unwrap_or(100)), d.src());
            }
        }
        let Some(instance_types) = instance_types else {
            report.note(
                Severity::NotMapped,
                asg.src(),
                format!("ASG {asg_name}: no instance type in its overrides or launch template; not migrated"),
            );
            continue;
        };

        let subnets_at = asg.get("VPCZoneIdentifier").ok_or_else(|| {
            asg.err("field VPCZoneIdentifier is missing (an ASG outside a VPC cannot be migrated)")
        })?;
        let mut subnets = Vec::new();
        for id in subnets_at
            .str()?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            if !crate::eksctl::aws_id(id, "subnet-") {
                return Err(subnets_at.err(format!("{id:?} is not a subnet id (subnet-<hex>)")));
            }
            subnets.push(Term::Id(id.to_string()));
        }
        tags.retain(|k, _| propagated.contains(k));
        let class = class(
            data,
            &asg_name,
            &asg,
            cluster,
            subnets_at.src(),
            subnets,
            &tags,
            report,
        )?;
        groups.push(Group {
            name: ng_name,
            at: asg.src(),
            names: vec![asg_name],
            instance_types: Some(instance_types),
            selector: None,
            capacity,
            min,
            max,
            desired,
            labels,
            taints,
            zones: None,
            class,
            ca,
        });
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn class(
    data: Option<At<'_>>,
    asg_name: &str,
    asg: &At<'_>,
    cluster: &Cluster,
    subnets_at: String,
    subnets: Vec<Term>,
    propagated_tags: &BTreeMap<String, (String, At<'_>)>,
    report: &mut Report,
) -> Result<Class> {
    let cluster_name = cluster
        .name
        .clone()
        .unwrap_or_else(|| "CLUSTER".to_string());
    let fallback_ami = || Ami::Alias("al2023@latest".to_string());
    let mut ami = Src::new(fallback_ami(), asg.src());
    let mut sgs = Vec::new();
    let mut sgs_at = asg.src();
    let mut iam = None;
    let mut volume = None;
    let mut tags = BTreeMap::new();
    if let Some(d) = data {
        if let Some(i) = d.get("ImageId") {
            let id = check_id(&i, "ami-", "AMI")?;
            report.note(
                Severity::NotMapped,
                i.src(),
                format!("ASG {asg_name}: custom AMI {id} from its launch template has no family and no tag selector; the EC2NodeClass uses al2023@latest (replace it with an id or tag term and its amiFamily if the AMI is not the EKS-optimised AL2023)"),
            );
            ami = Src::new(fallback_ami(), i.src());
        }
        let mut sg_ids = Vec::new();
        if let Some(s) = d.get("SecurityGroupIds") {
            sgs_at = s.src();
            for item in s.items()? {
                sg_ids.push(check_id(&item, "sg-", "security group")?);
            }
        }
        if let Some(n) = d.get("NetworkInterfaces") {
            for ni in n.items()? {
                if let Some(g) = ni.get("Groups") {
                    sgs_at = g.src();
                    for item in g.items()? {
                        sg_ids.push(check_id(&item, "sg-", "security group")?);
                    }
                }
            }
        }
        sg_ids.dedup();
        sgs = sg_ids.into_iter().map(Term::Id).collect();
        if let Some(p) = d.get("IamInstanceProfile") {
            let name = match (p.get("Name"), p.get("Arn")) {
                (Some(n), _) => n.str()?.to_string(),
                (None, Some(a)) => {
                    let arn = a.str()?;
                    arn.rsplit('/').next().unwrap_or(arn).to_string()
                }
                (None, None) => return Err(p.err("neither Name nor Arn is set")),
            };
            iam = Some(Src::new(Iam::Profile(name), p.src()));
        }
        if let Some(b) = d.get("BlockDeviceMappings")
            && let Some(ebs) = b.items()?.first().and_then(|m| m.get("Ebs"))
            && let Some(size) = ebs.get("VolumeSize")
        {
            let opt = |k: &str| ebs.get(k).map(|x| x.int()).transpose();
            volume = Some(Src::new(
                Volume {
                    size_gib: size.int()?,
                    kind: ebs
                        .get("VolumeType")
                        .map(|t| t.str().map(str::to_string))
                        .transpose()?,
                    encrypted: ebs.get("Encrypted").map(|e| e.bool()).transpose()?,
                    iops: opt("Iops")?,
                    throughput: opt("Throughput")?,
                },
                ebs.src(),
            ));
        }
        if let Some(specs) = d.get("TagSpecifications") {
            for s in specs.items()? {
                if s.get("ResourceType").map(|r| r.str()).transpose()? != Some("instance") {
                    continue;
                }
                if let Some(t) = s.get("Tags") {
                    for item in t.items()? {
                        let (Some(k), Some(v)) = (item.get("Key"), item.get("Value")) else {
                            continue;
                        };
                        tags.insert(k.str()?.to_string(), Src::new(v.text()?, v.src()));
                    }
                }
            }
        }
        if let Some(u) = d.get("UserData") {
            report.note(
                Severity::NotMapped,
                u.src(),
                format!("ASG {asg_name}: launch template user data is not carried over (Stowage writes the bootstrap itself); put extra steps in the EC2NodeClass's userData"),
            );
        }
    }
    // ASG tags propagated to instances that are not Cluster Autoscaler's, eksctl's or AWS's own.
    for (k, (v, at)) in propagated_tags {
        if !k.starts_with("k8s.io/cluster-autoscaler/")
            && !k.starts_with("kubernetes.io/cluster/")
            && !k.starts_with("aws:")
            && !k.starts_with("eks:")
            && !k.starts_with("alpha.eksctl.io/")
            && !tags.contains_key(k)
        {
            tags.insert(k.clone(), Src::new(v.clone(), at.src()));
        }
    }
    if sgs.is_empty() {
        report.note(
            Severity::Assumed,
            asg.src(),
            format!("ASG {asg_name}: no security groups known; the EKS cluster security group (tag aws:eks:cluster-name={cluster_name}) is selected"),
        );
        sgs = vec![Term::Tags(BTreeMap::from([(
            "aws:eks:cluster-name".to_string(),
            cluster_name.clone(),
        )]))];
    }
    let iam = iam.unwrap_or_else(|| {
        let role = format!("StowageNodeRole-{cluster_name}");
        report.note(
            Severity::Assumed,
            asg.src(),
            format!("ASG {asg_name}: no instance profile known; the EC2NodeClass uses role {role}"),
        );
        Src::new(Iam::Role(role), asg.src())
    });
    Ok(Class {
        ami,
        subnets: Src::new(subnets, subnets_at),
        security_groups: Src::new(sgs, sgs_at),
        iam,
        volume,
        tags,
        public_ip: None,
        max_pods: None,
    })
}
