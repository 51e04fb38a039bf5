//! Sorted set ranges (Redis 7.0's `zrangeGenericCommand` and friends):
//! ZRANGE (BYSCORE, BYLEX, REV, LIMIT, WITHSCORES), ZRANGESTORE, the older
//! ZREVRANGE, Z[REV]RANGEBYSCORE and Z[REV]RANGEBYLEX, ZCOUNT, ZLEXCOUNT
//! and the three ZREMRANGEBY commands.
//!
//! Score and lex ranges are found as Redis finds them in a small sorted
//! set (its listpack encoding): the first element in range, then a walk
//! while elements stay in range. For scores that is a binary search. For
//! lex ranges it is one too when every element has the same score (the
//! use lex ranges are meant for: the members are then in order); with
//! mixed scores the members are not ordered, and the first element is
//! found by a scan, as the listpack does, so the answer is Redis's for
//! such sets too (its skiplist encoding, used for large sets, may answer
//! otherwise: the documented result is unspecified).

use std::cmp::Ordering;

use super::lists::clamp_range;
use super::zsets::{zset, zset_mut};
use super::{get_typed, put_back, take_typed, Cmd, Exec, NOT_INT, SYNTAX};
use crate::entry::{AggVal, Bytes, Entry, Kind, ZsetVal};
use crate::num::{parse_i64, strtod};
use crate::resp::{write_array_len, write_bulk, write_double};
use crate::store::Store;
use crate::zset::Pair;

const NOT_FLOAT_RANGE: &[u8] = b"ERR min or max is not a float";
const NOT_LEX_RANGE: &[u8] = b"ERR min or max not valid string range item";

/// A score interval, each end open or closed (Redis's `zrangespec`).
#[derive(Debug, Clone, Copy)]
pub struct ScoreRange {
    min: f64,
    min_open: bool,
    max: f64,
    max_open: bool,
}

/// One end of a score range as `zslParseRange` reads it: `(` makes it open,
/// then the C string (up to a NUL) must be all number as `strtod` reads it
/// — blanks before it, `inf`, hex, overflow to infinity, even nothing (0).
fn score_bound(arg: &[u8]) -> Option<(f64, bool)> {
    let (text, open) = match arg.first() {
        Some(b'(') => (&arg[1..], true),
        _ => (arg, false),
    };
    let text = super::keyspace::c_str(text);
    let r = strtod(text);
    (r.used == text.len() && !r.value.is_nan()).then_some((r.value, open))
}

impl ScoreRange {
    pub fn parse(min: &[u8], max: &[u8]) -> Option<ScoreRange> {
        let (min, min_open) = score_bound(min)?;
        let (max, max_open) = score_bound(max)?;
        Some(ScoreRange { min, min_open, max, max_open })
    }

    fn gte_min(&self, s: f64) -> bool {
        if self.min_open {
            s > self.min
        } else {
            s >= self.min
        }
    }

    fn lte_max(&self, s: f64) -> bool {
        if self.max_open {
            s < self.max
        } else {
            s <= self.max
        }
    }

    fn is_empty(&self) -> bool {
        self.min > self.max || (self.min == self.max && (self.min_open || self.max_open))
    }
}

/// One end of a lex range.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Lex<'a> {
    /// `-`: below every string.
    Min,
    /// `+`: above every string.
    Max,
    Str(&'a [u8]),
}

/// Redis's `sdscmplex`.
fn cmp_lex(a: Lex, b: Lex) -> Ordering {
    match (a, b) {
        _ if a == b => Ordering::Equal,
        (Lex::Min, _) | (_, Lex::Max) => Ordering::Less,
        (Lex::Max, _) | (_, Lex::Min) => Ordering::Greater,
        (Lex::Str(a), Lex::Str(b)) => a.cmp(b),
    }
}

/// A lex interval (Redis's `zlexrangespec`).
#[derive(Debug, Clone, Copy)]
pub struct LexRange<'a> {
    min: Lex<'a>,
    min_open: bool,
    max: Lex<'a>,
    max_open: bool,
}

/// `zslParseLexRangeItem`: `-`, `+`, `(member`, `[member`; `-` and `+`
/// may be followed by a NUL and anything (C reads one character).
fn lex_bound(arg: &[u8]) -> Option<(Lex<'_>, bool)> {
    match arg.first()? {
        b'+' if arg.get(1).is_none_or(|&b| b == 0) => Some((Lex::Max, true)),
        b'-' if arg.get(1).is_none_or(|&b| b == 0) => Some((Lex::Min, true)),
        b'(' => Some((Lex::Str(&arg[1..]), true)),
        b'[' => Some((Lex::Str(&arg[1..]), false)),
        _ => None,
    }
}

impl<'a> LexRange<'a> {
    pub fn parse(min: &'a [u8], max: &'a [u8]) -> Option<LexRange<'a>> {
        let (min, min_open) = lex_bound(min)?;
        let (max, max_open) = lex_bound(max)?;
        Some(LexRange { min, min_open, max, max_open })
    }

    fn gte_min(&self, m: &[u8]) -> bool {
        let c = cmp_lex(Lex::Str(m), self.min);
        if self.min_open {
            c == Ordering::Greater
        } else {
            c != Ordering::Less
        }
    }

    fn lte_max(&self, m: &[u8]) -> bool {
        let c = cmp_lex(Lex::Str(m), self.max);
        if self.max_open {
            c == Ordering::Less
        } else {
            c != Ordering::Greater
        }
    }

    fn is_empty(&self) -> bool {
        let c = cmp_lex(self.min, self.max);
        c == Ordering::Greater || (c == Ordering::Equal && (self.min_open || self.max_open))
    }
}

/// Whether every element has the same score, so members are in order.
fn one_score(z: &ZsetVal) -> bool {
    match (z.get(0), z.len().checked_sub(1).and_then(|l| z.get(l))) {
        (Some(a), Some(b)) => a.0 == b.0,
        _ => true,
    }
}

/// The rank of the first element in range (`zzlFirstInRange`).
fn first_in_score(z: &ZsetVal, r: &ScoreRange) -> Option<usize> {
    if r.is_empty() {
        return None;
    }
    let i = z.partition_point(|p| !r.gte_min(p.0));
    z.get(i).filter(|p| r.lte_max(p.0)).map(|_| i)
}

/// The rank of the last element in range (`zzlLastInRange`).
fn last_in_score(z: &ZsetVal, r: &ScoreRange) -> Option<usize> {
    if r.is_empty() {
        return None;
    }
    let i = z.partition_point(|p| r.lte_max(p.0)).checked_sub(1)?;
    z.get(i).filter(|p| r.gte_min(p.0)).map(|_| i)
}

/// `zzlIsInLexRange`: the range is not empty, the last member is not
/// below it and the first is not above it.
fn lex_may_hold(z: &ZsetVal, r: &LexRange) -> bool {
    let (Some(first), Some(last)) = (z.get(0), z.len().checked_sub(1).and_then(|l| z.get(l))) else { return false };
    !r.is_empty() && r.gte_min(&last.1) && r.lte_max(&first.1)
}

/// The rank of the first element in range (`zzlFirstInLexRange`).
fn first_in_lex(z: &ZsetVal, r: &LexRange) -> Option<usize> {
    if !lex_may_hold(z, r) {
        return None;
    }
    let i = if one_score(z) {
        z.partition_point(|p| !r.gte_min(&p.1))
    } else {
        z.iter().position(|p| r.gte_min(&p.1)).unwrap_or(z.len())
    };
    z.get(i).filter(|p| r.lte_max(&p.1)).map(|_| i)
}

/// The rank of the last element in range (`zzlLastInLexRange`).
fn last_in_lex(z: &ZsetVal, r: &LexRange) -> Option<usize> {
    if !lex_may_hold(z, r) {
        return None;
    }
    let i = if one_score(z) {
        z.partition_point(|p| r.lte_max(&p.1)).checked_sub(1)?
    } else {
        z.len() - 1 - z.iter().rev().position(|p| r.lte_max(&p.1))?
    };
    z.get(i).filter(|p| r.gte_min(&p.1)).map(|_| i)
}

/// The rank after the walk from `from` while elements stay at or below
/// the range's max.
fn end_of_score(z: &ZsetVal, r: &ScoreRange, from: usize) -> usize {
    z.partition_point(|p| r.lte_max(p.0)).max(from)
}

fn end_of_lex(z: &ZsetVal, r: &LexRange, from: usize) -> usize {
    if one_score(z) {
        z.partition_point(|p| r.lte_max(&p.1)).max(from)
    } else {
        from + z.range(from, z.len()).take_while(|p| r.lte_max(&p.1)).count()
    }
}

/// A parsed range of any kind: ranks (negative from the end), scores,
/// members.
enum Spec<'a> {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange<'a>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum By {
    Auto,
    Rank,
    Score,
    Lex,
}

pub fn read(cmd: Cmd, store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let (by, rev) = match cmd {
        Cmd::Zrange => (By::Auto, None),
        Cmd::Zrevrange => (By::Rank, Some(true)),
        Cmd::Zrangebyscore => (By::Score, Some(false)),
        Cmd::Zrevrangebyscore => (By::Score, Some(true)),
        Cmd::Zrangebylex => (By::Lex, Some(false)),
        Cmd::Zrevrangebylex => (By::Lex, Some(true)),
        Cmd::Zcount | Cmd::Zlexcount => return count(cmd, store, x, argv),
        _ => return x.err(b"ERR internal: not a sorted set range"),
    };
    let Some((pairs, withscores)) = range_generic(store, x, argv, 1, false, by, rev) else { return };
    write_array_len(x.out, pairs.len() * if withscores { 2 } else { 1 });
    for (score, member) in pairs {
        write_bulk(x.out, member);
        if withscores {
            write_double(x.out, *score);
        }
    }
}

/// ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]:
/// the destination is replaced whatever it held; an empty range deletes it.
pub fn zrangestore(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let pairs: Vec<(f64, Bytes)> = {
        let Some((pairs, _)) = range_generic(store, x, argv, 2, true, By::Auto, None) else { return };
        pairs.into_iter().cloned().collect()
    };
    store.take(argv[1], x.clock);
    x.int(pairs.len() as i64);
    if !pairs.is_empty() {
        let mut z = ZsetVal::new();
        for (score, member) in pairs {
            z.insert(&member, score);
        }
        store.put(Entry::aggregate(argv[1], None, AggVal::Zset(z)));
    }
}

/// Redis's `zrangeGenericCommand`: parses `key min max` at `at` and the
/// options after them, then finds the range: its pairs, and whether the
/// reply has their scores (WITHSCORES). None after an error reply.
fn range_generic<'s>(
    store: &'s Store,
    x: &mut Exec,
    argv: &[&'s [u8]],
    at: usize,
    to_store: bool,
    mut by: By,
    mut rev: Option<bool>,
) -> Option<(Vec<&'s Pair>, bool)> {
    let (mut withscores, mut offset, mut limit) = (false, 0i64, -1i64);
    let mut j = at + 3;
    while j < argv.len() {
        let opt = argv[j];
        let left = argv.len() - j - 1;
        if !to_store && opt.eq_ignore_ascii_case(b"withscores") {
            withscores = true;
        } else if opt.eq_ignore_ascii_case(b"limit") && left >= 2 {
            let (Some(o), Some(l)) = (parse_i64(argv[j + 1]), parse_i64(argv[j + 2])) else {
                x.err(NOT_INT);
                return None;
            };
            (offset, limit) = (o, l);
            j += 2;
        } else if rev.is_none() && opt.eq_ignore_ascii_case(b"rev") {
            rev = Some(true);
        } else if by == By::Auto && opt.eq_ignore_ascii_case(b"bylex") {
            by = By::Lex;
        } else if by == By::Auto && opt.eq_ignore_ascii_case(b"byscore") {
            by = By::Score;
        } else {
            x.err(SYNTAX);
            return None;
        }
        j += 1;
    }
    let rev = rev.unwrap_or(false);
    if by == By::Auto {
        by = By::Rank;
    }
    // LIMIT 0 -1 is no LIMIT at all, as in Redis.
    if limit != -1 && by == By::Rank {
        x.err(b"ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX");
        return None;
    }
    if withscores && by == By::Lex {
        x.err(b"ERR syntax error, WITHSCORES not supported in combination with BYLEX");
        return None;
    }
    let (mut lo, mut hi) = (argv[at + 1], argv[at + 2]);
    if rev && by != By::Rank {
        std::mem::swap(&mut lo, &mut hi);
    }
    let spec = match by {
        By::Score => match ScoreRange::parse(lo, hi) {
            Some(r) => Spec::Score(r),
            None => {
                x.err(NOT_FLOAT_RANGE);
                return None;
            }
        },
        By::Lex => match LexRange::parse(lo, hi) {
            Some(r) => Spec::Lex(r),
            None => {
                x.err(NOT_LEX_RANGE);
                return None;
            }
        },
        _ => match (parse_i64(lo), parse_i64(hi)) {
            (Some(s), Some(e)) => Spec::Rank(s, e),
            _ => {
                x.err(NOT_INT);
                return None;
            }
        },
    };
    let Ok(found) = get_typed(store, x, argv[at], Kind::Zset) else { return None };
    let Some(z) = found.map(zset) else { return Some((Vec::new(), withscores)) };
    let pairs = match spec {
        Spec::Rank(start, end) => {
            let len = z.len();
            match clamp_range(start, end, len) {
                None => Vec::new(),
                Some((s, e)) if rev => z.range(len - 1 - e, len - s).rev().collect(),
                Some((s, e)) => z.range(s, e + 1).collect(),
            }
        }
        Spec::Score(r) => {
            let first = if rev { last_in_score(z, &r) } else { first_in_score(z, &r) };
            walk(z, first, rev, offset, limit, |p| if rev { r.gte_min(p.0) } else { r.lte_max(p.0) })
        }
        Spec::Lex(r) => {
            let first = if rev { last_in_lex(z, &r) } else { first_in_lex(z, &r) };
            walk(z, first, rev, offset, limit, |p| if rev { r.gte_min(&p.1) } else { r.lte_max(&p.1) })
        }
    };
    Some((pairs, withscores))
}

/// From rank `first`, skips `offset` elements unchecked, then takes up to
/// `limit` (all if negative) while `in_range` holds, forward or backward.
/// A negative offset skips past the end, as Redis's countdown does.
fn walk(z: &ZsetVal, first: Option<usize>, rev: bool, offset: i64, limit: i64, in_range: impl Fn(&Pair) -> bool) -> Vec<&Pair> {
    let (Some(first), Ok(offset)) = (first, usize::try_from(offset)) else { return Vec::new() };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rev {
        let Some(start) = first.checked_sub(offset) else { return Vec::new() };
        z.range(0, start + 1).rev().take(limit).take_while(|p| in_range(p)).collect()
    } else {
        let start = first.saturating_add(offset);
        z.range(start, z.len()).take(limit).take_while(|p| in_range(p)).collect()
    }
}

/// ZCOUNT key min max, ZLEXCOUNT key min max
fn count(cmd: Cmd, store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let n = if cmd == Cmd::Zcount {
        let Some(r) = ScoreRange::parse(argv[2], argv[3]) else { return x.err(NOT_FLOAT_RANGE) };
        let Ok(e) = get_typed(store, x, argv[1], Kind::Zset) else { return };
        e.map(zset).and_then(|z| first_in_score(z, &r).map(|i| end_of_score(z, &r, i) - i))
    } else {
        let Some(r) = LexRange::parse(argv[2], argv[3]) else { return x.err(NOT_LEX_RANGE) };
        let Ok(e) = get_typed(store, x, argv[1], Kind::Zset) else { return };
        e.map(zset).and_then(|z| first_in_lex(z, &r).map(|i| end_of_lex(z, &r, i) - i))
    };
    x.int(n.unwrap_or(0) as i64);
}

/// ZREMRANGEBYRANK key start stop, ZREMRANGEBYSCORE key min max,
/// ZREMRANGEBYLEX key min max: the range is parsed before the key is
/// looked up; an emptied set is deleted.
pub fn remrange(cmd: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let spec = match cmd {
        Cmd::Zremrangebyrank => {
            let Some(start) = x.int_arg(argv[2]) else { return };
            let Some(end) = x.int_arg(argv[3]) else { return };
            Spec::Rank(start, end)
        }
        Cmd::Zremrangebyscore => match ScoreRange::parse(argv[2], argv[3]) {
            Some(r) => Spec::Score(r),
            None => return x.err(NOT_FLOAT_RANGE),
        },
        _ => match LexRange::parse(argv[2], argv[3]) {
            Some(r) => Spec::Lex(r),
            None => return x.err(NOT_LEX_RANGE),
        },
    };
    let Ok(found) = take_typed(store, x, argv[1], Kind::Zset) else { return };
    let Some(mut e) = found else { return x.int(0) };
    let z = zset_mut(&mut e);
    let span = match spec {
        Spec::Rank(start, end) => clamp_range(start, end, z.len()).map(|(s, e)| (s, e + 1)),
        Spec::Score(r) => first_in_score(z, &r).map(|i| (i, end_of_score(z, &r, i))),
        Spec::Lex(r) => first_in_lex(z, &r).map(|i| (i, end_of_lex(z, &r, i))),
    };
    let removed = span.map_or(0, |(start, end)| z.remove_range(start, end));
    put_back(store, e);
    x.int(removed as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_bounds_read_as_strtod_reads_them() {
        assert_eq!(score_bound(b"(1.5"), Some((1.5, true)));
        assert_eq!(score_bound(b"-inf"), Some((f64::NEG_INFINITY, false)));
        assert_eq!(score_bound(b"1e400"), Some((f64::INFINITY, false)));
        assert_eq!(score_bound(b""), Some((0.0, false)));
        assert_eq!(score_bound(b"("), Some((0.0, true)));
        assert_eq!(score_bound(b" 7"), Some((7.0, false)));
        assert_eq!(score_bound(b"7\x00junk"), Some((7.0, false)));
        assert_eq!(score_bound(b"0x10"), Some((16.0, false)));
        for bad in [&b"nan"[..], b"(nan", b"7 ", b" ", b"a", b"[1", b"1e", b"((1"] {
            assert_eq!(score_bound(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn lex_ranges_compare_as_sdscmplex() {
        let r = LexRange::parse(b"[b", b"(d").unwrap();
        assert!(!r.gte_min(b"a") && r.gte_min(b"b") && r.lte_max(b"c") && !r.lte_max(b"d"));
        assert!(LexRange::parse(b"-", b"+").is_some_and(|r| !r.is_empty() && r.gte_min(b"") && r.lte_max(b"\xff")));
        assert!(LexRange::parse(b"+", b"-").is_some_and(|r| r.is_empty()));
        assert!(LexRange::parse(b"(a", b"[a").is_some_and(|r| r.is_empty()));
        assert!(LexRange::parse(b"[a", b"[a").is_some_and(|r| !r.is_empty()));
        assert!(LexRange::parse(b"-\x00x", b"+").is_some());
        for bad in [&b"a"[..], b"", b"-x", b"++"] {
            assert!(LexRange::parse(bad, b"+").is_none());
        }
    }
}
