//! Lua scripting: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT, with
//! Redis 7.0's replies and errors (checked against redis-server 7.0.15 by
//! the differential test), on an embedded Lua 5.1 as Redis's.
//!
//! # Replication
//!
//! A script runs inside ONE op: EVAL and EVALSHA are write commands, logged
//! with their arguments (EVAL's carries the body) and run again on the
//! backup with the op's recorded clock, so both replicas make the same
//! changes and give the same reply. What a script depends on is replicated
//! state, in snapshots and the digest ([`Scripts`]): the script cache
//! (SCRIPT LOAD and EVAL add to it on both replicas, SCRIPT FLUSH clears
//! it, so EVALSHA resolves its sha alike on each replica and keeps working
//! after a failover) and the state of `math.random`. The Lua VM is not: it
//! is local ([`Engine`]), and what a script can see of it is made the same
//! everywhere (`glue.lua`: read-only globals and libraries, no addresses
//! in `tostring`, no collector figures). The commands a script calls take
//! time and randomness from the op's clock as they do outside scripts:
//! SPOP, SRANDMEMBER, HRANDFIELD and RANDOMKEY draw values the primary
//! records and the backup replays, so both pick the same.
//!
//! EVAL_RO and EVALSHA_RO are reads: they run on the primary alone, with a
//! read-only store, and leave no trace (not even in the cache or the
//! `math.random` state).
//!
//! # Bounded time
//!
//! A script may not hold the event loop for ever. Each run has a budget of
//! Lua instructions ([`ScriptLimits`]): past it the script is stopped with
//! an error, and the changes it made before stay (Redis cannot undo a
//! script's writes either; our replicas stop it at the same instruction,
//! so they agree). A wall-clock limit would stop the script at different
//! points on the two replicas, and their states would diverge.
//!
//! # Differences from Redis 7.0
//!
//! - EVAL_RO/EVALSHA_RO do not add their body to the cache, and their
//!   `math.random` draws do not advance the replicated sequence.
//! - Replies whose order comes from a hash table (HGETALL, HKEYS, HVALS,
//!   SMEMBERS, SUNION, SINTER, SDIFF, KEYS, SCAN's elements) are sorted
//!   when a script reads them, so a script sees the same order on both
//!   replicas.
//! - `tostring` of a table, function, coroutine or userdata numbers them
//!   (`table: 0x00000001`) instead of showing an address;
//!   `collectgarbage("count")` and `gcinfo()` answer 0.
//! - Read-only tables are proxies: iterating a library table with `pairs`
//!   works, but `#` of one is 0; errors of a few wrapped builtins called
//!   with wrong arguments are positioned in the glue.
//! - `redis.setresp(3)` is refused (RESP2 only inside scripts); the RESP3
//!   reply tables `{double=…}`, `{map=…}`, `{set=…}` are replied in their
//!   RESP2 form on RESP3 connections too; `big_number` and
//!   `verbatim_string` tables are not recognised.
//! - `redis.log` writes nothing; `redis.breakpoint`, `redis.debug`,
//!   `SCRIPT DEBUG YES|SYNC` (the debugger) are not available.
//! - CLIENT, CONFIG, COMMAND, INFO and LASTSAVE cannot be called from a
//!   script (Redis runs them on the script's own client); SELECT of a
//!   database other than 0 fails, as it does outside scripts.
//! - PUBLISH and PUBSUB cannot be called from a script: the node, not the
//!   keyspace, knows the subscribers and delivers a message once its op is
//!   replicated (SUBSCRIBE and the like are refused as Redis refuses them).
//! - The Lua heap is not bounded (nor is it in Redis); one C call such as
//!   `string.rep` counts as one instruction of the budget.
//! - Not available: the `cjson`, `cmsgpack`, `struct` and `bit` libraries.
//! - Iterating a table whose keys are tables or functions goes in an order
//!   that depends on addresses, which differ between replicas: a script
//!   that writes in that order makes the replicas diverge.

mod convert;
mod rand;
mod vm;

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};

use foldhash::fast::FixedState;

use crate::cmd::{exec_read, exec_write, Cmd, Exec, Kind, NOT_INT};
use crate::resp::{write_array_len, write_bulk, write_error, write_int, write_ok, write_simple};
use crate::store::{Clock, Store};
use vm::{Outcome, Vm};

pub use rand::INITIAL as RAND_INITIAL;

const NOSCRIPT: &[u8] = b"NOSCRIPT No matching script. Please use EVAL.";

/// Per-script limits; every replica of a cluster must use the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptLimits {
    /// Lua VM instructions one script may execute (counted in steps of
    /// 10,000). The default, 10⁹, is several seconds of work.
    pub instructions: u64,
}

impl Default for ScriptLimits {
    fn default() -> Self {
        ScriptLimits { instructions: 1_000_000_000 }
    }
}

/// The lowercase hex SHA1 of a script body, as Redis names scripts.
pub fn sha1_hex(body: &[u8]) -> String {
    sha1_smol::Sha1::from(body).digest().to_string()
}

/// The replicated part of scripting: the script cache and the rand48
/// state of `math.random`.
#[derive(Clone)]
pub struct Scripts {
    bodies: HashMap<String, Arc<[u8]>>,
    rand: u64,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts { bodies: HashMap::new(), rand: rand::INITIAL }
    }
}

const DIGEST: FixedState = FixedState::with_seed(0x7363_7269_7074_7321);

/// A cached body's share of the digest.
pub fn body_digest(body: &[u8]) -> u64 {
    DIGEST.hash_one((1u8, body))
}

/// The rand48 state's share of the digest (0 for the initial state).
pub fn rand_digest(state: u64) -> u64 {
    if state == rand::INITIAL {
        0
    } else {
        DIGEST.hash_one((2u8, state))
    }
}

impl Scripts {
    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty() && self.rand == rand::INITIAL
    }

    /// Order-independent digest; 0 for the state of a fresh store.
    pub fn digest(&self) -> u64 {
        self.bodies.values().fold(rand_digest(self.rand), |acc, b| acc.wrapping_add(body_digest(b)))
    }

    /// The cached bodies and the rand48 state, for a snapshot.
    pub fn snapshot(&self) -> (Vec<Arc<[u8]>>, u64) {
        (self.bodies.values().cloned().collect(), self.rand)
    }

    /// Restore: adds a body; false if it was there already.
    pub fn restore_body(&mut self, body: &[u8]) -> bool {
        self.bodies.insert(sha1_hex(body), body.into()).is_none()
    }

    pub fn restore_rand(&mut self, state: u64) {
        self.rand = state;
    }
}

/// The local part: the Lua VM (created on first use) and the limits.
#[derive(Default)]
pub struct Engine {
    vm: Mutex<Option<Vm>>,
    pub limits: ScriptLimits,
    /// The script being run was logged under OOM (`crate::evict`): Redis's
    /// pre_command_oom_state, set by the evict op for that run only.
    pub(crate) oom: bool,
}

/// Whether `cmd` is run by this module.
pub fn is_script_command(cmd: Cmd) -> bool {
    matches!(cmd, Cmd::Eval | Cmd::Evalsha | Cmd::EvalRo | Cmd::EvalshaRo | Cmd::Script)
}

/// The store a script's commands run on.
enum StoreRef<'a> {
    Read(&'a Store),
    Write(&'a mut Store),
}

/// What `redis.call` runs commands with.
pub struct Caller<'a> {
    store: StoreRef<'a>,
    clock: &'a mut dyn Clock,
    read_only: bool,
    /// Under OOM: `denyoom` commands are refused until the script wrote
    /// (Redis's scriptVerifyOOM; it cannot stop halfway).
    oom: bool,
    wrote: bool,
}

impl Caller<'_> {
    /// Runs one command of a script, writing its reply; returns its name,
    /// or the error Redis gives before running it.
    fn exec(&mut self, argv: &[&[u8]], out: &mut Vec<u8>) -> Result<&'static str, String> {
        const UNKNOWN: &str = "Unknown Redis command called from script";
        const ARITY: &str = "Wrong number of args calling Redis command from script";
        let cmd = Cmd::lookup(argv[0]).ok_or(UNKNOWN)?;
        let spec = cmd.spec();
        if !spec.arity_ok(argv.len()) {
            return Err(ARITY.into());
        }
        if let Some(sub) = argv.get(1) {
            match crate::subcommands::subcommand_arity(cmd, sub) {
                Some(Some(arity)) if !arity_ok(arity, argv.len()) => return Err(ARITY.into()),
                Some(None) => return Err(UNKNOWN.into()),
                _ => {}
            }
        }
        if spec.flags.contains(&"noscript") || cmd == Cmd::Script {
            return Err("This Redis command is not allowed from script".into());
        }
        match cmd {
            Cmd::Ping | Cmd::Echo | Cmd::Select => {
                crate::subcommands::ping_echo_select(cmd, argv, out);
                return Ok(spec.name);
            }
            // PUBSUB is answered by the node's subscriber registry, which
            // the keyspace does not hold. (PUBLISH runs: its count is a
            // recorded input, its message an output of the script's entry.)
            Cmd::Pubsub => {
                return Err(format!(
                    "understudy does not run '{}' from scripts (pub/sub is the node's, not the keyspace's)",
                    spec.name
                ))
            }
            _ if spec.kind == Kind::Session => return Err(format!("understudy does not run '{}' from scripts", spec.name)),
            _ => {}
        }
        if self.read_only && spec.kind == Kind::Write {
            return Err("Write commands are not allowed from read-only scripts.".into());
        }
        if self.oom && !self.wrote && crate::evict::denyoom(cmd, argv) {
            // With its own error code (`-OOM …`), not ERR.
            return Err(format!("-{}", String::from_utf8_lossy(crate::evict::OOM)));
        }
        self.wrote |= spec.flags.contains(&"write");
        let mut x = Exec { clock: &mut *self.clock, out };
        match &mut self.store {
            StoreRef::Write(store) => exec_write(cmd, store, &mut x, argv),
            StoreRef::Read(store) => exec_read(cmd, store, &mut x, argv),
        }
        Ok(spec.name)
    }
}

fn arity_ok(arity: i32, argc: usize) -> bool {
    if arity >= 0 {
        argc == arity as usize
    } else {
        argc >= arity.unsigned_abs() as usize
    }
}

/// Script flags from a `#!lua` shebang (Redis's evalExtractShebangFlags).
#[derive(Default)]
struct Shebang {
    /// Bytes of the shebang line (its line feed excluded).
    len: usize,
    /// A shebang was given (Redis's non-"compat" mode).
    present: bool,
    no_writes: bool,
    allow_oom: bool,
}

fn shebang(body: &[u8]) -> Result<Shebang, String> {
    if !body.starts_with(b"#!") {
        return Ok(Shebang::default());
    }
    let Some(end) = body.iter().position(|&b| b == b'\n') else {
        return Err("ERR Invalid script shebang".into());
    };
    let line = String::from_utf8_lossy(&body[..end]);
    let mut parts = line.split_ascii_whitespace();
    let engine = parts.next().unwrap_or("");
    if engine != "#!lua" {
        return Err(format!("ERR Unexpected engine in script shebang: {engine}"));
    }
    let mut out = Shebang { len: end, present: true, no_writes: false, allow_oom: false };
    for part in parts {
        let Some(flags) = part.strip_prefix("flags=") else {
            return Err(format!("ERR Unknown lua shebang option: {part}"));
        };
        for flag in flags.split(',').filter(|_| !flags.is_empty()) {
            match flag {
                "no-writes" => out.no_writes = true,
                "allow-oom" => out.allow_oom = true,
                "allow-stale" | "no-cluster" | "allow-cross-slot-keys" => {}
                other => return Err(format!("ERR Unexpected flag in script shebang: {other}")),
            }
        }
    }
    Ok(out)
}

/// Where a script command runs: a logged op (may change the store and the
/// cache) or a read on the primary.
pub enum Mode<'a> {
    Write(&'a mut Store, &'a mut Scripts),
    Read(&'a Store, &'a Scripts),
}

impl Engine {
    fn with_vm<R>(&self, f: impl FnOnce(&mut Vm) -> R) -> Result<R, String> {
        let mut guard = self.vm.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if guard.is_none() {
            *guard = Some(Vm::new().map_err(|e| format!("ERR internal: cannot start Lua: {e}"))?);
        }
        Ok(f(guard.as_mut().expect("created above")))
    }

    /// Drops the VM (SCRIPT FLUSH): the next script gets a fresh one.
    fn reset(&self) {
        *self.vm.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    /// Runs EVAL, EVALSHA, EVAL_RO, EVALSHA_RO or SCRIPT (arity checked).
    pub fn exec(&self, cmd: Cmd, mode: Mode, clock: &mut dyn Clock, argv: &[&[u8]], out: &mut Vec<u8>) {
        match cmd {
            Cmd::Script => self.script(mode, argv, out),
            _ => self.eval(cmd, mode, clock, argv, out),
        }
    }

    fn eval(&self, cmd: Cmd, mode: Mode, clock: &mut dyn Clock, argv: &[&[u8]], out: &mut Vec<u8>) {
        let by_sha = matches!(cmd, Cmd::Evalsha | Cmd::EvalshaRo);
        let ro_cmd = matches!(cmd, Cmd::EvalRo | Cmd::EvalshaRo);
        if by_sha && argv[1].len() != 40 {
            return write_error(out, NOSCRIPT);
        }
        let Some(numkeys) = crate::num::parse_i64(argv[2]) else { return write_error(out, NOT_INT) };
        if numkeys > (argv.len() - 3) as i64 {
            return write_error(out, b"ERR Number of keys can't be greater than number of args");
        }
        if numkeys < 0 {
            return write_error(out, b"ERR Number of keys can't be negative");
        }
        let (keys, args) = argv[3..].split_at(numkeys as usize);
        let (store, mut cache, ro_scripts) = match mode {
            Mode::Write(store, scripts) => (StoreRef::Write(store), Some(scripts), None),
            Mode::Read(store, scripts) => (StoreRef::Read(store), None, Some(scripts)),
        };
        let scripts: &Scripts = match (&cache, ro_scripts) {
            (Some(s), _) => s,
            (None, Some(s)) => s,
            (None, None) => unreachable!("one of the two is set"),
        };
        let (sha, body): (String, Arc<[u8]>) = if by_sha {
            let sha = String::from_utf8_lossy(argv[1]).to_ascii_lowercase();
            match scripts.bodies.get(&sha) {
                Some(b) => (sha, Arc::clone(b)),
                None => return write_error(out, NOSCRIPT),
            }
        } else {
            let sha = sha1_hex(argv[1]);
            let body = scripts.bodies.get(&sha).cloned().unwrap_or_else(|| argv[1].into());
            (sha, body)
        };
        let mut rand = scripts.rand;
        let flags = match shebang(&body) {
            Ok(f) => f,
            Err(e) => return write_error(out, e.as_bytes()),
        };
        if let Err(e) = self.with_vm(|vm| vm.compile(&sha, &body[flags.len..])).and_then(|r| r) {
            return write_error(out, e.as_bytes());
        }
        if let Some(cache) = &mut cache {
            cache.bodies.entry(sha.clone()).or_insert_with(|| Arc::clone(&body));
        }
        if flags.present && !flags.no_writes && ro_cmd {
            return write_error(out, b"ERR Can not execute a script with write flag using *_ro command.");
        }
        if self.oom && flags.present && !flags.no_writes && !flags.allow_oom {
            return write_error(out, crate::evict::SCRIPT_OOM);
        }
        let limit = self.limits.instructions;
        let oom = self.oom && !flags.allow_oom;
        let mut caller = Caller { store, clock, read_only: ro_cmd || flags.no_writes, oom, wrote: false };
        let outcome = self.with_vm(|vm| vm.run(&sha, (keys, args), &mut rand, limit, &mut caller, out));
        match outcome {
            Err(e) => write_error(out, e.as_bytes()),
            Ok(outcome) => {
                // A read-only command's draws leave the replicated sequence
                // as it was (they ran on the primary alone).
                if let (Some(cache), false) = (cache, ro_cmd) {
                    cache.rand = rand;
                }
                if let Outcome::OverBudget = outcome {
                    let msg = format!(
                        "ERR Script exceeded the limit of {limit} instructions and was stopped; the writes it made before stay. script: {sha}"
                    );
                    write_error(out, msg.as_bytes());
                }
            }
        }
    }

    fn script(&self, mode: Mode, argv: &[&[u8]], out: &mut Vec<u8>) {
        let sub = argv[1].to_ascii_lowercase();
        match (&sub[..], mode) {
            (b"exists", mode) => {
                let scripts = match &mode {
                    Mode::Write(_, s) => &**s,
                    Mode::Read(_, s) => *s,
                };
                write_array_len(out, argv.len() - 2);
                for sha in &argv[2..] {
                    let sha = String::from_utf8_lossy(sha).to_ascii_lowercase();
                    write_int(out, i64::from(scripts.bodies.contains_key(&sha)));
                }
            }
            (b"load", Mode::Write(_, scripts)) => {
                let body = argv[2];
                let sha = sha1_hex(body);
                if !scripts.bodies.contains_key(&sha) {
                    let compiled = shebang(body).and_then(|f| self.with_vm(|vm| vm.compile(&sha, &body[f.len..]))?);
                    if let Err(e) = compiled {
                        return write_error(out, e.as_bytes());
                    }
                    scripts.bodies.insert(sha.clone(), body.into());
                }
                write_bulk(out, sha.as_bytes());
            }
            (b"flush", Mode::Write(_, scripts)) => {
                let ok = argv.len() == 2
                    || (argv.len() == 3 && (argv[2].eq_ignore_ascii_case(b"sync") || argv[2].eq_ignore_ascii_case(b"async")));
                if !ok {
                    return write_error(out, b"ERR SCRIPT FLUSH only support SYNC|ASYNC option");
                }
                scripts.bodies.clear();
                self.reset();
                write_ok(out);
            }
            _ => session_reply(argv, out),
        }
    }
}

/// SCRIPT KILL, DEBUG and HELP, answered without any state.
pub fn session_reply(argv: &[&[u8]], out: &mut Vec<u8>) {
    let sub = argv[1].to_ascii_lowercase();
    match &sub[..] {
        b"kill" => write_error(out, b"NOTBUSY No scripts in execution right now."),
        b"debug" if argv[2].eq_ignore_ascii_case(b"no") => write_ok(out),
        b"debug" if argv[2].eq_ignore_ascii_case(b"yes") || argv[2].eq_ignore_ascii_case(b"sync") => {
            write_error(out, b"ERR understudy does not support the Lua debugger (SCRIPT DEBUG YES|SYNC)")
        }
        b"debug" => write_error(out, b"ERR Use SCRIPT DEBUG YES/SYNC/NO"),
        _ => {
            const HELP: &[&str] = &[
                "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "DEBUG (YES|SYNC|NO)",
                "    Set the debug mode for subsequent scripts executed.",
                "EXISTS <sha1> [<sha1> ...]",
                "    Return information about the existence of the scripts in the script cache.",
                "FLUSH [ASYNC|SYNC]",
                "    Flush the Lua scripts cache. Very dangerous on replicas.",
                "    When called without the optional mode argument, the behavior is determined by the",
                "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
                "    * ASYNC: Asynchronously flush the scripts cache.",
                "    * SYNC: Synchronously flush the scripts cache.",
                "KILL",
                "    Kill the currently executing Lua script.",
                "LOAD <script>",
                "    Load a script into the scripts cache without executing it.",
                "HELP",
                "    Prints this help.",
            ];
            write_array_len(out, HELP.len());
            HELP.iter().for_each(|l| write_simple(out, l.as_bytes()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebangs_as_redis_reads_them() {
        let s = shebang(b"#!lua flags=no-writes,allow-oom\nreturn 1").unwrap();
        assert!(s.present && s.no_writes && s.allow_oom && s.len == 31);
        assert!(!shebang(b"return 1").unwrap().present);
        assert_eq!(shebang(b"#!lua").err().unwrap(), "ERR Invalid script shebang");
        assert_eq!(shebang(b"#!lua flags=x\n").err().unwrap(), "ERR Unexpected flag in script shebang: x");
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }
}
