//! Blocking commands of the key-value service (BLPOP, BRPOP, BLMOVE,
//! BRPOPLPUSH, BZPOPMIN, BZPOPMAX, BLMPOP, BZMPOP): the waiting, on the
//! primary.
//!
//! A blocking command whose keys are all absent is not logged: its
//! connection holds it, unread, until a write names one of its keys (then
//! it is decoded again, and logged if a key now exists) or its timeout
//! passes (then it answers a null array, released like a read's reply,
//! since it tells that nothing arrived). What is logged is thus always a
//! pop that finds its element, so the backup pops the same one; the reply
//! waits for the backup's ack as every write's does. A connection that
//! waits is closed when its node stops being the primary: its client
//! retries on the new primary and no element is lost, because none was
//! popped. Timeouts run on the primary's clock; a failover restarts them.
//!
//! Waking is by key: a write wakes the connections waiting on any key its
//! arguments name (a transaction or script wakes them all), which then
//! check again. A spurious wake costs one check.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Connections waiting, by key.
#[derive(Default)]
pub(crate) struct Waiting {
    by_key: HashMap<Box<[u8]>, BTreeMap<u64, Rc<Notify>>>,
}

impl Waiting {
    pub(crate) fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Wakes the connections waiting on `key`.
    pub(crate) fn wake(&self, key: &[u8]) {
        for w in self.by_key.get(key).into_iter().flat_map(BTreeMap::values) {
            w.notify_one();
        }
    }

    pub(crate) fn wake_all(&self) {
        for w in self.by_key.values().flat_map(BTreeMap::values) {
            w.notify_one();
        }
    }
}

/// What a write decoded on a connection may have changed, for waking.
pub(crate) enum Touches {
    Nothing,
    Keys(Vec<Box<[u8]>>),
    Everything,
}

/// One connection's wait; dropping it stops waiting.
pub(crate) struct Blocked {
    id: u64,
    waiting: Rc<RefCell<Waiting>>,
    keys: Vec<Box<[u8]>>,
    deadline: Option<Instant>,
}

impl Blocked {
    /// Starts waiting on `keys` (woken through `waker`) for `timeout_ms`
    /// (0: for ever).
    pub(crate) fn new(id: u64, waiting: Rc<RefCell<Waiting>>, waker: &Rc<Notify>, keys: &[&[u8]], timeout_ms: u64) -> Blocked {
        let mut w = waiting.borrow_mut();
        let keys: Vec<Box<[u8]>> = keys.iter().map(|k| Box::from(*k)).collect();
        for k in &keys {
            w.by_key.entry(k.clone()).or_default().insert(id, waker.clone());
        }
        drop(w);
        let deadline = (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(timeout_ms));
        Blocked { id, waiting, keys, deadline }
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    pub(crate) fn timed_out(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        let mut w = self.waiting.borrow_mut();
        for k in &self.keys {
            if let Some(m) = w.by_key.get_mut(k) {
                m.remove(&self.id);
                if m.is_empty() {
                    w.by_key.remove(k);
                }
            }
        }
    }
}

/// Commands that block, by their lowercase name.
pub(crate) fn is_blocking(name: &str) -> bool {
    matches!(name, "blpop" | "brpop" | "blmove" | "brpoplpush" | "bzpopmin" | "bzpopmax" | "blmpop" | "bzmpop")
}

/// Whether a write may change keys its arguments do not name.
pub(crate) fn touches_anything(name: &str) -> bool {
    matches!(name, "exec" | "eval" | "evalsha" | "us.call" | "flushall" | "flushdb")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_are_woken_by_key_and_forgotten_when_dropped() {
        let waiting = Rc::new(RefCell::new(Waiting::default()));
        let (n1, n2) = (Rc::new(Notify::new()), Rc::new(Notify::new()));
        let a = Blocked::new(1, waiting.clone(), &n1, &[b"k", b"j"], 0);
        let b = Blocked::new(2, waiting.clone(), &n2, &[b"k"], 50);
        assert!(a.deadline().is_none() && b.deadline().is_some() && !a.timed_out());
        waiting.borrow().wake(b"j");
        drop(a);
        assert_eq!(waiting.borrow().by_key.len(), 1);
        drop(b);
        assert!(waiting.borrow().is_empty());
    }
}
