//! The built-in server on a full disk (needs root to mount a tmpfs; CI runs
//! as root). No grant that is not durable (Promise 2): the claim fails with
//! the OS's words, memory is unchanged, and it succeeds once space is freed.

mod common;

use std::net::TcpListener;

use common::{addrs, Tmpfs};
use understudy_arbiter::{connect, ArbiterError, Server};

#[test]
fn full_disk_refuses_the_claim_and_keeps_the_epoch() {
    let disk = Tmpfs::mount("64k");
    let dir = disk.path().join("arbiter");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = Server::open(&dir, b"s".to_vec()).unwrap().spawn(listener).unwrap();
    let a = connect(&server.url(), b"s").unwrap();
    assert!(a.claim("c", 1, &addrs("a")).unwrap().is_granted());

    let filler = disk.fill();
    match a.claim("c", 2, &addrs("a")) {
        Err(e @ ArbiterError::Io { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("No space left on device") && msg.contains("free space"), "{msg}");
        }
        other => panic!("claim on a full disk: expected an Io error, got {other:?}"),
    }
    assert_eq!(a.read("c").unwrap().unwrap().epoch, 1, "the refused grant is not in memory either");

    std::fs::remove_file(filler).unwrap();
    assert!(a.claim("c", 2, &addrs("a")).unwrap().is_granted());
    server.stop().unwrap();

    // And it reached the disk: a new server knows epoch 2.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = Server::open(&dir, b"s".to_vec()).unwrap().spawn(listener).unwrap();
    assert_eq!(connect(&server.url(), b"s").unwrap().read("c").unwrap().unwrap().epoch, 2);
    server.stop().unwrap();
}
