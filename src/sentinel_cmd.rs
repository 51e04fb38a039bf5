//! The commands `understudy sentinel` answers, in Redis Sentinel's reply
//! shapes (RESP2, or RESP3 after `HELLO 3`): what client libraries ask a
//! Sentinel to find a primary, plus the connection commands they send
//! first and `SUBSCRIBE` for `+switch-master`.

use std::collections::BTreeSet;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use understudy_kv::auth::{Auth, NOAUTH};
use understudy_kv::resp::{write_array_len, write_bulk, write_error, write_int, write_ok, write_simple};
use understudy_kv::session::{check_client_name, client_setinfo, parse_hello, unknown_command, write_hello_fields, HelloArgs};

use crate::sentinel_reply::{info, master_fields, replica_fields, Shared};
use crate::sentinel_watch::{split_addr, Lookup, Message};

/// Channels and patterns one connection may subscribe to, and the bytes of
/// their names.
const SUBSCRIPTIONS_MAX: usize = 1024;
const SUBSCRIPTION_BYTES_MAX: usize = 64 * 1024;

/// After a command: keep reading, or close once the reply is written.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Continue,
    Close,
}

/// One client connection's state.
pub struct Client {
    pub id: u64,
    pub peer: String,
    pub local: String,
    name: Option<Vec<u8>>,
    resp3: bool,
    channels: BTreeSet<Vec<u8>>,
    patterns: BTreeSet<Vec<u8>>,
    /// Published messages, while subscribed to anything.
    pub inbox: Option<Receiver<Message>>,
    auth: Auth,
}

/// Redis's arity for each command (negative: at least).
const COMMANDS: &[(&str, i32)] = &[
    ("ping", -1),
    ("echo", 2),
    ("quit", -1),
    ("hello", -1),
    ("auth", -2),
    ("client", -2),
    ("info", -1),
    ("role", 1),
    ("sentinel", -2),
    ("subscribe", -2),
    ("psubscribe", -2),
    ("unsubscribe", -1),
    ("punsubscribe", -1),
    ("command", -1),
    ("reset", 1),
];

const SENTINEL_SUBCOMMANDS: &[(&str, i32)] = &[
    ("get-master-addr-by-name", 3),
    ("master", 3),
    ("masters", 2),
    ("replicas", 3),
    ("slaves", 3),
    ("sentinels", 3),
    ("is-master-down-by-addr", 6),
    ("myid", 2),
    ("ckquorum", 3),
    ("reset", 3),
    ("failover", 3),
    ("help", 2),
    ("monitor", 6),
    ("remove", 3),
    ("set", -5),
    ("config", -4),
    ("flushconfig", 2),
    ("simulate-failure", -3),
    ("debug", -2),
    ("info-cache", -3),
    ("pending-scripts", 2),
];

fn arity_ok(arity: i32, n: usize) -> bool {
    if arity >= 0 {
        n == arity as usize
    } else {
        n >= arity.unsigned_abs() as usize
    }
}

fn arity_error(out: &mut Vec<u8>, name: &str) {
    write_error(out, format!("ERR wrong number of arguments for '{name}' command").as_bytes());
}

/// A C string's view of an argument (Redis prints up to the first NUL).
fn c_str(a: &[u8]) -> &[u8] {
    a.iter().position(|&b| b == 0).map_or(a, |z| &a[..z])
}

fn unknown_subcommand(out: &mut Vec<u8>, sub: &[u8], container: &str) {
    let mut msg = b"ERR unknown subcommand '".to_vec();
    let shown = c_str(sub);
    msg.extend_from_slice(&shown[..shown.len().min(128)]);
    msg.extend_from_slice(format!("'. Try {container} HELP.").as_bytes());
    write_error(out, &msg);
}

fn help(out: &mut Vec<u8>, container: &str, lines: &[&str]) {
    write_array_len(out, lines.len() + 1);
    write_simple(out, format!("{container} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:").as_bytes());
    for l in lines {
        write_simple(out, l.as_bytes());
    }
}

fn parse_i64(a: &[u8]) -> Option<i64> {
    std::str::from_utf8(a).ok()?.parse().ok()
}

const NOT_INT: &[u8] = b"ERR value is not an integer or out of range";
const NO_SUCH_MASTER: &[u8] = b"ERR No such master with that name";

impl Client {
    pub fn new(id: u64, peer: String, local: String, password: Option<Arc<[u8]>>) -> Client {
        let (channels, patterns) = (BTreeSet::new(), BTreeSet::new());
        Client { id, peer, local, name: None, resp3: false, channels, patterns, inbox: None, auth: Auth::new(password) }
    }

    fn subscriptions(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    // RESP2/RESP3 headers.
    fn map_len(&self, out: &mut Vec<u8>, n: usize) {
        if self.resp3 {
            out.extend_from_slice(format!("%{n}\r\n").as_bytes());
        } else {
            write_array_len(out, 2 * n);
        }
    }

    fn push_len(&self, out: &mut Vec<u8>, n: usize) {
        if self.resp3 {
            out.extend_from_slice(format!(">{n}\r\n").as_bytes());
        } else {
            write_array_len(out, n);
        }
    }

    fn null_bulk(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if self.resp3 { b"_\r\n" } else { b"$-1\r\n" });
    }

    fn null_array(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if self.resp3 { b"_\r\n" } else { b"*-1\r\n" });
    }

    fn fields(&self, out: &mut Vec<u8>, f: &[(&str, String)]) {
        self.map_len(out, f.len());
        for (k, v) in f {
            write_bulk(out, k.as_bytes());
            write_bulk(out, v.as_bytes());
        }
    }

    /// Executes one command, appending its reply to `out`.
    pub fn command(&mut self, s: &Shared, argv: &[&[u8]], out: &mut Vec<u8>) -> Next {
        let name = String::from_utf8_lossy(argv[0]).to_ascii_lowercase();
        let Some(&(_, arity)) = COMMANDS.iter().find(|(n, _)| *n == name) else {
            unknown_command(argv, out);
            return Next::Continue;
        };
        if !arity_ok(arity, argv.len()) {
            arity_error(out, &name);
            return Next::Continue;
        }
        if !self.auth.authenticated() && !Auth::exempt(&name) {
            write_error(out, NOAUTH);
            return Next::Continue;
        }
        let pubsub_only = ["subscribe", "psubscribe", "unsubscribe", "punsubscribe", "ping", "quit", "reset"];
        if !self.resp3 && self.subscriptions() > 0 && !pubsub_only.contains(&name.as_str()) {
            let msg = format!(
                "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
            );
            write_error(out, msg.as_bytes());
            return Next::Continue;
        }
        match name.as_str() {
            "ping" if argv.len() > 2 => arity_error(out, "ping"),
            "ping" if !self.resp3 && self.subscriptions() > 0 => {
                write_array_len(out, 2);
                write_bulk(out, b"pong");
                write_bulk(out, argv.get(1).copied().unwrap_or(b""));
            }
            "ping" => match argv.get(1) {
                Some(m) => write_bulk(out, m),
                None => write_simple(out, b"PONG"),
            },
            "echo" => write_bulk(out, argv[1]),
            "quit" => {
                write_ok(out);
                return Next::Close;
            }
            "hello" => self.hello(argv, out),
            "auth" => self.auth.command(argv, out),
            "client" => self.client(argv, out),
            "info" => write_bulk(out, info(s, &argv[1..]).as_bytes()),
            "role" => {
                let names: Vec<String> = s.watch.known().into_iter().map(|v| v.name).collect();
                write_array_len(out, 2);
                write_bulk(out, b"sentinel");
                write_array_len(out, names.len());
                for n in names {
                    write_bulk(out, n.as_bytes());
                }
            }
            "sentinel" => self.sentinel(s, argv, out),
            "subscribe" | "psubscribe" => self.subscribe(s, &name, &argv[1..], out),
            "unsubscribe" | "punsubscribe" => self.unsubscribe(&name, &argv[1..], out),
            "command" => self.command_command(argv, out),
            "reset" => {
                self.channels.clear();
                self.patterns.clear();
                self.inbox = None;
                self.name = None;
                self.resp3 = false;
                self.auth.reset();
                write_simple(out, b"RESET");
            }
            _ => unknown_command(argv, out),
        }
        Next::Continue
    }

    /// HELLO [protover [AUTH user pass] [SETNAME name]].
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
        if let Some(p) = proto {
            self.resp3 = p == 3;
        }
        self.map_len(out, 7);
        write_hello_fields(out, self.resp3, self.id, "sentinel");
    }

    fn set_name(&mut self, name: &[u8], out: &mut Vec<u8>) -> bool {
        if !check_client_name(name, out) {
            return false;
        }
        self.name = (!name.is_empty()).then(|| name.to_vec());
        true
    }

    fn client(&mut self, argv: &[&[u8]], out: &mut Vec<u8>) {
        let sub = argv[1].to_ascii_lowercase();
        let arity = match &sub[..] {
            b"id" | b"getname" | b"info" | b"help" => 2,
            b"setname" => 3,
            b"setinfo" => 4,
            _ => return unknown_subcommand(out, argv[1], "CLIENT"),
        };
        if argv.len() != arity {
            return arity_error(out, &format!("client|{}", String::from_utf8_lossy(&sub)));
        }
        match &sub[..] {
            b"id" => write_int(out, self.id as i64),
            b"getname" => match &self.name {
                Some(n) => write_bulk(out, n),
                None => self.null_bulk(out),
            },
            b"setname" => {
                if self.set_name(argv[2], out) {
                    write_ok(out);
                }
            }
            b"setinfo" => client_setinfo(argv, out),
            b"info" => {
                let name = self.name.as_deref().map(String::from_utf8_lossy).unwrap_or_default();
                let line = format!(
                    "id={} addr={} laddr={} name={name} db=0 sub={} psub={} resp={}\n",
                    self.id,
                    self.peer,
                    self.local,
                    self.channels.len(),
                    self.patterns.len(),
                    if self.resp3 { 3 } else { 2 }
                );
                write_bulk(out, line.as_bytes());
            }
            _ => help(out, "CLIENT", &["ID", "GETNAME", "SETNAME <name>", "SETINFO <LIB-NAME|LIB-VER> <value>", "INFO"]),
        }
    }

    fn command_command(&mut self, argv: &[&[u8]], out: &mut Vec<u8>) {
        let entry = |out: &mut Vec<u8>, name: &str, arity: i32| {
            write_array_len(out, 10);
            write_bulk(out, name.as_bytes());
            write_int(out, i64::from(arity));
            write_array_len(out, 0); // flags
            for _ in 0..3 {
                write_int(out, 0); // first key, last key, step
            }
            for _ in 0..4 {
                write_array_len(out, 0); // ACL categories, tips, key specs, subcommands
            }
        };
        let Some(sub) = argv.get(1).map(|a| a.to_ascii_lowercase()) else {
            write_array_len(out, COMMANDS.len());
            for (n, a) in COMMANDS {
                entry(out, n, *a);
            }
            return;
        };
        match &sub[..] {
            b"count" if argv.len() == 2 => write_int(out, COMMANDS.len() as i64),
            b"list" if argv.len() == 2 => {
                write_array_len(out, COMMANDS.len());
                for (n, _) in COMMANDS {
                    write_bulk(out, n.as_bytes());
                }
            }
            b"info" => {
                write_array_len(out, argv.len() - 2);
                for a in &argv[2..] {
                    let a = String::from_utf8_lossy(a).to_ascii_lowercase();
                    match COMMANDS.iter().find(|(n, _)| *n == a) {
                        Some((n, ar)) => entry(out, n, *ar),
                        None => self.null_array(out),
                    }
                }
            }
            b"help" if argv.len() == 2 => {
                help(out, "COMMAND", &["(no subcommand)", "COUNT", "INFO [<command-name> ...]", "LIST"])
            }
            b"count" | b"list" | b"help" => arity_error(out, &format!("command|{}", String::from_utf8_lossy(&sub))),
            // Like the key-value service: COMMAND DOCS is unknown, so
            // redis-cli falls back to its own help.
            _ => unknown_subcommand(out, argv[1], "COMMAND"),
        }
    }

    fn subscribe(&mut self, s: &Shared, kind: &str, names: &[&[u8]], out: &mut Vec<u8>) {
        for n in names {
            let set = if kind == "subscribe" { &self.channels } else { &self.patterns };
            if !set.contains(*n) {
                let bytes = self.channels.iter().chain(&self.patterns).map(Vec::len).sum::<usize>() + n.len();
                if self.subscriptions() >= SUBSCRIPTIONS_MAX || bytes > SUBSCRIPTION_BYTES_MAX {
                    let msg = format!(
                        "ERR at most {SUBSCRIPTIONS_MAX} channels and patterns, {SUBSCRIPTION_BYTES_MAX} bytes of names, per connection"
                    );
                    write_error(out, msg.as_bytes());
                    continue;
                }
            }
            let set = if kind == "subscribe" { &mut self.channels } else { &mut self.patterns };
            set.insert(n.to_vec());
            if self.inbox.is_none() {
                self.inbox = Some(s.watch.subscribe());
            }
            self.push_len(out, 3);
            write_bulk(out, kind.as_bytes());
            write_bulk(out, n);
            write_int(out, self.subscriptions() as i64);
        }
    }

    fn unsubscribe(&mut self, kind: &str, names: &[&[u8]], out: &mut Vec<u8>) {
        let set = if kind == "unsubscribe" { &mut self.channels } else { &mut self.patterns };
        let which: Vec<Vec<u8>> =
            if names.is_empty() { set.iter().cloned().collect() } else { names.iter().map(|n| n.to_vec()).collect() };
        if which.is_empty() {
            self.push_len(out, 3);
            write_bulk(out, kind.as_bytes());
            self.null_bulk(out);
            write_int(out, self.subscriptions() as i64);
        }
        for n in which {
            let set = if kind == "unsubscribe" { &mut self.channels } else { &mut self.patterns };
            set.remove(&n);
            self.push_len(out, 3);
            write_bulk(out, kind.as_bytes());
            write_bulk(out, &n);
            write_int(out, self.subscriptions() as i64);
        }
        if self.subscriptions() == 0 {
            self.inbox = None;
        }
    }

    /// Appends the messages `m` means for this connection's subscriptions.
    pub fn deliver(&self, m: &Message, out: &mut Vec<u8>) {
        let (channel, payload) = (&m.0, &m.1);
        if self.channels.contains(channel.as_bytes()) {
            self.push_len(out, 3);
            write_bulk(out, b"message");
            write_bulk(out, channel.as_bytes());
            write_bulk(out, payload.as_bytes());
        }
        for p in &self.patterns {
            if understudy_kv::glob_match(p, channel.as_bytes(), false) {
                self.push_len(out, 4);
                write_bulk(out, b"pmessage");
                write_bulk(out, p);
                write_bulk(out, channel.as_bytes());
                write_bulk(out, payload.as_bytes());
            }
        }
    }

    fn sentinel(&mut self, s: &Shared, argv: &[&[u8]], out: &mut Vec<u8>) {
        let sub = String::from_utf8_lossy(argv[1]).to_ascii_lowercase();
        let Some(&(_, arity)) = SENTINEL_SUBCOMMANDS.iter().find(|(n, _)| *n == sub) else {
            return unknown_subcommand(out, argv[1], "SENTINEL");
        };
        if !arity_ok(arity, argv.len()) {
            return arity_error(out, &format!("sentinel|{sub}"));
        }
        let name = argv.get(2).map(|n| String::from_utf8_lossy(n).into_owned()).unwrap_or_default();
        let poll_ms = s.watch.poll.as_millis();
        match sub.as_str() {
            "masters" => {
                let all = s.watch.known();
                write_array_len(out, all.len());
                for v in &all {
                    self.fields(out, &master_fields(v, poll_ms));
                }
            }
            "myid" => write_bulk(out, s.myid.as_bytes()),
            "is-master-down-by-addr" => {
                let (Some(port), Some(_epoch)) = (parse_i64(argv[3]), parse_i64(argv[4])) else {
                    return write_error(out, NOT_INT);
                };
                let ip = String::from_utf8_lossy(argv[2]);
                let down = s.watch.known().iter().any(|v| {
                    let (h, p) = split_addr(&v.record.primary.client);
                    h == ip && p == port.to_string() && !v.primary_up
                });
                // Failover is the arbiter's test-and-set: this sentinel
                // never votes for a leader.
                write_array_len(out, 3);
                write_int(out, i64::from(down));
                write_bulk(out, b"*");
                write_int(out, 0);
            }
            "help" => help(
                out,
                "SENTINEL",
                &[
                    "GET-MASTER-ADDR-BY-NAME <master-name>",
                    "MASTER <master-name>",
                    "MASTERS",
                    "REPLICAS <master-name>",
                    "SLAVES <master-name>",
                    "SENTINELS <master-name>",
                    "IS-MASTER-DOWN-BY-ADDR <ip> <port> <current-epoch> <runid>",
                    "MYID",
                    "CKQUORUM <master-name>",
                    "RESET <pattern>",
                ],
            ),
            "reset" => {
                let n = s.watch.known().iter().filter(|v| understudy_kv::glob_match(argv[2], v.name.as_bytes(), false)).count();
                write_int(out, n as i64);
            }
            "failover" => write_error(
                out,
                b"ERR understudy fails over by itself (the arbiter's test-and-set); for a planned switch run `understudy switchover --arbiter URL --cluster NAME`",
            ),
            "get-master-addr-by-name" | "master" | "replicas" | "slaves" | "sentinels" | "ckquorum" => {
                let v = match s.watch.lookup(&name) {
                    Lookup::Found(v) => v,
                    Lookup::Unknown if sub == "get-master-addr-by-name" => return self.null_array(out),
                    Lookup::Unknown => return write_error(out, NO_SUCH_MASTER),
                    Lookup::Failed(why) => return write_error(out, format!("ERR {why}").as_bytes()),
                };
                match sub.as_str() {
                    "get-master-addr-by-name" => {
                        let (h, p) = split_addr(&v.record.primary.client);
                        write_array_len(out, 2);
                        write_bulk(out, h.as_bytes());
                        write_bulk(out, p.as_bytes());
                    }
                    "master" => self.fields(out, &master_fields(&v, poll_ms)),
                    "replicas" | "slaves" => match replica_fields(&v, poll_ms) {
                        Some(f) => {
                            write_array_len(out, 1);
                            self.fields(out, &f);
                        }
                        None => write_array_len(out, 0),
                    },
                    "sentinels" => write_array_len(out, 0),
                    _ => write_simple(out, b"OK 1 usable Sentinels. Quorum and failover authorization can be reached"),
                }
            }
            _ => write_error(
                out,
                format!(
                    "ERR SENTINEL {} is not supported: understudy sentinel takes its clusters from the arbiter ({}) and keeps no configuration",
                    sub.to_uppercase(),
                    s.watch.describe_arbiter()
                )
                .as_bytes(),
            ),
        }
    }
}
