//! `--maxmemory` on a replicated pair: a primary filled far past its limit
//! under allkeys-lru keeps its memory estimate bounded and counts its
//! evictions; the evictions are replicated, so after kill -9 of the
//! primary the new primary holds exactly the keys the old one held, with
//! the same estimate. CONFIG SET maxmemory reaches the backup too.

mod common;
use common::*;
use std::process::Command;

const LIMIT: u64 = 2 << 20;

/// Every key of the node at `addr`, sorted (SCAN through redis-py).
fn keys(addr: &str) -> Vec<String> {
    let script = r#"
import sys, redis
h, p = sys.argv[1].rsplit(':', 1)
r = redis.Redis(host=h, port=int(p), decode_responses=True, socket_timeout=30)
print('\n'.join(sorted(r.scan_iter(count=1000))))
"#;
    let out = Command::new("python3").args(["-c", script, addr]).output().expect("python3");
    assert!(out.status.success(), "SCAN: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn evictions_are_replicated_and_memory_stays_bounded() {
    let _s = serial();
    let mut h = Harness::new();
    let flags = ["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"];
    h.start_node("a", &flags);
    h.wait_primary("a");
    h.start_node("b", &flags);
    h.wait_in_sync("b");
    let a = h.node("a").client.clone();
    let b = h.node("b").client.clone();
    assert_eq!(redis_cli(&a, &["CONFIG", "GET", "maxmemory"]), "maxmemory\n2097152");

    // About 10 MB of writes: 10 000 values of 1 000 bytes, pipelined.
    let script = r#"
import sys, redis
h, p = sys.argv[1].rsplit(':', 1)
r = redis.Redis(host=h, port=int(p), socket_timeout=30)
value = b'x' * 1000
for batch in range(100):
    pipe = r.pipeline(transaction=False)
    for i in range(100):
        pipe.set('key:%d' % (batch * 100 + i), value)
    assert all(pipe.execute())
print('ok')
"#;
    let out = Command::new("python3").args(["-c", script, &a]).output().expect("python3");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("ok"), "redis-py:\n{text}");

    let memory = redis_cli(&a, &["INFO", "memory"]);
    let used = info_field(&memory, "used_memory");
    assert!(used <= LIMIT + 4096, "used_memory {used} past maxmemory: {memory}");
    assert!(used > LIMIT / 2, "eviction stops under the limit: {memory}");
    assert_eq!(info_field(&memory, "maxmemory"), LIMIT);
    assert!(memory.contains("maxmemory_policy:allkeys-lru"), "{memory}");
    let evicted = info_field(&redis_cli(&a, &["INFO", "stats"]), "evicted_keys");
    let before = keys(&a);
    let dbsize: u64 = redis_cli(&a, &["DBSIZE"]).parse().unwrap();
    assert_eq!(before.len() as u64, dbsize);
    assert!(evicted >= 7000, "evicted {evicted}");
    assert_eq!(dbsize + evicted, 10_000, "every key written is held or was evicted");
    // The last key written is held (evictions come before a write).
    assert_eq!(redis_cli(&a, &["STRLEN", "key:9999"]), "1000");

    // A CONFIG SET is logged: the backup takes it too.
    assert_eq!(redis_cli(&a, &["CONFIG", "SET", "maxmemory", "3mb"]), "OK");

    let epoch = h.record().unwrap().epoch;
    h.kill9("a");
    h.wait_primary_after("b", epoch);
    assert_eq!(redis_cli(&b, &["DBSIZE"]), dbsize.to_string());
    assert_eq!(keys(&b), before, "the new primary holds exactly the keys the old one held");
    let memory_b = redis_cli(&b, &["INFO", "memory"]);
    assert_eq!(info_field(&memory_b, "used_memory"), used, "the estimate is a function of the keys");
    assert_eq!(info_field(&memory_b, "maxmemory"), 3 << 20, "CONFIG SET reached the backup");
    assert_eq!(info_field(&redis_cli(&b, &["INFO", "stats"]), "evicted_keys"), evicted, "the backup applied the same evictions");

    // noeviction on the new primary: a write that may grow memory is
    // refused with Redis's error; reads and deletes go on.
    assert_eq!(redis_cli(&b, &["CONFIG", "SET", "maxmemory", "1mb", "maxmemory-policy", "noeviction"]), "OK");
    assert_eq!(redis_cli(&b, &["SET", "new", "v"]), "OOM command not allowed when used memory > 'maxmemory'.");
    assert_eq!(redis_cli(&b, &["STRLEN", "key:9999"]), "1000");
    assert_eq!(redis_cli(&b, &["DEL", "key:9999"]), "1");
    let idle: u64 = redis_cli(&b, &["OBJECT", "IDLETIME", &before[0]]).parse().unwrap();
    assert!(idle < 3600, "the new primary knows when it applied the write: {idle}");
}
