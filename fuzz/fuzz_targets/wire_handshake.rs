//! The handshake state machine (`understudy_wire::handshake`) fed arbitrary
//! frames from a peer, as the acceptor (a stranger connecting to the
//! replication port) and as the initiator (a joiner talking to whatever
//! answers). It never panics, and it never authenticates a peer that did
//! not prove the shared secret: the fuzzer does not know the secret, so
//! reaching `Done` on the acceptor side would be a forged proof.
//!
//! Input: a list of pieces, each a frame (`frame_from_piece`: correct
//! checksum, any kind, version, epoch and payload).
#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy_fuzz::{frame_from_piece, pieces};
use understudy_wire::handshake::{Handshake, Step};
use understudy_wire::msg::{Hello, Purpose};
use understudy_wire::FrameDecoder;

const SECRET: &[u8] = b"fuzz-secret-the-fuzzer-does-not-know";

fn hello(node: &str, purpose: Purpose) -> Hello {
    Hello {
        cluster: "c".into(),
        node: node.into(),
        incarnation: 7,
        purpose,
        machine: "kv/1".into(),
        nonce: [9; 16],
        client: "127.0.0.1:6379".into(),
        resume: None,
    }
}

/// Feeds frames until the handshake ends; returns whether it authenticated.
fn drive(hs: &mut Handshake, frames: &[Vec<u8>]) -> bool {
    let dec = FrameDecoder::new(1 << 20);
    for bytes in frames {
        let Ok(Some((f, _))) = dec.decode(bytes) else { return false };
        match hs.on_frame(f) {
            Ok(Step::Send(out)) => {
                // What we send is well-formed frames.
                let mut off = 0;
                while off < out.len() {
                    let (_, used) = dec.decode(&out[off..]).expect("own frames decode").expect("whole frames");
                    off += used;
                }
            }
            Ok(Step::Done(..)) => return true,
            Err(e) => {
                let _ = e.to_string();
                return false;
            }
        }
    }
    false
}

fuzz_target!(|data: &[u8]| {
    let frames: Vec<Vec<u8>> = pieces(data).into_iter().map(frame_from_piece).collect();
    let mut acceptor = Handshake::acceptor(SECRET, hello("a", Purpose::Accept), 3);
    assert!(!drive(&mut acceptor, &frames), "the acceptor authenticated a peer without the secret");
    let (mut initiator, _hello) = Handshake::initiator(SECRET, hello("i", Purpose::Join), 2);
    assert!(!drive(&mut initiator, &frames), "the initiator authenticated a peer without the secret");
});
