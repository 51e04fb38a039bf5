//! The internal encodings Redis 7.0 would use for a value, for OBJECT
//! ENCODING: clients and tests look at them, and Redis's choice depends
//! on the value's history, not only on its contents.
//!
//! Redis 7.0 keeps a small hash as a listpack and a set of integers as an
//! intset; once a limit is passed it converts the value to a hashtable and
//! never back, even when elements are removed. The limits are 7.0's
//! defaults (`config.c`): `hash-max-listpack-entries 512`,
//! `hash-max-listpack-value 64`, `set-max-intset-entries 512` (7.0 has
//! no listpack sets: a set with a member that is not an integer is a
//! hashtable). Lists are always
//! quicklists in 7.0. Strings are `int`, `embstr` (up to 44 bytes) or `raw`
//! by the command that made them ([`StrEncoding`]).
//!
//! The "left the compact encoding" bit is kept on the entry
//! ([`Entry::is_big`]) and set by the commands exactly when Redis converts.
//! A snapshot does not carry it: a restored aggregate is compact if its
//! contents allow, as Redis decides when it loads an RDB file.

use crate::entry::{AggVal, Entry, StrEncoding};
use crate::num::parse_i64;

pub const HASH_MAX_LISTPACK_ENTRIES: usize = 512;
pub const HASH_MAX_LISTPACK_VALUE: usize = 64;
pub const SET_MAX_INTSET_ENTRIES: usize = 512;
/// `zset-max-listpack-entries` and `zset-max-listpack-value` of Redis 7.0.
pub const ZSET_MAX_LISTPACK_ENTRIES: usize = 128;
pub const ZSET_MAX_LISTPACK_VALUE: usize = 64;
/// `OBJ_ENCODING_EMBSTR_SIZE_LIMIT`.
const EMBSTR_SIZE_LIMIT: usize = 44;
/// Redis shares the integer objects 0..10000 (`OBJ_SHARED_INTEGERS`).
const SHARED_INTEGERS: i64 = 10_000;
/// The refcount Redis reports for a shared object (`OBJ_SHARED_REFCOUNT`).
const SHARED_REFCOUNT: i64 = i32::MAX as i64;

/// Redis's `hashTypeTryConversion` when a hash command adds fields and
/// values: any argument longer than `hash-max-listpack-value` converts the
/// hash (HSET converts even where it only overwrites a value).
pub fn hash_args(e: &mut Entry, args: &[&[u8]]) {
    if args.iter().any(|a| a.len() > HASH_MAX_LISTPACK_VALUE) {
        e.mark_big();
    }
}

/// After a hash grew: more than `hash-max-listpack-entries` fields convert it.
pub fn hash_grown(e: &mut Entry) {
    if e.agg().is_some_and(|a| a.len() > HASH_MAX_LISTPACK_ENTRIES) {
        e.mark_big();
    }
}

/// Whether an intset can hold `member`: `isSdsRepresentableAsLongLong`.
pub fn is_intset_member(member: &[u8]) -> bool {
    parse_i64(member).is_some()
}

/// Redis's `setTypeAdd` (and `setTypeCreate`) after members were added:
/// a member that is not an integer, or more than `set-max-intset-entries`
/// members, convert the set.
pub fn set_added(e: &mut Entry, added: &[&[u8]]) {
    let too_many = e.agg().is_some_and(|a| a.len() > SET_MAX_INTSET_ENTRIES);
    if too_many || !added.iter().all(|m| is_intset_member(m)) {
        e.mark_big();
    }
}

/// Whether an aggregate's contents fit its compact encoding: what a value
/// built from scratch (SINTERSTORE, an RDB load, SPOP's rebuilt set)
/// gets.
pub fn fits_compact(val: &AggVal) -> bool {
    match val {
        AggVal::Hash(h) => {
            h.len() <= HASH_MAX_LISTPACK_ENTRIES
                && h.iter().all(|(f, v)| f.len() <= HASH_MAX_LISTPACK_VALUE && v.len() <= HASH_MAX_LISTPACK_VALUE)
        }
        AggVal::Set(s) => s.len() <= SET_MAX_INTSET_ENTRIES && s.iter().all(|m| is_intset_member(m)),
        AggVal::List(_) | AggVal::Stream(_) => true,
        AggVal::Zset(z) => z.len() <= ZSET_MAX_LISTPACK_ENTRIES && z.iter().all(|(_, m)| m.len() <= ZSET_MAX_LISTPACK_VALUE),
    }
}

/// Whether the compact encoding of `val`'s type can hold `elem` (a hash
/// field or value, a set member, a list item).
pub fn element_fits(val: &AggVal, elem: &[u8]) -> bool {
    match val {
        AggVal::Hash(_) => elem.len() <= HASH_MAX_LISTPACK_VALUE,
        AggVal::Set(_) => is_intset_member(elem),
        AggVal::List(_) | AggVal::Stream(_) => true,
        AggVal::Zset(_) => elem.len() <= ZSET_MAX_LISTPACK_VALUE,
    }
}

/// A snapshot restore added elements to `e`, all of which fit the compact
/// encoding if `elements_fit`: as Redis loading an RDB file, the value is
/// compact if everything fits.
pub fn restored(e: &mut Entry, elements_fit: bool) {
    let limit = match e.agg() {
        Some(AggVal::Hash(_)) => HASH_MAX_LISTPACK_ENTRIES,
        Some(AggVal::Set(_)) => SET_MAX_INTSET_ENTRIES,
        Some(AggVal::Zset(_)) => ZSET_MAX_LISTPACK_ENTRIES,
        _ => usize::MAX,
    };
    if !elements_fit || e.agg().is_some_and(|a| a.len() > limit) {
        e.mark_big();
    }
}

/// An aggregate built from scratch: its encoding follows its contents.
pub fn built(e: Entry) -> Entry {
    debug_assert!(!e.is_big(), "a new aggregate starts compact");
    rebuilt(e)
}

/// An aggregate Redis replaced by a new one with the same key (SPOP's
/// rebuilt set): its encoding follows its contents, whatever it was.
pub fn rebuilt(mut e: Entry) -> Entry {
    let big = e.agg().is_some_and(|a| !fits_compact(a));
    e.set_big(big);
    e
}

/// OBJECT ENCODING's answer.
pub fn name(e: &Entry) -> &'static str {
    match (e.agg(), e.str_value()) {
        // The sorted-set commands do not track conversions: the encoding
        // follows the contents, as after Redis loads an RDB file.
        (Some(a @ AggVal::Zset(_)), _) => {
            if fits_compact(a) {
                "listpack"
            } else {
                "skiplist"
            }
        }
        (Some(a), _) => {
            debug_assert!(e.is_big() || fits_compact(a), "a compact encoding holds what it cannot");
            match (a, e.is_big()) {
                (AggVal::List(_), _) => "quicklist",
                (AggVal::Stream(_), _) => "stream",
                (AggVal::Hash(_), false) => "listpack",
                (AggVal::Set(_), false) => "intset",
                (AggVal::Zset(_), _) => unreachable!("answered above"),
                (_, true) => "hashtable",
            }
        }
        (None, Some(v)) => match e.str_encoding() {
            Some(StrEncoding::Auto) if is_int(v) => "int",
            Some(StrEncoding::CopiedInt) => "int",
            Some(StrEncoding::Raw) => "raw",
            _ if v.len() <= EMBSTR_SIZE_LIMIT => "embstr",
            _ => "raw",
        },
        (None, None) => unreachable!("an entry is a string or an aggregate"),
    }
}

/// Whether `tryObjectEncoding` makes `v` an `int` (`string2l`, at most 20
/// bytes).
pub fn is_int(v: &[u8]) -> bool {
    v.len() <= 20 && parse_i64(v).is_some()
}

/// OBJECT REFCOUNT's answer: the small integers Redis shares report
/// `INT_MAX`, everything else 1 (no other object is shared between keys
/// in Redis 7.0 without LRU/LFU eviction).
pub fn refcount(e: &Entry) -> i64 {
    let auto = e.str_encoding() == Some(StrEncoding::Auto);
    let shared = auto && e.str_value().and_then(parse_i64).is_some_and(|v| (0..SHARED_INTEGERS).contains(&v));
    if shared {
        SHARED_REFCOUNT
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Bytes, HashVal, SetVal};

    fn set(members: &[&str]) -> Entry {
        let s: SetVal = members.iter().map(|m| Bytes::from(m.as_bytes())).collect();
        Entry::aggregate(b"s", None, AggVal::Set(s))
    }

    #[test]
    fn strings_by_contents_and_history() {
        let s = |v: &[u8], enc| name(&Entry::string(b"k", v, None).with_str_encoding(enc));
        assert_eq!(s(b"123", StrEncoding::Auto), "int");
        assert_eq!(s(b"-9223372036854775808", StrEncoding::Auto), "int");
        assert_eq!(s(b"0123", StrEncoding::Auto), "embstr");
        assert_eq!(s(b"123", StrEncoding::NoInt), "embstr");
        assert_eq!(s(b"123", StrEncoding::Raw), "raw");
        assert_eq!(s(&[b'a'; 44], StrEncoding::Auto), "embstr");
        assert_eq!(s(&[b'a'; 45], StrEncoding::NoInt), "raw");
        assert_eq!(refcount(&Entry::string(b"k", b"9999", None)), SHARED_REFCOUNT);
        assert_eq!(refcount(&Entry::string(b"k", b"10000", None)), 1);
        assert_eq!(refcount(&Entry::string(b"k", b"5", None).with_str_encoding(StrEncoding::NoInt)), 1);
        let copied = Entry::string(b"k", b"5", None).with_str_encoding(StrEncoding::CopiedInt);
        assert_eq!((name(&copied), refcount(&copied)), ("int", 1));
    }

    #[test]
    fn aggregates_convert_once() {
        let mut e = set(&["1", "2"]);
        assert_eq!(name(&e), "intset");
        set_added(&mut e, &[b"x"]);
        assert_eq!(name(&e), "hashtable");
        assert_eq!(name(&built(set(&["1", "x"]))), "hashtable");
        assert_eq!(name(&built(set(&["1", "2"]))), "intset");
        let mut h = Entry::aggregate(b"h", None, AggVal::Hash(HashVal::default()));
        hash_args(&mut h, &[b"f", &[b'v'; 64]]);
        assert_eq!(name(&h), "listpack");
        hash_args(&mut h, &[&[b'v'; 65]]);
        assert_eq!(name(&h), "hashtable");
    }
}
