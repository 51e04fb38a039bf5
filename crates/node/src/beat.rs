//! Liveness that a busy event loop cannot starve (issue 17).
//!
//! The event loop sends the protocol's heartbeats (primary) and acks
//! (backup), so a loop held by long work — a script near its instruction
//! budget, a large batch, the drop of a huge value — would fall silent,
//! and its peer would declare a live node failed. A thread of its own,
//! [`Beats`], repeats on each logging channel the last heartbeat or ack
//! the channel's writer has *written*, while the loop has not ticked for a
//! heartbeat interval. A repeat changes nothing at the peer (a heartbeat's
//! seq is taken as a maximum; an ack equal to the last one moves nothing)
//! except when it last heard from this node, and it cannot arrive out of
//! order: everything the loop queued after it is newer. Peers of earlier
//! builds understand it: nothing new is on the wire.
//!
//! Bytes of a channel must never interleave mid-frame. The writer task and
//! the beat thread write the socket only under the channel's [`Beat`]
//! lock, and the thread writes only between two of the writer's buffers.
//! A repeat the socket took only in part is finished first by whoever
//! writes next.
//!
//! A loop stuck for longer than [`STUCK_MS`] is not beaten for: a process
//! wedged that long is as good as failed, and its peer takes over.
//!
//! The same duplicated socket answers whether bytes from the peer wait
//! unread ([`Beats::unread`]): a detector reads what has arrived before it
//! declares a peer silent.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::net::tcp::OwnedWriteHalf;
use understudy_core::ConnId;

/// A loop that has not ticked for this long gets no more beats.
pub const STUCK_MS: u64 = 10_000;

/// One channel's write side, shared by its writer task and the beat thread.
#[derive(Default)]
pub struct Beat {
    state: Mutex<BeatState>,
}

#[derive(Default)]
struct BeatState {
    /// The writer has written a whole buffer: the channel's first frame
    /// (a primary's `JoinAccepted`) is out, and repeats may follow it.
    started: bool,
    /// The writer has written part of a buffer: the socket is mid-frame.
    mid_buffer: bool,
    /// When anything was last written.
    last_write: Option<Instant>,
    /// The rest of a repeat the socket took only in part.
    pending: Vec<u8>,
    /// The last heartbeat or ack frame the loop queued, not yet taken by
    /// the writer; the one in the buffer being written; the last one
    /// written — what the thread repeats.
    queued: Option<Vec<u8>>,
    in_flight: Option<Vec<u8>>,
    written: Option<Vec<u8>>,
}

impl Beat {
    fn lock(&self) -> MutexGuard<'_, BeatState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The loop queued heartbeat or ack `frame` on the channel.
    pub fn queued(&self, frame: &[u8]) {
        debug_assert!(frame.len() >= understudy_wire::FRAME_HEADER_BYTES, "a repeat is a whole frame");
        let mut st = self.lock();
        let q = st.queued.get_or_insert_with(Vec::new);
        q.clear();
        q.extend_from_slice(frame);
    }

    /// The writer took every byte queued (call in the same turn as
    /// `Replica::take_out`, so the last frame queued is in what it took).
    pub fn taken(&self) {
        let mut st = self.lock();
        if let Some(q) = st.queued.take() {
            st.in_flight = Some(q);
        }
    }

    /// Writes all of `buf` (whole frames) to the channel, between the beat
    /// thread's repeats, never inside one of them.
    pub async fn write_all(&self, wr: &mut OwnedWriteHalf, buf: &[u8]) -> std::io::Result<()> {
        let mut off = 0;
        loop {
            {
                let mut st = self.lock();
                if finish(&mut st.pending, |b| wr.try_write(b))? {
                    off += write_some(&buf[off..], |b| wr.try_write(b))?;
                }
                st.mid_buffer = off > 0 && off < buf.len();
                debug_assert!(!st.mid_buffer || st.pending.is_empty(), "a repeat is finished before the buffer goes on");
                st.last_write = Some(Instant::now());
                if off == buf.len() && st.pending.is_empty() {
                    st.started = true;
                    if let Some(f) = st.in_flight.take() {
                        st.written = Some(f);
                    }
                    return Ok(());
                }
            }
            wr.writable().await?;
        }
    }
}

/// Writes the front of `pending`; true once it is empty.
fn finish(pending: &mut Vec<u8>, write: impl FnMut(&[u8]) -> std::io::Result<usize>) -> std::io::Result<bool> {
    let n = write_some(pending, write)?;
    pending.drain(..n);
    Ok(pending.is_empty())
}

/// Writes as much of `buf` as the socket takes now.
fn write_some(buf: &[u8], mut write: impl FnMut(&[u8]) -> std::io::Result<usize>) -> std::io::Result<usize> {
    let mut off = 0;
    while off < buf.len() {
        match write(&buf[off..]) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => off += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(off)
}

struct Chan {
    beat: Arc<Beat>,
    /// A duplicate of the channel's socket (nonblocking, like the original).
    sock: std::net::TcpStream,
}

/// The node's beat thread and the channels it beats on.
pub struct Beats {
    chans: Mutex<BTreeMap<ConnId, Chan>>,
    t0: Instant,
    /// When the event loop last ticked (ms since `t0`).
    loop_at: AtomicU64,
    every_ms: u64,
    /// Repeats written (the metrics page shows them).
    pub sent: AtomicU64,
    /// Rounds the thread made while the loop needed beats.
    busy_rounds: AtomicU64,
}

impl Beats {
    /// Starts the beat thread of a node whose heartbeat interval is
    /// `heartbeat_ms`. The thread ends once the returned handle is dropped.
    pub fn start(node: &str, heartbeat_ms: u64) -> Arc<Beats> {
        let beats = Arc::new(Beats {
            chans: Mutex::new(BTreeMap::new()),
            t0: Instant::now(),
            loop_at: AtomicU64::new(0),
            every_ms: heartbeat_ms.max(1),
            sent: AtomicU64::new(0),
            busy_rounds: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&beats);
        let spawned = std::thread::Builder::new().name("beat".into()).spawn(move || run(weak));
        if let Err(e) = spawned {
            log::warn!("{node}: no beat thread ({e}): a busy event loop may look failed to its peer");
        }
        beats
    }

    fn chans(&self) -> MutexGuard<'_, BTreeMap<ConnId, Chan>> {
        self.chans.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    /// The event loop runs: it beats for itself.
    pub fn loop_ticked(&self) {
        self.loop_at.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Beats on channel `conn` through `sock`, a duplicate of its socket;
    /// the writer task writes through the returned [`Beat`].
    pub fn add(&self, conn: ConnId, sock: std::net::TcpStream) -> Arc<Beat> {
        let beat = Arc::new(Beat::default());
        self.chans().insert(conn, Chan { beat: beat.clone(), sock });
        beat
    }

    /// What the thread repeats on `conn` until the writer has written a
    /// heartbeat or ack of its own (a primary's first heartbeat is up to
    /// a heartbeat interval away when its channel opens). Nothing is
    /// repeated before the writer's first buffer is out.
    pub fn seed(&self, conn: ConnId, frame: &[u8]) {
        if let Some(c) = self.chans().get(&conn) {
            c.beat.lock().written.get_or_insert_with(|| frame.to_vec());
        }
    }

    /// The loop queued heartbeat or ack `frame` on `conn`.
    pub fn queued(&self, conn: ConnId, frame: &[u8]) {
        if let Some(c) = self.chans().get(&conn) {
            c.beat.queued(frame);
        }
    }

    /// Forgets `conn` and closes its duplicate socket (under the lock the
    /// thread writes under, so the descriptor is never reused under it).
    pub fn remove(&self, conn: ConnId) {
        self.chans().remove(&conn);
    }

    /// Whether bytes from the peer on `conn` wait unread in the socket.
    pub fn unread(&self, conn: ConnId) -> bool {
        let chans = self.chans();
        let Some(c) = chans.get(&conn) else { return false };
        // 0 is the end of the stream: no sign of life.
        matches!(c.sock.peek(&mut [0u8; 1]), Ok(n) if n > 0)
    }

    /// One round of the thread: a repeat on every channel that has been
    /// quiet for a heartbeat interval, if the loop is busy.
    fn beat(&self) {
        let idle = self.now_ms().saturating_sub(self.loop_at.load(Ordering::Relaxed));
        if !loop_needs_beats(idle, self.every_ms) {
            return;
        }
        self.busy_rounds.fetch_add(1, Ordering::Relaxed);
        let every = Duration::from_millis(self.every_ms);
        for c in self.chans().values_mut() {
            let mut st = c.beat.lock();
            let mut sock = &c.sock;
            let done = finish(&mut st.pending, |b| sock.write(b));
            let quiet = st.started && !st.mid_buffer && st.last_write.is_none_or(|t| t.elapsed() >= every);
            if !matches!(done, Ok(true)) || !quiet {
                continue; // errors: the channel's reader and writer see them too
            }
            debug_assert!(st.pending.is_empty() && !st.mid_buffer, "repeats only between whole buffers");
            let Some(frame) = st.written.take() else { continue };
            if let Ok(n) = write_some(&frame, |b| sock.write(b)) {
                if n > 0 {
                    st.pending.extend_from_slice(&frame[n..]);
                    st.last_write = Some(Instant::now());
                    self.sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            st.written = Some(frame);
        }
    }
}

/// Whether a loop that has not ticked for `idle_ms` needs the thread's
/// beats: it is busy (quiet for a heartbeat interval) but not stuck.
fn loop_needs_beats(idle_ms: u64, every_ms: u64) -> bool {
    idle_ms >= every_ms && idle_ms <= STUCK_MS
}

fn run(beats: Weak<Beats>) {
    let mut asleep = Instant::now();
    loop {
        let Some(b) = beats.upgrade() else { return };
        let nap = Duration::from_millis((b.every_ms / 2).max(1));
        // Woken a heartbeat interval late: the whole process was stopped
        // (SIGSTOP, a paused VM), not just its loop. The loop runs again
        // now and reads what arrived meanwhile first: a repeat written
        // before that would meet a peer that died in the meantime, and the
        // reset it provokes would fail the loop's next write before its
        // reader had taken the entries waiting in the socket.
        if !woke_late(asleep.elapsed(), nap, b.every_ms) {
            b.beat();
        }
        drop(b);
        asleep = Instant::now();
        std::thread::sleep(nap);
    }
}

/// Whether a sleep of `nap` that took `slept` overran by a heartbeat
/// interval or more.
fn woke_late(slept: Duration, nap: Duration, every_ms: u64) -> bool {
    slept.saturating_sub(nap) >= Duration::from_millis(every_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use understudy_wire::frame::{encode_with, FrameHeader, Kind};

    /// Every frame of `bytes`, whole, as (kind, frame bytes).
    fn frames(bytes: &[u8]) -> Vec<(Kind, Vec<u8>)> {
        let dec = understudy_wire::FrameDecoder::new(1 << 20);
        let (mut at, mut out) = (0, Vec::new());
        while let Some((f, used)) = dec.decode(&bytes[at..]).unwrap() {
            out.push((f.header.kind, bytes[at..at + used].to_vec()));
            at += used;
        }
        assert_eq!(at, bytes.len(), "whole frames only");
        out
    }

    fn frame(kind: Kind, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        encode_with(&mut f, FrameHeader { epoch: 3, seq: 0, kind }, |o| o.extend_from_slice(payload));
        f
    }

    /// The beat thread repeats the last heartbeat the writer wrote, whole,
    /// between the writer's buffers, and only while the loop does not
    /// tick; `unread` sees what the peer sent.
    #[tokio::test]
    async fn a_busy_loop_repeats_its_last_written_heartbeat_between_buffers() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        let sock = ours.try_clone().unwrap();
        let (rd, mut wr) = tokio::net::TcpStream::from_std(ours).unwrap().into_split();
        let beats = Beats::start("t", 20);
        beats.loop_ticked();
        let beat = beats.add(1, sock);
        // Nothing goes before the channel's first frame, which the writer's
        // first buffer carries: a seed waits for it, however busy the loop.
        let seed = frame(Kind::Heartbeat, b"seq 0");
        beats.seed(1, &seed);
        let t = Instant::now();
        while beats.busy_rounds.load(Ordering::Relaxed) < 3 {
            assert!(t.elapsed() < Duration::from_secs(10), "the beat thread does not run");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(beats.sent.load(Ordering::Relaxed), 0, "a repeat before the writer's first buffer");
        assert!(!beats.unread(1));
        peer.write_all(b"x").unwrap();
        let t = Instant::now();
        while !beats.unread(1) {
            assert!(t.elapsed() < Duration::from_secs(10), "the peer's byte never showed");
            std::thread::sleep(Duration::from_millis(1));
        }
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).map(|_| got)
        });
        // A buffer of 199 big frames and a heartbeat, as the loop queues them.
        let mut buf = Vec::new();
        for _ in 0..199 {
            buf.extend_from_slice(&frame(Kind::Entries, &[7u8; 4000]));
        }
        let hb = frame(Kind::Heartbeat, b"seq 1");
        buf.extend_from_slice(&hb);
        beats.queued(1, &hb);
        beat.taken();
        beats.queued(1, &frame(Kind::Heartbeat, b"seq 2")); // queued after: never repeated
        beats.loop_ticked();
        beat.write_all(&mut wr, &buf).await.unwrap();
        // The loop stops ticking: repeats follow, about one per interval.
        let t = Instant::now();
        while beats.sent.load(Ordering::Relaxed) < 3 {
            assert!(t.elapsed() < Duration::from_secs(10), "no repeats from a busy loop");
            std::thread::sleep(Duration::from_millis(5));
        }
        beats.loop_ticked();
        let last = frame(Kind::Heartbeat, b"seq 2");
        beat.taken();
        beat.write_all(&mut wr, &last).await.unwrap();
        beats.remove(1);
        drop((rd, wr));
        let got = frames(&reader.join().unwrap().unwrap());
        let repeats = got.len() - 201;
        assert!(repeats >= 3, "{repeats} repeats");
        assert!(got[..199].iter().all(|(k, _)| *k == Kind::Entries), "the writer's buffer first, unbroken");
        assert!(got[199..200 + repeats].iter().all(|(_, f)| *f == hb), "then the heartbeat it ended with, repeated");
        assert_eq!(got[200 + repeats].1, last, "then the next buffer");
    }

    #[test]
    fn no_repeat_in_the_round_after_the_whole_process_was_stopped() {
        let nap = Duration::from_millis(25);
        assert!(!woke_late(Duration::from_millis(26), nap, 50), "on time");
        assert!(!woke_late(Duration::from_millis(60), nap, 50), "a little late (a busy machine)");
        assert!(woke_late(Duration::from_millis(75), nap, 50), "a heartbeat interval late");
        assert!(woke_late(Duration::from_secs(3), nap, 50), "thawed after a SIGSTOP");
    }

    #[test]
    fn only_a_busy_loop_is_beaten_for() {
        assert!(!loop_needs_beats(10, 50), "the loop ticks: it beats for itself");
        assert!(loop_needs_beats(50, 50));
        assert!(loop_needs_beats(STUCK_MS, 50));
        assert!(!loop_needs_beats(STUCK_MS + 1, 50), "stuck: as good as failed");
    }
}
