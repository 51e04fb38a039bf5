//! # understudy-kv
//!
//! The built-in application of understudy: a Redis-protocol key-value store
//! written as a deterministic [`StateMachine`](understudy_core::StateMachine),
//! replicated at the application level (DESIGN §2). Clients speak RESP2, so
//! `redis-cli`, `redis-benchmark` and Redis client libraries work unmodified;
//! replies are byte-identical to Redis 7.0's for the same commands (checked
//! against a real `redis-server` by `tests/redis_differential.rs`).
//!
//! The node owns the sockets (its Redis front end, `understudy_node::redis`).
//! Per connection it calls a resumable [`resp::CommandParser`] on the input,
//! [`Session::dispatch`] on each command, and then, as [`Dispatch`] says,
//! `StateMachine::read` with the argv encoded by [`encode_query`] for a read,
//! or logs the op and calls `StateMachine::apply` for a write. On the primary
//! `StateMachine::housekeeping` ([`Kv::expire_cycle_op`]) names expired keys
//! in an op that is logged, so both replicas reclaim the same keys.
//!
//! # Layout
//!
//! - [`resp`]: the RESP2 request parser and reply encoders.
//! - [`session`]: per-connection state (MULTI queue, HELLO, CLIENT, …).
//! - [`admin`]: what a node's connections share: CONFIG, the registry of
//!   CLIENT LIST and CLIENT KILL, [`slowlog`]; [`acl`]: the users of an
//!   ACL file, AUTH's ([`auth`]) and the permission checks.
//! - [`exactly_once`]: the replicated table of client sessions that makes
//!   retried requests exactly-once (`US.SESSION`, `US.CALL`, …).
//! - [`kv`]: [`Kv`], the state machine: apply, read, expire cycle, snapshots.
//! - [`evict`]: `maxmemory`: the primary's choice of keys to evict, logged
//!   ahead of the write that needs the room (`Kv::admit`), and the OOM
//!   refusals.
//! - `cmd`: the command table and the command implementations.
//! - `store` and `entry`: the sharded copy-on-write keyspace; `zset`: the
//!   sorted set's ordered value.
//! - `snapshot`: the chunked snapshot format and its validating restore.
//! - `op`: the encoding of logged operations.
//! - `f80` (on `bignum`): the x87 `long double` of INCRBYFLOAT, emulated
//!   exactly, and `strtod` for SORT.
//! - `encoding`: the internal encodings Redis would use (OBJECT ENCODING).
//! - `num`: Redis's integer and float grammars (`strtod`), decimal and
//!   `%.17g` formatting, glob matching.
//! - `hll`: HyperLogLog in Redis's string encoding (PFADD, PFCOUNT, PFMERGE).
//! - `script`: Lua scripting (EVAL, EVALSHA, SCRIPT) on an embedded Lua 5.1.
//! - `rdb`: Redis 7.0's RDB serialization of one value (DUMP, RESTORE):
//!   CRC-64, LZF, listpacks, intsets, ziplists.
//!
//! # Determinism
//!
//! `apply` is a pure function of the state, the op, and the time and random
//! values handed out by `ctx.now_us()` and `ctx.random_u64()` (recorded on
//! the primary, replayed on the backup). Hash-table iteration order is the
//! one thing that may differ between replicas; nothing that changes state
//! depends on it (the expire cycle's ops name their keys, digests sum
//! per-key hashes, SPOP picks by an order of the members themselves, a Lua
//! script gets such replies sorted), so at worst the *order* of elements in
//! a HGETALL/SMEMBERS/KEYS reply differs, and the backup's replies are
//! discarded anyway.

#![forbid(unsafe_code)]

pub mod acl;
mod acl_categories;
mod acl_command;
pub mod admin;
pub mod auth;
mod bignum;
mod bytes;
mod cmd;
mod containers;
mod dispatch;
mod encoding;
mod entry;
pub mod evict;
pub mod exactly_once;
mod f80;
mod hll;
pub mod kv;
mod num;
mod op;
mod rdb;
pub mod resp;
pub mod resp3;
mod script;
pub mod session;
pub mod slowlog;
mod snapshot;
mod store;
mod stream;
mod stream_snapshot;
mod subcommands;
pub mod watch;
mod zset;

pub use cmd::xwait::StreamWait;
pub use exactly_once::{SessionLimits, SessionTable};
pub use kv::Kv;
/// Redis's glob matching, for other RESP front ends (`understudy sentinel`'s PSUBSCRIBE).
pub use num::glob_match;
pub use op::encode_query;
pub use resp::{parse_command, CommandParser, RespError};
pub use script::ScriptLimits;
pub use session::{command_name, serves_on_backup, Dispatch, Session};
