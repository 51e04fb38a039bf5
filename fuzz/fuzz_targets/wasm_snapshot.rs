//! The guest snapshot stream a joiner decodes: the transfer header
//! (`understudy_node::wasm::transfer::parse_header`) and the snapshot
//! records (`understudy_hypervisor::snapshot::Record::decode`). Arbitrary
//! bytes never panic either; a record that decodes encodes to bytes that
//! decode to the same record (the codec takes overlong varints, so the
//! bytes themselves may differ).
//!
//! Input: a list of pieces; the first is a header, the rest are records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy_fuzz::pieces;
use understudy_hypervisor::snapshot::Record;
use understudy_node::wasm::transfer::parse_header;
use understudy_wire::codec::Reader;

fuzz_target!(|data: &[u8]| {
    let ps = pieces(data);
    if let Some(h) = ps.first() {
        let _ = parse_header(h);
    }
    for p in ps.iter().skip(1) {
        let mut r = Reader::new(p, "record");
        if let Ok(rec) = Record::decode(&mut r) {
            let mut bytes = Vec::new();
            rec.encode(&mut bytes);
            let mut again = Reader::new(&bytes, "record");
            assert_eq!(Record::decode(&mut again).as_ref(), Ok(&rec), "a decoded record encodes to itself");
            assert!(again.is_empty(), "and to nothing more");
        }
    }
});
