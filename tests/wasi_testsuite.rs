//! The official WASI preview1 test suite (`../shared/wasi-testsuite`, 72
//! prebuilt tests from C, Rust and AssemblyScript) against the machine
//! level: each test runs recorded (`understudy wasm --record`), on a fresh
//! copy of its directory mapped as the guest's `/`, must end as its spec
//! says (exit code, stdout), and its log must replay faithfully
//! (`understudy replay`) on another fresh copy — the replay performs every
//! file operation again and checks each result against the recording.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn suite() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/wasi-testsuite/tests");
    assert!(p.is_dir(), "the WASI test suite is not at {} (the project workspace's shared/ folder)", p.display());
    p
}

/// What a test's JSON spec asks for.
#[derive(Default)]
struct Spec {
    args: Vec<String>,
    env: Vec<(String, String)>,
    exit_code: i32,
    stdout: Option<String>,
    root: Option<PathBuf>,
}

fn spec(wasm: &Path) -> Spec {
    let Ok(text) = std::fs::read_to_string(wasm.with_extension("json")) else { return Spec::default() };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", wasm.display()));
    let strs =
        |k: &str| v[k].as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default();
    Spec {
        args: strs("args"),
        env: v["env"]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
            .unwrap_or_default(),
        exit_code: v["exit_code"].as_i64().unwrap_or(0) as i32,
        stdout: v["stdout"].as_str().map(String::from),
        root: v["root"].as_str().map(|r| wasm.parent().unwrap().join(r)),
    }
}

/// A fresh copy of `from` at `to` (the tests change their directory).
fn copy_dir(from: &Path, to: &Path) {
    let ok = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap().success();
    assert!(ok, "copying {}", from.display());
}

/// Runs one test; `Err` says what went wrong.
fn run_one(wasm: &Path, work: &Path) -> Result<(), String> {
    let s = spec(wasm);
    let log = work.join("run.log");
    let (rec_dir, rep_dir) = (work.join("record"), work.join("replay"));
    let mut rec = Command::new(BIN);
    rec.arg("wasm").arg(wasm).arg("--record").arg(&log);
    let mut rep = Command::new(BIN);
    rep.arg("replay").arg(wasm).arg(&log);
    if let Some(root) = &s.root {
        copy_dir(root, &rec_dir);
        copy_dir(root, &rep_dir);
        rec.arg("--map-dir").arg(format!("{}::/", rec_dir.display()));
        rep.arg("--map-dir").arg(format!("{}::/", rep_dir.display()));
    }
    for (k, v) in &s.env {
        rec.arg("--env").arg(format!("{k}={v}"));
    }
    rec.arg("--").args(&s.args);
    let out = rec.output().map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(s.exit_code) {
        return Err(format!("exit code {:?}, expected {}: {}", out.status.code(), s.exit_code, stderr.trim()));
    }
    if let Some(want) = &s.stdout {
        let got = String::from_utf8_lossy(&out.stdout);
        if &got != want {
            return Err(format!("stdout {got:?}, expected {want:?}"));
        }
    }
    let r = rep.output().map_err(|e| e.to_string())?;
    let text = format!("{}{}", String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&r.stderr));
    if !r.status.success() || !text.contains("faithful") {
        return Err(format!("replay: {}", text.trim()));
    }
    Ok(())
}

#[test]
fn the_wasi_preview1_testsuite_passes_recorded_and_replayed() {
    let mut tests: Vec<PathBuf> = Vec::new();
    for lang in ["assemblyscript", "c", "rust"] {
        let dir = suite().join(lang).join("testsuite/wasm32-wasip1");
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "wasm") {
                tests.push(p);
            }
        }
    }
    tests.sort();
    assert_eq!(tests.len(), 72, "the suite's preview1 tests");
    let mut failed = Vec::new();
    for t in &tests {
        let work = tempfile::tempdir().unwrap();
        let name = format!(
            "{}/{}",
            t.parent().unwrap().parent().unwrap().parent().unwrap().file_name().unwrap().to_string_lossy(),
            t.file_stem().unwrap().to_string_lossy()
        );
        match run_one(t, work.path()) {
            Ok(()) => eprintln!("ok      {name}"),
            Err(e) => {
                eprintln!("FAILED  {name}: {e}");
                failed.push(name);
            }
        }
    }
    eprintln!("wasi-testsuite: {} of {} pass recorded and replayed", tests.len() - failed.len(), tests.len());
    assert!(failed.is_empty(), "{} tests failed: {failed:?}", failed.len());
}
