//! `lockd`: a replicated lock (lease) service over a line protocol, built
//! on understudy's library: a [`StateMachine`] (the locks) and a
//! [`FrontEnd`] (the protocol), run by [`Node`](understudy_node::Node). Kill -9 the primary and
//! the backup goes live holding every lease it acknowledged, with fencing
//! tokens that keep growing. docs/API.md walks through it.
//!
//! ```text
//! cargo run --example lockd -- --cluster locks --node a --arbiter understudy://127.0.0.1:7000 \
//!     --listen 127.0.0.1:7100 --repl-listen 127.0.0.1:7101
//! ```
//!
//! One request per line, one reply line each:
//!
//! | request | reply |
//! | --- | --- |
//! | `ACQUIRE lock owner ttl_ms` | `OK fence` (also when `owner` holds it: renewed, same fence) or `HELD owner ms_left` |
//! | `RELEASE lock owner` | `OK` or `NOTHELD` |
//! | `HOLDER lock` | `HELD owner fence ms_left` or `FREE` |
//! | `PING` | `PONG` |
//! | `QUIT` | `BYE`, then the connection closes |
//!
//! A fencing token (`fence`) is a number that grows with every grant, over
//! every lock, across failovers: a resource that remembers the highest
//! token it saw refuses a holder whose lease expired while it was paused.

use std::collections::BTreeMap;
use std::sync::Arc;

use understudy_node::{Access, Ctx, FrontEnd, NodeView, Request, SnapshotError, SnapshotWriter, StateMachine};

/// Longest request line; a longer one is a protocol error.
const LINE_MAX: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Lease {
    owner: String,
    fence: u64,
    expires_us: u64,
}

/// The replicated state. The map sits behind an `Arc`, so a snapshot is a
/// reference count and the next write copies the map once (copy-on-write).
#[derive(Default)]
struct Locks {
    leases: Arc<BTreeMap<String, Lease>>,
    next_fence: u64,
    restoring: Vec<u8>,
}

impl Locks {
    fn live(&self, lock: &str, now_us: u64) -> Option<&Lease> {
        self.leases.get(lock).filter(|l| l.expires_us > now_us)
    }
}

impl StateMachine for Locks {
    /// `op` is the request line of a write (ACQUIRE, RELEASE), or
    /// `EXPIRE lock fence` from housekeeping.
    fn apply(&mut self, ctx: &mut dyn Ctx, op: &[u8], reply: &mut Vec<u8>) {
        let line = String::from_utf8_lossy(op);
        let w: Vec<&str> = line.split_whitespace().collect();
        let now = ctx.now_us();
        let text = match w.as_slice() {
            ["ACQUIRE", lock, owner, ttl_ms] => {
                let ttl_us = ttl_ms.parse::<u64>().unwrap_or(0).saturating_mul(1000);
                match self.live(lock, now) {
                    Some(l) if l.owner != *owner => format!("HELD {} {}", l.owner, (l.expires_us - now) / 1000),
                    held => {
                        let fence = match held {
                            Some(l) => l.fence,
                            None => {
                                self.next_fence += 1;
                                self.next_fence
                            }
                        };
                        let lease = Lease { owner: owner.to_string(), fence, expires_us: now.saturating_add(ttl_us) };
                        Arc::make_mut(&mut self.leases).insert(lock.to_string(), lease);
                        format!("OK {fence}")
                    }
                }
            }
            ["RELEASE", lock, owner] => match self.live(lock, now) {
                Some(l) if l.owner == *owner => {
                    Arc::make_mut(&mut self.leases).remove(*lock);
                    "OK".into()
                }
                _ => "NOTHELD".into(),
            },
            ["EXPIRE", lock, fence] => {
                let expired = self.leases.get(*lock).is_some_and(|l| l.fence.to_string() == *fence && l.expires_us <= now);
                if expired {
                    Arc::make_mut(&mut self.leases).remove(*lock);
                }
                format!("EXPIRED {}", u8::from(expired))
            }
            _ => format!("ERR cannot apply {line:?}"),
        };
        reply.extend_from_slice(text.as_bytes());
    }

    /// `request` is a `HOLDER lock` line.
    fn read(&self, now_us: u64, request: &[u8], reply: &mut Vec<u8>) {
        let line = String::from_utf8_lossy(request);
        let text = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["HOLDER", lock] => match self.live(lock, now_us) {
                Some(l) => format!("HELD {} {} {}", l.owner, l.fence, (l.expires_us - now_us) / 1000),
                None => "FREE".into(),
            },
            _ => format!("ERR cannot read {line:?}"),
        };
        reply.extend_from_slice(text.as_bytes());
    }

    /// Forgets one expired lease per call, naming it (and its fence, so a
    /// lease granted again in the meantime stays).
    fn housekeeping(&self, now_us: u64, op: &mut Vec<u8>) -> bool {
        let Some((lock, l)) = self.leases.iter().find(|(_, l)| l.expires_us <= now_us) else { return false };
        op.extend_from_slice(format!("EXPIRE {lock} {}", l.fence).as_bytes());
        true
    }

    /// Line 1: the next fence; then `lock owner fence expires_us` per lease.
    fn snapshot(&self) -> Box<dyn SnapshotWriter> {
        Box::new(LocksSnapshot { leases: self.leases.clone(), next_fence: self.next_fence, done: false })
    }

    fn restore_chunk(&mut self, chunk: &[u8]) -> Result<(), SnapshotError> {
        self.restoring.extend_from_slice(chunk);
        Ok(())
    }

    fn restore_finish(&mut self) -> Result<(), SnapshotError> {
        let text = String::from_utf8(std::mem::take(&mut self.restoring)).map_err(|e| SnapshotError(e.to_string()))?;
        let mut lines = text.lines();
        let bad = |what: &str| SnapshotError(format!("lockd snapshot: {what}"));
        self.next_fence = lines.next().and_then(|l| l.parse().ok()).ok_or_else(|| bad("no fence line"))?;
        let mut leases = BTreeMap::new();
        for line in lines {
            let w: Vec<&str> = line.split(' ').collect();
            let [lock, owner, fence, expires_us] = w.as_slice() else { return Err(bad(line)) };
            let num = |s: &str| s.parse::<u64>().map_err(|_| bad(line));
            leases.insert(lock.to_string(), Lease { owner: owner.to_string(), fence: num(fence)?, expires_us: num(expires_us)? });
        }
        self.leases = Arc::new(leases);
        Ok(())
    }

    fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        (self.next_fence, &*self.leases).hash(&mut h);
        h.finish()
    }
}

/// Writes the whole snapshot as one chunk (lock tables are small; a large
/// state would write `max_bytes` at a time).
struct LocksSnapshot {
    leases: Arc<BTreeMap<String, Lease>>,
    next_fence: u64,
    done: bool,
}

impl SnapshotWriter for LocksSnapshot {
    fn next_chunk(&mut self, out: &mut Vec<u8>, _max_bytes: usize) -> bool {
        if self.done {
            return false;
        }
        out.extend_from_slice(format!("{}\n", self.next_fence).as_bytes());
        for (lock, l) in self.leases.iter() {
            out.extend_from_slice(format!("{lock} {} {} {}\n", l.owner, l.fence, l.expires_us).as_bytes());
        }
        self.done = true;
        true
    }

    fn bytes_hint(&self) -> u64 {
        self.leases.len() as u64 * 48
    }
}

/// The line protocol.
struct Lines;

impl FrontEnd for Lines {
    type Machine = Locks;
    type Conn = ();

    fn open(&self, _id: u64) {}

    fn decode(&self, _: &mut (), input: &[u8], _: &NodeView<'_, Locks>, op: &mut Vec<u8>, out: &mut Vec<u8>) -> Option<Request> {
        let Some(end) = input.iter().position(|&b| b == b'\n') else {
            if input.len() > LINE_MAX {
                out.extend_from_slice(b"ERR line too long\n");
                return Some(Request::new(input.len(), Access::Local).then_close());
            }
            return None;
        };
        let len = end + 1;
        let line = String::from_utf8_lossy(&input[..end]);
        let words: Vec<&str> = line.split_whitespace().collect();
        let valid = |n: usize, ttl: bool| words.len() == n && (!ttl || words[3].parse::<u64>().is_ok());
        let access = match words.first().map(|w| w.to_ascii_uppercase()).as_deref() {
            Some("ACQUIRE") if valid(4, true) => Access::Write,
            Some("RELEASE") if valid(3, false) => Access::Write,
            Some("HOLDER") if valid(2, false) => Access::Read,
            Some("PING") => {
                out.extend_from_slice(b"PONG");
                Access::Local
            }
            Some("QUIT") => {
                out.extend_from_slice(b"BYE");
                return Some(Request::new(len, Access::Local).then_close());
            }
            Some(cmd @ ("ACQUIRE" | "RELEASE" | "HOLDER")) => {
                out.extend_from_slice(format!("ERR usage: {}", usage(cmd)).as_bytes());
                Access::Local
            }
            None => return Some(Request::new(len, Access::Local)),
            Some(_) => {
                out.extend_from_slice(b"ERR unknown command (ACQUIRE, RELEASE, HOLDER, PING, QUIT)");
                Access::Local
            }
        };
        if matches!(access, Access::Write | Access::Read) {
            // The op is the request in canonical form: upper-case command.
            op.extend_from_slice(words[0].to_ascii_uppercase().as_bytes());
            for w in &words[1..] {
                op.push(b' ');
                op.extend_from_slice(w.as_bytes());
            }
        }
        Some(Request::new(len, access))
    }

    /// Every reply is one line.
    fn encode(&self, _: &mut (), out: &mut Vec<u8>, start: usize) {
        if out.len() > start {
            out.push(b'\n');
        }
    }

    fn redirect(&self, _: &mut (), primary: Option<&str>, out: &mut Vec<u8>) {
        out.extend_from_slice(format!("MOVED {}", primary.unwrap_or("unknown")).as_bytes());
    }
}

fn usage(cmd: &str) -> &'static str {
    match cmd {
        "ACQUIRE" => "ACQUIRE lock owner ttl_ms",
        "RELEASE" => "RELEASE lock owner",
        _ => "HOLDER lock",
    }
}

fn main() -> std::process::ExitCode {
    understudy_node::builder::main("lockd: a replicated lock service (understudy example)", |node| {
        node.machine_tag("lockd/1").serve(Locks::default, Lines)
    })
}
