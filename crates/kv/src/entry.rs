//! One key and its value, laid out to keep memory per key close to Redis's.
//!
//! A string key (the common case: `SET`/`GET` workloads) is a single heap
//! block holding the key, the optional expiry and the value; the table slot
//! is one fat pointer. Aggregates (hash, list, set, sorted set) live behind
//! a box that also carries their key and expiry. The table is a
//! `HashSet<Entry>` looked up by key through `Borrow<[u8]>`, so the key is
//! stored once.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};

use foldhash::fast::{FixedState, RandomState};
use understudy_wire::codec::put_varint;

/// A binary-safe string owned by the store.
pub use crate::bytes::Bytes;
/// A hash's fields. Iteration order may differ between replicas; nothing
/// replicated depends on it (digests sum per-field hashes).
pub type HashVal = HashMap<Bytes, Bytes, RandomState>;
/// A set's members; same remark on order as [`HashVal`].
pub type SetVal = HashSet<Bytes, RandomState>;
/// A list's elements, head first.
pub type ListVal = VecDeque<Bytes>;
/// A stream's entries and consumer groups (`crate::stream`).
pub use crate::stream::StreamVal;
/// A sorted set's members and scores, in order (`crate::zset`).
pub use crate::zset::ZsetVal;

/// Flag in a string block's first byte: an 8-byte expiry follows the key.
const HAS_EXPIRE: u8 = 1;
/// Flags in a string block's first byte: how Redis would encode the value
/// ([`StrEncoding`]); neither set is [`StrEncoding::Auto`].
const ENC_RAW: u8 = 2;
const ENC_NO_INT: u8 = 4;
const ENC_MASK: u8 = ENC_RAW | ENC_NO_INT;

/// How Redis 7.0 would have encoded a string value, which depends on the
/// command that made it (OBJECT ENCODING reports it). Kept in the string
/// block's flag byte: no memory per key. Replicated like the value (both
/// replicas run the same commands) but not in snapshots: a restored string
/// is `Auto`, as Redis re-encodes every string it loads from an RDB file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrEncoding {
    /// Through `tryObjectEncoding` (SET, MSET, APPEND to a new key, INCR
    /// results): `int` for a canonical 64-bit integer, else `embstr` up to
    /// 44 bytes, else `raw`.
    Auto,
    /// Through `createStringObject` (INCRBYFLOAT): `embstr` or `raw`.
    NoInt,
    /// Changed in place (APPEND, SETRANGE, SETBIT, BITFIELD) or built as
    /// a plain sds (BITOP): `raw` whatever its length.
    Raw,
    /// COPY of an `int`: still `int`, but a new object, not one of the
    /// small integers Redis shares (OBJECT REFCOUNT 1).
    CopiedInt,
}

/// The fixed seed of the digest hash: digests are compared across
/// processes, so they must not use a per-process random seed.
const DIGEST: FixedState = FixedState::with_seed(0x7564_6572_7374_7564);

/// The type of a value, as `TYPE` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Hash,
    List,
    Set,
    Zset,
    Stream,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::Zset => "zset",
            Kind::Stream => "stream",
        }
    }
}

/// A stored key with its value and optional expiry (absolute ms since the
/// Unix epoch, as Redis keeps it), and when it was last accessed.
pub struct Entry {
    val: Val,
    /// Last access, in seconds since the Unix epoch (Redis's per-object
    /// LRU clock, at its 1 s resolution): for OBJECT IDLETIME and the LRU
    /// eviction policies. Local to this process, never replicated, in no
    /// digest or snapshot: the primary stamps reads and writes, a backup
    /// only the writes it applies (`crate::evict`). Atomic because reads
    /// stamp it through a shared reference.
    lru: AtomicU32,
}

enum Val {
    /// `[flags u8][key length varint][key][expiry u64 LE if flagged][value]`.
    Str(Bytes),
    Agg(Box<Agg>),
}

/// An aggregate value with its key and expiry.
pub struct Agg {
    key: Bytes,
    expire: Option<u64>,
    /// The value left Redis's compact encoding (listpack, intset) for a
    /// hashtable: Redis converts once a limit is passed and never back
    /// (`crate::encoding`).
    big: bool,
    /// The memory estimate's element part, as last measured
    /// ([`Entry::refresh_mem`]): the elements' bytes when the value had
    /// `mem_len` elements.
    mem_elems: u64,
    mem_len: usize,
    pub val: AggVal,
}

/// Aggregates up to this many elements are measured whole whenever they
/// are stored; larger ones again only once their length doubled or halved
/// since the last measure (amortized O(1) per element added).
const MEASURE_ALWAYS_LEN: usize = 64;

pub enum AggVal {
    Hash(HashVal),
    List(ListVal),
    Set(SetVal),
    Zset(ZsetVal),
    Stream(Box<StreamVal>),
}

impl AggVal {
    pub fn len(&self) -> usize {
        match self {
            AggVal::Hash(h) => h.len(),
            AggVal::List(l) => l.len(),
            AggVal::Set(s) => s.len(),
            AggVal::Zset(z) => z.len(),
            AggVal::Stream(s) => s.len(),
        }
    }

    /// Whether the value is gone: Redis deletes empty hashes, lists, sets
    /// and sorted sets, never a stream.
    pub fn is_empty(&self) -> bool {
        !matches!(self, AggVal::Stream(_)) && self.len() == 0
    }

    pub fn kind(&self) -> Kind {
        match self {
            AggVal::Hash(_) => Kind::Hash,
            AggVal::List(_) => Kind::List,
            AggVal::Set(_) => Kind::Set,
            AggVal::Zset(_) => Kind::Zset,
            AggVal::Stream(_) => Kind::Stream,
        }
    }
}

/// Offsets inside a string block: key range and value start.
struct StrLayout {
    key_start: usize,
    key_end: usize,
    value_start: usize,
    expire: Option<u64>,
}

fn str_layout(b: &[u8]) -> StrLayout {
    // The block was built by `Entry::string_with`, so the varint is valid.
    let mut len: usize = 0;
    let mut i = 1;
    let mut shift = 0;
    loop {
        let byte = b[i];
        i += 1;
        len |= usize::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let key_end = i + len;
    if b[0] & HAS_EXPIRE != 0 {
        let t = u64::from_le_bytes(b[key_end..key_end + 8].try_into().expect("8 bytes"));
        StrLayout { key_start: i, key_end, value_start: key_end + 8, expire: Some(t) }
    } else {
        StrLayout { key_start: i, key_end, value_start: key_end, expire: None }
    }
}

impl Entry {
    /// A string entry; one allocation of exactly the needed size.
    pub fn string(key: &[u8], value: &[u8], expire: Option<u64>) -> Entry {
        Entry::string_with(key, expire, value.len(), |v| v.extend_from_slice(value))
    }

    /// A string entry whose value `fill` appends (`value_len` bytes), so
    /// APPEND, INCR and SETRANGE build the new block without a temporary.
    pub fn string_with(key: &[u8], expire: Option<u64>, value_len: usize, fill: impl FnOnce(&mut Vec<u8>)) -> Entry {
        let cap = 1 + 10 + key.len() + 8 + value_len;
        let mut b = Vec::with_capacity(cap);
        b.push(if expire.is_some() { HAS_EXPIRE } else { 0 });
        put_varint(&mut b, key.len() as u64);
        b.extend_from_slice(key);
        if let Some(t) = expire {
            b.extend_from_slice(&t.to_le_bytes());
        }
        fill(&mut b);
        Entry::from_val(Val::Str(b.into_boxed_slice()))
    }

    fn from_val(val: Val) -> Entry {
        Entry { val, lru: AtomicU32::new(0) }
    }

    pub fn aggregate(key: &[u8], expire: Option<u64>, val: AggVal) -> Entry {
        Entry::from_val(Val::Agg(Box::new(Agg { key: key.into(), expire, big: false, mem_elems: 0, mem_len: 0, val })))
    }

    /// When this entry was last accessed (seconds since the Unix epoch;
    /// 0: not since it was made).
    pub fn lru(&self) -> u32 {
        self.lru.load(Ordering::Relaxed)
    }

    /// Records an access at `now_s`.
    pub fn stamp(&self, now_s: u32) {
        self.lru.store(now_s, Ordering::Relaxed);
    }

    /// A string entry's whole block (key, expiry, value, flags), for the
    /// memory estimate.
    pub fn str_block_len(&self) -> Option<usize> {
        match &self.val {
            Val::Str(b) => Some(b.len()),
            Val::Agg(_) => None,
        }
    }

    /// The bytes this entry takes by the estimate `used_memory` sums: a
    /// string's slot and block exactly; an aggregate's fixed part plus its
    /// elements as last measured, scaled to its length now. O(1). The same
    /// value from when the store took the entry until it gives it back, as
    /// its running total needs.
    pub fn mem_bytes(&self) -> u64 {
        match &self.val {
            Val::Str(b) => string_bytes(b.len()),
            Val::Agg(a) => {
                let len = a.val.len() as u64;
                let elems = (a.mem_elems * len).checked_div(a.mem_len as u64).unwrap_or(0);
                aggregate_base(a.key.len()) + elems
            }
        }
    }

    /// Measures an aggregate's elements again if its length moved far from
    /// the last measure's (or it is small): called when the store takes it.
    pub fn refresh_mem(&mut self) {
        let Val::Agg(a) = &mut self.val else { return };
        let len = a.val.len();
        let stale = len <= MEASURE_ALWAYS_LEN || a.mem_len == 0 || len >= 2 * a.mem_len || 2 * len <= a.mem_len;
        if stale {
            a.mem_elems = elements_bytes(&a.val, u64::MAX);
            a.mem_len = len;
        }
    }

    /// The encoding Redis would report for a string entry.
    pub fn str_encoding(&self) -> Option<StrEncoding> {
        match &self.val {
            Val::Str(b) => Some(match b[0] & ENC_MASK {
                0 => StrEncoding::Auto,
                ENC_NO_INT => StrEncoding::NoInt,
                ENC_RAW => StrEncoding::Raw,
                _ => StrEncoding::CopiedInt,
            }),
            Val::Agg(_) => None,
        }
    }

    /// The same string entry, recorded as made the way `enc` says.
    pub fn with_str_encoding(self, enc: StrEncoding) -> Entry {
        let lru = self.lru;
        match self.val {
            Val::Str(mut b) => {
                b[0] = (b[0] & !ENC_MASK)
                    | match enc {
                        StrEncoding::Auto => 0,
                        StrEncoding::NoInt => ENC_NO_INT,
                        StrEncoding::Raw => ENC_RAW,
                        StrEncoding::CopiedInt => ENC_MASK,
                    };
                Entry { val: Val::Str(b), lru }
            }
            agg => Entry { val: agg, lru },
        }
    }

    /// Whether an aggregate left its compact encoding (`crate::encoding`).
    pub fn is_big(&self) -> bool {
        matches!(&self.val, Val::Agg(a) if a.big)
    }

    /// Records that an aggregate left its compact encoding (or, for a
    /// value built anew, which encoding it starts with).
    pub fn set_big(&mut self, big: bool) {
        if let Val::Agg(a) = &mut self.val {
            a.big = big;
        }
    }

    /// Records that an aggregate left its compact encoding, for good.
    pub fn mark_big(&mut self) {
        self.set_big(true);
    }

    pub fn key(&self) -> &[u8] {
        match &self.val {
            Val::Str(b) => {
                let l = str_layout(b);
                &b[l.key_start..l.key_end]
            }
            Val::Agg(a) => &a.key,
        }
    }

    pub fn expire(&self) -> Option<u64> {
        match &self.val {
            Val::Str(b) => {
                if b[0] & HAS_EXPIRE == 0 {
                    None
                } else {
                    str_layout(b).expire
                }
            }
            Val::Agg(a) => a.expire,
        }
    }

    pub fn kind(&self) -> Kind {
        match &self.val {
            Val::Str(_) => Kind::String,
            Val::Agg(a) => a.val.kind(),
        }
    }

    /// The value of a string entry.
    pub fn str_value(&self) -> Option<&[u8]> {
        match &self.val {
            Val::Str(b) => Some(&b[str_layout(b).value_start..]),
            Val::Agg(_) => None,
        }
    }

    /// The value of a string entry, to change in place (same length).
    pub fn str_value_mut(&mut self) -> Option<&mut [u8]> {
        match &mut self.val {
            Val::Str(b) => {
                let start = str_layout(b).value_start;
                Some(&mut b[start..])
            }
            Val::Agg(_) => None,
        }
    }

    pub fn agg(&self) -> Option<&AggVal> {
        match &self.val {
            Val::Str(_) => None,
            Val::Agg(a) => Some(&a.val),
        }
    }

    pub fn agg_mut(&mut self) -> Option<&mut AggVal> {
        match &mut self.val {
            Val::Str(_) => None,
            Val::Agg(a) => Some(&mut a.val),
        }
    }

    /// The same key and value with another expiry (a string block is
    /// rebuilt: expiry changes are rare next to reads).
    pub fn with_expire(self, expire: Option<u64>) -> Entry {
        let lru = self.lru();
        match self.val {
            Val::Str(ref b) => {
                let l = str_layout(b);
                let enc = self.str_encoding().expect("a string");
                let e = Entry::string(&b[l.key_start..l.key_end], &b[l.value_start..], expire).with_str_encoding(enc);
                e.stamp(lru);
                e
            }
            Val::Agg(mut a) => {
                a.expire = expire;
                Entry { val: Val::Agg(a), lru: AtomicU32::new(lru) }
            }
        }
    }

    /// The same value and expiry under another key (RENAME).
    pub fn with_key(self, key: &[u8]) -> Entry {
        let lru = self.lru();
        match self.val {
            Val::Str(ref b) => {
                let l = str_layout(b);
                let enc = self.str_encoding().expect("a string");
                let e = Entry::string(key, &b[l.value_start..], l.expire).with_str_encoding(enc);
                e.stamp(lru);
                e
            }
            Val::Agg(mut a) => {
                a.key = key.into();
                Entry { val: Val::Agg(a), lru: AtomicU32::new(lru) }
            }
        }
    }

    /// This entry's share of the store digest: covers key, type, expiry and
    /// contents; element order inside hashes and sets does not matter.
    pub fn digest(&self) -> u64 {
        let mut h = DIGEST.build_hasher();
        h.write_u8(self.kind() as u8);
        write_part(&mut h, self.key());
        h.write_u64(self.expire().map_or(0, |t| t.wrapping_add(1)));
        match &self.val {
            Val::Str(_) => write_part(&mut h, self.str_value().unwrap_or_default()),
            Val::Agg(a) => {
                h.write_u64(a.val.len() as u64);
                match &a.val {
                    AggVal::Hash(m) => h.write_u64(m.iter().fold(0u64, |acc, (f, v)| acc.wrapping_add(hash_parts(&[f, v])))),
                    AggVal::Set(s) => h.write_u64(s.iter().fold(0u64, |acc, m| acc.wrapping_add(hash_parts(&[m])))),
                    AggVal::List(l) => l.iter().for_each(|item| write_part(&mut h, item)),
                    AggVal::Zset(z) => h.write_u64(
                        z.iter().fold(0u64, |acc, (score, m)| acc.wrapping_add(hash_parts(&[m, &score.to_bits().to_le_bytes()]))),
                    ),
                    AggVal::Stream(s) => s.digest(&mut h),
                }
            }
        }
        h.finish()
    }
}

// The memory estimate (MEMORY USAGE, INFO's used_memory): understudy's
// own layout, not Redis's figures. Redis measures its objects the same
// way in object.c (objectComputeSize), by sampling aggregates.

/// Bytes the allocator hands out for a block of `n` bytes.
fn block(n: usize) -> u64 {
    if n == 0 {
        0
    } else {
        (n as u64).div_ceil(16) * 16
    }
}

/// A table slot (the entry: a fat pointer and the access clock) and its
/// control byte.
const SLOT: u64 = 25;

/// A string entry whose block is `block_len` bytes.
pub fn string_bytes(block_len: usize) -> u64 {
    SLOT + block(block_len)
}

/// An aggregate's fixed part: its slot, its box and its key.
pub fn aggregate_base(key_len: usize) -> u64 {
    SLOT + block(std::mem::size_of::<Agg>()) + block(key_len)
}

/// The bytes of an aggregate's elements, measuring up to `samples` of a
/// list, sorted set or stream and scaling their average; every element of
/// a hash or set (their order differs between replicas).
pub fn elements_bytes(val: &AggVal, samples: u64) -> u64 {
    let len = val.len() as u64;
    let (sum, n) = match val {
        AggVal::Hash(h) => sampled(h.iter().map(|(f, v)| 33 + block(f.len()) + block(v.len())), u64::MAX),
        AggVal::Set(s) => sampled(s.iter().map(|m| 17 + block(m.len())), u64::MAX),
        AggVal::List(l) => sampled(l.iter().map(|v| 16 + block(v.len())), samples),
        // The score table's entry and the sorted block's pair, each with
        // its own copy of the member.
        AggVal::Zset(z) => sampled(z.iter().map(|(_, m)| 49 + 2 * block(m.len())), samples),
        // An entry: its ID and fields in the ordered map, each field a block.
        AggVal::Stream(s) => {
            sampled(s.entries.values().map(|f| 48 + block(16 * f.len()) + f.iter().map(|v| block(v.len())).sum::<u64>()), samples)
        }
    };
    (sum * len).checked_div(n).unwrap_or(0)
}

fn sampled(sizes: impl Iterator<Item = u64>, samples: u64) -> (u64, u64) {
    sizes.take(usize::try_from(samples).unwrap_or(usize::MAX)).fold((0, 0), |(s, n), b| (s + b, n + 1))
}

fn write_part(h: &mut impl Hasher, b: &[u8]) {
    h.write_u64(b.len() as u64);
    h.write(b);
}

fn hash_parts(parts: &[&[u8]]) -> u64 {
    let mut h = DIGEST.build_hasher();
    for p in parts {
        write_part(&mut h, p);
    }
    h.finish()
}

impl Borrow<[u8]> for Entry {
    fn borrow(&self) -> &[u8] {
        self.key()
    }
}

/// Hashes exactly as the key slice does, as `Borrow` requires.
impl Hash for Entry {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Entry {}

impl Clone for Entry {
    fn clone(&self) -> Self {
        let val = match &self.val {
            Val::Str(b) => Val::Str(b.clone()),
            Val::Agg(a) => {
                let val = match &a.val {
                    AggVal::Hash(h) => AggVal::Hash(h.clone()),
                    AggVal::List(l) => AggVal::List(l.clone()),
                    AggVal::Set(s) => AggVal::Set(s.clone()),
                    AggVal::Zset(z) => AggVal::Zset(z.clone()),
                    AggVal::Stream(s) => AggVal::Stream(s.clone()),
                };
                Val::Agg(Box::new(Agg {
                    key: a.key.clone(),
                    expire: a.expire,
                    big: a.big,
                    mem_elems: a.mem_elems,
                    mem_len: a.mem_len,
                    val,
                }))
            }
        };
        Entry { val, lru: AtomicU32::new(self.lru()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_three_words() {
        // The table slot size drives memory per key (Redis comparison):
        // the value's two words and the access clock (Redis keeps its LRU
        // clock in every object's header too).
        assert_eq!(std::mem::size_of::<Entry>(), 24);
    }

    #[test]
    fn access_clock_survives_rename_and_expiry_changes() {
        let e = Entry::string(b"k", b"v", None);
        e.stamp(77);
        let e = e.with_expire(Some(5)).with_key(b"j").with_str_encoding(StrEncoding::Raw);
        assert_eq!(e.lru(), 77);
        assert_eq!(e.clone().lru(), 77);
        let a = Entry::aggregate(b"k", None, AggVal::List(ListVal::new()));
        a.stamp(9);
        assert_eq!(a.with_key(b"x").with_expire(Some(1)).lru(), 9);
    }

    #[test]
    fn aggregate_estimate_is_remeasured_as_it_grows() {
        let mut e = Entry::aggregate(b"k", None, AggVal::List(ListVal::new()));
        for i in 0..1000u32 {
            if let Some(AggVal::List(l)) = e.agg_mut() {
                l.push_back(vec![b'x'; 100].into());
            }
            if i % 7 == 0 {
                e.refresh_mem();
            }
        }
        e.refresh_mem();
        let est = e.mem_bytes();
        // 1000 elements of 100 bytes: at least their blocks.
        assert!(est >= 1000 * 112, "{est}");
        assert!(est <= 1000 * 160 + 256, "{est}");
    }

    #[test]
    fn string_block_roundtrip() {
        let long_key = vec![b'k'; 300];
        for key in [&b""[..], b"k", &long_key] {
            for exp in [None, Some(0), Some(u64::MAX)] {
                let e = Entry::string(key, b"value", exp);
                assert_eq!(e.key(), key);
                assert_eq!(e.expire(), exp);
                assert_eq!(e.str_value(), Some(&b"value"[..]));
                let e = e.with_expire(Some(7)).with_key(b"other");
                assert_eq!((e.key(), e.expire(), e.str_value()), (&b"other"[..], Some(7), Some(&b"value"[..])));
            }
        }
    }

    #[test]
    fn string_encoding_survives_expiry_and_rename() {
        let e = Entry::string(b"k", b"v", None).with_str_encoding(StrEncoding::Raw);
        let e = e.with_expire(Some(9)).with_key(b"other");
        assert_eq!(e.str_encoding(), Some(StrEncoding::Raw));
        assert_eq!((e.expire(), e.str_value()), (Some(9), Some(&b"v"[..])));
        let e = e.with_str_encoding(StrEncoding::NoInt).with_expire(None);
        assert_eq!(e.str_encoding(), Some(StrEncoding::NoInt));
        assert_eq!(e.clone().str_encoding(), Some(StrEncoding::NoInt));
        assert_eq!(
            e.digest(),
            Entry::string(b"other", b"v", None).digest(),
            "a snapshot does not carry the encoding, so the digest leaves it out"
        );
    }

    #[test]
    fn digest_covers_expiry_and_contents() {
        let a = Entry::string(b"k", b"v", None);
        assert_ne!(a.digest(), Entry::string(b"k", b"v", Some(1)).digest());
        assert_ne!(a.digest(), Entry::string(b"k", b"w", None).digest());
        assert_ne!(a.digest(), Entry::string(b"j", b"v", None).digest());
        let list = |items: &[&[u8]]| Entry::aggregate(b"k", None, AggVal::List(items.iter().map(|i| Bytes::from(*i)).collect()));
        assert_ne!(list(&[b"a", b"b"]).digest(), list(&[b"b", b"a"]).digest());
        assert_ne!(list(&[b"ab"]).digest(), list(&[b"a", b"b"]).digest());
    }
}
