//! Section 2: the machine level. The RESP guest (guests/kvserver.c) as a
//! pair vs unprotected (same gate, no backup) vs the same C source built
//! natively; the CPU-bound guest (guests/compress.c) as a pair vs
//! unprotected vs the `wasmtime run` CLI.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::json;

use super::matrix::{self, find, paired, System, Test};
use super::stats::{ratio, Summary};
use super::sys::{loop_lags, wait_idle, Env, Proc};
use super::{Opts, Report};

const PAIR: &str = "wasm pair";
const ALONE: &str = "wasm unprotected";
const NATIVE: &str = "native (gcc -O2)";
const WASMTIME: &str = "wasmtime run (CLI 48)";

pub fn run(env: &Env, o: &Opts, report: &mut Report) -> Result<()> {
    resp(env, o, report)?;
    compress(env, o, report)
}

fn resp(env: &Env, o: &Opts, report: &mut Report) -> Result<()> {
    let guest = o.guests.join("kvserver.wasm");
    let pair = |cluster: &str| -> Result<(System, Proc, Proc)> {
        let a = env.wasm_node(cluster, "wa", &guest, &[], false)?;
        env.wait_serving(cluster, &a)?;
        let b = env.wasm_node(cluster, "wb", &guest, &[], false)?;
        env.wait_in_sync(cluster, "wb")?;
        let s = System {
            name: PAIR.into(),
            addr: a.addr.clone(),
            pid: Some(a.pid),
            metrics: a.metrics.clone(),
            backup_pid: Some(b.pid),
        };
        Ok((s, a, b))
    };
    let (first, a, b) = pair("wpair")?;
    let mut procs = vec![a, b];
    let mut pairs = 1;
    let mut rebuild = |_: &System| -> Result<System> {
        procs.clear();
        pairs += 1;
        let (s, a, b) = pair(&format!("wpair{pairs}"))?;
        procs.extend([a, b]);
        Ok(s)
    };
    let alone = env.wasm_alone("wasm-alone", &guest, true, &[], false)?;
    let native = env.native_kvserver(&o.guests.join("kvserver-native"))?;
    let native_addr = native.addr.clone();
    let mut systems = vec![
        first,
        System { name: ALONE.into(), addr: alone.addr.clone(), pid: Some(alone.pid), metrics: None, backup_pid: None },
        System { name: NATIVE.into(), addr: native_addr, pid: Some(native.pid), metrics: None, backup_pid: None },
    ];
    let (n1, n16) = if o.quick { (3_000, 10_000) } else { (40_000, 200_000) };
    let tests = Test::set_get(n1, n16);
    report.say(format!("WebAssembly RESP guest: {} repetitions, redis-benchmark -c 50", o.reps));
    let cells = matrix::run(&mut systems, &tests, o.reps, 50, &|m| report.say(m), &mut rebuild)?;
    let lost = cells.iter().map(|c| c.unprotected_runs).sum::<u32>();
    let lags = loop_lags(&procs);
    report.say(format!("  worst event-loop lag of the pair's nodes (ticker, ≤ bucket bound): {lags:?} s"));
    let mut text = String::from("WebAssembly RESP guest (guests/kvserver.c), redis-benchmark -c 50\n");
    let mut rows = Vec::new();
    for c in &cells {
        let label = c.label();
        text.push_str(&c.table_line(24));
        rows.push(c.json());
        report.plot.throughput.push((format!("wasm {label}"), c.system.clone(), Summary::of(&c.rps)));
    }
    let mut ratios = serde_json::Map::new();
    for (test, p) in [("set", 1), ("get", 1), ("set", 16), ("get", 16)] {
        let (Some(pair), Some(alone), Some(native)) =
            (find(&cells, PAIR, test, p), find(&cells, ALONE, test, p), find(&cells, NATIVE, test, p))
        else {
            continue;
        };
        let vs_alone = paired(&pair.rps, &alone.rps, |a, b| a / b);
        let vs_native = paired(&pair.rps, &native.rps, |a, b| a / b);
        ratios.insert(
            format!("{test}_P{p}"),
            json!({"pair_over_unprotected": vs_alone.json(), "pair_over_native": vs_native.json()}),
        );
        let label = format!("{} -P {p}", test.to_uppercase());
        // Issue 17's goals: 0.9 at -P 1, 0.85 at -P 16.
        let goal = if p == 16 { 0.85 } else { 0.9 };
        report.target(
            &format!("wasm RESP pair / unprotected, {label}"),
            &format!("≥ {goal}"),
            vs_alone.median,
            vs_alone.median >= goal,
            ratio(vs_alone.median),
        );
        if test == "set" && p == 1 {
            let added_p50_us = paired(&pair.p50_ms, &alone.p50_ms, |a, b| (a - b) * 1000.0);
            report.target(
                &format!("wasm pair added p50 latency, {label}"),
                "≤ 60 µs",
                added_p50_us.median,
                added_p50_us.median <= 60.0,
                format!("{:.0} µs", added_p50_us.median),
            );
        }
        if p == 16 {
            report.target(
                &format!("wasm RESP pair / native, {label}"),
                "≥ 0.7",
                vs_native.median,
                vs_native.median >= 0.7,
                ratio(vs_native.median),
            );
        }
    }
    report.text(text);
    // The pair's thread hops and wake-ups, in the units that explain them.
    report.text(matrix::kernel_table("WebAssembly RESP guest", &cells));
    report.target(
        "No false failover under full load (wasm runs that lost the backup)",
        "0",
        lost as f64,
        lost == 0,
        lost.to_string(),
    );
    let lags: Vec<_> = lags.iter().map(|(n, l)| json!({"node": n, "worst_s": super::stats::finite(*l)})).collect();
    report
        .section("wasm_resp", json!({"clients": 50, "rows": rows, "ratios": ratios, "false_failovers": lost, "loop_lag": lags}));
    Ok(())
}

/// `wasmtime` of CLI version 48, if installed.
fn wasmtime(o: &Opts) -> Option<String> {
    let out = Command::new(&o.wasmtime).arg("--version").output().ok()?;
    let v = String::from_utf8_lossy(&out.stdout).to_string();
    v.split_whitespace().nth(1).filter(|x| x.starts_with("48.")).map(|_| v.trim().to_string())
}

/// Starts the guest (blocked reading stdin until we close it), returns the
/// process to time, and anything else to keep alive.
fn timed_run(mut p: Proc, others: Vec<Proc>, limit: Duration) -> Result<f64> {
    wait_idle(p.pid, Duration::from_millis(200), Duration::from_secs(120))?;
    for q in &others {
        wait_idle(q.pid, Duration::from_millis(200), Duration::from_secs(120))?;
    }
    let stdin = p.take_stdin().context("stdin piped")?;
    let t0 = Instant::now();
    drop(stdin);
    let code = p.wait_exit(limit)?;
    let dt = t0.elapsed().as_secs_f64();
    if code != 0 {
        bail!("{} exited with {code}", p.name);
    }
    for mut q in others {
        let _ = q.wait_exit(Duration::from_secs(30));
    }
    Ok(dt)
}

fn compress(env: &Env, o: &Opts, report: &mut Report) -> Result<()> {
    let guest = o.guests.join("compress.wasm");
    let size = if o.quick { 1 << 20 } else { 8 << 20 };
    let args = vec![size.to_string()];
    let wt = wasmtime(o);
    if wt.is_none() {
        report.say(format!(
            "  {} not found (or not CLI 48): its column is skipped. Install: cargo install wasmtime-cli --version 48.0.8 --locked",
            o.wasmtime
        ));
    }
    let mut systems = vec![PAIR, ALONE];
    if wt.is_some() {
        systems.push(WASMTIME);
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); systems.len()];
    let limit = Duration::from_secs(300);
    for rep in 0..o.reps {
        for k in 0..systems.len() {
            let si = (k + rep) % systems.len();
            let dt = match systems[si] {
                PAIR => {
                    let cluster = format!("compress{rep}");
                    let a = env.wasm_node(&cluster, "ca", &guest, &args, true)?;
                    env.wait_primary(&cluster, "ca")?;
                    let b = env.wasm_node(&cluster, "cb", &guest, &args, false)?;
                    env.wait_in_sync(&cluster, "cb")?;
                    timed_run(a, vec![b], limit)?
                }
                ALONE => timed_run(env.wasm_alone("compress-alone", &guest, false, &args, true)?, vec![], limit)?,
                _ => {
                    let mut c = Command::new(&o.wasmtime);
                    c.arg("run").arg(&guest).args(&args).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(env.log("wasmtime")?);
                    timed_run(Proc::start("wasmtime", &mut c, String::new(), None)?, vec![], limit)?
                }
            };
            report.say(format!("  rep {}/{} compress {size} bytes  {:<24} {dt:.3} s", rep + 1, o.reps, systems[si]));
            times[si].push(dt);
        }
    }
    let mut text =
        format!("CPU-bound guest (guests/compress.c, {} MiB generated), wall time from start of input to exit\n", size >> 20);
    let mut rows = Vec::new();
    for (i, s) in systems.iter().enumerate() {
        let t = Summary::of(&times[i]);
        text.push_str(&format!("  {:<24} {:>14}\n", s, t.show(|v| format!("{v:.3} s"))));
        rows.push(json!({"system": s, "seconds": t.json()}));
        report.plot.throughput.push((
            "compress runs/min".into(),
            s.to_string(),
            Summary::of(&times[i].iter().map(|t| 60.0 / t).collect::<Vec<_>>()),
        ));
    }
    // Speed ratios: the inverse ratio of times, per repetition.
    let pair_over_alone = paired(&times[1], &times[0], |alone, pair| alone / pair);
    report.target(
        "CPU-bound guest pair / unprotected",
        "≥ 0.95",
        pair_over_alone.median,
        pair_over_alone.median >= 0.95,
        ratio(pair_over_alone.median),
    );
    let mut ratios = json!({"pair_over_unprotected": pair_over_alone.json()});
    if wt.is_some() {
        let alone_over_wt = paired(&times[2], &times[1], |wt, alone| wt / alone);
        report.target(
            "CPU-bound guest unprotected / wasmtime run",
            "≥ 0.95",
            alone_over_wt.median,
            alone_over_wt.median >= 0.95,
            ratio(alone_over_wt.median),
        );
        ratios["unprotected_over_wasmtime"] = alone_over_wt.json();
    } else {
        report.target_missing("CPU-bound guest unprotected / wasmtime run", "≥ 0.95", "wasmtime CLI 48 not installed");
        text.push_str("  wasmtime run: skipped (wasmtime CLI 48 not installed)\n");
    }
    report.text(text);
    report.section(
        "wasm_compress",
        json!({"bytes": size, "wasmtime": wt, "rows": rows, "ratios": ratios, "guest": Path::new(&guest).display().to_string()}),
    );
    Ok(())
}
