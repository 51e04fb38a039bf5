//! XINFO STREAM [FULL [COUNT n]], XINFO GROUPS, XINFO CONSUMERS and XINFO
//! HELP, as Redis 7.0's `xinfoCommand` in `t_stream.c` replies them (its
//! subcommands' arities checked by the session, as Redis's command table
//! does). Maps are written as flat RESP2 arrays; `resp3` types them.
//!
//! XINFO is a read: nothing here changes state. The idle times of XINFO
//! CONSUMERS are measured against the read's clock (the replicated clock
//! on the primary), the seen and delivery times of XINFO STREAM FULL are
//! the recorded ones.

use super::keyspace::c_str;
use super::streams::{stream, write_id, write_range};
use super::{get_typed, Exec, NO_SUCH_KEY};
use crate::entry::Kind;
use crate::resp::{write_array_len, write_bulk, write_error, write_int, write_null};
use crate::store::Store;
use crate::stream::{Group, StreamId, StreamVal, ENTRIES_READ_INVALID};

/// `addReplySubcommandSyntaxError`.
fn subcommand_syntax(x: &mut Exec, sub: &[u8]) {
    let mut msg = b"ERR unknown subcommand or wrong number of arguments for '".to_vec();
    let sub = c_str(sub);
    msg.extend_from_slice(&sub[..sub.len().min(128)]);
    msg.extend_from_slice(b"'. Try XINFO HELP.");
    x.err(&msg);
}

/// A C-string comparison (`strcasecmp` of an argument).
fn is(arg: &[u8], word: &str) -> bool {
    c_str(arg).eq_ignore_ascii_case(word.as_bytes())
}

/// XINFO CONSUMERS|GROUPS|STREAM|HELP.
pub fn xinfo(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    if is(argv[1], "help") {
        if argv.len() != 2 {
            return subcommand_syntax(x, argv[1]);
        }
        return crate::resp::write_help(
            x.out,
            "XINFO",
            &[
                "CONSUMERS <key> <groupname>",
                "    Show consumers of <groupname>.",
                "GROUPS <key>",
                "    Show the stream consumer groups.",
                "STREAM <key> [FULL [COUNT <count>]",
                "    Show information about the stream.",
                "HELP",
                "    Prints this help.",
            ],
        );
    }
    if argv.len() < 3 {
        return subcommand_syntax(x, argv[1]);
    }
    let key = argv[2];
    let Ok(found) = get_typed(store, x, key, Kind::Stream) else { return };
    let Some(e) = found else { return x.err(NO_SUCH_KEY) };
    let s = stream(e);
    if is(argv[1], "consumers") && argv.len() == 4 {
        let Some(g) = s.groups.get(argv[3]) else {
            let mut msg = b"NOGROUP No such consumer group '".to_vec();
            msg.extend_from_slice(c_str(argv[3]));
            msg.extend_from_slice(b"' for key name '");
            msg.extend_from_slice(c_str(key));
            msg.push(b'\'');
            return write_error(x.out, &msg);
        };
        let now = x.clock.now_ms();
        write_array_len(x.out, g.consumers.len());
        for (name, c) in &g.consumers {
            write_array_len(x.out, 6);
            write_bulk(x.out, b"name");
            write_bulk(x.out, name);
            write_bulk(x.out, b"pending");
            write_int(x.out, c.pel.len() as i64);
            write_bulk(x.out, b"idle");
            write_int(x.out, (now as i64).saturating_sub(c.seen_time as i64).max(0));
        }
    } else if is(argv[1], "groups") && argv.len() == 3 {
        write_array_len(x.out, s.groups.len());
        for (name, g) in &s.groups {
            write_array_len(x.out, 12);
            write_bulk(x.out, b"name");
            write_bulk(x.out, name);
            write_bulk(x.out, b"consumers");
            write_int(x.out, g.consumers.len() as i64);
            write_bulk(x.out, b"pending");
            write_int(x.out, g.pel.len() as i64);
            write_bulk(x.out, b"last-delivered-id");
            write_id(x.out, g.last_id);
            write_counters(x.out, s, g);
        }
    } else if is(argv[1], "stream") {
        stream_info(x, s, argv);
    } else {
        subcommand_syntax(x, argv[1]);
    }
}

/// A group's `entries-read` and `lag`, each nil when unknown.
fn write_counters(out: &mut Vec<u8>, s: &StreamVal, g: &Group) {
    write_bulk(out, b"entries-read");
    if g.entries_read == ENTRIES_READ_INVALID {
        write_null(out);
    } else {
        write_int(out, g.entries_read);
    }
    write_bulk(out, b"lag");
    match s.group_lag(g) {
        Some(lag) => write_int(out, lag),
        None => write_null(out),
    }
}

/// XINFO STREAM key [FULL [COUNT count]] (`xinfoReplyWithStreamInfo`).
fn stream_info(x: &mut Exec, s: &StreamVal, argv: &[&[u8]]) {
    let opts = &argv[3..];
    let mut count: i64 = 10;
    let full = !opts.is_empty();
    if full {
        if (opts.len() != 1 && opts.len() != 3) || !is(opts[0], "full") {
            return subcommand_syntax(x, argv[1]);
        }
        if opts.len() == 3 {
            if !is(opts[1], "count") {
                return subcommand_syntax(x, argv[1]);
            }
            let Some(n) = x.int_arg(opts[2]) else { return };
            count = if n < 0 { 10 } else { n };
        }
    }
    let out = &mut *x.out;
    write_array_len(out, if full { 18 } else { 20 });
    write_bulk(out, b"length");
    write_int(out, s.len() as i64);
    write_bulk(out, b"radix-tree-keys");
    write_int(out, s.rax_keys() as i64);
    write_bulk(out, b"radix-tree-nodes");
    write_int(out, s.rax_nodes() as i64);
    for (name, id) in [(&b"last-generated-id"[..], s.last_id), (b"max-deleted-entry-id", s.max_deleted)] {
        write_bulk(out, name);
        write_id(out, id);
    }
    write_bulk(out, b"entries-added");
    write_int(out, s.entries_added as i64);
    write_bulk(out, b"recorded-first-entry-id");
    write_id(out, s.first_id);
    if !full {
        write_bulk(out, b"groups");
        write_int(out, s.groups.len() as i64);
        let edges = [s.entries.iter().next(), s.entries.iter().next_back()];
        for (name, edge) in [&b"first-entry"[..], b"last-entry"].into_iter().zip(edges) {
            write_bulk(out, name);
            match edge {
                Some((id, fields)) => super::streams::write_entry(out, *id, fields),
                None => write_null(out),
            }
        }
        return;
    }
    // COUNT 0: everything.
    let limit = if count == 0 { usize::MAX } else { count as usize };
    write_bulk(out, b"entries");
    write_range(out, s, StreamId::MIN, StreamId::MAX, count as usize, false);
    write_bulk(out, b"groups");
    write_array_len(out, s.groups.len());
    for (name, g) in &s.groups {
        write_array_len(out, 14);
        write_bulk(out, b"name");
        write_bulk(out, name);
        write_bulk(out, b"last-delivered-id");
        write_id(out, g.last_id);
        write_counters(out, s, g);
        write_bulk(out, b"pel-count");
        write_int(out, g.pel.len() as i64);
        write_bulk(out, b"pending");
        write_array_len(out, g.pel.len().min(limit));
        for (id, nack) in g.pel.iter().take(limit) {
            write_array_len(out, 4);
            write_id(out, *id);
            write_bulk(out, &nack.consumer);
            write_int(out, nack.delivery_time as i64);
            write_int(out, nack.delivery_count as i64);
        }
        write_bulk(out, b"consumers");
        write_array_len(out, g.consumers.len());
        for (cname, c) in &g.consumers {
            write_array_len(out, 8);
            write_bulk(out, b"name");
            write_bulk(out, cname);
            write_bulk(out, b"seen-time");
            write_int(out, c.seen_time as i64);
            write_bulk(out, b"pel-count");
            write_int(out, c.pel.len() as i64);
            write_bulk(out, b"pending");
            write_array_len(out, c.pel.len().min(limit));
            for id in c.pel.iter().take(limit) {
                let nack = &g.pel[id];
                write_array_len(out, 3);
                write_id(out, *id);
                write_int(out, nack.delivery_time as i64);
                write_int(out, nack.delivery_count as i64);
            }
        }
    }
}
