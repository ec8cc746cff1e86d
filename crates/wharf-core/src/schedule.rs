//! Application Auto Scaling schedules: `at(yyyy-mm-ddThh:mm:ss)`, `rate(<n> <unit>)` and
//! `cron(<minutes> <hours> <day-of-month> <month> <day-of-week> <year>)` (`*`, `?`, numbers,
//! names, lists, ranges and `/` steps; `L`, `W` and `#` are refused), in UTC or a fixed-offset
//! time zone. Parsing never panics; [`Schedule::due`] is pure.

const MINUTE_MS: i64 = 60_000;
/// How far back a cron schedule looks for a missed fire time (a restart, a slow tick).
const LOOKBACK_MS: i64 = 24 * 60 * MINUTE_MS;

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Once, at this time (ms, UTC).
    At(i64),
    /// Every this many ms.
    Rate(i64),
    Cron(Box<Cron>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    weekdays: Vec<bool>,
    years: Option<Vec<i64>>,
    /// Whether day-of-month (`?` in day-of-week) or day-of-week decides the day.
    by_weekday: bool,
}

/// Time zones whose offset never changes (Wharf carries no time zone database): name →
/// minutes east of UTC.
const FIXED_ZONES: &[(&str, i64)] = &[
    ("UTC", 0),
    ("Etc/UTC", 0),
    ("GMT", 0),
    ("Etc/GMT", 0),
    ("Asia/Seoul", 540),
    ("Asia/Tokyo", 540),
    ("Asia/Shanghai", 480),
    ("Asia/Hong_Kong", 480),
    ("Asia/Singapore", 480),
    ("Asia/Taipei", 480),
    ("Asia/Kolkata", 330),
];

/// The offset of time zone `tz` in ms (`None` for UTC).
pub fn zone_offset_ms(tz: Option<&str>) -> Result<i64, String> {
    let Some(tz) = tz else { return Ok(0) };
    FIXED_ZONES.iter().find(|(n, _)| *n == tz).map(|(_, m)| m * MINUTE_MS).ok_or_else(|| {
        format!(
            "Time zone {tz} is not served: Wharf knows zones without daylight saving time ({}).",
            FIXED_ZONES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        )
    })
}

/// `yyyy-mm-ddThh:mm:ss` as ms since the epoch (UTC).
fn parse_datetime(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let days = wharf_types::days_from_civil(y, mo, d);
    Some(((days * 24 + h) * 60 + mi) * MINUTE_MS + se * 1000)
}

const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One cron field as a membership table over `lo..=hi`.
fn field(text: &str, lo: i64, hi: i64, names: &[&str], name_base: i64) -> Result<Vec<bool>, String> {
    let mut set = vec![false; (hi + 1) as usize];
    let value = |v: &str| -> Result<i64, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
            return Ok(i as i64 + name_base);
        }
        let n: i64 = v.parse().map_err(|_| format!("{v} is not a valid value"))?;
        if n < lo || n > hi { Err(format!("{n} is outside {lo}-{hi}")) } else { Ok(n) }
    };
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<i64>().ok().filter(|s| *s > 0).ok_or(format!("bad step in {part}"))?),
            None => (part, 1),
        };
        let (a, b) = match range {
            "*" | "?" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if step > 1 => (value(r)?, hi),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if a > b {
            return Err(format!("range {range} runs backwards"));
        }
        let mut i = a;
        while i <= b {
            set[i as usize] = true;
            i += step;
        }
    }
    Ok(set)
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let inner = |p: &str| text.strip_prefix(p).and_then(|r| r.strip_suffix(')'));
        if let Some(t) = inner("at(") {
            return parse_datetime(t).map(Schedule::At).ok_or_else(|| format!("at({t}) is not yyyy-mm-ddThh:mm:ss"));
        }
        if let Some(r) = inner("rate(") {
            let (n, unit) = r.split_once(' ').ok_or("rate() needs a value and a unit")?;
            let n: i64 = n.parse().ok().filter(|n| *n > 0).ok_or("rate() needs a positive whole number")?;
            let unit_ms = match unit {
                "minute" | "minutes" => MINUTE_MS,
                "hour" | "hours" => 60 * MINUTE_MS,
                "day" | "days" => 24 * 60 * MINUTE_MS,
                u => return Err(format!("{u} is not a rate unit (minute(s), hour(s), day(s))")),
            };
            return Ok(Schedule::Rate(n * unit_ms));
        }
        if let Some(c) = inner("cron(") {
            let f: Vec<&str> = c.split_whitespace().collect();
            if f.len() != 6 {
                return Err("cron() needs six fields: minutes hours day-of-month month day-of-week year".into());
            }
            if f.iter().any(|x| {
                x.contains(['L', 'W', '#']) && !x.chars().all(|c| c.is_ascii_alphabetic() || c == ',' || c == '-')
            }) {
                return Err("cron() fields with L, W or # are not served".into());
            }
            if (f[2] == "?") == (f[4] == "?") {
                return Err("cron() needs ? in exactly one of day-of-month and day-of-week".into());
            }
            let years = if f[5] == "*" {
                None
            } else {
                let set = field(f[5], 1970, 2199, &[], 0)?;
                Some(set.iter().enumerate().filter(|(_, b)| **b).map(|(i, _)| i as i64).collect())
            };
            return Ok(Schedule::Cron(Box::new(Cron {
                minutes: field(f[0], 0, 59, &[], 0)?,
                hours: field(f[1], 0, 23, &[], 0)?,
                days: field(f[2], 1, 31, &[], 0)?,
                months: field(f[3], 1, 12, &MONTHS, 1)?,
                weekdays: field(f[4], 1, 7, &WEEKDAYS, 1)?,
                years,
                by_weekday: f[2] == "?",
            })));
        }
        Err(format!("{text} is not at(…), rate(…) or cron(…)"))
    }

    /// The latest fire time in `(after, now]` (ms, UTC) for a schedule in a zone `offset_ms`
    /// east of UTC, rates counted from `origin`. `None` when nothing fell due.
    pub fn due(&self, after: i64, now: i64, origin: i64, offset_ms: i64) -> Option<i64> {
        match self {
            Schedule::At(t) => {
                let t = t - offset_ms;
                (t > after && t <= now).then_some(t)
            }
            Schedule::Rate(every) => {
                if now < origin {
                    return None;
                }
                let t = origin + (now - origin) / every * every;
                (t > after && t > origin).then_some(t)
            }
            Schedule::Cron(c) => {
                let from = after.max(now - LOOKBACK_MS);
                let mut t = now - now.rem_euclid(MINUTE_MS);
                while t > from {
                    if c.matches(t + offset_ms) {
                        return Some(t);
                    }
                    t -= MINUTE_MS;
                }
                None
            }
        }
    }
}

impl Cron {
    fn matches(&self, local_ms: i64) -> bool {
        let minutes = local_ms.div_euclid(MINUTE_MS);
        let (days, rem) = (minutes.div_euclid(1440), minutes.rem_euclid(1440));
        let (y, mo, d) = wharf_types::civil_from_days(days);
        // 1970-01-01 was a Thursday; cron counts Sunday as 1.
        let weekday = (days + 4).rem_euclid(7) + 1;
        let day_ok = if self.by_weekday { self.weekdays[weekday as usize] } else { self.days[d as usize] };
        self.minutes[(rem % 60) as usize]
            && self.hours[(rem / 60) as usize]
            && self.months[mo as usize]
            && day_ok
            && self.years.as_ref().is_none_or(|ys| ys.contains(&y))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> i64 {
        parse_datetime(s).unwrap()
    }

    #[test]
    fn at_rate_and_cron_fall_due_once() {
        let at = Schedule::parse("at(2026-12-07T21:30:00)").unwrap();
        assert_eq!(at.due(0, t("2026-12-07T21:29:59"), 0, 0), None);
        assert_eq!(at.due(0, t("2026-12-07T21:31:00"), 0, 0), Some(t("2026-12-07T21:30:00")));
        assert_eq!(at.due(t("2026-12-07T21:30:00"), t("2026-12-07T21:40:00"), 0, 0), None);
        let rate = Schedule::parse("rate(5 minutes)").unwrap();
        let o = t("2026-12-07T21:00:00");
        assert_eq!(rate.due(o, o + 4 * MINUTE_MS, o, 0), None);
        assert_eq!(rate.due(o, o + 11 * MINUTE_MS, o, 0), Some(o + 10 * MINUTE_MS));
        // Weekdays at 09:00 in Seoul is 00:00 UTC; 2026-12-07 is a Monday.
        let cron = Schedule::parse("cron(0 9 ? * MON-FRI *)").unwrap();
        let off = zone_offset_ms(Some("Asia/Seoul")).unwrap();
        let now = t("2026-12-07T00:00:30");
        assert_eq!(cron.due(now - 60_000, now, 0, off), Some(t("2026-12-07T00:00:00")));
        let sunday = t("2026-12-06T00:00:30");
        assert_eq!(cron.due(sunday - 60_000, sunday, 0, off), None);
        assert!(Schedule::parse("cron(*/15 * * * ? *)").unwrap().due(now - 60_000, now, 0, 0).is_some());
    }

    #[test]
    fn bad_schedules_say_why() {
        for bad in [
            "at(2026-13-07T21:30:00)",
            "rate(0 minutes)",
            "rate(5 weeks)",
            "cron(0 9 * * *)",
            "cron(0 9 * * MON *)",
            "cron(0 9 L * ? *)",
            "every day",
            "cron(61 * * * ? *)",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
        assert!(zone_offset_ms(Some("America/New_York")).is_err());
    }
}
