//! Helpers shared by the fuzz targets and the seed-corpus generator
//! (`examples/seed_corpus.rs`).
//!
//! Targets that take several inputs (frames, snapshot chunks, events, ops)
//! read them from one byte string as *pieces*: a little-endian `u16` length
//! followed by that many bytes (fewer if the input ends first). The format is
//! dumb on purpose: libFuzzer's mutations (insert, erase, copy a span) keep
//! most pieces intact, and seeds are easy to write with [`join`].

use understudy_core::Ctx;

/// Splits `data` into pieces (see the crate docs). Never fails: a length
/// past the end takes what is left.
pub fn pieces(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
        let n = len.min(rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

/// The inverse of [`pieces`], for writing seeds.
pub fn join<P: AsRef<[u8]>>(pieces: &[P]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pieces {
        let p = p.as_ref();
        let len = u16::try_from(p.len()).expect("a seed piece is at most 64 KiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// Builds one frame with a correct checksum from raw header fields, so the
/// fuzzer gets past the crc32c check to the decoders behind it (any
/// `kind` byte and `version`, which the real encoder would refuse to write).
pub fn raw_frame(out: &mut Vec<u8>, version: u8, epoch: u64, seq: u64, kind: u8, payload: &[u8]) {
    let len = u32::try_from(18 + payload.len()).expect("fuzz inputs are small");
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(version);
    out.extend_from_slice(&epoch.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A frame described by a piece: `version:u8 epoch:u64 seq:u64 kind:u8
/// payload…` (missing header bytes read as zero). Returns the frame bytes.
pub fn frame_from_piece(piece: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 18];
    let n = piece.len().min(18);
    h[..n].copy_from_slice(&piece[..n]);
    let epoch = u64::from_le_bytes(h[1..9].try_into().expect("8 bytes"));
    let seq = u64::from_le_bytes(h[9..17].try_into().expect("8 bytes"));
    let mut out = Vec::new();
    raw_frame(&mut out, h[0], epoch, seq, h[17], &piece[n..]);
    out
}

/// The inverse of [`frame_from_piece`], for writing seeds.
pub fn piece_for_frame(version: u8, epoch: u64, seq: u64, kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![version];
    p.extend_from_slice(&epoch.to_le_bytes());
    p.extend_from_slice(&seq.to_le_bytes());
    p.push(kind);
    p.extend_from_slice(payload);
    p
}

/// A replay context with scripted time: every op of a run sees a clock
/// that starts at `now_us` and advances by `step_us` per question, so both
/// replicas of a differential target see the same values.
#[derive(Debug, Clone)]
pub struct ScriptedCtx {
    pub now_us: u64,
    pub step_us: u64,
    pub random: u64,
}

impl ScriptedCtx {
    pub fn new(now_us: u64) -> Self {
        ScriptedCtx { now_us, step_us: 1_000, random: 4 }
    }
}

impl Ctx for ScriptedCtx {
    fn now_us(&mut self) -> u64 {
        let t = self.now_us;
        self.now_us = self.now_us.saturating_add(self.step_us);
        t
    }

    fn random_u64(&mut self) -> u64 {
        self.random = self.random.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.random
    }
}

/// A wall-clock time in microseconds that keyspace commands treat as
/// "now": 2025-01-01, so EX/PX/EXAT arguments of seeds mean something.
pub const NOW_US: u64 = 1_735_689_600_000_000;
