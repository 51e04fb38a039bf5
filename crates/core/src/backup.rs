//! The backup: receive and acknowledge entries, detect the primary's
//! failure, go live (DESIGN §3: logging channel, failure detection, go live).

use understudy_wire::msg::Ack;

use crate::core::{Core, Role, WaitFor};
use crate::event::{ClaimOutcome, Command, Epoch, Event, Millis, Seq};
use crate::roles::{Backup, GoingLive};

impl Core {
    fn backup(&self) -> &Backup {
        match &self.role {
            Role::Backup(b) => b,
            _ => panic!("not a backup"),
        }
    }

    fn backup_mut(&mut self) -> &mut Backup {
        match &mut self.role {
            Role::Backup(b) => b,
            _ => panic!("not a backup"),
        }
    }

    /// Seq of the last entry held by this backup (executed or not).
    pub fn received(&self) -> Seq {
        self.last_seq
    }

    pub(crate) fn backup_handle(&mut self, now: Millis, ev: Event) {
        let conn = self.backup().conn;
        match ev {
            Event::Entries { conn: c, epoch, first, last } if Some(c) == conn => {
                if epoch != self.epoch || first != self.last_seq + 1 || last < first {
                    let reason = format!(
                        "entries {first}..={last} of epoch {epoch} do not follow seq {} of epoch {}",
                        self.last_seq, self.epoch
                    );
                    self.refused(reason.clone());
                    self.backup_channel_lost(now, reason);
                    return;
                }
                self.last_seq = last;
                self.backup_mut().last_heard = now;
            }
            Event::Entries { conn: c, first, last, .. } => {
                self.refused(format!("entries {first}..={last} on connection {c}, which is not this backup's channel"))
            }
            Event::Heartbeat { conn: c, epoch, last_seq } if Some(c) == conn => {
                if epoch != self.epoch {
                    self.backup_channel_lost(now, format!("heartbeat of epoch {epoch} on a channel of epoch {}", self.epoch));
                    return;
                }
                let b = self.backup_mut();
                b.last_heard = now;
                b.primary_last_seq = b.primary_last_seq.max(last_seq);
            }
            Event::InSync { conn: c, epoch } if Some(c) == conn => {
                if epoch != self.epoch || !self.backup().loaded {
                    self.backup_channel_lost(now, "in-sync notice before the snapshot was loaded".into());
                    return;
                }
                self.backup_mut().in_sync = true;
            }
            Event::SnapshotLoaded { seq } => {
                assert_eq!(seq, self.backup().snapshot_seq, "loaded a snapshot other than the one announced");
                assert!(self.executed <= seq);
                self.executed = seq;
                self.backup_mut().loaded = true;
            }
            Event::Executed { upto } => self.on_executed(now, upto),
            Event::ConnClosed { conn: c, reason } if Some(c) == conn => self.backup_channel_lost(now, reason),
            Event::Handover { conn: c, epoch } if Some(c) == conn => {
                if epoch != self.epoch {
                    self.backup_channel_lost(now, format!("a handover of epoch {epoch} on a channel of epoch {}", self.epoch));
                    return;
                }
                let b = self.backup();
                if b.in_sync && b.loaded && b.going_live.is_none() {
                    // Claim the next epoch now (as after a failure, minus the
                    // timeout). The channel stays open until the claim is
                    // granted: its closing tells the old primary that its
                    // clients will find this node at the arbiter.
                    let epoch = self.epoch + 1;
                    self.backup_mut().going_live = Some(GoingLive { epoch, granted: false });
                    self.emit(Command::Claim { epoch });
                } else {
                    let primary = b.primary.clone();
                    self.backup_channel_lost(now, format!("primary {primary:?} handed over (planned switchover)"));
                }
            }
            Event::ClaimDone { epoch, outcome } => self.on_go_live_claim(now, epoch, outcome),
            Event::JoinRequest { conn, .. } => self.refuse_join(conn),
            // A join attempt that outlived its timeout: not ours any more.
            Event::Joined { conn: c, .. } if Some(c) != conn => {
                self.emit(Command::Close { conn: c, reason: "stale join".into() })
            }
            _ => {}
        }
    }

    fn on_executed(&mut self, now: Millis, upto: Seq) {
        assert!(upto <= self.last_seq, "executed {upto} beyond received {}", self.last_seq);
        assert!(upto >= self.executed, "executed went backwards: {} -> {upto}", self.executed);
        self.executed = upto;
        self.try_go_live(now);
    }

    /// The channel broke or the primary went silent.
    fn backup_channel_lost(&mut self, now: Millis, reason: String) {
        let b = self.backup_mut();
        let conn = b.conn.take();
        if let Some(conn) = conn {
            self.emit(Command::Close { conn, reason: reason.clone() });
        }
        let b = self.backup();
        if b.going_live.is_some() {
            return;
        }
        if b.in_sync && b.loaded {
            // Go live: claim the next epoch while draining what we hold.
            let epoch = self.epoch + 1;
            self.backup_mut().going_live = Some(GoingLive { epoch, granted: false });
            self.emit(Command::Claim { epoch });
        } else {
            self.backup_abandon(now, reason);
        }
    }

    /// Stopped by the operator: leave the primary (it records the backup
    /// gone at once, rather than after a failure timeout) and end.
    pub(crate) fn backup_stop(&mut self) {
        let primary = self.backup().primary.clone();
        let going_live = self.backup().going_live.is_some();
        if going_live {
            // Mid-claim: the primary is gone already; leaving now would
            // leave the cluster without anyone (or, once granted, stop a
            // primary silently). Finish going live; a later stop hands over.
            self.emit(Command::Notice {
                message: "asked to stop while going live: finishing the go-live first, then stopping".into(),
            });
            self.stop_requested = true;
            return;
        }
        if let Some(conn) = self.backup_mut().conn.take() {
            self.emit(Command::Close { conn, reason: "this backup leaves: stopped by the operator".into() });
        }
        self.role = Role::Halted("stopped by the operator".into());
        self.emit(Command::Exit { reason: format!("left primary {primary:?}: it runs unprotected until another backup joins") });
    }

    /// A joiner that is not in sync never claims (Promise 4): it starts over.
    pub(crate) fn backup_abandon(&mut self, now: Millis, reason: String) {
        if let Some(conn) = self.backup_mut().conn.take() {
            self.emit(Command::Close { conn, reason: "starting over".into() });
        }
        let primary = self.backup().primary.clone();
        self.role = Role::Starting { joining_since: None };
        self.last_seq = 0;
        self.executed = 0;
        self.emit(Command::ResetMachine);
        self.retry_later(now, Command::ReadArbiter, WaitFor::Primary, || {
            format!("lost primary {primary:?} before this node was in sync ({reason}): starting over, empty")
        });
    }

    fn on_go_live_claim(&mut self, now: Millis, epoch: Epoch, outcome: ClaimOutcome) {
        let Some(gl) = self.backup().going_live.filter(|g| g.epoch == epoch && !g.granted) else { return };
        match outcome {
            ClaimOutcome::Granted => {
                self.set_epoch(gl.epoch);
                self.backup_mut().going_live = Some(GoingLive { granted: true, ..gl });
                if let Some(conn) = self.backup_mut().conn.take() {
                    // A handover's channel: the old primary ends on its close.
                    let reason = format!("took over: epoch {} is this node's", gl.epoch);
                    self.emit(Command::Close { conn, reason });
                }
                self.try_go_live(now);
            }
            ClaimOutcome::Superseded { current, holder } => {
                self.halt(format!("lost the claim for epoch {epoch}: node {holder:?} holds epoch {current}; this backup stops"))
            }
            ClaimOutcome::NotMember { current } => self.halt(format!(
                "the arbiter refused epoch {epoch}: this node is not a member of epoch {current}; this backup stops"
            )),
            ClaimOutcome::Error(e) => self.retry_later(now, Command::Claim { epoch }, WaitFor::Arbiter, || {
                format!("the primary is gone and the arbiter cannot be reached to claim epoch {epoch}: {e}; this backup goes live once it answers")
            }),
        }
    }

    /// Serves once the claim is won and every received entry is executed.
    fn try_go_live(&mut self, now: Millis) {
        let Role::Backup(b) = &self.role else { return };
        if let Some(gl) = b.going_live {
            if gl.granted && self.executed == self.last_seq {
                self.become_primary(now, gl.epoch, true);
            }
        }
    }

    /// `judge`: whether a silent primary may be declared failed now (see
    /// `Core::poll`).
    pub(crate) fn backup_poll(&mut self, now: Millis, judge: bool) {
        let (hb, timeout) = (self.cfg.heartbeat_ms, self.cfg.failover_timeout_ms);
        let (received, executed, durable) = (self.last_seq, self.executed, self.durable);
        let lag_step = (self.cfg.lag_entries_max / 8).max(1);
        let Role::Backup(b) = &mut self.role else { panic!("not a backup") };
        let Some(conn) = b.conn else { return };
        if judge && now.saturating_sub(b.last_heard) > timeout {
            self.backup_channel_lost(now, format!("primary silent for more than {timeout} ms"));
            return;
        }
        let (received, snapshot_loaded) = Core::ackable(&self.cfg, durable, received, b.snapshot_seq, b.loaded);
        // An ack never says executed beyond received (with `always`, what
        // is executed may not be on disk yet).
        let ack = Ack { received, executed: if b.loaded { executed.min(received) } else { 0 }, snapshot_loaded };
        // Received gates the primary's outputs: acked at once. Executed only
        // feeds flow control and status: acked with the next received-ack,
        // the heartbeat, or when it moved a good part of the lag bound —
        // not once more per batch, which would double the acks.
        let executed_moved = ack.executed - b.acked.executed.min(ack.executed) >= lag_step;
        if ack.received != b.acked.received
            || ack.snapshot_loaded != b.acked.snapshot_loaded
            || executed_moved
            || now.saturating_sub(b.last_ack) >= hb
        {
            b.acked = ack;
            b.last_ack = now;
            self.emit(Command::SendAck { conn, ack });
        }
    }
}
