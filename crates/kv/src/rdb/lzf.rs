//! LZF, the compression of long strings in an RDB payload.
//!
//! The compressor is a port of `lzf_compress` as Redis 7.0 bundles it
//! (liblzf 3.6 by Marc Lehmann, `src/lzf_c.c` of the 7.0.15 tree) with
//! the settings Redis builds it with (`src/lzfP.h`): `HLOG 16`,
//! `VERY_FAST 1`, `ULTRA_FAST 0`, pointers in the hash table. It makes the
//! same choices step by step (same hash, same slots, same match and
//! literal-run rules, same output-space checks), so a string compresses to
//! the bytes Redis writes. One difference: liblzf does not clear its hash
//! table (`INIT_HTAB 0`), so a slot not yet written in this call holds
//! whatever the stack held; only a stale pointer that happens to land on
//! an earlier, equal 3-byte run of the same input can change Redis's
//! output (to another valid encoding). Our table starts empty.
//!
//! The decompressor is a port of `lzf_decompress` (`src/lzf_d.c`) with its
//! input checks (`CHECK_INPUT 1`).

/// `1 << HLOG`.
const HSIZE: usize = 1 << 16;
/// Longest literal run, longest back-reference offset and length.
const MAX_LIT: usize = 1 << 5;
const MAX_OFF: usize = 1 << 13;
const MAX_REF: usize = (1 << 8) + (1 << 3);

/// The hash of the three bytes at `p` given the hash of the two before
/// (`NEXT`), and its slot (`IDX` in the `VERY_FAST` variant).
fn next(h: u32, input: &[u8], p: usize) -> u32 {
    (h << 8) | u32::from(input[p + 2])
}

fn first(input: &[u8], p: usize) -> u32 {
    (u32::from(input[p]) << 8) | u32::from(input[p + 1])
}

fn idx(h: u32) -> usize {
    ((h >> (3 * 8 - 16)).wrapping_sub(h.wrapping_mul(5)) as usize) & (HSIZE - 1)
}

/// A reusable compressor: its hash table (positions tagged with the call
/// that wrote them, so a new call sees an empty table without clearing it).
pub struct Compressor {
    table: Vec<(u32, u32)>,
    call: u32,
}

impl Default for Compressor {
    fn default() -> Self {
        Compressor::new()
    }
}

impl Compressor {
    pub fn new() -> Compressor {
        Compressor { table: Vec::new(), call: 0 }
    }

    /// `lzf_compress(input, out_len)`: the compressed bytes, or `None`
    /// where liblzf returns 0 (the output would not fit in `out_len`
    /// bytes, or an input or output length is 0).
    pub fn compress(&mut self, input: &[u8], out_len: usize) -> Option<Vec<u8>> {
        if input.is_empty() || out_len == 0 {
            return None;
        }
        if self.table.is_empty() {
            self.table = vec![(0, 0); HSIZE];
        }
        self.call = self.call.wrapping_add(1);
        if self.call == 0 {
            // Tags wrapped: old entries could look current again.
            self.table.iter_mut().for_each(|slot| *slot = (0, 0));
            self.call = 1;
        }
        let call = self.call;
        let table = &mut self.table;
        let in_end = input.len();
        // liblzf may write a few bytes past `out_end` before it notices
        // and gives up (Redis allocates one spare byte); room for them.
        let mut out = vec![0u8; out_len + 8];
        let out_end = out_len;
        let mut ip = 0usize;
        let mut op = 1usize; // the first run's length byte is reserved
        let mut lit = 0usize;
        let mut hval = if in_end >= 2 { first(input, 0) } else { 0 };
        while ip + 2 < in_end {
            hval = next(hval, input, ip);
            let slot = idx(hval);
            let (tag, pos) = table[slot];
            table[slot] = (call, ip as u32);
            let r = (tag == call).then_some(pos as usize);
            let found = r.filter(|&r| r < ip && ip - r - 1 < MAX_OFF && r > 0 && input[r..r + 3] == input[ip..ip + 3]);
            if let Some(r) = found {
                let off = ip - r - 1;
                let mut len = 2usize;
                let maxlen = (in_end - ip - len).min(MAX_REF);
                // Stop the literal run (or take back its unused length byte).
                out[op - lit - 1] = (lit as u8).wrapping_sub(1);
                op -= usize::from(lit == 0);
                if op + 3 + 1 >= out_end {
                    return None;
                }
                // The match length, compared as liblzf does: sixteen bytes
                // unrolled (without the bound check) when `maxlen > 16`.
                let mut mismatch = false;
                if maxlen > 16 {
                    for _ in 0..16 {
                        len += 1;
                        if input[r + len] != input[ip + len] {
                            mismatch = true;
                            break;
                        }
                    }
                }
                if !mismatch {
                    loop {
                        len += 1;
                        if !(len < maxlen && input[r + len] == input[ip + len]) {
                            break;
                        }
                    }
                }
                len -= 2;
                ip += 1;
                if len < 7 {
                    out[op] = ((off >> 8) + (len << 5)) as u8;
                    op += 1;
                } else {
                    out[op] = ((off >> 8) + (7 << 5)) as u8;
                    out[op + 1] = (len - 7) as u8;
                    op += 2;
                }
                out[op] = off as u8;
                op += 1;
                lit = 0;
                op += 1; // start a run
                ip += len + 1;
                if ip + 2 >= in_end {
                    break;
                }
                // VERY_FAST: hash the two positions before the new one.
                ip -= 2;
                hval = first(input, ip);
                hval = next(hval, input, ip);
                table[idx(hval)] = (call, ip as u32);
                ip += 1;
                hval = next(hval, input, ip);
                table[idx(hval)] = (call, ip as u32);
                ip += 1;
            } else {
                if op >= out_end {
                    return None;
                }
                lit += 1;
                out[op] = input[ip];
                op += 1;
                ip += 1;
                if lit == MAX_LIT {
                    out[op - lit - 1] = (lit - 1) as u8;
                    lit = 0;
                    op += 1;
                }
            }
        }
        if op + 3 > out_end {
            return None;
        }
        while ip < in_end {
            lit += 1;
            out[op] = input[ip];
            op += 1;
            ip += 1;
            if lit == MAX_LIT {
                out[op - lit - 1] = (lit - 1) as u8;
                lit = 0;
                op += 1;
            }
        }
        out[op - lit - 1] = (lit as u8).wrapping_sub(1);
        op -= usize::from(lit == 0);
        debug_assert!(op <= out_len, "liblzf's checks keep the output within out_len");
        out.truncate(op);
        Some(out)
    }
}

/// `lzf_decompress(input, out_len)`: the bytes written, or `None` where
/// liblzf reports an error (output longer than `out_len`, input cut
/// short, a back reference before the start).
pub fn decompress(input: &[u8], out_len: usize) -> Option<Vec<u8>> {
    // The announced length comes from the payload: reserve no more than
    // the input can expand to (a back reference is 2 bytes for at most 264).
    let mut out: Vec<u8> = Vec::with_capacity(out_len.min(input.len().saturating_mul(132)));
    let mut ip = 0usize;
    while ip < input.len() {
        let ctrl = usize::from(input[ip]);
        ip += 1;
        if ctrl < (1 << 5) {
            let run = ctrl + 1;
            if out.len() + run > out_len || ip + run > input.len() {
                return None;
            }
            out.extend_from_slice(&input[ip..ip + run]);
            ip += run;
        } else {
            let mut len = ctrl >> 5;
            let back = (ctrl & 0x1f) << 8;
            if ip >= input.len() {
                return None;
            }
            if len == 7 {
                len += usize::from(input[ip]);
                ip += 1;
                if ip >= input.len() {
                    return None;
                }
            }
            let back = back + usize::from(input[ip]) + 1;
            ip += 1;
            if out.len() + len + 2 > out_len || back > out.len() {
                return None;
            }
            let start = out.len() - back;
            // Byte by byte: the reference may overlap what it produces.
            for k in 0..len + 2 {
                out.push(out[start + k]);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift) for test data.
    fn data(seed: u64, len: usize, alphabet: u8) -> Vec<u8> {
        let mut s = seed | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (u64::from(b'a') + s % u64::from(alphabet)) as u8
            })
            .collect()
    }

    #[test]
    fn round_trips_random_and_repetitive_data() {
        let mut c = Compressor::new();
        for seed in 1..200u64 {
            for (len, alphabet) in [(21, 2), (64, 4), (300, 3), (5000, 8), (70_000, 2), (1000, 255)] {
                let input = data(seed * 7919 + len as u64, len, alphabet);
                // Redis's bound: at least four bytes saved.
                if let Some(z) = c.compress(&input, len - 4) {
                    assert!(z.len() <= len - 4);
                    assert_eq!(decompress(&z, len).as_deref(), Some(&input[..]), "seed {seed} len {len}");
                }
                // With room to spare, everything compresses.
                let z = c.compress(&input, len + len / 16 + 64).expect("room enough");
                assert_eq!(decompress(&z, len).as_deref(), Some(&input[..]));
            }
        }
    }

    #[test]
    fn known_encodings() {
        let mut c = Compressor::new();
        // 30 'a's, as Redis 7.0 DUMPs them: two literals (liblzf never
        // refers back to the first byte), a back reference of 26 at offset
        // 0 (stopping two bytes before the end), the last two literals.
        let z = c.compress(&[b'a'; 30], 26).expect("compressible");
        assert_eq!(z, [0x01, b'a', b'a', 0xe0, 0x11, 0x00, 0x01, b'a', b'a']);
        assert_eq!(decompress(&z, 30).as_deref(), Some(&[b'a'; 30][..]));
        // Incompressible input does not fit in len - 4.
        assert_eq!(c.compress(b"abcdefghijklmnopqrstuvwxyz", 22), None);
    }

    #[test]
    fn corrupt_input_is_refused() {
        // A back reference before the start, a literal run cut short, an
        // output longer than announced.
        assert_eq!(decompress(&[0x20, 0x00], 10), None);
        assert_eq!(decompress(&[0x05, b'a'], 10), None);
        assert_eq!(decompress(&[0x01, b'a', b'b'], 1), None);
        assert_eq!(decompress(&[], 0).as_deref(), Some(&[][..]));
    }
}
