//! The command line (DESIGN §4). Each subcommand is a thin shell over a
//! library crate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::flags::{listen_addr, node_options, read_secret, NodeFlags};

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
    /// by state transfer, a report and a timeline (terminal and SVG); for
    /// the key-value service and for a C program compiled to WebAssembly
    /// (--level). Exits non-zero if an acknowledged write was lost.
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
    // Its help is SentinelArgs' doc comment.
    Sentinel(crate::sentinel::SentinelArgs),
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
    /// State directory of this node (with --appendfsync: its log and
    /// snapshots).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the replicated log and snapshots on disk in --dir, so that a
    /// power loss of the whole cluster loses no acknowledged write
    /// (`always`: fsync before every ack and release, one per batch), at
    /// most about a second of them (`everysec`), or what the OS had not
    /// written (`no`). Without it the state lives in memory only (a single
    /// machine's failure loses nothing in every mode).
    #[arg(long, value_name = "always|everysec|no")]
    pub appendfsync: Option<understudy_durable::Fsync>,
    /// With --appendfsync: write a snapshot to disk once this much log was
    /// written since the last one, then delete the log before it.
    #[arg(long, default_value_t = understudy_node::options::Persist::SNAPSHOT_EVERY_BYTES, value_parser = crate::flags::size_u64)]
    pub snapshot_every_bytes: u64,
    /// With --appendfsync: also write a snapshot once this many seconds
    /// passed since the last one and some log was written (0: by size
    /// only), so a restart replays at most that much log.
    #[arg(long, default_value_t = understudy_node::options::Persist::SNAPSHOT_EVERY_SECS)]
    pub snapshot_every_secs: u64,
    /// With --appendfsync: the most recent log a primary keeps in memory,
    /// so that a node restarting with its state on disk is sent only the
    /// entries it missed (Redis's repl-backlog-size); 0: always a full
    /// state transfer.
    #[arg(long, default_value_t = understudy_node::options::Persist::BACKLOG_BYTES, value_parser = crate::flags::size_usize)]
    pub repl_backlog_bytes: usize,
    /// File holding the password clients must give (AUTH pass, HELLO 3 AUTH
    /// default pass), as Redis's requirepass; without it, none is asked.
    #[arg(long, value_name = "FILE")]
    pub requirepass_file: Option<PathBuf>,
    /// File of ACL users, in Redis's ACL file syntax, one per line:
    /// `user NAME on|off >PASSWORD|nopass ~*|allkeys &*|allchannels
    /// +@all|-@all +@CATEGORY -@CATEGORY +COMMAND -COMMAND` (key and
    /// channel patterns other than `*` are refused, naming the line).
    /// Clients authenticate with AUTH user pass. Give both replicas the
    /// same file.
    #[arg(long, value_name = "FILE")]
    pub aclfile: Option<PathBuf>,
    /// Bound of the keyspace's memory estimate (INFO's used_memory), as
    /// Redis's maxmemory: bytes, or with Redis's units (`100mb`, `1gb`;
    /// `1k` is 1000, `1kb` 1024). 0: no bound. Past it, writes that may
    /// grow memory evict keys by --maxmemory-policy first, or are refused
    /// with -OOM. CONFIG SET maxmemory changes it on both replicas.
    #[arg(long, default_value = "0", value_parser = maxmemory_bytes)]
    pub maxmemory: u64,
    /// What to evict past --maxmemory: noeviction (refuse writes),
    /// allkeys-lru, volatile-lru (keys with a TTL only), allkeys-random,
    /// volatile-random or volatile-ttl.
    #[arg(long, default_value = "noeviction", value_parser = maxmemory_policy)]
    pub maxmemory_policy: understudy_kv::evict::Policy,
    /// Certificate chain (PEM) of the client port, which then speaks TLS
    /// only, as Redis's tls-port with port 0 (needs --tls-key). The nodes
    /// of a cluster share it: clients reach whichever is primary.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM): with TLS, every client must present a
    /// certificate one of them signed (Redis's tls-auth-clients yes).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Read flags from this TOML file; its keys are the long flags
    /// (`cluster = "shop"`, `heartbeat-ms = 50`). A flag on the command line
    /// or in the environment (UNDERSTUDY_<FLAG>) wins over the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub common: NodeFlags,
}

impl Cli {
    /// The name a node's log lines carry: `--node` of kv and wasm, and
    /// `arbiter` for the arbiter.
    pub fn node_name(&self) -> Option<String> {
        match &self.cmd {
            Cmd::Kv(a) => Some(a.node.clone()),
            Cmd::Wasm(a) => a.node.clone(),
            Cmd::Arbiter(_) => Some("arbiter".into()),
            Cmd::Sentinel(_) => Some("sentinel".into()),
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
            Cmd::Sentinel(a) => a.config.as_deref(),
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
        Cmd::Sentinel(a) => crate::sentinel::sentinel(a),
        Cmd::Sim(a) => crate::sim::sim(a),
    }
}

/// Parses `--maxmemory` as redis.conf reads it.
fn maxmemory_bytes(s: &str) -> std::result::Result<u64, String> {
    understudy_kv::evict::parse_memory(s.trim().as_bytes())
        .ok_or_else(|| format!("{s:?} is not a memory value (bytes, or e.g. 100mb, 1gb, 512kb; 1k is 1000 bytes, 1kb 1024)"))
}

/// Parses `--maxmemory-policy`.
fn maxmemory_policy(s: &str) -> std::result::Result<understudy_kv::evict::Policy, String> {
    understudy_kv::evict::Policy::parse(s.as_bytes()).ok_or_else(|| {
        let names: Vec<&str> = understudy_kv::evict::Policy::ALL.iter().map(|p| p.name()).collect();
        format!("expected one of {} (understudy has no LFU policies)", names.join(", "))
    })
}

/// Checks a `--log-level`.
fn log_level(s: &str) -> std::result::Result<String, String> {
    match s.parse::<log::LevelFilter>() {
        Ok(_) => Ok(s.to_string()),
        Err(_) => Err("expected one of error, warn, info, debug, trace, off".into()),
    }
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

fn kv(a: KvArgs) -> Result<ExitCode> {
    let password = crate::flags::read_password(a.requirepass_file.as_ref())?;
    let users = crate::flags::read_users(a.aclfile.as_deref(), password.as_deref())?;
    let tls = understudy_node::tls::ServerTls::from_flags(a.tls_cert.as_deref(), a.tls_key.as_deref(), a.tls_ca.as_deref())
        .map_err(anyhow::Error::msg)?;
    let mut opts = node_options(a.cluster, a.node, &a.arbiter, a.client_listen, a.repl_listen, a.dir, &a.common)?;
    opts.tls = tls;
    opts.set_persist(a.appendfsync.map(|fsync| understudy_node::options::Persist {
        snapshot_every_bytes: a.snapshot_every_bytes,
        snapshot_every_secs: a.snapshot_every_secs,
        backlog_bytes: a.repl_backlog_bytes,
        ..understudy_node::options::Persist::new(fsync)
    }));
    opts.validate().map_err(anyhow::Error::msg)?;
    let maxmemory = understudy_kv::evict::Maxmemory { bytes: a.maxmemory, policy: a.maxmemory_policy };
    understudy_node::run_kv(opts, users, a.aclfile.map(|p| p.display().to_string()), maxmemory)?;
    Ok(ExitCode::SUCCESS)
}
