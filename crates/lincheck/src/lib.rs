//! # understudy-lincheck
//!
//! A linearizability checker for histories that clients record against a
//! key-value service: the Wing–Gong search with Lowe's memoization
//! (“just-in-time linearization”, as in Knossos and Porcupine), run per key.
//!
//! A history is a list of [`Op`]s: `GET k`, `SET k v`, `INCR k`, each with
//! the monotonic time it was invoked, the time its reply arrived and an
//! [`Outcome`]:
//!
//! - **ok**: the reply arrived, with the value it observed;
//! - **fail**: the op was definitely not applied (a `-READONLY` redirect,
//!   nothing sent);
//! - **unknown**: the client cannot tell (a timeout, a broken connection):
//!   the op may have taken effect at any time after its invocation, or
//!   never. Plain TCP clients get at-least-once semantics across a failover
//!   (DESIGN §3), so a write whose reply was lost is exactly this.
//!
//! [`check`] answers whether some total order of the ops exists that
//! respects real time (an op that completed before another was invoked
//! comes first) and explains every observed value with a register (`GET`,
//! `SET`) that is also a counter (`INCR`, from nil = 0). If not, it names the
//! key, the op that no order can explain and a small window of the ops
//! around it ([`Violation`]).
//!
//! ```
//! use understudy_lincheck::{check, History};
//!
//! // client 1 wrote 1 and was told OK before client 2 read nil: stale.
//! let h: History = "1 x set 1 0 10 ok\n2 x get 20 30 ok nil\n".parse().unwrap();
//! let err = check(&h).unwrap_err();
//! assert!(err.to_string().contains("not linearizable"));
//! ```
//!
//! # Why it is fast enough
//!
//! - **Per key** (P-compositionality, Herlihy & Wing): a history is
//!   linearizable iff each key's sub-history is, so the search runs on
//!   hundreds to thousands of ops at a time, not the whole history.
//! - **Memoization** of (set of linearized ops, register value): a
//!   configuration reached twice is explored once. The set is held as a
//!   128-bit Zobrist hash updated in O(1) per step.
//! - **Unknown ops** never bound anyone: their return is at infinity, so
//!   the search may place them anywhere after their invocation, or after
//!   every other op (= never). Unknown reads constrain nothing and are
//!   dropped; failed ops are dropped. The search succeeds as soon as every
//!   op with a known outcome is placed. Unknown writes with the same effect
//!   (two unknown `INCR`s) are interchangeable once both are invoked, so
//!   only the first of them is tried at each point.
//! - A budget ([`Limits`]) bounds the configurations explored per key; a
//!   key that exceeds it is reported as [`CheckError::Inconclusive`], never
//!   as a violation and never as a pass.
//!
//! # Layout
//!
//! - [`history`]: [`Op`], [`OpKind`], [`Outcome`], [`History`] and its text
//!   format (one op per line, for hand-written tests and saved histories).
//! - [`recorder`]: [`Recorder`], a thread-safe recorder for test clients.
//! - `model`: the register/counter the ops are checked against.
//! - `search`: the per-key search and the violation window.
//! - [`check`](mod@check): [`check`], [`Stats`], [`CheckError`], [`Violation`].

#![forbid(unsafe_code)]

pub mod check;
pub mod history;
mod model;
pub mod recorder;
mod search;

pub use check::{check, check_with, CheckError, Limits, Stats, Violation};
pub use history::{History, Op, OpKind, Outcome, Value};
pub use recorder::{Pending, Recorder};
