//! Random members and keys: SPOP, SRANDMEMBER, HRANDFIELD, RANDOMKEY
//! (Redis 7.0's `t_set.c`, `t_hash.c`, `db.c`), with Redis's argument
//! checks, errors and reply shapes.
//!
//! Randomness comes only from `x.clock.random_u64()`, one draw per command
//! that picks anything: a write (SPOP, or any of these inside MULTI) draws
//! through the replicated context, so the backup replays the primary's
//! value. A draw alone is not enough, because hashes and sets iterate in a
//! per-process hash order: which members a draw selects is decided here by
//! an order that is a function of the members only ([`rank`]), so both
//! replicas pop the same members and reply the same bytes. Picking is O(n)
//! in the size of the set or hash (Redis's is O(1) per member), the price
//! of not keeping a replicated order inside the value.

use super::{get_typed, put_back, take_typed, Exec, NOT_INT, SYNTAX};
use crate::entry::{AggVal, Kind};
use crate::num::parse_i64;
use crate::resp::{write_array_len, write_bulk, write_null};
use crate::store::{is_live, Store};

/// The order in which a draw `seed` picks members: a hash of the member
/// (FNV-1a) mixed with the seed (SplitMix64's finalizer). Fixed across
/// processes and platforms, unlike the tables' seeded hashers.
fn rank(seed: u64, member: &[u8]) -> u64 {
    let fnv = member.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    mix(fnv ^ seed)
}

/// SplitMix64's output function: a bijective 64-bit mixer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The member a draw picks: the least by (rank, bytes).
fn pick_one<'a>(members: impl Iterator<Item = &'a [u8]>, seed: u64) -> Option<&'a [u8]> {
    members.min_by_key(|m| (rank(seed, m), *m))
}

/// `k` distinct members (fewer than there are), in rank order.
fn pick_distinct<'a>(members: impl Iterator<Item = &'a [u8]>, k: usize, seed: u64) -> Vec<&'a [u8]> {
    let mut ranked: Vec<(u64, &[u8])> = members.map(|m| (rank(seed, m), m)).collect();
    debug_assert!(k > 0 && k < ranked.len());
    ranked.select_nth_unstable(k - 1);
    ranked.truncate(k);
    ranked.sort_unstable();
    ranked.into_iter().map(|(_, m)| m).collect()
}

/// `count` members drawn with replacement: indexes from a SplitMix64
/// stream seeded by the draw, into the members sorted by bytes. Lazy, so
/// that a huge count costs reply bytes as it does in Redis, not a vector
/// allocated up front.
fn pick_repeated<'a>(members: impl Iterator<Item = &'a [u8]>, count: u64, seed: u64) -> impl Iterator<Item = &'a [u8]> {
    let mut sorted: Vec<&[u8]> = members.collect();
    sorted.sort_unstable();
    let mut state = seed;
    (0..count).map(move |_| {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        sorted[(mix(state) % sorted.len() as u64) as usize]
    })
}

/// Every member in a fixed order (by bytes), for replies of whole sets.
fn all_sorted<'a>(members: impl Iterator<Item = &'a [u8]>) -> Vec<&'a [u8]> {
    let mut v: Vec<&[u8]> = members.collect();
    v.sort_unstable();
    v
}

/// Redis's `getRangeLongFromObjectOrReply(-LONG_MAX, LONG_MAX)`.
fn count_arg(x: &mut Exec, arg: &[u8]) -> Option<i64> {
    match parse_i64(arg) {
        None => {
            x.err(NOT_INT);
            None
        }
        Some(i64::MIN) => {
            x.err(b"ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807");
            None
        }
        Some(v) => Some(v),
    }
}

fn write_all(x: &mut Exec, items: &[&[u8]]) {
    write_array_len(x.out, items.len());
    for m in items {
        write_bulk(x.out, m);
    }
}

fn members(val: &AggVal) -> Box<dyn Iterator<Item = &[u8]> + '_> {
    match val {
        AggVal::Set(s) => Box::new(s.iter().map(|m| &m[..])),
        AggVal::Hash(h) => Box::new(h.keys().map(|f| &f[..])),
        AggVal::List(l) => Box::new(l.iter().map(|i| &i[..])),
        AggVal::Zset(z) => Box::new(z.iter().map(|(_, m)| &m[..])),
        AggVal::Stream(_) => Box::new(std::iter::empty()),
    }
}

/// SPOP key [count]
pub fn spop(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let count = match argv.len() {
        2 => None,
        // Redis's getPositiveLongFromObjectOrReply: one error for both.
        3 => match parse_i64(argv[2]) {
            Some(c) if c >= 0 => Some(c as u64),
            _ => return x.err(b"ERR value is out of range, must be positive"),
        },
        _ => return x.err(SYNTAX),
    };
    let Ok(found) = take_typed(store, x, argv[1], Kind::Set) else { return };
    let Some(mut e) = found else {
        return match count {
            None => write_null(x.out),
            Some(_) => write_array_len(x.out, 0),
        };
    };
    let Some(AggVal::Set(set)) = e.agg_mut() else { unreachable!("type checked by take_typed") };
    let size = set.len() as u64;
    let popped: Vec<Box<[u8]>> = match count {
        Some(0) => Vec::new(),
        Some(c) if c >= size => {
            // The whole set goes; the key is deleted.
            let all: Vec<Box<[u8]>> = all_sorted(set.iter().map(|m| &m[..])).into_iter().map(Box::from).collect();
            set.clear();
            all
        }
        Some(c) => {
            let seed = x.clock.random_u64();
            let picked: Vec<Box<[u8]>> =
                pick_distinct(set.iter().map(|m| &m[..]), c as usize, seed).into_iter().map(Box::from).collect();
            for m in &picked {
                set.remove(m);
            }
            // Redis builds a new set of the members left when it pops
            // most of them (at least 5 times as many as remain): the new
            // set's encoding follows its contents.
            if (size - c) * 5 <= c {
                e = crate::encoding::rebuilt(e);
            }
            picked
        }
        None => {
            let seed = x.clock.random_u64();
            let m: Box<[u8]> = pick_one(set.iter().map(|m| &m[..]), seed).expect("a stored set is never empty").into();
            set.remove(&m);
            vec![m]
        }
    };
    put_back(store, e);
    match count {
        None => write_bulk(x.out, &popped[0]),
        Some(_) => write_all(x, &popped.iter().map(|m| &m[..]).collect::<Vec<_>>()),
    }
}

/// SRANDMEMBER key [count]: a positive count gives distinct members, a
/// negative one `-count` members that may repeat.
pub fn srandmember(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    if argv.len() > 3 {
        return x.err(SYNTAX);
    }
    let count = match argv.get(2) {
        None => None,
        Some(arg) => match count_arg(x, arg) {
            Some(c) => Some(c),
            None => return,
        },
    };
    let Ok(found) = get_typed(store, x, argv[1], Kind::Set) else { return };
    let Some(val) = found.and_then(|e| e.agg()) else {
        return match count {
            None => write_null(x.out),
            Some(_) => write_array_len(x.out, 0),
        };
    };
    match count {
        None => {
            let seed = x.clock.random_u64();
            write_bulk(x.out, pick_one(members(val), seed).expect("a stored set is never empty"));
        }
        Some(c) => {
            let (n, picked) = pick_count(x, val, c);
            write_array_len(x.out, n);
            for m in picked {
                write_bulk(x.out, m);
            }
        }
    }
}

/// The members a count selects, and how many: none for 0, `|count|` with
/// repeats for a negative count, all of them if the count reaches the size.
fn pick_count<'a>(x: &mut Exec, val: &'a AggVal, count: i64) -> (usize, Box<dyn Iterator<Item = &'a [u8]> + 'a>) {
    let size = val.len() as u64;
    match count {
        0 => (0, Box::new(std::iter::empty())),
        c if c < 0 => {
            let seed = x.clock.random_u64();
            (c.unsigned_abs() as usize, Box::new(pick_repeated(members(val), c.unsigned_abs(), seed)))
        }
        c if c as u64 >= size => (size as usize, Box::new(all_sorted(members(val)).into_iter())),
        c => {
            let seed = x.clock.random_u64();
            (c as usize, Box::new(pick_distinct(members(val), c as usize, seed).into_iter()))
        }
    }
}

/// HRANDFIELD key [count [WITHVALUES]]
pub fn hrandfield(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let mut count = None;
    let mut with_values = false;
    if argv.len() >= 3 {
        let Some(c) = count_arg(x, argv[2]) else { return };
        if argv.len() > 4 || (argv.len() == 4 && !argv[3].eq_ignore_ascii_case(b"withvalues")) {
            return x.err(SYNTAX);
        }
        if argv.len() == 4 {
            with_values = true;
            if !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&c) {
                return x.err(b"ERR value is out of range");
            }
        }
        count = Some(c);
    }
    let Ok(found) = get_typed(store, x, argv[1], Kind::Hash) else { return };
    let Some(val) = found.and_then(|e| e.agg()) else {
        return match count {
            None => write_null(x.out),
            Some(_) => write_array_len(x.out, 0),
        };
    };
    let AggVal::Hash(h) = val else { unreachable!("type checked by get_typed") };
    let Some(c) = count else {
        let seed = x.clock.random_u64();
        return write_bulk(x.out, pick_one(members(val), seed).expect("a stored hash is never empty"));
    };
    let (n, fields) = pick_count(x, val, c);
    // RESP2: a flat array; RESP3 makes pairs of it (`resp3::Shape::Pairs`).
    write_array_len(x.out, n * if with_values { 2 } else { 1 });
    for f in fields {
        write_bulk(x.out, f);
        if with_values {
            write_bulk(x.out, &h[f]);
        }
    }
}

/// RANDOMKEY: a live key, or null. A draw picks a position among the
/// stored entries (shards in order, each shard's keys by bytes); if that
/// entry has expired, the next live key after it is taken.
pub fn randomkey(store: &Store, x: &mut Exec) {
    let total = store.len() as u64;
    if total == 0 {
        return write_null(x.out);
    }
    let mut at = x.clock.random_u64() % total;
    let shards = store.shards();
    let first = shards.iter().position(|s| {
        let n = s.map.len() as u64;
        if at < n {
            return true;
        }
        at -= n;
        false
    });
    let Some(first) = first else { return write_null(x.out) };
    for step in 0..=shards.len() {
        let shard = &shards[(first + step) % shards.len()];
        let mut keys: Vec<&crate::entry::Entry> = shard.entries().collect();
        keys.sort_unstable_by(|a, b| a.key().cmp(b.key()));
        let skip = if step == 0 { at as usize } else { 0 };
        if let Some(e) = keys.into_iter().skip(skip).find(|e| is_live(e, x.clock)) {
            return write_bulk(x.out, e.key());
        }
    }
    write_null(x.out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_depend_on_members_and_seed_only() {
        let a: Vec<&[u8]> = vec![b"x", b"y", b"z", b"w", b"v"];
        let mut b = a.clone();
        b.reverse();
        for seed in [0, 1, 42, u64::MAX] {
            assert_eq!(pick_one(a.iter().copied(), seed), pick_one(b.iter().copied(), seed));
            assert_eq!(pick_distinct(a.iter().copied(), 3, seed), pick_distinct(b.iter().copied(), 3, seed));
            let repeated = |v: &[&'static [u8]]| pick_repeated(v.iter().copied(), 7, seed).collect::<Vec<_>>();
            assert_eq!(repeated(&a), repeated(&b));
        }
        let distinct = pick_distinct(a.iter().copied(), 4, 9);
        let mut d = distinct.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 4);
    }

    #[test]
    fn every_member_can_be_picked() {
        let a: Vec<&[u8]> = vec![b"a", b"b", b"c", b"d"];
        let mut seen: Vec<&[u8]> = (0..200u64).filter_map(|s| pick_one(a.iter().copied(), mix(s))).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen, a);
    }
}
