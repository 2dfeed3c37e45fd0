//! Cron schedules of disruption budgets (`0 9 * * mon-fri`, `@daily`), evaluated in UTC.
//!
//! Key decision: a schedule is parsed once into bit sets, and "is a budget active" is answered
//! by scanning minute boundaries backwards from `now` (passed in; the clock is never read), which
//! is exact, simple, and bounded by the budget's duration.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// The error for a schedule that is not five cron fields or a known macro.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error(
        "schedule {schedule:?} must have 5 fields (minute hour day-of-month month day-of-week) or be a macro like @daily"
    )]
    ParseFieldCount { schedule: String },
    #[error("schedule {schedule:?}: invalid {field} field {text:?}")]
    ParseField {
        schedule: String,
        field: &'static str,
        text: String,
    },
    #[error(
        "unknown schedule macro {schedule:?} (expected one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)"
    )]
    ParseMacro { schedule: String },
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A parsed five-field cron schedule (minute, hour, day of month, month, day of week).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CronSchedule {
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    /// Day of month was `*` (or `?`): only the day of week restricts days.
    dom_any: bool,
    /// Day of week was `*` (or `?`): only the day of month restricts days.
    dow_any: bool,
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    question: bool,
}

fn value(text: &str, spec: &FieldSpec) -> Option<u32> {
    if let Ok(v) = text.parse::<u32>() {
        return (spec.min..=spec.max).contains(&v).then_some(v);
    }
    let upper = text.to_ascii_uppercase();
    let offset = if spec.names.len() == 12 { 1 } else { 0 };
    spec.names
        .iter()
        .position(|n| *n == upper)
        .and_then(|i| u32::try_from(i).ok())
        .map(|i| i + offset)
}

/// The bit set of a field, and whether it was `*`/`?`.
fn field(text: &str, spec: &FieldSpec) -> Option<(u64, bool)> {
    let mut bits = 0u64;
    let mut any = false;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s >= 1)?),
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" || (spec.question && range == "?") {
            if item == "*" || item == "?" {
                any = true;
            }
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a, spec)?, value(b, spec)?);
            if a > b {
                return None;
            }
            (a, b)
        } else {
            let a = value(range, spec)?;
            // `a/step` means from a to the end, stepping.
            (
                a,
                if step > 1 || item.contains('/') {
                    spec.max
                } else {
                    a
                },
            )
        };
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Some((bits, any))
}

impl CronSchedule {
    /// Parses five fields or a macro.
    pub fn parse(schedule: &str) -> Result<Self, CronError> {
        let expanded = match schedule {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => {
                return Err(CronError::ParseMacro {
                    schedule: s.to_string(),
                });
            }
            s => s,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [m, h, dom, mon, dow] = fields.as_slice() else {
            return Err(CronError::ParseFieldCount {
                schedule: schedule.to_string(),
            });
        };
        let specs = [
            FieldSpec {
                name: "minute",
                min: 0,
                max: 59,
                names: &[],
                question: false,
            },
            FieldSpec {
                name: "hour",
                min: 0,
                max: 23,
                names: &[],
                question: false,
            },
            FieldSpec {
                name: "day-of-month",
                min: 1,
                max: 31,
                names: &[],
                question: true,
            },
            FieldSpec {
                name: "month",
                min: 1,
                max: 12,
                names: MONTHS,
                question: false,
            },
            FieldSpec {
                name: "day-of-week",
                min: 0,
                max: 7,
                names: WEEKDAYS,
                question: true,
            },
        ];
        let mut parsed = [(0u64, false); 5];
        for (i, (text, spec)) in [m, h, dom, mon, dow].iter().zip(&specs).enumerate() {
            parsed[i] = field(text, spec).ok_or_else(|| CronError::ParseField {
                schedule: schedule.to_string(),
                field: spec.name,
                text: text.to_string(),
            })?;
        }
        // Day of week 7 is Sunday too.
        let mut dow_bits = parsed[4].0;
        if dow_bits & (1 << 7) != 0 {
            dow_bits = (dow_bits | 1) & 0x7f;
        }
        Ok(CronSchedule {
            minutes: parsed[0].0,
            hours: parsed[1].0 as u32,
            days_of_month: parsed[2].0 as u32,
            months: parsed[3].0 as u16,
            days_of_week: dow_bits as u8,
            dom_any: parsed[2].1,
            dow_any: parsed[4].1,
        })
    }

    /// Whether the schedule fires at the minute containing `t` (UTC).
    pub fn fires_at(&self, t: Timestamp) -> bool {
        let dt = TimeZone::UTC.to_datetime(t);
        let bit = |set: u64, v: i8| v >= 0 && set & (1u64 << v) != 0;
        let dom = bit(u64::from(self.days_of_month), dt.day());
        let dow = bit(
            u64::from(self.days_of_week),
            dt.weekday().to_sunday_zero_offset(),
        );
        // Classic cron: when both day fields are restricted, either may match.
        let day = match (self.dom_any, self.dow_any) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        };
        day && bit(self.minutes, dt.minute())
            && bit(u64::from(self.hours), dt.hour())
            && bit(u64::from(self.months), dt.month())
    }

    /// Whether the schedule fired within the `window` ending at `now`: some minute boundary `t`
    /// with `now - window < t <= now` matches. Windows longer than 366 days count as 366 days.
    pub fn fired_within(&self, now: Timestamp, window: std::time::Duration) -> bool {
        const MAX_MINUTES: i64 = 366 * 24 * 60;
        let now_s = now.as_second();
        let start_s = now_s.saturating_sub(i64::try_from(window.as_secs()).unwrap_or(i64::MAX));
        let mut t = now_s.div_euclid(60) * 60;
        for _ in 0..=MAX_MINUTES {
            if t <= start_s {
                return false;
            }
            if let Ok(ts) = Timestamp::from_second(t)
                && self.fires_at(ts)
            {
                return true;
            }
            t -= 60;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn parses_fields_ranges_steps_names_and_macros() {
        let weekdays = CronSchedule::parse("0 9 * * mon-fri").unwrap();
        assert!(weekdays.fires_at(at("2026-11-27T09:00:00Z"))); // Friday
        assert!(!weekdays.fires_at(at("2026-11-28T09:00:00Z"))); // Saturday
        assert!(!weekdays.fires_at(at("2026-11-27T09:01:00Z")));
        let every_15 = CronSchedule::parse("*/15 * * * *").unwrap();
        assert!(every_15.fires_at(at("2026-01-01T03:45:00Z")));
        assert!(!every_15.fires_at(at("2026-01-01T03:46:00Z")));
        let sunday7 = CronSchedule::parse("0 0 * * 7").unwrap();
        assert!(sunday7.fires_at(at("2026-11-29T00:00:00Z")));
        assert_eq!(
            CronSchedule::parse("@daily").unwrap(),
            CronSchedule::parse("0 0 * * *").unwrap()
        );
        let yearly = CronSchedule::parse("@yearly").unwrap();
        assert!(yearly.fires_at(at("2027-01-01T00:00:00Z")));
        assert!(!yearly.fires_at(at("2027-02-01T00:00:00Z")));
        // Both day fields restricted: either matches (the 1st, or any Monday).
        let either = CronSchedule::parse("0 0 1 * mon").unwrap();
        assert!(either.fires_at(at("2026-12-01T00:00:00Z"))); // Tuesday the 1st
        assert!(either.fires_at(at("2026-11-30T00:00:00Z"))); // Monday
        assert!(!either.fires_at(at("2026-12-02T00:00:00Z")));
    }

    #[test]
    fn rejects_malformed_schedules() {
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "5-1 * * * *",
            "*/0 * * * *",
            "@fortnightly",
            "x * * * *",
            "* * * jan-xyz *",
        ] {
            assert!(
                CronSchedule::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn fired_within_is_a_half_open_window_ending_now() {
        let nine = CronSchedule::parse("0 9 * * *").unwrap();
        let hours = |h: u64| std::time::Duration::from_secs(h * 3600);
        assert!(nine.fired_within(at("2026-11-27T09:00:00Z"), hours(8)));
        assert!(nine.fired_within(at("2026-11-27T16:59:59Z"), hours(8)));
        assert!(
            !nine.fired_within(at("2026-11-27T17:00:00Z"), hours(8)),
            "window (09:00, 17:00] excludes 09:00"
        );
        assert!(!nine.fired_within(at("2026-11-27T08:59:00Z"), hours(8)));
        assert!(nine.fired_within(at("2026-11-28T08:00:00Z"), hours(24)));
    }
}
