//! Drives a [`Core`] through the usual openings so each test starts where it
//! matters and asserts the exact commands that come out.
#![allow(dead_code)]

use understudy_core::{ArbiterView, ClaimOutcome, Command, Config, Core, Event, Millis, UpdateOutcome};
use understudy_wire::msg::Ack;

pub fn cfg() -> Config {
    Config {
        heartbeat_ms: 10,
        failover_timeout_ms: 100,
        lag_entries_max: 100,
        catchup_entries: 5,
        retry_ms: 50,
        retry_max_ms: 400,
        name_in_use_grace_ms: 1000,
        join_timeout_ms: 1000,
        status_publish_ms: 1000,
        durable_acks: false,
    }
}

/// The commands that act on the protocol: what is only told to the
/// operator (`Notice`) left out.
pub fn protocol(cmds: Vec<Command>) -> Vec<Command> {
    cmds.into_iter().filter(|c| !matches!(c, Command::Notice { .. })).collect()
}

/// What the operator was told.
pub fn notices(cmds: &[Command]) -> Vec<String> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Notice { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

pub fn ack(received: u64, executed: u64) -> Ack {
    Ack { received, executed, snapshot_loaded: true }
}

/// A primary of epoch 1 with no backup, at time 0.
pub fn primary(node: &str) -> Core {
    let mut c = Core::new(cfg(), node);
    c.start(0);
    assert_eq!(c.take_commands(), vec![Command::ReadArbiter]);
    c.handle(0, Event::ArbiterRead(Ok(None)));
    assert_eq!(c.take_commands(), vec![Command::Claim { epoch: 1 }]);
    c.handle(0, Event::ClaimDone { epoch: 1, outcome: ClaimOutcome::Granted });
    assert_eq!(c.take_commands(), vec![Command::BecomePrimary { epoch: 1, from_backup: false }]);
    c
}

/// A primary with `n` entries whose backup "b" on conn 7 is in sync.
pub fn protected_primary(n: u64) -> Core {
    let mut c = primary("a");
    for _ in 0..n {
        c.append();
    }
    c.handle(1, Event::JoinRequest { conn: 7, node: "b".into(), epoch: 1, resume: None });
    c.take_commands();
    c.handle(2, Event::Ack { conn: 7, epoch: 1, ack: ack(n, n) });
    assert_eq!(c.take_commands(), vec![Command::AddMember { epoch: 1, node: "b".into() }]);
    c.handle(3, Event::AddMemberDone { epoch: 1, node: "b".into(), outcome: UpdateOutcome::Applied });
    let cmds = c.take_commands();
    assert_eq!(cmds[0], Command::SendInSync { conn: 7 });
    assert!(matches!(&cmds[1..], [Command::Publish { .. }]), "{cmds:?}");
    assert!(c.status().protected);
    c
}

pub fn view(epoch: u64, primary: &str) -> ArbiterView {
    ArbiterView {
        epoch,
        primary_node: primary.into(),
        primary_repl: format!("{primary}:7701"),
        primary_client: format!("{primary}:6379"),
        members: vec![primary.into()],
    }
}

/// A backup "b" of primary "a" (epoch 1), snapshot at `snap`, loaded, and
/// in sync, on conn 3, at time 10.
pub fn in_sync_backup(snap: u64) -> Core {
    let mut c = Core::new(cfg(), "b");
    c.start(0);
    c.take_commands();
    c.handle(0, Event::ArbiterRead(Ok(Some(view(1, "a")))));
    assert_eq!(c.take_commands(), vec![Command::Connect { repl: "a:7701".into(), epoch: 1 }]);
    c.handle(1, Event::Joined { conn: 3, primary: "a".into(), epoch: 1, snapshot_seq: snap });
    c.handle(2, Event::SnapshotLoaded { seq: snap });
    c.handle(10, Event::InSync { conn: 3, epoch: 1 });
    c.poll(10);
    assert_eq!(c.take_commands(), vec![Command::SendAck { conn: 3, ack: ack(snap, snap) }]);
    c
}

/// Polls at each of `times` (close enough together that silence is judged
/// at once), dropping what they emit: time passes as on a running node.
pub fn poll_at(c: &mut Core, times: &[Millis]) {
    for &t in times {
        c.poll(t);
        c.take_commands();
    }
}

/// A poll at `t` long after the previous one, as after a freeze of this
/// node: the first poll only puts off judging a silent peer (what the peer
/// sent meanwhile may be unread), a second one judges.
pub fn poll_after_gap(c: &mut Core, t: Millis) {
    c.poll(t);
    let first = c.take_commands();
    assert!(
        !first.iter().any(|c| matches!(c, Command::Close { .. } | Command::Claim { .. })),
        "silence judged at the first poll after a gap: {first:?}"
    );
    c.poll(t);
}
