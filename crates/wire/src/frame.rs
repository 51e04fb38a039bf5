//! The frame: `(length, crc32c, version, epoch, seq, kind, payload)`.
//!
//! ```text
//! offset  size  field
//! 0       4     length   u32 LE: bytes after the crc field (= 18 + payload)
//! 4       4     crc32c   u32 LE: over every byte after this field
//! 8       1     version  PROTOCOL_VERSION
//! 9       8     epoch    u64 LE: the sender's epoch
//! 17      8     seq      u64 LE: meaning depends on kind (first seq of a batch, ...)
//! 25      1     kind     see [`Kind`]
//! 26      ...   payload
//! ```
//!
//! The checksum covers the version, epoch, seq and kind as well as the
//! payload, so a flipped bit anywhere after the length is caught. A flipped
//! bit in the length either produces a checksum mismatch (the decoder reads a
//! different span) or trips the size bound.

use crate::WireError;

/// Version of the frame layout and of every message in [`crate::msg`].
pub const PROTOCOL_VERSION: u8 = 1;
/// Bytes before the payload.
pub const FRAME_HEADER_BYTES: usize = 26;
/// Bytes covered by `length` that are not payload.
const COVERED_HEADER_BYTES: u32 = 18;

/// What a frame carries. Unknown kinds are a decode error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Handshake: who I am, what I want, a nonce ([`crate::msg::Hello`]).
    Hello = 1,
    /// Handshake: HMAC over both hellos ([`crate::msg::Proof`]).
    Proof = 2,
    /// Refusal with a reason; the connection closes after it.
    Reject = 3,
    /// A batch of log entries; `seq` is the first entry's seq.
    Entries = 10,
    /// Cumulative acknowledgement: received and executed seq.
    Ack = 11,
    /// Liveness when there is nothing else to send.
    Heartbeat = 12,
    /// Primary → backup: the arbiter lists you as a member of this epoch.
    InSync = 13,
    /// Primary → joiner, first frame after the handshake: the join is
    /// accepted; `seq` is the seq of the snapshot the joiner will receive, so
    /// the first entry on the channel is `seq + 1`.
    JoinAccepted = 14,
    /// Primary → in-sync backup, planned switchover: every entry is on the
    /// channel and this primary takes no more requests; claim the next
    /// epoch now, without waiting for a failure timeout.
    Handover = 15,
    /// Start of a snapshot stream; `seq` is the snapshot's seq.
    SnapshotBegin = 20,
    /// One checksummed chunk of a snapshot.
    SnapshotChunk = 21,
    /// End of a snapshot stream with totals to verify.
    SnapshotEnd = 22,
    /// A request to the built-in arbiter (JSON payload).
    ArbiterRequest = 30,
    /// A reply from the built-in arbiter (JSON payload).
    ArbiterReply = 31,
}

impl Kind {
    pub fn from_u8(b: u8) -> Result<Kind, WireError> {
        Ok(match b {
            1 => Kind::Hello,
            2 => Kind::Proof,
            3 => Kind::Reject,
            10 => Kind::Entries,
            11 => Kind::Ack,
            12 => Kind::Heartbeat,
            13 => Kind::InSync,
            14 => Kind::JoinAccepted,
            15 => Kind::Handover,
            20 => Kind::SnapshotBegin,
            21 => Kind::SnapshotChunk,
            22 => Kind::SnapshotEnd,
            30 => Kind::ArbiterRequest,
            31 => Kind::ArbiterReply,
            other => return Err(WireError::UnknownKind(other)),
        })
    }
}

/// The fixed part of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub epoch: u64,
    pub seq: u64,
    pub kind: Kind,
}

/// A decoded frame borrowing its payload from the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub header: FrameHeader,
    pub payload: &'a [u8],
}

/// Appends one frame to `out`. The payload is written by `fill`, so callers
/// encode straight into the send buffer with no intermediate copy.
pub fn encode_with(out: &mut Vec<u8>, header: FrameHeader, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_BYTES]);
    fill(out);
    seal(out, start, header);
}

/// Completes a frame whose header space was reserved at `start` and whose
/// payload runs to the end of `out`: writes the header and the checksum.
pub fn seal(out: &mut [u8], start: usize, header: FrameHeader) {
    let payload_len = out.len() - start - FRAME_HEADER_BYTES;
    let len = u32::try_from(payload_len as u64 + u64::from(COVERED_HEADER_BYTES))
        .expect("frame payload exceeds u32; callers bound their batches far below this");
    let h = &mut out[start..start + FRAME_HEADER_BYTES];
    h[0..4].copy_from_slice(&len.to_le_bytes());
    h[8] = PROTOCOL_VERSION;
    h[9..17].copy_from_slice(&header.epoch.to_le_bytes());
    h[17..25].copy_from_slice(&header.seq.to_le_bytes());
    h[25] = header.kind as u8;
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Appends one frame with the given payload.
pub fn encode(out: &mut Vec<u8>, header: FrameHeader, payload: &[u8]) {
    encode_with(out, header, |o| o.extend_from_slice(payload));
}

/// Incremental decoder: feed it the receive buffer, it returns whole frames.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    /// Largest whole frame (header included) accepted, in bytes.
    pub frame_bytes_max: u64,
}

impl FrameDecoder {
    pub fn new(frame_bytes_max: u64) -> Self {
        assert!(frame_bytes_max >= FRAME_HEADER_BYTES as u64);
        FrameDecoder { frame_bytes_max }
    }

    /// How many bytes the next frame needs in total, if its length prefix is
    /// already in `buf` (lets readers size their buffer once).
    pub fn needed(&self, buf: &[u8]) -> Option<usize> {
        if buf.len() < 4 {
            return None;
        }
        let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
        Some(len as usize + 8)
    }

    /// Decodes the first frame of `buf`. `Ok(None)` means more bytes are
    /// needed. On success returns the frame and the number of bytes it used.
    pub fn decode<'a>(&self, buf: &'a [u8]) -> Result<Option<(Frame<'a>, usize)>, WireError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
        let total = u64::from(len) + 8;
        if total > self.frame_bytes_max {
            return Err(WireError::FrameTooLarge { len: total, max: self.frame_bytes_max });
        }
        if len < COVERED_HEADER_BYTES {
            return Err(WireError::ShortFrame(len));
        }
        let total = total as usize;
        if buf.len() < total {
            return Ok(None);
        }
        let expected = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
        let actual = crc32c::crc32c(&buf[8..total]);
        if expected != actual {
            return Err(WireError::BadChecksum { expected, actual });
        }
        if buf[8] != PROTOCOL_VERSION {
            return Err(WireError::UnsupportedVersion { got: buf[8] });
        }
        let epoch = u64::from_le_bytes(buf[9..17].try_into().expect("8 bytes"));
        let seq = u64::from_le_bytes(buf[17..25].try_into().expect("8 bytes"));
        let kind = Kind::from_u8(buf[25])?;
        Ok(Some((Frame { header: FrameHeader { epoch, seq, kind }, payload: &buf[FRAME_HEADER_BYTES..total] }, total)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KINDS: [Kind; 14] = [
        Kind::Hello,
        Kind::Proof,
        Kind::Reject,
        Kind::Entries,
        Kind::Ack,
        Kind::Heartbeat,
        Kind::InSync,
        Kind::JoinAccepted,
        Kind::Handover,
        Kind::SnapshotBegin,
        Kind::SnapshotChunk,
        Kind::SnapshotEnd,
        Kind::ArbiterRequest,
        Kind::ArbiterReply,
    ];

    fn arb_header() -> impl Strategy<Value = FrameHeader> {
        (any::<u64>(), any::<u64>(), 0..KINDS.len()).prop_map(|(epoch, seq, k)| FrameHeader { epoch, seq, kind: KINDS[k] })
    }

    proptest! {
        /// Any sequence of frames, split at any point, decodes back to itself.
        #[test]
        fn roundtrip_split_anywhere(
            frames in proptest::collection::vec((arb_header(), proptest::collection::vec(any::<u8>(), 0..300)), 1..8),
            split in any::<prop::sample::Index>(),
        ) {
            let mut buf = Vec::new();
            for (h, p) in &frames { encode(&mut buf, *h, p); }
            let dec = FrameDecoder::new(1 << 20);
            let cut = split.index(buf.len() + 1);
            // A prefix never yields a frame that was not fully present.
            let mut off = 0;
            let mut got = Vec::new();
            while let Some((f, used)) = dec.decode(&buf[off..cut]).unwrap() {
                got.push((f.header, f.payload.to_vec()));
                off += used;
            }
            while let Some((f, used)) = dec.decode(&buf[off..]).unwrap() {
                got.push((f.header, f.payload.to_vec()));
                off += used;
            }
            prop_assert_eq!(off, buf.len());
            prop_assert_eq!(got, frames);
        }

        /// Flipping any single bit after the length prefix is detected.
        #[test]
        fn any_bit_flip_is_detected(
            h in arb_header(),
            payload in proptest::collection::vec(any::<u8>(), 0..200),
            bit in any::<prop::sample::Index>(),
        ) {
            let mut buf = Vec::new();
            encode(&mut buf, h, &payload);
            let nbits = (buf.len() - 4) * 8;
            let b = bit.index(nbits);
            buf[4 + b / 8] ^= 1 << (b % 8);
            let r = FrameDecoder::new(1 << 20).decode(&buf);
            prop_assert!(r.is_err(), "flip of bit {} went unnoticed: {:?}", b, r);
        }

        /// Arbitrary bytes never panic the decoder, and never make it claim a
        /// frame longer than the input.
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(Some((_, used))) = FrameDecoder::new(1 << 16).decode(&data) {
                prop_assert!(used <= data.len());
            }
        }
    }

    #[test]
    fn oversized_frame_names_the_bound_and_flag() {
        let mut buf = Vec::new();
        encode(&mut buf, FrameHeader { epoch: 1, seq: 1, kind: Kind::Entries }, &[0u8; 100]);
        let err = FrameDecoder::new(64).decode(&buf).unwrap_err();
        assert_eq!(err, WireError::FrameTooLarge { len: 126, max: 64 });
        assert!(err.to_string().contains("--frame-bytes-max"));
    }

    #[test]
    fn header_layout_is_stable() {
        let mut buf = Vec::new();
        encode(&mut buf, FrameHeader { epoch: 7, seq: 9, kind: Kind::Ack }, b"xy");
        assert_eq!(buf.len(), FRAME_HEADER_BYTES + 2);
        assert_eq!(&buf[0..4], &20u32.to_le_bytes());
        assert_eq!(buf[8], PROTOCOL_VERSION);
        assert_eq!(&buf[9..17], &7u64.to_le_bytes());
        assert_eq!(&buf[17..25], &9u64.to_le_bytes());
        assert_eq!(buf[25], Kind::Ack as u8);
        assert_eq!(&buf[26..], b"xy");
    }

    #[test]
    fn wrong_version_is_rejected() {
        let mut buf = Vec::new();
        encode(&mut buf, FrameHeader { epoch: 1, seq: 1, kind: Kind::Ack }, b"");
        buf[8] = 99;
        let crc = crc32c::crc32c(&buf[8..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(FrameDecoder::new(1024).decode(&buf).unwrap_err(), WireError::UnsupportedVersion { got: 99 });
    }
}
