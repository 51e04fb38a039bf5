//! Section 6: resident memory. The KV primary and backup holding 1M keys
//! with 100-byte values next to Redis and its replica holding the same; the
//! WebAssembly hypervisor's resident memory beyond its guest's linear memory.
//! (The primary's peak during a 1 GiB join is measured by the join section.)

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::json;

use super::load::{call, fill};
use super::procfs::linear_memory_rss;
use super::stats::mib;
use super::sys::{metric, scrape, wait_redis_replica, Env};
use super::{Opts, Report};

fn wait(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !f() {
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

pub fn run(env: &Env, o: &Opts, report: &mut Report) -> Result<()> {
    let keys: u64 = if o.quick { 100_000 } else { 1_000_000 };
    let a = env.kv("mem", "a", &[])?;
    env.wait_serving("mem", &a)?;
    let b = env.kv("mem", "b", &[])?;
    env.wait_in_sync("mem", "b")?;
    let r = env.redis("mem-redis", None)?;
    let rr = env.redis("mem-redis-replica", Some(&r.addr))?;
    wait_redis_replica(&rr.addr, Duration::from_secs(30))?;
    let empty = [a.rss(), b.rss(), r.rss(), rr.rss()];
    report.say(format!("Memory: {keys} keys with 100-byte values into the KV pair and into Redis"));
    fill(&a.addr, "key:", keys, 100, 1000)?;
    fill(&r.addr, "key:", keys, 100, 1000)?;
    let m = a.metrics.clone().unwrap_or_default();
    wait("the KV backup to catch up", Duration::from_secs(120), || {
        scrape(&m).is_ok_and(|m| metric(&m, "understudy_backup_lag_entries") == 0.0)
    })?;
    wait("the Redis replica to catch up", Duration::from_secs(120), || {
        call(&rr.addr, &["DBSIZE"]).is_ok_and(|s| s.contains(&keys.to_string()))
    })?;
    std::thread::sleep(Duration::from_millis(500));
    let full = [a.rss(), b.rss(), r.rss(), rr.rss()];
    let names = ["understudy primary", "understudy backup", "redis primary", "redis replica"];
    let mut text = format!("Resident memory, {keys} keys × 100-byte values (VmRSS; empty process in parentheses)\n");
    let mut rows = Vec::new();
    for i in 0..4 {
        text.push_str(&format!("  {:<20} {:>12}  ({})\n", names[i], mib(full[i] as f64), mib(empty[i] as f64)));
        rows.push(json!({"process": names[i], "rss_bytes": full[i], "empty_rss_bytes": empty[i]}));
    }
    let primary_ratio = full[0] as f64 / full[2] as f64;
    let backup_ratio = full[1] as f64 / full[3] as f64;
    text.push_str(&format!("  primary / Redis primary {primary_ratio:.2}; backup / Redis replica {backup_ratio:.2}\n"));
    report.target(
        "KV primary RSS / Redis primary (1M × 100 B)",
        "≤ 1.2",
        primary_ratio,
        primary_ratio <= 1.2,
        format!("{primary_ratio:.2}"),
    );
    report.target(
        "KV backup RSS / Redis replica (1M × 100 B)",
        "≤ 1.2",
        backup_ratio,
        backup_ratio <= 1.2,
        format!("{backup_ratio:.2}"),
    );
    drop((a, b, r, rr));

    // The hypervisor beyond the guest's linear memory.
    let w = env.wasm_alone("mem-wasm", &o.guests.join("kvserver.wasm"), true, &[], false)?;
    let addr = w.addr.clone();
    let wkeys = keys / 10;
    fill(&addr, "key:", wkeys, 100, 1000)?;
    std::thread::sleep(Duration::from_millis(300));
    let total = w.rss();
    let (reserved, linear) = linear_memory_rss(w.pid).unwrap_or((0, 0));
    let beyond = total.saturating_sub(linear);
    text.push_str(&format!(
        "  wasm kvserver, unprotected, {wkeys} keys: RSS {}, of which guest linear memory {} resident of {}: hypervisor beyond it {}\n",
        mib(total as f64),
        mib(linear as f64),
        mib(reserved as f64),
        mib(beyond as f64)
    ));
    report.text(text);
    report.section(
        "memory",
        json!({
            "keys": keys, "value_bytes": 100, "rows": rows,
            "primary_over_redis": primary_ratio, "backup_over_redis_replica": backup_ratio,
            "wasm": {"keys": wkeys, "rss_bytes": total, "linear_memory_rss_bytes": linear, "linear_memory_bytes": reserved, "hypervisor_beyond_guest_bytes": beyond},
        }),
    );
    Ok(())
}
