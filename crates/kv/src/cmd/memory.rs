//! MEMORY USAGE, DOCTOR, MALLOC-STATS, PURGE and HELP.
//!
//! MEMORY USAGE answers an estimate of the bytes the key takes in
//! understudy's store, not Redis's figure (which depends on Redis's
//! encodings and allocator): the table slot, the key and value blocks
//! rounded up to 16 bytes, and per element of an aggregate its blocks and
//! its share of the hash table, deque or sorted blocks holding it. As in
//! Redis, at most SAMPLES elements (default 5, 0: all) of a list or sorted
//! set are measured and their average stands for every element; every
//! element of a hash or set is measured (their order differs between
//! replicas, so a sample would too, and MEMORY USAGE inside a transaction
//! runs on both). MEMORY STATS is not answered: a node's memory figures
//! are in INFO memory.

use super::{Exec, NOT_INT, SYNTAX};
use crate::entry::{aggregate_base, elements_bytes, string_bytes, Entry};
use crate::resp::{write_array_len, write_bulk, write_int, write_null, write_ok, write_simple};
use crate::store::Store;

/// What MEMORY USAGE measures by default (Redis's OBJ_COMPUTE_SIZE_DEF_SAMPLES).
const DEFAULT_SAMPLES: u64 = 5;

/// The estimated bytes of `e`, measuring up to `samples` elements.
fn usage(e: &Entry, samples: u64) -> u64 {
    match (e.str_block_len(), e.agg()) {
        (Some(n), _) => string_bytes(n),
        (None, Some(val)) => aggregate_base(e.key().len()) + elements_bytes(val, samples),
        (None, None) => unreachable!("an entry is a string or an aggregate"),
    }
}

/// MEMORY <subcommand>, its arity checked by the session.
pub fn memory(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    match &argv[1].to_ascii_lowercase()[..] {
        b"usage" => {
            let mut samples = DEFAULT_SAMPLES;
            let mut j = 3;
            while j < argv.len() {
                if !(argv[j].eq_ignore_ascii_case(b"samples") && j + 1 < argv.len()) {
                    return x.err(SYNTAX);
                }
                samples = match crate::num::parse_i64(argv[j + 1]) {
                    None => return x.err(NOT_INT),
                    Some(n) if n < 0 => return x.err(SYNTAX),
                    Some(0) => u64::MAX,
                    Some(n) => n as u64,
                };
                j += 2;
            }
            match store.get(argv[2], x.clock) {
                None => write_null(x.out),
                Some(e) => write_int(x.out, usage(e, samples) as i64),
            }
        }
        b"doctor" => write_bulk(
            x.out,
            b"Hi Sam, I can't find any memory issue in your instance. I can only account for what occurs on this base.",
        ),
        b"malloc-stats" => write_bulk(x.out, b"Stats not supported for the current allocator"),
        b"purge" => write_ok(x.out),
        b"stats" => x.err(b"ERR MEMORY STATS is not supported by understudy: see INFO memory"),
        _ => {
            write_array_len(x.out, HELP.len() + 1);
            write_simple(x.out, b"MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:");
            HELP.iter().for_each(|l| write_simple(x.out, l.as_bytes()));
        }
    }
}

const HELP: &[&str] = &[
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
    "HELP",
    "    Prints this help.",
];
