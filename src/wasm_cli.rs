//! `understudy wasm` and `understudy replay`: the machine level from the
//! command line — replicated, standalone (recorded or not), and replayed.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use understudy_hypervisor::fs::MapDir;
use understudy_hypervisor::{
    record_checkpointed, replay_file, run, Console, Ending, EventSink, Fuel, GuestConfig, GuestEnd, LiveWorld, Mode,
    ReplayOptions, RunOptions, Stdin,
};
use understudy_node::wasm::run::{run_wasm, WasmNodeOptions, TRAP_EXIT_CODE};

use crate::flags::{node_options, NodeFlags};

#[derive(Args)]
pub struct WasmArgs {
    /// The guest module (wasm32-wasip1).
    pub guest: PathBuf,
    /// Standalone: record the run to this log (replay it with `understudy replay`).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Replicated: the cluster this node belongs to (with --node, --arbiter, --repl-listen).
    #[arg(long)]
    pub cluster: Option<String>,
    #[arg(long)]
    pub node: Option<String>,
    #[arg(long)]
    pub arbiter: Option<String>,
    /// Where clients reach the guest's listening socket (its fd 3). Port 0:
    /// any free port, reported in the log (and in DIR/listening.json).
    /// Without it the guest has no listener: a command-style program.
    #[arg(long, value_parser = crate::flags::listen_addr)]
    pub guest_listen: Option<SocketAddr>,
    /// Replicated, without --guest-listen: start the guest at once instead
    /// of once a backup is in sync (it runs unprotected until one joins).
    #[arg(long)]
    pub start_unprotected: bool,
    #[arg(long, value_parser = crate::flags::listen_addr)]
    pub repl_listen: Option<SocketAddr>,
    /// State directory (replicated); standalone, where listening.json goes.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Environment variable for the guest, K=V (repeatable).
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Map a host directory into the guest, HOST_DIR::GUEST_PATH (repeatable;
    /// GUEST_PATH may be /). The guest finds it as a preopened directory.
    /// Replicated: each node has its own copy; a joining node's is emptied
    /// and filled with the primary's.
    #[arg(long = "map-dir", value_name = "HOST_DIR::GUEST_PATH", value_parser = MapDir::parse)]
    pub map_dir: Vec<MapDir>,
    /// Bytes of file contents each --map-dir directory may hold (e.g. 10GiB):
    /// beyond, the guest's writes fail with ENOSPC, at the same call on every
    /// replica. Default: no limit but the host's disk.
    #[arg(long, value_parser = crate::flags::size_u64)]
    pub disk_bytes_max: Option<u64>,
    /// memory.grow beyond this fails, identically on every replica (e.g. 2GiB).
    #[arg(long, default_value_t = 1 << 30, value_parser = crate::flags::size_u64)]
    pub memory_bytes_max: u64,
    /// Count instructions (fuel): positions in divergence reports; costs guest CPU.
    #[arg(long)]
    pub fuel: bool,
    /// Trap the guest after this much fuel (implies --fuel).
    #[arg(long)]
    pub fuel_limit: Option<u64>,
    /// Record a hash of memory and globals with every event (replay checks each).
    #[arg(long)]
    pub verify_memory: bool,
    /// With --record: write a checkpoint of the running guest into the log
    /// every N events (`understudy replay --from-checkpoint` starts from the
    /// last one). Needs wasm-opt (Debian package binaryen).
    #[arg(long, value_name = "N", requires = "record")]
    pub checkpoint_every: Option<u64>,
    /// Read flags from this TOML file; its keys are the long flags
    /// (`cluster = "jobs"`, `map-dir = ["/srv/data::/data"]`). A flag on the
    /// command line or in the environment (UNDERSTUDY_<FLAG>, single-valued
    /// flags) wins over the file. GUEST.wasm and ARGS stay on the command line.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub common: NodeFlags,
    /// Arguments for the guest, after `--`.
    #[arg(last = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct ReplayArgs {
    /// The guest module that was recorded.
    pub guest: PathBuf,
    /// The log `understudy wasm --record` wrote.
    pub log: PathBuf,
    /// Replay even if the module or its configuration differ (to see where the runs part).
    #[arg(long)]
    pub ignore_fingerprint: bool,
    /// Start from the log's last checkpoint (see `wasm --checkpoint-every`)
    /// instead of the guest's start; the end is verified the same way.
    #[arg(long)]
    pub from_checkpoint: bool,
    /// This replay's copies of the directories the run mapped, as they were
    /// when it started: HOST_DIR::GUEST_PATH, the same GUEST_PATHs in the
    /// same order (the replay performs the run's file operations on them).
    #[arg(long = "map-dir", value_name = "HOST_DIR::GUEST_PATH", value_parser = MapDir::parse)]
    pub map_dir: Vec<MapDir>,
    /// Show the guest's own output: what it writes to stdout and stderr
    /// goes to this process's stdout and stderr as it is replayed (from
    /// the checkpoint on, with --from-checkpoint), before the summary.
    #[arg(long)]
    pub show_output: bool,
}

fn guest_config(a: &WasmArgs) -> Result<GuestConfig> {
    let module = std::fs::read(&a.guest).with_context(|| format!("reading the guest module {}", a.guest.display()))?;
    let mut g = GuestConfig::new(module).with_args(a.args.clone());
    g.program_name = a.guest.file_name().map_or_else(|| "guest.wasm".into(), |n| n.to_string_lossy().into_owned());
    for kv in &a.env {
        let Some((k, v)) = kv.split_once('=') else { bail!("--env {kv:?}: expected K=V") };
        g = g.with_env(k, v);
    }
    g.memory_bytes_max = a.memory_bytes_max;
    g.fuel = Fuel { enabled: a.fuel || a.fuel_limit.is_some(), limit: a.fuel_limit };
    // The listener is fd 3 when there is one.
    g.listener = a.guest_listen.is_some();
    g.map_dirs = a.map_dir.clone();
    if a.disk_bytes_max.is_some() && a.map_dir.is_empty() {
        bail!("--disk-bytes-max limits the directories of --map-dir, and none is given");
    }
    g.disk_bytes_max = a.disk_bytes_max;
    Ok(g)
}

/// A replicated guest's mapped directories: created when missing (a node
/// that joins gets the primary's contents anyway), and disjoint (each is
/// copied to a joiner on its own).
fn replicated_dirs(dirs: &[MapDir]) -> Result<()> {
    let mut seen: Vec<(PathBuf, &MapDir)> = Vec::new();
    for d in dirs {
        if !d.host.exists() {
            std::fs::create_dir_all(&d.host)
                .with_context(|| format!("--map-dir {}::{}: cannot create {}", d.host.display(), d.guest, d.host.display()))?;
            log::info!("created the empty directory {} for --map-dir {}::{}", d.host.display(), d.host.display(), d.guest);
        }
        let real = d.host.canonicalize().with_context(|| format!("--map-dir {}::{}", d.host.display(), d.guest))?;
        if let Some((_, other)) = seen.iter().find(|(p, _)| real.starts_with(p) || p.starts_with(&real)) {
            bail!(
                "--map-dir {}::{} and --map-dir {}::{} overlap: a replicated guest's mapped directories must be disjoint",
                other.host.display(),
                other.guest,
                d.host.display(),
                d.guest
            );
        }
        seen.push((real, d));
    }
    Ok(())
}

/// The process exit code for a guest's ending.
fn exit_code(end: &GuestEnd) -> i32 {
    match &end.ending {
        Ending::Exited(c) => *c,
        Ending::Trapped { message, .. } => {
            eprintln!("understudy: the guest trapped: {message}");
            TRAP_EXIT_CODE
        }
        Ending::Diverged(d) => {
            eprintln!("understudy: divergence: {d}");
            4
        }
        Ending::HostFailure(m) => {
            eprintln!("understudy: host failure: {m}");
            1
        }
        Ending::Stopped | Ending::EndOfLog => 1,
    }
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c & 0xff).unwrap_or(1))
}

/// Events counted and dropped: an unprotected, unrecorded run through the
/// same gate (the baseline a pair is compared with).
struct Discard(u64);

impl EventSink for Discard {
    fn append(&mut self, _event: &[u8]) -> u64 {
        self.0 += 1;
        self.0
    }
}

pub fn wasm(a: WasmArgs) -> Result<ExitCode> {
    let guest = guest_config(&a)?;
    if let Some(cluster) = a.cluster.clone() {
        for (missing, flag) in
            [(a.node.is_none(), "--node"), (a.arbiter.is_none(), "--arbiter"), (a.repl_listen.is_none(), "--repl-listen")]
        {
            if missing {
                bail!("a replicated guest (--cluster) needs {flag}");
            }
        }
        if a.record.is_some() {
            bail!("--record is for a standalone run; a replicated guest's log goes to its backup");
        }
        replicated_dirs(&a.map_dir)?;
        let rl = a.repl_listen.expect("checked");
        if a.start_unprotected && a.guest_listen.is_some() {
            bail!("--start-unprotected is for a command-style guest (without --guest-listen): a server starts at once anyway");
        }
        let node = node_options(
            cluster,
            a.node.clone().expect("checked"),
            a.arbiter.as_deref().expect("checked"),
            a.guest_listen.unwrap_or(rl),
            rl,
            a.dir.clone(),
            &a.common,
        )?;
        let c = run_wasm(WasmNodeOptions {
            node,
            guest,
            guest_listen: a.guest_listen,
            start_unprotected: a.start_unprotected,
            verify_memory: a.verify_memory,
        })?;
        return Ok(code(c));
    }
    if a.start_unprotected {
        bail!("--start-unprotected is for a replicated guest (--cluster): a standalone run is never protected");
    }
    let listener = match a.guest_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr).with_context(|| format!("cannot listen on --guest-listen {addr}"))?;
            let bound = l.local_addr().context("the guest's listening address")?;
            log::info!("the guest listens on {bound} (its fd 3)");
            if let Some(dir) = &a.dir {
                understudy_node::listening::announce_guest(dir, bound)
                    .with_context(|| format!("cannot write listening.json in --dir {}", dir.display()))?;
            }
            Some(l)
        }
        None => None,
    };
    let opts = RunOptions { verify_memory: a.verify_memory };
    let end = match &a.record {
        Some(log) => {
            if a.checkpoint_every == Some(0) {
                bail!("--checkpoint-every must be at least 1 (events between checkpoints)");
            }
            record_checkpointed(&guest, log, listener, opts, a.checkpoint_every)?
        }
        None => {
            let mut world = LiveWorld::new(Discard(0)).with_stdin(Stdin::Inherit);
            world.listener = listener;
            run(&guest, Mode::Record(world), opts)?
        }
    };
    Ok(code(exit_code(&end)))
}

pub fn replay(a: ReplayArgs) -> Result<ExitCode> {
    let module = std::fs::read(&a.guest).with_context(|| format!("reading the guest module {}", a.guest.display()))?;
    let opts = ReplayOptions {
        ignore_fingerprint: a.ignore_fingerprint,
        from_checkpoint: a.from_checkpoint,
        map_dirs: a.map_dir.clone(),
        console: a.show_output.then_some((Console::Inherit, Console::Inherit)),
        ..Default::default()
    };
    let rep = replay_file(&module, &a.log, &opts).with_context(|| format!("replaying {}", a.log.display()))?;
    let e = &rep.end;
    if let Some(seq) = rep.from_checkpoint {
        println!("resumed from the checkpoint at event {seq} (its memory and globals verified)");
    }
    println!("replayed {} events ({} host calls) of {}", e.events, e.calls, a.log.display());
    println!("ending: {:?}", e.ending);
    println!("outputs: {} bytes, digest {}", e.output_bytes, hex(&e.outputs_digest));
    println!("memory and globals: {}", hex(&e.state_hash));
    if rep.is_faithful() {
        println!("faithful: same events, outputs, ending, and final memory as recorded");
        Ok(ExitCode::SUCCESS)
    } else {
        for m in &rep.mismatches {
            println!("MISMATCH: {m}");
        }
        Ok(ExitCode::from(4))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
