//! Differential test against a real Redis 7.0 (`redis-server`): the same
//! command sequences go to Redis and to `Session::dispatch` + `Kv`, and the
//! reply bytes must be identical. Unordered replies (SMEMBERS, HGETALL,
//! HKEYS, HVALS, KEYS, CONFIG GET) are compared as sorted multisets; replies that
//! depend on the millisecond a command ran (PTTL, *EXPIRETIME, TTL of a far
//! absolute time) are compared within a tolerance.
//!
//! Requires `redis-server` (Debian package `redis-server`); fails, never
//! skips, without it.

mod common;
mod scripts;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{args, one_reply, parse_reply, show, Client, V};
use understudy_kv::parse_command;

/// A redis-server of this test alone: on a unix socket in a fresh
/// directory and no TCP port (`--port 0`), so no other test's server can
/// be the one that answers.
struct Redis {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Redis {
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

    fn connect(&self) -> Conn {
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

struct Conn {
    stream: UnixStream,
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
fn scan_canonical(cmd: &str, v: V) -> V {
    let V::Arr(Some(mut parts)) = v else { return v };
    if let [_, elements] = &mut parts[..] {
        let cmd = if cmd == "hscan" || cmd == "zscan" { "hgetall" } else { "smembers" };
        *elements = normalize(cmd, std::mem::replace(elements, V::Arr(None)));
    }
    V::Arr(Some(parts))
}

/// Whether two integer replies are close enough for a time-dependent
/// command (TIME's: the same shape, seconds within 2).
fn close_enough(cmd: &str, a: &V, b: &V) -> bool {
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
    let tolerance = match cmd {
        "pttl" | "pexpiretime" => 1000,
        "ttl" | "expiretime" => 1,
        _ => return false,
    };
    matches!((a, b), (V::Int(x), V::Int(y)) if (x - y).abs() <= tolerance)
}

/// Runs one script on both sides; returns the mismatches.
fn run_script(redis: &Redis, name: &str, lines: &[&str]) -> Vec<String> {
    run_script_in(redis, name, lines, 2)
}

/// Runs one script on both sides after `HELLO proto`.
fn run_script_in(redis: &Redis, name: &str, lines: &[&str], proto: u8) -> Vec<String> {
    let (conn, ours) = pair(redis);
    run_on(conn, ours, name, lines, proto)
}

/// Runs one script on a Redis connection and our session.
fn run_on(mut conn: Conn, mut ours: Client, name: &str, lines: &[&str], proto: u8) -> Vec<String> {
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
        let close = loose && mv.as_ref().is_some_and(|mv| close_enough(&cmd, &tv, mv));
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
fn universe_query(cmd: &str, argv: &[&[u8]]) -> Option<Vec<Vec<u8>>> {
    let key = || argv.get(1).map_or(Vec::new(), |k| k.to_vec());
    match cmd {
        "spop" | "srandmember" => Some(vec![b"SMEMBERS".to_vec(), key()]),
        "hrandfield" => Some(vec![b"HGETALL".to_vec(), key()]),
        "randomkey" => Some(vec![b"KEYS".to_vec(), b"*".to_vec()]),
        _ => None,
    }
}

/// Same reply types, array lengths and integers; same errors; any strings.
fn same_shape(a: &V, b: &V) -> bool {
    match (a, b) {
        (V::Bulk(x), V::Bulk(y)) => x.is_some() == y.is_some(),
        (V::Arr(Some(x)), V::Arr(Some(y))) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_shape(a, b)),
        _ => a == b,
    }
}

/// The strings of a reply, nested arrays flattened.
fn strings(v: &V) -> Vec<Vec<u8>> {
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
fn random_reply_ok(argv: &[&[u8]], theirs: (&[u8], &V), mine: (&[u8], &V)) -> Result<(), String> {
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

/// The same scripts on a RESP3 connection (`HELLO 3`, what redis-py 8 and
/// other modern clients send by default): nulls, maps and sets typed as
/// Redis 7 types them.
#[test]
fn command_scripts_match_redis_in_resp3() {
    let redis = Redis::start();
    let mut failures = Vec::new();
    for (name, lines) in scripts::SCRIPTS {
        failures.extend(run_script_in(&redis, name, lines, 3));
    }
    report(failures);
}

/// Every command with the wrong number of arguments gets Redis's arity
/// error, outside and inside MULTI. One connection each side for the whole
/// run: an arity error changes no state (and a rejected command inside MULTI
/// makes EXEC abort and reset it), and a fresh connection per command meant
/// thousands of loopback connections a run, which now and then met a
/// connection reset from the kernel's port reuse rather than from Redis.
#[test]
fn arity_errors_match_redis() {
    let redis = Redis::start();
    let mut info_conn = redis.connect();
    let mut lines = Vec::new();
    for name in scripts::all_command_names() {
        let info = match one_reply(&info_conn.call(&[b"COMMAND", b"INFO", name.as_bytes()])) {
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
            lines.push(line.clone());
            if !matches!(name, "multi" | "exec" | "discard" | "watch" | "quit" | "reset") {
                lines.extend(["MULTI".to_string(), line, "EXEC".to_string()]);
            }
        }
    }
    assert!(lines.len() > 300, "only {} arity lines: is the command table empty?", lines.len());
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    report(run_script(&redis, "arity, alone and in MULTI", &lines));
}

/// Users of an ACL file (ours) and the same users made with ACL SETUSER
/// (Redis's): AUTH, HELLO AUTH, the NOPERM errors (also inside MULTI and
/// for EXEC), ACL's view of them.
#[test]
fn acl_users_match_redis() {
    let redis = Redis::start();
    let users = [
        "ro on >rop ~* +@read",
        "nokeys on >p +@all",
        "dis off >p +@all ~*",
        "w on nopass ~* &* +@all -@dangerous +info -get +client|id",
        "cmds on >c ~* -@all +set +get +multi +exec +client|setname +acl|whoami",
    ];
    let (mut setup, _) = pair(&redis);
    for u in users {
        let line = format!("ACL SETUSER {u}");
        let owned = args(&line);
        let argv: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        assert_eq!(show(&setup.call(&argv)), "+OK\\r\\n", "{line}");
    }
    let file: String = users.iter().map(|u| format!("user {u}\n")).collect();
    let (users, warnings) = understudy_kv::acl::Users::parse(&file, "test.acl", None).expect("the ACL file");
    assert!(warnings.is_empty(), "{warnings:?}");
    let users = std::sync::Arc::new(users);
    let mut failures = Vec::new();
    for (name, lines) in [(
        "acl read-only",
        &[
            "AUTH ro wrong",
            "ACL WHOAMI",
            "AUTH ro rop",
            "ACL WHOAMI",
            "GET k",
            "SET k v",
            "CLIENT LIST",
            "CONFIG GET port",
            "PUBLISH c m",
            "SUBSCRIBE c",
            "MULTI",
            "SET k v",
            "EXEC",
            "MEMORY USAGE k",
            "OBJECT ENCODING k",
            "DBSIZE",
            "PING",
            "HELLO 3 AUTH ro rop",
            "AUTH dis p",
            "AUTH nosuch x",
            "AUTH nokeys p",
            "GET k",
            "SET k v",
            "PUBLISH c m",
            "SUBSCRIBE c",
            "ZUNION 2 a b",
            "MEMORY USAGE k",
            "CLIENT ID",
            "MULTI",
            "SET k v",
            "PING",
            "EXEC",
            "ACL WHOAMI",
            "ACL DRYRUN ro set k v",
            "ACL DRYRUN nokeys get k",
            "ACL DRYRUN nokeys publish c m",
            "ACL DRYRUN ro client list",
            "ACL DRYRUN w flushall",
            "ACL DRYRUN w client kill id 1",
            "ACL DRYRUN w client id",
            "ACL DRYRUN w info",
            "ACL DRYRUN cmds set k v",
            "ACL DRYRUN cmds del k",
            "ACL DRYRUN cmds client setname x",
            "ACL DRYRUN cmds client getname",
            "ACL DRYRUN dis get k",
            "ACL USERS",
            "ACL GETUSER ro",
            "ACL GETUSER nokeys",
            "ACL GETUSER dis",
            "AUTH cmds c",
            "SET k v",
            "GET k",
            "DEL k",
            "MULTI",
            "SET k w",
            "CLIENT SETNAME n",
            "EXEC",
            "GET k",
            "CLIENT GETNAME",
            "EXEC",
            "ACL WHOAMI",
            "ACL USERS",
            "RESET",
            "ACL WHOAMI",
            "AUTH w x",
            "GET k",
            "FLUSHALL",
            "KEYS *",
        ][..],
    )] {
        for proto in [2, 3] {
            let (conn, mut ours) = pair(&redis);
            ours.session = understudy_kv::Session::with_admin(
                ours.session.client_id(),
                std::rc::Rc::new(understudy_kv::admin::Admin::new(users.clone())),
            );
            failures.extend(run_on(conn, ours, name, lines, proto));
        }
    }
    // Single commands in a user's rules come in Redis's hash-table order
    // (ours: the command table's): compared as sets of words. User w's
    // rules name commands Redis has and we lack.
    let (mut conn, mut ours) = pair(&redis);
    ours.session = understudy_kv::Session::with_admin(1, std::rc::Rc::new(understudy_kv::admin::Admin::new(users)));
    let words = |v: V| -> Vec<Vec<String>> {
        let mut lines: Vec<Vec<String>> = strings(&v)
            .iter()
            .map(|b| String::from_utf8_lossy(b).split(' ').map(str::to_string).collect::<Vec<_>>())
            .filter(|w| w.get(1).map(String::as_str) != Some("w"))
            .map(|mut w| {
                w.sort();
                w
            })
            .collect();
        lines.sort();
        lines
    };
    for line in ["ACL LIST", "ACL GETUSER cmds"] {
        let owned = args(line);
        let argv: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let (theirs, mine) = (conn.call(&argv), ours.run(&argv));
        if words(one_reply(&theirs)) != words(one_reply(&mine)) {
            failures.push(format!("[acl] {line}\n    redis: {}\n    ours:  {}", show(&theirs), show(&mine)));
        }
    }
    report(failures);
}

/// Our command table (arity, flags, key positions, ACL categories) agrees
/// with Redis's.
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
        assert_eq!(t[..7], m[..7], "COMMAND INFO {name}: name, arity, flags, key positions, ACL categories");
    }
}

/// Sorted sets large enough for Redis's skiplist encoding (and for several
/// of our blocks): ranks, ranges, pops, removals and algebra over a
/// thousand members, in both protocols.
#[test]
fn large_sorted_sets_match_redis() {
    let redis = Redis::start();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut zadd = String::from("ZADD big");
    let mut lex = String::from("ZADD lex");
    for i in 0..1000 {
        zadd.push_str(&format!(" {}.{} m{i}", rng.below(400) as i64 - 200, rng.below(4) * 25));
        lex.push_str(&format!(" 0 w{:04}", rng.below(5000)));
    }
    let other: String = (0..600).map(|i| format!(" {} m{}", rng.below(50), i * 3)).collect();
    let mut lines = vec![zadd, lex, format!("ZADD other{other}")];
    for line in [
        "ZCARD big",
        "ZRANGE big 0 20 WITHSCORES",
        "ZRANGE big 500 520",
        "ZRANGE big -30 -1 WITHSCORES",
        "ZREVRANGE big 250 270",
        "ZRANGE big 0 -1 REV",
        "ZRANGEBYSCORE big -50 (10 WITHSCORES",
        "ZRANGEBYSCORE big (-100 100 LIMIT 200 30",
        "ZREVRANGEBYSCORE big 150 -150 LIMIT 100 25 WITHSCORES",
        "ZCOUNT big -100 (0",
        "ZCOUNT big -inf +inf",
        "ZRANGE lex [w1000 (w2000 BYLEX",
        "ZRANGE lex (w4000 [w1000 BYLEX REV LIMIT 3 40",
        "ZLEXCOUNT lex [w0100 [w3000",
        "ZRANGEBYLEX lex - + LIMIT 700 20",
        "ZRANK big m17",
        "ZREVRANK big m17",
        "ZRANK big m999",
        "ZMSCORE big m1 m500 nosuch",
        "ZRANDMEMBER big 5000 WITHSCORES",
        "ZINTER 2 big other WITHSCORES",
        "ZUNION 2 big other AGGREGATE MIN WITHSCORES",
        "ZDIFF 2 big other",
        "ZINTERCARD 2 big other",
        "ZINTERCARD 2 big other LIMIT 100",
        "ZPOPMIN big 7",
        "ZPOPMAX big 3",
        "ZMPOP 2 nokey big MAX COUNT 4",
        "ZREMRANGEBYRANK big 100 299",
        "ZREMRANGEBYSCORE big -20 20",
        "ZREMRANGEBYLEX lex [w2000 [w2500",
        "ZRANGE big 90 130 WITHSCORES",
        "ZCARD big",
        "ZCARD lex",
        "ZINCRBY big 1000 m5",
        "ZRANK big m5",
        "ZUNIONSTORE u 2 big other WEIGHTS 2 -1",
        "ZRANGE u 0 40 WITHSCORES",
        "ZRANGESTORE r big 10 400",
        "ZRANGE r 0 -1 WITHSCORES",
        "ZREM big m1 m2 m3 m4 m5 m6 m7 m8 m9",
        "ZRANGE big 0 -1 WITHSCORES",
    ] {
        lines.push(line.to_string());
    }
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let mut failures = run_script(&redis, "large sorted sets", &lines);
    failures.extend(run_script_in(&redis, "large sorted sets", &lines, 3));
    report(failures);
}

/// The members (and scores) a ZRANDMEMBER reply names, RESP2's flat pairs
/// and RESP3's nested ones alike.
fn picks(v: &V, withscores: bool) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let text = |v: &V| match v {
        V::Bulk(Some(b)) | V::Double(b) => b.clone(),
        other => panic!("not a member or score: {other:?}"),
    };
    match v {
        V::Bulk(Some(m)) => vec![(m.clone(), None)],
        V::Arr(Some(items)) if !withscores => items.iter().map(|m| (text(m), None)).collect(),
        V::Arr(Some(items)) if items.iter().all(|i| matches!(i, V::Arr(_))) && !items.is_empty() => items
            .iter()
            .map(|pair| match pair {
                V::Arr(Some(p)) if p.len() == 2 => (text(&p[0]), Some(text(&p[1]))),
                other => panic!("not a pair: {other:?}"),
            })
            .collect(),
        V::Arr(Some(items)) => items.chunks(2).map(|p| (text(&p[0]), Some(text(&p[1])))).collect(),
        other => panic!("not a ZRANDMEMBER reply: {other:?}"),
    }
}

/// ZRANDMEMBER picks at random on both sides, so replies are compared by
/// what they must hold: as many picks as Redis's, each a member of the set
/// with its own score, none twice for a positive count; when the count
/// covers the whole set, Redis's order too. A small set (Redis's listpack)
/// and a large one (its skiplist), in RESP2 and RESP3.
#[test]
fn zrandmember_picks_like_redis() {
    let redis = Redis::start();
    for proto in [&b"2"[..], b"3"] {
        let (mut conn, mut ours) = pair(&redis);
        let hello: [&[u8]; 2] = [b"HELLO", proto];
        assert_eq!(show(&conn.call(&hello)), show(&ours.run(&hello)));
        for (key, size) in [("small", 5usize), ("large", 300)] {
            let mut zadd = vec!["ZADD".to_string(), key.to_string()];
            for i in 0..size {
                zadd.extend([format!("{i}.5"), format!("m{i}")]);
            }
            let argv: Vec<&[u8]> = zadd.iter().map(String::as_bytes).collect();
            assert_eq!(conn.call(&argv), ours.run(&argv));
            for count in [
                None,
                Some(1i64),
                Some(3),
                Some(5),
                Some(6),
                Some(0),
                Some(-1),
                Some(-3),
                Some(-8),
                Some(250),
                Some(299),
                Some(300),
                Some(1000),
                Some(-500),
            ] {
                for withscores in [false, true] {
                    if count.is_none() && withscores {
                        continue;
                    }
                    let mut line = format!("ZRANDMEMBER {key}");
                    if let Some(c) = count {
                        line.push_str(&format!(" {c}"));
                    }
                    if withscores {
                        line.push_str(" WITHSCORES");
                    }
                    let owned = args(&line);
                    let argv: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
                    let (theirs, mine) = (conn.call(&argv), ours.run(&argv));
                    let what = format!("RESP{} {line}", proto[0] as char);
                    let (t, m) = (picks(&one_reply(&theirs), withscores), picks(&one_reply(&mine), withscores));
                    assert_eq!(t.len(), m.len(), "{what}: redis {} ours {}", show(&theirs), show(&mine));
                    for (member, score) in &m {
                        let index = std::str::from_utf8(member).ok().and_then(|m| m.strip_prefix('m')?.parse::<usize>().ok());
                        let Some(index) = index.filter(|&i| i < size) else { panic!("{what}: {member:?} is not in the set") };
                        if let Some(score) = score {
                            assert_eq!(show(score), format!("{index}.5"), "{what}: the score of {}", show(member));
                        }
                    }
                    if count.is_some_and(|c| c > 0) {
                        let distinct: std::collections::HashSet<_> = m.iter().map(|p| &p.0).collect();
                        assert_eq!(distinct.len(), m.len(), "{what}: a member twice");
                    }
                    if count.is_some_and(|c| c >= size as i64) {
                        assert_eq!(show(&theirs), show(&mine), "{what}: the whole set, in Redis's order");
                    }
                }
            }
        }
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

/// Command templates for random sequences. Placeholders: `S`, `H`, `L`,
/// `T`, `Z` a string, hash, list, set or sorted set key (sometimes one of
/// another type, for WRONGTYPE paths), `K` any key, `V` a small value
/// (`(V`, `[V`, `-V`: one as a range bound). Expiries are far in the
/// future or already past, never near "now", so the two servers cannot
/// disagree about a key expiring between them.
const RANDOM_TEMPLATES: &[&str] = &[
    "SET S V",
    "SET S V EX 100",
    "SET S V NX",
    "SET S V XX GET",
    "SET S V KEEPTTL",
    "SET S V PXAT 1",
    "GET S",
    "GETSET S V",
    "GETDEL S",
    "GETEX S PERSIST",
    "GETEX S EX 200",
    "MSET S V S V",
    "MSETNX S V S V",
    "MGET S K",
    "DEL K K",
    "EXISTS K K",
    "INCR S",
    "DECRBY S 7",
    "INCRBY S -3",
    "APPEND S V",
    "STRLEN S",
    "GETRANGE S 1 -2",
    "SETRANGE S 2 V",
    "EXPIRE K 100",
    "EXPIRE K 0",
    "PEXPIRE K 50000 GT",
    "EXPIRE K 300 LT",
    "EXPIRE K 100 NX",
    "EXPIREAT K 1",
    "PERSIST K",
    "TTL K",
    "TYPE K",
    "RENAME K K",
    "RENAMENX K K",
    "HSET H f V g V",
    "HGET H f",
    "HMGET H f g",
    "HDEL H f",
    "HLEN H",
    "HEXISTS H g",
    "HGETALL H",
    "HKEYS H",
    "HVALS H",
    "HINCRBY H n 3",
    "HSETNX H f V",
    "HSTRLEN H f",
    "LPUSH L V V",
    "RPUSH L V",
    "LPOP L",
    "RPOP L 2",
    "LPOP L 0",
    "LRANGE L 0 -1",
    "LINDEX L -1",
    "LLEN L",
    "LSET L 0 V",
    "LPUSHX L V",
    "RPOP L",
    "LPOP L 3",
    "SADD T V V",
    "SREM T V",
    "SMEMBERS T",
    "SISMEMBER T V",
    "SMISMEMBER T V 1",
    "SCARD T",
    "ZADD Z V V V V",
    "ZADD Z XX CH V V",
    "ZADD Z NX V V",
    "ZADD Z GT CH V V",
    "ZADD Z INCR V V",
    "ZINCRBY Z -V V",
    "ZINCRBY Z 0.5 V",
    "ZREM Z V V",
    "ZSCORE Z V",
    "ZMSCORE Z V V",
    "ZCARD Z",
    "ZRANK Z V",
    "ZREVRANK Z V",
    "ZRANGE Z 0 -1 WITHSCORES",
    "ZRANGE Z V -V REV",
    "ZRANGE Z (V +inf BYSCORE LIMIT 1 V",
    "ZRANGEBYSCORE Z -inf V WITHSCORES",
    "ZREVRANGEBYSCORE Z +inf (V",
    "ZRANGEBYLEX Z [V +",
    "ZCOUNT Z V +inf",
    "ZLEXCOUNT Z - (V",
    "ZPOPMIN Z",
    "ZPOPMAX Z V",
    "ZMPOP 2 Z Z MAX COUNT V",
    "ZREMRANGEBYRANK Z 0 V",
    "ZREMRANGEBYSCORE Z V V",
    "ZREMRANGEBYLEX Z [V +",
    "ZRANGESTORE Z Z 0 V",
    "ZUNIONSTORE Z 2 Z Z WEIGHTS V 2",
    "ZINTERSTORE Z 2 Z T AGGREGATE MAX",
    "ZDIFFSTORE Z 2 Z Z",
    "ZUNION 2 Z T WITHSCORES",
    "ZINTER 2 Z Z WITHSCORES",
    "ZDIFF 2 Z Z",
    "ZINTERCARD 2 Z Z LIMIT V",
    "ZSCAN Z 0",
    "ZRANDMEMBER Z 9",
    "KEYS *",
    "INCRBYFLOAT S 1.5",
    "INCRBYFLOAT S -0.25",
    "HINCRBYFLOAT H n 2.5",
    "SETBIT S 5 1",
    "SETBIT S 13 0",
    "GETBIT S 3",
    "BITCOUNT S",
    "BITCOUNT S 1 -1 BIT",
    "BITPOS S 1",
    "BITPOS S 0 1 -1 BIT",
    "BITOP XOR S S S",
    "BITFIELD S INCRBY i5 3 9 GET u4 2",
    "BITFIELD S OVERFLOW SAT INCRBY u3 #1 5",
    "BITFIELD_RO S GET u4 2",
    "COPY K K",
    "COPY K K REPLACE",
    "TOUCH K K",
    "OBJECT ENCODING K",
    "OBJECT REFCOUNT K",
    "LCS S S",
    "LCS S S IDX WITHMATCHLEN",
    "SRANDMEMBER T 2",
    "SRANDMEMBER T -2",
    "HRANDFIELD H 2 WITHVALUES",
    "HRANDFIELD H -3",
    "SPOP T 5",
    "RANDOMKEY",
    "SORT L",
    "SORT L DESC LIMIT 1 2",
    "SORT L ALPHA STORE K",
    "SORT_RO L BY nosort DESC",
    "SORT T",
    "SORT T BY nosort",
    "SORT L BY S GET # GET H",
    "MULTI",
    "FLUSHALL",
];

/// A tiny deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn command(&mut self, template: &str) -> String {
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

#[test]
fn random_sequences_match_redis() {
    let redis = Redis::start();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut failures = Vec::new();
    for round in 0..50 {
        let mut lines = Vec::new();
        while lines.len() < 300 {
            let t = RANDOM_TEMPLATES[rng.below(RANDOM_TEMPLATES.len())];
            match t {
                "FLUSHALL" if rng.below(4) != 0 => continue,
                "MULTI" => {
                    // A short transaction of commands with ordered replies.
                    lines.push("MULTI".to_string());
                    for _ in 0..=rng.below(4) {
                        let t = RANDOM_TEMPLATES[rng.below(RANDOM_TEMPLATES.len())];
                        let unordered = ["MULTI", "KEYS", "HGETALL", "HKEYS", "HVALS", "SMEMBERS", "ZSCAN"];
                        let random = ["SRANDMEMBER", "HRANDFIELD", "SPOP", "RANDOMKEY"];
                        if !unordered.iter().chain(&random).any(|c| t.starts_with(c)) {
                            lines.push(rng.command(t));
                        }
                    }
                    lines.push(if rng.below(4) == 0 { "DISCARD" } else { "EXEC" }.to_string());
                }
                _ => lines.push(rng.command(t)),
            }
        }
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        failures.extend(run_script(&redis, &format!("random {round}"), &refs));
    }
    report(failures);
}

/// IDs from `*` come from the recorded clock: only their shape and order
/// can be compared with Redis's.
#[test]
fn xadd_star_ids_have_redis_shape() {
    let redis = Redis::start();
    let (mut conn, mut ours) = pair(&redis);
    let id = |v: V| match v {
        V::Bulk(Some(b)) => {
            let s = String::from_utf8(b).unwrap();
            let (ms, seq) = s.split_once('-').expect("ms-seq");
            (ms.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap())
        }
        other => panic!("not an ID: {other:?}"),
    };
    for argv in [
        &[&b"XADD"[..], b"st", b"*", b"f", b"v"][..],
        &[b"XADD", b"st", b"*", b"f", b"v"],
        &[b"XADD", b"st", b"MAXLEN", b"~", b"5", b"*", b"f", b"v"],
    ] {
        let (theirs, mine) = (id(one_reply(&conn.call(argv))), id(one_reply(&ours.run(argv))));
        assert!(mine.0.abs_diff(theirs.0) < 60_000, "{mine:?} vs {theirs:?}");
    }
    let argv: [&[u8]; 5] = [b"XADD", b"st", b"99999999999999-*", b"f", b"v"];
    assert_eq!(conn.call(&argv), ours.run(&argv));
    let argv: [&[u8]; 5] = [b"XADD", b"st", b"*", b"f", b"v"];
    assert_eq!(conn.call(&argv), ours.run(&argv), "not after the last ID: its sequence + 1");
}
