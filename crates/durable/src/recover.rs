//! Recovery: what survives in the directory after a crash, and whether it
//! is certainly everything this node acknowledged.
//!
//! The one judgement recovery makes is torn tail versus corruption. A power
//! loss legitimately leaves the last segment cut anywhere after its last
//! fsync: that is cut off and forgotten, since nothing in it was
//! acknowledged under `appendfsync always`. Anything else unreadable (a
//! checksum mismatch in a whole record, a gap, damage in an earlier
//! segment) means synced data was lost or changed, so the log is cut before
//! it and [`Recovered::complete`] is false: the caller must not present this
//! node's state as the cluster's without another source.
//!
//! Damage in records the snapshot already covers costs nothing: the scan
//! skips to the next segment and carries on if that one connects to the
//! snapshot.

use std::io;

use crate::log::{
    decode_segment_header, list_segments, record_crc, Fsync, Record, RecordHeader, Segment, RECORD_HEADER_BYTES, RECORD_MAGIC,
    RECORD_PAYLOAD_BYTES_MAX, SEGMENT_HEADER_BYTES,
};
use crate::mark::{mark_incomplete, INCOMPLETE_MARK};
use crate::snapfile::{is_temp_name, list_snapshots, SnapshotFileReader};
use crate::storage::Storage;

/// What [`recover`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The newest snapshot whose header is valid: (file name, epoch, seq).
    /// Its chunks are checked as they are read.
    pub snapshot: Option<(String, u64, u64)>,
    /// Records after the snapshot in seq order, continuous: the first has
    /// `first <= base + 1 <= last` (base = snapshot seq or 0; a record may
    /// straddle the snapshot's seq, and the caller skips entries <= base),
    /// each next one starts at the previous `last + 1`.
    pub records: Vec<Record>,
    /// Last seq held (snapshot or records).
    pub last_seq: u64,
    /// Epoch of the last record, or the snapshot's.
    pub last_epoch: u64,
    /// True only if every acknowledged entry this node wrote is certainly
    /// here: every segment that holds records after the snapshot, and the
    /// last segment, were written in [`Fsync::Always`], and nothing but a
    /// torn tail was found.
    pub complete: bool,
    /// One line per thing found and done, for the operator's log.
    pub reports: Vec<String>,
}

/// Why the scan of a segment stopped early.
enum Problem {
    /// Unsynced bytes of the last write: expected after a crash.
    Torn(String),
    /// Bytes that were written whole are wrong, or a segment is cut short
    /// that later segments follow.
    Corrupt(String),
    /// Valid records that do not connect to what precedes them.
    Gap(String),
}

/// How a record's seqs relate to what was read before it.
enum Continuity {
    Continues,
    Gap(String),
    Broken(String),
}

struct Scan {
    /// Seq of the snapshot (0 without one).
    base: u64,
    /// (last, epoch) of the last record read, used or skipped; `None` at the
    /// start and after damage the snapshot covers.
    prev: Option<(u64, u64)>,
    records: Vec<Record>,
}

impl Scan {
    /// Whether entries starting at `first` follow what was read so far.
    fn follows(&self, first: u64) -> Continuity {
        // Seqs come from checksummed headers but may still be anything: no
        // arithmetic here may overflow.
        let base = self.base;
        match self.prev {
            Some((pl, _)) if first == pl.saturating_add(1) && pl < u64::MAX => Continuity::Continues,
            Some((pl, _)) if first <= pl => Continuity::Broken(format!("seq {first} does not continue the log at seq {pl}")),
            // A jump forward that the snapshot bridges: segments older than
            // the snapshot that compaction has not removed yet.
            Some(_) if first <= base.saturating_add(1) => Continuity::Continues,
            Some((pl, _)) if pl < base => Continuity::Gap(format!(
                "the log resumes at seq {first} after seq {pl}, which the snapshot at seq {base} does not bridge"
            )),
            Some((pl, _)) => Continuity::Broken(format!("seq {first} does not continue the log at seq {pl}")),
            None if first <= base.saturating_add(1) => Continuity::Continues,
            None => Continuity::Gap(format!("the log resumes at seq {first} but the snapshot ends at seq {base}")),
        }
    }

    fn continuity(&self, seg: &Segment, first_in_segment: bool, h: &RecordHeader) -> Continuity {
        if h.last < h.first {
            return Continuity::Broken(format!("seqs {}..={} go backwards", h.first, h.last));
        }
        if first_in_segment && h.first != seg.first {
            return Continuity::Broken(format!(
                "first record starts at seq {} in a segment named for seq {}",
                h.first, seg.first
            ));
        }
        match (self.follows(h.first), self.prev) {
            (Continuity::Continues, Some((_, pe))) if h.epoch < pe => {
                Continuity::Broken(format!("epoch goes back from {pe} to {}", h.epoch))
            }
            (c, _) => c,
        }
    }

    /// Reads the records of `data` (a whole segment whose header is valid);
    /// returns where and why it stopped, if before the end.
    fn records(&mut self, seg: &Segment, data: &[u8]) -> Option<(usize, Problem)> {
        let mut off = SEGMENT_HEADER_BYTES;
        let mut first_in_segment = true;
        while off < data.len() {
            let rest = &data[off..];
            if rest.len() < RECORD_HEADER_BYTES {
                let why = format!("{} bytes left, fewer than a record header", rest.len());
                return Some((off, Problem::Torn(why)));
            }
            let h = RecordHeader::decode(rest);
            if h.magic != RECORD_MAGIC {
                if rest.iter().all(|&b| b == 0) {
                    return Some((off, Problem::Torn("zeros to the end of the file".into())));
                }
                return Some((off, Problem::Corrupt("bad record magic".into())));
            }
            let len = h.len as usize;
            if len > RECORD_PAYLOAD_BYTES_MAX {
                return Some((off, Problem::Corrupt(format!("record length {len} over the limit"))));
            }
            let continuity = self.continuity(seg, first_in_segment, &h);
            if rest.len() - RECORD_HEADER_BYTES < len {
                // Either the write was torn, or the length is damaged. A
                // torn write leaves a header that fits the log and a strict
                // prefix of the payload, whose checksum cannot match.
                if let Continuity::Gap(why) | Continuity::Broken(why) = continuity {
                    return Some((off, Problem::Corrupt(format!("record runs past the end of the file and {why}"))));
                }
                if record_crc(h.epoch, h.first, h.last, &rest[RECORD_HEADER_BYTES..]) == h.crc {
                    let why = "length field damaged: the checksum matches the bytes up to the end of the file";
                    return Some((off, Problem::Corrupt(why.into())));
                }
                return Some((off, Problem::Torn("the record ends past the end of the file".into())));
            }
            let payload = &rest[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + len];
            if record_crc(h.epoch, h.first, h.last, payload) != h.crc {
                return Some((off, Problem::Corrupt("checksum mismatch".into())));
            }
            match continuity {
                Continuity::Continues => {}
                Continuity::Gap(why) => return Some((off, Problem::Gap(why))),
                Continuity::Broken(why) => return Some((off, Problem::Corrupt(why))),
            }
            self.prev = Some((h.last, h.epoch));
            if h.last > self.base {
                self.records.push(Record { epoch: h.epoch, first: h.first, last: h.last, payload: payload.to_vec() });
            }
            off += RECORD_HEADER_BYTES + len;
            first_in_segment = false;
        }
        None
    }
}

/// Reads the directory after a start or a crash: removes leftovers, picks
/// the newest valid snapshot, reads the log after it, cuts off a torn tail
/// and anything after damage, and says whether the result is certainly
/// complete. After it, [`crate::LogWriter::create`] with
/// [`Recovered::last_seq`] opens the next segment.
pub fn recover<S: Storage>(storage: &S) -> io::Result<Recovered> {
    let mut reports = Vec::new();
    let mut marked = false;
    for name in storage.list()? {
        if is_temp_name(&name) {
            storage.remove(&name)?;
            reports.push(format!("removed leftover {name}"));
        }
        marked |= name == INCOMPLETE_MARK;
    }

    let mut snapshot = None;
    for (_, name) in list_snapshots(storage)?.into_iter().rev() {
        match SnapshotFileReader::open(storage.clone(), &name) {
            Ok(r) => {
                snapshot = Some((name, r.epoch(), r.seq()));
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                reports.push(format!("snapshot {name} unreadable header ({e}): ignored"));
            }
            Err(e) => return Err(e),
        }
    }
    let (base, base_epoch) = snapshot.as_ref().map_or((0, 0), |(_, epoch, seq)| (*seq, *epoch));

    let mut scan = Scan { base, prev: None, records: Vec::new() };
    let mut complete = !marked;
    if marked {
        reports.push(format!(
            "{INCOMPLETE_MARK}: an earlier recovery cut entries that had been synced: this log stays incomplete until the node joins a primary"
        ));
    }
    // Mode of the last segment still on disk with a valid header: entries
    // acknowledged after its last fsync may be gone without a trace.
    let mut last_mode: Option<(String, Fsync, bool)> = None;
    let segments = list_segments(storage)?;
    for (i, seg) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let len = storage.len(&seg.name)?;
        let mut data = vec![0u8; len as usize];
        storage.read_at(&seg.name, 0, &mut data)?;

        let records_before = scan.records.len();
        let (mode, stop) = match decode_segment_header(&data) {
            // The name says where the segment starts: evidence even when it
            // holds no record.
            Ok((mode, _incarnation)) => match scan.follows(seg.first) {
                Continuity::Continues => (Some(mode), scan.records(seg, &data)),
                Continuity::Gap(why) => (Some(mode), Some((0, Problem::Gap(why)))),
                Continuity::Broken(why) => (Some(mode), Some((0, Problem::Corrupt(format!("segment name: {why}"))))),
            },
            Err(why) if is_last && (data.len() < SEGMENT_HEADER_BYTES || data.iter().all(|&b| b == 0)) => {
                // The process died creating it: the header is synced before
                // the first append, so nothing was written here.
                storage.remove(&seg.name)?;
                reports.push(format!("{}: removed ({why}, {len} bytes): torn creation of the last segment", seg.name));
                continue;
            }
            Err(why) => (None, Some((0, Problem::Corrupt(format!("segment header: {why}"))))),
        };
        if let Some(mode) = mode {
            let used = scan.records.len() > records_before;
            if used && mode != Fsync::Always {
                complete = false;
                reports.push(not_always(&seg.name, mode));
            }
            // Cut at 0 means removed: then it is not the last one on disk.
            if stop.as_ref().is_none_or(|(at, _)| *at > 0) {
                last_mode = Some((seg.name.clone(), mode, used));
            }
        }
        let Some((at, problem)) = stop else { continue };
        let dropped = len - at as u64;

        if let Problem::Torn(why) = &problem {
            if is_last {
                storage.truncate(&seg.name, at as u64)?;
                reports.push(format!("{}: cut {dropped} bytes at offset {at} (torn write: {why})", seg.name));
                break;
            }
        }
        let (kind, why, maybe_covered) = match problem {
            Problem::Torn(why) => ("torn record before the last segment", why, true),
            Problem::Corrupt(why) => ("corrupt record", why, true),
            Problem::Gap(why) => ("gap", why, false),
        };
        cut(storage, &seg.name, at, len)?;
        if maybe_covered && scan.records.is_empty() && !is_last {
            // Nothing after the snapshot was read yet: the damaged records
            // may all be ones the snapshot covers. The next segment decides.
            reports.push(format!(
                "{}: {kind} at offset {at} ({why}): cut here, {dropped} bytes dropped; \
                 reading on, as the snapshot at seq {base} may cover them",
                seg.name
            ));
            scan.prev = None;
            continue;
        }
        complete = false;
        mark_incomplete(storage)?;
        let later = &segments[i + 1..];
        for l in later {
            storage.remove(&l.name)?;
        }
        reports.push(format!(
            "{}: {kind} at offset {at} ({why}): cut here, {dropped} bytes and {} later segments dropped",
            seg.name,
            later.len()
        ));
        break;
    }
    if let Some((name, mode, used)) = last_mode {
        if mode != Fsync::Always && !used {
            complete = false;
            reports.push(not_always(&name, mode));
        }
    }

    let (last_seq, last_epoch) = match scan.records.last() {
        Some(r) => (r.last, r.epoch),
        None => (base, base_epoch),
    };
    // A segment cut at a gap is named for a seq past where the log now
    // ends; the next writer starts at `last_seq + 1` and must be last.
    for seg in list_segments(storage)? {
        if seg.first > last_seq.saturating_add(1) {
            storage.remove(&seg.name)?;
            reports.push(format!(
                "{}: removed: starts after seq {}, where the log now ends",
                seg.name,
                last_seq.saturating_add(1)
            ));
        }
    }
    // What was read may be only in the page cache: a kill -9 loses no
    // write, but a power loss after it loses what was never synced, and the
    // caller counts everything recovered as on disk. Cutting each segment
    // at its length is durable (`Storage::truncate`), bytes included
    // (simulator, durable seed 2000307: entries read back after a kill -9
    // vanished at the next power loss, and the next life's segment no
    // longer connected).
    for seg in list_segments(storage)? {
        let len = storage.len(&seg.name)?;
        storage.truncate(&seg.name, len)?;
    }
    Ok(Recovered { snapshot, records: scan.records, last_seq, last_epoch, complete, reports })
}

fn not_always(name: &str, mode: Fsync) -> String {
    format!("{name}: written with appendfsync {mode}: entries acknowledged after its last fsync may be missing")
}

/// Cuts a segment at `at`, removing it when not even its header is usable.
fn cut<S: Storage>(storage: &S, name: &str, at: usize, len: u64) -> io::Result<()> {
    if at == 0 {
        storage.remove(name)
    } else if (at as u64) < len {
        storage.truncate(name, at as u64)
    } else {
        Ok(())
    }
}
