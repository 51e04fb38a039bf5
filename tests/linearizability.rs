//! Client histories checked for linearizability under a nemesis (DESIGN
//! §7.3, issue 5): several clients do random GET/SET/INCR on a few keys of
//! the replicated KV pair, following the primary through the arbiter, while
//! a nemesis kills (SIGKILL), freezes (SIGSTOP/SIGCONT) and restarts nodes,
//! one machine at a time, waiting for an in-sync backup before the next
//! fault. Every op is recorded with its invocation and response times; the
//! history of each run must be linearizable (`understudy-lincheck`).
//!
//! An op whose connection broke or timed out is *unknown*: plain TCP
//! clients get at-least-once semantics across a failover, so it may or may
//! not have been applied, and the checker lets it take effect at any time
//! after its invocation, or never. A `-READONLY` answer is a failed op
//! (never applied).
//!
//! A run whose cluster does not recover from a fault (no primary with an
//! in-sync backup within 60 s) fails too; its history is still checked.
//!
//! Knobs: `UNDERSTUDY_LIN_RUNS` (default 3), `UNDERSTUDY_LIN_FAULTS` per run
//! (default 6: every kind once, in a seeded order, then again),
//! `UNDERSTUDY_LIN_CLIENTS` (default 4), `UNDERSTUDY_LIN_SEED` (replays the
//! nemesis' and the clients' choices, not the timing; printed), and
//! `UNDERSTUDY_LIN_NEMESIS=kill-primary,kill-backup` to use only the named
//! faults (kill-primary, kill-backup, freeze-primary, freeze-backup,
//! stutter). A violation prints the op no order explains and a window of
//! ops around it, and saves the whole history as text in the system's
//! temporary directory (`cargo run -p understudy-lincheck --example check`
//! checks it again).

mod common;
mod nemesis;

use std::time::{Duration, Instant};

use common::*;
use nemesis::*;
use understudy_lincheck::{check, CheckError, Recorder};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// What one run did.
struct RunReport {
    ops: usize,
    checked: usize,
    unknown: usize,
    violation: bool,
    stuck: bool,
    /// Not linearizable, or the cluster did not recover from a fault.
    failure: Option<String>,
}

/// Injects `faults` faults under load; an error if the cluster did not
/// recover from one.
fn faults_under_load(
    h: &mut Harness,
    rng: &mut Rng,
    load: &Clients,
    run: u64,
    faults: u64,
    kinds: &[Fault],
) -> Result<(), String> {
    let mut pair = heal(h, Duration::from_secs(60))?;
    load.wait_more(300, Duration::from_secs(60));
    // Every fault kind once before any repeats, in a seeded order.
    let mut order = kinds.to_vec();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for f in 0..faults {
        let fault = order[f as usize % order.len()];
        let what = inject(h, &pair, fault, rng).map_err(|e| format!("after {}: {e}", fault.name()))?;
        eprintln!("run {run}, fault {}: {what}", f + 1);
        // The pair serves again before the next fault.
        load.wait_more(200 + rng.below(400), Duration::from_secs(60));
        pair = heal(h, Duration::from_secs(60))?;
    }
    Ok(())
}

/// One fresh cluster, `faults` faults under load, one history checked
/// (also when the cluster did not recover: what was recorded until then).
fn run(seed: u64, run: u64, faults: u64, clients: u64, kinds: &[Fault]) -> RunReport {
    let mut rng = Rng::new(seed.wrapping_add(run));
    let mut h = Harness::new();
    h.start_node("n1", &[]);
    h.wait_primary("n1");
    h.start_node("n2", &[]);
    let rec = Recorder::new();
    let load = Clients::start(&h, clients, seed ^ run.wrapping_mul(0x1000_0001), &rec);
    let recovered = faults_under_load(&mut h, &mut rng, &load, run, faults, kinds);
    let anomalies = load.stop();
    assert!(anomalies.is_empty(), "replies no correct server sends: {anomalies:#?}");
    let history = rec.history();
    let mut failures = Vec::new();
    if let Err(e) = &recovered {
        failures.push(format!("run {run} (seed {seed}): the cluster did not recover {e}"));
    }
    let stuck = recovered.is_err();
    let mut report = RunReport { ops: history.len(), checked: 0, unknown: 0, violation: false, stuck, failure: None };
    match check(&history) {
        Ok(s) => {
            println!("run {run}: {s}");
            (report.checked, report.unknown) = (s.checked, s.unknown);
        }
        Err(e @ CheckError::NotLinearizable(_)) => {
            let path = std::env::temp_dir().join(format!("understudy-lin-seed{seed}-run{run}.history"));
            std::fs::write(&path, history.to_string()).expect("save the history");
            report.violation = true;
            failures.push(format!("run {run} (seed {seed}): {e}\nwhole history: {}", path.display()));
        }
        Err(e) => panic!("run {run} (seed {seed}): {e}"),
    }
    if !failures.is_empty() {
        h.dump_logs();
        let msg = failures.join("\n");
        eprintln!("{msg}");
        report.failure = Some(msg);
    }
    report
}

/// Histories recorded through kill -9, freezes and restarts of either
/// replica are linearizable: no acknowledged write is lost, no read is
/// stale, no write is applied twice (DESIGN §1 Promises 1, 2, 4; output
/// rule for reads, DESIGN §3).
#[test]
fn histories_under_a_nemesis_are_linearizable() {
    let _s = serial();
    let t0 = Instant::now();
    let runs = env("UNDERSTUDY_LIN_RUNS", 3);
    let faults = env("UNDERSTUDY_LIN_FAULTS", 6);
    let clients = env("UNDERSTUDY_LIN_CLIENTS", 4);
    let kinds = Fault::parse_list(std::env::var("UNDERSTUDY_LIN_NEMESIS").ok().as_deref());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let seed = env("UNDERSTUDY_LIN_SEED", now.as_secs() ^ u64::from(now.subsec_nanos()) ^ u64::from(std::process::id()));
    println!("linearizability: seed={seed} runs={runs} faults/run={faults} clients={clients}");
    let (mut ops, mut checked, mut unknown, mut violations, mut stuck) = (0, 0, 0, 0, 0);
    let mut failures = Vec::new();
    for r in 0..runs {
        let rep = run(seed, r, faults, clients, &kinds);
        ops += rep.ops;
        checked += rep.checked;
        unknown += rep.unknown;
        violations += usize::from(rep.violation);
        stuck += usize::from(rep.stuck);
        failures.extend(rep.failure);
    }
    // Straight to stderr, not through the test harness's capture: the
    // summary belongs in CI's log even when the test passes.
    let summary = format!(
        "linearizability: {runs} runs, {ops} ops recorded, {checked} checked ({unknown} unknown), {violations} violations, \
         {stuck} runs where the cluster did not recover; seed={seed}, {:.1?}\n",
        t0.elapsed()
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), summary.as_bytes());
    assert!(failures.is_empty(), "{} of {runs} runs failed:\n{}", failures.len(), failures.join("\n"));
}
