//! Partitions between real hosts (DESIGN §1, §7.4): each replica and the
//! arbiter run the real binary in their own network namespace
//! (`tests/netns`), a client load runs from the test process, and links are
//! cut in the router between them. In every cell of the matrix exactly one
//! side serves afterwards, the other halts (exit code 3) or stays a backup,
//! no acknowledged write is lost, and after healing the halted node,
//! restarted, rejoins as an in-sync backup (`understudy status --json`).
//!
//! | cell | cut | who serves |
//! | --- | --- | --- |
//! | `pair_cut_arbiter_reachable_from_both` | a ↔ b | whoever wins the claim; the other halts at once |
//! | `pair_cut_arbiter_reachable_from_the_primary_only` | a ↔ b, b ↔ x | a; b cannot claim, halts when healed |
//! | `pair_cut_arbiter_reachable_from_the_backup_only` | a ↔ b, a ↔ x | b; a holds its replies, halts when healed |
//! | `pair_cut_arbiter_reachable_from_neither_then_healed` | a ↔ b, a ↔ x, b ↔ x | nobody while cut; then the claim winner |
//! | `one_way_cut_primary_to_backup` | a → b | the claim winner (b misses heartbeats, a sees it close) |
//! | `one_way_cut_backup_to_primary` | b → a | the claim winner (a misses acks, b sees it close) |
//! | `flapping_primary_link` | a's cable down/up, 6 times | a, or the claim winner after a long flap |
//!
//! Run as root (CI does): the tests fail, not skip, without `ip netns`.

mod common;
mod netns;

use std::time::{Duration, Instant};

use common::{assert_all_present, serial, serves_as_primary};
use netns::cluster::NsCluster;
use netns::load::Load;
use netns::Net;
use understudy_client::Conn;

/// Generous bound of every wait: CI has 2 shared cores.
const LIMIT: Duration = Duration::from_secs(60);
/// Load writers abandon a request unanswered this long (a primary that
/// lost its backup holds replies) and look the primary up again.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);

fn other(node: &str) -> &'static str {
    if node == "a" {
        "b"
    } else {
        "a"
    }
}

/// A pair under load: a primary, b its in-sync backup (default timeouts:
/// heartbeats every 50 ms, failover after 500 ms of silence).
fn healthy_pair() -> (NsCluster, Load, u64) {
    let mut c = NsCluster::new(&["a", "b"]);
    c.start_node("a");
    c.wait_primary("a");
    c.start_node("b");
    let r = c.wait_in_sync("b");
    let load = Load::start(&c, 4, "w", CLIENT_TIMEOUT);
    load.wait_more(300, LIMIT);
    (c, load, r.epoch)
}

/// A write sent straight to a node that must not acknowledge anything
/// (partitioned from its backup and from the arbiter) gets no answer.
fn assert_answers_nothing(c: &NsCluster, node: &str) {
    let mut conn = Conn::connect(&c.client_addr(node), Duration::from_millis(1500)).expect("the node is reachable");
    let r = conn.call(&["SET", "split-brain", node]);
    assert!(r.is_err(), "{node} acknowledged a write while cut from its backup and the arbiter: {r:?}");
}

/// What a cell ended with, for the report.
struct Outcome {
    winner: String,
    loser_exit: Option<i32>,
    acked: usize,
    failover: Duration,
    rejoin: Duration,
}

/// When the failover being measured started, or how long it took if the
/// cell measured it itself.
enum Failover {
    Since(Instant),
    Took(Duration),
}

/// After the cut: exactly one side serves a later epoch (`expected` if
/// given), clients write to it, the other side halts — at once if it
/// reaches the arbiter, after `heal` otherwise — and, restarted, rejoins as
/// an in-sync backup; every acknowledged write is on the survivor.
fn settle(
    mut c: NsCluster,
    load: Load,
    epoch0: u64,
    failover: Failover,
    expected: Option<&str>,
    heal: impl FnOnce(&mut Net),
) -> Outcome {
    let rec = c.wait_new_primary(epoch0, LIMIT);
    let failover = match failover {
        Failover::Since(t) => t.elapsed(),
        Failover::Took(d) => d,
    };
    let winner = rec.primary.node.clone();
    if let Some(e) = expected {
        assert_eq!(winner, e, "the side the arbiter can reach goes on");
    }
    let loser = other(&winner);
    load.wait_more(200, LIMIT);
    if c.running(loser) {
        assert!(!serves_as_primary(&c.client_addr(loser), None), "{loser} serves too: two primaries");
    }
    heal(&mut c.net);
    let loser_exit = c.wait_exit(loser, LIMIT);
    assert_eq!(loser_exit, Some(3), "{loser} fail-stops once it learns it lost (DESIGN §1)");
    let t = Instant::now();
    c.start_node(loser);
    c.wait_in_sync(loser);
    let rejoin = t.elapsed();
    load.wait_more(200, LIMIT);
    wait_status_converged(&c, &winner, loser);
    let acked = load.stop();
    assert_all_present(&c.client_addr(&winner), &acked);
    Outcome { winner, loser_exit, acked: acked.len(), failover, rejoin }
}

/// Waits until `understudy status --json` shows `primary` serving with
/// `backup` in sync and outputs protected. Status is published by the
/// primary asynchronously (and refreshed while the backup's lag changes:
/// keep the load running meanwhile).
fn wait_status_converged(c: &NsCluster, primary: &str, backup: &str) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let s = c.status_json();
        let (p, b) = (&s["primary"]["node"], &s["backup"]);
        if p == primary && b["node"] == backup && b["state"] == "in-sync" && s["protected"] == true {
            return;
        }
        assert!(Instant::now() < deadline, "status never showed {primary} primary with {backup} in sync: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn report(cell: &str, o: &Outcome) {
    eprintln!(
        "partition cell {cell}: {} serves; {} exited with {:?}; {} acknowledged writes, 0 lost; \
         new primary {:?} after the cut; halted node back in sync {:?} after its restart",
        o.winner,
        other(&o.winner),
        o.loser_exit,
        o.acked,
        o.failover,
        o.rejoin
    );
}

/// Cuts with `cut`, then `settle`s, healing everything.
fn run_cell(cell: &str, expected: Option<&str>, cut: impl FnOnce(&mut Net)) {
    let _s = serial();
    let (mut c, load, epoch0) = healthy_pair();
    let at = Instant::now();
    cut(&mut c.net);
    let o = settle(c, load, epoch0, Failover::Since(at), expected, Net::heal_all);
    report(cell, &o);
}

#[test]
fn pair_cut_arbiter_reachable_from_both() {
    run_cell("a<->b cut, arbiter reachable from both", None, |n| n.cut_between("a", "b"));
}

#[test]
fn pair_cut_arbiter_reachable_from_the_primary_only() {
    let _s = serial();
    let (mut c, load, epoch0) = healthy_pair();
    let at = Instant::now();
    c.net.cut_between("a", "b");
    c.net.cut_between("b", "x");
    let rec = c.wait_new_primary(epoch0, LIMIT);
    let took = at.elapsed();
    assert_eq!(rec.primary.node, "a");
    // b cannot win an epoch; it waits, serving nothing, until it can ask.
    load.wait_more(200, LIMIT);
    assert!(c.running("b"), "b stays a backup while it cannot reach the arbiter");
    assert!(!serves_as_primary(&c.client_addr("b"), None));
    let o = settle(c, load, epoch0, Failover::Took(took), Some("a"), Net::heal_all);
    report("a<->b and b<->arbiter cut", &o);
}

#[test]
fn pair_cut_arbiter_reachable_from_the_backup_only() {
    let _s = serial();
    let (mut c, load, epoch0) = healthy_pair();
    let at = Instant::now();
    c.net.cut_between("a", "b");
    c.net.cut_between("a", "x");
    let rec = c.wait_new_primary(epoch0, LIMIT);
    let took = at.elapsed();
    assert_eq!(rec.primary.node, "b");
    // The deposed primary is still reachable by clients and does not know:
    // it must acknowledge nothing (its outputs wait for a backup or an epoch).
    assert!(c.running("a"));
    assert_answers_nothing(&c, "a");
    let o = settle(c, load, epoch0, Failover::Took(took), Some("b"), Net::heal_all);
    report("a<->b and a<->arbiter cut", &o);
}

#[test]
fn pair_cut_arbiter_reachable_from_neither_then_healed() {
    let _s = serial();
    let (mut c, load, epoch0) = healthy_pair();
    c.net.cut_between("a", "b");
    c.net.cut_between("a", "x");
    c.net.cut_between("b", "x");
    // Both sides detect the failure (500 ms) and try to claim; nobody can.
    std::thread::sleep(Duration::from_millis(1000));
    let (acked_then, rec) = (load.acked(), c.record().expect("record"));
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(c.record().expect("record").epoch, rec.epoch, "an epoch was won without the arbiter");
    assert_eq!(load.acked(), acked_then, "a write was acknowledged while no side could win an epoch");
    assert!(c.running("a") && c.running("b"));
    assert_answers_nothing(&c, "a");
    // The arbiter comes back (the pair stays cut): exactly one side wins.
    let at = Instant::now();
    c.net.heal_between("a", "x");
    c.net.heal_between("b", "x");
    let o = settle(c, load, epoch0, Failover::Since(at), None, Net::heal_all);
    report("a<->b cut, arbiter reachable from neither, then from both", &o);
}

#[test]
fn one_way_cut_primary_to_backup() {
    run_cell("a->b dropped (one way)", None, |n| n.cut("a", "b"));
}

#[test]
fn one_way_cut_backup_to_primary() {
    run_cell("b->a dropped (one way)", None, |n| n.cut("b", "a"));
}

/// The primary's cable flaps: short outages (below the 500 ms failover
/// timeout) and long ones. Afterwards exactly one side serves: a still, with
/// b in sync, or the winner of a claim, with the other halted.
#[test]
fn flapping_primary_link() {
    let _s = serial();
    let (mut c, load, epoch0) = healthy_pair();
    let flaps_ms = [(150, 300), (350, 300), (250, 600), (900, 400), (200, 300), (1200, 500)];
    for (down, up) in flaps_ms {
        c.net.link_down("a");
        std::thread::sleep(Duration::from_millis(down));
        c.net.link_up("a");
        std::thread::sleep(Duration::from_millis(up));
    }
    let settled = Instant::now();
    let (winner, halted) = loop {
        assert!(settled.elapsed() < LIMIT, "the cluster did not settle after the flapping");
        std::thread::sleep(Duration::from_millis(50));
        let Some(r) = c.record() else { continue };
        let (p, o) = (r.primary.node.clone(), other(&r.primary.node));
        if !serves_as_primary(&c.client_addr(&p), None) {
            continue;
        }
        if !c.running(o) {
            break (p, true);
        }
        if r.backup.as_ref().is_some_and(|b| b.node == o && b.state == understudy_arbiter::BackupState::InSync) {
            break (p, false);
        }
    };
    let loser = other(&winner);
    let mut exit = None;
    if halted {
        exit = c.wait_exit(loser, LIMIT);
        assert_eq!(exit, Some(3));
        c.start_node(loser);
        c.wait_in_sync(loser);
    }
    load.wait_more(200, LIMIT);
    wait_status_converged(&c, &winner, loser);
    let acked = load.stop();
    assert_all_present(&c.client_addr(&winner), &acked);
    let epoch = c.record().unwrap().epoch;
    eprintln!(
        "partition cell flapping primary link ({flaps_ms:?} ms down/up): {winner} serves at epoch {epoch} (was {epoch0}); \
         {loser} {}; {} acknowledged writes, 0 lost",
        if halted { format!("exited with {exit:?} and rejoined in sync") } else { "stayed its in-sync backup".into() },
        acked.len()
    );
}
