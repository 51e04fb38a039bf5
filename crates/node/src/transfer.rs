//! State transfer and the backup's execution, as the replica handles them:
//! a join answered (or failed), the primary's snapshot handed to the
//! joiner's snapshot connection, a loaded snapshot installed, received
//! entries replayed in slices. The bytes travel by the runtime (threads
//! and sockets in a node, steps in the simulator); `snapshot` checks them.

use understudy_core::{ConnId, Event, Seq};

use crate::io::Io;
use crate::machine::Machine;
use crate::replica::Replica;
use crate::snapshot::{JoinRefused, SnapshotStream};

/// What one slice of the backup's execution left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecStep {
    /// More entries wait: run another slice after yielding.
    More,
    /// Nothing to execute now: wait for a wake.
    Idle,
    /// The join ended (reset, or closed with the queue drained): stop.
    Done,
}

impl<M: Machine, I: Io> Replica<M, I> {
    /// The generation of joins: a join attempt, its snapshot and its
    /// executor belong to the generation they started in.
    pub fn join_gen(&self) -> u64 {
        self.transfer.gen
    }

    /// Backup: the primary accepted our join (`snapshot_seq` from its
    /// answer). Registers the channel; None if the attempt is stale.
    /// `partial`: the primary sends only the entries after the state this
    /// node recovered from its disk (`catchup`), no snapshot.
    pub fn joined(
        &mut self,
        gen: u64,
        primary: String,
        incarnation: u64,
        epoch: u64,
        snapshot_seq: Seq,
        partial: bool,
    ) -> Option<ConnId> {
        if self.transfer.gen != gen || self.halted_or_exiting() {
            return None;
        }
        let how = match partial {
            true => format!("catching up from its own state at seq {snapshot_seq}: no snapshot"),
            false => format!("loading its snapshot at seq {snapshot_seq}"),
        };
        self.log(log::Level::Info, &format!("joined primary {primary:?} (epoch {epoch}); {how}"));
        let conn = self.chans.open(primary.clone(), incarnation, String::new());
        self.feed(Event::Joined { conn, primary, epoch, snapshot_seq });
        match partial {
            true => self.joined_partially(snapshot_seq),
            false => self.disk_reset(snapshot_seq),
        }
        Some(conn)
    }

    /// Backup: a join attempt failed before it was accepted; the core
    /// decides whether to wait (and says so) or stop.
    pub fn join_failed(&mut self, repl: &str, refused: JoinRefused) {
        self.log(log::Level::Debug, &format!("joining the primary at {repl} failed: {}", refused.error));
        let code = refused.code();
        self.feed(Event::JoinFailed { reason: refused.error.to_string(), code, peer_epoch: refused.peer_epoch });
    }

    /// Primary: the stream of the snapshot waiting for joiner `node` (this
    /// incarnation), in this epoch's frames of `--snapshot-chunk-bytes`.
    pub fn take_snapshot_stream(&mut self, node: &str, incarnation: u64) -> Option<SnapshotStream> {
        match &self.transfer.pending {
            Some(p) if p.node == node && p.incarnation == incarnation => {
                let p = self.transfer.pending.take()?;
                Some(SnapshotStream::new(p.writer, self.core.epoch(), p.seq, self.opts.snapshot_chunk_bytes))
            }
            _ => None,
        }
    }

    /// Primary: `bytes` of a snapshot stream were sent.
    pub fn snapshot_sent(&mut self, bytes: u64) {
        self.stats.snapshot_bytes_sent += bytes;
    }

    /// Backup: the snapshot of join `gen` at `seq` is restored into
    /// `machine` (`bytes` of it): it replaces ours, and entries may execute.
    pub fn install_snapshot(&mut self, gen: u64, machine: M, seq: Seq, bytes: u64) {
        if self.transfer.gen != gen || self.halted_or_exiting() {
            return;
        }
        let applied = self.machine.install(machine, seq);
        self.transfer.loaded = true;
        self.stats.snapshot_bytes_received += bytes;
        if applied {
            self.feed(Event::SnapshotLoaded { seq });
            self.disk_joined_snapshot(seq);
        }
        self.io.wake_exec();
    }

    /// Backup: loading the snapshot of join `gen` failed: the join starts over.
    pub fn snapshot_failed(&mut self, gen: u64, conn: ConnId, why: String) {
        self.log(log::Level::Warn, &format!("loading the snapshot failed: {why}; starting the join over"));
        if self.transfer.gen == gen {
            self.channel_broken(conn, format!("snapshot failed: {why}"));
        }
    }

    /// Backup: replays up to `budget` received entries of join `gen`
    /// (channel `conn`). Entries received before the channel closed are
    /// executed even after: the node may go live only once they are.
    pub fn execute_slice(&mut self, gen: u64, conn: ConnId, budget: usize) -> ExecStep {
        if self.is_halted() || self.transfer.gen != gen || !self.chans.contains(conn) && self.exec.is_empty() {
            return ExecStep::Done;
        }
        if !self.transfer.loaded || self.exec.is_empty() {
            return ExecStep::Idle;
        }
        let Replica { exec, machine, record, .. } = self;
        match machine.replay(exec, &mut record.floor, budget) {
            Ok(Some(upto)) => {
                self.feed(Event::Executed { upto });
            }
            Ok(None) => {}
            Err(d) => {
                self.halt(&d.to_string());
                return ExecStep::Done;
            }
        }
        ExecStep::More
    }

    fn halted_or_exiting(&self) -> bool {
        self.is_halted() || self.exiting
    }
}
