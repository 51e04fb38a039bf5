//! Typed payloads of the non-entry frames. Each has `encode` (append to a
//! buffer) and `decode` (exact: trailing bytes are an error).

use crate::codec::{put_str, put_varint, Reader};
use crate::WireError;

/// Why a connection was opened; part of the authenticated hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Purpose {
    /// A node asking the primary to become its backup (logging channel).
    Join = 1,
    /// The bulk snapshot stream of a join, a second connection beside the
    /// logging channel so a large state never delays entries or heartbeats.
    Snapshot = 2,
    /// A client of the built-in arbiter.
    Arbiter = 3,
    /// The answering side of any handshake.
    Accept = 4,
    /// An operator's `understudy switchover`: the primary hands over to its
    /// in-sync backup and rejoins it as backup.
    Switchover = 5,
}

impl Purpose {
    fn from_u8(b: u8) -> Result<Self, WireError> {
        Ok(match b {
            1 => Purpose::Join,
            2 => Purpose::Snapshot,
            3 => Purpose::Arbiter,
            4 => Purpose::Accept,
            5 => Purpose::Switchover,
            _ => return Err(WireError::malformed("hello", format!("unknown purpose {b}"))),
        })
    }
}

/// First frame each side sends. The epoch travels in the frame header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub cluster: String,
    pub node: String,
    /// Random per process start: tells a restarted node from its old self.
    pub incarnation: u64,
    pub purpose: Purpose,
    /// Fingerprint of the machine and its configuration ("kv/1",
    /// "wasm/<digest>"). Replicas whose machines differ refuse to pair.
    pub machine: String,
    /// Fresh randomness for the HMAC proof (prevents replaying a handshake).
    pub nonce: [u8; 16],
    /// The sender's client address as published (`--advertise-client`), so
    /// a primary can name its backup to clients (INFO, ROLE); empty when it
    /// has none. Last and optional on the wire: a hello without it decodes.
    pub client: String,
    /// A joiner that holds a state from its disk: (epoch, seq) of the last
    /// entry it holds, so the primary may send only what follows (partial
    /// catch-up) instead of a snapshot. Optional on the wire, after
    /// `client`.
    pub resume: Option<(u64, u64)>,
}

impl Hello {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_str(out, &self.cluster);
        put_str(out, &self.node);
        out.extend_from_slice(&self.incarnation.to_le_bytes());
        out.push(self.purpose as u8);
        put_str(out, &self.machine);
        out.extend_from_slice(&self.nonce);
        put_str(out, &self.client);
        if let Some((epoch, seq)) = self.resume {
            out.extend_from_slice(&epoch.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
        }
    }

    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf, "hello");
        let cluster = r.string()?;
        let node = r.string()?;
        let incarnation = r.u64()?;
        let purpose = Purpose::from_u8(r.u8()?)?;
        let machine = r.string()?;
        let nonce = r.take(16)?.try_into().expect("16 bytes");
        let client = if r.remaining() > 0 { r.string()? } else { String::new() };
        let resume = if r.remaining() > 0 { Some((r.u64()?, r.u64()?)) } else { None };
        r.finish()?;
        Ok(Hello { cluster, node, incarnation, purpose, machine, nonce, client, resume })
    }
}

/// HMAC-SHA256 proof of knowing the shared secret (see [`crate::auth`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub mac: [u8; 32],
}

impl Proof {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.mac);
    }
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf, "proof");
        let mac = r.take(32)?.try_into().expect("32 bytes");
        r.finish()?;
        Ok(Proof { mac })
    }
}

/// Why a peer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RejectCode {
    /// The peer belongs to another cluster.
    WrongCluster = 1,
    /// The HMAC proof did not verify: wrong or missing `--secret-file`.
    AuthFailed = 2,
    /// The peer's epoch is older than ours.
    StaleEpoch = 3,
    /// We are not the primary (any more).
    NotPrimary = 4,
    /// We already have a backup or a join in progress.
    Busy = 5,
    /// The machines (or their configurations) differ.
    MachineMismatch = 6,
    /// The peer broke the protocol.
    Protocol = 7,
    /// A live node of the cluster already goes by the joiner's `--node`
    /// name (the primary itself, or its backup).
    NameInUse = 8,
}

impl RejectCode {
    fn from_u8(b: u8) -> Result<Self, WireError> {
        Ok(match b {
            1 => RejectCode::WrongCluster,
            2 => RejectCode::AuthFailed,
            3 => RejectCode::StaleEpoch,
            4 => RejectCode::NotPrimary,
            5 => RejectCode::Busy,
            6 => RejectCode::MachineMismatch,
            7 => RejectCode::Protocol,
            8 => RejectCode::NameInUse,
            _ => return Err(WireError::malformed("reject", format!("unknown code {b}"))),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub code: RejectCode,
    pub message: String,
}

impl Reject {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.code as u8);
        put_str(out, &self.message);
    }
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf, "reject");
        let code = RejectCode::from_u8(r.u8()?)?;
        let message = r.string()?;
        r.finish()?;
        Ok(Reject { code, message })
    }
}

/// Backup → primary cumulative acknowledgement (epoch in the frame header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ack {
    /// Every entry with seq ≤ this is in the backup's memory.
    pub received: u64,
    /// Every entry with seq ≤ this has been applied to the backup's machine.
    pub executed: u64,
    /// The joiner has loaded its snapshot (and so `executed` is meaningful).
    pub snapshot_loaded: bool,
}

impl Ack {
    pub const BYTES: usize = 17;
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.received.to_le_bytes());
        out.extend_from_slice(&self.executed.to_le_bytes());
        out.push(u8::from(self.snapshot_loaded));
    }
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf, "ack");
        let received = r.u64()?;
        let executed = r.u64()?;
        let flags = r.u8()?;
        r.finish()?;
        if flags > 1 {
            return Err(WireError::malformed("ack", format!("unknown flags {flags:#x}")));
        }
        if executed > received {
            return Err(WireError::malformed("ack", format!("executed {executed} > received {received}")));
        }
        Ok(Ack { received, executed, snapshot_loaded: flags == 1 })
    }
}

/// Primary → backup liveness, carrying the primary's last seq so the backup
/// knows how far behind it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub last_seq: u64,
}

impl Heartbeat {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.last_seq.to_le_bytes());
    }
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf, "heartbeat");
        let last_seq = r.u64()?;
        r.finish()?;
        Ok(Heartbeat { last_seq })
    }
}

/// Start of a snapshot stream (the snapshot's seq is in the frame header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotBegin {
    /// Estimated size, for progress display only.
    pub bytes_hint: u64,
}

impl SnapshotBegin {
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_varint(out, self.bytes_hint);
    }
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf, "snapshot begin");
        let bytes_hint = r.varint()?;
        r.finish()?;
        Ok(SnapshotBegin { bytes_hint })
    }
}

/// Header of a snapshot chunk payload; the chunk's data follows it. The
/// frame's crc32c is the chunk checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotChunk<'a> {
    pub index: u32,
    pub data: &'a [u8],
}

impl<'a> SnapshotChunk<'a> {
    pub fn encode_header(index: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(&index.to_le_bytes());
    }
    pub fn decode(buf: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf, "snapshot chunk");
        let index = r.u32()?;
        Ok(SnapshotChunk { index, data: r.rest() })
    }
}

/// End of a snapshot stream: totals the receiver checks before loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotEnd {
    pub chunks: u32,
    pub bytes: u64,
}

impl SnapshotEnd {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.chunks.to_le_bytes());
        out.extend_from_slice(&self.bytes.to_le_bytes());
    }
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(buf, "snapshot end");
        let chunks = r.u32()?;
        let bytes = r.u64()?;
        r.finish()?;
        Ok(SnapshotEnd { chunks, bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_roundtrip() {
        let h = Hello {
            cluster: "shop".into(),
            node: "a".into(),
            incarnation: 42,
            purpose: Purpose::Join,
            machine: "kv/1".into(),
            nonce: [7; 16],
            client: "10.0.0.1:6379".into(),
            resume: Some((3, 77)),
        };
        let mut out = Vec::new();
        h.encode(&mut out);
        assert_eq!(Hello::decode(&out).unwrap(), h);
        // A hello of a build before the resume point decodes without it,
        // and one before the client address without either.
        let no_resume = &out[..out.len() - 16];
        assert_eq!(Hello::decode(no_resume).unwrap(), Hello { resume: None, ..h.clone() });
        let without = &no_resume[..no_resume.len() - 1 - h.client.len()];
        assert_eq!(Hello::decode(without).unwrap(), Hello { client: String::new(), resume: None, ..h.clone() });
        out.push(0);
        assert!(Hello::decode(&out).is_err(), "trailing bytes must be rejected");
    }

    #[test]
    fn ack_rejects_executed_beyond_received() {
        let mut out = Vec::new();
        Ack { received: 3, executed: 5, snapshot_loaded: false }.encode(&mut out);
        assert!(Ack::decode(&out).is_err());
        out.clear();
        let a = Ack { received: 5, executed: 3, snapshot_loaded: true };
        a.encode(&mut out);
        assert_eq!(out.len(), Ack::BYTES);
        assert_eq!(Ack::decode(&out).unwrap(), a);
    }

    #[test]
    fn reject_roundtrip() {
        let r = Reject { code: RejectCode::StaleEpoch, message: "epoch 3 < 4".into() };
        let mut out = Vec::new();
        r.encode(&mut out);
        assert_eq!(Reject::decode(&out).unwrap(), r);
    }
}
