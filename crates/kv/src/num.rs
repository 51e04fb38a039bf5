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
