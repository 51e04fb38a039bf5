//! The backup's side: receiving and acking, failure detection, go-live, and
//! Promise 4 (a joiner that is not in sync never claims). DESIGN §3.

mod common;
use common::*;
use understudy_core::{ClaimOutcome, Command, Core, Event, Outcome, RoleName};
use understudy_wire::msg::Ack;

#[test]
fn entries_are_acked_as_received_before_execution() {
    let mut c = in_sync_backup(5);
    c.handle(11, Event::Entries { conn: 3, epoch: 1, first: 6, last: 9 });
    c.poll(11);
    assert_eq!(c.take_commands(), vec![Command::SendAck { conn: 3, ack: ack(9, 5) }]);
    c.handle(12, Event::Executed { upto: 9 });
    c.poll(12);
    assert_eq!(c.take_commands(), vec![], "executed progress alone waits for the next ack (it gates nothing)");
    c.handle(13, Event::Entries { conn: 3, epoch: 1, first: 10, last: 10 });
    c.poll(13);
    assert_eq!(c.take_commands(), vec![Command::SendAck { conn: 3, ack: ack(10, 9) }], "it rides on the next received-ack");
    c.poll(14);
    assert_eq!(c.take_commands(), vec![], "nothing new and the heartbeat interval has not passed");
    c.handle(15, Event::Executed { upto: 10 });
    c.poll(23);
    assert_eq!(c.take_commands(), vec![Command::SendAck { conn: 3, ack: ack(10, 10) }], "liveness ack");
}

#[test]
fn a_gap_in_seqs_breaks_the_channel() {
    let mut c = in_sync_backup(5);
    c.handle(11, Event::Entries { conn: 3, epoch: 1, first: 7, last: 9 });
    let cmds = c.take_commands();
    assert!(matches!(&cmds[..], [Command::Close { conn: 3, .. }, Command::Claim { epoch: 2 }]), "{cmds:?}");
}

#[test]
fn go_live_waits_for_the_claim_and_the_drain() {
    let mut c = in_sync_backup(5);
    c.handle(11, Event::Entries { conn: 3, epoch: 1, first: 6, last: 8 });
    c.take_commands();
    poll_after_gap(&mut c, 200); // silence past the timeout
    assert_eq!(
        c.take_commands(),
        vec![Command::Close { conn: 3, reason: "primary silent for more than 100 ms".into() }, Command::Claim { epoch: 2 }]
    );
    assert_eq!(c.role_name(), RoleName::GoingLive);
    c.handle(201, Event::ClaimDone { epoch: 2, outcome: ClaimOutcome::Granted });
    assert_eq!(c.take_commands(), vec![], "entries 6..=8 are not executed yet");
    c.handle(202, Event::Executed { upto: 7 });
    assert_eq!(c.take_commands(), vec![]);
    c.handle(203, Event::Executed { upto: 8 });
    assert_eq!(c.take_commands(), vec![Command::BecomePrimary { epoch: 2, from_backup: true }]);
    assert!(c.is_primary());
    assert_eq!(c.epoch(), 2);
    // The new primary continues the log.
    assert_eq!(c.append(), 9);
}

#[test]
fn backup_that_loses_the_race_halts() {
    let mut c = in_sync_backup(5);
    c.handle(11, Event::ConnClosed { conn: 3, reason: "eof".into() });
    assert_eq!(c.take_commands(), vec![Command::Close { conn: 3, reason: "eof".into() }, Command::Claim { epoch: 2 }]);
    c.handle(12, Event::ClaimDone { epoch: 2, outcome: ClaimOutcome::Superseded { current: 2, holder: "a".into() } });
    assert!(matches!(&c.take_commands()[..], [Command::Halt { .. }]));
}

#[test]
fn joiner_that_is_not_in_sync_never_claims() {
    let mut c = Core::new(cfg(), "b");
    c.start(0);
    c.handle(0, Event::ArbiterRead(Ok(Some(view(1, "a")))));
    c.handle(1, Event::Joined { conn: 3, primary: "a".into(), epoch: 1, snapshot_seq: 50 });
    c.take_commands();
    c.poll(1);
    assert_eq!(
        c.take_commands(),
        vec![Command::SendAck { conn: 3, ack: Ack { received: 50, executed: 0, snapshot_loaded: false } }]
    );
    c.handle(5, Event::SnapshotLoaded { seq: 50 });
    c.handle(200, Event::ConnClosed { conn: 3, reason: "eof".into() });
    let cmds = c.take_commands();
    assert_eq!(notices(&cmds).len(), 1, "it says it starts over: {cmds:?}");
    assert_eq!(protocol(cmds), vec![Command::Close { conn: 3, reason: "eof".into() }, Command::ResetMachine]);
    assert_eq!(c.role_name(), RoleName::Starting);
    c.poll(260);
    assert_eq!(c.take_commands(), vec![Command::ReadArbiter], "it looks for a primary again, after the back-off");
}

#[test]
fn heartbeats_keep_a_backup_from_going_live() {
    let mut c = in_sync_backup(5);
    for t in (20..2000).step_by(50) {
        c.handle(t, Event::Heartbeat { conn: 3, epoch: 1, last_seq: 5 });
        c.poll(t + 1);
    }
    assert!(c.take_commands().iter().all(|c| matches!(c, Command::SendAck { .. })));
    assert_eq!(c.role_name(), RoleName::Backup);
}

#[test]
fn in_sync_notice_before_the_snapshot_is_a_protocol_error() {
    let mut c = Core::new(cfg(), "b");
    c.start(0);
    c.handle(0, Event::ArbiterRead(Ok(Some(view(1, "a")))));
    c.handle(1, Event::Joined { conn: 3, primary: "a".into(), epoch: 1, snapshot_seq: 0 });
    c.take_commands();
    c.handle(2, Event::InSync { conn: 3, epoch: 1 });
    let cmds = c.take_commands();
    assert!(cmds.contains(&Command::ResetMachine) && !cmds.iter().any(|c| matches!(c, Command::Claim { .. })), "{cmds:?}");
}

#[test]
fn empty_cluster_claims_epoch_one_and_a_lost_race_rereads() {
    let mut c = Core::new(cfg(), "a");
    c.start(0);
    c.take_commands();
    c.handle(0, Event::ArbiterRead(Ok(None)));
    assert_eq!(c.take_commands(), vec![Command::Claim { epoch: 1 }]);
    c.handle(1, Event::ClaimDone { epoch: 1, outcome: ClaimOutcome::Superseded { current: 1, holder: "x".into() } });
    assert_eq!(c.take_commands(), vec![Command::ReadArbiter]);
    c.handle(2, Event::ArbiterRead(Ok(Some(view(1, "x")))));
    assert_eq!(c.take_commands(), vec![Command::Connect { repl: "x:7701".into(), epoch: 1 }]);
}

#[test]
fn restarted_node_named_as_primary_waits_instead_of_serving() {
    let mut c = Core::new(cfg(), "a");
    c.start(0);
    c.take_commands();
    c.handle(0, Event::ArbiterRead(Ok(Some(view(3, "a")))));
    let cmds = c.take_commands();
    let told = notices(&cmds);
    assert!(told.len() == 1 && told[0].contains("\"a\"") && told[0].contains("epoch 3"), "it says why it waits: {told:?}");
    assert_eq!(protocol(cmds), vec![], "it holds no state: it must neither serve nor claim");
    c.poll(60);
    assert_eq!(c.take_commands(), vec![Command::ReadArbiter]);
}

#[test]
fn arbiter_unreachable_at_start_is_retried() {
    let mut c = Core::new(cfg(), "a");
    c.start(0);
    c.take_commands();
    c.handle(0, Event::ArbiterRead(Err("connection refused".into())));
    c.poll(10);
    let told = notices(&c.take_commands());
    assert!(told.len() == 1 && told[0].contains("connection refused") && told[0].contains("--arbiter"), "{told:?}");
    c.poll(50);
    assert_eq!(c.take_commands(), vec![Command::ReadArbiter]);
}

/// Simulator seed 153: the grant of epoch 1 was applied at the arbiter and
/// its answer lost. The node must ask for the claim again (the arbiter
/// answers a repeated claim as the first), not re-read the record and wait
/// for a "dead former self".
#[test]
fn lost_answer_to_the_first_claim_is_asked_again() {
    let mut c = Core::new(cfg(), "a");
    c.start(0);
    c.take_commands();
    c.handle(0, Event::ArbiterRead(Ok(None)));
    c.take_commands();
    c.handle(1, Event::ClaimDone { epoch: 1, outcome: ClaimOutcome::Error("timeout".into()) });
    c.poll(60);
    assert_eq!(protocol(c.take_commands()), vec![Command::Claim { epoch: 1 }]);
    c.handle(61, Event::ClaimDone { epoch: 1, outcome: ClaimOutcome::Granted });
    assert!(c.is_primary());
}

/// Simulator seed 443: a joiner reached a node that had won its claim but
/// was still draining; the join was never answered. Non-primaries refuse
/// joins, and an unanswered join is given up after the join timeout.
#[test]
fn joins_reaching_a_non_primary_are_refused_and_unanswered_ones_time_out() {
    let mut b = in_sync_backup(5);
    b.handle(20, Event::JoinRequest { conn: 9, node: "c".into(), epoch: 1, resume: None });
    let cmds = b.take_commands();
    assert!(matches!(&cmds[..], [Command::Reject { conn: 9, .. }]), "{cmds:?}");

    let mut c = Core::new(cfg(), "c");
    c.start(0);
    c.take_commands();
    c.handle(0, Event::ArbiterRead(Ok(Some(view(1, "a")))));
    assert_eq!(c.take_commands(), vec![Command::Connect { repl: "a:7701".into(), epoch: 1 }]);
    c.poll(900);
    assert_eq!(c.take_commands(), vec![]);
    c.poll(1001);
    assert_eq!(c.take_commands(), vec![Command::ReadArbiter]);
    // The old attempt's acceptance arrives late: it is closed, not adopted.
    c.handle(1002, Event::Joined { conn: 4, primary: "a".into(), epoch: 1, snapshot_seq: 0 });
    assert!(matches!(&c.take_commands()[..], [Command::Close { conn: 4, .. }]));
}

/// Flow control still hears of execution that moves a good part of the lag
/// bound, without waiting for the heartbeat.
#[test]
fn large_executed_progress_is_acked_at_once() {
    let mut c = in_sync_backup(0);
    c.handle(11, Event::Entries { conn: 3, epoch: 1, first: 1, last: 40 });
    c.poll(11);
    assert_eq!(c.take_commands(), vec![Command::SendAck { conn: 3, ack: ack(40, 0) }]);
    c.handle(12, Event::Executed { upto: 5 });
    c.poll(12);
    assert_eq!(c.take_commands(), vec![], "5 < lag_entries_max / 8");
    c.handle(13, Event::Executed { upto: 20 });
    c.poll(13);
    assert_eq!(c.take_commands(), vec![Command::SendAck { conn: 3, ack: ack(40, 20) }]);
}

/// A joiner told something waiting cannot fix stops at once, naming the
/// flag; one told something passing waits, saying so, with back-off.
#[test]
fn permanent_refusals_stop_a_joiner_and_passing_ones_are_waited_out() {
    use understudy_wire::msg::RejectCode;
    let refused = |code: RejectCode| {
        let mut c = Core::new(cfg(), "b");
        c.start(0);
        c.handle(0, Event::ArbiterRead(Ok(Some(view(1, "a")))));
        c.take_commands();
        c.handle(1, Event::JoinFailed { reason: "primary refused: because".into(), code: Some(code), peer_epoch: None });
        (c.take_commands(), c)
    };
    for (code, flag) in [
        (RejectCode::AuthFailed, "--secret-file"),
        (RejectCode::WrongCluster, "--cluster"),
        (RejectCode::MachineMismatch, "same program"),
    ] {
        let (cmds, c) = refused(code);
        match &cmds[..] {
            [Command::Refuse { reason }] => {
                assert!(reason.contains(flag) && reason.contains("a:7701") && reason.contains("because"), "{reason}")
            }
            other => panic!("{code:?}: expected a refusal, got {other:?}"),
        }
        assert!(c.is_halted());
    }
    // A spare waits, saying so, and reads the arbiter again after back-off.
    let (cmds, mut c) = refused(RejectCode::Busy);
    let told = notices(&cmds);
    assert!(told.len() == 1 && told[0].contains("spare"), "{told:?}");
    assert!(protocol(cmds).is_empty());
    c.poll(51);
    assert_eq!(protocol(c.take_commands()), vec![Command::ReadArbiter]);
    assert!(!c.is_halted());
}

/// A joiner whose name a live node holds gives its own former process the
/// grace period (it may still be attached until the primary's failure
/// timeout), then stops naming --node.
#[test]
fn a_name_in_use_is_retried_through_the_grace_then_refused() {
    use understudy_wire::msg::RejectCode;
    let mut c = Core::new(cfg(), "b");
    c.start(0);
    let mut t = 0;
    let mut told = Vec::new();
    let reason = loop {
        c.handle(t, Event::ArbiterRead(Ok(Some(view(1, "a")))));
        c.handle(t, Event::JoinFailed { reason: "node in use".into(), code: Some(RejectCode::NameInUse), peer_epoch: None });
        let cmds = c.take_commands();
        told.extend(notices(&cmds));
        if let [.., Command::Refuse { reason }] = &cmds[..] {
            break reason.clone();
        }
        while !protocol(c.take_commands()).contains(&Command::ReadArbiter) {
            t += 1;
            c.poll(t);
        }
    };
    assert!(t >= cfg().name_in_use_grace_ms && t < cfg().name_in_use_grace_ms + cfg().retry_max_ms + 1, "gave up at {t} ms");
    assert!(reason.contains("--node") && reason.contains("\"b\""), "{reason}");
    assert!(!told.is_empty() && told.len() < 5, "told at growing intervals, not at every attempt: {told:?}");
}

/// Planned switchover, backup side: a handover makes an in-sync backup
/// claim the next epoch at once (no failure timeout); a stopped backup
/// leaves its primary and ends.
#[test]
fn a_handover_is_a_go_live_without_the_timeout_and_a_stopped_backup_leaves() {
    let mut c = in_sync_backup(5);
    c.handle(11, Event::Handover { conn: 3, epoch: 1 });
    assert_eq!(protocol(c.take_commands()), vec![Command::Claim { epoch: 2 }], "at once; the channel stays open");
    c.handle(12, Event::ClaimDone { epoch: 2, outcome: ClaimOutcome::Granted });
    let cmds = protocol(c.take_commands());
    assert!(matches!(&cmds[0], Command::Close { conn: 3, .. }), "closed once the epoch is ours: {cmds:?}");
    assert!(c.is_primary(), "it had executed everything: it serves");

    let mut c = in_sync_backup(5);
    c.handle(11, Event::Stop);
    let cmds = protocol(c.take_commands());
    assert!(matches!(&cmds[..], [Command::Close { conn: 3, .. }, Command::Exit { .. }]), "{cmds:?}");
    assert!(c.is_halted());
}

/// An epoch an operator abandoned (`understudy forget`): a starting node —
/// even one the record names — claims the next epoch and starts empty.
#[test]
fn an_abandoned_epoch_is_started_over_by_the_next_node() {
    for name in ["a", "z"] {
        let mut c = Core::new(cfg(), name);
        c.start(0);
        c.take_commands();
        let mut v = view(3, "a");
        v.members.push(understudy_core::ANYONE.into());
        assert!(v.abandoned());
        c.handle(0, Event::ArbiterRead(Ok(Some(v))));
        assert_eq!(protocol(c.take_commands()), vec![Command::Claim { epoch: 4 }], "{name}");
        c.handle(1, Event::ClaimDone { epoch: 4, outcome: ClaimOutcome::Granted });
        assert!(c.is_primary() && c.epoch() == 4 && c.status().last_seq == 0);
    }
}

#[test]
fn entries_that_do_not_follow_are_refused_with_why() {
    let mut c = in_sync_backup(10);
    c.take_commands();
    assert_eq!(c.handle(5, Event::Entries { conn: 3, epoch: 1, first: 11, last: 12 }), Outcome::Accepted);
    let gap = c.handle(6, Event::Entries { conn: 3, epoch: 1, first: 14, last: 15 });
    assert!(matches!(&gap, Outcome::Refused(why) if why.contains("do not follow")), "{gap:?}");
    assert_eq!(c.received(), 12, "refused entries are not received");
    let stale = c.handle(7, Event::Entries { conn: 99, epoch: 1, first: 13, last: 13 });
    assert!(matches!(stale, Outcome::Refused(_)), "entries on another connection are refused");
}

/// The backup side of `silent_peer`/`heard`: bytes from the primary that
/// wait unread keep it from going live (issue 17).
#[test]
fn unread_bytes_from_the_primary_keep_the_backup_following() {
    let mut c = in_sync_backup(5); // last heard at 1, timeout 100 ms
    poll_at(&mut c, &[50, 90]);
    assert_eq!(c.silent_peer(95), None);
    assert_eq!(c.silent_peer(102), Some(3));
    c.heard(3, 102);
    c.poll(102);
    assert!(!c.take_commands().iter().any(|c| matches!(c, Command::Claim { .. })), "not declared failed");
    assert_eq!(c.role_name(), RoleName::Backup);
    poll_at(&mut c, &[150, 190]);
    c.poll(203);
    let cmds = c.take_commands();
    assert!(matches!(&cmds[..], [Command::Close { conn: 3, .. }, Command::Claim { epoch: 2 }]), "{cmds:?}");
    assert_eq!(c.silent_peer(400), None, "the channel is closed: nothing to judge");
}
