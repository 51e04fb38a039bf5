//! `understudy-bench`: side-by-side measurements of understudy against its
//! baselines, in one run, alternating the systems under test so that drift
//! of the machine falls on all of them alike. Prints a table and writes
//! `bench.json`, `bench.txt` and `bench.svg` (docs/PERFORMANCE.md). The
//! nodes under test are the product binary, `understudy` (`--understudy`).
//!
//! # Layout
//!
//! - `binary`: finding (and, under cargo, building) the `understudy` binary.
//! - `sys`: the processes under test (an in-process arbiter, nodes, Redis,
//!   native builds) and what /proc says about them.
//! - `load`: redis-benchmark runs, a pipelined filler, a stall probe.
//! - `matrix`: alternated redis-benchmark runs over several systems.
//! - one module per section: `kv` (with the replication cost), `commands`, `wasm`,
//!   `failover`, `switchover`, `join`, `memory`, `wasm_join`, `sqlite`,
//!   `durability`.
//! - `stats` (medians, spreads), `plot` (the SVG).

#![forbid(unsafe_code)]

mod binary;
mod commands;
mod durability;
mod failover;
mod join;
mod kv;
mod load;
mod matrix;
mod memory;
mod plot;
mod procfs;
mod sqlite;
mod stats;
mod switchover;
mod sys;
mod syscalls;
mod wasm;
mod wasm_join;

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum Section {
    /// KV pair vs unprotected vs Redis + async replica (redis-benchmark).
    Kv,
    /// WebAssembly: RESP guest and CPU-bound guest.
    Wasm,
    /// kill -9 of the primary to the first acknowledged write.
    Failover,
    /// Join by state transfer: time to in-sync, stall, peak memory.
    Join,
    /// Log bytes and backup CPU per operation.
    Cost,
    /// Resident memory next to Redis; the hypervisor's overhead.
    Memory,
    /// WebAssembly joins by live snapshot: as the guest ages, at 1 GiB, and
    /// what being snapshottable costs.
    Wasmjoin,
    /// The SQLite guest with replicated files: pair vs unprotected vs native; a join.
    Sqlite,
    /// ZADD and EVALSHA: pair vs unprotected vs Redis + async replica.
    Commands,
    /// Planned switchovers under load (the command and SIGTERM): the longest client pause.
    Switchover,
    /// The pair with its log on disk (--appendfsync no|everysec|always) vs
    /// Redis with an AOF; restart of a node from its disk.
    Durability,
}

#[derive(Parser)]
#[command(
    name = "understudy-bench",
    version,
    about = "Measure understudy side by side with its baselines (Redis, the unprotected binary, native and wasmtime \
             guests): a table, JSON and an SVG plot. See docs/PERFORMANCE.md."
)]
pub struct BenchArgs {
    /// Sections to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Section>,
    /// A short run: one repetition, few requests, small states, few trials.
    #[arg(long)]
    pub quick: bool,
    /// Alternated repetitions of every measurement (default 3; 1 with --quick).
    #[arg(long)]
    pub reps: Option<usize>,
    /// Failover trials (default 20; 3 with --quick).
    #[arg(long)]
    pub failover_trials: Option<usize>,
    /// `--failover-timeout-ms` of the failover section's nodes (default:
    /// the node's default).
    #[arg(long)]
    pub failover_timeout_ms: Option<u64>,
    /// CPU-bound processes (busy shell loops) competing with the failover
    /// section's nodes for the cores, as on a crowded machine (default 2).
    #[arg(long, default_value_t = 2)]
    pub cpu_hogs: usize,
    /// State sizes of the join section, MiB (default 100,1024; 100 with --quick).
    #[arg(long, value_delimiter = ',')]
    pub join_mib: Vec<u64>,
    /// State of the durability section's restart, bytes (suffixes K, M, G,
    /// KiB, MiB, GiB; default 1GiB; 64MiB with --quick).
    #[arg(long, value_parser = size)]
    pub durability_state_bytes: Option<u64>,
    /// Where bench.json, bench.txt and bench.svg go.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// Directory of the built guests (default: guests/build of the source
    /// tree, built with guests/build.sh first).
    #[arg(long)]
    pub guests: Option<PathBuf>,
    /// The wasmtime CLI (version 48) for the CPU-bound baseline; skipped if absent.
    #[arg(long, default_value = "wasmtime")]
    pub wasmtime: String,
    /// Keep the working directory (node logs) afterwards.
    #[arg(long)]
    pub keep: bool,
    /// The `understudy` binary whose nodes are measured (default: the
    /// `understudy` next to this executable, in the same target directory;
    /// under `cargo run`/`cargo test` it is built first).
    #[arg(long, value_name = "PATH")]
    pub understudy: Option<PathBuf>,
    /// Log level of this process's embedded arbiter, on stderr (the nodes'
    /// logs go to files in the working directory).
    #[arg(long, env = "UNDERSTUDY_LOG", default_value = "error", value_parser = log_level)]
    pub log_level: log::LevelFilter,
}

/// "1GiB", "64M", "4096": bytes (K, M, G are powers of 1024, as KiB…).
fn size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("{s:?}: a size is a number with K, M or G (KiB, MiB, GiB)")),
    };
    n.parse::<u64>().ok().and_then(|n| n.checked_mul(1 << shift)).filter(|v| *v > 0).ok_or_else(|| format!("{s:?} is not a size"))
}

fn log_level(s: &str) -> std::result::Result<log::LevelFilter, String> {
    s.parse().map_err(|_| format!("{s:?} is not a log level (error, warn, info, debug, trace, off)"))
}

/// The embedded arbiter's log lines, on stderr.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!("understudy-bench: {} {}: {}", r.level(), r.target(), r.args());
        }
    }

    fn flush(&self) {}
}

fn main() -> ExitCode {
    let a = BenchArgs::parse();
    match run(a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("understudy-bench: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The options every section reads.
pub struct Opts {
    pub quick: bool,
    pub reps: usize,
    pub failover_trials: usize,
    pub failover_timeout_ms: Option<u64>,
    pub cpu_hogs: usize,
    pub join_mib: Vec<u64>,
    pub guests: PathBuf,
    pub wasmtime: String,
    pub durability_state_bytes: u64,
}

/// What a run found: printed as it goes, then written out.
pub struct Report {
    start: Instant,
    sections: serde_json::Map<String, Value>,
    targets: Vec<Value>,
    texts: Vec<String>,
    pub plot: plot::Plot,
    /// Keep the node logs: something worth reading happened.
    pub keep_logs: bool,
}

impl Report {
    pub fn say(&self, msg: String) {
        println!("[{:6.1}s] {msg}", self.start.elapsed().as_secs_f64());
    }

    /// A finished table.
    pub fn text(&mut self, t: String) {
        println!("\n{t}");
        self.texts.push(t);
    }

    pub fn section(&mut self, name: &str, v: Value) {
        self.sections.insert(name.into(), v);
    }

    /// A target of the issue and where we stand on it.
    pub fn target(&mut self, name: &str, goal: &str, value: f64, met: bool, shown: String) {
        self.targets.push(
            json!({"target": name, "goal": goal, "value": stats::finite(value), "shown": shown, "met": value.is_finite() && met}),
        );
    }

    pub fn target_missing(&mut self, name: &str, goal: &str, why: &str) {
        self.targets.push(json!({"target": name, "goal": goal, "value": null, "shown": why, "met": null}));
    }

    fn targets_table(&self) -> String {
        let mut t = String::from("Targets\n");
        for v in &self.targets {
            let mark = match v["met"].as_bool() {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "n/a",
            };
            t.push_str(&format!(
                "  {:<54} {:>10}  {:>24}  {}\n",
                v["target"].as_str().unwrap_or(""),
                v["goal"].as_str().unwrap_or(""),
                v["shown"].as_str().unwrap_or(""),
                mark
            ));
        }
        t
    }
}

/// The source tree this binary was built from (guests/ lives there): the
/// workspace root, two levels above this crate.
fn source_root() -> PathBuf {
    let krate = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    krate.ancestors().nth(2).unwrap_or(krate).to_path_buf()
}

fn build_guests() -> Result<()> {
    let script = source_root().join("guests/build.sh");
    let out = Command::new("sh").arg(&script).output().with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!("{} failed: {}{}", script.display(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// /proc/loadavg's first three fields.
fn loadavg() -> Value {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| json!(s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")))
        .unwrap_or(Value::Null)
}

fn version_of(cmd: &str) -> Value {
    Command::new(cmd)
        .arg("--version")
        .output()
        .ok()
        .map_or(Value::Null, |o| json!(String::from_utf8_lossy(&o.stdout).trim().to_string()))
}

fn run(a: BenchArgs) -> Result<ExitCode> {
    let all = [
        Section::Kv,
        Section::Commands,
        Section::Wasm,
        Section::Failover,
        Section::Join,
        Section::Cost,
        Section::Memory,
        Section::Wasmjoin,
        Section::Sqlite,
        Section::Switchover,
        Section::Durability,
    ];
    let only: Vec<Section> = if a.only.is_empty() { all.to_vec() } else { a.only.clone() };
    let o = Opts {
        quick: a.quick,
        reps: a.reps.unwrap_or(if a.quick { 1 } else { 3 }).max(1),
        failover_trials: a.failover_trials.unwrap_or(if a.quick { 3 } else { 20 }).max(1),
        failover_timeout_ms: a.failover_timeout_ms,
        cpu_hogs: a.cpu_hogs,
        join_mib: if !a.join_mib.is_empty() {
            a.join_mib.clone()
        } else if a.quick {
            vec![100]
        } else {
            vec![100, 1024]
        },
        guests: a.guests.clone().unwrap_or_else(|| source_root().join("guests/build")),
        wasmtime: a.wasmtime.clone(),
        durability_state_bytes: a.durability_state_bytes.unwrap_or(if a.quick { 64 << 20 } else { 1 << 30 }),
    };
    // The nodes' log lines go to files; the embedded arbiter's errors here.
    if log::set_logger(&StderrLog).is_ok() {
        log::set_max_level(a.log_level);
    }
    let bin = binary::understudy(a.understudy.as_deref())?;
    let load_start = loadavg();
    let dir = std::env::temp_dir().join(format!("understudy-bench-{}", std::process::id()));
    let env = sys::Env::new(&dir, bin)?;
    let mut report = Report {
        start: Instant::now(),
        sections: serde_json::Map::new(),
        targets: Vec::new(),
        texts: Vec::new(),
        plot: plot::Plot::default(),
        keep_logs: false,
    };
    report.say(format!(
        "understudy-bench: sections {only:?}, {} repetitions{}; load average {}; nodes of {}; node logs in {}",
        o.reps,
        if o.quick { " (quick)" } else { "" },
        load_start.as_str().unwrap_or("?"),
        env.bin.display(),
        dir.display()
    ));
    let wasm = only.iter().any(|s| matches!(s, Section::Wasm | Section::Memory | Section::Wasmjoin | Section::Sqlite));
    if wasm && o.guests == source_root().join("guests/build") {
        build_guests()?;
    }
    let has = |s| only.contains(&s);
    let mut failed = Vec::new();
    let mut attempt = |name: &str, report: &mut Report, f: &dyn Fn(&mut Report) -> Result<()>| {
        if let Err(e) = f(report) {
            report.say(format!("section {name} failed: {e:#}"));
            report.section(name, json!({"error": format!("{e:#}")}));
            failed.push(name.to_string());
        }
    };
    if has(Section::Kv) || has(Section::Cost) {
        attempt("kv", &mut report, &|r| kv::run(&env, &o, r, has(Section::Kv), has(Section::Cost)));
    }
    if has(Section::Commands) {
        attempt("commands", &mut report, &|r| commands::run(&env, &o, r));
    }
    if has(Section::Wasm) {
        attempt("wasm", &mut report, &|r| wasm::run(&env, &o, r));
    }
    if has(Section::Failover) {
        attempt("failover", &mut report, &|r| failover::run(&env, &o, r));
    }
    if has(Section::Join) {
        attempt("join", &mut report, &|r| join::run(&env, &o, r));
    }
    if has(Section::Switchover) {
        attempt("switchover", &mut report, &|r| switchover::run(&env, &o, r));
    }
    if has(Section::Memory) {
        attempt("memory", &mut report, &|r| memory::run(&env, &o, r));
    }
    if has(Section::Wasmjoin) {
        attempt("wasmjoin", &mut report, &|r| wasm_join::run(&env, &o, r));
    }
    if has(Section::Sqlite) {
        attempt("sqlite", &mut report, &|r| sqlite::run(&env, &o, r));
    }
    if has(Section::Durability) {
        attempt("durability", &mut report, &|r| durability::run(&env, &o, r));
    }
    let keep_logs = report.keep_logs;
    let targets = report.targets_table();
    report.text(targets);
    let elapsed = report.start.elapsed().as_secs_f64();
    let doc = json!({
        "meta": {
            "understudy_version": env!("CARGO_PKG_VERSION"),
            "understudy_binary": env.bin.display().to_string(),
            "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            // Other work on the machine skews everything: say how busy it was.
            "loadavg_at_start": load_start,
            "loadavg_at_end": loadavg(),
            "quick": o.quick,
            "reps": o.reps,
            "sections": only.iter().map(|s| format!("{s:?}").to_lowercase()).collect::<Vec<_>>(),
            "seconds": elapsed,
            "redis_server": version_of("redis-server"),
            "redis_benchmark": version_of("redis-benchmark"),
            "failed_sections": failed,
        },
        "sections": report.sections,
        "targets": report.targets,
    });
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating --out {}", a.out.display()))?;
    std::fs::write(a.out.join("bench.json"), serde_json::to_string_pretty(&doc)? + "\n")?;
    std::fs::write(a.out.join("bench.txt"), report.texts.join("\n"))?;
    std::fs::write(a.out.join("bench.svg"), report.plot.svg("understudy bench"))?;
    println!("wrote {}/bench.json, bench.txt, bench.svg in {elapsed:.0} s", a.out.display());
    drop(env);
    if failed.is_empty() && !a.keep && !keep_logs {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("node logs kept in {}", dir.display());
    }
    Ok(if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::size("1GiB"), Ok(1 << 30));
        assert_eq!(super::size("64M"), Ok(64 << 20));
        assert_eq!(super::size("4096"), Ok(4096));
        assert!(super::size("0").is_err());
        assert!(super::size("1T").is_err());
        assert!(super::size("99999999999G").is_err());
    }
}
