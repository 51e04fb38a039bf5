//! Intsets, Redis's sorted array of integers (`src/intset.c`), the
//! encoding of a small set of integers: the element width in bytes (u32
//! LE: 2, 4 or 8), the element count (u32 LE), then the elements in
//! ascending order, little-endian, all of that width.

/// The intset holding `values` (any order, no duplicates) at the
/// smallest width that fits them all, as a set built by adding them has.
pub fn encode(values: &[i64]) -> Vec<u8> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    debug_assert!(sorted.windows(2).all(|w| w[0] < w[1]), "set members are distinct");
    let fits = |lo: i64, hi: i64| sorted.iter().all(|v| (lo..=hi).contains(v));
    let width: usize = if fits(i64::from(i16::MIN), i64::from(i16::MAX)) {
        2
    } else if fits(i64::from(i32::MIN), i64::from(i32::MAX)) {
        4
    } else {
        8
    };
    let mut out = Vec::with_capacity(8 + width * sorted.len());
    out.extend_from_slice(&(width as u32).to_le_bytes());
    out.extend_from_slice(&(sorted.len() as u32).to_le_bytes());
    for v in sorted {
        out.extend_from_slice(&v.to_le_bytes()[..width]);
    }
    out
}

/// The members of an intset blob, or `None` if it is not a valid one:
/// a known width, a size that matches the count (what Redis checks on
/// RESTORE), members ascending and distinct (what deep sanitization
/// adds; a set cannot hold duplicates).
pub fn decode(blob: &[u8]) -> Option<Vec<i64>> {
    let width = u32::from_le_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let count = u32::from_le_bytes(blob.get(4..8)?.try_into().ok()?) as usize;
    if !matches!(width, 2 | 4 | 8) || count.checked_mul(width)?.checked_add(8)? != blob.len() {
        return None;
    }
    let values: Vec<i64> = blob[8..]
        .chunks_exact(width)
        .map(|c| match width {
            2 => i64::from(i16::from_le_bytes([c[0], c[1]])),
            4 => i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            _ => i64::from_le_bytes(c.try_into().expect("8 bytes")),
        })
        .collect();
    values.windows(2).all(|w| w[0] < w[1]).then_some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_redis_bytes() {
        // SADD s 3 1 2 in Redis 7.0: int16 intset 1, 2, 3.
        assert_eq!(encode(&[3, 1, 2]), b"\x02\x00\x00\x00\x03\x00\x00\x00\x01\x00\x02\x00\x03\x00");
    }

    #[test]
    fn round_trips_at_each_width() {
        for values in [vec![-5i64, 7, 32767], vec![1, 70_000, -3], vec![i64::MIN, 0, i64::MAX], vec![]] {
            let blob = encode(&values);
            let mut sorted = values.clone();
            sorted.sort_unstable();
            assert_eq!(decode(&blob), Some(sorted));
        }
        assert_eq!(u32::from_le_bytes(encode(&[70_000])[..4].try_into().unwrap()), 4);
    }

    #[test]
    fn malformed_intsets_are_refused() {
        let good = encode(&[1, 2, 3]);
        let mut bad_width = good.clone();
        bad_width[0] = 3;
        let mut unsorted = good.clone();
        unsorted.swap(8, 10);
        for bad in [bad_width, unsorted, good[..good.len() - 1].to_vec(), b"\x02\x00".to_vec()] {
            assert_eq!(decode(&bad), None, "{bad:?}");
        }
    }
}
