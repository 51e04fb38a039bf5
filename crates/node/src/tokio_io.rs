//! [`TokioIo`]: the [`Io`] of a real node — one current-thread tokio
//! runtime (like Redis, one event loop), arbiter calls on their own
//! threads, `Notify`s that wake the tasks of connections and clients.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Notify;
use tokio::task::AbortHandle;
use understudy_core::{Command, ConnId, Epoch, Millis};

use crate::arbiter_lanes::ArbiterLanes;
use crate::beat::Beats;
use crate::io::{Io, HALT_EXIT_CODE, REFUSED_EXIT_CODE};

/// What the tasks of a node wait on.
#[derive(Default)]
pub struct Wakers {
    /// Woken on every release of the output gate (and role changes).
    pub gate: Notify,
    /// Woken when intake reopens or the role changes.
    pub intake: Notify,
    /// Woken when received entries wait for execution.
    pub exec: Notify,
    /// Woken when the primary's disk batch wants writing.
    pub disk: Notify,
    writers: RefCell<BTreeMap<ConnId, Rc<Notify>>>,
    tasks: RefCell<BTreeMap<ConnId, Vec<AbortHandle>>>,
}

impl Wakers {
    /// The `Notify` of `conn`'s writer task (a stored permit: no lost wakeups).
    pub fn writer(&self, conn: ConnId) -> Rc<Notify> {
        self.writers.borrow_mut().entry(conn).or_default().clone()
    }

    /// Ties a task's life to a connection: it is aborted when the
    /// connection is dropped. The caller checked that `conn` is open.
    pub fn add_task(&self, conn: ConnId, task: AbortHandle) {
        self.tasks.borrow_mut().entry(conn).or_default().push(task);
    }
}

/// Splits a second handle off a logging channel's socket, for the beat
/// thread ([`Beats`]): its repeated heartbeats and acks, and [`Io::unread`]'s peeks.
pub fn duplicate(stream: tokio::net::TcpStream) -> std::io::Result<(tokio::net::TcpStream, std::net::TcpStream)> {
    let std = stream.into_std()?;
    let dup = std.try_clone()?;
    Ok((tokio::net::TcpStream::from_std(std)?, dup))
}

/// Starts a join task: (primary's replication address, epoch, join generation).
pub type Connector = Box<dyn Fn(String, Epoch, u64)>;

pub struct TokioIo {
    node: String,
    t0: Instant,
    lanes: ArbiterLanes,
    pub wakers: Rc<Wakers>,
    /// Set once the replica is shared (the join task holds a handle on it).
    connector: Option<Connector>,
    /// The disk thread (`--appendfsync`).
    disk: Option<std::sync::mpsc::Sender<crate::disk_thread::Msg>>,
    /// The beat thread, and the logging channels' duplicated sockets.
    pub beats: Arc<Beats>,
}

impl TokioIo {
    pub fn new(node: String, lanes: ArbiterLanes, heartbeat_ms: u64) -> Self {
        let beats = Beats::start(&node, heartbeat_ms);
        TokioIo { node, t0: Instant::now(), lanes, wakers: Rc::new(Wakers::default()), connector: None, disk: None, beats }
    }

    pub(crate) fn set_disk(&mut self, disk: std::sync::mpsc::Sender<crate::disk_thread::Msg>) {
        self.disk = Some(disk);
    }

    pub fn set_connector(&mut self, c: Connector) {
        self.connector = Some(c);
    }
}

impl Io for TokioIo {
    fn now(&self) -> Millis {
        self.t0.elapsed().as_millis() as Millis
    }

    fn arbiter(&mut self, call: Command) {
        let taken = self.lanes.submit(&call);
        assert!(taken, "only arbiter calls go to the lanes: {call:?}");
    }

    fn wake_writer(&mut self, conn: ConnId) {
        if let Some(w) = self.wakers.writers.borrow().get(&conn) {
            w.notify_one();
        }
    }

    fn conn_dropped(&mut self, conn: ConnId) {
        self.beats.remove(conn);
        self.wakers.writers.borrow_mut().remove(&conn);
        let tasks = self.wakers.tasks.borrow_mut().remove(&conn);
        for t in tasks.into_iter().flatten() {
            t.abort();
        }
        self.wakers.intake.notify_waiters();
    }

    fn gate_moved(&mut self) {
        self.wakers.gate.notify_waiters();
    }

    fn intake_changed(&mut self) {
        self.wakers.intake.notify_waiters();
    }

    fn wake_exec(&mut self) {
        // Every executor waiting (an abandoned join's ends on its wake), and
        // a stored permit for one that is about to wait.
        self.wakers.exec.notify_waiters();
        self.wakers.exec.notify_one();
    }

    fn disk(&mut self, req: crate::disk_state::DiskReq) {
        let disk = self.disk.as_ref().expect("disk requests only with --appendfsync");
        if disk.send(crate::disk_thread::Msg::Req(req)).is_err() {
            // The thread ended on an error it reported: the halt is on its way.
            log::debug!("{}: the disk thread is gone", self.node);
        }
    }

    fn wake_disk(&mut self) {
        self.wakers.disk.notify_one();
    }

    fn connect(&mut self, repl: &str, epoch: Epoch, gen: u64) {
        let c = self.connector.as_ref().expect("the connector is set before the node starts");
        c(repl.to_string(), epoch, gen);
    }

    fn liveness_queued(&mut self, conn: ConnId, frame: &[u8]) {
        self.beats.queued(conn, frame);
    }

    fn unread(&self, conn: ConnId) -> bool {
        self.beats.unread(conn)
    }

    fn log(&mut self, level: log::Level, line: &str) {
        log::log!(level, "{}: {line}", self.node);
    }

    fn halt(&mut self, reason: &str) {
        log::error!("{}: halting: {reason}", self.node);
        std::process::exit(HALT_EXIT_CODE);
    }

    fn refuse(&mut self, reason: &str) {
        log::error!("{}: cannot start: {reason}", self.node);
        std::process::exit(REFUSED_EXIT_CODE);
    }
}
