//! Unsigned big integers: just the exact arithmetic the long-double
//! emulation ([`crate::f80`]) needs to round decimal strings and sums
//! correctly and to print values digit for digit. Numbers stay below about
//! 2^50000 (the operands of an 80-bit float and the powers of ten of a
//! 5 KiB decimal string), so schoolbook algorithms are fast enough.

use std::cmp::Ordering;

/// A non-negative integer, 64-bit limbs least significant first, with no
/// zero limb at the top (zero is the empty vector).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Big(Vec<u64>);

/// 10^19, the largest power of ten in a `u64`.
const TEN_19: u64 = 10_000_000_000_000_000_000;

impl Big {
    pub fn from_u64(v: u64) -> Big {
        let mut b = Big(vec![v]);
        b.trim();
        b
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of significant bits (0 for zero).
    pub fn bits(&self) -> u64 {
        match self.0.last() {
            None => 0,
            Some(&top) => 64 * (self.0.len() as u64 - 1) + u64::from(64 - top.leading_zeros()),
        }
    }

    /// `self = self * m + a`.
    pub fn mul_add_small(&mut self, m: u64, a: u64) {
        let mut carry = u128::from(a);
        for limb in &mut self.0 {
            let t = u128::from(*limb) * u128::from(m) + carry;
            *limb = t as u64;
            carry = t >> 64;
        }
        if carry != 0 {
            self.0.push(carry as u64);
        }
        self.trim();
    }

    /// `self *= 10^e`.
    pub fn mul_pow10(&mut self, mut e: u64) {
        while e >= 19 {
            self.mul_add_small(TEN_19, 0);
            e -= 19;
        }
        if e > 0 {
            self.mul_add_small(10u64.pow(e as u32), 0);
        }
    }

    /// `self << bits`.
    pub fn shl(&self, bits: u64) -> Big {
        if self.is_zero() {
            return Big::default();
        }
        let (words, rem) = ((bits / 64) as usize, (bits % 64) as u32);
        let mut out = vec![0u64; words];
        out.reserve(self.0.len() + 1);
        if rem == 0 {
            out.extend_from_slice(&self.0);
        } else {
            let mut carry = 0u64;
            for &limb in &self.0 {
                out.push((limb << rem) | carry);
                carry = limb >> (64 - rem);
            }
            out.push(carry);
        }
        let mut b = Big(out);
        b.trim();
        b
    }

    /// `self >>= 1`.
    fn shr1(&mut self) {
        let mut carry = 0u64;
        for limb in self.0.iter_mut().rev() {
            let next = *limb << 63;
            *limb = (*limb >> 1) | carry;
            carry = next;
        }
        self.trim();
    }

    /// `self + other`.
    pub fn add(&self, other: &Big) -> Big {
        let (long, short) = if self.0.len() >= other.0.len() { (self, other) } else { (other, self) };
        let mut out = Vec::with_capacity(long.0.len() + 1);
        let mut carry = false;
        for (i, &a) in long.0.iter().enumerate() {
            let (s, c1) = a.overflowing_add(short.0.get(i).copied().unwrap_or(0));
            let (s, c2) = s.overflowing_add(u64::from(carry));
            out.push(s);
            carry = c1 || c2;
        }
        if carry {
            out.push(1);
        }
        Big(out)
    }

    /// `self -= other`; `other` must not exceed `self`.
    pub fn sub_assign(&mut self, other: &Big) {
        debug_assert!(Ord::cmp(&*self, other) != Ordering::Less, "big subtraction would go negative");
        let mut borrow = false;
        for (i, limb) in self.0.iter_mut().enumerate() {
            let b = other.0.get(i).copied().unwrap_or(0);
            if i >= other.0.len() && !borrow {
                break;
            }
            let (d, b1) = limb.overflowing_sub(b);
            let (d, b2) = d.overflowing_sub(u64::from(borrow));
            *limb = d;
            borrow = b1 || b2;
        }
        self.trim();
    }

    /// Divides in place by `d` (non-zero) and returns the remainder.
    pub fn div_rem_small(&mut self, d: u64) -> u64 {
        let mut rem = 0u128;
        for limb in self.0.iter_mut().rev() {
            let cur = (rem << 64) | u128::from(*limb);
            *limb = (cur / u128::from(d)) as u64;
            rem = cur % u128::from(d);
        }
        self.trim();
        rem as u64
    }

    /// `floor(self / d)`, which the caller guarantees is below 2^64, and how
    /// twice the remainder compares with `d` (what round-to-nearest needs;
    /// `None` when the remainder is zero: the division is exact).
    pub fn div_u64_quotient(mut self, d: &Big) -> (u64, Option<Ordering>) {
        debug_assert!(!d.is_zero());
        debug_assert!(self.cmp(&d.shl(64)) == Ordering::Less, "quotient must fit 64 bits");
        let mut q = 0u64;
        let mut shifted = d.shl(63);
        for bit in (0..64).rev() {
            if self.cmp(&shifted) != Ordering::Less {
                self.sub_assign(&shifted);
                q |= 1 << bit;
            }
            shifted.shr1();
        }
        let half = (!self.is_zero()).then(|| self.shl(1).cmp(d));
        (q, half)
    }

    /// Decimal digits, most significant first ("0" for zero).
    pub fn to_decimal(&self) -> Vec<u8> {
        let mut n = self.clone();
        let mut chunks = Vec::new();
        while !n.is_zero() {
            chunks.push(n.div_rem_small(TEN_19));
        }
        let mut out = Vec::with_capacity(chunks.len() * 19 + 1);
        match chunks.pop() {
            None => out.push(b'0'),
            Some(top) => out.extend_from_slice(top.to_string().as_bytes()),
        }
        for c in chunks.iter().rev() {
            out.extend_from_slice(format!("{c:019}").as_bytes());
        }
        out
    }
}

impl PartialOrd for Big {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Big {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.len().cmp(&other.0.len()).then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(s: &str) -> Big {
        let mut b = Big::default();
        for d in s.bytes() {
            b.mul_add_small(10, u64::from(d - b'0'));
        }
        b
    }

    #[test]
    fn arithmetic_round_trips_through_decimal() {
        let a = big("123456789012345678901234567890123456789");
        assert_eq!(a.to_decimal(), b"123456789012345678901234567890123456789");
        assert_eq!(Big::default().to_decimal(), b"0");
        let mut p = Big::from_u64(1);
        p.mul_pow10(40);
        assert_eq!(p.to_decimal(), format!("1{}", "0".repeat(40)).as_bytes());
        let sum = a.add(&p);
        assert_eq!(sum.to_decimal(), b"10123456789012345678901234567890123456789");
        let mut back = sum.clone();
        back.sub_assign(&p);
        assert_eq!(back, a);
        assert_eq!(Big::from_u64(1).shl(200).bits(), 201);
        assert_eq!(Big::from_u64(u64::MAX).add(&Big::from_u64(1)).to_decimal(), b"18446744073709551616");
    }

    #[test]
    fn quotient_and_half_comparison() {
        let (q, half) = Big::from_u64(7).div_u64_quotient(&Big::from_u64(2));
        assert_eq!((q, half), (3, Some(Ordering::Equal)));
        let (q, half) = big("1000000000000000000000001").div_u64_quotient(&big("100000000"));
        assert_eq!((q, half), (10_000_000_000_000_000, Some(Ordering::Less)));
        let (q, half) = big("1000000000000000000000000").div_u64_quotient(&big("100000000"));
        assert_eq!((q, half), (10_000_000_000_000_000, None));
        let (q, half) = Big::from_u64(u64::MAX).shl(10).add(&Big::from_u64(1000)).div_u64_quotient(&Big::from_u64(1024));
        assert_eq!((q, half), (u64::MAX, Some(Ordering::Greater)));
    }
}
