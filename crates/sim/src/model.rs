//! The outputs of the simulated clients: tagged replies waiting at a
//! primary's output gate.

use understudy_core::{Epoch, Millis, Seq};

/// A reply held at a primary's output gate.
#[derive(Debug, Clone)]
pub struct Output {
    pub tag: Seq,
    /// When the reply was queued at the gate.
    pub queued_at: Millis,
    pub epoch: Epoch,
    pub kind: OutKind,
}

#[derive(Debug, Clone)]
pub enum OutKind {
    /// The reply to write `op`, which the machine applied as its `idx`-th.
    Write { idx: u64, op: u64 },
    /// The reply to a read that saw the first `state_len` writes; the read
    /// arrived at `arrival`.
    Read { state_len: u64, arrival: Millis },
}
