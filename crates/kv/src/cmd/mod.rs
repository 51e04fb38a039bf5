//! The command table and the commands that touch the keyspace.
//!
//! Every command Redis clients may send is named here once, with Redis 7.0's
//! arity, flags and key positions (checked against a real Redis by the
//! differential test), and classified as a read, a write or a session
//! command. Reads run on `&Store` and writes on `&mut Store`, both with a
//! [`Clock`] that hands out time only when an entry with an expiry is
//! touched.
//!
//! # Layout
//!
//! - [`strings`]: GET/SET and friends, counters.
//! - [`keyspace`]: DEL/EXISTS/TYPE/RENAME/KEYS, expiry commands, FLUSHALL.
//! - [`floats`]: INCRBYFLOAT, HINCRBYFLOAT in emulated `long double`.
//! - [`bits`], [`bitfield`]: bitmaps in string values.
//! - [`random`]: SPOP, SRANDMEMBER, HRANDFIELD, RANDOMKEY.
//! - [`object`]: TOUCH, COPY, OBJECT; [`lcs`]: LCS; [`sort`]: SORT, SORT_RO.
//! - [`memory`]: MEMORY USAGE and its other subcommands.
//! - [`hashes`], [`lists`], [`sets`]: the aggregate types; [`listops`] and
//!   [`setops`] more of them.
//! - [`zsets`], [`zrange`], [`zsetops`]: sorted sets (one member or end,
//!   ranges, algebra).
//! - [`scan`]: SCAN and its per-type forms.
//! - [`hll`]: PFADD, PFCOUNT, PFMERGE on HyperLogLog strings.
//! - [`streams`], [`xgroup`], [`xinfo`]: streams, their consumer groups,
//!   XINFO.
//! - [`dump`]: DUMP and RESTORE in Redis 7.0's serialization (`crate::rdb`).
//! - [`mpop`]: LMPOP and the arguments of the multi-key pops;
//!   [`blocking`]: the blocking pops' non-blocking forms.

pub mod bitfield;
pub mod bits;
pub mod blocking;
pub mod dump;
pub mod floats;
pub mod hashes;
pub mod hll;
pub mod keyspace;
pub mod lcs;
pub mod listops;
pub mod lists;
pub mod memory;
pub mod mpop;
pub mod object;
pub mod random;
pub mod scan;
pub mod setops;
pub mod sets;
pub mod sort;
pub mod streams;
pub mod strings;
pub mod xgroup;
pub mod xinfo;
pub mod xwait;
pub mod zrange;
pub mod zsetops;
pub mod zsets;

use std::collections::HashMap;
use std::sync::LazyLock;

use foldhash::fast::FixedState;

use crate::entry::{AggVal, Entry, Kind as EntryKind};
use crate::resp::{write_error, write_int};
use crate::store::{Clock, Store};

/// Who executes a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reads the keyspace only; the node runs it with `Kv::read`.
    Read,
    /// Changes the keyspace; logged and applied on both replicas.
    Write,
    /// Connection state only (PING, HELLO, MULTI…); handled by the session.
    Session,
}

/// One row of the command table.
#[derive(Debug)]
pub struct Spec {
    pub cmd: Cmd,
    /// Lowercase name, as in error messages and `COMMAND`.
    pub name: &'static str,
    /// Redis arity: `n` exactly `n` arguments (name included), `-n` at least `n`.
    pub arity: i32,
    pub kind: Kind,
    /// Redis's command flags, for `COMMAND` replies.
    pub flags: &'static [&'static str],
    /// First key, last key, key step (legacy `COMMAND` key positions).
    pub keys: (i8, i8, i8),
}

impl Spec {
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }
}

macro_rules! commands {
    ($( $variant:ident $name:literal $arity:literal $kind:ident [$($flag:literal)*] ($f:literal $l:literal $s:literal); )*) => {
        /// A known command; its discriminant is its index in [`SPECS`] and
        /// the byte that names it in an encoded op.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        pub enum Cmd { $($variant),* }

        /// The command table, indexed by `Cmd as usize`.
        pub static SPECS: &[Spec] = &[
            $(Spec { cmd: Cmd::$variant, name: $name, arity: $arity, kind: Kind::$kind,
                     flags: &[$($flag),*], keys: ($f, $l, $s) }),*
        ];
    };
}

commands! {
    Get "get" 2 Read ["readonly" "fast"] (1 1 1);
    Mget "mget" -2 Read ["readonly" "fast"] (1 -1 1);
    Exists "exists" -2 Read ["readonly" "fast"] (1 -1 1);
    Strlen "strlen" 2 Read ["readonly" "fast"] (1 1 1);
    Getrange "getrange" 4 Read ["readonly"] (1 1 1);
    Ttl "ttl" 2 Read ["readonly" "fast"] (1 1 1);
    Pttl "pttl" 2 Read ["readonly" "fast"] (1 1 1);
    Expiretime "expiretime" 2 Read ["readonly" "fast"] (1 1 1);
    Pexpiretime "pexpiretime" 2 Read ["readonly" "fast"] (1 1 1);
    Type "type" 2 Read ["readonly" "fast"] (1 1 1);
    Hget "hget" 3 Read ["readonly" "fast"] (1 1 1);
    Hmget "hmget" -3 Read ["readonly" "fast"] (1 1 1);
    Hlen "hlen" 2 Read ["readonly" "fast"] (1 1 1);
    Hexists "hexists" 3 Read ["readonly" "fast"] (1 1 1);
    Hgetall "hgetall" 2 Read ["readonly"] (1 1 1);
    Hkeys "hkeys" 2 Read ["readonly"] (1 1 1);
    Hvals "hvals" 2 Read ["readonly"] (1 1 1);
    Hstrlen "hstrlen" 3 Read ["readonly" "fast"] (1 1 1);
    Llen "llen" 2 Read ["readonly" "fast"] (1 1 1);
    Lrange "lrange" 4 Read ["readonly"] (1 1 1);
    Lindex "lindex" 3 Read ["readonly"] (1 1 1);
    Smembers "smembers" 2 Read ["readonly"] (1 1 1);
    Sismember "sismember" 3 Read ["readonly" "fast"] (1 1 1);
    Smismember "smismember" -3 Read ["readonly" "fast"] (1 1 1);
    Scard "scard" 2 Read ["readonly" "fast"] (1 1 1);
    Dbsize "dbsize" 1 Read ["readonly" "fast"] (0 0 0);
    Time "time" 1 Read ["loading" "stale" "fast"] (0 0 0);
    Keys "keys" 2 Read ["readonly"] (0 0 0);
    Set "set" -3 Write ["write" "denyoom"] (1 1 1);
    Setnx "setnx" 3 Write ["write" "denyoom" "fast"] (1 1 1);
    Setex "setex" 4 Write ["write" "denyoom"] (1 1 1);
    Psetex "psetex" 4 Write ["write" "denyoom"] (1 1 1);
    Getset "getset" 3 Write ["write" "denyoom" "fast"] (1 1 1);
    Getdel "getdel" 2 Write ["write" "fast"] (1 1 1);
    Getex "getex" -2 Write ["write" "fast"] (1 1 1);
    Mset "mset" -3 Write ["write" "denyoom"] (1 -1 2);
    Msetnx "msetnx" -3 Write ["write" "denyoom"] (1 -1 2);
    Del "del" -2 Write ["write"] (1 -1 1);
    Unlink "unlink" -2 Write ["write" "fast"] (1 -1 1);
    Incr "incr" 2 Write ["write" "denyoom" "fast"] (1 1 1);
    Incrby "incrby" 3 Write ["write" "denyoom" "fast"] (1 1 1);
    Decr "decr" 2 Write ["write" "denyoom" "fast"] (1 1 1);
    Decrby "decrby" 3 Write ["write" "denyoom" "fast"] (1 1 1);
    Append "append" 3 Write ["write" "denyoom" "fast"] (1 1 1);
    Setrange "setrange" 4 Write ["write" "denyoom"] (1 1 1);
    Expire "expire" -3 Write ["write" "fast"] (1 1 1);
    Pexpire "pexpire" -3 Write ["write" "fast"] (1 1 1);
    Expireat "expireat" -3 Write ["write" "fast"] (1 1 1);
    Pexpireat "pexpireat" -3 Write ["write" "fast"] (1 1 1);
    Persist "persist" 2 Write ["write" "fast"] (1 1 1);
    Hset "hset" -4 Write ["write" "denyoom" "fast"] (1 1 1);
    Hmset "hmset" -4 Write ["write" "denyoom" "fast"] (1 1 1);
    Hsetnx "hsetnx" 4 Write ["write" "denyoom" "fast"] (1 1 1);
    Hdel "hdel" -3 Write ["write" "fast"] (1 1 1);
    Hincrby "hincrby" 4 Write ["write" "denyoom" "fast"] (1 1 1);
    Lpush "lpush" -3 Write ["write" "denyoom" "fast"] (1 1 1);
    Rpush "rpush" -3 Write ["write" "denyoom" "fast"] (1 1 1);
    Lpushx "lpushx" -3 Write ["write" "denyoom" "fast"] (1 1 1);
    Rpushx "rpushx" -3 Write ["write" "denyoom" "fast"] (1 1 1);
    Lpop "lpop" -2 Write ["write" "fast"] (1 1 1);
    Rpop "rpop" -2 Write ["write" "fast"] (1 1 1);
    Lset "lset" 4 Write ["write" "denyoom"] (1 1 1);
    Sadd "sadd" -3 Write ["write" "denyoom" "fast"] (1 1 1);
    Srem "srem" -3 Write ["write" "fast"] (1 1 1);
    Flushall "flushall" -1 Write ["write"] (0 0 0);
    Flushdb "flushdb" -1 Write ["write"] (0 0 0);
    Rename "rename" 3 Write ["write"] (1 2 1);
    Renamenx "renamenx" 3 Write ["write" "fast"] (1 2 1);
    Ping "ping" -1 Session ["fast"] (0 0 0);
    Echo "echo" 2 Session ["loading" "stale" "fast"] (0 0 0);
    Quit "quit" -1 Session ["noscript" "loading" "stale" "fast" "no_auth" "allow_busy"] (0 0 0);
    Hello "hello" -1 Session ["noscript" "loading" "stale" "fast" "no_auth" "allow_busy"] (0 0 0);
    Select "select" 2 Session ["loading" "stale" "fast"] (0 0 0);
    Client "client" -2 Session [] (0 0 0);
    Config "config" -2 Session [] (0 0 0);
    Command "command" -1 Session ["loading" "stale"] (0 0 0);
    Multi "multi" 1 Session ["noscript" "loading" "stale" "fast" "allow_busy"] (0 0 0);
    Exec "exec" 1 Session ["noscript" "loading" "stale" "skip_slowlog"] (0 0 0);
    Discard "discard" 1 Session ["noscript" "loading" "stale" "fast" "allow_busy"] (0 0 0);
    Watch "watch" -2 Session ["noscript" "loading" "stale" "fast" "allow_busy"] (1 -1 1);
    Unwatch "unwatch" 1 Session ["noscript" "loading" "stale" "fast" "allow_busy"] (0 0 0);
    Reset "reset" 1 Session ["noscript" "loading" "stale" "fast" "no_auth" "allow_busy"] (0 0 0);
    Info "info" -1 Session ["loading" "stale"] (0 0 0);
    Lastsave "lastsave" 1 Session ["loading" "stale" "fast"] (0 0 0);
    Role "role" 1 Session ["noscript" "loading" "stale" "fast"] (0 0 0);
    Wait "wait" 3 Session ["noscript"] (0 0 0);
    Auth "auth" -2 Session ["noscript" "loading" "stale" "fast" "no_auth" "allow_busy"] (0 0 0);
    // Appended: a command's discriminant names it in encoded ops.
    Scan "scan" -2 Read ["readonly"] (0 0 0);
    Hscan "hscan" -3 Read ["readonly"] (1 1 1);
    Sscan "sscan" -3 Read ["readonly"] (1 1 1);
    Sunion "sunion" -2 Read ["readonly"] (1 -1 1);
    Sinter "sinter" -2 Read ["readonly"] (1 -1 1);
    Sdiff "sdiff" -2 Read ["readonly"] (1 -1 1);
    Sintercard "sintercard" -3 Read ["readonly" "movablekeys"] (0 0 0);
    Sunionstore "sunionstore" -3 Write ["write" "denyoom"] (1 -1 1);
    Sinterstore "sinterstore" -3 Write ["write" "denyoom"] (1 -1 1);
    Sdiffstore "sdiffstore" -3 Write ["write" "denyoom"] (1 -1 1);
    Smove "smove" 4 Write ["write" "fast"] (1 2 1);
    Ltrim "ltrim" 4 Write ["write"] (1 1 1);
    Lrem "lrem" 4 Write ["write"] (1 1 1);
    Linsert "linsert" 5 Write ["write" "denyoom"] (1 1 1);
    Lpos "lpos" -3 Read ["readonly"] (1 1 1);
    Rpoplpush "rpoplpush" 3 Write ["write" "denyoom"] (1 2 1);
    Lmove "lmove" 5 Write ["write" "denyoom"] (1 2 1);
    Subscribe "subscribe" -2 Session ["pubsub" "noscript" "loading" "stale"] (0 0 0);
    Unsubscribe "unsubscribe" -1 Session ["pubsub" "noscript" "loading" "stale"] (0 0 0);
    Psubscribe "psubscribe" -2 Session ["pubsub" "noscript" "loading" "stale"] (0 0 0);
    Punsubscribe "punsubscribe" -1 Session ["pubsub" "noscript" "loading" "stale"] (0 0 0);
    Publish "publish" 3 Write ["pubsub" "loading" "stale" "fast"] (0 0 0);
    Pubsub "pubsub" -2 Session [] (0 0 0);
    Incrbyfloat "incrbyfloat" 3 Write ["write" "denyoom" "fast"] (1 1 1);
    Hincrbyfloat "hincrbyfloat" 4 Write ["write" "denyoom" "fast"] (1 1 1);
    Setbit "setbit" 4 Write ["write" "denyoom"] (1 1 1);
    Getbit "getbit" 3 Read ["readonly" "fast"] (1 1 1);
    Bitcount "bitcount" -2 Read ["readonly"] (1 1 1);
    Bitpos "bitpos" -3 Read ["readonly"] (1 1 1);
    Bitop "bitop" -4 Write ["write" "denyoom"] (2 -1 1);
    Bitfield "bitfield" -2 Write ["write" "denyoom"] (1 1 1);
    BitfieldRo "bitfield_ro" -2 Read ["readonly" "fast"] (1 1 1);
    Spop "spop" -2 Write ["write" "fast"] (1 1 1);
    Srandmember "srandmember" -2 Read ["readonly"] (1 1 1);
    Hrandfield "hrandfield" -2 Read ["readonly"] (1 1 1);
    Randomkey "randomkey" 1 Read ["readonly"] (0 0 0);
    Touch "touch" -2 Read ["readonly" "fast"] (1 -1 1);
    Copy "copy" -3 Write ["write" "denyoom"] (1 2 1);
    Object "object" -2 Read [] (0 0 0);
    Lcs "lcs" -3 Read ["readonly"] (1 2 1);
    Sort "sort" -2 Write ["write" "denyoom" "movablekeys"] (1 1 1);
    SortRo "sort_ro" -2 Read ["readonly" "movablekeys"] (1 1 1);
    Zadd "zadd" -4 Write ["write" "denyoom" "fast"] (1 1 1);
    Zincrby "zincrby" 4 Write ["write" "denyoom" "fast"] (1 1 1);
    Zrem "zrem" -3 Write ["write" "fast"] (1 1 1);
    Zcard "zcard" 2 Read ["readonly" "fast"] (1 1 1);
    Zscore "zscore" 3 Read ["readonly" "fast"] (1 1 1);
    Zmscore "zmscore" -3 Read ["readonly" "fast"] (1 1 1);
    Zrank "zrank" 3 Read ["readonly" "fast"] (1 1 1);
    Zrevrank "zrevrank" 3 Read ["readonly" "fast"] (1 1 1);
    Zcount "zcount" 4 Read ["readonly" "fast"] (1 1 1);
    Zlexcount "zlexcount" 4 Read ["readonly" "fast"] (1 1 1);
    Zrange "zrange" -4 Read ["readonly"] (1 1 1);
    Zrangebyscore "zrangebyscore" -4 Read ["readonly"] (1 1 1);
    Zrevrangebyscore "zrevrangebyscore" -4 Read ["readonly"] (1 1 1);
    Zrangebylex "zrangebylex" -4 Read ["readonly"] (1 1 1);
    Zrevrangebylex "zrevrangebylex" -4 Read ["readonly"] (1 1 1);
    Zrevrange "zrevrange" -4 Read ["readonly"] (1 1 1);
    Zrangestore "zrangestore" -5 Write ["write" "denyoom"] (1 2 1);
    Zpopmin "zpopmin" -2 Write ["write" "fast"] (1 1 1);
    Zpopmax "zpopmax" -2 Write ["write" "fast"] (1 1 1);
    Zrandmember "zrandmember" -2 Read ["readonly"] (1 1 1);
    Zremrangebyrank "zremrangebyrank" 4 Write ["write"] (1 1 1);
    Zremrangebyscore "zremrangebyscore" 4 Write ["write"] (1 1 1);
    Zremrangebylex "zremrangebylex" 4 Write ["write"] (1 1 1);
    Zunion "zunion" -3 Read ["readonly" "movablekeys"] (0 0 0);
    Zinter "zinter" -3 Read ["readonly" "movablekeys"] (0 0 0);
    Zdiff "zdiff" -3 Read ["readonly" "movablekeys"] (0 0 0);
    Zunionstore "zunionstore" -4 Write ["write" "denyoom" "movablekeys"] (1 1 1);
    Zinterstore "zinterstore" -4 Write ["write" "denyoom" "movablekeys"] (1 1 1);
    Zdiffstore "zdiffstore" -4 Write ["write" "denyoom" "movablekeys"] (1 1 1);
    Zintercard "zintercard" -3 Read ["readonly" "movablekeys"] (0 0 0);
    Zmpop "zmpop" -4 Write ["write" "movablekeys"] (0 0 0);
    Zscan "zscan" -3 Read ["readonly"] (1 1 1);
    Blpop "blpop" -3 Write ["write" "noscript" "blocking"] (1 -2 1);
    Brpop "brpop" -3 Write ["write" "noscript" "blocking"] (1 -2 1);
    Blmove "blmove" 6 Write ["write" "denyoom" "noscript" "blocking"] (1 2 1);
    Brpoplpush "brpoplpush" 4 Write ["write" "denyoom" "noscript" "blocking"] (1 2 1);
    Bzpopmin "bzpopmin" -3 Write ["write" "noscript" "blocking" "fast"] (1 -2 1);
    Bzpopmax "bzpopmax" -3 Write ["write" "noscript" "blocking" "fast"] (1 -2 1);
    // Scripting (crate::script): EVAL and EVALSHA are logged ops; SCRIPT
    // is routed per subcommand by the session.
    Eval "eval" -3 Write ["noscript" "stale" "skip_monitor" "no_mandatory_keys" "movablekeys"] (0 0 0);
    Evalsha "evalsha" -3 Write ["noscript" "stale" "skip_monitor" "no_mandatory_keys" "movablekeys"] (0 0 0);
    EvalRo "eval_ro" -3 Read ["readonly" "noscript" "stale" "skip_monitor" "no_mandatory_keys" "movablekeys"] (0 0 0);
    EvalshaRo "evalsha_ro" -3 Read ["readonly" "noscript" "stale" "skip_monitor" "no_mandatory_keys" "movablekeys"] (0 0 0);
    Script "script" -2 Write [] (0 0 0);
    Slowlog "slowlog" -2 Session [] (0 0 0);
    Memory "memory" -2 Read [] (0 0 0);
    Acl "acl" -2 Session [] (0 0 0);
    // HyperLogLog (hll): PFCOUNT keeps Redis's `readonly` flag but is a
    // logged write, since one key's count is cached in its value.
    Pfadd "pfadd" -2 Write ["write" "denyoom" "fast"] (1 1 1);
    Pfcount "pfcount" -2 Write ["readonly"] (1 -1 1);
    Pfmerge "pfmerge" -2 Write ["write" "denyoom"] (1 -1 1);
    // Streams (streams, xgroup). XPENDING is logged: its idle times read
    // the recorded clock.
    Xadd "xadd" -5 Write ["write" "denyoom" "fast"] (1 1 1);
    Xlen "xlen" 2 Read ["readonly" "fast"] (1 1 1);
    Xrange "xrange" -4 Read ["readonly"] (1 1 1);
    Xrevrange "xrevrange" -4 Read ["readonly"] (1 1 1);
    Xdel "xdel" -3 Write ["write" "fast"] (1 1 1);
    Xtrim "xtrim" -4 Write ["write"] (1 1 1);
    Xsetid "xsetid" -3 Write ["write" "denyoom" "fast"] (1 1 1);
    Xread "xread" -4 Read ["readonly" "blocking" "movablekeys"] (0 0 0);
    Xgroup "xgroup" -2 Write [] (0 0 0);
    Xreadgroup "xreadgroup" -7 Write ["write" "blocking" "movablekeys"] (0 0 0);
    Xack "xack" -4 Write ["write" "fast"] (1 1 1);
    Xpending "xpending" -3 Write ["readonly"] (1 1 1);
    Xclaim "xclaim" -6 Write ["write" "fast"] (1 1 1);
    Xautoclaim "xautoclaim" -6 Write ["write" "fast"] (1 1 1);
    // DUMP and RESTORE (dump): Redis 7.0's serialization of one value.
    Dump "dump" 2 Read ["readonly"] (1 1 1);
    Restore "restore" -4 Write ["write" "denyoom"] (1 1 1);
    // Multi-key pops (mpop, blocking) and stream introspection (xinfo):
    // XINFO is a read, its idle times from the read's clock.
    Lmpop "lmpop" -4 Write ["write" "movablekeys"] (0 0 0);
    Blmpop "blmpop" -5 Write ["write" "blocking" "movablekeys"] (0 0 0);
    Bzmpop "bzmpop" -5 Write ["write" "blocking" "movablekeys"] (0 0 0);
    Xinfo "xinfo" -2 Read [] (0 0 0);
}

/// Longest command name in the table, so lookups can lowercase into a
/// stack buffer.
const NAME_BYTES_MAX: usize = 16;

static BY_NAME: LazyLock<HashMap<&'static [u8], Cmd, FixedState>> =
    LazyLock::new(|| SPECS.iter().map(|s| (s.name.as_bytes(), s.cmd)).collect());

impl Cmd {
    pub fn spec(self) -> &'static Spec {
        &SPECS[self as usize]
    }

    /// The command `name` (any case), without allocating.
    pub fn lookup(name: &[u8]) -> Option<Cmd> {
        if name.len() > NAME_BYTES_MAX {
            return None;
        }
        let mut buf = [0u8; NAME_BYTES_MAX];
        let lower = &mut buf[..name.len()];
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        BY_NAME.get(&*lower).copied()
    }

    /// The command encoded as `id` in an op.
    pub fn from_id(id: u8) -> Option<Cmd> {
        SPECS.get(usize::from(id)).map(|s| s.cmd)
    }
}

/// What a command writes its reply into, and where its time comes from.
pub struct Exec<'a> {
    pub clock: &'a mut dyn Clock,
    pub out: &'a mut Vec<u8>,
}

pub const WRONGTYPE: &[u8] = b"WRONGTYPE Operation against a key holding the wrong kind of value";
pub const SYNTAX: &[u8] = b"ERR syntax error";
pub const NOT_INT: &[u8] = b"ERR value is not an integer or out of range";
pub const OVERFLOW: &[u8] = b"ERR increment or decrement would overflow";
pub const NO_SUCH_KEY: &[u8] = b"ERR no such key";
/// Redis's `proto-max-bulk-len` default, the largest string a command may build.
pub const STRING_BYTES_MAX: u64 = 512 * 1024 * 1024;

impl Exec<'_> {
    pub fn err(&mut self, msg: &[u8]) {
        write_error(self.out, msg);
    }

    pub fn int(&mut self, v: i64) {
        write_int(self.out, v);
    }

    /// Parses an integer argument, replying Redis's error if it is not one.
    pub fn int_arg(&mut self, arg: &[u8]) -> Option<i64> {
        let v = crate::num::parse_i64(arg);
        if v.is_none() {
            self.err(NOT_INT);
        }
        v
    }

    /// `wrong number of arguments for '<name>' command`.
    pub fn arity_err(&mut self, name: &str) {
        write_arity_error(self.out, name);
    }
}

/// The error of a lookup whose WRONGTYPE reply has already been written.
#[derive(Debug)]
pub struct Replied;

/// Redis's `lookupKeyRead` + `checkType`: `Ok(None)` if absent, `Err(Replied)`
/// after replying WRONGTYPE.
pub fn get_typed<'s>(store: &'s Store, x: &mut Exec, key: &[u8], kind: EntryKind) -> Result<Option<&'s Entry>, Replied> {
    match store.get(key, x.clock) {
        Some(e) if e.kind() != kind => {
            x.err(WRONGTYPE);
            Err(Replied)
        }
        found => Ok(found),
    }
}

/// Redis's `lookupKeyWrite` + `checkType` for a change to an aggregate: the
/// live entry is removed from the store (hand it to [`put_back`] when
/// done); `Err(Replied)` after replying WRONGTYPE, with the entry left in place.
pub fn take_typed(store: &mut Store, x: &mut Exec, key: &[u8], kind: EntryKind) -> Result<Option<Entry>, Replied> {
    // Checked before taking: a WRONGTYPE error leaves the key untouched,
    // also for WATCH.
    if store.get(key, x.clock).is_some_and(|e| e.kind() != kind) {
        x.err(WRONGTYPE);
        return Err(Replied);
    }
    Ok(store.take(key, x.clock))
}

/// Stores a changed aggregate again, unless it became empty: Redis deletes
/// empty hashes, lists and sets.
pub fn put_back(store: &mut Store, e: Entry) {
    if !e.agg().is_some_and(AggVal::is_empty) {
        store.put(e);
    }
}

pub fn write_arity_error(out: &mut Vec<u8>, name: &str) {
    write_error(out, format!("ERR wrong number of arguments for '{name}' command").as_bytes());
}

/// Runs a read command.
pub fn exec_read(cmd: Cmd, store: &Store, x: &mut Exec, argv: &[&[u8]]) {
    use Cmd::*;
    match cmd {
        Get => strings::get(store, x, argv),
        Mget => strings::mget(store, x, argv),
        Strlen => strings::strlen(store, x, argv),
        Getrange => strings::getrange(store, x, argv),
        Exists => keyspace::exists(store, x, argv),
        Ttl | Pttl | Expiretime | Pexpiretime => keyspace::ttl(cmd, store, x, argv),
        Type => keyspace::type_(store, x, argv),
        Dbsize => x.int(store.len() as i64),
        Time => {
            // The replicated clock's time (never behind any applied
            // operation's, not even across a failover), at ms resolution.
            let ms = x.clock.now_ms();
            crate::resp::write_array_len(x.out, 2);
            crate::resp::write_bulk(x.out, (ms / 1000).to_string().as_bytes());
            crate::resp::write_bulk(x.out, (ms % 1000 * 1000).to_string().as_bytes());
        }
        Keys => keyspace::keys(store, x, argv),
        Scan => scan::scan(store, x, argv),
        Hscan => scan::scan_aggregate(crate::entry::Kind::Hash, store, x, argv),
        Sscan => scan::scan_aggregate(crate::entry::Kind::Set, store, x, argv),
        Zscan => scan::scan_aggregate(crate::entry::Kind::Zset, store, x, argv),
        Sunion | Sinter | Sdiff => setops::read(cmd, store, x, argv),
        Sintercard => setops::intercard(store, x, argv),
        Lpos => listops::lpos(store, x, argv),
        Getbit => bits::getbit(store, x, argv),
        Bitcount => bits::bitcount(store, x, argv),
        Bitpos => bits::bitpos(store, x, argv),
        BitfieldRo => bitfield::bitfield_ro(store, x, argv),
        Srandmember => random::srandmember(store, x, argv),
        Hrandfield => random::hrandfield(store, x, argv),
        Randomkey => random::randomkey(store, x),
        Touch => object::touch(store, x, argv),
        Object => object::object(store, x, argv, false),
        Memory => memory::memory(store, x, argv),
        Lcs => lcs::lcs(store, x, argv),
        SortRo => sort::sort_ro(store, x, argv),
        Hget | Hmget | Hlen | Hexists | Hgetall | Hkeys | Hvals | Hstrlen => hashes::read(cmd, store, x, argv),
        Llen | Lrange | Lindex => lists::read(cmd, store, x, argv),
        Smembers | Sismember | Smismember | Scard => sets::read(cmd, store, x, argv),
        Zcard | Zscore | Zmscore | Zrank | Zrevrank | Zrandmember => zsets::read(cmd, store, x, argv),
        Zrange | Zrevrange | Zrangebyscore | Zrevrangebyscore | Zrangebylex | Zrevrangebylex | Zcount | Zlexcount => {
            zrange::read(cmd, store, x, argv)
        }
        Zunion | Zinter | Zdiff | Zintercard => zsetops::read(cmd, store, x, argv),
        Xlen => streams::xlen(store, x, argv),
        Xrange | Xrevrange => streams::xrange(cmd == Xrevrange, store, x, argv),
        Xread => streams::xread(store, x, argv),
        Dump => dump::dump(store, x, argv),
        Xinfo => xinfo::xinfo(store, x, argv),
        _ => x.err(b"ERR internal: not a read command"),
    }
}

/// Runs a write command (or a read, inside a transaction).
pub fn exec_write(cmd: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    use Cmd::*;
    match cmd {
        Set | Setnx | Setex | Psetex | Getset | Getdel | Getex => strings::set_family(cmd, store, x, argv),
        Mset | Msetnx => strings::mset(cmd, store, x, argv),
        Incr | Incrby | Decr | Decrby => strings::incr(cmd, store, x, argv),
        Append => strings::append(store, x, argv),
        Setrange => strings::setrange(store, x, argv),
        Del | Unlink => keyspace::del(store, x, argv),
        Expire | Pexpire | Expireat | Pexpireat => keyspace::expire(cmd, store, x, argv),
        Persist => keyspace::persist(store, x, argv),
        Flushall | Flushdb => keyspace::flush(store, x, argv),
        Rename | Renamenx => keyspace::rename(cmd, store, x, argv),
        Hset | Hmset | Hsetnx | Hdel | Hincrby => hashes::write(cmd, store, x, argv),
        Lpush | Rpush | Lpushx | Rpushx | Lpop | Rpop | Lset => lists::write(cmd, store, x, argv),
        Sadd | Srem => sets::write(cmd, store, x, argv),
        Sunionstore | Sinterstore | Sdiffstore => setops::store_result(cmd, store, x, argv),
        Smove => setops::smove(store, x, argv),
        Ltrim | Lrem | Linsert | Rpoplpush | Lmove => listops::write(cmd, store, x, argv),
        // A message changes no state: it is logged so that its delivery is
        // an output the gate holds, and its count is a recorded input (a
        // script may act on it).
        Publish => {
            let n = x.clock.publish(argv[1], argv[2]);
            x.int(n as i64)
        }
        Blpop | Brpop | Blmove | Brpoplpush | Bzpopmin | Bzpopmax | Blmpop | Bzmpop => blocking::write(cmd, store, x, argv),
        Lmpop => mpop::lmpop(store, x, argv),
        Incrbyfloat => floats::incrbyfloat(store, x, argv),
        Hincrbyfloat => floats::hincrbyfloat(store, x, argv),
        Setbit => bits::setbit(store, x, argv),
        Bitop => bits::bitop(store, x, argv),
        Bitfield => bitfield::bitfield(store, x, argv),
        Spop => random::spop(store, x, argv),
        Copy => object::copy(store, x, argv),
        Sort => sort::sort(cmd, store, x, argv),
        Zadd | Zincrby | Zrem | Zpopmin | Zpopmax | Zmpop => zsets::write(cmd, store, x, argv),
        Zrangestore => zrange::zrangestore(store, x, argv),
        Zremrangebyrank | Zremrangebyscore | Zremrangebylex => zrange::remrange(cmd, store, x, argv),
        Zunionstore | Zinterstore | Zdiffstore => zsetops::store_result(cmd, store, x, argv),
        Pfadd => hll::pfadd(store, x, argv),
        Pfcount => hll::pfcount(store, x, argv),
        Pfmerge => hll::pfmerge(store, x, argv),
        Xadd => streams::xadd(store, x, argv),
        Xdel => streams::xdel(store, x, argv),
        Xtrim => streams::xtrim(store, x, argv),
        Xsetid => streams::xsetid(store, x, argv),
        Xgroup => xgroup::xgroup(store, x, argv),
        Xreadgroup => xgroup::xreadgroup(store, x, argv),
        Xack => xgroup::xack(store, x, argv),
        Xpending => xgroup::xpending(store, x, argv),
        Xclaim => xgroup::xclaim(store, x, argv),
        Xautoclaim => xgroup::xautoclaim(store, x, argv),
        Restore => dump::restore(store, x, argv),
        Object => object::object(store, x, argv, true),
        _ if cmd.spec().kind == Kind::Read => exec_read(cmd, store, x, argv),
        _ => x.err(b"ERR internal: not a keyspace command"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_discriminant() {
        for (i, s) in SPECS.iter().enumerate() {
            assert_eq!(s.cmd as usize, i, "{}", s.name);
            assert!(s.name.len() <= NAME_BYTES_MAX);
            assert_eq!(Cmd::lookup(s.name.to_uppercase().as_bytes()), Some(s.cmd));
        }
        assert_eq!(Cmd::lookup(b"nosuchcommand"), None);
        assert_eq!(Cmd::lookup(b"averyveryverylongcommandname"), None);
        assert!(SPECS.len() < 256);
    }
}
