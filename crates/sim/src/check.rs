//! The invariants of DESIGN §1, checked after every step.
//!
//! - one primary per epoch;
//! - epochs only grow (per process);
//! - no acknowledged output lost: every released write is in the state of
//!   every primary of a later epoch, at the same place;
//! - reads are not stale: a released read saw every write acknowledged
//!   before the read arrived;
//! - after healing, the cluster converges to one primary with an in-sync
//!   backup holding the same state.
//!
//! A replica's state is the list of writes its machine applied
//! (the simulated machine, `LogSm`); a write's place in it is its index.

use std::collections::BTreeMap;

use understudy_core::{Epoch, Millis};

/// A write some client saw acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Acked {
    /// Its place in the state.
    pub idx: u64,
    pub op: u64,
    pub epoch: Epoch,
    pub at: Millis,
}

#[derive(Debug, Default)]
pub struct Checker {
    /// Epoch → node that became its primary.
    pub primaries: BTreeMap<Epoch, usize>,
    pub acked: Vec<Acked>,
    pub reads_released: u64,
}

fn has(ops: &[u64], idx: u64, op: u64) -> bool {
    ops.get(idx as usize) == Some(&op)
}

impl Checker {
    pub fn on_become_primary(&mut self, node: usize, epoch: Epoch, ops: &[u64]) -> Result<(), String> {
        if let Some(other) = self.primaries.insert(epoch, node) {
            if other != node {
                return Err(format!("two primaries in epoch {epoch}: nodes {other} and {node}"));
            }
        }
        for a in &self.acked {
            if !has(ops, a.idx, a.op) {
                return Err(format!(
                    "node {node} went live as primary of epoch {epoch} without acknowledged write op {} (write #{}, acked in epoch {} at {} ms); its state has {:?} there",
                    a.op,
                    a.idx,
                    a.epoch,
                    a.at,
                    ops.get(a.idx as usize)
                ));
            }
        }
        Ok(())
    }

    /// A write's reply left node `node` (of `epoch`). `later` lists the
    /// states of the primaries of later epochs.
    pub fn on_write_released(&mut self, a: Acked, node: usize, later: &[(usize, &[u64])]) -> Result<(), String> {
        for (x, ops) in later {
            if !has(ops, a.idx, a.op) {
                return Err(format!(
                    "node {node} (epoch {}) acknowledged op {} (write #{}) which node {x}, primary of a later epoch, does not hold",
                    a.epoch, a.op, a.idx
                ));
            }
        }
        self.acked.push(a);
        Ok(())
    }

    /// A read's reply left `node`; it saw the first `state_len` writes of `ops`.
    pub fn on_read_released(
        &mut self,
        node: usize,
        epoch: Epoch,
        state_len: u64,
        arrival: Millis,
        ops: &[u64],
    ) -> Result<(), String> {
        self.reads_released += 1;
        for a in self.acked.iter().filter(|a| a.at < arrival) {
            if a.idx >= state_len || !has(ops, a.idx, a.op) {
                return Err(format!(
                    "stale read: node {node} (epoch {epoch}) answered a read that arrived at {arrival} ms from a state of {state_len} writes, missing op {} (write #{}) acknowledged at {} ms in epoch {}",
                    a.op, a.idx, a.at, a.epoch
                ));
            }
        }
        Ok(())
    }
}
