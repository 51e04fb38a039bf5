//! `understudy demo`: the main job on embedded defaults, end to end, with
//! real processes and a real kill -9 — at the application level (the
//! built-in key-value service), at the machine level (an unmodified C
//! server compiled to WebAssembly, shipped inside this binary), or both.
//! Each level ends with a report and a picture of the failover
//! (`timeline`): on the terminal and as an SVG file next to the logs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use understudy_arbiter::{Arbiter, BackupState, ClusterRecord, RunningServer, Server};
use understudy_client::{Cluster, Conn, Reply};
use understudy_node::listening::{Document as _, Listening};

use crate::timeline::{Marker, Timeline};

#[derive(Args)]
pub struct DemoArgs {
    /// What is replicated: `kv`, the built-in Redis-protocol key-value
    /// service (application level); `machine`, guests/kvserver.c — a plain
    /// C RESP server compiled to wasm32-wasip1, shipped inside this binary —
    /// on the deterministic WebAssembly hypervisor (machine level); `both`,
    /// one after the other.
    #[arg(long, value_enum, default_value_t = Level::Both)]
    pub level: Level,
    /// Client threads writing during the demo.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Seconds of load before the primary is killed (at each level).
    #[arg(long, default_value_t = 3)]
    pub load_secs: u64,
    /// Working directory for logs, state and the timeline pictures; one
    /// subdirectory per level (default: a fresh one under $TMPDIR).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the logs and state afterwards (the pictures are always kept).
    #[arg(long)]
    pub keep: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Level {
    Kv,
    Machine,
    Both,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Kv => "kv",
            Level::Machine => "machine",
            Level::Both => "both",
        }
    }
}

/// The machine level's guest: guests/kvserver.c built by `sh
/// guests/build.sh --prebuilt` (`tests/prebuilt_guest.rs` checks these
/// bytes against a rebuild), so the demo needs no C toolchain.
pub const KVSERVER_WASM: &[u8] = include_bytes!("../guests/prebuilt/kvserver.wasm");
const GUEST_FILE: &str = "kvserver.wasm";
/// The picture's file, in each level's directory.
pub const TIMELINE_FILE: &str = "timeline.svg";
/// Width of a bucket of the timeline.
const BUCKET: Duration = Duration::from_millis(50);
/// Buckets per row of the terminal timeline (3 s).
const TEXT_WIDTH: usize = 60;

const CLUSTER: &str = "demo";

/// Child processes, killed when the demo ends however it ends.
struct Nodes {
    children: Vec<(String, Child)>,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Demo {
    level: Level,
    /// The guest module (machine level).
    guest: Option<PathBuf>,
    start: Instant,
    dir: PathBuf,
    arbiter_url: String,
    arbiter: Box<dyn Arbiter>,
    nodes: Nodes,
}

impl Demo {
    fn say(&self, msg: impl AsRef<str>) {
        println!("[{:5.1}s] {}", self.start.elapsed().as_secs_f64(), msg.as_ref());
    }

    /// Starts node `name` on port 0 and returns what it reports in
    /// `listening.json`: its client (or guest) and metrics addresses.
    fn spawn_node(&mut self, name: &str) -> Result<Listening> {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))?;
        let node_dir = self.dir.join(name);
        let mut cmd = Command::new(std::env::current_exe()?);
        match &self.guest {
            None => cmd.arg("kv").args(["--client-listen", "127.0.0.1:0"]),
            Some(g) => cmd.arg("wasm").arg(g).args(["--guest-listen", "127.0.0.1:0"]),
        };
        let child = cmd
            .args(["--cluster", CLUSTER, "--node", name, "--arbiter", &self.arbiter_url])
            .args(["--repl-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .arg("--dir")
            .arg(&node_dir)
            .arg("--secret-file")
            .arg(self.dir.join("secret"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting a node")?;
        let pid = child.id();
        self.nodes.children.push((name.to_string(), child));
        Listening::wait(&node_dir, pid, Duration::from_secs(60)).map_err(|e| {
            anyhow::anyhow!("node {name} did not report its addresses: {e}; its log is {}/{name}.log", self.dir.display())
        })
    }

    fn log_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Waits until the primary at `client` answers PING (a WebAssembly
    /// primary may still be preparing its guest after it won its epoch).
    fn wait_serving(&self, client: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let pong = Conn::connect(client, Duration::from_secs(1))
                .and_then(|mut c| c.call(&["PING"]))
                .is_ok_and(|r| r == Reply::Simple("PONG".into()));
            if pong {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the primary at {client} did not answer PING within {limit:?}; logs are in {}", self.dir.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn record(&self) -> Option<ClusterRecord> {
        self.arbiter.read(CLUSTER).ok().flatten()
    }

    /// Polls the arbiter until `pred` holds (the nodes publish there).
    fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn(&ClusterRecord) -> bool) -> Result<ClusterRecord> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(r) = self.record().filter(|r| pred(r)) {
                return Ok(r);
            }
            if Instant::now() > deadline {
                bail!("timed out after {limit:?} waiting for {what}; logs are in {}", self.dir.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self, name: &str) -> Result<u32> {
        let (_, child) = self.nodes.children.iter_mut().find(|(n, _)| n == name).context("no such node")?;
        let pid = child.id();
        child.kill()?; // SIGKILL
        child.wait()?;
        Ok(pid)
    }
}

fn in_sync(r: &ClusterRecord, node: &str) -> bool {
    r.backup.as_ref().is_some_and(|b| b.node == node && b.state == BackupState::InSync)
}

/// An acknowledged write: key, value, when, and which node acknowledged it.
struct Ack {
    key: String,
    val: String,
    at: Instant,
    by: String,
}

type Acks = Vec<Ack>;

fn writer(arbiter_url: String, secret: Vec<u8>, id: usize, stop: Arc<AtomicBool>) -> Result<Acks> {
    let arb = understudy_arbiter::connect(&arbiter_url, &secret)?;
    let mut cluster = Cluster::new(arb, CLUSTER, Duration::from_secs(2));
    let mut acks = Acks::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (key, val) = (format!("demo:{id}:{i}"), format!("v{i}"));
        // Retrying the same SET is idempotent: at-least-once is harmless here.
        match cluster.try_call(&["SET", key.as_str(), val.as_str()]) {
            Ok(Reply::Simple(s)) if s == "OK" => {
                let by = cluster.connected_to().unwrap_or_default().to_string();
                acks.push(Ack { key, val, at: Instant::now(), by });
                i += 1;
            }
            Ok(other) => bail!("unexpected reply to SET: {other:?}"),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    Ok(acks)
}

pub fn run(a: DemoArgs) -> Result<ExitCode> {
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("understudy-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // The demo narrates; the embedded arbiter's own log lines would be noise
    // (even its warnings: a writer that ends resets its connection).
    if std::env::var_os("UNDERSTUDY_LOG").is_none() {
        log::set_max_level(log::LevelFilter::Error);
    }
    println!("understudy demo: logs and state in {}", dir.display());
    let levels: &[Level] = match a.level {
        Level::Both => &[Level::Kv, Level::Machine],
        Level::Kv => &[Level::Kv],
        Level::Machine => &[Level::Machine],
    };
    let start = Instant::now();
    let mut ok = true;
    for &level in levels {
        match run_level(level, &a, &dir.join(level.name())) {
            Ok(true) => {}
            Ok(false) => ok = false,
            Err(e) => {
                println!("demo failed at the {} level: {e:#}", level.name());
                ok = false;
            }
        }
    }
    if levels.len() > 1 {
        println!();
        let verdict = if ok { "no acknowledged write lost" } else { "FAILED" };
        println!("both levels in {:.1} s: {verdict}", start.elapsed().as_secs_f64());
    }
    if ok && !a.keep && a.dir.is_none() {
        remove_all_but_pictures(&dir);
        println!("logs and state removed (--keep keeps them); the timeline pictures stay in {}", dir.display());
    } else {
        println!("logs kept in {}", dir.display());
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Removes the demo's logs and state, not the SVG pictures the report named.
fn remove_all_but_pictures(dir: &Path) {
    let Ok(levels) = std::fs::read_dir(dir) else { return };
    for level in levels.flatten() {
        let Ok(entries) = std::fs::read_dir(level.path()) else { continue };
        for e in entries.flatten().filter(|e| e.file_name() != TIMELINE_FILE) {
            let p = e.path();
            let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        }
    }
}

/// One level's story, with its own arbiter, secret and nodes in `dir`.
fn run_level(level: Level, a: &DemoArgs, dir: &Path) -> Result<bool> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut raw = [0u8; 24];
    getrandom::fill(&mut raw).context("reading the OS random source")?;
    let secret: Vec<u8> = raw.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes();
    std::fs::write(dir.join("secret"), &secret)?;
    let guest = match level {
        Level::Machine => {
            let p = dir.join(GUEST_FILE);
            std::fs::write(&p, KVSERVER_WASM).with_context(|| format!("writing the guest to {}", p.display()))?;
            Some(p)
        }
        _ => None,
    };
    println!();
    match level {
        Level::Machine => println!(
            "== machine level: guests/kvserver.c, a plain C RESP server compiled to wasm32-wasip1 ({} KiB, carried inside \
             this binary), replicated by deterministic replay of every host call",
            KVSERVER_WASM.len() / 1024
        ),
        _ => println!("== application level: the built-in Redis-protocol key-value service"),
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let server: RunningServer = Server::open(&dir.join("arbiter"), secret.clone())?.spawn(listener)?;
    let arbiter_url = server.url();
    let mut d = Demo {
        level,
        guest,
        start: Instant::now(),
        arbiter: understudy_arbiter::connect(&arbiter_url, &secret)?,
        arbiter_url,
        dir: dir.to_path_buf(),
        nodes: Nodes { children: Vec::new() },
    };
    d.say(format!("built-in arbiter listening at {}", d.arbiter_url));
    let result = script(&mut d, a, &secret);
    drop(d.nodes);
    server.stop().ok();
    result
}

/// Moments of the story, for the report and the timeline.
struct Moments {
    load: Instant,
    kill: Instant,
    live: Instant,
    join: Instant,
    in_sync: Instant,
    end: Instant,
}

fn script(d: &mut Demo, a: &DemoArgs, secret: &[u8]) -> Result<bool> {
    let machine = d.level == Level::Machine;
    let (serves, what) = if machine { ("guest's socket", "runs kvserver.wasm") } else { ("clients", "serves") };
    let first = d.spawn_node("a")?;
    let r = d.wait_for("node a to become primary", Duration::from_secs(60), |r| r.primary.node == "a")?;
    d.wait_serving(&first.client.to_string(), Duration::from_secs(60))?;
    d.say(format!("node a {what}: primary of epoch {} ({serves} at {})", r.epoch, r.primary.client));
    d.spawn_node("b")?;
    d.wait_for("node b to be in sync", Duration::from_secs(60), |r| in_sync(r, "b"))?;
    if machine {
        d.say("node b joined and is in sync: its guest replays every host call of a's; every reply of a's guest now waits for b's ack");
    } else {
        d.say("node b joined by state transfer and is in sync: every reply now waits for its ack");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let load = Instant::now();
    let threads: Vec<_> = (0..a.clients)
        .map(|id| {
            let (url, secret, stop) = (d.arbiter_url.clone(), secret.to_vec(), stop.clone());
            std::thread::spawn(move || writer(url, secret, id, stop))
        })
        .collect();
    d.say(format!("load: {} clients writing SET demo:<client>:<n> ...", a.clients));
    std::thread::sleep(Duration::from_secs(a.load_secs));

    let epoch_before = d.record().map_or(0, |r| r.epoch);
    let kill = Instant::now();
    let pid = d.kill("a")?;
    d.say(format!("kill -9 of the primary a (pid {pid}) while the clients write"));
    let r = d.wait_for("node b to go live", Duration::from_secs(30), |r| r.primary.node == "b" && r.epoch > epoch_before)?;
    let live = Instant::now();
    let whose = if machine { "b's guest" } else { "b" };
    d.say(format!("{whose} went live: primary of epoch {} after {:.0} ms", r.epoch, (live - kill).as_secs_f64() * 1e3));

    let join = Instant::now();
    let joiner = d.spawn_node("c")?;
    d.wait_for("node c to be in sync", Duration::from_secs(60), |r| in_sync(r, "c"))?;
    let in_sync_at = Instant::now();
    let join_time = in_sync_at - join;
    let how = if !machine {
        "by state transfer"
    } else if d.log_of("c").contains("from its live snapshot") {
        "by a live snapshot of the running guest"
    } else {
        "by replaying the log retained since the guest started (no wasm-opt here: Debian's binaryen gives live snapshots)"
    };
    d.say(format!("node c joined b under load {how}, in sync after {:.0} ms", join_time.as_secs_f64() * 1e3));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let acks: Vec<Acks> = threads.into_iter().map(|t| t.join().expect("writer thread")).collect::<Result<_>>()?;
    let acks: Vec<_> = acks.into_iter().flatten().collect();
    let at = Moments { load, kill, live, join, in_sync: in_sync_at, end: Instant::now() };

    let survivor = d.record().context("reading the arbiter")?.primary.client;
    // Failover time: from the kill to the first write the new primary acknowledged.
    let failover = acks.iter().filter(|a| a.by == survivor && a.at > kill).map(|a| a.at - kill).min();
    let (found, lost) = verify(&survivor, &acks)?;
    let bytes = match joiner.metrics {
        Some(m) => snapshot_bytes(&m.to_string())?,
        None => bail!("node c reported no metrics address"),
    };
    println!();
    println!("report ({} level)", d.level.name());
    println!("  writes acknowledged            {}", acks.len());
    println!("  found on the survivor (b)      {found}");
    println!("  lost                           {lost}");
    match failover {
        Some(f) => println!("  failover (kill -9 -> next ack) {:.0} ms", f.as_secs_f64() * 1e3),
        None => println!("  failover (kill -9 -> next ack) no write was acknowledged after the kill"),
    }
    println!("  join of c (start -> in sync)   {:.0} ms", join_time.as_secs_f64() * 1e3);
    println!("  state transferred to c         {bytes} bytes");
    let picture = picture(d, &acks, &at)?;
    println!("  timeline picture               {}", picture.display());
    if lost > 0 {
        println!("FAILED: {lost} acknowledged writes are missing on the survivor");
    }
    Ok(lost == 0 && failover.is_some())
}

/// Prints the timeline of acknowledged writes and writes it as an SVG
/// file in the level's directory; returns the file's path.
fn picture(d: &Demo, acks: &[Ack], at: &Moments) -> Result<PathBuf> {
    let since = |t: Instant| t.saturating_duration_since(at.load);
    let primary = if d.level == Level::Machine { "b's guest" } else { "b" };
    let markers = vec![
        Marker { at: since(at.kill), symbol: 'K', label: "kill -9 of the primary a".into() },
        Marker { at: since(at.live), symbol: 'L', label: format!("{primary} live") },
        Marker { at: since(at.join), symbol: 'J', label: "c starts to join".into() },
        Marker { at: since(at.in_sync), symbol: 'S', label: "c in sync".into() },
    ];
    let t = Timeline::new(BUCKET, since(at.end), acks.iter().map(|a| since(a.at)), markers);
    println!();
    print!("{}", t.text(TEXT_WIDTH));
    let title = match d.level {
        Level::Machine => "understudy demo, machine level: a C RESP server compiled to WebAssembly survives kill -9",
        _ => "understudy demo, application level: the key-value service survives kill -9",
    };
    let path = d.dir.join(TIMELINE_FILE);
    std::fs::write(&path, t.svg(title)).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Reads every acknowledged key back from the survivor, pipelined.
fn verify(addr: &str, acks: &[Ack]) -> Result<(usize, usize)> {
    let mut c = Conn::connect(addr, Duration::from_secs(5))?;
    let (mut found, mut lost) = (0, 0);
    for chunk in acks.chunks(1000) {
        let cmds: Vec<Vec<&str>> = chunk.iter().map(|a| vec!["GET", a.key.as_str()]).collect();
        for (a, reply) in chunk.iter().zip(c.pipeline(&cmds)?) {
            if reply.bytes() == Some(a.val.as_bytes()) {
                found += 1;
            } else {
                lost += 1;
                if lost <= 5 {
                    println!("  missing: {} (expected {}, got {reply:?})", a.key, a.val);
                }
            }
        }
    }
    Ok((found, lost))
}

/// What the joiner's metrics page says it loaded by state transfer.
fn snapshot_bytes(metrics: &str) -> Result<u64> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(metrics).with_context(|| format!("node c's metrics at {metrics}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
    let mut page = String::new();
    s.read_to_string(&mut page)?;
    page.lines()
        .find_map(|l| l.strip_prefix("understudy_snapshot_bytes_received_total "))
        .and_then(|v| v.trim().parse().ok())
        .context("node c's metrics have no understudy_snapshot_bytes_received_total")
}
