//! The invariants of DESIGN §1, checked after every step.
//!
//! - one primary per epoch;
//! - epochs only grow (per process);
//! - no acknowledged output lost: every released write is in the log of
//!   every primary of a later epoch, at the same seq;
//! - reads are not stale: a released read saw every write acknowledged
//!   before the read arrived;
//! - after healing, the cluster converges to one primary with an in-sync
//!   backup holding the same log.

use std::collections::BTreeMap;

use understudy_core::{Epoch, Millis, Seq};

use crate::model::Val;

/// A write some client saw acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Acked {
    pub seq: Seq,
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

fn has(log: &[Val], seq: Seq, op: u64) -> bool {
    seq >= 1 && log.get(seq as usize - 1) == Some(&Val::Write(op))
}

impl Checker {
    pub fn on_become_primary(&mut self, node: usize, epoch: Epoch, log: &[Val]) -> Result<(), String> {
        if let Some(other) = self.primaries.insert(epoch, node) {
            if other != node {
                return Err(format!("two primaries in epoch {epoch}: nodes {other} and {node}"));
            }
        }
        for a in &self.acked {
            if !has(log, a.seq, a.op) {
                return Err(format!(
                    "node {node} went live as primary of epoch {epoch} without acknowledged write op {} at seq {} (acked in epoch {} at {} ms); its log has {:?} there",
                    a.op,
                    a.seq,
                    a.epoch,
                    a.at,
                    log.get(a.seq as usize - 1)
                ));
            }
        }
        Ok(())
    }

    /// A write's reply left node `node` (of `epoch`) at `now`. `later` lists
    /// the logs of the primaries of later epochs.
    pub fn on_write_released(&mut self, a: Acked, node: usize, later: &[(usize, &[Val])]) -> Result<(), String> {
        for (x, log) in later {
            if !has(log, a.seq, a.op) {
                return Err(format!(
                    "node {node} (epoch {}) acknowledged op {} at seq {} which node {x}, primary of a later epoch, does not hold",
                    a.epoch, a.op, a.seq
                ));
            }
        }
        self.acked.push(a);
        Ok(())
    }

    /// A read's reply left `node`; it saw `log[..state_seq]`.
    pub fn on_read_released(
        &mut self,
        node: usize,
        epoch: Epoch,
        state_seq: Seq,
        arrival: Millis,
        log: &[Val],
    ) -> Result<(), String> {
        self.reads_released += 1;
        for a in self.acked.iter().filter(|a| a.at < arrival) {
            if a.seq > state_seq || !has(log, a.seq, a.op) {
                return Err(format!(
                    "stale read: node {node} (epoch {epoch}) answered a read that arrived at {arrival} ms from state seq {state_seq}, missing op {} (seq {}) acknowledged at {} ms in epoch {}",
                    a.op, a.seq, a.at, a.epoch
                ));
            }
        }
        Ok(())
    }
}
