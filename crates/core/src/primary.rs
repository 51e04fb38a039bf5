//! The primary: output gate, join handling, failure of the backup, flow
//! control (DESIGN §3: output rule, output rule for reads, flow control,
//! FT VMotion, test-and-set after losing the backup).

use understudy_wire::msg::{Ack, RejectCode};

use crate::core::{Core, Role, WaitFor};
use crate::event::{BackupPhase, ClaimOutcome, Command, ConnId, Epoch, Event, Millis, Seq, UpdateOutcome, ANYONE};
use crate::roles::{Link, LinkPhase, Primary, Stopping};

impl Core {
    fn primary(&self) -> &Primary {
        match &self.role {
            Role::Primary(p) => p,
            _ => panic!("not a primary"),
        }
    }

    fn primary_mut(&mut self) -> &mut Primary {
        match &mut self.role {
            Role::Primary(p) => p,
            _ => panic!("not a primary"),
        }
    }

    /// Hot path: allocates the seq of a new entry produced by the machine.
    /// Unless a backup gates outputs, the entry's outputs may leave at once.
    #[inline]
    pub fn append(&mut self) -> Seq {
        self.last_seq += 1;
        self.executed = self.last_seq;
        let seq = self.last_seq;
        let lag_max = self.cfg.lag_entries_max;
        let Role::Primary(p) = &mut self.role else { panic!("append on a node that is not primary") };
        if let Some(l) = &p.link {
            // Flow control: a backup (or a joiner that has loaded its
            // snapshot and replays the backlog) that lags too far behind
            // in execution slows the primary down until it has caught up,
            // so that a join under full load converges.
            if (l.gates() || l.loaded) && seq - l.executed > lag_max {
                p.throttled = true;
            }
        }
        if !p.gating() && !self.cfg.durable_acks {
            debug_assert!(p.release_upto < seq);
            p.release_upto = seq;
        }
        seq
    }

    /// Hot path: the tag for a reply to a read executed now. When a backup
    /// gates outputs, the reply waits for an ack the backup sends after
    /// receiving an entry appended after the read (an old ack does not
    /// count, DESIGN §3): the tag is the next seq, and a barrier entry is
    /// appended at the next flush if no other entry takes that seq.
    #[inline]
    pub fn read_tag(&mut self) -> Seq {
        let (next, durable_acks) = (self.last_seq + 1, self.cfg.durable_acks);
        let p = self.primary_mut();
        if p.gating() {
            p.read_tag = next;
            next
        } else if durable_acks {
            // What the read saw must be on this node's disk first.
            next - 1
        } else {
            p.release_upto
        }
    }

    /// True if a read is waiting for an entry that nobody appended yet (the
    /// runtime wakes the channel's writer, which calls [`Core::barrier_for_flush`]).
    #[inline]
    pub fn barrier_needed(&self) -> bool {
        match &self.role {
            Role::Primary(p) => p.read_tag > self.last_seq,
            _ => false,
        }
    }

    /// The runtime is about to flush the batch it streams on `conn`. If a
    /// read waits for an entry after it, the core allocates a barrier
    /// entry's seq now; the runtime appends that (empty) entry to the batch.
    #[inline]
    pub fn barrier_for_flush(&mut self, conn: ConnId) -> Option<Seq> {
        if !self.barrier_needed() || self.stream_from().is_none_or(|(c, _)| c != conn) {
            return None;
        }
        let seq = self.append();
        debug_assert!(!self.barrier_needed(), "one barrier covers every read tagged before it");
        Some(seq)
    }

    /// Output gate watermark: outputs tagged ≤ this may leave the primary.
    #[inline]
    pub fn release_upto(&self) -> Seq {
        match &self.role {
            Role::Primary(p) => p.release_upto,
            // Released before a switchover's handover; replies of a
            // non-primary (-READONLY) carry tag 0.
            _ => self.released_before,
        }
    }

    /// False while the primary must not take new client requests (flow
    /// control, or a claim after losing its backup).
    #[inline]
    /// A stop (planned switchover) is in progress.
    pub fn is_stopping(&self) -> bool {
        matches!(&self.role, Role::Primary(p) if p.stopping.is_some())
    }

    pub fn intake_open(&self) -> bool {
        match &self.role {
            Role::Primary(p) => !p.throttled && p.claiming.is_none() && p.stopping.is_none(),
            _ => false,
        }
    }

    /// Entries after this seq must be streamed to the backup on its channel.
    pub fn stream_from(&self) -> Option<(ConnId, Seq)> {
        match &self.role {
            Role::Primary(p) => p.link.as_ref().map(|l| (l.conn, l.received)),
            _ => None,
        }
    }

    /// Moves the output gate to `upto`, as far as the disk allows.
    pub(crate) fn set_release(&mut self, upto: Seq) {
        let last = self.last_seq;
        let upto = self.disk_bound(upto);
        let p = self.primary_mut();
        if upto > p.release_upto {
            assert!(upto <= last, "release past the log: {upto} > {last}");
            p.release_upto = upto;
            self.emit(Command::Release { upto });
        }
        self.settle_reads();
    }

    /// Outputs no longer wait for a backup: a read tagged with the next seq
    /// (while one did) needs no entry to carry a barrier any more — its seq
    /// is allocated here and released at once.
    fn settle_reads(&mut self) {
        if self.barrier_needed() && self.stream_from().is_none() && !self.primary().gating() {
            let seq = self.append();
            if self.cfg.durable_acks {
                // The barrier entry is logged to this node's disk like any
                // other; it is released once the disk holds it.
                return;
            }
            debug_assert_eq!(self.primary().release_upto, seq, "an ungated append releases itself");
            self.emit(Command::Release { upto: seq });
        }
    }

    pub(crate) fn become_primary(&mut self, now: Millis, epoch: Epoch, from_backup: bool) {
        self.set_epoch(epoch);
        debug_assert_eq!(self.executed, self.last_seq, "a node goes live only with every received entry executed");
        // Released at once: everything before this epoch (with `always`,
        // only what this node's disk holds).
        let released = self.disk_bound(self.last_seq);
        self.role = Role::Primary(Primary::new(released, now));
        self.waited();
        self.emit(Command::BecomePrimary { epoch, from_backup });
        if self.stop_requested {
            // Asked to stop while going live: serve nothing, end now.
            self.primary_stop(now);
        }
    }

    pub(crate) fn primary_handle(&mut self, now: Millis, ev: Event) {
        match ev {
            Event::JoinRequest { conn, node, epoch, resume } => self.on_join_request(now, conn, node, epoch, resume),
            Event::Ack { conn, epoch, ack } => self.on_ack(now, conn, epoch, ack),
            Event::ConnClosed { conn, reason } if self.primary().link.as_ref().is_some_and(|l| l.conn == conn) => {
                self.on_backup_lost(now, reason);
            }
            Event::AddMemberDone { epoch, node, outcome } if node == ANYONE => self.on_abandoned(now, epoch, outcome),
            Event::AddMemberDone { epoch, node, outcome } => self.on_add_member_done(now, epoch, node, outcome),
            Event::ClaimDone { epoch, outcome } => self.on_reclaim_done(now, epoch, outcome),
            // Stale answers and backup-side events do not concern a primary.
            _ => {}
        }
    }

    fn on_join_request(&mut self, now: Millis, conn: ConnId, node: String, epoch: Epoch, resume: Option<Seq>) {
        if epoch > self.epoch && self.primary().claiming == Some(epoch) {
            // The joiner read the record of the epoch we are claiming: our
            // grant is at the arbiter but its answer has not reached us yet.
            // (Found by the simulator, seed 35: halting here lost the only
            // copy of the state.)
            let message = format!("the primary is still claiming epoch {epoch}; retry");
            self.emit(Command::Reject { conn, code: RejectCode::NotPrimary, message });
            return;
        }
        if epoch > self.epoch {
            self.emit(Command::Reject {
                conn,
                code: RejectCode::StaleEpoch,
                message: format!("primary's epoch {} is stale", self.epoch),
            });
            self.on_higher_epoch_primary(epoch);
            return;
        }
        let refuse = if node == self.node {
            Some((RejectCode::NameInUse, format!("node name {node:?} is the primary's own; give each node a distinct --node")))
        } else if self.primary().claiming.is_some() {
            Some((RejectCode::NotPrimary, "the primary is claiming a new epoch; retry".to_string()))
        } else {
            self.primary().link.as_ref().map(|l| match l.node == node {
                true => (RejectCode::NameInUse, format!("node {node:?} is already this primary's backup, on another connection")),
                false => (RejectCode::Busy, format!("node {:?} is already this primary's backup", l.node)),
            })
        };
        if let Some((code, message)) = refuse {
            if let Some(untold) = self.primary_mut().tell_refusal(&node, now) {
                let more = if untold > 0 { format!(" ({untold} more refusals since last told)") } else { String::new() };
                self.emit(Command::Notice { message: format!("refused the join of node {node:?}: {message}{more}") });
            }
            self.emit(Command::Reject { conn, code, message });
            return;
        }
        // A partial catch-up starts where the joiner's own state ends.
        let snapshot_seq = resume.unwrap_or(self.last_seq);
        assert!(snapshot_seq <= self.last_seq, "a joiner cannot resume after the primary's last seq {}", self.last_seq);
        self.primary_mut().link = Some(Link {
            conn,
            node: node.clone(),
            phase: LinkPhase::Joining,
            received: snapshot_seq,
            executed: 0,
            loaded: false,
            last_heard: now,
            last_heartbeat: now,
        });
        self.emit(Command::AcceptJoin { conn, snapshot_seq });
        self.publish(now);
    }

    fn on_higher_epoch_primary(&mut self, epoch: Epoch) {
        self.halt(format!("a node reports epoch {epoch}, newer than this primary's {}; stopping at once", self.epoch));
    }

    fn on_ack(&mut self, now: Millis, conn: ConnId, epoch: Epoch, ack: Ack) {
        let (last_seq, my_epoch) = (self.last_seq, self.epoch);
        let Some(l) = self.primary().link.as_ref().filter(|l| l.conn == conn) else { return };
        let bad = if epoch != my_epoch {
            Some(format!("ack for epoch {epoch} on a channel of epoch {my_epoch}"))
        } else if ack.received < l.received || ack.executed < l.executed {
            Some(format!("ack went backwards: received {} after {}", ack.received, l.received))
        } else if ack.received > last_seq {
            Some(format!("ack for seq {} beyond the log's end {last_seq}", ack.received))
        } else {
            None
        };
        if let Some(reason) = bad {
            self.emit(Command::Close { conn, reason: reason.clone() });
            self.on_backup_lost(now, reason);
            return;
        }
        let (catchup, lag_max) = (self.cfg.catchup_entries, self.cfg.lag_entries_max);
        let p = self.primary_mut();
        let l = p.link.as_mut().expect("checked above");
        l.received = ack.received;
        l.executed = ack.executed;
        l.loaded = ack.snapshot_loaded;
        l.last_heard = now;
        if l.phase == LinkPhase::Joining && l.loaded && last_seq - l.received <= catchup && last_seq - l.executed <= lag_max / 2 {
            // Caught up: from here on outputs wait for this backup.
            l.phase = LinkPhase::Gating { from: last_seq };
        }
        let mut add_member = None;
        if let LinkPhase::Gating { from } = l.phase {
            if l.received >= from {
                // Every output released so far came from entries ≤ `from`,
                // which it now holds: it may become a member.
                l.phase = LinkPhase::AddingMember;
                add_member = Some(l.node.clone());
            }
        }
        let (gates, received, executed) = (l.gates(), l.received, l.executed);
        if p.throttled && last_seq - executed <= lag_max / 2 {
            p.throttled = false;
        }
        if let Some(node) = add_member {
            self.emit(Command::AddMember { epoch: my_epoch, node });
        }
        if gates {
            self.set_release(received);
        }
    }

    fn on_add_member_done(&mut self, now: Millis, epoch: Epoch, node: String, outcome: UpdateOutcome) {
        let pending = self.primary().link.as_ref().filter(|l| l.node == node && l.phase == LinkPhase::AddingMember);
        let Some(conn) = pending.map(|l| l.conn).filter(|_| epoch == self.epoch) else { return };
        match outcome {
            UpdateOutcome::Applied => {
                self.primary_mut().link.as_mut().expect("checked").phase = LinkPhase::InSync;
                self.emit(Command::SendInSync { conn });
                // Publishes run on their own lane, concurrently with this
                // add-member: one sent at the join ("joining") may land after
                // it and overwrite "in sync". Publishing now orders a newer
                // status after any such stale one.
                self.publish(now);
            }
            UpdateOutcome::Superseded { current } => {
                self.halt(format!("the arbiter holds epoch {current}; this primary's epoch {epoch} is over"))
            }
            UpdateOutcome::Error(e) => {
                let message = format!("cannot make backup {node:?} a member of epoch {epoch} at the arbiter: {e}; it counts as in sync once the arbiter answers");
                self.retry_later(now, Command::AddMember { epoch, node }, WaitFor::Arbiter, || message)
            }
        }
    }

    /// The backup is gone (closed channel, silence, protocol violation).
    fn on_backup_lost(&mut self, now: Millis, reason: String) {
        let link = self.primary_mut().link.take().expect("a backup to lose");
        let handed = self.primary().stopping.is_some_and(|s| s.handed.is_some());
        if handed {
            // After a handover the successor ends the channel once its claim
            // of the next epoch is granted — or it died (or was cut off)
            // before claiming: a close or a silence cannot tell which. The
            // arbiter can: this node claims the next epoch as after any loss
            // of a member backup. Losing to the successor completes the
            // handover (`on_reclaim_done`); winning means nobody took over,
            // and this node stays primary rather than end the only copy of
            // the state (simulator, seed 20001417).
            debug_assert!(link.is_member(), "a handover goes to an in-sync backup");
            self.primary_mut().handed_to = Some(link.node.clone());
        } else if self.primary().stopping.is_some_and(|s| s.protected) {
            // The switchover lost its target: stay primary (unprotected)
            // rather than take the only copy of the state away.
            self.primary_mut().stopping = None;
            self.emit(Command::Notice {
                message: format!(
                    "backup {:?} was lost during the planned switchover ({reason}): this node stays primary, unprotected; stop it again to stop it without a backup",
                    link.node
                ),
            });
        }
        if link.is_member() {
            // It may claim the next epoch: win it first (test-and-set), and
            // release nothing more until then.
            let next = self.epoch + 1;
            self.primary_mut().claiming = Some(next);
            self.emit(Command::Claim { epoch: next });
        } else {
            // Never a member: it can never go live, so nothing is owed to it.
            self.primary_mut().throttled = false;
            let last = self.last_seq;
            self.set_release(last);
            self.publish(now);
        }
    }

    fn on_reclaim_done(&mut self, now: Millis, epoch: Epoch, outcome: ClaimOutcome) {
        if self.primary().claiming != Some(epoch) {
            return;
        }
        let handed = self.primary().stopping.filter(|s| s.handed.is_some());
        match outcome {
            ClaimOutcome::Granted => {
                self.set_epoch(epoch);
                let p = self.primary_mut();
                p.claiming = None;
                p.throttled = false;
                if handed.is_some() {
                    // The successor never claimed: the stop is called off.
                    p.stopping = None;
                    let successor = p.handed_to.take().unwrap_or_default();
                    self.emit(Command::Notice {
                        message: format!(
                            "backup {successor:?} did not take over after the handover (no claim of epoch {epoch} reached the arbiter): this node stays primary of epoch {epoch}, unprotected; stop it again to stop it without a backup"
                        ),
                    });
                }
                let last = self.last_seq;
                self.set_release(last);
            }
            // The successor's claim is recorded: the handover is complete.
            ClaimOutcome::Superseded { current, .. } | ClaimOutcome::NotMember { current } if handed.is_some() => {
                let rejoin = handed.is_some_and(|s| s.rejoin);
                let successor = self.primary_mut().handed_to.take().unwrap_or_default();
                self.handed_over_to(now, successor, rejoin, format!("(its claim of epoch {current} is recorded)"))
            }
            ClaimOutcome::Superseded { current, holder } => self.halt(format!(
                "lost the claim for epoch {epoch}: node {holder:?} holds epoch {current}; this node stops (it is no longer primary)"
            )),
            ClaimOutcome::NotMember { current } => {
                self.halt(format!("the arbiter refused epoch {epoch}: not a member of epoch {current}; this node stops"))
            }
            ClaimOutcome::Error(e) => self.retry_later(now, Command::Claim { epoch }, WaitFor::Arbiter, || {
                format!("the backup is gone and the arbiter cannot be reached to claim epoch {epoch}: {e}; replies are held until it answers")
            }),
        }
    }

    /// `judge`: whether a silent backup may be declared lost now (not
    /// right after this node itself was not running; see `Core::poll`).
    pub(crate) fn primary_poll(&mut self, now: Millis, judge: bool) {
        let (hb, timeout) = (self.cfg.heartbeat_ms, self.cfg.failover_timeout_ms);
        let last_seq = self.last_seq;
        let mut lost = None;
        if let Some(l) = self.primary_mut().link.as_mut() {
            if judge && now.saturating_sub(l.last_heard) > timeout {
                lost = Some(l.conn);
            } else if now.saturating_sub(l.last_heartbeat) >= hb {
                l.last_heartbeat = now;
                let conn = l.conn;
                self.emit(Command::SendHeartbeat { conn, last_seq });
            }
        }
        if let Some(conn) = lost {
            let reason = format!("backup silent for more than {timeout} ms");
            self.emit(Command::Close { conn, reason: reason.clone() });
            self.on_backup_lost(now, reason);
            if !self.is_primary() {
                return; // it had handed over: ended, or rejoining
            }
        }
        if self.primary().stopping.is_some() {
            self.stop_poll(now, judge);
            return;
        }
        let p = self.primary();
        if p.claiming.is_none() && now.saturating_sub(p.last_publish) >= self.cfg.status_publish_ms {
            let lag = p.link.as_ref().map_or(0, |l| last_seq.saturating_sub(l.executed));
            if lag != p.published_lag {
                self.publish(now);
            }
        }
    }

    /// Stopped by the operator: take no more requests; a backup that is not
    /// a member is owed nothing and let go; an in-sync backup is handed
    /// over to once it has executed every entry (`stop_poll`).
    pub(crate) fn primary_stop(&mut self, now: Millis) {
        if self.primary().stopping.is_some() {
            return;
        }
        let protected = self.primary().protected();
        self.primary_mut().stopping = Some(Stopping { since: now, protected, rejoin: false, abandoning: false, handed: None });
        let joiner = self.primary().link.as_ref().filter(|l| !l.is_member()).map(|l| l.conn);
        if let Some(conn) = joiner {
            let reason = "the primary stops: this join is abandoned".to_string();
            self.emit(Command::Close { conn, reason: reason.clone() });
            self.on_backup_lost(now, reason);
        }
        self.stop_poll(now, true);
    }

    /// An operator's switchover: hand over to the in-sync backup as a stop
    /// does, then rejoin the new primary as its backup. Refused (with why)
    /// unless this node is a primary with an in-sync backup and no stop or
    /// claim in progress.
    pub fn request_switchover(&mut self, now: Millis) -> Result<String, String> {
        let Role::Primary(p) = &self.role else {
            return Err(format!("node {:?} is not the primary ({})", self.node, self.role_name().as_str()));
        };
        if p.stopping.is_some() || p.claiming.is_some() {
            return Err("a stop or a claim of the next epoch is in progress".into());
        }
        let Some(backup) = p.link.as_ref().filter(|l| l.phase == LinkPhase::InSync).map(|l| l.node.clone()) else {
            return Err("no backup is in sync to take over (see understudy status)".into());
        };
        self.primary_mut().stopping =
            Some(Stopping { since: now, protected: true, rejoin: true, abandoning: false, handed: None });
        self.emit(Command::Notice {
            message: format!("switchover asked: handing over to backup {backup:?}, then rejoining it as its backup"),
        });
        self.stop_poll(now, true);
        Ok(backup)
    }

    /// A stopping primary ends once every output it holds is released: by
    /// handing over to its in-sync backup when that has received every
    /// entry (it goes live at once, executing them first), or alone when it
    /// has no backup. A backup that does not catch up within 20 failure
    /// timeouts is left to take over as after a failure.
    fn stop_poll(&mut self, now: Millis, judge: bool) {
        let last = self.last_seq;
        let p = self.primary();
        let Some(Stopping { since, rejoin, handed, .. }) = p.stopping else { return };
        if p.claiming.is_some() {
            return; // winning the next epoch after losing the backup
        }
        if let Some(at) = handed {
            // Waiting for the successor's claim (the channel's close); a
            // successor that never answers is not waited for long: the
            // arbiter decides, as after any loss of the backup.
            let limit = 4 * self.cfg.failover_timeout_ms;
            if judge && now.saturating_sub(at) >= limit {
                if let Some(conn) = p.link.as_ref().map(|l| l.conn) {
                    let reason = format!("no word of the successor's claim within {limit} ms");
                    self.emit(Command::Close { conn, reason: reason.clone() });
                    self.on_backup_lost(now, reason);
                }
            }
            return;
        }
        let exit = match &p.link {
            None if p.release_upto == last && last == 0 => {
                // Nothing was ever logged in this epoch (the cluster is
                // empty): abandoning it loses nothing, and spares the cluster
                // a record naming a primary that will not come back.
                if !p.stopping.is_some_and(|s| s.abandoning) {
                    if let Some(s) = self.primary_mut().stopping.as_mut() {
                        s.abandoning = true;
                    }
                    self.emit(Command::AddMember { epoch: self.epoch, node: ANYONE.into() });
                }
                if now.saturating_sub(since) < 20 * self.cfg.failover_timeout_ms {
                    return; // until the arbiter answers (`on_abandoned`)
                }
                "no backup to hand over to, nothing was logged; the arbiter did not answer the abandonment".to_string()
            }
            None if p.release_upto == last => "no backup to hand over to; every reply was released".to_string(),
            None => return,
            // Received is enough: every output is released, and the backup
            // executes what it holds before it serves (its go-live drain).
            Some(l) if l.phase == LinkPhase::InSync && l.received >= last => {
                debug_assert_eq!(p.release_upto, last, "an in-sync backup that received everything released everything");
                let conn = l.conn;
                self.emit(Command::SendHandover { conn });
                if let Some(s) = self.primary_mut().stopping.as_mut() {
                    s.handed = Some(now);
                }
                return;
            }
            Some(l) => {
                let limit = 20 * self.cfg.failover_timeout_ms;
                if now.saturating_sub(since) < limit {
                    return;
                }
                if rejoin {
                    // A switchover that cannot finish is called off.
                    let message = format!(
                        "switchover called off: backup {:?} did not receive every entry within {limit} ms (it is at {} of {last}); serving on",
                        l.node, l.received
                    );
                    self.primary_mut().stopping = None;
                    self.emit(Command::Notice { message });
                    return;
                }
                format!(
                    "backup {:?} did not receive every entry within {limit} ms (it is at {} of {last}): stopping without a handover; it takes over after its failure timeout",
                    l.node, l.received
                )
            }
        };
        self.role = Role::Halted("stopped by the operator".into());
        self.emit(Command::Exit { reason: exit });
    }

    /// The arbiter answered the abandonment of an empty epoch by a stopping
    /// primary: it ends either way (applied, or the cluster moved on).
    fn on_abandoned(&mut self, now: Millis, epoch: Epoch, outcome: UpdateOutcome) {
        if epoch != self.epoch || !self.primary().stopping.is_some_and(|s| s.abandoning) {
            return;
        }
        let reason = match outcome {
            UpdateOutcome::Applied => {
                format!("no backup to hand over to and nothing was logged: epoch {epoch} is abandoned at the arbiter, the next node to start claims epoch {}", epoch + 1)
            }
            UpdateOutcome::Superseded { current } => format!("epoch {current} exists already: nothing to abandon"),
            UpdateOutcome::Error(e) => {
                return self.retry_later(now, Command::AddMember { epoch, node: ANYONE.into() }, WaitFor::Arbiter, || {
                    format!("stopping: cannot abandon the empty epoch {epoch} at the arbiter: {e}")
                });
            }
        };
        self.role = Role::Halted("stopped by the operator".into());
        self.emit(Command::Exit { reason });
    }

    /// The handover is done: end, or (a switchover) rejoin the successor.
    fn handed_over_to(&mut self, now: Millis, node: String, rejoin: bool, how: String) {
        if rejoin {
            return self.rejoin_after_handover(now, node);
        }
        let (last, next) = (self.last_seq, self.epoch + 1);
        self.role = Role::Halted("stopped by the operator".into());
        self.emit(Command::Exit { reason: format!("handed over to backup {node:?} at seq {last}; it holds epoch {next} {how}") });
    }

    /// After a switchover's handover: this node holds nothing the cluster
    /// needs any more (its successor has every entry); it starts over as a
    /// joiner of the successor, which claims the next epoch now.
    fn rejoin_after_handover(&mut self, now: Millis, successor: String) {
        let epoch = self.epoch;
        self.handed_over = Some(epoch);
        self.released_before = self.primary().release_upto;
        debug_assert_eq!(self.released_before, self.last_seq, "a handover releases every output first");
        self.role = Role::Starting { joining_since: None };
        self.last_seq = 0;
        self.executed = 0;
        self.emit(Command::ResetMachine);
        self.retry_later(now, Command::ReadArbiter, WaitFor::Successor, || {
            format!("handed over epoch {epoch} to {successor:?} (switchover): joining it as its backup once it serves")
        });
    }

    /// Refreshes `status` fields at the arbiter (best effort).
    fn publish(&mut self, now: Millis) {
        let last_seq = self.last_seq;
        let epoch = self.epoch;
        let p = self.primary_mut();
        let backup = p.link.as_ref().map(|l| {
            let phase = if l.phase == LinkPhase::InSync { BackupPhase::InSync } else { BackupPhase::Joining };
            (l.node.clone(), phase, last_seq.saturating_sub(l.executed))
        });
        p.last_publish = now;
        p.published_lag = backup.as_ref().map_or(0, |b| b.2);
        let protected = p.protected();
        self.emit(Command::Publish { epoch, backup, protected });
    }
}
