//! The logging-channel connections of a node and their send buffers: what
//! is queued for each peer, and the batch of entries being filled for the
//! backup. Writer tasks (or the simulator) take a connection's whole buffer
//! at once, so batching grows with load and never waits on a timer.

use std::collections::BTreeMap;

use understudy_core::{ConnId, Epoch, Seq};
use understudy_wire::entry::{BatchWriter, EntryKind};
use understudy_wire::frame::{encode_with, FrameHeader, Kind};

use crate::io::BATCH_BYTES_MAX;

/// One logging-channel connection.
struct Conn {
    /// Bytes waiting for the writer.
    out: Vec<u8>,
    peer: String,
    incarnation: u64,
    /// The peer's client address, as its hello said (may be empty).
    client: String,
    /// Close once `out` is written (after a Reject).
    closing: bool,
}

/// Every open connection, and the batch being filled.
#[derive(Default)]
pub struct Channels {
    conns: BTreeMap<ConnId, Conn>,
    next: ConnId,
    /// Primary: the batch being filled in the backup channel's buffer.
    batch: Option<(ConnId, BatchWriter)>,
}

/// A sealed batch, for the log counters.
pub struct Sealed {
    pub bytes: u64,
    pub entries: u64,
}

impl Channels {
    pub fn open(&mut self, peer: String, incarnation: u64, client: String) -> ConnId {
        self.next += 1;
        let id = self.next;
        self.conns.insert(id, Conn { out: Vec::new(), peer, incarnation, client, closing: false });
        id
    }

    /// Forgets a connection (and its unsent bytes). True if it was open.
    pub fn remove(&mut self, id: ConnId) -> bool {
        if self.batch.as_ref().is_some_and(|(c, _)| *c == id) {
            self.batch = None;
        }
        self.conns.remove(&id).is_some()
    }

    pub fn contains(&self, id: ConnId) -> bool {
        self.conns.contains_key(&id)
    }

    pub fn peer(&self, id: ConnId) -> Option<(&str, u64)> {
        self.conns.get(&id).map(|c| (c.peer.as_str(), c.incarnation))
    }

    /// The peer's client address; None when its hello had none.
    pub fn client(&self, id: ConnId) -> Option<&str> {
        self.conns.get(&id).map(|c| c.client.as_str()).filter(|c| !c.is_empty())
    }

    /// The last `n` bytes queued for `id` (a frame just appended).
    pub fn tail(&self, id: ConnId, n: usize) -> &[u8] {
        self.conns.get(&id).map_or(&[][..], |c| &c.out[c.out.len().saturating_sub(n)..])
    }

    /// Bytes queued for `id` and not yet taken by its writer.
    pub fn backlog(&self, id: ConnId) -> usize {
        self.conns.get(&id).map_or(0, |c| c.out.len())
    }

    /// True when no connection has bytes waiting.
    pub fn flushed(&self) -> bool {
        self.conns.values().all(|c| c.out.is_empty())
    }

    /// Finishes the open batch if it belongs to `id`.
    pub fn seal(&mut self, id: ConnId) -> Option<Sealed> {
        if self.batch.as_ref().is_none_or(|(c, _)| *c != id) {
            return None;
        }
        let (c, bw) = self.batch.take().expect("checked");
        let out = &mut self.conns.get_mut(&c).expect("a batch's connection is open").out;
        let sealed = Sealed { bytes: bw.bytes(out) as u64, entries: bw.count() };
        bw.finish(out);
        Some(sealed)
    }

    /// Appends a frame (the open batch of `id` must be sealed first).
    /// False if `id` is not open.
    pub fn frame(&mut self, id: ConnId, header: FrameHeader, payload: impl FnOnce(&mut Vec<u8>)) -> bool {
        debug_assert!(self.batch.as_ref().is_none_or(|(c, _)| *c != id), "a frame inside an open batch");
        let Some(c) = self.conns.get_mut(&id) else { return false };
        encode_with(&mut c.out, header, payload);
        true
    }

    /// Appends raw bytes (a reject) and closes `id` once they are written.
    pub fn send_and_close(&mut self, id: ConnId, bytes: &[u8]) -> bool {
        let Some(c) = self.conns.get_mut(&id) else { return false };
        c.out.extend_from_slice(bytes);
        c.closing = true;
        true
    }

    /// Appends entry `seq` to the batch for `id`, opening one if needed.
    /// Returns whether the batch reached [`BATCH_BYTES_MAX`] (it should be
    /// sealed), or None if `id` is not open.
    pub fn push_entry(
        &mut self,
        id: ConnId,
        epoch: Epoch,
        seq: Seq,
        kind: EntryKind,
        body_len: usize,
        fill: impl FnOnce(&mut Vec<u8>),
    ) -> Option<bool> {
        // Entries go to one channel at a time; a batch for an old one is
        // dropped with that channel (`remove`).
        assert!(self.batch.as_ref().is_none_or(|(b, _)| *b == id), "a batch is open for another connection");
        let c = self.conns.get_mut(&id)?;
        let (_, bw) = self.batch.get_or_insert_with(|| (id, BatchWriter::begin(&mut c.out, epoch, seq)));
        assert_eq!(bw.next_seq(), seq, "entries must reach the channel contiguously");
        bw.push_with(&mut c.out, kind, body_len, fill);
        Some(bw.bytes(&c.out) >= BATCH_BYTES_MAX)
    }

    /// The writer's turn: everything queued for `id` (swapped with `spare`),
    /// and whether the connection closes once it is written. The open batch
    /// must be sealed first. None if `id` is not open.
    pub fn take(&mut self, id: ConnId, spare: Vec<u8>) -> Option<(Vec<u8>, bool)> {
        debug_assert!(self.batch.as_ref().is_none_or(|(c, _)| *c != id), "taking a buffer with an open batch");
        let c = self.conns.get_mut(&id)?;
        Some((std::mem::replace(&mut c.out, spare), c.closing))
    }
}

/// A frame header on a channel of `epoch`.
pub fn header(epoch: Epoch, seq: Seq, kind: Kind) -> FrameHeader {
    FrameHeader { epoch, seq, kind }
}
