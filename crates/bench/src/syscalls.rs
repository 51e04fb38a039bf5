//! Syscalls a process makes during a run, counted by `perf stat` on the
//! `raw_syscalls:sys_enter` tracepoint (every syscall of every thread).
//! Without perf, or without the right to trace, the count is absent and
//! the tables say so. A leaf module.

use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

/// Whether `perf stat` can count syscalls here (asked once).
fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        Command::new("perf")
            .args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "--", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A count in progress: `perf stat` attached to one process.
pub struct Counting(Child);

impl Counting {
    pub fn start(pid: u32) -> Option<Counting> {
        if !available() {
            return None;
        }
        let child = Command::new("perf")
            .args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        // perf attaches before it counts; what it misses of the first
        // moments is nothing: the load starts after this returns.
        std::thread::sleep(std::time::Duration::from_millis(100));
        Some(Counting(child))
    }

    /// Stops counting (SIGINT, as perf expects) and returns the count.
    pub fn stop(self) -> Option<u64> {
        let id = self.0.id().to_string();
        let _ = Command::new("kill").args(["-INT", &id]).status();
        let out = self.0.wait_with_output().ok()?;
        parse(&String::from_utf8_lossy(&out.stderr))
    }
}

/// The count from `perf stat -x,` output: `COUNT,,raw_syscalls:sys_enter,…`.
fn parse(text: &str) -> Option<u64> {
    text.lines().find(|l| l.contains("raw_syscalls:sys_enter"))?.split(',').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_perf_stat_csv() {
        assert_eq!(super::parse("123456,,raw_syscalls:sys_enter,2000,100.00,,\n"), Some(123456));
        assert_eq!(super::parse("<not counted>,,raw_syscalls:sys_enter,0,0.00,,\n"), None);
        assert_eq!(super::parse(""), None);
    }
}
