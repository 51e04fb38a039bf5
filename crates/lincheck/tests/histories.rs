//! Hand-written histories, linearizable and not, with the anomalies a
//! broken replication protocol produces (stale read, lost write, an INCR
//! applied twice, a value nobody wrote), with and without ops whose outcome
//! the client could not know; then generated histories of a real atomic
//! register, for correctness at scale and speed.

use understudy_lincheck::{check, check_with, CheckError, History, Limits, Op, OpKind, Outcome, Violation};

fn h(text: &str) -> History {
    text.parse().unwrap_or_else(|e| panic!("bad test history: {e}"))
}

fn ok(text: &str) {
    if let Err(e) = check(&h(text)) {
        panic!("expected linearizable, got:\n{e}");
    }
}

fn bad(text: &str) -> Violation {
    match check(&h(text)) {
        Err(CheckError::NotLinearizable(v)) => *v,
        other => panic!("expected a violation, got {other:?}"),
    }
}

#[test]
fn sequential_register_and_counter() {
    ok("1 x get 0 1 ok nil
        1 x set 5 2 3 ok
        1 x get 4 5 ok 5
        1 x incr 6 7 ok 6
        2 x incr 8 9 ok 7
        2 x get 10 11 ok 7");
}

#[test]
fn concurrent_ops_may_take_effect_in_either_order() {
    // The read overlaps the write: it may see the old or the new value,
    // but once someone saw the new one, nobody later sees the old one.
    ok("1 x set 1 0 100 ok
        2 x get 10 20 ok nil
        3 x get 30 40 ok 1
        2 x get 50 60 ok 1");
    let v = bad("1 x set 1 0 100 ok
                 3 x get 30 40 ok 1
                 2 x get 50 60 ok nil");
    assert_eq!(v.op.kind, OpKind::Get);
    assert_eq!(v.op.outcome, Outcome::Ok(None));
}

#[test]
fn stale_read_is_caught_and_the_window_shows_the_overwrite() {
    let v = bad("1 x set 1 0 10 ok
                 2 x set 2 20 30 ok
                 3 x get 40 50 ok 1");
    assert_eq!(v.key, "x");
    assert_eq!(v.op.outcome, Outcome::Ok(Some(1)));
    assert_eq!(v.states, vec![Some(2)]);
    let kinds: Vec<OpKind> = v.window.iter().map(|o| o.kind).collect();
    assert_eq!(kinds, vec![OpKind::Set(1), OpKind::Set(2), OpKind::Get]);
    let text = v.to_string();
    assert!(text.contains("not linearizable") && text.contains("GET -> 1") && text.contains("could only hold 2"), "{text}");
}

#[test]
fn lost_acknowledged_write_is_caught() {
    // Promise 1: a write the client saw acknowledged is never lost.
    let v = bad("1 k set 7 0 10 ok
                 2 k get 20 30 ok nil");
    assert_eq!(v.states, vec![Some(7)]);
}

#[test]
fn double_applied_incr_is_caught() {
    bad("1 c incr 0 10 ok 1
         1 c incr 20 30 ok 3");
    // Unless an INCR whose reply was lost explains the gap...
    ok("1 c incr 0 10 ok 1
        2 c incr 12 - unknown
        1 c incr 20 30 ok 3");
    // ...which it can only do once.
    bad("1 c incr 0 10 ok 1
         2 c incr 12 - unknown
         1 c incr 20 30 ok 3
         1 c incr 40 50 ok 5");
}

#[test]
fn read_of_a_value_never_written_is_caught() {
    let v = bad("1 x set 1 0 10 ok
                 2 x get 20 30 ok 42");
    assert_eq!(v.op.outcome, Outcome::Ok(Some(42)));
}

#[test]
fn failed_write_never_took_effect() {
    // -READONLY: the backup refused it, so nobody may read it.
    ok("1 x set 5 0 10 fail
        2 x get 20 30 ok nil");
    bad("1 x set 5 0 10 fail
         2 x get 20 30 ok 5");
}

#[test]
fn unknown_write_may_take_effect_late_or_never() {
    // Applied, and seen long after the client gave up on it.
    ok("1 x set 1 0 - unknown
        2 x get 1000 1010 ok 1");
    // Never applied.
    ok("1 x set 1 0 - unknown
        2 x get 1000 1010 ok nil");
    // Not applied yet, then applied: fine. Applied, then gone: not fine.
    ok("1 x set 1 0 - unknown
        2 x get 10 20 ok nil
        2 x get 30 40 ok 1");
    bad("1 x set 1 0 - unknown
         2 x get 10 20 ok 1
         2 x get 30 40 ok nil");
    // Never before its invocation.
    bad("2 x get 10 20 ok 1
         1 x set 1 30 - unknown");
}

#[test]
fn unknown_write_between_known_ones() {
    ok("1 x set 1 0 10 ok
        2 x set 2 20 - unknown
        3 x get 30 40 ok 1
        3 x get 50 60 ok 2
        1 x set 3 70 80 ok
        3 x get 90 95 ok 3");
    // It may land after a later write, overwriting it (at-least-once
    // retry after a failover looks exactly like this).
    ok("1 x set 1 0 10 ok
        2 x set 2 20 - unknown
        1 x set 3 30 40 ok
        3 x get 50 60 ok 2");
    bad("1 x set 1 0 10 ok
         2 x set 2 20 - unknown
         3 x get 30 40 ok 2
         1 x set 3 50 60 ok
         3 x get 70 80 ok 2");
}

#[test]
fn unknown_reads_constrain_nothing() {
    ok("1 x set 1 0 10 ok
        2 x get 5 - unknown
        2 x get 20 30 ok 1");
}

#[test]
fn keys_are_checked_separately_and_the_bad_one_is_named() {
    let v = bad("1 a set 1 0 10 ok
                 1 b set 1 0 10 ok
                 2 a get 20 30 ok 1
                 2 b get 20 30 ok nil");
    assert_eq!(v.key, "b");
}

#[test]
fn many_unknown_incrs_do_not_explode() {
    // 40 INCRs in flight whose replies were lost, then reads: any count
    // from 0 to 40 may have been applied.
    let mut text = String::new();
    for c in 0..40 {
        text.push_str(&format!("{c} n incr {c} - unknown\n"));
    }
    text.push_str("100 n get 1000 1010 ok 17\n100 n get 1020 1030 ok 40\n");
    let s = check(&h(&text)).unwrap();
    assert!(s.configurations < 10_000, "{s}");
    text.push_str("100 n get 1040 1050 ok 41\n");
    bad(&text);
}

#[test]
fn budget_exhaustion_is_inconclusive_not_a_verdict() {
    let mut text = String::new();
    for c in 0..20 {
        text.push_str(&format!("{c} x set {c} {c} 1000 ok\n"));
    }
    text.push_str("99 x get 2000 2010 ok 7\n");
    match check_with(&h(&text), &Limits { configurations_max: 10 }) {
        Err(CheckError::Inconclusive { key, .. }) => assert_eq!(key, "x"),
        other => panic!("expected inconclusive, got {other:?}"),
    }
    check(&h(&text)).unwrap();
}

#[test]
fn malformed_ops_are_refused() {
    let mut hist = History::new();
    hist.push(Op { client: 1, key: "x".into(), kind: OpKind::Get, invoke_ns: 10, complete_ns: None, outcome: Outcome::Ok(None) });
    assert!(matches!(check(&hist), Err(CheckError::Malformed { index: 0, .. })));
}

// ---------------------------------------------------------------------------
// Generated histories of a real atomic register.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `clients` clients each doing `per_client` ops on `keys` keys of one
/// atomic register per key: every op takes effect at an instant inside its
/// interval. A fraction of writes lose their reply (unknown): of those,
/// half took effect, half never did.
fn atomic_history(seed: u64, clients: u64, per_client: u64, keys: u64, unknown_per_mille: u64) -> History {
    let mut rng = Rng(seed * 2 + 1);
    struct Planned {
        op: Op,
        at: u64,
        applied: bool,
    }
    let mut planned = Vec::new();
    for c in 0..clients {
        let mut t = rng.below(100);
        for i in 0..per_client {
            let key = format!("k{}", rng.below(keys));
            let kind = match rng.below(3) {
                0 => OpKind::Get,
                1 => OpKind::Set(((c * 1_000_000 + i) << 8) as i64),
                _ => OpKind::Incr,
            };
            let invoke = t;
            let at = invoke + rng.below(50);
            let complete = at + rng.below(50);
            let unknown = kind != OpKind::Get && rng.below(1000) < unknown_per_mille;
            let applied = !unknown || rng.below(2) == 0;
            let outcome = if unknown { Outcome::Unknown } else { Outcome::Ok(None) };
            let complete_ns = if unknown { None } else { Some(complete) };
            planned.push(Planned { op: Op { client: c, key, kind, invoke_ns: invoke, complete_ns, outcome }, at, applied });
            t = complete + 1 + rng.below(20);
        }
    }
    planned.sort_by_key(|p| p.at);
    let mut regs = std::collections::HashMap::<String, Option<i64>>::new();
    let mut hist = History::new();
    for mut p in planned {
        let reg = regs.entry(p.op.key.clone()).or_default();
        if p.applied {
            match p.op.kind {
                OpKind::Get => p.op.outcome = Outcome::Ok(*reg),
                OpKind::Set(v) => *reg = Some(v),
                OpKind::Incr => {
                    *reg = Some(reg.unwrap_or(0) + 1);
                    if p.op.outcome != Outcome::Unknown {
                        p.op.outcome = Outcome::Ok(*reg);
                    }
                }
            }
        }
        hist.push(p.op);
    }
    hist
}

#[test]
fn generated_atomic_histories_are_linearizable() {
    for seed in 1..=40 {
        let hist = atomic_history(seed, 5, 60, 2, 30);
        if let Err(e) = check(&hist) {
            panic!("seed {seed}: a real atomic register was judged not linearizable:\n{e}\n{hist}");
        }
    }
}

#[test]
fn corrupting_one_read_of_a_generated_history_is_caught() {
    for seed in 1..=40 {
        let mut ops = atomic_history(seed, 5, 60, 2, 30).ops().to_vec();
        let reads: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].kind == OpKind::Get).collect();
        let i = reads[(seed as usize * 7) % reads.len()];
        ops[i].outcome = Outcome::Ok(Some(-1)); // nobody writes negative values
        match check(&History::from(ops.clone())) {
            Err(CheckError::NotLinearizable(v)) => assert_eq!(v.op.outcome, Outcome::Ok(Some(-1)), "seed {seed}"),
            other => panic!("seed {seed}: corrupted read not caught: {other:?}"),
        }
    }
}

/// The size of the multi-process test's histories and more: 8 clients,
/// 4,000 ops on 2 keys, 2% of writes unknown.
#[test]
fn thousands_of_ops_per_key_check_quickly() {
    let hist = atomic_history(99, 8, 500, 2, 20);
    let t0 = std::time::Instant::now();
    let s = check(&hist).unwrap_or_else(|e| panic!("{e}"));
    println!("{s}");
    assert_eq!(s.ops, 4000);
    assert!(t0.elapsed() < std::time::Duration::from_secs(20), "took {:?}: {s}", t0.elapsed());
}

// ---------------------------------------------------------------------------
// Against brute force: every order of every subset of the unknown ops.

/// The register/counter, written out again independently of the checker.
fn apply(reg: Option<i64>, op: &Op) -> Option<Option<i64>> {
    match (op.kind, op.outcome) {
        (OpKind::Get, Outcome::Ok(v)) => (v == reg).then_some(reg),
        (OpKind::Get, _) => Some(reg),
        (OpKind::Set(v), _) => Some(Some(v)),
        (OpKind::Incr, Outcome::Ok(v)) => (v == Some(reg.unwrap_or(0) + 1)).then_some(v),
        (OpKind::Incr, _) => Some(Some(reg.unwrap_or(0) + 1)),
    }
}

fn brute_force(ops: &[Op]) -> bool {
    let known: Vec<&Op> = ops.iter().filter(|o| matches!(o.outcome, Outcome::Ok(_))).collect();
    let unknown: Vec<&Op> = ops.iter().filter(|o| o.outcome == Outcome::Unknown).collect();
    let end = |o: &Op| if o.outcome == Outcome::Unknown { u64::MAX } else { o.complete_ns.unwrap() };
    fn dfs(left: &mut Vec<&Op>, reg: Option<i64>, end: &dyn Fn(&Op) -> u64) -> bool {
        if left.is_empty() {
            return true;
        }
        for i in 0..left.len() {
            let o = left[i];
            // Real time: nothing left may have completed before o began.
            if left.iter().any(|p| end(p) < o.invoke_ns) {
                continue;
            }
            if let Some(next) = apply(reg, o) {
                let taken = left.remove(i);
                let found = dfs(left, next, end);
                left.insert(i, taken);
                if found {
                    return true;
                }
            }
        }
        false
    }
    (0..1u32 << unknown.len()).any(|mask| {
        let mut left: Vec<&Op> = known.clone();
        left.extend(unknown.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, o)| *o));
        dfs(&mut left, None, &end)
    })
}

#[test]
fn agrees_with_brute_force_on_small_histories() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let (mut yes, mut no) = (0, 0);
    for round in 0..20_000 {
        let n = 2 + rng.below(6);
        let mut ops = Vec::new();
        for c in 0..n {
            let kind = match rng.below(3) {
                0 => OpKind::Get,
                1 => OpKind::Set(1 + rng.below(3) as i64),
                _ => OpKind::Incr,
            };
            let invoke_ns = rng.below(30);
            let complete_ns = invoke_ns + rng.below(15);
            let outcome = match (rng.below(10), kind) {
                (0 | 2, _) => Outcome::Unknown,
                (1, _) => Outcome::Fail,
                (_, OpKind::Set(_)) => Outcome::Ok(None),
                (_, OpKind::Get) => Outcome::Ok([None, Some(1), Some(2), Some(3), Some(4)][rng.below(5) as usize]),
                (_, OpKind::Incr) => Outcome::Ok(Some(1 + rng.below(5) as i64)),
            };
            let complete_ns = if outcome == Outcome::Unknown { None } else { Some(complete_ns) };
            ops.push(Op { client: c, key: "x".into(), kind, invoke_ns, complete_ns, outcome });
        }
        let expected = brute_force(&ops);
        let hist = History::from(ops);
        let got = match check(&hist) {
            Ok(_) => true,
            Err(CheckError::NotLinearizable(_)) => false,
            Err(e) => panic!("round {round}: {e}"),
        };
        assert_eq!(got, expected, "round {round}: checker says {got}, brute force {expected} for\n{hist}");
        if expected {
            yes += 1;
        } else {
            no += 1;
        }
    }
    assert!(yes > 2_000 && no > 2_000, "both verdicts exercised: {yes} linearizable, {no} not");
}
