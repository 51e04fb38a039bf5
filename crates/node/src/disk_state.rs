//! The data of this node's disk, as the replica keeps it (a leaf module:
//! `disk` and `catchup` act on it, `replica` holds it, the runtimes
//! perform the requests): what is asked of the disk and what it answers,
//! the replica's bookkeeping, and the backlog a primary retains for
//! partial catch-ups.

use std::collections::VecDeque;
use std::sync::Arc;

use understudy_core::{Epoch, Seq, SnapshotWriter};

/// What the replica asks of its disk. Requests are performed in order.
pub enum DiskReq {
    /// Entries `first..=last` of `epoch`, encoded as a channel batch.
    Append { epoch: Epoch, first: Seq, last: Seq, payload: Arc<[u8]> },
    /// Make what was appended durable (with `always`; the other modes sync
    /// on their own schedule).
    Sync,
    /// A join: discard every file; the log starts over after `after`, and
    /// answers carry `gen` from now on.
    Reset { gen: u64, after: Seq },
    /// Write this snapshot (at `seq`) in the background, then delete the
    /// log it covers.
    Snapshot { gen: u64, epoch: Epoch, seq: Seq, writer: Box<dyn SnapshotWriter> },
    /// A partial catch-up continued the log on disk from the primary's:
    /// a cut an earlier recovery made no longer makes it incomplete.
    Whole,
}

impl std::fmt::Debug for DiskReq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiskReq::Append { epoch, first, last, payload } => {
                write!(f, "Append(epoch {epoch}, {first}..={last}, {} bytes)", payload.len())
            }
            DiskReq::Sync => write!(f, "Sync"),
            DiskReq::Reset { gen, after } => write!(f, "Reset(gen {gen}, after {after})"),
            DiskReq::Snapshot { gen, epoch, seq, .. } => write!(f, "Snapshot(gen {gen}, epoch {epoch}, seq {seq})"),
            DiskReq::Whole => write!(f, "Whole"),
        }
    }
}

/// What the disk answers.
#[derive(Debug)]
pub enum DiskDone {
    /// Every entry through `upto` is on disk.
    Synced { gen: u64, upto: Seq },
    /// The snapshot at `seq` is on disk; `freed` bytes of log were deleted.
    SnapshotWritten { gen: u64, seq: Seq, bytes: u64, freed: u64 },
    /// The disk failed: the node cannot keep its promise and halts.
    Failed(String),
}

/// The replica's bookkeeping of its disk.
#[derive(Default)]
pub(crate) struct Disk {
    pub(crate) on: bool,
    /// Bumped by every reset: answers of an earlier state are dropped.
    pub(crate) gen: u64,
    /// The primary's open batch: entries (kind, length, body) as in an
    /// `Entries` frame's payload, from `open`'s (first seq, epoch).
    pub(crate) batch: Vec<u8>,
    pub(crate) open: Option<(Seq, Epoch)>,
    /// The next seq the log expects: the disk holds every seq in order.
    pub(crate) next: Seq,
    pub(crate) synced: Seq,
    /// A join's snapshot is not on disk yet: nothing counts as durable.
    pub(crate) awaiting_snapshot: bool,
    pub(crate) snapshot_in_flight: bool,
    /// Log bytes since the last snapshot (`--snapshot-every-bytes`).
    pub(crate) since_snapshot: u64,
    pub(crate) snapshot_every: u64,
    /// ... or once this long passed since the last with some log written
    /// (`--snapshot-every-secs`, in ms; 0: never by time).
    pub(crate) snapshot_every_ms: u64,
    pub(crate) last_snapshot_at: understudy_core::Millis,
    /// Counters for INFO persistence and the metrics page.
    pub(crate) stats: DiskStats,
    /// The entries retained for partial catch-ups (`catchup`).
    pub(crate) backlog: Backlog,
    /// The (epoch, seq) of the last entry of the state recovered from this
    /// disk, offered to the primary when joining; gone once the state is
    /// replaced.
    pub(crate) resume: Option<(Epoch, Seq)>,
}

#[derive(Debug, Default, Clone)]
pub struct DiskStats {
    pub synced_seq: Seq,
    pub syncs: u64,
    pub snapshots: u64,
    pub last_snapshot_seq: Seq,
    pub last_snapshot_bytes: u64,
    /// When the last snapshot reached the disk (Unix seconds; 0: none yet).
    pub last_snapshot_unix_s: u64,
}

impl Disk {
    pub(crate) fn new(snapshot_every: u64, snapshot_every_ms: u64, backlog_bytes: usize) -> Disk {
        let backlog = Backlog::new(backlog_bytes);
        Disk { on: true, next: 1, snapshot_every, snapshot_every_ms, backlog, ..Disk::default() }
    }
}

/// The payload of a `JoinAccepted` frame that accepts a partial catch-up
/// (a full join's is empty).
pub const PARTIAL: &[u8] = &[1];

/// Recent batches of entries, contiguous, oldest first, bounded in bytes.
#[derive(Default)]
pub(crate) struct Backlog {
    pub(crate) batches: VecDeque<Retained>,
    pub(crate) bytes: usize,
    pub(crate) max: usize,
}

pub(crate) struct Retained {
    pub(crate) epoch: Epoch,
    pub(crate) first: Seq,
    pub(crate) last: Seq,
    pub(crate) payload: Arc<[u8]>,
}

impl Backlog {
    pub(crate) fn new(max: usize) -> Backlog {
        Backlog { max, ..Backlog::default() }
    }

    /// Retains a batch; one that does not follow the last starts over.
    pub(crate) fn push(&mut self, epoch: Epoch, first: Seq, last: Seq, payload: &Arc<[u8]>) {
        if self.max == 0 {
            return;
        }
        if self.batches.back().is_some_and(|b| b.last + 1 != first || b.epoch > epoch) {
            self.clear();
        }
        self.bytes += payload.len();
        self.batches.push_back(Retained { epoch, first, last, payload: payload.clone() });
        while self.bytes > self.max && self.batches.len() > 1 {
            let b = self.batches.pop_front().expect("more than one");
            self.bytes -= b.payload.len();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.batches.clear();
        self.bytes = 0;
    }

    /// The label of retained entry `seq`.
    pub(crate) fn epoch_of(&self, seq: Seq) -> Option<Epoch> {
        self.batches.iter().find(|b| b.first <= seq && seq <= b.last).map(|b| b.epoch)
    }

    pub(crate) fn last(&self) -> Option<Seq> {
        self.batches.back().map(|b| b.last)
    }
}
