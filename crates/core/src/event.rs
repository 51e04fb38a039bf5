//! The vocabulary of the protocol core: events in, commands out.

use understudy_wire::msg::{Ack, RejectCode};

/// A log position. Seqs are contiguous and grow across epochs: a new primary
/// continues from the last seq it executed.
pub type Seq = u64;
/// A term of office won at the arbiter. Only grows.
pub type Epoch = u64;
/// Milliseconds on a monotonic clock of the runtime's choosing.
pub type Millis = u64;
/// The runtime's handle for one logging-channel connection.
pub type ConnId = u64;

/// What the core needs to know of the arbiter's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArbiterView {
    pub epoch: Epoch,
    pub primary_node: String,
    pub primary_repl: String,
    /// Where the primary serves clients (for redirects from a backup).
    pub primary_client: String,
    pub members: Vec<String>,
}

impl ArbiterView {
    /// An operator abandoned this epoch's state (`understudy forget`): its
    /// members include every node (the arbiter's `ANYONE`, `*`).
    pub fn abandoned(&self) -> bool {
        self.members.iter().any(|m| m == ANYONE)
    }
}

/// The member standing for every node (the arbiter's `ANYONE`).
pub const ANYONE: &str = "*";

/// Result of claiming an epoch (the test-and-set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    Granted,
    /// Someone else holds `current` ≥ the claimed epoch.
    Superseded {
        current: Epoch,
        holder: String,
    },
    /// We are not a member of the current epoch (Promise 4).
    NotMember {
        current: Epoch,
    },
    /// The arbiter could not be reached or failed; retry later.
    Error(String),
}

/// Result of a conditional update (add member) at the arbiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    Applied,
    /// The record moved to another epoch or primary: we are deposed.
    Superseded {
        current: Epoch,
    },
    Error(String),
}

/// The backup's phase, as published for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupPhase {
    Joining,
    InSync,
}

/// Everything that can happen to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    // --- arbiter replies ---
    /// Answer to [`Command::ReadArbiter`].
    ArbiterRead(Result<Option<ArbiterView>, String>),
    /// Answer to [`Command::Claim`].
    ClaimDone {
        epoch: Epoch,
        outcome: ClaimOutcome,
    },
    /// Answer to [`Command::AddMember`].
    AddMemberDone {
        epoch: Epoch,
        node: String,
        outcome: UpdateOutcome,
    },

    // --- primary side of the logging channel ---
    /// An authenticated node asks to join as backup.
    JoinRequest {
        conn: ConnId,
        node: String,
        epoch: Epoch,
        /// The runtime's offer of a partial catch-up: the joiner holds
        /// every entry up to this seq, as this primary has them (its disk's
        /// state, checked against the retained log); only the entries after
        /// it are sent, no snapshot.
        resume: Option<Seq>,
    },
    /// A cumulative ack from the backup.
    Ack {
        conn: ConnId,
        epoch: Epoch,
        ack: Ack,
    },

    // --- backup side of the logging channel ---
    /// Our join was accepted; the snapshot we will load is at `snapshot_seq`.
    Joined {
        conn: ConnId,
        primary: String,
        epoch: Epoch,
        snapshot_seq: Seq,
    },
    /// The join attempt failed before it was accepted (unreachable, refused).
    JoinFailed {
        reason: String,
        code: Option<RejectCode>,
        peer_epoch: Option<Epoch>,
    },
    /// Entries `first..=last` arrived and are held in memory.
    Entries {
        conn: ConnId,
        epoch: Epoch,
        first: Seq,
        last: Seq,
    },
    Heartbeat {
        conn: ConnId,
        epoch: Epoch,
        last_seq: Seq,
    },
    /// The primary made us a member of `epoch` at the arbiter.
    InSync {
        conn: ConnId,
        epoch: Epoch,
    },
    /// The snapshot at `seq` is loaded into the machine.
    SnapshotLoaded {
        seq: Seq,
    },
    /// The machine has applied every entry up to `upto`.
    Executed {
        upto: Seq,
    },
    /// This node's disk holds its state up to `upto` (snapshot and log,
    /// synced): with [`crate::Config::durable_acks`], acks and releases
    /// follow it.
    Durable {
        upto: Seq,
    },

    // --- either side ---
    /// A logging-channel connection closed (or broke the protocol).
    ConnClosed {
        conn: ConnId,
        reason: String,
    },
    /// Some source says a newer epoch exists.
    HigherEpoch {
        epoch: Epoch,
    },
    /// The arbiter refused this node's credentials: waiting cannot help.
    ArbiterRefused {
        reason: String,
    },
    /// The operator asks this node to stop (SIGTERM, SIGINT): a primary with
    /// an in-sync backup hands over to it (planned switchover), any other
    /// node leaves.
    Stop,
    /// Backup: the primary handed over (planned switchover).
    Handover {
        conn: ConnId,
        epoch: Epoch,
    },
}

/// Everything the core asks the runtime to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    ReadArbiter,
    /// Test-and-set: claim `epoch` with our addresses.
    Claim {
        epoch: Epoch,
    },
    /// Make `node` a member of `epoch` (it may claim `epoch + 1`).
    AddMember {
        epoch: Epoch,
        node: String,
    },
    /// Refresh the status fields of the record (best effort).
    Publish {
        epoch: Epoch,
        backup: Option<(String, BackupPhase, u64)>,
        protected: bool,
    },

    /// Backup: open a logging channel to the primary at `repl` and join.
    Connect {
        repl: String,
        epoch: Epoch,
    },
    /// Primary: accept the join on `conn`: send `JoinAccepted`, serve a
    /// snapshot taken *now* (at `snapshot_seq`) and stream every entry after it.
    AcceptJoin {
        conn: ConnId,
        snapshot_seq: Seq,
    },
    /// Refuse a peer with a reason, then close.
    Reject {
        conn: ConnId,
        code: RejectCode,
        message: String,
    },
    /// Close a logging channel.
    Close {
        conn: ConnId,
        reason: String,
    },
    SendHeartbeat {
        conn: ConnId,
        last_seq: Seq,
    },
    SendAck {
        conn: ConnId,
        ack: Ack,
    },
    SendInSync {
        conn: ConnId,
    },
    /// Planned switchover: tell the in-sync backup to take over now.
    SendHandover {
        conn: ConnId,
    },

    /// Output gate: every output tagged ≤ `upto` may leave now.
    Release {
        upto: Seq,
    },
    /// Start serving clients as primary of `epoch` (machine in record mode).
    /// `from_backup` is set on a go-live: the machine switches from replay.
    BecomePrimary {
        epoch: Epoch,
        from_backup: bool,
    },
    /// Throw away the machine's state: a failed join starts over empty.
    ResetMachine,
    /// Fail-stop with a reason; the process exits non-zero.
    Halt {
        reason: String,
    },
    /// Stop for good before serving anything: the node's configuration is
    /// wrong (a secret, a cluster, a name in use); the reason names the flag.
    Refuse {
        reason: String,
    },
    /// The node stopped as asked ([`Event::Stop`]); every released output
    /// is to be written before the process exits 0.
    Exit {
        reason: String,
    },
    /// Tell the operator what the node waits for (at once, then at growing
    /// intervals while the wait lasts).
    Notice {
        message: String,
    },
}
