//! RESP2, the Redis wire protocol: a zero-allocation request parser and the
//! reply encoders every command uses.
//!
//! The parser is stateless: it is handed the connection's whole unconsumed
//! input and either finds one complete command at its start or says how it
//! is incomplete. Re-parsing a partially received command is cheap because a
//! bulk argument's bytes are skipped by its declared length, never scanned.
//! Sizes are checked against the declared lengths before the bytes arrive,
//! so a client can never make the server buffer more than
//! `--request-bytes-max` (DESIGN §6: every size is bounded and an exceeded
//! bound names its flag).

use std::ops::Range;

/// Redis's `PROTO_INLINE_MAX_SIZE`: the longest line (inline command or
/// `*`/`$` header) accepted before its terminator arrives.
pub const INLINE_BYTES_MAX: usize = 64 * 1024;

/// Redis's default `proto-max-bulk-len`: the largest single argument.
pub const BULK_BYTES_MAX: i64 = 512 * 1024 * 1024;

/// Smallest encoding of one bulk argument (`$0\r\n\r\n`), used to turn a
/// declared argument count into a lower bound on the request's size.
const MIN_BULK_BYTES: u64 = 6;

/// A malformed or oversized request. Like Redis, the server replies with
/// [`RespError::to_resp`] and closes the connection: after a framing error
/// nothing later in the stream can be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RespError {
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("Protocol error: expected '$', got '{}'", char::from(*got))]
    ExpectedDollar { got: u8 },
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// Inline commands are answered from ranges of the input, so quoted
    /// tokens with escapes (or quotes glued to other text) cannot be
    /// represented; real clients send multibulk arrays and never hit this.
    #[error("Protocol error: escapes and partial quoting in inline requests are not supported (send a multibulk array)")]
    UnsupportedInlineQuoting,
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    #[error("Protocol error: request of at least {bytes} bytes exceeds --request-bytes-max ({max} bytes)")]
    RequestTooLarge { bytes: u64, max: usize },
}

impl RespError {
    /// The error reply line, `-ERR Protocol error: …\r\n`, byte-identical
    /// to Redis's for the errors Redis has.
    pub fn to_resp(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        match self {
            // Redis prints the offending byte raw (`%c`), not as a char.
            RespError::ExpectedDollar { got } => {
                let mut msg = b"ERR Protocol error: expected '$', got '".to_vec();
                msg.push(*got);
                msg.push(b'\'');
                write_error(&mut out, &msg);
            }
            other => write_error(&mut out, format!("ERR {other}").as_bytes()),
        }
        out
    }
}

/// Parses one command at the start of `buf`.
///
/// Returns `Ok(Some(consumed))` with `args` holding one range of `buf` per
/// argument, or `Ok(None)` if the command is not complete yet. `args` may be
/// empty after a blank inline line or a `*0`/`*-1` header: Redis silently
/// skips those, and so should the caller. Accepts multibulk arrays (what
/// clients send) and inline commands (telnet, `PING\r\n`). Stateless: an
/// incomplete command is parsed again from its start on the next call; see
/// [`CommandParser`] to resume instead.
pub fn parse_command(buf: &[u8], request_bytes_max: usize, args: &mut Vec<Range<usize>>) -> Result<Option<usize>, RespError> {
    CommandParser::new().parse(buf, request_bytes_max, args)
}

/// Where an incomplete multibulk command stopped: the offset of the next
/// argument's header and how many arguments are still to come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Resume {
    pos: usize,
    left: u64,
}

enum Progress {
    Done(usize),
    Incomplete(Option<Resume>),
}

/// [`parse_command`] for one connection, remembering how far an incomplete
/// multibulk command was parsed (as Redis keeps `multibulklen`/`bulklen`),
/// so a large command arriving in many reads is scanned once rather than
/// once per read.
///
/// Between a call that returned `Ok(None)` and the next, the caller keeps
/// `args` as it is and the start of `buf` in place (it may only append).
#[derive(Debug, Default, Clone)]
pub struct CommandParser {
    resume: Option<Resume>,
}

impl CommandParser {
    pub fn new() -> Self {
        CommandParser::default()
    }

    /// As [`parse_command`], resuming where the previous call stopped.
    pub fn parse(
        &mut self,
        buf: &[u8],
        request_bytes_max: usize,
        args: &mut Vec<Range<usize>>,
    ) -> Result<Option<usize>, RespError> {
        let progress = match self.resume.take() {
            Some(at) if at.pos <= buf.len() && buf.first() == Some(&b'*') => parse_bulks(buf, request_bytes_max, args, at)?,
            _ => {
                args.clear();
                match buf.first() {
                    None => return Ok(None),
                    Some(b'*') => parse_multibulk(buf, request_bytes_max, args)?,
                    Some(_) => return parse_inline(buf, request_bytes_max, args),
                }
            }
        };
        match progress {
            Progress::Done(n) => Ok(Some(n)),
            Progress::Incomplete(resume) => {
                self.resume = resume;
                Ok(None)
            }
        }
    }
}

/// Finds the `\r` ending the header line that starts at `from`, looking no
/// further than [`INLINE_BYTES_MAX`]. `Ok(None)`: incomplete (Redis also
/// waits for the byte after `\r` before it parses the line).
fn header_end(buf: &[u8], from: usize, too_big: RespError) -> Result<Option<usize>, RespError> {
    let window = &buf[from..buf.len().min(from + INLINE_BYTES_MAX + 1)];
    match window.iter().position(|&b| b == b'\r') {
        Some(i) if from + i + 1 < buf.len() => Ok(Some(from + i)),
        Some(_) => Ok(None),
        None if buf.len() - from > INLINE_BYTES_MAX => Err(too_big),
        None => Ok(None),
    }
}

fn too_large<T>(bytes: u64, max: usize) -> Result<T, RespError> {
    Err(RespError::RequestTooLarge { bytes, max })
}

fn parse_multibulk(buf: &[u8], max: usize, args: &mut Vec<Range<usize>>) -> Result<Progress, RespError> {
    let Some(cr) = header_end(buf, 1, RespError::TooBigMultibulkCount)? else {
        return Ok(Progress::Incomplete(None));
    };
    let count = match crate::num::parse_i64(&buf[1..cr]) {
        Some(n) if n <= i64::from(i32::MAX) => n,
        _ => return Err(RespError::InvalidMultibulkLength),
    };
    let pos = cr + 2;
    if count <= 0 {
        return Ok(Progress::Done(pos));
    }
    let at_least = pos as u64 + count as u64 * MIN_BULK_BYTES;
    if at_least > max as u64 {
        return too_large(at_least, max);
    }
    parse_bulks(buf, max, args, Resume { pos, left: count as u64 })
}

/// Parses the `$len\r\ndata\r\n` arguments of a multibulk command from `at`.
fn parse_bulks(buf: &[u8], max: usize, args: &mut Vec<Range<usize>>, mut at: Resume) -> Result<Progress, RespError> {
    while at.left > 0 {
        let pos = at.pos;
        let Some(cr) = header_end(buf, pos, RespError::TooBigBulkCount)? else {
            return Ok(Progress::Incomplete(Some(at)));
        };
        if buf[pos] != b'$' {
            return Err(RespError::ExpectedDollar { got: buf[pos] });
        }
        let len = match crate::num::parse_i64(&buf[pos + 1..cr]) {
            Some(n) if (0..=BULK_BYTES_MAX).contains(&n) => n as u64,
            _ => return Err(RespError::InvalidBulkLength),
        };
        let start = cr + 2;
        let at_least = start as u64 + len + 2 + (at.left - 1) * MIN_BULK_BYTES;
        if at_least > max as u64 {
            return too_large(at_least, max);
        }
        let end = start + len as usize;
        // Like Redis, the two bytes after the data are skipped unchecked.
        if buf.len() < end + 2 {
            return Ok(Progress::Incomplete(Some(at)));
        }
        args.push(start..end);
        at = Resume { pos: end + 2, left: at.left - 1 };
    }
    Ok(Progress::Done(at.pos))
}

/// `isspace` in the C locale, which Redis uses to skip blanks between
/// inline arguments.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn parse_inline(buf: &[u8], max: usize, args: &mut Vec<Range<usize>>) -> Result<Option<usize>, RespError> {
    let window = &buf[..buf.len().min(INLINE_BYTES_MAX + 1)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        if buf.len() > INLINE_BYTES_MAX {
            return Err(RespError::TooBigInline);
        }
        if buf.len() > max {
            return too_large(buf.len() as u64, max);
        }
        return Ok(None);
    };
    let consumed = nl + 1;
    if consumed > max {
        return too_large(consumed as u64, max);
    }
    let mut end = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
    // Redis splits the line as a C string: a NUL ends it.
    if let Some(z) = buf[..end].iter().position(|&b| b == 0) {
        end = z;
    }
    split_inline(&buf[..end], args)?;
    Ok(Some(consumed))
}

/// Splits an inline line the way Redis's `sdssplitargs` does, for the
/// tokens that are ranges of the line: bare words and whole `"…"`/`'…'`
/// tokens without escapes.
fn split_inline(line: &[u8], args: &mut Vec<Range<usize>>) -> Result<(), RespError> {
    let mut i = 0;
    loop {
        while i < line.len() && is_c_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(());
        }
        let quote = line[i];
        if quote == b'"' || quote == b'\'' {
            let start = i + 1;
            let Some(len) = line[start..].iter().position(|&b| b == quote) else {
                return Err(RespError::UnbalancedQuotes);
            };
            let close = start + len;
            let content = &line[start..close];
            let escaped = if quote == b'"' { content.contains(&b'\\') } else { content.ends_with(b"\\") };
            if escaped {
                return Err(RespError::UnsupportedInlineQuoting);
            }
            // The closing quote must be followed by a blank or the end.
            if close + 1 < line.len() && !is_c_space(line[close + 1]) {
                return Err(RespError::UnbalancedQuotes);
            }
            args.push(start..close);
            i = close + 1;
        } else {
            let start = i;
            while i < line.len() && !matches!(line[i], b' ' | b'\n' | b'\r' | b'\t') {
                if line[i] == b'"' || line[i] == b'\'' {
                    // A quote inside a word: Redis glues the quoted part on.
                    let closed = line[i + 1..].contains(&line[i]);
                    return Err(if closed { RespError::UnsupportedInlineQuoting } else { RespError::UnbalancedQuotes });
                }
                i += 1;
            }
            args.push(start..i);
        }
    }
}

// ---------------------------------------------------------------------------
// Encoders. Each appends one RESP2 value to `out`.

/// `+s\r\n`.
pub fn write_simple(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'+');
    out.extend_from_slice(s);
    out.extend_from_slice(b"\r\n");
}

/// `-msg\r\n`; `msg` carries its own code (`ERR …`, `WRONGTYPE …`). As Redis
/// does, CR and LF inside the message become spaces so a client-supplied
/// argument echoed in an error cannot break the framing.
pub fn write_error(out: &mut Vec<u8>, msg: &[u8]) {
    out.push(b'-');
    out.extend(msg.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    out.extend_from_slice(b"\r\n");
}

/// `:v\r\n`.
pub fn write_int(out: &mut Vec<u8>, v: i64) {
    out.push(b':');
    crate::num::write_i64(out, v);
    out.extend_from_slice(b"\r\n");
}

/// `$len\r\nbytes\r\n`.
pub fn write_bulk(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b'$');
    crate::num::write_u64(out, b.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

/// The integer as a bulk string (`$2\r\n42\r\n`), as Redis replies values
/// it stores as numbers.
pub fn write_bulk_i64(out: &mut Vec<u8>, v: i64) {
    let mut buf = [0u8; 20];
    write_bulk(out, crate::num::format_i64(&mut buf, v));
}

/// The null bulk string `$-1\r\n` (a missing value).
pub fn write_null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// `*n\r\n`, the header of an array of `n` values that follow.
pub fn write_array_len(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    crate::num::write_u64(out, n as u64);
    out.extend_from_slice(b"\r\n");
}

/// The null array `*-1\r\n`.
pub fn write_null_array(out: &mut Vec<u8>) {
    out.extend_from_slice(b"*-1\r\n");
}

/// `+OK\r\n`.
pub fn write_ok(out: &mut Vec<u8>) {
    out.extend_from_slice(b"+OK\r\n");
}

/// A double as Redis's `addReplyDouble` sends it in RESP2: a bulk string of
/// `%.17g` (`inf`, `-inf`); RESP3 connections get it as a double
/// (`crate::resp3`).
pub fn write_double(out: &mut Vec<u8>, d: f64) {
    let mut text = Vec::with_capacity(24);
    crate::num::write_g17(&mut text, d);
    write_bulk(out, &text);
}

/// A container command's HELP reply: its header line, then `lines`.
pub fn write_help(out: &mut Vec<u8>, container: &str, lines: &[&str]) {
    write_array_len(out, lines.len() + 1);
    write_simple(out, format!("{container} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:").as_bytes());
    for l in lines {
        write_simple(out, l.as_bytes());
    }
}
