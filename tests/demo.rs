//! The main job: `understudy demo` runs end to end and reports no loss.

mod common;
use common::*;
use std::process::Command;

#[test]
fn demo_runs_and_loses_nothing() {
    let _s = serial();
    let out = Command::new(BIN).args(["demo", "--load-secs", "2", "--clients", "4"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("lost                           0"), "{text}");
    let acked: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("writes acknowledged"))
        .and_then(|v| v.trim().parse().ok())
        .expect("the report gives the writes acknowledged");
    let found: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("found on the survivor (b)"))
        .and_then(|v| v.trim().parse().ok())
        .expect("the report gives the writes found");
    assert!(acked > 0);
    assert_eq!(acked, found);
}
