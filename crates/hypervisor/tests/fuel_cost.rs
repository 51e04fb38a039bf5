//! What fuel (the deterministic instruction counter) costs the CPU-bound
//! guest. Prints the measurement (thread CPU time, so other load on the
//! machine does not distort it); asserts only that both runs compute the
//! same thing and that fuel counts.

mod common;

use common::config;
use understudy_hypervisor::{run, Console, Ending, Fuel, GuestEnd, LiveWorld, MemorySink, Mode, RunOptions};

/// CPU time of the calling thread, which is the guest's thread.
fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) }, 0);
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn timed(size: &str, fuel: bool) -> (f64, GuestEnd) {
    let mut cfg = config("compress").with_args([size]);
    cfg.fuel = Fuel { enabled: fuel, limit: None };
    let world = LiveWorld::new(MemorySink::default()).with_console(Console::Discard, Console::Discard);
    let t = thread_cpu_secs();
    let end = run(&cfg, Mode::Record(world), RunOptions::default()).unwrap();
    let secs = thread_cpu_secs() - t;
    assert_eq!(end.ending, Ending::Exited(0));
    assert_eq!(end.fuel_consumed.is_some(), fuel);
    (secs, end)
}

#[test]
fn fuel_cost_on_the_cpu_bound_guest() {
    let best = |size: &str, fuel: bool| (0..3).map(|_| timed(size, fuel)).min_by(|a, b| a.0.total_cmp(&b.0)).unwrap();
    // Compilation and startup, measured on a 1-byte input, are left out.
    let (start_off, _) = best("1", false);
    let (start_on, _) = best("1", true);
    let (off, end_off) = best("10000000", false);
    let (on, end_on) = best("10000000", true);
    assert_eq!(end_off.outputs_digest, end_on.outputs_digest, "fuel does not change what the guest computes");
    let fuel = end_on.fuel_consumed.unwrap();
    let (off, on) = (off - start_off, on - start_on);
    println!(
        "fuel cost (compress, 10 MB, CPU time without compile+start): off {off:.3}s, on {on:.3}s, +{:.0}%; {fuel} fuel units; compile+start {start_off:.3}s / {start_on:.3}s",
        100.0 * (on - off) / off
    );
    assert!(fuel > 1_000_000_000);
}
