//! Section `switchover` (issue 10 §4): planned switchovers under a write
//! load — `understudy switchover` (no process stops; the old primary
//! rejoins as backup) and SIGTERM of the primary (it hands over and exits;
//! a new backup joins) — alternated. Per trial: the longest time any
//! writer waited between two acknowledged writes, and how many of its calls
//! failed (a failed call is a reconnection); at the end every acknowledged
//! write is read back from the primary.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;
use understudy_client::{Cluster, Conn, Reply};

use super::stats::Summary;
use super::sys::Env;
use super::{Opts, Report};

const WRITERS: usize = 4;

/// What the writers share with the trials: per writer, the time of its last
/// acknowledgement, the longest gap since the counters were reset, and its
/// failed calls since then.
#[derive(Default)]
struct Gaps {
    last: Vec<Option<Instant>>,
    longest: Vec<Duration>,
    failed: Vec<u32>,
}

impl Gaps {
    fn reset(&mut self) {
        self.longest.iter_mut().for_each(|d| *d = Duration::ZERO);
        self.failed.iter_mut().for_each(|f| *f = 0);
    }
}

fn writer(
    env_url: String,
    secret: Vec<u8>,
    cluster: String,
    id: usize,
    stop: Arc<AtomicBool>,
    gaps: Arc<Mutex<Gaps>>,
) -> Vec<String> {
    let Ok(arb) = understudy_arbiter::connect(&env_url, &secret) else { return Vec::new() };
    let mut c = Cluster::new(arb, cluster, Duration::from_secs(2));
    let mut acked = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let key = format!("so:{id}:{}", acked.len());
        let ok = matches!(c.try_call(&["SET", key.as_str(), "v"]), Ok(Reply::Simple(ref s)) if s == "OK");
        let mut g = gaps.lock().unwrap();
        if ok {
            let now = Instant::now();
            if let Some(t) = g.last[id] {
                g.longest[id] = g.longest[id].max(now - t);
            }
            g.last[id] = Some(now);
            acked.push(key);
        } else {
            g.failed[id] += 1;
            drop(g);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    acked
}

pub fn run(env: &Env, o: &Opts, report: &mut Report) -> Result<()> {
    let trials = o.failover_trials.max(2);
    report.say(format!(
        "Switchover: {trials} planned switchovers under a write load ({WRITERS} writers), command and SIGTERM alternated"
    ));
    let cluster = "switchover";
    let mut primary = env.kv(cluster, "s0", &[])?;
    env.wait_serving(cluster, &primary)?;
    let mut backup = env.kv(cluster, "s1", &[])?;
    env.wait_in_sync(cluster, "s1")?;
    let mut next = 2;
    let stop = Arc::new(AtomicBool::new(false));
    let gaps = Arc::new(Mutex::new(Gaps {
        last: vec![None; WRITERS],
        longest: vec![Duration::ZERO; WRITERS],
        failed: vec![0; WRITERS],
    }));
    let secret = std::fs::read(env.dir.join("secret"))?;
    let writers: Vec<_> = (0..WRITERS)
        .map(|id| {
            let (url, secret, stop, gaps) = (env.arbiter_url.clone(), secret.clone(), stop.clone(), gaps.clone());
            std::thread::spawn(move || writer(url, secret, cluster.to_string(), id, stop, gaps))
        })
        .collect();
    let mut rows: Vec<(&str, f64, u32)> = Vec::new();
    for trial in 0..trials {
        std::thread::sleep(Duration::from_millis(300));
        let epoch = env.record(cluster).context("reading the arbiter")?.epoch;
        gaps.lock().unwrap().reset();
        let by_command = trial % 2 == 0;
        if by_command {
            let out = Command::new(&env.bin)
                .args(["switchover", "--arbiter", &env.arbiter_url, "--cluster", cluster, "--secret-file"])
                .arg(env.dir.join("secret"))
                .output()
                .context("running understudy switchover")?;
            if !out.status.success() {
                bail!("understudy switchover failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            std::mem::swap(&mut primary, &mut backup);
        } else {
            let status = Command::new("kill").args(["-TERM", &primary.pid.to_string()]).status().context("kill -TERM")?;
            if !status.success() {
                bail!("kill -TERM {} failed", primary.pid);
            }
            let code = primary.child.wait().context("waiting for the stopped primary")?.code();
            if code != Some(0) {
                bail!("the primary stopped by SIGTERM exited with {code:?}, not 0");
            }
            primary = std::mem::replace(&mut backup, env.kv(cluster, &format!("s{next}"), &[])?);
        }
        let r = env.record(cluster).context("reading the arbiter")?;
        if r.epoch != epoch + 1 || r.primary.node != primary.name {
            bail!(
                "after the switchover the arbiter has {} at epoch {}, expected {} at {}",
                r.primary.node,
                r.epoch,
                primary.name,
                epoch + 1
            );
        }
        // The measure covers the switchover and the writes after it.
        std::thread::sleep(Duration::from_millis(300));
        let (longest, failed) = {
            let g = gaps.lock().unwrap();
            (g.longest.iter().max().copied().unwrap_or_default(), g.failed.iter().max().copied().unwrap_or(0))
        };
        let how = if by_command { "command" } else { "SIGTERM" };
        report.say(format!(
            "  trial {}/{trials} ({how}): {} is primary of epoch {}; longest pause a writer saw {:.1} ms, at most {failed} failed calls per writer",
            trial + 1,
            primary.name,
            epoch + 1,
            longest.as_secs_f64() * 1e3
        ));
        rows.push((how, longest.as_secs_f64() * 1e3, failed));
        if !by_command {
            env.wait_in_sync(cluster, &format!("s{next}"))?;
            next += 1;
        } else {
            env.wait_in_sync(cluster, &backup.name)?;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.join().map_err(|_| anyhow::anyhow!("a writer panicked"))?);
    }
    let mut c = Conn::connect(&primary.addr, Duration::from_secs(5))?;
    let mut lost = 0usize;
    for chunk in acked.chunks(500) {
        let cmds: Vec<Vec<&str>> = chunk.iter().map(|k| vec!["GET", k.as_str()]).collect();
        lost += c.pipeline(&cmds)?.iter().filter(|r| r.bytes() != Some(b"v")).count();
    }
    let pick = |how: &str| rows.iter().filter(|r| r.0 == how).map(|r| r.1).collect::<Vec<_>>();
    let (cmd, term) = (Summary::of(&pick("command")), Summary::of(&pick("SIGTERM")));
    let reconnects = rows.iter().map(|r| r.2).max().unwrap_or(0);
    let worst = cmd.max.max(term.max);
    report.text(format!(
        "Planned switchover -> longest pause a writer saw ({WRITERS} writers)\n  \
         understudy switchover ({} trials): median {:.1} ms, max {:.1} ms\n  \
         SIGTERM of the primary ({} trials): median {:.1} ms, max {:.1} ms\n  \
         failed calls per writer per switchover: at most {reconnects}; acknowledged writes lost: {lost} of {}\n",
        cmd.n,
        cmd.median,
        cmd.max,
        term.n,
        term.median,
        term.max,
        acked.len()
    ));
    report.target(
        "Planned switchover: longest client pause",
        "≤ 50 ms",
        worst,
        worst <= 50.0,
        format!("{worst:.1} ms (max of all trials)"),
    );
    report.target("Planned switchover: writes lost", "0", lost as f64, lost == 0, format!("{lost} of {}", acked.len()));
    report.section(
        "switchover",
        json!({"writers": WRITERS, "command_pause_ms": cmd.json(), "sigterm_pause_ms": term.json(),
               "failed_calls_per_writer_max": reconnects, "writes_acknowledged": acked.len(), "writes_lost": lost}),
    );
    Ok(())
}
