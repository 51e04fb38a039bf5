//! What several commands share: the flags of every node, their parsers
//! (listening addresses, sizes), the secret file, and printing to stdout.
//! A leaf: it imports no other module of the binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::Args;
use understudy_core::Config;
use understudy_node::NodeOptions;

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
    match path {
        Some(p) => understudy_node::builder::read_secret_file(p, "--secret-file").map_err(anyhow::Error::msg),
        None => Ok(Vec::new()),
    }
}

/// Reads `--requirepass-file`: the password clients must give (AUTH).
pub fn read_password(path: Option<&PathBuf>) -> Result<Option<Vec<u8>>> {
    read_secret_file(path, "--requirepass-file")
}

/// The users of `understudy kv`: an `--aclfile`'s, or the default user
/// alone with `--requirepass-file`'s password (if any). Rules for commands
/// understudy does not have are logged.
pub fn read_users(aclfile: Option<&std::path::Path>, requirepass: Option<&[u8]>) -> Result<understudy_kv::acl::Users> {
    let Some(path) = aclfile else { return Ok(understudy_kv::acl::Users::new(requirepass)) };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read --aclfile {}", path.display()))?;
    let (users, warnings) = understudy_kv::acl::Users::parse(&text, &path.display().to_string(), requirepass)
        .map_err(|e| anyhow::anyhow!("--aclfile {e}"))?;
    for w in warnings {
        log::warn!("--aclfile {w}");
    }
    Ok(users)
}

/// Reads the secret or password file that `flag` names, if given.
pub fn read_secret_file(path: Option<&PathBuf>, flag: &str) -> Result<Option<Vec<u8>>> {
    path.map(|p| understudy_node::builder::read_secret_file(p, flag).map_err(anyhow::Error::msg)).transpose()
}

/// A node's options from its flags; errors name the flag.
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
        tls: None,
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
        persist: None,
    };
    opts.validate().map_err(anyhow::Error::msg)?;
    Ok(opts)
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
