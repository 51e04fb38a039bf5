//! DUMP and RESTORE (Redis 7.0's `cluster.c`), on the serialization of
//! `crate::rdb`.
//!
//! RESTORE is a logged write: the op carries the payload, both replicas
//! decode it alike, and a relative TTL is added to the recorded clock's
//! time, as EXPIRE's is. IDLETIME and FREQ are checked as Redis checks
//! them and otherwise ignored: a restored key's access clock (OBJECT
//! IDLETIME, LRU eviction) starts at the restore, and no frequencies are
//! kept. Streams are not supported either way.

use super::{Exec, NOT_INT, SYNTAX};
use crate::encoding;
use crate::entry::{AggVal, Bytes, Entry, HashVal, ListVal, SetVal, ZsetVal};
use crate::num::parse_i64;
use crate::rdb::{self, LoadError, Value};
use crate::resp::{write_bulk, write_null, write_ok};
use crate::store::Store;

const BUSYKEY: &[u8] = b"BUSYKEY Target key name already exists.";
const BAD_PAYLOAD: &[u8] = b"ERR DUMP payload version or checksum are wrong";
const BAD_FORMAT: &[u8] = b"ERR Bad data format";
const DUMP_STREAM: &[u8] = b"ERR DUMP of a stream is not supported";
const RESTORE_STREAM: &[u8] = b"ERR RESTORE of a stream is not supported";

/// DUMP key: the payload, or nil for a missing key.
pub fn dump(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(e) = store.get(argv[1], x.clock) else { return write_null(x.out) };
    match rdb::dump(e) {
        Some(payload) => write_bulk(x.out, &payload),
        None => x.err(DUMP_STREAM),
    }
}

/// RESTORE key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds]
/// [FREQ frequency], with Redis's order of checks: options, the key's
/// existence, the TTL, the payload's footer, its contents.
pub fn restore(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let (mut replace, mut absttl) = (false, false);
    let (mut idle, mut freq) = (false, false);
    let mut j = 4;
    while j < argv.len() {
        let more = j + 1 < argv.len();
        let opt = argv[j];
        if opt.eq_ignore_ascii_case(b"replace") {
            replace = true;
        } else if opt.eq_ignore_ascii_case(b"absttl") {
            absttl = true;
        } else if opt.eq_ignore_ascii_case(b"idletime") && more && !freq {
            let Some(v) = parse_i64(argv[j + 1]) else { return x.err(NOT_INT) };
            if v < 0 {
                return x.err(b"ERR Invalid IDLETIME value, must be >= 0");
            }
            idle = true;
            j += 1;
        } else if opt.eq_ignore_ascii_case(b"freq") && more && !idle {
            let Some(v) = parse_i64(argv[j + 1]) else { return x.err(NOT_INT) };
            if !(0..=255).contains(&v) {
                return x.err(b"ERR Invalid FREQ value, must be >= 0 and <= 255");
            }
            freq = true;
            j += 1;
        } else {
            return x.err(SYNTAX);
        }
        j += 1;
    }
    let key = argv[1];
    if !replace && store.exists_for_write(key, x.clock) {
        return x.err(BUSYKEY);
    }
    let Some(ttl) = x.int_arg(argv[2]) else { return };
    if ttl < 0 {
        return x.err(b"ERR Invalid TTL value, must be >= 0");
    }
    let payload = argv[3];
    if !rdb::verify_payload(payload) {
        return x.err(BAD_PAYLOAD);
    }
    let value = match rdb::load(payload) {
        Ok(v) => v,
        Err(LoadError::BadFormat) => return x.err(BAD_FORMAT),
        Err(LoadError::Stream) => return x.err(RESTORE_STREAM),
    };
    if replace {
        store.take_any(key);
    }
    let mut expire = None;
    if ttl != 0 {
        let now = x.clock.now_ms() as i64;
        // Redis adds in a C long long; a sum past the range wraps into
        // the past, and the key is not created.
        let when = if absttl { ttl } else { ttl.wrapping_add(now) };
        if when <= now {
            return write_ok(x.out);
        }
        expire = Some(when as u64);
    }
    store.put(entry(key, expire, value));
    write_ok(x.out);
}

/// The entry a restored value becomes; an aggregate's encoding follows
/// its contents, as when Redis loads one.
fn entry(key: &[u8], expire: Option<u64>, value: Value) -> Entry {
    let bytes = |v: Vec<u8>| Bytes::from(v);
    let val = match value {
        Value::String(s) => return Entry::string(key, &s, expire),
        Value::List(items) => AggVal::List(items.into_iter().map(bytes).collect::<ListVal>()),
        Value::Set(members) => AggVal::Set(members.into_iter().map(bytes).collect::<SetVal>()),
        Value::Hash(pairs) => AggVal::Hash(pairs.into_iter().map(|(f, v)| (bytes(f), bytes(v))).collect::<HashVal>()),
        Value::Zset(pairs) => {
            let mut z = ZsetVal::new();
            for (m, s) in pairs {
                z.insert(&m, s);
            }
            AggVal::Zset(z)
        }
    };
    encoding::built(Entry::aggregate(key, expire, val))
}
