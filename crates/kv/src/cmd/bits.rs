//! Bit commands on string values (Redis 7.0's `bitops.c`): SETBIT,
//! GETBIT, BITCOUNT and BITPOS (with 7.0's BYTE|BIT ranges) and BITOP.
//! Bit 0 is the most significant bit of the first byte. Arguments are
//! checked in Redis's order, which decides the reply when several are
//! wrong (BITCOUNT and BITPOS look the key up before parsing the range).

use super::{Exec, Replied, NOT_INT, SYNTAX, WRONGTYPE};
use crate::entry::{Entry, StrEncoding};
use crate::num::parse_i64;
use crate::store::Store;

const BAD_OFFSET: &[u8] = b"ERR bit offset is not an integer or out of range";
/// `proto-max-bulk-len`: an offset must address a byte below it.
const BYTES_MAX: i64 = super::STRING_BYTES_MAX as i64;

/// Redis's `getBitOffsetFromArgument`: a non-negative bit offset below
/// 512 MiB * 8. With `bits` (BITFIELD), `#n` means `n * bits`; the
/// multiplication wraps as Redis's `long long` arithmetic does in practice.
pub fn bit_offset(x: &mut Exec, arg: &[u8], bits: Option<u32>) -> Option<u64> {
    let (hash, digits) = match (arg.first(), bits) {
        (Some(b'#'), Some(_)) => (true, &arg[1..]),
        _ => (false, arg),
    };
    let offset = parse_i64(digits).map(|v| if hash { v.wrapping_mul(i64::from(bits.unwrap_or(1))) } else { v });
    match offset {
        Some(v) if v >= 0 && (v >> 3) < BYTES_MAX => Some(v as u64),
        _ => {
            x.err(BAD_OFFSET);
            None
        }
    }
}

/// The string value at `key` for a read: `Ok(None)` if absent,
/// `Err(Replied)` after WRONGTYPE.
pub fn string_of<'s>(store: &'s Store, x: &mut Exec, key: &[u8]) -> Result<Option<&'s [u8]>, Replied> {
    match store.get(key, x.clock) {
        None => Ok(None),
        Some(e) => match e.str_value() {
            Some(v) => Ok(Some(v)),
            None => {
                x.err(WRONGTYPE);
                Err(Replied)
            }
        },
    }
}

/// Redis's `lookupStringForBitCommand`: the string at `key`, taken out of
/// the store, created or zero-padded so that bit `max_bit` exists, and
/// marked `raw` as Redis's unshared copy is. The caller puts it back.
/// `None` after WRONGTYPE (the key is left alone, also for WATCH).
pub fn take_for_bits(store: &mut Store, x: &mut Exec, key: &[u8], max_bit: u64) -> Option<Entry> {
    let len = (max_bit >> 3) as usize + 1;
    // Checked before taking: a WRONGTYPE error leaves the key untouched.
    if string_of(store, x, key).is_err() {
        return None;
    }
    let e = match store.take(key, x.clock) {
        None => Entry::string_with(key, None, len, |b| b.resize(b.len() + len, 0)),
        Some(e) => match e.str_value() {
            None => unreachable!("type checked above"),
            Some(v) if v.len() >= len => e,
            Some(v) => Entry::string_with(key, e.expire(), len, |b| {
                b.extend_from_slice(v);
                b.resize(b.len() + len - v.len(), 0);
            }),
        },
    };
    Some(e.with_str_encoding(StrEncoding::Raw))
}

fn bit_at(v: &[u8], offset: u64) -> bool {
    let byte = (offset >> 3) as usize;
    byte < v.len() && v[byte] & (0x80 >> (offset & 7)) != 0
}

/// SETBIT key offset value: replies the bit's old value.
pub fn setbit(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    const BAD_BIT: &[u8] = b"ERR bit is not an integer or out of range";
    let Some(offset) = bit_offset(x, argv[2], None) else { return };
    let on = match parse_i64(argv[3]) {
        Some(v @ (0 | 1)) => v == 1,
        _ => return x.err(BAD_BIT),
    };
    let Some(mut e) = take_for_bits(store, x, argv[1], offset) else { return };
    let v = e.str_value_mut().expect("a string");
    let old = bit_at(v, offset);
    let mask = 0x80u8 >> (offset & 7);
    let byte = &mut v[(offset >> 3) as usize];
    *byte = if on { *byte | mask } else { *byte & !mask };
    store.put(e);
    x.int(i64::from(old));
}

/// GETBIT key offset
pub fn getbit(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(offset) = bit_offset(x, argv[2], None) else { return };
    let Ok(v) = string_of(store, x, argv[1]) else { return };
    x.int(i64::from(v.is_some_and(|v| bit_at(v, offset))));
}

/// A range of a string, resolved as BITCOUNT and BITPOS resolve theirs:
/// inclusive bounds in bytes or (with BIT) in bits, negative from the end,
/// clamped into the string. `None`: the range is empty.
fn resolve(len: usize, mut start: i64, mut end: i64, in_bits: bool) -> Option<(u64, u64)> {
    let total = if in_bits { len as i64 * 8 } else { len as i64 };
    if start < 0 {
        start += total;
    }
    if end < 0 {
        end += total;
    }
    start = start.max(0);
    end = end.max(0).min(total - 1);
    (start <= end).then_some((start as u64, end as u64))
}

/// `BYTE` or `BIT` (any case): whether the range is in bits.
fn unit(arg: &[u8]) -> Option<bool> {
    if arg.eq_ignore_ascii_case(b"bit") {
        Some(true)
    } else if arg.eq_ignore_ascii_case(b"byte") {
        Some(false)
    } else {
        None
    }
}

/// Set bits among the bits `[first, last]` of `v` (within `v`).
fn count_ones(v: &[u8], first: u64, last: u64) -> u64 {
    let (fb, lb) = ((first >> 3) as usize, (last >> 3) as usize);
    let whole: u64 = v[fb..=lb].iter().map(|b| u64::from(b.count_ones())).sum();
    // Take away the bits of the edge bytes outside the range.
    let before = v[fb] & !(0xffu8 >> (first & 7));
    let after = v[lb] & (0x7fu8 >> (last & 7));
    whole - u64::from(before.count_ones()) - u64::from(after.count_ones())
}

/// The first bit equal to `bit` among the bits `[first, last]` of `v`
/// (within `v`), skipping whole bytes that cannot hold it.
fn first_bit(v: &[u8], first: u64, last: u64, bit: bool) -> Option<u64> {
    let skip = if bit { 0 } else { 0xff };
    let mut i = first;
    while i <= last {
        if i & 7 == 0 && i + 7 <= last && v[(i >> 3) as usize] == skip {
            i += 8;
            continue;
        }
        if bit_at(v, i) == bit {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// BITCOUNT key [start end [BYTE|BIT]]
pub fn bitcount(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let Ok(found) = string_of(store, x, argv[1]) else { return };
    let Some(v) = found else { return x.int(0) };
    let range = match argv.len() {
        2 => resolve(v.len(), 0, -1, false).map(|(s, e)| (s * 8, e * 8 + 7)),
        4 | 5 => {
            let Some(start) = x.int_arg(argv[2]) else { return };
            let Some(end) = x.int_arg(argv[3]) else { return };
            if start < 0 && end < 0 && start > end {
                return x.int(0);
            }
            let in_bits = match argv.get(4) {
                None => false,
                Some(u) => match unit(u) {
                    Some(b) => b,
                    None => return x.err(SYNTAX),
                },
            };
            match resolve(v.len(), start, end, in_bits) {
                Some((s, e)) if !in_bits => Some((s * 8, e * 8 + 7)),
                r => r,
            }
        }
        _ => return x.err(SYNTAX),
    };
    x.int(range.map_or(0, |(first, last)| count_ones(v, first, last)) as i64);
}

/// BITPOS key bit [start [end [BYTE|BIT]]]: a missing key is all zeros;
/// without an explicit end, the string continues with zeros, so a clear
/// bit is found just past it.
pub fn bitpos(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let bit = match parse_i64(argv[2]) {
        Some(b @ (0 | 1)) => b == 1,
        Some(_) => return x.err(b"ERR The bit argument must be 1 or 0."),
        None => return x.err(NOT_INT),
    };
    let Ok(found) = string_of(store, x, argv[1]) else { return };
    let Some(v) = found else { return x.int(if bit { -1 } else { 0 }) };
    let (range, in_bits, end_given) = match argv.len() {
        3 => (resolve(v.len(), 0, -1, false), false, false),
        4..=6 => {
            let Some(start) = x.int_arg(argv[3]) else { return };
            let in_bits = match argv.get(5) {
                None => false,
                Some(u) => match unit(u) {
                    Some(b) => b,
                    None => return x.err(SYNTAX),
                },
            };
            let end = match argv.get(4) {
                Some(arg) => match x.int_arg(arg) {
                    Some(e) => e,
                    None => return,
                },
                // Without an end (so in bytes), the range goes to the end.
                None => v.len() as i64 - 1,
            };
            (resolve(v.len(), start, end, in_bits), in_bits, argv.len() >= 5)
        }
        _ => return x.err(SYNTAX),
    };
    let Some((start, end)) = range else { return x.int(-1) };
    let (first, last) = if in_bits { (start, end) } else { (start * 8, end * 8 + 7) };
    x.int(match first_bit(v, first, last, bit) {
        Some(p) => p as i64,
        // Past an implicit end the string reads as zeros.
        None if !bit && !end_given => (last + 1) as i64,
        None => -1,
    });
}

/// BITOP AND|OR|XOR|NOT destkey key [key ...]: missing keys are empty
/// strings, shorter inputs are padded with zeros; the result (without
/// expiry, `raw`) replaces the destination, or deletes it when empty.
pub fn bitop(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    #[derive(Clone, Copy, PartialEq)]
    enum Op {
        And,
        Or,
        Xor,
        Not,
    }
    let ops = [(Op::And, "and"), (Op::Or, "or"), (Op::Xor, "xor"), (Op::Not, "not")];
    let Some(&(op, _)) = ops.iter().find(|(_, n)| argv[1].eq_ignore_ascii_case(n.as_bytes())) else {
        return x.err(SYNTAX);
    };
    if op == Op::Not && argv.len() != 4 {
        return x.err(b"ERR BITOP NOT must be called with a single source key.");
    }
    let result = {
        let mut sources: Vec<&[u8]> = Vec::with_capacity(argv.len() - 3);
        for key in &argv[3..] {
            match string_of(store, x, key) {
                Ok(v) => sources.push(v.unwrap_or_default()),
                Err(Replied) => return,
            }
        }
        let len = sources.iter().map(|s| s.len()).max().unwrap_or(0);
        let byte = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
        (0..len)
            .map(|i| {
                let mut all = sources.iter().map(|s| byte(s, i));
                let first = all.next().unwrap_or(0);
                match op {
                    Op::And => all.fold(first, |a, b| a & b),
                    Op::Or => all.fold(first, |a, b| a | b),
                    Op::Xor => all.fold(first, |a, b| a ^ b),
                    Op::Not => !first,
                }
            })
            .collect::<Vec<u8>>()
    };
    let dest = argv[2];
    if result.is_empty() {
        store.take_any(dest);
    } else {
        store.put(Entry::string(dest, &result, None).with_str_encoding(StrEncoding::Raw));
    }
    x.int(result.len() as i64);
}
