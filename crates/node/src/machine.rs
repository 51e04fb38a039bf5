//! What the runtime replicates: a [`Machine`]. The application level wraps a
//! [`StateMachine`] in [`App`] (operations applied on the event loop); the
//! machine level is a WebAssembly guest on its own thread (`wasm`).

use understudy_core::{Seq, SnapshotError, SnapshotWriter, StateMachine};

use crate::ctx::TimeFloor;
use crate::exec::{Divergence, ExecQueue};

pub trait Machine: Send + 'static {
    /// Backup: consumes up to `budget` received entries from `queue`.
    /// Returns the last seq executed, if that advanced now (a machine that
    /// executes elsewhere reports its progress through its own channel).
    fn replay(&mut self, queue: &mut ExecQueue, floor: &mut TimeFloor, budget: usize) -> Result<Option<Seq>, Divergence>;

    /// A consistent snapshot at the current seq, cheap to take (the primary
    /// keeps serving while it is serialized).
    fn snapshot(&self) -> Box<dyn SnapshotWriter>;

    /// Loads one snapshot chunk into an empty machine (on a thread).
    fn restore_chunk(&mut self, chunk: &[u8]) -> Result<(), SnapshotError>;

    /// After the last chunk.
    fn restore_finish(&mut self) -> Result<(), SnapshotError>;

    /// Whether this machine, serving as primary, can be thrown away and the
    /// node rejoin as a backup in the same process (`understudy switchover`).
    fn rejoins_in_place(&self) -> bool {
        true
    }

    /// This node becomes primary: the machine switches to record mode; its
    /// next entry will have seq `next_seq`. An error halts the node.
    fn on_primary(&mut self, next_seq: Seq) -> Result<(), String> {
        let _ = next_seq;
        Ok(())
    }

    /// Replaces this (empty) machine with a restored one taken at `seq`.
    /// Returns true if the snapshot is applied now; false if the machine
    /// applies it asynchronously and reports when it has.
    fn install(&mut self, restored: Self, seq: Seq) -> bool
    where
        Self: Sized,
    {
        let _ = seq;
        *self = restored;
        true
    }
}

/// An application-level machine: operations are applied on the event loop.
pub struct App<S> {
    pub sm: S,
    /// Replies of replayed operations, discarded (a backup's outputs go
    /// nowhere).
    scratch: Vec<u8>,
}

impl<S> App<S> {
    pub fn new(sm: S) -> Self {
        App { sm, scratch: Vec::new() }
    }
}

impl<S: StateMachine + Send> Machine for App<S> {
    fn replay(&mut self, queue: &mut ExecQueue, floor: &mut TimeFloor, budget: usize) -> Result<Option<Seq>, Divergence> {
        queue.run(&mut self.sm, floor, &mut self.scratch, budget)
    }

    fn snapshot(&self) -> Box<dyn SnapshotWriter> {
        self.sm.snapshot()
    }

    fn restore_chunk(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
        self.sm.restore_chunk(chunk)
    }

    fn restore_finish(&mut self) -> Result<(), SnapshotError> {
        self.sm.restore_finish()
    }
}
