//! Determinism of replay (DESIGN §2–3): a backup that applies the
//! primary's logged ops with the primary's recorded time and random values
//! reaches the same state (digest) and produces the same replies (SPOP
//! pops the same members), asks for time and randomness exactly when the
//! primary did, and a joiner restored from a snapshot taken mid-way
//! converges too. Also: writes ask for time only when they need it.

mod common;

use common::{args, Client};
use proptest::prelude::*;
use understudy_core::{Ctx, StateMachine};
use understudy_kv::evict::{Maxmemory, Policy};
use understudy_kv::Kv;

const T0_US: u64 = 1_700_000_000_000_000;

/// Hands out one time per op and remembers whether it was asked, and
/// random values: the primary's recording context (fresh values, kept in
/// `randoms`), or the backup's replaying one (the recorded values, in order).
struct OpCtx {
    now_us: u64,
    asked: bool,
    randoms: Vec<u64>,
    /// Replaying: the next recorded value to hand out.
    replay_at: Option<usize>,
    /// Recording: the state of the generator of fresh values.
    seed: u64,
}

impl OpCtx {
    fn record(now_us: u64, seed: u64) -> OpCtx {
        OpCtx { now_us, asked: false, randoms: Vec::new(), replay_at: None, seed }
    }

    fn replay(entry: &Logged) -> OpCtx {
        OpCtx { now_us: entry.now_us, asked: false, randoms: entry.randoms.clone(), replay_at: Some(0), seed: 0 }
    }

    /// A context for ops that must not draw.
    fn at(now_us: u64) -> OpCtx {
        OpCtx { now_us, asked: false, randoms: Vec::new(), replay_at: Some(0), seed: 0 }
    }
}

impl Ctx for OpCtx {
    fn now_us(&mut self) -> u64 {
        self.asked = true;
        self.now_us
    }
    fn random_u64(&mut self) -> u64 {
        match &mut self.replay_at {
            Some(i) => {
                let v = *self.randoms.get(*i).expect("a replayed op draws no more values than the primary's did");
                *i += 1;
                v
            }
            None => {
                // SplitMix64: fresh values, reproducible from the test's seed.
                self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = self.seed;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                let v = z ^ (z >> 31);
                self.randoms.push(v);
                v
            }
        }
    }
}

/// One logged op: its bytes, its time, whether it read the clock, the
/// random values it drew, and the primary's reply.
struct Logged {
    op: Vec<u8>,
    now_us: u64,
    asked: bool,
    randoms: Vec<u64>,
    reply: Vec<u8>,
}

const TEMPLATES: &[&str] = &[
    "SET K V",
    "SET K V EX 2",
    "SET K V PX 1500 NX",
    "SET K V XX KEEPTTL",
    "SET K V GET",
    "GETSET K V",
    "GETDEL K",
    "GETEX K PX 900",
    "GETEX K PERSIST",
    "MSET K V K2 V",
    "MSETNX K V K2 V",
    "DEL K K2",
    "INCR K",
    "DECRBY K 3",
    "APPEND K V",
    "SETRANGE K 3 V",
    "EXPIRE K 1",
    "PEXPIRE K 700 GT",
    "EXPIREAT K 1700000001",
    "PERSIST K",
    "HSET K f V g V",
    "HSETNX K f V",
    "HDEL K f",
    "HINCRBY K n 2",
    "LPUSH K V V",
    "RPUSH K V",
    "LPOP K",
    "RPOP K 2",
    "LSET K 0 V",
    "SADD K V V2",
    "SREM K V",
    "ZADD K V V V2 V",
    "ZADD K INCR 2 V",
    "ZINCRBY K -1 V",
    "ZREM K V",
    "ZPOPMIN K",
    "ZPOPMAX K 2",
    "ZMPOP 2 K K2 MIN COUNT 2",
    "ZRANGESTORE K2 K 0 -1",
    "ZUNIONSTORE K 2 K K2 WEIGHTS 2 1",
    "ZINTERSTORE K2 2 K K2 AGGREGATE MAX",
    "ZDIFFSTORE K 2 K2 K",
    "ZREMRANGEBYSCORE K V2 V",
    "ZREMRANGEBYRANK K 0 0",
    "ZRANGE K 0 -1 WITHSCORES",
    "ZRANDMEMBER K -3 WITHSCORES",
    "ZRANDMEMBER K 2",
    "RENAME K K2",
    "RENAMENX K K2",
    "FLUSHALL",
    "MULTI",
    "EXEC",
    "DISCARD",
    "GET K",
    "TTL K",
    "LRANGE K 0 -1",
    "HGET K f",
    "SISMEMBER K V",
    "SPOP K",
    "SPOP K 2",
    "SPOP K 5",
    "SRANDMEMBER K 2",
    "SRANDMEMBER K -3",
    "HRANDFIELD K 2 withvalues",
    "randomkey",
    "INCRBYFLOAT K 1.5",
    "HINCRBYFLOAT K n 0.1",
    "SETBIT K 9 1",
    "BITFIELD K INCRBY u8 0 100",
    "BITOP OR K K2 K",
    "COPY K K2 REPLACE",
    "SADD K V V2 x",
    "SORT K ALPHA STORE K2",
    "SORT K BY nosort",
    "SORT K BY K2 GET #",
    "PFADD K V V2 x",
    "PFCOUNT K",
    "PFMERGE K K2",
    "PFCOUNT K K2",
    "XADD K * f V",
    "XADD K MAXLEN ~ 2 * f V g V2",
    "XADD K2 NOMKSTREAM * f V",
    "XTRIM K MAXLEN 1",
    "XDEL K 0-1",
    "XGROUP CREATE K g 0 MKSTREAM",
    "XREADGROUP GROUP g c COUNT 2 STREAMS K >",
    "XREADGROUP GROUP g c STREAMS K 0",
    "XACK K g 0-1",
    "XCLAIM K g c2 0 0-1 FORCE",
    "XAUTOCLAIM K g c3 0 0 COUNT 2",
    "XPENDING K g - + 10",
    "XGROUP DELCONSUMER K g c",
    "XRANGE K - +",
    // DUMP and RESTORE: payloads of Redis 7.0 (a list, a sorted set, an
    // intset, a hash); a relative TTL reads the recorded clock.
    "DUMP K",
    "RESTORE K 0 \\x12\\x01\\x02\\x0f\\x0f\\x00\\x00\\x00\\x03\\x00\\x81\\x61\\x02\\x81\\x62\\x02\\x03\\x01\\xff\\x0a\\x00\\xdc\\xa1\\xe6\\x7d\\x50\\x05\\x50\\x48 REPLACE",
    "RESTORE K2 0 \\x11\\x14\\x14\\x00\\x00\\x00\\x04\\x00\\x81\\x61\\x02\\x01\\x01\\x81\\x62\\x02\\x83\\x32\\x2e\\x35\\x04\\xff\\x0a\\x00\\xd4\\x4c\\x6e\\xa4\\xf6\\x44\\xd9\\xd7",
    "RESTORE K 5000 \\x0b\\x0c\\x02\\x00\\x00\\x00\\x02\\x00\\x00\\x00\\x01\\x00\\x02\\x00\\x0a\\x00\\x6f\\x79\\x38\\xb1\\x34\\xeb\\x20\\x2e REPLACE",
    "RESTORE K 0 \\x10\\x0d\\x0d\\x00\\x00\\x00\\x02\\x00\\x81\\x66\\x02\\x81\\x76\\x02\\xff\\x0a\\x00\\x20\\xf1\\x3d\\x44\\x23\\x54\\x08\\x9d REPLACE ABSTTL",
    "XINFO STREAM K FULL",
    "XINFO CONSUMERS K g",
    "LMPOP 2 K K2 LEFT COUNT 2",
    "BLMPOP 0 2 K2 K RIGHT",
    "BZMPOP 0 2 K K2 MAX COUNT 2",
];

fn command(template: usize, key: u8, key2: u8, val: u8) -> Vec<Vec<u8>> {
    let line = TEMPLATES[template % TEMPLATES.len()]
        .replace("K2", &format!("k{key2}"))
        .replace('K', &format!("k{key}"))
        .replace("V2", &format!("{}", val / 2))
        .replace('V', &format!("{val}"));
    args(&line)
}

/// Runs `steps` on a primary, logging its writes as the node would.
fn run_primary(steps: &[(usize, u8, u8, u8, u16)], expire_every: usize) -> (Client, Vec<Logged>) {
    run_primary_with(steps, expire_every, Maxmemory::default())
}

/// [`run_primary`] with `maxmemory`: the primary puts its evictions in the
/// log ahead of the writes (`Kv::admit`, called by the client as by the node).
fn run_primary_with(steps: &[(usize, u8, u8, u8, u16)], expire_every: usize, limit: Maxmemory) -> (Client, Vec<Logged>) {
    let mut primary = Client::new(1);
    primary.kv.set_maxmemory(limit);
    let mut log = Vec::new();
    let mut now_us = T0_US;
    for (i, &(t, k, k2, v, advance_ms)) in steps.iter().enumerate() {
        now_us += u64::from(advance_ms) * 1000;
        let argv_owned = command(t, k % 5, k2 % 5, v % 7);
        let argv: Vec<&[u8]> = argv_owned.iter().map(Vec::as_slice).collect();
        let mut ctx = OpCtx::record(now_us, i as u64);
        let before = primary.log.len();
        let reply = primary.run_at(&mut ctx, now_us / 1000, &argv);
        if primary.log.len() > before {
            let op = primary.log.last().unwrap().clone();
            log.push(Logged { op, now_us, asked: ctx.asked, randoms: ctx.randoms, reply });
        }
        if expire_every > 0 && i % expire_every == 0 {
            let mut op = Vec::new();
            if primary.kv.expire_cycle_op(now_us / 1000, 3, &mut op) {
                let mut ctx = OpCtx::at(now_us);
                let mut reply = Vec::new();
                primary.kv.apply(&mut ctx, &op, &mut reply);
                log.push(Logged { op, now_us, asked: ctx.asked, randoms: Vec::new(), reply });
            }
        }
    }
    (primary, log)
}

/// Applies `log` to `kv` as a backup does, checking each op's clock use
/// and reply against the primary's.
fn replay(kv: &mut Kv, log: &[Logged]) -> Result<(), TestCaseError> {
    for (i, entry) in log.iter().enumerate() {
        let mut ctx = OpCtx::replay(entry);
        let mut reply = Vec::new();
        kv.apply(&mut ctx, &entry.op, &mut reply);
        prop_assert_eq!(ctx.asked, entry.asked, "op {} asked for time differently", i);
        prop_assert_eq!(ctx.replay_at, Some(entry.randoms.len()), "op {} drew other random values", i);
        prop_assert_eq!(&reply, &entry.reply, "op {} replied differently", i);
    }
    Ok(())
}

fn steps() -> impl Strategy<Value = Vec<(usize, u8, u8, u8, u16)>> {
    proptest::collection::vec((0..TEMPLATES.len(), any::<u8>(), any::<u8>(), any::<u8>(), 0u16..800), 1..120)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn backup_replaying_the_log_converges(steps in steps()) {
        let (primary, log) = run_primary(&steps, 7);
        let mut backup = Kv::new();
        replay(&mut backup, &log)?;
        prop_assert_eq!(backup.digest(), primary.kv.digest());
        prop_assert_eq!(backup.len(), primary.kv.len());
        prop_assert_eq!(backup.used_memory(), primary.kv.used_memory());
    }

    /// Under a small maxmemory the primary evicts; the backup, which never
    /// chooses, deletes the same keys from the log and holds the same
    /// keys, the same memory figure and the same count of evictions.
    #[test]
    fn backup_replaying_evictions_converges(steps in steps(), bytes in 100u64..1500, policy in 0..Policy::ALL.len()) {
        let limit = Maxmemory { bytes, policy: Policy::ALL[policy] };
        let (primary, log) = run_primary_with(&steps, 7, limit);
        let mut backup = Kv::new();
        replay(&mut backup, &log)?;
        prop_assert_eq!(backup.digest(), primary.kv.digest());
        prop_assert_eq!(backup.len(), primary.kv.len());
        prop_assert_eq!(backup.used_memory(), primary.kv.used_memory());
        prop_assert_eq!(backup.evicted_keys(), primary.kv.evicted_keys());
    }

    #[test]
    fn joiner_from_a_mid_way_snapshot_converges(steps in steps(), cut in any::<prop::sample::Index>()) {
        let (primary, log) = run_primary(&steps, 5);
        let cut = cut.index(log.len() + 1);
        let mut source = Kv::new();
        replay(&mut source, &log[..cut])?;
        let mut writer = source.snapshot();
        let mut joiner = Kv::new();
        let mut chunk = Vec::new();
        while writer.next_chunk(&mut chunk, 64) {
            joiner.restore_chunk(&chunk).map_err(|e| TestCaseError::fail(e.to_string()))?;
            chunk.clear();
        }
        joiner.restore_finish().map_err(|e| TestCaseError::fail(e.to_string()))?;
        replay(&mut joiner, &log[cut..])?;
        prop_assert_eq!(joiner.digest(), primary.kv.digest());
    }
}

/// The evicting primary of the property above does evict, under each
/// eviction policy, and a backup replaying its log evicts the same keys.
#[test]
fn evictions_are_logged_and_replayed() {
    let steps: Vec<(usize, u8, u8, u8, u16)> = (0..200u8).map(|i| (1 + usize::from(i % 2), i, i, i, 10)).collect();
    for policy in [Policy::AllkeysLru, Policy::VolatileLru, Policy::AllkeysRandom, Policy::VolatileRandom, Policy::VolatileTtl] {
        let limit = Maxmemory { bytes: 120, policy };
        let (primary, log) = run_primary_with(&steps, 0, limit);
        assert!(primary.kv.evicted_keys() > 0, "{policy:?} evicted nothing");
        assert!(log.iter().any(|l| l.op[0] == understudy_kv::evict::OP_EVICT), "{policy:?}");
        let mut backup = Kv::new();
        replay(&mut backup, &log).unwrap();
        assert_eq!(backup.digest(), primary.kv.digest(), "{policy:?}");
        assert_eq!(backup.evicted_keys(), primary.kv.evicted_keys(), "{policy:?}");
    }
}

/// Each time read costs log bytes: writes that touch no expiry must not ask.
#[test]
fn writes_ask_for_time_only_when_needed() {
    let mut c = Client::new(1);
    let asked = |c: &mut Client, line: &str| {
        let owned = args(line);
        let argv: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let mut ctx = OpCtx::at(T0_US);
        c.run_at(&mut ctx, T0_US / 1000, &argv);
        ctx.asked
    };
    for line in [
        "SET a 1",
        "SET a 2",
        "INCR a",
        "APPEND a x",
        "MSET a 1 b 2",
        "DEL b",
        "HSET h f v",
        "LPUSH l x",
        "SADD s m",
        "GETSET a 3",
        "FLUSHALL",
        "SET a 1",
        "RENAME a b",
        "HDEL h f",
        "EXPIREAT nokey 1",
        "ZADD z 1 m 2 n",
        "ZINCRBY z 1 m",
        "ZPOPMIN z",
        "ZUNIONSTORE y 1 z",
        "RESTORE r 0 \\x10\\x0d\\x0d\\x00\\x00\\x00\\x02\\x00\\x81\\x66\\x02\\x81\\x76\\x02\\xff\\x0a\\x00\\x20\\xf1\\x3d\\x44\\x23\\x54\\x08\\x9d",
        "RESTORE r 0 \\x10\\x0d\\x0d\\x00\\x00\\x00\\x02\\x00\\x81\\x66\\x02\\x81\\x76\\x02\\xff\\x0a\\x00\\x20\\xf1\\x3d\\x44\\x23\\x54\\x08\\x9d REPLACE",
    ] {
        assert!(!asked(&mut c, line), "{line} read the clock");
    }
    let restore_ttl = "RESTORE rt 100 \\x10\\x0d\\x0d\\x00\\x00\\x00\\x02\\x00\\x81\\x66\\x02\\x81\\x76\\x02\\xff\\x0a\\x00\\x20\\xf1\\x3d\\x44\\x23\\x54\\x08\\x9d";
    for line in ["SET t v EX 10", "INCR t", "GET t", "DEL t", "EXPIRE a 10", "SET a 1 PX 5", "EXPIREAT b 1", restore_ttl] {
        let is_read = line.starts_with("GET ");
        assert_eq!(asked(&mut c, line), !is_read, "{line}");
    }
}

/// The expire cycle reclaims expired keys on both replicas alike, names
/// only expired keys, and leaves live ones alone.
#[test]
fn expire_cycle_reclaims_only_expired_keys() {
    let mut c = Client::new(1);
    let mut ctx = OpCtx::at(T0_US);
    for i in 0..1000 {
        let ttl = if i % 2 == 0 { "PX 100" } else { "EX 1000" };
        let owned = args(&format!("SET k{i} v {ttl}"));
        let argv: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        c.run_at(&mut ctx, T0_US / 1000, &argv);
    }
    c.run_at(&mut ctx, T0_US / 1000, &[b"SET", b"forever", b"v"]);
    let mut backup = Kv::new();
    for op in &c.log {
        backup.apply(&mut OpCtx::at(T0_US), op, &mut Vec::new());
    }
    let later_ms = T0_US / 1000 + 101;
    let mut op = Vec::new();
    assert!(!c.kv.expire_cycle_op(T0_US / 1000 + 100, 50, &mut op), "nothing has expired at +100 ms");
    let mut rounds = 0;
    while c.kv.expire_cycle_op(later_ms, 50, &mut op) {
        rounds += 1;
        assert!(rounds < 1000, "the cycle does not converge");
        for kv in [&mut c.kv, &mut backup] {
            let mut reply = Vec::new();
            kv.apply(&mut OpCtx::at(later_ms * 1000), &op, &mut reply);
            let deleted: usize = std::str::from_utf8(&reply[1..reply.len() - 2]).unwrap().parse().unwrap();
            assert!(deleted > 0 && deleted <= 50, "reply {reply:?}");
        }
    }
    assert_eq!(c.kv.len(), 501);
    assert_eq!(backup.digest(), c.kv.digest());
    // Applied at a time before the keys expire, the same op deletes nothing.
    let mut fresh = Client::new(1);
    fresh.run_at(&mut ctx, T0_US / 1000, &[b"SET", b"x", b"v", b"PX", b"100"]);
    assert!(fresh.kv.expire_cycle_op(later_ms, 10, &mut op));
    let mut reply = Vec::new();
    fresh.kv.apply(&mut OpCtx::at(T0_US), &op, &mut reply);
    assert_eq!(reply, b":0\r\n");
}

/// Corrupt ops never panic: they get an error reply and change nothing.
#[test]
fn garbage_ops_are_refused() {
    let mut kv = Kv::new();
    let d = kv.digest();
    for op in [
        &b""[..],
        b"\x09",
        b"\x01",
        b"\x01\xff\x00",
        b"\x01\x00\x05\x01a",
        b"\x02\x05\x00",
        b"\x03\xff\xff\x03",
        b"\x02\x01\x07",
        b"\x01\x1c\x02\x01k\x01v\x00",
    ] {
        let mut reply = Vec::new();
        kv.apply(&mut OpCtx::at(T0_US), op, &mut reply);
        assert!(reply.starts_with(b"-ERR corrupt operation"), "{op:?} -> {:?}", String::from_utf8_lossy(&reply));
    }
    assert_eq!(kv.digest(), d);
}

proptest! {
    #[test]
    fn random_ops_never_panic(op in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut kv = Kv::new();
        kv.apply(&mut OpCtx::at(T0_US), &op, &mut Vec::new());
    }
}

/// A script workload: EVAL and EVALSHA (cache hits after SCRIPT LOAD and
/// EVAL), math.random, TIME, unordered replies a script writes back, a
/// script that fails half-way, scripts inside MULTI and US.CALL, SCRIPT
/// FLUSH, and scripts that call the random commands (SPOP, SRANDMEMBER,
/// HRANDFIELD, RANDOMKEY: values drawn from the op's context, recorded
/// and replayed) and INCRBYFLOAT. Each line runs at its own recorded time.
const SCRIPT_LINES: &[&str] = &[
    r#"SCRIPT LOAD "local n = redis.call('INCR', KEYS[1]) redis.call('RPUSH', 'rolls', math.random(1000000)) return n""#,
    "EVALSHA 2bd9d4d3c1f5d0f4d59ce4c22c3b1e6b0f1a1e1a 1 counter",
    r#"EVAL "math.randomseed(tonumber(ARGV[1])) return redis.call('SET', KEYS[1], math.random())" 1 seeded 99"#,
    r#"EVAL "local t = redis.call('TIME') redis.call('SET', 'when', t[1]) return t[1]" 0"#,
    "HSET h b 2 a 1 c 3",
    r#"EVAL "local all = redis.call('HGETALL', 'h') redis.call('SET', 'first', all[1]) return all" 0"#,
    r#"EVAL "redis.call('SET', 'half', 'done') return redis.call('INCR', 'h')" 0"#,
    r#"EVAL "return {tostring({}), tostring(redis), collectgarbage('count')}" 0"#,
    "MULTI",
    r#"EVAL "return redis.call('RPUSH', 'rolls', math.random(10))" 0"#,
    "INCR counter",
    "EXEC",
    "US.SESSION s1",
    r#"US.CALL s1 1 EVAL "return redis.call('INCRBY', KEYS[1], ARGV[1])" 1 counter 5"#,
    r#"US.CALL s1 1 EVAL "return redis.call('INCRBY', KEYS[1], ARGV[1])" 1 counter 5"#,
    "SCRIPT FLUSH",
    r#"EVAL "return {redis.call('GET', 'counter'), math.random(100)}" 0"#,
    "LRANGE rolls 0 -1",
    "SADD pool a b c d e f g h i j",
    r#"EVAL "local p = redis.call('SPOP', KEYS[1]) redis.call('SET', 'popped', p) return {p, redis.call('SPOP', KEYS[1], 3), redis.call('SRANDMEMBER', KEYS[1], -4)}" 1 pool"#,
    r#"EVAL "redis.call('RPUSH', 'picks', redis.call('RANDOMKEY'), unpack(redis.call('HRANDFIELD', 'h', 2, 'WITHVALUES'))) return redis.call('SRANDMEMBER', 'pool')" 0"#,
    r#"EVAL "return {redis.call('INCRBYFLOAT', 'fl', '10.5'), redis.call('INCRBYFLOAT', 'fl', '0.1')}" 0"#,
    "MULTI",
    r#"EVAL "return redis.call('SPOP', 'pool', 2)" 0"#,
    "SPOP pool",
    "EXEC",
    "SMEMBERS pool",
];

/// The primary runs SCRIPT_LINES (the sha of the first script's body is
/// filled in); a backup replaying the log gives the same replies and
/// digest, and so does a joiner restored from a snapshot taken mid-way.
#[test]
fn scripts_replay_alike_and_survive_a_snapshot() {
    let body = "local n = redis.call('INCR', KEYS[1]) redis.call('RPUSH', 'rolls', math.random(1000000)) return n";
    let sha = understudy_kv_sha1(body);
    let mut primary = Client::new(1);
    let mut log = Vec::new();
    let mut replies = Vec::new();
    let mut draws = Vec::new();
    for (i, line) in SCRIPT_LINES.iter().enumerate() {
        let line = line.replace("2bd9d4d3c1f5d0f4d59ce4c22c3b1e6b0f1a1e1a", &sha);
        let owned = args(&line);
        let argv: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let now_us = T0_US + i as u64 * 1_000_000;
        let mut ctx = OpCtx::record(now_us, i as u64);
        let before = primary.log.len();
        let reply = primary.run_at(&mut ctx, now_us / 1000, &argv);
        replies.push((line.clone(), reply.clone()));
        if primary.log.len() > before {
            let op = primary.log.last().unwrap().clone();
            draws.push((line.clone(), ctx.randoms.len()));
            log.push(Logged { op, now_us, asked: ctx.asked, randoms: ctx.randoms, reply });
        }
    }
    let shown: Vec<String> = replies.iter().map(|(l, r)| format!("{l} -> {}", common::show(r))).collect();
    let reply_of = |i: usize| common::show(&replies[i].1);
    assert_eq!(reply_of(1), ":1\\r\\n", "{shown:#?}");
    assert!(reply_of(5).starts_with("*6\\r\\n$1\\r\\na\\r\\n$1\\r\\n1"), "sorted HGETALL: {shown:#?}");
    assert!(reply_of(6).starts_with("-WRONGTYPE"), "{shown:#?}");
    assert_eq!(reply_of(7), "*3\\r\\n$17\\r\\ntable: 0x00000001\\r\\n$17\\r\\ntable: 0x00000002\\r\\n:0\\r\\n");
    assert_eq!(reply_of(13), reply_of(14), "a retried US.CALL gets the same answer");
    assert!(reply_of(16).starts_with("*2\\r\\n$1\\r\\n7\\r\\n"), "{shown:#?}");
    // The random commands inside scripts drew from the op's context: one
    // value per command that picked, the backup gets the same ones.
    let drew = |prefix: &str| draws.iter().rfind(|(l, _)| l.starts_with(prefix)).map(|d| d.1);
    assert_eq!(drew(r#"EVAL "local p = redis.call('SPOP'"#), Some(3), "{draws:?}");
    assert_eq!(drew(r#"EVAL "redis.call('RPUSH', 'picks'"#), Some(3), "{draws:?}");
    assert_eq!(drew("EXEC"), Some(2), "a script's SPOP and a SPOP in one transaction: {draws:?}");
    assert!(reply_of(19).starts_with("*3\\r\\n$1\\r\\n"), "SPOP in a script: {shown:#?}");
    assert!(reply_of(20).starts_with("$1\\r\\n"), "SRANDMEMBER in a script: {shown:#?}");
    assert_eq!(reply_of(21), "*2\\r\\n$4\\r\\n10.5\\r\\n$4\\r\\n10.6\\r\\n", "{shown:#?}");
    assert!(reply_of(26).starts_with("*3\\r\\n"), "10 - 1 - 3 - 2 - 1 members left: {shown:#?}");
    let mut backup = Kv::new();
    replay(&mut backup, &log).expect("the backup replies alike");
    assert_eq!(backup.digest(), primary.kv.digest());
    for cut in 0..=log.len() {
        let mut source = Kv::new();
        replay(&mut source, &log[..cut]).unwrap();
        let mut writer = source.snapshot();
        let mut joiner = Kv::new();
        let mut chunk = Vec::new();
        while writer.next_chunk(&mut chunk, 64) {
            joiner.restore_chunk(&chunk).unwrap();
            chunk.clear();
        }
        joiner.restore_finish().unwrap();
        assert_eq!(joiner.digest(), source.digest(), "cut {cut}");
        replay(&mut joiner, &log[cut..]).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        assert_eq!(joiner.digest(), primary.kv.digest(), "cut {cut}");
    }
}

/// Lowercase hex SHA1, as SCRIPT LOAD answers it.
fn understudy_kv_sha1(body: &str) -> String {
    let mut c = Client::new(9);
    let reply = c.run(&[b"SCRIPT", b"LOAD", body.as_bytes()]);
    String::from_utf8(reply[5..45].to_vec()).unwrap()
}
