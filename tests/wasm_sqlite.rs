//! A real database library under the hypervisor: SQLite (guests/sqlserver.c,
//! a RESP server whose table lives in /data/kv.db, rollback journal created
//! and unlinked by every commit, one transaction per poll round) recorded
//! standalone while pipelining clients write and read; after a clean
//! shutdown the host's own `sqlite3` finds an intact database holding every
//! acknowledged write, and the run replays faithfully on a copy of the
//! directory as it was before, leaving the same database there.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use understudy_client::{Conn, Reply};
use understudy_node::listening::GuestListening;

const CLIENTS: usize = 4;
const WRITES: usize = 1000; // per client
const KEYS: usize = 750; // per client: the later writes overwrite
const DELETED: usize = 10; // per client, at the end
const BATCH: usize = 100; // commands per pipeline

/// Runs the host's sqlite3 on `db`; its stdout.
fn sqlite3(db: &Path, sql: &str) -> String {
    let out =
        Command::new("sqlite3").arg("-bail").arg(db).arg(sql).output().unwrap_or_else(|e| {
            panic!("cannot run sqlite3 ({e}): install the Debian package sqlite3 (scripts/install-deps does)")
        });
    assert!(out.status.success(), "sqlite3 {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Client `c`'s i-th value: varied lengths (some spill into overflow pages)
/// and every byte value.
fn value(c: usize, i: usize) -> Vec<u8> {
    let mut v = format!("v{c}:{i}:").into_bytes();
    v.extend((0..(i * 37 + c * 11) % 3000).map(|j| (j * 7 + i) as u8));
    v
}

/// One client: pipelined SETs (and a GET of a key just set, in the same
/// pipeline), then deletes; returns what it left, key -> value.
fn client(addr: &str, c: usize) -> BTreeMap<String, Vec<u8>> {
    let mut conn = Conn::connect(addr, Duration::from_secs(60)).unwrap();
    let mut expect = BTreeMap::new();
    for start in (0..WRITES).step_by(BATCH) {
        let mut cmds: Vec<Vec<Vec<u8>>> = Vec::new();
        for i in start..start + BATCH {
            let k = format!("k{c}:{}", i % KEYS);
            cmds.push(vec![b"SET".to_vec(), k.clone().into_bytes(), value(c, i)]);
            expect.insert(k, value(c, i));
        }
        let probe = format!("k{c}:{}", (start + BATCH / 2) % KEYS);
        cmds.push(vec![b"GET".to_vec(), probe.clone().into_bytes()]);
        let replies = conn.pipeline(&cmds).unwrap();
        for r in &replies[..BATCH] {
            assert_eq!(*r, Reply::Simple("OK".into()));
        }
        // The round's reads see its earlier writes.
        assert_eq!(replies[BATCH].bytes(), Some(&expect[&probe][..]), "GET {probe} after its SET");
    }
    let dels: Vec<Vec<String>> = (0..DELETED).map(|j| vec!["DEL".into(), format!("k{c}:{j}")]).collect();
    for r in conn.pipeline(&dels).unwrap() {
        assert_eq!(r, Reply::Int(1));
    }
    for j in 0..DELETED {
        expect.remove(&format!("k{c}:{j}"));
    }
    expect
}

#[test]
fn sqlite_keeps_every_acknowledged_write_and_the_run_replays_on_a_copy() {
    let d = tempfile::tempdir().unwrap();
    let (data, copy) = (d.path().join("data"), d.path().join("copy"));
    // The directory as it was before the run, twice.
    for dir in [&data, &copy] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("README"), "sqlserver's directory\n").unwrap();
    }
    let wasm = guest_path("sqlserver");
    let log = d.path().join("run.log");
    let gdir = d.path().join("g");
    let stderr = d.path().join("stderr");
    let mut child = Command::new(BIN)
        .arg("wasm")
        .arg(&wasm)
        .arg("--record")
        .arg(&log)
        .arg("--map-dir")
        .arg(format!("{}::/data", data.display()))
        .args(["--guest-listen", "127.0.0.1:0", "--dir"])
        .arg(&gdir)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let err = || std::fs::read_to_string(&stderr).unwrap_or_default();
    let l: GuestListening = wait_listening(&mut child, &gdir).unwrap_or_else(|| panic!("the guest exited at start: {}", err()));
    let addr = l.guest.to_string();

    // Clients at once, so that rounds gather several connections' writes.
    let expect: BTreeMap<String, Vec<u8>> = std::thread::scope(|s| {
        let addr = &addr;
        let threads: Vec<_> = (0..CLIENTS).map(|c| s.spawn(move || client(addr, c))).collect();
        threads.into_iter().flat_map(|t| t.join().expect("client")).collect()
    });
    assert_eq!(expect.len(), CLIENTS * (KEYS - DELETED));

    let mut c = Conn::connect(&addr, Duration::from_secs(60)).unwrap();
    assert_eq!(c.call(&["DBSIZE"]).unwrap(), Reply::Int(expect.len() as i64));
    let sample: Vec<&String> = expect.keys().step_by(97).collect();
    let gets: Vec<Vec<&str>> = sample.iter().map(|k| vec!["GET", k.as_str()]).collect();
    for (k, r) in sample.iter().zip(c.pipeline(&gets).unwrap()) {
        assert_eq!(r.bytes(), Some(&expect[*k][..]), "GET {k}");
    }
    assert_eq!(c.call(&["GET", "k0:0"]).unwrap(), Reply::Bulk(None), "a deleted key");
    assert_eq!(c.call(&["EXISTS", "k1:100", "k1:1", "nope"]).unwrap(), Reply::Int(1));
    assert_eq!(c.call(&["SHUTDOWN"]).unwrap(), Reply::Simple("OK".into()));
    let status = wait_for("the guest to exit after SHUTDOWN", Duration::from_secs(60), || child.try_wait().unwrap());
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(status.success(), "exit {status}: {stdout}{}", err());
    assert!(stdout.contains("sqlserver: serving /data/kv.db (0 keys)"), "{stdout}");

    // (a) The host's sqlite3: an intact database with exactly what was acknowledged.
    let db = data.join("kv.db");
    assert!(!data.join("kv.db-journal").exists(), "no journal left behind");
    assert_eq!(sqlite3(&db, "PRAGMA integrity_check;").trim(), "ok");
    assert_eq!(sqlite3(&db, "SELECT count(*) FROM kv;").trim(), expect.len().to_string());
    for k in expect.keys().step_by(211) {
        let got = sqlite3(&db, &format!("SELECT hex(v) FROM kv WHERE k = '{k}';"));
        assert_eq!(got.trim(), hex(&expect[k]), "{k} in the file");
    }
    let rows = |db: &Path| sqlite3(db, "SELECT k, hex(v) FROM kv ORDER BY k;");
    let recorded = rows(&db);
    assert_eq!(recorded.lines().count(), expect.len());

    // (b) The replay performs every file operation again on the copy.
    let r = Command::new(BIN)
        .arg("replay")
        .arg(&wasm)
        .arg(&log)
        .arg("--map-dir")
        .arg(format!("{}::/data", copy.display()))
        .output()
        .unwrap();
    let t = format!("{}{}", String::from_utf8_lossy(&r.stdout), String::from_utf8_lossy(&r.stderr));
    assert!(r.status.success() && t.contains("faithful"), "{t}");
    assert!(!copy.join("kv.db-journal").exists());
    assert_eq!(rows(&copy.join("kv.db")), recorded, "the replay's database has the same rows");
    assert!(std::fs::read(copy.join("kv.db")).unwrap() == std::fs::read(&db).unwrap(), "and is the same file");
}
