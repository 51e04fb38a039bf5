//! `understudy demo`: the main job on embedded defaults, end to end, with
//! real processes and a real kill -9.

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use understudy_arbiter::{Arbiter, BackupState, ClusterRecord, RunningServer, Server};
use understudy_client::{Cluster, Conn, Reply};
use understudy_node::listening::{Document as _, Listening};

#[derive(Args)]
pub struct DemoArgs {
    /// Client threads writing during the demo.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Seconds of load before the primary is killed.
    #[arg(long, default_value_t = 3)]
    pub load_secs: u64,
    /// Working directory for logs and state (default: a fresh one under $TMPDIR).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the working directory afterwards.
    #[arg(long)]
    pub keep: bool,
}

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

    /// Starts node `name` on port 0 and returns its client address, as the
    /// node reports it in `listening.json`.
    fn spawn_node(&mut self, name: &str) -> Result<String> {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))?;
        let node_dir = self.dir.join(name);
        let child = Command::new(std::env::current_exe()?)
            .args(["kv", "--cluster", CLUSTER, "--node", name, "--arbiter", &self.arbiter_url])
            .args(["--client-listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0"])
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
        let l = Listening::wait(&node_dir, pid, Duration::from_secs(20)).map_err(|e| {
            anyhow::anyhow!("node {name} did not report its addresses: {e}; its log is {}/{name}.log", self.dir.display())
        })?;
        Ok(l.client.to_string())
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
    let mut raw = [0u8; 24];
    getrandom::fill(&mut raw).context("reading the OS random source")?;
    let secret: Vec<u8> = raw.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes();
    std::fs::write(dir.join("secret"), &secret)?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let server: RunningServer = Server::open(&dir.join("arbiter"), secret.clone())?.spawn(listener)?;
    let arbiter_url = server.url();
    let mut d = Demo {
        start: Instant::now(),
        arbiter: understudy_arbiter::connect(&arbiter_url, &secret)?,
        arbiter_url,
        dir: dir.clone(),
        nodes: Nodes { children: Vec::new() },
    };
    // The demo narrates; the embedded arbiter's own log lines would be noise.
    if std::env::var_os("UNDERSTUDY_LOG").is_none() {
        log::set_max_level(log::LevelFilter::Warn);
    }
    println!("understudy demo: logs and state in {}", dir.display());
    d.say(format!("built-in arbiter listening at {}", d.arbiter_url));
    let result = script(&mut d, &a, &secret);
    drop(d.nodes);
    server.stop().ok();
    let ok = matches!(result, Ok(true));
    if let Err(e) = &result {
        println!("demo failed: {e:#}");
    }
    if ok && !a.keep && a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("logs kept in {}", dir.display());
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn script(d: &mut Demo, a: &DemoArgs, secret: &[u8]) -> Result<bool> {
    d.spawn_node("a")?;
    let r = d.wait_for("node a to become primary", Duration::from_secs(20), |r| r.primary.node == "a")?;
    d.say(format!("node a is primary of epoch {} (clients at {})", r.epoch, r.primary.client));
    d.spawn_node("b")?;
    d.wait_for("node b to be in sync", Duration::from_secs(30), |r| in_sync(r, "b"))?;
    d.say("node b joined by state transfer and is in sync: every reply now waits for its ack");

    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..a.clients)
        .map(|id| {
            let (url, secret, stop) = (d.arbiter_url.clone(), secret.to_vec(), stop.clone());
            std::thread::spawn(move || writer(url, secret, id, stop))
        })
        .collect();
    d.say(format!("load: {} clients writing SET demo:<client>:<n> ...", a.clients));
    std::thread::sleep(Duration::from_secs(a.load_secs));

    let epoch_before = d.record().map_or(0, |r| r.epoch);
    let t_kill = Instant::now();
    let pid = d.kill("a")?;
    d.say(format!("kill -9 of the primary a (pid {pid}) while the clients write"));
    let r = d.wait_for("node b to go live", Duration::from_secs(30), |r| r.primary.node == "b" && r.epoch > epoch_before)?;
    d.say(format!("b went live: primary of epoch {} after {:.0} ms", r.epoch, t_kill.elapsed().as_secs_f64() * 1e3));

    let t_join = Instant::now();
    let c_client = d.spawn_node("c")?;
    d.wait_for("node c to be in sync", Duration::from_secs(60), |r| in_sync(r, "c"))?;
    let join_time = t_join.elapsed();
    d.say(format!("node c joined b by state transfer under load and is in sync after {:.0} ms", join_time.as_secs_f64() * 1e3));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let acks: Vec<Acks> = threads.into_iter().map(|t| t.join().expect("writer thread")).collect::<Result<_>>()?;
    let acks: Vec<_> = acks.into_iter().flatten().collect();

    let survivor = d.record().context("reading the arbiter")?.primary.client;
    // Failover time: from the kill to the first write the new primary acknowledged.
    let failover = acks.iter().filter(|a| a.by == survivor && a.at > t_kill).map(|a| a.at - t_kill).min();
    let (found, lost) = verify(&survivor, &acks)?;
    let bytes = snapshot_bytes(&c_client)?;
    println!();
    println!("report");
    println!("  writes acknowledged            {}", acks.len());
    println!("  found on the survivor (b)      {found}");
    println!("  lost                           {lost}");
    match failover {
        Some(f) => println!("  failover (kill -9 -> next ack) {:.0} ms", f.as_secs_f64() * 1e3),
        None => println!("  failover (kill -9 -> next ack) no write was acknowledged after the kill"),
    }
    println!("  join of c (start -> in sync)   {:.0} ms", join_time.as_secs_f64() * 1e3);
    println!("  state transferred to c         {bytes} bytes");
    if lost > 0 {
        println!("FAILED: {lost} acknowledged writes are missing on the survivor");
    }
    Ok(lost == 0 && failover.is_some())
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

/// The joiner's INFO says how many snapshot bytes it received.
fn snapshot_bytes(client: &str) -> Result<u64> {
    let mut c = Conn::connect(client, Duration::from_secs(5))?;
    let info = c.call(&["INFO", "replication"])?;
    let text = String::from_utf8_lossy(info.bytes().context("INFO reply")?).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("snapshot_bytes_received:"))
        .and_then(|v| v.trim().parse().ok())
        .context("INFO has no snapshot_bytes_received")
}
