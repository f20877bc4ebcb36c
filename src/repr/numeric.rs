//! Exact decimal arithmetic with PostgreSQL's `numeric` display rules.
//!
//! A value is `mantissa * 10^-scale`; the scale is the *display* scale
//! (`dscale` in Postgres), so `1.50` and `1.5` are different values for display
//! but compare equal as numbers. Division picks its result scale the way
//! Postgres's `select_div_scale` does, so `avg(int)` renders exactly as
//! Postgres renders it (`2.5000000000000000`).

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

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Numeric {
    Finite { mantissa: BigInt, scale: u32 },
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
}

fn pow10(n: u32) -> BigInt {
    BigInt::from(10u32).pow(n)
}

impl Numeric {
    pub fn from_i64(v: i64) -> Self {
        Numeric::Finite {
            mantissa: BigInt::from(v),
            scale: 0,
        }
    }

    pub fn zero() -> Self {
        Self::from_i64(0)
    }

    pub fn parse(text: &str) -> Result<Self, NumericError> {
        let t = text.trim();
        match t.to_ascii_lowercase().as_str() {
            "nan" => return Ok(Numeric::NaN),
            "infinity" | "+infinity" | "inf" => return Ok(Numeric::PosInf),
            "-infinity" | "-inf" => return Ok(Numeric::NegInf),
            _ => {}
        }
        let err = || NumericError::Syntax(text.to_string());
        let (body, exp) = match t.find(['e', 'E']) {
            Some(i) => (&t[..i], t[i + 1..].parse::<i64>().map_err(|_| err())?),
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
        let all: String = format!("{int_part}{frac_part}");
        let mut mantissa: BigInt = if all.is_empty() {
            BigInt::zero()
        } else {
            all.parse().map_err(|_| err())?
        };
        if neg {
            mantissa = -mantissa;
        }
        let mut scale = frac_part.len() as i64 - exp;
        if scale < 0 {
            mantissa *= pow10((-scale) as u32);
            scale = 0;
        }
        Ok(Numeric::Finite {
            mantissa,
            scale: scale as u32,
        })
    }

    fn special_rank(&self) -> i8 {
        match self {
            Numeric::NegInf => -1,
            Numeric::Finite { .. } => 0,
            Numeric::PosInf => 1,
            Numeric::NaN => 2,
        }
    }

    /// Mantissa and scale rescaled to a common scale with `other`.
    fn aligned(a: &BigInt, sa: u32, b: &BigInt, sb: u32) -> (BigInt, BigInt, u32) {
        match sa.cmp(&sb) {
            Ordering::Equal => (a.clone(), b.clone(), sa),
            Ordering::Less => (a * pow10(sb - sa), b.clone(), sb),
            Ordering::Greater => (a.clone(), b * pow10(sa - sb), sa),
        }
    }

    pub fn add(&self, other: &Numeric) -> Numeric {
        match (self, other) {
            (
                Numeric::Finite {
                    mantissa: a,
                    scale: sa,
                },
                Numeric::Finite {
                    mantissa: b,
                    scale: sb,
                },
            ) => {
                let (a, b, s) = Self::aligned(a, *sa, b, *sb);
                Numeric::Finite {
                    mantissa: a + b,
                    scale: s,
                }
            }
            (Numeric::NaN, _) | (_, Numeric::NaN) => Numeric::NaN,
            (Numeric::PosInf, Numeric::NegInf) | (Numeric::NegInf, Numeric::PosInf) => Numeric::NaN,
            (Numeric::PosInf, _) | (_, Numeric::PosInf) => Numeric::PosInf,
            _ => Numeric::NegInf,
        }
    }

    pub fn neg(&self) -> Numeric {
        match self {
            Numeric::Finite { mantissa, scale } => Numeric::Finite {
                mantissa: -mantissa,
                scale: *scale,
            },
            Numeric::NaN => Numeric::NaN,
            Numeric::PosInf => Numeric::NegInf,
            Numeric::NegInf => Numeric::PosInf,
        }
    }

    pub fn sub(&self, other: &Numeric) -> Numeric {
        self.add(&other.neg())
    }

    pub fn mul(&self, other: &Numeric) -> Numeric {
        match (self, other) {
            (
                Numeric::Finite {
                    mantissa: a,
                    scale: sa,
                },
                Numeric::Finite {
                    mantissa: b,
                    scale: sb,
                },
            ) => Numeric::Finite {
                mantissa: a * b,
                scale: sa + sb,
            },
            (Numeric::NaN, _) | (_, Numeric::NaN) => Numeric::NaN,
            (x, y) => {
                let sign = x.signum() * y.signum();
                match sign.cmp(&0) {
                    Ordering::Equal => Numeric::NaN,
                    Ordering::Greater => Numeric::PosInf,
                    Ordering::Less => Numeric::NegInf,
                }
            }
        }
    }

    fn signum(&self) -> i32 {
        match self {
            Numeric::Finite { mantissa, .. } => match mantissa.sign() {
                Sign::Minus => -1,
                Sign::NoSign => 0,
                Sign::Plus => 1,
            },
            Numeric::PosInf => 1,
            Numeric::NegInf => -1,
            Numeric::NaN => 0,
        }
    }

    /// Weight (position of the first nonzero base-10000 digit, as Postgres counts it)
    /// and that digit, for `select_div_scale`.
    fn weight_and_first_digit(mantissa: &BigInt, scale: u32) -> (i64, i64) {
        if mantissa.is_zero() {
            return (0, 0);
        }
        let digits = mantissa.abs().to_string();
        // Decimal exponent of the leading digit: value = 0.d1d2... * 10^(e)
        let e = digits.len() as i64 - scale as i64; // number of integer digits (may be <= 0)
                                                    // Postgres groups digits in base 10000 aligned at the decimal point.
                                                    // The leading base-10000 group index (weight) w satisfies: group covers decimal
                                                    // exponents [4w, 4w+3] for the integer-position of the digit.
        let lead_pos = e - 1; // decimal position of leading digit (10^lead_pos)
        let weight = Integer::div_floor(&lead_pos, &4);
        // Value of the leading group: digits at positions 4w+3 .. 4w.
        let group_low = weight * 4;
        let take = (lead_pos - group_low + 1) as usize; // how many digits of the mantissa fall in the group
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
        match (self, other) {
            (
                Numeric::Finite {
                    mantissa: a,
                    scale: sa,
                },
                Numeric::Finite {
                    mantissa: b,
                    scale: sb,
                },
            ) => {
                if b.is_zero() {
                    return Err(NumericError::DivisionByZero);
                }
                let (w1, f1) = Self::weight_and_first_digit(a, *sa);
                let (w2, f2) = Self::weight_and_first_digit(b, *sb);
                let mut qweight = w1 - w2;
                if f1 <= f2 {
                    qweight -= 1;
                }
                let rscale = (MIN_SIG_DIGITS - qweight * 4)
                    .max(*sa as i64)
                    .max(*sb as i64)
                    .clamp(0, MAX_DISPLAY_SCALE) as u32;
                Ok(Self::div_to_scale(a, *sa, b, *sb, rscale))
            }
            (_, Numeric::Finite { mantissa, .. }) if mantissa.is_zero() => {
                Err(NumericError::DivisionByZero)
            }
            (Numeric::NaN, _) | (_, Numeric::NaN) => Ok(Numeric::NaN),
            (Numeric::Finite { .. }, _) => Ok(Numeric::zero()),
            (x, y) if y.special_rank() != 0 => {
                let _ = x;
                Ok(Numeric::NaN)
            }
            (x, y) => Ok(if x.signum() * y.signum() > 0 {
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
        let (q, r) = num.abs().div_rem(&den.abs());
        let mut q = q;
        if (r * 2u32) >= den.abs() {
            q += 1u32;
        }
        let negative = (num.sign() == Sign::Minus) != (den.sign() == Sign::Minus);
        Numeric::Finite {
            mantissa: if negative { -q } else { q },
            scale: rscale,
        }
    }

    pub fn to_f64(&self) -> f64 {
        match self {
            Numeric::Finite { .. } => self.to_string().parse().unwrap_or(f64::NAN),
            Numeric::NaN => f64::NAN,
            Numeric::PosInf => f64::INFINITY,
            Numeric::NegInf => f64::NEG_INFINITY,
        }
    }

    /// The integer value, rounded half away from zero as Postgres casts numeric to int.
    pub fn to_i64_rounded(&self) -> Option<i64> {
        match self {
            Numeric::Finite { mantissa, scale } => {
                let r = Self::div_to_scale(mantissa, *scale, &BigInt::from(1), 0, 0);
                match r {
                    Numeric::Finite { mantissa, .. } => mantissa.to_i64(),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Rounds (half away from zero) or pads to exactly `scale` fractional digits.
    pub fn with_scale(&self, scale: u32) -> Numeric {
        match self {
            Numeric::Finite { mantissa, scale: s } => {
                if *s <= scale {
                    Numeric::Finite {
                        mantissa: mantissa * pow10(scale - s),
                        scale,
                    }
                } else {
                    Self::div_to_scale(mantissa, *s, &BigInt::from(1), 0, scale)
                }
            }
            other => other.clone(),
        }
    }

    /// The same value with trailing fractional zeros removed (for equality-based keys).
    pub fn normalized(&self) -> Numeric {
        match self {
            Numeric::Finite { mantissa, scale } => {
                let mut m = mantissa.clone();
                let mut s = *scale;
                let ten = BigInt::from(10);
                while s > 0 && (&m % &ten).is_zero() {
                    m /= &ten;
                    s -= 1;
                }
                Numeric::Finite {
                    mantissa: m,
                    scale: s,
                }
            }
            other => other.clone(),
        }
    }

    /// Compares numerically, ignoring display scale.
    pub fn cmp_value(&self, other: &Numeric) -> Ordering {
        match (self, other) {
            (
                Numeric::Finite {
                    mantissa: a,
                    scale: sa,
                },
                Numeric::Finite {
                    mantissa: b,
                    scale: sb,
                },
            ) => {
                let (a, b, _) = Self::aligned(a, *sa, b, *sb);
                a.cmp(&b)
            }
            _ => self.special_rank().cmp(&other.special_rank()),
        }
    }
}

impl fmt::Display for Numeric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Numeric::NaN => f.write_str("NaN"),
            Numeric::PosInf => f.write_str("Infinity"),
            Numeric::NegInf => f.write_str("-Infinity"),
            Numeric::Finite { mantissa, scale } => {
                let digits = mantissa.abs().to_string();
                let scale = *scale as usize;
                if mantissa.sign() == Sign::Minus {
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
    }
}

/// Ordered by value first, then by display scale, so `min`/`max` see numbers and
/// two renderings of one value stay distinct rows.
impl Ord for Numeric {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_value(other).then_with(|| match (self, other) {
            (Numeric::Finite { scale: a, .. }, Numeric::Finite { scale: b, .. }) => a.cmp(b),
            _ => Ordering::Equal,
        })
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
        self.special_rank().hash(state);
        if let Numeric::Finite { mantissa, scale } = self {
            // Equal values with equal scales have equal mantissas.
            mantissa.hash(state);
            scale.hash(state);
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
    }
}
