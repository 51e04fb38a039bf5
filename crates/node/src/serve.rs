//! Serving a [`FrontEnd`]'s clients: one task per connection, replies
//! queued at the output gate in arrival order, and the machine's
//! housekeeping on the primary.
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

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use understudy_core::Seq;

use crate::machine::App;
use crate::replica::Replica;
use crate::service::{Access, FrontEnd, NodeView};

type Shared<F> = Rc<RefCell<Replica<App<<F as FrontEnd>::Machine>>>>;

/// Replies waiting at the output gate, oldest first.
#[derive(Default)]
struct Gated {
    buf: Vec<u8>,
    /// (tag, end offset in `buf`) of each reply.
    marks: VecDeque<(Seq, usize)>,
    /// Bytes of `buf` already written.
    sent: usize,
    last_tag: Seq,
    /// A request asked to close: close once every queued reply is written.
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

/// What a request may carry beyond `--request-bytes-max` of payload (its
/// framing: a command's header, an HTTP request's head).
const REQUEST_HEAD_SLACK: usize = 64 << 10;

/// A connection id: unique within this process (Redis's CLIENT ID).
fn next_client_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Accepts clients on `listener` for as long as the node runs; with
/// `tls`, a connection speaks TLS only, its handshake done in its own task
/// (a slow or silent client holds up no other).
pub(crate) async fn serve<F: FrontEnd>(rc: Shared<F>, front: Rc<F>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                {
                    let mut r = rc.borrow_mut();
                    r.stats.connections_received += 1;
                    r.stats.clients_connected += 1;
                }
                let (rc, front) = (rc.clone(), front.clone());
                match &tls {
                    None => {
                        tokio::task::spawn_local(async move {
                            let mut stream = stream;
                            let ends = crate::service::Peer::of(&stream);
                            client(rc.clone(), front, &mut stream, ends).await;
                            rc.borrow_mut().stats.clients_connected -= 1;
                        });
                    }
                    Some(tls) => {
                        let tls = tls.clone();
                        tokio::task::spawn_local(async move {
                            let ends = crate::service::Peer::of(&stream);
                            if let Some(mut stream) = handshake(&tls, stream, peer).await {
                                client(rc.clone(), front, &mut stream, ends).await;
                            }
                            rc.borrow_mut().stats.clients_connected -= 1;
                        });
                    }
                }
            }
            Err(e) => {
                log::warn!("accepting a client: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The first byte of a TLS connection: a handshake record (a ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a client that speaks plain RESP to the TLS port is told.
const PLAIN_TO_TLS: &[u8] = b"-ERR this port speaks TLS only: connect with TLS (redis-cli --tls, redis-py ssl=True)\r\n";

/// A client's TLS handshake on the client port, at most
/// [`HANDSHAKE_TIMEOUT`](crate::tls::HANDSHAKE_TIMEOUT); None, logged
/// with the peer's address, if it fails. A connection closed before it
/// sent anything (a probe: `understudy status`, a sentinel, a load
/// balancer's check) is logged at debug level only.
async fn handshake(tls: &TlsAcceptor, stream: TcpStream, peer: std::net::SocketAddr) -> Option<TlsStream<TcpStream>> {
    enum Failed {
        Silent,
        Plain,
        Tls(std::io::Error),
    }
    let attempt = async {
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) | Err(_) => return Err(Failed::Silent),
            Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => {
                refuse_plain(stream).await;
                return Err(Failed::Plain);
            }
            Ok(_) => {}
        }
        tls.accept(stream).await.map_err(Failed::Tls)
    };
    let timeout = crate::tls::HANDSHAKE_TIMEOUT;
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(Failed::Silent)) => {
            log::debug!("client {peer}: closed before its TLS handshake");
            None
        }
        Ok(Err(Failed::Plain)) => {
            log::info!("client {peer}: spoke plain text to the TLS client port (a client without TLS?); told it so and closed the connection");
            None
        }
        Ok(Err(Failed::Tls(e))) => {
            log::info!("client {peer}: TLS handshake failed: {e}; connection closed");
            None
        }
        Err(_) => {
            log::warn!("client {peer}: no TLS handshake within {} s; connection closed", timeout.as_secs());
            None
        }
    }
}

/// Answers a plain-text client with [`PLAIN_TO_TLS`] and closes, after
/// reading what it sent (a close with unread bytes would reset the
/// connection before the client reads the error), a second and 64 KiB at
/// most.
async fn refuse_plain(mut stream: TcpStream) {
    if stream.write_all(PLAIN_TO_TLS).await.is_err() || stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut left = 64usize << 10;
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// Serves one client connection: plain TCP or TLS, the same code
/// monomorphized for each (a `&mut TcpStream` reads and writes the socket
/// directly, as its borrowed halves did). `peer`: the socket's ends, taken
/// before a TLS handshake wrapped it.
async fn client<F: FrontEnd, S: AsyncRead + AsyncWrite + Unpin>(
    rc: Shared<F>,
    front: Rc<F>,
    stream: &mut S,
    peer: Option<crate::service::Peer>,
) {
    let mut inbuf: Vec<u8> = Vec::with_capacity(16 << 10);
    let mut conn = front.open(next_client_id());
    if let Some(peer) = &peer {
        front.connected(&mut conn, peer);
    }
    let mut op = Vec::new();
    let mut gated = Gated::default();
    let mut clock = crate::metrics::GateClock::default();
    let (wakers, pending_max, request_max) = {
        let r = rc.borrow();
        (r.io.wakers.clone(), r.opts.client_pending_bytes_max, r.opts.request_bytes_max)
    };
    let pushed = front.push_waker(&conn);
    loop {
        let gate_wait = wakers.gate.notified();
        let intake_wait = wakers.intake.notified();
        let push_wait = pushed.as_ref().map(|n| n.notified());
        // Output other connections pushed here joins the queue now, behind
        // the replies already queued and before those of later requests.
        match front.take_pushed(&mut conn, &mut gated.buf) {
            Ok(None) => {}
            Ok(Some(tag)) => {
                gated.mark(tag);
                clock.queued(1);
            }
            Err(why) => {
                log::warn!("closing a client connection: {why}");
                return;
            }
        }
        if front.held(&conn) && !inbuf.is_empty() {
            // Woken (or timed out): the held request may go now.
            let held = gated.marks.len();
            let mut r = rc.borrow_mut();
            process(&mut r, &*front, &mut conn, &mut inbuf, &mut op, &mut gated);
            clock.queued(gated.marks.len() - held);
            r.kick_barrier();
        }
        let needs_primary = front.needs_primary(&conn);
        let wake_at = front.wake_at(&conn).map(tokio::time::Instant::from_std);
        if needs_primary && !rc.borrow().core.is_primary() {
            // A subscriber of a node that is no longer the primary would
            // wait for ever: closing tells its client to find the primary.
            return;
        }
        // Write what the gate lets out.
        let upto = rc.borrow().core.release_upto();
        let held = gated.marks.len();
        let end = gated.releasable(upto);
        clock.released(held - gated.marks.len());
        if end > gated.sent {
            // The flush is a no-op on plain TCP; TLS may hold the last
            // record until flushed.
            if stream.write_all(&gated.buf[gated.sent..end]).await.is_err() || stream.flush().await.is_err() {
                return;
            }
            rc.borrow_mut().stats.client_bytes_out += (end - gated.sent) as u64;
            gated.sent = end;
            if gated.marks.is_empty() {
                gated.buf.clear();
                gated.sent = 0;
            }
            continue;
        }
        if gated.closing && !gated.unreleased() {
            let _ = stream.shutdown().await;
            return;
        }
        let open = {
            let r = rc.borrow();
            !r.core.is_primary() || r.intake_open()
        };
        let can_read = open && gated.held_bytes() < pending_max && !gated.closing;
        tokio::select! {
            n = stream.read_buf(&mut inbuf), if can_read => {
                let n = match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let held = gated.marks.len();
                let mut r = rc.borrow_mut();
                r.stats.client_bytes_in += n as u64;
                process(&mut r, &*front, &mut conn, &mut inbuf, &mut op, &mut gated);
                if !gated.closing && inbuf.len() > request_max.saturating_add(REQUEST_HEAD_SLACK) {
                    // A front end that never finds the end of a request must
                    // not make the node buffer without bound.
                    log::warn!("closing a client connection: a request exceeds --request-bytes-max ({request_max} bytes)");
                    return;
                }
                clock.queued(gated.marks.len() - held);
                r.kick_barrier();
            }
            _ = gate_wait, if gated.unreleased() => {}
            _ = intake_wait, if !open || needs_primary => {}
            Some(()) = async { match push_wait { Some(w) => { w.await; Some(()) } None => None } }, if pushed.is_some() => {}
            Some(()) = async { match wake_at { Some(t) => { tokio::time::sleep_until(t).await; Some(()) } None => None } }, if wake_at.is_some() => {}
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

/// Executes every whole request in `inbuf` and queues the replies.
fn process<F: FrontEnd>(
    r: &mut Replica<App<F::Machine>>,
    front: &F,
    conn: &mut F::Conn,
    inbuf: &mut Vec<u8>,
    op: &mut Vec<u8>,
    gated: &mut Gated,
) {
    let mut consumed = 0;
    while consumed < inbuf.len() && !gated.closing {
        op.clear();
        let start = gated.buf.len();
        let decoded = front.decode(conn, &inbuf[consumed..], &NodeView::new(r), op, &mut gated.buf);
        let Some(req) = decoded else {
            debug_assert_eq!(gated.buf.len(), start, "a front end replied to a request it did not decode");
            break;
        };
        assert!(
            req.len > 0 && consumed + req.len <= inbuf.len(),
            "a front end took {} of {} bytes",
            req.len,
            inbuf.len() - consumed
        );
        consumed += req.len;
        r.stats.requests += 1;
        let primary = r.core.is_primary();
        debug_assert!(
            matches!(req.access, Access::Local | Access::Status) || gated.buf.len() == start,
            "a front end wrote a reply for a {:?} request",
            req.access
        );
        let tag = match req.access {
            Access::Write | Access::Read if !primary => {
                front.redirect(conn, r.primary_client.as_deref(), &mut gated.buf);
                0
            }
            Access::Write => {
                let seq = r.apply_write(op, &mut gated.buf);
                front.written(conn, seq);
                seq
            }
            Access::Read => r.read(op, &mut gated.buf),
            Access::Local => gated.last_tag,
            Access::Status if primary => r.core.read_tag(),
            Access::Status => 0,
        };
        front.encode(conn, &mut gated.buf, start);
        gated.mark(tag);
        gated.closing = req.close;
    }
    inbuf.drain(..consumed);
}

/// The machine's housekeeping (`StateMachine::housekeeping`): every 100 ms
/// on the primary, logged like a client's write, so both replicas change
/// the same state at the same point.
pub(crate) async fn housekeeping<F: FrontEnd>(rc: Shared<F>) {
    let mut iv = tokio::time::interval(Duration::from_millis(100));
    let mut reply = Vec::new();
    loop {
        iv.tick().await;
        let mut r = rc.borrow_mut();
        if r.core.is_primary() && r.intake_open() {
            reply.clear();
            r.housekeeping(&mut reply);
        }
    }
}
