//! Protocol timing and bounds. Defaults are chosen for loopback and a LAN on
//! a 2-core machine: a frozen primary replaced in about 260 ms, and no false
//! failover under full load with two CPU-bound processes competing for the
//! cores (a heartbeat every 50 ms; 5 of them may go missing; a busy event
//! loop is covered by the node's beat thread, `node::beat`). Measured by
//! `understudy bench --only failover` (docs/PERFORMANCE.md).

/// Knobs of the protocol core. Units are in the names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Interval between heartbeats (primary) and liveness acks (backup) when
    /// nothing else was sent. `--heartbeat-ms`.
    pub heartbeat_ms: u64,
    /// Silence after which the peer is declared failed. `--failover-timeout-ms`.
    pub failover_timeout_ms: u64,
    /// Flow control: the primary stops taking new client requests while its
    /// in-sync backup's *executed* seq is more than this many entries behind,
    /// so failover (which drains them first) stays bounded. `--lag-entries-max`.
    pub lag_entries_max: u64,
    /// A joiner whose received seq is within this many entries of the
    /// primary's is caught up: from then on outputs wait for its acks.
    pub catchup_entries: u64,
    /// First back-off between retries of an arbiter call or a join
    /// attempt; it doubles with each failure of the same kind.
    pub retry_ms: u64,
    /// The cap of that back-off.
    pub retry_max_ms: u64,
    /// A joiner refused because a live node goes by its name keeps trying
    /// this long (its own former process may still be the primary's backup
    /// until the primary's failure timeout), then gives up.
    pub name_in_use_grace_ms: u64,
    /// A join attempt unanswered for this long is given up and retried.
    pub join_timeout_ms: u64,
    /// Interval at which the primary refreshes the backup's lag at the
    /// arbiter for `status` (only when it changed).
    pub status_publish_ms: u64,
    /// `--appendfsync always`: a backup acknowledges as received only what
    /// its disk holds, and a primary releases an output only once its own
    /// disk holds the entries it depends on as well (its fsync overlaps the
    /// round trip to the backup). Then every member of an epoch holds every
    /// acknowledged write on disk, and after a whole-cluster power loss one
    /// of them may claim the next epoch from its disk.
    pub durable_acks: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            heartbeat_ms: 50,
            failover_timeout_ms: 250,
            lag_entries_max: 100_000,
            catchup_entries: 1_000,
            retry_ms: 200,
            retry_max_ms: 2_000,
            name_in_use_grace_ms: 10_000,
            join_timeout_ms: 5_000,
            status_publish_ms: 1_000,
            durable_acks: false,
        }
    }
}

impl Config {
    /// Checks the relations the protocol relies on; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.heartbeat_ms == 0 {
            return Err("--heartbeat-ms must be at least 1".into());
        }
        if self.failover_timeout_ms < 2 * self.heartbeat_ms {
            return Err(format!(
                "--failover-timeout-ms ({}) must be at least twice --heartbeat-ms ({}), or every delayed heartbeat is a failover",
                self.failover_timeout_ms, self.heartbeat_ms
            ));
        }
        if self.lag_entries_max == 0 {
            return Err("--lag-entries-max must be at least 1".into());
        }
        Ok(())
    }
}
