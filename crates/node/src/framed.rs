//! Frame I/O over tokio streams: a reader that decodes frames in place from
//! one growing buffer, and the async driver of the sans-I/O handshake.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use understudy_wire::handshake::{Handshake, HandshakeError, Peer, Step};
use understudy_wire::msg::RejectCode;
use understudy_wire::{FrameDecoder, FrameHeader, WireError, FRAME_HEADER_BYTES};

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ChanError {
    #[error("connection closed by peer")]
    Eof,
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("bad frame: {0}")]
    Wire(#[from] WireError),
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("protocol: {0}")]
    Protocol(String),
}

/// Buffered frame reader. Frames are decoded in place; the buffer is
/// compacted when most of it has been consumed.
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    dec: FrameDecoder,
}

const READ_CHUNK: usize = 64 << 10;

impl FrameReader {
    pub fn new(frame_bytes_max: u64) -> Self {
        FrameReader { buf: Vec::with_capacity(READ_CHUNK), start: 0, dec: FrameDecoder::new(frame_bytes_max) }
    }

    /// Reads more bytes from `r`. Returns `Err(Eof)` at end of stream.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<(), ChanError> {
        if self.start > 0 && (self.start == self.buf.len() || self.start > self.buf.capacity() / 2) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        // Room for the rest of the frame being received (its declared length
        // is capped by the frame bound, so a hostile length cannot make us
        // allocate), and at least one read chunk.
        let have = self.buf.len() - self.start;
        let declared = self.dec.needed(&self.buf[self.start..]).unwrap_or(0).min(self.dec.frame_bytes_max as usize);
        let want_spare = READ_CHUNK.max(declared.saturating_sub(have));
        if self.buf.capacity() - self.buf.len() < want_spare {
            self.buf.reserve(want_spare);
        }
        let n = r.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(ChanError::Eof);
        }
        Ok(())
    }

    /// Appends bytes received by other means (the simulator's network).
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame already buffered, if any.
    pub fn next_frame(&mut self) -> Result<Option<(FrameHeader, &[u8])>, WireError> {
        let Some((f, used)) = self.dec.decode(&self.buf[self.start..])? else { return Ok(None) };
        let header = f.header;
        let (p0, p1) = (self.start + FRAME_HEADER_BYTES, self.start + used);
        self.start += used;
        Ok(Some((header, &self.buf[p0..p1])))
    }

    /// Waits for and returns the next frame (copying its payload).
    pub async fn read_frame<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<(FrameHeader, Vec<u8>), ChanError> {
        loop {
            if let Some((h, p)) = self.next_frame()? {
                return Ok((h, p.to_vec()));
            }
            self.fill(r).await?;
        }
    }
}

/// Runs a handshake to completion within `limit`. Bytes that arrive after
/// it stay in `reader`.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    reader: &mut FrameReader,
    mut hs: Handshake,
    first: Vec<u8>,
    limit: Duration,
) -> Result<Peer, ChanError> {
    let run = async {
        if !first.is_empty() {
            stream.write_all(&first).await?;
        }
        loop {
            let (h, payload) = reader.read_frame(stream).await?;
            let frame = understudy_wire::Frame { header: h, payload: &payload };
            let step = match hs.on_frame(frame) {
                Err(HandshakeError::AuthFailed) => {
                    // Tell the other side too, so both logs say why.
                    let reject = Handshake::reject(0, RejectCode::AuthFailed, "shared secret mismatch: check --secret-file");
                    let _ = stream.write_all(&reject).await;
                    return Err(HandshakeError::AuthFailed.into());
                }
                other => other?,
            };
            match step {
                Step::Send(bytes) => {
                    if !bytes.is_empty() {
                        stream.write_all(&bytes).await?;
                    }
                }
                Step::Done(bytes, peer) => {
                    if !bytes.is_empty() {
                        stream.write_all(&bytes).await?;
                    }
                    return Ok(peer);
                }
            }
        }
    };
    match tokio::time::timeout(limit, run).await {
        Ok(r) => r,
        Err(_) => Err(ChanError::Timeout(limit)),
    }
}

/// Fresh randomness for nonces and incarnations.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the OS random source failed");
    b
}

pub fn random_u64() -> u64 {
    u64::from_le_bytes(random_bytes::<8>())
}
