//! Differential test against a real Redis 7.0 (`redis-server`): the same
//! command sequences go to Redis and to `Session::dispatch` + `Kv`, and the
//! reply bytes must be identical. Unordered replies (SMEMBERS, HGETALL,
//! HKEYS, HVALS, KEYS, CONFIG GET) are compared as sorted multisets; replies that
//! depend on the millisecond a command ran (PTTL, *EXPIRETIME, TTL of a far
//! absolute time) and XINFO's idle, seen and delivery times are compared
//! within a tolerance.
//!
//! Requires `redis-server` (Debian package `redis-server`); fails, never
//! skips, without it.

mod common;
mod differential;
mod scripts;

use differential::*;

use common::{one_reply, show, V};
use understudy_kv::parse_command;

#[test]
fn command_scripts_match_redis() {
    let redis = Redis::start();
    let mut failures = Vec::new();
    for (name, lines) in scripts::SCRIPTS {
        failures.extend(run_script(&redis, name, lines));
    }
    // What the comparison covers, family by family (`-- --nocapture`).
    let commands = |lines: &[&str]| lines.iter().filter(|l| !l.starts_with("sleep ")).count();
    let total: usize = scripts::SCRIPTS.iter().map(|(_, lines)| commands(lines)).sum();
    println!("{total} commands in {} families compared with redis-server:", scripts::SCRIPTS.len());
    for (name, lines) in scripts::SCRIPTS {
        println!("  {:>5}  {name}", commands(lines));
    }
    report(failures);
}

/// The same scripts on a RESP3 connection (`HELLO 3`, what redis-py 8 and
/// other modern clients send by default): nulls, maps and sets typed as
/// Redis 7 types them.
#[test]
fn command_scripts_match_redis_in_resp3() {
    let redis = Redis::start();
    let mut failures = Vec::new();
    for (name, lines) in scripts::SCRIPTS {
        failures.extend(run_script_in(&redis, name, lines, 3));
    }
    report(failures);
}

/// Every command with the wrong number of arguments gets Redis's arity
/// error, outside and inside MULTI. One connection each side for the whole
/// run: an arity error changes no state (and a rejected command inside MULTI
/// makes EXEC abort and reset it), and a fresh connection per command meant
/// thousands of loopback connections a run, which now and then met a
/// connection reset from the kernel's port reuse rather than from Redis.
#[test]
fn arity_errors_match_redis() {
    let redis = Redis::start();
    let mut info_conn = redis.connect();
    let mut lines = Vec::new();
    for name in all_command_names() {
        let info = match one_reply(&info_conn.call(&[b"COMMAND", b"INFO", name.as_bytes()])) {
            V::Arr(Some(items)) => items,
            other => panic!("COMMAND INFO {name}: {other:?}"),
        };
        let V::Arr(Some(entry)) = &info[0] else { panic!("{name} unknown to redis") };
        let V::Int(arity) = entry[1] else { panic!("arity of {name}") };
        let mut bad_counts = vec![arity.unsigned_abs() as usize - 1];
        if arity > 0 {
            bad_counts.push(arity as usize + 1);
        }
        for argc in bad_counts.into_iter().filter(|&n| n >= 1) {
            let mut line = vec![name.to_string()];
            line.extend((1..argc).map(|i| format!("a{i}")));
            let line = line.join(" ");
            lines.push(line.clone());
            if !matches!(name, "multi" | "exec" | "discard" | "watch" | "quit" | "reset") {
                lines.extend(["MULTI".to_string(), line, "EXEC".to_string()]);
            }
        }
    }
    assert!(lines.len() > 300, "only {} arity lines: is the command table empty?", lines.len());
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    report(run_script(&redis, "arity, alone and in MULTI", &lines));
}

/// Users of an ACL file (ours) and the same users made with ACL SETUSER
/// (Redis's): AUTH, HELLO AUTH, the NOPERM errors (also inside MULTI and
/// for EXEC), ACL's view of them.
#[test]
fn command_info_matches_redis() {
    let redis = Redis::start();
    let (mut conn, mut ours) = pair(&redis);
    for name in all_command_names() {
        let argv: [&[u8]; 3] = [b"COMMAND", b"INFO", name.as_bytes()];
        let (V::Arr(Some(t)), V::Arr(Some(m))) = (one_reply(&conn.call(&argv)), one_reply(&ours.run(&argv))) else {
            panic!("COMMAND INFO {name}")
        };
        let (V::Arr(Some(t)), V::Arr(Some(m))) = (&t[0], &m[0]) else { panic!("COMMAND INFO {name} entry") };
        assert_eq!(t[..7], m[..7], "COMMAND INFO {name}: name, arity, flags, key positions, ACL categories");
    }
}

/// Sorted sets large enough for Redis's skiplist encoding (and for several
/// of our blocks): ranks, ranges, pops, removals and algebra over a
/// thousand members, in both protocols.
#[test]
fn protocol_errors_match_redis() {
    let redis = Redis::start();
    let cases: &[&[u8]] = &[
        b"*abc\r\n",
        b"*3000000000\r\n",
        b"*1\r\nx\r\n",
        b"*1\r\n$abc\r\n",
        b"*1\r\n$-5\r\n",
        b"*2\r\n$3\r\nGET\r\n:1\r\n",
        b"set \"a b\r\n",
        b"set 'a b\r\n",
        b"set \"a\"b c\r\n",
        b"*1\r\n$\r\n",
    ];
    for raw in cases {
        let mut conn = redis.connect();
        conn.send_raw(raw);
        let theirs = conn.reply();
        let ours = match parse_command(raw, 1 << 20, &mut Vec::new()) {
            Err(e) => e.to_resp(),
            Ok(r) => panic!("{:?} parsed as {r:?}, redis said {}", show(raw), show(&theirs)),
        };
        assert_eq!(show(&theirs), show(&ours), "input {:?}", show(raw));
    }
}

/// Inline commands (telnet style) and pipelines give the same replies.
#[test]
fn inline_and_pipelined_input_matches_redis() {
    let redis = Redis::start();
    let inputs: &[&[u8]] = &[
        b"PING\r\n",
        b"set a b\r\nget a\r\n",
        b"  set   \"x y\"  'z w'  \r\nget \"x y\"\r\n",
        b"\r\n\r\nPING\n",
        b"set k \"\"\r\nstrlen k\r\n",
        b"echo\tfoo\r\n",
        b"*0\r\n*-1\r\nPING\r\n",
        b"*2\r\n$4\r\nECHO\r\n$3\r\na\x00b\r\n",
        b"MULTI\r\nINCR n\r\nINCR n\r\nEXEC\r\n",
    ];
    for input in inputs {
        let (mut conn, mut ours) = pair(&redis);
        let mine = ours.run_raw(input);
        conn.send_raw(input);
        let mut theirs = Vec::new();
        while theirs.len() < mine.len() {
            theirs.extend(conn.reply());
        }
        assert_eq!(show(&theirs), show(&mine), "input {:?}", show(input));
    }
}

/// Command templates for random sequences. Placeholders: `S`, `H`, `L`,
/// `T`, `Z` a string, hash, list, set or sorted set key (sometimes one of
/// another type, for WRONGTYPE paths), `K` any key, `V` a small value
/// (`(V`, `[V`, `-V`: one as a range bound). Expiries are far in the
/// future or already past, never near "now", so the two servers cannot
/// disagree about a key expiring between them.
const RANDOM_TEMPLATES: &[&str] = &[
    "SET S V",
    "SET S V EX 100",
    "SET S V NX",
    "SET S V XX GET",
    "SET S V KEEPTTL",
    "SET S V PXAT 1",
    "GET S",
    "GETSET S V",
    "GETDEL S",
    "GETEX S PERSIST",
    "GETEX S EX 200",
    "MSET S V S V",
    "MSETNX S V S V",
    "MGET S K",
    "DEL K K",
    "EXISTS K K",
    "INCR S",
    "DECRBY S 7",
    "INCRBY S -3",
    "APPEND S V",
    "STRLEN S",
    "GETRANGE S 1 -2",
    "SETRANGE S 2 V",
    "EXPIRE K 100",
    "EXPIRE K 0",
    "PEXPIRE K 50000 GT",
    "EXPIRE K 300 LT",
    "EXPIRE K 100 NX",
    "EXPIREAT K 1",
    "PERSIST K",
    "TTL K",
    "TYPE K",
    "RENAME K K",
    "RENAMENX K K",
    "HSET H f V g V",
    "HGET H f",
    "HMGET H f g",
    "HDEL H f",
    "HLEN H",
    "HEXISTS H g",
    "HGETALL H",
    "HKEYS H",
    "HVALS H",
    "HINCRBY H n 3",
    "HSETNX H f V",
    "HSTRLEN H f",
    "LPUSH L V V",
    "RPUSH L V",
    "LPOP L",
    "RPOP L 2",
    "LPOP L 0",
    "LRANGE L 0 -1",
    "LINDEX L -1",
    "LLEN L",
    "LSET L 0 V",
    "LPUSHX L V",
    "RPOP L",
    "LPOP L 3",
    "SADD T V V",
    "SREM T V",
    "SMEMBERS T",
    "SISMEMBER T V",
    "SMISMEMBER T V 1",
    "SCARD T",
    "ZADD Z V V V V",
    "ZADD Z XX CH V V",
    "ZADD Z NX V V",
    "ZADD Z GT CH V V",
    "ZADD Z INCR V V",
    "ZINCRBY Z -V V",
    "ZINCRBY Z 0.5 V",
    "ZREM Z V V",
    "ZSCORE Z V",
    "ZMSCORE Z V V",
    "ZCARD Z",
    "ZRANK Z V",
    "ZREVRANK Z V",
    "ZRANGE Z 0 -1 WITHSCORES",
    "ZRANGE Z V -V REV",
    "ZRANGE Z (V +inf BYSCORE LIMIT 1 V",
    "ZRANGEBYSCORE Z -inf V WITHSCORES",
    "ZREVRANGEBYSCORE Z +inf (V",
    "ZRANGEBYLEX Z [V +",
    "ZCOUNT Z V +inf",
    "ZLEXCOUNT Z - (V",
    "ZPOPMIN Z",
    "ZPOPMAX Z V",
    "ZMPOP 2 Z Z MAX COUNT V",
    "ZREMRANGEBYRANK Z 0 V",
    "ZREMRANGEBYSCORE Z V V",
    "ZREMRANGEBYLEX Z [V +",
    "ZRANGESTORE Z Z 0 V",
    "ZUNIONSTORE Z 2 Z Z WEIGHTS V 2",
    "ZINTERSTORE Z 2 Z T AGGREGATE MAX",
    "ZDIFFSTORE Z 2 Z Z",
    "ZUNION 2 Z T WITHSCORES",
    "ZINTER 2 Z Z WITHSCORES",
    "ZDIFF 2 Z Z",
    "ZINTERCARD 2 Z Z LIMIT V",
    "ZSCAN Z 0",
    "ZRANDMEMBER Z 9",
    "KEYS *",
    "INCRBYFLOAT S 1.5",
    "INCRBYFLOAT S -0.25",
    "HINCRBYFLOAT H n 2.5",
    "SETBIT S 5 1",
    "SETBIT S 13 0",
    "GETBIT S 3",
    "BITCOUNT S",
    "BITCOUNT S 1 -1 BIT",
    "BITPOS S 1",
    "BITPOS S 0 1 -1 BIT",
    "BITOP XOR S S S",
    "BITFIELD S INCRBY i5 3 9 GET u4 2",
    "BITFIELD S OVERFLOW SAT INCRBY u3 #1 5",
    "BITFIELD_RO S GET u4 2",
    "COPY K K",
    "COPY K K REPLACE",
    "TOUCH K K",
    "OBJECT ENCODING K",
    "OBJECT REFCOUNT K",
    "LCS S S",
    "LCS S S IDX WITHMATCHLEN",
    "SRANDMEMBER T 2",
    "SRANDMEMBER T -2",
    "HRANDFIELD H 2 WITHVALUES",
    "HRANDFIELD H -3",
    "SPOP T 5",
    "RANDOMKEY",
    "SORT L",
    "SORT L DESC LIMIT 1 2",
    "SORT L ALPHA STORE K",
    "SORT_RO L BY nosort DESC",
    "SORT T",
    "SORT T BY nosort",
    "SORT L BY S GET # GET H",
    "MULTI",
    "FLUSHALL",
];

#[test]
fn random_sequences_match_redis() {
    let redis = Redis::start();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut failures = Vec::new();
    for round in 0..50 {
        let mut lines = Vec::new();
        while lines.len() < 300 {
            let t = RANDOM_TEMPLATES[rng.below(RANDOM_TEMPLATES.len())];
            match t {
                "FLUSHALL" if rng.below(4) != 0 => continue,
                "MULTI" => {
                    // A short transaction of commands with ordered replies.
                    lines.push("MULTI".to_string());
                    for _ in 0..=rng.below(4) {
                        let t = RANDOM_TEMPLATES[rng.below(RANDOM_TEMPLATES.len())];
                        let unordered = ["MULTI", "KEYS", "HGETALL", "HKEYS", "HVALS", "SMEMBERS", "ZSCAN"];
                        let random = ["SRANDMEMBER", "HRANDFIELD", "SPOP", "RANDOMKEY"];
                        if !unordered.iter().chain(&random).any(|c| t.starts_with(c)) {
                            lines.push(rng.command(t));
                        }
                    }
                    lines.push(if rng.below(4) == 0 { "DISCARD" } else { "EXEC" }.to_string());
                }
                _ => lines.push(rng.command(t)),
            }
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        failures.extend(run_script(&redis, &format!("random {round}"), &refs));
    }
    report(failures);
}
