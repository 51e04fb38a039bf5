//! The disk of a real node: one thread owns the log's files in `--dir` so
//! that no write or fsync ever runs on the event loop. Requests arrive in
//! order; the thread performs every one that is waiting, then syncs once
//! for all of them (group commit: while one fsync runs, the next batches
//! gather). Snapshots are written by a thread of their own, so the log
//! keeps syncing meanwhile; once one is on disk the log before it is
//! deleted.

use std::io;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;
use understudy_core::{Epoch, Seq, SnapshotWriter};
use understudy_durable::{discard_all, FsStorage, Fsync, LogWriter, SnapshotFileWriter};

use crate::disk_state::{DiskDone, DiskReq};

/// What the disk thread is sent.
pub(crate) enum Msg {
    Req(DiskReq),
    /// From the snapshot's thread: the file at `seq` is written (or not).
    SnapshotDone {
        gen: u64,
        seq: Seq,
        result: io::Result<u64>,
    },
}

/// Starts the disk thread; its log continues after `after` (what was
/// recovered). Answers go to `done`.
pub(crate) fn spawn(
    storage: FsStorage,
    fsync: Fsync,
    incarnation: u64,
    after: Seq,
    segment_bytes: u64,
    done: UnboundedSender<DiskDone>,
) -> io::Result<Sender<Msg>> {
    let log = LogWriter::create(storage.clone(), fsync, incarnation, after, segment_bytes)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut disk = DiskThread {
        storage,
        log,
        fsync,
        incarnation,
        segment_bytes,
        gen: 0,
        want_sync: false,
        dirty: false,
        last_sync: Instant::now(),
        snapshot: None,
        to_self: tx.clone(),
        done,
    };
    std::thread::Builder::new().name("disk".into()).spawn(move || {
        if let Err(e) = disk.run(rx) {
            let _ = disk.done.send(DiskDone::Failed(e.to_string()));
        }
    })?;
    Ok(tx)
}

struct DiskThread {
    storage: FsStorage,
    log: LogWriter<FsStorage>,
    fsync: Fsync,
    incarnation: u64,
    segment_bytes: u64,
    gen: u64,
    /// `always`: the replica asked for a sync since the last one.
    want_sync: bool,
    /// Appended since the last sync.
    dirty: bool,
    last_sync: Instant,
    snapshot: Option<JoinHandle<()>>,
    to_self: Sender<Msg>,
    done: UnboundedSender<DiskDone>,
}

const EVERYSEC: Duration = Duration::from_secs(1);
/// Chunks a snapshot is written in.
const SNAPSHOT_CHUNK: usize = 1 << 20;

impl DiskThread {
    fn run(&mut self, rx: Receiver<Msg>) -> io::Result<()> {
        loop {
            let first = match self.fsync {
                Fsync::Everysec if self.dirty => match rx.recv_timeout(EVERYSEC.saturating_sub(self.last_sync.elapsed())) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return Ok(()),
                },
                _ => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => return Ok(()),
                },
            };
            if let Some(m) = first {
                self.handle(m)?;
                while let Ok(m) = rx.try_recv() {
                    self.handle(m)?;
                }
            }
            self.maybe_sync()?;
        }
    }

    fn handle(&mut self, m: Msg) -> io::Result<()> {
        match m {
            Msg::Req(DiskReq::Append { epoch, first, last, payload }) => {
                self.log.append(epoch, first, last, &payload)?;
                self.dirty = true;
            }
            Msg::Req(DiskReq::Sync) => self.want_sync = self.fsync == Fsync::Always,
            Msg::Req(DiskReq::Reset { gen, after }) => {
                // A snapshot being written belongs to the old state: let it
                // finish, so that discarding removes its file too.
                if let Some(h) = self.snapshot.take() {
                    let _ = h.join();
                }
                discard_all(&self.storage)?;
                self.log = LogWriter::create(self.storage.clone(), self.fsync, self.incarnation, after, self.segment_bytes)?;
                self.gen = gen;
                self.dirty = false;
                self.want_sync = self.fsync == Fsync::Always;
            }
            Msg::Req(DiskReq::Whole) => understudy_durable::clear_incomplete(&self.storage)?,
            Msg::Req(DiskReq::Snapshot { gen, epoch, seq, writer }) => {
                if gen != self.gen {
                    return Ok(());
                }
                if let Some(h) = self.snapshot.take() {
                    let _ = h.join();
                }
                self.log.rotate()?;
                self.snapshot = Some(self.write_snapshot(gen, epoch, seq, writer)?);
            }
            Msg::SnapshotDone { gen, seq, result } => {
                if let Some(h) = self.snapshot.take() {
                    let _ = h.join();
                }
                let bytes = result?;
                if gen == self.gen {
                    let freed = self.log.compact(seq)?;
                    let _ = self.done.send(DiskDone::SnapshotWritten { gen, seq, bytes, freed });
                }
            }
        }
        Ok(())
    }

    fn write_snapshot(
        &self,
        gen: u64,
        epoch: Epoch,
        seq: Seq,
        mut writer: Box<dyn SnapshotWriter>,
    ) -> io::Result<JoinHandle<()>> {
        let (storage, to_self) = (self.storage.clone(), self.to_self.clone());
        std::thread::Builder::new().name("disk-snapshot".into()).spawn(move || {
            let result = (|| {
                let mut file = SnapshotFileWriter::begin(storage, epoch, seq)?;
                let mut chunk = Vec::with_capacity(SNAPSHOT_CHUNK);
                loop {
                    chunk.clear();
                    if !writer.next_chunk(&mut chunk, SNAPSHOT_CHUNK) {
                        break;
                    }
                    file.chunk(&chunk)?;
                }
                file.finish()
            })();
            let _ = to_self.send(Msg::SnapshotDone { gen, seq, result });
        })
    }

    fn maybe_sync(&mut self) -> io::Result<()> {
        let due = match self.fsync {
            Fsync::Always => self.want_sync,
            Fsync::Everysec => self.dirty && self.last_sync.elapsed() >= EVERYSEC,
            Fsync::No => false,
        };
        if !due {
            return Ok(());
        }
        let upto = if self.dirty { self.log.sync()? } else { self.log.synced_seq() };
        self.dirty = false;
        self.want_sync = false;
        self.last_sync = Instant::now();
        let _ = self.done.send(DiskDone::Synced { gen: self.gen, upto });
        Ok(())
    }
}
