//! Durability (issue 14): the KV pair with its log on disk
//! (`--appendfsync no|everysec|always`, each node its own `--dir`) against
//! the pair in memory and against Redis 7 with an append-only file in the
//! same three modes (and without persistence), each with its async
//! replica; this disk's fsync latency, which bounds `always`; and a node's
//! restart from its disk (snapshot + log): spawn to serving.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::load::{call, fill};
use super::matrix::{self, find, paired, Cell, System, Test};
use super::stats::{mib, ratio, Summary};
use super::sys::{wait_idle, wait_redis_replica, Env, Proc};
use super::{Opts, Report};

/// The modes measured; `None` (no `--appendfsync`, no AOF) is the reference.
const MODES: [Option<&str>; 4] = [None, Some("no"), Some("everysec"), Some("always")];
/// redis-benchmark's `-r`: SETs spread over this many keys.
const KEYSPACE: u64 = 100_000;
const CLIENTS: u32 = 50;
/// Values of the restart's state: 1 KiB, a million keys per GiB.
const VALUE_BYTES: usize = 1024;

fn us(mode: Option<&str>) -> String {
    format!("understudy {}", mode.unwrap_or("memory"))
}

fn redis(mode: Option<&str>) -> String {
    mode.map_or_else(|| "redis memory".into(), |m| format!("redis aof {m}"))
}

/// A fresh KV pair, each node with `--appendfsync mode` (none: memory only).
fn pair(env: &Env, cluster: &str, mode: Option<&str>) -> Result<(System, Proc, Proc)> {
    let flags: Vec<&str> = mode.map_or_else(Vec::new, |m| vec!["--appendfsync", m]);
    let a = env.kv(cluster, "a", &flags)?;
    env.wait_serving(cluster, &a)?;
    let b = env.kv(cluster, "b", &flags)?;
    env.wait_in_sync(cluster, "b")?;
    let s =
        System { name: us(mode), addr: a.addr.clone(), pid: Some(a.pid), metrics: a.metrics.clone(), backup_pid: Some(b.pid) };
    Ok((s, a, b))
}

/// Appending 4 KiB to a file and `fdatasync`, as a log does, `n` times:
/// the latencies in ms, sorted.
fn fsync_probe(dir: &Path, n: usize) -> Result<Vec<f64>> {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
    let buf = vec![0x5a; 4096];
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        f.write_all(&buf)?;
        f.sync_data()?;
        t.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    drop(f);
    std::fs::remove_file(&path)?;
    t.sort_by(|a, b| a.total_cmp(b));
    Ok(t)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN)
}

pub fn run(env: &Env, o: &Opts, report: &mut Report) -> Result<()> {
    let probe = fsync_probe(&env.dir, if o.quick { 100 } else { 300 })?;
    let (f50, f99) = (pct(&probe, 0.5), pct(&probe, 0.99));
    let fsync_line = format!(
        "this disk ({}): append 4 KiB + fdatasync p50 {f50:.2} ms, p99 {f99:.2} ms ({:.0}/s one after another)",
        env.dir.display(),
        1e3 * probe.len() as f64 / probe.iter().sum::<f64>()
    );
    report.say(format!("Durability: {fsync_line}"));
    let fsync = json!({"write_bytes": 4096, "n": probe.len(), "p50_ms": f50, "p99_ms": f99, "max_ms": probe.last()});
    let matrix = throughput(env, o, report, &fsync_line)?;
    let restart = restart(env, o, report)?;
    report.section("durability", json!({"fsync_probe": fsync, "matrix": matrix, "restart": restart}));
    Ok(())
}

/// Part 1: redis-benchmark SET, alternated over the eight systems.
fn throughput(env: &Env, o: &Opts, report: &mut Report, fsync_line: &str) -> Result<Value> {
    let mut pairs: HashMap<String, (Proc, Proc)> = HashMap::new();
    let mut systems = Vec::new();
    for (i, mode) in MODES.iter().enumerate() {
        let (s, a, b) = pair(env, &format!("dur{i}"), *mode)?;
        pairs.insert(s.name.clone(), (a, b));
        systems.push(s);
    }
    let mut redises = Vec::new();
    for (i, mode) in MODES.iter().enumerate() {
        let r = env.redis_with(&format!("dur-redis{i}"), None, *mode)?;
        let rr = env.redis_with(&format!("dur-redis{i}-replica"), Some(&r.addr), *mode)?;
        wait_redis_replica(&rr.addr, Duration::from_secs(30))?;
        systems.push(System {
            name: redis(*mode),
            addr: r.addr.clone(),
            pid: Some(r.pid),
            metrics: None,
            backup_pid: Some(rr.pid),
        });
        redises.push((r, rr));
    }
    let mut rebuilt = 0;
    let mut rebuild = |old: &System| -> Result<System> {
        let mode = MODES.into_iter().find(|m| us(*m) == old.name).context("only pairs are rebuilt")?;
        rebuilt += 1;
        pairs.remove(&old.name);
        let (s, a, b) = pair(env, &format!("dur-rebuilt{rebuilt}"), mode)?;
        pairs.insert(s.name.clone(), (a, b));
        Ok(s)
    };
    let (n1, n16) = if o.quick { (5_000, 20_000) } else { (100_000, 400_000) };
    let tests = [
        Test { test: "set", pipeline: 1, requests: n1, keyspace: KEYSPACE },
        Test { test: "set", pipeline: 16, requests: n16, keyspace: KEYSPACE },
    ];
    report.say(format!(
        "Durability: {} repetitions of SET -P 1 and -P 16 on {} systems, redis-benchmark -c {CLIENTS} -r {KEYSPACE}",
        o.reps,
        systems.len()
    ));
    let cells = matrix::run(&mut systems, &tests, o.reps, CLIENTS, &|m| report.say(m), &mut rebuild)?;
    let false_failovers: u32 = cells.iter().map(|c| c.unprotected_runs).sum();
    Ok(results(&cells, report, fsync_line, false_failovers))
}

/// (label, numerator, denominator, the issue's goal if it sets one).
fn ratio_rows() -> Vec<(String, String, String, Option<f64>)> {
    let mut v = vec![
        (format!("{} / {}", us(Some("everysec")), us(Some("no"))), us(Some("everysec")), us(Some("no")), Some(0.9)),
        (format!("{} / {}", us(Some("always")), redis(Some("always"))), us(Some("always")), redis(Some("always")), Some(1.0)),
    ];
    for m in MODES.iter().filter(|m| **m != Some("always")) {
        v.push((format!("{} / {}", us(*m), redis(*m)), us(*m), redis(*m), None));
    }
    for m in &MODES[1..] {
        v.push((format!("{} / {}", us(*m), us(None)), us(*m), us(None), None));
    }
    for m in &MODES[1..] {
        v.push((format!("{} / {}", redis(*m), redis(None)), redis(*m), redis(None), None));
    }
    v
}

fn results(cells: &[Cell], report: &mut Report, fsync_line: &str, false_failovers: u32) -> Value {
    let mut text = format!(
        "Durability, redis-benchmark -c {CLIENTS} -r {KEYSPACE} (median ± half the spread); pairs: primary + in-sync backup, \
         Redis: primary + async replica, both nodes with the same persistence\n  {fsync_line}\n"
    );
    text.push_str(&format!("  {:<13} {:<24} {:>14} {:>18} {:>18}\n", "test", "system", "ops/s", "p50", "p99"));
    let mut rows = Vec::new();
    for c in cells {
        text.push_str(&c.table_line(24));
        rows.push(c.json());
        report.plot.throughput.push((format!("Durability {}", c.label()), c.system.clone(), Summary::of(&c.rps)));
    }
    text.push_str(&format!("  {:<42} {:>8} {:>14} {:>14}\n", "ratio of ops/s (per repetition)", "goal", "SET -P 1", "SET -P 16"));
    let mut ratios = serde_json::Map::new();
    for (label, a, b, goal) in ratio_rows() {
        let mut shown = Vec::new();
        let mut per_p = serde_json::Map::new();
        for p in [1, 16] {
            let (Some(ca), Some(cb)) = (find(cells, &a, "set", p), find(cells, &b, "set", p)) else {
                shown.push("-".to_string());
                continue;
            };
            let r = paired(&ca.rps, &cb.rps, |x, y| x / y);
            shown.push(r.show(|v| format!("{v:.2}")));
            per_p.insert(format!("set_P{p}"), r.json());
            if let Some(g) = goal {
                report.target(
                    &format!("Durability: {label}, SET -P {p}"),
                    &format!("≥ {g:.1}"),
                    r.median,
                    r.median >= g,
                    ratio(r.median),
                );
            }
        }
        let g = goal.map_or_else(String::new, |g| format!("≥ {g:.1}"));
        text.push_str(&format!("  {label:<42} {g:>8} {:>14} {:>14}\n", shown[0], shown[1]));
        ratios.insert(label, Value::Object(per_p));
    }
    if false_failovers > 0 {
        text.push_str(&format!("  {false_failovers} runs left out: a pair lost its backup (false failover)\n"));
    }
    report.text(text);
    json!({"clients": CLIENTS, "keyspace": KEYSPACE, "rows": rows, "ratios": ratios, "false_failovers": false_failovers})
}

/// Bytes, snapshot files and log segments in a node's `--dir`.
fn on_disk(dir: &Path) -> Result<(u64, usize, usize)> {
    let (mut bytes, mut snaps, mut segs) = (0, 0, 0);
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        bytes += e.metadata()?.len();
        snaps += usize::from(name.starts_with("snap-"));
        segs += usize::from(name.starts_with("log-"));
    }
    Ok((bytes, snaps, segs))
}

/// Drops the files of `dir` from the page cache (`dd iflag=nocache
/// count=0`: POSIX_FADV_DONTNEED on the whole file; they were fsynced, so
/// clean), so that the restart reads them from the disk, as after a reboot.
fn evict(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let path = e?.path();
        let st = Command::new("dd")
            .arg(format!("if={}", path.display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status()
            .context("running dd")?;
        if !st.success() {
            bail!("dd iflag=nocache on {} failed", path.display());
        }
    }
    Ok(())
}

fn dbsize(addr: &str) -> Result<u64> {
    let r = call(addr, &["DBSIZE"])?;
    r.trim_start_matches("Int(").trim_end_matches(')').parse().with_context(|| format!("DBSIZE said {r:?}"))
}

/// Polls INFO replication until the node answers `role:master`.
fn wait_master(addr: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if call(addr, &["INFO", "replication"]).is_ok_and(|i| i.contains("role:master")) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr} did not serve as primary within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The last "recovered seq N of epoch E from DIR in X s" of a node's log: (N, X).
fn recovered_line(log: &Path) -> Result<(u64, f64)> {
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let line = text.lines().rev().find(|l| l.contains("recovered seq ")).context("no \"recovered\" line in the node's log")?;
    let after = |key: &str| line.split(key).nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or("");
    Ok((after("recovered seq ").parse()?, after(" in ").parse()?))
}

/// One restart's figures.
struct Trial {
    cold: bool,
    serving_s: f64,
    first_set_s: f64,
    recovered_s: f64,
    seq: u64,
}

/// Part 2: a single `always` node filled to the state size, with
/// snapshots; kill -9; started again on its `--dir`: spawn to serving, with
/// the files evicted from the page cache (cold, as after a reboot) and not
/// (warm, a process crash), alternated.
fn restart(env: &Env, o: &Opts, report: &mut Report) -> Result<Value> {
    let state = o.durability_state_bytes;
    let every = (state / 4).max(1 << 20);
    let every_arg = every.to_string();
    let flags = ["--appendfsync", "always", "--snapshot-every-bytes", every_arg.as_str()];
    let cluster = "durrestart";
    let dir = env.dir.join(format!("{cluster}-r"));
    let log = env.dir.join(format!("{cluster}-r.log"));
    let mut p = env.kv(cluster, "r", &flags)?;
    env.wait_serving(cluster, &p)?;
    let keys = state / VALUE_BYTES as u64;
    let fill_s = fill(&p.addr, "dur:", keys, VALUE_BYTES, 256)?.as_secs_f64();
    let before = dbsize(&p.addr)?;
    if before != keys {
        bail!("filled {keys} keys but DBSIZE says {before}");
    }
    // A snapshot still being written finishes before the crash.
    wait_idle(p.pid, Duration::from_millis(1500), Duration::from_secs(600))?;
    let (bytes, snaps, segs) = on_disk(&dir)?;
    report.say(format!(
        "  restart: filled {} ({keys} keys of {VALUE_BYTES} B, appendfsync always, snapshot every {}) in {fill_s:.1} s \
         ({:.0} MB/s); on disk {} in {snaps} snapshot(s) and {segs} log segment(s)",
        mib(state as f64),
        mib(every as f64),
        state as f64 / fill_s / 1e6,
        mib(bytes as f64)
    ));
    let mut trials = Vec::new();
    for rep in 0..o.reps {
        for cold in [true, false] {
            p.kill9();
            if cold {
                evict(&dir)?;
            }
            let t0 = Instant::now();
            p = env.kv(cluster, "r", &flags)?;
            wait_master(&p.addr, Duration::from_secs(600))?;
            let serving_s = t0.elapsed().as_secs_f64();
            call(&p.addr, &["SET", "dur:after-restart", "x"])?;
            let first_set_s = t0.elapsed().as_secs_f64();
            let after = dbsize(&p.addr)?;
            call(&p.addr, &["DEL", "dur:after-restart"])?;
            if after != before + 1 {
                bail!("DBSIZE was {before} before the kill -9, {} after the restart", after.saturating_sub(1));
            }
            let (seq, recovered_s) = recovered_line(&log)?;
            report.say(format!(
                "  restart {}/{} ({}): serving after {serving_s:.2} s (first SET acked {first_set_s:.2} s); \
                 the node says recovered seq {seq} in {recovered_s:.2} s; DBSIZE {before} before and after",
                rep + 1,
                o.reps,
                if cold { "cold cache" } else { "warm cache" }
            ));
            trials.push(Trial { cold, serving_s, first_set_s, recovered_s, seq });
        }
    }
    drop(p);
    let _ = std::fs::remove_dir_all(&dir);
    let mut text = format!(
        "Restart from disk: one node, appendfsync always, {} of state ({keys} keys of {VALUE_BYTES} B), \
         snapshot every {}; on disk {} ({snaps} snapshot(s), {segs} log segment(s)); kill -9, start on the same --dir\n",
        mib(state as f64),
        mib(every as f64),
        mib(bytes as f64)
    );
    let mut json_rows = Vec::new();
    for cold in [true, false] {
        let col = |f: fn(&Trial) -> f64| Summary::of(&trials.iter().filter(|t| t.cold == cold).map(f).collect::<Vec<_>>());
        let (serving, first_set, recovered) = (col(|t| t.serving_s), col(|t| t.first_set_s), col(|t| t.recovered_s));
        let which = if cold { "cold cache (files evicted: a reboot)" } else { "warm cache (a process crash)" };
        text.push_str(&format!(
            "  {which:<38} spawn to serving {:>14}   first SET acked {:>14}   node's \"recovered in\" {:>14}\n",
            serving.show(|v| format!("{v:.2} s")),
            first_set.show(|v| format!("{v:.2} s")),
            recovered.show(|v| format!("{v:.2} s")),
        ));
        json_rows.push(json!({
            "cache": if cold { "cold" } else { "warm" },
            "spawn_to_serving_s": serving.json(), "first_set_s": first_set.json(), "recovered_s": recovered.json(),
        }));
        if cold && state >= 1 << 30 {
            report.target(
                &format!("Restart of {} from disk (cold cache) to serving", mib(state as f64)),
                "≤ 5 s",
                serving.median,
                serving.median <= 5.0,
                format!("{:.2} s", serving.median),
            );
        }
    }
    report.text(text);
    Ok(json!({
        "state_bytes": state, "value_bytes": VALUE_BYTES, "keys": keys, "snapshot_every_bytes": every,
        "fill_s": fill_s, "disk_bytes": bytes, "snapshot_files": snaps, "log_segments": segs,
        "recovered_seq": trials.last().map(|t| t.seq), "rows": json_rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_recovered_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("n.log");
        std::fs::write(
            &log,
            "2026-01-01T00:00:00Z r INFO  r: recovered seq 10 of epoch 1 from /d in 0.50 s (complete)\n\
             2026-01-01T00:00:09Z r INFO  r: recovered seq 12 of epoch 2 from /d in 1.25 s (complete)\n\
             2026-01-01T00:00:09Z r INFO  primary of epoch 3\n",
        )
        .unwrap();
        assert_eq!(recovered_line(&log).unwrap(), (12, 1.25));
    }

    #[test]
    fn ratio_rows_name_systems_that_run() {
        let names: Vec<String> = MODES.iter().flat_map(|m| [us(*m), redis(*m)]).collect();
        for (_, a, b, _) in ratio_rows() {
            assert!(names.contains(&a) && names.contains(&b), "{a} / {b}");
        }
    }
}
