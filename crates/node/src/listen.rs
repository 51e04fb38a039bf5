//! The logging-channel listener: authenticates every peer, then hands a
//! joiner to the protocol core (which accepts or refuses it) or attaches a
//! joiner's snapshot connection to the snapshot taken for it.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use understudy_core::ConnId;
use understudy_wire::frame::{encode_with, FrameHeader, Kind};
use understudy_wire::handshake::{Handshake, HandshakeError};
use understudy_wire::msg::{Heartbeat, Hello, Purpose, RejectCode};

use crate::channel::header;
use crate::framed::{handshake, random_bytes, ChanError, FrameReader};
use crate::io::Io;
use crate::machine::Machine;
use crate::replica::Replica;
use crate::snapshot::SnapshotStream;
use crate::writer::spawn_writer;

pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Our hello for a handshake with `purpose`.
pub fn my_hello<M: Machine, I: Io>(r: &Replica<M, I>, purpose: Purpose) -> Hello {
    Hello {
        cluster: r.opts.cluster.clone(),
        node: r.opts.node.clone(),
        incarnation: r.incarnation,
        purpose,
        machine: r.machine_tag.clone(),
        nonce: random_bytes(),
        client: r.opts.advertise_client.clone(),
        resume: if purpose == Purpose::Join { r.resume_point() } else { None },
    }
}

pub async fn accept_loop<M: Machine>(rc: Rc<RefCell<Replica<M>>>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let _ = stream.set_nodelay(true);
                tokio::task::spawn_local(incoming(rc.clone(), stream, addr.to_string()));
            }
            Err(e) => {
                log::warn!("accepting on the replication port: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn refuse(stream: &mut TcpStream, epoch: u64, code: RejectCode, message: String) {
    let _ = stream.write_all(&Handshake::reject(epoch, code, message)).await;
    let _ = stream.shutdown().await;
}

async fn incoming<M: Machine>(rc: Rc<RefCell<Replica<M>>>, mut stream: TcpStream, addr: String) {
    let (hs, epoch, max, cluster, machine, node) = {
        let r = rc.borrow();
        let epoch = r.core.epoch();
        let hs = Handshake::acceptor(&r.opts.secret, my_hello(&r, Purpose::Accept), epoch);
        (hs, epoch, r.opts.frame_bytes_max, r.opts.cluster.clone(), r.machine_tag.clone(), r.opts.node.clone())
    };
    let mut reader = FrameReader::new(max);
    let peer = match handshake(&mut stream, &mut reader, hs, Vec::new(), HANDSHAKE_TIMEOUT).await {
        Ok(p) => p,
        Err(ChanError::Handshake(HandshakeError::Rejected(r))) if r.code == RejectCode::AuthFailed => {
            log::warn!("{node}: refused {addr}: shared secret mismatch (--secret-file differs between the nodes)");
            return;
        }
        Err(ChanError::Handshake(HandshakeError::AuthFailed)) => {
            log::warn!("{node}: refused {addr}: it failed to prove the shared secret (--secret-file differs)");
            refuse(&mut stream, epoch, RejectCode::AuthFailed, "authentication failed: check --secret-file".into()).await;
            return;
        }
        Err(e) => {
            log::warn!("{node}: refused {addr}: {e}");
            return;
        }
    };
    let h = peer.hello;
    if h.cluster != cluster {
        log::warn!("{node}: refused {addr}: node {:?} belongs to cluster {:?}, this is {cluster:?}", h.node, h.cluster);
        let msg = format!("this node belongs to cluster {cluster:?}, not {:?}", h.cluster);
        refuse(&mut stream, epoch, RejectCode::WrongCluster, msg).await;
        return;
    }
    if h.purpose == Purpose::Switchover {
        switchover(&rc, &mut stream, epoch, &addr).await;
        return;
    }
    if h.machine != machine {
        log::warn!("{node}: refused {addr}: machine {:?} differs from ours {machine:?}", h.machine);
        let msg = format!("machines differ: this primary runs {machine:?}, the joiner {:?}", h.machine);
        refuse(&mut stream, epoch, RejectCode::MachineMismatch, msg).await;
        return;
    }
    match h.purpose {
        Purpose::Join => channel(rc, stream, reader, h, peer.epoch),
        Purpose::Snapshot => {
            let pending = rc.borrow_mut().take_snapshot_stream(&h.node, h.incarnation);
            match pending {
                Some(frames) => send_snapshot(rc, stream, h.node, frames).await,
                None => refuse(&mut stream, epoch, RejectCode::Protocol, "no snapshot is waiting for this node".into()).await,
            }
        }
        other => refuse(&mut stream, epoch, RejectCode::Protocol, format!("unexpected purpose {other:?}")).await,
    }
}

/// An operator's `understudy switchover` (authenticated by the secret):
/// the core decides; the answer is a Handover frame (started; the name of
/// the successor in a Reject-shaped message) or a Reject with why not.
async fn switchover<M: Machine>(rc: &Rc<RefCell<Replica<M>>>, stream: &mut TcpStream, epoch: u64, addr: &str) {
    let started = {
        let mut r = rc.borrow_mut();
        let node = r.opts.node.clone();
        log::info!("{node}: switchover asked from {addr}");
        r.request_switchover()
    };
    match started {
        Ok(successor) => {
            let mut frame = Vec::new();
            understudy_wire::frame::encode(&mut frame, FrameHeader { epoch, seq: 0, kind: Kind::Handover }, successor.as_bytes());
            let _ = stream.write_all(&frame).await;
            let _ = stream.shutdown().await;
        }
        Err(why) => {
            log::warn!("{}: switchover refused: {why}", rc.borrow().opts.node);
            refuse(stream, epoch, RejectCode::Protocol, format!("switchover refused: {why}")).await;
        }
    }
}

/// A joiner's logging channel, primary side: acks in, entries out.
fn channel<M: Machine>(rc: Rc<RefCell<Replica<M>>>, stream: TcpStream, reader: FrameReader, hello: Hello, epoch: u64) {
    let (stream, dup) = match crate::tokio_io::duplicate(stream) {
        Ok(s) => s,
        Err(e) => {
            // The joiner sees the connection close and tries again.
            log::warn!("{}: cannot take the join of {:?}: its socket: {e}", rc.borrow().opts.node, hello.node);
            return;
        }
    };
    let (rd, wr) = stream.into_split();
    let conn = rc.borrow_mut().joiner_arrived(hello.node, hello.incarnation, hello.client, epoch, hello.resume);
    spawn_writer(rc.clone(), conn, wr, dup);
    let task = tokio::task::spawn_local(read_acks(rc.clone(), conn, rd, reader));
    let r = rc.borrow();
    match r.has_conn(conn) {
        true => {
            r.io.wakers.add_task(conn, task.abort_handle());
            // A heartbeat that says nothing new (seq 0: the backup keeps
            // the highest it heard), for the beat thread to repeat should
            // the loop be held before its first heartbeat is written.
            let mut hb = Vec::new();
            encode_with(&mut hb, header(r.core().epoch(), 0, Kind::Heartbeat), |o| Heartbeat { last_seq: 0 }.encode(o));
            r.io.beats.seed(conn, &hb);
        }
        false => task.abort(),
    }
}

async fn read_acks<M: Machine>(
    rc: Rc<RefCell<Replica<M>>>,
    conn: ConnId,
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut reader: FrameReader,
) {
    let reason = loop {
        if let Err(bad) = rc.borrow_mut().on_backup_frames(conn, &mut reader) {
            break bad;
        }
        if let Err(e) = reader.fill(&mut rd).await {
            break e.to_string();
        }
    };
    rc.borrow_mut().channel_broken(conn, reason);
}

/// Streams a snapshot to a joiner: a thread serializes the frames from the
/// copy-on-write snapshot while this task writes them; the event loop keeps
/// serving meanwhile.
async fn send_snapshot<M: Machine>(rc: Rc<RefCell<Replica<M>>>, mut stream: TcpStream, node: String, mut frames: SnapshotStream) {
    let me = rc.borrow().opts.node.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let hint = frames.bytes_hint();
    std::thread::Builder::new()
        .name("snapshot-send".into())
        .spawn(move || {
            while let Some(frame) = frames.next_frame() {
                if tx.blocking_send(frame).is_err() {
                    return;
                }
            }
        })
        .expect("spawn snapshot thread");
    let start = Instant::now();
    let mut progress = crate::progress::Progress::new(format!("{me}: snapshot to {node:?}"), hint);
    let written = write_frames(&mut rx, &mut stream, |n| {
        progress.add(n as u64);
        rc.borrow_mut().snapshot_sent(n as u64);
    })
    .await;
    if let Err(e) = written {
        log::warn!("{me}: snapshot to {node:?} failed after {} bytes: {e}", progress.done());
        return;
    }
    let _ = stream.shutdown().await;
    log::info!("{me}: snapshot to {node:?} sent: {} in {:.2?}", crate::progress::human(progress.done()), start.elapsed());
}

/// Writes a snapshot's frames as they come, calling `sent` after each, and
/// lets the event loop's other tasks run between two frames. During a join
/// the channel and the socket are both ready most of the time: without the
/// yield this task would write frame after frame until tokio's cooperative
/// budget ran out (tens of MiB, 10–20 ms at loopback speed) while every
/// client of the primary waited.
async fn write_frames<W: AsyncWrite + Unpin>(
    rx: &mut tokio::sync::mpsc::Receiver<Vec<u8>>,
    out: &mut W,
    mut sent: impl FnMut(usize),
) -> std::io::Result<()> {
    while let Some(frame) = rx.recv().await {
        out.write_all(&frame).await?;
        sent(frame.len());
        tokio::task::yield_now().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::write_frames;

    /// A join must not hold the event loop: between two frames of a
    /// snapshot, the loop's other tasks (clients, acks) get a turn, even
    /// when the frames and the socket are always ready.
    #[test]
    fn other_tasks_run_between_two_snapshot_frames() {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            const FRAMES: usize = 200;
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(FRAMES);
            for _ in 0..FRAMES {
                tx.try_send(vec![7u8; 4096]).expect("room for every frame");
            }
            drop(tx);
            // A client's task: counts its turns until the snapshot is sent.
            let (turns, done) = (Rc::new(Cell::new(0usize)), Rc::new(Cell::new(false)));
            let client = tokio::task::spawn_local({
                let (turns, done) = (turns.clone(), done.clone());
                async move {
                    while !done.get() {
                        turns.set(turns.get() + 1);
                        tokio::task::yield_now().await;
                    }
                }
            });
            // A sink is always ready, as a fast joiner's socket is.
            let mut out = tokio::io::sink();
            let (mut frames, mut least, mut before) = (0usize, usize::MAX, 0usize);
            write_frames(&mut rx, &mut out, |n| {
                assert_eq!(n, 4096);
                if frames > 0 {
                    least = least.min(turns.get() - before);
                }
                before = turns.get();
                frames += 1;
            })
            .await
            .expect("a sink takes every frame");
            done.set(true);
            client.await.expect("the client's task");
            assert_eq!(frames, FRAMES);
            assert!(least >= 1, "the client's task had no turn between two frames");
        });
    }
}
