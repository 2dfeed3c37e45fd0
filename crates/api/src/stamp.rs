//! Hash stamps: a hash of what a NodeClaim was launched from (its NodePool's template, its node
//! class), written on the claim as an annotation together with the version of the hash function.
//!
//! Key decision: a stamp is only compared when both sides were made by the same hash version. A
//! claim without a stamp (launched before stamps existed) or with another version (the hashed
//! fields changed in a release) is not called drifted: it is re-stamped with today's hash (a
//! backfill), so an upgrade never drifts a whole fleet at once.

use std::collections::BTreeMap;

/// What a claim's annotations say about one stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StampCheck {
    /// Same version, same hash: nothing changed since launch.
    Current,
    /// Same version, another hash: what the claim was launched from has changed (drift).
    Differs,
    /// No stamp, or one of another hash version: re-stamp (backfill), never drift.
    Backfill,
}

/// A hash of what claims are launched from now, and the annotations it is stored under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashStamp {
    /// The annotation holding the hash (`stowage.dev/nodepool-hash`).
    pub key: &'static str,
    /// The annotation holding the hash version (`stowage.dev/nodepool-hash-version`).
    pub version_key: &'static str,
    pub hash: String,
    pub version: &'static str,
}

impl HashStamp {
    /// Compares the stamp with a claim's annotations.
    pub fn check(&self, annotations: &BTreeMap<String, String>) -> StampCheck {
        match (annotations.get(self.key), annotations.get(self.version_key)) {
            (Some(hash), Some(version)) if version == self.version => {
                if *hash == self.hash {
                    StampCheck::Current
                } else {
                    StampCheck::Differs
                }
            }
            _ => StampCheck::Backfill,
        }
    }

    /// The two annotations to write.
    pub fn annotations(&self) -> [(String, String); 2] {
        [
            (self.key.to_string(), self.hash.clone()),
            (self.version_key.to_string(), self.version.to_string()),
        ]
    }

    /// Writes the stamp into `annotations`.
    pub fn apply(&self, annotations: &mut BTreeMap<String, String>) {
        annotations.extend(self.annotations());
    }
}

/// FNV-1a, 64 bit, as 16 hex digits: tiny, and stable across Rust versions and platforms
/// (unlike `DefaultHasher`), which a hash stored in the cluster must be.
pub(crate) fn fnv1a_hex(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(hash: &str) -> HashStamp {
        HashStamp {
            key: "example.dev/hash",
            version_key: "example.dev/hash-version",
            hash: hash.into(),
            version: "v2",
        }
    }

    #[test]
    fn only_a_stamp_of_the_same_version_can_differ() {
        let mut a = BTreeMap::new();
        assert_eq!(stamp("abc").check(&a), StampCheck::Backfill, "no stamp");
        a.insert("example.dev/hash".to_string(), "abc".to_string());
        assert_eq!(stamp("abc").check(&a), StampCheck::Backfill, "no version");
        a.insert("example.dev/hash-version".to_string(), "v1".to_string());
        assert_eq!(
            stamp("xyz").check(&a),
            StampCheck::Backfill,
            "an older hash version is re-stamped, not drifted"
        );
        stamp("abc").apply(&mut a);
        assert_eq!(a["example.dev/hash-version"], "v2");
        assert_eq!(stamp("abc").check(&a), StampCheck::Current);
        assert_eq!(stamp("xyz").check(&a), StampCheck::Differs);
    }

    #[test]
    fn fnv_is_the_published_function() {
        // Test vectors of FNV-1a 64 (http://www.isthe.com/chongo/tech/comp/fnv/).
        assert_eq!(fnv1a_hex(b""), "cbf29ce484222325");
        assert_eq!(fnv1a_hex(b"a"), "af63dc4c8601ec8c");
    }
}
