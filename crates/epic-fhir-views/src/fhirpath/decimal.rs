//! FHIR decimals: exact, with their precision (`1.0` has one decimal place and stays so).

use std::cmp::Ordering;
use std::fmt;

/// `mantissa / 10^scale`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decimal {
    mantissa: i128,
    scale: u32,
}

/// The largest scale kept; FHIR decimals carry at most 18 significant digits in practice.
const MAX_SCALE: u32 = 28;
/// Decimal places computed by a division before trailing zeros are dropped.
const DIVISION_SCALE: u32 = 8;

impl Decimal {
    pub(crate) fn from_int(value: i64) -> Self {
        Decimal {
            mantissa: value as i128,
            scale: 0,
        }
    }

    /// Parses JSON or FHIRPath number text (`-1.50`, `2e3`).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (mantissa_text, exponent) = match text.find(['e', 'E']) {
            Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
            None => (text, 0),
        };
        let (negative, digits) = match mantissa_text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (
                false,
                mantissa_text.strip_prefix('+').unwrap_or(mantissa_text),
            ),
        };
        let (whole, fraction) = match digits.split_once('.') {
            Some((_, "")) => return None,
            Some(parts) => parts,
            None => (digits, ""),
        };
        if whole.is_empty()
            || !whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let mut mantissa: i128 = 0;
        for b in whole.bytes().chain(fraction.bytes()) {
            mantissa = mantissa.checked_mul(10)?.checked_add((b - b'0') as i128)?;
        }
        let mut scale = fraction.len() as i64 - exponent as i64;
        while scale < 0 {
            mantissa = mantissa.checked_mul(10)?;
            scale += 1;
        }
        if scale > MAX_SCALE as i64 {
            return None;
        }
        Some(Decimal {
            mantissa: if negative { -mantissa } else { mantissa },
            scale: scale as u32,
        })
    }

    /// Decimal places written.
    pub(crate) fn scale(&self) -> u32 {
        self.scale
    }

    pub(crate) fn to_f64(self) -> f64 {
        self.to_string().parse().unwrap_or(f64::NAN)
    }

    /// The value as an integer when it has no fraction.
    pub(crate) fn to_i64(self) -> Option<i64> {
        let factor = 10i128.checked_pow(self.scale)?;
        (self.mantissa % factor == 0)
            .then(|| i64::try_from(self.mantissa / factor).ok())
            .flatten()
    }

    fn rescale(self, scale: u32) -> Option<i128> {
        self.mantissa
            .checked_mul(10i128.checked_pow(scale.checked_sub(self.scale)?)?)
    }

    fn aligned(self, other: Decimal) -> Option<(i128, i128, u32)> {
        let scale = self.scale.max(other.scale);
        Some((self.rescale(scale)?, other.rescale(scale)?, scale))
    }

    pub(crate) fn checked_add(self, other: Decimal) -> Option<Decimal> {
        let (a, b, scale) = self.aligned(other)?;
        Some(Decimal {
            mantissa: a.checked_add(b)?,
            scale,
        })
    }

    pub(crate) fn checked_sub(self, other: Decimal) -> Option<Decimal> {
        let (a, b, scale) = self.aligned(other)?;
        Some(Decimal {
            mantissa: a.checked_sub(b)?,
            scale,
        })
    }

    pub(crate) fn checked_mul(self, other: Decimal) -> Option<Decimal> {
        let scale = self.scale + other.scale;
        if scale > MAX_SCALE {
            return None;
        }
        Some(Decimal {
            mantissa: self.mantissa.checked_mul(other.mantissa)?,
            scale,
        })
    }

    /// Division to 8 decimal places, trailing zeros dropped; `None` for a zero divisor.
    pub(crate) fn checked_div(self, other: Decimal) -> Option<Decimal> {
        if other.mantissa == 0 {
            return None;
        }
        // (a / 10^sa) / (b / 10^sb) = (a * 10^(sb + k - sa) / b) / 10^k
        let k = DIVISION_SCALE;
        let shift = (other.scale + k) as i64 - self.scale as i64;
        let (numerator, denominator) = if shift >= 0 {
            (
                self.mantissa
                    .checked_mul(10i128.checked_pow(shift as u32)?)?,
                other.mantissa,
            )
        } else {
            (
                self.mantissa,
                other
                    .mantissa
                    .checked_mul(10i128.checked_pow((-shift) as u32)?)?,
            )
        };
        Some(
            Decimal {
                mantissa: numerator / denominator,
                scale: k,
            }
            .normalized(),
        )
    }

    /// Without trailing zeros in the fraction.
    pub(crate) fn normalized(mut self) -> Decimal {
        while self.scale > 0 && self.mantissa % 10 == 0 {
            self.mantissa /= 10;
            self.scale -= 1;
        }
        self
    }

    /// The least (`high == false`) or greatest value this decimal may stand for, given its
    /// precision, written with one more decimal place (FHIRPath `lowBoundary()` /
    /// `highBoundary()`): `1.0` stands for [0.95, 1.05].
    pub(crate) fn boundary(self, high: bool) -> Option<Decimal> {
        let widened = Decimal {
            mantissa: self.mantissa.checked_mul(10)?,
            scale: self.scale + 1,
        };
        let half = Decimal {
            mantissa: 5,
            scale: self.scale + 1,
        };
        if high == (self.mantissa >= 0) {
            widened.checked_add(if self.mantissa >= 0 {
                half
            } else {
                half.negated()
            })
        } else {
            widened.checked_sub(if self.mantissa >= 0 {
                half
            } else {
                half.negated()
            })
        }
    }

    fn negated(self) -> Decimal {
        Decimal {
            mantissa: -self.mantissa,
            scale: self.scale,
        }
    }
}

impl PartialEq for Decimal {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        match self.aligned(*other) {
            Some((a, b, _)) => a.cmp(&b),
            None => self.to_f64().total_cmp(&other.to_f64()),
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.unsigned_abs().to_string();
        let sign = if self.mantissa < 0 { "-" } else { "" };
        let scale = self.scale as usize;
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = if digits.len() <= scale {
            format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
        } else {
            digits
        };
        let (whole, fraction) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{whole}.{fraction}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        Decimal::parse(text).unwrap()
    }

    #[test]
    fn keeps_precision_and_computes_exactly() {
        assert_eq!(d("1.0").to_string(), "1.0");
        assert_eq!(d("-0.05").to_string(), "-0.05");
        assert_eq!(d("2e2").to_string(), "200");
        assert_eq!(d("1.5E-1").to_string(), "0.15");
        assert_eq!(d("0.1").checked_add(d("0.2")).unwrap().to_string(), "0.3");
        assert_eq!(d("3").checked_div(d("2")).unwrap().to_string(), "1.5");
        assert_eq!(
            d("1").checked_div(d("3")).unwrap().to_string(),
            "0.33333333"
        );
        assert!(d("1").checked_div(d("0")).is_none());
        assert_eq!(d("1.50"), d("1.5"));
        assert!(d("1.2") > d("1.19"));
        assert_eq!(d("2.0").to_i64(), Some(2));
        assert_eq!(d("2.5").to_i64(), None);
        for bad in ["", "-", "1.", ".5", "1.2.3", "abc", "1e"] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn boundaries_follow_precision() {
        assert_eq!(d("1.0").boundary(false).unwrap().to_string(), "0.95");
        assert_eq!(d("1.0").boundary(true).unwrap().to_string(), "1.05");
        assert_eq!(d("1.587").boundary(false).unwrap().to_string(), "1.5865");
        assert_eq!(d("-1.0").boundary(false).unwrap().to_string(), "-1.05");
        assert_eq!(d("-1.0").boundary(true).unwrap().to_string(), "-0.95");
        assert_eq!(d("3").boundary(true).unwrap().to_string(), "3.5");
    }
}
