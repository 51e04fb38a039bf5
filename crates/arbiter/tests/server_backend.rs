//! The built-in arbiter server and its client (`understudy://`), black-box
//! over real TCP on loopback (DESIGN §3, §6).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::addrs;
use understudy_arbiter::{connect, Arbiter, ArbiterError, RunningServer, Server};
use understudy_wire::frame::{encode, FrameDecoder, FrameHeader, Kind};
use understudy_wire::handshake::Handshake;
use understudy_wire::msg::{Hello, Purpose, Reject, RejectCode};

const SECRET: &[u8] = b"correct horse battery staple";

fn start_on(dir: &Path, addr: &str) -> RunningServer {
    let listener = TcpListener::bind(addr).unwrap();
    Server::open(dir, SECRET.to_vec()).unwrap().spawn(listener).unwrap()
}

fn start(dir: &Path) -> RunningServer {
    start_on(dir, "127.0.0.1:0")
}

#[test]
fn server_passes_the_conformance_suite() {
    let d = tempfile::tempdir().unwrap();
    let server = start(d.path());
    let (a, b) = (connect(&server.url(), SECRET).unwrap(), connect(&server.url(), SECRET).unwrap());
    common::conformance(a.as_ref(), b.as_ref());
    server.stop().unwrap();
}

#[test]
fn server_grants_each_epoch_once_under_contention() {
    let d = tempfile::tempdir().unwrap();
    let server = start(d.path());
    let handles: Vec<Box<dyn Arbiter>> = (0..16).map(|_| connect(&server.url(), SECRET).unwrap()).collect();
    common::race(&handles, 8);
}

/// Promise 2 across a crash of the arbiter: a restarted server on the same
/// --dir knows every epoch and member it granted. The client keeps its (now
/// dead) cached connection and must reconnect by itself.
#[test]
fn restart_keeps_epoch_and_members() {
    let d = tempfile::tempdir().unwrap();
    let server = start(d.path());
    let addr = server.local_addr().to_string();
    let a = connect(&server.url(), SECRET).unwrap();
    assert!(a.claim("c", 1, &addrs("a")).unwrap().is_granted());
    assert!(a.add_member("c", 1, "a", "b").unwrap().is_applied());
    let before = a.read("c").unwrap().unwrap();
    server.stop().unwrap();

    let server = start_on(d.path(), &addr);
    assert_eq!(a.read("c").unwrap(), Some(before), "same record after the restart");
    assert!(!a.claim("c", 1, &addrs("x")).unwrap().is_granted(), "epoch 1 is not handed out again");
    assert!(!a.claim("c", 2, &addrs("x")).unwrap().is_granted(), "x is still no member");
    assert!(a.claim("c", 2, &addrs("b")).unwrap().is_granted(), "b is still a member");
    server.stop().unwrap();
}

#[test]
fn wrong_secret_is_an_auth_error_naming_the_flag() {
    common::logs::install();
    let d = tempfile::tempdir().unwrap();
    let server = start(d.path());
    let a = connect(&server.url(), b"not the secret").unwrap();
    match a.read("c") {
        Err(e @ ArbiterError::Auth { .. }) => {
            assert!(e.to_string().contains("--secret-file"), "{e}")
        }
        other => panic!("wrong secret: expected Auth, got {other:?}"),
    }
    let logged = common::logs::wait_for(&["WARN", "could not verify our proof", "--secret-file"]);
    assert!(logged.is_some(), "the server logs the failed authentication");
    // The server is unharmed and still serves the right secret.
    assert_eq!(connect(&server.url(), SECRET).unwrap().read("c").unwrap(), None);
}

/// Failover must not hang on a dead arbiter: refused and unroutable
/// addresses fail within about two seconds.
#[test]
fn unreachable_arbiter_fails_fast() {
    let refusing = common::refusing_port();
    let port = refusing.port;
    for url in [format!("understudy://127.0.0.1:{port}"), "understudy://192.0.2.1:7700".to_string()] {
        let a = connect(&url, SECRET).unwrap();
        let t = Instant::now();
        match a.claim("c", 1, &addrs("a")) {
            Err(e @ ArbiterError::Unreachable { .. }) => {
                assert!(e.to_string().contains(&url), "{e}")
            }
            other => panic!("{url}: expected Unreachable, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_millis(2500), "{url}: took {:?}", t.elapsed());
    }
}

/// A bad frame closes that connection (DESIGN §6) and nothing else.
#[test]
fn garbage_closes_only_that_connection() {
    let d = tempfile::tempdir().unwrap();
    let server = start(d.path());
    let mut raw = TcpStream::connect(server.local_addr()).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    raw.write_all(&[0xff; 64]).unwrap();
    let mut buf = Vec::new();
    let _ = raw.read_to_end(&mut buf); // EOF (or reset): the server hung up
    assert!(buf.is_empty(), "nothing is answered to garbage: {buf:?}");
    let a = connect(&server.url(), SECRET).unwrap();
    assert!(a.claim("c", 1, &addrs("a")).unwrap().is_granted());
}

/// Nodes keep one connection and send many requests on it.
#[test]
fn many_requests_share_one_connection() {
    let d = tempfile::tempdir().unwrap();
    let server = start(d.path());
    let a = connect(&server.url(), SECRET).unwrap();
    assert!(a.claim("c", 1, &addrs("a")).unwrap().is_granted());
    for i in 0..300u64 {
        let backup = understudy_arbiter::BackupInfo { node: "b".into(), state: understudy_arbiter::BackupState::Joining, lag: i };
        assert!(a.publish("c", 1, "a", Some(backup), false).unwrap().is_applied());
    }
    assert_eq!(a.read("c").unwrap().unwrap().backup.unwrap().lag, 299);
}

#[test]
fn a_second_server_on_the_same_dir_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let _server = start(d.path());
    match Server::open(d.path(), SECRET.to_vec()) {
        Err(e @ ArbiterError::DirLocked { .. }) => assert!(e.to_string().contains("--dir"), "{e}"),
        Err(other) => panic!("expected DirLocked, got {other}"),
        Ok(_) => panic!("two servers on one --dir would grant epochs twice"),
    }
}

/// Reads one frame from a raw stream.
fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> (Kind, Vec<u8>) {
    let dec = FrameDecoder::new(1 << 20);
    loop {
        if let Some((f, used)) = dec.decode(buf).unwrap() {
            let out = (f.header.kind, f.payload.to_vec());
            buf.drain(..used);
            return out;
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "server closed before sending a whole frame");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn raw_hello(purpose: Purpose, machine: &str) -> Hello {
    Hello {
        cluster: String::new(),
        node: "raw".into(),
        incarnation: 1,
        purpose,
        machine: machine.into(),
        nonce: [7; 16],
        client: String::new(),
        resume: None,
    }
}

/// Opens a raw connection, sends our hello, reads the server's hello and proof.
fn raw_handshake_start(server: &RunningServer, hello: Hello) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (_hs, first) = Handshake::initiator(b"irrelevant", hello, 0);
    s.write_all(&first).unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_frame(&mut s, &mut buf).0, Kind::Hello);
    assert_eq!(read_frame(&mut s, &mut buf).0, Kind::Proof);
    (s, buf)
}

fn expect_reject_then_eof(s: &mut TcpStream, buf: &mut Vec<u8>, code: RejectCode) {
    let (kind, payload) = read_frame(s, buf);
    assert_eq!(kind, Kind::Reject);
    assert_eq!(Reject::decode(&payload).unwrap().code, code);
    assert_eq!(s.read(&mut [0u8; 16]).unwrap_or(0), 0, "closed after the rejection");
}

/// A peer that cannot prove the secret gets Reject(AuthFailed), is closed,
/// and the server says so in its log (DESIGN §6).
#[test]
fn a_bad_proof_is_rejected_closed_and_logged() {
    common::logs::install();
    let d = tempfile::tempdir().unwrap();
    let server = start(d.path());
    let (mut s, mut buf) = raw_handshake_start(&server, raw_hello(Purpose::Arbiter, "arbiter/1"));
    let local = s.local_addr().unwrap().to_string();
    let mut forged = Vec::new();
    encode(&mut forged, FrameHeader { epoch: 0, seq: 0, kind: Kind::Proof }, &[0u8; 32]);
    s.write_all(&forged).unwrap();
    expect_reject_then_eof(&mut s, &mut buf, RejectCode::AuthFailed);
    assert!(common::logs::wait_for(&["WARN", &local, "failed authentication"]).is_some(), "failure is logged");
}

/// Something that is not an arbiter client (here: a joiner, as if a node's
/// --arbiter pointed at another node's port) is refused after authenticating.
#[test]
fn a_peer_with_another_purpose_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let server = start(d.path());
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (mut hs, first) = Handshake::initiator(SECRET, raw_hello(Purpose::Join, "kv/1"), 0);
    s.write_all(&first).unwrap();
    let mut buf = Vec::new();
    for _ in 0..2 {
        let (kind, payload) = read_frame(&mut s, &mut buf);
        let f = understudy_wire::Frame { header: FrameHeader { epoch: 0, seq: 0, kind }, payload: &payload };
        match hs.on_frame(f).unwrap() {
            understudy_wire::handshake::Step::Send(out) | understudy_wire::handshake::Step::Done(out, _) => {
                s.write_all(&out).unwrap()
            }
        }
    }
    expect_reject_then_eof(&mut s, &mut buf, RejectCode::Protocol);
}
