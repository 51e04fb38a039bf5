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
    let mut h = Sha256::new();
    h.update((memory.len() as u64).to_le_bytes());
    for page in memory.chunks(PAGE) {
        h.update(crc32c::crc32c(page).to_le_bytes());
    }
    for g in globals {
        let (tag, bits): (u8, u128) = match g {
            Val::I32(v) => (1, *v as u32 as u128),
            Val::I64(v) => (2, *v as u64 as u128),
            Val::F32(v) => (3, u128::from(*v)),
            Val::F64(v) => (4, u128::from(*v)),
            Val::V128(v) => (5, v.as_u128()),
            // References have no stable bits; their presence is hashed.
            _ => (6, 0),
        };
        h.update([tag]);
        h.update(bits.to_le_bytes());
    }
    h.finalize().into()
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
