//! Shared helpers: building the C guests, a tiny RESP client, event lookups.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use understudy_hypervisor::{EventDecoder, EventSink, Func, GuestConfig};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the guests with `guests/build.sh` (once per test binary) and
/// returns the bytes of `build/<name>.wasm`. Fails, never skips, when the
/// toolchain is missing, naming the Debian packages to install.
pub fn guest(name: &str) -> Vec<u8> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let out = Command::new("sh").arg(repo().join("guests/build.sh")).output().map_err(|e| format!("running guests/build.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "guests/build.sh failed ({}); install the Debian packages clang lld wasi-libc libclang-rt-14-dev-wasm32 gcc\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    let path = repo().join("guests/build").join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn config(name: &str) -> GuestConfig {
    let mut c = GuestConfig::new(guest(name));
    c.program_name = format!("{name}.wasm");
    c
}

pub fn wat(src: &str) -> Vec<u8> {
    wat::parse_str(src).expect("test module parses")
}

/// Call number and function of every event in a log.
pub fn event_calls(events: &[Vec<u8>]) -> Vec<(u64, Func, u16)> {
    let mut d = EventDecoder::default();
    let mut call = 0;
    events
        .iter()
        .map(|e| {
            let s = d.decode_any(e).expect("event decodes");
            call += s.header.call_delta;
            (call, s.header.func, s.outcome.errno)
        })
        .collect()
}

/// A sink that lets a test wait for events.
#[derive(Clone, Default)]
pub struct WatchSink {
    pub events: Arc<(Mutex<Vec<Vec<u8>>>, Condvar)>,
}

impl EventSink for WatchSink {
    fn append(&mut self, event: &[u8]) -> u64 {
        let (m, cv) = &*self.events;
        let mut e = m.lock().unwrap();
        e.push(event.to_vec());
        cv.notify_all();
        e.len() as u64
    }
}

impl WatchSink {
    pub fn snapshot(&self) -> Vec<Vec<u8>> {
        self.events.0.lock().unwrap().clone()
    }

    /// Waits (bounded) until an event satisfies `pred`; returns its seq.
    pub fn wait_for(&self, what: &str, pred: impl Fn(u64, Func, u16) -> bool) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (m, cv) = &*self.events;
        let mut e = m.lock().unwrap();
        loop {
            if let Some(i) = event_calls(&e).iter().position(|(call, f, errno)| pred(*call, *f, *errno)) {
                return i as u64 + 1;
            }
            let left = deadline.checked_duration_since(Instant::now()).unwrap_or_else(|| panic!("timed out waiting for {what}"));
            e = cv.wait_timeout(e, left).unwrap().0;
        }
    }
}

/// A minimal RESP client.
pub struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    pub fn connect(addr: std::net::SocketAddr) -> Client {
        let w = TcpStream::connect(addr).expect("connect");
        w.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Client { r: BufReader::new(w.try_clone().unwrap()), w }
    }

    pub fn send(&mut self, args: &[&str]) {
        self.w.write_all(&encode(args)).unwrap();
    }

    pub fn stream(&self) -> &TcpStream {
        &self.w
    }

    /// Reads one reply, rendered as text: `+OK`, `:3`, `$value`, `$nil`, `-ERR …`, `*n`.
    pub fn reply(&mut self) -> String {
        let mut line = String::new();
        self.r.read_line(&mut line).expect("reply");
        let line = line.trim_end().to_string();
        if let Some(n) = line.strip_prefix('$') {
            let n: i64 = n.parse().unwrap();
            if n < 0 {
                return "$nil".into();
            }
            let mut b = vec![0; n as usize + 2];
            self.r.read_exact(&mut b).unwrap();
            return format!("${}", String::from_utf8_lossy(&b[..n as usize]));
        }
        line
    }

    pub fn call(&mut self, args: &[&str]) -> String {
        self.send(args);
        self.reply()
    }
}

pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Captures log records so tests can count them.
pub struct CaptureLog;

pub static LOG_LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl log::Log for CaptureLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info
    }
    fn log(&self, r: &log::Record<'_>) {
        LOG_LINES.lock().unwrap().push(format!("{} {}", r.level(), r.args()));
    }
    fn flush(&self) {}
}

pub fn capture_log() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        log::set_logger(&CaptureLog).expect("logger");
        log::set_max_level(log::LevelFilter::Info);
    });
}
