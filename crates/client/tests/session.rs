//! The session client's retry rules against scripted servers: a request
//! retried after a broken connection carries the same seq; a redirect is
//! followed; a session the server forgot is opened again only when no
//! request of it was in flight (otherwise the outcome is unknown, and said).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use understudy_client::{Locator, Reply, Session, SessionError, SessionOptions};

/// What a scripted server does with one command.
enum Act {
    Answer(String),
    /// Close the connection without answering.
    Drop,
    /// Read it and never answer.
    Ignore,
}

fn read_command(r: &mut impl BufRead) -> Option<Vec<String>> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let n: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    (0..n)
        .map(|_| {
            line.clear();
            r.read_line(&mut line).ok()?;
            let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
            let mut b = vec![0; len + 2];
            r.read_exact(&mut b).ok()?;
            b.truncate(len);
            String::from_utf8(b).ok()
        })
        .collect()
}

/// A server on a free port that answers each command as `script` says and
/// logs every command it received.
fn server(mut script: impl FnMut(&[String]) -> Act + Send + 'static) -> (String, Arc<Mutex<Vec<Vec<String>>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let log = Arc::new(Mutex::new(Vec::new()));
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let mut w: TcpStream = stream.unwrap();
            let mut r = BufReader::new(w.try_clone().unwrap());
            while let Some(cmd) = read_command(&mut r) {
                seen.lock().unwrap().push(cmd.clone());
                match script(&cmd) {
                    Act::Answer(a) => w.write_all(a.as_bytes()).unwrap(),
                    Act::Drop => break,
                    Act::Ignore => {}
                }
            }
        }
    });
    (addr, log)
}

fn opts() -> SessionOptions {
    SessionOptions {
        attempt_timeout: Duration::from_millis(300),
        give_up_after: Duration::from_secs(5),
        ..SessionOptions::default()
    }
}

const OPENED: &str = "*2\r\n:0\r\n:4\r\n";

fn calls(log: &Mutex<Vec<Vec<String>>>) -> Vec<String> {
    log.lock().unwrap().iter().map(|c| format!("{} {}", c[0], c.get(2).map_or("", |s| s.as_str()))).collect()
}

#[test]
fn a_request_retried_after_a_broken_connection_keeps_its_seq() {
    let mut dropped = false;
    let (addr, log) = server(move |cmd| match cmd[0].as_str() {
        "US.SESSION" => Act::Answer(OPENED.into()),
        "US.CALL" if !dropped => {
            dropped = true;
            Act::Drop
        }
        _ => Act::Answer(":1\r\n".into()),
    });
    let mut s = Session::open(Locator::Nodes(vec![addr]), opts()).unwrap();
    assert_eq!(s.window(), 4);
    assert_eq!(s.call(&["INCR", "n"]).unwrap(), Reply::Int(1));
    assert_eq!(calls(&log), ["US.SESSION ", "US.CALL 1", "US.CALL 1"]);
    assert_eq!(log.lock().unwrap()[1][1], s.id(), "the session id travels with every call");
    assert_eq!(s.stats().resent, 1);
    assert_eq!(s.next_seq(), 2);
}

#[test]
fn a_redirect_to_the_primary_is_followed() {
    let (primary, _) = server(|cmd| Act::Answer(if cmd[0] == "US.SESSION" { OPENED.into() } else { "+OK\r\n".into() }));
    let redirect = format!("-READONLY You can't write against a read only replica. primary at {primary}\r\n");
    let (backup, backup_log) = server(move |_| Act::Answer(redirect.clone()));
    let mut s = Session::open(Locator::Nodes(vec![backup]), opts()).unwrap();
    assert_eq!(s.call(&["SET", "k", "v"]).unwrap(), Reply::Simple("OK".into()));
    assert_eq!(s.connected_to(), Some(&primary[..]));
    assert_eq!(backup_log.lock().unwrap().len(), 1, "only the first try went to the backup");
}

#[test]
fn a_forgotten_session_is_reopened_only_if_nothing_was_in_flight() {
    let mut n = 0;
    let (addr, log) = server(move |cmd| {
        n += 1;
        match (cmd[0].as_str(), n) {
            ("US.SESSION", _) => Act::Answer(OPENED.into()),
            // First send of request 1: the server had forgotten the session.
            (_, 2) => Act::Answer("-NOSESSION unknown session\r\n".into()),
            (_, 4) => Act::Answer(":1\r\n".into()),
            // Request 2 is sent, unanswered, then refused on its retry.
            (_, 5) => Act::Drop,
            _ => Act::Answer("-NOSESSION unknown session\r\n".into()),
        }
    });
    let mut s = Session::open(Locator::Nodes(vec![addr]), opts()).unwrap();
    assert_eq!(s.call(&["INCR", "n"]).unwrap(), Reply::Int(1));
    assert_eq!(s.stats().reopened, 1);
    match s.call(&["INCR", "n"]) {
        Err(SessionError::Lost { seq: 2, .. }) => {}
        other => panic!("a refused retry must be reported as lost, got {other:?}"),
    }
    assert_eq!(calls(&log), ["US.SESSION ", "US.CALL 1", "US.SESSION ", "US.CALL 1", "US.CALL 2", "US.CALL 2"]);
}

#[test]
fn pipelines_are_bounded_by_the_window_and_silence_times_out() {
    let (addr, _) = server(|cmd| if cmd[0] == "US.SESSION" { Act::Answer(OPENED.into()) } else { Act::Ignore });
    let mut o = opts();
    o.give_up_after = Duration::from_millis(700);
    let mut s = Session::open(Locator::Nodes(vec![addr]), o).unwrap();
    let five: Vec<Vec<&str>> = (0..5).map(|_| vec!["INCR", "n"]).collect();
    assert!(matches!(s.pipeline(&five), Err(SessionError::Usage(_))));
    match s.call(&["INCR", "n"]) {
        Err(SessionError::Timeout { attempts, .. }) => assert!(attempts >= 2),
        other => panic!("expected a timeout, got {other:?}"),
    }
}
