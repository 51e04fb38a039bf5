//! Writes the seed corpora in `fuzz/corpus/<target>/` from the real
//! encoders, so every target starts from valid inputs and mutates inward.
//!
//! ```sh
//! cd fuzz && cargo run --release --example seed_corpus    # a normal build, ~5 min the first time
//! ```
//!
//! The seeds are committed; rerun this after a format change.

use std::path::Path;

use understudy_core::StateMachine;
use understudy_fuzz::{join, piece_for_frame, ScriptedCtx, NOW_US};
use understudy_hypervisor::event::{encode, push_state, EventHeader, Func, Outcome, PollEvent};
use understudy_kv::{Dispatch, Kv, Session};
use understudy_node::wasm::retained::Retained;
use understudy_wire::entry::{BatchWriter, EntryKind, OpEntry};
use understudy_wire::frame::{encode as frame, FrameHeader, Kind};
use understudy_wire::handshake::{Handshake, Step};
use understudy_wire::msg::{
    Ack, Heartbeat, Hello, Proof, Purpose, Reject, RejectCode, SnapshotBegin, SnapshotChunk, SnapshotEnd,
};
use understudy_wire::{FrameDecoder, PROTOCOL_VERSION};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(name), bytes).expect("seed file");
}

fn resp(cmds: &[&[&str]]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in cmds {
        out.extend_from_slice(format!("*{}\r\n", c.len()).as_bytes());
        for a in *c {
            out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
    }
    out
}

/// Runs commands through a session and a store as the node does; returns
/// the ops logged and the store.
fn run_commands(cmds: &[&[&str]]) -> (Vec<Vec<u8>>, Kv) {
    let (mut kv, mut session, mut ctx) = (Kv::new(), Session::new(1), ScriptedCtx::new(NOW_US));
    let (mut ops, mut op, mut out) = (Vec::new(), Vec::new(), Vec::new());
    for c in cmds {
        let argv: Vec<&[u8]> = c.iter().map(|a| a.as_bytes()).collect();
        out.clear();
        match session.dispatch(&argv, &mut op, &mut out) {
            Dispatch::Write => {
                kv.apply(&mut ctx, &op, &mut out);
                ops.push(op.clone());
            }
            Dispatch::Read => kv.read_argv(NOW_US / 1000, &argv, &mut out),
            _ => {}
        }
    }
    // An expire-cycle op, as the primary logs it once keys are due.
    if kv.expire_cycle_op(NOW_US / 1000 + 10_000_000, 16, &mut op) {
        kv.apply(&mut ctx, &op, &mut out);
        ops.push(op.clone());
    }
    (ops, kv)
}

const WRITES: &[&[&str]] = &[
    &["SET", "k", "v"],
    &["SET", "n", "10"],
    &["INCR", "n"],
    &["INCRBY", "n", "5"],
    &["APPEND", "k", "more"],
    &["SET", "t", "x", "EX", "100"],
    &["SET", "u", "y", "PX", "5"],
    &["PEXPIRE", "k", "1000000"],
    &["HSET", "h", "f1", "a", "f2", "b"],
    &["LPUSH", "l", "1", "2", "3"],
    &["RPUSH", "l", "4"],
    &["SADD", "s", "x", "y", "z"],
    &["MULTI"],
    &["SET", "m", "1"],
    &["INCR", "m"],
    &["HDEL", "h", "f1"],
    &["EXEC"],
    &["DEL", "u"],
    &["GETSET", "k", "w"],
    &["MSET", "a", "1", "b", "2"],
];

fn snapshot_chunks(kv: &Kv, max: usize) -> Vec<Vec<u8>> {
    let mut w = kv.snapshot();
    let mut chunks = Vec::new();
    loop {
        let mut c = Vec::new();
        if !w.next_chunk(&mut c, max) {
            return chunks;
        }
        chunks.push(c);
    }
}

fn resp_seeds() {
    let t = "resp_parse";
    write(t, "multibulk", &[&[1u8, 7][..], &resp(&[&["SET", "k", "v"], &["GET", "k"], &["INCR", "n"]])].concat());
    write(t, "inline", &[&[1u8, 3][..], b"PING\r\nECHO hello\r\nSET a 'b c'\r\n\r\n"].concat());
    write(t, "too_large", &[&[0u8, 63][..], &resp(&[&["SET", "key", &"x".repeat(100)]])].concat());
    write(t, "empty_arrays", &[&[2u8, 1][..], b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n"].concat());
    write(t, "partial", &[&[3u8, 5][..], b"*2\r\n$3\r\nGET\r\n$10\r\nabc"].concat());
    write(t, "bad_length", &[&[2u8, 9][..], b"*2\r\n$3\r\nGET\r\n$-5\r\nabc\r\n*x\r\n"].concat());
    write(t, "transaction", &[&[2u8, 11][..], &resp(&[&["MULTI"], &["SET", "a", "1"], &["EXEC"]])].concat());
}

fn hello(node: &str, purpose: Purpose) -> Hello {
    Hello {
        cluster: "c".into(),
        node: node.into(),
        incarnation: 7,
        purpose,
        machine: "kv/1".into(),
        nonce: [3; 16],
        client: "127.0.0.1:6379".into(),
        resume: None,
    }
}

/// Every frame kind, as the real encoders write them.
fn frames() -> Vec<(FrameHeader, Vec<u8>)> {
    let h = |kind, seq| FrameHeader { epoch: 2, seq, kind };
    let enc = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = Vec::new();
        f(&mut v);
        v
    };
    let mut entries = Vec::new();
    let mut w = BatchWriter::begin(&mut entries, 2, 41);
    let mut body = Vec::new();
    OpEntry::encode_record(&mut body, Some(NOW_US), &[7, 8]);
    body.extend_from_slice(&run_commands(&[&["SET", "k", "v"]]).0[0]);
    w.push(&mut entries, EntryKind::Op, &body);
    w.push(&mut entries, EntryKind::Barrier, &[]);
    let mut plain = Vec::new();
    OpEntry::encode_record(&mut plain, None, &[]);
    plain.extend_from_slice(&run_commands(&[&["INCR", "n"]]).0[0]);
    w.push(&mut entries, EntryKind::Op, &plain);
    w.push(&mut entries, EntryKind::Event, b"\x06\x01\0\0\0\0\0\x02");
    w.finish(&mut entries);
    let (batch, _) = FrameDecoder::new(1 << 20).decode(&entries).unwrap().unwrap();
    let mut chunk = Vec::new();
    SnapshotChunk::encode_header(0, &mut chunk);
    chunk.extend_from_slice(&snapshot_chunks(&run_commands(WRITES).1, 4096)[0]);
    vec![
        (h(Kind::Hello, 0), enc(&|o| hello("a", Purpose::Join).encode(o))),
        (h(Kind::Proof, 0), enc(&|o| Proof { mac: [5; 32] }.encode(o))),
        (h(Kind::Reject, 0), enc(&|o| Reject { code: RejectCode::StaleEpoch, message: "old".into() }.encode(o))),
        (h(Kind::JoinAccepted, 40), Vec::new()),
        (batch.header, batch.payload.to_vec()),
        (h(Kind::Ack, 0), enc(&|o| Ack { received: 44, executed: 43, snapshot_loaded: true }.encode(o))),
        (h(Kind::Heartbeat, 0), enc(&|o| Heartbeat { last_seq: 44 }.encode(o))),
        (h(Kind::InSync, 0), Vec::new()),
        (h(Kind::SnapshotBegin, 40), enc(&|o| SnapshotBegin { bytes_hint: 1000 }.encode(o))),
        (h(Kind::SnapshotChunk, 40), chunk),
        (h(Kind::SnapshotEnd, 40), enc(&|o| SnapshotEnd { chunks: 1, bytes: 100 }.encode(o))),
        (h(Kind::ArbiterRequest, 0), br#"{"op":"read","cluster":"c"}"#.to_vec()),
    ]
}

fn wire_seeds() {
    let all = frames();
    let mut stream = Vec::new();
    for (h, p) in &all {
        frame(&mut stream, *h, p);
    }
    write("wire_frames", "stream", &[&[0u8, 40][..], &stream].concat());
    let pieces: Vec<Vec<u8>> =
        all.iter().map(|(h, p)| piece_for_frame(PROTOCOL_VERSION, h.epoch, h.seq, h.kind as u8, p)).collect();
    write("wire_frames", "pieces", &[&[1u8][..], &join(&pieces)].concat());
    for (i, p) in pieces.iter().enumerate() {
        write("wire_frames", &format!("piece_{i:02}"), &[&[2u8][..], &join(std::slice::from_ref(p))].concat());
    }
}

/// The frames each side of a real handshake receives.
fn handshake_seeds() {
    let secret = b"some-secret";
    let dec = FrameDecoder::new(1 << 20);
    let (mut i, to_a) = Handshake::initiator(secret, hello("i", Purpose::Join), 1);
    let mut a = Handshake::acceptor(secret, hello("a", Purpose::Accept), 2);
    let piece = |bytes: &[u8]| {
        let mut out = Vec::new();
        let mut off = 0;
        while let Ok(Some((f, used))) = dec.decode(&bytes[off..]) {
            out.push(piece_for_frame(PROTOCOL_VERSION, f.header.epoch, f.header.seq, f.header.kind as u8, f.payload));
            off += used;
        }
        out
    };
    let to_acceptor = piece(&to_a);
    let (f, _) = dec.decode(&to_a).unwrap().unwrap();
    let Ok(Step::Send(to_i)) = a.on_frame(f) else { panic!("acceptor answers a hello") };
    let to_initiator = piece(&to_i);
    let mut off = 0;
    let mut last = Vec::new();
    while let Ok(Some((f, used))) = dec.decode(&to_i[off..]) {
        if let Ok(Step::Done(out, _)) = i.on_frame(f) {
            last = out;
        }
        off += used;
    }
    write("wire_handshake", "acceptor_hello", &join(&to_acceptor));
    write("wire_handshake", "acceptor_hello_proof", &join(&[to_acceptor.clone(), piece(&last)].concat()));
    write("wire_handshake", "initiator_hello_proof", &join(&to_initiator));
    let reject = Handshake::reject(3, RejectCode::Busy, "busy");
    write("wire_handshake", "reject", &join(&piece(&reject)));
}

fn kv_seeds() {
    let (ops, kv) = run_commands(WRITES);
    write("kv_apply", "writes", &join(&ops));
    for (i, op) in ops.iter().enumerate() {
        write("kv_apply", &format!("op_{i:02}"), &join(std::slice::from_ref(op)));
    }
    write("kv_snapshot", "small_chunks", &join(&snapshot_chunks(&kv, 64)));
    write("kv_snapshot", "one_chunk", &join(&snapshot_chunks(&kv, 1 << 15)));
    write("kv_snapshot", "empty", &join(&snapshot_chunks(&Kv::new(), 4096)));
    let big: Vec<String> = (0..300).map(|i| format!("member-{i:04}-{}", "x".repeat(200))).collect();
    let mut cmd = vec!["SADD", "big"];
    cmd.extend(big.iter().map(String::as_str));
    let (_, kv) = run_commands(&[&cmd]);
    let chunks = snapshot_chunks(&kv, 16 << 10);
    if chunks.iter().all(|c| c.len() <= usize::from(u16::MAX)) {
        write("kv_snapshot", "continuation", &join(&chunks));
    }
    let mut stream = Vec::new();
    for c in WRITES {
        stream.extend_from_slice(&resp(&[c]));
        if let Some(k) = c.get(1) {
            stream.extend_from_slice(&resp(&[&["GET", k], &["TTL", k], &["TYPE", k]]));
        }
    }
    stream.extend_from_slice(&resp(&[&["LRANGE", "l", "0", "-1"], &["HGETALL", "h"], &["SMEMBERS", "s"], &["DBSIZE"]]));
    write("kv_commands", "mixed", &stream);
    write("kv_commands", "inline", b"SET a 1\r\nINCR a\r\nGET a\r\nMULTI\r\nDEL a\r\nEXEC\r\nQUIT\r\n");
}

fn event(func: Func, o: &Outcome, clock_id: usize, fuel: Option<u64>, state: Option<u64>, clocks: &mut [u64; 4]) -> Vec<u8> {
    let h = EventHeader { func, call_delta: 3, digest: 0xdead_beef, fuel_delta: fuel, has_state: state.is_some() };
    let mut out = vec![clock_id as u8];
    encode(&mut out, &h, o, clock_id, clocks);
    if let Some(s) = state {
        push_state(&mut out, s);
    }
    out
}

fn hypervisor_seeds() {
    let mut clocks = [0u64; 4];
    let scalar = |v| Outcome { scalar: v, ..Outcome::default() };
    let events = vec![
        event(Func::ClockTimeGet, &scalar(NOW_US * 1000), 0, None, None, &mut clocks),
        event(Func::ClockTimeGet, &scalar(5_000_000), 1, None, None, &mut clocks),
        event(Func::ClockTimeGet, &scalar(4_000_000), 1, Some(1234), None, &mut clocks),
        event(Func::ClockResGet, &scalar(1000), 1, None, None, &mut clocks),
        event(
            Func::RandomGet,
            &Outcome { bytes: vec![1, 2, 3, 4, 5, 6, 7, 8], ..Outcome::default() },
            0,
            None,
            Some(99),
            &mut clocks,
        ),
        event(Func::FdWrite, &scalar(12), 0, None, None, &mut clocks),
        event(Func::SockRecv, &Outcome { bytes: b"PING\r\n".to_vec(), ..Outcome::default() }, 0, None, None, &mut clocks),
        event(
            Func::PollOneoff,
            &Outcome {
                polls: vec![
                    PollEvent { index: 0, errno: 0, nbytes: 6, flags: 0 },
                    PollEvent { index: 2, errno: 0, nbytes: 0, flags: 1 },
                ],
                ..Outcome::default()
            },
            0,
            None,
            None,
            &mut clocks,
        ),
        event(Func::SockAccept, &Outcome { errno: 6, ..Outcome::default() }, 0, None, None, &mut clocks),
        event(Func::SockAccept, &Outcome::default(), 0, None, None, &mut clocks),
        event(Func::ProcExit, &Outcome::default(), 0, Some(7), Some(42), &mut clocks),
    ];
    write("hypervisor_events", "session", &join(&events));
    for (i, e) in events.iter().enumerate() {
        write("hypervisor_events", &format!("event_{i:02}"), &join(std::slice::from_ref(e)));
    }
}

fn retained_seeds() {
    let mut r = Retained::default();
    for i in 1..=40u64 {
        let kind = if i % 7 == 0 { EntryKind::Barrier } else { EntryKind::Event };
        r.push(i, kind, &vec![i as u8; (i % 13) as usize]);
    }
    let mut w = r.snapshot();
    let mut chunks = Vec::new();
    let mut c = Vec::new();
    while w.next_chunk(&mut c, 1 << 20) {
        chunks.push(std::mem::take(&mut c));
    }
    write("wasm_retained", "log", &join(&chunks));
    write("wasm_retained", "torn", &join(&[&chunks[0][..20], &chunks[0][20..]]));
}

fn snapshot_seeds() {
    use understudy_hypervisor::snapshot::{FinalState, Record};
    let mut header = vec![1u8];
    understudy_wire::codec::put_bytes(&mut header, b"\0asm\x01\0\0\0");
    let fin = FinalState {
        seq: 42,
        memory_pages: 2,
        globals: vec![(1, 66_000), (2, 7)],
        unwind_at: 65_536,
        unwind_orig: vec![0; 64],
        gate: vec![1, 1, 4, 1, 0, 2, 0, 3, 0, 4, 0],
        fuel_remaining: Some(1000),
        limit_hits: 0,
        state_hash: [7; 32],
    };
    let (mut module, mut last) = (Vec::new(), Vec::new());
    Record::Module(b"\0asm\x01\0\0\0".to_vec()).encode(&mut module);
    Record::Final(Box::new(fin)).encode(&mut last);
    write("wasm_snapshot", "stream", &join(&[&header, &module, &last]));
    write("wasm_snapshot", "pages-torn", &join(&[&header[..], &[2u8, 0, 0x80, 0x80, 0x04, 1, 2, 3][..]]));
}

fn main() {
    snapshot_seeds();
    resp_seeds();
    wire_seeds();
    handshake_seeds();
    kv_seeds();
    hypervisor_seeds();
    retained_seeds();
    println!("seed corpora written to {}/corpus", env!("CARGO_MANIFEST_DIR"));
}
