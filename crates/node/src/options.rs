//! What a node is told on its command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use understudy_arbiter::Arbiter;
use understudy_core::Config;

/// Everything a replica needs to run. Built by the CLI.
#[derive(Clone)]
pub struct NodeOptions {
    pub cluster: String,
    pub node: String,
    pub arbiter: Arc<dyn Arbiter>,
    /// Where clients connect (the KV service, or the guest's socket).
    pub client_listen: SocketAddr,
    /// TLS on `client_listen`, which then speaks TLS only (`--tls-cert`,
    /// `--tls-key`, `--tls-ca`); none = plain TCP. Not for a WebAssembly
    /// guest's socket.
    pub tls: Option<crate::tls::ServerTls>,
    /// Where the logging channel listens (joiners connect here).
    pub repl_listen: SocketAddr,
    /// Addresses published at the arbiter for clients and joiners
    /// (`--advertise-client`, `--advertise-repl`). Empty: derived from the
    /// bound listener once it is bound (`listening::announce`), so port 0
    /// publishes the port the kernel chose.
    pub advertise_client: String,
    pub advertise_repl: String,
    /// Shared secret of the logging channel (`--secret-file`); empty = none.
    pub secret: Vec<u8>,
    pub dir: Option<PathBuf>,
    pub protocol: Config,
    /// Largest frame accepted on the logging channel. `--frame-bytes-max`.
    pub frame_bytes_max: u64,
    /// Largest client request accepted. `--request-bytes-max`.
    pub request_bytes_max: usize,
    /// Snapshot chunk size of a join. `--snapshot-chunk-bytes`.
    pub snapshot_chunk_bytes: usize,
    /// Entries a joiner may buffer while loading its snapshot before it
    /// gives up and starts over. `--join-buffer-bytes`.
    pub join_buffer_bytes: usize,
    /// Replies a client may have waiting at the output gate before the node
    /// stops reading its requests. `--client-pending-bytes-max`.
    pub client_pending_bytes_max: usize,
    /// Bytes queued on a logging channel beyond which the primary stops
    /// taking client requests until the writer catches up: with flow
    /// control's bound in entries, what the primary holds of the log that
    /// its backup (or a joiner) has not received. `--channel-backlog-bytes-max`.
    pub channel_backlog_bytes_max: usize,
    /// Where Prometheus scrapes this node's metrics (`GET /metrics`);
    /// none = no metrics listener. `--metrics-listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// The log and snapshots on disk in `dir` (`--appendfsync`); none =
    /// state in memory only.
    pub persist: Option<Persist>,
}

/// Durability settings (`--appendfsync`, `--snapshot-every-bytes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persist {
    pub fsync: understudy_durable::Fsync,
    /// A snapshot is written once this many bytes were logged since the
    /// last one; the log before it is then deleted.
    pub snapshot_every_bytes: u64,
    /// ... or once this many seconds passed since the last one (with some
    /// log written since); 0: by size only.
    pub snapshot_every_secs: u64,
    /// A log segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// The most recent entries a primary keeps in memory so that a node
    /// restarting with its state on disk catches up with only what it
    /// missed (`--repl-backlog-bytes`; 0: always a full state transfer).
    pub backlog_bytes: usize,
}

impl Persist {
    pub const SNAPSHOT_EVERY_BYTES: u64 = 64 << 20;
    pub const SEGMENT_BYTES: u64 = 16 << 20;
    pub const SNAPSHOT_EVERY_SECS: u64 = 3600;
    pub const BACKLOG_BYTES: usize = 64 << 20;

    pub fn new(fsync: understudy_durable::Fsync) -> Persist {
        Persist {
            fsync,
            snapshot_every_bytes: Self::SNAPSHOT_EVERY_BYTES,
            snapshot_every_secs: Self::SNAPSHOT_EVERY_SECS,
            segment_bytes: Self::SEGMENT_BYTES,
            backlog_bytes: Self::BACKLOG_BYTES,
        }
    }
}

impl NodeOptions {
    /// Defaults for the bounds that have flags.
    pub const FRAME_BYTES_MAX: u64 = 64 << 20;
    pub const REQUEST_BYTES_MAX: usize = 16 << 20;
    /// The primary's event loop writes a joiner's snapshot stream between
    /// client requests; tokio lets a task run up to 128 ready writes before
    /// it yields, so a chunk's size bounds the longest stall a client sees
    /// during a join (measured on 1 GiB: 1 MiB chunks ≈ 11 ms, 256 KiB ≈ 5 ms,
    /// same join time). docs/PERFORMANCE.md.
    pub const SNAPSHOT_CHUNK_BYTES: usize = 256 << 10;
    pub const JOIN_BUFFER_BYTES: usize = 1 << 30;
    pub const CLIENT_PENDING_BYTES_MAX: usize = 4 << 20;
    pub const CHANNEL_BACKLOG_BYTES_MAX: usize = 64 << 20;

    /// Options with every bound at its default, no secret, no `--dir`, no
    /// metrics, no TLS, addresses advertised as bound.
    pub fn new(
        cluster: String,
        node: String,
        arbiter: Arc<dyn Arbiter>,
        client_listen: SocketAddr,
        repl_listen: SocketAddr,
    ) -> NodeOptions {
        NodeOptions {
            cluster,
            node,
            arbiter,
            client_listen,
            tls: None,
            repl_listen,
            advertise_client: String::new(),
            advertise_repl: String::new(),
            secret: Vec::new(),
            dir: None,
            protocol: Config::default(),
            frame_bytes_max: Self::FRAME_BYTES_MAX,
            request_bytes_max: Self::REQUEST_BYTES_MAX,
            snapshot_chunk_bytes: Self::SNAPSHOT_CHUNK_BYTES,
            join_buffer_bytes: Self::JOIN_BUFFER_BYTES,
            client_pending_bytes_max: Self::CLIENT_PENDING_BYTES_MAX,
            channel_backlog_bytes_max: Self::CHANNEL_BACKLOG_BYTES_MAX,
            metrics_listen: None,
            persist: None,
        }
    }

    /// Sets durability: `always` also makes acks and releases wait for the
    /// disk (`Config::durable_acks`).
    pub fn set_persist(&mut self, persist: Option<Persist>) {
        self.protocol.durable_acks = persist.as_ref().is_some_and(|p| p.fsync == understudy_durable::Fsync::Always);
        self.persist = persist;
    }

    /// Checks relations between bounds; messages name the flags.
    pub fn validate(&self) -> Result<(), String> {
        self.protocol.validate()?;
        if let Some(p) = &self.persist {
            if self.dir.is_none() {
                return Err(format!(
                    "--appendfsync {} needs --dir: the directory that holds the log and the snapshots",
                    p.fsync.as_str()
                ));
            }
            if p.snapshot_every_bytes == 0 {
                return Err("--snapshot-every-bytes must be at least 1".into());
            }
        }
        if (self.request_bytes_max as u64) + 4096 > self.frame_bytes_max {
            return Err(format!(
                "--request-bytes-max ({}) must be smaller than --frame-bytes-max ({}) by at least 4096: a request travels in one frame",
                self.request_bytes_max, self.frame_bytes_max
            ));
        }
        if self.channel_backlog_bytes_max < crate::io::BATCH_BYTES_MAX {
            return Err(format!(
                "--channel-backlog-bytes-max ({}) must be at least {} (one batch of entries)",
                self.channel_backlog_bytes_max,
                crate::io::BATCH_BYTES_MAX
            ));
        }
        if (self.snapshot_chunk_bytes as u64) + 4096 > self.frame_bytes_max {
            return Err(format!(
                "--snapshot-chunk-bytes ({}) must be smaller than --frame-bytes-max ({})",
                self.snapshot_chunk_bytes, self.frame_bytes_max
            ));
        }
        Ok(())
    }
}

/// The address to publish for a listening address: an unspecified IP
/// (0.0.0.0) is replaced by `fallback_host`.
pub fn advertised(listen: SocketAddr, fallback_host: Option<std::net::IpAddr>) -> String {
    if listen.ip().is_unspecified() {
        let host = fallback_host.filter(|h| !h.is_unspecified()).unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        SocketAddr::new(host, listen.port()).to_string()
    } else {
        listen.to_string()
    }
}
