//! `--appendfsync always` in the protocol: acks and releases follow what
//! the disk holds, and after a whole-cluster power loss a member whose
//! disk holds every write it acknowledged resumes from it (exactly one
//! wins the claim; a node that is not a member, or whose log is not
//! complete, never claims).

mod common;
use common::*;
use understudy_core::{ArbiterView, ClaimOutcome, Command, Config, Core, Event, RoleName};
use understudy_wire::msg::Ack;

fn durable_cfg() -> Config {
    Config { durable_acks: true, ..cfg() }
}

fn durable_primary() -> Core {
    let mut c = Core::new(durable_cfg(), "a");
    c.start(0);
    c.take_commands();
    c.handle(0, Event::ArbiterRead(Ok(None)));
    c.handle(0, Event::ClaimDone { epoch: 1, outcome: ClaimOutcome::Granted });
    assert_eq!(c.take_commands(), vec![Command::Claim { epoch: 1 }, Command::BecomePrimary { epoch: 1, from_backup: false }]);
    c
}

fn members(epoch: u64, primary: &str, members: &[&str]) -> ArbiterView {
    ArbiterView { members: members.iter().map(|m| m.to_string()).collect(), ..view(epoch, primary) }
}

/// A node that recovered its state from disk (epoch 3, seq 40).
fn recovered(node: &str, complete: bool) -> Core {
    let mut c = Core::new(durable_cfg(), node);
    c.recovered(3, 40, complete);
    c.start(0);
    assert_eq!(c.take_commands(), vec![Command::ReadArbiter]);
    c
}

#[test]
fn an_unprotected_primary_releases_only_what_its_disk_holds() {
    let mut c = durable_primary();
    assert_eq!(c.append(), 1);
    assert_eq!(c.append(), 2);
    assert_eq!(c.release_upto(), 0, "nothing leaves before the fsync");
    assert_eq!(c.read_tag(), 2, "a read waits for what it saw to be on disk");
    c.handle(5, Event::Durable { upto: 1 });
    assert_eq!(c.take_commands(), vec![Command::Release { upto: 1 }]);
    c.handle(6, Event::Durable { upto: 2 });
    assert_eq!(c.take_commands(), vec![Command::Release { upto: 2 }]);
    assert_eq!(c.release_upto(), 2);
}

#[test]
fn a_protected_primary_releases_what_both_disks_hold() {
    let mut c = durable_primary();
    for _ in 0..3 {
        c.append();
    }
    c.handle(1, Event::Durable { upto: 3 });
    c.handle(1, Event::JoinRequest { conn: 7, node: "b".into(), epoch: 1, resume: None });
    c.handle(2, Event::Ack { conn: 7, epoch: 1, ack: ack(3, 3) });
    c.take_commands();
    c.append();
    c.append(); // 5
    c.handle(3, Event::Ack { conn: 7, epoch: 1, ack: ack(5, 3) });
    assert_eq!(c.release_upto(), 3, "the backup holds 5 but this node's disk only 3");
    c.handle(4, Event::Durable { upto: 4 });
    assert_eq!(c.release_upto(), 4);
    c.handle(5, Event::Durable { upto: 5 });
    assert_eq!(c.release_upto(), 5);
    c.append(); // 6
    c.handle(6, Event::Durable { upto: 6 });
    assert_eq!(c.release_upto(), 5, "and the backup has not acked 6");
}

#[test]
fn a_backup_acks_only_what_its_disk_holds_its_snapshot_first() {
    let mut c = Core::new(durable_cfg(), "b");
    c.start(0);
    c.take_commands();
    c.handle(0, Event::ArbiterRead(Ok(Some(view(1, "a")))));
    c.take_commands();
    c.handle(1, Event::Joined { conn: 3, primary: "a".into(), epoch: 1, snapshot_seq: 5 });
    c.handle(2, Event::SnapshotLoaded { seq: 5 });
    c.handle(3, Event::Entries { conn: 3, epoch: 1, first: 6, last: 9 });
    c.poll(3);
    let loaded_not_on_disk = Ack { received: 5, executed: 5, snapshot_loaded: false };
    assert_eq!(c.take_commands(), vec![Command::SendAck { conn: 3, ack: loaded_not_on_disk }]);
    c.handle(4, Event::Durable { upto: 5 });
    c.poll(4);
    assert_eq!(
        c.take_commands(),
        vec![Command::SendAck { conn: 3, ack: Ack { received: 5, executed: 5, snapshot_loaded: true } }]
    );
    c.handle(5, Event::Durable { upto: 8 });
    c.poll(5);
    assert_eq!(
        c.take_commands(),
        vec![Command::SendAck { conn: 3, ack: Ack { received: 8, executed: 5, snapshot_loaded: true } }]
    );
}

#[test]
fn a_complete_member_whose_primary_is_gone_resumes_from_its_disk() {
    let mut c = recovered("b", true);
    c.handle(1, Event::ArbiterRead(Ok(Some(members(3, "a", &["a", "b"])))));
    assert_eq!(c.take_commands(), vec![Command::Connect { repl: "a:7701".into(), epoch: 3 }], "it tries the primary first");
    c.handle(2, Event::JoinFailed { reason: "connection refused".into(), code: None, peer_epoch: None });
    let cmds = c.take_commands();
    assert_eq!(protocol(cmds.clone()), vec![Command::Claim { epoch: 4 }]);
    assert!(notices(&cmds)[0].contains("through seq 40"), "{cmds:?}");
    c.handle(3, Event::ClaimDone { epoch: 4, outcome: ClaimOutcome::Granted });
    assert_eq!(c.take_commands(), vec![Command::BecomePrimary { epoch: 4, from_backup: false }]);
    assert_eq!(c.append(), 41, "the log continues after the recovered seq");
}

#[test]
fn of_two_restarted_members_the_loser_joins_the_winner() {
    let mut c = recovered("b", true);
    c.handle(1, Event::ArbiterRead(Ok(Some(members(3, "a", &["a", "b"])))));
    c.take_commands();
    c.handle(2, Event::JoinFailed { reason: "connection refused".into(), code: None, peer_epoch: None });
    c.take_commands();
    c.handle(3, Event::ClaimDone { epoch: 4, outcome: ClaimOutcome::Superseded { current: 4, holder: "a".into() } });
    assert_eq!(c.take_commands(), vec![Command::ReadArbiter]);
    c.handle(4, Event::ArbiterRead(Ok(Some(members(4, "a", &["a"])))));
    assert_eq!(c.take_commands(), vec![Command::Connect { repl: "a:7701".into(), epoch: 4 }]);
    c.handle(5, Event::Joined { conn: 9, primary: "a".into(), epoch: 4, snapshot_seq: 44 });
    assert_eq!(c.role_name(), RoleName::Joining);
    assert!(!c.resumes_from_disk(), "its disk state was replaced by the join");
    assert_eq!(c.durable(), 0);
}

#[test]
fn a_node_named_primary_gives_its_backup_time_to_go_live_then_resumes() {
    let mut c = recovered("a", true);
    c.handle(1, Event::ArbiterRead(Ok(Some(members(3, "a", &["a", "b"])))));
    assert_eq!(protocol(c.take_commands()), vec![]);
    // Retries until two failure timeouts (200 ms) have passed.
    let mut t = 1;
    let claimed = loop {
        t += 50;
        c.poll(t);
        let cmds = protocol(c.take_commands());
        if cmds.is_empty() {
            continue;
        }
        assert_eq!(cmds, vec![Command::ReadArbiter]);
        c.handle(t, Event::ArbiterRead(Ok(Some(members(3, "a", &["a", "b"])))));
        let cmds = protocol(c.take_commands());
        if cmds == vec![Command::Claim { epoch: 4 }] {
            break t;
        }
        assert_eq!(cmds, vec![]);
        assert!(t < 2_000, "never claimed");
    };
    assert!(claimed >= 200, "claimed at {claimed} ms, before the backup had two failure timeouts");
    // Alone in its epoch, it claims at once.
    let mut c = recovered("a", true);
    c.handle(1, Event::ArbiterRead(Ok(Some(members(3, "a", &["a"])))));
    assert_eq!(protocol(c.take_commands()), vec![Command::Claim { epoch: 4 }]);
}

#[test]
fn an_incomplete_log_or_a_non_member_never_claims() {
    for (node, complete, view) in [
        ("b", false, members(3, "a", &["a", "b"])),
        ("c", true, members(3, "a", &["a", "b"])),
        ("a", false, members(3, "a", &["a"])),
    ] {
        let mut c = recovered(node, complete);
        c.handle(1, Event::ArbiterRead(Ok(Some(view.clone()))));
        c.handle(2, Event::JoinFailed { reason: "connection refused".into(), code: None, peer_epoch: None });
        for t in (100..5_000).step_by(100) {
            c.poll(t);
            for cmd in protocol(c.take_commands()) {
                assert!(!matches!(cmd, Command::Claim { .. }), "{node} (complete: {complete}) claimed: {view:?}");
                if cmd == Command::ReadArbiter {
                    c.handle(t, Event::ArbiterRead(Ok(Some(view.clone()))));
                }
            }
        }
    }
}

#[test]
fn without_always_a_recovered_node_waits_like_an_empty_one() {
    let mut c = Core::new(cfg(), "b");
    c.recovered(3, 40, true);
    c.start(0);
    c.take_commands();
    assert!(!c.resumes_from_disk());
    c.handle(1, Event::ArbiterRead(Ok(Some(members(3, "a", &["a", "b"])))));
    c.handle(2, Event::JoinFailed { reason: "connection refused".into(), code: None, peer_epoch: None });
    assert!(!protocol(c.take_commands()).iter().any(|c| matches!(c, Command::Claim { .. })));
}

#[test]
fn a_disk_state_with_no_record_at_the_arbiter_is_refused_naming_the_flags() {
    let mut c = recovered("b", true);
    c.handle(1, Event::ArbiterRead(Ok(None)));
    match &c.take_commands()[..] {
        [Command::Refuse { reason }] => assert!(reason.contains("--arbiter") && reason.contains("--dir"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_abandoned_epoch_resumes_from_whatever_the_disk_holds() {
    let mut c = Core::new(cfg(), "b");
    c.recovered(3, 40, false);
    c.start(0);
    c.take_commands();
    c.handle(1, Event::ArbiterRead(Ok(Some(members(3, "a", &["*"])))));
    let cmds = c.take_commands();
    assert_eq!(protocol(cmds.clone()), vec![Command::Claim { epoch: 4 }]);
    assert!(notices(&cmds)[0].contains("recovered from its disk"), "{cmds:?}");
    c.handle(2, Event::ClaimDone { epoch: 4, outcome: ClaimOutcome::Granted });
    assert_eq!(c.append(), 41);
}

/// A directory the operator moved away (after a recovery that failed)
/// recovers empty and complete; a member must not claim with it (simulator,
/// durable seed 2000017).
#[test]
fn an_empty_disk_is_no_reason_to_claim() {
    let mut c = Core::new(durable_cfg(), "b");
    c.recovered(0, 0, true);
    assert!(!c.resumes_from_disk());
    assert!(recovered("b", true).resumes_from_disk());
}
