//! More list commands (Redis 7.0's `t_list.c`): LTRIM, LREM, LINSERT,
//! LPOS, LMOVE and RPOPLPUSH — the moves a job queue is built on.

use super::lists::{clamp_range, list_mut};
use super::{get_typed, put_back, take_typed, Cmd, Exec, NOT_INT, SYNTAX};
use crate::entry::{AggVal, Bytes, Entry, Kind, ListVal};
use crate::num::parse_i64;
use crate::resp::{write_array_len, write_bulk, write_null, write_ok};
use crate::store::Store;

pub fn write(cmd: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    match cmd {
        Cmd::Ltrim => ltrim(store, x, argv),
        Cmd::Lrem => lrem(store, x, argv),
        Cmd::Linsert => linsert(store, x, argv),
        Cmd::Rpoplpush => lmove(store, x, argv[1], argv[2], false, true),
        _ => {
            let side = |a: &[u8]| match () {
                _ if a.eq_ignore_ascii_case(b"left") => Some(true),
                _ if a.eq_ignore_ascii_case(b"right") => Some(false),
                _ => None,
            };
            match (side(argv[3]), side(argv[4])) {
                (Some(from_left), Some(to_left)) => lmove(store, x, argv[1], argv[2], from_left, to_left),
                _ => x.err(SYNTAX),
            }
        }
    }
}

/// LTRIM key start stop
fn ltrim(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(start) = x.int_arg(argv[2]) else { return };
    let Some(end) = x.int_arg(argv[3]) else { return };
    let Ok(found) = take_typed(store, x, argv[1], Kind::List) else { return };
    let Some(mut e) = found else { return write_ok(x.out) };
    let l = list_mut(&mut e);
    match clamp_range(start, end, l.len()) {
        None => l.clear(),
        Some((start, end)) => {
            l.truncate(end + 1);
            l.drain(..start);
        }
    }
    put_back(store, e);
    write_ok(x.out);
}

/// LREM key count element
fn lrem(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(count) = x.int_arg(argv[2]) else { return };
    let Ok(found) = take_typed(store, x, argv[1], Kind::List) else { return };
    let Some(mut e) = found else { return x.int(0) };
    let l = list_mut(&mut e);
    let limit = if count == 0 { usize::MAX } else { count.unsigned_abs().min(usize::MAX as u64) as usize };
    let mut removed = 0;
    if count >= 0 {
        l.retain(|v| {
            let drop = removed < limit && v[..] == *argv[3];
            removed += usize::from(drop);
            !drop
        });
    } else {
        let mut i = l.len();
        while i > 0 && removed < limit {
            i -= 1;
            if l[i][..] == *argv[3] {
                l.remove(i);
                removed += 1;
            }
        }
    }
    put_back(store, e);
    x.int(removed as i64);
}

/// LINSERT key BEFORE|AFTER pivot element
fn linsert(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let after = match argv[2] {
        a if a.eq_ignore_ascii_case(b"after") => true,
        a if a.eq_ignore_ascii_case(b"before") => false,
        _ => return x.err(SYNTAX),
    };
    let Ok(found) = take_typed(store, x, argv[1], Kind::List) else { return };
    let Some(mut e) = found else { return x.int(0) };
    let l = list_mut(&mut e);
    let reply = match l.iter().position(|v| v[..] == *argv[3]) {
        Some(i) => {
            l.insert(i + usize::from(after), Bytes::from(argv[4]));
            l.len() as i64
        }
        None => -1,
    };
    put_back(store, e);
    x.int(reply);
}

/// LMOVE / RPOPLPUSH: pops from one end of `src`, pushes onto one end of
/// `dst` (the same list rotates), replies the element.
fn lmove(store: &mut Store, x: &mut Exec, src: &[u8], dst: &[u8], from_left: bool, to_left: bool) {
    let Ok(found) = get_typed(store, x, src, Kind::List) else { return };
    if found.is_none() {
        return write_null(x.out);
    }
    if get_typed(store, x, dst, Kind::List).is_err() {
        return;
    }
    let Ok(Some(mut from)) = take_typed(store, x, src, Kind::List) else { unreachable!("checked above") };
    let l = list_mut(&mut from);
    let v = if from_left { l.pop_front() } else { l.pop_back() }.expect("a stored list is never empty");
    let push = |e: &mut Entry| {
        let l = list_mut(e);
        if to_left {
            l.push_front(v.clone());
        } else {
            l.push_back(v.clone());
        }
    };
    if src == dst {
        push(&mut from);
        store.put(from);
    } else {
        put_back(store, from);
        let mut to = match take_typed(store, x, dst, Kind::List) {
            Ok(Some(e)) => e,
            Ok(None) => Entry::aggregate(dst, None, AggVal::List(ListVal::new())),
            Err(_) => unreachable!("checked above"),
        };
        push(&mut to);
        store.put(to);
    }
    write_bulk(x.out, &v);
}

/// LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]
pub fn lpos(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let (mut rank, mut count, mut maxlen) = (1i64, None::<usize>, 0usize);
    let mut j = 3;
    while j < argv.len() {
        let more = j + 1 < argv.len();
        let opt = argv[j];
        if more && opt.eq_ignore_ascii_case(b"rank") {
            match parse_i64(argv[j + 1]) {
                None => return x.err(NOT_INT),
                Some(0) => return x.err(
                    b"ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ),
                Some(r) => rank = r,
            }
        } else if more && (opt.eq_ignore_ascii_case(b"count") || opt.eq_ignore_ascii_case(b"maxlen")) {
            let is_count = opt.eq_ignore_ascii_case(b"count");
            match parse_i64(argv[j + 1]) {
                Some(n) if n >= 0 => {
                    let n = usize::try_from(n).unwrap_or(usize::MAX);
                    if is_count {
                        count = Some(n);
                    } else {
                        maxlen = n;
                    }
                }
                _ if is_count => return x.err(b"ERR COUNT can't be negative"),
                _ => return x.err(b"ERR MAXLEN can't be negative"),
            }
        } else {
            return x.err(SYNTAX);
        }
        j += 2;
    }
    let Ok(e) = get_typed(store, x, argv[1], Kind::List) else { return };
    let Some(Some(AggVal::List(l))) = e.map(|e| e.agg()) else {
        return match count {
            Some(_) => write_array_len(x.out, 0),
            None => write_null(x.out),
        };
    };
    let wanted = match count {
        Some(0) => usize::MAX,
        Some(n) => n,
        None => 1,
    };
    let len = l.len();
    let scan = if maxlen == 0 { len } else { maxlen.min(len) };
    // Redis 7.0 negates a negative rank in a C long: i64::MIN stays
    // negative and every match counts, from the tail (as rank -1).
    let mut skip = if rank == i64::MIN { 0 } else { rank.unsigned_abs() - 1 };
    let mut found = Vec::new();
    for k in 0..scan {
        let i = if rank > 0 { k } else { len - 1 - k };
        if l[i][..] == *argv[2] {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            found.push(i);
            if found.len() >= wanted {
                break;
            }
        }
    }
    match count {
        Some(_) => {
            write_array_len(x.out, found.len());
            for i in found {
                x.int(i as i64);
            }
        }
        None => match found.first() {
            Some(i) => x.int(*i as i64),
            None => write_null(x.out),
        },
    }
}
