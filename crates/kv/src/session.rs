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

use std::rc::Rc;
use std::sync::Arc;

use understudy_wire::codec::{put_bytes, put_varint, Reader};

use crate::admin::{Admin, ClientInfo};
use crate::auth::{Auth, NOAUTH};
use crate::cmd::keyspace::c_str;
use crate::cmd::{Cmd, Kind, NOT_INT};
use crate::exactly_once::commands as exactly_once;
use crate::kv::Kv;
use crate::op::{self, ITEM_COMMAND, ITEM_REPLY, OP_TRANSACTION};
use crate::resp::{write_array_len, write_bulk, write_error, write_int, write_null, write_ok, write_simple};
use crate::resp3::Shape;
use crate::watch::Watching;

use crate::containers::subcommand_ok;
pub use crate::containers::unknown_command;
pub use crate::dispatch::Dispatch;
use crate::resp::write_help as help;
use crate::subcommands::ping_echo_select;
pub use crate::subcommands::{check_client_name, client_setinfo, REDIS_VERSION, TRANSACTION_BYTES_MAX};

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
    /// What the node's connections share: users, CONFIG, SLOWLOG, CLIENT LIST.
    admin: Rc<Admin>,
    /// This connection in CLIENT LIST.
    info: Rc<ClientInfo>,
    /// The last command dispatched ran (was not refused or queued): the
    /// slow log may record it.
    ran: bool,
    /// The machine is out of memory (`Kv::out_of_memory`, set by the node
    /// before each dispatch): commands queued into MULTI are refused.
    oom: bool,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.admin.unregister(self.id);
    }
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
                | Cmd::Config
                | Cmd::Slowlog
                | Cmd::Acl
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
    /// A connection of its own node (no other connection in CLIENT LIST),
    /// with only the default user, without a password.
    pub fn new(client_id: u64) -> Session {
        Session::with_admin(client_id, Rc::default())
    }

    /// A connection of the node whose connections share `admin` (its
    /// users, CONFIG, SLOWLOG, CLIENT LIST): registered there until the
    /// session is dropped. It runs as the `default` user, unauthenticated
    /// if that user has a password or is off: until AUTH or HELLO … AUTH,
    /// only AUTH, HELLO, QUIT and RESET are answered, everything else with
    /// `-NOAUTH`.
    pub fn with_admin(client_id: u64, admin: Rc<Admin>) -> Session {
        let auth = Auth::with_users(admin.users().clone());
        let info = Rc::new(ClientInfo::new(client_id, auth.user().clone()));
        admin.register(info.clone());
        Session {
            id: client_id,
            op_bytes_max: TRANSACTION_BYTES_MAX,
            name: None,
            multi: None,
            resp3: false,
            exec_shapes: Vec::new(),
            pending: None,
            auth,
            watching: None,
            admin,
            info,
            ran: false,
            oom: false,
        }
    }

    /// Requires `password` of the default user (Redis's `requirepass`),
    /// the only user, on a connection of its own node ([`Session::new`]).
    pub fn set_password(&mut self, password: Option<Arc<[u8]>>) {
        self.auth = Auth::new(password);
        *self.info.user.borrow_mut() = self.auth.user().clone();
    }

    /// This connection as CLIENT LIST shows it; the node fills in its
    /// addresses, subscriptions and last command's time.
    pub fn client_info(&self) -> &Rc<ClientInfo> {
        &self.info
    }

    /// Whether the last command dispatched ran: neither refused (unknown,
    /// wrong arity, NOAUTH, NOPERM) nor queued in a transaction. The slow
    /// log records only those, as Redis's.
    pub fn ran(&self) -> bool {
        self.ran
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

    /// What the session needs of the machine before a dispatch: whether
    /// it is out of memory (`Kv::out_of_memory`: MULTI queues nothing
    /// then) and its `maxmemory` (CONFIG GET). The node calls it before
    /// each command.
    pub fn observe(&mut self, kv: &Kv) {
        self.oom = kv.out_of_memory();
        self.admin.maxmemory.set(kv.maxmemory());
    }

    /// Handles one command (`argv[0]` is its name). Clears `op`; appends any
    /// immediate reply to `out`. An empty `argv` (blank inline line) does
    /// nothing, as in Redis.
    pub fn dispatch(&mut self, argv: &[&[u8]], op: &mut Vec<u8>, out: &mut Vec<u8>) -> Dispatch {
        op.clear();
        self.ran = false;
        let Some(name) = argv.first() else { return Dispatch::Done };
        if exactly_once::is_session_command(name) {
            self.info.cmd.set(None);
            if !self.auth.authenticated() {
                write_error(out, NOAUTH);
                return self.reject();
            }
            if !self.auth.user().unrestricted() {
                let msg = format!(
                    "NOPERM this user has no permissions to run the '{}' command",
                    name.to_ascii_lowercase().escape_ascii()
                );
                write_error(out, msg.as_bytes());
                return self.reject();
            }
            if self.multi.is_some() {
                write_error(out, b"ERR US.* session commands are not allowed inside MULTI");
                return self.reject();
            }
            self.ran = true;
            return exactly_once::dispatch(argv, op, out);
        }
        let Some(cmd) = Cmd::lookup(name) else {
            self.info.cmd.set(None);
            unknown_command(argv, out);
            return self.reject();
        };
        let spec = cmd.spec();
        let id = crate::acl::command_id(cmd, argv);
        self.info.cmd.set(Some(id));
        if !spec.arity_ok(argv.len()) {
            return self.refuse(cmd, format!("ERR wrong number of arguments for '{}' command", spec.name).as_bytes(), out);
        }
        if !subcommand_ok(cmd, argv, out) {
            self.info.cmd.set(None);
            return self.reject();
        }
        if !self.auth.authenticated() && !Auth::exempt(spec.name) {
            return self.refuse(cmd, NOAUTH, out);
        }
        if let Err(denied) = self.auth.user().check(cmd, argv) {
            return self.refuse(cmd, &denied.error(), out);
        }
        if self.oom && self.multi.is_some() && !matches!(cmd, Cmd::Exec | Cmd::Discard | Cmd::Quit | Cmd::Reset) {
            // Redis's processCommand: under OOM nothing more is queued,
            // and the transaction is flagged. The error tells of the state.
            self.refuse(cmd, crate::evict::OOM, out);
            return Dispatch::Gated;
        }
        if self.multi.is_some() && !matches!(cmd, Cmd::Exec | Cmd::Discard | Cmd::Multi | Cmd::Watch | Cmd::Quit | Cmd::Reset) {
            return self.queue(cmd, argv, out);
        }
        self.ran = true;
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

    /// Redis's rejectCommand: the error `msg` (without its `-`); for EXEC,
    /// in or out of MULTI, execCommandAbort's, which discards the
    /// transaction.
    fn refuse(&mut self, cmd: Cmd, msg: &[u8], out: &mut Vec<u8>) -> Dispatch {
        if cmd != Cmd::Exec {
            write_error(out, msg);
            return self.reject();
        }
        self.multi = None;
        self.watching = None;
        self.sync_multi();
        let msg = msg.strip_prefix(b"ERR ").unwrap_or(msg);
        write_error(out, &[&b"EXECABORT Transaction discarded because of: "[..], msg].concat());
        Dispatch::Done
    }

    /// CLIENT LIST's `multi`, `multi-mem` and `x` flag.
    fn sync_multi(&self) {
        let (n, mem) = self.multi.as_ref().map_or((-1, 0), |m| (m.items.len() as i64, m.buf.len()));
        self.info.multi.set(n);
        self.info.multi_mem.set(mem);
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
            self.sync_multi();
            return self.reject();
        }
        self.sync_multi();
        write_simple(out, b"QUEUED");
        Dispatch::Done
    }

    /// Transaction control, QUIT, INFO and the connection commands.
    fn control(&mut self, cmd: Cmd, argv: &[&[u8]], op: &mut Vec<u8>, out: &mut Vec<u8>) -> Dispatch {
        match cmd {
            Cmd::Multi if self.multi.is_some() => write_error(out, b"ERR MULTI calls can not be nested"),
            Cmd::Multi => {
                self.multi = Some(Multi::default());
                self.sync_multi();
                write_ok(out);
            }
            // Whether the watched keys changed is the keyspace's to say.
            Cmd::Exec if self.watching.is_some() && self.multi.is_some() => return Dispatch::Keyspace,
            Cmd::Exec => return self.exec(op, out),
            Cmd::Discard => match self.multi.take() {
                Some(_) => {
                    self.watching = None;
                    self.sync_multi();
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
                // CLIENT NO-EVICT is off again.
                self.auth.reset();
                self.name = None;
                self.multi = None;
                self.resp3 = false;
                self.exec_shapes = Vec::new();
                self.pending = None;
                self.watching = None;
                self.sync_multi();
                *self.info.name.borrow_mut() = None;
                *self.info.user.borrow_mut() = self.auth.user().clone();
                self.info.resp.set(2);
                self.info.no_evict.set(false);
                write_simple(out, b"RESET");
            }
            Cmd::Info | Cmd::Role | Cmd::Lastsave => return Dispatch::Status,
            Cmd::Config => {
                if self.admin.config(argv, out, true) {
                    op::encode_command(op, cmd, &argv[1..]);
                    return Dispatch::Write;
                }
            }
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
                    self.sync_multi();
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

    /// EXEC: the transaction's op, its connection commands run now (they
    /// see the connection still in MULTI, as in Redis).
    fn exec(&mut self, op: &mut Vec<u8>, out: &mut Vec<u8>) -> Dispatch {
        let d = self.exec_queued(op, out);
        self.sync_multi();
        d
    }

    fn exec_queued(&mut self, op: &mut Vec<u8>, out: &mut Vec<u8>) -> Dispatch {
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
            Cmd::Hello => {
                self.hello(argv, out);
                *self.info.user.borrow_mut() = self.auth.user().clone();
                self.info.resp.set(if self.resp3 { 3 } else { 2 });
            }
            Cmd::Auth => {
                self.auth.command(argv, out);
                *self.info.user.borrow_mut() = self.auth.user().clone();
            }
            Cmd::Client => self.client(argv, out),
            Cmd::Config => {
                self.admin.config(argv, out, false);
            }
            Cmd::Command => crate::containers::command(argv, out),
            Cmd::Slowlog => self.admin.slowlog_command(argv, out),
            Cmd::Acl => crate::acl_command::command(self.admin.users(), self.auth.user(), argv, out),
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
        self.info.name.borrow_mut().clone_from(&self.name);
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
            b"list" => self.admin.client_list(argv, out),
            b"info" => Admin::client_info(&self.info, out),
            b"kill" => self.admin.client_kill(&self.info, argv, out),
            b"no-evict" | b"no-touch" => {
                let on = argv[2].eq_ignore_ascii_case(b"on");
                if !on && !argv[2].eq_ignore_ascii_case(b"off") {
                    return write_error(out, crate::cmd::SYNTAX);
                }
                if sub == b"no-evict" {
                    self.info.no_evict.set(on);
                }
                write_ok(out);
            }
            _ => help(out, "CLIENT", CLIENT_HELP),
        }
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

/// What CLIENT HELP lists: Redis 7.0's text for the subcommands
/// understudy has.
const CLIENT_HELP: &[&str] = &[
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "HELP",
    "    Prints this help.",
];
