//! Requirement matching against instance-type labels (AMI variants, NodeClaim requirements).

use std::collections::BTreeMap;

use stowage_api::Requirement;
use stowage_api::requirements::ValueSet;

/// True when every requirement accepts the label it names (an absent label is judged by the
/// operator: `NotIn`/`DoesNotExist` accept it, `In`/`Exists` do not). Invalid requirements fail.
pub fn requirements_match(reqs: &[Requirement], labels: &BTreeMap<String, String>) -> bool {
    reqs.iter().all(|r| match ValueSet::from_requirement(r) {
        Ok(set) => set.matches(labels.get(&r.key).map(String::as_str)),
        Err(_) => false,
    })
}

/// Like [`requirements_match`], but only for requirements on keys in `keys` (requirements on
/// other keys, such as a pool's own labels, do not constrain the instance type).
pub fn requirements_match_keys(
    reqs: &[Requirement],
    labels: &BTreeMap<String, String>,
    keys: &dyn Fn(&str) -> bool,
) -> bool {
    reqs.iter()
        .filter(|r| keys(&r.key))
        .all(|r| requirements_match(std::slice::from_ref(r), labels))
}

#[cfg(test)]
mod tests {
    use stowage_api::labels;

    use super::*;

    #[test]
    fn absent_labels_follow_the_operator() {
        let l: BTreeMap<String, String> = [(labels::ARCH.to_string(), "amd64".to_string())]
            .into_iter()
            .collect();
        assert!(requirements_match(
            &[Requirement::in_(labels::ARCH, ["amd64"])],
            &l
        ));
        assert!(!requirements_match(
            &[Requirement::in_(labels::ARCH, ["arm64"])],
            &l
        ));
        assert!(requirements_match(
            &[Requirement::not_in(
                labels::INSTANCE_GPU_MANUFACTURER,
                ["nvidia"]
            )],
            &l
        ));
        assert!(!requirements_match(
            &[Requirement::in_(
                labels::INSTANCE_GPU_MANUFACTURER,
                ["nvidia"]
            )],
            &l
        ));
        let only_arch = |k: &str| k == labels::ARCH;
        assert!(requirements_match_keys(
            &[Requirement::in_("team", ["a"])],
            &l,
            &only_arch
        ));
    }
}
