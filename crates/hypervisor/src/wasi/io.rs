//! Reads and writes on stdio and sockets, accept and shutdown.
//!
//! Writes to stdout/stderr and sends are outputs: the argument digest covers
//! their bytes, and in record mode they go to the output gate tagged with the
//! seq of their event. Reads and accepts are inputs: recorded.

use std::net::Shutdown;

use wasmtime::Linker;

use super::{begin, commit, errno, iovecs, pure, split, unwindable, write_bytes, write_u32, Cx, Dig, Host, Ret, MODULE};
use crate::event::Func;
use crate::fdtable::{FdKind, LISTENER_FD};
use crate::output::Target;

const RIFLAGS_PEEK: i32 = 1;
const FDFLAGS_NONBLOCK: i32 = 4;

pub(super) fn link(l: &mut Linker<Host>) -> wasmtime::Result<()> {
    l.func_wrap(MODULE, "fd_write", |mut c: Cx<'_>, fd: i32, iovs: i32, n: i32, out: i32| {
        unwindable(&mut c, |c| write(c, Func::FdWrite, fd, iovs, n, out))
    })?;
    l.func_wrap(MODULE, "sock_send", |mut c: Cx<'_>, fd: i32, iovs: i32, n: i32, _flags: i32, out: i32| {
        unwindable(&mut c, |c| write(c, Func::SockSend, fd, iovs, n, out))
    })?;
    l.func_wrap(MODULE, "fd_read", |mut c: Cx<'_>, fd: i32, iovs: i32, n: i32, out: i32| {
        unwindable(&mut c, |c| read(c, Func::FdRead, fd, iovs, n, 0, out, None))
    })?;
    l.func_wrap(MODULE, "sock_recv", |mut c: Cx<'_>, fd: i32, iovs: i32, n: i32, flags: i32, out: i32, oflags: i32| {
        unwindable(&mut c, |c| read(c, Func::SockRecv, fd, iovs, n, flags, out, Some(oflags)))
    })?;
    l.func_wrap(MODULE, "sock_accept", |mut c: Cx<'_>, fd: i32, flags: i32, out: i32| {
        unwindable(&mut c, |c| sock_accept(c, fd, flags, out))
    })?;
    l.func_wrap(MODULE, "sock_shutdown", sock_shutdown)?;
    Ok(())
}

/// `fd_write` and `sock_send`: an output to stdout, stderr or a connection.
fn write(c: &mut Cx<'_>, func: Func, fd: i32, iovs: i32, n: i32, out: i32) -> Ret {
    let args = [fd as u32 as u64, iovs as u32 as u64, n as u32 as u64, out as u32 as u64];
    let Some(f) = c.data().gate.fds.get(fd as u32) else { return pure(c, func, &args, errno::BADF) };
    match (func, f.kind) {
        (Func::FdWrite, FdKind::File { .. }) => return super::fs::file_write(c, func, fd, iovs, n, None, out),
        (Func::FdWrite, FdKind::Dir { .. }) => return pure(c, func, &args, errno::BADF),
        _ => {}
    }
    let target = match (func, f.kind) {
        (Func::FdWrite, FdKind::Stdout) => Target::Stdout,
        (Func::FdWrite, FdKind::Stderr) => Target::Stderr,
        (_, FdKind::Conn { id, .. }) => Target::Conn(id),
        (Func::SockSend, _) => return pure(c, func, &args, errno::NOTSOCK),
        _ => return pure(c, func, &args, errno::BADF),
    };
    let (mem, _) = split(c);
    let vecs = match iovecs(mem, iovs, n) {
        Ok(v) => v,
        Err(e) => return pure(c, func, &args, e),
    };
    let mut d = Dig::new(func).u64(args[0]).u64(args[3]);
    let mut total = 0usize;
    for &(p, len) in &vecs {
        let s = p as u32 as usize;
        d = d.u64(u64::from(len)).bytes(&mem[s..s + len as usize]);
        total += len as usize;
    }
    if begin(c, func, d.0, &args)? {
        let h = c.data_mut();
        match (target, f.kind) {
            (Target::Conn(_), FdKind::Conn { reset: true, .. } | FdKind::Conn { write_shut: true, .. }) => {
                h.gate.out.errno = errno::PIPE;
            }
            (Target::Conn(id), _) => match h.gate.live().send_room(id, total, f.nonblock) {
                Ok(Ok(room)) => h.gate.out.scalar = room as u64,
                Ok(Err(e)) => h.gate.out.errno = e,
                Err(s) => return Err(h.halt(s)),
            },
            _ => h.gate.out.scalar = total as u64,
        }
    }
    let (mem, h) = split(c);
    let (e, sent) = (h.gate.out.errno, h.gate.out.scalar as usize);
    let e = if e != 0 {
        e
    } else if sent > total {
        errno::IO
    } else {
        let mut bytes = std::mem::take(&mut h.scratch);
        bytes.clear();
        for &(p, len) in &vecs {
            let s = p as u32 as usize;
            let take = (len as usize).min(sent - bytes.len());
            bytes.extend_from_slice(&mem[s..s + take]);
        }
        h.gate.output(target, &bytes);
        h.scratch = bytes;
        write_u32(mem, out, sent as u32).err().unwrap_or(0)
    };
    commit(c, e)
}

/// `fd_read` and `sock_recv`: an input from stdin or a connection.
#[allow(clippy::too_many_arguments)]
fn read(c: &mut Cx<'_>, func: Func, fd: i32, iovs: i32, n: i32, flags: i32, out: i32, oflags: Option<i32>) -> Ret {
    let args = [fd as u32 as u64, iovs as u32 as u64, n as u32 as u64, flags as u32 as u64];
    let Some(f) = c.data().gate.fds.get(fd as u32) else { return pure(c, func, &args, errno::BADF) };
    match (func, f.kind) {
        (Func::FdRead, FdKind::File { .. }) => return super::fs::file_read(c, func, fd, iovs, n, None, out),
        (Func::FdRead, FdKind::Dir { .. }) => return pure(c, func, &args, super::fs::ISDIR),
        (Func::FdRead, FdKind::Stdin) | (_, FdKind::Conn { .. }) => {}
        (Func::SockRecv, _) => return pure(c, func, &args, errno::NOTSOCK),
        _ => return pure(c, func, &args, errno::BADF),
    }
    let (mem, _) = split(c);
    let vecs = match iovecs(mem, iovs, n) {
        Ok(v) => v,
        Err(e) => return pure(c, func, &args, e),
    };
    let total: usize = vecs.iter().map(|v| v.1 as usize).sum();
    let d = Dig::new(func).u64(args[0]).u64(args[1]).u64(args[2]).u64(args[3]).u64(out as u32 as u64);
    if begin(c, func, d.0, &args)? {
        let h = c.data_mut();
        let mut bytes = std::mem::take(&mut h.gate.out.bytes);
        let r = match f.kind {
            FdKind::Conn { reset: true, .. } => Ok(errno::CONNRESET),
            FdKind::Conn { read_shut: true, .. } => Ok(0),
            FdKind::Conn { id, .. } => h.gate.live().recv(id, total, flags & RIFLAGS_PEEK != 0, f.nonblock, &mut bytes),
            _ => h.gate.live().read_stdin(total, f.nonblock, &mut bytes),
        };
        h.gate.out.bytes = bytes;
        match r {
            Ok(e) => h.gate.out.errno = e,
            Err(s) => return Err(h.halt(s)),
        }
    }
    let (mem, h) = split(c);
    let o = &h.gate.out;
    let e = if o.errno != 0 {
        o.errno
    } else if o.bytes.len() > total {
        errno::IO
    } else {
        scatter(mem, &vecs, &o.bytes)
            .and_then(|_| write_u32(mem, out, o.bytes.len() as u32))
            .and_then(|_| oflags.map_or(Ok(()), |p| write_bytes(mem, p, &[0, 0])))
            .err()
            .unwrap_or(0)
    };
    commit(c, e)
}

pub(super) fn scatter(mem: &mut [u8], vecs: &[(i32, u32)], mut data: &[u8]) -> Result<(), u16> {
    for &(p, len) in vecs {
        let n = data.len().min(len as usize);
        write_bytes(mem, p, &data[..n])?;
        data = &data[n..];
    }
    Ok(())
}

fn sock_accept(c: &mut Cx<'_>, fd: i32, flags: i32, out: i32) -> Ret {
    let args = [fd as u32 as u64, flags as u32 as u64, out as u32 as u64];
    let f = c.data().gate.fds.get(fd as u32);
    match f.map(|f| f.kind) {
        Some(FdKind::Listener) => {}
        Some(FdKind::Conn { .. }) => return pure(c, Func::SockAccept, &args, errno::INVAL),
        Some(_) => return pure(c, Func::SockAccept, &args, errno::NOTSOCK),
        None => return pure(c, Func::SockAccept, &args, errno::BADF),
    }
    debug_assert_eq!(fd as u32, LISTENER_FD);
    let d = Dig::new(Func::SockAccept).u64(args[0]).u64(args[1]).u64(args[2]);
    if begin(c, Func::SockAccept, d.0, &args)? {
        let h = c.data_mut();
        let id = h.gate.fds.next_conn_id();
        let nonblock = f.is_some_and(|f| f.nonblock);
        match h.gate.live().accept(id, nonblock) {
            Ok(e) => h.gate.out.errno = e,
            Err(s) => return Err(h.halt(s)),
        }
    }
    let (mem, h) = split(c);
    let e = if h.gate.out.errno == 0 {
        let (newfd, _) = h.gate.fds.accept(flags & FDFLAGS_NONBLOCK != 0);
        write_u32(mem, out, newfd).err().unwrap_or(0)
    } else {
        h.gate.out.errno
    };
    commit(c, e)
}

fn sock_shutdown(mut c: Cx<'_>, fd: i32, how: i32) -> Ret {
    let args = [fd as u32 as u64, how as u32 as u64];
    let h = c.data_mut();
    let live = h.gate.is_live();
    let e = match h.gate.fds.get_mut(fd as u32) {
        None => errno::BADF,
        Some(f) => match &mut f.kind {
            FdKind::Conn { id, read_shut, write_shut, .. } if (1..=3).contains(&how) => {
                *read_shut |= how & 1 != 0;
                *write_shut |= how & 2 != 0;
                let (id, dir) = (*id, [Shutdown::Read, Shutdown::Write, Shutdown::Both][how as usize - 1]);
                if live {
                    h.gate.live().shutdown(id, dir);
                }
                0
            }
            FdKind::Conn { .. } => errno::INVAL,
            _ => errno::NOTSOCK,
        },
    };
    pure(&mut c, Func::SockShutdown, &args, e)
}
