//! The command line (DESIGN §4). Each subcommand is a thin shell over a
//! library crate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use understudy_core::Config;
use understudy_node::NodeOptions;

#[derive(Parser)]
#[command(
    name = "understudy",
    version,
    about = "Primary/backup fault tolerance after VMware FT: a backup replays every input and takes over on failure"
)]
pub struct Cli {
    /// error, warn, info, debug or trace (default: info).
    #[arg(long, global = true, env = "UNDERSTUDY_LOG", value_parser = log_level)]
    pub log_level: Option<String>,
    /// How log lines on stderr look. TIME is RFC 3339 UTC with
    /// milliseconds; NODE is --node (`arbiter` for the arbiter).
    #[arg(long, global = true, value_enum, default_value_t, env = "UNDERSTUDY_LOG_FORMAT")]
    pub log_format: crate::logger::Format,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run the main job on embedded defaults: arbiter, primary and backup on
    /// loopback, a write load, kill -9 of the primary, failover, a new backup
    /// by state transfer, and a report. Exits non-zero if an acknowledged
    /// write was lost.
    Demo(crate::demo::DemoArgs),
    /// Run the built-in arbiter (the test-and-set that picks the primary).
    Arbiter(ArbiterArgs),
    /// Run a node of a replicated Redis-protocol key-value service.
    Kv(Box<KvArgs>),
    /// Run a wasm32-wasip1 program: replicated (--cluster …), or standalone
    /// and recorded (--record LOG), or standalone and unprotected.
    Wasm(Box<crate::wasm_cli::WasmArgs>),
    /// Re-execute a recorded guest from its log and verify outputs, exit
    /// code and memory.
    Replay(crate::wasm_cli::ReplayArgs),
    // Its help is StatusArgs' doc comment (the exit status contract).
    Status(crate::status::StatusArgs),
    /// Abandon the state of a cluster whose last in-sync replica died, so
    /// the next node starts it empty (refused while its primary answers).
    Forget(crate::forget::ForgetArgs),
    /// Switch a protected cluster's primary and backup without stopping
    /// either (the primary hands over and rejoins as backup).
    Switchover(crate::switchover::SwitchoverArgs),
    /// Run the seeded simulator of the protocol core (crashes, partitions,
    /// freezes, arbiter outages) and check every invariant.
    Sim(crate::sim::SimArgs),
}

#[derive(Args)]
pub struct ArbiterArgs {
    /// Address to listen on, e.g. 10.0.0.9:7700 (port 0: any free port,
    /// reported in the log and in DIR/listening.json).
    #[arg(long, value_parser = listen_addr)]
    pub listen: SocketAddr,
    /// Directory where epochs are persisted (fsynced before every answer).
    #[arg(long)]
    pub dir: PathBuf,
    /// File holding the shared secret clients must prove.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Serve Prometheus metrics (requests, claims granted and refused,
    /// refused connections, clusters and their epochs, each node's last
    /// contact) at http://ADDR/metrics. Port 0: any free port, reported in
    /// the log and in DIR/listening.json.
    #[arg(long, value_name = "ADDR", value_parser = listen_addr)]
    pub metrics_listen: Option<SocketAddr>,
    /// Read flags from this TOML file; its keys are the long flags
    /// (`listen = "10.0.0.9:7700"`). A flag on the command line or in the
    /// environment (UNDERSTUDY_<FLAG>) wins over the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Args)]
pub struct KvArgs {
    /// Cluster name: every node of one replicated service uses the same.
    #[arg(long)]
    pub cluster: String,
    /// This node's name, distinct within the cluster.
    #[arg(long)]
    pub node: String,
    /// understudy://HOST:PORT, file:///shared/dir or etcd://HOST:PORT,...
    #[arg(long)]
    pub arbiter: String,
    /// Where clients connect (RESP). Port 0: any free port, reported in the
    /// log, at the arbiter and in DIR/listening.json.
    #[arg(long, value_parser = listen_addr)]
    pub client_listen: SocketAddr,
    /// Where the logging channel listens; joiners connect here.
    #[arg(long, value_parser = listen_addr)]
    pub repl_listen: SocketAddr,
    /// State directory of this node.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Read flags from this TOML file; its keys are the long flags
    /// (`cluster = "shop"`, `heartbeat-ms = 50`). A flag on the command line
    /// or in the environment (UNDERSTUDY_<FLAG>) wins over the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub common: NodeFlags,
}

/// Flags every node kind shares.
#[derive(Args, Clone)]
pub struct NodeFlags {
    /// File holding the shared secret of the logging channel (and arbiter).
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Client address to publish (default: --client-listen, with 0.0.0.0
    /// replaced by the --repl-listen host).
    #[arg(long)]
    pub advertise_client: Option<String>,
    /// Replication address to publish (default: --repl-listen).
    #[arg(long)]
    pub advertise_repl: Option<String>,
    /// Heartbeat interval on the logging channel.
    #[arg(long, default_value_t = Config::default().heartbeat_ms)]
    pub heartbeat_ms: u64,
    /// Silence after which the peer is declared failed.
    #[arg(long, default_value_t = Config::default().failover_timeout_ms)]
    pub failover_timeout_ms: u64,
    /// Flow control: most entries the backup may lag behind in execution.
    #[arg(long, default_value_t = Config::default().lag_entries_max)]
    pub lag_entries_max: u64,
    /// Largest frame accepted on the logging channel.
    #[arg(long, default_value_t = NodeOptions::FRAME_BYTES_MAX, value_parser = size_u64)]
    pub frame_bytes_max: u64,
    /// Largest client request accepted.
    #[arg(long, default_value_t = NodeOptions::REQUEST_BYTES_MAX, value_parser = size_usize)]
    pub request_bytes_max: usize,
    /// Chunk size of the snapshot stream of a join.
    #[arg(long, default_value_t = NodeOptions::SNAPSHOT_CHUNK_BYTES, value_parser = size_usize)]
    pub snapshot_chunk_bytes: usize,
    /// Entries a joiner may buffer while loading its snapshot.
    #[arg(long, default_value_t = NodeOptions::JOIN_BUFFER_BYTES, value_parser = size_usize)]
    pub join_buffer_bytes: usize,
    /// Replies a client may have waiting at the output gate before the node
    /// stops reading its requests.
    #[arg(long, default_value_t = NodeOptions::CLIENT_PENDING_BYTES_MAX, value_parser = size_usize)]
    pub client_pending_bytes_max: usize,
    /// Bytes of log queued for the backup beyond which the primary stops
    /// taking requests until they are sent.
    #[arg(long, default_value_t = NodeOptions::CHANNEL_BACKLOG_BYTES_MAX, value_parser = size_usize)]
    pub channel_backlog_bytes_max: usize,
    /// Serve Prometheus metrics (role, epoch, lag, output-gate delay, log
    /// and state-transfer bytes) at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR", value_parser = listen_addr)]
    pub metrics_listen: Option<SocketAddr>,
}

impl Cli {
    /// The name a node's log lines carry: `--node` of kv and wasm, and
    /// `arbiter` for the arbiter.
    pub fn node_name(&self) -> Option<String> {
        match &self.cmd {
            Cmd::Kv(a) => Some(a.node.clone()),
            Cmd::Wasm(a) => a.node.clone(),
            Cmd::Arbiter(_) => Some("arbiter".into()),
            _ => None,
        }
    }

    /// Whether a panic must end the whole process (fail-stop): in the
    /// commands that run a replica or the arbiter, where a process that
    /// limps on with one thread dead is worse than a dead one. Elsewhere a
    /// panic unwinds as usual (`sim` reports a panicking seed and goes on).
    pub fn fail_stop(&self) -> bool {
        matches!(self.cmd, Cmd::Kv(_) | Cmd::Wasm(_) | Cmd::Arbiter(_))
    }

    /// `--config` (or `UNDERSTUDY_CONFIG`) of the subcommands that take it.
    pub fn config_file(&self) -> Option<&std::path::Path> {
        match &self.cmd {
            Cmd::Kv(a) => a.config.as_deref(),
            Cmd::Wasm(a) => a.config.as_deref(),
            Cmd::Arbiter(a) => a.config.as_deref(),
            Cmd::Status(a) => a.config.as_deref(),
            _ => None,
        }
    }
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.cmd {
        Cmd::Demo(a) => crate::demo::run(a),
        Cmd::Arbiter(a) => arbiter(a),
        Cmd::Kv(a) => kv(*a),
        Cmd::Wasm(a) => crate::wasm_cli::wasm(*a),
        Cmd::Replay(a) => crate::wasm_cli::replay(a),
        Cmd::Status(a) => crate::status::status(a),
        Cmd::Forget(a) => crate::forget::forget(a),
        Cmd::Switchover(a) => crate::switchover::switchover(a),
        Cmd::Sim(a) => crate::sim::sim(a),
    }
}

/// Checks a `--log-level`.
fn log_level(s: &str) -> std::result::Result<String, String> {
    match s.parse::<log::LevelFilter>() {
        Ok(_) => Ok(s.to_string()),
        Err(_) => Err("expected one of error, warn, info, debug, trace, off".into()),
    }
}

/// Parses a listening address: `IP:PORT` or `HOST:PORT` (resolved now; the
/// first address wins). Port 0 asks the kernel for a free port.
pub fn listen_addr(s: &str) -> std::result::Result<SocketAddr, String> {
    use std::net::ToSocketAddrs as _;
    let bad = |why: String| format!("{s:?} is not HOST:PORT (e.g. 127.0.0.1:6379, localhost:0, [::1]:7700): {why}");
    if !s.contains(':') {
        return Err(bad("no port".into()));
    }
    let mut addrs = s.to_socket_addrs().map_err(|e| bad(e.to_string()))?;
    addrs.next().ok_or_else(|| bad("the name resolves to no address".into()))
}

/// Parses a size in bytes: a number, or a number with a unit `KiB`, `MiB`,
/// `GiB`, `TiB` (powers of 1024; `K`, `M`, `G`, `T`, `KB`… are accepted as
/// the same), e.g. `64MiB`, `256KiB`, `1GiB`.
pub fn size_u64(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size (e.g. 4096, 256KiB, 64MiB, 1GiB)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        u => return Err(format!("{s:?}: unknown unit {u:?} (use KiB, MiB, GiB or TiB)")),
    };
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("{s:?} is too large"))
}

/// [`size_u64`] for sizes held in a `usize`.
pub fn size_usize(s: &str) -> std::result::Result<usize, String> {
    usize::try_from(size_u64(s)?).map_err(|_| format!("{s:?} is too large"))
}

/// Reads `--secret-file`; a trailing newline is not part of the secret.
pub fn read_secret(path: Option<&PathBuf>) -> Result<Vec<u8>> {
    let Some(p) = path else { return Ok(Vec::new()) };
    let mut s = std::fs::read(p).with_context(|| format!("reading --secret-file {}", p.display()))?;
    while s.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        s.pop();
    }
    if s.is_empty() {
        bail!("--secret-file {} is empty", p.display());
    }
    Ok(s)
}

fn arbiter(a: ArbiterArgs) -> Result<ExitCode> {
    let secret = read_secret(a.secret_file.as_ref())?;
    let listener = std::net::TcpListener::bind(a.listen).with_context(|| format!("cannot listen on --listen {}", a.listen))?;
    let bound = listener.local_addr().context("the arbiter's listening address")?;
    let metrics = match a.metrics_listen {
        Some(m) => {
            let l = std::net::TcpListener::bind(m).with_context(|| format!("cannot listen on --metrics-listen {m}"))?;
            let at = l.local_addr().context("the --metrics-listen address")?;
            Some((l, at))
        }
        None => None,
    };
    std::fs::create_dir_all(&a.dir).with_context(|| format!("cannot create --dir {}", a.dir.display()))?;
    // Lock and load --dir before announcing: an arbiter started by mistake
    // on the --dir of a running one must not replace its listening.json.
    let server = understudy_arbiter::Server::open(&a.dir, secret)?;
    let metrics_at = metrics.as_ref().map(|(_, at)| *at);
    understudy_node::listening::announce_arbiter(&a.dir, bound, metrics_at)
        .with_context(|| format!("cannot write {} in --dir {}", understudy_node::listening::LISTENING_FILE, a.dir.display()))?;
    let shown = metrics_at.map(|m| format!(", metrics on http://{m}/metrics")).unwrap_or_default();
    log::info!("arbiter listening on {bound}{shown}, state in {}", a.dir.display());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    stop_on_signal(stop.clone())?;
    let scrapes = match metrics {
        Some((l, _)) => Some(server.serve_metrics(l, stop.clone()).context("--metrics-listen")?),
        None => None,
    };
    let served = server.run(listener, stop.clone());
    stop.store(true, std::sync::atomic::Ordering::Release);
    if let Some(t) = scrapes {
        let _ = t.join();
    }
    served?;
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM or SIGINT sets `stop`: the arbiter finishes the requests in
/// progress (each is fsynced before it is answered) and exits 0. A second
/// signal ends it at once.
fn stop_on_signal(stop: Arc<std::sync::atomic::AtomicBool>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build().context("the signal handler's runtime")?;
    let (mut term, mut int) = rt
        .block_on(async { Ok::<_, std::io::Error>((signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?)) })
        .context("installing the SIGTERM/SIGINT handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async {
                for n in 0.. {
                    let name = tokio::select! {
                        _ = term.recv() => "SIGTERM",
                        _ = int.recv() => "SIGINT",
                    };
                    if n > 0 {
                        log::warn!("{name} again: exiting now");
                        std::process::exit(1);
                    }
                    log::info!("{name}: finishing the requests in progress, then exiting");
                    stop.store(true, std::sync::atomic::Ordering::Release);
                }
            })
        })
        .context("starting the signal thread")?;
    Ok(())
}

pub fn node_options(
    cluster: String,
    node: String,
    arbiter: &str,
    client_listen: SocketAddr,
    repl_listen: SocketAddr,
    dir: Option<PathBuf>,
    f: &NodeFlags,
) -> Result<NodeOptions> {
    understudy_arbiter::validate_name("--cluster", &cluster)?;
    understudy_arbiter::validate_name("--node", &node)?;
    let secret = read_secret(f.secret_file.as_ref())?;
    let arb = understudy_arbiter::connect(arbiter, &secret)?;
    let opts = NodeOptions {
        cluster,
        node,
        arbiter: Arc::from(arb),
        client_listen,
        repl_listen,
        advertise_client: f.advertise_client.clone().unwrap_or_default(),
        advertise_repl: f.advertise_repl.clone().unwrap_or_default(),
        secret,
        dir,
        protocol: Config {
            heartbeat_ms: f.heartbeat_ms,
            failover_timeout_ms: f.failover_timeout_ms,
            lag_entries_max: f.lag_entries_max,
            ..Config::default()
        },
        frame_bytes_max: f.frame_bytes_max,
        request_bytes_max: f.request_bytes_max,
        snapshot_chunk_bytes: f.snapshot_chunk_bytes,
        join_buffer_bytes: f.join_buffer_bytes,
        client_pending_bytes_max: f.client_pending_bytes_max,
        channel_backlog_bytes_max: f.channel_backlog_bytes_max,
        metrics_listen: f.metrics_listen,
    };
    opts.validate().map_err(anyhow::Error::msg)?;
    Ok(opts)
}

fn kv(a: KvArgs) -> Result<ExitCode> {
    let opts = node_options(a.cluster, a.node, &a.arbiter, a.client_listen, a.repl_listen, a.dir, &a.common)?;
    understudy_node::run_kv(opts)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes to stdout; a reader that went away (`status | head`) is not an error.
pub fn print_out(t: &str) -> Result<()> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(t.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_the_units_the_readme_shows() {
        for (s, n) in
            [("4096", 4096), ("256KiB", 256 << 10), ("64MiB", 64 << 20), ("1GiB", 1 << 30), ("2g", 2 << 30), ("8 MB", 8 << 20)]
        {
            assert_eq!(size_u64(s), Ok(n), "{s}");
        }
        for bad in ["", "MiB", "1.5GiB", "12XB", "-1", "99999999999999999999TiB"] {
            assert!(size_u64(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn listen_addresses_take_host_names_and_port_0() {
        assert_eq!(listen_addr("127.0.0.1:0").unwrap().port(), 0);
        assert!(listen_addr("localhost:6379").unwrap().ip().is_loopback());
        assert!(listen_addr("localhost").unwrap_err().contains("no port"));
        assert!(listen_addr("nonexistent.invalid:1").is_err());
    }
}
