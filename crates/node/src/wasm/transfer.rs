//! State transfer of a WebAssembly guest to a joiner (DESIGN §3, "FT
//! VMotion's live copy"), both sides.
//!
//! ```text
//! stream := header chunk, then body chunks
//! header := kind:u8 module:bytes       the module the primary's guest runs
//! kind   := 1 live   body = snapshot records (hypervisor `snapshot.rs`)
//!         | 2 log    body = the retained log from the guest's start
//!         | 3 fresh  body = the mapped directories' records (file and
//!                    tree records): the primary has not started its guest
//! ```
//!
//! A guest running the Asyncify-transformed module is snapshotted live: the
//! joiner resumes it where the primary's was and replays only the entries
//! after the snapshot, so a join costs O(state) and nothing is retained. A
//! guest that could not be transformed (no `wasm-opt`, a module that
//! changes its tables) is joined the old way: the joiner replays the log
//! retained since the guest started.
//!
//! A command-style guest (no listener) starts only once its backup is in
//! sync: a node that joins before it started gets a *fresh* transfer — the
//! module and the mapped directories — and starts the same guest from its
//! beginning, replaying the log from its first entry.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

use understudy_core::{Seq, SnapshotError, SnapshotWriter};
use understudy_hypervisor::snapshot::Record;
use understudy_hypervisor::SnapshotStream;
use understudy_wire::codec::{put_bytes, Reader};

pub const KIND_LIVE: u8 = 1;
pub const KIND_LOG: u8 = 2;
pub const KIND_FRESH: u8 = 3;

/// Records a restoring guest may have waiting before the loader blocks.
const RECORDS_QUEUED_MAX: usize = 8;

fn header(kind: u8, module: &[u8], out: &mut Vec<u8>) {
    out.push(kind);
    put_bytes(out, module);
}

/// Primary: a live snapshot of the running guest.
pub struct LiveWriter {
    pub module: Arc<[u8]>,
    pub stream: Option<SnapshotStream>,
    pub node: String,
    header_sent: bool,
}

impl LiveWriter {
    pub fn new(module: Arc<[u8]>, stream: Option<SnapshotStream>, node: String) -> LiveWriter {
        LiveWriter { module, stream, node, header_sent: false }
    }
}

impl SnapshotWriter for LiveWriter {
    fn next_chunk(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> bool {
        if !self.header_sent {
            self.header_sent = true;
            header(KIND_LIVE, &self.module, out);
            return true;
        }
        let Some(s) = &mut self.stream else {
            log::warn!("{}: another snapshot of the guest is in progress: this join's snapshot ends empty", self.node);
            return false;
        };
        match s.next_chunk(out, max_bytes) {
            Ok(true) => true,
            Ok(false) => {
                let pause = s.pause(std::time::Duration::from_secs(1));
                if let Some(p) = pause {
                    crate::metrics::GUEST_SNAPSHOT_PAUSE.observe_n(p, 1);
                }
                let files = if s.disk_precopied_bytes + s.disk_paused_bytes > 0 {
                    format!(
                        "; files: {} while it ran, {} in the pause",
                        crate::progress::human(s.disk_precopied_bytes),
                        crate::progress::human(s.disk_paused_bytes)
                    )
                } else {
                    String::new()
                };
                log::info!(
                    "{}: live snapshot of the guest sent: {} pre-copied in {} rounds while it ran, {} copied in a pause of {}{files}",
                    self.node,
                    crate::progress::human(s.precopied_bytes),
                    s.rounds,
                    crate::progress::human(s.paused_bytes),
                    pause.map_or_else(|| "?".to_string(), |p| format!("{:.2} ms", p.as_secs_f64() * 1e3))
                );
                self.stream = None;
                false
            }
            Err(e) => {
                log::warn!("{}: live snapshot of the guest failed: {e}", self.node);
                self.stream = None;
                false
            }
        }
    }

    fn bytes_hint(&self) -> u64 {
        self.stream.as_ref().map_or(0, |s| s.bytes_hint()) + self.module.len() as u64
    }
}

/// Primary: a guest not started yet — the module and the directories,
/// both made on the sender's thread (the module may still be in the
/// making; the directories are copied as they are: nothing changes them
/// before the guest starts).
pub struct FreshWriter {
    shared: Arc<super::WasmShared>,
    records: Option<Result<std::collections::VecDeque<Record>, String>>,
    header_sent: bool,
}

impl FreshWriter {
    pub fn new(shared: Arc<super::WasmShared>) -> FreshWriter {
        FreshWriter { shared, records: None, header_sent: false }
    }
}

impl SnapshotWriter for FreshWriter {
    fn next_chunk(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> bool {
        if !self.header_sent {
            self.header_sent = true;
            let module = self.shared.fresh_module.get(&self.shared.guest.module);
            header(KIND_FRESH, &module, out);
            let guest = understudy_hypervisor::GuestConfig { module, ..self.shared.guest.clone() };
            self.records = Some(understudy_hypervisor::snapshot_dirs(&guest).map(Into::into).map_err(|e| e.to_string()));
            return true;
        }
        let records = match &mut self.records {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                log::warn!(
                    "{}: copying the guest's directories for a joiner failed: {e}; the join ends without them",
                    self.shared.node
                );
                return false;
            }
            None => return false,
        };
        let mut any = false;
        while let Some(r) = records.pop_front() {
            r.encode(out);
            any = true;
            if out.len() >= max_bytes {
                break;
            }
        }
        any
    }

    fn bytes_hint(&self) -> u64 {
        let files: u64 = match &self.records {
            Some(Ok(r)) => r.iter().map(|r| if let Record::FileData { data, .. } = r { data.len() as u64 } else { 0 }).sum(),
            _ => 0,
        };
        files + self.shared.guest.module.len() as u64
    }
}

/// Primary: the retained log, for a guest that cannot be snapshotted.
pub struct LogWriter {
    pub module: Arc<[u8]>,
    pub log: Box<dyn SnapshotWriter>,
    header_sent: bool,
}

impl LogWriter {
    pub fn new(module: Arc<[u8]>, log: Box<dyn SnapshotWriter>) -> LogWriter {
        LogWriter { module, log, header_sent: false }
    }
}

impl SnapshotWriter for LogWriter {
    fn next_chunk(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> bool {
        if !self.header_sent {
            self.header_sent = true;
            header(KIND_LOG, &self.module, out);
            return true;
        }
        self.log.next_chunk(out, max_bytes)
    }

    fn bytes_hint(&self) -> u64 {
        self.log.bytes_hint() + self.module.len() as u64
    }
}

/// Joiner: what the header said.
pub fn parse_header(chunk: &[u8]) -> Result<(u8, Arc<[u8]>), SnapshotError> {
    let mut r = Reader::new(chunk, "guest snapshot header");
    let bad = |e: understudy_wire::WireError| SnapshotError(e.to_string());
    let kind = r.u8().map_err(bad)?;
    if !matches!(kind, KIND_LIVE | KIND_LOG | KIND_FRESH) {
        return Err(SnapshotError(format!("guest snapshot of unknown kind {kind}")));
    }
    let module: Arc<[u8]> = r.bytes().map_err(bad)?.into();
    r.finish().map_err(bad)?;
    Ok((kind, module))
}

/// Joiner: live snapshot records on their way to the restoring guest's
/// thread (`understudy_hypervisor::run_restored`), which writes them
/// straight into its memory.
pub struct RecordPipe {
    tx: Option<SyncSender<Result<Record, String>>>,
    /// Seq of the snapshot, once its final record went through.
    pub seq: Option<Seq>,
    /// A fresh transfer: no final record; the stream's end completes it.
    fresh: bool,
}

impl RecordPipe {
    /// A pipe and the guest thread's end of it.
    pub fn new() -> (RecordPipe, Receiver<Result<Record, String>>) {
        let (tx, rx) = sync_channel(RECORDS_QUEUED_MAX);
        (RecordPipe { tx: Some(tx), seq: None, fresh: false }, rx)
    }

    /// A pipe of a fresh transfer (only the directories' records).
    pub fn fresh() -> (RecordPipe, Receiver<Result<Record, String>>) {
        let (mut p, rx) = RecordPipe::new();
        p.fresh = true;
        (p, rx)
    }

    /// Decodes a chunk's records and passes them on.
    pub fn push_chunk(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
        let mut r = Reader::new(chunk, "guest snapshot");
        while !r.is_empty() {
            let rec = Record::decode(&mut r).map_err(|e| SnapshotError(e.to_string()))?;
            if self.seq.is_some() {
                return Err(SnapshotError("a record after the final one".into()));
            }
            if let Record::Final(f) = &rec {
                if self.fresh {
                    return Err(SnapshotError("a running guest's final record in a fresh transfer".into()));
                }
                self.seq = Some(f.seq);
            }
            let Some(tx) = &self.tx else { return Err(SnapshotError("the restoring guest is gone".into())) };
            if tx.send(Ok(rec)).is_err() {
                return Err(SnapshotError("the restoring guest stopped (see the log)".into()));
            }
        }
        Ok(())
    }

    /// The stream ended: complete only after the final record.
    pub fn finish(&mut self) -> Result<Seq, SnapshotError> {
        if self.fresh {
            // Ending the stream tells the guest's thread the directories are
            // complete; the guest starts at the log's beginning.
            self.tx.take();
            return Ok(0);
        }
        match self.seq {
            Some(s) => Ok(s),
            None => {
                if let Some(tx) = self.tx.take() {
                    let _ = tx.send(Err("the snapshot stream ended early".into()));
                }
                Err(SnapshotError("the live snapshot ended before its final record".into()))
            }
        }
    }
}
