//! The primary's side of the protocol: output rule (writes and reads),
//! join, loss of the backup, flow control. Each test feeds events and
//! asserts the exact commands (DESIGN §3).

mod common;
use common::*;
use understudy_core::{BackupPhase, ClaimOutcome, Command, Core, Event, RoleName, UpdateOutcome};
use understudy_wire::msg::{Ack, RejectCode};

#[test]
fn unprotected_primary_releases_at_once() {
    let mut c = primary("a");
    assert_eq!(c.append(), 1);
    assert_eq!(c.release_upto(), 1);
    let t = c.read_tag();
    assert!(t <= c.release_upto(), "a read without a backup waits for nothing");
    assert!(!c.barrier_needed());
    assert!(!c.status().protected);
}

#[test]
fn join_is_accepted_with_a_snapshot_at_the_current_seq() {
    let mut c = primary("a");
    for _ in 0..4 {
        c.append();
    }
    c.handle(5, Event::JoinRequest { conn: 9, node: "b".into(), epoch: 1, resume: None });
    assert_eq!(
        c.take_commands(),
        vec![
            Command::AcceptJoin { conn: 9, snapshot_seq: 4 },
            Command::Publish { epoch: 1, backup: Some(("b".into(), BackupPhase::Joining, 4)), protected: false },
        ]
    );
    // A joiner does not gate: outputs still leave at once.
    assert_eq!(c.append(), 5);
    assert_eq!(c.release_upto(), 5);
    assert_eq!(c.stream_from(), Some((9, 4)));
}

#[test]
fn second_joiner_is_refused_while_one_is_attached() {
    let mut c = primary("a");
    c.handle(1, Event::JoinRequest { conn: 1, node: "b".into(), epoch: 1, resume: None });
    c.take_commands();
    c.handle(2, Event::JoinRequest { conn: 2, node: "c".into(), epoch: 1, resume: None });
    let cmds = c.take_commands();
    assert_eq!(notices(&cmds).len(), 1, "the operator is told of the spare: {cmds:?}");
    assert!(matches!(&protocol(cmds)[..], [Command::Reject { conn: 2, code: RejectCode::Busy, .. }]));
    // A spare retries for as long as the backup lives: its refusals are
    // told once, then once a minute with a count — not at every attempt.
    let mut told = Vec::new();
    for (i, t) in (3..130_000).step_by(2_000).enumerate() {
        c.handle(t, Event::JoinRequest { conn: 10 + i as u64, node: "c".into(), epoch: 1, resume: None });
        c.handle(t, Event::Ack { conn: 1, epoch: 1, ack: ack(0, 0) });
        let cmds = c.take_commands();
        assert!(cmds.iter().any(|c| matches!(c, Command::Reject { code: RejectCode::Busy, .. })), "each attempt is refused");
        told.extend(notices(&cmds));
    }
    assert_eq!(told.len(), 2, "told after 60 s and 120 s only: {told:?}");
    assert!(told[0].contains("30 more refusals") && told[1].contains("29 more refusals"), "{told:?}");
    // The backup's own name on another connection is a name in use.
    c.handle(130_001, Event::JoinRequest { conn: 99, node: "b".into(), epoch: 1, resume: None });
    assert!(protocol(c.take_commands())
        .iter()
        .any(|c| matches!(c, Command::Reject { conn: 99, code: RejectCode::NameInUse, .. })));
}

#[test]
fn joiner_with_a_newer_epoch_stops_the_primary_at_once() {
    let mut c = primary("a");
    c.handle(1, Event::JoinRequest { conn: 1, node: "b".into(), epoch: 2, resume: None });
    let cmds = c.take_commands();
    assert!(matches!(&cmds[0], Command::Reject { conn: 1, code: RejectCode::StaleEpoch, .. }), "{cmds:?}");
    assert!(matches!(&cmds[1], Command::Halt { .. }), "{cmds:?}");
    assert!(c.is_halted());
}

#[test]
fn caught_up_joiner_gates_outputs_then_becomes_member() {
    let mut c = primary("a");
    c.handle(1, Event::JoinRequest { conn: 7, node: "b".into(), epoch: 1, resume: None });
    c.take_commands();
    for _ in 0..10 {
        c.append();
    }
    // Snapshot loaded, 3 entries behind (catchup bound is 5): gating starts
    // at seq 10, but it is not a member until it holds seq 10.
    c.handle(2, Event::Ack { conn: 7, epoch: 1, ack: ack(7, 7) });
    assert_eq!(c.take_commands(), vec![]);
    assert_eq!(c.append(), 11);
    assert_eq!(c.release_upto(), 10, "seq 11 waits for the joiner's ack");
    c.handle(3, Event::Ack { conn: 7, epoch: 1, ack: ack(10, 9) });
    assert_eq!(c.take_commands(), vec![Command::AddMember { epoch: 1, node: "b".into() }]);
    c.handle(4, Event::Ack { conn: 7, epoch: 1, ack: ack(11, 11) });
    assert_eq!(c.take_commands(), vec![Command::Release { upto: 11 }]);
    c.handle(5, Event::AddMemberDone { epoch: 1, node: "b".into(), outcome: UpdateOutcome::Applied });
    // The status published at the join said "joining" and may reach the
    // arbiter after the add-member: a newer one follows it.
    let in_sync = Command::Publish { epoch: 1, backup: Some(("b".into(), BackupPhase::InSync, 0)), protected: true };
    assert_eq!(c.take_commands(), vec![Command::SendInSync { conn: 7 }, in_sync]);
    assert!(c.status().protected);
}

#[test]
fn joiner_far_behind_does_not_gate() {
    let mut c = primary("a");
    for _ in 0..100 {
        c.append();
    }
    c.handle(1, Event::JoinRequest { conn: 7, node: "b".into(), epoch: 1, resume: None });
    c.take_commands();
    c.handle(2, Event::Ack { conn: 7, epoch: 1, ack: ack(100, 0) }); // received all, executed nothing
    c.append();
    assert_eq!(c.release_upto(), 101, "a joiner that has not executed its backlog is not caught up");
}

#[test]
fn output_rule_for_writes() {
    let mut c = protected_primary(10);
    assert_eq!(c.append(), 11);
    assert_eq!(c.append(), 12);
    assert_eq!(c.release_upto(), 10);
    c.handle(5, Event::Ack { conn: 7, epoch: 1, ack: ack(11, 10) });
    assert_eq!(c.take_commands(), vec![Command::Release { upto: 11 }]);
    c.handle(6, Event::Ack { conn: 7, epoch: 1, ack: ack(12, 12) });
    assert_eq!(c.take_commands(), vec![Command::Release { upto: 12 }]);
}

#[test]
fn output_rule_for_reads_needs_an_ack_sent_after_the_read() {
    let mut c = protected_primary(10);
    let tag = c.read_tag();
    assert_eq!(tag, 11);
    assert!(c.barrier_needed());
    // An ack for everything the backup had before the read does not count.
    c.handle(5, Event::Ack { conn: 7, epoch: 1, ack: ack(10, 10) });
    assert_eq!(c.take_commands(), vec![]);
    assert!(c.release_upto() < tag);
    // The runtime appends the barrier at flush; its ack releases the read.
    assert_eq!(c.append(), 11);
    assert!(!c.barrier_needed());
    c.handle(6, Event::Ack { conn: 7, epoch: 1, ack: ack(11, 11) });
    assert_eq!(c.take_commands(), vec![Command::Release { upto: 11 }]);
    assert!(c.release_upto() >= tag);
}

/// A primary at seq 10 whose joiner (conn 7) caught up: outputs wait for
/// it (gating from seq 10), but it is not a member yet.
fn gating_joiner() -> Core {
    let mut c = primary("a");
    c.handle(1, Event::JoinRequest { conn: 7, node: "b".into(), epoch: 1, resume: None });
    for _ in 0..10 {
        c.append();
    }
    c.handle(2, Event::Ack { conn: 7, epoch: 1, ack: ack(8, 8) }); // gating from 10
    c.take_commands();
    c
}

#[test]
fn the_core_allocates_the_barrier_when_the_backup_channel_is_flushed() {
    let mut c = protected_primary(10);
    assert_eq!(c.barrier_for_flush(7), None, "no read waits: no barrier");
    let tag = c.read_tag();
    assert_eq!(c.barrier_for_flush(99), None, "only the channel that streams to the backup carries it");
    assert_eq!(c.barrier_for_flush(7), Some(tag), "the barrier takes the read's tag");
    assert_eq!(c.barrier_for_flush(7), None, "one barrier covers the read");
    c.handle(6, Event::Ack { conn: 7, epoch: 1, ack: ack(tag, tag) });
    assert_eq!(c.take_commands(), vec![Command::Release { upto: tag }]);
}

#[test]
fn a_read_waiting_for_a_barrier_is_released_when_the_backup_is_lost() {
    let mut c = gating_joiner();
    let tag = c.read_tag();
    assert_eq!(tag, 11);
    // The joiner leaves before any flush carried a barrier: no entry is
    // needed any more, the read's seq is released at once.
    c.handle(3, Event::ConnClosed { conn: 7, reason: "eof".into() });
    let cmds = c.take_commands();
    assert!(cmds.contains(&Command::Release { upto: 11 }), "{cmds:?}");
    assert!(c.release_upto() >= tag);
    assert!(!c.barrier_needed());
}

#[test]
fn reads_arriving_together_share_one_barrier() {
    let mut c = protected_primary(10);
    let (t1, t2, t3) = (c.read_tag(), c.read_tag(), c.read_tag());
    assert_eq!((t1, t2, t3), (11, 11, 11));
    c.append();
    assert!(!c.barrier_needed());
}

#[test]
fn losing_an_in_sync_backup_holds_outputs_until_the_next_epoch_is_won() {
    let mut c = protected_primary(10);
    c.append(); // 11, not acked
    c.handle(5, Event::ConnClosed { conn: 7, reason: "reset".into() });
    assert_eq!(c.take_commands(), vec![Command::Claim { epoch: 2 }]);
    assert!(!c.intake_open());
    c.append(); // 12: executed while claiming, still held
    assert_eq!(c.release_upto(), 10);
    c.handle(6, Event::ClaimDone { epoch: 2, outcome: ClaimOutcome::Granted });
    assert_eq!(c.take_commands(), vec![Command::Release { upto: 12 }]);
    assert_eq!(c.epoch(), 2);
    assert!(c.intake_open());
    assert!(!c.status().protected);
}

#[test]
fn primary_that_loses_the_claim_halts_and_releases_nothing() {
    let mut c = protected_primary(10);
    c.append();
    c.handle(5, Event::ConnClosed { conn: 7, reason: "reset".into() });
    c.take_commands();
    c.handle(6, Event::ClaimDone { epoch: 2, outcome: ClaimOutcome::Superseded { current: 2, holder: "b".into() } });
    let cmds = c.take_commands();
    assert!(matches!(&cmds[..], [Command::Halt { reason }] if reason.contains("\"b\"")), "{cmds:?}");
    assert_eq!(c.release_upto(), 0, "a halted node releases nothing");
    assert_eq!(c.role_name(), RoleName::Halted);
}

#[test]
fn claim_error_is_retried_after_the_back_off() {
    let mut c = protected_primary(10);
    c.handle(5, Event::ConnClosed { conn: 7, reason: "reset".into() });
    c.take_commands();
    c.handle(6, Event::ClaimDone { epoch: 2, outcome: ClaimOutcome::Error("arbiter down".into()) });
    let told = notices(&c.take_commands());
    assert!(told.len() == 1 && told[0].contains("arbiter down") && told[0].contains("epoch 2"), "{told:?}");
    c.poll(30);
    assert_eq!(c.take_commands(), vec![], "retry waits retry_ms");
    c.poll(56);
    assert_eq!(c.take_commands(), vec![Command::Claim { epoch: 2 }]);
    // Each further failure doubles the wait, up to retry_max_ms (400).
    let mut t = 56;
    let mut gaps = Vec::new();
    for _ in 0..6 {
        c.handle(t, Event::ClaimDone { epoch: 2, outcome: ClaimOutcome::Error("arbiter down".into()) });
        c.take_commands();
        let from = t;
        while !protocol(c.take_commands()).contains(&Command::Claim { epoch: 2 }) {
            t += 1;
            c.poll(t);
        }
        gaps.push(t - from);
    }
    assert_eq!(gaps, vec![100, 200, 400, 400, 400, 400], "exponential back-off up to the cap");
    c.handle(t, Event::ClaimDone { epoch: 2, outcome: ClaimOutcome::Granted });
    assert_eq!(c.epoch(), 2);
}

#[test]
fn losing_a_joiner_costs_no_epoch() {
    let mut c = primary("a");
    c.handle(1, Event::JoinRequest { conn: 7, node: "b".into(), epoch: 1, resume: None });
    c.take_commands();
    c.handle(2, Event::ConnClosed { conn: 7, reason: "eof".into() });
    assert_eq!(c.take_commands(), vec![Command::Publish { epoch: 1, backup: None, protected: false }]);
    assert!(c.intake_open());
    assert_eq!(c.epoch(), 1);
}

#[test]
fn losing_a_gating_non_member_releases_what_it_held() {
    let mut c = gating_joiner();
    c.append(); // 11 held
    assert_eq!(c.release_upto(), 10);
    c.handle(3, Event::ConnClosed { conn: 7, reason: "eof".into() });
    let cmds = c.take_commands();
    assert_eq!(cmds[0], Command::Release { upto: 11 }, "it never was a member: no claim needed");
    assert!(!cmds.iter().any(|c| matches!(c, Command::Claim { .. })));
}

#[test]
fn silent_backup_is_declared_failed_after_the_timeout() {
    let mut c = protected_primary(10);
    c.poll(50);
    assert!(c.take_commands().iter().all(|c| matches!(c, Command::SendHeartbeat { .. })));
    c.poll(80);
    c.take_commands();
    c.poll(104);
    let cmds = c.take_commands();
    assert!(matches!(&cmds[..], [Command::Close { conn: 7, .. }, Command::Claim { epoch: 2 }]), "{cmds:?}");
}

/// A primary frozen for about the timeout (SIGSTOP, a starved CPU) thaws
/// with its backup's acks waiting unread in its socket: its first poll
/// must not take its own freeze for the backup's silence (issue 17). A
/// backup that really fell silent is still declared lost at the next poll.
#[test]
fn a_primary_that_was_frozen_reads_before_it_judges_its_backup() {
    let mut c = protected_primary(10);
    c.poll(40);
    c.take_commands();
    c.poll(160); // frozen from 40 to 160: the backup's last ack is 160 ms old
    assert!(c.take_commands().iter().all(|c| matches!(c, Command::SendHeartbeat { .. })), "not judged yet");
    c.handle(160, Event::Ack { conn: 7, epoch: 1, ack: Ack { received: 10, executed: 10, snapshot_loaded: true } });
    c.poll(161);
    assert!(c.take_commands().iter().all(|c| matches!(c, Command::SendHeartbeat { .. })), "the ack that waited counts");
    assert!(c.status().protected);
    // A real silence after a freeze: declared at the second poll.
    c.poll(400);
    c.take_commands();
    c.poll(401);
    let cmds = c.take_commands();
    assert!(matches!(&cmds[..], [Command::Close { conn: 7, .. }, Command::Claim { epoch: 2 }]), "{cmds:?}");
}

#[test]
fn heartbeats_go_out_every_interval() {
    let mut c = protected_primary(10);
    c.poll(13);
    assert_eq!(c.take_commands(), vec![Command::SendHeartbeat { conn: 7, last_seq: 10 }]);
    c.poll(15);
    assert_eq!(c.take_commands(), vec![]);
    c.poll(23);
    assert_eq!(c.take_commands(), vec![Command::SendHeartbeat { conn: 7, last_seq: 10 }]);
}

#[test]
fn flow_control_pauses_intake_while_the_backup_lags() {
    let mut c = protected_primary(0);
    for _ in 0..101 {
        c.append();
    }
    assert!(!c.intake_open(), "101 entries unexecuted > lag_entries_max 100");
    c.handle(5, Event::Ack { conn: 7, epoch: 1, ack: ack(101, 40) });
    assert!(!c.intake_open(), "61 behind: above half the bound");
    c.handle(6, Event::Ack { conn: 7, epoch: 1, ack: ack(101, 60) });
    assert!(c.intake_open());
}

/// A joiner that has loaded its snapshot but replays its backlog slower
/// than the primary appends would never catch up under full load: it
/// pauses intake too, until it is within half the bound — then it can
/// start gating. A joiner still loading does not.
#[test]
fn flow_control_waits_for_a_loaded_joiner_so_a_join_under_load_converges() {
    let mut c = primary("a");
    c.handle(1, Event::JoinRequest { conn: 7, node: "b".into(), epoch: 1, resume: None });
    c.take_commands();
    c.handle(2, Event::Ack { conn: 7, epoch: 1, ack: Ack { received: 0, executed: 0, snapshot_loaded: false } });
    for _ in 0..150 {
        c.append();
    }
    assert!(c.intake_open(), "a joiner still loading its snapshot does not slow the primary");
    c.handle(3, Event::Ack { conn: 7, epoch: 1, ack: ack(150, 10) });
    c.append();
    assert!(!c.intake_open(), "141 entries unexecuted by a loaded joiner > lag_entries_max 100");
    assert_eq!(c.release_upto(), 151, "a joiner does not gate outputs");
    c.handle(4, Event::Ack { conn: 7, epoch: 1, ack: ack(151, 90) });
    assert!(!c.intake_open(), "61 behind: above half the bound");
    c.handle(5, Event::Ack { conn: 7, epoch: 1, ack: ack(151, 148) });
    assert!(c.intake_open(), "caught up to within half the bound");
    assert_eq!(c.append(), 152);
    assert_eq!(c.release_upto(), 151, "and now it gates: it is caught up");
}

#[test]
fn ack_from_another_epoch_or_going_backwards_drops_the_backup() {
    let mut c = protected_primary(10);
    c.handle(5, Event::Ack { conn: 7, epoch: 0, ack: ack(10, 10) });
    let cmds = c.take_commands();
    assert!(matches!(&cmds[..], [Command::Close { conn: 7, .. }, Command::Claim { epoch: 2 }]), "{cmds:?}");

    let mut c = protected_primary(10);
    c.handle(5, Event::Ack { conn: 7, epoch: 1, ack: ack(9, 9) });
    assert!(matches!(c.take_commands()[0], Command::Close { conn: 7, .. }));

    let mut c = protected_primary(10);
    c.handle(5, Event::Ack { conn: 7, epoch: 1, ack: ack(11, 9) });
    assert!(matches!(c.take_commands()[0], Command::Close { conn: 7, .. }), "ack beyond the log");
}

#[test]
fn deposed_at_the_arbiter_halts() {
    let mut c = primary("a");
    c.handle(1, Event::JoinRequest { conn: 7, node: "b".into(), epoch: 1, resume: None });
    c.handle(2, Event::Ack { conn: 7, epoch: 1, ack: ack(0, 0) });
    c.take_commands();
    c.handle(3, Event::AddMemberDone { epoch: 1, node: "b".into(), outcome: UpdateOutcome::Superseded { current: 4 } });
    assert!(c.is_halted());
}

#[test]
fn higher_epoch_stops_a_primary_at_once() {
    let mut c = protected_primary(3);
    c.handle(9, Event::HigherEpoch { epoch: 2 });
    let cmds = c.take_commands();
    assert!(matches!(&cmds[..], [Command::Close { conn: 7, .. }, Command::Halt { .. }]), "{cmds:?}");
    c.handle(10, Event::Ack { conn: 7, epoch: 1, ack: ack(3, 3) });
    assert_eq!(c.take_commands(), vec![], "a halted node ignores everything");
}

/// Simulator seed 35: the primary's grant of epoch 2 reached the arbiter but
/// its answer was lost; a joiner that read the new record connects with
/// epoch 2. That epoch is the primary's own: it must not halt.
#[test]
fn a_higher_epoch_that_is_our_own_claim_does_not_stop_the_primary() {
    // A status publish answered "superseded" by our own claim's grant,
    // before the claim's answer arrived.
    let mut c = protected_primary(10);
    c.handle(5, Event::ConnClosed { conn: 7, reason: "reset".into() });
    assert_eq!(c.take_commands(), vec![Command::Claim { epoch: 2 }]);
    c.handle(6, Event::HigherEpoch { epoch: 2 });
    assert!(c.is_primary(), "epoch 2 may be our own grant");
    c.handle(7, Event::HigherEpoch { epoch: 3 });
    assert!(c.is_halted(), "epoch 3 is someone else's");
}

#[test]
fn joiner_with_the_epoch_being_claimed_is_asked_to_retry() {
    let mut c = protected_primary(3);
    c.handle(5, Event::ConnClosed { conn: 7, reason: "reset".into() });
    assert_eq!(c.take_commands(), vec![Command::Claim { epoch: 2 }]);
    c.handle(6, Event::ClaimDone { epoch: 2, outcome: ClaimOutcome::Error("reply lost".into()) });
    c.handle(7, Event::JoinRequest { conn: 8, node: "c".into(), epoch: 2, resume: None });
    let cmds = protocol(c.take_commands());
    assert!(matches!(&cmds[..], [Command::Reject { conn: 8, code: RejectCode::NotPrimary, .. }]), "{cmds:?}");
    assert!(!c.is_halted());
    c.poll(60);
    assert_eq!(c.take_commands(), vec![Command::Claim { epoch: 2 }]);
    c.handle(61, Event::ClaimDone { epoch: 2, outcome: ClaimOutcome::Granted });
    assert_eq!(c.epoch(), 2);
}

/// Issue 10 §4: a stopped primary takes no more requests, hands over to
/// its in-sync backup once that has received every entry (all outputs
/// released by then), and ends — never before.
#[test]
fn a_stopped_primary_hands_over_once_its_backup_has_every_entry() {
    let mut c = protected_primary(10);
    c.append(); // seq 11: not yet acknowledged
    c.handle(5, Event::Stop);
    assert!(!c.intake_open() && c.is_stopping(), "no more requests once stopping");
    c.poll(6);
    assert!(
        !c.take_commands().iter().any(|c| matches!(c, Command::SendHandover { .. } | Command::Exit { .. })),
        "seq 11 is not at the backup yet"
    );
    c.handle(7, Event::Ack { conn: 7, epoch: 1, ack: ack(11, 10) });
    assert_eq!(c.release_upto(), 11, "the last output is released by the ack");
    c.poll(8);
    let cmds = protocol(c.take_commands());
    assert!(cmds.contains(&Command::SendHandover { conn: 7 }), "a handover: {cmds:?}");
    assert!(!cmds.iter().any(|c| matches!(c, Command::Exit { .. })), "not before the successor holds the epoch");
    // The successor closes the channel once its claim is granted: then the
    // clients that reconnect find it at the arbiter at the first try. A
    // close cannot tell a granted claim from a successor that died: the
    // arbiter does (test-and-set of the next epoch).
    c.handle(9, Event::ConnClosed { conn: 7, reason: "took over".into() });
    assert_eq!(protocol(c.take_commands()), vec![Command::Claim { epoch: 2 }]);
    assert!(!c.is_halted(), "not before the arbiter answers");
    c.handle(10, Event::ClaimDone { epoch: 2, outcome: ClaimOutcome::Superseded { current: 2, holder: "b".into() } });
    let cmds = protocol(c.take_commands());
    assert!(matches!(&cmds[..], [Command::Exit { reason }] if reason.contains("handed over")), "{cmds:?}");
    assert!(c.is_halted() && !c.is_primary());
}

/// Found by the simulator (seed 20001417): the successor died (a power
/// cut) after the handover was sent and before it claimed; the stopping
/// primary took the silence for a completed handover and ended, taking the
/// only copy of the state with it. Now it claims the next epoch first and,
/// winning it, stays primary.
#[test]
fn a_stop_whose_successor_dies_before_claiming_keeps_the_primary() {
    let mut c = protected_primary(10);
    c.handle(5, Event::Stop);
    c.poll(6);
    assert!(protocol(c.take_commands()).contains(&Command::SendHandover { conn: 7 }));
    poll_after_gap(&mut c, 6 + 501); // the successor went silent (a power cut)
    let cmds = protocol(c.take_commands());
    assert!(matches!(&cmds[..], [Command::Close { conn: 7, .. }, Command::Claim { epoch: 2 }]), "{cmds:?}");
    assert!(c.is_primary() && !c.intake_open(), "nothing more until the arbiter answers");
    c.handle(510, Event::ClaimDone { epoch: 2, outcome: ClaimOutcome::Granted });
    let cmds = c.take_commands();
    assert!(!cmds.iter().any(|c| matches!(c, Command::Exit { .. })), "{cmds:?}");
    assert!(notices(&cmds).iter().any(|n| n.contains("did not take over")), "{cmds:?}");
    assert!(c.is_primary() && !c.is_stopping() && c.intake_open(), "the stop is called off");
    assert_eq!(c.epoch(), 2);
}

/// Losing the backup mid-switchover cancels the stop: exiting would take
/// the only copy of the state away.
#[test]
fn a_switchover_that_loses_its_backup_keeps_the_primary() {
    let mut c = protected_primary(10);
    c.append();
    c.handle(5, Event::Stop);
    c.take_commands();
    c.handle(6, Event::ConnClosed { conn: 7, reason: "reset".into() });
    let cmds = c.take_commands();
    assert!(notices(&cmds).iter().any(|n| n.contains("stays primary")), "{cmds:?}");
    assert_eq!(protocol(cmds), vec![Command::Claim { epoch: 2 }]);
    c.handle(7, Event::ClaimDone { epoch: 2, outcome: ClaimOutcome::Granted });
    c.poll(8);
    assert!(!c.take_commands().iter().any(|c| matches!(c, Command::Exit { .. })));
    assert!(c.is_primary() && c.intake_open() && !c.is_stopping(), "it serves on, unprotected");
    // Stopped again, alone: it releases what it holds and ends.
    c.handle(9, Event::Stop);
    assert!(matches!(&protocol(c.take_commands())[..], [.., Command::Exit { .. }]));
}

/// A stopped primary alone with an empty log abandons its epoch at the
/// arbiter (nothing is lost), so the cluster can start again; a node asked
/// to stop mid-claim finishes the claim first.
#[test]
fn a_stop_mid_claim_and_alone_with_nothing_logged_abandons_the_epoch() {
    let mut c = Core::new(cfg(), "a");
    c.start(0);
    c.take_commands();
    c.handle(0, Event::ArbiterRead(Ok(None)));
    assert_eq!(c.take_commands(), vec![Command::Claim { epoch: 1 }]);
    assert!(c.is_claiming());
    c.handle(1, Event::Stop);
    assert!(protocol(c.take_commands()).is_empty(), "the grant may be applied: no exit before the answer");
    c.handle(2, Event::ClaimDone { epoch: 1, outcome: ClaimOutcome::Granted });
    let cmds = protocol(c.take_commands());
    assert!(cmds.contains(&Command::AddMember { epoch: 1, node: understudy_core::ANYONE.into() }), "{cmds:?}");
    assert!(!cmds.iter().any(|c| matches!(c, Command::Exit { .. })), "not before the arbiter answers");
    c.handle(3, Event::AddMemberDone { epoch: 1, node: understudy_core::ANYONE.into(), outcome: UpdateOutcome::Applied });
    assert!(matches!(&protocol(c.take_commands())[..], [Command::Exit { reason }] if reason.contains("abandoned")));
}

/// `understudy switchover`: refused without an in-sync backup; otherwise a
/// handover, after which the node starts over as a joiner (empty), keeping
/// what it released writable on its client connections.
#[test]
fn a_switchover_hands_over_then_rejoins_as_a_joiner() {
    let mut c = primary("a");
    assert!(c.request_switchover(1).unwrap_err().contains("no backup"));
    let mut c = protected_primary(10);
    assert_eq!(c.request_switchover(4).unwrap(), "b");
    c.poll(5);
    assert_eq!(protocol(c.take_commands()), vec![Command::SendHandover { conn: 7 }]);
    c.handle(6, Event::ConnClosed { conn: 7, reason: "took over".into() });
    assert_eq!(protocol(c.take_commands()), vec![Command::Claim { epoch: 2 }]);
    c.handle(7, Event::ClaimDone { epoch: 2, outcome: ClaimOutcome::Superseded { current: 2, holder: "b".into() } });
    let cmds = protocol(c.take_commands());
    assert!(cmds.contains(&Command::ResetMachine) && !cmds.iter().any(|c| matches!(c, Command::Exit { .. })), "{cmds:?}");
    assert_eq!(c.role_name(), RoleName::Starting);
    assert_eq!(c.release_upto(), 10, "replies released before the handover stay releasable");
    c.poll(300);
    assert!(protocol(c.take_commands()).contains(&Command::ReadArbiter), "it looks for its successor");
}

/// A primary whose event loop kept polling but did not get to read (a long
/// slice of other work, a starved CPU) finds its backup's acks waiting in
/// its socket: the runtime reports them (`heard`) before the poll that
/// would judge, and the backup is not declared lost (issue 17).
#[test]
fn unread_bytes_from_the_backup_are_a_sign_of_life() {
    let mut c = protected_primary(10); // last ack at 2, timeout 100 ms
    poll_at(&mut c, &[40, 80]);
    assert_eq!(c.silent_peer(90), None, "heard within the timeout");
    assert_eq!(c.silent_peer(103), Some(7), "the backup's channel is about to be judged");
    c.heard(9, 103); // another connection says nothing about the backup
    assert_eq!(c.silent_peer(103), Some(7));
    c.heard(7, 103);
    assert_eq!(c.silent_peer(103), None);
    c.poll(103);
    assert!(c.take_commands().iter().all(|c| matches!(c, Command::SendHeartbeat { .. })), "not declared lost");
    assert!(c.status().protected);
    // Nothing more arrives: silence is judged from the time it was heard.
    poll_at(&mut c, &[150, 190]);
    assert_eq!(c.silent_peer(204), Some(7));
    c.poll(204);
    let cmds = c.take_commands();
    assert!(matches!(&cmds[..], [Command::Close { conn: 7, .. }, Command::Claim { epoch: 2 }]), "{cmds:?}");
    assert_eq!(c.silent_peer(300), None, "no backup: nothing to judge");
}
