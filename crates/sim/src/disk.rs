//! The simulated disks of durable runs (`SimConfig::durable`): each node
//! keeps one [`MemStorage`] for its whole life, across incarnations, and
//! each incarnation performs its replica's `DiskReq`s on it as a real
//! node's disk thread (`understudy-node`'s `disk_thread.rs`) does — appends
//! in order, a sync that answers `Synced`, a reset that discards every file,
//! snapshots written in the background, then the log they cover compacted.
//! Everything that takes time in a real node (an fsync, a snapshot's write)
//! is a scheduled action of the incarnation, so a crash in between finds
//! the disk as a real crash would: unsynced bytes, a snapshot still a
//! `.tmp`, an answer never given.
//!
//! A kill -9 leaves the disk as it is (the OS still holds the page cache);
//! a power cut calls [`MemStorage::crash`]: unsynced bytes lost, the last
//! write torn, and sometimes a sector rotted. A restart recovers the node
//! from its disk with the node crate's own `disk::load`.

use understudy_durable::{discard_all, CrashFaults, Fsync, LogWriter, SnapshotFileWriter};
use understudy_node::disk::{DiskDone, DiskReq};

use crate::disk_state::{Life, PendingSnapshot, SnapStep};
use crate::machine::{fresh, SEGMENT_BYTES, SNAPSHOT_CHUNK_BYTES};
use crate::world::{Action, World};

/// Any I/O error of a `MemStorage` is a failed run: the simulated disk
/// injects faults only at crashes, so an error means the log's code (or
/// this model) used a file wrongly.
fn io<T>(node: usize, what: &str, r: std::io::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("n{node}'s simulated disk failed ({what}): {e}"))
}

impl World {
    fn life(&mut self, node: usize) -> Option<&mut Life> {
        self.nodes[node].disk.as_mut().and_then(|d| d.life.as_mut())
    }

    /// Performs the replica's disk requests of one step, in order, as the
    /// disk thread does; answers come later, as scheduled actions.
    pub fn perform_disk(&mut self, node: usize, reqs: Vec<DiskReq>, wake: bool) -> Result<(), String> {
        let inc = self.nodes[node].inc;
        if !reqs.is_empty() || wake {
            assert!(self.nodes[node].disk.is_some(), "n{node} asked for a disk it does not have (a run without `durable`)");
        }
        for req in reqs {
            let Some(life) = self.life(node) else {
                return Err(format!("n{node} asked its disk for {req:?} while it has none open"));
            };
            match req {
                DiskReq::Append { epoch, first, last, payload } => {
                    io(node, "append", life.log.append(epoch, first, last, &payload))?;
                }
                DiskReq::Sync => self.schedule_sync(node, inc),
                DiskReq::Whole => io(node, "unmark", understudy_durable::clear_incomplete(&life.storage))?,
                DiskReq::Reset { gen, after } => {
                    // A snapshot being written belongs to the old state: it
                    // finishes first (the thread joins it), so that
                    // discarding removes its file too; it is not answered.
                    let (pending, storage) = (life.snapshot.take(), life.storage.clone());
                    if let Some(p) = pending {
                        self.snapshot_written(node, p)?;
                    }
                    io(node, "discard", discard_all(&storage))?;
                    let log = io(node, "new log", LogWriter::create(storage, Fsync::Always, inc, after, SEGMENT_BYTES))?;
                    let life = self.life(node).expect("checked");
                    life.log = log;
                    life.gen = gen;
                    // The thread answers a reset with a sync of the new log.
                    self.schedule_sync(node, inc);
                }
                DiskReq::Snapshot { gen, epoch, seq, writer } => {
                    if gen != life.gen {
                        continue; // of a state the disk no longer holds
                    }
                    if life.snapshot.is_some() {
                        return Err(format!(
                            "n{node} asked for a snapshot at seq {seq} while one of the same disk generation {gen} is being written"
                        ));
                    }
                    io(node, "rotate", life.log.rotate())?;
                    let id = life.next_snapshot;
                    life.next_snapshot += 1;
                    let storage = life.storage.clone();
                    life.snapshot = Some(PendingSnapshot { storage, id, gen, epoch, seq, writer: Some(writer), file: None });
                    let d = self.rng.range(1, 4);
                    self.at(d, Action::DiskSnapshot { node, inc, id, step: SnapStep::Write });
                }
            }
        }
        if wake {
            if let Some(life) = self.life(node).filter(|l| !l.flush_pending) {
                life.flush_pending = true;
                let d = self.rng.range(0, 1);
                self.at(d, Action::DiskFlush { node, inc });
            }
        }
        Ok(())
    }

    fn schedule_sync(&mut self, node: usize, inc: u64) {
        let life = self.life(node).expect("a sync is asked of an open disk");
        if !life.sync_pending {
            life.sync_pending = true;
            let d = self.rng.range(0, 3);
            self.at(d, Action::DiskSync { node, inc });
        }
    }

    /// The fsync runs now: everything appended by now is durable.
    pub fn disk_sync(&mut self, node: usize) -> Result<(), String> {
        let Some(life) = self.life(node) else { return Ok(()) };
        life.sync_pending = false;
        let gen = life.gen;
        let upto = io(node, "sync", life.log.sync())?;
        self.nodes[node].rep.disk_done(DiskDone::Synced { gen, upto });
        self.after(node)
    }

    /// The runtime's disk task: the primary's open batch goes to the disk.
    pub fn disk_flush(&mut self, node: usize) -> Result<(), String> {
        let Some(life) = self.life(node) else { return Ok(()) };
        life.flush_pending = false;
        self.nodes[node].rep.flush_disk();
        self.after(node)
    }

    /// A step of snapshot `id`'s write, unless a reset finished it already.
    pub fn disk_snapshot(&mut self, node: usize, id: u64, step: SnapStep) -> Result<(), String> {
        let inc = self.nodes[node].inc;
        let Some(life) = self.life(node) else { return Ok(()) };
        if life.snapshot.as_ref().is_none_or(|p| p.id != id) {
            return Ok(());
        }
        match step {
            SnapStep::Write => {
                let p = life.snapshot.as_mut().expect("checked");
                Self::write_chunks(node, p)?;
                let d = self.rng.range(1, 4);
                self.at(d, Action::DiskSnapshot { node, inc, id, step: SnapStep::Finish });
                Ok(())
            }
            SnapStep::Finish => {
                let p = life.snapshot.take().expect("checked");
                let (gen, seq) = (p.gen, p.seq);
                let bytes = self.snapshot_written(node, p)?;
                let life = self.life(node).expect("checked");
                if gen != life.gen {
                    return Ok(());
                }
                let freed = io(node, "compact", life.log.compact(seq))?;
                self.nodes[node].rep.disk_done(DiskDone::SnapshotWritten { gen, seq, bytes, freed });
                self.after(node)
            }
        }
    }

    fn write_chunks(node: usize, p: &mut PendingSnapshot) -> Result<(), String> {
        if p.file.is_some() {
            return Ok(());
        }
        let storage = p.storage.clone();
        let mut file = io(node, "snapshot begin", SnapshotFileWriter::begin(storage, p.epoch, p.seq))?;
        let mut writer = p.writer.take().expect("a snapshot is written once");
        let mut chunk = Vec::with_capacity(SNAPSHOT_CHUNK_BYTES);
        loop {
            chunk.clear();
            if !writer.next_chunk(&mut chunk, SNAPSHOT_CHUNK_BYTES) {
                break;
            }
            io(node, "snapshot chunk", file.chunk(&chunk))?;
        }
        p.file = Some(file);
        Ok(())
    }

    /// Completes a snapshot's file (synced and renamed into place); returns
    /// its size.
    fn snapshot_written(&mut self, node: usize, mut p: PendingSnapshot) -> Result<u64, String> {
        Self::write_chunks(node, &mut p)?;
        io(node, "snapshot finish", p.file.take().expect("written").finish())
    }
}

impl World {
    /// The process is gone: its disk thread with it. Syncs and snapshots
    /// it had scheduled find no disk and do nothing.
    pub fn disk_down(&mut self, node: usize) {
        if let Some(d) = self.nodes[node].disk.as_mut() {
            d.life = None;
        }
    }

    /// The machine loses power: what was not synced is lost, the last write
    /// may be torn, and with `corrupt` a sector of some file rots.
    pub fn disk_power_loss(&mut self, node: usize, corrupt: bool) {
        let Some(d) = self.nodes[node].disk.as_ref() else { return };
        assert!(d.life.is_none(), "n{node} loses power while its process runs");
        let storage = d.storage.clone();
        let faults = CrashFaults { torn_tail: true, corrupt_sector: corrupt };
        storage.crash(faults, &mut || self.rng.next_u64());
        if corrupt {
            self.note(format!("n{node}: a sector of its disk rots"));
        }
    }

    /// A durable node starts: its state is recovered from its disk (as
    /// `understudy_node::run::open_disk` does) and its disk thread opened
    /// after what was recovered, before `Replica::start`.
    pub fn recover_disk(&mut self, node: usize) -> Result<(), String> {
        let inc = self.nodes[node].inc;
        let Some(d) = self.nodes[node].disk.as_ref() else { return Ok(()) };
        assert!(d.life.is_none(), "n{node} starts with its previous disk thread still open");
        let storage = d.storage.clone();
        let loaded = match understudy_node::disk::load(&storage, &fresh) {
            Ok(l) => l,
            Err(why) => {
                // A real node refuses to start ("move the directory away to
                // start this node empty"); the operator does just that.
                self.note(format!("n{node} cannot recover its disk: {why}; the operator moves its directory away"));
                io(node, "discard", discard_all(&storage))?;
                self.disk_wipes += 1;
                understudy_node::disk::load(&storage, &fresh).map_err(|e| format!("n{node}: an empty disk does not load: {e}"))?
            }
        };
        for r in &loaded.reports {
            self.note(format!("n{node}: recovering its disk: {r}"));
        }
        if loaded.last_seq > 0 {
            self.recoveries += 1;
            self.note(format!(
                "n{node} recovered seq {} of epoch {} from its disk ({})",
                loaded.last_seq,
                loaded.epoch,
                if loaded.complete { "complete" } else { "not known to be complete" }
            ));
        }
        let log = io(node, "open log", LogWriter::create(storage.clone(), Fsync::Always, inc, loaded.last_seq, SEGMENT_BYTES))?;
        let life = Life { storage, log, gen: 0, sync_pending: false, flush_pending: false, snapshot: None, next_snapshot: 0 };
        self.nodes[node].disk.as_mut().expect("checked").life = Some(life);
        self.nodes[node].rep.recovered(loaded);
        Ok(())
    }
}
