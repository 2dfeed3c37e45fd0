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

/// The error for a requirement that cannot be compiled into a value set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequirementError {
    #[error(
        "requirement on {key:?}: operator {operator} needs exactly one integer value, got {values:?}"
    )]
    ParseIntegerBound {
        key: String,
        operator: Operator,
        values: Vec<String>,
    },
}

/// Two requirement sets cannot both hold: no node could satisfy them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("requirements on {key:?} are incompatible: {left} vs {right}")]
pub struct Incompatible {
    pub key: String,
    pub left: String,
    pub right: String,
}

/// An inclusive integer range; values of a Gt/Lt/Gte/Lte requirement must parse as an `i64` in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct IntRange {
    min: i64,
    max: i64,
}

impl IntRange {
    const EMPTY: IntRange = IntRange { min: 1, max: 0 };

    fn is_empty(self) -> bool {
        self.min > self.max
    }

    fn intersect(self, other: IntRange) -> IntRange {
        IntRange {
            min: self.min.max(other.min),
            max: self.max.min(other.max),
        }
    }

    fn contains_text(self, value: &str) -> bool {
        value
            .parse::<i64>()
            .is_ok_and(|v| self.min <= v && v <= self.max)
    }
}

/// The allowed values of one label key: an exact set over "label absent" plus every string value.
///
/// Representation: either a finite set of values (`complement == false`) or everything except a
/// finite set (`complement == true`), in the latter case optionally restricted to integers in a
/// range; plus whether an absent label is allowed. Every requirement operator is exactly one such
/// set, and the sets are closed under intersection, so `a ∩ b` matches a label exactly when both
/// `a` and `b` do.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ValueSet {
    complement: bool,
    /// Sorted and deduplicated.
    values: Vec<String>,
    /// Only with `complement`: values must be integers in this range.
    range: Option<IntRange>,
    /// Whether a node without the label satisfies the set.
    absent: bool,
    min_values: Option<u32>,
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort_unstable();
    values.dedup();
    values
}

impl ValueSet {
    /// Any value, or no label at all (no constraint).
    pub fn any() -> Self {
        ValueSet {
            complement: true,
            values: Vec::new(),
            range: None,
            absent: true,
            min_values: None,
        }
    }

    /// `In values`.
    pub fn in_values<I: IntoIterator<Item = S>, S: Into<String>>(values: I) -> Self {
        ValueSet {
            complement: false,
            values: sorted(values.into_iter().map(Into::into).collect()),
            range: None,
            absent: false,
            min_values: None,
        }
    }

    /// `NotIn values` (a missing label satisfies it).
    pub fn not_in_values<I: IntoIterator<Item = S>, S: Into<String>>(values: I) -> Self {
        ValueSet {
            complement: true,
            values: sorted(values.into_iter().map(Into::into).collect()),
            range: None,
            absent: true,
            min_values: None,
        }
    }

    /// `Exists`.
    pub fn exists() -> Self {
        ValueSet {
            absent: false,
            ..ValueSet::any()
        }
    }

    /// `DoesNotExist`.
    pub fn does_not_exist() -> Self {
        ValueSet {
            complement: false,
            values: Vec::new(),
            range: None,
            absent: true,
            min_values: None,
        }
    }

    fn int_range(range: IntRange) -> Self {
        ValueSet {
            range: Some(range),
            absent: false,
            ..ValueSet::any()
        }
    }

    /// The set a requirement stands for.
    pub fn from_requirement(r: &Requirement) -> Result<Self, RequirementError> {
        let bound = || -> Result<i64, RequirementError> {
            match r.values.as_slice() {
                [v] => v.parse::<i64>().ok(),
                _ => None,
            }
            .ok_or_else(|| RequirementError::ParseIntegerBound {
                key: r.key.clone(),
                operator: r.operator,
                values: r.values.clone(),
            })
        };
        let mut set = match r.operator {
            Operator::In => ValueSet::in_values(r.values.iter().cloned()),
            Operator::NotIn => ValueSet::not_in_values(r.values.iter().cloned()),
            Operator::Exists => ValueSet::exists(),
            Operator::DoesNotExist => ValueSet::does_not_exist(),
            Operator::Gt => ValueSet::int_range(match bound()?.checked_add(1) {
                Some(min) => IntRange { min, max: i64::MAX },
                None => IntRange::EMPTY,
            }),
            Operator::Lt => ValueSet::int_range(match bound()?.checked_sub(1) {
                Some(max) => IntRange { min: i64::MIN, max },
                None => IntRange::EMPTY,
            }),
            Operator::Gte => ValueSet::int_range(IntRange {
                min: bound()?,
                max: i64::MAX,
            }),
            Operator::Lte => ValueSet::int_range(IntRange {
                min: i64::MIN,
                max: bound()?,
            }),
        };
        set.min_values = r.min_values.and_then(|m| u32::try_from(m).ok());
        Ok(set)
    }

    /// Whether a label with this value satisfies the set. Does not allocate.
    pub fn has(&self, value: &str) -> bool {
        let listed = self
            .values
            .binary_search_by(|v| v.as_str().cmp(value))
            .is_ok();
        if self.complement {
            !listed && self.range.is_none_or(|r| r.contains_text(value))
        } else {
            listed
        }
    }

    /// Whether a node whose label is `label` (`None`: absent) satisfies the set.
    pub fn matches(&self, label: Option<&str>) -> bool {
        match label {
            Some(value) => self.has(value),
            None => self.absent,
        }
    }

    /// Whether a node without the label satisfies the set (NotIn, DoesNotExist).
    pub fn allows_absent(&self) -> bool {
        self.absent
    }

    /// Whether some label value satisfies the set (ignoring absence).
    pub fn has_any_value(&self) -> bool {
        if self.complement {
            // Infinitely many strings (and, in a non-empty range, infinitely many spellings of
            // each integer: "5", "05", "+5") remain after excluding finitely many.
            self.range.is_none_or(|r| !r.is_empty())
        } else {
            !self.values.is_empty()
        }
    }

    /// Nothing satisfies the set: not a value, not absence.
    pub fn is_empty(&self) -> bool {
        !self.absent && !self.has_any_value()
    }

    /// For `In`-like sets, the allowed values (sorted); for complements, the excluded ones.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether the allowed values are a finite list (`In`, `DoesNotExist`).
    pub fn is_finite(&self) -> bool {
        !self.complement
    }

    /// The only allowed value, if exactly one value is allowed and absence is not.
    pub fn single_value(&self) -> Option<&str> {
        match (self.complement, self.absent, self.values.as_slice()) {
            (false, false, [v]) => Some(v),
            _ => None,
        }
    }

    /// The least number of distinct values the set must keep (`minValues`).
    pub fn min_values(&self) -> Option<u32> {
        self.min_values
    }

    /// The operator that best describes the set.
    pub fn operator(&self) -> Operator {
        match (self.complement, self.absent) {
            (false, true) if self.values.is_empty() => Operator::DoesNotExist,
            (false, _) => Operator::In,
            (true, true) => Operator::NotIn,
            (true, false) => match self.range {
                Some(r) if r.min != i64::MIN => Operator::Gte,
                Some(_) => Operator::Lte,
                None => Operator::Exists,
            },
        }
    }

    /// Whether some label value (or absence) satisfies both sets. Does not allocate.
    pub fn intersects(&self, other: &ValueSet) -> bool {
        if self.absent && other.absent {
            return true;
        }
        match (self.complement, other.complement) {
            (false, _) => self.values.iter().any(|v| other.has(v)),
            (true, false) => other.values.iter().any(|v| self.has(v)),
            (true, true) => match (self.range, other.range) {
                (Some(a), Some(b)) => !a.intersect(b).is_empty(),
                (Some(r), None) | (None, Some(r)) => !r.is_empty(),
                (None, None) => true,
            },
        }
    }

    /// The values (and absence) both sets allow; `minValues` is the larger of the two.
    pub fn intersection(&self, other: &ValueSet) -> ValueSet {
        let absent = self.absent && other.absent;
        let min_values = self.min_values.max(other.min_values);
        match (self.complement, other.complement) {
            (false, _) | (_, false) => {
                let (finite, rest) = if self.complement {
                    (other, self)
                } else {
                    (self, other)
                };
                ValueSet {
                    complement: false,
                    values: finite
                        .values
                        .iter()
                        .filter(|v| rest.has(v))
                        .cloned()
                        .collect(),
                    range: None,
                    absent,
                    min_values,
                }
            }
            (true, true) => {
                let range = match (self.range, other.range) {
                    (Some(a), Some(b)) => Some(a.intersect(b)),
                    (a, b) => a.or(b),
                };
                let mut values: Vec<String> = self
                    .values
                    .iter()
                    .chain(other.values.iter())
                    .cloned()
                    .collect();
                values.sort_unstable();
                values.dedup();
                if let Some(r) = range {
                    // Exclusions outside the range change nothing.
                    values.retain(|v| r.contains_text(v));
                }
                ValueSet {
                    complement: true,
                    values,
                    range,
                    absent,
                    min_values,
                }
            }
        }
    }

    /// The requirements (usually one) on `key` that express exactly this set.
    pub fn to_requirements(&self, key: &str) -> Vec<Requirement> {
        let req = |operator, values: Vec<String>| Requirement {
            key: key.to_string(),
            operator,
            values,
            min_values: None,
        };
        let mut out = Vec::new();
        if !self.complement {
            if self.values.is_empty() && self.absent {
                out.push(req(Operator::DoesNotExist, Vec::new()));
            } else {
                // A finite set that also allows absence never arises from intersecting
                // requirements; it is written as In (the stricter reading).
                out.push(req(Operator::In, self.values.clone()));
            }
        } else if self.absent {
            out.push(req(Operator::NotIn, self.values.clone()));
        } else {
            match self.range {
                None => out.push(req(Operator::Exists, Vec::new())),
                Some(r) if r.is_empty() => out.push(req(Operator::In, Vec::new())),
                Some(r) => {
                    if r.min != i64::MIN || r.max == i64::MAX {
                        out.push(req(Operator::Gte, vec![r.min.to_string()]));
                    }
                    if r.max != i64::MAX {
                        out.push(req(Operator::Lte, vec![r.max.to_string()]));
                    }
                }
            }
            if !self.values.is_empty() {
                out.push(req(Operator::NotIn, self.values.clone()));
            }
        }
        if let Some(first) = out.first_mut() {
            first.min_values = self.min_values.and_then(|m| i32::try_from(m).ok());
        }
        out
    }
}

impl fmt::Display for ValueSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for r in self.to_requirements("") {
            if !first {
                f.write_str(" and ")?;
            }
            first = false;
            write!(f, "{}", r.operator)?;
            if !r.values.is_empty() {
                write!(f, " {:?}", r.values)?;
            }
        }
        Ok(())
    }
}

/// A conjunction of per-key value sets: the compiled form of a requirement list.
///
/// Keys are kept sorted; lookups are binary searches and [`Requirements::matches`] does not
/// allocate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Requirements {
    entries: Vec<(String, ValueSet)>,
}

impl Requirements {
    /// No constraint.
    pub fn new() -> Self {
        Requirements::default()
    }

    /// Compiles a requirement list (requirements on the same key intersect).
    pub fn from_requirements<'a, I>(requirements: I) -> Result<Self, RequirementError>
    where
        I: IntoIterator<Item = &'a Requirement>,
    {
        let mut out = Requirements::new();
        for r in requirements {
            out.add(r)?;
        }
        Ok(out)
    }

    /// One `In [value]` per label: what a node with exactly these labels offers.
    pub fn from_labels<'a, I>(labels: I) -> Self
    where
        I: IntoIterator<Item = (&'a String, &'a String)>,
    {
        let mut out = Requirements::new();
        for (k, v) in labels {
            out.insert(k, ValueSet::in_values([v.as_str()]));
        }
        out
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// Intersects `set` into the constraint on `key`.
    pub fn insert(&mut self, key: &str, set: ValueSet) {
        match self.position(key) {
            Ok(i) => {
                let merged = self.entries[i].1.intersection(&set);
                self.entries[i].1 = merged;
            }
            Err(i) => self.entries.insert(i, (key.to_string(), set)),
        }
    }

    /// Intersects one requirement in.
    pub fn add(&mut self, requirement: &Requirement) -> Result<(), RequirementError> {
        let set = ValueSet::from_requirement(requirement)?;
        self.insert(&requirement.key, set);
        Ok(())
    }

    /// The constraint on `key`, if any.
    pub fn get(&self, key: &str) -> Option<&ValueSet> {
        self.position(key).ok().map(|i| &self.entries[i].1)
    }

    /// Whether `key` is constrained.
    pub fn has(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    /// Removes the constraint on `key`.
    pub fn remove(&mut self, key: &str) -> Option<ValueSet> {
        self.position(key).ok().map(|i| self.entries.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `(key, set)` pairs in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ValueSet)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The only value allowed for `key` (e.g. the zone of a claim pinned to one zone).
    pub fn single_value(&self, key: &str) -> Option<&str> {
        self.get(key)?.single_value()
    }

    /// Whether some node could satisfy every key (no key's set is empty).
    pub fn is_satisfiable(&self) -> bool {
        self.entries.iter().all(|(_, s)| !s.is_empty())
    }

    /// Narrows `self` by `other`.
    pub fn intersect(&mut self, other: &Requirements) {
        for (k, s) in &other.entries {
            self.insert(k, s.clone());
        }
    }

    /// Both constraints at once.
    pub fn intersection(&self, other: &Requirements) -> Requirements {
        let mut out = self.clone();
        out.intersect(other);
        out
    }

    /// Whether every key both constrain has a common value (or both allow absence).
    /// Keys constrained by one side only do not conflict. Does not allocate.
    pub fn intersects(&self, other: &Requirements) -> bool {
        self.first_conflict(other).is_none()
    }

    fn first_conflict<'a>(
        &'a self,
        other: &'a Requirements,
    ) -> Option<(&'a str, &'a ValueSet, &'a ValueSet)> {
        // Merge-walk two sorted lists.
        let (mut i, mut j) = (0, 0);
        while i < self.entries.len() && j < other.entries.len() {
            let (ka, a) = &self.entries[i];
            let (kb, b) = &other.entries[j];
            match ka.cmp(kb) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    if !a.intersects(b) {
                        return Some((ka, a, b));
                    }
                    i += 1;
                    j += 1;
                }
            }
        }
        None
    }

    /// Whether a node described by `self` (e.g. a NodePool template or a NodeClaim) could host a
    /// pod that requires `incoming`.
    ///
    /// Shared keys must intersect. A key only `incoming` constrains must allow an absent label,
    /// unless it is one of `defined_elsewhere` (labels the instance type will set, usually
    /// [`crate::labels::WELL_KNOWN`]).
    pub fn compatible(
        &self,
        incoming: &Requirements,
        defined_elsewhere: &[&str],
    ) -> Result<(), Incompatible> {
        if let Some((key, a, b)) = self.first_conflict(incoming) {
            return Err(Incompatible {
                key: key.to_string(),
                left: a.to_string(),
                right: b.to_string(),
            });
        }
        for (key, set) in &incoming.entries {
            if !set.allows_absent() && !self.has(key) && !defined_elsewhere.contains(&key.as_str())
            {
                return Err(Incompatible {
                    key: key.clone(),
                    left: "undefined".to_string(),
                    right: set.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Whether a node with these labels satisfies every requirement. Does not allocate.
    pub fn matches(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }

    /// [`Requirements::matches`] over any label lookup.
    pub fn matches_with<'a, F>(&self, label: F) -> bool
    where
        F: Fn(&str) -> Option<&'a str>,
    {
        self.entries.iter().all(|(k, s)| s.matches(label(k)))
    }

    /// The first key (in key order) whose requirement the labels do not satisfy.
    pub fn first_mismatch<'s>(
        &'s self,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Option<&'s str> {
        self.entries
            .iter()
            .find(|(k, s)| !s.matches(labels.get(k).map(String::as_str)))
            .map(|(k, _)| k.as_str())
    }

    /// Requirements expressing exactly these constraints, in key order (for a NodeClaim spec).
    pub fn to_requirements(&self) -> Vec<Requirement> {
        self.entries
            .iter()
            .flat_map(|(k, s)| s.to_requirements(k))
            .collect()
    }
}

impl fmt::Display for Requirements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, s) in &self.entries {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{k} {s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, operator: Operator, values: &[&str]) -> Requirement {
        Requirement::new(key, operator, values.iter().copied())
    }

    /// Kubernetes' reading of one requirement, written as plainly as possible (the oracle).
    fn naive(r: &Requirement, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&r.key);
        let int = |v: &String| v.parse::<i64>().ok();
        let bound = || r.values[0].parse::<i64>().unwrap();
        match r.operator {
            Operator::In => value.is_some_and(|v| r.values.contains(v)),
            Operator::NotIn => value.is_none_or(|v| !r.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Gt => value.and_then(int).is_some_and(|v| v > bound()),
            Operator::Lt => value.and_then(int).is_some_and(|v| v < bound()),
            Operator::Gte => value.and_then(int).is_some_and(|v| v >= bound()),
            Operator::Lte => value.and_then(int).is_some_and(|v| v <= bound()),
        }
    }

    #[test]
    fn table_of_single_requirements() {
        use Operator::*;
        type Case = (Requirement, &'static [(&'static str, &'static str)], bool);
        let cases: &[Case] = &[
            (req("zone", In, &["a", "b"]), &[("zone", "a")], true),
            (req("zone", In, &["a", "b"]), &[("zone", "c")], false),
            (req("zone", In, &["a", "b"]), &[], false),
            (req("zone", NotIn, &["a"]), &[], true),
            (req("zone", NotIn, &["a"]), &[("zone", "a")], false),
            (req("zone", NotIn, &["a"]), &[("zone", "b")], true),
            (req("zone", Exists, &[]), &[], false),
            (req("zone", Exists, &[]), &[("zone", "")], true),
            (req("zone", DoesNotExist, &[]), &[], true),
            (req("zone", DoesNotExist, &[]), &[("zone", "a")], false),
            (req("cpu", Gt, &["4"]), &[("cpu", "8")], true),
            (req("cpu", Gt, &["4"]), &[("cpu", "4")], false),
            (req("cpu", Gt, &["4"]), &[("cpu", "big")], false),
            (req("cpu", Gt, &["4"]), &[], false),
            (req("cpu", Gte, &["4"]), &[("cpu", "4")], true),
            (req("cpu", Lt, &["4"]), &[("cpu", "3")], true),
            (req("cpu", Lt, &["4"]), &[("cpu", "4")], false),
            (req("cpu", Lte, &["4"]), &[("cpu", "4")], true),
            (req("cpu", Lte, &["4"]), &[("cpu", "5")], false),
            (req("other", In, &["x"]), &[("zone", "a")], false),
        ];
        for (r, l, want) in cases {
            let set = Requirements::from_requirements([r]).unwrap();
            assert_eq!(set.matches(&labels(l)), *want, "{r:?} on {l:?}");
            assert_eq!(
                naive(r, &labels(l)),
                *want,
                "oracle disagrees on {r:?} {l:?}"
            );
        }
    }

    #[test]
    fn numeric_operators_need_one_integer() {
        for values in [&[][..], &["x"][..], &["1", "2"][..], &["1.5"][..]] {
            let err = ValueSet::from_requirement(&req("cpu", Operator::Gt, values)).unwrap_err();
            assert!(err.to_string().contains("\"cpu\""), "{err}");
        }
        assert!(
            ValueSet::from_requirement(&req("cpu", Operator::Gt, &["9223372036854775807"]))
                .unwrap()
                .is_empty()
        );
        assert!(
            ValueSet::from_requirement(&req("cpu", Operator::Lt, &["-9223372036854775808"]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn intersection_narrows_and_detects_conflicts() {
        let pool = Requirements::from_requirements(&[
            req("zone", Operator::In, &["a", "b", "c"]),
            req("cpu", Operator::Gt, &["2"]),
            req("ct", Operator::In, &["spot", "on-demand"]),
        ])
        .unwrap();
        let pod = Requirements::from_requirements(&[
            req("zone", Operator::NotIn, &["a"]),
            req("cpu", Operator::Lt, &["16"]),
            req("ct", Operator::In, &["on-demand"]),
        ])
        .unwrap();
        let both = pool.intersection(&pod);
        assert_eq!(both.get("zone").unwrap().values(), ["b", "c"]);
        assert_eq!(both.single_value("ct"), Some("on-demand"));
        assert!(both.matches(&labels(&[("zone", "b"), ("cpu", "8"), ("ct", "on-demand")])));
        assert!(!both.matches(&labels(&[
            ("zone", "b"),
            ("cpu", "16"),
            ("ct", "on-demand")
        ])));
        assert!(pool.compatible(&pod, &[]).is_ok());

        let gpu =
            Requirements::from_requirements(&[req("ct", Operator::In, &["reserved"])]).unwrap();
        let err = pool.compatible(&gpu, &[]).unwrap_err();
        assert_eq!(err.key, "ct");
        assert!(!pool.intersects(&gpu));
        assert!(!pool.intersection(&gpu).is_satisfiable());
    }

    #[test]
    fn undefined_keys_follow_kubernetes() {
        let pool = Requirements::from_requirements(&[req("zone", Operator::In, &["a"])]).unwrap();
        // A pod asking for a custom label the pool never sets cannot land there ...
        let custom = Requirements::from_requirements(&[req("team", Operator::In, &["x"])]).unwrap();
        assert_eq!(pool.compatible(&custom, &[]).unwrap_err().key, "team");
        // ... unless the instance type defines it (well-known labels) ...
        assert!(pool.compatible(&custom, &["team"]).is_ok());
        // ... while NotIn / DoesNotExist are satisfied by the missing label.
        let not_in =
            Requirements::from_requirements(&[req("team", Operator::NotIn, &["x"])]).unwrap();
        assert!(pool.compatible(&not_in, &[]).is_ok());
        let dne =
            Requirements::from_requirements(&[req("team", Operator::DoesNotExist, &[])]).unwrap();
        assert!(pool.compatible(&dne, &[]).is_ok());
    }

    #[test]
    fn min_values_are_carried_and_the_larger_wins() {
        let a = Requirements::from_requirements(&[
            req("type", Operator::In, &["a", "b", "c"]).with_min_values(2)
        ])
        .unwrap();
        let b = Requirements::from_requirements(&[
            req("type", Operator::NotIn, &["a"]).with_min_values(3)
        ])
        .unwrap();
        let both = a.intersection(&b);
        assert_eq!(both.get("type").unwrap().min_values(), Some(3));
        let out = both.to_requirements();
        assert_eq!(
            out,
            vec![req("type", Operator::In, &["b", "c"]).with_min_values(3)]
        );
    }

    #[test]
    fn exists_and_not_in_round_trip_as_two_requirements() {
        let set = Requirements::from_requirements(&[
            req("k", Operator::Exists, &[]),
            req("k", Operator::NotIn, &["a"]),
        ])
        .unwrap();
        let out = set.to_requirements();
        assert_eq!(
            out,
            vec![
                req("k", Operator::Exists, &[]),
                req("k", Operator::NotIn, &["a"])
            ]
        );
        assert!(!set.matches(&labels(&[])));
        assert_eq!(set.to_string(), "k Exists and NotIn [\"a\"]");
    }

    // --- Properties ---------------------------------------------------------------------------

    const KEYS: &[&str] = &["a", "b", "c"];
    const VALUES: &[&str] = &["0", "1", "2", "3", "x", "05", ""];

    fn arb_requirement() -> impl Strategy<Value = Requirement> {
        let key = proptest::sample::select(KEYS);
        let values = proptest::collection::vec(proptest::sample::select(VALUES), 0..4);
        let bound = proptest::sample::select(&["-1", "0", "1", "2", "3", "4"][..]);
        let min_values = proptest::option::of(1..4i32);
        prop_oneof![
            (key.clone(), values.clone(), min_values.clone()).prop_map(|(k, v, m)| Requirement {
                min_values: m,
                ..Requirement::new(k, Operator::In, v)
            }),
            (key.clone(), values).prop_map(|(k, v)| Requirement::new(k, Operator::NotIn, v)),
            key.clone().prop_map(Requirement::exists),
            key.clone().prop_map(Requirement::does_not_exist),
            (
                key,
                proptest::sample::select(
                    &[Operator::Gt, Operator::Lt, Operator::Gte, Operator::Lte][..]
                ),
                bound
            )
                .prop_map(|(k, op, b)| Requirement::new(k, op, [b])),
        ]
    }

    fn arb_labels() -> impl Strategy<Value = BTreeMap<String, String>> {
        let value =
            proptest::sample::select(&["0", "1", "2", "3", "4", "-1", "x", "05", "", "y"][..]);
        proptest::collection::vec(proptest::option::of(value), KEYS.len()).prop_map(|vs| {
            KEYS.iter()
                .zip(vs)
                .filter_map(|(k, v)| v.map(|v| (k.to_string(), v.to_string())))
                .collect()
        })
    }

    fn arb_reqs() -> impl Strategy<Value = Vec<Requirement>> {
        proptest::collection::vec(arb_requirement(), 0..5)
    }

    /// A label value (or absence) satisfying a non-empty set.
    fn witness(set: &ValueSet) -> Option<Option<String>> {
        if set.allows_absent() {
            return Some(None);
        }
        if set.is_finite() {
            return set.values().first().map(|v| Some(v.clone()));
        }
        let candidates = (-10i64..20)
            .map(|i| i.to_string())
            .chain(["x", "zz", ""].map(String::from));
        candidates.into_iter().find(|v| set.has(v)).map(Some)
    }

    proptest! {
        #[test]
        fn compiled_requirements_agree_with_kubernetes(reqs in arb_reqs(), l in arb_labels()) {
            let set = Requirements::from_requirements(&reqs).unwrap();
            prop_assert_eq!(set.matches(&l), reqs.iter().all(|r| naive(r, &l)));
        }

        #[test]
        fn intersection_is_exact_and_commutative(a in arb_reqs(), b in arb_reqs(), l in arb_labels()) {
            let (ra, rb) = (Requirements::from_requirements(&a).unwrap(), Requirements::from_requirements(&b).unwrap());
            let ab = ra.intersection(&rb);
            prop_assert_eq!(ab.matches(&l), ra.matches(&l) && rb.matches(&l));
            prop_assert_eq!(&ab, &rb.intersection(&ra));
            prop_assert_eq!(&ab.intersection(&ab), &ab);
            if ab.matches(&l) {
                prop_assert!(ra.intersects(&rb));
            }
        }

        #[test]
        fn intersects_iff_the_intersection_is_satisfiable(a in arb_reqs(), b in arb_reqs()) {
            let (ra, rb) = (Requirements::from_requirements(&a).unwrap(), Requirements::from_requirements(&b).unwrap());
            let satisfiable = ra.intersection(&rb).is_satisfiable();
            if !ra.intersects(&rb) {
                prop_assert!(!satisfiable);
            }
            if ra.is_satisfiable() && rb.is_satisfiable() {
                prop_assert_eq!(ra.intersects(&rb), satisfiable);
            }
        }

        #[test]
        fn non_empty_sets_have_a_witness(reqs in arb_reqs()) {
            let set = Requirements::from_requirements(&reqs).unwrap();
            for (_, s) in set.iter() {
                match witness(s) {
                    Some(w) => prop_assert!(s.matches(w.as_deref()), "{s} has witness {w:?}"),
                    None => prop_assert!(s.is_empty(), "{s} claims non-empty without witness"),
                }
                if s.is_empty() {
                    prop_assert!(witness(s).is_none());
                }
            }
        }

        #[test]
        fn to_requirements_round_trips(reqs in arb_reqs(), l in arb_labels()) {
            let set = Requirements::from_requirements(&reqs).unwrap();
            let back = Requirements::from_requirements(&set.to_requirements()).unwrap();
            prop_assert_eq!(back.matches(&l), set.matches(&l));
            for (k, s) in set.iter() {
                prop_assert_eq!(back.get(k).unwrap().min_values(), s.min_values());
            }
        }
    }
}
