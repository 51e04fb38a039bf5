//! The real world of a recording guest: clocks, randomness, stdin, the
//! listening socket and the accepted connections. Only the gate touches it,
//! and only in record mode; what the guest sees of it is recorded.

use std::collections::HashMap;
use std::io::Read;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::abi::errno;
use crate::error::Stop;
use crate::event::{EventSink, PollEvent};
use crate::output::{ConnShared, Console, Item, Release, Stage, Target};
use crate::snapshot::{PortShared, SnapshotPort};

/// Default bound on bytes a guest may have sent on one connection that are
/// not yet written (held by the output gate or by a slow client).
pub const SEND_BUFFER_BYTES_MAX_DEFAULT: usize = 1 << 20;

/// The guest's standard input in record mode.
#[derive(Debug, Clone, Default)]
pub enum Stdin {
    /// This process's stdin.
    Inherit,
    /// These bytes, then end of file.
    Bytes(Vec<u8>),
    /// End of file at once.
    #[default]
    Empty,
}

/// Everything a recording gate needs: where events go, the release point of
/// the output gate, and the real inputs and outputs.
pub struct LiveWorld {
    pub sink: Box<dyn EventSink>,
    pub release: Arc<Release>,
    /// The guest's fd 3. Without one, accepting on fd 3 never succeeds.
    pub listener: Option<TcpListener>,
    pub stdin: Stdin,
    pub stdout: Console,
    pub stderr: Console,
    /// Bound per connection (see [`SEND_BUFFER_BYTES_MAX_DEFAULT`]); a
    /// non-blocking send over it gets `EAGAIN`, a blocking one waits.
    pub send_buffer_bytes_max: usize,
    /// Where the engine asks for snapshots (a transformed guest only).
    pub snapshots: Option<SnapshotPort>,
    /// Seq of the last event already in the log when this world starts (a
    /// replayed guest going live): a snapshot taken before the first new
    /// event is at this seq.
    pub last_seq: u64,
    /// Set once the guest accepts on its listener or polls it: a node can
    /// warn about a guest that never serves the port it was given.
    pub listener_used: Arc<std::sync::atomic::AtomicBool>,
}

impl LiveWorld {
    /// Unprotected defaults: every output released at once, no listener,
    /// empty stdin, stdout/stderr inherited.
    pub fn new(sink: impl EventSink + 'static) -> Self {
        LiveWorld {
            sink: Box::new(sink),
            release: Release::everything(),
            listener: None,
            stdin: Stdin::Empty,
            stdout: Console::Inherit,
            stderr: Console::Inherit,
            send_buffer_bytes_max: SEND_BUFFER_BYTES_MAX_DEFAULT,
            listener_used: Arc::default(),
            snapshots: None,
            last_seq: 0,
        }
    }

    pub fn with_snapshots(mut self, port: SnapshotPort) -> Self {
        self.snapshots = Some(port);
        self
    }

    pub fn with_listener(mut self, l: TcpListener) -> Self {
        self.listener = Some(l);
        self
    }

    pub fn with_release(mut self, r: Arc<Release>) -> Self {
        self.release = r;
        self
    }

    pub fn with_stdin(mut self, s: Stdin) -> Self {
        self.stdin = s;
        self
    }

    pub fn with_console(mut self, stdout: Console, stderr: Console) -> Self {
        self.stdout = stdout;
        self.stderr = stderr;
        self
    }
}

/// A parsed `poll_oneoff` subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubKind {
    Clock { id: u32, timeout: u64, abstime: bool },
    Read(u32),
    Write(u32),
}

/// What a subscription's fd is, as the gate's fd table says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubTarget {
    Bad,
    Stdin,
    Stdout,
    Listener,
    Conn {
        id: u64,
        read_shut: bool,
        write_shut: bool,
        reset: bool,
    },
    /// A regular file: always ready.
    File,
}

struct LiveConn {
    stream: TcpStream,
    shared: Arc<ConnShared>,
}

/// Record-mode state of the gate.
pub(crate) struct Live {
    sink: Box<dyn EventSink>,
    pub release: Arc<Release>,
    stage: Option<Stage>,
    listener: Option<TcpListener>,
    listener_used: Arc<std::sync::atomic::AtomicBool>,
    stdin: Stdin,
    stdin_pos: usize,
    conns: HashMap<u64, LiveConn>,
    send_max: usize,
    /// Seq of the last appended event: tags outputs that no event produced
    /// (a close, a shutdown), which depend only on the log up to there.
    pub last_seq: u64,
    /// Snapshots: a wait ends with `Stop::Snapshot` when one is due.
    pub(crate) port: Option<Arc<PortShared>>,
}

pub(crate) fn io_errno(e: &std::io::Error) -> u16 {
    match e.raw_os_error() {
        Some(libc::ECONNRESET) => errno::CONNRESET,
        Some(libc::EPIPE) => errno::PIPE,
        Some(libc::ECONNABORTED) => errno::CONNABORTED,
        Some(libc::ETIMEDOUT) => errno::TIMEDOUT,
        Some(libc::ENOTCONN) => errno::NOTCONN,
        Some(libc::EAGAIN) => errno::AGAIN,
        Some(libc::EINTR) => errno::INTR,
        Some(libc::EMFILE) | Some(libc::ENFILE) => errno::NFILE,
        Some(libc::ENOBUFS) | Some(libc::ENOMEM) => errno::NOBUFS,
        _ => errno::IO,
    }
}

fn clock_id(id: u32) -> Option<libc::clockid_t> {
    Some(match id {
        0 => libc::CLOCK_REALTIME,
        1 => libc::CLOCK_MONOTONIC,
        2 => libc::CLOCK_PROCESS_CPUTIME_ID,
        3 => libc::CLOCK_THREAD_CPUTIME_ID,
        _ => return None,
    })
}

/// Reads a real clock, in nanoseconds.
pub(crate) fn clock_now(id: u32) -> Result<u64, u16> {
    let c = clock_id(id).ok_or(errno::INVAL)?;
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    if unsafe { libc::clock_gettime(c, &mut ts) } != 0 {
        return Err(errno::INVAL);
    }
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

fn poll_fds(fds: &mut [libc::pollfd], timeout_ms: i32) {
    // SAFETY: `fds` is a live, initialized array of the given length.
    let _ = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
}

fn pollfd(fd: RawFd, events: i16) -> libc::pollfd {
    libc::pollfd { fd, events, revents: 0 }
}

impl Live {
    pub(crate) fn new(w: LiveWorld) -> Live {
        if let Some(l) = &w.listener {
            l.set_nonblocking(true).expect("setting the guest listener non-blocking");
        }
        let stage = Stage::spawn(w.release.clone(), w.stdout, w.stderr);
        let port = w.snapshots.map(|p| p.0);
        if let Some(p) = &port {
            *p.release.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(w.release.clone());
        }
        Live {
            sink: w.sink,
            release: w.release,
            stage: Some(stage),
            listener: w.listener,
            listener_used: w.listener_used,
            stdin: w.stdin,
            stdin_pos: 0,
            conns: HashMap::new(),
            send_max: w.send_buffer_bytes_max.max(1),
            last_seq: w.last_seq,
            port,
        }
    }

    /// Appends an event; returns its seq.
    pub(crate) fn append(&mut self, event: &[u8]) -> u64 {
        self.last_seq = self.sink.append(event);
        self.last_seq
    }

    pub(crate) fn output(&mut self, seq: u64, target: Target, bytes: Vec<u8>) {
        self.stage().push(seq, Item::Data { target, bytes });
    }

    fn stage(&self) -> &Stage {
        self.stage.as_ref().expect("the output stage lives as long as the world")
    }

    /// Waits for the guest's doorbell and `fds` (after index 0, which this
    /// fills in) until `deadline`. Returns `Stop::Stopped` when halted.
    fn wait(&self, fds: &mut [libc::pollfd], deadline: Option<Instant>) -> Result<(), Stop> {
        fds[0] = pollfd(self.release.guest_bell.fd(), libc::POLLIN);
        let timeout = deadline.map_or(-1, |d| {
            let left = d.saturating_duration_since(Instant::now());
            // Round up, so a wait never ends just before its deadline.
            left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32
        });
        self.release.set_guest_waiting(true);
        poll_fds(fds, timeout);
        self.release.set_guest_waiting(false);
        self.release.guest_bell.drain();
        self.check()?;
        if self.port.as_ref().is_some_and(|p| p.pause.load(Ordering::SeqCst)) {
            return Err(Stop::Snapshot);
        }
        Ok(())
    }

    pub(crate) fn check(&self) -> Result<(), Stop> {
        if self.release.is_stopped() {
            return Err(Stop::Stopped);
        }
        Ok(())
    }

    pub(crate) fn random(&mut self, out: &mut Vec<u8>, len: usize) {
        out.resize(len, 0);
        let mut filled = 0;
        while filled < len {
            // SAFETY: writing at most `len - filled` bytes into our own buffer.
            let n = unsafe { libc::getrandom(out[filled..].as_mut_ptr().cast(), len - filled, 0) };
            if n > 0 {
                filled += n as usize;
            } else {
                assert_eq!(std::io::Error::last_os_error().kind(), std::io::ErrorKind::Interrupted, "getrandom failed");
            }
        }
    }

    /// Reads stdin into `out` (at most `max` bytes).
    pub(crate) fn read_stdin(&mut self, max: usize, nonblock: bool, out: &mut Vec<u8>) -> Result<u16, Stop> {
        match &self.stdin {
            Stdin::Empty => Ok(0),
            Stdin::Bytes(b) => {
                let n = max.min(b.len() - self.stdin_pos);
                out.extend_from_slice(&b[self.stdin_pos..self.stdin_pos + n]);
                self.stdin_pos += n;
                Ok(0)
            }
            Stdin::Inherit => {
                if nonblock && !self.stdin_ready() {
                    return Ok(errno::AGAIN);
                }
                // Wait for input where the engine can wake us (a halt, a
                // snapshot), not inside read(2).
                while !self.stdin_ready() {
                    self.wait(&mut [pollfd(-1, 0), pollfd(0, libc::POLLIN)], None)?;
                }
                out.resize(max.min(1 << 20), 0);
                loop {
                    match std::io::stdin().lock().read(out) {
                        Ok(n) => {
                            out.truncate(n);
                            return Ok(0);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            out.clear();
                            return Ok(io_errno(&e));
                        }
                    }
                }
            }
        }
    }

    fn stdin_ready(&self) -> bool {
        let mut fds = [pollfd(0, libc::POLLIN)];
        poll_fds(&mut fds, 0);
        fds[0].revents != 0
    }

    /// Accepts a connection as connection `id`. Blocks unless `nonblock`.
    pub(crate) fn accept(&mut self, id: u64, nonblock: bool) -> Result<u16, Stop> {
        self.listener_used.store(true, std::sync::atomic::Ordering::Relaxed);
        loop {
            self.check()?;
            let Some(l) = &self.listener else {
                if nonblock {
                    return Ok(errno::AGAIN);
                }
                self.wait(&mut [pollfd(-1, 0)], None)?;
                continue;
            };
            match l.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(true).map_err(|e| Stop::Host(format!("accepted socket: {e}")))?;
                    let _ = stream.set_nodelay(true);
                    let shared = Arc::new(ConnShared::default());
                    let writer = stream.try_clone().map_err(|e| Stop::Host(format!("cloning a socket: {e}")))?;
                    self.stage().push(self.last_seq, Item::Register { conn: id, stream: writer, shared: shared.clone() });
                    self.conns.insert(id, LiveConn { stream, shared });
                    return Ok(0);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && nonblock => return Ok(errno::AGAIN),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let fd = l.as_raw_fd();
                    self.wait(&mut [pollfd(-1, 0), pollfd(fd, libc::POLLIN)], None)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Ok(io_errno(&e)),
            }
        }
    }

    /// Receives at most `max` bytes from connection `id` into `out`.
    pub(crate) fn recv(&mut self, id: u64, max: usize, peek: bool, nonblock: bool, out: &mut Vec<u8>) -> Result<u16, Stop> {
        let Some(c) = self.conns.get(&id) else { return Ok(errno::NOTCONN) };
        out.resize(max.min(1 << 20), 0);
        loop {
            self.check()?;
            let r = if peek { c.stream.peek(out) } else { (&c.stream).read(out) };
            match r {
                Ok(n) => {
                    out.truncate(n);
                    return Ok(0);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && !nonblock => {
                    let fd = c.stream.as_raw_fd();
                    self.wait(&mut [pollfd(-1, 0), pollfd(fd, libc::POLLIN | libc::POLLRDHUP)], None)?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    out.clear();
                    return Ok(io_errno(&e));
                }
            }
        }
    }

    /// How many of `len` bytes connection `id` takes now (blocking until it
    /// takes some unless `nonblock`). The caller then hands them over with
    /// [`Live::send`].
    pub(crate) fn send_room(&self, id: u64, len: usize, nonblock: bool) -> Result<Result<usize, u16>, Stop> {
        let Some(c) = self.conns.get(&id) else { return Ok(Err(errno::NOTCONN)) };
        loop {
            self.check()?;
            if c.shared.broken.load(Ordering::SeqCst) {
                return Ok(Err(errno::PIPE));
            }
            let pending = c.shared.pending.load(Ordering::SeqCst);
            if pending < self.send_max || len == 0 {
                return Ok(Ok(len.min(self.send_max - pending.min(self.send_max))));
            }
            if nonblock {
                return Ok(Err(errno::AGAIN));
            }
            self.wait(&mut [pollfd(-1, 0)], None)?;
        }
    }

    /// Queues bytes for connection `id`, released at `seq`.
    pub(crate) fn send(&mut self, id: u64, seq: u64, bytes: Vec<u8>) {
        if let Some(c) = self.conns.get(&id) {
            c.shared.pending.fetch_add(bytes.len(), Ordering::SeqCst);
            self.stage().push(seq, Item::Data { target: Target::Conn(id), bytes });
        }
    }

    pub(crate) fn shutdown(&mut self, id: u64, how: Shutdown) {
        if let Some(c) = self.conns.get(&id) {
            if matches!(how, Shutdown::Read | Shutdown::Both) {
                let _ = c.stream.shutdown(Shutdown::Read);
            }
            if matches!(how, Shutdown::Write | Shutdown::Both) {
                self.stage().push(self.last_seq, Item::Shutdown { conn: id, how: Shutdown::Write });
            }
        }
    }

    pub(crate) fn close(&mut self, id: u64) {
        if self.conns.remove(&id).is_some() {
            self.stage().push(self.last_seq, Item::Close { conn: id });
        }
    }

    pub(crate) fn close_listener(&mut self) {
        self.listener = None;
    }

    /// Waits until at least one subscription is ready; fills `out` with every
    /// ready one (index, errno, nbytes, hangup).
    pub(crate) fn poll(&mut self, subs: &[(SubKind, SubTarget)], out: &mut Vec<PollEvent>) -> Result<(), Stop> {
        let start = Instant::now();
        let deadlines: Vec<Option<Instant>> = subs.iter().map(|(k, _)| clock_deadline(k, start)).collect();
        let mut fds = vec![pollfd(-1, 0)];
        let mut slot = vec![usize::MAX; subs.len()];
        for (i, (kind, target)) in subs.iter().enumerate() {
            if let Some(fd) = self.real_fd(kind, target) {
                slot[i] = fds.len();
                let events = if matches!(kind, SubKind::Read(_)) { libc::POLLIN | libc::POLLRDHUP } else { libc::POLLOUT };
                fds.push(pollfd(fd, events));
            }
        }
        poll_fds(&mut fds[1..], 0);
        loop {
            let now = Instant::now();
            for (i, (kind, target)) in subs.iter().enumerate() {
                let revents = fds.get(slot[i]).map_or(0, |p| p.revents);
                if let Some(mut e) = self.readiness(kind, target, revents, deadlines[i], now) {
                    e.index = i as u32;
                    out.push(e);
                }
            }
            if !out.is_empty() {
                return Ok(());
            }
            let deadline = deadlines.iter().flatten().min().copied();
            for f in &mut fds {
                f.revents = 0;
            }
            self.wait(&mut fds, deadline)?;
        }
    }

    fn real_fd(&self, kind: &SubKind, target: &SubTarget) -> Option<RawFd> {
        match (kind, target) {
            (SubKind::Read(_), SubTarget::Stdin) if matches!(self.stdin, Stdin::Inherit) => Some(0),
            (SubKind::Read(_), SubTarget::Listener) => {
                self.listener_used.store(true, std::sync::atomic::Ordering::Relaxed);
                self.listener.as_ref().map(|l| l.as_raw_fd())
            }
            (SubKind::Read(_), SubTarget::Conn { id, read_shut: false, reset: false, .. }) => {
                self.conns.get(id).map(|c| c.stream.as_raw_fd())
            }
            _ => None,
        }
    }

    fn readiness(
        &self,
        kind: &SubKind,
        target: &SubTarget,
        revents: i16,
        deadline: Option<Instant>,
        now: Instant,
    ) -> Option<PollEvent> {
        let ready = |nbytes: u64, flags: u8| Some(PollEvent { index: 0, errno: 0, nbytes, flags });
        let failed = |errno: u16| Some(PollEvent { index: 0, errno, nbytes: 0, flags: 0 });
        match (kind, target) {
            (SubKind::Clock { .. }, _) => deadline.is_some_and(|d| now >= d).then_some(PollEvent::default()),
            (_, SubTarget::Bad) => failed(errno::BADF),
            (SubKind::Read(_), SubTarget::Stdin) => match &self.stdin {
                Stdin::Inherit => (revents != 0).then(|| PollEvent { nbytes: 1, ..PollEvent::default() }),
                Stdin::Bytes(b) => ready((b.len() - self.stdin_pos) as u64, 0),
                Stdin::Empty => ready(0, 0),
            },
            (SubKind::Write(_), SubTarget::Stdout) => ready(0, 0),
            (SubKind::Read(_) | SubKind::Write(_), SubTarget::File) => ready(0, 0),
            (SubKind::Read(_), SubTarget::Listener) => (revents != 0).then(|| PollEvent { nbytes: 1, ..PollEvent::default() }),
            (SubKind::Read(_), SubTarget::Conn { reset: true, .. }) => ready(0, HANGUP),
            (SubKind::Read(_), SubTarget::Conn { read_shut: true, .. }) => ready(0, 0),
            (SubKind::Read(_), SubTarget::Conn { id, .. }) => {
                if revents == 0 {
                    return None;
                }
                let hup = revents & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR) != 0;
                ready(self.conns.get(id).map_or(0, |c| readable_bytes(&c.stream)), if hup { HANGUP } else { 0 })
            }
            (SubKind::Write(_), SubTarget::Conn { reset: true, .. } | SubTarget::Conn { write_shut: true, .. }) => {
                failed(errno::PIPE)
            }
            (SubKind::Write(_), SubTarget::Conn { id, .. }) => {
                let c = self.conns.get(id)?;
                if c.shared.broken.load(Ordering::SeqCst) {
                    return failed(errno::PIPE);
                }
                let pending = c.shared.pending.load(Ordering::SeqCst);
                (pending < self.send_max).then(|| PollEvent { nbytes: (self.send_max - pending) as u64, ..PollEvent::default() })
            }
            _ => failed(errno::BADF),
        }
    }

    /// Hands the world's outputs to the stage and waits until they are out.
    pub(crate) fn finish(mut self) {
        self.conns.clear();
        if let Some(stage) = self.stage.take() {
            stage.finish();
        }
    }
}

const HANGUP: u8 = 1;

fn readable_bytes(s: &TcpStream) -> u64 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `n`, which we own.
    let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
    if rc == 0 {
        n.max(0) as u64
    } else {
        0
    }
}

fn clock_deadline(kind: &SubKind, start: Instant) -> Option<Instant> {
    let SubKind::Clock { id, timeout, abstime } = *kind else { return None };
    let rel = if abstime {
        // Absolute deadline on the guest's clock: how far is it from now?
        let now = clock_now(id).unwrap_or(0);
        timeout.saturating_sub(now)
    } else {
        timeout
    };
    Some(start.checked_add(Duration::from_nanos(rel)).unwrap_or(start + Duration::from_secs(86400 * 365)))
}
