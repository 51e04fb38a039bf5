//! The logging channel's frames, both sides, as the replica handles them:
//! acks in at the primary; entries, heartbeats, the in-sync notice and the
//! handover in at the backup; a writer's turn to take the send buffer; a
//! channel that broke. Runtimes feed bytes in and take bytes out; the
//! decisions are the core's.

use understudy_core::{ConnId, Event, Outcome};
use understudy_wire::frame::Kind;
use understudy_wire::msg::{Ack, Heartbeat, Reject};

use crate::exec::validate;
use crate::framed::FrameReader;
use crate::io::Io;
use crate::machine::Machine;
use crate::replica::Replica;

/// What a backup logs when its primary hands over (the simulator counts these).
pub const HANDOVER_RECEIVED: &str = "the primary hands over (planned switchover): taking over";

impl<M: Machine, I: Io> Replica<M, I> {
    /// Primary: a joiner authenticated on a new connection; the core accepts
    /// or refuses it. Returns the connection.
    /// `resume`: the (epoch, seq) of the last entry the joiner holds, if
    /// it has a state of its own (from its disk): if this primary retains
    /// the entries after it and holds the same entry there, the joiner is
    /// sent only those (partial catch-up).
    pub fn joiner_arrived(
        &mut self,
        node: String,
        incarnation: u64,
        client: String,
        epoch: u64,
        resume: Option<(u64, u64)>,
    ) -> ConnId {
        let conn = self.chans.open(node.clone(), incarnation, client);
        let resume = resume.and_then(|(e, s)| self.can_resume(&node, e, s));
        self.transfer.resume = resume.map(|s| (conn, s));
        self.feed(Event::JoinRequest { conn, node, epoch, resume });
        conn
    }

    /// Primary: every frame buffered in `reader` from the backup on `conn`.
    /// Err: the channel must close, with why.
    pub fn on_backup_frames(&mut self, conn: ConnId, reader: &mut FrameReader) -> Result<(), String> {
        let now = self.now();
        let mut bad = None;
        loop {
            match reader.next_frame() {
                Ok(Some((h, p))) if h.kind == Kind::Ack => match Ack::decode(p) {
                    Ok(ack) => {
                        let _ = self.core.handle(now, Event::Ack { conn, epoch: h.epoch, ack });
                    }
                    Err(e) => {
                        bad = Some(format!("bad ack: {e}"));
                        break;
                    }
                },
                Ok(Some((h, _))) => {
                    bad = Some(format!("unexpected {:?} frame from the backup", h.kind));
                    break;
                }
                Ok(None) => break,
                Err(e) => {
                    bad = Some(format!("bad frame from the backup: {e}"));
                    break;
                }
            }
        }
        if self.intake_open() {
            // Flow control may have reopened on executed progress alone.
            self.io.intake_changed();
        }
        self.pump();
        bad.map_or(Ok(()), Err)
    }

    /// Backup: every frame buffered in `reader` from the primary on `conn`,
    /// then the acks they call for (before execution: they gate the
    /// primary's replies). Err: the channel must close, with why.
    pub fn on_primary_frames(&mut self, conn: ConnId, reader: &mut FrameReader) -> Result<(), String> {
        let bad = self.drain_primary_frames(conn, reader);
        self.disk_sync_received();
        let now = self.now();
        self.core.poll(now);
        self.pump();
        self.io.wake_exec();
        bad.map_or(Ok(()), Err)
    }

    fn drain_primary_frames(&mut self, conn: ConnId, reader: &mut FrameReader) -> Option<String> {
        let now = self.now();
        loop {
            let (h, p) = match reader.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return None,
                Err(e) => return Some(format!("bad frame from the primary: {e}")),
            };
            let ev = match h.kind {
                Kind::Entries => {
                    let last = match validate(h.seq, p) {
                        Ok(last) => last,
                        Err(e) => return Some(format!("bad entries from the primary: {e}")),
                    };
                    if let Outcome::Refused(why) =
                        self.core.handle(now, Event::Entries { conn, epoch: h.epoch, first: h.seq, last })
                    {
                        // A gap, another epoch: they must never reach the machine.
                        return Some(format!("entries {}..={last} refused by the protocol: {why}", h.seq));
                    }
                    self.disk_received(h.epoch, h.seq, last, p);
                    self.exec.push(h.seq, p.to_vec());
                    if self.exec.bytes > self.opts.join_buffer_bytes {
                        return Some(format!(
                            "{} bytes of entries wait for execution, more than --join-buffer-bytes ({})",
                            self.exec.bytes, self.opts.join_buffer_bytes
                        ));
                    }
                    continue;
                }
                Kind::Heartbeat => match Heartbeat::decode(p) {
                    Ok(hb) => Event::Heartbeat { conn, epoch: h.epoch, last_seq: hb.last_seq },
                    Err(e) => return Some(format!("bad heartbeat: {e}")),
                },
                Kind::InSync => {
                    self.log(log::Level::Info, "in sync with the primary: this node may take over if it fails");
                    Event::InSync { conn, epoch: h.epoch }
                }
                Kind::Handover => {
                    self.log(log::Level::Info, HANDOVER_RECEIVED);
                    Event::Handover { conn, epoch: h.epoch }
                }
                Kind::Reject => {
                    return Some(Reject::decode(p).map_or_else(|e| e.to_string(), |r| format!("primary refused: {}", r.message)))
                }
                k => return Some(format!("unexpected {k:?} frame from the primary")),
            };
            let _ = self.core.handle(now, ev);
        }
    }

    /// The writer's turn on `conn`: seals the open batch and takes every
    /// byte queued (swapped with `spare`), with whether the connection
    /// closes once they are written. None: the connection is gone.
    pub fn take_out(&mut self, conn: ConnId, spare: Vec<u8>) -> Option<(Vec<u8>, bool)> {
        if !self.chans.contains(conn) {
            return None;
        }
        self.seal_batch(conn);
        let (buf, closing) = self.chans.take(conn, spare)?;
        if buf.len() >= self.opts.channel_backlog_bytes_max {
            // Intake may have paused on this backlog: it is drained now.
            self.io.intake_changed();
        }
        Some((buf, closing))
    }

    /// A channel broke (closed, failed a write, sent garbage): the core
    /// decides what follows; the connection is forgotten.
    pub fn channel_broken(&mut self, conn: ConnId, reason: String) {
        if !self.chans.contains(conn) {
            return;
        }
        let side = if self.core.is_primary() { "backup" } else { "primary" };
        self.log(log::Level::Warn, &format!("channel to {side} closed: {reason}"));
        self.feed(Event::ConnClosed { conn, reason });
        self.drop_conn(conn);
    }
}
