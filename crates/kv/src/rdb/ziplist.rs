//! Ziplists (`src/ziplist.c`), the compact encoding of Redis before 7.0:
//! RESTORE still reads them (list quicklist nodes, small hashes and
//! sorted sets in payloads of Redis 3.2 to 6.2). Read only; Redis 7.0
//! never writes one.
//!
//! Layout: total bytes (u32 LE), offset of the last entry (u32 LE), entry
//! count (u16 LE, `65535` when not known), the entries and `0xFF`. An
//! entry is the previous entry's length (1 byte, or `0xFE` and u32 LE),
//! an encoding and the data: strings with a 6-bit, 14-bit (big-endian) or
//! 32-bit (big-endian) length; integers of 8, 16, 24, 32, 64 bits (LE),
//! or 0 to 12 in the encoding byte itself.

const HDR_SIZE: usize = 10;
const END: u8 = 0xFF;
const BIG_PREVLEN: u8 = 0xFE;

fn int_le(data: &[u8]) -> i64 {
    let mut b = [0u8; 8];
    b[..data.len()].copy_from_slice(data);
    let bits = 8 * data.len() as u32;
    (i64::from_le_bytes(b) << (64 - bits)) >> (64 - bits)
}

/// The entries of a ziplist as strings (integers in decimal), or `None`
/// if it is not a well-formed one (Redis validates ziplists deeply when
/// it converts them, as it does for every ziplist it loads in 7.0).
pub fn decode(zl: &[u8]) -> Option<Vec<Vec<u8>>> {
    if zl.len() < HDR_SIZE + 1 {
        return None;
    }
    let total = u32::from_le_bytes(zl[..4].try_into().ok()?) as usize;
    let tail = u32::from_le_bytes(zl[4..8].try_into().ok()?) as usize;
    let count = usize::from(u16::from_le_bytes(zl[8..10].try_into().ok()?));
    if total != zl.len() || zl[zl.len() - 1] != END {
        return None;
    }
    let last = zl.len() - 1;
    let mut p = HDR_SIZE;
    let mut prev_len = 0usize;
    let mut last_entry = HDR_SIZE;
    let mut out = Vec::new();
    while p < last {
        let start = p;
        // The previous entry's length.
        let prev = if zl[p] == BIG_PREVLEN {
            let v = u32::from_le_bytes(zl.get(p + 1..p + 5)?.try_into().ok()?) as usize;
            p += 5;
            v
        } else {
            p += 1;
            usize::from(zl[start])
        };
        if prev != prev_len {
            return None;
        }
        let enc = *zl.get(p)?;
        let need = |from: usize, n: usize| zl.get(from..from.checked_add(n)?).filter(|_| from + n <= last);
        let (value, next) = match enc >> 6 {
            0 => {
                let len = usize::from(enc & 0x3F);
                (need(p + 1, len)?.to_vec(), p + 1 + len)
            }
            1 => {
                let len = (usize::from(enc & 0x3F) << 8) | usize::from(*need(p + 1, 1)?.first()?);
                (need(p + 2, len)?.to_vec(), p + 2 + len)
            }
            2 => {
                if enc != 0x80 {
                    return None;
                }
                let len = u32::from_be_bytes(need(p + 1, 4)?.try_into().ok()?) as usize;
                (need(p + 5, len)?.to_vec(), p + 5 + len)
            }
            _ => {
                let (width, imm) = match enc {
                    0xC0 => (2, None),
                    0xD0 => (4, None),
                    0xE0 => (8, None),
                    0xF0 => (3, None),
                    0xFE => (1, None),
                    0xF1..=0xFD => (0, Some(i64::from(enc & 0x0F) - 1)),
                    _ => return None,
                };
                let v = match imm {
                    Some(v) => v,
                    None => int_le(need(p + 1, width)?),
                };
                (v.to_string().into_bytes(), p + 1 + width)
            }
        };
        if next > last {
            return None;
        }
        out.push(value);
        prev_len = next - start;
        last_entry = start;
        p = next;
    }
    let tail_ok = if out.is_empty() { tail == HDR_SIZE } else { tail == last_entry };
    if !tail_ok || (count != usize::from(u16::MAX) && count != out.len()) {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ziplist as Redis 6.2 writes RPUSH l a 12 -300 hello 70000.
    fn sample() -> Vec<u8> {
        let entries: Vec<Vec<u8>> = vec![
            vec![0x01, b'a'],
            vec![0xFD],
            vec![0xC0, 0xD4, 0xFE],
            [&[0x05][..], b"hello"].concat(),
            vec![0xF0, 0x70, 0x11, 0x01],
        ];
        let mut body = Vec::new();
        let mut prev = 0usize;
        let mut tail = HDR_SIZE;
        for e in &entries {
            tail = HDR_SIZE + body.len();
            body.push(prev as u8);
            body.extend_from_slice(e);
            prev = e.len() + 1;
        }
        let total = HDR_SIZE + body.len() + 1;
        let mut zl = Vec::new();
        zl.extend_from_slice(&(total as u32).to_le_bytes());
        zl.extend_from_slice(&(tail as u32).to_le_bytes());
        zl.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        zl.extend_from_slice(&body);
        zl.push(END);
        zl
    }

    #[test]
    fn decodes_strings_and_integers() {
        let items = decode(&sample()).expect("valid");
        let expect: Vec<&[u8]> = vec![b"a", b"12", b"-300", b"hello", b"70000"];
        assert_eq!(items, expect);
    }

    #[test]
    fn malformed_ziplists_are_refused() {
        let good = sample();
        let mut bad_prev = good.clone();
        bad_prev[HDR_SIZE + 3] = 9; // the second entry's prevlen
        let mut bad_tail = good.clone();
        bad_tail[4] += 1;
        let mut bad_count = good.clone();
        bad_count[8] = 4;
        let mut bad_enc = good.clone();
        bad_enc[HDR_SIZE + 1] = 0x81;
        for bad in [bad_prev, bad_tail, bad_count, bad_enc, good[..good.len() - 1].to_vec()] {
            assert_eq!(decode(&bad), None, "{bad:?}");
        }
    }
}
