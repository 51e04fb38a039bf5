//! WATCH: optimistic locking for MULTI … EXEC, as Redis does it.
//!
//! The decision is the primary's alone and is made before anything is
//! logged: EXEC of a connection whose watched keys changed never becomes
//! an op (it answers a null array), and one whose keys did not change
//! becomes the usual transaction op, applied right after on the primary
//! (the node applies each write as it decodes it), so nothing can slip in
//! between the check and the transaction. The backup only ever sees
//! transactions that passed; it needs no watch state, and none is
//! replicated or snapshotted.
//!
//! The table counts changes per watched key only, so the cost for
//! unwatched keys is one relaxed atomic load per store mutation. A change
//! is any removal or store of the key's entry (`Store::take_any`,
//! `Store::put`, FLUSHALL of a key that exists): a command that takes an
//! entry and puts it back unchanged (a WRONGTYPE error on a write) counts
//! too, which can only abort a transaction Redis would have run, never
//! the other way round. As in Redis 7, a watched key that expires before
//! EXEC also aborts it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Per-store table of the keys some connection watches.
#[derive(Default)]
pub struct WatchTable {
    /// Keys in `keys`: zero means no store mutation needs the lock.
    watched: AtomicUsize,
    keys: Mutex<HashMap<Box<[u8]>, Watched>>,
}

struct Watched {
    /// Connections watching the key.
    watchers: usize,
    /// Changes since the first of them started watching.
    changes: u64,
}

/// What one connection saw of one key when it watched it.
#[derive(Debug)]
pub struct Mark {
    key: Box<[u8]>,
    changes: u64,
    /// The key existed, unexpired: its expiry before EXEC aborts too.
    live: bool,
}

impl WatchTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<Box<[u8]>, Watched>> {
        // Nothing panics while holding it; a poisoned table is still consistent.
        self.keys.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether any key is watched (the mutation hot path's only cost).
    pub fn active(&self) -> bool {
        self.watched.load(Ordering::Relaxed) > 0
    }

    /// Records a change of `key`, if watched.
    pub fn touch(&self, key: &[u8]) {
        if let Some(w) = self.lock().get_mut(key) {
            w.changes += 1;
        }
    }

    /// Records a change of every watched key for which `exists` holds.
    pub fn touch_existing(&self, exists: impl Fn(&[u8]) -> bool) {
        for (k, w) in self.lock().iter_mut() {
            if exists(k) {
                w.changes += 1;
            }
        }
    }

    fn watch(&self, key: &[u8], live: bool) -> Mark {
        let mut keys = self.lock();
        let w = keys.entry(key.into()).or_insert_with(|| {
            self.watched.fetch_add(1, Ordering::Relaxed);
            Watched { watchers: 0, changes: 0 }
        });
        w.watchers += 1;
        Mark { key: key.into(), changes: w.changes, live }
    }

    fn changes(&self, key: &[u8]) -> u64 {
        self.lock().get(key).map_or(0, |w| w.changes)
    }

    fn unwatch(&self, marks: &[Mark]) {
        let mut keys = self.lock();
        for m in marks {
            let w = keys.get_mut(&m.key).expect("a mark's key stays in the table until unwatched");
            debug_assert!(w.watchers > 0);
            w.watchers -= 1;
            if w.watchers == 0 {
                keys.remove(&m.key);
                self.watched.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// One connection's watched keys; unwatches them when dropped (UNWATCH,
/// EXEC, DISCARD, RESET, or the connection closing).
pub struct Watching {
    table: Arc<WatchTable>,
    marks: Vec<Mark>,
}

impl Watching {
    pub fn new(table: Arc<WatchTable>) -> Watching {
        Watching { table, marks: Vec::new() }
    }

    /// Watches `key` (again watching a key already watched does nothing,
    /// as in Redis); `live` is whether it exists unexpired now.
    pub fn add(&mut self, key: &[u8], live: bool) {
        if !self.marks.iter().any(|m| &*m.key == key) {
            let mark = self.table.watch(key, live);
            self.marks.push(mark);
        }
    }

    /// Whether a watched key changed, or expired, since it was watched;
    /// `live` says whether a key exists unexpired now.
    pub fn dirty(&self, live: impl Fn(&[u8]) -> bool) -> bool {
        self.marks.iter().any(|m| self.table.changes(&m.key) != m.changes || (m.live && !live(&m.key)))
    }

    pub fn same_table(&self, table: &Arc<WatchTable>) -> bool {
        Arc::ptr_eq(&self.table, table)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.table.unwatch(&self.marks);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_counted_per_watched_key_and_forgotten_with_the_last_watcher() {
        let t = Arc::new(WatchTable::default());
        assert!(!t.active());
        let mut a = Watching::new(t.clone());
        a.add(b"k", true);
        a.add(b"k", true);
        let mut b = Watching::new(t.clone());
        b.add(b"k", true);
        assert!(t.active());
        assert!(!a.dirty(|_| true));
        t.touch(b"other");
        assert!(!a.dirty(|_| true));
        assert!(a.dirty(|_| false), "an expired watched key aborts");
        t.touch(b"k");
        assert!(a.dirty(|_| true) && b.dirty(|_| true));
        drop(a);
        assert!(t.active());
        let mut c = Watching::new(t.clone());
        c.add(b"k", false);
        assert!(!c.dirty(|_| false), "a new watcher counts from its own WATCH");
        drop(b);
        drop(c);
        assert!(!t.active());
        assert!(t.lock().is_empty());
    }
}
