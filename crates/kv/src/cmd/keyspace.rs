//! Commands on keys whatever their type: existence, deletion, renaming,
//! expiry, KEYS and FLUSHALL (Redis 7.0's `db.c` and `expire.c`).

use super::{Cmd, Exec, NO_SUCH_KEY, SYNTAX};
use crate::entry::Entry;
use crate::num::glob_match;
use crate::resp::{write_array_len, write_bulk, write_ok, write_simple};
use crate::store::{is_live, Store};

pub fn exists(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let n = argv[1..].iter().filter(|k| store.get(k, x.clock).is_some()).count();
    x.int(n as i64);
}

pub fn del(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let n = argv[1..].iter().filter(|k| store.take(k, x.clock).is_some()).count();
    x.int(n as i64);
}

pub fn type_(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let name = store.get(argv[1], x.clock).map_or("none", |e| e.kind().name());
    write_simple(x.out, name.as_bytes());
}

/// TTL, PTTL, EXPIRETIME, PEXPIRETIME (Redis's `ttlGenericCommand`).
pub fn ttl(cmd: Cmd, store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(e) = store.get(argv[1], x.clock) else { return x.int(-2) };
    let Some(expire) = e.expire() else { return x.int(-1) };
    let absolute = matches!(cmd, Cmd::Expiretime | Cmd::Pexpiretime);
    let ms = if absolute { expire as i64 } else { (expire as i64).saturating_sub(x.clock.now_ms() as i64).max(0) };
    let in_ms = matches!(cmd, Cmd::Pttl | Cmd::Pexpiretime);
    x.int(if in_ms { ms } else { (ms + 500) / 1000 });
}

pub fn keys(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let pattern = argv[1];
    let all = pattern == b"*";
    let mut found: Vec<&[u8]> = Vec::new();
    for shard in store.shards() {
        for e in shard.entries() {
            if (all || glob_match(pattern, e.key(), false)) && is_live(e, x.clock) {
                found.push(e.key());
            }
        }
    }
    write_array_len(x.out, found.len());
    for k in found {
        write_bulk(x.out, k);
    }
}

// Condition flags of EXPIRE and friends.
const NX: u8 = 1;
const XX: u8 = 2;
const GT: u8 = 4;
const LT: u8 = 8;

/// Redis's `parseExtendedExpireArgumentsOrReply`.
fn expire_flags(x: &mut Exec, opts: &[&[u8]]) -> Option<u8> {
    let mut flags = 0;
    for opt in opts {
        let f =
            [(NX, "nx"), (XX, "xx"), (GT, "gt"), (LT, "lt")].into_iter().find(|(_, n)| opt.eq_ignore_ascii_case(n.as_bytes()));
        match f {
            Some((f, _)) => flags |= f,
            None => {
                let mut msg = b"ERR Unsupported option ".to_vec();
                msg.extend_from_slice(c_str(opt));
                x.err(&msg);
                return None;
            }
        }
    }
    if flags & NX != 0 && flags & (XX | GT | LT) != 0 {
        x.err(b"ERR NX and XX, GT or LT options at the same time are not compatible");
        return None;
    }
    if flags & GT != 0 && flags & LT != 0 {
        x.err(b"ERR GT and LT options at the same time are not compatible");
        return None;
    }
    Some(flags)
}

/// An argument as C's `%s` prints it: up to the first NUL.
pub fn c_str(b: &[u8]) -> &[u8] {
    b.iter().position(|&c| c == 0).map_or(b, |z| &b[..z])
}

/// Whether the condition flags let the new expiry `when` replace `current`.
fn expire_allowed(flags: u8, current: Option<u64>, when: i64) -> bool {
    let cur = current.map(|c| c as i64);
    !((flags & NX != 0 && cur.is_some())
        || (flags & XX != 0 && cur.is_none())
        || (flags & GT != 0 && cur.is_none_or(|c| when <= c))
        || (flags & LT != 0 && cur.is_some_and(|c| when >= c)))
}

/// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (Redis's `expireGenericCommand`).
pub fn expire(cmd: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(flags) = expire_flags(x, &argv[3..]) else { return };
    let Some(mut when) = x.int_arg(argv[2]) else { return };
    let name = cmd.spec().name;
    let invalid = |x: &mut Exec| x.err(format!("ERR invalid expire time in '{name}' command").as_bytes());
    if matches!(cmd, Cmd::Expire | Cmd::Expireat) {
        match when.checked_mul(1000) {
            Some(ms) => when = ms,
            None => return invalid(x),
        }
    }
    if matches!(cmd, Cmd::Expire | Cmd::Pexpire) {
        match when.checked_add(x.clock.now_ms() as i64) {
            Some(t) => when = t,
            None => return invalid(x),
        }
    }
    let key = argv[1];
    let Some(e) = store.get(key, x.clock) else {
        store.take_any(key); // an expired entry is reclaimed, as lookupKeyWrite does
        return x.int(0);
    };
    if !expire_allowed(flags, e.expire(), when) {
        return x.int(0);
    }
    let e = store.take_any(key).expect("entry seen above");
    if when <= x.clock.now_ms() as i64 {
        // Already in the past: the key is deleted (Redis's checkAlreadyExpired).
        return x.int(1);
    }
    store.put(e.with_expire(Some(when as u64)));
    x.int(1);
}

pub fn persist(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let key = argv[1];
    match store.get(key, x.clock).map(Entry::expire) {
        Some(Some(_)) => {
            let e = store.take_any(key).expect("entry seen above");
            store.put(e.with_expire(None));
            x.int(1);
        }
        _ => x.int(0),
    }
}

/// FLUSHALL / FLUSHDB [SYNC|ASYNC]: both drop every key (one database).
pub fn flush(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let ok = match argv.len() {
        1 => true,
        2 => argv[1].eq_ignore_ascii_case(b"sync") || argv[1].eq_ignore_ascii_case(b"async"),
        _ => false,
    };
    if !ok {
        return x.err(SYNTAX);
    }
    store.clear();
    write_ok(x.out);
}

/// RENAME / RENAMENX: the value moves with its expiry.
pub fn rename(cmd: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let nx = cmd == Cmd::Renamenx;
    let (src, dst) = (argv[1], argv[2]);
    if !store.exists_for_write(src, x.clock) {
        return x.err(NO_SUCH_KEY);
    }
    let reply = |x: &mut Exec, done: bool| match (nx, done) {
        (true, d) => x.int(i64::from(d)),
        (false, _) => write_ok(x.out),
    };
    if src == dst {
        return reply(x, false);
    }
    if store.exists_for_write(dst, x.clock) && nx {
        return reply(x, false);
    }
    let e = store.take_any(src).expect("source seen above");
    store.put(e.with_key(dst));
    reply(x, true);
}
