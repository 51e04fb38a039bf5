//! Which pages of the guest's linear memory were written since we last
//! looked: the dirty-page tracking of a live snapshot's pre-copy (VMware's
//! VMotion copies memory while the VM runs, then pauses it only for the
//! pages written meanwhile).
//!
//! Linux's userfaultfd in write-protect *async* mode (6.7+) marks pages
//! write-protected without stopping writers: the first write to a protected
//! page is resolved by the kernel itself and the page is flagged "written";
//! the `PAGEMAP_SCAN` ioctl lists written pages and protects them again in
//! one step. Soft-dirty bits would do the same but are compiled out of many
//! kernels (this one among them); a fork-based copy-on-write image (Redis's
//! BGSAVE) would copy page tables of the whole process inside the pause.
//!
//! Where userfaultfd is unavailable (older kernels, no permission), the
//! tracker cannot be built and a snapshot copies all of memory inside the
//! pause instead (correct, slower); the caller logs why once.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// The kernel ABI (include/uapi/linux/userfaultfd.h, fs.h), which Debian
// 12's headers predate.
const UFFD_API: u64 = 0xAA;
const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;
const PAGE_IS_WRITTEN: u64 = 1 << 1;
const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

#[repr(C)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

const fn ioc(dir: u64, ty: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (ty << 8) | nr
}
const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;
const UFFDIO: u64 = 0xAA;
const UFFDIO_API_IOCTL: u64 = ioc(IOC_READ | IOC_WRITE, UFFDIO, 0x3F, std::mem::size_of::<UffdioApi>());
const UFFDIO_REGISTER_IOCTL: u64 = ioc(IOC_READ | IOC_WRITE, UFFDIO, 0x00, std::mem::size_of::<UffdioRegister>());
const UFFDIO_WRITEPROTECT_IOCTL: u64 = ioc(IOC_READ | IOC_WRITE, UFFDIO, 0x06, std::mem::size_of::<UffdioWriteprotect>());
const PAGEMAP_SCAN_IOCTL: u64 = ioc(IOC_READ | IOC_WRITE, b'f' as u64, 16, std::mem::size_of::<PmScanArg>());

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Write tracking of one address range; see the module docs.
pub(crate) struct DirtyTracker {
    uffd: OwnedFd,
    pagemap: OwnedFd,
    base: usize,
    len: usize,
}

impl std::fmt::Debug for DirtyTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirtyTracker").field("base", &self.base).field("len", &self.len).finish()
    }
}

/// The OS page size.
pub(crate) fn os_page() -> usize {
    // SAFETY: sysconf has no memory effects.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

impl DirtyTracker {
    /// Registers `[base, base + len)` (page-aligned, anonymous memory of
    /// this process) for write tracking. Nothing is protected yet.
    pub(crate) fn new(base: usize, len: usize) -> Result<DirtyTracker, String> {
        let page = os_page();
        assert!(base.is_multiple_of(page) && len.is_multiple_of(page) && len > 0, "tracked range must be page-aligned");
        // SAFETY: the syscall takes flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
        if fd < 0 {
            return Err(os_err("userfaultfd"));
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let uffd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut api = UffdioApi { api: UFFD_API, features: UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED, ioctls: 0 };
        // SAFETY: UFFDIO_API reads and writes the struct we pass, of its size.
        if unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_API_IOCTL as _, &mut api) } != 0 {
            return Err(os_err("userfaultfd write-protect in async mode (Linux 6.7+)"));
        }
        let mut reg = UffdioRegister {
            range: UffdioRange { start: base as u64, len: len as u64 },
            mode: UFFDIO_REGISTER_MODE_WP,
            ioctls: 0,
        };
        // SAFETY: as above; the range is memory of this process.
        if unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_REGISTER_IOCTL as _, &mut reg) } != 0 {
            return Err(os_err("registering guest memory with userfaultfd"));
        }
        let path = c"/proc/self/pagemap";
        // SAFETY: a NUL-terminated path; returns a new descriptor or -1.
        let pm = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if pm < 0 {
            return Err(os_err("/proc/self/pagemap"));
        }
        // SAFETY: `pm` is a fresh descriptor that nothing else owns.
        let pagemap = unsafe { OwnedFd::from_raw_fd(pm) };
        Ok(DirtyTracker { uffd, pagemap, base, len })
    }

    /// Write-protects `[offset, offset + len)` of the range: writes after
    /// this are reported by [`DirtyTracker::take_written`].
    pub(crate) fn protect(&self, offset: usize, len: usize) -> Result<(), String> {
        if len == 0 {
            return Ok(());
        }
        assert!(offset + len <= self.len, "protect beyond the tracked range");
        let mut wp = UffdioWriteprotect {
            range: UffdioRange { start: (self.base + offset) as u64, len: len as u64 },
            mode: UFFDIO_WRITEPROTECT_MODE_WP,
        };
        // SAFETY: UFFDIO_WRITEPROTECT reads the struct we pass, of its size.
        if unsafe { libc::ioctl(self.uffd.as_raw_fd(), UFFDIO_WRITEPROTECT_IOCTL as _, &mut wp) } != 0 {
            return Err(os_err("write-protecting guest memory"));
        }
        Ok(())
    }

    /// The ranges (offsets from the base) written in `[0, upto)` since they
    /// were last protected, which are protected again in the same step.
    pub(crate) fn take_written(&self, upto: usize, out: &mut Vec<(usize, usize)>) -> Result<(), String> {
        out.clear();
        let mut regions = vec![PageRegion::default(); 512];
        let end = (self.base + upto.min(self.len)) as u64;
        let mut start = self.base as u64;
        while start < end {
            let mut arg = PmScanArg {
                size: std::mem::size_of::<PmScanArg>() as u64,
                flags: PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
                start,
                end,
                walk_end: 0,
                vec: regions.as_mut_ptr() as u64,
                vec_len: regions.len() as u64,
                max_pages: 0,
                category_inverted: 0,
                category_mask: PAGE_IS_WRITTEN,
                category_anyof_mask: 0,
                return_mask: PAGE_IS_WRITTEN,
            };
            // SAFETY: PAGEMAP_SCAN reads `arg` and writes at most `vec_len`
            // regions into `regions`, which outlives the call.
            let n = unsafe { libc::ioctl(self.pagemap.as_raw_fd(), PAGEMAP_SCAN_IOCTL as _, &mut arg) };
            if n < 0 {
                return Err(os_err("scanning guest memory for written pages (PAGEMAP_SCAN)"));
            }
            for r in &regions[..n as usize] {
                out.push((r.start as usize - self.base, r.end as usize - self.base));
            }
            if arg.walk_end <= start || arg.walk_end >= end {
                break;
            }
            start = arg.walk_end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tracker reports exactly the pages written after protection, and
    /// a scan re-protects them.
    #[test]
    fn written_pages_are_reported_once() {
        let page = os_page();
        let len = 64 * page;
        // SAFETY: a fresh private anonymous mapping we unmap below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let mem = base as *mut u8;
        let t = match DirtyTracker::new(base as usize, len) {
            Ok(t) => t,
            Err(e) => {
                panic!("userfaultfd write-protect tracking is unavailable here ({e}); snapshots would pause for a full copy")
            }
        };
        t.protect(0, len).unwrap();
        // SAFETY: offsets inside the mapping.
        unsafe {
            *mem.add(3 * page) = 1;
            *mem.add(3 * page + 7) = 2;
            *mem.add(40 * page) = 3;
        }
        let mut w = Vec::new();
        t.take_written(len, &mut w).unwrap();
        assert_eq!(w, [(3 * page, 4 * page), (40 * page, 41 * page)]);
        t.take_written(len, &mut w).unwrap();
        assert!(w.is_empty(), "a scan protects again: {w:?}");
        // SAFETY: inside the mapping.
        unsafe { *mem.add(63 * page) = 4 };
        t.take_written(len, &mut w).unwrap();
        assert_eq!(w, [(63 * page, 64 * page)]);
        drop(t);
        // SAFETY: unmapping what we mapped.
        unsafe { libc::munmap(base, len) };
    }
}
