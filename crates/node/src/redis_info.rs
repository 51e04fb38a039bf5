//! INFO and ROLE of the key-value service, in Redis's formats, from what
//! the node knows ([`NodeView`]).

use std::fmt::Write as _;

use understudy_core::RoleName;
use understudy_kv::resp::{write_array_len, write_bulk, write_int};
use understudy_kv::session::REDIS_VERSION;
use understudy_kv::Kv;

use crate::service::NodeView;

/// `HOST:PORT` (or `[V6]:PORT`) as Redis prints it: host and port apart.
fn host_port(addr: &str) -> (&str, &str) {
    let (h, p) = addr.rsplit_once(':').unwrap_or((addr, "0"));
    (h.trim_start_matches('[').trim_end_matches(']'), p)
}

/// A replication id for the current epoch: Redis's is 40 hex digits that
/// change when a replica becomes primary; ours names the cluster's epoch.
fn replid(node: &NodeView<'_, Kv>) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    node.cluster().hash(&mut h);
    format!("{:024x}{:016x}", h.finish(), node.status().epoch)
}

/// ROLE, as Redis answers it. Offsets are log seqs (entries), not bytes.
pub(crate) fn role(node: &NodeView<'_, Kv>, out: &mut Vec<u8>) {
    let s = node.status();
    if node.is_primary() {
        write_array_len(out, 3);
        write_bulk(out, b"master");
        write_int(out, s.last_seq as i64);
        match node.backup_client().filter(|_| s.peer_in_sync) {
            Some(addr) => {
                let (h, p) = host_port(addr);
                write_array_len(out, 1);
                write_array_len(out, 3);
                write_bulk(out, h.as_bytes());
                write_bulk(out, p.as_bytes());
                write_bulk(out, s.last_seq.saturating_sub(s.lag).to_string().as_bytes());
            }
            None => write_array_len(out, 0),
        }
    } else {
        let (h, p) = host_port(node.primary_client().unwrap_or("?:0"));
        let state = match s.role {
            RoleName::Backup | RoleName::GoingLive => "connected",
            RoleName::Joining => "sync",
            _ => "connecting",
        };
        write_array_len(out, 5);
        write_bulk(out, b"slave");
        write_bulk(out, h.as_bytes());
        write_int(out, p.parse().unwrap_or(0));
        write_bulk(out, state.as_bytes());
        write_int(out, s.last_seq as i64);
    }
}

/// INFO's replication section in Redis's format (offsets are log seqs),
/// then what understudy adds.
fn replication(node: &NodeView<'_, Kv>, t: &mut String) {
    let s = node.status();
    if node.is_primary() {
        let backup = node.backup_client().filter(|_| s.peer.is_some());
        let _ = write!(t, "# Replication\r\nrole:master\r\nconnected_slaves:{}\r\n", u8::from(backup.is_some()));
        if let Some(addr) = backup {
            let (h, p) = host_port(addr);
            let state = if s.peer_in_sync { "online" } else { "send_bulk" };
            let offset = s.last_seq.saturating_sub(s.lag);
            let _ = write!(t, "slave0:ip={h},port={p},state={state},offset={offset},lag=0\r\n");
        }
    } else {
        let (h, p) = host_port(node.primary_client().unwrap_or("?:0"));
        let up = matches!(s.role, RoleName::Backup | RoleName::GoingLive);
        let _ = write!(
            t,
            "# Replication\r\nrole:slave\r\nmaster_host:{h}\r\nmaster_port:{p}\r\nmaster_link_status:{}\r\nmaster_last_io_seconds_ago:0\r\nmaster_sync_in_progress:{}\r\nslave_read_repl_offset:{}\r\nslave_repl_offset:{}\r\nslave_priority:100\r\nslave_read_only:1\r\nreplica_announced:1\r\nconnected_slaves:0\r\n",
            if up { "up" } else { "down" },
            u8::from(s.role == RoleName::Joining),
            s.last_seq,
            s.executed,
        );
    }
    let _ = write!(
        t,
        "master_failover_state:no-failover\r\nmaster_replid:{}\r\nmaster_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:{}\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:0\r\nrepl_backlog_size:0\r\nrepl_backlog_first_byte_offset:0\r\nrepl_backlog_histlen:0\r\n",
        replid(node),
        s.last_seq
    );
}

/// Whether INFO's arguments ask for `name`: none (the default sections),
/// `all`, `everything`, `default`, or the name itself (case-insensitive).
fn wanted(sections: &[&[u8]], name: &str) -> bool {
    sections.is_empty()
        || sections.iter().any(|x| [name.as_bytes(), b"all", b"everything", b"default"].iter().any(|n| x.eq_ignore_ascii_case(n)))
}

/// `bytes` as Redis's `bytesToHuman`: 1.50K, 12.00M…
fn human(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes}B"),
        1024..1_048_576 => format!("{:.2}K", b / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.2}M", b / 1_048_576.0),
        _ => format!("{:.2}G", b / 1_073_741_824.0),
    }
}

/// `VmRSS` and `VmHWM` of this process, in bytes (0 where /proc lacks them).
fn memory() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |k| k * 1024)
    };
    (kib("VmRSS:"), kib("VmHWM:"))
}

/// INFO [section …]: Redis's sections with the figures understudy has,
/// then what it adds about replication.
pub(crate) fn info(node: &NodeView<'_, Kv>, sections: &[&[u8]]) -> String {
    let s = node.status();
    let stats = node.stats();
    let want = |name: &str| wanted(sections, name);
    let now_ms = crate::ctx::wall_us() / 1000;
    let uptime = now_ms.saturating_sub(stats.started_unix_ms) / 1000;
    let mut t = String::new();
    if want("server") {
        let port = node.listen_port();
        let _ = write!(
            t,
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\nos:{} {}\r\narch_bits:{}\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{port}\r\nserver_time_usec:{}\r\nuptime_in_seconds:{uptime}\r\nuptime_in_days:{}\r\nunderstudy_version:{}\r\nunderstudy_node:{}\r\nunderstudy_cluster:{}\r\n\r\n",
            std::env::consts::OS,
            std::env::consts::ARCH,
            usize::BITS,
            std::process::id(),
            node.run_id(),
            crate::ctx::wall_us(),
            uptime / 86_400,
            env!("CARGO_PKG_VERSION"),
            node.node(),
            node.cluster()
        );
    }
    if want("clients") {
        let _ = write!(t, "# Clients\r\nconnected_clients:{}\r\nblocked_clients:0\r\n\r\n", stats.clients_connected);
    }
    if want("memory") {
        // used_memory is the keyspace's own estimate (the same on both
        // replicas, what maxmemory bounds); the process's figures follow.
        let (rss, rss_peak) = memory();
        let kv = node.machine();
        let (used, peak, limit) = (kv.used_memory(), kv.used_memory_peak(), kv.maxmemory());
        let _ = write!(
            t,
            "# Memory\r\nused_memory:{used}\r\nused_memory_human:{}\r\nused_memory_rss:{rss}\r\nused_memory_rss_human:{}\r\nused_memory_peak:{peak}\r\nused_memory_peak_human:{}\r\nmaxmemory:{}\r\nmaxmemory_human:{}\r\nmaxmemory_policy:{}\r\nmem_allocator:libc\r\nunderstudy_rss_peak:{rss_peak}\r\n\r\n",
            human(used),
            human(rss),
            human(peak),
            limit.bytes,
            human(limit.bytes),
            limit.policy.name(),
        );
    }
    if want("persistence") {
        // Without --appendfsync the state lives in memory on both replicas
        // (README: guarantees); with it, the log is the AOF and the
        // snapshots the RDB files.
        let (aof, saves, last_save, extra) = match node.disk() {
            None => (0, 0, stats.started_unix_ms / 1000, String::new()),
            Some((mode, d)) => (
                1,
                d.snapshots,
                if d.last_snapshot_unix_s > 0 { d.last_snapshot_unix_s } else { stats.started_unix_ms / 1000 },
                format!(
                    "aof_last_write_status:ok\r\nunderstudy_appendfsync:{}\r\nunderstudy_synced_seq:{}\r\nunderstudy_syncs:{}\r\nunderstudy_last_snapshot_seq:{}\r\nunderstudy_last_snapshot_bytes:{}\r\n",
                    mode.as_str(),
                    d.synced_seq,
                    d.syncs,
                    d.last_snapshot_seq,
                    d.last_snapshot_bytes
                ),
            ),
        };
        let _ = write!(
            t,
            "# Persistence\r\nloading:0\r\nrdb_changes_since_last_save:0\r\nrdb_bgsave_in_progress:0\r\nrdb_last_save_time:{last_save}\r\nrdb_saves:{saves}\r\naof_enabled:{aof}\r\naof_rewrite_in_progress:0\r\n{extra}\r\n"
        );
    }
    if want("stats") {
        let _ = write!(
            t,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\ntotal_net_input_bytes:{}\r\ntotal_net_output_bytes:{}\r\nrejected_connections:0\r\nevicted_keys:{}\r\n\r\n",
            stats.connections_received,
            stats.requests,
            stats.client_bytes_in,
            stats.client_bytes_out,
            node.machine().evicted_keys()
        );
    }
    if want("replication") {
        replication(node, &mut t);
        let _ = write!(
            t,
            "understudy_role:{}\r\nepoch:{}\r\nprotected:{}\r\npeer:{}\r\npeer_in_sync:{}\r\nlag:{}\r\nlast_seq:{}\r\nexecuted_seq:{}\r\nrelease_upto:{}\r\nlog_bytes:{}\r\nlog_entries:{}\r\nsnapshot_bytes_sent:{}\r\nsnapshot_bytes_received:{}\r\n\r\n",
            s.role.as_str(),
            s.epoch,
            u8::from(s.protected),
            s.peer.as_deref().unwrap_or(""),
            u8::from(s.peer_in_sync),
            s.lag,
            s.last_seq,
            s.executed,
            node.release_upto(),
            stats.log_bytes,
            stats.log_entries,
            stats.snapshot_bytes_sent,
            stats.snapshot_bytes_received,
        );
    }
    if want("keyspace") {
        t.push_str("# Keyspace\r\n");
        node.machine().info_keyspace(&mut t);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_as_redis_prints_them() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(1023), "1023B");
        assert_eq!(human(1536), "1.50K");
        assert_eq!(human(12 << 20), "12.00M");
        assert_eq!(human(3 << 30), "3.00G");
    }

    #[test]
    fn sections_are_chosen_as_redis_chooses_them() {
        assert!(wanted(&[], "memory"));
        assert!(wanted(&[b"ALL"], "memory") && wanted(&[b"default"], "stats"));
        assert!(wanted(&[b"server", b"Memory"], "memory"));
        assert!(!wanted(&[b"server"], "memory"));
    }
}
