//! The simulated network: connections that are FIFO per direction (TCP),
//! with delays, partitions (directed cuts), and — when a run enables it — a
//! misbehaving transport that duplicates and reorders messages, which the
//! core must survive by closing the channel, never by accepting it.

use std::collections::{BTreeMap, BTreeSet};

use understudy_core::{Epoch, Millis, Seq};
use understudy_wire::msg::{Ack, RejectCode};

use crate::model::Val;

/// A message on a logging channel.
#[derive(Debug, Clone)]
pub enum Msg {
    JoinAccepted {
        epoch: Epoch,
        seq: Seq,
    },
    Entries {
        epoch: Epoch,
        first: Seq,
        vals: Vec<Val>,
    },
    Heartbeat {
        epoch: Epoch,
        last_seq: Seq,
    },
    InSync {
        epoch: Epoch,
    },
    Handover {
        epoch: Epoch,
    },
    Reject {
        code: RejectCode,
    },
    /// The snapshot, carried whole (its transfer time is its delay).
    Snapshot {
        seq: Seq,
        log: Vec<Val>,
    },
    Ack {
        epoch: Epoch,
        ack: Ack,
    },
    /// The other side closed (FIN or RST).
    Closed,
}

/// One connection: `backup` opened it to `primary`.
#[derive(Debug, Clone)]
pub struct Conn {
    pub backup: (usize, u64),
    pub primary: (usize, u64),
    /// Last delivery time per direction (0: to the primary, 1: to the backup), for FIFO.
    pub last_at: [Millis; 2],
    pub open: bool,
    /// The backup's core knows this connection (it was accepted).
    pub joined: bool,
}

#[derive(Debug, Default)]
pub struct Net {
    /// Directed cuts: (from, to) → when the link heals. A message sent on
    /// an established connection across a cut is not lost — TCP retransmits
    /// it — it arrives after the heal, in order. New connections fail.
    pub cut: BTreeMap<(usize, usize), Millis>,
    /// Nodes that cannot reach the arbiter.
    pub arbiter_cut: BTreeSet<usize>,
    pub arbiter_down: bool,
    /// This run's transport duplicates and reorders messages.
    pub lossy: bool,
}

impl Net {
    pub fn reachable(&self, from: usize, to: usize) -> bool {
        !self.cut.contains_key(&(from, to))
    }

    /// When a message sent now from `from` to `to` can start its way.
    pub fn open_at(&self, from: usize, to: usize, now: Millis) -> Millis {
        self.cut.get(&(from, to)).map_or(now, |heal| (*heal).max(now))
    }

    pub fn add_cut(&mut self, from: usize, to: usize, heal_at: Millis) {
        let e = self.cut.entry((from, to)).or_insert(heal_at);
        *e = (*e).max(heal_at);
    }

    pub fn arbiter_reachable(&self, node: usize) -> bool {
        !self.arbiter_down && !self.arbiter_cut.contains(&node)
    }

    /// The end of the fault phase: the network is good again (and a
    /// misbehaving transport stops misbehaving).
    pub fn heal(&mut self) {
        self.lossy = false;
        // Messages already held behind a cut still arrive at its heal time.
        self.cut.clear();
        self.arbiter_cut.clear();
        self.arbiter_down = false;
    }
}
