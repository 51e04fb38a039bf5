//! args, environ, clocks, random, fd bookkeeping, sched_yield, proc_exit.

use wasmtime::Linker;

use super::{begin, commit, errno, pure, range, split, write_bytes, write_u32, write_u64, Cx, Dig, Host, Ret, MODULE};
use crate::error::Stop;
use crate::event::Func;
use crate::fdtable::{Fd, FdKind};
use crate::world::clock_now;

const FILETYPE_UNKNOWN: u8 = 0;
const FILETYPE_DIRECTORY: u8 = 3;
const FILETYPE_REGULAR_FILE: u8 = 4;
const FILETYPE_SOCKET_STREAM: u8 = 6;
use super::fs::{FDFLAGS_APPEND, FDFLAGS_NONBLOCK};

pub(super) fn link(l: &mut Linker<Host>) -> wasmtime::Result<()> {
    l.func_wrap(MODULE, "args_sizes_get", |mut c: Cx<'_>, argc: i32, size: i32| sizes(&mut c, Func::ArgsSizesGet, argc, size))?;
    l.func_wrap(MODULE, "args_get", |mut c: Cx<'_>, ptrs: i32, buf: i32| strings(&mut c, Func::ArgsGet, ptrs, buf))?;
    l.func_wrap(MODULE, "environ_sizes_get", |mut c: Cx<'_>, n: i32, size: i32| sizes(&mut c, Func::EnvironSizesGet, n, size))?;
    l.func_wrap(MODULE, "environ_get", |mut c: Cx<'_>, ptrs: i32, buf: i32| strings(&mut c, Func::EnvironGet, ptrs, buf))?;
    l.func_wrap(MODULE, "clock_time_get", clock_time_get)?;
    l.func_wrap(MODULE, "clock_res_get", clock_res_get)?;
    l.func_wrap(MODULE, "random_get", random_get)?;
    l.func_wrap(MODULE, "fd_close", fd_close)?;
    l.func_wrap(MODULE, "fd_seek", |mut c: Cx<'_>, fd: i32, off: i64, whence: i32, out: i32| {
        super::fs::seek(&mut c, Func::FdSeek, fd, off, whence, out)
    })?;
    l.func_wrap(MODULE, "fd_fdstat_get", fd_fdstat_get)?;
    l.func_wrap(MODULE, "fd_fdstat_set_flags", fd_fdstat_set_flags)?;
    l.func_wrap(MODULE, "sched_yield", |mut c: Cx<'_>| pure(&mut c, Func::SchedYield, &[], 0))?;
    l.func_wrap(MODULE, "proc_exit", proc_exit)?;
    Ok(())
}

fn list(h: &Host, func: Func) -> &[String] {
    if matches!(func, Func::ArgsGet | Func::ArgsSizesGet) {
        &h.argv
    } else {
        &h.environ
    }
}

fn sizes(c: &mut Cx<'_>, func: Func, count_ptr: i32, size_ptr: i32) -> Ret {
    let (mem, h) = split(c);
    let l = list(h, func);
    let size: usize = l.iter().map(|s| s.len() + 1).sum();
    let e = write_u32(mem, count_ptr, l.len() as u32).and_then(|_| write_u32(mem, size_ptr, size as u32)).err().unwrap_or(0);
    pure(c, func, &[count_ptr as u64, size_ptr as u64], e)
}

fn strings(c: &mut Cx<'_>, func: Func, ptrs: i32, buf: i32) -> Ret {
    let (mem, h) = split(c);
    let mut at = buf as u32;
    let mut e = 0;
    for (i, s) in list(h, func).iter().enumerate() {
        let r = write_u32(mem, ptrs.wrapping_add(4 * i as i32), at)
            .and_then(|_| write_bytes(mem, at as i32, s.as_bytes()))
            .and_then(|_| write_bytes(mem, (at + s.len() as u32) as i32, &[0]));
        if let Err(x) = r {
            e = x;
            break;
        }
        at += s.len() as u32 + 1;
    }
    pure(c, func, &[ptrs as u64, buf as u64], e)
}

fn clock_time_get(mut c: Cx<'_>, id: i32, precision: i64, ptr: i32) -> Ret {
    let args = [id as u32 as u64, precision as u64, ptr as u32 as u64];
    let d = Dig::new(Func::ClockTimeGet).u64(args[0]).u64(args[1]).u64(args[2]);
    if begin(&mut c, Func::ClockTimeGet, d.0, &args)? {
        let out = &mut c.data_mut().gate.out;
        match clock_now(id as u32) {
            Ok(t) => out.scalar = t,
            Err(e) => out.errno = e,
        }
    }
    let (mem, h) = split(&mut c);
    let out = &h.gate.out;
    let e = if out.errno == 0 { write_u64(mem, ptr, out.scalar).err().unwrap_or(0) } else { out.errno };
    commit(&mut c, e)
}

fn clock_res_get(mut c: Cx<'_>, id: i32, ptr: i32) -> Ret {
    let args = [id as u32 as u64, ptr as u32 as u64];
    let d = Dig::new(Func::ClockResGet).u64(args[0]).u64(args[1]);
    if begin(&mut c, Func::ClockResGet, d.0, &args)? {
        let out = &mut c.data_mut().gate.out;
        match clock_res(id as u32) {
            Ok(t) => out.scalar = t,
            Err(e) => out.errno = e,
        }
    }
    let (mem, h) = split(&mut c);
    let out = &h.gate.out;
    let e = if out.errno == 0 { write_u64(mem, ptr, out.scalar).err().unwrap_or(0) } else { out.errno };
    commit(&mut c, e)
}

fn clock_res(id: u32) -> Result<u64, u16> {
    let c = match id {
        0 => libc::CLOCK_REALTIME,
        1 => libc::CLOCK_MONOTONIC,
        2 => libc::CLOCK_PROCESS_CPUTIME_ID,
        3 => libc::CLOCK_THREAD_CPUTIME_ID,
        _ => return Err(errno::INVAL),
    };
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_getres writes into the timespec we own.
    if unsafe { libc::clock_getres(c, &mut ts) } != 0 {
        return Err(errno::INVAL);
    }
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

fn random_get(mut c: Cx<'_>, buf: i32, len: i32) -> Ret {
    let args = [buf as u32 as u64, len as u32 as u64];
    {
        let (mem, _) = split(&mut c);
        if let Err(e) = range(mem, buf, args[1]) {
            return pure(&mut c, Func::RandomGet, &args, e);
        }
    }
    let d = Dig::new(Func::RandomGet).u64(args[0]).u64(args[1]);
    if begin(&mut c, Func::RandomGet, d.0, &args)? {
        let g = &mut c.data_mut().gate;
        let mut bytes = std::mem::take(&mut g.out.bytes);
        g.live().random(&mut bytes, len as u32 as usize);
        g.out.bytes = bytes;
    }
    let (mem, h) = split(&mut c);
    let out = &h.gate.out;
    let e = if out.errno != 0 {
        out.errno
    } else if out.bytes.len() != len as u32 as usize {
        errno::IO
    } else {
        write_bytes(mem, buf, &out.bytes).err().unwrap_or(0)
    };
    commit(&mut c, e)
}

fn fd_close(mut c: Cx<'_>, fd: i32) -> Ret {
    let h = c.data_mut();
    let e = match h.gate.fds.close(fd as u32) {
        None => errno::BADF,
        Some(f) => {
            close_world(h, f);
            super::fs::release(h, f);
            0
        }
    };
    pure(&mut c, Func::FdClose, &[fd as u64], e)
}

/// A recording guest closed (or renumbered over) a socket descriptor: the
/// real socket goes too.
pub(super) fn close_world(h: &mut Host, f: Fd) {
    if h.gate.is_live() {
        match f.kind {
            FdKind::Conn { id, .. } => h.gate.live().close(id),
            FdKind::Listener => h.gate.live().close_listener(),
            _ => {}
        }
    }
}

fn fd_fdstat_get(mut c: Cx<'_>, fd: i32, ptr: i32) -> Ret {
    let (mem, h) = split(&mut c);
    let e = match h.gate.fds.get(fd as u32) {
        None => errno::BADF,
        Some(f) => {
            let filetype = match f.kind {
                FdKind::Listener | FdKind::Conn { .. } => FILETYPE_SOCKET_STREAM,
                FdKind::File { .. } => FILETYPE_REGULAR_FILE,
                FdKind::Dir { .. } => FILETYPE_DIRECTORY,
                // Not a character device: the guest's stdio is fully
                // buffered, which keeps the log small.
                _ => FILETYPE_UNKNOWN,
            };
            let mut b = [0u8; 24];
            b[0] = filetype;
            let flags = if f.nonblock { FDFLAGS_NONBLOCK } else { 0 } | if f.append { FDFLAGS_APPEND } else { 0 } | f.sync_flags;
            b[2..4].copy_from_slice(&flags.to_le_bytes());
            b[8..16].copy_from_slice(&f.rights.to_le_bytes());
            b[16..24].copy_from_slice(&f.inheriting.to_le_bytes());
            write_bytes(mem, ptr, &b).err().unwrap_or(0)
        }
    };
    pure(&mut c, Func::FdFdstatGet, &[fd as u64, ptr as u64], e)
}

fn fd_fdstat_set_flags(mut c: Cx<'_>, fd: i32, flags: i32) -> Ret {
    let flags = flags as u16;
    let h = c.data_mut();
    let e = match h.gate.fds.get(fd as u32) {
        None => errno::BADF,
        Some(f) => {
            let mut f2 = f;
            f2.nonblock = flags & FDFLAGS_NONBLOCK != 0;
            if let FdKind::File { id } = f.kind {
                // The host descriptor appends too, on every replica.
                f2.append = flags & FDFLAGS_APPEND != 0;
                if let Some(o) = h.fs.get(id) {
                    let raw = std::os::fd::AsRawFd::as_raw_fd(&o.fd);
                    // SAFETY: fcntl on a descriptor this replica owns.
                    unsafe {
                        let cur = libc::fcntl(raw, libc::F_GETFL);
                        let next = if f2.append { cur | libc::O_APPEND } else { cur & !libc::O_APPEND };
                        libc::fcntl(raw, libc::F_SETFL, next);
                    }
                }
            }
            *h.gate.fds.get_mut(fd as u32).expect("checked") = f2;
            0
        }
    };
    pure(&mut c, Func::FdFdstatSetFlags, &[fd as u64, u64::from(flags)], e)
}

fn proc_exit(mut c: Cx<'_>, code: i32) -> wasmtime::Result<()> {
    let d = Dig::new(Func::ProcExit).u64(code as u32 as u64);
    begin(&mut c, Func::ProcExit, d.0, &[code as u32 as u64])?;
    commit(&mut c, 0)?;
    let h = c.data_mut();
    Err(h.halt(Stop::Exit(code)))
}
