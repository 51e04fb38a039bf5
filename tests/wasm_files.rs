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

/// A line-protocol connection to `filestore`.
struct Lines(std::io::BufReader<std::net::TcpStream>);

impl Lines {
    fn connect(addr: &str) -> Lines {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
        Lines(std::io::BufReader::new(s))
    }

    fn call(&mut self, line: &str) -> String {
        use std::io::{BufRead, Write};
        self.0.get_mut().write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut out = String::new();
        self.0.read_line(&mut out).unwrap();
        out.trim_end().to_string()
    }
}

/// Starts `filestore` standalone with `args`; its address.
fn start_filestore(d: &Path, args: &[&str]) -> (std::process::Child, String) {
    let gdir = d.join("g");
    let mut child = Command::new(BIN)
        .arg("wasm")
        .arg(guest_path("filestore"))
        .args(["--guest-listen", "127.0.0.1:0", "--dir"])
        .arg(&gdir)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let l: understudy_node::listening::GuestListening = wait_listening(&mut child, &gdir).expect("the guest listens");
    (child, l.guest.to_string())
}

fn replay(log: &Path, args: &[String]) -> (bool, String) {
    let r = Command::new(BIN).arg("replay").arg(guest_path("filestore")).arg(log).args(args).output().unwrap();
    (r.status.success(), format!("{}{}", String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&r.stderr)))
}

/// Checkpoints carry the directory: a run recorded with checkpoints
/// replays from its last one onto a directory that holds something else
/// (emptied, then filled from the checkpoint) and ends with the files the
/// recording ended with.
#[test]
fn a_run_with_files_replays_from_its_last_checkpoint_onto_another_directory() {
    let d = tempfile::tempdir().unwrap();
    let (rec, log) = (d.path().join("rec"), d.path().join("run.log"));
    std::fs::create_dir_all(rec.join("kv")).unwrap();
    std::fs::write(rec.join("kv/seed"), "seed").unwrap();
    let map = format!("{}::/data", rec.display());
    let (mut child, addr) =
        start_filestore(d.path(), &["--record", log.to_str().unwrap(), "--checkpoint-every", "40", "--map-dir", &map]);
    let mut c = Lines::connect(&addr);
    for i in 0..120 {
        assert_eq!(c.call(&format!("PUT k{i} v{i}")), "OK");
        if i % 7 == 0 {
            assert_eq!(c.call(&format!("DEL k{}", i / 2)), "OK");
        }
    }
    assert_eq!(c.call("BIG big 300"), "OK");
    assert_eq!(c.call("EXIT"), "BYE");
    assert!(child.wait().unwrap().success());

    let other = d.path().join("other");
    std::fs::create_dir_all(other.join("unrelated")).unwrap();
    std::fs::write(other.join("unrelated/f"), "x").unwrap();
    let (ok, t) = replay(&log, &["--from-checkpoint".into(), "--map-dir".into(), format!("{}::/data", other.display())]);
    assert!(ok && t.contains("faithful") && t.contains("resumed from the checkpoint"), "{t}");
    let list = |p: &Path| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(p.join("kv"))
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(list(&other), list(&rec), "the replay's directory ends as the recording's did");
    assert!(!other.join("unrelated").exists(), "the replay's directory was emptied for the checkpoint");
}

/// `--disk-bytes-max`: a write that would pass the limit fails with ENOSPC
/// and leaves the file as it was; removing files makes room again; the
/// replay (whose limit comes from the log) fails the same call the same way.
#[test]
fn the_disk_limit_fails_the_same_write_in_the_recording_and_the_replay() {
    let d = tempfile::tempdir().unwrap();
    let (rec, rep, log) = (d.path().join("rec"), d.path().join("rep"), d.path().join("run.log"));
    for dir in [&rec, &rep] {
        std::fs::create_dir_all(dir.join("kv")).unwrap();
        std::fs::write(dir.join("kv/seed"), vec![b's'; 10_000]).unwrap();
    }
    let map = format!("{}::/data", rec.display());
    let (mut child, addr) =
        start_filestore(d.path(), &["--record", log.to_str().unwrap(), "--map-dir", &map, "--disk-bytes-max", "64KiB"]);
    let mut c = Lines::connect(&addr);
    assert_eq!(c.call("BIG a 40"), "OK", "10 KB + 40 KiB fit in 64 KiB");
    assert_eq!(c.call("BIG b 20"), "ERR", "another 20 KiB does not");
    assert!(!rec.join("kv/b").exists() || std::fs::metadata(rec.join("kv/b")).unwrap().len() == 0);
    assert_eq!(c.call("DEL a"), "OK");
    assert_eq!(c.call("BIG b 20"), "OK", "the space of a removed file is free again");
    assert_eq!(c.call("PUT a small"), "OK");
    assert_eq!(c.call("EXIT"), "BYE");
    assert!(child.wait().unwrap().success());
    let (ok, t) = replay(&log, &["--map-dir".into(), format!("{}::/data", rep.display())]);
    assert!(ok && t.contains("faithful"), "{t}");
    assert_eq!(std::fs::read(rep.join("kv/b")).unwrap(), std::fs::read(rec.join("kv/b")).unwrap());
    // The flag needs a directory to limit.
    let r = Command::new(BIN).arg("wasm").arg(guest_path("filestore")).args(["--disk-bytes-max", "1MiB"]).output().unwrap();
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("--map-dir"));
}
