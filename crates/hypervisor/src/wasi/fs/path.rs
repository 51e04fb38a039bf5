//! The preview1 `path_*` calls: open, create, remove, rename, link,
//! symlink, readlink and stat by name — each resolved beneath the mapped
//! directory and recorded as `fs_call` describes.

use std::os::fd::AsRawFd;

use wasmtime::Linker;

use super::*;
use crate::abi::{
    rights_of, RIGHTS_FD_ALLOCATE, RIGHTS_FD_DATASYNC, RIGHTS_FD_FILESTAT_SET_SIZE, RIGHTS_FD_READ, RIGHTS_FD_READDIR,
    RIGHTS_FD_WRITE,
};

pub(super) fn link(l: &mut Linker<Host>) -> wasmtime::Result<()> {
    l.func_wrap(MODULE, "path_open", path_open)?;
    l.func_wrap(MODULE, "path_create_directory", |mut c: Cx<'_>, fd: i32, p: i32, n: i32| {
        path_op(&mut c, Func::PathCreateDirectory, fd, p, n, |s, _, _| {
            // SAFETY: mkdirat with a live descriptor and a NUL-terminated name.
            host::check(|| unsafe { libc::mkdirat(s.parent.as_raw_fd(), s.name.as_ptr(), 0o755) as libc::c_long }).map(|_| ())
        })
    })?;
    l.func_wrap(MODULE, "path_remove_directory", |mut c: Cx<'_>, fd: i32, p: i32, n: i32| {
        path_op(&mut c, Func::PathRemoveDirectory, fd, p, n, |s, _, _| {
            // SAFETY: unlinkat with a live descriptor and a NUL-terminated name.
            host::check(|| unsafe { libc::unlinkat(s.parent.as_raw_fd(), s.name.as_ptr(), libc::AT_REMOVEDIR) as libc::c_long })
                .map(|_| ())
        })
    })?;
    l.func_wrap(MODULE, "path_unlink_file", |mut c: Cx<'_>, fd: i32, p: i32, n: i32| {
        path_op(&mut c, Func::PathUnlinkFile, fd, p, n, |s, fs, root| {
            if s.trailing_slash {
                // `file/` names a directory that is not there, or one that
                // unlink(2) would refuse anyway.
                return Err(match host::stat(s.parent.as_raw_fd(), &s.name, false) {
                    Ok(st) if host::filetype(st.st_mode) == 3 => ISDIR,
                    Ok(_) => NOTDIR,
                    Err(e) => e,
                });
            }
            let freed = last_link_bytes(fs, s);
            // SAFETY: unlinkat with a live descriptor and a NUL-terminated name.
            host::check(|| unsafe { libc::unlinkat(s.parent.as_raw_fd(), s.name.as_ptr(), 0) as libc::c_long })?;
            fs.released(root, freed);
            Ok(())
        })
    })?;
    l.func_wrap(MODULE, "path_rename", path_rename)?;
    l.func_wrap(MODULE, "path_link", path_link)?;
    l.func_wrap(MODULE, "path_symlink", path_symlink)?;
    l.func_wrap(MODULE, "path_readlink", path_readlink)?;
    l.func_wrap(MODULE, "path_filestat_get", path_filestat_get)?;
    l.func_wrap(MODULE, "path_filestat_set_times", path_filestat_set_times)?;
    Ok(())
}

/// With a size limit: the bytes a regular file's last name frees when it
/// goes (0 for anything else, or without a limit).
fn last_link_bytes(fs: &crate::fs::Fs, s: &host::Split) -> u64 {
    if fs.limit.is_none() {
        return 0;
    }
    match host::stat(s.parent.as_raw_fd(), &s.name, false) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG && st.st_nlink == 1 => st.st_size as u64,
        _ => 0,
    }
}

/// `open(2)` flags for WASI's oflags, fdflags and rights (as wasmtime
/// decides them: reading and writing from the rights asked for).
fn open_flags(oflags: u16, fdflags: u16, rights: u64) -> i32 {
    let read = rights & (RIGHTS_FD_READ | RIGHTS_FD_READDIR) != 0;
    let write = rights & (RIGHTS_FD_DATASYNC | RIGHTS_FD_WRITE | RIGHTS_FD_ALLOCATE | RIGHTS_FD_FILESTAT_SET_SIZE) != 0
        || oflags & OFLAGS_TRUNC != 0;
    let mut f = match (read, write) {
        (_, false) => libc::O_RDONLY,
        (false, true) => libc::O_WRONLY,
        (true, true) => libc::O_RDWR,
    };
    if oflags & OFLAGS_CREAT != 0 {
        f |= libc::O_CREAT;
    }
    if oflags & OFLAGS_EXCL != 0 {
        f |= libc::O_EXCL;
    }
    if oflags & OFLAGS_TRUNC != 0 {
        f |= libc::O_TRUNC;
    }
    if oflags & OFLAGS_DIRECTORY != 0 {
        f |= libc::O_DIRECTORY;
    }
    if fdflags & FDFLAGS_APPEND != 0 {
        f |= libc::O_APPEND;
    }
    if fdflags & FDFLAGS_DSYNC != 0 {
        f |= libc::O_DSYNC;
    }
    if fdflags & (FDFLAGS_SYNC | FDFLAGS_RSYNC) != 0 {
        f |= libc::O_SYNC;
    }
    f
}

#[allow(clippy::too_many_arguments)]
fn path_open(
    mut c: Cx<'_>,
    fd: i32,
    lookup: i32,
    p: i32,
    n: i32,
    oflags: i32,
    base: i64,
    inh: i64,
    fdflags: i32,
    out: i32,
) -> Ret {
    let args = [fd as u32 as u64, lookup as u32 as u64, oflags as u32 as u64, fdflags as u32 as u64];
    let (dir, base_path) = match dir_of(c.data(), fd) {
        Ok(d) => d,
        Err(e) => return pure(&mut c, Func::PathOpen, &args, e),
    };
    let path = match path_arg(&mut c, p, n) {
        Ok(p) => p,
        Err(e) => return pure(&mut c, Func::PathOpen, &args, e),
    };
    let (oflags, fdflags) = (oflags as u16, fdflags as u16);
    let mut flags = open_flags(oflags, fdflags, base as u64);
    if lookup as u32 & LOOKUP_SYMLINK_FOLLOW == 0 {
        flags |= libc::O_NOFOLLOW;
    }
    let shown = join(&base_path, &path);
    let d = Dig::new(Func::PathOpen)
        .u64(args[0])
        .u64(args[1])
        .u64(args[2])
        .u64(args[3])
        .u64(base as u64)
        .u64(inh as u64)
        .bytes(path.as_bytes());
    let mut opened = None;
    let root = root_of(c.data(), fd);
    fs_call(&mut c, Func::PathOpen, d.0, &args, &shown, |h| {
        if path.is_empty() {
            return Local::err(44);
        }
        if path.starts_with('/') {
            return Local::err(63);
        }
        // With a size limit, a truncation is made here, to count the bytes
        // it frees.
        let truncate = h.fs.limit.is_some() && flags & libc::O_TRUNC != 0;
        let r = host::open_beneath(dir, &path, if truncate { flags & !libc::O_TRUNC } else { flags }, 0o644).or_else(|e| {
            // A directory opened with rights that imply writing (datasync,
            // allocate, set-size: all rights but FD_WRITE, as a preopen
            // reports them) is opened to read; only FD_WRITE itself is
            // refused with EISDIR.
            if e == ISDIR && flags & libc::O_CREAT == 0 && base as u64 & RIGHTS_FD_WRITE == 0 {
                host::open_beneath(dir, &path, libc::O_RDONLY | libc::O_DIRECTORY | (flags & libc::O_NOFOLLOW), 0)
            } else {
                Err(e)
            }
        });
        match r.and_then(|fd| host::fstat(fd.as_raw_fd()).map(|st| (fd, st))) {
            Ok((fd, st)) => {
                let is_dir = host::filetype(st.st_mode) == 3;
                if oflags & OFLAGS_DIRECTORY != 0 && !is_dir {
                    return Local::err(NOTDIR);
                }
                let regular = st.st_mode & libc::S_IFMT == libc::S_IFREG;
                if truncate && regular && st.st_size > 0 {
                    // SAFETY: ftruncate on a descriptor this replica owns.
                    if let Err(e) = host::check(|| unsafe { libc::ftruncate(fd.as_raw_fd(), 0) as libc::c_long }) {
                        return Local::err(e);
                    }
                    h.fs.released(root, st.st_size as u64);
                }
                if regular && flags & (libc::O_CREAT | libc::O_TRUNC) != 0 {
                    h.fs.resized_ino((st.st_dev, st.st_ino));
                }
                opened = Some((fd, is_dir, (st.st_dev, st.st_ino)));
                Local::default()
            }
            Err(e) => Local::err(e),
        }
    })?;
    let h = c.data_mut();
    let e = h.gate.out.errno;
    let e = if e != 0 {
        e
    } else {
        let Some((host_fd, is_dir, ino)) = opened else {
            // Recorded success, yet this replica could not open it: the
            // check in fs_call already stopped a divergent replay.
            unreachable!("a recorded open that failed here diverged");
        };
        let id = h.fs.add(Obj { fd: host_fd, path: shown, listing: None, root, ino });
        let kind = if is_dir { FdKind::Dir { id, preopen: false } } else { FdKind::File { id } };
        let acc = flags & libc::O_ACCMODE;
        let (read, write) = if is_dir { (true, false) } else { (acc != libc::O_WRONLY, acc != libc::O_RDONLY) };
        let f = Fd {
            append: fdflags & FDFLAGS_APPEND != 0,
            nonblock: fdflags & FDFLAGS_NONBLOCK != 0,
            sync_flags: fdflags & (FDFLAGS_DSYNC | FDFLAGS_RSYNC | FDFLAGS_SYNC),
            rights: rights_of(is_dir, read, write),
            ..Fd::new(kind)
        };
        let newfd = h.gate.fds.insert(f);
        let (mem, _) = split(&mut c);
        write_u32(mem, out, newfd).err().unwrap_or(0)
    };
    commit(&mut c, e)
}

/// A call on a path's last component, relative to its parent.
fn path_op(
    c: &mut Cx<'_>,
    func: Func,
    fd: i32,
    p: i32,
    n: i32,
    op: impl FnOnce(&host::Split, &mut crate::fs::Fs, usize) -> Result<(), u16>,
) -> Ret {
    let args = [fd as u32 as u64];
    let (dir, base) = match dir_of(c.data(), fd) {
        Ok(d) => d,
        Err(e) => return pure(c, func, &args, e),
    };
    let path = match path_arg(c, p, n) {
        Ok(p) => p,
        Err(e) => return pure(c, func, &args, e),
    };
    let d = Dig::new(func).u64(args[0]).bytes(path.as_bytes());
    let root = root_of(c.data(), fd);
    fs_call(c, func, d.0, &args, &join(&base, &path), |h| {
        Local::of(host::split(dir, &path).and_then(|s| op(&s, &mut h.fs, root)))
    })?;
    let e = c.data().gate.out.errno;
    commit(c, e)
}

fn path_rename(mut c: Cx<'_>, fd: i32, p: i32, n: i32, fd2: i32, p2: i32, n2: i32) -> Ret {
    let args = [fd as u32 as u64, fd2 as u32 as u64];
    let dirs = dir_of(c.data(), fd).and_then(|a| dir_of(c.data(), fd2).map(|b| (a, b)));
    let ((d1, b1), (d2, _)) = match dirs {
        Ok(d) => d,
        Err(e) => return pure(&mut c, Func::PathRename, &args, e),
    };
    let paths = path_arg(&mut c, p, n).and_then(|a| path_arg(&mut c, p2, n2).map(|b| (a, b)));
    let (from, to) = match paths {
        Ok(x) => x,
        Err(e) => return pure(&mut c, Func::PathRename, &args, e),
    };
    let d = Dig::new(Func::PathRename).u64(args[0]).u64(args[1]).bytes(from.as_bytes()).u64(0).bytes(to.as_bytes());
    let (r1, r2) = (root_of(c.data(), fd), root_of(c.data(), fd2));
    fs_call(&mut c, Func::PathRename, d.0, &args, &join(&b1, &from), |h| {
        Local::of(host::split(d1, &from).and_then(|a| {
            let b = host::split(d2, &to)?;
            if h.fs.limit.is_some() && r1 != r2 {
                return Err(crate::fs::XDEV); // see `fs`: sizes are per directory
            }
            // A file the rename replaces stops counting (unless it is the
            // same file under another name).
            let same = host::stat(a.parent.as_raw_fd(), &a.name, false)
                .and_then(|x| {
                    host::stat(b.parent.as_raw_fd(), &b.name, false).map(|y| (x.st_dev, x.st_ino) == (y.st_dev, y.st_ino))
                })
                .unwrap_or(false);
            let freed = if same { 0 } else { last_link_bytes(&h.fs, &b) };
            if a.trailing_slash || b.trailing_slash {
                // `x/` must name a directory, on either side.
                let st = host::stat(a.parent.as_raw_fd(), &a.name, false)?;
                if host::filetype(st.st_mode) != 3 {
                    return Err(NOTDIR);
                }
            }
            // SAFETY: renameat with live descriptors and NUL-terminated names.
            host::check(|| unsafe {
                libc::renameat(a.parent.as_raw_fd(), a.name.as_ptr(), b.parent.as_raw_fd(), b.name.as_ptr()) as libc::c_long
            })?;
            h.fs.released(r2, freed);
            Ok(())
        }))
    })?;
    let e = c.data().gate.out.errno;
    commit(&mut c, e)
}

#[allow(clippy::too_many_arguments)]
fn path_link(mut c: Cx<'_>, fd: i32, lookup: i32, p: i32, n: i32, fd2: i32, p2: i32, n2: i32) -> Ret {
    let args = [fd as u32 as u64, lookup as u32 as u64, fd2 as u32 as u64];
    let dirs = dir_of(c.data(), fd).and_then(|a| dir_of(c.data(), fd2).map(|b| (a, b)));
    let ((d1, b1), (d2, _)) = match dirs {
        Ok(d) => d,
        Err(e) => return pure(&mut c, Func::PathLink, &args, e),
    };
    let paths = path_arg(&mut c, p, n).and_then(|a| path_arg(&mut c, p2, n2).map(|b| (a, b)));
    let (from, to) = match paths {
        Ok(x) => x,
        Err(e) => return pure(&mut c, Func::PathLink, &args, e),
    };
    let follow = lookup as u32 & LOOKUP_SYMLINK_FOLLOW != 0;
    let d = Dig::new(Func::PathLink).u64(args[0]).u64(args[1]).u64(args[2]).bytes(from.as_bytes()).u64(0).bytes(to.as_bytes());
    let cross = root_of(c.data(), fd) != root_of(c.data(), fd2);
    fs_call(&mut c, Func::PathLink, d.0, &args, &join(&b1, &from), |h| {
        Local::of(host::split(d1, &from).and_then(|a| {
            let b = host::split(d2, &to)?;
            if h.fs.limit.is_some() && cross {
                return Err(crate::fs::XDEV); // see `fs`: sizes are per directory
            }
            if follow {
                // Following a symlink could leave the sandbox: refused, as
                // wasmtime does.
                return Err(errno::INVAL);
            }
            let (na, nb) = (a.slashed(), b.slashed());
            // SAFETY: linkat with live descriptors and NUL-terminated names.
            host::check(|| unsafe {
                libc::linkat(a.parent.as_raw_fd(), na.as_ptr(), b.parent.as_raw_fd(), nb.as_ptr(), 0) as libc::c_long
            })
            .map(|_| ())
        }))
    })?;
    let e = c.data().gate.out.errno;
    commit(&mut c, e)
}

fn path_symlink(mut c: Cx<'_>, p: i32, n: i32, fd: i32, p2: i32, n2: i32) -> Ret {
    let args = [fd as u32 as u64];
    let (dir, base) = match dir_of(c.data(), fd) {
        Ok(d) => d,
        Err(e) => return pure(&mut c, Func::PathSymlink, &args, e),
    };
    let paths = path_arg(&mut c, p, n).and_then(|a| path_arg(&mut c, p2, n2).map(|b| (a, b)));
    let (target, at) = match paths {
        Ok(x) => x,
        Err(e) => return pure(&mut c, Func::PathSymlink, &args, e),
    };
    let d = Dig::new(Func::PathSymlink).u64(args[0]).bytes(target.as_bytes()).u64(0).bytes(at.as_bytes());
    fs_call(&mut c, Func::PathSymlink, d.0, &args, &join(&base, &at), |_| {
        Local::of(host::split(dir, &at).and_then(|s| {
            if s.trailing_slash {
                return Err(match host::stat(s.parent.as_raw_fd(), &s.name, false) {
                    Ok(_) => 20,  // EEXIST
                    Err(_) => 44, // ENOENT: `x/` cannot be created as a link
                });
            }
            if target.starts_with('/') {
                // A link to an absolute path would point out of every
                // sandbox: refused, as wasmtime does.
                return Err(63);
            }
            let t = host::cstr(&target)?;
            // SAFETY: symlinkat with a live descriptor and NUL-terminated strings.
            host::check(|| unsafe { libc::symlinkat(t.as_ptr(), s.parent.as_raw_fd(), s.name.as_ptr()) as libc::c_long })
                .map(|_| ())
        }))
    })?;
    let e = c.data().gate.out.errno;
    commit(&mut c, e)
}

fn path_readlink(mut c: Cx<'_>, fd: i32, p: i32, n: i32, buf: i32, len: i32, out: i32) -> Ret {
    let args = [fd as u32 as u64, buf as u32 as u64, len as u32 as u64, out as u32 as u64];
    let (dir, base) = match dir_of(c.data(), fd) {
        Ok(d) => d,
        Err(e) => return pure(&mut c, Func::PathReadlink, &args, e),
    };
    let path = match path_arg(&mut c, p, n) {
        Ok(p) => p,
        Err(e) => return pure(&mut c, Func::PathReadlink, &args, e),
    };
    let len = len as u32 as usize;
    let d = Dig::new(Func::PathReadlink).u64(args[0]).u64(args[1]).u64(args[2]).u64(args[3]).bytes(path.as_bytes());
    fs_call(&mut c, Func::PathReadlink, d.0, &args, &join(&base, &path), |_| {
        match host::split(dir, &path).and_then(|s| {
            if s.trailing_slash {
                return Err(NOTDIR);
            }
            let mut b = vec![0u8; 4096];
            // SAFETY: readlinkat writes at most `b.len()` bytes into `b`.
            let k = host::check(|| unsafe {
                libc::readlinkat(s.parent.as_raw_fd(), s.name.as_ptr(), b.as_mut_ptr().cast(), b.len()) as libc::c_long
            })?;
            b.truncate(k as usize);
            Ok(b)
        }) {
            Ok(mut b) => {
                b.truncate(len);
                Local { scalar: b.len() as u64, bytes: b, ..Local::default() }
            }
            Err(e) => Local::err(e),
        }
    })?;
    let e = sized_answer(&mut c, buf, len, out);
    commit(&mut c, e)
}

fn path_filestat_get(mut c: Cx<'_>, fd: i32, lookup: i32, p: i32, n: i32, buf: i32) -> Ret {
    let args = [fd as u32 as u64, lookup as u32 as u64, buf as u32 as u64];
    let (dir, base) = match dir_of(c.data(), fd) {
        Ok(d) => d,
        Err(e) => return pure(&mut c, Func::PathFilestatGet, &args, e),
    };
    let path = match path_arg(&mut c, p, n) {
        Ok(p) => p,
        Err(e) => return pure(&mut c, Func::PathFilestatGet, &args, e),
    };
    let follow = lookup as u32 & LOOKUP_SYMLINK_FOLLOW != 0;
    let d = Dig::new(Func::PathFilestatGet).u64(args[0]).u64(args[1]).u64(args[2]).bytes(path.as_bytes());
    fs_call(&mut c, Func::PathFilestatGet, d.0, &args, &join(&base, &path), |_| {
        let st = if follow {
            // Follow symlinks, but only within the sandbox.
            host::open_beneath(dir, &path, libc::O_PATH, 0).and_then(|f| host::fstat(f.as_raw_fd()))
        } else {
            host::split(dir, &path).and_then(|s| {
                let st = host::stat(s.parent.as_raw_fd(), &s.name, false)?;
                if s.trailing_slash && host::filetype(st.st_mode) != 3 {
                    return Err(NOTDIR);
                }
                Ok(st)
            })
        };
        match st {
            Ok(st) => Local { bytes: host::filestat_bytes(&st).to_vec(), ..Local::default() },
            Err(e) => Local::err(e),
        }
    })?;
    filestat_out(&mut c, buf)
}

#[allow(clippy::too_many_arguments)]
fn path_filestat_set_times(mut c: Cx<'_>, fd: i32, lookup: i32, p: i32, n: i32, atim: i64, mtim: i64, fst: i32) -> Ret {
    let args = [fd as u32 as u64, lookup as u32 as u64, atim as u64, mtim as u64, fst as u32 as u64];
    let (dir, base) = match dir_of(c.data(), fd) {
        Ok(d) => d,
        Err(e) => return pure(&mut c, Func::PathFilestatSetTimes, &args, e),
    };
    let path = match path_arg(&mut c, p, n) {
        Ok(p) => p,
        Err(e) => return pure(&mut c, Func::PathFilestatSetTimes, &args, e),
    };
    let ts = match times(atim as u64, mtim as u64, fst as u16) {
        Ok(t) => t,
        Err(e) => return pure(&mut c, Func::PathFilestatSetTimes, &args, e),
    };
    let follow = lookup as u32 & LOOKUP_SYMLINK_FOLLOW != 0;
    let d = Dig::new(Func::PathFilestatSetTimes)
        .u64(args[0])
        .u64(args[1])
        .u64(args[2])
        .u64(args[3])
        .u64(args[4])
        .bytes(path.as_bytes());
    fs_call(&mut c, Func::PathFilestatSetTimes, d.0, &args, &join(&base, &path), |_| {
        Local::of(if follow {
            host::open_beneath(dir, &path, libc::O_PATH, 0).and_then(|f| {
                let empty = std::ffi::CString::default();
                // SAFETY: utimensat on a live O_PATH descriptor (AT_EMPTY_PATH).
                host::check(|| unsafe {
                    libc::utimensat(f.as_raw_fd(), empty.as_ptr(), ts.as_ptr(), libc::AT_EMPTY_PATH) as libc::c_long
                })
                .map(|_| ())
            })
        } else {
            host::split(dir, &path).and_then(|s| {
                // SAFETY: utimensat with a live descriptor and a NUL-terminated name.
                host::check(|| unsafe {
                    libc::utimensat(s.parent.as_raw_fd(), s.name.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) as libc::c_long
                })
                .map(|_| ())
            })
        })
    })?;
    let e = c.data().gate.out.errno;
    commit(&mut c, e)
}
