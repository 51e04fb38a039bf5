//! A hash of the guest's state: linear memory and mutable globals. Replicas
//! compare it after every event in `verify_memory` mode, and at the end of a
//! recorded run (DESIGN §7, step 2).
//!
//! Memory is hashed per 64 KiB page with crc32c (hardware-accelerated, so a
//! few hundred microseconds for tens of MiB), and the page checksums, the
//! memory size and the globals' bits are hashed with SHA-256.

use sha2::{Digest, Sha256};
use wasmtime::Val;

const PAGE: usize = 64 * 1024;

/// Hash of `memory` and `globals` (in instrumentation order).
pub fn hash(memory: &[u8], globals: &[Val]) -> [u8; 32] {
    let crcs: Vec<u32> = memory.chunks(PAGE).map(crc32c::crc32c).collect();
    let bits: Vec<(u8, u128)> = globals.iter().map(global_bits).collect();
    hash_parts(memory.len(), &crcs, &bits)
}

/// The hash from its parts: the memory's length, the crc32c of each 64 KiB
/// page, the globals' bits (a snapshot computes it from the pages it sent).
pub fn hash_parts(memory_len: usize, page_crcs: &[u32], globals: &[(u8, u128)]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((memory_len as u64).to_le_bytes());
    for c in page_crcs {
        h.update(c.to_le_bytes());
    }
    for (tag, bits) in globals {
        h.update([*tag]);
        h.update(bits.to_le_bytes());
    }
    h.finalize().into()
}

/// A global's value as (type tag, bits).
pub fn global_bits(v: &Val) -> (u8, u128) {
    match v {
        Val::I32(x) => (1, *x as u32 as u128),
        Val::I64(x) => (2, *x as u64 as u128),
        Val::F32(x) => (3, u128::from(*x)),
        Val::F64(x) => (4, u128::from(*x)),
        Val::V128(x) => (5, x.as_u128()),
        // References have no stable bits; their presence is hashed.
        _ => (6, 0),
    }
}

/// The value of (type tag, bits), for restoring a global.
pub fn bits_global(tag: u8, bits: u128) -> Option<Val> {
    Some(match tag {
        1 => Val::I32(bits as u32 as i32),
        2 => Val::I64(bits as u64 as i64),
        3 => Val::F32(bits as u32),
        4 => Val::F64(bits as u64),
        5 => Val::V128(bits.into()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_byte_or_global_changes_the_hash() {
        let mut mem = vec![0u8; 3 * PAGE];
        let base = hash(&mem, &[Val::I32(5)]);
        mem[2 * PAGE + 17] = 1;
        assert_ne!(hash(&mem, &[Val::I32(5)]), base);
        mem[2 * PAGE + 17] = 0;
        assert_eq!(hash(&mem, &[Val::I32(5)]), base);
        assert_ne!(hash(&mem, &[Val::I32(6)]), base);
        assert_ne!(hash(&mem[..2 * PAGE], &[Val::I32(5)]), base);
    }
}
