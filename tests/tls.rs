//! TLS on the client port (issue 15 §2): with `--tls-cert` and `--tls-key`
//! a node's client port speaks TLS only; with `--tls-ca` every client must
//! present a certificate that CA signed. Real clients against the pair:
//! redis-cli and redis-benchmark with `--tls`, redis-py with `ssl=True`
//! directly and through `understudy sentinel --tls-ca` across a kill -9.
//! A plain client is told and closed while the node keeps serving; a
//! client that never finishes its handshake is dropped after 10 s with a
//! log line naming it; bad flags name the flag; no key reaches a log.
//! Certificates come from openssl(1) (scripts/install-deps installs it).

mod common;
use common::*;

use std::io::{Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A harness whose key-value nodes serve TLS with `certs` (and ask for
/// client certificates with `verify_clients`); the harness finds the
/// primary with redis-cli --tls.
fn tls_harness(certs_in: &str, verify_clients: bool) -> (Harness, Certs) {
    let mut h = Harness::new();
    let certs = Certs::make(&h.path(certs_in));
    h.node_args = vec!["--tls-cert".into(), certs.path("server.pem"), "--tls-key".into(), certs.path("server.key")];
    if verify_clients {
        h.node_args.extend(["--tls-ca".into(), certs.path("ca.pem")]);
    }
    let flags = certs.cli_flags(verify_clients.then_some("client"));
    h.kv_probe = Some(Box::new(move |addr| redis_cli_with(addr, &flags, &["INFO", "replication"]).contains("role:master")));
    (h, certs)
}

fn assert_no_key_in_logs(h: &Harness, certs: &Certs, nodes: &[&str]) {
    let keys = certs.key_lines();
    assert!(!keys.is_empty());
    for n in nodes {
        let log = h.log_of(n);
        for line in &keys {
            assert!(!log.contains(line.as_str()), "key material in the log of {n}");
        }
    }
}

#[test]
fn redis_cli_and_redis_benchmark_speak_tls_to_the_pair_and_plain_clients_are_refused() {
    let _s = serial();
    let (mut h, certs) = tls_harness("tls", false);
    h.start_pair();
    let (a, b) = (h.node("a").client.clone(), h.node("b").client.clone());
    let tls = certs.cli_flags(None);
    assert!(h.log_of("a").contains("TLS with"), "the start line says the client port speaks TLS:\n{}", h.log_of("a"));

    // A client that starts a handshake and never finishes it: the node
    // drops it after 10 s, naming it, and serves everyone else meanwhile.
    let mut stalled = std::net::TcpStream::connect(&a).unwrap();
    stalled.write_all(&[0x16]).unwrap(); // the first byte of a TLS record
    let stalled_at = Instant::now();
    let stalled_peer = stalled.local_addr().unwrap().to_string();
    // And one that connects and sends nothing, as `understudy status` does.
    let _silent = std::net::TcpStream::connect(&a).unwrap();

    assert_eq!(redis_cli_with(&a, &tls, &["PING"]), "PONG");
    assert_eq!(redis_cli_with(&a, &tls, &["SET", "greeting", "hello"]), "OK");
    assert_eq!(redis_cli_with(&a, &tls, &["GET", "greeting"]), "hello");
    let info = redis_cli_with(&a, &tls, &["INFO", "replication"]);
    assert!(info.contains("role:master") && info.contains("protected:1"), "{info}");
    // The backup speaks TLS too and names the primary.
    let readonly = redis_cli_with(&b, &tls, &["GET", "greeting"]);
    assert!(readonly.contains("READONLY") && readonly.contains(&a), "{readonly}");
    // By name: the certificate names localhost as well.
    let by_name = format!("localhost:{}", a.rsplit_once(':').unwrap().1);
    assert_eq!(redis_cli_with(&by_name, &tls, &["GET", "greeting"]), "hello");

    // Plain RESP on the TLS port: an error saying so, nothing executed.
    let plain = redis_cli_with(&a, &[], &["SET", "plain", "x"]);
    assert!(plain.contains("TLS only") && !plain.contains("OK"), "a plain client: {plain}");
    assert!(redis_cli_with(&a, &[], &["PING"]).contains("TLS only"));
    // A server certificate from a CA the client does not trust.
    let untrusted = redis_cli_with(&a, &["--tls".into(), "--cacert".into(), certs.path("other-ca.pem")], &["PING"]);
    assert!(!untrusted.contains("PONG"), "a server the client cannot verify: {untrusted}");
    assert_eq!(redis_cli_with(&a, &tls, &["GET", "plain"]), "");
    assert!(h.log_of("a").contains("spoke plain text to the TLS client port"), "{}", h.log_of("a"));

    // Pipelined load over TLS: replies larger than one TLS record, many
    // clients at once.
    let (host, port) = a.rsplit_once(':').unwrap();
    let out = Command::new("timeout")
        .args(["120", "redis-benchmark", "-h", host, "-p", port])
        .args(&tls)
        .args(["-t", "set,get,lrange_100", "-n", "20000", "-c", "20", "-P", "16", "-q"])
        .output()
        .expect("redis-benchmark is installed (Debian package redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "redis-benchmark --tls failed: {text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("SET:") && text.contains("GET:") && text.contains("LRANGE_100"), "{text}");

    // `understudy status` probes the primary with a TCP connection: it
    // still says the cluster is protected and the primary answers.
    let status = Command::new(BIN)
        .args(["status", "--arbiter", &h.arbiter_url(), "--cluster", CLUSTER, "--json", "--secret-file"])
        .arg(h.path("secret"))
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success() && json.contains("\"primary_answers\":true"), "status: {json}");

    // The stalled handshake is dropped, with a log line naming its peer.
    stalled.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 64];
    let closed = matches!(stalled.read(&mut buf), Ok(0) | Err(_));
    let waited = stalled_at.elapsed();
    assert!(closed, "a stalled handshake is closed");
    assert!(waited >= Duration::from_secs(9) && waited < Duration::from_secs(25), "closed after {waited:?}");
    wait_for("the log line of the stalled handshake", Duration::from_secs(10), || {
        let log = h.log_of("a");
        log.lines().any(|l| l.contains(&stalled_peer) && l.contains("no TLS handshake within 10 s")).then_some(())
    });
    assert_eq!(redis_cli_with(&a, &tls, &["PING"]), "PONG");

    // kill -9: the backup takes over and serves TLS with the same files.
    let size = redis_cli_with(&a, &tls, &["DBSIZE"]);
    let epoch = h.record().unwrap().epoch;
    h.kill9("a");
    h.wait_primary_after("b", epoch);
    assert_eq!(redis_cli_with(&b, &tls, &["GET", "greeting"]), "hello");
    assert_eq!(redis_cli_with(&b, &tls, &["DBSIZE"]), size);
    assert!(redis_cli_with(&b, &[], &["PING"]).contains("TLS only"));
    assert_eq!(redis_cli_with(&b, &tls, &["SET", "after", "failover"]), "OK");
    assert_no_key_in_logs(&h, &certs, &["a", "b"]);
}

#[test]
fn with_tls_ca_only_clients_with_a_certificate_it_signed_are_served() {
    let _s = serial();
    let (mut h, certs) = tls_harness("tls", true);
    h.start_pair();
    let a = h.node("a").client.clone();
    assert!(h.log_of("a").contains("client certificates required"), "{}", h.log_of("a"));
    let with_cert = certs.cli_flags(Some("client"));
    assert_eq!(redis_cli_with(&a, &with_cert, &["SET", "k", "v"]), "OK");
    assert_eq!(redis_cli_with(&a, &with_cert, &["GET", "k"]), "v");
    // No certificate, or one from another CA: refused in the handshake.
    let served = |out: &str| out.lines().any(|l| l.trim() == "v");
    let none = redis_cli_with(&a, &certs.cli_flags(None), &["GET", "k"]);
    assert!(!served(&none), "a client without a certificate was served: {none}");
    let stranger = redis_cli_with(&a, &certs.cli_flags(Some("stranger")), &["GET", "k"]);
    assert!(!served(&stranger), "a client whose certificate another CA signed was served: {stranger}");
    wait_for("the refused handshakes in the log", Duration::from_secs(10), || {
        let log = h.log_of("a");
        (log.matches("TLS handshake failed").count() >= 2).then_some(())
    });
    // The node went on serving.
    assert_eq!(redis_cli_with(&a, &with_cert, &["GET", "k"]), "v");
    assert_no_key_in_logs(&h, &certs, &["a", "b"]);
}

/// redis-py, unmodified: `ssl=True` straight to the primary, then
/// `Sentinel(...).master_for(cluster, ssl=True, …)` through a sentinel
/// that reads the primary's INFO over TLS; after `written` appears the
/// test kills the primary, after `failed-over` the client reads back
/// every key through the sentinel (now at the new primary).
const APP: &str = r#"
import os, sys, time, redis
from redis.sentinel import Sentinel
a, s, cluster, ca, cert, key, ctl = sys.argv[1:8]
tls = dict(ssl=True, ssl_ca_certs=ca, ssl_certfile=cert, ssl_keyfile=key)
def hp(x):
    h, p = x.rsplit(':', 1)
    return (h, int(p))
h, p = hp(a)
r = redis.Redis(host=h, port=p, decode_responses=True, socket_timeout=5, **tls)
assert r.ping() and r.set('direct', 'yes') and r.get('direct') == 'yes'
assert r.info('replication')['role'] == 'master'
try:
    redis.Redis(host=h, port=p, socket_timeout=5, ssl=True, ssl_ca_certs=ca).ping()
    raise SystemExit('a client without a certificate was served')
except redis.exceptions.ConnectionError:
    pass
sentinel = Sentinel([hp(s)], socket_timeout=2)
assert sentinel.discover_master(cluster) == (h, p)
# The sentinel asked the primary for its backup over TLS.
deadline = time.monotonic() + 60
while not sentinel.discover_slaves(cluster):
    assert time.monotonic() < deadline, 'the sentinel lists no replica'
    time.sleep(0.05)
m = sentinel.master_for(cluster, socket_timeout=2, decode_responses=True, **tls)
for i in range(300):
    assert m.set(f'k{i}', str(i))
open(os.path.join(ctl, 'written'), 'w').close()
while not os.path.exists(os.path.join(ctl, 'failed-over')):
    time.sleep(0.02)
RETRY = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ReadOnlyError)
def retry(f):
    for attempt in range(600):
        try:
            return f()
        except RETRY:
            time.sleep(0.05)
    raise SystemExit('the client found no primary after the failover')
for i in range(300):
    got = retry(lambda: m.get(f'k{i}'))
    assert got == str(i), (i, got)
assert retry(lambda: m.set('after', 'failover')) and m.get('direct') == 'yes'
assert m.info('replication')['role'] == 'master'
print('ok, now at', '%s:%d' % m.connection_pool.get_master_address(), flush=True)
"#;

#[test]
fn redis_py_with_ssl_follows_the_primary_across_a_kill9_through_a_tls_aware_sentinel() {
    let _s = serial();
    let (mut h, certs) = tls_harness("tls", true);
    h.start_pair();
    let sentinel_log = h.path("sentinel.log");
    let _sentinel = KillOnDrop(
        Command::new(BIN)
            .args(["sentinel", "--arbiter", &h.arbiter_url(), "--listen", "127.0.0.1:0", "--cluster", CLUSTER])
            .args(["--poll-ms", "50", "--secret-file"])
            .arg(h.path("secret"))
            .args(["--tls-ca", &certs.path("ca.pem"), "--tls-cert", &certs.path("client.pem")])
            .args(["--tls-key", &certs.path("client.key")])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&sentinel_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let s_addr = wait_for("the sentinel to listen", Duration::from_secs(60), || {
        let text = std::fs::read_to_string(&sentinel_log).unwrap_or_default();
        let at = text.find("listening on ")? + "listening on ".len();
        Some(text[at..].split([',', ' ', '\n']).next().unwrap().to_string())
    });
    let ctl = h.path("ctl");
    std::fs::create_dir_all(&ctl).unwrap();
    let mut app = Command::new("python3")
        .args(["-c", APP, &h.node("a").client, &s_addr, CLUSTER])
        .args([certs.path("ca.pem"), certs.path("client.pem"), certs.path("client.key")])
        .arg(&ctl)
        .stdout(std::fs::File::create(h.path("app.out")).unwrap())
        .stderr(std::fs::File::create(h.path("app.err")).unwrap())
        .spawn()
        .expect("python3 runs (scripts/install-deps installs redis-py)");
    let output = |h: &Harness| {
        format!(
            "{}{}\n===== sentinel =====\n{}",
            std::fs::read_to_string(h.path("app.out")).unwrap_or_default(),
            std::fs::read_to_string(h.path("app.err")).unwrap_or_default(),
            std::fs::read_to_string(h.path("sentinel.log")).unwrap_or_default()
        )
    };
    wait_for("the application to write through the sentinel", Duration::from_secs(120), || {
        if let Some(status) = app.try_wait().unwrap() {
            panic!("the application ended early ({status}):\n{}", output(&h));
        }
        ctl.join("written").exists().then_some(())
    });
    let epoch = h.record().unwrap().epoch;
    h.kill9("a");
    h.wait_primary_after("b", epoch);
    std::fs::write(ctl.join("failed-over"), "").unwrap();
    let status = wait_for("the application to read back its writes", Duration::from_secs(120), || app.try_wait().unwrap());
    let text = output(&h);
    let b = h.node("b").client.clone();
    assert!(status.success() && text.contains(&format!("ok, now at {b}")), "redis-py over TLS:\n{text}");
    assert_eq!(redis_cli_with(&b, &certs.cli_flags(Some("client")), &["GET", "k299"]), "299");
    assert_no_key_in_logs(&h, &certs, &["a", "b"]);
    let sentinel_text = std::fs::read_to_string(&sentinel_log).unwrap();
    assert!(certs.key_lines().iter().all(|l| !sentinel_text.contains(l.as_str())), "key material in the sentinel's log");
}

/// Kills and reaps a child process on drop (a failing test leaves none).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn bad_tls_flags_name_the_flag_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let p = |n: &str| certs.path(n);
    let kv = |tls: &[String]| {
        let out = Command::new(BIN)
            .args(["kv", "--cluster", "t", "--node", "a", "--arbiter", "understudy://127.0.0.1:1"])
            .args(["--client-listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0"])
            .args(tls)
            .output()
            .unwrap();
        assert!(!out.status.success(), "kv {tls:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (s(&["--tls-cert", &p("server.pem")]), s(&["--tls-cert", "needs --tls-key"])),
        (s(&["--tls-key", &p("server.key")]), s(&["--tls-key", "needs --tls-cert"])),
        (s(&["--tls-ca", &p("ca.pem")]), s(&["--tls-ca", "needs --tls-cert and --tls-key"])),
        (
            s(&["--tls-cert", "/nonexistent/server.pem", "--tls-key", &p("server.key")]),
            s(&["reading --tls-cert /nonexistent/server.pem"]),
        ),
        (s(&["--tls-cert", &p("server.pem"), "--tls-key", "/nonexistent/k.pem"]), s(&["reading --tls-key /nonexistent/k.pem"])),
        (s(&["--tls-cert", &p("server.key"), "--tls-key", &p("server.key")]), s(&["--tls-cert", "server.key", "no certificate"])),
        (s(&["--tls-cert", &p("server.pem"), "--tls-key", &p("server.pem")]), s(&["--tls-key", "server.pem", "no private key"])),
        (
            s(&["--tls-cert", &p("server.pem"), "--tls-key", &p("client.key")]),
            s(&["--tls-key", "client.key", "does not match --tls-cert"]),
        ),
        (
            s(&["--tls-cert", &p("server.pem"), "--tls-key", &p("server.key"), "--tls-ca", &p("server.key")]),
            s(&["--tls-ca", "server.key", "no certificate"]),
        ),
    ];
    let keys = certs.key_lines();
    for (flags, want) in cases {
        let err = kv(&flags);
        for w in &want {
            assert!(err.contains(w.as_str()), "kv {flags:?}: wanted {w:?} in: {err}");
        }
        assert!(keys.iter().all(|l| !err.contains(l.as_str())), "key material in the error of {flags:?}");
    }
    // The sentinel's client side: a certificate needs the CA to check the nodes.
    let out = Command::new(BIN)
        .args(["sentinel", "--arbiter", "understudy://127.0.0.1:1", "--listen", "127.0.0.1:0"])
        .args(["--tls-cert", &p("client.pem"), "--tls-key", &p("client.key")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("need --tls-ca"), "{err}");
    let out = Command::new(BIN)
        .args(["sentinel", "--arbiter", "understudy://127.0.0.1:1", "--listen", "127.0.0.1:0"])
        .args(["--tls-ca", &p("ca.pem"), "--tls-cert", &p("client.pem")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("needs --tls-key"), "{err}");
}
