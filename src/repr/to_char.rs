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
use super::numeric::Numeric;

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

    #[test]
    fn writes_postgres_numbers() {
        // Checked against PostgreSQL 15 (as were 84 random formats of 9 0 . , FM
        // over 81 values while this was written).
        let n = |s: &str, f: &str| number(&Numeric::parse(s).unwrap(), f).unwrap();
        assert_eq!(n("0.5", "999.99"), "    .50");
        assert_eq!(n("-0.5", "FM999.99"), "-.5");
        assert_eq!(n("0", "FM999.99"), "0.");
        assert_eq!(n("5", "9090"), "  005");
        assert_eq!(n("-5", "0999"), "-0005");
        assert_eq!(n("1234.567", "9,999.00"), " 1,234.57");
        assert_eq!(n("12.5", "9.9"), " #.#");
        assert_eq!(n("5", "9."), " 5");
        assert_eq!(n("0.5", "FM000.00"), "000.50");
        assert_eq!(n("-0.004", "999.99"), "    .00");
        for refused in ["S999", "999PR", "9G999", "RN", "9.9EEEE"] {
            assert!(check_number(refused).is_err(), "{refused}");
        }
        assert!(number(&Numeric::NaN, "999").is_err());
    }
}

/// The number patterns viewcast writes (`9`, `0`, `.`, `,`, `FM`); the
/// letters of Postgres's other number patterns are refused.
const NUMBER_REFUSED: &[&str] = &[
    "MI", "PL", "PR", "RN", "SG", "SP", "TH", "mi", "pl", "pr", "rn", "sg", "sp", "th", "B", "C",
    "D", "E", "G", "L", "S", "V", "b", "c", "d", "e", "g", "l", "s", "v",
];

/// A parsed number format: digits, the point, group commas, and text
/// copied.
#[derive(Debug, PartialEq)]
enum NumPiece {
    /// `9`, or `0` (true).
    Digit(bool),
    Point,
    Comma,
    Text(char),
}

struct NumFormat {
    pieces: Vec<NumPiece>,
    /// Digit positions before and after the point.
    pre: usize,
    post: usize,
    /// The first `0` before the point (0-based among digit positions).
    zero_start: Option<usize>,
    /// `pre + post` when the last `0` was read, as Postgres's `zero_end`.
    zero_end: usize,
    decimal: bool,
    fill_mode: bool,
}

fn parse_number(format: &str) -> Result<NumFormat, String> {
    let mut f = NumFormat {
        pieces: Vec::new(),
        pre: 0,
        post: 0,
        zero_start: None,
        zero_end: 0,
        decimal: false,
        fill_mode: false,
    };
    let mut rest = format;
    while let Some(c) = rest.chars().next() {
        if matches!(rest.get(..2), Some("FM" | "fm")) {
            f.fill_mode = true;
            rest = &rest[2..];
            continue;
        }
        if let Some(k) = NUMBER_REFUSED.iter().find(|k| rest.starts_with(**k)) {
            return Err(format!("the to_char() number pattern {k}"));
        }
        match c {
            '9' | '0' => {
                if c == '0' && !f.decimal && f.zero_start.is_none() {
                    f.zero_start = Some(f.pre);
                }
                if f.decimal {
                    f.post += 1;
                } else {
                    f.pre += 1;
                }
                if c == '0' {
                    f.zero_end = f.pre + f.post;
                }
                f.pieces.push(NumPiece::Digit(c == '0'));
            }
            '.' => {
                if f.decimal {
                    return Err("multiple decimal points".into());
                }
                f.decimal = true;
                f.pieces.push(NumPiece::Point);
            }
            ',' => f.pieces.push(NumPiece::Comma),
            '"' | '\\' => return Err(format!("{c} in a to_char() number format")),
            other => f.pieces.push(NumPiece::Text(other)),
        }
        rest = &rest[c.len_utf8()..];
    }
    Ok(f)
}

/// Checks a number format, for refusing an unimplemented one when a view
/// is defined.
pub fn check_number(format: &str) -> Result<(), String> {
    parse_number(format).map(|_| ())
}

/// `to_char(numeric, format)` as Postgres's `NUM_processor` writes it: the
/// value rounded to the format's decimals, a sign slot (a space for a
/// positive value unless `FM`) before the first digit written, unused
/// leading `9`s as spaces and `0`s as zeros, `#`s when the integer part
/// does not fit, and under `FM` no padding and no trailing zeros from `9`s.
pub fn number(n: &Numeric, format: &str) -> Result<String, String> {
    let f = parse_number(format)?;
    if n.parts().is_none() {
        return Err("unsupported: to_char() of NaN or infinity".into());
    }
    let rounded = n.with_scale(f.post as u32).to_string();
    let (negative, digits) = match rounded.strip_prefix('-') {
        Some(d) => (true, d.to_string()),
        None => (false, rounded),
    };
    let negative = negative && digits.bytes().any(|b| (b'1'..=b'9').contains(&b));
    let pre_len = digits.find('.').unwrap_or(digits.len());
    let mut out_pre_spaces = 0;
    let number: Vec<u8> = if pre_len <= f.pre {
        out_pre_spaces = f.pre - pre_len;
        digits.into_bytes()
    } else {
        let mut hashes = vec![b'#'; f.pre + f.post + 1];
        hashes[f.pre] = b'.';
        hashes
    };
    let at = |i: usize| number.get(i).copied().unwrap_or(0);
    // The last digit worth writing under FM: the last nonzero decimal, or
    // the point; never before the last `0` of the format.
    let last_relevant = if f.fill_mode && f.decimal {
        number.iter().position(|b| *b == b'.').map(|point| {
            let mut last = point;
            for (i, b) in number.iter().enumerate().skip(point + 1) {
                if *b != b'0' {
                    last = i;
                }
            }
            if f.zero_end > out_pre_spaces {
                last = last.max(f.zero_end - out_pre_spaces);
            }
            last
        })
    } else {
        None
    };
    let relevant_is_point = last_relevant.is_some_and(|i| at(i) == b'.');
    let has_zero = f.zero_start.is_some();
    let mut sign_wrote = !negative && f.fill_mode;
    let mut out: Vec<u8> = Vec::new();
    let mut p = 0usize; // the next character of `number`
    let mut k = 0usize; // the digit position
    let mut num_in = false;
    for piece in &f.pieces {
        match piece {
            NumPiece::Text(c) => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            NumPiece::Comma => {
                if num_in {
                    out.push(b',');
                } else if !f.fill_mode {
                    out.push(b' ');
                }
            }
            NumPiece::Digit(_) | NumPiece::Point => {
                num_in = false;
                let predec_space =
                    !has_zero && p == 0 && number.first() == Some(&b'0') && f.post != 0;
                if !sign_wrote
                    && (k >= out_pre_spaces || f.zero_start == Some(k))
                    && (!predec_space || relevant_is_point)
                {
                    if negative {
                        out.push(b'-');
                    } else if !f.fill_mode {
                        out.push(b' ');
                    }
                    sign_wrote = true;
                }
                let in_zeros = f.zero_start.is_some_and(|z| z <= k);
                if k < out_pre_spaces && !in_zeros {
                    if !f.fill_mode {
                        out.push(b' ');
                    }
                } else if k < out_pre_spaces {
                    out.push(b'0');
                    num_in = true;
                } else {
                    let c = at(p);
                    if c == b'.' {
                        if !relevant_is_point || f.fill_mode {
                            out.push(b'.');
                        }
                    } else if last_relevant.is_some_and(|l| p > l)
                        && *piece != NumPiece::Digit(true)
                    {
                        // Trailing zeros of 9s are dropped under FM.
                    } else if predec_space {
                        if !f.fill_mode {
                            out.push(b' ');
                        } else if relevant_is_point {
                            out.push(b'0');
                        }
                    } else {
                        out.push(c);
                        num_in = true;
                    }
                    if c != 0 {
                        p += 1;
                    }
                }
                k += 1;
            }
        }
    }
    // A NUL written past the number ends the text, as in Postgres's C string.
    if let Some(end) = out.iter().position(|b| *b == 0) {
        out.truncate(end);
    }
    String::from_utf8(out).map_err(|e| e.to_string())
}
