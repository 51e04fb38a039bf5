//! # understudy-node
//!
//! The runtime of a replica: it performs the protocol core's commands over
//! TCP, runs the machine in record mode (primary) or replay mode (backup),
//! and serves clients through the output gate.
//!
//! # Layout
//!
//! - [`run`]: starting a node ([`run::run_kv`]).
//! - `replica`: the state shared by a node's tasks; `pump` performs commands.
//! - [`listening`]: port 0 and `listening.json`: the addresses a node really listens on.
//! - `listen`: the replication listener (primary side of joins, snapshots).
//! - `join`: the backup side (joining, receiving, replaying, loading the snapshot).
//! - `writer`: the batching writer of a channel.
//! - `exec`: the backup's queue of received entries and their replay.
//! - `ctx`: record and replay of the clock and randomness.
//! - `kv_server`: the Redis-protocol front end and its output gate.
//! - `arbiter_lanes`: arbiter calls off the event loop.
//! - [`metrics`]: Prometheus metrics on `--metrics-listen`.
//! - [`machine`]: what is replicated; [`wasm`]: the WebAssembly guest as a machine.

pub mod arbiter_lanes;
pub mod ctx;
pub mod exec;
pub mod framed;
mod join;
pub mod kv_server;
mod listen;
pub mod listening;
pub mod machine;
pub mod metrics;
pub mod options;
pub mod progress;
pub mod replica;
pub mod run;
pub mod wasm;
mod writer;

pub use options::NodeOptions;
pub use run::{run_kv, NodeError};
