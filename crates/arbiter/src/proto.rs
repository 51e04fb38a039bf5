//! The built-in arbiter's wire protocol, shared by [`crate::server`] and
//! [`crate::client`].
//!
//! ```text
//! client (Purpose::Arbiter)                      server (Purpose::Accept)
//!   handshake of understudy_wire::handshake, machine "arbiter/1", cluster ""
//!   ArbiterRequest {"op":"claim",...}  ──────────▶
//!                                      ◀────────── ArbiterReply {"claim":{"granted":{...}}}
//!   ArbiterRequest ...                 ──────────▶   (any number, one at a time)
//! ```
//!
//! Every message is one frame of `understudy_wire::frame` (epoch and seq 0)
//! carrying JSON; one reply per request, in order. A reply is sent only after
//! the change it reports is durable on the server.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use understudy_wire::frame::{encode, FrameDecoder, FrameHeader, Kind};
use understudy_wire::handshake::{Handshake, HandshakeError, Peer, Step};
use understudy_wire::msg::{Hello, Purpose};
use understudy_wire::{Frame, WireError};

use crate::{ArbiterError, BackupInfo, Claim, ClusterRecord, NodeAddrs, Update};

/// Largest frame either side accepts. A record is a few hundred bytes; the
/// bound only stops a broken or hostile peer from making us allocate.
pub const FRAME_BYTES_MAX: u64 = 1 << 20;
/// The `machine` of both hellos: refuses a peer that is not an arbiter
/// endpoint (e.g. `--arbiter` pointed at a node's `--repl-listen`).
pub const MACHINE: &str = "arbiter/1";

/// A request: one [`crate::Arbiter`] method call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Read { cluster: String },
    Claim { cluster: String, epoch: u64, primary: NodeAddrs },
    AddMember { cluster: String, epoch: u64, primary_node: String, member: String },
    Publish { cluster: String, epoch: u64, primary_node: String, backup: Option<BackupInfo>, protected: bool },
}

/// The reply to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Read(Option<ClusterRecord>),
    Claim(Claim),
    Update(Update),
    Error(RemoteError),
}

/// An [`ArbiterError`] raised on the server, in a form that crosses the wire
/// and becomes the same variant on the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RemoteError {
    /// `os_code` lets the client rebuild the exact OS error (its text, e.g.
    /// "No space left on device", and its kind).
    Io {
        action: String,
        path: PathBuf,
        os_code: Option<i32>,
        message: String,
    },
    Rejected {
        cluster: String,
        reason: String,
    },
    InvalidEpoch {
        cluster: String,
        requested: u64,
        current: u64,
    },
    BadName {
        flag: String,
        name: String,
        reason: String,
    },
    Corrupt {
        path: PathBuf,
        reason: String,
    },
    Protocol {
        detail: String,
    },
}

impl RemoteError {
    pub fn from_error(e: &ArbiterError) -> Self {
        match e {
            ArbiterError::Io { action, path, cause: source } => RemoteError::Io {
                action: action.clone(),
                path: path.clone(),
                os_code: source.raw_os_error(),
                message: source.to_string(),
            },
            ArbiterError::Rejected { cluster, reason } => {
                RemoteError::Rejected { cluster: cluster.clone(), reason: reason.clone() }
            }
            ArbiterError::InvalidEpoch { cluster, requested, current } => {
                RemoteError::InvalidEpoch { cluster: cluster.clone(), requested: *requested, current: *current }
            }
            ArbiterError::BadName { flag, name, reason } => {
                RemoteError::BadName { flag: flag.clone(), name: name.clone(), reason: reason.clone() }
            }
            ArbiterError::Corrupt { path, reason } => RemoteError::Corrupt { path: path.clone(), reason: reason.clone() },
            other => RemoteError::Protocol { detail: other.to_string() },
        }
    }

    /// The error as the client reports it; `url` names the server.
    pub fn into_error(self, url: &str) -> ArbiterError {
        match self {
            RemoteError::Io { action, path, os_code, message } => {
                let source = match os_code {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::other(message),
                };
                ArbiterError::Io { action: format!("{action} (on the arbiter {url})"), path, cause: source }
            }
            RemoteError::Rejected { cluster, reason } => ArbiterError::Rejected { cluster, reason },
            RemoteError::InvalidEpoch { cluster, requested, current } => {
                ArbiterError::InvalidEpoch { cluster, requested, current }
            }
            RemoteError::BadName { flag, name, reason } => ArbiterError::BadName { flag, name, reason },
            RemoteError::Corrupt { path, reason } => ArbiterError::Corrupt { path, reason },
            RemoteError::Protocol { detail } => ArbiterError::Protocol { peer: url.to_string(), detail },
        }
    }
}

/// Why a connection could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("bad frame: {0}")]
    Wire(#[from] WireError),
    #[error("the peer closed the connection")]
    Closed,
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
}

impl ConnError {
    /// A read timeout: the caller may wait again (partial input is kept).
    pub fn is_timeout(&self) -> bool {
        matches!(self, ConnError::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

/// A blocking TCP stream that speaks frames.
#[derive(Debug)]
pub struct FrameConn {
    stream: TcpStream,
    /// Received bytes not yet decoded; kept across read timeouts.
    buf: Vec<u8>,
    dec: FrameDecoder,
}

impl FrameConn {
    pub fn new(stream: TcpStream) -> Self {
        FrameConn { stream, buf: Vec::new(), dec: FrameDecoder::new(FRAME_BYTES_MAX) }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Reads one whole frame; a timeout error leaves partial input buffered.
    pub fn read_frame(&mut self) -> Result<(FrameHeader, Vec<u8>), ConnError> {
        loop {
            if let Some((f, used)) = self.dec.decode(&self.buf)? {
                let out = (f.header, f.payload.to_vec());
                self.buf.drain(..used);
                return Ok(out);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ConnError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Like [`Self::read_frame`], but on a timeout asks `keep_waiting`
    /// whether to wait again.
    pub fn read_frame_while(&mut self, mut keep_waiting: impl FnMut() -> bool) -> Result<(FrameHeader, Vec<u8>), ConnError> {
        loop {
            match self.read_frame() {
                Err(e) if e.is_timeout() && keep_waiting() => continue,
                other => return other,
            }
        }
    }

    /// Writes all of `bytes`. On failure returns how many bytes had gone
    /// out, so the client knows whether its request may have been sent.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), (usize, io::Error)> {
        let mut done = 0;
        while done < bytes.len() {
            match self.stream.write(&bytes[done..]) {
                Ok(0) => return Err((done, io::ErrorKind::WriteZero.into())),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err((done, e)),
            }
        }
        Ok(())
    }

    /// Whether nothing has arrived unasked and the peer has not closed: a
    /// cached connection to a server that restarted fails this check, so the
    /// client reconnects before sending instead of losing a request.
    pub fn is_idle_and_open(&self) -> bool {
        if !self.buf.is_empty() || self.stream.set_nonblocking(true).is_err() {
            return false;
        }
        let r = self.stream.peek(&mut [0u8; 1]);
        let restored = self.stream.set_nonblocking(false).is_ok();
        restored && matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Runs the handshake to completion. `first` is what to send before
    /// reading (the initiator's hello; nothing for the acceptor).
    pub fn handshake(
        &mut self,
        hs: &mut Handshake,
        first: &[u8],
        mut keep_waiting: impl FnMut() -> bool,
    ) -> Result<Peer, ConnError> {
        self.write_all(first).map_err(|(_, e)| e)?;
        loop {
            let (header, payload) = self.read_frame_while(&mut keep_waiting)?;
            match hs.on_frame(Frame { header, payload: &payload })? {
                Step::Send(out) => self.write_all(&out).map_err(|(_, e)| e)?,
                Step::Done(out, peer) => {
                    self.write_all(&out).map_err(|(_, e)| e)?;
                    return Ok(peer);
                }
            }
        }
    }
}

/// Encodes a JSON message as one frame of `kind`.
pub fn frame_json<T: Serialize>(kind: Kind, msg: &T) -> Vec<u8> {
    let payload = serde_json::to_vec(msg).expect("plain structs always serialize");
    let mut out = Vec::with_capacity(payload.len() + understudy_wire::FRAME_HEADER_BYTES);
    encode(&mut out, FrameHeader { epoch: 0, seq: 0, kind }, &payload);
    out
}

/// A hello for either side of an arbiter connection, with fresh randomness.
pub fn hello(node: &str, purpose: Purpose) -> Hello {
    let mut r = [0u8; 24];
    getrandom::fill(&mut r).expect("the operating system's random source failed");
    let incarnation = u64::from_le_bytes(r[..8].try_into().expect("8 bytes"));
    let nonce = r[8..].try_into().expect("16 bytes");
    Hello {
        cluster: String::new(),
        node: node.to_string(),
        incarnation,
        purpose,
        machine: MACHINE.into(),
        nonce,
        client: String::new(),
        resume: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_readable_json() {
        let req = Request::Read { cluster: "c".into() };
        assert_eq!(serde_json::to_string(&req).unwrap(), r#"{"op":"read","cluster":"c"}"#);
        let rep = Reply::Read(None);
        assert_eq!(serde_json::to_string(&rep).unwrap(), r#"{"read":null}"#);
        let e = RemoteError::InvalidEpoch { cluster: "c".into(), requested: 5, current: 2 };
        let json = serde_json::to_string(&Reply::Error(e.clone())).unwrap();
        assert_eq!(json, r#"{"error":{"kind":"invalid_epoch","cluster":"c","requested":5,"current":2}}"#);
        assert_eq!(serde_json::from_str::<Reply>(&json).unwrap(), Reply::Error(e));
    }

    #[test]
    fn a_full_disk_crosses_the_wire_with_its_os_text() {
        let e = ArbiterError::io("write", "/d/c.json", io::Error::from_raw_os_error(28));
        let back = RemoteError::from_error(&e).into_error("understudy://h:1");
        let msg = back.to_string();
        assert!(matches!(back, ArbiterError::Io { .. }));
        assert!(msg.contains("No space left on device") && msg.contains("/d/c.json"), "{msg}");
    }
}
