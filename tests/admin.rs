//! The administration commands monitoring tools call, with real clients
//! against the replicated pair: CLIENT LIST/INFO/KILL, SLOWLOG, CONFIG,
//! MEMORY USAGE (redis-cli, redis-py, raw connections); and ACL users
//! from an `--aclfile`.

mod common;
use common::*;
use std::process::Command;

use understudy_client::{Conn, Reply};

fn call(c: &mut Conn, args: &[&str]) -> Reply {
    c.call(args).unwrap()
}

fn text(r: &Reply) -> String {
    String::from_utf8_lossy(r.bytes().unwrap_or_else(|| panic!("not a string: {r:?}"))).into_owned()
}

/// `name=value` fields of a CLIENT LIST line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split(' ').find_map(|f| f.strip_prefix(name)?.strip_prefix('=')).unwrap_or_else(|| panic!("no {name} in {line}"))
}

const FIELDS: &str = "id addr laddr fd name age idle flags db sub psub ssub multi qbuf qbuf-free argv-mem multi-mem rbs rbp obl oll omem tot-mem events cmd user redir resp";

#[test]
fn client_list_kill_slowlog_config_and_memory_usage() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_pair();
    let a = h.node("a").client.clone();
    let mut one = h.conn("a");
    let mut two = h.conn("a");
    assert_eq!(call(&mut one, &["CLIENT", "SETNAME", "one"]), Reply::Simple("OK".into()));
    assert_eq!(call(&mut two, &["CLIENT", "SETNAME", "two"]), Reply::Simple("OK".into()));
    assert_eq!(call(&mut two, &["SUBSCRIBE", "news"]), call_array(&["subscribe", "news"], 1));
    // redis-cli's own connection and the two above, in Redis 7.0's format.
    let list = redis_cli(&a, &["CLIENT", "LIST"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines.len() >= 3, "{list}");
    for l in &lines {
        let names: Vec<&str> = l.split(' ').map(|f| f.split_once('=').unwrap().0).collect();
        assert_eq!(names.join(" "), FIELDS, "{l}");
    }
    let line_of = |name: &str| lines.iter().find(|l| field(l, "name") == name).unwrap_or_else(|| panic!("{name} in {list}"));
    let (l1, l2) = (line_of("one"), line_of("two"));
    assert_eq!(field(l1, "cmd"), "client|setname");
    assert_eq!((field(l1, "flags"), field(l1, "user"), field(l1, "resp")), ("N", "default", "2"));
    assert_eq!((field(l2, "flags"), field(l2, "sub"), field(l2, "cmd")), ("P", "1", "subscribe"));
    assert!(field(l1, "fd").parse::<i64>().unwrap() > 0);
    assert_eq!(field(l1, "laddr"), a, "the address the client connected to");
    let me = lines.iter().find(|l| field(l, "cmd") == "client|list").expect("redis-cli's own line");
    assert!(me.starts_with("id="), "{me}");
    // CLIENT INFO is the caller's line.
    let info = text(&call(&mut one, &["CLIENT", "INFO"]));
    assert_eq!(field(&info, "id"), field(l1, "id"));
    assert_eq!(field(&info, "addr"), field(l1, "addr"));
    let listed = text(&call(&mut one, &["CLIENT", "LIST", "TYPE", "pubsub"]));
    assert_eq!(field(&listed, "name"), "two");
    // CLIENT KILL ID closes the other connection: its next read fails.
    let id2 = field(l2, "id").to_string();
    assert_eq!(call(&mut one, &["CLIENT", "KILL", "ID", &id2]), Reply::Int(1));
    let closed = two.call(&["PING"]);
    assert!(closed.is_err(), "the killed connection answered {closed:?}");
    assert!(!text(&call(&mut one, &["CLIENT", "LIST"])).contains("name=two"));
    // The old form, and killing itself (after the reply).
    assert_eq!(call(&mut one, &["CLIENT", "KILL", "127.0.0.1:1"]), Reply::Error("ERR No such client".into()));
    let mut three = h.conn("a");
    let addr3 = field(&text(&call(&mut three, &["CLIENT", "INFO"])), "addr").to_string();
    assert_eq!(call(&mut three, &["CLIENT", "KILL", &addr3]), Reply::Simple("OK".into()));
    assert!(three.call(&["PING"]).is_err(), "it killed itself");

    // SLOWLOG: every command, once the threshold is 0.
    assert_eq!(call(&mut one, &["SLOWLOG", "RESET"]), Reply::Simple("OK".into()));
    assert_eq!(call(&mut one, &["CONFIG", "SET", "slowlog-log-slower-than", "0"]), Reply::Simple("OK".into()));
    assert_eq!(call(&mut one, &["SET", "k", "hello"]), Reply::Simple("OK".into()));
    let long = "x".repeat(200);
    assert_eq!(call(&mut one, &["SET", "big", &long]), Reply::Simple("OK".into()));
    let Reply::Array(Some(entries)) = call(&mut one, &["SLOWLOG", "GET", "2"]) else { panic!("SLOWLOG GET") };
    assert_eq!(entries.len(), 2);
    let Reply::Array(Some(newest)) = &entries[0] else { panic!("an entry") };
    assert_eq!(newest.len(), 6);
    let Reply::Array(Some(argv)) = &newest[3] else { panic!("its arguments") };
    assert_eq!(text(&argv[2]), format!("{}... (72 more bytes)", "x".repeat(128)));
    assert_eq!(text(&newest[4]), field(&info, "addr"));
    assert_eq!(text(&newest[5]), "one");
    let Reply::Array(Some(older)) = &entries[1] else { panic!("an entry") };
    let (Reply::Int(id_new), Reply::Int(id_old), Reply::Int(unix), Reply::Int(micros)) =
        (&newest[0], &older[0], &older[1], &older[2])
    else {
        panic!("{entries:?}")
    };
    assert_eq!(*id_new, id_old + 1);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((unix - now).abs() < 60 && *micros >= 0, "{older:?}");
    assert!(matches!(call(&mut one, &["SLOWLOG", "LEN"]), Reply::Int(n) if n >= 3));
    // A secret is not logged.
    assert_eq!(call(&mut one, &["AUTH", "default", "sesame"]), Reply::Simple("OK".into()), "nopass takes any");
    let Reply::Array(Some(entries)) = call(&mut one, &["SLOWLOG", "GET", "1"]) else { panic!("SLOWLOG GET") };
    let Reply::Array(Some(entry)) = &entries[0] else { panic!("an entry") };
    let Reply::Array(Some(argv)) = &entry[3] else { panic!("its arguments") };
    assert_eq!(argv.iter().map(text).collect::<Vec<_>>(), ["AUTH", "(redacted)", "(redacted)"]);
    assert_eq!(call(&mut one, &["CONFIG", "SET", "slowlog-log-slower-than", "10000"]), Reply::Simple("OK".into()));
    assert_eq!(
        call(&mut one, &["CONFIG", "GET", "slowlog-log-slower-than"]),
        call_pairs(&[("slowlog-log-slower-than", "10000")])
    );

    // CONFIG GET answers with the node's options.
    let port = a.rsplit_once(':').unwrap().1;
    assert_eq!(call(&mut one, &["CONFIG", "GET", "port"]), call_pairs(&[("port", port)]));
    assert_eq!(call(&mut one, &["CONFIG", "GET", "appendonly"]), call_pairs(&[("appendonly", "no")]));
    assert_eq!(
        call(&mut one, &["CONFIG", "SET", "port", "1"]),
        Reply::Error("ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config".into())
    );
    // MEMORY USAGE: an estimate for a key, null for none.
    assert!(matches!(call(&mut one, &["MEMORY", "USAGE", "k"]), Reply::Int(n) if n > 5));
    assert_eq!(call(&mut one, &["MEMORY", "USAGE", "nokey"]), Reply::Bulk(None));
    assert_eq!(call(&mut one, &["DBSIZE"]), Reply::Int(2));

    // The backup has its own registry, slow log and settings.
    let b = h.node("b").client.clone();
    assert!(redis_cli(&b, &["CLIENT", "LIST"]).contains("cmd=client|list"));
    assert_eq!(redis_cli(&b, &["SLOWLOG", "LEN"]), "0");
    assert_eq!(redis_cli(&b, &["CONFIG", "GET", "port"]), format!("port\n{}", b.rsplit_once(':').unwrap().1));

    // redis-py parses these replies.
    let script = r#"
import sys, redis
h, p = sys.argv[1].rsplit(':', 1)
for proto in (2, 3):
    r = redis.Redis(host=h, port=int(p), decode_responses=True, protocol=proto, socket_timeout=5)
    r.client_setname('py')
    clients = r.client_list()
    assert any(c['name'] == 'py' and c['cmd'] == 'client|list' for c in clients), clients
    assert r.client_info()['name'] == 'py'
    r.config_set('slowlog-log-slower-than', 0)
    r.set('pykey', 'v')
    log = r.slowlog_get(5)
    # redis-py gives the command as bytes, against Redis too.
    assert any(e['command'] == b'SET pykey v' and e['client_name'] == b'py' for e in log), log
    assert r.slowlog_len() >= 1
    r.config_set('slowlog-log-slower-than', 10000)
    assert r.slowlog_reset()
    assert r.config_get('maxmemory') == {'maxmemory': '0'}, r.config_get('maxmemory')
    assert r.config_get('maxmemory-policy') == {'maxmemory-policy': 'noeviction'}, r.config_get('maxmemory-policy')
    assert r.memory_usage('pykey') > 0 and r.memory_usage('nokey') is None
    assert r.acl_whoami() == 'default' and r.acl_users() == ['default']
    assert set(r.acl_getuser('default')['flags']) == {'on', 'nopass'}, r.acl_getuser('default')
print('ok')
"#;
    let out = Command::new("python3").args(["-c", script, &a]).output().expect("python3");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("ok"), "redis-py:\n{text}");
}

fn call_array(words: &[&str], n: i64) -> Reply {
    let mut items: Vec<Reply> = words.iter().map(|w| Reply::Bulk(Some(w.as_bytes().to_vec()))).collect();
    items.push(Reply::Int(n));
    Reply::Array(Some(items))
}

fn call_pairs(pairs: &[(&str, &str)]) -> Reply {
    Reply::Array(Some(
        pairs
            .iter()
            .flat_map(|(k, v)| [Reply::Bulk(Some(k.as_bytes().to_vec())), Reply::Bulk(Some(v.as_bytes().to_vec()))])
            .collect(),
    ))
}

#[test]
fn acl_users_from_a_file() {
    let _s = serial();
    let mut h = Harness::new();
    let acl = h.path("users.acl");
    std::fs::write(
        &acl,
        "# the same file on both nodes\n\
         user default on nopass ~* &* +@all\n\
         user reader on >rpass ~* +@read +@connection\n\
         user gone off >gpass ~* +@all\n\
         user ops on >opass ~* &* +@all -@dangerous +client|list +slowlog\n",
    )
    .unwrap();
    h.node_args = vec!["--aclfile".into(), acl.display().to_string()];
    h.start_pair();
    let a = h.node("a").client.clone();
    let mut c = h.conn("a");
    let wrongpass = Reply::Error("WRONGPASS invalid username-password pair or user is disabled.".into());
    assert_eq!(call(&mut c, &["AUTH", "reader", "nope"]), wrongpass);
    assert_eq!(call(&mut c, &["AUTH", "gone", "gpass"]), wrongpass, "a user that is off");
    assert_eq!(call(&mut c, &["AUTH", "nosuch", "x"]), wrongpass);
    assert_eq!(call(&mut c, &["SET", "k", "v"]), Reply::Simple("OK".into()), "still the default user");
    assert_eq!(call(&mut c, &["AUTH", "reader", "rpass"]), Reply::Simple("OK".into()));
    assert_eq!(
        call(&mut c, &["ACL", "WHOAMI"]),
        Reply::Error("NOPERM this user has no permissions to run the 'acl|whoami' command".into())
    );
    assert_eq!(call(&mut c, &["GET", "k"]), Reply::Bulk(Some(b"v".to_vec())));
    assert_eq!(
        call(&mut c, &["SET", "k", "w"]),
        Reply::Error("NOPERM this user has no permissions to run the 'set' command".into())
    );
    assert_eq!(call(&mut c, &["PING"]), Reply::Simple("PONG".into()));
    let list = text(&call(&mut c, &["CLIENT", "INFO"]));
    assert_eq!(field(&list, "user"), "reader");
    // The ops user may list clients, not flush.
    let ops = ["--user", "ops", "--pass", "opass", "--no-auth-warning"];
    let with_ops = |addr: &str, args: &[&str]| redis_cli(addr, &[&ops[..], args].concat());
    assert!(with_ops(&a, &["CLIENT", "LIST"]).contains("user=reader"));
    assert_eq!(with_ops(&a, &["FLUSHALL"]), "NOPERM this user has no permissions to run the 'flushall' command");
    assert_eq!(with_ops(&a, &["DBSIZE"]), "1");
    assert_eq!(with_ops(&a, &["ACL", "WHOAMI"]), "ops");
    let acl_list = redis_cli(&a, &["ACL", "LIST"]);
    let lines: Vec<&str> = acl_list.lines().collect();
    assert_eq!(lines.len(), 4, "{acl_list}");
    assert_eq!(lines[0], "user default on nopass ~* &* +@all");
    assert!(lines[1].starts_with("user gone off #") && lines[1].ends_with(" ~* resetchannels +@all"), "{acl_list}");
    assert!(lines[2].starts_with("user ops on #") && lines[2].contains(" ~* &* +@all -@"), "{acl_list}");
    assert!(lines[3].starts_with("user reader on #") && lines[3].contains(" ~* resetchannels -@all +@read"), "{acl_list}");
    assert!(!acl_list.contains("rpass"), "passwords show as their SHA-256");
    assert_eq!(redis_cli(&a, &["ACL", "USERS"]), "default\ngone\nops\nreader");
    // The backup has the same users (the same file).
    let b = h.node("b").client.clone();
    assert_eq!(with_ops(&b, &["ACL", "WHOAMI"]), "ops");
    assert_eq!(redis_cli(&b, &["--user", "gone", "--pass", "gpass", "--no-auth-warning", "ACL", "WHOAMI"]), "default");
    // redis-py with a user: HELLO 3 AUTH and AUTH user pass.
    let script = r#"
import sys, redis
h, p = sys.argv[1].rsplit(':', 1)
for proto in (3, 2):
    r = redis.Redis(host=h, port=int(p), username='reader', password='rpass', protocol=proto, decode_responses=True, socket_timeout=5)
    assert r.get('k') == 'v'
    try:
        r.set('k', 'x')
        raise SystemExit('a read-only user wrote')
    except redis.exceptions.NoPermissionError as e:
        assert "no permissions to run the 'set' command" in str(e), e
    try:
        redis.Redis(host=h, port=int(p), username='gone', password='gpass', protocol=proto, socket_timeout=5).ping()
        raise SystemExit('a user that is off authenticated')
    except redis.exceptions.AuthenticationError:
        pass
print('ok')
"#;
    let out = Command::new("python3").args(["-c", script, &a]).output().expect("python3");
    let out_text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && out_text.contains("ok"), "redis-py:\n{out_text}");
    for n in ["a", "b"] {
        assert!(!h.log_of(n).contains("rpass"), "node {n} logged a password");
    }
}

/// A rule understudy does not take stops `kv` before it starts, naming
/// the file and the line.
#[test]
fn a_bad_acl_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("bad.acl");
    std::fs::write(&acl, "user a on >p ~* +@all\nuser b on >p ~cache:* +@read\n").unwrap();
    let out = Command::new(BIN)
        .args(["kv", "--cluster", "t", "--node", "x", "--arbiter", "understudy://127.0.0.1:1"])
        .args(["--client-listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0", "--aclfile"])
        .arg(&acl)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("--aclfile {}:2: key pattern '~cache:*' is not supported", acl.display())), "{err}");
}
