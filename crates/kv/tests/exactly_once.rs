//! Exactly-once client sessions through the node's path (`Session::dispatch`
//! then `Kv::apply`), as DESIGN §3 "duplicate outputs after failover" asks:
//! a retried request is answered from the replicated table and never applied
//! twice — on the replica that applied it, on a backup that replayed the
//! log, and on a joiner restored from a snapshot.

mod common;

use common::{one_reply, Client, FixedCtx, V};
use understudy_core::StateMachine;
use understudy_kv::{Kv, SessionLimits};

const T0_US: u64 = 1_700_000_000_000_000;

fn run(c: &mut Client, now_us: u64, argv: &[&[u8]]) -> Vec<u8> {
    c.run_at(&mut FixedCtx { now_us, asks: 0 }, now_us / 1000, argv)
}

fn err(reply: &[u8]) -> String {
    match one_reply(reply) {
        V::Err(e) => String::from_utf8(e).unwrap(),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// Replays `c`'s logged ops on a fresh Kv, every op at `now_us`.
fn replay(c: &Client, now_us: u64) -> (Kv, Vec<Vec<u8>>) {
    let mut kv = Kv::new();
    let replies = c
        .log
        .iter()
        .map(|op| {
            let mut out = Vec::new();
            kv.apply(&mut FixedCtx { now_us, asks: 0 }, op, &mut out);
            out
        })
        .collect();
    (kv, replies)
}

#[test]
fn a_retried_incr_is_answered_not_applied_again() {
    let mut c = Client::new(1);
    assert_eq!(run(&mut c, T0_US, &[b"US.SESSION", b"client-1"]), b"*2\r\n:0\r\n:16\r\n");
    assert_eq!(run(&mut c, T0_US, &[b"us.call", b"client-1", b"1", b"INCR", b"n"]), b":1\r\n");
    for _ in 0..3 {
        assert_eq!(run(&mut c, T0_US, &[b"US.CALL", b"client-1", b"1", b"INCR", b"n"]), b":1\r\n");
    }
    assert_eq!(run(&mut c, T0_US, &[b"GET", b"n"]), b"$1\r\n1\r\n", "applied once");
    assert_eq!(run(&mut c, T0_US, &[b"US.CALL", b"client-1", b"2", b"INCR", b"n"]), b":2\r\n");
    // An error reply is an answer like any other: kept and replayed.
    let wrongtype = run(&mut c, T0_US, &[b"US.CALL", b"client-1", b"3", b"LPUSH", b"n", b"x"]);
    assert!(err(&wrongtype).starts_with("WRONGTYPE"));
    assert_eq!(run(&mut c, T0_US, &[b"US.CALL", b"client-1", b"3", b"LPUSH", b"n", b"x"]), wrongtype);
    let info = one_reply(&run(&mut c, T0_US, &[b"US.INFO", b"client-1"]));
    let V::Arr(Some(f)) = info else { panic!("US.INFO") };
    assert_eq!((&f[1], &f[3], &f[5]), (&V::Int(3), &V::Int(3), &V::Int(4)), "highest, replies, hits");
    assert_eq!(run(&mut c, T0_US, &[b"US.INFO", b"nobody"]), b"$-1\r\n");
}

#[test]
fn a_backup_replaying_the_log_answers_retries_the_same_way() {
    let mut c = Client::new(1);
    run(&mut c, T0_US, &[b"US.SESSION", b"s"]);
    for seq in 1..=5u64 {
        let seq = seq.to_string();
        run(&mut c, T0_US, &[b"US.CALL", b"s", seq.as_bytes(), b"INCRBY", b"k", b"10"]);
    }
    // The primary's retry of request 5 and a plain write after it.
    run(&mut c, T0_US, &[b"US.CALL", b"s", b"5", b"INCRBY", b"k", b"10"]);
    run(&mut c, T0_US, &[b"SET", b"other", b"v"]);
    let (mut backup, replies) = replay(&c, T0_US);
    assert_eq!(backup.digest(), c.kv.digest(), "the session table is replicated state");
    assert_eq!(replies[6], b":50\r\n", "the replayed retry answered from the table");
    // After a failover the client retries request 5 on the backup: answered.
    let mut out = Vec::new();
    let mut retry = Client::new(2);
    retry.kv = std::mem::take(&mut backup);
    assert_eq!(run(&mut retry, T0_US, &[b"US.CALL", b"s", b"5", b"INCRBY", b"k", b"10"]), b":50\r\n");
    retry.kv.read_argv(T0_US / 1000, &[b"GET", b"k"], &mut out);
    assert_eq!(out, b"$2\r\n50\r\n");
}

#[test]
fn malformed_session_commands_are_answered_and_never_logged() {
    let mut c = Client::new(1);
    let cases: &[(&[&[u8]], &str)] = &[
        (&[b"US.SESSION"], "ERR wrong number of arguments for 'us.session' command"),
        (&[b"US.SESSION", b""], "ERR invalid session id"),
        (&[b"US.SESSION", &[b'x'; 65]], "ERR invalid session id"),
        (&[b"US.CALL", b"s", b"1"], "ERR wrong number of arguments for 'us.call' command"),
        (&[b"US.CALL", b"s", b"0", b"INCR", b"k"], "ERR invalid request seq"),
        (&[b"US.CALL", b"s", b"x", b"INCR", b"k"], "ERR invalid request seq"),
        (&[b"US.CALL", b"s", b"1", b"NOSUCH", b"k"], "ERR unknown command 'NOSUCH' in US.CALL"),
        (&[b"US.CALL", b"s", b"1", b"MULTI"], "ERR US.CALL runs keyspace commands; 'multi'"),
        (&[b"US.CALL", b"s", b"1", b"INCR"], "ERR wrong number of arguments for 'incr' command"),
        (&[b"US.NOPE", b"s"], "ERR unknown command 'US.NOPE'"),
    ];
    for (argv, want) in cases {
        let e = err(&run(&mut c, T0_US, argv));
        assert!(e.starts_with(want), "{argv:?}: {e}");
    }
    assert!(c.log.is_empty(), "nothing reached the log");
    // A call on a session never opened runs nothing (it is logged: whether
    // the session exists is replicated state).
    let e = err(&run(&mut c, T0_US, &[b"US.CALL", b"s", b"1", b"INCR", b"k"]));
    assert!(e.starts_with("NOSESSION"), "{e}");
    assert_eq!(run(&mut c, T0_US, &[b"EXISTS", b"k"]), b":0\r\n");
    // Inside MULTI a session command aborts the transaction.
    run(&mut c, T0_US, &[b"MULTI"]);
    assert!(err(&run(&mut c, T0_US, &[b"US.SESSION", b"s"])).contains("not allowed inside MULTI"));
    assert!(err(&run(&mut c, T0_US, &[b"EXEC"])).starts_with("EXECABORT"));
}

#[test]
fn the_session_commands_stay_out_of_the_redis_command_table() {
    let mut c = Client::new(1);
    let reply = run(&mut c, T0_US, &[b"COMMAND", b"LIST"]);
    assert!(!String::from_utf8_lossy(&reply).to_lowercase().contains("us."), "COMMAND LIST is compared with Redis's");
}

/// Sessions expire by the recorded time of the ops, on every replica alike:
/// through the primary's expire cycle, and on the next session op.
#[test]
fn idle_sessions_expire_by_recorded_time_on_both_replicas() {
    let limits = SessionLimits { idle_ms: 10_000, ..SessionLimits::default() };
    let mut c = Client::new(1);
    c.kv = Kv::with_session_limits(limits.clone());
    run(&mut c, T0_US, &[b"US.SESSION", b"old"]);
    run(&mut c, T0_US + 5_000_000, &[b"US.SESSION", b"young"]);
    let mut op = Vec::new();
    assert!(!c.kv.expire_cycle_op(T0_US / 1000 + 10_000, 64, &mut op), "idle exactly idle_ms: not yet");
    assert!(c.kv.expire_cycle_op(T0_US / 1000 + 10_001, 64, &mut op));
    // The primary proposes at its clock; the op's recorded time decides.
    let (mut primary, mut backup) = (Kv::with_session_limits(limits.clone()), Kv::with_session_limits(limits));
    let mut ctx = FixedCtx { now_us: T0_US, asks: 0 };
    for kv in [&mut primary, &mut backup] {
        let mut out = Vec::new();
        for (i, logged) in c.log.iter().enumerate() {
            kv.apply(&mut FixedCtx { now_us: T0_US + i as u64 * 5_000_000, asks: 0 }, logged, &mut out);
        }
        out.clear();
        ctx.now_us = T0_US + 10_001_000;
        kv.apply(&mut ctx, &op, &mut out);
        assert_eq!(out, b":1\r\n", "old expired, young did not");
        assert!(kv.sessions().get(b"old").is_none() && kv.sessions().get(b"young").is_some());
    }
    assert_eq!(primary.digest(), backup.digest());
    // The next session op after young's idle time finds it gone.
    let mut out = Vec::new();
    let mut call = Vec::new();
    let mut s = understudy_kv::Session::new(9);
    s.dispatch(&[b"US.CALL", b"young", b"1", b"INCR", b"k"], &mut call, &mut out);
    primary.apply(&mut FixedCtx { now_us: T0_US + 15_001_000, asks: 0 }, &call, &mut out);
    assert!(err(&out).starts_with("NOSESSION"));
    assert!(primary.sessions().is_empty());
}

fn chunks(kv: &Kv, max_bytes: usize) -> Vec<Vec<u8>> {
    let mut w = kv.snapshot();
    let mut out = Vec::new();
    loop {
        let mut chunk = Vec::new();
        if !w.next_chunk(&mut chunk, max_bytes) {
            return out;
        }
        out.push(chunk);
    }
}

fn restore(parts: &[Vec<u8>]) -> Result<Kv, understudy_core::SnapshotError> {
    let mut kv = Kv::new();
    for p in parts {
        kv.restore_chunk(p)?;
    }
    kv.restore_finish()?;
    Ok(kv)
}

/// A joiner gets the session table with the keyspace (state transfer).
#[test]
fn the_table_travels_in_the_snapshot() {
    let mut c = Client::new(1);
    run(&mut c, T0_US, &[b"SET", b"plain", b"v"]);
    for s in 0..150u32 {
        let id = format!("session-{s}");
        run(&mut c, T0_US, &[b"US.SESSION", id.as_bytes()]);
        for seq in 1..=3u32 {
            let seq = seq.to_string();
            run(&mut c, T0_US, &[b"US.CALL", id.as_bytes(), seq.as_bytes(), b"INCR", id.as_bytes()]);
        }
    }
    for max in [40, 1000, 1 << 20] {
        let parts = chunks(&c.kv, max);
        let mut joiner = Client::new(2);
        joiner.kv = restore(&parts).unwrap();
        assert_eq!(joiner.kv.digest(), c.kv.digest());
        assert_eq!(joiner.kv.sessions().len(), 150);
        assert_eq!(run(&mut joiner, T0_US, &[b"US.CALL", b"session-7", b"3", b"INCR", b"session-7"]), b":3\r\n");
        assert_eq!(run(&mut joiner, T0_US, &[b"US.CALL", b"session-7", b"4", b"INCR", b"session-7"]), b":4\r\n");
    }
    // Corruption in a session record is caught (record or digest check).
    let parts = chunks(&c.kv, 1 << 20);
    let last = parts.len() - 1;
    for pos in [1, 40, parts[last].len() / 2] {
        let mut bad = parts.clone();
        bad[last][pos] ^= 0x04;
        assert!(restore(&bad).is_err(), "flip at {pos} accepted");
    }
}
