//! The systems under test as processes: an in-process arbiter, understudy
//! nodes (KV and WebAssembly), Redis, the native guest build; and what the
//! kernel tells about them (`procfs`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use understudy_arbiter::{Arbiter, BackupState, ClusterRecord, RunningServer, Server};
use understudy_node::listening::{Document, GuestListening, Listening};

use crate::procfs::{cpu_time, rss_bytes};

/// How long a started process may take to report where it listens.
const LISTENING_WITHIN: Duration = Duration::from_secs(30);

/// Waits for process `pid` to write `dir/listening.json`.
fn listening<D: Document>(dir: &Path, pid: u32, name: &str) -> Result<D> {
    D::wait(dir, pid, LISTENING_WITHIN).map_err(|e| anyhow::anyhow!("{name} did not report its addresses: {e}"))
}

/// A port for a third-party server that cannot listen on port 0 and say
/// which port it got (Redis with a replica, which needs TCP): drawn at
/// random below Linux's ephemeral range (32768–60999), where no port-0
/// listener ever lands. The caller checks that the process answering is
/// its own and draws again otherwise.
pub fn random_low_port() -> Result<u16> {
    let mut b = [0u8; 2];
    getrandom::fill(&mut b).context("reading the OS random source")?;
    Ok(20000 + u16::from_le_bytes(b) % 12768)
}

/// A child process, killed (SIGKILL) when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub pid: u32,
    /// The client address it serves (RESP), if any.
    pub addr: String,
    /// Its `--metrics-listen`, if any.
    pub metrics: Option<String>,
}

impl Proc {
    pub fn start(name: &str, cmd: &mut Command, addr: String, metrics: Option<String>) -> Result<Proc> {
        let child = cmd.spawn().with_context(|| format!("starting {name} ({cmd:?})"))?;
        Ok(Proc { name: name.into(), pid: child.id(), child, addr, metrics })
    }

    /// kill -9, and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                bail!("{} did not exit within {limit:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn rss(&self) -> u64 {
        rss_bytes(self.pid).unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls until a process has used no CPU for `quiet` (it compiled its
/// guest and now blocks, e.g. reading stdin).
pub fn wait_idle(pid: u32, quiet: Duration, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut last = cpu_time(pid).context("process gone")?;
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = cpu_time(pid).context("process gone")?;
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= quiet {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("process {pid} still busy after {limit:?}");
        }
    }
}

/// One scrape of a node's `/metrics`: `name value` pairs (labels kept in the name).
pub fn scrape(addr: &str) -> Result<Vec<(String, f64)>> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("metrics at {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect())
}

pub fn metric(m: &[(String, f64)], name: &str) -> f64 {
    m.iter().find(|(k, _)| k == name).map_or(0.0, |(_, v)| *v)
}

/// The worst event-loop lag a node saw (upper bound of the highest
/// non-empty bucket of `understudy_event_loop_lag_seconds`), in seconds.
pub fn worst_loop_lag(m: &[(String, f64)]) -> f64 {
    let prefix = "understudy_event_loop_lag_seconds_bucket{le=\"";
    let mut buckets: Vec<(f64, f64)> = m
        .iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix(prefix)?.strip_suffix("\"}")?;
            Some((if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? }, *v))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.1);
    buckets.iter().find(|(_, c)| *c >= total).map_or(f64::NAN, |(le, _)| *le)
}

/// The worst event-loop lag of each of `procs` (by their metrics).
pub fn loop_lags(procs: &[Proc]) -> Vec<(String, f64)> {
    procs.iter().filter_map(|p| Some((p.name.clone(), worst_loop_lag(&scrape(p.metrics.as_deref()?).ok()?)))).collect()
}

/// The gate-delay histogram of a scrape: (upper bound in seconds, cumulative count).
pub fn gate_buckets(m: &[(String, f64)]) -> Vec<(f64, f64)> {
    let prefix = "understudy_output_gate_delay_seconds_bucket{le=\"";
    m.iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix(prefix)?.strip_suffix("\"}")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, *v))
        })
        .collect()
}

/// Where everything of one bench run lives: the working directory, the
/// arbiter (in this process), and the `understudy` binary to start nodes with.
pub struct Env {
    pub dir: PathBuf,
    pub bin: PathBuf,
    pub arbiter_url: String,
    pub arbiter: Box<dyn Arbiter>,
    server: Option<RunningServer>,
    secret: PathBuf,
}

impl Env {
    /// `bin`: the `understudy` binary the nodes run.
    pub fn new(dir: &Path, bin: PathBuf) -> Result<Env> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let secret = b"bench-secret".to_vec();
        std::fs::write(dir.join("secret"), &secret)?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let server = Server::open(&dir.join("arbiter"), secret.clone())?.spawn(listener)?;
        let arbiter_url = server.url();
        Ok(Env {
            dir: dir.to_path_buf(),
            bin,
            arbiter: understudy_arbiter::connect(&arbiter_url, &secret)?,
            arbiter_url,
            server: Some(server),
            secret: dir.join("secret"),
        })
    }

    pub fn log(&self, name: &str) -> Result<std::fs::File> {
        Ok(std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join(format!("{name}.log")))?)
    }

    fn node_args(&self, cluster: &str, node: &str, dir: &Path) -> Vec<String> {
        let mut a: Vec<String> =
            ["--cluster", cluster, "--node", node, "--arbiter", &self.arbiter_url, "--repl-listen", "127.0.0.1:0"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        a.extend(["--secret-file".into(), self.secret.display().to_string(), "--dir".into(), dir.display().to_string()]);
        a
    }

    /// A KV node of `cluster` (it claims epoch 1 if the cluster has no
    /// primary, else joins as backup), with a metrics listener.
    pub fn kv(&self, cluster: &str, node: &str, extra: &[&str]) -> Result<Proc> {
        let dir = self.dir.join(format!("{cluster}-{node}"));
        let mut c = Command::new(&self.bin);
        c.arg("kv").args(self.node_args(cluster, node, &dir));
        c.args(["--client-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]).args(extra);
        c.stdout(Stdio::null()).stderr(self.log(&format!("{cluster}-{node}"))?);
        self.start_node(node, &mut c, &dir)
    }

    /// Starts a node and learns its addresses from its `listening.json`.
    fn start_node(&self, node: &str, c: &mut Command, dir: &Path) -> Result<Proc> {
        let mut p = Proc::start(node, c, String::new(), None)?;
        let l: Listening = listening(dir, p.pid, node)?;
        p.addr = l.client.to_string();
        p.metrics = l.metrics.map(|m| m.to_string());
        Ok(p)
    }

    /// A replicated WebAssembly node running `guest`; stdin piped if `stdin`.
    pub fn wasm_node(&self, cluster: &str, node: &str, guest: &Path, args: &[String], stdin: bool) -> Result<Proc> {
        self.wasm_node_with(cluster, node, guest, args, stdin, &[], &[])
    }

    /// [`Env::wasm_node`] with more flags and environment variables.
    #[allow(clippy::too_many_arguments)]
    pub fn wasm_node_with(
        &self,
        cluster: &str,
        node: &str,
        guest: &Path,
        args: &[String],
        stdin: bool,
        flags: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Proc> {
        let dir = self.dir.join(format!("{cluster}-{node}"));
        let mut c = Command::new(&self.bin);
        c.arg("wasm").arg(guest);
        c.args(self.node_args(cluster, node, &dir));
        c.args(["--guest-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]).args(flags);
        c.envs(envs.iter().copied());
        if !args.is_empty() {
            c.arg("--").args(args);
        }
        c.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::null())
            .stderr(self.log(&format!("{cluster}-{node}"))?);
        self.start_node(node, &mut c, &dir)
    }

    /// An unprotected WebAssembly guest: no cluster, the same gate; with a
    /// listening socket (on port 0, read back) if `listen`.
    pub fn wasm_alone(&self, name: &str, guest: &Path, listen: bool, args: &[String], stdin: bool) -> Result<Proc> {
        self.wasm_alone_with(name, guest, listen, args, stdin, &[], &[])
    }

    /// [`Env::wasm_alone`] with more flags and environment variables.
    #[allow(clippy::too_many_arguments)]
    pub fn wasm_alone_with(
        &self,
        name: &str,
        guest: &Path,
        listen: bool,
        args: &[String],
        stdin: bool,
        flags: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Proc> {
        let dir = self.dir.join(name);
        let mut c = Command::new(&self.bin);
        c.arg("wasm").arg(guest).args(flags).envs(envs.iter().copied());
        if listen {
            c.args(["--guest-listen", "127.0.0.1:0", "--dir"]).arg(&dir);
        }
        if !args.is_empty() {
            c.arg("--").args(args);
        }
        c.stdin(if stdin { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::null()).stderr(self.log(name)?);
        let mut p = Proc::start(name, &mut c, String::new(), None)?;
        if listen {
            let l: GuestListening = listening(&dir, p.pid, name)?;
            p.addr = l.guest.to_string();
        }
        Ok(p)
    }

    /// The C RESP guest compiled natively (`kvserver-native`), on a port
    /// of its choosing, which it prints first on stderr.
    pub fn native_kvserver(&self, path: &Path) -> Result<Proc> {
        self.native_server(path, "kvserver", &[], &[])
    }

    /// A guest's C source compiled natively (`PROG-native`): it binds
    /// `LISTEN_ADDR` (port 0) and first prints `PROG: listening on ADDR`.
    pub fn native_server(&self, path: &Path, prog: &str, args: &[&str], envs: &[(&str, &str)]) -> Result<Proc> {
        use std::io::BufRead as _;
        let mut c = Command::new(path);
        c.args(args).envs(envs.iter().copied());
        c.env("LISTEN_ADDR", "127.0.0.1:0").stdout(Stdio::null()).stderr(Stdio::piped());
        let mut p = Proc::start("native", &mut c, String::new(), None)?;
        let mut err = std::io::BufReader::new(p.child.stderr.take().context("piped stderr")?);
        let mut line = String::new();
        err.read_line(&mut line).context("reading the native server's first line")?;
        let addr =
            line.trim().strip_prefix(&format!("{prog}: listening on ")).with_context(|| format!("{path:?} said {line:?}"))?;
        p.addr = addr.to_string();
        let mut log = self.log(&format!("native-{prog}"))?;
        std::thread::spawn(move || std::io::copy(&mut err, &mut log));
        Ok(p)
    }

    /// redis-server without persistence; a replica of `primary` if given.
    /// On TCP (a replica needs it) at a random low port, checked to be
    /// this very process (`INFO server` names its pid), else again
    /// elsewhere.
    pub fn redis(&self, name: &str, primary: Option<&str>) -> Result<Proc> {
        self.redis_with(name, primary, None)
    }

    /// [`Env::redis`], with an append-only file fsynced as `appendfsync`
    /// says (`always`, `everysec`, `no`) if given, in a directory of its own.
    pub fn redis_with(&self, name: &str, primary: Option<&str>, appendfsync: Option<&str>) -> Result<Proc> {
        let dir = match appendfsync {
            Some(_) => self.dir.join(name),
            None => self.dir.clone(),
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for _ in 0..8 {
            let port = random_low_port()?;
            let addr = format!("127.0.0.1:{port}");
            let mut c = Command::new("redis-server");
            c.args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
                .args(["--daemonize", "no", "--protected-mode", "no", "--dir"])
                .arg(&dir)
                .args(["--dbfilename", &format!("{name}.rdb"), "--logfile", ""]);
            match appendfsync {
                Some(mode) => c.args(["--appendonly", "yes", "--appendfsync", mode]),
                None => c.args(["--appendonly", "no"]),
            };
            if let Some(p) = primary {
                let (h, pp) = p.rsplit_once(':').context("host:port")?;
                c.args(["--replicaof", h, pp]);
            }
            c.stdout(self.log(name)?).stderr(self.log(name)?);
            let mut p = Proc::start(name, &mut c, addr.clone(), None).context("redis-server (Debian package redis-server)")?;
            if redis_is(&addr, &mut p, Duration::from_secs(20))? {
                return Ok(p);
            }
            p.kill9();
        }
        bail!("redis-server {name}: every port tried was taken (see {}/{name}.log)", self.dir.display())
    }

    pub fn record(&self, cluster: &str) -> Option<ClusterRecord> {
        self.arbiter.read(cluster).ok().flatten()
    }

    /// Polls the arbiter until `pred` holds.
    pub fn wait_for(
        &self,
        cluster: &str,
        what: &str,
        limit: Duration,
        pred: impl Fn(&ClusterRecord) -> bool,
    ) -> Result<ClusterRecord> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(r) = self.record(cluster).filter(|r| pred(r)) {
                return Ok(r);
            }
            if Instant::now() > deadline {
                bail!("timed out after {limit:?} waiting for {what}; logs in {}", self.dir.display());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn wait_primary(&self, cluster: &str, node: &str) -> Result<ClusterRecord> {
        self.wait_for(cluster, &format!("{node} to be primary of {cluster}"), Duration::from_secs(60), |r| r.primary.node == node)
    }

    /// Waits until a KV node serves as primary: the arbiter grants the
    /// epoch a moment before the node itself acts on the grant.
    pub fn wait_serving(&self, cluster: &str, p: &Proc) -> Result<()> {
        self.wait_primary(cluster, &p.name)?;
        let m = p.metrics.as_deref().context("a node with --metrics-listen")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !scrape(m).is_ok_and(|m| metric(&m, "understudy_primary") == 1.0) {
            if Instant::now() > deadline {
                bail!("{} is primary at the arbiter but does not serve after 30 s", p.name);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    pub fn wait_in_sync(&self, cluster: &str, node: &str) -> Result<ClusterRecord> {
        self.wait_for(cluster, &format!("{node} to be in sync in {cluster}"), Duration::from_secs(120), |r| {
            r.backup.as_ref().is_some_and(|b| b.node == node && b.state == BackupState::InSync)
        })
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = s.stop();
        }
    }
}

/// Waits until the Redis server at `addr` answers as process `p`: true;
/// false when `p` exited (its port was taken) or another server answers.
fn redis_is(addr: &str, p: &mut Proc, limit: Duration) -> Result<bool> {
    let deadline = Instant::now() + limit;
    loop {
        if p.child.try_wait()?.is_some() {
            return Ok(false);
        }
        if let Ok(info) = crate::load::call(addr, &["INFO", "server"]) {
            let pid = info.lines().find_map(|l| l.strip_prefix("process_id:")).map(str::trim);
            return Ok(pid == Some(p.pid.to_string().as_str()));
        }
        if Instant::now() > deadline {
            bail!("redis-server {} did not answer on {addr} within {limit:?}", p.name);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until a Redis replica reports its link to the primary up and in sync.
pub fn wait_redis_replica(addr: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        let info = crate::load::call(addr, &["INFO", "replication"]).unwrap_or_default();
        if info.contains("master_link_status:up") && !info.contains("master_sync_in_progress:1") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the Redis replica at {addr} did not sync within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
