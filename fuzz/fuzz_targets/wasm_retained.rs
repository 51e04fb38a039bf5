//! The WebAssembly retained log's chunk parser
//! (`understudy_node::wasm::retained::Retained::restore_chunk`), which a
//! joiner runs on the log the primary streams it: arbitrary chunks never
//! panic it; what it accepts it can iterate (its own iterator `expect`s
//! well-formed blocks) and stream again to a joiner of its own, entry for
//! entry.
//!
//! Input: a list of pieces, one chunk each; the restore stops at the first
//! refused chunk, as a join does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy_fuzz::pieces;
use understudy_node::wasm::retained::Retained;

fuzz_target!(|data: &[u8]| {
    let mut log = Retained::default();
    for chunk in pieces(data) {
        if log.restore_chunk(chunk).is_err() {
            break;
        }
    }
    assert_eq!(log.entries().count() as u64, log.count());
    let mut w = log.snapshot();
    let mut back = Retained::default();
    let mut chunk = Vec::new();
    while {
        chunk.clear();
        w.next_chunk(&mut chunk, 1 << 20)
    } {
        back.restore_chunk(&chunk).expect("its own snapshot restores");
    }
    assert_eq!(back.count(), log.count());
    assert!(back.entries().eq(log.entries()));
});
