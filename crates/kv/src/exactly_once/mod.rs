//! Exactly-once client sessions: the replicated table that answers a
//! retried request from its cache instead of applying it again (DESIGN §3,
//! "duplicate outputs after failover"). VMware FT leaves duplicates to TCP;
//! a client that reconnects to a new primary after a failover cannot tell
//! whether its last write was applied, so it needs the server to remember.
//!
//! # Protocol
//!
//! Plain RESP commands, so the node forwards them unchanged (they are ops
//! like any write, logged and gated by the output rule):
//!
//! ```text
//! US.SESSION <id>                    open (or reopen) a session  -> *2 :highest-seq :window
//! US.CALL <id> <seq> <cmd> <arg>…    run <cmd> once per (id, seq) -> <cmd>'s reply
//! US.CLOSE <id>                      forget the session          -> :1 (or :0 if unknown)
//! US.INFO <id>                       a read: the session's state -> flat map, or nil
//! ```
//!
//! `id` is chosen by the client (1 to [`ID_BYTES_MAX`] bytes; the Rust
//! client draws 128 random bits). `seq` numbers a session's requests from 1.
//! A `seq` above the highest one seen is new: the command runs and its reply
//! is kept. A `seq` at or below it is a retry: the kept reply is sent again,
//! byte for byte, and nothing runs (`-SESSIONOLD …` if that reply is no
//! longer kept). A call on an unknown, closed, expired or evicted session
//! runs nothing and answers `-NOSESSION …`. Reads may bypass sessions.
//!
//! # Bounds (`SessionLimits`)
//!
//! - `window` replies per session: a client may pipeline that many requests.
//! - `sessions_max` sessions: opening one more evicts the least recently
//!   active session.
//! - `reply_bytes_max` bytes of kept replies in all: past it the oldest
//!   replies of the least recently active sessions are dropped. A single
//!   reply above `reply_bytes_one_max` is not kept, only its size, so a
//!   retry learns that it was applied, not what it answered.
//! - `idle_ms`: a session idle for longer, by the *recorded* clock
//!   (`ctx.now_us()`), expires. Expiry is decided while applying ops (every
//!   session op purges what has expired, and the primary's expire cycle logs
//!   an op naming idle sessions), so both replicas expire the same sessions
//!   at the same log position.
//!
//! The table is part of the snapshot a joiner loads ([`records`]) and of
//! the machine's digest.

pub mod commands;
pub mod records;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::resp::{write_array_len, write_bulk, write_int, write_null};

/// Longest session id, in bytes.
pub const ID_BYTES_MAX: usize = 64;

/// Sessions whose expiry one op may process, so no op's cost is unbounded
/// (the rest go with the next ops; a lookup never sees an expired session).
pub const PURGE_PER_OP_MAX: usize = 64;

/// A session's id, as the client chose it.
pub type Id = Box<[u8]>;

/// The bounds of the table. Both replicas must use the same limits (they
/// are part of the build, not flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLimits {
    /// Sessions held; opening one more evicts the least recently active.
    pub sessions_max: usize,
    /// Replies kept per session: how many requests a client may pipeline.
    pub window: usize,
    /// Bytes of kept replies in all sessions together.
    pub reply_bytes_max: usize,
    /// A reply larger than this is not kept (only its size is).
    pub reply_bytes_one_max: usize,
    /// Idle time after which a session expires, by the recorded clock.
    pub idle_ms: u64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            sessions_max: 10_000,
            window: 16,
            reply_bytes_max: 64 << 20,
            reply_bytes_one_max: 1 << 20,
            idle_ms: 3_600_000,
        }
    }
}

/// One kept answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// The reply bytes, sent again to a retry.
    Reply(Arc<[u8]>),
    /// The reply was larger than `reply_bytes_one_max`: only its size.
    TooLarge(u64),
}

impl Kept {
    /// Bytes this answer counts against `reply_bytes_max`.
    fn bytes(&self) -> usize {
        match self {
            Kept::Reply(r) => r.len(),
            Kept::TooLarge(_) => 0,
        }
    }
}

/// The replicated state of one session. Behind an `Arc` in the table so a
/// snapshot shares it; a change copies it (at most `window` reply pointers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// Recorded time of the last op on this session (ms since the epoch).
    pub last_active_ms: u64,
    /// The highest seq applied; 0 before the first call.
    pub highest: u64,
    /// Retries answered from the cache (observability, replicated).
    pub hits: u64,
    /// The last replies, seqs strictly increasing, the last one `highest`'s.
    pub replies: VecDeque<(u64, Kept)>,
}

/// What a `US.CALL` does, decided by [`SessionTable::call`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// A new request: run it, then [`SessionTable::record`] its reply.
    Apply,
    /// A retry: send these bytes again.
    Replay(Arc<[u8]>),
    /// Nothing runs; answer this error (without the leading '-').
    Refuse(String),
}

/// The replicated session table.
#[derive(Debug, Default)]
pub struct SessionTable {
    limits: SessionLimits,
    sessions: BTreeMap<Id, Arc<State>>,
    /// Every session by (last activity, id): expiry and eviction order.
    by_activity: BTreeSet<(u64, Id)>,
    /// The sessions holding at least one kept reply, in the same order:
    /// where reply bytes are reclaimed from.
    cached: BTreeSet<(u64, Id)>,
    /// Sum of `Kept::bytes` over every session.
    reply_bytes: usize,
}

impl SessionTable {
    pub fn new(limits: SessionLimits) -> Self {
        assert!(limits.sessions_max >= 1 && limits.window >= 1, "a session table holds at least one reply");
        assert!(limits.reply_bytes_one_max <= limits.reply_bytes_max, "one kept reply must fit in the reply bound");
        SessionTable { limits, ..SessionTable::default() }
    }

    pub fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Bytes of replies kept in all sessions.
    pub fn reply_bytes(&self) -> usize {
        self.reply_bytes
    }

    pub fn get(&self, id: &[u8]) -> Option<&State> {
        self.sessions.get(id).map(|s| &**s)
    }

    fn expired(&self, last_active_ms: u64, now_ms: u64) -> bool {
        now_ms > last_active_ms.saturating_add(self.limits.idle_ms)
    }

    /// `US.SESSION`: opens `id`, or refreshes it if it is open. Writes
    /// `*2 :highest :window`.
    pub fn open(&mut self, id: &[u8], now_ms: u64, reply: &mut Vec<u8>) {
        self.purge_expired(now_ms, PURGE_PER_OP_MAX);
        let highest = match self.live(id, now_ms) {
            Some(s) => {
                self.touch(id, now_ms);
                s
            }
            None => {
                if self.sessions.len() >= self.limits.sessions_max {
                    let (_, lru) = self.by_activity.first().cloned().expect("a full table has a first session");
                    self.remove(&lru);
                }
                self.insert(id, now_ms);
                0
            }
        };
        write_array_len(reply, 2);
        write_int(reply, highest as i64);
        write_int(reply, self.limits.window as i64);
        self.check();
    }

    /// `US.CLOSE`: forgets `id`. Writes `:1` if it was open.
    pub fn close(&mut self, id: &[u8], now_ms: u64, reply: &mut Vec<u8>) {
        self.purge_expired(now_ms, PURGE_PER_OP_MAX);
        let open = self.live(id, now_ms).is_some();
        if open {
            self.remove(id);
        }
        write_int(reply, i64::from(open));
        self.check();
    }

    /// `US.CALL`, first half: decides whether request `seq` of `id` runs.
    pub fn call(&mut self, id: &[u8], seq: u64, now_ms: u64) -> Call {
        assert!(seq >= 1, "request seqs start at 1 (checked when the op was made)");
        self.purge_expired(now_ms, PURGE_PER_OP_MAX);
        let Some(highest) = self.live(id, now_ms) else {
            return Call::Refuse(format!(
                "NOSESSION unknown session (never opened, closed, idle for more than {} s, or evicted); \
                 open it again with US.SESSION",
                self.limits.idle_ms / 1000
            ));
        };
        self.touch(id, now_ms);
        if seq > highest {
            return Call::Apply;
        }
        let state = Arc::make_mut(self.sessions.get_mut(id).expect("live"));
        let kept = state.replies.iter().find(|(s, _)| *s == seq).map(|(_, k)| k.clone());
        match kept {
            Some(Kept::Reply(bytes)) => {
                state.hits += 1;
                Call::Replay(bytes)
            }
            Some(Kept::TooLarge(n)) => Call::Refuse(format!(
                "SESSIONOLD request {seq} was applied, but its reply ({n} bytes) was larger than the {} bytes a session keeps per reply",
                self.limits.reply_bytes_one_max
            )),
            None => Call::Refuse(format!(
                "SESSIONOLD request {seq} is not in the session's reply cache (last request {highest}, at most {} \
                 replies kept): it was answered before, or never applied",
                self.limits.window
            )),
        }
    }

    /// `US.CALL`, second half: keeps the reply of the request `call` let run.
    pub fn record(&mut self, id: &[u8], seq: u64, reply: &[u8]) {
        let (window, one_max) = (self.limits.window, self.limits.reply_bytes_one_max);
        let state = Arc::make_mut(self.sessions.get_mut(id).expect("record follows a call on a live session"));
        assert!(seq > state.highest, "request {seq} recorded after {}", state.highest);
        let kept = if reply.len() > one_max { Kept::TooLarge(reply.len() as u64) } else { Kept::Reply(reply.into()) };
        let mut freed = 0;
        let added = kept.bytes();
        state.replies.push_back((seq, kept));
        state.highest = seq;
        while state.replies.len() > window {
            freed += state.replies.pop_front().expect("over the window").1.bytes();
        }
        let key = (state.last_active_ms, Id::from(id));
        self.reply_bytes = self.reply_bytes + added - freed;
        self.cached.insert(key);
        self.reclaim_reply_bytes(id);
        self.check();
    }

    /// Drops the oldest replies of the least recently active sessions until
    /// the kept bytes fit again. Never the reply just kept for `current`:
    /// it is at most `reply_bytes_one_max`, and that fits.
    fn reclaim_reply_bytes(&mut self, current: &[u8]) {
        while self.reply_bytes > self.limits.reply_bytes_max {
            let (t, id) = self.cached.first().cloned().expect("kept bytes belong to sessions in `cached`");
            let state = Arc::make_mut(self.sessions.get_mut(&id).expect("cached sessions exist"));
            assert!(
                &*id != current || state.replies.len() > 1,
                "the reply just kept ({} bytes kept in all) must fit in reply_bytes_max",
                self.reply_bytes
            );
            let (_, kept) = state.replies.pop_front().expect("cached sessions keep a reply");
            self.reply_bytes -= kept.bytes();
            if state.replies.is_empty() {
                self.cached.remove(&(t, id));
            }
        }
    }

    /// The primary's expire cycle: up to `max` sessions idle at `now_ms`.
    pub fn idle_sessions(&self, now_ms: u64, max: usize) -> Vec<Id> {
        self.by_activity.iter().take_while(|(t, _)| self.expired(*t, now_ms)).take(max).map(|(_, id)| id.clone()).collect()
    }

    /// Applies an expire op: removes the named sessions that are idle at
    /// this op's (recorded) time. Returns how many.
    pub fn expire(&mut self, ids: &[&[u8]], now_ms: u64) -> usize {
        let mut n = 0;
        for id in ids {
            if self.sessions.get(*id).is_some_and(|s| self.expired(s.last_active_ms, now_ms)) {
                self.remove(id);
                n += 1;
            }
        }
        self.check();
        n
    }

    /// Removes up to `max` sessions idle at `now_ms`, oldest first.
    fn purge_expired(&mut self, now_ms: u64, max: usize) {
        for id in self.idle_sessions(now_ms, max) {
            self.remove(&id);
        }
    }

    /// The highest seq of `id` if it is open and not expired (an expired
    /// one is removed here).
    fn live(&mut self, id: &[u8], now_ms: u64) -> Option<u64> {
        let s = self.sessions.get(id)?;
        if self.expired(s.last_active_ms, now_ms) {
            self.remove(id);
            return None;
        }
        Some(s.highest)
    }

    fn insert(&mut self, id: &[u8], now_ms: u64) {
        let state = State { last_active_ms: now_ms, highest: 0, hits: 0, replies: VecDeque::new() };
        let old = self.sessions.insert(id.into(), Arc::new(state));
        assert!(old.is_none(), "inserting an open session");
        self.by_activity.insert((now_ms, id.into()));
    }

    fn remove(&mut self, id: &[u8]) {
        let s = self.sessions.remove(id).expect("removing an open session");
        let key = (s.last_active_ms, Id::from(id));
        assert!(self.by_activity.remove(&key), "every session is in by_activity");
        if !s.replies.is_empty() {
            assert!(self.cached.remove(&key), "a session with replies is in cached");
        }
        self.reply_bytes -= s.replies.iter().map(|(_, k)| k.bytes()).sum::<usize>();
    }

    /// Moves `id` to `now_ms` in the activity order (time never goes back
    /// in the replicated state; `max` keeps the order even if it did).
    fn touch(&mut self, id: &[u8], now_ms: u64) {
        let state = Arc::make_mut(self.sessions.get_mut(id).expect("touching an open session"));
        let old = state.last_active_ms;
        let new = old.max(now_ms);
        if new == old {
            return;
        }
        state.last_active_ms = new;
        let has_replies = !state.replies.is_empty();
        assert!(self.by_activity.remove(&(old, id.into())), "every session is in by_activity");
        self.by_activity.insert((new, id.into()));
        if has_replies {
            assert!(self.cached.remove(&(old, id.into())), "a session with replies is in cached");
            self.cached.insert((new, id.into()));
        }
    }

    /// Cheap invariant checks after every change (the full ones in tests).
    fn check(&self) {
        assert_eq!(self.sessions.len(), self.by_activity.len(), "sessions and their activity order agree");
        assert!(self.sessions.len() <= self.limits.sessions_max, "more sessions than sessions_max");
        assert!(self.reply_bytes <= self.limits.reply_bytes_max, "kept replies over reply_bytes_max");
        debug_assert_eq!(self.reply_bytes, self.count_reply_bytes(), "reply byte accounting");
    }

    fn count_reply_bytes(&self) -> usize {
        self.sessions.values().flat_map(|s| s.replies.iter()).map(|(_, k)| k.bytes()).sum()
    }

    /// `US.INFO <id>`: `highest`, `replies`, `hits`, `last-active-ms`, or
    /// nil for a session that is not open at `now_ms`.
    pub fn info(&self, id: &[u8], now_ms: u64, out: &mut Vec<u8>) {
        let Some(s) = self.sessions.get(id).filter(|s| !self.expired(s.last_active_ms, now_ms)) else {
            return write_null(out);
        };
        let fields = [("highest", s.highest), ("replies", s.replies.len() as u64), ("hits", s.hits)];
        write_array_len(out, 2 * (fields.len() + 1));
        for (k, v) in fields.into_iter().chain([("last-active-ms", s.last_active_ms)]) {
            write_bulk(out, k.as_bytes());
            write_int(out, v as i64);
        }
    }

    /// The sessions as of now, sharing their state (for a snapshot).
    pub fn snapshot(&self) -> Vec<(Id, Arc<State>)> {
        self.sessions.iter().map(|(id, s)| (id.clone(), Arc::clone(s))).collect()
    }

    /// Loads one session from a snapshot; errors name what is wrong.
    pub fn restore(&mut self, id: &[u8], state: State) -> Result<(), String> {
        if id.is_empty() || id.len() > ID_BYTES_MAX {
            return Err(format!("session id of {} bytes", id.len()));
        }
        if self.sessions.contains_key(id) {
            return Err("duplicate session".into());
        }
        if self.sessions.len() >= self.limits.sessions_max || state.replies.len() > self.limits.window {
            return Err("session table over its bounds".into());
        }
        let mut prev = 0;
        for (seq, kept) in &state.replies {
            if *seq <= prev || *seq > state.highest || kept.bytes() > self.limits.reply_bytes_one_max {
                return Err(format!("kept reply of request {seq} out of order or too large"));
            }
            prev = *seq;
        }
        let bytes: usize = state.replies.iter().map(|(_, k)| k.bytes()).sum();
        if self.reply_bytes + bytes > self.limits.reply_bytes_max {
            return Err("kept replies over reply_bytes_max".into());
        }
        let key = (state.last_active_ms, Id::from(id));
        if !state.replies.is_empty() {
            self.cached.insert(key.clone());
        }
        self.by_activity.insert(key);
        self.reply_bytes += bytes;
        self.sessions.insert(id.into(), Arc::new(state));
        Ok(())
    }

    /// Order-independent digest of the table; 0 when empty.
    pub fn digest(&self) -> u64 {
        self.sessions.iter().fold(0u64, |acc, (id, s)| acc.wrapping_add(records::session_digest(id, s)))
    }
}

#[cfg(test)]
mod tests;
