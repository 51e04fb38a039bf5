//! Multi-process test harness: the real `understudy` binary as arbiter and
//! nodes on loopback, signals, waits on conditions with generous deadlines
//! (never sleep-and-hope: CI has 2 shared cores), and client load.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use understudy_arbiter::{Arbiter, BackupState, ClusterRecord};
use understudy_client::{Cluster, Conn, Reply};
use understudy_node::listening::{ArbiterListening, Document, Listening};

#[path = "../../crates/arbiter/tests/common/ports.rs"]
mod ports;
#[allow(unused_imports)] // not every test binary uses them
pub use ports::{refusing_port, RefusingPort};
mod redis;
#[allow(unused_imports)] // not every test binary uses them
pub use redis::{redis_cli, RedisServer};
mod tls;
#[allow(unused_imports)] // not every test binary uses them
pub use tls::{redis_cli_with, Certs};

pub const BIN: &str = env!("CARGO_BIN_EXE_understudy");
pub const CLUSTER: &str = "t";
pub const SECRET: &str = "test-secret";

/// Multi-process tests run one at a time: parallel clusters on 2 cores
/// would test the scheduler, not the protocol.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Builds the C guests (once per test binary) with guests/build.sh and
/// returns the path of `guests/build/<name>.wasm` (or `<name>-native`).
/// Fails, never skips, when the toolchain is missing.
pub fn guest_path(name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let built = BUILT.get_or_init(|| {
        let out = Command::new("sh").arg(root.join("guests/build.sh")).output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "guests/build.sh failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = built {
        panic!("{e}\ninstall the Debian packages clang lld wasi-libc libclang-rt-14-dev-wasm32 (scripts/install-deps does)");
    }
    let file = if name.ends_with("-native") { name.to_string() } else { format!("{name}.wasm") };
    root.join("guests/build").join(file)
}

/// The binary of `examples/<name>.rs`: `cargo test` builds the examples
/// next to the test binaries' directory; a test run alone (`--test X`)
/// builds it here.
pub fn example_path(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("examples").join(name);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out =
            Command::new(cargo).args(["build", "--example", name]).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
        assert!(out.status.success(), "cargo build --example {name}: {}", String::from_utf8_lossy(&out.stderr));
        built.push(name.to_string());
    }
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Waits for `child`, started with `--dir dir`, to report its bound
/// addresses in `dir/listening.json`; None if it exits first (a node that
/// refuses to start).
pub fn wait_listening<D: Document>(child: &mut Child, dir: &Path) -> Option<D> {
    let pid = child.id();
    wait_for(&format!("process {pid} to write {}/listening.json", dir.display()), Duration::from_secs(60), || {
        if let Some(l) = D::read(dir).unwrap().filter(|l| l.pid() == pid) {
            return Some(Some(l));
        }
        child.try_wait().unwrap().map(|_| None)
    })
}

/// Polls `f` until it returns Some, or panics naming `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Kv,
    /// A WebAssembly guest speaking RESP (PING answers when it serves).
    Wasm,
    /// A program of `examples/` built on the library (`Node::serve`): the
    /// arbiter's record says when it serves.
    Example,
}

pub struct Node {
    pub kind: Kind,
    pub name: String,
    pub child: Option<Child>,
    pub client: String,
    pub repl: String,
    pub log: PathBuf,
}

impl Node {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }
}

/// Whether the key-value node at a client address serves as primary.
pub type KvProbe = dyn Fn(&str) -> bool;

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub arbiter_addr: String,
    /// Set when the cluster uses another arbiter (etcd) than the built-in
    /// one this harness starts.
    pub external_arbiter: Option<String>,
    arbiter: Option<Child>,
    pub nodes: HashMap<String, Node>,
    pub node_args: Vec<String>,
    /// Environment variables for every node started after they are set.
    pub node_env: Vec<(String, String)>,
    /// Nodes started while this is set get a pipe as stdin (`Node::stdin`).
    pub node_stdin_piped: bool,
    /// The password key-value nodes ask for (`--requirepass-file`), if any.
    pub client_password: Option<String>,
    /// Says whether the key-value node at a client address serves as
    /// primary, for nodes plain RESP cannot reach (TLS); default:
    /// [`serves_as_primary`].
    pub kv_probe: Option<Box<KvProbe>>,
}

impl Harness {
    /// An arbiter process on a port of its choosing, with a secret file.
    pub fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), SECRET).unwrap();
        let mut h = Harness {
            arbiter_addr: "127.0.0.1:0".into(),
            external_arbiter: None,
            dir,
            arbiter: None,
            nodes: HashMap::new(),
            node_args: Vec::new(),
            node_env: Vec::new(),
            node_stdin_piped: false,
            client_password: None,
            kv_probe: None,
        };
        h.start_arbiter();
        h
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A harness whose nodes use the arbiter at `url` (e.g. etcd); no
    /// built-in arbiter is started.
    pub fn with_arbiter(url: &str) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), SECRET).unwrap();
        Harness {
            arbiter_addr: String::new(),
            external_arbiter: Some(url.to_string()),
            dir,
            arbiter: None,
            nodes: HashMap::new(),
            node_args: Vec::new(),
            node_env: Vec::new(),
            node_stdin_piped: false,
            client_password: None,
            kv_probe: None,
        }
    }

    pub fn arbiter_url(&self) -> String {
        match &self.external_arbiter {
            Some(u) => u.clone(),
            None => format!("understudy://{}", self.arbiter_addr),
        }
    }

    /// Starts the arbiter: the first time on port 0, again (after
    /// `kill_arbiter`) on the address it got then, which the nodes know.
    pub fn start_arbiter(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.path("arbiter.log")).unwrap();
        let mut child = Command::new(BIN)
            .args(["arbiter", "--listen", &self.arbiter_addr, "--secret-file"])
            .arg(self.path("secret"))
            .arg("--dir")
            .arg(self.path("arbiter"))
            .stderr(log)
            .spawn()
            .unwrap();
        let l: Option<ArbiterListening> = wait_listening(&mut child, &self.path("arbiter"));
        let Some(l) = l else {
            panic!("the arbiter exited at start: {}", std::fs::read_to_string(self.path("arbiter.log")).unwrap_or_default())
        };
        self.arbiter_addr = l.arbiter.to_string();
        self.arbiter = Some(child);
    }

    pub fn kill_arbiter(&mut self) {
        if let Some(mut c) = self.arbiter.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn arbiter(&self) -> Box<dyn Arbiter> {
        understudy_arbiter::connect(&self.arbiter_url(), SECRET.as_bytes()).unwrap()
    }

    pub fn record(&self) -> Option<ClusterRecord> {
        self.arbiter().read(CLUSTER).ok().flatten()
    }

    /// Starts node `name` with the harness's extra args plus `extra`, on
    /// port 0; returns once it has reported its addresses (or exited).
    pub fn start_node(&mut self, name: &str, extra: &[&str]) {
        let mut cmd = Command::new(BIN);
        cmd.arg("kv");
        self.spawn_node(Kind::Kv, name, cmd, "--client-listen", extra);
    }

    /// Starts node `name` running the WebAssembly guest `guest` (built from
    /// guests/) as a replica; clients reach the guest at `client`.
    pub fn start_wasm_node(&mut self, name: &str, guest: &str, extra: &[&str]) {
        let mut cmd = Command::new(BIN);
        cmd.arg("wasm").arg(guest_path(guest));
        self.spawn_node(Kind::Wasm, name, cmd, "--guest-listen", extra);
    }

    /// Starts node `name` running the program `examples/<example>.rs`
    /// (built on understudy's library, with the node flags of
    /// `NodeBuilder::args`).
    pub fn start_example(&mut self, name: &str, example: &str, extra: &[&str]) {
        self.spawn_node(Kind::Example, name, Command::new(example_path(example)), "--listen", extra);
    }

    /// Adds the flags every node gets (cluster, arbiter, port 0 for
    /// `client_flag` and `--repl-listen`, secret, dir, the harness's node
    /// args, `extra`), starts it, and waits for its addresses.
    fn spawn_node(&mut self, kind: Kind, name: &str, mut cmd: Command, client_flag: &str, extra: &[&str]) {
        let log = self.path(&format!("{name}.log"));
        cmd.args(["--cluster", CLUSTER, "--node", name, "--arbiter", &self.arbiter_url()])
            .args([client_flag, "127.0.0.1:0", "--repl-listen", "127.0.0.1:0", "--secret-file"])
            .arg(self.path("secret"))
            .arg("--dir")
            .arg(self.path(name))
            .args(&self.node_args)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap())
            .envs(self.node_env.iter().map(|(k, v)| (k, v)));
        if self.node_stdin_piped {
            cmd.stdin(Stdio::piped());
        }
        let mut child = cmd.spawn().unwrap();
        let l: Option<Listening> = wait_listening(&mut child, &self.path(name));
        let (client, repl) = l.map_or_else(Default::default, |l| (l.client.to_string(), l.repl.to_string()));
        self.nodes.insert(name.to_string(), Node { kind, name: name.into(), child: Some(child), client, repl, log });
    }

    /// The examples' kill -9 scenario, with `a` primary and `b` its in-sync
    /// backup under a load whose progress `more(n)` waits for: kill -9 of
    /// `a`, `c` joins `b`, kill -9 of `b`. `c` is primary at the end.
    pub fn two_failovers_under_load(&mut self, example: &str, more: impl Fn(u64)) {
        more(300);
        let epoch = self.record().unwrap().epoch;
        self.kill9("a");
        self.wait_primary_after("b", epoch);
        more(300);
        self.start_example("c", example, &[]);
        self.wait_in_sync("c");
        more(100);
        let epoch = self.record().unwrap().epoch;
        self.kill9("b");
        self.wait_primary_after("c", epoch);
        more(300);
    }

    /// Runs `understudy switchover` against this cluster; its output.
    pub fn switchover(&self) -> std::process::Output {
        Command::new(BIN)
            .args(["switchover", "--arbiter", &self.arbiter_url(), "--cluster", CLUSTER, "--secret-file"])
            .arg(self.path("secret"))
            .output()
            .unwrap()
    }

    /// Starts key-value nodes `a` (primary) and `b` (its in-sync backup).
    pub fn start_pair(&mut self) {
        self.start_node("a", &[]);
        self.wait_primary("a");
        self.start_node("b", &[]);
        self.wait_in_sync("b");
    }

    /// Starts `a` (primary) and `b` (its in-sync backup) running `example`.
    pub fn start_example_pair(&mut self, example: &str) {
        self.start_example("a", example, &[]);
        self.wait_primary("a");
        self.start_example("b", example, &[]);
        self.wait_in_sync("b");
    }

    pub fn node(&self, name: &str) -> &Node {
        &self.nodes[name]
    }

    pub fn signal(&self, name: &str, sig: i32) {
        let pid = self.node(name).pid();
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
    }

    pub fn kill9(&mut self, name: &str) {
        let n = self.nodes.get_mut(name).unwrap();
        let mut c = n.child.take().expect("node running");
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// Waits for a node's process to end and returns its exit code.
    pub fn wait_exit(&mut self, name: &str, limit: Duration) -> Option<i32> {
        let n = self.nodes.get_mut(name).unwrap();
        let c = n.child.as_mut().expect("node running");
        let status = wait_for(&format!("node {name} to exit"), limit, || c.try_wait().unwrap());
        n.child = None;
        status.code()
    }

    pub fn log_of(&self, name: &str) -> String {
        std::fs::read_to_string(&self.node(name).log).unwrap_or_default()
    }

    /// Waits until the arbiter names `name` primary and the node itself
    /// serves as primary (it may still be draining after winning its claim).
    pub fn wait_primary(&self, name: &str) -> ClusterRecord {
        self.wait_primary_after(name, 0)
    }

    pub fn wait_primary_after(&self, name: &str, epoch: u64) -> ClusterRecord {
        // Generous: a first primary of a WebAssembly guest with files first
        // makes its module snapshottable (seconds; tens on a loaded machine).
        wait_for(&format!("{name} to be primary after epoch {epoch}"), Duration::from_secs(120), || {
            let r = self.record().filter(|r| r.primary.node == name && r.epoch > epoch)?;
            let n = self.node(name);
            // A WebAssembly backup closes guest connections at once: an
            // answer means the guest serves.
            let serving = match n.kind {
                Kind::Kv => match &self.kv_probe {
                    Some(probe) => probe(&n.client),
                    None => serves_as_primary(&n.client, self.client_password.as_deref()),
                },
                Kind::Wasm => ping(&n.client),
                Kind::Example => std::net::TcpStream::connect(&n.client).is_ok(),
            };
            serving.then_some(r)
        })
    }

    pub fn wait_in_sync(&self, name: &str) -> ClusterRecord {
        wait_for(&format!("{name} to be an in-sync backup"), Duration::from_secs(120), || {
            self.record().filter(|r| r.backup.as_ref().is_some_and(|b| b.node == name && b.state == BackupState::InSync))
        })
    }

    pub fn conn(&self, name: &str) -> Conn {
        Conn::connect(&self.node(name).client, Duration::from_secs(10)).unwrap()
    }

    pub fn cluster_client(&self) -> Cluster {
        Cluster::new(self.arbiter(), CLUSTER, Duration::from_secs(5))
    }

    /// Dumps every log, for a failing test's output.
    pub fn dump_logs(&self) {
        for n in self.nodes.keys() {
            eprintln!("===== log of {n} =====\n{}", self.log_of(n));
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for n in self.nodes.values_mut() {
            if let Some(mut c) = n.child.take() {
                let _ = unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.kill_arbiter();
    }
}

/// The node says `role:master` in INFO (after AUTH with `password`).
pub fn serves_as_primary(addr: &str, password: Option<&str>) -> bool {
    Conn::connect(addr, Duration::from_secs(1))
        .and_then(|mut c| {
            if let Some(p) = password {
                c.call(&["AUTH", p])?;
            }
            c.call(&["INFO", "replication"])
        })
        .is_ok_and(|r| r.bytes().is_some_and(|b| String::from_utf8_lossy(b).contains("role:master")))
}

pub fn ping(addr: &str) -> bool {
    Conn::connect(addr, Duration::from_secs(1))
        .and_then(|mut c| c.call(&["PING"]))
        .is_ok_and(|r| r == Reply::Simple("PONG".into()))
}

/// Writers that follow the primary and record every acknowledged SET.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<(String, String)>>>,
    pub acked: Arc<std::sync::atomic::AtomicU64>,
}

impl Load {
    pub fn start(h: &Harness, clients: usize, prefix: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let threads = (0..clients)
            .map(|id| {
                let (stop, acked, url, prefix) = (stop.clone(), acked.clone(), h.arbiter_url(), prefix.to_string());
                std::thread::spawn(move || {
                    let arb = understudy_arbiter::connect(&url, SECRET.as_bytes()).unwrap();
                    let mut cl = Cluster::new(arb, CLUSTER, Duration::from_secs(3));
                    let mut done = Vec::new();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let (k, v) = (format!("{prefix}:{id}:{i}"), format!("{i}"));
                        match cl.try_call(&["SET", k.as_str(), v.as_str()]) {
                            Ok(Reply::Simple(s)) if s == "OK" => {
                                done.push((k, v));
                                acked.fetch_add(1, Ordering::Relaxed);
                                i += 1;
                            }
                            Ok(other) => panic!("unexpected reply {other:?}"),
                            Err(_) => std::thread::sleep(Duration::from_millis(5)),
                        }
                    }
                    done
                })
            })
            .collect();
        Load { stop, threads, acked }
    }

    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `n` more writes were acknowledged.
    pub fn wait_more(&self, n: u64, limit: Duration) {
        let target = self.acked() + n;
        wait_for(&format!("{n} more acknowledged writes"), limit, || (self.acked() >= target).then_some(()));
    }

    pub fn stop(self) -> Vec<(String, String)> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.into_iter().flat_map(|t| t.join().expect("load thread")).collect()
    }
}

/// Asserts every acknowledged write is on the node at `addr`.
pub fn assert_all_present(addr: &str, acked: &[(String, String)]) {
    let mut c = Conn::connect(addr, Duration::from_secs(10)).unwrap();
    let mut missing = Vec::new();
    for chunk in acked.chunks(500) {
        let cmds: Vec<Vec<&str>> = chunk.iter().map(|(k, _)| vec!["GET", k.as_str()]).collect();
        for ((k, v), r) in chunk.iter().zip(c.pipeline(&cmds).unwrap()) {
            if r.bytes() != Some(v.as_bytes()) {
                missing.push(format!("{k}={v} (got {r:?})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}

pub fn tmp_path(p: &Path) -> String {
    p.display().to_string()
}

/// `name:value` of an INFO reply.
pub fn info_field(info: &str, name: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("INFO has no {name}: {info}"))
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name} is a number: {info}"))
}
