//! `Kv::apply` on arbitrary op bytes, as a backup runs it on log entries:
//! a corrupt op is answered with an error and never panics; two replicas
//! applying the same ops with the same recorded time reach the same reply
//! and digest (determinism, DESIGN §2); and any state reached snapshots and
//! restores to the same digest (state transfer, DESIGN §3).
//!
//! Input: a list of pieces, one op each (the body of an `Op` log entry
//! after its record of nondeterminism).
#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy_core::StateMachine;
use understudy_fuzz::{pieces, ScriptedCtx, NOW_US};
use understudy_kv::Kv;

fuzz_target!(|data: &[u8]| {
    let (mut a, mut b) = (Kv::new(), Kv::new());
    let (mut ca, mut cb) = (ScriptedCtx::new(NOW_US), ScriptedCtx::new(NOW_US));
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for op in pieces(data) {
        ra.clear();
        rb.clear();
        a.apply(&mut ca, op, &mut ra);
        b.apply(&mut cb, op, &mut rb);
        assert!(!ra.is_empty(), "every op gets a reply");
        assert_eq!(ra, rb, "replicas answered the same op differently");
    }
    assert_eq!(a.digest(), b.digest(), "replicas diverged");
    let mut w = a.snapshot();
    let mut c = Kv::new();
    let mut chunk = Vec::new();
    while {
        chunk.clear();
        w.next_chunk(&mut chunk, 1024)
    } {
        c.restore_chunk(&chunk).expect("a snapshot of a reachable state restores");
    }
    c.restore_finish().expect("a snapshot of a reachable state is complete");
    assert_eq!(c.digest(), a.digest());
});
