//! The session's time settings, as Postgres applies them to `timestamptz`:
//! the `TimeZone` a value is shown and taken apart in, and the `DateStyle`
//! its text is written (and read) in.
//!
//! viewcast's own connections set `TimeZone = UTC` so that values arrive in
//! one zone; a view must nevertheless compute what the *role's* session would
//! (`ts::date`, `date_trunc('day', ts)`, `ts::text`, `to_json(ts)` all depend on
//! the zone). [`TimeCx`] carries those settings into the expressions that need
//! them, bound once per view.
//!
//! Zones come from the system's tz database (`/usr/share/zoneinfo`, the same
//! files Debian's PostgreSQL reads) through `jiff`. Where jiff's range ends
//! (years ±9999; timestamps reach 294276 AD), instants are moved by whole
//! 400-year Gregorian cycles, over which both the zone's rule and the weekday
//! of every date repeat, so the offset is the one Postgres computes.

use std::fmt;
use std::sync::Arc;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::datetime::UNIX_TO_PG_DAYS;

/// Seconds in 400 Gregorian years (146097 days, a whole number of weeks).
const CYCLE_SECS: i64 = 146_097 * 86_400;
/// Unix seconds of 9000-01-01 and -9000-01-01: well inside jiff's range.
const SAFE_HI: i64 = 221_845_392_000;
const SAFE_LO: i64 = -346_137_062_400;
/// Postgres's default DST rule for a POSIX zone that names a DST
/// abbreviation without rules (`FOO5BAR`): `TZDEFRULESTRING`, the US rules.
const DEFAULT_RULE: &str = ",M3.2.0,M11.1.0";

/// Moves unix seconds by whole 400-year cycles into jiff's range.
fn fold(secs: i64) -> (i64, i64) {
    if secs > SAFE_HI {
        let k = (secs - SAFE_HI) / CYCLE_SECS + 1;
        (secs - k * CYCLE_SECS, k * CYCLE_SECS)
    } else if secs < SAFE_LO {
        let k = (SAFE_LO - secs) / CYCLE_SECS + 1;
        (secs + k * CYCLE_SECS, -k * CYCLE_SECS)
    } else {
        (secs, 0)
    }
}

fn stamp(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap_or(if secs < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// A time zone as Postgres's `TimeZone` setting accepts it.
#[derive(Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
    utc: bool,
    /// Abbreviations jiff could not take as Postgres writes them, and
    /// Postgres's spelling: `<+05:30>` is read as `+0530`; a zone written
    /// without a name (`+05:30`) has an empty abbreviation in Postgres.
    renamed: Vec<(String, String)>,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            tz: TimeZone::UTC,
            utc: true,
            renamed: Vec::new(),
        }
    }

    /// Reads a `TimeZone` value as Postgres does: a tz database name (any
    /// case), else a POSIX TZ string, where the name may be left out
    /// (`+05:30`, `<+05:30>-05:30`, `UTC+3`; POSIX offsets are hours *west*,
    /// so `UTC+3` is three hours behind UTC), and a DST name without rules
    /// takes the US rules.
    pub fn parse(name: &str) -> Result<Zone, String> {
        let trimmed = name.trim();
        let bad = || {
            format!("time zone \"{trimmed}\" is not known to viewcast's time zone database (/usr/share/zoneinfo); install tzdata or set a zone it has")
        };
        if trimmed.is_empty() {
            return Err(bad());
        }
        // UTC needs no tz database (a machine without tzdata still serves it).
        let lower = trimmed.to_ascii_lowercase();
        let utc_name = lower.strip_prefix("etc/").unwrap_or(&lower);
        if matches!(utc_name, "utc" | "uct" | "universal" | "zulu") {
            return Ok(Zone {
                name: trimmed.to_string(),
                ..Zone::utc()
            });
        }
        if matches!(utc_name, "gmt" | "gmt0" | "gmt+0" | "gmt-0" | "greenwich") {
            return Ok(Zone {
                name: trimmed.to_string(),
                renamed: vec![("UTC".into(), "GMT".into())],
                ..Zone::utc()
            });
        }
        let (tz, renamed) = match TimeZone::get(trimmed) {
            Ok(tz) => (tz, Vec::new()),
            Err(_) => posix(trimmed).ok_or_else(bad)?,
        };
        let utc = tz.to_offset(Timestamp::UNIX_EPOCH).seconds() == 0
            && tz
                .following(Timestamp::MIN)
                .all(|t| t.offset().seconds() == 0);
        Ok(Zone {
            name: trimmed.to_string(),
            tz,
            utc,
            renamed,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether every instant is at offset zero (UTC, GMT, Etc/UTC, ...).
    pub fn is_utc(&self) -> bool {
        self.utc
    }

    /// The offset (seconds east of UTC) in force at `micros` since
    /// 2000-01-01 UTC, a finite timestamp.
    pub fn offset_at(&self, micros: i64) -> i32 {
        if self.utc {
            return 0;
        }
        let (secs, _) = fold(unix_secs(micros));
        self.tz.to_offset(stamp(secs)).seconds()
    }

    /// The abbreviation in force at `micros` (`EST`, `EDT`, `LMT`, `+0530`):
    /// what the SQL, Postgres and German DateStyles write after a time.
    pub fn abbreviation_at(&self, micros: i64) -> String {
        let (secs, _) = fold(unix_secs(micros));
        let info = self.tz.to_offset_info(stamp(secs));
        let abbrev = info.abbreviation();
        match self.renamed.iter().find(|(ours, _)| ours == abbrev) {
            Some((_, theirs)) => theirs.clone(),
            None => abbrev.to_string(),
        }
    }

    /// The offset Postgres gives a local wall-clock time (`local` counted in
    /// microseconds from 2000-01-01 as if it were UTC): its
    /// `DetermineTimeZoneOffset`. A time skipped by a spring-forward
    /// transition takes the offset before it (02:30 becomes 03:30 daylight
    /// time); a time repeated by a fall-back transition takes the offset
    /// after it (standard time).
    pub fn offset_for_local(&self, local: i64) -> i32 {
        if self.utc {
            return 0;
        }
        let (mytime, _) = fold(unix_secs(local));
        let prev = mytime - 86_400;
        let before = self.tz.to_offset(stamp(prev)).seconds() as i64;
        let Some(next) = self.tz.following(stamp(prev)).next() else {
            return before as i32;
        };
        let boundary = next.timestamp().as_second();
        let after = next.offset().seconds() as i64;
        let before_time = mytime - before;
        let after_time = mytime - after;
        let chosen = if before_time < boundary && after_time < boundary {
            before
        } else if before_time > boundary && after_time >= boundary {
            after
        } else if before_time > after_time {
            before
        } else {
            after
        };
        chosen as i32
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// Microseconds since 2000-01-01 as whole unix seconds (rounded down, as
/// Postgres's `timestamp2tm` does before it looks the zone up).
fn unix_secs(micros: i64) -> i64 {
    micros.div_euclid(1_000_000) + UNIX_TO_PG_DAYS * 86_400
}

/// A POSIX TZ string as Postgres's `tzparse` reads it: the name may be
/// missing (`+05:30` is a zone five and a half hours west) and a DST name
/// without rules takes the US rules.
fn posix(s: &str) -> Option<(TimeZone, Vec<(String, String)>)> {
    let mut renamed = Vec::new();
    let named = if s.starts_with(['+', '-']) || s.starts_with(|c: char| c.is_ascii_digit()) {
        let stand_in = s.replace(':', "");
        renamed.push((stand_in.clone(), String::new()));
        format!("<{stand_in}>{s}")
    } else {
        // jiff takes no ':' inside `<...>`, which Postgres writes there
        // (`SET TIME ZONE 5.5` shows as `<+05:30>-05:30`).
        let mut out = String::with_capacity(s.len());
        let mut quoted: Option<String> = None;
        for c in s.chars() {
            match (c, quoted.as_mut()) {
                ('<', _) => quoted = Some(String::new()),
                ('>', Some(q)) => {
                    if q.contains(':') {
                        renamed.push((q.replace(':', ""), q.clone()));
                    }
                    quoted = None;
                }
                (':', Some(q)) => {
                    q.push(c);
                    continue;
                }
                (_, Some(q)) => q.push(c),
                _ => {}
            }
            out.push(c);
        }
        out
    };
    if let Ok(tz) = TimeZone::posix(&named) {
        return Some((tz, renamed));
    }
    TimeZone::posix(&format!("{named}{DEFAULT_RULE}"))
        .ok()
        .map(|tz| (tz, renamed))
}

/// The output style half of `DateStyle`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OutStyle {
    Iso,
    Sql,
    Postgres,
    German,
}

/// The field order half of `DateStyle`: how `01/02/2024` is read, and the
/// order the SQL and Postgres styles write day and month in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DateOrder {
    Mdy,
    Dmy,
    Ymd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DateStyle {
    pub style: OutStyle,
    pub order: DateOrder,
}

impl Default for DateStyle {
    fn default() -> Self {
        DateStyle {
            style: OutStyle::Iso,
            order: DateOrder::Mdy,
        }
    }
}

impl DateStyle {
    /// Reads `DateStyle` as `SHOW DateStyle` writes it (`ISO, MDY`), also
    /// accepting the other spellings Postgres takes (`european`, `us`,
    /// `non-european`, either part alone).
    pub fn parse(s: &str) -> Result<DateStyle, String> {
        let mut out = DateStyle::default();
        let mut order_given = false;
        for part in s.split([',', ' ']).filter(|p| !p.is_empty()) {
            match part.to_ascii_lowercase().as_str() {
                "iso" => out.style = OutStyle::Iso,
                "sql" => out.style = OutStyle::Sql,
                "postgres" => out.style = OutStyle::Postgres,
                "german" => {
                    out.style = OutStyle::German;
                    if !order_given {
                        out.order = DateOrder::Dmy;
                    }
                }
                "ymd" => (out.order, order_given) = (DateOrder::Ymd, true),
                "dmy" | "euro" | "european" => (out.order, order_given) = (DateOrder::Dmy, true),
                "mdy" | "us" | "noneuro" | "noneuropean" | "non-european" => {
                    (out.order, order_given) = (DateOrder::Mdy, true)
                }
                "default" => {}
                other => return Err(format!("unrecognized DateStyle key word \"{other}\"")),
            }
        }
        Ok(out)
    }
}

impl fmt::Display for DateStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let style = match self.style {
            OutStyle::Iso => "ISO",
            OutStyle::Sql => "SQL",
            OutStyle::Postgres => "Postgres",
            OutStyle::German => "German",
        };
        let order = match self.order {
            DateOrder::Mdy => "MDY",
            DateOrder::Dmy => "DMY",
            DateOrder::Ymd => "YMD",
        };
        write!(f, "{style}, {order}")
    }
}

/// The zone and DateStyle a view's expressions are evaluated in: resolved
/// once when the view is bound, shared by every expression that needs it.
#[derive(Clone)]
pub struct TimeCx(Arc<Inner>);

struct Inner {
    zone: Zone,
    datestyle: DateStyle,
    /// `IntervalStyle`, lower-cased: interval text is written only as
    /// `postgres` writes it, so other styles refuse views that show one.
    intervalstyle: String,
}

impl Default for TimeCx {
    fn default() -> Self {
        TimeCx::new(Zone::utc(), DateStyle::default())
    }
}

impl TimeCx {
    pub fn new(zone: Zone, datestyle: DateStyle) -> TimeCx {
        TimeCx(Arc::new(Inner {
            zone,
            datestyle,
            intervalstyle: "postgres".into(),
        }))
    }

    /// Resolves the settings' names; an unknown zone or style is an error
    /// that names it.
    pub fn resolve(timezone: &str, datestyle: &str) -> Result<TimeCx, String> {
        Ok(TimeCx::new(
            Zone::parse(timezone)?,
            DateStyle::parse(datestyle)?,
        ))
    }

    /// The same settings with `IntervalStyle`.
    pub fn with_intervalstyle(self, style: &str) -> TimeCx {
        TimeCx(Arc::new(Inner {
            zone: self.0.zone.clone(),
            datestyle: self.0.datestyle,
            intervalstyle: style.trim().to_ascii_lowercase(),
        }))
    }

    /// `IntervalStyle`, if it is not `postgres` (the only style viewcast
    /// writes intervals in).
    pub fn unsupported_intervalstyle(&self) -> Option<&str> {
        let s = self.0.intervalstyle.as_str();
        (s != "postgres" && !s.is_empty()).then_some(s)
    }

    pub fn zone(&self) -> &Zone {
        &self.0.zone
    }

    pub fn datestyle(&self) -> DateStyle {
        self.0.datestyle
    }

    /// Whether the zone is UTC: `timestamptz` then behaves as viewcast's
    /// own connections see it.
    pub fn is_utc(&self) -> bool {
        self.0.zone.is_utc()
    }

    /// Whether values are written as viewcast's own connections write them
    /// (UTC, ISO): text conversions need no settings then.
    pub fn is_default(&self) -> bool {
        self.is_utc() && self.0.datestyle.style == OutStyle::Iso
    }
}

impl PartialEq for TimeCx {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.zone.name == other.0.zone.name
                && self.0.datestyle == other.0.datestyle
                && self.0.intervalstyle == other.0.intervalstyle)
    }
}
impl Eq for TimeCx {}
/// What `eq` compares (pointer-equal contexts have equal fields too).
impl std::hash::Hash for TimeCx {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.zone.name.hash(state);
        self.0.datestyle.hash(state);
        self.0.intervalstyle.hash(state);
    }
}

impl fmt::Debug for TimeCx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; {}", self.0.zone.name, self.0.datestyle)?;
        if let Some(style) = self.unsupported_intervalstyle() {
            write!(f, "; {style}")?;
        }
        Ok(())
    }
}

impl fmt::Display for TimeCx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Serialize, Deserialize)]
struct Named {
    timezone: String,
    datestyle: DateStyle,
    intervalstyle: String,
}

impl Serialize for TimeCx {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Named {
            timezone: self.0.zone.name.clone(),
            datestyle: self.0.datestyle,
            intervalstyle: self.0.intervalstyle.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for TimeCx {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = Named::deserialize(d)?;
        let zone = Zone::parse(&n.timezone).map_err(serde::de::Error::custom)?;
        Ok(TimeCx::new(zone, n.datestyle).with_intervalstyle(&n.intervalstyle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(y: i64, m: u32, d: u32, h: i64, min: i64) -> i64 {
        crate::repr::datetime::date_from_ymd(y, m, d) * 86_400_000_000
            + (h * 3600 + min * 60) * 1_000_000
    }

    #[test]
    fn zones_resolve_as_postgres_names_them() {
        let ny = Zone::parse("America/New_York").unwrap();
        assert_eq!(ny.offset_at(micros(2024, 1, 1, 12, 0)), -5 * 3600);
        assert_eq!(ny.offset_at(micros(2024, 7, 1, 12, 0)), -4 * 3600);
        assert_eq!(ny.abbreviation_at(micros(2024, 7, 1, 12, 0)), "EDT");
        // Case is not significant, as in Postgres.
        assert!(Zone::parse("america/new_york").is_ok());
        assert!(Zone::parse("UTC").unwrap().is_utc());
        assert!(Zone::parse("GMT").unwrap().is_utc());
        assert!(Zone::parse("Etc/UTC").unwrap().is_utc());
        // POSIX offsets count west; checked against PostgreSQL 15's SHOW/output.
        assert_eq!(
            Zone::parse("UTC+3").unwrap().offset_at(0),
            -3 * 3600,
            "UTC+3"
        );
        assert_eq!(Zone::parse("+05:30").unwrap().offset_at(0), -19_800);
        assert_eq!(Zone::parse("<+05:30>-05:30").unwrap().offset_at(0), 19_800);
        // Abbreviations as Postgres's SQL DateStyle writes them.
        let abbrev = |z: &str| Zone::parse(z).unwrap().abbreviation_at(0);
        assert_eq!(abbrev("<+05:30>-05:30"), "+05:30");
        assert_eq!(abbrev("+05:30"), "");
        assert_eq!(abbrev("UTC+3"), "UTC");
        assert_eq!(abbrev("FOO5BAR"), "FOO");
        assert_eq!(abbrev("Etc/GMT+3"), "-03");
        assert_eq!(abbrev("GMT"), "GMT");
        assert_eq!(abbrev("Etc/UTC"), "UTC");
        let foo = Zone::parse("FOO5BAR").unwrap();
        assert_eq!(foo.offset_at(micros(2024, 7, 1, 0, 0)), -4 * 3600);
        assert!(Zone::parse("Mars/Olympus").is_err());
        // Before railway time: local mean time, with seconds.
        assert_eq!(ny.offset_at(micros(1800, 1, 1, 0, 0)), -17_762);
        // Far past jiff's range the rule of the 400-year cycle still holds:
        // Postgres shows 100000-06-01 12:00+00 as 08:00-04.
        assert_eq!(ny.offset_at(micros(100_000, 6, 1, 12, 0)), -4 * 3600);
        assert_eq!(ny.offset_at(micros(294_276, 12, 1, 12, 0)), -5 * 3600);
        assert_eq!(ny.offset_at(micros(-4713, 12, 1, 12, 0)), -17_762);
    }

    #[test]
    fn local_times_at_transitions_take_postgres_offsets() {
        let ny = Zone::parse("America/New_York").unwrap();
        // 02:30 does not exist on 2024-03-10: read as EST, shown as 03:30 EDT.
        assert_eq!(ny.offset_for_local(micros(2024, 3, 10, 2, 30)), -5 * 3600);
        assert_eq!(ny.offset_for_local(micros(2024, 3, 10, 3, 0)), -4 * 3600);
        assert_eq!(ny.offset_for_local(micros(2024, 3, 10, 1, 59)), -5 * 3600);
        // 01:30 happens twice on 2024-11-03: the second (EST) is taken.
        assert_eq!(ny.offset_for_local(micros(2024, 11, 3, 1, 30)), -5 * 3600);
        assert_eq!(ny.offset_for_local(micros(2024, 11, 3, 0, 59)), -4 * 3600);
        assert_eq!(ny.offset_for_local(micros(2024, 11, 3, 2, 0)), -5 * 3600);
    }

    #[test]
    fn datestyles_parse() {
        assert_eq!(DateStyle::parse("ISO, MDY").unwrap(), DateStyle::default());
        let g = DateStyle::parse("German").unwrap();
        assert_eq!((g.style, g.order), (OutStyle::German, DateOrder::Dmy));
        let s = DateStyle::parse("SQL, DMY").unwrap();
        assert_eq!(s.to_string(), "SQL, DMY");
        assert!(DateStyle::parse("Klingon").is_err());
    }
}
