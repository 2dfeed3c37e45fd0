//! Cluster Autoscaler's own configuration: the priority expander's ConfigMap (priority -> node
//! group name patterns) and the scale-down flags of its Deployment.

use std::collections::BTreeMap;

use crate::model::{CaOptions, Src};
use crate::source::{At, Doc};
use crate::{Report, Result, Severity};

/// One priority tier: its value and its patterns, each with its source.
#[derive(Clone, Debug)]
pub struct Tier {
    pub priority: i64,
    pub patterns: Vec<(regex::Regex, String)>,
}

/// The tiers of a priority-expander ConfigMap (`data.priorities`: YAML of priority -> list of
/// regular expressions, matched anywhere in a node group's name as Go's `MatchString` does).
pub fn priorities(doc: &Doc) -> Result<Vec<Tier>> {
    let root = doc.root();
    let at = root
        .get("data")
        .and_then(|d| d.get("priorities"))
        .ok_or_else(|| root.err("field data.priorities is missing"))?;
    let text = at.str()?;
    let parsed: BTreeMap<String, serde_json::Value> = serde_saphyr::from_str(text)
        .map_err(|e| at.err(format!("invalid priorities YAML: {e}")))?;
    // Lines inside the block: the key line of the block plus the line within it.
    let base = doc.lines.get(at.path()).copied();
    let inner = crate::source::yaml_lines(text)
        .into_iter()
        .next()
        .unwrap_or_default();
    let mut tiers = Vec::new();
    for (key, patterns) in parsed {
        let field = format!("{}[{key}]", at.path());
        let err = |m: String| at.err(m).at_field(&field);
        let priority: i64 = key
            .trim()
            .parse()
            .map_err(|_| err(format!("priority {key:?} is not an integer")))?;
        let list = match patterns {
            serde_json::Value::Array(items) => items,
            serde_json::Value::String(s) => vec![serde_json::Value::String(s)],
            other => {
                return Err(err(format!(
                    "expected a list of regular expressions, got {other}"
                )));
            }
        };
        let mut compiled = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let Some(p) = p.as_str() else {
                return Err(err(format!("pattern {i} is not a string")));
            };
            let re = regex::Regex::new(p)
                .map_err(|e| err(format!("pattern {p:?} is not a regular expression: {e}")))?;
            let line = inner
                .get(&format!("{key}[{i}]"))
                .or_else(|| inner.get(key.as_str()))
                .zip(base)
                .map(|(l, b)| format!("{}:{}", doc.file, b + l));
            let src = format!(
                "{} {}[{key}][{i}]",
                line.unwrap_or_else(|| doc.locate(at.path())),
                at.path()
            );
            compiled.push((re, src));
        }
        tiers.push(Tier {
            priority,
            patterns: compiled,
        });
    }
    tiers.sort_by_key(|t| std::cmp::Reverse(t.priority));
    Ok(tiers)
}

impl crate::Error {
    /// The same error at another field of its document.
    fn at_field(self, field: &str) -> Self {
        match self {
            crate::Error::Field {
                file,
                document,
                message,
                ..
            } => crate::Error::Field {
                file,
                document,
                field: field.to_string(),
                message,
            },
            other => other,
        }
    }
}

/// A Go duration (`10m`, `10m0s`, `1h30m0s`) as a Stowage duration (`10m`, `1h30m`).
pub fn go_duration(at: &At<'_>, text: &str) -> Result<String> {
    let d: stowage_api::Duration = text
        .trim()
        .parse()
        .map_err(|_| at.err(format!("{text:?} is not a duration such as 10m or 1h30m0s")))?;
    Ok(d.to_string())
}

/// Flags of the Cluster Autoscaler container that map to disruption settings; every other flag
/// with no Stowage meaning is reported.
pub fn flags(doc: &Doc, ca: &mut CaOptions, report: &mut Report) -> Result<()> {
    let root = doc.root();
    let containers = root
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("spec"))
        .and_then(|s| s.get("containers"))
        .ok_or_else(|| root.err("field spec.template.spec.containers is missing"))?;
    for c in containers.items()? {
        for field in ["command", "args"] {
            let Some(list) = c.get(field) else { continue };
            for item in list.items()? {
                let word = item.str()?;
                let Some(flag) = word.strip_prefix("--") else {
                    continue;
                };
                let (name, value) = flag.split_once('=').unwrap_or((flag, "true"));
                match name {
                    "scale-down-utilization-threshold" => {
                        let v: f64 = value.parse().map_err(|_| {
                            item.err(format!("{value:?} is not a number between 0 and 1"))
                        })?;
                        ca.threshold = Some(Src::new(v, item.src()));
                    }
                    "scale-down-unneeded-time" => {
                        ca.unneeded = Some(Src::new(go_duration(&item, value)?, item.src()));
                    }
                    "scale-down-enabled" => {
                        ca.enabled = Some(Src::new(value != "false", item.src()));
                    }
                    "expander" if value.split(',').any(|e| e == "priority") => {}
                    "expander" => report.note(
                        Severity::Mapped,
                        item.src(),
                        format!("--expander={value}: Stowage always picks the cheapest instances that fit, highest NodePool weight first"),
                    ),
                    "cloud-provider" | "v" | "logtostderr" | "stderrthreshold" | "node-group-auto-discovery" | "nodes" => {}
                    "balance-similar-node-groups" => report.note(
                        Severity::Mapped,
                        item.src(),
                        "--balance-similar-node-groups: one NodePool spans zones; spread pods with topologySpreadConstraints instead",
                    ),
                    other => report.note(
                        Severity::NotMapped,
                        item.src(),
                        format!("Cluster Autoscaler flag --{other} has no Stowage equivalent"),
                    ),
                }
            }
        }
    }
    // The flags left out run with Cluster Autoscaler's defaults.
    let default_at = format!("{} (Cluster Autoscaler default)", doc.locate(""));
    if ca.threshold.is_none() {
        ca.threshold = Some(Src::new(0.5, default_at.clone()));
    }
    if ca.unneeded.is_none() {
        ca.unneeded = Some(Src::new("10m".to_string(), default_at));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> crate::source::Doc {
        crate::source::read("pri.yaml", text).unwrap().remove(0)
    }

    const PRIORITIES: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cluster-autoscaler-priority-expander}\ndata:\n  priorities: |-\n    10:\n      - .*\n    50:\n      - ^mgmt-.*\n";

    #[test]
    fn tiers_are_highest_first_and_each_pattern_knows_its_line() {
        let tiers = priorities(&doc(PRIORITIES)).unwrap();
        assert_eq!(
            tiers.iter().map(|t| t.priority).collect::<Vec<_>>(),
            [50, 10]
        );
        assert_eq!(tiers[0].patterns[0].1, "pri.yaml:9 data.priorities[50][0]");
        // Matched anywhere unless anchored, as Go's MatchString: `^mgmt-` misses the eksctl ASG
        // name, which is why groups are matched by their node group name as well.
        assert!(tiers[0].patterns[0].0.is_match("mgmt-spot-m5"));
        assert!(
            !tiers[0].patterns[0]
                .0
                .is_match("eksctl-seed-nodegroup-mgmt-spot-m5-NodeGroup-1")
        );
    }

    #[test]
    fn a_bad_pattern_is_refused_at_its_tier() {
        let err = priorities(&doc(&PRIORITIES.replace("^mgmt-.*", "\"(unclosed\""))).unwrap_err();
        assert!(
            err.to_string().starts_with("pri.yaml document 1 data.priorities[50]: pattern \"(unclosed\" is not a regular expression"),
            "{err}"
        );
    }

    #[test]
    fn go_durations_become_stowage_durations() {
        let d = doc(PRIORITIES);
        let at = d.root();
        assert_eq!(go_duration(&at, "10m0s").unwrap(), "10m");
        assert_eq!(go_duration(&at, "1h30m0s").unwrap(), "1h30m");
        assert!(go_duration(&at, "1.5h").is_err());
    }

    #[test]
    fn missing_flags_take_cluster_autoscaler_defaults() {
        let d = doc(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: cluster-autoscaler}\nspec:\n  template:\n    spec:\n      containers:\n        - name: ca\n          image: registry.k8s.io/autoscaling/cluster-autoscaler:v1.33.0\n          command: [./cluster-autoscaler, --scale-down-enabled=false]\n",
        );
        let mut ca = CaOptions::default();
        let mut report = Report::default();
        flags(&d, &mut ca, &mut report).unwrap();
        assert_eq!(ca.unneeded.unwrap().v, "10m");
        assert_eq!(ca.threshold.unwrap().v, 0.5);
        assert!(!ca.enabled.unwrap().v);
    }
}
