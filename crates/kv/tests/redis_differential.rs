//! Differential test against a real Redis 7.0 (`redis-server`): the same
//! command sequences go to Redis and to `Session::dispatch` + `Kv`, and the
//! reply bytes must be identical. Unordered replies (SMEMBERS, HGETALL,
//! HKEYS, HVALS, KEYS) are compared as sorted multisets; replies that
//! depend on the millisecond a command ran (PTTL, *EXPIRETIME, TTL of a far
//! absolute time) are compared within a tolerance.
//!
//! Requires `redis-server` (Debian package `redis-server`); fails, never
//! skips, without it.

mod common;
mod scripts;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{args, one_reply, parse_reply, show, Client, V};
use understudy_kv::parse_command;

struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): this test needs Redis 7.0 \
                     (Debian: apt-get install redis-server) on PATH"
                )
            });
        let redis = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen on port {port} within 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    fn connect(&self) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis-server");
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

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to redis");
    }

    fn call(&mut self, argv: &[&[u8]]) -> Vec<u8> {
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
    fn reply(&mut self) -> Vec<u8> {
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
fn pair(redis: &Redis) -> (Conn, Client) {
    let mut conn = redis.connect();
    assert_eq!(conn.call(&[b"FLUSHALL"]), b"+OK\r\n");
    let id = match one_reply(&conn.call(&[b"CLIENT", b"ID"])) {
        V::Int(id) => id as u64,
        other => panic!("CLIENT ID gave {other:?}"),
    };
    (conn, Client::new(id))
}

/// Puts an unordered reply in a canonical order (hash replies by pair).
fn normalize(cmd: &str, v: V) -> V {
    let V::Arr(Some(mut items)) = v else { return v };
    if cmd == "hgetall" {
        let mut pairs: Vec<Vec<V>> = items.chunks(2).map(<[V]>::to_vec).collect();
        pairs.sort();
        return V::Arr(Some(pairs.concat()));
    }
    items.sort();
    V::Arr(Some(items))
}

/// Whether two integer replies are close enough for a time-dependent command.
fn close_enough(cmd: &str, a: &V, b: &V) -> bool {
    let tolerance = match cmd {
        "pttl" | "pexpiretime" => 1000,
        "ttl" | "expiretime" => 1,
        _ => return false,
    };
    matches!((a, b), (V::Int(x), V::Int(y)) if (x - y).abs() <= tolerance)
}

/// Runs one script on both sides; returns the mismatches.
fn run_script(redis: &Redis, name: &str, lines: &[&str]) -> Vec<String> {
    let (mut conn, mut ours) = pair(redis);
    let mut failures = Vec::new();
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
        let theirs = conn.call(&argv);
        let mine = ours.run(&argv);
        if theirs == mine {
            continue;
        }
        let cmd = String::from_utf8_lossy(argv.first().copied().unwrap_or_default()).to_lowercase();
        let (tv, mv) = (one_reply(&theirs), parse_reply(&mine).map(|(v, _)| v));
        let same_set = mv.as_ref().is_some_and(|mv| normalize(&cmd, tv.clone()) == normalize(&cmd, mv.clone()));
        let close = loose && mv.as_ref().is_some_and(|mv| close_enough(&cmd, &tv, mv));
        let unordered = matches!(cmd.as_str(), "smembers" | "hgetall" | "hkeys" | "hvals" | "keys");
        if !((unordered && same_set) || close) {
            failures.push(format!("[{name}] {line}\n    redis: {}\n    ours:  {}", show(&theirs), show(&mine)));
        }
    }
    failures
}

fn report(failures: Vec<String>) {
    assert!(failures.is_empty(), "{} mismatches with Redis:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn command_scripts_match_redis() {
    let redis = Redis::start();
    let mut failures = Vec::new();
    for (name, lines) in scripts::SCRIPTS {
        failures.extend(run_script(&redis, name, lines));
    }
    report(failures);
}

/// Every command with the wrong number of arguments gets Redis's arity
/// error, outside and inside MULTI.
#[test]
fn arity_errors_match_redis() {
    let redis = Redis::start();
    let mut failures = Vec::new();
    for name in scripts::all_command_names() {
        let info = match one_reply(&redis.connect().call(&[b"COMMAND", b"INFO", name.as_bytes()])) {
            V::Arr(Some(items)) => items,
            other => panic!("COMMAND INFO {name}: {other:?}"),
        };
        let V::Arr(Some(entry)) = &info[0] else { panic!("{name} unknown to redis") };
        let V::Int(arity) = entry[1] else { panic!("arity of {name}") };
        let mut bad_counts = vec![arity.unsigned_abs() as usize - 1];
        if arity > 0 {
            bad_counts.push(arity as usize + 1);
        }
        for argc in bad_counts.into_iter().filter(|&n| n >= 1) {
            let mut line = vec![name.to_string()];
            line.extend((1..argc).map(|i| format!("a{i}")));
            let line = line.join(" ");
            failures.extend(run_script(&redis, "arity", &[&line]));
            if !matches!(name, "multi" | "exec" | "discard" | "watch" | "quit" | "reset") {
                failures.extend(run_script(&redis, "arity in multi", &["MULTI", &line, "EXEC"]));
            }
        }
    }
    report(failures);
}

/// Our command table (arity, flags, key positions) agrees with Redis's.
#[test]
fn command_info_matches_redis() {
    let redis = Redis::start();
    let (mut conn, mut ours) = pair(&redis);
    for name in scripts::all_command_names() {
        let argv: [&[u8]; 3] = [b"COMMAND", b"INFO", name.as_bytes()];
        let (V::Arr(Some(t)), V::Arr(Some(m))) = (one_reply(&conn.call(&argv)), one_reply(&ours.run(&argv))) else {
            panic!("COMMAND INFO {name}")
        };
        let (V::Arr(Some(t)), V::Arr(Some(m))) = (&t[0], &m[0]) else { panic!("COMMAND INFO {name} entry") };
        assert_eq!(t[..6], m[..6], "COMMAND INFO {name}: name, arity, flags, key positions");
    }
}

/// Protocol errors: the error line Redis sends before closing equals ours.
#[test]
fn protocol_errors_match_redis() {
    let redis = Redis::start();
    let cases: &[&[u8]] = &[
        b"*abc\r\n",
        b"*3000000000\r\n",
        b"*1\r\nx\r\n",
        b"*1\r\n$abc\r\n",
        b"*1\r\n$-5\r\n",
        b"*2\r\n$3\r\nGET\r\n:1\r\n",
        b"set \"a b\r\n",
        b"set 'a b\r\n",
        b"set \"a\"b c\r\n",
        b"*1\r\n$\r\n",
    ];
    for raw in cases {
        let mut conn = redis.connect();
        conn.send_raw(raw);
        let theirs = conn.reply();
        let ours = match parse_command(raw, 1 << 20, &mut Vec::new()) {
            Err(e) => e.to_resp(),
            Ok(r) => panic!("{:?} parsed as {r:?}, redis said {}", show(raw), show(&theirs)),
        };
        assert_eq!(show(&theirs), show(&ours), "input {:?}", show(raw));
    }
}

/// Inline commands (telnet style) and pipelines give the same replies.
#[test]
fn inline_and_pipelined_input_matches_redis() {
    let redis = Redis::start();
    let inputs: &[&[u8]] = &[
        b"PING\r\n",
        b"set a b\r\nget a\r\n",
        b"  set   \"x y\"  'z w'  \r\nget \"x y\"\r\n",
        b"\r\n\r\nPING\n",
        b"set k \"\"\r\nstrlen k\r\n",
        b"echo\tfoo\r\n",
        b"*0\r\n*-1\r\nPING\r\n",
        b"*2\r\n$4\r\nECHO\r\n$3\r\na\x00b\r\n",
        b"MULTI\r\nINCR n\r\nINCR n\r\nEXEC\r\n",
    ];
    for input in inputs {
        let (mut conn, mut ours) = pair(&redis);
        let mine = ours.run_raw(input);
        conn.send_raw(input);
        let mut theirs = Vec::new();
        while theirs.len() < mine.len() {
            theirs.extend(conn.reply());
        }
        assert_eq!(show(&theirs), show(&mine), "input {:?}", show(input));
    }
}
