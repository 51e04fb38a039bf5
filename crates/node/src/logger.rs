//! A small logger to stderr, for the `understudy` binary and programs
//! built on this library. Text (the default), one line per message:
//!
//! ```text
//! 2026-11-29T23:59:01.123Z a INFO  a: listening: clients on 127.0.0.1:6379 …
//! ```
//!
//! RFC 3339 UTC time with milliseconds, the node's name when the process
//! runs a node (`--node` of kv and wasm; `arbiter` for the arbiter), the
//! level and the message; a message of several lines gives several lines,
//! each with the same prefix. `--log-format json` prints one object per
//! line instead: `{"ts":"…","level":"info","node":"a","msg":"…"}` (`node`
//! is null when the process runs no node). The level comes from
//! `--log-level` or `UNDERSTUDY_LOG` (error, warn, info, debug, trace).

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// TIME NODE LEVEL MESSAGE, one line per line of the message.
    #[default]
    Text,
    /// One JSON object per line: {"ts","level","node","msg"}.
    Json,
}

struct Stderr {
    level: log::LevelFilter,
    format: Format,
    node: Option<String>,
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
        let ts = rfc3339(d.as_secs(), d.subsec_millis());
        let line = render(self.format, &ts, rec.level(), self.node.as_deref(), &rec.args().to_string());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// The bytes written for one message.
fn render(format: Format, ts: &str, level: log::Level, node: Option<&str>, msg: &str) -> String {
    // Messages from the node's library code name the node themselves
    // ("a: …"); the line already says it: once is enough.
    let msg = node.and_then(|n| msg.strip_prefix(n)).and_then(|m| m.strip_prefix(": ")).unwrap_or(msg);
    match format {
        Format::Json => {
            // Fields in this order (serde_json's maps sort keys); each value
            // escaped by serde_json.
            let q = |v: Option<&str>| serde_json::to_string(&v).expect("a string serializes");
            let level = level.as_str().to_ascii_lowercase();
            format!("{{\"ts\":{},\"level\":{},\"node\":{},\"msg\":{}}}\n", q(Some(ts)), q(Some(&level)), q(node), q(Some(msg)))
        }
        Format::Text => {
            let prefix = match node {
                Some(n) => format!("{ts} {n} {level:5} "),
                None => format!("{ts} {level:5} "),
            };
            let mut s = String::with_capacity(msg.len() + prefix.len() + 1);
            for l in msg.split('\n') {
                s.push_str(&prefix);
                s.push_str(l);
                s.push('\n');
            }
            s
        }
    }
}

/// `2026-11-29T23:59:01.123Z` for `secs` since the Unix epoch (UTC).
pub fn rfc3339(secs: u64, millis: u32) -> String {
    let (y, m, d) = civil_from_days(secs / 86_400);
    let s = secs % 86_400;
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", s / 3600, s / 60 % 60, s % 60)
}

/// The proleptic Gregorian date of day `days` after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for days ≥ 0).
fn civil_from_days(days: u64) -> (u64, u32, u32) {
    // Shift the epoch to 0000-03-01, so that the leap day ends each
    // 400-year era's years.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1st
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Installs the logger. `level`: `--log-level`, else `$UNDERSTUDY_LOG`,
/// else info. `node`: the name each line carries.
pub fn init(level: Option<&str>, format: Format, node: Option<String>) -> Result<(), String> {
    let spec = level.map(str::to_string).or_else(|| std::env::var("UNDERSTUDY_LOG").ok()).unwrap_or_else(|| "info".into());
    let level: log::LevelFilter = spec.parse().map_err(|_| {
        format!("--log-level {spec:?} (or $UNDERSTUDY_LOG): expected one of error, warn, info, debug, trace, off")
    })?;
    log::set_boxed_logger(Box::new(Stderr { level, format, node })).map_err(|e| e.to_string())?;
    log::set_max_level(level);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_the_civil_calendar() {
        // Checked against `date -u -d @SECS +%FT%T`.
        for (secs, want) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, "2000-02-29T00:00:00.000Z"), // a leap day of a century divisible by 400
            (951_868_799, "2000-02-29T23:59:59.000Z"),
            (951_868_800, "2000-03-01T00:00:00.000Z"),
            (1_709_164_799, "2024-02-28T23:59:59.000Z"),
            (1_709_164_800, "2024-02-29T00:00:00.000Z"),
            (1_709_251_200, "2024-03-01T00:00:00.000Z"),
            (1_767_225_599, "2025-12-31T23:59:59.000Z"),
            (1_767_225_600, "2026-01-01T00:00:00.000Z"),
            (1_795_996_741, "2026-11-29T23:59:01.000Z"),
            (4_107_542_399, "2100-02-28T23:59:59.000Z"), // 2100 is not a leap year
            (4_107_542_400, "2100-03-01T00:00:00.000Z"),
        ] {
            assert_eq!(rfc3339(secs, 0), want, "{secs}");
        }
        assert_eq!(rfc3339(1_795_996_741, 123), "2026-11-29T23:59:01.123Z");
        assert_eq!(rfc3339(59, 7), "1970-01-01T00:00:59.007Z");
    }

    #[test]
    fn consecutive_days_advance_the_date_by_one() {
        let mut prev = civil_from_days(0);
        for day in 1..200_000 {
            let (y, m, d) = civil_from_days(day);
            let next_day = (y, m, d) == (prev.0, prev.1, prev.2 + 1);
            let next_month = d == 1 && ((y, m) == (prev.0, prev.1 + 1) || (y == prev.0 + 1 && m == 1 && prev.1 == 12));
            assert!(next_day || next_month, "day {day}: {prev:?} then {:?}", (y, m, d));
            let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let month_len = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m as usize - 1];
            assert!(d <= month_len, "{y}-{m}-{d}");
            prev = (y, m, d);
        }
    }

    #[test]
    fn text_lines_carry_time_node_and_level() {
        let ts = "2026-11-29T23:59:01.123Z";
        assert_eq!(
            render(Format::Text, ts, log::Level::Info, Some("a"), "serving"),
            "2026-11-29T23:59:01.123Z a INFO  serving\n"
        );
        assert_eq!(render(Format::Text, ts, log::Level::Warn, None, "x"), "2026-11-29T23:59:01.123Z WARN  x\n");
        // The node named once: its own "a: " at the message's start goes.
        assert_eq!(
            render(Format::Text, ts, log::Level::Info, Some("a"), "a: joined primary \"b\""),
            "2026-11-29T23:59:01.123Z a INFO  joined primary \"b\"\n"
        );
        assert_eq!(
            render(Format::Text, ts, log::Level::Info, Some("a"), "ab: not the node"),
            "2026-11-29T23:59:01.123Z a INFO  ab: not the node\n"
        );
        // Every line of a message carries the prefix (grep by node works).
        assert_eq!(
            render(Format::Text, ts, log::Level::Error, Some("arbiter"), "one\ntwo"),
            "2026-11-29T23:59:01.123Z arbiter ERROR one\n2026-11-29T23:59:01.123Z arbiter ERROR two\n"
        );
    }

    #[test]
    fn json_lines_are_one_escaped_object_each() {
        let ts = "2026-11-29T23:59:01.123Z";
        let msg = "quote \" backslash \\ newline\n tab\t bell\u{7} é";
        let line = render(Format::Json, ts, log::Level::Warn, Some("b"), msg);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "{line:?}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v, serde_json::json!({"ts": ts, "level": "warn", "node": "b", "msg": msg}));
        assert!(
            line.starts_with(r#"{"ts":"2026-11-29T23:59:01.123Z","level":"warn","node":"b","msg":"quote \" backslash"#),
            "{line}"
        );
        let v: serde_json::Value = serde_json::from_str(&render(Format::Json, ts, log::Level::Info, None, "m")).unwrap();
        assert_eq!(v["node"], serde_json::Value::Null);
    }
}
