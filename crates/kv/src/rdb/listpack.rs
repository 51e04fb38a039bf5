//! Listpacks, Redis 7.0's compact sequence (`src/listpack.c`), as small
//! hashes, small sorted sets and list nodes are serialized.
//!
//! Layout: total bytes (u32 LE), element count (u16 LE, `65535` once it
//! is not known), the entries, and `0xFF`. An entry is its encoding and
//! data followed by their length written backwards (1 to 5 bytes of 7
//! bits). A string that `lpStringToInt64` reads as an integer is stored
//! as one, in the smallest of the 7-bit, 13-bit, 16-, 24-, 32- or 64-bit
//! forms; other strings have a 6-bit, 12-bit or 32-bit length.

use crate::num::parse_i64;

const HDR_SIZE: usize = 6;
const EOF: u8 = 0xFF;
/// The element count of a listpack with this many elements or more.
const NUMELE_UNKNOWN: usize = u16::MAX as usize;

/// A listpack being built by appends (`lpAppend`).
pub struct Listpack {
    /// Header and entries, without the end byte.
    buf: Vec<u8>,
    count: usize,
}

impl Default for Listpack {
    fn default() -> Self {
        Listpack::new()
    }
}

impl Listpack {
    pub fn new() -> Listpack {
        Listpack { buf: vec![0; HDR_SIZE], count: 0 }
    }

    /// `lpBytes`: the size of the finished listpack.
    pub fn bytes(&self) -> usize {
        self.buf.len() + 1
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Appends a string, stored as an integer if it reads as one
    /// (`lpEncodeGetType`).
    pub fn push(&mut self, s: &[u8]) {
        // lpStringToInt64 is Redis's string2ll grammar: no sign but '-',
        // no leading zero, at most 20 bytes, within i64.
        if let Some(v) = parse_i64(s) {
            return self.push_int(v);
        }
        let start = self.buf.len();
        let len = s.len();
        if len < 64 {
            self.buf.push(0x80 | len as u8);
        } else if len < 4096 {
            self.buf.push(0xE0 | (len >> 8) as u8);
            self.buf.push(len as u8);
        } else {
            self.buf.push(0xF0);
            self.buf.extend_from_slice(&(len as u32).to_le_bytes());
        }
        self.buf.extend_from_slice(s);
        self.end_entry(start);
    }

    /// Appends an integer (`lpEncodeIntegerGetType`).
    pub fn push_int(&mut self, v: i64) {
        let start = self.buf.len();
        let b = &mut self.buf;
        if (0..=127).contains(&v) {
            b.push(v as u8);
        } else if (-4096..=4095).contains(&v) {
            let u = if v < 0 { (1 << 13) + v } else { v } as u16;
            b.push(0xC0 | (u >> 8) as u8);
            b.push(u as u8);
        } else if (-32768..=32767).contains(&v) {
            b.push(0xF1);
            b.extend_from_slice(&(v as i16).to_le_bytes());
        } else if (-8_388_608..=8_388_607).contains(&v) {
            b.push(0xF2);
            b.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
        } else if i32::try_from(v).is_ok() {
            b.push(0xF3);
            b.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            b.push(0xF4);
            b.extend_from_slice(&v.to_le_bytes());
        }
        self.end_entry(start);
    }

    fn end_entry(&mut self, start: usize) {
        let size = (self.buf.len() - start) as u64;
        encode_backlen(&mut self.buf, size);
        self.count += 1;
    }

    /// The listpack's bytes, header filled in and end byte appended.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(EOF);
        let total = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&total.to_le_bytes());
        let count = self.count.min(NUMELE_UNKNOWN) as u16;
        self.buf[4..6].copy_from_slice(&count.to_le_bytes());
        self.buf
    }
}

/// `lpEncodeBacklen`: `l` in 7-bit groups, most significant first, every
/// byte but the first with its high bit set (read from the end backwards).
/// Redis's thresholds are kept, `l < 16383` for two bytes included.
fn encode_backlen(out: &mut Vec<u8>, l: u64) {
    let n = if l <= 127 {
        1
    } else if l < 16383 {
        2
    } else if l < 2_097_151 {
        3
    } else if l < 268_435_455 {
        4
    } else {
        5
    };
    for k in (0..n).rev() {
        let group = ((l >> (7 * k)) & 127) as u8;
        out.push(if k == n - 1 { (l >> (7 * k)) as u8 } else { group | 128 });
    }
}

/// The length `lpDecodeBacklen` reads from the backlen ending at `end`
/// (exclusive), and how many bytes it took.
fn decode_backlen(lp: &[u8], end: usize) -> Option<(u64, usize)> {
    let mut val = 0u64;
    let mut shift = 0;
    let mut p = end;
    loop {
        p = p.checked_sub(1)?;
        val |= u64::from(lp[p] & 127) << shift;
        if lp[p] & 128 == 0 {
            return Some((val, end - p));
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// One element of a listpack.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Elem<'a> {
    Str(&'a [u8]),
    Int(i64),
}

impl Elem<'_> {
    /// The element as Redis hands it out: an integer in decimal.
    pub fn to_bytes(self) -> Vec<u8> {
        match self {
            Elem::Str(s) => s.to_vec(),
            Elem::Int(v) => v.to_string().into_bytes(),
        }
    }
}

fn int_le(data: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b[..data.len()].copy_from_slice(data);
    let v = i64::from_le_bytes(b);
    let bits = 8 * data.len() as u32;
    // Sign-extend from the field's width.
    (v << (64 - bits)) >> (64 - bits)
}

/// The entry at `p`: its element and the size of encoding plus data.
fn entry(lp: &[u8], p: usize) -> Option<(Elem<'_>, usize)> {
    let b = *lp.get(p)?;
    let need = |n: usize| lp.get(p..p + n);
    Some(match b {
        0x00..=0x7F => (Elem::Int(i64::from(b)), 1),
        0x80..=0xBF => {
            let len = usize::from(b & 0x3F);
            (Elem::Str(need(1 + len)?.get(1..)?), 1 + len)
        }
        0xC0..=0xDF => {
            let u = (u16::from(b & 0x1F) << 8) | u16::from(*lp.get(p + 1)?);
            let v = if u >= 1 << 12 { i64::from(u) - (1 << 13) } else { i64::from(u) };
            (Elem::Int(v), 2)
        }
        0xE0..=0xEF => {
            let len = (usize::from(b & 0x0F) << 8) | usize::from(*lp.get(p + 1)?);
            (Elem::Str(need(2 + len)?.get(2..)?), 2 + len)
        }
        0xF0 => {
            let len = u32::from_le_bytes(need(5)?[1..5].try_into().ok()?) as usize;
            let end = 5usize.checked_add(len)?;
            (Elem::Str(need(end)?.get(5..)?), end)
        }
        0xF1 => (Elem::Int(int_le(&need(3)?[1..])), 3),
        0xF2 => (Elem::Int(int_le(&need(4)?[1..])), 4),
        0xF3 => (Elem::Int(int_le(&need(5)?[1..])), 5),
        0xF4 => (Elem::Int(int_le(&need(9)?[1..])), 9),
        _ => return None,
    })
}

/// The elements of a listpack, or `None` if it is not a well-formed one:
/// header size and end byte (what Redis checks when it accepts a RESTORE
/// payload) and every entry and backlen (what its deep sanitization adds).
pub fn decode(lp: &[u8]) -> Option<Vec<Elem<'_>>> {
    if lp.len() < HDR_SIZE + 1 || lp.len() > u32::MAX as usize {
        return None;
    }
    let total = u32::from_le_bytes(lp[..4].try_into().ok()?) as usize;
    let count = usize::from(u16::from_le_bytes(lp[4..6].try_into().ok()?));
    if total != lp.len() || lp[lp.len() - 1] != EOF {
        return None;
    }
    let last = lp.len() - 1;
    let mut p = HDR_SIZE;
    let mut elems = Vec::with_capacity(count.min(lp.len()));
    while p < last {
        let (elem, size) = entry(&lp[..last], p)?;
        let mut backlen = Vec::with_capacity(5);
        encode_backlen(&mut backlen, size as u64);
        let end = p + size + backlen.len();
        if end > last || decode_backlen(lp, end)? != (size as u64, backlen.len()) {
            return None;
        }
        elems.push(elem);
        p = end;
    }
    if count != NUMELE_UNKNOWN && count != elems.len() {
        return None;
    }
    Some(elems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(items: &[&[u8]]) -> Vec<u8> {
        let mut lp = Listpack::new();
        items.iter().for_each(|i| lp.push(i));
        lp.finish()
    }

    #[test]
    fn matches_redis_bytes() {
        // RPUSH l a b 1 2 300 in Redis 7.0: the node's listpack.
        let lp = build(&[b"a", b"b", b"1", b"2", b"300"]);
        assert_eq!(lp, b"\x14\x00\x00\x00\x05\x00\x81a\x02\x81b\x02\x01\x01\x02\x01\xc1\x2c\x02\xff");
    }

    #[test]
    fn round_trips_every_encoding() {
        let long12 = vec![b'x'; 100];
        let long32 = vec![b'y'; 5000];
        let mut items: Vec<Vec<u8>> = vec![b"".to_vec(), b"-0".to_vec(), b"007".to_vec(), long12, long32];
        for v in [
            0i64,
            127,
            128,
            -1,
            -4096,
            4095,
            4096,
            -4097,
            32767,
            -32768,
            32768,
            8_388_607,
            -8_388_608,
            8_388_608,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
            1 << 31,
            i64::MAX,
            i64::MIN,
        ] {
            items.push(v.to_string().into_bytes());
        }
        items.push(b"12345678901234567890".to_vec());
        let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
        let lp = build(&refs);
        let back: Vec<Vec<u8>> = decode(&lp).expect("valid").into_iter().map(Elem::to_bytes).collect();
        assert_eq!(back, items);
    }

    #[test]
    fn backlen_thresholds_round_trip() {
        for l in [0u64, 127, 128, 16382, 16383, 16384, 2_097_150, 2_097_151, 268_435_454, 268_435_455, 1 << 31] {
            let mut b = Vec::new();
            encode_backlen(&mut b, l);
            assert_eq!(decode_backlen(&b, b.len()), Some((l, b.len())), "{l}");
        }
    }

    #[test]
    fn malformed_listpacks_are_refused() {
        let good = build(&[b"a", b"bc", b"7"]);
        assert!(decode(&good).is_some());
        let mut bad_total = good.clone();
        bad_total[0] += 1;
        let mut bad_count = good.clone();
        bad_count[4] = 2;
        let mut bad_backlen = good.clone();
        bad_backlen[8] = 9;
        let mut bad_encoding = good.clone();
        bad_encoding[6] = 0xF7;
        let mut no_eof = good.clone();
        *no_eof.last_mut().expect("bytes") = 0;
        for bad in [bad_total, bad_count, bad_backlen, bad_encoding, no_eof, vec![7, 0, 0, 0, 0, 0, 0xff, 0]] {
            assert!(decode(&bad).is_none(), "{bad:?}");
        }
        assert_eq!(decode(&build(&[])), Some(vec![]));
    }
}
