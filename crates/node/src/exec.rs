//! The backup's queue of received entries and their replay. Entries are
//! acknowledged as *received* as soon as they are queued (the output rule
//! needs no more); they are *executed* in slices so that a long backlog never
//! keeps the event loop from reading heartbeats and sending acks.

use std::collections::VecDeque;

use understudy_core::{Seq, StateMachine};
use understudy_wire::codec::Reader;
use understudy_wire::entry::{EntryIter, EntryKind, OpEntry};
use understudy_wire::WireError;

use crate::ctx::{ReplayCtx, TimeFloor};

/// Received `Entries` frame payloads, oldest first.
#[derive(Default)]
pub struct ExecQueue {
    frames: VecDeque<(Seq, Vec<u8>)>,
    /// Byte offset of the next entry in the front frame.
    pos: usize,
    /// Seq of the next entry in the front frame.
    next_seq: Seq,
    /// Payload bytes held (bounded by `--join-buffer-bytes` while joining).
    pub bytes: usize,
}

/// Counts and checks the entries of a payload; returns the last seq.
pub fn validate(first: Seq, payload: &[u8]) -> Result<Seq, WireError> {
    let mut last = None;
    for e in EntryIter::new(first, payload) {
        last = Some(e?.seq);
    }
    last.ok_or_else(|| WireError::Malformed { what: "entries", detail: "empty batch".into() })
}

impl ExecQueue {
    pub fn push(&mut self, first: Seq, payload: Vec<u8>) {
        if self.frames.is_empty() {
            self.pos = 0;
            self.next_seq = first;
        }
        self.bytes += payload.len();
        self.frames.push_back((first, payload));
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    fn next_entry(&mut self) -> Option<(Seq, EntryKind, std::ops::Range<usize>)> {
        loop {
            let (_, payload) = self.frames.front()?;
            if self.pos >= payload.len() {
                let (_, p) = self.frames.pop_front().expect("front exists");
                self.bytes -= p.len();
                self.pos = 0;
                if let Some((first, _)) = self.frames.front() {
                    debug_assert_eq!(*first, self.next_seq, "queued frames are contiguous");
                    self.next_seq = *first;
                }
                continue;
            }
            let mut r = Reader::new(&payload[self.pos..], "entry");
            // Validated on receipt: these cannot fail.
            let kind = EntryKind::from_u8(r.u8().expect("validated")).expect("validated");
            let len = r.varint().expect("validated") as usize;
            let start = self.pos + r.position();
            self.pos = start + len;
            let seq = self.next_seq;
            self.next_seq += 1;
            return Some((seq, kind, start..start + len));
        }
    }

    /// Drops the entries up to `upto` (a snapshot at `upto` holds them).
    pub fn skip_through(&mut self, upto: Seq) {
        while !self.frames.is_empty() && self.next_seq <= upto {
            if self.next_entry().is_none() {
                break;
            }
        }
    }

    /// Takes the next entry out of the queue (for machines that execute
    /// elsewhere: a WebAssembly guest on its own thread).
    pub fn pop(&mut self) -> Option<(Seq, EntryKind, Vec<u8>)> {
        let (seq, kind, range) = self.next_entry()?;
        let body = self.frames.front().expect("entry's frame").1[range].to_vec();
        Some((seq, kind, body))
    }

    /// Replays up to `max` entries into `machine`. Returns the seq of the
    /// last one executed, or a divergence report.
    pub fn run<M: StateMachine>(
        &mut self,
        machine: &mut M,
        floor: &mut TimeFloor,
        scratch: &mut Vec<u8>,
        max: usize,
    ) -> Result<Option<Seq>, Divergence> {
        let mut last = None;
        for _ in 0..max {
            let Some((seq, kind, range)) = self.next_entry() else { break };
            let body = &self.frames.front().expect("entry's frame").1[range];
            match kind {
                EntryKind::Barrier => {}
                EntryKind::Op => {
                    let entry = OpEntry::decode(body).map_err(|e| Divergence { seq, detail: e.to_string() })?;
                    let mut ctx = ReplayCtx::new(entry, floor);
                    scratch.clear();
                    machine.apply(&mut ctx, entry.op, scratch);
                    ctx.finish().map_err(|detail| Divergence { seq, detail })?;
                }
                other => {
                    return Err(Divergence { seq, detail: format!("entry kind {other:?} cannot be replayed by this machine") })
                }
            }
            last = Some(seq);
        }
        Ok(last)
    }
}

/// The backup's replay disagreed with what the primary recorded.
#[derive(Debug)]
pub struct Divergence {
    pub seq: Seq,
    pub detail: String,
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "divergence at seq {}: {}", self.seq, self.detail)
    }
}
