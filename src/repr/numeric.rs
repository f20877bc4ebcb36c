//! Exact decimal arithmetic with PostgreSQL's `numeric` display rules.
//!
//! A value is `mantissa * 10^-scale`; the scale is the *display* scale
//! (`dscale` in Postgres), so `1.50` and `1.5` are different values for display
//! but compare equal as numbers. Division picks its result scale the way
//! Postgres's `select_div_scale` does, so `avg(int)` renders exactly as
//! Postgres renders it (`2.5000000000000000`).
//!
//! Most values fit an `i64` mantissa and are stored inline (`Small`); larger
//! ones are boxed big integers. The form is canonical — `Small` whenever the
//! mantissa fits — so derived equality and hashing agree with the value.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use num_bigint::{BigInt, Sign};
use num_integer::Integer;
use num_traits::{Signed, ToPrimitive, Zero};
use serde::{Deserialize, Serialize};

/// Postgres's `NUMERIC_MIN_SIG_DIGITS`: division keeps at least this many significant digits.
const MIN_SIG_DIGITS: i64 = 16;
/// Postgres's `NUMERIC_MAX_DISPLAY_SCALE`: no result gets more fractional digits than this.
const MAX_DISPLAY_SCALE: i64 = 1000;
/// Postgres's `NUMERIC_DSCALE_MAX`: the most fractional digits a value can have.
pub const MAX_DSCALE: u32 = 0x3FFF;
/// The most digits before the decimal point: Postgres's largest weight
/// (`NUMERIC_WEIGHT_MAX`, 0x7FFF) in base-10000 digits, times four.
pub const MAX_INT_DIGITS: u32 = 4 * 0x8000;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Numeric {
    /// A finite value whose mantissa fits an i64.
    Small {
        mantissa: i64,
        scale: u32,
    },
    /// A finite value with a larger mantissa.
    Big(Box<(BigInt, u32)>),
    NaN,
    PosInf,
    NegInf,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumericError {
    #[error("invalid input syntax for type numeric: \"{0}\"")]
    Syntax(String),
    #[error("division by zero")]
    DivisionByZero,
    /// More digits than Postgres's storage format holds.
    #[error("value overflows numeric format")]
    Overflow,
    #[error("numeric field overflow: a field with precision {precision}, scale {scale} must round to an absolute value less than 10^{}", precision - scale)]
    FieldOverflow { precision: u32, scale: u32 },
}

fn pow10(n: u32) -> BigInt {
    BigInt::from(10u32).pow(n)
}

impl Numeric {
    /// Bytes this value holds on the heap: a large mantissa's box and digits.
    pub fn heap_size(&self) -> usize {
        match self {
            Numeric::Big(b) => {
                std::mem::size_of::<(BigInt, u32)>() + b.0.bits().div_ceil(8) as usize
            }
            _ => 0,
        }
    }

    /// A finite value in canonical form.
    pub fn finite(mantissa: BigInt, scale: u32) -> Numeric {
        match mantissa.to_i64() {
            Some(m) => Numeric::Small { mantissa: m, scale },
            None => Numeric::Big(Box::new((mantissa, scale))),
        }
    }

    /// Mantissa and scale of a finite value.
    pub fn parts(&self) -> Option<(Cow<'_, BigInt>, u32)> {
        match self {
            Numeric::Small { mantissa, scale } => {
                Some((Cow::Owned(BigInt::from(*mantissa)), *scale))
            }
            Numeric::Big(b) => Some((Cow::Borrowed(&b.0), b.1)),
            _ => None,
        }
    }

    pub fn from_i64(v: i64) -> Self {
        Numeric::Small {
            mantissa: v,
            scale: 0,
        }
    }

    pub fn zero() -> Self {
        Self::from_i64(0)
    }

    /// Parses numeric input as Postgres's `numeric_in` does: spaces around,
    /// a sign, digits with an optional point, an optional exponent, or one of
    /// the special words. Values past Postgres's limits (131072 digits before
    /// the point, 16383 after) are `value overflows numeric format`, checked
    /// before any big number is built, so absurd exponents cost nothing.
    pub fn parse(text: &str) -> Result<Self, NumericError> {
        let t = text.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\x0b');
        if t.len() <= 9 {
            match t.to_ascii_lowercase().as_str() {
                "nan" => return Ok(Numeric::NaN),
                "infinity" | "+infinity" | "inf" | "+inf" => return Ok(Numeric::PosInf),
                "-infinity" | "-inf" => return Ok(Numeric::NegInf),
                _ => {}
            }
        }
        let err = || NumericError::Syntax(text.to_string());
        let (body, exp) = match t.find(['e', 'E']) {
            Some(i) => {
                let e = &t[i + 1..];
                let unsigned = e.strip_prefix(['+', '-']).unwrap_or(e);
                if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(err());
                }
                // Postgres refuses exponents past INT_MAX / 2 outright.
                let exp = e.parse::<i64>().map_err(|_| NumericError::Overflow)?;
                if exp.abs() >= i32::MAX as i64 / 2 {
                    return Err(NumericError::Overflow);
                }
                (&t[..i], exp)
            }
            None => (t, 0),
        };
        let (neg, digits) = match body.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, body.strip_prefix('+').unwrap_or(body)),
        };
        let (int_part, frac_part) = match digits.split_once('.') {
            Some((i, f)) => (i, f),
            None => (digits, ""),
        };
        if (int_part.is_empty() && frac_part.is_empty())
            || !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(err());
        }
        let scale = frac_part.len() as i64 - exp;
        if scale > MAX_DSCALE as i64 {
            return Err(NumericError::Overflow);
        }
        if body.len() == t.len() && int_part.len() + frac_part.len() <= 18 {
            // No exponent, and the digits fit an i64: what COPY and
            // pgoutput send, read without a big integer.
            let digits = int_part.bytes().chain(frac_part.bytes());
            let m = digits.fold(0i64, |m, b| m * 10 + i64::from(b - b'0'));
            return Ok(Numeric::Small {
                mantissa: if neg { -m } else { m },
                scale: scale as u32,
            });
        }
        let all = format!("{int_part}{frac_part}");
        let significant = all.trim_start_matches('0');
        // Digits before the point once the exponent is applied.
        if significant.len() as i64 - scale > MAX_INT_DIGITS as i64 {
            return Err(NumericError::Overflow);
        }
        let mut mantissa: BigInt = if significant.is_empty() {
            BigInt::zero()
        } else {
            significant.parse().map_err(|_| err())?
        };
        if neg {
            mantissa = -mantissa;
        }
        if scale < 0 {
            mantissa *= pow10((-scale) as u32);
        }
        Ok(Numeric::finite(mantissa, scale.max(0) as u32))
    }

    /// The value if it fits Postgres's storage format, else `value overflows
    /// numeric format` (as `make_result` checks every result).
    pub fn checked(self) -> Result<Numeric, NumericError> {
        if self.scale() > MAX_DSCALE {
            return Err(NumericError::Overflow);
        }
        let Numeric::Big(b) = &self else {
            // An i64 mantissa has at most 19 digits.
            return Ok(self);
        };
        let (m, scale) = (&b.0, b.1);
        // |m| < 10^(MAX_INT_DIGITS + scale), first by bit length, exactly only near the edge.
        let limit_digits = (MAX_INT_DIGITS + scale) as f64;
        let bits = m.bits() as f64;
        let log2_10 = std::f64::consts::LOG2_10;
        if bits < (limit_digits - 1.0) * log2_10 {
            return Ok(self);
        }
        if bits > limit_digits * log2_10 + 1.0
            || m.magnitude() >= pow10(MAX_INT_DIGITS + scale).magnitude()
        {
            return Err(NumericError::Overflow);
        }
        Ok(self)
    }

    fn special_rank(&self) -> i8 {
        match self {
            Numeric::NegInf => -1,
            Numeric::Small { .. } | Numeric::Big(_) => 0,
            Numeric::PosInf => 1,
            Numeric::NaN => 2,
        }
    }

    /// Both mantissas at the larger of the two scales.
    fn aligned(a: &BigInt, sa: u32, b: &BigInt, sb: u32) -> (BigInt, BigInt, u32) {
        match sa.cmp(&sb) {
            Ordering::Equal => (a.clone(), b.clone(), sa),
            Ordering::Less => (a * pow10(sb - sa), b.clone(), sb),
            Ordering::Greater => (a.clone(), b * pow10(sa - sb), sa),
        }
    }

    /// Both small mantissas at the larger scale, when that fits an i128.
    fn aligned_small(&self, other: &Numeric) -> Option<(i128, i128, u32)> {
        let (
            Numeric::Small {
                mantissa: a,
                scale: sa,
            },
            Numeric::Small {
                mantissa: b,
                scale: sb,
            },
        ) = (self, other)
        else {
            return None;
        };
        let s = (*sa).max(*sb);
        let up = |m: i64, from: u32| -> Option<i128> {
            10i128
                .checked_pow(s - from)
                .and_then(|p| (m as i128).checked_mul(p))
        };
        Some((up(*a, *sa)?, up(*b, *sb)?, s))
    }

    fn from_i128(m: i128, scale: u32) -> Numeric {
        match i64::try_from(m) {
            Ok(m) => Numeric::Small { mantissa: m, scale },
            Err(_) => Numeric::finite(BigInt::from(m), scale),
        }
    }

    pub fn add(&self, other: &Numeric) -> Numeric {
        if let Some((a, b, s)) = self.aligned_small(other) {
            if let Some(sum) = a.checked_add(b) {
                return Numeric::from_i128(sum, s);
            }
        }
        match (self.parts(), other.parts()) {
            (Some((a, sa)), Some((b, sb))) => {
                let (a, b, s) = Self::aligned(&a, sa, &b, sb);
                Numeric::finite(a + b, s)
            }
            _ => match (self, other) {
                (Numeric::NaN, _) | (_, Numeric::NaN) => Numeric::NaN,
                (Numeric::PosInf, Numeric::NegInf) | (Numeric::NegInf, Numeric::PosInf) => {
                    Numeric::NaN
                }
                (Numeric::PosInf, _) | (_, Numeric::PosInf) => Numeric::PosInf,
                _ => Numeric::NegInf,
            },
        }
    }

    pub fn is_negative(&self) -> bool {
        self.signum() < 0
    }

    pub fn neg(&self) -> Numeric {
        match self {
            Numeric::Small { mantissa, scale } => match mantissa.checked_neg() {
                Some(m) => Numeric::Small {
                    mantissa: m,
                    scale: *scale,
                },
                None => Numeric::finite(-BigInt::from(*mantissa), *scale),
            },
            Numeric::Big(b) => Numeric::finite(-&b.0, b.1),
            Numeric::NaN => Numeric::NaN,
            Numeric::PosInf => Numeric::NegInf,
            Numeric::NegInf => Numeric::PosInf,
        }
    }

    pub fn sub(&self, other: &Numeric) -> Numeric {
        self.add(&other.neg())
    }

    /// `+` with Postgres's overflow check.
    pub fn checked_add(&self, other: &Numeric) -> Result<Numeric, NumericError> {
        self.add(other).checked()
    }

    /// `-` with Postgres's overflow check.
    pub fn checked_sub(&self, other: &Numeric) -> Result<Numeric, NumericError> {
        self.sub(other).checked()
    }

    /// `*` as Postgres computes it: the exact product, rounded to at most
    /// 16383 fractional digits, and the overflow check.
    pub fn checked_mul(&self, other: &Numeric) -> Result<Numeric, NumericError> {
        let product = self.mul(other);
        let product = if product.scale() > MAX_DSCALE {
            product.with_scale(MAX_DSCALE)
        } else {
            product
        };
        product.checked()
    }

    /// `%`: the remainder of the quotient truncated toward zero, exact, at the
    /// larger scale of the two (Postgres's `mod_var`).
    pub fn rem(&self, other: &Numeric) -> Result<Numeric, NumericError> {
        match (self.parts(), other.parts()) {
            (Some((a, sa)), Some((b, sb))) => {
                if b.is_zero() {
                    return Err(NumericError::DivisionByZero);
                }
                let (a, b, s) = Self::aligned(&a, sa, &b, sb);
                Ok(Numeric::finite(a % b, s))
            }
            _ => match (self, other) {
                (Numeric::NaN, _) | (_, Numeric::NaN) => Ok(Numeric::NaN),
                // Infinity % nonzero is NaN; x % infinity is x.
                (Numeric::PosInf | Numeric::NegInf, o) => {
                    if o.is_zero() {
                        Err(NumericError::DivisionByZero)
                    } else {
                        Ok(Numeric::NaN)
                    }
                }
                (x, _) => Ok(x.clone()),
            },
        }
    }

    pub fn mul(&self, other: &Numeric) -> Numeric {
        if let (
            Numeric::Small {
                mantissa: a,
                scale: sa,
            },
            Numeric::Small {
                mantissa: b,
                scale: sb,
            },
        ) = (self, other)
        {
            return Numeric::from_i128(*a as i128 * *b as i128, sa + sb);
        }
        match (self.parts(), other.parts()) {
            (Some((a, sa)), Some((b, sb))) => Numeric::finite(a.as_ref() * b.as_ref(), sa + sb),
            _ => match (self, other) {
                (Numeric::NaN, _) | (_, Numeric::NaN) => Numeric::NaN,
                (x, y) => match (x.signum() * y.signum()).cmp(&0) {
                    Ordering::Equal => Numeric::NaN,
                    Ordering::Greater => Numeric::PosInf,
                    Ordering::Less => Numeric::NegInf,
                },
            },
        }
    }

    /// -1, 0 or 1 (NaN counts as 0, infinities by their sign).
    pub fn signum(&self) -> i32 {
        match self {
            Numeric::Small { mantissa, .. } => mantissa.signum() as i32,
            Numeric::Big(b) => match b.0.sign() {
                Sign::Minus => -1,
                Sign::NoSign => 0,
                Sign::Plus => 1,
            },
            Numeric::PosInf => 1,
            Numeric::NegInf => -1,
            Numeric::NaN => 0,
        }
    }

    pub fn is_zero(&self) -> bool {
        matches!(self, Numeric::Small { mantissa: 0, .. })
    }

    /// Weight (position of the first nonzero base-10000 digit, as Postgres counts it)
    /// and that digit, for `select_div_scale`.
    fn weight_and_first_digit(mantissa: &BigInt, scale: u32) -> (i64, i64) {
        if mantissa.is_zero() {
            return (0, 0);
        }
        let digits = mantissa.abs().to_string();
        // Decimal position of the leading digit (10^lead_pos); Postgres groups
        // digits in base 10000 aligned at the decimal point.
        let lead_pos = digits.len() as i64 - scale as i64 - 1;
        let weight = Integer::div_floor(&lead_pos, &4);
        let take = (lead_pos - weight * 4 + 1) as usize;
        let first: i64 = digits[..take.min(digits.len())].parse().unwrap_or(0);
        let first = if take > digits.len() {
            first * 10i64.pow((take - digits.len()) as u32)
        } else {
            first
        };
        (weight, first)
    }

    /// Division with Postgres's result scale; rounds half away from zero.
    pub fn div(&self, other: &Numeric) -> Result<Numeric, NumericError> {
        if matches!(self, Numeric::NaN) || matches!(other, Numeric::NaN) {
            return Ok(Numeric::NaN);
        }
        if other.is_zero() {
            return Err(NumericError::DivisionByZero);
        }
        match (self.parts(), other.parts()) {
            (Some((a, sa)), Some((b, sb))) => {
                let (w1, f1) = Self::weight_and_first_digit(&a, sa);
                let (w2, f2) = Self::weight_and_first_digit(&b, sb);
                let mut qweight = w1 - w2;
                if f1 <= f2 {
                    qweight -= 1;
                }
                let rscale = (MIN_SIG_DIGITS - qweight * 4)
                    .max(sa as i64)
                    .max(sb as i64)
                    .clamp(0, MAX_DISPLAY_SCALE) as u32;
                Self::div_to_scale(&a, sa, &b, sb, rscale).checked()
            }
            (Some(_), None) => Ok(Numeric::zero()),
            (None, None) => Ok(Numeric::NaN),
            (None, Some(_)) => Ok(if self.signum() * other.signum() > 0 {
                Numeric::PosInf
            } else {
                Numeric::NegInf
            }),
        }
    }

    /// `(a / 10^sa) / (b / 10^sb)` rounded half away from zero to `rscale` digits.
    fn div_to_scale(a: &BigInt, sa: u32, b: &BigInt, sb: u32, rscale: u32) -> Numeric {
        // result mantissa = a * 10^(rscale + sb - sa) / b
        let shift = rscale as i64 + sb as i64 - sa as i64;
        let (num, den) = if shift >= 0 {
            (a * pow10(shift as u32), b.clone())
        } else {
            (a.clone(), b * pow10((-shift) as u32))
        };
        let (mut q, r) = num.abs().div_rem(&den.abs());
        if (r * 2u32) >= den.abs() {
            q += 1u32;
        }
        let negative = (num.sign() == Sign::Minus) != (den.sign() == Sign::Minus);
        Numeric::finite(if negative { -q } else { q }, rscale)
    }

    pub fn to_f64(&self) -> f64 {
        match self {
            Numeric::Small { .. } | Numeric::Big(_) => self.to_string().parse().unwrap_or(f64::NAN),
            Numeric::NaN => f64::NAN,
            Numeric::PosInf => f64::INFINITY,
            Numeric::NegInf => f64::NEG_INFINITY,
        }
    }

    /// The integer value, rounded half away from zero as Postgres casts numeric to int.
    pub fn to_i64_rounded(&self) -> Option<i64> {
        let (m, s) = self.parts()?;
        match Self::div_to_scale(&m, s, &BigInt::from(1), 0, 0) {
            Numeric::Small { mantissa, .. } => Some(mantissa),
            _ => None,
        }
    }

    /// The integer part (truncated toward zero).
    pub fn trunc(&self) -> Numeric {
        match self.parts() {
            Some((m, s)) => Numeric::finite(m.as_ref() / pow10(s), 0),
            None => self.clone(),
        }
    }

    /// The value as a `numeric(precision, scale)` column holds it: rounded half
    /// away from zero to `scale` digits, and an error when the integer part has
    /// more than `precision - scale` digits. NaN passes; infinities do not fit.
    pub fn apply_typmod(&self, precision: u32, scale: u32) -> Result<Numeric, NumericError> {
        let overflow = NumericError::FieldOverflow { precision, scale };
        match self {
            Numeric::NaN => Ok(Numeric::NaN),
            Numeric::PosInf | Numeric::NegInf => Err(overflow),
            _ => {
                let rounded = self.with_scale(scale);
                let text = rounded.to_string();
                let int_part = text.trim_start_matches('-').split('.').next().unwrap_or("");
                let int_digits = int_part.trim_start_matches('0').len() as u32;
                if int_digits > precision.saturating_sub(scale) {
                    return Err(overflow);
                }
                Ok(rounded)
            }
        }
    }

    /// Rounds (half away from zero) or pads to exactly `scale` fractional digits.
    pub fn with_scale(&self, scale: u32) -> Numeric {
        match self.parts() {
            Some((m, s)) if s <= scale => Numeric::finite(m.as_ref() * pow10(scale - s), scale),
            Some((m, s)) => Self::div_to_scale(&m, s, &BigInt::from(1), 0, scale),
            None => self.clone(),
        }
    }

    /// The same value with trailing fractional zeros removed (for equality-based keys).
    pub fn normalized(&self) -> Numeric {
        match self {
            Numeric::Small { mantissa, scale } => {
                let (mut m, mut s) = (*mantissa, *scale);
                while s > 0 && m % 10 == 0 {
                    m /= 10;
                    s -= 1;
                }
                Numeric::Small {
                    mantissa: m,
                    scale: s,
                }
            }
            Numeric::Big(b) => {
                let (mut m, mut s) = (b.0.clone(), b.1);
                let ten = BigInt::from(10);
                while s > 0 && (&m % &ten).is_zero() {
                    m /= &ten;
                    s -= 1;
                }
                Numeric::finite(m, s)
            }
            other => other.clone(),
        }
    }

    /// Compares numerically, ignoring display scale.
    pub fn cmp_value(&self, other: &Numeric) -> Ordering {
        if let Some((a, b, _)) = self.aligned_small(other) {
            return a.cmp(&b);
        }
        match (self.parts(), other.parts()) {
            (Some((a, sa)), Some((b, sb))) => {
                let (a, b, _) = Self::aligned(&a, sa, &b, sb);
                a.cmp(&b)
            }
            _ => self.special_rank().cmp(&other.special_rank()),
        }
    }

    /// The display scale (0 for NaN and the infinities).
    pub fn scale(&self) -> u32 {
        match self {
            Numeric::Small { scale, .. } => *scale,
            Numeric::Big(b) => b.1,
            _ => 0,
        }
    }
}

impl fmt::Display for Numeric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (m, scale) = match self {
            Numeric::NaN => return f.write_str("NaN"),
            Numeric::PosInf => return f.write_str("Infinity"),
            Numeric::NegInf => return f.write_str("-Infinity"),
            Numeric::Small { mantissa, scale } => (Cow::Owned(BigInt::from(*mantissa)), *scale),
            Numeric::Big(b) => (Cow::Borrowed(&b.0), b.1),
        };
        let digits = m.abs().to_string();
        let scale = scale as usize;
        if m.sign() == Sign::Minus {
            f.write_str("-")?;
        }
        if scale == 0 {
            return f.write_str(&digits);
        }
        let padded = if digits.len() <= scale {
            format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits)
        } else {
            digits
        };
        let (i, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{i}.{frac}")
    }
}

/// Ordered by value first, then by display scale, so `min`/`max` see numbers and
/// two renderings of one value stay distinct rows.
impl Ord for Numeric {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_value(other)
            .then_with(|| self.scale().cmp(&other.scale()))
    }
}
impl PartialOrd for Numeric {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Numeric {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Numeric {}
impl Hash for Numeric {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The form is canonical, so equal values with equal scales hash alike.
        match self {
            Numeric::Small { mantissa, scale } => (0u8, mantissa, scale).hash(state),
            Numeric::Big(b) => (1u8, &b.0, b.1).hash(state),
            other => other.special_rank().hash(state),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Numeric {
        Numeric::parse(s).unwrap()
    }

    #[test]
    fn parse_and_display_keep_scale() {
        for s in [
            "0",
            "1.50",
            "-0.001",
            "123456789012345678901234567890.1",
            "NaN",
            "Infinity",
            "-Infinity",
        ] {
            assert_eq!(n(s).to_string(), s);
        }
        assert_eq!(n("1e3").to_string(), "1000");
        assert_eq!(n("1.5e-3").to_string(), "0.0015");
        assert!(Numeric::parse("1.2.3").is_err());
        assert!(Numeric::parse("").is_err());
    }

    #[test]
    fn division_scale_matches_postgres() {
        // Values checked against PostgreSQL 15: SELECT a::numeric / b::numeric.
        let cases = [
            ("5", "2", "2.5000000000000000"),
            ("1", "3", "0.33333333333333333333"),
            ("10", "4", "2.5000000000000000"),
            ("100000", "3", "33333.333333333333"),
            ("2", "3", "0.66666666666666666667"),
            ("1.50", "1", "1.50000000000000000000"),
            ("-7", "2", "-3.5000000000000000"),
            ("123456789", "1000", "123456.789000000000"),
        ];
        for (a, b, want) in cases {
            assert_eq!(n(a).div(&n(b)).unwrap().to_string(), want, "{a} / {b}");
        }
        assert_eq!(n("1").div(&n("0")), Err(NumericError::DivisionByZero));
    }

    #[test]
    fn arithmetic_and_order() {
        assert_eq!(n("1.5").add(&n("2.25")).to_string(), "3.75");
        assert_eq!(n("1.5").mul(&n("2.25")).to_string(), "3.375");
        assert_eq!(n("1.50").cmp_value(&n("1.5")), Ordering::Equal);
        assert_ne!(n("1.50"), n("1.5"));
        assert!(n("NaN") > n("Infinity") && n("-Infinity") < n("-1e100"));
        assert_eq!(n("2.5").to_i64_rounded(), Some(3));
        assert_eq!(n("-2.5").to_i64_rounded(), Some(-3));
        assert_eq!(n("1.005").with_scale(2).to_string(), "1.01");
        assert_eq!(n("1.234").apply_typmod(10, 2).unwrap().to_string(), "1.23");
        assert_eq!(n("-0.5").apply_typmod(3, 0).unwrap().to_string(), "-1");
        assert_eq!(n("7").apply_typmod(5, 2).unwrap().to_string(), "7.00");
        assert_eq!(
            n("999.995").apply_typmod(5, 2),
            Err(NumericError::FieldOverflow {
                precision: 5,
                scale: 2
            })
        );
        assert!(n("Infinity").apply_typmod(5, 2).is_err());
        assert_eq!(n("-7.9").trunc().to_string(), "-7");
        // Values past i64 take the big form and come back when they fit again.
        let big = n("9223372036854775807").add(&n("1"));
        assert!(matches!(big, Numeric::Big(_)));
        assert_eq!(big.to_string(), "9223372036854775808");
        assert!(matches!(big.sub(&n("1")), Numeric::Small { .. }));
        assert_eq!(big.sub(&n("1")), n("9223372036854775807"));
        assert_eq!(
            n("1e30").mul(&n("1e-30")).cmp_value(&n("1")),
            Ordering::Equal
        );
        assert_eq!(n("NaN").div(&n("0")), Ok(Numeric::NaN));
    }

    #[test]
    fn limits_are_postgres_storage_limits() {
        // Values checked against PostgreSQL 15.
        assert_eq!(n("1e100000").to_string().len(), 100_001);
        assert_eq!(n("9.99e131071").to_string().len(), 131_072);
        assert_eq!(n("1e-16383").to_string().len(), 16_385);
        assert_eq!(n("  +inf ").to_string(), "Infinity");
        assert_eq!(n("-0").to_string(), "0");
        for overflow in [
            "1e131072",
            "1e-16384",
            "0e-20000",
            "1e2147483647",
            "1e-2147483647",
            "1e99999999999999999999",
        ] {
            assert_eq!(
                Numeric::parse(overflow),
                Err(NumericError::Overflow),
                "{overflow}"
            );
        }
        assert!(matches!(Numeric::parse("1e"), Err(NumericError::Syntax(_))));
        assert!(matches!(
            Numeric::parse("1e+-5"),
            Err(NumericError::Syntax(_))
        ));
        let big = n("9.99e131071");
        assert_eq!(big.checked_add(&big), Err(NumericError::Overflow));
        assert_eq!(
            n("1e100000").checked_mul(&n("1e100000")),
            Err(NumericError::Overflow)
        );
        assert_eq!(n("1e131071").div(&n("0.001")), Err(NumericError::Overflow));
        // A product's scale is capped at 16383 digits, rounding.
        let tiny = n("1e-10000").checked_mul(&n("1e-10000")).unwrap();
        assert_eq!(tiny.scale(), MAX_DSCALE);
        assert_eq!(tiny.signum(), 0);
    }

    #[test]
    fn remainder_is_exact() {
        let rem = |a: &str, b: &str| n(a).rem(&n(b)).map(|r| r.to_string());
        assert_eq!(rem("7", "3").unwrap(), "1");
        assert_eq!(rem("-7.5", "2").unwrap(), "-1.5");
        assert_eq!(rem("7", "-2.50").unwrap(), "2.00");
        // Rounding the quotient first would give -1 here.
        assert_eq!(
            rem(
                "2999999999999999999999999999999",
                "1000000000000000000000000000000"
            )
            .unwrap(),
            "999999999999999999999999999999"
        );
        assert_eq!(rem("1", "0"), Err(NumericError::DivisionByZero));
        assert_eq!(rem("Infinity", "0"), Err(NumericError::DivisionByZero));
        assert_eq!(rem("Infinity", "2").unwrap(), "NaN");
        assert_eq!(rem("5", "-Infinity").unwrap(), "5");
        assert_eq!(rem("NaN", "0").unwrap(), "NaN");
    }
}
