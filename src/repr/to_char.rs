//! `to_char(timestamp, format)`: the date/time template patterns Postgres's
//! `formatting.c` reads, for the patterns viewcast implements.
//!
//! A format is cut into keywords the way Postgres cuts it (at each
//! position, the first keyword of its table that starts there; `FM` before
//! a keyword; `"..."` copied), so text that is no keyword is copied as
//! Postgres copies it. A keyword viewcast does not implement (ISO weeks,
//! Julian days, time zones, Roman numerals, `TH`/`SP` suffixes, `TM`) is
//! refused rather than written differently.

use super::datetime::{date_from_ymd, split_timestamp, ymd_from_date};

/// Postgres's DCH keywords in its table's order (longer before shorter
/// where one is a prefix of another), with whether viewcast writes it.
const KEYWORDS: &[(&str, bool)] = &[
    ("A.D.", false),
    ("A.M.", true),
    ("AD", false),
    ("AM", true),
    ("B.C.", false),
    ("BC", false),
    ("CC", false),
    ("DAY", true),
    ("DDD", true),
    ("DD", true),
    ("DY", true),
    ("Day", true),
    ("Dy", true),
    ("D", true),
    ("FF1", false),
    ("FF2", false),
    ("FF3", false),
    ("FF4", false),
    ("FF5", false),
    ("FF6", false),
    ("FX", false),
    ("HH24", true),
    ("HH12", true),
    ("HH", true),
    ("IDDD", false),
    ("ID", false),
    ("IW", false),
    ("IYYY", false),
    ("IYY", false),
    ("IY", false),
    ("I", false),
    ("J", false),
    ("MI", true),
    ("MM", true),
    ("MONTH", true),
    ("MON", true),
    ("MS", true),
    ("Month", true),
    ("Mon", true),
    ("OF", false),
    ("P.M.", true),
    ("PM", true),
    ("Q", true),
    ("RM", false),
    ("SSSSS", false),
    ("SSSS", false),
    ("SS", true),
    ("TZH", false),
    ("TZM", false),
    ("TZ", false),
    ("US", true),
    ("WW", false),
    ("W", false),
    ("Y,YYY", false),
    ("YYYY", true),
    ("YYY", true),
    ("YY", true),
    ("Y", true),
    ("a.d.", false),
    ("a.m.", true),
    ("ad", false),
    ("am", true),
    ("b.c.", false),
    ("bc", false),
    ("cc", false),
    ("day", true),
    ("ddd", true),
    ("dd", true),
    ("dy", true),
    ("d", true),
    ("ff1", false),
    ("ff2", false),
    ("ff3", false),
    ("ff4", false),
    ("ff5", false),
    ("ff6", false),
    ("fx", false),
    ("hh24", true),
    ("hh12", true),
    ("hh", true),
    ("iddd", false),
    ("id", false),
    ("iw", false),
    ("iyyy", false),
    ("iyy", false),
    ("iy", false),
    ("i", false),
    ("j", false),
    ("mi", true),
    ("mm", true),
    ("month", true),
    ("mon", true),
    ("ms", true),
    ("of", false),
    ("p.m.", true),
    ("pm", true),
    ("q", true),
    ("rm", false),
    ("sssss", false),
    ("ssss", false),
    ("ss", true),
    ("tzh", false),
    ("tzm", false),
    ("tz", false),
    ("us", true),
    ("ww", false),
    ("w", false),
    ("y,yyy", false),
    ("yyyy", true),
    ("yyy", true),
    ("yy", true),
    ("y", true),
];

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// One piece of a parsed format.
#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    Key { name: &'static str, fill_mode: bool },
}

fn parse(format: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = format;
    while let Some(c) = rest.chars().next() {
        if c == '"' {
            let mut lit = String::new();
            let mut chars = rest[1..].char_indices();
            let mut end = rest.len();
            while let Some((i, ch)) = chars.next() {
                match ch {
                    '"' => {
                        end = i + 2;
                        break;
                    }
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            lit.push(n);
                        }
                    }
                    other => lit.push(other),
                }
            }
            out.push(Piece::Text(lit));
            rest = &rest[end.min(rest.len())..];
            continue;
        }
        if c == '\\' {
            return Err("a backslash in a to_char() format".into());
        }
        let (fill_mode, after) = match rest.get(..2) {
            Some("FM" | "fm") => (true, &rest[2..]),
            Some("TM" | "tm") => return Err("the TM prefix in a to_char() format".into()),
            _ => (false, rest),
        };
        if let Some((name, implemented)) = KEYWORDS.iter().find(|(k, _)| after.starts_with(k)) {
            if !implemented {
                return Err(format!("the to_char() pattern {name}"));
            }
            let tail = &after[name.len()..];
            if matches!(tail.get(..2), Some("TH" | "th" | "SP" | "sp")) {
                return Err(format!("the suffix {} in a to_char() format", &tail[..2]));
            }
            out.push(Piece::Key { name, fill_mode });
            rest = tail;
            continue;
        }
        // FM before something that is no keyword is dropped, as Postgres does.
        let rest_here = if fill_mode { after } else { rest };
        let Some(ch) = rest_here.chars().next() else {
            break;
        };
        out.push(Piece::Text(ch.to_string()));
        rest = &rest_here[ch.len_utf8()..];
    }
    Ok(out)
}

/// Checks a format, for refusing an unimplemented one when a view is defined.
pub fn check(format: &str) -> Result<(), String> {
    parse(format).map(|_| ())
}

/// `to_char` of a finite timestamp (microseconds since 2000-01-01, local
/// time). `Err` names what is not implemented.
pub fn timestamp(micros: i64, format: &str) -> Result<String, String> {
    let pieces = parse(format)?;
    let (days, time) = split_timestamp(micros);
    let (y, m, d) = ymd_from_date(days);
    // Postgres's years: no year 0, and BC years written as positive numbers.
    let year = if y > 0 { y } else { 1 - y };
    let hour = time / 3_600_000_000;
    let minute = time / 60_000_000 % 60;
    let second = time / 1_000_000 % 60;
    let micro = time % 1_000_000;
    let dow = (days + 6).rem_euclid(7) as usize; // 2000-01-01 was a Saturday.
    let doy = days - date_from_ymd(y, 1, 1) + 1;
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };
    let mut out = String::new();
    for p in pieces {
        let (name, fm) = match p {
            Piece::Text(t) => {
                out.push_str(&t);
                continue;
            }
            Piece::Key { name, fill_mode } => (name, fill_mode),
        };
        let num = |v: i64, width: usize| {
            if fm {
                v.to_string()
            } else {
                format!("{v:0width$}")
            }
        };
        let word = |w: &str, upper: bool, lower: bool, pad: bool| {
            let w = if upper {
                w.to_uppercase()
            } else if lower {
                w.to_lowercase()
            } else {
                w.to_string()
            };
            if pad && !fm {
                format!("{w:<9}")
            } else {
                w
            }
        };
        let month = MONTHS[(m - 1) as usize];
        let day = DAYS[dow];
        let pm = hour >= 12;
        let text = match name {
            "YYYY" | "yyyy" => num(year, 4),
            "YYY" | "yyy" => num(year % 1000, 3),
            "YY" | "yy" => num(year % 100, 2),
            "Y" | "y" => num(year % 10, 1),
            "MM" | "mm" => num(m as i64, 2),
            "DD" | "dd" => num(d as i64, 2),
            "DDD" | "ddd" => num(doy, 3),
            "D" | "d" => num(dow as i64 + 1, 1),
            "HH24" | "hh24" => num(hour, 2),
            "HH12" | "hh12" | "HH" | "hh" => num(hour12, 2),
            "MI" | "mi" => num(minute, 2),
            "SS" | "ss" => num(second, 2),
            "MS" | "ms" => num(micro / 1000, 3),
            "US" | "us" => num(micro, 6),
            "Q" | "q" => num((m as i64 - 1) / 3 + 1, 1),
            "AM" | "PM" => (if pm { "PM" } else { "AM" }).into(),
            "am" | "pm" => (if pm { "pm" } else { "am" }).into(),
            "A.M." | "P.M." => (if pm { "P.M." } else { "A.M." }).into(),
            "a.m." | "p.m." => (if pm { "p.m." } else { "a.m." }).into(),
            "Month" => word(month, false, false, true),
            "MONTH" => word(month, true, false, true),
            "month" => word(month, false, true, true),
            "Mon" => word(&month[..3], false, false, false),
            "MON" => word(&month[..3], true, false, false),
            "mon" => word(&month[..3], false, true, false),
            "Day" => word(day, false, false, true),
            "DAY" => word(day, true, false, true),
            "day" => word(day, false, true, true),
            "Dy" => word(&day[..3], false, false, false),
            "DY" => word(&day[..3], true, false, false),
            "dy" => word(&day[..3], false, true, false),
            other => return Err(format!("the to_char() pattern {other}")),
        };
        out.push_str(&text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repr::datetime::MICROS_PER_DAY;

    #[test]
    fn writes_postgres_patterns() {
        let t = date_from_ymd(2024, 3, 5) * MICROS_PER_DAY + 50_829_123_456;
        // Checked against PostgreSQL 15.
        assert_eq!(
            timestamp(
                t,
                "YYYY YYY YY Y MM DD DDD D HH24 HH12 MI SS MS US AM pm A.M."
            )
            .unwrap(),
            "2024 024 24 4 03 05 065 3 14 02 07 09 123 123456 PM pm P.M."
        );
        assert_eq!(
            timestamp(
                t,
                "Mon MON Month|DAY|Dy Q FMMM FMDD FMMonth| \"lit YYYY\" xyz"
            )
            .unwrap(),
            "Mar MAR March    |TUESDAY  |Tue 1 3 5 March| lit YYYY x4z"
        );
        let bc = date_from_ymd(-43, 3, 15) * MICROS_PER_DAY;
        assert_eq!(timestamp(bc, "YYYY YY FMYYYY").unwrap(), "0044 44 44");
        for refused in ["IYYY", "TZ", "DDth", "TMMonth", "J", "\\YYYY"] {
            assert!(check(refused).is_err(), "{refused}");
        }
    }
}
