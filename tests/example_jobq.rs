//! `examples/jobq.rs`, the replicated job queue over HTTP/1.1 built on the
//! library, survives kill -9: every job, claim and completion it
//! acknowledged is on the node that goes live; no job acknowledged as
//! claimed is handed out again; a third node joins by state transfer.

mod common;
use common::*;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// One response: status, JSON body (Null when empty), Location.
type Response = (u16, Value, Option<String>);

/// An HTTP/1.1 client on one keep-alive connection.
struct Http {
    rd: BufReader<TcpStream>,
    wr: TcpStream,
}

impl Http {
    fn connect(addr: &str) -> std::io::Result<Http> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Http { rd: BufReader::new(s.try_clone()?), wr: s })
    }

    fn send(&mut self, raw: &[u8]) -> std::io::Result<Response> {
        self.wr.write_all(raw)?;
        let mut line = String::new();
        self.rd.read_line(&mut line)?;
        let code: u16 = line.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or(std::io::ErrorKind::InvalidData)?;
        let (mut len, mut location) = (0, None);
        loop {
            let mut h = String::new();
            self.rd.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(": ").ok_or(std::io::ErrorKind::InvalidData)?;
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.parse().map_err(|_| std::io::ErrorKind::InvalidData)?,
                "location" => location = Some(v.to_string()),
                _ => {}
            }
        }
        let mut body = vec![0; len];
        self.rd.read_exact(&mut body)?;
        let json = if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).map_err(std::io::Error::other)? };
        Ok((code, json, location))
    }

    fn call(&mut self, method: &str, path: &str, body: &str) -> std::io::Result<Response> {
        let req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        self.send(req.as_bytes())
    }
}

/// Follows the primary through the arbiter; Err: the request's fate is unknown.
struct Client {
    url: String,
    conn: Option<Http>,
}

impl Client {
    fn call(&mut self, method: &str, path: &str, body: &str) -> Result<(u16, Value), String> {
        if self.conn.is_none() {
            let arb = understudy_arbiter::connect(&self.url, SECRET.as_bytes()).map_err(|e| e.to_string())?;
            let rec = arb.read(CLUSTER).map_err(|e| e.to_string())?.ok_or("no record")?;
            self.conn = Some(Http::connect(&rec.primary.client).map_err(|e| e.to_string())?);
        }
        match self.conn.as_mut().unwrap().call(method, path, body) {
            Ok((307 | 503, ..)) | Err(_) => {
                self.conn = None;
                std::thread::sleep(Duration::from_millis(10));
                Err("not the primary, or the connection failed".into())
            }
            Ok((code, body, _)) => Ok((code, body)),
        }
    }
}

#[derive(Default)]
struct Seen {
    /// Acknowledged enqueues: id → payload.
    enqueued: HashMap<u64, String>,
    /// Acknowledged claims: id → worker; and acknowledged completions.
    claimed: HashMap<u64, String>,
    done: HashSet<u64>,
    unknown: u64,
}

fn producer(url: String, stop: Arc<AtomicBool>, acked: Arc<AtomicU64>) -> Seen {
    let mut c = Client { url, conn: None };
    let mut seen = Seen::default();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let payload = format!("job {i} \"quoted\" ünïcode");
        match c.call("POST", "/jobs", &payload) {
            Ok((201, v)) => {
                let id = v["id"].as_u64().unwrap();
                assert!(seen.enqueued.insert(id, payload).is_none(), "id {id} given twice");
                acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(other) => panic!("enqueue: {other:?}"),
            Err(_) => seen.unknown += 1,
        }
    }
    seen
}

fn worker(url: String, name: String, stop: Arc<AtomicBool>) -> Seen {
    let mut c = Client { url, conn: None };
    let mut seen = Seen::default();
    while !stop.load(Ordering::Relaxed) {
        let id = match c.call("POST", &format!("/claim?worker={name}&lease_ms=600000"), "") {
            Ok((200, v)) => v["id"].as_u64().unwrap(),
            Ok((204, _)) => {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            Ok(other) => panic!("claim: {other:?}"),
            Err(_) => {
                seen.unknown += 1;
                continue;
            }
        };
        seen.claimed.insert(id, name.clone());
        match c.call("POST", &format!("/jobs/{id}/done?worker={name}"), "") {
            Ok((200, _)) => {
                seen.done.insert(id);
            }
            Ok(other) => panic!("done {id}: {other:?}"),
            Err(_) => seen.unknown += 1,
        }
    }
    seen
}

#[test]
fn jobq_survives_kill_9_of_the_primary_twice() {
    let _g = serial();
    let mut h = Harness::new();
    h.start_example_pair("jobq");

    let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let p = {
        let (url, stop, acked) = (h.arbiter_url(), stop.clone(), acked.clone());
        std::thread::spawn(move || producer(url, stop, acked))
    };
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let (url, stop) = (h.arbiter_url(), stop.clone());
            std::thread::spawn(move || worker(url, format!("w{w}"), stop))
        })
        .collect();
    let more = |n: u64| {
        let target = acked.load(Ordering::Relaxed) + n;
        wait_for(&format!("{n} more jobs"), Duration::from_secs(60), || (acked.load(Ordering::Relaxed) >= target).then_some(()));
    };
    h.two_failovers_under_load("jobq", more);
    stop.store(true, Ordering::Relaxed);
    let produced = p.join().expect("producer");
    let mut claimed = HashMap::new();
    let mut done = HashSet::new();
    for w in workers {
        let s = w.join().expect("worker");
        for (id, name) in s.claimed {
            assert!(claimed.insert(id, name).is_none(), "job {id} was handed out twice while its lease ran");
        }
        done.extend(s.done);
    }
    eprintln!(
        "{} jobs enqueued ({} of unknown fate), {} claimed, {} done",
        produced.enqueued.len(),
        produced.unknown,
        claimed.len(),
        done.len()
    );
    assert!(!done.is_empty(), "the workers completed nothing");

    let mut http = Http::connect(&h.node("c").client).unwrap();
    for (id, payload) in &produced.enqueued {
        let (code, v, _) = http.call("GET", &format!("/jobs/{id}"), "").unwrap();
        assert_eq!(code, 200, "acknowledged job {id} lost: {v}");
        let state = v["state"].as_str().unwrap();
        if done.contains(id) {
            assert_eq!(state, "done", "job {id}: acknowledged completion lost: {v}");
        } else if let Some(w) = claimed.get(id) {
            // Its completion may have been applied without an ack.
            assert!(state == "done" || v["worker"] == w.as_str(), "job {id}: acknowledged claim by {w} lost: {v}");
        }
        if state != "done" {
            assert_eq!(v["payload"].as_str(), Some(payload.as_str()), "job {id}");
        }
    }
    let (_, stats, _) = http.call("GET", "/stats", "").unwrap();
    assert!(stats["done"].as_u64().unwrap() >= done.len() as u64, "{stats}");
}

#[test]
fn jobq_speaks_http_and_redirects_from_the_backup() {
    let _g = serial();
    let mut h = Harness::new();
    h.start_example_pair("jobq");
    let mut a = Http::connect(&h.node("a").client).unwrap();
    // Keep-alive: several requests on one connection, pipelined.
    let (code, v, _) = a.call("POST", "/jobs", "first").unwrap();
    assert_eq!((code, v["id"].as_u64()), (201, Some(1)));
    let (code, v, _) = a.call("POST", "/claim?worker=w1&lease_ms=60000", "").unwrap();
    assert_eq!((code, v["id"].as_u64(), v["payload"].as_str(), v["attempt"].as_u64()), (200, Some(1), Some("first"), Some(1)));
    assert_eq!(a.call("POST", "/claim?worker=w2&lease_ms=60000", "").unwrap().0, 204, "nothing left to claim");
    assert_eq!(a.call("POST", "/jobs/1/done?worker=w2", "").unwrap().0, 409, "w2 holds no lease");
    assert_eq!(a.call("POST", "/jobs/1/done?worker=w1", "").unwrap().0, 200);
    assert_eq!(a.call("GET", "/jobs/1", "").unwrap().1["state"], "done");
    assert_eq!(a.call("GET", "/jobs/2", "").unwrap().0, 404);
    // A lease that runs out puts the job back, to the next claimer.
    a.call("POST", "/jobs", "second").unwrap();
    assert_eq!(a.call("POST", "/claim?worker=w1&lease_ms=1", "").unwrap().1["id"], 2);
    let (_, v, _) = wait_for("job 2's lease to run out", Duration::from_secs(30), || {
        let r = a.call("POST", "/claim?worker=w2&lease_ms=60000", "").unwrap();
        (r.0 == 200).then_some(r)
    });
    assert_eq!((v["id"].as_u64(), v["attempt"].as_u64()), (Some(2), Some(2)));
    // Bad input is answered and changes nothing.
    assert_eq!(a.call("POST", "/claim?worker=bad%20name&lease_ms=5", "").unwrap().0, 400);
    assert_eq!(a.call("DELETE", "/jobs/2", "").unwrap().0, 404);
    let (_, stats, _) = a.call("GET", "/stats", "").unwrap();
    assert_eq!((stats["queued"].as_u64(), stats["claimed"].as_u64(), stats["done"].as_u64()), (Some(0), Some(1), Some(1)));
    // The backup sends writes and reads to the primary, and says what it is.
    let mut b = Http::connect(&h.node("b").client).unwrap();
    let (code, _, location) = b.call("POST", "/jobs", "x").unwrap();
    assert_eq!((code, location), (307, Some(format!("http://{}", h.node("a").client))));
    let (code, v, _) = b.call("GET", "/health", "").unwrap();
    assert_eq!((code, v["role"].as_str()), (200, Some("backup")), "{v}");
    // A request the parser rejects is answered, then the connection closes.
    let (code, ..) = b.send(b"NOT HTTP\r\n\r\n").unwrap();
    assert_eq!(code, 400);
    assert!(b.call("GET", "/health", "").is_err(), "the connection is closed after a bad request");
}
