//! Conversions between RESP2 replies and Lua values, as Redis 7.0's
//! `script_lua.c` does them.
//!
//! Commands → Lua (`redisProtocolToLuaType`): integer → number, bulk →
//! string, null bulk or null array → `false`, array → table, status →
//! `{ok=…}`, error → `{err=…}`.
//!
//! Lua → client (`luaReplyToRedisReply`): string → bulk, number → integer
//! (truncated as C's cast does), `true` → `:1`, `false`/`nil` → null bulk,
//! a table with a string `err` → error, with a string `ok` → status, with
//! a number `double` → the double as a bulk string (RESP2), `map` and
//! `set` → their RESP2 arrays, any other table → an array of its elements
//! 1, 2, … up to the first nil.

use mlua::{Lua, Table, Value};

use crate::resp::{write_array_len, write_bulk, write_error, write_int, write_null, write_simple};

/// Nesting at which a returned table is cut off, as Redis's Lua stack
/// limit does (a table that contains itself would never end).
const DEPTH_MAX: usize = 1000;

/// One parsed RESP2 reply, borrowing the reply bytes.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone)]
pub enum Resp<'a> {
    Status(&'a [u8]),
    Error(&'a [u8]),
    Int(i64),
    Bulk(Option<&'a [u8]>),
    Array(Option<Vec<Resp<'a>>>),
}

fn line(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = buf.windows(2).position(|w| w == b"\r\n")?;
    Some((&buf[..i], &buf[i + 2..]))
}

/// Parses one complete reply written by our commands; `None` if it is not
/// well formed (never the case for a command's own reply).
pub fn parse(buf: &[u8]) -> Option<(Resp<'_>, &[u8])> {
    let (&t, rest) = buf.split_first()?;
    let (l, rest) = line(rest)?;
    let num = || crate::num::parse_i64(l);
    match t {
        b'+' => Some((Resp::Status(l), rest)),
        b'-' => Some((Resp::Error(l), rest)),
        b':' => Some((Resp::Int(num()?), rest)),
        b'$' => {
            let n = num()?;
            if n < 0 {
                return Some((Resp::Bulk(None), rest));
            }
            let n = usize::try_from(n).ok()?;
            let body = rest.get(..n)?;
            (rest.get(n..n + 2)? == b"\r\n").then_some((Resp::Bulk(Some(body)), &rest[n + 2..]))
        }
        b'*' => {
            let n = num()?;
            if n < 0 {
                return Some((Resp::Array(None), rest));
            }
            let mut items = Vec::with_capacity((n as usize).min(1024));
            let mut rest = rest;
            for _ in 0..n {
                let (v, r) = parse(rest)?;
                items.push(v);
                rest = r;
            }
            Some((Resp::Array(Some(items)), rest))
        }
        _ => None,
    }
}

/// Puts a reply whose order comes from a hash table in byte order, so a
/// script sees the same order on both replicas (our hash tables are seeded
/// per process). `pairs`: elements go by field/value pairs (HGETALL).
/// SCAN-family replies have their element array (the second) sorted.
pub fn sort_unordered(cmd: &str, reply: &mut Resp) {
    let (target, pairs) = match cmd {
        "hgetall" => (reply, true),
        "hkeys" | "hvals" | "smembers" | "sunion" | "sinter" | "sdiff" | "keys" => (reply, false),
        "scan" | "sscan" | "hscan" => match reply {
            Resp::Array(Some(parts)) if parts.len() == 2 => (&mut parts[1], cmd == "hscan"),
            _ => return,
        },
        _ => return,
    };
    let Resp::Array(Some(items)) = target else { return };
    if pairs && items.len() % 2 == 0 {
        let mut chunks: Vec<[Resp; 2]> = Vec::with_capacity(items.len() / 2);
        let mut it = std::mem::take(items).into_iter();
        while let (Some(a), Some(b)) = (it.next(), it.next()) {
            chunks.push([a, b]);
        }
        chunks.sort();
        items.extend(chunks.into_iter().flatten());
    } else {
        items.sort();
    }
}

/// Redis's `luaPushErrorBuff`: an error text (`-CODE msg`, or `msg`, cut
/// at a NUL as C reads it) as the `err` string of an error table: `CODE
/// msg`, with `ERR` for a text without a code, and no CR/LF at either end
/// of the message.
pub fn error_text(text: &[u8]) -> Vec<u8> {
    let text = &text[..text.iter().position(|&b| b == 0).unwrap_or(text.len())];
    let (code, msg): (&[u8], &[u8]) = match text.strip_prefix(b"-") {
        Some(rest) => match rest.iter().position(|&b| b == b' ') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (b"ERR", rest),
        },
        None => (b"ERR", text),
    };
    let msg = trim_crlf(msg);
    let mut out = code.to_vec();
    out.push(b' ');
    out.extend_from_slice(msg);
    out
}

/// `sdstrim(s, "\r\n")`: CR and LF off both ends.
pub fn trim_crlf(mut s: &[u8]) -> &[u8] {
    while let [b'\r' | b'\n', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b'\r' | b'\n'] = s {
        s = rest;
    }
    s
}

/// An error table `{err=…}` for the text of an error reply or a message,
/// with Redis's `ignore_error_stats_update` field when `command` (the
/// error came from running a command).
pub fn error_table(lua: &Lua, text: &[u8], command: bool) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("err", lua.create_string(error_text(text))?)?;
    if command {
        t.raw_set("ignore_error_stats_update", true)?;
    }
    Ok(t)
}

/// A command's reply as the Lua value `redis.call` returns.
pub fn to_lua(lua: &Lua, r: &Resp) -> mlua::Result<Value> {
    Ok(match r {
        Resp::Int(i) => Value::Number(*i as f64),
        Resp::Bulk(Some(b)) => Value::String(lua.create_string(b)?),
        Resp::Bulk(None) | Resp::Array(None) => Value::Boolean(false),
        Resp::Status(s) => {
            let t = lua.create_table()?;
            t.raw_set("ok", lua.create_string(s)?)?;
            Value::Table(t)
        }
        Resp::Error(e) => {
            let mut text = b"-".to_vec();
            text.extend_from_slice(e);
            Value::Table(error_table(lua, &text, true)?)
        }
        Resp::Array(Some(items)) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            Value::Table(t)
        }
    })
}

/// C's `(long long)` cast of a double as x86-64 does it: truncation, and
/// the "integer indefinite" value for NaN and values out of range.
pub fn c_i64(n: f64) -> i64 {
    // i64::MAX as f64 is 2^63.
    let bound = i64::MAX as f64;
    if n.is_nan() || !(-bound..bound).contains(&n) {
        i64::MIN
    } else {
        n as i64
    }
}

/// C's `%.17g` (how Redis turns a Lua number argument into a string, and
/// a double reply into a bulk string).
pub fn fmt_g17(x: f64) -> String {
    fmt_g(x, 17)
}

/// C's `%.{prec}g`.
pub fn fmt_g(x: f64, prec: usize) -> String {
    if x.is_nan() {
        return if x.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if x.is_infinite() {
        return if x < 0.0 { "-inf" } else { "inf" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{:.*e}", prec - 1, x);
    let (mantissa, exp) = sci.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("exponent digits");
    if exp < -4 || exp >= prec as i32 {
        let m = strip_zeros(mantissa);
        format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    } else {
        let fixed = format!("{:.*}", (prec as i32 - 1 - exp) as usize, x);
        strip_zeros(&fixed).to_string()
    }
}

fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Appends the client reply for a script's return value.
pub fn write_reply(v: &Value, out: &mut Vec<u8>) {
    write_value(v, out, 0);
}

fn write_value(v: &Value, out: &mut Vec<u8>, depth: usize) {
    if depth > DEPTH_MAX {
        return write_error(out, b"ERR reached lua stack limit");
    }
    match v {
        Value::String(s) => write_bulk(out, &s.as_bytes()),
        Value::Boolean(true) => write_int(out, 1),
        Value::Integer(i) => write_int(out, *i),
        Value::Number(n) => write_int(out, c_i64(*n)),
        Value::Table(t) => write_table(t, out, depth),
        _ => write_null(out),
    }
}

/// A string field of a reply table, read raw (as `lua_rawget`).
fn string_field(t: &Table, name: &str) -> Option<mlua::LuaString> {
    match t.raw_get::<Value>(name) {
        Ok(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn write_table(t: &Table, out: &mut Vec<u8>, depth: usize) {
    if string_field(t, "err").is_some() {
        // luaExtractErrorInformation reads the field as a C string, and
        // addReplyErrorFormatEx trims CR/LF off the end of "-msg".
        let msg = match t.get::<Value>("err") {
            Ok(Value::String(s)) => s.as_bytes().to_vec(),
            _ => Vec::new(),
        };
        let msg = &msg[..msg.iter().position(|&b| b == 0).unwrap_or(msg.len())];
        let end = msg.iter().rposition(|&b| b != b'\r' && b != b'\n').map_or(0, |i| i + 1);
        return write_error(out, &msg[..end]);
    }
    if let Some(ok) = string_field(t, "ok") {
        let ok = ok.as_bytes();
        let ok = &ok[..ok.iter().position(|&b| b == 0).unwrap_or(ok.len())];
        let mapped: Vec<u8> = ok.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }).collect();
        return write_simple(out, &mapped);
    }
    if let Ok(Value::Number(_) | Value::Integer(_)) = t.raw_get::<Value>("double") {
        let d = match t.raw_get::<Value>("double") {
            Ok(Value::Integer(i)) => i as f64,
            Ok(Value::Number(n)) => n,
            _ => 0.0,
        };
        return write_bulk(out, fmt_g17(d).as_bytes());
    }
    for (field, is_map) in [("map", true), ("set", false)] {
        if let Ok(Value::Table(inner)) = t.raw_get::<Value>(field) {
            let pairs: Vec<(Value, Value)> = inner.pairs::<Value, Value>().filter_map(Result::ok).collect();
            write_array_len(out, pairs.len() * if is_map { 2 } else { 1 });
            for (k, v) in &pairs {
                write_value(k, out, depth + 1);
                if is_map {
                    write_value(v, out, depth + 1);
                }
            }
            return;
        }
    }
    let mut items = Vec::new();
    for i in 1.. {
        match t.raw_get::<Value>(i) {
            Ok(Value::Nil) | Err(_) => break,
            Ok(v) => items.push(v),
        }
    }
    write_array_len(out, items.len());
    for item in &items {
        write_value(item, out, depth + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g17_matches_c() {
        assert_eq!(fmt_g17(0.1), "0.10000000000000001");
        assert_eq!(fmt_g17(1.0), "1");
        assert_eq!(fmt_g17(-3.5), "-3.5");
        assert_eq!(fmt_g17(1e20), "1e+20");
        assert_eq!(fmt_g17(123456789012345678.0), "1.2345678901234568e+17");
        assert_eq!(fmt_g17(1e-5), "1.0000000000000001e-05");
        assert_eq!(fmt_g17(0.0001), "0.0001");
        assert_eq!(fmt_g(0.1, 14), "0.1");
        assert_eq!(fmt_g(1.0 / 3.0, 14), "0.33333333333333");
    }

    #[test]
    fn casts_and_error_texts() {
        assert_eq!(c_i64(3.99), 3);
        assert_eq!(c_i64(-3.99), -3);
        assert_eq!(c_i64(f64::INFINITY), i64::MIN);
        assert_eq!(c_i64(f64::NAN), i64::MIN);
        assert_eq!(error_text(b"-WRONGTYPE Operation"), b"WRONGTYPE Operation");
        assert_eq!(error_text(b"-oops"), b"ERR oops");
        assert_eq!(error_text(b"-"), b"ERR ");
        assert_eq!(error_text(b"Unknown command"), b"ERR Unknown command");
        assert_eq!(error_text(b"-E a\r\n"), b"E a");
    }

    #[test]
    fn unordered_replies_are_sorted_by_pairs() {
        let buf = b"*4\r\n$1\r\nb\r\n$1\r\n1\r\n$1\r\na\r\n$1\r\n2\r\n";
        let (mut r, rest) = parse(buf).unwrap();
        assert!(rest.is_empty());
        sort_unordered("hgetall", &mut r);
        let want = Resp::Array(Some(vec![
            Resp::Bulk(Some(b"a")),
            Resp::Bulk(Some(b"2")),
            Resp::Bulk(Some(b"b")),
            Resp::Bulk(Some(b"1")),
        ]));
        assert_eq!(r, want);
    }
}
