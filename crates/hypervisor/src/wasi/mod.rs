//! Our own `wasi_snapshot_preview1`: the virtual hardware of the guest.
//! Every function passes the gate (see `gate.rs`); this module only turns
//! guest memory into arguments and results into guest memory. What the
//! functions work on is the store's data (`host.rs`); the ABI's numbers
//! that lower modules share are in `abi.rs`.
//!
//! # Layout
//!
//! - `basic`: args, environ, clocks, random, fd bookkeeping, exit.
//! - `io`: stdio and socket reads and writes, accept, shutdown.
//! - `poll`: `poll_oneoff`.

mod basic;
mod fs;
mod io;
mod poll;

use wasmtime::{Caller, Linker, Module, Val};

use crate::abi::{errno, MODULE};
use crate::error::Stop;
use crate::event::Func;
use crate::host::{state_hash, Host};

type Cx<'a> = Caller<'a, Host>;
type Ret = wasmtime::Result<i32>;

/// Guest memory and host data together.
fn split<'a>(c: &'a mut Cx<'_>) -> (&'a mut [u8], &'a mut Host) {
    let mem = match c.data().memory {
        Some(m) => m,
        None => {
            // A start function runs before `run` stored the memory; its
            // presence was checked before instantiation.
            let m = c.get_export("memory").and_then(|e| e.into_memory()).expect("the module exports its memory");
            c.data_mut().memory = Some(m);
            m
        }
    };
    mem.data_and_store_mut(c)
}

fn fuel_used(c: &Cx<'_>) -> Option<u64> {
    c.data().fuel_start.map(|start| start - c.get_fuel().unwrap_or(0))
}

/// Runs an unwind-capable import (`asyncify::UNWIND_IMPORTS`): a snapshot
/// may unwind the guest at its entry, or interrupt its wait (the call is
/// then rolled back and made again once the guest is rewound).
fn unwindable(c: &mut Cx<'_>, f: impl FnOnce(&mut Cx<'_>) -> Ret) -> Ret {
    if crate::unwind::at_import(c)? {
        return Ok(0);
    }
    match f(c) {
        Err(_) if matches!(c.data().stop, Some(Stop::Snapshot)) => {
            c.data_mut().stop = None;
            crate::unwind::interrupted(c)
        }
        r => r,
    }
}

/// A pure call: counts, checks in replay that no event is due, returns `e`.
fn pure(c: &mut Cx<'_>, func: Func, args: &[u64], e: u16) -> Ret {
    let h = c.data_mut();
    match h.gate.pure(func, args) {
        Ok(()) => Ok(i32::from(e)),
        Err(s) => Err(h.halt(s)),
    }
}

/// Starts a recorded call; returns whether it is live.
fn begin(c: &mut Cx<'_>, func: Func, digest: u32, args: &[u64]) -> wasmtime::Result<bool> {
    let fuel = fuel_used(c);
    let h = c.data_mut();
    h.gate.begin(func, digest, args, fuel).map_err(|s| h.halt(s))
}

/// Finishes a recorded call; returns `e` to the guest.
fn commit(c: &mut Cx<'_>, e: u16) -> Ret {
    let state = if c.data().gate.wants_state() {
        let s = state_hash(c);
        Some(u64::from_le_bytes(s[..8].try_into().expect("8 bytes")))
    } else {
        None
    };
    let h = c.data_mut();
    match h.gate.commit(state) {
        Ok(()) => Ok(i32::from(e)),
        Err(s) => Err(h.halt(s)),
    }
}

/// crc32c over arguments, as recorded in each event.
#[derive(Clone, Copy)]
struct Dig(u32);

impl Dig {
    fn new(func: Func) -> Dig {
        Dig(crc32c::crc32c(&[func as u8]))
    }
    fn u64(self, v: u64) -> Dig {
        Dig(crc32c::crc32c_append(self.0, &v.to_le_bytes()))
    }
    fn bytes(self, b: &[u8]) -> Dig {
        Dig(crc32c::crc32c_append(self.0, b))
    }
}

fn range(mem: &[u8], ptr: i32, len: u64) -> Result<std::ops::Range<usize>, u16> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(usize::try_from(len).map_err(|_| errno::FAULT)?).ok_or(errno::FAULT)?;
    if end > mem.len() {
        return Err(errno::FAULT);
    }
    Ok(start..end)
}

fn write_bytes(mem: &mut [u8], ptr: i32, b: &[u8]) -> Result<(), u16> {
    let r = range(mem, ptr, b.len() as u64)?;
    mem[r].copy_from_slice(b);
    Ok(())
}

fn write_u32(mem: &mut [u8], ptr: i32, v: u32) -> Result<(), u16> {
    write_bytes(mem, ptr, &v.to_le_bytes())
}

fn write_u64(mem: &mut [u8], ptr: i32, v: u64) -> Result<(), u16> {
    write_bytes(mem, ptr, &v.to_le_bytes())
}

/// The `(ptr, len)` pairs of an iovec array, bounds-checked.
fn iovecs(mem: &[u8], iovs: i32, n: i32) -> Result<Vec<(i32, u32)>, u16> {
    let r = range(mem, iovs, u64::from(n as u32) * 8)?;
    let mut v = Vec::with_capacity(n as u32 as usize);
    for chunk in mem[r].chunks_exact(8) {
        let ptr = u32::from_le_bytes(chunk[..4].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(chunk[4..].try_into().expect("4 bytes"));
        range(mem, ptr as i32, u64::from(len))?;
        v.push((ptr as i32, len));
    }
    Ok(v)
}

/// Links every known preview1 function, and an `ENOSYS` stub for each other
/// preview1 import of `module`. Imports outside preview1 were refused when
/// the module was prepared.
pub(crate) fn link(linker: &mut Linker<Host>, module: &Module) -> wasmtime::Result<()> {
    basic::link(linker)?;
    fs::link(linker)?;
    io::link(linker)?;
    poll::link(linker)?;
    for imp in module.imports() {
        if imp.module() != MODULE || Func::ALL.iter().any(|f| f.name() == imp.name()) {
            continue;
        }
        let Some(ty) = imp.ty().func().cloned() else { continue };
        let name = imp.name().to_string();
        linker.func_new(MODULE, imp.name(), ty, move |mut c, _params, results| {
            let h = c.data_mut();
            h.gate.note_unsupported(&name);
            if let Err(s) = h.gate.pure(Func::Unsupported, &[]) {
                return Err(h.halt(s));
            }
            if let Some(r) = results.first_mut() {
                *r = Val::I32(i32::from(errno::NOSYS));
            }
            Ok(())
        })?;
    }
    Ok(())
}
