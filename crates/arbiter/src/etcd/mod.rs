//! `etcd://HOST:PORT[,HOST:PORT…]`: the arbiter as one key in an etcd
//! cluster, for production (DESIGN §3: "a transaction on a key"). etcd
//! replicates the key with Raft, so the arbiter survives the loss of a
//! minority of its members, which neither the built-in server nor a single
//! shared filesystem does.
//!
//! # URL
//!
//! See [`url`]: `etcd://[USER[:PASSWORD]@]HOST:PORT[,…][?ca=FILE&cert=FILE&key=FILE]`,
//! or the user and password in `UNDERSTUDY_ETCD_USER` / `UNDERSTUDY_ETCD_PASSWORD`.
//! TLS needs the cargo feature `etcd-tls`.
//!
//! # Key layout
//!
//! ```text
//! /understudy/<cluster>/record    the ClusterRecord, JSON: THE authoritative state
//! /understudy/<cluster>/primary   {cluster, epoch, primary}, JSON: written with each grant, for
//!                                 watchers and etcdctl; never read back by understudy
//! ```
//!
//! # Transactions
//!
//! Every mutation is read, decide, conditional write, with the decision made
//! by the same pure rules as the other backends ([`crate::rules`]):
//!
//! 1. `GET record` (linearizable) gives the current record and its
//!    `mod_revision`;
//! 2. the rule decides: answer without writing (a lost race, not a member,
//!    an exact repeat of a granted claim, ...) or write a new record;
//! 3. to write: `TXN IF mod_revision(record) == R` (or `create_revision ==
//!    0` when there was no record) `THEN PUT record [, PUT primary] ELSE GET
//!    record`.
//!
//! The compare makes step 3 apply only to the very record the rule saw, so
//! "epoch N+1 is free and the claimant is a member of epoch N" is tested and
//! set in one etcd transaction. When it fails, someone else wrote first: the
//! rule runs again on the record the `ELSE` branch returned (a lost claim
//! race becomes `Superseded` with the winner's record), at most
//! [`ATTEMPTS_MAX`] times.
//!
//! No lease is attached to anything: a lease expiry must never change who is
//! primary (Promise 2 rests on epochs alone).
//!
//! # Threads and time
//!
//! The gRPC client (`rpc`: the three calls the arbiter makes, written out
//! so that building needs no protobuf compiler) is async; a private runtime
//! thread drives it (`driver`).
//! Each member gets its own client (`conn`), connected lazily (a node may
//! start while etcd is down); a request goes to the member that answered
//! last, else to the next. Every request is bounded ([`CONNECT_TIMEOUT`],
//! [`REQUEST_TIMEOUT`], and [`CALL_BUDGET`] across members), so a dead etcd
//! is [`ArbiterError::Unreachable`] within seconds and the node retries.

mod conn;
mod driver;
pub mod rpc;
pub mod url;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use self::conn::CALL_BUDGET;
use self::conn::{Members, Op};
use self::driver::Driver;
use self::rpc::{Client, Compare, KeyValue, OpResponse, RequestOp, TxnRequest};
use crate::rules::{self, Decision};
use crate::{Arbiter, ArbiterError, BackupInfo, Claim, ClusterRecord, NodeAddrs, Update};

/// Bound on opening a connection to one etcd member.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on each etcd request, waiting for a usable connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Where understudy's keys live.
pub const KEY_PREFIX: &str = "/understudy/";
/// Conditional writes tried per mutation before [`ArbiterError::Busy`]. Only
/// the primary and claimants write a cluster's record, so losing this often
/// in a row means something else is rewriting it.
pub const ATTEMPTS_MAX: u32 = 16;

/// The authoritative key of `cluster` (a validated name).
pub fn record_key(cluster: &str) -> String {
    format!("{KEY_PREFIX}{cluster}/record")
}

/// The informational key naming the primary of `cluster`.
pub fn primary_key(cluster: &str) -> String {
    format!("{KEY_PREFIX}{cluster}/primary")
}

/// Content of the `primary` key.
#[derive(Serialize)]
struct PrimaryKey<'a> {
    cluster: &'a str,
    epoch: u64,
    primary: &'a NodeAddrs,
}

/// A record as read, with the revision a conditional write compares.
struct Stored {
    record: ClusterRecord,
    mod_revision: i64,
}

/// Outcome of a conditional write.
enum Written {
    Applied,
    /// Someone wrote first; this is the record now (None: still absent).
    Lost(Option<Stored>),
}

/// The etcd backend. The secret of `--secret-file` is not used: etcd has its
/// own users and TLS.
///
/// Like every [`Arbiter`], its calls block: call them from plain threads or
/// `spawn_blocking`, never from inside an async task (tokio refuses to
/// block a thread that drives tasks).
pub struct EtcdArbiter {
    /// The URL without password.
    shown: String,
    members: Members,
    driver: Driver,
}

impl std::fmt::Debug for EtcdArbiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdArbiter").field("url", &self.shown).finish_non_exhaustive()
    }
}

impl EtcdArbiter {
    /// Parses `url` (credentials may come from the environment, see
    /// [`url`]). Nothing is contacted yet: the arbiter is needed
    /// for failover, not while the pair is healthy.
    pub fn open(url: &str) -> Result<Self, ArbiterError> {
        let bad = |reason: String| ArbiterError::BadUrl { url: redact(url), reason };
        let target = url::parse(url, &|k| std::env::var(k).ok()).map_err(bad)?;
        if target.tls.is_some() && !cfg!(feature = "etcd-tls") {
            return Err(bad("ca= asks for TLS, but this build has no TLS for etcd (cargo feature `etcd-tls`)".into()));
        }
        let driver = Driver::start().map_err(|e| bad(format!("cannot start the etcd client's thread: {e}")))?;
        let members = {
            let _runtime = driver.enter();
            Members::new(&target).map_err(bad)?
        };
        Ok(EtcdArbiter { shown: target.shown, members, driver })
    }

    /// The current record of `cluster`, linearizable.
    async fn get(&self, cluster: &str) -> Result<Option<Stored>, ArbiterError> {
        let key = record_key(cluster);
        let get = |c: Client| {
            let key = key.clone();
            async move { c.get(&key).await }
        };
        let resp = self.members.request(Op::Read, cluster, get).await?;
        resp.kvs.first().map(|kv| decode(cluster, kv)).transpose()
    }

    /// `IF the record is still as read THEN put next ELSE get`; the claim
    /// also publishes the `primary` key.
    async fn put_if_unchanged(
        &self,
        cluster: &str,
        read: Option<&Stored>,
        next: &ClusterRecord,
        claim: bool,
    ) -> Result<Written, ArbiterError> {
        let key = record_key(cluster);
        let unchanged = match read {
            None => Compare::absent(&key),
            Some(s) => Compare::modified_at(&key, s.mod_revision),
        };
        let mut puts = vec![RequestOp::put(&key, to_json(next))];
        if claim {
            let p = PrimaryKey { cluster, epoch: next.epoch, primary: &next.primary };
            puts.push(RequestOp::put(&primary_key(cluster), to_json(&p)));
        }
        let txn = TxnRequest { compare: vec![unchanged], success: puts, failure: vec![RequestOp::get(&key)] };
        let send = |c: Client| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        };
        let resp = self.members.request(Op::Write, cluster, send).await?;
        if resp.succeeded {
            return Ok(Written::Applied);
        }
        let now = resp.responses.into_iter().find_map(|r| match r.response {
            Some(OpResponse::Range(g)) => Some(g),
            _ => None,
        });
        let Some(now) = now else {
            let detail = "a failed transaction did not return its ELSE branch".to_string();
            return Err(ArbiterError::Protocol { peer: self.shown.clone(), detail });
        };
        Ok(Written::Lost(now.kvs.first().map(|kv| decode(cluster, kv)).transpose()?))
    }

    /// Read, decide with `decide`, conditionally write; again on the fresh
    /// record after a lost write. `applied` is the answer to a write.
    ///
    /// A write sent twice (to a second member after the first did not
    /// answer) is harmless: if the first one was applied, the second fails
    /// its compare and `decide` sees our own write (a claim is then an exact
    /// repeat, answered Granted; membership and status are set again to the
    /// same values).
    async fn mutate<A>(
        &self,
        cluster: &str,
        claim: bool,
        decide: impl Fn(Option<&ClusterRecord>) -> Result<Decision<A>, ArbiterError>,
        applied: impl Fn(ClusterRecord) -> A,
    ) -> Result<A, ArbiterError> {
        let mut current = self.get(cluster).await?;
        for _ in 0..ATTEMPTS_MAX {
            let next = match decide(current.as_ref().map(|s| &s.record))? {
                Decision::Answer(a) => return Ok(a),
                Decision::Write(next) => next,
            };
            match self.put_if_unchanged(cluster, current.as_ref(), &next, claim).await? {
                Written::Applied => {
                    if claim {
                        let node = &next.primary.node;
                        log::info!("{}: cluster {cluster}: epoch {} granted to node {node}", self.shown, next.epoch);
                    }
                    return Ok(applied(next));
                }
                Written::Lost(now) => current = now,
            }
        }
        Err(ArbiterError::Busy { url: self.shown.clone(), cluster: cluster.to_string(), attempts: ATTEMPTS_MAX })
    }
}

/// Parses a stored record, refusing one that is not this cluster's: guessing
/// an epoch could hand it out twice (Promise 2).
fn decode(cluster: &str, kv: &KeyValue) -> Result<Stored, ArbiterError> {
    let path = PathBuf::from(record_key(cluster));
    let record: ClusterRecord = serde_json::from_slice(&kv.value).map_err(|e| ArbiterError::corrupt(&path, e))?;
    if record.cluster != cluster || record.epoch == 0 {
        let why =
            format!("names cluster {:?} epoch {}, expected cluster {cluster:?} and an epoch ≥ 1", record.cluster, record.epoch);
        return Err(ArbiterError::corrupt(&path, why));
    }
    Ok(Stored { record, mod_revision: kv.mod_revision })
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("plain structs always serialize")
}

/// `url` without its password, for error messages.
fn redact(url: &str) -> String {
    // Split as `url::parse` does, so whatever it takes for a password is hidden.
    let Some(rest) = url.strip_prefix("etcd://") else { return url.to_string() };
    let main = rest.split_once('?').map_or(rest, |(m, _)| m);
    match main.rsplit_once('@') {
        Some((userinfo, _)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("etcd://{user}:<redacted>@{}", &rest[userinfo.len() + 1..])
        }
        _ => url.to_string(),
    }
}

impl Arbiter for EtcdArbiter {
    fn read(&self, cluster: &str) -> Result<Option<ClusterRecord>, ArbiterError> {
        rules::validate_name("--cluster", cluster)?;
        self.driver.block_on(async { Ok(self.get(cluster).await?.map(|s| s.record)) })
    }

    fn claim(&self, cluster: &str, epoch: u64, primary: &NodeAddrs) -> Result<Claim, ArbiterError> {
        rules::validate_name("--cluster", cluster)?;
        let decide = |cur: Option<&ClusterRecord>| rules::decide_claim(cluster, cur, epoch, primary);
        self.driver.block_on(self.mutate(cluster, true, decide, Claim::Granted))
    }

    fn add_member(&self, cluster: &str, epoch: u64, primary_node: &str, member: &str) -> Result<Update, ArbiterError> {
        rules::validate_name("--cluster", cluster)?;
        let decide = |cur: Option<&ClusterRecord>| rules::decide_add_member(cluster, cur, epoch, primary_node, member);
        self.driver.block_on(self.mutate(cluster, false, decide, Update::Applied))
    }

    fn publish(
        &self,
        cluster: &str,
        epoch: u64,
        primary_node: &str,
        backup: Option<BackupInfo>,
        protected: bool,
    ) -> Result<Update, ArbiterError> {
        rules::validate_name("--cluster", cluster)?;
        let decide =
            |cur: Option<&ClusterRecord>| rules::decide_publish(cluster, cur, epoch, primary_node, backup.clone(), protected);
        self.driver.block_on(self.mutate(cluster, false, decide, Update::Applied))
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_prefix() {
        assert_eq!(record_key("kv-1"), "/understudy/kv-1/record");
        assert_eq!(primary_key("kv-1"), "/understudy/kv-1/primary");
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact("etcd://root:s3cret@h:1,h2:2?ca=/x"), "etcd://root:<redacted>@h:1,h2:2?ca=/x");
        assert_eq!(redact("etcd://root@h:1"), "etcd://root@h:1");
        assert_eq!(redact("etcd://h:1"), "etcd://h:1");
        let e = EtcdArbiter::open("etcd://root:s3cret@h:0").unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn open_contacts_nobody_and_describes_the_endpoints() {
        // Port 9 (discard) on loopback: nothing listens, and nothing is tried.
        let a = EtcdArbiter::open("etcd://127.0.0.1:9,127.0.0.2:9").unwrap();
        assert_eq!(a.describe(), "etcd://127.0.0.1:9,127.0.0.2:9");
    }
}
