//! The guest's filesystem (DESIGN §3, "a disk per replica"): directories of
//! the host mapped into the guest with `--map-dir HOST::GUEST`, each replica
//! with its own copy. The guest's descriptors name objects here (an open
//! file or directory of the host, confined beneath its mapped directory);
//! `wasi::fs` performs the preview1 calls on them and passes every call
//! through the record/replay gate: the primary records what the guest saw,
//! the backup performs the same call on its own copy, checks its result
//! against the recording and hands the guest the recorded one.
//!
//! - `host`: the system calls, confinement, errors in WASI terms.
//! - `track`: which files the guest changes while a live snapshot copies
//!   the directories (the primary's side of a join).
//! - `copy`: the directories in a snapshot — the pre-copy while the guest
//!   runs, the consistent cut in the pause, the tree and its hash.
//! - `restore`: the joiner's side: empty its copy, receive the files,
//!   build the tree, reopen the guest's open files and directories.
//!
//! # Size limits
//!
//! With `--disk-bytes-max` each mapped directory holds at most that many
//! bytes of file contents (its *usage*: the sizes of the distinct regular
//! files reachable beneath it). A write, truncate or rename that would pass
//! the limit fails with `ENOSPC` before touching anything, at the same call
//! on every replica: both execute the same calls on the same files, and a
//! joiner takes the primary's usage with its snapshot. Without a limit no
//! accounting is done. Files unlinked while open stop counting when they
//! are unlinked; renames and hard links between two mapped directories are
//! refused (`EXDEV`) when a limit is set.

pub(crate) mod copy;
pub(crate) mod host;
pub(crate) mod restore;
pub(crate) mod track;

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;

pub(crate) use host::Entry;

/// WASI's `ENOSPC` and `EXDEV`.
pub(crate) const NOSPC: u16 = 51;
pub(crate) const XDEV: u16 = 75;

/// A host directory mapped into the guest at `guest` (`--map-dir
/// HOST::GUEST`). Replicas map the same guest paths; each has its own host
/// directory (which must hold the same files when the guest starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapDir {
    pub host: PathBuf,
    pub guest: String,
}

impl MapDir {
    /// Parses `HOST::GUEST`.
    pub fn parse(s: &str) -> Result<MapDir, String> {
        let (host, guest) = s
            .split_once("::")
            .ok_or_else(|| format!("--map-dir {s:?}: expected HOST_DIR::GUEST_PATH (e.g. ./data::/data, or ./data::/)"))?;
        if host.is_empty() || guest.is_empty() {
            return Err(format!("--map-dir {s:?}: both the host directory and the guest path are needed"));
        }
        if guest.contains('\0') {
            return Err(format!("--map-dir {s:?}: the guest path has a NUL byte"));
        }
        Ok(MapDir { host: PathBuf::from(host), guest: guest.to_string() })
    }
}

/// An open file or directory of the host.
pub(crate) struct Obj {
    pub fd: OwnedFd,
    /// The guest's path of it, for divergence reports.
    pub path: String,
    /// A directory's listing, taken when the guest reads from cookie 0, so
    /// later cookies index the same list.
    pub listing: Option<Vec<Entry>>,
    /// The mapped directory it lies beneath (its index in flag order).
    pub root: usize,
    /// Its (device, inode) on this host.
    pub ino: (u64, u64),
}

impl Obj {
    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The host objects behind the guest's file and directory descriptors.
#[derive(Default)]
pub(crate) struct Fs {
    objs: HashMap<u64, Obj>,
    next: u64,
    /// How many directories are mapped (objects 0, 1, … are them).
    pub roots: usize,
    /// The mapped directories' host paths, for messages.
    pub root_paths: Vec<PathBuf>,
    /// `--disk-bytes-max`, and each mapped directory's usage under it.
    pub limit: Option<u64>,
    pub usage: Vec<u64>,
    /// Set while this guest may be snapshotted: what the guest changes.
    pub track: Option<Arc<track::DiskTrack>>,
}

impl Fs {
    /// Opens the mapped directories, in order; their object ids are 0, 1, …
    /// With a size limit, measures what each holds.
    pub fn open(dirs: &[MapDir], limit: Option<u64>) -> Result<Fs, String> {
        let mut fs = Fs { limit, ..Fs::default() };
        for (root, d) in dirs.iter().enumerate() {
            let shown = || format!("--map-dir {}::{}", d.host.display(), d.guest);
            let fd = host::open_dir(&d.host).map_err(|e| format!("{}: cannot open {}: {e}", shown(), d.host.display()))?;
            let st = host::fstat(fd.as_raw_fd()).map_err(|e| format!("{}: cannot stat it: errno {e}", shown()))?;
            if limit.is_some() {
                let used = copy::usage(fd.as_raw_fd()).map_err(|e| format!("{}: cannot measure it: {e}", shown()))?;
                if limit.is_some_and(|l| used > l) {
                    log::warn!(
                        "{}: holds {used} bytes of files, more than --disk-bytes-max {}: the guest's writes that grow files fail (ENOSPC) until it removes some",
                        shown(),
                        limit.unwrap_or(0)
                    );
                }
                fs.usage.push(used);
            }
            fs.add(Obj { fd, path: d.guest.clone(), listing: None, root, ino: (st.st_dev, st.st_ino) });
            fs.root_paths.push(d.host.clone());
        }
        fs.roots = dirs.len();
        Ok(fs)
    }

    /// Every open object, by id (for a snapshot).
    pub fn objects(&self) -> impl Iterator<Item = (u64, &Obj)> {
        self.objs.iter().map(|(id, o)| (*id, o))
    }

    /// The id the next object gets.
    pub fn next_id(&self) -> u64 {
        self.next
    }

    /// A restored object under the id it had on the primary.
    pub fn put(&mut self, id: u64, obj: Obj) {
        self.objs.insert(id, obj);
    }

    pub fn set_next_id(&mut self, next: u64) {
        self.next = next;
    }

    /// Whether the guest's changes are being tracked (a snapshot is
    /// copying the directories).
    pub fn tracking(&self) -> bool {
        self.track.as_ref().is_some_and(|t| t.active())
    }

    /// The guest wrote bytes `[start, end)` of object `id`.
    pub fn wrote(&self, id: u64, start: u64, end: u64) {
        if let (Some(t), Some(o)) = (&self.track, self.objs.get(&id)) {
            t.wrote(o.ino, start, end);
        }
    }

    /// The guest changed the size of object `id` (or created it).
    pub fn resized(&self, id: u64) {
        if let (Some(t), Some(o)) = (&self.track, self.objs.get(&id)) {
            t.resized(o.ino);
        }
    }

    /// The guest changed the size of the file with this (device, inode).
    pub fn resized_ino(&self, ino: (u64, u64)) {
        if let Some(t) = &self.track {
            t.resized(ino);
        }
    }

    /// Before file `fd` of object `id` may grow to `new_size`: `ENOSPC`
    /// when its mapped directory would pass the limit. Returns the file's
    /// size before (`None` without a limit: no accounting).
    pub fn reserve(&self, id: u64, fd: RawFd, new_size: impl FnOnce(u64) -> u64) -> Result<Option<u64>, u16> {
        let (Some(limit), Some(o)) = (self.limit, self.objs.get(&id)) else { return Ok(None) };
        let st = host::fstat(fd)?;
        let old = st.st_size as u64;
        let new = new_size(old);
        // A file unlinked while open no longer counts (see the module docs).
        if new > old && self.usage[o.root].saturating_add(new - old) > limit {
            return Err(NOSPC);
        }
        Ok(Some(old))
    }

    /// After a call that may have changed the size of object `id`, whose
    /// size was `old` before: the usage follows.
    pub fn settle(&mut self, id: u64, fd: RawFd, old: Option<u64>) {
        let (Some(old), Some(o)) = (old, self.objs.get(&id)) else { return };
        let root = o.root;
        if let Ok(st) = host::fstat(fd) {
            if st.st_nlink > 0 {
                let new = st.st_size as u64;
                self.usage[root] = (self.usage[root] + new).saturating_sub(old);
            }
        }
    }

    /// A regular file of `bytes` under mapped directory `root` stopped
    /// counting (unlinked, or replaced by a rename).
    pub fn released(&mut self, root: usize, bytes: u64) {
        if self.limit.is_some() {
            self.usage[root] = self.usage[root].saturating_sub(bytes);
        }
    }

    pub fn add(&mut self, obj: Obj) -> u64 {
        let id = self.next;
        self.next += 1;
        self.objs.insert(id, obj);
        id
    }

    pub fn get(&self, id: u64) -> Option<&Obj> {
        self.objs.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Obj> {
        self.objs.get_mut(&id)
    }

    pub fn remove(&mut self, id: u64) -> Option<Obj> {
        self.objs.remove(&id)
    }
}

/// Joins a directory's guest path and a path below it, for messages.
pub(crate) fn join(base: &str, path: &str) -> String {
    if base.ends_with('/') {
        format!("{base}{path}")
    } else {
        format!("{base}/{path}")
    }
}
