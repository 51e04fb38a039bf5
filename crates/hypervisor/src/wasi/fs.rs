//! The preview1 filesystem calls, on the mapped directories (`fs`).
//!
//! Every call that touches the host's files is recorded: its errno and what
//! the guest observed (bytes read, a filestat, a directory listing, an
//! offset). On a replaying replica the same call is performed on that
//! replica's own copy of the directory — so after go-live the copy holds
//! exactly what the primary's guest wrote — and its result is checked
//! against the recording (a difference is a divergence naming the path and
//! both results); the guest gets the recorded result. What may differ
//! between two copies without any guest having caused it — inode numbers,
//! device numbers, timestamps — is compared by neither side and comes from
//! the recording; directory order does not differ: listings are sorted by
//! name on every replica.
//!
//! Descriptor bookkeeping (close, renumber, fdstat, prestat) is a function
//! of the gate's fd table and needs no recording.

use wasmtime::Linker;

use super::{begin, commit, errno, iovecs, pure, range, split, write_bytes, write_u32, write_u64, Cx, Dig, Host, Ret, MODULE};
use crate::error::{CallView, Divergence, DivergenceKind, Stop};
use crate::event::Func;
use crate::fdtable::{Fd, FdKind};
use crate::fs::{host, join, Obj};

mod path;

pub(super) const ISDIR: u16 = 31;
const NOTDIR: u16 = 54;
const NOTSUP: u16 = 58;
const NAMETOOLONG: u16 = 37;

const OFLAGS_CREAT: u16 = 1;
const OFLAGS_DIRECTORY: u16 = 2;
const OFLAGS_EXCL: u16 = 4;
const OFLAGS_TRUNC: u16 = 8;
pub(super) const FDFLAGS_APPEND: u16 = 1;
const FDFLAGS_DSYNC: u16 = 2;
pub(super) const FDFLAGS_NONBLOCK: u16 = 4;
const FDFLAGS_RSYNC: u16 = 8;
const FDFLAGS_SYNC: u16 = 16;
const LOOKUP_SYMLINK_FOLLOW: u32 = 1;
const FSTFLAGS_ATIM: u16 = 1;
const FSTFLAGS_ATIM_NOW: u16 = 2;
const FSTFLAGS_MTIM: u16 = 4;
const FSTFLAGS_MTIM_NOW: u16 = 8;

pub(super) fn link(l: &mut Linker<Host>) -> wasmtime::Result<()> {
    l.func_wrap(MODULE, "fd_prestat_get", fd_prestat_get)?;
    l.func_wrap(MODULE, "fd_prestat_dir_name", fd_prestat_dir_name)?;
    l.func_wrap(MODULE, "fd_fdstat_set_rights", |mut c: Cx<'_>, fd: i32, _b: i64, _i: i64| {
        // Rights are not supported (as in wasmtime): what a descriptor can
        // do is decided when it is opened.
        let e = if c.data().gate.fds.get(fd as u32).is_some() { NOTSUP } else { errno::BADF };
        pure(&mut c, Func::FdFdstatSetRights, &[fd as u32 as u64], e)
    })?;
    l.func_wrap(MODULE, "fd_renumber", fd_renumber)?;
    l.func_wrap(MODULE, "fd_tell", |mut c: Cx<'_>, fd: i32, out: i32| seek(&mut c, Func::FdTell, fd, 0, 1, out))?;
    l.func_wrap(MODULE, "fd_sync", |mut c: Cx<'_>, fd: i32| sync(&mut c, Func::FdSync, fd))?;
    l.func_wrap(MODULE, "fd_datasync", |mut c: Cx<'_>, fd: i32| sync(&mut c, Func::FdDatasync, fd))?;
    l.func_wrap(MODULE, "fd_advise", fd_advise)?;
    l.func_wrap(MODULE, "fd_allocate", |mut c: Cx<'_>, fd: i32, _off: i64, _len: i64| {
        // As wasmtime: not supported (fallocate's effect on sparse files
        // differs between filesystems; the guest falls back to writing).
        let e = match c.data().gate.fds.get(fd as u32).map(|f| f.kind) {
            Some(FdKind::File { .. }) => NOTSUP,
            Some(FdKind::Dir { .. }) => ISDIR,
            Some(_) => errno::BADF,
            None => errno::BADF,
        };
        pure(&mut c, Func::FdAllocate, &[fd as u32 as u64], e)
    })?;
    l.func_wrap(MODULE, "fd_pread", |mut c: Cx<'_>, fd: i32, iovs: i32, n: i32, off: i64, out: i32| {
        file_read(&mut c, Func::FdPread, fd, iovs, n, Some(off as u64), out)
    })?;
    l.func_wrap(MODULE, "fd_pwrite", |mut c: Cx<'_>, fd: i32, iovs: i32, n: i32, off: i64, out: i32| {
        file_write(&mut c, Func::FdPwrite, fd, iovs, n, Some(off as u64), out)
    })?;
    l.func_wrap(MODULE, "fd_filestat_get", fd_filestat_get)?;
    l.func_wrap(MODULE, "fd_filestat_set_size", fd_filestat_set_size)?;
    l.func_wrap(MODULE, "fd_filestat_set_times", fd_filestat_set_times)?;
    l.func_wrap(MODULE, "fd_readdir", fd_readdir)?;
    path::link(l)?;
    Ok(())
}

/// What this replica's host answered to a recorded filesystem call.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Local {
    errno: u16,
    scalar: u64,
    bytes: Vec<u8>,
}

impl Local {
    fn err(e: u16) -> Local {
        Local { errno: e, ..Local::default() }
    }

    fn of(r: Result<(), u16>) -> Local {
        Local::err(r.err().unwrap_or(0))
    }
}

/// Fields of a result that two faithful copies may differ in, zeroed for
/// the comparison: a filestat's device, inode and times; a listing's
/// inode numbers.
fn normalized(func: Func, l: &Local) -> Local {
    let mut l = l.clone();
    match func {
        Func::FdFilestatGet | Func::PathFilestatGet if l.bytes.len() == 64 => {
            l.bytes[0..16].fill(0);
            l.bytes[40..64].fill(0);
        }
        Func::FdReaddir => {
            let mut p = 0;
            while p + 8 < l.bytes.len() {
                let end = (p + 16).min(l.bytes.len());
                l.bytes[p + 8..end].fill(0);
                if p + 24 > l.bytes.len() {
                    break;
                }
                let namelen = u32::from_le_bytes(l.bytes[p + 16..p + 20].try_into().expect("4 bytes")) as usize;
                p += 24 + namelen;
            }
        }
        _ => {}
    }
    l
}

/// A recorded filesystem call: `op` runs on this replica's own files in
/// both modes; recording keeps what it answered, replay checks it against
/// the log and leaves the recorded answer in `gate.out`.
fn fs_call(
    c: &mut Cx<'_>,
    func: Func,
    digest: u32,
    args: &[u64],
    what: &str,
    op: impl FnOnce(&mut Host) -> Local,
) -> wasmtime::Result<()> {
    let live = begin(c, func, digest, args)?;
    let local = op(c.data_mut());
    let h = c.data_mut();
    if live {
        h.gate.out.errno = local.errno;
        h.gate.out.scalar = local.scalar;
        h.gate.out.bytes.clear();
        h.gate.out.bytes.extend_from_slice(&local.bytes);
        return Ok(());
    }
    let out = &h.gate.out;
    let recorded = Local { errno: out.errno, scalar: out.scalar, bytes: out.bytes.clone() };
    if normalized(func, &local) != normalized(func, &recorded) {
        let show = |l: &Local| {
            if l.errno != 0 {
                format!("errno {}", l.errno)
            } else {
                format!("ok, {} and {} bytes", l.scalar, l.bytes.len())
            }
        };
        let detail =
            format!("{} on this replica's copy of {what}: {}; the recording says {}", func.name(), show(&local), show(&recorded));
        let replayed = CallView { call: h.gate.call, func, digest, fuel: None, args: what.to_string() };
        let d = Divergence { kind: DivergenceKind::Disk, recorded: None, replayed, detail };
        return Err(h.halt(Stop::Diverged(Box::new(d))));
    }
    Ok(())
}

/// The path argument of a call, as a string.
fn path_arg(c: &mut Cx<'_>, p: i32, n: i32) -> Result<String, u16> {
    let (mem, _) = split(c);
    let r = range(mem, p, u64::from(n as u32))?;
    String::from_utf8(mem[r].to_vec()).map_err(|_| 25) // EILSEQ
}

/// The host object of a directory descriptor, or the errno.
fn dir_of(h: &Host, fd: i32) -> Result<(std::os::fd::RawFd, String), u16> {
    match h.gate.fds.get(fd as u32).map(|f| f.kind) {
        Some(FdKind::Dir { id, .. }) => h.fs.get(id).map(|o| (o.raw(), o.path.clone())).ok_or(errno::BADF),
        Some(_) => Err(NOTDIR),
        None => Err(errno::BADF),
    }
}

/// The mapped directory a directory descriptor lies beneath.
fn root_of(h: &Host, fd: i32) -> usize {
    match h.gate.fds.get(fd as u32).map(|f| f.kind) {
        Some(FdKind::Dir { id, .. }) => h.fs.get(id).map_or(0, |o| o.root),
        _ => 0,
    }
}

/// The host object of a file descriptor (`dir_ok`: a directory will do).
fn file_of(h: &Host, fd: i32, dir_ok: bool) -> Result<(std::os::fd::RawFd, String, Fd), u16> {
    let f = h.gate.fds.get(fd as u32).ok_or(errno::BADF)?;
    let id = match f.kind {
        FdKind::File { id } => id,
        FdKind::Dir { id, .. } if dir_ok => id,
        FdKind::Dir { .. } => return Err(ISDIR),
        _ => return Err(errno::BADF),
    };
    h.fs.get(id).map(|o| (o.raw(), o.path.clone(), f)).ok_or(errno::BADF)
}

fn fd_prestat_get(mut c: Cx<'_>, fd: i32, buf: i32) -> Ret {
    let (mem, h) = split(&mut c);
    let e = match h.gate.fds.get(fd as u32).map(|f| f.kind) {
        Some(FdKind::Dir { id, preopen: true }) => {
            let len = h.fs.get(id).map_or(0, |o| o.path.len()) as u32;
            let mut b = [0u8; 8];
            b[4..8].copy_from_slice(&len.to_le_bytes());
            write_bytes(mem, buf, &b).err().unwrap_or(0)
        }
        // The listening socket is "something, not a directory" rather than
        // EBADF: wasi-libc and Rust's std scan descriptors from 3 and stop
        // at the first EBADF, which would hide the directories after it.
        Some(FdKind::Listener) => write_bytes(mem, buf, &[1, 0, 0, 0, 0, 0, 0, 0]).err().unwrap_or(0),
        _ => errno::BADF,
    };
    pure(&mut c, Func::FdPrestatGet, &[fd as u32 as u64, buf as u32 as u64], e)
}

fn fd_prestat_dir_name(mut c: Cx<'_>, fd: i32, p: i32, n: i32) -> Ret {
    let (mem, h) = split(&mut c);
    let e = match h.gate.fds.get(fd as u32).map(|f| f.kind) {
        Some(FdKind::Dir { id, preopen: true }) => match h.fs.get(id) {
            Some(o) if o.path.len() > n as u32 as usize => NAMETOOLONG,
            Some(o) => write_bytes(mem, p, o.path.as_bytes()).err().unwrap_or(0),
            None => errno::BADF,
        },
        _ => errno::BADF,
    };
    pure(&mut c, Func::FdPrestatDirName, &[fd as u32 as u64, p as u32 as u64, n as u32 as u64], e)
}

/// Closes the host object behind a descriptor the gate dropped.
pub(super) fn release(h: &mut Host, f: Fd) {
    if let FdKind::File { id } | FdKind::Dir { id, .. } = f.kind {
        h.fs.remove(id);
    }
}

fn fd_renumber(mut c: Cx<'_>, from: i32, to: i32) -> Ret {
    let h = c.data_mut();
    let e = match h.gate.fds.renumber(from as u32, to as u32) {
        Ok(Some(closed)) => {
            super::basic::close_world(h, closed);
            release(h, closed);
            0
        }
        Ok(None) => 0,
        Err(()) => errno::BADF,
    };
    pure(&mut c, Func::FdRenumber, &[from as u32 as u64, to as u32 as u64], e)
}

/// `fd_seek` and `fd_tell` on a file; the resulting offset is recorded.
pub(super) fn seek(c: &mut Cx<'_>, func: Func, fd: i32, off: i64, whence: i32, out: i32) -> Ret {
    let args = [fd as u32 as u64, off as u64, whence as u32 as u64, out as u32 as u64];
    let (raw, path) = match file_of(c.data(), fd, false) {
        Ok((raw, path, _)) => (raw, path),
        Err(e) => {
            // Sockets and stdio cannot seek; directories neither.
            let e = match c.data().gate.fds.get(fd as u32).map(|f| f.kind) {
                None => errno::BADF,
                Some(FdKind::Dir { .. }) => errno::BADF,
                Some(FdKind::File { .. }) => e,
                Some(_) => errno::SPIPE,
            };
            return pure(c, func, &args, e);
        }
    };
    let how = match whence {
        0 => libc::SEEK_SET,
        1 => libc::SEEK_CUR,
        2 => libc::SEEK_END,
        _ => return pure(c, func, &args, errno::INVAL),
    };
    let d = Dig::new(func).u64(args[0]).u64(args[1]).u64(args[2]).u64(args[3]);
    fs_call(c, func, d.0, &args, &path, |_| {
        // SAFETY: lseek on a descriptor this replica owns.
        match host::check(|| unsafe { libc::lseek(raw, off, how) as libc::c_long }) {
            Ok(pos) => Local { scalar: pos as u64, ..Local::default() },
            Err(e) => Local::err(e),
        }
    })?;
    let (mem, h) = split(c);
    let e = if h.gate.out.errno != 0 { h.gate.out.errno } else { write_u64(mem, out, h.gate.out.scalar).err().unwrap_or(0) };
    commit(c, e)
}

fn sync(c: &mut Cx<'_>, func: Func, fd: i32) -> Ret {
    let args = [fd as u32 as u64];
    let (raw, path) = match file_of(c.data(), fd, true) {
        Ok((raw, path, _)) => (raw, path),
        Err(e) => return pure(c, func, &args, if e == ISDIR { errno::BADF } else { e }),
    };
    let d = Dig::new(func).u64(args[0]);
    fs_call(c, func, d.0, &args, &path, |_| {
        // SAFETY: fsync/fdatasync on a descriptor this replica owns.
        Local::of(
            host::check(|| unsafe {
                (if func == Func::FdSync { libc::fsync(raw) } else { libc::fdatasync(raw) }) as libc::c_long
            })
            .map(|_| ()),
        )
    })?;
    let e = c.data().gate.out.errno;
    commit(c, e)
}

fn fd_advise(mut c: Cx<'_>, fd: i32, off: i64, len: i64, advice: i32) -> Ret {
    let args = [fd as u32 as u64, off as u64, len as u64, advice as u32 as u64];
    let (raw, path) = match file_of(c.data(), fd, false) {
        Ok((raw, path, _)) => (raw, path),
        Err(e) => return pure(&mut c, Func::FdAdvise, &args, e),
    };
    if !(0..=5).contains(&advice) {
        return pure(&mut c, Func::FdAdvise, &args, errno::INVAL);
    }
    let d = Dig::new(Func::FdAdvise).u64(args[0]).u64(args[1]).u64(args[2]).u64(args[3]);
    fs_call(&mut c, Func::FdAdvise, d.0, &args, &path, |_| {
        // WASI's advice codes are POSIX's, in the same order.
        // SAFETY: posix_fadvise on a descriptor this replica owns.
        let r = unsafe { libc::posix_fadvise(raw, off, len, advice) };
        Local::err(if r == 0 { 0 } else { host::wasi_errno(r) })
    })?;
    let e = c.data().gate.out.errno;
    commit(&mut c, e)
}

/// `fd_read` / `fd_pread` on a file.
pub(super) fn file_read(c: &mut Cx<'_>, func: Func, fd: i32, iovs: i32, n: i32, at: Option<u64>, out: i32) -> Ret {
    let args = [fd as u32 as u64, iovs as u32 as u64, n as u32 as u64, at.unwrap_or(u64::MAX), out as u32 as u64];
    let (raw, path) = match file_of(c.data(), fd, false) {
        Ok((raw, path, _)) => (raw, path),
        Err(e) => return pure(c, func, &args, e),
    };
    let (mem, _) = split(c);
    let vecs = match iovecs(mem, iovs, n) {
        Ok(v) => v,
        Err(e) => return pure(c, func, &args, e),
    };
    let total: usize = vecs.iter().map(|v| v.1 as usize).sum::<usize>().min(1 << 24);
    let d = Dig::new(func).u64(args[0]).u64(args[1]).u64(args[2]).u64(args[3]).u64(args[4]);
    fs_call(c, func, d.0, &args, &path, |_| {
        let mut buf = vec![0u8; total];
        // SAFETY: reading at most `total` bytes into a buffer of that size,
        // from a descriptor this replica owns.
        let r = host::check(|| unsafe {
            (match at {
                Some(o) => libc::pread(raw, buf.as_mut_ptr().cast(), total, o as libc::off_t),
                None => libc::read(raw, buf.as_mut_ptr().cast(), total),
            }) as libc::c_long
        });
        match r {
            Ok(k) => {
                buf.truncate(k as usize);
                Local { bytes: buf, ..Local::default() }
            }
            Err(e) => Local::err(e),
        }
    })?;
    let (mem, h) = split(c);
    let o = &h.gate.out;
    let e = if o.errno != 0 {
        o.errno
    } else if o.bytes.len() > total {
        errno::IO
    } else {
        super::io::scatter(mem, &vecs, &o.bytes).and_then(|_| write_u32(mem, out, o.bytes.len() as u32)).err().unwrap_or(0)
    };
    commit(c, e)
}

/// `fd_write` / `fd_pwrite` on a file: not an output (the file is replicated
/// state); the byte count is recorded.
pub(super) fn file_write(c: &mut Cx<'_>, func: Func, fd: i32, iovs: i32, n: i32, at: Option<u64>, out: i32) -> Ret {
    let args = [fd as u32 as u64, iovs as u32 as u64, n as u32 as u64, at.unwrap_or(u64::MAX), out as u32 as u64];
    let (raw, path, f) = match file_of(c.data(), fd, false) {
        Ok(x) => x,
        Err(e) => return pure(c, func, &args, e),
    };
    let FdKind::File { id } = f.kind else { unreachable!("file_of gives files") };
    let (mem, _) = split(c);
    let vecs = match iovecs(mem, iovs, n) {
        Ok(v) => v,
        Err(e) => return pure(c, func, &args, e),
    };
    let mut data = Vec::new();
    let mut d = Dig::new(func).u64(args[0]).u64(args[3]).u64(args[4]);
    for &(p, len) in &vecs {
        let s = p as u32 as usize;
        data.extend_from_slice(&mem[s..s + len as usize]);
        d = d.u64(u64::from(len)).bytes(&mem[s..s + len as usize]);
    }
    fs_call(c, func, d.0, &args, &path, |h| {
        let len = data.len() as u64;
        // Linux's pwrite appends on an append-mode descriptor too.
        let old = match h.fs.reserve(id, raw, |size| match at {
            _ if f.append => size.saturating_add(len),
            Some(o) => size.max(o.saturating_add(len)),
            None => size.max(host::position(raw).saturating_add(len)),
        }) {
            Ok(old) => old,
            Err(e) => return Local::err(e),
        };
        // SAFETY: writing `data` (a live buffer) to a descriptor this
        // replica owns.
        let r = host::check(|| unsafe {
            (match at {
                Some(o) => libc::pwrite(raw, data.as_ptr().cast(), data.len(), o as libc::off_t),
                None => libc::write(raw, data.as_ptr().cast(), data.len()),
            }) as libc::c_long
        });
        h.fs.settle(id, raw, old);
        match r {
            Ok(k) => {
                if h.fs.tracking() {
                    let end = match at {
                        _ if f.append => host::fstat(raw).map_or(0, |st| st.st_size as u64),
                        Some(o) => o + k as u64,
                        None => host::position(raw),
                    };
                    h.fs.wrote(id, end.saturating_sub(k as u64), end);
                }
                Local { scalar: k as u64, ..Local::default() }
            }
            Err(e) => Local::err(e),
        }
    })?;
    let (mem, h) = split(c);
    let e =
        if h.gate.out.errno != 0 { h.gate.out.errno } else { write_u32(mem, out, h.gate.out.scalar as u32).err().unwrap_or(0) };
    commit(c, e)
}

fn fd_filestat_get(mut c: Cx<'_>, fd: i32, buf: i32) -> Ret {
    let args = [fd as u32 as u64, buf as u32 as u64];
    let (raw, path) = match file_of(c.data(), fd, true) {
        Ok((raw, path, _)) => (raw, path),
        Err(e) => return pure(&mut c, Func::FdFilestatGet, &args, e),
    };
    let d = Dig::new(Func::FdFilestatGet).u64(args[0]).u64(args[1]);
    fs_call(&mut c, Func::FdFilestatGet, d.0, &args, &path, |_| match host::fstat(raw) {
        Ok(st) => Local { bytes: host::filestat_bytes(&st).to_vec(), ..Local::default() },
        Err(e) => Local::err(e),
    })?;
    filestat_out(&mut c, buf)
}

/// Writes the recorded filestat into guest memory and commits.
fn filestat_out(c: &mut Cx<'_>, buf: i32) -> Ret {
    let (mem, h) = split(c);
    let o = &h.gate.out;
    let e = if o.errno != 0 {
        o.errno
    } else if o.bytes.len() != 64 {
        errno::IO
    } else {
        write_bytes(mem, buf, &o.bytes).err().unwrap_or(0)
    };
    commit(c, e)
}

fn fd_filestat_set_size(mut c: Cx<'_>, fd: i32, size: i64) -> Ret {
    let args = [fd as u32 as u64, size as u64];
    let (raw, path, id) = match file_of(c.data(), fd, false) {
        Ok((raw, path, Fd { kind: FdKind::File { id }, .. })) => (raw, path, id),
        Ok(_) => unreachable!("file_of gives files"),
        Err(e) => return pure(&mut c, Func::FdFilestatSetSize, &args, if e == ISDIR { errno::BADF } else { e }),
    };
    let d = Dig::new(Func::FdFilestatSetSize).u64(args[0]).u64(args[1]);
    fs_call(&mut c, Func::FdFilestatSetSize, d.0, &args, &path, |h| {
        let old = match h.fs.reserve(id, raw, |_| size.max(0) as u64) {
            Ok(old) => old,
            Err(e) => return Local::err(e),
        };
        // SAFETY: ftruncate on a descriptor this replica owns.
        let r = host::check(|| unsafe { libc::ftruncate(raw, size) as libc::c_long }).map(|_| ());
        h.fs.settle(id, raw, old);
        h.fs.resized(id);
        Local::of(r)
    })?;
    let e = c.data().gate.out.errno;
    commit(&mut c, e)
}

/// The `timespec` pair of `utimensat`/`futimens` for WASI's times and flags.
fn times(atim: u64, mtim: u64, fst: u16) -> Result<[libc::timespec; 2], u16> {
    if fst & FSTFLAGS_ATIM != 0 && fst & FSTFLAGS_ATIM_NOW != 0 || fst & FSTFLAGS_MTIM != 0 && fst & FSTFLAGS_MTIM_NOW != 0 {
        return Err(errno::INVAL);
    }
    if fst & !15 != 0 {
        return Err(errno::INVAL);
    }
    let one = |t: u64, set: u16, now: u16| {
        if fst & now != 0 {
            libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW }
        } else if fst & set != 0 {
            libc::timespec { tv_sec: (t / 1_000_000_000) as libc::time_t, tv_nsec: (t % 1_000_000_000) as libc::c_long }
        } else {
            libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT }
        }
    };
    Ok([one(atim, FSTFLAGS_ATIM, FSTFLAGS_ATIM_NOW), one(mtim, FSTFLAGS_MTIM, FSTFLAGS_MTIM_NOW)])
}

fn fd_filestat_set_times(mut c: Cx<'_>, fd: i32, atim: i64, mtim: i64, fst: i32) -> Ret {
    let args = [fd as u32 as u64, atim as u64, mtim as u64, fst as u32 as u64];
    let (raw, path) = match file_of(c.data(), fd, true) {
        Ok((raw, path, _)) => (raw, path),
        Err(e) => return pure(&mut c, Func::FdFilestatSetTimes, &args, e),
    };
    let ts = match times(atim as u64, mtim as u64, fst as u16) {
        Ok(t) => t,
        Err(e) => return pure(&mut c, Func::FdFilestatSetTimes, &args, e),
    };
    let d = Dig::new(Func::FdFilestatSetTimes).u64(args[0]).u64(args[1]).u64(args[2]).u64(args[3]);
    fs_call(&mut c, Func::FdFilestatSetTimes, d.0, &args, &path, |_| {
        // SAFETY: futimens reads two timespecs from a live array.
        Local::of(host::check(|| unsafe { libc::futimens(raw, ts.as_ptr()) as libc::c_long }).map(|_| ()))
    })?;
    let e = c.data().gate.out.errno;
    commit(&mut c, e)
}

/// The errno of a call that fills `buf` (at most `len` bytes) and writes
/// the length to `out`: the recorded errno, or the recorded bytes copied
/// into the guest (more than `len` recorded is a corrupt log: EIO).
fn sized_answer(c: &mut Cx<'_>, buf: i32, len: usize, out: i32) -> u16 {
    let (mem, h) = split(c);
    let o = &h.gate.out;
    if o.errno != 0 {
        o.errno
    } else if o.bytes.len() > len {
        errno::IO
    } else {
        write_bytes(mem, buf, &o.bytes).and_then(|_| write_u32(mem, out, o.bytes.len() as u32)).err().unwrap_or(0)
    }
}

fn fd_readdir(mut c: Cx<'_>, fd: i32, buf: i32, len: i32, cookie: i64, out: i32) -> Ret {
    let args = [fd as u32 as u64, buf as u32 as u64, len as u32 as u64, cookie as u64, out as u32 as u64];
    let (id, path) = match c.data().gate.fds.get(fd as u32).map(|f| f.kind) {
        Some(FdKind::Dir { id, .. }) => match c.data().fs.get(id) {
            Some(o) => (id, o.path.clone()),
            None => return pure(&mut c, Func::FdReaddir, &args, errno::BADF),
        },
        Some(FdKind::File { .. }) => return pure(&mut c, Func::FdReaddir, &args, NOTDIR),
        _ => return pure(&mut c, Func::FdReaddir, &args, errno::BADF),
    };
    {
        let (mem, _) = split(&mut c);
        if let Err(e) = range(mem, buf, u64::from(len as u32)) {
            return pure(&mut c, Func::FdReaddir, &args, e);
        }
    }
    let len = len as u32 as usize;
    let d = Dig::new(Func::FdReaddir).u64(args[0]).u64(args[1]).u64(args[2]).u64(args[3]).u64(args[4]);
    fs_call(&mut c, Func::FdReaddir, d.0, &args, &path, |h| {
        let Some(o) = h.fs.get_mut(id) else { return Local::err(errno::BADF) };
        if cookie == 0 || o.listing.is_none() {
            match host::list_dir(o.raw()) {
                Ok(l) => o.listing = Some(l),
                Err(e) => return Local::err(e),
            }
        }
        let listing = o.listing.as_ref().expect("listed");
        let mut b = Vec::with_capacity(len);
        for (i, e) in listing.iter().enumerate().skip(cookie as u64 as usize) {
            if b.len() >= len {
                break;
            }
            let mut d = [0u8; 24];
            d[0..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            d[8..16].copy_from_slice(&e.ino.to_le_bytes());
            d[16..20].copy_from_slice(&(e.name.len() as u32).to_le_bytes());
            d[20] = e.filetype;
            b.extend_from_slice(&d);
            b.extend_from_slice(&e.name);
        }
        b.truncate(len);
        Local { scalar: b.len() as u64, bytes: b, ..Local::default() }
    })?;
    let e = sized_answer(&mut c, buf, len, out);
    commit(&mut c, e)
}
