//! What the arbiter stores (one [`ClusterRecord`] per cluster), the answers
//! of its operations, and the [`Arbiter`] trait every backend implements.

use serde::{Deserialize, Serialize};

use crate::ArbiterError;

/// Where a node can be reached. Published with a claim so that clients and
/// joiners find the primary of the current epoch at the arbiter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddrs {
    /// The node's name (`--node`); what membership is about.
    pub node: String,
    /// Where clients connect (`--client-listen` / `--guest-listen`).
    pub client: String,
    /// Where a joiner opens the logging channel (`--repl-listen`).
    pub repl: String,
}

/// How far a backup is, as its primary last published it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupState {
    /// Receiving a snapshot or catching up on the log: not a member, cannot
    /// take over.
    Joining,
    /// Caught up and acknowledged by the arbiter as a member of the epoch.
    InSync,
}

/// The primary's view of its backup, for `understudy status` only: the
/// arbiter never decides anything from it (membership does that).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    pub node: String,
    pub state: BackupState,
    /// Entries the backup has received but not yet executed (or, while
    /// joining, still has to receive), as the primary last saw it.
    pub lag: u64,
}

/// The single record the arbiter keeps per cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    pub cluster: String,
    /// The current epoch, ≥ 1 (a cluster without a record is at epoch 0).
    /// Only ever grows (DESIGN §6: a replica that learns a higher epoch stops).
    pub epoch: u64,
    /// The node that won `epoch`, with its addresses.
    pub primary: NodeAddrs,
    /// Nodes allowed to claim `epoch + 1` (Promise 4): the primary, plus its
    /// backup once that backup is in sync. Grows only through
    /// [`Arbiter::add_member`]; a claim resets it to the new primary alone.
    pub members: Vec<String>,
    /// Status only: the primary's backup, if it has one.
    pub backup: Option<BackupInfo>,
    /// Status only: a backup in sync gates the primary's outputs.
    pub protected: bool,
    /// Set when an operator abandoned this epoch's state (`understudy
    /// forget`): milliseconds since the Unix epoch. Its members are then
    /// [`ANYONE`]: any node may claim the next epoch, starting empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abandoned_at_ms: Option<u64>,
}

/// The member that stands for every node: an abandoned epoch's state is
/// gone, so anyone may start the next one (never a valid node name).
pub const ANYONE: &str = "*";

impl ClusterRecord {
    /// The record a granted claim produces: the winner alone, unprotected.
    pub fn granted(cluster: &str, epoch: u64, primary: &NodeAddrs) -> Self {
        ClusterRecord {
            cluster: cluster.to_string(),
            epoch,
            primary: primary.clone(),
            members: vec![primary.node.clone()],
            backup: None,
            protected: false,
            abandoned_at_ms: None,
        }
    }

    /// Whether `node` may claim `self.epoch + 1`.
    pub fn is_member(&self, node: &str) -> bool {
        self.members.iter().any(|m| m == node || m == ANYONE)
    }

    /// An operator abandoned this epoch's state (`understudy forget`).
    pub fn is_abandoned(&self) -> bool {
        self.members.iter().any(|m| m == ANYONE)
    }
}

/// Answer to [`Arbiter::claim`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Claim {
    /// The caller now holds the epoch; the record is the new one.
    Granted(ClusterRecord),
    /// The epoch was already taken (epoch ≤ current): someone else holds it
    /// or a later one. The caller must not serve.
    Superseded(ClusterRecord),
    /// `epoch == current + 1` but the caller is not a member of the current
    /// epoch: it was never in sync, so it may lack acknowledged state
    /// (Promise 4). It must wait for the primary and join as a backup.
    NotMember(ClusterRecord),
}

impl Claim {
    pub fn is_granted(&self) -> bool {
        matches!(self, Claim::Granted(_))
    }

    /// The arbiter's record as of this answer.
    pub fn record(&self) -> &ClusterRecord {
        match self {
            Claim::Granted(r) | Claim::Superseded(r) | Claim::NotMember(r) => r,
        }
    }
}

/// Answer to [`Arbiter::add_member`] and [`Arbiter::publish`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Update {
    /// Applied; the record is the new one.
    Applied(ClusterRecord),
    /// Not applied: the caller does not hold the current epoch (a later epoch
    /// exists, or the cluster has no record). The caller has been deposed and
    /// must stop serving at once (DESIGN §6).
    Superseded(Option<ClusterRecord>),
}

impl Update {
    pub fn is_applied(&self) -> bool {
        matches!(self, Update::Applied(_))
    }
}

/// The external test-and-set (DESIGN §3). Synchronous and object-safe so a
/// backend can be chosen at run time from a URL; callers in async code run it
/// on a blocking thread.
///
/// Every backend must satisfy the same rules (checked by one conformance
/// suite, `tests/common/mod.rs`):
///
/// - epochs only grow, one holder per epoch (Promise 2);
/// - epoch N+1 goes only to a member of epoch N (Promise 4);
/// - membership grows only through `add_member` and resets through `claim`.
///
/// **Dropping a backup.** A primary that loses its in-sync backup and keeps
/// serving without it must first claim the next epoch itself: that resets the
/// members to the primary alone, so the dropped backup, whose state now lags,
/// can never win. For the same reason `add_member` refuses a second, different
/// backup within one epoch.
pub trait Arbiter: Send + Sync {
    /// Current record, or None if the cluster has never had a primary.
    fn read(&self, cluster: &str) -> Result<Option<ClusterRecord>, ArbiterError>;

    /// THE atomic test-and-set: claim `epoch` for `primary.node`.
    ///
    /// Granted iff `epoch == current + 1` (current = 0 without a record) and
    /// (`current == 0` or `primary.node` is a member of `current`). On grant
    /// the record becomes `{epoch, primary, members: [primary.node], backup:
    /// None, protected: false}`.
    ///
    /// `epoch == 0` or `epoch > current + 1` is [`ArbiterError::InvalidEpoch`].
    ///
    /// **Retry safety.** A claim repeated by the holder (same epoch, same
    /// [`NodeAddrs`]) while that epoch is current answers `Granted` with the
    /// current record, so a caller whose reply was lost can simply ask again.
    fn claim(&self, cluster: &str, epoch: u64, primary: &NodeAddrs) -> Result<Claim, ArbiterError>;

    /// The primary of `epoch` adds `member` (its backup, now in sync) to the
    /// members of `epoch`. Applied only if the record's epoch is `epoch` and
    /// its primary is `primary_node`; sets `backup = {member, InSync, 0}` and
    /// `protected = true`. Adding the same member again is applied (no-op on
    /// membership); adding a different second backup is
    /// [`ArbiterError::Rejected`] (see "Dropping a backup" above).
    fn add_member(&self, cluster: &str, epoch: u64, primary_node: &str, member: &str) -> Result<Update, ArbiterError>;

    /// The primary of `epoch` publishes status (its backup's state and lag,
    /// whether outputs are gated). Same condition as `add_member`. Never
    /// changes `members`.
    fn publish(
        &self,
        cluster: &str,
        epoch: u64,
        primary_node: &str,
        backup: Option<BackupInfo>,
        protected: bool,
    ) -> Result<Update, ArbiterError>;

    /// An operator abandons the state of `epoch` (its last in-sync replica
    /// died): applied only while `epoch` is current and held by
    /// `primary_node`; every node becomes a member, so the next node to
    /// start claims `epoch + 1` with an empty state. Promise 4 is given up
    /// for this one epoch, deliberately and on the record
    /// ([`ClusterRecord::abandoned_at_ms`]).
    fn forget(&self, cluster: &str, epoch: u64, primary_node: &str) -> Result<Update, ArbiterError> {
        self.add_member(cluster, epoch, primary_node, ANYONE)
    }

    /// Human-readable backend description for logs
    /// (`understudy://127.0.0.1:7700`, `file:///shared`).
    fn describe(&self) -> String;
}
