//! Issue 16, iteration: SCAN's cursor means the same on both replicas, so
//! a client that continues an iteration on the new primary after a kill -9
//! of the old one still sees every key that was present throughout.

mod common;
use common::*;
use std::collections::HashSet;
use understudy_client::Reply;

/// One SCAN call: (next cursor, keys).
fn scan(h: &Harness, node: &str, cursor: &str) -> (String, Vec<String>) {
    let r = h.conn(node).call(&["SCAN", cursor, "COUNT", "100"]).unwrap();
    let Reply::Array(Some(parts)) = r else { panic!("SCAN replied {r:?}") };
    let next = String::from_utf8(parts[0].bytes().expect("cursor").to_vec()).unwrap();
    let Reply::Array(Some(keys)) = &parts[1] else { panic!("SCAN elements {:?}", parts[1]) };
    (next, keys.iter().map(|k| String::from_utf8(k.bytes().unwrap().to_vec()).unwrap()).collect())
}

#[test]
fn a_scan_continues_on_the_new_primary_after_a_failover() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_pair();
    let all: HashSet<String> = (0..3000).map(|i| format!("key:{i}")).collect();
    let mut c = h.conn("a");
    for chunk in all.iter().collect::<Vec<_>>().chunks(500) {
        let cmds: Vec<Vec<&str>> = chunk.iter().map(|k| vec!["SET", k.as_str(), "v"]).collect();
        assert!(c.pipeline(&cmds).unwrap().iter().all(|r| *r == Reply::Simple("OK".into())));
    }
    let (mut seen, mut cursor, mut calls) = (HashSet::new(), "0".to_string(), 0);
    // Half the iteration on the primary...
    while calls < 8 {
        let (next, keys) = scan(&h, "a", &cursor);
        seen.extend(keys);
        calls += 1;
        cursor = next;
        assert_ne!(cursor, "0", "3000 keys take more than 8 calls of COUNT 100");
    }
    let epoch = h.record().unwrap().epoch;
    h.kill9("a");
    h.wait_primary_after("b", epoch);
    // ... the rest on the new one, with the same cursor.
    loop {
        let (next, keys) = scan(&h, "b", &cursor);
        seen.extend(keys);
        cursor = next;
        if cursor == "0" {
            break;
        }
        calls += 1;
        assert!(calls < 10_000, "the iteration never ended");
    }
    let missing: Vec<_> = all.difference(&seen).take(5).collect();
    assert!(
        missing.is_empty(),
        "keys never returned: {missing:?} ({} of {})",
        all.len() - all.intersection(&seen).count(),
        all.len()
    );
}
