//! The machine level with the real binary: an unmodified C server compiled
//! to wasm32-wasip1, replicated by deterministic replay. kill -9 of the
//! primary under load, SIGSTOP/SIGCONT of the primary, kill -9 of the
//! backup, a join under load (by replaying the retained log), the output
//! rule with a frozen backup, and servers written in two other styles.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use understudy_client::{Conn, Reply};

fn wasm_pair(guest: &str) -> Harness {
    let mut h = Harness::new();
    h.start_wasm_node("a", guest, &[]);
    wait_for("a to be primary", Duration::from_secs(60), || h.record().filter(|r| r.primary.node == "a"));
    h.start_wasm_node("b", guest, &[]);
    h.wait_in_sync("b");
    h
}

#[test]
fn kill9_of_the_primary_guest_loses_no_acknowledged_write() {
    let _s = serial();
    let mut h = wasm_pair("kvserver");
    h.wait_primary("a");
    let load = Load::start(&h, 4, "w");
    load.wait_more(1500, Duration::from_secs(60));
    h.kill9("a");
    let r = h.wait_primary_after("b", 1);
    assert!(!r.protected);
    load.wait_more(300, Duration::from_secs(60));
    let acked = load.stop();
    assert_all_present(&h.node("b").client, &acked);
}

/// A join under load: the primary snapshots its running guest (issue 11:
/// memory copied while it serves, a short pause for the stack and the
/// rest), the joiner resumes the guest from the snapshot and replays only
/// what followed it; after kill -9 of the primary, the joiner's copy has
/// every acknowledged write.
#[test]
fn join_under_load_by_a_live_snapshot_then_kill9() {
    let (h, acked) = join_under_load_then_kill9(&[]);
    let (a, c) = (h.log_of("a"), h.log_of("c"));
    assert!(a.contains("live snapshot of the guest sent"), "the primary snapshotted its guest:\n{a}");
    assert!(c.contains("from its live snapshot"), "the joiner resumed from the snapshot:\n{c}");
    assert!(c.contains("restored guest verified"), "the joiner checked the snapshot's state hash:\n{c}");
    assert!(!c.contains("replayed the retained log"), "no history was replayed");
    assert_all_present(&h.node("c").client, &acked);
}

/// Without wasm-opt the guest cannot be snapshotted: the node says so and
/// a join replays the log retained since the guest started, as before.
#[test]
fn without_wasm_opt_a_join_replays_the_retained_log_then_kill9() {
    let (h, acked) = join_under_load_then_kill9(&[("UNDERSTUDY_WASM_OPT", "/nonexistent/wasm-opt")]);
    assert!(h.log_of("a").contains("apt-get install binaryen"), "the node says what to install:\n{}", h.log_of("a"));
    assert!(h.log_of("c").contains("replayed the retained log"), "the joiner replayed from the guest's start");
    assert_all_present(&h.node("c").client, &acked);
}

fn join_under_load_then_kill9(env: &[(&str, &str)]) -> (Harness, Vec<(String, String)>) {
    let _s = serial();
    let mut h = Harness::new();
    h.node_env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    h.start_wasm_node("a", "kvserver", &[]);
    h.wait_primary("a");
    let load = Load::start(&h, 4, "j");
    load.wait_more(2000, Duration::from_secs(60));
    h.start_wasm_node("c", "kvserver", &[]);
    let r = h.wait_in_sync("c");
    load.wait_more(500, Duration::from_secs(60));
    h.kill9("a");
    h.wait_primary_after("c", r.epoch);
    load.wait_more(300, Duration::from_secs(60));
    let acked = load.stop();
    (h, acked)
}

/// Runs `redis-benchmark` against `addr`: `n` pipelined SETs over 100k keys.
fn benchmark_sets(addr: &str, n: u64) {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = std::process::Command::new("redis-benchmark")
        .args(["-h", host, "-p", port, "-t", "set", "-n", &n.to_string(), "-r", "100000", "-c", "16", "-P", "16", "-q"])
        .output()
        .expect("redis-benchmark is installed (Debian package redis-tools)");
    assert!(out.status.success(), "redis-benchmark: {}", String::from_utf8_lossy(&out.stderr));
}

/// Issue 11, section 1: a joiner busy catching up on a long history is not
/// silent. Without wasm-opt a join replays the guest's whole history; with
/// a history that takes longer to replay than the failure timeout, the
/// join completes at its first attempt: the primary never takes the
/// joiner's catch-up for a failure, and the joiner never starts over.
/// (With live snapshots a join replays no history at all:
/// `tests/wasm_snapshot.rs`.)
#[test]
fn a_join_behind_a_long_history_completes_at_the_first_attempt() {
    let _s = serial();
    let mut h = Harness::new();
    h.node_env = vec![("UNDERSTUDY_WASM_OPT".into(), "/nonexistent/wasm-opt".into())];
    h.start_wasm_node("a", "kvserver", &[]);
    h.wait_primary("a");
    let a = h.node("a").client.clone();
    benchmark_sets(&a, 3_000_000);
    let t = Instant::now();
    h.start_wasm_node("b", "kvserver", &[]);
    h.wait_in_sync("b");
    eprintln!("join behind 3M requests: in sync after {:?}", t.elapsed());
    let (la, lb) = (h.log_of("a"), h.log_of("b"));
    assert!(!la.contains("silent"), "the primary took the joiner for dead:\n{la}");
    assert!(!lb.contains("starting over") && !lb.contains("channel to primary closed"), "the join restarted:\n{lb}");
    let mut c = h.conn("a");
    assert_eq!(c.call(&["SET", "after", "1"]).unwrap(), Reply::Simple("OK".into()));
    let epoch = h.record().unwrap().epoch;
    h.kill9("a");
    h.wait_primary_after("b", epoch);
    assert_eq!(h.conn("b").call(&["GET", "after"]).unwrap().bytes(), Some(&b"1"[..]));
}

#[test]
fn kill9_of_the_backup_leaves_the_guest_serving_unprotected() {
    let _s = serial();
    let mut h = wasm_pair("kvserver");
    let mut c = h.conn("a");
    assert_eq!(c.call(&["SET", "k", "1"]).unwrap(), Reply::Simple("OK".into()));
    h.kill9("b");
    wait_for("a to re-claim alone", Duration::from_secs(30), || h.record().filter(|r| r.epoch == 2 && r.backup.is_none()));
    assert_eq!(c.call(&["SET", "k", "2"]).unwrap(), Reply::Simple("OK".into()));
    assert_eq!(c.call(&["GET", "k"]).unwrap().bytes(), Some(&b"2"[..]));
}

/// A frozen primary's guest may process requests after the backup went live,
/// but nothing it sends reaches a client: its outputs wait for acks that
/// never come, and it halts when it learns it lost.
#[test]
fn frozen_primary_guest_never_answers_after_failover() {
    let _s = serial();
    let mut h = wasm_pair("kvserver");
    let r = h.wait_primary("a");
    let mut c = Conn::connect(&h.node("a").client, Duration::from_secs(20)).unwrap();
    assert_eq!(c.call(&["SET", "k", "before"]).unwrap(), Reply::Simple("OK".into()));
    h.signal("a", libc::SIGSTOP);
    c.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nstale\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").unwrap();
    h.wait_primary_after("b", r.epoch);
    h.signal("a", libc::SIGCONT);
    assert_eq!(h.wait_exit("a", Duration::from_secs(30)), Some(3), "the deposed primary fail-stops");
    let rest = c.read_to_end().unwrap_or_default();
    assert!(rest.is_empty(), "the stale guest's reply left: {:?}", String::from_utf8_lossy(&rest));
    let mut nb = h.conn("b");
    assert_eq!(nb.call(&["GET", "k"]).unwrap().bytes(), Some(&b"before"[..]));
}

/// Output rule at the machine level: with the backup frozen, the guest's
/// reply is held until the primary has won the next epoch alone.
#[test]
fn guest_output_waits_for_the_backup() {
    let _s = serial();
    let mut h = Harness::new();
    h.node_args = vec!["--failover-timeout-ms".into(), "3000".into()];
    h.start_wasm_node("a", "kvserver", &[]);
    h.wait_primary("a");
    h.start_wasm_node("b", "kvserver", &[]);
    h.wait_in_sync("b");
    let mut c = Conn::connect(&h.node("a").client, Duration::from_millis(800)).unwrap();
    assert_eq!(c.call(&["SET", "k", "1"]).unwrap(), Reply::Simple("OK".into()));
    h.signal("b", libc::SIGSTOP);
    let t0 = Instant::now();
    c.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n2\r\n").unwrap();
    assert!(c.read_reply().is_err(), "the guest's reply left before the backup had the entries behind it");
    let mut late = Conn::connect(&h.node("a").client, Duration::from_secs(30)).unwrap();
    assert_eq!(late.call(&["GET", "k"]).unwrap().bytes(), Some(&b"2"[..]));
    assert!(t0.elapsed() >= Duration::from_millis(2500));
    h.signal("b", libc::SIGCONT);
    assert_eq!(h.wait_exit("b", Duration::from_secs(30)), Some(3));
}

fn line_call(s: &mut BufReader<TcpStream>, cmd: &str) -> std::io::Result<String> {
    s.get_mut().write_all(format!("{cmd}\n").as_bytes())?;
    let mut line = String::new();
    if s.read_line(&mut line)? == 0 {
        return Err(std::io::Error::other("closed"));
    }
    Ok(line.trim_end().to_string())
}

/// A pair of a line-protocol guest (not RESP, so the harness's RESP probes
/// do not apply): a serves, b is in sync; a client connected to a.
fn line_pair(guest: &str) -> (Harness, BufReader<TcpStream>) {
    let mut h = Harness::new();
    h.start_wasm_node("a", guest, &[]);
    let addr = h.node("a").client.clone();
    drop(wait_for("a to serve", Duration::from_secs(60), || line_serving(&addr)));
    h.start_wasm_node("b", guest, &[]);
    h.wait_in_sync("b");
    let s = wait_for("a to serve", Duration::from_secs(30), || line_serving(&addr));
    (h, s)
}

/// A connection to a line-protocol guest that answered a line: a node that
/// is not primary yet accepts and closes at once.
fn line_serving(addr: &str) -> Option<BufReader<TcpStream>> {
    let mut s = BufReader::new(TcpStream::connect(addr).ok()?);
    s.get_ref().set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    line_call(&mut s, "GET").ok()?;
    Some(s)
}

/// A server in another style (select, read/write, O_NONBLOCK, a line
/// protocol): acknowledged increments survive kill -9 of the primary.
#[test]
fn a_select_based_line_server_survives_kill9() {
    let _s = serial();
    let (mut h, mut s) = line_pair("lineserver");
    let mut acked = 0;
    for i in 1..=300 {
        assert_eq!(line_call(&mut s, "INCR hits").unwrap(), i.to_string());
        acked = i;
    }
    h.kill9("a");
    let addr = h.node("b").client.clone();
    let mut s = wait_for("b to serve", Duration::from_secs(30), || line_serving(&addr));
    let got: u64 = line_call(&mut s, "GET hits").unwrap().parse().unwrap();
    assert!(got >= acked, "acknowledged {acked} increments, the survivor has {got}");
    assert_eq!(line_call(&mut s, "INCR hits").unwrap(), (got + 1).to_string());
}

/// The simplest style of server (blocking accept, then blocking read/write
/// on one connection at a time): the primary dies while a client holds a
/// connection and the backup's guest is blocked in a replayed read on it.
/// Going live resets that connection (a recorded event), so the guest's
/// read returns, it goes back to accept, and serves the reconnected client;
/// nothing acknowledged is lost and the old connection does not hang.
#[test]
fn a_blocking_one_connection_server_survives_kill9_with_a_client_connected() {
    let _s = serial();
    let (mut h, mut s) = line_pair("blockserver");
    for i in 1..=200 {
        assert_eq!(line_call(&mut s, "INCR").unwrap(), i.to_string());
    }
    let acked = 200u64;
    h.kill9("a");
    // (`wait_primary_after` pings in RESP, which this server does not speak.)
    wait_for("b to win epoch 2", Duration::from_secs(30), || h.record().filter(|r| r.primary.node == "b" && r.epoch > 1));
    // The old connection ends (its server is gone) instead of hanging.
    let mut rest = String::new();
    let ended = s.read_line(&mut rest);
    assert!(matches!(ended, Ok(0) | Err(_)), "the dead primary's connection answered {rest:?}");
    let addr = h.node("b").client.clone();
    let mut s = wait_for("b's guest to accept", Duration::from_secs(30), || {
        let mut s = BufReader::new(TcpStream::connect(&addr).ok()?);
        s.get_mut().set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        line_call(&mut s, "GET").ok().map(|got| (s, got))
    });
    let got: u64 = s.1.parse().unwrap();
    assert!(got >= acked, "acknowledged {acked} increments, the survivor has {got}");
    assert_eq!(line_call(&mut s.0, "INCR").unwrap(), (got + 1).to_string());
}

/// A guest that ends (kvserver's SHUTDOWN calls exit(0)) ends the pair: the
/// primary exits with the guest's code once its backup holds the whole log,
/// and the backup confirms it replayed the guest to the same end.
#[test]
fn the_backup_replays_the_guest_to_the_same_end() {
    let _s = serial();
    let mut h = wasm_pair("kvserver");
    let mut c = h.conn("a");
    assert_eq!(c.call(&["SET", "k", "v"]).unwrap(), Reply::Simple("OK".into()));
    c.send_raw(b"SHUTDOWN\r\n").unwrap();
    assert_eq!(h.wait_exit("a", Duration::from_secs(30)), Some(0), "the primary exits with the guest's exit code");
    assert_eq!(h.wait_exit("b", Duration::from_secs(30)), Some(0), "the backup ends with the same code");
    assert!(h.log_of("b").contains("replayed the guest to the same end"), "{}", h.log_of("b"));
}
