//! A replicated guest with a mapped directory (issue 12): each node has
//! its own copy; a joiner's is emptied and filled with the primary's by
//! the live snapshot while the primary keeps serving writes; after kill -9
//! of the primary the survivor's guest — and its host directory — hold
//! every acknowledged write, and a fresh node joins and takes over after a
//! second kill -9 with the same result.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A line-protocol connection to `filestore`.
struct Lines(BufReader<TcpStream>);

impl Lines {
    fn connect(addr: &str) -> std::io::Result<Lines> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Lines(BufReader::new(s)))
    }

    fn call(&mut self, line: &str) -> std::io::Result<String> {
        self.0.get_mut().write_all(format!("{line}\n").as_bytes())?;
        let mut out = String::new();
        if self.0.read_line(&mut out)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(out.trim_end().to_string())
    }
}

/// Waits until `name` is primary after `epoch` and its guest answers.
fn wait_serving(h: &Harness, name: &str, epoch: u64) -> u64 {
    wait_for(&format!("{name} to serve as primary"), Duration::from_secs(60), || {
        let r = h.record().filter(|r| r.primary.node == name && r.epoch > epoch)?;
        let ok = Lines::connect(&h.node(name).client).and_then(|mut c| c.call("COUNT")).is_ok_and(|s| s.parse::<u64>().is_ok());
        ok.then_some(r.epoch)
    })
}

/// Writers of `PUT` that follow the primary (by the arbiter's record) and
/// keep every acknowledged key and value.
struct PutLoad {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<Vec<(String, String)>>,
}

impl PutLoad {
    fn start(h: &Harness) -> PutLoad {
        let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s2, a2, url) = (stop.clone(), acked.clone(), h.arbiter_url());
        let thread = std::thread::spawn(move || {
            let arb = understudy_arbiter::connect(&url, SECRET.as_bytes()).unwrap();
            let (mut done, mut conn, mut i) = (Vec::new(), None::<Lines>, 0u64);
            while !s2.load(Ordering::Relaxed) {
                if conn.is_none() {
                    let primary = arb.read(CLUSTER).ok().flatten().map(|r| r.primary.client);
                    conn = primary.and_then(|a| Lines::connect(&a).ok());
                    if conn.is_none() {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                }
                let (k, v) = (format!("w{i}"), format!("value-{i}-{}", "x".repeat((i % 7) as usize * 100)));
                match conn.as_mut().unwrap().call(&format!("PUT {k} {v}")) {
                    Ok(r) if r == "OK" => {
                        done.push((k, v));
                        a2.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                    Ok(other) => panic!("PUT {k}: {other}"),
                    Err(_) => conn = None,
                }
            }
            done
        });
        PutLoad { stop, acked, thread }
    }

    fn wait_more(&self, n: u64) {
        let target = self.acked.load(Ordering::Relaxed) + n;
        wait_for(&format!("{n} more acknowledged PUTs"), Duration::from_secs(60), || {
            (self.acked.load(Ordering::Relaxed) >= target).then_some(())
        });
    }

    fn stop(self) -> Vec<(String, String)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("load thread")
    }
}

/// Every acknowledged PUT is in the guest at `addr` and in the host
/// directory `dir` that node maps.
fn assert_all_present(addr: &str, dir: &Path, acked: &[(String, String)]) {
    let mut c = Lines::connect(addr).unwrap();
    let mut missing = Vec::new();
    for (k, v) in acked {
        let got = c.call(&format!("GET {k}")).unwrap();
        let on_disk = std::fs::read_to_string(dir.join("kv").join(k)).unwrap_or_default();
        if &got != v || &on_disk != v {
            missing.push(format!("{k}: guest {got:?}, file {on_disk:?}"));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged PUTs lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(3)]
    );
}

fn map(h: &Harness, name: &str) -> String {
    format!("{}::/data", h.path(&format!("{name}-files")).display())
}

#[test]
fn the_survivor_of_two_kill9s_has_every_acknowledged_write_in_its_own_directory() {
    let _s = serial();
    let mut h = Harness::new();
    let (ma, mb, mc) = (map(&h, "a"), map(&h, "b"), map(&h, "c"));
    std::fs::create_dir_all(h.path("a-files")).unwrap();
    std::fs::write(h.path("a-files/preexisting"), "kept").unwrap();
    h.start_wasm_node("a", "filestore", &["--map-dir", &ma]);
    let e1 = wait_serving(&h, "a", 0);
    let mut c = Lines::connect(&h.node("a").client).unwrap();
    assert_eq!(c.call("BIG big 4096").unwrap(), "OK", "4 MiB to copy while the guest serves");

    // The joiner's directory holds something else: it is emptied first.
    std::fs::create_dir_all(h.path("b-files/old/stuff")).unwrap();
    std::fs::write(h.path("b-files/old/stuff/f"), "not the primary's").unwrap();
    let load = PutLoad::start(&h);
    load.wait_more(200);
    h.start_wasm_node("b", "filestore", &["--map-dir", &mb]);
    h.wait_in_sync("b");
    // The guest's thread restores the files from the records it was
    // handed; the joiner counts as loaded once it has them all.
    wait_for("b to restore the files", Duration::from_secs(60), || {
        h.log_of("b").contains("restored the guest's files").then_some(())
    });
    assert!(!h.path("b-files/old").exists(), "the joiner's directory was emptied");
    assert_eq!(std::fs::read_to_string(h.path("b-files/preexisting")).unwrap(), "kept");
    wait_for("a to report the files it sent", Duration::from_secs(30), || h.log_of("a").contains("files:").then_some(()));

    load.wait_more(300);
    h.kill9("a");
    let e2 = wait_serving(&h, "b", e1);
    load.wait_more(200);

    h.start_wasm_node("c", "filestore", &["--map-dir", &mc]);
    h.wait_in_sync("c");
    load.wait_more(300);
    h.kill9("b");
    wait_serving(&h, "c", e2);
    load.wait_more(100);
    let acked = load.stop();
    assert_all_present(&h.node("c").client, &h.path("c-files"), &acked);
    let mut c = Lines::connect(&h.node("c").client).unwrap();
    assert_eq!(c.call("GET big").unwrap().len(), 4095, "GET reads at most 4095 bytes of the big file");
    let big = std::fs::read(h.path("c-files/kv/big")).unwrap();
    assert_eq!(big, std::fs::read(h.path("a-files/kv/big")).unwrap(), "the big file travelled twice intact");
    assert!(c.call("JOURNAL").unwrap().parse::<usize>().unwrap() >= acked.len(), "the journal holds every PUT");
}

#[test]
fn a_cluster_with_files_refuses_overlapping_directories() {
    let h = Harness::new();
    std::fs::create_dir_all(h.path("d/inner")).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("wasm")
        .arg(guest_path("filestore"))
        .args(["--cluster", CLUSTER, "--node", "x", "--arbiter", &h.arbiter_url()])
        .args(["--guest-listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0", "--secret-file"])
        .arg(h.path("secret"))
        .arg("--map-dir")
        .arg(format!("{}::/a", h.path("d").display()))
        .arg("--map-dir")
        .arg(format!("{}::/b", h.path("d/inner").display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("overlap"), "{err}");
    assert!(h.record().is_none(), "nothing was claimed");
}

/// Issue 14, the machine level: when every replica of a guest died, the
/// operator forgets the epoch and starts a node on its own directory: the
/// guest starts afresh (from `main`) on the files that replica has — the
/// last primary's directory holds every write its guest made.
#[test]
fn after_every_replica_died_a_restarted_node_starts_its_guest_afresh_on_its_own_files() {
    let _s = serial();
    let mut h = Harness::new();
    let (ma, mb) = (map(&h, "a"), map(&h, "b"));
    h.start_wasm_node("a", "filestore", &["--map-dir", &ma]);
    let e1 = wait_serving(&h, "a", 0);
    h.start_wasm_node("b", "filestore", &["--map-dir", &mb]);
    h.wait_in_sync("b");
    let load = PutLoad::start(&h);
    load.wait_more(300);
    h.signal("a", libc::SIGKILL);
    h.signal("b", libc::SIGKILL);
    h.wait_exit("a", Duration::from_secs(10));
    h.wait_exit("b", Duration::from_secs(10));
    let acked = load.stop();
    let forget = std::process::Command::new(BIN)
        .args(["forget", "--epoch", &e1.to_string(), "--arbiter", &h.arbiter_url(), "--cluster", CLUSTER, "--secret-file"])
        .arg(h.path("secret"))
        .output()
        .unwrap();
    assert!(forget.status.success(), "{}", String::from_utf8_lossy(&forget.stderr));
    h.start_wasm_node("a", "filestore", &["--map-dir", &ma]);
    wait_serving(&h, "a", e1);
    // A fresh guest: its journal reader starts at the beginning of the file.
    let mut c = Lines::connect(&h.node("a").client).unwrap();
    assert!(c.call("JOURNAL").unwrap().parse::<usize>().unwrap() >= acked.len(), "the journal holds every PUT");
    assert_all_present(&h.node("a").client, &h.path("a-files"), &acked);
}
