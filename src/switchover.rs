//! `understudy switchover`: a planned switchover without stopping a process
//! (issue 10 §4). The primary hands over to its in-sync backup exactly as
//! on SIGTERM, then — instead of exiting — rejoins the new primary as its
//! backup; this command waits until the cluster is protected again.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use understudy_arbiter::proto::{hello, FrameConn};
use understudy_wire::frame::Kind;
use understudy_wire::handshake::Handshake;
use understudy_wire::msg::{Purpose, Reject};

/// Switch the roles of a protected cluster's primary and backup without
/// stopping either: the primary hands over to its in-sync backup (which
/// claims the next epoch at once) and rejoins it as its backup. Waits until
/// the cluster is protected again. Key-value clusters only (a WebAssembly
/// primary hands over on SIGTERM).
#[derive(Args)]
pub struct SwitchoverArgs {
    #[arg(long)]
    pub arbiter: String,
    #[arg(long)]
    pub cluster: String,
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// How long to wait for the old primary to be in sync as the new backup.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub wait_secs: u64,
}

pub fn switchover(a: SwitchoverArgs) -> Result<ExitCode> {
    let secret = crate::flags::read_secret(a.secret_file.as_ref())?;
    let arb = understudy_arbiter::connect(&a.arbiter, &secret)?;
    let read = || arb.read(&a.cluster).with_context(|| format!("reading cluster {:?} at {}", a.cluster, arb.describe()));
    let Some(r) = read()? else { bail!("cluster {:?} has no primary registered", a.cluster) };
    if !r.protected {
        bail!(
            "cluster {:?} is not protected (no backup in sync with primary {:?}): there is nobody to switch over to; see understudy status",
            a.cluster,
            r.primary.node
        );
    }
    let old = r.primary.node.clone();
    let successor =
        ask(&r.primary.repl, &secret, &a.cluster).with_context(|| format!("asking primary {old:?} at {}", r.primary.repl))?;
    eprintln!(
        "understudy: primary {old:?} hands over epoch {} to {successor:?}; waiting for {old:?} to rejoin as its backup",
        r.epoch
    );
    let t = Instant::now();
    let limit = Duration::from_secs(a.wait_secs);
    loop {
        if let Some(now) = read()?.filter(|n| n.epoch > r.epoch) {
            let back = now.backup.as_ref().is_some_and(|b| b.node == old) && now.protected;
            if back {
                println!(
                    "switched over in {:.2} s: {:?} is the primary of epoch {}, {old:?} its in-sync backup",
                    t.elapsed().as_secs_f64(),
                    now.primary.node,
                    now.epoch
                );
                return Ok(ExitCode::SUCCESS);
            }
            if t.elapsed() > limit {
                bail!(
                    "{:?} serves epoch {}, but {old:?} is not its in-sync backup after {} s (backup: {:?}); see understudy status",
                    now.primary.node,
                    now.epoch,
                    a.wait_secs,
                    now.backup.map(|b| b.node)
                );
            }
        } else if t.elapsed() > limit {
            bail!("no new epoch after {} s: the switchover did not happen; see the primary's log", a.wait_secs);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Authenticates at the primary's replication address and asks; returns
/// the successor it hands over to.
fn ask(repl: &str, secret: &[u8], cluster: &str) -> Result<String> {
    use std::net::ToSocketAddrs as _;
    let addr = repl.to_socket_addrs()?.next().with_context(|| format!("{repl} resolves to no address"))?;
    let stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut conn = FrameConn::new(stream);
    let mut me = hello("switchover", Purpose::Switchover);
    me.cluster = cluster.to_string();
    let (mut hs, first) = Handshake::initiator(secret, me, 0);
    conn.handshake(&mut hs, &first, || false).map_err(|e| anyhow::anyhow!("handshake: {e} (check --secret-file)"))?;
    let (h, payload) = conn.read_frame().map_err(|e| anyhow::anyhow!("no answer: {e}"))?;
    match h.kind {
        Kind::Handover => Ok(String::from_utf8_lossy(&payload).into_owned()),
        Kind::Reject => bail!("{}", Reject::decode(&payload).map_or_else(|e| e.to_string(), |r| r.message)),
        k => bail!("unexpected {k:?} frame"),
    }
}
