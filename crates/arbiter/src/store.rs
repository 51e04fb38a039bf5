//! The built-in server's state: every cluster's record in memory, each one
//! mirrored durably in `dir/<cluster>.json`.
//!
//! # Layout of `--dir`
//!
//! ```text
//! dir/LOCK              held (flock) while a server runs: two servers on one dir would
//!                       grant epochs independently (Promise 2)
//! dir/<cluster>.json    the ClusterRecord, pretty JSON; replaced atomically on every change
//! dir/.tmp-*            transient; leftovers of a crash are removed at start
//! ```
//!
//! One mutex serializes every mutation: the test-and-set is linearizable. A
//! change is written (tmp + fsync + rename + fsync of the directory) before
//! memory is updated and before anyone is answered, so a grant that failed to
//! reach the disk (full disk) was never a grant, and a restarted server knows
//! every epoch it ever granted.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::durable::{self, TMP_PREFIX};
use crate::metrics::Metrics;
use crate::proto::{RemoteError, Reply, Request};
use crate::rules::{self, Decision};
use crate::{Arbiter, ArbiterError, BackupInfo, Claim, ClusterRecord, NodeAddrs, Update};

/// Name of the lock file inside `--dir` (defined with the error that names
/// it, so `error` needs nothing of this module).
pub use crate::error::LOCK_FILE;

/// Records of all clusters; see the module docs.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    records: Mutex<HashMap<String, ClusterRecord>>,
    /// What [`Store::handle`] and the server counted (see [`crate::metrics`]).
    metrics: Arc<Metrics>,
    /// Held for the store's lifetime; dropping it releases the lock.
    _lock: File,
}

impl Store {
    /// Creates `dir` if needed, locks it, and loads every record in it.
    pub fn open(dir: &Path) -> Result<Store, ArbiterError> {
        fs::create_dir_all(dir).map_err(|e| ArbiterError::io("create directory", dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| ArbiterError::io("open", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(ArbiterError::DirLocked { dir: dir.to_path_buf() }),
            Err(TryLockError::Error(e)) => return Err(ArbiterError::io("lock", &lock_path, e)),
        }
        let records = load_all(dir)?;
        log::info!("arbiter state in {}: {} cluster(s) loaded", dir.display(), records.len());
        Ok(Store { dir: dir.to_path_buf(), records: Mutex::new(records), metrics: Arc::default(), _lock: lock })
    }

    /// Applies a decision under the one lock: writes first, then memory.
    fn mutate<A>(
        &self,
        cluster: &str,
        decide: impl FnOnce(Option<&ClusterRecord>) -> Result<Decision<A>, ArbiterError>,
        wrap: impl FnOnce(ClusterRecord) -> A,
    ) -> Result<A, ArbiterError> {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        match decide(records.get(cluster))? {
            Decision::Answer(a) => Ok(a),
            Decision::Write(next) => {
                let bytes = serde_json::to_vec_pretty(&next).expect("plain structs always serialize");
                durable::replace(&self.dir, &format!("{cluster}.json"), &bytes)?;
                records.insert(cluster.to_string(), next.clone());
                Ok(wrap(next))
            }
        }
    }

    /// Serves one request of the wire protocol, and counts it.
    pub fn handle(&self, req: Request) -> Reply {
        let result = match &req {
            Request::Read { cluster } => self.read(cluster).map(Reply::Read),
            Request::Claim { cluster, epoch, primary } => self.claim(cluster, *epoch, primary).map(Reply::Claim),
            Request::AddMember { cluster, epoch, primary_node, member } => {
                self.add_member(cluster, *epoch, primary_node, member).map(Reply::Update)
            }
            Request::Publish { cluster, epoch, primary_node, backup, protected } => {
                self.publish(cluster, *epoch, primary_node, backup.clone(), *protected).map(Reply::Update)
            }
        };
        let reply = result.unwrap_or_else(|e| {
            match &e {
                ArbiterError::Io { .. } | ArbiterError::Corrupt { .. } => log::error!("{e}"),
                _ => log::info!("request refused: {e}"),
            }
            Reply::Error(RemoteError::from_error(&e))
        });
        self.metrics.served(&req, &reply);
        reply
    }

    /// The counters of [`Store::handle`] and of the server using this store.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The metrics page: the counters and every cluster's current epoch.
    pub fn render_metrics(&self) -> String {
        crate::metrics::render(&self.metrics, self.epochs())
    }

    /// (cluster, current epoch) of every record, sorted by cluster.
    pub fn epochs(&self) -> Vec<(String, u64)> {
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<(String, u64)> = records.iter().map(|(c, r)| (c.clone(), r.epoch)).collect();
        out.sort();
        out
    }
}

/// Reads every `<cluster>.json` of `dir`. Any unreadable record stops the
/// start: a forgotten epoch could be granted twice.
fn load_all(dir: &Path) -> Result<HashMap<String, ClusterRecord>, ArbiterError> {
    let mut records = HashMap::new();
    let rd = fs::read_dir(dir).map_err(|e| ArbiterError::io("list", dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| ArbiterError::io("list", dir, e))?;
        let path = ent.path();
        let name = ent.file_name().to_string_lossy().into_owned();
        if name.starts_with(TMP_PREFIX) {
            // An interrupted write: the rename never happened, so it was never
            // a grant.
            let _ = fs::remove_file(&path);
            continue;
        }
        let Some(cluster) = name.strip_suffix(".json") else {
            continue;
        };
        if cluster == rules::RESERVED_NAME {
            continue; // the arbiter's listening.json, not a record
        }
        if rules::validate_name("--cluster", cluster).is_err() {
            log::warn!("arbiter state: ignoring {} (not a cluster name)", path.display());
            continue;
        }
        let bytes = fs::read(&path).map_err(|e| ArbiterError::io("read", &path, e))?;
        let r: ClusterRecord = serde_json::from_slice(&bytes).map_err(|e| ArbiterError::corrupt(&path, e))?;
        if r.cluster != cluster || r.epoch == 0 || !r.is_member(&r.primary.node) {
            let why = format!("record for cluster {:?} epoch {} with members {:?}", r.cluster, r.epoch, r.members);
            return Err(ArbiterError::corrupt(&path, why));
        }
        records.insert(cluster.to_string(), r);
    }
    Ok(records)
}

impl Arbiter for Store {
    fn read(&self, cluster: &str) -> Result<Option<ClusterRecord>, ArbiterError> {
        rules::validate_name("--cluster", cluster)?;
        Ok(self.records.lock().unwrap_or_else(PoisonError::into_inner).get(cluster).cloned())
    }

    fn claim(&self, cluster: &str, epoch: u64, primary: &NodeAddrs) -> Result<Claim, ArbiterError> {
        let answer = self.mutate(cluster, |cur| rules::decide_claim(cluster, cur, epoch, primary), Claim::Granted)?;
        match &answer {
            Claim::Granted(_) => log::info!("cluster {cluster}: epoch {epoch} granted to node {}", primary.node),
            Claim::Superseded(r) | Claim::NotMember(r) => log::info!(
                "cluster {cluster}: claim of epoch {epoch} by node {} refused ({}); epoch {} is held by node {}",
                primary.node,
                if matches!(answer, Claim::NotMember(_)) { "not a member" } else { "superseded" },
                r.epoch,
                r.primary.node
            ),
        }
        Ok(answer)
    }

    fn add_member(&self, cluster: &str, epoch: u64, primary_node: &str, member: &str) -> Result<Update, ArbiterError> {
        let decide = |cur: Option<&ClusterRecord>| rules::decide_add_member(cluster, cur, epoch, primary_node, member);
        let answer = self.mutate(cluster, decide, Update::Applied)?;
        if answer.is_applied() {
            log::info!("cluster {cluster}: node {member} is a member of epoch {epoch}");
        }
        Ok(answer)
    }

    fn publish(
        &self,
        cluster: &str,
        epoch: u64,
        primary_node: &str,
        backup: Option<BackupInfo>,
        protected: bool,
    ) -> Result<Update, ArbiterError> {
        let decide =
            |cur: Option<&ClusterRecord>| rules::decide_publish(cluster, cur, epoch, primary_node, backup.clone(), protected);
        self.mutate(cluster, decide, Update::Applied)
    }

    fn describe(&self) -> String {
        format!("arbiter state in {}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(node: &str) -> NodeAddrs {
        NodeAddrs { node: node.into(), client: "c".into(), repl: "r".into() }
    }

    #[test]
    fn a_second_store_on_the_same_dir_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let _first = Store::open(d.path()).unwrap();
        let e = Store::open(d.path()).unwrap_err();
        assert!(matches!(e, ArbiterError::DirLocked { .. }), "{e}");
        assert!(e.to_string().contains("--dir"), "{e}");
    }

    #[test]
    fn records_survive_reopening_and_corruption_stops_the_start() {
        let d = tempfile::tempdir().unwrap();
        {
            let s = Store::open(d.path()).unwrap();
            assert!(s.claim("c", 1, &addrs("a")).unwrap().is_granted());
            assert!(s.add_member("c", 1, "a", "b").unwrap().is_applied());
        }
        let s = Store::open(d.path()).unwrap();
        let r = s.read("c").unwrap().unwrap();
        assert_eq!((r.epoch, r.members.clone()), (1, vec!["a".to_string(), "b".to_string()]));
        drop(s);
        fs::write(d.path().join("c.json"), b"{ half a rec").unwrap();
        let e = Store::open(d.path()).unwrap_err();
        assert!(matches!(e, ArbiterError::Corrupt { .. }), "{e}");
    }

    #[test]
    fn the_store_counts_what_it_serves_and_the_page_shows_it() {
        use crate::metrics::Refusal;
        use crate::ANYONE;
        use std::time::Duration;
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let addrs = |node: &str| crate::NodeAddrs { node: node.into(), client: "c".into(), repl: "r".into() };
        let claim = |node: &str, epoch| Request::Claim { cluster: "k".into(), epoch, primary: addrs(node) };
        let add =
            |member: &str| Request::AddMember { cluster: "k".into(), epoch: 1, primary_node: "a".into(), member: member.into() };
        assert!(matches!(store.handle(claim("a", 1)), Reply::Claim(Claim::Granted(_))));
        assert!(matches!(store.handle(claim("b", 3)), Reply::Error(_))); // epoch 3 of 1: invalid
                                                                         // A forget is an operator's, about a dead primary: no contact with it.
        let a_seen = store.metrics().last_contact_ms("k", "a").expect("the claimer is a contact");
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(store.handle(add(ANYONE)), Reply::Update(Update::Applied(_))));
        assert_eq!(store.metrics().last_contact_ms("k", "a"), Some(a_seen));
        // Names that are not names are counted but never become labels.
        assert!(matches!(store.handle(claim("no/such", 2)), Reply::Error(_)));
        let read = Request::Read { cluster: "bad name".into() };
        assert!(matches!(store.handle(read), Reply::Error(_)));
        let page = store.render_metrics();
        for line in [
            "understudy_arbiter_requests_total{op=\"claim\"} 3",
            "understudy_arbiter_requests_total{op=\"add_member\"} 1",
            "understudy_arbiter_requests_total{op=\"read\"} 1",
            "understudy_arbiter_claims_total{outcome=\"granted\"} 1",
            "understudy_arbiter_claims_total{outcome=\"error\"} 2",
            "understudy_arbiter_updates_total{op=\"forget\",outcome=\"applied\"} 1",
            "understudy_arbiter_updates_total{op=\"add_member\",outcome=\"applied\"} 0",
            "understudy_arbiter_clusters 1",
            "understudy_arbiter_epoch{cluster=\"k\"} 1",
        ] {
            assert!(page.lines().any(|l| l == line), "no line {line:?} in\n{page}");
        }
        let contacts: Vec<&str> =
            page.lines().filter(|l| l.starts_with("understudy_arbiter_node_last_contact_seconds{")).collect();
        assert_eq!(contacts.len(), 2, "a and b, not \"no/such\": {page}");
        assert!(contacts.iter().any(|l| l.contains("node=\"b\"")), "{page}");
        let m = store.metrics();
        assert!(m.last_contact_ms("k", "a").is_some() && m.last_contact_ms("k", "no/such").is_none());
        // Connections are open while their guard lives.
        let open = m.connection();
        assert!(store.render_metrics().lines().any(|l| l == "understudy_arbiter_connections_open 1"));
        drop(open);
        m.refused(Refusal::Auth);
        let page = store.render_metrics();
        assert!(page.lines().any(|l| l == "understudy_arbiter_connections_open 0"), "{page}");
        assert!(page.lines().any(|l| l == "understudy_arbiter_connections_total 1"), "{page}");
        assert!(page.lines().any(|l| l == "understudy_arbiter_refusals_total{reason=\"auth\"} 1"), "{page}");
    }
}
