//! The instance descriptions `understudy sentinel` replies with: the
//! fields of `SENTINEL MASTER`/`MASTERS`/`REPLICAS` in Redis 7's order (plus
//! understudy's own), and `INFO`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use understudy_arbiter::BackupState;
use understudy_kv::session::REDIS_VERSION;

use crate::sentinel_watch::{split_addr, View, Watch};

/// What every connection shares.
pub struct Shared {
    pub watch: Arc<Watch>,
    /// The password clients must give (`--requirepass-file`), if any.
    pub password: Option<Arc<[u8]>>,
    /// This sentinel's run id (40 hex digits, new at each start).
    pub myid: String,
    pub port: u16,
    pub clients: AtomicUsize,
}

fn ms_since(t: Instant) -> String {
    t.elapsed().as_millis().to_string()
}

/// A stable 40-hex-digit run id for an instance (the same on every sentinel).
fn run_id(parts: &[&str]) -> String {
    use std::hash::{DefaultHasher, Hash as _, Hasher as _};
    let mut id = String::with_capacity(48);
    for salt in 0u8..3 {
        let mut h = DefaultHasher::new();
        salt.hash(&mut h);
        parts.hash(&mut h);
        id.push_str(&format!("{:016x}", h.finish()));
    }
    id.truncate(40);
    id
}

/// `SENTINEL MASTER`'s fields, in Redis 7's order, then understudy's own.
pub fn master_fields(v: &View, poll_ms: u128) -> Vec<(&'static str, String)> {
    let r = &v.record;
    let (ip, port) = split_addr(&r.primary.client);
    let flags = if v.primary_up { "master" } else { "master,s_down,o_down" };
    let mut f = vec![
        ("name", v.name.clone()),
        ("ip", ip),
        ("port", port),
        ("runid", run_id(&[&v.name, &r.primary.node, &r.primary.client])),
        ("flags", flags.to_string()),
        ("link-pending-commands", "0".into()),
        ("link-refcount", "1".into()),
        ("last-ping-sent", if v.primary_up { "0".into() } else { v.down_since.map_or("0".into(), ms_since) }),
        ("last-ok-ping-reply", v.last_ok_probe.map_or_else(|| ms_since(v.primary_since), ms_since)),
        ("last-ping-reply", ms_since(v.last_probe)),
    ];
    if let Some(d) = v.down_since {
        f.push(("s-down-time", ms_since(d)));
        f.push(("o-down-time", ms_since(d)));
    }
    let backup = r.backup.as_ref();
    f.extend([
        ("down-after-milliseconds", poll_ms.to_string()),
        ("info-refresh", ms_since(v.read_at)),
        ("role-reported", "master".into()),
        ("role-reported-time", ms_since(v.primary_since)),
        ("config-epoch", r.epoch.to_string()),
        ("num-slaves", usize::from(v.replica.is_some()).to_string()),
        ("num-other-sentinels", "0".into()),
        ("quorum", "1".into()),
        ("parallel-syncs", "1".into()),
        ("understudy-node", r.primary.node.clone()),
        ("understudy-epoch", r.epoch.to_string()),
        ("understudy-protected", u8::from(r.protected).to_string()),
        ("understudy-backup", backup.map(|b| b.node.clone()).unwrap_or_default()),
        (
            "understudy-backup-state",
            match backup.map(|b| b.state) {
                Some(BackupState::InSync) => "in-sync".into(),
                Some(BackupState::Joining) => "joining".into(),
                None => String::new(),
            },
        ),
        ("understudy-arbiter", v.read_error.clone().unwrap_or_else(|| "ok".into())),
    ]);
    f
}

/// `SENTINEL REPLICAS`'s fields for the in-sync backup, if its client
/// address is known.
pub fn replica_fields(v: &View, poll_ms: u128) -> Option<Vec<(&'static str, String)>> {
    let b = v.replica.as_ref()?;
    let (ip, port) = split_addr(&b.client);
    let (mip, mport) = split_addr(&v.record.primary.client);
    Some(vec![
        ("name", format!("{ip}:{port}")),
        ("ip", ip),
        ("port", port),
        ("runid", run_id(&[&v.name, &b.node, &b.client])),
        ("flags", "slave".into()),
        ("link-pending-commands", "0".into()),
        ("link-refcount", "1".into()),
        ("last-ping-sent", "0".into()),
        ("last-ok-ping-reply", ms_since(v.read_at)),
        ("last-ping-reply", ms_since(v.read_at)),
        ("down-after-milliseconds", poll_ms.to_string()),
        ("info-refresh", ms_since(v.read_at)),
        ("role-reported", "slave".into()),
        ("role-reported-time", ms_since(b.since)),
        ("master-link-down-time", "0".into()),
        ("master-link-status", "ok".into()),
        ("master-host", mip),
        ("master-port", mport),
        ("slave-priority", "100".into()),
        ("slave-repl-offset", "0".into()),
        ("replica-announced", "1".into()),
        ("understudy-node", b.node.clone()),
        ("understudy-lag", b.lag.to_string()),
    ])
}

/// INFO [section …]: server, clients and sentinel.
pub fn info(s: &Shared, sections: &[&[u8]]) -> String {
    let all = sections.is_empty()
        || sections.iter().any(|x| [&b"all"[..], b"default", b"everything"].iter().any(|a| x.eq_ignore_ascii_case(a)));
    let want = |name: &str| all || sections.iter().any(|x| x.eq_ignore_ascii_case(name.as_bytes()));
    let mut parts = Vec::new();
    if want("server") {
        let up = s.watch.started.elapsed().as_secs();
        parts.push(format!(
            "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:sentinel\r\nunderstudy_version:{}\r\nprocess_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{up}\r\nuptime_in_days:{}\r\nunderstudy_arbiter:{}\r\n",
            env!("CARGO_PKG_VERSION"),
            std::process::id(),
            s.myid,
            s.port,
            up / 86400,
            s.watch.describe_arbiter()
        ));
    }
    if want("clients") {
        parts.push(format!("# Clients\r\nconnected_clients:{}\r\n", s.clients.load(Ordering::Relaxed)));
    }
    if want("sentinel") {
        let known = s.watch.known();
        let mut t = format!(
            "# Sentinel\r\nsentinel_masters:{}\r\nsentinel_tilt:0\r\nsentinel_tilt_since_seconds:-1\r\nsentinel_running_scripts:0\r\nsentinel_scripts_queue_length:0\r\nsentinel_simulate_failure_flags:0\r\n",
            known.len()
        );
        for (i, v) in known.iter().enumerate() {
            let (ip, port) = split_addr(&v.record.primary.client);
            let status = if v.primary_up { "ok" } else { "odown" };
            let slaves = usize::from(v.replica.is_some());
            t.push_str(&format!("master{i}:name={},status={status},address={ip}:{port},slaves={slaves},sentinels=1\r\n", v.name));
        }
        parts.push(t);
    }
    parts.join("\r\n")
}
