//! Stream values (Redis 7.0's `t_stream.c`): entries ordered by ID, the
//! last ID handed out, and consumer groups with their pending entries.
//!
//! Everything is kept in ordered maps (groups and consumers by name, as
//! Redis's radix trees order them), so replies and digests never depend on
//! hash order. Redis stores entries in listpack nodes of at most
//! `stream-node-max-entries` (100) entries or `stream-node-max-bytes`
//! (4096) bytes, and approximate trimming (`~`) removes whole nodes only:
//! the node boundaries are simulated here ([`Node`]) so that `MAXLEN ~`
//! and `MINID ~` remove what Redis removes, and XINFO STREAM counts the
//! radix tree Redis would have. A node's byte size is its listpack's,
//! element by element as `listpack.c` encodes them (deletions only flag
//! entries there, so only appends change it).

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// Entries, deleted ones included.
    pub count: u32,
    /// Entries not deleted.
    pub live: u32,
    /// The last entry's ID, deleted or not.
    pub last: StreamId,
    /// The listpack's bytes (`lpBytes`), as Redis 7.0 encodes it.
    pub bytes: u64,
    /// The master entry's field names (its first entry's).
    pub master: Box<[Bytes]>,
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

/// Sizes of listpack elements (Redis 7.0's `listpack.c`): an encoding,
/// then its length again as a backwards varint.
mod lp {
    /// Header (total bytes, element count) and end byte of a listpack.
    pub const EMPTY: u64 = 7;

    fn with_backlen(enc: u64) -> u64 {
        enc + match enc {
            0..=127 => 1,
            128..=16382 => 2,
            16383..=2097150 => 3,
            2097151..=268435454 => 4,
            _ => 5,
        }
    }

    /// An integer element (`lpEncodeIntegerGetType`).
    pub fn int(v: i64) -> u64 {
        with_backlen(match v {
            0..=127 => 1,
            -4096..=4095 => 2,
            -32768..=32767 => 3,
            -8388608..=8388607 => 4,
            -2147483648..=2147483647 => 5,
            _ => 9,
        })
    }

    /// A string element; one that reads as an integer (`lpStringToInt64`:
    /// no sign but `-`, no leading zero, under 21 bytes) is stored as one.
    pub fn string(s: &[u8]) -> u64 {
        let digits = s.strip_prefix(b"-").unwrap_or(s);
        let canonical = s.len() < 21
            && (s == b"0"
                || (digits.first().is_some_and(|d| (b'1'..=b'9').contains(d)) && digits.iter().all(u8::is_ascii_digit)));
        if let Some(v) = canonical.then(|| std::str::from_utf8(s).ok()?.parse::<i64>().ok()).flatten() {
            return int(v);
        }
        let len = s.len() as u64;
        with_backlen(match len {
            0..=63 => 1 + len,
            64..=4095 => 2 + len,
            _ => 5 + len,
        })
    }
}

/// The master entry of a new node (`streamAppendItem`): valid and deleted
/// counts, the number of fields, their names, a zero terminator.
fn master_bytes(names: &[Bytes]) -> u64 {
    lp::int(1) + lp::int(0) + lp::int(names.len() as i64) + names.iter().map(|n| lp::string(n)).sum::<u64>() + lp::int(0)
}

/// One entry in a node whose master ID is `master`: flags, the ID's
/// deltas (unsigned differences, stored as signed), the fields unless
/// they are the master's, the values, the count of elements.
fn entry_bytes(id: StreamId, master: StreamId, fields: &[Bytes], same_fields: bool) -> u64 {
    let n = fields.len() as i64 / 2;
    let mut b = lp::int(if same_fields { 2 } else { 0 })
        + lp::int(id.ms.wrapping_sub(master.ms) as i64)
        + lp::int(id.seq.wrapping_sub(master.seq) as i64);
    let mut elements = 3 + n;
    if same_fields {
        b += fields.iter().skip(1).step_by(2).map(|v| lp::string(v)).sum::<u64>();
    } else {
        b += lp::int(n) + fields.iter().map(|f| lp::string(f)).sum::<u64>();
        elements += n + 1;
    }
    b + lp::int(elements)
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
        // Redis starts a node when the tail's bytes plus the new entry's
        // strings reach `stream-node-max-bytes`, or it holds
        // `stream-node-max-entries`.
        let tot: u64 = fields.iter().map(|f| f.len() as u64).sum();
        let tail =
            self.nodes.iter_mut().next_back().filter(|(_, n)| n.bytes + tot < NODE_MAX_BYTES && n.count < NODE_MAX_ENTRIES);
        match tail {
            Some((master, n)) => {
                let same =
                    n.master.len() * 2 == fields.len() && n.master.iter().zip(fields.iter().step_by(2)).all(|(m, f)| m == f);
                n.count += 1;
                n.live += 1;
                n.last = id;
                n.bytes += entry_bytes(id, *master, &fields, same);
            }
            None => {
                let names: Box<[Bytes]> = fields.iter().step_by(2).cloned().collect();
                let bytes = lp::EMPTY + master_bytes(&names) + entry_bytes(id, id, &fields, true);
                self.nodes.insert(id, Node { count: 1, live: 1, last: id, bytes, master: names });
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
            let node = &self.nodes[&key];
            let (node_live, node_last) = (node.live, node.last);
            if let Trim::MaxLen(max) = how {
                if self.len() as u64 <= max {
                    break;
                }
            }
            let live = i64::from(node_live);
            if limit != 0 && deleted + live > limit {
                break;
            }
            let remove_node = match how {
                Trim::MaxLen(max) => self.len() as u64 - u64::from(node_live) >= max,
                Trim::MinId(min) => node_last < min,
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
        if self.entries.is_empty() || self.max_deleted.is_zero() || self.first_id > self.max_deleted {
            return false;
        }
        start <= self.max_deleted
    }

    /// A group's lag (`streamReplyWithCGLag`): the entries added after its
    /// last delivered one, `None` where Redis cannot tell (nil).
    pub fn group_lag(&self, g: &Group) -> Option<i64> {
        let added = self.entries_added as i64;
        if added == 0 {
            return Some(0);
        }
        if g.entries_read != ENTRIES_READ_INVALID && !self.has_tombstones_from(g.last_id) {
            return Some(added - g.entries_read);
        }
        let read = self.estimate_distance(g.last_id);
        (read != ENTRIES_READ_INVALID).then(|| added - read)
    }

    /// `raxSize(s->rax)`: Redis's listpack nodes.
    pub fn rax_keys(&self) -> usize {
        self.nodes.len()
    }

    /// `s->rax->numnodes`: the nodes of Redis's radix tree (`rax.c`) whose
    /// keys are the listpack nodes' master IDs, 16 bytes big-endian. Rax
    /// keeps its tree compressed after insertions and deletions alike (a
    /// chain of single-child nodes is one node), so the count follows from
    /// the keys alone: a node per chain, per branching point and per key.
    pub fn rax_nodes(&self) -> u64 {
        let keys: Vec<[u8; 16]> = self
            .nodes
            .keys()
            .map(|id| {
                let mut k = [0u8; 16];
                k[..8].copy_from_slice(&id.ms.to_be_bytes());
                k[8..].copy_from_slice(&id.seq.to_be_bytes());
                k
            })
            .collect();
        if keys.is_empty() {
            // The empty head.
            return 1;
        }
        rax_subtree_nodes(&keys, 0)
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
            h.write_u64(n.master.len() as u64);
            n.master.iter().for_each(|f| part(h, f));
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

/// The rax nodes below the point `depth` bytes into `keys` (sorted,
/// distinct, sharing their first `depth` bytes): the key's own node at the
/// end; else one compressed node for a longer common part, or one
/// branching node whose children each take the rest of one byte's keys.
fn rax_subtree_nodes(keys: &[[u8; 16]], depth: usize) -> u64 {
    if depth == 16 {
        debug_assert_eq!(keys.len(), 1, "distinct keys");
        return 1;
    }
    let (first, last) = (keys[0], keys[keys.len() - 1]);
    let common = (depth..16).take_while(|&i| first[i] == last[i]).count();
    if common > 0 {
        return 1 + rax_subtree_nodes(keys, depth + common);
    }
    let mut n = 1;
    let mut rest = keys;
    while let Some(k) = rest.first() {
        let byte = k[depth];
        let split = rest.partition_point(|k| k[depth] == byte);
        n += rax_subtree_nodes(&rest[..split], depth + 1);
        rest = &rest[split..];
    }
    n
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
    fn rax_nodes_count_chains_branches_and_keys() {
        let mut s = StreamVal::default();
        assert_eq!((s.rax_keys(), s.rax_nodes()), (0, 1), "the empty head");
        let one = |ms, seq| vec![Bytes::from(&b"f"[..]), Bytes::from(&format!("{ms}-{seq}").into_bytes()[..])].into();
        s.append(StreamId::new(1, 1), one(1, 1));
        assert_eq!((s.rax_keys(), s.rax_nodes()), (1, 2), "one compressed chain and the key");
        for ms in 2..=101 {
            s.append(StreamId::new(ms, 0), one(ms, 0));
        }
        // 1-1 and 101-0 part at byte 7: the common chain, the branch, two
        // chains and two keys (what redis-server 7.0.15 reports).
        assert_eq!((s.rax_keys(), s.rax_nodes()), (2, 6));
        for ms in 102..=201 {
            s.append(StreamId::new(ms, 0), one(ms, 0));
        }
        // 101-0 and 201-0 part at byte 7 too: a third child of the branch.
        assert_eq!((s.rax_keys(), s.rax_nodes()), (3, 8));
        assert_eq!(s.trim(Trim::MaxLen(101), true, APPROX_LIMIT), 100);
        assert_eq!((s.rax_keys(), s.rax_nodes()), (2, 6), "as Redis after XTRIM s MAXLEN ~ 101");
        assert_eq!(s.trim(Trim::MaxLen(1), true, APPROX_LIMIT), 100);
        assert_eq!((s.rax_keys(), s.rax_nodes()), (1, 2), "compressed again after removals");
    }

    #[test]
    fn nodes_fill_up_by_listpack_bytes_as_redis_encodes_them() {
        assert_eq!((lp::string(b"0"), lp::string(b"127"), lp::string(b"128"), lp::string(b"-4096")), (2, 2, 3, 3));
        assert_eq!((lp::string(b"40000"), lp::string(b"-3000000000"), lp::string(b"9223372036854775807")), (5, 10, 10));
        // Not integers as listpack reads them: stored as strings.
        assert_eq!((lp::string(b"007"), lp::string(b"-0"), lp::string(b"+1"), lp::string(b"")), (5, 4, 4, 2));
        assert_eq!(lp::string(b"9223372036854775808"), 21);
        assert_eq!((lp::string(&[b'v'; 63]), lp::string(&[b'v'; 64]), lp::string(&[b'v'; 126])), (65, 67, 130));
        // 200 entries `name` + 50 bytes: three listpacks in redis-server 7.0.15.
        let mut s = StreamVal::default();
        for ms in 1..=200 {
            s.append(StreamId::new(ms, 0), vec![Bytes::from(&b"name"[..]), Bytes::from(&[b'x'; 50][..])].into());
        }
        assert_eq!((s.rax_keys(), s.rax_nodes()), (3, 8));
        assert!(s.nodes.values().all(|n| *n.master == [Bytes::from(&b"name"[..])]));
    }

    #[test]
    fn ids_step() {
        assert_eq!(StreamId::new(1, u64::MAX).incr(), Some(StreamId::new(2, 0)));
        assert_eq!(StreamId::MAX.incr(), None);
        assert_eq!(StreamId::new(2, 0).decr(), Some(StreamId::new(1, u64::MAX)));
        assert_eq!(StreamId::MIN.decr(), None);
    }
}
