//! # understudy-core
//!
//! The replication protocol of understudy as a plain state machine: events
//! in, commands out, time passed in. No sockets, no tokio, no clock.
//!
//! # Layout
//!
//! - [`machine`]: the [`StateMachine`](machine::StateMachine) and
//!   [`Ctx`](machine::Ctx) traits — what the engine replicates.

pub mod machine;

pub use machine::{Ctx, SnapshotError, SnapshotWriter, StateMachine};
