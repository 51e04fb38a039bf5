//! What every connection of a node shares ([`Admin`]): its users, the
//! configuration CONFIG reports and changes, the slow log, and the
//! registry of connections behind CLIENT LIST, CLIENT INFO and CLIENT KILL
//! ([`ClientInfo`]). None of it is replicated: each node has its own,
//! like each Redis server.
//!
//! The node fills in what only it knows: a connection's addresses
//! ([`ClientInfo::set_peer`]), its subscriptions, its last command's time,
//! how to wake its task when CLIENT KILL closes it; and the values of its
//! options CONFIG GET reports ([`NodeConfig`]).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::acl::{User, Users};
use crate::cmd::keyspace::c_str;
use crate::resp::{write_array_len, write_bulk, write_error, write_int, write_ok};
use crate::slowlog::Slowlog;

/// Per node: shared by its connections' sessions.
pub struct Admin {
    users: Arc<Users>,
    node: RefCell<NodeConfig>,
    slowlog: RefCell<Slowlog>,
    clients: RefCell<BTreeMap<u64, Rc<ClientInfo>>>,
    /// The machine's `maxmemory` and policy as CONFIG GET shows them
    /// (`Session::observe` copies them from the `Kv`).
    pub(crate) maxmemory: Cell<crate::evict::Maxmemory>,
}

impl Default for Admin {
    fn default() -> Admin {
        Admin::new(Arc::default())
    }
}

/// The node's options that CONFIG GET reports.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The port clients connect to (`port`).
    pub port: u16,
    /// The address clients connect to (`bind`).
    pub bind: String,
    /// `--appendfsync` (`appendonly yes`, `appendfsync`), if given.
    pub appendfsync: Option<String>,
    /// `--aclfile`, if given.
    pub aclfile: String,
    /// `--request-bytes-max` (`proto-max-bulk-len`).
    pub request_bytes_max: usize,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            port: 6379,
            bind: String::new(),
            appendfsync: None,
            aclfile: String::new(),
            request_bytes_max: crate::subcommands::TRANSACTION_BYTES_MAX,
        }
    }
}

impl Admin {
    pub fn new(users: Arc<Users>) -> Admin {
        Admin {
            users,
            node: RefCell::default(),
            slowlog: RefCell::default(),
            clients: RefCell::default(),
            maxmemory: Cell::default(),
        }
    }

    pub fn users(&self) -> &Arc<Users> {
        &self.users
    }

    /// The node's option values (CONFIG GET asks for them).
    pub fn set_node_config(&self, node: NodeConfig) {
        *self.node.borrow_mut() = node;
    }

    /// `slowlog-log-slower-than`: commands at least this slow (µs) are
    /// logged; negative: none.
    pub fn slowlog_slower_than_us(&self) -> i64 {
        self.slowlog.borrow().slower_than_us
    }

    /// Logs a command of `client` that took `micros` (if slow enough).
    pub fn slowlog_push(&self, argv: Vec<Box<[u8]>>, micros: u64, unix_s: u64, client: &ClientInfo) {
        let name = client.name.borrow();
        let addr = client.peer.borrow();
        self.slowlog.borrow_mut().push(argv, micros, unix_s, &addr.addr, name.as_deref().unwrap_or_default());
    }

    pub(crate) fn slowlog_command(&self, argv: &[&[u8]], out: &mut Vec<u8>) {
        self.slowlog.borrow_mut().command(argv, out);
    }

    /// Adds a connection to the registry.
    pub(crate) fn register(&self, info: Rc<ClientInfo>) {
        self.clients.borrow_mut().insert(info.id, info);
    }

    pub(crate) fn unregister(&self, id: u64) {
        self.clients.borrow_mut().remove(&id);
    }

    /// Connections registered (CLIENT LIST's lines).
    pub fn clients(&self) -> usize {
        self.clients.borrow().len()
    }
}

/// A connection's peer as CLIENT LIST shows it.
#[derive(Debug, Clone, Default)]
struct Peer {
    addr: String,
    laddr: String,
    fd: i64,
}

/// One connection, as CLIENT LIST shows it. The session keeps it current
/// (name, user, protocol, transaction, last command); the node adds what
/// only it knows.
pub struct ClientInfo {
    id: u64,
    peer: RefCell<Peer>,
    created: Instant,
    last: Cell<Instant>,
    pub(crate) name: RefCell<Option<Box<[u8]>>>,
    pub(crate) user: RefCell<Arc<User>>,
    sub: Cell<usize>,
    psub: Cell<usize>,
    /// Commands queued in an open MULTI; -1 outside one.
    pub(crate) multi: Cell<i64>,
    pub(crate) multi_mem: Cell<usize>,
    /// The last command's id (`crate::acl::command_id`); None: none yet,
    /// or it was unknown (Redis shows `NULL`).
    pub(crate) cmd: Cell<Option<usize>>,
    pub(crate) resp: Cell<u8>,
    pub(crate) no_evict: Cell<bool>,
    /// CLIENT KILL closed it: the node closes its connection.
    killed: Cell<bool>,
    /// It killed itself: close after this reply.
    pub(crate) close_after_reply: Cell<bool>,
    waker: RefCell<Option<Box<dyn Fn()>>>,
}

impl ClientInfo {
    pub(crate) fn new(id: u64, user: Arc<User>) -> ClientInfo {
        let now = Instant::now();
        ClientInfo {
            id,
            peer: RefCell::new(Peer { addr: String::new(), laddr: String::new(), fd: -1 }),
            created: now,
            last: Cell::new(now),
            name: RefCell::default(),
            user: RefCell::new(user),
            sub: Cell::new(0),
            psub: Cell::new(0),
            multi: Cell::new(-1),
            multi_mem: Cell::new(0),
            cmd: Cell::new(None),
            resp: Cell::new(2),
            no_evict: Cell::new(false),
            killed: Cell::new(false),
            close_after_reply: Cell::new(false),
            waker: RefCell::default(),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The client's and the node's ends of the connection (`ip:port`),
    /// and its file descriptor (-1 if it has none).
    pub fn set_peer(&self, addr: String, laddr: String, fd: i64) {
        *self.peer.borrow_mut() = Peer { addr, laddr, fd };
    }

    /// `ip:port` of the client (CLIENT LIST's `addr`).
    pub fn addr(&self) -> String {
        self.peer.borrow().addr.clone()
    }

    /// A command arrived at `at` (CLIENT LIST's `idle`).
    pub fn touch(&self, at: Instant) {
        self.last.set(at);
    }

    /// Channels and patterns subscribed to (`sub`, `psub`).
    pub fn set_subscriptions(&self, channels: usize, patterns: usize) {
        self.sub.set(channels);
        self.psub.set(patterns);
    }

    /// Called when CLIENT KILL closes this connection: it wakes the task
    /// serving it, which then sees [`ClientInfo::killed`].
    pub fn set_waker(&self, wake: Box<dyn Fn()>) {
        *self.waker.borrow_mut() = Some(wake);
    }

    /// CLIENT KILL closed this connection.
    pub fn killed(&self) -> bool {
        self.killed.get()
    }

    /// The connection killed itself (CLIENT KILL … SKIPME no): close it
    /// once this reply is written. Clears the request.
    pub fn take_close_after_reply(&self) -> bool {
        self.close_after_reply.replace(false)
    }

    fn kill(&self) {
        self.killed.set(true);
        if let Some(wake) = &*self.waker.borrow() {
            wake();
        }
    }

    fn pubsub(&self) -> bool {
        self.sub.get() + self.psub.get() > 0
    }

    fn kind(&self) -> ClientType {
        if self.pubsub() {
            ClientType::Pubsub
        } else {
            ClientType::Normal
        }
    }

    /// One line of CLIENT LIST, in Redis 7.0.15's field order, without
    /// its newline. Buffer figures are 0 (the node's buffers are not
    /// Redis's per-client query and output buffers) except `multi-mem` and
    /// `tot-mem`, the bytes of a queued transaction.
    fn write_line(&self, now: Instant, out: &mut String) {
        let peer = self.peer.borrow();
        let mut flags = String::new();
        if self.pubsub() {
            flags.push('P');
        }
        if self.multi.get() >= 0 {
            flags.push('x');
        }
        if self.close_after_reply.get() {
            flags.push('c');
        }
        if self.no_evict.get() {
            flags.push('e');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let name = self.name.borrow();
        let name = String::from_utf8_lossy(name.as_deref().unwrap_or_default());
        let cmd = self.cmd.get().map_or_else(|| "NULL".to_string(), crate::acl::fullname);
        let mem = self.multi_mem.get();
        let _ = write!(
            out,
            "id={} addr={} laddr={} fd={} name={name} age={} idle={} flags={flags} db=0 sub={} psub={} ssub=0 multi={} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem={mem} rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem={mem} events=r cmd={cmd} user={} redir=-1 resp={}",
            self.id,
            peer.addr,
            peer.laddr,
            peer.fd,
            now.saturating_duration_since(self.created).as_secs(),
            now.saturating_duration_since(self.last.get()).as_secs(),
            self.sub.get(),
            self.psub.get(),
            self.multi.get(),
            self.user.borrow().name(),
            self.resp.get(),
        );
    }
}

/// Redis's client types (CLIENT LIST TYPE, CLIENT KILL TYPE). A node's
/// clients are normal or pub/sub ones: its backup replicates over the
/// logging channel, not as a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientType {
    Normal,
    Replica,
    Pubsub,
    Master,
}

fn client_type(name: &[u8]) -> Option<ClientType> {
    match &name.to_ascii_lowercase()[..] {
        b"normal" => Some(ClientType::Normal),
        b"slave" | b"replica" => Some(ClientType::Replica),
        b"pubsub" => Some(ClientType::Pubsub),
        b"master" => Some(ClientType::Master),
        _ => None,
    }
}

fn unknown_type(name: &[u8], out: &mut Vec<u8>) {
    let mut msg = b"ERR Unknown client type '".to_vec();
    msg.extend_from_slice(c_str(name));
    msg.push(b'\'');
    write_error(out, &msg);
}

impl Admin {
    /// CLIENT LIST [TYPE type | ID id …], arity checked.
    pub(crate) fn client_list(&self, argv: &[&[u8]], out: &mut Vec<u8>) {
        let now = Instant::now();
        let clients = self.clients.borrow();
        let mut text = String::new();
        let mut line = |c: &ClientInfo| {
            c.write_line(now, &mut text);
            text.push('\n');
        };
        if argv.len() == 4 && argv[2].eq_ignore_ascii_case(b"type") {
            let Some(t) = client_type(argv[3]) else { return unknown_type(argv[3], out) };
            clients.values().filter(|c| c.kind() == t).for_each(|c| line(c));
        } else if argv.len() > 3 && argv[2].eq_ignore_ascii_case(b"id") {
            let mut ids = Vec::new();
            for a in &argv[3..] {
                match crate::num::parse_i64(a) {
                    Some(id) => ids.push(id),
                    None => return write_error(out, b"ERR Invalid client ID"),
                }
            }
            for id in ids {
                if let Some(c) = u64::try_from(id).ok().and_then(|id| clients.get(&id)) {
                    line(c);
                }
            }
        } else if argv.len() != 2 {
            return write_error(out, crate::cmd::SYNTAX);
        } else {
            clients.values().for_each(|c| line(c));
        }
        write_bulk(out, text.as_bytes());
    }

    /// CLIENT INFO: the line of connection `me`.
    pub(crate) fn client_info(me: &ClientInfo, out: &mut Vec<u8>) {
        let mut text = String::new();
        me.write_line(Instant::now(), &mut text);
        text.push('\n');
        write_bulk(out, text.as_bytes());
    }

    /// CLIENT KILL ip:port, or CLIENT KILL with ID, TYPE, ADDR, LADDR,
    /// USER and SKIPME filters, as Redis 7.0 answers them. A killed
    /// connection is closed by its own task; one that kills itself is
    /// closed after this reply.
    pub(crate) fn client_kill(&self, me: &ClientInfo, argv: &[&[u8]], out: &mut Vec<u8>) {
        let (mut addr, mut laddr, mut user, mut kind, mut id) = (None, None, None, None, None);
        let mut skipme = true;
        if argv.len() == 3 {
            // The old form: CLIENT KILL ip:port (and it may kill itself).
            addr = Some(argv[2]);
            skipme = false;
        } else {
            let mut i = 2;
            while i < argv.len() {
                let Some(&value) = argv.get(i + 1) else { return write_error(out, crate::cmd::SYNTAX) };
                match &argv[i].to_ascii_lowercase()[..] {
                    b"id" => match crate::num::parse_i64(value) {
                        Some(n) if n >= 1 => id = Some(n as u64),
                        _ => return write_error(out, b"ERR client-id should be greater than 0"),
                    },
                    b"type" => match client_type(value) {
                        Some(t) => kind = Some(t),
                        None => return unknown_type(value, out),
                    },
                    b"addr" => addr = Some(value),
                    b"laddr" => laddr = Some(value),
                    b"user" => match self.users.get(value) {
                        Some(u) => user = Some(u.clone()),
                        None => {
                            let mut msg = b"ERR No such user '".to_vec();
                            msg.extend_from_slice(c_str(value));
                            msg.push(b'\'');
                            return write_error(out, &msg);
                        }
                    },
                    b"skipme" if value.eq_ignore_ascii_case(b"yes") => skipme = true,
                    b"skipme" if value.eq_ignore_ascii_case(b"no") => skipme = false,
                    _ => return write_error(out, crate::cmd::SYNTAX),
                }
                i += 2;
            }
        }
        let victims: Vec<Rc<ClientInfo>> = self
            .clients
            .borrow()
            .values()
            .filter(|c| {
                let peer = c.peer.borrow();
                addr.is_none_or(|a| a == peer.addr.as_bytes())
                    && laddr.is_none_or(|a| a == peer.laddr.as_bytes())
                    && kind.is_none_or(|t| c.kind() == t)
                    && id.is_none_or(|id| c.id == id)
                    && user.as_ref().is_none_or(|u| c.user.borrow().name() == u.name())
                    && !(skipme && c.id == me.id)
            })
            .cloned()
            .collect();
        for c in &victims {
            if c.id == me.id {
                c.close_after_reply.set(true);
            } else {
                c.kill();
            }
        }
        if argv.len() == 3 {
            if victims.is_empty() {
                write_error(out, b"ERR No such client");
            } else {
                write_ok(out);
            }
        } else {
            write_int(out, victims.len() as i64);
        }
    }
}

/// The parameters CONFIG GET reports, by name (aliases too), and how CONFIG
/// SET treats each.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Param {
    /// A fixed value: CONFIG SET answers Redis's immutable error.
    Fixed(&'static str),
    /// From the node's options (also immutable at runtime).
    Node,
    /// `slowlog-log-slower-than`, settable.
    SlowerThan,
    /// `slowlog-max-len`, settable.
    MaxLen,
    /// `maxmemory` and `maxmemory-policy`: the machine's, set through a
    /// logged op so that both replicas change together.
    Kv,
}

const PARAMS: &[(&str, Param)] = &[
    ("port", Param::Node),
    ("bind", Param::Node),
    ("appendonly", Param::Node),
    ("appendfsync", Param::Node),
    ("aclfile", Param::Node),
    ("proto-max-bulk-len", Param::Node),
    ("slowlog-log-slower-than", Param::SlowerThan),
    ("slowlog-max-len", Param::MaxLen),
    // requirepass: never shown (Redis shows the password itself).
    ("requirepass", Param::Fixed("")),
    ("masterauth", Param::Fixed("")),
    ("masteruser", Param::Fixed("")),
    ("save", Param::Fixed("")),
    ("databases", Param::Fixed("1")),
    ("maxmemory", Param::Kv),
    ("maxmemory-policy", Param::Kv),
    ("maxmemory-eviction-tenacity", Param::Fixed("10")),
    ("maxmemory-clients", Param::Fixed("0")),
    ("maxmemory-samples", Param::Fixed("5")),
    ("timeout", Param::Fixed("0")),
    ("notify-keyspace-events", Param::Fixed("")),
    ("lua-time-limit", Param::Fixed("5000")),
    ("busy-reply-threshold", Param::Fixed("5000")),
    ("cluster-enabled", Param::Fixed("no")),
    ("io-threads", Param::Fixed("1")),
    ("hash-max-listpack-entries", Param::Fixed("512")),
    ("hash-max-ziplist-entries", Param::Fixed("512")),
    ("hash-max-listpack-value", Param::Fixed("64")),
    ("hash-max-ziplist-value", Param::Fixed("64")),
    ("list-max-listpack-size", Param::Fixed("-2")),
    ("list-max-ziplist-size", Param::Fixed("-2")),
    ("list-compress-depth", Param::Fixed("0")),
    ("set-max-intset-entries", Param::Fixed("512")),
    ("zset-max-listpack-entries", Param::Fixed("128")),
    ("zset-max-ziplist-entries", Param::Fixed("128")),
    ("zset-max-listpack-value", Param::Fixed("64")),
    ("zset-max-ziplist-value", Param::Fixed("64")),
];

impl Admin {
    fn param_value(&self, name: &str, p: Param) -> String {
        let node = self.node.borrow();
        match p {
            Param::Fixed(v) => v.to_string(),
            Param::SlowerThan => self.slowlog.borrow().slower_than_us.to_string(),
            Param::MaxLen => self.slowlog.borrow().max_len.to_string(),
            Param::Kv if name == "maxmemory" => self.maxmemory.get().bytes.to_string(),
            Param::Kv => self.maxmemory.get().policy.name().to_string(),
            Param::Node => match name {
                "port" => node.port.to_string(),
                "bind" => node.bind.clone(),
                "appendonly" => if node.appendfsync.is_some() { "yes" } else { "no" }.to_string(),
                "appendfsync" => node.appendfsync.clone().unwrap_or_else(|| "everysec".into()),
                "aclfile" => node.aclfile.clone(),
                _ => node.request_bytes_max.to_string(),
            },
        }
    }

    /// CONFIG GET|SET|RESETSTAT|HELP, arity checked. True: a valid CONFIG
    /// SET of the machine's parameters (`maxmemory`…), nothing answered
    /// yet: the caller logs it (`Kv` applies it and answers +OK); the
    /// node's own parameters it names are set already. `may_log` false
    /// (inside MULTI): such a CONFIG SET is refused.
    pub(crate) fn config(&self, argv: &[&[u8]], out: &mut Vec<u8>, may_log: bool) -> bool {
        match &argv[1].to_ascii_lowercase()[..] {
            b"get" => self.config_get(&argv[2..], out),
            b"set" => return self.config_set(argv, out, may_log),
            b"resetstat" => write_ok(out),
            b"rewrite" => write_error(out, b"ERR The server is running without a config file"),
            _ => crate::resp::write_help(out, "CONFIG", CONFIG_HELP),
        }
        false
    }

    /// As Redis: a pattern without glob characters is a name, echoed back
    /// as the client spelled it; globs match case-insensitively.
    fn config_get(&self, patterns: &[&[u8]], out: &mut Vec<u8>) {
        let mut hits: Vec<(&[u8], String)> = Vec::new();
        for (name, p) in PARAMS {
            let spelled = patterns.iter().find_map(|pat| {
                let glob = pat.iter().any(|c| b"[*?".contains(c));
                if glob && crate::num::glob_match(pat, name.as_bytes(), true) {
                    Some(name.as_bytes())
                } else {
                    (!glob && pat.eq_ignore_ascii_case(name.as_bytes())).then_some(*pat)
                }
            });
            if let Some(spelled) = spelled {
                hits.push((spelled, self.param_value(name, *p)));
            }
        }
        write_array_len(out, hits.len() * 2);
        for (name, value) in hits {
            write_bulk(out, name);
            write_bulk(out, value.as_bytes());
        }
    }

    /// CONFIG SET name value [name value …]: all or nothing, Redis 7.0's
    /// errors; the slow log's parameters change here, `maxmemory` and
    /// `maxmemory-policy` through the log (returns true).
    fn config_set(&self, argv: &[&[u8]], out: &mut Vec<u8>, may_log: bool) -> bool {
        if !argv.len().is_multiple_of(2) {
            write_error(out, crate::cmd::SYNTAX);
            return false;
        }
        let failed = |name: &[u8], why: &str, out: &mut Vec<u8>| {
            let mut msg = b"ERR CONFIG SET failed (possibly related to argument '".to_vec();
            msg.extend_from_slice(name);
            msg.extend_from_slice(format!("') - {why}").as_bytes());
            write_error(out, &msg);
        };
        let mut set: Vec<(&str, Param, &[u8])> = Vec::new();
        for pair in argv[2..].chunks(2) {
            let Some(&(name, p)) = PARAMS.iter().find(|(n, _)| pair[0].eq_ignore_ascii_case(n.as_bytes())) else {
                let mut msg = b"ERR Unknown option or number of arguments for CONFIG SET - '".to_vec();
                msg.extend_from_slice(c_str(pair[0]));
                msg.push(b'\'');
                write_error(out, &msg);
                return false;
            };
            if !matches!(p, Param::SlowerThan | Param::MaxLen | Param::Kv) {
                failed(pair[0], "can't set immutable config", out);
                return false;
            }
            if set.iter().any(|(n, _, _)| *n == name) {
                failed(pair[0], "duplicate parameter", out);
                return false;
            }
            set.push((name, p, pair[1]));
        }
        let mut values = Vec::new();
        let mut logged = false;
        for (name, p, value) in &set {
            if *p == Param::Kv {
                if let Err(why) = check_kv_param(name, value, may_log) {
                    failed(name.as_bytes(), why, out);
                    return false;
                }
                logged = true;
                values.push(0);
                continue;
            }
            let min = if *p == Param::SlowerThan { -1 } else { 0 };
            match crate::num::parse_i64(value) {
                None => {
                    failed(name.as_bytes(), "argument couldn't be parsed into an integer", out);
                    return false;
                }
                Some(v) if v < min => {
                    failed(name.as_bytes(), &format!("argument must be between {min} and {} inclusive", i64::MAX), out);
                    return false;
                }
                Some(v) => values.push(v),
            }
        }
        let mut log = self.slowlog.borrow_mut();
        for ((_, p, _), v) in set.iter().zip(values) {
            match p {
                Param::SlowerThan => log.slower_than_us = v,
                Param::MaxLen => log.max_len = v as u64,
                _ => {}
            }
        }
        if !logged {
            write_ok(out);
        }
        logged
    }
}

/// Checks a value of `maxmemory` or `maxmemory-policy` for CONFIG SET,
/// with Redis 7.0's reasons.
fn check_kv_param(name: &str, value: &[u8], may_log: bool) -> Result<(), &'static str> {
    if !may_log {
        return Err("understudy sets it through the replicated log, which a MULTI cannot hold: send it alone");
    }
    if name == "maxmemory" {
        return crate::evict::parse_memory(value).map(|_| ()).ok_or("argument must be a memory value");
    }
    if crate::evict::Policy::parse(value).is_some() {
        return Ok(());
    }
    if value.eq_ignore_ascii_case(b"allkeys-lfu") || value.eq_ignore_ascii_case(b"volatile-lfu") {
        return Err("understudy has no LFU policies: use allkeys-lru, volatile-lru, allkeys-random, volatile-random, volatile-ttl or noeviction");
    }
    Err("argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction")
}

const CONFIG_HELP: &[&str] = &[
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
    "HELP",
    "    Prints this help.",
];
