//! Sections 1 and 5: the KV service as a pair (output rule on) vs the same
//! binary unprotected vs Redis 7 with an async replica; and what
//! replication costs per operation (log bytes, backup CPU).

use anyhow::Result;
use serde_json::json;

use super::load::redis_benchmark_set_bytes;
use super::matrix::{self, find, paired, Cell, System, Test};
use super::stats::{ratio, Summary};
use super::sys::{loop_lags, wait_redis_replica, Env, Proc};
use super::{Opts, Report};

pub const PAIR: &str = "understudy pair";
pub const SINGLE: &str = "understudy unprotected";
pub const REDIS: &str = "redis + async replica";

/// Runs the KV matrix. With `kv` false (only the cost section was asked
/// for) just the pair runs SET.
/// A fresh KV pair in cluster `cluster`: (system, primary, backup).
pub(crate) fn pair(env: &Env, cluster: &str) -> Result<(System, Proc, Proc)> {
    let a = env.kv(cluster, "a", &[])?;
    env.wait_serving(cluster, &a)?;
    let b = env.kv(cluster, "b", &[])?;
    env.wait_in_sync(cluster, "b")?;
    let s =
        System { name: PAIR.into(), addr: a.addr.clone(), pid: Some(a.pid), metrics: a.metrics.clone(), backup_pid: Some(b.pid) };
    Ok((s, a, b))
}

pub fn run(env: &Env, o: &Opts, report: &mut Report, kv: bool, cost: bool) -> Result<()> {
    let (first, a, b) = pair(env, "kvpair")?;
    let mut procs = vec![a, b];
    let mut pairs = 1;
    let mut rebuild = |_: &System| -> Result<System> {
        procs.clear();
        pairs += 1;
        let (s, a, b) = pair(env, &format!("kvpair{pairs}"))?;
        procs.extend([a, b]);
        Ok(s)
    };
    let mut systems = vec![first];
    let (_single, _redis, _replica);
    if kv {
        let s = env.kv("kvsingle", "s", &[])?;
        env.wait_serving("kvsingle", &s)?;
        let r = env.redis("redis-primary", None)?;
        let rr = env.redis("redis-replica", Some(&r.addr))?;
        wait_redis_replica(&rr.addr, std::time::Duration::from_secs(30))?;
        systems.push(System {
            name: SINGLE.into(),
            addr: s.addr.clone(),
            pid: Some(s.pid),
            metrics: s.metrics.clone(),
            backup_pid: None,
        });
        systems.push(System {
            name: REDIS.into(),
            addr: r.addr.clone(),
            pid: Some(r.pid),
            metrics: None,
            backup_pid: Some(rr.pid),
        });
        (_single, _redis, _replica) = (Some(s), Some(r), Some(rr));
    } else {
        (_single, _redis, _replica) = (None, None, None);
    }
    let (n1, n16) = if o.quick { (5_000, 20_000) } else { (100_000, 400_000) };
    let tests: Vec<Test> = if kv {
        Test::set_get(n1, n16)
    } else {
        vec![
            Test { test: "set", pipeline: 1, requests: n1, keyspace: 0 },
            Test { test: "set", pipeline: 16, requests: n16, keyspace: 0 },
        ]
    };
    report.say(format!(
        "KV: {} repetitions of {} tests on {} systems, redis-benchmark -c 50",
        o.reps,
        tests.len(),
        systems.len()
    ));
    let cells = matrix::run(&mut systems, &tests, o.reps, 50, &|m| report.say(m), &mut rebuild)?;
    let false_failovers = cells.iter().map(|c| c.unprotected_runs).sum::<u32>() as u64;
    let lags = loop_lags(&procs);
    report.say(format!("  worst event-loop lag of the pair's nodes (ticker, ≤ bucket bound): {lags:?} s"));
    report.section(
        "kv_pair_loop_lag_s",
        json!(lags.iter().map(|(n, l)| json!({"node": n, "worst_s": super::stats::finite(*l)})).collect::<Vec<_>>()),
    );
    if kv {
        kv_results(&cells, report, false_failovers);
        report.text(matrix::kernel_table("KV service", &cells));
    }
    if cost {
        cost_results(&cells, report);
    }
    Ok(())
}

fn kv_results(cells: &[Cell], report: &mut Report, false_failovers: u64) {
    let mut rows = Vec::new();
    let mut text = String::from("KV service, redis-benchmark -c 50 (median ± half the spread)\n");
    text.push_str(&format!("  {:<13} {:<24} {:>14} {:>18} {:>18}\n", "test", "system", "ops/s", "p50", "p99"));
    for c in cells {
        let label = c.label();
        text.push_str(&c.table_line(24));
        rows.push(c.json());
        report.plot.throughput.push((format!("KV {label}"), c.system.clone(), Summary::of(&c.rps)));
        report.plot.latency.push((
            format!("KV {label} {}", c.system),
            Summary::of(&c.p50_ms).median,
            Summary::of(&c.p99_ms).median,
        ));
    }
    let mut ratios = serde_json::Map::new();
    for (test, p) in [("set", 1), ("get", 1), ("set", 16), ("get", 16)] {
        let (Some(pair), Some(single), Some(redis)) =
            (find(cells, PAIR, test, p), find(cells, SINGLE, test, p), find(cells, REDIS, test, p))
        else {
            continue;
        };
        let vs_redis = paired(&pair.rps, &redis.rps, |a, b| a / b);
        let vs_single = paired(&pair.rps, &single.rps, |a, b| a / b);
        let added_p50_us = paired(&pair.p50_ms, &single.p50_ms, |a, b| (a - b) * 1000.0);
        let key = format!("{test}_P{p}");
        ratios.insert(
            key.clone(),
            json!({"pair_over_redis": vs_redis.json(), "pair_over_unprotected": vs_single.json(), "added_p50_us": added_p50_us.json()}),
        );
        let label = format!("{} -P {p}", test.to_uppercase());
        if test == "set" {
            report.target(
                &format!("KV pair / Redis+replica, {label}"),
                "≥ 1.0",
                vs_redis.median,
                vs_redis.median >= 1.0,
                ratio(vs_redis.median),
            );
        }
        // Issue 17 asks 0.85 of SET -P 16 (every SET is a log entry to
        // batch, encode and send); the rest keep issue 6's 0.9.
        let goal = if test == "set" && p == 16 { 0.85 } else { 0.9 };
        report.target(
            &format!("KV pair / unprotected, {label}"),
            &format!("≥ {goal}"),
            vs_single.median,
            vs_single.median >= goal,
            ratio(vs_single.median),
        );
        if p == 1 {
            report.target(
                &format!("KV added p50 latency, {label}"),
                "≤ 50 µs",
                added_p50_us.median,
                added_p50_us.median <= 50.0,
                format!("{:.0} µs", added_p50_us.median),
            );
        }
    }
    report.target(
        "No false failover under full load (KV runs that lost the backup)",
        "0",
        false_failovers as f64,
        false_failovers == 0,
        false_failovers.to_string(),
    );
    report.text(text);
    report.section("kv", json!({"clients": 50, "rows": rows, "ratios": ratios, "false_failovers": false_failovers}));
}

fn cost_results(cells: &[Cell], report: &mut Report) {
    let req = redis_benchmark_set_bytes() as f64;
    let mut text = String::from("Replication cost per operation (pair, redis-benchmark SET/GET)\n");
    let mut rows = Vec::new();
    for c in cells.iter().filter(|c| c.system == PAIR) {
        let (lb, le, cpu, gate) = (
            Summary::of(&c.log_bytes_per_op),
            Summary::of(&c.log_entries_per_op),
            Summary::of(&c.backup_cpu_us_per_op),
            Summary::of(&c.gate_p50_us),
        );
        text.push_str(&format!(
            "  {:<3} -P {:<2}  log {:>14} B/op  {:>12} entries/op  backup CPU {:>14} µs/op  output-gate delay p50 {:>12} µs\n",
            c.test.to_uppercase(),
            c.pipeline,
            lb.show(|v| format!("{v:.1}")),
            le.show(|v| format!("{v:.2}")),
            cpu.show(|v| format!("{v:.2}")),
            gate.show(|v| format!("{v:.0}")),
        ));
        rows.push(json!({
            "test": c.test, "pipeline": c.pipeline,
            "log_bytes_per_op": lb.json(), "log_entries_per_op": le.json(),
            "backup_cpu_us_per_op": cpu.json(), "output_gate_delay_p50_us": gate.json(),
        }));
        if c.test == "set" {
            report.target(
                &format!("Log bytes per SET -P {} (request {req:.0} B)", c.pipeline),
                &format!("≤ {:.0} B", req + 16.0),
                lb.median,
                lb.median <= req + 16.0,
                format!("{:.1} B", lb.median),
            );
        }
    }
    if let Some(redis) = cells.iter().find(|c| c.system == REDIS && c.test == "set" && c.pipeline == 16) {
        let cpu = Summary::of(&redis.backup_cpu_us_per_op);
        text.push_str(&format!("  Redis replica CPU for SET -P 16: {} µs/op\n", cpu.show(|v| format!("{v:.2}"))));
    }
    text.push_str(&format!("  (a SET as redis-benchmark sends it is {req:.0} bytes)\n"));
    report.text(text);
    report.section("cost", json!({"set_request_bytes": req, "rows": rows}));
}
