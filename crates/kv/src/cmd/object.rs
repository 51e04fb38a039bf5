//! TOUCH, COPY and OBJECT (Redis 7.0's `db.c` and `object.c`).
//!
//! There is one database: COPY's `DB` option accepts only 0 and answers
//! any other index as a Redis started with `databases 1` does. OBJECT
//! reports Redis 7.0's encodings ([`crate::encoding`]); IDLETIME is always
//! 0, since reads are not replicated and so no access time is kept, and
//! FREQ answers as Redis does under the default, non-LFU eviction policy.

use super::{Exec, NOT_INT, SYNTAX};
use crate::encoding::{self, is_int};
use crate::entry::StrEncoding;
use crate::num::parse_i64;
use crate::resp::{write_array_len, write_bulk, write_null, write_simple};
use crate::store::Store;

/// TOUCH key [key ...]: how many of the keys exist (nothing else to do
/// without access times).
pub fn touch(store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    let n = argv[1..].iter().filter(|k| store.get(k, x.clock).is_some()).count();
    x.int(n as i64);
}

/// COPY source destination [DB destination-db] [REPLACE]: the copy keeps
/// the source's expiry and encoding.
pub fn copy(store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    let mut replace = false;
    let mut j = 3;
    while j < argv.len() {
        if argv[j].eq_ignore_ascii_case(b"replace") {
            replace = true;
        } else if argv[j].eq_ignore_ascii_case(b"db") && j + 1 < argv.len() {
            // Redis's getIntFromObjectOrReply, then selectDb.
            match parse_i64(argv[j + 1]) {
                Some(0) => {}
                Some(db) if i32::try_from(db).is_ok() => return x.err(b"ERR DB index is out of range"),
                Some(_) => return x.err(b"ERR value is out of range, value must between -2147483648 and 2147483647"),
                None => return x.err(NOT_INT),
            }
            j += 1;
        } else {
            return x.err(SYNTAX);
        }
        j += 1;
    }
    let (src, dst) = (argv[1], argv[2]);
    if src == dst {
        return x.err(b"ERR source and destination objects are the same");
    }
    let Some(source) = store.get(src, x.clock) else { return x.int(0) };
    let mut copy = source.clone().with_key(dst);
    if copy.str_encoding() == Some(StrEncoding::Auto) && copy.str_value().is_some_and(is_int) {
        // dupStringObject makes a new integer object, never a shared one.
        copy = copy.with_str_encoding(StrEncoding::CopiedInt);
    }
    if store.exists_for_write(dst, x.clock) && !replace {
        return x.int(0);
    }
    store.put(copy);
    x.int(1);
}

const HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

/// OBJECT ENCODING|FREQ|IDLETIME|REFCOUNT key, OBJECT HELP. The session
/// checks the subcommand and its arity first, as Redis's command table
/// does; what reaches here otherwise (a corrupt op) gets the reply of
/// Redis's own fallback.
///
/// IDLETIME answers from the entry's access clock (`crate::evict`), which
/// is this process's own: inside a logged op (MULTI, a script) its answer
/// would differ between the replicas, so there it is an error (`logged`).
pub fn object(store: &Store, x: &mut Exec, argv: &[&[u8]], logged: bool) {
    let sub = argv[1].to_ascii_lowercase();
    let key = match (&sub[..], argv.len()) {
        (b"help", 2) => {
            write_array_len(x.out, HELP.len());
            for line in HELP {
                write_simple(x.out, line.as_bytes());
            }
            return;
        }
        (b"encoding" | b"refcount" | b"idletime" | b"freq", 3) => argv[2],
        _ => {
            let mut msg = b"ERR unknown subcommand or wrong number of arguments for '".to_vec();
            msg.extend_from_slice(&argv[1][..argv[1].len().min(128)]);
            msg.extend_from_slice(b"'. Try OBJECT HELP.");
            return x.err(&msg);
        }
    };
    let Some(e) = store.get(key, x.clock) else { return write_null(x.out) };
    match &sub[..] {
        b"encoding" => write_bulk(x.out, encoding::name(e).as_bytes()),
        b"refcount" => x.int(encoding::refcount(e)),
        b"idletime" if logged => x.err(
            b"ERR understudy answers OBJECT IDLETIME outside MULTI and scripts only: access times are the primary's own, not replicated",
        ),
        b"idletime" => {
            let now_s = x.clock.now_ms() / 1000;
            x.int(now_s.saturating_sub(u64::from(e.lru())) as i64)
        }
        _ => x.err(
            b"ERR An LFU maxmemory policy is not selected, access frequency not tracked. \
              Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ),
    }
}
