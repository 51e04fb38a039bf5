//! The guest thread's side of a snapshot (see `snapshot.rs`): unwind the
//! guest's stack into its memory at a host call, hand over what the pause
//! must copy, rewind, and put back everything the unwind touched; and, in a
//! restored guest, rewind into the call the snapshot was taken at.
//!
//! The sequence on a recording guest, at an unwind-capable import:
//!
//! 1. [`at_import`] sees a pause is due: it reads the mutable globals and
//!    the fuel left, saves the unwind region's bytes, writes Asyncify's
//!    data header there and calls `asyncify_start_unwind`; the import
//!    returns at once and every function on the stack saves its locals
//!    and returns, up to `_start`;
//! 2. `machine::run` sees `_start` return while unwinding and calls
//!    [`capture`]: `asyncify_stop_unwind`, copy the pages the pause must
//!    copy, hand them over with the rest ([`crate::snapshot::Paused`]),
//!    `asyncify_start_rewind`, and call `_start` again;
//! 3. the guest rewinds into the same import, where [`at_import`] calls
//!    `asyncify_stop_rewind` and puts back the region's bytes, the globals
//!    and the fuel: nothing the guest can observe changed. The import then
//!    runs as if nothing happened.
//!
//! A restored guest starts at step 3 with what the snapshot carried, and
//! checks its state hash against the primary's there.
//!
//! What this works on — Asyncify's exports, the engine's port, the phase
//! (`Snap`, `Phase`, `Pending`) — is part of the store's data (`host.rs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use wasmtime::{AsContextMut, Caller, Store, Val};

use crate::error::{CallView, Divergence, DivergenceKind, Stop};
use crate::event::Func;
use crate::host::{state_hash, Host, Pending, Phase};
use crate::snapshot::{FinalState, Paused, PortShared, Record, PAGE_BYTES, UNWIND_REGION_BYTES};
use crate::state::global_bits;

/// Fuel lent to a guest for its unwind and rewind (returned exactly).
const UNWIND_FUEL: u64 = 1 << 40;

type Cx<'a> = Caller<'a, Host>;

fn memory_len(c: &mut impl AsContextMut<Data = Host>) -> usize {
    let m = c.as_context().data().memory.expect("memory is set");
    m.data_size(&*c)
}

/// Connects a recording guest to the engine's snapshot port: publishes
/// where its memory is, how far it may grow and which module it runs.
pub(crate) fn attach(c: &mut impl AsContextMut<Data = Host>, port: Arc<PortShared>) {
    let mem = c.as_context().data().memory.expect("memory is set");
    port.base.store(mem.data_ptr(&*c) as usize, Ordering::SeqCst);
    port.len.store(mem.data_size(&*c), Ordering::SeqCst);
    let max = c.as_context().data().limits.memory_bytes_max.min(1 << 32);
    port.reserve.store(max.div_ceil(PAGE_BYTES) * PAGE_BYTES, Ordering::SeqCst);
    *port.module.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = c.as_context().data().snap.module.clone();
    let mut cx = c.as_context_mut();
    let fs = &mut cx.data_mut().fs;
    if fs.roots > 0 {
        // The snapshot's thread walks the directories through its own
        // descriptors of them.
        let roots: Result<Vec<_>, u16> =
            (0..fs.roots as u64).filter_map(|i| fs.get(i)).map(|o| crate::fs::host::dup(o.raw())).collect();
        match roots {
            Ok(roots) => {
                let track = Arc::new(crate::fs::track::DiskTrack::new(roots));
                *port.disk.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(track.clone());
                fs.track = Some(track);
            }
            Err(e) => log::error!("cannot duplicate the mapped directories' descriptors (errno {e}): snapshots will fail"),
        }
    }
    c.as_context_mut().data_mut().snap.port = Some(port);
}

/// Publishes the memory's size for the pre-copy (the base never moves). A
/// replayed guest that went live takes the port of its new world here.
fn publish(c: &mut Cx<'_>) {
    if c.data().snap.port.is_none() && c.data().snap.funcs.is_some() && c.data().gate.is_live() {
        if let Some(p) = c.data_mut().gate.live().port.clone() {
            attach(c, p);
        }
    }
    if let Some(p) = &c.data().snap.port {
        let p = p.clone();
        let len = memory_len(c);
        p.len.store(len, Ordering::SeqCst);
    }
}

/// At the entry of an unwind-capable import: finishes a rewind that
/// brought the guest back here, or unwinds for a snapshot that is due.
/// Returns true when the import must return at once (it is unwinding).
pub(crate) fn at_import(c: &mut Cx<'_>) -> wasmtime::Result<bool> {
    if matches!(c.data().snap.phase, Phase::Rewinding(_)) {
        finish_rewind(c)?;
        return Ok(false);
    }
    publish(c);
    let events = c.data().gate.events;
    if !c.data().snap.due(events) || !c.data().gate.is_live() {
        return Ok(false);
    }
    begin_unwind(c)?;
    Ok(true)
}

/// A wait in the import was interrupted for a snapshot: roll the call back
/// and unwind.
pub(crate) fn interrupted(c: &mut Cx<'_>) -> wasmtime::Result<i32> {
    c.data_mut().gate.abort_call();
    begin_unwind(c)?;
    Ok(0)
}

fn begin_unwind(c: &mut Cx<'_>) -> wasmtime::Result<()> {
    let t0 = std::time::Instant::now();
    if let Some(p) = &c.data().snap.port {
        p.pause.store(false, Ordering::SeqCst);
    }
    let seq = c.data_mut().gate.last_seq();
    let handles = c.data().globals.clone();
    let globals: Vec<Val> = handles.iter().map(|g| g.get(&mut *c)).collect();
    let fuel = c.data().fuel_start.map(|_| c.get_fuel().unwrap_or(0));
    if let Some(f) = fuel {
        // Unwinding and rewinding execute guest code: never let them run out
        // of fuel (a trap here would end this replica's guest where no other
        // replica's ends). The exact amount is put back after the rewind.
        c.set_fuel(f.saturating_add(UNWIND_FUEL))?;
    }
    let len = memory_len(c);
    let size = UNWIND_REGION_BYTES.min(len) & !15;
    assert!(size >= 64, "linear memory too small to unwind into");
    let at = len - size;
    let mem = c.data().memory.expect("memory is set");
    let data = mem.data_mut(&mut *c);
    let unwind_orig = data[at..].to_vec();
    // Asyncify's data header: where the saved stack goes, and its end.
    data[at..at + 4].copy_from_slice(&((at + 8) as u32).to_le_bytes());
    data[at + 4..at + 8].copy_from_slice(&(len as u32).to_le_bytes());
    let funcs = c.data().snap.funcs.clone().expect("only a transformed guest unwinds");
    c.data_mut().snap.phase =
        Phase::Unwinding(Pending { unwind_at: at as u32, unwind_orig, globals, fuel, expect_hash: None, seq, since: Some(t0) });
    funcs.start_unwind.call(&mut *c, at as i32)
}

/// `_start` returned while unwinding: hand over the capture, then start the
/// rewind (the caller calls `_start` again).
pub(crate) fn capture(store: &mut Store<Host>) -> wasmtime::Result<()> {
    let funcs = store.data().snap.funcs.clone().expect("only a transformed guest unwinds");
    funcs.stop_unwind.call(&mut *store, ())?;
    let Phase::Unwinding(pending) = std::mem::replace(&mut store.data_mut().snap.phase, Phase::Running) else {
        unreachable!("capture follows an unwind")
    };
    let len = memory_len(store);
    let fin = FinalState {
        seq: pending.seq,
        memory_pages: (len / PAGE_BYTES) as u32,
        globals: pending.globals.iter().map(global_bits).collect(),
        unwind_at: pending.unwind_at,
        unwind_orig: pending.unwind_orig.clone(),
        gate: store.data().gate.encode_state(),
        fuel_remaining: pending.fuel,
        limit_hits: store.data().limits.hits,
        state_hash: [0; 32],
    };
    let mem = store.data().memory.expect("memory is set");
    let events = store.data().gate.events;
    let checkpoint = store.data().snap.checkpoints.as_ref().is_some_and(|cp| events >= cp.next_at);
    let fs = &store.data().fs;
    let disk = if fs.roots == 0 {
        Ok(Vec::new())
    } else if checkpoint {
        // Everything, as for the memory.
        crate::fs::copy::capture(fs, &mut Default::default(), Default::default())
    } else {
        match store
            .data()
            .snap
            .port
            .as_ref()
            .and_then(|p| p.disk.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
        {
            Some(t) => {
                let changed = t.take_changed();
                let mut state = t.lock();
                crate::fs::copy::capture(fs, &mut state, changed)
            }
            None => Err("the mapped directories are not tracked".into()),
        }
    };
    if checkpoint {
        // A standalone checkpoint: everything, stop-the-world; its hash is
        // taken once the guest is rewound (`finish_rewind`).
        const RECORD_PAGES: usize = 256;
        let mut records: Vec<Record> = mem
            .data(&*store)
            .chunks(RECORD_PAGES * PAGE_BYTES)
            .enumerate()
            .map(|(i, chunk)| Record::Pages { first: (i * RECORD_PAGES) as u32, data: chunk.to_vec() })
            .collect();
        match disk {
            Ok(d) => records.extend(d),
            Err(e) => return Err(wasmtime::Error::msg(format!("a checkpoint of the mapped directories: {e}"))),
        }
        records.push(Record::Final(Box::new(fin)));
        let cp = store.data_mut().snap.checkpoints.as_mut().expect("checked");
        cp.taking = Some(records);
        cp.next_at = events.saturating_add(cp.every);
    } else if let Some(port) = store.data().snap.port.clone() {
        let pages = pause_pages(&port, mem.data(&*store), &pending);
        let tx = port.delivery.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(tx) = tx {
            // No receiver any more (the snapshot was abandoned): go on.
            let _ = tx.send(Paused { pages, disk, fin });
        }
    }
    let at = pending.unwind_at as i32;
    store.data_mut().snap.phase = Phase::Rewinding(pending);
    funcs.start_rewind.call(&mut *store, at)
}

/// What the pause copies: pages written since the pre-copy last looked,
/// memory above what it covered, and the unwind region (which now holds
/// the saved stack); everything if there was no pre-copy.
fn pause_pages(port: &PortShared, data: &[u8], pending: &Pending) -> Vec<(u32, Vec<u8>)> {
    let len = data.len();
    let covered = port.covered.load(Ordering::SeqCst).min(len);
    let tracker = port.tracker.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    match tracker {
        Some(t) if covered > 0 => {
            let mut written = Vec::new();
            if t.take_written(covered, &mut written).is_ok() {
                ranges.extend(written);
                ranges.push((covered, len));
            } else {
                ranges.push((0, len));
            }
        }
        _ => ranges.push((0, len)),
    }
    ranges.push((pending.unwind_at as usize, len));
    ranges.sort_unstable();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (s, e) in ranges {
        let (s, e) = (s / PAGE_BYTES * PAGE_BYTES, (e.div_ceil(PAGE_BYTES) * PAGE_BYTES).min(len));
        if s >= e {
            continue;
        }
        match runs.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => runs.push((s, e)),
        }
    }
    runs.into_iter().map(|(s, e)| ((s / PAGE_BYTES) as u32, data[s..e].to_vec())).collect()
}

/// The guest is back in the import it unwound from: stop rewinding and put
/// back what the unwind touched.
fn finish_rewind(c: &mut Cx<'_>) -> wasmtime::Result<()> {
    let funcs = c.data().snap.funcs.clone().expect("only a transformed guest rewinds");
    funcs.stop_rewind.call(&mut *c, ())?;
    let Phase::Rewinding(p) = std::mem::replace(&mut c.data_mut().snap.phase, Phase::Running) else {
        unreachable!("checked by the caller")
    };
    let mem = c.data().memory.expect("memory is set");
    let at = p.unwind_at as usize;
    mem.data_mut(&mut *c)[at..at + p.unwind_orig.len()].copy_from_slice(&p.unwind_orig);
    let globals = c.data().globals.clone();
    for (g, v) in globals.iter().zip(&p.globals) {
        g.set(&mut *c, *v)?;
    }
    if let Some(f) = p.fuel {
        c.set_fuel(f)?;
    }
    if let (Some(t0), Some(port)) = (p.since, &c.data().snap.port) {
        let paused = t0.elapsed();
        port.last_pause_ns.store(paused.as_nanos() as u64, Ordering::SeqCst);
        log::info!("snapshot of the guest at seq {}: paused {paused:.2?} (unwind, copy of the rest, rewind)", p.seq);
    }
    if let Some(want) = p.expect_hash {
        let got = state_hash(c);
        if got != want {
            let detail = format!(
                "the restored guest's memory and globals differ from the primary's at seq {}: {} vs {}",
                p.seq,
                crate::config::hex(&got[..8]),
                crate::config::hex(&want[..8])
            );
            let replayed =
                CallView { call: c.data().gate.call, func: Func::SnapshotMarker, digest: 0, fuel: None, args: String::new() };
            let d = Divergence { kind: DivergenceKind::State, recorded: None, replayed, detail };
            return Err(c.data_mut().halt(Stop::Diverged(Box::new(d))));
        }
        log::info!("restored guest verified at seq {}: memory and globals match the primary's", p.seq);
    }
    if let Some(records) = c.data_mut().snap.checkpoints.as_mut().and_then(|cp| cp.taking.take()) {
        // The checkpoint's state hash is the state now, rewound and restored.
        let hash = state_hash(c);
        let mut records = records;
        if let Some(Record::Final(f)) = records.last_mut() {
            f.state_hash = hash;
        }
        let cp = c.data_mut().snap.checkpoints.as_mut().expect("checked");
        (cp.sink)(records);
    }
    Ok(())
}
