//! Partial catch-up (Redis's PSYNC): a node that restarts with its state on
//! disk offers the primary the (epoch, seq) of the last entry it holds; if
//! the primary still retains the entries after it (a bounded in-memory
//! backlog of the batches it logged or received, `--repl-backlog-bytes`)
//! and holds the same entry at that seq, it sends only those entries — no
//! snapshot. Otherwise the join is a full state transfer, as before.
//!
//! Why an entry's epoch identifies the whole prefix: every entry is
//! labelled with the epoch of the primary that wrote or streamed it, and an
//! epoch has one primary; a replica that holds entry `s` labelled `e` got
//! it, and everything before it, from that primary's log. Two replicas
//! with the same label at `s` hold the same state at `s` (a node whose
//! suffix diverged — entries of a primary that died before they were
//! acknowledged — never matches, and gets a snapshot).

use understudy_core::{ConnId, Epoch, Event, Seq};
use understudy_wire::codec::put_varint;
use understudy_wire::entry::EntryIter;
use understudy_wire::frame::Kind;

use crate::channel::header;
use crate::disk_state::PARTIAL;
use crate::io::Io;
use crate::machine::Machine;
use crate::replica::Replica;

/// The entries of `payload` (starting at `first`) after `after`, re-encoded
/// as an `Entries` payload.
fn entries_after(first: Seq, payload: &[u8], after: Seq, out: &mut Vec<u8>) {
    for e in EntryIter::new(first, payload) {
        let e = e.expect("retained entries were validated when logged");
        if e.seq > after {
            out.push(e.kind as u8);
            put_varint(out, e.body.len() as u64);
            out.extend_from_slice(e.body);
        }
    }
}

impl<M: Machine, I: Io> Replica<M, I> {
    /// Primary: may `node`, whose last entry is `seq` labelled `epoch`,
    /// catch up from there? Returns the seq to resume from.
    pub(crate) fn can_resume(&mut self, node: &str, epoch: Epoch, seq: Seq) -> Option<Seq> {
        if !self.core.is_primary() || !self.disk.on {
            return None;
        }
        // The open batch joins the backlog first.
        self.flush_disk();
        let last = self.core.last_seq();
        let why_not = if seq > last {
            Some(format!("it holds seq {seq}, beyond this primary's {last} (a suffix no one acknowledged)"))
        } else if self.disk.backlog.last() != Some(last) {
            Some("this primary retains no log up to its last entry".to_string())
        } else {
            match self.disk.backlog.epoch_of(seq) {
                None => Some(format!("seq {seq} is no longer retained (--repl-backlog-bytes)")),
                Some(e) if e != epoch => {
                    Some(format!("its entry {seq} is of epoch {epoch}, this primary's of epoch {e} (a divergent suffix)"))
                }
                Some(_) => None,
            }
        };
        match why_not {
            None => Some(seq),
            Some(why) => {
                self.log(
                    log::Level::Info,
                    &format!("{node:?} joins with a state of its own, but needs a full state transfer: {why}"),
                );
                None
            }
        }
    }

    /// Primary: accepts a partial catch-up of `node` on `conn` from `after`:
    /// the answer, then every retained entry after it, before any new one.
    pub(crate) fn accept_partial_join(&mut self, conn: ConnId, node: &str, after: Seq) {
        let last = self.core.last_seq();
        self.log(
            log::Level::Info,
            &format!("join of {node:?} accepted as a partial catch-up from seq {after}: {} entries, no snapshot", last - after),
        );
        self.stats.joins_accepted += 1;
        self.send_frame(conn, Kind::JoinAccepted, after, |o| o.extend_from_slice(PARTIAL));
        let epoch = self.core.epoch();
        let mut sent = 0u64;
        for b in self.disk.backlog.batches.iter().filter(|b| b.last > after) {
            let from = b.first.max(after + 1);
            let mut payload = Vec::with_capacity(b.payload.len());
            entries_after(b.first, &b.payload, after, &mut payload);
            sent += payload.len() as u64;
            // Streamed under this primary's epoch, as live entries are.
            if !self.chans.frame(conn, header(epoch, from, Kind::Entries), |o| o.extend_from_slice(&payload)) {
                return;
            }
        }
        self.stats.log_bytes += sent;
        self.io.wake_writer(conn);
    }

    /// Joiner: the state this node recovered from its disk, offered for a
    /// partial catch-up.
    pub fn resume_point(&self) -> Option<(Epoch, Seq)> {
        self.disk.resume.filter(|(_, s)| *s == self.core.last_seq() && !self.core.is_primary())
    }

    /// Joiner: the primary accepted a partial catch-up from `seq`: the
    /// machine keeps the state it has (it is the snapshot), and the disk
    /// holds it already.
    pub(crate) fn joined_partially(&mut self, seq: Seq) {
        assert_eq!(self.disk.resume.map(|(_, s)| s), Some(seq), "a partial catch-up from a seq this node did not offer");
        self.disk.resume = None;
        self.io.disk(crate::disk_state::DiskReq::Whole);
        self.transfer.loaded = true;
        self.feed(Event::SnapshotLoaded { seq });
        self.durable_now(seq);
        self.io.wake_exec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk_state::Backlog;
    use std::sync::Arc;
    use understudy_wire::entry::EntryKind;

    /// A batch of `n` op entries from `first`, each body its seq.
    fn batch(first: Seq, n: u64) -> Arc<[u8]> {
        let mut out = Vec::new();
        for s in first..first + n {
            out.push(EntryKind::Op as u8);
            put_varint(&mut out, 8);
            out.extend_from_slice(&s.to_le_bytes());
        }
        Arc::from(out)
    }

    #[test]
    fn the_backlog_stays_contiguous_and_within_its_bound() {
        let mut b = Backlog::new(3 * 10 * 10);
        for i in 0..10 {
            b.push(1, 1 + i * 10, 10 + i * 10, &batch(1 + i * 10, 10));
        }
        assert!(b.bytes <= b.max, "{} > {}", b.bytes, b.max);
        assert_eq!(b.last(), Some(100));
        assert_eq!(b.epoch_of(5), None, "the oldest batches were dropped");
        assert_eq!(b.epoch_of(95), Some(1));
        // A batch that does not follow starts the backlog over.
        b.push(2, 200, 209, &batch(200, 10));
        assert_eq!((b.epoch_of(95), b.epoch_of(205)), (None, Some(2)));
        // A zero bound retains nothing: every join is a full transfer.
        let mut none = Backlog::new(0);
        none.push(1, 1, 10, &batch(1, 10));
        assert_eq!(none.last(), None);
    }

    #[test]
    fn a_straddling_batch_is_cut_at_the_resume_point() {
        let mut out = Vec::new();
        entries_after(10, &batch(10, 10), 14, &mut out);
        let seqs: Vec<Seq> = EntryIter::new(15, &out).map(|e| u64::from_le_bytes(e.unwrap().body.try_into().unwrap())).collect();
        assert_eq!(seqs, (15..20).collect::<Vec<_>>());
    }
}
