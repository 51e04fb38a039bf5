//! Sorted set commands on one member or one end (Redis 7.0's `t_zset.c`):
//! ZADD, ZINCRBY, ZREM, ZCARD, ZSCORE, ZMSCORE, ZRANK, ZREVRANK, ZPOPMIN,
//! ZPOPMAX, ZMPOP, ZRANDMEMBER. Ranges are in `zrange`, the algebra in
//! `zsetops`.

use std::collections::BTreeSet;

use super::{get_typed, put_back, take_typed, Cmd, Exec, NOT_INT, SYNTAX, WRONGTYPE};
use crate::entry::{AggVal, Entry, Kind, ZsetVal};
use crate::num::{parse_f64, parse_i64};
use crate::resp::{write_array_len, write_bulk, write_double, write_null, write_null_array};
use crate::store::Store;

const NOT_FLOAT: &[u8] = b"ERR value is not a valid float";

/// Most elements ZRANDMEMBER with a negative count replies (a count
/// beyond it is an error): the count, not the set, sizes that reply, and
/// the reply is built in memory before it is sent, so an unbounded one
/// could exhaust the node's memory (Redis builds it too, bounded only by a
/// client output buffer limit when one is configured).
const RANDOM_REPLY_MAX: u64 = 1 << 24;

pub fn zset(e: &Entry) -> &ZsetVal {
    match e.agg() {
        Some(AggVal::Zset(z)) => z,
        _ => unreachable!("entry type checked by get_typed/take_typed"),
    }
}

pub fn zset_mut(e: &mut Entry) -> &mut ZsetVal {
    match e.agg_mut() {
        Some(AggVal::Zset(z)) => z,
        _ => unreachable!("entry type checked by take_typed"),
    }
}

pub fn read(cmd: Cmd, store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    match cmd {
        Cmd::Zrandmember => return zrandmember(store, x, argv),
        Cmd::Zmscore => {
            let Ok(e) = get_typed(store, x, argv[1], Kind::Zset) else { return };
            let z = e.map(zset);
            write_array_len(x.out, argv.len() - 2);
            for m in &argv[2..] {
                match z.and_then(|z| z.score(m)) {
                    Some(s) => write_double(x.out, s),
                    None => write_null(x.out),
                }
            }
            return;
        }
        _ => {}
    }
    let Ok(e) = get_typed(store, x, argv[1], Kind::Zset) else { return };
    let Some(z) = e.map(zset) else {
        return if cmd == Cmd::Zcard { x.int(0) } else { write_null(x.out) };
    };
    match cmd {
        Cmd::Zcard => x.int(z.len() as i64),
        Cmd::Zscore => match z.score(argv[2]) {
            Some(s) => write_double(x.out, s),
            None => write_null(x.out),
        },
        Cmd::Zrank | Cmd::Zrevrank => match z.rank(argv[2]) {
            Some(r) if cmd == Cmd::Zrank => x.int(r as i64),
            Some(r) => x.int((z.len() - 1 - r) as i64),
            None => write_null(x.out),
        },
        _ => x.err(b"ERR internal: not a sorted set read"),
    }
}

pub fn write(cmd: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    match cmd {
        Cmd::Zadd | Cmd::Zincrby => zadd(cmd == Cmd::Zincrby, store, x, argv),
        Cmd::Zrem => zrem(store, x, argv),
        Cmd::Zpopmin | Cmd::Zpopmax => zpop(cmd == Cmd::Zpopmax, store, x, argv),
        Cmd::Zmpop => zmpop(store, x, argv),
        _ => x.err(b"ERR internal: not a sorted set write"),
    }
}

/// ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...],
/// and ZINCRBY key increment member (ZADD INCR, with its option parsing:
/// Redis's `zaddGenericCommand` serves both).
fn zadd(incr_cmd: bool, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) = (false, false, false, false, false, incr_cmd);
    let mut at = 2;
    while at < argv.len() {
        let flag = match argv[at].to_ascii_lowercase().as_slice() {
            b"nx" => &mut nx,
            b"xx" => &mut xx,
            b"ch" => &mut ch,
            b"incr" => &mut incr,
            b"gt" => &mut gt,
            b"lt" => &mut lt,
            _ => break,
        };
        *flag = true;
        at += 1;
    }
    let elements = argv.len() - at;
    if elements == 0 || !elements.is_multiple_of(2) {
        return x.err(SYNTAX);
    }
    if nx && xx {
        return x.err(b"ERR XX and NX options at the same time are not compatible");
    }
    if (nx && (gt || lt)) || (gt && lt) {
        return x.err(b"ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if incr && elements > 2 {
        return x.err(b"ERR INCR option supports a single increment-element pair");
    }
    // Every score is checked before anything changes.
    let mut pairs = Vec::with_capacity(elements / 2);
    for pair in argv[at..].chunks_exact(2) {
        let Some(score) = parse_f64(pair[0]) else { return x.err(NOT_FLOAT) };
        pairs.push((score, pair[1]));
    }
    let Ok(found) = take_typed(store, x, argv[1], Kind::Zset) else { return };
    let mut e = match found {
        Some(e) => e,
        None if xx => return if incr { write_null(x.out) } else { x.int(0) },
        None => Entry::aggregate(argv[1], None, AggVal::Zset(ZsetVal::new())),
    };
    let z = zset_mut(&mut e);
    let (mut added, mut updated, mut processed, mut last) = (0, 0, 0, 0.0);
    for (score, member) in pairs {
        let new = match z.score(member) {
            Some(_) if nx => continue,
            Some(cur) => {
                let new = if incr { score + cur } else { score };
                if new.is_nan() {
                    put_back(store, e);
                    return x.err(b"ERR resulting score is not a number (NaN)");
                }
                if (lt && new >= cur) || (gt && new <= cur) {
                    continue;
                }
                // An equal score (0 and -0 are equal) changes nothing.
                if new != cur {
                    z.insert(member, new);
                    updated += 1;
                }
                new
            }
            None if xx => continue,
            None => {
                z.insert(member, score);
                added += 1;
                score
            }
        };
        processed += 1;
        last = new;
    }
    put_back(store, e);
    match (incr, processed) {
        (true, 0) => write_null(x.out),
        // The computed score, which may be -0 where the stored one is 0.
        (true, _) => write_double(x.out, last),
        (false, _) => x.int(if ch { added + updated } else { added }),
    }
}

/// ZREM key member [member ...]
fn zrem(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Ok(found) = take_typed(store, x, argv[1], Kind::Zset) else { return };
    let Some(mut e) = found else { return x.int(0) };
    let z = zset_mut(&mut e);
    let removed = argv[2..].iter().filter(|m| z.remove(m).is_some()).count();
    put_back(store, e);
    x.int(removed as i64);
}

/// ZPOPMIN / ZPOPMAX key [count]
fn zpop(max: bool, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    if argv.len() > 3 {
        return x.err(SYNTAX);
    }
    let count = match argv.get(2) {
        None => None,
        Some(arg) => match parse_i64(arg) {
            Some(n) if n >= 0 => Some(n as u64),
            _ => return x.err(b"ERR value is out of range, must be positive"),
        },
    };
    pop_generic(store, x, &argv[1..2], max, count, false);
}

/// ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]
fn zmpop(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    match super::mpop::parse(argv, 1, false) {
        Ok(m) => pop_generic(store, x, &m.keys, !m.first_end, Some(m.count), true),
        Err(e) => x.err(e),
    }
}

/// Redis's `genericZpopCommand`: pops from the first of `keys` that
/// exists (WRONGTYPE if that one is not a sorted set). ZPOPMIN's reply is
/// flat, member and score alternating; ZMPOP's (`mpop`) is [key, [[member,
/// score], …]] and null when no key exists.
pub(super) fn pop_generic(store: &mut Store, x: &mut Exec, keys: &[&[u8]], max: bool, count: Option<u64>, mpop: bool) {
    let mut candidate = None;
    for key in keys {
        match store.get(key, x.clock) {
            None => continue,
            Some(e) if e.kind() != Kind::Zset => return x.err(WRONGTYPE),
            Some(_) => {
                candidate = Some(*key);
                break;
            }
        }
    }
    let Some(key) = candidate else {
        return if mpop { write_null_array(x.out) } else { write_array_len(x.out, 0) };
    };
    if count == Some(0) {
        return write_array_len(x.out, 0);
    }
    let Ok(Some(mut e)) = take_typed(store, x, key, Kind::Zset) else { unreachable!("a live sorted set, seen above") };
    let z = zset_mut(&mut e);
    let n = count.unwrap_or(1).min(z.len() as u64) as usize;
    if mpop {
        write_array_len(x.out, 2);
        write_bulk(x.out, key);
        write_array_len(x.out, n);
    } else {
        write_array_len(x.out, 2 * n);
    }
    for _ in 0..n {
        let (score, member) = z.pop(max).expect("n <= len");
        if mpop {
            write_array_len(x.out, 2);
        }
        write_bulk(x.out, &member);
        write_double(x.out, score);
    }
    put_back(store, e);
}

/// ZRANDMEMBER key [count [WITHSCORES]]. Randomness comes only from the
/// clock (`Clock::random_u64`): inside a transaction the command runs in
/// the log, where the primary's draws are recorded and the backup replays
/// them, so both pick the same members.
fn zrandmember(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    if argv.len() == 2 {
        let Ok(e) = get_typed(store, x, argv[1], Kind::Zset) else { return };
        let Some(z) = e.map(zset) else { return write_null(x.out) };
        let rank = (x.clock.random_u64() % z.len() as u64) as usize;
        return write_bulk(x.out, &z.get(rank).expect("rank < len").1);
    }
    let Some(l) = parse_i64(argv[2]) else { return x.err(NOT_INT) };
    if l == i64::MIN {
        return x.err(b"ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807");
    }
    if argv.len() > 4 || (argv.len() == 4 && !argv[3].eq_ignore_ascii_case(b"withscores")) {
        return x.err(SYNTAX);
    }
    let withscores = argv.len() == 4;
    if withscores && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&l) {
        return x.err(b"ERR value is out of range");
    }
    let Ok(e) = get_typed(store, x, argv[1], Kind::Zset) else { return };
    let Some(z) = e.map(zset) else { return write_array_len(x.out, 0) };
    let (count, unique) = (l.unsigned_abs(), l >= 0);
    let size = z.len() as u64;
    let width = if withscores { 2 } else { 1 };
    let emit = |x: &mut Exec, rank: usize| {
        let (score, member) = z.get(rank).expect("rank < len");
        write_bulk(x.out, member);
        if withscores {
            write_double(x.out, *score);
        }
    };
    if count == 0 {
        return write_array_len(x.out, 0);
    }
    if !unique || count == 1 {
        if count > RANDOM_REPLY_MAX {
            return x.err(format!("ERR ZRANDMEMBER count is limited to {RANDOM_REPLY_MAX} elements by understudy").as_bytes());
        }
        write_array_len(x.out, width * count as usize);
        for _ in 0..count {
            let rank = (x.clock.random_u64() % size) as usize;
            emit(x, rank);
        }
        return;
    }
    // Redis walks a sorted set from its highest element (`zuiNext`).
    if count >= size {
        write_array_len(x.out, width * size as usize);
        return (0..size as usize).rev().for_each(|rank| emit(x, rank));
    }
    // Floyd's sampling: `count` distinct ranks, one draw each; replied
    // from the highest, as the whole set is.
    let mut picked = BTreeSet::new();
    for j in size - count..size {
        let t = x.clock.random_u64() % (j + 1);
        picked.insert(if picked.contains(&t) { j } else { t });
    }
    debug_assert_eq!(picked.len() as u64, count);
    write_array_len(x.out, width * picked.len());
    picked.into_iter().rev().for_each(|rank| emit(x, rank as usize));
}
