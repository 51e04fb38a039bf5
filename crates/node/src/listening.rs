//! Which addresses a process really listens on. Every listener accepts port
//! 0 (the kernel picks a free port); the real addresses are then reported
//! three ways: in the node's first log line, in what it publishes at the
//! arbiter (so `status --json` shows them), and in `listening.json` in its
//! `--dir`, written atomically once every listener is bound and before the
//! node claims anything. Tests, the demo and the benchmark start processes
//! on port 0 and read that file back, so no two of them can race for a port
//! (a port found by binding port 0 and closing it can be taken by another
//! process before it is used).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use crate::options::{advertised, NodeOptions};

/// The file a node or arbiter writes into its `--dir`.
pub const LISTENING_FILE: &str = "listening.json";

/// A node's bound listeners.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// `--client-listen` (kv) or `--guest-listen` (wasm).
    pub client: SocketAddr,
    pub repl: SocketAddr,
    pub metrics: Option<SocketAddr>,
}

/// Writes `bytes` to `path` atomically: readers see the old file or the
/// whole new one, never a part (write a sibling, then rename over).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

/// The `listening.json` document of a node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Listening {
    pub node: String,
    pub pid: u32,
    /// Where clients connect: `--client-listen` (kv) or `--guest-listen` (wasm).
    pub client: SocketAddr,
    pub repl: SocketAddr,
    pub metrics: Option<SocketAddr>,
    /// The addresses published at the arbiter.
    pub advertise_client: String,
    pub advertise_repl: String,
}

/// The `listening.json` document of an arbiter (`understudy arbiter --dir`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ArbiterListening {
    pub arbiter: SocketAddr,
    pub pid: u32,
    /// `--metrics-listen`, if given (absent from files of older versions).
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
}

/// The `listening.json` of a standalone guest (`understudy wasm GUEST
/// --guest-listen ADDR --dir DIR`, recorded or not).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GuestListening {
    pub guest: SocketAddr,
    pub pid: u32,
}

/// A `listening.json` document: who wrote it.
pub trait Document: serde::de::DeserializeOwned {
    fn pid(&self) -> u32;

    /// Reads `DIR/listening.json`; None while it does not exist yet.
    fn read(dir: &Path) -> Result<Option<Self>, String> {
        let path = dir.join(LISTENING_FILE);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Waits up to `limit` for process `pid` to write `DIR/listening.json`
    /// (a file left by an earlier process in the same directory is not
    /// taken for it).
    fn wait(dir: &Path, pid: u32, limit: std::time::Duration) -> Result<Self, String> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(l) = Self::read(dir)?.filter(|l| l.pid() == pid) {
                return Ok(l);
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("no {LISTENING_FILE} from process {pid} in {} after {limit:?}", dir.display()));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

impl Document for Listening {
    fn pid(&self) -> u32 {
        self.pid
    }
}

impl Document for ArbiterListening {
    fn pid(&self) -> u32 {
        self.pid
    }
}

impl Document for GuestListening {
    fn pid(&self) -> u32 {
        self.pid
    }
}

/// Writes a standalone guest's `listening.json` into `dir` (created).
pub fn announce_guest(dir: &Path, bound: SocketAddr) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let doc = GuestListening { guest: bound, pid: std::process::id() };
    write_atomically(&dir.join(LISTENING_FILE), &serde_json::to_vec(&doc).expect("plain struct"))
}

/// Writes an arbiter's `listening.json` into its `--dir`: where it serves
/// (`--listen`) and its metrics (`--metrics-listen`), if any.
pub fn announce_arbiter(dir: &Path, bound: SocketAddr, metrics: Option<SocketAddr>) -> std::io::Result<()> {
    let doc = ArbiterListening { arbiter: bound, pid: std::process::id(), metrics };
    write_atomically(&dir.join(LISTENING_FILE), &serde_json::to_vec(&doc).expect("plain struct"))
}

/// Fills the advertised addresses the flags left open from the bound ones
/// (port 0 becomes the real port; 0.0.0.0 the other listener's host), logs
/// them, and writes `listening.json` into `--dir` if there is one.
pub fn announce(opts: &mut NodeOptions, bound: &Bound) -> std::io::Result<()> {
    if opts.advertise_client.is_empty() {
        opts.advertise_client = advertised(bound.client, Some(bound.repl.ip()));
    }
    if opts.advertise_repl.is_empty() {
        opts.advertise_repl = advertised(bound.repl, Some(bound.client.ip()));
    }
    let metrics = bound.metrics.map(|m| format!(", metrics on {m}")).unwrap_or_default();
    log::info!(
        "{}: listening: clients on {} (published as {}), replication on {} (published as {}){metrics}",
        opts.node,
        bound.client,
        opts.advertise_client,
        bound.repl,
        opts.advertise_repl
    );
    if let Some(dir) = &opts.dir {
        let doc = Listening {
            node: opts.node.clone(),
            pid: std::process::id(),
            client: bound.client,
            repl: bound.repl,
            metrics: bound.metrics,
            advertise_client: opts.advertise_client.clone(),
            advertise_repl: opts.advertise_repl.clone(),
        };
        let json = serde_json::to_vec(&doc).expect("plain struct");
        write_atomically(&dir.join(LISTENING_FILE), &json)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_is_replaced_whole() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(LISTENING_FILE);
        write_atomically(&p, b"one").unwrap();
        write_atomically(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert!(!p.with_extension("tmp").exists());
    }

    #[test]
    fn an_arbiter_file_without_metrics_still_reads() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(LISTENING_FILE), br#"{"arbiter":"127.0.0.1:7700","pid":7}"#).unwrap();
        let l = ArbiterListening::read(d.path()).unwrap().unwrap();
        assert_eq!((l.arbiter.port(), l.pid, l.metrics), (7700, 7, None));
        announce_arbiter(d.path(), "127.0.0.1:7701".parse().unwrap(), Some("127.0.0.1:9100".parse().unwrap())).unwrap();
        let l = ArbiterListening::read(d.path()).unwrap().unwrap();
        assert_eq!((l.arbiter.port(), l.pid, l.metrics.map(|m| m.port())), (7701, std::process::id(), Some(9100)));
    }
}
