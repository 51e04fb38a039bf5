//! The `US.*` commands: parsed by [`dispatch`] (on the connection, before
//! anything is logged) into session ops, which [`apply`] runs on both
//! replicas.
//!
//! ```text
//! session-open   = 0x04 id:bytes
//! session-call   = 0x05 id:bytes seq:varint cmd-item
//! session-close  = 0x06 id:bytes
//! session-expire = 0x07 count:varint id:bytes*count        (expire cycle)
//! ```
//!
//! Every session op reads the recorded clock once (`ctx.now_us()`): session
//! expiry is decided by it, so both replicas agree.

use understudy_wire::codec::{put_bytes, put_varint, Reader};

use super::{Call, SessionTable, ID_BYTES_MAX};
use crate::cmd::{write_arity_error, Cmd, Kind};
use crate::dispatch::Dispatch;
use crate::op::{self, read_command, read_count, Argv};
use crate::resp::{write_error, write_int};
use crate::store::{Clock, Store};

pub const OP_SESSION_OPEN: u8 = 4;
pub const OP_SESSION_CALL: u8 = 5;
pub const OP_SESSION_CLOSE: u8 = 6;
pub const OP_SESSION_EXPIRE: u8 = 7;

/// Whether `name` is one of ours (`US.` prefix, any case). These names are
/// not in the Redis command table (`COMMAND` does not list them).
pub fn is_session_command(name: &[u8]) -> bool {
    name.len() > 3 && name[..3].eq_ignore_ascii_case(b"us.")
}

const BAD_ID: &[u8] = b"ERR invalid session id: it must be 1 to 64 bytes";
const BAD_SEQ: &[u8] = b"ERR invalid request seq: it must be an integer from 1";

fn id_ok(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= ID_BYTES_MAX
}

/// Classifies a `US.*` command and encodes its op (`argv[0]` is its name,
/// for which [`is_session_command`] holds). Errors are answered here and
/// never logged.
pub fn dispatch(argv: &[&[u8]], op: &mut Vec<u8>, out: &mut Vec<u8>) -> Dispatch {
    op.clear();
    let name = argv[0].to_ascii_lowercase();
    let (name, arity_ok) = match &name[..] {
        b"us.session" => ("us.session", argv.len() == 2),
        b"us.close" => ("us.close", argv.len() == 2),
        b"us.info" => ("us.info", argv.len() == 2),
        b"us.call" => ("us.call", argv.len() >= 4),
        _ => {
            let shown = String::from_utf8_lossy(&argv[0][..argv[0].len().min(64)]).into_owned();
            let msg = format!("ERR unknown command '{shown}': the session commands are US.SESSION, US.CALL, US.CLOSE, US.INFO");
            write_error(out, msg.as_bytes());
            return Dispatch::Done;
        }
    };
    if !arity_ok {
        write_arity_error(out, name);
        return Dispatch::Done;
    }
    if !id_ok(argv[1]) {
        write_error(out, BAD_ID);
        return Dispatch::Done;
    }
    let tag = match name {
        "us.info" => return Dispatch::Read,
        "us.session" => OP_SESSION_OPEN,
        "us.close" => OP_SESSION_CLOSE,
        _ => return dispatch_call(argv, op, out),
    };
    op.push(tag);
    put_bytes(op, argv[1]);
    Dispatch::Write
}

/// `US.CALL <id> <seq> <cmd> <arg>…`: the wrapped command must be a
/// keyspace command with a valid arity.
fn dispatch_call(argv: &[&[u8]], op: &mut Vec<u8>, out: &mut Vec<u8>) -> Dispatch {
    let Some(seq) = crate::num::parse_i64(argv[2]).filter(|&s| s >= 1) else {
        write_error(out, BAD_SEQ);
        return Dispatch::Done;
    };
    let inner = &argv[3..];
    let Some(cmd) = Cmd::lookup(inner[0]) else {
        let shown = String::from_utf8_lossy(&inner[0][..inner[0].len().min(64)]).into_owned();
        write_error(out, format!("ERR unknown command '{shown}' in US.CALL").as_bytes());
        return Dispatch::Done;
    };
    let spec = cmd.spec();
    if spec.kind == Kind::Session {
        let msg = format!("ERR US.CALL runs keyspace commands; '{}' is a connection command", spec.name);
        write_error(out, msg.as_bytes());
        return Dispatch::Done;
    }
    if !spec.arity_ok(inner.len()) {
        write_arity_error(out, spec.name);
        return Dispatch::Done;
    }
    op.push(OP_SESSION_CALL);
    put_bytes(op, argv[1]);
    put_varint(op, seq as u64);
    op::put_command(op, cmd, &inner[1..]);
    Dispatch::Write
}

/// Runs a session call's command: the state machine's command runner
/// (keyspace commands, and scripts with their cache and VM).
pub type RunCommand<'a> = dyn FnMut(Cmd, &mut Store, &mut dyn Clock, &[&[u8]], &mut Vec<u8>) + 'a;

/// Replaces `op` with an expire op naming `ids` (the primary's expire cycle).
pub fn encode_expire<I: AsRef<[u8]>>(op: &mut Vec<u8>, ids: &[I]) {
    op.clear();
    op.push(OP_SESSION_EXPIRE);
    put_varint(op, ids.len() as u64);
    for id in ids {
        put_bytes(op, id.as_ref());
    }
}

/// `US.INFO <id>` (a read).
pub fn read(table: &SessionTable, now_ms: u64, argv: &[&[u8]], out: &mut Vec<u8>) {
    match argv {
        [name, id] if name.eq_ignore_ascii_case(b"us.info") => table.info(id, now_ms, out),
        _ => write_error(out, b"ERR internal: not a session read"),
    }
}

/// Applies a session op whose tag was read from `r`; `run` executes the
/// command of a session call. The op is decoded and
/// checked whole before anything changes, so a corrupt op changes nothing.
pub fn apply(
    tag: u8,
    store: &mut Store,
    table: &mut SessionTable,
    clock: &mut dyn Clock,
    mut r: Reader,
    reply: &mut Vec<u8>,
    run: &mut RunCommand,
) -> Result<(), String> {
    let w = |e: understudy_wire::WireError| e.to_string();
    if tag == OP_SESSION_EXPIRE {
        let n = read_count(&mut r)?;
        let ids = (0..n).map(|_| r.bytes().map_err(w)).collect::<Result<Vec<_>, _>>()?;
        r.finish().map_err(w)?;
        let now_ms = clock.now_ms();
        let expired = table.expire(&ids, now_ms);
        write_int(reply, expired as i64);
        return Ok(());
    }
    let id = r.bytes().map_err(w)?;
    if !id_ok(id) {
        return Err(format!("session id of {} bytes", id.len()));
    }
    match tag {
        OP_SESSION_OPEN | OP_SESSION_CLOSE => {
            r.finish().map_err(w)?;
            let now_ms = clock.now_ms();
            if tag == OP_SESSION_OPEN {
                table.open(id, now_ms, reply);
            } else {
                table.close(id, now_ms, reply);
            }
            Ok(())
        }
        OP_SESSION_CALL => {
            let seq = r.varint().map_err(w)?;
            let mut argv = Argv::new();
            let cmd = read_command(&mut r, &mut argv)?;
            r.finish().map_err(w)?;
            if seq == 0 || cmd.spec().kind == Kind::Session {
                return Err(format!("session call {seq} of '{}'", cmd.spec().name));
            }
            let now_ms = clock.now_ms();
            match table.call(id, seq, now_ms) {
                Call::Apply => {
                    let start = reply.len();
                    run(cmd, store, clock, argv.as_slice(), reply);
                    table.record(id, seq, &reply[start..]);
                }
                Call::Replay(bytes) => reply.extend_from_slice(&bytes),
                Call::Refuse(msg) => write_error(reply, msg.as_bytes()),
            }
            Ok(())
        }
        other => Err(format!("unknown session op {other}")),
    }
}
