//! The keyspace: a sharded copy-on-write map.
//!
//! The keys are spread over [`SHARDS`] shards, each behind an `Arc`. A write
//! calls `Arc::make_mut` on its shard, which copies the shard only if a
//! snapshot still holds it; taking a snapshot clones the vector of `Arc`s
//! (O(shards), no data copied). The snapshot writer drops each shard's `Arc`
//! once serialized, so a shard written after that is not copied either. The
//! cost of a live snapshot is thus bounded by the shards written while the
//! snapshot is between them (DESIGN §3, joining by state transfer).
//!
//! Expiry is lazy, as in Redis: an entry whose expiry is in the past behaves
//! as absent, decided by the time the caller passes in (`Clock`), and is
//! removed when a write touches it or the expire cycle names it.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use foldhash::fast::{FixedState, RandomState};

use crate::entry::Entry;
use crate::watch::WatchTable;

/// Number of shards: enough that a snapshot rarely forces a copy of a
/// shard the writer is about to need, few enough that an empty store and a
/// snapshot's `Arc` vector stay small.
pub const SHARDS: usize = 4096;

/// Routes keys to shards. Fixed seed so a key lives in the same shard in
/// every process (reproducible scans); independent of the per-shard table
/// hash, whose low bits would otherwise all be equal within one shard.
const ROUTER: FixedState = FixedState::with_seed(0x5348_4152_4453_0001);

/// Where the time used for lazy expiry comes from. Writes get it from the
/// replicated `Ctx` (only when an entry with an expiry is touched, since each
/// call costs log bytes); reads get it as a plain value.
pub trait Clock {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&mut self) -> u64;
    /// A random value. Writes get it from the replicated `Ctx` (recorded on
    /// the primary, replayed on the backup, so SPOP pops the same members
    /// on both); reads from a local source, since a read changes no state.
    fn random_u64(&mut self) -> u64;
    /// PUBLISH: delivers `message` to the node's subscribers of `channel`
    /// and returns how many it reached (`Ctx::publish`: counted and
    /// delivered on the primary, the recorded count on the backup). Reads
    /// never publish; default 0.
    fn publish(&mut self, channel: &[u8], message: &[u8]) -> u64 {
        let _ = (channel, message);
        0
    }
}

/// A time known in advance (the read path); randomness is local.
pub struct FixedClock(pub u64);

impl Clock for FixedClock {
    fn now_ms(&mut self) -> u64 {
        self.0
    }

    fn random_u64(&mut self) -> u64 {
        // Each `RandomState` is freshly keyed: a random value per call.
        std::collections::hash_map::RandomState::new().hash_one(self.0)
    }
}

/// Whether `e` is still alive: Redis deletes a key once `now > expire`.
pub fn is_live(e: &Entry, clock: &mut dyn Clock) -> bool {
    match e.expire() {
        None => true,
        Some(t) => t >= clock.now_ms(),
    }
}

/// One shard's entries and the bookkeeping the expire cycle needs.
pub struct Shard {
    pub(crate) map: HashSet<Entry, RandomState>,
    /// Entries with an expiry; shards without any are skipped by the
    /// expire cycle in O(1).
    pub(crate) expiring: usize,
    /// A lower bound of the expiries in this shard (`u64::MAX`: none known).
    /// Only a hint for the primary's expire-cycle scan, never replicated:
    /// lowered when an expiry is set, set to the exact minimum by a scan.
    pub(crate) next_expire: AtomicU64,
    /// The memory estimate of its entries (`Entry::mem_bytes`), also the
    /// snapshot's progress hint.
    pub(crate) bytes: u64,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { map: HashSet::with_hasher(RandomState::default()), expiring: 0, next_expire: AtomicU64::new(u64::MAX), bytes: 0 }
    }
}

impl Clone for Shard {
    fn clone(&self) -> Self {
        Shard {
            map: self.map.clone(),
            expiring: self.expiring,
            next_expire: AtomicU64::new(self.next_expire.load(Ordering::Relaxed)),
            bytes: self.bytes,
        }
    }
}

impl Shard {
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.map.iter()
    }

    /// Counts `e` in (`sign` > 0) or out; returns its estimated bytes.
    fn account(&mut self, e: &Entry, sign: i64) -> u64 {
        let b = e.mem_bytes();
        if sign > 0 {
            self.bytes += b;
        } else {
            debug_assert!(self.bytes >= b, "an entry leaves with the bytes it was counted in with");
            self.bytes -= b;
        }
        if let Some(t) = e.expire() {
            if sign > 0 {
                self.expiring += 1;
                self.next_expire.fetch_min(t, Ordering::Relaxed);
            } else {
                self.expiring -= 1;
            }
        }
        b
    }
}

/// The whole keyspace.
#[derive(Clone)]
pub struct Store {
    shards: Vec<Arc<Shard>>,
    /// Physical entries, including expired ones not yet reclaimed (what
    /// Redis's DBSIZE counts too).
    keys: usize,
    /// Entries that carry an expiry (INFO keyspace `expires=`).
    expiring: usize,
    /// The memory estimate of every entry (INFO's `used_memory`): the sum
    /// of the shards' `bytes`, kept as entries come and go. A function of
    /// the entries alone, so both replicas hold the same figure.
    used: u64,
    /// The highest `used` seen (INFO's `used_memory_peak`).
    peak: u64,
    /// The access time a write stamps on the entries it stores (seconds
    /// since the Unix epoch); local, set by `Kv` before each op.
    lru_now: u32,
    /// The keys clients WATCH: local to this process, never replicated.
    watch: Arc<WatchTable>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

pub fn shard_of(key: &[u8]) -> usize {
    let mut h = ROUTER.build_hasher();
    h.write(key);
    (h.finish() as usize) & (SHARDS - 1)
}

impl Store {
    pub fn new() -> Store {
        Store {
            shards: (0..SHARDS).map(|_| Arc::new(Shard::default())).collect(),
            keys: 0,
            expiring: 0,
            used: 0,
            peak: 0,
            lru_now: 0,
            watch: Arc::default(),
        }
    }

    /// The estimated bytes of all entries (`Entry::mem_bytes`).
    pub fn used_memory(&self) -> u64 {
        self.used
    }

    pub fn used_memory_peak(&self) -> u64 {
        self.peak
    }

    /// The access time the next writes stamp (seconds since the epoch).
    pub fn set_lru_now(&mut self, now_s: u32) {
        self.lru_now = now_s;
    }

    pub fn lru_now(&self) -> u32 {
        self.lru_now
    }

    /// Records an access to `key` at `now_s` (a read on the primary).
    pub fn touch(&self, key: &[u8], now_s: u32) {
        if let Some(e) = self.get_any(key) {
            e.stamp(now_s);
        }
    }

    /// A random entry for an eviction sample, drawn with `rng`, among
    /// those `skip` passes over (with `volatile`: only entries with an
    /// expiry count). Every key has the same chance: a probe draws a shard
    /// and a position below twice the mean occupancy, and hits if the
    /// shard has an entry there (rejection sampling). Walking from a random
    /// shard to the next occupied one, or drawing among a shard's entries,
    /// would favour keys with few neighbours, and LRU eviction makes those
    /// the keys it spares, until it evicts the keys read most recently.
    /// A store the probes miss is walked from a random shard. `None` if no
    /// entry qualifies.
    pub fn sample(&self, rng: &mut dyn FnMut() -> u64, volatile: bool, skip: &dyn Fn(&Entry) -> bool) -> Option<&Entry> {
        const PROBES: usize = 4096;
        let total = if volatile { self.expiring } else { self.keys };
        if total == 0 {
            return None;
        }
        let eligible = |e: &&Entry| (!volatile || e.expire().is_some()) && !skip(e);
        let held = |shard: &Shard| if volatile { shard.expiring } else { shard.map.len() };
        let cap = 2 * total.div_ceil(SHARDS) as u64;
        for _ in 0..PROBES {
            let r = rng();
            let shard = &self.shards[(r as usize) & (SHARDS - 1)];
            let j = (r >> 12) % cap;
            if (held(shard) as u64) <= j {
                continue;
            }
            if let Some(e) = shard.map.iter().filter(eligible).nth(j as usize) {
                return Some(e);
            }
        }
        let r = rng();
        (0..SHARDS).find_map(|i| {
            let shard = &self.shards[((r as usize) + i) & (SHARDS - 1)];
            let n = if held(shard) == 0 { 0 } else { shard.map.iter().filter(eligible).count() };
            (n > 0).then(|| shard.map.iter().filter(eligible).nth(((r >> 12) % n as u64) as usize)).flatten()
        })
    }

    /// The table of watched keys, which every mutation below informs.
    pub fn watch_table(&self) -> &Arc<WatchTable> {
        &self.watch
    }

    pub fn len(&self) -> usize {
        self.keys
    }

    pub fn is_empty(&self) -> bool {
        self.keys == 0
    }

    pub fn expiring(&self) -> usize {
        self.expiring
    }

    pub fn shards(&self) -> &[Arc<Shard>] {
        &self.shards
    }

    /// The entry for `key`, expired or not.
    pub fn get_any(&self, key: &[u8]) -> Option<&Entry> {
        self.shards[shard_of(key)].map.get(key)
    }

    /// The live entry for `key`; reads the clock only if it has an expiry.
    pub fn get(&self, key: &[u8], clock: &mut dyn Clock) -> Option<&Entry> {
        self.get_any(key).filter(|e| is_live(e, clock))
    }

    /// Removes `key` and returns its entry if it was live (an expired entry
    /// is dropped: the lazy expiry of a write, as Redis's lookupKeyWrite).
    pub fn take(&mut self, key: &[u8], clock: &mut dyn Clock) -> Option<Entry> {
        let e = self.take_any(key)?;
        is_live(&e, clock).then_some(e)
    }

    /// Removes `key` whatever its expiry.
    pub fn take_any(&mut self, key: &[u8]) -> Option<Entry> {
        let arc = &mut self.shards[shard_of(key)];
        // A miss must not copy a shard that a snapshot shares.
        if Arc::get_mut(arc).is_none() && !arc.map.contains(key) {
            return None;
        }
        let shard = Arc::make_mut(arc);
        let e = shard.map.take(key)?;
        if self.watch.active() {
            self.watch.touch(key);
        }
        self.used -= shard.account(&e, -1);
        self.keys -= 1;
        self.expiring -= usize::from(e.expire().is_some());
        Some(e)
    }

    /// Stores `e`, replacing and returning any entry under its key (expired
    /// or not).
    pub fn put(&mut self, mut e: Entry) -> Option<Entry> {
        if self.watch.active() {
            self.watch.touch(e.key());
        }
        e.refresh_mem();
        e.stamp(self.lru_now);
        let shard = Arc::make_mut(&mut self.shards[shard_of(e.key())]);
        self.used += shard.account(&e, 1);
        self.expiring += usize::from(e.expire().is_some());
        let old = shard.map.replace(e);
        match &old {
            Some(o) => {
                self.used -= shard.account(o, -1);
                self.expiring -= usize::from(o.expire().is_some());
            }
            None => self.keys += 1,
        }
        self.peak = self.peak.max(self.used);
        old
    }

    /// Whether a live `key` exists, removing it if it has expired.
    pub fn exists_for_write(&mut self, key: &[u8], clock: &mut dyn Clock) -> bool {
        match self.get_any(key) {
            None => false,
            Some(e) if is_live(e, clock) => true,
            Some(_) => {
                self.take_any(key);
                false
            }
        }
    }

    /// Drops every key (FLUSHALL). Shards a snapshot holds stay alive there.
    pub fn clear(&mut self) {
        let watch = self.watch.clone();
        if watch.active() {
            watch.touch_existing(|k| self.get_any(k).is_some());
        }
        let (lru_now, peak) = (self.lru_now, self.peak);
        *self = Store { watch, lru_now, peak, ..Store::new() };
    }

    /// Order-independent digest of the whole keyspace.
    pub fn digest(&self) -> u64 {
        self.shards.iter().flat_map(|s| s.entries()).fold(0u64, |acc, e| acc.wrapping_add(e.digest()))
    }

    /// Expired keys (expiry < `now_ms`) found by scanning shards from
    /// `*cursor`, at most `max_keys` of them, visiting at most
    /// `shards_budget` shards that need a scan. Updates each fully scanned
    /// shard's `next_expire` hint so quiet shards are skipped next time.
    pub fn expired_keys(
        &self,
        now_ms: u64,
        max_keys: usize,
        cursor: &mut usize,
        mut shards_budget: usize,
        found: &mut Vec<Bytes>,
    ) {
        for _ in 0..SHARDS {
            if found.len() >= max_keys || shards_budget == 0 {
                return;
            }
            let shard = &self.shards[*cursor % SHARDS];
            if shard.expiring > 0 && shard.next_expire.load(Ordering::Relaxed) < now_ms {
                shards_budget -= 1;
                let mut min = u64::MAX;
                for e in shard.entries() {
                    let Some(t) = e.expire() else { continue };
                    if t < now_ms && found.len() < max_keys {
                        found.push(e.key().into());
                    }
                    min = min.min(t);
                }
                shard.next_expire.store(min, Ordering::Relaxed);
                if found.len() >= max_keys {
                    // Keys may be left in this shard: look at it again first.
                    return;
                }
            }
            *cursor = (*cursor + 1) % SHARDS;
        }
    }
}

use crate::entry::Bytes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_take_keep_counts() {
        let mut s = Store::new();
        let mut clock = FixedClock(100);
        assert!(s.put(Entry::string(b"a", b"1", None)).is_none());
        assert!(s.put(Entry::string(b"b", b"2", Some(50))).is_none());
        assert_eq!((s.len(), s.expiring()), (2, 1));
        assert!(s.get(b"b", &mut clock).is_none(), "expired at 100");
        assert!(s.get_any(b"b").is_some());
        assert!(s.take(b"b", &mut clock).is_none());
        assert_eq!((s.len(), s.expiring()), (1, 0));
        assert!(s.put(Entry::string(b"a", b"3", Some(500))).is_some());
        assert_eq!((s.len(), s.expiring()), (1, 1));
        assert_eq!(s.get(b"a", &mut clock).and_then(|e| e.str_value()), Some(&b"3"[..]));
    }

    #[test]
    fn used_memory_follows_puts_and_takes() {
        let mut s = Store::new();
        assert_eq!(s.used_memory(), 0);
        s.put(Entry::string(b"a", b"1", None));
        let one = s.used_memory();
        assert!(one > 0);
        s.put(Entry::string(b"b", &[b'x'; 1000], Some(5)));
        assert!(s.used_memory() >= one + 1000);
        s.put(Entry::string(b"b", b"small", None));
        assert!(s.used_memory() < one + 100, "replacing a value counts the old one out");
        s.take_any(b"a");
        s.take_any(b"b");
        assert_eq!(s.used_memory(), 0);
        assert_eq!(s.shards().iter().map(|sh| sh.bytes).sum::<u64>(), 0);
    }

    #[test]
    fn writes_stamp_and_reads_touch_the_access_clock() {
        let mut s = Store::new();
        s.set_lru_now(100);
        s.put(Entry::string(b"a", b"1", None));
        assert_eq!(s.get_any(b"a").map(Entry::lru), Some(100));
        s.touch(b"a", 150);
        s.touch(b"missing", 150);
        assert_eq!(s.get_any(b"a").map(Entry::lru), Some(150));
        let mut n = 0u64;
        let mut rng = || {
            n = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
            n ^ (n >> 29)
        };
        assert!(s.sample(&mut rng, true, &|_| false).is_none(), "no key has an expiry");
        assert_eq!(s.sample(&mut rng, false, &|_| false).map(Entry::key), Some(&b"a"[..]));
        assert!(s.sample(&mut rng, false, &|e| e.key() == b"a").is_none(), "the only key is skipped");
    }

    #[test]
    fn snapshot_shares_until_written() {
        let mut s = Store::new();
        s.put(Entry::string(b"a", b"1", None));
        let snap = s.clone();
        let i = shard_of(b"a");
        assert!(Arc::ptr_eq(&snap.shards[i], &s.shards[i]));
        // A miss on a shared shard copies nothing.
        let j = shard_of(b"zz");
        assert!(s.take_any(b"zz").is_none());
        assert!(Arc::ptr_eq(&snap.shards[j], &s.shards[j]));
        s.put(Entry::string(b"a", b"2", None));
        assert!(!Arc::ptr_eq(&snap.shards[i], &s.shards[i]));
        assert_eq!(snap.get_any(b"a").and_then(|e| e.str_value()), Some(&b"1"[..]));
    }

    #[test]
    fn expired_keys_scan_is_bounded_and_resumes() {
        let mut s = Store::new();
        for i in 0..100u32 {
            s.put(Entry::string(format!("k{i}").as_bytes(), b"v", Some(10)));
        }
        s.put(Entry::string(b"later", b"v", Some(1000)));
        let (mut cursor, mut found) = (0, Vec::new());
        s.expired_keys(11, 30, &mut cursor, SHARDS, &mut found);
        assert_eq!(found.len(), 30);
        let mut all = found.clone();
        for _ in 0..10 {
            found.clear();
            s.expired_keys(11, 30, &mut cursor, SHARDS, &mut found);
            for k in &found {
                s.take_any(k);
            }
            all.extend(found.iter().cloned());
        }
        assert_eq!(s.len(), 1, "only the unexpired key is left");
        found.clear();
        s.expired_keys(11, 30, &mut cursor, SHARDS, &mut found);
        assert!(found.is_empty());
    }
}
