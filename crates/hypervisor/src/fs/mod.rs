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

pub(crate) mod host;

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

pub(crate) use host::Entry;

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
}

impl Fs {
    /// Opens the mapped directories, in order; their object ids are 0, 1, …
    pub fn open(dirs: &[MapDir]) -> Result<Fs, String> {
        let mut fs = Fs::default();
        for d in dirs {
            let fd = host::open_dir(&d.host)
                .map_err(|e| format!("--map-dir {}::{}: cannot open {}: {e}", d.host.display(), d.guest, d.host.display()))?;
            fs.add(Obj { fd, path: d.guest.clone(), listing: None });
        }
        Ok(fs)
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
