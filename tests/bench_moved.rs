//! The benchmark left the product binary for its own package,
//! `understudy-bench`; `understudy bench` says where it went.

use std::process::Command;

#[test]
fn understudy_bench_points_to_the_bench_package() {
    let out = Command::new(env!("CARGO_BIN_EXE_understudy")).args(["bench", "--quick"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a usage error:\n{stderr}");
    assert!(stderr.contains("unrecognized subcommand 'bench'"), "{stderr}");
    assert!(stderr.contains("cargo run --release -p understudy-bench"), "{stderr}");
}
