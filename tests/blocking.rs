//! Blocking pops on the pair (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH,
//! BZPOPMIN, BZPOPMAX, BLMPOP, BZMPOP): a waiting client is served by a later push on
//! another connection, times out with a null array, and is disconnected —
//! never robbed of an element — when its node stops being the primary;
//! XREAD and XREADGROUP with BLOCK wait the same way.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use understudy_client::Reply;

/// Sends one command without reading its reply.
fn send(s: &mut TcpStream, args: &[&str]) {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    s.write_all(&out).unwrap();
}

/// Reads as many bytes as `want` holds (or until the connection ends)
/// and checks they are `want`.
fn expect(s: &mut TcpStream, want: &[u8]) {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while got.len() < want.len() {
        match s.read(&mut chunk[..want.len() - got.len()]) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("reading after {:?}: {e}", got.escape_ascii().to_string()),
        }
    }
    assert_eq!(got.escape_ascii().to_string(), want.escape_ascii().to_string());
}

/// Nothing arrives on `s` for `d` (the command on it is held).
fn assert_nothing_for(s: &mut TcpStream, d: Duration) {
    s.set_read_timeout(Some(d)).unwrap();
    let mut chunk = [0u8; 64];
    let r = s.read(&mut chunk);
    assert!(r.is_err(), "a held command answered: {r:?} {:?}", chunk.escape_ascii().to_string());
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

#[test]
fn a_waiting_pop_is_served_by_a_later_push_and_times_out_with_a_null() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_pair();
    let addr = h.node("a").client.clone();
    let mut c = h.conn("a");

    let mut waiter = connect(&addr);
    send(&mut waiter, &["BLPOP", "q1", "q2", "0"]);
    send(&mut waiter, &["PING"]);
    // The pop waits; a PING queued behind it waits too, as in Redis.
    assert_nothing_for(&mut waiter, Duration::from_millis(300));
    assert_eq!(c.call(&["RPUSH", "q2", "job"]).unwrap(), Reply::Int(1));
    expect(&mut waiter, b"*2\r\n$2\r\nq2\r\n$3\r\njob\r\n+PONG\r\n");
    assert_eq!(c.call(&["EXISTS", "q2"]).unwrap(), Reply::Int(0), "popped once");

    // BLMOVE and BZPOPMAX wake on their own keys only.
    send(&mut waiter, &["BLMOVE", "src", "dst", "RIGHT", "LEFT", "30"]);
    let mut zwaiter = connect(&addr);
    send(&mut zwaiter, &["BZPOPMAX", "z", "30"]);
    c.call(&["SET", "unrelated", "x"]).unwrap();
    assert_nothing_for(&mut zwaiter, Duration::from_millis(300));
    c.call(&["ZADD", "z", "1", "low", "2", "high"]).unwrap();
    expect(&mut zwaiter, b"*3\r\n$1\r\nz\r\n$4\r\nhigh\r\n$1\r\n2\r\n");
    c.call(&["LPUSH", "src", "a", "b"]).unwrap();
    expect(&mut waiter, b"$1\r\na\r\n");
    assert_eq!(c.call(&["LRANGE", "dst", "0", "-1"]).unwrap(), Reply::Array(Some(vec![Reply::Bulk(Some(b"a".to_vec()))])));

    // A timeout answers a null array, no earlier than asked.
    let t0 = Instant::now();
    send(&mut waiter, &["BRPOP", "never", "0.3"]);
    expect(&mut waiter, b"*-1\r\n");
    assert!(t0.elapsed() >= Duration::from_millis(300), "timed out after {:?}", t0.elapsed());
    // Errors answer at once.
    send(&mut waiter, &["BLPOP", "never", "-1"]);
    expect(&mut waiter, b"-ERR timeout is negative\r\n");

    // Everything popped is popped on the backup too.
    let epoch = h.record().unwrap().epoch;
    h.kill9("a");
    h.wait_primary_after("b", epoch);
    let mut b = h.conn("b");
    assert_eq!(b.call(&["EXISTS", "q2"]).unwrap(), Reply::Int(0));
    assert_eq!(b.call(&["LRANGE", "src", "0", "-1"]).unwrap(), Reply::Array(Some(vec![Reply::Bulk(Some(b"b".to_vec()))])));
    assert_eq!(b.call(&["ZRANGE", "z", "0", "-1"]).unwrap(), Reply::Array(Some(vec![Reply::Bulk(Some(b"low".to_vec()))])));
}

#[test]
fn blmpop_and_bzmpop_are_served_by_a_later_push_and_time_out_with_a_null() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_pair();
    let addr = h.node("a").client.clone();
    let mut c = h.conn("a");

    let mut lwaiter = connect(&addr);
    send(&mut lwaiter, &["BLMPOP", "0", "2", "l1", "l2", "RIGHT", "COUNT", "2"]);
    let mut zwaiter = connect(&addr);
    send(&mut zwaiter, &["BZMPOP", "30", "2", "z1", "z2", "MIN", "COUNT", "5"]);
    assert_nothing_for(&mut lwaiter, Duration::from_millis(300));
    assert_nothing_for(&mut zwaiter, Duration::from_millis(10));
    // Each wakes on its own keys only.
    c.call(&["ZADD", "z2", "2", "b", "1", "a"]).unwrap();
    expect(&mut zwaiter, b"*2\r\n$2\r\nz2\r\n*2\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n*2\r\n$1\r\nb\r\n$1\r\n2\r\n");
    assert_nothing_for(&mut lwaiter, Duration::from_millis(100));
    assert_eq!(c.call(&["RPUSH", "l2", "a", "b", "c"]).unwrap(), Reply::Int(3));
    expect(&mut lwaiter, b"*2\r\n$2\r\nl2\r\n*2\r\n$1\r\nc\r\n$1\r\nb\r\n");

    // A timeout answers a null array, no earlier than asked.
    let t0 = Instant::now();
    send(&mut lwaiter, &["BLMPOP", "0.3", "1", "never", "LEFT"]);
    send(&mut zwaiter, &["BZMPOP", "0.3", "1", "never", "MAX"]);
    expect(&mut lwaiter, b"*-1\r\n");
    expect(&mut zwaiter, b"*-1\r\n");
    assert!(t0.elapsed() >= Duration::from_millis(300), "timed out after {:?}", t0.elapsed());
    // Errors answer at once, in Redis's order (numkeys before the timeout).
    send(&mut lwaiter, &["BLMPOP", "x", "0", "never", "LEFT"]);
    expect(&mut lwaiter, b"-ERR numkeys should be greater than 0\r\n");
    send(&mut zwaiter, &["BZMPOP", "-1", "1", "never", "MAX"]);
    expect(&mut zwaiter, b"-ERR timeout is negative\r\n");

    // The pops are on the backup too.
    let epoch = h.record().unwrap().epoch;
    h.kill9("a");
    h.wait_primary_after("b", epoch);
    let mut b = h.conn("b");
    assert_eq!(b.call(&["LRANGE", "l2", "0", "-1"]).unwrap(), Reply::Array(Some(vec![Reply::Bulk(Some(b"a".to_vec()))])));
    assert_eq!(b.call(&["EXISTS", "z2"]).unwrap(), Reply::Int(0));
}

#[test]
fn xread_and_xreadgroup_with_block_wait_for_an_entry_and_dollar_misses_none() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_pair();
    let addr = h.node("a").client.clone();
    let mut c = h.conn("a");
    c.call(&["XADD", "s", "1-1", "f", "old"]).unwrap();
    c.call(&["XGROUP", "CREATE", "s", "g", "$"]).unwrap();

    // `$` means after the entry that was last when XREAD arrived: an entry
    // added while it waits is delivered, even after other writes.
    let mut reader = connect(&addr);
    send(&mut reader, &["XREAD", "BLOCK", "0", "STREAMS", "s", "$"]);
    let mut grouped = connect(&addr);
    send(&mut grouped, &["XREADGROUP", "GROUP", "g", "c1", "BLOCK", "0", "STREAMS", "s", ">"]);
    assert_nothing_for(&mut reader, Duration::from_millis(300));
    assert_nothing_for(&mut grouped, Duration::from_millis(10));
    c.call(&["SET", "s2", "unrelated"]).unwrap();
    c.call(&["XADD", "s", "2-1", "f", "new"]).unwrap();
    let entry = "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n2-1\r\n*2\r\n$1\r\nf\r\n$3\r\nnew\r\n";
    expect(&mut reader, entry.as_bytes());
    expect(&mut grouped, entry.as_bytes());

    // A timeout answers a null array.
    send(&mut reader, &["XREAD", "BLOCK", "300", "STREAMS", "s", "$"]);
    expect(&mut reader, b"*-1\r\n");
    // A group read that waited leaves nothing pinned for the next XREAD.
    send(&mut grouped, &["XREADGROUP", "GROUP", "g", "c1", "BLOCK", "0", "STREAMS", "s", ">"]);
    assert_nothing_for(&mut grouped, Duration::from_millis(100));
    c.call(&["XADD", "s", "3-1", "f", "third"]).unwrap();
    let third = "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n3-1\r\n*2\r\n$1\r\nf\r\n$5\r\nthird\r\n";
    expect(&mut grouped, third.as_bytes());
    send(&mut grouped, &["XREAD", "COUNT", "1", "STREAMS", "s", "2-1"]);
    expect(&mut grouped, third.as_bytes());
    // The group's delivery is on the backup: it sees the pending entry.
    let epoch = h.record().unwrap().epoch;
    h.kill9("a");
    h.wait_primary_after("b", epoch);
    let pending = h.conn("b").call(&["XPENDING", "s", "g"]).unwrap();
    let Reply::Array(Some(p)) = pending else { panic!("XPENDING gave {pending:?}") };
    assert_eq!(p[0], Reply::Int(2), "both delivered entries pending after the failover");
}

#[test]
fn a_waiting_client_is_disconnected_on_switchover_and_loses_nothing() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_pair();
    let mut waiter = connect(&h.node("a").client);
    send(&mut waiter, &["BLPOP", "jobs", "0"]);
    let out = h.switchover();
    assert!(out.status.success(), "switchover: {}", String::from_utf8_lossy(&out.stderr));
    let mut rest = Vec::new();
    let closed = waiter.read_to_end(&mut rest);
    assert!(closed.is_ok() && rest.is_empty(), "the waiter got {:?} ({closed:?})", rest.escape_ascii().to_string());
    // It retries on the new primary and gets the job pushed there.
    let rec = h.record().unwrap();
    let mut waiter = connect(&rec.primary.client);
    send(&mut waiter, &["BLPOP", "jobs", "0"]);
    let mut c = understudy_client::Conn::connect(&rec.primary.client, Duration::from_secs(5)).unwrap();
    assert_eq!(c.call(&["RPUSH", "jobs", "j1"]).unwrap(), Reply::Int(1));
    expect(&mut waiter, b"*2\r\n$4\r\njobs\r\n$2\r\nj1\r\n");
}
