//! The encoding of the operations the engine logs and replays.
//!
//! ```text
//! op          = command | transaction | expire | session-op
//! command     = 0x01 cmd-item
//! transaction = 0x02 count:varint item*count          (MULTI … EXEC)
//! expire      = 0x03 count:varint key:bytes*count     (expire cycle)
//! item        = 0x00 cmd-item | 0x01 reply:bytes      (reply: a session command's
//!                                                       answer, fixed at EXEC time)
//! cmd-item    = id:u8 argc:varint arg:bytes*argc      (arguments after the name)
//! bytes       = len:varint byte*len
//! session-op  = 0x04 … 0x07                           (exactly_once::commands)
//! query       = argc:varint arg:bytes*argc            (a read: the whole argv,
//!                                                       not logged)
//! ```
//!
//! The command is named by its index in the command table (one byte, not
//! its name): primary and backup run the same build. Decoding is
//! bounds-checked by `understudy_wire::codec::Reader`; a malformed op yields
//! an error reply, never a panic.

use understudy_wire::codec::{put_bytes, put_varint, Reader};

use crate::cmd::Cmd;

pub const OP_COMMAND: u8 = 1;
pub const OP_TRANSACTION: u8 = 2;
pub const OP_EXPIRE: u8 = 3;
pub const ITEM_COMMAND: u8 = 0;
pub const ITEM_REPLY: u8 = 1;

/// Appends a `cmd-item`: `args` are the arguments after the command name.
pub fn put_command(buf: &mut Vec<u8>, cmd: Cmd, args: &[&[u8]]) {
    buf.push(cmd as u8);
    put_varint(buf, args.len() as u64);
    for a in args {
        put_bytes(buf, a);
    }
}

/// Replaces `op` with a single-command op.
pub fn encode_command(op: &mut Vec<u8>, cmd: Cmd, args: &[&[u8]]) {
    op.clear();
    op.push(OP_COMMAND);
    put_command(op, cmd, args);
}

/// Replaces `op` with an expire-cycle op naming `keys`.
pub fn encode_expire<K: AsRef<[u8]>>(op: &mut Vec<u8>, keys: &[K]) {
    op.clear();
    op.push(OP_EXPIRE);
    put_varint(op, keys.len() as u64);
    for k in keys {
        put_bytes(op, k.as_ref());
    }
}

/// Arguments stored inline up to this count, so decoding a typical op
/// allocates nothing.
const INLINE_ARGS: usize = 8;

/// Replaces `query` with a read's whole argv (`StateMachine::read`).
pub fn encode_query(query: &mut Vec<u8>, argv: &[&[u8]]) {
    query.clear();
    put_varint(query, argv.len() as u64);
    for a in argv {
        put_bytes(query, a);
    }
}

/// Decodes a query written by [`encode_query`].
pub fn decode_query<'a>(query: &'a [u8], argv: &mut Argv<'a>) -> Result<(), String> {
    let mut r = Reader::new(query, "kv query");
    let n = read_count(&mut r)?;
    argv.clear();
    for _ in 0..n {
        argv.push(r.bytes().map_err(|e| e.to_string())?);
    }
    r.finish().map_err(|e| e.to_string())
}

/// A reusable argv whose slices borrow the op being decoded.
pub struct Argv<'a> {
    small: [&'a [u8]; INLINE_ARGS],
    n: usize,
    spill: Vec<&'a [u8]>,
}

impl<'a> Argv<'a> {
    pub fn new() -> Self {
        Argv { small: [&[]; INLINE_ARGS], n: 0, spill: Vec::new() }
    }

    fn clear(&mut self) {
        self.n = 0;
        self.spill.clear();
    }

    fn push(&mut self, a: &'a [u8]) {
        if self.spill.is_empty() && self.n < INLINE_ARGS {
            self.small[self.n] = a;
            self.n += 1;
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.small[..self.n]);
            }
            self.spill.push(a);
        }
    }

    pub fn as_slice(&self) -> &[&'a [u8]] {
        if self.spill.is_empty() {
            &self.small[..self.n]
        } else {
            &self.spill
        }
    }
}

impl Default for Argv<'_> {
    fn default() -> Self {
        Argv::new()
    }
}

/// Reads a `count` and checks it against the bytes left (each counted item
/// takes at least one byte), so a hostile count cannot drive a long loop.
pub fn read_count(r: &mut Reader) -> Result<usize, String> {
    let n = r.varint().map_err(|e| e.to_string())?;
    if n > r.remaining() as u64 {
        return Err(format!("count {n} exceeds the {} bytes left", r.remaining()));
    }
    Ok(n as usize)
}

/// Decodes a `cmd-item` into `argv` (whose first element is the command's
/// name) and checks the command's arity.
pub fn read_command<'a>(r: &mut Reader<'a>, argv: &mut Argv<'a>) -> Result<Cmd, String> {
    let id = r.u8().map_err(|e| e.to_string())?;
    let cmd = Cmd::from_id(id).ok_or_else(|| format!("unknown command id {id}"))?;
    let spec = cmd.spec();
    let n = read_count(r)?;
    argv.clear();
    argv.push(spec.name.as_bytes());
    for _ in 0..n {
        argv.push(r.bytes().map_err(|e| e.to_string())?);
    }
    if !spec.arity_ok(n + 1) {
        return Err(format!("{} arguments for '{}'", n + 1, spec.name));
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_roundtrip_spills_past_inline_args() {
        for n in [1usize, 7, 8, 9, 40] {
            let args: Vec<Vec<u8>> = (0..n).map(|i| format!("a{i}").into_bytes()).collect();
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let mut op = Vec::new();
            encode_command(&mut op, Cmd::Del, &refs);
            let mut r = Reader::new(&op[1..], "test");
            let mut argv = Argv::new();
            assert_eq!(read_command(&mut r, &mut argv), Ok(Cmd::Del));
            assert_eq!(argv.as_slice()[0], b"del");
            assert_eq!(&argv.as_slice()[1..], &refs[..]);
            assert!(r.finish().is_ok());
        }
    }

    #[test]
    fn bad_arity_and_ids_are_errors() {
        let mut op = Vec::new();
        encode_command(&mut op, Cmd::Get, &[b"a", b"b"]);
        let mut argv = Argv::new();
        assert!(read_command(&mut Reader::new(&op[1..], "t"), &mut argv).is_err());
        assert!(read_command(&mut Reader::new(&[255, 0], "t"), &mut argv).is_err());
        assert!(read_count(&mut Reader::new(&[0xff, 0xff, 0x7f], "t")).is_err());
    }
}
