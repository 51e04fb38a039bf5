//! The hypervisor's event decoder (`understudy_hypervisor::EventDecoder`),
//! which a WebAssembly backup runs on every recorded host call it replays:
//! arbitrary events never panic it or make it allocate beyond the event's
//! size, and every event it accepts re-encodes (`event::encode`) to bytes
//! that decode to the same call and outcome (the clock deltas included).
//!
//! Input: a list of pieces, each `clock_id:u8 event…`; decoding stops at the
//! first refused event, as replay does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use understudy_fuzz::pieces;
use understudy_hypervisor::event::{encode, push_state, ClockMemory};
use understudy_hypervisor::EventDecoder;

fuzz_target!(|data: &[u8]| {
    let (mut dec, mut again) = (EventDecoder::default(), EventDecoder::default());
    let mut clocks: ClockMemory = [0; 4];
    for p in pieces(data) {
        let [clock, event @ ..] = p else { continue };
        let clock_id = usize::from(*clock % 6);
        let Ok(s) = dec.decode(event, clock_id) else { break };
        assert!(s.outcome.bytes.len() <= event.len(), "decoded more bytes than the event holds");
        assert!(s.outcome.polls.len() <= event.len(), "decoded more poll events than the event can hold");
        let mut out = Vec::new();
        encode(&mut out, &s.header, &s.outcome, clock_id, &mut clocks);
        if let Some(state) = s.state {
            push_state(&mut out, state);
        }
        let back = again.decode(&out, clock_id).expect("a re-encoded event decodes");
        assert_eq!(back, s, "event does not roundtrip");
    }
});
