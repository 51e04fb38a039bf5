//! The etcd arbiter with the real binary and a real etcd (Debian's
//! etcd-server 3.4): a failover through etcd; etcd restarted mid-run; etcd
//! unreachable while the pair is healthy (it keeps serving) and during a
//! failure (no one goes live until it is back, then exactly one does); a
//! 3-member etcd that loses a member.

mod common;
// The etcd processes of the arbiter crate's tests: random ports below the
// ephemeral range, each member checked to be this test's own.
// (Its TLS part is for the arbiter crate's `etcd-tls` feature.)
#[allow(unexpected_cfgs)]
#[path = "../crates/arbiter/tests/etcd_harness/mod.rs"]
mod etcd_harness;
use common::*;
use etcd_harness::Etcd;
use std::time::{Duration, Instant};
use understudy_client::Reply;

fn pair(h: &mut Harness) -> u64 {
    h.start_node("a", &[]);
    h.wait_primary("a");
    h.start_node("b", &[]);
    h.wait_in_sync("b").epoch
}

#[test]
fn failover_through_etcd_loses_nothing() {
    let _s = serial();
    let etcd = Etcd::start(1);
    let mut h = Harness::with_arbiter(&etcd.url());
    let epoch = pair(&mut h);
    let load = Load::start(&h, 4, "e");
    load.wait_more(1500, Duration::from_secs(60));
    let t0 = Instant::now();
    h.kill9("a");
    h.wait_primary_after("b", epoch);
    println!("failover through etcd: {:?} (kill -9 -> the new primary serves)", t0.elapsed());
    load.wait_more(300, Duration::from_secs(60));
    let acked = load.stop();
    assert_all_present(&h.node("b").client, &acked);
}

#[test]
fn etcd_restarted_mid_run_forgets_nothing() {
    let _s = serial();
    let mut etcd = Etcd::start(1);
    let mut h = Harness::with_arbiter(&etcd.url());
    let epoch = pair(&mut h);
    etcd.kill(0);
    // The healthy pair keeps serving while etcd is down.
    let mut c = h.conn("a");
    for i in 0..100 {
        let k = format!("k{i}");
        assert_eq!(c.call(&["SET", k.as_str(), "v"]).unwrap(), Reply::Simple("OK".into()));
    }
    etcd.restart(0);
    let r = h.record().expect("etcd kept the record");
    assert_eq!((r.epoch, r.primary.node.as_str()), (epoch, "a"));
    h.kill9("a");
    h.wait_primary_after("b", epoch);
    assert_eq!(h.conn("b").call(&["GET", "k99"]).unwrap().bytes(), Some(&b"v"[..]));
}

#[test]
fn no_one_goes_live_while_etcd_is_unreachable_then_exactly_one_does() {
    let _s = serial();
    let mut etcd = Etcd::start(1);
    let mut h = Harness::with_arbiter(&etcd.url());
    let epoch = pair(&mut h);
    assert_eq!(h.conn("a").call(&["SET", "x", "1"]).unwrap(), Reply::Simple("OK".into()));
    etcd.kill(0);
    h.kill9("a");
    // b cannot win an epoch: it must not serve. Watch for a while.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(!serves_as_primary(&h.node("b").client, None), "b went live without the arbiter");
        std::thread::sleep(Duration::from_millis(100));
    }
    etcd.restart(0);
    let r = h.wait_primary_after("b", epoch);
    assert_eq!(r.epoch, epoch + 1, "exactly one new epoch");
    assert_eq!(h.conn("b").call(&["GET", "x"]).unwrap().bytes(), Some(&b"1"[..]));
}

#[test]
fn three_member_etcd_survives_losing_a_member() {
    let _s = serial();
    let mut etcd = Etcd::start(3);
    let mut h = Harness::with_arbiter(&etcd.url());
    let epoch = pair(&mut h);
    etcd.kill(0);
    h.kill9("a");
    let r = h.wait_primary_after("b", epoch);
    assert_eq!(r.epoch, epoch + 1);
    h.start_node("c", &[]);
    h.wait_in_sync("c");
}
