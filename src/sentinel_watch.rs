//! What `understudy sentinel` knows: the arbiter's record of each watched
//! cluster, read again every `--poll-ms` on a thread of its own, whether
//! the registered primary accepts connections, and the `+switch-master`
//! messages its subscribers get when a cluster's primary changes.
//!
//! Nothing here is durable: a sentinel that restarts reads everything
//! again. The in-sync backup's client address (the record names the backup
//! without one) comes from the primary, as a Redis Sentinel learns its
//! replicas: `INFO replication`'s `slave0:ip=…,port=…,state=online`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use understudy_arbiter::{Arbiter, BackupState, ClusterRecord};
use understudy_node::tls::ClientTls;

/// Most clusters one sentinel watches (those named by `--cluster` plus those
/// asked for by name), so clients asking for made-up names cannot make it
/// read the arbiter without bound.
pub const WATCHED_MAX: usize = 1024;
/// Bound on connecting to a primary (is it up? which backup does it name?).
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// A backup whose address the primary did not name is asked for again after this.
const VERIFY_RETRY: Duration = Duration::from_secs(1);
/// Messages queued for one subscriber that does not read them.
const SUBSCRIBER_QUEUE: usize = 256;

/// A message for subscribers: (channel, payload).
pub type Message = Arc<(String, String)>;

/// A cluster as the sentinel answers about it.
#[derive(Clone, Debug)]
pub struct View {
    pub name: String,
    pub record: ClusterRecord,
    /// The last probe of the primary's client address succeeded (and the
    /// epoch was not abandoned).
    pub primary_up: bool,
    pub last_probe: Instant,
    pub last_ok_probe: Option<Instant>,
    /// Since when the primary has not answered.
    pub down_since: Option<Instant>,
    /// When this primary (this address) was first seen.
    pub primary_since: Instant,
    /// The last successful read of the record.
    pub read_at: Instant,
    /// The last read failed: why (the view is the last one read).
    pub read_error: Option<String>,
    /// The in-sync backup, if its client address is known and confirmed.
    pub replica: Option<Replica>,
}

#[derive(Clone, Debug)]
pub struct Replica {
    pub node: String,
    pub client: String,
    pub lag: u64,
    pub since: Instant,
}

/// The answer to "what about cluster NAME".
pub enum Lookup {
    Found(Box<View>),
    /// No such cluster at the arbiter (or not a valid cluster name).
    Unknown,
    /// The arbiter could not be read and nothing is known yet.
    Failed(String),
}

/// A check of the in-sync backup's address: the primary named it at
/// `client` (`ok`), or did not, at `at`.
struct Verified {
    epoch: u64,
    node: String,
    client: String,
    ok: bool,
    at: Instant,
}

#[derive(Default)]
struct Cluster {
    view: Option<View>,
    verified: Option<Verified>,
    /// The primary's client address last seen, to tell a switch.
    last_primary: Option<String>,
    /// The last read failed (log a warning once per failing streak).
    failing: Option<String>,
}

pub struct Watch {
    arbiter: Arc<dyn Arbiter>,
    clusters: Mutex<BTreeMap<String, Cluster>>,
    subscribers: Mutex<Vec<SyncSender<Message>>>,
    pub poll: Duration,
    pub started: Instant,
    /// AUTH's arguments for the nodes (`--auth-user`, `--auth-pass-file`):
    /// the password, or the user and password; given before INFO
    /// replication. Empty: no AUTH.
    auth: Vec<Vec<u8>>,
    /// The nodes speak TLS (`--tls-ca`): how to connect to them.
    tls: Option<ClientTls>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Watch {
    pub fn new(
        arbiter: Arc<dyn Arbiter>,
        poll: Duration,
        clusters: &[String],
        auth: Vec<Vec<u8>>,
        tls: Option<ClientTls>,
    ) -> Watch {
        let map = clusters.iter().map(|c| (c.clone(), Cluster::default())).collect();
        let subscribers = Mutex::new(Vec::new());
        Watch { arbiter, clusters: Mutex::new(map), subscribers, poll, started: Instant::now(), auth, tls }
    }

    pub fn describe_arbiter(&self) -> String {
        self.arbiter.describe()
    }

    /// Reads every watched cluster every `poll`, for ever, on a new thread.
    pub fn spawn_poller(self: &Arc<Self>) -> std::io::Result<()> {
        let w = self.clone();
        std::thread::Builder::new().name("sentinel-poll".into()).spawn(move || loop {
            let t = Instant::now();
            // A panic here would leave every answer frozen: log it and go on.
            let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.round()));
            if round.is_err() {
                log::error!("a round of reading the arbiter panicked; trying again");
            }
            std::thread::sleep(w.poll.saturating_sub(t.elapsed()));
        })?;
        Ok(())
    }

    fn round(&self) {
        let names: Vec<String> = lock(&self.clusters).keys().cloned().collect();
        for name in names {
            self.refresh(&name);
        }
    }

    /// Every cluster with a record, in name order.
    pub fn known(&self) -> Vec<View> {
        lock(&self.clusters).values().filter_map(|c| c.view.clone()).collect()
    }

    /// Cluster `name`: from what was read last if it is watched, else read
    /// now (and watched from now on if it exists). Only a name never read
    /// (or without a record) waits for the arbiter.
    pub fn lookup(&self, name: &str) -> Lookup {
        if let Some(found) = self.cached(name) {
            return found;
        }
        if understudy_arbiter::validate_name("cluster", name).is_err() {
            return Lookup::Unknown;
        }
        match self.arbiter.read(name) {
            Ok(None) => Lookup::Unknown,
            Err(e) => Lookup::Failed(format!("cannot read cluster {name:?} at {}: {e}", self.arbiter.describe())),
            Ok(Some(_)) => {
                {
                    let mut m = lock(&self.clusters);
                    if m.len() >= WATCHED_MAX && !m.contains_key(name) {
                        return Lookup::Failed(format!(
                            "this sentinel already watches {WATCHED_MAX} clusters; run another for more"
                        ));
                    }
                    m.entry(name.to_string()).or_default();
                }
                log::info!("watching cluster {name:?} (asked for by a client)");
                self.refresh(name);
                self.cached(name).unwrap_or(Lookup::Unknown)
            }
        }
    }

    fn cached(&self, name: &str) -> Option<Lookup> {
        let m = lock(&self.clusters);
        let c = m.get(name)?;
        match (&c.view, &c.failing) {
            (Some(v), _) => Some(Lookup::Found(Box::new(v.clone()))),
            (None, Some(e)) => Some(Lookup::Failed(e.clone())),
            // Watched (--cluster) but without a record so far: read now.
            (None, None) => None,
        }
    }

    /// Reads cluster `name`, probes its primary (and its backup's address
    /// when that needs confirming), updates the view, and tells subscribers
    /// of a new primary.
    fn refresh(&self, name: &str) {
        let rec = match self.arbiter.read(name) {
            Ok(Some(r)) => r,
            Ok(None) => return self.failed(name, None),
            Err(e) => {
                let why = format!("cannot read cluster {name:?} at {}: {e}", self.arbiter.describe());
                self.failed(name, Some(why));
                // Still say whether the primary read last answers.
                if let Some(client) = self.cached_primary(name) {
                    let up = probe(&client);
                    if let Some(v) = lock(&self.clusters).get_mut(name).and_then(|c| c.view.as_mut()) {
                        if v.record.primary.client == client {
                            probed(v, up, Instant::now());
                        }
                    }
                }
                return;
            }
        };
        let up = !rec.is_abandoned() && probe(&rec.primary.client);
        let check = if up { self.backup_to_check(name, &rec) } else { None };
        let checked = check.map(|node| {
            let client = replica_of(&rec.primary.client, &self.auth, self.tls.as_ref());
            Verified { epoch: rec.epoch, node, ok: client.is_some(), client: client.unwrap_or_default(), at: Instant::now() }
        });
        let switch = self.apply(name, rec, up, checked);
        if let Some((old, new)) = switch {
            let (oh, op) = split_addr(&old);
            let (nh, np) = split_addr(&new);
            self.publish("+switch-master", &format!("{name} {oh} {op} {nh} {np}"));
        }
    }

    fn cached_primary(&self, name: &str) -> Option<String> {
        let m = lock(&self.clusters);
        let v = m.get(name)?.view.as_ref()?;
        (!v.record.is_abandoned()).then(|| v.record.primary.client.clone())
    }

    fn failed(&self, name: &str, why: Option<String>) {
        let mut m = lock(&self.clusters);
        let Some(c) = m.get_mut(name) else { return };
        match why {
            Some(why) => {
                if c.failing.is_none() {
                    match &c.view {
                        Some(_) => log::warn!("{why}; answering with the record read last"),
                        None => log::warn!("{why}"),
                    }
                }
                if let Some(v) = &mut c.view {
                    v.read_error = Some(why.clone());
                }
                c.failing = Some(why);
            }
            // The record is gone (an etcd key deleted by hand): nothing to say.
            None => {
                c.view = None;
                c.failing = None;
            }
        }
    }

    /// The in-sync backup whose address to ask the primary for, if it
    /// needs asking now (a new backup or epoch; a failed ask is retried
    /// after `VERIFY_RETRY`).
    fn backup_to_check(&self, name: &str, rec: &ClusterRecord) -> Option<String> {
        let b = rec.backup.as_ref().filter(|b| b.state == BackupState::InSync && b.node != rec.primary.node)?;
        let m = lock(&self.clusters);
        let c = m.get(name)?;
        let fresh = c
            .verified
            .as_ref()
            .is_some_and(|v| v.epoch == rec.epoch && v.node == b.node && (v.ok || v.at.elapsed() < VERIFY_RETRY));
        (!fresh).then(|| b.node.clone())
    }

    /// Applies a read; returns (old, new) primary addresses on a switch.
    fn apply(&self, name: &str, rec: ClusterRecord, up: bool, checked: Option<Verified>) -> Option<(String, String)> {
        let now = Instant::now();
        let mut m = lock(&self.clusters);
        let c = m.get_mut(name)?;
        if c.view.as_ref().is_some_and(|v| v.record.epoch > rec.epoch) {
            return None; // an older read finishing after a newer one
        }
        if let Some(why) = c.failing.take() {
            log::info!("read cluster {name:?} again (after: {why})");
        }
        if let Some(v) = checked {
            c.verified = Some(v);
        }
        let replica = rec.backup.as_ref().filter(|b| b.state == BackupState::InSync).and_then(|b| {
            let v = c.verified.as_ref().filter(|v| v.ok && v.epoch == rec.epoch && v.node == b.node)?;
            Some(Replica { node: b.node.clone(), client: v.client.clone(), lag: b.lag, since: v.at })
        });
        let new = rec.primary.client.clone();
        let switch = match c.last_primary.replace(new.clone()) {
            Some(old) if old != new => {
                log::info!(
                    "cluster {name:?}: the primary is {:?} at {new} since epoch {} (it was at {old})",
                    rec.primary.node,
                    rec.epoch
                );
                Some((old, new.clone()))
            }
            Some(_) => None,
            None => {
                log::info!("cluster {name:?}: the primary is {:?} at {new}, epoch {}", rec.primary.node, rec.epoch);
                None
            }
        };
        let old = c.view.take().filter(|o| o.record.primary.client == new);
        let mut v = View {
            name: name.to_string(),
            record: rec,
            primary_up: old.as_ref().is_none_or(|o| o.primary_up),
            last_probe: now,
            last_ok_probe: old.as_ref().and_then(|o| o.last_ok_probe),
            down_since: old.as_ref().and_then(|o| o.down_since),
            primary_since: old.as_ref().map_or(now, |o| o.primary_since),
            read_at: now,
            read_error: None,
            replica,
        };
        probed(&mut v, up, now);
        c.view = Some(v);
        switch
    }

    /// A new subscriber's queue of messages.
    pub fn subscribe(&self) -> Receiver<Message> {
        let (tx, rx) = std::sync::mpsc::sync_channel(SUBSCRIBER_QUEUE);
        lock(&self.subscribers).push(tx);
        rx
    }

    fn publish(&self, channel: &str, payload: &str) {
        let msg: Message = Arc::new((channel.to_string(), payload.to_string()));
        lock(&self.subscribers).retain(|s| match s.try_send(msg.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                log::warn!("a subscriber does not read its messages; dropping {channel} {payload} for it");
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
    }
}

/// Records a probe of the primary.
fn probed(v: &mut View, up: bool, now: Instant) {
    if v.primary_up && !up {
        let p = &v.record.primary;
        log::warn!("cluster {:?}: the primary {:?} at {} does not accept connections", v.name, p.node, p.client);
    }
    v.last_probe = now;
    if up {
        v.last_ok_probe = Some(now);
        v.down_since = None;
    } else if v.primary_up || v.down_since.is_none() {
        v.down_since = Some(now);
    }
    v.primary_up = up;
}

/// `HOST:PORT` → (host, port), an IPv6 host without its brackets (as
/// Redis prints addresses).
pub fn split_addr(addr: &str) -> (String, String) {
    match addr.rsplit_once(':') {
        Some((h, p)) => (h.trim_start_matches('[').trim_end_matches(']').to_string(), p.to_string()),
        None => (addr.to_string(), "0".to_string()),
    }
}

fn resolve(addr: &str) -> Option<SocketAddr> {
    addr.to_socket_addrs().ok()?.next()
}

/// Whether something accepts connections at `addr`.
fn probe(addr: &str) -> bool {
    resolve(addr).is_some_and(|a| TcpStream::connect_timeout(&a, PROBE_TIMEOUT).is_ok())
}

/// The client address of the in-sync backup of the primary at `addr`, as
/// its `INFO replication` says (`slave0:ip=H,port=P,state=online`); over
/// TLS with `tls`.
fn replica_of(addr: &str, auth: &[Vec<u8>], tls: Option<&ClientTls>) -> Option<String> {
    let connect = || -> std::io::Result<Vec<u8>> {
        let a = resolve(addr).ok_or_else(|| std::io::Error::other("no address"))?;
        let s = TcpStream::connect_timeout(&a, PROBE_TIMEOUT)?;
        s.set_read_timeout(Some(PROBE_TIMEOUT))?;
        s.set_write_timeout(Some(PROBE_TIMEOUT))?;
        match tls {
            None => info(s, auth),
            Some(t) => info(t.wrap(&split_addr(addr).0, s)?, auth),
        }
    };
    let got = connect();
    if let (Err(e), Some(_)) = (&got, tls) {
        log::debug!("asking the primary at {addr} for its backup over TLS: {e}");
    }
    let text = String::from_utf8(got.ok()?).ok()?;
    let line = text.split("\r\n").find_map(|l| l.strip_prefix("slave0:"))?;
    let field = |name: &str| line.split(',').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='));
    if field("state")? != "online" {
        return None;
    }
    let (host, port) = (field("ip")?, field("port")?);
    Some(if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") })
}

/// `INFO replication` (after AUTH with `auth`'s arguments, if any) on a
/// connection to a node: the bulk reply's bytes.
fn info(mut s: impl Read + Write, auth: &[Vec<u8>]) -> std::io::Result<Vec<u8>> {
    let mut req = Vec::new();
    if !auth.is_empty() {
        // Its +OK (or error) comes first; the bulk reply is found after it.
        req.extend_from_slice(format!("*{}\r\n$4\r\nAUTH\r\n", auth.len() + 1).as_bytes());
        for a in auth {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
    }
    req.extend_from_slice(b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n");
    s.write_all(&req)?;
    s.flush()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // A bulk string: `$len\r\n` then len bytes and CRLF; 64 KiB at most.
    while got.len() < 64 * 1024 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        // After AUTH's one-line answer, which must be +OK.
        let skip = if auth.is_empty() {
            0
        } else {
            match got.windows(2).position(|w| w == b"\r\n") {
                Some(_) if !got.starts_with(b"+OK\r\n") => return Err(std::io::Error::other("AUTH refused")),
                Some(i) => i + 2,
                None => continue,
            }
        };
        if let Some(end) = bulk_end(&got[skip..]) {
            return Ok(got[skip..skip + end].to_vec());
        }
    }
    Ok(got)
}

/// Where the bulk string reply at the start of `b` ends, once complete.
fn bulk_end(b: &[u8]) -> Option<usize> {
    let cr = b.iter().position(|&c| c == b'\r')?;
    if b.first() != Some(&b'$') {
        return Some(b.len()); // an error or another type: not INFO's answer
    }
    let n: usize = std::str::from_utf8(&b[1..cr]).ok()?.parse().ok()?;
    let end = cr + 2 + n + 2;
    (b.len() >= end).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_as_redis_prints_them() {
        assert_eq!(split_addr("127.0.0.1:6379"), ("127.0.0.1".into(), "6379".into()));
        assert_eq!(split_addr("[::1]:7000"), ("::1".into(), "7000".into()));
        assert_eq!(split_addr("db.example:1"), ("db.example".into(), "1".into()));
    }

    #[test]
    fn a_bulk_reply_ends_after_its_length() {
        assert_eq!(bulk_end(b"$3\r\nabc"), None);
        assert_eq!(bulk_end(b"$3\r\nabc\r\n"), Some(9));
        assert_eq!(bulk_end(b"-ERR x\r\n"), Some(8));
        assert_eq!(bulk_end(b"$3"), None);
    }
}
