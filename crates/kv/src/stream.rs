//! Stream values (Redis 7.0's `t_stream.c`): entries ordered by ID, the
//! last ID handed out, and consumer groups with their pending entries.
//!
//! Everything is kept in ordered maps (groups and consumers by name, as
//! Redis's radix trees order them), so replies and digests never depend on
//! hash order. Redis stores entries in listpack nodes of at most
//! `stream-node-max-entries` (100) entries or `stream-node-max-bytes`
//! (4096) bytes, and approximate trimming (`~`) removes whole nodes only:
//! the node boundaries are simulated here ([`Node`]) so that `MAXLEN ~`
//! and `MINID ~` remove what Redis removes. The byte size of a node is an
//! estimate of its listpack's, so very large entries may cut nodes where
//! Redis would not.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::Hasher;

use crate::bytes::Bytes;

/// An entry ID, `ms-seq`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId { ms: u64::MAX, seq: u64::MAX };

    pub fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// The next ID (`streamIncrID`); `None` after the largest.
    pub fn incr(self) -> Option<StreamId> {
        if self.seq == u64::MAX {
            if self.ms == u64::MAX {
                return None;
            }
            return Some(StreamId::new(self.ms + 1, 0));
        }
        Some(StreamId::new(self.ms, self.seq + 1))
    }

    /// The previous ID (`streamDecrID`); `None` before the smallest.
    pub fn decr(self) -> Option<StreamId> {
        if self.seq == 0 {
            if self.ms == 0 {
                return None;
            }
            return Some(StreamId::new(self.ms - 1, u64::MAX));
        }
        Some(StreamId::new(self.ms, self.seq - 1))
    }

    pub fn is_zero(self) -> bool {
        self == StreamId::MIN
    }

    pub fn text(self) -> String {
        format!("{}-{}", self.ms, self.seq)
    }
}

/// A pending (delivered, not acknowledged) entry of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    pub consumer: Bytes,
    pub delivery_time: u64,
    pub delivery_count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consumer {
    pub seen_time: u64,
    /// The IDs of the group's pending entries this consumer holds.
    pub pel: BTreeSet<StreamId>,
}

/// Redis's `SCG_INVALID_ENTRIES_READ`.
pub const ENTRIES_READ_INVALID: i64 = -1;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    pub last_id: StreamId,
    pub entries_read: i64,
    pub pel: BTreeMap<StreamId, Nack>,
    pub consumers: BTreeMap<Bytes, Consumer>,
}

impl Group {
    pub fn new(last_id: StreamId, entries_read: i64) -> Group {
        Group { last_id, entries_read, pel: BTreeMap::new(), consumers: BTreeMap::new() }
    }

    /// `streamLookupConsumer` (refreshing its seen time) or
    /// `streamCreateConsumer`.
    pub fn consumer(&mut self, name: &[u8], now: u64) -> &mut Consumer {
        let c = self.consumers.entry(name.into()).or_default();
        c.seen_time = now;
        c
    }

    /// Drops the pending entry `id`, from its consumer too.
    pub fn ack(&mut self, id: StreamId) -> bool {
        match self.pel.remove(&id) {
            Some(nack) => {
                if let Some(c) = self.consumers.get_mut(&nack.consumer) {
                    c.pel.remove(&id);
                }
                true
            }
            None => false,
        }
    }

    /// Gives the pending entry `id` to `consumer` (which exists).
    pub fn assign(&mut self, id: StreamId, consumer: &[u8]) {
        let nack = self.pel.get_mut(&id).expect("pending");
        if *nack.consumer != *consumer {
            if let Some(old) = self.consumers.get_mut(&nack.consumer) {
                old.pel.remove(&id);
            }
            nack.consumer = consumer.into();
        }
        self.consumers.get_mut(consumer).expect("consumer").pel.insert(id);
    }
}

/// A simulated listpack node: its master ID is its key in `nodes`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Node {
    /// Entries, deleted ones included.
    pub count: u32,
    /// Entries not deleted.
    pub live: u32,
    /// The last entry's ID, deleted or not.
    pub last: StreamId,
    /// Estimated listpack bytes.
    pub bytes: u64,
}

const NODE_MAX_ENTRIES: u32 = 100;
const NODE_MAX_BYTES: u64 = 4096;
/// The work limit of approximate trimming without LIMIT (100 × node entries).
pub const APPROX_LIMIT: i64 = 100 * NODE_MAX_ENTRIES as i64;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamVal {
    /// Fields and values, alternating, per entry.
    pub entries: BTreeMap<StreamId, Box<[Bytes]>>,
    pub nodes: BTreeMap<StreamId, Node>,
    pub last_id: StreamId,
    pub first_id: StreamId,
    pub max_deleted: StreamId,
    pub entries_added: u64,
    pub groups: BTreeMap<Bytes, Group>,
}

/// Estimated listpack bytes of one string element.
fn elem_bytes(len: usize) -> u64 {
    let len = len as u64;
    len + if len < 64 {
        2
    } else if len < 4096 {
        4
    } else {
        8
    }
}

/// How a stream is trimmed (XADD's and XTRIM's MAXLEN/MINID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trim {
    MaxLen(u64),
    MinId(StreamId),
}

impl StreamVal {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends an entry whose ID is greater than the last one.
    pub fn append(&mut self, id: StreamId, fields: Box<[Bytes]>) {
        debug_assert!(id > self.last_id || (self.entries_added == 0 && self.entries.is_empty()));
        let bytes: u64 = fields.iter().map(|f| elem_bytes(f.len())).sum::<u64>() + 8;
        let tot: u64 = fields.iter().map(|f| f.len() as u64).sum();
        let tail =
            self.nodes.iter_mut().next_back().filter(|(_, n)| n.bytes + tot < NODE_MAX_BYTES && n.count < NODE_MAX_ENTRIES);
        match tail {
            Some((_, n)) => {
                n.count += 1;
                n.live += 1;
                n.last = id;
                n.bytes += bytes;
            }
            None => {
                // The master entry repeats the field names.
                let master: u64 = fields.iter().step_by(2).map(|f| elem_bytes(f.len())).sum::<u64>() + 16;
                self.nodes.insert(id, Node { count: 1, live: 1, last: id, bytes: master + bytes });
            }
        }
        self.entries.insert(id, fields);
        self.entries_added += 1;
        self.last_id = id;
        if self.entries.len() == 1 {
            self.first_id = id;
        }
    }

    fn node_of(&mut self, id: StreamId) -> Option<(StreamId, &mut Node)> {
        self.nodes.range_mut(..=id).next_back().map(|(k, n)| (*k, n))
    }

    /// XDEL of one entry; true if it existed.
    pub fn delete(&mut self, id: StreamId) -> bool {
        if self.entries.remove(&id).is_none() {
            return false;
        }
        if let Some((key, node)) = self.node_of(id) {
            node.live -= 1;
            if node.live == 0 {
                self.nodes.remove(&key);
            }
        }
        if id > self.max_deleted {
            self.max_deleted = id;
        }
        true
    }

    /// XDEL's update of the first ID after deleting `first_deleted` (the
    /// first entry was among those deleted).
    pub fn after_delete(&mut self, first_deleted: bool) {
        if self.entries.is_empty() {
            self.first_id = StreamId::MIN;
        } else if first_deleted {
            self.first_id = *self.entries.keys().next().expect("not empty");
        }
    }

    /// `streamTrim`: returns the entries removed.
    pub fn trim(&mut self, how: Trim, approx: bool, limit: i64) -> i64 {
        let mut deleted: i64 = 0;
        let keys: Vec<StreamId> = self.nodes.keys().copied().collect();
        for key in keys {
            let node = self.nodes[&key];
            if let Trim::MaxLen(max) = how {
                if self.len() as u64 <= max {
                    break;
                }
            }
            let live = i64::from(node.live);
            if limit != 0 && deleted + live > limit {
                break;
            }
            let remove_node = match how {
                Trim::MaxLen(max) => self.len() as u64 - node.live as u64 >= max,
                Trim::MinId(min) => node.last < min,
            };
            let end = self.nodes.range(key..).nth(1).map(|(k, _)| *k);
            let in_node: Vec<StreamId> = match end {
                Some(end) => self.entries.range(key..end).map(|(k, _)| *k).collect(),
                None => self.entries.range(key..).map(|(k, _)| *k).collect(),
            };
            if remove_node {
                for id in in_node {
                    self.entries.remove(&id);
                }
                self.nodes.remove(&key);
                deleted += live;
                continue;
            }
            if approx {
                break;
            }
            let mut gone = 0;
            for id in in_node {
                let stop = match how {
                    Trim::MaxLen(max) => self.len() as u64 <= max,
                    Trim::MinId(min) => id >= min,
                };
                if stop {
                    break;
                }
                self.entries.remove(&id);
                gone += 1;
            }
            self.nodes.get_mut(&key).expect("node").live -= gone;
            deleted += i64::from(gone);
            break;
        }
        self.first_id = self.entries.keys().next().copied().unwrap_or(StreamId::MIN);
        deleted
    }

    /// `streamLastValidID`: the last entry's ID, or the last ID handed out.
    pub fn last_valid_id(&self) -> StreamId {
        self.entries.keys().next_back().copied().unwrap_or(self.last_id)
    }

    /// `streamRangeHasTombstones(s, start, NULL)`.
    pub fn has_tombstones_from(&self, start: StreamId) -> bool {
        if self.entries.is_empty() || self.max_deleted.is_zero() {
            return false;
        }
        start <= self.max_deleted
    }

    /// `streamEstimateDistanceFromFirstEverEntry`.
    pub fn estimate_distance(&self, id: StreamId) -> i64 {
        let added = self.entries_added as i64;
        if added == 0 {
            return 0;
        }
        if self.entries.is_empty() && id <= self.last_id {
            return added;
        }
        if id == self.last_id {
            return added;
        } else if id > self.last_id {
            return ENTRIES_READ_INVALID;
        }
        if self.max_deleted.is_zero() || self.max_deleted < self.first_id {
            let len = self.entries.len() as i64;
            if id < self.first_id {
                return added - len;
            } else if id == self.first_id {
                return added - len + 1;
            }
        }
        ENTRIES_READ_INVALID
    }

    /// A group's read of entry `id` moves its last ID (and the entries-read
    /// counter) forward, as `streamReplyWithRange` does.
    pub fn group_read(&mut self, group: &[u8], id: StreamId) {
        let tomb = self.has_tombstones_from(id);
        let estimate = if self.entries_added != 0 { Some(self.estimate_distance(id)) } else { None };
        let g = self.groups.get_mut(group).expect("group");
        if id > g.last_id {
            if g.entries_read != ENTRIES_READ_INVALID && !tomb {
                g.entries_read += 1;
            } else if let Some(e) = estimate {
                g.entries_read = e;
            }
            g.last_id = id;
        }
    }

    /// This stream's share of an entry digest.
    pub fn digest(&self, h: &mut impl Hasher) {
        let id = |h: &mut dyn Hasher, id: &StreamId| {
            h.write_u64(id.ms);
            h.write_u64(id.seq);
        };
        let part = |h: &mut dyn Hasher, b: &[u8]| {
            h.write_u64(b.len() as u64);
            h.write(b);
        };
        for (k, fields) in &self.entries {
            id(h, k);
            h.write_u64(fields.len() as u64);
            fields.iter().for_each(|f| part(h, f));
        }
        for (k, n) in &self.nodes {
            id(h, k);
            h.write_u32(n.count);
            h.write_u32(n.live);
            id(h, &n.last);
            h.write_u64(n.bytes);
        }
        for i in [&self.last_id, &self.first_id, &self.max_deleted] {
            id(h, i);
        }
        h.write_u64(self.entries_added);
        h.write_u64(self.groups.len() as u64);
        for (name, g) in &self.groups {
            part(h, name);
            id(h, &g.last_id);
            h.write_i64(g.entries_read);
            h.write_u64(g.pel.len() as u64);
            for (k, nack) in &g.pel {
                id(h, k);
                part(h, &nack.consumer);
                h.write_u64(nack.delivery_time);
                h.write_u64(nack.delivery_count);
            }
            h.write_u64(g.consumers.len() as u64);
            for (name, c) in &g.consumers {
                part(h, name);
                h.write_u64(c.seen_time);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(n: u64) -> StreamVal {
        let mut s = StreamVal::default();
        for i in 1..=n {
            s.append(StreamId::new(i, 0), vec![Bytes::from(&b"f"[..]), Bytes::from(&b"v"[..])].into());
        }
        s
    }

    #[test]
    fn approximate_trims_whole_nodes() {
        let mut s = stream(250);
        assert_eq!(s.nodes.len(), 3);
        assert_eq!(s.trim(Trim::MaxLen(180), true, APPROX_LIMIT), 0);
        assert_eq!(s.trim(Trim::MaxLen(120), true, APPROX_LIMIT), 100);
        assert_eq!(s.trim(Trim::MaxLen(120), false, 0), 30);
        assert_eq!(s.len(), 120);
        assert_eq!(s.trim(Trim::MinId(StreamId::new(240, 0)), true, APPROX_LIMIT), 70);
        assert_eq!(s.first_id, StreamId::new(201, 0));
    }

    #[test]
    fn ids_step() {
        assert_eq!(StreamId::new(1, u64::MAX).incr(), Some(StreamId::new(2, 0)));
        assert_eq!(StreamId::MAX.incr(), None);
        assert_eq!(StreamId::new(2, 0).decr(), Some(StreamId::new(1, u64::MAX)));
        assert_eq!(StreamId::MIN.decr(), None);
    }
}
