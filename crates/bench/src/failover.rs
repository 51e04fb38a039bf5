//! Section 3: failover. kill -9 of the primary under a write load, to the
//! first write the new primary acknowledges; repeated as a chain (the
//! survivor gets a new backup by state transfer, then it is killed).

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use understudy_client::{Cluster, Conn, Reply};

use super::load::fill;
use super::stats::Summary;
use super::sys::{metric, scrape, Env, Proc};
use super::{Opts, Report};

/// A writer of the load: SETs through whichever node is primary.
fn writer(url: String, secret: Vec<u8>, cluster: String, id: usize, stop: Arc<AtomicBool>) -> Result<u64> {
    let arb = understudy_arbiter::connect(&url, &secret)?;
    let mut c = Cluster::new(arb, cluster, Duration::from_secs(2));
    let mut acked = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("fo:{id}:{}", acked % 1000);
        match c.try_call(&["SET", key.as_str(), "v"]) {
            Ok(Reply::Simple(s)) if s == "OK" => acked += 1,
            Ok(_) | Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    Ok(acked)
}

/// How the primary fails.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// kill -9: the kernel closes its sockets, the backup sees the channel
    /// close at once.
    Kill,
    /// SIGSTOP: a frozen machine (power cut, pulled cable) sends nothing;
    /// the backup notices by the heartbeat timeout. Killed afterwards.
    Freeze,
}

/// A pair under load, and the nodes that will replace its members.
struct Chain {
    cluster: String,
    primary: Proc,
    backup: Proc,
    next: usize,
    /// The epoch of the current pair: a change not caused by a trial is a
    /// false failover.
    epoch: u64,
    stop: Arc<AtomicBool>,
    writers: Vec<std::thread::JoinHandle<Result<u64>>>,
    /// Flags every node of the chain gets (`--failover-timeout-ms`).
    flags: Vec<String>,
}

/// Busy shell loops competing for the cores; killed when dropped. Each
/// also ends by itself once this process is gone (Ctrl-C, kill), so none
/// is left burning a core.
struct Hogs(Vec<std::process::Child>);

/// Counts to 100,000 between two looks at whether its parent still lives.
const HOG: &str = "while kill -0 $PPID 2>/dev/null; do i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; done";

impl Hogs {
    fn start(n: usize) -> Result<Hogs> {
        let spawn = |_| Command::new("sh").args(["-c", HOG]).spawn().context("starting a CPU hog (sh)");
        Ok(Hogs((0..n).map(spawn).collect::<Result<_>>()?))
    }
}

impl Drop for Hogs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Chain {
    fn start(env: &Env, cluster: String, flags: &[String]) -> Result<Chain> {
        let primary = env.kv(&cluster, "f0", &strs(flags))?;
        env.wait_serving(&cluster, &primary)?;
        let backup = env.kv(&cluster, "f1", &strs(flags))?;
        let epoch = env.wait_in_sync(&cluster, "f1")?.epoch;
        let stop = Arc::new(AtomicBool::new(false));
        let secret = std::fs::read(env.dir.join("secret"))?;
        let writers = (0..WRITERS)
            .map(|id| {
                let (url, secret, cluster, stop) = (env.arbiter_url.clone(), secret.clone(), cluster.clone(), stop.clone());
                std::thread::spawn(move || writer(url, secret, cluster, id, stop))
            })
            .collect();
        Ok(Chain { cluster, primary, backup, next: 2, epoch, stop, writers, flags: flags.to_vec() })
    }

    /// Stops the load; returns the writes acknowledged.
    fn stop(self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let mut acked = 0;
        for w in self.writers {
            acked += w.join().map_err(|_| anyhow::anyhow!("writer panicked"))?.context("writer")?;
        }
        Ok(acked)
    }

    /// The survivor gets a new backup by state transfer.
    fn add_backup(&mut self, env: &Env) -> Result<()> {
        let name = format!("f{}", self.next);
        self.next += 1;
        self.backup = env.kv(&self.cluster, &name, &strs(&self.flags))?;
        env.wait_in_sync(&self.cluster, &name)?;
        Ok(())
    }
}

const WRITERS: usize = 4;
const STATE_VALUE_BYTES: usize = 16 << 10;

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Whether the chain's pair is still the one the chain started: the same
/// epoch, and the primary protected in it. If not, a starved node declared
/// its silent peer failed — a false failover: it is reported, and the
/// survivor gets a backup.
fn still_paired(env: &Env, chain: &mut Chain, report: &mut Report, when: &str) -> Result<bool> {
    // The primary itself says whether it is still protected in the same
    // epoch (the arbiter's status of the backup is published lazily).
    // One read may time out while the hogs hold the cores: retried.
    let t = Instant::now();
    let r = loop {
        match env.record(&chain.cluster) {
            Some(r) => break r,
            None if t.elapsed() < Duration::from_secs(10) => std::thread::sleep(Duration::from_millis(50)),
            None => anyhow::bail!("the arbiter did not answer a read of {:?} for 10 s", chain.cluster),
        }
    };
    let healthy =
        r.epoch == chain.epoch
            && chain.primary.metrics.as_deref().and_then(|m| scrape(m).ok()).is_some_and(|m| {
                metric(&m, "understudy_protected") == 1.0 && metric(&m, "understudy_epoch") == chain.epoch as f64
            });
    if !healthy {
        report.keep_logs = true;
        report.say(format!("  false failover {when}: {} is primary alone; adding a backup", r.primary.node));
        if r.primary.node == chain.backup.name {
            std::mem::swap(&mut chain.primary, &mut chain.backup);
        }
        chain.add_backup(env)?;
        chain.epoch = env.record(&chain.cluster).map_or(0, |r| r.epoch);
    }
    Ok(healthy)
}

/// From the fault to the first write acknowledged by the new primary, as a
/// client that asks the arbiter where the primary is sees it: (first ack,
/// epoch claimed), or None if the backup never served within `limit`.
fn first_ack(env: &Env, cluster: &str, epoch: u64, new: &str, t0: Instant, limit: Duration) -> Option<(Duration, Duration)> {
    let mut claimed = None;
    while t0.elapsed() < limit {
        let Some(r) = env.record(cluster).filter(|r| r.epoch > epoch && r.primary.node == new) else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        let claim = *claimed.get_or_insert_with(|| t0.elapsed());
        if let Ok(mut c) = Conn::connect(&r.primary.client, Duration::from_secs(2)) {
            if matches!(c.call(&["SET", "failover:probe", "x"]), Ok(Reply::Simple(ref s)) if s == "OK") {
                return Some((t0.elapsed(), claim));
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

pub fn run(env: &Env, o: &Opts, report: &mut Report) -> Result<()> {
    let kills = o.failover_trials;
    let freezes = (kills / 2).max(1);
    let defaults = understudy_core::Config::default();
    let (hb, timeout) = (defaults.heartbeat_ms, o.failover_timeout_ms.unwrap_or(defaults.failover_timeout_ms));
    let flags: Vec<String> =
        o.failover_timeout_ms.map(|t| vec!["--failover-timeout-ms".into(), t.to_string()]).unwrap_or_default();
    let hogs = o.cpu_hogs;
    report.say(format!(
        "Failover: {kills} kill -9 and {freezes} SIGSTOP trials of the primary under a write load, \
         --heartbeat-ms {hb} --failover-timeout-ms {timeout}, {hogs} CPU-bound processes competing for the cores"
    ));
    let _hogs = Hogs::start(hogs)?;
    let mut chains = 1;
    let mut chain = Chain::start(env, "failover".into(), &flags)?;
    // A state worth streaming: every new backup of the chain joins by a
    // snapshot of it, under the load and the hogs (a starved heartbeat
    // during a snapshot is a false failover).
    let state_mib = if o.quick { 32 } else { 256 };
    let keys = state_mib * (1 << 20) / STATE_VALUE_BYTES as u64;
    fill(&chain.primary.addr, "state:", keys, STATE_VALUE_BYTES, 16)?;
    report.say(format!("  filled {state_mib} MiB: each new backup joins by a snapshot of it"));
    let mut results: Vec<(Fault, f64, f64)> = Vec::new();
    let faults: Vec<Fault> = (0..kills).map(|_| Fault::Kill).chain((0..freezes).map(|_| Fault::Freeze)).collect();
    let (mut false_failovers, mut stuck, mut acked) = (0u32, 0u32, 0u64);
    // A soak first: the loaded pair and the hogs, no fault. Any epoch
    // change now is a false failover.
    let soak = if o.quick { Duration::from_secs(5) } else { Duration::from_secs(30) };
    let t = Instant::now();
    while t.elapsed() < soak {
        std::thread::sleep(Duration::from_millis(250));
        if !still_paired(env, &mut chain, report, &format!("in the soak, after {:.1} s", t.elapsed().as_secs_f64()))? {
            false_failovers += 1;
        }
    }
    report.say(format!("  soak: {:.0} s under load and {hogs} CPU hogs, {false_failovers} false failovers", soak.as_secs_f64()));
    for (trial, &fault) in faults.iter().enumerate() {
        std::thread::sleep(Duration::from_millis(300));
        if !still_paired(env, &mut chain, report, &format!("before trial {}", trial + 1))? {
            false_failovers += 1;
        }
        chain.epoch = env.record(&chain.cluster).map_or(0, |r| r.epoch);
        let epoch = env.record(&chain.cluster).map_or(0, |r| r.epoch);
        let new = chain.backup.name.clone();
        let t0 = Instant::now();
        match fault {
            Fault::Kill => chain.primary.kill9(),
            Fault::Freeze => {
                Command::new("kill").args(["-STOP", &chain.primary.pid.to_string()]).status().context("kill -STOP")?;
            }
        }
        let what = if fault == Fault::Kill { "kill -9" } else { "SIGSTOP" };
        let Some((first, claim)) = first_ack(env, &chain.cluster, epoch, &new, t0, STUCK_AFTER) else {
            // The backup never served: a liveness failure of the system,
            // counted and reported. Start a fresh pair for the next trials.
            stuck += 1;
            report.keep_logs = true;
            let holder = env.record(&chain.cluster).map(|r| format!("{} holds epoch {}", r.primary.node, r.epoch));
            report.say(format!(
                "  trial {}/{}: {what} of the primary; {new} did NOT serve within {STUCK_AFTER:?} (arbiter: {}); node logs kept",
                trial + 1,
                faults.len(),
                holder.unwrap_or_default()
            ));
            acked += chain.stop()?;
            chains += 1;
            chain = Chain::start(env, format!("failover{chains}"), &flags)?;
            continue;
        };
        chain.primary.kill9();
        let (first, claim) = (first.as_secs_f64() * 1e3, claim.as_secs_f64() * 1e3);
        results.push((fault, first, claim));
        report.say(format!(
            "  trial {}/{}: {what} of the primary; {new} claimed the epoch after {claim:.0} ms, first acknowledged write after {first:.0} ms",
            trial + 1,
            faults.len(),
        ));
        if trial + 1 < faults.len() {
            let next = env.kv(&chain.cluster, &format!("f{}", chain.next), &strs(&chain.flags))?;
            chain.primary = std::mem::replace(&mut chain.backup, next);
            env.wait_in_sync(&chain.cluster, &format!("f{}", chain.next))?;
            chain.next += 1;
            chain.epoch = env.record(&chain.cluster).map_or(0, |r| r.epoch);
        }
    }
    acked += chain.stop()?;
    let pick =
        |f: Fault, i: usize| results.iter().filter(|r| r.0 == f).map(|r| if i == 1 { r.1 } else { r.2 }).collect::<Vec<_>>();
    let (kill, kill_claim, freeze, freeze_claim) =
        (pick(Fault::Kill, 1), pick(Fault::Kill, 2), pick(Fault::Freeze, 1), pick(Fault::Freeze, 2));
    let (k, kc, f, fc) = (Summary::of(&kill), Summary::of(&kill_claim), Summary::of(&freeze), Summary::of(&freeze_claim));
    report.text(format!(
        "Failover -> first acknowledged write on the new primary ({WRITERS} writers loading a pair holding {state_mib} MiB, --heartbeat-ms {hb} --failover-timeout-ms {timeout}, {hogs} CPU hogs)\n  \
         kill -9 ({} trials): median {:.0} ms, max {:.0} ms (epoch claimed: median {:.0} ms) — the backup sees the channel close at once\n  \
         SIGSTOP ({} trials): median {:.0} ms, max {:.0} ms (epoch claimed: median {:.0} ms) — silence, detected by the timeout\n  \
         backups that never served after the fault: {stuck}; false failovers (a {:.0} s soak, and between trials): {false_failovers}\n",
        k.n, k.median, k.max, kc.median, f.n, f.median, f.max, fc.median, soak.as_secs_f64()
    ));
    report.target(
        "Failover median, kill -9 -> first ack",
        "≤ 300 ms",
        k.median,
        k.median <= 300.0,
        format!("{:.0} ms (max {:.0})", k.median, k.max),
    );
    report.target(
        "Failover median, frozen primary (SIGSTOP) -> first ack",
        "≤ 300 ms",
        f.median,
        f.median <= 300.0,
        format!("{:.0} ms (max {:.0})", f.median, f.max),
    );
    report.target("Every failover trial serves again", "0 stuck", stuck as f64, stuck == 0, format!("{stuck} stuck"));
    report.target(
        "No false failover under load and CPU hogs (soak, trials)",
        "0",
        false_failovers as f64,
        false_failovers == 0,
        false_failovers.to_string(),
    );
    report.plot.failover = results.iter().map(|r| r.1).collect();
    report.section(
        "failover",
        json!({
            "kill9": {"trials": k.n, "first_ack_ms": k.json(), "claim_ms": kc.json()},
            "sigstop": {"trials": f.n, "first_ack_ms": f.json(), "claim_ms": fc.json()},
            "heartbeat_ms": hb, "failover_timeout_ms": timeout, "cpu_hogs": hogs, "soak_s": soak.as_secs(), "state_mib": state_mib,
            "writes_acknowledged": acked, "writers": WRITERS,
            "false_failovers": false_failovers, "stuck": stuck, "stuck_after_s": STUCK_AFTER.as_secs(),
        }),
    );
    Ok(())
}

/// A backup that has not served this long after the fault never will
/// (failover takes a timeout plus a claim: well under a second).
const STUCK_AFTER: Duration = Duration::from_secs(10);
