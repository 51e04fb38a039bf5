//! A starting node: read the arbiter, then claim epoch 1 (empty cluster) or
//! join the registered primary (DESIGN §4).

use crate::backup::Backup;
use crate::core::{Core, Role};
use crate::event::{ClaimOutcome, Command, Event, Millis};

impl Core {
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
                    self.emit(Command::Connect { repl: v.primary_repl, epoch: v.epoch });
                }
            }
            Event::ClaimDone { epoch: 1, outcome } => match outcome {
                ClaimOutcome::Granted => self.become_primary(now, 1, false),
                ClaimOutcome::Superseded { .. } | ClaimOutcome::NotMember { .. } => self.emit(Command::ReadArbiter),
                ClaimOutcome::Error(_) => self.retry_later(now, Command::ReadArbiter),
            },
            Event::Joined { conn, primary, epoch, snapshot_seq } => {
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
            Event::JoinFailed { .. } => self.retry_later(now, Command::ReadArbiter),
            _ => {}
        }
    }
}
