//! `understudy sentinel`: the Redis Sentinel protocol over the arbiter.
//! Two sentinels report the pair's primary, list its backup, announce
//! `+switch-master` on a switchover and on a kill -9; they answer from the
//! last record while the arbiter is down; and redis-py's
//! `Sentinel(...).master_for(cluster)` keeps an application writing across
//! two kill -9 failovers and a planned switchover — plain SETs, pipelined
//! transactions, `lock()`, `transaction()` with WATCH and EVAL in turn,
//! with AUTH and TLS on.

mod common;
use common::*;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use understudy_client::{Conn, Reply};

/// A `understudy sentinel` process, killed on drop.
struct Sentinel {
    child: Child,
    addr: String,
    log: PathBuf,
    /// Sent with AUTH before every call, when set.
    password: Option<String>,
}

impl Sentinel {
    fn start(h: &Harness, name: &str, extra: &[&str]) -> Sentinel {
        let log = h.path(&format!("{name}.log"));
        let mut child = Command::new(BIN)
            .args(["sentinel", "--arbiter", &h.arbiter_url(), "--listen", "127.0.0.1:0", "--secret-file"])
            .arg(h.path("secret"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let addr = wait_for(&format!("sentinel {name} to listen"), Duration::from_secs(60), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(status) = child.try_wait().unwrap() {
                panic!("sentinel {name} exited ({status}):\n{text}");
            }
            let at = text.find("listening on ")? + "listening on ".len();
            Some(text[at..].split([',', ' ', '\n']).next().unwrap().to_string())
        });
        Sentinel { child, addr, log, password: None }
    }

    fn call(&self, args: &[&str]) -> Reply {
        let mut c = Conn::connect(&self.addr, Duration::from_secs(10)).unwrap();
        if let Some(p) = &self.password {
            assert_eq!(c.call(&["AUTH", p]).unwrap(), Reply::Simple("OK".into()));
        }
        c.call(args).unwrap()
    }

    /// `SENTINEL MASTER t` as a map, or None if it is an error.
    fn master(&self) -> Option<HashMap<String, String>> {
        pairs(&self.call(&["SENTINEL", "MASTER", CLUSTER]))
    }

    /// Waits until both `get-master-addr-by-name` and `SENTINEL MASTER` name
    /// `client` (HOST:PORT) as the primary, up.
    fn wait_master(&self, client: &str) {
        let (ip, port) = client.rsplit_once(':').unwrap();
        let want = Reply::Array(Some(vec![bulk(ip), bulk(port)]));
        wait_for(&format!("sentinel {} to report the primary at {client}", self.addr), Duration::from_secs(60), || {
            let by_name = self.call(&["SENTINEL", "get-master-addr-by-name", CLUSTER]);
            let m = self.master()?;
            (by_name == want && m["ip"] == ip && m["port"] == port && m["flags"] == "master").then_some(())
        });
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("===== log of sentinel {} =====\n{}", self.addr, std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(Some(s.as_bytes().to_vec()))
}

fn text(r: &Reply) -> String {
    String::from_utf8_lossy(r.bytes().unwrap_or_default()).into_owned()
}

/// A flat field/value array as a map.
fn pairs(r: &Reply) -> Option<HashMap<String, String>> {
    let Reply::Array(Some(items)) = r else { return None };
    Some(items.chunks(2).map(|kv| (text(&kv[0]), text(&kv[1]))).collect())
}

/// A connection in subscribed mode; what it receives, on a channel.
struct Subscriber {
    rx: mpsc::Receiver<Reply>,
}

impl Subscriber {
    fn start(addr: &str, cmd: &[&str]) -> Subscriber {
        let mut c = Conn::connect(addr, Duration::from_secs(600)).unwrap();
        let confirm = c.call(cmd).unwrap();
        let kind = cmd[0].to_ascii_lowercase();
        assert_eq!(confirm, Reply::Array(Some(vec![bulk(&kind), bulk(cmd[1]), Reply::Int(1)])));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            while let Ok(r) = c.read_reply() {
                if tx.send(r).is_err() {
                    return;
                }
            }
        });
        Subscriber { rx }
    }

    /// The next message, within a generous deadline.
    fn next(&self, what: &str) -> Reply {
        self.rx.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
    }
}

/// `+switch-master`'s payload: `<name> <old-ip> <old-port> <new-ip> <new-port>`.
fn switch_payload(old: &str, new: &str) -> String {
    let (oi, op) = old.rsplit_once(':').unwrap();
    let (ni, np) = new.rsplit_once(':').unwrap();
    format!("{CLUSTER} {oi} {op} {ni} {np}")
}

#[test]
fn two_sentinels_report_the_primary_and_announce_each_switch() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_pair();
    let (a, b) = (h.node("a").client.clone(), h.node("b").client.clone());
    // s1 lists the cluster from the start; s2 learns it when asked by name.
    let s1 = Sentinel::start(&h, "s1", &["--cluster", CLUSTER]);
    let s2 = Sentinel::start(&h, "s2", &[]);
    for s in [&s1, &s2] {
        s.wait_master(&a);
        let Reply::Array(Some(masters)) = s.call(&["SENTINEL", "MASTERS"]) else { panic!("SENTINEL MASTERS") };
        assert_eq!(masters.len(), 1);
        let m = pairs(&masters[0]).unwrap();
        assert_eq!((m["name"].as_str(), m["num-other-sentinels"].as_str(), m["quorum"].as_str()), (CLUSTER, "0", "1"));
        assert_eq!(m["runid"].len(), 40);
        assert_eq!((m["understudy-backup"].as_str(), m["understudy-backup-state"].as_str()), ("b", "in-sync"));
        assert_eq!(m["understudy-protected"], "1");
        // The in-sync backup, at the client address the primary names in
        // its INFO replication (as Redis Sentinel learns replicas).
        let (bi, bp) = b.rsplit_once(':').unwrap();
        let r = wait_for("the backup b to be listed", Duration::from_secs(60), || {
            let Reply::Array(Some(list)) = s.call(&["SENTINEL", "REPLICAS", CLUSTER]) else { return None };
            list.first().and_then(pairs)
        });
        assert_eq!((r["ip"].as_str(), r["port"].as_str(), r["understudy-node"].as_str()), (bi, bp, "b"));
        assert_eq!(s.call(&["SENTINEL", "SENTINELS", CLUSTER]), Reply::Array(Some(vec![])));
        let info = text(&s.call(&["INFO", "sentinel"]));
        assert!(info.contains(&format!("master0:name={CLUSTER},status=ok,address={a},slaves=1,sentinels=1")), "{info}");
        assert!(info.contains("sentinel_masters:1"), "{info}");
    }
    // Unknown names get Redis Sentinel's answers.
    assert_eq!(s1.call(&["SENTINEL", "get-master-addr-by-name", "nope"]), Reply::Array(None));
    assert_eq!(s1.call(&["SENTINEL", "master", "nope"]), Reply::Error("ERR No such master with that name".into()));
    assert_eq!(s1.call(&["SENTINEL", "replicas", "nope"]), Reply::Error("ERR No such master with that name".into()));
    assert_eq!(s1.call(&["PING"]), Reply::Simple("PONG".into()));
    let (ai, ap) = a.rsplit_once(':').unwrap();
    let down = s1.call(&["SENTINEL", "is-master-down-by-addr", ai, ap, "0", "*"]);
    assert_eq!(down, Reply::Array(Some(vec![Reply::Int(0), bulk("*"), Reply::Int(0)])));

    let sub1 = Subscriber::start(&s1.addr, &["SUBSCRIBE", "+switch-master"]);
    let sub2 = Subscriber::start(&s2.addr, &["PSUBSCRIBE", "*"]);

    // A planned switchover: b is primary, a its backup.
    let out = h.switchover();
    assert!(out.status.success(), "switchover: {}", String::from_utf8_lossy(&out.stderr));
    for s in [&s1, &s2] {
        s.wait_master(&b);
    }
    let msg = |channel: &str, payload: &str| Reply::Array(Some(vec![bulk("message"), bulk(channel), bulk(payload)]));
    let pmsg = |channel: &str, payload: &str| Reply::Array(Some(vec![bulk("pmessage"), bulk("*"), bulk(channel), bulk(payload)]));
    assert_eq!(sub1.next("+switch-master a→b on s1"), msg("+switch-master", &switch_payload(&a, &b)));
    assert_eq!(sub2.next("+switch-master a→b on s2"), pmsg("+switch-master", &switch_payload(&a, &b)));
    // Now a is the backup, listed at its own address.
    let (bi, bp) = b.rsplit_once(':').unwrap();
    for s in [&s1, &s2] {
        let r = wait_for("the backup a to be listed", Duration::from_secs(60), || {
            let Reply::Array(Some(list)) = s.call(&["SENTINEL", "SLAVES", CLUSTER]) else { return None };
            list.first().and_then(pairs)
        });
        assert_eq!((r["ip"].as_str(), r["port"].as_str(), r["name"].clone()), (ai, ap, a.clone()));
        assert_eq!((r["flags"].as_str(), r["master-link-status"].as_str()), ("slave", "ok"));
        assert_eq!((r["master-host"].as_str(), r["master-port"].as_str(), r["understudy-node"].as_str()), (bi, bp, "a"));
        assert_eq!(s.master().unwrap()["num-slaves"], "1");
    }

    // kill -9 of the primary: a takes over.
    let epoch = h.record().unwrap().epoch;
    h.kill9("b");
    h.wait_primary_after("a", epoch);
    for s in [&s1, &s2] {
        s.wait_master(&a);
    }
    assert_eq!(sub1.next("+switch-master b→a on s1"), msg("+switch-master", &switch_payload(&b, &a)));
    assert_eq!(sub2.next("+switch-master b→a on s2"), pmsg("+switch-master", &switch_payload(&b, &a)));
    // No backup now.
    assert_eq!(s1.call(&["SENTINEL", "REPLICAS", CLUSTER]), Reply::Array(Some(vec![])));
}

#[test]
fn while_the_arbiter_is_down_a_sentinel_answers_from_the_last_record_and_bad_input_harms_nothing() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_pair();
    let a = h.node("a").client.clone();
    let s = Sentinel::start(&h, "s", &["--cluster", CLUSTER]);
    s.wait_master(&a);
    let epoch = h.record().unwrap().epoch;
    h.kill_arbiter();
    wait_for("the sentinel to notice the arbiter is down", Duration::from_secs(60), || {
        s.master().filter(|m| m["understudy-arbiter"].contains("cannot read")).map(|_| ())
    });
    s.wait_master(&a); // still answered, from the last record
                       // Without the arbiter b cannot take over: a dead primary stays named,
                       // and is reported down.
    h.kill9("a");
    let m = wait_for("the primary to be reported down", Duration::from_secs(60), || {
        s.master().filter(|m| m["flags"] == "master,s_down,o_down")
    });
    assert!(m.contains_key("s-down-time"), "{m:?}");
    let (ai, ap) = a.rsplit_once(':').unwrap();
    let down = s.call(&["SENTINEL", "is-master-down-by-addr", ai, ap, "0", "*"]);
    assert_eq!(down, Reply::Array(Some(vec![Reply::Int(1), bulk("*"), Reply::Int(0)])));
    assert!(text(&s.call(&["INFO"])).contains(&format!("master0:name={CLUSTER},status=odown,address={a}")));
    // A name never read cannot be answered now: an error, not a crash.
    let r = s.call(&["SENTINEL", "MASTER", "other"]);
    assert!(matches!(&r, Reply::Error(e) if e.contains("cannot read cluster \"other\"")), "{r:?}");

    // Bad input closes that connection only.
    let raw = |bytes: &[u8]| {
        let mut c = Conn::connect(&s.addr, Duration::from_secs(10)).unwrap();
        c.send_raw(bytes).unwrap();
        String::from_utf8_lossy(&c.read_to_end().unwrap()).into_owned()
    };
    assert_eq!(raw(b"*1\r\n$999999999999\r\n"), "-ERR Protocol error: invalid bulk length\r\n");
    assert!(raw(b"*2\r\n$8\r\nSENTINEL\r\n$100000\r\n").contains("exceeds"));
    assert!(raw(&vec![b'x'; 70 * 1024]).contains("too big inline request"));
    assert_eq!(raw(b"*-5\r\nPING\r\nQUIT\r\n"), "+PONG\r\n+OK\r\n");
    assert_eq!(s.call(&["FLUSHALL", "x"]), Reply::Error("ERR unknown command 'FLUSHALL', with args beginning with: 'x' ".into()));
    assert_eq!(s.call(&["SENTINEL", "bogus"]), Reply::Error("ERR unknown subcommand 'bogus'. Try SENTINEL HELP.".into()));
    assert_eq!(
        s.call(&["SENTINEL", "master"]),
        Reply::Error("ERR wrong number of arguments for 'sentinel|master' command".into())
    );
    // RESP3 after HELLO 3: maps and nulls of their own.
    let r3 = raw(b"HELLO 3\r\nCLIENT GETNAME\r\nSENTINEL MASTER t\r\nQUIT\r\n");
    assert!(r3.starts_with("%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"), "{r3}");
    assert!(r3.contains("$8\r\nsentinel\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n_\r\n%"), "{r3}");
    assert!(r3.ends_with("+OK\r\n"), "{r3}");

    // The arbiter back: b takes over and the sentinel says so.
    h.start_arbiter();
    h.wait_primary_after("b", epoch);
    s.wait_master(&h.node("b").client.clone());
    assert_eq!(s.master().unwrap()["understudy-arbiter"], "ok");
}

#[test]
fn a_sentinel_reads_a_file_arbiter() {
    let _s = serial();
    let shared = tempfile::tempdir().unwrap();
    let mut h = Harness::with_arbiter(&format!("file://{}", shared.path().display()));
    h.start_node("a", &[]);
    h.wait_primary("a");
    let s = Sentinel::start(&h, "s", &[]);
    s.wait_master(&h.node("a").client.clone());
    let m = s.master().unwrap();
    assert_eq!((m["understudy-protected"].as_str(), m["num-slaves"].as_str()), ("0", "0"));
}

/// An application as one is written for Redis Sentinel: it writes in a
/// loop, retrying on the errors a failover brings, until told to stop
/// (the file `stop` in the control directory); every 20 acknowledged
/// writes it reports how many in `progress`. At the end it reads every
/// acknowledged key back through the same `master_for` object, and
/// reports for each kill -9 (the wall-clock time in `kill1`, `kill2`,
/// written just before the signal is sent) the longest pause between two
/// acknowledged writes around it, the time from the kill to the end of that
/// pause, and the errors the application caught meanwhile (redis-py also
/// retries by itself first).
const APP: &str = r#"
import os, sys, time, redis
from redis.sentinel import Sentinel
s1, s2, cluster, ctl, pw, ca = sys.argv[1:7]
def hp(a):
    h, p = a.rsplit(':', 1)
    return (h, int(p))
# AUTH everywhere: the sentinels and the nodes ask for the password.
sentinel = Sentinel([hp(s1), hp(s2)], socket_timeout=2, sentinel_kwargs={'socket_timeout': 2, 'password': pw})
m = sentinel.master_for(cluster, socket_timeout=2, decode_responses=True, password=pw, ssl=True, ssl_ca_certs=ca)
# redis-py 8 talks RESP3 to the sentinels (HELLO 3); RESP2 finds the same.
resp2 = Sentinel([hp(s2)], sentinel_kwargs={'socket_timeout': 2, 'protocol': 2, 'password': pw})
try:
    Sentinel([hp(s1)], sentinel_kwargs={'socket_timeout': 2}).discover_master(cluster)
    raise SystemExit('a sentinel answered without the password')
except redis.sentinel.MasterNotFoundError:
    pass
assert resp2.discover_master(cluster) == sentinel.discover_master(cluster), 'RESP2 and RESP3 disagree'
# The in-sync backup is listed (at most a poll after the join), the same in both.
wait_until = time.monotonic() + 60
while not (sentinel.discover_slaves(cluster) and sentinel.discover_slaves(cluster) == resp2.discover_slaves(cluster)):
    assert time.monotonic() < wait_until, 'the sentinels list no replica'
    time.sleep(0.05)
RETRY = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ReadOnlyError)
deadline = time.monotonic() + 300
def report(n):
    tmp = os.path.join(ctl, 'progress.tmp')
    with open(tmp, 'w') as f:
        f.write(str(n))
    os.replace(tmp, os.path.join(ctl, 'progress'))
# (wall-clock time of the acknowledgement, errors caught before it)
acked, acks, i, errors = {}, [], 0, []
while not os.path.exists(os.path.join(ctl, 'stop')):
    if time.monotonic() > deadline:
        sys.exit('deadline passed before the test said stop')
    k, v = f'k{i}', str(i)
    try:
        # The usage patterns of real applications, in turn; each writes k.
        mode = i % 5
        if mode == 0:
            m.set(k, v)
        elif mode == 1:
            p = m.pipeline()
            p.set(k, v)
            p.zadd('board', {k: i})
            p.execute()
        elif mode == 2:
            with m.lock('app-lock', timeout=2, blocking_timeout=10):
                m.set(k, v)
        elif mode == 3:
            def bump(p):
                n = int(p.get('wcount') or 0)
                p.multi()
                p.set(k, v)
                p.set('wcount', n + 1)
            m.transaction(bump, 'wcount')
        else:
            assert m.eval("return redis.call('SET', KEYS[1], ARGV[1])", 1, k, v) == 'OK'
    except RETRY + (redis.exceptions.LockError,) as e:
        errors.append((time.time(), type(e).__name__))
        time.sleep(0.02)
        continue
    acks.append(time.time())
    acked[k] = v
    i += 1
    if i % 20 == 0:
        report(i)
report(i)
for k, v in acked.items():
    for attempt in range(200):
        try:
            got = m.get(k)
            break
        except RETRY:
            time.sleep(0.05)
    else:
        sys.exit(f'cannot read {k}')
    assert got == v, (k, got, v)
# Pipelined transactions' sorted-set members, and the WATCH counter: a
# transaction whose reply was lost in a failover may have run, never less.
for k in acked:
    if int(acked[k]) % 5 == 1:
        assert m.zscore('board', k) == float(acked[k]), k
assert int(m.get('wcount')) >= sum(1 for v in acked.values() if int(v) % 5 == 3)
events = []
for what, name in (('kill -9 number 1', 'kill1'), ('kill -9 number 2', 'kill2'), ('the switchover', 'switch')):
    with open(os.path.join(ctl, name)) as f:
        events.append((what, float(f.read())))
# Each event's window ends where the next begins (or 10 s later).
for i, (what, killed) in enumerate(events):
    until = events[i + 1][1] if i + 1 < len(events) else killed + 10
    near = [(b - a, a, b) for a, b in zip(acks, acks[1:]) if b > killed and a < until]
    gap, a, b = max(near)
    seen = [e for t, e in errors if a <= t <= b]
    first_error = min([t for t, _ in errors if a <= t <= b], default=None)
    after_error = f'{b - first_error:.3f} s from the first error to the next acknowledged write' if first_error else 'no error reached the application (redis-py retried by itself)'
    print(f'{what}: writes paused {gap:.3f} s; the next acknowledged write came {b - killed:.3f} s after it began; {after_error}; errors caught: {seen}', flush=True)
print(f'ok: {len(acked)} acknowledged writes, every one readable', flush=True)
"#;

/// Wall-clock seconds, as Python's `time.time()`.
fn now() -> String {
    format!("{:.6}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64())
}

#[test]
fn redis_py_master_for_keeps_writing_across_two_kill9_failovers_and_a_switchover() {
    let _s = serial();
    let mut h = Harness::new();
    let pass = "sentinel and node password";
    std::fs::write(h.path("pass"), pass).unwrap();
    let pass_file = h.path("pass").display().to_string();
    // AUTH and TLS on, as in production.
    let certs = Certs::make(&h.path("certs"));
    let ca = certs.path("ca.pem");
    h.node_args = vec!["--requirepass-file".into(), pass_file.clone()];
    h.node_args.extend(["--tls-cert".into(), certs.path("server.pem"), "--tls-key".into(), certs.path("server.key")]);
    h.client_password = Some(pass.into());
    let mut flags = certs.cli_flags(None);
    flags.extend(["-a".into(), pass.into(), "--no-auth-warning".into()]);
    h.kv_probe = Some(Box::new(move |addr| redis_cli_with(addr, &flags, &["INFO", "replication"]).contains("role:master")));
    h.start_pair();
    let with_pass = ["--cluster", CLUSTER, "--requirepass-file", &pass_file, "--auth-pass-file", &pass_file, "--tls-ca", &ca];
    let mut s1 = Sentinel::start(&h, "s1", &with_pass);
    let mut s2 = Sentinel::start(&h, "s2", &with_pass);
    assert_eq!(s1.call(&["SENTINEL", "MASTERS"]), Reply::Error("NOAUTH Authentication required.".into()));
    s1.password = Some(pass.into());
    s2.password = Some(pass.into());
    s1.wait_master(&h.node("a").client.clone());
    s2.wait_master(&h.node("a").client.clone());
    let ctl = h.path("ctl");
    std::fs::create_dir_all(&ctl).unwrap();
    let out_path = h.path("app.out");
    let mut app = Command::new("python3")
        .args(["-c", APP, &s1.addr, &s2.addr, CLUSTER])
        .arg(&ctl)
        .arg(pass)
        .arg(&ca)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::from(std::fs::File::create(h.path("app.err")).unwrap()))
        .spawn()
        .expect("python3 runs (scripts/install-deps installs redis-py)");
    let output = |h: &Harness| {
        format!(
            "{}{}",
            std::fs::read_to_string(h.path("app.out")).unwrap_or_default(),
            std::fs::read_to_string(h.path("app.err")).unwrap_or_default()
        )
    };
    // Waits for `more` acknowledged writes beyond `from`; fails at once if
    // the application ended.
    let mut wait_writes = |h: &Harness, from: u64, more: u64, what: &str| -> u64 {
        wait_for(&format!("the application to write {more} more ({what})"), Duration::from_secs(90), || {
            if let Some(status) = app.try_wait().unwrap() {
                panic!("the application ended early ({status}):\n{}", output(h));
            }
            let n: u64 = std::fs::read_to_string(ctl.join("progress")).ok()?.trim().parse().ok()?;
            (n >= from + more).then_some(n)
        })
    };
    let n = wait_writes(&h, 0, 200, "before any failure");
    // kill -9 of the primary, its backup takes over, a new node joins; twice.
    let mut n = n;
    for (mark, victim, next, joiner) in [("kill1", "a", "b", "c"), ("kill2", "b", "c", "d")] {
        let epoch = h.record().unwrap().epoch;
        std::fs::write(ctl.join(mark), now()).unwrap();
        h.kill9(victim);
        h.wait_primary_after(next, epoch);
        n = wait_writes(&h, n, 200, &format!("after {mark}"));
        h.start_node(joiner, &[]);
        h.wait_in_sync(joiner);
        n = wait_writes(&h, n, 100, &format!("with {joiner} in sync"));
    }
    // A planned switchover: c and d swap.
    let epoch = h.record().unwrap().epoch;
    std::fs::write(ctl.join("switch"), now()).unwrap();
    let out = h.switchover();
    assert!(out.status.success(), "switchover: {}", String::from_utf8_lossy(&out.stderr));
    h.wait_primary_after("d", epoch);
    wait_writes(&h, n, 200, "after the switchover");
    std::fs::write(ctl.join("stop"), "").unwrap();
    let status = wait_for("the application to check its writes and exit", Duration::from_secs(120), || app.try_wait().unwrap());
    let text = output(&h);
    println!("{text}");
    assert!(status.success() && text.contains("ok: "), "redis-py through the sentinels:\n{text}");
    for what in ["kill -9 number 1", "kill -9 number 2", "the switchover"] {
        assert!(text.contains(&format!("{what}: writes paused")), "{text}");
    }
}

/// With the nodes' users in an `--aclfile`, `--auth-user` names the user
/// whose password `--auth-pass-file` holds: the sentinel authenticates as it
/// to read the primary's INFO replication and so lists the backup.
#[test]
fn the_sentinel_reads_the_backup_as_an_acl_user() {
    let _s = serial();
    let mut h = Harness::new();
    std::fs::write(h.path("users.acl"), "user default on >dpass ~* &* +@all\nuser watcher on >wpass +info\n").unwrap();
    std::fs::write(h.path("wpass"), "wpass\n").unwrap();
    h.node_args = vec!["--aclfile".into(), h.path("users.acl").display().to_string()];
    h.client_password = Some("dpass".into());
    h.start_pair();
    let (a, b) = (h.node("a").client.clone(), h.node("b").client.clone());
    let pass_file = h.path("wpass").display().to_string();
    let s = Sentinel::start(&h, "s1", &["--cluster", CLUSTER, "--auth-user", "watcher", "--auth-pass-file", &pass_file]);
    s.wait_master(&a);
    let (bi, bp) = b.rsplit_once(':').unwrap();
    let r = wait_for("the backup b to be listed", Duration::from_secs(60), || {
        let Reply::Array(Some(list)) = s.call(&["SENTINEL", "REPLICAS", CLUSTER]) else { return None };
        list.first().and_then(pairs)
    });
    assert_eq!((r["ip"].as_str(), r["port"].as_str()), (bi, bp));
}
