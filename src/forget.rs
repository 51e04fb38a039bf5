//! `understudy forget`: the deliberate way out of a cluster whose last
//! in-sync replica died (issue 10 §3). By Promise 4 nobody may go live with
//! an empty state, so such a cluster waits for ever; an operator who knows
//! the state is gone abandons it at the arbiter, on the record, and the
//! next node to start begins an empty cluster in the next epoch. A node
//! never does this by itself.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use understudy_arbiter::Update;

/// Abandon the state of a cluster's current epoch, whose primary is dead and
/// had no backup in sync: the next node to start claims the next epoch with
/// an empty state. Refused unless --epoch is the current epoch and its
/// primary accepts no connection. Everything that epoch held is lost.
#[derive(Args)]
pub struct ForgetArgs {
    #[arg(long)]
    pub arbiter: String,
    #[arg(long)]
    pub cluster: String,
    /// The epoch to abandon: the current one, as `understudy status` shows it
    /// (asked for, so that a stale command line cannot abandon a newer epoch).
    #[arg(long)]
    pub epoch: u64,
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// How long the primary's listeners are given to accept a connection.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub probe_timeout_ms: u64,
}

pub fn forget(a: ForgetArgs) -> Result<ExitCode> {
    let secret = crate::flags::read_secret(a.secret_file.as_ref())?;
    let arb = understudy_arbiter::connect(&a.arbiter, &secret)?;
    let at = arb.describe();
    let Some(r) = arb.read(&a.cluster).with_context(|| format!("reading cluster {:?} at {at}", a.cluster))? else {
        bail!("cluster {:?} has no record at {at}: nothing to forget (a node started for it claims epoch 1)", a.cluster);
    };
    if r.epoch != a.epoch {
        bail!(
            "--epoch {} is not the current epoch of cluster {:?}: it is {} (primary {}); check `understudy status` and give the current one",
            a.epoch,
            a.cluster,
            r.epoch,
            r.primary.node
        );
    }
    if r.is_abandoned() {
        println!(
            "epoch {} of cluster {:?} is already abandoned: the next node to start claims epoch {}",
            r.epoch,
            a.cluster,
            r.epoch + 1
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Ok(how) = crate::status::probe_primary(&r, Duration::from_millis(a.probe_timeout_ms.max(1))) {
        bail!(
            "the primary of epoch {}, node {:?}, answers ({how} accepted a connection): it is alive, and forgetting its state would make two primaries; stop it (SIGTERM) or let its backup take over instead",
            r.epoch,
            r.primary.node
        );
    }
    match arb.forget(&a.cluster, r.epoch, &r.primary.node).with_context(|| format!("abandoning epoch {} at {at}", r.epoch))? {
        Update::Applied(_) => {
            log::info!("cluster {:?}: epoch {} abandoned by an operator", a.cluster, r.epoch);
            println!(
                "epoch {} of cluster {:?} abandoned (its primary {:?} does not answer): the next node to start claims epoch {} with an empty state",
                r.epoch,
                a.cluster,
                r.primary.node,
                r.epoch + 1
            );
            Ok(ExitCode::SUCCESS)
        }
        Update::Superseded(now) => bail!(
            "the cluster moved on meanwhile (now epoch {}): nothing was abandoned; check `understudy status`",
            now.map_or(0, |r| r.epoch)
        ),
    }
}
