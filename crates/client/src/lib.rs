//! # understudy-client
//!
//! A small blocking client for understudy's Redis-protocol service, used by
//! `understudy demo`, the tests and the benchmarks.
//!
//! - [`resp`]: one connection, commands in, typed [`Reply`]s out.
//! - [`cluster`]: finds the primary through the arbiter and reconnects to
//!   the new one after a failover (a retried write may apply twice:
//!   at least once).
//! - [`session`]: exactly-once requests: numbered within a session and
//!   retried with the same number on the new primary after a failover; the
//!   replicated session table answers a retry instead of applying it again.

#![forbid(unsafe_code)]

pub mod cluster;
pub mod resp;
pub mod session;

pub use cluster::Cluster;
pub use resp::{Conn, Reply};
pub use session::{Locator, Session, SessionError, SessionOptions, SessionStats};
