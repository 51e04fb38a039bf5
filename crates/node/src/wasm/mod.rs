//! The machine level: a WebAssembly guest replicated by deterministic replay
//! (DESIGN §2). The guest runs on its own thread through the hypervisor's
//! record/replay gate; this module connects that thread to the engine.
//!
//! - primary: the gate records each host call as an event; [`feed::ChannelSink`]
//!   numbers it and hands it to the event loop, which appends it to the log
//!   under the same seq (an `Event` entry). Outputs the event produced wait
//!   in the hypervisor's output gate until [`Release`] passes their seq.
//! - backup: received entries go through a [`feed::Feed`] to the replaying
//!   guest; how far it consumed is its *executed* seq.
//! - go-live: the feed hands the guest a live world (`Next::GoLive`).
//! - join ([`transfer`]): the primary snapshots its running guest live
//!   (`understudy_hypervisor::snapshot`) and the joiner resumes it there and
//!   replays only what follows; a guest that cannot be snapshotted is joined
//!   by replaying the log retained since it started ([`retained`]).

pub mod feed;
pub mod retained;
pub mod run;
pub mod transfer;

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc::UnboundedSender;
use tokio::task::AbortHandle;
use understudy_core::{Seq, SnapshotError, SnapshotWriter};
use understudy_hypervisor::{
    asyncify, Console, GuestConfig, GuestEnd, LiveWorld, Mode, Release, RunOptions, SnapshotPort, Stdin,
};
use understudy_wire::entry::EntryKind;

use crate::ctx::TimeFloor;
use crate::exec::{Divergence, ExecQueue};
use crate::machine::Machine;
use feed::{ChannelSink, Feed, FeedItem, FeedSource, Intake};
use retained::Retained;

/// The module this node runs when it starts the guest itself: made by a
/// thread at start (`run::snapshottable`), waited for only then.
pub struct FreshModule {
    making: Mutex<Option<std::thread::JoinHandle<Arc<[u8]>>>>,
    made: std::sync::OnceLock<Arc<[u8]>>,
}

impl FreshModule {
    pub fn new(making: std::thread::JoinHandle<Arc<[u8]>>) -> FreshModule {
        FreshModule { making: Mutex::new(Some(making)), made: std::sync::OnceLock::new() }
    }

    pub(crate) fn get(&self, fallback: &Arc<[u8]>) -> Arc<[u8]> {
        self.made
            .get_or_init(|| {
                let handle = self.making.lock().unwrap_or_else(PoisonError::into_inner).take();
                if handle.as_ref().is_some_and(|h| !h.is_finished()) {
                    log::info!("starting the guest once its module is snapshottable (wasm-opt --asyncify runs; cached in --dir for the next start)");
                }
                handle.and_then(|h| h.join().ok()).unwrap_or_else(|| fallback.clone())
            })
            .clone()
    }
}

/// What every incarnation of the guest machine shares with the event loop.
pub struct WasmShared {
    /// The guest, with its module as given.
    pub guest: GuestConfig,
    /// The module a guest this node starts runs (Asyncify-transformed when
    /// `wasm-opt` was there to do it).
    pub fresh_module: FreshModule,
    /// The recording guest's snapshots (used when its module is transformed).
    pub port: SnapshotPort,
    /// This node's name, for messages.
    pub node: String,
    /// `--guest-listen`, bound when the node starts (before it claims an
    /// epoch); the guest gets a duplicate as its fd 3 when it goes live.
    /// None: a command-style guest, with no listener.
    pub listener: Option<TcpListener>,
    /// A command-style guest starts only once a backup is in sync (unless
    /// `--start-unprotected`).
    pub start_when_protected: bool,
    /// The live guest accepted on or polled its listener (fd 3) at least once.
    pub listener_used: Arc<std::sync::atomic::AtomicBool>,
    /// While this node is not primary, a task accepts and closes the guest
    /// port's connections (`run::refuse_while_backup`); aborted before the
    /// guest gets the listener, so the two never accept from it together.
    pub refuser: Mutex<Option<AbortHandle>>,
    pub verify_memory: bool,
    /// Recorded events, to the event loop.
    pub events: UnboundedSender<(Seq, Vec<u8>)>,
    /// How a guest thread ended: (machine generation, ending).
    pub ends: UnboundedSender<(u64, Result<GuestEnd, String>)>,
    pub release: Arc<Release>,
    pub intake: Arc<Intake>,
}

/// Identifies machine instances, so the ending of a guest whose machine was
/// reset is not taken for the current one's.
static GENERATION: AtomicU64 = AtomicU64::new(1);

pub struct WasmMachine {
    shared: Arc<WasmShared>,
    /// The module this machine's guest runs: this node's for a fresh guest,
    /// the primary's for a joiner.
    module: Arc<[u8]>,
    /// The guest can be snapshotted live (its module is transformed): joins
    /// take a snapshot, and no log is retained.
    live: bool,
    /// Every entry since the guest started, for a guest joins replay
    /// (only when not `live`).
    pub retained: Retained,
    /// Backup: the replaying guest's feed.
    feed: Option<Arc<Feed>>,
    /// Backup joined by the retained log: it is loaded once the guest has
    /// replayed up to this seq.
    pub loading_upto: Option<Seq>,
    /// Backup restored from a live snapshot: entries up to this seq are in
    /// the snapshot, and skipped.
    skip_upto: Seq,
    /// Joiner: the live snapshot on its way to the restoring guest.
    pipe: Option<transfer::RecordPipe>,
    /// Joiner: the header said which kind of transfer this is.
    kind: Option<u8>,
    pub gen: u64,
    /// A guest thread runs (replaying or recording).
    running: bool,
    /// Primary of a command-style guest waiting for its backup before it
    /// starts the guest: since when.
    pub deferred: Option<std::time::Instant>,
    /// Joiner: the transfer was fresh (the primary had not started its
    /// guest): no guest event lies at or before the join's seq.
    fresh: bool,
}

impl WasmMachine {
    pub fn new(shared: Arc<WasmShared>) -> Self {
        // Until it starts a guest or restores one, the module is the given
        // one; which module runs is decided then.
        let module = shared.guest.module.clone();
        WasmMachine {
            live: false,
            module,
            shared,
            retained: Retained::default(),
            feed: None,
            loading_upto: None,
            skip_upto: 0,
            pipe: None,
            kind: None,
            gen: GENERATION.fetch_add(1, Ordering::Relaxed),
            running: false,
            deferred: None,
            fresh: false,
        }
    }

    /// The guest this machine runs.
    fn guest(&self) -> GuestConfig {
        GuestConfig { module: self.module.clone(), ..self.shared.guest.clone() }
    }

    /// The guest was started to replay (this node joined as a backup).
    pub fn replays(&self) -> bool {
        self.feed.is_some()
    }

    /// Seq of the last entry the replaying guest consumed.
    pub fn replayed(&self) -> Option<Seq> {
        self.feed.as_ref().map(|f| f.executed.load(Ordering::Acquire))
    }

    fn spawn(&mut self, mode: Mode) {
        let (shared, gen, guest) = (self.shared.clone(), self.gen, self.guest());
        self.running = true;
        std::thread::Builder::new()
            .name("guest".into())
            .spawn(move || {
                let opts = RunOptions { verify_memory: shared.verify_memory };
                let end = understudy_hypervisor::run(&guest, mode, opts).map_err(|e| e.to_string());
                let _ = shared.ends.send((gen, end));
            })
            .expect("spawn the guest thread");
    }

    /// Joiner: a guest thread that resumes from the live snapshot coming
    /// through `records` (or, `fresh`, restores the directories and starts
    /// the guest from its beginning), then replays the feed.
    fn spawn_restored(
        &mut self,
        records: std::sync::mpsc::Receiver<Result<understudy_hypervisor::snapshot::Record, String>>,
        fresh: bool,
    ) {
        let (shared, gen, guest) = (self.shared.clone(), self.gen, self.guest());
        let feed = Arc::new(Feed::default());
        self.feed = Some(feed.clone());
        self.running = true;
        std::thread::Builder::new()
            .name("guest".into())
            .spawn(move || {
                let opts = RunOptions { verify_memory: shared.verify_memory };
                let mut next = || match records.recv() {
                    Ok(r) => r.map(Some),
                    Err(_) => Ok(None),
                };
                let source = Box::new(FeedSource(feed));
                let end = if fresh {
                    understudy_hypervisor::run_fresh(&guest, &mut next, source, opts)
                } else {
                    understudy_hypervisor::run_restored(&guest, &mut next, source, opts)
                }
                .map_err(|e| e.to_string());
                let _ = shared.ends.send((gen, end));
            })
            .expect("spawn the guest thread");
    }

    /// A live world: the guest's listening socket (fd 3), real stdio, events
    /// numbered from `next_seq`, outputs behind the shared release point.
    fn live_world(&self, next_seq: Seq) -> Result<LiveWorld, String> {
        if let Some(refuser) = self.shared.refuser.lock().unwrap_or_else(PoisonError::into_inner).take() {
            // Runs on the event loop's thread, where the refuser task is
            // parked at an await: aborted here, it never accepts again.
            refuser.abort();
        }
        let sink = ChannelSink { tx: self.shared.events.clone(), next: next_seq, intake: self.shared.intake.clone() };
        let mut world = LiveWorld::new(sink)
            .with_release(self.shared.release.clone())
            .with_stdin(Stdin::Inherit)
            .with_console(Console::Inherit, Console::Inherit);
        if let Some(l) = &self.shared.listener {
            world = world.with_listener(l.try_clone().map_err(|e| format!("cannot duplicate the guest's listener: {e}"))?);
        }
        world.last_seq = next_seq - 1;
        world.listener_used = self.shared.listener_used.clone();
        if self.live {
            world = world.with_snapshots(self.shared.port.clone());
        }
        Ok(world)
    }

    /// This node becomes primary: a fresh guest starts recording, or the
    /// replaying guest goes live.
    pub fn become_primary(&mut self, next_seq: Seq) -> Result<(), String> {
        if self.feed.is_none() && self.shared.start_when_protected {
            // Started once a backup is in sync (`run::progress`).
            self.deferred = Some(std::time::Instant::now());
            return Ok(());
        }
        self.start(next_seq)
    }

    /// Starts the guest deferred by [`WasmMachine::become_primary`]: its
    /// backup is in sync, and will replay it from the log's next entry.
    pub fn start_deferred(&mut self, next_seq: Seq) -> Result<(), String> {
        assert!(self.deferred.take().is_some(), "only a deferred guest is started later");
        assert!(self.feed.is_none() && !self.running, "the guest has not started");
        self.start(next_seq)
    }

    fn start(&mut self, next_seq: Seq) -> Result<(), String> {
        if self.feed.is_none() {
            // A fresh guest: this node's own (transformed) module.
            self.module = self.shared.fresh_module.get(&self.shared.guest.module);
            self.live = asyncify::is_transformed(&self.module);
        }
        let world = self.live_world(next_seq)?;
        match &self.feed {
            Some(feed) => feed.push(FeedItem::GoLive(world)),
            None => self.spawn(Mode::Record(world)),
        }
        Ok(())
    }

    /// Primary: an event the recording guest produced, now in the log,
    /// kept for joins only when the guest cannot be snapshotted.
    pub fn retain(&mut self, seq: Seq, event: &[u8]) {
        if !self.live {
            self.retained.push(seq, EntryKind::Event, event);
        }
    }
}

impl Drop for WasmMachine {
    fn drop(&mut self) {
        // A reset machine's replaying guest ends (its ending is ignored).
        if let Some(f) = &self.feed {
            f.push(FeedItem::End);
        }
    }
}

impl Machine for WasmMachine {
    fn replay(&mut self, queue: &mut ExecQueue, _floor: &mut TimeFloor, budget: usize) -> Result<Option<Seq>, Divergence> {
        let feed = self.feed.clone().expect("a backup's guest replays once its snapshot is installed");
        // Handed over together: one lock and one wake-up of the guest.
        let mut items = Vec::new();
        let mut failed = None;
        for _ in 0..budget {
            let Some((seq, kind, body)) = queue.pop() else { break };
            if !self.live {
                self.retained.push(seq, kind, &body);
            }
            items.push(match kind {
                // In the live snapshot already: only its seq counts.
                _ if seq <= self.skip_upto => {
                    // A fresh transfer precedes the guest's first event.
                    assert!(!(self.fresh && kind == EntryKind::Event), "a guest event at seq {seq}, before the guest started");
                    FeedItem::Barrier(seq)
                }
                EntryKind::Event => FeedItem::Event(seq, body),
                EntryKind::Barrier => FeedItem::Barrier(seq),
                other => {
                    failed = Some(Divergence { seq, detail: format!("a {other:?} entry in a WebAssembly guest's log") });
                    break;
                }
            });
        }
        feed.push_all(items);
        // Progress is the guest's: reported from `Feed::executed`.
        failed.map_or(Ok(None), Err)
    }

    fn on_primary(&mut self, next_seq: Seq) -> Result<(), String> {
        self.become_primary(next_seq)
    }

    fn rejoins_in_place(&self) -> bool {
        // The recording guest owns its sockets and thread: it is not
        // thrown away under a running process (SIGTERM hands over instead).
        false
    }

    fn snapshot(&self) -> Box<dyn SnapshotWriter> {
        if self.deferred.is_some() {
            return Box::new(transfer::FreshWriter::new(self.shared.clone()));
        }
        if self.live {
            let node = self.shared.node.clone();
            Box::new(transfer::LiveWriter::new(self.module.clone(), self.shared.port.stream(), node))
        } else {
            Box::new(transfer::LogWriter::new(self.module.clone(), self.retained.snapshot()))
        }
    }

    fn restore_chunk(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
        match self.kind {
            None => {
                let (kind, module) = transfer::parse_header(chunk)?;
                self.live = asyncify::is_transformed(&module);
                if kind == transfer::KIND_LIVE && !self.live || kind == transfer::KIND_LOG && self.live {
                    return Err(SnapshotError("a live snapshot of a module that is not transformed, or the reverse".into()));
                }
                if kind == transfer::KIND_LOG && !self.shared.guest.map_dirs.is_empty() {
                    return Err(SnapshotError(
                        "the primary cannot snapshot its guest live, and a guest with --map-dir joins only that way".into(),
                    ));
                }
                self.module = module;
                self.kind = Some(kind);
                if kind != transfer::KIND_LOG {
                    let fresh = kind == transfer::KIND_FRESH;
                    let (pipe, records) = if fresh { transfer::RecordPipe::fresh() } else { transfer::RecordPipe::new() };
                    self.pipe = Some(pipe);
                    self.fresh = fresh;
                    self.spawn_restored(records, fresh);
                }
                Ok(())
            }
            Some(transfer::KIND_LIVE | transfer::KIND_FRESH) => {
                self.pipe.as_mut().expect("a live or fresh transfer has a pipe").push_chunk(chunk)
            }
            Some(_) => self.retained.restore_chunk(chunk),
        }
    }

    fn restore_finish(&mut self) -> Result<(), SnapshotError> {
        match self.kind {
            None => Err(SnapshotError("the guest snapshot was empty".into())),
            Some(transfer::KIND_LIVE | transfer::KIND_FRESH) => {
                self.skip_upto = self.pipe.as_mut().expect("a live or fresh transfer has a pipe").finish()?;
                Ok(())
            }
            Some(_) => Ok(()),
        }
    }

    fn install(&mut self, mut restored: Self, seq: Seq) -> bool {
        self.module = restored.module.clone();
        self.live = restored.live;
        if restored.kind == Some(transfer::KIND_FRESH) {
            // The guest's thread restores the directories, then starts the
            // guest at the log's beginning: entries up to the join's seq
            // hold no guest event.
            self.feed = restored.feed.take();
            self.skip_upto = seq;
            self.fresh = true;
            self.gen = restored.gen;
            self.running = std::mem::take(&mut restored.running);
            self.pipe = restored.pipe.take();
            log::info!(
                "the primary has not started its guest: it starts here from its beginning, replaying from seq {}",
                seq + 1
            );
            return true;
        }
        if restored.kind == Some(transfer::KIND_LIVE) {
            // The restoring guest's thread keeps running: it is ours now.
            assert!(restored.skip_upto >= seq, "the live snapshot (seq {}) is older than the join's ({seq})", restored.skip_upto);
            self.feed = restored.feed.take();
            self.skip_upto = restored.skip_upto;
            self.gen = restored.gen;
            self.running = std::mem::take(&mut restored.running);
            self.pipe = restored.pipe.take();
            log::info!("resumed the primary's guest from its live snapshot at seq {}; replaying from there", self.skip_upto);
            return true;
        }
        assert_eq!(restored.retained.count(), seq, "the retained log ends at the snapshot's seq");
        // O(1) here: the guest's thread reads the log through a cursor, so
        // the event loop keeps acknowledging and heartbeating however long
        // the replay of a long history takes.
        self.retained = std::mem::take(&mut restored.retained);
        let feed = Arc::new(Feed::default());
        feed.push(FeedItem::Log(retained::Cursor::new(self.retained.shared_blocks())));
        self.feed = Some(feed.clone());
        self.spawn(Mode::Replay(Box::new(FeedSource(feed))));
        if seq == 0 {
            return true;
        }
        self.loading_upto = Some(seq);
        false
    }
}
