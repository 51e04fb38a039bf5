//! # understudy-durable
//!
//! The replicated log and snapshots on disk, so that a whole-cluster power
//! loss loses no acknowledged write (with `appendfsync always`), and the
//! recovery that reads them back after a crash. Payloads are opaque bytes:
//! this crate knows seqs and epochs, not what an entry means. It does no
//! logging either; recovery returns one report line per thing it found, for
//! the caller to log.
//!
//! # Layout
//!
//! - [`storage`]: the [`Storage`] trait every disk operation goes through,
//!   real files ([`FsStorage`]) and a simulated disk that loses, tears and
//!   corrupts writes at a crash ([`MemStorage`]).
//! - [`log`]: segment files of checksummed records, the [`LogWriter`].
//! - [`snapfile`]: snapshot files written under a temporary name and renamed.
//! - [`recover`](mod@recover): what survived, and whether it is certainly
//!   complete.
//!
//! # The promise
//!
//! An entry the caller acknowledged after [`LogWriter::sync`] returned in
//! [`Fsync::Always`] mode is in [`recover()`]'s result, or the result says
//! [`Recovered::complete`] is false. Never a silently wrong payload: every
//! record and chunk is checksummed.

#![forbid(unsafe_code)]

mod bytes;
pub mod log;
mod mark;
pub mod recover;
pub mod snapfile;
pub mod storage;

pub use log::{discard_all, Fsync, LogWriter, ParseFsyncError, Record, RECORD_PAYLOAD_BYTES_MAX};
pub use mark::{clear_incomplete, INCOMPLETE_MARK};
pub use recover::{recover, Recovered};
pub use snapfile::{SnapshotFileReader, SnapshotFileWriter, SNAPSHOT_CHUNK_BYTES_MAX};
pub use storage::{CrashFaults, FsFile, FsStorage, MemFile, MemStorage, Storage, StorageFile, SECTOR_BYTES};
