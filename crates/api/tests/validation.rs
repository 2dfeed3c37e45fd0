//! The bad-manifest table: every manifest here is wrong in one way, and validation must name the
//! field that is wrong. Good manifests (including every default) must pass.

use stowage_api::validation::FieldError;
use stowage_api::{EC2NodeClass, NodeClaim, NodePool};

fn validate(yaml: &str) -> Result<(), Vec<FieldError>> {
    #[derive(serde::Deserialize)]
    struct Kind {
        kind: String,
    }
    let kind: Kind = serde_saphyr::from_str(yaml).expect("test manifest has a kind");
    match kind.kind.as_str() {
        "NodePool" => serde_saphyr::from_str::<NodePool>(yaml)
            .expect("parses as NodePool")
            .validate(),
        "NodeClaim" => serde_saphyr::from_str::<NodeClaim>(yaml)
            .expect("parses as NodeClaim")
            .validate(),
        "EC2NodeClass" => serde_saphyr::from_str::<EC2NodeClass>(yaml)
            .expect("parses as EC2NodeClass")
            .validate(),
        other => panic!("unknown kind {other:?}"),
    }
}

/// A NodePool manifest with `body` spliced into `spec.template.spec` (after nodeClassRef) and
/// `extra` into `spec`.
fn pool(template_spec: &str, spec: &str) -> String {
    format!(
        "apiVersion: stowage.dev/v1\nkind: NodePool\nmetadata: {{name: p}}\nspec:\n  template:\n    spec:\n      nodeClassRef: {{group: aws.stowage.dev, kind: EC2NodeClass, name: default}}\n{}\n{}\n",
        indent(template_spec, 6),
        indent(spec, 2)
    )
}

fn class(spec: &str) -> String {
    format!(
        "apiVersion: aws.stowage.dev/v1\nkind: EC2NodeClass\nmetadata: {{name: c}}\nspec:\n{}\n",
        indent(spec, 2)
    )
}

fn claim(spec: &str) -> String {
    format!(
        "apiVersion: stowage.dev/v1\nkind: NodeClaim\nmetadata: {{name: claim}}\nspec:\n{}\n",
        indent(spec, 2)
    )
}

fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

const CLASS_OK: &str = "amiSelectorTerms: [{alias: al2023@latest}]
subnetSelectorTerms: [{tags: {stowage.dev/discovery: demo}}]
securityGroupSelectorTerms: [{tags: {stowage.dev/discovery: demo}}]
role: StowageNodeRole";

fn class_with(replace: &str, with: &str) -> String {
    assert!(
        CLASS_OK.contains(replace) || replace.is_empty(),
        "{replace}"
    );
    if replace.is_empty() {
        return class(&format!("{CLASS_OK}\n{with}"));
    }
    class(&CLASS_OK.replace(replace, with))
}

fn bad_manifests() -> Vec<(&'static str, String, &'static str)> {
    let ref_ok = "nodeClassRef: {group: aws.stowage.dev, kind: EC2NodeClass, name: default}";
    vec![
        // --- NodePool: requirements ---
        (
            "In without values",
            pool(
                "requirements: [{key: topology.kubernetes.io/zone, operator: In}]",
                "",
            ),
            "spec.template.spec.requirements[0].values",
        ),
        (
            "NotIn without values",
            pool(
                "requirements: [{key: team, operator: NotIn, values: []}]",
                "",
            ),
            "spec.template.spec.requirements[0].values",
        ),
        (
            "Exists with values",
            pool(
                "requirements: [{key: team, operator: Exists, values: [a]}]",
                "",
            ),
            "spec.template.spec.requirements[0].values",
        ),
        (
            "Gt with two values",
            pool(
                "requirements: [{key: aws.stowage.dev/instance-cpu, operator: Gt, values: ['1', '2']}]",
                "",
            ),
            "spec.template.spec.requirements[0].values",
        ),
        (
            "Lt with a word",
            pool(
                "requirements: [{key: aws.stowage.dev/instance-cpu, operator: Lt, values: [many]}]",
                "",
            ),
            "spec.template.spec.requirements[0].values",
        ),
        (
            "Gte negative",
            pool(
                "requirements: [{key: aws.stowage.dev/instance-cpu, operator: Gte, values: ['-1']}]",
                "",
            ),
            "spec.template.spec.requirements[0].values",
        ),
        (
            "minValues above values",
            pool(
                "requirements:\n- {key: stowage.dev/capacity-type, operator: In, values: [spot]}\n- {key: node.kubernetes.io/instance-type, operator: In, values: [m5.large, c5.large], minValues: 3}",
                "",
            ),
            "spec.template.spec.requirements[1].minValues",
        ),
        (
            "minValues zero",
            pool(
                "requirements: [{key: node.kubernetes.io/instance-type, operator: Exists, minValues: 0}]",
                "",
            ),
            "spec.template.spec.requirements[0].minValues",
        ),
        (
            "minValues above 50",
            pool(
                "requirements: [{key: node.kubernetes.io/instance-type, operator: Exists, minValues: 51}]",
                "",
            ),
            "spec.template.spec.requirements[0].minValues",
        ),
        (
            "requirement on hostname",
            pool(
                "requirements: [{key: kubernetes.io/hostname, operator: In, values: [a]}]",
                "",
            ),
            "spec.template.spec.requirements[0].key",
        ),
        (
            "requirement on nodepool label",
            pool(
                "requirements: [{key: stowage.dev/nodepool, operator: In, values: [a]}]",
                "",
            ),
            "spec.template.spec.requirements[0].key",
        ),
        (
            "requirement in stowage.dev domain",
            pool(
                "requirements: [{key: stowage.dev/secret, operator: Exists}]",
                "",
            ),
            "spec.template.spec.requirements[0].key",
        ),
        (
            "requirement in aws.stowage.dev domain",
            pool(
                "requirements: [{key: aws.stowage.dev/instance-colour, operator: Exists}]",
                "",
            ),
            "spec.template.spec.requirements[0].key",
        ),
        (
            "requirement in k8s.io domain",
            pool("requirements: [{key: k8s.io/thing, operator: Exists}]", ""),
            "spec.template.spec.requirements[0].key",
        ),
        (
            "requirement key not qualified",
            pool("requirements: [{key: 'bad key!', operator: Exists}]", ""),
            "spec.template.spec.requirements[0].key",
        ),
        (
            "requirement value too long",
            pool(
                &format!(
                    "requirements: [{{key: team, operator: In, values: [{}]}}]",
                    "a".repeat(64)
                ),
                "",
            ),
            "spec.template.spec.requirements[0].values[0]",
        ),
        // --- NodePool: template metadata, taints, nodeClassRef ---
        (
            "label in stowage.dev",
            pool("", "").replace(
                "  template:\n",
                "  template:\n    metadata: {labels: {stowage.dev/registered: 'true'}}\n",
            ),
            "spec.template.metadata.labels[stowage.dev/registered]",
        ),
        (
            "nodepool label",
            pool("", "").replace(
                "  template:\n",
                "  template:\n    metadata: {labels: {stowage.dev/nodepool: other}}\n",
            ),
            "spec.template.metadata.labels[stowage.dev/nodepool]",
        ),
        (
            "hostname label",
            pool("", "").replace(
                "  template:\n",
                "  template:\n    metadata: {labels: {kubernetes.io/hostname: h}}\n",
            ),
            "spec.template.metadata.labels[kubernetes.io/hostname]",
        ),
        (
            "label value invalid",
            pool("", "").replace(
                "  template:\n",
                "  template:\n    metadata: {labels: {team: 'a b'}}\n",
            ),
            "spec.template.metadata.labels[team]",
        ),
        (
            "taint effect unknown",
            pool(
                "taints: [{key: dedicated, value: gpu, effect: Sometimes}]",
                "",
            ),
            "spec.template.spec.taints[0].effect",
        ),
        (
            "startup taint key invalid",
            pool("startupTaints: [{key: '-bad', effect: NoSchedule}]", ""),
            "spec.template.spec.startupTaints[0].key",
        ),
        (
            "nodeClassRef empty name",
            pool("", "").replace("name: default}", "name: ''}"),
            "spec.template.spec.nodeClassRef.name",
        ),
        (
            "nodeClassRef unknown kind",
            pool("", "").replace("kind: EC2NodeClass", "kind: GCENodeClass"),
            "spec.template.spec.nodeClassRef.kind",
        ),
        (
            "nodeClassRef group with slash",
            pool("", "").replace("group: aws.stowage.dev", "group: aws.stowage.dev/v1"),
            "spec.template.spec.nodeClassRef.group",
        ),
        (
            "pool name too long for a label value",
            pool("", "").replace("name: p}", &format!("name: {}}}", "p".repeat(64))),
            "metadata.name",
        ),
        // --- NodePool: disruption, limits, weight, capacityMix ---
        (
            "budget nodes 150%",
            pool("", "disruption: {budgets: [{nodes: 150%}]}"),
            "spec.disruption.budgets[0].nodes",
        ),
        (
            "budget nodes word",
            pool("", "disruption: {budgets: [{nodes: ten}]}"),
            "spec.disruption.budgets[0].nodes",
        ),
        (
            "budget nodes negative",
            pool("", "disruption: {budgets: [{nodes: '10%'}, {nodes: '-1'}]}"),
            "spec.disruption.budgets[1].nodes",
        ),
        (
            "budget schedule 4 fields",
            pool(
                "",
                "disruption: {budgets: [{nodes: '0', schedule: '0 9 * *', duration: 8h}]}",
            ),
            "spec.disruption.budgets[0].schedule",
        ),
        (
            "budget schedule bad hour",
            pool(
                "",
                "disruption: {budgets: [{nodes: '0', schedule: '0 25 * * *', duration: 8h}]}",
            ),
            "spec.disruption.budgets[0].schedule",
        ),
        (
            "budget schedule bad macro",
            pool(
                "",
                "disruption: {budgets: [{nodes: '0', schedule: '@fortnightly', duration: 8h}]}",
            ),
            "spec.disruption.budgets[0].schedule",
        ),
        (
            "budget schedule without duration",
            pool(
                "",
                "disruption: {budgets: [{nodes: '0', schedule: '@daily'}]}",
            ),
            "spec.disruption.budgets[0].duration",
        ),
        (
            "budget duration without schedule",
            pool("", "disruption: {budgets: [{nodes: '0', duration: 1h}]}"),
            "spec.disruption.budgets[0].schedule",
        ),
        (
            "limit not a quantity",
            pool("", "limits: {cpu: lots}"),
            "spec.limits[cpu]",
        ),
        (
            "limit negative",
            pool("", "limits: {memory: -1Gi}"),
            "spec.limits[memory]",
        ),
        (
            "limit resource name invalid",
            pool("", "limits: {'bad name': '1'}"),
            "spec.limits[bad name]",
        ),
        ("weight zero", pool("", "weight: 0"), "spec.weight"),
        ("weight 101", pool("", "weight: 101"), "spec.weight"),
        (
            "capacityMix percent 101",
            pool("", "capacityMix: {onDemandPercentAboveBase: 101}"),
            "spec.capacityMix.onDemandPercentAboveBase",
        ),
        (
            "capacityMix percent negative",
            pool("", "capacityMix: {onDemandPercentAboveBase: -5}"),
            "spec.capacityMix.onDemandPercentAboveBase",
        ),
        (
            "capacityMix base not a quantity",
            pool("", "capacityMix: {onDemandBase: four}"),
            "spec.capacityMix.onDemandBase",
        ),
        (
            "capacityMix scope selector key invalid",
            pool(
                "",
                "capacityMix: {onDemandPercentAboveBase: 5, scope: {nodePoolSelector: {matchLabels: {'bad key!': general}}}}",
            ),
            "spec.capacityMix.scope.nodePoolSelector.matchLabels[bad key!]",
        ),
        (
            "capacityMix scope selector value invalid",
            pool(
                "",
                "capacityMix: {onDemandPercentAboveBase: 5, scope: {nodePoolSelector: {matchLabels: {tier: 'not a value'}}}}",
            ),
            "spec.capacityMix.scope.nodePoolSelector.matchLabels[tier]",
        ),
        (
            "spotBlastRadius zero",
            pool("", "spotBlastRadius: {maxPodsPerWorkload: 0}"),
            "spec.spotBlastRadius.maxPodsPerWorkload",
        ),
        // --- NodeClaim ---
        (
            "claim In without values",
            claim(&format!(
                "{ref_ok}\nrequirements: [{{key: topology.kubernetes.io/zone, operator: In}}]"
            )),
            "spec.requirements[0].values",
        ),
        (
            "claim requirement on hostname",
            claim(&format!(
                "{ref_ok}\nrequirements: [{{key: kubernetes.io/hostname, operator: In, values: [h]}}]"
            )),
            "spec.requirements[0].key",
        ),
        (
            "claim bad request quantity",
            claim(&format!("{ref_ok}\nresources: {{requests: {{cpu: 1x}}}}")),
            "spec.resources.requests[cpu]",
        ),
        (
            "claim empty nodeClassRef group",
            claim("nodeClassRef: {group: '', kind: EC2NodeClass, name: default}"),
            "spec.nodeClassRef.group",
        ),
        (
            "claim taint effect",
            claim(&format!("{ref_ok}\ntaints: [{{key: a, effect: NoWay}}]")),
            "spec.taints[0].effect",
        ),
        // --- EC2NodeClass ---
        (
            "role and instanceProfile",
            class_with("", "instanceProfile: StowageProfile"),
            "spec.role",
        ),
        (
            "neither role nor instanceProfile",
            class_with("role: StowageNodeRole", ""),
            "spec.role",
        ),
        (
            "alias unknown family",
            class_with("alias: al2023@latest", "alias: windows2022@latest"),
            "spec.amiSelectorTerms[0].alias",
        ),
        (
            "alias without version",
            class_with("alias: al2023@latest", "alias: al2023"),
            "spec.amiSelectorTerms[0].alias",
        ),
        (
            "alias bad version",
            class_with("alias: al2023@latest", "alias: 'bottlerocket@1.30'"),
            "spec.amiSelectorTerms[0].alias",
        ),
        (
            "alias with tags",
            class_with(
                "{alias: al2023@latest}",
                "{alias: al2023@latest, tags: {a: b}}",
            ),
            "spec.amiSelectorTerms[0].alias",
        ),
        (
            "alias not alone",
            class_with(
                "[{alias: al2023@latest}]",
                "[{alias: al2023@latest}, {id: ami-0123abcd}]",
            ),
            "spec.amiSelectorTerms[0].alias",
        ),
        (
            "ami id with name",
            class_with(
                "[{alias: al2023@latest}]",
                "[{id: ami-0123abcd, name: my-ami}]\namiFamily: AL2023",
            ),
            "spec.amiSelectorTerms[0].id",
        ),
        (
            "ami id malformed",
            class_with(
                "[{alias: al2023@latest}]",
                "[{id: image-1}]\namiFamily: AL2023",
            ),
            "spec.amiSelectorTerms[0].id",
        ),
        (
            "ami owner only",
            class_with(
                "[{alias: al2023@latest}]",
                "[{owner: self}]\namiFamily: AL2023",
            ),
            "spec.amiSelectorTerms[0]",
        ),
        (
            "no ami terms",
            class_with(
                "amiSelectorTerms: [{alias: al2023@latest}]",
                "amiSelectorTerms: []",
            ),
            "spec.amiSelectorTerms",
        ),
        (
            "amiFamily missing without alias",
            class_with("[{alias: al2023@latest}]", "[{name: my-ami}]"),
            "spec.amiFamily",
        ),
        (
            "amiFamily contradicts alias",
            class_with("", "amiFamily: Bottlerocket"),
            "spec.amiFamily",
        ),
        (
            "subnet id and tags",
            class_with(
                "[{tags: {stowage.dev/discovery: demo}}]\nsecurity",
                "[{id: subnet-0abc, tags: {a: b}}]\nsecurity",
            ),
            "spec.subnetSelectorTerms[0].id",
        ),
        (
            "subnet empty term",
            class_with(
                "[{tags: {stowage.dev/discovery: demo}}]\nsecurity",
                "[{}]\nsecurity",
            ),
            "spec.subnetSelectorTerms[0]",
        ),
        (
            "subnet tag value empty",
            class_with(
                "[{tags: {stowage.dev/discovery: demo}}]\nsecurity",
                "[{tags: {env: ''}}]\nsecurity",
            ),
            "spec.subnetSelectorTerms[0].tags[env]",
        ),
        (
            "no subnet terms",
            class_with(
                "subnetSelectorTerms: [{tags: {stowage.dev/discovery: demo}}]",
                "subnetSelectorTerms: []",
            ),
            "spec.subnetSelectorTerms",
        ),
        (
            "security group id and name",
            class_with(
                "securityGroupSelectorTerms: [{tags: {stowage.dev/discovery: demo}}]",
                "securityGroupSelectorTerms: [{id: sg-0abc, name: web}]",
            ),
            "spec.securityGroupSelectorTerms[0].id",
        ),
        (
            "security group id malformed",
            class_with(
                "securityGroupSelectorTerms: [{tags: {stowage.dev/discovery: demo}}]",
                "securityGroupSelectorTerms: [{id: group-1}]",
            ),
            "spec.securityGroupSelectorTerms[0].id",
        ),
        (
            "capacity reservation id and tags",
            class_with(
                "",
                "capacityReservationSelectorTerms: [{id: cr-0abc, tags: {a: b}}]",
            ),
            "spec.capacityReservationSelectorTerms[0].id",
        ),
        (
            "capacity reservation owner malformed",
            class_with(
                "",
                "capacityReservationSelectorTerms: [{tags: {a: b}, ownerID: '123'}]",
            ),
            "spec.capacityReservationSelectorTerms[0].ownerID",
        ),
        (
            "two root volumes",
            class_with(
                "",
                "blockDeviceMappings:\n- {deviceName: /dev/xvda, rootVolume: true, ebs: {volumeSize: 20Gi}}\n- {deviceName: /dev/xvdb, rootVolume: true, ebs: {volumeSize: 20Gi}}",
            ),
            "spec.blockDeviceMappings",
        ),
        (
            "volume without size or snapshot",
            class_with(
                "",
                "blockDeviceMappings: [{deviceName: /dev/xvda, ebs: {volumeType: gp3}}]",
            ),
            "spec.blockDeviceMappings[0].ebs",
        ),
        (
            "volume too big",
            class_with(
                "",
                "blockDeviceMappings: [{deviceName: /dev/xvda, ebs: {volumeSize: 100Ti}}]",
            ),
            "spec.blockDeviceMappings[0].ebs.volumeSize",
        ),
        (
            "volume type unknown",
            class_with(
                "",
                "blockDeviceMappings: [{deviceName: /dev/xvda, ebs: {volumeSize: 20Gi, volumeType: gp9}}]",
            ),
            "spec.blockDeviceMappings[0].ebs.volumeType",
        ),
        (
            "hop limit zero",
            class_with("", "metadataOptions: {httpPutResponseHopLimit: 0}"),
            "spec.metadataOptions.httpPutResponseHopLimit",
        ),
        (
            "http tokens unknown",
            class_with("", "metadataOptions: {httpTokens: sometimes}"),
            "spec.metadataOptions.httpTokens",
        ),
        (
            "kubelet maxPods zero",
            class_with("", "kubelet: {maxPods: 0}"),
            "spec.kubelet.maxPods",
        ),
        (
            "kubelet reserved unknown resource",
            class_with("", "kubelet: {systemReserved: {gpu: '1'}}"),
            "spec.kubelet.systemReserved[gpu]",
        ),
        (
            "kubelet eviction bad value",
            class_with("", "kubelet: {evictionHard: {memory.available: 120%}}"),
            "spec.kubelet.evictionHard[memory.available]",
        ),
        (
            "kubelet clusterDNS not an IP",
            class_with("", "kubelet: {clusterDNS: [dns.local]}"),
            "spec.kubelet.clusterDNS[0]",
        ),
        (
            "capacity reservations are not supported yet",
            class_with(
                "",
                "capacityReservationSelectorTerms: [{id: cr-0123abcd}, {tags: {a: b}, ownerID: '123456789012'}]",
            ),
            "spec.capacityReservationSelectorTerms",
        ),
        (
            "restricted tag",
            class_with("", "tags: {kubernetes.io/cluster/demo: owned}"),
            "spec.tags[kubernetes.io/cluster/demo]",
        ),
        (
            "nodepool tag",
            class_with("", "tags: {stowage.dev/nodepool: x}"),
            "spec.tags[stowage.dev/nodepool]",
        ),
    ]
}

#[test]
fn every_bad_manifest_is_rejected_naming_its_field() {
    let cases = bad_manifests();
    assert!(
        cases.len() >= 40,
        "the table should hold at least 40 bad manifests, has {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for (name, yaml, path) in &cases {
        match validate(yaml) {
            Ok(()) => failures.push(format!("{name}: accepted\n{yaml}")),
            Err(errors) => {
                if !errors.iter().any(|e| e.path == *path) {
                    failures.push(format!(
                        "{name}: expected an error at {path}, got {errors:?}"
                    ));
                }
                for e in &errors {
                    assert!(
                        !e.message.is_empty()
                            && (e.path.starts_with("spec") || e.path == "metadata.name"),
                        "{name}: {e:?}"
                    );
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn good_manifests_pass() {
    let good = [
        pool("", ""),
        pool(
            "requirements:\n- {key: stowage.dev/capacity-type, operator: In, values: [spot, on-demand]}\n- {key: aws.stowage.dev/instance-category, operator: In, values: [c, m, r], minValues: 2}\n- {key: aws.stowage.dev/instance-generation, operator: Gt, values: ['4']}\n- {key: kubernetes.io/arch, operator: In, values: [amd64, arm64]}\n- {key: node.kubernetes.io/instance-type, operator: Exists, minValues: 10}\n- {key: example.com/team, operator: NotIn, values: [legacy]}\ntaints: [{key: dedicated, value: batch, effect: NoSchedule}]\nstartupTaints: [{key: node.cilium.io/agent-not-ready, effect: NoExecute}]\nexpireAfter: Never\nterminationGracePeriod: 48h",
            "disruption:\n  consolidationPolicy: WhenEmpty\n  consolidateAfter: 30s\n  budgets:\n  - {nodes: '20%', reasons: [Empty, Drifted]}\n  - {nodes: '0', schedule: '0 9 * * mon-fri', duration: 8h}\n  - {nodes: '5', schedule: '@daily', duration: 1h30m}\nlimits: {cpu: '1000', memory: 1000Gi, nvidia.com/gpu: '8'}\nweight: 50\ncapacityMix: {onDemandBase: '16', onDemandPercentAboveBase: 5, scope: {nodePoolSelector: {matchLabels: {example.com/tier: general}}}}\nspotBlastRadius: {maxPodsPerWorkload: 8}",
        )
        .replace("  template:\n", "  template:\n    metadata:\n      labels: {team: web, node.kubernetes.io/role: worker, stowage.dev/capacity-type: spot}\n      annotations: {example.com/owner: me}\n"),
        // The disruption controller moves fallback on-demand capacity back to spot.
        pool(
            "",
            "capacityMix: {onDemandPercentAboveBase: 5, restoreSpotAfter: 2h}",
        ),
        // A cluster-wide scope (every pool).
        pool(
            "",
            "capacityMix: {onDemandPercentAboveBase: 5, scope: {nodePoolSelector: {}}}",
        ),
        class(CLASS_OK),
        class_with("role: StowageNodeRole", "instanceProfile: StowageProfile"),
        class_with(
            "[{alias: al2023@latest}]",
            "[{name: 'my-ami-*', owner: self}, {id: ami-0123456789abcdef0}, {tags: {team: web}}]\namiFamily: Custom",
        ),
        class_with("", "blockDeviceMappings: [{deviceName: /dev/xvda, rootVolume: true, ebs: {volumeSize: 100Gi, volumeType: gp3, encrypted: true}}]\nmetadataOptions: {httpTokens: required, httpPutResponseHopLimit: 2}\nkubelet: {maxPods: 110, systemReserved: {cpu: 100m, memory: 100Mi}, evictionHard: {memory.available: 5%, nodefs.available: 1Gi}, clusterDNS: [10.100.0.10]}\ntags: {team: web}"),
        class_with("alias: al2023@latest", "alias: bottlerocket@v1.30.0"),
        claim("nodeClassRef: {group: aws.stowage.dev, kind: EC2NodeClass, name: default}\nrequirements: [{key: node.kubernetes.io/instance-type, operator: In, values: [m5.large]}, {key: stowage.dev/nodepool, operator: In, values: [default]}]\nresources: {requests: {cpu: 1500m, memory: 2Gi, pods: '3'}}"),
    ];
    for yaml in good {
        if let Err(errors) = validate(&yaml) {
            panic!("good manifest rejected: {errors:?}\n{yaml}");
        }
        // As the API server stores it: defaulted from the CRD schema, valid against the schema,
        // and still valid for the Rust validation.
        let defaulted = defaulted_by_the_api_server(&yaml);
        let text = serde_json::to_string(&defaulted).unwrap();
        if let Err(errors) = validate(&text) {
            panic!("defaulted manifest rejected: {errors:?}\n{text}");
        }
    }
}

/// `yaml` defaulted from its kind's CRD schema, asserting it then validates against the schema.
fn defaulted_by_the_api_server(yaml: &str) -> serde_json::Value {
    let mut object: serde_json::Value = serde_saphyr::from_str(yaml).expect("test manifest parses");
    let kind = object["kind"]
        .as_str()
        .expect("test manifest has a kind")
        .to_string();
    let crd = stowage_api::crds::all()
        .expect("CRDs generate")
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .expect("a CRD for every test kind");
    let crd = serde_json::to_value(&crd).expect("CRD converts to JSON");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    stowage_api::openapi::apply_defaults(schema, &mut object);
    let violations = stowage_api::openapi::validate(schema, &object);
    assert!(
        violations.is_empty(),
        "the schema rejects {kind}: {violations:?}\n{object:#}"
    );
    object
}

#[test]
fn the_schema_rejects_what_the_api_server_would() {
    let crd = serde_json::to_value(&stowage_api::crds::all().unwrap()[2]).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut object: serde_json::Value = serde_saphyr::from_str(&class("role: r")).unwrap();
    stowage_api::openapi::apply_defaults(schema, &mut object);
    let mut found: Vec<String> = stowage_api::openapi::validate(schema, &object)
        .iter()
        .map(ToString::to_string)
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            "spec.amiSelectorTerms: Required value",
            "spec.securityGroupSelectorTerms: Required value",
            "spec.subnetSelectorTerms: Required value",
        ]
    );
}

#[test]
fn defaults_of_a_minimal_class_are_imdsv2_with_hop_limit_1() {
    let c: EC2NodeClass = serde_saphyr::from_str(&class(CLASS_OK)).unwrap();
    assert_eq!(c.spec.metadata_options.http_tokens, "required");
    assert_eq!(c.spec.metadata_options.http_put_response_hop_limit, 1);
    assert_eq!(c.ami_family(), Some(stowage_api::AmiFamily::AL2023));
}

#[test]
fn unsupported_fields_say_not_supported_yet() {
    let errors = validate(&class_with(
        "",
        "capacityReservationSelectorTerms: [{id: cr-0123abcd}]",
    ))
    .unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].path, "spec.capacityReservationSelectorTerms");
    assert!(
        errors[0].message.starts_with("not supported yet"),
        "{errors:?}"
    );
}

#[test]
fn errors_render_with_their_path() {
    let errors = validate(&pool("", "weight: 0")).unwrap_err();
    assert_eq!(
        stowage_api::validation::summarize(&errors),
        "spec.weight: weight must be between 1 and 100, got 0"
    );
}
