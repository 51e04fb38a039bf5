//! # understudy-sim
//!
//! A seeded simulator of understudy's runtime (the way FoundationDB's
//! simulation and TigerBeetle's VOPR work): every node runs the node
//! crate's real `Replica` — the protocol core, the command handler, the
//! logging channel's frames and batches, joins, snapshot streaming and
//! loading, the backup's execution, read barriers and the output gate's
//! watermark — through a simulated [`understudy_node::io::Io`], over a
//! simulated network that carries the bytes the runtime writes, a
//! simulated clock and an arbiter applying the arbiter crate's real rules,
//! with crashes, restarts, freezes, partitions, arbiter outages and — in
//! some runs — a transport that duplicates and reorders; with
//! [`SimConfig::durable`], `--appendfsync always` on simulated disks that
//! power cuts (of one node, or of the whole cluster at once) tear and
//! corrupt. Everything is
//! drawn from one seed: a failure prints `seed=N`, and `run(N, cfg)`
//! reproduces it exactly.
//!
//! Invariants ([`check`]) are checked after every step; after the fault
//! phase the network heals and the cluster must converge.
//!
//! # Layout
//!
//! - `world`: the scheduler, nodes, and what a node's runtime asks of the
//!   world after each step; [`machine`]: the replicated machine and the
//!   simulated `Io`.
//! - `links`: the channels' bytes, joins, snapshots, the executor;
//!   `arbiter`: the arbiter; `net`: links, delays, partitions.
//! - `faults`: clients and the nemesis.
//! - `disk`: the durable runs' simulated disks, performing the replicas'
//!   disk requests as a real node's disk thread does.
//! - [`check`]: the invariants. [`model`]: the clients' outputs.

#![forbid(unsafe_code)]

mod arbiter;
pub mod check;
mod disk;
mod disk_state;
mod faults;
mod links;
pub mod machine;
pub mod model;
mod net;
mod rng;
mod world;

use understudy_core::{Config, RoleName};

pub use world::World;

/// After healing, no reply may wait at the converged primary's gate longer.
const STUCK_OUTPUT_MS: u64 = 5_000;

/// What one simulation does.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    /// Milliseconds of faults.
    pub run_ms: u64,
    /// Milliseconds after healing in which the cluster must converge.
    pub settle_ms: u64,
    pub protocol: Config,
    /// Fraction of runs whose transport duplicates and reorders.
    pub lossy_runs: f64,
    /// Upper bound of the backup's per-slice execution delay (a slow backup).
    pub exec_delay_ms: u64,
    /// The nemesis also stops nodes as an operator does (SIGTERM): a
    /// primary hands over to its in-sync backup, a backup leaves.
    pub planned_stops: bool,
    /// Every node runs with `--appendfsync always` on a simulated disk
    /// that power cuts tear and corrupt, restarts recover from it, and the
    /// nemesis also cuts the power of the whole cluster at once.
    pub durable: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 3,
            run_ms: 20_000,
            settle_ms: 20_000,
            protocol: Config::default(),
            lossy_runs: 0.2,
            exec_delay_ms: 5,
            planned_stops: false,
            durable: false,
        }
    }
}

/// What a passing run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub steps: u64,
    pub writes_acked: usize,
    pub reads_released: u64,
    pub epochs: u64,
    pub handovers: u64,
    /// Whole-cluster power losses (durable runs).
    pub power_losses: u64,
    /// Restarts that recovered state from the node's disk.
    pub recoveries: u64,
    /// Claims of an epoch by a node that resumed from its disk.
    pub claims_from_disk: u64,
    /// Disks that did not load and were moved away (the node started empty).
    pub disk_wipes: u64,
    /// Joins by partial catch-up (a restarted node sent only what it missed).
    pub partial_joins: u64,
}

/// A violated invariant, with the seed that reproduces it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub at_ms: u64,
    pub message: String,
    pub trace: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "seed={} at {} ms: {}", self.seed, self.at_ms, self.message)?;
        writeln!(f, "last events:")?;
        for t in &self.trace {
            writeln!(f, "  {t}")?;
        }
        write!(f, "reproduce: understudy sim --seed {}", self.seed)
    }
}

/// Runs one seed. A panic inside the core (a broken assertion) is a
/// failure too: callers run this under `catch_unwind` to keep the seed.
pub fn run(seed: u64, cfg: &SimConfig) -> Result<Report, Failure> {
    let mut w = World::new(seed, cfg.clone());
    let fail = |w: &World, message: String| Failure { seed, at_ms: w.now, message, trace: w.trace.iter().cloned().collect() };
    if let Err(m) = w.run_until(cfg.run_ms) {
        return Err(fail(&w, m));
    }
    w.heal_all();
    if let Err(m) = w.run_until(cfg.run_ms + cfg.settle_ms) {
        return Err(fail(&w, m));
    }
    if let Err(m) = w.converged() {
        return Err(fail(&w, format!("no convergence {} ms after healing: {m}", cfg.settle_ms)));
    }
    Ok(Report {
        steps: w.steps,
        writes_acked: w.check.acked.len(),
        reads_released: w.check.reads_released,
        epochs: w.record.as_ref().map_or(0, |r| r.epoch),
        handovers: w.handovers,
        power_losses: w.power_losses,
        recoveries: w.recoveries,
        claims_from_disk: w.claims_from_disk,
        partial_joins: w.partial_joins,
        disk_wipes: w.disk_wipes,
    })
}

impl World {
    /// End of the fault phase: every link and the arbiter come back, dead
    /// nodes are (or will soon be) restarted, frozen ones resume when their
    /// freeze ends (within 2 s; cutting it short would let new messages
    /// overtake those held for them, which TCP never does).
    pub fn heal_all(&mut self) {
        self.healed = true;
        self.healed_at = Some(self.now);
        self.net.heal();
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive {
                let d = self.rng.range(1, 100);
                self.at(d, world::Action::Restart { node: i });
            }
        }
    }

    /// One primary, known to the arbiter; with two or more nodes, an in-sync
    /// backup whose log agrees with the primary's.
    pub fn converged(&self) -> Result<(), String> {
        let primaries: Vec<usize> =
            (0..self.nodes.len()).filter(|&i| self.nodes[i].alive && self.nodes[i].rep.core().is_primary()).collect();
        let [p] = primaries[..] else { return Err(format!("primaries: {primaries:?}")) };
        let r = self.record.as_ref().ok_or("no record")?;
        if r.primary.node != format!("n{p}") || r.epoch != self.nodes[p].rep.core().epoch() {
            return Err(format!("the arbiter names {} (epoch {}), the primary is n{p}", r.primary.node, r.epoch));
        }
        // Liveness of the output gate: nothing the primary holds waits long
        // (a read whose barrier never went out would wait for ever).
        if let Some(o) = self.nodes[p].outputs.front().filter(|o| self.now.saturating_sub(o.queued_at) > STUCK_OUTPUT_MS) {
            return Err(format!(
                "primary n{p} holds a reply queued at {} ms (tag {}, release_upto {})",
                o.queued_at,
                o.tag,
                self.nodes[p].rep.core().release_upto()
            ));
        }
        let alive = self.nodes.iter().filter(|n| n.alive).count();
        if alive >= 2 {
            let s = self.nodes[p].rep.core().status();
            if !s.protected {
                return Err(format!("primary n{p} is not protected: {s:?}"));
            }
            let b: usize = s.peer.as_deref().ok_or("no peer")?.trim_start_matches('n').parse().map_err(|_| "peer name")?;
            let bn = &self.nodes[b];
            if bn.rep.core().role_name() != RoleName::Backup {
                return Err(format!("n{b} is {:?}, not an in-sync backup", bn.rep.core().role_name()));
            }
            let (bops, pops) = (bn.ops(), self.nodes[p].ops());
            if bops.len() > pops.len() || bops != &pops[..bops.len()] {
                return Err(format!(
                    "backup n{b}'s state ({} writes) is not a prefix of primary n{p}'s ({} writes)",
                    bops.len(),
                    pops.len()
                ));
            }
        }
        Ok(())
    }
}
