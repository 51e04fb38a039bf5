//! What the guest changes in its mapped directories while a live snapshot
//! copies them (the disk's counterpart of `dirty.rs`).
//!
//! The copy runs on the snapshot's thread while the guest keeps running,
//! so a file may change after (or while) it was copied. Every call that
//! changes a file's contents or size marks it here, *after* the change is
//! made: a mark taken by a copy round was made by a change that round's
//! reads see, and a change the round's reads may have missed is marked
//! after the round took the marks, so the next round (or the pause, which
//! takes the last marks with the guest stopped) copies it again. Changes
//! to the tree itself (create, rename, unlink, link, mkdir) need no marks:
//! the pause walks the whole tree and sends it.
//!
//! Files are identified by (device, inode), which renames do not change;
//! contents are marked in [`BLOCK`]-sized blocks.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The unit of change marks and of content checksums.
pub(crate) const BLOCK: u64 = 64 * 1024;

/// A file as the joiner last received it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sent {
    /// The key the joiner stores it under.
    pub key: u64,
    pub size: u64,
    /// crc32c of each block as sent (the last one may be partial).
    pub crcs: Vec<u32>,
}

#[derive(Default)]
pub(crate) struct TrackState {
    /// Files changed since the last copy round took the marks: the blocks
    /// written (a file present with no blocks had its size changed).
    pub changed: HashMap<(u64, u64), BTreeSet<u64>>,
    /// Files sent so far, by (device, inode).
    pub sent: HashMap<(u64, u64), Sent>,
    pub next_key: u64,
}

impl TrackState {
    /// The key of a file, assigned at its first sending.
    pub fn key(&mut self, ino: (u64, u64)) -> u64 {
        if let Some(s) = self.sent.get(&ino) {
            return s.key;
        }
        let key = self.next_key;
        self.next_key += 1;
        self.sent.insert(ino, Sent { key, size: u64::MAX, crcs: Vec::new() });
        key
    }

    /// Puts back marks a round took but could not act on.
    pub fn remark(&mut self, ino: (u64, u64), blocks: BTreeSet<u64>) {
        self.changed.entry(ino).or_default().extend(blocks);
    }
}

/// Shared between the guest's thread (marks) and the snapshot's (copy).
pub(crate) struct DiskTrack {
    active: AtomicBool,
    state: Mutex<TrackState>,
    /// Duplicates of the mapped directories' descriptors, in flag order.
    pub roots: Vec<OwnedFd>,
}

impl DiskTrack {
    pub fn new(roots: Vec<OwnedFd>) -> DiskTrack {
        DiskTrack { active: AtomicBool::new(false), state: Mutex::new(TrackState::default()), roots }
    }

    pub fn active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// A snapshot starts copying: forget any earlier one, mark from now on.
    pub fn start(&self) {
        *self.lock() = TrackState::default();
        self.active.store(true, Ordering::SeqCst);
    }

    /// The snapshot ended: no more marks, nothing kept.
    pub fn stop(&self) {
        self.active.store(false, Ordering::SeqCst);
        *self.lock() = TrackState::default();
    }

    pub fn lock(&self) -> MutexGuard<'_, TrackState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes `[start, end)` of a file were written.
    pub fn wrote(&self, ino: (u64, u64), start: u64, end: u64) {
        if !self.active() {
            return;
        }
        let mut s = self.lock();
        let blocks = s.changed.entry(ino).or_default();
        if end > start {
            blocks.extend(start / BLOCK..end.div_ceil(BLOCK));
        }
    }

    /// A file's size changed, or it was created or truncated.
    pub fn resized(&self, ino: (u64, u64)) {
        if !self.active() {
            return;
        }
        self.lock().changed.entry(ino).or_default();
    }

    /// The marks since the last call.
    pub fn take_changed(&self) -> HashMap<(u64, u64), BTreeSet<u64>> {
        std::mem::take(&mut self.lock().changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_blocks_and_only_while_active() {
        let t = DiskTrack::new(Vec::new());
        t.wrote((1, 2), 0, 10);
        assert!(t.take_changed().is_empty(), "no marks before a snapshot starts");
        t.start();
        t.wrote((1, 2), BLOCK - 1, BLOCK + 1);
        t.wrote((1, 3), 5 * BLOCK, 5 * BLOCK);
        t.resized((1, 4));
        let c = t.take_changed();
        assert_eq!(c[&(1, 2)].iter().copied().collect::<Vec<_>>(), vec![0, 1]);
        assert!(c[&(1, 3)].is_empty() && c[&(1, 4)].is_empty());
        assert!(t.take_changed().is_empty(), "taking clears");
        let mut s = t.lock();
        let k = s.key((9, 9));
        assert_eq!((k, s.key((9, 9)), s.key((9, 8))), (0, 0, 1));
        drop(s);
        t.stop();
        t.wrote((1, 2), 0, 1);
        assert!(t.take_changed().is_empty());
    }
}
