//! Numbers as Redis reads and writes them: the strict `string2ll` grammar
//! (no sign `+`, no leading zeros, no blanks) that decides which replies say
//! "value is not an integer or out of range", and allocation-free decimal
//! formatting for the reply path.

/// Redis's `LONG_STR_SIZE`: a longer string is never an integer.
const LONG_STR_SIZE: usize = 21;

/// Parses `s` exactly as Redis's `string2ll`: `0`, or an optional `-`
/// followed by digits with no leading zero, within `i64`.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() >= LONG_STR_SIZE {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        if v > i64::MAX as u64 + 1 {
            return None;
        }
        Some((v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

/// Formats `v` in decimal into `buf` and returns the digits.
pub fn format_i64(buf: &mut [u8; 20], v: i64) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// Appends `v` in decimal.
pub fn write_i64(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 20];
    out.extend_from_slice(format_i64(&mut buf, v));
}

/// Appends `v` in decimal.
pub fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// The result of C's `strtod` on a string.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Strtod {
    pub value: f64,
    /// Bytes converted (0: no conversion, `value` is 0).
    pub used: usize,
    /// `errno == ERANGE` with a result of ±HUGE_VAL or zero: the number
    /// overflowed, or underflowed to zero (what `string2d` refuses).
    pub range_error: bool,
}

/// C's `isspace` in the C locale.
fn c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// glibc's `strtod` on the C string `s` (it ends at the first NUL):
/// leading blanks, a sign, then `inf`/`infinity`/`nan`, a hex float
/// (`0x1.8p3`) or a decimal one. Decimal values are Rust's correctly
/// rounded parse of the same digits, as glibc's are.
pub fn strtod(s: &[u8]) -> Strtod {
    let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
    let mut i = 0;
    while i < s.len() && c_space(s[i]) {
        i += 1;
    }
    let start = i;
    let negative = s.get(i) == Some(&b'-');
    if matches!(s.get(i), Some(b'+' | b'-')) {
        i += 1;
    }
    let signed = |v: f64| if negative { -v } else { v };
    let rest = &s[i..];
    let starts = |word: &[u8]| rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word);
    if starts(b"infinity") || starts(b"inf") {
        let n = if starts(b"infinity") { 8 } else { 3 };
        return Strtod { value: signed(f64::INFINITY), used: i + n, range_error: false };
    }
    if starts(b"nan") {
        let mut n = 3;
        if rest.get(3) == Some(&b'(') {
            let close = rest[4..].iter().position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'));
            if let Some(c) = close.filter(|&c| rest[4 + c] == b')') {
                n = 4 + c + 1;
            }
        }
        return Strtod { value: signed(f64::NAN), used: i + n, range_error: false };
    }
    if rest.len() >= 2 && rest[0] == b'0' && rest[1].eq_ignore_ascii_case(&b'x') {
        if let Some((value, n, nonzero)) = hex_float(&rest[2..]) {
            return finish(signed(value), i + 2 + n, nonzero);
        }
    }
    let (mut n, mut digits, mut nonzero) = (0, 0, false);
    while n < rest.len() && rest[n].is_ascii_digit() {
        nonzero |= rest[n] != b'0';
        n += 1;
        digits += 1;
    }
    if rest.get(n) == Some(&b'.') {
        n += 1;
        while n < rest.len() && rest[n].is_ascii_digit() {
            nonzero |= rest[n] != b'0';
            n += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return Strtod { value: 0.0, used: 0, range_error: false };
    }
    if matches!(rest.get(n), Some(b'e' | b'E')) {
        let mut e = n + 1;
        if matches!(rest.get(e), Some(b'+' | b'-')) {
            e += 1;
        }
        if rest.get(e).is_some_and(u8::is_ascii_digit) {
            while e < rest.len() && rest[e].is_ascii_digit() {
                e += 1;
            }
            n = e;
        }
    }
    let text = std::str::from_utf8(&s[start..i + n]).expect("ASCII digits");
    let value = text.parse::<f64>().expect("a decimal float Rust parses");
    finish(value, i + n, nonzero)
}

/// A converted finite-syntax number: ERANGE when it overflowed to
/// infinity, or when non-zero digits underflowed to zero.
fn finish(value: f64, used: usize, nonzero: bool) -> Strtod {
    let range_error = value.is_infinite() || (value == 0.0 && nonzero);
    Strtod { value, used, range_error }
}

/// The mantissa and exponent of a hex float after its `0x`: value, bytes
/// used, whether any mantissa digit is non-zero; None without a digit
/// (then `strtod` reads just the `0`).
fn hex_float(s: &[u8]) -> Option<(f64, usize, bool)> {
    let (mut n, mut digits) = (0, 0);
    let mut mantissa: u64 = 0;
    let mut exp2: i64 = 0;
    let mut sticky = false;
    let mut seen_point = false;
    loop {
        match s.get(n) {
            Some(b'.') if !seen_point => seen_point = true,
            Some(&c) if c.is_ascii_hexdigit() => {
                let d = u64::from((c as char).to_digit(16).expect("hex digit"));
                digits += 1;
                if mantissa >> 60 == 0 {
                    mantissa = mantissa << 4 | d;
                    if seen_point {
                        exp2 -= 4;
                    }
                } else {
                    sticky |= d != 0;
                    if !seen_point {
                        exp2 += 4;
                    }
                }
            }
            _ => break,
        }
        n += 1;
    }
    if digits == 0 {
        return None;
    }
    if matches!(s.get(n), Some(b'p' | b'P')) {
        let mut e = n + 1;
        let negative = s.get(e) == Some(&b'-');
        if matches!(s.get(e), Some(b'+' | b'-')) {
            e += 1;
        }
        if s.get(e).is_some_and(u8::is_ascii_digit) {
            let mut v: i64 = 0;
            while e < s.len() && s[e].is_ascii_digit() {
                v = (v * 10 + i64::from(s[e] - b'0')).min(1 << 40);
                e += 1;
            }
            exp2 += if negative { -v } else { v };
            n = e;
        }
    }
    let nonzero = mantissa != 0 || sticky;
    Some((compose(mantissa, sticky, exp2), n, nonzero))
}

/// `mantissa * 2^exp2` (plus a sticky bit for non-zero digits below the
/// mantissa), rounded to the nearest double, ties to even, with subnormals
/// and overflow.
fn compose(mantissa: u64, sticky: bool, exp2: i64) -> f64 {
    if mantissa == 0 {
        return 0.0;
    }
    let top = 63 - i64::from(mantissa.leading_zeros()) + exp2; // exponent of the leading bit
    if top > 1023 {
        return f64::INFINITY;
    }
    // The exponent of the last bit a double keeps: 53 bits from the
    // leading one, fewer for a subnormal.
    let keep_from = (top - 52).max(-1074);
    let shift = keep_from - exp2;
    let kept = if shift <= 0 {
        // Everything fits; the mantissa keeps every digit read when it
        // has room, so nothing was dropped.
        debug_assert!(!sticky);
        u128::from(mantissa) << -shift
    } else if shift > 64 {
        0 // below half of the smallest subnormal
    } else {
        let m = u128::from(mantissa);
        let (kept, rest, half) = (m >> shift, m & ((1u128 << shift) - 1), 1u128 << (shift - 1));
        let up = rest > half || (rest == half && (sticky || kept & 1 == 1));
        kept + u128::from(up)
    };
    debug_assert!(kept <= 1 << 54);
    // Exact: `kept` fits a double and the result is a multiple of 2^-1074.
    let low = keep_from / 2;
    kept as f64 * pow2(low) * pow2(keep_from - low)
}

/// 2^e for a normal exponent.
fn pow2(e: i64) -> f64 {
    debug_assert!((-1022..=1023).contains(&e));
    f64::from_bits(((e + 1023) as u64) << 52)
}

/// Redis's `string2d` (`getDoubleFromObject`): the whole argument is a
/// number `strtod` reads without overflow or underflow to zero, with no
/// leading blank, not NaN.
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    if s.is_empty() || c_space(s[0]) {
        return None;
    }
    let r = strtod(s);
    (r.used == s.len() && !r.range_error && !r.value.is_nan()).then_some(r.value)
}

/// Redis's `double2ll`: the integer a double equals, if it is one small
/// enough to print as an integer.
fn double2ll(d: f64) -> Option<i64> {
    const LIMIT: f64 = (i64::MAX / 2) as f64;
    if !(-LIMIT..=LIMIT).contains(&d) {
        return None;
    }
    let ll = d as i64;
    (ll as f64 == d).then_some(ll)
}

/// Appends `d` as C's `printf("%.17g")` does (what Redis's `addReplyDouble`
/// sends), `inf` and `-inf` included.
pub fn write_g17(out: &mut Vec<u8>, d: f64) {
    if d.is_nan() {
        return out.extend_from_slice(b"nan");
    }
    if d.is_infinite() {
        return out.extend_from_slice(if d > 0.0 { b"inf" } else { b"-inf" });
    }
    if d.is_sign_negative() {
        out.push(b'-');
    }
    if d == 0.0 {
        return out.push(b'0');
    }
    // Rust's exact formatting rounds to 17 significant digits (ties to even,
    // as glibc); %g then picks fixed or exponent notation by the exponent.
    let sci = format!("{:.16e}", d.abs());
    let (mantissa, exp) = sci.split_once('e').expect("exponent notation");
    let exp: i32 = exp.parse().expect("an exponent");
    let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    debug_assert_eq!(digits.len(), 17);
    let significant = digits.len() - digits.iter().rev().take_while(|&&c| c == b'0').count();
    let digits = &digits[..significant.max(1)];
    if !(-4..17).contains(&exp) {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        if exp.abs() < 10 {
            out.push(b'0');
        }
        write_u64(out, u64::from(exp.unsigned_abs()));
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        for k in 0..int_len {
            out.push(digits.get(k).copied().unwrap_or(b'0'));
        }
        if digits.len() > int_len {
            out.push(b'.');
            out.extend_from_slice(&digits[int_len..]);
        }
    } else {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-exp - 1) as usize));
        out.extend_from_slice(digits);
    }
}

/// Redis's `d2string`, how a score is kept in a small sorted set (and so
/// what ZSCAN shows): an integer without exponent when it is one, `-0`,
/// `inf`, `-inf`, else `%.17g`.
pub fn write_d2string(out: &mut Vec<u8>, d: f64) {
    if d == 0.0 || d.is_infinite() || d.is_nan() {
        return write_g17(out, d);
    }
    match double2ll(d) {
        Some(ll) => write_i64(out, ll),
        None => write_g17(out, d),
    }
}

/// Redis's `stringmatchlen`: glob matching for `KEYS` and `CONFIG GET`
/// (`*`, `?`, `[a-z]`, `[^…]`, `\` escapes), ported with its quirks so a
/// pattern selects the same keys as in Redis.
pub fn glob_match(pattern: &[u8], string: &[u8], nocase: bool) -> bool {
    let mut skip_longer = false;
    glob_impl(pattern, string, nocase, &mut skip_longer, 0)
}

fn fold(b: u8, nocase: bool) -> u8 {
    if nocase {
        b.to_ascii_lowercase()
    } else {
        b
    }
}

fn glob_impl(mut p: &[u8], mut s: &[u8], nocase: bool, skip: &mut bool, depth: u32) -> bool {
    // Redis's guard against abusive patterns.
    if depth > 1000 {
        return false;
    }
    while !p.is_empty() && !s.is_empty() {
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if glob_impl(&p[1..], s, nocase, skip, depth + 1) {
                        return true;
                    }
                    if *skip {
                        return false;
                    }
                    s = &s[1..];
                }
                *skip = true;
                return false;
            }
            b'?' => p = &p[1..],
            b'[' => {
                let (matched, rest) = glob_class(&p[1..], s[0], nocase);
                if !matched {
                    return false;
                }
                p = rest;
            }
            _ => {
                if p[0] == b'\\' && p.len() >= 2 {
                    p = &p[1..];
                }
                if fold(p[0], nocase) != fold(s[0], nocase) {
                    return false;
                }
                p = &p[1..];
            }
        }
        s = &s[1..];
        if s.is_empty() {
            while p.first() == Some(&b'*') {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}

/// Matches one byte against a `[…]` class whose body starts at `p`.
/// Returns whether it matched and the pattern after the class's closing
/// `]` (an unterminated class swallows the rest of the pattern, as in Redis).
fn glob_class(mut p: &[u8], c: u8, nocase: bool) -> (bool, &[u8]) {
    let not = p.first() == Some(&b'^');
    if not {
        p = &p[1..];
    }
    let mut matched = false;
    loop {
        if p.len() >= 2 && p[0] == b'\\' {
            p = &p[1..];
            if p[0] == c {
                matched = true;
            }
        } else if p.first() == Some(&b']') {
            return (matched != not, &p[1..]);
        } else if p.is_empty() {
            return (matched != not, p);
        } else if p.len() >= 3 && p[1] == b'-' {
            // C compares (signed) chars; bytes >= 0x80 order below ASCII.
            let (mut lo, mut hi) = (p[0] as i8, p[2] as i8);
            if lo > hi {
                std::mem::swap(&mut lo, &mut hi);
            }
            let (lo, hi, ch) = if nocase {
                (fold(lo as u8, true) as i8, fold(hi as u8, true) as i8, fold(c, true) as i8)
            } else {
                (lo, hi, c as i8)
            };
            p = &p[2..];
            if ch >= lo && ch <= hi {
                matched = true;
            }
        } else if fold(p[0], nocase) == fold(c, nocase) {
            matched = true;
        }
        p = &p[1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string2ll_grammar() {
        for ok in ["0", "1", "-1", "42", "9223372036854775807", "-9223372036854775808"] {
            assert_eq!(parse_i64(ok.as_bytes()), Some(ok.parse().unwrap()), "{ok}");
        }
        for bad in ["", "-", "-0", "01", "+1", " 1", "1 ", "1a", "9223372036854775808", "1.0"] {
            assert_eq!(parse_i64(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(parse_i64(b"-9223372036854775809"), None);
        assert_eq!(parse_i64(b"000000000000000000001"), None);
    }

    #[test]
    fn formats_extremes() {
        let mut out = Vec::new();
        write_i64(&mut out, i64::MIN);
        out.push(b' ');
        write_i64(&mut out, 0);
        out.push(b' ');
        write_u64(&mut out, u64::MAX);
        assert_eq!(out, b"-9223372036854775808 0 18446744073709551615");
    }

    #[test]
    fn strtod_reads_as_glibc() {
        // (input, value bits, bytes used, ERANGE): glibc 2.36's answers.
        for (input, bits, used, range) in [
            ("", 0u64, 0, false),
            ("-0", 0x8000_0000_0000_0000, 2, false),
            (".5", 0x3fe0_0000_0000_0000, 2, false),
            ("5.", 0x4014_0000_0000_0000, 2, false),
            (".", 0, 0, false),
            ("\t-2.5", 0xc004_0000_0000_0000, 5, false),
            ("1e+", 0x3ff0_0000_0000_0000, 1, false),
            ("+INF", 0x7ff0_0000_0000_0000, 4, false),
            ("Infinityx", 0x7ff0_0000_0000_0000, 8, false),
            ("infinit", 0x7ff0_0000_0000_0000, 3, false),
            ("0x", 0, 1, false),
            ("0x1.8p1", 0x4008_0000_0000_0000, 7, false),
            ("0x1p-1075", 0, 9, true),
            ("0x1.8p-1075", 1, 11, false),
            ("0x1.fffffffffffff8p1023", 0x7ff0_0000_0000_0000, 23, true),
            ("0x1.00000000000008p0", 0x3ff0_0000_0000_0000, 20, false),
            ("0x1.00000000000018p0", 0x3ff0_0000_0000_0002, 20, false),
            ("0x1.000000000000080000001p0", 0x3ff0_0000_0000_0001, 27, false),
            ("0x123456789abcdef123456789p-50", 0x4292_3456_789a_bcdf, 30, false),
            ("0x0.fffffffffffffp-1022", 0x000f_ffff_ffff_ffff, 23, false),
            ("1e400", 0x7ff0_0000_0000_0000, 5, true),
            ("1e-400", 0, 6, true),
            ("0e-5000", 0, 7, false),
            ("4e-320", 0x1fa0, 6, false),
            ("2.4703282292062328e-324", 1, 23, false),
            ("1e23", 0x44b5_2d02_c7e1_4af6, 4, false),
            ("1.2.3", 0x3ff3_3333_3333_3333, 3, false),
            ("+-1", 0, 0, false),
            ("7\x00junk", 0x401c_0000_0000_0000, 1, false),
        ] {
            let r = strtod(input.as_bytes());
            assert_eq!((r.value.to_bits(), r.used, r.range_error), (bits, used, range), "{input:?}");
        }
        assert!(strtod(b"nan(12)").value.is_nan() && strtod(b"nan(12)").used == 7);
    }

    #[test]
    fn string2d_refuses_what_redis_refuses() {
        for (ok, v) in [("1.5", 1.5), ("-inf", f64::NEG_INFINITY), ("0x10", 16.0), ("+3", 3.0), ("1e-310", 1e-310)] {
            assert_eq!(parse_f64(ok.as_bytes()), Some(v), "{ok}");
        }
        for bad in ["", " 1", "1 ", "nan", "1e400", "1e-400", "abc", "1\x00", "--1"] {
            assert_eq!(parse_f64(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn doubles_print_as_printf_g17() {
        let g17 = |d: f64| {
            let mut out = Vec::new();
            write_g17(&mut out, d);
            String::from_utf8(out).unwrap()
        };
        for (d, want) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.5, "1.5"),
            (-1.0, "-1"),
            (0.1, "0.10000000000000001"),
            (1e-5, "1.0000000000000001e-05"),
            (1e-4, "0.0001"),
            (0.00012345, "0.00012344999999999999"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (1e20, "1e+20"),
            (1152921504606846976.0, "1.152921504606847e+18"),
            // 2^50 + 0.25: a tie at 17 digits, rounded to even.
            (f64::from_bits(0x4310_0000_0000_0001), "1125899906842624.2"),
            (123456789.125, "123456789.125"),
            (5e-324, "4.9406564584124654e-324"),
            (4e-320, "3.999955468730732e-320"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
        ] {
            assert_eq!(g17(d), want, "{d:e}");
        }
        let d2s = |d: f64| {
            let mut out = Vec::new();
            write_d2string(&mut out, d);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(d2s(1152921504606846976.0), "1152921504606846976");
        assert_eq!(d2s(1e20), "1e+20");
        assert_eq!(d2s(-0.0), "-0");
        assert_eq!(d2s(2.5), "2.5");
        assert_eq!(d2s(-7.0), "-7");
        assert_eq!(d2s(f64::NEG_INFINITY), "-inf");
    }

    #[test]
    fn glob_like_redis() {
        let m = |p: &str, s: &str| glob_match(p.as_bytes(), s.as_bytes(), false);
        assert!(m("*", "anything"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("h*llo", "heeeello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("h[b-a]llo", "hbllo"));
        assert!(m("h\\*llo", "h*llo"));
        assert!(!m("h\\*llo", "hello"));
        assert!(m("a*", "a"));
        assert!(m("a**", "a"));
        assert!(!m("a*b", "a"));
        assert!(m("[abc", "c"));
        assert!(!m("", "a"));
        assert!(m("", ""));
        assert!(glob_match(b"SAVE", b"save", true));
    }
}
