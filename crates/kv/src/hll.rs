//! HyperLogLog in Redis 7.0's string encoding, ported from Redis's
//! `src/hyperloglog.c` so that PFADD leaves the same bytes in the key and
//! PFCOUNT answers the same estimate.
//!
//! An HLL is a plain string: a 16-byte header (`HYLL`, the encoding byte,
//! three zero bytes, the cached cardinality as a little-endian u64 whose
//! top bit marks it stale) and then 16384 six-bit registers, either
//! *dense* (packed, 12288 bytes) or *sparse* (run-length opcodes: ZERO
//! `00xxxxxx` for up to 64 zero registers, XZERO `01xxxxxx xxxxxxxx` for up
//! to 16384, VAL `1vvvvvxx` for up to 4 registers holding 1..=32). A new
//! HLL is sparse and turns dense once a register exceeds 32 or the sparse
//! form would pass `hll-sparse-max-bytes` (3000).
//!
//! Byte-for-byte agreement matters: GET returns the raw string, so every
//! split and merge of sparse opcodes, and every quirk with corrupt input
//! that Redis tolerates, is reproduced rather than normalised.

/// Header bytes: magic, encoding, 3 unused, 8 of cached cardinality.
pub const HDR: usize = 16;
const P: u32 = 14;
const Q: u32 = 64 - P;
pub const REGISTERS: usize = 1 << P;
const P_MASK: u64 = REGISTERS as u64 - 1;
const BITS: usize = 6;
const REGISTER_MAX: u8 = (1 << BITS) - 1;
/// Length of a dense HLL string.
pub const DENSE_SIZE: usize = HDR + (REGISTERS * BITS).div_ceil(8);
pub const DENSE: u8 = 0;
pub const SPARSE: u8 = 1;
/// Redis's `hll-sparse-max-bytes` default (not configurable here).
pub const SPARSE_MAX_BYTES: usize = 3000;

const VAL_MAX_VALUE: u8 = 32;
const VAL_MAX_LEN: usize = 4;
const ZERO_MAX_LEN: usize = 64;
const XZERO_MAX_LEN: usize = 16384;
/// 0.5 / ln(2), the estimator's constant for m → ∞.
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;

/// The HLL is corrupt (Redis's `-INVALIDOBJ` reply).
#[derive(Debug, PartialEq, Eq)]
pub struct Corrupt;

/// MurmurHash64A as Redis uses it: words read little-endian whatever
/// the host, so the registers an element hits are the same everywhere.
pub fn murmur64a(key: &[u8], seed: u32) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = u64::from(seed) ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in &mut chunks {
        let mut k = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= u64::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element falls in and the length of its `0…01` pattern
/// (Redis's `hllPatLen`): 1 to Q + 1.
pub fn pat_len(ele: &[u8]) -> (usize, u8) {
    let hash = murmur64a(ele, 0xadc8_3b19);
    let index = (hash & P_MASK) as usize;
    let rest = (hash >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// Whether a string value passes Redis's `isHLLObjectOrReply` checks
/// (magic, known encoding, exact dense length). The registers are only
/// checked when they are read.
pub fn looks_valid(v: &[u8]) -> bool {
    v.len() >= HDR && &v[..4] == b"HYLL" && v[4] <= SPARSE && (v[4] != DENSE || v.len() == DENSE_SIZE)
}

/// A new, empty HLL: sparse, all registers zero (one XZERO opcode), the
/// cached cardinality 0 and valid.
pub fn new_sparse() -> Vec<u8> {
    let mut v = Vec::with_capacity(HDR + 2);
    v.extend_from_slice(b"HYLL");
    v.push(SPARSE);
    v.resize(HDR, 0);
    let mut aux = REGISTERS;
    while aux > 0 {
        let len = aux.min(XZERO_MAX_LEN);
        push_xzero(&mut v, len);
        aux -= len;
    }
    v
}

/// The cached cardinality, if it is not marked stale.
pub fn cached(v: &[u8]) -> Option<u64> {
    let card = u64::from_le_bytes(v[8..HDR].try_into().expect("8 bytes"));
    (v[15] & 0x80 == 0).then_some(card)
}

pub fn set_cache(v: &mut [u8], card: u64) {
    v[8..HDR].copy_from_slice(&card.to_le_bytes());
}

pub fn invalidate(v: &mut [u8]) {
    v[15] |= 0x80;
}

// ---- dense registers ------------------------------------------------------

/// A byte of the register area, or 0 past its end (Redis reads the
/// string's terminating NUL there).
fn byte_at(r: &[u8], i: usize) -> u8 {
    r.get(i).copied().unwrap_or(0)
}

pub fn dense_get(r: &[u8], reg: usize) -> u8 {
    let byte = reg * BITS / 8;
    let fb = (reg * BITS) & 7;
    let b0 = u16::from(byte_at(r, byte));
    let b1 = u16::from(byte_at(r, byte + 1));
    (((b0 >> fb) | (b1 << (8 - fb))) & u16::from(REGISTER_MAX)) as u8
}

pub fn dense_set(r: &mut [u8], reg: usize, val: u8) {
    let byte = reg * BITS / 8;
    let fb = (reg * BITS) & 7;
    let v = u16::from(val);
    let max = u16::from(REGISTER_MAX);
    r[byte] = ((u16::from(r[byte]) & !(max << fb)) | (v << fb)) as u8;
    // The last register never reaches the next byte (its bits end at
    // byte 12287's top), so there is no byte to touch.
    if let Some(b) = r.get_mut(byte + 1) {
        *b = ((u16::from(*b) & !(max >> (8 - fb))) | (v >> (8 - fb))) as u8;
    }
}

/// Raises register `reg` to `count`; whether it changed.
fn dense_raise(r: &mut [u8], reg: usize, count: u8) -> bool {
    if count > dense_get(r, reg) {
        dense_set(r, reg, count);
        true
    } else {
        false
    }
}

// ---- sparse opcodes ---------------------------------------------------------

fn is_zero(op: u8) -> bool {
    op & 0xc0 == 0
}

fn is_xzero(op: u8) -> bool {
    op & 0xc0 == 0x40
}

fn is_val(op: u8) -> bool {
    op & 0x80 != 0
}

fn zero_len(op: u8) -> usize {
    usize::from(op & 0x3f) + 1
}

/// XZERO's run length; its second byte may be past the end of a corrupt
/// HLL, where Redis reads the terminating NUL.
fn xzero_len(v: &[u8], at: usize) -> usize {
    ((usize::from(v[at] & 0x3f) << 8) | usize::from(byte_at(v, at + 1))) + 1
}

fn val_value(op: u8) -> u8 {
    ((op >> 2) & 0x1f) + 1
}

fn val_len(op: u8) -> usize {
    usize::from(op & 0x3) + 1
}

fn val_op(val: u8, len: usize) -> u8 {
    0x80 | ((val - 1) << 2) | (len as u8 - 1)
}

fn push_xzero(out: &mut Vec<u8>, len: usize) {
    let l = len - 1;
    out.push(0x40 | (l >> 8) as u8);
    out.push((l & 0xff) as u8);
}

/// A run of `len` zero registers as ZERO or, if longer than it can say,
/// XZERO.
fn push_zeros(out: &mut Vec<u8>, len: usize) {
    if len > ZERO_MAX_LEN {
        push_xzero(out, len);
    } else {
        out.push((len - 1) as u8);
    }
}

/// Each run of registers in a sparse HLL's opcodes, as (first register of
/// the run, value, run length). With `stop_at_overflow`, stops where
/// Redis's conversion and merge loops stop: at a VAL run that would pass
/// the last register (its count histogram reads on). The final register
/// count tells whether the opcodes covered exactly all registers.
fn sparse_runs(v: &[u8], stop_at_overflow: bool, mut each: impl FnMut(usize, u8, usize)) -> usize {
    let mut idx = 0;
    let mut p = HDR;
    while p < v.len() {
        let op = v[p];
        if is_zero(op) {
            let len = zero_len(op);
            each(idx, 0, len);
            idx += len;
            p += 1;
        } else if is_xzero(op) {
            let len = xzero_len(v, p);
            each(idx, 0, len);
            idx += len;
            p += 2;
        } else {
            let len = val_len(op);
            if stop_at_overflow && idx + len > REGISTERS {
                break;
            }
            each(idx, val_value(op), len);
            idx += len;
            p += 1;
        }
    }
    idx
}

/// Redis's `hllSparseToDense`: the same header (cache included) with the
/// dense encoding, and the registers spelled out. A sparse HLL that does
/// not cover exactly all registers is corrupt (and left as it was).
pub fn sparse_to_dense(v: &mut Vec<u8>) -> Result<(), Corrupt> {
    if v[4] == DENSE {
        return Ok(());
    }
    let mut dense = vec![0u8; DENSE_SIZE];
    dense[..HDR].copy_from_slice(&v[..HDR]);
    dense[4] = DENSE;
    let regs = &mut dense[HDR..];
    let covered = sparse_runs(v, true, |first, val, len| {
        if val != 0 {
            (first..first + len).for_each(|i| dense_set(regs, i, val));
        }
    });
    if covered != REGISTERS {
        return Err(Corrupt);
    }
    *v = dense;
    Ok(())
}

/// Redis's `hllSparseSet`: raises register `index` to `count` in a sparse
/// HLL by splitting the opcode that covers it (and merging equal VALs
/// around it afterwards), or promotes the HLL to dense when `count` does
/// not fit a VAL or the result would pass [`SPARSE_MAX_BYTES`]. Whether
/// the register changed.
pub fn sparse_set(v: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, Corrupt> {
    if count > VAL_MAX_VALUE {
        return promote(v, index, count);
    }
    // Step 1: find the opcode covering `index`.
    let end = v.len();
    let mut p = HDR;
    let mut first = 0usize;
    let mut prev = None;
    let mut span = 0usize;
    while p < end {
        let op = v[p];
        let mut oplen = 1;
        span = if is_zero(op) {
            zero_len(op)
        } else if is_val(op) {
            val_len(op)
        } else {
            oplen = 2;
            xzero_len(v, p)
        };
        if index < first + span {
            break;
        }
        prev = Some(p);
        p += oplen;
        first += span;
    }
    if span == 0 || p >= end {
        return Err(Corrupt);
    }
    let op = v[p];
    let (zero, xzero) = (is_zero(op), is_xzero(op));
    let runlen = if zero {
        zero_len(op)
    } else if xzero {
        xzero_len(v, p)
    } else {
        val_len(op)
    };
    // Step 2: the cases that change one byte in place.
    let mut in_place = false;
    if !zero && !xzero {
        if val_value(op) >= count {
            return Ok(false);
        }
        if runlen == 1 {
            in_place = true;
        }
    }
    if zero && runlen == 1 {
        in_place = true;
    }
    let mut end = end;
    if in_place {
        v[p] = val_op(count, 1);
    } else {
        // The general case: the opcode becomes up to three (ZERO/XZERO or
        // VAL of the old value on either side of our new VAL).
        let last = first + span - 1;
        let mut seq = Vec::with_capacity(5);
        if zero || xzero {
            if index != first {
                push_zeros(&mut seq, index - first);
            }
            seq.push(val_op(count, 1));
            if index != last {
                push_zeros(&mut seq, last - index);
            }
        } else {
            let cur = val_value(op);
            if index != first {
                seq.push(val_op(cur, index - first));
            }
            seq.push(val_op(count, 1));
            if index != last {
                seq.push(val_op(cur, last - index));
            }
        }
        // Step 3: put the new opcodes in place of the old one.
        let oldlen = if xzero { 2 } else { 1 };
        let new_len = end as isize + seq.len() as isize - oldlen as isize;
        if new_len > end as isize && new_len as usize > SPARSE_MAX_BYTES {
            return promote(v, index, count);
        }
        // An XZERO cut short by the end of a corrupt string loses as many
        // bytes at the end as it lacked, as Redis's length arithmetic does.
        let tail_from = (p + oldlen).min(end);
        v.splice(p..tail_from, seq);
        v.truncate(new_len as usize);
        end = v.len();
    }
    // Step 4: merge adjacent VALs of equal value, scanning up to 5 opcodes
    // from the one before the change.
    let mut p = prev.unwrap_or(HDR);
    let mut scan = 5;
    while p < end && scan > 0 {
        scan -= 1;
        let op = v[p];
        if is_xzero(op) {
            p += 2;
            continue;
        }
        if is_zero(op) {
            p += 1;
            continue;
        }
        if p + 1 < end && is_val(v[p + 1]) && val_value(op) == val_value(v[p + 1]) {
            let len = val_len(op) + val_len(v[p + 1]);
            if len <= VAL_MAX_LEN {
                v[p + 1] = val_op(val_value(op), len);
                v.remove(p);
                end -= 1;
                continue;
            }
        }
        p += 1;
    }
    invalidate(v);
    Ok(true)
}

/// Turns the HLL dense and raises the register there.
fn promote(v: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, Corrupt> {
    sparse_to_dense(v)?;
    dense_raise(&mut v[HDR..], index, count);
    Ok(true)
}

/// Redis's `hllAdd`: adds an element to a checked HLL; whether a register
/// changed. The cache is left for the caller to invalidate.
pub fn add(v: &mut Vec<u8>, ele: &[u8]) -> Result<bool, Corrupt> {
    let (index, count) = pat_len(ele);
    match v[4] {
        DENSE => Ok(dense_raise(&mut v[HDR..], index, count)),
        SPARSE => sparse_set(v, index, count),
        _ => Err(Corrupt),
    }
}

/// Sets register `index` to `count` if higher, in either encoding (the
/// write of PFMERGE, whose sparse failures Redis ignores).
pub fn raise(v: &mut Vec<u8>, index: usize, count: u8) {
    if v[4] == DENSE {
        dense_raise(&mut v[HDR..], index, count);
    } else {
        let _ = sparse_set(v, index, count);
    }
}

/// Redis's `hllMerge`: `max[i] = max(max[i], register i)` over a checked HLL.
pub fn merge_into(max: &mut [u8; REGISTERS], v: &[u8]) -> Result<(), Corrupt> {
    if v[4] == DENSE {
        let r = &v[HDR..];
        for (i, m) in max.iter_mut().enumerate() {
            *m = (*m).max(dense_get(r, i));
        }
        return Ok(());
    }
    let covered = sparse_runs(v, true, |first, val, len| {
        if val != 0 {
            max[first..first + len].iter_mut().for_each(|m| *m = (*m).max(val));
        }
    });
    if covered == REGISTERS {
        Ok(())
    } else {
        Err(Corrupt)
    }
}

/// Redis's `hllCount` of a checked HLL: a sparse one that does not cover
/// exactly all registers is corrupt.
pub fn count(v: &[u8]) -> Result<u64, Corrupt> {
    let mut histo = [0u32; 64];
    if v[4] == DENSE {
        let r = &v[HDR..];
        (0..REGISTERS).for_each(|i| histo[usize::from(dense_get(r, i))] += 1);
    } else {
        let covered = sparse_runs(v, false, |_, val, len| histo[usize::from(val)] += len as u32);
        if covered != REGISTERS {
            return Err(Corrupt);
        }
    }
    Ok(estimate(&histo))
}

/// The estimate of registers given one per byte (PFCOUNT of several keys).
pub fn count_raw(max: &[u8; REGISTERS]) -> u64 {
    let mut histo = [0u32; 64];
    max.iter().for_each(|&r| histo[usize::from(r)] += 1);
    estimate(&histo)
}

/// Otmar Ertl's estimator ("New cardinality estimation algorithms for
/// HyperLogLog sketches", arXiv:1702.01284) over the register histogram,
/// in Redis's order of floating-point operations.
fn estimate(histo: &[u32; 64]) -> u64 {
    let m = REGISTERS as f64;
    let q = Q as usize;
    let mut z = m * tau((m - f64::from(histo[q + 1])) / m);
    for j in (1..=q).rev() {
        z += f64::from(histo[j]);
        z *= 0.5;
    }
    z += m * sigma(f64::from(histo[0]) / m);
    // llroundl: halves away from zero, as f64::round.
    (ALPHA_INF * m * m / z).round() as u64
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let prev = z;
        z += x * y;
        y += y;
        if prev == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let prev = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if prev == z {
            return z / 3.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registers(v: &[u8]) -> Vec<u8> {
        let mut d = v.to_vec();
        sparse_to_dense(&mut d).unwrap();
        (0..REGISTERS).map(|i| dense_get(&d[HDR..], i)).collect()
    }

    #[test]
    fn dense_registers_round_trip() {
        let mut r = vec![0u8; DENSE_SIZE - HDR];
        for i in 0..REGISTERS {
            dense_set(&mut r, i, (i * 7 % 64) as u8);
        }
        for i in 0..REGISTERS {
            assert_eq!(dense_get(&r, i), (i * 7 % 64) as u8);
        }
    }

    #[test]
    fn sparse_and_dense_agree() {
        let mut sparse = new_sparse();
        let mut dense = new_sparse();
        sparse_to_dense(&mut dense).unwrap();
        for i in 0..3000u32 {
            let e = i.to_string();
            add(&mut sparse, e.as_bytes()).unwrap();
            add(&mut dense, e.as_bytes()).unwrap();
            if i % 97 == 0 {
                assert_eq!(count(&sparse), count(&dense), "at {i}");
                assert_eq!(registers(&sparse), registers(&dense), "at {i}");
            }
        }
        assert_eq!(sparse[4], DENSE, "promoted past {SPARSE_MAX_BYTES} bytes");
        let c = count(&dense).unwrap();
        assert!((2900..3100).contains(&c), "{c}");
    }

    #[test]
    fn empty_counts_zero_and_corruption_is_seen() {
        let v = new_sparse();
        assert_eq!(v.len(), HDR + 2);
        assert_eq!(count(&v), Ok(0));
        assert_eq!(cached(&v), Some(0));
        let mut short = v.clone();
        short.pop();
        assert_eq!(count(&short), Err(Corrupt));
        let mut d = short.clone();
        assert_eq!(sparse_to_dense(&mut d), Err(Corrupt));
    }
}
