//! Live snapshots of a guest with a mapped directory (issue 12): the
//! snapshot carries the directory — files, renames, hard links, symlinks,
//! a journal held open for appending, a reader mid-file, a scratch file
//! that is open but unlinked — consistent with the memory at the snapshot
//! point, whether the guest waits idle or serves a load of writes while
//! the directory is copied. Each resumed copy starts from an emptied
//! directory of its own, replays the rest of the run (checking every file
//! operation's result against the recording) and ends with exactly the
//! recording's directory; a snapshot whose files were altered in transit
//! is refused.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::{config, WatchSink};
use understudy_hypervisor::fs::MapDir;
use understudy_hypervisor::snapshot::Record;
use understudy_hypervisor::{
    asyncify, run, run_restored, Console, Ending, GuestConfig, GuestEnd, LiveWorld, Mode, RunOptions, SnapshotPort, VecSource,
};
use understudy_wire::codec::Reader;

struct Lines(BufReader<TcpStream>);

impl Lines {
    fn connect(addr: std::net::SocketAddr) -> Lines {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Lines(BufReader::new(s))
    }

    fn call(&mut self, line: &str) -> String {
        self.0.get_mut().write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut out = String::new();
        self.0.read_line(&mut out).unwrap();
        out.trim_end().to_string()
    }
}

fn filestore(dir: &Path) -> GuestConfig {
    let mut c = config("filestore");
    c.module = asyncify::transform(&c.module).unwrap_or_else(|e| panic!("{e}")).into();
    c.map_dirs = vec![MapDir { host: dir.to_path_buf(), guest: "/data".into() }];
    c
}

/// What a directory holds: path -> (kind, content or target, hard-link group).
fn tree_of(dir: &Path) -> BTreeMap<String, (char, Vec<u8>, u64)> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, (char, Vec<u8>, u64)>, inos: &mut BTreeMap<u64, u64>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.insert(rel, ('l', std::fs::read_link(&p).unwrap().to_string_lossy().as_bytes().to_vec(), 0));
            } else if m.is_dir() {
                out.insert(rel, ('d', Vec::new(), 0));
                walk(base, &p, out, inos);
            } else {
                let n = inos.len() as u64;
                let group = *inos.entry(m.ino()).or_insert(n);
                out.insert(rel, ('f', std::fs::read(&p).unwrap(), group));
            }
        }
    }
    let (mut out, mut inos) = (BTreeMap::new(), BTreeMap::new());
    walk(dir, dir, &mut out, &mut inos);
    out
}

fn seed(dir: &Path) {
    std::fs::create_dir_all(dir.join("kv")).unwrap();
    std::fs::create_dir_all(dir.join("nested/deeper")).unwrap();
    std::fs::write(dir.join("kv/seed"), "from before the run").unwrap();
    std::fs::write(dir.join("nested/deeper/file"), vec![7u8; 200_000]).unwrap();
    std::os::unix::fs::symlink("kv/seed", dir.join("to-seed")).unwrap();
}

fn take(port: &SnapshotPort) -> (Vec<Record>, u64, u64) {
    let mut s = port.stream().expect("no other snapshot");
    let (mut records, mut chunk) = (Vec::new(), Vec::new());
    loop {
        chunk.clear();
        if !s.next_chunk(&mut chunk, 256 << 10).expect("the snapshot completes") {
            break;
        }
        let mut r = Reader::new(&chunk, "chunk");
        while !r.is_empty() {
            records.push(Record::decode(&mut r).expect("records decode"));
        }
    }
    let Some(Record::Final(f)) = records.last() else { panic!("ends with the final record") };
    assert!(records.iter().any(|r| matches!(r, Record::Tree(_))), "the snapshot carries the tree");
    eprintln!(
        "snapshot at seq {}: files {} bytes while running, {} in the pause",
        f.seq, s.disk_precopied_bytes, s.disk_paused_bytes
    );
    (records.clone(), f.seq, s.disk_precopied_bytes)
}

/// A directory for a resumed copy (which empties it).
fn fresh(d: &Path, name: &str) -> GuestConfig {
    let p = d.join(name);
    std::fs::create_dir_all(&p).unwrap();
    filestore(&p)
}

fn resume(cfg: &GuestConfig, records: Vec<Record>, events: Vec<Vec<u8>>) -> Result<GuestEnd, String> {
    let mut it = records.into_iter();
    let mut next = move || Ok(it.next());
    run_restored(cfg, &mut next, Box::new(VecSource::new(events)), RunOptions::default()).map_err(|e| e.to_string())
}

#[test]
fn snapshots_carry_the_directory_and_resumed_copies_end_with_the_recordings_files() {
    let d = tempfile::tempdir().unwrap();
    let rec = d.path().join("rec");
    seed(&rec);
    let cfg = filestore(&rec);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (sink, port) = (WatchSink::default(), SnapshotPort::new());
    let world = LiveWorld::new(sink.clone())
        .with_listener(l)
        .with_console(Console::Discard, Console::Discard)
        .with_snapshots(port.clone());
    let c2 = cfg.clone();
    let guest = std::thread::spawn(move || run(&c2, Mode::Record(world), RunOptions::default()).expect("guest starts"));

    let mut a = Lines::connect(addr);
    for i in 0..100 {
        assert_eq!(a.call(&format!("PUT k{i} value-{i}")), "OK");
    }
    assert_eq!(a.call("BIG big 3000"), "OK", "a file of many blocks");
    assert_eq!(a.call("PUT k150 linked"), "OK");
    assert_eq!(a.call("LINK k150 hl"), "OK");
    assert_eq!(a.call("APPEND hl +more"), "OK");
    assert_eq!(a.call("APPEND k1 +more"), "OK");
    assert_eq!(a.call("DEL k2"), "OK");
    assert_eq!(a.call("JOURNAL"), "104", "the reader is mid-journal");
    let idle = take(&port);
    assert!(idle.2 > 3_000_000, "the files were copied while the guest ran: {} bytes", idle.2);

    // Under load: writes, renames, appends and unlinks while the files are copied.
    let load = std::thread::spawn(move || {
        let mut b = Lines::connect(addr);
        for i in 0..1500 {
            assert_eq!(b.call(&format!("PUT k{} round-{i}", i % 150)), "OK");
            assert_eq!(b.call(&format!("APPEND k1 .{i}")), "OK");
            if i % 10 == 0 {
                b.call(&format!("DEL k{}", (i / 10) % 150));
            }
            if i % 300 == 0 {
                assert_eq!(b.call(&format!("BIG big{i} 700")), "OK");
            }
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let busy = take(&port);
    load.join().unwrap();
    assert!(a.call("JOURNAL").parse::<u64>().unwrap() > 1500, "the journal has every write");
    let scratch = a.call("SCRATCH");
    assert_eq!(a.call("EXIT"), "BYE");
    let recorded = guest.join().unwrap();
    assert_eq!(recorded.ending, Ending::Exited(0));
    let want = tree_of(&rec);
    assert!(want.contains_key("kv/big") && want.contains_key("to-seed") && !want.contains_key("scratch"));
    assert_eq!(want["kv/k150"].2, want["kv/hl"].2, "k150 and hl are one file");
    assert_eq!(want["kv/hl"].1, b"linked+more");

    let events = sink.snapshot();
    for (i, (records, seq, _)) in [idle, busy].into_iter().enumerate() {
        let copy = d.path().join(format!("copy{i}"));
        std::fs::create_dir_all(copy.join("junk/inside")).unwrap();
        std::fs::write(copy.join("junk/inside/x"), "left from before").unwrap();
        let end = resume(&filestore(&copy), records, events[seq as usize..].to_vec()).expect("resumes");
        assert_eq!(end.ending, Ending::Exited(0), "resumed from seq {seq}: {:?}", end.ending);
        assert_eq!(
            (end.state_hash, end.outputs_digest, end.calls),
            (recorded.state_hash, recorded.outputs_digest, recorded.calls),
            "resumed from seq {seq}: the recording's end (outputs include SCRATCH = {scratch})"
        );
        let got = tree_of(&copy);
        assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "the same names");
        assert!(got == want, "resumed from seq {seq}: the same files, links and contents as the recording's");
    }
}

#[test]
fn a_snapshot_whose_files_changed_in_transit_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let rec = d.path().join("rec");
    seed(&rec);
    let cfg = filestore(&rec);
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (sink, port) = (WatchSink::default(), SnapshotPort::new());
    let world = LiveWorld::new(sink.clone())
        .with_listener(l)
        .with_console(Console::Discard, Console::Discard)
        .with_snapshots(port.clone());
    let c2 = cfg.clone();
    let guest = std::thread::spawn(move || run(&c2, Mode::Record(world), RunOptions::default()).expect("guest starts"));
    let mut a = Lines::connect(addr);
    assert_eq!(a.call("PUT k v"), "OK");
    let (records, seq, _) = take(&port);
    assert_eq!(a.call("EXIT"), "BYE");
    guest.join().unwrap();
    let events = sink.snapshot()[seq as usize..].to_vec();

    // One byte of one file flipped.
    let mut bad = records.clone();
    let data = bad.iter_mut().find_map(|r| if let Record::FileData { data, .. } = r { Some(data) } else { None }).unwrap();
    data[0] ^= 1;
    let e = resume(&fresh(d.path(), "c1"), bad, events.clone()).expect_err("refused");
    assert!(e.contains("differs from the primary's"), "{e}");
    // A file left out.
    let key = records.iter().find_map(|r| if let Record::File { key, .. } = r { Some(*key) } else { None }).unwrap();
    let bad: Vec<Record> = records
        .iter()
        .filter(|r| !matches!(r, Record::File { key: k, .. } | Record::FileData { key: k, .. } if *k == key))
        .cloned()
        .collect();
    assert!(resume(&fresh(d.path(), "c2"), bad, events.clone()).is_err());
    // The tree left out.
    let bad: Vec<Record> = records.iter().filter(|r| !matches!(r, Record::Tree(_))).cloned().collect();
    let e = resume(&fresh(d.path(), "c3"), bad, events.clone()).expect_err("refused");
    assert!(e.contains("no tree"), "{e}");
    // Intact, it resumes.
    assert_eq!(resume(&fresh(d.path(), "c4"), records, events).unwrap().ending, Ending::Exited(0));
}
