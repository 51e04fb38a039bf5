//! Runs a guest on the calling thread, in record or replay mode, and says how
//! it ended.

use wasmtime::{Engine, Linker, Module, ResourceLimiter, Store, Trap};

use crate::config::{engine_config, GuestConfig};
use crate::error::{Divergence, HypervisorError};
use crate::event::EventSource;
use crate::gate::{Gate, Stop};
use crate::instrument;
use crate::wasi::{self, Host};
use crate::world::LiveWorld;

/// How the gate starts.
pub enum Mode {
    /// Primary, or standalone recording: perform calls against this world.
    Record(LiveWorld),
    /// Backup, or standalone replay: take results from this source.
    Replay(Box<dyn EventSource>),
}

/// Options that do not change what the guest computes (not fingerprinted).
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Record mode: append a hash of memory and mutable globals to every
    /// event, so a replay checks its state after every call. Replay follows
    /// whatever the log holds.
    pub verify_memory: bool,
}

/// What kind of trap ended the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapKind {
    /// The fuel limit was reached.
    OutOfFuel,
    StackOverflow,
    MemoryOutOfBounds,
    /// `unreachable`, which is also what C's `abort()` compiles to (e.g.
    /// after `malloc` failed at the memory limit).
    Unreachable,
    Other,
}

/// How a guest run ended. Exits and traps are the guest's own doing and come
/// out identically on every replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// `proc_exit`, or `_start` returned (code 0).
    Exited(i32),
    Trapped {
        kind: TrapKind,
        message: String,
    },
    /// Replay found a call that differs from the log.
    Diverged(Box<Divergence>),
    /// The engine stopped the world (`Release::stop`).
    Stopped,
    /// Replay reached the end of the log (standalone replay of a log whose
    /// recording was interrupted).
    EndOfLog,
    /// The host failed (not deterministic, not the guest's doing).
    HostFailure(String),
}

/// The end of a run, with counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestEnd {
    pub ending: Ending,
    /// Host calls made (recorded or not).
    pub calls: u64,
    /// Events recorded or replayed.
    pub events: u64,
    /// Bytes of output (stdout, stderr, sends).
    pub output_bytes: u64,
    /// SHA-256 over every output in order.
    pub outputs_digest: [u8; 32],
    /// Hash of linear memory and mutable globals at the end.
    pub state_hash: [u8; 32],
    /// Fuel consumed, when fuel is enabled.
    pub fuel_consumed: Option<u64>,
    /// Times `memory.grow` failed at the memory limit.
    pub memory_limit_hits: u32,
    /// Replay that went live: the call number at which it did.
    pub went_live_at_call: Option<u64>,
}

/// The store's resource limiter: the same memory bound on every replica.
#[derive(Debug)]
pub(crate) struct Limits {
    memory_bytes_max: usize,
    hits: u32,
    /// The last `memory_growing` allowed the growth: a failure after it is
    /// the host's (the OS refused), not the limit's.
    approved: bool,
    host_failure: Option<String>,
}

impl Limits {
    fn new(memory_bytes_max: u64) -> Limits {
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

struct Loaded {
    engine: Engine,
    module: Module,
    globals: Vec<String>,
}

fn load(guest: &GuestConfig) -> Result<Loaded, HypervisorError> {
    let prepared = instrument::prepare(&guest.module)?;
    let engine = Engine::new(&engine_config(guest)).map_err(|e| HypervisorError::Engine(e.to_string()))?;
    let module = Module::new(&engine, &prepared.bytes).map_err(|e| HypervisorError::MalformedModule(format!("{e:?}")))?;
    let has = |name: &str, f: fn(&wasmtime::ExternType) -> bool| module.exports().any(|e| e.name() == name && f(&e.ty()));
    if !has("_start", |t| t.func().is_some()) {
        return Err(HypervisorError::NoStart);
    }
    if !has("memory", |t| t.memory().is_some()) {
        return Err(HypervisorError::NoMemory);
    }
    Ok(Loaded { engine, module, globals: prepared.globals })
}

/// Runs `guest` to its end on the calling thread.
///
/// Setup errors (malformed module, unsupported import, no `_start`) are
/// errors; everything after the guest started is a [`GuestEnd`]. In record
/// mode this returns once every output has left (so it waits for the engine
/// to release them, or to stop the world).
pub fn run(guest: &GuestConfig, mode: Mode, opts: RunOptions) -> Result<GuestEnd, HypervisorError> {
    let loaded = load(guest)?;
    let gate = match mode {
        Mode::Record(world) => Gate::record(world, opts.verify_memory),
        Mode::Replay(source) => Gate::replay(source, opts.verify_memory),
    };
    let fuel_start = guest.fuel.enabled.then(|| guest.fuel.limit.unwrap_or(u64::MAX));
    let host = Host::new(
        gate,
        guest.argv().map(String::from).collect(),
        guest.environ().collect(),
        Limits::new(guest.memory_bytes_max),
        fuel_start,
    );
    let mut store = Store::new(&loaded.engine, host);
    store.limiter(|h| &mut h.limits);
    if let Some(f) = fuel_start {
        store.set_fuel(f).map_err(|e| HypervisorError::Engine(e.to_string()))?;
    }
    let mut linker = Linker::new(&loaded.engine);
    wasi::link(&mut linker, &loaded.module).map_err(|e| HypervisorError::Engine(e.to_string()))?;
    let result = linker.instantiate(&mut store, &loaded.module).and_then(|instance| {
        let memory = instance.get_memory(&mut store, "memory").expect("checked at load");
        let globals = loaded.globals.iter().filter_map(|n| instance.get_global(&mut store, n)).collect();
        let h = store.data_mut();
        h.memory = Some(memory);
        h.globals = globals;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call(&mut store, ())
    });
    let stop = store.data_mut().stop.take();
    if store.data().memory.is_none() && stop.is_none() {
        if let Err(e) = &result {
            return Err(HypervisorError::Instantiate(format!("{e:?}")));
        }
    }
    let ending = classify(result, stop, store.data_mut().limits.host_failure.take());
    let state_hash = if store.data().memory.is_some() { wasi::state_hash(&mut store) } else { [0; 32] };
    let fuel_consumed = fuel_start.map(|s| s - store.get_fuel().unwrap_or(0));
    let h = store.data_mut();
    h.gate.finish();
    Ok(GuestEnd {
        ending,
        calls: h.gate.call,
        events: h.gate.events,
        output_bytes: h.gate.output_bytes,
        outputs_digest: h.gate.outputs_digest(),
        state_hash,
        fuel_consumed,
        memory_limit_hits: h.limits.hits,
        went_live_at_call: h.gate.went_live_at,
    })
}

fn classify(result: wasmtime::Result<()>, stop: Option<Stop>, host_failure: Option<String>) -> Ending {
    let err = match (result, stop) {
        (_, Some(Stop::Exit(code))) => return Ending::Exited(code),
        (_, Some(Stop::Diverged(d))) => return Ending::Diverged(d),
        (_, Some(Stop::Stopped)) => return Ending::Stopped,
        (_, Some(Stop::EndOfLog)) => return Ending::EndOfLog,
        (_, Some(Stop::Host(m))) => return Ending::HostFailure(m),
        (Ok(()), None) => return Ending::Exited(0),
        (Err(e), None) => e,
    };
    if let Some(m) = host_failure {
        return Ending::HostFailure(m);
    }
    match err.downcast_ref::<Trap>() {
        Some(t) => {
            let kind = match t {
                Trap::OutOfFuel => TrapKind::OutOfFuel,
                Trap::StackOverflow => TrapKind::StackOverflow,
                Trap::MemoryOutOfBounds => TrapKind::MemoryOutOfBounds,
                Trap::UnreachableCodeReached => TrapKind::Unreachable,
                _ => TrapKind::Other,
            };
            Ending::Trapped { kind, message: t.to_string() }
        }
        None => Ending::HostFailure(format!("{err:?}")),
    }
}
