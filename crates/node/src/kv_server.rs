//! The Redis-protocol front end of the key-value machine: one task per
//! client connection, replies queued at the output gate in arrival order.
//!
//! Every reply is tagged with a seq: a write's with the seq of its entry, a
//! read's with the tag the core hands out (the next seq while a backup
//! gates outputs), a reply that depends on no state with the tag before it.
//! Tags are non-decreasing per connection, so the releasable replies are a
//! prefix of the queue and go out with one write.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use understudy_core::Seq;
use understudy_kv::resp::{write_bulk, write_error, CommandParser};
use understudy_kv::session::{serves_on_backup, Dispatch, Session};
use understudy_kv::Kv;

use crate::ctx::wall_us;
use crate::machine::App;
use crate::replica::Replica;

/// Replies waiting at the output gate, oldest first.
#[derive(Default)]
struct Gated {
    buf: Vec<u8>,
    /// (tag, end offset in `buf`) of each reply.
    marks: VecDeque<(Seq, usize)>,
    /// Bytes of `buf` already written.
    sent: usize,
    last_tag: Seq,
    /// QUIT or a protocol error: close once every queued reply is written.
    closing: bool,
}

impl Gated {
    fn mark(&mut self, tag: Seq) {
        debug_assert!(tag >= self.last_tag || tag == 0, "reply tags go backwards on one connection");
        let tag = tag.max(self.last_tag);
        self.last_tag = tag;
        self.marks.push_back((tag, self.buf.len()));
    }

    /// End offset of the prefix whose tags are ≤ `upto`.
    fn releasable(&mut self, upto: Seq) -> usize {
        let mut end = self.sent;
        while let Some(&(tag, e)) = self.marks.front() {
            if tag > upto {
                break;
            }
            end = e;
            self.marks.pop_front();
        }
        end
    }

    fn unreleased(&self) -> bool {
        !self.marks.is_empty()
    }

    fn held_bytes(&self) -> usize {
        self.buf.len() - self.sent
    }
}

/// CLIENT ID: unique per connection within this process.
fn next_client_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub async fn serve(rc: Rc<RefCell<Replica<App<Kv>>>>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::task::spawn_local(client(rc.clone(), stream));
            }
            Err(e) => {
                log::warn!("accepting a client: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn client(rc: Rc<RefCell<Replica<App<Kv>>>>, mut stream: TcpStream) {
    let (mut rd, mut wr) = stream.split();
    let mut inbuf: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut session = Session::new(next_client_id());
    let mut parse = Parse::default();
    let mut gated = Gated::default();
    let mut clock = crate::metrics::GateClock::default();
    let (wakers, pending_max) = {
        let r = rc.borrow();
        // A transaction travels as one entry: bound it like a request.
        session.set_op_bytes_max(r.opts.request_bytes_max);
        (r.io.wakers.clone(), r.opts.client_pending_bytes_max)
    };
    loop {
        let gate_wait = wakers.gate.notified();
        let intake_wait = wakers.intake.notified();
        // Write what the gate lets out.
        let upto = rc.borrow().core.release_upto();
        let held = gated.marks.len();
        let end = gated.releasable(upto);
        clock.released(held - gated.marks.len());
        if end > gated.sent {
            if wr.write_all(&gated.buf[gated.sent..end]).await.is_err() {
                return;
            }
            gated.sent = end;
            if gated.marks.is_empty() {
                gated.buf.clear();
                gated.sent = 0;
            }
            continue;
        }
        if gated.closing && !gated.unreleased() {
            let _ = wr.shutdown().await;
            return;
        }
        let open = {
            let r = rc.borrow();
            !r.core.is_primary() || r.intake_open()
        };
        let can_read = open && gated.held_bytes() < pending_max && !gated.closing;
        tokio::select! {
            n = rd.read_buf(&mut inbuf), if can_read => {
                match n {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let held = gated.marks.len();
                let mut r = rc.borrow_mut();
                if let Err(fatal) = process(&mut r, &mut session, &mut parse, &mut inbuf, &mut gated) {
                    // Protocol error: reply, then close (as Redis does).
                    gated.buf.extend_from_slice(&fatal);
                    gated.mark(gated.last_tag);
                    gated.closing = true;
                }
                clock.queued(gated.marks.len() - held);
                r.kick_barrier();
            }
            _ = gate_wait, if gated.unreleased() => {}
            _ = intake_wait, if !open => {}
            else => {
                // Unreachable by construction (a closed intake, held replies
                // or a pending close always leaves a branch); close rather
                // than spin if that ever changes.
                log::warn!("client connection with nothing to wait for; closing it");
                return;
            }
        }
    }
}

/// A connection's parser state: a large command arriving in many reads is
/// scanned once, not from its start on every read.
#[derive(Default)]
struct Parse {
    parser: CommandParser,
    args: Vec<std::ops::Range<usize>>,
}

/// Executes every complete command in `inbuf`. Returns the error reply of a
/// protocol error, after which the connection closes.
fn process(
    r: &mut Replica<App<Kv>>,
    session: &mut Session,
    parse: &mut Parse,
    inbuf: &mut Vec<u8>,
    gated: &mut Gated,
) -> Result<(), Vec<u8>> {
    let Parse { parser, args } = parse;
    let mut argv: Vec<&[u8]> = Vec::with_capacity(8);
    let mut op = Vec::new();
    let mut consumed = 0;
    let max = r.opts.request_bytes_max;
    let result = loop {
        let n = match parser.parse(&inbuf[consumed..], max, args) {
            Ok(Some(n)) => n,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e.to_resp()),
        };
        let base = consumed;
        consumed += n;
        if args.is_empty() {
            continue;
        }
        argv.clear();
        argv.extend(args.iter().map(|a| &inbuf[base + a.start..base + a.end]));
        if !command(r, session, &argv, &mut op, gated) {
            break Ok(());
        }
    };
    inbuf.drain(..consumed);
    result
}

/// Executes one command; returns false after QUIT.
fn command(r: &mut Replica<App<Kv>>, session: &mut Session, argv: &[&[u8]], op: &mut Vec<u8>, gated: &mut Gated) -> bool {
    if !r.core.is_primary() && !serves_on_backup(argv) {
        let primary = r.primary_client.clone().unwrap_or_else(|| "unknown (no primary yet)".into());
        let msg = format!("READONLY You can't write against a read only replica. primary at {primary}");
        write_error(&mut gated.buf, msg.as_bytes());
        gated.mark(0);
        return true;
    }
    op.clear();
    let start = gated.buf.len();
    let (tag, close) = match session.dispatch(argv, op, &mut gated.buf) {
        Dispatch::Done => (gated.last_tag, false),
        Dispatch::Read => {
            let now_ms = wall_us().max(r.record.floor.0) / 1000;
            r.machine.sm.read(now_ms, argv, &mut gated.buf);
            (r.core.read_tag(), false)
        }
        Dispatch::Write => (r.apply_write(op, &mut gated.buf), false),
        Dispatch::Info => {
            let text = info(r, argv.get(1).copied());
            write_bulk(&mut gated.buf, text.as_bytes());
            (if r.core.is_primary() { r.core.read_tag() } else { 0 }, false)
        }
        Dispatch::Close => (gated.last_tag, true),
    };
    session.finish_reply(argv, &mut gated.buf, start);
    gated.mark(tag);
    if close {
        gated.closing = true;
        return false;
    }
    true
}

/// INFO, with a replication section that says what understudy knows.
fn info(r: &Replica<App<Kv>>, section: Option<&[u8]>) -> String {
    let s = r.core.status();
    let want = |name: &str| section.is_none_or(|x| x.eq_ignore_ascii_case(name.as_bytes()) || x.eq_ignore_ascii_case(b"all"));
    let mut t = String::new();
    if want("server") {
        t.push_str("# Server\r\nredis_version:7.0.15\r\nunderstudy_version:");
        t.push_str(env!("CARGO_PKG_VERSION"));
        t.push_str(&format!("\r\nunderstudy_node:{}\r\nunderstudy_cluster:{}\r\n\r\n", r.opts.node, r.opts.cluster));
    }
    if want("replication") {
        let redis_role = if r.core.is_primary() { "master" } else { "slave" };
        t.push_str(&format!(
            "# Replication\r\nrole:{redis_role}\r\nunderstudy_role:{}\r\nepoch:{}\r\nprotected:{}\r\npeer:{}\r\npeer_in_sync:{}\r\nlag:{}\r\nlast_seq:{}\r\nexecuted_seq:{}\r\nrelease_upto:{}\r\nlog_bytes:{}\r\nlog_entries:{}\r\nsnapshot_bytes_sent:{}\r\nsnapshot_bytes_received:{}\r\n\r\n",
            s.role.as_str(),
            s.epoch,
            u8::from(s.protected),
            s.peer.as_deref().unwrap_or(""),
            u8::from(s.peer_in_sync),
            s.lag,
            s.last_seq,
            s.executed,
            r.core.release_upto(),
            r.stats.log_bytes,
            r.stats.log_entries,
            r.stats.snapshot_bytes_sent,
            r.stats.snapshot_bytes_received,
        ));
    }
    if want("keyspace") {
        t.push_str("# Keyspace\r\n");
        r.machine.sm.info_keyspace(&mut t);
    }
    t
}
