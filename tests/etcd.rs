//! The etcd arbiter with the real binary and a real etcd (Debian's
//! etcd-server 3.4): a failover through etcd; etcd restarted mid-run; etcd
//! unreachable while the pair is healthy (it keeps serving) and during a
//! failure (no one goes live until it is back, then exactly one does); a
//! 3-member etcd that loses a member.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use understudy_client::Reply;

/// A local etcd cluster of `n` members on free loopback ports.
struct Etcd {
    dir: tempfile::TempDir,
    members: Vec<(u16, u16, Option<Child>)>,
}

impl Etcd {
    fn start(n: usize) -> Etcd {
        let ok = Command::new("etcd").arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(ok, "these tests start a real etcd: install Debian's package etcd-server (scripts/install-deps does)");
        let mut e =
            Etcd { dir: tempfile::tempdir().unwrap(), members: (0..n).map(|_| (free_port(), free_port(), None)).collect() };
        for i in 0..n {
            e.spawn(i);
        }
        for i in 0..n {
            e.wait_healthy(i);
        }
        e
    }

    fn data(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("m{i}"))
    }

    fn spawn(&mut self, i: usize) {
        let cluster: Vec<String> =
            self.members.iter().enumerate().map(|(j, m)| format!("m{j}=http://127.0.0.1:{}", m.1)).collect();
        let (c, p, _) = self.members[i];
        let log = std::fs::File::create(self.dir.path().join(format!("m{i}.log"))).unwrap();
        let child = Command::new("etcd")
            .args(["--name", &format!("m{i}"), "--data-dir"])
            .arg(self.data(i))
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{c}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{c}"),
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{p}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{p}"),
            ])
            .args(["--initial-cluster", &cluster.join(","), "--initial-cluster-state", "new", "--initial-cluster-token"])
            .arg(self.dir.path().file_name().unwrap())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.members[i].2 = Some(child);
    }

    fn wait_healthy(&self, i: usize) {
        let port = self.members[i].0;
        wait_for("etcd to be healthy", Duration::from_secs(60), || {
            let out = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &format!("127.0.0.1:{port}"), "endpoint", "health"])
                .output()
                .ok()?;
            out.status.success().then_some(())
        });
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].2.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_healthy(i);
    }

    fn url(&self) -> String {
        let eps: Vec<String> = self.members.iter().map(|m| format!("127.0.0.1:{}", m.0)).collect();
        format!("etcd://{}", eps.join(","))
    }

    fn _dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

fn pair(h: &mut Harness) -> u64 {
    h.start_node("a", &[]);
    h.wait_primary("a");
    h.start_node("b", &[]);
    h.wait_in_sync("b").epoch
}

#[test]
fn failover_through_etcd_loses_nothing() {
    let _s = serial();
    let etcd = Etcd::start(1);
    let mut h = Harness::with_arbiter(&etcd.url());
    let epoch = pair(&mut h);
    let load = Load::start(&h, 4, "e");
    load.wait_more(1500, Duration::from_secs(60));
    let t0 = Instant::now();
    h.kill9("a");
    h.wait_primary_after("b", epoch);
    println!("failover through etcd: {:?} (kill -9 -> the new primary serves)", t0.elapsed());
    load.wait_more(300, Duration::from_secs(60));
    let acked = load.stop();
    assert_all_present(&h.node("b").client, &acked);
}

#[test]
fn etcd_restarted_mid_run_forgets_nothing() {
    let _s = serial();
    let mut etcd = Etcd::start(1);
    let mut h = Harness::with_arbiter(&etcd.url());
    let epoch = pair(&mut h);
    etcd.kill(0);
    // The healthy pair keeps serving while etcd is down.
    let mut c = h.conn("a");
    for i in 0..100 {
        let k = format!("k{i}");
        assert_eq!(c.call(&["SET", k.as_str(), "v"]).unwrap(), Reply::Simple("OK".into()));
    }
    etcd.restart(0);
    let r = h.record().expect("etcd kept the record");
    assert_eq!((r.epoch, r.primary.node.as_str()), (epoch, "a"));
    h.kill9("a");
    h.wait_primary_after("b", epoch);
    assert_eq!(h.conn("b").call(&["GET", "k99"]).unwrap().bytes(), Some(&b"v"[..]));
}

#[test]
fn no_one_goes_live_while_etcd_is_unreachable_then_exactly_one_does() {
    let _s = serial();
    let mut etcd = Etcd::start(1);
    let mut h = Harness::with_arbiter(&etcd.url());
    let epoch = pair(&mut h);
    assert_eq!(h.conn("a").call(&["SET", "x", "1"]).unwrap(), Reply::Simple("OK".into()));
    etcd.kill(0);
    h.kill9("a");
    // b cannot win an epoch: it must not serve. Watch for a while.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(!serves_as_primary(&h.node("b").client), "b went live without the arbiter");
        std::thread::sleep(Duration::from_millis(100));
    }
    etcd.restart(0);
    let r = h.wait_primary_after("b", epoch);
    assert_eq!(r.epoch, epoch + 1, "exactly one new epoch");
    assert_eq!(h.conn("b").call(&["GET", "x"]).unwrap().bytes(), Some(&b"1"[..]));
}

#[test]
fn three_member_etcd_survives_losing_a_member() {
    let _s = serial();
    let mut etcd = Etcd::start(3);
    let mut h = Harness::with_arbiter(&etcd.url());
    let epoch = pair(&mut h);
    etcd.kill(0);
    h.kill9("a");
    let r = h.wait_primary_after("b", epoch);
    assert_eq!(r.epoch, epoch + 1);
    h.start_node("c", &[]);
    h.wait_in_sync("c");
}
