//! The differential tests' side-by-side harness: a redis-server of each
//! test's own, a raw connection to it, and the comparison of a script's
//! replies (ours through `Session` + `Kv`, Redis's) with the tolerances
//! the module docs of `redis_differential.rs` describe.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{args, one_reply, parse_reply, show, Client, V};

/// A redis-server of this test alone: on a unix socket in a fresh
/// directory and no TCP port (`--port 0`), so no other test's server can
/// be the one that answers.
pub struct Redis {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("redis.sock");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): this test needs Redis 7.0 \
                     (Debian: apt-get install redis-server) on PATH"
                )
            });
        let redis = Redis { child, socket, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&redis.socket).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on {} within 10 s", redis.socket.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    pub fn connect(&self) -> Conn {
        let stream = UnixStream::connect(&self.socket).expect("connect to redis-server");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        Conn { stream, buf: Vec::new() }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Conn {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to redis");
    }

    pub fn call(&mut self, argv: &[&[u8]]) -> Vec<u8> {
        let mut req = format!("*{}\r\n", argv.len()).into_bytes();
        for a in argv {
            req.extend(format!("${}\r\n", a.len()).bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        self.send_raw(&req);
        self.reply()
    }

    /// Reads exactly one reply (or, after a protocol error, what Redis sent
    /// before closing).
    pub fn reply(&mut self) -> Vec<u8> {
        loop {
            if let Some((_, n)) = parse_reply(&self.buf) {
                return self.buf.drain(..n).collect();
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).expect("read from redis");
            if n == 0 {
                return std::mem::take(&mut self.buf);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A fresh Redis connection (with its client id) and a fresh Kv+Session.
pub fn pair(redis: &Redis) -> (Conn, Client) {
    let mut conn = redis.connect();
    assert_eq!(conn.call(&[b"FLUSHALL"]), b"+OK\r\n");
    let id = match one_reply(&conn.call(&[b"CLIENT", b"ID"])) {
        V::Int(id) => id as u64,
        other => panic!("CLIENT ID gave {other:?}"),
    };
    (conn, Client::new(id))
}

/// Puts an unordered reply in a canonical order (hash replies by pair).
pub fn normalize(cmd: &str, v: V) -> V {
    let V::Arr(Some(mut items)) = v else { return v };
    // CONFIG GET replies a map whose order varies between Redis processes.
    if cmd == "hgetall" || cmd == "config" {
        let mut pairs: Vec<Vec<V>> = items.chunks(2).map(<[V]>::to_vec).collect();
        pairs.sort();
        return V::Arr(Some(pairs.concat()));
    }
    items.sort();
    V::Arr(Some(items))
}

/// A SCAN-family reply with its elements sorted (HSCAN's and ZSCAN's by pair).
pub fn scan_canonical(cmd: &str, v: V) -> V {
    let V::Arr(Some(mut parts)) = v else { return v };
    if let [_, elements] = &mut parts[..] {
        let cmd = if cmd == "hscan" || cmd == "zscan" { "hgetall" } else { "smembers" };
        *elements = normalize(cmd, std::mem::replace(elements, V::Arr(None)));
    }
    V::Arr(Some(parts))
}

/// Whether two integer replies are close enough for a time-dependent
/// command (TIME's: the same shape, seconds within 2).
pub fn close_enough(cmd: &str, a: &V, b: &V) -> bool {
    if cmd == "time" {
        let secs = |v: &V| match v {
            V::Arr(Some(p)) if p.len() == 2 => match (&p[0], &p[1]) {
                (V::Bulk(Some(s)), V::Bulk(Some(us))) if us.len() <= 6 && us.iter().all(u8::is_ascii_digit) => {
                    std::str::from_utf8(s).ok()?.parse::<i64>().ok()
                }
                _ => None,
            },
            _ => None,
        };
        return matches!((secs(a), secs(b)), (Some(x), Some(y)) if (x - y).abs() <= 2);
    }
    if cmd == "xpending" {
        // Extended rows: [id, consumer, idle ms, deliveries].
        let row = |p: &V, q: &V| match (p, q) {
            (V::Arr(Some(p)), V::Arr(Some(q))) if p.len() == 4 && q.len() == 4 => {
                p[0] == q[0]
                    && p[1] == q[1]
                    && p[3] == q[3]
                    && matches!((&p[2], &q[2]), (V::Int(i), V::Int(j)) if (i - j).abs() <= 1000)
            }
            _ => false,
        };
        return matches!((a, b), (V::Arr(Some(x)), V::Arr(Some(y))) if x.len() == y.len() && x.iter().zip(y).all(|(p, q)| row(p, q)));
    }
    if cmd == "xinfo" {
        return times_close(a, b, false);
    }
    let tolerance = match cmd {
        "pttl" | "pexpiretime" => 1000,
        "ttl" | "expiretime" => 1,
        _ => return false,
    };
    matches!((a, b), (V::Int(x), V::Int(y)) if (x - y).abs() <= tolerance)
}

/// XINFO's replies: the same but for times, within a second — an idle
/// time (the value after `idle`) or an absolute one in ms (XINFO STREAM
/// FULL's seen and delivery times, all past 2001-09-09).
fn times_close(a: &V, b: &V, after_idle: bool) -> bool {
    match (a, b) {
        (V::Int(x), V::Int(y)) => {
            let time = after_idle || (*x >= 1_000_000_000_000 && *y >= 1_000_000_000_000);
            x == y || (time && (x - y).abs() <= 1000)
        }
        (V::Arr(Some(x)), V::Arr(Some(y))) => {
            x.len() == y.len()
                && x.iter().zip(y).enumerate().all(|(i, (p, q))| {
                    let idle = i > 0 && x[i - 1] == V::Bulk(Some(b"idle".to_vec()));
                    times_close(p, q, idle)
                })
        }
        _ => a == b,
    }
}

/// A reply with every integer's digits masked: equal for two replies of
/// the same types and shape (maps and arrays told apart) whose integers
/// may differ.
pub fn integers_masked(reply: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(reply.len());
    for (i, line) in reply.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        match line.first() {
            Some(b':') => out.extend_from_slice(b":#\r"),
            _ => out.extend_from_slice(line),
        }
    }
    out
}

/// Runs one script on both sides; returns the mismatches.
pub fn run_script(redis: &Redis, name: &str, lines: &[&str]) -> Vec<String> {
    run_script_in(redis, name, lines, 2)
}

/// Runs one script on both sides after `HELLO proto`.
pub fn run_script_in(redis: &Redis, name: &str, lines: &[&str], proto: u8) -> Vec<String> {
    let (conn, ours) = pair(redis);
    run_on(conn, ours, name, lines, proto)
}

/// Runs one script on a Redis connection and our session.
pub fn run_on(mut conn: Conn, mut ours: Client, name: &str, lines: &[&str], proto: u8) -> Vec<String> {
    let mut failures = Vec::new();
    if proto == 3 {
        let hello: [&[u8]; 2] = [b"HELLO", b"3"];
        let (theirs, mine) = (conn.call(&hello), ours.run(&hello));
        if theirs != mine {
            failures.push(format!("[{name}] HELLO 3\n    redis: {}\n    ours:  {}", show(&theirs), show(&mine)));
        }
    }
    let mut in_multi = false;
    for line in lines {
        let (loose, line) = match line.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, *line),
        };
        let owned = args(line);
        if owned.first().map(Vec::as_slice) == Some(b"sleep") {
            let ms: u64 = std::str::from_utf8(&owned[1]).unwrap().parse().unwrap();
            std::thread::sleep(Duration::from_millis(ms));
            continue;
        }
        let argv: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let cmd = String::from_utf8_lossy(argv.first().copied().unwrap_or_default()).to_lowercase();
        // What a random command may pick from, asked on each side before it
        // runs (outside MULTI, where it would be queued).
        let universes = universe_query(&cmd, &argv).filter(|_| !in_multi).map(|q| {
            let q: Vec<&[u8]> = q.iter().map(Vec::as_slice).collect();
            (one_reply(&conn.call(&q)), one_reply(&ours.run(&q)))
        });
        match cmd.as_str() {
            "multi" => in_multi = true,
            "exec" | "discard" | "reset" => in_multi = false,
            _ => {}
        }
        let theirs = conn.call(&argv);
        let mine = ours.run(&argv);
        if theirs == mine {
            continue;
        }
        if let Some((their_universe, our_universe)) = universes {
            if let Err(why) = random_reply_ok(&argv, (&theirs, &their_universe), (&mine, &our_universe)) {
                failures.push(format!("[{name}] {line}: {why}\n    redis: {}\n    ours:  {}", show(&theirs), show(&mine)));
            }
            continue;
        }
        let (tv, mv) = (one_reply(&theirs), parse_reply(&mine).map(|(v, _)| v));
        let same_set = mv.as_ref().is_some_and(|mv| normalize(&cmd, tv.clone()) == normalize(&cmd, mv.clone()));
        let close = loose
            && mv.as_ref().is_some_and(|mv| close_enough(&cmd, &tv, mv))
            && (cmd != "xinfo" || integers_masked(&theirs) == integers_masked(&mine));
        let unordered = matches!(
            cmd.as_str(),
            "smembers" | "sunion" | "sinter" | "sdiff" | "hgetall" | "hkeys" | "hvals" | "keys" | "config"
        );
        // A scan's elements come in each side's hash order: compare them as
        // a set (fields with their values), the cursor exactly.
        let same_scan = matches!(cmd.as_str(), "scan" | "sscan" | "hscan" | "zscan")
            && mv.as_ref().is_some_and(|mv| scan_canonical(&cmd, tv.clone()) == scan_canonical(&cmd, mv.clone()));
        if !((unordered && same_set) || close || same_scan) {
            failures.push(format!("[{name}] {line}\n    redis: {}\n    ours:  {}", show(&theirs), show(&mine)));
        }
    }
    failures
}

/// The query whose reply holds what a random command (SPOP, SRANDMEMBER,
/// HRANDFIELD, RANDOMKEY) may return.
pub fn universe_query(cmd: &str, argv: &[&[u8]]) -> Option<Vec<Vec<u8>>> {
    let key = || argv.get(1).map_or(Vec::new(), |k| k.to_vec());
    match cmd {
        "spop" | "srandmember" => Some(vec![b"SMEMBERS".to_vec(), key()]),
        "hrandfield" => Some(vec![b"HGETALL".to_vec(), key()]),
        "randomkey" => Some(vec![b"KEYS".to_vec(), b"*".to_vec()]),
        _ => None,
    }
}

/// Same reply types, array lengths and integers; same errors; any strings.
pub fn same_shape(a: &V, b: &V) -> bool {
    match (a, b) {
        (V::Bulk(x), V::Bulk(y)) => x.is_some() == y.is_some(),
        (V::Arr(Some(x)), V::Arr(Some(y))) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_shape(a, b)),
        _ => a == b,
    }
}

/// The strings of a reply, nested arrays flattened.
pub fn strings(v: &V) -> Vec<Vec<u8>> {
    match v {
        V::Bulk(Some(b)) => vec![b.clone()],
        V::Arr(Some(items)) => items.iter().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

/// A random command's replies must have Redis's shape (and reply type
/// byte, which tells RESP3 sets from arrays), and on each side hold only
/// what that side's universe held: distinct elements for a non-negative
/// count, every element when the count covers them all, values that go
/// with their fields.
pub fn random_reply_ok(argv: &[&[u8]], theirs: (&[u8], &V), mine: (&[u8], &V)) -> Result<(), String> {
    let (tv, mv) = (one_reply(theirs.0), one_reply(mine.0));
    if theirs.0.first() != mine.0.first() || !same_shape(&tv, &mv) {
        return Err("different shapes".into());
    }
    let count: Option<i64> = argv.get(2).and_then(|c| std::str::from_utf8(c).ok()?.parse().ok());
    let with_values = argv.len() == 4;
    for (side, (reply, universe)) in [("redis", (&tv, theirs.1)), ("ours", (&mv, mine.1))] {
        let pool = strings(universe);
        let got = strings(reply);
        let hash = argv[0].eq_ignore_ascii_case(b"hrandfield");
        let picked: Vec<&Vec<u8>> = got.iter().step_by(if with_values { 2 } else { 1 }).collect();
        let members: Vec<&Vec<u8>> = pool.iter().step_by(if hash { 2 } else { 1 }).collect();
        if let Some(m) = picked.iter().find(|m| !members.contains(m)) {
            return Err(format!("{side} returned {:?}, not in {:?}", show(m), show(&pool.concat())));
        }
        if let Some(p) = got.chunks(2).filter(|_| with_values).find(|p| !pool.chunks(2).any(|q| q == *p)) {
            return Err(format!("{side} returned the pair {p:?}, not in the hash"));
        }
        if count.is_some_and(|c| c >= 0) {
            let mut distinct = picked.clone();
            distinct.sort();
            distinct.dedup();
            if distinct.len() != picked.len() {
                return Err(format!("{side} repeated an element for a positive count"));
            }
            if count.is_some_and(|c| c as usize >= members.len()) && distinct.len() != members.len() {
                return Err(format!("{side} did not return every element"));
            }
        }
    }
    Ok(())
}

pub fn report(failures: Vec<String>) {
    assert!(failures.is_empty(), "{} mismatches with Redis:\n{}", failures.len(), failures.join("\n"));
}

/// A tiny deterministic generator (xorshift), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    pub fn command(&mut self, template: &str) -> String {
        let spaces = ["s", "h", "l", "t", "z"];
        let words: Vec<String> = template
            .split(' ')
            .map(|w| {
                let own = match w {
                    "S" => 0,
                    "H" => 1,
                    "L" => 2,
                    "T" => 3,
                    "Z" => 4,
                    "K" => self.below(5),
                    "V" => return self.below(5).to_string(),
                    // A score or lex bound: exclusive, inclusive, negative.
                    "(V" | "[V" | "-V" => return format!("{}{}", &w[..1], self.below(5)),
                    _ => return w.to_string(),
                };
                let space = if self.below(8) == 0 { self.below(5) } else { own };
                format!("{}{}", spaces[space], self.below(3))
            })
            .collect();
        words.join(" ")
    }
}

/// Every command in our table, lowercase.
pub fn all_command_names() -> Vec<&'static str> {
    let mut client = crate::common::Client::new(1);
    let reply = client.run(&[b"COMMAND", b"LIST"]);
    let crate::common::V::Arr(Some(items)) = crate::common::one_reply(&reply) else { panic!("COMMAND LIST") };
    items
        .into_iter()
        .map(|v| match v {
            crate::common::V::Bulk(Some(b)) => &*String::from_utf8(b).expect("ascii").leak(),
            other => panic!("COMMAND LIST item {other:?}"),
        })
        .collect()
}
