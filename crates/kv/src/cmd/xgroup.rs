//! Stream consumer groups: XGROUP, XREADGROUP, XACK, XPENDING, XCLAIM,
//! XAUTOCLAIM. Delivery and idle times come from the recorded clock, so
//! all of these are logged writes (XPENDING too: its idle times read the
//! clock) and both replicas agree on every pending entry.

use super::streams::{interval_id, parse_read_args, stream, stream_mut, strict_id, write_entry, write_id, INVALID_ID};
use super::{get_typed, put_back, Exec, NOT_INT, SYNTAX};
use crate::entry::{AggVal, Bytes, Entry, Kind};
use crate::resp::{write_array_len, write_bulk, write_error, write_null, write_null_array, write_ok};
use crate::store::Store;
use crate::stream::{Group, Nack, StreamId, StreamVal, ENTRIES_READ_INVALID};

fn nogroup(x: &mut Exec, key: &[u8], group: &[u8], suffix: &str) {
    let mut msg = b"NOGROUP No such key '".to_vec();
    msg.extend_from_slice(key);
    msg.extend_from_slice(b"' or consumer group '");
    msg.extend_from_slice(group);
    msg.push(b'\'');
    msg.extend_from_slice(suffix.as_bytes());
    write_error(x.out, &msg);
}

fn subcommand_syntax(x: &mut Exec, sub: &[u8]) {
    let mut msg = b"ERR unknown subcommand or wrong number of arguments for '".to_vec();
    msg.extend_from_slice(&sub[..sub.len().min(128)]);
    msg.extend_from_slice(b"'. Try XGROUP HELP.");
    x.err(&msg);
}

fn entries_read_arg(x: &mut Exec, arg: &[u8]) -> Option<i64> {
    let n = x.int_arg(arg)?;
    if n < 0 && n != ENTRIES_READ_INVALID {
        x.err(b"ERR value for ENTRIESREAD must be positive or -1");
        return None;
    }
    Some(n)
}

/// XGROUP CREATE|SETID|DESTROY|CREATECONSUMER|DELCONSUMER|HELP (arity
/// checked by the session).
pub fn xgroup(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let sub = argv[1].to_ascii_lowercase();
    if sub == b"help" {
        return crate::resp::write_help(
            x.out,
            "XGROUP",
            &[
                "CREATE <key> <groupname> <id|$> [option]",
                "    Create a new consumer group. Options are:",
                "    * MKSTREAM",
                "      Create the empty stream if it does not exist.",
                "    * ENTRIESREAD entries_read",
                "      Set the group's entries_read counter (internal use).",
                "CREATECONSUMER <key> <groupname> <consumer>",
                "    Create a new consumer in the specified group.",
                "DELCONSUMER <key> <groupname> <consumer>",
                "    Remove the specified consumer.",
                "DESTROY <key> <groupname>",
                "    Remove the specified group.",
                "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
                "    Set the current group ID and entries_read counter.",
                "HELP",
                "    Prints this help.",
            ],
        );
    }
    let mut mkstream = false;
    let mut entries_read = ENTRIES_READ_INVALID;
    if sub == b"create" {
        let mut i = 5;
        while i < argv.len() {
            if argv[i].eq_ignore_ascii_case(b"mkstream") {
                mkstream = true;
                i += 1;
            } else if argv[i].eq_ignore_ascii_case(b"entriesread") && i + 1 < argv.len() {
                let Some(n) = entries_read_arg(x, argv[i + 1]) else { return };
                entries_read = n;
                i += 2;
            } else {
                return subcommand_syntax(x, argv[1]);
            }
        }
    } else if sub == b"setid" {
        if argv.len() == 7 {
            if !argv[5].eq_ignore_ascii_case(b"entriesread") {
                return subcommand_syntax(x, argv[1]);
            }
            let Some(n) = entries_read_arg(x, argv[6]) else { return };
            entries_read = n;
        } else if argv.len() != 5 {
            return subcommand_syntax(x, argv[1]);
        }
    }
    let (key, name) = (argv[2], argv[3]);
    let Ok(found) = get_typed(store, x, key, Kind::Stream) else { return };
    let exists = found.is_some();
    if !(exists || (sub == b"create" && mkstream)) {
        return x.err(b"ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.");
    }
    let has_group = found.is_some_and(|e| stream(e).groups.contains_key(name));
    if !has_group && matches!(&sub[..], b"setid" | b"createconsumer" | b"delconsumer") {
        let mut msg = b"NOGROUP No such consumer group '".to_vec();
        msg.extend_from_slice(name);
        msg.extend_from_slice(b"' for key name '");
        msg.extend_from_slice(key);
        msg.push(b'\'');
        return write_error(x.out, &msg);
    }
    let id_arg = |x: &mut Exec, s: Option<&StreamVal>, strict: bool| -> Option<StreamId> {
        if argv[4] == b"$" {
            return Some(s.map_or(StreamId::MIN, |s| s.last_id));
        }
        let parsed = super::streams::parse_id(argv[4], 0, strict, false).map(|(id, _)| id);
        if parsed.is_none() {
            x.err(INVALID_ID);
        }
        parsed
    };
    match (&sub[..], argv.len()) {
        (b"create", 5..=8) => {
            let Some(id) = id_arg(x, found.map(stream), true) else { return };
            if has_group {
                return x.err(b"BUSYGROUP Consumer Group name already exists");
            }
            let mut e = match store.take(key, x.clock) {
                Some(e) => e,
                None => Entry::aggregate(key, None, AggVal::Stream(Box::default())),
            };
            stream_mut(&mut e).groups.insert(name.into(), Group::new(id, entries_read));
            put_back(store, e);
            write_ok(x.out);
        }
        (b"setid", 5 | 7) => {
            let Some(id) = id_arg(x, found.map(stream), false) else { return };
            let mut e = store.take(key, x.clock).expect("live");
            let g = stream_mut(&mut e).groups.get_mut(name).expect("group");
            g.last_id = id;
            g.entries_read = entries_read;
            put_back(store, e);
            write_ok(x.out);
        }
        (b"destroy", 4) => {
            if !has_group {
                return x.int(0);
            }
            let mut e = store.take(key, x.clock).expect("live");
            stream_mut(&mut e).groups.remove(name);
            put_back(store, e);
            x.int(1);
        }
        (b"createconsumer", 5) => {
            let mut e = store.take(key, x.clock).expect("live");
            let g = stream_mut(&mut e).groups.get_mut(name).expect("group");
            let created = !g.consumers.contains_key(argv[4]);
            if created {
                g.consumer(argv[4], x.clock.now_ms());
            }
            put_back(store, e);
            x.int(i64::from(created));
        }
        (b"delconsumer", 5) => {
            let mut e = store.take(key, x.clock).expect("live");
            let g = stream_mut(&mut e).groups.get_mut(name).expect("group");
            let pending = match g.consumers.remove(argv[4]) {
                Some(c) => {
                    for id in &c.pel {
                        g.pel.remove(id);
                    }
                    c.pel.len()
                }
                None => 0,
            };
            put_back(store, e);
            x.int(pending as i64);
        }
        _ => subcommand_syntax(x, argv[1]),
    }
}

/// XREADGROUP GROUP group consumer [COUNT n] [BLOCK ms] [NOACK] STREAMS key … id …
pub fn xreadgroup(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(a) = parse_read_args(x, argv, true) else { return };
    let (group, consumer) = a.group.expect("checked");
    // `None`: `>`, new entries only.
    let mut ids = Vec::with_capacity(a.streams);
    for k in 0..a.streams {
        let key = argv[a.streams_at + k];
        let arg = argv[a.streams_at + a.streams + k];
        let Ok(e) = get_typed(store, x, key, Kind::Stream) else { return };
        if !e.is_some_and(|e| stream(e).groups.contains_key(group)) {
            return nogroup(x, key, group, " in XREADGROUP with GROUP option");
        }
        if arg == b"$" {
            return x.err(b"ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.");
        } else if arg == b">" {
            ids.push(None);
        } else {
            let Some(id) = strict_id(x, arg) else { return };
            ids.push(Some(id));
        }
    }
    let now = x.clock.now_ms();
    let mut body = Vec::new();
    let mut served = 0;
    for (k, id) in ids.into_iter().enumerate() {
        let key = argv[a.streams_at + k];
        let Some(mut e) = store.take(key, x.clock) else { continue };
        let s = stream_mut(&mut e);
        let g_last = s.groups[group].last_id;
        let from = match id {
            Some(id) => Some((id, true)),
            None if !s.is_empty() && s.last_valid_id() > g_last => Some((g_last, false)),
            None => None,
        };
        if let Some((after, history)) = from {
            served += 1;
            write_array_len(&mut body, 2);
            write_bulk(&mut body, key);
            let start = after.incr().unwrap_or(StreamId::MAX);
            s.groups.get_mut(group).expect("group").consumer(consumer, now);
            if history {
                history_range(&mut body, s, group, consumer, start, a.count, now);
            } else {
                deliver(&mut body, s, group, consumer, start, a.count, a.noack, now);
            }
        }
        put_back(store, e);
    }
    if served == 0 {
        return write_null_array(x.out);
    }
    write_array_len(x.out, served);
    x.out.extend_from_slice(&body);
}

/// New entries from `start` to `consumer`, added to the PELs unless `noack`.
#[allow(clippy::too_many_arguments)]
fn deliver(
    out: &mut Vec<u8>,
    s: &mut StreamVal,
    group: &[u8],
    consumer: &[u8],
    start: StreamId,
    count: usize,
    noack: bool,
    now: u64,
) {
    let limit = if count == 0 { usize::MAX } else { count };
    let picked: Vec<StreamId> = s.entries.range(start..).take(limit).map(|(id, _)| *id).collect();
    write_array_len(out, picked.len());
    for id in picked {
        s.group_read(group, id);
        write_entry(out, id, &s.entries[&id]);
        if !noack {
            let g = s.groups.get_mut(group).expect("group");
            let nack = Nack { consumer: consumer.into(), delivery_time: now, delivery_count: 1 };
            if let Some(old) = g.pel.insert(id, nack) {
                if let Some(c) = g.consumers.get_mut(&old.consumer) {
                    c.pel.remove(&id);
                }
            }
            g.consumers.get_mut(consumer).expect("consumer").pel.insert(id);
        }
    }
}

/// The consumer's own pending entries from `start` (a history read).
fn history_range(out: &mut Vec<u8>, s: &mut StreamVal, group: &[u8], consumer: &[u8], start: StreamId, count: usize, now: u64) {
    let limit = if count == 0 { usize::MAX } else { count };
    let g = s.groups.get_mut(group).expect("group");
    let ids: Vec<StreamId> = g.consumers[consumer].pel.range(start..).take(limit).copied().collect();
    write_array_len(out, ids.len());
    for id in ids {
        match s.entries.get(&id) {
            Some(fields) => {
                write_entry(out, id, fields);
                let nack = s.groups.get_mut(group).expect("group").pel.get_mut(&id).expect("pending");
                nack.delivery_time = now;
                nack.delivery_count += 1;
            }
            None => {
                write_array_len(out, 2);
                write_id(out, id);
                write_null_array(out);
            }
        }
    }
}

/// XACK key group id [id …]
pub fn xack(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Ok(found) = get_typed(store, x, argv[1], Kind::Stream) else { return };
    let has_group = found.is_some_and(|e| stream(e).groups.contains_key(argv[2]));
    let mut ids = Vec::with_capacity(argv.len() - 3);
    for a in &argv[3..] {
        let Some(id) = strict_id(x, a) else { return };
        ids.push(id);
    }
    if !has_group {
        return x.int(0);
    }
    let mut e = store.take(argv[1], x.clock).expect("live");
    let g = stream_mut(&mut e).groups.get_mut(argv[2]).expect("group");
    let acked = ids.into_iter().filter(|id| g.ack(*id)).count();
    put_back(store, e);
    x.int(acked as i64);
}

/// XPENDING key group [[IDLE min-idle] start end count [consumer]]
pub fn xpending(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let n = argv.len();
    if n != 3 && !(6..=9).contains(&n) {
        return x.err(SYNTAX);
    }
    let mut range = None;
    let mut consumer = None;
    let mut min_idle = 0;
    if n >= 6 {
        let mut at = 3;
        if argv[3].eq_ignore_ascii_case(b"idle") {
            let Some(v) = x.int_arg(argv[4]) else { return };
            min_idle = v;
            if n < 8 {
                return x.err(SYNTAX);
            }
            at += 2;
        }
        let Some(count) = crate::num::parse_i64(argv[at + 2]) else { return x.err(NOT_INT) };
        let Some(start) = interval_id(x, argv[at], false) else { return };
        let Some(end) = interval_id(x, argv[at + 1], true) else { return };
        range = Some((start, end, count.max(0) as usize));
        consumer = argv.get(at + 3).copied();
    }
    let Ok(found) = get_typed(store, x, argv[1], Kind::Stream) else { return };
    let Some(g) = found.and_then(|e| stream(e).groups.get(argv[2])) else {
        return nogroup(x, argv[1], argv[2], "");
    };
    let Some((start, end, count)) = range else {
        write_array_len(x.out, 4);
        x.int(g.pel.len() as i64);
        let (Some(first), Some(last)) = (g.pel.keys().next(), g.pel.keys().next_back()) else {
            write_null(x.out);
            write_null(x.out);
            return write_null_array(x.out);
        };
        write_id(x.out, *first);
        write_id(x.out, *last);
        let holders: Vec<_> = g.consumers.iter().filter(|(_, c)| !c.pel.is_empty()).collect();
        write_array_len(x.out, holders.len());
        for (name, c) in holders {
            write_array_len(x.out, 2);
            write_bulk(x.out, name);
            write_bulk(x.out, c.pel.len().to_string().as_bytes());
        }
        return;
    };
    let ids: Vec<StreamId> = match consumer {
        Some(name) => match g.consumers.get(name) {
            Some(c) => c.pel.range(start..).copied().collect(),
            None => return write_array_len(x.out, 0),
        },
        None => g.pel.range(start..).map(|(id, _)| *id).collect(),
    };
    let now = x.clock.now_ms() as i64;
    let mut rows = Vec::new();
    for id in ids.into_iter().take_while(|id| *id <= end) {
        if rows.len() >= count {
            break;
        }
        let nack = &g.pel[&id];
        let idle = now - nack.delivery_time as i64;
        if min_idle != 0 && idle < min_idle {
            continue;
        }
        rows.push((id, nack, idle.max(0)));
    }
    write_array_len(x.out, rows.len());
    for (id, nack, idle) in rows {
        write_array_len(x.out, 4);
        write_id(x.out, id);
        write_bulk(x.out, &nack.consumer);
        x.int(idle);
        x.int(nack.delivery_count as i64);
    }
}

/// XCLAIM key group consumer min-idle id [id …] [IDLE ms] [TIME ms]
/// [RETRYCOUNT n] [FORCE] [JUSTID] [LASTID id]
pub fn xclaim(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Ok(found) = get_typed(store, x, argv[1], Kind::Stream) else { return };
    if !found.is_some_and(|e| stream(e).groups.contains_key(argv[2])) {
        return nogroup(x, argv[1], argv[2], "");
    }
    let Some(min_idle) = crate::num::parse_i64(argv[4]) else {
        return x.err(b"ERR Invalid min-idle-time argument for XCLAIM");
    };
    let min_idle = min_idle.max(0);
    let mut ids = Vec::new();
    let mut j = 5;
    while j < argv.len() {
        let Some((id, _)) = super::streams::parse_id(argv[j], 0, true, false) else { break };
        ids.push(id);
        j += 1;
    }
    let now = x.clock.now_ms() as i64;
    let (mut force, mut justid, mut retry, mut delivery, mut last_id) = (false, false, -1i64, -1i64, StreamId::MIN);
    while j < argv.len() {
        let more = j + 1 < argv.len();
        let opt = argv[j];
        let is = |n: &[u8]| opt.eq_ignore_ascii_case(n);
        let int = |x: &mut Exec, what: &str| {
            let v = crate::num::parse_i64(argv[j + 1]);
            if v.is_none() {
                x.err(format!("ERR Invalid {what} option argument for XCLAIM").as_bytes());
            }
            v
        };
        if is(b"force") {
            force = true;
        } else if is(b"justid") {
            justid = true;
        } else if is(b"idle") && more {
            let Some(v) = int(x, "IDLE") else { return };
            delivery = now.wrapping_sub(v);
            j += 1;
        } else if is(b"time") && more {
            let Some(v) = int(x, "TIME") else { return };
            delivery = v;
            j += 1;
        } else if is(b"retrycount") && more {
            let Some(v) = int(x, "RETRYCOUNT") else { return };
            retry = v;
            j += 1;
        } else if is(b"lastid") && more {
            let Some(id) = strict_id(x, argv[j + 1]) else { return };
            last_id = id;
            j += 1;
        } else {
            let mut msg = b"ERR Unrecognized XCLAIM option '".to_vec();
            msg.extend_from_slice(opt);
            msg.push(b'\'');
            return x.err(&msg);
        }
        j += 1;
    }
    if delivery == -1 || delivery < 0 || delivery > now {
        delivery = now;
    }
    let mut e = store.take(argv[1], x.clock).expect("live");
    let s = stream_mut(&mut e);
    let name = argv[3];
    let mut body = Vec::new();
    let mut n = 0;
    let g = s.groups.get_mut(argv[2]).expect("group");
    if last_id > g.last_id {
        g.last_id = last_id;
    }
    for id in ids {
        let g = s.groups.get_mut(argv[2]).expect("group");
        let Some(fields) = s.entries.get(&id) else {
            g.ack(id);
            continue;
        };
        let forced = force && !g.pel.contains_key(&id);
        if forced {
            g.pel.insert(id, Nack { consumer: Default::default(), delivery_time: now as u64, delivery_count: 1 });
        }
        let Some(nack) = g.pel.get(&id) else { continue };
        if !forced && min_idle != 0 && now - (nack.delivery_time as i64) < min_idle {
            continue;
        }
        let claim =
            Claim { name, now: now as u64, delivery: delivery as u64, retry: (retry >= 0).then_some(retry as u64), justid };
        claim.take(g, id, fields, &mut body);
        n += 1;
    }
    put_back(store, e);
    write_array_len(x.out, n);
    x.out.extend_from_slice(&body);
}

/// XAUTOCLAIM key group consumer min-idle start [COUNT n] [JUSTID]
pub fn xautoclaim(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let Some(min_idle) = crate::num::parse_i64(argv[4]) else {
        return x.err(b"ERR Invalid min-idle-time argument for XAUTOCLAIM");
    };
    let min_idle = min_idle.max(0);
    let Some(start) = interval_id(x, argv[5], false) else { return };
    let (mut count, mut justid) = (100i64, false);
    let mut j = 6;
    while j < argv.len() {
        if argv[j].eq_ignore_ascii_case(b"count") && j + 1 < argv.len() {
            match crate::num::parse_i64(argv[j + 1]) {
                Some(c) if (1..=i64::MAX / 10 / 16).contains(&c) => count = c,
                _ => return x.err(b"ERR COUNT must be > 0"),
            }
            j += 1;
        } else if argv[j].eq_ignore_ascii_case(b"justid") {
            justid = true;
        } else {
            return x.err(SYNTAX);
        }
        j += 1;
    }
    let Ok(found) = get_typed(store, x, argv[1], Kind::Stream) else { return };
    if !found.is_some_and(|e| stream(e).groups.contains_key(argv[2])) {
        return nogroup(x, argv[1], argv[2], "");
    }
    let now = x.clock.now_ms();
    let mut e = store.take(argv[1], x.clock).expect("live");
    let s = stream_mut(&mut e);
    let name = argv[3];
    let mut attempts = count * 10;
    let mut cursor = start;
    let mut eof = false;
    let (mut body, mut n, mut deleted) = (Vec::new(), 0, Vec::new());
    loop {
        if attempts == 0 {
            break;
        }
        attempts -= 1;
        if count == 0 {
            break;
        }
        let g = s.groups.get_mut(argv[2]).expect("group");
        let Some((&id, nack)) = g.pel.range(cursor..).next() else {
            eof = true;
            break;
        };
        let next = id.incr();
        match s.entries.get(&id) {
            // Deleted from the stream: dropped from the PEL, reported.
            None => {
                g.ack(id);
                deleted.push(id);
                count -= 1;
            }
            Some(fields) => {
                let idle = now as i64 - nack.delivery_time as i64;
                if min_idle == 0 || idle >= min_idle {
                    Claim { name, now, delivery: now, retry: None, justid }.take(g, id, fields, &mut body);
                    n += 1;
                    count -= 1;
                }
            }
        }
        match next {
            Some(c) => cursor = c,
            None => {
                eof = true;
                break;
            }
        }
    }
    let g = &s.groups[argv[2]];
    let next = if eof { None } else { g.pel.range(cursor..).next().map(|(id, _)| *id) };
    write_array_len(x.out, 3);
    write_id(x.out, next.unwrap_or(StreamId::MIN));
    write_array_len(x.out, n);
    x.out.extend_from_slice(&body);
    write_array_len(x.out, deleted.len());
    for id in deleted {
        write_id(x.out, id);
    }
    put_back(store, e);
}

/// One pending entry handed to a consumer (XCLAIM, XAUTOCLAIM).
struct Claim<'a> {
    name: &'a [u8],
    now: u64,
    /// Its new delivery time (XCLAIM's IDLE/TIME, else now).
    delivery: u64,
    /// XCLAIM's RETRYCOUNT; otherwise one more delivery, unless JUSTID.
    retry: Option<u64>,
    justid: bool,
}

impl Claim<'_> {
    /// Gives entry `id` (its `fields`) to the consumer and writes it, or
    /// only its ID with JUSTID, to `body`.
    fn take(&self, g: &mut Group, id: StreamId, fields: &[Bytes], body: &mut Vec<u8>) {
        g.consumer(self.name, self.now);
        g.assign(id, self.name);
        let nack = g.pel.get_mut(&id).expect("a claimed entry is pending");
        nack.delivery_time = self.delivery;
        match self.retry {
            Some(r) => nack.delivery_count = r,
            None if !self.justid => nack.delivery_count += 1,
            None => {}
        }
        if self.justid {
            write_id(body, id);
        } else {
            write_entry(body, id, fields);
        }
    }
}
