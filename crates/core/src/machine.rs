//! What the engine replicates: a *machine* driven in record mode on the
//! primary and in replay mode on the backup (DESIGN §2). The Rust
//! [`StateMachine`] API is the application level; the WebAssembly
//! hypervisor is the machine level.

/// The nondeterministic inputs an operation may ask for — VMware FT's
/// "weird instructions". On the primary the engine reads the real clock and
/// randomness and records what it handed out; on the backup it hands out the
/// recorded values. Asking for a value the primary did not record is a
/// divergence.
pub trait Ctx {
    /// Wall-clock time in microseconds since the Unix epoch. Repeated calls
    /// within one operation return the same value; across operations it never
    /// goes backwards, not even across a failover.
    fn now_us(&mut self) -> u64;
    /// A random value.
    fn random_u64(&mut self) -> u64;
    /// Publishes `message` on `channel` to the node's subscribers (the
    /// key-value service's pub/sub) and returns how many it reached. On the
    /// primary the engine delivers the message under this operation's seq
    /// (the output rule holds it like a reply) and records the count; on
    /// the backup it delivers nothing and hands out the recorded count, so
    /// an operation that acts on the count (a script) does the same on
    /// both. Default, for contexts with no subscribers (tests): 0.
    fn publish(&mut self, channel: &[u8], message: &[u8]) -> u64 {
        let _ = (channel, message);
        0
    }
}

/// A deterministic application replicated by the engine.
///
/// `apply` must be a pure function of the machine's state, `op` and the
/// values `ctx` hands out: the backup calls it with the same arguments and
/// must reach the same state and produce the same reply. docs/API.md
/// explains the contract with two examples.
pub trait StateMachine: 'static {
    /// Applies one logged operation and writes the client-visible reply.
    fn apply(&mut self, ctx: &mut dyn Ctx, op: &[u8], reply: &mut Vec<u8>);

    /// Answers a read-only request (one the front end classified as a
    /// read) from the current state, at wall-clock time `now_us` (never
    /// behind any time an applied operation saw). Runs on the primary only,
    /// outside the log: it must change nothing that `apply` or a snapshot
    /// can observe. Its reply is released once the backup has acknowledged
    /// every operation applied before it (the output rule for reads).
    fn read(&self, now_us: u64, request: &[u8], reply: &mut Vec<u8>);

    /// Work the machine wants done without a client: the primary calls it
    /// every 100 ms while it takes requests, at wall-clock time `now_us`;
    /// returning true logs and applies `op` (filled here) like a client's
    /// write (expiring keys, leases). The op must still be correct when
    /// applied later, with its own recorded time: name what to change and
    /// let `apply` re-check it. Default: nothing to do.
    fn housekeeping(&self, now_us: u64, op: &mut Vec<u8>) -> bool {
        let _ = (now_us, op);
        false
    }

    /// Takes a consistent snapshot of the current state. Must be cheap (no
    /// copy of the whole state): the primary keeps serving while the returned
    /// writer serializes, possibly on another thread.
    fn snapshot(&self) -> Box<dyn SnapshotWriter>;

    /// Loads one chunk produced by a [`SnapshotWriter`] into an empty
    /// machine. Chunks arrive in order.
    fn restore_chunk(&mut self, chunk: &[u8]) -> Result<(), SnapshotError>;

    /// Called after the last chunk: checks completeness.
    fn restore_finish(&mut self) -> Result<(), SnapshotError>;

    /// An order-independent digest of the whole state, equal on replicas that
    /// applied the same operations. The runtime does not call it (it costs a
    /// pass over the state); tests and the simulator's checker compare
    /// replicas with it. Divergence is caught in replay: a backup whose
    /// operation asks the context for other values than the primary
    /// recorded halts (docs/ARCHITECTURE.md, "Divergence").
    fn digest(&self) -> u64;
}

/// Serializes a snapshot chunk by chunk.
pub trait SnapshotWriter: Send {
    /// Appends the next chunk of at most about `max_bytes` to `out`. Returns
    /// `false` (and appends nothing) once the snapshot is complete.
    fn next_chunk(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> bool;
    /// Rough total size, for progress display.
    fn bytes_hint(&self) -> u64;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot is corrupt or incomplete: {0}")]
pub struct SnapshotError(pub String);
