//! Kubernetes resource quantities (`500m`, `2Gi`, `1e3`, `1.5`, ...) parsed into integer units.
//!
//! Every form Kubernetes accepts is understood: an optionally signed decimal number (with an optional
//! fraction) followed by a binary-SI suffix (`Ki Mi Gi Ti Pi Ei`), a decimal-SI suffix
//! (`n u m "" k M G T P E`) or a decimal exponent (`e3`, `E-2`). The value is computed exactly (128-bit
//! integers) and rounded up to the requested unit like Kubernetes' `Value()` / `MilliValue()` do:
//! `cpu` becomes millicores, everything else bytes or counts.

/// A quantity that could not be parsed or does not fit the target unit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("failed to parse quantity {input:?}: {reason}")]
    ParseQuantity { input: String, reason: &'static str },
    #[error("quantity {input:?} is out of range")]
    QuantityOutOfRange { input: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A parsed quantity kept exact: `sign * mantissa * 10^exp10 * 2^exp2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    negative: bool,
    mantissa: u128,
    exp10: i32,
    exp2: u32,
}

impl Quantity {
    /// Parses any Kubernetes quantity string.
    pub fn parse(input: &str) -> Result<Self> {
        let bad = |reason: &'static str| Error::ParseQuantity {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut negative = false;
        if bytes[0] == b'+' || bytes[0] == b'-' {
            negative = bytes[0] == b'-';
            i = 1;
        }
        let mut mantissa: u128 = 0;
        let mut exp10: i32 = 0;
        let mut digits = 0usize;
        let mut seen_dot = false;
        while i < bytes.len() {
            let c = bytes[i];
            if c.is_ascii_digit() {
                digits += 1;
                // Keep at most 30 significant digits; later integer digits only scale, later
                // fraction digits are dropped (below any unit we round to, except for the
                // ceiling, handled by `truncated`).
                if mantissa < 10u128.pow(30) {
                    mantissa = mantissa * 10 + u128::from(c - b'0');
                    if seen_dot {
                        exp10 -= 1;
                    }
                } else if !seen_dot {
                    exp10 += 1;
                } else if c != b'0' {
                    // A non-zero digit beyond our precision: bump so the ceiling still rounds up.
                    mantissa += 1;
                }
            } else if c == b'.' {
                if seen_dot {
                    return Err(bad("more than one decimal point"));
                }
                seen_dot = true;
            } else {
                break;
            }
            i += 1;
        }
        if digits == 0 {
            return Err(bad("no digits"));
        }
        let suffix = &s[i..];
        let mut exp2 = 0u32;
        match suffix {
            "" => {}
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            "k" => exp10 += 3,
            "M" => exp10 += 6,
            "G" => exp10 += 9,
            "T" => exp10 += 12,
            "P" => exp10 += 15,
            "E" => exp10 += 18,
            "Ki" => exp2 = 10,
            "Mi" => exp2 = 20,
            "Gi" => exp2 = 30,
            "Ti" => exp2 = 40,
            "Pi" => exp2 = 50,
            "Ei" => exp2 = 60,
            other => {
                let rest = other
                    .strip_prefix('e')
                    .or_else(|| other.strip_prefix('E'))
                    .ok_or_else(|| bad("unknown suffix"))?;
                let (neg, digits) = match rest.as_bytes().first() {
                    Some(b'-') => (true, &rest[1..]),
                    Some(b'+') => (false, &rest[1..]),
                    _ => (false, rest),
                };
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("malformed exponent"));
                }
                let e: i32 = digits.parse().map_err(|_| bad("exponent too large"))?;
                if e > 1000 {
                    return Err(bad("exponent too large"));
                }
                exp10 += if neg { -e } else { e };
            }
        }
        Ok(Quantity {
            negative: negative && mantissa != 0,
            mantissa,
            exp10,
            exp2,
        })
    }

    /// The value in units of `10^-scale` (0: base units, 3: milli-units), rounded up (towards
    /// positive infinity) like Kubernetes.
    pub fn scaled(&self, scale: i32, input: &str) -> Result<i64> {
        let range = || Error::QuantityOutOfRange {
            input: input.to_string(),
        };
        if self.mantissa == 0 {
            return Ok(0);
        }
        let e = self.exp10 + scale;
        let mut v: u128 = self.mantissa;
        let mut truncated = false;
        if e >= 0 {
            for _ in 0..e {
                v = v.checked_mul(10).ok_or_else(range)?;
            }
            v = v.checked_mul(1u128 << self.exp2).ok_or_else(range)?;
        } else {
            v = v.checked_mul(1u128 << self.exp2).ok_or_else(range)?;
            for _ in 0..(-e) {
                if v == 0 {
                    break;
                }
                truncated |= !v.is_multiple_of(10);
                v /= 10;
            }
        }
        let v = i64::try_from(v).map_err(|_| range())?;
        Ok(match (self.negative, truncated) {
            (false, true) => v.checked_add(1).ok_or_else(range)?,
            (false, false) => v,
            (true, _) => -v,
        })
    }
}

/// Parses a quantity to base units (bytes, counts), rounding up.
pub fn parse_value(input: &str) -> Result<i64> {
    Quantity::parse(input)?.scaled(0, input)
}

/// Parses a quantity to milli-units (`cpu` millicores), rounding up.
pub fn parse_milli(input: &str) -> Result<i64> {
    Quantity::parse(input)?.scaled(3, input)
}

/// Parses the quantity of resource `name` into the solver's integer unit: millicores for `cpu`,
/// base units (bytes, counts) for everything else.
pub fn parse_resource(name: &str, input: &str) -> Result<i64> {
    if name == "cpu" {
        parse_milli(input)
    } else {
        parse_value(input)
    }
}

/// Formats an integer amount of resource `name` for humans: `1500m`/`2` for cpu, `512Mi`/`2Gi`
/// for memory and storage, plain counts otherwise.
pub fn format_resource(name: &str, value: i64) -> String {
    if name == "cpu" {
        if value % 1000 == 0 {
            (value / 1000).to_string()
        } else {
            format!("{value}m")
        }
    } else if name == "memory" || name == "ephemeral-storage" {
        for (suffix, shift) in [
            ("Ei", 60),
            ("Pi", 50),
            ("Ti", 40),
            ("Gi", 30),
            ("Mi", 20),
            ("Ki", 10),
        ] {
            let unit = 1i64 << shift;
            if value != 0 && value % unit == 0 {
                return format!("{}{suffix}", value / unit);
            }
        }
        value.to_string()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kubernetes_form() {
        let cases: &[(&str, &str, i64)] = &[
            ("cpu", "500m", 500),
            ("cpu", "1", 1000),
            ("cpu", "1.5", 1500),
            ("cpu", "0.1", 100),
            ("cpu", ".5", 500),
            ("cpu", "2.", 2000),
            ("cpu", "100u", 1), // rounds up to a whole millicore
            ("cpu", "1n", 1),   // rounds up
            ("cpu", "1500000n", 2),
            ("cpu", "0.0001", 1),
            ("cpu", "1e3", 1_000_000),
            ("cpu", "1E-3", 1),
            ("cpu", "1k", 1_000_000),
            ("cpu", "+2", 2000),
            ("cpu", "0", 0),
            ("cpu", "-1", -1000),
            ("memory", "128974848", 128_974_848),
            ("memory", "129e6", 129_000_000),
            ("memory", "129M", 129_000_000),
            ("memory", "123Mi", 123 * 1024 * 1024),
            ("memory", "1Ki", 1024),
            ("memory", "1k", 1000),
            ("memory", "1.5Gi", 3 << 29),
            ("memory", "2Gi", 2 << 30),
            ("memory", "1G", 1_000_000_000),
            ("memory", "1T", 1_000_000_000_000),
            ("memory", "1Ti", 1 << 40),
            ("memory", "1P", 1_000_000_000_000_000),
            ("memory", "1Pi", 1 << 50),
            ("memory", "1E", 1_000_000_000_000_000_000),
            ("memory", "1Ei", 1 << 60),
            ("memory", "1e+3", 1000),
            ("memory", "500m", 1), // half a byte rounds up
            ("memory", "0.5Ki", 512),
            ("memory", "  64Mi ", 64 << 20),
            ("nvidia.com/gpu", "8", 8),
            ("pods", "110", 110),
        ];
        for (name, input, want) in cases {
            assert_eq!(parse_resource(name, input), Ok(*want), "{name} {input}");
        }
    }

    #[test]
    fn rejects_malformed_input_naming_it() {
        for bad in [
            "", "abc", "1.2.3", "1Qi", "1e", "1e+", "m", "1 Gi", "--1", "1ee3", "1.5x",
        ] {
            let err = parse_value(bad).unwrap_err();
            assert!(
                matches!(err, Error::ParseQuantity { ref input, .. } if input == bad),
                "{bad}: {err:?}"
            );
            assert!(err.to_string().contains(&format!("{bad:?}")));
        }
    }

    #[test]
    fn rejects_values_that_do_not_fit() {
        assert!(matches!(
            parse_value("16Ei"),
            Err(Error::QuantityOutOfRange { .. })
        ));
        assert!(matches!(
            parse_milli("1e30"),
            Err(Error::QuantityOutOfRange { .. })
        ));
        assert!(parse_value("1e1001").is_err());
    }

    #[test]
    fn formats_for_humans() {
        assert_eq!(format_resource("cpu", 1500), "1500m");
        assert_eq!(format_resource("cpu", 2000), "2");
        assert_eq!(format_resource("memory", 2 << 30), "2Gi");
        assert_eq!(format_resource("memory", 1000), "1000");
        assert_eq!(format_resource("pods", 29), "29");
    }
}
