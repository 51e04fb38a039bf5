//! The writer task of a logging-channel connection: it seals the open batch,
//! takes the whole send buffer and writes it with one call. Entries appended
//! while a write is in flight form the next batch, so batching grows with
//! load by itself and never waits on a timer.

use std::cell::RefCell;
use std::rc::Rc;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use understudy_core::{ConnId, Event};

use crate::machine::Machine;
use crate::replica::{feed, Replica};

pub fn spawn_writer<M: Machine>(rc: Rc<RefCell<Replica<M>>>, conn: ConnId, mut wr: OwnedWriteHalf) {
    let rc2 = rc.clone();
    let task = tokio::task::spawn_local(async move {
        let mut spare: Vec<u8> = Vec::new();
        loop {
            let (buf, wake, closing) = {
                let mut r = rc.borrow_mut();
                if !r.conns.contains_key(&conn) {
                    return;
                }
                r.seal_batch(conn);
                let c = r.conns.get_mut(&conn).expect("checked");
                spare.clear();
                let buf = std::mem::replace(&mut c.out, std::mem::take(&mut spare));
                let out = (buf, c.wake.clone(), c.closing);
                if out.0.len() >= r.opts.channel_backlog_bytes_max {
                    // Intake may have paused on this backlog: it is drained now.
                    r.intake.notify_waiters();
                }
                out
            };
            if buf.is_empty() {
                if closing {
                    let _ = wr.shutdown().await;
                    rc.borrow_mut().drop_conn(conn);
                    return;
                }
                wake.notified().await;
                spare = buf;
                continue;
            }
            if let Err(e) = wr.write_all(&buf).await {
                feed(&rc, Event::ConnClosed { conn, reason: format!("write failed: {e}") });
                rc.borrow_mut().drop_conn(conn);
                return;
            }
            spare = buf;
        }
    });
    rc2.borrow_mut().add_task(conn, task.abort_handle());
}
