//! Snapshot files: the replicated state at one seq, in checksummed chunks.
//!
//! ```text
//! snap-{seq:020}.snap   (written as snap-{seq:020}.tmp, synced, renamed)
//!   header   magic "USNP", version u32 = 1, epoch u64, seq u64,
//!            crc32c u32 of the 24 bytes before it
//!   chunks   len u32 LE, crc32c u32 LE over len and bytes, bytes
//!   trailer  len = 0xFFFF_FFFF, chunk count u64, payload bytes u64,
//!            crc32c u32 over count and bytes
//! ```
//!
//! The rename is what makes a snapshot exist: a crash while writing leaves
//! only a `.tmp`, which recovery removes. The trailer's totals catch a file
//! cut at a chunk boundary, which per-chunk checksums alone would not.
//! Chunks are whatever the caller's serializer produces; the reader streams
//! them one at a time, so a snapshot never has to fit in memory.

use std::io;

use crate::bytes::{u32_at, u64_at};
use crate::storage::{Storage, StorageFile};

const SNAPSHOT_MAGIC: &[u8; 4] = b"USNP";
const SNAPSHOT_VERSION: u32 = 1;
const HEADER_BYTES: usize = 28;
/// `len` value that marks the trailer instead of a chunk.
const TRAILER_MARK: u32 = 0xFFFF_FFFF;
/// Trailer bytes after the mark: count, total, crc.
const TRAILER_REST_BYTES: usize = 20;
/// Largest chunk. The reader refuses longer ones before allocating, so a
/// corrupt length costs an error, not the memory it claims.
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 64 << 20;

pub(crate) fn snapshot_name(seq: u64) -> String {
    format!("snap-{seq:020}.snap")
}

fn temp_name(seq: u64) -> String {
    format!("snap-{seq:020}.tmp")
}

/// Leftovers of an interrupted write (snapshots are the only files this
/// crate writes under a temporary name).
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.ends_with(".tmp")
}

fn parse_snapshot_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The snapshot files of the directory as (seq, name), oldest first.
pub(crate) fn list_snapshots<S: Storage>(storage: &S) -> io::Result<Vec<(u64, String)>> {
    let mut snaps: Vec<(u64, String)> =
        storage.list()?.into_iter().filter_map(|name| parse_snapshot_name(&name).map(|seq| (seq, name))).collect();
    snaps.sort();
    Ok(snaps)
}

fn chunk_crc(len: u32, bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), bytes)
}

/// Writes one snapshot file; it exists under its real name only once
/// [`SnapshotFileWriter::finish`] returns.
pub struct SnapshotFileWriter<S: Storage> {
    storage: S,
    file: S::File,
    seq: u64,
    chunks: u64,
    payload_bytes: u64,
    file_bytes: u64,
}

impl<S: Storage> SnapshotFileWriter<S> {
    /// Starts `snap-{seq}.tmp` (replacing a leftover of the same name) for
    /// the state at `seq`, reached in `epoch`.
    pub fn begin(storage: S, epoch: u64, seq: u64) -> io::Result<Self> {
        let mut file = storage.create(&temp_name(seq))?;
        let mut h = [0u8; HEADER_BYTES];
        h[0..4].copy_from_slice(SNAPSHOT_MAGIC);
        h[4..8].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        h[8..16].copy_from_slice(&epoch.to_le_bytes());
        h[16..24].copy_from_slice(&seq.to_le_bytes());
        let crc = crc32c::crc32c(&h[..24]);
        h[24..28].copy_from_slice(&crc.to_le_bytes());
        file.append(&h)?;
        Ok(SnapshotFileWriter { storage, file, seq, chunks: 0, payload_bytes: 0, file_bytes: HEADER_BYTES as u64 })
    }

    /// Appends one chunk (at most [`SNAPSHOT_CHUNK_BYTES_MAX`] bytes).
    pub fn chunk(&mut self, bytes: &[u8]) -> io::Result<()> {
        assert!(bytes.len() <= SNAPSHOT_CHUNK_BYTES_MAX, "snapshot chunk of {} bytes", bytes.len());
        let len = bytes.len() as u32;
        let mut h = [0u8; 8];
        h[0..4].copy_from_slice(&len.to_le_bytes());
        h[4..8].copy_from_slice(&chunk_crc(len, bytes).to_le_bytes());
        self.file.append(&h)?;
        self.file.append(bytes)?;
        self.chunks += 1;
        self.payload_bytes += bytes.len() as u64;
        self.file_bytes += 8 + bytes.len() as u64;
        Ok(())
    }

    /// Writes the trailer, syncs, and renames the file into place (durable
    /// once this returns). Returns the file's size.
    pub fn finish(mut self) -> io::Result<u64> {
        let mut t = [0u8; 4 + TRAILER_REST_BYTES];
        t[0..4].copy_from_slice(&TRAILER_MARK.to_le_bytes());
        t[4..12].copy_from_slice(&self.chunks.to_le_bytes());
        t[12..20].copy_from_slice(&self.payload_bytes.to_le_bytes());
        let crc = crc32c::crc32c(&t[4..20]);
        t[20..24].copy_from_slice(&crc.to_le_bytes());
        self.file.append(&t)?;
        self.file.sync()?;
        self.storage.rename(&temp_name(self.seq), &snapshot_name(self.seq))?;
        Ok(self.file_bytes + t.len() as u64)
    }
}

/// Reads a snapshot file chunk by chunk, checking each as it goes; it holds
/// no more than the chunk it was asked for.
pub struct SnapshotFileReader<S: Storage> {
    storage: S,
    name: String,
    file_len: u64,
    epoch: u64,
    seq: u64,
    offset: u64,
    chunks: u64,
    payload_bytes: u64,
    done: bool,
}

impl<S: Storage> SnapshotFileReader<S> {
    /// Opens `name` and checks its header. Errors of kind `InvalidData` name
    /// the file and what is wrong.
    pub fn open(storage: S, name: &str) -> io::Result<Self> {
        let file_len = storage.len(name)?;
        if file_len < HEADER_BYTES as u64 {
            return Err(invalid(name, 0, "shorter than a snapshot header"));
        }
        let mut h = [0u8; HEADER_BYTES];
        storage.read_at(name, 0, &mut h)?;
        if &h[0..4] != SNAPSHOT_MAGIC {
            return Err(invalid(name, 0, "bad snapshot magic"));
        }
        if crc32c::crc32c(&h[..24]) != u32_at(&h, 24) {
            return Err(invalid(name, 0, "snapshot header checksum mismatch"));
        }
        if u32_at(&h, 4) != SNAPSHOT_VERSION {
            return Err(invalid(name, 4, "unknown snapshot format version"));
        }
        let (epoch, seq) = (u64_at(&h, 8), u64_at(&h, 16));
        if parse_snapshot_name(name).is_some_and(|s| s != seq) {
            return Err(invalid(name, 16, &format!("header says seq {seq}, unlike the name")));
        }
        Ok(SnapshotFileReader {
            storage,
            name: name.to_string(),
            file_len,
            epoch,
            seq,
            offset: HEADER_BYTES as u64,
            chunks: 0,
            payload_bytes: 0,
            done: false,
        })
    }

    /// Epoch in which the snapshot's state was reached.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Seq of the last entry the snapshot's state includes.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Reads the next chunk into `out` (cleared first). `Ok(false)` once the
    /// trailer was read and checked (and on every call after). Any checksum
    /// or structure error is an `InvalidData` error naming the file and
    /// offset.
    pub fn next_chunk(&mut self, out: &mut Vec<u8>) -> io::Result<bool> {
        out.clear();
        if self.done {
            return Ok(false);
        }
        let at = self.offset;
        if self.file_len - at < 8 {
            return Err(invalid(&self.name, at, "file ends before the trailer"));
        }
        let mut h = [0u8; 8];
        self.storage.read_at(&self.name, at, &mut h)?;
        let len = u32_at(&h, 0);
        if len == TRAILER_MARK {
            return self.trailer(at).map(|()| false);
        }
        if len as usize > SNAPSHOT_CHUNK_BYTES_MAX {
            return Err(invalid(&self.name, at, &format!("chunk length {len} over the limit")));
        }
        if self.file_len - at - 8 < u64::from(len) {
            return Err(invalid(&self.name, at, &format!("chunk of {len} bytes runs past the end of the file")));
        }
        out.resize(len as usize, 0);
        self.storage.read_at(&self.name, at + 8, out)?;
        if chunk_crc(len, out) != u32_at(&h, 4) {
            out.clear();
            return Err(invalid(&self.name, at, "chunk checksum mismatch"));
        }
        self.offset = at + 8 + u64::from(len);
        self.chunks += 1;
        self.payload_bytes += u64::from(len);
        Ok(true)
    }

    fn trailer(&mut self, at: u64) -> io::Result<()> {
        let rest = self.file_len - at - 4;
        if rest != TRAILER_REST_BYTES as u64 {
            let what = if rest < TRAILER_REST_BYTES as u64 { "trailer cut short" } else { "bytes after the trailer" };
            return Err(invalid(&self.name, at, what));
        }
        let mut t = [0u8; TRAILER_REST_BYTES];
        self.storage.read_at(&self.name, at + 4, &mut t)?;
        if crc32c::crc32c(&t[..16]) != u32_at(&t, 16) {
            return Err(invalid(&self.name, at, "trailer checksum mismatch"));
        }
        let (chunks, bytes) = (u64_at(&t, 0), u64_at(&t, 8));
        if (chunks, bytes) != (self.chunks, self.payload_bytes) {
            return Err(invalid(
                &self.name,
                at,
                &format!(
                    "trailer counts {chunks} chunks of {bytes} bytes, the file holds {} of {}",
                    self.chunks, self.payload_bytes
                ),
            ));
        }
        self.done = true;
        Ok(())
    }
}

fn invalid(name: &str, offset: u64, what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{name}: {what} at offset {offset}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    fn write(storage: &MemStorage, seq: u64, chunks: &[&[u8]]) -> u64 {
        let mut w = SnapshotFileWriter::begin(storage.clone(), 3, seq).unwrap();
        for c in chunks {
            w.chunk(c).unwrap();
        }
        w.finish().unwrap()
    }

    fn read_all(storage: &MemStorage, name: &str) -> io::Result<Vec<Vec<u8>>> {
        let mut r = SnapshotFileReader::open(storage.clone(), name)?;
        let mut out = Vec::new();
        let mut chunks = Vec::new();
        while r.next_chunk(&mut out)? {
            chunks.push(out.clone());
        }
        Ok(chunks)
    }

    #[test]
    fn roundtrip_and_size() {
        let s = MemStorage::new();
        let size = write(&s, 42, &[b"one", b"", b"three"]);
        assert_eq!(s.list().unwrap(), vec![snapshot_name(42)]);
        assert_eq!(size, s.len(&snapshot_name(42)).unwrap());
        let r = SnapshotFileReader::open(s.clone(), &snapshot_name(42)).unwrap();
        assert_eq!((r.epoch(), r.seq()), (3, 42));
        assert_eq!(read_all(&s, &snapshot_name(42)).unwrap(), vec![b"one".to_vec(), vec![], b"three".to_vec()]);
    }

    #[test]
    fn a_file_cut_at_a_chunk_boundary_is_caught() {
        let s = MemStorage::new();
        write(&s, 1, &[b"aaaa", b"bbbb"]);
        let name = snapshot_name(1);
        // Cut right after the first chunk: every remaining chunk is whole.
        s.truncate(&name, (HEADER_BYTES + 8 + 4) as u64).unwrap();
        let err = read_all(&s, &name).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains(&name), "{err}");
    }

    #[test]
    fn a_chunk_dropped_from_the_middle_is_caught_by_the_trailer() {
        let s = MemStorage::new();
        write(&s, 1, &[b"aaaa", b"bbbb"]);
        write(&s, 2, &[b"aaaa"]);
        // Splice snapshot 2's single chunk with snapshot 1's trailer
        // (2 chunks, 8 bytes): each piece checks out, the totals do not.
        let mut one = vec![0u8; s.len(&snapshot_name(1)).unwrap() as usize];
        s.read_at(&snapshot_name(1), 0, &mut one).unwrap();
        let mut two = vec![0u8; s.len(&snapshot_name(2)).unwrap() as usize];
        s.read_at(&snapshot_name(2), 0, &mut two).unwrap();
        let mut spliced = two[..two.len() - 24].to_vec();
        spliced.extend_from_slice(&one[one.len() - 24..]);
        let mut f = s.create(&snapshot_name(2)).unwrap();
        f.append(&spliced).unwrap();
        let err = read_all(&s, &snapshot_name(2)).unwrap_err();
        assert!(err.to_string().contains("trailer counts 2 chunks"), "{err}");
    }
}
