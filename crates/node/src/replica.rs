//! [`Replica`]: one node's runtime state and the handler of the protocol
//! core's commands, written once for every runtime: generic over [`Io`], it
//! runs on tokio in a real node (`tokio_io`) and in the seeded simulator.
//!
//! One owner per piece of state: the core (protocol decisions), the machine,
//! [`Channels`] (connections and their send buffers), the state transfer
//! (`Transfer`), the backup's execution queue, the record context. Frames
//! from peers are handled in `frames`, joins and snapshots in `transfer`.
//!
//! Everything runs on one thread, like Redis: tokio tasks borrow the
//! replica briefly and never across an `.await`.

use std::sync::Arc;

use understudy_core::{Command, ConnId, Core, Event, Millis, Outcome, Seq, StateMachine};
use understudy_wire::entry::{EntryKind, OpEntry};
use understudy_wire::frame::Kind;
use understudy_wire::handshake::Handshake;
use understudy_wire::msg::Heartbeat;

use crate::channel::{header, Channels};
use crate::ctx::RecordCtx;
use crate::disk_state::Disk;
use crate::exec::ExecQueue;
use crate::io::Io;
use crate::machine::{App, Machine};
use crate::options::NodeOptions;
use crate::snapshot::PendingSnapshot;
use crate::tokio_io::TokioIo;

/// Creates an empty machine (on start, on a reset, in a restore thread).
pub type Factory<M> = Arc<dyn Fn() -> M + Send + Sync>;

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
    /// Client connections: open now, and accepted since the start.
    pub clients_connected: u64,
    pub connections_received: u64,
    /// Client requests decoded, and client bytes read and written.
    pub requests: u64,
    pub client_bytes_in: u64,
    pub client_bytes_out: u64,
    /// When this process started (Unix milliseconds), for uptime.
    pub started_unix_ms: u64,
}

/// The state transfer of the current join (either side).
#[derive(Default)]
pub(crate) struct Transfer {
    /// Primary: the snapshot taken for a joiner, until its snapshot
    /// connection takes it.
    pub(crate) pending: Option<PendingSnapshot>,
    /// Bumped on every machine reset, so a late snapshot (or executor) of
    /// an abandoned join is not installed.
    pub(crate) gen: u64,
    /// Backup: the snapshot of this join is loaded; entries may execute.
    pub(crate) loaded: bool,
    /// Primary: the joiner (connection) offered a partial catch-up from
    /// this seq (`catchup`).
    pub(crate) resume: Option<(ConnId, Seq)>,
}

pub struct Replica<M: Machine, I: Io = TokioIo> {
    pub(crate) core: Core,
    pub(crate) machine: M,
    pub(crate) factory: Factory<M>,
    pub(crate) opts: Arc<NodeOptions>,
    /// Random per process: tells this process from an earlier one of the same node.
    pub(crate) incarnation: u64,
    /// Identifies the machine kind and its configuration in handshakes.
    pub(crate) machine_tag: String,
    pub(crate) io: I,
    pub(crate) chans: Channels,
    pub(crate) transfer: Transfer,
    pub(crate) record: RecordCtx,
    /// Backup: entries received and not yet executed.
    pub(crate) exec: ExecQueue,
    /// The primary's client address, for redirects from a backup.
    pub(crate) primary_client: Option<String>,
    pub(crate) stats: Stats,
    /// Stopped as asked: the process exits once what it released is written.
    pub(crate) exiting: bool,
    /// Fail-stopped (the simulator's runtime returns from `Io::halt`).
    halted: bool,
    /// The housekeeping op's buffer, reused.
    scratch_op: Vec<u8>,
    /// (primary?, intake open?) when the client connections last heard.
    intake_seen: (bool, bool),
    /// This node's disk (`--appendfsync`; off without it).
    pub(crate) disk: Disk,
}

impl<M: Machine, I: Io> Replica<M, I> {
    pub fn new(opts: Arc<NodeOptions>, factory: Factory<M>, machine_tag: String, incarnation: u64, io: I) -> Self {
        debug_assert_eq!(
            opts.protocol.durable_acks,
            opts.persist.as_ref().is_some_and(|p| p.fsync == understudy_durable::Fsync::Always),
            "durable acks go with --appendfsync always"
        );
        let disk = opts
            .persist
            .as_ref()
            .map_or_else(Disk::default, |p| Disk::new(p.snapshot_every_bytes, p.snapshot_every_secs * 1000, p.backlog_bytes));
        Replica {
            core: Core::new(opts.protocol.clone(), opts.node.clone()),
            machine: factory(),
            factory,
            opts,
            incarnation,
            machine_tag,
            io,
            chans: Channels::default(),
            transfer: Transfer::default(),
            record: RecordCtx::default(),
            exec: ExecQueue::default(),
            primary_client: None,
            stats: Stats { started_unix_ms: crate::ctx::wall_us() / 1000, ..Stats::default() },
            exiting: false,
            halted: false,
            scratch_op: Vec::new(),
            intake_seen: (false, false),
            disk,
        }
    }

    /// The protocol core: role, epoch, seqs (read only; events go through
    /// [`Replica::feed`]).
    pub fn core(&self) -> &Core {
        &self.core
    }

    pub fn machine(&self) -> &M {
        &self.machine
    }

    pub fn opts(&self) -> &NodeOptions {
        &self.opts
    }

    /// Primary: the client address its backup (or joiner) published, when
    /// it has one and said so in its hello.
    pub fn backup_client(&self) -> Option<&str> {
        self.core.stream_from().and_then(|(c, _)| self.chans.client(c))
    }

    /// Stopped as asked: the runtime ends once its channels are written.
    pub fn is_exiting(&self) -> bool {
        self.exiting
    }

    /// An operator's switchover: the core decides (`Ok`: the successor's
    /// name). A machine that cannot rejoin in place refuses.
    pub fn request_switchover(&mut self) -> Result<String, String> {
        if !self.machine.rejoins_in_place() {
            return Err(
                "a WebAssembly guest is not restarted in place: send the primary SIGTERM instead (it hands over and exits)"
                    .into(),
            );
        }
        let now = self.now();
        let answer = self.core.request_switchover(now);
        self.pump();
        answer
    }

    /// Monotonic milliseconds for the core.
    pub fn now(&self) -> Millis {
        self.io.now()
    }

    pub fn is_halted(&self) -> bool {
        self.halted
    }

    /// Begins: the core reads the arbiter.
    pub fn start(&mut self) {
        let now = self.now();
        self.core.start(now);
        self.pump();
    }

    /// Feeds an event to the core and performs what follows.
    pub fn feed(&mut self, ev: Event) -> Outcome {
        if self.halted {
            return Outcome::Refused("halted".into());
        }
        let now = self.now();
        let outcome = self.core.handle(now, ev);
        self.pump();
        outcome
    }

    /// Lets time pass in the core: heartbeats, failure detection, retries.
    pub fn tick(&mut self) {
        if self.halted {
            return;
        }
        let now = self.now();
        if let Some(conn) = self.core.silent_peer(now) {
            // Read what has arrived before declaring the peer failed.
            if self.io.unread(conn) {
                self.log(log::Level::Info, &format!("the peer on channel {conn} seemed silent, but its bytes wait unread here: this node was slow, not its peer"));
                self.core.heard(conn, now);
            }
        }
        self.core.poll(now);
        self.pump();
    }

    /// Performs every command the core has produced, until it produces no
    /// more; then wakes the client connections if the core's intake (or
    /// the role that decides whether they read at all) changed: a claim won
    /// after losing the backup reopens the intake without releasing
    /// anything new, and nothing else would wake a connection waiting for it.
    pub fn pump(&mut self) {
        let mut cmds = Vec::new();
        loop {
            self.core.drain_commands(&mut cmds);
            if cmds.is_empty() || self.halted {
                break;
            }
            for c in cmds.drain(..) {
                self.perform(c);
                if self.halted {
                    return;
                }
            }
        }
        self.disk_catch_up();
        let intake = (self.core.is_primary(), self.core.intake_open());
        if intake != self.intake_seen {
            self.intake_seen = intake;
            self.io.intake_changed();
        }
    }

    /// Fail-stop: nothing held at the output gate is ever released.
    pub fn halt(&mut self, reason: &str) {
        self.halted = true;
        self.io.halt(reason);
    }

    pub(crate) fn log(&mut self, level: log::Level, line: &str) {
        self.io.log(level, line);
    }

    /// Forgets a connection and stops what serves it.
    pub fn drop_conn(&mut self, id: ConnId) {
        if self.transfer.pending.as_ref().is_some_and(|p| p.conn == id) {
            // Holding it would keep copy-on-write copies alive for nothing.
            self.transfer.pending = None;
        }
        if self.chans.remove(id) {
            self.io.conn_dropped(id);
        }
    }

    pub fn has_conn(&self, id: ConnId) -> bool {
        self.chans.contains(id)
    }

    /// Seals the open batch so the writer can take the buffer. A read that
    /// still waits for an entry after it gets a barrier entry first (the
    /// core allocates its seq).
    pub fn seal_batch(&mut self, conn: ConnId) {
        if let Some(seq) = self.core.barrier_for_flush(conn) {
            self.push_entry(seq, EntryKind::Barrier, 0, |_| {});
            // On this node's disk too, under the same epoch.
            self.disk_catch_up();
        }
        if let Some(s) = self.chans.seal(conn) {
            self.stats.log_bytes += s.bytes;
            self.stats.log_entries += s.entries;
        }
    }

    /// True while the primary may take client requests: the core's flow
    /// control allows it and the channel's send buffer is not backlogged.
    pub fn intake_open(&self) -> bool {
        self.core.intake_open()
            && self.core.stream_from().is_none_or(|(c, _)| self.chans.backlog(c) < self.opts.channel_backlog_bytes_max)
    }

    /// Wakes the channel's writer if a read waits for a barrier entry: a
    /// front end calls it once after the reads of a batch of requests
    /// (they share one barrier), not once per read.
    pub fn kick_barrier(&mut self) {
        if self.core.barrier_needed() {
            if let Some((c, _)) = self.core.stream_from() {
                self.io.wake_writer(c);
            }
        }
    }

    /// Appends a frame to a connection's send buffer and wakes its writer.
    pub fn send_frame(&mut self, conn: ConnId, kind: Kind, seq: Seq, payload: impl FnOnce(&mut Vec<u8>)) {
        self.seal_batch(conn);
        if self.chans.frame(conn, header(self.core.epoch(), seq, kind), payload) {
            self.io.wake_writer(conn);
        }
    }

    /// A heartbeat (primary) or an ack (backup): sent like any frame, and
    /// handed to the runtime, whose beat thread repeats the last one
    /// written while the event loop is busy (`node::beat`).
    fn send_liveness(&mut self, conn: ConnId, kind: Kind, payload: impl FnOnce(&mut Vec<u8>)) {
        self.seal_batch(conn);
        let before = self.chans.backlog(conn);
        self.send_frame(conn, kind, 0, payload);
        let n = self.chans.backlog(conn).saturating_sub(before);
        if n > 0 {
            self.io.liveness_queued(conn, self.chans.tail(conn, n));
        }
    }

    /// Primary: writes entry `seq` to the backup's channel, if there is
    /// one. Returns true when the batch is full and should be sealed.
    pub fn push_entry(&mut self, seq: Seq, kind: EntryKind, body_len: usize, fill: impl FnOnce(&mut Vec<u8>)) -> bool {
        let Some((conn, from)) = self.core.stream_from() else { return false };
        debug_assert!(seq > from, "entry {seq} is covered by the backup's snapshot or acks ({from})");
        let epoch = self.core.epoch();
        match self.chans.push_entry(conn, epoch, seq, kind, body_len, fill) {
            Some(full) => {
                self.io.wake_writer(conn);
                full
            }
            None => false,
        }
    }

    /// Primary: logs an operation the machine just applied with `self.record`.
    pub fn log_op(&mut self, seq: Seq, op: &[u8]) {
        let streaming = self.core.stream_from().is_some();
        if !streaming && !self.disk.on {
            return;
        }
        let now = self.record.now;
        let random = std::mem::take(&mut self.record.random);
        let len = OpEntry::encoded_len(now, &random, op.len());
        let fill = |o: &mut Vec<u8>| {
            OpEntry::encode_record(o, now, &random);
            o.extend_from_slice(op);
        };
        if self.disk.on {
            self.disk_entry(seq, EntryKind::Op, len, fill);
        }
        let full = streaming && self.push_entry(seq, EntryKind::Op, len, fill);
        self.record.random = random;
        if full {
            if let Some((conn, _)) = self.core.stream_from() {
                self.seal_batch(conn);
            }
        }
    }

    /// Performs one command of the core.
    fn perform(&mut self, c: Command) {
        match c {
            Command::ReadArbiter | Command::Claim { .. } | Command::AddMember { .. } | Command::Publish { .. } => {
                self.io.arbiter(c)
            }
            Command::Connect { repl, epoch } => self.io.connect(&repl, epoch, self.transfer.gen),
            Command::AcceptJoin { conn, snapshot_seq } => self.accept_join(conn, snapshot_seq),
            Command::Reject { conn, code, message } => {
                // The core tells the operator (once per joiner, then at intervals).
                let peer = self.chans.peer(conn).map_or("?", |p| p.0).to_string();
                self.log(log::Level::Debug, &format!("refusing {peer}: {message}"));
                if self.chans.send_and_close(conn, &Handshake::reject(self.core.epoch(), code, message)) {
                    self.io.wake_writer(conn);
                }
            }
            Command::Close { conn, reason } => {
                if let Some((peer, _)) = self.chans.peer(conn) {
                    let line = format!("closing channel to {peer:?}: {reason}");
                    self.log(log::Level::Info, &line);
                }
                self.drop_conn(conn);
            }
            Command::SendHeartbeat { conn, last_seq } => {
                self.send_liveness(conn, Kind::Heartbeat, |o| Heartbeat { last_seq }.encode(o))
            }
            Command::SendAck { conn, ack } => self.send_liveness(conn, Kind::Ack, |o| ack.encode(o)),
            Command::SendInSync { conn } => {
                let peer = self.chans.peer(conn).map_or("?", |p| p.0).to_string();
                self.log(log::Level::Info, &format!("backup {peer} is in sync: outputs now wait for its acks"));
                self.stats.joins_in_sync += 1;
                self.send_frame(conn, Kind::InSync, 0, |_| {});
            }
            Command::SendHandover { conn } => self.send_frame(conn, Kind::Handover, 0, |_| {}),
            Command::Release { .. } => {
                self.io.gate_moved();
                self.io.intake_changed();
            }
            Command::BecomePrimary { epoch, from_backup } => self.become_primary(epoch, from_backup),
            Command::ResetMachine => {
                self.disk_forget();
                self.machine = (self.factory)();
                self.exec = ExecQueue::default();
                self.transfer.gen += 1;
                self.transfer.loaded = false;
                // The front end's publisher stays: it belongs to the node.
                self.record = RecordCtx { publisher: self.record.publisher.take(), ..RecordCtx::default() };
                // The abandoned join's executor sees the new generation and ends.
                self.io.wake_exec();
                // A primary that handed over (switchover): client requests held
                // at its closed intake are answered now (-READONLY, redirect).
                self.io.intake_changed();
            }
            Command::Halt { reason } => self.halt(&reason),
            Command::Refuse { reason } => {
                self.halted = true;
                self.io.refuse(&reason);
            }
            Command::Notice { message } => self.log(log::Level::Warn, &message),
            Command::Exit { reason } => {
                self.log(log::Level::Info, &format!("stopping: {reason}"));
                // The runtime ends the process once the channels are written.
                self.exiting = true;
            }
        }
    }

    fn become_primary(&mut self, epoch: u64, from_backup: bool) {
        let last = self.core.status().last_seq;
        if from_backup {
            self.log(log::Level::Warn, &format!("primary lost; went live as primary of epoch {epoch} at seq {last}"));
            self.exec = ExecQueue::default();
        } else {
            self.log(log::Level::Info, &format!("primary of epoch {epoch} (unprotected until a backup joins)"));
        }
        self.primary_client = Some(self.opts.advertise_client.clone());
        if let Err(e) = self.machine.on_primary(last + 1) {
            return self.halt(&e);
        }
        self.io.gate_moved();
        self.io.intake_changed();
    }

    /// Primary: accept the join on `conn`: take the snapshot now (at
    /// `snapshot_seq`) for the joiner's snapshot connection, and answer.
    fn accept_join(&mut self, conn: ConnId, snapshot_seq: Seq) {
        let Some((node, incarnation)) = self.chans.peer(conn).map(|(n, i)| (n.to_string(), i)) else { return };
        if self.transfer.resume.take() == Some((conn, snapshot_seq)) {
            return self.accept_partial_join(conn, &node, snapshot_seq);
        }
        let writer = self.machine.snapshot();
        let hint = writer.bytes_hint();
        self.log(log::Level::Info, &format!("join of {node:?} accepted; snapshot at seq {snapshot_seq} (~{hint} bytes)"));
        self.stats.snapshot_bytes_hint = hint;
        self.stats.joins_accepted += 1;
        self.transfer.pending = Some(PendingSnapshot { conn, node, incarnation, seq: snapshot_seq, writer });
        self.send_frame(conn, Kind::JoinAccepted, snapshot_seq, |_| {});
    }
}

impl<S: StateMachine + Send, I: Io> Replica<App<S>, I> {
    /// Primary: applies a write through the machine in record mode and logs
    /// it; returns the seq that tags its reply.
    pub fn apply_write(&mut self, op: &[u8], reply: &mut Vec<u8>) -> Seq {
        let seq = self.core.append();
        self.record.reset(seq);
        self.machine.sm.apply(&mut self.record, op, reply);
        self.log_op(seq, op);
        seq
    }

    /// Primary: answers a read from the current state; returns the tag its
    /// reply waits for (the output rule for reads).
    pub fn read(&mut self, request: &[u8], reply: &mut Vec<u8>) -> Seq {
        debug_assert!(self.core.is_primary(), "a read answered by a node that is not the primary");
        let now_us = crate::ctx::wall_us().max(self.record.floor.0);
        self.machine.sm.read(now_us, request, reply);
        self.core.read_tag()
    }

    /// Primary: logs and applies the machine's housekeeping op, if it has
    /// one now (`StateMachine::housekeeping`); returns its seq.
    pub fn housekeeping(&mut self, reply: &mut Vec<u8>) -> Option<Seq> {
        let now_us = crate::ctx::wall_us().max(self.record.floor.0);
        let mut op = std::mem::take(&mut self.scratch_op);
        op.clear();
        let seq = self.machine.sm.housekeeping(now_us, &mut op).then(|| self.apply_write(&op, reply));
        self.scratch_op = op;
        seq
    }
}
