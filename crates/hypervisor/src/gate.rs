//! The record/replay gate: every host call of the guest passes here.
//!
//! A WASI function calls [`Gate::pure`] if its result is a function of guest
//! and gate state (args, environ, fdstat, close, …), or [`Gate::begin`] …
//! [`Gate::commit`] if it is not. In record mode `begin` lets the function
//! ask the real world ([`Gate::live`]) and `commit` appends the event; in
//! replay mode `begin` takes the next recorded event, checks it is this call
//! (position, function, argument digest, fuel) and puts the recorded results
//! in [`Gate::out`] for the function to write into guest memory, and `commit`
//! checks the state hash. Any mismatch stops the guest with a [`Divergence`].

use std::collections::HashSet;

use sha2::{Digest, Sha256};
use understudy_wire::codec::{put_varint, Reader};

use crate::error::{CallView, Divergence, DivergenceKind, Stop};
use crate::event::{self, ClockMemory, EventHeader, Func, Outcome};
use crate::fdtable::FdTable;
use crate::output::Target;
use crate::source::{EventSource, Next};
use crate::world::{Live, LiveWorld};

/// Version of [`Gate::encode_state`].
const STATE_VERSION: u64 = 1;

struct Replay {
    source: Box<dyn EventSource>,
    lookahead: Option<Vec<u8>>,
    ended: bool,
}

enum Mode {
    Live(Box<Live>),
    Replay(Replay),
    /// Transitional, never observed outside `go_live`.
    Gone,
}

/// The call in progress.
#[derive(Debug, Clone, Copy)]
struct Current {
    func: Func,
    digest: u32,
    fuel: Option<u64>,
    clock: usize,
    args: [u64; 4],
    nargs: usize,
}

pub(crate) struct Gate {
    mode: Mode,
    pub fds: FdTable,
    /// Host calls so far (the one in progress included).
    pub call: u64,
    last_event_call: u64,
    pub events: u64,
    clocks: ClockMemory,
    /// Record mode: append a state hash to every event.
    verify_state: bool,
    last_fuel: u64,
    cur: Option<Current>,
    /// Results of the recorded call in progress.
    pub out: Outcome,
    /// Event under construction (record) or being replayed.
    buf: Vec<u8>,
    expect_state: Option<u64>,
    /// Outputs of the call in progress, sent at commit with its seq.
    outputs: Vec<(Target, Vec<u8>)>,
    /// Chained digest of every output: `d = SHA-256(d ‖ tag ‖ len ‖ bytes)`,
    /// so it can be carried in a snapshot and continued elsewhere.
    outputs_digest: [u8; 32],
    pub output_bytes: u64,
    unsupported_logged: HashSet<String>,
    pub went_live_at: Option<u64>,
}

impl Gate {
    pub(crate) fn record(world: LiveWorld, verify_state: bool) -> Gate {
        Gate::new(Mode::Live(Box::new(Live::new(world))), verify_state)
    }

    pub(crate) fn replay(source: Box<dyn EventSource>, verify_state: bool) -> Gate {
        Gate::new(Mode::Replay(Replay { source, lookahead: None, ended: false }), verify_state)
    }

    fn new(mode: Mode, verify_state: bool) -> Gate {
        Gate {
            mode,
            fds: FdTable::default(),
            call: 0,
            last_event_call: 0,
            events: 0,
            clocks: [0; 4],
            verify_state,
            last_fuel: 0,
            cur: None,
            out: Outcome::default(),
            buf: Vec::with_capacity(256),
            expect_state: None,
            outputs: Vec::new(),
            outputs_digest: [0; 32],
            output_bytes: 0,
            unsupported_logged: HashSet::new(),
            went_live_at: None,
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        matches!(self.mode, Mode::Live(_))
    }

    /// The real world; only in record mode.
    pub(crate) fn live(&mut self) -> &mut Live {
        match &mut self.mode {
            Mode::Live(l) => l,
            _ => panic!("the real world is only reachable in record mode"),
        }
    }

    /// Whether `commit` wants a state hash.
    pub(crate) fn wants_state(&self) -> bool {
        match self.mode {
            Mode::Live(_) => self.verify_state,
            _ => self.expect_state.is_some(),
        }
    }

    /// Logs an unsupported function once per name.
    pub(crate) fn note_unsupported(&mut self, name: &str) {
        if self.unsupported_logged.insert(name.to_string()) {
            log::warn!("guest called unsupported WASI function {name}: returning ENOSYS");
        }
    }

    /// A call whose result needs no recording. It still counts; in replay,
    /// a recorded event due at this call number is a divergence.
    pub(crate) fn pure(&mut self, func: Func, args: &[u64]) -> Result<(), Stop> {
        self.call += 1;
        if let Mode::Live(l) = &self.mode {
            return l.check();
        }
        let Some(ev) = self.peek()? else { return Ok(()) };
        let h = match event::decode_header(&mut Reader::new(&ev, "event")) {
            Ok(h) => h,
            Err(e) => return Err(self.bad_event(func, args, e.to_string())),
        };
        let due = self.last_event_call.saturating_add(h.call_delta);
        if due <= self.call {
            let cur = current(func, 0, None, 0, args);
            return Err(self.diverge(DivergenceKind::Function, &cur, &h, "the recorded call needs an event, this call none"));
        }
        Ok(())
    }

    /// Starts a call whose result is recorded. Returns whether it is live
    /// (ask the world, fill [`Gate::out`]) or replayed (`out` is filled).
    pub(crate) fn begin(&mut self, func: Func, digest: u32, args: &[u64], fuel: Option<u64>) -> Result<bool, Stop> {
        let clock = if func == Func::ClockTimeGet { args.first().copied().unwrap_or(0) as usize } else { 0 };
        self.call += 1;
        let cur = current(func, digest, fuel, clock, args);
        self.cur = Some(cur);
        self.out.clear();
        self.outputs.clear();
        self.expect_state = None;
        if let Mode::Live(l) = &self.mode {
            l.check()?;
            return Ok(true);
        }
        let Some(ev) = self.take()? else {
            if self.is_live() {
                return Ok(true);
            }
            return Err(Stop::EndOfLog);
        };
        self.buf = ev;
        self.check_recorded(&cur)?;
        Ok(false)
    }

    fn check_recorded(&mut self, cur: &Current) -> Result<(), Stop> {
        let buf = std::mem::take(&mut self.buf);
        let mut r = Reader::new(&buf, "event");
        let h = match event::decode_header(&mut r) {
            Ok(h) => h,
            Err(e) => return Err(self.bad_event(cur.func, &cur.args[..cur.nargs], e.to_string())),
        };
        let due = self.last_event_call.saturating_add(h.call_delta);
        let mismatch = if h.func == Func::SnapshotMarker {
            Some((DivergenceKind::BadEvent, "snapshot markers are not supported by this version".to_string()))
        } else if due != self.call {
            Some((DivergenceKind::Function, format!("the recorded event belongs to call {due}")))
        } else if h.func != cur.func {
            Some((DivergenceKind::Function, "different function".into()))
        } else if h.digest != cur.digest {
            Some((DivergenceKind::Arguments, "different arguments".into()))
        } else if let (Some(rec), Some(ours)) = (h.fuel_delta, cur.fuel) {
            (rec != ours - self.last_fuel).then(|| (DivergenceKind::Fuel, "different position in the instruction stream".into()))
        } else {
            None
        };
        if let Some((kind, detail)) = mismatch {
            return Err(self.diverge(kind, cur, &h, &detail));
        }
        match event::decode_body(&mut r, &h, &mut self.out, cur.clock, &mut self.clocks) {
            Ok(state) => self.expect_state = state,
            Err(e) => return Err(self.bad_event(cur.func, &cur.args[..cur.nargs], e.to_string())),
        }
        self.buf = buf;
        Ok(())
    }

    /// Records an output of the call in progress (both modes: its bytes
    /// enter the outputs digest; in record mode they go to the output gate).
    pub(crate) fn output(&mut self, target: Target, bytes: &[u8]) {
        let tag = match target {
            Target::Stdout => 1u64,
            Target::Stderr => 2,
            Target::Conn(id) => 16 + id,
        };
        let mut d = Sha256::new();
        d.update(self.outputs_digest);
        d.update(tag.to_le_bytes());
        d.update((bytes.len() as u64).to_le_bytes());
        d.update(bytes);
        self.outputs_digest = d.finalize().into();
        self.output_bytes += bytes.len() as u64;
        match (&mut self.mode, target) {
            (Mode::Live(_), _) => self.outputs.push((target, bytes.to_vec())),
            (Mode::Replay(r), Target::Stdout | Target::Stderr) => r.source.console(target == Target::Stderr, bytes),
            _ => {}
        }
    }

    /// Finishes a recorded call: appends its event (record) or checks the
    /// state hash (replay).
    pub(crate) fn commit(&mut self, state: Option<u64>) -> Result<(), Stop> {
        let cur = self.cur.take().expect("commit without begin");
        let call_delta = self.call - self.last_event_call;
        let fuel_delta = cur.fuel.map(|f| f - self.last_fuel);
        let h = EventHeader { func: cur.func, call_delta, digest: cur.digest, fuel_delta, has_state: state.is_some() };
        if let Mode::Live(live) = &mut self.mode {
            self.buf.clear();
            event::encode(&mut self.buf, &h, &self.out, cur.clock, &mut self.clocks);
            if let Some(s) = state {
                event::push_state(&mut self.buf, s);
            }
            let seq = live.append(&self.buf);
            for (target, bytes) in self.outputs.drain(..) {
                match target {
                    Target::Conn(id) => live.send(id, seq, bytes),
                    t => live.output(seq, t, bytes),
                }
            }
        } else if let (Some(rec), Some(ours)) = (self.expect_state, state) {
            if rec != ours {
                let detail = format!("memory and globals differ after the call: recorded {rec:016x}, replayed {ours:016x}");
                return Err(self.diverge(DivergenceKind::State, &cur, &h, &detail));
            }
        }
        self.events += 1;
        self.last_event_call = self.call;
        if let Some(f) = cur.fuel {
            self.last_fuel = f;
        }
        Ok(())
    }

    /// Replay: the next event without consuming it (`None` at the end of the
    /// log or once live).
    fn peek(&mut self) -> Result<Option<Vec<u8>>, Stop> {
        let ev = self.take()?;
        if let (Some(e), Mode::Replay(r)) = (&ev, &mut self.mode) {
            r.lookahead = Some(e.clone());
        }
        Ok(ev)
    }

    /// Replay: the next event (`None` at the end of the log, or after
    /// switching to record mode because the source said go live).
    fn take(&mut self) -> Result<Option<Vec<u8>>, Stop> {
        let Mode::Replay(r) = &mut self.mode else { return Ok(None) };
        if let Some(e) = r.lookahead.take() {
            return Ok(Some(e));
        }
        if r.ended {
            return Ok(None);
        }
        match r.source.next() {
            Next::Event(e) => Ok(Some(e)),
            Next::End => {
                r.ended = true;
                Ok(None)
            }
            Next::GoLive(world) => {
                self.go_live(world);
                Ok(None)
            }
        }
    }

    /// Replay has consumed everything the old primary logged: switch to
    /// record mode in a new world. The old primary's connections are reset;
    /// the guest learns it through its next (recorded) call on them.
    fn go_live(&mut self, world: LiveWorld) {
        let reset = self.fds.reset_all_conns();
        log::info!("going live at call {} after {} replayed events; {reset} guest connections reset", self.call, self.events);
        self.mode = Mode::Live(Box::new(Live::new(world)));
        self.went_live_at = Some(self.call);
    }

    fn view(cur: &Current) -> CallView {
        let args = cur.args[..cur.nargs].iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ");
        CallView { call: 0, func: cur.func, digest: cur.digest, fuel: cur.fuel, args }
    }

    fn diverge(&self, kind: DivergenceKind, cur: &Current, h: &EventHeader, detail: &str) -> Stop {
        let replayed = CallView { call: self.call, ..Gate::view(cur) };
        let recorded = CallView {
            call: self.last_event_call.saturating_add(h.call_delta),
            func: h.func,
            digest: h.digest,
            fuel: h.fuel_delta.map(|d| self.last_fuel + d),
            args: String::new(),
        };
        Stop::Diverged(Box::new(Divergence { kind, recorded: Some(recorded), replayed, detail: detail.to_string() }))
    }

    fn bad_event(&self, func: Func, args: &[u64], detail: String) -> Stop {
        let replayed = CallView { call: self.call, ..Gate::view(&current(func, 0, None, 0, args)) };
        Stop::Diverged(Box::new(Divergence { kind: DivergenceKind::BadEvent, recorded: None, replayed, detail }))
    }

    /// Digest of every output so far (targets, lengths and bytes, in order).
    pub(crate) fn outputs_digest(&self) -> [u8; 32] {
        self.outputs_digest
    }

    /// Rolls back the call in progress, whose wait was interrupted for a
    /// snapshot before anything was recorded (record mode only): the guest
    /// makes the same call again once rewound.
    pub(crate) fn abort_call(&mut self) {
        assert!(self.is_live(), "only a recording guest is snapshotted");
        assert!(self.cur.take().is_some(), "no call in progress to roll back");
        assert!(self.call > self.last_event_call, "the interrupted call was counted");
        self.call -= 1;
        self.out.clear();
        self.outputs.clear();
    }

    /// Seq of the last event recorded (record mode): a snapshot's position.
    pub(crate) fn last_seq(&mut self) -> u64 {
        self.live().last_seq
    }

    /// The gate's state of the guest, for a snapshot taken between calls.
    pub(crate) fn encode_state(&self) -> Vec<u8> {
        assert!(self.cur.is_none(), "a snapshot is taken between calls");
        let mut b = Vec::new();
        put_varint(&mut b, STATE_VERSION);
        self.fds.encode(&mut b);
        for v in [self.call, self.last_event_call, self.events, self.last_fuel, self.output_bytes] {
            put_varint(&mut b, v);
        }
        for c in self.clocks {
            put_varint(&mut b, c);
        }
        b.extend_from_slice(&self.outputs_digest);
        b
    }

    /// Restores what [`Gate::encode_state`] captured (a replaying gate that
    /// made no call yet).
    pub(crate) fn restore_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        assert_eq!(self.call, 0, "state is restored into a fresh gate");
        let mut r = Reader::new(bytes, "gate state");
        let e = |e: understudy_wire::WireError| e.to_string();
        let v = r.varint().map_err(e)?;
        if v != STATE_VERSION {
            return Err(format!("gate state version {v}, expected {STATE_VERSION}"));
        }
        self.fds = FdTable::decode(&mut r).map_err(e)?;
        let mut n = [0u64; 5];
        for x in &mut n {
            *x = r.varint().map_err(e)?;
        }
        [self.call, self.last_event_call, self.events, self.last_fuel, self.output_bytes] = n;
        for c in &mut self.clocks {
            *c = r.varint().map_err(e)?;
        }
        self.outputs_digest = r.take(32).map_err(e)?.try_into().expect("32 bytes");
        r.finish().map_err(e)?;
        if self.last_event_call > self.call {
            return Err(format!("last event at call {} after call {}", self.last_event_call, self.call));
        }
        Ok(())
    }

    /// Ends the run: in record mode waits until released outputs are out.
    pub(crate) fn finish(&mut self) {
        if let Mode::Live(live) = std::mem::replace(&mut self.mode, Mode::Gone) {
            live.finish();
        }
    }
}

fn current(func: Func, digest: u32, fuel: Option<u64>, clock: usize, args: &[u64]) -> Current {
    let mut a = [0u64; 4];
    let n = args.len().min(4);
    a[..n].copy_from_slice(&args[..n]);
    Current { func, digest, fuel, clock, args: a, nargs: n }
}
