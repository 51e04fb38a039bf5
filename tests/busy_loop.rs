//! A node whose event loop is held by long work is alive, not failed
//! (issue 17): its beat thread keeps repeating its last heartbeat or ack,
//! so its peer does not take over — while a frozen node (SIGSTOP, as a power cut looks
//! from outside) sends nothing and is still replaced within the timeout.

mod common;
use common::*;
use std::time::{Duration, Instant};
use understudy_client::{Conn, Reply};

/// A write script of about 6·10⁸ Lua instructions (under the default
/// budget of 10⁹): well over a second on these machines.
const BUSY: &str = "local i = 0 while i < 150000000 do i = i + 1 end redis.call('SET', KEYS[1], i) return i";

#[test]
fn a_long_script_on_both_replicas_is_not_a_failover() {
    let _s = serial();
    let mut h = Harness::new();
    h.node_args = vec!["--failover-timeout-ms".into(), "250".into()];
    h.start_pair();
    let before = h.record().unwrap();
    let mut c = Conn::connect(&h.node("a").client, Duration::from_secs(120)).unwrap();
    assert_eq!(c.call(&["SET", "k", "1"]).unwrap(), Reply::Simple("OK".into()));
    // The primary's loop runs the script; then the backup's loop replays
    // it, while the primary waits for nothing from it.
    let t = Instant::now();
    assert_eq!(c.call(&["EVAL", BUSY, "1", "busy"]).unwrap(), Reply::Int(150_000_000));
    let took = t.elapsed();
    assert!(
        took > Duration::from_millis(750),
        "the script held the loop {took:?}, not over 3 failure timeouts: this test needs a longer one"
    );
    // The backup has replayed it once it executed all it received.
    let mut cb = Conn::connect(&h.node("b").client, Duration::from_secs(120)).unwrap();
    wait_for("the backup to replay the script", Duration::from_secs(120), || {
        let info = cb.call(&["INFO", "replication"]).ok()?.bytes().map(|b| String::from_utf8_lossy(b).into_owned())?;
        let (received, executed) = (info_field(&info, "slave_read_repl_offset"), info_field(&info, "slave_repl_offset"));
        (received > 0 && executed == received).then_some(())
    });
    assert_eq!(c.call(&["GET", "busy"]).unwrap().bytes(), Some(&b"150000000"[..]));
    let after = h.record().unwrap();
    for n in ["a", "b"] {
        let log = h.log_of(n);
        assert!(!log.contains("silent for more than"), "{n} declared its busy peer failed:\n{log}");
    }
    assert_eq!((after.epoch, after.primary.node.as_str()), (before.epoch, "a"), "a failover happened");
    assert!(after.protected, "the primary lost its backup: {after:?}");

    // A frozen primary sends no beats: the backup takes over.
    h.signal("a", libc::SIGSTOP);
    let t = Instant::now();
    let r = h.wait_primary_after("b", before.epoch);
    let mut nb = Conn::connect(&h.node("b").client, Duration::from_secs(30)).unwrap();
    assert_eq!(nb.call(&["GET", "busy"]).unwrap().bytes(), Some(&b"150000000"[..]));
    eprintln!("frozen primary replaced after {:?} (epoch {})", t.elapsed(), r.epoch);
    h.signal("a", libc::SIGCONT);
    assert_eq!(h.wait_exit("a", Duration::from_secs(30)), Some(3), "the thawed primary must fail-stop");
}
