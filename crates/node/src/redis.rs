//! The key-value service's front end: Redis's protocol (RESP2, RESP3
//! after `HELLO 3`) over [`Kv`], one [`FrontEnd`] among others. The
//! session (`understudy_kv::Session`) answers connection commands and
//! queues transactions; reads and writes go to the machine.
//!
//! What the connections of the node share ([`Admin`]: users, CONFIG, the
//! slow log, CLIENT LIST's registry) lives here; this front end fills in
//! what only the node knows: each connection's addresses, subscriptions
//! and last command's time, the options CONFIG GET reports, and the time
//! each command took (decode to reply queued, without the wait at the
//! output gate) for the slow log. CLIENT KILL wakes the killed
//! connection's task ([`FrontEnd::take_pushed`] then closes it).

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;
use understudy_core::Seq;
use understudy_kv::acl::Users;
use understudy_kv::admin::{Admin, NodeConfig};
use understudy_kv::evict::Admit;
use understudy_kv::resp::{write_bulk, write_error, write_int, CommandParser};
use understudy_kv::session::{command_name, serves_on_backup, Dispatch, Session};
use understudy_kv::slowlog::Captured;
use understudy_kv::{encode_query, Kv};

use crate::blocking::{is_blocking, touches_anything, Blocked, Touches, Waiting};
use crate::pubsub::{pubsub_command, subscribe_mode_error, Registry, Subscriber};
use crate::service::{Access, FrontEnd, NodeView, Peer, Request};

/// The Redis-protocol front end.
pub struct Redis {
    /// `--request-bytes-max`: the largest command, and the largest
    /// transaction (it travels as one entry).
    request_bytes_max: usize,
    /// Users, CONFIG, the slow log, the connections (CLIENT LIST).
    admin: Rc<Admin>,
    /// `--aclfile`, as CONFIG GET shows it.
    aclfile: String,
    /// This node's subscribers (`crate::pubsub`).
    registry: Rc<RefCell<Registry>>,
    /// Connections waiting in a blocking command (`crate::blocking`).
    waiting: Rc<RefCell<Waiting>>,
}

impl Redis {
    /// `users`: the default user alone (with `--requirepass-file`'s
    /// password, if any) or the users of `aclfile`.
    pub fn new(request_bytes_max: usize, users: Users, aclfile: Option<String>) -> Redis {
        Redis {
            request_bytes_max,
            admin: Rc::new(Admin::new(Arc::new(users))),
            aclfile: aclfile.unwrap_or_default(),
            registry: Rc::default(),
            waiting: Rc::default(),
        }
    }
}

/// One client connection: its session and the parser's progress (a large
/// command arriving in many reads is scanned once, not from its start on
/// every read).
pub struct RedisConn {
    session: Session,
    parser: CommandParser,
    args: Vec<Range<usize>>,
    sub: Subscriber,
    /// The request being answered is a PUBLISH (`encode` puts the
    /// publisher's own copy, if it subscribed, before the reply).
    publishing: bool,
    /// A blocking command waiting for a key (`crate::blocking`).
    blocked: Option<Blocked>,
    /// The waiting XREAD's argv with `$` pinned to the IDs it had.
    pinned: Option<Vec<Vec<u8>>>,
    /// What the write being decoded may change, for waking waiters.
    touches: Touches,
    /// When the command being answered started, if the slow log may
    /// record it (`encode` sees how long it took), and its arguments.
    started: Option<Instant>,
    captured: Captured,
}

impl FrontEnd for Redis {
    type Machine = Kv;
    type Conn = RedisConn;

    fn open(&self, id: u64) -> RedisConn {
        let mut session = Session::with_admin(id, self.admin.clone());
        session.set_op_bytes_max(self.request_bytes_max);
        let sub = Subscriber::new(id, self.registry.clone());
        // CLIENT KILL wakes the connection's task as a message would.
        let wake = sub.waker();
        session.client_info().set_waker(Box::new(move || wake.notify_one()));
        RedisConn {
            session,
            parser: CommandParser::default(),
            args: Vec::new(),
            sub,
            publishing: false,
            blocked: None,
            pinned: None,
            touches: Touches::Nothing,
            started: None,
            captured: Captured::default(),
        }
    }

    fn connected(&self, c: &mut RedisConn, peer: &Peer) {
        c.session.client_info().set_peer(peer.addr.to_string(), peer.local.to_string(), peer.fd);
    }

    fn decode(
        &self,
        c: &mut RedisConn,
        input: &[u8],
        node: &NodeView<'_, Kv>,
        op: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Option<Request> {
        let len = match c.parser.parse(input, self.request_bytes_max, &mut c.args) {
            Ok(Some(n)) => n,
            Ok(None) => return None,
            Err(e) => {
                // Reply, then close (as Redis does).
                out.extend_from_slice(&e.to_resp());
                return Some(Request::new(input.len(), Access::Local).then_close());
            }
        };
        let argv: Vec<&[u8]> = c.args.iter().map(|a| &input[a.clone()]).collect();
        if argv.is_empty() {
            // A blank inline line: no reply, as in Redis.
            return Some(Request::new(len, Access::Local));
        }
        let started = Instant::now();
        c.started = None;
        c.session.client_info().touch(started);
        // An unauthenticated client learns nothing, not even where the
        // primary is: the session answers -NOAUTH.
        if !node.is_primary() && !serves_on_backup(&argv) && c.session.authenticated() {
            self.redirect(c, node.primary_client(), out);
            return Some(Request::new(len, Access::Local));
        }
        c.publishing = false;
        if c.sub.count() > 0 {
            if let Some(req) = subscribe_mode(c, &argv, len, out) {
                return Some(req);
            }
        }
        if argv[0].eq_ignore_ascii_case(b"config") {
            self.admin.set_node_config(NodeConfig {
                port: node.listen_port(),
                bind: node.client_listen().ip().to_string(),
                appendfsync: node.appendfsync().map(|f| f.as_str().to_string()),
                aclfile: self.aclfile.clone(),
                request_bytes_max: self.request_bytes_max,
            });
        }
        // Whether the machine is out of memory (MULTI queues nothing then)
        // and its maxmemory, for CONFIG GET.
        c.session.observe(node.machine());
        let mut dispatch = c.session.dispatch(&argv, op, out);
        if c.session.ran() && self.admin.slowlog_slower_than_us() >= 0 {
            c.captured.capture(&argv);
            c.started = Some(started);
        }
        if dispatch == Dispatch::Keyspace {
            // The machine holds every write decoded so far: the node applies
            // each as it decodes it, and this node is the primary (WATCH
            // and EXEC are redirected on a backup).
            debug_assert!(node.is_primary());
            dispatch = c.session.keyspace(node.machine(), node.now_us() / 1000, &argv, op, out);
            debug_assert_ne!(dispatch, Dispatch::Keyspace);
        }
        // Over maxmemory, a write that may grow memory carries the keys the
        // primary evicts ahead of it, or is refused (`understudy_kv::evict`).
        if dispatch == Dispatch::Write && node.is_primary() && node.machine().admit(op, out) == Admit::Refused {
            dispatch = Dispatch::Gated;
        }
        if dispatch == Dispatch::PubSub {
            self.pubsub(c, &argv, out);
            let (channels, patterns) = c.sub.counts();
            c.session.client_info().set_subscriptions(channels, patterns);
            // Written in the connection's protocol already: no conversion.
            return Some(Request::new(len, Access::Local));
        }
        if dispatch == Dispatch::Read && command_name(&argv) == Some("xread") {
            if let Some(req) = self.wait(c, &argv, len, node, op, out) {
                return req;
            }
        }
        if dispatch == Dispatch::Write {
            let name = command_name(&argv).unwrap_or("");
            c.publishing = name == "publish";
            if is_blocking(name) || name == "xreadgroup" {
                if let Some(req) = self.wait(c, &argv, len, node, op, out) {
                    return req;
                }
                // Pinning is XREAD's: a write goes with its own argv.
                c.pinned = None;
            }
            c.touches = if self.waiting.borrow().is_empty() {
                Touches::Nothing
            } else if touches_anything(name) {
                Touches::Everything
            } else {
                Touches::Keys(argv[1..].iter().map(|a| Box::from(*a)).collect())
            };
        }
        let req = match dispatch {
            Dispatch::Done | Dispatch::Keyspace | Dispatch::PubSub => Request::new(len, Access::Local),
            // Gated like a read: on everything logged before it.
            Dispatch::Gated => Request::new(len, Access::Status),
            Dispatch::Read => {
                // XREAD's `$`, pinned while it waited.
                match c.pinned.take() {
                    Some(p) => encode_query(op, &p.iter().map(Vec::as_slice).collect::<Vec<_>>()),
                    None => encode_query(op, &argv),
                }
                Request::new(len, Access::Read)
            }
            Dispatch::Write => Request::new(len, Access::Write),
            Dispatch::Status => {
                match command_name(&argv) {
                    Some("role") => crate::redis_info::role(node, out),
                    // Every write this connection was answered is on the
                    // backup already; the reply leaves after this point's ack.
                    Some("wait") => write_int(out, i64::from(node.status().protected)),
                    // Nothing is ever saved to disk: the state lives in the
                    // replicas' memory, as loaded when this process started.
                    Some("lastsave") => write_int(out, (node.stats().started_unix_ms / 1000) as i64),
                    _ => write_bulk(out, crate::redis_info::info(node, &argv[1..]).as_bytes()),
                }
                Request::new(len, Access::Status)
            }
            Dispatch::Close => Request::new(len, Access::Local).then_close(),
        };
        c.session.expect_reply(&argv);
        // RESET in subscribe mode unsubscribed everything.
        let (channels, patterns) = c.sub.counts();
        c.session.client_info().set_subscriptions(channels, patterns);
        // CLIENT KILL … SKIPME no: it killed itself.
        if c.session.client_info().take_close_after_reply() {
            return Some(req.then_close());
        }
        Some(req)
    }

    fn encode(&self, c: &mut RedisConn, out: &mut Vec<u8>, start: usize) {
        if let Some(started) = c.started.take() {
            let micros = started.elapsed().as_micros() as u64;
            if micros as i128 >= i128::from(self.admin.slowlog_slower_than_us()) {
                let unix_s = crate::ctx::wall_us() / 1_000_000;
                self.admin.slowlog_push(c.captured.argv(), micros, unix_s, c.session.client_info());
            }
        }
        if std::mem::take(&mut c.publishing) && c.sub.count() > 0 {
            // PUBLISH's reply (the subscribers reached, on this node): a
            // publisher subscribed to its own channel (RESP3) gets its
            // copy first, as from Redis.
            let reply = out.split_off(start);
            c.sub.drain(c.session.resp3(), out);
            out.extend_from_slice(&reply);
            return;
        }
        c.session.encode_reply(out, start);
    }

    fn publisher(&self) -> Option<crate::ctx::Publisher> {
        let registry = self.registry.clone();
        Some(Box::new(move |channel, message, seq| registry.borrow().publish(channel, message, seq) as u64))
    }

    fn written(&self, c: &mut RedisConn, _seq: Seq) {
        match std::mem::replace(&mut c.touches, Touches::Nothing) {
            Touches::Nothing => {}
            Touches::Keys(keys) => keys.iter().for_each(|k| self.waiting.borrow().wake(k)),
            Touches::Everything => self.waiting.borrow().wake_all(),
        }
    }

    fn held(&self, c: &RedisConn) -> bool {
        c.blocked.is_some()
    }

    fn wake_at(&self, c: &RedisConn) -> Option<std::time::Instant> {
        c.blocked.as_ref().and_then(Blocked::deadline)
    }

    fn take_pushed(&self, c: &mut RedisConn, out: &mut Vec<u8>) -> Result<Option<Seq>, String> {
        if c.session.client_info().killed() {
            return Err("CLIENT KILL closed it".into());
        }
        if c.sub.overflowed() {
            return Err(format!(
                "a subscriber left more than {} MiB of messages unread",
                crate::pubsub::SUBSCRIBER_BYTES_MAX >> 20
            ));
        }
        Ok(c.sub.drain(c.session.resp3(), out))
    }

    fn push_waker(&self, c: &RedisConn) -> Option<Rc<Notify>> {
        Some(c.sub.waker())
    }

    fn needs_primary(&self, c: &RedisConn) -> bool {
        c.sub.count() > 0 || c.blocked.is_some()
    }

    fn redirect(&self, _c: &mut RedisConn, primary: Option<&str>, out: &mut Vec<u8>) {
        let primary = primary.unwrap_or("unknown (no primary yet)");
        let msg = format!("READONLY You can't write against a read only replica. primary at {primary}");
        write_error(out, msg.as_bytes());
    }
}

impl Redis {
    /// A blocking command: `None` if it may be logged now (a key it waits
    /// on exists, or its arguments are wrong); otherwise the request is
    /// held (`Some(None)`: decode it again once woken) or, past its
    /// timeout, answered with a null array released like a read's reply.
    fn wait(
        &self,
        c: &mut RedisConn,
        argv: &[&[u8]],
        len: usize,
        node: &NodeView<'_, Kv>,
        op: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Option<Option<Request>> {
        let kv = node.machine();
        let now_ms = node.now_us() / 1000;
        let (keys, timeout_ms) = if is_blocking(command_name(argv).unwrap_or("")) {
            let wait = kv.blocking_wait(argv).filter(|_| !kv.blocking_ready(now_ms, argv));
            let Some((keys, timeout_ms)) = wait else {
                c.blocked = None;
                return None;
            };
            (keys, timeout_ms)
        } else {
            // XREAD / XREADGROUP with BLOCK, `$` pinned at the first try.
            let pinned = c.pinned.take();
            let waits = {
                let slices: Option<Vec<&[u8]>> = pinned.as_ref().map(|p| p.iter().map(Vec::as_slice).collect());
                kv.stream_wait(now_ms, slices.as_deref().unwrap_or(argv))
                    .filter(|w| !w.ready)
                    .map(|w| (w.keys.iter().map(|k| k.to_vec()).collect::<Vec<_>>(), w.timeout_ms, w.resolved))
            };
            let Some((keys, timeout_ms, resolved)) = waits else {
                c.blocked = None;
                // Ready: the read runs with `$` as it was pinned.
                c.pinned = pinned;
                return None;
            };
            c.pinned = Some(pinned.unwrap_or(resolved));
            return self.hold(c, &keys.iter().map(Vec::as_slice).collect::<Vec<_>>(), timeout_ms, argv, len, op, out);
        };
        self.hold(c, &keys, timeout_ms, argv, len, op, out)
    }

    /// Holds the request while it waits on `keys`, or answers its timeout.
    #[allow(clippy::too_many_arguments)]
    fn hold(
        &self,
        c: &mut RedisConn,
        keys: &[&[u8]],
        timeout_ms: u64,
        argv: &[&[u8]],
        len: usize,
        op: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Option<Option<Request>> {
        op.clear();
        let blocked = c
            .blocked
            .get_or_insert_with(|| Blocked::new(c.session.client_id(), self.waiting.clone(), &c.sub.waker(), keys, timeout_ms));
        if !blocked.timed_out() {
            return Some(None);
        }
        c.blocked = None;
        c.pinned = None;
        understudy_kv::resp::write_null_array(out);
        c.session.expect_reply(argv);
        Some(Some(Request::new(len, Access::Status)))
    }

    /// SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE and PUBSUB, their
    /// arguments checked by the session.
    fn pubsub(&self, c: &mut RedisConn, argv: &[&[u8]], out: &mut Vec<u8>) {
        let resp3 = c.session.resp3();
        match command_name(argv) {
            Some("subscribe") => c.sub.subscribe(false, &argv[1..], resp3, out),
            Some("psubscribe") => c.sub.subscribe(true, &argv[1..], resp3, out),
            Some("unsubscribe") => c.sub.unsubscribe(false, &argv[1..], resp3, out),
            Some("punsubscribe") => c.sub.unsubscribe(true, &argv[1..], resp3, out),
            _ => pubsub_command(&self.registry.borrow(), argv, out),
        }
    }
}

/// A RESP2 connection with subscriptions takes only the subscription
/// commands, PING (answered as a message-shaped array), QUIT and RESET
/// (which also unsubscribes); anything else is refused as by Redis.
/// `None`: dispatch as usual.
fn subscribe_mode(c: &mut RedisConn, argv: &[&[u8]], len: usize, out: &mut Vec<u8>) -> Option<Request> {
    let name = command_name(argv);
    if name == Some("reset") {
        c.sub.clear();
    }
    if c.session.resp3() {
        return None;
    }
    match name {
        Some("subscribe" | "unsubscribe" | "psubscribe" | "punsubscribe" | "quit" | "reset") => None,
        Some("ping") if argv.len() <= 2 => {
            understudy_kv::resp::write_array_len(out, 2);
            write_bulk(out, b"pong");
            write_bulk(out, argv.get(1).copied().unwrap_or_default());
            Some(Request::new(len, Access::Local))
        }
        Some("ping") => None,
        _ => {
            out.extend_from_slice(&subscribe_mode_error(argv[0]));
            Some(Request::new(len, Access::Local))
        }
    }
}
