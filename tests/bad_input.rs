//! Bad input gets a clear error and loses nothing (the list):
//! malformed RESP, oversized requests, corrupted and unauthenticated
//! replication frames, a peer from another cluster, an unreachable arbiter,
//! a full disk under --dir.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;
use understudy_client::Reply;

fn pair() -> Harness {
    let mut h = Harness::new();
    h.start_pair();
    h
}

/// The node still serves, and the pair is still protected.
fn assert_healthy(h: &Harness) {
    let mut c = h.conn("a");
    assert_eq!(c.call(&["SET", "health", "ok"]).unwrap(), Reply::Simple("OK".into()));
    assert_eq!(c.call(&["GET", "health"]).unwrap().bytes(), Some(&b"ok"[..]));
    assert!(h.record().unwrap().protected, "the backup is still in sync");
}

#[test]
fn malformed_and_oversized_requests_get_errors_and_harm_no_one() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_node("a", &["--request-bytes-max", "1000"]);
    h.wait_primary("a");
    let mut good = h.conn("a");
    assert_eq!(good.call(&["SET", "k", "v"]).unwrap(), Reply::Simple("OK".into()));

    let mut bad = h.conn("a");
    bad.send_raw(b"*2\r\n$3\r\nGET\r\n$x\r\n").unwrap();
    let r = bad.read_reply().unwrap();
    assert!(matches!(&r, Reply::Error(e) if e.contains("Protocol error")), "{r:?}");
    assert!(bad.read_reply().is_err(), "the connection is closed after a protocol error");

    let mut big = h.conn("a");
    big.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5000\r\n").unwrap();
    let r = big.read_reply().unwrap();
    assert!(matches!(&r, Reply::Error(e) if e.contains("--request-bytes-max")), "the error names the flag: {r:?}");

    assert_eq!(good.call(&["GET", "k"]).unwrap().bytes(), Some(&b"v"[..]), "other clients are unaffected");
}

#[test]
fn corrupted_and_unauthenticated_replication_peers_are_refused() {
    let _s = serial();
    let h = pair();
    let repl = h.node("a").repl.clone();

    // Garbage bytes: a bad frame closes that connection only, with a reason.
    let mut s = TcpStream::connect(&repl).unwrap();
    s.write_all(&[0x55; 64]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("the node closes the connection");
    wait_for("the bad frame to be logged", Duration::from_secs(10), || h.log_of("a").contains("bad frame").then_some(()));

    // A node with the wrong secret is refused with a reason naming the flag.
    let wrong = h.path("wrong-secret");
    std::fs::write(&wrong, "not-the-secret").unwrap();
    let out = Command::new(BIN)
        .args(["kv", "--cluster", CLUSTER, "--node", "intruder", "--arbiter", "file:///nonexistent-arbiter-dir"])
        .args(["--client-listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0", "--secret-file"])
        .arg(&wrong)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a node with an unusable arbiter URL must not start");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--arbiter"), "{}", String::from_utf8_lossy(&out.stderr));

    let log_before = h.log_of("a");
    let probe = understudy_wire_probe(&repl, b"not-the-secret", CLUSTER);
    assert!(probe.contains("shared secret") && probe.contains("--secret-file"), "the refusal names the reason: {probe}");
    let other = understudy_wire_probe(&repl, SECRET.as_bytes(), "another-cluster");
    assert!(other.contains("WrongCluster") || other.contains("cluster"), "{other}");
    wait_for("the refusals to be logged", Duration::from_secs(10), || {
        let log = h.log_of("a");
        (log.len() > log_before.len() && log.contains("--secret-file") && log.contains("another-cluster")).then_some(())
    });
    assert_healthy(&h);
}

/// Joins with the given secret and cluster and returns what the primary said.
fn understudy_wire_probe(repl: &str, secret: &[u8], cluster: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("s");
    std::fs::write(&secret_path, secret).unwrap();
    // The arbiter is read first; point the prober at a file arbiter whose
    // record names `repl` as primary, so it tries to join there.
    let arb = dir.path().join("arb");
    std::fs::create_dir(&arb).unwrap();
    let fa = understudy_arbiter::connect(&format!("file://{}", arb.display()), b"").unwrap();
    let me = understudy_arbiter::NodeAddrs { node: "p".into(), client: "127.0.0.1:1".into(), repl: repl.into() };
    fa.claim(cluster, 1, &me).unwrap();
    let mut child = Command::new(BIN)
        .args(["kv", "--cluster", cluster, "--node", "prober", "--arbiter", &format!("file://{}", arb.display())])
        .args(["--client-listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0", "--secret-file"])
        .arg(&secret_path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let t2 = text.clone();
    std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while let Ok(n) = err.read(&mut b) {
            if n == 0 {
                break;
            }
            t2.lock().unwrap().push_str(&String::from_utf8_lossy(&b[..n]));
        }
    });
    let got = wait_for("the prober to be refused", Duration::from_secs(20), || {
        let t = text.lock().unwrap().clone();
        t.contains("joining the primary").then_some(t)
    });
    let _ = child.kill();
    let _ = child.wait();
    got
}

#[test]
fn unreachable_arbiter_is_retried_and_named() {
    let _s = serial();
    let refusing = refusing_port();
    let port = refusing.port;
    let out = Command::new(BIN)
        .args(["status", "--arbiter", &format!("understudy://127.0.0.1:{port}"), "--cluster", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&port.to_string()), "the error names the arbiter: {err}");

    // A node keeps retrying (it neither serves nor crashes) until the arbiter is up.
    let mut h = Harness::new();
    h.kill_arbiter();
    h.start_node("a", &[]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(h.nodes.get_mut("a").unwrap().child.as_mut().unwrap().try_wait().unwrap().is_none(), "the node is still running");
    assert!(
        !ping(&h.node("a").client) || h.conn("a").call(&["SET", "x", "y"]).unwrap().is_error(),
        "no primary without the arbiter"
    );
    h.start_arbiter();
    h.wait_primary("a");
}

#[test]
fn full_disk_under_dir_is_a_clear_error() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("full");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mount").args(["-t", "tmpfs", "-o", "size=16k", "tmpfs"]).arg(&mnt).status().unwrap();
    assert!(ok.success(), "mounting a tmpfs needs root (CI runs as root)");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _g = Unmount(mnt.clone());
    let _ = std::fs::write(mnt.join("filler"), vec![0u8; 64 << 10]);
    let arb = dir.path().join("arb");
    std::fs::create_dir(&arb).unwrap();
    let out = Command::new(BIN)
        .args(["kv", "--cluster", "c", "--node", "a", "--arbiter", &format!("file://{}", arb.display())])
        .args(["--client-listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0", "--dir"])
        .arg(mnt.join("node"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--dir") && err.contains("No space left"), "{err}");
}

/// A proxy on the logging channel that can flip one bit of what the primary
/// sends, after the handshake: the corrupted frame must never reach the
/// backup's machine; the channel breaks with the reason logged, and the
/// pair resolves it like any channel failure — exactly one side serves and
/// nothing acknowledged is lost.
#[test]
fn a_corrupted_frame_on_the_channel_never_reaches_the_machine() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let _s = serial();
    let mut h = Harness::new();
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = proxy.local_addr().unwrap().to_string();
    let corrupt = Arc::new(AtomicBool::new(false));
    h.start_node("a", &["--advertise-repl", &proxy_addr]);
    h.wait_primary("a");
    let target = h.node("a").repl.clone();
    let flag = corrupt.clone();
    std::thread::spawn(move || {
        for conn in proxy.incoming() {
            let Ok(down) = conn else { return };
            let Ok(up) = TcpStream::connect(&target) else { return };
            let (mut d2, mut u2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut d2, &mut u2);
            });
            let flag = flag.clone();
            std::thread::spawn(move || {
                let (mut from, mut to) = (up, down);
                let mut buf = [0u8; 65536];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if flag.swap(false, Ordering::SeqCst) {
                        buf[n / 2] ^= 0x10;
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    h.start_node("b", &[]);
    let r = h.wait_in_sync("b");
    let mut c = h.conn("a");
    for i in 0..100 {
        let k = format!("k{i}");
        assert_eq!(c.call(&["SET", k.as_str(), "v"]).unwrap(), Reply::Simple("OK".into()));
    }
    corrupt.store(true, Ordering::SeqCst);
    // Traffic (a write, or at least a heartbeat) carries the flipped bit.
    let _ = c.call(&["SET", "after", "x"]);
    wait_for("the backup to report the bad frame", Duration::from_secs(20), || h.log_of("b").contains("checksum").then_some(()));
    let winner = wait_for("one side to win the next epoch", Duration::from_secs(30), || {
        h.record().filter(|x| x.epoch > r.epoch).map(|x| x.primary.node)
    });
    let loser = if winner == "a" { "b" } else { "a" };
    assert_eq!(h.wait_exit(loser, Duration::from_secs(30)), Some(3), "the loser of the race halts");
    h.wait_primary_after(&winner, r.epoch);
    let mut w = h.conn(&winner);
    for i in 0..100 {
        let k = format!("k{i}");
        assert_eq!(w.call(&["GET", k.as_str()]).unwrap().bytes(), Some(&b"v"[..]), "acknowledged write {k} lost");
    }
}
