//! Unit tests of the session table: dedup, the reply window, expiry by
//! recorded time, and the bounds.

use super::*;

fn small() -> SessionTable {
    SessionTable::new(SessionLimits { sessions_max: 3, window: 2, reply_bytes_max: 100, reply_bytes_one_max: 40, idle_ms: 1000 })
}

fn open(t: &mut SessionTable, id: &[u8], now_ms: u64) -> Vec<u8> {
    let mut out = Vec::new();
    t.open(id, now_ms, &mut out);
    out
}

/// Runs request `seq` of `id` whose fresh reply would be `fresh`; returns
/// what the client gets.
fn call(t: &mut SessionTable, id: &[u8], seq: u64, now_ms: u64, fresh: &[u8]) -> Result<Vec<u8>, String> {
    match t.call(id, seq, now_ms) {
        Call::Apply => {
            t.record(id, seq, fresh);
            Ok(fresh.to_vec())
        }
        Call::Replay(b) => Ok(b.to_vec()),
        Call::Refuse(e) => Err(e),
    }
}

#[test]
fn a_retry_is_answered_from_the_table_not_applied_again() {
    let mut t = small();
    assert_eq!(open(&mut t, b"c", 10), b"*2\r\n:0\r\n:2\r\n");
    assert_eq!(t.call(b"c", 1, 11), Call::Apply);
    t.record(b"c", 1, b":1\r\n");
    assert_eq!(t.call(b"c", 1, 12), Call::Replay(Arc::from(&b":1\r\n"[..])));
    assert_eq!(t.call(b"c", 1, 13), Call::Replay(Arc::from(&b":1\r\n"[..])));
    assert_eq!(t.get(b"c").unwrap().hits, 2);
    assert_eq!(t.call(b"c", 2, 14), Call::Apply, "the next seq runs");
    t.record(b"c", 2, b":2\r\n");
    // Reopening (a client whose US.SESSION reply was lost) keeps the state.
    assert_eq!(open(&mut t, b"c", 15), b"*2\r\n:2\r\n:2\r\n");
}

#[test]
fn the_window_keeps_the_last_replies_and_older_ones_are_a_clear_error() {
    let mut t = small();
    open(&mut t, b"c", 0);
    for seq in 1..=4 {
        call(&mut t, b"c", seq, seq, format!(":{seq}\r\n").as_bytes()).unwrap();
    }
    assert_eq!(call(&mut t, b"c", 4, 5, b"x").unwrap(), b":4\r\n");
    assert_eq!(call(&mut t, b"c", 3, 5, b"x").unwrap(), b":3\r\n", "a pipelined window of 2");
    let e = call(&mut t, b"c", 2, 5, b"x").unwrap_err();
    assert!(e.starts_with("SESSIONOLD request 2 is not in the session's reply cache (last request 4"), "{e}");
    assert_eq!(t.get(b"c").unwrap().replies.len(), 2);
    // A gap (seq 6 after 4) runs; 5 then never will.
    assert_eq!(call(&mut t, b"c", 6, 6, b":6\r\n").unwrap(), b":6\r\n");
    assert!(call(&mut t, b"c", 5, 6, b"x").unwrap_err().starts_with("SESSIONOLD request 5"));
}

#[test]
fn unknown_sessions_run_nothing() {
    let mut t = small();
    let e = call(&mut t, b"nope", 1, 0, b"x").unwrap_err();
    assert!(e.starts_with("NOSESSION unknown session"), "{e}");
    open(&mut t, b"c", 0);
    let mut out = Vec::new();
    t.close(b"c", 1, &mut out);
    assert_eq!(out, b":1\r\n");
    assert!(call(&mut t, b"c", 1, 2, b"x").unwrap_err().starts_with("NOSESSION"));
    out.clear();
    t.close(b"c", 3, &mut out);
    assert_eq!(out, b":0\r\n");
}

#[test]
fn expiry_is_decided_by_the_recorded_time_only() {
    let mut t = small();
    open(&mut t, b"a", 1000);
    call(&mut t, b"a", 1, 1500, b":1\r\n").unwrap();
    // Idle 1000 ms is still alive; one ms more is expired.
    assert_eq!(call(&mut t, b"a", 1, 2500, b"x").unwrap(), b":1\r\n");
    assert!(t.idle_sessions(3500, 10).is_empty());
    assert_eq!(t.idle_sessions(3501, 10), vec![Id::from(&b"a"[..])]);
    assert!(call(&mut t, b"a", 2, 3501, b"x").unwrap_err().starts_with("NOSESSION"));
    assert!(t.is_empty(), "the expired session was removed by the lookup");
    assert_eq!(t.reply_bytes(), 0);
}

#[test]
fn every_session_op_purges_expired_sessions_and_the_expire_op_names_them() {
    let mut t = small();
    open(&mut t, b"a", 0);
    open(&mut t, b"b", 700);
    open(&mut t, b"c", 900);
    open(&mut t, b"c", 1600);
    assert_eq!(t.len(), 2, "a (idle since 0) went with the op at 1600");
    assert!(t.get(b"a").is_none());
    // The expire op removes only what is expired at ITS time.
    assert_eq!(t.expire(&[b"b", b"c", b"zz"], 1700), 0);
    assert_eq!(t.expire(&[b"b", b"c", b"zz"], 1701), 1);
    assert_eq!(t.len(), 1);
    assert_eq!(t.expire(&[b"c"], 2600), 0);
    assert_eq!(t.expire(&[b"c"], 2601), 1);
    assert!(t.is_empty());
}

#[test]
fn a_full_table_evicts_the_least_recently_active_session() {
    let mut t = small();
    open(&mut t, b"a", 1);
    open(&mut t, b"b", 2);
    open(&mut t, b"c", 3);
    call(&mut t, b"a", 1, 4, b"+a\r\n").unwrap(); // a is now the most recent
    open(&mut t, b"d", 5);
    assert_eq!(t.len(), 3);
    assert!(t.get(b"b").is_none(), "b was the least recently active");
    assert!(call(&mut t, b"b", 1, 6, b"x").unwrap_err().starts_with("NOSESSION"));
    assert_eq!(call(&mut t, b"a", 1, 6, b"x").unwrap(), b"+a\r\n");
}

#[test]
fn kept_reply_bytes_are_bounded() {
    let mut t = small();
    open(&mut t, b"a", 1);
    open(&mut t, b"b", 2);
    let r30 = [b'x'; 30];
    call(&mut t, b"a", 1, 3, &r30).unwrap();
    call(&mut t, b"a", 2, 4, &r30).unwrap();
    call(&mut t, b"b", 1, 5, &r30).unwrap();
    assert_eq!(t.reply_bytes(), 90);
    // 120 > 100: a's oldest reply goes (a is less recently active than b).
    call(&mut t, b"b", 2, 6, &r30).unwrap();
    assert_eq!(t.reply_bytes(), 90);
    assert!(call(&mut t, b"a", 1, 7, b"x").unwrap_err().starts_with("SESSIONOLD request 1"));
    assert_eq!(call(&mut t, b"a", 2, 7, b"x").unwrap(), r30);
    // A reply above the per-reply bound is not kept, only its size.
    let big = [b'y'; 41];
    assert_eq!(call(&mut t, b"b", 3, 8, &big).unwrap(), big);
    let e = call(&mut t, b"b", 3, 9, b"x").unwrap_err();
    assert!(e.starts_with("SESSIONOLD request 3 was applied, but its reply (41 bytes)"), "{e}");
    assert!(t.reply_bytes() <= 100);
}

#[test]
fn snapshot_and_restore_keep_every_session_and_the_digest() {
    let mut t = small();
    open(&mut t, b"a", 1);
    open(&mut t, b"b", 2);
    call(&mut t, b"a", 1, 3, b":1\r\n").unwrap();
    call(&mut t, b"a", 2, 4, &[b'z'; 41]).unwrap();
    call(&mut t, b"a", 2, 5, b"x").unwrap_err();
    let mut buf = Vec::new();
    for (id, s) in t.snapshot() {
        records::write_session(&mut buf, &id, &s);
    }
    let mut r = understudy_wire::codec::Reader::new(&buf, "test");
    let mut copy = small();
    while !r.is_empty() {
        assert_eq!(r.u8().unwrap(), records::RECORD_SESSION);
        let (id, s) = records::read_session(&mut r).unwrap();
        copy.restore(id, s).unwrap();
    }
    assert_eq!(copy.digest(), t.digest());
    assert_ne!(t.digest(), 0);
    assert_eq!(copy.get(b"a"), t.get(b"a"));
    assert_eq!(call(&mut copy, b"a", 1, 6, b"x").unwrap(), b":1\r\n");
    // A duplicate or out-of-bounds session is refused.
    let (id, s) = (Id::from(&b"a"[..]), t.get(b"a").unwrap().clone());
    assert!(copy.restore(&id, s.clone()).is_err());
    let mut bad = s;
    bad.replies.push_back((1, Kept::TooLarge(1)));
    assert!(small().restore(b"q", bad).is_err(), "seqs out of order");
}

#[test]
fn digests_differ_when_sessions_do() {
    let (mut a, mut b) = (small(), small());
    assert_eq!(a.digest(), 0);
    open(&mut a, b"s", 1);
    open(&mut b, b"s", 1);
    assert_eq!(a.digest(), b.digest());
    call(&mut a, b"s", 1, 2, b":1\r\n").unwrap();
    call(&mut b, b"s", 1, 2, b":2\r\n").unwrap();
    assert_ne!(a.digest(), b.digest());
}
