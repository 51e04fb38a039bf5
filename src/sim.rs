//! `understudy sim`: the seeded simulator of the protocol core, seed after
//! seed. A seed that breaks an invariant, or panics in the core, is reported
//! with how to replay it, and the run goes on to the next seed; the exit
//! status says whether any seed failed.

use std::panic::PanicHookInfo;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct SimArgs {
    /// Run just this seed and print its trace on failure.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of seeds to run.
    #[arg(long, default_value_t = 1000)]
    pub seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    pub start: u64,
    /// Milliseconds of faults per run (then the network heals).
    #[arg(long, default_value_t = understudy_sim::SimConfig::default().run_ms)]
    pub run_ms: u64,
    /// The nemesis also stops nodes as an operator does (SIGTERM,
    /// `understudy switchover`).
    #[arg(long)]
    pub planned_stops: bool,
    /// Every node runs with `--appendfsync always` on a simulated disk; the
    /// nemesis also cuts the power of one node or of the whole cluster,
    /// tearing and corrupting what was not synced.
    #[arg(long)]
    pub durable: bool,
    /// For tests of this command: panic inside the run of this seed, as a
    /// broken invariant in the protocol core would.
    #[arg(long, value_name = "SEED", hide = true)]
    pub panic_on_seed: Option<u64>,
}

pub fn sim(a: SimArgs) -> Result<ExitCode> {
    let cfg =
        understudy_sim::SimConfig { run_ms: a.run_ms, planned_stops: a.planned_stops, durable: a.durable, ..Default::default() };
    let seeds = match a.seed {
        Some(s) => s..s + 1,
        None => a.start..a.start + a.seeds,
    };
    // A panic inside a seed's run is recorded by this hook, instead of being
    // printed in the middle of the output, and reported with its seed.
    let last_panic = Arc::new(Mutex::new(None::<String>));
    let previous_hook = std::panic::take_hook();
    let record = last_panic.clone();
    std::panic::set_hook(Box::new(move |info| {
        *record.lock().unwrap_or_else(PoisonError::into_inner) = Some(describe(info));
    }));
    let (mut ok, mut failed, mut panicked, mut writes, mut reads) = (0u64, 0u64, 0u64, 0usize, 0u64);
    let (mut losses, mut recoveries, mut claims, mut wipes, mut partial) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let t0 = std::time::Instant::now();
    for seed in seeds.clone() {
        let run = || {
            if a.panic_on_seed == Some(seed) {
                panic!("a deliberate panic (--panic-on-seed {seed})");
            }
            understudy_sim::run(seed, &cfg)
        };
        match std::panic::catch_unwind(run) {
            Ok(Ok(r)) => {
                ok += 1;
                writes += r.writes_acked;
                reads += r.reads_released;
                losses += r.power_losses;
                recoveries += r.recoveries;
                claims += r.claims_from_disk;
                wipes += r.disk_wipes;
                partial += r.partial_joins;
            }
            Ok(Err(f)) => {
                failed += 1;
                println!("{f}\n");
            }
            Err(_) => {
                failed += 1;
                panicked += 1;
                let what = last_panic.lock().unwrap_or_else(PoisonError::into_inner).take();
                let what = what.unwrap_or_else(|| "(no message)".into());
                println!("seed={seed}: panicked in the protocol core: {what}\n  replay it with: understudy sim --seed {seed}\n");
            }
        }
        if (ok + failed) % 100 == 0 {
            eprintln!("{} seeds, {failed} failed, {:.0?}", ok + failed, t0.elapsed());
        }
    }
    std::panic::set_hook(previous_hook);
    println!(
        "simulated seeds {}..{}: {ok} passed, {failed} failed ({panicked} panicked); {writes} acknowledged writes and {reads} \
         reads checked in {:.1?}",
        seeds.start,
        seeds.end,
        t0.elapsed()
    );
    if a.durable {
        println!(
            "disks: {losses} whole-cluster power losses, {recoveries} recoveries from disk, {claims} claims from disk, \
             {partial} partial catch-ups, {wipes} disks that did not load (moved away, the node started empty)"
        );
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// A panic's message and where it happened, with a backtrace when
/// `RUST_BACKTRACE` asks for one.
fn describe(info: &PanicHookInfo) -> String {
    let payload = info.payload();
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(a panic without a message)".into());
    let at = info.location().map(|l| format!(" at {l}")).unwrap_or_default();
    let bt = std::backtrace::Backtrace::capture();
    match bt.status() {
        std::backtrace::BacktraceStatus::Captured => format!("{msg}{at}\n{bt}"),
        _ => format!("{msg}{at}"),
    }
}
