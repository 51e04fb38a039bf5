//! The test-and-set rules as pure functions of the current record, shared by
//! every backend that holds the record in one place (the built-in server).
//! The file backend applies the same rules with an atomic file create as its
//! test-and-set; the conformance suite checks that both agree.

use crate::record::ANYONE;
use crate::{ArbiterError, BackupInfo, BackupState, Claim, ClusterRecord, NodeAddrs, Update};

/// Now, for [`ClusterRecord::abandoned_at_ms`].
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Longest cluster or node name: names become file names on every backend.
pub const NAME_BYTES_MAX: usize = 64;

/// Checks a cluster or node name. `flag` is the option the user typed it in
/// (`--cluster`, `--node`), so the error points at the fix.
pub fn validate_name(flag: &str, name: &str) -> Result<(), ArbiterError> {
    let bad =
        |reason: &str| Err(ArbiterError::BadName { flag: flag.to_string(), name: name.to_string(), reason: reason.to_string() });
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > NAME_BYTES_MAX {
        return bad(&format!("it is {} bytes long, the limit is {NAME_BYTES_MAX}", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        return bad(&format!("character {c:?} is not allowed"));
    }
    if name.starts_with('.') {
        // Excludes "." and ".." (path traversal) and hidden temporary files.
        return bad("it starts with '.'");
    }
    if name == RESERVED_NAME {
        // The built-in arbiter keeps `<cluster>.json` in its --dir, beside
        // the `listening.json` it writes at start.
        return bad("it is reserved (the built-in arbiter's --dir holds listening.json)");
    }
    Ok(())
}

/// The one name no cluster may have, in every backend (so a cluster can
/// move between arbiters): see [`validate_name`].
pub const RESERVED_NAME: &str = "listening";

/// What a mutation decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision<A> {
    /// Make this record durable, then answer with it.
    Write(ClusterRecord),
    /// Answer this without changing anything.
    Answer(A),
}

/// The claim rule (see [`crate::Arbiter::claim`]).
pub fn decide_claim(
    cluster: &str,
    current: Option<&ClusterRecord>,
    epoch: u64,
    primary: &NodeAddrs,
) -> Result<Decision<Claim>, ArbiterError> {
    validate_name("--cluster", cluster)?;
    validate_name("--node", &primary.node)?;
    let cur = current.map_or(0, |r| r.epoch);
    if epoch == 0 || epoch > cur.saturating_add(1) {
        return Err(ArbiterError::InvalidEpoch { cluster: cluster.to_string(), requested: epoch, current: cur });
    }
    if let Some(r) = current {
        if epoch == r.epoch && r.primary == *primary {
            // The holder asking again (its reply was lost): same answer.
            return Ok(Decision::Answer(Claim::Granted(r.clone())));
        }
        if epoch <= r.epoch {
            return Ok(Decision::Answer(Claim::Superseded(r.clone())));
        }
        if !r.is_member(&primary.node) {
            return Ok(Decision::Answer(Claim::NotMember(r.clone())));
        }
    }
    Ok(Decision::Write(ClusterRecord::granted(cluster, epoch, primary)))
}

/// The condition shared by `add_member` and `publish`: the caller holds the
/// current epoch. Returns the record to change, if so.
fn holder<'r>(current: Option<&'r ClusterRecord>, epoch: u64, primary_node: &str) -> Option<&'r ClusterRecord> {
    current.filter(|r| r.epoch == epoch && r.primary.node == primary_node)
}

/// The answer to an update from a node that does not hold the current epoch.
fn superseded(current: Option<&ClusterRecord>) -> Decision<Update> {
    Decision::Answer(Update::Superseded(current.cloned()))
}

/// The add-member rule (see [`crate::Arbiter::add_member`]).
pub fn decide_add_member(
    cluster: &str,
    current: Option<&ClusterRecord>,
    epoch: u64,
    primary_node: &str,
    member: &str,
) -> Result<Decision<Update>, ArbiterError> {
    validate_name("--cluster", cluster)?;
    let Some(r) = holder(current, epoch, primary_node) else {
        return Ok(superseded(current));
    };
    if member == ANYONE {
        // `forget`: the state of this epoch is abandoned.
        let mut next = r.clone();
        if !next.is_abandoned() {
            next.members.push(ANYONE.to_string());
            next.abandoned_at_ms = Some(unix_ms());
        }
        next.backup = None;
        next.protected = false;
        return Ok(Decision::Write(next));
    }
    validate_name("--node", member)?;
    check_new_member(r, member)?;
    let mut next = r.clone();
    if !next.is_member(member) {
        next.members.push(member.to_string());
    }
    next.backup = Some(BackupInfo { node: member.to_string(), state: BackupState::InSync, lag: 0 });
    next.protected = true;
    Ok(Decision::Write(next))
}

/// Refuses members that would weaken Promise 4: the primary itself (a
/// confused caller), or a second backup in one epoch (the first one may lag
/// by now; the primary must claim the next epoch to drop it).
pub fn check_new_member(r: &ClusterRecord, member: &str) -> Result<(), ArbiterError> {
    let reject = |reason: String| Err(ArbiterError::Rejected { cluster: r.cluster.clone(), reason });
    if member == r.primary.node {
        return reject(format!("node {member:?} is the primary of epoch {}, not a backup", r.epoch));
    }
    if let Some(other) = r.members.iter().find(|m| *m != &r.primary.node && *m != member) {
        return reject(format!(
            "epoch {} already has backup {other:?} as a member; to replace a backup, claim epoch {} first (that drops the old one)",
            r.epoch,
            r.epoch.saturating_add(1)
        ));
    }
    Ok(())
}

/// The publish rule (see [`crate::Arbiter::publish`]): status only, never
/// membership.
pub fn decide_publish(
    cluster: &str,
    current: Option<&ClusterRecord>,
    epoch: u64,
    primary_node: &str,
    backup: Option<BackupInfo>,
    protected: bool,
) -> Result<Decision<Update>, ArbiterError> {
    validate_name("--cluster", cluster)?;
    let Some(r) = holder(current, epoch, primary_node) else {
        return Ok(superseded(current));
    };
    let mut next = r.clone();
    next.backup = backup;
    next.protected = protected;
    Ok(Decision::Write(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(node: &str) -> NodeAddrs {
        NodeAddrs { node: node.into(), client: format!("{node}:1"), repl: format!("{node}:2") }
    }

    #[test]
    fn names_are_checked_with_the_flag_in_the_message() {
        for ok in ["c", "kv-1", "a.b_c", &"x".repeat(64)] {
            validate_name("--cluster", ok).unwrap();
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "é", "listening", &"x".repeat(65)] {
            let e = validate_name("--cluster", bad).unwrap_err();
            assert!(e.to_string().contains("--cluster"), "{e}");
        }
    }

    #[test]
    fn claim_rules_follow_the_spec() {
        let r1 = ClusterRecord::granted("c", 1, &addrs("a"));
        assert_eq!(decide_claim("c", None, 1, &addrs("a")).unwrap(), Decision::Write(r1.clone()));
        assert!(matches!(decide_claim("c", None, 0, &addrs("a")), Err(ArbiterError::InvalidEpoch { .. })));
        assert!(matches!(decide_claim("c", None, 2, &addrs("a")), Err(ArbiterError::InvalidEpoch { .. })));
        // Exact repeat by the holder: the same grant again (retry safety).
        assert_eq!(decide_claim("c", Some(&r1), 1, &addrs("a")).unwrap(), Decision::Answer(Claim::Granted(r1.clone())));
        // Same node, different addresses: not a repeat.
        let moved = NodeAddrs { client: "elsewhere:1".into(), ..addrs("a") };
        assert!(matches!(decide_claim("c", Some(&r1), 1, &moved).unwrap(), Decision::Answer(Claim::Superseded(_))));
        assert!(matches!(decide_claim("c", Some(&r1), 2, &addrs("b")).unwrap(), Decision::Answer(Claim::NotMember(_))));
        assert!(matches!(decide_claim("c", Some(&r1), 2, &addrs("a")).unwrap(), Decision::Write(_)));
    }

    #[test]
    fn epoch_overflow_is_an_error_not_a_wrap() {
        let r = ClusterRecord::granted("c", u64::MAX, &addrs("a"));
        assert!(matches!(decide_claim("c", Some(&r), u64::MAX, &addrs("b")).unwrap(), Decision::Answer(Claim::Superseded(_))));
    }

    #[test]
    fn a_second_backup_in_one_epoch_is_refused() {
        let mut r = ClusterRecord::granted("c", 3, &addrs("a"));
        r.members.push("b".into());
        let e = decide_add_member("c", Some(&r), 3, "a", "d").unwrap_err();
        assert!(e.to_string().contains("claim epoch 4 first"), "{e}");
        assert!(decide_add_member("c", Some(&r), 3, "a", "a").is_err());
        // The same backup again is fine (idempotent).
        assert!(matches!(decide_add_member("c", Some(&r), 3, "a", "b").unwrap(), Decision::Write(_)));
    }
}
