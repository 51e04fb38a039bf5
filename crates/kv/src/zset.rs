//! A sorted set's value: members with scores, ordered by (score, member).
//!
//! Two views of the same elements:
//!
//! - a hash map member → score, for ZSCORE, ZADD's "already there?" and
//!   the algebra commands' lookups, O(1);
//! - an order-statistic sequence of (score, member) pairs: sorted blocks
//!   of at most [`BLOCK_MAX`] pairs, with a Fenwick tree over the block
//!   lengths. Finding a pair or a score bound is a binary search over the
//!   blocks' last pairs and then within one block, O(log n); a rank is a
//!   Fenwick prefix sum, O(log n); the pair at a rank is a Fenwick
//!   descent, O(log n). Inserting or removing moves at most one block's
//!   pairs (O(BLOCK_MAX), a short memmove); a split or merge of blocks
//!   rebuilds the Fenwick tree, O(n / BLOCK_MAX), once per many changes.
//!   Removing a range of k ranks is O(k + n / BLOCK_MAX).
//!
//! A member's bytes are kept twice, once per view (safe Rust, no shared
//! pointers); about 100 bytes per short member in all, near Redis's
//! skiplist and dict.
//!
//! Replies only ever walk the ordered view, which is the same on every
//! replica for the same elements; the hash map's order never shows.
//!
//! Scores are never NaN (every command refuses to store one) and never
//! `-0`: Redis keeps the scores of a small sorted set as `d2string` text,
//! an integer when the score is one, which turns `-0` into `0`; we store
//! every score as that encoding does. Pairs compare by score as C compares
//! doubles, then by member as `memcmp` (shorter first on a tie), the order
//! of Redis's listpack and skiplist alike.

use std::cmp::Ordering;
use std::collections::HashMap;

use foldhash::fast::RandomState;

use crate::bytes::Bytes;

/// Most pairs in one block: a block insert moves at most this many
/// 24-byte pairs, a split happens once per `BLOCK_MAX / 2` inserts.
const BLOCK_MAX: usize = 256;
/// A block shorter than this is merged into a neighbour when they fit.
const BLOCK_MIN: usize = BLOCK_MAX / 4;

/// One element of the ordered view.
pub type Pair = (f64, Bytes);

/// Orders a pair against a (score, member) key.
fn cmp_key(pair: &Pair, score: f64, member: &[u8]) -> Ordering {
    debug_assert!(!pair.0.is_nan() && !score.is_nan(), "scores are never NaN");
    if pair.0 < score {
        Ordering::Less
    } else if pair.0 > score {
        Ordering::Greater
    } else {
        pair.1[..].cmp(member)
    }
}

/// How a stored score is kept: `-0` as `0` (see the module doc).
fn stored(score: f64) -> f64 {
    if score == 0.0 {
        0.0
    } else {
        score
    }
}

#[derive(Clone, Default)]
pub struct ZsetVal {
    scores: HashMap<Bytes, f64, RandomState>,
    blocks: Vec<Vec<Pair>>,
    /// Fenwick tree over `blocks[i].len()` (1-based in its arithmetic).
    fenwick: Vec<usize>,
}

impl ZsetVal {
    pub fn new() -> ZsetVal {
        ZsetVal::default()
    }

    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// Sets `member`'s score (adding it if new); returns the previous one.
    pub fn insert(&mut self, member: &[u8], score: f64) -> Option<f64> {
        debug_assert!(!score.is_nan());
        let score = stored(score);
        let old = self.scores.get_mut(member).map(|s| std::mem::replace(s, score));
        match old {
            Some(old) => {
                if old.to_bits() != score.to_bits() {
                    self.unlink(old, member);
                    self.link(score, member.into());
                }
            }
            None => {
                self.scores.insert(member.into(), score);
                self.link(score, member.into());
            }
        }
        self.check();
        old
    }

    /// Removes `member`; returns its score.
    pub fn remove(&mut self, member: &[u8]) -> Option<f64> {
        let score = self.scores.remove(member)?;
        self.unlink(score, member);
        self.check();
        Some(score)
    }

    /// The 0-based rank of `member`, lowest score first.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let score = self.score(member)?;
        let b = self.block_for(score, member);
        let pos = self.blocks[b].binary_search_by(|p| cmp_key(p, score, member)).ok()?;
        Some(self.prefix(b) + pos)
    }

    /// The pair at `rank`.
    pub fn get(&self, rank: usize) -> Option<&Pair> {
        if rank >= self.len() {
            return None;
        }
        let (b, pos) = self.locate(rank);
        self.blocks[b].get(pos)
    }

    /// The pairs of ranks `start..end`, in order (reversible).
    pub fn range(&self, start: usize, end: usize) -> impl DoubleEndedIterator<Item = &Pair> + '_ {
        let end = end.min(self.len());
        let start = start.min(end);
        let (first, first_pos) = self.locate(start);
        let (last, last_end) = if end == 0 { (0, 0) } else { self.locate(end - 1) };
        let blocks = if start == end { &self.blocks[..0] } else { &self.blocks[first..=last] };
        let n = blocks.len();
        blocks.iter().enumerate().flat_map(move |(i, b)| {
            let from = if i == 0 { first_pos } else { 0 };
            let to = if i + 1 == n { last_end + 1 } else { b.len() };
            b[from..to].iter()
        })
    }

    /// Every pair, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Pair> + '_ {
        self.blocks.iter().flatten()
    }

    /// The rank of the first pair for which `below` is false, when `below`
    /// holds for a prefix of the sequence and not after it (a score bound,
    /// or a member bound among equal scores).
    pub fn partition_point(&self, below: impl Fn(&Pair) -> bool) -> usize {
        let b = self.blocks.partition_point(|blk| blk.last().is_some_and(&below));
        if b == self.blocks.len() {
            return self.len();
        }
        self.prefix(b) + self.blocks[b].partition_point(below)
    }

    /// Removes the pairs of ranks `start..end`; returns how many.
    pub fn remove_range(&mut self, start: usize, end: usize) -> usize {
        let end = end.min(self.len());
        if start >= end {
            return 0;
        }
        let members: Vec<Bytes> = self.range(start, end).map(|p| p.1.clone()).collect();
        for m in &members {
            self.scores.remove(m);
        }
        let (first, mut pos) = self.locate(start);
        let (mut b, mut left) = (first, end - start);
        while left > 0 {
            let take = left.min(self.blocks[b].len() - pos);
            self.blocks[b].drain(pos..pos + take);
            left -= take;
            if self.blocks[b].is_empty() {
                self.blocks.remove(b);
            } else {
                b += 1;
            }
            pos = 0;
        }
        // Only the blocks on either side of the cut may have become short.
        if first > 0 {
            self.merge_if_short(first - 1);
        }
        self.merge_if_short(first);
        self.rebuild();
        self.check();
        members.len()
    }

    /// Removes and returns the lowest (or, `max`, the highest) pair.
    pub fn pop(&mut self, max: bool) -> Option<Pair> {
        let rank = if max { self.len().checked_sub(1)? } else { 0 };
        let pair = self.get(rank)?.clone();
        self.remove(&pair.1);
        Some(pair)
    }

    /// The block holding (or to hold) the key: the first whose last pair is
    /// not below it, else the last block.
    fn block_for(&self, score: f64, member: &[u8]) -> usize {
        let b = self.blocks.partition_point(|blk| blk.last().is_some_and(|p| cmp_key(p, score, member) == Ordering::Less));
        b.min(self.blocks.len().saturating_sub(1))
    }

    fn link(&mut self, score: f64, member: Bytes) {
        if self.blocks.is_empty() {
            self.blocks.push(vec![(score, member)]);
            return self.rebuild();
        }
        let b = self.block_for(score, &member);
        let block = &mut self.blocks[b];
        let pos = block.partition_point(|p| cmp_key(p, score, &member) == Ordering::Less);
        block.insert(pos, (score, member));
        if block.len() > BLOCK_MAX {
            let tail = block.split_off(BLOCK_MAX / 2);
            self.blocks.insert(b + 1, tail);
            self.rebuild();
        } else {
            self.fenwick_add(b, 1, true);
        }
    }

    fn unlink(&mut self, score: f64, member: &[u8]) {
        let b = self.block_for(score, member);
        let pos = self.blocks[b].binary_search_by(|p| cmp_key(p, score, member));
        let pos = pos.expect("a member of the map is in the ordered view");
        self.blocks[b].remove(pos);
        let len = self.blocks[b].len();
        if len == 0 {
            self.blocks.remove(b);
            return self.rebuild();
        }
        if len < BLOCK_MIN {
            // Merge with the smaller neighbour when both fit in one block.
            let neighbour = [b.checked_sub(1), Some(b + 1).filter(|&n| n < self.blocks.len())]
                .into_iter()
                .flatten()
                .min_by_key(|&n| self.blocks[n].len());
            if let Some(n) = neighbour.filter(|&n| self.blocks[n].len() + len <= BLOCK_MAX / 2) {
                let (lo, hi) = (n.min(b), n.max(b));
                let moved = self.blocks.remove(hi);
                self.blocks[lo].extend(moved);
                return self.rebuild();
            }
        }
        self.fenwick_add(b, 1, false);
    }

    /// Merges blocks `i` and `i + 1` when one is short and both fit in one
    /// (the caller rebuilds the Fenwick tree).
    fn merge_if_short(&mut self, i: usize) {
        let Some(next) = self.blocks.get(i + 1) else { return };
        let (a, b) = (self.blocks[i].len(), next.len());
        if a.min(b) < BLOCK_MIN && a + b <= BLOCK_MAX {
            let moved = self.blocks.remove(i + 1);
            self.blocks[i].extend(moved);
        }
    }

    fn rebuild(&mut self) {
        let n = self.blocks.len();
        self.fenwick.clear();
        self.fenwick.extend(self.blocks.iter().map(Vec::len));
        for i in 1..=n {
            let parent = i + (i & i.wrapping_neg());
            if parent <= n {
                self.fenwick[parent - 1] += self.fenwick[i - 1];
            }
        }
    }

    fn fenwick_add(&mut self, block: usize, delta: usize, add: bool) {
        let mut i = block + 1;
        while i <= self.fenwick.len() {
            if add {
                self.fenwick[i - 1] += delta;
            } else {
                self.fenwick[i - 1] -= delta;
            }
            i += i & i.wrapping_neg();
        }
    }

    /// Pairs in `blocks[..block]`.
    fn prefix(&self, block: usize) -> usize {
        let (mut i, mut sum) = (block, 0);
        while i > 0 {
            sum += self.fenwick[i - 1];
            i -= i & i.wrapping_neg();
        }
        sum
    }

    /// The block and position of `rank`; `(blocks, 0)`-like past the end.
    fn locate(&self, rank: usize) -> (usize, usize) {
        let n = self.fenwick.len();
        let (mut pos, mut left) = (0usize, rank);
        let mut step = n.checked_next_power_of_two().unwrap_or(0);
        while step > 0 {
            let next = pos + step;
            if next <= n && self.fenwick[next - 1] <= left {
                pos = next;
                left -= self.fenwick[next - 1];
            }
            step /= 2;
        }
        (pos, left)
    }

    /// The invariants, in debug builds: the views agree, blocks are
    /// non-empty and bounded, the sequence is strictly increasing.
    fn check(&self) {
        #[cfg(debug_assertions)]
        if self.len() <= 4 * BLOCK_MAX {
            let total: usize = self.blocks.iter().map(Vec::len).sum();
            debug_assert_eq!(total, self.scores.len());
            debug_assert_eq!(self.prefix(self.blocks.len()), total);
            debug_assert!(self.blocks.iter().all(|b| !b.is_empty() && b.len() <= BLOCK_MAX));
            let pairs: Vec<&Pair> = self.iter().collect();
            debug_assert!(pairs.windows(2).all(|w| cmp_key(w[0], w[1].0, &w[1].1) == Ordering::Less));
            debug_assert!(pairs.iter().all(|p| self.scores.get(&p.1).is_some_and(|s| s.to_bits() == p.0.to_bits())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(z: &ZsetVal) -> Vec<(f64, String)> {
        z.iter().map(|(s, m)| (*s, String::from_utf8(m.to_vec()).unwrap())).collect()
    }

    #[test]
    fn order_ranks_and_ranges_match_a_sorted_vector() {
        let mut z = ZsetVal::new();
        let mut model: Vec<(f64, String)> = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..6000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let member = format!("m{}", x % 1500);
            let score = (x >> 20) as f64 % 50.0 - 25.0;
            if step % 3 == 2 {
                let removed = z.remove(member.as_bytes()).is_some();
                let before = model.len();
                model.retain(|(_, m)| *m != member);
                assert_eq!(removed, model.len() < before);
            } else {
                z.insert(member.as_bytes(), score);
                model.retain(|(_, m)| *m != member);
                model.push((score, member));
            }
            if step % 500 == 0 || step > 5900 {
                model.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then_with(|| a.1.cmp(&b.1)));
                assert_eq!(members(&z), model);
                for (i, (s, m)) in model.iter().enumerate() {
                    assert_eq!(z.rank(m.as_bytes()), Some(i));
                    assert_eq!(z.get(i).map(|p| p.0), Some(*s));
                }
                let n = model.len();
                let mid: Vec<_> = z.range(n / 3, 2 * n / 3).map(|p| p.1.to_vec()).collect();
                let want: Vec<_> = model[n / 3..2 * n / 3].iter().map(|p| p.1.as_bytes().to_vec()).collect();
                assert_eq!(mid, want);
                assert_eq!(z.range(0, n).rev().count(), n);
                let lb = z.partition_point(|p| p.0 <= 0.0);
                assert_eq!(lb, model.iter().filter(|p| p.0 <= 0.0).count());
            }
        }
    }

    #[test]
    fn remove_range_and_pop() {
        let mut z = ZsetVal::new();
        for i in 0..1000 {
            z.insert(format!("{i:04}").as_bytes(), f64::from(i));
        }
        assert_eq!(z.remove_range(100, 900), 800);
        assert_eq!(z.len(), 200);
        assert_eq!(z.get(100).map(|p| p.0), Some(900.0));
        assert_eq!(z.score(b"0500"), None);
        assert_eq!(z.pop(true).map(|p| p.0), Some(999.0));
        assert_eq!(z.pop(false).map(|p| p.0), Some(0.0));
        assert_eq!(z.remove_range(0, 1000), 198);
        assert!(z.is_empty() && z.pop(false).is_none());
        assert_eq!(z.range(0, 5).count(), 0);
    }

    #[test]
    fn negative_zero_is_stored_as_zero() {
        let mut z = ZsetVal::new();
        z.insert(b"a", -0.0);
        assert!(z.score(b"a").unwrap().is_sign_positive());
        z.insert(b"b", 0.0);
        assert_eq!(members(&z), vec![(0.0, "a".into()), (0.0, "b".into())]);
        assert_eq!(z.insert(b"a", f64::NEG_INFINITY), Some(0.0));
        assert_eq!(z.rank(b"a"), Some(0));
    }
}
