//! Redis 7.0's ACL categories (`ACL CAT`, `COMMAND INFO`'s seventh field),
//! generated from a redis-server 7.0.15's `COMMAND` reply: for each command
//! the categories its flags do not imply (Redis's
//! `setImplicitACLCategories` adds those: `write`, `read`, `admin` and
//! `dangerous`, `pubsub`, `fast` or else `slow`, `blocking`), and every
//! subcommand's whole set. Commands Redis has and understudy has not are
//! listed too, so a command added to the table later gets its categories.

/// The categories in Redis's order (`ACL CAT`, bit `i` of a mask is `CATEGORIES[i]`).
pub const CATEGORIES: [&str; 21] = [
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

pub const KEYSPACE: u32 = 1 << 0;
pub const READ: u32 = 1 << 1;
pub const WRITE: u32 = 1 << 2;
pub const SET: u32 = 1 << 3;
pub const SORTEDSET: u32 = 1 << 4;
pub const LIST: u32 = 1 << 5;
pub const HASH: u32 = 1 << 6;
pub const STRING: u32 = 1 << 7;
pub const BITMAP: u32 = 1 << 8;
pub const HYPERLOGLOG: u32 = 1 << 9;
pub const GEO: u32 = 1 << 10;
pub const STREAM: u32 = 1 << 11;
pub const PUBSUB: u32 = 1 << 12;
pub const ADMIN: u32 = 1 << 13;
pub const FAST: u32 = 1 << 14;
pub const SLOW: u32 = 1 << 15;
pub const BLOCKING: u32 = 1 << 16;
pub const DANGEROUS: u32 = 1 << 17;
pub const CONNECTION: u32 = 1 << 18;
pub const TRANSACTION: u32 = 1 << 19;
pub const SCRIPTING: u32 = 1 << 20;

/// The categories of command `name` (lowercase) that its flags do not imply.
pub fn explicit(name: &str) -> u32 {
    match name {
        "lastsave" | "role" => ADMIN | DANGEROUS,
        "bitcount" | "bitfield" | "bitfield_ro" | "bitop" | "bitpos" | "getbit" | "setbit" => BITMAP,
        "asking" | "auth" | "command" | "echo" | "hello" | "ping" | "quit" | "readonly" | "readwrite" | "reset" | "select"
        | "wait" => CONNECTION,
        "info" => DANGEROUS,
        "geoadd"
        | "geodist"
        | "geohash"
        | "geopos"
        | "georadius"
        | "georadius_ro"
        | "georadiusbymember"
        | "georadiusbymember_ro"
        | "geosearch"
        | "geosearchstore" => GEO,
        "hdel" | "hexists" | "hget" | "hgetall" | "hincrby" | "hincrbyfloat" | "hkeys" | "hlen" | "hmget" | "hmset"
        | "hrandfield" | "hscan" | "hset" | "hsetnx" | "hstrlen" | "hvals" => HASH,
        "pfadd" | "pfcount" | "pfdebug" | "pfmerge" | "pfselftest" => HYPERLOGLOG,
        "copy" | "dbsize" | "del" | "dump" | "exists" | "expire" | "expireat" | "expiretime" | "move" | "persist" | "pexpire"
        | "pexpireat" | "pexpiretime" | "pttl" | "randomkey" | "rename" | "renamenx" | "scan" | "touch" | "ttl" | "type"
        | "unlink" => KEYSPACE,
        "flushall" | "flushdb" | "keys" | "migrate" | "restore" | "restore-asking" | "swapdb" => KEYSPACE | DANGEROUS,
        "blmove" | "blmpop" | "blpop" | "brpop" | "brpoplpush" | "lindex" | "linsert" | "llen" | "lmove" | "lmpop" | "lpop"
        | "lpos" | "lpush" | "lpushx" | "lrange" | "lrem" | "lset" | "ltrim" | "rpop" | "rpoplpush" | "rpush" | "rpushx" => LIST,
        "eval" | "eval_ro" | "evalsha" | "evalsha_ro" | "fcall" | "fcall_ro" => SCRIPTING,
        "sadd" | "scard" | "sdiff" | "sdiffstore" | "sinter" | "sintercard" | "sinterstore" | "sismember" | "smembers"
        | "smismember" | "smove" | "spop" | "srandmember" | "srem" | "sscan" | "sunion" | "sunionstore" => SET,
        "sort" | "sort_ro" => SET | SORTEDSET | LIST | DANGEROUS,
        "bzmpop" | "bzpopmax" | "bzpopmin" | "zadd" | "zcard" | "zcount" | "zdiff" | "zdiffstore" | "zincrby" | "zinter"
        | "zintercard" | "zinterstore" | "zlexcount" | "zmpop" | "zmscore" | "zpopmax" | "zpopmin" | "zrandmember" | "zrange"
        | "zrangebylex" | "zrangebyscore" | "zrangestore" | "zrank" | "zrem" | "zremrangebylex" | "zremrangebyrank"
        | "zremrangebyscore" | "zrevrange" | "zrevrangebylex" | "zrevrangebyscore" | "zrevrank" | "zscan" | "zscore"
        | "zunion" | "zunionstore" => SORTEDSET,
        "xack" | "xadd" | "xautoclaim" | "xclaim" | "xdel" | "xlen" | "xpending" | "xrange" | "xread" | "xreadgroup"
        | "xrevrange" | "xsetid" | "xtrim" => STREAM,
        "append" | "decr" | "decrby" | "get" | "getdel" | "getex" | "getrange" | "getset" | "incr" | "incrby" | "incrbyfloat"
        | "lcs" | "mget" | "mset" | "msetnx" | "psetex" | "set" | "setex" | "setnx" | "setrange" | "strlen" | "substr" => STRING,
        "discard" | "exec" | "multi" | "unwatch" | "watch" => TRANSACTION,
        _ => 0,
    }
}

/// All the categories of subcommand `fullname` (`client|list`); `slow`
/// for one Redis does not have.
pub fn subcommand(fullname: &str) -> u32 {
    match fullname {
        "acl|deluser"
        | "acl|dryrun"
        | "acl|getuser"
        | "acl|list"
        | "acl|load"
        | "acl|log"
        | "acl|save"
        | "acl|setuser"
        | "acl|users"
        | "cluster|addslots"
        | "cluster|addslotsrange"
        | "cluster|bumpepoch"
        | "cluster|count-failure-reports"
        | "cluster|delslots"
        | "cluster|delslotsrange"
        | "cluster|failover"
        | "cluster|flushslots"
        | "cluster|forget"
        | "cluster|meet"
        | "cluster|replicas"
        | "cluster|replicate"
        | "cluster|reset"
        | "cluster|saveconfig"
        | "cluster|set-config-epoch"
        | "cluster|setslot"
        | "cluster|slaves"
        | "config|get"
        | "config|resetstat"
        | "config|rewrite"
        | "config|set"
        | "latency|doctor"
        | "latency|graph"
        | "latency|histogram"
        | "latency|history"
        | "latency|latest"
        | "latency|reset"
        | "module|list"
        | "module|load"
        | "module|loadex"
        | "module|unload"
        | "slowlog|get"
        | "slowlog|len"
        | "slowlog|reset" => ADMIN | SLOW | DANGEROUS,
        "client|kill" | "client|list" | "client|no-evict" | "client|pause" | "client|unblock" | "client|unpause" => {
            ADMIN | SLOW | DANGEROUS | CONNECTION
        }
        "object|encoding" | "object|freq" | "object|idletime" | "object|refcount" => KEYSPACE | READ | SLOW,
        "object|help" => KEYSPACE | SLOW,
        "pubsub|channels" | "pubsub|numpat" | "pubsub|numsub" | "pubsub|shardchannels" | "pubsub|shardnumsub" => PUBSUB | SLOW,
        "memory|usage" => READ | SLOW,
        "xinfo|consumers" | "xinfo|groups" | "xinfo|stream" => READ | STREAM | SLOW,
        "acl|cat"
        | "acl|genpass"
        | "acl|help"
        | "acl|whoami"
        | "cluster|countkeysinslot"
        | "cluster|getkeysinslot"
        | "cluster|help"
        | "cluster|info"
        | "cluster|keyslot"
        | "cluster|links"
        | "cluster|myid"
        | "cluster|nodes"
        | "cluster|shards"
        | "cluster|slots"
        | "config|help"
        | "latency|help"
        | "memory|doctor"
        | "memory|help"
        | "memory|malloc-stats"
        | "memory|purge"
        | "memory|stats"
        | "module|help"
        | "pubsub|help"
        | "slowlog|help" => SLOW,
        "client|caching"
        | "client|getname"
        | "client|getredir"
        | "client|help"
        | "client|id"
        | "client|info"
        | "client|reply"
        | "client|setname"
        | "client|tracking"
        | "client|trackinginfo"
        | "command|count"
        | "command|docs"
        | "command|getkeys"
        | "command|getkeysandflags"
        | "command|help"
        | "command|info"
        | "command|list" => SLOW | CONNECTION,
        "function|dump" | "function|help" | "function|kill" | "function|list" | "function|stats" | "script|debug"
        | "script|exists" | "script|flush" | "script|help" | "script|kill" | "script|load" => SLOW | SCRIPTING,
        "xgroup|help" | "xinfo|help" => STREAM | SLOW,
        "function|delete" | "function|flush" | "function|load" | "function|restore" => WRITE | SLOW | SCRIPTING,
        "xgroup|create" | "xgroup|createconsumer" | "xgroup|delconsumer" | "xgroup|destroy" | "xgroup|setid" => {
            WRITE | STREAM | SLOW
        }
        _ => SLOW,
    }
}
