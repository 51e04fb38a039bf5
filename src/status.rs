//! `understudy status`: the cluster as the arbiter has it, whether its
//! primary answers, and an exit code scripts and monitoring act on.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use understudy_arbiter::{BackupState, ClusterRecord};

/// Exit codes of `understudy status` (the contract scripts rely on).
pub mod exit {
    /// A backup is in sync and the primary answers: protected.
    pub const PROTECTED: u8 = 0;
    /// The primary answers but runs unprotected (no backup, or one still joining).
    pub const UNPROTECTED: u8 = 1;
    /// No primary registered, or the registered one does not answer.
    pub const DOWN: u8 = 2;
    /// The status could not be read (arbiter unreachable, bad secret, bad URL, bad flags).
    pub const UNKNOWN: u8 = 3;
}

/// Show a cluster's epoch, primary and backup as the arbiter has them, whether the primary answers, and an exit status: protected (0), unprotected (1), down (2) or unknown (3)
///
/// Exit status:
///   0  protected: the primary answers and a backup is in sync;
///   1  the primary answers but runs unprotected: no backup, or one still joining;
///   2  no primary registered, or the registered primary does not answer;
///   3  the status could not be read: arbiter unreachable, bad secret, bad URL,
///      bad flags or config file.
///
/// "Answers" means a TCP connection to the primary's registered client
/// address, or else to its replication address, succeeds within
/// --probe-timeout-ms. Both listeners are bound before a node claims and
/// stay open for its life, so either answering means the process is alive
/// and reachable from here. The client address is tried first: a
/// connection that closes at once is routine there, while the replication
/// port logs it as a refused peer. The replication address is the
/// fallback for a client network this host cannot reach, or a guest that
/// closed its listener. A process that is alive but frozen still answers:
/// its backup detects that one (--failover-timeout-ms) and takes over.
#[derive(Args)]
#[command(verbatim_doc_comment)]
pub struct StatusArgs {
    /// understudy://HOST:PORT, file:///shared/dir or etcd://HOST:PORT,...
    #[arg(long)]
    pub arbiter: String,
    /// The cluster to show.
    #[arg(long)]
    pub cluster: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// File holding the shared secret of the arbiter.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// How long to wait for the primary's listeners to accept a connection.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub probe_timeout_ms: u64,
    /// Read flags from this TOML file (keys as the flags: `arbiter = "…"`);
    /// keys only a node uses are ignored, so a node's file serves.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The `status --json` document (DESIGN §4, the contract), with
/// `primary_answers` from the probe.
pub fn status_json(cluster: &str, rec: Option<&ClusterRecord>, answers: bool) -> serde_json::Value {
    use serde_json::json;
    match rec {
        None => {
            json!({"cluster": cluster, "epoch": 0, "primary": null, "backup": null, "protected": false, "primary_answers": false})
        }
        Some(r) => json!({
            "cluster": r.cluster,
            "epoch": r.epoch,
            "primary": {"node": r.primary.node, "client": r.primary.client, "repl": r.primary.repl},
            "backup": r.backup.as_ref().map(|b| json!({
                "node": b.node,
                "state": state_name(b.state),
                "lag": b.lag,
            })),
            "members": r.members,
            "protected": r.protected,
            "primary_answers": answers,
            "abandoned_at_ms": r.abandoned_at_ms,
        }),
    }
}

fn state_name(s: BackupState) -> &'static str {
    match s {
        BackupState::Joining => "joining",
        BackupState::InSync => "in-sync",
    }
}

/// The exit code for what was read (see [`exit`]).
pub fn exit_code(rec: Option<&ClusterRecord>, answers: bool) -> u8 {
    match rec {
        None => exit::DOWN,
        Some(_) if !answers => exit::DOWN,
        Some(r) if r.protected => exit::PROTECTED,
        Some(_) => exit::UNPROTECTED,
    }
}

/// Connects to `addr` (HOST:PORT, every address it resolves to) and
/// returns the one that accepted, or why none did.
fn probe(addr: &str, timeout: Duration) -> std::result::Result<SocketAddr, String> {
    let addrs = addr.to_socket_addrs().map_err(|e| format!("{addr:?}: {e}"))?;
    let mut why = format!("{addr:?} resolves to no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(_) => return Ok(a),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => why = format!("{a}: no answer in {timeout:?}"),
            Err(e) => why = format!("{a}: {e}"),
        }
    }
    Err(why)
}

/// What the probe found: `Ok(which address answered)` or `Err(why not)`.
pub(crate) fn probe_primary(r: &ClusterRecord, timeout: Duration) -> std::result::Result<String, String> {
    let client = probe(&r.primary.client, timeout);
    if let Ok(a) = client {
        return Ok(format!("clients {a}"));
    }
    let repl = if r.primary.repl == r.primary.client { client.clone() } else { probe(&r.primary.repl, timeout) };
    match (repl, client) {
        (Ok(a), _) => Ok(format!("replication {a}")),
        (Err(r), Err(c)) if r == c => Err(c),
        (Err(r), Err(c)) => Err(format!("clients {c}; replication {r}")),
        (Err(_), Ok(_)) => unreachable!("returned above"),
    }
}

pub fn status(a: StatusArgs) -> Result<ExitCode> {
    match read_and_print(&a) {
        Ok(code) => Ok(ExitCode::from(code)),
        Err(e) => {
            eprintln!("understudy: error: {e:#}");
            Ok(ExitCode::from(exit::UNKNOWN))
        }
    }
}

fn read_and_print(a: &StatusArgs) -> Result<u8> {
    use std::fmt::Write as _;
    let secret = crate::flags::read_secret(a.secret_file.as_ref())?;
    let arb = understudy_arbiter::connect(&a.arbiter, &secret)?;
    let rec = arb.read(&a.cluster).with_context(|| format!("reading cluster {:?} at {}", a.cluster, arb.describe()))?;
    let timeout = Duration::from_millis(a.probe_timeout_ms.max(1));
    let probed = rec.as_ref().map(|r| probe_primary(r, timeout));
    let answers = matches!(probed, Some(Ok(_)));
    let code = exit_code(rec.as_ref(), answers);
    let mut t = String::new();
    if a.json {
        writeln!(t, "{}", status_json(&a.cluster, rec.as_ref(), answers))?;
    } else if let (Some(r), Some(probed)) = (&rec, probed) {
        writeln!(t, "cluster   {}", r.cluster)?;
        writeln!(t, "epoch     {}", r.epoch)?;
        writeln!(t, "primary   {} (clients {}, replication {})", r.primary.node, r.primary.client, r.primary.repl)?;
        match probed {
            Ok(how) => writeln!(t, "answers   yes ({how} accepted a connection)")?,
            Err(why) => writeln!(t, "answers   NO: the registered primary accepts no connection ({why})")?,
        }
        match &r.backup {
            Some(b) => writeln!(t, "backup    {} ({}, lag {} entries)", b.node, state_name(b.state), b.lag)?,
            None => writeln!(t, "backup    none")?,
        }
        let protection =
            if r.protected { "yes: outputs wait for the backup" } else { "NO: the primary runs unprotected (no backup in sync)" };
        writeln!(t, "protected {protection}")?;
        if let Some(ms) = r.abandoned_at_ms {
            let when = understudy_node::logger::rfc3339(ms / 1000, (ms % 1000) as u32);
            writeln!(
                t,
                "abandoned epoch {} at {when} (understudy forget): the next node to start claims epoch {} empty",
                r.epoch,
                r.epoch + 1
            )?;
        }
    } else {
        writeln!(t, "cluster {:?}: no primary registered (a node started for it will claim epoch 1)", a.cluster)?;
    }
    crate::flags::print_out(&t)?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use understudy_arbiter::{BackupInfo, NodeAddrs};

    fn record(backup: Option<BackupState>, protected: bool) -> ClusterRecord {
        let addrs = |n: &str| NodeAddrs { node: n.into(), client: "127.0.0.1:1".into(), repl: "127.0.0.1:2".into() };
        let mut r = ClusterRecord::granted("c", 3, &addrs("a"));
        r.backup = backup.map(|state| BackupInfo { node: "b".into(), state, lag: 0 });
        r.protected = protected;
        r
    }

    #[test]
    fn exit_codes_follow_the_contract() {
        assert_eq!(exit_code(None, false), 2);
        assert_eq!(exit_code(Some(&record(None, false)), true), 1);
        assert_eq!(exit_code(Some(&record(Some(BackupState::Joining), false)), true), 1);
        assert_eq!(exit_code(Some(&record(Some(BackupState::InSync), true)), true), 0);
        // A primary that does not answer is down, even if the record says protected.
        assert_eq!(exit_code(Some(&record(Some(BackupState::InSync), true)), false), 2);
        assert_eq!(exit_code(Some(&record(None, false)), false), 2);
    }

    #[test]
    fn json_keeps_every_field_and_adds_primary_answers() {
        let v = status_json("c", Some(&record(Some(BackupState::Joining), false)), true);
        for k in ["cluster", "epoch", "primary", "backup", "members", "protected", "primary_answers"] {
            assert!(v.get(k).is_some(), "{k} in {v}");
        }
        assert_eq!(v["backup"]["state"], "joining");
        assert_eq!(v["primary_answers"], true);
        let none = status_json("c", None, false);
        assert_eq!(none["primary_answers"], false);
        assert_eq!(none["epoch"], 0);
    }

    #[test]
    fn a_closed_port_does_not_answer_and_a_listener_does() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = l.local_addr().unwrap().to_string();
        let closed = {
            let l2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l2.local_addr().unwrap().to_string()
        };
        let t = Duration::from_secs(1);
        assert!(probe(&open, t).is_ok());
        assert!(probe(&closed, t).unwrap_err().contains(&closed));
        let mut r = record(None, false);
        (r.primary.client, r.primary.repl) = (closed.clone(), open.clone());
        assert!(probe_primary(&r, t).unwrap().starts_with("replication"));
        (r.primary.client, r.primary.repl) = (open.clone(), closed.clone());
        assert!(probe_primary(&r, t).unwrap().starts_with("clients"));
        (r.primary.client, r.primary.repl) = (closed.clone(), closed.clone());
        assert!(probe_primary(&r, t).is_err());
    }
}
