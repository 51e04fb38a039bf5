//! The RESP2 request parser (`understudy_kv::resp`): arbitrary client bytes
//! never panic it, every range it returns lies inside the command it
//! consumed, and a stream fed in pieces (`CommandParser`, resuming) yields
//! exactly the commands the stateless `parse_command` finds in the whole
//! stream.
//!
//! Input: `max:u8 step:u8 stream…`; `max` picks `--request-bytes-max`,
//! `step` how many bytes arrive per read.
#![no_main]

use std::ops::Range;

use libfuzzer_sys::fuzz_target;
use understudy_kv::resp::{parse_command, CommandParser, RespError};

type Commands = Vec<Vec<Vec<u8>>>;

fn take(buf: &[u8], used: usize, args: &[Range<usize>], out: &mut Commands) {
    assert!(used > 0 && used <= buf.len(), "consumed {used} of {} bytes", buf.len());
    for r in args {
        assert!(r.start <= r.end && r.end <= used, "argument {r:?} outside the {used}-byte command");
    }
    out.push(args.iter().map(|r| buf[r.clone()].to_vec()).collect());
}

/// Commands of the whole stream at once, and how parsing ended.
fn whole(buf: &[u8], max: usize) -> (Commands, Result<usize, RespError>) {
    let (mut cmds, mut args, mut off) = (Vec::new(), Vec::new(), 0);
    loop {
        match parse_command(&buf[off..], max, &mut args) {
            Ok(Some(n)) => {
                take(&buf[off..], n, &args, &mut cmds);
                off += n;
            }
            Ok(None) => return (cmds, Ok(off)),
            Err(e) => {
                assert!(e.to_resp().starts_with(b"-ERR Protocol error"));
                return (cmds, Err(e));
            }
        }
    }
}

/// The same stream arriving `step` bytes at a time, parsed by one resuming
/// parser the way a connection does (the unconsumed input only grows).
fn pieces(buf: &[u8], max: usize, step: usize) -> (Commands, Result<usize, RespError>) {
    let (mut cmds, mut args, mut p) = (Vec::new(), Vec::new(), CommandParser::new());
    let (mut start, mut end) = (0, 0);
    loop {
        match p.parse(&buf[start..end], max, &mut args) {
            Ok(Some(n)) => {
                take(&buf[start..end], n, &args, &mut cmds);
                start += n;
            }
            Ok(None) if end == buf.len() => return (cmds, Ok(start)),
            Ok(None) => end = (end + step).min(buf.len()),
            Err(e) => return (cmds, Err(e)),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [m, s, stream @ ..] = data else { return };
    let max = [32usize, 1024, 64 * 1024, 16 << 20][usize::from(*m & 3)];
    let step = usize::from(*s % 64) + 1;
    let (a, ra) = whole(stream, max);
    let (b, rb) = pieces(stream, max, step);
    match (&ra, &rb) {
        // Both parsed everything they could: same commands, same leftover.
        (Ok(x), Ok(y)) => {
            assert_eq!(a, b, "piecewise parsing found other commands");
            assert_eq!(x, y);
        }
        // An error seen on a prefix may legitimately differ from the one
        // the whole stream gives (Redis checks some bounds before the
        // terminator arrives), but the commands before it must agree.
        _ => {
            let n = a.len().min(b.len());
            assert_eq!(a[..n], b[..n], "piecewise parsing found other commands ({ra:?} vs {rb:?})");
        }
    }
});
