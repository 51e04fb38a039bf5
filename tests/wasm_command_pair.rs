//! A replicated command-style guest (no --guest-listen: a job that prints
//! and exits): its primary starts it only once a backup is in sync (the
//! backup joined before the job began, and starts the same job from its
//! beginning to replay it); after kill -9 of the primary mid-job the backup
//! finishes it — the two processes' stdout together hold every line once,
//! in order — and the pair ends with the job's exit code.

mod common;
use common::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const LINES: usize = 150;

/// A node process, killed if the test ends before it does.
struct Job(Child);

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts node `name` of `cluster` running `countdown LINES 20 7`, its
/// stdout to `name.out` and its log to `name.log` in the harness's dir.
fn job_node(h: &Harness, cluster: &str, name: &str, extra: &[&str]) -> Job {
    let child = Command::new(BIN)
        .arg("wasm")
        .arg(guest_path("countdown"))
        .args(["--cluster", cluster, "--node", name, "--arbiter", &h.arbiter_url()])
        .args(["--repl-listen", "127.0.0.1:0", "--secret-file"])
        .arg(h.path("secret"))
        .arg("--dir")
        .arg(h.path(name))
        .args(extra)
        .args(["--", &LINES.to_string(), "20", "7"])
        .stdout(std::fs::File::create(h.path(&format!("{name}.out"))).unwrap())
        .stderr(std::fs::File::create(h.path(&format!("{name}.log"))).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    Job(child)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn expected() -> String {
    (1..=LINES).map(|i| format!("line {i} of {LINES}\n")).collect()
}

fn exit_code(j: &mut Job) -> i32 {
    let status = wait_for("the node to exit", Duration::from_secs(60), || j.0.try_wait().unwrap());
    status.code().expect("exited, not killed")
}

#[test]
fn the_backup_finishes_the_job_after_kill9_and_no_line_is_lost_or_repeated() {
    let h = Harness::new();
    let mut a = job_node(&h, "job", "a", &[]);
    wait_for("a to wait for a backup", Duration::from_secs(60), || {
        read(&h.path("a.log")).contains("waiting for a backup before starting the guest").then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read(&h.path("a.out")), "", "the job has not started without a backup");
    let mut b = job_node(&h, "job", "b", &[]);
    wait_for("the job to be a third done", Duration::from_secs(60), || {
        (read(&h.path("a.out")).lines().count() >= LINES / 3).then_some(())
    });
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    assert_eq!(exit_code(&mut b), 7, "the pair ends with the job's exit code: {}", read(&h.path("b.log")));
    let (out_a, out_b) = (read(&h.path("a.out")), read(&h.path("b.out")));
    assert!(!out_b.is_empty() && out_a.len() < expected().len(), "both printed part of the job");
    assert_eq!(format!("{out_a}{out_b}"), expected(), "every line once, in order");
    assert!(read(&h.path("b.log")).contains("starts here from its beginning"), "{}", read(&h.path("b.log")));
}

#[test]
fn without_a_failure_the_primary_prints_the_job_and_both_end_with_its_code() {
    let h = Harness::new();
    let mut a = job_node(&h, "job", "a", &[]);
    wait_for("a to wait for a backup", Duration::from_secs(60), || {
        read(&h.path("a.log")).contains("waiting for a backup").then_some(())
    });
    let mut b = job_node(&h, "job", "b", &[]);
    assert_eq!(exit_code(&mut a), 7);
    assert_eq!(exit_code(&mut b), 7, "the backup replayed the job to the same end");
    assert_eq!(read(&h.path("a.out")), expected());
    assert_eq!(read(&h.path("b.out")), "", "a backup prints nothing it replays");
}

#[test]
fn start_unprotected_runs_the_job_at_once() {
    let h = Harness::new();
    let mut a = job_node(&h, "job", "a", &["--start-unprotected"]);
    assert_eq!(exit_code(&mut a), 7);
    assert_eq!(read(&h.path("a.out")), expected());
}

#[test]
fn start_unprotected_is_refused_where_it_means_nothing() {
    let h = Harness::new();
    let countdown = guest_path("countdown");
    let run = |args: &[&str]| Command::new(BIN).arg("wasm").arg(&countdown).args(args).output().unwrap();
    let o = run(&["--start-unprotected", "--", "3", "1", "0"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--start-unprotected") && err.contains("--cluster"), "{err}");
    let url = h.arbiter_url();
    let o = run(&[
        "--cluster",
        "srv",
        "--node",
        "a",
        "--arbiter",
        &url,
        "--repl-listen",
        "127.0.0.1:0",
        "--guest-listen",
        "127.0.0.1:0",
        "--start-unprotected",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--start-unprotected") && err.contains("--guest-listen"), "{err}");
    assert!(h.arbiter().read("srv").unwrap().is_none(), "a refused command line claims nothing");
}

/// A guest given --guest-listen that never accepts on fd 3 (here a job that
/// prints and sleeps) leaves clients in the backlog: the node says so once.
#[test]
fn a_guest_that_never_accepts_on_its_listener_is_named_in_a_warning() {
    let mut h = Harness::new();
    h.start_wasm_node("a", "countdown", &["--", "200", "200", "0"]);
    let line = wait_for("the unused-listener warning", Duration::from_secs(60), || {
        h.log_of("a").lines().find(|l| l.contains("has not accepted a connection on its listener")).map(String::from)
    });
    assert!(line.contains("fd 3") && line.contains("--guest-listen"), "{line}");
    assert_eq!(h.log_of("a").matches("has not accepted a connection").count(), 1, "said once");
}
