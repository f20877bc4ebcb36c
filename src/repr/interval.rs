//! `interval`: months, days and microseconds, kept apart as Postgres keeps
//! them (a month is not a fixed number of days), parsed from and written in
//! Postgres's default output style (`1 year 2 mons 3 days 04:05:06.5`).

use std::cmp::Ordering;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::datetime::{
    date_from_ymd, days_in_month, is_valid_timestamp, split_timestamp, ymd_from_date,
    DATE_END_FOR_TIMESTAMP, DATE_MIN, MICROS_PER_DAY, TS_NEG_INF, TS_POS_INF,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Interval {
    pub months: i32,
    pub days: i32,
    pub micros: i64,
}

fn overflow() -> String {
    "interval out of range".to_string()
}

/// A decimal number as its whole part (exact) and its signed fraction:
/// `-1.5` is (-1, -0.5).
fn split_number(text: &str) -> Option<(i128, f64)> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let sign = if neg { -1 } else { 1 };
    // Postgres reads "-.5" and "+.5" as no number at all (".5" is fine).
    if text != body && body.starts_with('.') {
        return None;
    }
    let (int_part, frac_part) = body.split_once('.').unwrap_or((body, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = int_part.trim_start_matches('0');
    // Absurdly long numbers are out of range; the caller reports that.
    let whole: i128 = if digits.is_empty() {
        0
    } else if digits.len() > 32 {
        1i128 << 101
    } else {
        digits.parse().ok()?
    };
    let frac: f64 = if frac_part.is_empty() {
        0.0
    } else {
        format!("0.{}", &frac_part[..frac_part.len().min(30)])
            .parse()
            .ok()?
    };
    Some((sign * whole, sign as f64 * frac))
}

impl Interval {
    pub const ZERO: Interval = Interval {
        months: 0,
        days: 0,
        micros: 0,
    };

    /// The length Postgres compares intervals by: a month counts 30 days.
    pub fn span(&self) -> i128 {
        (self.months as i128 * 30 + self.days as i128) * MICROS_PER_DAY as i128
            + self.micros as i128
    }

    pub fn cmp_span(&self, other: &Interval) -> Ordering {
        self.span().cmp(&other.span())
    }

    /// Parses Postgres's output style and the usual input forms: `3 days`,
    /// `1 year 2 months`, `1.5 hours`, `-1 days +02:00:00`, `04:05:06`,
    /// `2 weeks ago`, as Postgres's `DecodeInterval` reads them: whole numbers
    /// exactly, each unit at most once (a time `hh:mm:ss` counts as hours,
    /// minutes and seconds), and fractions spilled as Postgres spills them —
    /// a fraction of a year to whole months, of a month (30 days) or week to
    /// days and time, of a day or smaller unit to microseconds.
    pub fn parse(s: &str) -> Result<Interval, String> {
        let bad = || format!("invalid input syntax for type interval: \"{s}\"");
        // Unit bits, for Postgres's "each field once" rule.
        const YEAR: u16 = 1;
        const MONTH: u16 = 2;
        const DAY: u16 = 4;
        const WEEK: u16 = 8;
        const HOUR: u16 = 16;
        const MINUTE: u16 = 32;
        const SECOND: u16 = 64;
        const MILLI: u16 = 128;
        const MICRO: u16 = 256;
        const DECADE: u16 = 512;
        const CENTURY: u16 = 1024;
        const MILLENNIUM: u16 = 2048;
        const ALL_SECS: u16 = SECOND | MILLI | MICRO;
        // Postgres reads the fields right to left, each number taking the unit
        // to its right; a time `hh:mm:ss` *sets* the microseconds, dropping
        // time spilled from fields to its right (`1 01:00 1.5 days` has no
        // 12 hours). First pair each number with its unit, left to right.
        enum Field<'a> {
            Time(&'a str),
            Number(&'a str, String),
        }
        let mut fields = Vec::new();
        let mut ago = false;
        let mut tokens = s.split_whitespace();
        while let Some(tok) = tokens.next() {
            let tok = tok.trim_start_matches('@');
            if tok.is_empty() {
                continue;
            }
            if tok.eq_ignore_ascii_case("ago") {
                ago = true;
                continue;
            }
            if tok.contains(':') {
                fields.push(Field::Time(tok));
                continue;
            }
            // A number, then its unit (possibly attached: "3days").
            let split = tok
                .find(|c: char| c.is_ascii_alphabetic())
                .unwrap_or(tok.len());
            let (num_text, unit) = tok.split_at(split);
            let unit = if unit.is_empty() {
                // A bare number at the end is seconds.
                tokens.next().unwrap_or("seconds")
            } else {
                unit
            };
            fields.push(Field::Number(num_text, unit.to_ascii_lowercase()));
        }
        if fields.is_empty() {
            return Err(bad());
        }
        let (mut months, mut days, mut micros) = (0i128, 0i128, 0i128);
        let mut seen = 0u16;
        // Whole parts are capped far below i128's range; past it is out of range anyway.
        let too_big = |v: i128| v.abs() > 1i128 << 100;
        // Postgres's AdjustFractMicroseconds: truncate, then round what is left.
        let fract_micros = |frac: f64, scale: i64| -> i128 {
            let v = frac * scale as f64;
            let whole = v.trunc();
            whole as i128 + (v - whole).round_ties_even() as i128
        };
        for field in fields.iter().rev() {
            let mut mark = |unit: u16| {
                if seen & unit != 0 {
                    return Err(bad());
                }
                seen |= unit;
                Ok(())
            };
            let (num_text, unit) = match field {
                Field::Number(n, u) => (*n, u.as_str()),
                Field::Time(tok) => {
                    mark(HOUR | MINUTE | ALL_SECS)?;
                    let (neg, body) = match tok.strip_prefix('-') {
                        Some(rest) => (true, rest),
                        None => (false, tok.strip_prefix('+').unwrap_or(tok)),
                    };
                    let whole = |p: &str| -> Result<i128, String> {
                        if p.is_empty() || p.len() > 20 || !p.bytes().all(|b| b.is_ascii_digit()) {
                            return Err(bad());
                        }
                        p.parse().map_err(|_| bad())
                    };
                    let parts: Vec<&str> = body.split(':').collect();
                    let (h, m, sec) = match parts.as_slice() {
                        // Two fields with a fraction on the second are minutes and seconds.
                        [m, sec] if sec.contains('.') => (0, whole(m)?, *sec),
                        [h, m] => (whole(h)?, whole(m)?, "0"),
                        [h, m, sec] => (whole(h)?, whole(m)?, *sec),
                        _ => return Err(bad()),
                    };
                    let (sec_whole, sec_frac) = sec.split_once('.').unwrap_or((sec, ""));
                    let sec_whole = whole(sec_whole)?;
                    if m > 59 || sec_whole > 60 {
                        return Err(format!("interval field value out of range: \"{s}\""));
                    }
                    let frac_us = if sec_frac.is_empty() {
                        0
                    } else if sec_frac.len() > 30 || !sec_frac.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(bad());
                    } else {
                        let f: f64 = format!("0.{sec_frac}").parse().map_err(|_| bad())?;
                        (f * 1e6).round_ties_even() as i128
                    };
                    let t = ((h * 60 + m) * 60 + sec_whole) * 1_000_000 + frac_us;
                    micros = if neg { -t } else { t };
                    continue;
                }
            };
            let (whole, frac) = split_number(num_text).ok_or_else(bad)?;
            match unit.trim_end_matches(',') {
                "millennium" | "millennia" | "millenniums" | "mil" | "mils" => {
                    mark(MILLENNIUM)?;
                    months += whole * 12_000 + (frac * 12_000.0).round_ties_even() as i128;
                }
                "century" | "centuries" | "c" | "cent" => {
                    mark(CENTURY)?;
                    months += whole * 1_200 + (frac * 1_200.0).round_ties_even() as i128;
                }
                "decade" | "decades" | "dec" | "decs" => {
                    mark(DECADE)?;
                    months += whole * 120 + (frac * 120.0).round_ties_even() as i128;
                }
                "year" | "years" | "y" | "yr" | "yrs" => {
                    mark(YEAR)?;
                    months += whole * 12 + (frac * 12.0).round_ties_even() as i128;
                }
                "month" | "months" | "mon" | "mons" => {
                    mark(MONTH)?;
                    months += whole;
                    // Postgres's AdjustFractDays(frac, 30).
                    let d = frac * 30.0;
                    days += d.trunc() as i128;
                    micros += fract_micros(d - d.trunc(), MICROS_PER_DAY);
                }
                "week" | "weeks" | "w" => {
                    mark(WEEK)?;
                    days += whole * 7;
                    let d = frac * 7.0;
                    days += d.trunc() as i128;
                    micros += fract_micros(d - d.trunc(), MICROS_PER_DAY);
                }
                "day" | "days" | "d" => {
                    mark(DAY)?;
                    days += whole;
                    micros += fract_micros(frac, MICROS_PER_DAY);
                }
                "hour" | "hours" | "h" | "hr" | "hrs" => {
                    mark(HOUR)?;
                    micros += whole * 3_600_000_000 + fract_micros(frac, 3_600_000_000);
                }
                "minute" | "minutes" | "min" | "mins" | "m" => {
                    mark(MINUTE)?;
                    micros += whole * 60_000_000 + fract_micros(frac, 60_000_000);
                }
                "second" | "seconds" | "sec" | "secs" | "s" => {
                    // Seconds with a fraction also claim the smaller units.
                    mark(if frac == 0.0 { SECOND } else { ALL_SECS })?;
                    micros += whole * 1_000_000 + fract_micros(frac, 1_000_000);
                }
                "millisecond" | "milliseconds" | "ms" | "msec" | "msecs" => {
                    mark(MILLI)?;
                    micros += whole * 1_000 + fract_micros(frac, 1_000);
                }
                "microsecond" | "microseconds" | "us" | "usec" | "usecs" => {
                    mark(MICRO)?;
                    micros += whole + fract_micros(frac, 1);
                }
                _ => return Err(bad()),
            }
            if too_big(months) || too_big(days) || too_big(micros) {
                return Err(overflow());
            }
        }
        if ago {
            (months, days, micros) = (-months, -days, -micros);
        }
        Ok(Interval {
            months: i32::try_from(months).map_err(|_| overflow())?,
            days: i32::try_from(days).map_err(|_| overflow())?,
            micros: i64::try_from(micros).map_err(|_| overflow())?,
        })
    }

    /// Writes the interval as Postgres's default output style does.
    pub fn format(&self, out: &mut String) {
        let years = self.months / 12;
        let mons = self.months % 12;
        let mut is_zero = true;
        let mut is_before = false;
        for (value, unit) in [(years, "year"), (mons, "mon"), (self.days, "day")] {
            if value == 0 {
                continue;
            }
            let _ = write!(
                out,
                "{}{}{value} {unit}{}",
                if is_zero { "" } else { " " },
                if is_before && value > 0 { "+" } else { "" },
                if value != 1 { "s" } else { "" }
            );
            is_before = value < 0;
            is_zero = false;
        }
        let m = self.micros;
        if is_zero || m != 0 {
            let minus = m < 0;
            let a = m.unsigned_abs();
            let (hours, rest) = (a / 3_600_000_000, a % 3_600_000_000);
            let (mins, rest) = (rest / 60_000_000, rest % 60_000_000);
            let (secs, frac) = (rest / 1_000_000, rest % 1_000_000);
            let _ = write!(
                out,
                "{}{}{hours:02}:{mins:02}:{secs:02}",
                if is_zero { "" } else { " " },
                if minus {
                    "-"
                } else if is_before {
                    "+"
                } else {
                    ""
                }
            );
            if frac != 0 {
                let f = format!("{frac:06}");
                let _ = write!(out, ".{}", f.trim_end_matches('0'));
            }
        }
    }

    pub fn checked_add(&self, o: &Interval) -> Option<Interval> {
        Some(Interval {
            months: self.months.checked_add(o.months)?,
            days: self.days.checked_add(o.days)?,
            micros: self.micros.checked_add(o.micros)?,
        })
    }

    pub fn checked_neg(&self) -> Option<Interval> {
        Some(Interval {
            months: self.months.checked_neg()?,
            days: self.days.checked_neg()?,
            micros: self.micros.checked_neg()?,
        })
    }

    /// `interval * factor`, spilling fractional months into days and
    /// fractional days into time, as Postgres does.
    pub fn mul(&self, factor: f64) -> Result<Interval, String> {
        let months = self.months as f64 * factor;
        let days = self.days as f64 * factor;
        let whole_months = months.trunc();
        let month_days = (months - whole_months) * 30.0;
        let whole_days = (days + month_days).trunc();
        let micros =
            self.micros as f64 * factor + (days + month_days - whole_days) * MICROS_PER_DAY as f64;
        if !whole_months.is_finite()
            || whole_months.abs() > i32::MAX as f64
            || whole_days.abs() > i32::MAX as f64
            || micros.abs() > 9.2e18
            || micros.is_nan()
        {
            return Err(overflow());
        }
        Ok(Interval {
            months: whole_months as i32,
            days: whole_days as i32,
            micros: micros.round() as i64,
        })
    }
}

/// `timestamp + interval`, as Postgres computes it: months move the calendar
/// (the day is clamped to the month's end), then days, then time, and each
/// step must stay a valid timestamp. Infinite timestamps stay infinite. Time
/// zones other than UTC would make days differ from 24 hours; viewcast
/// computes in UTC, the session zone it assumes.
pub fn add_to_timestamp(micros: i64, iv: &Interval) -> Result<i64, String> {
    if micros == TS_POS_INF || micros == TS_NEG_INF {
        return Ok(micros);
    }
    let range = || "timestamp out of range".to_string();
    let mut t = micros;
    if iv.months != 0 {
        let (days, time) = split_timestamp(t);
        let (y, m, d) = ymd_from_date(days);
        let total = y * 12 + (m as i64 - 1) + iv.months as i64;
        let (ny, nm) = (total.div_euclid(12), total.rem_euclid(12) as u32 + 1);
        let nd = date_from_ymd(ny, nm, d.min(days_in_month(ny, nm)));
        t = valid_day(nd)
            .and_then(|nd| (nd * MICROS_PER_DAY).checked_add(time))
            .filter(|t| is_valid_timestamp(*t))
            .ok_or_else(range)?;
    }
    if iv.days != 0 {
        let (days, time) = split_timestamp(t);
        t = valid_day(days + iv.days as i64)
            .and_then(|nd| (nd * MICROS_PER_DAY).checked_add(time))
            .filter(|t| is_valid_timestamp(*t))
            .ok_or_else(range)?;
    }
    t.checked_add(iv.micros)
        .filter(|t| is_valid_timestamp(*t))
        .ok_or_else(range)
}

/// `timestamptz + interval` in a session zone, as Postgres adds it: the
/// months, then the days, step the wall-clock time in `zone` (so a day
/// across a DST change is 23 or 25 hours), the time part adds exactly.
pub fn add_to_timestamptz(
    micros: i64,
    iv: &Interval,
    zone: &crate::repr::tz::Zone,
) -> Result<i64, String> {
    if micros == TS_POS_INF || micros == TS_NEG_INF {
        return Ok(micros);
    }
    let range = || "timestamp out of range".to_string();
    let mut t = micros;
    let steps = [
        Interval {
            months: iv.months,
            days: 0,
            micros: 0,
        },
        Interval {
            months: 0,
            days: iv.days,
            micros: 0,
        },
    ];
    for step in steps.iter().filter(|s| s.months != 0 || s.days != 0) {
        let local = t
            .checked_add(zone.offset_at(t) as i64 * 1_000_000)
            .filter(|l| is_valid_timestamp(*l))
            .ok_or_else(range)?;
        let moved = add_to_timestamp(local, step)?;
        t = moved
            .checked_sub(zone.offset_for_local(moved) as i64 * 1_000_000)
            .filter(|t| is_valid_timestamp(*t))
            .ok_or_else(range)?;
    }
    t.checked_add(iv.micros)
        .filter(|t| is_valid_timestamp(*t))
        .ok_or_else(range)
}

/// A day that a timestamp can be on (so multiplying it out cannot overflow).
fn valid_day(days: i64) -> Option<i64> {
    (DATE_MIN..=DATE_END_FOR_TIMESTAMP as i64)
        .contains(&days)
        .then_some(days)
}

/// `timestamp - timestamp`: whole days and the rest, as Postgres gives it;
/// infinite operands and differences past an `i64` of microseconds are errors.
pub fn timestamp_diff(a: i64, b: i64) -> Result<Interval, String> {
    if [a, b].iter().any(|t| *t == TS_POS_INF || *t == TS_NEG_INF) {
        return Err("cannot subtract infinite timestamps".into());
    }
    let diff = a.checked_sub(b).ok_or_else(overflow)?;
    let days = diff / MICROS_PER_DAY;
    Ok(Interval {
        months: 0,
        days: days as i32,
        micros: diff - days * MICROS_PER_DAY,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(s: &str) -> String {
        let mut out = String::new();
        Interval::parse(s).unwrap().format(&mut out);
        out
    }

    #[test]
    fn parses_and_prints_as_postgres() {
        assert_eq!(
            show("1 year 2 mons 3 days 04:05:06.789"),
            "1 year 2 mons 3 days 04:05:06.789"
        );
        assert_eq!(show("-1 days +02:00:00"), "-1 days +02:00:00");
        assert_eq!(show("90 days"), "90 days");
        assert_eq!(show("1.5 days"), "1 day 12:00:00");
        assert_eq!(show("2 hours 30 minutes"), "02:30:00");
        assert_eq!(show("0 seconds"), "00:00:00");
        assert_eq!(show("-1 year"), "-1 years");
        assert_eq!(show("1 week ago"), "-7 days");
        assert_eq!(show("1 mon -00:00:01"), "1 mon -00:00:01");
        assert!(Interval::parse("soon").is_err());
    }

    #[test]
    fn input_follows_postgres_decode_interval() {
        // Outputs checked against PostgreSQL 15.
        assert_eq!(
            show("25.576 centuries -0.25 weeks -4.8 seconds"),
            "2557 years 7 mons -1 days -18:00:04.8"
        );
        assert_eq!(show("-2.4 years 2.4 centuries"), "237 years 7 mons");
        assert_eq!(
            show("-0.25 weeks -0.25 seconds 42.685 mons"),
            "3 years 6 mons 19 days -04:48:00.25"
        );
        // Fields are read right to left and a time sets the microseconds.
        assert_eq!(show("74622:15:21 1.5days"), "1 day 74622:15:21");
        assert_eq!(
            show("-0.5days -65:17:19.9063372 1.5w"),
            "10 days -77:17:19.906337"
        );
        assert_eq!(
            show("+32:10.77134 +3weeks .5y"),
            "6 mons 21 days 00:32:10.77134"
        );
        assert_eq!(show("-178956970 years -8 mons"), "-178956970 years -8 mons");
        for bad in [
            "2.2 minutes 0.5 minutes",
            "1 hour 01:00",
            "0.5 seconds 1 ms",
            "-.25 us",
            "1e3 days",
        ] {
            assert!(Interval::parse(bad).is_err(), "{bad}");
        }
        assert!(Interval::parse("2147483648 days").is_err());
    }

    #[test]
    fn calendar_arithmetic() {
        let jan31 = date_from_ymd(2024, 1, 31) * MICROS_PER_DAY;
        let month = Interval::parse("1 month").unwrap();
        let feb = add_to_timestamp(jan31, &month).unwrap();
        assert_eq!(feb, date_from_ymd(2024, 2, 29) * MICROS_PER_DAY);
        let mut out = String::new();
        timestamp_diff(feb + 3_600_000_000, jan31)
            .unwrap()
            .format(&mut out);
        assert_eq!(out, "29 days 01:00:00");
        let mut out = String::new();
        Interval::parse("1 mon")
            .unwrap()
            .mul(1.5)
            .unwrap()
            .format(&mut out);
        assert_eq!(out, "1 mon 15 days");
    }
}
