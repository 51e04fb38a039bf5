//! `file:///dir`: the arbiter as files on a filesystem every node mounts
//! (NFS, or a local directory for tests and single-host setups).
//!
//! # Layout
//!
//! ```text
//! dir/<cluster>/epoch-<N>                 immutable: {cluster, epoch, primary}; its existence IS the grant
//! dir/<cluster>/epoch-<N>.member-<node>   immutable: <node> is a member of epoch N (in sync)
//! dir/<cluster>/epoch-<N>.status          replaced atomically: {backup, protected}, for `status` only
//! dir/<cluster>/.tmp-*                    transient: content being written before its link/rename
//! ```
//!
//! `N` is written zero-padded to 20 digits (so listings sort) but always
//! parsed as a number. The test-and-set is the atomic creation of
//! `epoch-<N+1>` with `link(2)`, which fails if the name exists: at most one creator wins,
//! whoever else tries gets `Superseded`. Files are never deleted, so an epoch
//! once granted can never be granted again.
//!
//! A single writer per epoch file means no locks: membership files of epoch N
//! only grow, and only epoch N's primary writes them.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::durable::{self, TMP_PREFIX};
use crate::record::ANYONE;
use crate::rules::{self, Decision};
use crate::{Arbiter, ArbiterError, BackupInfo, Claim, ClusterRecord, NodeAddrs, Update};

/// Content of `epoch-<N>`.
#[derive(Debug, Serialize, Deserialize)]
struct EpochFile {
    cluster: String,
    epoch: u64,
    primary: NodeAddrs,
}

/// Content of `epoch-<N>.member-<node>` (the name alone is authoritative;
/// the content is for humans reading the directory).
#[derive(Debug, Serialize, Deserialize)]
struct MemberFile {
    cluster: String,
    epoch: u64,
    member: String,
    added_by: String,
    /// When it was added (milliseconds since the Unix epoch).
    #[serde(default)]
    at_ms: Option<u64>,
}

/// Content of `epoch-<N>.status`.
#[derive(Debug, Serialize, Deserialize)]
struct StatusFile {
    backup: Option<BackupInfo>,
    protected: bool,
}

fn epoch_name(n: u64) -> String {
    format!("epoch-{n:020}")
}

fn member_name(n: u64, node: &str) -> String {
    format!("{}.member-{node}", epoch_name(n))
}

fn status_name(n: u64) -> String {
    format!("{}.status", epoch_name(n))
}

/// What a file in a cluster directory is.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Epoch(u64),
    Member(u64, String),
    Status(u64),
}

fn parse_entry(name: &str) -> Option<Entry> {
    let rest = name.strip_prefix("epoch-")?;
    let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let n: u64 = rest[..digits].parse().ok()?;
    match &rest[digits..] {
        "" => Some(Entry::Epoch(n)),
        ".status" => Some(Entry::Status(n)),
        tail => tail.strip_prefix(".member-").map(|m| Entry::Member(n, m.to_string())),
    }
}

/// The shared-filesystem backend. The secret is not used: access is governed
/// by the filesystem's permissions.
#[derive(Debug, Clone)]
pub struct FileArbiter {
    dir: PathBuf,
}

impl FileArbiter {
    /// Uses `dir`, which must be an existing absolute directory. It is never
    /// created here: an unmounted share must not look like an empty one, or
    /// each host would grant epochs in its own local directory.
    pub fn open(dir: &Path) -> Result<Self, ArbiterError> {
        let url = format!("file://{}", dir.display());
        let bad = |reason: String| ArbiterError::BadUrl { url: url.clone(), reason };
        if !dir.is_absolute() {
            return Err(bad("the directory must be an absolute path: file:///abs/dir".into()));
        }
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => Ok(FileArbiter { dir: dir.to_path_buf() }),
            Ok(_) => Err(bad("not a directory".into())),
            Err(e) => Err(bad(format!(
                "{e} (is the shared filesystem mounted? understudy never creates this directory, so that an unmounted share is not mistaken for an empty one)"
            ))),
        }
    }

    fn cluster_dir(&self, cluster: &str) -> PathBuf {
        self.dir.join(cluster)
    }

    /// Lists the entries of a cluster directory (empty if it does not exist).
    fn list(&self, cdir: &Path) -> Result<Vec<Entry>, ArbiterError> {
        let rd = match fs::read_dir(cdir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ArbiterError::io("list", cdir, e)),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| ArbiterError::io("list", cdir, e))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TMP_PREFIX) {
                continue;
            }
            match parse_entry(name) {
                Some(e) => out.push(e),
                None => log::warn!("arbiter directory {}: ignoring unexpected file {name:?}", cdir.display()),
            }
        }
        Ok(out)
    }

    /// The current record, assembled from the files of the highest epoch.
    fn load(&self, cluster: &str) -> Result<Option<ClusterRecord>, ArbiterError> {
        rules::validate_name("--cluster", cluster)?;
        let cdir = self.cluster_dir(cluster);
        let mut entries = self.list(&cdir)?;
        let listed = entries.iter().filter_map(|e| if let Entry::Epoch(n) = e { Some(*n) } else { None }).max();
        let Some(mut n) = listed else { return Ok(None) };
        // A directory listing may be cached (NFS); a lookup by name is not.
        while n < u64::MAX && cdir.join(epoch_name(n + 1)).exists() {
            n += 1;
        }
        if Some(n) != listed {
            entries = self.list(&cdir)?;
        }
        let epoch_path = cdir.join(epoch_name(n));
        let ef: EpochFile = read_json(&epoch_path)?.ok_or_else(|| ArbiterError::corrupt(&epoch_path, "vanished"))?;
        if ef.epoch != n || ef.cluster != cluster {
            let why = format!("names cluster {:?} epoch {}, expected {cluster:?} epoch {n}", ef.cluster, ef.epoch);
            return Err(ArbiterError::corrupt(&epoch_path, why));
        }
        let mut members = vec![ef.primary.node.clone()];
        let mut others: Vec<String> = entries
            .into_iter()
            .filter_map(|e| match e {
                Entry::Member(m, node) if m == n && node != ef.primary.node => Some(node),
                _ => None,
            })
            .collect();
        others.sort();
        members.extend(others);
        let status: Option<StatusFile> = read_json(&cdir.join(status_name(n)))?;
        let (backup, protected) = status.map_or((None, false), |s| (s.backup, s.protected));
        // Abandoned (`forget`): when, from the member file's own record.
        let abandoned_at_ms = match members.iter().any(|m| m == ANYONE) {
            true => read_json::<MemberFile>(&cdir.join(member_name(n, ANYONE)))?.and_then(|m| m.at_ms).or(Some(0)),
            false => None,
        };
        let r = ClusterRecord {
            cluster: cluster.to_string(),
            epoch: n,
            primary: ef.primary,
            members,
            backup,
            protected,
            abandoned_at_ms,
        };
        Ok(Some(r))
    }

    /// Whether `node` is a member of epoch `r.epoch`, by a lookup of its
    /// member file (authoritative even when the listing in `r` was stale).
    fn is_member(&self, r: &ClusterRecord, node: &str) -> bool {
        r.is_member(node) || self.cluster_dir(&r.cluster).join(member_name(r.epoch, node)).exists()
    }

    /// After a write for epoch `n`: if a later epoch exists now, the writer
    /// had been deposed meanwhile and must hear so.
    fn recheck(&self, cluster: &str, n: u64) -> Result<Update, ArbiterError> {
        let r = self.load(cluster)?;
        match r {
            Some(r) if r.epoch == n => Ok(Update::Applied(r)),
            other => Ok(Update::Superseded(other)),
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, ArbiterError> {
    match durable::read_opt(path)? {
        None => Ok(None),
        Some(b) => serde_json::from_slice(&b).map(Some).map_err(|e| ArbiterError::corrupt(path, e)),
    }
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(v).expect("plain structs always serialize")
}

impl Arbiter for FileArbiter {
    fn read(&self, cluster: &str) -> Result<Option<ClusterRecord>, ArbiterError> {
        self.load(cluster)
    }

    fn claim(&self, cluster: &str, epoch: u64, primary: &NodeAddrs) -> Result<Claim, ArbiterError> {
        let current = self.load(cluster)?;
        match rules::decide_claim(cluster, current.as_ref(), epoch, primary)? {
            Decision::Answer(Claim::NotMember(r)) if !self.is_member(&r, &primary.node) => {
                return Ok(Claim::NotMember(r));
            }
            Decision::Answer(Claim::NotMember(_)) | Decision::Write(_) => {}
            Decision::Answer(other) => return Ok(other),
        }
        let cdir = self.cluster_dir(cluster);
        durable::ensure_dir(&cdir)?;
        let content = EpochFile { cluster: cluster.to_string(), epoch, primary: primary.clone() };
        if durable::create_exclusive(&cdir, &epoch_name(epoch), &to_json(&content))? {
            log::info!("{}: cluster {cluster}: epoch {epoch} granted to node {}", self.describe(), primary.node);
            return Ok(Claim::Granted(ClusterRecord::granted(cluster, epoch, primary)));
        }
        // Lost the race; or won it earlier and lost the answer (same holder).
        let r = self.load(cluster)?.ok_or_else(|| ArbiterError::corrupt(cdir.join(epoch_name(epoch)), "vanished"))?;
        Ok(if r.epoch == epoch && r.primary == *primary { Claim::Granted(r) } else { Claim::Superseded(r) })
    }

    fn add_member(&self, cluster: &str, epoch: u64, primary_node: &str, member: &str) -> Result<Update, ArbiterError> {
        let current = self.load(cluster)?;
        let next = match rules::decide_add_member(cluster, current.as_ref(), epoch, primary_node, member)? {
            Decision::Write(next) => next,
            Decision::Answer(a) => return Ok(a),
        };
        let cdir = self.cluster_dir(cluster);
        let content = MemberFile {
            cluster: cluster.into(),
            epoch,
            member: member.into(),
            added_by: primary_node.into(),
            at_ms: next.abandoned_at_ms.or(Some(crate::rules::unix_ms())),
        };
        // Already there means added before: membership is a set.
        durable::create_exclusive(&cdir, &member_name(epoch, member), &to_json(&content))?;
        let status = StatusFile { backup: next.backup, protected: next.protected };
        durable::replace(&cdir, &status_name(epoch), &to_json(&status))?;
        log::info!("{}: cluster {cluster}: node {member} is a member of epoch {epoch}", self.describe());
        self.recheck(cluster, epoch)
    }

    fn publish(
        &self,
        cluster: &str,
        epoch: u64,
        primary_node: &str,
        backup: Option<BackupInfo>,
        protected: bool,
    ) -> Result<Update, ArbiterError> {
        let current = self.load(cluster)?;
        let next = match rules::decide_publish(cluster, current.as_ref(), epoch, primary_node, backup, protected)? {
            Decision::Write(next) => next,
            Decision::Answer(a) => return Ok(a),
        };
        let status = StatusFile { backup: next.backup, protected: next.protected };
        durable::replace(&self.cluster_dir(cluster), &status_name(epoch), &to_json(&status))?;
        self.recheck(cluster, epoch)
    }

    fn describe(&self) -> String {
        format!("file://{}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_as_numbers_not_text() {
        assert_eq!(parse_entry(&epoch_name(7)), Some(Entry::Epoch(7)));
        assert_eq!(parse_entry("epoch-10"), Some(Entry::Epoch(10)), "unpadded names parse too");
        assert_eq!(parse_entry(&member_name(3, "b.x")), Some(Entry::Member(3, "b.x".into())));
        assert_eq!(parse_entry(&status_name(u64::MAX)), Some(Entry::Status(u64::MAX)));
        assert_eq!(parse_entry("epoch-"), None);
        assert_eq!(parse_entry("epoch-3.bak"), None);
        assert_eq!(parse_entry("README"), None);
    }

    #[test]
    fn record_is_the_highest_epoch_with_its_own_members() {
        let d = tempfile::tempdir().unwrap();
        let a = FileArbiter::open(d.path()).unwrap();
        let cdir = d.path().join("c");
        fs::create_dir(&cdir).unwrap();
        for n in [9u64, 10] {
            let p = NodeAddrs { node: format!("n{n}"), client: String::new(), repl: String::new() };
            let ef = EpochFile { cluster: "c".into(), epoch: n, primary: p };
            fs::write(cdir.join(epoch_name(n)), to_json(&ef)).unwrap();
        }
        fs::write(cdir.join(member_name(9, "old")), b"{}").unwrap();
        fs::write(cdir.join(member_name(10, "new")), b"{}").unwrap();
        let r = a.read("c").unwrap().unwrap();
        assert_eq!((r.epoch, r.primary.node.as_str()), (10, "n10"));
        assert_eq!(r.members, ["n10", "new"]);
    }

    #[test]
    fn a_missing_share_is_not_created() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("not-mounted");
        let e = FileArbiter::open(&missing).unwrap_err();
        assert!(e.to_string().contains("mounted"), "{e}");
        assert!(!missing.exists());
        assert!(FileArbiter::open(Path::new("relative/dir")).is_err());
    }
}
