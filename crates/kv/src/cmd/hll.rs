//! PFADD, PFCOUNT and PFMERGE (Redis 7.0's `hyperloglog.c` commands) over
//! HLL strings kept in [`crate::hll`]'s encoding.
//!
//! An HLL is an ordinary string entry: the commands copy its bytes out,
//! work on the copy and store a new entry only when Redis would have
//! changed the value, so a PFADD that changes nothing neither rewrites the
//! key nor disturbs a WATCH. PFCOUNT of one key stores the cardinality it
//! computes in the header, as Redis does, which is why it is a logged
//! write here although its flags say `readonly`.

use super::{Exec, WRONGTYPE};
use crate::entry::{Entry, StrEncoding};
use crate::hll::{self, REGISTERS};
use crate::resp::write_ok;
use crate::store::Store;

const INVALID: &[u8] = b"INVALIDOBJ Corrupted HLL object detected";
const NOT_HLL: &[u8] = b"WRONGTYPE Key is not a valid HyperLogLog string value.";

/// A found HLL: its bytes and expiry.
struct Found {
    bytes: Vec<u8>,
    expire: Option<u64>,
}

/// Redis's lookup + `isHLLObjectOrReply`: `Ok(None)` if absent, `Err(())`
/// after replying WRONGTYPE (not a string, or not an HLL).
fn lookup(store: &Store, x: &mut Exec, key: &[u8]) -> Result<Option<Found>, ()> {
    let Some(e) = store.get(key, x.clock) else { return Ok(None) };
    let Some(v) = e.str_value() else {
        x.err(WRONGTYPE);
        return Err(());
    };
    if !hll::looks_valid(v) {
        x.err(NOT_HLL);
        return Err(());
    }
    Ok(Some(Found { bytes: v.to_vec(), expire: e.expire() }))
}

/// Stores `bytes` as the value of `key`, as Redis's unshared (`raw`)
/// string.
fn store_value(store: &mut Store, key: &[u8], bytes: &[u8], expire: Option<u64>) {
    let e = Entry::string_with(key, expire, bytes.len(), |b| b.extend_from_slice(bytes));
    store.put(e.with_str_encoding(StrEncoding::Raw));
}

/// PFADD key [element ...]: 1 if a register changed or the key was
/// created, else 0.
pub fn pfadd(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let key = argv[1];
    let Ok(found) = lookup(store, x, key) else { return };
    let (mut v, expire, mut updated) = match found {
        Some(f) => (f.bytes, f.expire, false),
        None => (hll::new_sparse(), None, true),
    };
    let mut changed = updated;
    for ele in &argv[2..] {
        match hll::add(&mut v, ele) {
            Ok(true) => {
                updated = true;
                changed = true;
            }
            Ok(false) => {}
            Err(hll::Corrupt) => {
                // What was added before the corruption was found stays,
                // as in Redis's in-place update.
                if changed {
                    store_value(store, key, &v, expire);
                }
                return x.err(INVALID);
            }
        }
    }
    if updated {
        hll::invalidate(&mut v);
        store_value(store, key, &v, expire);
    }
    x.int(i64::from(updated));
}

/// PFCOUNT key [key ...], the logged form: one key's count is cached in
/// its header when it was stale.
pub fn pfcount(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    if argv.len() > 2 {
        return pfcount_union(store, x, &argv[1..]);
    }
    let key = argv[1];
    let Ok(found) = lookup(store, x, key) else { return };
    let Some(Found { mut bytes, expire }) = found else { return x.int(0) };
    if let Some(card) = hll::cached(&bytes) {
        return x.int(card as i64);
    }
    let Ok(card) = hll::count(&bytes) else { return x.err(INVALID) };
    hll::set_cache(&mut bytes, card);
    store_value(store, key, &bytes, expire);
    x.int(card as i64);
}

/// The registers' maximum over `keys` (absent ones count as empty), and
/// whether one of them was dense. `None` after an error reply.
fn union(store: &Store, x: &mut Exec, keys: &[&[u8]]) -> Option<(Box<[u8; REGISTERS]>, bool)> {
    let mut max = Box::new([0u8; REGISTERS]);
    let mut dense = false;
    for key in keys {
        let Ok(found) = lookup(store, x, key) else { return None };
        let Some(f) = found else { continue };
        dense |= f.bytes[4] == hll::DENSE;
        if hll::merge_into(&mut max, &f.bytes).is_err() {
            x.err(INVALID);
            return None;
        }
    }
    Some((max, dense))
}

/// PFCOUNT of several keys: the estimate of their union, nothing cached.
fn pfcount_union(store: &Store, x: &mut Exec, keys: &[&[u8]]) {
    if let Some((max, _)) = union(store, x, keys) {
        x.int(hll::count_raw(&max) as i64);
    }
}

/// PFMERGE destkey [sourcekey ...]: the destination (one of the inputs)
/// gets every register's maximum; it turns dense if any input is dense.
pub fn pfmerge(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some((max, use_dense)) = union(store, x, &argv[1..]) else { return };
    let key = argv[1];
    // Checked by the union above: absent or an HLL.
    let (mut v, expire) = match lookup(store, x, key) {
        Ok(Some(f)) => (f.bytes, f.expire),
        _ => (hll::new_sparse(), None),
    };
    if use_dense && hll::sparse_to_dense(&mut v).is_err() {
        return x.err(INVALID);
    }
    for (i, &m) in max.iter().enumerate() {
        if m != 0 {
            hll::raise(&mut v, i, m);
        }
    }
    hll::invalidate(&mut v);
    store_value(store, key, &v, expire);
    write_ok(x.out);
}
