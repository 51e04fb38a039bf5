//! `understudy://HOST:PORT`: the client of the built-in server.
//!
//! Blocking sockets with short timeouts, since a node asks the arbiter during
//! failover, when every second counts and a hung call must become an error
//! quickly. One connection is cached and reused; a new one is made when it
//! breaks.
//!
//! **At most once on the wire.** A request is sent again only if not one of
//! its bytes went out (the cached connection was found dead first). Once sent,
//! a lost reply is reported as [`ArbiterError::Unreachable`] saying the
//! request may have been applied; the caller reads the record again. Claims
//! are safe to repeat anyway: the holder asking for its own epoch again gets
//! `Granted` with the same record (see [`Arbiter::claim`]).

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use understudy_wire::frame::Kind;
use understudy_wire::handshake::{Handshake, HandshakeError};
use understudy_wire::msg::{Purpose, RejectCode};

use crate::proto::{frame_json, hello, ConnError, FrameConn, Reply, Request, MACHINE};
use crate::{Arbiter, ArbiterError, BackupInfo, Claim, ClusterRecord, NodeAddrs, Update};

/// Bound on establishing a TCP connection (per address tried).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Bound on each read and write, handshake included.
pub const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// Client of an `understudy arbiter` server.
pub struct ArbiterClient {
    /// `understudy://HOST:PORT`, for messages.
    url: String,
    /// `HOST:PORT`, resolved at each connect (the arbiter may move).
    addr: String,
    secret: Vec<u8>,
    /// The cached connection; the mutex also keeps requests one at a time.
    conn: Mutex<Option<FrameConn>>,
}

impl std::fmt::Debug for ArbiterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArbiterClient").field("url", &self.url).finish_non_exhaustive()
    }
}

impl ArbiterClient {
    /// A client of the server at `addr` (`HOST:PORT`). Connects lazily, so a
    /// node can start while the arbiter is down (it is needed for failover,
    /// not while the pair is healthy).
    pub fn new(addr: &str, secret: &[u8]) -> Self {
        ArbiterClient {
            url: format!("understudy://{addr}"),
            addr: addr.to_string(),
            secret: secret.to_vec(),
            conn: Mutex::new(None),
        }
    }

    fn unreachable(&self, reason: impl Into<String>) -> ArbiterError {
        ArbiterError::Unreachable { url: self.url.clone(), reason: reason.into() }
    }

    fn protocol(&self, detail: impl Into<String>) -> ArbiterError {
        ArbiterError::Protocol { peer: self.url.clone(), detail: detail.into() }
    }

    /// Connects to the first address of `addr` that answers.
    fn connect_tcp(&self) -> Result<TcpStream, ArbiterError> {
        let addrs = self.addr.to_socket_addrs().map_err(|e| self.unreachable(format!("cannot resolve {}: {e}", self.addr)))?;
        let start = Instant::now();
        let mut last = format!("{} resolves to no address", self.addr);
        for a in addrs {
            if start.elapsed() >= CONNECT_TIMEOUT {
                break;
            }
            match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
                Ok(s) => return Ok(s),
                Err(e) => last = format!("connecting to {a} failed: {e}"),
            }
        }
        Err(self.unreachable(last))
    }

    /// A new authenticated connection.
    fn open(&self) -> Result<FrameConn, ArbiterError> {
        let stream = self.connect_tcp()?;
        let setup = |s: &TcpStream| {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))
        };
        setup(&stream).map_err(|e| self.unreachable(format!("socket setup failed: {e}")))?;
        let mut conn = FrameConn::new(stream);
        let (mut hs, first) = Handshake::initiator(&self.secret, hello("", Purpose::Arbiter), 0);
        let peer = match conn.handshake(&mut hs, &first, || false) {
            Ok(p) => p,
            Err(e) => return Err(self.handshake_error(&mut conn, e)),
        };
        if peer.hello.purpose != Purpose::Accept || peer.hello.machine != MACHINE {
            return Err(self.protocol(format!(
                "it is not an understudy arbiter (it answered as {:?} {:?}); is --arbiter pointing at a node's address?",
                peer.hello.purpose, peer.hello.machine
            )));
        }
        Ok(conn)
    }

    fn handshake_error(&self, conn: &mut FrameConn, e: ConnError) -> ArbiterError {
        match e {
            ConnError::Handshake(HandshakeError::AuthFailed) => {
                // Tell the server why we hang up, so its log says so too.
                let msg = "the arbiter's proof did not verify: check --secret-file";
                let _ = conn.write_all(&Handshake::reject(0, RejectCode::AuthFailed, msg));
                ArbiterError::Auth { url: self.url.clone() }
            }
            ConnError::Handshake(HandshakeError::Rejected(r)) if r.code == RejectCode::AuthFailed => {
                ArbiterError::Auth { url: self.url.clone() }
            }
            ConnError::Handshake(HandshakeError::Rejected(r)) => {
                self.protocol(format!("it refused the connection ({:?}): {}", r.code, r.message))
            }
            e if e.is_timeout() => self.unreachable(format!("no handshake answer within {} s", IO_TIMEOUT.as_secs())),
            ConnError::Io(e) => self.unreachable(format!("the connection failed during the handshake: {e}")),
            ConnError::Closed => self.unreachable("the arbiter closed the connection during the handshake"),
            e => self.protocol(e.to_string()),
        }
    }

    /// Sends one request and waits for its reply (see the module docs for
    /// when a request is sent again).
    fn call(&self, req: &Request) -> Result<Reply, ArbiterError> {
        let bytes = frame_json(Kind::ArbiterRequest, req);
        let mut slot = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let mut reused = slot.as_ref().is_some_and(FrameConn::is_idle_and_open);
        if !reused {
            *slot = None;
        }
        loop {
            if slot.is_none() {
                *slot = Some(self.open()?);
            }
            let conn = slot.as_mut().expect("connected just above");
            if let Err((sent, e)) = conn.write_all(&bytes) {
                *slot = None;
                if sent == 0 && reused {
                    // Nothing went out: the old connection was dead. Once more
                    // on a fresh one.
                    reused = false;
                    continue;
                }
                return Err(self.unreachable(format!(
                    "sending the request failed after {sent} of {} bytes ({e}); it may have been applied: read the record again",
                    bytes.len()
                )));
            }
            return match conn.read_frame() {
                Ok((h, payload)) if h.kind == Kind::ArbiterReply => {
                    serde_json::from_slice(&payload).map_err(|e| self.protocol(format!("malformed reply: {e}")))
                }
                Ok((h, _)) => Err(self.protocol(format!("expected an ArbiterReply frame, got {:?}", h.kind))),
                Err(e) => {
                    *slot = None;
                    Err(self.unreachable(format!(
                        "the reply was lost ({e}); the request may have been applied: read the record again (a repeated claim by its holder is answered Granted)"
                    )))
                }
            };
        }
    }

    fn unexpected(&self, reply: Reply) -> ArbiterError {
        match reply {
            Reply::Error(e) => e.into_error(&self.url),
            other => self.protocol(format!("reply does not match the request: {other:?}")),
        }
    }
}

impl Arbiter for ArbiterClient {
    fn read(&self, cluster: &str) -> Result<Option<ClusterRecord>, ArbiterError> {
        crate::rules::validate_name("--cluster", cluster)?;
        match self.call(&Request::Read { cluster: cluster.into() })? {
            Reply::Read(r) => Ok(r),
            other => Err(self.unexpected(other)),
        }
    }

    fn claim(&self, cluster: &str, epoch: u64, primary: &NodeAddrs) -> Result<Claim, ArbiterError> {
        crate::rules::validate_name("--cluster", cluster)?;
        match self.call(&Request::Claim { cluster: cluster.into(), epoch, primary: primary.clone() })? {
            Reply::Claim(c) => Ok(c),
            other => Err(self.unexpected(other)),
        }
    }

    fn add_member(&self, cluster: &str, epoch: u64, primary_node: &str, member: &str) -> Result<Update, ArbiterError> {
        crate::rules::validate_name("--cluster", cluster)?;
        let req = Request::AddMember { cluster: cluster.into(), epoch, primary_node: primary_node.into(), member: member.into() };
        match self.call(&req)? {
            Reply::Update(u) => Ok(u),
            other => Err(self.unexpected(other)),
        }
    }

    fn publish(
        &self,
        cluster: &str,
        epoch: u64,
        primary_node: &str,
        backup: Option<BackupInfo>,
        protected: bool,
    ) -> Result<Update, ArbiterError> {
        crate::rules::validate_name("--cluster", cluster)?;
        let req = Request::Publish { cluster: cluster.into(), epoch, primary_node: primary_node.into(), backup, protected };
        match self.call(&req)? {
            Reply::Update(u) => Ok(u),
            other => Err(self.unexpected(other)),
        }
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}
