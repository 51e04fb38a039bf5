//! [`check`]: one verdict for a whole history, key by key.

use std::fmt;
use std::time::{Duration, Instant};

use crate::history::{History, Op, OpKind, Outcome, Value};
use crate::search::{relevant, search, window, Verdict};

/// Bounds of the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Configurations (linearized set, register value) explored per key
    /// before giving up with [`CheckError::Inconclusive`]. Each costs about
    /// 40 bytes of memory.
    pub configurations_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { configurations_max: 5_000_000 }
    }
}

/// What a passing check looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub keys: usize,
    /// Every op of the history.
    pub ops: usize,
    /// Ops the search placed: those with a reply, and unknown writes.
    pub checked: usize,
    /// Ops with an unknown outcome (unknown reads are dropped: they
    /// observed nothing and changed nothing).
    pub unknown: usize,
    /// Ops that definitely failed (dropped: they changed nothing).
    pub failed: usize,
    /// Configurations explored, over all keys.
    pub configurations: u64,
    /// The most configurations one key needed.
    pub configurations_max_key: u64,
    pub elapsed: Duration,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ops on {} keys ({} checked, {} unknown, {} failed): linearizable; {} configurations explored (at most {} per key) in {:.1?}",
            self.ops,
            self.keys,
            self.checked,
            self.unknown,
            self.failed,
            self.configurations,
            self.configurations_max_key,
            self.elapsed
        )
    }
}

/// A key whose history no order explains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    /// The op the longest linearizable prefix found could not be extended
    /// with: every order of the ops before it leaves the register in a
    /// state where its result is impossible.
    pub op: Op,
    /// Ops with a known outcome placed in that prefix.
    pub linearized: usize,
    /// Values the register could hold at that point (`None` = nil); at
    /// most 8.
    pub states: Vec<Option<Value>>,
    /// The ops that show the conflict, in invocation order (see
    /// `search::window`): the op, those concurrent with it, the last writes
    /// before it, the writes of the value it saw, unknown writes in flight.
    pub window: Vec<Op>,
}

fn show_state(s: Option<Value>) -> String {
    s.map_or_else(|| "nil".to_string(), |v| v.to_string())
}

fn show_op(o: &Op, base: u64) -> String {
    let what = match (o.kind, o.outcome) {
        (OpKind::Get, Outcome::Ok(v)) => format!("GET -> {}", show_state(v)),
        (OpKind::Incr, Outcome::Ok(v)) => format!("INCR -> {}", show_state(v)),
        (OpKind::Set(v), Outcome::Ok(_)) => format!("SET {v} -> OK"),
        (OpKind::Set(v), _) => format!("SET {v}"),
        (OpKind::Get, _) => "GET".to_string(),
        (OpKind::Incr, _) => "INCR".to_string(),
    };
    let us = |t: u64| (t as f64 - base as f64) / 1e3;
    let end = match o.outcome {
        Outcome::Unknown => "?, unknown".to_string(),
        Outcome::Fail => format!("{:+.1} µs, failed", us(o.complete_ns.unwrap_or(o.invoke_ns))),
        Outcome::Ok(_) => format!("{:+.1} µs", us(o.complete_ns.unwrap_or(o.invoke_ns))),
    };
    format!("client {:<3} {what:<24} [{:+.1} µs, {end}]", o.client, us(o.invoke_ns))
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base = self.window.first().map_or(self.op.invoke_ns, |o| o.invoke_ns);
        let states: Vec<String> = self.states.iter().map(|s| show_state(*s)).collect();
        writeln!(
            f,
            "key {:?} is not linearizable: after the longest linearizable prefix found ({} ops),",
            self.key, self.linearized
        )?;
        writeln!(f, "  {}", show_op(&self.op, base))?;
        writeln!(f, "is impossible: the key could only hold {}", states.join(" or "))?;
        writeln!(f, "window (times from the first op shown, at {} ns; text form below):", base)?;
        for o in &self.window {
            let mark = if *o == self.op { "  <-- here" } else { "" };
            writeln!(f, "  {}{mark}", show_op(o, base))?;
        }
        for o in &self.window {
            writeln!(f, "  {o}")?;
        }
        Ok(())
    }
}

/// Why a history did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// Op `index` of the history is inconsistent in itself.
    Malformed { index: usize, reason: String },
    /// No order explains the history (the first key found, in key order).
    NotLinearizable(Box<Violation>),
    /// The search on `key` ran past [`Limits::configurations_max`]: no verdict.
    Inconclusive { key: String, ops: usize, configurations: u64 },
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Malformed { index, reason } => write!(f, "op {index} of the history is malformed: {reason}"),
            CheckError::NotLinearizable(v) => write!(f, "{v}"),
            CheckError::Inconclusive { key, ops, configurations } => write!(
                f,
                "no verdict on key {key:?} ({ops} ops): the search explored {configurations} configurations \
                 (Limits::configurations_max); split the run into shorter histories"
            ),
        }
    }
}

impl std::error::Error for CheckError {}

impl CheckError {
    /// The violation, if that is what this is.
    pub fn violation(&self) -> Option<&Violation> {
        match self {
            CheckError::NotLinearizable(v) => Some(v),
            _ => None,
        }
    }
}

/// Checks `h` with the default [`Limits`].
pub fn check(h: &History) -> Result<Stats, CheckError> {
    check_with(h, &Limits::default())
}

/// Whether `h` is linearizable, key by key.
pub fn check_with(h: &History, limits: &Limits) -> Result<Stats, CheckError> {
    let t0 = Instant::now();
    for (index, op) in h.ops().iter().enumerate() {
        op.validate().map_err(|reason| CheckError::Malformed { index, reason })?;
    }
    let mut stats = Stats { ops: h.len(), ..Stats::default() };
    stats.unknown = h.ops().iter().filter(|o| o.outcome == Outcome::Unknown).count();
    stats.failed = h.ops().iter().filter(|o| o.outcome == Outcome::Fail).count();
    for (key, all) in h.by_key() {
        stats.keys += 1;
        let ops = relevant(&all);
        stats.checked += ops.len();
        let configurations = match search(&ops, limits.configurations_max) {
            Verdict::Linearizable { configurations } => configurations,
            Verdict::TooHard { configurations } => {
                return Err(CheckError::Inconclusive { key: key.to_string(), ops: ops.len(), configurations })
            }
            Verdict::Violation { op, linearized, states, .. } => {
                let op = ops[op];
                return Err(CheckError::NotLinearizable(Box::new(Violation {
                    key: key.to_string(),
                    op: op.clone(),
                    linearized,
                    states,
                    window: window(&ops, op),
                })));
            }
        };
        stats.configurations += configurations;
        stats.configurations_max_key = stats.configurations_max_key.max(configurations);
    }
    stats.elapsed = t0.elapsed();
    Ok(stats)
}
