//! Starting a node: bind the listeners, start the arbiter lanes, the core,
//! the ticker, and feed the core until the process ends.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc::unbounded_channel;
use understudy_arbiter::NodeAddrs;
use understudy_core::Event;
use understudy_kv::Kv;

use crate::arbiter_lanes::ArbiterLanes;
use crate::listening::Bound;
use crate::machine::{App, Machine};
use crate::options::NodeOptions;
use crate::replica::{Factory, Replica};
use crate::service::FrontEnd;
use crate::tokio_io::TokioIo;

/// Errors that stop a node before it runs.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("invalid options: {0}")]
    Options(String),
    #[error("cannot listen on {addr} ({flag}): {cause}")]
    Bind { addr: String, flag: &'static str, cause: std::io::Error },
    #[error("cannot use --dir {path}: {cause}")]
    Dir { path: String, cause: std::io::Error },
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot recover the state in --dir {path}: {why}; nothing was changed there: move the directory away to start this node empty (it then joins the cluster's primary)")]
    Recover { path: String, why: String },
}

/// A node's disk, opened and recovered before it starts (`--appendfsync`).
pub(crate) struct OpenDisk<M> {
    loaded: crate::disk::Loaded<M>,
    requests: std::sync::mpsc::Sender<crate::disk_thread::Msg>,
    answers: tokio::sync::mpsc::UnboundedReceiver<crate::disk_state::DiskDone>,
}

/// Recovers the state in `--dir` and starts the disk thread, if the node
/// persists its state.
pub(crate) fn open_disk<M: Machine>(
    opts: &NodeOptions,
    factory: &Factory<M>,
    incarnation: u64,
) -> Result<Option<OpenDisk<M>>, NodeError> {
    let (Some(p), Some(dir)) = (&opts.persist, &opts.dir) else { return Ok(None) };
    let path = dir.display().to_string();
    let storage = understudy_durable::FsStorage::new(dir).map_err(|cause| NodeError::Dir { path: path.clone(), cause })?;
    let t0 = std::time::Instant::now();
    let loaded = crate::disk::load(&storage, &|| factory()).map_err(|why| NodeError::Recover { path: path.clone(), why })?;
    for r in &loaded.reports {
        log::warn!("{}: recovering {path}: {r}", opts.node);
    }
    if loaded.last_seq > 0 {
        log::info!(
            "{}: recovered seq {} of epoch {} from {path} in {:.2} s ({})",
            opts.node,
            loaded.last_seq,
            loaded.epoch,
            t0.elapsed().as_secs_f64(),
            match (loaded.complete, p.fsync) {
                (true, understudy_durable::Fsync::Always) => "complete: every write this node acknowledged is here",
                _ => "not known to be complete (appendfsync was not always, or the log was cut): this node joins the primary, or waits for the operator",
            }
        );
    }
    let (tx, answers) = unbounded_channel();
    let requests = crate::disk_thread::spawn(storage, p.fsync, incarnation, loaded.last_seq, p.segment_bytes, tx)
        .map_err(|cause| NodeError::Dir { path, cause })?;
    Ok(Some(OpenDisk { loaded, requests, answers }))
}

pub(crate) async fn bind(addr: std::net::SocketAddr, flag: &'static str) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr).await.map_err(|cause| NodeError::Bind { addr: addr.to_string(), flag, cause })
}

/// Binds `--metrics-listen`, if given.
pub(crate) async fn bind_metrics(opts: &NodeOptions) -> Result<Option<TcpListener>, NodeError> {
    match opts.metrics_listen {
        Some(addr) => Ok(Some(bind(addr, "--metrics-listen").await?)),
        None => Ok(None),
    }
}

/// The address a listener got (the real port when the flag said 0).
pub(crate) fn local_addr(l: &TcpListener, flag: &'static str) -> Result<std::net::SocketAddr, NodeError> {
    l.local_addr().map_err(|cause| NodeError::Bind { addr: "?".into(), flag, cause })
}

/// Reports the bound addresses (log, advertised addresses, `listening.json`).
pub(crate) fn announce(opts: &mut NodeOptions, bound: &Bound) -> Result<(), NodeError> {
    crate::listening::announce(opts, bound)
        .map_err(|cause| NodeError::Dir { path: opts.dir.as_ref().map_or_else(String::new, |d| d.display().to_string()), cause })
}

/// Serves the metrics page on the bound `--metrics-listen`, if any.
pub(crate) fn serve_metrics<M: Machine>(rc: &Rc<RefCell<Replica<M>>>, listener: Option<TcpListener>) {
    if let Some(l) = listener {
        tokio::task::spawn_local(crate::metrics::serve(rc.clone(), l));
    }
}

pub(crate) fn prepare_dir(opts: &NodeOptions) -> Result<(), NodeError> {
    let Some(dir) = &opts.dir else { return Ok(()) };
    let err = |cause| NodeError::Dir { path: dir.display().to_string(), cause };
    std::fs::create_dir_all(dir).map_err(err)?;
    // Prove the directory is writable now rather than at the worst moment.
    let probe = dir.join(".understudy-probe");
    std::fs::write(&probe, opts.node.as_bytes()).map_err(err)?;
    std::fs::remove_file(&probe).map_err(err)?;
    Ok(())
}

/// Runs the key-value service as a node of a cluster: [`Kv`] behind the
/// Redis front end. Returns only if it cannot start; a node that halts
/// exits the process.
/// `users`: who may connect (the default user alone, with
/// `--requirepass-file`'s password if any, or an `--aclfile`'s users);
/// `aclfile` names the file for CONFIG GET; `maxmemory`: `--maxmemory`
/// and `--maxmemory-policy` (the machine starts with them, CONFIG SET
/// changes them through the log).
pub fn run_kv(
    opts: NodeOptions,
    users: understudy_kv::acl::Users,
    aclfile: Option<String>,
    maxmemory: understudy_kv::evict::Maxmemory,
) -> Result<(), NodeError> {
    let front = crate::redis::Redis::new(opts.request_bytes_max, users, aclfile);
    let machine = move || {
        let mut kv = Kv::new();
        kv.set_maxmemory(maxmemory);
        App::new(kv)
    };
    // The tag names the op and snapshot formats: nodes of different tags
    // refuse to pair (a disk an older format wrote is refused as it loads).
    // 2: PUBLISH records its count (Ctx::publish), snapshots are format 2.
    run_app(opts, "kv/2".into(), Arc::new(machine), front)
}

/// Runs a machine behind a front end (`Node::serve`).
pub(crate) fn run_app<F: FrontEnd>(
    mut opts: NodeOptions,
    tag: String,
    factory: Factory<App<F::Machine>>,
    front: F,
) -> Result<(), NodeError> {
    opts.validate().map_err(NodeError::Options)?;
    prepare_dir(&opts)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(NodeError::Runtime)?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        // Every listener is bound before the node claims anything.
        let client = bind(opts.client_listen, "--client-listen").await?;
        let repl = bind(opts.repl_listen, "--repl-listen").await?;
        let metrics = bind_metrics(&opts).await?;
        let bound = Bound {
            client: local_addr(&client, "--client-listen")?,
            repl: local_addr(&repl, "--repl-listen")?,
            metrics: metrics.as_ref().map(|m| local_addr(m, "--metrics-listen")).transpose()?,
        };
        announce(&mut opts, &bound)?;
        let incarnation = crate::framed::random_u64();
        let disk = open_disk(&opts, &factory, incarnation)?;
        let tls = opts.tls.as_ref().map(|t| t.acceptor());
        let (rc, events) = start(opts, factory, tag, repl, incarnation, disk).await;
        serve_metrics(&rc, metrics);
        rc.borrow_mut().record.publisher = front.publisher();
        tokio::task::spawn_local(crate::serve::serve(rc.clone(), Rc::new(front), client, tls));
        tokio::task::spawn_local(crate::serve::housekeeping::<F>(rc.clone()));
        drive((rc, events)).await;
        Ok(())
    })
}

pub(crate) type Driver<M> = (Rc<RefCell<Replica<M>>>, tokio::sync::mpsc::UnboundedReceiver<Event>);

pub(crate) async fn start<M: Machine>(
    opts: NodeOptions,
    factory: Factory<M>,
    tag: String,
    repl: TcpListener,
    incarnation: u64,
    disk: Option<OpenDisk<M>>,
) -> Driver<M> {
    let (tx, rx) = unbounded_channel();
    let me = NodeAddrs { node: opts.node.clone(), client: opts.advertise_client.clone(), repl: opts.advertise_repl.clone() };
    let lanes = ArbiterLanes::start(opts.arbiter.clone(), opts.cluster.clone(), me, tx);
    log::info!(
        "{}: cluster {:?}, arbiter {}, clients on {}{}, replication on {}",
        opts.node,
        opts.cluster,
        opts.arbiter.describe(),
        opts.advertise_client,
        opts.tls.as_ref().map(|t| format!(" ({})", t.describe())).unwrap_or_default(),
        opts.advertise_repl
    );
    if opts.secret.is_empty() {
        log::warn!("{}: no --secret-file: the replication channel is not authenticated", opts.node);
    }
    let mut io = TokioIo::new(opts.node.clone(), lanes, opts.protocol.heartbeat_ms);
    let disk = disk.map(|d| {
        io.set_disk(d.requests);
        (d.loaded, d.answers)
    });
    let rc = Rc::new(RefCell::new(Replica::new(Arc::new(opts), factory, tag, incarnation, io)));
    if let Some((loaded, answers)) = disk {
        rc.borrow_mut().recovered(loaded);
        tokio::task::spawn_local(disk_tasks(rc.clone(), answers));
    }
    let weak = Rc::downgrade(&rc);
    rc.borrow_mut().io.set_connector(Box::new(move |repl, epoch, gen| {
        if let Some(rc) = weak.upgrade() {
            tokio::task::spawn_local(crate::join::join(rc, repl, epoch, gen));
        }
    }));
    tokio::task::spawn_local(crate::listen::accept_loop(rc.clone(), repl));
    tokio::task::spawn_local(ticker(rc.clone()));
    tokio::task::spawn_local(signals(rc.clone()));
    rc.borrow_mut().start();
    (rc, rx)
}

/// The disk's two tasks: write the primary's batch when woken (after the
/// requests already read: one batch, one fsync), and hand the disk's
/// answers to the replica.
async fn disk_tasks<M: Machine>(
    rc: Rc<RefCell<Replica<M>>>,
    mut answers: tokio::sync::mpsc::UnboundedReceiver<crate::disk_state::DiskDone>,
) {
    let wakers = rc.borrow().io.wakers.clone();
    loop {
        tokio::select! {
            _ = wakers.disk.notified() => rc.borrow_mut().flush_disk(),
            done = answers.recv() => match done {
                Some(d) => rc.borrow_mut().disk_done(d),
                None => return,
            },
        }
    }
}

pub(crate) async fn drive<M: Machine>((rc, mut rx): Driver<M>) {
    while let Some(ev) = rx.recv().await {
        let mut r = rc.borrow_mut();
        if let Event::ArbiterRead(Ok(Some(v))) = &ev {
            r.primary_client = Some(v.primary_client.clone());
        }
        r.feed(ev);
    }
}

/// SIGTERM or SIGINT: stop as the core decides (a primary hands over to
/// its in-sync backup, a backup leaves); a second signal ends the process
/// at once, as a crash would.
async fn signals<M: Machine>(rc: Rc<RefCell<Replica<M>>>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        log::warn!("cannot install the SIGTERM/SIGINT handlers: a signal ends this node like kill -9");
        return;
    };
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        let node = rc.borrow().opts.node.clone();
        if rc.borrow().core.is_stopping() || rc.borrow().exiting {
            log::warn!("{node}: {name} again while stopping: exiting now, without waiting");
            std::process::exit(1);
        }
        let role = rc.borrow().core.role_name().as_str();
        log::info!("{node}: {name}: stopping ({role}: a primary hands over to an in-sync backup; a backup leaves)");
        rc.borrow_mut().feed(Event::Stop);
    }
}

/// Lets time pass in the core: heartbeats, failure detection, retries.
async fn ticker<M: Machine>(rc: Rc<RefCell<Replica<M>>>) {
    let tick = Duration::from_millis((rc.borrow().opts.protocol.heartbeat_ms / 5).clamp(1, 10));
    let mut iv = tokio::time::interval(tick);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut exiting_since = None;
    loop {
        let due = iv.tick().await;
        if rc.borrow().exiting {
            // Stopped as asked: once every channel's bytes (a handover) are
            // written, give the client tasks a moment to write the replies
            // the last acks released, then end.
            let since = *exiting_since.get_or_insert_with(std::time::Instant::now);
            let flushed = rc.borrow().chans.flushed();
            if flushed || since.elapsed() > Duration::from_secs(2) {
                tokio::time::sleep(Duration::from_millis(10)).await;
                std::process::exit(0);
            }
            continue;
        }
        // How late the tick came: the event loop was busy, or the process
        // was not scheduled (a silence the peer may take for a failure).
        crate::metrics::LOOP_LAG.observe_n(due.elapsed(), 1);
        rc.borrow().io.beats.loop_ticked();
        rc.borrow_mut().tick();
    }
}
