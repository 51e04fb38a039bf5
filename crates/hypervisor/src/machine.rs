//! Runs a guest on the calling thread, in record or replay mode, and says how
//! it ended.

use wasmtime::{Engine, Linker, Module, Store, Trap};

use crate::config::{engine_config, GuestConfig};
use crate::error::{Divergence, HypervisorError, Stop};
use crate::gate::Gate;
use crate::host::{self, Checkpoints, Funcs, Host, Limits, Pending, Phase};
use crate::instrument;
use crate::snapshot::{Record, PAGE_BYTES};
use crate::source::EventSource;
use crate::state::bits_global;
use crate::unwind;
use crate::wasi;
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

/// Where a restored guest's snapshot comes from: records in order, up to
/// and including the final one (`None`: the stream ended early).
pub type RecordSource<'a> = &'a mut dyn FnMut() -> Result<Option<Record>, String>;

/// Standalone checkpoints while recording: after every `every` events, at
/// the next unwind-capable call, the guest is snapshotted (stop-the-world)
/// and `sink` gets the records.
pub struct CheckpointSink {
    pub every: u64,
    pub sink: Box<dyn FnMut(Vec<Record>)>,
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

#[derive(Clone)]
struct Loaded {
    engine: Engine,
    module: Module,
    globals: Vec<String>,
}

/// Compiled modules kept for the next run of the same module with the
/// same engine settings (a joiner compiles its own copy of the module it
/// will be sent before it joins: `precompile`).
static COMPILED: std::sync::Mutex<Vec<(CompiledKey, Loaded)>> = std::sync::Mutex::new(Vec::new());
const COMPILED_KEPT: usize = 4;

/// What a compilation depends on: the module and the engine settings
/// `engine_config` reads from the guest.
type CompiledKey = ([u8; 32], bool, usize);

fn compiled_key(guest: &GuestConfig) -> CompiledKey {
    (crate::config::module_digest(&guest.module), guest.fuel.enabled, guest.stack_bytes_max)
}

/// Compiles `guest`'s module now and keeps it, so that a run of the same
/// module (a snapshot the primary sends of it, typically) starts at once.
pub fn precompile(guest: &GuestConfig) -> Result<(), HypervisorError> {
    load(guest).map(|_| ())
}

fn load(guest: &GuestConfig) -> Result<Loaded, HypervisorError> {
    let key = compiled_key(guest);
    let mut kept = COMPILED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, l)) = kept.iter().find(|(k, _)| *k == key) {
        return Ok(l.clone());
    }
    drop(kept);
    let loaded = compile(guest)?;
    kept = COMPILED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if !kept.iter().any(|(k, _)| *k == key) {
        if kept.len() >= COMPILED_KEPT {
            kept.remove(0);
        }
        kept.push((key, loaded.clone()));
    }
    Ok(loaded)
}

fn compile(guest: &GuestConfig) -> Result<Loaded, HypervisorError> {
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
    run_inner(guest, mode, opts, None, None)
}

/// Like [`run`] in record mode, with standalone checkpoints (the guest's
/// module must be Asyncify-transformed: `asyncify::transform`).
pub fn run_with_checkpoints(
    guest: &GuestConfig,
    world: LiveWorld,
    opts: RunOptions,
    checkpoints: CheckpointSink,
) -> Result<GuestEnd, HypervisorError> {
    run_inner(guest, Mode::Record(world), opts, None, Some(checkpoints))
}

/// Resumes a guest from a snapshot (`snapshot.rs`) and replays `source`,
/// the events after the snapshot's seq. `guest.module` must be the module
/// the snapshot was taken of (its first record carries it). The restored
/// state is checked against the primary's hash once the guest is rewound:
/// a difference ends the run as a divergence.
pub fn run_restored(
    guest: &GuestConfig,
    records: RecordSource<'_>,
    source: Box<dyn EventSource>,
    opts: RunOptions,
) -> Result<GuestEnd, HypervisorError> {
    run_inner(guest, Mode::Replay(source), opts, Some(Resume::Snapshot(records)), None)
}

/// Starts `guest` from its beginning to replay `source`, once its mapped
/// directories are restored from `records` (file and tree records, as a
/// snapshot carries them): a backup that joined before the primary
/// started its guest.
pub fn run_fresh(
    guest: &GuestConfig,
    records: RecordSource<'_>,
    source: Box<dyn EventSource>,
    opts: RunOptions,
) -> Result<GuestEnd, HypervisorError> {
    run_inner(guest, Mode::Replay(source), opts, Some(Resume::Dirs(records)), None)
}

/// The mapped directories of `guest`, whose guest has not started, as
/// snapshot records (what [`run_fresh`] takes). None mapped: no records.
pub fn snapshot_dirs(guest: &GuestConfig) -> Result<Vec<Record>, HypervisorError> {
    if guest.map_dirs.is_empty() {
        return Ok(Vec::new());
    }
    let fs = crate::fs::Fs::open(&guest.map_dirs, guest.disk_bytes_max).map_err(HypervisorError::MapDir)?;
    crate::fs::copy::capture(&fs, &mut Default::default(), Default::default()).map_err(HypervisorError::MapDir)
}

/// Where a run that does not start afresh starts from.
enum Resume<'a> {
    /// A live snapshot: memory, stack, globals, files.
    Snapshot(RecordSource<'a>),
    /// Only the mapped directories; the guest starts from its beginning.
    Dirs(RecordSource<'a>),
}

fn run_inner(
    guest: &GuestConfig,
    mode: Mode,
    opts: RunOptions,
    resume: Option<Resume<'_>>,
    checkpoints: Option<CheckpointSink>,
) -> Result<GuestEnd, HypervisorError> {
    let loaded = load(guest)?;
    let (gate, port) = match mode {
        Mode::Record(world) => {
            let port = world.snapshots.clone();
            (Gate::record(world, opts.verify_memory), port)
        }
        Mode::Replay(source) => (Gate::replay(source, opts.verify_memory), None),
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
    {
        let h = store.data_mut();
        h.gate.fds = crate::fdtable::FdTable::new(guest.listener, guest.map_dirs.len());
        h.fs = crate::fs::Fs::open(&guest.map_dirs, guest.disk_bytes_max).map_err(HypervisorError::MapDir)?;
    }
    let restore = match resume {
        Some(Resume::Dirs(records)) => {
            restore_dirs(&mut store.data_mut().fs, records).map_err(HypervisorError::BadSnapshot)?;
            None
        }
        Some(Resume::Snapshot(records)) => Some(records),
        None => None,
    };
    store.limiter(|h| &mut h.limits);
    if let Some(f) = fuel_start {
        store.set_fuel(f).map_err(|e| HypervisorError::Engine(e.to_string()))?;
    }
    let mut linker = Linker::new(&loaded.engine);
    wasi::link(&mut linker, &loaded.module).map_err(|e| HypervisorError::Engine(e.to_string()))?;
    let instance = match linker.instantiate(&mut store, &loaded.module) {
        Ok(i) => i,
        Err(e) => {
            if store.data().memory.is_none() && store.data().stop.is_none() {
                return Err(HypervisorError::Instantiate(format!("{e:?}")));
            }
            return Ok(finish(&mut store, Err(e), fuel_start));
        }
    };
    let memory = instance.get_memory(&mut store, "memory").expect("checked at load");
    let globals = loaded.globals.iter().filter_map(|n| instance.get_global(&mut store, n)).collect();
    let funcs = Funcs::find(&mut store, &instance);
    {
        let h = store.data_mut();
        h.memory = Some(memory);
        h.globals = globals;
        h.snap.funcs = funcs;
    }
    if store.data().snap.funcs.is_some() {
        store.data_mut().snap.module = Some(guest.module.clone());
        if let Some(p) = port {
            unwind::attach(&mut store, p.0);
        }
        if let Some(cp) = checkpoints {
            store.data_mut().snap.checkpoints =
                Some(Checkpoints { next_at: cp.every.max(1), every: cp.every.max(1), sink: cp.sink, taking: None });
        }
    } else {
        if store.data().gate.is_live() {
            store.data_mut().gate.live().port = None;
        }
        if checkpoints.is_some() {
            return Err(HypervisorError::NotSnapshottable(
                "checkpoints need the Asyncify-transformed module (asyncify::transform)".into(),
            ));
        }
    }
    if let Some(records) = restore {
        if let Err(e) = restore_state(&mut store, memory, records, guest) {
            return Err(HypervisorError::BadSnapshot(e));
        }
    }
    let result = instance.get_typed_func::<(), ()>(&mut store, "_start").and_then(|start| {
        let mut r = start.call(&mut store, ());
        while r.is_ok() && store.data().snap.unwinding() {
            r = unwind::capture(&mut store).and_then(|_| start.call(&mut store, ()));
        }
        r
    });
    Ok(finish(&mut store, result, fuel_start))
}

fn finish(store: &mut Store<Host>, result: wasmtime::Result<()>, fuel_start: Option<u64>) -> GuestEnd {
    let stop = store.data_mut().stop.take();
    let ending = classify(result, stop, store.data_mut().limits.host_failure.take());
    let state_hash = if store.data().memory.is_some() { host::state_hash(store) } else { [0; 32] };
    let fuel_consumed = fuel_start.map(|s| s - store.get_fuel().unwrap_or(0));
    let h = store.data_mut();
    h.gate.finish();
    GuestEnd {
        ending,
        calls: h.gate.call,
        events: h.gate.events,
        output_bytes: h.gate.output_bytes,
        outputs_digest: h.gate.outputs_digest(),
        state_hash,
        fuel_consumed,
        memory_limit_hits: h.limits.hits,
        went_live_at_call: h.gate.went_live_at,
    }
}

/// A file or tree record of a snapshot, into the restore in progress.
fn apply_disk(disk: &mut Option<crate::fs::restore::Restore>, fs: &mut crate::fs::Fs, r: Record) -> Result<(), String> {
    let no_disk = || "file records in the snapshot of a guest without mapped directories".to_string();
    match r {
        Record::File { key, size } => disk.as_mut().ok_or_else(no_disk)?.file(key, size),
        Record::FileData { key, offset, data } => disk.as_mut().ok_or_else(no_disk)?.data(key, offset, &data),
        Record::Tree(t) => disk.take().ok_or("a second tree, or one for a guest without mapped directories")?.finish(fs, &t),
        _ => Err("not a file record".into()),
    }
}

/// The mapped directories of a guest that starts afresh, from `records`
/// (up to the end of the stream).
fn restore_dirs(fs: &mut crate::fs::Fs, records: RecordSource<'_>) -> Result<(), String> {
    let mut disk = if fs.roots > 0 { Some(crate::fs::restore::Restore::begin(fs)?) } else { None };
    while let Some(r) = records()? {
        match r {
            Record::File { .. } | Record::FileData { .. } | Record::Tree(_) => apply_disk(&mut disk, fs, r)?,
            _ => return Err("a running guest's snapshot record where only the directories were expected".into()),
        }
    }
    if disk.is_some() {
        return Err("the directories' snapshot has no tree".into());
    }
    Ok(())
}

/// Loads a snapshot into a freshly instantiated guest and starts the
/// rewind into the call it was taken at.
fn restore_state(
    store: &mut Store<Host>,
    memory: wasmtime::Memory,
    records: RecordSource<'_>,
    guest: &GuestConfig,
) -> Result<(), String> {
    let funcs = store.data().snap.funcs.clone().ok_or("the module is not Asyncify-transformed: it cannot resume a snapshot")?;
    let grow_to = |store: &mut Store<Host>, pages: usize| -> Result<(), String> {
        let have = memory.data_size(&*store) / PAGE_BYTES;
        if pages > have {
            memory.grow(&mut *store, (pages - have) as u64).map_err(|e| format!("growing memory to {pages} pages: {e}"))?;
        }
        Ok(())
    };
    // The mapped directories are emptied before the first file arrives.
    let mut disk = if store.data().fs.roots > 0 { Some(crate::fs::restore::Restore::begin(&store.data().fs)?) } else { None };
    let fin = loop {
        match records()? {
            None => return Err("the snapshot ended before its final record".into()),
            Some(r @ (Record::File { .. } | Record::FileData { .. } | Record::Tree(_))) => {
                apply_disk(&mut disk, &mut store.data_mut().fs, r)?
            }
            Some(Record::Module(m)) => {
                if m[..] != guest.module[..] {
                    return Err("the snapshot is of another module than the one given".into());
                }
            }
            Some(Record::Pages { first, data }) => {
                let first = first as usize;
                grow_to(store, first + data.len() / PAGE_BYTES)?;
                memory.data_mut(&mut *store)[first * PAGE_BYTES..first * PAGE_BYTES + data.len()].copy_from_slice(&data);
            }
            Some(Record::Final(f)) => break f,
        }
    };
    if disk.is_some() {
        return Err("the snapshot has no tree of the mapped directories".into());
    }
    let pages = fin.memory_pages as usize;
    if memory.data_size(&*store) / PAGE_BYTES > pages {
        return Err(format!("the snapshot's memory ({pages} pages) is smaller than the module's initial memory"));
    }
    grow_to(store, pages)?;
    let handles = store.data().globals.clone();
    if handles.len() != fin.globals.len() {
        return Err(format!("the snapshot has {} mutable globals, the module {}", fin.globals.len(), handles.len()));
    }
    let mut values = Vec::with_capacity(handles.len());
    for (g, (tag, bits)) in handles.iter().zip(&fin.globals) {
        let v = bits_global(*tag, *bits).ok_or_else(|| format!("a global of kind {tag} cannot be restored"))?;
        g.set(&mut *store, v).map_err(|e| format!("restoring a global: {e}"))?;
        values.push(v);
    }
    store.data_mut().gate.restore_state(&fin.gate)?;
    if let Some(f) = fin.fuel_remaining {
        store.set_fuel(f).map_err(|e| format!("restoring fuel: {e}"))?;
    }
    store.data_mut().limits.hits = fin.limit_hits;
    let region = fin.unwind_at as usize..fin.unwind_at as usize + fin.unwind_orig.len();
    if region.end > pages * PAGE_BYTES {
        return Err("the unwind region lies outside memory".into());
    }
    store.data_mut().snap.phase = Phase::Rewinding(Pending {
        unwind_at: fin.unwind_at,
        unwind_orig: fin.unwind_orig,
        globals: values,
        fuel: fin.fuel_remaining,
        expect_hash: Some(fin.state_hash),
        seq: fin.seq,
        since: None,
    });
    log::info!("restoring a guest snapshot taken at seq {}: {} pages of memory", fin.seq, pages);
    funcs.start_rewind.call(&mut *store, fin.unwind_at as i32).map_err(|e| format!("starting the rewind: {e}"))
}

fn classify(result: wasmtime::Result<()>, stop: Option<Stop>, host_failure: Option<String>) -> Ending {
    let err = match (result, stop) {
        (_, Some(Stop::Exit(code))) => return Ending::Exited(code),
        (_, Some(Stop::Diverged(d))) => return Ending::Diverged(d),
        (_, Some(Stop::Stopped)) => return Ending::Stopped,
        (_, Some(Stop::EndOfLog)) => return Ending::EndOfLog,
        (_, Some(Stop::Host(m))) => return Ending::HostFailure(m),
        (_, Some(Stop::Snapshot)) => return Ending::HostFailure("a snapshot's stop escaped its import".into()),
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
