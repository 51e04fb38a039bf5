//! Errors and the divergence report.

use crate::event::Func;

/// Errors that keep a guest from starting, or a log from being read. A guest
/// that runs and then traps, exits or diverges is not an error: that is a
/// [`crate::GuestEnd`].
#[derive(Debug, thiserror::Error)]
pub enum HypervisorError {
    #[error("malformed WebAssembly module: {0}")]
    MalformedModule(String),
    #[error("unsupported import {module}::{name} ({kind}): guests may import only functions of wasi_snapshot_preview1")]
    UnsupportedImport { module: String, name: String, kind: &'static str },
    #[error("the module has no exported function `_start` (only WASI command modules can run)")]
    NoStart,
    #[error("the module exports no memory named `memory`")]
    NoMemory,
    #[error("wasmtime engine: {0}")]
    Engine(String),
    #[error("could not instantiate the module: {0}")]
    Instantiate(String),
    // The cause is in the message: not a `source` too, or a chain
    // (`{:#}`) would print it twice.
    #[error("I/O on {what}: {cause}")]
    Io { what: String, cause: std::io::Error },
    #[error("log {path}: {detail}")]
    BadLog { path: String, detail: String },
    #[error("{0}")]
    MapDir(String),
    #[error("this guest cannot be snapshotted: {0}")]
    NotSnapshottable(String),
    #[error("bad snapshot: {0}")]
    BadSnapshot(String),
    #[error("fingerprint mismatch: the log was recorded with {recorded}, this replica computes {ours} (module, args, env, limits, fuel, wasmtime version or CPU differ)")]
    FingerprintMismatch { recorded: String, ours: String },
}

impl HypervisorError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        HypervisorError::Io { what: what.into(), cause: source }
    }
}

/// One side's view of a host call, for a divergence report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallView {
    /// 1-based number of the host call since the guest started.
    pub call: u64,
    pub func: Func,
    /// crc32c of the call's arguments (see the event format).
    pub digest: u32,
    /// Fuel consumed when the call was made, if fuel is enabled.
    pub fuel: Option<u64>,
    /// The arguments, readable (only the replaying side has them).
    pub args: String,
}

/// What differed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DivergenceKind {
    /// The guest made a different host call than the recorded one.
    Function,
    /// Same function, different arguments (or a different output).
    Arguments,
    /// Same call, but at a different position in the instruction stream.
    Fuel,
    /// Memory or mutable globals differ right after the call (verify mode).
    State,
    /// The log holds a recorded event the guest never asked for.
    ExtraEvent,
    /// The log cannot be decoded.
    BadEvent,
    /// This replica's copy of a mapped directory answered a filesystem
    /// call differently from the primary's.
    Disk,
}

/// A replica that diverged: both views of the first call that differed.
/// The replaying guest is stopped; it never skips or tolerates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    pub kind: DivergenceKind,
    /// The recorded call (from the log), when there is one.
    pub recorded: Option<CallView>,
    /// The call the replaying guest made.
    pub replayed: CallView,
    pub detail: String,
}

impl Divergence {
    /// Number of the first call that differs.
    pub fn call(&self) -> u64 {
        self.replayed.call
    }
}

impl std::fmt::Display for CallView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "call {} {}", self.call, self.func.name())?;
        if !self.args.is_empty() {
            write!(f, "({})", self.args)?;
        }
        write!(f, " digest {:08x}", self.digest)?;
        if let Some(fuel) = self.fuel {
            write!(f, " fuel {fuel}")?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "divergence ({:?}) at call {}: {}; replayed: {}", self.kind, self.call(), self.detail, self.replayed)?;
        match &self.recorded {
            Some(r) => write!(f, "; recorded: {r}"),
            None => write!(f, "; recorded: nothing"),
        }
    }
}

/// Why the guest stops inside a host call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    Exit(i32),
    Diverged(Box<Divergence>),
    /// The engine stopped the world (`Release::stop`).
    Stopped,
    /// Replay reached the end of the log at a call that needs an event.
    EndOfLog,
    /// The host itself failed (not the guest's doing).
    Host(String),
    /// A wait inside a host call was interrupted for a snapshot: the call
    /// is rolled back (`Gate::abort_call`) and the guest unwinds; it
    /// makes the call again once rewound.
    Snapshot,
}
