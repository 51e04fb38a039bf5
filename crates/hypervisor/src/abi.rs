//! Numbers of the preview1 ABI that modules below `wasi` need too: the
//! import module's name, errno values, rights. A leaf: it names nothing
//! else of this crate, so the fd table, the world and the filesystem can
//! speak WASI without depending on the functions (`wasi`) that use them.

pub const MODULE: &str = "wasi_snapshot_preview1";

/// preview1 errno values used here.
pub mod errno {
    pub const AGAIN: u16 = 6;
    pub const BADF: u16 = 8;
    pub const CONNABORTED: u16 = 13;
    pub const CONNRESET: u16 = 15;
    pub const FAULT: u16 = 21;
    pub const INTR: u16 = 27;
    pub const INVAL: u16 = 28;
    pub const IO: u16 = 29;
    pub const NFILE: u16 = 41;
    pub const NOBUFS: u16 = 42;
    pub const NOSYS: u16 = 52;
    pub const NOTCONN: u16 = 53;
    pub const NOTSOCK: u16 = 57;
    pub const PIPE: u16 = 64;
    pub const SPIPE: u16 = 70;
    pub const TIMEDOUT: u16 = 73;
}

/// Every right preview1 defines (rights are checked by the gate as
/// wasmtime does; see `wasi::fs`).
pub const RIGHTS_ALL: u64 = (1 << 30) - 1;

pub(crate) const RIGHTS_FD_DATASYNC: u64 = 1;
pub(crate) const RIGHTS_FD_READ: u64 = 1 << 1;
pub(crate) const RIGHTS_FD_SEEK: u64 = 1 << 2;
pub(crate) const RIGHTS_FD_WRITE: u64 = 1 << 6;
pub(crate) const RIGHTS_FD_ALLOCATE: u64 = 1 << 8;
pub(crate) const RIGHTS_FD_READDIR: u64 = 1 << 14;
pub(crate) const RIGHTS_PATH_FILESTAT_SET_SIZE: u64 = 1 << 19;
pub(crate) const RIGHTS_FD_FILESTAT_SET_SIZE: u64 = 1 << 22;

/// The rights a descriptor reports (`fd_fdstat_get`), as wasmtime reports
/// them: everything, but what its open mode or kind cannot do.
pub(crate) fn rights_of(dir: bool, read: bool, write: bool) -> u64 {
    let mut r = RIGHTS_ALL;
    if dir {
        r &= !(RIGHTS_FD_SEEK | RIGHTS_FD_FILESTAT_SET_SIZE | RIGHTS_PATH_FILESTAT_SET_SIZE | RIGHTS_FD_WRITE);
    }
    if !read {
        r &= !(RIGHTS_FD_READ | RIGHTS_FD_READDIR);
    }
    if !write {
        r &= !RIGHTS_FD_WRITE;
    }
    r
}
