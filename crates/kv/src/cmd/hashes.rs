//! Hash commands (Redis 7.0's `t_hash.c`).

use super::{get_typed, put_back, take_typed, Cmd, Exec, OVERFLOW};
use crate::encoding;
use crate::entry::{AggVal, Bytes, Entry, HashVal, Kind};
use crate::resp::{write_array_len, write_bulk, write_null, write_ok};
use crate::store::Store;

/// The conversions of Redis's `hashTypeSet` after HINCRBY or HINCRBYFLOAT
/// stored `value` under `field`: a long field or value, or one field too
/// many, makes the hash a hashtable.
pub fn set_field(e: &mut Entry, field: &[u8], value: &[u8]) {
    encoding::hash_args(e, &[field, value]);
    encoding::hash_grown(e);
}

fn hash(e: &Entry) -> &HashVal {
    match e.agg() {
        Some(AggVal::Hash(h)) => h,
        _ => unreachable!("entry type checked by get_typed/take_typed"),
    }
}

fn hash_mut(e: &mut Entry) -> &mut HashVal {
    match e.agg_mut() {
        Some(AggVal::Hash(h)) => h,
        _ => unreachable!("entry type checked by take_typed"),
    }
}

pub fn read(cmd: Cmd, store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let Ok(e) = get_typed(store, x, argv[1], Kind::Hash) else { return };
    let h = e.map(hash);
    match cmd {
        Cmd::Hget => match h.and_then(|h| h.get(argv[2])) {
            Some(v) => write_bulk(x.out, v),
            None => write_null(x.out),
        },
        Cmd::Hmget => {
            write_array_len(x.out, argv.len() - 2);
            for f in &argv[2..] {
                match h.and_then(|h| h.get(*f)) {
                    Some(v) => write_bulk(x.out, v),
                    None => write_null(x.out),
                }
            }
        }
        Cmd::Hlen => x.int(h.map_or(0, HashVal::len) as i64),
        Cmd::Hexists => x.int(i64::from(h.is_some_and(|h| h.contains_key(argv[2])))),
        Cmd::Hstrlen => x.int(h.and_then(|h| h.get(argv[2])).map_or(0, |v| v.len()) as i64),
        Cmd::Hgetall => {
            write_array_len(x.out, 2 * h.map_or(0, HashVal::len));
            for (f, v) in h.into_iter().flatten() {
                write_bulk(x.out, f);
                write_bulk(x.out, v);
            }
        }
        Cmd::Hkeys | Cmd::Hvals => {
            write_array_len(x.out, h.map_or(0, HashVal::len));
            for (f, v) in h.into_iter().flatten() {
                write_bulk(x.out, if cmd == Cmd::Hkeys { f } else { v });
            }
        }
        _ => x.err(b"ERR internal: not a hash read"),
    }
}

pub fn write(cmd: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    match cmd {
        Cmd::Hset | Cmd::Hmset => hset(cmd, store, x, argv),
        Cmd::Hsetnx => hsetnx(store, x, argv),
        Cmd::Hdel => hdel(store, x, argv),
        _ => hincrby(store, x, argv),
    }
}

/// Redis's `hashTypeLookupWriteOrCreate`: the hash to change, new if absent.
fn take_or_create(store: &mut Store, x: &mut Exec, key: &[u8]) -> Option<Entry> {
    match take_typed(store, x, key, Kind::Hash) {
        Err(_) => None,
        Ok(Some(e)) => Some(e),
        Ok(None) => Some(Entry::aggregate(key, None, AggVal::Hash(HashVal::default()))),
    }
}

fn hset(cmd: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    if !argv.len().is_multiple_of(2) {
        return x.arity_err(cmd.spec().name);
    }
    let Some(mut e) = take_or_create(store, x, argv[1]) else { return };
    encoding::hash_args(&mut e, &argv[2..]);
    let h = hash_mut(&mut e);
    let mut created = 0;
    for pair in argv[2..].chunks_exact(2) {
        if h.insert(Bytes::from(pair[0]), Bytes::from(pair[1])).is_none() {
            created += 1;
        }
    }
    encoding::hash_grown(&mut e);
    put_back(store, e);
    if cmd == Cmd::Hset {
        x.int(created);
    } else {
        write_ok(x.out);
    }
}

fn hsetnx(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(mut e) = take_or_create(store, x, argv[1]) else { return };
    let h = hash_mut(&mut e);
    let added = !h.contains_key(argv[2]);
    if added {
        h.insert(argv[2].into(), argv[3].into());
        encoding::hash_args(&mut e, &argv[2..4]);
        encoding::hash_grown(&mut e);
    }
    put_back(store, e);
    x.int(i64::from(added));
}

fn hdel(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Ok(found) = take_typed(store, x, argv[1], Kind::Hash) else { return };
    let Some(mut e) = found else { return x.int(0) };
    let h = hash_mut(&mut e);
    let deleted = argv[2..].iter().filter(|f| h.remove(**f).is_some()).count();
    put_back(store, e);
    x.int(deleted as i64);
}

fn hincrby(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(by) = x.int_arg(argv[3]) else { return };
    let Some(mut e) = take_or_create(store, x, argv[1]) else { return };
    let h = hash_mut(&mut e);
    let old = match h.get(argv[2]) {
        None => Some(0),
        Some(v) => crate::num::parse_i64(v),
    };
    let result = match old {
        None => Err(&b"ERR hash value is not an integer"[..]),
        Some(old) => old.checked_add(by).ok_or(OVERFLOW),
    };
    if let Ok(new) = result {
        let mut buf = [0u8; 20];
        let digits = crate::num::format_i64(&mut buf, new);
        h.insert(argv[2].into(), digits.into());
        set_field(&mut e, argv[2], digits);
    }
    put_back(store, e);
    match result {
        Ok(new) => x.int(new),
        Err(msg) => x.err(msg),
    }
}
