//! What the simulated nodes hold: the machine is a log of values, the
//! outputs are tagged replies waiting at the output gate.

use understudy_core::{Epoch, Millis, Seq};

/// One log entry's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Val {
    /// A client write, by its unique op id.
    Write(u64),
    /// A no-op appended for a read (output rule for reads).
    Barrier,
}

/// A reply held at a primary's output gate.
#[derive(Debug, Clone)]
pub struct Output {
    pub tag: Seq,
    pub epoch: Epoch,
    pub kind: OutKind,
}

#[derive(Debug, Clone)]
pub enum OutKind {
    /// The reply to a write logged at `seq`.
    Write { seq: Seq, op: u64 },
    /// The reply to a read that saw the state after `state_seq`; the read
    /// arrived at `arrival`.
    Read { state_seq: Seq, arrival: Millis },
}
