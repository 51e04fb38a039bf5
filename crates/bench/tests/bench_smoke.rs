//! `understudy-bench` runs end to end and writes what docs/PERFORMANCE.md
//! promises: a JSON document with the expected fields and an SVG plot. No
//! timing is asserted: the bench measures, the tests check correctness. The
//! bench, started by `cargo test`, builds the `understudy` binary it starts
//! nodes with first (in this test's profile, next to itself).

use std::path::Path;
use std::process::Command;

/// Runs `understudy-bench --quick --only ARGS… --out OUT`, which must
/// succeed; returns its standard output and the bench.json it wrote.
fn quick_bench(out: &Path, only: &[&str]) -> (String, serde_json::Value) {
    let run = Command::new(env!("CARGO_BIN_EXE_understudy-bench"))
        .args(["--quick", "--only"])
        .args(only)
        .arg("--out")
        .arg(out)
        .output()
        .expect("runs understudy-bench");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(run.status.success(), "bench failed:\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let doc = serde_json::from_slice(&std::fs::read(out.join("bench.json")).unwrap()).unwrap();
    (stdout, doc)
}

#[test]
fn quick_kv_bench_writes_json_and_svg_with_the_expected_fields() {
    let out = tempfile::tempdir().unwrap();
    let (stdout, doc) = quick_bench(out.path(), &["kv,cost"]);
    assert!(stdout.contains("Targets\n"), "{stdout}");
    assert_eq!(doc["meta"]["quick"], true);
    assert_eq!(doc["meta"]["failed_sections"].as_array().unwrap().len(), 0);
    let rows = doc["sections"]["kv"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 12, "SET and GET, -P 1 and -P 16, on three systems");
    for system in ["understudy pair", "understudy unprotected", "redis + async replica"] {
        assert_eq!(rows.iter().filter(|r| r["system"] == system).count(), 4, "{system}");
    }
    for r in rows {
        assert!(r["rps"]["median"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["p50_ms"]["median"].as_f64().is_some() && r["p99_ms"]["median"].as_f64().is_some(), "{r}");
        assert_eq!(r["rps"]["n"], 1);
    }
    for key in ["set_P1", "set_P16", "get_P1", "get_P16"] {
        let ratio = &doc["sections"]["kv"]["ratios"][key];
        assert!(ratio["pair_over_redis"]["median"].as_f64().is_some(), "{key}: {ratio}");
        assert!(ratio["pair_over_unprotected"]["median"].as_f64().is_some(), "{key}: {ratio}");
    }
    assert_eq!(doc["sections"]["kv"]["false_failovers"], 0);
    // Kernel work per operation: context switches from /proc always,
    // syscalls where `perf stat` may count them (it may not on every machine).
    let perf = Command::new("perf")
        .args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "--", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    for r in rows {
        assert!(r["ctx_switches_per_op"]["median"].as_f64().is_some(), "{r}");
        assert_eq!(r["syscalls_per_op"]["median"].as_f64().is_some_and(|v| v > 0.0), perf, "{r}");
        let has_backup = r["system"] != "understudy unprotected";
        assert_eq!(r["backup_ctx_switches_per_op"]["median"].as_f64().is_some(), has_backup, "{r}");
    }
    assert!(stdout.contains("kernel work per operation"), "{stdout}");
    let cost = doc["sections"]["cost"]["rows"].as_array().unwrap();
    let set = cost.iter().find(|r| r["test"] == "set" && r["pipeline"] == 1).unwrap();
    assert!(set["log_bytes_per_op"]["median"].as_f64().unwrap() > 0.0, "{set}");
    assert!((set["log_entries_per_op"]["median"].as_f64().unwrap() - 1.0).abs() < 0.01, "one entry per SET: {set}");
    let targets = doc["targets"].as_array().unwrap();
    assert!(targets.iter().any(|t| t["target"].as_str().unwrap().contains("Redis")), "{targets:?}");
    assert!(targets.iter().all(|t| t["goal"].is_string() && t.get("met").is_some()));

    let svg = std::fs::read_to_string(out.path().join("bench.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(std::fs::read_to_string(out.path().join("bench.txt")).unwrap().contains("understudy pair"));
}

/// The commands section measures ZADD and EVALSHA on the three systems,
/// and the pair logged each EVALSHA once (a refused one, NOSCRIPT, would
/// log nothing: the script really ran).
#[test]
fn quick_commands_bench_runs_zadd_and_evalsha_on_every_system() {
    let out = tempfile::tempdir().unwrap();
    let (_, doc) = quick_bench(out.path(), &["commands"]);
    let section = &doc["sections"]["commands"];
    let rows = section["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 12, "ZADD and EVALSHA, -P 1 and -P 16, on three systems: {section}");
    for r in rows {
        assert!(r["rps"]["median"].as_f64().unwrap() > 0.0, "{r}");
    }
    for r in rows.iter().filter(|r| r["system"] == "understudy pair") {
        let entries = r["log_entries_per_op"]["median"].as_f64().unwrap();
        assert!((entries - 1.0).abs() < 0.05, "one log entry per {}: {r}", r["test"]);
    }
    for key in ["ZADD -P 1", "EVALSHA -P 1", "ZADD -P 16", "EVALSHA -P 16"] {
        assert!(section["ratios"][key]["pair_over_redis"]["median"].as_f64().is_some(), "{key}: {section}");
    }
    assert_eq!(section["false_failovers"], 0);
    assert!(std::fs::read_to_string(out.path().join("bench.txt")).unwrap().contains("EVALSHA -P 16"));
}

/// The switchover section runs both kinds of planned switchover under its
/// load and reads every acknowledged write back.
#[test]
fn quick_switchover_bench_measures_both_kinds_and_loses_nothing() {
    let out = tempfile::tempdir().unwrap();
    let (stdout, doc) = quick_bench(out.path(), &["switchover", "--failover-trials", "2"]);
    assert_eq!(doc["meta"]["failed_sections"].as_array().unwrap().len(), 0, "{stdout}");
    let s = &doc["sections"]["switchover"];
    assert_eq!(s["command_pause_ms"]["n"], 1, "{s}");
    assert_eq!(s["sigterm_pause_ms"]["n"], 1, "{s}");
    assert!(s["writes_acknowledged"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["writes_lost"], 0, "{s}");
}

/// The failover section with a CPU hog beside the pair: both kinds of fault
/// are measured against a pair that holds a state, and every fault ends
/// with the backup serving.
#[test]
fn quick_failover_bench_measures_kills_and_freezes_beside_a_hog() {
    let out = tempfile::tempdir().unwrap();
    let (stdout, doc) = quick_bench(out.path(), &["failover", "--failover-trials", "2", "--cpu-hogs", "1"]);
    assert_eq!(doc["meta"]["failed_sections"].as_array().unwrap().len(), 0, "{stdout}");
    let s = &doc["sections"]["failover"];
    assert_eq!(s["kill9"]["trials"], 2, "{s}");
    assert_eq!(s["sigstop"]["trials"], 1, "{s}");
    assert_eq!(s["stuck"], 0, "{s}");
    assert_eq!((s["cpu_hogs"].as_u64(), s["state_mib"].as_u64()), (Some(1), Some(32)), "{s}");
    assert!(s["writes_acknowledged"].as_u64().unwrap() > 0, "{s}");
    assert!(stdout.contains("CPU hogs"), "{stdout}");
}

/// A missing or wrong `--understudy` fails at once, naming the flag.
#[test]
fn a_bad_understudy_binary_is_refused_naming_the_flag() {
    let out = tempfile::tempdir().unwrap();
    let missing = out.path().join("no-such-understudy");
    let run = Command::new(env!("CARGO_BIN_EXE_understudy-bench"))
        .args(["--quick", "--only", "kv", "--understudy"])
        .arg(&missing)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--understudy") && stderr.contains("cargo build --release"), "{stderr}");

    // Some other program is not taken for understudy.
    let run = Command::new(env!("CARGO_BIN_EXE_understudy-bench"))
        .args(["--quick", "--only", "kv", "--understudy", "/bin/true", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--understudy /bin/true is not the understudy binary"), "{stderr}");
    assert!(!out.path().join("bench.json").exists());
}
