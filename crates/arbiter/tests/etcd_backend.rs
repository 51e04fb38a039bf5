//! The `etcd://` backend against a real etcd (Debian's `etcd-server`, 3.4):
//! the shared conformance suite, contention, crashes and restarts of etcd,
//! an unreachable etcd, a 3-member etcd losing its leader, and etcd's users.

#![cfg(feature = "etcd")]

mod common;
mod etcd_harness;

use std::time::{Duration, Instant};

use common::addrs;
use etcd_harness::Etcd;
use understudy_arbiter::etcd::{primary_key, record_key, CALL_BUDGET};
use understudy_arbiter::{connect, Arbiter, ArbiterError, ClusterRecord};

fn open(url: &str) -> Box<dyn Arbiter> {
    connect(url, b"").unwrap()
}

/// Retries `f` while etcd is unreachable (as a node does), for up to 30 s.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Result<T, ArbiterError>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match f() {
            Ok(v) => return v,
            Err(ArbiterError::Unreachable { reason, .. }) if Instant::now() < deadline => {
                eprintln!("{what}: unreachable ({reason}); retrying");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

#[test]
fn etcd_passes_the_conformance_suite() {
    let etcd = Etcd::start(1);
    let (a, b) = (open(&etcd.url()), open(&etcd.url()));
    assert_eq!(a.describe(), etcd.url());
    common::conformance(a.as_ref(), b.as_ref());
}

#[test]
fn etcd_grants_each_epoch_once_under_contention() {
    let etcd = Etcd::start(1);
    let handles: Vec<Box<dyn Arbiter>> = (0..16).map(|_| open(&etcd.url())).collect();
    common::race(&handles, 8);
}

/// The documented keys: the record (authoritative) and the primary's
/// addresses, which change with each grant and only then.
#[test]
fn etcd_keys_are_the_documented_layout() {
    let etcd = Etcd::start(1);
    let a = open(&etcd.url());
    assert!(a.claim("c", 1, &addrs("a")).unwrap().is_granted());
    assert!(a.add_member("c", 1, "a", "b").unwrap().is_applied());
    let record = a.read("c").unwrap().unwrap();
    let get = |k: String| etcd.etcdctl(0, &["get", "--print-value-only", &k]);
    let (stored, primary) = (get(record_key("c")), get(primary_key("c")));
    let all = etcd.etcdctl(0, &["get", "--prefix", "--keys-only", "/understudy/"]);
    let all: Vec<&str> = all.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(serde_json::from_str::<ClusterRecord>(stored.trim_end()).unwrap(), record);
    let primary: serde_json::Value = serde_json::from_str(primary.trim_end()).unwrap();
    assert_eq!((primary["epoch"].as_u64(), primary["primary"]["client"].as_str()), (Some(1), Some(addrs("a").client.as_str())));
    assert_eq!(all, ["/understudy/c/primary", "/understudy/c/record"]);
}

/// A record that does not parse is an error naming the key; the arbiter
/// never guesses an epoch (Promise 2).
#[test]
fn a_corrupt_record_is_refused() {
    let etcd = Etcd::start(1);
    etcd.etcdctl(0, &["put", &record_key("c"), "{not json"]);
    let a = open(&etcd.url());
    for result in [a.read("c").map(|_| ()), a.claim("c", 1, &addrs("a")).map(|_| ())] {
        match result {
            Err(e @ ArbiterError::Corrupt { .. }) => assert!(e.to_string().contains("/understudy/c/record"), "{e}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}

/// Promise 2 across a crash of etcd: restarted on the same data directory it
/// knows every epoch and member. The handle keeps its client and reconnects.
#[test]
fn etcd_restart_keeps_epoch_and_members() {
    let mut etcd = Etcd::start(1);
    let a = open(&etcd.url());
    assert!(a.claim("c", 1, &addrs("a")).unwrap().is_granted());
    assert!(a.add_member("c", 1, "a", "b").unwrap().is_applied());
    let before = a.read("c").unwrap().unwrap();
    etcd.kill(0);
    etcd.restart(0);
    assert_eq!(eventually("read after the restart", || a.read("c")), Some(before), "same record after the restart");
    assert!(!a.claim("c", 1, &addrs("x")).unwrap().is_granted(), "epoch 1 is not handed out again");
    assert!(!a.claim("c", 2, &addrs("x")).unwrap().is_granted(), "x is still no member");
    assert!(a.claim("c", 2, &addrs("b")).unwrap().is_granted(), "b is still a member");
}

/// Failover must not hang on a dead etcd: every call fails within a few
/// seconds as Unreachable (the node retries), and works again once etcd is
/// back, through the same handle.
#[test]
fn etcd_unreachable_is_prompt_then_recovers() {
    let mut etcd = Etcd::start(1);
    let a = open(&etcd.url());
    assert!(a.claim("c", 1, &addrs("a")).unwrap().is_granted());
    etcd.kill(0);
    let never_connected = open(&etcd.url());
    let bound = CALL_BUDGET + Duration::from_secs(1);
    for (what, h) in [("connected handle", &a), ("new handle", &never_connected)] {
        for _ in 0..2 {
            let t = Instant::now();
            match h.claim("c", 2, &addrs("a")) {
                Err(e @ ArbiterError::Unreachable { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains(&etcd.url()) && msg.contains("is etcd running"), "{msg}");
                }
                other => panic!("{what}: claim with etcd down: expected Unreachable, got {other:?}"),
            }
            eprintln!("{what}: Unreachable after {:?}", t.elapsed());
            assert!(t.elapsed() < bound, "{what}: took {:?}, bound {bound:?}", t.elapsed());
        }
    }
    etcd.restart(0);
    let granted = eventually("claim after etcd came back", || a.claim("c", 2, &addrs("a")));
    assert!(granted.is_granted(), "{granted:?}");
    assert_eq!(eventually("read by the new handle", || never_connected.read("c")).unwrap().epoch, 2);
}

/// A frozen etcd (SIGSTOP: connections are accepted by the kernel, nothing
/// answers) is the slow case: the request timeout, not a refused connect,
/// must end the call. Once thawed, the same handle works again.
#[test]
fn a_frozen_etcd_is_unreachable_within_the_budget() {
    let etcd = Etcd::start(1);
    let a = open(&etcd.url());
    assert!(a.claim("c", 1, &addrs("a")).unwrap().is_granted());
    etcd.signal(0, "STOP");
    let t = Instant::now();
    let result = a.add_member("c", 1, "a", "b");
    let took = t.elapsed();
    etcd.signal(0, "CONT");
    match result {
        Err(e @ ArbiterError::Unreachable { .. }) => assert!(e.to_string().contains(&etcd.url()), "{e}"),
        other => panic!("add_member with etcd frozen: expected Unreachable, got {other:?}"),
    }
    eprintln!("frozen etcd: Unreachable after {took:?}");
    assert!(took < CALL_BUDGET + Duration::from_secs(1), "took {took:?}");
    let r = eventually("add_member after the thaw", || a.add_member("c", 1, "a", "b"));
    assert!(r.is_applied(), "{r:?}");
}

/// The etcd member that leads Raft, by asking each live member.
fn leader_index(etcd: &Etcd, n: usize) -> usize {
    let mut ids = Vec::new();
    let mut leader = 0;
    for i in 0..n {
        let s: serde_json::Value = serde_json::from_str(&etcd.etcdctl(i, &["endpoint", "status", "-w", "json"])).unwrap();
        ids.push(s[0]["Status"]["header"]["member_id"].as_u64().unwrap());
        leader = s[0]["Status"]["leader"].as_u64().unwrap();
    }
    ids.iter().position(|id| *id == leader).expect("the leader is one of the members")
}

/// A 3-member etcd keeps granting with one member (its leader) dead, grants
/// each epoch once under contention meanwhile, and every member, the dead
/// one once restarted, answers the same record.
#[test]
fn etcd_three_members_survive_losing_the_leader() {
    let mut etcd = Etcd::start(3);
    let url = etcd.url();
    let (a, b) = (open(&url), open(&url));
    assert!(a.claim("c", 1, &addrs("a")).unwrap().is_granted());
    assert!(a.add_member("c", 1, "a", "b").unwrap().is_applied());

    let dead = leader_index(&etcd, 3);
    etcd.kill(dead);
    let t = Instant::now();
    let claim = eventually("b claims epoch 2 with the etcd leader dead", || b.claim("c", 2, &addrs("b")));
    assert!(claim.is_granted(), "{claim:?}");
    eprintln!("epoch 2 granted {:?} after the etcd leader was killed", t.elapsed());
    assert!(!a.claim("c", 2, &addrs("a")).unwrap().is_granted(), "the old primary lost epoch 2");

    let handles: Vec<Box<dyn Arbiter>> = (0..8).map(|_| open(&url)).collect();
    common::race(&handles, 4);

    let record = b.read("c").unwrap().unwrap();
    assert_eq!((record.epoch, record.primary.node.as_str()), (2, "b"));
    for i in (0..3).filter(|i| *i != dead) {
        assert_eq!(open(&etcd.member_url(i)).read("c").unwrap(), Some(record.clone()), "member {i}");
    }
    etcd.restart(dead);
    let rejoined = open(&etcd.member_url(dead));
    assert_eq!(eventually("read from the restarted member", || rejoined.read("c")), Some(record));
}

/// etcd users: the right password works (and never shows in descriptions),
/// a wrong one or none is an Auth error naming the fix, and a user without
/// permission on the prefix is refused with the grant to make.
#[test]
fn etcd_users_and_passwords() {
    let etcd = Etcd::start(1);
    etcd.etcdctl(0, &["user", "add", "root:r00t-pw"]);
    etcd.etcdctl(0, &["user", "grant-role", "root", "root"]);
    etcd.etcdctl(0, &["user", "add", "guest:guest-pw"]);
    etcd.etcdctl(0, &["auth", "enable"]);
    let ep = etcd.endpoint(0);
    let root = open(&format!("etcd://root:r00t-pw@{ep}"));
    assert_eq!(root.describe(), format!("etcd://root@{ep}"));
    assert!(root.claim("c", 1, &addrs("a")).unwrap().is_granted());

    for url in [format!("etcd://root:wrong@{ep}"), format!("etcd://{ep}")] {
        match open(&url).read("c") {
            Err(e @ ArbiterError::Auth { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("UNDERSTUDY_ETCD_PASSWORD") && !msg.contains("wrong"), "{msg}");
            }
            other => panic!("{url}: expected Auth, got {other:?}"),
        }
    }
    match open(&format!("etcd://guest:guest-pw@{ep}")).claim("c", 2, &addrs("a")) {
        Err(e @ ArbiterError::Rejected { .. }) => assert!(e.to_string().contains("readwrite"), "{e}"),
        other => panic!("guest without permission: expected Rejected, got {other:?}"),
    }
    assert_eq!(root.read("c").unwrap().unwrap().epoch, 1, "refused calls changed nothing");
}

/// A token that etcd expired (here after 1 s; 5 min by default) is fetched
/// again: a node that has not called the arbiter for a long time can still
/// claim an epoch when its primary dies.
#[test]
fn an_expired_auth_token_is_renewed() {
    let etcd = Etcd::start_with_flags(1, &["--auth-token-ttl=1"]);
    etcd.etcdctl(0, &["user", "add", "root:r00t-pw"]);
    etcd.etcdctl(0, &["user", "grant-role", "root", "root"]);
    etcd.etcdctl(0, &["auth", "enable"]);
    let root = open(&format!("etcd://root:r00t-pw@{}", etcd.endpoint(0)));
    assert!(root.claim("c", 1, &addrs("a")).unwrap().is_granted());
    // etcd checks token expiry about once a second after the TTL.
    std::thread::sleep(Duration::from_secs(4));
    assert!(root.add_member("c", 1, "a", "b").unwrap().is_applied(), "the call after the token expired");
    assert_eq!(root.read("c").unwrap().unwrap().members, ["a", "b"]);
}

/// Writes a CA and a server certificate for 127.0.0.1 with openssl(1).
#[cfg(feature = "etcd-tls")]
fn make_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("running openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[&["req", "-x509"], &ec[..], &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=understudy test CA"]]
        .concat());
    run(&[&["req"], &ec[..], &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]].concat());
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    let signed = ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"];
    run(&[&signed[..], &["-out", "server.pem", "-days", "2", "-extfile", "san.ext"]].concat());
}

/// `?ca=FILE` speaks TLS to etcd and verifies it; another CA is refused.
#[cfg(feature = "etcd-tls")]
#[test]
fn etcd_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let etcd = Etcd::start_tls(1, &certs.path().join("server.pem"), &certs.path().join("server.key"));
    let url = format!("{}?ca={}", etcd.url(), certs.path().join("ca.pem").display());
    let a = open(&url);
    assert!(eventually("claim over TLS", || a.claim("c", 1, &addrs("a"))).is_granted());

    let other = tempfile::tempdir().unwrap();
    make_certs(other.path());
    let wrong = open(&format!("{}?ca={}", etcd.url(), other.path().join("ca.pem").display()));
    match wrong.read("c") {
        Err(e @ ArbiterError::Unreachable { .. }) => assert!(e.to_string().contains("certificate"), "{e}"),
        other => panic!("a server certificate from another CA: expected Unreachable, got {other:?}"),
    }
}
