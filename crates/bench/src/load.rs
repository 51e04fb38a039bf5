//! Load: `redis-benchmark` runs, a pipelined filler, a stall probe, and
//! small RESP calls.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use understudy_client::{Conn, Reply};

/// One `redis-benchmark` result.
#[derive(Debug, Clone, Copy)]
pub struct Rb {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// `redis-benchmark -t TEST -c CLIENTS -P PIPELINE -n REQUESTS --csv`, and
/// `-r KEYSPACE` unless it is 0.
pub fn redis_benchmark(addr: &str, test: &str, clients: u32, pipeline: u32, requests: u64, keyspace: u64) -> Result<Rb> {
    let (host, port) = addr.rsplit_once(':').context("host:port")?;
    let mut c = Command::new("redis-benchmark");
    c.args(["-h", host, "-p", port, "--csv"]).args([
        "-c",
        &clients.to_string(),
        "-P",
        &pipeline.to_string(),
        "-n",
        &requests.to_string(),
    ]);
    if keyspace > 0 {
        c.args(["-r", &keyspace.to_string()]);
    }
    // A command line of its own goes last; its CSV row is named by it.
    if test.contains(' ') {
        c.args(test.split(' '));
    } else {
        c.args(["-t", test]);
    }
    let out = c.output().context("running redis-benchmark (Debian package redis-tools)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_csv(&text, test).with_context(|| {
        format!("redis-benchmark against {addr}: {}{}", text.trim(), String::from_utf8_lossy(&out.stderr).trim())
    })
}

/// Parses redis-benchmark's `--csv` output (Redis 7:
/// "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms").
pub fn parse_csv(text: &str, test: &str) -> Result<Rb> {
    let mut lines = text.lines().map(|l| l.split(',').map(|f| f.trim_matches('"')).collect::<Vec<_>>());
    let header = lines.next().context("no output")?;
    let col = |name: &str| header.iter().position(|h| *h == name).with_context(|| format!("no column {name}"));
    let (rps, p50, p99) = (col("rps")?, col("p50_latency_ms")?, col("p99_latency_ms")?);
    for f in lines {
        if f.first().is_some_and(|t| t.eq_ignore_ascii_case(test)) {
            let num = |i: usize| -> Result<f64> { f.get(i).context("short row")?.parse().context("not a number") };
            return Ok(Rb { rps: num(rps)?, p50_ms: num(p50)?, p99_ms: num(p99)? });
        }
    }
    bail!("no {test} row")
}

/// The bytes of `SET key:__rand_int__ xxx` as redis-benchmark sends it
/// (its default key and 3-byte value).
pub fn redis_benchmark_set_bytes() -> usize {
    let mut v = Vec::new();
    understudy_client::resp::encode(&mut v, &["SET", "key:__rand_int__", "xxx"]);
    v.len()
}

/// One command, its reply as text.
pub fn call(addr: &str, args: &[&str]) -> Result<String> {
    let mut c = Conn::connect(addr, Duration::from_secs(10))?;
    match c.call(args)? {
        Reply::Error(e) => bail!("{args:?}: {e}"),
        r => Ok(r.bytes().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_else(|| format!("{r:?}"))),
    }
}

/// Writes `count` keys `prefix<i>` with `value_bytes`-byte values, `depth`
/// commands in flight. Returns the time it took.
pub fn fill(addr: &str, prefix: &str, count: u64, value_bytes: usize, depth: u64) -> Result<Duration> {
    let t0 = Instant::now();
    let stream = TcpStream::connect(addr).with_context(|| format!("filling {addr}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut wr = stream.try_clone()?;
    let mut rd = BufReader::with_capacity(1 << 16, stream);
    let value = vec![b'v'; value_bytes];
    let mut buf = Vec::new();
    let mut i = 0;
    while i < count {
        let n = depth.min(count - i);
        buf.clear();
        for k in i..i + n {
            let key = format!("{prefix}{k:09}");
            understudy_client::resp::encode(&mut buf, &[b"SET".as_slice(), key.as_bytes(), &value]);
        }
        wr.write_all(&buf)?;
        for _ in 0..n {
            match understudy_client::resp::read_reply(&mut rd)? {
                Reply::Simple(_) => {}
                other => bail!("fill: unexpected reply {other:?}"),
            }
        }
        i += n;
    }
    Ok(t0.elapsed())
}

/// A client that does PING and SET in a loop against one node and keeps
/// the longest gap between two replies: the stall a client sees.
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<(Duration, u64)>>,
}

impl Probe {
    pub fn start(addr: &str) -> Result<Probe> {
        let mut c = Conn::connect(addr, Duration::from_secs(30))?;
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || -> Result<(Duration, u64)> {
            let (mut max_gap, mut ops) = (Duration::ZERO, 0u64);
            let mut last = Instant::now();
            while !s2.load(Ordering::Relaxed) {
                let r = if ops % 2 == 0 { c.call(&["PING"])? } else { c.call(&["SET", "probe", "x"])? };
                if r.is_error() {
                    bail!("probe: {r:?}");
                }
                let now = Instant::now();
                max_gap = max_gap.max(now - last);
                last = now;
                ops += 1;
            }
            Ok((max_gap, ops))
        });
        Ok(Probe { stop, thread })
    }

    /// Stops; returns the longest gap and the operations done.
    pub fn stop(self) -> Result<(Duration, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().map_err(|_| anyhow::anyhow!("probe thread panicked"))?
    }
}

/// Samples a process's resident memory every few milliseconds; keeps the peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !s2.load(Ordering::Relaxed) {
                peak = peak.max(crate::procfs::rss_bytes(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        RssSampler { stop, thread }
    }

    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}
