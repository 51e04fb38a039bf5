//! The runtime's seam to the world: what the replica logic (`replica`,
//! `frames`, `transfer`) asks of its surroundings. The tokio runtime
//! (`tokio_io`) implements it with sockets, threads and `Notify`s; the
//! seeded simulator (`understudy-sim`) with a simulated network, clock and
//! arbiter — so the simulator runs the node's own code paths.

use understudy_core::{Command, ConnId, Epoch, Millis};

/// What the replica logic needs from its runtime. Calls never block.
pub trait Io {
    /// Monotonic milliseconds for the protocol core.
    fn now(&self) -> Millis;
    /// An arbiter call (`ReadArbiter`, `Claim`, `AddMember`, `Publish`);
    /// its answer comes back as an event.
    fn arbiter(&mut self, call: Command);
    /// Connection `conn` has bytes to write, or is closing.
    fn wake_writer(&mut self, conn: ConnId);
    /// `conn` is forgotten: whatever serves it stops.
    fn conn_dropped(&mut self, conn: ConnId);
    /// The output gate moved or the role changed: client tasks write what
    /// the gate lets out now.
    fn gate_moved(&mut self);
    /// The primary's intake may have reopened (or closed).
    fn intake_changed(&mut self);
    /// Received entries wait for execution (or the join they belong to ended).
    fn wake_exec(&mut self);
    /// Open a logging channel to the primary at `repl` and join it; `gen`
    /// is the join generation the attempt belongs to. The outcome comes
    /// back through `Replica::joined` or `Replica::join_failed`.
    fn connect(&mut self, repl: &str, epoch: Epoch, gen: u64);
    /// A request to this node's disk (`--appendfsync`); answers come back
    /// through `Replica::disk_done`.
    fn disk(&mut self, req: crate::disk_state::DiskReq);
    /// The primary's open disk batch wants writing: call
    /// `Replica::flush_disk` soon (after the requests already read).
    fn wake_disk(&mut self);
    /// Whether bytes from the peer on `conn` wait unread in this node's
    /// socket — asked before a silent peer is declared failed
    /// (`Core::silent_peer`). The simulator hands a node what arrived
    /// while it was stalled before its next tick, so it has none.
    fn unread(&self, _conn: ConnId) -> bool {
        false
    }
    /// Heartbeat or ack `frame` was queued on `conn` (the tokio runtime's
    /// beat thread repeats the last one written while the loop is busy;
    /// the simulator has no such thread).
    fn liveness_queued(&mut self, _conn: ConnId, _frame: &[u8]) {}
    /// A line for the operator.
    fn log(&mut self, level: log::Level, line: &str);
    /// Fail-stop: nothing held at the output gate is ever released. The
    /// tokio runtime exits the process here.
    fn halt(&mut self, reason: &str);
    /// The node's configuration cannot work: stop for good (exit code 2).
    fn refuse(&mut self, reason: &str);
}

/// Exit code of a node that fail-stopped (lost a claim, saw a newer epoch,
/// diverged).
pub const HALT_EXIT_CODE: i32 = 3;
/// A node whose configuration cannot work (the reason names the flag).
pub const REFUSED_EXIT_CODE: i32 = 2;
/// Largest batch of entries before it is sealed and sent without waiting
/// for the writer to come round.
pub const BATCH_BYTES_MAX: usize = 1 << 20;
