//! Alternated `redis-benchmark` runs over several systems: every
//! repetition runs each test on every system, in an order rotated per
//! repetition, so slow drift of the machine falls on all of them alike.

use anyhow::Result;
use serde_json::{json, Value};

use super::load::redis_benchmark;
use super::procfs::{cpu_time, ctx_switches};
use super::stats::{histogram_p50, Summary};
use super::sys::{gate_buckets, metric, scrape};
use super::syscalls::Counting;

/// A system under test.
pub struct System {
    pub name: String,
    /// Where redis-benchmark connects.
    pub addr: String,
    /// The process serving `addr` (a pair's primary): its context switches
    /// and syscalls per operation.
    pub pid: Option<u32>,
    /// The primary's metrics (understudy nodes): log bytes, gate delay.
    pub metrics: Option<String>,
    /// The backup's pid: its CPU time per operation.
    pub backup_pid: Option<u32>,
}

/// One test: redis-benchmark `-t test -P pipeline -n requests`, with
/// `-r keyspace` unless it is 0 (then every SET writes the same key). A
/// `test` with a space in it is a command line of its own
/// (`"evalsha SHA 1 key:__rand_int__ v"`), sent as redis-benchmark's custom
/// command.
#[derive(Clone, Copy)]
pub struct Test {
    pub test: &'static str,
    pub pipeline: u32,
    pub requests: u64,
    pub keyspace: u64,
}

impl Test {
    /// SET and GET at `-P 1` (`n1` requests) and `-P 16` (`n16`): the
    /// matrix every RESP server is measured with.
    pub fn set_get(n1: u64, n16: u64) -> Vec<Test> {
        vec![
            Test { test: "set", pipeline: 1, requests: n1, keyspace: 0 },
            Test { test: "get", pipeline: 1, requests: n1, keyspace: 0 },
            Test { test: "set", pipeline: 16, requests: n16, keyspace: 0 },
            Test { test: "get", pipeline: 16, requests: n16, keyspace: 0 },
        ]
    }
}

/// Every run of one (system, test).
#[derive(Default, Clone)]
pub struct Cell {
    pub system: String,
    pub test: String,
    pub pipeline: u32,
    pub rps: Vec<f64>,
    pub p50_ms: Vec<f64>,
    pub p99_ms: Vec<f64>,
    pub log_bytes_per_op: Vec<f64>,
    pub log_entries_per_op: Vec<f64>,
    pub backup_cpu_us_per_op: Vec<f64>,
    pub gate_p50_us: Vec<f64>,
    /// The serving process's (a pair's primary's) context switches and
    /// syscalls per operation; the backup's context switches.
    pub ctx_switches_per_op: Vec<f64>,
    pub syscalls_per_op: Vec<f64>,
    pub backup_ctx_switches_per_op: Vec<f64>,
    /// Runs of a pair during which it was not protected (its backup was
    /// lost: a false failover): left out of every figure above.
    pub unprotected_runs: u32,
}

impl Cell {
    /// "SET -P 1", as the tables and the plot label a test.
    pub fn label(&self) -> String {
        let name = self.test.split(' ').next().unwrap_or_default();
        format!("{} -P {}", name.to_uppercase(), self.pipeline)
    }

    /// One line of a results table: test, system (padded to `width`),
    /// throughput, p50, p99 — each a median ± half the spread.
    pub fn table_line(&self, width: usize) -> String {
        format!(
            "  {:<13} {:<width$} {:>14} {:>18} {:>18}\n",
            self.label(),
            self.system,
            Summary::of(&self.rps).show(super::stats::kops),
            Summary::of(&self.p50_ms).show(super::stats::ms),
            Summary::of(&self.p99_ms).show(super::stats::ms)
        )
    }

    pub fn json(&self) -> Value {
        let mut v = json!({
            "system": self.system,
            "test": self.test,
            "pipeline": self.pipeline,
            "rps": Summary::of(&self.rps).json(),
            "p50_ms": Summary::of(&self.p50_ms).json(),
            "p99_ms": Summary::of(&self.p99_ms).json(),
            "unprotected_runs": self.unprotected_runs,
        });
        if !self.log_bytes_per_op.is_empty() {
            v["log_bytes_per_op"] = Summary::of(&self.log_bytes_per_op).json();
            v["log_entries_per_op"] = Summary::of(&self.log_entries_per_op).json();
            v["output_gate_delay_p50_us"] = Summary::of(&self.gate_p50_us).json();
        }
        if !self.backup_cpu_us_per_op.is_empty() {
            v["backup_cpu_us_per_op"] = Summary::of(&self.backup_cpu_us_per_op).json();
        }
        for (key, values) in [
            ("ctx_switches_per_op", &self.ctx_switches_per_op),
            ("syscalls_per_op", &self.syscalls_per_op),
            ("backup_ctx_switches_per_op", &self.backup_ctx_switches_per_op),
        ] {
            if !values.is_empty() {
                v[key] = Summary::of(values).json();
            }
        }
        v
    }
}

/// A cumulative histogram: (upper bound, count).
type Buckets = Vec<(f64, f64)>;

/// What the counters of a system say before or after a run.
struct Counters {
    /// From the metrics page: log bytes, log entries, gate-delay buckets.
    log: Option<(f64, f64, Buckets)>,
    /// A pair's primary says outputs wait for an in-sync backup.
    protected: bool,
    backup_cpu_s: Option<f64>,
    ctx_switches: Option<u64>,
    backup_ctx_switches: Option<u64>,
}

fn counters(s: &System) -> Counters {
    let m = s.metrics.as_deref().and_then(|a| scrape(a).ok());
    Counters {
        protected: m.as_ref().is_some_and(|m| metric(m, "understudy_protected") == 1.0),
        log: m.map(|m| (metric(&m, "understudy_log_bytes_total"), metric(&m, "understudy_log_entries_total"), gate_buckets(&m))),
        backup_cpu_s: s.backup_pid.and_then(cpu_time).map(|d| d.as_secs_f64()),
        ctx_switches: s.pid.and_then(ctx_switches),
        backup_ctx_switches: s.backup_pid.and_then(ctx_switches),
    }
}

/// Starts a pair afresh after a false failover (a node halted, the roles
/// may have moved): returns the new system in place of the old.
pub type Rebuild<'a> = &'a mut dyn FnMut(&System) -> Result<System>;

/// Runs `reps` alternated repetitions; `say` reports progress. A pair
/// found unprotected before a run is rebuilt with `rebuild`.
pub fn run(
    systems: &mut [System],
    tests: &[Test],
    reps: usize,
    clients: u32,
    say: &dyn Fn(String),
    rebuild: Rebuild,
) -> Result<Vec<Cell>> {
    let mut cells: Vec<Cell> = Vec::new();
    for t in tests {
        for s in systems.iter() {
            cells.push(Cell { system: s.name.clone(), test: t.test.into(), pipeline: t.pipeline, ..Default::default() });
        }
    }
    for rep in 0..reps {
        for (ti, t) in tests.iter().enumerate() {
            for k in 0..systems.len() {
                let si = (k + rep + ti) % systems.len();
                let is_pair = systems[si].metrics.is_some() && systems[si].backup_pid.is_some();
                let mut before = counters(&systems[si]);
                if is_pair && !before.protected {
                    say(format!(
                        "  {}: not protected (a false failover lost its backup): starting a fresh pair",
                        systems[si].name
                    ));
                    systems[si] = rebuild(&systems[si])?;
                    before = counters(&systems[si]);
                }
                let s = &systems[si];
                let counting = s.pid.and_then(Counting::start);
                let r = redis_benchmark(&s.addr, t.test, clients, t.pipeline, t.requests, t.keyspace)?;
                let syscalls = counting.and_then(Counting::stop);
                let after = counters(s);
                let cell = &mut cells[ti * systems.len() + si];
                if is_pair && !(before.protected && after.protected) {
                    cell.unprotected_runs += 1;
                    say(format!("  rep {}/{reps} {}: the pair lost its backup (false failover): run left out", rep + 1, s.name));
                    continue;
                }
                cell.rps.push(r.rps);
                cell.p50_ms.push(r.p50_ms);
                cell.p99_ms.push(r.p99_ms);
                let ops = t.requests as f64;
                if let (Some(b), Some(a)) = (&before.log, &after.log) {
                    cell.log_bytes_per_op.push((a.0 - b.0) / ops);
                    cell.log_entries_per_op.push((a.1 - b.1) / ops);
                    cell.gate_p50_us.push(histogram_p50(&b.2, &a.2) * 1e6);
                }
                if let (Some(b), Some(a)) = (before.backup_cpu_s, after.backup_cpu_s) {
                    cell.backup_cpu_us_per_op.push((a - b) / ops * 1e6);
                }
                if let (Some(b), Some(a)) = (before.ctx_switches, after.ctx_switches) {
                    cell.ctx_switches_per_op.push(a.saturating_sub(b) as f64 / ops);
                }
                if let (Some(b), Some(a)) = (before.backup_ctx_switches, after.backup_ctx_switches) {
                    cell.backup_ctx_switches_per_op.push(a.saturating_sub(b) as f64 / ops);
                }
                if let Some(n) = syscalls {
                    cell.syscalls_per_op.push(n as f64 / ops);
                }
                say(format!(
                    "  rep {}/{reps} {:<22} {:>3} -P {:<2} {:>9.0} ops/s  p50 {:.3} ms  p99 {:.3} ms",
                    rep + 1,
                    s.name,
                    t.test.split(' ').next().unwrap_or_default(),
                    t.pipeline,
                    r.rps,
                    r.p50_ms,
                    r.p99_ms
                ));
            }
        }
    }
    Ok(cells)
}

/// What each run cost the kernel's scheduler and syscall paths per
/// operation: the units replication's cost is paid in (a pair's primary
/// waits for acks, its backup wakes per batch).
pub fn kernel_table(title: &str, cells: &[Cell]) -> String {
    let mut text = format!("{title}: kernel work per operation (median ± half the spread; syscalls by perf stat)\n");
    text.push_str(&format!(
        "  {:<13} {:<24} {:>18} {:>18} {:>22}\n",
        "test", "system", "ctx switches", "syscalls", "backup ctx switches"
    ));
    let show = |v: &[f64]| if v.is_empty() { "n/a".to_string() } else { Summary::of(v).show(|x| format!("{x:.3}")) };
    for c in cells {
        text.push_str(&format!(
            "  {:<13} {:<24} {:>18} {:>18} {:>22}\n",
            c.label(),
            c.system,
            show(&c.ctx_switches_per_op),
            show(&c.syscalls_per_op),
            show(&c.backup_ctx_switches_per_op)
        ));
    }
    text
}

pub fn find<'a>(cells: &'a [Cell], system: &str, test: &str, pipeline: u32) -> Option<&'a Cell> {
    cells.iter().find(|c| c.system == system && c.test == test && c.pipeline == pipeline)
}

/// Per-repetition ratios a/b of a figure (the runs were alternated, so
/// repetition i of both saw the same machine).
pub fn paired(a: &[f64], b: &[f64], f: impl Fn(f64, f64) -> f64) -> Summary {
    Summary::of(&a.iter().zip(b).map(|(x, y)| f(*x, *y)).collect::<Vec<_>>())
}
