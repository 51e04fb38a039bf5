//! String commands, following Redis 7.0's `t_string.c` step by step so that
//! replies (and the order in which errors are detected) match.

use super::{Cmd, Exec, NOT_INT, OVERFLOW, STRING_BYTES_MAX, SYNTAX, WRONGTYPE};
use crate::entry::{Entry, Kind, StrEncoding};
use crate::resp::{write_array_len, write_bulk, write_null, write_ok};
use crate::store::Store;

// Option flags of SET/GETEX, as Redis's OBJ_* bits.
const NX: u32 = 1;
const XX: u32 = 1 << 1;
const EX: u32 = 1 << 2;
const PX: u32 = 1 << 3;
const KEEPTTL: u32 = 1 << 4;
const GET: u32 = 1 << 5;
const EXAT: u32 = 1 << 6;
const PXAT: u32 = 1 << 7;
const PERSIST: u32 = 1 << 8;
const ANY_EXPIRE: u32 = EX | PX | EXAT | PXAT;

/// Parsed options of SET (`for_set`) or GETEX.
struct Opts<'a> {
    flags: u32,
    expire: Option<&'a [u8]>,
}

/// Redis's `parseExtendedStringArgumentsOrReply`, including which options
/// may be combined and which repeat.
fn parse_opts<'a>(argv: &[&'a [u8]], from: usize, for_set: bool) -> Option<Opts<'a>> {
    let mut o = Opts { flags: 0, expire: None };
    let mut j = from;
    while j < argv.len() {
        let opt = argv[j];
        let next = argv.get(j + 1).copied();
        let f = o.flags;
        let is = |name: &str| opt.eq_ignore_ascii_case(name.as_bytes());
        let no_ttl_opts = |except: u32| f & (KEEPTTL | PERSIST | (ANY_EXPIRE & !except)) == 0;
        if is("nx") && f & XX == 0 && for_set {
            o.flags |= NX;
        } else if is("xx") && f & NX == 0 && for_set {
            o.flags |= XX;
        } else if is("get") && for_set {
            o.flags |= GET;
        } else if is("keepttl") && f & (PERSIST | ANY_EXPIRE) == 0 && for_set {
            o.flags |= KEEPTTL;
        } else if is("persist") && !for_set && f & (ANY_EXPIRE | KEEPTTL) == 0 {
            o.flags |= PERSIST;
        } else if let Some(flag) = expire_flag(opt).filter(|&fl| no_ttl_opts(fl) && next.is_some()) {
            o.flags |= flag;
            o.expire = next;
            j += 1;
        } else {
            return None;
        }
        j += 1;
    }
    Some(o)
}

fn expire_flag(opt: &[u8]) -> Option<u32> {
    [(EX, "ex"), (PX, "px"), (EXAT, "exat"), (PXAT, "pxat")]
        .into_iter()
        .find(|(_, n)| opt.eq_ignore_ascii_case(n.as_bytes()))
        .map(|(f, _)| f)
}

/// Redis's `getExpireMillisecondsOrReply`: the absolute expiry in ms.
fn expire_ms(x: &mut Exec, arg: &[u8], flags: u32, name: &str) -> Option<u64> {
    let v = x.int_arg(arg)?;
    let seconds = flags & (EX | EXAT) != 0;
    let invalid = |x: &mut Exec| {
        x.err(format!("ERR invalid expire time in '{name}' command").as_bytes());
        None
    };
    if v <= 0 || (seconds && v > i64::MAX / 1000) {
        return invalid(x);
    }
    let mut ms = if seconds { v * 1000 } else { v };
    if flags & (EX | PX) != 0 {
        match ms.checked_add(x.clock.now_ms() as i64) {
            Some(t) => ms = t,
            None => return invalid(x),
        }
    }
    Some(ms as u64)
}

/// Writes the string value of `key` (null if absent); false after a
/// WRONGTYPE error (Redis's `getGenericCommand`).
fn reply_value(store: &Store, x: &mut Exec, key: &[u8]) -> bool {
    match store.get(key, x.clock) {
        None => write_null(x.out),
        Some(e) => match e.str_value() {
            Some(v) => write_bulk(x.out, v),
            None => {
                x.err(WRONGTYPE);
                return false;
            }
        },
    }
    true
}

pub fn get(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    reply_value(store, x, argv[1]);
}

pub fn mget(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    write_array_len(x.out, argv.len() - 1);
    for key in &argv[1..] {
        match store.get(key, x.clock).and_then(|e| e.str_value()) {
            Some(v) => write_bulk(x.out, v),
            None => write_null(x.out),
        }
    }
}

pub fn strlen(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    match store.get(argv[1], x.clock) {
        None => x.int(0),
        Some(e) => match e.str_value() {
            Some(v) => x.int(v.len() as i64),
            None => x.err(WRONGTYPE),
        },
    }
}

pub fn getrange(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(mut start) = x.int_arg(argv[2]) else { return };
    let Some(mut end) = x.int_arg(argv[3]) else { return };
    let v = match store.get(argv[1], x.clock) {
        None => return write_bulk(x.out, b""),
        Some(e) => match e.str_value() {
            Some(v) => v,
            None => return x.err(WRONGTYPE),
        },
    };
    let len = v.len() as i64;
    if start < 0 && end < 0 && start > end {
        return write_bulk(x.out, b"");
    }
    if start < 0 {
        start = (len + start).max(0);
    }
    if end < 0 {
        end = (len + end).max(0);
    }
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        write_bulk(x.out, b"");
    } else {
        write_bulk(x.out, &v[start as usize..=end as usize]);
    }
}

/// SET, SETNX, SETEX, PSETEX, GETSET, GETDEL and GETEX.
pub fn set_family(cmd: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let name = cmd.spec().name;
    match cmd {
        Cmd::Set => {
            // The benchmark path: no options, no clock, one table probe.
            if argv.len() == 3 {
                store.put(Entry::string(argv[1], argv[2], None));
                return write_ok(x.out);
            }
            let Some(o) = parse_opts(argv, 3, true) else { return x.err(SYNTAX) };
            set_generic(store, x, o, argv[1], argv[2], name, false);
        }
        Cmd::Setnx => set_generic(store, x, Opts { flags: NX, expire: None }, argv[1], argv[2], name, true),
        Cmd::Setex | Cmd::Psetex => {
            let flags = if cmd == Cmd::Setex { EX } else { PX };
            set_generic(store, x, Opts { flags, expire: Some(argv[2]) }, argv[1], argv[3], name, false)
        }
        Cmd::Getset => set_generic(store, x, Opts { flags: GET, expire: None }, argv[1], argv[2], name, false),
        Cmd::Getdel => {
            if reply_value(store, x, argv[1]) {
                store.take(argv[1], x.clock);
            }
        }
        _ => getex(store, x, argv),
    }
}

/// Redis's `setGenericCommand`. `int_reply`: SETNX's `:1`/`:0` instead of
/// `+OK`/null.
fn set_generic(store: &mut Store, x: &mut Exec, o: Opts, key: &[u8], val: &[u8], name: &str, int_reply: bool) {
    let when = match o.expire {
        Some(arg) => match expire_ms(x, arg, o.flags, name) {
            Some(t) => Some(t),
            None => return,
        },
        None => None,
    };
    let get = o.flags & GET != 0;
    if get && !reply_value(store, x, key) {
        return;
    }
    let found = store.exists_for_write(key, x.clock);
    if (o.flags & NX != 0 && found) || (o.flags & XX != 0 && !found) {
        if !get {
            if int_reply {
                x.int(0);
            } else {
                write_null(x.out);
            }
        }
        return;
    }
    let keep = if o.flags & KEEPTTL != 0 && found { store.get_any(key).and_then(Entry::expire) } else { None };
    store.put(Entry::string(key, val, when.or(keep)));
    if !get {
        if int_reply {
            x.int(1);
        } else {
            write_ok(x.out);
        }
    }
}

fn getex(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(o) = parse_opts(argv, 2, false) else { return x.err(SYNTAX) };
    let key = argv[1];
    match store.get(key, x.clock) {
        None => return write_null(x.out),
        Some(e) if e.kind() != Kind::String => return x.err(WRONGTYPE),
        Some(_) => {}
    }
    let when = match o.expire {
        Some(arg) => match expire_ms(x, arg, o.flags, "getex") {
            Some(t) => Some(t),
            None => return,
        },
        None => None,
    };
    reply_value(store, x, key);
    let absolute = o.flags & (EXAT | PXAT) != 0;
    if let Some(t) = when {
        if absolute && t <= x.clock.now_ms() {
            store.take_any(key);
        } else if let Some(e) = store.take_any(key) {
            store.put(e.with_expire(Some(t)));
        }
    } else if o.flags & PERSIST != 0 {
        if let Some(e) = store.take_any(key) {
            store.put(e.with_expire(None));
        }
    }
}

pub fn mset(cmd: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    if argv.len().is_multiple_of(2) {
        return x.arity_err(cmd.spec().name);
    }
    let pairs = argv[1..].chunks_exact(2);
    if cmd == Cmd::Msetnx && pairs.clone().any(|p| store.exists_for_write(p[0], x.clock)) {
        return x.int(0);
    }
    for p in pairs {
        store.put(Entry::string(p[0], p[1], None));
    }
    if cmd == Cmd::Msetnx {
        x.int(1);
    } else {
        write_ok(x.out);
    }
}

/// INCR, INCRBY, DECR, DECRBY: keep the key's expiry, as Redis does.
pub fn incr(cmd: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let by = match cmd {
        Cmd::Incr => 1,
        Cmd::Decr => -1,
        _ => {
            let Some(v) = x.int_arg(argv[2]) else { return };
            if cmd == Cmd::Incrby {
                v
            } else if v == i64::MIN {
                return x.err(b"ERR decrement would overflow");
            } else {
                -v
            }
        }
    };
    let key = argv[1];
    let (old, expire) = match store.get(key, x.clock) {
        None => (0, None),
        Some(e) => match e.str_value() {
            None => return x.err(WRONGTYPE),
            Some(v) => match crate::num::parse_i64(v) {
                Some(n) => (n, e.expire()),
                None => return x.err(NOT_INT),
            },
        },
    };
    let Some(new) = old.checked_add(by) else { return x.err(OVERFLOW) };
    let mut buf = [0u8; 20];
    store.put(Entry::string(key, crate::num::format_i64(&mut buf, new), expire));
    x.int(new);
}

fn too_long(x: &mut Exec, total: u64) -> bool {
    if total > STRING_BYTES_MAX {
        x.err(b"ERR string exceeds maximum allowed size (proto-max-bulk-len)");
        return true;
    }
    false
}

pub fn append(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let (key, add) = (argv[1], argv[2]);
    let new = match store.get(key, x.clock) {
        None => Entry::string(key, add, None),
        Some(e) => {
            let Some(v) = e.str_value() else { return x.err(WRONGTYPE) };
            if too_long(x, v.len() as u64 + add.len() as u64) {
                return;
            }
            // Redis appends in place to a raw copy (dbUnshareStringValue).
            Entry::string_with(key, e.expire(), v.len() + add.len(), |b| {
                b.extend_from_slice(v);
                b.extend_from_slice(add);
            })
            .with_str_encoding(StrEncoding::Raw)
        }
    };
    let len = new.str_value().map_or(0, <[u8]>::len);
    store.put(new);
    x.int(len as i64);
}

pub fn setrange(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(offset) = x.int_arg(argv[2]) else { return };
    if offset < 0 {
        return x.err(b"ERR offset is out of range");
    }
    let (key, patch, offset) = (argv[1], argv[3], offset as u64);
    let old = match store.get(key, x.clock) {
        None => None,
        Some(e) => match e.str_value() {
            None => return x.err(WRONGTYPE),
            Some(v) => Some((v, e.expire())),
        },
    };
    if patch.is_empty() {
        return x.int(old.map_or(0, |(v, _)| v.len() as i64));
    }
    if too_long(x, offset + patch.len() as u64) {
        return;
    }
    let (v, expire) = old.unwrap_or((b"", None));
    let off = offset as usize;
    let len = v.len().max(off + patch.len());
    let new = Entry::string_with(key, expire, len, |b| {
        let start = b.len();
        b.extend_from_slice(v);
        b.resize(start + len, 0);
        b[start + off..start + off + patch.len()].copy_from_slice(patch);
    });
    store.put(new.with_str_encoding(StrEncoding::Raw));
    x.int(len as i64);
}
