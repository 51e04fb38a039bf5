//! `understudy sim` reports a seed whose run panics, with the panic's
//! message and how to replay it, and goes on to the next seed; the run ends
//! non-zero. (Only replicas and the arbiter fail-stop on a panic.)

use std::process::Command;

/// The counts of the summary line, `…: P passed, F failed (X panicked); …`.
fn counts(stdout: &str) -> (u64, u64, u64) {
    let line = stdout.lines().find(|l| l.starts_with("simulated seeds ")).unwrap_or_else(|| panic!("no summary:\n{stdout}"));
    let number_before = |word: &str| -> u64 {
        let head = &line[..line.find(word).unwrap_or_else(|| panic!("{word:?} not in {line:?}"))];
        head.trim_end().rsplit([' ', '(']).next().unwrap().parse().unwrap_or_else(|_| panic!("{line:?}"))
    };
    (number_before(" passed"), number_before(" failed"), number_before(" panicked"))
}

#[test]
fn a_panicking_seed_is_reported_and_the_run_goes_on() {
    let out = Command::new(env!("CARGO_BIN_EXE_understudy"))
        .args(["sim", "--start", "0", "--seeds", "3", "--run-ms", "2000", "--panic-on-seed", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let both = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(out.status.code(), Some(1), "a failed seed makes the run fail, and a panic does not end it (101):\n{both}");
    assert!(
        stdout.contains("seed=1: panicked in the protocol core: a deliberate panic (--panic-on-seed 1)"),
        "the seed and its panic's message:\n{both}"
    );
    assert!(stdout.contains("understudy sim --seed 1"), "how to replay it:\n{both}");
    assert!(!stderr.contains("panicked at"), "the default hook's report is replaced by the seed's:\n{both}");
    let (passed, failed, panicked) = counts(&stdout);
    assert_eq!(panicked, 1, "{both}");
    assert_eq!(passed + failed, 3, "seed 2 ran after seed 1 panicked:\n{both}");
    assert!(failed >= 1, "{both}");
}

#[test]
fn the_hidden_test_flag_is_not_in_the_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_understudy")).args(["sim", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && help.contains("--seeds"), "{help}");
    assert!(!help.contains("panic-on-seed"), "{help}");
}
