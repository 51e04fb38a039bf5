//! List commands (Redis 7.0's `t_list.c`), including the `count` argument
//! of LPOP/RPOP.

use super::{get_typed, put_back, take_typed, Cmd, Exec, NOT_INT, NO_SUCH_KEY};
use crate::entry::{AggVal, Entry, Kind, ListVal};
use crate::resp::{write_array_len, write_bulk, write_null, write_null_array, write_ok};
use crate::store::Store;

fn list(e: &Entry) -> &ListVal {
    match e.agg() {
        Some(AggVal::List(l)) => l,
        _ => unreachable!("entry type checked by get_typed/take_typed"),
    }
}

pub(super) fn list_mut(e: &mut Entry) -> &mut ListVal {
    match e.agg_mut() {
        Some(AggVal::List(l)) => l,
        _ => unreachable!("entry type checked by take_typed"),
    }
}

/// A possibly negative index from the tail, resolved as Redis does.
fn resolve(index: i64, len: usize) -> Option<usize> {
    let i = if index < 0 { len as i64 + index } else { index };
    (0..len as i64).contains(&i).then_some(i as usize)
}

pub fn read(cmd: Cmd, store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    match cmd {
        Cmd::Llen => {
            if let Ok(e) = get_typed(store, x, argv[1], Kind::List) {
                x.int(e.map_or(0, |e| list(e).len()) as i64);
            }
        }
        Cmd::Lindex => {
            let Ok(e) = get_typed(store, x, argv[1], Kind::List) else { return };
            let Some(e) = e else { return write_null(x.out) };
            let Some(index) = x.int_arg(argv[2]) else { return };
            let l = list(e);
            match resolve(index, l.len()) {
                Some(i) => write_bulk(x.out, &l[i]),
                None => write_null(x.out),
            }
        }
        Cmd::Lrange => {
            let Some(start) = x.int_arg(argv[2]) else { return };
            let Some(end) = x.int_arg(argv[3]) else { return };
            let Ok(e) = get_typed(store, x, argv[1], Kind::List) else { return };
            let Some(e) = e else { return write_array_len(x.out, 0) };
            write_range(x.out, list(e), start, end, false);
        }
        _ => x.err(b"ERR internal: not a list read"),
    }
}

/// `start..=end` of a list of `len` (negative from the tail), clamped as
/// LRANGE and LTRIM do; None when nothing is in range.
pub(super) fn clamp_range(mut start: i64, mut end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    if start > end || start >= len {
        return None;
    }
    Some((start as usize, end.min(len - 1) as usize))
}

/// Redis's `addListRangeReply`: elements `start..=end` (negative from the
/// tail), clamped; `reverse` walks from the end of the range.
fn write_range(out: &mut Vec<u8>, l: &ListVal, start: i64, end: i64, reverse: bool) {
    let Some((start, end)) = clamp_range(start, end, l.len()) else { return write_array_len(out, 0) };
    let range = l.range(start..=end);
    write_array_len(out, end - start + 1);
    if reverse {
        range.rev().for_each(|v| write_bulk(out, v));
    } else {
        range.for_each(|v| write_bulk(out, v));
    }
}

pub fn write(cmd: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    match cmd {
        Cmd::Lpush | Cmd::Rpush | Cmd::Lpushx | Cmd::Rpushx => push(cmd, store, x, argv),
        Cmd::Lpop | Cmd::Rpop => pop(cmd == Cmd::Lpop, store, x, argv),
        _ => lset(store, x, argv),
    }
}

fn push(cmd: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Ok(found) = take_typed(store, x, argv[1], Kind::List) else { return };
    let mut e = match found {
        Some(e) => e,
        None if matches!(cmd, Cmd::Lpushx | Cmd::Rpushx) => return x.int(0),
        None => Entry::aggregate(argv[1], None, AggVal::List(ListVal::new())),
    };
    let l = list_mut(&mut e);
    let head = matches!(cmd, Cmd::Lpush | Cmd::Lpushx);
    for v in &argv[2..] {
        if head {
            l.push_front((*v).into());
        } else {
            l.push_back((*v).into());
        }
    }
    let len = l.len();
    put_back(store, e);
    x.int(len as i64);
}

/// LPOP/RPOP key [count] (Redis's `popGenericCommand`).
fn pop(head: bool, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    if argv.len() > 3 {
        return x.arity_err(if head { "lpop" } else { "rpop" });
    }
    // Redis's getPositiveLongFromObjectOrReply: one message for both a
    // non-integer and a negative count.
    let count = match argv.get(2) {
        None => None,
        Some(arg) => match crate::num::parse_i64(arg) {
            Some(n) if n >= 0 => Some(n as u64),
            _ => return x.err(b"ERR value is out of range, must be positive"),
        },
    };
    let Ok(found) = take_typed(store, x, argv[1], Kind::List) else { return };
    let Some(mut e) = found else {
        return if count.is_some() { write_null_array(x.out) } else { write_null(x.out) };
    };
    let l = list_mut(&mut e);
    match count {
        None => {
            let v = if head { l.pop_front() } else { l.pop_back() };
            write_bulk(x.out, &v.expect("stored lists are never empty"));
        }
        Some(n) => {
            let n = n.min(l.len() as u64) as usize;
            write_array_len(x.out, n);
            for _ in 0..n {
                let v = if head { l.pop_front() } else { l.pop_back() };
                write_bulk(x.out, &v.expect("n <= len"));
            }
        }
    }
    put_back(store, e);
}

fn lset(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Ok(found) = take_typed(store, x, argv[1], Kind::List) else { return };
    let Some(mut e) = found else { return x.err(NO_SUCH_KEY) };
    let Some(index) = crate::num::parse_i64(argv[2]) else {
        put_back(store, e);
        return x.err(NOT_INT);
    };
    let l = list_mut(&mut e);
    match resolve(index, l.len()) {
        Some(i) => {
            l[i] = argv[3].into();
            write_ok(x.out);
        }
        None => x.err(b"ERR index out of range"),
    }
    put_back(store, e);
}
