//! The log, snapshots and recovery on real files: what an operator sees
//! after a clean stop, a torn write, a bad byte, or a crash mid-snapshot.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use understudy_durable::{
    discard_all, recover, FsStorage, Fsync, LogWriter, Record, SnapshotFileReader, SnapshotFileWriter, Storage,
};

fn payload(first: u64, last: u64) -> Vec<u8> {
    (first..=last).flat_map(|s| s.to_le_bytes()).chain(std::iter::repeat_n(0xAB, (first % 7) as usize)).collect()
}

/// Appends records of 1..=3 entries each from `after + 1` through `upto`, epoch 1.
fn append_upto(w: &mut LogWriter<FsStorage>, upto: u64, out: &mut Vec<Record>) {
    while w.last_seq() < upto {
        let first = w.last_seq() + 1;
        let last = (first + first % 3).min(upto);
        let p = payload(first, last);
        w.append(1, first, last, &p).unwrap();
        out.push(Record { epoch: 1, first, last, payload: p });
    }
}

fn files(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(prefix))
        .collect();
    v.sort();
    v
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    files(dir, "log-").into_iter().map(|n| dir.join(n)).collect()
}

/// A directory with records 1..=`upto` synced in `mode`, in segments of
/// about 300 bytes.
fn written(mode: Fsync, upto: u64) -> (tempfile::TempDir, FsStorage, Vec<Record>) {
    let dir = tempfile::tempdir().unwrap();
    let storage = FsStorage::new(dir.path()).unwrap();
    let mut w = LogWriter::create(storage.clone(), mode, 7, 0, 300).unwrap();
    let mut records = Vec::new();
    append_upto(&mut w, upto, &mut records);
    assert_eq!(w.sync().unwrap(), upto);
    (dir, storage, records)
}

#[test]
fn roundtrip_across_rotations() {
    let (dir, storage, records) = written(Fsync::Always, 200);
    assert!(segments(dir.path()).len() > 5, "the test must cross several rotations");
    let r = recover(&storage).unwrap();
    assert_eq!(r.records, records);
    assert!(r.complete, "{:?}", r.reports);
    assert!(r.reports.is_empty(), "{:?}", r.reports);
    assert_eq!((r.last_seq, r.last_epoch, r.snapshot), (200, 1, None));

    // The next life continues where this one stopped, and both lives read back.
    let mut w = LogWriter::create(storage.clone(), Fsync::Always, 8, r.last_seq, 300).unwrap();
    let mut all = records;
    append_upto(&mut w, 230, &mut all);
    w.sync().unwrap();
    let r = recover(&storage).unwrap();
    assert_eq!(r.records, all);
    assert!(r.complete);
}

#[test]
fn an_empty_directory_is_a_complete_new_node() {
    let dir = tempfile::tempdir().unwrap();
    let r = recover(&FsStorage::new(dir.path()).unwrap()).unwrap();
    assert!(r.complete && r.records.is_empty() && r.snapshot.is_none());
    assert_eq!(r.last_seq, 0);
}

#[test]
fn snapshot_then_compaction_keeps_only_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FsStorage::new(dir.path()).unwrap();
    let mut w = LogWriter::create(storage.clone(), Fsync::Always, 1, 0, 300).unwrap();
    let mut records = Vec::new();
    append_upto(&mut w, 40, &mut records);
    let old = SnapshotFileWriter::begin(storage.clone(), 1, 20).unwrap();
    old.finish().unwrap();
    // A record 49..=51 straddles the snapshot at 50.
    append_upto(&mut w, 48, &mut records);
    w.append(1, 49, 51, &payload(49, 51)).unwrap();
    records.push(Record { epoch: 1, first: 49, last: 51, payload: payload(49, 51) });
    let mut snap = SnapshotFileWriter::begin(storage.clone(), 1, 50).unwrap();
    snap.chunk(b"state at 50").unwrap();
    snap.finish().unwrap();
    w.rotate().unwrap();
    append_upto(&mut w, 80, &mut records);
    w.sync().unwrap();

    let before = w.bytes();
    let freed = w.compact(50).unwrap();
    // The snapshot at 20 (header and trailer, no chunks) went too; `bytes`
    // counts segments only, and matches the disk.
    assert_eq!(w.bytes(), before - (freed - (28 + 24)));
    let on_disk: u64 = segments(dir.path()).iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert_eq!(w.bytes(), on_disk);
    assert_eq!(files(dir.path(), "snap-"), vec!["snap-00000000000000000050.snap".to_string()]);

    let r = recover(&storage).unwrap();
    assert!(r.complete, "{:?}", r.reports);
    assert_eq!(r.snapshot, Some(("snap-00000000000000000050.snap".to_string(), 1, 50)));
    let expected: Vec<Record> = records.into_iter().filter(|r| r.last > 50).collect();
    assert_eq!(expected[0].first, 49, "the straddling record comes back whole");
    assert_eq!(r.records, expected);
    assert_eq!(r.last_seq, 80);
    // Every segment left holds something after 50: the first one holds the
    // straddling record, the one before it (up to 46) is gone.
    let first_seg = segments(dir.path())[0].file_name().unwrap().to_str().unwrap().to_string();
    let first_seq: u64 = first_seg["log-".len().."log-".len() + 20].parse().unwrap();
    assert!(first_seq > 40 && first_seq <= 49, "{first_seg}");
    let mut reader = SnapshotFileReader::open(storage.clone(), "snap-00000000000000000050.snap").unwrap();
    let mut chunk = Vec::new();
    assert!(reader.next_chunk(&mut chunk).unwrap());
    assert_eq!(chunk, b"state at 50");
    assert!(!reader.next_chunk(&mut chunk).unwrap());
}

#[test]
fn compaction_refuses_without_a_snapshot() {
    let (dir, storage, _) = written(Fsync::Always, 50);
    let mut w = LogWriter::create(storage.clone(), Fsync::Always, 2, 50, 300).unwrap();
    let segs = segments(dir.path());
    assert!(segs.len() > 2);
    assert_eq!(w.compact(40).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    assert_eq!(segments(dir.path()), segs, "nothing was deleted");
}

#[test]
fn torn_last_record_is_cut_and_reported() {
    for garbage in [false, true] {
        let (dir, storage, mut records) = written(Fsync::Always, 60);
        let last_seg = segments(dir.path()).pop().unwrap();
        let len = std::fs::metadata(&last_seg).unwrap().len();
        let whole = len;
        if garbage {
            // Bytes of a record whose write never finished: a plausible header
            // start and noise, shorter than a header.
            OpenOptions::new().append(true).open(&last_seg).unwrap().write_all(&[0x43, 0x45, 0x52, 0x55, 9, 9, 9]).unwrap();
        } else {
            // Cut in the middle of the last record's payload.
            let last = records.last().unwrap();
            assert!(len > 36 + 10);
            OpenOptions::new().write(true).open(&last_seg).unwrap().set_len(len - (last.payload.len() as u64) / 2 - 1).unwrap();
            records.pop();
        }
        let r = recover(&storage).unwrap();
        assert_eq!(r.records, records, "garbage={garbage}");
        assert!(r.complete, "{:?}", r.reports);
        assert_eq!(r.reports.len(), 1, "{:?}", r.reports);
        assert!(r.reports[0].contains("torn write") && r.reports[0].contains(last_seg.file_name().unwrap().to_str().unwrap()));
        let cut_len = std::fs::metadata(&last_seg).unwrap().len();
        if garbage {
            assert_eq!(cut_len, whole, "the garbage is cut off");
        } else {
            assert!(cut_len < whole);
        }
        // Recovery is idempotent: the second time finds nothing to say.
        let again = recover(&storage).unwrap();
        assert_eq!(again.records, records);
        assert!(again.reports.is_empty(), "{:?}", again.reports);
    }
}

#[test]
fn a_flipped_byte_in_an_early_record_cuts_the_log_there() {
    let (dir, storage, records) = written(Fsync::Always, 200);
    let segs = segments(dir.path());
    let victim = &segs[1];
    // Second record of the second segment, in its payload.
    let first_len = {
        let mut h = [0u8; 8];
        std::fs::File::open(victim).unwrap().read_exact_at(&mut h, 21).unwrap();
        u32::from_le_bytes(h[4..8].try_into().unwrap()) as u64
    };
    let offset = 21 + 36 + first_len;
    let f = OpenOptions::new().read(true).write(true).open(victim).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset + 36 + 2).unwrap();
    f.write_all_at(&[b[0] ^ 0x01], offset + 36 + 2).unwrap();

    let r = recover(&storage).unwrap();
    assert!(!r.complete);
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert_eq!(r.reports.len(), 1, "{:?}", r.reports);
    let report = &r.reports[0];
    assert!(report.contains(name) && report.contains(&format!("offset {offset}")) && report.contains("checksum"), "{report}");
    // Everything before the bad record, nothing after it.
    let kept = r.records.len();
    assert_eq!(r.records[..], records[..kept]);
    assert_eq!(r.records.last().unwrap().last + 1, records[kept].first);
    assert_eq!(segments(dir.path()).len(), 2, "later segments are dropped");
    assert_eq!(std::fs::metadata(victim).unwrap().len(), offset);
    // The node can write again after the cut, from where the log now ends.
    let mut w = LogWriter::create(storage.clone(), Fsync::Always, 9, r.last_seq, 300).unwrap();
    let mut more = r.records.clone();
    append_upto(&mut w, r.last_seq + 10, &mut more);
    w.sync().unwrap();
    let again = recover(&storage).unwrap();
    assert_eq!(again.records, more);
    // Cut entries were synced, so perhaps acknowledged: the log stays
    // incomplete however whole it reads now, until a join discards it.
    assert!(!again.complete, "the cut is remembered: {:?}", again.reports);
    discard_all(&storage).unwrap();
    assert!(recover(&storage).unwrap().complete, "a join starts the disk over");
}

#[test]
fn everysec_segments_are_not_complete() {
    for mode in [Fsync::Everysec, Fsync::No] {
        let (_dir, storage, records) = written(mode, 30);
        let r = recover(&storage).unwrap();
        assert_eq!(r.records, records);
        assert!(!r.complete, "{mode}");
        assert!(r.reports.iter().any(|l| l.contains(mode.as_str())), "{:?}", r.reports);
    }
}

#[test]
fn leftover_tmp_is_removed_and_a_bad_chunk_is_invalid_data() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FsStorage::new(dir.path()).unwrap();
    let mut w = SnapshotFileWriter::begin(storage.clone(), 2, 10).unwrap();
    w.chunk(&[5u8; 1000]).unwrap();
    w.finish().unwrap();
    // A crash in the middle of the next snapshot.
    let mut w = SnapshotFileWriter::begin(storage.clone(), 2, 20).unwrap();
    w.chunk(b"half").unwrap();
    drop(w);
    assert_eq!(files(dir.path(), "snap-").len(), 2);

    let r = recover(&storage).unwrap();
    assert_eq!(r.reports, vec!["removed leftover snap-00000000000000000020.tmp".to_string()]);
    assert_eq!(files(dir.path(), "snap-"), vec!["snap-00000000000000000010.snap".to_string()]);
    assert_eq!(r.snapshot, Some(("snap-00000000000000000010.snap".to_string(), 2, 10)));
    assert_eq!((r.last_seq, r.last_epoch), (10, 2));
    assert!(r.complete);

    let path = dir.path().join("snap-00000000000000000010.snap");
    let f = OpenOptions::new().read(true).write(true).open(&path).unwrap();
    f.write_all_at(&[4], 28 + 8 + 500).unwrap();
    let mut reader = SnapshotFileReader::open(storage.clone(), "snap-00000000000000000010.snap").unwrap();
    let err = reader.next_chunk(&mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("snap-00000000000000000010.snap") && err.to_string().contains("offset 28"), "{err}");
}

#[test]
fn a_snapshot_with_a_bad_header_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FsStorage::new(dir.path()).unwrap();
    SnapshotFileWriter::begin(storage.clone(), 1, 10).unwrap().finish().unwrap();
    SnapshotFileWriter::begin(storage.clone(), 1, 20).unwrap().finish().unwrap();
    let f = OpenOptions::new().write(true).open(dir.path().join("snap-00000000000000000020.snap")).unwrap();
    f.write_all_at(b"X", 9).unwrap();
    let r = recover(&storage).unwrap();
    assert_eq!(r.snapshot.as_ref().map(|s| s.2), Some(10));
    assert_eq!(r.reports.len(), 1);
    assert!(r.reports[0].contains("snap-00000000000000000020.snap unreadable header"), "{:?}", r.reports);
}

#[test]
fn discard_all_leaves_a_new_node() {
    let (dir, storage, _) = written(Fsync::Always, 50);
    SnapshotFileWriter::begin(storage.clone(), 1, 50).unwrap().finish().unwrap();
    discard_all(&storage).unwrap();
    assert!(storage.list().unwrap().is_empty());
    let r = recover(&storage).unwrap();
    assert!(r.complete && r.records.is_empty() && r.last_seq == 0);
    drop(dir);
}
