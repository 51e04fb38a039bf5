//! Sorted set algebra (Redis 7.0's `zunionInterDiffGenericCommand`):
//! ZUNION, ZINTER, ZDIFF (WITHSCORES), their STORE forms, ZINTERCARD
//! (LIMIT), with WEIGHTS and AGGREGATE SUM|MIN|MAX. Inputs may be sets
//! (every member scores 1). A result is sorted by score, then member,
//! whatever order the inputs were walked in, so replies and stored sets
//! are the same on both replicas.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::zsets::zset;
use super::{Cmd, Exec, NOT_INT, SYNTAX, WRONGTYPE};
use crate::entry::{AggVal, Entry, SetVal, ZsetVal};
use crate::num::{parse_f64, parse_i64};
use crate::resp::{write_array_len, write_bulk, write_double};
use crate::store::Store;

/// One input: a missing key is an empty input.
#[derive(Clone, Copy)]
enum Src<'a> {
    Missing,
    Set(&'a SetVal),
    Zset(&'a ZsetVal),
}

impl<'a> Src<'a> {
    fn len(&self) -> usize {
        match self {
            Src::Missing => 0,
            Src::Set(s) => s.len(),
            Src::Zset(z) => z.len(),
        }
    }

    fn elements(&self) -> Box<dyn Iterator<Item = (&'a [u8], f64)> + 'a> {
        match *self {
            Src::Missing => Box::new(std::iter::empty()),
            Src::Set(s) => Box::new(s.iter().map(|m| (&m[..], 1.0))),
            Src::Zset(z) => Box::new(z.iter().map(|(s, m)| (&m[..], *s))),
        }
    }

    fn find(&self, member: &[u8]) -> Option<f64> {
        match self {
            Src::Missing => None,
            Src::Set(s) => s.contains(member).then_some(1.0),
            Src::Zset(z) => z.score(member),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

/// Redis's `zunionInterAggregate`: a sum of +inf and -inf is 0; a NaN
/// operand never wins a MIN or MAX.
fn aggregate(target: &mut f64, val: f64, how: Aggregate) {
    match how {
        Aggregate::Sum => {
            *target += val;
            if target.is_nan() {
                *target = 0.0;
            }
        }
        Aggregate::Min => *target = if val < *target { val } else { *target },
        Aggregate::Max => *target = if val > *target { val } else { *target },
    }
}

/// What the command computes and where it goes.
#[derive(Clone, Copy, PartialEq)]
enum Op {
    Union,
    Inter,
    Diff,
}

fn op_of(cmd: Cmd) -> Op {
    match cmd {
        Cmd::Zunion | Cmd::Zunionstore => Op::Union,
        Cmd::Zinter | Cmd::Zinterstore | Cmd::Zintercard => Op::Inter,
        _ => Op::Diff,
    }
}

/// The parsed command: inputs with their weights, and the options.
struct Query<'a> {
    srcs: Vec<(Src<'a>, f64)>,
    how: Aggregate,
    withscores: bool,
    limit: usize,
}

/// Parses `numkeys key… [options]` from `at`, looking the keys up between
/// the count and the options, as Redis does (so WRONGTYPE comes before a
/// syntax error in the options). None after an error reply.
fn parse<'a>(cmd: Cmd, store: &'a Store, x: &mut Exec, argv: &[&[u8]], at: usize) -> Option<Query<'a>> {
    let (op, to_store, card) = (op_of(cmd), at == 2, cmd == Cmd::Zintercard);
    let Some(numkeys) = parse_i64(argv[at]) else {
        x.err(NOT_INT);
        return None;
    };
    if numkeys < 1 {
        x.err(format!("ERR at least 1 input key is needed for '{}' command", cmd.spec().name).as_bytes());
        return None;
    }
    let numkeys = match usize::try_from(numkeys) {
        Ok(n) if n < argv.len() - at => n,
        _ => {
            x.err(SYNTAX);
            return None;
        }
    };
    let mut srcs = Vec::with_capacity(numkeys);
    for key in &argv[at + 1..at + 1 + numkeys] {
        let src = match store.get(key, x.clock) {
            None => Src::Missing,
            Some(e) => match e.agg() {
                Some(AggVal::Set(s)) => Src::Set(s),
                Some(AggVal::Zset(_)) => Src::Zset(zset(e)),
                _ => {
                    x.err(WRONGTYPE);
                    return None;
                }
            },
        };
        srcs.push((src, 1.0));
    }
    let mut q = Query { srcs, how: Aggregate::Sum, withscores: false, limit: 0 };
    let mut j = at + 1 + numkeys;
    while j < argv.len() {
        let (opt, remaining) = (argv[j], argv.len() - j);
        if op != Op::Diff && !card && remaining > numkeys && opt.eq_ignore_ascii_case(b"weights") {
            for (i, w) in argv[j + 1..j + 1 + numkeys].iter().enumerate() {
                let Some(w) = parse_f64(w) else {
                    x.err(b"ERR weight value is not a float");
                    return None;
                };
                q.srcs[i].1 = w;
            }
            j += 1 + numkeys;
        } else if op != Op::Diff && !card && remaining >= 2 && opt.eq_ignore_ascii_case(b"aggregate") {
            q.how = match argv[j + 1].to_ascii_lowercase().as_slice() {
                b"sum" => Aggregate::Sum,
                b"min" => Aggregate::Min,
                b"max" => Aggregate::Max,
                _ => {
                    x.err(SYNTAX);
                    return None;
                }
            };
            j += 2;
        } else if !to_store && !card && opt.eq_ignore_ascii_case(b"withscores") {
            q.withscores = true;
            j += 1;
        } else if card && remaining >= 2 && opt.eq_ignore_ascii_case(b"limit") {
            match parse_i64(argv[j + 1]) {
                Some(l) if l >= 0 => q.limit = usize::try_from(l).unwrap_or(usize::MAX),
                _ => {
                    x.err(b"ERR LIMIT can't be negative");
                    return None;
                }
            }
            j += 2;
        } else {
            x.err(SYNTAX);
            return None;
        }
    }
    if op != Op::Diff {
        // Smallest input first (a stable sort: the order of the sums is
        // Redis's, which matters for floating point and for inf - inf).
        q.srcs.sort_by_key(|(s, _)| s.len());
    }
    Some(q)
}

/// The result, sorted by score then member; or, for ZINTERCARD, just its size.
fn compute<'a>(op: Op, q: &Query<'a>, count_only: bool) -> (Vec<(&'a [u8], f64)>, usize) {
    let mut out: Vec<(&[u8], f64)> = Vec::new();
    let mut cardinality = 0;
    match op {
        Op::Inter => {
            let (first, w0) = q.srcs[0];
            for (member, s) in first.elements() {
                let mut score = w0 * s;
                if score.is_nan() {
                    score = 0.0;
                }
                let in_all = q.srcs[1..].iter().all(|(src, w)| match src.find(member) {
                    Some(v) => {
                        aggregate(&mut score, v * w, q.how);
                        true
                    }
                    None => false,
                });
                if !in_all {
                    continue;
                }
                if count_only {
                    cardinality += 1;
                    if q.limit > 0 && cardinality >= q.limit {
                        break;
                    }
                } else {
                    out.push((member, score));
                }
            }
        }
        Op::Union => {
            let mut acc: HashMap<&[u8], f64, RandomState> = HashMap::default();
            for (src, w) in &q.srcs {
                for (member, s) in src.elements() {
                    let mut score = w * s;
                    if score.is_nan() {
                        score = 0.0;
                    }
                    acc.entry(member).and_modify(|t| aggregate(t, score, q.how)).or_insert(score);
                }
            }
            out.extend(acc);
        }
        Op::Diff => {
            let (first, _) = q.srcs[0];
            out.extend(first.elements().filter(|(m, _)| q.srcs[1..].iter().all(|(src, _)| src.find(m).is_none())));
        }
    }
    debug_assert!(out.iter().all(|(_, s)| !s.is_nan()));
    // As the skiplist orders them: -0 and 0 are equal scores.
    out.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal).then_with(|| a.0.cmp(b.0)));
    (out, cardinality)
}

/// ZUNION, ZINTER, ZDIFF numkeys key [key ...] [options] [WITHSCORES];
/// ZINTERCARD numkeys key [key ...] [LIMIT limit].
pub fn read(cmd: Cmd, store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(q) = parse(cmd, store, x, argv, 1) else { return };
    let (result, cardinality) = compute(op_of(cmd), &q, cmd == Cmd::Zintercard);
    if cmd == Cmd::Zintercard {
        return x.int(cardinality as i64);
    }
    write_array_len(x.out, result.len() * if q.withscores { 2 } else { 1 });
    for (member, score) in result {
        write_bulk(x.out, member);
        if q.withscores {
            write_double(x.out, score);
        }
    }
}

/// ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE destination numkeys key [key ...]
/// [options]: the destination is replaced whatever it held; an empty
/// result deletes it.
pub fn store_result(cmd: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let z = {
        let Some(q) = parse(cmd, store, x, argv, 2) else { return };
        let mut z = ZsetVal::new();
        for (member, score) in compute(op_of(cmd), &q, false).0 {
            z.insert(member, score);
        }
        z
    };
    store.take(argv[1], x.clock);
    x.int(z.len() as i64);
    if !z.is_empty() {
        store.put(Entry::aggregate(argv[1], None, AggVal::Zset(z)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_of_opposite_infinities_are_zero() {
        let mut t = f64::INFINITY;
        aggregate(&mut t, f64::NEG_INFINITY, Aggregate::Sum);
        assert_eq!(t, 0.0);
        let mut t = 1.0;
        aggregate(&mut t, f64::NAN, Aggregate::Min);
        assert_eq!(t, 1.0);
        aggregate(&mut t, f64::NAN, Aggregate::Max);
        assert_eq!(t, 1.0);
        aggregate(&mut t, 3.0, Aggregate::Max);
        assert_eq!(t, 3.0);
    }
}
