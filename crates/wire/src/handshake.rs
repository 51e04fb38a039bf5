//! The handshake as a state machine without I/O, so the logging channel
//! (tokio) and the arbiter client (blocking sockets) drive the same code.
//!
//! ```text
//! initiator                         acceptor
//!   Hello_i  ───────────────────────▶
//!            ◀─────────────────────── Hello_a, Proof_a   (acceptor proves first)
//!   Proof_i  ───────────────────────▶                    (both verified: done)
//! ```
//!
//! A proof is HMAC-SHA256 over both hellos ([`crate::auth`]). Either side may
//! instead answer with a `Reject` frame carrying a reason.

use crate::auth::{prove, verify, Side};
use crate::frame::{encode, encode_with, Frame, FrameHeader, Kind};
use crate::msg::{Hello, Proof, Reject, RejectCode};
use crate::WireError;

/// What the other side said about itself, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub hello: Hello,
    /// The epoch in the peer's hello frame header.
    pub epoch: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("peer refused the connection ({:?}): {}", .0.code, .0.message)]
    Rejected(Reject),
    #[error("peer failed to prove the shared secret (check --secret-file on both sides)")]
    AuthFailed,
    #[error("unexpected {got:?} frame during the handshake (expected {expected:?})")]
    Unexpected { got: Kind, expected: Kind },
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// What the driver must do after feeding a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Write these bytes, keep reading.
    Send(Vec<u8>),
    /// Write these bytes (possibly empty); the peer is authenticated.
    Done(Vec<u8>, Peer),
}

#[derive(Debug)]
enum State {
    InitiatorAwaitHello,
    InitiatorAwaitProof { peer: Peer, peer_hello: Vec<u8> },
    AcceptorAwaitHello,
    AcceptorAwaitProof { peer: Peer, peer_hello: Vec<u8> },
    Finished,
}

/// One side of one handshake.
#[derive(Debug)]
pub struct Handshake {
    secret: Vec<u8>,
    my_hello: Hello,
    my_hello_bytes: Vec<u8>,
    epoch: u64,
    state: State,
}

fn hello_bytes(h: &Hello) -> Vec<u8> {
    let mut v = Vec::new();
    h.encode(&mut v);
    v
}

fn frame(kind: Kind, epoch: u64, payload: &[u8], out: &mut Vec<u8>) {
    encode(out, FrameHeader { epoch, seq: 0, kind }, payload);
}

impl Handshake {
    /// Starts a handshake as the connecting side; returns the bytes to send.
    pub fn initiator(secret: &[u8], hello: Hello, epoch: u64) -> (Self, Vec<u8>) {
        let my_hello_bytes = hello_bytes(&hello);
        let mut out = Vec::new();
        frame(Kind::Hello, epoch, &my_hello_bytes, &mut out);
        let hs = Handshake { secret: secret.to_vec(), my_hello: hello, my_hello_bytes, epoch, state: State::InitiatorAwaitHello };
        (hs, out)
    }

    /// Starts a handshake as the listening side; it speaks once it has heard.
    pub fn acceptor(secret: &[u8], hello: Hello, epoch: u64) -> Self {
        let my_hello_bytes = hello_bytes(&hello);
        Handshake { secret: secret.to_vec(), my_hello: hello, my_hello_bytes, epoch, state: State::AcceptorAwaitHello }
    }

    pub fn my_hello(&self) -> &Hello {
        &self.my_hello
    }

    /// Feeds one frame received from the peer.
    pub fn on_frame(&mut self, f: Frame<'_>) -> Result<Step, HandshakeError> {
        if f.header.kind == Kind::Reject {
            return Err(HandshakeError::Rejected(Reject::decode(f.payload)?));
        }
        match std::mem::replace(&mut self.state, State::Finished) {
            State::AcceptorAwaitHello => {
                expect(f, Kind::Hello)?;
                let peer = Peer { hello: Hello::decode(f.payload)?, epoch: f.header.epoch };
                let peer_hello = f.payload.to_vec();
                let mut out = Vec::new();
                frame(Kind::Hello, self.epoch, &self.my_hello_bytes, &mut out);
                let mac = prove(&self.secret, Side::Acceptor, &peer_hello, &self.my_hello_bytes);
                encode_with(&mut out, FrameHeader { epoch: self.epoch, seq: 0, kind: Kind::Proof }, |o| Proof { mac }.encode(o));
                self.state = State::AcceptorAwaitProof { peer, peer_hello };
                Ok(Step::Send(out))
            }
            State::InitiatorAwaitHello => {
                // The acceptor's hello and proof arrive as two frames; the
                // hello is kept until the proof is there.
                let peer = Peer { hello: Hello::decode(f.payload)?, epoch: f.header.epoch };
                self.state = State::InitiatorAwaitProof { peer, peer_hello: f.payload.to_vec() };
                Ok(Step::Send(Vec::new()))
            }
            State::InitiatorAwaitProof { peer, peer_hello } => {
                expect(f, Kind::Proof)?;
                let proof = Proof::decode(f.payload)?;
                if !verify(&self.secret, Side::Acceptor, &self.my_hello_bytes, &peer_hello, &proof.mac) {
                    return Err(HandshakeError::AuthFailed);
                }
                let mac = prove(&self.secret, Side::Initiator, &self.my_hello_bytes, &peer_hello);
                let mut out = Vec::new();
                encode_with(&mut out, FrameHeader { epoch: self.epoch, seq: 0, kind: Kind::Proof }, |o| Proof { mac }.encode(o));
                Ok(Step::Done(out, peer))
            }
            State::AcceptorAwaitProof { peer, peer_hello } => {
                expect(f, Kind::Proof)?;
                let proof = Proof::decode(f.payload)?;
                if !verify(&self.secret, Side::Initiator, &peer_hello, &self.my_hello_bytes, &proof.mac) {
                    return Err(HandshakeError::AuthFailed);
                }
                Ok(Step::Done(Vec::new(), peer))
            }
            State::Finished => Err(HandshakeError::Unexpected { got: f.header.kind, expected: Kind::Reject }),
        }
    }

    /// A `Reject` frame to send when refusing a peer.
    pub fn reject(epoch: u64, code: RejectCode, message: impl Into<String>) -> Vec<u8> {
        let mut out = Vec::new();
        encode_with(&mut out, FrameHeader { epoch, seq: 0, kind: Kind::Reject }, |o| {
            Reject { code, message: message.into() }.encode(o)
        });
        out
    }
}

fn expect(f: Frame<'_>, kind: Kind) -> Result<(), HandshakeError> {
    if f.header.kind != kind {
        return Err(HandshakeError::Unexpected { got: f.header.kind, expected: kind });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameDecoder;
    use crate::msg::Purpose;

    fn hello(node: &str, purpose: Purpose) -> Hello {
        Hello {
            cluster: "c".into(),
            node: node.into(),
            incarnation: 1,
            purpose,
            machine: "kv/1".into(),
            nonce: [node.as_bytes()[0]; 16],
            client: format!("{node}:6379"),
            resume: None,
        }
    }

    /// Runs both sides against each other; returns what each learned.
    fn run(secret_i: &[u8], secret_a: &[u8]) -> (Result<Peer, HandshakeError>, Result<Peer, HandshakeError>) {
        let dec = FrameDecoder::new(1 << 16);
        let (mut i, mut to_a) = Handshake::initiator(secret_i, hello("i", Purpose::Join), 3);
        let mut a = Handshake::acceptor(secret_a, hello("a", Purpose::Accept), 5);
        let (mut done_i, mut done_a) = (None, None);
        let mut to_i: Vec<u8> = Vec::new();
        for _ in 0..6 {
            while let Some((f, used)) = dec.decode(&to_a).unwrap() {
                let r = a.on_frame(f);
                to_a.drain(..used);
                match r {
                    Ok(Step::Send(b)) => to_i.extend(b),
                    Ok(Step::Done(b, p)) => {
                        to_i.extend(b);
                        done_a = Some(Ok(p));
                    }
                    Err(e) => {
                        done_a = Some(Err(e));
                        to_a.clear();
                    }
                }
            }
            while let Some((f, used)) = dec.decode(&to_i).unwrap() {
                let r = i.on_frame(f);
                to_i.drain(..used);
                match r {
                    Ok(Step::Send(b)) => to_a.extend(b),
                    Ok(Step::Done(b, p)) => {
                        to_a.extend(b);
                        done_i = Some(Ok(p));
                    }
                    Err(e) => {
                        done_i = Some(Err(e));
                        to_i.clear();
                    }
                }
            }
        }
        (done_i.expect("initiator finished"), done_a.unwrap_or(Err(HandshakeError::AuthFailed)))
    }

    #[test]
    fn same_secret_authenticates_both_ways() {
        let (i, a) = run(b"k", b"k");
        let (i, a) = (i.unwrap(), a.unwrap());
        assert_eq!(i.hello.node, "a");
        assert_eq!(i.epoch, 5);
        assert_eq!(a.hello.node, "i");
        assert_eq!(a.epoch, 3);
    }

    #[test]
    fn different_secrets_fail_on_the_side_that_checks_first() {
        let (i, a) = run(b"k", b"other");
        assert_eq!(i.unwrap_err(), HandshakeError::AuthFailed);
        assert!(a.is_err(), "the acceptor never authenticates a peer that did not prove");
    }

    #[test]
    fn reject_frame_surfaces_the_reason() {
        let (mut i, _) = Handshake::initiator(b"k", hello("i", Purpose::Join), 1);
        let bytes = Handshake::reject(9, RejectCode::WrongCluster, "this is cluster x");
        let (f, _) = FrameDecoder::new(1 << 16).decode(&bytes).unwrap().unwrap();
        match i.on_frame(f) {
            Err(HandshakeError::Rejected(r)) => {
                assert_eq!(r.code, RejectCode::WrongCluster);
                assert_eq!(r.message, "this is cluster x");
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn out_of_order_frame_is_an_error() {
        let mut a = Handshake::acceptor(b"k", hello("a", Purpose::Accept), 1);
        let mut bytes = Vec::new();
        encode(&mut bytes, FrameHeader { epoch: 1, seq: 0, kind: Kind::Proof }, &[0; 32]);
        let (f, _) = FrameDecoder::new(1 << 16).decode(&bytes).unwrap().unwrap();
        assert!(matches!(a.on_frame(f), Err(HandshakeError::Unexpected { got: Kind::Proof, expected: Kind::Hello })));
    }
}
