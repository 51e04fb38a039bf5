//! The replica's side of durability (`--appendfsync`), written once for
//! every runtime: which entries go to this node's disk and when, what the
//! disk's answers mean for the protocol core, and the recovery of a
//! machine from its disk at start. The disk itself (files, fsync, the
//! snapshots' compaction) is behind [`Io::disk`]: a thread of its own in a
//! real node (`disk_thread`), a simulated disk in the simulator.
//!
//! The primary logs every seq the core allocates (operations and barrier
//! entries) in batches of its own, one per turn of the event loop (group
//! commit: one fsync covers every request that arrived meanwhile); a
//! backup logs the batches it receives as they came. A join starts the disk
//! over: the old state is discarded, the new snapshot is written from the
//! installed machine, and until it is on disk nothing counts as durable.

use std::sync::Arc;

use understudy_core::{Epoch, Event, Seq};
use understudy_durable::{recover, SnapshotFileReader, Storage};
use understudy_wire::codec::put_varint;
use understudy_wire::entry::EntryKind;

use crate::ctx::TimeFloor;
pub use crate::disk_state::{DiskDone, DiskReq, DiskStats};
use crate::exec::ExecQueue;
use crate::io::{Io, BATCH_BYTES_MAX};
use crate::machine::Machine;
use crate::replica::Replica;

/// A machine loaded from its disk at start.
pub struct Loaded<M> {
    pub machine: M,
    pub epoch: Epoch,
    pub last_seq: Seq,
    /// Written with `always` and recovered whole (see `understudy_durable`).
    pub complete: bool,
    pub floor: TimeFloor,
    /// The epoch of the last entry, when the log holds it (a state that
    /// ends in its snapshot does not say, and is not offered for a partial
    /// catch-up).
    pub last_entry_epoch: Option<Epoch>,
    /// What recovery found and did, for the operator.
    pub reports: Vec<String>,
}

/// Loads the newest snapshot and replays the log after it into a machine
/// made by `factory`. Errors name the file.
pub fn load<M: Machine, S: Storage>(storage: &S, factory: &dyn Fn() -> M) -> Result<Loaded<M>, String> {
    let rec = recover(storage).map_err(|e| format!("recovering the log: {e}"))?;
    let mut machine = factory();
    let mut base = 0;
    let mut epoch = rec.last_epoch;
    if let Some((name, snap_epoch, seq)) = &rec.snapshot {
        let mut reader = SnapshotFileReader::open(storage.clone(), name).map_err(|e| format!("snapshot {name}: {e}"))?;
        let mut chunk = Vec::new();
        while reader.next_chunk(&mut chunk).map_err(|e| format!("snapshot {name}: {e}"))? {
            machine.restore_chunk(&chunk).map_err(|e| format!("snapshot {name}: {e}"))?;
        }
        machine.restore_finish().map_err(|e| format!("snapshot {name}: {e}"))?;
        base = *seq;
        epoch = epoch.max(*snap_epoch);
    }
    let mut queue = ExecQueue::default();
    let mut floor = TimeFloor::default();
    let mut last = base;
    let last_entry_epoch = rec.records.last().map(|r| r.epoch);
    for r in rec.records {
        assert!(
            r.first <= last + 1 && r.last >= last.max(r.first),
            "recovery returned records {}..={} after seq {last}",
            r.first,
            r.last
        );
        queue.push(r.first, r.payload);
        queue.skip_through(last);
        while !queue.is_empty() {
            match machine.replay(&mut queue, &mut floor, 4096).map_err(|d| format!("replaying the log: {d}"))? {
                Some(seq) => last = seq,
                None => break,
            }
        }
        assert_eq!(last, r.last, "a record's entries replayed short");
    }
    assert_eq!(last, rec.last_seq, "the log recovered through {} but replayed through {last}", rec.last_seq);
    Ok(Loaded { machine, epoch, last_seq: last, complete: rec.complete, floor, last_entry_epoch, reports: rec.reports })
}

impl<M: Machine, I: Io> Replica<M, I> {
    /// Before [`Replica::start`]: the machine and position loaded from disk.
    pub fn recovered(&mut self, loaded: Loaded<M>) {
        self.machine = loaded.machine;
        self.record.floor = loaded.floor;
        self.core.recovered(loaded.epoch, loaded.last_seq, loaded.complete);
        self.disk.next = loaded.last_seq + 1;
        self.disk.synced = loaded.last_seq;
        self.disk.stats.synced_seq = loaded.last_seq;
        self.disk.resume = loaded.last_entry_epoch.map(|e| (e, loaded.last_seq));
    }

    /// Primary: entry `seq` goes into the open disk batch (after barrier
    /// entries for any seq the core allocated without an entry).
    pub(crate) fn disk_entry(&mut self, seq: Seq, kind: EntryKind, body_len: usize, fill: impl FnOnce(&mut Vec<u8>)) {
        if !self.disk.on {
            return;
        }
        self.disk_fill(seq - 1);
        self.disk_push(seq, kind, body_len, fill);
    }

    fn disk_push(&mut self, seq: Seq, kind: EntryKind, body_len: usize, fill: impl FnOnce(&mut Vec<u8>)) {
        assert_eq!(seq, self.disk.next, "the disk log must hold every seq in order");
        let epoch = self.core.epoch();
        if self.disk.open.as_ref().is_some_and(|(_, e)| *e != epoch) {
            // A batch holds one epoch's entries (its label).
            self.seal_disk_batch();
        }
        let d = &mut self.disk;
        let first = d.open.is_none();
        d.open.get_or_insert((seq, epoch));
        d.batch.push(kind as u8);
        put_varint(&mut d.batch, body_len as u64);
        let before = d.batch.len();
        fill(&mut d.batch);
        assert_eq!(d.batch.len() - before, body_len, "entry body length announced wrong");
        d.next = seq + 1;
        if d.batch.len() >= BATCH_BYTES_MAX {
            self.seal_disk_batch();
        } else if first {
            self.io.wake_disk();
        }
    }

    /// Empty entries for the seqs up to `upto` the core allocated without
    /// one (barriers of reads that no backup carried).
    fn disk_fill(&mut self, upto: Seq) {
        while self.disk.next <= upto {
            self.disk_push(self.disk.next, EntryKind::Barrier, 0, |_| {});
        }
    }

    /// Primary: seqs the core allocated without an entry (a read's barrier
    /// once no backup gates) get theirs, so that the disk log has no gap
    /// and the read is released once the disk holds it.
    pub(crate) fn disk_catch_up(&mut self) {
        if self.disk.on && self.core.is_primary() && self.core.last_seq() >= self.disk.next {
            let last = self.core.last_seq();
            self.disk_fill(last);
        }
    }

    /// The machine was thrown away (a failed join, a switchover's rejoin):
    /// answers about the old state no longer concern the core. The files
    /// stay until the next join's reset.
    pub(crate) fn disk_forget(&mut self) {
        let d = &mut self.disk;
        d.gen += 1;
        d.open = None;
        d.batch.clear();
        d.awaiting_snapshot = true;
        d.snapshot_in_flight = false;
        d.backlog.clear();
        d.resume = None;
    }

    /// The disk's turn: every seq the core allocated goes into the batch,
    /// and the batch to the disk with a sync.
    pub fn flush_disk(&mut self) {
        if !self.disk.on {
            return;
        }
        self.disk_catch_up();
        self.seal_disk_batch();
        self.maybe_snapshot();
    }

    /// The open batch goes to the disk (and the backlog), with a sync.
    /// Never fills (`disk_push` calls it).
    fn seal_disk_batch(&mut self) {
        let Some((first, epoch)) = self.disk.open.take() else { return };
        let last = self.disk.next - 1;
        let payload: Arc<[u8]> = Arc::from(&self.disk.batch[..]);
        self.disk.batch.clear();
        self.disk.since_snapshot += payload.len() as u64;
        self.disk.backlog.push(epoch, first, last, &payload);
        self.io.disk(DiskReq::Append { epoch, first, last, payload });
        self.io.disk(DiskReq::Sync);
    }

    /// Backup: a batch the core accepted goes to the disk as received.
    pub(crate) fn disk_received(&mut self, epoch: Epoch, first: Seq, last: Seq, payload: &[u8]) {
        if !self.disk.on {
            return;
        }
        assert_eq!(first, self.disk.next, "received entries must follow the disk log");
        self.disk.next = last + 1;
        self.disk.since_snapshot += payload.len() as u64;
        let payload: Arc<[u8]> = Arc::from(payload);
        self.disk.backlog.push(epoch, first, last, &payload);
        self.io.disk(DiskReq::Append { epoch, first, last, payload });
    }

    /// Backup: after a read of frames, one sync for all of them.
    pub(crate) fn disk_sync_received(&mut self) {
        if self.disk.on && self.disk.next > self.disk.synced + 1 {
            self.io.disk(DiskReq::Sync);
            self.maybe_snapshot();
        }
    }

    /// A join (or a reset): the disk starts over after `after`; nothing is
    /// durable until the join's snapshot is written.
    pub(crate) fn disk_reset(&mut self, after: Seq) {
        if !self.disk.on {
            return;
        }
        let d = &mut self.disk;
        d.gen += 1;
        d.open = None;
        d.batch.clear();
        d.next = after + 1;
        d.synced = after;
        d.awaiting_snapshot = true;
        d.snapshot_in_flight = false;
        d.since_snapshot = 0;
        d.backlog.clear();
        d.resume = None;
        let gen = d.gen;
        self.io.disk(DiskReq::Reset { gen, after });
    }

    /// Backup: the join's snapshot is installed: write it to disk.
    pub(crate) fn disk_joined_snapshot(&mut self, seq: Seq) {
        if self.disk.on && self.disk.awaiting_snapshot && !self.disk.snapshot_in_flight {
            self.disk_snapshot(seq);
        }
    }

    fn disk_snapshot(&mut self, seq: Seq) {
        let (gen, epoch, writer) = (self.disk.gen, self.core.epoch(), self.machine.snapshot());
        self.disk.snapshot_in_flight = true;
        self.disk.since_snapshot = 0;
        self.disk.last_snapshot_at = self.io.now();
        self.io.disk(DiskReq::Snapshot { gen, epoch, seq, writer });
    }

    /// A snapshot once the log since the last one passed the bound.
    fn maybe_snapshot(&mut self) {
        let (d, now) = (&self.disk, self.io.now());
        let by_time =
            d.snapshot_every_ms > 0 && d.since_snapshot > 0 && now.saturating_sub(d.last_snapshot_at) >= d.snapshot_every_ms;
        if d.awaiting_snapshot || d.snapshot_in_flight || (d.since_snapshot < d.snapshot_every && !by_time) {
            return;
        }
        // The machine's state is at the executed seq (a primary's is its last).
        let seq = self.core.executed();
        if seq == 0 || (!self.core.is_primary() && !self.transfer.loaded) {
            return;
        }
        self.disk_snapshot(seq);
    }

    /// The disk's answer.
    pub fn disk_done(&mut self, done: DiskDone) {
        match done {
            DiskDone::Synced { gen, upto } if gen == self.disk.gen => {
                self.disk.synced = self.disk.synced.max(upto);
                self.disk.stats.synced_seq = self.disk.synced;
                self.disk.stats.syncs += 1;
                if !self.disk.awaiting_snapshot {
                    self.durable_now(self.disk.synced);
                }
            }
            DiskDone::SnapshotWritten { gen, seq, bytes, freed } if gen == self.disk.gen => {
                self.disk.snapshot_in_flight = false;
                let s = &mut self.disk.stats;
                s.snapshots += 1;
                s.last_snapshot_seq = seq;
                s.last_snapshot_bytes = bytes;
                s.last_snapshot_unix_s = crate::ctx::wall_us() / 1_000_000;
                self.log(
                    log::Level::Info,
                    &format!("snapshot at seq {seq} on disk ({bytes} bytes); {freed} bytes of log deleted"),
                );
                if std::mem::take(&mut self.disk.awaiting_snapshot) {
                    let upto = self.disk.synced.max(seq);
                    self.durable_now(upto);
                }
            }
            DiskDone::Synced { .. } | DiskDone::SnapshotWritten { .. } => {}
            DiskDone::Failed(why) => self.halt(&format!("the disk failed: {why}")),
        }
    }

    /// The disk holds `upto`: a primary's gate moves at once; a backup's
    /// ack saying so goes out now, not at the next tick (which would add up
    /// to a tick's 10 ms to every write with `always`).
    pub(crate) fn durable_now(&mut self, upto: Seq) {
        self.feed(Event::Durable { upto });
        if !self.core.is_primary() {
            self.tick();
        }
    }

    /// What the disk holds, for INFO and metrics (None: no `--appendfsync`).
    pub fn disk_stats(&self) -> Option<&DiskStats> {
        self.disk.on.then_some(&self.disk.stats)
    }
}
