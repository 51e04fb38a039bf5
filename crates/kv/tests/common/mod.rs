//! Shared test helpers: a RESP2 reply parser, contexts with scripted and
//! real time, and a client-side harness that drives a `Session` and a `Kv`
//! the way the node does.

#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

use understudy_core::{Ctx, StateMachine};
use understudy_kv::evict::Admit;
use understudy_kv::{parse_command, Dispatch, Kv, Session};

/// A parsed RESP2 reply, ordered so unordered replies can be sorted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum V {
    Simple(Vec<u8>),
    Err(Vec<u8>),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Arr(Option<Vec<V>>),
    /// RESP3's double (`,1.5`), as its text.
    Double(Vec<u8>),
}

fn line(buf: &[u8]) -> Option<(&[u8], usize)> {
    let i = buf.windows(2).position(|w| w == b"\r\n")?;
    Some((&buf[..i], i + 2))
}

fn num(b: &[u8]) -> i64 {
    std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad number {b:?}"))
}

/// Parses one complete reply at the start of `buf`.
pub fn parse_reply(buf: &[u8]) -> Option<(V, usize)> {
    let (&t, rest) = buf.split_first()?;
    let (l, n) = line(rest)?;
    let used = 1 + n;
    match t {
        b'+' => Some((V::Simple(l.to_vec()), used)),
        b'-' => Some((V::Err(l.to_vec()), used)),
        b':' => Some((V::Int(num(l)), used)),
        b',' => Some((V::Double(l.to_vec()), used)),
        // RESP3's verbatim string (`=…txt:…`) reads as a bulk string.
        b'$' | b'=' => {
            let len = num(l);
            if len < 0 {
                return Some((V::Bulk(None), used));
            }
            let len = len as usize;
            if buf.len() < used + len + 2 {
                return None;
            }
            Some((V::Bulk(Some(buf[used..used + len].to_vec())), used + len + 2))
        }
        // RESP3: null, and maps and sets seen as flat arrays (doubles above).
        b'_' => Some((V::Bulk(None), used)),
        b'%' | b'~' | b'*' => {
            let len = if t == b'%' { 2 * num(l) } else { num(l) };
            if len < 0 {
                return Some((V::Arr(None), used));
            }
            let mut items = Vec::new();
            let mut pos = used;
            for _ in 0..len {
                let (v, n) = parse_reply(&buf[pos..])?;
                items.push(v);
                pos += n;
            }
            Some((V::Arr(Some(items)), pos))
        }
        _ => panic!("not a RESP reply: {:?}", String::from_utf8_lossy(buf)),
    }
}

/// Parses a buffer holding exactly one reply.
pub fn one_reply(buf: &[u8]) -> V {
    let (v, n) = parse_reply(buf).unwrap_or_else(|| panic!("incomplete reply {:?}", show(buf)));
    assert_eq!(n, buf.len(), "trailing bytes after reply {:?}", show(buf));
    v
}

pub fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

pub fn wall_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_micros() as u64
}

/// The real clock, as the primary's recording context hands it out.
pub struct RealCtx;

impl Ctx for RealCtx {
    fn now_us(&mut self) -> u64 {
        wall_us()
    }
    fn random_u64(&mut self) -> u64 {
        4
    }
}

/// A scripted clock: every op sees `now_us`; counts how often the clock was
/// asked (each ask costs log bytes on the real engine).
pub struct FixedCtx {
    pub now_us: u64,
    pub asks: u64,
}

impl Ctx for FixedCtx {
    fn now_us(&mut self) -> u64 {
        self.asks += 1;
        self.now_us
    }
    fn random_u64(&mut self) -> u64 {
        4
    }
}

/// What the node does for one connection, minus the sockets.
pub struct Client {
    pub kv: Kv,
    pub session: Session,
    op: Vec<u8>,
    /// Every op logged, for replay on a second Kv.
    pub log: Vec<Vec<u8>>,
}

impl Client {
    pub fn new(id: u64) -> Client {
        Client { kv: Kv::new(), session: Session::new(id), op: Vec::new(), log: Vec::new() }
    }

    /// Runs one command with `ctx` for writes and `now_ms` for reads.
    pub fn run_at(&mut self, ctx: &mut dyn Ctx, now_ms: u64, argv: &[&[u8]]) -> Vec<u8> {
        let mut out = self.run_raw_reply(ctx, now_ms, argv);
        self.session.finish_reply(argv, &mut out, 0);
        out
    }

    /// The reply as the commands produce it (RESP2), before the
    /// connection's protocol is applied.
    fn run_raw_reply(&mut self, ctx: &mut dyn Ctx, now_ms: u64, argv: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        self.session.observe(&self.kv);
        let mut dispatch = self.session.dispatch(argv, &mut self.op, &mut out);
        if dispatch == Dispatch::Keyspace {
            dispatch = self.session.keyspace(&self.kv, now_ms, argv, &mut self.op, &mut out);
        }
        if dispatch == Dispatch::Write && self.kv.admit(&mut self.op, &mut out) == Admit::Refused {
            dispatch = Dispatch::Gated;
        }
        match dispatch {
            Dispatch::Done | Dispatch::Close | Dispatch::Gated | Dispatch::Keyspace | Dispatch::PubSub => {}
            Dispatch::Read => self.kv.read_argv(now_ms, argv, &mut out),
            Dispatch::Write => {
                self.log.push(self.op.clone());
                self.kv.apply(ctx, &self.op, &mut out);
            }
            Dispatch::Status => {
                let mut s = String::new();
                self.kv.info_keyspace(&mut s);
                understudy_kv::resp::write_bulk(&mut out, s.as_bytes());
            }
        }
        out
    }

    /// Runs one command on the real clock.
    pub fn run(&mut self, argv: &[&[u8]]) -> Vec<u8> {
        self.run_at(&mut RealCtx, wall_us() / 1000, argv)
    }

    /// Parses raw input (multibulk or inline) and runs every command in it.
    pub fn run_raw(&mut self, mut input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut ranges = Vec::new();
        while !input.is_empty() {
            match parse_command(input, 1 << 20, &mut ranges) {
                Ok(Some(n)) => {
                    let argv: Vec<&[u8]> = ranges.iter().map(|r| &input[r.clone()]).collect();
                    if !argv.is_empty() {
                        out.extend(self.run(&argv));
                    }
                    input = &input[n..];
                }
                Ok(None) => panic!("incomplete input {:?}", show(input)),
                Err(e) => {
                    out.extend(e.to_resp());
                    break;
                }
            }
        }
        out
    }
}

/// Splits a script line into arguments: blank-separated, `\xHH` escapes,
/// `{}` for an empty argument, and `"…"` for one argument with blanks in
/// it (a Lua script: it ends at a `"` followed by a blank or the line's
/// end, and holds no `"` itself).
pub fn args(line: &str) -> Vec<Vec<u8>> {
    let mut tokens = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        let (tok, after) = match rest.strip_prefix('"') {
            Some(body) => {
                let end = body
                    .match_indices('"')
                    .map(|(i, _)| i)
                    .find(|&i| body[i + 1..].chars().next().is_none_or(char::is_whitespace))
                    .unwrap_or_else(|| panic!("unterminated quoted argument in {line:?}"));
                (&body[..end], &body[end + 1..])
            }
            None => {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        tokens.push(tok);
        rest = after.trim_start();
    }
    tokens
        .into_iter()
        .map(|tok| {
            if tok == "{}" {
                return Vec::new();
            }
            let b = tok.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < b.len() {
                if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 3 < b.len() {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("ascii");
                    out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                    i += 4;
                } else {
                    out.push(b[i]);
                    i += 1;
                }
            }
            out
        })
        .collect()
}
