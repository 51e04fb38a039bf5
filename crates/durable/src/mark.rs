//! The mark of an incomplete log (a leaf: `recover` sets it and reads it,
//! `log::discard_all` and a partial catch-up clear it).

use std::io;

use crate::storage::{Storage, StorageFile};

/// The file that says an earlier recovery cut synced entries. Once damage
/// is cut off, the log that remains reads as whole: without this mark the
/// next recovery (after any restart) would call it complete, and the node
/// could claim an epoch without writes it had acknowledged (simulator,
/// durable seed 2000421). Only [`crate::discard_all`] (a join starting the
/// disk over) and [`clear_incomplete`] (a partial catch-up) remove it.
pub const INCOMPLETE_MARK: &str = "INCOMPLETE";

/// The log is a prefix of the cluster's again (the node caught up with a
/// primary from its own state): an earlier cut no longer makes it
/// incomplete. Until the node is a member again it cannot claim anyway,
/// and by then its log holds every entry it acknowledged since.
pub fn clear_incomplete<S: Storage>(storage: &S) -> io::Result<()> {
    if storage.list()?.iter().any(|n| n == INCOMPLETE_MARK) {
        storage.remove(INCOMPLETE_MARK)?;
    }
    Ok(())
}

/// Writes [`INCOMPLETE_MARK`] durably, before anything is cut.
pub(crate) fn mark_incomplete<S: Storage>(storage: &S) -> io::Result<()> {
    let mut f = storage.create(INCOMPLETE_MARK)?;
    f.append(b"an earlier recovery cut entries that had been synced\n")?;
    f.sync()
}
