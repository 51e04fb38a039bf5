//! `understudy status` exit codes, the contract monitoring scripts act on:
//! 0 protected, 1 unprotected (or a backup joining), 2 no primary or the
//! registered primary does not answer, 3 the status could not be read.
//! One cluster goes through each state with real processes; each state is
//! established from the arbiter's record (not from `status` itself) before
//! `status` is asked.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

struct Status {
    code: i32,
    json: serde_json::Value,
    text: String,
    stderr: String,
}

/// Runs `status --json` and `status` (text); both must exit alike.
fn status_with(url: &str, secret: &std::path::Path) -> Status {
    let run = |json: bool| {
        let mut c = Command::new(BIN);
        c.args(["status", "--arbiter", url, "--cluster", CLUSTER, "--secret-file"]).arg(secret);
        if json {
            c.arg("--json");
        }
        let out = c.output().unwrap();
        (
            out.status.code().expect("exited"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, json, stderr) = run(true);
    let (text_code, text, _) = run(false);
    assert_eq!(code, text_code, "--json and text exit alike:\n{json}\n{text}");
    let json = if code == 3 { serde_json::Value::Null } else { serde_json::from_str(&json).unwrap() };
    Status { code, json, text, stderr }
}

fn status(h: &Harness) -> Status {
    status_with(&h.arbiter_url(), &h.path("secret"))
}

#[test]
fn status_exit_codes_through_a_clusters_life() {
    let _s = serial();
    let mut h = Harness::new();

    // No cluster: 2, and the document says nobody answers.
    let s = status(&h);
    assert_eq!(s.code, 2, "no primary registered: {}", s.text);
    assert_eq!((s.json["epoch"].as_u64(), s.json["primary_answers"].as_bool()), (Some(0), Some(false)));

    // Status that cannot be read: 3, naming what is wrong.
    std::fs::write(h.path("wrong-secret"), "not-the-secret").unwrap();
    let s = status_with(&h.arbiter_url(), &h.path("wrong-secret"));
    assert_eq!(s.code, 3, "a wrong secret: {}", s.stderr);
    let s = status_with("bogus://127.0.0.1:1", &h.path("secret"));
    assert_eq!(s.code, 3, "a bad URL: {}", s.stderr);
    assert!(s.stderr.contains("bogus"), "{}", s.stderr);
    let bad_flag = Command::new(BIN).args(["status", "--clustr", "x"]).output().unwrap();
    assert_eq!(bad_flag.status.code(), Some(3), "a bad command line is 'unknown', not 'down'");

    // One node: it serves unprotected, and answers.
    h.start_node("a", &[]);
    h.wait_primary("a");
    let s = status(&h);
    assert_eq!(s.code, 1, "unprotected: {}", s.text);
    assert_eq!(s.json["primary_answers"], true);
    assert_eq!(s.json["protected"], false);
    assert!(s.text.contains("answers   yes"), "{}", s.text);

    // A backup in sync: 0.
    h.start_node("b", &[]);
    h.wait_in_sync("b");
    wait_for("the record to say protected", Duration::from_secs(60), || h.record().filter(|r| r.protected));
    let s = status(&h);
    assert_eq!(s.code, 0, "protected: {}", s.text);
    assert_eq!((s.json["primary"]["node"].as_str(), s.json["primary_answers"].as_bool()), (Some("a"), Some(true)));
    assert_eq!(s.json["backup"]["state"], "in-sync");

    // kill -9 of the backup: the primary re-claims alone, unprotected: 1.
    h.kill9("b");
    let r = wait_for("a to re-claim without its backup", Duration::from_secs(60), || {
        h.record().filter(|r| r.primary.node == "a" && r.backup.is_none() && !r.protected && r.epoch >= 2)
    });
    let s = status(&h);
    assert_eq!(s.code, 1, "unprotected after losing the backup: {}", s.text);
    assert_eq!(s.json["epoch"].as_u64(), Some(r.epoch));

    // kill -9 of that unprotected primary: the record still names it, and
    // nothing answers at its addresses: 2.
    h.kill9("a");
    assert_eq!(h.record().map(|r| r.primary.node), Some("a".to_string()), "nobody took over");
    let s = status(&h);
    assert_eq!(s.code, 2, "the registered primary is dead: {}", s.text);
    assert_eq!(s.json["primary"]["node"], "a");
    assert_eq!(s.json["primary_answers"], false);
    assert!(s.text.contains("answers   NO"), "{}", s.text);

    // The arbiter is gone: the status cannot be read: 3.
    h.kill_arbiter();
    let s = status(&h);
    assert_eq!(s.code, 3, "{}", s.stderr);
    assert!(s.stderr.contains(&h.arbiter_addr), "the error names the arbiter: {}", s.stderr);
}
