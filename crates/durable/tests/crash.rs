//! Power losses on the simulated disk, many seeds each: a node appends,
//! syncs, snapshots and compacts at random, crashes, recovers and goes on,
//! for several lives. What it relies on: every entry synced before the
//! crash comes back (or recovery says the log is incomplete), and no
//! payload ever comes back different from what was written.

use std::io;

use understudy_durable::{
    recover, CrashFaults, Fsync, LogWriter, MemStorage, Record, Recovered, SnapshotFileReader, SnapshotFileWriter, Storage,
    StorageFile,
};

/// splitmix64: a seed is a whole scenario, crash included.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the snapshot at `seq` holds: two chunks derived from the seq.
fn snapshot_chunks(seq: u64) -> [Vec<u8>; 2] {
    [seq.to_le_bytes().repeat(40), (seq * 3).to_le_bytes().repeat((seq % 50) as usize)]
}

/// Reads the recovered snapshot whole. `None` if a chunk is damaged, which
/// the reader must say with `InvalidData`, never with wrong bytes.
fn read_snapshot(storage: &MemStorage, name: &str, seq: u64) -> Option<()> {
    let mut r = SnapshotFileReader::open(storage.clone(), name).unwrap();
    let mut chunks = Vec::new();
    let mut out = Vec::new();
    loop {
        match r.next_chunk(&mut out) {
            Ok(true) => chunks.push(out.clone()),
            Ok(false) => break,
            Err(e) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
                return None;
            }
        }
    }
    assert_eq!(chunks, snapshot_chunks(seq), "snapshot {name} read back different bytes");
    Some(())
}

/// One scenario: three lives of appends and crashes. Returns how many lives
/// recovered complete (to check the seeds exercise both outcomes).
fn scenario(seed: u64, faults: CrashFaults) -> usize {
    let mut rng = Rng(seed);
    let storage = MemStorage::new();
    // Every record written and not lost, in order, from seq 1.
    let mut written: Vec<Record> = Vec::new();
    let mut after = 0;
    let mut epoch = 1;
    let mut complete_lives = 0;
    for life in 0..3 {
        let segment_bytes = 100 + rng.below(1500);
        let mut w = LogWriter::create(storage.clone(), Fsync::Always, life, after, segment_bytes).unwrap();
        for _ in 0..rng.below(80) {
            let first = w.last_seq() + 1;
            let last = first + rng.below(4);
            if rng.below(15) == 0 {
                epoch += 1;
            }
            let payload: Vec<u8> = (0..rng.below(400)).map(|_| rng.next() as u8).collect();
            w.append(epoch, first, last, &payload).unwrap();
            written.push(Record { epoch, first, last, payload });
            match rng.below(20) {
                0..=5 => {
                    w.sync().unwrap();
                }
                6 => w.rotate().unwrap(),
                7 => {
                    // Snapshot the state as it is now, then drop what it covers.
                    w.sync().unwrap();
                    let seq = w.last_seq();
                    let mut s = SnapshotFileWriter::begin(storage.clone(), epoch, seq).unwrap();
                    for c in snapshot_chunks(seq) {
                        s.chunk(&c).unwrap();
                    }
                    s.finish().unwrap();
                    w.rotate().unwrap();
                    w.compact(seq).unwrap();
                }
                _ => {}
            }
        }
        let synced = w.synced_seq();
        storage.crash(faults, &mut || rng.next());
        drop(w);

        let r = recover(&storage).unwrap();
        check(seed, life, &storage, &r, &written, synced, faults);
        if r.complete {
            complete_lives += 1;
        }
        written.retain(|x| x.last <= r.last_seq);
        after = r.last_seq;
        epoch = epoch.max(r.last_epoch);
    }
    complete_lives
}

fn check(seed: u64, life: u64, storage: &MemStorage, r: &Recovered, written: &[Record], synced: u64, faults: CrashFaults) {
    let ctx = format!("seed {seed} life {life}: {:?}", r.reports);
    let base = r.snapshot.as_ref().map_or(0, |s| s.2);
    if let Some((name, _, seq)) = &r.snapshot {
        let intact = read_snapshot(storage, name, *seq).is_some();
        assert!(intact || faults.corrupt_sector, "{ctx}");
    }
    // Never a wrong payload: what comes back is exactly what was written
    // after the snapshot, from its start, however much of it survived.
    let expected: Vec<&Record> = written.iter().filter(|x| x.last > base).collect();
    assert!(r.records.len() <= expected.len(), "{ctx}");
    for (got, want) in r.records.iter().zip(&expected) {
        assert_eq!(got, *want, "{ctx}");
    }
    assert_eq!(r.last_seq, r.records.last().map_or(base, |x| x.last), "{ctx}");
    if !faults.corrupt_sector {
        assert!(r.complete, "{ctx}");
    }
    if r.complete {
        assert!(r.last_seq >= synced, "synced up to {synced}, recovered up to {}; {ctx}", r.last_seq);
    }
}

/// Seeds per test; `UNDERSTUDY_DURABLE_SEEDS=100000` for a longer search.
fn seeds(default: u64) -> u64 {
    std::env::var("UNDERSTUDY_DURABLE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

#[test]
fn torn_tails_lose_nothing_synced() {
    for seed in 0..seeds(400) {
        assert_eq!(scenario(seed, CrashFaults { torn_tail: true, corrupt_sector: false }), 3);
    }
}

#[test]
fn a_bad_sector_is_reported_or_harmless() {
    let (n, mut complete) = (seeds(600), 0);
    for seed in 0..n {
        complete += scenario(seed, CrashFaults { torn_tail: true, corrupt_sector: true });
    }
    // Both outcomes happen: damage to data that matters, and damage only to
    // data nobody needs any more (unsynced bytes, a covered segment...).
    assert!(complete > 0 && complete < 3 * n as usize, "{complete} complete lives out of {}", 3 * n);
}

#[test]
fn damage_the_snapshot_covers_costs_nothing() {
    let storage = MemStorage::new();
    let mut w = LogWriter::create(storage.clone(), Fsync::Always, 1, 0, 400).unwrap();
    let mut written = Vec::new();
    for seq in 1..=100 {
        let payload = vec![seq as u8; 30];
        w.append(1, seq, seq, &payload).unwrap();
        written.push(Record { epoch: 1, first: seq, last: seq, payload });
    }
    w.sync().unwrap();
    let mut s = SnapshotFileWriter::begin(storage.clone(), 1, 60).unwrap();
    s.chunk(b"state").unwrap();
    s.finish().unwrap();
    // Not compacted yet: the first segment is still there. Damage it.
    let first = storage.list().unwrap().into_iter().filter(|n| n.starts_with("log-")).min().unwrap();
    let mut bytes = vec![0u8; storage.len(&first).unwrap() as usize];
    storage.read_at(&first, 0, &mut bytes).unwrap();
    bytes[21 + 36 + 5] ^= 0xFF;
    let mut f = storage.create(&first).unwrap();
    f.append(&bytes).unwrap();
    f.sync().unwrap();

    let r = recover(&storage).unwrap();
    assert!(r.complete, "{:?}", r.reports);
    assert_eq!(r.records[..], written[60..]);
    assert_eq!(r.reports.len(), 1, "{:?}", r.reports);
    assert!(r.reports[0].contains(&first) && r.reports[0].contains("checksum"), "{:?}", r.reports);
}

#[test]
fn a_gap_after_the_snapshot_returns_nothing_past_it() {
    let storage = MemStorage::new();
    // A log that starts at 101 with no snapshot to connect it to.
    let mut w = LogWriter::create(storage.clone(), Fsync::Always, 1, 100, 1 << 20).unwrap();
    w.append(1, 101, 105, b"x").unwrap();
    w.sync().unwrap();
    let r = recover(&storage).unwrap();
    assert!(!r.complete);
    assert!(r.records.is_empty());
    assert_eq!(r.last_seq, 0);
    assert!(r.reports.iter().any(|l| l.contains("gap") && l.contains("101")), "{:?}", r.reports);
}

#[test]
fn the_snapshot_reader_streams() {
    const CHUNK: usize = 1 << 20;
    let storage = MemStorage::new();
    let mut w = SnapshotFileWriter::begin(storage.clone(), 4, 1000).unwrap();
    for i in 0..50u8 {
        w.chunk(&vec![i; CHUNK]).unwrap();
    }
    let size = w.finish().unwrap();
    assert!(size > 50 * CHUNK as u64);

    let mut r = SnapshotFileReader::open(storage.clone(), "snap-00000000000000001000.snap").unwrap();
    let mut out = Vec::new();
    let mut n = 0u8;
    while r.next_chunk(&mut out).unwrap() {
        assert!(out.len() == CHUNK && out.iter().all(|&b| b == n));
        // The only buffer is the caller's, sized for one chunk.
        assert!(out.capacity() < 2 * CHUNK);
        n += 1;
    }
    assert_eq!(n, 50);
    assert!(out.is_empty());
}

#[test]
fn a_crash_during_segment_creation_is_harmless() {
    let storage = MemStorage::new();
    let mut w = LogWriter::create(storage.clone(), Fsync::Always, 1, 0, 1 << 20).unwrap();
    w.append(1, 1, 3, b"abc").unwrap();
    w.sync().unwrap();
    // The next life died between creating its segment and syncing the header.
    storage.create("log-00000000000000000004-0001.seg").unwrap().append(b"USEG").unwrap();
    let r = recover(&storage).unwrap();
    assert!(r.complete, "{:?}", r.reports);
    assert_eq!(r.last_seq, 3);
    assert_eq!(r.reports.len(), 1);
    assert!(r.reports[0].contains("torn creation"), "{:?}", r.reports);
    assert_eq!(storage.list().unwrap().len(), 1);
}
