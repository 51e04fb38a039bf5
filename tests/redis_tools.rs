//! Real Redis tools against the replicated pair: redis-cli and
//! redis-benchmark work unmodified; a backup redirects with READONLY.

mod common;
use common::*;
use std::process::Command;

fn redis_cli(addr: &str, args: &[&str]) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new("redis-cli")
        .args(["-h", host, "-p", port])
        .args(args)
        .output()
        .expect("redis-cli is installed (Debian package redis-tools)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn redis_cli_and_redis_benchmark_work_against_the_pair() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_node("a", &[]);
    h.wait_primary("a");
    h.start_node("b", &[]);
    h.wait_in_sync("b");
    let a = h.node("a").client.clone();
    assert_eq!(redis_cli(&a, &["PING"]), "PONG");
    assert_eq!(redis_cli(&a, &["SET", "greeting", "hello"]), "OK");
    assert_eq!(redis_cli(&a, &["GET", "greeting"]), "hello");
    assert_eq!(redis_cli(&a, &["INCRBY", "n", "5"]), "5");
    let info = redis_cli(&a, &["INFO", "replication"]);
    assert!(info.contains("role:master") && info.contains("protected:1"), "{info}");

    let b = h.node("b").client.clone();
    let readonly = redis_cli(&b, &["GET", "greeting"]);
    assert!(readonly.contains("READONLY") && readonly.contains(&a), "a backup names the primary: {readonly}");
    assert_eq!(redis_cli(&b, &["PING"]), "PONG");
    // Connection-level commands work on a backup, so a client that reached
    // it first can find out what it reached (issue 15 §1).
    let hello = redis_cli(&b, &["HELLO", "3"]);
    assert!(hello.contains("proto") && hello.contains('3'), "{hello}");
    assert_eq!(redis_cli(&b, &["CLIENT", "SETNAME", "app"]), "OK");
    assert_eq!(redis_cli(&b, &["SELECT", "0"]), "OK");
    let info = redis_cli(&b, &["INFO", "replication"]);
    assert!(info.contains("role:slave"), "{info}");
    let write = redis_cli(&b, &["SET", "k", "v"]);
    assert!(write.contains("READONLY"), "{write}");

    let (host, port) = a.rsplit_once(':').unwrap();
    let out = Command::new("redis-benchmark")
        .args(["-h", host, "-p", port, "-t", "set,get", "-n", "20000", "-c", "20", "-P", "16", "-q"])
        .output()
        .expect("redis-benchmark is installed (Debian package redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "redis-benchmark failed: {text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("SET:") && text.contains("GET:"), "{text}");
    // The benchmark's writes reached the backup too: DBSIZE agrees after failover.
    let size = redis_cli(&a, &["DBSIZE"]);
    let epoch = h.record().unwrap().epoch;
    h.kill9("a");
    h.wait_primary_after("b", epoch);
    assert_eq!(redis_cli(&b, &["DBSIZE"]), size);
    assert_eq!(redis_cli(&b, &["GET", "greeting"]), "hello");
}
