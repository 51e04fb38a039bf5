//! Injected nondeterminism is caught at the first call that differs, with
//! both views reported (DESIGN §1, promise 3).

mod common;

use std::sync::{Arc, Mutex};

use common::{config, event_calls, wat};
use understudy_hypervisor::event::{encode, push_state};
use understudy_hypervisor::{
    logfile::{record_with, LogWriter},
    replay_file, run, Console, DivergenceKind, Ending, EventDecoder, Func, GuestConfig, GuestEnd, HypervisorError, LiveWorld,
    MemorySink, Mode, ReplayOptions, RunOptions, VecSource,
};

fn record(cfg: &GuestConfig, opts: RunOptions) -> (GuestEnd, Vec<Vec<u8>>) {
    let sink = MemorySink::default();
    let world = LiveWorld::new(sink.clone()).with_console(Console::Discard, Console::Discard);
    let end = run(cfg, Mode::Record(world), opts).unwrap();
    let events = sink.events.lock().unwrap().clone();
    (end, events)
}

fn replay(cfg: &GuestConfig, events: Vec<Vec<u8>>) -> GuestEnd {
    run(cfg, Mode::Replay(Box::new(VecSource::new(events))), RunOptions::default()).unwrap()
}

fn divergence(end: &GuestEnd) -> &understudy_hypervisor::Divergence {
    match &end.ending {
        Ending::Diverged(d) => d,
        other => panic!("expected a divergence, got {other:?}"),
    }
}

/// Flips one byte of the random bytes recorded in event `i`.
fn tamper_random(events: &mut [Vec<u8>], i: usize) {
    let mut d = EventDecoder::default();
    for e in &events[..i] {
        d.decode_any(e).unwrap();
    }
    let mut s = d.decode_any(&events[i]).unwrap();
    assert_eq!(s.header.func, Func::RandomGet);
    s.outcome.bytes[3] ^= 0x40;
    let mut out = Vec::new();
    encode(&mut out, &s.header, &s.outcome, 0, &mut [0; 4]);
    if let Some(st) = s.state {
        push_state(&mut out, st);
    }
    events[i] = out;
}

#[test]
fn tampered_random_bytes_are_caught_right_after_the_call_in_verify_mode() {
    let cfg = config("clockrand").with_args(["50"]);
    let (rec, mut events) = record(&cfg, RunOptions { verify_memory: true });
    assert_eq!(rec.ending, Ending::Exited(0));
    let calls = event_calls(&events);
    let i = calls.iter().enumerate().filter(|(_, c)| c.1 == Func::RandomGet).nth(20).unwrap().0;
    tamper_random(&mut events, i);
    let end = replay(&cfg, events);
    let d = divergence(&end);
    assert_eq!((d.kind, d.call(), d.replayed.func), (DivergenceKind::State, calls[i].0, Func::RandomGet), "{d}");
    assert_eq!(d.recorded.as_ref().unwrap().call, calls[i].0);
}

#[test]
fn tampered_random_bytes_are_caught_at_the_first_differing_output() {
    let cfg = config("clockrand").with_args(["50"]);
    let (_, mut events) = record(&cfg, RunOptions::default());
    let calls = event_calls(&events);
    let i = calls.iter().position(|c| c.1 == Func::RandomGet).unwrap();
    tamper_random(&mut events, i);
    let end = replay(&cfg, events);
    let d = divergence(&end);
    // Nothing the guest passes to a host call depends on the random bytes
    // until it prints its digest.
    let write = calls.iter().find(|c| c.1 == Func::FdWrite).unwrap().0;
    assert_eq!((d.kind, d.call(), d.replayed.func), (DivergenceKind::Arguments, write, Func::FdWrite), "{d}");
    assert!(d.to_string().contains("fd_write"), "{d}");
}

#[test]
fn a_different_argument_diverges_at_the_first_differing_call() {
    let cfg = config("compress").with_args(["20000"]);
    let (rec, events) = record(&cfg, RunOptions::default());
    assert_eq!(rec.ending, Ending::Exited(0));
    let write = event_calls(&events).iter().find(|c| c.1 == Func::FdWrite).unwrap().0;
    let end = replay(&cfg.clone().with_args(["20001"]), events);
    let d = divergence(&end);
    assert_eq!((d.kind, d.call(), d.replayed.func), (DivergenceKind::Arguments, write, Func::FdWrite), "{d}");
}

#[test]
fn a_log_file_replayed_with_other_args_is_refused_or_diverges() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("c.log");
    let cfg = config("compress").with_args(["20000"]);
    let w = LogWriter::create(&log, &cfg, false).unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let world = LiveWorld::new(w.clone()).with_console(Console::Capture(out), Console::Discard);
    record_with(&cfg, &w, world, RunOptions::default(), &log).unwrap();
    let opts = ReplayOptions { args: Some(vec!["20001".into()]), ..Default::default() };
    match replay_file(&cfg.module, &log, &opts) {
        Err(HypervisorError::FingerprintMismatch { .. }) => {}
        other => panic!("expected a fingerprint mismatch, got {other:?}"),
    }
    let report = replay_file(&cfg.module, &log, &ReplayOptions { ignore_fingerprint: true, ..opts }).unwrap();
    assert!(!report.is_faithful());
    assert_eq!(divergence(&report.end).replayed.func, Func::FdWrite);
}

const BRANCHY: &str = r#"(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $es (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $rand (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $es (i32.const 0) (i32.const 4)))
    (if (i32.load (i32.const 0))
      (then (drop (call $yield)))
      (else (drop (call $rand (i32.const 16) (i32.const 8)))))
    (drop (call $clock (i32.const 1) (i64.const 0) (i32.const 32)))))"#;

#[test]
fn a_different_call_sequence_is_caught_at_its_first_call_both_ways() {
    let plain = GuestConfig::new(wat(BRANCHY));
    let with_env = plain.clone().with_env("K", "V");

    // Recorded: 1 environ_sizes_get, 2 random_get, 3 clock_time_get.
    // Replayed with env: 2 is sched_yield, which needs no event, but one is due.
    let (_, events) = record(&plain, RunOptions::default());
    assert_eq!(
        event_calls(&events).iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(),
        [(2, Func::RandomGet), (3, Func::ClockTimeGet)]
    );
    let d = divergence(&replay(&with_env, events)).clone();
    assert_eq!((d.kind, d.call(), d.replayed.func), (DivergenceKind::Function, 2, Func::SchedYield), "{d}");
    assert_eq!(d.recorded.as_ref().map(|r| (r.call, r.func)), Some((2, Func::RandomGet)));

    // Recorded with env: 2 sched_yield (no event), 3 clock. Replayed without:
    // 2 is random_get, but the next event belongs to call 3.
    let (_, events) = record(&with_env, RunOptions::default());
    let d = divergence(&replay(&plain, events)).clone();
    assert_eq!((d.kind, d.call(), d.replayed.func), (DivergenceKind::Function, 2, Func::RandomGet), "{d}");
    assert_eq!(d.recorded.as_ref().map(|r| (r.call, r.func)), Some((3, Func::ClockTimeGet)));
}
