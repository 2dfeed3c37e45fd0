//! Node selector requirements (`key`, `operator`, `values`, `minValues`) and their algebra.
//!
//! Key decision: [`Requirement`] is the wire shape users write; [`Requirements`] is the compiled
//! form (one set per key) that supports intersection, compatibility and label matching without
//! allocating on the match path.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a requirement relates a label key to its values.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Operator {
    /// The label's value is one of `values`.
    In,
    /// The label is absent or its value is none of `values`.
    NotIn,
    /// The label is present (any value).
    Exists,
    /// The label is absent.
    DoesNotExist,
    /// The label's value is an integer greater than the single value.
    Gt,
    /// The label's value is an integer less than the single value.
    Lt,
    /// The label's value is an integer greater than or equal to the single value.
    Gte,
    /// The label's value is an integer less than or equal to the single value.
    Lte,
}

impl Operator {
    pub const ALL: [Operator; 8] = [
        Operator::In,
        Operator::NotIn,
        Operator::Exists,
        Operator::DoesNotExist,
        Operator::Gt,
        Operator::Lt,
        Operator::Gte,
        Operator::Lte,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
            Operator::Gt => "Gt",
            Operator::Lt => "Lt",
            Operator::Gte => "Gte",
            Operator::Lte => "Lte",
        }
    }

    /// Gt, Lt, Gte or Lte: takes exactly one non-negative integer value.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Operator::Gt | Operator::Lt | Operator::Gte | Operator::Lte
        )
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One requirement as written in a manifest (Karpenter's `NodeSelectorRequirementWithMinValues`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Requirement {
    /// The label key, e.g. `node.kubernetes.io/instance-type`.
    pub key: String,
    pub operator: Operator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// For `In` (and `Exists`): the least number of distinct values the launched capacity must
    /// be able to choose from (flexibility floor), 1..50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_values: Option<i32>,
}

impl Requirement {
    pub fn new<I, S>(key: &str, operator: Operator, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Requirement {
            key: key.to_string(),
            operator,
            values: values.into_iter().map(Into::into).collect(),
            min_values: None,
        }
    }

    /// `key In (values)`.
    pub fn in_<I, S>(key: &str, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Requirement::new(key, Operator::In, values)
    }

    /// `key NotIn (values)`.
    pub fn not_in<I, S>(key: &str, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Requirement::new(key, Operator::NotIn, values)
    }

    /// `key Exists`.
    pub fn exists(key: &str) -> Self {
        Requirement::new(key, Operator::Exists, Vec::<String>::new())
    }

    /// `key DoesNotExist`.
    pub fn does_not_exist(key: &str) -> Self {
        Requirement::new(key, Operator::DoesNotExist, Vec::<String>::new())
    }

    pub fn with_min_values(mut self, min_values: i32) -> Self {
        self.min_values = Some(min_values);
        self
    }
}
