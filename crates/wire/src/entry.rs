//! Log entries, as carried in an `Entries` frame.
//!
//! The frame header holds the epoch and the seq of the first entry; entries
//! follow back to back with no count (the n-th entry has seq `first + n`):
//!
//! ```text
//! entry := kind:u8  len:varint  body[len]
//! ```
//!
//! An `Op` body starts with the record of the nondeterministic values the
//! operation observed on the primary (VMware FT's "weird instructions"):
//!
//! ```text
//! op    := flags:u8  [now_us:varint]  [n:varint  random:u64 LE × n]  op-bytes…
//! flags := bit 0: now recorded, bit 1: random values recorded
//! ```
//!
//! Values are recorded only when the operation actually asked for them, so a
//! plain `SET` costs 1 flag byte over its operation bytes.

use crate::codec::{put_varint, varint_len, Reader};
use crate::frame::{FrameHeader, Kind, FRAME_HEADER_BYTES};
use crate::WireError;

/// What an entry is; machines see `Op` and `Event` bodies, the engine
/// consumes `Barrier`s itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EntryKind {
    /// No-op appended so that a read's reply can wait for an ack the backup
    /// sent after the read arrived (output rule for reads, DESIGN §3).
    Barrier = 0,
    /// An application-level operation with its recorded nondeterminism.
    Op = 1,
    /// A machine-level event (a recorded host call of a WebAssembly guest).
    Event = 2,
    /// Reserved: marks the position of a machine snapshot in the log.
    SnapshotMarker = 3,
}

impl EntryKind {
    pub fn from_u8(b: u8) -> Result<Self, WireError> {
        Ok(match b {
            0 => EntryKind::Barrier,
            1 => EntryKind::Op,
            2 => EntryKind::Event,
            3 => EntryKind::SnapshotMarker,
            _ => return Err(WireError::malformed("entry", format!("unknown kind {b}"))),
        })
    }
}

/// One decoded entry, borrowing its body from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'a> {
    pub seq: u64,
    pub kind: EntryKind,
    pub body: &'a [u8],
}

/// Writes entries into an `Entries` frame under construction, straight into
/// the channel's send buffer.
#[derive(Debug)]
pub struct BatchWriter {
    start: usize,
    epoch: u64,
    first_seq: u64,
    count: u64,
}

impl BatchWriter {
    /// Reserves a frame header at the end of `out`.
    pub fn begin(out: &mut Vec<u8>, epoch: u64, first_seq: u64) -> Self {
        let start = out.len();
        out.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
        BatchWriter { start, epoch, first_seq, count: 0 }
    }

    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// Seq the next pushed entry will have.
    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.count
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Bytes of the frame so far.
    pub fn bytes(&self, out: &[u8]) -> usize {
        out.len() - self.start
    }

    /// Appends an entry whose body is written by `fill`. Returns its seq.
    pub fn push_with(&mut self, out: &mut Vec<u8>, kind: EntryKind, body_len: usize, fill: impl FnOnce(&mut Vec<u8>)) -> u64 {
        out.push(kind as u8);
        put_varint(out, body_len as u64);
        let before = out.len();
        fill(out);
        assert_eq!(out.len() - before, body_len, "entry body length announced wrong");
        let seq = self.first_seq + self.count;
        self.count += 1;
        seq
    }

    pub fn push(&mut self, out: &mut Vec<u8>, kind: EntryKind, body: &[u8]) -> u64 {
        self.push_with(out, kind, body.len(), |o| o.extend_from_slice(body))
    }

    /// Fills in the header. An empty batch is removed again.
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.count == 0 {
            out.truncate(self.start);
            return;
        }
        crate::frame::seal(out, self.start, FrameHeader { epoch: self.epoch, seq: self.first_seq, kind: Kind::Entries });
    }
}

/// Iterates the entries of an `Entries` frame payload.
pub struct EntryIter<'a> {
    r: Reader<'a>,
    next_seq: u64,
}

impl<'a> EntryIter<'a> {
    pub fn new(first_seq: u64, payload: &'a [u8]) -> Self {
        EntryIter { r: Reader::new(payload, "entry"), next_seq: first_seq }
    }
}

impl<'a> Iterator for EntryIter<'a> {
    type Item = Result<Entry<'a>, WireError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.r.is_empty() {
            return None;
        }
        let e = (|| {
            let kind = EntryKind::from_u8(self.r.u8()?)?;
            let body = self.r.bytes()?;
            Ok(Entry { seq: self.next_seq, kind, body })
        })();
        if e.is_err() {
            // Stop after the first error: the rest of the payload is unframed.
            self.r.rest();
        }
        self.next_seq = self.next_seq.wrapping_add(1); // past u64::MAX: refused downstream (last < first)
        Some(e)
    }
}

/// The recorded nondeterminism of one operation plus the operation itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpEntry<'a> {
    /// The primary's clock as the operation saw it, microseconds since the
    /// Unix epoch; `None` if the operation never asked.
    pub now_us: Option<u64>,
    /// Values handed to the operation, as little-endian u64s, in the order
    /// it asked for them: random draws and other inputs only the primary
    /// knows (the subscribers a message reached, `Ctx::publish`).
    pub random: &'a [u8],
    pub op: &'a [u8],
}

const FLAG_NOW: u8 = 1;
const FLAG_RANDOM: u8 = 2;

impl<'a> OpEntry<'a> {
    /// Encoded size, so the body can be written in place.
    pub fn encoded_len(now_us: Option<u64>, random: &[u64], op_len: usize) -> usize {
        1 + now_us.map_or(0, varint_len)
            + if random.is_empty() { 0 } else { varint_len(random.len() as u64) + 8 * random.len() }
            + op_len
    }

    /// Writes the record; the caller appends the op bytes right after.
    pub fn encode_record(out: &mut Vec<u8>, now_us: Option<u64>, random: &[u64]) {
        let flags = if now_us.is_some() { FLAG_NOW } else { 0 } | if random.is_empty() { 0 } else { FLAG_RANDOM };
        out.push(flags);
        if let Some(n) = now_us {
            put_varint(out, n);
        }
        if !random.is_empty() {
            put_varint(out, random.len() as u64);
            for r in random {
                out.extend_from_slice(&r.to_le_bytes());
            }
        }
    }

    pub fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body, "op entry");
        let flags = r.u8()?;
        if flags & !(FLAG_NOW | FLAG_RANDOM) != 0 {
            return Err(WireError::malformed("op entry", format!("unknown flags {flags:#x}")));
        }
        let now_us = if flags & FLAG_NOW != 0 { Some(r.varint()?) } else { None };
        let random = if flags & FLAG_RANDOM != 0 {
            let n = r.varint()?;
            if n == 0 || n > (r.remaining() / 8) as u64 {
                return Err(WireError::malformed("op entry", format!("{n} random values do not fit")));
            }
            r.take(n as usize * 8)?
        } else {
            &[]
        };
        Ok(OpEntry { now_us, random, op: r.rest() })
    }

    /// The i-th recorded random value.
    pub fn random_at(&self, i: usize) -> Option<u64> {
        self.random.get(i * 8..i * 8 + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameDecoder;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn batch_roundtrip(
            epoch in any::<u64>(),
            first in 1u64..u64::MAX / 2,
            bodies in proptest::collection::vec((0u8..3, proptest::collection::vec(any::<u8>(), 0..100)), 0..20),
        ) {
            let mut out = vec![0xAA; 3]; // pre-existing bytes in the send buffer survive
            let mut w = BatchWriter::begin(&mut out, epoch, first);
            for (k, b) in &bodies {
                w.push(&mut out, EntryKind::from_u8(*k).unwrap(), b);
            }
            w.finish(&mut out);
            prop_assert_eq!(&out[..3], &[0xAA; 3]);
            if bodies.is_empty() {
                prop_assert_eq!(out.len(), 3);
                return Ok(());
            }
            let (f, used) = FrameDecoder::new(1 << 20).decode(&out[3..]).unwrap().unwrap();
            prop_assert_eq!(used, out.len() - 3);
            prop_assert_eq!(f.header.epoch, epoch);
            prop_assert_eq!(f.header.seq, first);
            let got: Vec<_> = EntryIter::new(first, f.payload).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(got.len(), bodies.len());
            for (i, (e, (k, b))) in got.iter().zip(&bodies).enumerate() {
                prop_assert_eq!(e.seq, first + i as u64);
                prop_assert_eq!(e.kind as u8, *k);
                prop_assert_eq!(e.body, &b[..]);
            }
        }

        #[test]
        fn op_entry_roundtrip(now in proptest::option::of(any::<u64>()), random in proptest::collection::vec(any::<u64>(), 0..4), op in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut body = Vec::new();
            OpEntry::encode_record(&mut body, now, &random);
            body.extend_from_slice(&op);
            prop_assert_eq!(body.len(), OpEntry::encoded_len(now, &random, op.len()));
            let e = OpEntry::decode(&body).unwrap();
            prop_assert_eq!(e.now_us, now);
            prop_assert_eq!(e.op, &op[..]);
            for (i, r) in random.iter().enumerate() {
                prop_assert_eq!(e.random_at(i), Some(*r));
            }
            prop_assert_eq!(e.random_at(random.len()), None);
        }

        #[test]
        fn entry_iter_never_panics(first in any::<u32>(), payload in proptest::collection::vec(any::<u8>(), 0..100)) {
            for e in EntryIter::new(u64::from(first), &payload) { let _ = e; }
            let _ = OpEntry::decode(&payload);
        }
    }

    #[test]
    fn plain_op_costs_one_byte_of_record() {
        assert_eq!(OpEntry::encoded_len(None, &[], 10), 11);
    }
}
