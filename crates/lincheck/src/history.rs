//! What a client saw: operations with their times and outcomes, and a text
//! format for them (one op per line):
//!
//! ```text
//! # client key op [arg] invoke_ns complete_ns|- outcome [value]
//! 1 x set 5   100 250 ok
//! 2 x get     120 300 ok 5
//! 2 x get     400 450 ok nil
//! 3 x incr    500 650 ok 6
//! 1 x set 7   700 -   unknown
//! 3 x incr    710 720 fail
//! ```
//!
//! Blank lines and lines starting with `#` are ignored. `complete_ns` is
//! `-` when the client never got an answer; it is required for `ok` and
//! `fail` (an unknown op may carry the time the client gave up, which bounds
//! nothing).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The values the register holds: the test clients write integers so that
/// `INCR` applies to them.
pub type Value = i64;

/// What an operation asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `GET k`: the value, or nil.
    Get,
    /// `SET k v`: `+OK`.
    Set(Value),
    /// `INCR k`: the new value (nil counts as 0).
    Incr,
}

/// How an operation ended, as far as its client can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The reply arrived. `GET`: the value read (`None` = nil); `SET`:
    /// `None`; `INCR`: `Some(new value)`.
    Ok(Option<Value>),
    /// Definitely not applied: an error reply such as `-READONLY` (a backup
    /// refuses before anything is logged), or nothing was sent.
    Fail,
    /// Maybe applied, maybe not: the connection broke or timed out after
    /// the request was sent. Bounds nothing: the op may take effect at any
    /// time after its invocation, or never.
    Unknown,
}

/// One operation of one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Who issued it (ops of one client never overlap, but the checker does
    /// not rely on it).
    pub client: u64,
    pub key: String,
    pub kind: OpKind,
    /// Monotonic nanoseconds (one clock for all clients) just before the
    /// request was sent.
    pub invoke_ns: u64,
    /// Monotonic nanoseconds just after the reply arrived; `None` if it
    /// never did. Ignored for [`Outcome::Unknown`].
    pub complete_ns: Option<u64>,
    pub outcome: Outcome,
}

impl Op {
    /// Whether the op's effect is certain (it reached a verdict).
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok(_))
    }

    /// Whether the op may change the register.
    pub fn is_write(&self) -> bool {
        !matches!(self.kind, OpKind::Get)
    }

    /// Checks the fields agree with each other.
    pub fn validate(&self) -> Result<(), String> {
        match (self.outcome, self.complete_ns) {
            (Outcome::Ok(_) | Outcome::Fail, None) => return Err("an ok or failed op needs its completion time".into()),
            (Outcome::Ok(_) | Outcome::Fail, Some(c)) if c < self.invoke_ns => {
                return Err(format!("completed at {c} ns, before its invocation at {} ns", self.invoke_ns))
            }
            _ => {}
        }
        match (self.kind, self.outcome) {
            (OpKind::Set(_), Outcome::Ok(Some(v))) => Err(format!("SET answered with a value ({v})")),
            (OpKind::Incr, Outcome::Ok(None)) => Err("INCR answered without a value".into()),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.client, self.key)?;
        match self.kind {
            OpKind::Get => write!(f, "get")?,
            OpKind::Set(v) => write!(f, "set {v}")?,
            OpKind::Incr => write!(f, "incr")?,
        }
        write!(f, " {} ", self.invoke_ns)?;
        match self.complete_ns {
            Some(c) => write!(f, "{c} ")?,
            None => write!(f, "- ")?,
        }
        match (self.kind, self.outcome) {
            (OpKind::Set(_), Outcome::Ok(_)) => write!(f, "ok"),
            (_, Outcome::Ok(Some(v))) => write!(f, "ok {v}"),
            (_, Outcome::Ok(None)) => write!(f, "ok nil"),
            (_, Outcome::Fail) => write!(f, "fail"),
            (_, Outcome::Unknown) => write!(f, "unknown"),
        }
    }
}

impl FromStr for Op {
    type Err = String;

    fn from_str(line: &str) -> Result<Op, String> {
        let mut t = line.split_whitespace();
        let mut next = |what: &str| t.next().ok_or_else(|| format!("missing {what}"));
        let num = |s: &str, what: &str| s.parse::<u64>().map_err(|_| format!("bad {what} {s:?}"));
        let val = |s: &str| s.parse::<Value>().map_err(|_| format!("bad value {s:?}"));
        let client = num(next("client")?, "client")?;
        let key = next("key")?.to_string();
        let kind = match next("op")? {
            "get" => OpKind::Get,
            "set" => OpKind::Set(val(next("value")?)?),
            "incr" => OpKind::Incr,
            other => return Err(format!("unknown op {other:?} (get, set, incr)")),
        };
        let invoke_ns = num(next("invoke time")?, "invoke time")?;
        let complete_ns = match next("completion time")? {
            "-" => None,
            s => Some(num(s, "completion time")?),
        };
        let outcome = match (next("outcome")?, next("value").ok()) {
            ("ok", None) if matches!(kind, OpKind::Set(_)) => Outcome::Ok(None),
            ("ok", None) => return Err("ok needs the value read (or nil)".into()),
            ("ok", Some("nil")) => Outcome::Ok(None),
            ("ok", Some(s)) => Outcome::Ok(Some(val(s)?)),
            ("fail", None) => Outcome::Fail,
            ("unknown", None) => Outcome::Unknown,
            (o @ ("fail" | "unknown"), Some(v)) => return Err(format!("{o} takes no value, got {v:?}")),
            (other, _) => return Err(format!("unknown outcome {other:?} (ok, fail, unknown)")),
        };
        if let Ok(extra) = next("") {
            return Err(format!("trailing {extra:?}"));
        }
        let op = Op { client, key, kind, invoke_ns, complete_ns, outcome };
        op.validate()?;
        Ok(op)
    }
}

/// Every op of a run, in any order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    ops: Vec<Op>,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    pub fn push(&mut self, op: Op) {
        self.ops.push(op);
    }

    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Each key's sub-history, keys in order.
    pub fn by_key(&self) -> BTreeMap<&str, Vec<&Op>> {
        let mut m: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
        for op in &self.ops {
            m.entry(op.key.as_str()).or_default().push(op);
        }
        m
    }
}

impl From<Vec<Op>> for History {
    fn from(ops: Vec<Op>) -> History {
        History { ops }
    }
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# client key op [arg] invoke_ns complete_ns|- outcome [value]")?;
        for op in &self.ops {
            writeln!(f, "{op}")?;
        }
        Ok(())
    }
}

impl FromStr for History {
    type Err = String;

    fn from_str(text: &str) -> Result<History, String> {
        let mut ops = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            ops.push(line.parse().map_err(|e| format!("line {}: {e}: {line:?}", i + 1))?);
        }
        Ok(History { ops })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_roundtrip() {
        let text = "1 x set 5 100 250 ok\n2 x get 120 300 ok 5\n2 x get 400 450 ok nil\n3 x incr 500 650 ok 6\n\
                    1 x set 7 700 - unknown\n3 x incr 710 720 fail\n";
        let h: History = text.parse().unwrap();
        assert_eq!(h.len(), 6);
        assert_eq!(h.ops()[1].outcome, Outcome::Ok(Some(5)));
        assert_eq!(h.ops()[4].complete_ns, None);
        let again: History = h.to_string().parse().unwrap();
        assert_eq!(again, h);
    }

    #[test]
    fn malformed_lines_name_the_problem() {
        assert!("1 x get 10 5 ok 1".parse::<Op>().unwrap_err().contains("before its invocation"));
        assert!("1 x get 10 - ok 1".parse::<Op>().unwrap_err().contains("completion time"));
        assert!("1 x get 10 20 ok".parse::<Op>().unwrap_err().contains("value read"));
        assert!("1 x put 1 10 20 ok".parse::<Op>().unwrap_err().contains("unknown op"));
        assert!("1 x incr 10 20 ok nil".parse::<Op>().unwrap_err().contains("INCR"));
    }
}
