//! The two sides of the "weird instructions" seam (DESIGN §3): on the
//! primary [`RecordCtx`] reads the clock and the random source and remembers
//! what it handed out; on the backup [`ReplayCtx`] hands out exactly those
//! values and notices any call the primary did not make.

use std::time::{SystemTime, UNIX_EPOCH};

use understudy_core::{Ctx, Seq};
use understudy_wire::entry::OpEntry;

pub fn wall_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Time never goes backwards in the replicated state, not even across a
/// failover to a machine whose clock is behind: both contexts keep a floor.
#[derive(Debug, Default, Clone, Copy)]
pub struct TimeFloor(pub u64);

/// Delivers a published message to this node's subscribers under the
/// seq of the operation that published it; returns how many it reached.
/// The front end's (`FrontEnd::publisher`).
pub type Publisher = Box<dyn FnMut(&[u8], &[u8], Seq) -> u64>;

/// Primary side. Reset before each operation.
#[derive(Default)]
pub struct RecordCtx {
    pub floor: TimeFloor,
    pub now: Option<u64>,
    /// Random draws and publish counts, in the order asked (replayed as one
    /// sequence).
    pub random: Vec<u64>,
    /// The seq of the operation being applied (messages go out under it).
    pub seq: Seq,
    pub publisher: Option<Publisher>,
}

impl std::fmt::Debug for RecordCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordCtx")
            .field("floor", &self.floor)
            .field("now", &self.now)
            .field("random", &self.random)
            .field("seq", &self.seq)
            .field("publisher", &self.publisher.is_some())
            .finish()
    }
}

impl RecordCtx {
    /// Before applying the operation logged as `seq`.
    pub fn reset(&mut self, seq: Seq) {
        self.now = None;
        self.random.clear();
        self.seq = seq;
    }
}

impl Ctx for RecordCtx {
    fn now_us(&mut self) -> u64 {
        if let Some(n) = self.now {
            return n;
        }
        let n = wall_us().max(self.floor.0);
        self.floor.0 = n;
        self.now = Some(n);
        n
    }

    fn random_u64(&mut self) -> u64 {
        let v = crate::framed::random_u64();
        self.random.push(v);
        v
    }

    fn publish(&mut self, channel: &[u8], message: &[u8]) -> u64 {
        debug_assert!(self.seq > 0, "a message published outside a logged operation");
        let seq = self.seq;
        let n = self.publisher.as_mut().map_or(0, |p| p(channel, message, seq));
        self.random.push(n);
        n
    }
}

/// Backup side: replays one recorded operation.
pub struct ReplayCtx<'a> {
    entry: OpEntry<'a>,
    floor: &'a mut TimeFloor,
    now_used: bool,
    next_random: usize,
    /// The first mismatch between what the operation asks and what was recorded.
    pub divergence: Option<String>,
}

impl<'a> ReplayCtx<'a> {
    pub fn new(entry: OpEntry<'a>, floor: &'a mut TimeFloor) -> Self {
        ReplayCtx { entry, floor, now_used: false, next_random: 0, divergence: None }
    }

    /// After the operation: everything recorded must have been asked for.
    pub fn finish(mut self) -> Result<(), String> {
        if self.divergence.is_none() && self.entry.now_us.is_some() && !self.now_used {
            self.divergence = Some("the primary's operation read the clock, the backup's did not".into());
        }
        let recorded = self.entry.random.len() / 8;
        if self.divergence.is_none() && self.next_random != recorded {
            self.divergence =
                Some(format!("the primary's operation drew {recorded} random values, the backup's drew {}", self.next_random));
        }
        self.divergence.map_or(Ok(()), Err)
    }
}

impl Ctx for ReplayCtx<'_> {
    fn now_us(&mut self) -> u64 {
        self.now_used = true;
        match self.entry.now_us {
            Some(n) => {
                self.floor.0 = self.floor.0.max(n);
                n
            }
            None => {
                self.divergence.get_or_insert_with(|| "the backup's operation read the clock, the primary's did not".into());
                self.floor.0
            }
        }
    }

    /// The count the primary recorded; the message itself went out there.
    fn publish(&mut self, _channel: &[u8], _message: &[u8]) -> u64 {
        self.random_u64()
    }

    fn random_u64(&mut self) -> u64 {
        let i = self.next_random;
        self.next_random += 1;
        match self.entry.random_at(i) {
            Some(v) => v,
            None => {
                self.divergence.get_or_insert_with(|| {
                    format!("the backup's operation drew random value #{}, the primary recorded only {i}", i + 1)
                });
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry_bytes(now: Option<u64>, random: &[u64]) -> Vec<u8> {
        let mut b = Vec::new();
        OpEntry::encode_record(&mut b, now, random);
        b.extend_from_slice(b"op");
        b
    }

    #[test]
    fn replay_hands_out_what_was_recorded() {
        let mut rec = RecordCtx::default();
        let (t, r1, r2) = (rec.now_us(), rec.random_u64(), rec.random_u64());
        assert_eq!(rec.now_us(), t, "one operation sees one time");
        let bytes = entry_bytes(rec.now, &rec.random);
        let mut floor = TimeFloor::default();
        let mut rep = ReplayCtx::new(OpEntry::decode(&bytes).unwrap(), &mut floor);
        assert_eq!((rep.now_us(), rep.random_u64(), rep.random_u64()), (t, r1, r2));
        assert!(rep.finish().is_ok());
        assert_eq!(floor.0, t);
    }

    #[test]
    fn asking_for_unrecorded_values_is_a_divergence() {
        let bytes = entry_bytes(None, &[7]);
        let mut floor = TimeFloor::default();
        let mut rep = ReplayCtx::new(OpEntry::decode(&bytes).unwrap(), &mut floor);
        rep.now_us();
        assert!(rep.finish().unwrap_err().contains("clock"));

        let mut floor = TimeFloor::default();
        let mut rep = ReplayCtx::new(OpEntry::decode(&bytes).unwrap(), &mut floor);
        rep.random_u64();
        rep.random_u64();
        assert!(rep.finish().unwrap_err().contains("random value #2"));

        let mut floor = TimeFloor::default();
        let rep = ReplayCtx::new(OpEntry::decode(&bytes).unwrap(), &mut floor);
        assert!(rep.finish().unwrap_err().contains("drew 1 random values"), "unused recorded values diverge too");
    }

    #[test]
    fn time_never_goes_backwards_after_failover() {
        let mut rec = RecordCtx { floor: TimeFloor(u64::MAX / 2), ..Default::default() };
        assert_eq!(rec.now_us(), u64::MAX / 2);
    }
}
