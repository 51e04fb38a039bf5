//! Issue 14: `--appendfsync`. With `always`, kill -9 of both nodes at once
//! under load, repeated at random moments, loses no acknowledged write:
//! the restarted nodes resume from their disks (one claims, the other
//! joins it). A torn tail is cut with a line saying how much; a corrupt
//! log makes the node wait for the operator instead of resuming, and
//! `understudy forget` lets it resume from what its disk holds.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;
use understudy_client::Reply;

const ALWAYS: [&str; 4] = ["--appendfsync", "always", "--snapshot-every-bytes", "256KiB"];

/// A little randomness without a dependency: the clock's nanoseconds.
fn random_below(n: u64) -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    (t.subsec_nanos() as u64 ^ (t.as_secs() << 7)) % n.max(1)
}

/// kill -9 of both nodes at once: both signals go out before either is reaped.
fn kill9_both(h: &mut Harness) {
    h.signal("a", libc::SIGKILL);
    h.signal("b", libc::SIGKILL);
    h.wait_exit("a", Duration::from_secs(10));
    h.wait_exit("b", Duration::from_secs(10));
}

/// Waits for either node to serve as primary of an epoch after `epoch`.
fn wait_any_primary(h: &Harness, epoch: u64) -> (String, u64) {
    wait_for("a or b to serve as primary from its disk", Duration::from_secs(120), || {
        let r = h.record().filter(|r| r.epoch > epoch)?;
        let n = h.node(&r.primary.node);
        serves_as_primary(&n.client, None).then(|| (r.primary.node.clone(), r.epoch))
    })
}

#[test]
fn kill9_of_both_nodes_at_once_under_load_loses_no_acknowledged_write() {
    let _s = serial();
    let mut h = Harness::new();
    h.node_args = ALWAYS.iter().map(|s| s.to_string()).collect();
    h.start_pair();
    let mut acked = Vec::new();
    let mut epoch = h.record().unwrap().epoch;
    for round in 0..3 {
        let load = Load::start(&h, 4, &format!("r{round}"));
        load.wait_more(300 + random_below(1_500), Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(random_below(200)));
        kill9_both(&mut h);
        let this_round = load.stop();
        assert!(!this_round.is_empty(), "round {round}: no write was acknowledged");
        acked.extend(this_round);
        // Both come back on their own directories, in either order.
        let (first, second) = if random_below(2) == 0 { ("a", "b") } else { ("b", "a") };
        h.start_node(first, &[]);
        std::thread::sleep(Duration::from_millis(random_below(300)));
        h.start_node(second, &[]);
        let (primary, e) = wait_any_primary(&h, epoch);
        epoch = e;
        assert_all_present(&h.node(&primary).client, &acked);
        let backup = if primary == "a" { "b" } else { "a" };
        h.wait_in_sync(backup);
        let log = h.log_of(&primary);
        assert!(log.contains("recovered seq") && log.contains("claims epoch"), "{primary} resumed from its disk:\n{log}");
        let info = h.conn(&primary).call(&["INFO", "persistence"]).unwrap();
        let info = String::from_utf8_lossy(info.bytes().unwrap()).into_owned();
        assert!(info.contains("aof_enabled:1\r\n") && info.contains("understudy_appendfsync:always\r\n"), "{info}");
    }
    // The state kept growing on disk and was compacted by snapshots.
    let files: Vec<String> =
        std::fs::read_dir(h.path("a")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(files.iter().any(|f| f.ends_with(".snap")), "a wrote snapshots: {files:?}");
    let acked_total = acked.len();
    assert!(acked_total > 900, "{acked_total} writes over three rounds");
}

/// One node with `always`, `n` keys written one by one, then kill -9.
fn single_node_with_keys(n: usize) -> Harness {
    let mut h = Harness::new();
    h.node_args = ALWAYS.iter().map(|s| s.to_string()).collect();
    h.start_node("a", &[]);
    h.wait_primary("a");
    let mut c = h.conn("a");
    for i in 0..n {
        assert_eq!(c.call(&["SET", &format!("k{i}"), &format!("{i}")]).unwrap(), Reply::Simple("OK".into()));
    }
    h.kill9("a");
    h
}

fn segments(h: &Harness) -> Vec<std::path::PathBuf> {
    let mut s: Vec<_> = std::fs::read_dir(h.path("a"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    s.sort();
    s
}

fn present(h: &Harness, n: usize) -> Vec<bool> {
    let mut c = h.conn("a");
    (0..n).map(|i| c.call(&["GET", &format!("k{i}")]).unwrap().bytes() == Some(format!("{i}").as_bytes())).collect()
}

#[test]
fn a_torn_tail_is_cut_with_a_report_and_the_node_resumes_with_what_precedes_it() {
    let _s = serial();
    let mut h = single_node_with_keys(100);
    // A power loss in the middle of the last write: its record is cut short.
    let last = segments(&h).pop().expect("a log segment");
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&last).unwrap().set_len(len - 3).unwrap();
    h.start_node("a", &[]);
    h.wait_primary("a");
    let log = h.log_of("a");
    assert!(log.contains("torn write") && log.contains("cut"), "the cut is reported:\n{log}");
    let p = present(&h, 100);
    assert!(p[..99].iter().all(|x| *x), "every write before the torn one is there: {p:?}");
    assert!(!p[99], "the torn write is not");
}

#[test]
fn a_corrupt_log_waits_for_the_operator_then_resumes_from_what_precedes_the_damage() {
    let _s = serial();
    let mut h = single_node_with_keys(100);
    // A bad sector in the middle of the log: records after it cannot be
    // trusted, and this node may lack writes it acknowledged.
    let seg = segments(&h).pop().expect("a log segment");
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&seg, &bytes).unwrap();
    h.start_node("a", &[]);
    wait_for("a to report the corruption and wait", Duration::from_secs(60), || {
        let log = h.log_of("a");
        (log.contains("checksum") && log.contains("not known to be complete")).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(!serves_as_primary(&h.node("a").client, None), "a node that may lack acknowledged writes does not resume on its own");
    let forget = Command::new(BIN)
        .args(["forget", "--epoch", "1", "--arbiter", &h.arbiter_url(), "--cluster", CLUSTER, "--secret-file"])
        .arg(h.path("secret"))
        .output()
        .unwrap();
    assert!(forget.status.success(), "{}", String::from_utf8_lossy(&forget.stderr));
    h.wait_primary_after("a", 1);
    assert!(h.log_of("a").contains("recovered from its disk"), "{}", h.log_of("a"));
    let p = present(&h, 100);
    let kept = p.iter().take_while(|x| **x).count();
    assert!(kept > 0 && kept < 100 && p[kept..].iter().all(|x| !x), "a prefix of the writes is kept: {p:?}");
}

#[test]
fn appendfsync_needs_a_dir_and_a_known_mode() {
    let h = Harness::new();
    let run = |extra: &[&str]| {
        Command::new(BIN)
            .args(["kv", "--cluster", CLUSTER, "--node", "x", "--arbiter", &h.arbiter_url()])
            .args(["--client-listen", "127.0.0.1:0", "--repl-listen", "127.0.0.1:0", "--secret-file"])
            .arg(h.path("secret"))
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&["--appendfsync", "always"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("--appendfsync always needs --dir"), "{err}");
    let o = run(&["--appendfsync", "sometimes", "--dir", &tmp_path(&h.path("x"))]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("always, everysec or no"), "{err}");
}

#[test]
fn a_restarted_backup_catches_up_with_only_the_entries_it_missed() {
    let _s = serial();
    let mut h = Harness::new();
    h.node_args = ["--appendfsync", "always"].iter().map(|s| s.to_string()).collect();
    h.start_pair();
    let load = Load::start(&h, 4, "p");
    load.wait_more(500, Duration::from_secs(60));
    h.kill9("b");
    // An absence under load: the primary goes on alone (its own fsync
    // releases its replies).
    let before = load.acked();
    std::thread::sleep(Duration::from_secs(3));
    load.wait_more(500, Duration::from_secs(60));
    let missed = load.acked() - before;
    h.start_node("b", &[]);
    h.wait_in_sync("b");
    let (alog, blog) = (h.log_of("a"), h.log_of("b"));
    let line = alog
        .lines()
        .find(|l| l.contains("as a partial catch-up from seq"))
        .unwrap_or_else(|| panic!("no partial catch-up:\n{alog}"));
    let entries: u64 = line.split(": ").nth(1).and_then(|t| t.split(' ').next()).and_then(|n| n.parse().ok()).expect(line);
    assert!(entries >= missed && entries < missed + 2_000, "{entries} entries sent for {missed} writes missed: {line}");
    let restarted = blog.rsplit("listening:").next().unwrap();
    assert!(restarted.contains("catching up from its own state") && !restarted.contains("snapshot at seq"), "{blog}");
    // The state it caught up to is whole: it serves every acknowledged write.
    load.wait_more(300, Duration::from_secs(60));
    let epoch = h.record().unwrap().epoch;
    h.kill9("a");
    h.wait_primary_after("b", epoch);
    let acked = load.stop();
    assert_all_present(&h.node("b").client, &acked);
}

#[test]
fn a_quiet_node_still_writes_a_snapshot_after_snapshot_every_secs() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_node("a", &["--appendfsync", "everysec", "--snapshot-every-secs", "1"]);
    h.wait_primary("a");
    let mut c = h.conn("a");
    // Far below --snapshot-every-bytes: only time can call for a snapshot.
    for i in 0..5 {
        assert_eq!(c.call(&["SET", &format!("k{i}"), "v"]).unwrap(), Reply::Simple("OK".into()));
        std::thread::sleep(Duration::from_millis(400));
    }
    wait_for("a snapshot on disk", Duration::from_secs(30), || {
        std::fs::read_dir(h.path("a")).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".snap")).then_some(())
    });
    assert!(h.log_of("a").contains("on disk ("), "{}", h.log_of("a"));
}
