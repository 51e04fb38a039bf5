//! BITFIELD and BITFIELD_RO (Redis 7.0's `bitfieldGeneric`): GET, SET and
//! INCRBY of signed (`i1`..`i64`) and unsigned (`u1`..`u63`) integers at
//! any bit offset (`#n` meaning `n` times the width), with OVERFLOW WRAP,
//! SAT or FAIL. Every operation is parsed before any runs; a command with
//! a SET or INCRBY creates or pads the string first (even if every write
//! then fails), one with only GETs leaves the key alone.

use super::bits::{bit_offset, string_of, take_for_bits};
use super::{Exec, NOT_INT, SYNTAX};
use crate::num::parse_i64;
use crate::resp::{write_array_len, write_null};
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Get,
    Set,
    Incrby,
}

#[derive(Debug, Clone, Copy)]
struct Op {
    kind: OpKind,
    offset: u64,
    bits: u32,
    signed: bool,
    value: i64,
    overflow: Overflow,
}

/// Redis's `getBitfieldTypeFromArgument`: `i1`..`i64` or `u1`..`u63`; the
/// width is read up to a NUL, as C's `strlen` does.
fn field_type(x: &mut Exec, arg: &[u8]) -> Option<(bool, u32)> {
    const BAD_TYPE: &[u8] = b"ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";
    let signed = match arg.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => {
            x.err(BAD_TYPE);
            return None;
        }
    };
    let width = super::keyspace::c_str(&arg[1..]);
    match parse_i64(width) {
        Some(b) if b >= 1 && b <= if signed { 64 } else { 63 } => Some((signed, b as u32)),
        _ => {
            x.err(BAD_TYPE);
            None
        }
    }
}

/// Parses the operations after the key; `None` after an error reply.
fn parse(x: &mut Exec, args: &[&[u8]]) -> Option<Vec<Op>> {
    let mut ops = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 0;
    while j < args.len() {
        let (sub, left) = (args[j], args.len() - j - 1);
        let is = |name: &str| sub.eq_ignore_ascii_case(name.as_bytes());
        let kind = if is("get") && left >= 2 {
            OpKind::Get
        } else if is("set") && left >= 3 {
            OpKind::Set
        } else if is("incrby") && left >= 3 {
            OpKind::Incrby
        } else if is("overflow") && left >= 1 {
            let name = args[j + 1];
            overflow = match [(Overflow::Wrap, "wrap"), (Overflow::Sat, "sat"), (Overflow::Fail, "fail")]
                .into_iter()
                .find(|(_, n)| name.eq_ignore_ascii_case(n.as_bytes()))
            {
                Some((o, _)) => o,
                None => {
                    x.err(b"ERR Invalid OVERFLOW type specified");
                    return None;
                }
            };
            j += 2;
            continue;
        } else {
            x.err(SYNTAX);
            return None;
        };
        let (signed, bits) = field_type(x, args[j + 1])?;
        let offset = bit_offset(x, args[j + 2], Some(bits))?;
        let value = if kind == OpKind::Get {
            0
        } else {
            match parse_i64(args[j + 3]) {
                Some(v) => v,
                None => {
                    x.err(NOT_INT);
                    return None;
                }
            }
        };
        ops.push(Op { kind, offset, bits, signed, value, overflow });
        j += if kind == OpKind::Get { 3 } else { 4 };
    }
    Some(ops)
}

/// The `bits`-wide unsigned integer at bit `offset` (bits past the end of
/// `v` read as zeros).
fn get_unsigned(v: &[u8], offset: u64, bits: u32) -> u64 {
    (offset..offset + u64::from(bits)).fold(0u64, |acc, i| {
        let byte = v.get((i >> 3) as usize).copied().unwrap_or(0);
        (acc << 1) | u64::from((byte >> (7 - (i & 7))) & 1)
    })
}

fn get_signed(v: &[u8], offset: u64, bits: u32) -> i64 {
    let u = get_unsigned(v, offset, bits);
    if bits < 64 && u & (1 << (bits - 1)) != 0 {
        (u | (u64::MAX << bits)) as i64
    } else {
        u as i64
    }
}

/// Writes the low `bits` bits of `value` at bit `offset` (inside `v`).
fn set_bits(v: &mut [u8], offset: u64, bits: u32, value: u64) {
    for j in 0..u64::from(bits) {
        let on = (value >> (u64::from(bits) - 1 - j)) & 1 == 1;
        let i = offset + j;
        let mask = 0x80u8 >> (i & 7);
        let byte = &mut v[(i >> 3) as usize];
        *byte = if on { *byte | mask } else { *byte & !mask };
    }
}

/// Redis's `checkUnsignedBitfieldOverflow`: whether `value + incr`
/// leaves `bits` bits, and the value to store instead (WRAP, SAT).
fn unsigned_overflow(value: u64, incr: i64, bits: u32, ow: Overflow) -> (bool, u64) {
    let max = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
    let max_incr = max.wrapping_sub(value) as i64;
    let min_incr = value.wrapping_neg() as i64;
    let wrapped = value.wrapping_add(incr as u64) & !(u64::MAX.checked_shl(bits).unwrap_or(0));
    if value > max || (incr > 0 && incr > max_incr) {
        (true, if ow == Overflow::Sat { max } else { wrapped })
    } else if incr < 0 && incr < min_incr {
        (true, if ow == Overflow::Sat { 0 } else { wrapped })
    } else {
        (false, value.wrapping_add(incr as u64))
    }
}

/// Redis's `checkSignedBitfieldOverflow`, likewise.
fn signed_overflow(value: i64, incr: i64, bits: u32, ow: Overflow) -> (bool, i64) {
    let max = if bits == 64 { i64::MAX } else { (1i64 << (bits - 1)) - 1 };
    let min = -max - 1;
    let max_incr = (max as u64).wrapping_sub(value as u64) as i64;
    let min_incr = min.wrapping_sub(value);
    let wrap = || {
        let c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let mask = u64::MAX << bits;
            if c & (1 << (bits - 1)) != 0 {
                (c | mask) as i64
            } else {
                (c & !mask) as i64
            }
        } else {
            c as i64
        }
    };
    if value > max || (bits != 64 && incr > max_incr) || (value >= 0 && incr > 0 && incr > max_incr) {
        (true, if ow == Overflow::Sat { max } else { wrap() })
    } else if value < min || (bits != 64 && incr < min_incr) || (value < 0 && incr < 0 && incr < min_incr) {
        (true, if ow == Overflow::Sat { min } else { wrap() })
    } else {
        (false, value.wrapping_add(incr))
    }
}

/// Runs one SET or INCRBY on `v`; the reply value, or `None` for a
/// FAIL overflow (nothing written).
fn write_op(v: &mut [u8], op: &Op) -> Option<i64> {
    let incr = op.kind == OpKind::Incrby;
    let (overflowed, new, reply) = if op.signed {
        let old = get_signed(v, op.offset, op.bits);
        let (over, new) = if incr {
            signed_overflow(old, op.value, op.bits, op.overflow)
        } else {
            signed_overflow(op.value, 0, op.bits, op.overflow)
        };
        (over, new as u64, if incr { new } else { old })
    } else {
        let old = get_unsigned(v, op.offset, op.bits);
        let (over, new) = if incr {
            unsigned_overflow(old, op.value, op.bits, op.overflow)
        } else {
            unsigned_overflow(op.value as u64, 0, op.bits, op.overflow)
        };
        (over, new, if incr { new as i64 } else { old as i64 })
    };
    if overflowed && op.overflow == Overflow::Fail {
        return None;
    }
    set_bits(v, op.offset, op.bits, new);
    Some(reply)
}

fn read_op(v: &[u8], op: &Op) -> i64 {
    if op.signed {
        get_signed(v, op.offset, op.bits)
    } else {
        get_unsigned(v, op.offset, op.bits) as i64
    }
}

/// BITFIELD key [GET type offset] [SET type offset value]
/// [INCRBY type offset increment] [OVERFLOW WRAP|SAT|FAIL] ...
pub fn bitfield(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(ops) = parse(x, &argv[2..]) else { return };
    let Some(highest) = ops.iter().filter(|o| o.kind != OpKind::Get).map(|o| o.offset + u64::from(o.bits) - 1).max() else {
        // Only GETs: a read.
        return reply_reads(store, x, argv[1], &ops);
    };
    let Some(mut e) = take_for_bits(store, x, argv[1], highest) else { return };
    let v = e.str_value_mut().expect("a string");
    write_array_len(x.out, ops.len());
    for op in &ops {
        let reply = if op.kind == OpKind::Get { Some(read_op(v, op)) } else { write_op(v, op) };
        match reply {
            Some(n) => x.int(n),
            None => write_null(x.out),
        }
    }
    store.put(e);
}

/// BITFIELD_RO key [GET type offset] ...
pub fn bitfield_ro(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(ops) = parse(x, &argv[2..]) else { return };
    if ops.iter().any(|o| o.kind != OpKind::Get) {
        return x.err(b"ERR BITFIELD_RO only supports the GET subcommand");
    }
    reply_reads(store, x, argv[1], &ops);
}

fn reply_reads(store: &Store, x: &mut Exec, key: &[u8], ops: &[Op]) {
    let Ok(v) = string_of(store, x, key) else { return };
    let v = v.unwrap_or_default();
    write_array_len(x.out, ops.len());
    for op in ops {
        x.int(read_op(v, op));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_rules_as_redis() {
        assert_eq!(signed_overflow(200, 0, 8, Overflow::Wrap), (true, -56));
        assert_eq!(signed_overflow(200, 0, 8, Overflow::Sat), (true, 127));
        assert_eq!(signed_overflow(-100, -100, 8, Overflow::Sat), (true, -128));
        assert_eq!(signed_overflow(i64::MAX, 1, 64, Overflow::Wrap), (true, i64::MIN));
        assert_eq!(signed_overflow(5, -3, 4, Overflow::Wrap), (false, 2));
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Wrap), (true, 4));
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Sat), (true, 255));
        assert_eq!(unsigned_overflow(3, -5, 8, Overflow::Sat), (true, 0));
        assert_eq!(unsigned_overflow(3, -5, 8, Overflow::Wrap), (true, 254));
        assert_eq!(unsigned_overflow(u64::MAX, 0, 63, Overflow::Wrap), (true, u64::MAX >> 1));
    }

    #[test]
    fn bits_round_trip_across_bytes() {
        let mut v = vec![0u8; 3];
        set_bits(&mut v, 5, 12, 0xabc);
        assert_eq!(get_unsigned(&v, 5, 12), 0xabc);
        assert_eq!(get_signed(&v, 5, 12), 0xabc - 0x1000);
        assert_eq!(get_unsigned(&v, 20, 8), u64::from(v[2] & 0x0f) << 4, "past the end reads zeros");
    }
}
