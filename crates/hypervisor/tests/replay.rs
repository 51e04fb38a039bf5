//! Determinism (DESIGN §7, step 2): a recorded run replays, on a fresh
//! engine and store, to the same outputs, exit code and final memory and
//! globals — checked after every event with `verify_memory`.

mod common;

use std::sync::{Arc, Mutex};

use common::{config, event_calls};
use understudy_hypervisor::{
    logfile::{record_with, LogWriter},
    replay_file, run, Console, Ending, Func, GuestConfig, LiveWorld, MemorySink, Mode, ReplayOptions, RunOptions, Stdin,
    VecSource,
};

const VERIFY: RunOptions = RunOptions { verify_memory: true };

/// Records `cfg` with `stdin`; returns the end, the events and stdout.
fn record(cfg: &GuestConfig, stdin: Stdin, opts: RunOptions) -> (understudy_hypervisor::GuestEnd, Vec<Vec<u8>>, Vec<u8>) {
    let sink = MemorySink::default();
    let out = Arc::new(Mutex::new(Vec::new()));
    let world =
        LiveWorld::new(sink.clone()).with_stdin(stdin).with_console(Console::Capture(out.clone()), Console::Capture(out.clone()));
    let end = run(cfg, Mode::Record(world), opts).expect("guest starts");
    let events = sink.events.lock().unwrap().clone();
    let stdout = out.lock().unwrap().clone();
    (end, events, stdout)
}

fn replay(cfg: &GuestConfig, events: Vec<Vec<u8>>) -> understudy_hypervisor::GuestEnd {
    run(cfg, Mode::Replay(Box::new(VecSource::new(events))), RunOptions::default()).expect("guest starts")
}

#[test]
fn clockrand_replays_exactly_with_state_checked_after_every_event() {
    let cfg = config("clockrand").with_args(["300"]);
    let (rec, events, stdout) = record(&cfg, Stdin::Empty, VERIFY);
    assert_eq!(rec.ending, Ending::Exited(0), "{}", String::from_utf8_lossy(&stdout));
    let text = String::from_utf8(stdout).unwrap();
    assert!(text.starts_with("clockrand: 300 iterations, digest "), "{text}");
    let calls = event_calls(&events);
    let count = |f: Func| calls.iter().filter(|c| c.1 == f).count();
    assert_eq!((count(Func::ClockTimeGet), count(Func::ClockResGet), count(Func::FdWrite)), (600, 1, 1), "{calls:?}");
    assert_eq!(calls.iter().filter(|c| c.1 == Func::RandomGet).count(), 300);
    // wasi-libc's _start returns without proc_exit when main returns 0.
    assert_eq!(calls.last().unwrap().1, Func::FdWrite);

    let rep = replay(&cfg, events.clone());
    assert_eq!(rep.ending, Ending::Exited(0));
    assert_eq!((rep.events, rep.calls), (rec.events, rec.calls));
    assert_eq!(rep.outputs_digest, rec.outputs_digest, "replay produced the same stdout");
    assert_eq!(rep.state_hash, rec.state_hash);

    // A second recording sees other clocks and random bytes.
    let (rec2, _, stdout2) = record(&cfg, Stdin::Empty, RunOptions::default());
    assert_ne!(rec2.outputs_digest, rec.outputs_digest, "{}", String::from_utf8_lossy(&stdout2));
}

#[test]
fn compress_of_stdin_replays_exactly() {
    let cfg = config("compress");
    let input: Vec<u8> = (0..200_000u32).map(|i| b"abcabcabd xyz "[(i * 7 % 13) as usize % 14]).collect();
    let (rec, events, stdout) = record(&cfg, Stdin::Bytes(input), VERIFY);
    let text = String::from_utf8(stdout).unwrap();
    assert_eq!(rec.ending, Ending::Exited(0), "{text}");
    assert!(text.starts_with("compress: 200000 bytes in"), "{text}");
    assert!(event_calls(&events).iter().any(|c| c.1 == Func::FdRead));
    let rep = replay(&cfg, events);
    assert_eq!(rep.ending, Ending::Exited(0));
    assert_eq!((rep.outputs_digest, rep.state_hash, rep.events), (rec.outputs_digest, rec.state_hash, rec.events));
}

#[test]
fn compress_generating_its_input_replays_from_a_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("compress.log");
    let cfg = config("compress").with_args(["300000"]).with_env("MODE", "test");
    let writer = LogWriter::create(&log, &cfg, true).unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let world = LiveWorld::new(writer.clone()).with_console(Console::Capture(out.clone()), Console::Discard);
    let rec = record_with(&cfg, &writer, world, VERIFY, &log).unwrap();
    assert_eq!(rec.ending, Ending::Exited(0));
    assert!(String::from_utf8_lossy(&out.lock().unwrap()).starts_with("compress: 300000 bytes in"));

    let report = replay_file(&cfg.module, &log, &ReplayOptions::default()).unwrap();
    assert!(report.is_faithful(), "{:?}", report.mismatches);
    assert_eq!(report.end.ending, Ending::Exited(0));
    assert_eq!(report.end.events, rec.events);
    assert_eq!(report.recorded.as_ref().unwrap().state_hash, rec.state_hash);
    assert_eq!(report.header.args, vec!["300000".to_string()]);

    // Another module: refused before running.
    let other = config("clockrand");
    let err = replay_file(&other.module, &log, &ReplayOptions::default()).unwrap_err();
    assert!(err.to_string().contains("module differs"), "{err}");
}

#[test]
fn interrupted_log_replays_to_its_end() {
    let cfg = config("clockrand").with_args(["100"]);
    let (rec, mut events, _) = record(&cfg, Stdin::Empty, VERIFY);
    assert_eq!(rec.ending, Ending::Exited(0));
    events.truncate(150);
    let rep = replay(&cfg, events);
    assert_eq!(rep.ending, Ending::EndOfLog);
    assert_eq!(rep.events, 150);
}

const CHILD_LOG: &str = "UNDERSTUDY_HYPERVISOR_CHILD_REPLAY_LOG";

/// The replay runs in another process than the recording (this test binary,
/// re-executed with the log's path in the environment).
#[test]
fn a_log_replays_in_a_separate_process() {
    if let Ok(log) = std::env::var(CHILD_LOG) {
        let report = replay_file(&config("clockrand").module, std::path::Path::new(&log), &ReplayOptions::default()).unwrap();
        assert!(report.is_faithful(), "{:?}", report.mismatches);
        println!("CHILD-REPLAYED events={} pid={}", report.end.events, std::process::id());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("clockrand.log");
    let cfg = config("clockrand").with_args(["200"]);
    let writer = LogWriter::create(&log, &cfg, true).unwrap();
    let world = LiveWorld::new(writer.clone()).with_console(Console::Discard, Console::Discard);
    let rec = record_with(&cfg, &writer, world, VERIFY, &log).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_log_replays_in_a_separate_process", "--nocapture", "--test-threads", "1"])
        .env(CHILD_LOG, &log)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("CHILD-REPLAYED events={}", rec.events)), "{stdout}");
    assert!(!stdout.contains(&format!("pid={}", std::process::id())));
}
