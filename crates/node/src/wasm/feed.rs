//! The two seams between the event loop and a guest's thread:
//! [`Feed`]/[`FeedSource`] hand replayed entries to a backup's guest, and
//! [`ChannelSink`] carries a primary guest's recorded events to the event
//! loop, which logs them. Both are a lock and a queue: the backup's loop
//! hands over each received batch at once (one wake-up of the guest), the
//! primary's guest one event per host call.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;
use understudy_core::Seq;
use understudy_hypervisor::{EventSink, EventSource, LiveWorld, Next};
use understudy_wire::entry::EntryKind;

use super::retained::Cursor;

pub enum FeedItem {
    /// A joiner's retained log, replayed entry by entry on the guest's
    /// thread (no copy on the event loop).
    Log(Cursor),
    Event(Seq, Vec<u8>),
    /// A no-op entry: only its seq counts.
    Barrier(Seq),
    GoLive(LiveWorld),
    End,
}

/// Entries waiting for a replaying guest.
#[derive(Default)]
pub struct Feed {
    items: Mutex<VecDeque<FeedItem>>,
    ready: Condvar,
    /// Seq of the last entry the guest consumed.
    pub executed: AtomicU64,
}

impl Feed {
    pub fn push(&self, item: FeedItem) {
        self.push_all(std::iter::once(item));
    }

    /// Queues `items` under one lock and wakes the guest once: one wake-up
    /// per received batch, not per entry (each notify is a futex call).
    pub fn push_all(&self, items: impl IntoIterator<Item = FeedItem>) {
        let mut q = self.items.lock().expect("feed lock");
        let before = q.len();
        q.extend(items);
        let added = q.len() > before;
        drop(q);
        if added {
            self.ready.notify_one();
        }
    }
}

pub struct FeedSource(pub Arc<Feed>);

impl EventSource for FeedSource {
    fn next(&mut self) -> Next {
        let feed = &self.0;
        let mut q = feed.items.lock().expect("feed lock");
        loop {
            if let Some(FeedItem::Log(cursor)) = q.front_mut() {
                match cursor.next_entry() {
                    Some((seq, EntryKind::Barrier, _)) => {
                        feed.executed.store(seq, Ordering::Release);
                        continue;
                    }
                    Some((seq, _, body)) => {
                        let body = body.to_vec();
                        feed.executed.store(seq, Ordering::Release);
                        return Next::Event(body);
                    }
                    None => {
                        q.pop_front();
                        continue;
                    }
                }
            }
            match q.pop_front() {
                Some(FeedItem::Event(seq, body)) => {
                    feed.executed.store(seq, Ordering::Release);
                    return Next::Event(body);
                }
                Some(FeedItem::Barrier(seq)) => feed.executed.store(seq, Ordering::Release),
                Some(FeedItem::Log(_)) => unreachable!("handled above"),
                Some(FeedItem::GoLive(world)) => return Next::GoLive(world),
                Some(FeedItem::End) => return Next::End,
                None => q = feed.ready.wait(q).expect("feed lock"),
            }
        }
    }
}

/// Flow control for a recording guest: the event loop closes it while the
/// backup lags; the guest waits in its next host call.
#[derive(Default)]
pub struct Intake {
    open: Mutex<bool>,
    changed: Condvar,
}

impl Intake {
    pub fn set(&self, open: bool) {
        let mut g = self.open.lock().expect("intake lock");
        if *g != open {
            *g = open;
            self.changed.notify_all();
        }
    }

    fn wait_open(&self) {
        let mut g = self.open.lock().expect("intake lock");
        while !*g {
            g = self.changed.wait_timeout(g, Duration::from_millis(100)).expect("intake lock").0;
        }
    }
}

/// A recording guest's sink: numbers events (the seq tags the outputs they
/// produce) and sends them to the event loop, which appends them to the
/// log under the same seqs.
pub struct ChannelSink {
    pub tx: UnboundedSender<(Seq, Vec<u8>)>,
    pub next: Seq,
    pub intake: Arc<Intake>,
}

impl EventSink for ChannelSink {
    fn append(&mut self, event: &[u8]) -> u64 {
        self.intake.wait_open();
        let seq = self.next;
        self.next += 1;
        // The loop outlives the guest; if it is gone the process is ending.
        let _ = self.tx.send((seq, event.to_vec()));
        seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(next: Next) -> Vec<u8> {
        match next {
            Next::Event(body) => body,
            _ => panic!("expected an event"),
        }
    }

    #[test]
    fn a_batch_reaches_the_replaying_guest_in_order_and_barriers_only_move_its_seq() {
        let feed = Arc::new(Feed::default());
        feed.push_all(vec![FeedItem::Event(5, b"a".to_vec()), FeedItem::Barrier(6), FeedItem::Event(7, b"b".to_vec())]);
        feed.push(FeedItem::Barrier(8));
        let mut source = FeedSource(feed.clone());
        assert_eq!(event(source.next()), b"a");
        assert_eq!(feed.executed.load(Ordering::Acquire), 5);
        assert_eq!(event(source.next()), b"b", "a barrier is no event of the guest's");
        assert_eq!(feed.executed.load(Ordering::Acquire), 7);
        feed.push(FeedItem::End);
        assert!(matches!(source.next(), Next::End));
        assert_eq!(feed.executed.load(Ordering::Acquire), 8, "the barrier before the end counted");
    }

    #[test]
    fn a_guest_waiting_for_entries_wakes_on_a_batch() {
        let feed = Arc::new(Feed::default());
        let (tx, rx) = std::sync::mpsc::channel();
        let waiting = feed.clone();
        std::thread::spawn(move || {
            let mut source = FeedSource(waiting);
            let _ = tx.send(event(source.next()));
        });
        // Whether or not the guest already waits, the batch must reach it.
        std::thread::sleep(Duration::from_millis(20));
        feed.push_all(vec![FeedItem::Event(1, b"x".to_vec()), FeedItem::Event(2, b"y".to_vec())]);
        let got = rx.recv_timeout(Duration::from_secs(30)).expect("the waiting guest was woken by the batch");
        assert_eq!(got, b"x");
        feed.push_all(Vec::new());
        assert_eq!(feed.items.lock().expect("feed lock").len(), 1, "the rest of the batch waits for the guest");
    }
}
