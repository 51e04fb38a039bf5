//! Live snapshots of a running guest (DESIGN §3, "FT VMotion's live copy"):
//! everything that makes the guest what it is, captured at a host call
//! while the guest keeps its call stack, so another process can resume it
//! exactly there and replay the log from the snapshot's seq.
//!
//! # What is captured
//!
//! - linear memory, copied while the guest runs and then once more for the
//!   pages it wrote meanwhile (`dirty.rs`), as VMware's VMotion pre-copies;
//! - the call stack: the guest runs the Asyncify-transformed module
//!   (`asyncify.rs`); at a host call the host makes it unwind its stack into
//!   a region of its own linear memory (the *unwind region*, the last
//!   [`UNWIND_REGION_BYTES`] of memory, whose bytes are saved first and put
//!   back after the rewind, so the guest never sees them change), then
//!   rewind at once and go on with the call;
//! - mutable globals (exported by instrumentation), read before the unwind;
//! - the gate's state of the guest: its fd table, call and event counters,
//!   clock memory, fuel position, the outputs digest (`gate.rs`);
//! - the fuel left and the memory-limit count;
//! - the seq of the last event recorded before the call: the joiner replays
//!   from the next one;
//! - the mapped directories (`fs::copy`): copied while the guest runs, then
//!   what it changed meanwhile, inside the pause, with the whole tree and
//!   the files the guest holds open; before the memory.
//!
//! Not captured: tables (modules that can change them are refused at
//! transformation), the real world's sockets and buffers (a joiner replays;
//! when it goes live, the old primary's connections are reset, as before),
//! and unreleased outputs (the output gate's business on the primary).
//!
//! # Verification
//!
//! The primary computes the hash of memory and globals (as `state.rs`
//! defines it) of the state at the snapshot point, from the page checksums
//! of what it sent; the restored guest hashes its own state once rewound and
//! stops with a divergence if the two differ.
//!
//! # Stream
//!
//! A stream of [`Record`]s: the module, pages, file contents and the
//! directory tree, then the final record; `record.rs` defines them and
//! their encoding (and re-exported here, their paths stay
//! `snapshot::Record`, `snapshot::FinalState`, `snapshot::PAGE_BYTES`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use understudy_wire::codec::put_varint;

use crate::dirty::DirtyTracker;
use crate::output::Release;
use crate::record::{encode_pages, REC_PAGES};
pub use crate::record::{BadRecord, FinalState, Record, PAGE_BYTES};
use crate::state::hash_parts;

/// Largest unwind region: the saved call stack must fit (frames take a few
/// hundred bytes; Asyncify traps if they do not fit).
pub const UNWIND_REGION_BYTES: usize = 1 << 20;
/// Pre-copy ends when a round finds at most this many bytes written since
/// the last: the rest is copied inside the pause.
pub const PRECOPY_CONVERGED_BYTES: usize = 2 << 20;
/// Pre-copy rounds before the pause in any case (a guest that writes faster
/// than the copy proceeds).
pub const PRECOPY_ROUNDS_MAX: u32 = 6;
/// How long a snapshot waits for the guest to reach a host call.
pub const PAUSE_WAIT: Duration = Duration::from_secs(60);

/// Pages the guest thread copied inside the pause, and the rest.
pub(crate) struct Paused {
    /// (first page, bytes of whole pages) runs, in order.
    pub pages: Vec<(u32, Vec<u8>)>,
    /// The mapped directories' last records (the tree last), or why they
    /// could not be taken.
    pub disk: Result<Vec<Record>, String>,
    pub fin: FinalState,
}

/// Where the guest thread publishes its memory and meets the snapshot
/// stream; see [`SnapshotPort`].
pub(crate) struct PortShared {
    /// Base address and accessible length of linear memory, published by
    /// the guest thread at each host call (the length only grows; the base
    /// never moves: `memory_may_move(false)`).
    pub base: AtomicUsize,
    pub len: AtomicUsize,
    /// Bytes the memory may grow to (`memory_bytes_max`, page-rounded).
    pub reserve: AtomicUsize,
    /// The guest must unwind at its next unwind-capable host call.
    pub pause: AtomicBool,
    /// The guest's doorbell: wakes it from a wait in a host call.
    pub release: Mutex<Option<Arc<Release>>>,
    /// Where the paused guest hands its capture.
    pub delivery: Mutex<Option<SyncSender<Paused>>>,
    /// The pre-copy's write tracking, scanned once more inside the pause.
    pub tracker: Mutex<Option<Arc<DirtyTracker>>>,
    /// Bytes of memory the pre-copy has covered (pages above are copied
    /// whole inside the pause).
    pub covered: AtomicUsize,
    /// The module the guest runs.
    pub module: Mutex<Option<Arc<[u8]>>>,
    /// A snapshot is in progress (one at a time).
    busy: AtomicBool,
    /// Why pre-copy is unavailable, logged once.
    precopy_off: Mutex<Option<String>>,
    /// How long the last pause lasted (unwind to the end of the rewind), ns.
    pub last_pause_ns: std::sync::atomic::AtomicU64,
    /// The guest's mapped directories, when it has any.
    pub disk: Mutex<Option<Arc<crate::fs::track::DiskTrack>>>,
}

/// The engine's handle on a recording guest's snapshots. Clones share it.
/// Hand it to the guest's world ([`crate::LiveWorld::with_snapshots`]);
/// take snapshots with [`SnapshotPort::stream`] from any thread.
#[derive(Clone)]
pub struct SnapshotPort(pub(crate) Arc<PortShared>);

impl std::fmt::Debug for SnapshotPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotPort").field("len", &self.0.len.load(Ordering::Relaxed)).finish()
    }
}

impl Default for SnapshotPort {
    fn default() -> Self {
        SnapshotPort::new()
    }
}

impl SnapshotPort {
    pub fn new() -> SnapshotPort {
        SnapshotPort(Arc::new(PortShared {
            base: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            reserve: AtomicUsize::new(0),
            pause: AtomicBool::new(false),
            release: Mutex::new(None),
            delivery: Mutex::new(None),
            tracker: Mutex::new(None),
            covered: AtomicUsize::new(0),
            module: Mutex::new(None),
            busy: AtomicBool::new(false),
            precopy_off: Mutex::new(None),
            last_pause_ns: std::sync::atomic::AtomicU64::new(0),
            disk: Mutex::new(None),
        }))
    }

    /// How long the guest was paused for the last snapshot: from its unwind
    /// to the end of its rewind (0 before the first).
    pub fn last_pause(&self) -> Duration {
        Duration::from_nanos(self.0.last_pause_ns.load(Ordering::SeqCst))
    }

    /// Starts a snapshot of the guest; records come out of the returned
    /// stream, which does the pre-copy on the calling thread. None while
    /// another snapshot is in progress.
    pub fn stream(&self) -> Option<SnapshotStream> {
        if self.0.busy.swap(true, Ordering::SeqCst) {
            return None;
        }
        Some(SnapshotStream::new(self.0.clone()))
    }

    /// Bytes of linear memory the guest has now (a size hint).
    pub fn memory_bytes(&self) -> u64 {
        self.0.len.load(Ordering::Relaxed) as u64
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a snapshot could not be completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotFailed {
    #[error("the guest made no unwind-capable host call within {0:?} (a guest that computes without I/O cannot be snapshotted until it does)")]
    NoHostCall(Duration),
    #[error("the guest ended")]
    GuestEnded,
    #[error("the guest has not started")]
    NotStarted,
    #[error("copying the guest's mapped directories: {0}")]
    Disk(String),
}

enum Phase {
    Module,
    /// Pre-copy of the mapped directories (`copier`), before the memory's.
    Disk {
        last: bool,
    },
    /// Round `round`, copying `runs` of memory (byte ranges, whole
    /// pages); the pause follows a `last` round.
    Copy {
        round: u32,
        runs: Vec<(usize, usize)>,
        at: usize,
        offset: usize,
        last: bool,
    },
    Pause,
    Final(Vec<(u32, Vec<u8>)>, std::collections::VecDeque<Record>, Box<FinalState>),
    Done,
}

/// A snapshot in progress, read record by record; see the module docs.
pub struct SnapshotStream {
    port: Arc<PortShared>,
    phase: Phase,
    tracker: Option<Arc<DirtyTracker>>,
    /// crc32c of every page as last sent (for the state hash).
    crcs: Vec<u32>,
    rx: Option<Receiver<Paused>>,
    /// Bytes of memory copied before the pause, and inside it.
    pub precopied_bytes: u64,
    pub paused_bytes: u64,
    pub rounds: u32,
    pause_started: Option<Instant>,
    /// The mapped directories' copy; it tracks the guest's changes until
    /// the stream is dropped.
    copier: Option<crate::fs::copy::Copier>,
    /// Bytes of file contents sent before the pause, and inside it.
    pub disk_precopied_bytes: u64,
    pub disk_paused_bytes: u64,
}

impl Drop for SnapshotStream {
    fn drop(&mut self) {
        // Withdraw a pause not taken yet; a guest that pauses anyway finds
        // no receiver and goes on.
        self.port.pause.store(false, Ordering::SeqCst);
        lock(&self.port.delivery).take();
        lock(&self.port.tracker).take();
        self.port.covered.store(0, Ordering::SeqCst);
        self.port.busy.store(false, Ordering::SeqCst);
    }
}

impl SnapshotStream {
    fn new(port: Arc<PortShared>) -> SnapshotStream {
        port.last_pause_ns.store(0, Ordering::SeqCst);
        SnapshotStream {
            port,
            phase: Phase::Module,
            tracker: None,
            crcs: Vec::new(),
            rx: None,
            precopied_bytes: 0,
            paused_bytes: 0,
            rounds: 0,
            pause_started: None,
            copier: None,
            disk_precopied_bytes: 0,
            disk_paused_bytes: 0,
        }
    }

    /// How long the guest was paused for this snapshot, once it has
    /// finished its rewind (shortly after the final record): waits up to
    /// `limit` for it.
    pub fn pause(&self, limit: Duration) -> Option<Duration> {
        let deadline = Instant::now() + limit;
        loop {
            let ns = self.port.last_pause_ns.load(Ordering::SeqCst);
            if ns != 0 {
                return Some(Duration::from_nanos(ns));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The memory size now and the files found, for progress display.
    pub fn bytes_hint(&self) -> u64 {
        self.port.len.load(Ordering::Relaxed) as u64 + self.copier.as_ref().map_or(0, |c| c.found)
    }

    /// Appends the next records, about `max_bytes`, to `out`. `Ok(false)`
    /// (nothing appended) once the stream is complete.
    pub fn next_chunk(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> Result<bool, SnapshotFailed> {
        let max_pages = (max_bytes / PAGE_BYTES).max(1);
        loop {
            match &mut self.phase {
                Phase::Module => {
                    // A guest still compiling or instantiating publishes
                    // its module when it starts.
                    let deadline = Instant::now() + PAUSE_WAIT;
                    let module = loop {
                        if let Some(m) = lock(&self.port.module).clone() {
                            break m;
                        }
                        if Instant::now() > deadline {
                            return Err(SnapshotFailed::NotStarted);
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    };
                    Record::Module(module.to_vec()).encode(out);
                    let disk = lock(&self.port.disk).clone();
                    match disk {
                        Some(track) => {
                            let c = crate::fs::copy::Copier::new(track);
                            self.phase = Phase::Disk { last: c.found <= PRECOPY_CONVERGED_BYTES as u64 };
                            self.copier = Some(c);
                        }
                        None => self.start_precopy(),
                    }
                    return Ok(true);
                }
                Phase::Disk { last } => {
                    let c = self.copier.as_mut().expect("the disk phase has a copier");
                    if c.next(out, max_bytes).map_err(SnapshotFailed::Disk)? {
                        self.disk_precopied_bytes = c.bytes;
                        return Ok(true);
                    }
                    if *last {
                        self.start_precopy();
                    } else {
                        let planned = c.plan();
                        *last = planned <= PRECOPY_CONVERGED_BYTES as u64 || c.rounds >= PRECOPY_ROUNDS_MAX;
                    }
                }
                Phase::Copy { round, runs, at, offset, last } => {
                    if let Some(&(start, end)) = runs.get(*at) {
                        let from = start + *offset;
                        let n = ((end - from) / PAGE_BYTES).min(max_pages);
                        let first = (from / PAGE_BYTES) as u32;
                        let before = out.len();
                        out.push(REC_PAGES);
                        put_varint(out, u64::from(first));
                        put_varint(out, (n * PAGE_BYTES) as u64);
                        let at_data = out.len();
                        out.resize(at_data + n * PAGE_BYTES, 0);
                        let base = self.port.base.load(Ordering::SeqCst);
                        // SAFETY: [from, from + n pages) lies below the length
                        // the guest thread published (pages never go away; the
                        // base never moves). The guest may write these bytes
                        // while we copy: a torn copy is harmless, because any
                        // page written after it was protected is reported by
                        // the tracker and sent again.
                        unsafe {
                            std::ptr::copy_nonoverlapping((base + from) as *const u8, out[at_data..].as_mut_ptr(), n * PAGE_BYTES)
                        };
                        for p in 0..n {
                            let c = crc32c::crc32c(&out[at_data + p * PAGE_BYTES..at_data + (p + 1) * PAGE_BYTES]);
                            set_crc(&mut self.crcs, first as usize + p, c);
                        }
                        *offset += n * PAGE_BYTES;
                        self.precopied_bytes += (n * PAGE_BYTES) as u64;
                        if start + *offset >= end {
                            *at += 1;
                            *offset = 0;
                        }
                        debug_assert!(out.len() > before);
                        return Ok(true);
                    }
                    // The round is done.
                    let (round, last) = (*round, *last);
                    self.rounds = round;
                    if last {
                        self.request_pause();
                    } else {
                        self.next_round(round);
                    }
                }
                Phase::Pause => {
                    let p = self.wait_paused()?;
                    let disk = p.disk.map_err(SnapshotFailed::Disk)?;
                    self.disk_paused_bytes =
                        disk.iter().map(|r| if let Record::FileData { data, .. } = r { data.len() as u64 } else { 0 }).sum();
                    self.phase = Phase::Final(p.pages, disk.into(), Box::new(p.fin));
                }
                Phase::Final(pages, disk, fin) => {
                    if !pages.is_empty() {
                        let (first, data) = pages.remove(0);
                        let region = fin.unwind_at as usize..fin.unwind_at as usize + fin.unwind_orig.len();
                        for (i, page) in data.chunks(PAGE_BYTES).enumerate() {
                            let at = (first as usize + i) * PAGE_BYTES;
                            let crc = if at < region.end && region.start < at + PAGE_BYTES {
                                // The state at the snapshot point has the
                                // region's own bytes, not the saved stack.
                                let mut p = page.to_vec();
                                let (lo, hi) = (region.start.max(at), region.end.min(at + PAGE_BYTES));
                                p[lo - at..hi - at].copy_from_slice(&fin.unwind_orig[lo - region.start..hi - region.start]);
                                crc32c::crc32c(&p)
                            } else {
                                crc32c::crc32c(page)
                            };
                            set_crc(&mut self.crcs, first as usize + i, crc);
                        }
                        encode_pages(out, first, &data);
                        return Ok(true);
                    }
                    if let Some(r) = disk.pop_front() {
                        r.encode(out);
                        return Ok(true);
                    }
                    let mut fin = std::mem::replace(fin, Box::new(empty_final()));
                    fin.state_hash = self.state_hash(&fin);
                    Record::Final(fin).encode(out);
                    self.phase = Phase::Done;
                    self.copier = None;
                    return Ok(true);
                }
                Phase::Done => return Ok(false),
            }
        }
    }

    /// Round 1: protect all of memory, then copy all of it.
    fn start_precopy(&mut self) {
        let (base, len, reserve) = (
            self.port.base.load(Ordering::SeqCst),
            self.port.len.load(Ordering::SeqCst),
            self.port.reserve.load(Ordering::SeqCst),
        );
        let tracker = if base == 0 || reserve == 0 {
            Err("the guest's memory is not known yet".to_string())
        } else {
            DirtyTracker::new(base, reserve).and_then(|t| t.protect(0, len).map(|_| t))
        };
        match tracker {
            Ok(t) => {
                let t = Arc::new(t);
                *lock(&self.port.tracker) = Some(t.clone());
                self.tracker = Some(t);
                self.port.covered.store(len, Ordering::SeqCst);
                let last = len <= PRECOPY_CONVERGED_BYTES;
                self.phase = Phase::Copy { round: 1, runs: vec![(0, len)], at: 0, offset: 0, last };
            }
            Err(why) => {
                let mut off = lock(&self.port.precopy_off);
                if off.is_none() {
                    log::warn!(
                        "live pre-copy of guest memory is unavailable ({why}): a snapshot pauses the guest for a full copy"
                    );
                    *off = Some(why);
                }
                drop(off);
                self.request_pause();
            }
        }
    }

    /// After a round: copy what was written meanwhile (and memory the
    /// guest grew); when that is little, it is the last round before the
    /// pause, which copies what the last round missed.
    fn next_round(&mut self, round: u32) {
        let tracker = self.tracker.clone().expect("rounds run with a tracker");
        let covered = self.port.covered.load(Ordering::SeqCst);
        let len = self.port.len.load(Ordering::SeqCst);
        let mut written = Vec::new();
        if tracker.take_written(covered, &mut written).is_err() {
            // Cannot tell what changed: copy everything inside the pause.
            lock(&self.port.tracker).take();
            self.port.covered.store(0, Ordering::SeqCst);
            self.request_pause();
            return;
        }
        let mut runs = page_runs(&written);
        if len > covered && tracker.protect(covered, len - covered).is_ok() {
            runs.push((covered, len));
            self.port.covered.store(len, Ordering::SeqCst);
        }
        let dirty: usize = runs.iter().map(|(s, e)| e - s).sum();
        let last = dirty <= PRECOPY_CONVERGED_BYTES || round + 1 >= PRECOPY_ROUNDS_MAX;
        self.phase = Phase::Copy { round: round + 1, runs, at: 0, offset: 0, last };
    }

    fn request_pause(&mut self) {
        let (tx, rx) = sync_channel(1);
        *lock(&self.port.delivery) = Some(tx);
        self.rx = Some(rx);
        self.port.pause.store(true, Ordering::SeqCst);
        if let Some(r) = lock(&self.port.release).as_ref() {
            r.wake_guest();
        }
        self.pause_started = Some(Instant::now());
        self.phase = Phase::Pause;
    }

    fn wait_paused(&mut self) -> Result<Paused, SnapshotFailed> {
        let rx = self.rx.as_ref().expect("a pause was requested");
        match rx.recv_timeout(PAUSE_WAIT) {
            Ok(p) => {
                self.paused_bytes = p.pages.iter().map(|(_, d)| d.len() as u64).sum();
                Ok(p)
            }
            Err(RecvTimeoutError::Timeout) => Err(SnapshotFailed::NoHostCall(PAUSE_WAIT)),
            Err(RecvTimeoutError::Disconnected) => Err(SnapshotFailed::GuestEnded),
        }
    }

    /// The state hash at the snapshot point: memory as sent, with the
    /// unwind region's own bytes instead of the saved stack.
    fn state_hash(&mut self, fin: &FinalState) -> [u8; 32] {
        let pages = fin.memory_pages as usize;
        assert!(self.crcs.len() <= pages, "pages sent beyond the final memory size");
        self.crcs.resize(pages, 0);
        hash_parts(pages * PAGE_BYTES, &self.crcs, &fin.globals)
    }
}

fn set_crc(crcs: &mut Vec<u32>, page: usize, crc: u32) {
    if crcs.len() <= page {
        crcs.resize(page + 1, 0);
    }
    crcs[page] = crc;
}

fn empty_final() -> FinalState {
    FinalState {
        seq: 0,
        memory_pages: 0,
        globals: Vec::new(),
        unwind_at: 0,
        unwind_orig: Vec::new(),
        gate: Vec::new(),
        fuel_remaining: None,
        limit_hits: 0,
        state_hash: [0; 32],
    }
}

/// OS-page ranges widened to whole 64 KiB pages, merged.
fn page_runs(ranges: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for &(s, e) in ranges {
        let (s, e) = (s / PAGE_BYTES * PAGE_BYTES, e.div_ceil(PAGE_BYTES) * PAGE_BYTES);
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}
