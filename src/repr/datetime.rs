//! Dates and timestamps as Postgres stores them (days / microseconds from the
//! Unix epoch here), parsed from ISO text and rendered the way `to_json` does.

use std::fmt::Write;

const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Sentinels for `infinity` and `-infinity`, as Postgres uses the extreme values.
pub const DATE_POS_INF: i32 = i32::MAX;
pub const DATE_NEG_INF: i32 = i32::MIN;
pub const TS_POS_INF: i64 = i64::MAX;
pub const TS_NEG_INF: i64 = i64::MIN;

/// Days from 1970-01-01 to the given proleptic Gregorian date (year 0 = 1 BC).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

fn bad(kind: &str, s: &str) -> String {
    format!("invalid input syntax for type {kind}: \"{s}\"")
}

/// Parses `YYYY-MM-DD[ BC]`.
pub fn parse_date(s: &str) -> Result<i32, String> {
    match s {
        "infinity" => return Ok(DATE_POS_INF),
        "-infinity" => return Ok(DATE_NEG_INF),
        _ => {}
    }
    let (body, bc) = match s.strip_suffix(" BC") {
        Some(b) => (b, true),
        None => (s, false),
    };
    let days = parse_ymd(body, bc).ok_or_else(|| bad("date", s))?;
    i32::try_from(days).map_err(|_| bad("date", s))
}

fn parse_ymd(s: &str, bc: bool) -> Option<i64> {
    let mut parts = s.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if bc { 1 - y } else { y };
    Some(days_from_civil(y, m, d))
}

/// Parses `YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM[:SS]]][ BC]` into microseconds from the
/// epoch (UTC when an offset is present).
pub fn parse_timestamp(s: &str, with_zone: bool) -> Result<i64, String> {
    let kind = if with_zone {
        "timestamp with time zone"
    } else {
        "timestamp"
    };
    match s {
        "infinity" => return Ok(TS_POS_INF),
        "-infinity" => return Ok(TS_NEG_INF),
        _ => {}
    }
    let (body, bc) = match s.strip_suffix(" BC") {
        Some(b) => (b, true),
        None => (s, false),
    };
    let (date, rest) = body.split_once([' ', 'T']).ok_or_else(|| bad(kind, s))?;
    let days = parse_ymd(date, bc).ok_or_else(|| bad(kind, s))?;
    // Split time from offset: the offset starts at the first '+' or '-' after the time.
    let (time, offset) = match rest.find(['+', '-']) {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest.strip_suffix('Z').unwrap_or(rest), None),
    };
    let mut tp = time.splitn(3, ':');
    let h: i64 = tp
        .next()
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| bad(kind, s))?;
    let mi: i64 = tp
        .next()
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| bad(kind, s))?;
    let sec_text = tp.next().unwrap_or("0");
    let (sec, frac) = sec_text.split_once('.').unwrap_or((sec_text, ""));
    let sec: i64 = sec.parse().map_err(|_| bad(kind, s))?;
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(kind, s));
    }
    let micros_frac: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().map_err(|_| bad(kind, s))?
    };
    let mut total = days * MICROS_PER_DAY + ((h * 60 + mi) * 60 + sec) * 1_000_000 + micros_frac;
    if let Some(off) = offset {
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let mut op = off[1..].split(':');
        let oh: i64 = op
            .next()
            .and_then(|x| x.parse().ok())
            .ok_or_else(|| bad(kind, s))?;
        let om: i64 = op.next().map(|x| x.parse().unwrap_or(0)).unwrap_or(0);
        let os: i64 = op.next().map(|x| x.parse().unwrap_or(0)).unwrap_or(0);
        total -= sign * ((oh * 60 + om) * 60 + os) * 1_000_000;
    }
    Ok(total)
}

fn write_year(out: &mut String, y: i64) {
    if y > 0 {
        let _ = write!(out, "{y:04}");
    } else {
        // ISO 8601 / XSD: year 0 is 1 BC, written as -0001 by Postgres's JSON output.
        let _ = write!(out, "-{:04}", 1 - y);
    }
}

/// `to_json` rendering of a date, without quotes.
pub fn format_date(days: i32, out: &mut String) {
    match days {
        DATE_POS_INF => out.push_str("infinity"),
        DATE_NEG_INF => out.push_str("-infinity"),
        _ => {
            let (y, m, d) = civil_from_days(days as i64);
            write_year(out, y);
            let _ = write!(out, "-{m:02}-{d:02}");
        }
    }
}

/// `to_json` rendering of a timestamp (ISO 8601 with `T`, fraction without trailing
/// zeros), with `+00:00` appended for timestamptz, without quotes.
pub fn format_timestamp(micros: i64, with_zone: bool, out: &mut String) {
    match micros {
        TS_POS_INF => return out.push_str("infinity"),
        TS_NEG_INF => return out.push_str("-infinity"),
        _ => {}
    }
    let days = micros.div_euclid(MICROS_PER_DAY);
    let rem = micros.rem_euclid(MICROS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    write_year(out, y);
    let secs = rem / 1_000_000;
    let frac = rem % 1_000_000;
    let _ = write!(
        out,
        "-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac != 0 {
        let f = format!("{frac:06}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    if with_zone {
        out.push_str("+00:00");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for days in [-800_000i64, -1, 0, 1, 10_957, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(2000, 1, 1), 10_957);
    }

    #[test]
    fn timestamps_render_like_to_json() {
        let mut out = String::new();
        format_timestamp(
            parse_timestamp("2024-02-29 13:14:15.120000", false).unwrap(),
            false,
            &mut out,
        );
        assert_eq!(out, "2024-02-29T13:14:15.12");
        out.clear();
        format_timestamp(
            parse_timestamp("2024-02-29 13:14:15+05:30", true).unwrap(),
            true,
            &mut out,
        );
        assert_eq!(out, "2024-02-29T07:44:15+00:00");
        out.clear();
        format_date(parse_date("1999-12-31").unwrap(), &mut out);
        assert_eq!(out, "1999-12-31");
        assert!(parse_date("1999-13-01").is_err());
        assert!(parse_timestamp("yesterday", false).is_err());
    }
}
