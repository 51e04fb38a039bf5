//! Snapshots for state transfer (DESIGN §3, joining): roundtrip of every
//! type and expiry through small chunks, copy-on-write isolation from writes
//! made while the snapshot is being written, and corrupt chunks that must be
//! refused with an error, never a panic.

mod common;

use common::{args, Client, FixedCtx};
use understudy_core::StateMachine;
use understudy_kv::Kv;

const T0_US: u64 = 1_700_000_000_000_000;

/// Runs script lines at a fixed time.
fn run(c: &mut Client, lines: &[&str]) {
    let mut ctx = FixedCtx { now_us: T0_US, asks: 0 };
    for line in lines {
        let owned = args(line);
        let argv: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        c.run_at(&mut ctx, T0_US / 1000, &argv);
    }
}

/// A store with every type, expiries, binary data, and aggregates large
/// enough to be cut into several parts.
fn populated() -> Client {
    let mut c = Client::new(1);
    run(
        &mut c,
        &[
            "SET s1 hello",
            "SET s2 \\x00\\xff\\r\\n",
            "SET {} empty-key",
            "SET e {}",
            "SET t v EX 100",
            "SET gone v PX 1",
            "HSET h a 1 b 2 c 3",
            "RPUSH l x y z x",
            "SADD st m1 m2 m3",
            "ZADD zs 1 a 2.5 b -inf c inf d 0.1 e",
            "ZADD zt 1 x",
            "EXPIRE zt 40",
            "HSET ht f v",
            "EXPIRE ht 50",
            "RPUSH lt a",
            "PEXPIRE lt 12345",
            "INCR n",
            "XADD xs 1-1 f v g w",
            "XADD xs 2-0 f v2",
            "XDEL xs 1-1",
            "XADD xs 3-0 f v3",
            "XGROUP CREATE xs grp 0",
            "XREADGROUP GROUP grp alice COUNT 1 STREAMS xs >",
            "XGROUP CREATECONSUMER xs grp bob",
            "XGROUP CREATE xe grp $ MKSTREAM",
            "EXPIRE xe 60",
        ],
    );
    let big = "v".repeat(1000);
    for i in 0..300 {
        run(
            &mut c,
            &[
                &format!("HSET bigh field{i} {big}"),
                &format!("RPUSH bigl item{i}-{big}"),
                &format!("SADD bigs member{i}-{big}"),
                &format!("ZADD bigz {} member{i}-{big}", f64::from(i) / 3.0),
                &format!("SET k{i} {i}"),
                &format!("XADD bigx {}-1 f{i} {big}", i + 1),
            ],
        );
    }
    c
}

/// Every type and expiry, small enough to corrupt byte by byte.
fn small() -> Client {
    let mut c = Client::new(1);
    run(
        &mut c,
        &[
            "SET s1 hello",
            "SET s2 \\x00\\xff",
            "SET t v EX 100",
            "HSET h a 1 b 2 c 3",
            "RPUSH l x y z x",
            "SADD st m1 m2 m3",
            "ZADD zs 1 a -inf b",
            "ZADD zt 2 x",
            "PEXPIRE zt 5000",
            "HSET ht f v",
            "EXPIRE ht 50",
            "RPUSH lt a",
            "PEXPIRE lt 12345",
            "INCR n",
        ],
    );
    c
}

fn chunks(kv: &Kv, max_bytes: usize) -> Vec<Vec<u8>> {
    let mut w = kv.snapshot();
    let mut out = Vec::new();
    loop {
        let mut chunk = Vec::new();
        if !w.next_chunk(&mut chunk, max_bytes) {
            assert!(chunk.is_empty(), "a finished writer appends nothing");
            return out;
        }
        out.push(chunk);
    }
}

fn restore(chunks: &[Vec<u8>]) -> Result<Kv, understudy_core::SnapshotError> {
    let mut kv = Kv::new();
    for c in chunks {
        kv.restore_chunk(c)?;
    }
    kv.restore_finish()?;
    Ok(kv)
}

#[test]
fn roundtrip_with_small_chunks() {
    let c = populated();
    for max in [1, 200, 4096, 1 << 20] {
        let parts = chunks(&c.kv, max);
        for p in &parts {
            // Only a single record larger than the bound may exceed it; the
            // largest record is one aggregate part (about 64 KiB).
            assert!(p.len() <= max.max(70 * 1024), "chunk of {} bytes for max {max}", p.len());
        }
        let restored = restore(&parts).expect("restore");
        assert_eq!(restored.digest(), c.kv.digest(), "max {max}");
        assert_eq!(restored.len(), c.kv.len());
        assert_eq!(restored.expiring(), c.kv.expiring());
    }
}

#[test]
fn restored_store_answers_the_same() {
    let c = populated();
    let mut r = Client::new(1);
    r.kv = restore(&chunks(&c.kv, 1000)).unwrap();
    let now_ms = T0_US / 1000 + 10;
    for q in [
        "GET s2",
        "GET {}",
        "PTTL t",
        "PTTL lt",
        "HGET h b",
        "LRANGE l 0 -1",
        "SCARD bigs",
        "HLEN bigh",
        "ZRANGE zs 0 -1 WITHSCORES",
        "ZCARD bigz",
        "ZRANGE bigz 100 102 WITHSCORES",
        "ZRANGEBYSCORE bigz 99 99.5 WITHSCORES",
        "PTTL zt",
        "LINDEX bigl 299",
        "GET gone",
        "TTL ht",
        "TYPE st",
        "DBSIZE",
        "GET n",
        "XRANGE xs - +",
        "XPENDING xs grp",
        "XLEN bigx",
        "XRANGE bigx 150 152",
        "TYPE xe",
        "XLEN xe",
        "PTTL xe",
    ] {
        let owned = args(q);
        let argv: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        c.kv.read_argv(now_ms, &argv, &mut a);
        r.kv.read_argv(now_ms, &argv, &mut b);
        assert_eq!(a, b, "{q}");
    }
}

/// Copy-on-write: what the snapshot writes is the state at `snapshot()`,
/// whatever is written to the store while the writer runs.
#[test]
fn writes_after_snapshot_do_not_leak_into_it() {
    let mut c = populated();
    let before = c.kv.digest();
    let mut w = c.kv.snapshot();
    let mut parts = Vec::new();
    let mut chunk = Vec::new();
    assert!(w.next_chunk(&mut chunk, 500));
    parts.push(chunk);
    // Change keys in shards already serialized and in shards not yet.
    run(&mut c, &["SET s1 changed", "DEL h", "RPUSH l more", "HSET bigh new v", "SET fresh 1"]);
    for i in 0..300 {
        run(&mut c, &[&format!("INCR k{i}")]);
    }
    loop {
        let mut chunk = Vec::new();
        if !w.next_chunk(&mut chunk, 500) {
            break;
        }
        parts.push(chunk);
        run(&mut c, &["FLUSHALL", "SET only 1"]);
    }
    assert_ne!(c.kv.digest(), before);
    assert_eq!(restore(&parts).unwrap().digest(), before);
}

#[test]
fn empty_store_roundtrip() {
    let kv = Kv::new();
    let parts = chunks(&kv, 100);
    assert_eq!(parts.len(), 1, "just the end record");
    assert_eq!(restore(&parts).unwrap().digest(), kv.digest());
}

#[test]
fn truncated_chunks_are_errors() {
    let parts = chunks(&small().kv, 30);
    assert!(parts.len() > 3);
    for (i, p) in parts.iter().enumerate() {
        for cut in 0..p.len() {
            let mut bad = parts.clone();
            bad[i].truncate(cut);
            assert!(restore(&bad).is_err(), "chunk {i} cut at {cut} was accepted");
        }
    }
}

#[test]
fn flipped_bytes_are_errors() {
    let parts = chunks(&small().kv, 30);
    for (i, p) in parts.iter().enumerate() {
        for pos in 0..p.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = parts.clone();
                bad[i][pos] ^= flip;
                assert!(restore(&bad).is_err(), "chunk {i} byte {pos} ^ {flip:#x} was accepted");
            }
        }
    }
}

#[test]
fn missing_extra_and_misplaced_chunks_are_errors() {
    let parts = chunks(&populated().kv, 3000);
    assert!(parts.len() > 3);
    let mut missing = parts.clone();
    missing.remove(1);
    assert!(restore(&missing).is_err());
    let mut no_end = parts.clone();
    no_end.pop();
    let e = restore(&no_end).err().expect("no end record");
    assert!(e.0.contains("no end record"), "{e}");
    let mut extra = parts.clone();
    extra.push(parts[0].clone());
    assert!(restore(&extra).is_err());
    assert!(restore(&[vec![1]]).is_err(), "a chunk without records");
    assert!(restore(&[vec![]]).is_err(), "an empty chunk");
    assert!(restore(&[vec![9, 0x0F, 0, 0, 0, 0, 0, 0, 0, 0, 0]]).is_err(), "unknown version");
    let older = restore(&[vec![1, 0x0F, 0, 0, 0, 0, 0, 0, 0, 0, 0]]).err().expect("an older build's format");
    assert!(older.0.contains("written by another understudy version"), "{older}");
    let mut kv = populated().kv;
    let e = kv.restore_chunk(&parts[0]).unwrap_err();
    assert!(e.0.contains("not empty"), "{e}");
}

/// The snapshot format's version byte, first in every chunk.
const V: u8 = 2;

#[test]
fn hostile_lengths_are_refused_without_allocating() {
    // A string record whose value claims 2^62 bytes.
    let mut chunk = vec![V, 1, 1, b'k'];
    chunk.extend([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
    assert!(restore(&[chunk]).is_err());
    // A hash record claiming 2^62 elements.
    let mut chunk = vec![V, 2, 1, b'h'];
    chunk.extend([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 1, b'f', 1, b'v']);
    let e = restore(&[chunk]).err().expect("hostile count");
    assert!(e.0.contains("exceeds"), "{e}");
}

#[test]
fn duplicate_keys_and_fields_are_errors() {
    let string = |key: u8| vec![1u8, 1, key, 1, b'v'];
    let mut chunk = vec![V];
    chunk.extend(string(b'a'));
    chunk.extend(string(b'a'));
    assert!(restore(&[chunk]).is_err());
    let chunk = vec![V, 4, 1, b's', 2, 1, b'm', 1, b'm'];
    assert!(restore(&[chunk]).is_err(), "set with a repeated member");
    let chunk = vec![V, 4, 1, b's', 0];
    assert!(restore(&[chunk]).is_err(), "empty set");
    let chunk = vec![V, 0x80 | 3, 1, b'l', 1, 1, b'x'];
    assert!(restore(&[chunk]).is_err(), "continuation without a first part");
    let member = |m: u8, score: f64| {
        let mut e = vec![1u8, m];
        e.extend(score.to_bits().to_le_bytes());
        e
    };
    let zset = |elements: &[Vec<u8>]| {
        let mut chunk = vec![V, 5, 1, b'z', elements.len() as u8];
        elements.iter().for_each(|e| chunk.extend(e));
        chunk
    };
    assert!(restore(&[zset(&[member(b'm', 1.0), member(b'm', 2.0)])]).is_err(), "zset with a repeated member");
    assert!(restore(&[zset(&[member(b'm', f64::NAN)])]).is_err(), "a NaN score");
    assert!(restore(&[zset(&[member(b'm', -0.0)])]).is_err(), "a -0 score");
    assert!(restore(&[zset(&[])]).is_err(), "empty zset");
}

/// OBJECT ENCODING after a restore is what Redis 7.0 reports after
/// loading an RDB file (checked with DEBUG RELOAD): every value encoded by
/// its contents, whatever its history; aggregates restored in several
/// parts included.
#[test]
fn restored_encodings_follow_contents_as_after_an_rdb_load() {
    let long = "a".repeat(65);
    let mut c = Client::new(1);
    run(
        &mut c,
        &[
            &format!("HSET hc f {long} g v"),
            "HDEL hc f",
            "SADD sc a 1",
            "SREM sc a",
            "APPEND ap x",
            "APPEND ap y",
            "INCRBYFLOAT fl 5",
            "SET n 5",
            "COPY n nc",
        ],
    );
    for i in 0..600 {
        run(&mut c, &[&format!("SADD ints {i}"), &format!("HSET wide f{i} v")]);
    }
    let encodings = |c: &mut Client| -> Vec<Vec<u8>> {
        ["hc", "sc", "ap", "fl", "nc", "ints", "wide"]
            .iter()
            .map(|k| c.run_at(&mut FixedCtx { now_us: T0_US, asks: 0 }, T0_US / 1000, &[b"OBJECT", b"ENCODING", k.as_bytes()]))
            .collect()
    };
    let before = encodings(&mut c);
    let bulk = |s: &str| format!("${}\r\n{s}\r\n", s.len()).into_bytes();
    let history = ["hashtable", "hashtable", "raw", "embstr", "int", "hashtable", "hashtable"];
    assert_eq!(before, history.map(bulk));
    let mut r = Client::new(1);
    r.kv = restore(&chunks(&c.kv, 300)).unwrap();
    let loaded = ["listpack", "intset", "embstr", "int", "int", "hashtable", "hashtable"];
    assert_eq!(encodings(&mut r), loaded.map(bulk));
    let refcount = r.run_at(&mut FixedCtx { now_us: T0_US, asks: 0 }, T0_US / 1000, &[b"OBJECT", b"REFCOUNT", b"nc"]);
    assert_eq!(refcount, b":2147483647\r\n", "a restored small integer is shared again");
}

/// The script cache and math.random's state are replicated state: a
/// restored store runs EVALSHA of a loaded script and draws the same
/// numbers next; SCRIPT FLUSH's empty cache travels too.
#[test]
fn script_cache_and_random_state_survive_snapshot() {
    let mut c = populated();
    run(&mut c, &[r#"SCRIPT LOAD "return redis.call('GET', KEYS[1])""#, r#"EVAL "return math.random(1000)" 0"#]);
    let sha = "d3c21d0c2b9ca22f82737626a27bcaf5d288f99f";
    let mut r = Client::new(1);
    r.kv = restore(&chunks(&c.kv, 500)).unwrap();
    assert_eq!(r.kv.digest(), c.kv.digest());
    let mut ctx = FixedCtx { now_us: T0_US, asks: 0 };
    for line in [
        format!("SCRIPT EXISTS {sha}"),
        format!("EVALSHA {sha} 1 s1"),
        r#"EVAL "return {math.random(1000), math.random(1000)}" 0"#.to_string(),
    ] {
        let owned = args(&line);
        let argv: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let theirs = c.run_at(&mut ctx, T0_US / 1000, &argv);
        let ours = r.run_at(&mut ctx, T0_US / 1000, &argv);
        assert_eq!(common::show(&ours), common::show(&theirs), "{line}");
        assert!(!theirs.starts_with(b"-") && theirs != b"*1\r\n:0\r\n", "{line}: {}", common::show(&theirs));
    }
    assert_eq!(r.kv.digest(), c.kv.digest());
    run(&mut c, &["SCRIPT FLUSH"]);
    let flushed = restore(&chunks(&c.kv, 1 << 20)).unwrap();
    assert_eq!(flushed.digest(), c.kv.digest());
    assert_ne!(flushed.digest(), r.kv.digest(), "the cache is part of the digest");
}
