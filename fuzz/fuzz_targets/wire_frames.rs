//! The replication channel's decoders (`understudy_wire`): the frame
//! decoder on an arbitrary byte stream, then every message decoder and the
//! entry iterator on what it yields. Nothing panics; nothing claims more
//! bytes than it was given; whatever decodes re-encodes to bytes that
//! decode to the same value.
//!
//! Input: `mode:u8 rest…`. Mode 0: `rest` is the raw stream, split across
//! two reads at `rest[0]`. Otherwise `rest` is a list of pieces, each turned
//! into a frame with a correct checksum (`frame_from_piece`), so mutations
//! reach the payload decoders instead of dying at the crc32c check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy_fuzz::{frame_from_piece, pieces};
use understudy_wire::entry::{EntryIter, EntryKind, OpEntry};
use understudy_wire::msg::{Ack, Heartbeat, Hello, Proof, Reject, SnapshotBegin, SnapshotChunk, SnapshotEnd};
use understudy_wire::{Frame, FrameDecoder, Kind, FRAME_HEADER_BYTES};

/// decode → encode → decode gives the same value (varints may have been
/// non-canonical in the input, so the bytes themselves may differ).
macro_rules! roundtrip {
    ($t:ty, $p:expr) => {
        if let Ok(v) = <$t>::decode($p) {
            let mut out = Vec::new();
            v.encode(&mut out);
            assert_eq!(<$t>::decode(&out).as_ref(), Ok(&v), "{} does not roundtrip", stringify!($t));
        }
    };
}

fn payload(f: &Frame<'_>) {
    let p = f.payload;
    match f.header.kind {
        Kind::Hello => roundtrip!(Hello, p),
        Kind::Proof => roundtrip!(Proof, p),
        Kind::Reject => roundtrip!(Reject, p),
        Kind::Ack => roundtrip!(Ack, p),
        Kind::Heartbeat => roundtrip!(Heartbeat, p),
        Kind::SnapshotBegin => roundtrip!(SnapshotBegin, p),
        Kind::SnapshotEnd => roundtrip!(SnapshotEnd, p),
        Kind::SnapshotChunk => {
            if let Ok(c) = SnapshotChunk::decode(p) {
                assert_eq!(c.data.len() + 4, p.len());
            }
        }
        Kind::Entries => entries(f.header.seq, p),
        Kind::InSync | Kind::JoinAccepted | Kind::Handover | Kind::ArbiterRequest | Kind::ArbiterReply => {}
    }
}

/// The backup's view of an `Entries` payload (`node::exec::validate`, then
/// each op's record).
fn entries(first: u64, p: &[u8]) {
    let range = p.as_ptr_range();
    for (i, e) in EntryIter::new(first, p).enumerate() {
        let Ok(e) = e else { break };
        assert_eq!(e.seq, first.wrapping_add(i as u64));
        let body = e.body.as_ptr_range();
        assert!(range.start <= body.start && body.end <= range.end, "entry body outside the payload");
        if e.kind == EntryKind::Op {
            if let Ok(op) = OpEntry::decode(e.body) {
                let n = op.random.len() / 8;
                let random: Vec<u64> = (0..n).map(|i| op.random_at(i).expect("in range")).collect();
                assert!(op.random_at(n).is_none());
                let mut body = Vec::new();
                OpEntry::encode_record(&mut body, op.now_us, &random);
                body.extend_from_slice(op.op);
                let back = OpEntry::decode(&body).expect("re-encoded op entry decodes");
                assert_eq!((back.now_us, back.random, back.op), (op.now_us, op.random, op.op));
            }
        }
    }
}

fn stream(dec: &FrameDecoder, buf: &[u8], split: usize) {
    // First read: a prefix. Whatever decodes from it must decode the same
    // from the whole buffer.
    let mut off = 0;
    let cut = split.min(buf.len());
    while let Ok(Some((f, used))) = dec.decode(&buf[off..cut]) {
        assert!(used >= FRAME_HEADER_BYTES && used <= cut - off);
        let (g, used2) = dec.decode(&buf[off..]).expect("a whole frame stays whole").expect("frame");
        assert_eq!((f, used), (g, used2));
        payload(&f);
        off += used;
    }
    while let Ok(Some((f, used))) = dec.decode(&buf[off..]) {
        assert!(used >= FRAME_HEADER_BYTES && used <= buf.len() - off);
        if let Some(n) = dec.needed(&buf[off..]) {
            assert_eq!(n, used);
        }
        payload(&f);
        off += used;
    }
}

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else { return };
    let dec = FrameDecoder::new(1 << 20);
    if *mode == 0 {
        let split = rest.first().map_or(0, |b| usize::from(*b) * 4);
        stream(&dec, rest, split);
    } else {
        let mut buf = Vec::new();
        for p in pieces(rest) {
            buf.extend_from_slice(&frame_from_piece(p));
        }
        stream(&dec, &buf, usize::from(*mode) * 16);
        // A small bound: refused with an error, never a panic.
        let _ = FrameDecoder::new(FRAME_HEADER_BYTES as u64).decode(&buf);
    }
});
