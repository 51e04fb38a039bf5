//! Section 4: joining. A primary holding 100 MiB or 1 GiB (64 KiB values,
//! written with pipelined SETs) gets a new backup by state transfer: time
//! from starting the joiner to in-sync, the longest gap a probe client sees
//! on the primary meanwhile, and the primary's resident memory (steady,
//! peak during the join).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::json;

use super::load::{fill, Probe, RssSampler};
use super::stats::{mib, Summary};
use super::sys::{metric, scrape, Env};
use super::{Opts, Report};

const VALUE_BYTES: usize = 64 << 10;

/// One join's figures.
struct Trial {
    join_s: f64,
    stall_ms: f64,
    steady_rss: f64,
    peak_rss: f64,
    snapshot_bytes: f64,
    fill_s: f64,
}

fn trial(env: &Env, mib_size: u64, rep: usize) -> Result<Trial> {
    let cluster = format!("join{mib_size}m{rep}");
    let p = env.kv(&cluster, "p", &[])?;
    env.wait_serving(&cluster, &p)?;
    let keys = mib_size * (1 << 20) / VALUE_BYTES as u64;
    let fill_s = fill(&p.addr, "big:", keys, VALUE_BYTES, 16)?.as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    let steady_rss = p.rss() as f64;
    let probe = Probe::start(&p.addr)?;
    let sampler = RssSampler::start(p.pid);
    std::thread::sleep(Duration::from_millis(200));
    let metrics = p.metrics.clone().unwrap_or_default();
    let t0 = Instant::now();
    let j = env.kv(&cluster, "j", &[])?;
    let deadline = t0 + Duration::from_secs(300);
    loop {
        if scrape(&metrics).is_ok_and(|m| metric(&m, "understudy_peer_in_sync") == 1.0) {
            break;
        }
        if Instant::now() > deadline {
            bail!("the joiner of {mib_size} MiB was not in sync after 300 s; logs in {}", env.dir.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let join_s = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(200));
    let (gap, _ops) = probe.stop()?;
    let peak_rss = sampler.stop() as f64;
    let snapshot_bytes = scrape(&metrics).map(|m| metric(&m, "understudy_snapshot_bytes_sent_total")).unwrap_or(f64::NAN);
    drop(j);
    drop(p);
    Ok(Trial { join_s, stall_ms: gap.as_secs_f64() * 1e3, steady_rss, peak_rss, snapshot_bytes, fill_s })
}

pub fn run(env: &Env, o: &Opts, report: &mut Report) -> Result<()> {
    let mut text = String::from(
        "Join by state transfer (64 KiB values), joiner start -> in sync; longest gap a PING/SET probe sees on the primary\n",
    );
    let mut rows = Vec::new();
    for &size in &o.join_mib {
        let reps = if size >= 1024 { o.reps.min(2) } else { o.reps };
        let mut trials = Vec::new();
        for rep in 0..reps {
            let t = trial(env, size, rep)?;
            report.say(format!(
                "  join {size} MiB ({}/{reps}): filled in {:.1} s; in sync after {:.2} s; longest stall {:.1} ms; primary RSS {} steady, {} peak",
                rep + 1,
                t.fill_s,
                t.join_s,
                t.stall_ms,
                mib(t.steady_rss),
                mib(t.peak_rss)
            ));
            trials.push(t);
        }
        let col = |f: fn(&Trial) -> f64| Summary::of(&trials.iter().map(f).collect::<Vec<_>>());
        let (join, stall, steady, peak) = (col(|t| t.join_s), col(|t| t.stall_ms), col(|t| t.steady_rss), col(|t| t.peak_rss));
        let growth = col(|t| t.peak_rss / t.steady_rss);
        text.push_str(&format!(
            "  {:>5} MiB  in sync {:>14}  stall {:>14}  primary RSS steady {:>12}, peak {:>12} ({} of steady)\n",
            size,
            join.show(|v| format!("{v:.2} s")),
            stall.show(|v| format!("{v:.1} ms")),
            mib(steady.median),
            mib(peak.median),
            growth.show(|v| format!("{v:.2}×")),
        ));
        rows.push(json!({
            "mib": size, "value_bytes": VALUE_BYTES, "trials": reps,
            "join_s": join.json(), "stall_ms": stall.json(),
            "primary_rss_steady_bytes": steady.json(), "primary_rss_peak_bytes": peak.json(),
            "peak_over_steady": growth.json(),
            "snapshot_bytes": col(|t| t.snapshot_bytes).json(),
            "fill_s": col(|t| t.fill_s).json(),
        }));
        if size == 1024 {
            report.target("Join 1 GiB to in-sync", "≤ 3 s", join.median, join.median <= 3.0, format!("{:.2} s", join.median));
            report.target(
                "Primary's longest stall during a 1 GiB join",
                "≤ 10 ms",
                stall.median,
                stall.median <= 10.0,
                format!("{:.1} ms", stall.median),
            );
            report.target(
                "Primary peak RSS during a 1 GiB join / steady",
                "≤ 1.3",
                growth.median,
                growth.median <= 1.3,
                format!("{:.2}", growth.median),
            );
        }
    }
    report.text(text);
    report.section("join", json!({"rows": rows}));
    Ok(())
}
