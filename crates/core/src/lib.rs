//! # understudy-core
//!
//! The replication protocol of understudy as a plain state machine: events
//! in, commands out, time passed in. No sockets, no tokio, no clock — which
//! is what lets unit tests assert exact command lists and a seeded simulator
//! drive the real protocol through crashes and partitions (STYLE.md 1–2).
//!
//! # Layout
//!
//! - [`machine`]: the [`StateMachine`] and [`Ctx`] traits — what is replicated.
//! - [`event`]: the vocabulary, [`Event`] in and [`Command`] out.
//! - [`config`]: timing and bounds.
//! - `core`: [`Core`], shared state and dispatch; `starting`, `primary`,
//!   `backup`: the logic of each role.
//!
//! # The rules, in one place
//!
//! - Output rule: an output tagged with seq `s` leaves the primary only when
//!   `s ≤ release_upto`; while a backup gates outputs, `release_upto` is its
//!   received-ack in the current epoch. A read is tagged with the *next* seq,
//!   so an ack sent before the read arrived never covers it.
//! - Test-and-set: epoch `N+1` is claimed at the arbiter by a member of `N`
//!   only. A primary that loses a member backup claims `N+1` before it
//!   releases anything more; a backup that loses its primary claims `N+1`,
//!   drains every received entry, and serves. The loser halts.
//! - Promise 4: a joiner becomes a member only once it holds every entry
//!   whose output may have left without it; a joiner that is not a member
//!   never claims.

#![forbid(unsafe_code)]

mod backup;
pub mod config;
mod core;
mod durable;
pub mod event;
pub mod machine;
mod primary;
mod roles;
mod starting;

pub use crate::core::{Core, Outcome, RoleName, Status, WaitFor};
pub use config::Config;
pub use event::{ArbiterView, BackupPhase, ClaimOutcome, Command, ConnId, Epoch, Event, Millis, Seq, UpdateOutcome, ANYONE};
pub use machine::{Ctx, SnapshotError, SnapshotWriter, StateMachine};
