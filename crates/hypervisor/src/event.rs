//! The recorded event: one host call whose result the guest could not have
//! computed itself, as the bytes the engine carries in an `EntryKind::Event`
//! log entry body.
//!
//! ```text
//! event   := code:u8  call_delta:varint  digest:u32 LE  [fuel:varint]  errno:varint  [payload]  [state:u64 LE]
//! code    := func:6 bits | 0x40 if `state` follows | 0x80 if `fuel` follows
//! payload := present only when errno = 0; its shape depends on func:
//!   clock_res_get               resolution:varint
//!   clock_time_get              zigzag(time - previous time of that clock):varint
//!   random_get, fd_read,        len:varint bytes[len]
//!   sock_recv
//!   fd_write, sock_send         nbytes:varint
//!   poll_oneoff                 n:varint (index:varint error:varint nbytes:varint flags:u8) × n
//!   sock_accept, proc_exit      (nothing: the new fd is allocated by the gate, the exit code is in the digest)
//! ```
//!
//! - `call_delta` is the number of host calls since the previous event (at
//!   least 1): calls that need no recording (args, environ, fdstat, close…)
//!   still count, so a replica that makes a different sequence of calls is
//!   caught at the first call that differs.
//! - `digest` is crc32c over the call's arguments as the guest passed them,
//!   including the bytes of an output (`fd_write`, `sock_send`): a different
//!   output is a divergence.
//! - `fuel` (only when fuel is enabled) is the fuel consumed since the previous
//!   event: the position of the call in the instruction stream.
//! - `state` (only in `verify_memory` mode) is a hash of linear memory and
//!   mutable globals right after the call wrote its results.
//!
//! Function code 0 is reserved for a snapshot marker (not produced yet).

use understudy_wire::codec::{put_bytes, put_varint, Reader};
use understudy_wire::WireError;

/// Version of the event encoding; part of the fingerprint.
pub const EVENT_FORMAT_VERSION: u32 = 2;

const FLAG_STATE: u8 = 0x40;
const FLAG_FUEL: u8 = 0x80;
const FUNC_MASK: u8 = 0x3f;

macro_rules! funcs {
    ($($name:ident = $code:literal, $wasi:literal;)*) => {
        /// Every `wasi_snapshot_preview1` function the gate knows, with its
        /// code in the event encoding.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Func { $($name = $code,)* }

        impl Func {
            /// The preview1 import name.
            pub fn name(self) -> &'static str {
                match self { $(Func::$name => $wasi,)* }
            }

            pub fn from_code(code: u8) -> Option<Func> {
                match code { $($code => Some(Func::$name),)* _ => None }
            }

            /// Every function, for the linker.
            pub const ALL: &'static [Func] = &[$(Func::$name,)*];
        }
    };
}

funcs! {
    SnapshotMarker = 0, "(snapshot marker)";
    ArgsGet = 1, "args_get";
    ArgsSizesGet = 2, "args_sizes_get";
    EnvironGet = 3, "environ_get";
    EnvironSizesGet = 4, "environ_sizes_get";
    ClockResGet = 5, "clock_res_get";
    ClockTimeGet = 6, "clock_time_get";
    RandomGet = 7, "random_get";
    FdWrite = 8, "fd_write";
    FdRead = 9, "fd_read";
    FdClose = 10, "fd_close";
    FdSeek = 11, "fd_seek";
    FdFdstatGet = 12, "fd_fdstat_get";
    FdFdstatSetFlags = 13, "fd_fdstat_set_flags";
    FdPrestatGet = 14, "fd_prestat_get";
    FdPrestatDirName = 15, "fd_prestat_dir_name";
    PollOneoff = 16, "poll_oneoff";
    SockAccept = 17, "sock_accept";
    SockRecv = 18, "sock_recv";
    SockSend = 19, "sock_send";
    SockShutdown = 20, "sock_shutdown";
    ProcExit = 21, "proc_exit";
    SchedYield = 22, "sched_yield";
    FdAdvise = 23, "fd_advise";
    FdAllocate = 24, "fd_allocate";
    FdDatasync = 25, "fd_datasync";
    FdSync = 26, "fd_sync";
    FdPread = 27, "fd_pread";
    FdPwrite = 28, "fd_pwrite";
    FdFilestatGet = 29, "fd_filestat_get";
    FdFilestatSetSize = 30, "fd_filestat_set_size";
    FdFilestatSetTimes = 31, "fd_filestat_set_times";
    FdReaddir = 32, "fd_readdir";
    FdRenumber = 33, "fd_renumber";
    FdTell = 34, "fd_tell";
    FdFdstatSetRights = 35, "fd_fdstat_set_rights";
    PathCreateDirectory = 36, "path_create_directory";
    PathFilestatGet = 37, "path_filestat_get";
    PathFilestatSetTimes = 38, "path_filestat_set_times";
    PathLink = 39, "path_link";
    PathOpen = 40, "path_open";
    PathReadlink = 41, "path_readlink";
    PathRemoveDirectory = 42, "path_remove_directory";
    PathRename = 43, "path_rename";
    PathSymlink = 44, "path_symlink";
    PathUnlinkFile = 45, "path_unlink_file";
    Unsupported = 63, "(unsupported)";
}

/// Shape of a func's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    None,
    Scalar,
    Bytes,
    Polls,
    /// A filesystem call: a scalar and bytes (either may be empty).
    ScalarBytes,
}

impl Func {
    /// Whether calls of this function produce an event (their result can
    /// differ between machines) or are pure functions of guest and gate state.
    pub fn is_recorded(self) -> bool {
        self.shape().is_some()
    }

    fn shape(self) -> Option<Shape> {
        Some(match self {
            Func::ClockResGet | Func::ClockTimeGet | Func::FdWrite | Func::SockSend => Shape::Scalar,
            Func::RandomGet | Func::FdRead | Func::SockRecv => Shape::Bytes,
            Func::PollOneoff => Shape::Polls,
            Func::SockAccept | Func::ProcExit => Shape::None,
            Func::FdAdvise
            | Func::FdDatasync
            | Func::FdSync
            | Func::FdPread
            | Func::FdPwrite
            | Func::FdFilestatGet
            | Func::FdFilestatSetSize
            | Func::FdFilestatSetTimes
            | Func::FdReaddir
            | Func::FdTell
            | Func::FdSeek
            | Func::PathCreateDirectory
            | Func::PathFilestatGet
            | Func::PathFilestatSetTimes
            | Func::PathLink
            | Func::PathOpen
            | Func::PathReadlink
            | Func::PathRemoveDirectory
            | Func::PathRename
            | Func::PathSymlink
            | Func::PathUnlinkFile => Shape::ScalarBytes,
            _ => return None,
        })
    }
}

/// One entry of a `poll_oneoff` result: which subscription fired and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PollEvent {
    /// Index of the subscription in the guest's array.
    pub index: u32,
    pub errno: u16,
    /// Bytes available (reads) or writable (writes).
    pub nbytes: u64,
    /// `EVENTRWFLAGS_FD_READWRITE_HANGUP` or 0.
    pub flags: u8,
}

/// What the guest observed from one recorded call. The gate keeps one and
/// reuses its buffers, so a host call allocates nothing here.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub errno: u16,
    /// The scalar result (time, resolution, byte count), per [`Func`].
    pub scalar: u64,
    pub bytes: Vec<u8>,
    pub polls: Vec<PollEvent>,
}

impl Outcome {
    pub fn clear(&mut self) {
        self.errno = 0;
        self.scalar = 0;
        self.bytes.clear();
        self.polls.clear();
    }
}

/// The fixed part of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHeader {
    pub func: Func,
    pub call_delta: u64,
    pub digest: u32,
    pub fuel_delta: Option<u64>,
    pub has_state: bool,
}

/// Per-clock previous value, so clock reads are delta-encoded.
pub type ClockMemory = [u64; 4];

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Encodes an event up to (not including) the state hash, which the gate
/// appends with [`push_state`] once the results are in guest memory.
/// `clock_id` is the clock of a `clock_time_get`; `clocks` is updated.
pub fn encode(out: &mut Vec<u8>, h: &EventHeader, o: &Outcome, clock_id: usize, clocks: &mut ClockMemory) {
    let mut code = h.func as u8;
    if h.has_state {
        code |= FLAG_STATE;
    }
    if h.fuel_delta.is_some() {
        code |= FLAG_FUEL;
    }
    out.push(code);
    put_varint(out, h.call_delta);
    out.extend_from_slice(&h.digest.to_le_bytes());
    if let Some(f) = h.fuel_delta {
        put_varint(out, f);
    }
    put_varint(out, u64::from(o.errno));
    if o.errno != 0 {
        return;
    }
    match h.func.shape().expect("only recorded functions are encoded") {
        Shape::None => {}
        Shape::Scalar if h.func == Func::ClockTimeGet => {
            let slot = &mut clocks[clock_id.min(3)];
            put_varint(out, zigzag(o.scalar.wrapping_sub(*slot) as i64));
            *slot = o.scalar;
        }
        Shape::Scalar => put_varint(out, o.scalar),
        Shape::Bytes => put_bytes(out, &o.bytes),
        Shape::ScalarBytes => {
            put_varint(out, o.scalar);
            put_bytes(out, &o.bytes);
        }
        Shape::Polls => {
            put_varint(out, o.polls.len() as u64);
            for p in &o.polls {
                put_varint(out, u64::from(p.index));
                put_varint(out, u64::from(p.errno));
                put_varint(out, p.nbytes);
                out.push(p.flags);
            }
        }
    }
}

pub fn push_state(out: &mut Vec<u8>, state: u64) {
    out.extend_from_slice(&state.to_le_bytes());
}

/// Decodes the header of an event (the gate checks it before the payload).
pub fn decode_header(r: &mut Reader<'_>) -> Result<EventHeader, WireError> {
    let code = r.u8()?;
    let func = Func::from_code(code & FUNC_MASK)
        .ok_or_else(|| WireError::Malformed { what: "event", detail: format!("unknown function code {}", code & FUNC_MASK) })?;
    let call_delta = r.varint()?;
    let digest = r.u32()?;
    let fuel_delta = if code & FLAG_FUEL != 0 { Some(r.varint()?) } else { None };
    Ok(EventHeader { func, call_delta, digest, fuel_delta, has_state: code & FLAG_STATE != 0 })
}

fn malformed(detail: impl Into<String>) -> WireError {
    WireError::Malformed { what: "event", detail: detail.into() }
}

/// Decodes the rest of an event into `o`; returns the recorded state hash.
pub fn decode_body(
    r: &mut Reader<'_>,
    h: &EventHeader,
    o: &mut Outcome,
    clock_id: usize,
    clocks: &mut ClockMemory,
) -> Result<Option<u64>, WireError> {
    o.clear();
    o.errno = u16::try_from(r.varint()?).map_err(|_| malformed("errno out of range"))?;
    let shape = h.func.shape().ok_or_else(|| malformed(format!("{} is never recorded", h.func.name())))?;
    if o.errno == 0 {
        match shape {
            Shape::None => {}
            Shape::Scalar if h.func == Func::ClockTimeGet => {
                let slot = &mut clocks[clock_id.min(3)];
                o.scalar = slot.wrapping_add(unzigzag(r.varint()?) as u64);
                *slot = o.scalar;
            }
            Shape::Scalar => o.scalar = r.varint()?,
            Shape::Bytes => o.bytes.extend_from_slice(r.bytes()?),
            Shape::ScalarBytes => {
                o.scalar = r.varint()?;
                o.bytes.extend_from_slice(r.bytes()?);
            }
            Shape::Polls => decode_polls(r, o)?,
        }
    }
    let state = if h.has_state { Some(r.u64()?) } else { None };
    r.finish()?;
    Ok(state)
}

fn decode_polls(r: &mut Reader<'_>, o: &mut Outcome) -> Result<(), WireError> {
    let n = r.varint()?;
    if n > r.remaining() as u64 / 4 {
        return Err(malformed(format!("{n} poll events do not fit")));
    }
    for _ in 0..n {
        let index = u32::try_from(r.varint()?).map_err(|_| malformed("poll index out of range"))?;
        let errno = u16::try_from(r.varint()?).map_err(|_| malformed("poll errno out of range"))?;
        let nbytes = r.varint()?;
        let flags = r.u8()?;
        o.polls.push(PollEvent { index, errno, nbytes, flags });
    }
    Ok(())
}

/// A decoded event, for tools and tests that inspect a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSummary {
    pub header: EventHeader,
    pub outcome: Outcome,
    pub state: Option<u64>,
}

/// Decodes events of a log in order (clock deltas depend on earlier events).
#[derive(Debug, Default)]
pub struct EventDecoder {
    clocks: ClockMemory,
}

impl EventDecoder {
    /// `clock_id` is needed to undo the delta of a `clock_time_get`: it is the
    /// call's first argument, which the log does not repeat; pass
    /// [`EventDecoder::decode_any`] for tools that do not know it.
    pub fn decode(&mut self, event: &[u8], clock_id: usize) -> Result<EventSummary, WireError> {
        let mut r = Reader::new(event, "event");
        let header = decode_header(&mut r)?;
        let mut outcome = Outcome::default();
        let state = decode_body(&mut r, &header, &mut outcome, clock_id, &mut self.clocks)?;
        Ok(EventSummary { header, outcome, state })
    }

    /// Decodes assuming every clock read is of the monotonic clock (its
    /// value may then be meaningless, everything else is exact).
    pub fn decode_any(&mut self, event: &[u8]) -> Result<EventSummary, WireError> {
        self.decode(event, 1)
    }
}

/// Record mode: where the gate appends each event, in order, on the guest's
/// thread. The engine turns it into a log entry and returns the entry's seq,
/// which tags the outputs the call produced (output rule, DESIGN §3). It may
/// block (flow control when the backup lags).
pub trait EventSink: Send {
    fn append(&mut self, event: &[u8]) -> u64;
}

/// A sink that keeps events in memory; seqs start at 1. Useful for tests and
/// for tools.
#[derive(Debug, Default, Clone)]
pub struct MemorySink {
    pub events: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl EventSink for MemorySink {
    fn append(&mut self, event: &[u8]) -> u64 {
        let mut e = self.events.lock().expect("event list poisoned");
        e.push(event.to_vec());
        e.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(h: EventHeader, o: &Outcome, state: Option<u64>) -> (EventSummary, usize) {
        let mut out = Vec::new();
        let mut clocks = [0; 4];
        encode(&mut out, &h, o, 1, &mut clocks);
        if let Some(s) = state {
            push_state(&mut out, s);
        }
        let mut d = EventDecoder::default();
        (d.decode(&out, 1).unwrap(), out.len())
    }

    #[test]
    fn every_shape_roundtrips() {
        let base = EventHeader { func: Func::SockRecv, call_delta: 3, digest: 0xdead_beef, fuel_delta: None, has_state: false };
        let o = Outcome { bytes: b"hello".to_vec(), ..Default::default() };
        let (s, len) = roundtrip(base, &o, None);
        assert_eq!(s.outcome, o);
        assert_eq!(len, 1 + 1 + 4 + 1 + 1 + 5, "recv event is 8 bytes plus the data");

        let h = EventHeader { func: Func::PollOneoff, fuel_delta: Some(12345), has_state: true, ..base };
        let o = Outcome { polls: vec![PollEvent { index: 2, errno: 0, nbytes: 77, flags: 1 }], ..Default::default() };
        let (s, _) = roundtrip(h, &o, Some(42));
        assert_eq!((s.outcome, s.state, s.header), (o, Some(42), h));

        let h = EventHeader { func: Func::ClockTimeGet, ..base };
        let o = Outcome { scalar: 1_700_000_000_000_000_000, ..Default::default() };
        assert_eq!(roundtrip(h, &o, None).0.outcome, o);

        let o = Outcome { errno: 6, ..Default::default() };
        let (s, len) = roundtrip(EventHeader { func: Func::SockSend, ..base }, &o, None);
        assert_eq!((s.outcome, len), (o, 7));
    }

    #[test]
    fn clock_reads_are_delta_encoded() {
        let h = EventHeader { func: Func::ClockTimeGet, call_delta: 1, digest: 0, fuel_delta: None, has_state: false };
        let mut clocks = [0; 4];
        let mut a = Vec::new();
        encode(&mut a, &h, &Outcome { scalar: 1_700_000_000_000_000_000, ..Default::default() }, 0, &mut clocks);
        let mut b = Vec::new();
        encode(&mut b, &h, &Outcome { scalar: 1_700_000_000_000_001_000, ..Default::default() }, 0, &mut clocks);
        assert!(b.len() <= 9, "second read costs {} bytes", b.len());
        let mut d = EventDecoder::default();
        assert_eq!(d.decode(&a, 0).unwrap().outcome.scalar, 1_700_000_000_000_000_000);
        assert_eq!(d.decode(&b, 0).unwrap().outcome.scalar, 1_700_000_000_000_001_000);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut d = EventDecoder::default();
        for data in [&[][..], &[0x3e], &[18, 1, 0, 0, 0, 0, 0, 9], &[16, 1, 0, 0, 0, 0, 0, 0xff, 0xff, 0x7f]] {
            assert!(d.decode_any(data).is_err(), "{data:?}");
        }
        assert!(d.decode_any(&[Func::ArgsGet as u8, 1, 0, 0, 0, 0, 0]).is_err(), "unrecorded function in a log");
    }
}
