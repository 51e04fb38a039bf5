//! Issue 10 §3: a cluster whose last in-sync replica died waits (Promise 4:
//! no empty node goes live), saying why; `understudy forget` is the
//! operator's deliberate, recorded way out — refused while the primary
//! answers or for any epoch but the current one — after which the next node
//! starts the cluster empty in the next epoch.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;
use understudy_client::Reply;

fn understudy(h: &Harness, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .args(["--arbiter", &h.arbiter_url(), "--cluster", CLUSTER, "--secret-file"])
        .arg(h.path("secret"))
        .output()
        .unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn a_dead_unprotected_cluster_waits_until_an_operator_forgets_its_epoch() {
    let _s = serial();
    let mut h = Harness::new();
    h.start_node("a", &[]);
    h.wait_primary("a");
    assert_eq!(h.conn("a").call(&["SET", "k", "v"]).unwrap(), Reply::Simple("OK".into()));

    // Refused while the primary answers: that would make two primaries.
    let o = understudy(&h, &["forget", "--epoch", "1"]);
    assert!(!o.status.success() && text(&o).contains("answers"), "{}", text(&o));
    h.kill9("a");

    // A new node waits for the dead primary, saying there was no backup.
    h.start_node("b", &[]);
    wait_for("b to say why it waits", Duration::from_secs(30), || {
        h.log_of("b").contains("it had no backup in sync: the cluster waits for it").then_some(())
    });
    assert!(!ping(&h.node("b").client) || !serves_as_primary(&h.node("b").client, None), "b does not serve empty");
    assert_eq!(understudy(&h, &["status"]).status.code(), Some(2), "the primary does not answer");

    // A stale epoch is refused, naming the current one.
    let o = understudy(&h, &["forget", "--epoch", "7"]);
    assert!(!o.status.success() && text(&o).contains("it is 1"), "{}", text(&o));
    assert!(!h.record().unwrap().is_abandoned());

    // (b goes away, so that status can be read before anyone claims.)
    h.kill9("b");
    let o = understudy(&h, &["forget", "--epoch", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let s = understudy(&h, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    assert!(v["abandoned_at_ms"].as_u64().is_some_and(|t| t > 1_600_000_000_000) && v["epoch"] == 1, "{v}");
    let s = understudy(&h, &["status"]);
    assert!(text(&s).contains("abandoned epoch 1 at 20"), "status says when: {}", text(&s));

    // The next node starts the cluster empty in epoch 2.
    h.start_node("c", &[]);
    let r = h.wait_primary_after("c", 1);
    assert_eq!(r.epoch, 2);
    assert!(h.log_of("c").contains("abandoned by an operator"), "{}", h.log_of("c"));
    let mut c = h.conn("c");
    assert_eq!(c.call(&["GET", "k"]).unwrap(), Reply::Bulk(None), "the abandoned state is gone");
    assert_eq!(c.call(&["SET", "k", "new"]).unwrap(), Reply::Simple("OK".into()));
    // And a restarted a joins the new primary as its backup.
    h.start_node("a", &[]);
    h.wait_in_sync("a");
    assert_eq!(understudy(&h, &["status"]).status.code(), Some(0));
}
