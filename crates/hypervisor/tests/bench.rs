//! Throughput of the RESP guest under `redis-benchmark`, recorded and
//! unprotected (every output released at once), and log bytes per request.
//! Ignored by default (needs `redis-benchmark`, takes seconds); run with
//! `cargo test -p understudy-hypervisor --test bench -- --ignored --nocapture`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{config, Client};
use understudy_hypervisor::{run, Console, Ending, EventSink, LiveWorld, Mode, RunOptions};

#[derive(Clone, Default)]
struct CountingSink {
    events: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

impl EventSink for CountingSink {
    fn append(&mut self, event: &[u8]) -> u64 {
        // What a log entry costs on the wire: kind, length varint, body.
        self.bytes.fetch_add(event.len() as u64 + 2, Ordering::Relaxed);
        self.events.fetch_add(1, Ordering::Relaxed) + 1
    }
}

fn benchmark(port: u16, requests: u32) -> String {
    let out = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-t", "set,get", "-n", &requests.to_string(), "-c", "50", "-q"])
        .output()
        .expect("redis-benchmark (Debian package redis-tools) runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("requests per second"))
        .map(|l| l.rsplit('\r').next().unwrap_or(l).trim().to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
#[ignore = "a benchmark kept for profiling by hand (README, Testing); understudy-bench measures the same"]
fn kvserver_under_redis_benchmark() {
    const REQUESTS: u32 = 100_000;
    let cfg = config("kvserver");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let sink = CountingSink::default();
    let world = LiveWorld::new(sink.clone()).with_listener(l).with_console(Console::Discard, Console::Discard);
    let guest = std::thread::spawn(move || run(&cfg, Mode::Record(world), RunOptions::default()).unwrap());
    let wasm = benchmark(addr.port(), REQUESTS);
    assert_eq!(Client::connect(addr).call(&["SHUTDOWN"]), "+OK");
    let end = guest.join().unwrap();
    assert_eq!(end.ending, Ending::Exited(0));
    let (events, bytes) = (sink.events.load(Ordering::Relaxed), sink.bytes.load(Ordering::Relaxed));
    println!("wasm, recorded, unprotected: {wasm}");
    println!("  {events} events, {bytes} log bytes, {:.1} log bytes per request", bytes as f64 / f64::from(2 * REQUESTS));

    let native = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../guests/build/kvserver-native");
    // Port 0: the server prints the port it got on its first stderr line.
    let mut child = Command::new(native).env("LISTEN_ADDR", "127.0.0.1:0").stderr(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut line).unwrap();
    let addr: std::net::SocketAddr =
        line.trim().strip_prefix("kvserver: listening on ").expect("the bound address").parse().unwrap();
    let port = addr.port();
    let native = benchmark(port, REQUESTS);
    assert_eq!(Client::connect(addr).call(&["SHUTDOWN"]), "+OK");
    assert!(child.wait().unwrap().success());
    println!("native (gcc): {native}");
}
