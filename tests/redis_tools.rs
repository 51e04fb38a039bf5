//! Real Redis tools against the replicated pair: redis-cli and
//! redis-benchmark work unmodified; a backup redirects with READONLY.

mod common;
use common::*;
use std::process::Command;

#[test]
fn redis_cli_and_redis_benchmark_work_against_the_pair() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_pair();
    let a = h.node("a").client.clone();
    assert_eq!(redis_cli(&a, &["PING"]), "PONG");
    assert_eq!(redis_cli(&a, &["SET", "greeting", "hello"]), "OK");
    assert_eq!(redis_cli(&a, &["GET", "greeting"]), "hello");
    assert_eq!(redis_cli(&a, &["INCRBY", "n", "5"]), "5");
    let info = redis_cli(&a, &["INFO", "replication"]);
    assert!(info.contains("role:master") && info.contains("protected:1"), "{info}");

    let b = h.node("b").client.clone();
    let readonly = redis_cli(&b, &["GET", "greeting"]);
    assert!(readonly.contains("READONLY") && readonly.contains(&a), "a backup names the primary: {readonly}");
    assert_eq!(redis_cli(&b, &["PING"]), "PONG");
    // Connection-level commands work on a backup, so a client that reached
    // it first can find out what it reached (issue 15 §1).
    let hello = redis_cli(&b, &["HELLO", "3"]);
    assert!(hello.contains("proto") && hello.contains('3'), "{hello}");
    assert_eq!(redis_cli(&b, &["CLIENT", "SETNAME", "app"]), "OK");
    assert_eq!(redis_cli(&b, &["SELECT", "0"]), "OK");
    let info = redis_cli(&b, &["INFO", "replication"]);
    assert!(info.contains("role:slave"), "{info}");
    let write = redis_cli(&b, &["SET", "k", "v"]);
    assert!(write.contains("READONLY"), "{write}");

    let (host, port) = a.rsplit_once(':').unwrap();
    let out = Command::new("redis-benchmark")
        .args(["-h", host, "-p", port, "-t", "set,get", "-n", "20000", "-c", "20", "-P", "16", "-q"])
        .output()
        .expect("redis-benchmark is installed (Debian package redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "redis-benchmark failed: {text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("SET:") && text.contains("GET:"), "{text}");
    // The benchmark's writes reached the backup too: DBSIZE agrees after failover.
    let size = redis_cli(&a, &["DBSIZE"]);
    let epoch = h.record().unwrap().epoch;
    h.kill9("a");
    h.wait_primary_after("b", epoch);
    assert_eq!(redis_cli(&b, &["DBSIZE"]), size);
    assert_eq!(redis_cli(&b, &["GET", "greeting"]), "hello");
}

/// Field names of an INFO replication section (`name:value` lines), with
/// `slave0` standing for `slaveN`.
fn info_fields(info: &str) -> Vec<String> {
    info.lines().filter_map(|l| l.split_once(':')).map(|(k, _)| k.to_string()).collect()
}

#[test]
fn role_wait_and_info_replication_speak_redis_format_on_both_nodes() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let master = RedisServer::start(dir.path(), "m", None);
    let replica = RedisServer::start(dir.path(), "r", Some(&master.1));
    wait_for("redis's replica to connect", std::time::Duration::from_secs(30), || {
        let up = redis_cli(&replica.1, &["INFO", "replication"]).contains("master_link_status:up");
        (up && redis_cli(&master.1, &["INFO", "replication"]).contains("state=online")).then_some(())
    });
    let redis_master = info_fields(&redis_cli(&master.1, &["INFO", "replication"]));
    let redis_replica = info_fields(&redis_cli(&replica.1, &["INFO", "replication"]));

    let mut h = Harness::new();
    h.start_pair();
    let (a, b) = (h.node("a").client.clone(), h.node("b").client.clone());
    assert_eq!(redis_cli(&a, &["SET", "k", "v"]), "OK");
    // Every field Redis prints, in Redis's order, before understudy's own.
    let ours = info_fields(&redis_cli(&a, &["INFO", "replication"]));
    assert_eq!(ours[..redis_master.len()], redis_master[..], "primary's INFO replication");
    let info = redis_cli(&a, &["INFO", "replication"]);
    let (bh, bp) = b.rsplit_once(':').unwrap();
    assert!(info.contains(&format!("slave0:ip={bh},port={bp},state=online,")), "{info}");
    wait_for("the backup to report its link up", std::time::Duration::from_secs(30), || {
        redis_cli(&b, &["INFO", "replication"]).contains("master_link_status:up").then_some(())
    });
    let info = redis_cli(&b, &["INFO", "replication"]);
    let ours = info_fields(&info);
    assert_eq!(ours[..redis_replica.len()], redis_replica[..], "backup's INFO replication");
    let (ah, ap) = a.rsplit_once(':').unwrap();
    assert!(info.contains(&format!("master_host:{ah}\r")) || info.contains(&format!("master_host:{ah}\n")), "{info}");
    assert!(info.contains(&format!("master_port:{ap}")), "{info}");

    // ROLE: the shapes redis-cli prints for Redis's master and replica.
    let role = redis_cli(&a, &["ROLE"]);
    let lines: Vec<&str> = role.lines().collect();
    assert_eq!(lines.first(), Some(&"master"), "{role}");
    assert!(lines.len() == 5 && lines[2] == bh && lines[3] == bp, "{role}");
    let role = redis_cli(&b, &["ROLE"]);
    let lines: Vec<&str> = role.lines().collect();
    assert_eq!(lines[..4], ["slave", ah, ap, "connected"], "{role}");
    let redis_role = redis_cli(&replica.1, &["ROLE"]);
    assert_eq!(redis_role.lines().count(), lines.len(), "redis: {redis_role}\nours: {role}");

    // The other sections Redis prints, with this node's real figures.
    let info = redis_cli(&a, &["INFO"]);
    let field = |name: &str| -> u64 {
        let line =
            info.lines().find_map(|l| l.strip_prefix(&format!("{name}:"))).unwrap_or_else(|| panic!("no {name} in {info}"));
        line.trim().parse().unwrap_or_else(|_| panic!("{name}:{line}"))
    };
    for section in ["# Server", "# Clients", "# Memory", "# Persistence", "# Stats", "# Replication", "# Keyspace"] {
        assert!(info.contains(section), "{section} missing: {info}");
    }
    assert_eq!(field("tcp_port"), ap.parse::<u64>().unwrap());
    assert_eq!(field("process_id"), h.node("a").pid() as u64);
    assert!(field("connected_clients") >= 1 && field("total_connections_received") >= field("connected_clients"));
    assert!(field("total_commands_processed") >= 3, "SET, INFO replication, ROLE… were processed");
    assert!(field("used_memory_rss") > 1 << 20);
    // used_memory is the keyspace's estimate (one small key), not the RSS.
    assert!(field("used_memory") > 0 && field("used_memory") < 1024 && field("used_memory_peak") >= field("used_memory"));
    assert!(field("maxmemory") == 0 && info.contains("maxmemory_policy:noeviction") && field("evicted_keys") == 0);
    assert!(field("total_net_input_bytes") > 0 && field("total_net_output_bytes") > 0);
    assert!(info.contains("db0:keys=1,expires=0"), "{info}");
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let time = redis_cli(&a, &["TIME"]);
    let secs: u64 = time.lines().next().unwrap().parse().unwrap();
    assert!(secs.abs_diff(unix) < 60 && time.lines().count() == 2, "{time}");
    let lastsave: u64 = redis_cli(&a, &["LASTSAVE"]).parse().unwrap();
    assert!(lastsave <= unix && unix - lastsave < 600, "LASTSAVE is this process's start: {lastsave}");
    let only = redis_cli(&a, &["INFO", "memory", "CLIENTS"]);
    assert!(only.contains("# Memory") && only.contains("# Clients") && !only.contains("# Server"), "{only}");

    // WAIT answers at once: the backup holds every acknowledged write.
    assert_eq!(redis_cli(&a, &["WAIT", "1", "0"]), "1");
    assert_eq!(redis_cli(&a, &["WAIT", "0", "x"]), "ERR timeout is not an integer or out of range");
    assert!(redis_cli(&b, &["WAIT", "1", "0"]).contains("READONLY"));
    h.kill9("b");
    wait_for("the primary to notice its backup is gone", std::time::Duration::from_secs(30), || {
        (redis_cli(&a, &["WAIT", "1", "100"]) == "0").then_some(())
    });
    assert!(redis_cli(&a, &["INFO", "replication"]).contains("connected_slaves:0"));
}

#[test]
fn a_password_protects_both_nodes_and_never_reaches_a_log() {
    let _s = serial();
    let mut h = Harness::new();
    let pass = "correct horse battery staple";
    std::fs::write(h.path("pass"), format!("{pass}\n")).unwrap();
    h.node_args = vec!["--requirepass-file".into(), h.path("pass").display().to_string()];
    h.client_password = Some(pass.into());
    h.start_pair();
    let (a, b) = (h.node("a").client.clone(), h.node("b").client.clone());
    let noauth = "NOAUTH Authentication required.";
    assert_eq!(redis_cli(&a, &["SET", "k", "v"]), noauth);
    assert_eq!(redis_cli(&a, &["INFO"]), noauth);
    // Not even a backup's redirect (it names the primary) before AUTH.
    assert_eq!(redis_cli(&b, &["GET", "k"]), noauth);
    let with = |addr: &str, args: &[&str]| {
        let mut v = vec!["-a", pass, "--no-auth-warning"];
        v.extend_from_slice(args);
        redis_cli(addr, &v)
    };
    assert_eq!(with(&a, &["SET", "k", "v"]), "OK");
    assert_eq!(with(&a, &["GET", "k"]), "v");
    assert!(with(&b, &["GET", "k"]).contains("READONLY"));
    // redis-cli reports the failed AUTH on stderr; the command then meets NOAUTH.
    assert_eq!(redis_cli(&a, &["-a", "wrong", "--no-auth-warning", "GET", "k"]), noauth);
    // redis-py, RESP3 (HELLO 3 AUTH) and RESP2 (AUTH), across a kill -9.
    let script = r#"
import sys, redis
h, p = sys.argv[1].rsplit(':', 1)
for proto in (3, 2):
    r = redis.Redis(host=h, port=int(p), password=sys.argv[2], protocol=proto, decode_responses=True, socket_timeout=5)
    assert r.get('k') == 'v' and r.incr('n') > 0
try:
    redis.Redis(host=h, port=int(p), decode_responses=True, socket_timeout=5).get('k')
    raise SystemExit('no password, yet an answer')
except redis.exceptions.AuthenticationError:
    pass
print('ok')
"#;
    let run = |addr: &str| {
        let out = Command::new("python3").args(["-c", script, addr, pass]).output().expect("python3");
        assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    };
    run(&a);
    let epoch = h.record().unwrap().epoch;
    h.kill9("a");
    h.wait_primary_after("b", epoch);
    run(&b);
    assert_eq!(with(&b, &["GET", "n"]), "4", "every increment (two per run) survived the failover");
    for n in ["a", "b"] {
        assert!(!h.log_of(n).contains(pass), "node {n} logged the password");
    }
}
