//! Live snapshots of a running guest (issue 11): a guest is snapshotted
//! while it runs or waits in a host call, resumed from the snapshot in a
//! fresh instance, and replays the events recorded after it to exactly the
//! end the original run reached: the same outputs, exit code, call count
//! and final memory and globals.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{config, event_calls, Client, WatchSink};
use understudy_hypervisor::snapshot::{Record, PAGE_BYTES};
use understudy_hypervisor::Func;
use understudy_hypervisor::{
    asyncify, run, run_restored, Console, Ending, GuestConfig, GuestEnd, LiveWorld, Mode, RunOptions, SnapshotPort, VecSource,
};
use understudy_wire::codec::Reader;

const VERIFY: RunOptions = RunOptions { verify_memory: true };

/// `name` built from guests/, transformed with wasm-opt.
fn transformed(name: &str) -> GuestConfig {
    let mut c = config(name);
    c.module = asyncify::transform(&c.module).unwrap_or_else(|e| panic!("{e}")).into();
    c
}

/// Reads a whole snapshot out of `port` (on the calling thread, as the
/// node's sender thread does).
fn take_snapshot(port: &SnapshotPort) -> (Vec<Record>, u64) {
    let mut s = port.stream().expect("no other snapshot in progress");
    let mut records = Vec::new();
    let mut chunk = Vec::new();
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
    let seq = match records.last() {
        Some(Record::Final(f)) => f.seq,
        other => panic!("the stream ends with its final record, not {other:?}"),
    };
    // Memory was copied while the guest ran; the pause copied only what it
    // wrote meanwhile (plus the unwind region).
    assert!(s.rounds >= 1 && s.precopied_bytes > 0, "pre-copy ran: {} rounds, {} bytes", s.rounds, s.precopied_bytes);
    eprintln!(
        "snapshot at seq {seq}: {} rounds, {} bytes pre-copied, {} in the pause",
        s.rounds, s.precopied_bytes, s.paused_bytes
    );
    (records, seq)
}

/// Resumes `cfg` from `records` and replays `events` after the snapshot.
fn resume(cfg: &GuestConfig, records: Vec<Record>, events: Vec<Vec<u8>>) -> GuestEnd {
    let mut it = records.into_iter();
    let mut next = move || Ok(it.next());
    run_restored(cfg, &mut next, Box::new(VecSource::new(events)), RunOptions::default()).expect("the guest resumes")
}

/// A recording guest serving on a listener, its events, its snapshot port.
struct Running {
    addr: std::net::SocketAddr,
    sink: WatchSink,
    port: SnapshotPort,
    guest: std::thread::JoinHandle<GuestEnd>,
}

/// Starts `cfg` recording, with snapshots, on its own thread.
fn start(cfg: &GuestConfig, stdout: Console) -> Running {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (sink, port) = (WatchSink::default(), SnapshotPort::new());
    let world = LiveWorld::new(sink.clone()).with_listener(l).with_console(stdout, Console::Discard).with_snapshots(port.clone());
    let cfg = cfg.clone();
    let guest = std::thread::spawn(move || run(&cfg, Mode::Record(world), VERIFY).expect("guest starts"));
    Running { addr, sink, port, guest }
}

/// The poll-based RESP server, snapshotted while it waits in poll_oneoff
/// with a client connected, then again while serving a pipelined load;
/// each resumed copy replays to the very end the recording reached.
#[test]
fn a_poll_server_resumes_from_snapshots_taken_idle_and_under_load() {
    let cfg = transformed("kvserver");
    let Running { addr, sink, port, guest } = start(&cfg, Console::Discard);

    let mut a = Client::connect(addr);
    for i in 0..200 {
        assert_eq!(a.call(&["SET", &format!("k{i}"), &"v".repeat(i)]), "+OK");
    }
    // Idle: the guest waits in poll_oneoff; the snapshot wakes it.
    std::thread::sleep(Duration::from_millis(50));
    let (idle, idle_seq) = take_snapshot(&port);
    assert_eq!(a.call(&["GET", "k7"]), "$vvvvvvv", "the guest goes on after the snapshot");

    // Under load: another client pipelines while the snapshot is taken.
    let load = std::thread::spawn(move || {
        let mut b = Client::connect(addr);
        for round in 0..300 {
            let mut batch = Vec::new();
            for i in 0..16 {
                batch.extend(common::encode(&["INCR", &format!("n{}", (round * 16 + i) % 50)]));
            }
            std::io::Write::write_all(&mut b.stream(), &batch).unwrap();
            for _ in 0..16 {
                assert!(b.reply().starts_with(':'));
            }
        }
    });
    std::thread::sleep(Duration::from_millis(20));
    let (busy, busy_seq) = take_snapshot(&port);
    load.join().unwrap();
    assert!(busy_seq > idle_seq);
    assert_eq!(a.call(&["DBSIZE"]), ":250");
    assert_eq!(a.call(&["SHUTDOWN"]), "+OK");
    let rec = guest.join().unwrap();
    assert_eq!(rec.ending, Ending::Exited(0));

    let events = sink.snapshot();
    for (records, seq) in [(idle, idle_seq), (busy, busy_seq)] {
        let pages: usize =
            records.iter().map(|r| if let Record::Pages { data, .. } = r { data.len() / PAGE_BYTES } else { 0 }).sum();
        let end = resume(&cfg, records, events[seq as usize..].to_vec());
        assert_eq!(end.ending, Ending::Exited(0), "resumed from seq {seq}");
        assert_eq!(
            (end.state_hash, end.outputs_digest, end.output_bytes, end.calls, end.events),
            (rec.state_hash, rec.outputs_digest, rec.output_bytes, rec.calls, rec.events),
            "resumed from seq {seq} ({pages} pages sent): the same end as the recording"
        );
    }
}

/// A line-protocol client.
struct Lines(std::io::BufReader<std::net::TcpStream>);

impl Lines {
    fn connect(addr: std::net::SocketAddr) -> Lines {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Lines(std::io::BufReader::new(s))
    }

    fn call(&mut self, line: &str) -> String {
        use std::io::{BufRead, Write};
        self.0.get_mut().write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut out = String::new();
        self.0.read_line(&mut out).unwrap();
        out.trim_end().to_string()
    }
}

/// Runs a line-protocol guest through `script`, which takes snapshots
/// while the guest waits in a host call and says which call it expects the
/// guest to be in; then resumes every snapshot and checks each replays to
/// the recording's very end.
fn blocked_snapshots(name: &str, script: impl FnOnce(std::net::SocketAddr, &dyn Fn(Func) -> (Vec<Record>, u64))) {
    let cfg = transformed(name);
    let Running { addr, sink, port, guest } = start(&cfg, Console::Discard);
    let taken = std::cell::RefCell::new(Vec::new());
    let snap = |blocked_in: Func| {
        // Let the guest reach its wait, then snapshot it there.
        std::thread::sleep(Duration::from_millis(100));
        let s = take_snapshot(&port);
        taken.borrow_mut().push((s.clone(), blocked_in));
        s
    };
    script(addr, &snap);
    let rec = guest.join().unwrap();
    assert_eq!(rec.ending, Ending::Exited(0), "{name} ends by its EXIT command");
    let events = sink.snapshot();
    let calls = event_calls(&events);
    for ((records, seq), blocked_in) in taken.into_inner() {
        assert_eq!(calls[seq as usize].1, blocked_in, "{name}: the call the guest was blocked in when snapshotted at seq {seq}");
        let end = resume(&cfg, records, events[seq as usize..].to_vec());
        assert_eq!(
            (end.ending.clone(), end.state_hash, end.outputs_digest, end.calls, end.events),
            (rec.ending.clone(), rec.state_hash, rec.outputs_digest, rec.calls, rec.events),
            "{name}: resumed from seq {seq} (blocked in {blocked_in:?}): the same end as the recording"
        );
    }
}

/// The blocking one-connection server, snapshotted while blocked in
/// `accept` (no client yet) and in `read` (a client connected and idle).
#[test]
fn a_blocking_server_resumes_from_snapshots_taken_in_accept_and_in_read() {
    blocked_snapshots("blockserver", |addr, snap| {
        snap(Func::SockAccept);
        let mut c = Lines::connect(addr);
        assert_eq!(c.call("INCR"), "1");
        assert_eq!(c.call("INCR"), "2");
        snap(Func::FdRead);
        assert_eq!(c.call("GET"), "2");
        assert_eq!(c.call("EXIT"), "BYE");
    });
}

/// The select()-based server (non-blocking sockets, read/write), snapshotted
/// while it waits in select (poll_oneoff) with no client and with one.
#[test]
fn a_select_server_resumes_from_snapshots_taken_in_select() {
    blocked_snapshots("lineserver", |addr, snap| {
        snap(Func::PollOneoff);
        let mut c = Lines::connect(addr);
        assert_eq!(c.call("SET a 1"), "OK");
        for i in 1..=5 {
            assert_eq!(c.call("INCR n"), i.to_string());
        }
        snap(Func::PollOneoff);
        assert_eq!(c.call("GET n"), "5");
        assert_eq!(c.call("EXIT"), "BYE");
    });
}

/// A snapshot whose memory was tampered with is refused once rewound: the
/// restored guest ends with a divergence, never runs on a wrong state.
#[test]
fn a_corrupted_snapshot_is_a_divergence() {
    let cfg = transformed("kvserver");
    let Running { addr, sink, port, guest } = start(&cfg, Console::Discard);
    let mut a = Client::connect(addr);
    // Memory beyond the unwind region (the last MiB), so some pages are
    // sent only as memory.
    assert_eq!(a.call(&["SET", "big", &"x".repeat(3 << 20)]), "+OK");
    let (records, seq) = take_snapshot(&port);
    assert_eq!(a.call(&["SHUTDOWN"]), "+OK");
    guest.join().unwrap();
    let events = sink.snapshot()[seq as usize..].to_vec();
    let Some(Record::Final(fin)) = records.last() else { panic!("a final record") };
    let region = fin.unwind_at as usize;
    // A byte of memory outside the unwind region, in the last copy sent of
    // its page; and a byte of the region's own contents.
    let mut memory = records.clone();
    let (at, data) = memory
        .iter_mut()
        .rev()
        .find_map(|r| match r {
            Record::Pages { first, data } if (*first as usize) * PAGE_BYTES + 100 < region => Some((*first, data)),
            _ => None,
        })
        .expect("a page below the unwind region");
    data[100] ^= 1;
    let mut orig = records;
    if let Some(Record::Final(f)) = orig.last_mut() {
        f.unwind_orig[10] ^= 1;
    }
    for (what, records) in [(format!("page {at}"), memory), ("the unwind region".to_string(), orig)] {
        match resume(&cfg, records, events.clone()).ending {
            Ending::Diverged(d) => assert!(d.detail.contains("differ from the primary's"), "{what}: {d}"),
            other => panic!("{what} corrupted: expected a divergence, got {other:?}"),
        }
    }
}

/// Checkpoints of a CPU-bound guest with fuel counting instructions: the
/// unwind and rewind cost the guest no fuel (its position in the
/// instruction stream is the same as without snapshots), and a guest
/// resumed from each checkpoint ends with the same fuel consumed.
#[test]
fn checkpoints_keep_the_fuel_position() {
    use understudy_hypervisor::{run_with_checkpoints, CheckpointSink, Fuel, MemorySink, Stdin};
    let mut cfg = transformed("compress");
    cfg.fuel = Fuel { enabled: true, limit: None };
    let input: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2654435761) >> 11) as u8).collect();
    let world = |sink: MemorySink| {
        LiveWorld::new(sink).with_stdin(Stdin::Bytes(input.clone())).with_console(Console::Discard, Console::Discard)
    };
    // Without checkpoints...
    let plain = run(&cfg, Mode::Record(world(MemorySink::default())), VERIFY).unwrap();
    // ...and with one every two events.
    let sink = MemorySink::default();
    let taken: Arc<Mutex<Vec<Vec<Record>>>> = Arc::default();
    let t2 = taken.clone();
    let cp = CheckpointSink { every: 2, sink: Box::new(move |r| t2.lock().unwrap().push(r)) };
    let rec = run_with_checkpoints(&cfg, world(sink.clone()), VERIFY, cp).unwrap();
    assert_eq!(rec.ending, Ending::Exited(0));
    assert_eq!(
        (rec.fuel_consumed, rec.state_hash, rec.outputs_digest, rec.calls),
        (plain.fuel_consumed, plain.state_hash, plain.outputs_digest, plain.calls),
        "checkpoints change nothing the guest computes, not even its fuel"
    );
    let events = sink.events.lock().unwrap().clone();
    let taken = taken.lock().unwrap().clone();
    assert!(taken.len() >= 2, "{} checkpoints", taken.len());
    for records in taken {
        let Some(Record::Final(f)) = records.last() else { panic!("a final record") };
        let seq = f.seq;
        let mut all = vec![Record::Module(cfg.module.to_vec())];
        all.extend(records);
        let end = resume(&cfg, all, events[seq as usize..].to_vec());
        assert_eq!(
            (end.ending.clone(), end.fuel_consumed, end.state_hash),
            (rec.ending.clone(), rec.fuel_consumed, rec.state_hash),
            "from seq {seq}"
        );
    }
}
