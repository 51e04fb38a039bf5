//! The guest's files (`--map-dir`): the sandbox holds against every escape
//! (`..` above the directory, absolute paths, symlinks — relative and
//! absolute — that lead out, symlink loops, `..` above a directory
//! descriptor, a directory renamed under an open descriptor), and a run
//! with files replays faithfully on a fresh copy of the directory, which it
//! leaves as the recording left its own.

mod common;
use common::*;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

/// A mapped directory `data/` beside an `outside/` one holding a secret,
/// with symlinks that try to lead out.
fn tree(root: &Path) {
    let data = root.join("data");
    std::fs::create_dir_all(data.join("dir/sub")).unwrap();
    std::fs::create_dir_all(root.join("outside")).unwrap();
    std::fs::write(root.join("outside/secret"), "SECRET").unwrap();
    std::fs::write(data.join("hello"), "inside").unwrap();
    std::fs::write(data.join("dir/sub/f"), "deep").unwrap();
    symlink("../outside/secret", data.join("rel")).unwrap();
    symlink(root.join("outside/secret"), data.join("abs")).unwrap();
    symlink("../../outside", data.join("dir/up")).unwrap();
    symlink("loop2", data.join("loop1")).unwrap();
    symlink("loop1", data.join("loop2")).unwrap();
    symlink("hello", data.join("ok")).unwrap();
}

const PROBES: [&str; 11] = [
    "/data/hello",
    "/data/ok",
    "/data/rel",
    "/data/abs",
    "/data/dir/up/secret",
    "/data/../outside/secret",
    "/data/loop1",
    "/data/dir/../hello",
    "@/data/dir:../hello",
    "@/data/dir.moved:sub/f",
    "/etc/passwd",
];

#[test]
fn no_path_leaves_the_mapped_directory_and_the_run_replays_on_a_copy() {
    let d = tempfile::tempdir().unwrap();
    let (rec, rep) = (d.path().join("rec"), d.path().join("rep"));
    tree(&rec);
    tree(&rep);
    let log = d.path().join("run.log");
    let wasm = guest_path("fsprobe");
    let out = Command::new(BIN)
        .arg("wasm")
        .arg(&wasm)
        .arg("--record")
        .arg(&log)
        .arg("--map-dir")
        .arg(format!("{}::/data", rec.join("data").display()))
        .arg("--")
        .args(PROBES)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let expect = [
        "/data/hello ok inside",
        "/data/ok ok inside",
        "/data/rel errno 63",               // EPERM: a relative symlink leading out
        "/data/abs errno 63",               // an absolute symlink
        "/data/dir/up/secret errno 63",     // a symlinked directory leading out
        "/data/../outside/secret errno 63", // .. above the directory
        "/data/loop1 errno 32",             // ELOOP
        "/data/dir/../hello ok inside",     // .. that stays inside is fine
        "@/data/dir:../hello errno 63",     // .. above a directory descriptor
        "@/data/dir.moved:sub/f ok deep",   // the descriptor follows its renamed directory
        "/etc/passwd errno 76",             // ENOTCAPABLE: no preopen there (wasi-libc)
    ];
    assert_eq!(lines, expect, "{text}");
    assert!(!text.contains("SECRET"));
    // The replay performs the same operations (the rename too) on its own
    // copy and checks every answer.
    let r = Command::new(BIN)
        .arg("replay")
        .arg(&wasm)
        .arg(&log)
        .arg("--map-dir")
        .arg(format!("{}::/data", rep.join("data").display()))
        .output()
        .unwrap();
    let t = format!("{}{}", String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&r.stderr));
    assert!(r.status.success() && t.contains("faithful"), "{t}");
    // (each "@" probe renames its directory: dir, then dir.moved)
    assert!(rep.join("data/dir.moved.moved/sub/f").exists() && !rep.join("data/dir").exists(), "the replay renamed its copy too");
    assert!(rec.join("data/dir.moved.moved/sub/f").exists(), "as the recording did");
    // A replay without the directory is told what to give it.
    let r = Command::new(BIN).arg("replay").arg(&wasm).arg(&log).output().unwrap();
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("--map-dir"));
    // A copy that differs from the recording's is a divergence naming the path.
    let other = d.path().join("other");
    tree(&other);
    std::fs::remove_file(other.join("data/hello")).unwrap();
    let r = Command::new(BIN)
        .arg("replay")
        .arg(&wasm)
        .arg(&log)
        .arg("--map-dir")
        .arg(format!("{}::/data", other.join("data").display()))
        .output()
        .unwrap();
    let t = format!("{}{}", String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&r.stderr));
    assert!(!r.status.success() && t.contains("Disk") && t.contains("/data/hello"), "{t}");
}
