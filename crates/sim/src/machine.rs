//! What the simulated nodes run: the node runtime's real [`Replica`] with a
//! simulated [`Io`] ([`SimIo`]), replicating [`LogSm`] — a state machine
//! whose state is the list of client writes it applied, so the checker can
//! compare what every replica holds.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use understudy_arbiter::{Arbiter, ArbiterError, Claim, ClusterRecord, NodeAddrs, Update};
use understudy_core::{Command, Config, ConnId, Ctx, Epoch, Millis, SnapshotError, SnapshotWriter, StateMachine};
use understudy_durable::Fsync;
use understudy_node::io::Io;
use understudy_node::machine::App;
use understudy_node::options::Persist;
use understudy_node::replica::{Factory, Replica};
use understudy_node::NodeOptions;

/// A simulated node's runtime state.
pub type SimReplica = Replica<App<LogSm>, SimIo>;

/// The replicated state: client writes (op ids) in the order applied.
#[derive(Debug, Default, Clone)]
pub struct LogSm {
    pub ops: Vec<u64>,
    restoring: Vec<u8>,
}

impl StateMachine for LogSm {
    /// `op` is an op id; the reply is its index in the log (little endian).
    fn apply(&mut self, _ctx: &mut dyn Ctx, op: &[u8], reply: &mut Vec<u8>) {
        let id = u64::from_le_bytes(op.try_into().expect("sim ops are 8 bytes"));
        reply.extend_from_slice(&(self.ops.len() as u64).to_le_bytes());
        self.ops.push(id);
    }

    /// Every read answers the number of writes applied (little endian).
    fn read(&self, _now_us: u64, _request: &[u8], reply: &mut Vec<u8>) {
        reply.extend_from_slice(&(self.ops.len() as u64).to_le_bytes());
    }

    fn snapshot(&self) -> Box<dyn SnapshotWriter> {
        Box::new(LogWriter { ops: Arc::new(self.ops.clone()), pos: 0 })
    }

    fn restore_chunk(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
        self.restoring.extend_from_slice(chunk);
        let whole = self.restoring.len() / 8 * 8;
        self.ops.extend(self.restoring[..whole].chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))));
        self.restoring.drain(..whole);
        Ok(())
    }

    fn restore_finish(&mut self) -> Result<(), SnapshotError> {
        match self.restoring.is_empty() {
            true => Ok(()),
            false => Err(SnapshotError(format!("{} stray bytes at the end", self.restoring.len()))),
        }
    }

    fn digest(&self) -> u64 {
        self.ops.iter().fold(self.ops.len() as u64, |h, op| h.rotate_left(5) ^ op)
    }
}

struct LogWriter {
    ops: Arc<Vec<u64>>,
    pos: usize,
}

impl SnapshotWriter for LogWriter {
    fn next_chunk(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> bool {
        if self.pos == self.ops.len() {
            return false;
        }
        let n = (max_bytes / 8).max(1).min(self.ops.len() - self.pos);
        for op in &self.ops[self.pos..self.pos + n] {
            out.extend_from_slice(&op.to_le_bytes());
        }
        self.pos += n;
        true
    }

    fn bytes_hint(&self) -> u64 {
        self.ops.len() as u64 * 8
    }
}

/// What a node asked of the world during a step, performed after it.
#[derive(Debug, Default)]
pub struct Effects {
    pub arbiter: Vec<Command>,
    pub wake: Vec<ConnId>,
    pub dropped: Vec<ConnId>,
    pub connects: Vec<(String, Epoch, u64)>,
    pub exec: bool,
    /// The runtime woke the clients waiting for its intake to open.
    pub intake_woken: bool,
    pub halted: Option<String>,
    pub refused: Option<String>,
    pub lines: Vec<String>,
    /// Requests to the node's disk, in order.
    pub disk: Vec<understudy_node::disk::DiskReq>,
    /// The primary's disk batch wants writing.
    pub disk_wake: bool,
}

/// The simulator's [`Io`]: the world's clock; every request is recorded
/// for the world to perform after the step.
pub struct SimIo {
    pub clock: Rc<Cell<Millis>>,
    pub fx: Rc<RefCell<Effects>>,
}

impl Io for SimIo {
    fn now(&self) -> Millis {
        self.clock.get()
    }
    fn arbiter(&mut self, call: Command) {
        self.fx.borrow_mut().arbiter.push(call);
    }
    fn wake_writer(&mut self, conn: ConnId) {
        let mut fx = self.fx.borrow_mut();
        if !fx.wake.contains(&conn) {
            fx.wake.push(conn);
        }
    }
    fn conn_dropped(&mut self, conn: ConnId) {
        self.fx.borrow_mut().dropped.push(conn);
    }
    fn gate_moved(&mut self) {}
    fn intake_changed(&mut self) {
        self.fx.borrow_mut().intake_woken = true;
    }
    fn wake_exec(&mut self) {
        self.fx.borrow_mut().exec = true;
    }
    fn disk(&mut self, req: understudy_node::disk::DiskReq) {
        self.fx.borrow_mut().disk.push(req);
    }
    fn wake_disk(&mut self) {
        self.fx.borrow_mut().disk_wake = true;
    }
    fn connect(&mut self, repl: &str, epoch: Epoch, gen: u64) {
        self.fx.borrow_mut().connects.push((repl.to_string(), epoch, gen));
    }
    fn log(&mut self, level: log::Level, line: &str) {
        if level <= log::Level::Info {
            self.fx.borrow_mut().lines.push(line.to_string());
        }
    }
    fn halt(&mut self, reason: &str) {
        self.fx.borrow_mut().halted.get_or_insert_with(|| reason.to_string());
    }
    fn refuse(&mut self, reason: &str) {
        self.fx.borrow_mut().refused.get_or_insert_with(|| reason.to_string());
    }
}

/// The arbiter handle in a simulated node's options: never called (the
/// node's arbiter calls go through [`SimIo`] to the world's record).
struct WorldArbiter;

impl Arbiter for WorldArbiter {
    fn read(&self, _: &str) -> Result<Option<ClusterRecord>, ArbiterError> {
        unreachable!("simulated arbiter calls go through SimIo")
    }
    fn claim(&self, _: &str, _: u64, _: &NodeAddrs) -> Result<Claim, ArbiterError> {
        unreachable!("simulated arbiter calls go through SimIo")
    }
    fn add_member(&self, _: &str, _: u64, _: &str, _: &str) -> Result<Update, ArbiterError> {
        unreachable!("simulated arbiter calls go through SimIo")
    }
    fn publish(
        &self,
        _: &str,
        _: u64,
        _: &str,
        _: Option<understudy_arbiter::BackupInfo>,
        _: bool,
    ) -> Result<Update, ArbiterError> {
        unreachable!("simulated arbiter calls go through SimIo")
    }
    fn describe(&self) -> String {
        "the simulated arbiter".into()
    }
}

/// The simulated cluster's name.
pub const CLUSTER: &str = "sim";

/// Chunk size of simulated snapshots: small, so a snapshot has many chunks.
pub const SNAPSHOT_CHUNK_BYTES: usize = 256;

/// Log bytes between two snapshots of a durable simulated node: small, so
/// that snapshots, and the compaction after each, happen many times a run.
pub const SNAPSHOT_EVERY_BYTES: u64 = 4 << 10;
/// Segment size of a durable simulated node: small, so that a log spans
/// several segments and recovery reads across their boundaries.
pub const SEGMENT_BYTES: u64 = 2 << 10;

/// A simulated node's options: the defaults of a real node; `durable`:
/// `--appendfsync always` with small snapshot and segment sizes.
pub fn options(node: &str, protocol: Config, durable: bool) -> NodeOptions {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let mut opts = NodeOptions {
        cluster: CLUSTER.into(),
        node: node.into(),
        arbiter: Arc::new(WorldArbiter),
        client_listen: any,
        tls: None,
        repl_listen: any,
        advertise_client: format!("{node}:client"),
        advertise_repl: node.into(),
        secret: Vec::new(),
        dir: None,
        protocol,
        frame_bytes_max: NodeOptions::FRAME_BYTES_MAX,
        request_bytes_max: NodeOptions::REQUEST_BYTES_MAX,
        snapshot_chunk_bytes: SNAPSHOT_CHUNK_BYTES,
        join_buffer_bytes: NodeOptions::JOIN_BUFFER_BYTES,
        client_pending_bytes_max: NodeOptions::CLIENT_PENDING_BYTES_MAX,
        channel_backlog_bytes_max: NodeOptions::CHANNEL_BACKLOG_BYTES_MAX,
        metrics_listen: None,
        persist: None,
    };
    if durable {
        // `dir` stays None: `NodeOptions::validate` (which wants one) is the
        // CLI's business; the replica never reads it, and the simulated disk
        // is the world's `MemStorage`.
        let persist =
            Persist { snapshot_every_bytes: SNAPSHOT_EVERY_BYTES, segment_bytes: SEGMENT_BYTES, ..Persist::new(Fsync::Always) };
        opts.set_persist(Some(persist));
        assert!(opts.protocol.durable_acks, "appendfsync always makes acks and releases wait for the disk");
    }
    opts
}

/// An empty machine, as the replica's factory makes them.
pub fn fresh() -> App<LogSm> {
    App::new(LogSm::default())
}

/// A fresh replica for incarnation `inc` of `node`.
pub fn replica(
    node: &str,
    inc: u64,
    protocol: Config,
    durable: bool,
    clock: Rc<Cell<Millis>>,
) -> (SimReplica, Rc<RefCell<Effects>>) {
    let fx = Rc::new(RefCell::new(Effects::default()));
    let factory: Factory<App<LogSm>> = Arc::new(fresh);
    let io = SimIo { clock, fx: fx.clone() };
    let r = Replica::new(Arc::new(options(node, protocol, durable)), factory, "sim/1".into(), inc, io);
    (r, fx)
}
