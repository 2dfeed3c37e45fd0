//! Durations as users write them in manifests (`"720h"`, `"1h30m"`, `"30s"`, `"Never"`).
//!
//! Key decision: the wire form is a Go-style duration string restricted to the `h`, `m` and `s`
//! units (what Karpenter users already write); the Rust side is a `std::time::Duration`. A
//! [`NillableDuration`] additionally accepts `Never`, meaning "no deadline".

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pattern (for the CRD schema) of a [`Duration`].
pub const DURATION_PATTERN: &str = "^([0-9]+(s|m|h))+$";
/// The pattern (for the CRD schema) of a [`NillableDuration`].
pub const NILLABLE_DURATION_PATTERN: &str = "^(([0-9]+(s|m|h))+|Never)$";

/// The error for a duration string that is not `<number><h|m|s>...` (or `Never` where allowed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDurationError {
    #[error(
        "invalid duration {0:?}: expected a sequence of <number><h|m|s>, e.g. \"720h\" or \"1h30m\""
    )]
    ParseDuration(String),
    #[error("invalid duration {0:?}: expected <number><h|m|s>... or \"Never\"")]
    ParseNillableDuration(String),
    #[error("duration {0:?} is too large")]
    ParseOverflow(String),
}

/// A non-negative duration written as `1h30m`, `90s`, `0s`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    pub const fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }

    pub const fn from_mins(mins: u64) -> Self {
        Duration(std::time::Duration::from_secs(mins * 60))
    }

    pub const fn from_hours(hours: u64) -> Self {
        Duration(std::time::Duration::from_secs(hours * 3600))
    }

    /// The duration as a `std::time::Duration`.
    pub const fn as_std(self) -> std::time::Duration {
        self.0
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

/// Parses `([0-9]+(h|m|s))+` into seconds; `None` when the text does not match.
fn parse_hms(text: &str) -> Result<Option<u64>, ()> {
    if text.is_empty() {
        return Ok(None);
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.chars() {
        match c {
            '0'..='9' => {
                let digit = u64::from(c as u8 - b'0');
                let n = number.unwrap_or(0);
                number = Some(
                    n.checked_mul(10)
                        .and_then(|n| n.checked_add(digit))
                        .ok_or(())?,
                );
            }
            'h' | 'm' | 's' => {
                let Some(n) = number.take() else {
                    return Ok(None);
                };
                let unit = match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                total = n
                    .checked_mul(unit)
                    .and_then(|v| total.checked_add(v))
                    .ok_or(())?;
            }
            _ => return Ok(None),
        }
    }
    if number.is_some() {
        // Trailing digits without a unit.
        return Ok(None);
    }
    Ok(Some(total))
}

impl FromStr for Duration {
    type Err = ParseDurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match parse_hms(s) {
            Ok(Some(secs)) => Ok(Duration::from_secs(secs)),
            Ok(None) => Err(ParseDurationError::ParseDuration(s.to_string())),
            Err(()) => Err(ParseDurationError::ParseOverflow(s.to_string())),
        }
    }
}

impl fmt::Display for Duration {
    /// Canonical form: `0s`, `45s`, `1h30m`, `720h` (sub-second parts are dropped).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        if secs == 0 {
            return f.write_str("0s");
        }
        let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
        })
    }
}

/// A duration that may be `Never` (no deadline): `expireAfter`, `consolidateAfter`.
/// Deliberately no `Default`: the right default differs per field (`720h` vs `0s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NillableDuration(pub Option<std::time::Duration>);

impl NillableDuration {
    /// `Never`.
    pub const NEVER: NillableDuration = NillableDuration(None);
    pub const ZERO: NillableDuration = NillableDuration(Some(std::time::Duration::ZERO));

    pub const fn from_secs(secs: u64) -> Self {
        NillableDuration(Some(std::time::Duration::from_secs(secs)))
    }

    pub const fn from_hours(hours: u64) -> Self {
        NillableDuration(Some(std::time::Duration::from_secs(hours * 3600)))
    }

    /// The duration, or `None` for `Never`.
    pub const fn as_std(self) -> Option<std::time::Duration> {
        self.0
    }

    pub const fn is_never(self) -> bool {
        self.0.is_none()
    }
}

impl From<Duration> for NillableDuration {
    fn from(d: Duration) -> Self {
        NillableDuration(Some(d.0))
    }
}

impl FromStr for NillableDuration {
    type Err = ParseDurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "Never" {
            return Ok(NillableDuration::NEVER);
        }
        match parse_hms(s) {
            Ok(Some(secs)) => Ok(NillableDuration::from_secs(secs)),
            Ok(None) => Err(ParseDurationError::ParseNillableDuration(s.to_string())),
            Err(()) => Err(ParseDurationError::ParseOverflow(s.to_string())),
        }
    }
}

impl fmt::Display for NillableDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("Never"),
            Some(d) => Duration(d).fmt(f),
        }
    }
}

impl Serialize for NillableDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NillableDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for NillableDuration {
    fn schema_name() -> Cow<'static, str> {
        "NillableDuration".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": NILLABLE_DURATION_PATTERN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_canonical_durations() {
        let cases = [
            ("720h", 720 * 3600, "720h"),
            ("1h30m", 5400, "1h30m"),
            ("90m", 5400, "1h30m"),
            ("0s", 0, "0s"),
            ("45s", 45, "45s"),
            ("1h0m1s", 3601, "1h1s"),
        ];
        for (text, secs, canonical) in cases {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.as_std().as_secs(), secs, "{text}");
            assert_eq!(d.to_string(), canonical, "{text}");
            let n: NillableDuration = text.parse().unwrap();
            assert_eq!(n.as_std(), Some(std::time::Duration::from_secs(secs)));
        }
    }

    #[test]
    fn rejects_malformed_durations() {
        for bad in [
            "",
            "h",
            "10",
            "1d",
            "1.5h",
            "-1h",
            "Never ",
            "1h 30m",
            "99999999999999999999h",
        ] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} should fail");
            assert!(
                bad.parse::<NillableDuration>().is_err(),
                "{bad:?} should fail"
            );
        }
        assert!("Never".parse::<Duration>().is_err());
    }

    #[test]
    fn never_round_trips() {
        let n: NillableDuration = "Never".parse().unwrap();
        assert!(n.is_never());
        assert_eq!(n.to_string(), "Never");
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, "\"Never\"");
        let back: NillableDuration = serde_json::from_str(&json).unwrap();
        assert_eq!(back, n);
        let d: Duration = serde_json::from_str("\"1h30m\"").unwrap();
        assert_eq!(d, Duration::from_mins(90));
        assert!(serde_json::from_str::<Duration>("\"soon\"").is_err());
    }
}
