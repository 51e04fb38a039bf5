//! The state each role keeps (the data of `core::Role`); the logic is in
//! `primary`, `backup` and `starting`, as `impl Core` blocks. This module
//! imports none of them: types flow one way.

use understudy_wire::msg::Ack;

use crate::event::{ConnId, Epoch, Millis, Seq};

/// Where the backup stands, from the primary's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkPhase {
    /// Loading the snapshot or catching up. Not a member: outputs do not
    /// wait for it, and losing it costs nothing.
    Joining,
    /// Caught up: outputs produced from now on wait for its acks. It becomes
    /// a member once its received seq covers `from`, the last seq whose
    /// outputs may have left without it.
    Gating { from: Seq },
    /// `AddMember` sent to the arbiter; outputs wait for its acks.
    AddingMember,
    /// A member of the current epoch; it may claim the next one.
    InSync,
}

/// The primary's view of its one backup.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) conn: ConnId,
    pub(crate) node: String,
    pub(crate) phase: LinkPhase,
    pub(crate) received: Seq,
    pub(crate) executed: Seq,
    pub(crate) loaded: bool,
    pub(crate) last_heard: Millis,
    pub(crate) last_heartbeat: Millis,
}

impl Link {
    /// Outputs wait for this backup's acks.
    pub(crate) fn gates(&self) -> bool {
        self.phase != LinkPhase::Joining
    }

    /// The arbiter may list it as a member (or is about to): losing it means
    /// the primary must win a new epoch before releasing anything more.
    pub(crate) fn is_member(&self) -> bool {
        matches!(self.phase, LinkPhase::AddingMember | LinkPhase::InSync)
    }
}

#[derive(Debug)]
pub(crate) struct Primary {
    pub(crate) link: Option<Link>,
    /// Set while claiming `epoch + 1` after losing a member backup: outputs
    /// are held and intake is paused until the claim is won.
    pub(crate) claiming: Option<Epoch>,
    /// Output gate watermark: outputs tagged ≤ this may leave.
    pub(crate) release_upto: Seq,
    /// Highest tag handed to a read that needs an entry after it.
    pub(crate) read_tag: Seq,
    /// Flow control: the backup's executed seq is too far behind.
    pub(crate) throttled: bool,
    pub(crate) last_publish: Millis,
    pub(crate) published_lag: u64,
    /// Asked to stop (planned switchover): no more requests.
    pub(crate) stopping: Option<Stopping>,
    /// The backup a handover went to, once its channel ended: this node
    /// claims the next epoch to learn whether it took over.
    pub(crate) handed_to: Option<String>,
    /// Joiners refused lately, to tell the operator of each once, then at
    /// most every `REFUSAL_TELL_MS` with a count (a spare retries for ever).
    refusals: Vec<Refusal>,
}

/// A stop in progress.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stopping {
    pub(crate) since: Millis,
    /// An in-sync backup was there to hand over to: losing it cancels the
    /// stop (exiting would end the cluster's only copy of the state).
    pub(crate) protected: bool,
    /// A switchover: after the handover this node rejoins as the backup
    /// instead of ending.
    pub(crate) rejoin: bool,
    /// Alone and with nothing ever logged: the epoch is being abandoned at
    /// the arbiter, so that the cluster can start again without it.
    pub(crate) abandoning: bool,
    /// The handover was sent at this time: the node ends (or rejoins) once
    /// the successor closes the channel — its claim is granted, so clients
    /// that reconnect find it at the arbiter at the first try.
    pub(crate) handed: Option<Millis>,
}

/// A joiner refused, as told to the operator.
#[derive(Debug)]
struct Refusal {
    node: String,
    told_at: Millis,
    untold: u64,
}

/// How often the refusals of one joiner are told again.
const REFUSAL_TELL_MS: Millis = 60_000;
/// Joiners remembered for that; the oldest is forgotten past this.
const REFUSALS_MAX: usize = 16;

impl Primary {
    pub(crate) fn new(last_seq: Seq, now: Millis) -> Self {
        Primary {
            link: None,
            claiming: None,
            release_upto: last_seq,
            read_tag: last_seq,
            throttled: false,
            last_publish: now,
            published_lag: 0,
            stopping: None,
            handed_to: None,
            refusals: Vec::new(),
        }
    }

    /// Whether a refusal of `node` should be told now; and how many went
    /// untold since the last time.
    pub(crate) fn tell_refusal(&mut self, node: &str, now: Millis) -> Option<u64> {
        match self.refusals.iter_mut().find(|r| r.node == node) {
            Some(r) if now.saturating_sub(r.told_at) < REFUSAL_TELL_MS => {
                r.untold += 1;
                None
            }
            Some(r) => {
                r.told_at = now;
                Some(std::mem::take(&mut r.untold))
            }
            None => {
                if self.refusals.len() == REFUSALS_MAX {
                    self.refusals.remove(0);
                }
                self.refusals.push(Refusal { node: node.to_string(), told_at: now, untold: 0 });
                Some(0)
            }
        }
    }

    /// An in-sync backup's acks gate every output.
    pub(crate) fn protected(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.phase == LinkPhase::InSync)
    }

    pub(crate) fn gating(&self) -> bool {
        self.claiming.is_some() || self.link.as_ref().is_some_and(Link::gates)
    }
}

#[derive(Debug)]
pub(crate) struct Backup {
    /// The logging channel; `None` once closed (going live).
    pub(crate) conn: Option<ConnId>,
    pub(crate) primary: String,
    /// The snapshot this backup started from.
    pub(crate) snapshot_seq: Seq,
    pub(crate) loaded: bool,
    /// The primary made us a member of the epoch: we may claim the next.
    pub(crate) in_sync: bool,
    /// The primary's last seq as of its last heartbeat (for lag display).
    pub(crate) primary_last_seq: Seq,
    pub(crate) last_heard: Millis,
    pub(crate) last_ack: Millis,
    pub(crate) acked: Ack,
    /// Set once the primary is declared failed and we are claiming.
    pub(crate) going_live: Option<GoingLive>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GoingLive {
    pub(crate) epoch: Epoch,
    pub(crate) granted: bool,
}

impl Backup {
    pub(crate) fn new(conn: ConnId, primary: String, snapshot_seq: Seq, now: Millis) -> Self {
        Backup {
            conn: Some(conn),
            primary,
            snapshot_seq,
            loaded: false,
            in_sync: false,
            primary_last_seq: snapshot_seq,
            last_heard: now,
            last_ack: 0,
            acked: Ack { received: 0, executed: 0, snapshot_loaded: false },
            going_live: None,
        }
    }
}
