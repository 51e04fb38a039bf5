//! `maxmemory` as a user relies on it: under allkeys-lru the keyspace's
//! memory estimate stays bounded and the keys read recently survive;
//! volatile-lru evicts only keys with a TTL and then refuses writes;
//! noeviction refuses writes that may grow memory with Redis's exact error
//! while reads and deletes go on. Commands go through the session and
//! `Kv::admit` as on the node's primary.

mod common;

use common::{wall_us, Client, RealCtx};
use understudy_kv::evict::{Maxmemory, Policy};

const OOM: &[u8] = b"-OOM command not allowed when used memory > 'maxmemory'.\r\n";

fn client(bytes: u64, policy: Policy) -> Client {
    let mut c = Client::new(1);
    c.kv.set_maxmemory(Maxmemory { bytes, policy });
    c
}

fn run(c: &mut Client, line: &[&str]) -> Vec<u8> {
    let argv: Vec<&[u8]> = line.iter().map(|a| a.as_bytes()).collect();
    c.run(&argv)
}

/// A read at `ahead_s` seconds from now: its access is the most recent.
fn read_at(c: &mut Client, ahead_s: u64, key: &str) -> Vec<u8> {
    let now_ms = wall_us() / 1000 + ahead_s * 1000;
    c.run_at(&mut RealCtx, now_ms, &[b"GET", key.as_bytes()])
}

#[test]
fn allkeys_lru_stays_bounded_and_keeps_what_was_read() {
    const LIMIT: u64 = 100 * 1024;
    let mut c = client(LIMIT, Policy::AllkeysLru);
    let value = "v".repeat(1000);
    let hot: Vec<String> = (0..10).map(|i| format!("hot{i}")).collect();
    for k in &hot {
        assert_eq!(run(&mut c, &["SET", k, &value]), b"+OK\r\n");
    }
    for i in 0..1000 {
        assert_eq!(run(&mut c, &["SET", &format!("cold{i}"), &value]), b"+OK\r\n", "a write is never refused");
        // Every write may add one value past the limit before the next
        // evicts it again.
        assert!(c.kv.used_memory() <= LIMIT + 2048, "used {} after {i} writes", c.kv.used_memory());
        if i % 20 == 0 {
            for k in &hot {
                read_at(&mut c, 1 + i as u64, k);
            }
        }
    }
    assert!(c.kv.evicted_keys() > 800, "evicted {}", c.kv.evicted_keys());
    assert!(c.kv.used_memory() > LIMIT / 2, "eviction stops once under the limit: {}", c.kv.used_memory());
    for k in &hot {
        assert_eq!(read_at(&mut c, 2000, k), format!("$1000\r\n{value}\r\n").into_bytes(), "{k} was read recently");
    }
    assert_eq!(c.kv.len() as u64 + c.kv.evicted_keys(), 1010);
}

#[test]
fn volatile_lru_evicts_keys_with_a_ttl_only_then_refuses() {
    const LIMIT: u64 = 50 * 1024;
    let mut c = client(LIMIT, Policy::VolatileLru);
    let value = "v".repeat(1000);
    for i in 0..20 {
        assert_eq!(run(&mut c, &["SET", &format!("ttl{i}"), &value, "EX", "1000"]), b"+OK\r\n");
    }
    // Keys without a TTL push the keys with one out, never each other;
    // once none with a TTL is left, writes are refused.
    let mut kept = 0;
    loop {
        let reply = run(&mut c, &["SET", &format!("keep{kept}"), &value]);
        if reply == OOM {
            break;
        }
        assert_eq!(reply, b"+OK\r\n");
        kept += 1;
        assert!(kept < 200, "writes go on past the limit");
    }
    assert!(kept > 40, "the keys with a TTL made room: {kept}");
    assert_eq!(c.kv.evicted_keys(), 20, "every key with a TTL, and only those");
    for i in 0..kept {
        assert_eq!(run(&mut c, &["EXISTS", &format!("keep{i}")]), b":1\r\n", "keep{i} has no TTL");
    }
    assert_eq!(run(&mut c, &["EXISTS", "ttl0", "ttl19"]), b":0\r\n");
    assert_eq!(run(&mut c, &["SET", "more", "x", "EX", "10"]), OOM);
    assert_eq!(run(&mut c, &["GET", "keep0"]), format!("$1000\r\n{value}\r\n").into_bytes());
}

#[test]
fn noeviction_refuses_writes_that_grow_memory_and_serves_the_rest() {
    let mut c = client(10 * 1024, Policy::NoEviction);
    let value = "v".repeat(1000);
    let mut stored = 0;
    while run(&mut c, &["SET", &format!("k{stored}"), &value]) == b"+OK\r\n" {
        stored += 1;
        assert!(stored < 100, "writes go on past the limit");
    }
    assert_eq!(c.kv.evicted_keys(), 0);
    let before = c.kv.len();
    assert_eq!(run(&mut c, &["SET", "other", "x"]), OOM);
    assert_eq!(run(&mut c, &["RPUSH", "l", "x"]), OOM);
    assert_eq!(run(&mut c, &["GET", "k0"]), format!("$1000\r\n{value}\r\n").into_bytes());
    assert_eq!(run(&mut c, &["EXPIRE", "k0", "100"]), b":1\r\n", "not denyoom");
    // MULTI queues nothing; EXEC aborts.
    assert_eq!(run(&mut c, &["MULTI"]), b"+OK\r\n");
    assert_eq!(run(&mut c, &["GET", "k0"]), OOM);
    assert_eq!(run(&mut c, &["EXEC"]), b"-EXECABORT Transaction discarded because of previous errors.\r\n");
    assert_eq!(c.kv.len(), before, "nothing refused was applied");
    // DEL frees memory; writes work again.
    assert_eq!(run(&mut c, &["DEL", "k0", "k1", "k2"]), b":3\r\n");
    assert_eq!(run(&mut c, &["SET", "other", "x"]), b"+OK\r\n");
    // CONFIG SET is a logged op: it changes the machine's limit.
    assert_eq!(run(&mut c, &["CONFIG", "SET", "maxmemory", "1mb", "maxmemory-policy", "allkeys-random"]), b"+OK\r\n");
    assert_eq!(c.kv.maxmemory(), Maxmemory { bytes: 1 << 20, policy: Policy::AllkeysRandom });
    assert!(c.log.last().is_some_and(|op| op.len() > 1), "CONFIG SET maxmemory was logged");
    assert_eq!(run(&mut c, &["SET", "more", &value]), b"+OK\r\n");
}

/// A transaction holding a write that may grow memory is refused at EXEC
/// if memory ran out after it was queued (Redis's execCommandAbort).
#[test]
fn exec_of_a_denyoom_transaction_under_oom_aborts() {
    let mut c = client(0, Policy::NoEviction);
    assert_eq!(run(&mut c, &["SET", "a", &"v".repeat(500)]), b"+OK\r\n");
    assert_eq!(run(&mut c, &["MULTI"]), b"+OK\r\n");
    assert_eq!(run(&mut c, &["SET", "b", "1"]), b"+QUEUED\r\n");
    c.kv.set_maxmemory(Maxmemory { bytes: 1, policy: Policy::NoEviction });
    assert_eq!(
        run(&mut c, &["EXEC"]),
        &b"-EXECABORT Transaction discarded because of: OOM command not allowed when used memory > 'maxmemory'.\r\n"[..]
    );
    assert_eq!(run(&mut c, &["EXISTS", "b"]), b":0\r\n");
    assert_eq!(run(&mut c, &["MULTI"]), b"+OK\r\n", "MULTI itself is no write");
    assert_eq!(run(&mut c, &["DISCARD"]), b"+OK\r\n");
}

/// Scripts under OOM: a `#!lua` script that may write does not start; a
/// script without a shebang fails at its first denyoom call, unless it
/// wrote first; allow-oom lets it run.
#[test]
fn scripts_under_oom_as_redis() {
    let mut c = client(0, Policy::NoEviction);
    assert_eq!(run(&mut c, &["SET", "a", "x"]), b"+OK\r\n");
    c.kv.set_maxmemory(Maxmemory { bytes: 1, policy: Policy::NoEviction });
    assert_eq!(run(&mut c, &["EVAL", "#!lua\nreturn redis.call('get','a')", "0"]), OOM);
    assert_eq!(run(&mut c, &["EVAL", "#!lua flags=no-writes\nreturn redis.call('get','a')", "0"]), b"$1\r\nx\r\n");
    assert_eq!(run(&mut c, &["EVAL", "#!lua flags=allow-oom\nreturn redis.call('set','a','y')", "0"]), b"+OK\r\n");
    assert_eq!(run(&mut c, &["EVAL", "return redis.call('get','a')", "0"]), b"$1\r\ny\r\n");
    let reply = run(&mut c, &["EVAL", "return redis.call('set','a','z')", "0"]);
    assert!(
        reply.starts_with(b"-OOM command not allowed when used memory > 'maxmemory'. script: "),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    assert_eq!(run(&mut c, &["EVAL", "redis.call('del','nokey') return redis.call('set','a','z')", "0"]), b"+OK\r\n");
}

/// OBJECT IDLETIME answers the seconds since the key's last access, from
/// reads too; OBJECT FREQ answers Redis's error without an LFU policy.
#[test]
fn object_idletime_counts_from_the_last_access() {
    let mut c = client(0, Policy::AllkeysLru);
    assert_eq!(run(&mut c, &["SET", "a", "x"]), b"+OK\r\n");
    let now_ms = wall_us() / 1000;
    let idle = |c: &mut Client, at_ms: u64| c.run_at(&mut RealCtx, at_ms, &[b"OBJECT", b"IDLETIME", b"a"]);
    // The write stamped this process's clock, at its 1 s resolution.
    let first = String::from_utf8(idle(&mut c, now_ms + 100_000)).unwrap();
    let secs: u64 = first.trim_start_matches(':').trim_end().parse().unwrap();
    assert!((99..=101).contains(&secs), "{first}");
    c.run_at(&mut RealCtx, now_ms + 100_000, &[b"GET", b"a"]);
    assert_eq!(idle(&mut c, now_ms + 130_000), b":30\r\n");
    assert_eq!(idle(&mut c, now_ms + 130_000), b":30\r\n", "OBJECT does not count as an access");
    assert_eq!(
        run(&mut c, &["OBJECT", "FREQ", "a"]),
        &b"-ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.\r\n"[..]
    );
    assert_eq!(run(&mut c, &["MULTI"]), b"+OK\r\n");
    assert_eq!(run(&mut c, &["OBJECT", "IDLETIME", "a"]), b"+QUEUED\r\n");
    let exec = run(&mut c, &["EXEC"]);
    assert!(
        exec.starts_with(b"*1\r\n-ERR understudy answers OBJECT IDLETIME outside MULTI"),
        "{}",
        String::from_utf8_lossy(&exec)
    );
}
