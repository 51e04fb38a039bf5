//! Errors of every backend. Each message names the input at fault and, where
//! there is one, the fix (the flag to change, the service to start).

use std::io;
use std::path::PathBuf;

/// Name of the lock file inside an arbiter server's `--dir` (`store.rs`).
pub const LOCK_FILE: &str = "LOCK";

/// Why an arbiter operation did not produce an answer. Note that losing a
/// race is not an error: that is [`crate::Claim::Superseded`] /
/// [`crate::Update::Superseded`].
#[derive(Debug, thiserror::Error)]
pub enum ArbiterError {
    /// Could not reach the arbiter, or the connection broke. `reason` says
    /// whether the request may have been applied.
    #[error("arbiter {url} is unreachable: {reason} ({})", unreachable_hint(url))]
    Unreachable { url: String, reason: String },

    /// The arbiter's storage failed (on the server for `understudy://`, on the
    /// shared filesystem for `file://`). Nothing was granted or changed.
    #[error("arbiter storage: cannot {action} {}: {cause}{}", path.display(), io_hint(cause))]
    Io { action: String, path: PathBuf, cause: io::Error },

    /// The credentials were refused: the shared secrets differ
    /// (`understudy://`), or the etcd user or password is wrong (`etcd://`).
    #[error("{}", auth_message(url))]
    Auth { url: String },

    /// The peer does not speak the arbiter protocol (or broke it).
    #[error("protocol error with arbiter {peer}: {detail}")]
    Protocol { peer: String, detail: String },

    /// The arbiter understood the request and refused it.
    #[error("arbiter refused the request for cluster {cluster:?}: {reason}")]
    Rejected { cluster: String, reason: String },

    /// A claim that is not for the next epoch: `0` or beyond `current + 1`.
    #[error(
        "cannot claim epoch {requested} of cluster {cluster:?}: the current epoch is {current}, so only epoch {} can be claimed (read the record again and claim the next epoch)",
        .current.saturating_add(1)
    )]
    InvalidEpoch { cluster: String, requested: u64, current: u64 },

    /// An `--arbiter` URL this build cannot use.
    #[error("bad arbiter URL {url:?} (--arbiter): {reason}")]
    BadUrl { url: String, reason: String },

    /// A cluster or node name that cannot be used as a file name everywhere.
    #[error("invalid {flag} name {name:?}: {reason} (use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.')")]
    BadName { flag: String, name: String, reason: String },

    /// A stored record that does not parse. The arbiter refuses to guess an
    /// epoch: forgetting one could hand it out twice (Promise 2).
    #[error("arbiter state {} is unreadable: {reason} (inspect or restore it by hand; the arbiter will not guess an epoch)", path.display())]
    Corrupt { path: PathBuf, reason: String },

    /// A read-modify-write kept losing to concurrent writers (`etcd://`: the
    /// record changed between each read and its conditional transaction).
    /// Nothing was changed by this request; it is safe to repeat.
    #[error("arbiter {url}: the record of cluster {cluster:?} changed under each of {attempts} attempts; nothing was changed by this request (try again)")]
    Busy { url: String, cluster: String, attempts: u32 },

    /// The server's listening socket failed.
    #[error("arbiter server: cannot {action} on {addr}: {cause}")]
    Net { action: String, addr: String, cause: io::Error },

    /// Another arbiter server already serves this directory; two would grant
    /// epochs independently (Promise 2).
    #[error("another arbiter is already serving --dir {} (it holds the lock on {}); stop it or choose another --dir", dir.display(), dir.join(LOCK_FILE).display())]
    DirLocked { dir: PathBuf },
}

/// What to check when an arbiter does not answer, by backend.
fn unreachable_hint(url: &str) -> &'static str {
    if url.starts_with("etcd://") {
        "is etcd running at those endpoints with a quorum, and is --arbiter right?"
    } else {
        "is `understudy arbiter` running there, and is --arbiter right?"
    }
}

/// The message of [`ArbiterError::Auth`], naming the credentials to fix.
fn auth_message(url: &str) -> String {
    if url.starts_with("etcd://") {
        format!(
            "etcd {url} refused our credentials: authentication failed (check the user and password: etcd://USER:PASSWORD@HOST:PORT, or UNDERSTUDY_ETCD_USER and UNDERSTUDY_ETCD_PASSWORD)"
        )
    } else {
        format!(
            "arbiter {url} and this process do not share the same secret: authentication failed (give both the same --secret-file)"
        )
    }
}

/// A remedy appended to I/O errors whose cause is common and fixable.
fn io_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(28) => {
            " (the disk is full: free space on the filesystem holding the arbiter's directory; nothing was granted or changed)"
        }
        Some(122) => " (disk quota exceeded: raise the quota of the arbiter's directory; nothing was granted or changed)",
        Some(30) => " (read-only filesystem: remount it read-write)",
        _ => match e.kind() {
            io::ErrorKind::PermissionDenied => " (check the permissions of the arbiter's directory)",
            io::ErrorKind::NotFound => " (does the directory exist, and is the shared filesystem mounted?)",
            _ => "",
        },
    }
}

impl ArbiterError {
    pub(crate) fn io(action: &str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ArbiterError::Io { action: action.to_string(), path: path.into(), cause: source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        ArbiterError::Corrupt { path: path.into(), reason: reason.to_string() }
    }
}
