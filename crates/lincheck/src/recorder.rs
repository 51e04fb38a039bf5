//! A thread-safe recorder for test clients: one monotonic clock for every
//! client, an op recorded when it ends.
//!
//! ```
//! use understudy_lincheck::{OpKind, Recorder};
//!
//! let rec = Recorder::new();
//! let op = rec.invoke(1, "x", OpKind::Set(5)); // just before sending
//! op.ok(None); // the reply arrived: +OK
//! let op = rec.invoke(1, "x", OpKind::Get);
//! drop(op); // the client gave up: recorded as unknown
//! assert_eq!(rec.history().len(), 2);
//! ```

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::history::{History, Op, OpKind, Outcome, Value};

/// Shared by every client thread of a run (clone it per thread).
#[derive(Debug, Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Time zero of the history. `Instant` is monotonic and shared by all
    /// threads (CLOCK_MONOTONIC), so times of different clients compare.
    base: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder { inner: Arc::new(Inner { base: Instant::now(), ops: Mutex::new(Vec::new()) }) }
    }

    /// Nanoseconds since the recorder was made.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.inner.base.elapsed().as_nanos()).expect("a run lasts less than 584 years")
    }

    /// Starts an op: call it just before the request is sent. The op is
    /// recorded when the returned [`Pending`] is completed, or as unknown if
    /// it is dropped.
    pub fn invoke(&self, client: u64, key: &str, kind: OpKind) -> Pending {
        let invoke_ns = self.now_ns();
        Pending {
            rec: self.clone(),
            op: Some(Op { client, key: key.to_string(), kind, invoke_ns, complete_ns: None, outcome: Outcome::Unknown }),
        }
    }

    /// Everything recorded so far.
    pub fn history(&self) -> History {
        History::from(self.lock().clone())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Op>> {
        self.inner.ops.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An op in flight. Complete it with [`ok`](Pending::ok),
/// [`fail`](Pending::fail) or [`unknown`](Pending::unknown); dropping it
/// records it as unknown (a client thread that panicked mid-op cannot know).
#[derive(Debug)]
#[must_use = "an op in flight is recorded when it is completed"]
pub struct Pending {
    rec: Recorder,
    op: Option<Op>,
}

impl Pending {
    /// The reply arrived: `GET` → the value (`None` = nil), `SET` → `None`,
    /// `INCR` → `Some(new value)`.
    pub fn ok(mut self, value: Option<Value>) {
        self.finish(Outcome::Ok(value));
    }

    /// Definitely not applied (e.g. `-READONLY`).
    pub fn fail(mut self) {
        self.finish(Outcome::Fail);
    }

    /// Sent, but no reply: may or may not have been applied.
    pub fn unknown(mut self) {
        self.finish(Outcome::Unknown);
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(mut op) = self.op.take() {
            op.complete_ns = Some(self.rec.now_ns());
            op.outcome = outcome;
            self.rec.lock().push(op);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.finish(Outcome::Unknown);
    }
}
