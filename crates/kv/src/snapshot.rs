//! Live snapshots of the keyspace and their restore (state transfer to a
//! joining backup, DESIGN §3).
//!
//! ```text
//! chunk   = version:u8 (=1) record+                    each chunk decodes on its own
//! record  = kind:u8 key:bytes [expire:u64 LE] body     expire iff kind & 0x40
//!         | 0x0F keys:varint digest:u64 LE             end: the last record of all
//!         | 0x10 …                                      a client session (exactly_once::records)
//!         | 0x11 body:bytes                              a cached script (script)
//!         | 0x12 state:u64 LE                            math.random's rand48 state, when not
//!                                                       the initial one (script::rand)
//! kind    = type (1 string, 2 hash, 3 list, 4 set, 5 zset, 6 stream) | 0x40 has expire | 0x80 continuation
//! body    = value:bytes                                string
//!         | count:varint element*count                 aggregate (hash: field, value;
//!                                                       zset: member, score:f64 LE bits)
//!         | stream                                     crate::stream_snapshot
//! ```
//!
//! A large aggregate is cut into parts of about [`PART_BYTES`]: the first
//! record creates the key, continuation records (same key, right after)
//! append elements, so no record and hence no chunk grows without bound.
//! The end record carries the key count and digest of the snapshot (keys
//! and sessions, as `Kv::digest`), which `restore_finish` checks against
//! what was loaded. Session records come after every key's, and the
//! scripting records after those (a snapshot without them restores an
//! empty script cache and the initial `math.random` state).
//!
//! Types are only ever added (a new type code), never renumbered; both
//! replicas run the same build, so the version stays 1.

use std::sync::Arc;

use understudy_core::{SnapshotError, SnapshotWriter};
use understudy_wire::codec::{put_bytes, put_varint, Reader};

use crate::entry::{AggVal, Bytes, Entry, HashVal, Kind, ListVal, SetVal, ZsetVal};
use crate::exactly_once::records::{read_session, session_digest, write_session, RECORD_SESSION};
use crate::exactly_once::{Id, SessionTable, State as SessionState};
use crate::op::read_count;
use crate::script::{body_digest, rand_digest, Scripts, RAND_INITIAL};
use crate::store::{Shard, Store};

/// Bumped whenever a record's layout changes, so a snapshot of another
/// build is refused by name rather than misread (2: stream nodes carry
/// their master entry's field names).
const VERSION: u8 = 2;
const HAS_EXPIRE: u8 = 0x40;
const CONTINUATION: u8 = 0x80;
const END: u8 = 0x0F;
const RECORD_SCRIPT: u8 = 0x11;
const RECORD_RAND: u8 = 0x12;
/// Target size of one aggregate part.
pub const PART_BYTES: usize = 64 * 1024;
/// Session records serialized per refill, so the pending buffer stays
/// small (a session record holds at most `window` replies).
const SESSIONS_PER_REFILL: usize = 64;

fn type_code(k: Kind) -> u8 {
    match k {
        Kind::String => 1,
        Kind::Hash => 2,
        Kind::List => 3,
        Kind::Set => 4,
        Kind::Zset => 5,
        Kind::Stream => 6,
    }
}

/// Serializes a snapshot shard by shard; holds each shard only until it is
/// serialized, so later writes to it do not copy it.
pub struct KvSnapshotWriter {
    shards: Vec<Option<Arc<Shard>>>,
    next_shard: usize,
    /// The client sessions as of the snapshot (shared, copy-on-write).
    sessions: std::vec::IntoIter<(Id, Arc<SessionState>)>,
    /// The cached scripts and the rand48 state; `None` once written.
    scripts: Option<(Vec<Arc<[u8]>>, u64)>,
    /// The records of the shard being emitted, and where each ends.
    pending: Vec<u8>,
    ends: Vec<usize>,
    emitted: usize,
    keys: u64,
    digest: u64,
    end_written: bool,
    hint: u64,
}

impl KvSnapshotWriter {
    pub fn new(store: &Store, sessions: Vec<(Id, Arc<SessionState>)>, scripts: (Vec<Arc<[u8]>>, u64)) -> Self {
        let shards: Vec<Option<Arc<Shard>>> = store.shards().iter().map(|s| Some(Arc::clone(s))).collect();
        let hint = store.shards().iter().map(|s| s.bytes).sum();
        KvSnapshotWriter {
            shards,
            next_shard: 0,
            sessions: sessions.into_iter(),
            scripts: Some(scripts),
            pending: Vec::new(),
            ends: Vec::new(),
            emitted: 0,
            keys: 0,
            digest: 0,
            end_written: false,
            hint,
        }
    }

    /// Refills `pending` with the next shard's records (or the end record).
    /// Returns false when everything has been produced.
    fn refill(&mut self) -> bool {
        self.pending.clear();
        self.ends.clear();
        self.emitted = 0;
        if let Some(slot) = self.shards.get_mut(self.next_shard) {
            self.next_shard += 1;
            let shard = slot.take().expect("each shard is serialized once");
            for e in shard.entries() {
                self.keys += 1;
                self.digest = self.digest.wrapping_add(e.digest());
                write_entry(&mut self.pending, &mut self.ends, e);
            }
            return true; // `shard` is dropped here: written shards are no longer shared
        }
        let mut wrote = false;
        for (id, state) in self.sessions.by_ref().take(SESSIONS_PER_REFILL) {
            self.digest = self.digest.wrapping_add(session_digest(&id, &state));
            write_session(&mut self.pending, &id, &state);
            self.ends.push(self.pending.len());
            wrote = true;
        }
        if wrote {
            return true;
        }
        if let Some((bodies, rand)) = self.scripts.take() {
            if rand != RAND_INITIAL {
                self.digest = self.digest.wrapping_add(rand_digest(rand));
                self.pending.push(RECORD_RAND);
                self.pending.extend_from_slice(&rand.to_le_bytes());
                self.ends.push(self.pending.len());
            }
            for body in bodies {
                self.digest = self.digest.wrapping_add(body_digest(&body));
                self.pending.push(RECORD_SCRIPT);
                put_bytes(&mut self.pending, &body);
                self.ends.push(self.pending.len());
            }
            if !self.ends.is_empty() {
                return true;
            }
        }
        if self.end_written {
            return false;
        }
        self.end_written = true;
        self.pending.push(END);
        put_varint(&mut self.pending, self.keys);
        self.pending.extend_from_slice(&self.digest.to_le_bytes());
        self.ends.push(self.pending.len());
        true
    }
}

impl SnapshotWriter for KvSnapshotWriter {
    fn next_chunk(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> bool {
        let start = out.len();
        loop {
            if self.emitted < self.ends.len() {
                let from = if self.emitted == 0 { 0 } else { self.ends[self.emitted - 1] };
                let to = self.ends[self.emitted];
                let wrote_any = out.len() > start;
                if wrote_any && out.len() - start + (to - from) > max_bytes {
                    return true;
                }
                if !wrote_any {
                    out.push(VERSION);
                }
                out.extend_from_slice(&self.pending[from..to]);
                self.emitted += 1;
            } else if !self.refill() {
                return out.len() > start;
            }
        }
    }

    fn bytes_hint(&self) -> u64 {
        self.hint
    }
}

fn record_head(buf: &mut Vec<u8>, kind: Kind, flags: u8, key: &[u8], expire: Option<u64>) {
    buf.push(type_code(kind) | flags | if expire.is_some() { HAS_EXPIRE } else { 0 });
    put_bytes(buf, key);
    if let Some(t) = expire {
        buf.extend_from_slice(&t.to_le_bytes());
    }
}

/// What follows an aggregate element's first string: nothing (a list item
/// or set member), a hash field's value, or a sorted set member's score.
enum Second<'a> {
    None,
    Value(&'a [u8]),
    Score(f64),
}

/// One aggregate element.
type Element<'a> = (&'a [u8], Second<'a>);

/// Appends the records of one entry, ending each in `ends`.
fn write_entry(buf: &mut Vec<u8>, ends: &mut Vec<usize>, e: &Entry) {
    let key = e.key();
    let Some(agg) = e.agg() else {
        record_head(buf, Kind::String, 0, key, e.expire());
        put_bytes(buf, e.str_value().unwrap_or_default());
        ends.push(buf.len());
        return;
    };
    if let AggVal::Stream(s) = agg {
        record_head(buf, Kind::Stream, 0, key, e.expire());
        crate::stream_snapshot::write_meta(buf, s);
        let mut from = None;
        let mut first = true;
        loop {
            let mut part = Vec::new();
            let (count, next) = crate::stream_snapshot::write_entries(&mut part, s, from, PART_BYTES);
            if !first {
                record_head(buf, Kind::Stream, CONTINUATION, key, None);
            }
            first = false;
            put_varint(buf, count);
            buf.extend_from_slice(&part);
            ends.push(buf.len());
            match next {
                Some(id) => from = Some(id),
                None => return,
            }
        }
    }
    let elements: Box<dyn Iterator<Item = Element>> = match agg {
        AggVal::Hash(h) => Box::new(h.iter().map(|(f, v)| (&f[..], Second::Value(&v[..])))),
        AggVal::List(l) => Box::new(l.iter().map(|v| (&v[..], Second::None))),
        AggVal::Set(s) => Box::new(s.iter().map(|m| (&m[..], Second::None))),
        AggVal::Zset(z) => Box::new(z.iter().map(|(score, m)| (&m[..], Second::Score(*score)))),
        AggVal::Stream(_) => unreachable!("written above"),
    };
    let mut elements = elements.peekable();
    let mut first = true;
    while elements.peek().is_some() {
        let mut part = Vec::new();
        let mut count = 0u64;
        while part.len() < PART_BYTES {
            let Some((a, b)) = elements.next() else { break };
            put_bytes(&mut part, a);
            match b {
                Second::None => {}
                Second::Value(v) => put_bytes(&mut part, v),
                Second::Score(score) => part.extend_from_slice(&score.to_bits().to_le_bytes()),
            }
            count += 1;
        }
        if first {
            record_head(buf, agg.kind(), 0, key, e.expire());
        } else {
            record_head(buf, agg.kind(), CONTINUATION, key, None);
        }
        first = false;
        put_varint(buf, count);
        buf.extend_from_slice(&part);
        ends.push(buf.len());
    }
}

/// What a restore in progress remembers between chunks.
#[derive(Default)]
pub struct Restore {
    chunks: u64,
    /// The aggregate the previous record created or extended: only it may
    /// be continued.
    last: Option<(Bytes, Kind)>,
    /// Key count and digest from the end record, once seen.
    end: Option<(u64, u64)>,
    /// A session record was read: only sessions, scripts and the end may follow.
    in_sessions: bool,
    /// A scripting record was read: only those and the end may follow.
    in_scripts: bool,
}

fn corrupt(chunk: u64, detail: impl std::fmt::Display) -> SnapshotError {
    SnapshotError(format!("chunk {chunk}: {detail}"))
}

fn show(key: &[u8]) -> String {
    let shown = &key[..key.len().min(64)];
    format!("{:?}", String::from_utf8_lossy(shown))
}

impl Restore {
    /// Loads one chunk into `store`.
    pub fn chunk(
        &mut self,
        store: &mut Store,
        sessions: &mut SessionTable,
        scripts: &mut Scripts,
        chunk: &[u8],
    ) -> Result<(), SnapshotError> {
        let n = self.chunks;
        if n == 0 && (!store.is_empty() || !sessions.is_empty() || !scripts.is_empty()) {
            return Err(corrupt(n, "restore target is not empty"));
        }
        self.chunks += 1;
        if self.end.is_some() {
            return Err(corrupt(n, "chunk after the end record"));
        }
        let mut r = Reader::new(chunk, "snapshot chunk");
        match r.u8() {
            Ok(VERSION) => {}
            Ok(v) => {
                return Err(corrupt(
                    n,
                    format!("snapshot format {v}, this build reads {VERSION}: written by another understudy version"),
                ))
            }
            Err(e) => return Err(corrupt(n, e)),
        }
        if r.is_empty() {
            return Err(corrupt(n, "chunk holds no record"));
        }
        while !r.is_empty() {
            self.record(store, sessions, scripts, &mut r).map_err(|e| corrupt(n, e))?;
        }
        Ok(())
    }

    fn record(
        &mut self,
        store: &mut Store,
        sessions: &mut SessionTable,
        scripts: &mut Scripts,
        r: &mut Reader,
    ) -> Result<(), String> {
        let kind = r.u8().map_err(|e| e.to_string())?;
        if kind == RECORD_SCRIPT || kind == RECORD_RAND {
            self.last = None;
            self.in_scripts = true;
            if kind == RECORD_RAND {
                scripts.restore_rand(r.u64().map_err(|e| e.to_string())?);
                return Ok(());
            }
            let body = r.bytes().map_err(|e| e.to_string())?;
            if !scripts.restore_body(body) {
                return Err("duplicate script".into());
            }
            return Ok(());
        }
        if self.in_scripts && kind != END {
            return Err(format!("record kind {kind:#04x} after the scripting records"));
        }
        if kind == RECORD_SESSION {
            self.last = None;
            self.in_sessions = true;
            let (id, state) = read_session(r)?;
            return sessions.restore(id, state).map_err(|e| format!("session record: {e}"));
        }
        if kind == END {
            let keys = r.varint().map_err(|e| e.to_string())?;
            let digest = r.u64().map_err(|e| e.to_string())?;
            r.finish().map_err(|_| "bytes after the end record".to_string())?;
            self.end = Some((keys, digest));
            return Ok(());
        }
        if self.in_sessions {
            return Err(format!("record kind {kind:#04x} after the session records"));
        }
        let ty = match kind & 0x3F {
            1 => Kind::String,
            2 => Kind::Hash,
            3 => Kind::List,
            4 => Kind::Set,
            5 => Kind::Zset,
            6 => Kind::Stream,
            _ => return Err(format!("unknown record kind {kind:#04x}")),
        };
        let key = r.bytes().map_err(|e| e.to_string())?;
        if kind & CONTINUATION != 0 {
            return self.continuation(store, r, kind, key, ty);
        }
        let expire = if kind & HAS_EXPIRE != 0 { Some(r.u64().map_err(|e| e.to_string())?) } else { None };
        if store.get_any(key).is_some() {
            return Err(format!("duplicate key {}", show(key)));
        }
        let entry = if ty == Kind::Stream {
            let w = |e: String| format!("key {}: {e}", show(key));
            let mut s = crate::stream_snapshot::read_meta(r).map_err(w)?;
            crate::stream_snapshot::read_entries(r, &mut s).map_err(w)?;
            self.last = Some((key.into(), ty));
            Entry::aggregate(key, expire, AggVal::Stream(Box::new(s)))
        } else if ty == Kind::String {
            self.last = None;
            Entry::string(key, r.bytes().map_err(|e| e.to_string())?, expire)
        } else {
            let mut val = match ty {
                Kind::Hash => AggVal::Hash(HashVal::default()),
                Kind::List => AggVal::List(ListVal::new()),
                Kind::Zset => AggVal::Zset(ZsetVal::new()),
                _ => AggVal::Set(SetVal::default()),
            };
            let fit = read_elements(r, &mut val).map_err(|e| format!("key {}: {e}", show(key)))?;
            self.last = Some((key.into(), ty));
            let mut e = Entry::aggregate(key, expire, val);
            crate::encoding::restored(&mut e, fit);
            e
        };
        store.put(entry);
        Ok(())
    }

    fn continuation(&mut self, store: &mut Store, r: &mut Reader, kind: u8, key: &[u8], ty: Kind) -> Result<(), String> {
        let continues = matches!(&self.last, Some((k, t)) if &k[..] == key && *t == ty);
        if !continues || kind & HAS_EXPIRE != 0 {
            return Err(format!("continuation record for {} does not follow its first part", show(key)));
        }
        let mut e = store.take_any(key).ok_or("continued key vanished")?;
        if let Some(AggVal::Stream(s)) = e.agg_mut() {
            let result = crate::stream_snapshot::read_entries(r, s);
            store.put(e);
            return match result {
                Ok(0) => Err("empty aggregate part".into()),
                Ok(_) => Ok(()),
                Err(err) => Err(format!("key {}: {err}", show(key))),
            };
        }
        let result = read_elements(r, e.agg_mut().expect("aggregate"));
        if let Ok(fit) = result {
            crate::encoding::restored(&mut e, fit);
        }
        store.put(e);
        result.map(|_| ()).map_err(|err| format!("key {}: {err}", show(key)))
    }

    /// After the last chunk: the end record was seen and what was loaded
    /// matches its key count and digest.
    pub fn finish(&self, store: &Store, sessions: &SessionTable, scripts: &Scripts) -> Result<(), SnapshotError> {
        let Some((keys, digest)) = self.end else {
            return Err(SnapshotError(format!("incomplete: no end record after {} chunks", self.chunks)));
        };
        if keys != store.len() as u64 {
            return Err(SnapshotError(format!("end record says {keys} keys, {} were loaded", store.len())));
        }
        let got = store.digest().wrapping_add(sessions.digest()).wrapping_add(scripts.digest());
        if digest != got {
            return Err(SnapshotError(format!("digest mismatch: end record says {digest:#018x}, loaded {got:#018x}")));
        }
        Ok(())
    }
}

/// Reads `count` elements into an aggregate; an empty part, a repeated
/// field or member, or a score a sorted set cannot hold is corruption (the
/// writer never produces them). Returns whether every element read fits
/// the compact encoding.
fn read_elements(r: &mut Reader, val: &mut AggVal) -> Result<bool, String> {
    let count = read_count(r)?;
    if count == 0 {
        return Err("empty aggregate part".into());
    }
    let w = |e: understudy_wire::WireError| e.to_string();
    let mut fit = true;
    for _ in 0..count {
        let a = r.bytes().map_err(w)?;
        fit &= crate::encoding::element_fits(val, a);
        let fresh = match val {
            AggVal::Hash(h) => {
                let v = r.bytes().map_err(w)?;
                fit &= v.len() <= crate::encoding::HASH_MAX_LISTPACK_VALUE;
                h.insert(a.into(), v.into()).is_none()
            }
            AggVal::List(l) => {
                l.push_back(a.into());
                true
            }
            AggVal::Set(s) => s.insert(a.into()),
            AggVal::Stream(_) => return Err("stream elements in an aggregate part".into()),
            AggVal::Zset(z) => {
                let score = f64::from_bits(r.u64().map_err(w)?);
                // What a sorted set never holds (crate::zset): NaN, -0.
                if score.is_nan() || (score == 0.0 && score.is_sign_negative()) {
                    return Err(format!("invalid score of {}", show(a)));
                }
                z.insert(a, score).is_none()
            }
        };
        if !fresh {
            return Err(format!("duplicate element {}", show(a)));
        }
    }
    Ok(fit)
}
