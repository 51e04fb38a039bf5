//! A small logger to stderr: UTC time, level, message. The level comes from
//! `--log-level` or `UNDERSTUDY_LOG` (error, warn, info, debug, trace).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

struct Stderr {
    level: log::LevelFilter,
}

impl log::Log for Stderr {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.level && !m.target().starts_with("mio")
    }

    fn log(&self, rec: &log::Record) {
        if !self.enabled(rec.metadata()) {
            return;
        }
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let s = d.as_secs() % 86_400;
        let line = format!(
            "{:02}:{:02}:{:02}.{:03} {:5} {}\n",
            s / 3600,
            s / 60 % 60,
            s % 60,
            d.subsec_millis(),
            rec.level(),
            rec.args()
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

pub fn init(level: Option<&str>) -> Result<(), String> {
    let spec = level.map(str::to_string).or_else(|| std::env::var("UNDERSTUDY_LOG").ok()).unwrap_or_else(|| "info".into());
    let level: log::LevelFilter =
        spec.parse().map_err(|_| format!("--log-level {spec:?}: expected one of error, warn, info, debug, trace, off"))?;
    log::set_boxed_logger(Box::new(Stderr { level })).map_err(|e| e.to_string())?;
    log::set_max_level(level);
    Ok(())
}
