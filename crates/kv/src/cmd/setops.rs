//! Set algebra (Redis 7.0's `sunionDiffGenericCommand`,
//! `sinterGenericCommand`, `smoveCommand`): SUNION, SINTER, SDIFF and
//! their STORE forms, SINTERCARD, SMOVE. Results are sets: the order of a
//! reply's members is this process's hash order (as SMEMBERS's), and a
//! stored result is the same set on both replicas whatever the order.

use super::{get_typed, put_back, take_typed, Cmd, Exec, Replied, SYNTAX};
use crate::entry::{AggVal, Bytes, Entry, Kind, SetVal};
use crate::num::parse_i64;
use crate::resp::{write_array_len, write_bulk};
use crate::store::Store;

/// The sets named by `keys`, a missing key as None; WRONGTYPE (replied)
/// if any key holds another type — every key is checked first, as Redis does.
fn sets<'s>(store: &'s Store, x: &mut Exec, keys: &[&[u8]]) -> Result<Vec<Option<&'s SetVal>>, Replied> {
    keys.iter()
        .map(|k| {
            get_typed(store, x, k, Kind::Set).map(|e| {
                e.and_then(|e| match e.agg() {
                    Some(AggVal::Set(s)) => Some(s),
                    _ => None,
                })
            })
        })
        .collect()
}

/// The members of the union, intersection or difference of `sets`.
fn combine<'s>(cmd: Cmd, sets: &[Option<&'s SetVal>]) -> Vec<&'s Bytes> {
    match cmd {
        Cmd::Sunion | Cmd::Sunionstore => {
            let mut seen: std::collections::HashSet<&Bytes> = std::collections::HashSet::new();
            sets.iter().flatten().flat_map(|s| s.iter()).filter(|m| seen.insert(*m)).collect()
        }
        Cmd::Sinter | Cmd::Sinterstore | Cmd::Sintercard => {
            if sets.iter().any(Option::is_none) {
                return Vec::new();
            }
            let mut all: Vec<&SetVal> = sets.iter().flatten().copied().collect();
            all.sort_by_key(|s| s.len());
            let Some((smallest, rest)) = all.split_first() else { return Vec::new() };
            smallest.iter().filter(|m| rest.iter().all(|s| s.contains(*m))).collect()
        }
        _ => {
            let Some(Some(first)) = sets.first() else { return Vec::new() };
            first.iter().filter(|m| !sets[1..].iter().flatten().any(|s| s.contains(*m))).collect()
        }
    }
}

/// SUNION, SINTER, SDIFF key [key ...]
pub fn read(cmd: Cmd, store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let Ok(sets) = sets(store, x, &argv[1..]) else { return };
    let members = combine(cmd, &sets);
    write_array_len(x.out, members.len());
    for m in members {
        write_bulk(x.out, m);
    }
}

/// SINTERCARD numkeys key [key ...] [LIMIT limit]
pub fn intercard(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    const NUMKEYS: &[u8] = b"ERR numkeys should be greater than 0";
    let numkeys = match parse_i64(argv[1]) {
        Some(n) if n >= 1 => n as usize,
        _ => return x.err(NUMKEYS),
    };
    if numkeys > argv.len() - 2 {
        return x.err(b"ERR Number of keys can't be greater than number of args");
    }
    let mut limit = 0usize;
    let mut j = 2 + numkeys;
    while j < argv.len() {
        if argv[j].eq_ignore_ascii_case(b"limit") && j + 1 < argv.len() {
            match parse_i64(argv[j + 1]) {
                Some(l) if l >= 0 => limit = l as usize,
                _ => return x.err(b"ERR LIMIT can't be negative"),
            }
            j += 2;
        } else {
            return x.err(SYNTAX);
        }
    }
    let Ok(sets) = sets(store, x, &argv[2..2 + numkeys]) else { return };
    let n = combine(Cmd::Sintercard, &sets).len();
    x.int(if limit > 0 { n.min(limit) } else { n } as i64);
}

/// SUNIONSTORE, SINTERSTORE, SDIFFSTORE destination key [key ...]: the
/// destination is replaced whatever it held; an empty result deletes it.
pub fn store_result(cmd: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let members: Vec<Bytes> = {
        let Ok(sets) = sets(store, x, &argv[2..]) else { return };
        combine(cmd, &sets).into_iter().cloned().collect()
    };
    store.take(argv[1], x.clock);
    let n = members.len();
    if n > 0 {
        let set: SetVal = members.into_iter().collect();
        store.put(crate::encoding::built(Entry::aggregate(argv[1], None, AggVal::Set(set))));
    }
    x.int(n as i64);
}

/// SMOVE source destination member
pub fn smove(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let (src, dst, member) = (argv[1], argv[2], argv[3]);
    // A missing source is 0 before any type check; then both types are
    // checked before anything changes.
    if store.get(src, x.clock).is_none() {
        return x.int(0);
    }
    let Ok(found) = get_typed(store, x, src, Kind::Set) else { return };
    let present = found.and_then(|e| match e.agg() {
        Some(AggVal::Set(s)) => Some(s.contains(member)),
        _ => None,
    });
    if get_typed(store, x, dst, Kind::Set).is_err() {
        return;
    }
    let present = present.expect("the source exists and is a set");
    if src == dst || !present {
        return x.int(i64::from(present && src == dst));
    }
    let Ok(Some(mut from)) = take_typed(store, x, src, Kind::Set) else { unreachable!("checked above") };
    if let Some(AggVal::Set(s)) = from.agg_mut() {
        s.remove(member);
    }
    put_back(store, from);
    let mut to = match take_typed(store, x, dst, Kind::Set) {
        Ok(Some(e)) => e,
        Ok(None) => Entry::aggregate(dst, None, AggVal::Set(SetVal::default())),
        Err(_) => unreachable!("checked above"),
    };
    if let Some(AggVal::Set(s)) = to.agg_mut() {
        s.insert(member.into());
    }
    crate::encoding::set_added(&mut to, &[member]);
    store.put(to);
    x.int(1);
}
