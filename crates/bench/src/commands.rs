//! Section `commands`: the command families applications lean on (issue
//! 16), measured as the SET/GET matrix is: a KV pair, the same binary
//! unprotected and Redis 7 with an async replica, alternated. ZADD is
//! redis-benchmark's own test; EVALSHA runs a one-line script that SETs
//! its key (what a lock's acquire or a rate limiter does per call).

use anyhow::{ensure, Result};
use serde_json::json;

use super::kv::{self, PAIR, REDIS, SINGLE};
use super::load::call;
use super::matrix::{self, find, paired, System, Test};
use super::stats::{ratio, Summary};
use super::sys::{wait_redis_replica, Env};
use super::{Opts, Report};

/// The script EVALSHA runs, and its SHA-1 (checked against what every
/// system's SCRIPT LOAD answers).
const SCRIPT: &str = "return redis.call('SET', KEYS[1], ARGV[1])";
const SHA: &str = "d8f2fad9f8e86a53d2a6ebd960b33c4972cacc37";
/// redis-benchmark's custom-command form: one line, the row name in its CSV.
const EVALSHA: &str = "evalsha d8f2fad9f8e86a53d2a6ebd960b33c4972cacc37 1 key:__rand_int__ v";

fn load_script(addr: &str) -> Result<()> {
    let sha = call(addr, &["SCRIPT", "LOAD", SCRIPT])?;
    ensure!(sha == SHA, "SCRIPT LOAD at {addr} answered {sha}, not {SHA}");
    Ok(())
}

pub fn run(env: &Env, o: &Opts, report: &mut Report) -> Result<()> {
    let (first, a, b) = kv::pair(env, "cmdpair")?;
    load_script(&first.addr)?;
    let mut procs = vec![a, b];
    let mut pairs = 1;
    let mut rebuild = |_: &System| -> Result<System> {
        procs.clear();
        pairs += 1;
        let (s, a, b) = kv::pair(env, &format!("cmdpair{pairs}"))?;
        load_script(&s.addr)?;
        procs.extend([a, b]);
        Ok(s)
    };
    let s = env.kv("cmdsingle", "s", &[])?;
    env.wait_serving("cmdsingle", &s)?;
    let r = env.redis("cmd-redis-primary", None)?;
    let rr = env.redis("cmd-redis-replica", Some(&r.addr))?;
    wait_redis_replica(&rr.addr, std::time::Duration::from_secs(30))?;
    load_script(&s.addr)?;
    load_script(&r.addr)?;
    let mut systems = vec![
        first,
        System { name: SINGLE.into(), addr: s.addr.clone(), pid: Some(s.pid), metrics: s.metrics.clone(), backup_pid: None },
        System { name: REDIS.into(), addr: r.addr.clone(), pid: Some(r.pid), metrics: None, backup_pid: Some(rr.pid) },
    ];
    let (n1, n16) = if o.quick { (5_000, 20_000) } else { (100_000, 400_000) };
    let keyspace = 100_000;
    let tests = [
        Test { test: "zadd", pipeline: 1, requests: n1, keyspace },
        Test { test: EVALSHA, pipeline: 1, requests: n1, keyspace },
        Test { test: "zadd", pipeline: 16, requests: n16, keyspace },
        Test { test: EVALSHA, pipeline: 16, requests: n16, keyspace },
    ];
    report.say(format!("commands: {} repetitions of ZADD and EVALSHA at -P 1 and -P 16, redis-benchmark -c 50", o.reps));
    let cells = matrix::run(&mut systems, &tests, o.reps, 50, &|m| report.say(m), &mut rebuild)?;
    let mut text = String::from("Command families, redis-benchmark -c 50 (median ± half the spread)\n");
    text.push_str(&format!("  {:<13} {:<24} {:>14} {:>18} {:>18}\n", "test", "system", "ops/s", "p50", "p99"));
    cells.iter().for_each(|c| text.push_str(&c.table_line(24)));
    let mut ratios = serde_json::Map::new();
    for t in &tests {
        let (Some(pair), Some(single), Some(redis)) = (
            find(&cells, PAIR, t.test, t.pipeline),
            find(&cells, SINGLE, t.test, t.pipeline),
            find(&cells, REDIS, t.test, t.pipeline),
        ) else {
            continue;
        };
        let vs_redis = paired(&pair.rps, &redis.rps, |a, b| a / b);
        let vs_single = paired(&pair.rps, &single.rps, |a, b| a / b);
        text.push_str(&format!(
            "  {:<13} pair / Redis+replica {}   pair / unprotected {}\n",
            pair.label(),
            vs_redis.show(ratio),
            vs_single.show(ratio)
        ));
        ratios.insert(pair.label(), json!({"pair_over_redis": vs_redis.json(), "pair_over_unprotected": vs_single.json()}));
    }
    let false_failovers: u32 = cells.iter().map(|c| c.unprotected_runs).sum();
    report.text(text);
    report.text(matrix::kernel_table("Command families", &cells));
    report.section(
        "commands",
        json!({"clients": 50, "script": SCRIPT, "rows": cells.iter().map(|c| c.json()).collect::<Vec<_>>(),
               "ratios": ratios, "false_failovers": false_failovers}),
    );
    report.plot.throughput.extend(cells.iter().map(|c| (format!("KV {}", c.label()), c.system.clone(), Summary::of(&c.rps))));
    drop((s, r, rr));
    Ok(())
}
