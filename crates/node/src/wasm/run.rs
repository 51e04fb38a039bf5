//! `understudy wasm GUEST.wasm --cluster …`: a replicated WebAssembly guest.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use understudy_core::{Event, Seq};
use understudy_hypervisor::{asyncify, fingerprint, Ending, GuestConfig, GuestEnd, Release, SnapshotPort};
use understudy_wire::entry::EntryKind;

use super::feed::Intake;
use super::{WasmMachine, WasmShared};
use crate::listening::Bound;
use crate::metrics::SeqClock;
use crate::options::NodeOptions;
use crate::replica::{Factory, Replica};
use crate::run::{announce, bind, bind_metrics, drive, local_addr, prepare_dir, serve_metrics, start, NodeError};

/// Exit code of a node whose guest trapped (as a process killed by SIGABRT).
pub const TRAP_EXIT_CODE: i32 = 134;

pub struct WasmNodeOptions {
    pub node: NodeOptions,
    pub guest: GuestConfig,
    /// `--guest-listen` (the node's `client_listen` is the same address);
    /// None: a command-style guest, without a listener.
    pub guest_listen: Option<SocketAddr>,
    /// A command-style guest starts at once, not once a backup is in sync.
    pub start_unprotected: bool,
    pub verify_memory: bool,
}

type Rep = Rc<RefCell<Replica<WasmMachine>>>;

/// Runs a replicated guest. Returns the process exit code: the guest's
/// (the primary's guest exited, or the backup replayed it to the same end).
pub fn run_wasm(mut opts: WasmNodeOptions) -> Result<i32, NodeError> {
    opts.node.validate().map_err(NodeError::Options)?;
    prepare_dir(&opts.node)?;
    // Replicas pair on the module as given; the module that runs is the
    // transformed one, which joins carry to the joiner.
    let tag = format!("wasm/{}", fingerprint(&opts.guest).map_err(|e| NodeError::Options(e.to_string()))?);
    // Only a node that starts the guest needs the transformed module (a
    // joiner gets the primary's): make it in the background meanwhile.
    let transforming = {
        let (node, guest) = (opts.node.clone(), opts.guest.clone());
        std::thread::Builder::new()
            .name("asyncify".into())
            .spawn(move || {
                let m = snapshottable(&node, &guest.module);
                // Compiled now, so that neither a guest this node starts nor
                // one it resumes from a primary's snapshot (the same module,
                // transformed by the same wasm-opt) waits for the compiler.
                let t = Instant::now();
                match understudy_hypervisor::precompile(&GuestConfig { module: m.clone(), ..guest }) {
                    Ok(()) => log::debug!("{}: the guest's module compiled in {:.1?}", node.node, t.elapsed()),
                    Err(e) => log::debug!("{}: precompiling the guest: {e}", node.node),
                }
                m
            })
            .map_err(NodeError::Runtime)?
    };
    // A guest with files joins only by a live snapshot (replaying its whole
    // history would need the directories as they were when it started):
    // know it can be made before claiming anything.
    // (A command-style guest that waits for its backup is joined before it
    // starts, by a fresh transfer; only a join during the job needs a
    // live snapshot.)
    let command_style = opts.guest_listen.is_none() && !opts.start_unprotected;
    // The checks are quick; the transformation itself (seconds for a large
    // module) runs on: only a node that starts the guest waits for it, and
    // a joiner — which gets the primary's module — never does.
    if !opts.guest.map_dirs.is_empty() && !command_style {
        let usable = asyncify::wasm_opt_version().and_then(|_| {
            if asyncify::is_transformed(&opts.guest.module) {
                Ok(())
            } else {
                asyncify::check_snapshottable(&opts.guest.module)
            }
        });
        if let Err(e) = usable {
            return Err(NodeError::Options(format!(
                "--map-dir in a cluster needs live snapshots of the guest, which need wasm-opt (Debian package binaryen; or UNDERSTUDY_WASM_OPT=PATH) and a module it can transform: {e}"
            )));
        }
    }
    let fresh_module = super::FreshModule::new(transforming);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(NodeError::Runtime)?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        // Every listener is bound before the node claims anything: a busy
        // --guest-listen must not leave the cluster registered to a node
        // that then exits.
        let guest_listener = match opts.guest_listen {
            Some(a) => Some(bind(a, "--guest-listen").await?),
            None => None,
        };
        let repl = bind(opts.node.repl_listen, "--repl-listen").await?;
        let metrics = bind_metrics(&opts.node).await?;
        let repl_addr = local_addr(&repl, "--repl-listen")?;
        let bound = Bound {
            // A command-style guest serves no clients: its replication
            // address stands in.
            client: guest_listener.as_ref().map_or(Ok(repl_addr), |l| local_addr(l, "--guest-listen"))?,
            repl: repl_addr,
            metrics: metrics.as_ref().map(|m| local_addr(m, "--metrics-listen")).transpose()?,
        };
        announce(&mut opts.node, &bound)?;
        let listener = guest_listener.map(|l| l.into_std()).transpose().map_err(NodeError::Runtime)?;
        let refusing = listener
            .as_ref()
            .map(|l| l.try_clone().and_then(tokio::net::TcpListener::from_std))
            .transpose()
            .map_err(NodeError::Runtime)?;
        let start_when_protected = listener.is_none() && !opts.start_unprotected;
        let (events_tx, events_rx) = unbounded_channel();
        let (ends_tx, mut ends_rx) = unbounded_channel();
        let shared = Arc::new(WasmShared {
            guest: opts.guest,
            fresh_module,
            port: SnapshotPort::new(),
            node: opts.node.node.clone(),
            listener,
            start_when_protected,
            listener_used: Arc::default(),
            refuser: Mutex::new(None),
            verify_memory: opts.verify_memory,
            events: events_tx,
            ends: ends_tx,
            release: Release::new(0),
            intake: Arc::new(Intake::default()),
        });
        let s2 = shared.clone();
        let factory: Factory<WasmMachine> = Arc::new(move || WasmMachine::new(s2.clone()));
        let (rc, driver) = start(opts.node, factory, tag, repl, crate::framed::random_u64(), None).await;
        serve_metrics(&rc, metrics);
        // Not primary yet: the claim's answer comes through `drive`, below.
        if let Some(refusing) = refusing {
            let refuser = tokio::task::spawn_local(refuse_while_backup(rc.clone(), refusing));
            *shared.refuser.lock().unwrap_or_else(PoisonError::into_inner) = Some(refuser.abort_handle());
        }
        let clock = Rc::new(RefCell::new(SeqClock::default()));
        tokio::task::spawn_local(events(rc.clone(), events_rx, shared.release.clone(), clock.clone()));
        tokio::task::spawn_local(progress(rc.clone(), shared.clone(), clock));
        tokio::task::spawn_local(drive((rc.clone(), driver)));
        loop {
            let (gen, end) = ends_rx.recv().await.expect("the machine keeps the channel open");
            if gen != rc.borrow().machine.gen {
                continue; // a reset machine's guest
            }
            if let Some(code) = ended(&rc, end).await {
                return Ok(code);
            }
        }
    })
}

/// The module this node runs when it starts the guest: Asyncify-transformed
/// (`wasm-opt --asyncify`), so joins take a live snapshot and retain no log;
/// the given module, with a warning saying what is lost and how to get it,
/// when the transformation cannot be made. The result is cached in `--dir`
/// (keyed by the module's digest and the wasm-opt version).
fn snapshottable(opts: &NodeOptions, module: &Arc<[u8]>) -> Arc<[u8]> {
    let node = &opts.node;
    if asyncify::is_transformed(module) {
        return module.clone();
    }
    let fallback = |why: String| {
        log::warn!(
            "{node}: {why}; a joining backup will replay this guest's whole history, and every entry since it started is kept in memory"
        );
        module.clone()
    };
    let version = match asyncify::wasm_opt_version() {
        Ok(v) => v,
        Err(e) => return fallback(e.to_string()),
    };
    let cache = opts.dir.as_ref().map(|d| {
        let key = understudy_hypervisor::module_digest(&[&module[..], version.as_bytes()].concat());
        d.join(format!("guest-asyncify-{}.wasm", key[..8].iter().map(|b| format!("{b:02x}")).collect::<String>()))
    });
    if let Some(bytes) = cache.as_ref().and_then(|p| std::fs::read(p).ok()).filter(|b| asyncify::is_transformed(b)) {
        log::info!("{node}: the guest is snapshottable (transformed module from the cache in --dir)");
        return bytes.into();
    }
    let t = Instant::now();
    match asyncify::transform(module) {
        Ok(bytes) => {
            log::info!(
                "{node}: the guest is snapshottable: {version} --asyncify took {:.1?}, {} KiB -> {} KiB",
                t.elapsed(),
                module.len() / 1024,
                bytes.len() / 1024
            );
            if let Some(p) = cache {
                if let Err(e) = crate::listening::write_atomically(&p, &bytes) {
                    log::warn!("{node}: cannot cache the transformed guest in {}: {e}", p.display());
                }
            }
            bytes.into()
        }
        Err(e) => fallback(e.to_string()),
    }
}

/// While this node is a backup or joiner, a client that reaches the guest's
/// port is accepted and closed at once (a raw TCP guest has no error reply
/// to send; the key-value service answers `-READONLY`), and the node logs
/// who the primary is: once, then at most every [`REFUSED_LOG_EVERY`] with
/// the count since. Aborted when the guest goes live (`WasmMachine::live_world`).
async fn refuse_while_backup(rc: Rep, listener: tokio::net::TcpListener) {
    let mut last_log: Option<Instant> = None;
    let mut refused = 0u64;
    loop {
        let Ok((conn, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        drop(conn);
        refused += 1;
        if last_log.is_none_or(|t| t.elapsed() >= REFUSED_LOG_EVERY) {
            let r = rc.borrow();
            let primary = r.primary_client.clone().unwrap_or_else(|| "not known yet".into());
            log::warn!(
                "{}: closed {refused} guest connection(s) (the latest from {peer}): this node is a backup; the primary serves clients at {primary}",
                r.opts.node
            );
            last_log = Some(Instant::now());
            refused = 0;
        }
    }
}

/// How often a backup logs the guest connections it closed.
const REFUSED_LOG_EVERY: Duration = Duration::from_secs(10);

/// Primary: the recording guest's events enter the log under the seqs the
/// guest gave them.
async fn events(rc: Rep, mut rx: UnboundedReceiver<(Seq, Vec<u8>)>, release: Arc<Release>, clock: Rc<RefCell<SeqClock>>) {
    while let Some(first) = rx.recv().await {
        let mut r = rc.borrow_mut();
        let mut next = Some(first);
        let (mut last, mut n) = (0, 0);
        while let Some((seq, ev)) = next {
            (last, n) = (seq, n + 1);
            let s = r.core.append();
            assert_eq!(s, seq, "the guest's event seq and the log's seq agree");
            r.machine.retain(seq, &ev);
            if r.push_entry(seq, EntryKind::Event, ev.len(), |o| o.extend_from_slice(&ev)) {
                if let Some((conn, _)) = r.core.stream_from() {
                    r.seal_batch(conn);
                }
            }
            next = rx.try_recv().ok();
        }
        let upto = r.core.release_upto();
        let mut clock = clock.borrow_mut();
        clock.appended(last, n);
        clock.released(upto);
        release.advance(upto);
    }
}

/// Keeps the guest's thread and the core in step: the output gate's release
/// point and flow control on a primary; replay progress on a backup.
async fn progress(rc: Rep, shared: Arc<WasmShared>, clock: Rc<RefCell<SeqClock>>) {
    let wakers = rc.borrow().io.wakers.clone();
    let mut waited = Waited::default();
    let mut serving_since: Option<Instant> = None;
    loop {
        let notified = wakers.gate.notified();
        {
            let mut r = rc.borrow_mut();
            if r.core.is_primary() && r.machine.deferred.is_some() {
                start_when_protected(&mut r, &mut waited);
            }
            if r.core.is_primary() && shared.listener.is_some() {
                unused_listener(&r, &shared, &mut serving_since);
            }
            if r.core.is_primary() {
                let upto = r.core.release_upto();
                clock.borrow_mut().released(upto);
                shared.release.advance(upto);
                shared.intake.set(r.intake_open());
            } else if let Some(done) = r.machine.replayed() {
                if let Some(s) = r.machine.loading_upto {
                    if done >= s {
                        r.machine.loading_upto = None;
                        log::info!("{}: the guest replayed the retained log up to seq {s}", r.opts.node);
                        r.feed(Event::SnapshotLoaded { seq: s });
                    }
                } else if done > r.core.status().executed {
                    r.feed(Event::Executed { upto: done });
                }
            }
        }
        rc.borrow_mut().pump();
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(Duration::from_millis(2)) => {}
        }
    }
}

/// How long a live guest may leave its listener unused before the node says so.
const LISTENER_UNUSED_WARN: Duration = Duration::from_secs(10);

/// A guest given `--guest-listen` that never accepts on fd 3 (nor polls it)
/// leaves its clients in the kernel's backlog: say so, once.
fn unused_listener(r: &Replica<WasmMachine>, shared: &WasmShared, since: &mut Option<Instant>) {
    let t = *since.get_or_insert_with(Instant::now);
    if t.elapsed() < LISTENER_UNUSED_WARN || shared.listener_used.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    // Once: the flag stands in for "told" from here on.
    shared.listener_used.store(true, std::sync::atomic::Ordering::Relaxed);
    let addr = shared.listener.as_ref().and_then(|l| l.local_addr().ok()).map_or_else(|| "?".into(), |a| a.to_string());
    log::warn!(
        "{}: the guest has not accepted a connection on its listener (fd 3, --guest-listen {addr}) in {} s: clients wait in the kernel's backlog. A server must take its listening socket from fd 3 (as with systemd socket activation); a program that serves no clients runs without --guest-listen",
        r.opts.node,
        LISTENER_UNUSED_WARN.as_secs()
    );
}

/// How a primary waiting for its backup has said so.
#[derive(Default)]
struct Waited {
    said: u32,
    next: Option<Instant>,
}

/// A command-style guest's primary: starts the guest once its backup is in
/// sync; until then says what it waits for — at once, then at growing
/// intervals.
fn start_when_protected(r: &mut Replica<WasmMachine>, waited: &mut Waited) {
    let s = r.core.status();
    let since = r.machine.deferred.expect("checked by the caller");
    if s.protected {
        let next = s.last_seq + 1;
        log::info!(
            "{}: backup {} is in sync: starting the guest (it replays it from seq {next}); waited {:.1?}",
            r.opts.node,
            s.peer.as_deref().unwrap_or("?"),
            since.elapsed()
        );
        if let Err(e) = r.machine.start_deferred(next) {
            r.halt(&format!("cannot start the guest: {e}"));
        }
        return;
    }
    if waited.next.is_none_or(|t| Instant::now() >= t) {
        let doing = match &s.peer {
            Some(b) => format!("backup {b:?} is joining"),
            None => "no backup has joined yet".to_string(),
        };
        log::info!(
            "{}: waiting for a backup before starting the guest (for {:.0?}; {doing}): a command-style guest (no --guest-listen) starts protected — start another node of cluster {:?}, or pass --start-unprotected",
            r.opts.node,
            since.elapsed(),
            r.opts.cluster
        );
        waited.said += 1;
        let secs = (5u64 << waited.said.min(6)).min(300);
        waited.next = Some(Instant::now() + Duration::from_secs(secs));
    }
}

/// The current guest ended. Returns the exit code when the node should end.
async fn ended(rc: &Rep, end: Result<GuestEnd, String>) -> Option<i32> {
    let node = rc.borrow().opts.node.clone();
    let end = match end {
        Ok(e) => e,
        Err(e) => {
            log::error!("{node}: the guest could not run: {e}");
            return Some(1);
        }
    };
    let code = match &end.ending {
        Ending::Exited(c) => *c,
        Ending::Trapped { message, .. } => {
            log::error!("{node}: the guest trapped: {message}");
            TRAP_EXIT_CODE
        }
        Ending::Diverged(d) => {
            rc.borrow_mut().halt(&format!("divergence: {d}"));
            return None;
        }
        Ending::Stopped | Ending::EndOfLog => return None,
        Ending::HostFailure(m) => {
            log::error!("{node}: host failure under the guest: {m}");
            return Some(1);
        }
    };
    // A guest started to replay that never went live ended in replay: this
    // backup reached the end the primary recorded.
    let recorded_here = !(rc.borrow().machine.replays() && end.went_live_at_call.is_none());
    if recorded_here {
        wait_backup_caught_up(rc).await;
        log::info!("{node}: the guest ended (exit code {code}) after {} host calls, {} events", end.calls, end.events);
    } else {
        log::info!("{node}: the backup replayed the guest to the same end: exit code {code}, {} events", end.events);
    }
    Some(code)
}

/// Before a primary whose guest ended exits, its in-sync backup should hold
/// (and have replayed) the whole log, so it confirms the same end.
async fn wait_backup_caught_up(rc: &Rep) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let s = rc.borrow().core.status();
        if !s.peer_in_sync || s.lag == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
