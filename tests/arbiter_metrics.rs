//! `understudy arbiter --metrics-listen ADDR`: the built-in arbiter's
//! Prometheus page counts what it was asked and answered, whom it refused,
//! and when it last heard of each node.

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{serial, wait_for, wait_listening, BIN, SECRET};
use understudy_arbiter::{ArbiterError, Claim, NodeAddrs, Update};
use understudy_node::listening::{ArbiterListening, Document};

/// An arbiter process, killed when dropped.
struct Arb {
    child: Child,
    log: PathBuf,
}

impl Drop for Arb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Arb {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn secret_file(d: &Path) -> PathBuf {
    let p = d.join("secret");
    std::fs::write(&p, SECRET).unwrap();
    p
}

/// Starts `understudy arbiter --listen 127.0.0.1:0 --dir DIR --secret-file
/// F` plus `extra`, with `env`; returns it with its listening.json.
fn start(d: &Path, name: &str, extra: &[&str], env: &[(&str, &str)]) -> (Arb, ArbiterListening) {
    let dir = d.join(name);
    let log = d.join(format!("{name}.log"));
    let child = Command::new(BIN)
        .args(["arbiter", "--listen", "127.0.0.1:0", "--secret-file"])
        .arg(secret_file(d))
        .arg("--dir")
        .arg(&dir)
        .args(extra)
        .envs(env.iter().copied())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut arb = Arb { child, log };
    let l: Option<ArbiterListening> = wait_listening(&mut arb.child, &dir);
    let l = l.unwrap_or_else(|| panic!("the arbiter exited at start: {}", arb.log()));
    (arb, l)
}

/// Runs `understudy arbiter ARGS` that must fail; returns (exit code, stderr).
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN).arg("arbiter").args(args).stdin(Stdio::null()).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `GET path` over HTTP/1.0: (status line, Content-Type, body).
fn get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head in {resp:?}"));
    let status = head.lines().next().unwrap_or_default().to_string();
    let ctype = head.lines().find_map(|l| l.strip_prefix("Content-Type: ")).unwrap_or_default().to_string();
    (status, ctype, body.to_string())
}

/// One sample of an OpenMetrics page: name, labels (sorted), value.
type Sample = (String, Vec<(String, String)>, f64);

fn parse(page: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in page.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("bad value in {line:?}: {e}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), Vec::new()),
            Some((name, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or_else(|| panic!("bad labels in {line:?}"));
                let mut labels: Vec<(String, String)> = inner
                    .split(',')
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("bad label in {line:?}"));
                        (k.to_string(), v.trim_matches('"').to_string())
                    })
                    .collect();
                labels.sort();
                (name.to_string(), labels)
            }
        };
        out.push((name, labels, value));
    }
    out
}

/// A scraped page.
struct Page(Vec<Sample>, String);

impl Page {
    fn scrape(addr: SocketAddr) -> Page {
        let (status, ctype, body) = get(addr, "/metrics");
        assert_eq!(status, "HTTP/1.0 200 OK", "{body}");
        assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
        assert!(body.ends_with("# EOF\n"), "an OpenMetrics page ends with # EOF: {body}");
        Page(parse(&body), body)
    }

    /// The value of `name{labels}`; None if there is no such sample.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut want: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        want.sort();
        self.0.iter().find(|(n, l, _)| n == name && *l == want).map(|(_, _, v)| *v)
    }

    /// Like [`Page::get`], for a sample that must be there.
    fn at(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("no sample {name}{labels:?} in\n{}", self.1))
    }

    /// The `cluster`, `node` pairs with a last contact.
    fn contacts(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .0
            .iter()
            .filter(|(n, _, _)| n == "understudy_arbiter_node_last_contact_seconds")
            .map(|(_, l, _)| {
                let of = |k: &str| l.iter().find(|(lk, _)| lk == k).map(|(_, v)| v.clone()).unwrap_or_default();
                (of("cluster"), of("node"))
            })
            .collect();
        out.sort();
        out
    }
}

fn addrs(node: &str) -> NodeAddrs {
    NodeAddrs { node: node.into(), client: "127.0.0.1:1".into(), repl: "127.0.0.1:2".into() }
}

fn unix_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

const REQUESTS: &str = "understudy_arbiter_requests_total";
const CLAIMS: &str = "understudy_arbiter_claims_total";
const UPDATES: &str = "understudy_arbiter_updates_total";
const REFUSALS: &str = "understudy_arbiter_refusals_total";
const CONTACT: &str = "understudy_arbiter_node_last_contact_seconds";

#[test]
fn the_arbiter_counts_requests_answers_refusals_and_contacts() {
    let _s = serial();
    let d = tempfile::tempdir().unwrap();
    let (arb, l) = start(d.path(), "arb", &["--metrics-listen", "127.0.0.1:0"], &[]);
    let m = l.metrics.expect("listening.json names the metrics address");
    assert!(m.port() != 0 && m != l.arbiter, "{m}");
    assert!(arb.log().contains(&format!("metrics on http://{m}/metrics")), "{}", arb.log());

    let p = Page::scrape(m);
    assert_eq!(p.at("understudy_arbiter_clusters", &[]), 0.0);
    for op in ["read", "claim", "add_member", "publish"] {
        assert_eq!(p.at(REQUESTS, &[("op", op)]), 0.0, "{op}");
    }
    assert!(p.contacts().is_empty(), "{}", p.1);
    assert_eq!(p.get("understudy_arbiter_epoch", &[("cluster", "m")]), None);

    let before = unix_secs();
    let url = format!("understudy://{}", l.arbiter);
    let a = understudy_arbiter::connect(&url, SECRET.as_bytes()).unwrap();
    assert!(a.claim("m", 1, &addrs("a")).unwrap().is_granted());
    assert!(a.add_member("m", 1, "a", "b").unwrap().is_applied());
    // Refused claims: epoch 1 is taken; x never was a member of epoch 1.
    assert!(matches!(a.claim("m", 1, &addrs("x")).unwrap(), Claim::Superseded(_)));
    assert!(matches!(a.claim("m", 2, &addrs("z")).unwrap(), Claim::NotMember(_)));
    assert!(a.publish("m", 1, "a", None, true).unwrap().is_applied());
    // A deposed primary's update, and a second backup in one epoch.
    assert!(matches!(a.publish("m", 1, "x", None, false).unwrap(), Update::Superseded(_)));
    assert!(matches!(a.add_member("m", 1, "a", "c"), Err(ArbiterError::Rejected { .. })));
    assert_eq!(a.read("m").unwrap().unwrap().epoch, 1);
    // A client with another secret, and something that is not an arbiter
    // client at all (a browser pointed at --listen).
    let wrong = understudy_arbiter::connect(&url, b"not-the-secret").unwrap();
    assert!(matches!(wrong.read("m"), Err(ArbiterError::Auth { .. })));
    let mut browser = TcpStream::connect(l.arbiter).unwrap();
    browser.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    browser.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let _ = browser.read_to_end(&mut Vec::new()); // the arbiter hangs up
    let after = unix_secs();

    // The refused peers' connection threads count as they end: wait for
    // them, then every figure is exact.
    let p = wait_for("the refused connections to be counted and closed", Duration::from_secs(30), || {
        let p = Page::scrape(m);
        let done = p.at(REFUSALS, &[("reason", "auth")]) >= 1.0
            && p.at(REFUSALS, &[("reason", "protocol")]) >= 1.0
            && p.at("understudy_arbiter_connections_open", &[]) == 1.0;
        done.then_some(p)
    });
    let want = [
        (REQUESTS, vec![("op", "read")], 1.0),
        (REQUESTS, vec![("op", "claim")], 3.0),
        (REQUESTS, vec![("op", "add_member")], 2.0),
        (REQUESTS, vec![("op", "publish")], 2.0),
        (CLAIMS, vec![("outcome", "granted")], 1.0),
        (CLAIMS, vec![("outcome", "superseded")], 1.0),
        (CLAIMS, vec![("outcome", "not_member")], 1.0),
        (CLAIMS, vec![("outcome", "error")], 0.0),
        (UPDATES, vec![("op", "add_member"), ("outcome", "applied")], 1.0),
        (UPDATES, vec![("op", "add_member"), ("outcome", "superseded")], 0.0),
        (UPDATES, vec![("op", "add_member"), ("outcome", "rejected")], 1.0),
        (UPDATES, vec![("op", "publish"), ("outcome", "applied")], 1.0),
        (UPDATES, vec![("op", "publish"), ("outcome", "superseded")], 1.0),
        (UPDATES, vec![("op", "forget"), ("outcome", "applied")], 0.0),
        (REFUSALS, vec![("reason", "auth")], 1.0),
        (REFUSALS, vec![("reason", "protocol")], 1.0),
        (REFUSALS, vec![("reason", "busy")], 0.0),
        // The good client, the wrong secret, the browser.
        ("understudy_arbiter_connections_total", vec![], 3.0),
        ("understudy_arbiter_connections_open", vec![], 1.0),
        ("understudy_arbiter_clusters", vec![], 1.0),
        ("understudy_arbiter_epoch", vec![("cluster", "m")], 1.0),
    ];
    for (name, labels, v) in &want {
        assert_eq!(p.at(name, labels), *v, "{name}{labels:?} in\n{}", p.1);
    }
    // Every node a request named, and no other; each stamped during the test
    // (the page has milliseconds; the bounds are whole seconds around it).
    let named = ["a", "b", "c", "x", "z"].map(|n| ("m".to_string(), n.to_string()));
    assert_eq!(p.contacts(), named, "{}", p.1);
    for (_, n) in &named {
        let at = p.at(CONTACT, &[("cluster", "m"), ("node", n)]);
        assert!(at >= before.floor() && at <= after.ceil(), "node {n}: last contact {at} not in [{before}, {after}]");
    }

    // A forget is an operator's request about a dead primary: counted as an
    // add_member on the wire and a forget among updates, but no contact with
    // node a. The next claim (by anyone) moves the epoch gauge.
    let a_seen = p.at(CONTACT, &[("cluster", "m"), ("node", "a")]);
    std::thread::sleep(Duration::from_millis(20)); // a contact now would differ by ≥ 1 ms
    assert!(a.forget("m", 1, "a").unwrap().is_applied());
    assert!(a.claim("m", 2, &addrs("z")).unwrap().is_granted());
    drop(a);
    let p = wait_for("the client's connection to close", Duration::from_secs(30), || {
        let p = Page::scrape(m);
        (p.at("understudy_arbiter_connections_open", &[]) == 0.0).then_some(p)
    });
    assert_eq!(p.at(UPDATES, &[("op", "forget"), ("outcome", "applied")]), 1.0);
    assert_eq!(p.at(REQUESTS, &[("op", "add_member")]), 3.0);
    assert_eq!(p.at(CLAIMS, &[("outcome", "granted")]), 2.0);
    assert_eq!(p.at("understudy_arbiter_epoch", &[("cluster", "m")]), 2.0);
    assert_eq!(p.at(CONTACT, &[("cluster", "m"), ("node", "a")]), a_seen, "a forget is no contact with the primary");
    assert!(p.at(CONTACT, &[("cluster", "m"), ("node", "z")]) > p.at(CONTACT, &[("cluster", "m"), ("node", "x")]));

    // Only /metrics (and /) answer.
    let (status, _, _) = get(m, "/nope");
    assert_eq!(status, "HTTP/1.0 404 Not Found");
    let (status, _, body) = get(m, "/");
    assert_eq!(status, "HTTP/1.0 200 OK");
    assert!(body.contains("understudy_arbiter_clusters 1"), "{body}");
}

#[test]
fn metrics_listen_comes_from_the_environment_or_a_file_and_its_errors_name_it() {
    let _s = serial();
    let d = tempfile::tempdir().unwrap();

    // Without the flag there is no metrics address.
    let (plain, l) = start(d.path(), "plain", &[], &[]);
    assert_eq!(l.metrics, None);
    drop(plain);

    let (env, l) = start(d.path(), "env", &[], &[("UNDERSTUDY_METRICS_LISTEN", "127.0.0.1:0")]);
    let m = l.metrics.expect("UNDERSTUDY_METRICS_LISTEN set the flag");
    assert_eq!(Page::scrape(m).at("understudy_arbiter_clusters", &[]), 0.0);
    drop(env);

    let cfg = d.path().join("arbiter.toml");
    std::fs::write(&cfg, "metrics-listen = \"127.0.0.1:0\"\n").unwrap();
    let (mut file, l) = start(d.path(), "file", &["--config", cfg.to_str().unwrap()], &[]);
    let m = l.metrics.expect("the config file set the flag");
    assert_eq!(Page::scrape(m).at("understudy_arbiter_clusters", &[]), 0.0);

    // A second arbiter on the same --dir is refused before it announces
    // anything: the running one's listening.json stays.
    let dir = d.path().join("file");
    let (code, err) = refused(&["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--dir", dir.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("already serving --dir"), "{err}");
    assert_eq!(ArbiterListening::read(&dir).unwrap().map(|l| l.pid), Some(file.child.id()));

    // A port in use, and a value that is no address.
    let (code, err) = refused(&["--listen", "127.0.0.1:0", "--metrics-listen", &m.to_string(), "--dir", "/nonexistent/x"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("cannot listen on --metrics-listen {m}")), "{err}");
    let (code, err) = refused(&["--listen", "127.0.0.1:0", "--metrics-listen", "nowhere", "--dir", "/nonexistent/x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--metrics-listen"), "{err}");

    // SIGTERM stops the metrics thread too: the arbiter exits 0.
    assert_eq!(unsafe { libc::kill(file.child.id() as i32, libc::SIGTERM) }, 0);
    let status = wait_for("the arbiter to exit", Duration::from_secs(30), || file.child.try_wait().unwrap());
    assert_eq!(status.code(), Some(0), "{}", file.log());
    assert!(TcpStream::connect(m).is_err(), "the metrics port is closed");
}
