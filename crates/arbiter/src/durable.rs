//! Durable file primitives shared by the file backend and the server's store.
//!
//! A grant that is not on disk is not a grant: a restarted arbiter that forgot
//! it could hand the same epoch out again (Promise 2). So every write is
//! fsynced, and so is the directory entry that names it, before anyone is told.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::ArbiterError;

/// Prefix of temporary files; names starting with '.' are never a cluster,
/// epoch or member name (`validate_name` forbids them).
pub const TMP_PREFIX: &str = ".tmp-";

/// A temporary name unique across processes and hosts sharing a directory.
fn tmp_path(dir: &Path) -> PathBuf {
    let mut r = [0u8; 8];
    // Uniqueness, not secrecy: fall back to the clock if the OS has no entropy.
    if getrandom::fill(&mut r).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        r = (t.as_nanos() as u64).to_le_bytes();
    }
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{TMP_PREFIX}{}-{hex}", std::process::id()))
}

/// Makes the directory entries of `dir` durable (a new or renamed name).
pub fn fsync_dir(dir: &Path) -> Result<(), ArbiterError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| ArbiterError::io("fsync directory", dir, e))
}

/// Writes `bytes` to a fresh temporary file in `dir` and fsyncs it. On error
/// the temporary file is removed, so a full disk is not kept full by us.
fn write_tmp(dir: &Path, bytes: &[u8]) -> Result<PathBuf, ArbiterError> {
    let tmp = tmp_path(dir);
    let res = OpenOptions::new().write(true).create_new(true).open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    match res {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(ArbiterError::io("write", &tmp, e))
        }
    }
}

/// Replaces `dir/name` with `bytes` atomically (tmp + fsync + rename + fsync
/// of the directory): a reader sees the old content or the new, never a mix.
pub fn replace(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), ArbiterError> {
    let tmp = write_tmp(dir, bytes)?;
    let path = dir.join(name);
    if let Err(e) = fs::rename(&tmp, &path) {
        let _ = fs::remove_file(&tmp);
        return Err(ArbiterError::io("rename into", path, e));
    }
    fsync_dir(dir)
}

/// Creates `dir/name` with `bytes` only if no such name exists: the atomic
/// test-and-set of the file backend. Returns `false` if the name was taken.
///
/// The content is written and fsynced under a temporary name first, then
/// hard-linked to `name`: `link(2)` fails if the target exists, atomically,
/// on local filesystems and on NFS alike (unlike `O_EXCL` on old NFS). As
/// `open(2)` recommends for NFS, success is judged by the temporary file's
/// link count, not by link's return value, since a retransmitted link may
/// report `EEXIST` for a link that its first transmission made.
pub fn create_exclusive(dir: &Path, name: &str, bytes: &[u8]) -> Result<bool, ArbiterError> {
    let tmp = write_tmp(dir, bytes)?;
    let path = dir.join(name);
    let linked = fs::hard_link(&tmp, &path);
    let nlink = fs::metadata(&tmp).map(|m| m.nlink());
    let _ = fs::remove_file(&tmp);
    let created = match (linked, nlink) {
        (_, Ok(2)) | (Ok(()), _) => true,
        (Err(e), _) if e.kind() == io::ErrorKind::AlreadyExists => false,
        (Err(e), _) => return Err(ArbiterError::io("create", path, e)),
    };
    // The temporary name's removal need not be durable; the new name must be.
    fsync_dir(dir)?;
    Ok(created)
}

/// Creates directory `dir` if missing and makes its entry durable.
pub fn ensure_dir(dir: &Path) -> Result<(), ArbiterError> {
    match fs::create_dir(dir) {
        Ok(()) => fsync_dir(dir.parent().unwrap_or(Path::new("/"))),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(ArbiterError::io("create directory", dir, e)),
    }
}

/// Reads a whole file; `Ok(None)` if it does not exist.
pub fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, ArbiterError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ArbiterError::io("read", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_exclusive_is_a_test_and_set() {
        let d = tempfile::tempdir().unwrap();
        assert!(create_exclusive(d.path(), "x", b"first").unwrap());
        assert!(!create_exclusive(d.path(), "x", b"second").unwrap());
        assert_eq!(fs::read(d.path().join("x")).unwrap(), b"first");
        let leftovers: Vec<_> = fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 1, "temporary files are removed: {leftovers:?}");
    }

    #[test]
    fn replace_overwrites_atomically() {
        let d = tempfile::tempdir().unwrap();
        replace(d.path(), "s", b"one").unwrap();
        replace(d.path(), "s", b"two").unwrap();
        assert_eq!(fs::read(d.path().join("s")).unwrap(), b"two");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
