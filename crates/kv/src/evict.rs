//! `maxmemory`: a bound on the keyspace's memory estimate, kept by evicting
//! keys the primary chooses and logs, as Redis replicates its evictions to
//! its replicas as DELs (Redis's evict.c, performEvictions).
//!
//! The figure is the store's own estimate (`Store::used_memory`, the sum
//! of `Entry::mem_bytes`), a function of the entries, so both replicas hold
//! the same one; not the allocator's. Before the primary logs a write that
//! may grow memory (a command flagged `denyoom`, XGROUP CREATE and
//! CREATECONSUMER, a transaction holding one, EVAL and EVALSHA) while the
//! estimate is over the limit, [`admit`] picks victims by the policy and
//! puts them AHEAD of the write in one evict op:
//!
//! ```text
//! evict = 0x08 count:varint key:bytes*count flags:u8 op   (op: the write)
//! ```
//!
//! Both replicas delete the named keys, then run the write; the backup never
//! chooses anything. When the policy finds nothing (more) to evict, the
//! write is refused with Redis's OOM error: not logged at all if nothing was
//! evicted, otherwise logged with the `OOM` flag so that the evictions
//! happen and the reply is the error. A script under that flag runs with
//! Redis's pre-command OOM state: its first `denyoom` call before any write
//! fails (a `#!lua` script without `allow-oom` or `no-writes` does not
//! start).
//!
//! The LRU policies sample keys as Redis does (5 per victim,
//! maxmemory-samples' default) and evict the one idle longest, by the
//! access clock each entry carries (`Entry::lru`): local to each process,
//! so a new primary after a failover knows the times of the writes it
//! applied, not of the reads the old primary served. The choice is logged,
//! so where the clock or the randomness came from does not matter to the
//! backup.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use understudy_wire::codec::{put_bytes, put_varint, Reader};

use crate::cmd::Cmd;
use crate::entry::{Bytes, Entry};
use crate::op::{self, Argv};
use crate::store::Store;

pub const OP_EVICT: u8 = 8;
/// Evict op flag: the limit could not be reached; the write is refused
/// (a script runs with Redis's OOM state instead).
pub const FLAG_OOM: u8 = 1;

/// Redis's shared.oomerr (without the leading `-`).
pub const OOM: &[u8] = b"OOM command not allowed when used memory > 'maxmemory'.";
/// EXEC of a transaction with a `denyoom` command under OOM (Redis's
/// execCommandAbort).
pub const EXEC_OOM: &[u8] =
    b"EXECABORT Transaction discarded because of: OOM command not allowed when used memory > 'maxmemory'.";
/// A `#!lua` script that may write, without `allow-oom`, under OOM.
pub const SCRIPT_OOM: &[u8] = OOM;

/// Keys one evict op names at most. Past it the write goes ahead over the
/// limit (Redis's eviction time limit does the same) and the next writes
/// evict more.
const EVICT_KEYS_MAX: usize = 1024;

/// Keys sampled per victim (Redis's maxmemory-samples default).
const SAMPLES: usize = 5;

/// `maxmemory-policy`. The LFU policies are not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    NoEviction,
    AllkeysLru,
    VolatileLru,
    AllkeysRandom,
    VolatileRandom,
    VolatileTtl,
}

impl Policy {
    pub const ALL: [Policy; 6] = [
        Policy::VolatileLru,
        Policy::VolatileRandom,
        Policy::VolatileTtl,
        Policy::AllkeysLru,
        Policy::AllkeysRandom,
        Policy::NoEviction,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::NoEviction => "noeviction",
            Policy::AllkeysLru => "allkeys-lru",
            Policy::VolatileLru => "volatile-lru",
            Policy::AllkeysRandom => "allkeys-random",
            Policy::VolatileRandom => "volatile-random",
            Policy::VolatileTtl => "volatile-ttl",
        }
    }

    /// A policy by name, any case (as redis.conf reads it).
    pub fn parse(name: &[u8]) -> Option<Policy> {
        Policy::ALL.into_iter().find(|p| name.eq_ignore_ascii_case(p.name().as_bytes()))
    }

    /// Whether only keys with an expiry may be evicted.
    fn volatile(self) -> bool {
        matches!(self, Policy::VolatileLru | Policy::VolatileRandom | Policy::VolatileTtl)
    }
}

/// The limit and the policy. Only the primary acts on them (the backup
/// applies what the primary logged), so a backup's values matter only once
/// it is the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Maxmemory {
    /// Bytes of the estimate; 0: no limit (Redis's default).
    pub bytes: u64,
    pub policy: Policy,
}

/// A memory value as redis.conf and CONFIG SET read it (Redis's memtoull):
/// digits and an optional unit, any case: `b`, `k` (1000), `kb` (1024),
/// `m`, `mb`, `g`, `gb`. Also `KiB`, `MiB`, `GiB` as understudy's other
/// size flags take them.
pub fn parse_memory(s: &[u8]) -> Option<u64> {
    let split = s.iter().position(|c| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let mul: u64 = match &unit.to_ascii_lowercase()[..] {
        b"" | b"b" => 1,
        b"k" => 1000,
        b"kb" | b"kib" => 1 << 10,
        b"m" => 1000 * 1000,
        b"mb" | b"mib" => 1 << 20,
        b"g" => 1000 * 1000 * 1000,
        b"gb" | b"gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// Whether the encoded write `op` may grow memory, and how it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grows {
    Command,
    Transaction,
    Script,
}

/// Redis's CMD_DENYOOM, with XGROUP's subcommand flags (CREATE and
/// CREATECONSUMER are `denyoom`).
pub fn denyoom(cmd: Cmd, argv: &[&[u8]]) -> bool {
    match cmd {
        Cmd::Xgroup => {
            argv.get(1).is_some_and(|s| s.eq_ignore_ascii_case(b"create") || s.eq_ignore_ascii_case(b"createconsumer"))
        }
        _ => cmd.spec().flags.contains(&"denyoom"),
    }
}

fn grows(op: &[u8]) -> Option<Grows> {
    let mut r = Reader::new(op, "kv op");
    let mut argv = Argv::new();
    match r.u8().ok()? {
        op::OP_COMMAND => {
            let cmd = op::read_command(&mut r, &mut argv).ok()?;
            if matches!(cmd, Cmd::Eval | Cmd::Evalsha) {
                return Some(Grows::Script);
            }
            denyoom(cmd, argv.as_slice()).then_some(Grows::Command)
        }
        op::OP_TRANSACTION => {
            let n = op::read_count(&mut r).ok()?;
            for _ in 0..n {
                match r.u8().ok()? {
                    op::ITEM_COMMAND => {
                        let cmd = op::read_command(&mut r, &mut argv).ok()?;
                        if denyoom(cmd, argv.as_slice()) {
                            return Some(Grows::Transaction);
                        }
                    }
                    _ => {
                        r.bytes().ok()?;
                    }
                }
            }
            None
        }
        _ => None,
    }
}

/// What [`admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Log `op` (unchanged, or now an evict op with the write inside).
    Log,
    /// Refused: the OOM error is in `out`, nothing is to be logged, and the
    /// reply tells of the state (release it as a read's).
    Refused,
}

/// The primary's local eviction state: the sampling's random sequence.
#[derive(Default)]
pub struct Evictor {
    rng: AtomicU64,
    /// Evictions applied (INFO's `evicted_keys`): both replicas count the
    /// same ones, since both apply the same evict ops.
    pub evicted: u64,
}

impl Evictor {
    fn next(&self) -> u64 {
        // splitmix64: any sequence will do, the choice is logged.
        let z = self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed).wrapping_add(0x9E37_79B9_7F4A_7C15);
        let z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Chooses keys worth at least `to_free` bytes by `policy`: (keys,
    /// whether enough were found or the op is full).
    fn victims(&self, store: &Store, policy: Policy, to_free: u64) -> (Vec<Bytes>, bool) {
        let mut chosen: HashSet<Bytes> = HashSet::new();
        let mut keys = Vec::new();
        let mut freed = 0;
        if policy == Policy::NoEviction {
            return (keys, false);
        }
        while freed < to_free {
            if keys.len() >= EVICT_KEYS_MAX {
                return (keys, true);
            }
            let samples = if matches!(policy, Policy::AllkeysRandom | Policy::VolatileRandom) { 1 } else { SAMPLES };
            let mut best: Option<&Entry> = None;
            for _ in 0..samples {
                let Some(e) = store.sample(&mut || self.next(), policy.volatile(), &|e| chosen.contains(e.key())) else { break };
                let better = match best {
                    None => true,
                    Some(b) if policy == Policy::VolatileTtl => e.expire() < b.expire(),
                    Some(b) => e.lru() < b.lru(),
                };
                if better {
                    best = Some(e);
                }
            }
            let Some(victim) = best else { return (keys, false) };
            freed += victim.mem_bytes();
            chosen.insert(victim.key().into());
            keys.push(victim.key().into());
        }
        (keys, true)
    }
}

/// On the primary, before `op` (a write the session encoded) is logged:
/// under the limit, or for a write that cannot grow memory, leaves it be;
/// otherwise wraps it in an evict op naming the victims, or refuses it.
pub fn admit(store: &Store, limit: Maxmemory, ev: &Evictor, op: &mut Vec<u8>, out: &mut Vec<u8>) -> Admit {
    let used = store.used_memory();
    if limit.bytes == 0 || used <= limit.bytes || op.is_empty() {
        return Admit::Log;
    }
    let Some(kind) = grows(op) else { return Admit::Log };
    let (keys, enough) = ev.victims(store, limit.policy, used - limit.bytes);
    if !enough && keys.is_empty() && kind != Grows::Script {
        op.clear();
        crate::resp::write_error(out, if kind == Grows::Transaction { EXEC_OOM } else { OOM });
        return Admit::Refused;
    }
    let write = std::mem::take(op);
    op.push(OP_EVICT);
    put_varint(op, keys.len() as u64);
    keys.iter().for_each(|k| put_bytes(op, k));
    op.push(if enough { 0 } else { FLAG_OOM });
    op.extend_from_slice(&write);
    Admit::Log
}

/// Whether the primary refuses writes now whatever it evicts: over the
/// limit with nothing the policy may evict (Redis's OOM state, which also
/// refuses every command queued into MULTI). O(1).
pub fn out_of_memory(store: &Store, limit: Maxmemory) -> bool {
    limit.bytes != 0
        && store.used_memory() > limit.bytes
        && match limit.policy {
            Policy::NoEviction => true,
            p if p.volatile() => store.expiring() == 0,
            _ => store.is_empty(),
        }
}

/// A decoded evict op: the keys, the flags and the write inside.
pub struct EvictOp<'a> {
    pub keys: Vec<&'a [u8]>,
    pub oom: bool,
    pub write: &'a [u8],
}

/// Decodes an evict op after its tag, whole before anything is applied.
pub fn decode(mut r: Reader<'_>) -> Result<EvictOp<'_>, String> {
    let n = op::read_count(&mut r)?;
    let keys = (0..n).map(|_| r.bytes().map_err(|e| e.to_string())).collect::<Result<Vec<_>, _>>()?;
    let flags = r.u8().map_err(|e| e.to_string())?;
    if flags & !FLAG_OOM != 0 {
        return Err(format!("unknown evict flags {flags}"));
    }
    let write = r.rest();
    if write.first() == Some(&OP_EVICT) {
        return Err("an evict op inside an evict op".into());
    }
    Ok(EvictOp { keys, oom: flags & FLAG_OOM != 0, write })
}

/// Whether a logged write is a script command (EVAL or EVALSHA), which an
/// OOM evict op runs rather than refuses.
pub fn is_script_write(write: &[u8]) -> bool {
    let mut r = Reader::new(write, "kv op");
    let mut argv = Argv::new();
    r.u8().ok() == Some(op::OP_COMMAND)
        && op::read_command(&mut r, &mut argv).is_ok_and(|c| matches!(c, Cmd::Eval | Cmd::Evalsha))
}

/// Keys whose lookups do not count as an access (Redis's LOOKUP_NOTOUCH:
/// TYPE, TTL and its kin, EXISTS, OBJECT; MEMORY and SCAN look at the
/// table without a lookup).
fn touches(cmd: Cmd) -> bool {
    !matches!(
        cmd,
        Cmd::Type
            | Cmd::Ttl
            | Cmd::Pttl
            | Cmd::Expiretime
            | Cmd::Pexpiretime
            | Cmd::Exists
            | Cmd::Object
            | Cmd::Memory
            | Cmd::Scan
            | Cmd::Keys
            | Cmd::Randomkey
            | Cmd::Dbsize
    )
}

/// Records an access at `now_s` to the keys `argv` names by the command
/// table's key positions (EVAL's and EVALSHA's: the declared keys).
pub fn touch_keys(store: &Store, cmd: Cmd, argv: &[&[u8]], now_s: u32) {
    if !touches(cmd) {
        return;
    }
    if matches!(cmd, Cmd::Eval | Cmd::Evalsha | Cmd::EvalRo | Cmd::EvalshaRo) {
        let n = argv.get(2).and_then(|n| crate::num::parse_i64(n)).unwrap_or(0);
        let n = usize::try_from(n).unwrap_or(0).min(argv.len().saturating_sub(3));
        argv[3..3 + n].iter().for_each(|k| store.touch(k, now_s));
        return;
    }
    let (first, last, step) = cmd.spec().keys;
    if first <= 0 || step <= 0 {
        return;
    }
    let last = if last < 0 { argv.len() as i64 + i64::from(last) } else { i64::from(last) };
    let mut i = i64::from(first);
    while i <= last && (i as usize) < argv.len() {
        store.touch(argv[i as usize], now_s);
        i += i64::from(step);
    }
}

/// Seconds since the Unix epoch from this process's clock: the access time
/// a replica stamps on what it writes (local, never replicated).
pub fn local_now_s() -> u32 {
    let s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    u32::try_from(s).unwrap_or(u32::MAX)
}

/// Seconds for the access clock from a time in ms.
pub fn clock_s(now_ms: u64) -> u32 {
    u32::try_from(now_ms / 1000).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_values_as_redis_reads_them() {
        assert_eq!(parse_memory(b"0"), Some(0));
        assert_eq!(parse_memory(b"100"), Some(100));
        assert_eq!(parse_memory(b"1k"), Some(1000));
        assert_eq!(parse_memory(b"1KB"), Some(1024));
        assert_eq!(parse_memory(b"100mb"), Some(100 << 20));
        assert_eq!(parse_memory(b"1m"), Some(1_000_000));
        assert_eq!(parse_memory(b"1gb"), Some(1 << 30));
        assert_eq!(parse_memory(b"2MiB"), Some(2 << 20));
        for bad in [&b""[..], b"-1", b"mb", b"1.5mb", b"1 mb", b"1tb", b"99999999999999999999"] {
            assert_eq!(parse_memory(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn policies_by_name() {
        for p in Policy::ALL {
            assert_eq!(Policy::parse(p.name().to_uppercase().as_bytes()), Some(p));
        }
        assert_eq!(Policy::parse(b"allkeys-lfu"), None);
        assert_eq!(Policy::default(), Policy::NoEviction);
    }

    #[test]
    fn denyoom_follows_the_table_and_xgroup_subcommands() {
        assert!(denyoom(Cmd::Set, &[b"set", b"k", b"v"]));
        assert!(!denyoom(Cmd::Del, &[b"del", b"k"]));
        assert!(denyoom(Cmd::Xgroup, &[b"xgroup", b"CREATE", b"s", b"g", b"$"]));
        assert!(!denyoom(Cmd::Xgroup, &[b"xgroup", b"destroy", b"s", b"g"]));
    }

    #[test]
    fn touch_keys_follows_key_positions() {
        let mut s = Store::new();
        for k in [&b"a"[..], b"b", b"c"] {
            s.put(Entry::string(k, b"v", None));
        }
        touch_keys(&s, Cmd::Mset, &[b"mset", b"a", b"1", b"b", b"2"], 50);
        touch_keys(&s, Cmd::Exists, &[b"exists", b"c"], 60);
        touch_keys(&s, Cmd::Eval, &[b"eval", b"return 1", b"1", b"c", b"a"], 70);
        let lru = |k: &[u8]| s.get_any(k).map(Entry::lru);
        assert_eq!((lru(b"a"), lru(b"b"), lru(b"c")), (Some(50), Some(50), Some(70)), "MSET's keys are every other argument");
    }
}
