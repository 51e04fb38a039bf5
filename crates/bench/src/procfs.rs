//! What the kernel tells about a process under test: resident memory, CPU
//! time, the resident part of a guest's linear memory. A leaf module.

use std::time::Duration;

/// Resident memory of a process (VmRSS), in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User plus system CPU time of a process, all threads.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    // USER_HZ is 100 in the Linux user ABI on every architecture we run on.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// A WebAssembly guest's linear memory in a process: wasmtime reserves
/// gigabytes of address space for it (far more than any other mapping);
/// the accessible part is a read-write mapping right below the inaccessible
/// rest. Returns (accessible bytes, resident bytes) of that part.
pub fn linear_memory_rss(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    // (start, end, writable, rss) of every mapping.
    let mut maps: Vec<(u64, u64, bool, u64)> = Vec::new();
    for line in s.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                let writable = line.split_whitespace().nth(1).is_some_and(|p| p.starts_with("rw"));
                maps.push((a, b, writable, 0));
                continue;
            }
        }
        if let Some(v) = line.strip_prefix("Rss:") {
            let rss = v.split_whitespace().next()?.parse::<u64>().ok()? * 1024;
            if let Some(m) = maps.last_mut() {
                m.3 = rss;
            }
        }
    }
    let largest = maps.iter().max_by_key(|m| m.1 - m.0)?;
    let below = maps.iter().find(|m| m.1 == largest.0 && m.2)?;
    Some((below.1 - below.0, below.3))
}

/// Context switches, voluntary and not, of every thread of a process (the
/// threads alive now: one that ended took its count along).
pub fn ctx_switches(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Ok(s) = std::fs::read_to_string(task.path().join("status")) else { continue };
        for line in s.lines() {
            if let Some(v) =
                line.strip_prefix("voluntary_ctxt_switches:").or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>().ok()?;
            }
        }
    }
    Some(total)
}
