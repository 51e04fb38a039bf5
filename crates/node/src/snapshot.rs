//! State transfer on the wire, without I/O: the primary's stream of
//! snapshot frames (begin, chunks, end) from a machine's copy-on-write
//! snapshot, and the joiner's checks of that stream. The tokio runtime runs
//! both on threads; the simulator runs them in its steps.

use understudy_core::{ConnId, Epoch, Seq, SnapshotWriter};
use understudy_wire::frame::{encode_with, FrameHeader, Kind};
use understudy_wire::handshake::HandshakeError;
use understudy_wire::msg::{Reject, RejectCode, SnapshotBegin, SnapshotChunk, SnapshotEnd};
use understudy_wire::FRAME_HEADER_BYTES;

use crate::framed::ChanError;

/// A joiner's snapshot, taken when its join was accepted, waiting for the
/// joiner's snapshot connection.
pub struct PendingSnapshot {
    /// The joiner's logging channel: the snapshot dies with it.
    pub conn: ConnId,
    pub node: String,
    pub incarnation: u64,
    pub seq: Seq,
    pub writer: Box<dyn SnapshotWriter>,
}

/// The frames of one snapshot, produced one at a time.
pub struct SnapshotStream {
    writer: Box<dyn SnapshotWriter>,
    epoch: Epoch,
    seq: Seq,
    chunk_bytes: usize,
    chunks: u32,
    bytes: u64,
    state: StreamState,
}

#[derive(PartialEq, Eq)]
enum StreamState {
    Begin,
    Chunks,
    Done,
}

impl SnapshotStream {
    pub fn new(writer: Box<dyn SnapshotWriter>, epoch: Epoch, seq: Seq, chunk_bytes: usize) -> Self {
        SnapshotStream { writer, epoch, seq, chunk_bytes, chunks: 0, bytes: 0, state: StreamState::Begin }
    }

    pub fn bytes_hint(&self) -> u64 {
        self.writer.bytes_hint()
    }

    fn header(&self, kind: Kind) -> FrameHeader {
        FrameHeader { epoch: self.epoch, seq: self.seq, kind }
    }

    /// The next frame of the stream, or None after `SnapshotEnd`.
    pub fn next_frame(&mut self) -> Option<Vec<u8>> {
        match self.state {
            StreamState::Begin => {
                let mut frame = Vec::new();
                let hint = self.writer.bytes_hint();
                encode_with(&mut frame, self.header(Kind::SnapshotBegin), |o| SnapshotBegin { bytes_hint: hint }.encode(o));
                self.state = StreamState::Chunks;
                Some(frame)
            }
            StreamState::Chunks => {
                let mut frame = Vec::with_capacity(self.chunk_bytes + FRAME_HEADER_BYTES + 64);
                let (mut more, mut added) = (false, 0);
                let (index, header, writer, max) =
                    (self.chunks, self.header(Kind::SnapshotChunk), &mut self.writer, self.chunk_bytes);
                encode_with(&mut frame, header, |o| {
                    SnapshotChunk::encode_header(index, o);
                    let before = o.len();
                    more = writer.next_chunk(o, max);
                    added = o.len() - before;
                });
                if more {
                    self.chunks += 1;
                    self.bytes += added as u64;
                    return Some(frame);
                }
                debug_assert_eq!(added, 0, "a finished snapshot writer appends nothing");
                frame.clear();
                let end = SnapshotEnd { chunks: self.chunks, bytes: self.bytes };
                encode_with(&mut frame, self.header(Kind::SnapshotEnd), |o| end.encode(o));
                self.state = StreamState::Done;
                Some(frame)
            }
            StreamState::Done => None,
        }
    }
}

/// The joiner's side: checks a snapshot stream frame by frame.
pub struct SnapshotLoad {
    seq: Seq,
    began: bool,
    chunks: u32,
    /// Bytes of snapshot data received.
    pub bytes: u64,
    /// The primary's estimate of the total, from `SnapshotBegin`.
    pub hint: u64,
}

/// What one frame of a snapshot stream was.
pub enum LoadStep<'a> {
    Began,
    /// Data to restore, in order.
    Chunk(&'a [u8]),
    /// The stream is complete and checked.
    End,
}

impl SnapshotLoad {
    pub fn new(seq: Seq) -> Self {
        SnapshotLoad { seq, began: false, chunks: 0, bytes: 0, hint: 0 }
    }

    pub fn on_frame<'a>(&mut self, h: FrameHeader, p: &'a [u8]) -> Result<LoadStep<'a>, ChanError> {
        if !self.began {
            if h.kind != Kind::SnapshotBegin || h.seq != self.seq {
                return Err(ChanError::Protocol(format!(
                    "expected the snapshot at seq {}, got {:?} at seq {}",
                    self.seq, h.kind, h.seq
                )));
            }
            self.began = true;
            self.hint = SnapshotBegin::decode(p)?.bytes_hint;
            return Ok(LoadStep::Began);
        }
        match h.kind {
            Kind::SnapshotChunk => {
                let c = SnapshotChunk::decode(p)?;
                if c.index != self.chunks {
                    return Err(ChanError::Protocol(format!(
                        "snapshot chunk {} arrived where {} was expected",
                        c.index, self.chunks
                    )));
                }
                self.chunks += 1;
                self.bytes += c.data.len() as u64;
                Ok(LoadStep::Chunk(c.data))
            }
            Kind::SnapshotEnd => {
                let end = SnapshotEnd::decode(p)?;
                if end.chunks != self.chunks || end.bytes != self.bytes {
                    return Err(ChanError::Protocol(format!(
                        "snapshot incomplete: got {} chunks / {} bytes, the primary sent {} / {}",
                        self.chunks, self.bytes, end.chunks, end.bytes
                    )));
                }
                Ok(LoadStep::End)
            }
            k => Err(ChanError::Protocol(format!("unexpected {k:?} in a snapshot stream"))),
        }
    }
}

/// The primary's answer to a join, as the first frame on the channel:
/// the snapshot seq it accepted the join at and whether it is a partial
/// catch-up (no snapshot: the joiner's own state is at that seq), or why
/// it refused.
pub fn join_answer(h: FrameHeader, payload: &[u8]) -> Result<(Seq, bool), JoinRefused> {
    match h.kind {
        Kind::JoinAccepted => Ok((h.seq, payload == crate::disk_state::PARTIAL)),
        Kind::Reject => match Reject::decode(payload) {
            Ok(r) => Err(JoinRefused { error: ChanError::Handshake(HandshakeError::Rejected(r)), peer_epoch: Some(h.epoch) }),
            Err(e) => Err(JoinRefused { error: e.into(), peer_epoch: Some(h.epoch) }),
        },
        k => Err(JoinRefused { error: ChanError::Protocol(format!("expected JoinAccepted, got {k:?}")), peer_epoch: None }),
    }
}

/// A join attempt that failed, with what the core needs to decide.
#[derive(Debug)]
pub struct JoinRefused {
    pub error: ChanError,
    /// The epoch the refusing node holds, when it said.
    pub peer_epoch: Option<Epoch>,
}

impl JoinRefused {
    /// The refusal's code, for the core (None: unreachable, timed out…).
    pub fn code(&self) -> Option<RejectCode> {
        match &self.error {
            ChanError::Handshake(HandshakeError::Rejected(r)) => Some(r.code),
            // The primary's proof of the secret did not verify here.
            ChanError::Handshake(HandshakeError::AuthFailed) => Some(RejectCode::AuthFailed),
            _ => None,
        }
    }
}

impl From<ChanError> for JoinRefused {
    fn from(error: ChanError) -> Self {
        JoinRefused { error, peer_epoch: None }
    }
}
