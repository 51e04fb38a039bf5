//! # understudy-client
//!
//! A small blocking client for understudy's Redis-protocol service, used by
//! `understudy demo`, the tests and the benchmarks.
//!
//! - [`resp`]: one connection, commands in, typed [`Reply`]s out.
//! - [`cluster`]: finds the primary through the arbiter and reconnects to
//!   the new one after a failover.

pub mod cluster;
pub mod resp;

pub use cluster::Cluster;
pub use resp::{Conn, Reply};
