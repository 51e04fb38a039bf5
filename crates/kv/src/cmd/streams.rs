//! Streams (Redis 7.0's `t_stream.c`): XADD, XLEN, XRANGE, XREVRANGE,
//! XDEL, XTRIM, XSETID and XREAD; consumer groups are in [`super::xgroup`].
//!
//! IDs generated for `*` come from the recorded clock (`Exec::clock`), so
//! the backup replaying XADD hands out the same ones. Here XREAD never
//! blocks (the node holds one with BLOCK until an entry is there:
//! `cmd::xwait`): BLOCK's timeout is checked and ignored, and a read with nothing to
//! return replies the null array a timeout would.

use super::{get_typed, put_back, take_typed, Exec, SYNTAX};
use crate::entry::{AggVal, Bytes, Entry, Kind};
use crate::resp::{write_array_len, write_bulk, write_null, write_null_array, write_ok};
use crate::store::Store;
use crate::stream::{StreamId, StreamVal, Trim, APPROX_LIMIT};

pub const INVALID_ID: &[u8] = b"ERR Invalid stream ID specified as stream command argument";

pub fn stream(e: &Entry) -> &StreamVal {
    match e.agg() {
        Some(AggVal::Stream(s)) => s,
        _ => unreachable!("checked to be a stream"),
    }
}

pub fn stream_mut(e: &mut Entry) -> &mut StreamVal {
    match e.agg_mut() {
        Some(AggVal::Stream(s)) => s,
        _ => unreachable!("checked to be a stream"),
    }
}

/// Redis's `string2ull`: `string2ll` if non-negative, else `strtoull`
/// (leading blanks and a sign accepted, `-` negating).
fn parse_u64(s: &[u8]) -> Option<u64> {
    if let Some(v) = crate::num::parse_i64(s) {
        return u64::try_from(v).ok();
    }
    let t = s.iter().position(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')).map(|i| &s[i..])?;
    let (neg, digits) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut v: u64 = 0;
    for d in digits {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if neg { v.wrapping_neg() } else { v })
}

/// `streamGenericParseIDOrReply`: `Some((id, seq_given))`. `seq_star`
/// allows `ms-*` (XADD), which reports the sequence as not given.
pub fn parse_id(arg: &[u8], missing_seq: u64, strict: bool, seq_star: bool) -> Option<(StreamId, bool)> {
    if arg.len() > 127 {
        return None;
    }
    // Redis copies the argument into a C string: it ends at a NUL.
    let arg = &arg[..arg.iter().position(|&c| c == 0).unwrap_or(arg.len())];
    match arg {
        b"-" | b"+" if strict => None,
        b"-" => Some((StreamId::MIN, true)),
        b"+" => Some((StreamId::MAX, true)),
        _ => {
            let (ms, seq) = match arg.iter().position(|&c| c == b'-') {
                Some(i) => (&arg[..i], Some(&arg[i + 1..])),
                None => (arg, None),
            };
            let ms = parse_u64(ms)?;
            match seq {
                Some(b"*") if seq_star => Some((StreamId::new(ms, 0), false)),
                Some(seq) => Some((StreamId::new(ms, parse_u64(seq)?), true)),
                None => Some((StreamId::new(ms, missing_seq), true)),
            }
        }
    }
}

/// A strict ID (no `-`/`+`), replying Redis's error if invalid.
pub fn strict_id(x: &mut Exec, arg: &[u8]) -> Option<StreamId> {
    let id = parse_id(arg, 0, true, false).map(|(id, _)| id);
    if id.is_none() {
        x.err(INVALID_ID);
    }
    id
}

/// `streamParseIntervalIDOrReply` plus the exclusive bound's step: the
/// inclusive ID of a range's start (`end` false) or end.
pub fn interval_id(x: &mut Exec, arg: &[u8], end: bool) -> Option<StreamId> {
    let missing_seq = if end { u64::MAX } else { 0 };
    let exclusive = arg.len() > 1 && arg[0] == b'(';
    let parsed = if exclusive { parse_id(&arg[1..], missing_seq, true, false) } else { parse_id(arg, missing_seq, false, false) };
    let Some((id, _)) = parsed else {
        x.err(INVALID_ID);
        return None;
    };
    if !exclusive {
        return Some(id);
    }
    let stepped = if end { id.decr() } else { id.incr() };
    if stepped.is_none() {
        x.err(if end { b"ERR invalid end ID for the interval" } else { b"ERR invalid start ID for the interval" });
    }
    stepped
}

pub fn write_id(out: &mut Vec<u8>, id: StreamId) {
    write_bulk(out, id.text().as_bytes());
}

/// One entry: `[id, [field, value, …]]`.
pub fn write_entry(out: &mut Vec<u8>, id: StreamId, fields: &[Bytes]) {
    write_array_len(out, 2);
    write_id(out, id);
    write_array_len(out, fields.len());
    for f in fields {
        write_bulk(out, f);
    }
}

/// Entries from `start` to `end` (inclusive), up to `count` (0: all).
pub fn write_range(out: &mut Vec<u8>, s: &StreamVal, start: StreamId, end: StreamId, count: usize, rev: bool) {
    if start > end {
        return write_array_len(out, 0);
    }
    let range = s.entries.range(start..=end);
    let limit = if count == 0 { usize::MAX } else { count };
    let picked: Vec<_> = if rev { range.rev().take(limit).collect() } else { range.take(limit).collect() };
    write_array_len(out, picked.len());
    for (id, fields) in picked {
        write_entry(out, *id, fields);
    }
}

/// XLEN key
pub fn xlen(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let Ok(e) = get_typed(store, x, argv[1], Kind::Stream) else { return };
    let n = e.map_or(0, |e| stream(e).len());
    x.int(n as i64);
}

/// XRANGE key start end [COUNT n], XREVRANGE key end start [COUNT n]
pub fn xrange(rev: bool, store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let (start_arg, end_arg) = if rev { (argv[3], argv[2]) } else { (argv[2], argv[3]) };
    let Some(start) = interval_id(x, start_arg, false) else { return };
    let Some(end) = interval_id(x, end_arg, true) else { return };
    let mut count: i64 = -1;
    let mut j = 4;
    while j < argv.len() {
        if argv[j].eq_ignore_ascii_case(b"count") && j + 1 < argv.len() {
            let Some(c) = x.int_arg(argv[j + 1]) else { return };
            count = c.max(0);
            j += 2;
        } else {
            return x.err(SYNTAX);
        }
    }
    let Ok(e) = get_typed(store, x, argv[1], Kind::Stream) else { return };
    let Some(e) = e else { return write_array_len(x.out, 0) };
    if count == 0 {
        return write_null_array(x.out);
    }
    write_range(x.out, stream(e), start, end, count.max(0) as usize, rev);
}

/// XDEL key id [id …]
pub fn xdel(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Ok(e) = get_typed(store, x, argv[1], Kind::Stream) else { return };
    if e.is_none() {
        return x.int(0);
    }
    let mut ids = Vec::with_capacity(argv.len() - 2);
    for a in &argv[2..] {
        let Some(id) = strict_id(x, a) else { return };
        ids.push(id);
    }
    let mut e = store.take(argv[1], x.clock).expect("live");
    let s = stream_mut(&mut e);
    let first = s.entries.keys().next().copied();
    let mut deleted = 0;
    let mut first_deleted = false;
    for id in ids {
        if s.delete(id) {
            deleted += 1;
            first_deleted |= Some(id) == first;
        }
    }
    if deleted > 0 {
        s.after_delete(first_deleted);
    }
    put_back(store, e);
    x.int(deleted);
}

/// The trimming options of XADD and XTRIM (`streamParseAddOrTrimArgsOrReply`).
#[derive(Default)]
struct TrimArgs {
    how: Option<Trim>,
    approx: bool,
    limit: i64,
    nomkstream: bool,
    /// XADD's explicit ID and whether its sequence was given.
    id: Option<(StreamId, bool)>,
    /// Where parsing stopped: XADD's ID (or `*`).
    at: usize,
}

fn parse_trim_args(x: &mut Exec, argv: &[&[u8]], xadd: bool) -> Option<TrimArgs> {
    let mut a = TrimArgs::default();
    let mut limit_given = false;
    let mut i = 2;
    while i < argv.len() {
        let more = argv.len() - 1 - i;
        let opt = argv[i];
        let is = |name: &[u8]| opt.eq_ignore_ascii_case(name);
        if xadd && opt == b"*" {
            break;
        } else if (is(b"maxlen") || is(b"minid")) && more > 0 {
            if a.how.is_some() {
                x.err(b"ERR syntax error, MAXLEN and MINID options at the same time are not compatible");
                return None;
            }
            a.approx = false;
            let next = argv[i + 1];
            if more >= 2 && next == b"~" {
                a.approx = true;
                i += 1;
            } else if more >= 2 && next == b"=" {
                i += 1;
            }
            if is(b"maxlen") {
                let max = x.int_arg(argv[i + 1])?;
                if max < 0 {
                    x.err(b"ERR The MAXLEN argument must be >= 0.");
                    return None;
                }
                a.how = Some(Trim::MaxLen(max as u64));
            } else {
                a.how = Some(Trim::MinId(strict_id(x, argv[i + 1])?));
            }
            i += 1;
        } else if is(b"limit") && more > 0 {
            a.limit = x.int_arg(argv[i + 1])?;
            if a.limit < 0 {
                x.err(b"ERR The LIMIT argument must be >= 0.");
                return None;
            }
            limit_given = true;
            i += 1;
        } else if xadd && is(b"nomkstream") {
            a.nomkstream = true;
        } else if xadd {
            let Some(id) = parse_id(opt, 0, true, true) else {
                x.err(INVALID_ID);
                return None;
            };
            a.id = Some(id);
            break;
        } else {
            x.err(SYNTAX);
            return None;
        }
        i += 1;
    }
    a.at = i;
    if a.limit != 0 && a.how.is_none() {
        x.err(b"ERR syntax error, LIMIT cannot be used without specifying a trimming strategy");
        return None;
    }
    if !xadd && a.how.is_none() {
        x.err(b"ERR syntax error, XTRIM must be called with a trimming strategy");
        return None;
    }
    if limit_given {
        if !a.approx {
            x.err(b"ERR syntax error, LIMIT cannot be used without the special ~ option");
            return None;
        }
    } else {
        a.limit = if a.approx { APPROX_LIMIT } else { 0 };
    }
    Some(a)
}

/// XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] threshold [LIMIT count]] *|id field value [field value …]
pub fn xadd(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(a) = parse_trim_args(x, argv, true) else { return };
    let field_pos = a.at + 1;
    let n = argv.len().saturating_sub(field_pos);
    if field_pos > argv.len() || n < 2 || !n.is_multiple_of(2) {
        return x.arity_err("xadd");
    }
    if let Some((id, true)) = a.id {
        if id.is_zero() {
            return x.err(b"ERR The ID specified in XADD must be greater than 0-0");
        }
    }
    let Ok(found) = take_typed(store, x, argv[1], Kind::Stream) else { return };
    let mut e = match found {
        Some(e) => e,
        None if a.nomkstream => return write_null(x.out),
        None => Entry::aggregate(argv[1], None, AggVal::Stream(Box::default())),
    };
    let s = stream_mut(&mut e);
    if s.last_id == StreamId::MAX {
        put_back(store, e);
        return x.err(b"ERR The stream has exhausted the last possible ID, unable to add more items");
    }
    let last = s.last_id;
    let id = match a.id {
        Some((id, true)) => Some(id),
        Some((id, false)) if id.ms == last.ms => (last.seq != u64::MAX).then(|| StreamId::new(last.ms, last.seq + 1)),
        Some((id, false)) => Some(id),
        None => {
            let ms = x.clock.now_ms();
            if ms > last.ms {
                Some(StreamId::new(ms, 0))
            } else {
                last.incr()
            }
        }
    };
    let Some(id) = id.filter(|id| *id > last) else {
        put_back(store, e);
        return x.err(b"ERR The ID specified in XADD is equal or smaller than the target stream top item");
    };
    let fields: Box<[Bytes]> = argv[field_pos..].iter().map(|f| Bytes::from(*f)).collect();
    s.append(id, fields);
    write_id(x.out, id);
    if let Some(how) = a.how {
        s.trim(how, a.approx, a.limit);
    }
    put_back(store, e);
}

/// XTRIM key MAXLEN|MINID [=|~] threshold [LIMIT count]
pub fn xtrim(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(a) = parse_trim_args(x, argv, false) else { return };
    let Ok(found) = take_typed(store, x, argv[1], Kind::Stream) else { return };
    let Some(mut e) = found else { return x.int(0) };
    let n = stream_mut(&mut e).trim(a.how.expect("checked"), a.approx, a.limit);
    put_back(store, e);
    x.int(n);
}

/// XSETID key last-id [ENTRIESADDED n] [MAXDELETEDID id]
pub fn xsetid(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(id) = strict_id(x, argv[2]) else { return };
    let (mut added, mut max_deleted) = (-1i64, StreamId::MIN);
    let mut i = 3;
    while i < argv.len() {
        let more = i + 1 < argv.len();
        if argv[i].eq_ignore_ascii_case(b"entriesadded") && more {
            let Some(n) = x.int_arg(argv[i + 1]) else { return };
            if n < 0 {
                return x.err(b"ERR entries_added must be positive");
            }
            added = n;
        } else if argv[i].eq_ignore_ascii_case(b"maxdeletedid") && more {
            let Some(m) = strict_id(x, argv[i + 1]) else { return };
            if id < m {
                return x.err(b"ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id");
            }
            max_deleted = m;
        } else {
            return x.err(SYNTAX);
        }
        i += 2;
    }
    let Ok(found) = get_typed(store, x, argv[1], Kind::Stream) else { return };
    let Some(e) = found else { return x.err(super::NO_SUCH_KEY) };
    let s = stream(e);
    if !s.is_empty() {
        if id < s.last_valid_id() {
            return x.err(b"ERR The ID specified in XSETID is smaller than the target stream top item");
        }
        if added != -1 && s.len() as i64 > added {
            return x.err(b"ERR The entries_added specified in XSETID is smaller than the target stream length");
        }
    }
    if id < s.max_deleted {
        return x.err(b"ERR The ID specified in XSETID is smaller than current max_deleted_entry_id");
    }
    let mut e = store.take(argv[1], x.clock).expect("live");
    let s = stream_mut(&mut e);
    s.last_id = id;
    if added != -1 {
        s.entries_added = added as u64;
    }
    if !max_deleted.is_zero() {
        s.max_deleted = max_deleted;
    }
    put_back(store, e);
    write_ok(x.out);
}

/// The parsed arguments of XREAD and XREADGROUP.
pub struct ReadArgs<'a> {
    pub count: usize,
    pub group: Option<(&'a [u8], &'a [u8])>,
    pub noack: bool,
    /// Index of the first key; as many IDs follow the keys.
    pub streams_at: usize,
    pub streams: usize,
}

/// `xreadCommand`'s option parsing; `None` after replying an error.
pub fn parse_read_args<'a>(x: &mut Exec, argv: &[&'a [u8]], group_cmd: bool) -> Option<ReadArgs<'a>> {
    let mut a = ReadArgs { count: 0, group: None, noack: false, streams_at: 0, streams: 0 };
    let mut i = 1;
    while i < argv.len() {
        let more = argv.len() - i - 1;
        let o = argv[i];
        let is = |name: &[u8]| o.eq_ignore_ascii_case(name);
        if is(b"block") && more > 0 {
            i += 1;
            // Checked as Redis checks it; the waiting is the node's (xwait).
            match crate::num::parse_i64(argv[i]) {
                None => {
                    x.err(b"ERR timeout is not an integer or out of range");
                    return None;
                }
                Some(t) if t < 0 => {
                    x.err(b"ERR timeout is negative");
                    return None;
                }
                Some(_) => {}
            }
        } else if is(b"count") && more > 0 {
            i += 1;
            a.count = x.int_arg(argv[i])?.max(0) as usize;
        } else if is(b"streams") && more > 0 {
            a.streams_at = i + 1;
            let n = argv.len() - a.streams_at;
            if !n.is_multiple_of(2) {
                let (name, symbol) = if group_cmd { ("xreadgroup", '>') } else { ("xread", '$') };
                x.err(
                    format!(
                        "ERR Unbalanced '{name}' list of streams: for each stream key an ID or '{symbol}' must be specified."
                    )
                    .as_bytes(),
                );
                return None;
            }
            a.streams = n / 2;
            break;
        } else if is(b"group") && more >= 2 {
            if !group_cmd {
                x.err(b"ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead.");
                return None;
            }
            a.group = Some((argv[i + 1], argv[i + 2]));
            i += 2;
        } else if is(b"noack") {
            if !group_cmd {
                x.err(b"ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead.");
                return None;
            }
            a.noack = true;
        } else {
            x.err(SYNTAX);
            return None;
        }
        i += 1;
    }
    if a.streams_at == 0 {
        x.err(SYNTAX);
        return None;
    }
    if group_cmd && a.group.is_none() {
        x.err(b"ERR Missing GROUP option for XREADGROUP");
        return None;
    }
    Some(a)
}

/// XREAD [COUNT n] [BLOCK ms] STREAMS key … id …
pub fn xread(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(a) = parse_read_args(x, argv, false) else { return };
    let mut ids = Vec::with_capacity(a.streams);
    for k in 0..a.streams {
        let key = argv[a.streams_at + k];
        let arg = argv[a.streams_at + a.streams + k];
        let Ok(e) = get_typed(store, x, key, Kind::Stream) else { return };
        if arg == b"$" {
            ids.push(e.map_or(StreamId::MIN, |e| stream(e).last_id));
        } else if arg == b">" {
            return x
                .err(b"ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.");
        } else {
            let Some(id) = strict_id(x, arg) else { return };
            ids.push(id);
        }
    }
    let mut body = Vec::new();
    let mut served = 0;
    for (k, after) in ids.into_iter().enumerate() {
        let key = argv[a.streams_at + k];
        let Some(e) = store.get(key, x.clock) else { continue };
        let s = stream(e);
        if s.is_empty() || s.last_valid_id() <= after {
            continue;
        }
        served += 1;
        write_array_len(&mut body, 2);
        write_bulk(&mut body, key);
        let start = after.incr().unwrap_or(StreamId::MAX);
        write_range(&mut body, s, start, StreamId::MAX, a.count, false);
    }
    if served == 0 {
        return write_null_array(x.out);
    }
    write_array_len(x.out, served);
    x.out.extend_from_slice(&body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_as_redis() {
        assert_eq!(parse_id(b"5", 0, true, false), Some((StreamId::new(5, 0), true)));
        assert_eq!(parse_id(b"5", u64::MAX, false, false), Some((StreamId::new(5, u64::MAX), true)));
        assert_eq!(parse_id(b"5-*", 0, true, true), Some((StreamId::new(5, 0), false)));
        assert_eq!(parse_id(b"5-*", 0, true, false), None);
        assert_eq!(parse_id(b"-", 0, true, false), None);
        assert_eq!(parse_id(b"+", 0, false, false), Some((StreamId::MAX, true)));
        assert_eq!(parse_id(b"1-2-3", 0, true, false), None);
        assert_eq!(parse_id(b"18446744073709551615-1", 0, true, false), Some((StreamId::new(u64::MAX, 1), true)));
        assert_eq!(parse_id(b"-1", 0, true, false), None);
        assert_eq!(parse_id(b"", 0, true, false), None);
    }
}
