//! `understudy sentinel`: the Redis Sentinel protocol over the arbiter, so
//! that applications configured for Sentinel (redis-py's
//! `Sentinel(...).master_for(name)`, Jedis, go-redis, Lettuce…) find a
//! key-value cluster's primary, and follow it across failovers, with no
//! code of their own. The Sentinel "master name" is the cluster name.
//!
//! A sentinel holds no state and votes on nothing: the arbiter's
//! test-and-set picks the primary, the sentinel reads it (every
//! `--poll-ms`) and reports it. Several run side by side, each on its own;
//! each reports `num-other-sentinels` 0 and a quorum of 1.
//!
//! One thread accepts, one reads the arbiter ([`crate::sentinel_watch`]),
//! one serves each client connection ([`crate::sentinel_cmd`], replies
//! described by [`crate::sentinel_reply`]).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use understudy_kv::resp::CommandParser;

use crate::flags::{listen_addr, read_secret};
use crate::sentinel_cmd::{Client, Next};
use crate::sentinel_reply::Shared;
use crate::sentinel_watch::Watch;

/// Largest request a client may send (Sentinel commands are short).
const REQUEST_BYTES_MAX: usize = 64 * 1024;
/// Replies are written out once this much is pending, within one read's
/// worth of pipelined commands.
const OUT_FLUSH_BYTES: usize = 64 * 1024;
/// A client that does not read its replies for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How soon a subscribed connection sees a published message.
const SUBSCRIBED_WAKE: Duration = Duration::from_millis(50);

/// Answer the Redis Sentinel protocol for the clusters an arbiter knows, so
/// that Sentinel-aware Redis clients find each cluster's primary (the
/// Sentinel "master name" is the cluster name) and hear `+switch-master`
/// when it changes
///
/// Stateless: it reads the arbiter every --poll-ms and answers from what it
/// read last (also while the arbiter is unreachable). Run several for
/// clients that list several sentinels; they need not know each other.
///
/// SENTINEL MASTERS (what redis-py's `master_for` asks) lists the clusters
/// named by --cluster plus those clients have asked for by name
/// (SENTINEL MASTER / GET-MASTER-ADDR-BY-NAME / REPLICAS NAME): the arbiter
/// has no list of its clusters to offer.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct SentinelArgs {
    /// understudy://HOST:PORT, file:///shared/dir or etcd://HOST:PORT,...
    #[arg(long)]
    pub arbiter: String,
    /// Where Sentinel clients connect, e.g. 0.0.0.0:26379 (port 0: any free
    /// port, reported in the log).
    #[arg(long, value_parser = listen_addr)]
    pub listen: SocketAddr,
    /// File holding the shared secret of the arbiter.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// File holding the password Sentinel clients must give (AUTH), as a
    /// Redis Sentinel's requirepass; without it, none is asked.
    #[arg(long, value_name = "FILE")]
    pub requirepass_file: Option<PathBuf>,
    /// File holding the password the nodes ask for (their
    /// --requirepass-file), as Redis Sentinel's `auth-pass`: given before
    /// asking a primary which backup it has.
    #[arg(long, value_name = "FILE")]
    pub auth_pass_file: Option<PathBuf>,
    /// With --auth-pass-file: the ACL user (the nodes' --aclfile) the
    /// password is for, as Redis Sentinel's `auth-user`; without it, the
    /// default user's.
    #[arg(long, value_name = "NAME", requires = "auth_pass_file")]
    pub auth_user: Option<String>,
    /// The nodes' client ports speak TLS (their --tls-cert): connect to
    /// them with TLS, verifying their certificates against these CA
    /// certificates (PEM). The sentinel's own --listen stays plain TCP.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// With --tls-ca: the certificate (PEM) to present to nodes that ask
    /// for one (their --tls-ca); needs --tls-key.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// A cluster to report from the start (repeatable): SENTINEL MASTERS and
    /// INFO list it without a client having asked for it by name.
    #[arg(long = "cluster", value_name = "NAME")]
    pub clusters: Vec<String>,
    /// How often each watched cluster's record is read and its primary
    /// probed (a connection to its client address).
    #[arg(long, default_value_t = 100, value_name = "MS")]
    pub poll_ms: u64,
    /// Most client connections at once (one thread each).
    #[arg(long, default_value_t = 1000)]
    pub max_clients: usize,
    /// Read flags from this TOML file; its keys are the long flags
    /// (`arbiter = "understudy://10.0.0.9:7700"`, `cluster = ["shop"]`).
    /// A flag on the command line or in the environment (UNDERSTUDY_<FLAG>)
    /// wins over the file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

pub fn sentinel(a: SentinelArgs) -> Result<ExitCode> {
    for c in &a.clusters {
        understudy_arbiter::validate_name("--cluster", c)?;
    }
    if a.poll_ms == 0 || a.poll_ms > 60_000 {
        bail!("--poll-ms {} is out of range: expected 1 to 60000", a.poll_ms);
    }
    if a.max_clients == 0 {
        bail!("--max-clients must be at least 1");
    }
    let secret = read_secret(a.secret_file.as_ref())?;
    let arbiter = understudy_arbiter::connect(&a.arbiter, &secret)?;
    let listener = TcpListener::bind(a.listen).with_context(|| format!("cannot listen on --listen {}", a.listen))?;
    let bound = listener.local_addr().context("the sentinel's listening address")?;
    let auth_pass = crate::flags::read_secret_file(a.auth_pass_file.as_ref(), "--auth-pass-file")?;
    let auth: Vec<Vec<u8>> = a.auth_user.map(String::into_bytes).into_iter().chain(auth_pass).collect();
    let tls = understudy_node::tls::ClientTls::from_flags(a.tls_ca.as_deref(), a.tls_cert.as_deref(), a.tls_key.as_deref())
        .map_err(anyhow::Error::msg)?;
    let watch = Arc::new(Watch::new(Arc::from(arbiter), Duration::from_millis(a.poll_ms), &a.clusters, auth, tls));
    watch.spawn_poller().context("starting the thread that reads the arbiter")?;
    let mut raw = [0u8; 20];
    getrandom::fill(&mut raw).context("reading the OS random source")?;
    let myid: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let password = crate::flags::read_password(a.requirepass_file.as_ref())?.map(Arc::from);
    let shared = Arc::new(Shared { watch, myid, password, port: bound.port(), clients: Default::default() });
    log::info!(
        "sentinel listening on {bound}, reading {} every {} ms{}",
        shared.watch.describe_arbiter(),
        a.poll_ms,
        if a.clusters.is_empty() { String::new() } else { format!(", clusters {}", a.clusters.join(", ")) }
    );
    let mut next_id = 0u64;
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors, or a connection reset while queued.
                log::warn!("accepting a client: {e}");
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        next_id += 1;
        if shared.clients.load(Ordering::Relaxed) >= a.max_clients {
            let mut s = stream;
            let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = s.write_all(b"-ERR max number of clients reached\r\n");
            continue;
        }
        let counted = Counted::new(shared.clone());
        let id = next_id;
        let spawned = std::thread::Builder::new()
            .name(format!("sentinel-client-{id}"))
            .stack_size(256 * 1024)
            .spawn(move || serve(stream, &counted.0, id));
        if let Err(e) = spawned {
            log::warn!("cannot start a thread for a client: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A connection counted in `clients` while it lives (also when its thread
/// panics or never starts).
struct Counted(Arc<Shared>);

impl Counted {
    fn new(s: Arc<Shared>) -> Counted {
        s.clients.fetch_add(1, Ordering::Relaxed);
        Counted(s)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one client until it quits, breaks the protocol or goes away.
fn serve(mut stream: TcpStream, s: &Shared, id: u64) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let local = stream.local_addr().map(|a| a.to_string()).unwrap_or_default();
    if stream.set_nodelay(true).and_then(|_| stream.set_write_timeout(Some(WRITE_TIMEOUT))).is_err() {
        return;
    }
    let mut client = Client::new(id, peer, local, s.password.clone());
    let mut parser = CommandParser::new();
    let mut args = Vec::new();
    let mut inbuf: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut subscribed = false;
    loop {
        if let Some(inbox) = &client.inbox {
            while let Ok(m) = inbox.try_recv() {
                client.deliver(&m, &mut out);
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).is_err() {
                return;
            }
            out.clear();
        }
        // A subscribed connection wakes up now and then for its messages.
        if subscribed != client.inbox.is_some() {
            subscribed = client.inbox.is_some();
            let timeout = subscribed.then_some(SUBSCRIBED_WAKE);
            if stream.set_read_timeout(timeout).is_err() {
                return;
            }
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        inbuf.extend_from_slice(&chunk[..n]);
        let mut consumed = 0;
        let mut close = false;
        while !close {
            match parser.parse(&inbuf[consumed..], REQUEST_BYTES_MAX, &mut args) {
                Ok(Some(used)) => {
                    let base = consumed;
                    consumed += used;
                    if args.is_empty() {
                        continue;
                    }
                    let argv: Vec<&[u8]> = args.iter().map(|r| &inbuf[base + r.start..base + r.end]).collect();
                    close = client.command(s, &argv, &mut out) == Next::Close;
                    if out.len() >= OUT_FLUSH_BYTES {
                        if stream.write_all(&out).is_err() {
                            return;
                        }
                        out.clear();
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    log::debug!("client {id}: {e}; closing its connection");
                    out.extend_from_slice(&e.to_resp());
                    close = true;
                }
            }
        }
        inbuf.drain(..consumed);
        if close {
            let _ = stream.write_all(&out);
            return;
        }
    }
}
