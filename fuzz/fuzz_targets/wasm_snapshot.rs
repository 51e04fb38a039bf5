//! The guest snapshot stream a joiner decodes: the transfer header
//! (`understudy_node::wasm::transfer::parse_header`) and the snapshot
//! records (`understudy_hypervisor::snapshot::Record::decode`). Arbitrary
//! bytes never panic either; a record that decodes encodes back to the
//! very bytes it was read from.
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
        let start = r.position();
        if let Ok(rec) = Record::decode(&mut r) {
            let mut back = Vec::new();
            rec.encode(&mut back);
            assert_eq!(&back[..], &p[start..r.position()], "a decoded record encodes back to its bytes");
        }
    }
});
