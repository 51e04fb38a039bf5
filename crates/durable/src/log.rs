//! The replicated log on disk: segment files of checksummed records.
//!
//! ```text
//! segment  log-{first_seq:020}-{n:04}.seg
//!   header  magic "USEG", version u32 = 1, fsync mode u8, incarnation u64,
//!           crc32c u32 of the 17 bytes before it
//!   records, each:
//!     magic  u32 LE 0x5552_4543 ("RECU")
//!     len    u32 LE  payload bytes
//!     crc    u32 LE  crc32c over epoch, first, last and payload
//!     epoch  u64 LE
//!     first  u64 LE  seq of the record's first entry
//!     last   u64 LE  seq of its last entry (last >= first)
//!     payload
//! ```
//!
//! A segment records the fsync mode it was written in, because recovery can
//! only promise that no acknowledged entry is missing when every entry was
//! synced before it was acknowledged. `n` tells apart segments that
//! different process lives opened at the same seq (a life that crashed
//! before its first append leaves an empty segment behind).
//!
//! Segments are contiguous: each starts at the seq after the previous one's
//! last record, which is what lets [`LogWriter::compact`] decide from the
//! names alone which segments a snapshot covers.

use std::fmt;
use std::io;
use std::str::FromStr;

pub(crate) use crate::bytes::{u32_at, u64_at};
use crate::snapfile;
use crate::storage::{Storage, StorageFile};

pub(crate) const SEGMENT_MAGIC: &[u8; 4] = b"USEG";
pub(crate) const SEGMENT_VERSION: u32 = 1;
/// Bytes of a segment header, crc included.
pub(crate) const SEGMENT_HEADER_BYTES: usize = 21;
pub(crate) const RECORD_MAGIC: u32 = 0x5552_4543;
/// Bytes of a record before its payload.
pub(crate) const RECORD_HEADER_BYTES: usize = 36;
/// Largest payload of one record. Far above any batch the caller writes;
/// recovery treats a larger length as corruption rather than a torn write.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 256 << 20;

/// When the log is fsynced, as Redis's `appendfsync`. The writer does not
/// keep time: the caller calls [`LogWriter::sync`] before acknowledging
/// (`Always`), once a second (`Everysec`) or never (`No`, the OS decides).
/// The mode is written into each segment so recovery knows what it can
/// promise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    Always,
    Everysec,
    No,
}

impl Fsync {
    pub fn as_str(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Everysec => "everysec",
            Fsync::No => "no",
        }
    }

    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Fsync::Always => 0,
            Fsync::Everysec => 1,
            Fsync::No => 2,
        }
    }

    pub(crate) fn from_byte(b: u8) -> Option<Fsync> {
        match b {
            0 => Some(Fsync::Always),
            1 => Some(Fsync::Everysec),
            2 => Some(Fsync::No),
            _ => None,
        }
    }
}

impl fmt::Display for Fsync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An fsync mode that is not one of `always`, `everysec`, `no`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFsyncError(pub String);

impl fmt::Display for ParseFsyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown fsync mode {:?}: expected always, everysec or no", self.0)
    }
}

impl std::error::Error for ParseFsyncError {}

impl FromStr for Fsync {
    type Err = ParseFsyncError;

    fn from_str(s: &str) -> Result<Fsync, ParseFsyncError> {
        match s {
            "always" => Ok(Fsync::Always),
            "everysec" => Ok(Fsync::Everysec),
            "no" => Ok(Fsync::No),
            other => Err(ParseFsyncError(other.to_string())),
        }
    }
}

/// One record as recovery returns it: entries `first..=last` of `epoch`,
/// encoded by the caller into `payload`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub epoch: u64,
    pub first: u64,
    pub last: u64,
    pub payload: Vec<u8>,
}

/// A segment file found in the directory, identified by its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub first: u64,
    pub n: u32,
    pub name: String,
}

pub(crate) fn segment_name(first: u64, n: u32) -> String {
    format!("log-{first:020}-{n:04}.seg")
}

fn parse_segment_name(name: &str) -> Option<(u64, u32)> {
    let rest = name.strip_prefix("log-")?.strip_suffix(".seg")?;
    let (first, n) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(first) || !digits(n) {
        return None;
    }
    Some((first.parse().ok()?, n.parse().ok()?))
}

/// The segment files of the directory in log order, (first seq, n).
pub(crate) fn list_segments<S: Storage>(storage: &S) -> io::Result<Vec<Segment>> {
    let mut segments: Vec<Segment> = storage
        .list()?
        .into_iter()
        .filter_map(|name| parse_segment_name(&name).map(|(first, n)| Segment { first, n, name }))
        .collect();
    segments.sort_by_key(|s| (s.first, s.n));
    Ok(segments)
}

pub(crate) fn encode_segment_header(mode: Fsync, incarnation: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    h[0..4].copy_from_slice(SEGMENT_MAGIC);
    h[4..8].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[8] = mode.to_byte();
    h[9..17].copy_from_slice(&incarnation.to_le_bytes());
    let crc = crc32c::crc32c(&h[..17]);
    h[17..21].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The fsync mode and incarnation of a segment header, or what is wrong
/// with it.
pub(crate) fn decode_segment_header(h: &[u8]) -> Result<(Fsync, u64), &'static str> {
    if h.len() < SEGMENT_HEADER_BYTES {
        return Err("shorter than a header");
    }
    if &h[0..4] != SEGMENT_MAGIC {
        return Err("bad magic");
    }
    if crc32c::crc32c(&h[..17]) != u32_at(h, 17) {
        return Err("header checksum mismatch");
    }
    if u32_at(h, 4) != SEGMENT_VERSION {
        return Err("unknown format version");
    }
    let mode = Fsync::from_byte(h[8]).ok_or("unknown fsync mode")?;
    Ok((mode, u64_at(h, 9)))
}

/// The fixed part of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub magic: u32,
    pub len: u32,
    pub crc: u32,
    pub epoch: u64,
    pub first: u64,
    pub last: u64,
}

impl RecordHeader {
    pub(crate) fn encode(&self) -> [u8; RECORD_HEADER_BYTES] {
        let mut h = [0u8; RECORD_HEADER_BYTES];
        h[0..4].copy_from_slice(&self.magic.to_le_bytes());
        h[4..8].copy_from_slice(&self.len.to_le_bytes());
        h[8..12].copy_from_slice(&self.crc.to_le_bytes());
        h[12..20].copy_from_slice(&self.epoch.to_le_bytes());
        h[20..28].copy_from_slice(&self.first.to_le_bytes());
        h[28..36].copy_from_slice(&self.last.to_le_bytes());
        h
    }

    pub(crate) fn decode(h: &[u8]) -> RecordHeader {
        RecordHeader {
            magic: u32_at(h, 0),
            len: u32_at(h, 4),
            crc: u32_at(h, 8),
            epoch: u64_at(h, 12),
            first: u64_at(h, 20),
            last: u64_at(h, 28),
        }
    }
}

/// The record checksum: over the header fields after it and the payload,
/// so a record moved or relabelled is caught as well as a flipped bit.
pub(crate) fn record_crc(epoch: u64, first: u64, last: u64, payload: &[u8]) -> u32 {
    let mut fields = [0u8; 24];
    fields[0..8].copy_from_slice(&epoch.to_le_bytes());
    fields[8..16].copy_from_slice(&first.to_le_bytes());
    fields[16..24].copy_from_slice(&last.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&fields), payload)
}

/// Appends records to the current segment and rotates segments.
///
/// One writer per directory. After an I/O error the writer refuses further
/// work: what reached the file is unknown, and only [`crate::recover()`] can
/// tell.
pub struct LogWriter<S: Storage> {
    storage: S,
    mode: Fsync,
    incarnation: u64,
    segment_bytes: u64,
    file: S::File,
    /// Name of the current segment (the last in log order).
    name: String,
    /// Bytes in the current segment, header included.
    written: u64,
    /// Bytes of every segment file, the current one included.
    total_bytes: u64,
    last_seq: u64,
    /// Epoch of the last append (0 before the first: epochs from before
    /// this writer are the caller's business).
    last_epoch: u64,
    synced_seq: u64,
    /// Bytes appended since the last sync.
    dirty: bool,
    broken: bool,
}

impl<S: Storage> LogWriter<S> {
    /// Opens a new segment after `after` (the last seq the caller's state
    /// holds: appends start at `after + 1`). `after` must come from
    /// [`crate::recover()`] (or be 0 after [`discard_all`]), so that no segment
    /// on disk holds entries beyond it. The segment header is synced before
    /// this returns, so the fsync mode it records survives any crash that
    /// the entries written in it could be lost to.
    pub fn create(storage: S, mode: Fsync, incarnation: u64, after: u64, segment_bytes: u64) -> io::Result<Self> {
        let segments = list_segments(&storage)?;
        if let Some(later) = segments.iter().find(|s| s.first > after + 1) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} starts after seq {}: the log on disk is ahead of the caller's state", later.name, after + 1),
            ));
        }
        let mut total_bytes = 0;
        for s in &segments {
            total_bytes += storage.len(&s.name)?;
        }
        let (file, name) = open_segment(&storage, &segments, mode, incarnation, after + 1)?;
        Ok(LogWriter {
            storage,
            mode,
            incarnation,
            segment_bytes,
            file,
            name,
            written: SEGMENT_HEADER_BYTES as u64,
            total_bytes: total_bytes + SEGMENT_HEADER_BYTES as u64,
            last_seq: after,
            last_epoch: 0,
            synced_seq: after,
            dirty: false,
            broken: false,
        })
    }

    fn check(&self) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other("log writer failed earlier; recover before writing again"));
        }
        Ok(())
    }

    /// Runs `f`, remembering a failure so that no later call writes after
    /// bytes whose fate is unknown.
    fn guard<T>(&mut self, f: impl FnOnce(&mut Self) -> io::Result<T>) -> io::Result<T> {
        self.check()?;
        let r = f(self);
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    /// Appends one record (entries `first..=last` of `epoch`). Rotates to a
    /// new segment (the current one synced first) once the current one
    /// reaches `segment_bytes`. Does not sync the record itself.
    ///
    /// Panics unless `first` is the seq after the last one appended,
    /// `last >= first` and `epoch` is no smaller than the last append's:
    /// recovery would reject anything else as corruption.
    pub fn append(&mut self, epoch: u64, first: u64, last: u64, payload: &[u8]) -> io::Result<()> {
        assert_eq!(first, self.last_seq + 1, "log append must continue the seq");
        assert!(last >= first, "record {first}..={last} is empty");
        assert!(epoch >= self.last_epoch, "log append goes back from epoch {} to {epoch}", self.last_epoch);
        assert!(payload.len() <= RECORD_PAYLOAD_BYTES_MAX, "record payload of {} bytes", payload.len());
        self.guard(|w| {
            let header = RecordHeader {
                magic: RECORD_MAGIC,
                len: payload.len() as u32,
                crc: record_crc(epoch, first, last, payload),
                epoch,
                first,
                last,
            };
            w.file.append(&header.encode())?;
            w.file.append(payload)?;
            let n = (RECORD_HEADER_BYTES + payload.len()) as u64;
            w.written += n;
            w.total_bytes += n;
            w.last_seq = last;
            w.last_epoch = epoch;
            w.dirty = true;
            if w.written >= w.segment_bytes {
                w.rotate_now()?;
            }
            Ok(())
        })
    }

    /// fdatasync of the current segment; returns the last seq now durable.
    pub fn sync(&mut self) -> io::Result<u64> {
        self.guard(|w| w.sync_now())
    }

    fn sync_now(&mut self) -> io::Result<u64> {
        if self.dirty {
            self.file.sync()?;
            self.dirty = false;
        }
        self.synced_seq = self.last_seq;
        Ok(self.synced_seq)
    }

    /// Last seq appended.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Last seq known durable.
    pub fn synced_seq(&self) -> u64 {
        self.synced_seq
    }

    /// Starts a new segment now, so that everything before it can be
    /// compacted once a snapshot covers it. Syncs the current one first.
    pub fn rotate(&mut self) -> io::Result<()> {
        self.guard(|w| w.rotate_now())
    }

    fn rotate_now(&mut self) -> io::Result<()> {
        self.sync_now()?;
        let segments = list_segments(&self.storage)?;
        let (file, name) = open_segment(&self.storage, &segments, self.mode, self.incarnation, self.last_seq + 1)?;
        self.file = file;
        self.name = name;
        self.written = SEGMENT_HEADER_BYTES as u64;
        self.total_bytes += SEGMENT_HEADER_BYTES as u64;
        Ok(())
    }

    /// Deletes every segment whose records all have `last <= seq` (the
    /// durable snapshot at `seq` covers them) except the current one, and
    /// every snapshot file older than the one at `seq`. Returns the bytes
    /// freed. Refuses (`InvalidInput`) when there is no snapshot file at
    /// `seq`: deleting log without one would lose entries.
    pub fn compact(&mut self, seq: u64) -> io::Result<u64> {
        self.check()?;
        let snapshots = snapfile::list_snapshots(&self.storage)?;
        if !snapshots.iter().any(|(s, _)| *s == seq) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no snapshot file at seq {seq}: compacting would lose entries"),
            ));
        }
        let segments = list_segments(&self.storage)?;
        let mut freed = 0;
        // A segment ends where the next one starts, so the names tell which
        // ones hold nothing after `seq`; the current segment is the last.
        for pair in segments.windows(2) {
            let (seg, next) = (&pair[0], &pair[1]);
            if seg.name == self.name || next.first.saturating_sub(1) > seq {
                break;
            }
            let len = self.storage.len(&seg.name)?;
            self.storage.remove(&seg.name)?;
            freed += len;
            self.total_bytes -= len;
        }
        for (s, name) in snapshots {
            if s < seq {
                let len = self.storage.len(&name)?;
                self.storage.remove(&name)?;
                freed += len;
            }
        }
        Ok(freed)
    }

    /// Total bytes of segment files right now (for metrics and for deciding
    /// when to take a snapshot).
    pub fn bytes(&self) -> u64 {
        self.total_bytes
    }
}

/// Creates the segment for entries from `first` with a synced header.
fn open_segment<S: Storage>(
    storage: &S,
    existing: &[Segment],
    mode: Fsync,
    incarnation: u64,
    first: u64,
) -> io::Result<(S::File, String)> {
    let n = existing.iter().filter(|s| s.first == first).map(|s| s.n + 1).max().unwrap_or(0);
    let name = segment_name(first, n);
    let mut file = storage.create(&name)?;
    file.append(&encode_segment_header(mode, incarnation))?;
    file.sync()?;
    Ok((file, name))
}

/// Deletes every log segment and snapshot (a node that joins a primary
/// discards its old state). Snapshots go first and segments oldest first,
/// so a crash halfway leaves either the old state whole or a log that does
/// not connect, which recovery reports as incomplete: never an old prefix
/// that looks complete.
pub fn discard_all<S: Storage>(storage: &S) -> io::Result<()> {
    for (_, name) in snapfile::list_snapshots(storage)? {
        storage.remove(&name)?;
    }
    for seg in list_segments(storage)? {
        storage.remove(&seg.name)?;
    }
    for name in storage.list()? {
        if snapfile::is_temp_name(&name) {
            storage.remove(&name)?;
        }
    }
    // The mark of an incomplete log goes last: a crash before it leaves
    // the log marked incomplete still.
    crate::mark::clear_incomplete(storage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_roundtrip_and_sort_in_log_order() {
        assert_eq!(segment_name(12, 3), "log-00000000000000000012-0003.seg");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX, 12345)), Some((u64::MAX, 12345)));
        assert_eq!(parse_segment_name("log-12-x.seg"), None);
        assert_eq!(parse_segment_name("snap-00000000000000000012.snap"), None);
    }

    #[test]
    fn fsync_parses_and_prints() {
        for m in [Fsync::Always, Fsync::Everysec, Fsync::No] {
            assert_eq!(m.as_str().parse::<Fsync>(), Ok(m));
            assert_eq!(Fsync::from_byte(m.to_byte()), Some(m));
        }
        let err = "sometimes".parse::<Fsync>().unwrap_err().to_string();
        assert!(err.contains("always") && err.contains("everysec") && err.contains("no"), "{err}");
    }

    #[test]
    fn segment_header_rejects_any_flipped_bit() {
        let h = encode_segment_header(Fsync::Everysec, 77);
        assert_eq!(decode_segment_header(&h), Ok((Fsync::Everysec, 77)));
        for byte in 0..SEGMENT_HEADER_BYTES {
            let mut bad = h;
            bad[byte] ^= 0x10;
            assert!(decode_segment_header(&bad).is_err(), "flip in byte {byte}");
        }
    }
}
