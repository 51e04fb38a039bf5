//! Exactly-once client sessions through failovers, with the real binary
//! (DESIGN §3, "duplicate outputs after failover"): a write whose reply was
//! held at the output gate when the primary died is retried on the new
//! primary and answered from the replicated session table — applied once —
//! where a plain at-least-once retry applies it twice.

mod common;
use common::*;

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use understudy_client::{Locator, Reply, Session, SessionOptions};

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("HOST:PORT")
}

/// `(Recv-Q, bytes_received)` of every established TCP socket matching the
/// `ss` filter (e.g. `sport = :6379`), from the kernel's view: it counts
/// bytes a stopped or busy process has not read yet.
fn sockets(filter: &str) -> Vec<(u64, u64)> {
    let out = Command::new("ss").args(["-tinH", "state", "established", &format!("( {filter} )")]).output().expect("running ss");
    assert!(out.status.success(), "ss failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut socks = Vec::new();
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            let recv_q = line.split_whitespace().next().and_then(|q| q.parse().ok()).expect("Recv-Q column");
            socks.push((recv_q, 0));
        } else if let Some(last) = socks.last_mut() {
            let received = line.split_whitespace().find_map(|w| w.strip_prefix("bytes_received:"));
            last.1 = received.map_or(0, |n| n.parse().expect("bytes_received"));
        }
    }
    socks
}

fn bytes_received(filter: &str) -> u64 {
    sockets(filter).iter().map(|s| s.1).sum()
}

/// Waits until the node at `client` has read (and therefore executed and
/// logged: it does so in the same step) more than `before` request bytes,
/// then until its frozen backup's kernel holds bytes the primary wrote
/// after that — so the write's log entry is on its way to the backup.
fn wait_write_logged(client: &str, repl: &str, before: u64) {
    let sport = format!("sport = :{}", port_of(client));
    wait_for("the primary to read the request", Duration::from_secs(20), || {
        let socks = sockets(&sport);
        (socks.iter().map(|s| s.1).sum::<u64>() > before && socks.iter().all(|s| s.0 == 0)).then_some(())
    });
    let dport = format!("dport = :{}", port_of(repl));
    let at_backup = bytes_received(&dport);
    wait_for("the frozen backup's kernel to receive the entry", Duration::from_secs(20), || {
        (bytes_received(&dport) > at_backup).then_some(())
    });
}

fn session(h: &Harness) -> Session {
    let locator = Locator::Arbiter { arbiter: h.arbiter(), cluster: CLUSTER.into() };
    let opts = SessionOptions { give_up_after: Duration::from_secs(60), ..SessionOptions::default() };
    Session::open(locator, opts).expect("opening a session")
}

fn get_int(h: &Harness, node: &str, key: &str) -> i64 {
    let r = h.conn(node).call(&["GET", key]).unwrap();
    let b = r.bytes().unwrap_or_else(|| panic!("GET {key}: {r:?}"));
    std::str::from_utf8(b).unwrap().parse().unwrap()
}

/// `hits` of a session in `US.INFO`: retries answered from the table.
fn session_hits(h: &Harness, node: &str, id: &str) -> i64 {
    let Reply::Array(Some(f)) = h.conn(node).call(&["US.INFO", id]).unwrap() else { panic!("US.INFO {id}") };
    let at = f.iter().position(|v| v.bytes() == Some(b"hits")).expect("hits field");
    match f[at + 1] {
        Reply::Int(n) => n,
        ref other => panic!("hits {other:?}"),
    }
}

/// How the primary dies while the reply of a logged write is held at its
/// output gate (its backup is frozen, so it cannot acknowledge).
#[derive(Clone, Copy, Debug)]
enum Death {
    /// Freeze the primary too, thaw the backup (it receives and executes
    /// the entry, then finds the primary silent and goes live), and kill -9
    /// the frozen primary: its held reply dies with it.
    FrozenThenKilled,
    /// kill -9 the primary while the backup is still frozen, then thaw the
    /// backup: it reads the entry and the closed channel in one go.
    KilledWhileBackupFrozen,
    /// kill -9 the primary, backup running (under load the backup may read
    /// the last entries and the closed channel in one go, as above).
    Killed,
}

/// Freezes `backup`, runs `write` (which must send one INCR to `primary` and
/// retry it until answered) in a thread, waits until the primary executed
/// and logged the INCR while its reply is held at the output gate, lets the
/// primary die as `death` says, and waits until the backup serves. Returns
/// what `write` returned and how long the client waited after the death.
fn kill_while_reply_held<T: Send + 'static>(
    h: &mut Harness,
    primary: &str,
    backup: &str,
    death: Death,
    write: impl FnOnce() -> T + Send + 'static,
) -> (T, Duration) {
    let (client, repl) = (h.node(primary).client.clone(), h.node(primary).repl.clone());
    let before = bytes_received(&format!("sport = :{}", port_of(&client)));
    let epoch = h.record().unwrap().epoch;
    h.signal(backup, libc::SIGSTOP);
    let writer: JoinHandle<T> = std::thread::spawn(write);
    wait_write_logged(&client, &repl, before);
    assert!(!writer.is_finished(), "the reply left the primary before its backup acknowledged the entry");
    let t0 = Instant::now();
    match death {
        Death::FrozenThenKilled => {
            h.signal(primary, libc::SIGSTOP);
            // Both replicas are stopped: a reply the writer holds now was
            // released by the primary without its backup's acknowledgement.
            // (Once the backup is thawed and live, the writer's retry may
            // legitimately be answered by it before `wait_primary_after`
            // sees the new record, so nothing is asserted after that.)
            std::thread::sleep(Duration::from_millis(50));
            assert!(!writer.is_finished(), "the primary released the reply before its backup acknowledged it");
            h.signal(backup, libc::SIGCONT);
            h.wait_primary_after(backup, epoch);
            h.kill9(primary);
        }
        Death::KilledWhileBackupFrozen => {
            h.kill9(primary);
            h.signal(backup, libc::SIGCONT);
            h.wait_primary_after(backup, epoch);
        }
        Death::Killed => unreachable!("the reply is held by freezing the backup"),
    }
    let out = writer.join().expect("writer thread");
    (out, t0.elapsed())
}

/// A session's INCR whose reply died with the primary: the retry on the new
/// primary is answered from the session table, the counter moves by one.
fn session_incr_survives(h: &mut Harness, primary: &str, backup: &str, death: Death) {
    let mut s = session(h);
    let n0 = match s.call(&["INCR", "n"]).unwrap() {
        Reply::Int(v) => v,
        other => panic!("INCR answered {other:?}"),
    };
    let id = s.id().to_string();
    let ((s, reply), took) = kill_while_reply_held(h, primary, backup, death, move || {
        let r = s.call(&["INCR", "n"]);
        (s, r)
    });
    assert_eq!(reply.unwrap(), Reply::Int(n0 + 1), "the retried INCR is answered with its first reply");
    assert_eq!(get_int(h, backup, "n"), n0 + 1, "applied exactly once");
    assert_eq!(session_hits(h, backup, &id), 1, "the retry was answered from the session table");
    let stats = s.stats();
    assert!(stats.resent >= 1 && stats.connects >= 2, "{stats:?}");
    eprintln!("session ({death:?}): counter {} after 2 INCRs, 1 retry answered from the table; answered {took:?} after the primary's death; {stats:?}", n0 + 1);
}

/// The headline case: kill -9 between a write's arrival and its reply.
/// With a session the retry on the new primary is answered from the table
/// (counter +1); the same moment with a plain client's retry applies the
/// INCR twice (counter +2): the duplicate DESIGN §3 says TCP clients see.
#[test]
fn a_write_whose_reply_died_with_the_primary_is_applied_exactly_once() {
    let _s = serial();
    let mut h = Harness::new();
    // Long enough that the primary does not give up on its frozen backup
    // (and release the held reply alone) before the test freezes it; the
    // thawed backup goes live after this much silence.
    h.node_args = vec!["--failover-timeout-ms".into(), "2000".into()];
    h.start_pair();
    session_incr_survives(&mut h, "a", "b", Death::FrozenThenKilled);

    // The same moment with a plain RESP client that retries (at least once).
    h.start_node("c", &[]);
    h.wait_in_sync("c");
    let mut plain = h.cluster_client();
    assert_eq!(plain.call_until(&["INCR", "m"], Instant::now() + Duration::from_secs(30)).unwrap(), Reply::Int(1));
    let (reply, _) = kill_while_reply_held(&mut h, "b", "c", Death::FrozenThenKilled, move || {
        plain.call_until(&["INCR", "m"], Instant::now() + Duration::from_secs(60)).unwrap()
    });
    assert_eq!(reply, Reply::Int(3), "the plain retry was applied again");
    assert_eq!(get_int(&h, "c", "m"), 3, "2 INCRs acknowledged, 3 applied");
    eprintln!("plain at-least-once client: counter 3 after 2 acknowledged INCRs");
}

/// The same with the primary killed while its backup is still frozen. The
/// thawed backup must execute every entry it received before it serves;
/// today the node aborts its execute task when the channel closes, so an
/// entry that arrived in the same read as the close is never executed and
/// the backup stays "going-live" forever (node bug, crates/node/src/join.rs:
/// `drop_conn` aborts `execute`, which should outlive the channel until the
/// queue is drained). Enable once that is fixed.
#[test]
fn a_write_whose_primary_died_while_the_backup_was_frozen_is_applied_exactly_once() {
    let _s = serial();
    let mut h = Harness::new();
    h.node_args = vec!["--failover-timeout-ms".into(), "5000".into()];
    h.start_pair();
    session_incr_survives(&mut h, "a", "b", Death::KilledWhileBackupFrozen);
}

/// What one load thread did.
struct Counted {
    key: String,
    acked: i64,
    session_id: Option<String>,
}

/// INCR clients that follow the primary: `exactly_once` ones through a
/// session (each reply must be exactly one more than the last), the others
/// retrying plain INCRs (at least once).
fn incr_clients(h: &Harness, n: usize, exactly_once: bool, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<Counted>> {
    (0..n)
        .map(|i| {
            let stop = stop.clone();
            let key = format!("{}:{i}", if exactly_once { "s" } else { "p" });
            let mut s = exactly_once.then(|| session(h));
            let mut plain = h.cluster_client();
            std::thread::spawn(move || {
                let mut acked = 0;
                while !stop.load(Ordering::Relaxed) {
                    let reply = match &mut s {
                        Some(s) => s.call(&["INCR", key.as_str()]).unwrap_or_else(|e| panic!("{key}: {e}")),
                        None => plain.call_until(&["INCR", key.as_str()], Instant::now() + Duration::from_secs(60)).unwrap(),
                    };
                    let Reply::Int(v) = reply else { panic!("{key}: INCR answered {reply:?}") };
                    acked += 1;
                    if exactly_once {
                        assert_eq!(v, acked, "{key}: INCR number {acked} answered {v}");
                    }
                }
                Counted { key, acked, session_id: s.map(|s| s.id().to_string()) }
            })
        })
        .collect()
}

/// Lets `primary` die as `death` says, its backup running, and waits until
/// `backup` serves; returns how long that took.
fn fail_over(h: &mut Harness, primary: &str, backup: &str, death: Death) -> Duration {
    let epoch = h.record().unwrap().epoch;
    let t = Instant::now();
    match death {
        Death::Killed => {
            h.kill9(primary);
            h.wait_primary_after(backup, epoch);
        }
        Death::FrozenThenKilled => {
            h.signal(primary, libc::SIGSTOP);
            h.wait_primary_after(backup, epoch);
            h.kill9(primary);
        }
        Death::KilledWhileBackupFrozen => unreachable!("the load test does not freeze the backup"),
    }
    t.elapsed()
}

/// Sum of the session counters as `node` has them.
fn session_sum(h: &Harness, node: &str, at_least: i64) -> i64 {
    wait_for("the session clients to make progress", Duration::from_secs(60), || {
        let mut c = h.conn(node);
        let sum: i64 = (0..4)
            .map(|i| c.call(&["GET", format!("s:{i}").as_str()]).ok().and_then(|r| r.bytes().map(|b| b.to_vec())))
            .map(|b| b.map_or(0, |b| String::from_utf8(b).unwrap().parse::<i64>().unwrap()))
            .sum();
        (sum >= at_least).then_some(sum)
    })
}

/// Session clients INCR their counters while the primary dies twice
/// (a → b, then a joiner c → c): every counter equals the INCRs its client
/// had acknowledged. Plain clients run alongside; their counters may be
/// higher than their acknowledged INCRs (at least once), which is reported.
fn counters_through_two_failovers(death: Death) {
    let _s = serial();
    let mut h = Harness::new();
    h.start_pair();
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = incr_clients(&h, 4, true, &stop);
    threads.extend(incr_clients(&h, 3, false, &stop));
    let before = session_sum(&h, "a", 1000);
    let first = fail_over(&mut h, "a", "b", death);
    let mid = session_sum(&h, "b", before + 1000);
    h.start_node("c", &[]);
    h.wait_in_sync("c");
    session_sum(&h, "b", mid + 500);
    let second = fail_over(&mut h, "b", "c", death);
    session_sum(&h, "c", mid + 1500);
    stop.store(true, Ordering::Relaxed);
    let counted: Vec<Counted> = threads.into_iter().map(|t| t.join().expect("load thread")).collect();

    let mut report = HashMap::new();
    let (mut hits, mut over, mut exact) = (0, 0, 0);
    for c in &counted {
        let value = get_int(&h, "c", &c.key);
        match &c.session_id {
            Some(id) => {
                assert_eq!(value, c.acked, "{}: {} INCRs acknowledged, counter {value}", c.key, c.acked);
                hits += session_hits(&h, "c", id);
                exact += c.acked;
            }
            None => {
                assert!(value >= c.acked, "{}: an acknowledged plain INCR was lost", c.key);
                over += value - c.acked;
            }
        }
        report.insert(c.key.clone(), (c.acked, value));
    }
    eprintln!(
        "exactly-once load ({death:?}): {exact} session INCRs, all applied exactly once; failovers took {first:?} and {second:?}; \
         session retries answered from the table: {hits}; plain clients over-counted by {over}; (acked, counter) per key: {report:?}"
    );
}

/// The primary hangs, the backup goes live after the failover timeout, and
/// the hung primary is killed: twice, under load.
#[test]
fn session_counters_stay_exact_when_the_primary_hangs_and_is_killed_under_load() {
    counters_through_two_failovers(Death::FrozenThenKilled);
}

/// kill -9 of the running primary, twice, under load. Now and then the
/// backup reads its last entries together with the closed channel and never
/// executes them (the node bug described above): enable once fixed.
#[test]
fn session_counters_stay_exact_through_two_kill9_failovers_under_load() {
    counters_through_two_failovers(Death::Killed);
}
