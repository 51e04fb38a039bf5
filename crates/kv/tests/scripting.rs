//! Lua scripting beyond the differential test: redis-py's lock scripts run
//! as redis-py runs them (SCRIPT LOAD, then EVALSHA), and the instruction
//! budget that stops a script the same way on every replica.

mod common;

use common::{one_reply, Client, FixedCtx, V};
use understudy_core::StateMachine;
use understudy_kv::{Kv, ScriptLimits};

const T0_US: u64 = 1_700_000_000_000_000;

/// redis-py's `redis/lock.py`: `Lock.LUA_RELEASE_SCRIPT`.
const LUA_RELEASE_SCRIPT: &str = "
        local token = redis.call('get', KEYS[1])
        if not token or token ~= ARGV[1] then
            return 0
        end
        redis.call('del', KEYS[1])
        return 1
    ";

/// `Lock.LUA_EXTEND_SCRIPT`: ARGV[2] more milliseconds, added to the TTL
/// (ARGV[3] "0") or replacing it ("1").
const LUA_EXTEND_SCRIPT: &str = r#"
        local token = redis.call('get', KEYS[1])
        if not token or token ~= ARGV[1] then
            return 0
        end
        local expiration = redis.call('pttl', KEYS[1])
        if not expiration then
            expiration = 0
        end
        if expiration < 0 then
            return 0
        end

        local newttl = ARGV[2]
        if ARGV[3] == "0" then
            newttl = ARGV[2] + expiration
        end
        redis.call('pexpire', KEYS[1], newttl)
        return 1
    "#;

/// `Lock.LUA_REACQUIRE_SCRIPT`: the TTL set to ARGV[2] milliseconds.
const LUA_REACQUIRE_SCRIPT: &str = "
        local token = redis.call('get', KEYS[1])
        if not token or token ~= ARGV[1] then
            return 0
        end
        redis.call('pexpire', KEYS[1], ARGV[2])
        return 1
    ";

fn run(c: &mut Client, argv: &[&str]) -> V {
    let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
    let mut ctx = FixedCtx { now_us: T0_US, asks: 0 };
    one_reply(&c.run_at(&mut ctx, T0_US / 1000, &argv))
}

fn load(c: &mut Client, body: &str) -> String {
    match run(c, &["SCRIPT", "LOAD", body]) {
        V::Bulk(Some(sha)) => String::from_utf8(sha).unwrap(),
        other => panic!("SCRIPT LOAD gave {other:?}"),
    }
}

#[test]
fn redis_py_lock_scripts_via_evalsha() {
    let mut c = Client::new(1);
    let release = load(&mut c, LUA_RELEASE_SCRIPT);
    let extend = load(&mut c, LUA_EXTEND_SCRIPT);
    let reacquire = load(&mut c, LUA_REACQUIRE_SCRIPT);
    assert_eq!(run(&mut c, &["SET", "lock", "tok-1", "PX", "10000", "NX"]), V::Simple(b"OK".to_vec()));
    // The wrong token changes nothing.
    assert_eq!(run(&mut c, &["EVALSHA", &extend, "1", "lock", "tok-2", "5000", "0"]), V::Int(0));
    assert_eq!(run(&mut c, &["EVALSHA", &reacquire, "1", "lock", "tok-2", "60000"]), V::Int(0));
    assert_eq!(run(&mut c, &["EVALSHA", &release, "1", "lock", "tok-2"]), V::Int(0));
    assert_eq!(run(&mut c, &["PTTL", "lock"]), V::Int(10000));
    // The right one extends (added, then replaced), reacquires, releases.
    assert_eq!(run(&mut c, &["EVALSHA", &extend, "1", "lock", "tok-1", "5000", "0"]), V::Int(1));
    assert_eq!(run(&mut c, &["PTTL", "lock"]), V::Int(15000));
    assert_eq!(run(&mut c, &["EVALSHA", &extend, "1", "lock", "tok-1", "3000", "1"]), V::Int(1));
    assert_eq!(run(&mut c, &["PTTL", "lock"]), V::Int(3000));
    assert_eq!(run(&mut c, &["EVALSHA", &reacquire, "1", "lock", "tok-1", "60000"]), V::Int(1));
    assert_eq!(run(&mut c, &["PTTL", "lock"]), V::Int(60000));
    assert_eq!(run(&mut c, &["EVALSHA", &release, "1", "lock", "tok-1"]), V::Int(1));
    assert_eq!(run(&mut c, &["EXISTS", "lock"]), V::Int(0));
    // A lock that is gone, or has no TTL, is not extended.
    assert_eq!(run(&mut c, &["EVALSHA", &release, "1", "lock", "tok-1"]), V::Int(0));
    assert_eq!(run(&mut c, &["SET", "lock", "tok-1"]), V::Simple(b"OK".to_vec()));
    assert_eq!(run(&mut c, &["EVALSHA", &extend, "1", "lock", "tok-1", "5000", "0"]), V::Int(0));
    // A backup that replays the log (without ever seeing SCRIPT LOAD's
    // reply) ends the same.
    let mut backup = Kv::new();
    for op in &c.log {
        let mut ctx = FixedCtx { now_us: T0_US, asks: 0 };
        backup.apply(&mut ctx, op, &mut Vec::new());
    }
    assert_eq!(backup.digest(), c.kv.digest());
}

fn error_text(v: V) -> String {
    match v {
        V::Err(e) => String::from_utf8(e).unwrap(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn the_instruction_budget_stops_a_script_alike_on_every_replica() {
    let limits = ScriptLimits { instructions: 200_000 };
    let mut c = Client::new(1);
    c.kv.set_script_limits(limits);
    assert_eq!(c.kv.script_limits(), limits);
    let loops = [
        "redis.call('INCR', 'n') while true do end",
        "redis.call('INCR', 'n') while true do pcall(function() while true do end end) end",
        "redis.call('INCR', 'n') while true do xpcall(function() while true do end end, function(e) return e end) end",
        "redis.call('INCR', 'n') while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
        "redis.call('INCR', 'n') local function f() return f() end f()",
    ];
    for body in loops {
        let e = error_text(run(&mut c, &["EVAL", body, "0"]));
        assert!(e.starts_with("ERR Script exceeded the limit of 200000 instructions"), "{body}: {e}");
    }
    // The writes made before the stop stay; a script under the budget runs.
    assert_eq!(run(&mut c, &["GET", "n"]), V::Bulk(Some(b"5".to_vec())));
    assert_eq!(run(&mut c, &["EVAL", "local s = 0 for i = 1, 1000 do s = s + i end return s", "0"]), V::Int(500500));
    let mut backup = Kv::new();
    backup.set_script_limits(limits);
    for op in &c.log {
        let mut ctx = FixedCtx { now_us: T0_US, asks: 0 };
        backup.apply(&mut ctx, op, &mut Vec::new());
    }
    assert_eq!(backup.digest(), c.kv.digest());
}

/// EVAL_RO runs on the read path: it sees the store, cannot write, and
/// leaves neither the cache nor math.random's sequence changed.
#[test]
fn read_only_scripts_leave_no_trace() {
    let mut c = Client::new(1);
    run(&mut c, &["SET", "k", "v"]);
    let digest = c.kv.digest();
    assert_eq!(run(&mut c, &["EVAL_RO", "return {redis.call('GET', KEYS[1]), math.random(10)}", "1", "k"]), {
        V::Arr(Some(vec![V::Bulk(Some(b"v".to_vec())), V::Int(4)]))
    });
    assert_eq!(c.kv.digest(), digest);
    let e = error_text(run(&mut c, &["EVAL_RO", "return redis.call('DEL', 'k')", "0"]));
    assert!(e.starts_with("ERR Write commands are not allowed from read-only scripts."), "{e}");
    assert_eq!(run(&mut c, &["EVAL", "return math.random(10)", "0"]), V::Int(4));
    assert_ne!(c.kv.digest(), digest, "a write script's draw moves the replicated sequence");
}

/// A script publishes (through the context, which counts the node's
/// subscribers: none here) but a read-only one may not, since only a logged
/// entry's messages can be held by the output rule; PUBSUB is the node's
/// registry's, and SUBSCRIBE and the like are refused as Redis refuses
/// them; redis.pcall hands the error to the script.
#[test]
fn scripts_publish_but_do_not_subscribe() {
    let mut c = Client::new(1);
    assert_eq!(run(&mut c, &["EVAL", "return redis.call('PUBLISH', 'ch', 'm')", "0"]), V::Int(0));
    let e = error_text(run(&mut c, &["EVAL_RO", "return redis.call('PUBLISH', 'ch', 'm')", "0"]));
    assert!(e.starts_with("ERR Write commands are not allowed from read-only scripts."), "{e}");
    let e = error_text(run(&mut c, &["EVAL", "return redis.call('PUBSUB', 'CHANNELS')", "0"]));
    assert!(e.starts_with("ERR understudy does not run 'pubsub'"), "{e}");
    let e = run(&mut c, &["EVAL", "return redis.pcall('PUBSUB', 'NUMPAT')['err']", "0"]);
    assert!(matches!(&e, V::Bulk(Some(b)) if b.starts_with(b"ERR understudy does not run 'pubsub'")), "{e:?}");
    for cmd in ["'SUBSCRIBE', 'ch'", "'PSUBSCRIBE', 'c*'", "'UNSUBSCRIBE'", "'PUNSUBSCRIBE'", "'WATCH', 'k'", "'UNWATCH'"] {
        let e = error_text(run(&mut c, &["EVAL", &format!("return redis.call({cmd})"), "0"]));
        assert!(e.starts_with("ERR This Redis command is not allowed from script"), "{cmd}: {e}");
    }
}
