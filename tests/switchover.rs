//! Issue 10 §4: SIGTERM is a planned switchover, not a crash. A primary
//! with an in-sync backup stops taking requests, lets the backup execute
//! everything, hands it the next epoch (it goes live at once, without a
//! failure timeout), releases every held reply and exits 0 — under load,
//! with no acknowledged write lost. A backup that is stopped leaves (its
//! primary records "unprotected" at once); an unprotected primary releases
//! what it holds and exits 0.

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use understudy_client::{Cluster, Reply};

/// What one writer did: its acknowledged SETs, the longest time between
/// two acknowledgements, and its failed calls.
type Written = (Vec<(String, String)>, Duration, u32);

/// Writers that follow the primary; each records its acknowledged SETs,
/// the longest time between two of its acknowledgements, and how many
/// calls failed (a failed call is a reconnection to the next primary).
struct Writers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Written>>,
    acked: Arc<Mutex<u64>>,
}

impl Writers {
    fn start(h: &Harness, clients: usize) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(0));
        let threads = (0..clients)
            .map(|id| {
                let (stop, acked, url) = (stop.clone(), acked.clone(), h.arbiter_url());
                std::thread::spawn(move || {
                    let arb = understudy_arbiter::connect(&url, SECRET.as_bytes()).unwrap();
                    let mut cl = Cluster::new(arb, CLUSTER, Duration::from_secs(3));
                    let (mut done, mut longest, mut failed) = (Vec::new(), Duration::ZERO, 0);
                    let mut last = Instant::now();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let (k, v) = (format!("w:{id}:{i}"), i.to_string());
                        match cl.try_call(&["SET", &k, &v]) {
                            Ok(Reply::Simple(s)) if s == "OK" => {
                                longest = longest.max(last.elapsed());
                                last = Instant::now();
                                done.push((k, v));
                                *acked.lock().unwrap() += 1;
                                i += 1;
                            }
                            Ok(other) => panic!("unexpected reply {other:?}"),
                            Err(_) => {
                                failed += 1;
                                std::thread::sleep(Duration::from_millis(2));
                            }
                        }
                    }
                    (done, longest, failed)
                })
            })
            .collect();
        Writers { stop, threads, acked }
    }

    fn acked(&self) -> u64 {
        *self.acked.lock().unwrap()
    }

    fn wait_more(&self, n: u64) {
        let target = self.acked() + n;
        wait_for("more acknowledged writes", Duration::from_secs(60), || (self.acked() >= target).then_some(()));
    }

    fn stop(self) -> Written {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = (Vec::new(), Duration::ZERO, 0);
        for t in self.threads {
            let (done, longest, failed) = t.join().unwrap();
            all.0.extend(done);
            all.1 = all.1.max(longest);
            all.2 = all.2.max(failed);
        }
        all
    }
}

/// Nodes a (primary) and b (its in-sync backup), with a long failure
/// timeout: a takeover faster than it can only be the handover, not
/// failure detection.
fn protected_pair() -> Harness {
    let mut h = Harness::new();
    h.node_args = vec!["--failover-timeout-ms".into(), "5000".into()];
    h.start_pair();
    h
}

#[test]
fn sigterm_on_a_protected_primary_hands_over_under_load_and_loses_nothing() {
    let _s = serial();
    let mut h = protected_pair();
    let w = Writers::start(&h, 4);
    w.wait_more(2000);

    let epoch = h.record().unwrap().epoch;
    let t0 = Instant::now();
    h.signal("a", libc::SIGTERM);
    assert_eq!(h.wait_exit("a", Duration::from_secs(30)), Some(0), "a planned stop exits 0: {}", h.log_of("a"));
    let r = h.wait_primary_after("b", epoch);
    let took = t0.elapsed();
    assert_eq!(r.epoch, epoch + 1, "the backup claimed the next epoch");
    assert!(h.log_of("a").contains("handed over to backup \"b\""), "{}", h.log_of("a"));
    assert!(h.log_of("b").contains("hands over (planned switchover)"), "{}", h.log_of("b"));
    w.wait_more(2000);

    // The stopped node comes back as the new primary's backup.
    h.start_node("a", &[]);
    h.wait_in_sync("a");
    w.wait_more(1000);
    let (acked, longest, failed) = w.stop();
    eprintln!(
        "switchover: b live {took:?} after SIGTERM; longest pause a writer saw {longest:?}; at most {failed} failed calls per writer; {} writes",
        acked.len()
    );
    assert_all_present(&h.node("b").client, &acked);
    // And the node that handed over, back as b's backup, holds them all
    // too: it takes over from b after a kill -9.
    h.kill9("b");
    h.wait_primary_after("a", epoch + 1);
    assert_all_present(&h.node("a").client, &acked);
}

#[test]
fn sigterm_on_a_backup_leaves_and_on_an_unprotected_primary_ends_it() {
    let _s = serial();
    let mut h = protected_pair();
    let mut c = h.conn("a");
    assert_eq!(c.call(&["SET", "k", "v"]).unwrap(), Reply::Simple("OK".into()));

    // The backup leaves: the primary records it gone at once (the epoch
    // moves on without it), long before its failure timeout.
    let epoch = h.record().unwrap().epoch;
    h.signal("b", libc::SIGINT);
    assert_eq!(h.wait_exit("b", Duration::from_secs(30)), Some(0), "{}", h.log_of("b"));
    let r = wait_for("a to run unprotected", Duration::from_secs(30), || {
        h.record().filter(|r| r.epoch > epoch && r.backup.is_none() && !r.protected)
    });
    assert_eq!(r.primary.node, "a");
    assert_eq!(c.call(&["GET", "k"]).unwrap().bytes(), Some(&b"v"[..]), "the primary serves on, unprotected");

    // The unprotected primary releases what it holds and exits 0.
    h.signal("a", libc::SIGTERM);
    assert_eq!(h.wait_exit("a", Duration::from_secs(30)), Some(0), "{}", h.log_of("a"));
    assert!(h.log_of("a").contains("no backup to hand over to"), "{}", h.log_of("a"));
}

#[test]
fn sigterm_on_the_arbiter_ends_it_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut child = std::process::Command::new(BIN)
            .args(["arbiter", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir.path())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let l: Option<understudy_node::listening::ArbiterListening> = wait_listening(&mut child, dir.path());
        assert!(l.is_some(), "the arbiter started");
        child
    };
    let child = start();
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIGTERM"));
    // It released its directory: a new arbiter opens it at once.
    let again = start();
    assert_eq!(unsafe { libc::kill(again.id() as i32, libc::SIGINT) }, 0);
    assert_eq!(again.wait_with_output().unwrap().status.code(), Some(0));
}

/// `understudy switchover`: the same handover without stopping a process;
/// the old primary rejoins as the backup. Twice under load, back and forth:
/// nothing lost; refused (saying why) while the cluster is unprotected.
#[test]
fn the_switchover_command_swaps_primary_and_backup_under_load() {
    let _s = serial();
    let mut h = Harness::new();
    h.node_args = vec!["--failover-timeout-ms".into(), "5000".into()];
    h.start_node("a", &[]);
    h.wait_primary("a");
    let cmd = |h: &Harness| h.switchover();
    let o = cmd(&h);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("not protected"), "{o:?}");
    h.start_node("b", &[]);
    h.wait_in_sync("b");
    let w = Writers::start(&h, 4);
    w.wait_more(1000);
    for (from, to) in [("a", "b"), ("b", "a")] {
        let epoch = h.record().unwrap().epoch;
        let o = cmd(&h);
        assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        let r = h.record().unwrap();
        assert_eq!((r.primary.node.as_str(), r.epoch), (to, epoch + 1), "{r:?}");
        assert_eq!(r.backup.as_ref().map(|b| b.node.as_str()), Some(from));
        assert!(r.protected);
        w.wait_more(1000);
    }
    let (acked, longest, failed) = w.stop();
    eprintln!("two switchovers: longest pause {longest:?}, at most {failed} failed calls per writer, {} writes", acked.len());
    assert_all_present(&h.node("a").client, &acked);
    let epoch = h.record().unwrap().epoch;
    h.kill9("a");
    h.wait_primary_after("b", epoch);
    assert_all_present(&h.node("b").client, &acked);
}
