//! The virtual network: the guest's listening socket is fd 3, what it sees of
//! its clients enters through recorded calls, and its replies pass the
//! output gate (DESIGN §3: output rule, go live).

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{config, event_calls, Client, WatchSink};
use understudy_hypervisor::{
    run, Console, Ending, Func, GuestConfig, GuestEnd, LiveWorld, MemorySink, Mode, Release, RunOptions, VecSource,
};

const VERIFY: RunOptions = RunOptions { verify_memory: true };
const ECONNRESET: u16 = 15;

fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

fn spawn(cfg: &GuestConfig, mode: Mode, opts: RunOptions) -> std::thread::JoinHandle<GuestEnd> {
    let cfg = cfg.clone();
    std::thread::spawn(move || run(&cfg, mode, opts).expect("guest starts"))
}

#[test]
fn kvserver_session_is_recorded_and_replays_to_the_same_memory() {
    let cfg = config("kvserver");
    let l = listener();
    let addr = l.local_addr().unwrap();
    let sink = MemorySink::default();
    let out = Arc::new(Mutex::new(Vec::new()));
    let world = LiveWorld::new(sink.clone()).with_listener(l).with_console(Console::Capture(out.clone()), Console::Discard);
    let guest = spawn(&cfg, Mode::Record(world), VERIFY);

    let mut a = Client::connect(addr);
    let mut b = Client::connect(addr);
    assert_eq!(a.call(&["PING"]), "+PONG");
    assert_eq!(a.call(&["SET", "greeting", "hello world"]), "+OK");
    assert_eq!(b.call(&["GET", "greeting"]), "$hello world");
    assert_eq!(b.call(&["GET", "missing"]), "$nil");
    for i in 1..=3 {
        assert_eq!(a.call(&["INCR", "n"]), format!(":{i}"));
    }
    // Pipelining: three requests in one write, three replies.
    let mut batch = common::encode(&["SET", "k1", "v1"]);
    batch.extend(common::encode(&["EXISTS", "k1", "k2", "greeting"]));
    batch.extend(common::encode(&["DBSIZE"]));
    std::io::Write::write_all(&mut a.stream(), &batch).unwrap();
    assert_eq!((a.reply(), a.reply(), a.reply()), ("+OK".into(), ":2".into(), ":3".into()));
    assert_eq!(b.call(&["DEL", "k1", "nope"]), ":1");
    assert_eq!((b.call(&["CONFIG", "GET", "save"]), b.reply(), b.reply()), ("*2".into(), "$save".into(), "$".into()));
    drop(a);
    assert_eq!(b.call(&["SHUTDOWN"]), "+OK");
    let rec = guest.join().unwrap();
    assert_eq!(rec.ending, Ending::Exited(0));
    assert!(String::from_utf8_lossy(&out.lock().unwrap()).contains("kvserver: shutdown after"));

    let events = sink.events.lock().unwrap().clone();
    let funcs: Vec<Func> = event_calls(&events).iter().map(|c| c.1).collect();
    for f in [Func::SockAccept, Func::SockRecv, Func::SockSend, Func::PollOneoff] {
        assert!(funcs.contains(&f), "{f:?} recorded");
    }
    let bytes: usize = events.iter().map(Vec::len).sum();
    println!("kvserver session: {} events, {bytes} log bytes, {} calls", events.len(), rec.calls);

    let rep = run(&cfg, Mode::Replay(Box::new(VecSource::new(events))), RunOptions::default()).unwrap();
    assert_eq!(rep.ending, Ending::Exited(0));
    assert_eq!((rep.state_hash, rep.outputs_digest, rep.calls), (rec.state_hash, rec.outputs_digest, rec.calls));
}

#[test]
fn output_gate_holds_replies_until_released() {
    let cfg = config("kvserver");
    let l = listener();
    let addr = l.local_addr().unwrap();
    let sink = WatchSink::default();
    let release = Release::new(0);
    let world = LiveWorld::new(sink.clone()).with_listener(l).with_release(release.clone());
    let guest = spawn(&cfg, Mode::Record(world), RunOptions::default());

    let mut c = Client::connect(addr);
    c.send(&["SET", "k", "v"]);
    // The guest has processed the request and sent its reply: the send is in the log.
    let seq = sink.wait_for("the reply's sock_send", |_, f, e| f == Func::SockSend && e == 0);
    c.stream().set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut buf = [0u8; 16];
    let r = c.stream().read(&mut buf);
    assert!(r.is_err(), "nothing may reach the client before release: got {r:?}");
    release.advance(seq - 1);
    let r = c.stream().read(&mut buf);
    assert!(r.is_err(), "release just below the reply's seq keeps it: got {r:?}");
    release.advance(seq);
    c.stream().set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(c.reply(), "+OK");

    release.advance(u64::MAX);
    assert_eq!(c.call(&["SHUTDOWN"]), "+OK");
    assert_eq!(guest.join().unwrap().ending, Ending::Exited(0));
}

#[test]
fn backup_goes_live_with_the_replayed_state_and_resets_old_connections() {
    let cfg = config("kvserver");
    // The primary: records a session, then is stopped (it "dies").
    let l1 = listener();
    let addr1 = l1.local_addr().unwrap();
    let sink1 = WatchSink::default();
    let release1 = Release::everything();
    let world1 = LiveWorld::new(sink1.clone()).with_listener(l1).with_release(release1.clone());
    let primary = spawn(&cfg, Mode::Record(world1), RunOptions::default());
    let mut old = Client::connect(addr1);
    assert_eq!(old.call(&["SET", "a", "1"]), "+OK");
    assert_eq!(old.call(&["SET", "b", "2"]), "+OK");
    assert_eq!(old.call(&["INCR", "a"]), ":2");
    release1.stop();
    assert_eq!(primary.join().unwrap().ending, Ending::Stopped);
    let log = sink1.snapshot();

    // The backup: replays the log, then goes live on a new listener.
    let l2 = listener();
    let addr2 = l2.local_addr().unwrap();
    let sink2 = WatchSink::default();
    let world2 = LiveWorld::new(sink2.clone()).with_listener(l2);
    let source = VecSource::new(log.clone()).then_go_live(world2);
    let backup = spawn(&cfg, Mode::Replay(Box::new(source)), RunOptions::default());
    let mut new = Client::connect(addr2);
    assert_eq!(new.call(&["GET", "a"]), "$2");
    assert_eq!(new.call(&["GET", "b"]), "$2");
    assert_eq!(new.call(&["DBSIZE"]), ":2");
    // The old primary's connection was reset: the guest saw ECONNRESET on it.
    sink2.wait_for("a reset on the old connection", |_, f, e| f == Func::SockRecv && e == ECONNRESET);
    assert_eq!(new.call(&["SHUTDOWN"]), "+OK");
    let end = backup.join().unwrap();
    assert_eq!(end.ending, Ending::Exited(0));
    let went_live = end.went_live_at_call.expect("went live");
    let last_replayed = event_calls(&log).last().unwrap().0;
    assert!(went_live > last_replayed, "live from call {went_live}, after replayed call {last_replayed}");
}

#[test]
fn a_full_send_buffer_gives_eagain_and_drains_after_release() {
    const EAGAIN: u16 = 6;
    let cfg = config("kvserver");
    let l = listener();
    let addr = l.local_addr().unwrap();
    let sink = WatchSink::default();
    let release = Release::new(0);
    let mut world = LiveWorld::new(sink.clone()).with_listener(l).with_release(release.clone());
    world.send_buffer_bytes_max = 64;
    let guest = spawn(&cfg, Mode::Record(world), RunOptions::default());

    let big = "x".repeat(1000);
    let mut c = Client::connect(addr);
    c.send(&["SET", "big", &big]);
    c.send(&["GET", "big"]);
    // The reply does not fit the 64 bytes the output gate may hold for this
    // connection: the non-blocking send is refused (a recorded result).
    sink.wait_for("a send refused with EAGAIN", |_, f, e| f == Func::SockSend && e == EAGAIN);
    release.advance(u64::MAX);
    assert_eq!(c.reply(), "+OK");
    assert_eq!(c.reply(), format!("${big}"));
    assert_eq!(c.call(&["SHUTDOWN"]), "+OK");
    let end = guest.join().unwrap();
    assert_eq!(end.ending, Ending::Exited(0));

    let rep = run(&cfg, Mode::Replay(Box::new(VecSource::new(sink.snapshot()))), RunOptions::default()).unwrap();
    assert_eq!((rep.ending, rep.state_hash), (end.ending, end.state_hash));
}
