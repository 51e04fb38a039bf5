//! A starting node: read the arbiter, then claim epoch 1 (empty cluster) or
//! join the registered primary (DESIGN §4). Every wait says what it waits
//! for and what the operator can do; errors that waiting cannot fix (a
//! wrong secret, another cluster's primary, a name a live node holds) stop
//! the node with the flag to change.

use understudy_wire::msg::RejectCode;

use crate::core::{Core, Role, WaitFor};
use crate::event::{ArbiterView, ClaimOutcome, Command, ConnId, Event, Millis};
use crate::roles::Backup;

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
            Event::ArbiterRead(Err(e)) => self.retry_later(now, Command::ReadArbiter, WaitFor::Arbiter, || {
                format!("cannot read the cluster's record at the arbiter: {e}; this node starts once the arbiter answers (check --arbiter)")
            }),
            Event::ArbiterRefused { reason } => self.refuse(format!("the arbiter refused this node: {reason}")),
            Event::ArbiterRead(Ok(None)) if self.last_seq > 0 => self.refuse(format!(
                "this node's disk holds the state of epoch {} of its cluster (through seq {}), but the arbiter has no record of the cluster: check --arbiter and --cluster, or start with an empty --dir to begin a new cluster",
                self.epoch, self.last_seq
            )),
            Event::ArbiterRead(Ok(None)) => {
                self.claiming = Some(1);
                self.emit(Command::Claim { epoch: 1 })
            }
            Event::ArbiterRead(Ok(Some(v))) if v.abandoned() && v.epoch >= self.epoch => {
                // `understudy forget`: the state of this epoch is gone by the
                // operator's decision; the next epoch starts empty.
                let state = match self.last_seq {
                    0 => "an empty state".to_string(),
                    seq => format!("the state this node recovered from its disk (through seq {seq}; writes acknowledged after it are lost)"),
                };
                self.emit(Command::Notice {
                    message: format!(
                        "epoch {} of this cluster was abandoned by an operator (understudy forget): claiming epoch {} with {state}",
                        v.epoch,
                        v.epoch + 1
                    ),
                });
                self.set_epoch(v.epoch);
                self.claiming = Some(v.epoch + 1);
                self.emit(Command::Claim { epoch: v.epoch + 1 });
            }
            Event::ArbiterRead(Ok(Some(v))) => {
                if v.epoch < self.epoch {
                    // A stale read: ask again.
                    let seen = self.epoch;
                    self.retry_later(now, Command::ReadArbiter, WaitFor::Arbiter, || {
                        format!("the arbiter answered with epoch {}, older than epoch {seen} seen before", v.epoch)
                    });
                } else if v.primary_node == self.node && self.handed_over == Some(v.epoch) {
                    // This node's own switchover: its successor has not
                    // claimed the next epoch yet.
                    self.retry_later(now, Command::ReadArbiter, WaitFor::Successor, || {
                        format!("handed over epoch {} (switchover): waiting for the successor to claim the next", v.epoch)
                    });
                } else if v.primary_node == self.node && self.may_claim_from_disk(&v) {
                    self.own_record_from_disk(now, v);
                } else if v.primary_node == self.node {
                    // The arbiter names this node as primary although this
                    // process holds no state (it restarted): wait for the
                    // backup to take over. Never claim: the state is gone.
                    let node = self.node.clone();
                    self.retry_later(now, Command::ReadArbiter, WaitFor::OwnRecord, || {
                        format!(
                            "the arbiter names this node ({node:?}) as the primary of epoch {}, but this process has just started and holds none of its state: waiting for that epoch's backup (members {:?}) to go live, then this node joins it; if no backup was in sync, the state died with the old process and the cluster waits for it",
                            v.epoch, v.members
                        )
                    });
                } else {
                    self.set_epoch(v.epoch);
                    self.set_joining(Some(now));
                    self.emit(Command::Connect { repl: v.primary_repl.clone(), epoch: v.epoch });
                    self.target = Some(v);
                }
            }
            // Epoch 1 of an empty cluster, or the epoch after an abandoned one.
            Event::ClaimDone { epoch, outcome } if epoch == self.epoch + 1 => match outcome {
                ClaimOutcome::Granted => {
                    self.claiming = None;
                    self.waited();
                    self.become_primary(now, epoch, false)
                }
                ClaimOutcome::Superseded { .. } | ClaimOutcome::NotMember { .. } if self.stop_requested => {
                    self.claiming = None;
                    self.role = Role::Halted("stopped by the operator".into());
                    self.emit(Command::Exit { reason: "stopped before serving or joining (another node holds the epoch)".into() });
                }
                ClaimOutcome::Superseded { .. } | ClaimOutcome::NotMember { .. } => {
                    self.claiming = None;
                    self.emit(Command::ReadArbiter)
                }
                // Ask again for the same epoch, not the record: if the grant
                // was applied and only its answer lost, the record now names
                // this node, which a re-read would take for a dead former
                // self (simulator, seed 153). A repeated claim is answered
                // as the first one was.
                ClaimOutcome::Error(e) => self.retry_later(now, Command::Claim { epoch }, WaitFor::Arbiter, || {
                    format!("cannot claim epoch {epoch} of an empty cluster at the arbiter: {e}; this node serves once the arbiter answers")
                }),
            },
            Event::Joined { conn, primary, epoch, snapshot_seq } => {
                if !matches!(self.role, Role::Starting { joining_since: Some(_) }) {
                    self.emit(Command::Close { conn, reason: "stale join".into() });
                    return;
                }
                if epoch < self.epoch {
                    self.emit(Command::Close { conn, reason: format!("primary's epoch {epoch} is stale") });
                    self.retry_later(now, Command::ReadArbiter, WaitFor::PrimaryBusy, || {
                        format!("primary {primary:?} answered with epoch {epoch}, older than the arbiter's")
                    });
                    return;
                }
                self.waited();
                self.target = None;
                self.set_epoch(epoch);
                // The state recovered from disk (if any) is replaced.
                self.from_disk = false;
                self.durable = 0;
                self.last_seq = snapshot_seq;
                self.executed = 0;
                self.role = Role::Backup(Backup::new(conn, primary, snapshot_seq, now));
            }
            Event::JoinFailed { reason, code, .. } => {
                self.set_joining(None);
                self.join_failed(now, reason, code);
            }
            Event::JoinRequest { conn, .. } => self.refuse_join(conn),
            _ => {}
        }
    }

    /// A join attempt failed: wait (saying why) or, when waiting cannot
    /// help, stop with the flag to fix.
    fn join_failed(&mut self, now: Millis, reason: String, code: Option<RejectCode>) {
        let t = self.target.take().unwrap_or_else(|| ArbiterView {
            epoch: self.epoch,
            primary_node: "?".into(),
            primary_repl: "?".into(),
            primary_client: "?".into(),
            members: Vec::new(),
        });
        let whom = format!("the primary {:?} (epoch {}) at {}", t.primary_node, t.epoch, t.primary_repl);
        let read = Command::ReadArbiter;
        match code {
            Some(RejectCode::AuthFailed) => {
                self.refuse(format!("joining {whom}: it refused this node's credentials ({reason}): give every node of the cluster the same --secret-file"))
            }
            Some(RejectCode::WrongCluster) => self.refuse(format!(
                "joining {whom}: the node there serves another cluster ({reason}): check --cluster, and that --arbiter is this cluster's arbiter"
            )),
            Some(RejectCode::MachineMismatch) => self.refuse(format!(
                "joining {whom}: it runs a different machine ({reason}): every node of a cluster runs the same program, arguments, environment and limits"
            )),
            Some(RejectCode::NameInUse) => {
                // Our own former process may still be the primary's backup
                // until the primary's failure timeout: give it that long.
                let waited = self.waiting_for(WaitFor::NameInUse, now).unwrap_or(0);
                if waited >= self.cfg.name_in_use_grace_ms {
                    self.refuse(format!(
                        "joining {whom}: a live node of the cluster goes by this node's name {:?} ({reason}), for {:.1} s: give each node a distinct --node",
                        self.node,
                        waited as f64 / 1000.0
                    ));
                } else {
                    let node = self.node.clone();
                    self.retry_later(now, read, WaitFor::NameInUse, || {
                        format!("{whom} says a live node goes by this node's name {node:?} ({reason}); retrying for a while in case it is this node's own former process")
                    });
                }
            }
            Some(RejectCode::Busy) => self.retry_later(now, read, WaitFor::Spare, || {
                format!("{whom} already has a backup ({reason}): this node waits as a spare and joins when the backup leaves")
            }),
            // The record's primary answers but does not serve: after a
            // whole-cluster power loss it may have restarted with a log that
            // is not complete (it waits for a member to go live) while this
            // member, whose disk is complete, waits for it to serve: neither
            // would ever move (simulator, seed 2000039 of the durable runs).
            // After two failure timeouts this member claims, as when the
            // primary does not answer at all; the arbiter still picks one.
            Some(RejectCode::NotPrimary)
                if self.may_claim_from_disk(&t)
                    && self.waiting_for(WaitFor::PrimaryBusy, now).unwrap_or(0) >= 2 * self.cfg.failover_timeout_ms =>
            {
                self.waited();
                self.claim_from_disk(&t, format!("{whom} has answered that it is not primary for 2 failure timeouts ({reason})"))
            }
            Some(RejectCode::NotPrimary | RejectCode::StaleEpoch | RejectCode::Protocol) => {
                self.retry_later(now, read, WaitFor::PrimaryBusy, || format!("{whom} refused the join for now: {reason}"))
            }
            None if self.may_claim_from_disk(&t) => {
                self.claim_from_disk(&t, format!("{whom} does not answer ({reason})"))
            }
            None => self.retry_later(now, read, WaitFor::Primary, || {
                let backups: Vec<&String> = t.members.iter().filter(|m| **m != t.primary_node).collect();
                let then = match backups.is_empty() {
                    true => "it had no backup in sync: the cluster waits for it".to_string(),
                    false => format!("if it died, its backup {backups:?} goes live within its failure timeout and this node joins that"),
                };
                format!("{whom} does not answer: {reason}; {then}")
            }),
        }
    }
}
