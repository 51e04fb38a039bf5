//! Durability (`--appendfsync`): what a node's disk holds, how it bounds
//! acks and releases, and when a node may resume from its disk.
//!
//! With [`Config::durable_acks`] (`always`) a backup acknowledges as
//! received only what its disk holds, and a primary releases an output only
//! once its own disk holds the entries behind it too. So every member of an
//! epoch holds every released output's entries on disk, and after a
//! whole-cluster power loss a member that recovered its whole log (nothing
//! but a torn tail cut) may claim the next epoch from its disk: the
//! arbiter's test-and-set still picks exactly one, and the loser joins it.
//! Without `always` a restarted node waits as before; an operator's
//! `understudy forget` lets the next node to start resume from its disk.

use crate::config::Config;
use crate::core::{Core, Role, WaitFor};
use crate::event::{ArbiterView, Command, Epoch, Millis, Seq};

impl Core {
    /// Before [`Core::start`]: this process loaded its state from its disk,
    /// through `last_seq` of `epoch`. `complete`: the log was written with
    /// `always` and recovered whole, so it holds everything this node ever
    /// acknowledged or released (it may claim the next epoch as a member).
    pub fn recovered(&mut self, epoch: Epoch, last_seq: Seq, complete: bool) {
        assert!(matches!(self.role, Role::Starting { joining_since: None }), "recovery happens before the start");
        assert_eq!(self.last_seq, 0, "recovered into a node that holds state");
        self.set_epoch(epoch);
        self.last_seq = last_seq;
        self.executed = last_seq;
        self.durable = last_seq;
        // An empty disk is no evidence: it recovers complete, but it may be
        // a directory the operator moved away after a failed recovery (as
        // the node's error tells them to), and a member claiming with it
        // would lose every write the cluster acknowledged (simulator, seed
        // 2000017 of the durable runs). A node that ever held state holds a
        // record or a snapshot of an epoch.
        self.from_disk = complete && self.cfg.durable_acks && (epoch > 0 || last_seq > 0);
    }

    /// The last seq this node holds (primary: appended; backup: received).
    #[inline]
    pub fn last_seq(&self) -> Seq {
        self.last_seq
    }

    /// The last seq applied to the machine.
    #[inline]
    pub fn executed(&self) -> Seq {
        self.executed
    }

    /// What this node's disk holds, as last reported.
    pub fn durable(&self) -> Seq {
        self.durable
    }

    /// The node's state came from its own complete disk (and was not
    /// replaced by a join since).
    pub fn resumes_from_disk(&self) -> bool {
        self.from_disk
    }

    pub(crate) fn on_durable(&mut self, upto: Seq) {
        assert!(upto <= self.last_seq, "the disk holds seq {upto}, beyond the last seq {} this node holds", self.last_seq);
        if upto <= self.durable {
            return;
        }
        self.durable = upto;
        if let Role::Primary(p) = &self.role {
            if p.claiming.is_some() {
                return; // nothing leaves before the claim is won
            }
            let target = match &p.link {
                Some(l) if l.gates() => l.received,
                _ => self.last_seq,
            };
            self.set_release(target);
        }
    }

    /// The release watermark may reach `upto` as far as the disk allows.
    pub(crate) fn disk_bound(&self, upto: Seq) -> Seq {
        match self.cfg.durable_acks {
            true => upto.min(self.durable),
            false => upto,
        }
    }

    /// A backup's received-ack and snapshot flag: with `always`, only what
    /// its disk holds (its snapshot included).
    pub(crate) fn ackable(cfg: &Config, durable: Seq, received: Seq, snapshot_seq: Seq, loaded: bool) -> (Seq, bool) {
        match cfg.durable_acks {
            true => (snapshot_seq.max(received.min(durable)), loaded && durable >= snapshot_seq),
            false => (received, loaded),
        }
    }

    /// A starting node whose disk holds every write it acknowledged, and
    /// that is a member of the record's epoch, may claim the next one.
    pub(crate) fn may_claim_from_disk(&self, v: &ArbiterView) -> bool {
        self.from_disk && !v.abandoned() && v.members.contains(&self.node)
    }

    /// Claims the epoch after `v` with the state recovered from disk.
    pub(crate) fn claim_from_disk(&mut self, v: &ArbiterView, why: String) {
        self.set_epoch(v.epoch);
        let next = v.epoch + 1;
        self.emit(Command::Notice {
            message: format!(
                "{why}: this node, a member of epoch {} whose disk holds every write it acknowledged (appendfsync always, through seq {}), claims epoch {next}",
                v.epoch, self.last_seq
            ),
        });
        self.claiming = Some(next);
        self.emit(Command::Claim { epoch: next });
    }

    /// The record names this node as primary and it resumed from disk: the
    /// other members get two failure timeouts to go live first (a node
    /// that only restarted should not depose a backup that is taking
    /// over); then this node claims.
    pub(crate) fn own_record_from_disk(&mut self, now: Millis, v: ArbiterView) {
        let others = v.members.iter().any(|m| *m != self.node);
        let waited = self.waiting_for(WaitFor::OwnRecord, now).unwrap_or(0);
        if !others || waited >= 2 * self.cfg.failover_timeout_ms {
            self.waited();
            let why = match others {
                true => format!("no other member of epoch {} went live within {} ms", v.epoch, waited),
                false => format!("this node was the only member of epoch {}", v.epoch),
            };
            return self.claim_from_disk(&v, why);
        }
        let node = self.node.clone();
        self.retry_later(now, Command::ReadArbiter, WaitFor::OwnRecord, || {
            format!(
                "the arbiter names this node ({node:?}) as the primary of epoch {}; it restarted with its state on disk: waiting for another member {:?} to go live, else it resumes from its disk",
                v.epoch, v.members
            )
        });
    }
}
