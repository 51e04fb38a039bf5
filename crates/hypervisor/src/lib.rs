//! # understudy-hypervisor
//!
//! A deterministic WebAssembly machine (DESIGN §2–§3, "machine level"): any
//! unmodified `wasm32-wasip1` program runs on wasmtime with our own
//! `wasi_snapshot_preview1`, whose every call passes one record/replay gate.
//! On the primary the gate performs calls against the real world and records
//! what the guest observed; on the backup it hands the guest the recorded
//! results and checks that each call is the recorded one. A mismatch is a
//! [`Divergence`]: both views are reported and the guest stops.
//!
//! # Layout
//!
//! - [`config`]: [`GuestConfig`], the deterministic wasmtime configuration
//!   ([`engine_config`]) and the pairing [`fingerprint`].
//! - [`event`]: the event encoding, and the [`EventSink`] trait the
//!   replication engine plugs in (record mode).
//! - `source`: replay mode: the [`EventSource`] trait the engine plugs in,
//!   [`Next`] (an event, a world to go live in, the end), [`VecSource`].
//! - [`error`]: errors, the divergence report, and why a guest stops
//!   inside a host call (`Stop`).
//! - `gate`: record/replay of every host call, call numbering, divergence.
//! - `fdtable`: the guest's descriptors, virtual state of the gate.
//! - `host`: the store's data (`Host`: the gate, memory and globals, the
//!   resource limiter, the snapshot state, the mapped directories), which
//!   `wasi`, `unwind` and `machine` share.
//! - `wasi`: the preview1 functions (guest memory in, results out).
//! - `abi`: the preview1 numbers the modules below `wasi` need too (the
//!   import module's name, errno values, rights).
//! - `world`: the real world of a recording guest (clocks, randomness,
//!   stdin, the listening socket as fd 3, connections); [`LiveWorld`].
//! - [`output`]: the output gate: outputs tagged with their event's seq
//!   leave when the engine's [`Release`] passes it.
//! - `machine`: [`run`] — a guest on the calling thread; [`GuestEnd`].
//! - [`logfile`]: standalone record/replay to a file ([`record_file`],
//!   [`replay_file`]), like rr for WebAssembly.
//! - [`fs`]: the mapped directories: confined host descriptors, the
//!   filesystem calls (`wasi::fs`) on each replica's own copy.
//! - [`snapshot`]: live snapshots of a running guest ([`SnapshotPort`],
//!   [`SnapshotStream`]); `record`: the records such a stream carries and
//!   their encoding, the directory tree included (re-exported as
//!   [`snapshot::Record`], [`snapshot::FinalState`]); `unwind`: the guest
//!   thread's side (unwind at a host call, rewind); [`asyncify`]: the
//!   transformation that makes a guest unwindable; `dirty`: which pages the
//!   guest wrote.
//! - `instrument`: import checks; exports mutable globals for state hashes.
//! - [`state`]: the hash of linear memory and mutable globals.
//!
//! Dependencies between these modules go one way (no import circles:
//! `tests/import_cycles.rs` checks every crate of the workspace). From the
//! bottom: the leaves `abi`, `event`, `record`, `state`, `output`, `dirty`;
//! then `error`, `fdtable`, `fs`, `asyncify`; `config`, `instrument`,
//! `snapshot`; `world`; `source`; `gate`; `host`; `unwind`; `wasi`;
//! `machine`; `logfile`. A module needs nothing of one above it.
//!
//! # What each call records
//!
//! | call | recorded (event payload) | not recorded: why |
//! | --- | --- | --- |
//! | `args_*`, `environ_*` | | part of the config and the fingerprint |
//! | `clock_time_get`, `clock_res_get` | the value (time delta-encoded per clock) | |
//! | `random_get` | the bytes | |
//! | `fd_write` stdout/stderr, `sock_send`, `fd_write` on a socket | bytes accepted (the data is in the argument digest; it is an output) | |
//! | `fd_read` stdin, `sock_recv`, `fd_read` on a socket | the bytes received (or errno: EAGAIN, ECONNRESET, EOF = 0 bytes) | |
//! | `poll_oneoff` | which subscriptions fired, errno, nbytes, hang-up | |
//! | `sock_accept` | errno (the fd is allocated lowest-free by the gate) | |
//! | `proc_exit` | nothing but the event (the code is in the digest): the end is in the log | |
//! | `path_open`, `path_*`, `fd_read`/`fd_write`/`fd_pread`/`fd_pwrite` on files, `fd_seek`/`fd_tell`, `fd_sync`/`fd_datasync`, `fd_advise`, `fd_filestat_*`, `fd_readdir` | errno, and what the guest saw (bytes read, a filestat, a listing, an offset); a replaying replica performs the call on its own copy of the directory and checks its answer against this | |
//! | `fd_close`, `fd_renumber`, `sock_shutdown`, `fd_fdstat_get`, `fd_fdstat_set_flags`, `fd_fdstat_set_rights` (ENOTSUP, as wasmtime), `fd_allocate` (ENOTSUP, as wasmtime), `fd_prestat_*`, `sched_yield`, unsupported calls (ENOSYS, logged once) | | functions of the gate's fd table |
//!
//! Every call, recorded or not, is numbered; each event carries the distance
//! to the previous one, so a replica that makes a different sequence of calls
//! is stopped at the first call that differs. Errors a call detects from
//! guest memory alone (EFAULT, EBADF on an unknown fd, EINVAL) are not
//! recorded either.
//!
//! # Fuel
//!
//! Fuel (wasmtime's instruction counter) is off by default: it is what a
//! position in the instruction stream costs. `tests/fuel_cost.rs` measures
//! it on the CPU-bound guest (compress of 10 MB, thread CPU time): +4% to
//! +13% over runs on a loaded 2-core machine. With fuel on, each event also
//! carries the fuel consumed since the previous one, and a replica that
//! reaches a call at another position diverges.
//!
//! # Limitations
//!
//! - Replicas need the same CPU features (code generation, hence the stack
//!   depth at which a guest overflows, depends on them): they are part of
//!   the fingerprint, as VMware FT required compatible CPUs.
//! - `replay_file` streams events; a log is written with one buffered
//!   record per event and synced at the end only.
//! - Reference-typed globals enter the state hash by presence, not value.
//! - Files only in directories mapped with `--map-dir` (`fs`); no UDP;
//!   `sock_recv` flags other than PEEK are ignored.

mod abi;
pub mod asyncify;
pub mod config;
mod dirty;
pub mod error;
pub mod event;
mod fdtable;
pub mod fs;
mod gate;
mod host;
mod instrument;
pub mod logfile;
mod machine;
pub mod output;
mod record;
pub mod snapshot;
mod source;
pub mod state;
mod unwind;
mod wasi;
mod world;

pub use config::{engine_config, fingerprint, module_digest, Fuel, GuestConfig, WASMTIME_VERSION};
pub use error::{CallView, Divergence, DivergenceKind, HypervisorError};
pub use event::{EventDecoder, EventSink, Func, MemorySink};
pub use fdtable::LISTENER_FD;
pub use instrument::{prepare, Prepared};
pub use logfile::{read_log, record_checkpointed, record_file, replay_file, LogContents, ReplayOptions, ReplayReport};
pub use machine::{
    precompile, run, run_fresh, run_restored, run_with_checkpoints, snapshot_dirs, CheckpointSink, Ending, GuestEnd, Mode,
    RecordSource, RunOptions, TrapKind,
};
pub use output::{Console, Release};
pub use snapshot::{SnapshotPort, SnapshotStream};
pub use source::{EventSource, Next, VecSource};
pub use world::{LiveWorld, Stdin, SEND_BUFFER_BYTES_MAX_DEFAULT};
