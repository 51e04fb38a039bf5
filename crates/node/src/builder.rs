//! [`Node`]: a replica of a Rust [`StateMachine`](crate::StateMachine) behind a [`FrontEnd`],
//! configured with [`NodeBuilder`] (in code, or from the same flags as
//! `understudy kv`), run with [`Node::serve`].
//!
//! ```no_run
//! # use understudy_node::{Node, NodeError};
//! # fn run<F: understudy_node::FrontEnd>(front: F, machine: fn() -> F::Machine) -> Result<(), NodeError> {
//! let node = Node::builder()
//!     .cluster("locks")
//!     .node("a")
//!     .arbiter("understudy://127.0.0.1:7000")
//!     .listen("127.0.0.1:7100")
//!     .repl_listen("127.0.0.1:7101")
//!     .build()?;
//! node.serve(machine, front) // returns only if the node cannot start
//! # }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use understudy_arbiter::Arbiter;
use understudy_core::Config;

use crate::options::NodeOptions;
use crate::run::NodeError;
use crate::service::FrontEnd;

/// The flags [`NodeBuilder::args`] understands, for a program's `--help`.
pub const FLAGS_HELP: &str = "\
  --cluster NAME             cluster this node belongs to (required)
  --node NAME                this node's name, unique in the cluster (required)
  --arbiter URL              understudy://HOST:PORT, file:///DIR or etcd://HOST:PORT (required)
  --listen ADDR              where clients connect (required; port 0: any free port)
  --repl-listen ADDR         where the logging channel listens (required)
  --advertise-client ADDR    client address published at the arbiter (default: --listen)
  --advertise-repl ADDR      replication address published (default: --repl-listen)
  --dir DIR                  working directory (listening.json: the addresses bound)
  --secret-file FILE         shared secret of the logging channel and the arbiter
  --tls-cert FILE            the client port speaks TLS only, with this certificate (PEM)
  --tls-key FILE             ... and its private key (PEM; required with --tls-cert)
  --tls-ca FILE              ask clients for a certificate this CA signed (PEM)
  --metrics-listen ADDR      serve Prometheus metrics at http://ADDR/metrics
  --heartbeat-ms MS          heartbeat interval of the logging channel
  --failover-timeout-ms MS   silence after which the peer is declared failed (default 250)
  --appendfsync MODE         keep the log and snapshots in --dir: always, everysec or no
  --snapshot-every-bytes N   with --appendfsync: a snapshot after this much log (default 64 MiB)
  --snapshot-every-secs S    with --appendfsync: ... or after this long with log written (default 3600)
  --repl-backlog-bytes N     with --appendfsync: log kept for partial catch-ups (default 64 MiB)
";

/// The `main` of a program that runs one node: reads the node's flags
/// from the command line (`--help` prints `about` and [`FLAGS_HELP`]),
/// installs the logger (`UNDERSTUDY_LOG` sets the level), and hands the
/// node to `serve`. An error is printed, naming the flag, with exit
/// status 2.
pub fn main(about: &str, serve: impl FnOnce(Node) -> Result<(), NodeError>) -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{about}\n\nFlags:\n{FLAGS_HELP}");
        return std::process::ExitCode::SUCCESS;
    }
    let program = std::env::args().next().unwrap_or_default();
    let node = Node::builder().args(args).and_then(|(b, rest)| match rest.first() {
        Some(unknown) => Err(NodeError::Options(format!("unknown flag {unknown:?} (see --help)"))),
        None => b.build(),
    });
    let result = node.and_then(|node| {
        let name = node.options().node.clone();
        crate::logger::init(None, crate::logger::Format::Text, Some(name)).map_err(NodeError::Options)?;
        serve(node)
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// A configured node; [`Node::serve`] runs it.
pub struct Node {
    opts: NodeOptions,
    machine_tag: Option<String>,
}

impl Node {
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    /// A node from options built elsewhere (the `understudy` binary's flags).
    pub fn from_options(opts: NodeOptions) -> Node {
        Node { opts, machine_tag: None }
    }

    pub fn options(&self) -> &NodeOptions {
        &self.opts
    }

    /// Names the machine kind and version in the handshake of the logging
    /// channel: nodes with different tags refuse to pair. Default: the
    /// machine's Rust type name. Change it when the operation or snapshot
    /// format changes incompatibly.
    pub fn machine_tag(mut self, tag: impl Into<String>) -> Node {
        self.machine_tag = Some(tag.into());
        self
    }

    /// Runs the node: claims or joins at the arbiter, serves clients with
    /// `front`, replicates the machine `machine` creates (empty; called
    /// again whenever the node starts over). Returns only if the node
    /// cannot start (a bad address, an unusable `--dir`); a node that
    /// halts (fail-stop) or is stopped ends the process.
    pub fn serve<F: FrontEnd>(self, machine: impl Fn() -> F::Machine + Send + Sync + 'static, front: F) -> Result<(), NodeError> {
        let tag = self.machine_tag.unwrap_or_else(|| std::any::type_name::<F::Machine>().to_string());
        crate::run::run_app(self.opts, tag, Arc::new(move || crate::machine::App::new(machine())), front)
    }
}

/// Options of a [`Node`]; every setter has the name of the flag
/// [`NodeBuilder::args`] reads for it.
#[derive(Default, Clone)]
pub struct NodeBuilder {
    cluster: Option<String>,
    node: Option<String>,
    arbiter_url: Option<String>,
    arbiter: Option<Arc<dyn Arbiter>>,
    listen: Option<String>,
    repl_listen: Option<String>,
    advertise_client: Option<String>,
    advertise_repl: Option<String>,
    dir: Option<PathBuf>,
    secret: Option<Vec<u8>>,
    secret_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    metrics_listen: Option<String>,
    heartbeat_ms: Option<String>,
    failover_timeout_ms: Option<String>,
    appendfsync: Option<String>,
    snapshot_every_bytes: Option<String>,
    snapshot_every_secs: Option<String>,
    repl_backlog_bytes: Option<String>,
}

impl NodeBuilder {
    pub fn cluster(mut self, name: &str) -> Self {
        self.cluster = Some(name.into());
        self
    }

    pub fn node(mut self, name: &str) -> Self {
        self.node = Some(name.into());
        self
    }

    /// The arbiter's URL (`understudy_arbiter::connect`).
    pub fn arbiter(mut self, url: &str) -> Self {
        self.arbiter_url = Some(url.into());
        self
    }

    /// An arbiter client built elsewhere (tests, an embedded arbiter).
    pub fn arbiter_client(mut self, arbiter: Arc<dyn Arbiter>) -> Self {
        self.arbiter = Some(arbiter);
        self
    }

    /// Where clients connect: `HOST:PORT`, port 0 for any free port.
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = Some(addr.into());
        self
    }

    pub fn repl_listen(mut self, addr: &str) -> Self {
        self.repl_listen = Some(addr.into());
        self
    }

    pub fn advertise_client(mut self, addr: &str) -> Self {
        self.advertise_client = Some(addr.into());
        self
    }

    pub fn advertise_repl(mut self, addr: &str) -> Self {
        self.advertise_repl = Some(addr.into());
        self
    }

    /// The node's working directory: it writes `listening.json` there.
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// The shared secret of the logging channel and the arbiter.
    pub fn secret(mut self, secret: &[u8]) -> Self {
        self.secret = Some(secret.to_vec());
        self
    }

    pub fn secret_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.secret_file = Some(path.into());
        self
    }

    /// TLS on the client port (which then speaks TLS only): the
    /// certificate chain, PEM. Needs [`tls_key`](Self::tls_key).
    pub fn tls_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_cert = Some(path.into());
        self
    }

    /// The private key of [`tls_cert`](Self::tls_cert), PEM.
    pub fn tls_key(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_key = Some(path.into());
        self
    }

    /// Clients must present a certificate this CA signed (PEM).
    pub fn tls_ca(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca = Some(path.into());
        self
    }

    pub fn metrics_listen(mut self, addr: &str) -> Self {
        self.metrics_listen = Some(addr.into());
        self
    }

    /// Reads the node's flags ([`FLAGS_HELP`]) from `args` (without the
    /// program name); returns the arguments it does not know, in order,
    /// for the program's own flags. `--flag value` and `--flag=value`.
    pub fn args<I: IntoIterator<Item = String>>(mut self, args: I) -> Result<(Self, Vec<String>), NodeError> {
        let mut rest = Vec::new();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let slot = match flag.as_str() {
                "--cluster" => &mut self.cluster,
                "--node" => &mut self.node,
                "--arbiter" => &mut self.arbiter_url,
                "--listen" => &mut self.listen,
                "--repl-listen" => &mut self.repl_listen,
                "--advertise-client" => &mut self.advertise_client,
                "--advertise-repl" => &mut self.advertise_repl,
                "--metrics-listen" => &mut self.metrics_listen,
                "--heartbeat-ms" => &mut self.heartbeat_ms,
                "--failover-timeout-ms" => &mut self.failover_timeout_ms,
                "--appendfsync" => &mut self.appendfsync,
                "--snapshot-every-bytes" => &mut self.snapshot_every_bytes,
                "--snapshot-every-secs" => &mut self.snapshot_every_secs,
                "--repl-backlog-bytes" => &mut self.repl_backlog_bytes,
                "--dir" | "--secret-file" | "--tls-cert" | "--tls-key" | "--tls-ca" => {
                    let v = Some(value(&flag, inline, &mut it)?.into());
                    match flag.as_str() {
                        "--dir" => self.dir = v,
                        "--secret-file" => self.secret_file = v,
                        "--tls-cert" => self.tls_cert = v,
                        "--tls-key" => self.tls_key = v,
                        _ => self.tls_ca = v,
                    }
                    continue;
                }
                _ => {
                    rest.push(arg);
                    continue;
                }
            };
            *slot = Some(value(&flag, inline, &mut it)?);
        }
        Ok((self, rest))
    }

    /// Checks everything and connects nothing yet; errors name the flag.
    pub fn build(self) -> Result<Node, NodeError> {
        let bad = NodeError::Options;
        let need = |v: Option<String>, flag: &str| v.ok_or_else(|| bad(format!("{flag} is required")));
        let cluster = need(self.cluster, "--cluster")?;
        let node = need(self.node, "--node")?;
        understudy_arbiter::validate_name("--cluster", &cluster).map_err(|e| bad(e.to_string()))?;
        understudy_arbiter::validate_name("--node", &node).map_err(|e| bad(e.to_string()))?;
        let secret = match (self.secret, &self.secret_file) {
            (Some(s), _) => s,
            (None, Some(p)) => read_secret_file(p, "--secret-file").map_err(bad)?,
            (None, None) => Vec::new(),
        };
        let arbiter = match (self.arbiter, self.arbiter_url) {
            (Some(a), _) => a,
            (None, Some(url)) => {
                Arc::from(understudy_arbiter::connect(&url, &secret).map_err(|e| bad(format!("--arbiter {url}: {e}")))?)
            }
            (None, None) => return Err(bad("--arbiter is required".into())),
        };
        let listen = addr(&need(self.listen, "--listen")?, "--listen")?;
        let repl_listen = addr(&need(self.repl_listen, "--repl-listen")?, "--repl-listen")?;
        let metrics_listen = self.metrics_listen.map(|m| addr(&m, "--metrics-listen")).transpose()?;
        let tls = crate::tls::ServerTls::from_flags(self.tls_cert.as_deref(), self.tls_key.as_deref(), self.tls_ca.as_deref())
            .map_err(bad)?;
        let mut protocol = Config::default();
        if let Some(v) = self.heartbeat_ms {
            protocol.heartbeat_ms = number(&v, "--heartbeat-ms")?;
        }
        if let Some(v) = self.failover_timeout_ms {
            protocol.failover_timeout_ms = number(&v, "--failover-timeout-ms")?;
        }
        let mut opts = NodeOptions::new(cluster, node, arbiter, listen, repl_listen);
        opts.advertise_client = self.advertise_client.unwrap_or_default();
        opts.advertise_repl = self.advertise_repl.unwrap_or_default();
        opts.secret = secret;
        opts.dir = self.dir;
        opts.protocol = protocol;
        opts.metrics_listen = metrics_listen;
        opts.tls = tls;
        let persist = match self.appendfsync {
            None => None,
            Some(mode) => {
                let fsync = mode.parse::<understudy_durable::Fsync>().map_err(|e| bad(format!("--appendfsync: {e}")))?;
                let mut p = crate::options::Persist::new(fsync);
                if let Some(v) = self.snapshot_every_bytes {
                    p.snapshot_every_bytes = bytes(&v, "--snapshot-every-bytes")?;
                }
                if let Some(v) = self.snapshot_every_secs {
                    p.snapshot_every_secs =
                        v.parse().map_err(|_| bad(format!("--snapshot-every-secs {v:?} is not a number of seconds")))?;
                }
                if let Some(v) = self.repl_backlog_bytes {
                    p.backlog_bytes = bytes(&v, "--repl-backlog-bytes")? as usize;
                }
                Some(p)
            }
        };
        opts.set_persist(persist);
        opts.validate().map_err(bad)?;
        Ok(Node::from_options(opts))
    }
}

fn value(flag: &str, inline: Option<String>, it: &mut impl Iterator<Item = String>) -> Result<String, NodeError> {
    inline.or_else(|| it.next()).ok_or_else(|| NodeError::Options(format!("{flag} needs a value")))
}

fn addr(s: &str, flag: &str) -> Result<SocketAddr, NodeError> {
    use std::net::ToSocketAddrs as _;
    let bad = |why: String| NodeError::Options(format!("{flag} {s:?} is not HOST:PORT (e.g. 127.0.0.1:7000): {why}"));
    s.to_socket_addrs().map_err(|e| bad(e.to_string()))?.next().ok_or_else(|| bad("no address".into()))
}

fn bytes(s: &str, flag: &str) -> Result<u64, NodeError> {
    s.parse().map_err(|_| NodeError::Options(format!("{flag} {s:?} is not a number of bytes")))
}

fn number(s: &str, flag: &str) -> Result<u64, NodeError> {
    s.parse().map_err(|_| NodeError::Options(format!("{flag} {s:?} is not a number of milliseconds")))
}

/// Reads a secret or password from the file that `flag` names; a trailing
/// newline is not part of it; an empty one is an error naming the flag.
pub fn read_secret_file(p: &std::path::Path, flag: &str) -> Result<Vec<u8>, String> {
    let mut s = std::fs::read(p).map_err(|e| format!("reading {flag} {}: {e}", p.display()))?;
    while s.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        s.pop();
    }
    if s.is_empty() {
        return Err(format!("{flag} {} is empty", p.display()));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_fill_the_builder_and_unknown_ones_are_returned() {
        let (b, rest) = Node::builder()
            .args(args(&[
                "--cluster",
                "c",
                "--node=a",
                "--arbiter",
                "understudy://127.0.0.1:1",
                "--listen",
                "127.0.0.1:0",
                "--lease-ms",
                "50",
                "--repl-listen=127.0.0.1:0",
                "--heartbeat-ms",
                "20",
            ]))
            .unwrap();
        assert_eq!(rest, args(&["--lease-ms", "50"]));
        let node = b.build().unwrap();
        let o = node.options();
        assert_eq!((o.cluster.as_str(), o.node.as_str(), o.protocol.heartbeat_ms), ("c", "a", 20));
        assert_eq!(o.client_listen.port(), 0);
    }

    #[test]
    fn errors_name_the_flag() {
        let err = |b: NodeBuilder| b.build().err().expect("an error").to_string();
        assert!(err(Node::builder()).contains("--cluster is required"));
        let b = Node::builder()
            .cluster("c")
            .node("a")
            .arbiter("understudy://127.0.0.1:1")
            .listen("nowhere")
            .repl_listen("127.0.0.1:0");
        assert!(err(b).contains("--listen \"nowhere\""));
        let b = Node::builder().cluster("c").node("a b").arbiter("understudy://127.0.0.1:1");
        assert!(err(b).contains("--node"));
        assert!(Node::builder().args(args(&["--cluster"])).err().unwrap().to_string().contains("--cluster needs a value"));
        let b = Node::builder()
            .cluster("c")
            .node("a")
            .arbiter("understudy://127.0.0.1:1")
            .listen("127.0.0.1:0")
            .repl_listen("127.0.0.1:0");
        assert!(err(b.clone().args(args(&["--heartbeat-ms", "soon"])).unwrap().0).contains("--heartbeat-ms \"soon\""));
        let e = err(b.clone().args(args(&["--appendfsync", "sometimes", "--dir", "/tmp/x"])).unwrap().0);
        assert!(e.contains("--appendfsync") && e.contains("always, everysec or no"), "{e}");
        assert!(err(b.clone().args(args(&["--appendfsync=always"])).unwrap().0).contains("needs --dir"));
        let e = err(b.clone().args(args(&["--tls-cert", "/nonexistent/c.pem"])).unwrap().0);
        assert!(e.contains("needs --tls-key"), "{e}");
        let e = err(b.clone().args(args(&["--tls-cert=/nonexistent/c.pem", "--tls-key=/nonexistent/k.pem"])).unwrap().0);
        assert!(e.contains("reading --tls-cert /nonexistent/c.pem"), "{e}");
    }
}
