//! One client connection's protocol state: MULTI queue, client name,
//! connection commands (HELLO, CLIENT, CONFIG, COMMAND, …).
//!
//! [`Session::dispatch`] classifies each parsed command and tells the node
//! what to do with it ([`Dispatch`]): answer at once (its reply depends on
//! no replicated state), run a read, log and apply a write, or write INFO.
//! Arity errors and unknown commands are answered here, with Redis's exact
//! messages, so they never reach the log.
//!
//! The exactly-once session commands (`US.SESSION`, `US.CALL`, …) are
//! parsed by `exactly_once::commands`; they are refused inside MULTI.
//!
//! Inside MULTI, commands are queued as Redis does; EXEC turns the queue into
//! ONE transaction op, applied atomically by `Kv::apply`. Connection
//! commands queued in a transaction (PING, CLIENT SETNAME…) run at EXEC time
//! on the session and their replies travel in the op as fixed bytes.
//!
//! WATCH is decided on the primary before anything is logged
//! ([`Dispatch::Keyspace`], `crate::watch`): an EXEC whose watched keys
//! changed answers a null array and logs nothing.
//!
//! Not implemented, by choice: INFO, ROLE, WAIT and the pub/sub commands
//! inside MULTI (the node answers them; queuing one aborts the
//! transaction). `HELLO 3` switches the connection to RESP3: replies are
//! produced in RESP2 and converted on the way out (`crate::resp3`).

use std::sync::Arc;

use understudy_wire::codec::{put_bytes, put_varint, Reader};

use crate::auth::{Auth, NOAUTH};
use crate::cmd::keyspace::c_str;
use crate::cmd::{write_arity_error, Cmd, Kind, NOT_INT, SPECS};
use crate::exactly_once::commands as exactly_once;
use crate::kv::Kv;
use crate::op::{self, ITEM_COMMAND, ITEM_REPLY, OP_TRANSACTION};
use crate::resp::{write_array_len, write_bulk, write_error, write_int, write_null, write_ok, write_simple};
use crate::resp3::Shape;
use crate::watch::Watching;

pub use crate::dispatch::Dispatch;

/// The version HELLO reports: the Redis release whose replies we match.
pub const REDIS_VERSION: &str = "7.0.15";

/// Queued commands of an open MULTI.
#[derive(Default)]
struct Multi {
    /// Encoded items back to back: keyspace commands as transaction
    /// `cmd-item`s, connection commands as their full argv.
    buf: Vec<u8>,
    /// Each queued item: whether it is a connection command, and its bytes.
    items: Vec<(bool, std::ops::Range<usize>)>,
    /// A command failed to queue (unknown, wrong arity…): EXEC aborts.
    aborted: bool,
    /// RESP3 shape of each queued command's reply, for EXEC's reply.
    shapes: Vec<Shape>,
}

/// Default bound of a transaction op, the node's default
/// `--request-bytes-max`: a transaction travels in one log frame, like a
/// request.
pub const TRANSACTION_BYTES_MAX: usize = 16 << 20;

/// Per-connection state.
pub struct Session {
    /// CLIENT ID, also reported by HELLO.
    id: u64,
    /// Bound of an encoded transaction (`--request-bytes-max`): queuing
    /// past it aborts the transaction, so no op outgrows a log frame.
    op_bytes_max: usize,
    /// CLIENT SETNAME / HELLO SETNAME.
    name: Option<Box<[u8]>>,
    multi: Option<Multi>,
    /// HELLO 3: replies go out in RESP3 (converted by `resp3`).
    resp3: bool,
    /// The shapes of the transaction EXEC just turned into an op.
    exec_shapes: Vec<Shape>,
    /// RESP3: how the reply of the command just dispatched is converted
    /// ([`Session::expect_reply`], [`Session::encode_reply`]).
    pending: Option<Pending>,
    /// AUTH (`--requirepass-file`).
    auth: Auth,
    /// WATCH's keys (dropping it unwatches them).
    watching: Option<Watching>,
}

/// How a RESP3 connection's next reply is converted.
enum Pending {
    Plain(Shape),
    Exec(Vec<Shape>),
}

/// The canonical (lowercase) name of a known command, for metrics and logs.
pub fn command_name(argv: &[&[u8]]) -> Option<&'static str> {
    argv.first().and_then(|n| Cmd::lookup(n)).map(|c| c.spec().name)
}

/// Whether a backup answers this command itself: the connection-level
/// commands a client sends before it knows what it reached (HELLO, AUTH,
/// CLIENT, SELECT, COMMAND, PING, ECHO, INFO, ROLE, RESET, QUIT), so that it
/// learns it reached a replica. Everything else gets `-READONLY` there.
pub fn serves_on_backup(argv: &[&[u8]]) -> bool {
    matches!(
        argv.first().and_then(|n| Cmd::lookup(n)),
        Some(
            Cmd::Ping
                | Cmd::Echo
                | Cmd::Quit
                | Cmd::Hello
                | Cmd::Auth
                | Cmd::Select
                | Cmd::Client
                | Cmd::Command
                | Cmd::Info
                | Cmd::Role
                | Cmd::Reset
        )
    )
}

/// The 7 field/value pairs of HELLO's reply (after the map or array
/// header): server, version, proto, id, mode (`standalone`, `sentinel`),
/// role, modules.
pub fn write_hello_fields(out: &mut Vec<u8>, resp3: bool, id: u64, mode: &str) {
    for (k, v) in [("server", "redis"), ("version", REDIS_VERSION)] {
        write_bulk(out, k.as_bytes());
        write_bulk(out, v.as_bytes());
    }
    write_bulk(out, b"proto");
    write_int(out, if resp3 { 3 } else { 2 });
    write_bulk(out, b"id");
    write_int(out, id as i64);
    for (k, v) in [("mode", mode), ("role", "master")] {
        write_bulk(out, k.as_bytes());
        write_bulk(out, v.as_bytes());
    }
    write_bulk(out, b"modules");
    write_array_len(out, 0);
}

/// Redis's `clientSetNameOrReply`'s check: a client name is printable
/// ASCII without spaces; otherwise writes Redis's error and returns false.
pub fn check_client_name(name: &[u8], out: &mut Vec<u8>) -> bool {
    let ok = name.iter().all(|c| (b'!'..=b'~').contains(c));
    if !ok {
        write_error(out, b"ERR Client names cannot contain spaces, newlines or special characters.");
    }
    ok
}

/// `CLIENT SETINFO attr value`: accepted for `lib-name` and `lib-ver`
/// (client libraries send them on connect), as Redis 7.2 does; nothing is
/// kept.
pub fn client_setinfo(argv: &[&[u8]], out: &mut Vec<u8>) {
    let attr = argv[2].to_ascii_lowercase();
    if attr == b"lib-name" || attr == b"lib-ver" {
        write_ok(out);
    } else {
        let mut msg = b"ERR Unrecognized option '".to_vec();
        msg.extend_from_slice(c_str(argv[2]));
        msg.push(b'\'');
        write_error(out, &msg);
    }
}

/// HELLO's arguments: the protocol asked for and a client name.
pub struct HelloArgs<'a> {
    pub proto: Option<i64>,
    /// AUTH's user and password, checked by the caller (`Auth::hello`).
    pub auth: Option<(&'a [u8], &'a [u8])>,
    pub setname: Option<&'a [u8]>,
}

/// Parses `HELLO [protover [AUTH user pass] [SETNAME name]]` as Redis 7
/// does (only the `default` user exists); on an error writes Redis's error
/// reply to `out` and returns None.
pub fn parse_hello<'a>(argv: &[&'a [u8]], out: &mut Vec<u8>) -> Option<HelloArgs<'a>> {
    let mut proto = None;
    if let Some(v) = argv.get(1) {
        match crate::num::parse_i64(v) {
            None => {
                write_error(out, b"ERR Protocol version is not an integer or out of range");
                return None;
            }
            Some(p @ (2 | 3)) => proto = Some(p),
            Some(_) => {
                write_error(out, b"NOPROTO unsupported protocol version");
                return None;
            }
        }
    }
    let (mut j, mut setname, mut auth) = (2, None, None);
    while j < argv.len() {
        let more = argv.len() - 1 - j;
        if argv[j].eq_ignore_ascii_case(b"auth") && more >= 2 {
            auth = Some((argv[j + 1], argv[j + 2]));
            j += 3;
        } else if argv[j].eq_ignore_ascii_case(b"setname") && more >= 1 {
            setname = Some(argv[j + 1]);
            j += 2;
        } else {
            let mut msg = b"ERR Syntax error in HELLO option '".to_vec();
            msg.extend_from_slice(c_str(argv[j]));
            msg.push(b'\'');
            write_error(out, &msg);
            return None;
        }
    }
    Some(HelloArgs { proto, auth, setname })
}

impl Session {
    pub fn new(client_id: u64) -> Session {
        Session {
            id: client_id,
            op_bytes_max: TRANSACTION_BYTES_MAX,
            name: None,
            multi: None,
            resp3: false,
            exec_shapes: Vec::new(),
            pending: None,
            auth: Auth::default(),
            watching: None,
        }
    }

    /// Requires `password` of the default user (Redis's `requirepass`):
    /// until AUTH or HELLO … AUTH gives it, only AUTH, HELLO, QUIT and
    /// RESET are answered, everything else with `-NOAUTH`.
    pub fn set_password(&mut self, password: Option<Arc<[u8]>>) {
        self.auth = Auth::new(password);
    }

    /// AUTH succeeded, or no password is required.
    pub fn authenticated(&self) -> bool {
        self.auth.authenticated()
    }

    /// The client asked for RESP3 (`HELLO 3`): convert replies with
    /// [`crate::resp3`] before they go out.
    pub fn resp3(&self) -> bool {
        self.resp3
    }

    /// Puts the reply of `argv`, written at `buf[start..]`, in the
    /// connection's protocol: a RESP3 connection gets it converted (the
    /// commands and the log only ever produce RESP2).
    pub fn finish_reply(&mut self, argv: &[&[u8]], buf: &mut Vec<u8>, start: usize) {
        self.expect_reply(argv);
        self.encode_reply(buf, start);
    }

    /// [`Session::finish_reply`] in two steps, for a front end whose reply
    /// is written after `argv` is gone: after dispatching `argv`, remember
    /// how its reply is converted.
    pub fn expect_reply(&mut self, argv: &[&[u8]]) {
        let shapes = std::mem::take(&mut self.exec_shapes);
        self.pending = self.resp3.then(|| {
            let name = command_name(argv).unwrap_or("");
            if name == "exec" && !shapes.is_empty() {
                Pending::Exec(shapes)
            } else {
                Pending::Plain(crate::resp3::shape_of(name, argv))
            }
        });
    }

    /// Converts the reply written at `buf[start..]` as the last
    /// [`Session::expect_reply`] said.
    pub fn encode_reply(&mut self, buf: &mut Vec<u8>, start: usize) {
        let Some(pending) = self.pending.take() else { return };
        if buf.len() == start {
            return;
        }
        let reply = buf.split_off(start);
        let used = match pending {
            Pending::Exec(shapes) => crate::resp3::convert_exec(&reply, &shapes, buf),
            Pending::Plain(shape) => crate::resp3::convert(&reply, shape, buf),
        };
        debug_assert_eq!(used, reply.len(), "one command, one reply");
    }

    /// Bounds the encoded size of a MULTI … EXEC op; the node passes its
    /// `--request-bytes-max`, named in the error when a transaction exceeds it.
    pub fn set_op_bytes_max(&mut self, bytes: usize) {
        self.op_bytes_max = bytes;
    }

    pub fn client_id(&self) -> u64 {
        self.id
    }

    pub fn name(&self) -> Option<&[u8]> {
        self.name.as_deref()
    }

    pub fn in_multi(&self) -> bool {
        self.multi.is_some()
    }

    /// Handles one command (`argv[0]` is its name). Clears `op`; appends any
    /// immediate reply to `out`. An empty `argv` (blank inline line) does
    /// nothing, as in Redis.
    pub fn dispatch(&mut self, argv: &[&[u8]], op: &mut Vec<u8>, out: &mut Vec<u8>) -> Dispatch {
        op.clear();
        let Some(name) = argv.first() else { return Dispatch::Done };
        if exactly_once::is_session_command(name) {
            if !self.auth.authenticated() {
                write_error(out, NOAUTH);
                return self.reject();
            }
            if self.multi.is_some() {
                write_error(out, b"ERR US.* session commands are not allowed inside MULTI");
                return self.reject();
            }
            return exactly_once::dispatch(argv, op, out);
        }
        let Some(cmd) = Cmd::lookup(name) else {
            unknown_command(argv, out);
            return self.reject();
        };
        let spec = cmd.spec();
        if !spec.arity_ok(argv.len()) {
            if cmd == Cmd::Exec {
                // Redis's execCommandAbort: a rejected EXEC discards the
                // transaction, in or out of MULTI.
                self.multi = None;
                write_error(out, b"EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command");
                return Dispatch::Done;
            }
            write_arity_error(out, spec.name);
            return self.reject();
        }
        if !subcommand_ok(cmd, argv, out) {
            return self.reject();
        }
        if !self.auth.authenticated() && !Auth::exempt(spec.name) {
            write_error(out, NOAUTH);
            return self.reject();
        }
        if self.multi.is_some() && !matches!(cmd, Cmd::Exec | Cmd::Discard | Cmd::Multi | Cmd::Watch | Cmd::Quit | Cmd::Reset) {
            return self.queue(cmd, argv, out);
        }
        if cmd == Cmd::Script {
            // A container of a read (EXISTS), writes (LOAD, FLUSH: the
            // cache is replicated) and answers that need no state.
            let sub = argv[1].to_ascii_lowercase();
            match &sub[..] {
                b"exists" => return Dispatch::Read,
                b"load" | b"flush" => {}
                _ => {
                    crate::script::session_reply(argv, out);
                    return Dispatch::Done;
                }
            }
        }
        match spec.kind {
            Kind::Read => Dispatch::Read,
            Kind::Write => {
                op::encode_command(op, cmd, &argv[1..]);
                Dispatch::Write
            }
            Kind::Session => self.control(cmd, argv, op, out),
        }
    }

    /// A command that failed before execution marks an open transaction
    /// (Redis's flagTransaction).
    fn reject(&mut self) -> Dispatch {
        if let Some(m) = &mut self.multi {
            m.aborted = true;
        }
        Dispatch::Done
    }

    fn queue(&mut self, cmd: Cmd, argv: &[&[u8]], out: &mut Vec<u8>) -> Dispatch {
        if matches!(
            cmd,
            Cmd::Info
                | Cmd::Role
                | Cmd::Wait
                | Cmd::Lastsave
                | Cmd::Subscribe
                | Cmd::Unsubscribe
                | Cmd::Psubscribe
                | Cmd::Punsubscribe
                | Cmd::Pubsub
                | Cmd::Publish
        ) {
            // Their replies come from the node, not the session or the log.
            write_error(out, b"ERR Command not allowed inside a transaction");
            return self.reject();
        }
        let max = self.op_bytes_max;
        let m = self.multi.as_mut().expect("queue is called inside MULTI");
        let start = m.buf.len();
        let session = cmd.spec().kind == Kind::Session;
        if session {
            put_varint(&mut m.buf, argv.len() as u64);
            argv.iter().for_each(|a| put_bytes(&mut m.buf, a));
        } else {
            op::put_command(&mut m.buf, cmd, &argv[1..]);
        }
        m.items.push((session, start..m.buf.len()));
        m.shapes.push(crate::resp3::shape_of(cmd.spec().name, argv));
        if m.buf.len() > max {
            m.buf = Vec::new();
            m.items = Vec::new();
            let bytes = start + argv.iter().map(|a| a.len()).sum::<usize>();
            write_error(out, too_big(bytes, max).as_bytes());
            return self.reject();
        }
        write_simple(out, b"QUEUED");
        Dispatch::Done
    }

    /// Transaction control, QUIT, INFO and the connection commands.
    fn control(&mut self, cmd: Cmd, argv: &[&[u8]], op: &mut Vec<u8>, out: &mut Vec<u8>) -> Dispatch {
        match cmd {
            Cmd::Multi if self.multi.is_some() => write_error(out, b"ERR MULTI calls can not be nested"),
            Cmd::Multi => {
                self.multi = Some(Multi::default());
                write_ok(out);
            }
            // Whether the watched keys changed is the keyspace's to say.
            Cmd::Exec if self.watching.is_some() && self.multi.is_some() => return Dispatch::Keyspace,
            Cmd::Exec => return self.exec(op, out),
            Cmd::Discard => match self.multi.take() {
                Some(_) => {
                    self.watching = None;
                    write_ok(out)
                }
                None => write_error(out, b"ERR DISCARD without MULTI"),
            },
            Cmd::Watch if self.multi.is_some() => write_error(out, b"ERR WATCH inside MULTI is not allowed"),
            Cmd::Watch => return Dispatch::Keyspace,
            Cmd::Unwatch => {
                self.watching = None;
                write_ok(out);
            }
            Cmd::Quit => {
                write_ok(out);
                return Dispatch::Close;
            }
            Cmd::Reset => {
                // Back to RESP2 and a fresh connection state, as Redis does.
                // Redis's RESET also makes the connection the default user
                // again: unauthenticated when that user has a password.
                let mut auth = self.auth.clone();
                auth.reset();
                *self = Session { op_bytes_max: self.op_bytes_max, auth, ..Session::new(self.id) };
                write_simple(out, b"RESET");
            }
            Cmd::Info | Cmd::Role | Cmd::Lastsave => return Dispatch::Status,
            Cmd::Subscribe | Cmd::Unsubscribe | Cmd::Psubscribe | Cmd::Punsubscribe | Cmd::Pubsub => return Dispatch::PubSub,
            Cmd::Wait => {
                // Redis's order: the count, then the timeout.
                match (crate::num::parse_i64(argv[1]), crate::num::parse_i64(argv[2])) {
                    (None, _) => write_error(out, NOT_INT),
                    (Some(_), None) => write_error(out, b"ERR timeout is not an integer or out of range"),
                    (Some(_), Some(t)) if t < 0 => write_error(out, b"ERR timeout is negative"),
                    (Some(_), Some(_)) => return Dispatch::Status,
                }
            }
            _ => self.connection_command(cmd, argv, out),
        }
        Dispatch::Done
    }

    /// WATCH, or EXEC after WATCH ([`Dispatch::Keyspace`]), on the primary
    /// whose machine is `kv`, at `now_ms` (for the expiry of watched keys).
    /// EXEC answers a null array, gated, if a watched key changed;
    /// otherwise it dispatches as without WATCH.
    pub fn keyspace(&mut self, kv: &Kv, now_ms: u64, argv: &[&[u8]], op: &mut Vec<u8>, out: &mut Vec<u8>) -> Dispatch {
        op.clear();
        match command_name(argv) {
            Some("watch") => {
                debug_assert!(self.multi.is_none(), "WATCH inside MULTI is answered by dispatch");
                kv.watch(&mut self.watching, now_ms, &argv[1..]);
                write_ok(out);
                Dispatch::Done
            }
            Some("exec") => {
                let changed = self.watching.as_ref().is_some_and(|w| kv.watched_changed(w, now_ms));
                let aborted = self.multi.as_ref().is_some_and(|m| m.aborted);
                if changed && !aborted {
                    // Redis's order: queuing errors first, then the watch.
                    self.multi = None;
                    self.watching = None;
                    crate::resp::write_null_array(out);
                    return Dispatch::Gated;
                }
                self.exec(op, out)
            }
            _ => {
                write_error(out, b"ERR internal: only WATCH and EXEC need the keyspace");
                Dispatch::Done
            }
        }
    }

    fn exec(&mut self, op: &mut Vec<u8>, out: &mut Vec<u8>) -> Dispatch {
        let Some(m) = self.multi.take() else {
            write_error(out, b"ERR EXEC without MULTI");
            return Dispatch::Done;
        };
        // EXEC unwatches whatever it answers (Redis's unwatchAllKeys).
        self.watching = None;
        if m.aborted {
            write_error(out, b"EXECABORT Transaction discarded because of previous errors.");
            return Dispatch::Done;
        }
        if m.items.is_empty() {
            write_array_len(out, 0);
            return Dispatch::Done;
        }
        self.exec_shapes = m.shapes.clone();
        op.push(OP_TRANSACTION);
        put_varint(op, m.items.len() as u64);
        let mut reply = Vec::new();
        for (session, range) in &m.items {
            let bytes = &m.buf[range.clone()];
            if !session {
                op.push(ITEM_COMMAND);
                op.extend_from_slice(bytes);
                continue;
            }
            let argv = decode_argv(bytes);
            let cmd = argv.first().and_then(|n| Cmd::lookup(n)).expect("queued commands are known");
            reply.clear();
            self.connection_command(cmd, &argv, &mut reply);
            op.push(ITEM_REPLY);
            put_bytes(op, &reply);
        }
        if op.len() > self.op_bytes_max {
            let msg = format!("EXECABORT Transaction discarded because of: {}", &too_big(op.len(), self.op_bytes_max)[4..]);
            op.clear();
            write_error(out, msg.as_bytes());
            return Dispatch::Done;
        }
        Dispatch::Write
    }

    /// Commands whose reply depends on the connection only. Also run at EXEC
    /// time for the ones queued in a transaction.
    fn connection_command(&mut self, cmd: Cmd, argv: &[&[u8]], out: &mut Vec<u8>) {
        match cmd {
            Cmd::Ping | Cmd::Echo | Cmd::Select => ping_echo_select(cmd, argv, out),
            Cmd::Hello => self.hello(argv, out),
            Cmd::Auth => self.auth.command(argv, out),
            Cmd::Client => self.client(argv, out),
            Cmd::Config => config(argv, out),
            Cmd::Command => command(argv, out),
            Cmd::Unwatch => write_ok(out),
            // Transaction control inside a transaction is answered by
            // `dispatch`; nothing else reaches here.
            _ => write_error(out, b"ERR internal: not a connection command"),
        }
    }

    /// HELLO [protover [AUTH user pass] [SETNAME name]]: RESP2 or RESP3.
    fn hello(&mut self, argv: &[&[u8]], out: &mut Vec<u8>) {
        let Some(HelloArgs { proto, auth, setname }) = parse_hello(argv, out) else { return };
        if !self.auth.hello(auth, out) {
            return;
        }
        if let Some(name) = setname {
            if !self.set_name(name, out) {
                return;
            }
        }
        write_array_len(out, 14);
        if let Some(p) = proto {
            self.resp3 = p == 3;
        }
        write_hello_fields(out, self.resp3, self.id, "standalone");
    }

    /// Redis's `clientSetNameOrReply`: printable ASCII without spaces; an
    /// empty name clears it.
    fn set_name(&mut self, name: &[u8], out: &mut Vec<u8>) -> bool {
        if !check_client_name(name, out) {
            return false;
        }
        self.name = (!name.is_empty()).then(|| name.into());
        true
    }

    fn client(&mut self, argv: &[&[u8]], out: &mut Vec<u8>) {
        let sub = argv[1].to_ascii_lowercase();
        match &sub[..] {
            b"id" => write_int(out, self.id as i64),
            b"getname" => match &self.name {
                Some(n) => write_bulk(out, n),
                None => write_null(out),
            },
            b"setname" => {
                if self.set_name(argv[2], out) {
                    write_ok(out);
                }
            }
            b"setinfo" => client_setinfo(argv, out),
            b"no-evict" | b"no-touch" => write_ok(out),
            _ => help(out, "CLIENT", &["ID", "GETNAME", "SETNAME <name>", "SETINFO <LIB-NAME|LIB-VER> <value>"]),
        }
    }
}

/// PING, ECHO and SELECT (arity checked), on a connection or in a script.
pub(crate) fn ping_echo_select(cmd: Cmd, argv: &[&[u8]], out: &mut Vec<u8>) {
    match cmd {
        Cmd::Ping if argv.len() > 2 => write_arity_error(out, "ping"),
        Cmd::Ping if argv.len() == 2 => write_bulk(out, argv[1]),
        Cmd::Ping => write_simple(out, b"PONG"),
        Cmd::Echo => write_bulk(out, argv[1]),
        Cmd::Select => match crate::num::parse_i64(argv[1]) {
            None => write_error(out, NOT_INT),
            Some(id) if i32::try_from(id).is_err() => {
                write_error(out, b"ERR value is out of range, value must between -2147483648 and 2147483647")
            }
            Some(0) => write_ok(out),
            Some(_) => write_error(out, b"ERR DB index is out of range"),
        },
        _ => write_error(out, b"ERR internal: not PING, ECHO or SELECT"),
    }
}

fn too_big(bytes: usize, max: usize) -> String {
    format!("ERR transaction of at least {bytes} bytes exceeds --request-bytes-max ({max} bytes)")
}

/// Decodes a queued connection command (as `Session::queue` encoded it).
fn decode_argv(bytes: &[u8]) -> Vec<&[u8]> {
    let mut r = Reader::new(bytes, "queued command");
    let n = r.varint().expect("written by queue");
    (0..n).map(|_| r.bytes().expect("written by queue")).collect()
}

/// Subcommands of the container commands, with Redis's arity.
const SUBCOMMANDS: &[(Cmd, &str, i32)] = &[
    (Cmd::Client, "id", 2),
    (Cmd::Client, "getname", 2),
    (Cmd::Client, "setname", 3),
    (Cmd::Client, "setinfo", 4),
    (Cmd::Client, "no-evict", 3),
    (Cmd::Client, "no-touch", 3),
    (Cmd::Client, "help", 2),
    (Cmd::Config, "get", -3),
    (Cmd::Config, "set", -4),
    (Cmd::Config, "resetstat", 2),
    (Cmd::Config, "help", 2),
    (Cmd::Command, "count", 2),
    (Cmd::Command, "info", -2),
    (Cmd::Command, "list", -2),
    (Cmd::Command, "help", 2),
    (Cmd::Pubsub, "channels", -2),
    (Cmd::Pubsub, "numsub", -2),
    (Cmd::Pubsub, "numpat", 2),
    (Cmd::Pubsub, "help", 2),
    (Cmd::Object, "encoding", 3),
    (Cmd::Object, "freq", 3),
    (Cmd::Object, "idletime", 3),
    (Cmd::Object, "refcount", 3),
    (Cmd::Object, "help", 2),
    (Cmd::Script, "load", 3),
    (Cmd::Script, "exists", -3),
    (Cmd::Script, "flush", -2),
    (Cmd::Script, "kill", 2),
    (Cmd::Script, "debug", 3),
    (Cmd::Script, "help", 2),
];

/// The container commands, whose subcommands [`SUBCOMMANDS`] lists.
fn is_container(cmd: Cmd) -> bool {
    matches!(cmd, Cmd::Client | Cmd::Config | Cmd::Command | Cmd::Pubsub | Cmd::Object | Cmd::Script)
}

/// For a container command (CLIENT, CONFIG, COMMAND, PUBSUB, OBJECT,
/// SCRIPT): `Some` with the arity of subcommand `sub`, or `Some(None)` if
/// there is no such subcommand; `None` for other commands.
pub(crate) fn subcommand_arity(cmd: Cmd, sub: &[u8]) -> Option<Option<i32>> {
    if !is_container(cmd) {
        return None;
    }
    Some(SUBCOMMANDS.iter().find(|(c, name, _)| *c == cmd && sub.eq_ignore_ascii_case(name.as_bytes())).map(|s| s.2))
}

/// For a container command: an unknown subcommand or a wrong subcommand
/// arity is answered as Redis does (and, like other rejections, aborts an
/// open transaction). `COMMAND DOCS` is deliberately unknown: redis-cli
/// then falls back to its built-in help instead of showing none.
fn subcommand_ok(cmd: Cmd, argv: &[&[u8]], out: &mut Vec<u8>) -> bool {
    if !is_container(cmd) || argv.len() < 2 {
        return true;
    }
    let sub = SUBCOMMANDS.iter().find(|(c, name, _)| *c == cmd && argv[1].eq_ignore_ascii_case(name.as_bytes()));
    let container = cmd.spec().name;
    match sub {
        None => {
            let mut msg = b"ERR unknown subcommand '".to_vec();
            let shown = c_str(argv[1]);
            msg.extend_from_slice(&shown[..shown.len().min(128)]);
            msg.extend_from_slice(format!("'. Try {} HELP.", container.to_uppercase()).as_bytes());
            write_error(out, &msg);
            false
        }
        Some((_, name, arity)) => {
            let ok = if *arity >= 0 { argv.len() == *arity as usize } else { argv.len() >= arity.unsigned_abs() as usize };
            if !ok {
                write_arity_error(out, &format!("{container}|{name}"));
            }
            ok
        }
    }
}

fn help(out: &mut Vec<u8>, container: &str, lines: &[&str]) {
    write_array_len(out, lines.len() + 1);
    write_simple(out, format!("{container} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:").as_bytes());
    for l in lines {
        write_simple(out, l.as_bytes());
    }
}

/// Redis's error for an unknown command, naming it and its first
/// arguments (each cut at a NUL, 128 bytes in all), for every RESP front end.
pub fn unknown_command(argv: &[&[u8]], out: &mut Vec<u8>) {
    let mut msg = b"ERR unknown command '".to_vec();
    let name = c_str(argv[0]);
    msg.extend_from_slice(&name[..name.len().min(128)]);
    msg.extend_from_slice(b"', with args beginning with: ");
    let mut args_len = 0;
    for a in &argv[1..] {
        if args_len >= 128 {
            break;
        }
        let a = c_str(a);
        let part = &a[..a.len().min(128 - args_len)];
        msg.push(b'\'');
        msg.extend_from_slice(part);
        msg.extend_from_slice(b"' ");
        args_len += part.len() + 3;
    }
    write_error(out, &msg);
}

/// Configuration parameters CONFIG GET reports: what redis-benchmark asks
/// at start, answered as a server without persistence.
const CONFIG: &[(&str, &str)] = &[("appendonly", "no"), ("save", "")];

fn config(argv: &[&[u8]], out: &mut Vec<u8>) {
    let sub = argv[1].to_ascii_lowercase();
    match &sub[..] {
        b"get" => {
            // As Redis: a pattern without glob characters is a name, echoed
            // back as the client spelled it; globs match case-insensitively.
            let mut hits: Vec<(&[u8], &str)> = Vec::new();
            for (name, value) in CONFIG {
                let spelled = argv[2..].iter().find_map(|p| {
                    let glob = p.iter().any(|c| b"[*?".contains(c));
                    if glob && crate::num::glob_match(p, name.as_bytes(), true) {
                        Some(name.as_bytes())
                    } else {
                        (!glob && p.eq_ignore_ascii_case(name.as_bytes())).then_some(*p)
                    }
                });
                if let Some(spelled) = spelled {
                    hits.push((spelled, value));
                }
            }
            write_array_len(out, hits.len() * 2);
            for (name, value) in hits {
                write_bulk(out, name);
                write_bulk(out, value.as_bytes());
            }
        }
        b"set" => write_error(out, b"ERR CONFIG SET is not supported by understudy"),
        b"resetstat" => write_ok(out),
        _ => help(out, "CONFIG", &["GET <pattern>", "RESETSTAT"]),
    }
}

/// COMMAND [COUNT | INFO name… | LIST | HELP], in Redis 7.0's RESP2 shape.
fn command(argv: &[&[u8]], out: &mut Vec<u8>) {
    let sub = argv.get(1).map(|s| s.to_ascii_lowercase()).unwrap_or_default();
    match &sub[..] {
        b"" => {
            write_array_len(out, SPECS.len());
            SPECS.iter().for_each(|s| command_entry(s.cmd, out));
        }
        b"count" => write_int(out, SPECS.len() as i64),
        b"info" if argv.len() == 2 => command(&argv[..1], out),
        b"info" => {
            write_array_len(out, argv.len() - 2);
            for name in &argv[2..] {
                match Cmd::lookup(name) {
                    Some(c) => command_entry(c, out),
                    None => write_null(out),
                }
            }
        }
        b"list" => {
            write_array_len(out, SPECS.len());
            SPECS.iter().for_each(|s| write_bulk(out, s.name.as_bytes()));
        }
        _ => help(out, "COMMAND", &["(no subcommand)", "COUNT", "INFO [<command-name> ...]", "LIST"]),
    }
}

fn command_entry(cmd: Cmd, out: &mut Vec<u8>) {
    let s = cmd.spec();
    write_array_len(out, 10);
    write_bulk(out, s.name.as_bytes());
    write_int(out, i64::from(s.arity));
    write_array_len(out, s.flags.len());
    s.flags.iter().for_each(|f| write_simple(out, f.as_bytes()));
    write_int(out, i64::from(s.keys.0));
    write_int(out, i64::from(s.keys.1));
    write_int(out, i64::from(s.keys.2));
    // ACL categories, tips, key specs, subcommands: none described.
    (0..4).for_each(|_| write_array_len(out, 0));
}
