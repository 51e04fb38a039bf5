//! Progress of long transfers (snapshots), logged about once a second.

use std::time::Instant;

pub struct Progress {
    what: String,
    total_hint: u64,
    done: u64,
    start: Instant,
    last_log: Instant,
}

impl Progress {
    pub fn new(what: String, total_hint: u64) -> Self {
        let now = Instant::now();
        Progress { what, total_hint, done: 0, start: now, last_log: now }
    }

    pub fn done(&self) -> u64 {
        self.done
    }

    pub fn add(&mut self, n: u64) {
        self.done += n;
        if self.last_log.elapsed().as_millis() >= 1000 {
            self.last_log = Instant::now();
            let secs = self.start.elapsed().as_secs_f64().max(1e-3);
            log::info!(
                "{}: {} of ~{} ({}/s)",
                self.what,
                human(self.done),
                human(self.total_hint),
                human((self.done as f64 / secs) as u64)
            );
        }
    }
}

/// Bytes as B, KiB, MiB or GiB.
pub fn human(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
