//! The data of a simulated node's disk (a leaf: the world holds it, the
//! `disk` module acts on it): the storage a node keeps across its lives,
//! and what one life's disk thread holds.

use understudy_core::{Epoch, Seq, SnapshotWriter};
use understudy_durable::{LogWriter, MemStorage, SnapshotFileWriter};

/// One node's disk.
#[derive(Default)]
pub struct SimDisk {
    /// Shared by every incarnation of the node, as a directory is.
    pub storage: MemStorage,
    /// What the current incarnation's disk thread holds; None while the
    /// node is down (a crash drops it with everything else in memory).
    pub(crate) life: Option<Life>,
}

/// The disk thread of one incarnation.
pub(crate) struct Life {
    pub(crate) storage: MemStorage,
    pub(crate) log: LogWriter<MemStorage>,
    /// The generation answers carry (set by `Reset`).
    pub(crate) gen: u64,
    /// A `DiskSync` is scheduled: one fsync covers every request waiting
    /// when it runs (group commit), so another request adds nothing.
    pub(crate) sync_pending: bool,
    /// A `DiskFlush` is scheduled (the runtime's `Notify` coalesces too).
    pub(crate) flush_pending: bool,
    pub(crate) snapshot: Option<PendingSnapshot>,
    /// Tells this incarnation's snapshots apart in their scheduled actions.
    pub(crate) next_snapshot: u64,
}

/// A snapshot being written (by its own thread in a real node).
pub(crate) struct PendingSnapshot {
    pub(crate) storage: MemStorage,
    pub(crate) id: u64,
    pub(crate) gen: u64,
    pub(crate) epoch: Epoch,
    pub(crate) seq: Seq,
    pub(crate) writer: Option<Box<dyn SnapshotWriter>>,
    /// Begun and every chunk appended (unsynced, under its `.tmp` name).
    pub(crate) file: Option<SnapshotFileWriter<MemStorage>>,
}

/// What a scheduled snapshot action does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapStep {
    /// Begin the `.tmp` file and append every chunk.
    Write,
    /// Sync, rename, compact the log, answer.
    Finish,
}
