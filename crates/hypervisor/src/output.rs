//! The output gate (DESIGN §3, output rule): every output of a recording
//! guest (bytes sent on a connection, bytes written to stdout or stderr, a
//! connection's shutdown or close) is tagged with the seq of the log entry
//! that produced it and leaves the machine only once the engine has advanced
//! [`Release`] past that seq. The guest keeps running meanwhile; released
//! outputs leave in order, written by whoever holds the stage's writer: the
//! engine's thread inside [`Release::advance`] (connection bytes, without
//! blocking) or the stage's own thread (console output, full sockets, the
//! guest's end).

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a finishing stage waits for a client that reads nothing.
const FINISH_STALL: Duration = Duration::from_secs(10);

/// A non-blocking pipe used as a doorbell between threads.
#[derive(Debug)]
pub(crate) struct Bell {
    r: OwnedFd,
    w: OwnedFd,
    /// Times rung (tests count the thread hops; not kept otherwise).
    #[cfg(test)]
    rung: AtomicU64,
}

impl Bell {
    fn new() -> Bell {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two fds into the array we own.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        assert_eq!(rc, 0, "pipe2 failed: {}", std::io::Error::last_os_error());
        // SAFETY: both fds were just created and are owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Bell {
            r,
            w,
            #[cfg(test)]
            rung: AtomicU64::new(0),
        }
    }

    pub(crate) fn ring(&self) {
        #[cfg(test)]
        self.rung.fetch_add(1, Ordering::Relaxed);
        // SAFETY: writing one byte from a live buffer to an fd we own. A full
        // pipe (EAGAIN) already means "rung".
        unsafe { libc::write(self.w.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.r.as_raw_fd()
    }

    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 64];
        // SAFETY: reading into a live buffer of the given size from an fd we own.
        while unsafe { libc::read(self.r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

/// The release point of the output gate, shared between the engine (which
/// advances it as the backup acknowledges log entries), the output stage and
/// the guest's thread.
#[derive(Debug)]
pub struct Release {
    /// Outputs tagged with a seq at or below this may leave.
    upto: AtomicU64,
    /// Set by the engine to halt: unreleased outputs are dropped and the
    /// guest stops at its next host call (a deposed primary, fail-stop).
    stopped: AtomicBool,
    stage_sleeping: AtomicBool,
    guest_waiting: AtomicBool,
    /// Wakes the output stage.
    pub(crate) stage_bell: Bell,
    /// Wakes the guest's thread when it waits in a host call.
    pub(crate) guest_bell: Bell,
    /// The live output stage, so [`Release::advance`] can write what it
    /// releases itself instead of waking the stage's thread.
    stage: StageLink,
}

/// A weak link from the release point to the output stage it drives.
#[derive(Default)]
struct StageLink(Mutex<Weak<Shared>>);

impl std::fmt::Debug for StageLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StageLink")
    }
}

impl Release {
    /// Outputs up to `upto` may leave; later ones wait for [`Release::advance`].
    pub fn new(upto: u64) -> Arc<Release> {
        Arc::new(Release {
            upto: AtomicU64::new(upto),
            stopped: AtomicBool::new(false),
            stage_sleeping: AtomicBool::new(false),
            guest_waiting: AtomicBool::new(false),
            stage_bell: Bell::new(),
            guest_bell: Bell::new(),
            stage: StageLink::default(),
        })
    }

    /// Standalone, unprotected use: every output leaves at once.
    pub fn everything() -> Arc<Release> {
        Release::new(u64::MAX)
    }

    /// Lets outputs tagged up to `upto` leave. Never moves backwards.
    ///
    /// Connection outputs this releases are written by the caller, without
    /// blocking (the sockets are non-blocking), when the stage's thread is
    /// not writing at that moment: one thread hop less between the backup's
    /// acknowledgement and the client. Whatever cannot be written at once
    /// (console output, a full socket, a finishing stage) is left to the
    /// stage's thread, which is woken for it.
    pub fn advance(&self, upto: u64) {
        let before = self.upto.fetch_max(upto, Ordering::SeqCst);
        if upto <= before {
            return;
        }
        let stage = self.stage.0.lock().expect("stage link poisoned").upgrade();
        match stage {
            // Woken even if it seems awake: it may have listed the sockets
            // to poll before this call left bytes in one.
            Some(stage) if !stage.flush_inline(self) => self.stage_bell.ring(),
            Some(_) => {}
            None if self.stage_sleeping.load(Ordering::SeqCst) => self.stage_bell.ring(),
            None => {}
        }
    }

    pub fn upto(&self) -> u64 {
        self.upto.load(Ordering::SeqCst)
    }

    /// Halts: nothing more leaves, the guest stops at its next host call.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.stage_bell.ring();
        self.guest_bell.ring();
    }

    /// Wakes the guest's thread from a wait in a host call (a snapshot is
    /// due).
    pub(crate) fn wake_guest(&self) {
        self.guest_bell.ring();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    pub(crate) fn set_guest_waiting(&self, waiting: bool) {
        self.guest_waiting.store(waiting, Ordering::SeqCst);
    }
}

/// Where stdout or stderr of a recording guest go.
#[derive(Debug, Clone, Default)]
pub enum Console {
    /// This process's own stdout/stderr.
    #[default]
    Inherit,
    /// Appended to a buffer (tests, tools).
    Capture(Arc<Mutex<Vec<u8>>>),
    Discard,
}

impl Console {
    /// Writes `bytes` to this process's stdout (flushed) or stderr, to the
    /// buffer, or nowhere.
    pub fn write(&self, bytes: &[u8], stderr: bool) {
        match self {
            Console::Inherit if stderr => {
                let _ = std::io::stderr().write_all(bytes);
            }
            Console::Inherit => {
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(bytes).and_then(|_| o.flush());
            }
            Console::Capture(buf) => buf.lock().expect("capture buffer poisoned").extend_from_slice(bytes),
            Console::Discard => {}
        }
    }
}

/// State of one connection shared by the guest's thread and the stage.
#[derive(Debug, Default)]
pub(crate) struct ConnShared {
    /// Bytes accepted from the guest and not yet written to the socket.
    pub pending: AtomicUsize,
    /// A write failed: the peer is gone.
    pub broken: AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Stdout,
    Stderr,
    Conn(u64),
}

pub(crate) enum Item {
    Register { conn: u64, stream: TcpStream, shared: Arc<ConnShared> },
    Data { target: Target, bytes: Vec<u8> },
    Shutdown { conn: u64, how: Shutdown },
    Close { conn: u64 },
}

enum Chunk {
    Data(Vec<u8>, usize),
    Shutdown(Shutdown),
    Close,
}

struct ConnOut {
    stream: TcpStream,
    shared: Arc<ConnShared>,
    chunks: VecDeque<Chunk>,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<(u64, Item)>,
    finishing: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// The targets; whoever holds this lock writes (the stage's thread or
    /// [`Release::advance`]), so outputs leave in seq order.
    writer: Mutex<Writer>,
    release: Arc<Release>,
}

impl Shared {
    /// Writes the released connection outputs from the caller's thread;
    /// returns whether nothing is left for the stage's thread to do.
    fn flush_inline(&self, release: &Release) -> bool {
        let Ok(mut w) = self.writer.try_lock() else { return false };
        if release.is_stopped() {
            return true;
        }
        let taken = w.take_released(self, release.upto(), true);
        w.write_all(release);
        !taken.ended && !taken.held && w.idle()
    }
}

/// What [`Writer::take_released`] left behind.
struct Taken {
    /// The guest has ended (the stage is finishing).
    ended: bool,
    /// Nothing is queued any more.
    empty: bool,
    /// A released console output waits for the stage's thread.
    held: bool,
}

/// The output stage of a recording guest: a thread that writes released
/// outputs in seq order.
pub(crate) struct Stage {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Stage {
    pub(crate) fn spawn(release: Arc<Release>, stdout: Console, stderr: Console) -> Stage {
        let writer = Mutex::new(Writer { stdout, stderr, conns: HashMap::new() });
        let shared = Arc::new(Shared { queue: Mutex::new(Queue::default()), writer, release: release.clone() });
        *release.stage.0.lock().expect("stage link poisoned") = Arc::downgrade(&shared);
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("guest-output".into())
            .spawn(move || stage_thread(&s))
            .expect("spawning the output stage thread");
        Stage { shared, thread: Some(thread) }
    }

    /// Queues an output tagged with `seq`. Seqs must not decrease.
    pub(crate) fn push(&self, seq: u64, item: Item) {
        let mut q = self.shared.queue.lock().expect("output queue poisoned");
        debug_assert!(q.items.back().is_none_or(|(s, _)| *s <= seq), "output seqs must not decrease");
        q.items.push_back((seq, item));
        drop(q);
        // An output not released yet is written by whoever releases it
        // ([`Release::advance`] writes it or wakes the stage): waking the
        // stage now would cost a thread hop for nothing. No release is
        // missed: `advance` moves the release point before it takes the
        // queue, and this checks the point after the item is queued.
        let release = &self.shared.release;
        if seq <= release.upto() && release.stage_sleeping.load(Ordering::SeqCst) {
            release.stage_bell.ring();
        }
    }

    /// Waits until every output has been released and written (or the
    /// release was stopped, or a client stalled for too long).
    pub(crate) fn finish(mut self) {
        self.shared.queue.lock().expect("output queue poisoned").finishing = true;
        self.shared.release.stage_bell.ring();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shared.queue.lock().map(|mut q| q.finishing = true).ok();
            self.shared.release.stage_bell.ring();
        }
    }
}

/// The targets outputs are written to.
struct Writer {
    stdout: Console,
    stderr: Console,
    conns: HashMap<u64, ConnOut>,
}

fn stage_thread(shared: &Shared) {
    let release = &*shared.release;
    loop {
        if release.is_stopped() {
            return;
        }
        let (finishing, idle, fds) = {
            let mut w = shared.writer.lock().expect("output writer poisoned");
            let taken = w.take_released(shared, release.upto(), false);
            let finishing = taken.ended && taken.empty;
            w.write_all(release);
            (finishing, w.idle(), w.blocked_fds())
        };
        if finishing && idle {
            return;
        }
        release.stage_sleeping.store(true, Ordering::SeqCst);
        let ready = has_released(shared, release.upto());
        if !ready && !sleep(release, fds, finishing) {
            log::warn!("output stage: clients stalled for {FINISH_STALL:?} after the guest ended; dropping their output");
            return;
        }
        release.stage_sleeping.store(false, Ordering::SeqCst);
    }
}

fn has_released(shared: &Shared, upto: u64) -> bool {
    shared.queue.lock().expect("output queue poisoned").items.front().is_some_and(|(s, _)| *s <= upto)
}

/// Polls the doorbell and the sockets with unwritten bytes (`fds`, taken
/// under the writer's lock; one closed meanwhile only wakes the poll).
/// Returns false when finishing and nothing moved for [`FINISH_STALL`].
fn sleep(release: &Release, fds: Vec<RawFd>, finishing: bool) -> bool {
    let mut polled = vec![libc::pollfd { fd: release.stage_bell.fd(), events: libc::POLLIN, revents: 0 }];
    polled.extend(fds.into_iter().map(|fd| libc::pollfd { fd, events: libc::POLLOUT, revents: 0 }));
    let timeout = if finishing { FINISH_STALL.as_millis() as i32 } else { -1 };
    // SAFETY: `polled` is a live array of initialized pollfds of the given length.
    let n = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, timeout) };
    release.stage_bell.drain();
    !(finishing && n == 0)
}

impl Writer {
    /// Moves released items to their targets, in order. With `conns_only`
    /// (the engine's thread, which must not block) it stops at the first
    /// console output: that one and all behind it wait for the stage's thread.
    fn take_released(&mut self, shared: &Shared, upto: u64, conns_only: bool) -> Taken {
        let mut released = Vec::new();
        let taken = {
            let mut q = shared.queue.lock().expect("output queue poisoned");
            let console = |i: &Item| matches!(i, Item::Data { target: Target::Stdout | Target::Stderr, .. });
            while q.items.front().is_some_and(|(s, i)| *s <= upto && !(conns_only && console(i))) {
                released.push(q.items.pop_front().expect("front exists").1);
            }
            let held = q.items.front().is_some_and(|(s, _)| *s <= upto);
            Taken { ended: q.finishing, empty: q.items.is_empty(), held }
        };
        for item in released {
            self.apply(item);
        }
        taken
    }

    fn apply(&mut self, item: Item) {
        match item {
            Item::Register { conn, stream, shared } => {
                self.conns.insert(conn, ConnOut { stream, shared, chunks: VecDeque::new() });
            }
            Item::Data { target: Target::Stdout, bytes } => self.stdout.write(&bytes, false),
            Item::Data { target: Target::Stderr, bytes } => self.stderr.write(&bytes, true),
            Item::Data { target: Target::Conn(id), bytes } => self.chunk(id, Chunk::Data(bytes, 0)),
            Item::Shutdown { conn, how } => self.chunk(conn, Chunk::Shutdown(how)),
            Item::Close { conn } => self.chunk(conn, Chunk::Close),
        }
    }

    fn chunk(&mut self, id: u64, chunk: Chunk) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.chunks.push_back(chunk);
        }
    }

    /// Writes what the sockets take, and wakes the guest if it waits for
    /// its unwritten bytes to fall.
    fn write_all(&mut self, release: &Release) {
        let mut drained = false;
        let mut closed = Vec::new();
        for (id, c) in self.conns.iter_mut() {
            drained |= c.write();
            if matches!(c.chunks.front(), Some(Chunk::Close)) {
                closed.push(*id);
            }
        }
        for id in closed {
            self.conns.remove(&id);
        }
        if drained && release.guest_waiting.load(Ordering::SeqCst) {
            release.guest_bell.ring();
        }
    }

    fn idle(&self) -> bool {
        self.conns.values().all(|c| c.chunks.is_empty())
    }

    /// Sockets with bytes the kernel did not take yet.
    fn blocked_fds(&self) -> Vec<RawFd> {
        self.conns.values().filter(|c| matches!(c.chunks.front(), Some(Chunk::Data(..)))).map(|c| c.stream.as_raw_fd()).collect()
    }
}

impl ConnOut {
    /// Writes chunks until the socket would block. Returns whether bytes left.
    fn write(&mut self) -> bool {
        let mut wrote = false;
        while let Some(front) = self.chunks.front_mut() {
            match front {
                Chunk::Data(bytes, off) => match (&self.stream).write(&bytes[*off..]) {
                    Ok(0) => break,
                    Ok(n) => {
                        *off += n;
                        self.shared.pending.fetch_sub(n, Ordering::SeqCst);
                        wrote = true;
                        if *off < bytes.len() {
                            continue;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return wrote,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::debug!("guest connection write failed: {e}");
                        break;
                    }
                },
                Chunk::Shutdown(how) => {
                    let _ = self.stream.shutdown(*how);
                }
                Chunk::Close => return wrote,
            }
            self.chunks.pop_front();
        }
        if matches!(self.chunks.front(), Some(Chunk::Data(..))) {
            self.fail();
            return true;
        }
        wrote
    }

    /// The peer is gone: drop everything unwritten, keep a pending close.
    fn fail(&mut self) {
        self.shared.broken.store(true, Ordering::SeqCst);
        let close = self.chunks.iter().any(|c| matches!(c, Chunk::Close));
        for c in self.chunks.drain(..) {
            if let Chunk::Data(b, off) = c {
                self.shared.pending.fetch_sub(b.len() - off, Ordering::SeqCst);
            }
        }
        if close {
            self.chunks.push_back(Chunk::Close);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// An output queued before its release does not wake the stage's
    /// thread (a thread hop per output on a primary for nothing); it still
    /// leaves, in order, once released, and one queued after its release
    /// leaves without waiting for another advance.
    #[test]
    fn the_stage_wakes_for_released_outputs_only() {
        let release = Release::new(0);
        let out = Arc::new(Mutex::new(Vec::new()));
        let stage = Stage::spawn(release.clone(), Console::Capture(out.clone()), Console::Discard);
        let asleep = || release.stage_sleeping.load(Ordering::SeqCst);
        wait_for("the stage to sleep", asleep);
        let rung = || release.stage_bell.rung.load(Ordering::Relaxed);
        let before = rung();
        stage.push(1, Item::Data { target: Target::Stdout, bytes: b"one ".to_vec() });
        stage.push(2, Item::Data { target: Target::Stdout, bytes: b"two ".to_vec() });
        assert_eq!(rung(), before, "an unreleased output woke the stage");
        assert!(out.lock().expect("capture").is_empty(), "an output left before its release");
        // Console output is the stage's to write: the advance wakes it.
        release.advance(2);
        wait_for("the released outputs", || out.lock().expect("capture").len() == 8);
        wait_for("the stage to sleep again", asleep);
        stage.push(2, Item::Data { target: Target::Stdout, bytes: b"three".to_vec() });
        wait_for("an output queued after its release", || out.lock().expect("capture").len() == 13);
        assert_eq!(&out.lock().expect("capture")[..], b"one two three");
        stage.finish();
    }
}
