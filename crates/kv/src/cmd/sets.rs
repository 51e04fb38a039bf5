//! Set commands (Redis 7.0's `t_set.c`).

use super::{get_typed, put_back, take_typed, Cmd, Exec};
use crate::encoding;
use crate::entry::{AggVal, Entry, Kind, SetVal};
use crate::resp::{write_array_len, write_bulk};
use crate::store::Store;

fn set(e: &Entry) -> &SetVal {
    match e.agg() {
        Some(AggVal::Set(s)) => s,
        _ => unreachable!("entry type checked by get_typed/take_typed"),
    }
}

fn set_mut(e: &mut Entry) -> &mut SetVal {
    match e.agg_mut() {
        Some(AggVal::Set(s)) => s,
        _ => unreachable!("entry type checked by take_typed"),
    }
}

pub fn read(cmd: Cmd, store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let Ok(e) = get_typed(store, x, argv[1], Kind::Set) else { return };
    let s = e.map(set);
    match cmd {
        Cmd::Scard => x.int(s.map_or(0, SetVal::len) as i64),
        Cmd::Sismember => x.int(i64::from(s.is_some_and(|s| s.contains(argv[2])))),
        Cmd::Smismember => {
            write_array_len(x.out, argv.len() - 2);
            for m in &argv[2..] {
                x.int(i64::from(s.is_some_and(|s| s.contains(*m))));
            }
        }
        Cmd::Smembers => {
            write_array_len(x.out, s.map_or(0, SetVal::len));
            for m in s.into_iter().flatten() {
                write_bulk(x.out, m);
            }
        }
        _ => x.err(b"ERR internal: not a set read"),
    }
}

pub fn write(cmd: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Ok(found) = take_typed(store, x, argv[1], Kind::Set) else { return };
    let mut e = match found {
        Some(e) => e,
        None if cmd == Cmd::Srem => return x.int(0),
        None => Entry::aggregate(argv[1], None, AggVal::Set(SetVal::default())),
    };
    let s = set_mut(&mut e);
    let changed = if cmd == Cmd::Sadd {
        argv[2..].iter().filter(|m| s.insert((**m).into())).count()
    } else {
        argv[2..].iter().filter(|m| s.remove(**m)).count()
    };
    if cmd == Cmd::Sadd {
        encoding::set_added(&mut e, &argv[2..]);
    }
    put_back(store, e);
    x.int(changed as i64);
}
