//! # understudy-wire
//!
//! The bottom layer of understudy: how bytes look on every channel (the
//! logging channel between primary and backup, the snapshot stream of a join,
//! the built-in arbiter's protocol). Nothing here performs I/O; everything is
//! a pure function of bytes, so it can be property-tested and fuzzed.
//!
//! # Layout
//!
//! - [`frame`]: the frame `(length, crc32c, version, epoch, seq, kind, payload)`
//!   and an incremental decoder that enforces the frame size bound.
//! - [`msg`]: typed payloads (handshake, acks, heartbeats, snapshot chunks).
//! - [`entry`]: log entries inside an `Entries` frame, and the record of the
//!   nondeterministic values (`now`, `random`) an operation observed.
//! - [`auth`]: the shared-secret handshake (HMAC-SHA256 over both hellos).
//! - [`handshake`]: the handshake as a state machine without I/O.
//! - [`codec`]: varints and a bounds-checked reader used by all of the above.

#![forbid(unsafe_code)]

pub mod auth;
pub mod codec;
pub mod entry;
pub mod frame;
pub mod handshake;
pub mod msg;

pub use frame::{Frame, FrameDecoder, FrameHeader, Kind, FRAME_HEADER_BYTES, PROTOCOL_VERSION};

/// Everything that can be wrong with bytes received from a peer. A peer that
/// sends any of these is disconnected with the error as the logged reason;
/// the bytes never reach a machine (DESIGN §6).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("frame of {len} bytes exceeds the bound of {max} bytes (raise --frame-bytes-max on both replicas)")]
    FrameTooLarge { len: u64, max: u64 },
    #[error("frame checksum mismatch: header says {expected:#010x}, payload gives {actual:#010x} (corrupted frame)")]
    BadChecksum { expected: u32, actual: u32 },
    #[error("unsupported protocol version {got} (this build speaks version {PROTOCOL_VERSION})")]
    UnsupportedVersion { got: u8 },
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("frame length {0} is shorter than the fixed header")]
    ShortFrame(u32),
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
}

impl WireError {
    pub(crate) fn malformed(what: &'static str, detail: impl Into<String>) -> Self {
        WireError::Malformed { what, detail: detail.into() }
    }
}
