//! The `file://` backend (DESIGN §3, "test-and-set on shared storage": an
//! atomic create on a shared filesystem).

mod common;

use std::fs;

use common::{addrs, Tmpfs};
use understudy_arbiter::{connect, Arbiter, ArbiterError, FileArbiter};

fn two_hosts(dir: &std::path::Path) -> (FileArbiter, FileArbiter) {
    (FileArbiter::open(dir).unwrap(), FileArbiter::open(dir).unwrap())
}

#[test]
fn file_backend_passes_the_conformance_suite() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = two_hosts(d.path());
    common::conformance(&a, &b);
}

#[test]
fn file_backend_grants_each_epoch_once_under_contention() {
    let d = tempfile::tempdir().unwrap();
    let url = format!("file://{}", d.path().display());
    let handles: Vec<Box<dyn Arbiter>> = (0..16).map(|_| connect(&url, b"").unwrap()).collect();
    common::race(&handles, 8);
}

/// The documented layout: one immutable file per epoch and per member, a
/// status file, no temporary leftovers, and old epochs kept.
#[test]
fn file_layout_is_one_immutable_file_per_fact() {
    let d = tempfile::tempdir().unwrap();
    let (a, _) = two_hosts(d.path());
    assert!(a.claim("c", 1, &addrs("a")).unwrap().is_granted());
    assert!(a.add_member("c", 1, "a", "b").unwrap().is_applied());
    assert!(a.claim("c", 2, &addrs("b")).unwrap().is_granted());
    let mut names: Vec<String> =
        fs::read_dir(d.path().join("c")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "epoch-00000000000000000001",
            "epoch-00000000000000000001.member-b",
            "epoch-00000000000000000001.status",
            "epoch-00000000000000000002",
        ]
    );
    let epoch2: serde_json::Value =
        serde_json::from_slice(&fs::read(d.path().join("c/epoch-00000000000000000002")).unwrap()).unwrap();
    assert_eq!(epoch2["primary"]["node"], "b");
    assert_eq!(epoch2["epoch"], 2);
}

/// A full shared disk: the claim fails with the OS's words and changes
/// nothing; once space is freed the same claim succeeds.
#[test]
fn file_backend_full_disk_is_an_io_error_and_grants_nothing() {
    let fs_ = Tmpfs::mount("64k");
    let a = FileArbiter::open(fs_.path()).unwrap();
    assert!(a.claim("c", 1, &addrs("a")).unwrap().is_granted());
    let filler = fs_.fill();
    match a.claim("c", 2, &addrs("a")) {
        Err(e @ ArbiterError::Io { .. }) => {
            assert!(e.to_string().contains("No space left on device"), "{e}");
        }
        other => panic!("claim on a full disk: expected an Io error, got {other:?}"),
    }
    assert_eq!(a.read("c").unwrap().unwrap().epoch, 1);
    fs::remove_file(filler).unwrap();
    assert!(a.claim("c", 2, &addrs("a")).unwrap().is_granted());
}
