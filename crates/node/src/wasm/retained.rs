//! The retained log of a WebAssembly guest: every entry since the guest
//! started, so a joiner can be brought up by replaying it from the start
//! (the first version of state transfer at the machine level; live guest
//! snapshots come later). Its cost: memory (or disk) that grows with the
//! log — about the log bytes per request times the requests served — and a
//! join time that grows with the guest's age.
//!
//! Entries are kept in blocks of whole entries; full blocks are shared, so
//! a snapshot for a joiner is a list of `Arc`s plus a copy of the last,
//! partial block.

use std::sync::Arc;

use understudy_core::{Seq, SnapshotError, SnapshotWriter};
use understudy_wire::codec::{put_varint, Reader};
use understudy_wire::entry::EntryKind;

const BLOCK_BYTES: usize = 1 << 20;

#[derive(Default, Clone)]
pub struct Retained {
    blocks: Vec<Arc<Vec<u8>>>,
    cur: Vec<u8>,
    /// Entries held: seqs 1..=count.
    count: Seq,
    bytes: u64,
}

impl Retained {
    pub fn count(&self) -> Seq {
        self.count
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Appends entry `seq`, which must be the next one.
    pub fn push(&mut self, seq: Seq, kind: EntryKind, body: &[u8]) {
        assert_eq!(seq, self.count + 1, "the retained log is contiguous from seq 1");
        let before = self.cur.len();
        self.cur.push(kind as u8);
        put_varint(&mut self.cur, body.len() as u64);
        self.cur.extend_from_slice(body);
        self.bytes += (self.cur.len() - before) as u64;
        self.count = seq;
        if self.cur.len() >= BLOCK_BYTES {
            self.blocks.push(Arc::new(std::mem::take(&mut self.cur)));
        }
    }

    /// The log as shared blocks (the partial block is sealed first), for a
    /// [`Cursor`] that reads it on another thread without a copy.
    pub fn shared_blocks(&mut self) -> Vec<Arc<Vec<u8>>> {
        if !self.cur.is_empty() {
            self.blocks.push(Arc::new(std::mem::take(&mut self.cur)));
        }
        self.blocks.clone()
    }

    /// Every entry, in order.
    pub fn entries(&self) -> impl Iterator<Item = (EntryKind, &[u8])> {
        self.blocks.iter().map(|b| &b[..]).chain(std::iter::once(&self.cur[..])).flat_map(parse_block)
    }

    pub fn snapshot(&self) -> Box<dyn SnapshotWriter> {
        let mut blocks = self.blocks.clone();
        if !self.cur.is_empty() {
            blocks.push(Arc::new(self.cur.clone()));
        }
        Box::new(LogSnapshot { blocks, next: 0, bytes: self.bytes })
    }

    /// Loads one snapshot chunk (a block of whole entries).
    pub fn restore_chunk(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
        let mut r = Reader::new(chunk, "retained log");
        while !r.is_empty() {
            let kind = r.u8().and_then(EntryKind::from_u8).map_err(|e| SnapshotError(e.to_string()))?;
            let body = r.bytes().map_err(|e| SnapshotError(e.to_string()))?;
            let next = self.count + 1;
            self.push(next, kind, body);
        }
        Ok(())
    }
}

fn parse_block(b: &[u8]) -> impl Iterator<Item = (EntryKind, &[u8])> {
    let mut r = Reader::new(b, "retained log");
    std::iter::from_fn(move || {
        if r.is_empty() {
            return None;
        }
        // Written by `push`: well-formed by construction.
        let kind = EntryKind::from_u8(r.u8().expect("retained entry")).expect("retained entry kind");
        let body = r.bytes().expect("retained entry body");
        Some((kind, body))
    })
}

/// Reads entries out of shared blocks one at a time: a joiner's guest
/// replays the retained log through it, so installing a log of any size
/// costs the event loop nothing (it keeps acknowledging and heartbeating).
pub struct Cursor {
    blocks: Vec<Arc<Vec<u8>>>,
    block: usize,
    pos: usize,
    /// Seq of the entry `next` returns.
    pub seq: Seq,
}

impl Cursor {
    pub fn new(blocks: Vec<Arc<Vec<u8>>>) -> Cursor {
        Cursor { blocks, block: 0, pos: 0, seq: 1 }
    }

    /// The next entry: its seq, kind and body.
    pub fn next_entry(&mut self) -> Option<(Seq, EntryKind, &[u8])> {
        loop {
            let b = self.blocks.get(self.block)?;
            if self.pos < b.len() {
                break;
            }
            self.block += 1;
            self.pos = 0;
        }
        let b = &self.blocks[self.block];
        let mut r = Reader::new(&b[self.pos..], "retained log");
        // Written by `Retained::push`: well-formed by construction.
        let kind = EntryKind::from_u8(r.u8().expect("retained entry")).expect("retained entry kind");
        let body = r.bytes().expect("retained entry body");
        self.pos += r.position();
        let seq = self.seq;
        self.seq += 1;
        Some((seq, kind, body))
    }
}

struct LogSnapshot {
    blocks: Vec<Arc<Vec<u8>>>,
    next: usize,
    bytes: u64,
}

impl SnapshotWriter for LogSnapshot {
    fn next_chunk(&mut self, out: &mut Vec<u8>, _max_bytes: usize) -> bool {
        let Some(b) = self.blocks.get(self.next) else { return false };
        out.extend_from_slice(b);
        self.next += 1;
        true
    }

    fn bytes_hint(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_roundtrip_keeps_every_entry_in_order() {
        let mut r = Retained::default();
        for i in 1..=5000u64 {
            let body = vec![(i % 251) as u8; (i % 700) as usize];
            r.push(i, if i % 10 == 0 { EntryKind::Barrier } else { EntryKind::Event }, &body);
        }
        let mut w = r.snapshot();
        let mut back = Retained::default();
        let mut chunk = Vec::new();
        while {
            chunk.clear();
            w.next_chunk(&mut chunk, 1 << 20)
        } {
            back.restore_chunk(&chunk).unwrap();
        }
        assert_eq!(back.count(), 5000);
        assert!(back.entries().eq(r.entries()));
        let mut c = Cursor::new(back.shared_blocks());
        let mut seen = Vec::new();
        while let Some((seq, kind, body)) = c.next_entry() {
            seen.push((seq, kind, body.to_vec()));
        }
        let want: Vec<_> = r.entries().enumerate().map(|(i, (k, b))| (i as Seq + 1, k, b.to_vec())).collect();
        assert_eq!(seen, want, "the cursor reads every entry in order, with its seq");
        assert!(back.restore_chunk(&[9, 1]).is_err(), "an unknown entry kind is refused");
    }
}
