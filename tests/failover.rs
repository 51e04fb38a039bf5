//! Multi-process fault tests of the key-value pair with the real binary:
//! kill -9 of the primary and of the backup, a join under load followed by
//! the death of the primary it joined, an arbiter restart (DESIGN §1, §7.3).

mod common;
use common::*;
use std::time::Duration;

/// Promise 1 under kill -9: every write a client saw acknowledged is on the
/// survivor (output rule, DESIGN §3).
#[test]
fn kill9_of_the_primary_under_load_loses_no_acknowledged_write() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_node("a", &[]);
    let r = h.wait_primary("a");
    assert_eq!(r.epoch, 1);
    h.start_node("b", &[]);
    h.wait_in_sync("b");
    let load = Load::start(&h, 6, "k");
    load.wait_more(2000, Duration::from_secs(60));
    h.kill9("a");
    let r = h.wait_primary_after("b", 1);
    assert_eq!(r.primary.node, "b");
    assert!(!r.protected, "the new primary runs unprotected until a backup joins");
    load.wait_more(500, Duration::from_secs(60));
    let acked = load.stop();
    assert!(acked.len() >= 2500);
    assert_all_present(&h.node("b").client, &acked);
}

/// The backup dies: the primary wins the next epoch alone and continues,
/// unprotected, and status says so.
#[test]
fn kill9_of_the_backup_leaves_the_primary_serving_unprotected() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_node("a", &[]);
    h.wait_primary("a");
    h.start_node("b", &[]);
    let r = h.wait_in_sync("b");
    assert!(r.protected);
    let load = Load::start(&h, 4, "k");
    load.wait_more(1000, Duration::from_secs(60));
    h.kill9("b");
    let r = wait_for("a to re-claim without its backup", Duration::from_secs(30), || {
        h.record().filter(|r| r.epoch == 2 && r.primary.node == "a" && r.backup.is_none())
    });
    assert!(!r.protected);
    load.wait_more(1000, Duration::from_secs(60));
    let acked = load.stop();
    assert_all_present(&h.node("a").client, &acked);
    let out = std::process::Command::new(BIN)
        .args(["status", "--arbiter", &h.arbiter_url(), "--cluster", CLUSTER, "--json", "--secret-file"])
        .arg(h.path("secret"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["primary"]["node"], "a");
    assert_eq!(v["backup"], serde_json::Value::Null);
    assert_eq!(v["protected"], false);
    assert_eq!(v["primary_answers"], true);
    assert_eq!(out.status.code(), Some(1), "serving unprotected");
}

/// A third node joins a loaded primary by state transfer, becomes its
/// in-sync backup, and takes over when that primary is killed: nothing lost.
#[test]
fn join_under_load_then_kill9_of_the_primary_it_joined() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_node("a", &[]);
    h.wait_primary("a");
    let load = Load::start(&h, 6, "j");
    load.wait_more(3000, Duration::from_secs(60));
    h.start_node("c", &[]);
    let r = h.wait_in_sync("c");
    assert!(r.protected);
    assert_eq!(r.members, vec!["a".to_string(), "c".to_string()]);
    load.wait_more(1000, Duration::from_secs(60));
    h.kill9("a");
    h.wait_primary_after("c", r.epoch);
    load.wait_more(500, Duration::from_secs(60));
    let acked = load.stop();
    assert_all_present(&h.node("c").client, &acked);
}

/// The arbiter may restart while the pair is healthy: it forgets no epoch,
/// the pair keeps serving meanwhile, and a later failover still works.
#[test]
fn arbiter_restart_forgets_nothing_and_failover_still_works() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_node("a", &[]);
    h.wait_primary("a");
    h.start_node("b", &[]);
    let before = h.wait_in_sync("b");
    h.kill_arbiter();
    // The pair keeps serving while the arbiter is down.
    let mut c = h.conn("a");
    for i in 0..200 {
        let k = format!("during:{i}");
        assert_eq!(c.call(&["SET", k.as_str(), "x"]).unwrap(), understudy_client::Reply::Simple("OK".into()));
    }
    h.start_arbiter();
    let after = h.record().expect("the record survived the restart");
    assert_eq!(after.epoch, before.epoch);
    assert_eq!(after.members, before.members);
    h.kill9("a");
    h.wait_primary_after("b", before.epoch);
    let mut c = h.conn("b");
    for i in 0..200 {
        let k = format!("during:{i}");
        assert_eq!(c.call(&["GET", k.as_str()]).unwrap().bytes(), Some(&b"x"[..]));
    }
}
