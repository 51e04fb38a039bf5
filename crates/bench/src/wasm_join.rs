//! Section `wasmjoin`: joins at the machine level (issue 11), where a
//! joiner resumes a live snapshot of the running guest instead of replaying
//! its history.
//!
//! - age: a pair of the RESP guest serves rounds of pipelined SETs over
//!   100k keys; after each round the backup is killed and a fresh node
//!   joins: join time and the primary's and joiner's resident memory after
//!   0, 3M, 9M and 30M requests (quick: 0, 300k, 900k). They must stay flat.
//! - big: the guest holds 1 GiB in linear memory: join time, the guest's
//!   pause for the snapshot (its own measurement, from the metrics), and
//!   the longest gap a probe client sees on the primary.
//! - cost: what being snapshottable costs: the RESP guest as a pair and
//!   unprotected, and the CPU-bound guest unprotected, each with the
//!   Asyncify-transformed module and with the module as given.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;

use super::load::{fill, Probe};
use super::matrix::{self, find, paired, System, Test};
use super::stats::{kops, mib, ratio, Summary};
use super::sys::{metric, scrape, wait_idle, Env, Proc};
use super::{Opts, Report};

/// Nodes started with this cannot transform their guest: the plain module.
const PLAIN: (&str, &str) = ("UNDERSTUDY_WASM_OPT", "/nonexistent/wasm-opt");
const BIG_FLAGS: [&str; 2] = ["--memory-bytes-max", "2147483648"];

pub fn run(env: &Env, o: &Opts, report: &mut Report) -> Result<()> {
    age(env, o, report)?;
    big(env, o, report)?;
    cost(env, o, report)
}

/// redis-benchmark: `n` pipelined SETs over 100k keys at `addr`.
fn sets(addr: &str, n: u64) -> Result<()> {
    let (host, port) = addr.rsplit_once(':').context("host:port")?;
    let out = std::process::Command::new("redis-benchmark")
        .args(["-h", host, "-p", port, "-t", "set", "-n", &n.to_string(), "-r", "100000", "-c", "16", "-P", "16", "-q"])
        .output()
        .context("redis-benchmark (Debian package redis-tools)")?;
    anyhow::ensure!(out.status.success(), "redis-benchmark failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

fn age(env: &Env, o: &Opts, report: &mut Report) -> Result<()> {
    let ages: Vec<u64> = if o.quick { vec![0, 300_000, 900_000] } else { vec![0, 3_000_000, 9_000_000, 30_000_000] };
    let guest = o.guests.join("kvserver.wasm");
    let cluster = "wage";
    let a = env.wasm_node(cluster, "a", &guest, &[], false)?;
    env.wait_serving(cluster, &a)?;
    let mut text = String::from("WebAssembly RESP guest: join by live snapshot as the guest ages (pipelined SETs, 100k keys)\n");
    let (mut rows, mut served, mut backup): (Vec<serde_json::Value>, u64, Option<Proc>) = (Vec::new(), 0, None);
    let mut first: Option<(f64, f64)> = None;
    let mut worst_join = 0f64;
    for (i, &target) in ages.iter().enumerate() {
        if target > served {
            let t = Instant::now();
            sets(&a.addr, target - served)?;
            report.say(format!(
                "  {} requests served ({:.0}k/s)",
                target,
                (target - served) as f64 / t.elapsed().as_secs_f64() / 1e3
            ));
            served = target;
        }
        drop(backup.take());
        let t = Instant::now();
        let b = env.wasm_node(cluster, &format!("b{i}"), &guest, &[], false)?;
        env.wait_in_sync(cluster, &b.name)?;
        let join = t.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(300));
        let (pa, pb) = (a.rss() as f64, b.rss() as f64);
        first.get_or_insert((pa, pb));
        worst_join = worst_join.max(join);
        report.say(format!("  after {served} requests: join {join:.2} s, primary RSS {}, joiner RSS {}", mib(pa), mib(pb)));
        text.push_str(&format!(
            "  {:>10} requests   join {join:>6.2} s   primary RSS {:>10}   joiner RSS {:>10}\n",
            served,
            mib(pa),
            mib(pb)
        ));
        rows.push(json!({"requests": served, "join_s": join, "primary_rss": pa, "joiner_rss": pb}));
        backup = Some(b);
    }
    let (pa0, pb0) = first.unwrap_or_default();
    let last = rows.last().cloned().unwrap_or_default();
    let growth_p = last["primary_rss"].as_f64().unwrap_or(0.0) - pa0;
    let growth_j = last["joiner_rss"].as_f64().unwrap_or(0.0) - pb0;
    report.target(
        "wasm join time as the guest ages (worst)",
        "≤ 3 s",
        worst_join,
        worst_join <= 3.0,
        format!("{worst_join:.2} s"),
    );
    let limit = 64.0 * 1048576.0;
    report.target("wasm primary RSS growth over the rounds", "≤ 64 MiB", growth_p, growth_p <= limit, mib(growth_p));
    report.target("wasm joiner RSS growth over the rounds", "≤ 64 MiB", growth_j, growth_j <= limit, mib(growth_j));
    report.text(text);
    report.section("wasmjoin_age", json!({"rows": rows, "primary_growth": growth_p, "joiner_growth": growth_j}));
    Ok(())
}

fn big(env: &Env, o: &Opts, report: &mut Report) -> Result<()> {
    let size_mib: u64 = if o.quick { 256 } else { 1024 };
    let guest = o.guests.join("kvserver.wasm");
    let cluster = "wbig";
    let a = env.wasm_node_with(cluster, "a", &guest, &[], false, &BIG_FLAGS, &[])?;
    env.wait_serving(cluster, &a)?;
    let fill_s = fill(&a.addr, "big:", size_mib, 1 << 20, 4)?.as_secs_f64();
    std::thread::sleep(Duration::from_millis(300));
    let rss = a.rss() as f64;
    let probe = Probe::start(&a.addr)?;
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let b = env.wasm_node_with(cluster, "b", &guest, &[], false, &BIG_FLAGS, &[])?;
    env.wait_in_sync(cluster, "b")?;
    let join = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(200));
    let (gap, _) = probe.stop()?;
    let m = scrape(a.metrics.as_deref().context("metrics")?)?;
    let pause_ms = metric(&m, "understudy_guest_snapshot_pause_seconds_sum") * 1e3;
    let gap_ms = gap.as_secs_f64() * 1e3;
    report.say(format!(
        "  guest of {size_mib} MiB (filled in {fill_s:.1} s, primary RSS {}): join {join:.2} s, guest paused {pause_ms:.2} ms, longest gap a client saw {gap_ms:.1} ms",
        mib(rss)
    ));
    report.text(format!(
        "WebAssembly guest holding {size_mib} MiB of linear memory, under a probe client\n  join (start -> in sync) {join:.2} s   guest paused {pause_ms:.2} ms   longest gap seen by a client {gap_ms:.1} ms\n"
    ));
    let name = format!("wasm join of a {size_mib} MiB guest");
    report.target(&name, "≤ 5 s", join, join <= 5.0, format!("{join:.2} s"));
    report.target(
        &format!("guest pause for its snapshot ({size_mib} MiB)"),
        "≤ 10 ms",
        pause_ms,
        pause_ms <= 10.0,
        format!("{pause_ms:.2} ms"),
    );
    report.section("wasmjoin_big", json!({"mib": size_mib, "join_s": join, "pause_ms": pause_ms, "gap_ms": gap_ms, "rss": rss}));
    drop((b, a));
    Ok(())
}

fn cost(env: &Env, o: &Opts, report: &mut Report) -> Result<()> {
    let plain = o.guests.join("kvserver.wasm");
    let transformed = env.dir.join("kvserver-asyncify.wasm");
    let bytes = std::fs::read(&plain)?;
    let t = Instant::now();
    let out = understudy_hypervisor::asyncify::transform(&bytes)?;
    let transform_s = t.elapsed().as_secs_f64();
    std::fs::write(&transformed, &out)?;
    report.say(format!("  wasm-opt --asyncify: {} -> {} bytes in {transform_s:.2} s", bytes.len(), out.len()));
    let pair = |name: &str, cluster: &str, envs: &[(&str, &str)]| -> Result<(System, Proc, Proc)> {
        let a = env.wasm_node_with(cluster, "a", &plain, &[], false, &[], envs)?;
        env.wait_serving(cluster, &a)?;
        let b = env.wasm_node_with(cluster, "b", &plain, &[], false, &[], envs)?;
        env.wait_in_sync(cluster, "b")?;
        Ok((
            System {
                name: name.into(),
                addr: a.addr.clone(),
                pid: Some(a.pid),
                metrics: a.metrics.clone(),
                backup_pid: Some(b.pid),
            },
            a,
            b,
        ))
    };
    let (s1, a1, b1) = pair("pair, snapshottable", "wcost1", &[])?;
    let (s2, a2, b2) = pair("pair, plain module", "wcost2", &[PLAIN])?;
    let alone_t = env.wasm_alone("alone-snapshottable", &transformed, true, &[], false)?;
    let alone_p = env.wasm_alone("alone-plain", &plain, true, &[], false)?;
    let mut systems = vec![
        s1,
        s2,
        System {
            name: "unprotected, snapshottable".into(),
            addr: alone_t.addr.clone(),
            pid: Some(alone_t.pid),
            metrics: None,
            backup_pid: None,
        },
        System {
            name: "unprotected, plain module".into(),
            addr: alone_p.addr.clone(),
            pid: Some(alone_p.pid),
            metrics: None,
            backup_pid: None,
        },
    ];
    let n = if o.quick { 5_000 } else { 50_000 };
    let tests = [
        Test { test: "set", pipeline: 1, requests: n, keyspace: 0 },
        Test { test: "set", pipeline: 16, requests: n * 5, keyspace: 0 },
    ];
    let mut rebuild = |_: &System| -> Result<System> { anyhow::bail!("a pair lost its backup during the cost runs") };
    let cells = matrix::run(&mut systems, &tests, o.reps, 50, &|m| report.say(m), &mut rebuild)?;
    let mut text = String::from("The cost of being snapshottable (Asyncify), RESP guest, redis-benchmark -c 50\n");
    let mut ratios = serde_json::Map::new();
    for (p, label) in [(1, "SET -P 1"), (16, "SET -P 16")] {
        for (t, pl) in
            [("pair, snapshottable", "pair, plain module"), ("unprotected, snapshottable", "unprotected, plain module")]
        {
            let (Some(a), Some(b)) = (find(&cells, t, "set", p), find(&cells, pl, "set", p)) else { continue };
            let r = paired(&a.rps, &b.rps, |x, y| x / y);
            text.push_str(&format!(
                "  {label:<10} {t:<28} {:>10}   {pl:<28} {:>10}   ratio {}\n",
                Summary::of(&a.rps).show(kops),
                Summary::of(&b.rps).show(kops),
                ratio(r.median)
            ));
            ratios.insert(format!("{t} / plain, {label}"), r.json());
        }
    }
    drop((a1, b1, a2, b2, alone_t, alone_p));
    // The CPU-bound guest, unprotected and as a pair, both modules, alternated.
    let zplain = o.guests.join("compress.wasm");
    let ztrans = env.dir.join("compress-asyncify.wasm");
    std::fs::write(&ztrans, understudy_hypervisor::asyncify::transform(&std::fs::read(&zplain)?)?)?;
    let size = if o.quick { 1 << 20 } else { 8 << 20 };
    let args = vec![size.to_string()];
    let kinds = ["unprotected, snapshottable", "unprotected, plain module", "pair, snapshottable", "pair, plain module"];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    for rep in 0..o.reps.max(2) {
        for k in 0..kinds.len() {
            let i = (k + rep) % kinds.len();
            let (mut p, others) = match i {
                0 => (env.wasm_alone("compress-cost", &ztrans, false, &args, true)?, vec![]),
                1 => (env.wasm_alone("compress-cost", &zplain, false, &args, true)?, vec![]),
                _ => {
                    let cluster = format!("zcost{rep}{i}");
                    let envs: &[(&str, &str)] = if i == 3 { &[PLAIN] } else { &[] };
                    let a = env.wasm_node_with(&cluster, "a", &zplain, &args, true, &[], envs)?;
                    env.wait_primary(&cluster, "a")?;
                    let b = env.wasm_node_with(&cluster, "b", &zplain, &args, false, &[], envs)?;
                    env.wait_in_sync(&cluster, "b")?;
                    (a, vec![b])
                }
            };
            for q in std::iter::once(&p).chain(&others) {
                wait_idle(q.pid, Duration::from_millis(200), Duration::from_secs(120))?;
            }
            let t = Instant::now();
            drop(p.take_stdin());
            p.wait_exit(Duration::from_secs(300))?;
            times[i].push(t.elapsed().as_secs_f64());
            drop(others);
        }
    }
    for (pair, (t, pl)) in [(false, (0, 1)), (true, (2, 3))] {
        let r = paired(&times[pl], &times[t], |plain, trans| plain / trans);
        text.push_str(&format!(
            "  CPU-bound guest ({} MiB), {}: snapshottable {:.3} s, plain {:.3} s, speed ratio {}\n",
            size >> 20,
            if pair { "pair" } else { "unprotected" },
            Summary::of(&times[t]).median,
            Summary::of(&times[pl]).median,
            ratio(r.median)
        ));
        ratios.insert(format!("cpu-bound speed, {}, snapshottable / plain", if pair { "pair" } else { "unprotected" }), r.json());
    }
    report.text(text);
    report.section(
        "wasmjoin_cost",
        json!({"transform_s": transform_s, "module_bytes": [bytes.len(), out.len()], "rows": cells.iter().map(|c| c.json()).collect::<Vec<_>>(), "ratios": ratios}),
    );
    Ok(())
}
