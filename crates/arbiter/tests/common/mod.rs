//! The conformance suite every [`Arbiter`] backend must pass, and helpers
//! shared by the backends' test files. Each check cites the promise it
//! protects (DESIGN §1).

#![allow(dead_code)] // each test binary uses a different part

mod ports;
#[allow(unused_imports)] // not every test binary uses it
pub use ports::refusing_port;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Barrier;

use understudy_arbiter::{Arbiter, ArbiterError, BackupInfo, BackupState, Claim, ClusterRecord, NodeAddrs, Update};

pub fn addrs(node: &str) -> NodeAddrs {
    NodeAddrs { node: node.into(), client: format!("10.0.0.1:{}", 6000 + node.len()), repl: format!("{node}.repl:7000") }
}

fn expect_superseded(u: Update, what: &str) -> Option<ClusterRecord> {
    match u {
        Update::Superseded(r) => r,
        Update::Applied(r) => panic!("{what}: expected Superseded, was applied: {r:?}"),
    }
}

fn expect_applied(u: Update, what: &str) -> ClusterRecord {
    match u {
        Update::Applied(r) => r,
        Update::Superseded(r) => panic!("{what}: expected Applied, got Superseded({r:?})"),
    }
}

/// The whole life of a cluster through two handles on one backend (`a` for
/// node "a", `b` for node "b", as two hosts would hold them).
pub fn conformance(a: &dyn Arbiter, b: &dyn Arbiter) {
    let c = "conf";
    assert_eq!(a.read(c).unwrap(), None, "a cluster that never had a primary has no record");
    first_claim(a, b, c);
    membership_and_status(a, b, c);
    failover_to_the_member(a, b, c);
    a_forgotten_epoch_lets_anyone_start_the_next(a, b, c);
    names_are_validated(a);
}

/// `forget` (issue 10 §3): only the current epoch, only as its holder's;
/// then any node — never a member — may claim the next epoch, once.
fn a_forgotten_epoch_lets_anyone_start_the_next(a: &dyn Arbiter, b: &dyn Arbiter, c: &str) {
    let cur = a.read(c).unwrap().unwrap();
    assert_eq!((cur.epoch, cur.primary.node.as_str()), (3, "a"));
    assert!(matches!(b.claim(c, 4, &addrs("z")).unwrap(), Claim::NotMember(_)), "z was never in sync");
    // Stale epoch, future epoch, wrong primary: refused, nothing changes.
    for (epoch, primary) in [(2, "b"), (4, "a"), (3, "b")] {
        expect_superseded(b.forget(c, epoch, primary).unwrap(), &format!("forget {epoch}/{primary}"));
    }
    assert!(!a.read(c).unwrap().unwrap().is_abandoned());
    let r = expect_applied(b.forget(c, 3, "a").unwrap(), "forget the current epoch");
    assert!(r.is_abandoned() && r.abandoned_at_ms.is_some_and(|t| t > 1_600_000_000_000), "{r:?}");
    assert!(!r.protected && r.backup.is_none());
    assert_eq!(a.read(c).unwrap(), Some(r.clone()), "every handle sees it abandoned");
    expect_applied(b.forget(c, 3, "a").unwrap(), "forgetting again changes nothing");
    assert_eq!(a.read(c).unwrap().unwrap().abandoned_at_ms, r.abandoned_at_ms);
    let r4 = ClusterRecord::granted(c, 4, &addrs("z"));
    assert_eq!(b.claim(c, 4, &addrs("z")).unwrap(), Claim::Granted(r4.clone()), "anyone starts epoch 4");
    assert_eq!(a.claim(c, 4, &addrs("a")).unwrap(), Claim::Superseded(r4.clone()), "once");
    assert!(!a.read(c).unwrap().unwrap().is_abandoned(), "epoch 4 starts over with a real primary");
}

/// Promise 2: epoch 1 is granted once.
fn first_claim(a: &dyn Arbiter, b: &dyn Arbiter, c: &str) {
    let r1 = ClusterRecord::granted(c, 1, &addrs("a"));
    assert_eq!(a.claim(c, 1, &addrs("a")).unwrap(), Claim::Granted(r1.clone()));
    assert_eq!(b.read(c).unwrap(), Some(r1.clone()), "the grant is visible to every handle");
    assert_eq!(b.claim(c, 1, &addrs("b")).unwrap(), Claim::Superseded(r1.clone()), "epoch 1 is taken");
    // Retry safety: the holder repeating its claim (lost reply) gets the same grant.
    assert_eq!(a.claim(c, 1, &addrs("a")).unwrap(), Claim::Granted(r1.clone()));
    // Promise 4: b was never in sync, so it may not take over.
    assert_eq!(b.claim(c, 2, &addrs("b")).unwrap(), Claim::NotMember(r1.clone()));
    for bad in [0, 3, u64::MAX] {
        match b.claim(c, bad, &addrs("b")) {
            Err(ArbiterError::InvalidEpoch { requested, current: 1, .. }) if requested == bad => {}
            other => {
                panic!("claim of epoch {bad} at epoch 1: expected InvalidEpoch, got {other:?}")
            }
        }
    }
    assert_eq!(a.read(c).unwrap(), Some(r1), "refused claims change nothing");
}

/// Membership grows only through add_member; status never touches it.
fn membership_and_status(a: &dyn Arbiter, b: &dyn Arbiter, c: &str) {
    let joining = BackupInfo { node: "b".into(), state: BackupState::Joining, lag: 1000 };
    let r = expect_applied(a.publish(c, 1, "a", Some(joining.clone()), false).unwrap(), "publish by the holder");
    assert_eq!((r.members.clone(), r.backup.clone(), r.protected), (vec!["a".to_string()], Some(joining), false));
    assert!(matches!(b.claim(c, 2, &addrs("b")).unwrap(), Claim::NotMember(_)), "a joining backup is no member");

    // Stale epoch, future epoch, wrong primary: all refused, nothing changes.
    for (epoch, primary) in [(0, "a"), (2, "a"), (1, "b")] {
        let what = format!("add_member by epoch {epoch} primary {primary}");
        let cur = expect_superseded(b.add_member(c, epoch, primary, "b").unwrap(), &what);
        assert_eq!(cur.map(|r| r.members), Some(vec!["a".to_string()]), "{what}");
        expect_superseded(b.publish(c, epoch, primary, None, true).unwrap(), &format!("publish by {epoch}/{primary}"));
    }
    assert_eq!(expect_superseded(a.add_member("no-such-cluster", 1, "a", "b").unwrap(), "no record"), None);
    status_never_touches_members(a, b, c);
}

/// After `add_member`, publishing any status keeps the members (Promise 4
/// rests on membership alone); a second backup is refused.
fn status_never_touches_members(a: &dyn Arbiter, b: &dyn Arbiter, c: &str) {
    let r = expect_applied(a.add_member(c, 1, "a", "b").unwrap(), "add_member by the holder");
    assert_eq!(r.members, ["a", "b"]);
    assert_eq!(r.backup, Some(BackupInfo { node: "b".into(), state: BackupState::InSync, lag: 0 }));
    assert!(r.protected);
    expect_applied(a.add_member(c, 1, "a", "b").unwrap(), "adding the same member again");

    let lagging = BackupInfo { node: "b".into(), state: BackupState::InSync, lag: 7 };
    let r = expect_applied(a.publish(c, 1, "a", Some(lagging.clone()), true).unwrap(), "publish lag");
    assert_eq!((r.members.clone(), r.backup.clone()), (vec!["a".to_string(), "b".to_string()], Some(lagging)));
    let r = expect_applied(a.publish(c, 1, "a", None, false).unwrap(), "publish no backup");
    assert_eq!(r.members, ["a", "b"], "publish never removes a member");
    assert_eq!(b.read(c).unwrap().unwrap().members, ["a", "b"]);

    // A second, different backup in one epoch would let a lagging one win.
    match a.add_member(c, 1, "a", "x") {
        Err(e @ ArbiterError::Rejected { .. }) => {
            assert!(e.to_string().contains("claim epoch 2 first"), "{e}")
        }
        other => panic!("a second backup in epoch 1: expected Rejected, got {other:?}"),
    }
}

/// Promise 4 and 2 at failover: the member wins N+1, the old primary is out.
fn failover_to_the_member(a: &dyn Arbiter, b: &dyn Arbiter, c: &str) {
    let r2 = ClusterRecord::granted(c, 2, &addrs("b"));
    assert_eq!(b.claim(c, 2, &addrs("b")).unwrap(), Claim::Granted(r2.clone()));
    assert_eq!(a.claim(c, 2, &addrs("a")).unwrap(), Claim::Superseded(r2.clone()), "the old primary lost");
    // The deposed primary's updates are refused and tell it who holds what.
    assert_eq!(expect_superseded(a.add_member(c, 1, "a", "b").unwrap(), "deposed add_member"), Some(r2.clone()));
    assert_eq!(expect_superseded(a.publish(c, 1, "a", None, true).unwrap(), "deposed publish"), Some(r2.clone()));
    // A claim resets membership: a was a member of 1, not of 2.
    assert_eq!(a.claim(c, 3, &addrs("a")).unwrap(), Claim::NotMember(r2.clone()));
    // The new primary takes the old one back as backup, then may fail over to it.
    expect_applied(b.add_member(c, 2, "b", "a").unwrap(), "re-adding a");
    assert!(a.claim(c, 3, &addrs("a")).unwrap().is_granted());
    assert_eq!(a.read(c).unwrap().unwrap().epoch, 3);
}

fn names_are_validated(a: &dyn Arbiter) {
    for bad in ["", "..", "a/b", "has space"] {
        match a.read(bad) {
            Err(e @ ArbiterError::BadName { .. }) => {
                assert!(e.to_string().contains("--cluster"), "{e}")
            }
            other => panic!("cluster {bad:?}: expected BadName, got {other:?}"),
        }
    }
    match a.claim("names", 1, &addrs("../evil")) {
        Err(e @ ArbiterError::BadName { .. }) => assert!(e.to_string().contains("--node"), "{e}"),
        other => panic!("node ../evil: expected BadName, got {other:?}"),
    }
}

/// Promise 2 under contention: every handle (one per thread, as separate
/// hosts) claims the same epoch at once; exactly one wins. Then, round after
/// round, the winner adds one loser as member and everyone races again: only
/// one of the two members may win, every other node is refused.
pub fn race(handles: &[Box<dyn Arbiter>], rounds: u64) {
    let c = "race";
    let n = handles.len();
    let barrier = Barrier::new(n);
    let mut members: Option<Vec<String>> = None;
    for epoch in 1..=rounds {
        let answers: Vec<Claim> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..n)
                .map(|i| {
                    let (h, barrier) = (&handles[i], &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        h.claim(c, epoch, &addrs(&format!("n{i}"))).unwrap()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let winners: Vec<&Claim> = answers.iter().filter(|a| a.is_granted()).collect();
        assert_eq!(winners.len(), 1, "epoch {epoch}: exactly one grant, got {answers:#?}");
        let winner = winners[0].record().primary.node.clone();
        if let Some(m) = &members {
            assert!(m.contains(&winner), "epoch {epoch} went to {winner}, not a member of {m:?}");
        }
        for a in &answers {
            assert_eq!(a.record().cluster, c);
            assert!(a.record().epoch >= epoch - 1 && a.record().epoch <= epoch, "{a:?}");
        }
        assert_eq!(handles[0].read(c).unwrap().unwrap().primary.node, winner);
        // The winner declares the next node in sync.
        let w: usize = winner[1..].parse().unwrap();
        let next = format!("n{}", (w + 1) % n);
        let r = expect_applied(handles[w].add_member(c, epoch, &winner, &next).unwrap(), "winner adds a member");
        members = Some(r.members);
    }
}

/// A tiny tmpfs mounted for the life of the guard, to make a disk full on
/// purpose. Needs root (CI runs as root): failing to mount fails the test,
/// since a skipped test would hide that the full-disk path is unchecked.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("cannot run mount(8)");
        assert!(
            out.status.success(),
            "this test mounts a {size} tmpfs to fill a disk and must run as root (CI does): mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the filesystem with one file; returns it (remove it to free).
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = [0xa5u8; 4096];
        loop {
            if let Err(e) = f.write_all(&chunk) {
                assert_eq!(e.raw_os_error(), Some(28), "expected ENOSPC while filling: {e}");
                return path;
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(self.dir.path()).status().map(|s| s.success()).unwrap_or(false);
        if !ok {
            // Something still holds it open; detach it so the host is clean.
            let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
        }
    }
}

/// Captures log records so tests can check that failures are logged.
pub mod logs {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

    struct Capture;

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            LINES.lock().unwrap().push(format!("{} {}", record.level(), record.args()));
        }
        fn flush(&self) {}
    }

    static CAPTURE: Capture = Capture;

    /// Installs the capture (once per test binary; later calls are no-ops).
    pub fn install() {
        if log::set_logger(&CAPTURE).is_ok() {
            log::set_max_level(log::LevelFilter::Debug);
        }
    }

    /// Waits up to 5 s for a line containing every one of `parts` (servers
    /// log from their own threads).
    pub fn wait_for(parts: &[&str]) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let found = LINES.lock().unwrap().iter().find(|l| parts.iter().all(|p| l.contains(p))).cloned();
            if found.is_some() {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}
