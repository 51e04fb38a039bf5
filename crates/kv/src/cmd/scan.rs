//! SCAN, HSCAN and SSCAN (Redis 7.0's `scanGenericCommand`).
//!
//! SCAN's cursor is the index of the next shard of the keyspace to visit.
//! Keys go to shards by a hash with a fixed seed (`store::ROUTER`), so a
//! cursor means the same on every replica and in every process: a client
//! that continues an iteration on the new primary after a failover still
//! gets every key that was present for the whole iteration (possibly some
//! twice, as Redis allows). A call visits whole shards until it has looked
//! at `COUNT` keys (10 by default), so it may return more than `COUNT`, or
//! none when MATCH or TYPE filter them all. HSCAN, SSCAN and ZSCAN return
//! the whole hash, set or sorted set at once with cursor 0, as Redis does
//! for small encodings; ZSCAN's elements come in order, each score written
//! as a small sorted set keeps it (`d2string`: `1152921504606846976` where
//! ZSCORE says `1.152921504606847e+18`).

use super::{get_typed, Exec, NOT_INT, SYNTAX};
use crate::entry::{AggVal, Kind};
use crate::num::{glob_match, parse_i64, write_d2string};
use crate::resp::{write_array_len, write_bulk};
use crate::store::{is_live, Store, SHARDS};

const INVALID_CURSOR: &[u8] = b"ERR invalid cursor";
const DEFAULT_COUNT: usize = 10;

/// Redis's `parseScanCursorOrReply`: `strtoul` semantics (an optional
/// sign, a negative cursor wraps; the empty string is 0), but no leading
/// space, nothing after the digits, no overflow.
fn parse_cursor(arg: &[u8]) -> Option<u64> {
    if arg.first().is_some_and(|b| b.is_ascii_whitespace()) {
        return None;
    }
    if arg.is_empty() {
        return Some(0);
    }
    let (negative, digits) = match arg[0] {
        b'-' => (true, &arg[1..]),
        b'+' => (false, &arg[1..]),
        _ => (false, arg),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits.iter().try_fold(0u64, |v, d| v.checked_mul(10)?.checked_add(u64::from(d - b'0')))?;
    Some(if negative { v.wrapping_neg() } else { v })
}

/// The options after the cursor. `keyspace`: TYPE is allowed (SCAN only).
struct Options<'a> {
    count: usize,
    pattern: Option<&'a [u8]>,
    kind: Option<&'a [u8]>,
}

fn options<'a>(x: &mut Exec, args: &[&'a [u8]], keyspace: bool) -> Option<Options<'a>> {
    let mut o = Options { count: DEFAULT_COUNT, pattern: None, kind: None };
    let mut i = 0;
    while i < args.len() {
        let (name, value) = (args[i], args.get(i + 1));
        match value {
            Some(v) if name.eq_ignore_ascii_case(b"count") => {
                let Some(n) = parse_i64(v) else {
                    x.err(NOT_INT);
                    return None;
                };
                if n < 1 {
                    x.err(SYNTAX);
                    return None;
                }
                o.count = usize::try_from(n).unwrap_or(usize::MAX);
            }
            Some(v) if name.eq_ignore_ascii_case(b"match") => o.pattern = (*v != b"*").then_some(*v),
            Some(v) if keyspace && name.eq_ignore_ascii_case(b"type") => o.kind = Some(*v),
            _ => {
                x.err(SYNTAX);
                return None;
            }
        }
        i += 2;
    }
    Some(o)
}

fn matches(pattern: Option<&[u8]>, s: &[u8]) -> bool {
    pattern.is_none_or(|p| glob_match(p, s, false))
}

fn write_cursor(x: &mut Exec, cursor: u64) {
    write_array_len(x.out, 2);
    write_bulk(x.out, cursor.to_string().as_bytes());
}

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]
pub fn scan(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(cursor) = parse_cursor(argv[1]) else { return x.err(INVALID_CURSOR) };
    let Some(o) = options(x, &argv[2..], true) else { return };
    let mut found: Vec<&[u8]> = Vec::new();
    let (mut shard, mut looked) = (usize::try_from(cursor).unwrap_or(usize::MAX), 0usize);
    let shards = store.shards();
    while shard < SHARDS && looked < o.count {
        for e in shards[shard].entries() {
            looked += 1;
            let kind_ok = o.kind.is_none_or(|k| k.eq_ignore_ascii_case(e.kind().name().as_bytes()));
            if kind_ok && matches(o.pattern, e.key()) && is_live(e, x.clock) {
                found.push(e.key());
            }
        }
        shard += 1;
    }
    write_cursor(x, if shard >= SHARDS { 0 } else { shard as u64 });
    write_array_len(x.out, found.len());
    for k in found {
        write_bulk(x.out, k);
    }
}

/// HSCAN key cursor [MATCH pattern] [COUNT count], SSCAN and ZSCAN
/// likewise: the cursor is checked first, then the key (missing: an empty
/// scan), then its type, then the options, as Redis does.
pub fn scan_aggregate(kind: Kind, store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    if parse_cursor(argv[2]).is_none() {
        return x.err(INVALID_CURSOR);
    }
    let Ok(e) = get_typed(store, x, argv[1], kind) else { return };
    let Some(e) = e else {
        write_cursor(x, 0);
        return write_array_len(x.out, 0);
    };
    let Some(o) = options(x, &argv[3..], false) else { return };
    write_cursor(x, 0);
    match e.agg() {
        Some(AggVal::Hash(h)) => {
            let pairs: Vec<_> = h.iter().filter(|(f, _)| matches(o.pattern, f)).collect();
            write_array_len(x.out, 2 * pairs.len());
            for (f, v) in pairs {
                write_bulk(x.out, f);
                write_bulk(x.out, v);
            }
        }
        Some(AggVal::Set(s)) => {
            let members: Vec<_> = s.iter().filter(|m| matches(o.pattern, m)).collect();
            write_array_len(x.out, members.len());
            for m in members {
                write_bulk(x.out, m);
            }
        }
        Some(AggVal::Zset(z)) => {
            let pairs: Vec<_> = z.iter().filter(|(_, m)| matches(o.pattern, m)).collect();
            write_array_len(x.out, 2 * pairs.len());
            let mut score = Vec::new();
            for (s, m) in pairs {
                write_bulk(x.out, m);
                score.clear();
                write_d2string(&mut score, *s);
                write_bulk(x.out, &score);
            }
        }
        _ => write_array_len(x.out, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_cursor;

    #[test]
    fn cursors_parse_as_redis_parses_them() {
        for (arg, want) in [
            ("0", Some(0)),
            ("17", Some(17)),
            ("+5", Some(5)),
            ("-1", Some(u64::MAX)),
            ("", Some(0)),
            ("18446744073709551615", Some(u64::MAX)),
            ("18446744073709551616", None),
            (" 1", None),
            ("1 ", None),
            ("x", None),
            ("-", None),
            ("1.5", None),
        ] {
            assert_eq!(parse_cursor(arg.as_bytes()), want, "{arg:?}");
        }
    }
}
