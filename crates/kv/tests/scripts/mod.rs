//! Command sequences for the differential test. Each line is one command:
//! blank-separated arguments, `\xHH` escapes, `{}` for an empty argument;
//! a leading `~` allows a small difference in time-dependent integers;
//! `sleep N` waits N ms on both sides.

pub const SCRIPTS: &[(&str, &[&str])] = &[
    ("strings", &[
        "GET a", "SET a hello", "GET a", "STRLEN a", "STRLEN nokey", "APPEND a _world", "GET a",
        "GETSET a new", "GETSET nokey2 v", "GET nokey2", "GETDEL a", "GETDEL a", "SETNX b 1", "SETNX b 2",
        "GET b", "MSET k1 v1 k2 v2", "MGET k1 k2 nokey b", "MSETNX k1 x k3 y", "MSETNX k3 y k4 z",
        "MGET k3 k4", "MSET k1 v1 k2", "MSETNX k1", "SET bin \\x00\\xff\\r\\n", "GET bin", "STRLEN bin",
        "SET {} empty", "GET {}", "SET e {}", "GET e", "STRLEN e", "LPUSH l x", "GET l", "GETSET l v",
        "GETDEL l", "MGET l a", "STRLEN l", "APPEND l x", "SETNX l x", "TYPE l",
        "MSET d 1 d 2", "GET d", "SET m v EX 10 GET", "TTL m", "SET m w PX 20000 GET", "TTL m", "GETDEL m", "TTL m",
        "MGET", "MSETNX d 1 d 2", "SETNX {} x", "GETSET {} {}", "GET {}",
    ]),
    ("set options", &[
        "SET s v NX", "SET s v NX", "SET s w XX", "GET s", "SET s2 v XX", "GET s2", "SET s v2 GET",
        "SET s2 v GET", "SET s v NX XX", "SET s v XX NX", "SET s v EX 100", "TTL s", "SET s v KEEPTTL",
        "TTL s", "SET s v", "TTL s", "SET s v EX 0", "SET s v EX -1", "SET s v PX 0", "SET s v EX abc",
        "SET s v EX 10 PX 100", "SET s v EX", "SET s v BADOPT", "SET s v KEEPTTL EX 10",
        "SET s v EX 10 KEEPTTL", "SET s v EX 9223372036854775807", "SET s v PX 9223372036854775807",
        "SET s v EXAT 9223372036854775", "SET s v EX 10 EX 20", "TTL s", "SET s v nx nx", "SET s v EXAT 1",
        "GET s", "SET s v PXAT 99999999999999", "~PTTL s", "SET s v EX 100 GET", "SET s v PERSIST",
        "HSET h f v", "SET h v GET", "HGET h f", "SET h v NX GET", "SET h v", "GET h", "SET n v NX GET",
        "GET n", "SET n v2 XX GET", "SET n v3 NX GET", "GET n", "SET s v ex 5 px 5", "SET s v pXaT 99999999999999",
        "SET t v EX 100", "SET t v2 XX KEEPTTL", "TTL t", "SET t v3 GET KEEPTTL", "TTL t",
    ]),
    ("setex", &[
        "SETEX e 100 v", "TTL e", "GET e", "SETEX e 0 v", "SETEX e -1 v", "SETEX e abc v", "PSETEX e 100000 v",
        "TTL e", "PSETEX e -5 v", "PSETEX e 0 v", "SETEX e 9223372036854775807 v", "HSET h f v", "SETEX h 10 v",
        "TYPE h", "TTL h",
    ]),
    ("counters", &[
        "INCR c", "INCR c", "INCRBY c 10", "DECR c", "DECRBY c 5", "INCRBY c abc", "INCRBY c 1.5",
        "DECRBY c -9223372036854775808", "DECRBY c 9223372036854775807", "SET c 9223372036854775807",
        "INCR c", "INCRBY c -1", "SET c -9223372036854775808", "DECR c", "INCRBY c -1", "SET c abc", "INCR c",
        "SET c 01", "INCR c", "SET c -0", "INCR c", "SET c +1", "INCR c", "SET c 10 EX 100", "INCR c",
        "TTL c", "DECRBY c 3", "TTL c", "GET c", "HSET h f v", "INCR h", "DECR h", "INCRBY h 1", "SET c 1",
        "INCRBY c 9223372036854775807", "INCRBY c 09", "INCRBY c -0", "SET big 12345678901234567890", "INCR big",
        "SET sp {}", "INCR sp",
    ]),
    ("ranges", &[
        "APPEND x abc", "APPEND x def", "GET x", "GETRANGE x 0 2", "GETRANGE x -3 -1", "GETRANGE x 5 1",
        "GETRANGE x -1 -5", "GETRANGE x 0 100", "GETRANGE x -100 -50", "GETRANGE x -100 2", "GETRANGE nokey 0 1",
        "GETRANGE x a b", "GETRANGE x 0 b", "SETRANGE x 1 ZZ", "GET x", "SETRANGE x 10 end", "GET x",
        "SETRANGE y 0 {}", "EXISTS y", "SETRANGE y 2 ab", "GET y", "SETRANGE x -1 a", "SETRANGE x 536870912 a",
        "SETRANGE x 0 {}", "SETRANGE x abc a", "LPUSH l a", "APPEND l a", "GETRANGE l 0 1", "SETRANGE l 0 a",
        "SETRANGE l 0 {}", "STRLEN l", "SET e {}", "GETRANGE e 0 -1", "GETRANGE x 9223372036854775807 1",
        "SET tx v EX 100", "APPEND tx w", "TTL tx", "SETRANGE tx 0 W", "TTL tx", "GET tx",
    ]),
    ("keyspace", &[
        "SET a 1", "SET b 2", "EXISTS a b c a", "EXISTS c", "DEL a c", "DEL a", "UNLINK b", "TYPE a", "SET a 1",
        "TYPE a", "LPUSH l x", "TYPE l", "HSET h f v", "TYPE h", "SADD s m", "TYPE s", "DBSIZE", "RENAME a a2",
        "GET a2", "EXISTS a", "RENAME nokey x", "RENAMENX nokey x", "RENAME a2 a2", "RENAMENX a2 a2",
        "RENAMENX a2 l", "RENAMENX a2 a3", "RENAME l a3", "TYPE a3", "LRANGE a3 0 -1", "KEYS *", "KEYS a*",
        "KEYS ?3", "KEYS [ab]*", "KEYS *[^3]", "KEYS h\\x5c*", "KEYS nomatch*", "KEYS [a-b]?", "KEYS [", "DEL h s a3",
        "SET e1 v EX 100", "RENAME e1 e2", "TTL e2", "RENAME e2 e2", "TTL e2", "SET e3 v", "RENAME e3 e2", "TTL e2",
        "FLUSHALL", "DBSIZE", "KEYS *", "SET a 1", "FLUSHDB ASYNC", "DBSIZE", "FLUSHALL SYNC", "FLUSHALL foo",
        "FLUSHALL a b", "FLUSHDB sync", "DBSIZE",
    ]),
    ("expiry", &[
        "SET k v", "EXPIRE k 100", "TTL k", "~PTTL k", "~EXPIRETIME k", "~PEXPIRETIME k", "PERSIST k", "TTL k",
        "PERSIST k", "PERSIST nokey", "TTL nokey", "PTTL nokey", "EXPIRETIME nokey", "EXPIRETIME k",
        "EXPIRE nokey 10", "EXPIRE k abc", "EXPIRE k 10 NX", "EXPIRE k 20 NX", "TTL k", "EXPIRE k 30 XX", "TTL k",
        "EXPIRE k 5 GT", "EXPIRE k 50 GT", "TTL k", "EXPIRE k 100 LT", "EXPIRE k 10 LT", "TTL k",
        "EXPIRE k 10 NX XX", "EXPIRE k 10 GT LT", "EXPIRE k 10 FOO", "EXPIRE k 10 nx gt", "EXPIRE k 5 xx gt",
        "PERSIST k", "EXPIRE k 10 XX", "EXPIRE k 10 GT", "EXPIRE k 10 LT", "TTL k", "PEXPIRE k 100000", "TTL k",
        "~EXPIREAT k 4102444800", "~TTL k", "PEXPIREAT k 4102444800000", "~TTL k", "EXPIREAT k 4102444800",
        "EXPIRE k 0", "EXISTS k", "SET k v", "EXPIRE k -10", "EXISTS k", "SET k v", "EXPIREAT k 1", "GET k",
        "SET k v", "PEXPIREAT k 1", "EXISTS k", "SET k v", "EXPIRE k 9223372036854775807",
        "PEXPIRE k 9223372036854775807", "EXPIREAT k 9223372036854775807", "EXPIRE k -9223372036854775808",
        "PEXPIREAT k -9223372036854775808", "EXISTS k", "SET k v PX 1", "sleep 20", "GET k", "EXISTS k", "TTL k",
        "PERSIST k", "EXPIRE k 10", "SET k v", "EXPIRE k 100", "SET k v2", "TTL k", "EXPIRE k 100", "GETSET k v3",
        "TTL k", "EXPIRE k 100", "APPEND k x", "TTL k", "LPUSH lk a", "EXPIRE lk 100", "TTL lk", "RPUSH lk b",
        "TTL lk", "LPOP lk 2", "EXISTS lk", "TTL lk", "SET z v PX 10", "sleep 30", "INCR z", "TTL z",
        "SET z v PX 10", "sleep 30", "APPEND z w", "GET z", "HSET zh f v", "PEXPIRE zh 10", "sleep 30",
        "HSET zh g w", "HGETALL zh", "TTL zh", "SET z v PX 10", "sleep 30", "SETNX z w", "GET z",
        "SET z v PX 10", "sleep 30", "RENAME z y", "EXPIRE z 10", "SET z v PX 10", "sleep 30", "DEL z",
    ]),
    ("getex", &[
        "SET g v", "GETEX g", "TTL g", "GETEX g EX 100", "TTL g", "GETEX g PERSIST", "TTL g", "GETEX g PX 5000",
        "~PTTL g", "GETEX g EXAT 1", "EXISTS g", "GETEX nokey", "GETEX nokey EX 0", "SET g v", "GETEX g NX",
        "GETEX g EX 0", "GETEX g EX abc", "GETEX g EX 10 PERSIST", "GETEX g PERSIST EX 10", "GETEX g KEEPTTL",
        "GETEX g GET", "GETEX g EX", "LPUSH gl a", "GETEX gl", "GETEX gl EX 0", "GETEX g PXAT 99999999999999",
        "~PTTL g", "GETEX g PXAT 1", "GET g",
    ]),
    ("hashes", &[
        "HSET h f1 v1 f2 v2", "HSET h f1 x", "HSET h f3", "HSET h f3 v3 f4", "HSET h", "HGET h f1", "HGET h nof",
        "HGET nokey f", "HMGET h f1 nof f2", "HMGET nokey a b", "HLEN h", "HLEN nokey", "HEXISTS h f1",
        "HEXISTS h no", "HEXISTS nokey f", "HSTRLEN h f1", "HSTRLEN h no", "HSTRLEN nokey f", "HGETALL h",
        "HKEYS h", "HVALS h", "HGETALL nokey", "HKEYS nokey", "HVALS nokey", "HSETNX h f1 y", "HSETNX h f9 y",
        "HSETNX newh f y", "HGETALL newh", "HDEL h f1 no", "HDEL h f2 f3 f9", "HGETALL h", "EXISTS h",
        "HDEL nokey f", "HINCRBY h n 5", "HINCRBY h n -10", "HINCRBY h n abc", "HINCRBY nokey2 n abc",
        "EXISTS nokey2", "HSET h s abc", "HINCRBY h s 1", "HSET h big 9223372036854775807", "HINCRBY h big 1",
        "HSET h z 01", "HINCRBY h z 1", "HINCRBY hn f 1", "HGETALL hn", "HMSET h a 1 b 2", "HMGET h a b",
        "HMSET h a", "HMSET h a 1 b", "SET str v", "HSET str f v", "HGET str f", "HGETALL str", "HDEL str f",
        "HLEN str", "HINCRBY str f 1", "HMGET str f", "HSETNX str f v", "HKEYS str", "HVALS str",
        "HEXISTS str f", "HSTRLEN str f", "HMSET str f v", "HSET h2 {} {}", "HGET h2 {}", "HSTRLEN h2 {}",
    ]),
    ("lists", &[
        "LPUSH l a b c", "RPUSH l d e", "LRANGE l 0 -1", "LRANGE l 1 2", "LRANGE l -2 -1", "LRANGE l 5 10",
        "LRANGE l 2 1", "LRANGE l -100 100", "LRANGE l a b", "LRANGE l 0 b", "LRANGE nokey 0 -1",
        "LRANGE nokey a 1", "LLEN l", "LLEN nokey", "LINDEX l 0", "LINDEX l -1", "LINDEX l 99",
        "LINDEX l -99", "LINDEX l x", "LINDEX nokey x", "LPOP l", "RPOP l", "LPOP l 2", "RPOP l 5", "EXISTS l",
        "LPOP l", "LPOP l 1", "RPOP l 0", "RPOP l", "LPUSH l a", "LPOP l 0", "LPOP l -1", "LPOP l abc",
        "LPOP l 1 2", "LPOP nokey -1", "LPOP nokey 0", "LPUSHX nol a", "RPUSHX nol a", "EXISTS nol",
        "LPUSHX l b", "RPUSHX l c d", "LRANGE l 0 -1", "LSET l 0 X", "LSET l -1 Y", "LSET l 10 Z",
        "LSET l -10 Z", "LSET nol 0 a", "LSET l x a", "LSET nol x a", "LRANGE l 0 -1", "SET str v",
        "LPUSH str a", "RPUSH str a", "LPUSHX str a", "LRANGE str 0 1", "LLEN str", "LPOP str", "RPOP str 2",
        "LSET str 0 a", "LINDEX str 0", "LINDEX str x", "RPOP l 100", "LPUSH l {}", "LRANGE l 0 -1",
        "RPUSH big 1 2 3 4 5 6 7 8 9 10 11 12", "LRANGE big 3 -3", "RPOP big 3", "LPOP big 3", "LRANGE big 0 -1",
    ]),
    ("sets", &[
        "SADD s a b c a", "SADD s a", "SCARD s", "SISMEMBER s a", "SISMEMBER s z", "SMISMEMBER s a z b",
        "SMISMEMBER nos a", "SMEMBERS s", "SMEMBERS nos", "SREM s a z", "SREM s b c", "EXISTS s", "SREM nos a",
        "SCARD nos", "SISMEMBER nos a", "SET str v", "SADD str a", "SMEMBERS str", "SCARD str",
        "SISMEMBER str a", "SMISMEMBER str a", "SREM str a", "SADD s {}", "SISMEMBER s {}", "SMEMBERS s",
    ]),
    ("multi", &[
        "MULTI", "SET a 1", "INCR a", "GET a", "EXEC", "MULTI", "MULTI", "SET a 2", "EXEC", "MULTI",
        "SET a 1 2 3", "INCR a", "EXEC", "MULTI", "FOO", "SET a 1", "EXEC", "GET a", "MULTI", "GET", "EXEC",
        "EXEC", "DISCARD", "MULTI", "SET a 9", "DISCARD", "GET a", "MULTI", "EXEC", "MULTI", "PING",
        "ECHO hi", "SET a 1", "CLIENT SETNAME foo", "CLIENT GETNAME", "SELECT 0", "EXEC", "CLIENT GETNAME",
        "MULTI", "WATCH a", "EXEC", "MULTI", "HELLO 2", "EXEC", "MULTI", "LPUSH l a", "LRANGE l 0 -1",
        "HSET h f v", "HGET h f", "SADD s x", "SCARD s", "EXEC", "MULTI", "INCR s", "SET s abc", "INCR s",
        "EXEC", "MULTI", "CLIENT FOO", "EXEC", "MULTI", "PING a b c", "EXEC", "MULTI", "LPOP l 1 2",
        "MSET a 1 b", "HSET h f", "EXEC", "MULTI", "MSET a", "EXEC", "MULTI", "SET t v PX 10", "EXEC",
        "sleep 30", "GET t", "MULTI", "SET t v EX 100", "TTL t", "PERSIST t", "TTL t", "EXEC", "MULTI",
        "CLIENT SETNAME {}", "CLIENT GETNAME", "CLIENT SETNAME a\\x01b", "EXEC", "MULTI", "SELECT x",
        "SELECT 0", "CONFIG GET save", "COMMAND COUNT x", "EXEC", "MULTI", "DEL a b s h l t", "DBSIZE", "EXEC",
        "MULTI", "RESET", "EXEC", "MULTI", "SET q 1", "EXEC x", "EXEC",
    ]),
    ("connection", &[
        "PING", "PING hi", "PING a b", "ECHO x", "ECHO", "ECHO a b", "SELECT 0", "SELECT abc",
        "SELECT 99999999999", "SELECT -1", "HELLO", "HELLO 2", "HELLO 1", "HELLO 4", "HELLO abc", "HELLO -1",
        "HELLO 2 SETNAME myname", "CLIENT GETNAME", "HELLO 2 SETNAME bad\\x20name", "HELLO 2 FOO",
        "HELLO 2 SETNAME", "HELLO 2 AUTH default pw", "HELLO 2 AUTH bob pw", "HELLO 2 AUTH default",
        "AUTH pw", "AUTH default x", "AUTH bob x", "AUTH a b c", "CLIENT ID", "CLIENT ID x", "CLIENT SETNAME n1",
        "CLIENT GETNAME", "CLIENT SETNAME {}", "CLIENT GETNAME", "CLIENT SETNAME a\\x01b", "CLIENT SETNAME",
        "CLIENT SETNAME a b", "CLIENT FOO", "CLIENT", "CONFIG GET save", "CONFIG GET appendonly",
        "CONFIG GET save appendonly", "CONFIG GET SAVE", "CONFIG GET nosuchparam", "CONFIG GET", "CONFIG FOO",
        "CONFIG", "COMMAND FOO", "COMMAND COUNT x", "UNWATCH", "FOO a b", "FOO", "{}", "foo {} x",
        "FOO aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb ccc",
        "FOO a\\x0db\\x0ac", "FOO a\\x00b c", "GET a\\x00b", "RESET", "CLIENT GETNAME", "DISCARD", "EXEC",
        "QUIT",
    ]),
];

/// Every command in our table, lowercase.
pub fn all_command_names() -> Vec<&'static str> {
    let mut client = crate::common::Client::new(1);
    let reply = client.run(&[b"COMMAND", b"LIST"]);
    let crate::common::V::Arr(Some(items)) = crate::common::one_reply(&reply) else { panic!("COMMAND LIST") };
    items
        .into_iter()
        .map(|v| match v {
            crate::common::V::Bulk(Some(b)) => &*String::from_utf8(b).expect("ascii").leak(),
            other => panic!("COMMAND LIST item {other:?}"),
        })
        .collect()
}
