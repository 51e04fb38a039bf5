//! The output rule, observed from a client: while the backup cannot
//! acknowledge, the primary's replies — to writes and to reads — do not
//! leave, until the primary has won the next epoch alone (DESIGN §3).

mod common;
use common::*;
use std::time::{Duration, Instant};
use understudy_client::{Conn, Reply};

#[test]
fn replies_wait_for_the_backup_then_for_the_next_epoch() {
    let _s = serial();
    let mut h = Harness::new();
    h.node_args = vec!["--failover-timeout-ms".into(), "3000".into()];
    h.start_node("a", &[]);
    h.wait_primary("a");
    h.start_node("b", &[]);
    let r = h.wait_in_sync("b");
    let mut c = Conn::connect(&h.node("a").client, Duration::from_millis(800)).unwrap();
    assert_eq!(c.call(&["SET", "k", "1"]).unwrap(), Reply::Simple("OK".into()));

    h.signal("b", libc::SIGSTOP);
    let t0 = Instant::now();
    c.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n2\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").unwrap();
    // The primary executed both, but the backup has not acknowledged them.
    assert!(c.read_reply().is_err(), "a reply left the primary before the backup had the entry behind it");
    let mut c2 = Conn::connect(&h.node("a").client, Duration::from_secs(30)).unwrap();
    // Once the backup is declared failed, the primary wins epoch 2 and
    // releases the held replies, in order.
    let mut late = Conn::connect(&h.node("a").client, Duration::from_secs(30)).unwrap();
    assert_eq!(late.call(&["GET", "k"]).unwrap().bytes(), Some(&b"2"[..]));
    assert!(t0.elapsed() >= Duration::from_millis(2500), "released after {:?}, before the failover timeout", t0.elapsed());
    let rec = h.record().unwrap();
    assert_eq!((rec.epoch, rec.primary.node.as_str(), rec.protected), (r.epoch + 1, "a", false));
    assert_eq!(c2.call(&["PING"]).unwrap(), Reply::Simple("PONG".into()));

    // The backup wakes up to a lost race and fail-stops.
    h.signal("b", libc::SIGCONT);
    assert_eq!(h.wait_exit("b", Duration::from_secs(30)), Some(3));
}
