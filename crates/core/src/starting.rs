//! A starting node: read the arbiter, then claim epoch 1 (empty cluster) or
//! join the registered primary (DESIGN §4).

use understudy_wire::msg::RejectCode;

use crate::backup::Backup;
use crate::core::{Core, Role};
use crate::event::{ClaimOutcome, Command, ConnId, Event, Millis};

impl Core {
    /// Only a primary accepts joiners; anyone else says so at once, or the
    /// joiner would wait on a connection nobody answers (simulator, seed 443:
    /// a joiner reached a backup that had won its claim but was still
    /// draining).
    pub(crate) fn refuse_join(&mut self, conn: ConnId) {
        let message = format!("node {:?} is not primary (yet); read the arbiter again", self.node);
        self.emit(Command::Reject { conn, code: RejectCode::NotPrimary, message });
    }

    fn set_joining(&mut self, since: Option<Millis>) {
        self.role = Role::Starting { joining_since: since };
    }

    /// A join attempt that got no answer (accepted or refused) in time is
    /// given up: the primary may have died mid-handshake.
    pub(crate) fn starting_poll(&mut self, now: Millis) {
        if let Role::Starting { joining_since: Some(t) } = self.role {
            if now.saturating_sub(t) > self.cfg.join_timeout_ms {
                self.set_joining(None);
                self.emit(Command::ReadArbiter);
            }
        }
    }

    pub(crate) fn starting_handle(&mut self, now: Millis, ev: Event) {
        match ev {
            Event::ArbiterRead(Err(_)) => self.retry_later(now, Command::ReadArbiter),
            Event::ArbiterRead(Ok(None)) => self.emit(Command::Claim { epoch: 1 }),
            Event::ArbiterRead(Ok(Some(v))) => {
                if v.epoch < self.epoch || v.primary_node == self.node {
                    // Either a stale read, or the arbiter names this node as
                    // primary although this process holds no state (it
                    // restarted): wait for the backup to take over.
                    self.retry_later(now, Command::ReadArbiter);
                } else {
                    self.set_epoch(v.epoch);
                    self.set_joining(Some(now));
                    self.emit(Command::Connect { repl: v.primary_repl, epoch: v.epoch });
                }
            }
            Event::ClaimDone { epoch: 1, outcome } => match outcome {
                ClaimOutcome::Granted => self.become_primary(now, 1, false),
                ClaimOutcome::Superseded { .. } | ClaimOutcome::NotMember { .. } => self.emit(Command::ReadArbiter),
                // Ask again for the same epoch, not the record: if the grant
                // was applied and only its answer lost, the record now names
                // this node, which a re-read would take for a dead former
                // self (simulator, seed 153). A repeated claim is answered
                // as the first one was.
                ClaimOutcome::Error(_) => self.retry_later(now, Command::Claim { epoch: 1 }),
            },
            Event::Joined { conn, primary, epoch, snapshot_seq } => {
                if !matches!(self.role, Role::Starting { joining_since: Some(_) }) {
                    self.emit(Command::Close { conn, reason: "stale join".into() });
                    return;
                }
                if epoch < self.epoch {
                    self.emit(Command::Close { conn, reason: format!("primary's epoch {epoch} is stale") });
                    self.retry_later(now, Command::ReadArbiter);
                    return;
                }
                self.set_epoch(epoch);
                self.last_seq = snapshot_seq;
                self.executed = 0;
                self.role = Role::Backup(Backup::new(conn, primary, snapshot_seq, now));
            }
            Event::JoinFailed { .. } => {
                self.set_joining(None);
                self.retry_later(now, Command::ReadArbiter);
            }
            Event::JoinRequest { conn, .. } => self.refuse_join(conn),
            _ => {}
        }
    }
}
