//! DUMP and RESTORE against a real Redis 7.0 (`redis-server`), type by
//! type and across the compact-encoding thresholds: a value built by the
//! same commands on both sides is DUMPed by Redis and RESTOREd into ours,
//! and DUMPed by ours and RESTOREd into Redis; each side's copy must read
//! back as the original (type-specific reads, unordered replies sorted),
//! with the encoding Redis gives the restored value. Where Redis's bytes
//! follow from the value alone (strings, lists built by RPUSH, intsets,
//! sorted sets, one-field hashes) the payloads must be byte-identical.
//! Payloads in the encodings of older Redis versions (ziplists, plain
//! lists, text scores), which Redis 7.0 no longer writes, are built here
//! and must be accepted alike.
//!
//! Requires `redis-server`; fails, never skips, without it.

mod common;
mod differential;

use common::{one_reply, show, Client, V};
use differential::*;

fn to_argv(words: &[Vec<u8>]) -> Vec<&[u8]> {
    words.iter().map(Vec::as_slice).collect()
}

fn both(conn: &mut Conn, ours: &mut Client, argv: &[&[u8]]) -> (Vec<u8>, Vec<u8>) {
    (conn.call(argv), ours.run(argv))
}

/// What a key holds, read in its type's way; unordered replies sorted.
fn contents(call: &mut dyn FnMut(&[&[u8]]) -> Vec<u8>, key: &[u8]) -> (V, V) {
    let ty = one_reply(&call(&[b"TYPE", key]));
    let read: Vec<&[u8]> = match &ty {
        V::Simple(t) if t == b"string" => vec![b"GET", key],
        V::Simple(t) if t == b"list" => vec![b"LRANGE", key, b"0", b"-1"],
        V::Simple(t) if t == b"set" => vec![b"SMEMBERS", key],
        V::Simple(t) if t == b"hash" => vec![b"HGETALL", key],
        V::Simple(t) if t == b"zset" => vec![b"ZRANGE", key, b"0", b"-1", b"WITHSCORES"],
        other => panic!("unexpected type {other:?}"),
    };
    let cmd = String::from_utf8_lossy(read[0]).to_lowercase();
    (ty, normalize(&cmd, one_reply(&call(&read))))
}

struct Case {
    name: String,
    /// Commands that build key `k` (the same on both sides).
    setup: Vec<Vec<Vec<u8>>>,
    /// Whether Redis's payload follows from the value alone.
    byte_equal: bool,
}

fn case(name: &str, byte_equal: bool, setup: Vec<Vec<Vec<u8>>>) -> Case {
    Case { name: name.to_string(), setup, byte_equal }
}

fn cmd(words: &[&[u8]]) -> Vec<Vec<u8>> {
    words.iter().map(|w| w.to_vec()).collect()
}

/// One command with `prefix` followed by `items`.
fn cmd_with(prefix: &[&[u8]], items: impl IntoIterator<Item = Vec<u8>>) -> Vec<Vec<u8>> {
    let mut c = cmd(prefix);
    c.extend(items);
    c
}

fn cases() -> Vec<Case> {
    let mut rng = Rng(0x5eed_1234_abcd);
    let random_bytes = |rng: &mut Rng, n: usize| (0..n).map(|_| rng.below(256) as u8).collect::<Vec<u8>>();
    let mut v = Vec::new();
    // Strings: integers at each RDB integer width and past it, text that
    // only looks like an integer, short, long compressible, long random.
    for s in [
        &b"v"[..],
        b"",
        b"0",
        b"-1",
        b"127",
        b"-128",
        b"128",
        b"32767",
        b"-32769",
        b"2147483647",
        b"2147483648",
        b"-2147483649",
        b"007",
        b"+1",
        b"-0",
        b"12345678901",
        b"9223372036854775807",
        b"12345678901234567890",
        b"exactly twenty bytes",
        b"twenty-one bytes long",
        b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        v.push(case(&format!("string {}", show(s)), true, vec![cmd(&[b"SET", b"k", s])]));
    }
    let text: Vec<u8> = b"the quick brown fox jumps over the lazy dog; ".iter().cycle().take(5000).copied().collect();
    v.push(case("string long text", true, vec![cmd(&[b"SET", b"k", &text])]));
    for n in [21, 100, 3000, 70_000] {
        let r = random_bytes(&mut rng, n);
        v.push(case(&format!("string random {n}"), true, vec![cmd(&[b"SET", b"k", &r])]));
    }
    let semi: Vec<u8> =
        (0..20_000).map(|i: u32| if i.is_multiple_of(7) { rng.below(256) as u8 } else { b'x' + (i % 3) as u8 }).collect();
    v.push(case("string semi-random 20000", true, vec![cmd(&[b"SET", b"k", &semi])]));
    v.push(case("string appended (raw)", true, vec![cmd(&[b"SET", b"k", b"12"]), cmd(&[b"APPEND", b"k", b"34"])]));
    // Lists: small, integers of every listpack width, several 8 KB nodes.
    v.push(case("list small", true, vec![cmd(&[b"RPUSH", b"k", b"a", b"b", b"1", b"2", b"300"])]));
    let ints = [
        "0",
        "127",
        "128",
        "-1",
        "4095",
        "-4096",
        "4096",
        "32767",
        "-32768",
        "8388607",
        "-8388609",
        "2147483648",
        "-9223372036854775808",
        "9223372036854775807",
        "12345678901234567890",
        "01",
        "-0",
    ];
    v.push(case("list integers", true, vec![cmd_with(&[b"RPUSH", b"k"], ints.iter().map(|s| s.as_bytes().to_vec()))]));
    v.push(case("list 2000 short", true, vec![cmd_with(&[b"RPUSH", b"k"], (0..2000).map(|i| format!("e{i}").into_bytes()))]));
    v.push(case(
        "list long elements",
        true,
        vec![cmd_with(&[b"RPUSH", b"k"], (0..60).map(|i| vec![b'a' + (i % 26) as u8; 200 + i * 37]))],
    ));
    v.push(case(
        "list random elements",
        true,
        vec![cmd_with(&[b"RPUSH", b"k"], (0..40).map(|i| random_bytes(&mut rng, 10 + i * 50)))],
    ));
    v.push(case(
        "list built by LPUSH",
        false,
        vec![cmd_with(&[b"LPUSH", b"k"], (0..3000).map(|i| format!("item-{i}").into_bytes()))],
    ));
    // Sets: intsets at each width, past 512 members, with text members.
    v.push(case("set intset 16", true, vec![cmd(&[b"SADD", b"k", b"3", b"1", b"-2", b"32767"])]));
    v.push(case("set intset 32", true, vec![cmd(&[b"SADD", b"k", b"70000", b"1"])]));
    v.push(case("set intset 64", true, vec![cmd(&[b"SADD", b"k", b"-9223372036854775808", b"5"])]));
    v.push(case(
        "set intset 512",
        true,
        vec![cmd_with(&[b"SADD", b"k"], (0..512).map(|i| (i * 7 - 1000).to_string().into_bytes()))],
    ));
    v.push(case("set 513 integers", false, vec![cmd_with(&[b"SADD", b"k"], (0..513).map(|i| i.to_string().into_bytes()))]));
    v.push(case("set text", false, vec![cmd(&[b"SADD", b"k", b"a", b"b", b"1"])]));
    v.push(case("set text big", false, vec![cmd_with(&[b"SADD", b"k"], (0..1000).map(|i| format!("m{i}").into_bytes()))]));
    // Hashes: listpack (one field: byte-equal), 512 and 513 fields (Redis
    // 7.0's hash-max-listpack-entries is 512), a value longer than 64 bytes.
    v.push(case("hash one field", true, vec![cmd(&[b"HSET", b"k", b"field", b"12"])]));
    v.push(case("hash small", false, vec![cmd(&[b"HSET", b"k", b"a", b"1", b"b", b"two", b"c", b"-300"])]));
    for n in [512, 513, 1000] {
        let pairs = (0..n).flat_map(|i| [format!("f{i}").into_bytes(), format!("v{}", i * 3).into_bytes()]);
        v.push(case(&format!("hash {n} fields"), false, vec![cmd_with(&[b"HSET", b"k"], pairs)]));
    }
    v.push(case("hash long value", false, vec![cmd(&[b"HSET", b"k", b"a", &[b'z'; 65], b"b", b"c"])]));
    // Sorted sets: listpack with integer, float and infinite scores, 128
    // and 129 members, a member longer than 64 bytes.
    v.push(case(
        "zset small",
        true,
        vec![cmd(&[
            b"ZADD",
            b"k",
            b"1",
            b"a",
            b"2.5",
            b"b",
            b"-inf",
            b"c",
            b"inf",
            b"d",
            b"0",
            b"e",
            b"1e300",
            b"f",
            b"4611686018427387904",
            b"g",
            b"-0.000001",
            b"h",
        ])],
    ));
    for n in [128, 129, 1000] {
        let pairs = (0..n).flat_map(|i| [format!("{}", (i * 37 % 101) as f64 / 8.0).into_bytes(), format!("m{i}").into_bytes()]);
        v.push(case(&format!("zset {n} members"), true, vec![cmd_with(&[b"ZADD", b"k"], pairs)]));
    }
    v.push(case("zset long member", true, vec![cmd(&[b"ZADD", b"k", b"1", &[b'q'; 65], b"2", b"x"])]));
    v
}

#[test]
fn dump_and_restore_round_trip_with_redis() {
    let redis = Redis::start();
    let mut failures = Vec::new();
    for c in cases() {
        let (mut conn, mut ours) = pair(&redis);
        for argv in &c.setup {
            let (theirs, mine) = both(&mut conn, &mut ours, &to_argv(argv));
            assert_eq!(show(&theirs), show(&mine), "[{}] setup", c.name);
        }
        let original = contents(&mut |a| conn.call(a), b"k");
        assert_eq!(contents(&mut |a| ours.run(a), b"k"), original, "[{}] the values built differ", c.name);
        let (rd, od) = both(&mut conn, &mut ours, &[b"DUMP", b"k"]);
        let (V::Bulk(Some(rd)), V::Bulk(Some(od))) = (one_reply(&rd), one_reply(&od)) else {
            panic!("[{}] DUMP: redis {} ours {}", c.name, show(&rd), show(&od))
        };
        if c.byte_equal && rd != od {
            failures.push(format!("[{}] DUMP bytes\n    redis: {}\n    ours:  {}", c.name, show(&rd), show(&od)));
        }
        // Redis's payload into both (ours must read what Redis wrote, and
        // give it the encoding Redis gives it), ours into Redis.
        for (side, reply) in
            [("redis", conn.call(&[b"RESTORE", b"r", b"0", &rd])), ("ours", ours.run(&[b"RESTORE", b"r", b"0", &rd]))]
        {
            assert_eq!(show(&reply), "+OK\\r\\n", "[{}] RESTORE of Redis's payload into {side}", c.name);
        }
        assert_eq!(show(&conn.call(&[b"RESTORE", b"o", b"0", &od])), "+OK\\r\\n", "[{}] RESTORE of ours into Redis", c.name);
        if contents(&mut |a| ours.run(a), b"r") != original {
            failures.push(format!("[{}] Redis's payload restored into ours reads differently", c.name));
        }
        if contents(&mut |a| conn.call(a), b"o") != original {
            failures.push(format!("[{}] our payload restored into Redis reads differently", c.name));
        }
        let (re, oe) = both(&mut conn, &mut ours, &[b"OBJECT", b"ENCODING", b"r"]);
        if re != oe {
            failures.push(format!("[{}] encoding after RESTORE: redis {} ours {}", c.name, show(&re), show(&oe)));
        }
    }
    report(failures);
}

/// Redis's CRC-64 (Jones, reflected), bit by bit: an independent check of
/// the payloads built below.
fn crc64(data: &[u8]) -> u64 {
    let mut crc = 0u64;
    for &b in data {
        crc ^= u64::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x95ac_9329_ac4b_c9b5 } else { crc >> 1 };
        }
    }
    crc
}

fn payload(body: &[u8], version: u16) -> Vec<u8> {
    let mut p = body.to_vec();
    p.extend_from_slice(&version.to_le_bytes());
    let crc = crc64(&p);
    p.extend_from_slice(&crc.to_le_bytes());
    p
}

/// A ziplist (Redis 3.2–6.2) of short strings and small integers.
fn ziplist(items: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    let (mut prev, mut tail) = (0usize, 10usize);
    for item in items {
        tail = 10 + body.len();
        let start = body.len();
        body.push(prev as u8);
        match std::str::from_utf8(item).ok().and_then(|s| s.parse::<i64>().ok()).filter(|_| item[0] != b'0' || item.len() == 1) {
            Some(v @ 0..=12) => body.push(0xF1 + v as u8),
            Some(v) if i16::try_from(v).is_ok() => {
                body.push(0xC0);
                body.extend_from_slice(&(v as i16).to_le_bytes());
            }
            _ => {
                assert!(item.len() < 64);
                body.push(item.len() as u8);
                body.extend_from_slice(item);
            }
        }
        prev = body.len() - start;
    }
    let mut zl = Vec::new();
    zl.extend_from_slice(&((10 + body.len() + 1) as u32).to_le_bytes());
    zl.extend_from_slice(&(tail as u32).to_le_bytes());
    zl.extend_from_slice(&(items.len() as u16).to_le_bytes());
    zl.extend_from_slice(&body);
    zl.push(0xFF);
    zl
}

/// An RDB string: verbatim with a 6- or 14-bit length.
fn rdb_string(s: &[u8]) -> Vec<u8> {
    let mut out = if s.len() < 64 { vec![s.len() as u8] } else { vec![0x40 | (s.len() >> 8) as u8, s.len() as u8] };
    out.extend_from_slice(s);
    out
}

#[test]
fn older_encodings_restore_as_in_redis() {
    let zl = ziplist(&[b"a", b"7", b"-300", b"hello", b"12"]);
    let pairs = ziplist(&[b"f", b"1", b"g", b"two"]);
    let zpairs = ziplist(&[b"m", b"1", b"n", b"2.5", b"o", b"-3"]);
    let mut bodies: Vec<(&str, Vec<u8>)> = vec![
        ("plain list (1)", [&[1u8, 3][..], &rdb_string(b"x"), &rdb_string(b"12"), &rdb_string(b"y")].concat()),
        ("plain set (2)", [&[2u8, 2][..], &rdb_string(b"x"), &rdb_string(b"1")].concat()),
        ("text-score zset (3)", [&[3u8, 2][..], &rdb_string(b"m"), b"\x031.5", &rdb_string(b"n"), b"\xfe"].concat()),
        ("plain hash (4)", [&[4u8, 1][..], &rdb_string(b"f"), &rdb_string(b"v")].concat()),
        ("binary-score zset (5)", [&[5u8, 1][..], &rdb_string(b"m"), &2.25f64.to_le_bytes()].concat()),
        ("ziplist list (10)", [&[10u8][..], &rdb_string(&zl)].concat()),
        ("ziplist zset (12)", [&[12u8][..], &rdb_string(&zpairs)].concat()),
        ("ziplist hash (13)", [&[13u8][..], &rdb_string(&pairs)].concat()),
        ("ziplist quicklist (14)", [&[14u8, 2][..], &rdb_string(&zl), &rdb_string(&ziplist(&[b"z"]))].concat()),
    ];
    // Malformed bodies with a valid footer: Bad data format on both sides.
    bodies.push(("unknown type", vec![8, 0]));
    bodies.push(("empty plain set", vec![2, 0]));
    bodies.push(("duplicate set members", [&[2u8, 2][..], &rdb_string(b"x"), &rdb_string(b"x")].concat()));
    bodies.push(("nan score", [&[5u8, 1][..], &rdb_string(b"m"), &f64::NAN.to_le_bytes()].concat()));
    bodies.push(("truncated string", vec![0, 5, b'a']));
    bodies.push(("bad quicklist container", [&[18u8, 1, 3][..], &rdb_string(b"x")].concat()));
    bodies.push(("bad lzf", vec![0, 0xC3, 2, 30, 0x20, 0]));
    let redis = Redis::start();
    let mut failures = Vec::new();
    for version in [9u16, 10] {
        for (name, body) in &bodies {
            let (mut conn, mut ours) = pair(&redis);
            let p = payload(body, version);
            let argv: [&[u8]; 4] = [b"RESTORE", b"k", b"0", &p];
            let (theirs, mine) = both(&mut conn, &mut ours, &argv);
            if theirs != mine {
                failures.push(format!("[{name} v{version}] RESTORE\n    redis: {}\n    ours:  {}", show(&theirs), show(&mine)));
                continue;
            }
            if theirs.starts_with(b"+") {
                let expected = contents(&mut |a| conn.call(a), b"k");
                if contents(&mut |a| ours.run(a), b"k") != expected {
                    failures.push(format!("[{name} v{version}] contents differ"));
                }
                let (re, oe) = both(&mut conn, &mut ours, &[b"OBJECT", b"ENCODING", b"k"]);
                if re != oe {
                    failures.push(format!("[{name} v{version}] encoding: redis {} ours {}", show(&re), show(&oe)));
                }
            }
        }
    }
    report(failures);
}

/// TTLs: relative from now, ABSTTL, already past (not created), and a
/// REPLACE whose TTL is past deletes the old value.
#[test]
fn restore_ttls_match_redis() {
    let redis = Redis::start();
    let (mut conn, mut ours) = pair(&redis);
    let p = payload(&[0, 1, b'v'], 10);
    let now_ms = common::wall_us() / 1000;
    let far = (now_ms + 100_000_000).to_string();
    let lines: Vec<Vec<Vec<u8>>> = vec![
        cmd(&[b"RESTORE", b"a", b"100000", &p]),
        cmd(&[b"RESTORE", b"b", far.as_bytes(), &p, b"ABSTTL"]),
        cmd(&[b"RESTORE", b"c", b"1", &p, b"ABSTTL"]),
        cmd(&[b"EXISTS", b"c"]),
        cmd(&[b"SET", b"d", b"old"]),
        cmd(&[b"RESTORE", b"d", b"1", &p, b"ABSTTL", b"REPLACE"]),
        cmd(&[b"EXISTS", b"d"]),
        cmd(&[b"RESTORE", b"e", b"9223372036854775807", &p]),
        cmd(&[b"EXISTS", b"e"]),
        cmd(&[b"RESTORE", b"a", b"0", &p, b"REPLACE", b"IDLETIME", b"10"]),
        cmd(&[b"TTL", b"a"]),
        cmd(&[b"OBJECT", b"FREQ", b"a"]),
    ];
    for argv in &lines {
        let (theirs, mine) = both(&mut conn, &mut ours, &to_argv(argv));
        assert_eq!(show(&theirs), show(&mine), "{:?}", argv[..2].iter().map(|a| show(a)).collect::<Vec<_>>());
    }
    for (key, tolerance) in [(&b"a"[..], 0), (b"b", 2000)] {
        let (theirs, mine) = both(&mut conn, &mut ours, &[b"PTTL", key]);
        let (V::Int(t), V::Int(m)) = (one_reply(&theirs), one_reply(&mine)) else { panic!("PTTL") };
        assert!((t - m).abs() <= tolerance.max(1000), "PTTL {}: redis {t} ours {m}", show(key));
    }
}
