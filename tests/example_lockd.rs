//! `examples/lockd.rs`, the replicated lock service built on the library,
//! survives kill -9: every lease it granted (and every release it
//! acknowledged) is on the node that goes live, fencing tokens keep
//! growing across failovers, and a third node joins by state transfer.

mod common;
use common::*;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A line-protocol client that follows the primary through the arbiter.
struct Client {
    url: String,
    conn: Option<(BufReader<TcpStream>, TcpStream)>,
}

impl Client {
    fn new(url: &str) -> Client {
        Client { url: url.into(), conn: None }
    }

    /// One request; Err when the connection failed or the node is not the
    /// primary (the request may or may not have been applied).
    fn call(&mut self, line: &str) -> Result<String, String> {
        if self.conn.is_none() {
            let arb = understudy_arbiter::connect(&self.url, SECRET.as_bytes()).map_err(|e| e.to_string())?;
            let rec = arb.read(CLUSTER).map_err(|e| e.to_string())?.ok_or("no record")?;
            let s = TcpStream::connect(&rec.primary.client).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            self.conn = Some((BufReader::new(s.try_clone().unwrap()), s));
        }
        let (rd, wr) = self.conn.as_mut().unwrap();
        let mut reply = String::new();
        let r = wr.write_all(format!("{line}\n").as_bytes()).and_then(|_| rd.read_line(&mut reply));
        match r {
            Ok(n) if n > 0 && !reply.starts_with("MOVED") => Ok(reply.trim_end().to_string()),
            other => {
                self.conn = None;
                std::thread::sleep(Duration::from_millis(10));
                Err(format!("{other:?} {reply:?}"))
            }
        }
    }
}

/// What the load learned: leases it holds (lock → (owner, fence)), locks
/// it released with an acknowledgement, locks whose fate it does not know.
#[derive(Default)]
struct Seen {
    held: Vec<(String, String, u64)>,
    released: Vec<String>,
    unknown: usize,
    grants: u64,
}

fn load(url: String, stop: Arc<AtomicBool>, acked: Arc<AtomicU64>) -> Seen {
    let mut c = Client::new(&url);
    let mut seen = Seen::default();
    let mut max_fence = 0;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (lock, owner) = (format!("lock{i}"), format!("w{}", i % 7));
        i += 1;
        match c.call(&format!("ACQUIRE {lock} {owner} 600000")) {
            Ok(r) => {
                let fence: u64 = r.strip_prefix("OK ").and_then(|f| f.parse().ok()).unwrap_or_else(|| panic!("{r}"));
                assert!(fence > max_fence, "fence {fence} after {max_fence}: tokens must grow, also across failovers");
                max_fence = fence;
                seen.grants += 1;
                acked.fetch_add(1, Ordering::Relaxed);
                seen.held.push((lock, owner, fence));
            }
            Err(_) => {
                seen.unknown += 1;
                continue;
            }
        }
        // Release every third lease just taken.
        if i.is_multiple_of(3) {
            let (lock, owner, _) = seen.held.pop().unwrap();
            match c.call(&format!("RELEASE {lock} {owner}")) {
                Ok(r) => {
                    assert_eq!(r, "OK", "releasing {lock}");
                    seen.released.push(lock);
                }
                Err(_) => seen.unknown += 1,
            }
        }
    }
    seen
}

fn check(addr: &str, seen: &Seen) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rd = BufReader::new(s.try_clone().unwrap());
    let mut wr = s;
    let mut ask = |line: String| {
        wr.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut r = String::new();
        rd.read_line(&mut r).unwrap();
        r.trim_end().to_string()
    };
    for (lock, owner, fence) in &seen.held {
        let r = ask(format!("HOLDER {lock}"));
        let want = format!("HELD {owner} {fence} ");
        assert!(r.starts_with(&want), "{lock}: acknowledged grant {want:?} lost, the survivor says {r:?}");
    }
    for lock in &seen.released {
        assert_eq!(ask(format!("HOLDER {lock}")), "FREE", "{lock}: acknowledged release lost");
    }
}

#[test]
fn lockd_survives_kill_9_of_the_primary_twice() {
    let _g = serial();
    let mut h = Harness::new();
    h.start_example_pair("lockd");

    let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let t = {
        let (url, stop, acked) = (h.arbiter_url(), stop.clone(), acked.clone());
        std::thread::spawn(move || load(url, stop, acked))
    };
    let more = |n: u64| {
        let target = acked.load(Ordering::Relaxed) + n;
        wait_for(&format!("{n} more grants"), Duration::from_secs(60), || {
            (acked.load(Ordering::Relaxed) >= target).then_some(())
        });
    };
    h.two_failovers_under_load("lockd", more);
    stop.store(true, Ordering::Relaxed);
    let seen = t.join().expect("load thread");
    eprintln!(
        "{} grants, {} held, {} released with an ack, {} requests of unknown fate",
        seen.grants,
        seen.held.len(),
        seen.released.len(),
        seen.unknown
    );
    assert!(seen.grants >= 1000);
    check(&h.node("c").client.clone(), &seen);
}

#[test]
fn leases_expire_by_replicated_time_and_a_new_holder_gets_a_higher_fence() {
    let _g = serial();
    let mut h = Harness::new();
    h.start_example("a", "lockd", &[]);
    h.wait_primary("a");
    let mut c = Client::new(&h.arbiter_url());
    let first = c.call("ACQUIRE door alice 300").unwrap();
    assert_eq!(c.call("ACQUIRE door bob 1000").unwrap().split(' ').next(), Some("HELD"));
    assert_eq!(c.call("ACQUIRE door alice 300").unwrap(), first, "the holder renews with the same fence");
    assert_eq!(c.call("RELEASE door bob").unwrap(), "NOTHELD");
    wait_for("alice's lease to expire", Duration::from_secs(30), || (c.call("HOLDER door").unwrap() == "FREE").then_some(()));
    let second = c.call("ACQUIRE door bob 60000").unwrap();
    let fence = |r: &str| r.strip_prefix("OK ").unwrap().parse::<u64>().unwrap();
    assert!(fence(&second) > fence(&first), "{second} after {first}");
    assert!(c.call("HOLDER door").unwrap().starts_with(&format!("HELD bob {} ", fence(&second))));
    // Bad input is answered, never applied, and the connection stays.
    assert!(c.call("ACQUIRE door carol soon").unwrap().starts_with("ERR usage: ACQUIRE"));
    assert!(c.call("FROB").unwrap().starts_with("ERR unknown command"));
    assert_eq!(c.call("PING").unwrap(), "PONG");
    // A backup redirects to the primary.
    h.start_example("b", "lockd", &[]);
    h.wait_in_sync("b");
    let mut b = TcpStream::connect(&h.node("b").client).unwrap();
    b.write_all(b"HOLDER door\n").unwrap();
    let mut r = String::new();
    BufReader::new(b).read_line(&mut r).unwrap();
    assert_eq!(r.trim_end(), format!("MOVED {}", h.node("a").client));
}
