//! [`Replica`]: the state one node's event loop shares between its tasks —
//! the protocol core, the machine, the logging-channel connections and their
//! send buffers — and [`pump`], which performs the core's commands.
//!
//! Everything runs on one thread (a current-thread tokio runtime), like
//! Redis: tasks borrow the `RefCell` briefly and never across an `.await`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use understudy_core::{Command, ConnId, Core, Event, Millis, Seq, SnapshotWriter, StateMachine};

use crate::machine::App;
use understudy_wire::entry::{BatchWriter, EntryKind, OpEntry};
use understudy_wire::frame::{encode_with, FrameHeader, Kind};
use understudy_wire::handshake::Handshake;
use understudy_wire::msg::{Heartbeat, RejectCode};

use crate::arbiter_lanes::ArbiterLanes;
use crate::ctx::{RecordCtx, TimeFloor};
use crate::exec::ExecQueue;
use crate::machine::Machine;
use crate::options::NodeOptions;

/// Creates an empty machine (on start, on a reset, in a restore thread).
pub type Factory<M> = Arc<dyn Fn() -> M + Send + Sync>;

/// Largest batch of entries before it is sealed and sent without waiting
/// for the writer to come round.
pub const BATCH_BYTES_MAX: usize = 1 << 20;

/// Exit code of a node that fail-stopped (lost a claim, saw a newer epoch,
/// diverged).
pub const HALT_EXIT_CODE: i32 = 3;
/// A node whose configuration cannot work (the reason names the flag).
pub const REFUSED_EXIT_CODE: i32 = 2;

/// One logging-channel (or snapshot) connection.
pub struct Conn {
    /// Bytes waiting for the writer task.
    pub out: Vec<u8>,
    /// Wakes the writer task (a stored permit: no lost wakeups).
    pub wake: Rc<Notify>,
    pub peer: String,
    pub incarnation: u64,
    /// Close once `out` is written (after a Reject).
    pub closing: bool,
    pub tasks: Vec<AbortHandle>,
}

/// A joiner's snapshot, taken when its join was accepted, waiting for the
/// joiner's snapshot connection.
pub struct PendingSnapshot {
    /// The joiner's logging channel: the snapshot dies with it.
    pub conn: ConnId,
    pub node: String,
    pub incarnation: u64,
    pub seq: Seq,
    pub writer: Box<dyn SnapshotWriter>,
}

/// Counters exposed in INFO, the demo report and the metrics page.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub log_bytes: u64,
    pub log_entries: u64,
    pub snapshot_bytes_sent: u64,
    pub snapshot_bytes_received: u64,
    /// Estimated size of the last snapshot taken for a joiner (progress of
    /// a state transfer is `snapshot_bytes_sent` against it).
    pub snapshot_bytes_hint: u64,
    /// Joins accepted as primary, and joiners that became in-sync members.
    pub joins_accepted: u64,
    pub joins_in_sync: u64,
}

pub struct Replica<M: Machine> {
    pub core: Core,
    pub machine: M,
    pub factory: Factory<M>,
    pub opts: Arc<NodeOptions>,
    /// Random per process: tells this process from an earlier one of the same node.
    pub incarnation: u64,
    /// Identifies the machine kind and its configuration in handshakes.
    pub machine_tag: String,
    t0: Instant,
    lanes: ArbiterLanes,
    pub events: UnboundedSender<Event>,
    pub conns: HashMap<ConnId, Conn>,
    next_conn: ConnId,
    /// Primary: the batch being filled in the channel's send buffer.
    batch: Option<(ConnId, BatchWriter)>,
    pub pending_snapshot: Option<PendingSnapshot>,
    /// Woken on every release of the output gate.
    pub gate: Rc<Notify>,
    /// Woken when intake reopens or the role changes.
    pub intake: Rc<Notify>,
    pub record: RecordCtx,
    /// Backup: entries received and not yet executed.
    pub exec: ExecQueue,
    pub exec_wake: Rc<Notify>,
    /// Bumped on every machine reset, so a late snapshot of an abandoned
    /// join is not installed.
    pub join_gen: u64,
    /// Backup: the snapshot of this join is loaded; entries may execute.
    pub snapshot_loaded: bool,
    /// The primary's client address, for redirects from a backup.
    pub primary_client: Option<String>,
    pub stats: Stats,
    /// Stopped as asked: the process exits once what it released is written.
    pub exiting: bool,
}

impl<M: Machine> Replica<M> {
    pub fn new(
        opts: Arc<NodeOptions>,
        factory: Factory<M>,
        machine_tag: String,
        lanes: ArbiterLanes,
        events: UnboundedSender<Event>,
    ) -> Self {
        let core = Core::new(opts.protocol.clone(), opts.node.clone());
        Replica {
            core,
            machine: factory(),
            factory,
            opts,
            incarnation: crate::framed::random_u64(),
            machine_tag,
            t0: Instant::now(),
            lanes,
            events,
            conns: HashMap::new(),
            next_conn: 1,
            batch: None,
            pending_snapshot: None,
            gate: Rc::new(Notify::new()),
            intake: Rc::new(Notify::new()),
            record: RecordCtx::default(),
            exec: ExecQueue::default(),
            exec_wake: Rc::new(Notify::new()),
            join_gen: 0,
            snapshot_loaded: false,
            primary_client: None,
            stats: Stats::default(),
            exiting: false,
        }
    }

    /// Monotonic milliseconds for the core.
    pub fn now(&self) -> Millis {
        self.t0.elapsed().as_millis() as Millis
    }

    pub fn new_conn(&mut self, peer: String, incarnation: u64) -> (ConnId, Rc<Notify>) {
        let id = self.next_conn;
        self.next_conn += 1;
        let wake = Rc::new(Notify::new());
        self.conns.insert(id, Conn { out: Vec::new(), wake: wake.clone(), peer, incarnation, closing: false, tasks: Vec::new() });
        (id, wake)
    }

    /// Ties a task's life to a connection: it is aborted when the
    /// connection is dropped (or at once if it already was).
    pub fn add_task(&mut self, conn: ConnId, task: AbortHandle) {
        match self.conns.get_mut(&conn) {
            Some(c) => c.tasks.push(task),
            None => task.abort(),
        }
    }

    /// Forgets a connection and stops its tasks.
    pub fn drop_conn(&mut self, id: ConnId) {
        if self.batch.as_ref().is_some_and(|(c, _)| *c == id) {
            self.batch = None;
        }
        if self.pending_snapshot.as_ref().is_some_and(|p| p.conn == id) {
            // Holding it would keep copy-on-write copies alive for nothing.
            self.pending_snapshot = None;
        }
        if let Some(c) = self.conns.remove(&id) {
            for t in c.tasks {
                t.abort();
            }
        }
        self.intake.notify_waiters();
    }

    /// Seals the open batch so the writer can take the buffer. A read that
    /// still waits for an entry after it gets a barrier entry first.
    pub fn seal_batch(&mut self, conn: ConnId) {
        if self.core.is_primary() && self.core.barrier_needed() && self.core.stream_from().is_some_and(|(c, _)| c == conn) {
            let seq = self.core.append();
            self.push_entry(seq, EntryKind::Barrier, 0, |_| {});
        }
        if self.batch.as_ref().is_none_or(|(c, _)| *c != conn) {
            return;
        }
        let (c, bw) = self.batch.take().expect("checked");
        let out = &mut self.conns.get_mut(&c).expect("a batch's connection exists").out;
        self.stats.log_bytes += bw.bytes(out) as u64;
        self.stats.log_entries += bw.count();
        bw.finish(out);
    }

    /// True while the primary may take client requests: the core's flow
    /// control allows it and the channel's send buffer is not backlogged.
    pub fn intake_open(&self) -> bool {
        self.core.intake_open()
            && self
                .core
                .stream_from()
                .and_then(|(c, _)| self.conns.get(&c))
                .is_none_or(|c| c.out.len() < self.opts.channel_backlog_bytes_max)
    }

    /// Wakes the channel writer if a read waits for a barrier entry.
    pub fn kick_barrier(&mut self) {
        if self.core.barrier_needed() {
            if let Some(c) = self.core.stream_from().and_then(|(c, _)| self.conns.get(&c)) {
                c.wake.notify_one();
            }
        }
    }

    /// Appends a frame to a connection's send buffer and wakes its writer.
    pub fn send_frame(&mut self, conn: ConnId, kind: Kind, seq: Seq, payload: impl FnOnce(&mut Vec<u8>)) {
        self.seal_batch(conn);
        let epoch = self.core.epoch();
        if let Some(c) = self.conns.get_mut(&conn) {
            encode_with(&mut c.out, FrameHeader { epoch, seq, kind }, payload);
            c.wake.notify_one();
        }
    }

    /// Primary: writes entry `seq` to the backup's channel, if there is
    /// one. Returns true when the batch is full and should be sealed.
    pub fn push_entry(&mut self, seq: Seq, kind: EntryKind, body_len: usize, fill: impl FnOnce(&mut Vec<u8>)) -> bool {
        let Some((conn, from)) = self.core.stream_from() else { return false };
        debug_assert!(seq > from, "entry {seq} is covered by the backup's snapshot or acks ({from})");
        let epoch = self.core.epoch();
        let Some(c) = self.conns.get_mut(&conn) else { return false };
        let (_, bw) = self.batch.get_or_insert_with(|| (conn, BatchWriter::begin(&mut c.out, epoch, seq)));
        assert_eq!(bw.next_seq(), seq, "entries must reach the channel contiguously");
        bw.push_with(&mut c.out, kind, body_len, fill);
        c.wake.notify_one();
        bw.bytes(&c.out) >= BATCH_BYTES_MAX
    }

    /// Primary: logs an operation the machine just applied with `self.record`.
    pub fn log_op(&mut self, seq: Seq, op: &[u8]) {
        if self.core.stream_from().is_none() {
            return;
        }
        let now = self.record.now;
        let random = std::mem::take(&mut self.record.random);
        let len = OpEntry::encoded_len(now, &random, op.len());
        let full = self.push_entry(seq, EntryKind::Op, len, |o| {
            OpEntry::encode_record(o, now, &random);
            o.extend_from_slice(op);
        });
        self.record.random = random;
        if full {
            if let Some((conn, _)) = self.core.stream_from() {
                self.seal_batch(conn);
            }
        }
    }
}

impl<S: StateMachine + Send> Replica<App<S>> {
    /// Primary: applies a write through the machine in record mode and logs
    /// it; returns the seq that tags its reply.
    pub fn apply_write(&mut self, op: &[u8], reply: &mut Vec<u8>) -> Seq {
        let seq = self.core.append();
        self.record.reset();
        self.machine.sm.apply(&mut self.record, op, reply);
        self.log_op(seq, op);
        seq
    }
}

impl<M: Machine> Replica<M> {
    /// Fail-stop: nothing held at the output gate is ever released.
    pub fn halt(&self, reason: &str) -> ! {
        log::error!("{}: halting: {reason}", self.opts.node);
        std::process::exit(HALT_EXIT_CODE);
    }

    pub fn time_floor(&self) -> TimeFloor {
        self.record.floor
    }
}

/// Feeds an event to the core and performs what follows.
pub fn feed<M: Machine>(rc: &Rc<RefCell<Replica<M>>>, ev: Event) {
    {
        let mut r = rc.borrow_mut();
        let now = r.now();
        r.core.handle(now, ev);
    }
    pump(rc);
}

/// Performs every command the core has produced, until it produces no more.
pub fn pump<M: Machine>(rc: &Rc<RefCell<Replica<M>>>) {
    let mut cmds = Vec::new();
    loop {
        rc.borrow_mut().core.drain_commands(&mut cmds);
        if cmds.is_empty() {
            return;
        }
        for c in cmds.drain(..) {
            exec(rc, c);
        }
    }
}

fn exec<M: Machine>(rc: &Rc<RefCell<Replica<M>>>, c: Command) {
    let mut r = rc.borrow_mut();
    if r.lanes.submit(&c) {
        return;
    }
    match c {
        Command::Connect { repl, epoch } => {
            let gen = r.join_gen;
            drop(r);
            crate::join::spawn_join(rc.clone(), repl, epoch, gen);
        }
        Command::AcceptJoin { conn, snapshot_seq } => {
            let Some(c) = r.conns.get(&conn) else { return };
            let (node, incarnation) = (c.peer.clone(), c.incarnation);
            let writer = r.machine.snapshot();
            log::info!(
                "{}: join of {node:?} accepted; snapshot at seq {snapshot_seq} (~{} bytes)",
                r.opts.node,
                writer.bytes_hint()
            );
            r.stats.snapshot_bytes_hint = writer.bytes_hint();
            r.stats.joins_accepted += 1;
            r.pending_snapshot = Some(PendingSnapshot { conn, node, incarnation, seq: snapshot_seq, writer });
            r.send_frame(conn, Kind::JoinAccepted, snapshot_seq, |_| {});
        }
        Command::Reject { conn, code, message } => {
            // The core tells the operator (once per joiner, then at intervals).
            log::debug!("{}: refusing {}: {message}", r.opts.node, r.conns.get(&conn).map_or("?", |c| c.peer.as_str()));
            let epoch = r.core.epoch();
            if let Some(c) = r.conns.get_mut(&conn) {
                c.out.extend_from_slice(&Handshake::reject(epoch, code, message));
                c.closing = true;
                c.wake.notify_one();
            }
        }
        Command::Close { conn, reason } => {
            if let Some(c) = r.conns.get(&conn) {
                log::info!("{}: closing channel to {:?}: {reason}", r.opts.node, c.peer);
            }
            r.drop_conn(conn);
        }
        Command::SendHeartbeat { conn, last_seq } => {
            r.send_frame(conn, Kind::Heartbeat, 0, |o| Heartbeat { last_seq }.encode(o));
        }
        Command::SendAck { conn, ack } => r.send_frame(conn, Kind::Ack, 0, |o| ack.encode(o)),
        Command::SendInSync { conn } => {
            log::info!(
                "{}: backup {} is in sync: outputs now wait for its acks",
                r.opts.node,
                r.conns.get(&conn).map_or("?", |c| c.peer.as_str())
            );
            r.stats.joins_in_sync += 1;
            r.send_frame(conn, Kind::InSync, 0, |_| {});
        }
        Command::Release { .. } => {
            if r.core.barrier_needed() && r.core.stream_from().is_none() {
                // A read waits for an entry after it, and no backup will
                // carry one: the barrier is only a seq.
                r.core.append();
            }
            r.gate.notify_waiters();
            r.intake.notify_waiters();
        }
        Command::BecomePrimary { epoch, from_backup } => {
            if from_backup {
                log::warn!(
                    "{}: primary lost; went live as primary of epoch {epoch} at seq {}",
                    r.opts.node,
                    r.core.status().last_seq
                );
                r.exec = ExecQueue::default();
            } else {
                log::info!("{}: primary of epoch {epoch} (unprotected until a backup joins)", r.opts.node);
            }
            r.primary_client = Some(r.opts.advertise_client.clone());
            let next_seq = r.core.status().last_seq + 1;
            if let Err(e) = r.machine.on_primary(next_seq) {
                r.halt(&e);
            }
            r.gate.notify_waiters();
            r.intake.notify_waiters();
        }
        Command::ResetMachine => {
            r.machine = (r.factory)();
            r.exec = ExecQueue::default();
            r.join_gen += 1;
            r.snapshot_loaded = false;
            r.record = RecordCtx::default();
            // The abandoned join's executor sees the new generation and ends.
            r.exec_wake.notify_waiters();
            // A primary that handed over (switchover): client requests held
            // at its closed intake are answered now (-READONLY, redirect).
            r.intake.notify_waiters();
        }
        Command::Halt { reason } => r.halt(&reason),
        Command::Refuse { reason } => {
            log::error!("{}: cannot start: {reason}", r.opts.node);
            std::process::exit(REFUSED_EXIT_CODE);
        }
        Command::Notice { message } => log::warn!("{}: {message}", r.opts.node),
        Command::SendHandover { conn } => r.send_frame(conn, Kind::Handover, 0, |_| {}),
        Command::Exit { reason } => {
            log::info!("{}: stopping: {reason}", r.opts.node);
            // `run::ticker` ends the process once the channels are written.
            r.exiting = true;
        }
        Command::ReadArbiter | Command::Claim { .. } | Command::AddMember { .. } | Command::Publish { .. } => {
            unreachable!("arbiter commands go to the lanes")
        }
    }
}

/// What a refused peer is told, by code.
pub fn reject_code_name(c: RejectCode) -> &'static str {
    match c {
        RejectCode::WrongCluster => "wrong cluster",
        RejectCode::AuthFailed => "authentication failed",
        RejectCode::StaleEpoch => "stale epoch",
        RejectCode::NotPrimary => "not primary",
        RejectCode::Busy => "busy",
        RejectCode::MachineMismatch => "machine mismatch",
        RejectCode::Protocol => "protocol error",
        RejectCode::NameInUse => "node name in use",
    }
}
