//! Prometheus metrics of the built-in server (`understudy arbiter
//! --metrics-listen ADDR`): what it was asked, what it answered, whom it
//! refused, and when it last heard of each node.
//!
//! # Cost
//!
//! Requests are rare (a few per failover, per join and per status change
//! of a primary), so counting is relaxed atomic adds plus, per request that
//! names nodes, one short mutex on the last-contact map. The epochs and the
//! number of clusters are not counted at all: a scrape reads them from the
//! store's records (`Store::render_metrics`).
//!
//! # Format
//!
//! The same as a node's (`understudy_node::metrics`): `prometheus-client`
//! encodes the OpenMetrics text, and a few lines of HTTP/1.0 on a thread of
//! their own answer `GET /metrics` (and `GET /`); anything else gets 404.
//! Scrapes are served one at a time; a scraper that sends no complete
//! request within [`REQUEST_TIMEOUT`] is dropped.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

use crate::proto::{Reply, Request};
use crate::record::ANYONE;
use crate::rules::{unix_ms, validate_name};
use crate::{ArbiterError, Claim, Update};

/// Most (cluster, node) pairs whose last contact is kept. Beyond it the pair
/// heard from least recently is evicted (it reappears on its next request),
/// so nodes named once by a misconfigured client, or clusters long gone,
/// cannot grow the map, nor the page, without bound.
pub const LAST_CONTACTS_MAX: usize = 1024;
/// Largest HTTP request head read from a scraper.
const REQUEST_BYTES_MAX: usize = 8 << 10;
/// A scraper that sends no complete request within this is dropped.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the idle metrics thread looks at the stop flag.
const POLL: Duration = Duration::from_millis(10);

/// The wire operations, in the order of [`Metrics::requests`].
const OPS: [&str; 4] = ["read", "claim", "add_member", "publish"];
const CLAIM_OUTCOMES: [&str; 4] = ["granted", "superseded", "not_member", "error"];
/// Updates: an add_member of the member [`ANYONE`] is a `forget`.
const UPDATE_OPS: [&str; 3] = ["add_member", "publish", "forget"];
const UPDATE_OUTCOMES: [&str; 3] = ["applied", "superseded", "rejected"];
const REFUSALS: [&str; 3] = ["auth", "protocol", "busy"];

/// Why the server refused or dropped a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The peer failed to prove the secret, or could not verify ours
    /// (a different `--secret-file`).
    Auth,
    /// Not an arbiter client (wrong purpose or machine, not our frames), or
    /// a malformed request after the handshake.
    Protocol,
    /// Already [`crate::server::CONNECTIONS_MAX`] connections.
    Busy,
}

/// The last contact of each (cluster, node), bounded by `cap`: a full map
/// evicts the pair touched least recently (see [`LAST_CONTACTS_MAX`]).
/// Eviction scans the map: O(cap) on the rare request that names a new pair
/// while the map is full, which at 1024 entries is microseconds.
#[derive(Debug)]
pub struct LastContacts {
    cap: usize,
    /// Orders touches: the smallest is the least recent (a wall clock may
    /// step back; this does not).
    next: u64,
    /// (cluster, node) → (touch order, Unix time in ms).
    seen: HashMap<(String, String), (u64, u64)>,
}

impl LastContacts {
    pub fn new(cap: usize) -> Self {
        LastContacts { cap: cap.max(1), next: 0, seen: HashMap::new() }
    }

    /// `node` of `cluster` was heard of at `at_ms` (Unix time).
    pub fn touch(&mut self, cluster: &str, node: &str, at_ms: u64) {
        self.next += 1;
        let key = (cluster.to_string(), node.to_string());
        if !self.seen.contains_key(&key) && self.seen.len() >= self.cap {
            if let Some(oldest) = self.seen.iter().min_by_key(|(_, (order, _))| *order).map(|(k, _)| k.clone()) {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(key, (self.next, at_ms));
    }

    /// Unix time in ms of the last contact, if it is still kept.
    pub fn get(&self, cluster: &str, node: &str) -> Option<u64> {
        self.seen.get(&(cluster.to_string(), node.to_string())).map(|(_, at)| *at)
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// (cluster, node, Unix time in ms), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, u64)> {
        self.seen.iter().map(|((c, n), (_, at))| (c.as_str(), n.as_str(), *at))
    }
}

/// Counters of one server, kept by its [`Store`] (requests and answers) and
/// by [`crate::server`] (connections and refusals).
#[derive(Debug)]
pub struct Metrics {
    requests: [AtomicU64; OPS.len()],
    claims: [AtomicU64; CLAIM_OUTCOMES.len()],
    updates: [[AtomicU64; UPDATE_OUTCOMES.len()]; UPDATE_OPS.len()],
    refusals: [AtomicU64; REFUSALS.len()],
    connections_open: AtomicI64,
    connections: AtomicU64,
    contacts: Mutex<LastContacts>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Default::default(),
            claims: Default::default(),
            updates: Default::default(),
            refusals: Default::default(),
            connections_open: AtomicI64::new(0),
            connections: AtomicU64::new(0),
            contacts: Mutex::new(LastContacts::new(LAST_CONTACTS_MAX)),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Index into [`UPDATE_OPS`] of an update request; None for the others.
fn update_op(req: &Request) -> Option<usize> {
    match req {
        Request::AddMember { member, .. } if member == ANYONE => Some(2),
        Request::AddMember { .. } => Some(0),
        Request::Publish { .. } => Some(1),
        _ => None,
    }
}

impl Metrics {
    /// Counts `req` and the answer it got; the nodes it names are stamped
    /// with the time of this call.
    pub fn served(&self, req: &Request, reply: &Reply) {
        let (op, cluster, nodes): (usize, &str, [&str; 2]) = match req {
            Request::Read { cluster } => (0, cluster, ["", ""]),
            Request::Claim { cluster, primary, .. } => (1, cluster, [&primary.node, ""]),
            // A forget is sent by an operator because the primary is dead:
            // not a contact with any node.
            Request::AddMember { cluster, member, .. } if member == ANYONE => (2, cluster, ["", ""]),
            Request::AddMember { cluster, primary_node, member, .. } => (2, cluster, [primary_node, member]),
            Request::Publish { cluster, primary_node, .. } => (3, cluster, [primary_node, ""]),
        };
        bump(&self.requests[op]);
        match (req, reply) {
            (Request::Claim { .. }, Reply::Claim(c)) => bump(&self.claims[claim_outcome(c)]),
            (Request::Claim { .. }, _) => bump(&self.claims[3]),
            _ => {}
        }
        if let Some(u) = update_op(req) {
            let outcome = match reply {
                Reply::Update(Update::Applied(_)) => 0,
                Reply::Update(Update::Superseded(_)) => 1,
                _ => 2,
            };
            bump(&self.updates[u][outcome]);
        }
        // Only names that are valid become labels (no junk, no escaping).
        if validate_name("--cluster", cluster).is_err() {
            return;
        }
        let named: Vec<&str> = nodes.into_iter().filter(|n| validate_name("--node", n).is_ok()).collect();
        if !named.is_empty() {
            let now = unix_ms();
            let mut contacts = self.contacts.lock().unwrap_or_else(PoisonError::into_inner);
            for n in named {
                contacts.touch(cluster, n, now);
            }
        }
    }

    /// A connection was refused or dropped for `why`.
    pub fn refused(&self, why: Refusal) {
        let i = match why {
            Refusal::Auth => 0,
            Refusal::Protocol => 1,
            Refusal::Busy => 2,
        };
        bump(&self.refusals[i]);
    }

    /// A connection is being served until the guard is dropped.
    pub fn connection(self: &Arc<Self>) -> OpenConnection {
        bump(&self.connections);
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone())
    }

    /// Unix time in ms of the last request naming `node` of `cluster`.
    pub fn last_contact_ms(&self, cluster: &str, node: &str) -> Option<u64> {
        self.contacts.lock().unwrap_or_else(PoisonError::into_inner).get(cluster, node)
    }
}

fn claim_outcome(c: &Claim) -> usize {
    match c {
        Claim::Granted(_) => 0,
        Claim::Superseded(_) => 1,
        Claim::NotMember(_) => 2,
    }
}

/// Counts a connection as open while it lives.
#[derive(Debug)]
pub struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

type Labels = Vec<(&'static str, String)>;

fn counters<const N: usize>(label: &'static str, names: [&str; N], values: &[AtomicU64; N]) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    for (name, v) in names.iter().zip(values) {
        f.get_or_create(&vec![(label, name.to_string())]).inc_by(v.load(Ordering::Relaxed));
    }
    f
}

/// The page: every figure of `m`, and the current epoch of each cluster
/// (`Store::render_metrics` reads both now).
pub fn render(m: &Metrics, epochs: Vec<(String, u64)>) -> String {
    let mut reg = Registry::with_prefix("understudy_arbiter");
    reg.register(
        "requests",
        "Requests answered, by wire operation (a forget is an add_member of the member \"*\")",
        counters("op", OPS, &m.requests),
    );
    reg.register(
        "claims",
        "Claims of an epoch by outcome: granted, superseded (epoch taken), not_member (not in sync with the last primary), error",
        counters("outcome", CLAIM_OUTCOMES, &m.claims),
    );
    let updates = Family::<Labels, Counter>::default();
    for (op, row) in UPDATE_OPS.iter().zip(&m.updates) {
        for (outcome, v) in UPDATE_OUTCOMES.iter().zip(row) {
            let labels = vec![("op", op.to_string()), ("outcome", outcome.to_string())];
            updates.get_or_create(&labels).inc_by(v.load(Ordering::Relaxed));
        }
    }
    reg.register(
        "updates",
        "Updates by a primary (add_member: a backup in sync; publish: status) or an operator (forget), by outcome: applied, superseded (the sender no longer holds the epoch), rejected (an error)",
        updates,
    );
    reg.register(
        "refusals",
        "Connections refused or dropped: auth (a different --secret-file), protocol (not an arbiter client, or a malformed request), busy (too many connections)",
        counters("reason", REFUSALS, &m.refusals),
    );
    reg.register("connections", "Connections accepted", ConstCounter::new(m.connections.load(Ordering::Relaxed)));
    reg.register(
        "connections_open",
        "Connections being served (nodes keep one open)",
        ConstGauge::new(m.connections_open.load(Ordering::Relaxed)),
    );
    reg.register("clusters", "Clusters with a record", ConstGauge::new(epochs.len() as i64));
    let epoch = Family::<Labels, Gauge>::default();
    for (cluster, e) in epochs {
        epoch.get_or_create(&vec![("cluster", cluster)]).set(i64::try_from(e).unwrap_or(i64::MAX));
    }
    reg.register("epoch", "The current epoch of each cluster", epoch);
    let contact = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for (cluster, node, at_ms) in m.contacts.lock().unwrap_or_else(PoisonError::into_inner).iter() {
        let labels = vec![("cluster", cluster.to_string()), ("node", node.to_string())];
        contact.get_or_create(&labels).set(at_ms as f64 / 1e3);
    }
    reg.register(
        "node_last_contact_seconds",
        format!(
            "Unix time of the last request naming the node as claimer, primary or member (at most {LAST_CONTACTS_MAX} pairs, the least recent evicted)"
        ),
        contact,
    );
    let mut page = String::with_capacity(4096);
    if prometheus_client::encoding::text::encode(&mut page, &reg).is_err() {
        let _ = writeln!(page, "# encoding failed");
    }
    page
}

/// Serves `GET /metrics` on `listener` — the page `page` renders when
/// scraped — on a thread of its own, until `stop` is set.
pub fn spawn_http(
    page: impl Fn() -> String + Send + 'static,
    listener: TcpListener,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, ArbiterError> {
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
    let net = |action: &str, cause| ArbiterError::Net { action: action.into(), addr: addr.clone(), cause };
    listener.set_nonblocking(true).map_err(|e| net("set non-blocking", e))?;
    let thread = std::thread::Builder::new().name("arbiter-metrics".into()).spawn({
        let addr = addr.clone();
        move || {
            while !stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, _)) => scrape(&page, stream, &stop),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
                    Err(e) => {
                        log::warn!("accepting on --metrics-listen {addr}: {e}");
                        std::thread::sleep(POLL * 5);
                    }
                }
            }
        }
    });
    thread.map_err(|e| net("start the thread serving metrics on", e))
}

/// Answers one scraper.
fn scrape(page: &dyn Fn() -> String, mut stream: TcpStream, stop: &AtomicBool) {
    let Some(head) = read_head(&mut stream, stop) else { return };
    let path = head.split(|b| *b == b' ').nth(1).unwrap_or_default();
    let (status, ctype, body) = if head.starts_with(b"GET ") && (path == b"/metrics" || path == b"/") {
        ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", page())
    } else {
        ("404 Not Found", "text/plain; charset=utf-8", "try GET /metrics\n".to_string())
    };
    let resp = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(resp.as_bytes());
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// The request head, up to the blank line; None if the scraper is too slow,
/// sends too much, or hangs up.
fn read_head(stream: &mut TcpStream, stop: &AtomicBool) -> Option<Vec<u8>> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_millis(100))).ok()?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT)).ok()?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() > REQUEST_BYTES_MAX || Instant::now() > deadline || stop.load(Ordering::Acquire) {
            return None;
        }
        match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_contacts_are_bounded_and_evict_the_least_recent() {
        let mut lc = LastContacts::new(3);
        lc.touch("c", "a", 10);
        lc.touch("c", "b", 20);
        lc.touch("d", "a", 30);
        // Touching a kept pair neither grows the map nor evicts anything,
        // and makes it the most recent.
        lc.touch("c", "a", 40);
        assert_eq!(lc.len(), 3);
        assert_eq!(lc.get("c", "a"), Some(40));
        // A new pair evicts the least recently touched one: ("c", "b").
        lc.touch("c", "z", 50);
        assert_eq!(lc.len(), 3);
        assert_eq!(lc.get("c", "b"), None);
        assert_eq!((lc.get("c", "a"), lc.get("d", "a"), lc.get("c", "z")), (Some(40), Some(30), Some(50)));
        // The order is that of the touches, not of the clock (which may step
        // back): ("d", "a") is now the least recent though its time is not
        // the smallest after this.
        lc.touch("c", "a", 5);
        lc.touch("e", "q", 1);
        assert_eq!(lc.get("d", "a"), None);
        let mut all: Vec<_> = lc.iter().map(|(c, n, at)| (c.to_string(), n.to_string(), at)).collect();
        all.sort();
        assert_eq!(all, [("c".into(), "a".into(), 5), ("c".into(), "z".into(), 50), ("e".into(), "q".into(), 1)]);
    }

    #[test]
    fn the_default_bound_holds_under_many_names() {
        let mut lc = LastContacts::new(LAST_CONTACTS_MAX);
        for i in 0..LAST_CONTACTS_MAX + 500 {
            lc.touch("c", &format!("n{i}"), i as u64);
        }
        assert_eq!(lc.len(), LAST_CONTACTS_MAX);
        assert_eq!(lc.get("c", "n499"), None);
        assert_eq!(lc.get("c", "n500"), Some(500));
        assert_eq!(lc.get("c", &format!("n{}", LAST_CONTACTS_MAX + 499)), Some((LAST_CONTACTS_MAX + 499) as u64));
    }
}
