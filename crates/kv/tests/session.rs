//! Session behaviour that the Redis differential test cannot check:
//! where understudy deliberately differs from Redis (RESP3, WATCH, INFO in
//! MULTI, the transaction bound) and what `dispatch` tells the node.

mod common;

use common::{one_reply, Client, V};
use understudy_core::StateMachine;
use understudy_kv::{command_name, serves_on_backup, Dispatch, Kv, Session};

fn dispatch(s: &mut Session, argv: &[&[u8]]) -> (Dispatch, Vec<u8>, Vec<u8>) {
    let (mut op, mut out) = (vec![0xAA], Vec::new());
    let d = s.dispatch(argv, &mut op, &mut out);
    (d, op, out)
}

#[test]
fn dispatch_classifies_commands() {
    let mut s = Session::new(7);
    assert_eq!(dispatch(&mut s, &[b"get", b"k"]), (Dispatch::Read, vec![], vec![]));
    let (d, op, out) = dispatch(&mut s, &[b"SET", b"k", b"v"]);
    assert_eq!((d, out.is_empty()), (Dispatch::Write, true));
    assert!(!op.is_empty());
    assert_eq!(dispatch(&mut s, &[b"PING"]), (Dispatch::Done, vec![], b"+PONG\r\n".to_vec()));
    assert_eq!(dispatch(&mut s, &[b"info", b"keyspace"]).0, Dispatch::Status);
    assert_eq!(dispatch(&mut s, &[b"QUIT"]), (Dispatch::Close, vec![], b"+OK\r\n".to_vec()));
    assert_eq!(dispatch(&mut s, &[]), (Dispatch::Done, vec![], vec![]), "a blank line does nothing");
    let (d, _, out) = dispatch(&mut s, &[b"GET"]);
    assert_eq!((d, &out[..]), (Dispatch::Done, &b"-ERR wrong number of arguments for 'get' command\r\n"[..]));
}

#[test]
fn helpers_name_commands() {
    assert_eq!(command_name(&[b"hGeTaLl", b"h"]), Some("hgetall"));
    assert_eq!(command_name(&[b"nosuch"]), None);
    assert_eq!(command_name(&[]), None);
    assert!(serves_on_backup(&[b"ping"]) && serves_on_backup(&[b"INFO", b"replication"]));
    for conn in
        [&[b"HELLO" as &[u8], b"3"][..], &[b"client", b"setname", b"x"], &[b"select", b"0"], &[b"COMMAND"], &[b"auth", b"p"]]
    {
        assert!(serves_on_backup(conn), "{conn:?}");
    }
    assert!(!serves_on_backup(&[b"get", b"k"]) && !serves_on_backup(&[]));
    assert!(
        !serves_on_backup(&[b"multi"]) && !serves_on_backup(&[b"set", b"k", b"v"]),
        "state and transactions are the primary's"
    );
}

#[test]
fn hello_negotiates_resp2_or_resp3() {
    let mut c = Client::new(42);
    assert_eq!(c.run(&[b"HELLO", b"4"]), b"-NOPROTO unsupported protocol version\r\n");
    let V::Arr(Some(items)) = one_reply(&c.run(&[b"HELLO"])) else { panic!("HELLO reply") };
    assert_eq!(items[5], V::Int(2), "proto");
    assert_eq!(items[7], V::Int(42), "id");
    // HELLO 3 answers in RESP3 (a map) and switches the connection.
    let hello3 = c.run(&[b"HELLO", b"3"]);
    assert!(hello3.starts_with(b"%7\r\n$6\r\nserver\r\n"), "{}", String::from_utf8_lossy(&hello3));
    assert!(String::from_utf8_lossy(&hello3).contains("proto\r\n:3\r\n"), "{}", String::from_utf8_lossy(&hello3));
    assert!(c.session.resp3());
    assert_eq!(c.run(&[b"GET", b"nokey"]), b"_\r\n", "RESP3 null");
    assert_eq!(c.run(&[b"HSET", b"h", b"f", b"v"]), b":1\r\n");
    assert_eq!(c.run(&[b"HGETALL", b"h"]), b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n", "RESP3 map");
    assert_eq!(c.run(&[b"HELLO", b"2"])[..2], *b"*1", "back to RESP2");
    assert_eq!(c.run(&[b"GET", b"nokey"]), b"$-1\r\n");
    assert_eq!(c.run(&[b"CLIENT", b"ID"]), b":42\r\n");
    assert_eq!(c.run(&[b"CLIENT", b"SETINFO", b"LIB-NAME", b"redis-py"]), b"+OK\r\n");
    assert_eq!(c.run(&[b"CLIENT", b"SETINFO", b"color", b"red"]), b"-ERR Unrecognized option 'color'\r\n");
}

/// One command of `s` on a machine that other sessions share, as the node
/// runs it on the primary: WATCH and EXEC see the keyspace, writes apply.
fn on_shared(kv: &mut Kv, s: &mut Session, argv: &[&[u8]]) -> (Dispatch, Vec<u8>) {
    let (mut op, mut out) = (Vec::new(), Vec::new());
    let now_ms = common::wall_us() / 1000;
    let mut d = s.dispatch(argv, &mut op, &mut out);
    if d == Dispatch::Keyspace {
        d = s.keyspace(kv, now_ms, argv, &mut op, &mut out);
    }
    match d {
        Dispatch::Write => kv.apply(&mut common::RealCtx, &op, &mut out),
        Dispatch::Read => kv.read_argv(now_ms, argv, &mut out),
        _ => {}
    }
    (d, out)
}

#[test]
fn watch_aborts_exec_when_another_connection_changed_a_watched_key() {
    let mut kv = Kv::new();
    let (mut a, mut b) = (Session::new(1), Session::new(2));
    on_shared(&mut kv, &mut b, &[b"SET", b"k", b"1"]);
    assert_eq!(on_shared(&mut kv, &mut a, &[b"WATCH", b"k", b"other"]), (Dispatch::Done, b"+OK\r\n".to_vec()));
    on_shared(&mut kv, &mut b, &[b"SET", b"unwatched", b"x"]);
    on_shared(&mut kv, &mut a, &[b"MULTI"]);
    on_shared(&mut kv, &mut a, &[b"INCR", b"k"]);
    assert_eq!(on_shared(&mut kv, &mut a, &[b"EXEC"]), (Dispatch::Write, b"*1\r\n:2\r\n".to_vec()));

    // Another connection's change between WATCH and EXEC: nothing is
    // logged, and the null reply waits like a read's (it tells of state).
    on_shared(&mut kv, &mut a, &[b"WATCH", b"k"]);
    on_shared(&mut kv, &mut b, &[b"SET", b"k", b"5"]);
    on_shared(&mut kv, &mut a, &[b"MULTI"]);
    on_shared(&mut kv, &mut a, &[b"INCR", b"k"]);
    assert_eq!(on_shared(&mut kv, &mut a, &[b"EXEC"]), (Dispatch::Gated, b"*-1\r\n".to_vec()));
    assert_eq!(on_shared(&mut kv, &mut a, &[b"GET", b"k"]).1, b"$1\r\n5\r\n");

    // Each connection's watch is its own: B's transaction runs, and its
    // change aborts A's; a new connection watches from its own WATCH.
    on_shared(&mut kv, &mut a, &[b"WATCH", b"k"]);
    on_shared(&mut kv, &mut b, &[b"WATCH", b"k"]);
    on_shared(&mut kv, &mut b, &[b"MULTI"]);
    on_shared(&mut kv, &mut b, &[b"SET", b"k", b"b"]);
    assert_eq!(on_shared(&mut kv, &mut b, &[b"EXEC"]).0, Dispatch::Write);
    on_shared(&mut kv, &mut a, &[b"MULTI"]);
    assert_eq!(on_shared(&mut kv, &mut a, &[b"EXEC"]), (Dispatch::Gated, b"*-1\r\n".to_vec()), "B's EXEC changed k");
    drop(a);
    let mut c = Session::new(3);
    on_shared(&mut kv, &mut c, &[b"WATCH", b"k"]);
    on_shared(&mut kv, &mut c, &[b"MULTI"]);
    assert_eq!(on_shared(&mut kv, &mut c, &[b"EXEC"]), (Dispatch::Done, b"*0\r\n".to_vec()), "an empty transaction");
}

#[test]
fn info_inside_multi_aborts_the_transaction() {
    let mut c = Client::new(1);
    c.run(&[b"MULTI"]);
    assert_eq!(c.run(&[b"INFO"]), b"-ERR Command not allowed inside a transaction\r\n");
    assert_eq!(c.run(&[b"EXEC"]), b"-EXECABORT Transaction discarded because of previous errors.\r\n");
}

#[test]
fn transactions_are_bounded_by_the_request_flag() {
    let mut c = Client::new(1);
    // The default matches the node's default --request-bytes-max.
    assert_eq!(understudy_kv::session::TRANSACTION_BYTES_MAX, 16 << 20);
    c.session.set_op_bytes_max(1000);
    c.run(&[b"MULTI"]);
    let big = vec![b'v'; 400];
    assert_eq!(c.run(&[b"SET", b"a", &big]), b"+QUEUED\r\n");
    assert_eq!(c.run(&[b"SET", b"b", &big]), b"+QUEUED\r\n");
    let err = String::from_utf8(c.run(&[b"SET", b"c", &big])).unwrap();
    assert!(err.contains("exceeds --request-bytes-max (1000 bytes)"), "{err}");
    assert_eq!(c.run(&[b"EXEC"]), b"-EXECABORT Transaction discarded because of previous errors.\r\n");
    assert_eq!(c.run(&[b"DBSIZE"]), b":0\r\n");
}

#[test]
fn exec_is_one_atomic_write_with_reads_inside() {
    let mut c = Client::new(1);
    for cmd in [&[&b"MULTI"[..]][..], &[b"SET", b"n", b"1"], &[b"INCR", b"n"], &[b"GET", b"n"], &[b"PING"], &[b"ECHO", b"e"]] {
        c.run(cmd);
    }
    let before = c.log.len();
    assert_eq!(c.run(&[b"EXEC"]), b"*5\r\n+OK\r\n:2\r\n$1\r\n2\r\n+PONG\r\n$1\r\ne\r\n");
    assert_eq!(c.log.len(), before + 1, "the whole transaction is one op");
    // The same op replayed on a fresh store gives the same reply.
    let mut replica = understudy_kv::Kv::new();
    let mut out = Vec::new();
    understudy_core::StateMachine::apply(&mut replica, &mut common::RealCtx, c.log.last().unwrap(), &mut out);
    assert_eq!(out, b"*5\r\n+OK\r\n:2\r\n$1\r\n2\r\n+PONG\r\n$1\r\ne\r\n");
}

#[test]
fn command_replies_are_well_formed() {
    let mut c = Client::new(1);
    let V::Arr(Some(all)) = one_reply(&c.run(&[b"COMMAND"])) else { panic!("COMMAND") };
    assert_eq!(one_reply(&c.run(&[b"COMMAND", b"COUNT"])), V::Int(all.len() as i64));
    assert!(all.iter().all(|e| matches!(e, V::Arr(Some(f)) if f.len() == 10)));
    assert_eq!(c.run(&[b"COMMAND", b"INFO", b"nosuch"]), b"*1\r\n$-1\r\n");
    // Unknown, so redis-cli falls back to its built-in help.
    assert_eq!(c.run(&[b"COMMAND", b"DOCS"]), b"-ERR unknown subcommand 'DOCS'. Try COMMAND HELP.\r\n");
    assert_eq!(c.run(&[b"CONFIG", b"GET", b"a*y"]), b"*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
    let V::Arr(Some(config)) = one_reply(&c.run(&[b"CONFIG", b"GET", b"*"])) else { panic!("CONFIG GET *") };
    assert!(config.len() > 40 && config.len() % 2 == 0, "{config:?}");
}

#[test]
fn reset_leaves_multi_and_name() {
    let mut c = Client::new(9);
    c.run(&[b"CLIENT", b"SETNAME", b"n"]);
    c.run(&[b"MULTI"]);
    assert_eq!(c.run(&[b"RESET"]), b"+RESET\r\n");
    assert!(!c.session.in_multi());
    assert_eq!(c.session.name(), None);
    assert_eq!(c.session.client_id(), 9);
}

/// With a password (`--requirepass-file`), replies are Redis 7's with
/// `requirepass` set (captured from redis-server 7.0): only AUTH, HELLO,
/// QUIT and RESET before AUTH; unknown commands and arity errors first.
#[test]
fn a_password_is_asked_for_as_redis_asks_it() {
    let mut s = Session::new(9);
    s.set_password(Some(std::sync::Arc::from(&b"s3cret"[..])));
    let reply = |s: &mut Session, argv: &[&[u8]]| String::from_utf8(dispatch(s, argv).2).unwrap();
    assert_eq!(reply(&mut s, &[b"PING"]), "-NOAUTH Authentication required.\r\n");
    assert_eq!(dispatch(&mut s, &[b"GET", b"k"]).0, Dispatch::Done, "nothing reaches the machine");
    assert_eq!(reply(&mut s, &[b"INFO"]), "-NOAUTH Authentication required.\r\n");
    assert_eq!(reply(&mut s, &[b"US.SESSION", b"1"]), "-NOAUTH Authentication required.\r\n");
    assert!(reply(&mut s, &[b"FOO"]).starts_with("-ERR unknown command 'FOO'"));
    assert_eq!(reply(&mut s, &[b"GET"]), "-ERR wrong number of arguments for 'get' command\r\n");
    assert!(reply(&mut s, &[b"HELLO", b"3"]).starts_with("-NOAUTH HELLO must be called with the client already authenticated"));
    let wrong = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    assert_eq!(reply(&mut s, &[b"AUTH", b"nope"]), wrong);
    assert_eq!(reply(&mut s, &[b"AUTH", b"bob", b"s3cret"]), wrong);
    assert_eq!(reply(&mut s, &[b"HELLO", b"2", b"AUTH", b"default", b"wrong"]), wrong);
    assert_eq!(reply(&mut s, &[b"AUTH", b"a", b"b", b"c"]), "-ERR syntax error\r\n");
    assert_eq!(reply(&mut s, &[b"RESET"]), "+RESET\r\n");
    assert_eq!(reply(&mut s, &[b"AUTH", b"s3cret"]), "+OK\r\n");
    assert!(s.authenticated());
    assert_eq!(reply(&mut s, &[b"PING"]), "+PONG\r\n");
    assert_eq!(dispatch(&mut s, &[b"GET", b"k"]).0, Dispatch::Read);
    // RESET makes the connection the default user again: unauthenticated.
    assert_eq!(reply(&mut s, &[b"RESET"]), "+RESET\r\n");
    assert_eq!(reply(&mut s, &[b"PING"]), "-NOAUTH Authentication required.\r\n");
    assert!(reply(&mut s, &[b"HELLO", b"3", b"AUTH", b"default", b"s3cret"]).starts_with("*14\r\n"));
    assert!(s.authenticated() && s.resp3());
    let mut s = Session::new(10);
    s.set_password(Some(std::sync::Arc::from(&b"s3cret"[..])));
    assert_eq!(reply(&mut s, &[b"AUTH", b"default", b"s3cret"]), "+OK\r\n");
    // Without a password, AUTH says so, as Redis does.
    let mut s = Session::new(11);
    assert!(reply(&mut s, &[b"AUTH", b"x"]).starts_with("-ERR AUTH <password> called without any password configured"));
    assert_eq!(reply(&mut s, &[b"AUTH", b"default", b"x"]), "+OK\r\n");
}

/// CLIENT LIST, INFO and KILL over the connections of one node (sessions
/// sharing an `Admin`): the node fills in addresses and the waker.
#[test]
fn client_list_and_kill_span_the_node_s_connections() {
    use std::cell::Cell;
    use std::rc::Rc;
    use understudy_kv::admin::Admin;
    let admin = Rc::new(Admin::default());
    let mut a = Session::with_admin(1, admin.clone());
    let mut b = Session::with_admin(2, admin.clone());
    a.client_info().set_peer("127.0.0.1:1000".into(), "127.0.0.1:6379".into(), 7);
    b.client_info().set_peer("127.0.0.1:2000".into(), "127.0.0.1:6379".into(), -1);
    let woken = Rc::new(Cell::new(false));
    let w = woken.clone();
    b.client_info().set_waker(Box::new(move || w.set(true)));
    let reply = |s: &mut Session, argv: &[&[u8]]| String::from_utf8(dispatch(s, argv).2).unwrap();
    assert_eq!(reply(&mut b, &[b"CLIENT", b"SETNAME", b"bee"]), "+OK\r\n");
    assert_eq!(reply(&mut b, &[b"MULTI"]), "+OK\r\n");
    assert_eq!(reply(&mut b, &[b"SET", b"k", b"v"]), "+QUEUED\r\n");
    let V::Bulk(Some(list)) = one_reply(&dispatch(&mut a, &[b"CLIENT", b"LIST"]).2) else { panic!("CLIENT LIST") };
    let list = String::from_utf8(list).unwrap();
    let lines: Vec<&str> = list.split('\n').collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(lines[0].starts_with("id=1 addr=127.0.0.1:1000 laddr=127.0.0.1:6379 fd=7 name= age=0 idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0"), "{list}");
    assert!(lines[0].ends_with("events=r cmd=client|list user=default redir=-1 resp=2"), "{list}");
    assert!(
        lines[1].starts_with(
            "id=2 addr=127.0.0.1:2000 laddr=127.0.0.1:6379 fd=-1 name=bee age=0 idle=0 flags=x db=0 sub=0 psub=0 ssub=0 multi=1 "
        ),
        "{list}"
    );
    assert!(lines[1].contains(" cmd=set user=default "), "{list}");
    assert_eq!(reply(&mut a, &[b"CLIENT", b"LIST", b"ID", b"2", b"9"]).lines().count(), 3, "one client");
    assert!(reply(&mut a, &[b"CLIENT", b"INFO"]).contains("id=1 addr=127.0.0.1:1000"));
    // The old form answers +OK; by ID, SKIPME yes by default: not itself.
    assert_eq!(reply(&mut a, &[b"CLIENT", b"KILL", b"ID", b"1"]), ":0\r\n");
    assert_eq!(reply(&mut a, &[b"CLIENT", b"KILL", b"127.0.0.1:2000"]), "+OK\r\n");
    assert!(woken.get() && b.client_info().killed() && !a.client_info().killed());
    assert_eq!(reply(&mut a, &[b"CLIENT", b"KILL", b"USER", b"default", b"SKIPME", b"no"]), ":2\r\n");
    assert!(a.client_info().take_close_after_reply(), "it killed itself: closed after the reply");
    drop(b);
    assert_eq!(admin.clients(), 1, "a dropped session leaves the registry");
    assert_eq!(reply(&mut a, &[b"RESET"]), "+RESET\r\n");
    assert_eq!(admin.clients(), 1, "RESET keeps the connection registered");
}

/// Users of an ACL file: AUTH user pass, NOPERM, and the exactly-once
/// commands only for a user who may run everything.
#[test]
fn acl_users_authenticate_and_are_refused_what_they_may_not_run() {
    use std::rc::Rc;
    use understudy_kv::acl::Users;
    use understudy_kv::admin::Admin;
    let (users, _) = Users::parse("user default off\nuser ro on >pw ~* +@read\nuser all on >x ~* &* +@all\n", "f", None).unwrap();
    let admin = Rc::new(Admin::new(std::sync::Arc::new(users)));
    let mut s = Session::with_admin(3, admin);
    let reply = |s: &mut Session, argv: &[&[u8]]| String::from_utf8(dispatch(s, argv).2).unwrap();
    assert!(!s.authenticated(), "the default user is off");
    assert_eq!(reply(&mut s, &[b"GET", b"k"]), "-NOAUTH Authentication required.\r\n");
    assert_eq!(reply(&mut s, &[b"AUTH", b"default", b""]), "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    assert_eq!(reply(&mut s, &[b"AUTH", b"ro", b"pw"]), "+OK\r\n");
    assert_eq!(dispatch(&mut s, &[b"GET", b"k"]).0, Dispatch::Read);
    assert_eq!(reply(&mut s, &[b"SET", b"k", b"v"]), "-NOPERM this user has no permissions to run the 'set' command\r\n");
    assert_eq!(reply(&mut s, &[b"US.SESSION", b"1"]), "-NOPERM this user has no permissions to run the 'us.session' command\r\n");
    assert_eq!(reply(&mut s, &[b"CLIENT", b"INFO"]), "-NOPERM this user has no permissions to run the 'client|info' command\r\n");
    assert_eq!(reply(&mut s, &[b"AUTH", b"all", b"x"]), "+OK\r\n");
    assert!(reply(&mut s, &[b"CLIENT", b"INFO"]).contains(" user=all "));
    assert_eq!(dispatch(&mut s, &[b"SET", b"k", b"v"]).0, Dispatch::Write);
}
