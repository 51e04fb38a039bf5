//! RESTORE: a payload to a value, as Redis 7.0's `rdbLoadObjectType` +
//! `rdbLoadObject` read it. Every type Redis 7.0 writes is read, and the
//! older encodings its RESTORE still accepts from earlier versions (plain
//! lists, ziplist-based quicklists and ziplists, ziplist hashes and sorted
//! sets, sorted sets with text scores). Streams and module values are not
//! supported; nor are Redis 2.4's zipmaps.
//!
//! Redis (with `sanitize-dump-payload no`, its default) checks a listpack
//! or intset only shallowly and may keep a corrupt one; every element is
//! read here, so such a payload is refused instead, as are duplicates a
//! hash or set cannot hold.

use std::collections::HashSet;

use super::listpack::{self, Elem};
use super::{intset, ziplist, Reader, CONTAINER_PACKED, CONTAINER_PLAIN};
use super::{TYPE_HASH, TYPE_HASH_LISTPACK, TYPE_HASH_ZIPLIST, TYPE_LIST, TYPE_LIST_QUICKLIST, TYPE_LIST_QUICKLIST_2};
use super::{TYPE_LIST_ZIPLIST, TYPE_SET, TYPE_SET_INTSET, TYPE_STREAM_LISTPACKS, TYPE_STREAM_LISTPACKS_2, TYPE_STRING};
use super::{TYPE_ZSET, TYPE_ZSET_2, TYPE_ZSET_LISTPACK, TYPE_ZSET_ZIPLIST};
use crate::num::strtod;

/// A value read from a payload; aggregates are never empty.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    String(Vec<u8>),
    List(Vec<Vec<u8>>),
    /// Distinct members.
    Set(Vec<Vec<u8>>),
    /// Distinct fields.
    Hash(Vec<(Vec<u8>, Vec<u8>)>),
    /// Distinct members, scores never NaN.
    Zset(Vec<(Vec<u8>, f64)>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadError {
    /// Not a value this store can hold, or malformed (`Bad data format`).
    BadFormat,
    /// A stream, well-formed or not.
    Stream,
}

/// The value a payload holds (its footer already verified). Reading may
/// stop before the footer; what follows the object is not looked at, as
/// in Redis.
pub fn load(payload: &[u8]) -> Result<Value, LoadError> {
    let mut r = Reader::new(payload);
    let ty = r.byte().ok_or(LoadError::BadFormat)?;
    if matches!(ty, TYPE_STREAM_LISTPACKS | TYPE_STREAM_LISTPACKS_2) {
        return Err(LoadError::Stream);
    }
    let v = object(ty, &mut r).ok_or(LoadError::BadFormat)?;
    let empty = match &v {
        Value::String(_) => false,
        Value::List(l) | Value::Set(l) => l.is_empty(),
        Value::Hash(h) => h.is_empty(),
        Value::Zset(z) => z.is_empty(),
    };
    // Redis refuses an empty aggregate ("empty keys").
    if empty {
        return Err(LoadError::BadFormat);
    }
    Ok(v)
}

fn object(ty: u8, r: &mut Reader) -> Option<Value> {
    Some(match ty {
        TYPE_STRING => Value::String(r.string()?),
        TYPE_LIST => {
            let n = r.len()?;
            let mut items = Vec::new();
            for _ in 0..n {
                items.push(r.string()?);
            }
            Value::List(items)
        }
        TYPE_LIST_QUICKLIST | TYPE_LIST_QUICKLIST_2 => {
            let nodes = r.len()?;
            let mut items = Vec::new();
            for _ in 0..nodes {
                let container = if ty == TYPE_LIST_QUICKLIST_2 { r.len()? } else { CONTAINER_PACKED };
                if container != CONTAINER_PACKED && container != CONTAINER_PLAIN {
                    return None;
                }
                let data = r.string()?;
                if data.is_empty() {
                    return None;
                }
                if container == CONTAINER_PLAIN {
                    items.push(data);
                } else if ty == TYPE_LIST_QUICKLIST_2 {
                    items.extend(listpack::decode(&data)?.into_iter().map(Elem::to_bytes));
                } else {
                    items.extend(ziplist::decode(&data)?);
                }
            }
            Value::List(items)
        }
        TYPE_LIST_ZIPLIST => Value::List(ziplist::decode(&r.string()?)?),
        TYPE_SET => {
            let n = r.len()?;
            let mut members = Vec::new();
            for _ in 0..n {
                members.push(r.string()?);
            }
            Value::Set(distinct(members)?)
        }
        TYPE_SET_INTSET => {
            let values = intset::decode(&r.string()?)?;
            Value::Set(values.into_iter().map(|v| v.to_string().into_bytes()).collect())
        }
        TYPE_HASH => {
            let n = r.len()?;
            let mut pairs = Vec::new();
            for _ in 0..n {
                pairs.push((r.string()?, r.string()?));
            }
            Value::Hash(distinct_pairs(pairs)?)
        }
        TYPE_HASH_LISTPACK => {
            let data = r.string()?;
            let elems: Vec<Vec<u8>> = listpack::decode(&data)?.into_iter().map(Elem::to_bytes).collect();
            Value::Hash(distinct_pairs(pairs_of(elems)?)?)
        }
        TYPE_HASH_ZIPLIST => Value::Hash(distinct_pairs(pairs_of(ziplist::decode(&r.string()?)?)?)?),
        TYPE_ZSET | TYPE_ZSET_2 => {
            let n = r.len()?;
            let mut pairs = Vec::new();
            for _ in 0..n {
                let member = r.string()?;
                let score = if ty == TYPE_ZSET_2 { r.binary_double()? } else { r.text_double()? };
                if score.is_nan() {
                    return None;
                }
                pairs.push((member, score));
            }
            Value::Zset(distinct_pairs(pairs)?)
        }
        TYPE_ZSET_LISTPACK => {
            let data = r.string()?;
            let elems = listpack::decode(&data)?;
            let pairs = elems.chunks(2).map(|p| match p {
                [m, s] => Some((m.to_bytes(), listpack_score(*s)?)),
                _ => None,
            });
            Value::Zset(distinct_pairs(pairs.collect::<Option<Vec<_>>>()?)?)
        }
        TYPE_ZSET_ZIPLIST => {
            let elems = ziplist::decode(&r.string()?)?;
            let pairs: Option<Vec<_>> = pairs_of(elems)?.into_iter().map(|(m, s)| Some((m, text_score(&s)?))).collect();
            Value::Zset(distinct_pairs(pairs?)?)
        }
        _ => return None,
    })
}

/// A score kept in a listpack or ziplist: an integer, or text read as
/// `zzlStrtod` reads it (`strtod` on at most 127 bytes; no number is 0).
fn listpack_score(e: Elem) -> Option<f64> {
    match e {
        Elem::Int(v) => Some(v as f64),
        Elem::Str(s) => text_score(s),
    }
}

fn text_score(s: &[u8]) -> Option<f64> {
    let s = &s[..s.len().min(127)];
    let s = &s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())];
    let v = strtod(s).value;
    (!v.is_nan()).then_some(v)
}

/// Alternate elements as pairs; an odd count is malformed.
fn pairs_of(elems: Vec<Vec<u8>>) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    if !elems.len().is_multiple_of(2) {
        return None;
    }
    let mut it = elems.into_iter();
    let mut pairs = Vec::new();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        pairs.push((a, b));
    }
    Some(pairs)
}

fn distinct(members: Vec<Vec<u8>>) -> Option<Vec<Vec<u8>>> {
    let mut seen = HashSet::with_capacity(members.len());
    members.iter().all(|m| seen.insert(&m[..])).then_some(members)
}

fn distinct_pairs<T>(pairs: Vec<(Vec<u8>, T)>) -> Option<Vec<(Vec<u8>, T)>> {
    let mut seen = HashSet::with_capacity(pairs.len());
    pairs.iter().all(|(k, _)| seen.insert(&k[..])).then_some(pairs)
}

#[cfg(test)]
mod tests {
    use super::super::{finish_payload, listpack::Listpack, put_len, StringWriter};
    use super::*;

    fn payload(ty: u8, body: impl FnOnce(&mut Vec<u8>, &mut StringWriter)) -> Vec<u8> {
        let mut out = vec![ty];
        body(&mut out, &mut StringWriter::default());
        finish_payload(out)
    }

    fn listpack_of(items: &[&[u8]]) -> Vec<u8> {
        let mut lp = Listpack::new();
        items.iter().for_each(|i| lp.push(i));
        lp.finish()
    }

    #[test]
    fn reads_every_type() {
        let s = payload(TYPE_STRING, |o, w| w.put(o, b"hello"));
        assert_eq!(load(&s), Ok(Value::String(b"hello".to_vec())));
        let l = payload(TYPE_LIST, |o, w| {
            put_len(o, 2);
            w.put(o, b"a");
            w.put(o, b"12");
        });
        assert_eq!(load(&l), Ok(Value::List(vec![b"a".to_vec(), b"12".to_vec()])));
        let h = payload(TYPE_HASH_LISTPACK, |o, w| w.put(o, &listpack_of(&[b"f", b"1", b"g", b"v"])));
        assert_eq!(load(&h), Ok(Value::Hash(vec![(b"f".to_vec(), b"1".to_vec()), (b"g".to_vec(), b"v".to_vec())])));
        let z = payload(TYPE_ZSET_LISTPACK, |o, w| w.put(o, &listpack_of(&[b"m", b"1.5", b"n", b"2"])));
        assert_eq!(load(&z), Ok(Value::Zset(vec![(b"m".to_vec(), 1.5), (b"n".to_vec(), 2.0)])));
        let z1 = payload(TYPE_ZSET, |o, w| {
            put_len(o, 2);
            w.put(o, b"m");
            o.extend_from_slice(b"\x033.5");
            w.put(o, b"n");
            o.push(255);
        });
        assert_eq!(load(&z1), Ok(Value::Zset(vec![(b"m".to_vec(), 3.5), (b"n".to_vec(), f64::NEG_INFINITY)])));
        let i = payload(TYPE_SET_INTSET, |o, w| w.put(o, &intset::encode(&[5, -2])));
        assert_eq!(load(&i), Ok(Value::Set(vec![b"-2".to_vec(), b"5".to_vec()])));
    }

    #[test]
    fn refuses_what_redis_refuses() {
        let empty_set = payload(TYPE_SET, |o, _| put_len(o, 0));
        let dup_set = payload(TYPE_SET, |o, w| {
            put_len(o, 2);
            w.put(o, b"x");
            w.put(o, b"x");
        });
        let nan = payload(TYPE_ZSET_2, |o, w| {
            put_len(o, 1);
            w.put(o, b"m");
            o.extend_from_slice(&f64::NAN.to_le_bytes());
        });
        let bad_container = payload(TYPE_LIST_QUICKLIST_2, |o, w| {
            put_len(o, 1);
            put_len(o, 3);
            w.put(o, &listpack_of(&[b"a"]));
        });
        let empty_node_list = payload(TYPE_LIST_QUICKLIST_2, |o, w| {
            put_len(o, 1);
            put_len(o, 2);
            w.put(o, &listpack_of(&[]));
        });
        let odd_hash = payload(TYPE_HASH_LISTPACK, |o, w| w.put(o, &listpack_of(&[b"f"])));
        let unknown = payload(8, |_, _| {});
        let module = payload(7, |o, _| put_len(o, 1)); // RDB_TYPE_MODULE_2
        for bad in [empty_set, dup_set, nan, bad_container, empty_node_list, odd_hash, unknown, module] {
            assert_eq!(load(&bad), Err(LoadError::BadFormat), "{bad:?}");
        }
        assert_eq!(load(&payload(TYPE_STREAM_LISTPACKS_2, |_, _| {})), Err(LoadError::Stream));
    }
}
