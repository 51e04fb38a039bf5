//! Joining a primary (backup side), the tokio tasks: open the logging
//! channel, read frames into the replica, load the snapshot from a second
//! connection in a thread, and replay entries in slices. What each step
//! means is decided in `transfer` and `frames` (shared with the simulator).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use understudy_core::{ConnId, Seq, SnapshotError};
use understudy_wire::msg::Purpose;

use crate::framed::{handshake, ChanError, FrameReader};
use crate::listen::{my_hello, HANDSHAKE_TIMEOUT};
use crate::machine::Machine;
use crate::replica::{Factory, Replica};
use crate::snapshot::{join_answer, JoinRefused, LoadStep, SnapshotLoad};
use crate::transfer::ExecStep;
use crate::writer::spawn_writer;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

type Rep<M> = Rc<RefCell<Replica<M>>>;

/// Connects and authenticates with `purpose`.
async fn open<M: Machine>(
    rc: &Rep<M>,
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
        let (hs, first) = understudy_wire::handshake::Handshake::initiator(&r.opts.secret, my_hello(&r, purpose), epoch);
        (hs, first, r.opts.frame_bytes_max)
    };
    let mut reader = FrameReader::new(max);
    let peer = handshake(&mut stream, &mut reader, hs, first, HANDSHAKE_TIMEOUT).await?;
    Ok((stream, reader, peer))
}

/// One join attempt of generation `gen` (started by `Io::connect`).
pub async fn join<M: Machine>(rc: Rep<M>, repl: String, epoch: u64, gen: u64) {
    let attempt = async {
        let (mut stream, mut reader, peer) = open(&rc, &repl, epoch, Purpose::Join).await?;
        let limit = Duration::from_secs(10);
        let (h, payload) = tokio::time::timeout(limit, reader.read_frame(&mut stream))
            .await
            .map_err(|_| ChanError::Timeout(limit))?
            .map_err(JoinRefused::from)?;
        let (snapshot_seq, partial) = join_answer(h, &payload)?;
        Ok::<_, JoinRefused>((stream, reader, peer, snapshot_seq, partial))
    };
    let (stream, reader, peer, snapshot_seq, partial) = match attempt.await {
        Ok(x) => x,
        Err(refused) => return rc.borrow_mut().join_failed(&repl, refused),
    };
    let (stream, dup) = match crate::tokio_io::duplicate(stream) {
        Ok(s) => s,
        Err(e) => return rc.borrow_mut().join_failed(&repl, JoinRefused::from(ChanError::Io(e))),
    };
    let primary = peer.hello.node.clone();
    let joined = rc.borrow_mut().joined(gen, primary, peer.hello.incarnation, peer.epoch, snapshot_seq, partial);
    let Some(conn) = joined else { return };
    let (rd, wr) = stream.into_split();
    spawn_writer(rc.clone(), conn, wr, dup);
    if !partial {
        tokio::task::spawn_local(receive_snapshot(rc.clone(), repl, peer.epoch, snapshot_seq, gen, conn));
    }
    // Not tied to the connection: when the channel closes, what was received
    // must still be executed before this node may go live. The task ends by
    // itself once the queue is drained without a channel, or on a reset.
    tokio::task::spawn_local(execute(rc.clone(), conn, gen));
    let task = tokio::task::spawn_local(read_entries(rc.clone(), conn, rd, reader));
    let r = rc.borrow();
    match r.has_conn(conn) {
        true => r.io.wakers.add_task(conn, task.abort_handle()),
        false => task.abort(),
    }
}

/// Backup side of the logging channel: frames in, acks out after every read.
async fn read_entries<M: Machine>(rc: Rep<M>, conn: ConnId, mut rd: tokio::net::tcp::OwnedReadHalf, mut reader: FrameReader) {
    let reason = loop {
        if let Err(bad) = rc.borrow_mut().on_primary_frames(conn, &mut reader) {
            break bad;
        }
        if let Err(e) = reader.fill(&mut rd).await {
            break e.to_string();
        }
    };
    rc.borrow_mut().channel_broken(conn, reason);
}

/// Replays received entries in slices, so acks and heartbeats keep flowing.
async fn execute<M: Machine>(rc: Rep<M>, conn: ConnId, gen: u64) {
    const SLICE: usize = 2048;
    let wakers = rc.borrow().io.wakers.clone();
    loop {
        let wake = wakers.exec.notified();
        let step = rc.borrow_mut().execute_slice(gen, conn, SLICE);
        match step {
            ExecStep::Done => return,
            ExecStep::More => tokio::task::yield_now().await,
            ExecStep::Idle => wake.await,
        }
    }
}

/// Loads the snapshot from a second connection. Restoring is CPU work, so
/// a thread does it into a fresh machine that replaces ours when complete.
async fn receive_snapshot<M: Machine>(rc: Rep<M>, repl: String, epoch: u64, seq: Seq, gen: u64, conn: ConnId) {
    match load_snapshot(&rc, &repl, epoch, seq).await {
        Ok((machine, bytes, took)) => {
            let mut r = rc.borrow_mut();
            let line = format!("snapshot at seq {seq} loaded: {} in {took:.2?}", crate::progress::human(bytes));
            if gen == r.join_gen() {
                r.log(log::Level::Info, &line);
            }
            r.install_snapshot(gen, machine, seq, bytes);
        }
        Err(e) => rc.borrow_mut().snapshot_failed(gen, conn, e.to_string()),
    }
}

async fn load_snapshot<M: Machine>(rc: &Rep<M>, repl: &str, epoch: u64, seq: Seq) -> Result<(M, u64, Duration), ChanError> {
    let start = Instant::now();
    let (mut stream, mut reader, _) = open(rc, repl, epoch, Purpose::Snapshot).await?;
    let mut load = SnapshotLoad::new(seq);
    let (h, p) = reader.read_frame(&mut stream).await?;
    load.on_frame(h, &p)?;
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
    let mut progress = crate::progress::Progress::new(format!("{me}: snapshot from the primary"), load.hint);
    // A stream that stops making progress is given up (the join starts
    // over), or the joiner would wait forever beside a healthy channel.
    let stall = Duration::from_secs(30);
    loop {
        let (h, p) =
            tokio::time::timeout(stall, reader.read_frame(&mut stream)).await.map_err(|_| ChanError::Timeout(stall))??;
        match load.on_frame(h, &p)? {
            LoadStep::Chunk(data) => {
                progress.add(p.len() as u64);
                if tx.send(data.to_vec()).await.is_err() {
                    break;
                }
            }
            LoadStep::End => break,
            LoadStep::Began => unreachable!("one SnapshotBegin, checked by SnapshotLoad"),
        }
    }
    drop(tx);
    let machine = done_rx
        .await
        .map_err(|_| ChanError::Protocol("snapshot loader thread died".into()))?
        .map_err(|e| ChanError::Protocol(e.to_string()))?;
    Ok((machine, load.bytes, start.elapsed()))
}
