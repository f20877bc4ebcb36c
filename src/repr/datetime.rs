//! Dates and timestamps as Postgres stores them: days (`i32`) or microseconds
//! (`i64`) since 2000-01-01, with the extreme values standing for `-infinity`
//! and `infinity`.
//!
//! Using Postgres's own epoch and sentinels is what lets every value Postgres
//! accepts fit: timestamps run from 4714-11-24 BC to 294276-12-31 AD, which
//! counted in microseconds from 1970 would not fit an `i64`. Values outside
//! those ranges are the errors Postgres gives (`date out of range`,
//! `timestamp out of range`), never an overflow.
//!
//! Values are parsed from the ISO forms Postgres writes (and the usual input
//! variants), and written two ways: [`Style::Text`] is the output function
//! (`2024-01-01 10:00:00+00`, DateStyle ISO, TimeZone UTC) and [`Style::Json`]
//! is what `to_json` writes (`2024-01-01T10:00:00+00:00`).

use std::cmp::Ordering;
use std::fmt::Write;

use super::tz::{DateOrder, DateStyle, OutStyle, TimeCx, Zone};

pub const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Sentinels for `infinity` and `-infinity`, as Postgres uses the extreme values.
pub const DATE_POS_INF: i32 = i32::MAX;
pub const DATE_NEG_INF: i32 = i32::MIN;
pub const TS_POS_INF: i64 = i64::MAX;
pub const TS_NEG_INF: i64 = i64::MIN;

/// Days from 1970-01-01 (where [`days_from_civil`] counts from) to 2000-01-01.
pub const UNIX_TO_PG_DAYS: i64 = 10_957;
/// The first valid date, 4714-11-24 BC (Julian day 0).
pub const DATE_MIN: i64 = -2_451_545;
/// One past the last valid date: 5874898-01-01.
pub const DATE_END: i64 = 2_145_031_949;
/// The first valid timestamp, 4714-11-24 00:00 BC.
pub const TS_MIN: i64 = DATE_MIN * MICROS_PER_DAY;
/// One past the last valid timestamp: 294277-01-01 00:00.
pub const TS_END: i64 = DATE_END_FOR_TIMESTAMP as i64 * MICROS_PER_DAY;
/// The first date that no longer fits a timestamp (294277-01-01).
pub const DATE_END_FOR_TIMESTAMP: i32 = 106_751_983;

/// Days from 1970-01-01 to the given proleptic Gregorian date (year 0 = 1 BC).
/// Exact for any year a date can have (and far beyond).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `z` days after 1970-01-01 (year 0 = 1 BC).
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

/// Days since 2000-01-01 of a calendar date (year 0 = 1 BC). Callers keep
/// `y` within a few million years, as parsing does.
pub fn date_from_ymd(y: i64, m: u32, d: u32) -> i64 {
    days_from_civil(y, m, d) - UNIX_TO_PG_DAYS
}

/// The calendar date of a day counted from 2000-01-01 (year 0 = 1 BC).
pub fn ymd_from_date(days: i64) -> (i64, u32, u32) {
    civil_from_days(days + UNIX_TO_PG_DAYS)
}

pub fn is_leap(y: i64) -> bool {
    y.rem_euclid(4) == 0 && (y.rem_euclid(100) != 0 || y.rem_euclid(400) == 0)
}

pub fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

pub fn is_valid_date(days: i64) -> bool {
    (DATE_MIN..DATE_END).contains(&days)
}

pub fn is_valid_timestamp(micros: i64) -> bool {
    (TS_MIN..TS_END).contains(&micros)
}

/// Splits a finite timestamp into (days since 2000-01-01, microseconds into the day).
pub fn split_timestamp(micros: i64) -> (i64, i64) {
    (
        micros.div_euclid(MICROS_PER_DAY),
        micros.rem_euclid(MICROS_PER_DAY),
    )
}

/// `date::timestamp`: midnight of the day; infinities stay infinite.
pub fn date_to_timestamp(days: i32) -> Result<i64, String> {
    match days {
        DATE_POS_INF => Ok(TS_POS_INF),
        DATE_NEG_INF => Ok(TS_NEG_INF),
        // Below DATE_MIN no date is valid, but none may overflow either.
        d if d >= DATE_END_FOR_TIMESTAMP || (d as i64) < DATE_MIN => {
            Err("date out of range for timestamp".into())
        }
        d => Ok(d as i64 * MICROS_PER_DAY),
    }
}

/// `timestamp::date`: the day the timestamp falls on; infinities stay infinite.
pub fn timestamp_to_date(micros: i64) -> i32 {
    match micros {
        TS_POS_INF => DATE_POS_INF,
        TS_NEG_INF => DATE_NEG_INF,
        // Valid timestamps' days are valid dates; saturate anything else.
        t => split_timestamp(t)
            .0
            .clamp(DATE_MIN, DATE_END_FOR_TIMESTAMP as i64) as i32,
    }
}

/// A date compared with a timestamp, as Postgres compares them: the date as
/// its midnight, a date past the timestamp range above every finite
/// timestamp, infinities equal to infinities.
pub fn cmp_date_timestamp(days: i32, micros: i64) -> Ordering {
    let d = match days {
        DATE_POS_INF => i128::MAX,
        DATE_NEG_INF => i128::MIN,
        d => d as i128 * MICROS_PER_DAY as i128,
    };
    let t = match micros {
        TS_POS_INF => i128::MAX,
        TS_NEG_INF => i128::MIN,
        t => t as i128,
    };
    d.cmp(&t)
}

fn bad(kind: &str, s: &str) -> String {
    format!("invalid input syntax for type {kind}: \"{s}\"")
}

fn field_range(s: &str) -> String {
    format!("date/time field value out of range: \"{s}\"")
}

/// What parsing found wrong, turned into Postgres's message by the caller.
enum Bad {
    Syntax,
    Field,
    ZoneRange,
    Range,
}

/// Digits only (no sign, no spaces), as a number that is not absurdly long.
fn digits(s: &str, max_len: usize) -> Option<i64> {
    if s.is_empty() || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Strips a trailing era (` BC`/` AD`, any case), returning whether it was BC.
fn strip_era(s: &str) -> (&str, bool) {
    let t = s.trim_end();
    if t.len() >= 3 && t.is_char_boundary(t.len() - 2) {
        let (body, era) = t.split_at(t.len() - 2);
        if body.ends_with(|c: char| c.is_ascii_whitespace()) {
            if era.eq_ignore_ascii_case("bc") {
                return (body.trim_end(), true);
            }
            if era.eq_ignore_ascii_case("ad") {
                return (body.trim_end(), false);
            }
        }
    }
    (t, false)
}

/// A date of three numeric fields separated by `-`, `/` or `.`, as days since
/// 2000-01-01. A first field of three or more digits is the year (`2024-01-02`,
/// `2024/01/02` in every order); otherwise the fields are in DateStyle's
/// `order` (`01/02/2024` is January 2 under MDY, February 1 under DMY). A
/// year of one or two digits is taken as 1970–2069, as Postgres takes it.
fn parse_ymd(s: &str, bc: bool, order: DateOrder) -> Result<i64, Bad> {
    let sep = s
        .chars()
        .find(|c| matches!(c, '-' | '/' | '.'))
        .ok_or(Bad::Syntax)?;
    let mut parts = s.split(sep);
    let (Some(a), Some(b), Some(c), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Bad::Syntax);
    };
    let (y, m, d) = if a.len() > 2 {
        (a, b, c)
    } else {
        match order {
            DateOrder::Mdy => (c, a, b),
            DateOrder::Dmy => (c, b, a),
            DateOrder::Ymd => (a, b, c),
        }
    };
    if m.len() > 2 || d.len() > 2 {
        return Err(if digits(m, 18).is_some() && digits(d, 18).is_some() {
            Bad::Field
        } else {
            Bad::Syntax
        });
    }
    // Years past 7 digits are past every range; still report them as out of range.
    let two_digit = y.len() <= 2;
    let y = digits(y, 18).ok_or(Bad::Syntax)?;
    let m = digits(m, 2).ok_or(Bad::Syntax)? as u32;
    let d = digits(d, 2).ok_or(Bad::Syntax)? as u32;
    if y > 9_999_999 || (y == 0 && !two_digit) {
        return Err(Bad::Field);
    }
    let y = if bc {
        if y == 0 {
            return Err(Bad::Field);
        }
        1 - y
    } else if two_digit {
        if y < 70 {
            y + 2000
        } else {
            y + 1900
        }
    } else {
        y
    };
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return Err(Bad::Field);
    }
    Ok(date_from_ymd(y, m, d))
}

/// The special words every date/time input accepts (any case, spaces around).
fn special(s: &str) -> Option<Ordering> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("infinity") {
        Some(Ordering::Greater)
    } else if t.eq_ignore_ascii_case("-infinity") {
        Some(Ordering::Less)
    } else if t.eq_ignore_ascii_case("epoch") {
        Some(Ordering::Equal)
    } else {
        None
    }
}

/// Parses `YYYY-MM-DD[ BC]` (a time after it is read and ignored),
/// `infinity`, `-infinity` and `epoch`, with DateStyle's default field order (MDY).
pub fn parse_date(s: &str) -> Result<i32, String> {
    parse_date_in(s, DateOrder::Mdy)
}

/// [`parse_date`] with DateStyle's field `order` for dates like `01/02/2024`.
pub fn parse_date_in(s: &str, order: DateOrder) -> Result<i32, String> {
    match iso_date(s) {
        Some(days) => Ok(days),
        None => parse_date_general(s, order),
    }
}

/// A valid `YYYY-MM-DD` of years 1 to 9999 (what COPY and pgoutput send
/// under DateStyle ISO), read without the general parser; anything else is
/// `None`.
fn iso_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let y = i64::from(y);
    if y == 0 || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(date_from_ymd(y, m, d) as i32)
}

fn parse_date_general(s: &str, order: DateOrder) -> Result<i32, String> {
    match special(s) {
        Some(Ordering::Greater) => return Ok(DATE_POS_INF),
        Some(Ordering::Less) => return Ok(DATE_NEG_INF),
        Some(Ordering::Equal) => return Ok(-UNIX_TO_PG_DAYS as i32),
        None => {}
    }
    // A time and zone may follow; they are checked, then dropped, as Postgres does.
    match split_datetime(s, order).map(|(days, _, _)| days) {
        Ok(days) if is_valid_date(days) => Ok(days as i32),
        Ok(_) => Err(format!("date out of range: \"{s}\"")),
        Err(Bad::Field) => Err(field_range(s)),
        Err(Bad::Range) => Err(format!("date out of range: \"{s}\"")),
        Err(_) => Err(bad("date", s)),
    }
}

/// `HH:MM[:SS[.ffffff]]` as microseconds into the day (up to 24:00:00), the
/// fraction rounded to microseconds as Postgres rounds it.
/// Two fields with a fraction on the second are `MM:SS.fff`, as Postgres reads them.
fn parse_time(s: &str) -> Result<i64, Bad> {
    let fields: Vec<&str> = s.split(':').collect();
    let (h, m, sec) = match fields.as_slice() {
        [m, sec] if sec.contains('.') => ("0", *m, *sec),
        [h, m] => (*h, *m, "0"),
        [h, m, sec] => (*h, *m, *sec),
        _ => return Err(Bad::Syntax),
    };
    if h.len() > 2 || m.len() > 2 {
        return Err(Bad::Syntax);
    }
    let h = digits(h, 2).ok_or(Bad::Syntax)?;
    let m = digits(m, 2).ok_or(Bad::Syntax)?;
    let (whole, frac) = match sec.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (sec, None),
    };
    let sec = digits(whole, 2).ok_or(Bad::Syntax)?;
    let micros = match frac {
        None => 0,
        Some("") => 0,
        Some(f) => {
            if f.len() > 30 || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Bad::Syntax);
            }
            // Postgres: rint(strtod("0.fff") * 1e6).
            let v: f64 = format!("0.{f}").parse().map_err(|_| Bad::Syntax)?;
            (v * 1e6).round_ties_even() as i64
        }
    };
    let total = ((h * 60 + m) * 60 + sec) * 1_000_000 + micros;
    if m > 59 || sec > 60 || h > 24 || total > MICROS_PER_DAY {
        return Err(Bad::Field);
    }
    Ok(total)
}

/// A zone offset (`Z`, `+HH`, `+HH:MM`, `+HH:MM:SS`, `+HHMM`) in seconds east of UTC.
fn parse_offset(s: &str) -> Result<i64, Bad> {
    if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return Ok(0);
    }
    let (sign, body) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(Bad::Syntax),
    };
    let (h, m, sec) = if body.contains(':') {
        let mut p = body.split(':');
        let h = digits(p.next().unwrap_or(""), 2).ok_or(Bad::Syntax)?;
        let m = p.next().map_or(Some(0), |x| digits(x, 2));
        let sec = p.next().map_or(Some(0), |x| digits(x, 2));
        if p.next().is_some() {
            return Err(Bad::Syntax);
        }
        (h, m.ok_or(Bad::Syntax)?, sec.ok_or(Bad::Syntax)?)
    } else {
        match body.len() {
            1 | 2 => (digits(body, 2).ok_or(Bad::Syntax)?, 0, 0),
            4 => {
                let v = digits(body, 4).ok_or(Bad::Syntax)?;
                (v / 100, v % 100, 0)
            }
            6 => {
                let v = digits(body, 6).ok_or(Bad::Syntax)?;
                (v / 10_000, v / 100 % 100, v % 100)
            }
            _ => return Err(Bad::Syntax),
        }
    };
    if m > 59 || sec > 59 {
        return Err(Bad::Field);
    }
    if h > 15 {
        return Err(Bad::ZoneRange);
    }
    Ok(sign * ((h * 60 + m) * 60 + sec))
}

/// `YYYY-MM-DD[( |T)HH:MM[:SS[.ffffff]]][zone][ BC]` as (days since
/// 2000-01-01, microseconds into the day, zone offset in seconds east if
/// one is written), each field checked.
fn split_datetime(s: &str, order: DateOrder) -> Result<(i64, i64, Option<i64>), Bad> {
    let (body, bc) = strip_era(s.trim());
    let body = body.trim();
    let (date, rest) = match body.find([' ', 'T', 't']) {
        Some(i) => (&body[..i], body[i + 1..].trim()),
        None => (body, ""),
    };
    let days = parse_ymd(date, bc, order)?;
    let (time, zone) = match rest.find(['+', '-', 'Z', 'z', ' ']) {
        Some(i) => (rest[..i].trim(), rest[i..].trim()),
        None => (rest, ""),
    };
    let time = if time.is_empty() && zone.is_empty() {
        0
    } else {
        parse_time(time)?
    };
    let offset = if zone.is_empty() {
        None
    } else {
        Some(parse_offset(zone)?)
    };
    Ok((days, time, offset))
}

/// Parses `YYYY-MM-DD[( |T)HH:MM[:SS[.ffffff]]][zone][ BC]`, `infinity`,
/// `-infinity` and `epoch` into microseconds since 2000-01-01. A timestamptz
/// is moved to UTC by its offset (no offset: the session zone, here UTC); a
/// timestamp without time zone ignores an offset, as Postgres does.
pub fn parse_timestamp(s: &str, with_zone: bool) -> Result<i64, String> {
    parse_timestamp_in(s, with_zone, DateOrder::Mdy, None)
}

/// [`parse_timestamp`] in a session: DateStyle's field `order`, and for a
/// timestamptz written without an offset, the local time in `zone` (UTC if
/// `None`).
pub fn parse_timestamp_in(
    s: &str,
    with_zone: bool,
    order: DateOrder,
    zone: Option<&Zone>,
) -> Result<i64, String> {
    let kind = if with_zone {
        "timestamp with time zone"
    } else {
        "timestamp"
    };
    match special(s) {
        Some(Ordering::Greater) => return Ok(TS_POS_INF),
        Some(Ordering::Less) => return Ok(TS_NEG_INF),
        Some(Ordering::Equal) => return Ok(-UNIX_TO_PG_DAYS * MICROS_PER_DAY),
        None => {}
    }
    let parsed = (|| -> Result<i64, Bad> {
        let (days, time, offset) = split_datetime(s, order)?;
        // Beyond this the arithmetic below could overflow; it is out of range anyway.
        if !(DATE_MIN..DATE_END_FOR_TIMESTAMP as i64 + 1).contains(&days) {
            return Err(Bad::Range);
        }
        let mut total = days * MICROS_PER_DAY + time;
        if with_zone {
            let east = match (offset, zone) {
                (Some(o), _) => o,
                (None, Some(z)) => z.offset_for_local(total) as i64,
                (None, None) => 0,
            };
            total -= east * 1_000_000;
        }
        Ok(total)
    })();
    match parsed {
        Ok(t) if is_valid_timestamp(t) => Ok(t),
        Ok(_) | Err(Bad::Range) => Err(format!("timestamp out of range: \"{s}\"")),
        Err(Bad::Syntax) => Err(bad(kind, s)),
        Err(Bad::Field) => Err(field_range(s)),
        Err(Bad::ZoneRange) => Err(format!("time zone displacement out of range: \"{s}\"")),
    }
}

/// How a date or timestamp is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// The output function with DateStyle ISO and TimeZone UTC:
    /// `2024-01-01 10:00:00.5+00`.
    Text,
    /// What `to_json` writes (ISO 8601): `2024-01-01T10:00:00.5+00:00`.
    Json,
}

/// The year as Postgres writes it (at least four digits; BC years count from
/// 1), and whether it is BC.
fn era_year(y: i64) -> (i64, bool) {
    if y > 0 {
        (y, false)
    } else {
        (1 - y, true)
    }
}

/// Writes a date: `2024-02-29`, `0044-03-15 BC`, `infinity`. Both styles agree.
pub fn format_date(days: i32, out: &mut String) {
    format_date_in(days, DateStyle::default(), out)
}

/// Writes a date in a DateStyle, as Postgres's `date_out` does: ISO
/// `2024-01-02`, SQL `01/02/2024` (DMY: `02/01/2024`), Postgres
/// `01-02-2024` (DMY: `02-01-2024`), German `02.01.2024`; ` BC` last.
pub fn format_date_in(days: i32, ds: DateStyle, out: &mut String) {
    match days {
        DATE_POS_INF => out.push_str("infinity"),
        DATE_NEG_INF => out.push_str("-infinity"),
        _ => {
            let (y, m, d) = ymd_from_date(days as i64);
            let (year, bc) = era_year(y);
            write_date_fields(year, m, d, ds, out);
            if bc {
                out.push_str(" BC");
            }
        }
    }
}

fn write_date_fields(year: i64, m: u32, d: u32, ds: DateStyle, out: &mut String) {
    let dmy = ds.order == DateOrder::Dmy;
    let _ = match ds.style {
        OutStyle::Iso => write!(out, "{year:04}-{m:02}-{d:02}"),
        OutStyle::Sql if dmy => write!(out, "{d:02}/{m:02}/{year:04}"),
        OutStyle::Sql => write!(out, "{m:02}/{d:02}/{year:04}"),
        OutStyle::Postgres if dmy => write!(out, "{d:02}-{m:02}-{year:04}"),
        OutStyle::Postgres => write!(out, "{m:02}-{d:02}-{year:04}"),
        OutStyle::German => write!(out, "{d:02}.{m:02}.{year:04}"),
    };
}

/// Writes a timestamp in `style`, the fraction without trailing zeros, with
/// the UTC offset for timestamptz and ` BC` last.
pub fn format_timestamp(micros: i64, with_zone: bool, style: Style, out: &mut String) {
    let zone = with_zone.then_some((0, None));
    write_timestamp(
        micros,
        zone,
        style == Style::Json,
        DateStyle::default(),
        out,
    )
}

/// `timestamp` text in a DateStyle (`timestamp_out`).
pub fn format_timestamp_in(micros: i64, ds: DateStyle, out: &mut String) {
    write_timestamp(micros, None, false, ds, out)
}

/// `timestamptz` text in the session's zone and DateStyle
/// (`timestamptz_out`): `2024-01-01 00:00:00-05` in ISO, the zone's
/// abbreviation in the other styles (`01/01/2024 00:00:00 EST`).
pub fn format_timestamptz_in(micros: i64, cx: &TimeCx, out: &mut String) {
    if !is_finite(micros) {
        return write_timestamp(micros, None, false, cx.datestyle(), out);
    }
    let zone = cx.zone();
    let (local, offset) = shifted(micros, zone);
    let abbrev = (cx.datestyle().style != OutStyle::Iso).then(|| zone.abbreviation_at(micros));
    write_timestamp(
        local,
        Some((offset, abbrev.as_deref())),
        false,
        cx.datestyle(),
        out,
    )
}

/// What `to_json` writes for a timestamptz in the session's zone:
/// `2024-01-01T00:00:00-05:00` (DateStyle does not matter).
pub fn format_timestamptz_json(micros: i64, zone: &Zone, out: &mut String) {
    if !is_finite(micros) {
        return write_timestamp(micros, None, true, DateStyle::default(), out);
    }
    let (local, offset) = shifted(micros, zone);
    write_timestamp(local, Some((offset, None)), true, DateStyle::default(), out)
}

/// The wall-clock time of a finite timestamptz in `zone`, and the offset.
/// A value too near the ends of `i64` to shift (none comes from Postgres)
/// is shown at offset zero rather than overflow.
fn shifted(micros: i64, zone: &Zone) -> (i64, i32) {
    let offset = zone.offset_at(micros);
    match micros.checked_add(offset as i64 * 1_000_000) {
        Some(local) if is_finite(local) => (local, offset),
        _ => (micros, 0),
    }
}

fn is_finite(micros: i64) -> bool {
    micros != TS_POS_INF && micros != TS_NEG_INF
}

/// Day and month names as the Postgres DateStyle writes them.
const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Postgres's `EncodeDateTime`: `local` is the wall-clock time; `zone` the
/// offset (seconds east) and, for the non-ISO styles, the abbreviation of a
/// timestamptz; `json` the ISO 8601 form `to_json` uses.
fn write_timestamp(
    local: i64,
    zone: Option<(i32, Option<&str>)>,
    json: bool,
    ds: DateStyle,
    out: &mut String,
) {
    match local {
        TS_POS_INF => return out.push_str("infinity"),
        TS_NEG_INF => return out.push_str("-infinity"),
        _ => {}
    }
    let (days, rem) = split_timestamp(local);
    let (y, m, d) = ymd_from_date(days);
    let (year, bc) = era_year(y);
    let secs = rem / 1_000_000;
    let frac = rem % 1_000_000;
    let time = |out: &mut String| {
        let _ = write!(
            out,
            "{:02}:{:02}:{:02}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        if frac != 0 {
            let f = format!("{frac:06}");
            out.push('.');
            out.push_str(f.trim_end_matches('0'));
        }
    };
    let style = if json { OutStyle::Iso } else { ds.style };
    match style {
        OutStyle::Iso => {
            write_date_fields(year, m, d, DateStyle::default(), out);
            out.push(if json { 'T' } else { ' ' });
            time(out);
            if let Some((offset, _)) = zone {
                write_offset(offset, json, out);
            }
        }
        OutStyle::Postgres => {
            let dow = (days + 6).rem_euclid(7) as usize; // 2000-01-01 was a Saturday.
            let month = MONTHS[(m - 1) as usize];
            out.push_str(DAYS[dow]);
            let _ = if ds.order == DateOrder::Dmy {
                write!(out, " {d:02} {month} ")
            } else {
                write!(out, " {month} {d:02} ")
            };
            time(out);
            let _ = write!(out, " {year:04}");
            write_abbreviation(zone, out);
        }
        OutStyle::Sql | OutStyle::German => {
            write_date_fields(year, m, d, ds, out);
            out.push(' ');
            time(out);
            write_abbreviation(zone, out);
        }
    }
    if bc {
        out.push_str(" BC");
    }
}

fn write_abbreviation(zone: Option<(i32, Option<&str>)>, out: &mut String) {
    match zone {
        Some((_, Some(abbrev))) => {
            out.push(' ');
            out.push_str(abbrev);
        }
        Some((offset, None)) => {
            out.push(' ');
            write_offset(offset, false, out);
        }
        None => {}
    }
}

/// Postgres's `EncodeTimezone`: `+HH`, `+HH:MM` when there are minutes (always
/// in ISO 8601), `+HH:MM:SS` when there are seconds.
fn write_offset(east: i32, json: bool, out: &mut String) {
    out.push(if east >= 0 { '+' } else { '-' });
    let a = east.unsigned_abs();
    let (h, mi, se) = (a / 3600, a / 60 % 60, a % 60);
    let _ = if se != 0 {
        write!(out, "{h:02}:{mi:02}:{se:02}")
    } else if mi != 0 || json {
        write!(out, "{h:02}:{mi:02}")
    } else {
        write!(out, "{h:02}")
    };
}

/// `timestamptz` → `timestamp`: the wall-clock time in `zone`.
pub fn tz_to_local(micros: i64, zone: &Zone) -> Result<i64, String> {
    if !is_finite(micros) {
        return Ok(micros);
    }
    micros
        .checked_add(zone.offset_at(micros) as i64 * 1_000_000)
        .filter(|l| is_valid_timestamp(*l))
        .ok_or_else(|| "timestamp out of range".into())
}

/// `timestamp` → `timestamptz`: the wall-clock time read in `zone`, a
/// skipped or repeated time resolved as Postgres resolves it.
pub fn local_to_tz(local: i64, zone: &Zone) -> Result<i64, String> {
    if !is_finite(local) {
        return Ok(local);
    }
    local
        .checked_sub(zone.offset_for_local(local) as i64 * 1_000_000)
        .filter(|t| is_valid_timestamp(*t))
        .ok_or_else(|| "timestamp out of range".into())
}

/// `date` → `timestamptz`: midnight in `zone`.
pub fn date_to_tz(days: i32, zone: &Zone) -> Result<i64, String> {
    let local = date_to_timestamp(days)?;
    if !is_finite(local) {
        return Ok(local);
    }
    local
        .checked_sub(zone.offset_for_local(local) as i64 * 1_000_000)
        .filter(|t| is_valid_timestamp(*t))
        .ok_or_else(|| "date out of range for timestamp".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `YYYY-MM-DD` shortcut agrees with the general parser in every
    /// date order, and leaves to it whatever is not a valid date.
    #[test]
    fn iso_dates_read_as_the_general_parser_does() {
        for y in [0, 1, 4, 99, 100, 400, 1582, 1900, 1999, 2000, 2024, 9999] {
            for m in 0..=13 {
                for d in 0..=32 {
                    let s = format!("{y:04}-{m:02}-{d:02}");
                    for order in [DateOrder::Mdy, DateOrder::Dmy, DateOrder::Ymd] {
                        let general = parse_date_general(&s, order);
                        match iso_date(&s) {
                            Some(days) => assert_eq!(general, Ok(days), "{s}"),
                            None => assert!(general.is_err(), "{s}: {general:?}"),
                        }
                    }
                }
            }
        }
    }

    fn ts(s: &str, zone: bool, style: Style) -> String {
        let mut out = String::new();
        format_timestamp(parse_timestamp(s, zone).unwrap(), zone, style, &mut out);
        out
    }

    fn date(s: &str) -> String {
        let mut out = String::new();
        format_date(parse_date(s).unwrap(), &mut out);
        out
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000i64, -1, 0, 1, 10_957, 19_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(2000, 1, 1), UNIX_TO_PG_DAYS);
        assert_eq!(date_from_ymd(2000, 1, 1), 0);
        // The range ends are Postgres's (Julian day 0 and 294277-01-01).
        assert_eq!(date_from_ymd(-4713, 11, 24), DATE_MIN);
        assert_eq!(date_from_ymd(5_874_898, 1, 1), DATE_END);
        assert_eq!(date_from_ymd(294_277, 1, 1), DATE_END_FOR_TIMESTAMP as i64);
    }

    #[test]
    fn timestamps_render_like_postgres() {
        use Style::*;
        assert_eq!(
            ts("2024-02-29 13:14:15.120000", false, Json),
            "2024-02-29T13:14:15.12"
        );
        assert_eq!(
            ts("2024-02-29 13:14:15+05:30", true, Json),
            "2024-02-29T07:44:15+00:00"
        );
        assert_eq!(
            ts("2024-02-29 13:14:15+05:30", true, Text),
            "2024-02-29 07:44:15+00"
        );
        // A timestamp without time zone ignores an offset.
        assert_eq!(
            ts("2024-01-01 10:00+05", false, Text),
            "2024-01-01 10:00:00"
        );
        assert_eq!(ts("2024-1-1 1:2:3", false, Text), "2024-01-01 01:02:03");
        assert_eq!(
            ts("2024-01-01T10:00:00Z", true, Text),
            "2024-01-01 10:00:00+00"
        );
        assert_eq!(
            ts("2024-01-01 23:59:60", false, Text),
            "2024-01-02 00:00:00"
        );
        assert_eq!(ts("2024-01-01 24:00", false, Text), "2024-01-02 00:00:00");
        assert_eq!(
            ts("2024-01-01 10:00:00.9999995", false, Text),
            "2024-01-01 10:00:01"
        );
        assert_eq!(
            ts("0044-03-15 10:00 BC", true, Json),
            "0044-03-15T10:00:00+00:00 BC"
        );
        assert_eq!(
            ts("294276-12-31 23:59:59.999999", false, Text),
            "294276-12-31 23:59:59.999999"
        );
        assert_eq!(
            ts("4714-11-24 00:00-01 BC", true, Text),
            "4714-11-24 01:00:00+00 BC"
        );
        assert_eq!(ts(" -INFINITY ", false, Text), "-infinity");
        assert_eq!(ts("epoch", true, Text), "1970-01-01 00:00:00+00");
        assert_eq!(ts("2024-01-01", true, Text), "2024-01-01 00:00:00+00");
        // Checked against PostgreSQL 15: MM:SS.fff, three-digit years.
        assert_eq!(
            ts("141833-05-07 06:26.9626405", false, Text),
            "141833-05-07 00:06:26.96264"
        );
        assert_eq!(
            ts("455-1-5  02:18:52 -04:45", true, Text),
            "0455-01-05 07:03:52+00"
        );
        for (input, err) in [
            ("294277-01-01", "timestamp out of range"),
            ("294276-12-31 23:00-02", "timestamp out of range"),
            ("4714-11-24 00:00+01 BC", "timestamp out of range"),
            ("2024-01-01 24:00:01", "field value out of range"),
            ("2024-01-01 10:00+16", "time zone displacement"),
            ("yesterday", "invalid input syntax"),
            ("+infinity", "invalid input syntax"),
        ] {
            let e = parse_timestamp(input, true).unwrap_err();
            assert!(e.contains(err), "{input}: {e}");
        }
    }

    #[test]
    fn dates_parse_within_postgres_range() {
        assert_eq!(date("1999-12-31"), "1999-12-31");
        assert_eq!(date("0044-03-15 BC"), "0044-03-15 BC");
        assert_eq!(date("5874897-12-31"), "5874897-12-31");
        assert_eq!(date("4714-11-24 BC"), "4714-11-24 BC");
        assert_eq!(date(" Infinity "), "infinity");
        assert_eq!(date("epoch"), "1970-01-01");
        // A time after the date is checked and dropped.
        assert_eq!(date("2621-07-25 14:55:15.9812049"), "2621-07-25");
        assert_eq!(date("817-8-12T05:36:55 -11:45 BC"), "0817-08-12 BC");
        assert!(parse_date("2024-01-01 25:00").is_err());
        assert!(parse_date("5874898-01-01")
            .unwrap_err()
            .contains("date out of range"));
        assert!(parse_date("4714-11-23 BC")
            .unwrap_err()
            .contains("date out of range"));
        assert!(parse_date("1999-13-01")
            .unwrap_err()
            .contains("field value"));
        assert!(parse_date("2023-02-29")
            .unwrap_err()
            .contains("field value"));
        assert!(parse_date("0000-01-01")
            .unwrap_err()
            .contains("field value"));
        assert!(parse_date("99999999999999999999-01-01").is_err());
    }

    #[test]
    fn dates_meet_timestamps() {
        assert_eq!(date_to_timestamp(DATE_POS_INF), Ok(TS_POS_INF));
        assert!(date_to_timestamp(DATE_END_FOR_TIMESTAMP).is_err());
        assert_eq!(timestamp_to_date(TS_NEG_INF), DATE_NEG_INF);
        assert_eq!(timestamp_to_date(-1), -1);
        assert_eq!(
            cmp_date_timestamp(DATE_POS_INF, TS_POS_INF),
            Ordering::Equal
        );
        assert_eq!(cmp_date_timestamp(DATE_POS_INF, 0), Ordering::Greater);
        assert_eq!(cmp_date_timestamp(DATE_NEG_INF, TS_MIN), Ordering::Less);
        // A date past the timestamp range: above every finite timestamp, below infinity.
        let far = DATE_END_FOR_TIMESTAMP + 10;
        assert_eq!(cmp_date_timestamp(far, TS_END - 1), Ordering::Greater);
        assert_eq!(cmp_date_timestamp(far, TS_POS_INF), Ordering::Less);
    }

    #[test]
    fn session_zone_and_datestyle_match_postgres() {
        // Each expected string is PostgreSQL 15's output under the same settings.
        let cx = |style: &str| TimeCx::resolve("America/New_York", style).unwrap();
        let tz = |s: &str| parse_timestamp(s, true).unwrap();
        let text = |t: i64, c: &TimeCx| {
            let mut out = String::new();
            format_timestamptz_in(t, c, &mut out);
            out
        };
        let iso = cx("ISO, MDY");
        assert_eq!(
            text(tz("2024-01-01 05:00:00.5+00"), &iso),
            "2024-01-01 00:00:00.5-05"
        );
        assert_eq!(
            text(tz("1800-01-01 00:00+00"), &iso),
            "1799-12-31 19:03:58-04:56:02"
        );
        let sql = cx("SQL, DMY");
        assert_eq!(
            text(tz("2024-01-01 05:00:00.5+00"), &sql),
            "01/01/2024 00:00:00.5 EST"
        );
        assert_eq!(
            text(tz("2024-07-01 05:00+00"), &sql),
            "01/07/2024 01:00:00 EDT"
        );
        assert_eq!(
            text(tz("1800-01-01 00:00+00"), &sql),
            "31/12/1799 19:03:58 LMT"
        );
        let pg = cx("Postgres, MDY");
        assert_eq!(
            text(tz("2024-01-01 05:00:00.5+00"), &pg),
            "Mon Jan 01 00:00:00.5 2024 EST"
        );
        let german = cx("German");
        assert_eq!(
            text(tz("2024-01-01 05:00:00.5+00"), &german),
            "01.01.2024 00:00:00.5 EST"
        );
        let mut out = String::new();
        format_timestamptz_json(tz("2024-01-01 05:00+00"), iso.zone(), &mut out);
        assert_eq!(out, "2024-01-01T00:00:00-05:00");
        let day = parse_date("2024-01-02").unwrap();
        for (style, want) in [
            ("SQL, DMY", "02/01/2024"),
            ("SQL, MDY", "01/02/2024"),
            ("Postgres, MDY", "01-02-2024"),
            ("German", "02.01.2024"),
        ] {
            let mut out = String::new();
            format_date_in(day, DateStyle::parse(style).unwrap(), &mut out);
            assert_eq!(out, want, "{style}");
        }
        let mut out = String::new();
        let local = parse_timestamp("2024-01-02 03:04", false).unwrap();
        format_timestamp_in(local, DateStyle::parse("Postgres, MDY").unwrap(), &mut out);
        assert_eq!(out, "Tue Jan 02 03:04:00 2024");
        // Input without an offset is local time; a skipped time moves forward.
        let ny = iso.zone();
        let read = |s: &str| {
            let mut out = String::new();
            let t = parse_timestamp_in(s, true, DateOrder::Mdy, Some(ny)).unwrap();
            format_timestamptz_in(t, &iso, &mut out);
            out
        };
        assert_eq!(read("2024-03-10 02:30"), "2024-03-10 03:30:00-04");
        assert_eq!(read("2024-11-03 01:30"), "2024-11-03 01:30:00-05");
        assert_eq!(read("2024-11-03 01:30-04"), "2024-11-03 01:30:00-04");
        assert_eq!(read("epoch"), "1969-12-31 19:00:00-05");
    }

    #[test]
    fn dates_read_in_datestyle_order() {
        let d = |s: &str, o: DateOrder| {
            let mut out = String::new();
            format_date(parse_date_in(s, o).unwrap(), &mut out);
            out
        };
        // Checked against PostgreSQL 15 under each DateStyle.
        use DateOrder::*;
        assert_eq!(d("01/02/2024", Mdy), "2024-01-02");
        assert_eq!(d("1-2-2024", Mdy), "2024-01-02");
        assert_eq!(d("01.02.2024", Dmy), "2024-02-01");
        assert_eq!(d("2024/01/02", Dmy), "2024-01-02");
        assert_eq!(d("01/02/24", Dmy), "2024-02-01");
        assert_eq!(d("01/02/70", Mdy), "1970-01-02");
        assert_eq!(d("1/2/3", Mdy), "2003-01-02");
        assert_eq!(d("1/2/3", Ymd), "2001-02-03");
        assert_eq!(d("024-01-02", Mdy), "0024-01-02");
        assert!(parse_date_in("13/01/2024", Mdy)
            .unwrap_err()
            .contains("field value out of range"));
        assert!(parse_date_in("01/02/2024", Ymd)
            .unwrap_err()
            .contains("field value out of range"));
    }
}
