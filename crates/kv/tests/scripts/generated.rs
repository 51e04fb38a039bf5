//! Generated command sequences for the differential test: INCRBYFLOAT
//! chains, bit ranges and BITFIELD operations drawn at random (with a
//! fixed seed, so failures reproduce) and compared byte for byte.

use crate::differential::{report, run_script, Redis, Rng};

impl Rng {
    fn digits(&mut self, n: usize) -> String {
        (0..n).map(|_| char::from(b'0' + self.below(10) as u8)).collect()
    }

    /// A float argument in one of the forms `strtold` reads: plain
    /// decimals of every length, exponents small and huge, hexadecimal,
    /// exact binary fractions (ties for `%.17Lf`), and some that are not
    /// numbers or overflow.
    fn float_text(&mut self) -> String {
        let sign = ["", "", "-", "+"][self.below(4)];
        let body = match self.below(10) {
            0..=3 => {
                let int = self.below(8);
                let frac = self.below(22);
                let (i, f) = (self.digits(int), self.digits(frac));
                match (i.is_empty(), f.is_empty()) {
                    (true, true) => "0".to_string(),
                    (_, true) => i,
                    _ => format!("{i}.{f}"),
                }
            }
            4 | 5 => {
                let len = 1 + self.below(25);
                let m = self.digits(len);
                let (small, huge) = (self.below(40) as i64 - 20, self.below(9000) as i64 - 4950);
                let e = if self.below(2) == 0 { small } else { huge };
                format!("{}.{}e{e}", &m[..1], &m[1..])
            }
            6 => format!("0x{:x}.{:x}p{}", self.below(1 << 20), self.below(1 << 12), self.below(200) as i64 - 100),
            7 => {
                // n / 2^k printed exactly: often a tie at the 17th digit.
                let (n, k) = (1 + self.below(1 << 20) as u64, 1 + self.below(45) as u32);
                let mut digits = (n as u128 * 5u128.pow(k)).to_string();
                while digits.len() <= k as usize {
                    digits.insert(0, '0');
                }
                let at = digits.len() - k as usize;
                format!("{}.{}", &digits[..at], &digits[at..])
            }
            8 => {
                let len = 1 + self.below(30);
                self.digits(len)
            }
            _ => ["inf", "nan", "1e", "abc", "1e99999", "1e-99999", "0x", "1.5.2", "", "9e4931"][self.below(10)].to_string(),
        };
        if body.is_empty() {
            "{}".to_string()
        } else {
            format!("{sign}{body}")
        }
    }
}

/// INCRBYFLOAT and HINCRBYFLOAT chains with random increments of every
/// form, compared byte for byte: the emulated 80-bit arithmetic and
/// printing must give Redis's digits at every step.
#[test]
fn float_chains_match_redis() {
    let redis = Redis::start();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut failures = Vec::new();
    for round in 0..20 {
        let mut lines = Vec::new();
        for _ in 0..200 {
            let incr = rng.float_text();
            lines.push(match rng.below(6) {
                0 => format!("HINCRBYFLOAT h f{} {incr}", rng.below(3)),
                1 => format!("SET f{} {incr}", rng.below(3)),
                _ => format!("INCRBYFLOAT f{} {incr}", rng.below(3)),
            });
        }
        lines.extend(["GET f0", "GET f1", "GET f2", "HGETALL h"].map(String::from));
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        failures.extend(run_script(&redis, &format!("floats {round}"), &refs));
    }
    report(failures);
}

/// BITCOUNT and BITPOS over random strings (runs of zero and one bytes
/// among others) with random ranges in bytes and bits, negative and out
/// of range included: every edge-byte case of Redis's range handling.
#[test]
fn bit_ranges_match_redis() {
    let redis = Redis::start();
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut failures = Vec::new();
    for round in 0..30 {
        let len = rng.below(7);
        let bytes: String = (0..len).map(|_| ["\\x00", "\\xff", "\\x0f", "\\x80", "\\x01", "a"][rng.below(6)]).collect();
        let mut lines = vec![if len == 0 { "SET b {}".to_string() } else { format!("SET b {bytes}") }];
        for _ in 0..80 {
            let mut range = String::new();
            for _ in 0..rng.below(4) {
                range.push_str(&format!(" {}", rng.below(41) as i64 - 20));
            }
            if rng.below(2) == 0 {
                range.push_str([" BIT", " BYTE", " bit"][rng.below(3)]);
            }
            lines.push(match rng.below(3) {
                0 => format!("BITCOUNT b{range}"),
                n => format!("BITPOS b {}{range}", n - 1),
            });
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        failures.extend(run_script(&redis, &format!("bit ranges {round}"), &refs));
    }
    report(failures);
}

/// BITFIELD with random operations: widths at and between the edges,
/// plain and `#` offsets, values around each width's limits, every
/// overflow policy, and reads past the end of the string.
#[test]
fn bitfield_ops_match_redis() {
    let redis = Redis::start();
    let mut rng = Rng(0x5eed_b17f_1e1d_0001);
    let mut failures = Vec::new();
    for round in 0..20 {
        let mut lines = vec!["DEL b".to_string()];
        for _ in 0..60 {
            let mut cmd = String::from(if rng.below(8) == 0 { "BITFIELD_RO b" } else { "BITFIELD b" });
            for _ in 0..1 + rng.below(3) {
                if rng.below(3) == 0 {
                    cmd.push_str([" OVERFLOW WRAP", " OVERFLOW SAT", " OVERFLOW FAIL"][rng.below(3)]);
                }
                let signed = rng.below(2) == 0;
                let max_bits = if signed { 64 } else { 63 };
                let bits = [1, 2, 7, 8, 9, 15, 16, 31, 32, 33, 62, 63, 64][rng.below(13)].min(max_bits);
                let ty = format!("{}{bits}", if signed { 'i' } else { 'u' });
                let offset = if rng.below(4) == 0 { format!("#{}", rng.below(5)) } else { rng.below(40).to_string() };
                let edge = 1i128 << (bits - 1);
                let value: i128 = match rng.below(7) {
                    0 => 0,
                    1 => -1,
                    2 => edge - 1,
                    3 => -edge,
                    4 => 2 * edge - 1,
                    5 => rng.below(1000) as i128 - 500,
                    _ => [i64::MAX as i128, i64::MIN as i128][rng.below(2)],
                };
                let value = value.clamp(i64::MIN as i128, i64::MAX as i128);
                cmd.push_str(&match rng.below(3) {
                    0 => format!(" GET {ty} {offset}"),
                    1 => format!(" SET {ty} {offset} {value}"),
                    _ => format!(" INCRBY {ty} {offset} {value}"),
                });
            }
            lines.push(cmd);
        }
        lines.push("GET b".to_string());
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        failures.extend(run_script(&redis, &format!("bitfield ops {round}"), &refs));
    }
    report(failures);
}
