//! [`Kv`]: the key-value store as a replicated [`StateMachine`].
//!
//! The primary applies each logged op and the backup applies the same op
//! with the same recorded time, so both reach the same state (DESIGN §2,
//! application level). Time enters writes only through `ctx.now_us()`, and
//! only when an op needs it: setting a relative expiry, or touching an entry
//! that has one. Reads run outside the log with the time passed in.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use understudy_core::{Ctx, SnapshotError, SnapshotWriter, StateMachine};
use understudy_wire::codec::Reader;

use crate::cmd::{exec_read, exec_write, write_arity_error, Cmd, Exec, Kind};
use crate::evict::{self, Admit, Evictor, Maxmemory};
use crate::exactly_once::commands::{self as session_ops, is_session_command};
use crate::exactly_once::{SessionLimits, SessionTable};
use crate::op::{self, read_command, read_count, Argv};
use crate::resp::{write_array_len, write_error, write_int};
use crate::script::{is_script_command, Engine, Mode, ScriptLimits, Scripts};
use crate::snapshot::{KvSnapshotWriter, Restore};
use crate::store::{is_live, Clock, FixedClock, Store, SHARDS};
use crate::watch::Watching;

/// Time for one op, read from the replicated context at most once and only
/// if a command asks for it (each read costs log bytes).
struct CtxClock<'a> {
    ctx: &'a mut dyn Ctx,
    now_ms: Option<u64>,
}

impl Clock for CtxClock<'_> {
    fn now_ms(&mut self) -> u64 {
        *self.now_ms.get_or_insert_with(|| self.ctx.now_us() / 1000)
    }

    fn random_u64(&mut self) -> u64 {
        self.ctx.random_u64()
    }

    fn publish(&mut self, channel: &[u8], message: &[u8]) -> u64 {
        self.ctx.publish(channel, message)
    }
}

/// Keys (or idle sessions) one expire-cycle op names at most.
const EXPIRE_CYCLE_KEYS: usize = 64;

/// Shards the expire cycle may scan per call, bounding its cost when many
/// keys carry expiries that have not passed yet.
const EXPIRE_SCAN_SHARDS_MAX: usize = 64;

/// The Redis-protocol key-value state machine.
#[derive(Default)]
pub struct Kv {
    store: Store,
    /// Exactly-once client sessions: each session's last replies, so a
    /// retried request is answered, not applied again (`exactly_once`).
    sessions: SessionTable,
    /// Where the primary's expire-cycle scan resumes. Local to this
    /// process: the ops it produces name their keys, so replicas never need
    /// to agree on it.
    expire_cursor: AtomicUsize,
    /// State of a restore in progress (`restore_chunk` … `restore_finish`).
    restore: Restore,
    /// The script cache and `math.random`'s state: replicated.
    scripts: Scripts,
    /// The Lua VM and the script limits: local to this process.
    engine: Engine,
    /// `--maxmemory` and `--maxmemory-policy` (or CONFIG SET, logged so
    /// that both replicas change together): acted on by the primary only.
    maxmemory: Maxmemory,
    /// The eviction's sampling state and the count of evicted keys.
    evictor: Evictor,
}

/// Runs a command of a logged op: a keyspace command, or a script command
/// with the script cache and the VM.
fn exec_logged(
    store: &mut Store,
    scripts: &mut Scripts,
    engine: &Engine,
    cmd: Cmd,
    clock: &mut dyn Clock,
    argv: &[&[u8]],
    out: &mut Vec<u8>,
) {
    if is_script_command(cmd) {
        engine.exec(cmd, Mode::Write(store, scripts), clock, argv, out);
    } else {
        exec_write(cmd, store, &mut Exec { clock, out }, argv);
    }
}

impl Kv {
    pub fn new() -> Kv {
        Kv::default()
    }

    /// A store whose session table has other bounds than the defaults.
    /// Every replica of a cluster must use the same.
    pub fn with_session_limits(limits: SessionLimits) -> Kv {
        Kv { sessions: SessionTable::new(limits), ..Kv::default() }
    }

    /// Sets the instruction budget of one script (see
    /// [`ScriptLimits`]). Every replica of a cluster must use the same: a
    /// script stopped on one replica but not the other would leave them
    /// different.
    pub fn set_script_limits(&mut self, limits: ScriptLimits) {
        self.engine.limits = limits;
    }

    pub fn script_limits(&self) -> ScriptLimits {
        self.engine.limits
    }

    /// Sets `maxmemory` and its policy (see `crate::evict`).
    pub fn set_maxmemory(&mut self, limit: Maxmemory) {
        self.maxmemory = limit;
    }

    pub fn maxmemory(&self) -> Maxmemory {
        self.maxmemory
    }

    /// The keyspace's memory estimate (INFO's `used_memory`): the same on
    /// both replicas for the same keys.
    pub fn used_memory(&self) -> u64 {
        self.store.used_memory()
    }

    /// The highest [`Kv::used_memory`] since this process started.
    pub fn used_memory_peak(&self) -> u64 {
        self.store.used_memory_peak()
    }

    /// Keys evicted under `maxmemory` (INFO's `evicted_keys`).
    pub fn evicted_keys(&self) -> u64 {
        self.evictor.evicted
    }

    /// Whether a write that may grow memory is refused now whatever could
    /// be evicted (Redis's OOM state; the session then refuses commands
    /// queued into MULTI too).
    pub fn out_of_memory(&self) -> bool {
        evict::out_of_memory(&self.store, self.maxmemory)
    }

    /// On the primary, before logging the write `op` at `now_ms`: over
    /// `maxmemory`, puts the keys to evict ahead of it in `op`, or refuses
    /// it with the OOM error in `out` (`crate::evict`).
    pub fn admit(&self, op: &mut Vec<u8>, out: &mut Vec<u8>) -> Admit {
        evict::admit(&self.store, self.maxmemory, &self.evictor, op, out)
    }

    /// The exactly-once session table.
    pub fn sessions(&self) -> &SessionTable {
        &self.sessions
    }

    /// Keys held, including expired ones not reclaimed yet (as DBSIZE).
    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// WATCH on the primary: watches `keys` for `watching` (the
    /// connection's watches, created on first use), noting whether each
    /// exists unexpired at `now_ms`.
    pub fn watch(&self, watching: &mut Option<Watching>, now_ms: u64, keys: &[&[u8]]) {
        let table = self.store.watch_table();
        let w = match watching {
            Some(w) if w.same_table(table) => w,
            _ => watching.insert(Watching::new(table.clone())),
        };
        for key in keys {
            w.add(key, self.store.get(key, &mut FixedClock(now_ms)).is_some());
        }
    }

    /// EXEC on the primary: whether a key `watching` watches has changed or
    /// expired since (the transaction must then not run).
    pub fn watched_changed(&self, watching: &Watching, now_ms: u64) -> bool {
        !watching.same_table(self.store.watch_table()) || watching.dirty(|k| self.store.get(k, &mut FixedClock(now_ms)).is_some())
    }

    /// Whether a blocking command (BLPOP…) may be logged now, at `now_ms`:
    /// a key it waits on exists, or its arguments are wrong. Otherwise the
    /// node holds it until a write to one of its keys, or its timeout.
    /// Any other command is always ready.
    pub fn blocking_ready(&self, now_ms: u64, argv: &[&[u8]]) -> bool {
        argv.first().and_then(|n| Cmd::lookup(n)).is_none_or(|cmd| crate::cmd::blocking::ready(&self.store, now_ms, cmd, argv))
    }

    /// A blocking command's keys and timeout in ms (0: for ever), if `argv`
    /// is one with a valid timeout.
    pub fn blocking_wait<'a>(&self, argv: &[&'a [u8]]) -> Option<(Vec<&'a [u8]>, u64)> {
        let cmd = argv.first().and_then(|n| Cmd::lookup(n))?;
        let (keys, timeout) = crate::cmd::blocking::waits_on(cmd, argv)?;
        Some((keys, crate::cmd::blocking::timeout_ms(timeout).ok()?))
    }

    /// XREAD or XREADGROUP with BLOCK: what it waits on, whether it may run
    /// now, and its argv with `$` pinned (`cmd::xwait`). `None` for any
    /// other command.
    pub fn stream_wait<'a>(&self, now_ms: u64, argv: &[&'a [u8]]) -> Option<crate::cmd::xwait::StreamWait<'a>> {
        crate::cmd::xwait::stream_wait(&self.store, now_ms, argv)
    }

    /// Keys that carry an expiry.
    pub fn expiring(&self) -> usize {
        self.store.expiring()
    }

    /// Runs a read-only command (`Dispatch::Read`) at time `now_ms` and
    /// appends its reply. Mutates nothing: an expired key reads as absent
    /// and stays until a write or the expire cycle reclaims it.
    pub fn read_argv(&self, now_ms: u64, argv: &[&[u8]], out: &mut Vec<u8>) {
        if argv.first().is_some_and(|n| is_session_command(n)) {
            return session_ops::read(&self.sessions, now_ms, argv, out);
        }
        let Some(cmd) = argv.first().and_then(|n| Cmd::lookup(n)) else {
            return write_error(out, b"ERR internal: Kv::read called without a known command");
        };
        let spec = cmd.spec();
        let script_read = matches!(cmd, Cmd::EvalRo | Cmd::EvalshaRo)
            || (cmd == Cmd::Script && argv.get(1).is_some_and(|s| s.eq_ignore_ascii_case(b"exists")));
        if script_read && spec.arity_ok(argv.len()) {
            let mut clock = FixedClock(now_ms);
            evict::touch_keys(&self.store, cmd, argv, evict::clock_s(now_ms));
            return self.engine.exec(cmd, Mode::Read(&self.store, &self.scripts), &mut clock, argv, out);
        }
        if spec.kind != Kind::Read {
            return write_error(out, format!("ERR internal: '{}' is not a read command", spec.name).as_bytes());
        }
        if !spec.arity_ok(argv.len()) {
            return write_arity_error(out, spec.name);
        }
        let mut clock = FixedClock(now_ms);
        exec_read(cmd, &self.store, &mut Exec { clock: &mut clock, out }, argv);
        evict::touch_keys(&self.store, cmd, argv, evict::clock_s(now_ms));
    }

    /// On the primary: encodes into `op` an expire-cycle op naming up to
    /// `max_keys` keys expired at `now_ms` (expiry < now, as Redis), found
    /// by an incremental scan that skips shards with nothing due, or else
    /// naming up to `max_keys` client sessions idle at `now_ms`. Returns
    /// false (and leaves `op` empty) if there is nothing to reclaim. The op
    /// names keys explicitly because the backup's shard order differs; the
    /// backup re-checks each against the op's recorded time.
    pub fn expire_cycle_op(&self, now_ms: u64, max_keys: usize, op: &mut Vec<u8>) -> bool {
        op.clear();
        if max_keys == 0 {
            return false;
        }
        if self.store.expiring() > 0 {
            let mut cursor = self.expire_cursor.load(Ordering::Relaxed) % SHARDS;
            let mut keys = Vec::new();
            self.store.expired_keys(now_ms, max_keys, &mut cursor, EXPIRE_SCAN_SHARDS_MAX, &mut keys);
            self.expire_cursor.store(cursor, Ordering::Relaxed);
            if !keys.is_empty() {
                op::encode_expire(op, &keys);
                return true;
            }
        }
        let ids = self.sessions.idle_sessions(now_ms, max_keys);
        if ids.is_empty() {
            return false;
        }
        session_ops::encode_expire(op, &ids);
        true
    }

    /// Appends the body of INFO's keyspace section (after its `# Keyspace`
    /// header) as Redis writes it: `db0:keys=…,expires=…,avg_ttl=0\r\n`, or
    /// nothing when the store is empty.
    pub fn info_keyspace(&self, out: &mut String) {
        if !self.store.is_empty() {
            let _ = write!(out, "db0:keys={},expires={},avg_ttl=0\r\n", self.store.len(), self.store.expiring());
        }
    }

    fn apply_op(&mut self, clock: &mut dyn Clock, op: &[u8], reply: &mut Vec<u8>) -> Result<(), String> {
        let mut r = Reader::new(op, "kv op");
        let tag = r.u8().map_err(|e| e.to_string())?;
        match tag {
            op::OP_COMMAND => {
                let mut argv = Argv::new();
                let cmd = read_command(&mut r, &mut argv)?;
                r.finish().map_err(|e| e.to_string())?;
                if cmd == Cmd::Config {
                    return self.config_set(argv.as_slice(), reply);
                }
                exec_logged(&mut self.store, &mut self.scripts, &self.engine, cmd, clock, argv.as_slice(), reply);
                self.touch_read(cmd, argv.as_slice());
                Ok(())
            }
            op::OP_TRANSACTION => self.apply_transaction(clock, r, reply),
            op::OP_EXPIRE => self.apply_expire(clock, r, reply),
            evict::OP_EVICT => self.apply_evict(clock, r, reply),
            session_ops::OP_SESSION_OPEN..=session_ops::OP_SESSION_EXPIRE => {
                let (scripts, engine) = (&mut self.scripts, &self.engine);
                let mut run = |cmd: Cmd, store: &mut Store, clock: &mut dyn Clock, argv: &[&[u8]], out: &mut Vec<u8>| {
                    exec_logged(store, scripts, engine, cmd, clock, argv, out)
                };
                session_ops::apply(tag, &mut self.store, &mut self.sessions, clock, r, reply, &mut run)
            }
            other => Err(format!("unknown op tag {other}")),
        }
    }

    /// MULTI … EXEC as one op: every queued command runs here, back to back,
    /// so the transaction is atomic on both replicas. The op is validated
    /// whole before anything runs, so a corrupt op changes nothing.
    fn apply_transaction(&mut self, clock: &mut dyn Clock, r: Reader, reply: &mut Vec<u8>) -> Result<(), String> {
        let mut argv = Argv::new();
        let mut check = r.clone();
        let n = read_count(&mut check)?;
        for _ in 0..n {
            read_item(&mut check, &mut argv)?;
        }
        check.finish().map_err(|e| e.to_string())?;
        let mut r = r;
        let n = read_count(&mut r)?;
        write_array_len(reply, n);
        for _ in 0..n {
            match read_item(&mut r, &mut argv)? {
                Item::Reply(bytes) => reply.extend_from_slice(bytes),
                Item::Command(cmd) => {
                    exec_logged(&mut self.store, &mut self.scripts, &self.engine, cmd, &mut *clock, argv.as_slice(), reply);
                    self.touch_read(cmd, argv.as_slice());
                }
            }
        }
        Ok(())
    }

    /// A logged command that only reads the keys it names (in a
    /// transaction) or a script: stamps its keys as accessed. A write's
    /// keys were stamped as it stored them.
    fn touch_read(&self, cmd: Cmd, argv: &[&[u8]]) {
        if cmd.spec().kind == Kind::Read || matches!(cmd, Cmd::Eval | Cmd::Evalsha) {
            evict::touch_keys(&self.store, cmd, argv, self.store.lru_now());
        }
    }

    /// An evict op: deletes the keys the primary chose, then runs the write
    /// inside, or replies the OOM error in its place (`crate::evict`).
    fn apply_evict(&mut self, clock: &mut dyn Clock, r: Reader, reply: &mut Vec<u8>) -> Result<(), String> {
        let ev = evict::decode(r)?;
        for key in &ev.keys {
            if self.store.take_any(key).is_some() {
                self.evictor.evicted += 1;
            }
        }
        if ev.oom && !evict::is_script_write(ev.write) {
            let msg = if ev.write.first() == Some(&op::OP_TRANSACTION) { evict::EXEC_OOM } else { evict::OOM };
            write_error(reply, msg);
            return Ok(());
        }
        self.engine.oom = ev.oom;
        let done = self.apply_op(clock, ev.write, reply);
        self.engine.oom = false;
        done
    }

    /// CONFIG SET of `maxmemory` and `maxmemory-policy`, logged so that
    /// both replicas change together; the session checked the arguments
    /// and applied the node's own parameters (`Admin::config`).
    fn config_set(&mut self, argv: &[&[u8]], reply: &mut Vec<u8>) -> Result<(), String> {
        let mut limit = self.maxmemory;
        for pair in argv.get(2..).unwrap_or_default().chunks(2) {
            let [name, value] = pair else { return Err("CONFIG SET without a value".into()) };
            if name.eq_ignore_ascii_case(b"maxmemory") {
                limit.bytes = evict::parse_memory(value).ok_or("CONFIG SET maxmemory: not a memory value")?;
            } else if name.eq_ignore_ascii_case(b"maxmemory-policy") {
                limit.policy = evict::Policy::parse(value).ok_or("CONFIG SET maxmemory-policy: not a policy")?;
            }
        }
        self.maxmemory = limit;
        crate::resp::write_ok(reply);
        Ok(())
    }

    /// Deletes the named keys that are expired at this op's time; replies
    /// with how many were deleted.
    fn apply_expire(&mut self, clock: &mut dyn Clock, mut r: Reader, reply: &mut Vec<u8>) -> Result<(), String> {
        let mut check = r.clone();
        let n = read_count(&mut check)?;
        for _ in 0..n {
            check.bytes().map_err(|e| e.to_string())?;
        }
        check.finish().map_err(|e| e.to_string())?;
        let n = read_count(&mut r)?;
        let mut deleted = 0;
        for _ in 0..n {
            let key = r.bytes().map_err(|e| e.to_string())?;
            let expired = self.store.get_any(key).is_some_and(|e| e.expire().is_some() && !is_live(e, clock));
            if expired {
                self.store.take_any(key);
                deleted += 1;
            }
        }
        write_int(reply, deleted);
        Ok(())
    }
}

enum Item<'a> {
    Command(Cmd),
    Reply(&'a [u8]),
}

fn read_item<'a>(r: &mut Reader<'a>, argv: &mut Argv<'a>) -> Result<Item<'a>, String> {
    match r.u8().map_err(|e| e.to_string())? {
        op::ITEM_COMMAND => Ok(Item::Command(read_command(r, argv)?)),
        op::ITEM_REPLY => Ok(Item::Reply(r.bytes().map_err(|e| e.to_string())?)),
        other => Err(format!("unknown transaction item {other}")),
    }
}

impl StateMachine for Kv {
    fn apply(&mut self, ctx: &mut dyn Ctx, op: &[u8], reply: &mut Vec<u8>) {
        // The access time this op's writes stamp: this process's clock,
        // since the stamps are local (`crate::evict`) and reading the
        // replicated one would cost log bytes.
        self.store.set_lru_now(evict::local_now_s());
        let mut clock = CtxClock { ctx, now_ms: None };
        if let Err(e) = self.apply_op(&mut clock, op, reply) {
            write_error(reply, format!("ERR corrupt operation: {e}").as_bytes());
        }
    }

    /// `request` is a read's argv as [`op::encode_query`] writes it.
    fn read(&self, now_us: u64, request: &[u8], reply: &mut Vec<u8>) {
        let mut argv = Argv::new();
        match op::decode_query(request, &mut argv) {
            Ok(()) => self.read_argv(now_us / 1000, argv.as_slice(), reply),
            Err(e) => write_error(reply, format!("ERR corrupt query: {e}").as_bytes()),
        }
    }

    /// The expire cycle: up to 64 expired keys (or idle sessions) per call.
    fn housekeeping(&self, now_us: u64, op: &mut Vec<u8>) -> bool {
        self.expire_cycle_op(now_us / 1000, EXPIRE_CYCLE_KEYS, op)
    }

    fn snapshot(&self) -> Box<dyn SnapshotWriter> {
        Box::new(KvSnapshotWriter::new(&self.store, self.sessions.snapshot(), self.scripts.snapshot()))
    }

    fn restore_chunk(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
        // A restored key counts as accessed when this replica loaded it.
        self.store.set_lru_now(evict::local_now_s());
        self.restore.chunk(&mut self.store, &mut self.sessions, &mut self.scripts, chunk)
    }

    fn restore_finish(&mut self) -> Result<(), SnapshotError> {
        self.restore.finish(&self.store, &self.sessions, &self.scripts)
    }

    /// The keyspace's digest plus the session table's and the scripting
    /// state's (each 0 when empty).
    fn digest(&self) -> u64 {
        self.store.digest().wrapping_add(self.sessions.digest()).wrapping_add(self.scripts.digest())
    }
}

#[cfg(test)]
mod tests {
    /// The node moves its machine to the snapshot thread's owner: the Lua
    /// VM inside (behind a mutex) must keep `Kv` `Send`.
    #[test]
    fn kv_stays_send() {
        fn send<T: Send>() {}
        send::<super::Kv>();
    }
}
