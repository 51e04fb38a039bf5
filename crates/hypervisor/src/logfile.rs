//! Standalone record and replay to a file, like rr for WebAssembly.
//!
//! ```text
//! file    := "USWASMLG"  record*
//! record  := len:u32 LE  crc32c:u32 LE  kind:u8  body[len - 1]     (crc over kind and body)
//! kind    := 1 header | 2 event | 3 trailer | 4 checkpoint | 5 module
//! module  := the Asyncify-transformed module the guest ran (right after
//!            the header; only in a log with checkpoints)
//! checkpoint := one record of a guest snapshot (`record.rs`): pages,
//!            then a final record; it follows the event at its seq
//! header  := version:varint fingerprint:str module_sha256[32] program:str
//!            nargs:varint arg:str… nenv:varint (key:str value:str)…
//!            memory_bytes_max:varint stack_bytes_max:varint fuel_enabled:u8
//!            fuel_limit:varint (0 = none) verify_memory:u8 listener:u8
//!            ndirs:varint guest_path:str…       (the mapped directories' guest paths)
//!            disk_bytes_max:varint (0 = none; version 3 on)
//! event   := the event bytes (see `event.rs`)
//! trailer := ending calls:varint events:varint output_bytes:varint
//!            outputs_sha256[32] state_hash[32] fuel_flag:u8 [fuel:varint]
//! ending  := 0 exit code:varint(zigzag) | 1 trap kind:u8 message:str
//!          | 2 stopped | 3 end-of-log | 4 host-failure message:str | 5 diverged detail:str
//! ```
//!
//! A log without a trailer is a recording that was interrupted; it replays
//! up to its end.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use understudy_wire::codec::{put_str, put_varint, Reader};

use crate::config::{fingerprint, module_digest, Fuel, GuestConfig};
use crate::error::HypervisorError;
use crate::event::EventSink;
use crate::fs::MapDir;
use crate::machine::{run, run_restored, run_with_checkpoints, CheckpointSink, Ending, GuestEnd, Mode, RunOptions, TrapKind};
use crate::output::Console;
use crate::snapshot::Record;
use crate::source::{EventSource, Next};
use crate::world::{LiveWorld, Stdin};

const MAGIC: &[u8; 8] = b"USWASMLG";
const LOG_VERSION: u64 = 3;
const KIND_HEADER: u8 = 1;
const KIND_EVENT: u8 = 2;
const KIND_TRAILER: u8 = 3;
const KIND_CHECKPOINT: u8 = 4;
const KIND_MODULE: u8 = 5;
/// Bound on one record, so a corrupted length cannot make us allocate.
const RECORD_BYTES_MAX: u32 = 64 << 20;

/// What a log's header says about the recorded guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHeader {
    pub fingerprint: String,
    pub module_sha256: [u8; 32],
    pub program_name: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub memory_bytes_max: u64,
    pub stack_bytes_max: usize,
    pub fuel: Fuel,
    pub verify_memory: bool,
    pub listener: bool,
    /// Guest paths of the mapped directories, in order.
    pub map_guest_paths: Vec<String>,
    pub disk_bytes_max: Option<u64>,
}

impl LogHeader {
    /// The guest this header describes, run with `module`, its directories
    /// mapped from `map_dirs` (this replay's own copies, whose guest paths
    /// must be the recording's).
    pub fn guest(&self, module: impl Into<Arc<[u8]>>, map_dirs: &[MapDir]) -> Result<GuestConfig, String> {
        let given: Vec<&str> = map_dirs.iter().map(|d| d.guest.as_str()).collect();
        if given != self.map_guest_paths.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(format!(
                "the run was recorded with directories mapped at {:?}; give the replay the same --map-dir GUEST paths (in that order) on copies of the directories as they were when the recording started (given: {given:?})",
                self.map_guest_paths
            ));
        }
        Ok(GuestConfig {
            module: module.into(),
            program_name: self.program_name.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            memory_bytes_max: self.memory_bytes_max,
            stack_bytes_max: self.stack_bytes_max,
            fuel: self.fuel,
            listener: self.listener,
            map_dirs: map_dirs.to_vec(),
            disk_bytes_max: self.disk_bytes_max,
        })
    }
}

/// A whole log read into memory (tools, tests).
#[derive(Debug, Clone)]
pub struct LogContents {
    pub header: LogHeader,
    pub events: Vec<Vec<u8>>,
    pub trailer: Option<GuestEnd>,
}

fn bad(path: &Path, detail: impl Into<String>) -> HypervisorError {
    HypervisorError::BadLog { path: path.display().to_string(), detail: detail.into() }
}

fn encode_header(g: &GuestConfig, fp: &str, verify: bool) -> Vec<u8> {
    let mut b = Vec::new();
    put_varint(&mut b, LOG_VERSION);
    put_str(&mut b, fp);
    b.extend_from_slice(&module_digest(&g.module));
    put_str(&mut b, &g.program_name);
    put_varint(&mut b, g.args.len() as u64);
    g.args.iter().for_each(|a| put_str(&mut b, a));
    put_varint(&mut b, g.env.len() as u64);
    for (k, v) in &g.env {
        put_str(&mut b, k);
        put_str(&mut b, v);
    }
    put_varint(&mut b, g.memory_bytes_max);
    put_varint(&mut b, g.stack_bytes_max as u64);
    b.push(u8::from(g.fuel.enabled));
    put_varint(&mut b, g.fuel.limit.unwrap_or(0));
    b.push(u8::from(verify));
    b.push(u8::from(g.listener));
    put_varint(&mut b, g.map_dirs.len() as u64);
    for d in &g.map_dirs {
        put_str(&mut b, &d.guest);
    }
    put_varint(&mut b, g.disk_bytes_max.unwrap_or(0));
    b
}

fn decode_header(body: &[u8]) -> Result<LogHeader, understudy_wire::WireError> {
    let mut r = Reader::new(body, "log header");
    let version = r.varint()?;
    if !(2..=LOG_VERSION).contains(&version) {
        return Err(understudy_wire::WireError::Malformed {
            what: "log header",
            detail: format!("log format version {version}"),
        });
    }
    let fingerprint = r.string()?;
    let module_sha256 = r.take(32)?.try_into().expect("32 bytes");
    let program_name = r.string()?;
    let nargs = r.varint()?;
    let args = (0..nargs).map(|_| r.string()).collect::<Result<_, _>>()?;
    let nenv = r.varint()?;
    let env = (0..nenv).map(|_| Ok((r.string()?, r.string()?))).collect::<Result<_, _>>()?;
    let memory_bytes_max = r.varint()?;
    let stack_bytes_max = r.varint()? as usize;
    let enabled = r.u8()? != 0;
    let limit = Some(r.varint()?).filter(|l| *l != 0);
    let verify_memory = r.u8()? != 0;
    let listener = r.u8()? != 0;
    let ndirs = r.varint()?;
    let map_guest_paths = (0..ndirs).map(|_| r.string()).collect::<Result<_, _>>()?;
    let disk_bytes_max = if version >= 3 { Some(r.varint()?).filter(|l| *l != 0) } else { None };
    r.finish()?;
    Ok(LogHeader {
        fingerprint,
        module_sha256,
        program_name,
        args,
        env,
        memory_bytes_max,
        stack_bytes_max,
        fuel: Fuel { enabled, limit },
        verify_memory,
        listener,
        map_guest_paths,
        disk_bytes_max,
    })
}

fn encode_trailer(end: &GuestEnd) -> Vec<u8> {
    let mut b = Vec::new();
    match &end.ending {
        Ending::Exited(c) => {
            b.push(0);
            put_varint(&mut b, ((i64::from(*c) << 1) ^ (i64::from(*c) >> 63)) as u64);
        }
        Ending::Trapped { kind, message } => {
            b.push(1);
            b.push(*kind as u8);
            put_str(&mut b, message);
        }
        Ending::Stopped => b.push(2),
        Ending::EndOfLog => b.push(3),
        Ending::HostFailure(m) => {
            b.push(4);
            put_str(&mut b, m);
        }
        Ending::Diverged(d) => {
            b.push(5);
            put_str(&mut b, &d.to_string());
        }
    }
    put_varint(&mut b, end.calls);
    put_varint(&mut b, end.events);
    put_varint(&mut b, end.output_bytes);
    b.extend_from_slice(&end.outputs_digest);
    b.extend_from_slice(&end.state_hash);
    b.push(u8::from(end.fuel_consumed.is_some()));
    if let Some(f) = end.fuel_consumed {
        put_varint(&mut b, f);
    }
    put_varint(&mut b, u64::from(end.memory_limit_hits));
    b
}

fn trap_kind(k: u8) -> TrapKind {
    [TrapKind::OutOfFuel, TrapKind::StackOverflow, TrapKind::MemoryOutOfBounds, TrapKind::Unreachable]
        .into_iter()
        .find(|t| *t as u8 == k)
        .unwrap_or(TrapKind::Other)
}

fn decode_trailer(body: &[u8]) -> Result<GuestEnd, understudy_wire::WireError> {
    let mut r = Reader::new(body, "log trailer");
    let ending = match r.u8()? {
        0 => {
            let z = r.varint()?;
            Ending::Exited(((z >> 1) as i64 ^ -((z & 1) as i64)) as i32)
        }
        1 => Ending::Trapped { kind: trap_kind(r.u8()?), message: r.string()? },
        2 => Ending::Stopped,
        3 => Ending::EndOfLog,
        4 => Ending::HostFailure(r.string()?),
        5 => Ending::HostFailure(format!("recorder diverged: {}", r.string()?)),
        k => return Err(understudy_wire::WireError::Malformed { what: "log trailer", detail: format!("ending {k}") }),
    };
    let calls = r.varint()?;
    let events = r.varint()?;
    let output_bytes = r.varint()?;
    let outputs_digest = r.take(32)?.try_into().expect("32 bytes");
    let state_hash = r.take(32)?.try_into().expect("32 bytes");
    let fuel_consumed = if r.u8()? != 0 { Some(r.varint()?) } else { None };
    let memory_limit_hits = r.varint()? as u32;
    r.finish()?;
    Ok(GuestEnd {
        ending,
        calls,
        events,
        output_bytes,
        outputs_digest,
        state_hash,
        fuel_consumed,
        memory_limit_hits,
        went_live_at_call: None,
    })
}

fn write_record(w: &mut impl Write, kind: u8, body: &[u8]) -> std::io::Result<()> {
    let crc = crc32c::crc32c_append(crc32c::crc32c(&[kind]), body);
    w.write_all(&(body.len() as u32 + 1).to_le_bytes())?;
    w.write_all(&crc.to_le_bytes())?;
    w.write_all(&[kind])?;
    w.write_all(body)
}

/// Reads the next record; `Ok(None)` at a clean end of file.
fn read_record(r: &mut impl Read, buf: &mut Vec<u8>) -> Result<Option<u8>, String> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    r.read_exact(&mut head[1..]).map_err(|e| format!("truncated record header: {e}"))?;
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
    if len == 0 || len > RECORD_BYTES_MAX {
        return Err(format!("record length {len} out of bounds (max {RECORD_BYTES_MAX})"));
    }
    buf.resize(len as usize, 0);
    r.read_exact(buf).map_err(|e| format!("truncated record: {e}"))?;
    if crc32c::crc32c(buf) != crc {
        return Err("record checksum mismatch (corrupted log)".into());
    }
    Ok(Some(buf[0]))
}

/// An [`EventSink`] writing a log file. Clones share the file.
#[derive(Clone)]
pub struct LogWriter {
    w: Arc<Mutex<BufWriter<File>>>,
    count: u64,
}

impl LogWriter {
    /// Creates `path` and writes the header for `guest`.
    pub fn create(path: &Path, guest: &GuestConfig, verify_memory: bool) -> Result<LogWriter, HypervisorError> {
        let fp = fingerprint(guest)?;
        let f = File::create(path).map_err(|e| HypervisorError::io(path.display().to_string(), e))?;
        let mut w = BufWriter::with_capacity(1 << 16, f);
        w.write_all(MAGIC)
            .and_then(|_| write_record(&mut w, KIND_HEADER, &encode_header(guest, &fp, verify_memory)))
            .map_err(|e| HypervisorError::io(path.display().to_string(), e))?;
        Ok(LogWriter { w: Arc::new(Mutex::new(w)), count: 0 })
    }

    /// Writes the module the guest runs (a log with checkpoints).
    pub fn write_module(&self, module: &[u8]) -> std::io::Result<()> {
        let mut w = self.w.lock().expect("log writer poisoned");
        write_record(&mut *w, KIND_MODULE, module)
    }

    /// Writes a checkpoint's records (after the events it follows).
    pub fn write_checkpoint(&self, records: &[Record]) -> std::io::Result<()> {
        let mut w = self.w.lock().expect("log writer poisoned");
        let mut body = Vec::new();
        for r in records {
            body.clear();
            r.encode(&mut body);
            write_record(&mut *w, KIND_CHECKPOINT, &body)?;
        }
        Ok(())
    }

    /// Writes the trailer and flushes.
    pub fn finish(&self, end: &GuestEnd) -> std::io::Result<()> {
        let mut w = self.w.lock().expect("log writer poisoned");
        write_record(&mut *w, KIND_TRAILER, &encode_trailer(end))?;
        w.flush()?;
        w.get_ref().sync_data()
    }
}

impl EventSink for LogWriter {
    fn append(&mut self, event: &[u8]) -> u64 {
        let mut w = self.w.lock().expect("log writer poisoned");
        // A recorder that cannot write its log must not go on producing
        // outputs nobody could replay: fail-stop.
        write_record(&mut *w, KIND_EVENT, event).unwrap_or_else(|e| panic!("writing the event log failed: {e}"));
        self.count += 1;
        self.count
    }
}

/// Runs `guest` in record mode with the real world (this process's stdin,
/// stdout and stderr, clocks, randomness, and `listen` as fd 3) and writes
/// the log to `log_path`.
pub fn record_file(
    guest: &GuestConfig,
    log_path: &Path,
    listen: Option<TcpListener>,
    opts: RunOptions,
) -> Result<GuestEnd, HypervisorError> {
    record_checkpointed(guest, log_path, listen, opts, None)
}

/// Like [`record_file`], and every `checkpoint_every` events (at the next
/// host call that can unwind) a checkpoint of the guest goes into the log,
/// so [`replay_file`] can start from the last one. The guest runs the
/// Asyncify-transformed module (`asyncify::transform`), which the log
/// carries; the header names the module as given.
pub fn record_checkpointed(
    guest: &GuestConfig,
    log_path: &Path,
    listen: Option<TcpListener>,
    opts: RunOptions,
    checkpoint_every: Option<u64>,
) -> Result<GuestEnd, HypervisorError> {
    let writer = LogWriter::create(log_path, guest, opts.verify_memory)?;
    let mut world = LiveWorld::new(writer.clone()).with_stdin(Stdin::Inherit);
    world.listener = listen;
    let Some(every) = checkpoint_every else {
        return record_with(guest, &writer, world, opts, log_path);
    };
    let module = crate::asyncify::transform(&guest.module).map_err(|e| HypervisorError::NotSnapshottable(e.to_string()))?;
    writer.write_module(&module).map_err(|e| HypervisorError::io(log_path.display().to_string(), e))?;
    let run_guest = GuestConfig { module: module.into(), ..guest.clone() };
    let w = writer.clone();
    let sink: Box<dyn FnMut(Vec<Record>)> = Box::new(move |records: Vec<Record>| {
        // As with events: a recorder that cannot write its log fail-stops.
        w.write_checkpoint(&records).unwrap_or_else(|e| panic!("writing a checkpoint to the log failed: {e}"));
    });
    let end = run_with_checkpoints(&run_guest, world, opts, CheckpointSink { every, sink })?;
    writer.finish(&end).map_err(|e| HypervisorError::io(log_path.display().to_string(), e))?;
    Ok(end)
}

/// Like [`record_file`] with a world of the caller's making, whose sink must
/// be `writer` (tests, tools that capture stdout).
pub fn record_with(
    guest: &GuestConfig,
    writer: &LogWriter,
    world: LiveWorld,
    opts: RunOptions,
    log_path: &Path,
) -> Result<GuestEnd, HypervisorError> {
    let end = run(guest, Mode::Record(world), opts)?;
    writer.finish(&end).map_err(|e| HypervisorError::io(log_path.display().to_string(), e))?;
    Ok(end)
}

/// Reads a log's magic and header.
fn open(path: &Path) -> Result<(BufReader<File>, LogHeader), HypervisorError> {
    let f = File::open(path).map_err(|e| HypervisorError::io(path.display().to_string(), e))?;
    let mut r = BufReader::with_capacity(1 << 16, f);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|_| bad(path, "too short for a log"))?;
    if &magic != MAGIC {
        return Err(bad(path, "not an understudy wasm log (bad magic)"));
    }
    let mut buf = Vec::new();
    match read_record(&mut r, &mut buf).map_err(|e| bad(path, e))? {
        Some(KIND_HEADER) => {}
        _ => return Err(bad(path, "the first record is not a header")),
    }
    let header = decode_header(&buf[1..]).map_err(|e| bad(path, e.to_string()))?;
    Ok((r, header))
}

/// Reads a whole log into memory.
pub fn read_log(path: &Path) -> Result<LogContents, HypervisorError> {
    let (mut r, header) = open(path)?;
    let mut events = Vec::new();
    let mut buf = Vec::new();
    loop {
        match read_record(&mut r, &mut buf).map_err(|e| bad(path, e))? {
            None => return Ok(LogContents { header, events, trailer: None }),
            Some(KIND_EVENT) => events.push(buf[1..].to_vec()),
            Some(KIND_TRAILER) => {
                let t = decode_trailer(&buf[1..]).map_err(|e| bad(path, e.to_string()))?;
                return Ok(LogContents { header, events, trailer: Some(t) });
            }
            Some(KIND_CHECKPOINT | KIND_MODULE) => {}
            Some(k) => return Err(bad(path, format!("unknown record kind {k}"))),
        }
    }
}

/// What the file source saw after the events.
#[derive(Default)]
struct SourceEnd {
    trailer: Option<GuestEnd>,
    error: Option<String>,
    events: u64,
    exhausted: bool,
}

/// Streams events from a log file.
struct FileSource {
    r: BufReader<File>,
    buf: Vec<u8>,
    end: Arc<Mutex<SourceEnd>>,
    /// Where the guest's stdout and stderr go ([`ReplayOptions::console`]).
    console: Option<(Console, Console)>,
}

impl EventSource for FileSource {
    fn console(&mut self, stderr: bool, bytes: &[u8]) {
        if let Some((out, err)) = &self.console {
            if stderr {
                err.write(bytes, true);
            } else {
                out.write(bytes, false);
            }
        }
    }

    fn next(&mut self) -> Next {
        let mut end = self.end.lock().expect("source state poisoned");
        if end.exhausted {
            return Next::End;
        }
        let mut kind = read_record(&mut self.r, &mut self.buf);
        while matches!(kind, Ok(Some(KIND_CHECKPOINT | KIND_MODULE))) {
            kind = read_record(&mut self.r, &mut self.buf);
        }
        match kind {
            Ok(Some(KIND_EVENT)) => {
                end.events += 1;
                return Next::Event(self.buf[1..].to_vec());
            }
            Ok(Some(KIND_TRAILER)) => match decode_trailer(&self.buf[1..]) {
                Ok(t) => end.trailer = Some(t),
                Err(e) => end.error = Some(e.to_string()),
            },
            Ok(None) => {}
            Ok(Some(k)) => end.error = Some(format!("unknown record kind {k}")),
            Err(e) => end.error = Some(e),
        }
        end.exhausted = true;
        Next::End
    }
}

/// Options of [`replay_file`].
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Replay even if the fingerprint differs (to study a divergence: the
    /// replay then shows where the executions part).
    pub ignore_fingerprint: bool,
    /// Replace the recorded args (with `ignore_fingerprint`).
    pub args: Option<Vec<String>>,
    /// Replace the recorded environment (with `ignore_fingerprint`).
    pub env: Option<Vec<(String, String)>>,
    /// Start from the log's last checkpoint instead of the guest's start.
    pub from_checkpoint: bool,
    /// This replay's copies of the mapped directories (`--map-dir`).
    pub map_dirs: Vec<MapDir>,
    /// Where the guest's stdout and stderr go as they are replayed (from
    /// the checkpoint on, with `from_checkpoint`). None: only into the
    /// outputs digest, as on a backup.
    pub console: Option<(Console, Console)>,
}

/// The result of a replay.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    pub header: LogHeader,
    /// How the replay ended, with its counters.
    pub end: GuestEnd,
    /// What the log's trailer says (none if the recording was interrupted).
    pub recorded: Option<GuestEnd>,
    /// Every difference found; empty when the replay is faithful.
    pub mismatches: Vec<String>,
    /// The seq of the checkpoint the replay started from, if it did.
    pub from_checkpoint: Option<u64>,
}

impl ReplayReport {
    /// The replay reproduced the recording: same events, outputs, ending and
    /// final memory and globals.
    pub fn is_faithful(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Re-executes `module` from the log at `log_path` in replay mode and checks
/// the fingerprint, every event, the outputs digest, the ending and the final
/// hash of memory and globals. A divergence is reported in the returned
/// report (`end.ending` is `Diverged`), not as an error.
pub fn replay_file(module: &[u8], log_path: &Path, opts: &ReplayOptions) -> Result<ReplayReport, HypervisorError> {
    let (r, header) = open(log_path)?;
    let mut guest = header.guest(module.to_vec(), &opts.map_dirs).map_err(|e| bad(log_path, e))?;
    let given = module_digest(module);
    if let Some(a) = &opts.args {
        guest.args = a.clone();
    }
    if let Some(e) = &opts.env {
        guest.env = e.clone();
    }
    if given != header.module_sha256 && !opts.ignore_fingerprint {
        return Err(bad(log_path, "the module differs from the one that was recorded (SHA-256 mismatch)"));
    }
    let ours = fingerprint(&guest)?;
    if ours != header.fingerprint && !opts.ignore_fingerprint {
        return Err(HypervisorError::FingerprintMismatch { recorded: header.fingerprint.clone(), ours });
    }
    let scan = scan_checkpoints(log_path)?;
    if let Some(m) = &scan.module {
        // The guest ran the transformed module the log carries.
        guest.module = m.clone().into();
    }
    let opts_run = RunOptions { verify_memory: header.verify_memory };
    let state = Arc::new(Mutex::new(SourceEnd::default()));
    let (end, from, skipped) = if opts.from_checkpoint {
        let Some(records) = scan.last else {
            return Err(bad(log_path, "it holds no complete checkpoint (record with --checkpoint-every)"));
        };
        let seq = match records.last() {
            Some(Record::Final(f)) => f.seq,
            _ => unreachable!("a complete checkpoint ends with its final record"),
        };
        let source =
            FileSource { r: open_after(log_path, seq)?, buf: Vec::new(), end: state.clone(), console: opts.console.clone() };
        let mut it = std::iter::once(Record::Module(guest.module.to_vec())).chain(records);
        let mut next = move || Ok(it.next());
        (run_restored(&guest, &mut next, Box::new(source), opts_run)?, Some(seq), seq)
    } else {
        let source = FileSource { r, buf: Vec::new(), end: state.clone(), console: opts.console.clone() };
        (run(&guest, Mode::Replay(Box::new(source)), opts_run)?, None, 0)
    };
    let mut src = std::mem::take(&mut *state.lock().expect("source state poisoned"));
    if !src.exhausted && !matches!(end.ending, Ending::Diverged(_)) {
        // The guest ended: whatever follows in the log must be the trailer.
        let mut rest = FileSource {
            r: open_after(log_path, skipped + src.events)?,
            buf: Vec::new(),
            end: Arc::new(Mutex::new(SourceEnd::default())),
            console: None,
        };
        if let Next::Event(_) = rest.next() {
            src.error = Some(format!("the log holds events after the {} the guest consumed", skipped + src.events));
        }
        let rest_end = std::mem::take(&mut *rest.end.lock().expect("source state poisoned"));
        src.trailer = src.trailer.or(rest_end.trailer);
        src.error = src.error.or(rest_end.error);
    }
    let mismatches = compare(&end, src.trailer.as_ref(), src.error);
    Ok(ReplayReport { header, end, recorded: src.trailer, mismatches, from_checkpoint: from })
}

/// What a log holds besides events: the module it ran, and its last
/// complete checkpoint.
struct Scan {
    module: Option<Vec<u8>>,
    last: Option<Vec<Record>>,
}

fn scan_checkpoints(path: &Path) -> Result<Scan, HypervisorError> {
    let (mut r, _) = open(path)?;
    let mut buf = Vec::new();
    let (mut module, mut last, mut cur) = (None, None, Vec::new());
    // A damaged or truncated tail ends the scan: what came before stands.
    while let Ok(Some(kind)) = read_record(&mut r, &mut buf) {
        match kind {
            KIND_MODULE => module = Some(buf[1..].to_vec()),
            KIND_CHECKPOINT => {
                let rec = Record::decode(&mut understudy_wire::codec::Reader::new(&buf[1..], "checkpoint"))
                    .map_err(|e| bad(path, e.to_string()))?;
                let done = matches!(rec, Record::Final(_));
                cur.push(rec);
                if done {
                    last = Some(std::mem::take(&mut cur));
                }
            }
            _ => {}
        }
    }
    Ok(Scan { module, last })
}

/// Opens the log positioned after `events` events (and whatever records
/// follow them up to the next event: the next read is the next event).
fn open_after(path: &Path, events: u64) -> Result<BufReader<File>, HypervisorError> {
    let (mut r, _) = open(path)?;
    let mut buf = Vec::new();
    let mut seen = 0;
    while seen < events {
        match read_record(&mut r, &mut buf).map_err(|e| bad(path, e))? {
            Some(KIND_EVENT) => seen += 1,
            Some(_) => {}
            None => return Err(bad(path, format!("the log ends after {seen} of {events} events"))),
        }
    }
    Ok(r)
}

fn compare(end: &GuestEnd, rec: Option<&GuestEnd>, error: Option<String>) -> Vec<String> {
    let mut m = Vec::new();
    if let Some(e) = error {
        m.push(format!("log: {e}"));
    }
    if let Ending::Diverged(d) = &end.ending {
        m.push(d.to_string());
        return m;
    }
    let Some(rec) = rec else {
        if end.ending != Ending::EndOfLog {
            m.push(format!("the log has no trailer, but the replay ended with {:?}", end.ending));
        }
        return m;
    };
    if rec.ending != end.ending {
        m.push(format!("ending: recorded {:?}, replayed {:?}", rec.ending, end.ending));
    }
    if rec.events != end.events {
        m.push(format!("events: recorded {}, replayed {}", rec.events, end.events));
    }
    if rec.calls != end.calls {
        m.push(format!("host calls: recorded {}, replayed {}", rec.calls, end.calls));
    }
    if rec.outputs_digest != end.outputs_digest || rec.output_bytes != end.output_bytes {
        m.push(format!("outputs differ: recorded {} bytes, replayed {} bytes", rec.output_bytes, end.output_bytes));
    }
    if rec.state_hash != end.state_hash {
        m.push("final memory and globals differ".into());
    }
    if rec.memory_limit_hits != end.memory_limit_hits {
        m.push(format!("memory limit hits: recorded {}, replayed {}", rec.memory_limit_hits, end.memory_limit_hits));
    }
    m
}
