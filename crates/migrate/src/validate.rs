//! Every produced manifest, parsed back from its YAML text, must pass what the API server and
//! Stowage check: no field the CRD schema does not declare, the schema (after its defaults), and
//! the API's own validation (the rules the CEL expressions of the CRDs state).

use stowage_api::{EC2NodeClass, NodePool, labels, openapi};

use crate::{Error, Manifest, Output, Result};

/// Checks one manifest of `kind`; the error names it and every violation.
pub fn manifest(kind: &'static str, m: &Manifest) -> Result<()> {
    let bad = |message: String| Error::ValidateOutput {
        kind,
        name: m.name.clone(),
        message,
    };
    let value: serde_json::Value = serde_saphyr::from_str(&m.yaml)
        .map_err(|e| bad(format!("does not read back as YAML: {e}")))?;
    let group = if kind == "NodePool" {
        labels::GROUP
    } else {
        labels::AWS_GROUP
    };
    // Generating the CRDs is not free; every manifest of a kind is checked against one schema.
    static SCHEMAS: std::sync::OnceLock<[Option<serde_json::Value>; 2]> =
        std::sync::OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| {
        [
            stowage_api::crds::schema(labels::GROUP, "NodePool"),
            stowage_api::crds::schema(labels::AWS_GROUP, "EC2NodeClass"),
        ]
    });
    let schema = schemas[usize::from(group != labels::GROUP)]
        .as_ref()
        .ok_or_else(|| bad("no CRD schema".to_string()))?;
    let mut pruned = value.clone();
    let unknown = openapi::prune(schema, &mut pruned);
    if !unknown.is_empty() {
        return Err(bad(format!(
            "fields the CRD does not declare: {}",
            unknown.join(", ")
        )));
    }
    openapi::apply_defaults(schema, &mut pruned);
    let violations = openapi::validate(schema, &pruned);
    if !violations.is_empty() {
        let v: Vec<String> = violations.iter().map(ToString::to_string).collect();
        return Err(bad(format!("CRD schema: {}", v.join("; "))));
    }
    let errors = if kind == "NodePool" {
        let p: NodePool = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        p.validate()
    } else {
        let c: EC2NodeClass = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        c.validate()
    };
    errors.map_err(|e| bad(stowage_api::validation::summarize(&e)))
}

/// Checks every manifest of the output.
pub fn output(out: &Output) -> Result<()> {
    for m in &out.nodeclasses {
        manifest("EC2NodeClass", m)?;
    }
    for m in &out.nodepools {
        manifest("NodePool", m)?;
    }
    Ok(())
}
