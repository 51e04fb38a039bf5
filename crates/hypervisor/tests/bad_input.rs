//! Bad input (DESIGN §7, step 5): malformed modules and unsupported imports
//! are clear errors; traps, memory exhaustion and fuel exhaustion are guest
//! endings that come out identically in record and replay.

mod common;

use common::{capture_log, config, wat, LOG_LINES};
use understudy_hypervisor::{
    run, Console, Ending, Fuel, GuestConfig, GuestEnd, HypervisorError, LiveWorld, MemorySink, Mode, RunOptions, TrapKind,
    VecSource,
};

/// Records, replays, and checks both ends are identical.
fn record_and_replay(cfg: &GuestConfig) -> GuestEnd {
    let sink = MemorySink::default();
    let world = LiveWorld::new(sink.clone()).with_console(Console::Discard, Console::Discard);
    let rec = run(cfg, Mode::Record(world), RunOptions { verify_memory: true }).unwrap();
    let events = sink.events.lock().unwrap().clone();
    let rep = run(cfg, Mode::Replay(Box::new(VecSource::new(events))), RunOptions::default()).unwrap();
    assert_eq!(rep.ending, rec.ending);
    assert_eq!((rep.state_hash, rep.outputs_digest), (rec.state_hash, rec.outputs_digest));
    assert_eq!(
        (rep.calls, rep.events, rep.memory_limit_hits, rep.fuel_consumed),
        (rec.calls, rec.events, rec.memory_limit_hits, rec.fuel_consumed)
    );
    rec
}

fn start_error(bytes: Vec<u8>) -> HypervisorError {
    let world = LiveWorld::new(MemorySink::default());
    run(&GuestConfig::new(bytes), Mode::Record(world), RunOptions::default()).unwrap_err()
}

#[test]
fn malformed_modules_are_clear_errors() {
    let e = start_error(b"definitely not wasm".to_vec());
    assert!(matches!(e, HypervisorError::MalformedModule(_)) && e.to_string().contains("bad magic"), "{e}");
    let mut truncated = config("kvserver").module.to_vec();
    truncated.truncate(truncated.len() / 2);
    let e = start_error(truncated);
    assert!(matches!(e, HypervisorError::MalformedModule(_)), "{e}");
    let e = start_error(b"\0asm\x0d\0\x01\0".to_vec());
    assert!(e.to_string().contains("components are not supported"), "{e}");
    let e = start_error(wat(r#"(module (memory (export "memory") 1) (func (export "main")))"#));
    assert!(matches!(e, HypervisorError::NoStart), "{e}");
    let e = start_error(wat(r#"(module (func (export "_start")))"#));
    assert!(matches!(e, HypervisorError::NoMemory), "{e}");
}

#[test]
fn an_import_outside_wasi_is_refused_by_name() {
    let e = start_error(wat(
        r#"(module (import "env" "foo" (func)) (memory (export "memory") 1) (func (export "_start") (call 0)))"#,
    ));
    assert!(matches!(&e, HypervisorError::UnsupportedImport { module, name, .. } if module == "env" && name == "foo"), "{e:?}");
    assert!(e.to_string().contains("env::foo"), "{e}");
    let e = start_error(wat(r#"(module (import "wasi_snapshot_preview1" "memory" (memory 1)) (func (export "_start")))"#));
    assert!(e.to_string().contains("wasi_snapshot_preview1::memory (memory)"), "{e}");
    // A known function with the wrong signature: wasmtime names it.
    let e = start_error(wat(
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32))) (memory (export "memory") 1) (func (export "_start")))"#,
    ));
    assert!(matches!(e, HypervisorError::Instantiate(_)) && e.to_string().contains("fd_write"), "{e}");
}

#[test]
fn a_trap_is_reported_identically_in_record_and_replay() {
    let cfg = GuestConfig::new(wat(r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 16) "before the trap\n")
      (func (export "_start")
        (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 16))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        unreachable))"#));
    let end = record_and_replay(&cfg);
    match &end.ending {
        Ending::Trapped { kind: TrapKind::Unreachable, message } => assert!(message.contains("unreachable"), "{message}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!((end.events, end.output_bytes), (1, 16));
}

#[test]
fn memory_exhaustion_is_reported_identically_in_record_and_replay() {
    // Grows one page at a time until memory.grow fails, then aborts.
    let mut cfg = GuestConfig::new(wat(r#"(module
      (memory (export "memory") 1)
      (func (export "_start")
        (loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
        (i32.store (i32.const 0) (memory.size))
        unreachable))"#));
    cfg.memory_bytes_max = 4 << 20;
    let end = record_and_replay(&cfg);
    assert!(matches!(end.ending, Ending::Trapped { kind: TrapKind::Unreachable, .. }), "{:?}", end.ending);
    assert_eq!(end.memory_limit_hits, 1);

    // A C guest whose input needs more memory than allowed.
    let mut cfg = config("compress").with_args(["8000000"]);
    cfg.memory_bytes_max = 8 << 20;
    let end = record_and_replay(&cfg);
    assert!(end.memory_limit_hits >= 1, "{end:?}");
    assert!(matches!(end.ending, Ending::Trapped { .. }), "{:?}", end.ending);
}

#[test]
fn fuel_exhaustion_is_reported_identically_in_record_and_replay() {
    let mut cfg = config("compress").with_args(["200000"]);
    cfg.fuel = Fuel { enabled: true, limit: Some(2_000_000) };
    let end = record_and_replay(&cfg);
    assert!(matches!(end.ending, Ending::Trapped { kind: TrapKind::OutOfFuel, .. }), "{:?}", end.ending);
    assert_eq!(end.fuel_consumed, Some(2_000_000));
}

#[test]
fn an_unsupported_wasi_function_gets_enosys_and_is_logged_once() {
    capture_log();
    let cfg = GuestConfig::new(wat(r#"(module
      (import "wasi_snapshot_preview1" "proc_raise" (func $sync (param i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (drop (call $sync (i32.const 1)))
        (call $exit (call $sync (i32.const 1)))))"#));
    let end = record_and_replay(&cfg);
    assert_eq!(end.ending, Ending::Exited(52), "ENOSYS is 52");
    assert_eq!(end.calls, 3);
    let lines = LOG_LINES.lock().unwrap();
    let n = lines.iter().filter(|l| l.contains("proc_raise")).count();
    // Logged once per run: once recording, once replaying.
    assert_eq!(n, 2, "{lines:?}");
}
