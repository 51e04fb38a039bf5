//! SLOWLOG: the commands of a node whose execution took longer than
//! `slowlog-log-slower-than` microseconds, the newest
//! `slowlog-max-len` of them, with Redis 7.0's entry format. The node
//! times each command (decode to reply queued, without the wait at the
//! output gate) and records it here ([`Captured`], [`Slowlog::push`]).

use std::collections::VecDeque;

use crate::resp::{write_array_len, write_bulk, write_error, write_int, write_ok};

/// Redis's `SLOWLOG_ENTRY_MAX_ARGC` and `SLOWLOG_ENTRY_MAX_STRING`.
const MAX_ARGC: usize = 32;
const MAX_STRING: usize = 128;

/// What replaces a secret argument (Redis's `shared.redacted`).
const REDACTED: &[u8] = b"(redacted)";

struct Entry {
    id: u64,
    unix_s: u64,
    micros: u64,
    argv: Vec<Box<[u8]>>,
    addr: String,
    name: Box<[u8]>,
}

/// A node's slow log.
pub struct Slowlog {
    entries: VecDeque<Entry>,
    next_id: u64,
    /// `slowlog-log-slower-than` (µs; negative: off, 0: every command).
    pub(crate) slower_than_us: i64,
    /// `slowlog-max-len`.
    pub(crate) max_len: u64,
}

impl Default for Slowlog {
    fn default() -> Slowlog {
        Slowlog { entries: VecDeque::new(), next_id: 0, slower_than_us: 10_000, max_len: 128 }
    }
}

impl Slowlog {
    /// Records a command that took `micros` if that is slow enough,
    /// trimming the log to `slowlog-max-len` (Redis trims when it adds).
    pub fn push(&mut self, argv: Vec<Box<[u8]>>, micros: u64, unix_s: u64, addr: &str, name: &[u8]) {
        if self.slower_than_us < 0 || micros < self.slower_than_us as u64 {
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.entries.push_front(Entry { id, unix_s, micros, argv, addr: addr.to_string(), name: name.into() });
        while self.entries.len() as u64 > self.max_len {
            self.entries.pop_back();
        }
    }

    /// SLOWLOG GET|LEN|RESET|HELP, arity checked.
    pub fn command(&mut self, argv: &[&[u8]], out: &mut Vec<u8>) {
        match &argv[1].to_ascii_lowercase()[..] {
            b"get" => {
                let count = match argv.get(2) {
                    None => 10,
                    Some(c) => match crate::num::parse_i64(c) {
                        Some(n) if n >= -1 => n,
                        _ => return write_error(out, b"ERR count should be greater than or equal to -1"),
                    },
                };
                let n = if count == -1 { self.entries.len() } else { self.entries.len().min(count as usize) };
                write_array_len(out, n);
                for e in self.entries.iter().take(n) {
                    write_array_len(out, 6);
                    write_int(out, e.id as i64);
                    write_int(out, e.unix_s as i64);
                    write_int(out, e.micros as i64);
                    write_array_len(out, e.argv.len());
                    e.argv.iter().for_each(|a| write_bulk(out, a));
                    write_bulk(out, e.addr.as_bytes());
                    write_bulk(out, &e.name);
                }
            }
            b"len" => write_int(out, self.entries.len() as i64),
            b"reset" => {
                self.entries.clear();
                write_ok(out);
            }
            _ => crate::resp::write_help(out, "SLOWLOG", HELP),
        }
    }
}

const HELP: &[&str] = &[
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
    "HELP",
    "    Prints this help.",
];

/// A command's arguments as a slow-log entry keeps them, captured while
/// they are at hand (before the command runs), in a buffer reused from
/// command to command: at most 32 (the last one then says how many more
/// there were), each cut at 128 bytes, secrets redacted as Redis 7.0
/// redacts them (AUTH's arguments, HELLO's AUTH pair, CONFIG SET's
/// `requirepass` and `masterauth` values).
#[derive(Default)]
pub struct Captured {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Captured {
    pub fn capture(&mut self, argv: &[&[u8]]) {
        self.bytes.clear();
        self.ends.clear();
        let argc = argv.len();
        let kept = argc.min(MAX_ARGC);
        let redacted = redacted(argv);
        for (j, a) in argv.iter().take(kept).enumerate() {
            if kept != argc && j == kept - 1 {
                self.bytes.extend_from_slice(format!("... ({} more arguments)", argc - kept + 1).as_bytes());
            } else if redacted(j) {
                self.bytes.extend_from_slice(REDACTED);
            } else if a.len() > MAX_STRING {
                self.bytes.extend_from_slice(&a[..MAX_STRING]);
                self.bytes.extend_from_slice(format!("... ({} more bytes)", a.len() - MAX_STRING).as_bytes());
            } else {
                self.bytes.extend_from_slice(a);
            }
            self.ends.push(self.bytes.len());
        }
    }

    /// The captured arguments, for [`Slowlog::push`].
    pub fn argv(&self) -> Vec<Box<[u8]>> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let a = self.bytes[start..end].into();
                start = end;
                a
            })
            .collect()
    }
}

/// Which arguments of `argv` are secrets.
fn redacted(argv: &[&[u8]]) -> impl Fn(usize) -> bool {
    let is = |j: usize, w: &[u8]| argv.get(j).is_some_and(|a| a.eq_ignore_ascii_case(w));
    let mut secret = vec![false; argv.len()];
    if is(0, b"auth") {
        secret.iter_mut().skip(1).for_each(|s| *s = true);
    } else if is(0, b"hello") {
        let mut j = 2;
        while j < argv.len() {
            if is(j, b"auth") && j + 2 < argv.len() {
                secret[j + 1] = true;
                secret[j + 2] = true;
                j += 3;
            } else {
                j += 2;
            }
        }
    } else if is(0, b"config") && is(1, b"set") && argv.len() >= 4 && argv.len().is_multiple_of(2) {
        for j in (2..argv.len()).step_by(2) {
            if is(j, b"requirepass") || is(j, b"masterauth") {
                secret[j + 1] = true;
            }
        }
    }
    move |j| secret.get(j).copied().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(argv: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut c = Captured::default();
        c.capture(argv);
        c.argv().into_iter().map(Vec::from).collect()
    }

    #[test]
    fn arguments_are_trimmed_and_redacted_as_redis_does() {
        let long = vec![b'x'; 130];
        assert_eq!(captured(&[b"SET", b"k", &long])[2], [&[b'x'; 128][..], b"... (2 more bytes)"].concat());
        let many: Vec<Vec<u8>> = (0..40).map(|i| format!("a{i}").into_bytes()).collect();
        let many: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
        let c = captured(&many);
        assert_eq!(c.len(), 32);
        assert_eq!(c[31], b"... (9 more arguments)");
        assert_eq!(captured(&[b"AUTH", b"u", b"p"]), [&b"AUTH"[..], REDACTED, REDACTED]);
        assert_eq!(captured(&[b"hello", b"3", b"AUTH", b"u", b"p", b"SETNAME", b"n"])[3..5], [REDACTED, REDACTED]);
        assert_eq!(captured(&[b"CONFIG", b"SET", b"masterauth", b"zz"])[3], REDACTED);
        assert_eq!(captured(&[b"CONFIG", b"SET", b"requirepass", b"zz", b"x"])[3], b"zz", "a syntax error is not redacted");
    }

    #[test]
    fn the_log_keeps_the_newest_slow_entries() {
        let mut log = Slowlog { max_len: 2, ..Slowlog::default() };
        log.push(vec![b"GET".to_vec().into()], 5, 1, "a:1", b"");
        assert_eq!(log.entries.len(), 0, "faster than 10 ms");
        for i in 0..3 {
            log.push(vec![format!("c{i}").into_bytes().into()], 20_000, 1, "a:1", b"n");
        }
        let mut out = Vec::new();
        log.command(&[b"slowlog", b"len"], &mut out);
        assert_eq!(out, b":2\r\n");
        out.clear();
        log.command(&[b"slowlog", b"get", b"1"], &mut out);
        assert_eq!(out, b"*1\r\n*6\r\n:2\r\n:1\r\n:20000\r\n*1\r\n$2\r\nc2\r\n$3\r\na:1\r\n$1\r\nn\r\n");
    }
}
