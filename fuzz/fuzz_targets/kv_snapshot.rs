//! The KV snapshot decoder (`Kv::restore_chunk` + `restore_finish`), which
//! a joining backup runs on chunks from the primary: arbitrary chunks never
//! panic it, and a restore it accepts is a state that snapshots and
//! restores again to the same digest (the end record's digest is checked
//! on the way, so accepting a snapshot means accepting its exact state).
//!
//! Input: a list of pieces, one chunk each.
#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy_core::StateMachine;
use understudy_fuzz::pieces;
use understudy_kv::Kv;

/// Restores `chunks` into a fresh store; `None` if any step refuses.
fn restore<C: AsRef<[u8]>>(chunks: &[C]) -> Option<Kv> {
    let mut kv = Kv::new();
    for c in chunks {
        if let Err(e) = kv.restore_chunk(c.as_ref()) {
            let _ = e.to_string();
            return None;
        }
    }
    kv.restore_finish().ok().map(|()| kv)
}

fuzz_target!(|data: &[u8]| {
    let Some(kv) = restore(&pieces(data)) else { return };
    let mut w = kv.snapshot();
    let mut chunks = Vec::new();
    loop {
        let mut c = Vec::new();
        if !w.next_chunk(&mut c, 4096) {
            break;
        }
        chunks.push(c);
    }
    let back = restore(&chunks).expect("a restored state snapshots and restores again");
    assert_eq!(back.digest(), kv.digest());
    assert_eq!(back.len(), kv.len());
});
