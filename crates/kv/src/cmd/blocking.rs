//! BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BZPOPMIN, BZPOPMAX, BLMPOP and BZMPOP.
//!
//! The waiting is the node's (`understudy_node`'s Redis front end): it
//! logs one of these commands only once a key it names exists, or never
//! (a timeout answers a null array there). What is logged and applied here
//! is therefore always the non-blocking form — the same a transaction gets
//! in Redis — so both replicas pop the same element from the same state.

use crate::cmd::{exec_write, Cmd, Exec};
use crate::resp::{write_array_len, write_bulk, write_null_array};
use crate::store::{Clock, FixedClock, Store};

/// The keys a blocking command waits on and its timeout argument; `None`
/// if its arguments (other than the timeout) are wrong.
pub fn waits_on<'a>(cmd: Cmd, argv: &[&'a [u8]]) -> Option<(Vec<&'a [u8]>, &'a [u8])> {
    let n = argv.len();
    match cmd {
        Cmd::Blmpop | Cmd::Bzmpop if n >= 5 => {
            let m = crate::cmd::mpop::parse(argv, 2, cmd == Cmd::Blmpop).ok()?;
            Some((m.keys, argv[1]))
        }
        Cmd::Blpop | Cmd::Brpop | Cmd::Bzpopmin | Cmd::Bzpopmax if n >= 3 => Some((argv[1..n - 1].to_vec(), argv[n - 1])),
        Cmd::Blmove if n == 6 => Some((vec![argv[1]], argv[5])),
        Cmd::Brpoplpush if n == 4 => Some((vec![argv[1]], argv[3])),
        _ => None,
    }
}

/// Redis 7.0's `getTimeoutFromObjectOrReply` in seconds: milliseconds to
/// wait, 0 for ever. Out-of-range values give "timeout is negative", as
/// the C cast of an overflowing `long double` does there.
pub fn timeout_ms(arg: &[u8]) -> Result<u64, &'static [u8]> {
    const NOT_FLOAT: &[u8] = b"ERR timeout is not a float or out of range";
    const NEGATIVE: &[u8] = b"ERR timeout is negative";
    let secs = match crate::f80::parse(arg) {
        None => return Err(NOT_FLOAT),
        Some(crate::f80::Parsed::Infinite) => return Err(NEGATIVE),
        Some(crate::f80::Parsed::Finite(f)) => f.to_f64(),
    };
    let ms = (secs * 1000.0).ceil();
    if !ms.is_finite() || ms >= i64::MAX as f64 || ms < 0.0 {
        return Err(NEGATIVE);
    }
    Ok(ms as u64)
}

/// Whether the node may log `argv` now rather than wait: its arguments
/// are wrong (the logged command answers the error), or a key it waits on
/// exists (it then pops, or answers WRONGTYPE).
pub fn ready(store: &Store, now_ms: u64, cmd: Cmd, argv: &[&[u8]]) -> bool {
    let Some((keys, timeout)) = waits_on(cmd, argv) else { return true };
    if timeout_ms(timeout).is_err() {
        return true;
    }
    if cmd == Cmd::Blmove && !(is_side(argv[3]) && is_side(argv[4])) {
        return true;
    }
    let mut clock = FixedClock(now_ms);
    keys.iter().any(|k| store.get(k, &mut clock as &mut dyn Clock).is_some())
}

fn is_side(arg: &[u8]) -> bool {
    arg.eq_ignore_ascii_case(b"left") || arg.eq_ignore_ascii_case(b"right")
}

/// Applies a blocking command in its non-blocking form.
pub fn write(cmd: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    if matches!(cmd, Cmd::Blmpop | Cmd::Bzmpop) {
        return mpop(cmd, store, x, argv);
    }
    let Some((keys, timeout)) = waits_on(cmd, argv) else {
        return x.arity_err(cmd.spec().name);
    };
    match cmd {
        Cmd::Blmove => {
            // Redis checks the directions before the timeout.
            if !(is_side(argv[3]) && is_side(argv[4])) {
                return x.err(crate::cmd::SYNTAX);
            }
            if let Err(e) = timeout_ms(timeout) {
                return x.err(e);
            }
            pop_into(Cmd::Lmove, store, x, &[b"lmove", argv[1], argv[2], argv[3], argv[4]], None);
        }
        Cmd::Brpoplpush => {
            if let Err(e) = timeout_ms(timeout) {
                return x.err(e);
            }
            pop_into(Cmd::Rpoplpush, store, x, &[b"rpoplpush", argv[1], argv[2]], None);
        }
        _ => {
            if let Err(e) = timeout_ms(timeout) {
                return x.err(e);
            }
            let (pop, name): (Cmd, &[u8]) = match cmd {
                Cmd::Blpop => (Cmd::Lpop, b"lpop"),
                Cmd::Brpop => (Cmd::Rpop, b"rpop"),
                Cmd::Bzpopmin => (Cmd::Zpopmin, b"zpopmin"),
                _ => (Cmd::Zpopmax, b"zpopmax"),
            };
            for key in keys {
                if pop_into(pop, store, x, &[name, key], Some(key)) {
                    return;
                }
            }
            write_null_array(x.out);
        }
    }
}

/// BLMPOP timeout numkeys key [key …] LEFT|RIGHT [COUNT count] and
/// BZMPOP timeout numkeys key [key …] MIN|MAX [COUNT count] as LMPOP and
/// ZMPOP: Redis checks numkeys, the end and COUNT before the timeout, and
/// nothing to pop answers the null array a timeout would.
fn mpop(cmd: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]]) {
    if argv.len() < 5 {
        return x.arity_err(cmd.spec().name);
    }
    let m = match crate::cmd::mpop::parse(argv, 2, cmd == Cmd::Blmpop) {
        Ok(m) => m,
        Err(e) => return x.err(e),
    };
    if let Err(e) = timeout_ms(argv[1]) {
        return x.err(e);
    }
    if cmd == Cmd::Blmpop {
        crate::cmd::mpop::pop_list(store, x, &m);
    } else {
        crate::cmd::zsets::pop_generic(store, x, &m.keys, !m.first_end, Some(m.count), true);
    }
}

/// Runs the non-blocking `pop` command; if it popped (or failed), writes
/// its reply — prefixed with `key` as the blocking form replies — and
/// returns true. An empty source writes nothing for a keyed pop (the
/// caller tries the next key) and the move's null for a move (what a
/// transaction gets; a timeout's null array is the node's).
fn pop_into(pop: Cmd, store: &mut Store, x: &mut Exec, argv: &[&[u8]], key: Option<&[u8]>) -> bool {
    let mut reply = Vec::new();
    exec_write(pop, store, &mut Exec { clock: &mut *x.clock, out: &mut reply }, argv);
    let empty = reply == b"$-1\r\n" || reply == b"*0\r\n" || reply == b"*-1\r\n";
    match (empty, reply.first(), key) {
        (true, _, Some(_)) => false,
        (false, Some(b'-'), _) | (_, _, None) => {
            x.out.extend_from_slice(&reply);
            true
        }
        (false, _, Some(key)) => {
            // LPOP's bulk becomes [key, element]; ZPOPMIN's [member,
            // score] becomes [key, member, score].
            if reply[0] == b'*' {
                let body = reply.iter().position(|&b| b == b'\n').map_or(reply.len(), |i| i + 1);
                write_array_len(x.out, 3);
                write_bulk(x.out, key);
                x.out.extend_from_slice(&reply[body..]);
            } else {
                write_array_len(x.out, 2);
                write_bulk(x.out, key);
                x.out.extend_from_slice(&reply);
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{AggVal, Bytes, Entry};

    fn argv(line: &str) -> Vec<&[u8]> {
        line.split(' ').map(str::as_bytes).collect()
    }

    #[test]
    fn multi_key_pops_wait_on_their_keys_unless_their_arguments_are_wrong() {
        let mut store = Store::default();
        let a = argv("blmpop 1.5 2 k1 k2 LEFT COUNT 3");
        assert_eq!(waits_on(Cmd::Blmpop, &a), Some((vec![&b"k1"[..], b"k2"], &b"1.5"[..])));
        assert_eq!(waits_on(Cmd::Bzmpop, &argv("bzmpop 0 1 z MAX")), Some((vec![&b"z"[..]], &b"0"[..])));
        assert!(!ready(&store, 0, Cmd::Blmpop, &a), "no key yet: it waits");
        // Wrong arguments are answered at once, by the logged command.
        for bad in
            ["blmpop 0 0 k1 LEFT", "blmpop 0 3 k1 LEFT", "blmpop 0 1 k1 MIN", "blmpop 0 1 k1 LEFT COUNT 0", "blmpop x 1 k1 LEFT"]
        {
            assert!(ready(&store, 0, Cmd::Blmpop, &argv(bad)), "{bad}");
        }
        assert!(ready(&store, 0, Cmd::Bzmpop, &argv("bzmpop 0 1 z LEFT")));
        store.put(Entry::aggregate(b"k2", None, AggVal::List([Bytes::from(&b"v"[..])].into_iter().collect())));
        assert!(ready(&store, 0, Cmd::Blmpop, &a), "a key exists: it pops");
        let mut out = Vec::new();
        let mut clock = FixedClock(0);
        write(Cmd::Blmpop, &mut store, &mut Exec { clock: &mut clock, out: &mut out }, &a);
        assert_eq!(out, b"*2\r\n$2\r\nk2\r\n*1\r\n$1\r\nv\r\n");
        out.clear();
        // The non-blocking form with nothing to pop: a timeout's null array.
        write(Cmd::Blmpop, &mut store, &mut Exec { clock: &mut clock, out: &mut out }, &a);
        assert_eq!(out, b"*-1\r\n");
    }
}
