//! Joining a primary (backup side): open the logging channel, receive and
//! acknowledge entries, load the snapshot from a second connection in a
//! thread, and replay entries in slices.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use understudy_core::{ConnId, Event, Seq, SnapshotError};
use understudy_wire::frame::Kind;
use understudy_wire::handshake::{Handshake, HandshakeError};
use understudy_wire::msg::{Heartbeat, Purpose, Reject, RejectCode, SnapshotBegin, SnapshotChunk, SnapshotEnd};

use crate::exec::validate;
use crate::framed::{handshake, ChanError, FrameReader};
use crate::listen::{my_hello, HANDSHAKE_TIMEOUT};
use crate::machine::Machine;
use crate::replica::{feed, pump, Factory, Replica};
use crate::writer::spawn_writer;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub fn spawn_join<M: Machine>(rc: Rc<RefCell<Replica<M>>>, repl: String, epoch: u64, gen: u64) {
    tokio::task::spawn_local(join(rc, repl, epoch, gen));
}

/// Connects and authenticates with `purpose`.
async fn open<M: Machine>(
    rc: &Rc<RefCell<Replica<M>>>,
    repl: &str,
    epoch: u64,
    purpose: Purpose,
) -> Result<(TcpStream, FrameReader, understudy_wire::handshake::Peer), ChanError> {
    let mut stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(repl)).await {
        Ok(s) => s?,
        Err(_) => return Err(ChanError::Timeout(CONNECT_TIMEOUT)),
    };
    stream.set_nodelay(true)?;
    let (hs, first, max) = {
        let r = rc.borrow();
        let (hs, first) = Handshake::initiator(&r.opts.secret, my_hello(&r, purpose), epoch);
        (hs, first, r.opts.frame_bytes_max)
    };
    let mut reader = FrameReader::new(max);
    let peer = handshake(&mut stream, &mut reader, hs, first, HANDSHAKE_TIMEOUT).await?;
    Ok((stream, reader, peer))
}

async fn join<M: Machine>(rc: Rc<RefCell<Replica<M>>>, repl: String, epoch: u64, gen: u64) {
    let me = rc.borrow().opts.node.clone();
    let attempt = async {
        let (mut stream, mut reader, peer) = open(&rc, &repl, epoch, Purpose::Join).await?;
        let limit = Duration::from_secs(10);
        let (h, payload) =
            tokio::time::timeout(limit, reader.read_frame(&mut stream)).await.map_err(|_| ChanError::Timeout(limit))??;
        match h.kind {
            Kind::JoinAccepted => Ok((stream, reader, peer, h.seq)),
            Kind::Reject => Err(ChanError::Handshake(HandshakeError::Rejected(Reject::decode(&payload)?))),
            k => Err(ChanError::Protocol(format!("expected JoinAccepted, got {k:?}"))),
        }
    };
    let (stream, reader, peer, snapshot_seq) = match attempt.await {
        Ok(x) => x,
        Err(e) => {
            let (code, peer_epoch) = match &e {
                ChanError::Handshake(HandshakeError::Rejected(r)) => (Some(r.code), None),
                // The primary's proof of the secret did not verify here.
                ChanError::Handshake(HandshakeError::AuthFailed) => (Some(RejectCode::AuthFailed), None),
                _ => (None, None),
            };
            // The core decides whether to wait (and says so) or stop.
            log::debug!("{me}: joining the primary at {repl} failed: {e}");
            feed(&rc, Event::JoinFailed { reason: e.to_string(), code, peer_epoch });
            return;
        }
    };
    if rc.borrow().join_gen != gen {
        return;
    }
    let primary = peer.hello.node.clone();
    log::info!("{me}: joined primary {primary:?} (epoch {}) at {repl}; loading its snapshot at seq {snapshot_seq}", peer.epoch);
    let (rd, wr) = stream.into_split();
    let conn = rc.borrow_mut().new_conn(primary.clone(), peer.hello.incarnation).0;
    spawn_writer(rc.clone(), conn, wr);
    feed(&rc, Event::Joined { conn, primary, epoch: peer.epoch, snapshot_seq });
    tokio::task::spawn_local(receive_snapshot(rc.clone(), repl, peer.epoch, snapshot_seq, gen, conn));
    // Not tied to the connection: when the channel closes, what was received
    // must still be executed before this node may go live. The task ends by
    // itself once the queue is drained without a channel, or on a reset.
    tokio::task::spawn_local(execute(rc.clone(), conn, gen));
    let me_task = tokio::task::spawn_local(read_entries(rc.clone(), conn, rd, reader));
    rc.borrow_mut().add_task(conn, me_task.abort_handle());
}

/// Backup side of the logging channel: entries, heartbeats and the in-sync
/// notice in; an ack out after every read.
async fn read_entries<M: Machine>(
    rc: Rc<RefCell<Replica<M>>>,
    conn: ConnId,
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut reader: FrameReader,
) {
    let reason = loop {
        let bad = {
            let mut r = rc.borrow_mut();
            let bad = drain_frames(&mut r, conn, &mut reader);
            let now = r.now();
            r.core.poll(now);
            bad
        };
        // The ack first (it gates the primary's replies), then execution:
        // the writer is woken before the executor, so it runs first.
        pump(&rc);
        rc.borrow().exec_wake.notify_one();
        if let Some(b) = bad {
            break b;
        }
        if let Err(e) = reader.fill(&mut rd).await {
            break e.to_string();
        }
    };
    if rc.borrow().conns.contains_key(&conn) {
        log::warn!("{}: channel to primary closed: {reason}", rc.borrow().opts.node);
        feed(&rc, Event::ConnClosed { conn, reason });
        rc.borrow_mut().drop_conn(conn);
    }
}

fn drain_frames<M: Machine>(r: &mut Replica<M>, conn: ConnId, reader: &mut FrameReader) -> Option<String> {
    let now = r.now();
    loop {
        let (h, p) = match reader.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => return None,
            Err(e) => return Some(format!("bad frame from the primary: {e}")),
        };
        let ev = match h.kind {
            Kind::Entries => match validate(h.seq, p) {
                Ok(last) => {
                    r.core.handle(now, Event::Entries { conn, epoch: h.epoch, first: h.seq, last });
                    if r.core.received() != last || r.core.channel() != Some(conn) {
                        // The core refused them (a gap, another epoch): they
                        // must never reach the machine.
                        return Some(format!("entries {}..={last} refused by the protocol", h.seq));
                    }
                    r.exec.push(h.seq, p.to_vec());
                    if r.exec.bytes > r.opts.join_buffer_bytes {
                        return Some(format!(
                            "{} bytes of entries wait for execution, more than --join-buffer-bytes ({})",
                            r.exec.bytes, r.opts.join_buffer_bytes
                        ));
                    }
                    continue;
                }
                Err(e) => return Some(format!("bad entries from the primary: {e}")),
            },
            Kind::Heartbeat => match Heartbeat::decode(p) {
                Ok(hb) => Event::Heartbeat { conn, epoch: h.epoch, last_seq: hb.last_seq },
                Err(e) => return Some(format!("bad heartbeat: {e}")),
            },
            Kind::InSync => {
                log::info!("{}: in sync with the primary: this node may take over if it fails", r.opts.node);
                Event::InSync { conn, epoch: h.epoch }
            }
            Kind::Handover => {
                log::info!("{}: the primary hands over (planned switchover): taking over", r.opts.node);
                Event::Handover { conn, epoch: h.epoch }
            }
            Kind::Reject => {
                return Some(Reject::decode(p).map_or_else(|e| e.to_string(), |r| format!("primary refused: {}", r.message)))
            }
            k => return Some(format!("unexpected {k:?} frame from the primary")),
        };
        r.core.handle(now, ev);
    }
}

/// Replays received entries in slices, so acks and heartbeats keep flowing.
async fn execute<M: Machine>(rc: Rc<RefCell<Replica<M>>>, conn: ConnId, gen: u64) {
    const SLICE: usize = 2048;
    loop {
        let wake = {
            let mut r = rc.borrow_mut();
            if r.join_gen != gen || !r.conns.contains_key(&conn) && r.exec.is_empty() {
                return;
            }
            let loaded = r.snapshot_loaded;
            if loaded && !r.exec.is_empty() {
                let Replica { exec, machine, record, .. } = &mut *r;
                match machine.replay(exec, &mut record.floor, SLICE) {
                    Ok(Some(upto)) => {
                        let now = r.now();
                        r.core.handle(now, Event::Executed { upto });
                    }
                    Ok(None) => {}
                    Err(d) => r.halt(&d.to_string()),
                }
                None
            } else {
                Some(r.exec_wake.clone())
            }
        };
        pump(&rc);
        match wake {
            Some(w) => w.notified().await,
            None => tokio::task::yield_now().await,
        }
    }
}

/// Loads the snapshot from a second connection. Restoring is CPU work, so
/// a thread does it into a fresh machine that replaces ours when complete.
async fn receive_snapshot<M: Machine>(rc: Rc<RefCell<Replica<M>>>, repl: String, epoch: u64, seq: Seq, gen: u64, conn: ConnId) {
    let me = rc.borrow().opts.node.clone();
    match load_snapshot(&rc, &repl, epoch, seq).await {
        Ok((machine, bytes, took)) => {
            let mut r = rc.borrow_mut();
            if r.join_gen != gen {
                return;
            }
            log::info!("{me}: snapshot at seq {seq} loaded: {} in {took:.2?}", crate::progress::human(bytes));
            let applied = r.machine.install(machine, seq);
            r.snapshot_loaded = true;
            r.stats.snapshot_bytes_received += bytes;
            if applied {
                let now = r.now();
                r.core.handle(now, Event::SnapshotLoaded { seq });
            }
            r.exec_wake.notify_one();
            drop(r);
            pump(&rc);
        }
        Err(e) => {
            log::warn!("{me}: loading the snapshot failed: {e}; starting the join over");
            if rc.borrow().join_gen == gen && rc.borrow().conns.contains_key(&conn) {
                feed(&rc, Event::ConnClosed { conn, reason: format!("snapshot failed: {e}") });
                rc.borrow_mut().drop_conn(conn);
            }
        }
    }
}

async fn load_snapshot<M: Machine>(
    rc: &Rc<RefCell<Replica<M>>>,
    repl: &str,
    epoch: u64,
    seq: Seq,
) -> Result<(M, u64, Duration), ChanError> {
    let start = Instant::now();
    let (mut stream, mut reader, _) = open(rc, repl, epoch, Purpose::Snapshot).await?;
    let (h, p) = reader.read_frame(&mut stream).await?;
    if h.kind != Kind::SnapshotBegin || h.seq != seq {
        return Err(ChanError::Protocol(format!("expected the snapshot at seq {seq}, got {:?} at seq {}", h.kind, h.seq)));
    }
    let hint = SnapshotBegin::decode(&p)?.bytes_hint;
    let (factory, me): (Factory<M>, String) = {
        let r = rc.borrow();
        (r.factory.clone(), r.opts.node.clone())
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<Result<M, SnapshotError>>();
    std::thread::Builder::new()
        .name("snapshot-load".into())
        .spawn(move || {
            let mut m = factory();
            let mut result = Ok(());
            while let Some(chunk) = rx.blocking_recv() {
                if result.is_ok() {
                    result = m.restore_chunk(&chunk);
                }
            }
            let _ = done_tx.send(result.and_then(|_| m.restore_finish()).map(|_| m));
        })
        .expect("spawn snapshot thread");
    let mut progress = crate::progress::Progress::new(format!("{me}: snapshot from the primary"), hint);
    let (mut chunks, mut bytes) = (0u32, 0u64);
    // A stream that stops making progress is given up (the join starts
    // over), or the joiner would wait forever beside a healthy channel.
    let stall = Duration::from_secs(30);
    loop {
        let (h, p) =
            tokio::time::timeout(stall, reader.read_frame(&mut stream)).await.map_err(|_| ChanError::Timeout(stall))??;
        match h.kind {
            Kind::SnapshotChunk => {
                let c = SnapshotChunk::decode(&p)?;
                if c.index != chunks {
                    return Err(ChanError::Protocol(format!("snapshot chunk {} arrived where {chunks} was expected", c.index)));
                }
                chunks += 1;
                bytes += c.data.len() as u64;
                progress.add(p.len() as u64);
                if tx.send(c.data.to_vec()).await.is_err() {
                    break;
                }
            }
            Kind::SnapshotEnd => {
                let end = SnapshotEnd::decode(&p)?;
                if end.chunks != chunks || end.bytes != bytes {
                    return Err(ChanError::Protocol(format!(
                        "snapshot incomplete: got {chunks} chunks / {bytes} bytes, the primary sent {} / {}",
                        end.chunks, end.bytes
                    )));
                }
                break;
            }
            k => return Err(ChanError::Protocol(format!("unexpected {k:?} in a snapshot stream"))),
        }
    }
    drop(tx);
    let machine = done_rx
        .await
        .map_err(|_| ChanError::Protocol("snapshot loader thread died".into()))?
        .map_err(|e| ChanError::Protocol(e.to_string()))?;
    Ok((machine, bytes, start.elapsed()))
}
