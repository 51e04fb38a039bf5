//! The writer task of a logging-channel connection: it takes the whole
//! send buffer (`Replica::take_out` seals the open batch) and writes it
//! with one call. Entries appended while a write is in flight form the
//! next batch, so batching grows with load by itself and never waits on a
//! timer.

use std::cell::RefCell;
use std::rc::Rc;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use understudy_core::ConnId;

use crate::io::Io;
use crate::machine::Machine;
use crate::replica::Replica;

pub fn spawn_writer<M: Machine>(rc: Rc<RefCell<Replica<M>>>, conn: ConnId, mut wr: OwnedWriteHalf, dup: std::net::TcpStream) {
    if !rc.borrow().has_conn(conn) {
        return;
    }
    let (wake, beat) = {
        let r = rc.borrow();
        (r.io.wakers.writer(conn), r.io.beats.add(conn, dup))
    };
    let task = tokio::task::spawn_local({
        let rc = rc.clone();
        async move {
            let mut spare: Vec<u8> = Vec::new();
            loop {
                spare.clear();
                let Some((buf, closing)) = rc.borrow_mut().take_out(conn, std::mem::take(&mut spare)) else { return };
                beat.taken();
                if buf.is_empty() {
                    if closing {
                        let _ = wr.shutdown().await;
                        rc.borrow_mut().drop_conn(conn);
                        return;
                    }
                    spare = buf;
                    wake.notified().await;
                    continue;
                }
                if let Err(e) = beat.write_all(&mut wr, &buf).await {
                    // A peer that went away may have sent entries this node
                    // has not read yet: its reader takes them first, then
                    // meets the same end and closes the channel.
                    if rc.borrow().io.unread(conn) {
                        log::debug!("{}: write to channel {conn} failed ({e}); reading what waits first", rc.borrow().opts.node);
                        return;
                    }
                    rc.borrow_mut().channel_broken(conn, format!("write failed: {e}"));
                    return;
                }
                spare = buf;
            }
        }
    });
    let r = rc.borrow();
    match r.has_conn(conn) {
        true => r.io.wakers.add_task(conn, task.abort_handle()),
        false => {
            task.abort();
            r.io.beats.remove(conn);
        }
    }
}
