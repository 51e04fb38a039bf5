//! Pub/sub on the pair: Redis 7.0's bytes for every subscription command
//! and message (RESP2 and RESP3, compared with a real redis-server), the
//! output rule for messages (a subscriber receives nothing the backup does
//! not have), and subscribers told to reconnect when their node stops
//! being the primary.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A raw connection that runs one command at a time and returns exactly
/// the bytes it produced: each command is followed by `PING __mark__`,
/// whose reply (in any mode and protocol) ends the step.
struct Wire {
    s: TcpStream,
    buf: Vec<u8>,
}

const MARKS: [&[u8]; 2] = [b"*2\r\n$4\r\npong\r\n$8\r\n__mark__\r\n", b"$8\r\n__mark__\r\n"];

impl Wire {
    fn connect(addr: &str) -> Wire {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Wire { s, buf: Vec::new() }
    }

    fn send(&mut self, args: &[&str]) {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        self.s.write_all(&out).unwrap();
    }

    fn step(&mut self, args: &[&str]) -> Vec<u8> {
        if !args.is_empty() {
            self.send(args);
        }
        self.send(&["PING", "__mark__"]);
        loop {
            if let Some(m) = MARKS.iter().find(|m| self.buf.ends_with(m)) {
                let n = self.buf.len() - m.len();
                let got = self.buf[..n].to_vec();
                self.buf.clear();
                return got;
            }
            let mut chunk = [0u8; 65536];
            let n = self.s.read(&mut chunk).unwrap_or_else(|e| panic!("reading the reply to {args:?}: {e}"));
            assert!(n > 0, "connection closed during {args:?}");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The subscriber `a`'s and publisher `b`'s steps, in both protocols.
const STEPS: &[(char, &[&str])] = &[
    ('a', &["UNSUBSCRIBE"]),
    ('a', &["PUNSUBSCRIBE"]),
    ('a', &["SUBSCRIBE"]),
    ('a', &["SUBSCRIBE", "c1", "c2", "c1"]),
    ('a', &["PSUBSCRIBE", "c*"]),
    ('b', &["PUBLISH", "c1", "hello"]),
    ('b', &["PUBLISH", "nobody", "x"]),
    ('a', &["PING"]),
    ('a', &["PING", "x"]),
    ('a', &["GET", "k"]),
    ('a', &["SET", "k", "v"]),
    ('b', &["PUBSUB", "NUMSUB", "c1", "c3"]),
    ('b', &["PUBSUB", "NUMPAT"]),
    ('b', &["PUBSUB", "CHANNELS", "c1*"]),
    ('b', &["PUBSUB", "NOPE"]),
    ('b', &["PUBSUB", "NUMPAT", "x"]),
    ('b', &["PUBLISH", "c2", "two"]),
    ('a', &["UNSUBSCRIBE", "c1", "nope"]),
    ('a', &["UNSUBSCRIBE"]),
    ('a', &["PUNSUBSCRIBE"]),
    ('a', &["GET", "k"]),
    ('a', &["SUBSCRIBE", "z"]),
    ('a', &["RESET"]),
    ('b', &["PUBLISH", "z", "m"]),
];

fn run_steps(addr: &str, proto: &str) -> Vec<String> {
    let (mut a, mut b) = (Wire::connect(addr), Wire::connect(addr));
    if proto == "3" {
        a.step(&["HELLO", "3"]);
    }
    a.step(&["DEL", "k"]);
    STEPS
        .iter()
        .map(|(who, args)| {
            let got = if *who == 'a' { a.step(args) } else { b.step(args) };
            format!("{who} {args:?} -> {}", got.escape_ascii())
        })
        .collect()
}

#[test]
fn subscriptions_and_messages_match_redis_in_resp2_and_resp3() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), "r", None);
    let mut h = Harness::new();
    h.start_pair();
    for proto in ["2", "3"] {
        let (theirs, ours) = (run_steps(&redis.1, proto), run_steps(&h.node("a").client, proto));
        for (t, o) in theirs.iter().zip(&ours) {
            assert_eq!(o, t, "RESP{proto}: ours, then Redis's");
        }
    }
    for proto in ["2", "3"] {
        let (theirs, ours) = (published_by_steps(&redis.1, proto), published_by_steps(&h.node("a").client, proto));
        assert_eq!(ours, theirs, "RESP{proto}: PUBLISH in MULTI and from a script; ours, then Redis's");
    }
}

/// A script that publishes and stores how many subscribers it reached.
const PUBLISH_AND_COUNT: &str = "local n = redis.call('PUBLISH', KEYS[1], ARGV[1]) redis.call('SET', KEYS[2], n) return n";

/// PUBLISH queued in a transaction and run from a script: what the
/// publisher and a subscriber read, step by step.
fn published_by_steps(addr: &str, proto: &str) -> Vec<String> {
    let (mut a, mut b) = (Wire::connect(addr), Wire::connect(addr));
    if proto == "3" {
        a.step(&["HELLO", "3"]);
        b.step(&["HELLO", "3"]);
    }
    let mut got = vec![a.step(&["SUBSCRIBE", "t1"])];
    for cmd in [&["MULTI"][..], &["PUBLISH", "t1", "in-multi"], &["PUBLISH", "nobody", "x"], &["SET", "k", "v"], &["EXEC"]] {
        b.send(cmd);
    }
    got.push(b.step(&[]));
    got.push(a.step(&[]));
    got.push(b.step(&["EVAL", PUBLISH_AND_COUNT, "2", "t1", "seen", "from-script"]));
    got.push(a.step(&[]));
    got.push(b.step(&["GET", "seen"]));
    got.iter().map(|g| g.escape_ascii().to_string()).collect()
}

/// A script that acts on PUBLISH's count (subscribers exist only on the
/// primary) changes the backup's state as it changed the primary's: the
/// count is a recorded input, replayed, so the new primary after a kill -9
/// holds what the old one acknowledged.
#[test]
fn a_script_acting_on_a_published_count_does_the_same_on_the_backup() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_pair();
    let addr = h.node("a").client.clone();
    let (mut s1, mut s2) = (Wire::connect(&addr), Wire::connect(&addr));
    s1.step(&["SUBSCRIBE", "jobs"]);
    s2.step(&["PSUBSCRIBE", "j*"]);
    let mut c = Wire::connect(&addr);
    assert_eq!(c.step(&["EVAL", PUBLISH_AND_COUNT, "2", "jobs", "reached", "job-1"]), b":2\r\n");
    assert_eq!(s1.step(&[]), b"*3\r\n$7\r\nmessage\r\n$4\r\njobs\r\n$5\r\njob-1\r\n");
    c.send(&["MULTI"]);
    c.send(&["PUBLISH", "jobs", "job-2"]);
    c.send(&["INCR", "n"]);
    assert_eq!(c.step(&["EXEC"]), b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n:2\r\n:1\r\n");
    let pmessage = |m: &str| format!("*4\r\n$8\r\npmessage\r\n$2\r\nj*\r\n$4\r\njobs\r\n$5\r\n{m}\r\n");
    assert_eq!(
        s2.step(&[]).escape_ascii().to_string(),
        (pmessage("job-1") + &pmessage("job-2")).as_bytes().escape_ascii().to_string()
    );
    let epoch = h.record().unwrap().epoch;
    h.kill9("a");
    let b = h.wait_primary_after("b", epoch);
    let mut c = Wire::connect(&b.primary.client);
    assert_eq!(c.step(&["GET", "reached"]), b"$1\r\n2\r\n", "the backup replayed the count the primary saw");
    assert_eq!(c.step(&["GET", "n"]), b"$1\r\n1\r\n");
}

#[test]
fn a_message_reaches_subscribers_only_once_the_backup_has_it() {
    let _s = serial();
    let mut h = Harness::new();
    h.node_args = vec!["--failover-timeout-ms".into(), "3000".into()];
    h.start_node("a", &[]);
    h.wait_primary("a");
    h.start_node("b", &[]);
    let r = h.wait_in_sync("b");
    let addr = h.node("a").client.clone();
    let mut sub = Wire::connect(&addr);
    sub.step(&["SUBSCRIBE", "news"]);
    let mut publisher = Wire::connect(&addr);
    assert_eq!(publisher.step(&["PUBLISH", "news", "one"]), b":1\r\n");
    assert_eq!(sub.step(&[]), b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$3\r\none\r\n");

    h.signal("b", libc::SIGSTOP);
    let t0 = Instant::now();
    publisher.send(&["PUBLISH", "news", "two"]);
    sub.s.set_read_timeout(Some(Duration::from_millis(1000))).unwrap();
    let mut chunk = [0u8; 256];
    let early = sub.s.read(&mut chunk);
    assert!(early.is_err(), "a message left the primary before the backup had its entry: {early:?}");
    // The primary wins the next epoch alone, then releases the message.
    sub.s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let n = sub.s.read(&mut chunk).unwrap();
    assert_eq!(&chunk[..n], b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$3\r\ntwo\r\n");
    assert!(t0.elapsed() >= Duration::from_millis(2500), "released after {:?}", t0.elapsed());
    assert_eq!(h.record().unwrap().epoch, r.epoch + 1);
    h.signal("b", libc::SIGCONT);
    assert_eq!(h.wait_exit("b", Duration::from_secs(30)), Some(3));
}

#[test]
fn subscribers_are_disconnected_when_their_node_stops_being_primary() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_pair();
    let mut sub = Wire::connect(&h.node("a").client);
    sub.step(&["SUBSCRIBE", "news"]);
    let out = h.switchover();
    assert!(out.status.success(), "switchover: {}", String::from_utf8_lossy(&out.stderr));
    // The old primary closes the subscriber's connection: its client
    // reconnects and finds the new primary.
    let mut rest = Vec::new();
    let closed = sub.s.read_to_end(&mut rest);
    assert!(closed.is_ok(), "the subscriber's connection stays open on a backup: {closed:?}");
    let epoch = h.record().unwrap().epoch;
    let b = h.wait_primary_after("b", epoch - 1);
    let mut sub = Wire::connect(&b.primary.client);
    sub.step(&["SUBSCRIBE", "news"]);
    let mut publisher = Wire::connect(&b.primary.client);
    assert_eq!(publisher.step(&["PUBLISH", "news", "after"]), b":1\r\n");
    assert_eq!(sub.step(&[]), b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nafter\r\n");
}
