//! The simulated network: connections that are FIFO per direction (TCP)
//! and carry the bytes the nodes' runtimes write, with delays, partitions
//! (directed cuts), and — when a run enables it — a misbehaving transport
//! that duplicates and reorders writes, which the runtime must survive by
//! closing the channel, never by accepting it.

use std::collections::{BTreeMap, BTreeSet};

use understudy_core::{ConnId, Epoch, Millis, Seq};

/// What travels on a link.
#[derive(Debug, Clone)]
pub enum Msg {
    /// Bytes a writer took from a connection's send buffer (whole frames).
    Bytes(Vec<u8>),
    /// A whole snapshot stream (its own connection; its transfer time is
    /// its delay).
    Snapshot(Vec<u8>),
    /// The primary had no snapshot for the joiner (or could not be reached).
    SnapshotRefused(String),
    /// The other side closed (FIN or RST).
    Closed,
}

/// One connection: `backup` (node, incarnation) opened it to `primary`.
#[derive(Debug, Clone)]
pub struct Link {
    pub backup: (usize, u64),
    pub primary: (usize, u64),
    /// The join generation of the attempt that opened it.
    pub gen: u64,
    /// The epoch the joiner asked to join.
    pub epoch: Epoch,
    /// Each side's connection id in its runtime, once it has one.
    pub backup_conn: Option<ConnId>,
    pub primary_conn: Option<ConnId>,
    /// The snapshot seq the join was accepted at.
    pub snapshot_seq: Seq,
    /// Last delivery time per direction (0: to the primary, 1: to the backup), for FIFO.
    pub last_at: [Millis; 2],
    pub open: bool,
    /// The primary accepted the join (the backup's runtime knows the link).
    pub joined: bool,
}

impl Link {
    /// The side that is not `node`: (node, incarnation, direction index).
    pub fn other(&self, from: usize) -> ((usize, u64), usize) {
        if self.backup.0 == from {
            (self.primary, 0)
        } else {
            (self.backup, 1)
        }
    }

    pub fn conn_of(&self, node: usize) -> Option<ConnId> {
        if self.primary.0 == node {
            self.primary_conn
        } else {
            self.backup_conn
        }
    }
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
