//! INCRBYFLOAT and HINCRBYFLOAT (Redis 7.0's `t_string.c` and
//! `t_hash.c`), computed in emulated 80-bit `long double` ([`crate::f80`])
//! so that results are digit for digit Redis's: the value written is the
//! text Redis would write, and a backup applying the same op writes the
//! same text.

use super::{take_typed, Exec, WRONGTYPE};
use crate::entry::{AggVal, Entry, HashVal, Kind, StrEncoding};
use crate::f80::{parse, Parsed, F80};
use crate::resp::write_bulk;
use crate::store::Store;

const NOT_FLOAT: &[u8] = b"ERR value is not a valid float";
const NAN_OR_INF: &[u8] = b"ERR increment would produce NaN or Infinity";

/// `value + incr` as Redis prints it, or the error Redis replies: an
/// infinite operand or an overflowing sum is "NaN or Infinity".
fn add(value: Parsed, incr: Parsed) -> Result<Vec<u8>, &'static [u8]> {
    match (value, incr) {
        (Parsed::Finite(a), Parsed::Finite(b)) => a.add(b).map(|v| v.format_human()).ok_or(NAN_OR_INF),
        _ => Err(NAN_OR_INF),
    }
}

/// INCRBYFLOAT key increment: the key keeps its expiry; the new value is
/// made as `createStringObject` makes it (never `int` encoded).
pub fn incrbyfloat(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let key = argv[1];
    let (value, expire) = match store.get(key, x.clock) {
        None => (Parsed::Finite(F80::ZERO), None),
        Some(e) => match e.str_value() {
            None => return x.err(WRONGTYPE),
            Some(v) => match parse(v) {
                Some(p) => (p, e.expire()),
                None => return x.err(NOT_FLOAT),
            },
        },
    };
    let Some(incr) = parse(argv[2]) else { return x.err(NOT_FLOAT) };
    match add(value, incr) {
        Ok(text) => {
            store.put(Entry::string(key, &text, expire).with_str_encoding(StrEncoding::NoInt));
            write_bulk(x.out, &text);
        }
        Err(msg) => x.err(msg),
    }
}

/// HINCRBYFLOAT key field increment: the increment is checked before the
/// key, and an infinite one has its own error.
pub fn hincrbyfloat(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let incr = match parse(argv[3]) {
        Some(Parsed::Finite(v)) => Parsed::Finite(v),
        Some(Parsed::Infinite) => return x.err(b"ERR value is NaN or Infinity"),
        None => return x.err(NOT_FLOAT),
    };
    let mut e = match take_typed(store, x, argv[1], Kind::Hash) {
        Err(_) => return,
        Ok(Some(e)) => e,
        Ok(None) => Entry::aggregate(argv[1], None, AggVal::Hash(HashVal::default())),
    };
    let Some(AggVal::Hash(h)) = e.agg_mut() else { unreachable!("type checked by take_typed") };
    let value = match h.get(argv[2]) {
        None => Some(Parsed::Finite(F80::ZERO)),
        Some(v) => parse(v),
    };
    let result = match value {
        None => Err(&b"ERR hash value is not a float"[..]),
        Some(value) => add(value, incr),
    };
    if let Ok(text) = &result {
        h.insert(argv[2].into(), text[..].into());
        super::hashes::set_field(&mut e, argv[2], text);
    }
    super::put_back(store, e);
    match result {
        Ok(text) => write_bulk(x.out, &text),
        Err(msg) => x.err(msg),
    }
}
