//! DUMP: a stored value as Redis 7.0's `rdbSaveObjectType` +
//! `rdbSaveObject` write it, in the encoding Redis would hold it in.
//!
//! Byte-identical with Redis where its bytes follow from the value alone:
//! strings; lists (one quicklist node per 8 KB, filled from the head as
//! RPUSH fills them: a list that fits one node is the same whatever built
//! it); sorted sets (listpack in score order, or ZSET_2 from the greatest
//! element down, as Redis walks its skiplist); intsets (at the smallest
//! width: Redis keeps a wider one after the member that needed it left).
//! Hash fields and the members of a hashtable-encoded set come in Redis's
//! insertion or dict order, which this store does not keep: they are
//! written sorted by field or member, a valid payload in a stable order.

use super::{finish_payload, listpack::Listpack, put_len, StringWriter};
use super::{CONTAINER_PACKED, TYPE_HASH, TYPE_HASH_LISTPACK, TYPE_LIST_QUICKLIST_2, TYPE_SET, TYPE_SET_INTSET};
use super::{TYPE_STRING, TYPE_ZSET_2, TYPE_ZSET_LISTPACK};
use crate::encoding::{ZSET_MAX_LISTPACK_ENTRIES, ZSET_MAX_LISTPACK_VALUE};
use crate::entry::{AggVal, Entry, HashVal, ListVal, SetVal, ZsetVal};
use crate::num::{parse_i64, write_d2string};

/// `list-max-listpack-size -2`: a node's listpack stays within 8 KB.
const LIST_NODE_BYTES: usize = 8192;
/// `SIZE_ESTIMATE_OVERHEAD`: what quicklist adds to an element's length
/// when it estimates whether the element still fits a node.
const SIZE_ESTIMATE_OVERHEAD: usize = 8;

/// The DUMP payload of `e`, or `None` for a stream (not supported).
pub fn dump(e: &Entry) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut strings = StringWriter::default();
    match (e.agg(), e.str_value()) {
        (None, Some(v)) => {
            out.push(TYPE_STRING);
            strings.put(&mut out, v);
        }
        (Some(AggVal::List(l)), _) => list(&mut out, &mut strings, l),
        (Some(AggVal::Set(s)), _) => set(&mut out, &mut strings, s, e.is_big()),
        (Some(AggVal::Hash(h)), _) => hash(&mut out, &mut strings, h, e.is_big()),
        (Some(AggVal::Zset(z)), _) => zset(&mut out, &mut strings, z),
        (Some(AggVal::Stream(_)), _) | (None, None) => return None,
    }
    Some(finish_payload(out))
}

/// RDB_TYPE_LIST_QUICKLIST_2: node count, then per node its container and
/// its listpack as a string. A node takes the next element while its size
/// plus the element's length and the estimate overhead stays within 8 KB
/// (`_quicklistNodeAllowInsert`), as RPUSH fills the tail node.
fn list(out: &mut Vec<u8>, strings: &mut StringWriter, l: &ListVal) {
    let mut nodes: Vec<Vec<u8>> = Vec::new();
    let mut node = Listpack::new();
    for item in l {
        if !node.is_empty() && node.bytes() + item.len() + SIZE_ESTIMATE_OVERHEAD > LIST_NODE_BYTES {
            nodes.push(std::mem::take(&mut node).finish());
        }
        node.push(item);
    }
    if !node.is_empty() {
        nodes.push(node.finish());
    }
    out.push(TYPE_LIST_QUICKLIST_2);
    put_len(out, nodes.len() as u64);
    for n in nodes {
        put_len(out, CONTAINER_PACKED);
        strings.put(out, &n);
    }
}

/// RDB_TYPE_SET_INTSET while Redis would hold the set as an intset, else
/// RDB_TYPE_SET: the count and the members (sorted here).
fn set(out: &mut Vec<u8>, strings: &mut StringWriter, s: &SetVal, big: bool) {
    if !big {
        let ints: Option<Vec<i64>> = s.iter().map(|m| parse_i64(m)).collect();
        debug_assert!(ints.is_some(), "a set that is not big holds integers only");
        if let Some(ints) = ints {
            out.push(TYPE_SET_INTSET);
            strings.put(out, &super::intset::encode(&ints));
            return;
        }
    }
    let mut members: Vec<&[u8]> = s.iter().map(|m| &m[..]).collect();
    members.sort_unstable();
    out.push(TYPE_SET);
    put_len(out, members.len() as u64);
    for m in members {
        strings.put(out, m);
    }
}

/// RDB_TYPE_HASH_LISTPACK (field, value, field, value …) while Redis would
/// hold the hash as a listpack, else RDB_TYPE_HASH: the count and the
/// pairs. Sorted by field either way (see the module doc).
fn hash(out: &mut Vec<u8>, strings: &mut StringWriter, h: &HashVal, big: bool) {
    let mut pairs: Vec<(&[u8], &[u8])> = h.iter().map(|(f, v)| (&f[..], &v[..])).collect();
    pairs.sort_unstable();
    if !big {
        let mut lp = Listpack::new();
        for (f, v) in &pairs {
            lp.push(f);
            lp.push(v);
        }
        out.push(TYPE_HASH_LISTPACK);
        strings.put(out, &lp.finish());
        return;
    }
    out.push(TYPE_HASH);
    put_len(out, pairs.len() as u64);
    for (f, v) in pairs {
        strings.put(out, f);
        strings.put(out, v);
    }
}

/// RDB_TYPE_ZSET_LISTPACK (member, score … in score order; a score as
/// `zzlInsertAt` stores it: an integer when `double2ll` allows, else its
/// `d2string` text) while the contents fit a listpack, else RDB_TYPE_ZSET_2:
/// the count, then member and binary double from the greatest down.
fn zset(out: &mut Vec<u8>, strings: &mut StringWriter, z: &ZsetVal) {
    let compact = z.len() <= ZSET_MAX_LISTPACK_ENTRIES && z.iter().all(|(_, m)| m.len() <= ZSET_MAX_LISTPACK_VALUE);
    if compact {
        let mut lp = Listpack::new();
        let mut text = Vec::with_capacity(24);
        for (score, member) in z.iter() {
            lp.push(member);
            text.clear();
            write_d2string(&mut text, *score);
            lp.push(&text);
        }
        out.push(TYPE_ZSET_LISTPACK);
        strings.put(out, &lp.finish());
        return;
    }
    out.push(TYPE_ZSET_2);
    put_len(out, z.len() as u64);
    for (score, member) in z.iter().rev() {
        strings.put(out, member);
        out.extend_from_slice(&score.to_le_bytes());
    }
}
