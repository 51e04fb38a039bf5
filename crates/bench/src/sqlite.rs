//! Section `sqlite`: a real database library under the machine level
//! (issue 12). The SQLite guest (guests/sqlserver.c: a RESP server over a
//! table in /data/kv.db, one transaction per poll round) as a pair — each
//! node with its own copy of the directory — vs unprotected vs the same C
//! source built natively, side by side; then a join of a fresh node to the
//! pair, with the bytes of files it copied while the guest served and in
//! the pause.
//!
//! SQLite runs with `synchronous=OFF` here: with `NORMAL` every commit
//! waits for three fsyncs on the machine's one disk, and all three systems
//! measure the disk alike (about 6k SET/s); in a pair the other replica's
//! copy is what makes a commit durable.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::json;

use super::matrix::{self, find, paired, System, Test};
use super::stats::ratio;
use super::sys::{Env, Proc};
use super::{Opts, Report};

const PAIR: &str = "sqlite wasm pair";
const ALONE: &str = "sqlite wasm unprotected";
const NATIVE: &str = "sqlite native (gcc -O2)";
const SYNC: (&str, &str) = ("SQLSERVER_SYNC", "OFF");

fn data_dir(env: &Env, name: &str) -> Result<String> {
    let d = env.dir.join(format!("{name}-data"));
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(format!("{}::/data", d.display()))
}

fn node(env: &Env, cluster: &str, name: &str, guest: &Path) -> Result<Proc> {
    let map = data_dir(env, &format!("{cluster}-{name}"))?;
    env.wasm_node_with(cluster, name, guest, &[], false, &["--map-dir", &map], &[SYNC])
}

pub fn run(env: &Env, o: &Opts, report: &mut Report) -> Result<()> {
    let guest = o.guests.join("sqlserver.wasm");
    let pair = |cluster: &str| -> Result<(System, Proc, Proc)> {
        let a = node(env, cluster, "qa", &guest)?;
        env.wait_serving(cluster, &a)?;
        let b = node(env, cluster, "qb", &guest)?;
        env.wait_in_sync(cluster, "qb")?;
        let s = System {
            name: PAIR.into(),
            addr: a.addr.clone(),
            pid: Some(a.pid),
            metrics: a.metrics.clone(),
            backup_pid: Some(b.pid),
        };
        Ok((s, a, b))
    };
    let cluster = "qpair";
    let (first, a, b) = pair(cluster)?;
    let mut procs = vec![a, b];
    let mut pairs = 1;
    let mut current = cluster.to_string();
    let mut rebuild = |_: &System| -> Result<System> {
        procs.clear();
        pairs += 1;
        current = format!("qpair{pairs}");
        let (s, a, b) = pair(&current)?;
        procs.extend([a, b]);
        Ok(s)
    };
    let map = data_dir(env, "sqlite-alone")?;
    let alone = env.wasm_alone_with("sqlite-alone", &guest, true, &[], false, &["--map-dir", &map], &[SYNC])?;
    let native_dir = env.dir.join("sqlite-native-data");
    std::fs::create_dir_all(&native_dir)?;
    let db = native_dir.join("kv.db").display().to_string();
    let native = env.native_server(&o.guests.join("sqlserver-native"), "sqlserver", &[&db], &[SYNC])?;
    let mut systems = vec![
        first,
        System { name: ALONE.into(), addr: alone.addr.clone(), pid: Some(alone.pid), metrics: None, backup_pid: None },
        System { name: NATIVE.into(), addr: native.addr.clone(), pid: Some(native.pid), metrics: None, backup_pid: None },
    ];
    let (n1, n16) = if o.quick { (3_000, 10_000) } else { (20_000, 100_000) };
    let tests = Test::set_get(n1, n16);
    report.say(format!("SQLite guest: {} repetitions, redis-benchmark -c 50 (synchronous=OFF)", o.reps));
    let cells = matrix::run(&mut systems, &tests, o.reps, 50, &|m| report.say(m), &mut rebuild)?;
    let mut text = String::from("SQLite guest (guests/sqlserver.c, synchronous=OFF), redis-benchmark -c 50\n");
    let mut rows = Vec::new();
    for c in &cells {
        text.push_str(&c.table_line(26));
        rows.push(c.json());
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
        let alone_native = paired(&alone.rps, &native.rps, |a, b| a / b);
        text.push_str(&format!(
            "  {} -P {p}: pair / unprotected {}, pair / native {}, unprotected / native {}\n",
            test.to_uppercase(),
            vs_alone.show(ratio),
            vs_native.show(ratio),
            alone_native.show(ratio)
        ));
        ratios.insert(
            format!("{test}_P{p}"),
            json!({"pair_over_unprotected": vs_alone.json(), "pair_over_native": vs_native.json(), "unprotected_over_native": alone_native.json()}),
        );
    }
    let join = join(env, &current, &guest, &mut procs, report)?;
    text.push_str(&format!(
        "  join of a fresh node (its backup killed first, so the time includes the failure timeout): {:.2} s; files {} copied while the guest served, {} in the pause of {}\n",
        join.seconds, join.precopied, join.paused, join.pause
    ));
    report.text(text);
    report.section(
        "sqlite",
        json!({"clients": 50, "synchronous": "OFF", "rows": rows, "ratios": ratios,
               "join": {"seconds": join.seconds, "database_bytes": join.db_bytes, "log": join.line}}),
    );
    Ok(())
}

struct Join {
    seconds: f64,
    db_bytes: u64,
    precopied: String,
    paused: String,
    pause: String,
    line: String,
}

/// Kills the pair's backup and times a fresh node's join; what the
/// primary says it sent.
fn join(env: &Env, cluster: &str, guest: &Path, procs: &mut [Proc], report: &mut Report) -> Result<Join> {
    let [a, b] = procs else { anyhow::bail!("the pair has two nodes") };
    let db_bytes = std::fs::metadata(env.dir.join(format!("{cluster}-qa-data/kv.db"))).map_or(0, |m| m.len());
    b.kill9();
    let t = Instant::now();
    let _c = node(env, cluster, "qc", guest)?;
    env.wait_in_sync(cluster, "qc")?;
    let seconds = t.elapsed().as_secs_f64();
    let log = std::fs::read_to_string(env.dir.join(format!("{cluster}-{}.log", a.name))).unwrap_or_default();
    let line = log.lines().rev().find(|l| l.contains("live snapshot of the guest sent")).unwrap_or("").to_string();
    let part = |after: &str, until: &str| -> String {
        line.split(after).nth(1).and_then(|r| r.split(until).next()).unwrap_or("?").trim().to_string()
    };
    // "…, M copied in a pause of P; files: F while it ran, G in the pause"
    let files = line.split("files: ").nth(1).unwrap_or("");
    let files_part = |after: &str, until: &str| -> String {
        let rest = if after.is_empty() { Some(files) } else { files.split(after).nth(1) };
        rest.and_then(|r| r.split(until).next()).unwrap_or("?").trim().to_string()
    };
    let j = Join {
        seconds,
        db_bytes,
        precopied: files_part("", " while"),
        paused: files_part("while it ran, ", " in the pause"),
        pause: part("in a pause of ", ";"),
        line: line.clone(),
    };
    report.say(format!("  join to the SQLite pair ({} MiB database): {seconds:.2} s — {line}", db_bytes >> 20));
    Ok(j)
}
