//! The store's data: what every host function, the unwind machinery and
//! the runner share of a guest — the gate, the instance's memory and
//! globals, the resource limiter, the snapshot state, the mapped
//! directories. `wasi` (the preview1 functions), `unwind` (snapshots at a
//! host call) and `machine` (the run) all work on a [`Host`]; it names none
//! of them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use wasmtime::{Global, Instance, Memory, ResourceLimiter, Store, TypedFunc, Val};

use crate::asyncify::{START_REWIND, START_UNWIND, STOP_REWIND, STOP_UNWIND};
use crate::error::Stop;
use crate::fs::Fs;
use crate::gate::Gate;
use crate::record::Record;
use crate::snapshot::PortShared;
use crate::world::{SubKind, SubTarget};

/// The store's data: the gate and what host functions need of the instance.
pub(crate) struct Host {
    pub gate: Gate,
    pub memory: Option<Memory>,
    /// Mutable globals, exported by instrumentation, for state hashes.
    pub globals: Vec<Global>,
    pub argv: Vec<String>,
    pub environ: Vec<String>,
    pub limits: Limits,
    /// Fuel given to the store when fuel is enabled.
    pub fuel_start: Option<u64>,
    /// Why the guest was stopped inside a host call.
    pub stop: Option<Stop>,
    /// Snapshots: Asyncify's functions, the engine's port, the unwind state.
    pub snap: Snap,
    /// The mapped directories and the files opened in them.
    pub fs: Fs,
    /// Reused buffers of `wasi`: the bytes of a write (`io`), the parsed
    /// subscriptions of a `poll_oneoff` (`poll`).
    pub scratch: Vec<u8>,
    pub subs: Vec<(SubKind, SubTarget)>,
}

impl Host {
    pub(crate) fn new(gate: Gate, argv: Vec<String>, environ: Vec<String>, limits: Limits, fuel_start: Option<u64>) -> Host {
        Host {
            gate,
            memory: None,
            globals: Vec::new(),
            argv,
            environ,
            limits,
            fuel_start,
            stop: None,
            snap: Snap::default(),
            fs: Fs::default(),
            scratch: Vec::new(),
            subs: Vec::new(),
        }
    }

    /// Stops the guest: the reason is kept, wasmtime unwinds with an error.
    pub(crate) fn halt(&mut self, s: Stop) -> wasmtime::Error {
        self.stop = Some(s);
        wasmtime::Error::msg("guest halted by the gate")
    }
}

/// Hash of linear memory and mutable globals (verify mode).
pub(crate) fn state_hash(c: &mut impl wasmtime::AsContextMut<Data = Host>) -> [u8; 32] {
    let globals: Vec<Val> = c.as_context().data().globals.clone().iter().map(|g| g.get(&mut *c)).collect();
    let mem = c.as_context().data().memory.expect("memory is set");
    crate::state::hash(mem.data(&*c), &globals)
}

/// The store's resource limiter: the same memory bound on every replica.
#[derive(Debug)]
pub(crate) struct Limits {
    pub(crate) memory_bytes_max: usize,
    pub(crate) hits: u32,
    /// The last `memory_growing` allowed the growth: a failure after it is
    /// the host's (the OS refused), not the limit's.
    approved: bool,
    pub(crate) host_failure: Option<String>,
}

impl Limits {
    pub(crate) fn new(memory_bytes_max: u64) -> Limits {
        Limits {
            memory_bytes_max: usize::try_from(memory_bytes_max).unwrap_or(usize::MAX),
            hits: 0,
            approved: false,
            host_failure: None,
        }
    }
}

/// Tables may grow to this many elements.
const TABLE_ELEMENTS_MAX: usize = 1 << 20;

impl ResourceLimiter for Limits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.approved = false;
        if desired > self.memory_bytes_max {
            self.hits += 1;
            log::info!("guest memory.grow from {current} to {desired} bytes refused: limit {} bytes", self.memory_bytes_max);
            return Ok(false);
        }
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        self.approved = true;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        if self.approved {
            // The other replica may well have succeeded: stop rather than
            // let the guest see a failure the log cannot explain.
            self.host_failure = Some(format!("the host could not grow guest memory: {error}"));
            return Err(error);
        }
        Ok(())
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS_MAX && maximum.is_none_or(|m| desired <= m))
    }
}

/// The transformed module's Asyncify exports.
#[derive(Clone)]
pub(crate) struct Funcs {
    pub(crate) start_unwind: TypedFunc<i32, ()>,
    pub(crate) stop_unwind: TypedFunc<(), ()>,
    pub(crate) start_rewind: TypedFunc<i32, ()>,
    pub(crate) stop_rewind: TypedFunc<(), ()>,
}

impl Funcs {
    /// The exports, if the module was transformed.
    pub(crate) fn find(store: &mut Store<Host>, instance: &Instance) -> Option<Funcs> {
        Some(Funcs {
            start_unwind: instance.get_typed_func(&mut *store, START_UNWIND).ok()?,
            stop_unwind: instance.get_typed_func(&mut *store, STOP_UNWIND).ok()?,
            start_rewind: instance.get_typed_func(&mut *store, START_REWIND).ok()?,
            stop_rewind: instance.get_typed_func(&mut *store, STOP_REWIND).ok()?,
        })
    }
}

/// What lives between the unwind and the end of the rewind.
pub(crate) struct Pending {
    pub unwind_at: u32,
    pub unwind_orig: Vec<u8>,
    pub globals: Vec<Val>,
    pub fuel: Option<u64>,
    /// A restored guest checks its state against this once rewound.
    pub expect_hash: Option<[u8; 32]>,
    /// Seq of the snapshot point (for messages).
    pub seq: u64,
    /// When the unwind began (the pause's start, on a recording guest).
    pub since: Option<std::time::Instant>,
}

pub(crate) enum Phase {
    Running,
    /// The guest is unwinding to `_start` for a snapshot.
    Unwinding(Pending),
    /// The guest is rewinding into the import it left.
    Rewinding(Pending),
}

/// Standalone checkpoints (`record_file` with a checkpoint interval).
pub(crate) struct Checkpoints {
    /// Pause at the first unwind-capable call once this many events exist.
    pub next_at: u64,
    pub every: u64,
    /// Receives each checkpoint's records once the guest is rewound.
    pub sink: Box<dyn FnMut(Vec<Record>)>,
    /// The checkpoint being taken (its hash is filled in after the rewind).
    pub taking: Option<Vec<Record>>,
}

/// A guest's snapshot machinery (in the store's data).
pub(crate) struct Snap {
    pub funcs: Option<Funcs>,
    pub port: Option<Arc<PortShared>>,
    /// The module the guest runs (published to the port for the joiner).
    pub module: Option<Arc<[u8]>>,
    pub phase: Phase,
    pub checkpoints: Option<Checkpoints>,
}

impl Default for Snap {
    fn default() -> Self {
        Snap { funcs: None, port: None, module: None, phase: Phase::Running, checkpoints: None }
    }
}

impl Snap {
    pub(crate) fn unwinding(&self) -> bool {
        matches!(self.phase, Phase::Unwinding(_))
    }

    /// Whether the guest should unwind at this import.
    pub(crate) fn due(&self, events: u64) -> bool {
        if self.funcs.is_none() {
            return false;
        }
        let port = self.port.as_ref().is_some_and(|p| p.pause.load(Ordering::SeqCst));
        let checkpoint = self.checkpoints.as_ref().is_some_and(|c| events >= c.next_at);
        port || checkpoint
    }
}
