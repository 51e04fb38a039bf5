//! The x87 80-bit `long double` that Redis's INCRBYFLOAT and HINCRBYFLOAT
//! compute in, emulated exactly: Rust has no such type, and `f64` gives
//! other digits (`10.5 + 0.1` prints `10.6` in Redis, where `f64` has
//! `10.59999999999999964`).
//!
//! Redis parses both operands with `strtold` (through `string2ld`), adds
//! them in `long double`, and prints the sum with `%.17Lf` before removing
//! trailing zeros (`ld2string`, `LD_STR_HUMAN`). Each step here is exact
//! arithmetic on big integers followed by one IEEE rounding, so the results
//! are the correctly rounded ones glibc and the FPU produce:
//!
//! - [`parse`]: decimal or hexadecimal text to the nearest value with a
//!   64-bit mantissa (ties to even), subnormals included; a non-zero input
//!   that rounds to zero or overflows is refused, as `string2ld` refuses an
//!   `ERANGE` result that is zero or infinite.
//! - [`F80::add`]: the exact sum rounded once (ties to even).
//! - [`F80::format_human`]: the exact decimal expansion rounded to 17
//!   fractional digits (ties to even, as glibc's printf), zeros stripped.
//!
//! The same parser rounds to `double` for SORT's scores ([`strtod`]).

use std::cmp::Ordering;

use crate::bignum::Big;

/// A binary floating-point format: significand bits, and the range of the
/// exponent of the significand's lowest bit (the lowest is that of the
/// subnormals and of the smallest normal numbers).
#[derive(Debug, Clone, Copy)]
pub struct Format {
    bits: u32,
    exp_min: i64,
    exp_max: i64,
}

/// x87 extended precision: a 64-bit significand, exponent bias 16383.
pub const LONG_DOUBLE: Format = Format { bits: 64, exp_min: 1 - 16383 - 63, exp_max: 32766 - 16383 - 63 };
/// IEEE binary64 (`double`, what `strtod` returns).
pub const DOUBLE: Format = Format { bits: 53, exp_min: 1 - 1023 - 52, exp_max: 2046 - 1023 - 52 };

/// Redis's `MAX_LONG_DOUBLE_CHARS`: a longer string is never a number.
pub const LONG_DOUBLE_CHARS_MAX: usize = 5 * 1024;

/// A finite 80-bit extended value: `(-1)^neg * mant * 2^exp`. Normal
/// numbers have bit 63 of `mant` set; subnormals have the lowest `exp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct F80 {
    neg: bool,
    mant: u64,
    exp: i64,
}

impl F80 {
    /// The nearest `f64` (infinite beyond its range), for uses that need
    /// no more precision than that (a blocking command's timeout).
    pub fn to_f64(self) -> f64 {
        let v = (self.mant as f64) * 2f64.powi(self.exp.clamp(-2000, 2000) as i32);
        if self.neg {
            -v
        } else {
            v
        }
    }
}

/// A parsed operand: `strtold` also accepts infinities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    Finite(F80),
    Infinite,
}

/// An exact value rounded to a format: `(-1)^neg * mant * 2^exp`, zero
/// when `mant` is 0; `exact` when no rounding happened (a non-zero value
/// rounded to zero is an inexact zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rounded {
    neg: bool,
    mant: u64,
    exp: i64,
    exact: bool,
}

/// What `strtod`/`strtold` make of a complete number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Number {
    Finite(Rounded),
    Infinite(bool),
    /// Beyond the largest finite value: infinity (of this sign) with ERANGE.
    Overflow(bool),
}

impl Rounded {
    /// Whether C's `strto*` report ERANGE for this result: it is inexact
    /// and below the normal range (subnormal or zero).
    fn underflowed(&self, fmt: Format) -> bool {
        !self.exact && self.mant >> (fmt.bits - 1) == 0
    }
}

impl F80 {
    pub const ZERO: F80 = F80 { neg: false, mant: 0, exp: 0 };

    fn zero(neg: bool) -> F80 {
        F80 { neg, ..F80::ZERO }
    }

    fn is_canonical(&self) -> bool {
        let f = LONG_DOUBLE;
        self.mant == 0 || ((f.exp_min..=f.exp_max).contains(&self.exp) && (self.mant >> 63 == 1 || self.exp == f.exp_min))
    }

    /// `self + other` rounded to nearest, ties to even, as the FPU adds
    /// in extended precision; `None` if the sum overflows to infinity.
    pub fn add(self, other: F80) -> Option<F80> {
        if other.mant == 0 {
            // x + 0 is x, and -0 + -0 is -0.
            return Some(if self.mant == 0 { F80::zero(self.neg && other.neg) } else { self });
        }
        if self.mant == 0 {
            return Some(other);
        }
        let e = self.exp.min(other.exp);
        let a = Big::from_u64(self.mant).shl((self.exp - e) as u64);
        let b = Big::from_u64(other.mant).shl((other.exp - e) as u64);
        let (neg, sum) = if self.neg == other.neg {
            (self.neg, a.add(&b))
        } else {
            match a.cmp(&b) {
                // x + (-x) is +0 when rounding to nearest.
                Ordering::Equal => return Some(F80::ZERO),
                Ordering::Greater => {
                    let mut d = a;
                    d.sub_assign(&b);
                    (self.neg, d)
                }
                Ordering::Less => {
                    let mut d = b;
                    d.sub_assign(&a);
                    (other.neg, d)
                }
            }
        };
        let r = round(LONG_DOUBLE, neg, &sum, &Big::from_u64(1), e)?;
        debug_assert!(r.mant != 0, "a non-zero sum of two values on the subnormal grid is on that grid");
        Some(F80 { neg: r.neg, mant: r.mant, exp: r.exp })
    }

    /// `printf("%.17Lf")` with trailing zeros (and a trailing dot) removed,
    /// and `-0` printed as `0`: Redis's `ld2string(LD_STR_HUMAN)`.
    pub fn format_human(&self) -> Vec<u8> {
        debug_assert!(self.is_canonical());
        const FRACTION_DIGITS: usize = 17;
        const SCALE: u128 = 100_000_000_000_000_000; // 10^17
        let (int_digits, fraction): (Vec<u8>, u128) = if self.exp >= 0 {
            (Big::from_u64(self.mant).shl(self.exp as u64).to_decimal(), 0)
        } else {
            // mant * 10^17 < 2^121: with 128 or more fraction bits the
            // scaled value is below one half and rounds to zero.
            let k = (-self.exp) as u32;
            let scaled = u128::from(self.mant) * SCALE;
            let q = if k >= 128 {
                0
            } else {
                let q = scaled >> k;
                let rem = scaled & ((1u128 << k) - 1);
                let half = 1u128 << (k - 1);
                match rem.cmp(&half) {
                    Ordering::Greater => q + 1,
                    Ordering::Equal => q + (q & 1),
                    Ordering::Less => q,
                }
            };
            ((q / SCALE).to_string().into_bytes(), q % SCALE)
        };
        let mut out = Vec::with_capacity(int_digits.len() + FRACTION_DIGITS + 2);
        let is_zero = int_digits == b"0" && fraction == 0;
        if self.neg && !is_zero {
            out.push(b'-');
        }
        out.extend_from_slice(&int_digits);
        if fraction != 0 {
            let digits = format!("{fraction:017}");
            out.push(b'.');
            out.extend_from_slice(digits.trim_end_matches('0').as_bytes());
        }
        out
    }
}

/// Rounds `num * 2^shift / den` (with sign `neg`) to the nearest value of
/// `fmt`, ties to even; `None` if it overflows.
fn round(fmt: Format, neg: bool, num: &Big, den: &Big, shift: i64) -> Option<Rounded> {
    if num.is_zero() {
        return Some(Rounded { neg, mant: 0, exp: fmt.exp_min, exact: true });
    }
    // floor(log2(num / den)) is f0 or f0 - 1.
    let f0 = num.bits() as i64 - den.bits() as i64;
    let at_least = if f0 >= 0 { *num >= den.shl(f0 as u64) } else { num.shl((-f0) as u64) >= *den };
    let top = if at_least { f0 } else { f0 - 1 } + shift;
    // The lowest significand bit's exponent: `bits` significant bits, or
    // fewer (a subnormal) below the normal range.
    let mut exp = (top - i64::from(fmt.bits) + 1).max(fmt.exp_min);
    if exp > fmt.exp_max {
        return None;
    }
    let s = shift - exp;
    let (n, d) = if s >= 0 { (num.shl(s as u64), den.clone()) } else { (num.clone(), den.shl((-s) as u64)) };
    let (q, half) = n.div_u64_quotient(&d);
    let up = match half {
        Some(Ordering::Greater) => true,
        Some(Ordering::Equal) => q & 1 == 1,
        Some(Ordering::Less) | None => false,
    };
    let mut mant = u128::from(q) + u128::from(up);
    if mant == 1 << fmt.bits {
        mant >>= 1;
        exp += 1;
    }
    if exp > fmt.exp_max {
        return None;
    }
    let r = Rounded { neg, mant: mant as u64, exp, exact: half.is_none() };
    debug_assert!(mant < 1 << fmt.bits && (mant >> (fmt.bits - 1) == 1 || exp == fmt.exp_min), "{r:?}");
    Some(r)
}

/// C's `isspace` in the C locale.
pub fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Reads a run of digits of `radix`, returning them and the rest.
fn digits(s: &[u8], radix: u32) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|b| char::from(**b).is_digit(radix)).count();
    s.split_at(n)
}

/// An exponent: `[+-]digits`, saturated far beyond any finite result.
fn exponent(s: &[u8]) -> Option<i64> {
    let (neg, rest) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest.is_empty() || !rest.iter().all(u8::is_ascii_digit) {
        return None;
    }
    const SATURATE: i64 = 1 << 40;
    let v = rest.iter().fold(0i64, |v, d| (v * 10 + i64::from(d - b'0')).min(SATURATE));
    Some(if neg { -v } else { v })
}

/// A whole string as glibc's `strtod`/`strtold` read a number: decimal or
/// `0x` hexadecimal, `inf` or `infinity` in any case, with an optional
/// sign, correctly rounded to `fmt`. `None` if the string is not all one
/// number, or is a NaN (which every caller refuses).
fn parse_number(s: &[u8], fmt: Format) -> Option<Number> {
    let (neg, body) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
        return Some(Number::Infinite(neg));
    }
    let hex = body.len() > 2 && body[0] == b'0' && (body[1] | 0x20) == b'x';
    let (radix, body) = if hex { (16, &body[2..]) } else { (10, body) };
    let (int_part, rest) = digits(body, radix);
    let (frac_part, rest) = match rest.split_first() {
        Some((b'.', after)) => digits(after, radix),
        _ => (&rest[..0], rest),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let exp = match rest.split_first() {
        None => 0,
        Some((&e, after)) if (!hex && (e | 0x20) == b'e') || (hex && (e | 0x20) == b'p') => exponent(after)?,
        Some(_) => return None,
    };
    let mut mant = Big::default();
    let mut significant = 0i64;
    for &d in int_part.iter().chain(frac_part) {
        let v = char::from(d).to_digit(radix).expect("digits() checked it");
        mant.mul_add_small(u64::from(radix), u64::from(v));
        significant += i64::from(!mant.is_zero());
    }
    let frac_len = frac_part.len() as i64;
    let inexact_zero = Some(Number::Finite(Rounded { neg, mant: 0, exp: fmt.exp_min, exact: false }));
    let (bits, exp_min, exp_max) = (i64::from(fmt.bits), fmt.exp_min, fmt.exp_max);
    let rounded = if mant.is_zero() {
        round(fmt, neg, &mant, &Big::from_u64(1), 0)
    } else if hex {
        // Each hex digit is four bits; `p` scales by a power of two.
        let shift = exp - 4 * frac_len;
        let top = mant.bits() as i64 - 1 + shift;
        if top > exp_max + bits {
            return Some(Number::Overflow(neg));
        }
        if top < exp_min - 2 {
            return inexact_zero;
        }
        round(fmt, neg, &mant, &Big::from_u64(1), shift)
    } else {
        // The value lies in [10^(significant-1+e10), 10^(significant+e10)):
        // far beyond the format's range it is decided without computing.
        let e10 = exp - frac_len;
        let log10_2 = std::f64::consts::LOG10_2;
        let dec_max = ((exp_max + bits) as f64 * log10_2).ceil() as i64;
        let dec_min = ((exp_min - 1) as f64 * log10_2).floor() as i64;
        if significant - 1 + e10 > dec_max {
            return Some(Number::Overflow(neg));
        }
        if significant + e10 < dec_min {
            return inexact_zero;
        }
        if e10 >= 0 {
            mant.mul_pow10(e10 as u64);
            round(fmt, neg, &mant, &Big::from_u64(1), 0)
        } else {
            let mut den = Big::from_u64(1);
            den.mul_pow10((-e10) as u64);
            round(fmt, neg, &mant, &den, 0)
        }
    };
    Some(rounded.map_or(Number::Overflow(neg), Number::Finite))
}

/// Redis's `string2ld`: `strtold` must consume the whole string (at most
/// 5119 bytes, no leading blank), and its result must be neither NaN nor a
/// range error that is zero or infinite (an overflow, or a non-zero input
/// rounding to zero; a subnormal result is accepted).
pub fn parse(s: &[u8]) -> Option<Parsed> {
    if s.is_empty() || s.len() >= LONG_DOUBLE_CHARS_MAX || is_c_space(s[0]) {
        return None;
    }
    match parse_number(s, LONG_DOUBLE)? {
        Number::Infinite(_) => Some(Parsed::Infinite),
        Number::Overflow(_) => None,
        Number::Finite(r) if r.mant == 0 && !r.exact => None,
        Number::Finite(r) => Some(Parsed::Finite(F80 { neg: r.neg, mant: r.mant, exp: r.exp })),
    }
}

/// glibc's `strtod` on a string that must be one whole number (after
/// leading blanks): the value, and whether `errno` would be ERANGE
/// (overflow, or an inexact result below the normal range). `None` if it
/// is not a number, or is a NaN.
pub fn strtod(s: &[u8]) -> Option<(f64, bool)> {
    let start = s.iter().position(|b| !is_c_space(*b)).unwrap_or(s.len());
    let inf = |neg| if neg { f64::NEG_INFINITY } else { f64::INFINITY };
    match parse_number(&s[start..], DOUBLE)? {
        Number::Infinite(neg) => Some((inf(neg), false)),
        Number::Overflow(neg) => Some((inf(neg), true)),
        Number::Finite(r) => {
            let magnitude = if r.mant >> 52 == 0 {
                // Subnormal (or zero): the significand is the fraction field.
                f64::from_bits(r.mant)
            } else {
                let biased = (r.exp + 52 + 1023) as u64;
                f64::from_bits((biased << 52) | (r.mant & ((1 << 52) - 1)))
            };
            let v = if r.neg { -magnitude } else { magnitude };
            Some((v, r.underflowed(DOUBLE)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(s: &str) -> F80 {
        match parse(s.as_bytes()) {
            Some(Parsed::Finite(v)) => v,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn sum(a: &str, b: &str) -> String {
        String::from_utf8(num(a).add(num(b)).expect("finite").format_human()).unwrap()
    }

    #[test]
    fn sums_print_as_redis_prints_them() {
        // Values checked against redis-server 7.0 (x86-64 long double).
        assert_eq!(sum("10.5", "0.1"), "10.6");
        assert_eq!(sum("0", "0.000003814697265625"), "0.00000381469726562", "printf ties to even");
        assert_eq!(
            sum("0", "1e100"),
            "9999999999999999999669353532207342619498699019828496079271391541752018669482644324418977840117055488"
        );
        assert_eq!(sum("0x10", "0x1.8p1"), "19");
        assert_eq!(sum("3.0e3", "-3000"), "0");
        assert_eq!(sum("-0", "-0"), "0");
        assert_eq!(sum("0", "-1e-20"), "0", "-0.00000000000000000 prints as 0");
        assert_eq!(sum("5.", ".5"), "5.5");
        assert_eq!(sum("1", "-1.5"), "-0.5");
    }

    #[test]
    fn parses_as_string2ld() {
        for bad in [
            "",
            " 1",
            "1 ",
            "1e",
            "1e+",
            "nan",
            "-nan",
            "NaN(1)",
            "0x",
            "0x.",
            "0x1p",
            "1.2.3",
            "--1",
            "- 1",
            ".",
            "e5",
            "1e-4952",
            "1.8e-4951",
            "1e5000",
            "1.18973149535723176509e+4932",
            "1e-99999999999999999999",
            "infin",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
        }
        for good in ["inf", "-INF", "Infinity", "+5", ".5", "5.", "0x.8", "1.9e-4951", "1e-4940", "0e99999999999999999999"] {
            assert!(parse(good.as_bytes()).is_some(), "{good:?}");
        }
        assert_eq!(parse(b"inf"), Some(Parsed::Infinite));
        assert_eq!(parse("1".repeat(5119).as_bytes()), None, "overflows");
        assert!(parse(format!("0.{}", "1".repeat(5117)).as_bytes()).is_some());
        assert_eq!(parse(format!("0.{}", "1".repeat(5118)).as_bytes()), None, "5120 bytes");
        // The largest finite value prints in full; a larger one overflows.
        let max = num("1.18973149535723176502e+4932");
        assert_eq!(max.mant, u64::MAX);
        assert_eq!(max.add(max), None);
    }

    #[test]
    fn strtod_as_glibc() {
        // Values and errno checked against glibc's strtod.
        assert_eq!(strtod(b"1e-310"), Some(("1e-310".parse().unwrap(), true)), "an inexact subnormal");
        assert_eq!(strtod(b"0x1p-1070"), Some((f64::from_bits(16), false)), "an exact subnormal");
        assert_eq!(strtod(b"2.2250738585072013e-308"), Some((f64::MIN_POSITIVE, false)), "rounds up to normal");
        assert_eq!(strtod(b"1e-400"), Some((0.0, true)));
        assert_eq!(strtod(b"-1e309"), Some((f64::NEG_INFINITY, true)));
        assert_eq!(strtod(b"inf"), Some((f64::INFINITY, false)));
        assert_eq!(strtod(b" \t5"), Some((5.0, false)));
        assert_eq!(strtod(b"0.1"), Some((0.1, false)));
        assert_eq!(strtod(b"nan"), None);
        assert_eq!(strtod(b"5x"), None);
    }

    #[test]
    fn subnormals_round_to_nearest() {
        let min = num("3.6e-4951");
        assert_eq!((min.mant, min.exp), (1, LONG_DOUBLE.exp_min));
        assert_eq!(num("1.9e-4951"), min);
        assert_eq!(min.add(min).unwrap().mant, 2);
        assert_eq!(String::from_utf8(min.format_human()).unwrap(), "0");
    }
}
