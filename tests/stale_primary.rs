//! SIGSTOP of the primary until the backup goes live, then SIGCONT: the
//! stale primary must never acknowledge another write nor answer a read
//! from its stale state — replies to reads are outputs too (DESIGN §3).

mod common;
use common::*;
use std::time::Duration;
use understudy_client::Reply;

#[test]
fn frozen_primary_never_answers_after_the_backup_went_live() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_node("a", &[]);
    h.wait_primary("a");
    h.start_node("b", &[]);
    let r = h.wait_in_sync("b");
    let mut c = h.conn("a");
    assert_eq!(c.call(&["SET", "k", "before"]).unwrap(), Reply::Simple("OK".into()));

    h.signal("a", libc::SIGSTOP);
    // Requests that reach the frozen primary wait in its socket buffer.
    c.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nstale\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").unwrap();
    h.wait_primary_after("b", r.epoch);
    let mut nb = h.conn("b");
    assert_eq!(nb.call(&["SET", "k", "new"]).unwrap(), Reply::Simple("OK".into()));
    h.signal("a", libc::SIGCONT);

    // The old primary halts (it loses the claim) without a word to clients.
    let code = h.wait_exit("a", Duration::from_secs(30));
    assert_eq!(code, Some(3), "a deposed primary fail-stops with exit code 3");
    let rest = c.read_to_end().unwrap_or_default();
    assert!(rest.is_empty(), "the stale primary released output after the failover: {:?}", String::from_utf8_lossy(&rest));
    assert!(h.log_of("a").contains("lost the claim"), "the halt names its reason");
    assert_eq!(nb.call(&["GET", "k"]).unwrap().bytes(), Some(&b"new"[..]));
}
