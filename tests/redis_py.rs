//! A real Redis client library, unmodified, against the replicated pair:
//! redis-py (installed from PyPI by scripts/install-deps), which speaks
//! RESP3 by default since version 8 — plus a RESP2 connection, pipelines,
//! transactions (with WATCH, under concurrent increments), pub/sub, blocking
//! pops, sorted sets, `scan_iter`, and
//! the client's own retry across a failover.

mod common;
use common::*;
use std::process::Command;

const SCRIPT: &str = r#"
import sys, time, redis
a, b = sys.argv[1], sys.argv[2]
def conn(addr, **kw):
    h, p = addr.rsplit(':', 1)
    return redis.Redis(host=h, port=int(p), decode_responses=True, socket_timeout=5, **kw)
r = conn(a)
assert r.ping()
assert r.set('a', 1) and r.get('a') == '1' and r.incr('a') == 2 and r.get('missing') is None
assert r.expire('a', 100) and 0 < r.ttl('a') <= 100
p = r.pipeline(transaction=True)
p.set('x', 'y'); p.incr('cnt'); p.hset('h', mapping={'f1': 'v1', 'f2': 'v2'}); p.hgetall('h'); p.smembers('none')
assert p.execute() == [True, 1, 2, {'f1': 'v1', 'f2': 'v2'}, set()], 'transaction'
p = r.pipeline(transaction=False)
for i in range(500):
    p.set(f'k{i}', i)
assert all(p.execute())
assert r.lpush('l', 1, 2, 3) == 3 and r.lrange('l', 0, -1) == ['3', '2', '1']
assert r.sadd('s', 'a', 'b') == 2 and r.smembers('s') == {'a', 'b'}
assert r.info('replication')['role'] == 'master'
assert set(r.scan_iter(match='k4*', count=50)) == {f'k{i}' for i in range(500) if str(i).startswith('4')}, 'scan_iter'
assert dict(r.hscan_iter('h')) == {'f1': 'v1', 'f2': 'v2'} and set(r.sscan_iter('s')) == {'a', 'b'}
# Optimistic locking: concurrent read-modify-write through WATCH loses no
# increment (redis-py's transaction() retries on WatchError).
import threading
r.set('wc', 0)
conflicts = []
def bump(pipe):
    v = int(pipe.get('wc'))
    pipe.multi()
    pipe.set('wc', v + 1)
def worker():
    c = conn(a)
    for _ in range(50):
        while True:
            try:
                with c.pipeline() as pipe:
                    pipe.watch('wc')
                    bump(pipe)
                    pipe.execute()
                    break
            except redis.WatchError:
                conflicts.append(1)
ts = [threading.Thread(target=worker) for _ in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
assert r.get('wc') == '200', ('lost updates under WATCH', r.get('wc'))
assert r.transaction(bump, 'wc') == [True] and r.get('wc') == '201'
print('watch conflicts', len(conflicts))
for proto in (3, 2):
    ps = conn(a, protocol=proto).pubsub()
    ps.subscribe('chan')
    ps.psubscribe('ch*')
    kinds = [ps.get_message(timeout=5)['type'] for _ in range(2)]
    assert kinds == ['subscribe', 'psubscribe'], kinds
    assert r.publish('chan', 'hello') == 2
    got = [ps.get_message(timeout=5) for _ in range(2)]
    assert [(m['type'], m['data']) for m in got] == [('message', 'hello'), ('pmessage', 'hello')], got
    ps.close()
# Blocking pops: a job pushed later is handed to the waiting client.
def push_later():
    time.sleep(0.2)
    conn(a).rpush('bq', 'job')
threading.Thread(target=push_later).start()
assert list(r.blpop(['bq'], timeout=10)) == ['bq', 'job']
assert r.blpop(['bq_empty'], timeout=0.3) is None
# Sorted sets as a leaderboard.
r.zadd('lb', {'ann': 3, 'bob': 1, 'cy': 2})
assert [tuple(p) for p in r.zrange('lb', 0, -1, withscores=True)] == [('bob', 1.0), ('cy', 2.0), ('ann', 3.0)]
assert r.zrevrank('lb', 'ann') == 0 and r.zincrby('lb', 5, 'bob') == 6.0
r2 = conn(a, protocol=2)
assert r2.hgetall('h') == {'f1': 'v1', 'f2': 'v2'} and r2.get('k499') == '499'
try:
    conn(b).get('a')
    raise SystemExit('the backup answered a read')
except redis.exceptions.ReadOnlyError as e:
    assert a in str(e), e
print('ok')
"#;

#[test]
fn redis_py_works_against_the_pair_in_resp3_and_resp2() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_pair();
    let out = Command::new("python3")
        .args(["-c", SCRIPT, &h.node("a").client, &h.node("b").client])
        .output()
        .expect("python3 runs (scripts/install-deps installs redis-py)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("ok"), "redis-py against the pair:\n{text}");
    // Everything it wrote is on the backup, which serves it after a failover.
    let epoch = h.record().unwrap().epoch;
    h.kill9("a");
    h.wait_primary_after("b", epoch);
    let mut c = h.conn("b");
    assert_eq!(c.call(&["GET", "k499"]).unwrap().bytes(), Some(&b"499"[..]));
    assert_eq!(c.call(&["HGET", "h", "f2"]).unwrap().bytes(), Some(&b"v2"[..]));
}
