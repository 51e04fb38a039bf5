//! The machine level from the command line: record a run, replay it in a
//! separate process and compare everything (with the state of memory and
//! globals checked after every event); bad guests get clear errors.

mod common;
use common::*;
use std::process::Command;

fn understudy(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Determinism (DESIGN §7.2): record, then replay in another process; every
/// event, the outputs, the exit code and the memory at every event match.
#[test]
fn recorded_runs_replay_faithfully_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    for (guest, args) in [("clockrand", vec!["2000"]), ("compress", vec!["200000"])] {
        let wasm = guest_path(guest);
        let log = dir.path().join(format!("{guest}.log"));
        let mut rec = vec!["wasm", wasm.to_str().unwrap(), "--record", log.to_str().unwrap(), "--verify-memory", "--"];
        rec.extend(args.iter());
        let r = understudy(&rec);
        assert!(r.status.success(), "{guest} record: {}", text(&r));
        let p = understudy(&["replay", wasm.to_str().unwrap(), log.to_str().unwrap()]);
        assert!(p.status.success(), "{guest} replay: {}", text(&p));
        assert!(text(&p).contains("faithful"), "{}", text(&p));
    }
    // Two recordings of the clock-and-randomness guest differ (it is
    // nondeterministic), yet each replays to itself.
    let wasm = guest_path("clockrand");
    let outs: Vec<String> = (0..2)
        .map(|i| {
            let log = dir.path().join(format!("again{i}.log"));
            let r = understudy(&["wasm", wasm.to_str().unwrap(), "--record", log.to_str().unwrap(), "--", "500"]);
            String::from_utf8_lossy(&r.stdout).into_owned()
        })
        .collect();
    assert_ne!(outs[0], outs[1], "clockrand saw the same clocks and randomness twice");
}

/// Replaying a log against another module is refused by its fingerprint,
/// and, forced, diverges at once with both views reported.
#[test]
fn a_log_replayed_against_another_module_is_refused_or_diverges() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("c.log");
    let clock = guest_path("clockrand");
    let r = understudy(&["wasm", clock.to_str().unwrap(), "--record", log.to_str().unwrap(), "--", "50"]);
    assert!(r.status.success(), "{}", text(&r));
    let other = guest_path("compress");
    let p = understudy(&["replay", other.to_str().unwrap(), log.to_str().unwrap()]);
    assert!(!p.status.success());
    assert!(text(&p).contains("differs") || text(&p).contains("fingerprint"), "{}", text(&p));
    let p = understudy(&["replay", other.to_str().unwrap(), log.to_str().unwrap(), "--ignore-fingerprint"]);
    assert_eq!(p.status.code(), Some(4), "{}", text(&p));
    assert!(text(&p).contains("Diverged") || text(&p).contains("MISMATCH"), "{}", text(&p));
}

#[test]
fn bad_guests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let garbage = write("garbage.wasm", b"this is not webassembly");
    let o = understudy(&["wasm", garbage.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).to_lowercase().contains("wasm") || text(&o).contains("module"), "{}", text(&o));

    let foreign = write(
        "foreign.wasm",
        &wat::parse_str(r#"(module (import "env" "foo" (func)) (memory (export "memory") 1) (func (export "_start")))"#).unwrap(),
    );
    let o = understudy(&["wasm", foreign.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).contains("env") && text(&o).contains("foo"), "the error names the import: {}", text(&o));

    let trap = write(
        "trap.wasm",
        &wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#).unwrap(),
    );
    let log = dir.path().join("trap.log");
    let o = understudy(&["wasm", trap.to_str().unwrap(), "--record", log.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(134), "a trap exits 134: {}", text(&o));
    assert!(text(&o).contains("trapped"), "{}", text(&o));
    let p = understudy(&["replay", trap.to_str().unwrap(), log.to_str().unwrap()]);
    assert!(p.status.success() && text(&p).contains("faithful"), "the trap replays identically: {}", text(&p));

    let grow = write(
        "grow.wasm",
        &wat::parse_str(
            r#"(module (memory (export "memory") 1)
                 (func (export "_start") (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
                   unreachable))"#,
        )
        .unwrap(),
    );
    let log = dir.path().join("grow.log");
    let o = understudy(&["wasm", grow.to_str().unwrap(), "--memory-bytes-max", "4194304", "--record", log.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(134), "{}", text(&o));
    let p = understudy(&["replay", grow.to_str().unwrap(), log.to_str().unwrap()]);
    assert!(p.status.success(), "memory exhaustion replays identically: {}", text(&p));
}

/// Checkpoints (issue 11): a server recorded with `--checkpoint-every`
/// while a client drives it, and a CPU-bound program reading stdin; each
/// log replays from its last checkpoint in another process (the guest is
/// resumed mid-run, its memory and globals checked against the recorder's)
/// to exactly the end that was recorded, as does a full replay.
#[test]
fn checkpointed_runs_replay_from_their_last_checkpoint_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    // A RESP server driven over its socket (port 0, read back).
    let wasm = guest_path("kvserver");
    let log = dir.path().join("kv.log");
    let gdir = dir.path().join("g");
    let mut child = Command::new(BIN)
        .args(["wasm", wasm.to_str().unwrap(), "--record", log.to_str().unwrap(), "--checkpoint-every", "50"])
        .args(["--guest-listen", "127.0.0.1:0", "--dir", gdir.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let l: understudy_node::listening::GuestListening = wait_listening(&mut child, &gdir).expect("the guest listens");
    let mut c = understudy_client::Conn::connect(&l.guest.to_string(), std::time::Duration::from_secs(30)).unwrap();
    for i in 0..300 {
        let (k, v) = (format!("k{i}"), format!("v{i}"));
        assert_eq!(c.call(&["SET", &k, &v]).unwrap(), understudy_client::Reply::Simple("OK".into()));
    }
    c.send_raw(b"SHUTDOWN\r\n").unwrap();
    assert!(child.wait().unwrap().success());

    // A CPU-bound program that reads its input from stdin.
    let zwasm = guest_path("compress");
    let zlog = dir.path().join("z.log");
    let input: Vec<u8> = (0..600_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let mut z = Command::new(BIN)
        .args(["wasm", zwasm.to_str().unwrap(), "--record", zlog.to_str().unwrap(), "--checkpoint-every", "3"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(z.stdin.as_mut().unwrap(), &input).unwrap();
    drop(z.stdin.take());
    assert!(z.wait().unwrap().success());

    for (wasm, log) in [(&wasm, &log), (&zwasm, &zlog)] {
        let from = understudy(&["replay", wasm.to_str().unwrap(), log.to_str().unwrap(), "--from-checkpoint"]);
        let t = text(&from);
        assert!(from.status.success() && t.contains("faithful"), "{}: {t}", log.display());
        let at: u64 = t
            .split("resumed from the checkpoint at event ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("the replay says where it resumed: {t}"));
        assert!(at > 0, "{t}");
        let full = understudy(&["replay", wasm.to_str().unwrap(), log.to_str().unwrap()]);
        assert!(full.status.success() && text(&full).contains("faithful"), "{}", text(&full));
    }
    // A log without checkpoints says so and how to get them.
    let plain = dir.path().join("plain.log");
    let r = understudy(&["wasm", guest_path("clockrand").to_str().unwrap(), "--record", plain.to_str().unwrap(), "--", "10"]);
    assert!(r.status.success());
    let p = understudy(&["replay", guest_path("clockrand").to_str().unwrap(), plain.to_str().unwrap(), "--from-checkpoint"]);
    assert!(!p.status.success() && text(&p).contains("--checkpoint-every"), "{}", text(&p));
}

/// `replay --show-output` shows what the guest wrote to stdout and stderr,
/// as replayed (without the flag, only the digest): a guest that writes
/// known text to each, and a C guest whose replayed stdout is exactly what
/// the recording printed.
#[test]
fn replay_shows_the_guests_own_output_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let guest = dir.path().join("hello.wasm");
    let wasm = wat::parse_str(
        r#"(module
             (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
             (memory (export "memory") 1)
             (data (i32.const 16) "hello from the replayed guest\n")
             (data (i32.const 64) "and its stderr\n")
             (func (export "_start")
               (i32.store (i32.const 0) (i32.const 16))
               (i32.store (i32.const 4) (i32.const 30))
               (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
               (i32.store (i32.const 0) (i32.const 64))
               (i32.store (i32.const 4) (i32.const 15))
               (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
    )
    .unwrap();
    std::fs::write(&guest, wasm).unwrap();
    let log = dir.path().join("hello.log");
    let (g, l) = (guest.to_str().unwrap(), log.to_str().unwrap());
    let r = understudy(&["wasm", g, "--record", l]);
    assert!(r.status.success(), "{}", text(&r));
    assert_eq!(String::from_utf8_lossy(&r.stdout), "hello from the replayed guest\n");

    let plain = understudy(&["replay", g, l]);
    assert!(plain.status.success() && text(&plain).contains("faithful"), "{}", text(&plain));
    assert!(!text(&plain).contains("hello from"), "without --show-output only the digest: {}", text(&plain));

    let shown = understudy(&["replay", g, l, "--show-output"]);
    let (out, err) = (String::from_utf8_lossy(&shown.stdout), String::from_utf8_lossy(&shown.stderr));
    assert!(shown.status.success() && out.contains("faithful"), "{}", text(&shown));
    assert!(out.starts_with("hello from the replayed guest\n"), "the guest's stdout, then the summary: {out}");
    assert_eq!(err, "and its stderr\n", "the guest's stderr on stderr");

    // A C guest: the replay shows exactly what the recording printed.
    let clock = guest_path("clockrand");
    let clog = dir.path().join("clock.log");
    let r = understudy(&["wasm", clock.to_str().unwrap(), "--record", clog.to_str().unwrap(), "--", "300"]);
    assert!(r.status.success(), "{}", text(&r));
    let recorded = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(!recorded.is_empty());
    let p = understudy(&["replay", clock.to_str().unwrap(), clog.to_str().unwrap(), "--show-output"]);
    let out = String::from_utf8_lossy(&p.stdout);
    assert!(p.status.success() && out.contains("faithful"), "{}", text(&p));
    assert!(out.starts_with(&recorded), "replayed:\n{out}\nrecorded:\n{recorded}");
}
