//! # understudy-node
//!
//! The runtime of a replica: it performs the protocol core's commands over
//! TCP, runs the machine in record mode (primary) or replay mode (backup),
//! and serves clients through the output gate.
//!
//! # Layout
//!
//! - [`service`]: the application level as a library: a [`FrontEnd`]
//!   (client protocol) over a [`StateMachine`],
//!   run by [`Node`] ([`builder`]); `serve`: their clients and the output
//!   gate; [`redis`]: the key-value service's front end.
//! - [`run`]: starting a node ([`run_kv`]: the key-value service as a node).
//! - [`replica`]: a node's runtime state and the handler of the core's
//!   commands, generic over [`io::Io`] (tokio here, the simulator's in
//!   `understudy-sim`); [`frames`]: the channel's frames, both sides;
//!   [`transfer`]: joins, snapshots, the backup's execution;
//!   [`channel`]: connections and send buffers; [`snapshot`]: the snapshot
//!   stream and its checks.
//! - [`tokio_io`]: the tokio runtime's [`io::Io`].
//! - [`tls`]: TLS on the client port (`--tls-cert`, `--tls-key`, `--tls-ca`).
//! - [`logger`]: the stderr logger (text or JSON lines).
//! - [`listening`]: port 0 and `listening.json`: the addresses a node really listens on.
//! - `listen`: the replication listener (primary side of joins, snapshots).
//! - `join`: the backup side (joining, receiving, replaying, loading the snapshot).
//! - `writer`: the batching writer of a channel.
//! - `exec`: the backup's queue of received entries and their replay.
//! - `ctx`: record and replay of the clock and randomness.
//! - `arbiter_lanes`: arbiter calls off the event loop.
//! - [`metrics`]: Prometheus metrics on `--metrics-listen`.
//! - [`machine`]: what is replicated; [`wasm`]: the WebAssembly guest as a machine.

#![forbid(unsafe_code)]

pub mod arbiter_lanes;
pub mod beat;
mod blocking;
pub mod builder;
pub mod catchup;
pub mod channel;
pub mod ctx;
pub mod disk;
mod disk_state;
mod disk_thread;
pub mod exec;
pub mod framed;
pub mod frames;
pub mod io;
mod join;
mod listen;
pub mod listening;
pub mod logger;
pub mod machine;
pub mod metrics;
pub mod options;
pub mod progress;
mod pubsub;
pub mod redis;
mod redis_info;
pub mod replica;
pub mod run;
mod serve;
pub mod service;
pub mod snapshot;
pub mod tls;
pub mod tokio_io;
pub mod transfer;
pub mod wasm;
mod writer;

pub use builder::{Node, NodeBuilder};
pub use options::NodeOptions;
pub use run::{run_kv, NodeError};
pub use service::{Access, FrontEnd, NodeView, Peer, Request};
pub use understudy_core::{Ctx, SnapshotError, SnapshotWriter, StateMachine};
