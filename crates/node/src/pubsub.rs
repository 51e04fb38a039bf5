//! Pub/sub for the key-value service: SUBSCRIBE, PSUBSCRIBE, their
//! UNSUBSCRIBEs, PUBLISH and PUBSUB, with Redis 7.0's replies in RESP2
//! and RESP3 (push frames).
//!
//! A message is an output. PUBLISH is logged like a write (its entry
//! changes no state) and each subscriber's copy is queued on that
//! subscriber's connection tagged with the entry's seq, so the output gate
//! lets it out only once the backup has the entry — the same rule as any
//! reply. Subscriptions live on the primary only: a backup redirects
//! SUBSCRIBE, and a subscriber's connection is closed when its node stops
//! being the primary, so the client reconnects (through Sentinel) and
//! subscribes again. Messages published meanwhile are not delivered to it,
//! as with Redis.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;

use tokio::sync::Notify;
use understudy_core::Seq;
use understudy_kv::glob_match;
use understudy_kv::resp::{write_array_len, write_bulk, write_int, write_null, write_simple};

/// Bytes of undelivered messages a subscriber may hold before its
/// connection is closed: Redis's `client-output-buffer-limit pubsub` hard
/// limit.
pub(crate) const SUBSCRIBER_BYTES_MAX: usize = 32 << 20;

/// One message waiting for a subscriber's connection.
struct Msg {
    seq: Seq,
    pattern: Option<Rc<[u8]>>,
    channel: Rc<[u8]>,
    payload: Rc<[u8]>,
}

/// A subscriber connection's queue of messages, filled by PUBLISH on any
/// connection and drained by the subscriber's own task.
#[derive(Default)]
pub(crate) struct Inbox {
    queue: RefCell<VecDeque<Msg>>,
    bytes: Cell<usize>,
    /// Messages were dropped: the queue passed [`SUBSCRIBER_BYTES_MAX`].
    overflowed: Cell<bool>,
    notify: Rc<Notify>,
}

impl Inbox {
    fn push(&self, m: Msg) {
        let bytes = self.bytes.get() + m.channel.len() + m.payload.len() + m.pattern.as_ref().map_or(0, |p| p.len());
        if bytes > SUBSCRIBER_BYTES_MAX {
            self.overflowed.set(true);
        } else {
            self.bytes.set(bytes);
            self.queue.borrow_mut().push_back(m);
        }
        self.notify.notify_one();
    }
}

/// Who is subscribed to what, on this node. Subscribers are kept by
/// connection id, so deliveries go out in the order clients subscribed.
#[derive(Default)]
pub(crate) struct Registry {
    channels: HashMap<Box<[u8]>, BTreeMap<u64, Rc<Inbox>>>,
    patterns: HashMap<Box<[u8]>, BTreeMap<u64, Rc<Inbox>>>,
}

impl Registry {
    /// Queues `payload` for every subscriber of `channel` (then for every
    /// matching pattern's), tagged `seq`; returns how many were queued
    /// (a connection subscribed twice counts twice, as in Redis).
    pub(crate) fn publish(&self, channel: &[u8], payload: &[u8], seq: Seq) -> usize {
        let (channel_rc, payload_rc): (Rc<[u8]>, Rc<[u8]>) = (channel.into(), payload.into());
        let mut n = 0;
        for inbox in self.channels.get(channel).into_iter().flat_map(|s| s.values()) {
            inbox.push(Msg { seq, pattern: None, channel: channel_rc.clone(), payload: payload_rc.clone() });
            n += 1;
        }
        for (pattern, subs) in &self.patterns {
            if !glob_match(pattern, channel, false) {
                continue;
            }
            let pattern: Rc<[u8]> = pattern[..].into();
            for inbox in subs.values() {
                let m = Msg { seq, pattern: Some(pattern.clone()), channel: channel_rc.clone(), payload: payload_rc.clone() };
                inbox.push(m);
                n += 1;
            }
        }
        n
    }

    fn table(&mut self, pattern: bool) -> &mut HashMap<Box<[u8]>, BTreeMap<u64, Rc<Inbox>>> {
        if pattern {
            &mut self.patterns
        } else {
            &mut self.channels
        }
    }
}

/// One connection's subscriptions; dropping it unsubscribes everything.
pub(crate) struct Subscriber {
    id: u64,
    registry: Rc<RefCell<Registry>>,
    inbox: Rc<Inbox>,
    /// In the order subscribed (UNSUBSCRIBE without arguments answers in it).
    channels: Vec<Box<[u8]>>,
    patterns: Vec<Box<[u8]>>,
}

impl Subscriber {
    pub(crate) fn new(id: u64, registry: Rc<RefCell<Registry>>) -> Subscriber {
        Subscriber { id, registry, inbox: Rc::default(), channels: Vec::new(), patterns: Vec::new() }
    }

    /// Woken when a message is queued for this connection.
    pub(crate) fn waker(&self) -> Rc<Notify> {
        self.inbox.notify.clone()
    }

    /// Whether messages were dropped because the connection did not take
    /// them (it must then be closed, as Redis closes such a subscriber).
    pub(crate) fn overflowed(&self) -> bool {
        self.inbox.overflowed.get()
    }

    /// Subscriptions held (channels and patterns): Redis's subscribe mode.
    pub(crate) fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Channels and patterns subscribed to (CLIENT LIST's `sub`, `psub`).
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.channels.len(), self.patterns.len())
    }

    /// Appends the queued messages to `out` in the connection's protocol;
    /// returns the highest seq among them (the tag they go out under:
    /// releasing an earlier message later than its own seq is safe).
    pub(crate) fn drain(&self, resp3: bool, out: &mut Vec<u8>) -> Option<Seq> {
        let mut queue = self.inbox.queue.borrow_mut();
        let mut tag = None;
        for m in queue.drain(..) {
            debug_assert!(tag.is_none_or(|t| t <= m.seq), "messages queue in log order");
            tag = Some(m.seq);
            match &m.pattern {
                None => {
                    push_header(out, resp3, 3);
                    write_bulk(out, b"message");
                }
                Some(p) => {
                    push_header(out, resp3, 4);
                    write_bulk(out, b"pmessage");
                    write_bulk(out, p);
                }
            }
            write_bulk(out, &m.channel);
            write_bulk(out, &m.payload);
        }
        self.inbox.bytes.set(0);
        tag
    }

    /// SUBSCRIBE / PSUBSCRIBE `names`: one confirmation each, with the
    /// connection's subscription count after it.
    pub(crate) fn subscribe(&mut self, pattern: bool, names: &[&[u8]], resp3: bool, out: &mut Vec<u8>) {
        for name in names {
            let mine = if pattern { &mut self.patterns } else { &mut self.channels };
            if !mine.iter().any(|c| &c[..] == *name) {
                mine.push((*name).into());
                let mut reg = self.registry.borrow_mut();
                reg.table(pattern).entry((*name).into()).or_default().insert(self.id, self.inbox.clone());
            }
            self.confirm(if pattern { "psubscribe" } else { "subscribe" }, Some(*name), resp3, out);
        }
    }

    /// UNSUBSCRIBE / PUNSUBSCRIBE `names`, or every subscription of that
    /// kind when `names` is empty (a null name if there were none).
    pub(crate) fn unsubscribe(&mut self, pattern: bool, names: &[&[u8]], resp3: bool, out: &mut Vec<u8>) {
        let kind = if pattern { "punsubscribe" } else { "unsubscribe" };
        let all: Vec<Box<[u8]>>;
        let names: Vec<&[u8]> = if names.is_empty() {
            all = if pattern { self.patterns.clone() } else { self.channels.clone() };
            if all.is_empty() {
                self.confirm(kind, None, resp3, out);
                return;
            }
            all.iter().map(|n| &n[..]).collect()
        } else {
            names.to_vec()
        };
        for name in names {
            self.forget(pattern, name);
            self.confirm(kind, Some(name), resp3, out);
        }
    }

    /// Drops every subscription (RESET, and the connection closing).
    pub(crate) fn clear(&mut self) {
        for name in std::mem::take(&mut self.channels) {
            self.unregister(false, &name);
        }
        for name in std::mem::take(&mut self.patterns) {
            self.unregister(true, &name);
        }
        self.inbox.queue.borrow_mut().clear();
        self.inbox.bytes.set(0);
    }

    fn forget(&mut self, pattern: bool, name: &[u8]) {
        let mine = if pattern { &mut self.patterns } else { &mut self.channels };
        if let Some(i) = mine.iter().position(|c| &c[..] == name) {
            mine.remove(i);
            self.unregister(pattern, name);
        }
    }

    fn unregister(&self, pattern: bool, name: &[u8]) {
        let mut reg = self.registry.borrow_mut();
        let table = reg.table(pattern);
        if let Some(subs) = table.get_mut(name) {
            subs.remove(&self.id);
            if subs.is_empty() {
                table.remove(name);
            }
        }
    }

    fn confirm(&self, kind: &str, name: Option<&[u8]>, resp3: bool, out: &mut Vec<u8>) {
        push_header(out, resp3, 3);
        write_bulk(out, kind.as_bytes());
        match name {
            Some(n) => write_bulk(out, n),
            None if resp3 => out.extend_from_slice(b"_\r\n"),
            None => write_null(out),
        }
        write_int(out, self.count() as i64);
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.clear();
    }
}

fn push_header(out: &mut Vec<u8>, resp3: bool, n: usize) {
    if resp3 {
        out.extend_from_slice(format!(">{n}\r\n").as_bytes());
    } else {
        write_array_len(out, n);
    }
}

/// PUBSUB CHANNELS [pattern] | NUMSUB [channel…] | NUMPAT | HELP
/// (subcommand and arity checked by the session).
pub(crate) fn pubsub_command(reg: &Registry, argv: &[&[u8]], out: &mut Vec<u8>) {
    let sub = argv[1].to_ascii_lowercase();
    match &sub[..] {
        b"channels" => {
            let mut names: Vec<&[u8]> =
                reg.channels.keys().map(|c| &c[..]).filter(|c| argv.get(2).is_none_or(|p| glob_match(p, c, false))).collect();
            names.sort_unstable();
            write_array_len(out, names.len());
            names.into_iter().for_each(|c| write_bulk(out, c));
        }
        b"numsub" => {
            write_array_len(out, (argv.len() - 2) * 2);
            for c in &argv[2..] {
                write_bulk(out, c);
                write_int(out, reg.channels.get(*c).map_or(0, BTreeMap::len) as i64);
            }
        }
        b"numpat" => write_int(out, reg.patterns.len() as i64),
        _ => {
            let lines = [
                "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CHANNELS [<pattern>]",
                "    Return the currently active channels matching a <pattern> (default: '*').",
                "NUMPAT",
                "    Return number of subscriptions to patterns.",
                "NUMSUB [<channel> ...]",
                "    Return the number of subscribers for the specified channels, excluding",
                "    pattern subscriptions(default: no channels).",
                "HELP",
                "    Prints this help.",
            ];
            write_array_len(out, lines.len());
            lines.iter().for_each(|l| write_simple(out, l.as_bytes()));
        }
    }
}

/// Redis's error for a command a RESP2 connection in subscribe mode may
/// not send.
pub(crate) fn subscribe_mode_error(name: &[u8]) -> Vec<u8> {
    let mut msg = b"-ERR Can't execute '".to_vec();
    msg.extend(name.iter().map(u8::to_ascii_lowercase));
    msg.extend_from_slice(b"': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n");
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_reaches_channel_then_pattern_subscribers_and_drop_unsubscribes() {
        let reg = Rc::new(RefCell::new(Registry::default()));
        let (mut a, mut b) = (Subscriber::new(1, reg.clone()), Subscriber::new(2, reg.clone()));
        let mut out = Vec::new();
        a.subscribe(false, &[b"news", b"news"], false, &mut out);
        a.subscribe(true, &[b"n*"], false, &mut out);
        b.subscribe(true, &[b"x*"], true, &mut out);
        assert_eq!(a.count(), 2);
        assert_eq!(reg.borrow().publish(b"news", b"hi", 7), 2);
        assert_eq!(reg.borrow().publish(b"other", b"no", 8), 0);
        out.clear();
        assert_eq!(a.drain(false, &mut out), Some(7));
        assert_eq!(
            out,
            b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        );
        assert_eq!(b.drain(true, &mut out), None);
        drop(a);
        assert_eq!(reg.borrow().publish(b"news", b"hi", 9), 0, "a closed connection is unsubscribed");
        assert!(reg.borrow().channels.is_empty());
        b.unsubscribe(true, &[], true, &mut out);
        assert!(reg.borrow().patterns.is_empty());
    }
}
