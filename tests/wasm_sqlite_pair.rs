//! SQLite as a replicated pair (issue 12): guests/sqlserver.c keeps its
//! table in /data/kv.db, and every node maps its own copy of /data. Under a
//! load of acknowledged writes the primary is killed with kill -9: the
//! survivor serves every acknowledged write; a fresh node joins (its copy
//! of the database arrives with the live snapshot while the survivor keeps
//! serving) and takes over after a second kill -9. Each survivor's
//! database file, once its node is stopped, opens with the host's sqlite3:
//! intact, holding every write acknowledged before.

mod common;
use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn sqlite3(db: &Path, sql: &str) -> String {
    let out =
        Command::new("sqlite3").arg("-bail").arg(db).arg(sql).output().unwrap_or_else(|e| {
            panic!("cannot run sqlite3 ({e}): install the Debian package sqlite3 (scripts/install-deps does)")
        });
    assert!(out.status.success(), "sqlite3 {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The host's sqlite3 finds an intact database holding every pair of `acked`.
fn assert_file_holds(db: &Path, acked: &[(String, String)]) {
    assert_eq!(sqlite3(db, "PRAGMA integrity_check;").trim(), "ok", "{}", db.display());
    let rows = sqlite3(db, "SELECT k, CAST(v AS TEXT) FROM kv;");
    let have: std::collections::HashMap<&str, &str> = rows.lines().filter_map(|l| l.split_once('|')).collect();
    let missing: Vec<_> = acked.iter().filter(|(k, v)| have.get(k.as_str()) != Some(&v.as_str())).take(5).collect();
    assert!(missing.is_empty(), "{}: acknowledged writes missing from the file, e.g. {missing:?}", db.display());
}

fn map(h: &Harness, name: &str) -> String {
    format!("{}::/data", h.path(&format!("{name}-data")).display())
}

#[test]
fn sqlite_pair_keeps_every_acknowledged_write_through_two_kill9s() {
    let _s = serial();
    let mut h = Harness::new();
    h.node_env.push(("SQLSERVER_SYNC".into(), "OFF".into()));
    let (ma, mb, mc) = (map(&h, "a"), map(&h, "b"), map(&h, "c"));
    h.start_wasm_node("a", "sqlserver", &["--map-dir", &ma]);
    let r1 = h.wait_primary("a");
    let load = Load::start(&h, 3, "w");
    load.wait_more(300, Duration::from_secs(60));
    h.start_wasm_node("b", "sqlserver", &["--map-dir", &mb]);
    h.wait_in_sync("b");
    wait_for("b to restore the files", Duration::from_secs(60), || {
        h.log_of("b").contains("restored the guest's files").then_some(())
    });
    load.wait_more(500, Duration::from_secs(60));
    h.kill9("a");
    let r2 = h.wait_primary_after("b", r1.epoch);
    load.wait_more(300, Duration::from_secs(60));

    h.start_wasm_node("c", "sqlserver", &["--map-dir", &mc]);
    h.wait_in_sync("c");
    load.wait_more(500, Duration::from_secs(60));
    h.kill9("b");
    h.wait_primary_after("c", r2.epoch);
    load.wait_more(300, Duration::from_secs(60));
    let acked = load.stop();
    assert_all_present(&h.node("c").client, &acked);

    // The files: b's as it was killed, c's once stopped (kill -9 too: the
    // database must survive it, as after any crash).
    h.kill9("c");
    let dir = |n: &str| h.path(&format!("{n}-data"));
    assert_file_holds(&dir("c").join("kv.db"), &acked);
    assert_eq!(sqlite3(&dir("b").join("kv.db"), "PRAGMA integrity_check;").trim(), "ok", "b's file after its kill -9");
    let log_a = h.log_of("a");
    let sent = log_a.lines().chain(h.log_of("b").lines()).filter(|l| l.contains("live snapshot of the guest sent")).count();
    assert_eq!(sent, 2, "each join was a live snapshot with the files");
    eprintln!(
        "{} acknowledged writes; joins: {:?}",
        acked.len(),
        log_a.lines().chain(h.log_of("b").lines()).filter(|l| l.contains("live snapshot of the guest sent")).collect::<Vec<_>>()
    );
}
