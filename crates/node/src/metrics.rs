//! Prometheus metrics on `--metrics-listen`: the figures `understudy-bench`
//! reads, for an operator to see the same numbers in production.
//!
//! # Cost on the hot path
//!
//! Almost nothing is counted on the hot path. Role, epoch, seqs, lag and the
//! replication counters already live in the core and in [`Stats`]; they are
//! read when Prometheus scrapes, on the node's own event loop (the scrape
//! borrows the replica as any task does, for the microseconds it takes to
//! format a page). The one new observation is the output-gate delay
//! histogram: relaxed atomic adds into fixed buckets, and two clock reads per
//! batch of replies (one when a read's requests are queued, one when they
//! are released), not per reply.
//!
//! # Format
//!
//! `prometheus-client` (the Prometheus project's own Rust client; no HTTP
//! stack of its own, so no hyper) encodes the OpenMetrics text format. The
//! page is served by a few lines of HTTP/1.0 on the node's tokio runtime:
//! `GET /metrics` answers, anything else gets 404.
//!
//! [`Stats`]: crate::replica::Stats

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use understudy_core::Seq;

use crate::machine::Machine;
use crate::replica::Replica;

/// Upper bounds of the duration buckets, in microseconds: from a
/// loopback round trip (≈ 20 µs) to a failover timeout.
pub const BUCKETS_US: [u64; 16] =
    [10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000];

/// A histogram of durations with fixed buckets, updated with relaxed atomic
/// adds (no lock): cheap enough for the hot path.
#[derive(Debug)]
pub struct DurationHistogram {
    /// Per bucket (not cumulative); the last one is +Inf.
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl DurationHistogram {
    pub const fn new() -> Self {
        DurationHistogram {
            buckets: [const { AtomicU64::new(0) }; BUCKETS_US.len() + 1],
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records `n` observations of `d` (replies released together that
    /// were queued together waited equally long).
    pub fn observe_n(&self, d: Duration, n: u64) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let i = BUCKETS_US.iter().position(|&b| us <= b).unwrap_or(BUCKETS_US.len());
        self.buckets[i].fetch_add(n, Ordering::Relaxed);
        self.count.fetch_add(n, Ordering::Relaxed);
        self.sum_ns.fetch_add((d.as_nanos().min(u64::MAX as u128) as u64).saturating_mul(n), Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl Default for DurationHistogram {
    fn default() -> Self {
        Self::new()
    }
}

/// Registered by reference: the histogram is a `static` the hot path
/// updates; a scrape only reads it.
impl EncodeMetric for &'static DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // Per-bucket counts: the encoder makes them cumulative.
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.buckets.len());
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            total += n;
            let le = BUCKETS_US.get(i).map_or(f64::INFINITY, |us| *us as f64 / 1e6);
            buckets.push((le, n));
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, total, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Output-gate delay: from a reply being queued at the gate to its release
/// (KV: per reply; WebAssembly: per logged event, whose outputs wait for it).
pub static GATE_DELAY: DurationHistogram = DurationHistogram::new();

/// Event-loop lag: how late the node's ticker fires (every `heartbeat_ms / 5`,
/// at most 10 ms). A lag near `--failover-timeout-ms` means the loop was
/// blocked or the process starved long enough for its peer to declare it
/// failed.
pub static LOOP_LAG: DurationHistogram = DurationHistogram::new();

/// Machine level: the guest's pauses for live snapshots (unwind, copy of
/// what the pre-copy missed, rewind), in the histogram's buckets.
pub static GUEST_SNAPSHOT_PAUSE: DurationHistogram = DurationHistogram::new();

/// One KV client connection's side of [`GATE_DELAY`]: replies queued
/// together (from one read) share a timestamp; releases are FIFO.
#[derive(Default)]
pub struct GateClock {
    waits: VecDeque<(u64, Instant)>,
}

impl GateClock {
    /// `n` replies were queued just now.
    pub fn queued(&mut self, n: usize) {
        if n > 0 {
            self.waits.push_back((n as u64, Instant::now()));
        }
    }

    /// The oldest `n` queued replies were released just now.
    pub fn released(&mut self, n: usize) {
        let mut n = n as u64;
        if n == 0 {
            return;
        }
        let now = Instant::now();
        while n > 0 {
            let Some(front) = self.waits.front_mut() else { return };
            let take = front.0.min(n);
            GATE_DELAY.observe_n(now.saturating_duration_since(front.1), take);
            front.0 -= take;
            n -= take;
            if front.0 == 0 {
                self.waits.pop_front();
            }
        }
    }
}

/// The WebAssembly node's side of [`GATE_DELAY`]: when each batch of events
/// entered the log, until the release point passes it.
#[derive(Default)]
pub struct SeqClock {
    /// (last seq of a batch, entries in it, when it was appended).
    appended: VecDeque<(Seq, u64, Instant)>,
}

impl SeqClock {
    pub fn appended(&mut self, last: Seq, n: u64) {
        if n > 0 {
            self.appended.push_back((last, n, Instant::now()));
        }
    }

    /// The release point is now `upto`.
    pub fn released(&mut self, upto: Seq) {
        let Some(&(last, _, _)) = self.appended.front() else { return };
        if last > upto {
            return;
        }
        let now = Instant::now();
        while let Some(&(last, n, at)) = self.appended.front() {
            if last > upto {
                break;
            }
            GATE_DELAY.observe_n(now.saturating_duration_since(at), n);
            self.appended.pop_front();
        }
    }
}

/// Largest HTTP request head read from a scraper.
const REQUEST_BYTES_MAX: usize = 8 << 10;
/// A scraper that sends no complete request within this is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The page: every figure, read now from the replica.
pub fn render<M: Machine>(r: &Replica<M>) -> String {
    let s = r.core.status();
    let mut reg = Registry::with_prefix("understudy");
    reg.register("role", "This node's role in the protocol", Info::new(vec![("role".to_string(), s.role.as_str().to_string())]));
    reg.register("primary", "1 if this node is the primary", ConstGauge::new(i64::from(r.core.is_primary())));
    reg.register("epoch", "The epoch this node holds or follows", ConstGauge::new(s.epoch as i64));
    reg.register(
        "protected",
        "Primary: 1 while outputs wait for an in-sync backup's acks",
        ConstGauge::new(i64::from(s.protected)),
    );
    reg.register("peer_in_sync", "1 while the peer (backup or primary) is in sync", ConstGauge::new(i64::from(s.peer_in_sync)));
    reg.register("backup_lag_entries", "Entries the backup has yet to execute", ConstGauge::new(s.lag as i64));
    reg.register("last_seq", "Primary: last appended seq; backup: last received", ConstGauge::new(s.last_seq as i64));
    reg.register("executed_seq", "Last seq applied to the machine", ConstGauge::new(s.executed as i64));
    reg.register("release_upto", "Outputs tagged up to this seq may leave", ConstGauge::new(r.core.release_upto() as i64));
    reg.register("log_bytes", "Bytes of log entries sent to the backup", ConstCounter::new(r.stats.log_bytes));
    reg.register("log_entries", "Log entries sent to the backup", ConstCounter::new(r.stats.log_entries));
    reg.register(
        "snapshot_bytes_sent",
        "State transfer: snapshot bytes sent to joiners",
        ConstCounter::new(r.stats.snapshot_bytes_sent),
    );
    reg.register(
        "snapshot_bytes_received",
        "State transfer: snapshot bytes loaded by this node",
        ConstCounter::new(r.stats.snapshot_bytes_received),
    );
    reg.register(
        "snapshot_bytes_hint",
        "State transfer: estimated size of the last snapshot taken for a joiner",
        ConstGauge::new(r.stats.snapshot_bytes_hint as i64),
    );
    reg.register(
        "beats_sent",
        "Heartbeats or acks the beat thread repeated while the event loop was busy (node::beat)",
        ConstCounter::new(r.io.beats.sent.load(std::sync::atomic::Ordering::Relaxed)),
    );
    reg.register("joins_accepted", "Joins this node accepted as primary", ConstCounter::new(r.stats.joins_accepted));
    reg.register("joins_in_sync", "Joiners that became in-sync backups of this node", ConstCounter::new(r.stats.joins_in_sync));
    reg.register(
        "output_gate_delay_seconds",
        "Time from a reply (KV) or an event's outputs (WebAssembly) being queued at the output gate to its release",
        &GATE_DELAY,
    );
    reg.register(
        "guest_snapshot_pause_seconds",
        "WebAssembly guest: how long it was paused for each live snapshot taken for a joiner",
        &GUEST_SNAPSHOT_PAUSE,
    );
    reg.register(
        "event_loop_lag_seconds",
        "How late the node's ticker fired: its event loop was busy or the process was not scheduled",
        &LOOP_LAG,
    );
    let mut page = String::with_capacity(4096);
    if prometheus_client::encoding::text::encode(&mut page, &reg).is_err() {
        let _ = writeln!(page, "# encoding failed");
    }
    page
}

/// Serves `GET /metrics` on `listener` until the process ends.
pub async fn serve<M: Machine>(rc: Rc<RefCell<Replica<M>>>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::task::spawn_local(scrape(rc.clone(), stream));
            }
            Err(e) => {
                log::warn!("accepting on --metrics-listen: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn scrape<M: Machine>(rc: Rc<RefCell<Replica<M>>>, mut stream: TcpStream) {
    let mut head = Vec::with_capacity(512);
    let read = async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            if head.len() > REQUEST_BYTES_MAX {
                return false;
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        true
    };
    if !matches!(tokio::time::timeout(REQUEST_TIMEOUT, read).await, Ok(true)) {
        return;
    }
    let path = head.split(|b| *b == b' ').nth(1).unwrap_or_default();
    let (status, ctype, body) = if head.starts_with(b"GET ") && (path == b"/metrics" || path == b"/") {
        let page = render(&rc.borrow());
        ("200 OK", "application/openmetrics-text; version=1.0.0; charset=utf-8", page)
    } else {
        ("404 Not Found", "text/plain; charset=utf-8", "try GET /metrics\n".to_string())
    };
    let resp =
        format!("HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    let _ = stream.write_all(resp.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_sum_in_seconds() {
        static H: DurationHistogram = DurationHistogram::new();
        let h = &H;
        h.observe_n(Duration::from_micros(15), 3);
        h.observe_n(Duration::from_millis(2), 1);
        h.observe_n(Duration::from_secs(5), 1);
        let mut reg = Registry::default();
        reg.register("d", "test", h);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).unwrap();
        assert!(out.contains("d_bucket{le=\"0.00001\"} 0"), "{out}");
        assert!(out.contains("d_bucket{le=\"0.00002\"} 3"), "{out}");
        assert!(out.contains("d_bucket{le=\"0.002\"} 4"), "{out}");
        assert!(out.contains("d_bucket{le=\"+Inf\"} 5"), "{out}");
        assert!(out.contains("d_count 5"), "{out}");
    }

    #[test]
    fn gate_clock_weighs_each_reply_once() {
        let before = GATE_DELAY.count();
        let mut g = GateClock::default();
        g.queued(3);
        g.queued(2);
        g.released(4);
        g.released(1);
        g.released(7); // more than queued: ignored, never panics
        assert_eq!(GATE_DELAY.count() - before, 5);
        let mut s = SeqClock::default();
        s.appended(10, 4);
        s.appended(12, 2);
        s.released(11);
        s.released(12);
        assert_eq!(GATE_DELAY.count() - before, 11);
    }
}
