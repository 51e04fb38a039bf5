//! `understudy arbiter`: the built-in arbiter server (`understudy://`).
//!
//! One thread accepts; one thread per connection runs the handshake, then
//! answers requests one at a time for as long as the client keeps the
//! connection (nodes keep one open). The load is a few requests per failover
//! and per status change, so threads are cheap enough; their number is
//! bounded all the same. See [`crate::proto`] for the messages,
//! [`crate::store`] for what is kept on disk and [`crate::metrics`] for
//! what is counted.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use understudy_wire::frame::Kind;
use understudy_wire::handshake::{Handshake, HandshakeError};
use understudy_wire::msg::{Purpose, RejectCode};

use crate::metrics::{Metrics, Refusal};
use crate::proto::{frame_json, hello, ConnError, FrameConn, RemoteError, Reply, Request, MACHINE};
use crate::store::Store;
use crate::ArbiterError;

/// Most connections served at once; more are refused with `Busy`.
pub const CONNECTIONS_MAX: usize = 256;
/// A peer must complete the handshake within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often idle threads look at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// A reply that cannot be written within this means a dead peer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// The arbiter server: a [`Store`] behind the authenticated protocol.
pub struct Server {
    store: Arc<Store>,
    secret: Arc<[u8]>,
}

/// Serves `listener` with the state in `dir` until `stop` is set; returns
/// once every connection thread has finished. (`understudy arbiter` uses
/// [`Server`] itself, to serve its metrics too.)
pub fn serve(listener: TcpListener, dir: &Path, secret: Vec<u8>, stop: Arc<AtomicBool>) -> Result<(), ArbiterError> {
    Server::open(dir, secret)?.run(listener, stop)
}

impl Server {
    /// Locks and loads `dir` (see [`crate::store`]); fails if another server
    /// holds it or a record is unreadable.
    pub fn open(dir: &Path, secret: Vec<u8>) -> Result<Server, ArbiterError> {
        Ok(Server { store: Arc::new(Store::open(dir)?), secret: secret.into() })
    }

    /// Serves the metrics page (`GET /metrics`) on `listener`, on a thread of
    /// its own, until `stop` is set (see [`crate::metrics`]).
    pub fn serve_metrics(&self, listener: TcpListener, stop: Arc<AtomicBool>) -> Result<JoinHandle<()>, ArbiterError> {
        let store = self.store.clone();
        crate::metrics::spawn_http(move || store.render_metrics(), listener, stop)
    }

    /// Accepts and serves connections until `stop` is set.
    pub fn run(&self, listener: TcpListener, stop: Arc<AtomicBool>) -> Result<(), ArbiterError> {
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
        let net = |action: &str, cause| ArbiterError::Net { action: action.into(), addr: addr.clone(), cause };
        // Non-blocking accept, polled, so that `stop` is noticed promptly.
        listener.set_nonblocking(true).map_err(|e| net("set non-blocking", e))?;
        log::info!("arbiter listening on understudy://{addr}");
        let mut conns: Vec<JoinHandle<()>> = Vec::new();
        while !stop.load(Ordering::Acquire) {
            conns.retain(|h| !h.is_finished());
            match listener.accept() {
                Ok((stream, peer)) if conns.len() >= CONNECTIONS_MAX => refuse_busy(stream, peer, self.store.metrics()),
                Ok((stream, peer)) => {
                    let (store, secret, stop) = (self.store.clone(), self.secret.clone(), stop.clone());
                    let open = self.store.metrics().connection();
                    let spawned = std::thread::Builder::new().name(format!("arbiter-conn-{peer}")).spawn(move || {
                        let _open = open;
                        connection(stream, peer, &store, &secret, &stop)
                    });
                    match spawned {
                        Ok(h) => conns.push(h),
                        Err(e) => log::error!("arbiter: cannot start a thread for {peer}: {e}"),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL / 10),
                Err(e) => {
                    // E.g. out of file descriptors: keep serving the others.
                    log::warn!("arbiter: accept on {addr} failed: {e}");
                    std::thread::sleep(POLL);
                }
            }
        }
        for h in conns {
            let _ = h.join();
        }
        log::info!("arbiter on {addr} stopped");
        Ok(())
    }

    /// Runs the server on a thread of its own (the embedded arbiter of
    /// `understudy demo`, tests). The listener is already bound, so the
    /// address is known and connections queue before the thread starts.
    pub fn spawn(self, listener: TcpListener) -> Result<RunningServer, ArbiterError> {
        let addr = listener.local_addr().map_err(|e| ArbiterError::Net {
            action: "read the address of".into(),
            addr: "the listener".into(),
            cause: e,
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("arbiter".into())
            .spawn(move || self.run(listener, flag))
            .map_err(|e| ArbiterError::Net { action: "start the thread serving".into(), addr: addr.to_string(), cause: e })?;
        Ok(RunningServer { addr, stop, thread: Some(thread) })
    }
}

/// A server running on its own thread; stops when dropped.
pub struct RunningServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), ArbiterError>>>,
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL clients pass to [`crate::connect`].
    pub fn url(&self) -> String {
        format!("understudy://{}", self.addr)
    }

    /// Stops accepting, closes every connection, waits for the threads, and
    /// releases the directory lock (a new server may then open the dir).
    pub fn stop(mut self) -> Result<(), ArbiterError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), ArbiterError> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => panic!("the arbiter server thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Err(e) = self.stop_and_join() {
            log::error!("arbiter server stopped with an error: {e}");
        }
    }
}

fn refuse_busy(stream: TcpStream, peer: SocketAddr, metrics: &Metrics) {
    metrics.refused(Refusal::Busy);
    log::warn!("arbiter: refusing {peer}: already {CONNECTIONS_MAX} connections");
    let mut conn = FrameConn::new(stream);
    let msg = format!("the arbiter serves at most {CONNECTIONS_MAX} connections");
    let _ = conn.write_all(&Handshake::reject(0, RejectCode::Busy, msg));
}

/// One connection, start to end; logs why it ended.
fn connection(stream: TcpStream, peer: SocketAddr, store: &Store, secret: &[u8], stop: &AtomicBool) {
    match serve_connection(stream, peer, store, secret, stop) {
        Ok(()) | Err(ConnError::Closed) => log::debug!("arbiter: {peer} disconnected"),
        Err(e) if e.is_timeout() => {
            log::debug!("arbiter: {peer} closed: server stopping or handshake timed out")
        }
        Err(e) => log::warn!("arbiter: closed the connection from {peer}: {e}"),
    }
}

fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    store: &Store,
    secret: &[u8],
    stop: &AtomicBool,
) -> Result<(), ConnError> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(POLL))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut conn = FrameConn::new(stream);
    let metrics = store.metrics();
    authenticate(&mut conn, peer, secret, stop, metrics)?;
    loop {
        let (header, payload) = conn.read_frame_while(|| !stop.load(Ordering::Acquire)).inspect_err(|e| {
            if matches!(e, ConnError::Wire(_)) {
                metrics.refused(Refusal::Protocol);
            }
        })?;
        if header.kind != Kind::ArbiterRequest {
            metrics.refused(Refusal::Protocol);
            let detail = format!("expected an ArbiterRequest frame, got {:?}", header.kind);
            let _ = conn.write_all(&frame_json(Kind::ArbiterReply, &Reply::Error(RemoteError::Protocol { detail })));
            return Err(ConnError::Io(std::io::Error::other(format!("unexpected {:?} frame", header.kind))));
        }
        let (reply, bad) = match serde_json::from_slice::<Request>(&payload) {
            Ok(req) => (store.handle(req), None),
            Err(e) => {
                metrics.refused(Refusal::Protocol);
                let detail = format!("malformed request: {e}");
                (Reply::Error(RemoteError::Protocol { detail: detail.clone() }), Some(detail))
            }
        };
        conn.write_all(&frame_json(Kind::ArbiterReply, &reply)).map_err(|(_, e)| e)?;
        if let Some(detail) = bad {
            return Err(ConnError::Io(std::io::Error::other(detail)));
        }
    }
}

/// The acceptor side of the handshake. A peer that fails to prove the secret
/// is refused with `Reject(AuthFailed)`; every failure is logged by the caller
/// and counted here (a peer that hangs up or says nothing is not refused).
fn authenticate(
    conn: &mut FrameConn,
    peer: SocketAddr,
    secret: &[u8],
    stop: &AtomicBool,
    metrics: &Metrics,
) -> Result<(), ConnError> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let mut hs = Handshake::acceptor(secret, hello("arbiter", Purpose::Accept), 0);
    let keep_waiting = || !stop.load(Ordering::Acquire) && Instant::now() < deadline;
    let them = match conn.handshake(&mut hs, &[], keep_waiting) {
        Ok(p) => p,
        Err(ConnError::Handshake(HandshakeError::AuthFailed)) => {
            metrics.refused(Refusal::Auth);
            log::warn!("arbiter: {peer} failed authentication (different --secret-file); refused");
            let _ = conn.write_all(&Handshake::reject(0, RejectCode::AuthFailed, "authentication failed: check --secret-file"));
            return Err(ConnError::Handshake(HandshakeError::AuthFailed));
        }
        Err(ConnError::Handshake(HandshakeError::Rejected(r))) if r.code == RejectCode::AuthFailed => {
            metrics.refused(Refusal::Auth);
            log::warn!("arbiter: {peer} could not verify our proof (different --secret-file); it hung up");
            return Err(ConnError::Handshake(HandshakeError::Rejected(r)));
        }
        Err(e) => {
            if matches!(e, ConnError::Handshake(_) | ConnError::Wire(_)) {
                metrics.refused(Refusal::Protocol);
            }
            return Err(e);
        }
    };
    if them.hello.purpose != Purpose::Arbiter || them.hello.machine != MACHINE {
        metrics.refused(Refusal::Protocol);
        let msg = format!(
            "this is an understudy arbiter; it serves purpose Arbiter with machine {MACHINE:?}, not {:?} with {:?}",
            them.hello.purpose, them.hello.machine
        );
        let _ = conn.write_all(&Handshake::reject(0, RejectCode::Protocol, msg.clone()));
        return Err(ConnError::Io(std::io::Error::other(msg)));
    }
    log::debug!("arbiter: {peer} authenticated (node {:?})", them.hello.node);
    Ok(())
}
