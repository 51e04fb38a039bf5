//! Differential tests against redis-server for what a script of commands
//! cannot compare byte for byte: ACL users (created with ACL SETUSER on
//! Redis, read from a file on ours), large sorted sets (Redis's skiplist
//! encoding), ZRANDMEMBER's picks (by shape and membership), and XADD's
//! generated IDs (by shape). The harness is `differential`.
//!
//! IDs from `*` come from the recorded clock: only their shape and order
//! can be compared with Redis's.

mod common;
mod differential;

use common::{args, one_reply, show, V};
use differential::*;

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
