//! Clients that record every op for the linearizability checker, and a
//! nemesis that kills, freezes and restarts the nodes of a pair — one
//! machine at a time, as DESIGN §1's failure model says — waiting for the
//! pair to have an in-sync backup again before the next fault.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use understudy_arbiter::BackupState;
use understudy_client::{Conn, Reply};
use understudy_lincheck::{OpKind, Recorder};

use crate::common::{serves_as_primary, wait_for, Harness, CLUSTER, SECRET};

/// A small seeded generator (xorshift64*), so a run's choices replay.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Few keys, so clients contend on each and the history says something.
pub const KEYS: [&str; 3] = ["lin:a", "lin:b", "lin:c"];

/// How long a client waits for a reply before the op's outcome is unknown.
/// Longer than a failover (so most ops in flight during one complete),
/// short enough that clients stuck on a frozen primary move on.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Client threads doing random GET/SET/INCR on [`KEYS`], following the
/// primary through the arbiter, recording every op.
pub struct Clients {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Ops that got a reply (ok or READONLY).
    pub answered: Arc<AtomicU64>,
    /// Replies no correct server sends (reported, and the run fails).
    pub anomalies: Arc<Mutex<Vec<String>>>,
}

impl Clients {
    pub fn start(h: &Harness, n: u64, seed: u64, rec: &Recorder) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let anomalies = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..n)
            .map(|id| {
                let w = Worker {
                    id,
                    url: h.arbiter_url(),
                    rec: rec.clone(),
                    rng: Rng::new(seed ^ (id + 1).wrapping_mul(0x5851_f42d_4c95_7f2d)),
                    stop: stop.clone(),
                    answered: answered.clone(),
                    anomalies: anomalies.clone(),
                };
                std::thread::spawn(move || w.run())
            })
            .collect();
        Clients { stop, threads, answered, anomalies }
    }

    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Waits until `n` more ops were answered (the pair serves again).
    pub fn wait_more(&self, n: u64, limit: Duration) {
        let target = self.answered() + n;
        wait_for(&format!("{n} more answered ops"), limit, || (self.answered() >= target).then_some(()));
    }

    /// Stops the clients; returns the anomalies they saw.
    pub fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("client thread");
        }
        std::mem::take(&mut *self.anomalies.lock().unwrap())
    }
}

struct Worker {
    id: u64,
    url: String,
    rec: Recorder,
    rng: Rng,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    anomalies: Arc<Mutex<Vec<String>>>,
}

impl Worker {
    fn run(mut self) {
        let arbiter = understudy_arbiter::connect(&self.url, SECRET.as_bytes()).expect("arbiter client");
        let mut conn: Option<Conn> = None;
        let mut writes = 0i64;
        while !self.stop.load(Ordering::Relaxed) {
            let Some(c) = conn.as_mut() else {
                // Follow the primary, as understudy_client::Cluster does; a
                // failed lookup or connect sent nothing, so records nothing.
                let addr = arbiter.read(CLUSTER).ok().flatten().map(|r| r.primary.client);
                conn = addr.and_then(|a| Conn::connect(&a, REPLY_TIMEOUT).ok());
                if conn.is_none() {
                    std::thread::sleep(Duration::from_millis(20));
                }
                continue;
            };
            let key = KEYS[self.rng.below(KEYS.len() as u64) as usize];
            // Values are unique per write (client, sequence) and far apart,
            // so a read names the write it saw even after a few INCRs.
            let kind = match self.rng.below(3) {
                0 => OpKind::Get,
                1 => {
                    writes += 1;
                    OpKind::Set((self.id as i64 + 1) * 1_000_000_000_000 + writes * 1_000_000)
                }
                _ => OpKind::Incr,
            };
            let value;
            let args: Vec<&str> = match kind {
                OpKind::Get => vec!["GET", key],
                OpKind::Set(v) => {
                    value = v.to_string();
                    vec!["SET", key, value.as_str()]
                }
                OpKind::Incr => vec!["INCR", key],
            };
            let op = self.rec.invoke(self.id, key, kind);
            match c.call(&args) {
                // A backup refuses before logging anything: not applied.
                Ok(Reply::Error(e)) if e.starts_with("READONLY") => {
                    op.fail();
                    self.answered.fetch_add(1, Ordering::Relaxed);
                    conn = None;
                }
                Ok(reply) => {
                    match parse(kind, &reply) {
                        Some(v) => op.ok(v),
                        None => {
                            op.unknown();
                            self.anomalies.lock().unwrap().push(format!("client {}: {args:?} answered {reply:?}", self.id));
                        }
                    }
                    self.answered.fetch_add(1, Ordering::Relaxed);
                }
                // Timeout or broken connection after sending: the op may or
                // may not have been applied (at-least-once, DESIGN §3).
                Err(_) => {
                    op.unknown();
                    conn = None;
                }
            }
        }
    }
}

/// The observed value of a reply, `None` if the reply is not one the
/// command can give.
fn parse(kind: OpKind, reply: &Reply) -> Option<Option<i64>> {
    match (kind, reply) {
        (OpKind::Get, Reply::Bulk(None)) => Some(None),
        (OpKind::Get, Reply::Bulk(Some(b))) => std::str::from_utf8(b).ok()?.parse().ok().map(Some),
        (OpKind::Set(_), Reply::Simple(s)) if s == "OK" => Some(None),
        (OpKind::Incr, Reply::Int(n)) => Some(Some(*n)),
        _ => None,
    }
}

/// The faults the nemesis injects, one machine at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 of the primary; the backup takes over; the dead node
    /// restarts empty and joins as the new backup.
    KillPrimary,
    /// kill -9 of the backup; the primary continues alone; the node
    /// restarts and rejoins.
    KillBackup,
    /// SIGSTOP of the primary until the backup has taken over, then
    /// SIGCONT: the deposed primary must halt without answering.
    FreezePrimary,
    /// SIGSTOP of the backup until the primary has gone on without it.
    FreezeBackup,
    /// SIGSTOP of either node for less than the failover timeout: the pair
    /// may or may not fail over.
    Stutter,
}

pub const FAULTS: [Fault; 5] = [Fault::KillPrimary, Fault::KillBackup, Fault::FreezePrimary, Fault::FreezeBackup, Fault::Stutter];

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillPrimary => "kill-primary",
            Fault::KillBackup => "kill-backup",
            Fault::FreezePrimary => "freeze-primary",
            Fault::FreezeBackup => "freeze-backup",
            Fault::Stutter => "stutter",
        }
    }

    /// The faults named in a comma-separated list (all if `None`).
    pub fn parse_list(names: Option<&str>) -> Vec<Fault> {
        let Some(names) = names else { return FAULTS.to_vec() };
        names
            .split(',')
            .map(|n| {
                let n = n.trim();
                *FAULTS
                    .iter()
                    .find(|f| f.name() == n)
                    .unwrap_or_else(|| panic!("unknown fault {n:?}; known: {:?}", FAULTS.map(Fault::name)))
            })
            .collect()
    }
}

/// The pair as the arbiter records it when healthy.
#[derive(Debug, Clone)]
pub struct Pair {
    pub primary: String,
    pub backup: String,
    pub epoch: u64,
}

fn running(h: &mut Harness, name: &str) -> bool {
    let Some(n) = h.nodes.get_mut(name) else { return false };
    match n.child.as_mut() {
        Some(c) => c.try_wait().expect("try_wait").is_none(),
        None => false,
    }
}

/// Restarts every node whose process ended (reaping it), then waits until
/// the arbiter records a primary that serves and an in-sync backup, both
/// running: redundancy is restored and the next fault may come. An error
/// says the cluster did not recover (with the arbiter's record and each
/// node's view).
pub fn heal(h: &mut Harness, limit: Duration) -> Result<Pair, String> {
    let deadline = Instant::now() + limit;
    loop {
        let names: Vec<String> = h.nodes.keys().cloned().collect();
        for name in names {
            if !running(h, &name) {
                if let Some(mut c) = h.nodes.get_mut(&name).and_then(|n| n.child.take()) {
                    let status = c.wait().expect("wait");
                    eprintln!("nemesis: {name} had exited ({status}); restarting it");
                }
                h.start_node(&name, &[]);
            }
        }
        if let Some(r) = h.record() {
            if let Some(b) = r.backup.as_ref().filter(|b| b.state == BackupState::InSync) {
                let (p, b) = (r.primary.node.clone(), b.node.clone());
                if p != b && running(h, &p) && running(h, &b) && serves_as_primary(&h.node(&p).client, None) {
                    return Ok(Pair { primary: p, backup: b, epoch: r.epoch });
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("no primary with an in-sync backup after {limit:?}\n{}", diagnose(h)));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The arbiter's record and each node's own view (`INFO replication`),
/// for a report on a cluster that does not recover.
pub fn diagnose(h: &Harness) -> String {
    let mut out = format!("arbiter record: {:?}\n", h.record());
    let mut names: Vec<&String> = h.nodes.keys().collect();
    names.sort();
    for name in names {
        let info = Conn::connect(&h.node(name).client, Duration::from_secs(1))
            .and_then(|mut c| c.call(&["INFO", "replication"]))
            .map(|r| r.bytes().map(|b| String::from_utf8_lossy(b).replace("\r\n", " ")).unwrap_or_default());
        out.push_str(&format!("{name}: {info:?}\n"));
    }
    out
}

/// Waits until the arbiter has moved past `epoch` without `gone` as
/// primary or backup (the survivor has claimed the next epoch).
fn wait_moved_on(h: &Harness, gone: &str, epoch: u64) -> Result<u64, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(r) = h.record() {
            if r.epoch > epoch && r.primary.node != gone && r.backup.as_ref().is_none_or(|b| b.node != gone) {
                return Ok(r.epoch);
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("the cluster did not go on without {gone} after epoch {epoch} within 30 s\n{}", diagnose(h)));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a node's process to end on its own; returns its exit code.
fn wait_halt(h: &mut Harness, name: &str) -> Option<i32> {
    h.wait_exit(name, Duration::from_secs(30))
}

/// After a thawed backup finds the pair gone on without it: it halts, or
/// it finds its way back as a backup by itself. Says which.
fn halt_or_rejoin(h: &mut Harness, name: &str) -> String {
    wait_for(&format!("{name} to halt or rejoin"), Duration::from_secs(30), || {
        if !running(h, name) {
            let code = h.wait_exit(name, Duration::from_secs(1));
            return Some(format!("it halted with {code:?}"));
        }
        let r = h.record()?;
        r.backup.filter(|b| b.node == name && b.state == BackupState::InSync).map(|_| "it rejoined".to_string())
    })
}

/// Injects one fault into the healthy `pair` and returns when the pair is
/// healthy again, with a line describing what happened; an error if the
/// cluster did not recover.
pub fn inject(h: &mut Harness, pair: &Pair, fault: Fault, rng: &mut Rng) -> Result<String, String> {
    let (p, b, e) = (pair.primary.as_str(), pair.backup.as_str(), pair.epoch);
    let t0 = Instant::now();
    let what = match fault {
        Fault::KillPrimary => {
            h.kill9(p);
            wait_moved_on(h, p, e)?;
            format!("kill -9 of primary {p}")
        }
        Fault::KillBackup => {
            h.kill9(b);
            wait_moved_on(h, b, e)?;
            format!("kill -9 of backup {b}")
        }
        Fault::FreezePrimary => {
            h.signal(p, libc::SIGSTOP);
            let moved = wait_moved_on(h, p, e);
            h.signal(p, libc::SIGCONT);
            moved?;
            let code = wait_halt(h, p);
            if code != Some(3) {
                return Err(format!("the deposed primary {p} ended with {code:?}; it must halt with exit code 3 (Promise 2)"));
            }
            format!("SIGSTOP of primary {p} until {b} took over, SIGCONT: it halted")
        }
        Fault::FreezeBackup => {
            h.signal(b, libc::SIGSTOP);
            let moved = wait_moved_on(h, b, e);
            h.signal(b, libc::SIGCONT);
            moved?;
            let how = halt_or_rejoin(h, b);
            format!("SIGSTOP of backup {b} until {p} went on alone, SIGCONT: {how}")
        }
        Fault::Stutter => {
            let victim = if rng.below(2) == 0 { p } else { b };
            let ms = 50 + rng.below(150); // below the default failure timeout (250 ms)
            h.signal(victim, libc::SIGSTOP);
            std::thread::sleep(Duration::from_millis(ms));
            h.signal(victim, libc::SIGCONT);
            format!("SIGSTOP of {victim} for {ms} ms")
        }
    };
    let after = heal(h, Duration::from_secs(60))?;
    Ok(format!(
        "{what}; healthy again in {:.1?}: primary {}, backup {}, epoch {}",
        t0.elapsed(),
        after.primary,
        after.backup,
        after.epoch
    ))
}
