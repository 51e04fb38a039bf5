//! Rough single-thread throughput and memory of the store, for comparing
//! with Redis (run with `--release`): N SETs of 16-byte keys and 100-byte
//! values through Session + apply, then N GETs through Session + read,
//! then N/10 HSETs into one hash and N/10 RPUSHes into one list.

use std::time::Instant;

use understudy_core::{Ctx, StateMachine};
use understudy_kv::{Dispatch, Kv, Session};

struct Now;
impl Ctx for Now {
    fn now_us(&mut self) -> u64 {
        1_700_000_000_000_000
    }
    fn random_u64(&mut self) -> u64 {
        0
    }
}

fn rss_mb() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0.0);
    pages * 4096.0 / 1e6
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let base = rss_mb();
    let mut kv = Kv::new();
    let mut session = Session::new(1);
    let (mut op, mut out) = (Vec::new(), Vec::new());
    let value = vec![b'x'; 100];
    let start = Instant::now();
    for i in 0..n {
        let key = format!("key:{i:012}");
        let argv: [&[u8]; 3] = [b"SET", key.as_bytes(), &value];
        out.clear();
        assert_eq!(session.dispatch(&argv, &mut op, &mut out), Dispatch::Write);
        kv.apply(&mut Now, &op, &mut out);
    }
    let set_s = start.elapsed().as_secs_f64();
    let after = rss_mb();
    let start = Instant::now();
    let mut bytes = 0;
    for i in 0..n {
        let key = format!("key:{i:012}");
        let argv: [&[u8]; 2] = [b"GET", key.as_bytes()];
        out.clear();
        assert_eq!(session.dispatch(&argv, &mut op, &mut out), Dispatch::Read);
        kv.read_argv(1_700_000_000_000, &argv, &mut out);
        bytes += out.len();
    }
    let get_s = start.elapsed().as_secs_f64();
    println!(
        "{n} keys: SET {:.0} ops/s, GET {:.0} ops/s ({bytes} reply bytes); RSS {base:.1} MB -> {after:.1} MB ({:.0} B/key)",
        n as f64 / set_s,
        n as f64 / get_s,
        (after - base) * 1e6 / n as f64
    );
    // Aggregates: fields into one hash and elements into one list, each
    // write taking the value out of the store and putting it back.
    let m = n / 10;
    let start = Instant::now();
    for i in 0..m {
        let field = format!("f{i}");
        for argv in [[&b"HSET"[..], b"big:hash", field.as_bytes(), &value], [b"RPUSH", b"big:list", &value, field.as_bytes()]] {
            out.clear();
            assert_eq!(session.dispatch(&argv, &mut op, &mut out), Dispatch::Write);
            kv.apply(&mut Now, &op, &mut out);
        }
    }
    println!("{m} HSET + {m} RPUSH into one hash and one list: {:.0} ops/s", (2 * m) as f64 / start.elapsed().as_secs_f64());
    let start = Instant::now();
    let d = kv.digest();
    println!("digest {d:#x} in {:.0} ms", start.elapsed().as_secs_f64() * 1e3);
    let start = Instant::now();
    let mut w = kv.snapshot();
    let mut chunk = Vec::new();
    let mut total = 0;
    while w.next_chunk(&mut chunk, 1 << 20) {
        total += chunk.len();
        chunk.clear();
    }
    println!("snapshot {total} bytes in {:.0} ms", start.elapsed().as_secs_f64() * 1e3);
}
