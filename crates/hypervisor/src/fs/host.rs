//! The host side of the guest's filesystem: system calls on descriptors of
//! the mapped directories, confined beneath them, and their errors in WASI
//! terms. Nothing here knows about record or replay.
//!
//! Confinement: every path is resolved by `openat2(2)` with
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS` relative to a directory the
//! guest holds: `..` above it, absolute paths and symlinks (absolute or
//! relative) that lead out are refused by the kernel (`EXDEV`, reported as
//! `EPERM`), loops end in `ELOOP`, and a directory renamed under an open
//! descriptor stays the one the descriptor names. Operations on a final
//! component (`mkdirat`, `unlinkat`, `renameat`, …) run relative to its
//! parent, itself opened that way.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::abi::errno;

/// `openat2(2)`'s `struct open_how`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_BENEATH: u64 = 0x08;

/// The WASI errno of a host errno.
pub(crate) fn wasi_errno(e: i32) -> u16 {
    match e {
        libc::EACCES => 2,
        libc::EAGAIN => errno::AGAIN,
        libc::EBADF => errno::BADF,
        libc::EBUSY => 10,
        libc::EEXIST => 20,
        libc::EFAULT => errno::FAULT,
        libc::EFBIG => 22,
        libc::EINTR => errno::INTR,
        libc::EINVAL => errno::INVAL,
        libc::EIO => errno::IO,
        libc::EISDIR => 31,
        libc::ELOOP => 32,
        libc::EMFILE | libc::ENFILE => errno::NFILE,
        libc::EMLINK => 34,
        libc::ENAMETOOLONG => 37,
        libc::ENOENT => 44,
        libc::ENOMEM => 48,
        libc::ENOSPC => 51,
        libc::ENOSYS => errno::NOSYS,
        libc::ENOTDIR => 54,
        libc::ENOTEMPTY => 55,
        libc::ENOTSUP => 58,
        libc::ENOTTY => 59,
        libc::ENXIO => 60,
        libc::EOVERFLOW => 61,
        libc::EPERM => 63,
        libc::EPIPE => errno::PIPE,
        libc::EROFS => 69,
        libc::ESPIPE => errno::SPIPE,
        libc::ETXTBSY => 74,
        libc::EXDEV => 63, // out of the sandbox: EPERM, as wasmtime
        _ => errno::IO,
    }
}

pub(crate) fn last_errno() -> u16 {
    wasi_errno(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
}

/// Retries a system call interrupted by a signal; `Err(errno)` on failure.
pub(crate) fn check(mut f: impl FnMut() -> libc::c_long) -> Result<libc::c_long, u16> {
    loop {
        let r = f();
        if r >= 0 {
            return Ok(r);
        }
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if e != libc::EINTR {
            return Err(wasi_errno(e));
        }
    }
}

pub(crate) fn cstr(s: &str) -> Result<CString, u16> {
    CString::new(s).map_err(|_| errno::INVAL)
}

/// `openat2(dir, path, flags, mode)` confined beneath `dir`.
pub(crate) fn open_beneath(dir: RawFd, path: &str, flags: i32, mode: u32) -> Result<OwnedFd, u16> {
    open_beneath_c(dir, &cstr(path)?, flags, mode)
}

/// [`open_beneath`] for a path of any bytes.
pub(crate) fn open_beneath_c(dir: RawFd, p: &std::ffi::CStr, flags: i32, mode: u32) -> Result<OwnedFd, u16> {
    // openat2 refuses a mode without O_CREAT (EINVAL).
    let mode = if flags & libc::O_CREAT != 0 { u64::from(mode) } else { 0 };
    let how = OpenHow { flags: (flags | libc::O_CLOEXEC) as u64, mode, resolve: RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS };
    // SAFETY: openat2 reads `how` (of the size passed) and the NUL-terminated
    // path; it returns a new descriptor or -1.
    let fd = check(|| unsafe {
        libc::syscall(libc::SYS_openat2, dir, p.as_ptr(), &how as *const OpenHow, std::mem::size_of::<OpenHow>())
    })?;
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Opens a host directory to map into the guest.
pub(crate) fn open_dir(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated path; returns a new descriptor or -1.
    let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A path split for an operation on its last component: the parent
/// directory (opened beneath `dir`) and the component's name; whether the
/// path ended in a slash (the target must be a directory).
pub(crate) struct Split {
    pub parent: OwnedFd,
    pub name: CString,
    pub trailing_slash: bool,
}

impl Split {
    /// The name as the path gave it, with its trailing slash: the kernel
    /// then says what `name/` means for the call.
    pub fn slashed(&self) -> CString {
        if !self.trailing_slash || self.name.as_bytes() == b"." {
            return self.name.clone();
        }
        let mut b = self.name.as_bytes().to_vec();
        b.push(b'/');
        CString::new(b).expect("no NUL in a name")
    }
}

/// Splits `path` (relative to `dir`) into its parent, opened beneath `dir`,
/// and its last component. A last component of `.` or `..` is resolved
/// whole: its parent is the directory it names, and the name is `.`.
pub(crate) fn split(dir: RawFd, path: &str) -> Result<Split, u16> {
    if path.is_empty() {
        return Err(44); // ENOENT
    }
    if path.starts_with('/') {
        return Err(63); // EPERM: absolute paths are outside every sandbox
    }
    if path.contains('\0') {
        return Err(errno::INVAL);
    }
    let trimmed = path.trim_end_matches('/');
    let trailing_slash = trimmed.len() != path.len();
    let (parent, name) = match trimmed.rfind('/') {
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => ("", trimmed),
    };
    if name == "." || name == ".." {
        let whole = open_beneath(dir, trimmed, libc::O_PATH | libc::O_DIRECTORY, 0)?;
        return Ok(Split { parent: whole, name: cstr(".")?, trailing_slash: true });
    }
    let parent_fd = if parent.is_empty() { dup(dir)? } else { open_beneath(dir, parent, libc::O_PATH | libc::O_DIRECTORY, 0)? };
    Ok(Split { parent: parent_fd, name: cstr(name)?, trailing_slash })
}

pub(crate) fn dup(fd: RawFd) -> Result<OwnedFd, u16> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) returns a new descriptor or -1.
    let n = check(|| unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) as libc::c_long })?;
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(n as RawFd) })
}

/// `fstatat(dir, name, flags)`, or `fstat(dir)` when `name` is empty.
pub(crate) fn stat(dir: RawFd, name: &CString, follow: bool) -> Result<libc::stat, u16> {
    // SAFETY: a zeroed stat is a valid output buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let flags =
        if name.as_bytes().is_empty() { libc::AT_EMPTY_PATH } else { 0 } | if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: fstatat writes into `st`, which we own.
    check(|| unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, flags) as libc::c_long })?;
    Ok(st)
}

/// The file offset of `fd` (0 if it has none).
pub(crate) fn position(fd: RawFd) -> u64 {
    // SAFETY: lseek on a descriptor the caller owns; changes nothing.
    let p = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
    p.max(0) as u64
}

pub(crate) fn fstat(fd: RawFd) -> Result<libc::stat, u16> {
    stat(fd, &CString::default(), true)
}

/// The WASI filetype of a stat.
pub(crate) fn filetype(mode: libc::mode_t) -> u8 {
    match mode & libc::S_IFMT {
        libc::S_IFBLK => 1,
        libc::S_IFCHR => 2,
        libc::S_IFDIR => 3,
        libc::S_IFREG => 4,
        libc::S_IFSOCK => 6,
        libc::S_IFLNK => 7,
        _ => 0,
    }
}

/// The 64-byte WASI `filestat` of a stat.
pub(crate) fn filestat_bytes(st: &libc::stat) -> [u8; 64] {
    let mut b = [0u8; 64];
    let ns = |s: i64, n: i64| (s as u64).wrapping_mul(1_000_000_000).wrapping_add(n as u64);
    b[0..8].copy_from_slice(&st.st_dev.to_le_bytes());
    b[8..16].copy_from_slice(&st.st_ino.to_le_bytes());
    b[16] = filetype(st.st_mode);
    b[24..32].copy_from_slice(&st.st_nlink.to_le_bytes());
    b[32..40].copy_from_slice(&(st.st_size as u64).to_le_bytes());
    b[40..48].copy_from_slice(&ns(st.st_atime, st.st_atime_nsec).to_le_bytes());
    b[48..56].copy_from_slice(&ns(st.st_mtime, st.st_mtime_nsec).to_le_bytes());
    b[56..64].copy_from_slice(&ns(st.st_ctime, st.st_ctime_nsec).to_le_bytes());
    b
}

/// One directory entry as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub name: Vec<u8>,
    pub ino: u64,
    pub filetype: u8,
}

/// Every entry of the directory `fd`, `.` and `..` first, the rest sorted
/// by name: a listing both replicas produce alike from the same contents.
pub(crate) fn list_dir(fd: RawFd) -> Result<Vec<Entry>, u16> {
    let own = open_beneath(fd, ".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    // SAFETY: fdopendir takes ownership of the descriptor on success.
    let d = unsafe { libc::fdopendir(own.as_raw_fd()) };
    if d.is_null() {
        return Err(last_errno());
    }
    std::mem::forget(own);
    let mut out = Vec::new();
    loop {
        // SAFETY: readdir64 on a live DIR; the entry stays valid until the
        // next call, and we copy what we need before it.
        let ent = unsafe { libc::readdir64(d) };
        if ent.is_null() {
            break;
        }
        // SAFETY: d_name is NUL-terminated within the entry.
        let (name, ino, dtype) = unsafe {
            let e = &*ent;
            (std::ffi::CStr::from_ptr(e.d_name.as_ptr()).to_bytes().to_vec(), e.d_ino, e.d_type)
        };
        let filetype = match dtype {
            libc::DT_BLK => 1,
            libc::DT_CHR => 2,
            libc::DT_DIR => 3,
            libc::DT_REG => 4,
            libc::DT_SOCK => 6,
            libc::DT_LNK => 7,
            _ => 0,
        };
        out.push(Entry { name, ino, filetype });
    }
    // SAFETY: closes the DIR and the descriptor it owns.
    unsafe { libc::closedir(d) };
    out.sort_by(|a, b| {
        let rank = |n: &[u8]| match n {
            b"." => 0,
            b".." => 1,
            _ => 2,
        };
        rank(&a.name).cmp(&rank(&b.name)).then_with(|| a.name.cmp(&b.name))
    });
    Ok(out)
}
