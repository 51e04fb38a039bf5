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

/// Every preview1 test module of the suite, sorted.
fn preview1_tests() -> Vec<PathBuf> {
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
    tests
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
    let tests = preview1_tests();
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

/// Every entry beneath `root`, sorted: its path, and a file's bytes, a
/// symlink's target or `dir/`.
fn listing(root: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let name = format!("{rel}/{}", e.file_name().to_string_lossy());
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                let target = std::fs::read_link(e.path()).unwrap();
                out.push((name, format!("-> {}", target.display()).into_bytes()));
            } else if ft.is_dir() {
                out.push((name.clone(), b"dir/".to_vec()));
                walk(&e.path(), &name, out);
            } else {
                out.push((name, std::fs::read(e.path()).unwrap_or_default()));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, "", &mut out);
    out.sort();
    out
}

/// Runs one test as a replicated pair: two nodes started together, each
/// with its own fresh copy of the test's directory; one claims the cluster
/// and waits for the other to join before it starts the guest (a
/// command-style guest starts protected), the other replays it. Both must
/// end with the spec's exit code; the primary prints the spec's stdout, the
/// backup nothing; and the two directories end the same.
fn run_pair(h: &Harness, wasm: &Path, work: &Path, cluster: &str) -> Result<(), String> {
    let s = spec(wasm);
    let node = |name: &str| -> Result<std::process::Child, String> {
        let mut c = Command::new(BIN);
        c.arg("wasm").arg(wasm);
        c.args(["--cluster", cluster, "--node", name, "--arbiter", &h.arbiter_url(), "--repl-listen", "127.0.0.1:0"]);
        c.arg("--secret-file").arg(h.path("secret")).arg("--dir").arg(work.join(name));
        // Joined before it starts, the guest needs no live snapshot: the
        // module as given spares the Asyncify transformation.
        c.env("UNDERSTUDY_WASM_OPT", "/nonexistent/wasm-opt");
        if let Some(root) = &s.root {
            let copy = work.join(format!("{name}-root"));
            copy_dir(root, &copy);
            c.arg("--map-dir").arg(format!("{}::/", copy.display()));
        }
        for (k, v) in &s.env {
            c.arg("--env").arg(format!("{k}={v}"));
        }
        c.arg("--").args(&s.args);
        c.stdout(std::process::Stdio::piped()).stderr(std::fs::File::create(work.join(format!("{name}.log"))).unwrap());
        c.spawn().map_err(|e| e.to_string())
    };
    let (a, b) = (node("a")?, node("b")?);
    let mut outs = Vec::new();
    for (name, child) in [("a", a), ("b", b)] {
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let log = std::fs::read_to_string(work.join(format!("{name}.log"))).unwrap_or_default();
        if out.status.code() != Some(s.exit_code) {
            return Err(format!("node {name}: exit code {:?}, expected {}: {}", out.status.code(), s.exit_code, log.trim()));
        }
        outs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    if s.root.is_some() {
        let (ta, tb) = (listing(&work.join("a-root")), listing(&work.join("b-root")));
        if ta != tb {
            return Err(format!("the replicas' directories differ at the end:\n a: {ta:?}\n b: {tb:?}"));
        }
    }
    if let Some(want) = &s.stdout {
        let printed: Vec<&String> = outs.iter().filter(|o| !o.is_empty()).collect();
        if want.is_empty() && !printed.is_empty() || !want.is_empty() && printed != [want] {
            return Err(format!("stdout of the two nodes {outs:?}, expected {want:?} from the primary alone"));
        }
    }
    Ok(())
}

#[test]
fn the_wasi_preview1_testsuite_passes_as_replicated_pairs() {
    let h = Harness::new();
    let tests = preview1_tests();
    assert_eq!(tests.len(), 72, "the suite's preview1 tests");
    let mut failed = Vec::new();
    for (i, t) in tests.iter().enumerate() {
        let work = tempfile::tempdir().unwrap();
        let name = t.file_stem().unwrap().to_string_lossy().into_owned();
        match run_pair(&h, t, work.path(), &format!("suite{i}")) {
            Ok(()) => eprintln!("ok      {name} (pair)"),
            Err(e) => {
                eprintln!("FAILED  {name} (pair): {e}");
                failed.push(name);
            }
        }
    }
    eprintln!("wasi-testsuite: {} of {} pass as replicated pairs", tests.len() - failed.len(), tests.len());
    assert!(failed.is_empty(), "{} tests failed as pairs: {failed:?}", failed.len());
}
