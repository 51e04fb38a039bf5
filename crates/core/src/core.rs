//! [`Core`]: one node's replication protocol, without I/O.
//!
//! The runtime feeds [`Event`]s (and the time) in through [`Core::handle`]
//! and [`Core::poll`], and performs the [`Command`]s it takes out with
//! [`Core::drain_commands`]. The primary's per-operation hot path does not go
//! through events: [`Core::append`], [`Core::read_tag`] and
//! [`Core::release_upto`] are plain method calls.
//!
//! Role logic lives in `primary`, `backup` and `starting` (`impl Core`
//! blocks); role state in `roles`; this file holds the shared state and dispatch.

use crate::config::Config;
use crate::event::{ArbiterView, Command, ConnId, Epoch, Event, Millis, Seq};
use crate::roles::{Backup, Primary};

/// The role a node plays right now.
#[derive(Debug)]
pub(crate) enum Role {
    /// Reading the arbiter, claiming epoch 1, or trying to join (since the
    /// given time, if a `Connect` is out).
    Starting {
        joining_since: Option<Millis>,
    },
    Primary(Primary),
    Backup(Backup),
    /// Fail-stopped; every further event is ignored.
    Halted(String),
}

/// A coarse view of the role, for status displays and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleName {
    Starting,
    Primary,
    /// A backup still loading its snapshot or catching up.
    Joining,
    /// A backup that the arbiter lists as a member of the current epoch.
    Backup,
    /// A backup whose primary failed, claiming the next epoch.
    GoingLive,
    Halted,
}

impl RoleName {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleName::Starting => "starting",
            RoleName::Primary => "primary",
            RoleName::Joining => "joining",
            RoleName::Backup => "backup",
            RoleName::GoingLive => "going-live",
            RoleName::Halted => "halted",
        }
    }
}

/// A snapshot of what a node knows, for INFO, status and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub role: RoleName,
    pub epoch: Epoch,
    /// Primary: last appended seq. Backup: last received seq.
    pub last_seq: Seq,
    /// Last seq applied to the machine.
    pub executed: Seq,
    /// Primary: its backup (node, in sync?, lag in entries). Backup: its primary.
    pub peer: Option<String>,
    pub peer_in_sync: bool,
    pub lag: u64,
    /// Primary only: outputs wait for an in-sync backup's acks.
    pub protected: bool,
}

/// One node's protocol state.
#[derive(Debug)]
pub struct Core {
    pub(crate) cfg: Config,
    pub(crate) node: String,
    pub(crate) epoch: Epoch,
    pub(crate) role: Role,
    /// Primary: last appended seq. Backup: last received seq.
    pub(crate) last_seq: Seq,
    /// Last seq applied to the machine (primary: equals `last_seq`).
    pub(crate) executed: Seq,
    /// A command to issue again at a time (arbiter or join retries).
    pub(crate) retry: Option<(Millis, Command)>,
    /// What the node has been waiting for, while it retries.
    pub(crate) wait: Option<Wait>,
    /// Starting: the primary this node tries to join (for what it says).
    pub(crate) target: Option<ArbiterView>,
    /// Asked to stop while going live: stop once primary.
    pub(crate) stop_requested: bool,
    /// The epoch this node handed over in a switchover (it rejoins as backup).
    pub(crate) handed_over: Option<Epoch>,
    /// Starting: the epoch a claim is out for (answer not yet in).
    pub(crate) claiming: Option<Epoch>,
    /// Outputs released while this node was the primary it handed over
    /// from: its client connections still write them after the role change.
    pub(crate) released_before: Seq,
    /// What this node's disk holds (`Event::Durable`; `durable` module).
    pub(crate) durable: Seq,
    /// The state came from this node's complete disk (`Core::recovered`).
    pub(crate) from_disk: bool,
    /// Why the event being handled was refused, if it was.
    refusal: Option<String>,
    /// The time of the last `poll` and whether it put off judging a peer's
    /// silence (see [`Core::poll`]).
    last_poll: Millis,
    silence_deferred: bool,
    out: Vec<Command>,
}

/// What [`Core::handle`] did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// Not taken (entries that do not follow, a stale channel, a halted
    /// node): what it carries must not reach the machine.
    Refused(String),
}

/// What a waiting node waits for: retries of the same kind back off
/// together and are reported together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// The arbiter does not answer (or fails).
    Arbiter,
    /// The record names this node as primary, but this process is new.
    OwnRecord,
    /// The registered primary does not answer on its replication address.
    Primary,
    /// The primary already has a backup: this node is a spare.
    Spare,
    /// The primary says a live node goes by this node's name.
    NameInUse,
    /// The primary refused for a passing reason (claiming, stale epoch).
    PrimaryBusy,
    /// This node handed over (switchover) and waits for its successor.
    Successor,
}

/// A wait in progress.
#[derive(Debug, Clone)]
pub(crate) struct Wait {
    pub(crate) what: WaitFor,
    pub(crate) since: Millis,
    pub(crate) attempts: u32,
    told: u32,
    next_tell: Millis,
}

impl Core {
    pub fn new(cfg: Config, node: impl Into<String>) -> Self {
        Core {
            cfg,
            node: node.into(),
            epoch: 0,
            role: Role::Starting { joining_since: None },
            last_seq: 0,
            executed: 0,
            retry: None,
            wait: None,
            target: None,
            stop_requested: false,
            handed_over: None,
            released_before: 0,
            durable: 0,
            from_disk: false,
            claiming: None,
            refusal: None,
            last_poll: 0,
            silence_deferred: false,
            out: Vec::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Begins: find out from the arbiter whether to serve or to join.
    pub fn start(&mut self, _now: Millis) {
        assert!(matches!(self.role, Role::Starting { .. }));
        self.emit(Command::ReadArbiter);
    }

    /// Moves the commands produced so far into `into`.
    pub fn drain_commands(&mut self, into: &mut Vec<Command>) {
        into.append(&mut self.out);
    }

    /// Convenience for tests and simple runtimes.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.out)
    }

    pub(crate) fn emit(&mut self, c: Command) {
        self.out.push(c);
    }

    /// Issues `c` again later. Retries back off exponentially (from
    /// `retry_ms`, doubling, up to `retry_max_ms`) while the node keeps
    /// waiting for the same thing; what it waits for is told to the
    /// operator at once, then after 1, 2, 4… s (at most every minute).
    pub(crate) fn retry_later(&mut self, now: Millis, c: Command, what: WaitFor, say: impl FnOnce() -> String) {
        let w = match &mut self.wait {
            Some(w) if w.what == what => w,
            slot => slot.insert(Wait { what, since: now, attempts: 0, told: 0, next_tell: now }),
        };
        w.attempts += 1;
        let delay = (self.cfg.retry_ms << (w.attempts - 1).min(16)).min(self.cfg.retry_max_ms.max(self.cfg.retry_ms));
        debug_assert!(delay >= self.cfg.retry_ms.min(self.cfg.retry_max_ms));
        self.retry = Some((now + delay, c));
        if now >= w.next_tell {
            let (since, attempts) = (now - w.since, w.attempts);
            w.next_tell = now + (1_000u64 << w.told.min(6)).min(60_000);
            w.told += 1;
            let message = format!(
                "{} (waiting {:.1} s, {attempts} attempt{}; next in {delay} ms)",
                say(),
                since as f64 / 1000.0,
                if attempts == 1 { "" } else { "s" }
            );
            self.emit(Command::Notice { message });
        }
    }

    /// The node got what it waited for (a role): the next wait starts
    /// afresh, with the shortest back-off.
    pub(crate) fn waited(&mut self) {
        self.wait = None;
    }

    /// How long the node has waited for `what` without interruption.
    pub(crate) fn waiting_for(&self, what: WaitFor, now: Millis) -> Option<Millis> {
        self.wait.as_ref().filter(|w| w.what == what).map(|w| now - w.since)
    }

    /// Raises our epoch; epochs never go backwards.
    pub(crate) fn set_epoch(&mut self, e: Epoch) {
        assert!(e >= self.epoch, "epoch must only grow: {} -> {}", self.epoch, e);
        self.epoch = e;
    }

    /// Feeds one event. The outcome says whether the core took what the
    /// event carries: the runtime hands received entries to the machine
    /// only when they were [`Outcome::Accepted`].
    pub fn handle(&mut self, now: Millis, ev: Event) -> Outcome {
        if let Role::Halted(why) = &self.role {
            return Outcome::Refused(format!("halted: {why}"));
        }
        debug_assert!(self.refusal.is_none());
        match ev {
            Event::HigherEpoch { epoch } if epoch > self.epoch => self.on_higher_epoch(now, epoch),
            Event::HigherEpoch { .. } => {}
            Event::Stop => self.on_stop(now),
            Event::Durable { upto } => self.on_durable(upto),
            Event::Entries { .. } if !matches!(self.role, Role::Backup(_)) => {
                self.refused(format!("entries arrived at a node that is {}, not a backup", self.role_name().as_str()))
            }
            ev => match self.role {
                Role::Starting { .. } => self.starting_handle(now, ev),
                Role::Primary(_) => self.primary_handle(now, ev),
                Role::Backup(_) => self.backup_handle(now, ev),
                Role::Halted(_) => {}
            },
        }
        match self.refusal.take() {
            Some(why) => Outcome::Refused(why),
            None => Outcome::Accepted,
        }
    }

    /// Marks the event being handled as refused (with why).
    pub(crate) fn refused(&mut self, why: String) {
        self.refusal.get_or_insert(why);
    }

    /// Lets time pass: heartbeats, failure detection, retries.
    pub fn poll(&mut self, now: Millis) {
        if matches!(self.role, Role::Halted(_)) {
            return;
        }
        if let Some((at, _)) = &self.retry {
            if now >= *at {
                let (_, c) = self.retry.take().expect("checked");
                self.emit(c);
            }
        }
        // A poll long after the last one means this node was not running
        // (frozen, starved of CPU): what its peer sent meanwhile may be
        // waiting unread, and the peer is not silent for that. Silence is
        // judged at the next poll, once the runtime has read it — put off
        // once only, so a node that stays slow still detects a failure.
        let gap = now.saturating_sub(self.last_poll);
        self.last_poll = self.last_poll.max(now);
        let judge = self.silence_deferred || gap <= self.cfg.failover_timeout_ms / 2;
        self.silence_deferred = !judge;
        match self.role {
            Role::Primary(_) => self.primary_poll(now, judge),
            Role::Backup(_) => self.backup_poll(now, judge),
            Role::Starting { .. } => self.starting_poll(now),
            Role::Halted(_) => {}
        }
    }

    /// The logging channel whose peer has been silent for longer than the
    /// failure timeout at `now`: the next [`Core::poll`] may declare it
    /// failed. The runtime asks first whether bytes from it wait unread
    /// (see [`Core::heard`]).
    pub fn silent_peer(&self, now: Millis) -> Option<ConnId> {
        let timeout = self.cfg.failover_timeout_ms;
        let (conn, last_heard) = match &self.role {
            Role::Primary(p) => p.link.as_ref().map(|l| (l.conn, l.last_heard))?,
            Role::Backup(b) => (b.conn?, b.last_heard),
            Role::Starting { .. } | Role::Halted(_) => return None,
        };
        (now.saturating_sub(last_heard) > timeout).then_some(conn)
    }

    /// Bytes from the peer on `conn` wait unread in this node's socket:
    /// the peer was not silent, this node was slow to read (its event loop
    /// busy or starved of CPU). A detector reads what has arrived before it
    /// declares a peer failed, so this counts as hearing from it.
    pub fn heard(&mut self, conn: ConnId, now: Millis) {
        match &mut self.role {
            Role::Primary(p) => {
                if let Some(l) = p.link.as_mut().filter(|l| l.conn == conn) {
                    l.last_heard = l.last_heard.max(now);
                }
            }
            Role::Backup(b) if b.conn == Some(conn) => b.last_heard = b.last_heard.max(now),
            _ => {}
        }
    }

    fn on_higher_epoch(&mut self, now: Millis, epoch: Epoch) {
        match &self.role {
            // Our own claim of `epoch` may be granted with its answer still
            // on the way (a status publish answered first): not a deposal.
            Role::Primary(p) if p.claiming == Some(epoch) => {}
            Role::Primary(_) => self.halt(format!(
                "epoch {epoch} exists but this primary holds only epoch {}: another node is primary; stopping at once",
                self.epoch
            )),
            Role::Backup(_) => self.backup_abandon(now, format!("epoch {epoch} superseded our primary's epoch {}", self.epoch)),
            Role::Starting { .. } | Role::Halted(_) => {}
        }
    }

    /// The operator asks this node to stop. A primary stops taking requests
    /// and hands over (see `primary::stop_poll`); a backup or a joiner
    /// leaves at once (its primary records it gone); a starting node ends.
    fn on_stop(&mut self, now: Millis) {
        match &self.role {
            Role::Primary(_) => self.primary_stop(now),
            Role::Backup(_) => self.backup_stop(),
            Role::Starting { .. } if self.claiming.is_some() => {
                // The claim may be granted already: finish it, then stop as
                // a primary does.
                self.stop_requested = true;
                self.emit(Command::Notice {
                    message: "asked to stop while claiming an epoch: stopping once the claim is answered".into(),
                });
            }
            Role::Starting { .. } => {
                self.retry = None;
                self.role = Role::Halted("stopped by the operator".into());
                self.emit(Command::Exit { reason: "stopped before serving or joining".into() });
            }
            Role::Halted(_) => {}
        }
    }

    /// Fail-stop. Outputs still held are never released.
    pub(crate) fn halt(&mut self, reason: String) {
        let conn = match &self.role {
            Role::Primary(p) => p.link.as_ref().map(|l| l.conn),
            Role::Backup(b) => b.conn,
            _ => None,
        };
        if let Some(conn) = conn {
            self.emit(Command::Close { conn, reason: "halting".into() });
        }
        self.retry = None;
        self.role = Role::Halted(reason.clone());
        self.emit(Command::Halt { reason });
    }

    /// Stops for good before serving: waiting cannot fix the configuration.
    pub(crate) fn refuse(&mut self, reason: String) {
        assert!(matches!(self.role, Role::Starting { .. }), "only a starting node refuses its configuration");
        self.retry = None;
        self.wait = None;
        self.role = Role::Halted(reason.clone());
        self.emit(Command::Refuse { reason });
    }

    /// A starting node with a claim out: if granted, it is the cluster's
    /// primary — and, with an empty cluster, the only holder of its state.
    pub fn is_claiming(&self) -> bool {
        matches!(self.role, Role::Starting { .. }) && self.claiming.is_some()
    }

    /// True while this node may execute client operations as primary.
    pub fn is_primary(&self) -> bool {
        matches!(self.role, Role::Primary(_))
    }

    pub fn is_halted(&self) -> bool {
        matches!(self.role, Role::Halted(_))
    }

    /// Why this node halted, if it did.
    pub fn halt_reason(&self) -> Option<&str> {
        match &self.role {
            Role::Halted(r) => Some(r),
            _ => None,
        }
    }

    pub fn role_name(&self) -> RoleName {
        match &self.role {
            Role::Starting { .. } => RoleName::Starting,
            Role::Primary(_) => RoleName::Primary,
            Role::Backup(b) if b.going_live.is_some() => RoleName::GoingLive,
            Role::Backup(b) if b.in_sync => RoleName::Backup,
            Role::Backup(_) => RoleName::Joining,
            Role::Halted(_) => RoleName::Halted,
        }
    }

    pub fn status(&self) -> Status {
        let mut s = Status {
            role: self.role_name(),
            epoch: self.epoch,
            last_seq: self.last_seq,
            executed: self.executed,
            peer: None,
            peer_in_sync: false,
            lag: 0,
            protected: false,
        };
        match &self.role {
            Role::Primary(p) => {
                if let Some(l) = &p.link {
                    s.peer = Some(l.node.clone());
                    s.peer_in_sync = l.is_member();
                    s.lag = self.last_seq.saturating_sub(l.executed);
                }
                s.protected = p.protected();
            }
            Role::Backup(b) => {
                s.peer = Some(b.primary.clone());
                s.peer_in_sync = b.in_sync;
                s.lag = b.primary_last_seq.saturating_sub(self.executed);
            }
            _ => {}
        }
        s
    }

    /// The open logging channel, if any.
    pub fn channel(&self) -> Option<ConnId> {
        match &self.role {
            Role::Primary(p) => p.link.as_ref().map(|l| l.conn),
            Role::Backup(b) => b.conn,
            _ => None,
        }
    }
}
