//! Real etcd processes for the etcd backend's tests (DESIGN §7, rung 6:
//! "Debian's `etcd-server` for the etcd arbiter"): one or three members on
//! loopback, each with its own data directory, killed with SIGKILL when the
//! guard drops. Tests talk to etcd directly with Debian's `etcdctl`, a
//! client independent of ours.
//!
//! Ports: etcd cannot listen on port 0 and report it, and a port found by
//! binding port 0 and closing it can be taken by a parallel test before
//! etcd binds it. So the ports are drawn at random *below* the kernel's
//! ephemeral range, where no port-0 listener of any test lands; two etcds
//! drawing the same port are told apart by identity (every member name
//! carries this cluster's unique token, checked in `member list`), and a
//! start that finds a port taken starts again on other ports.
//!
//! A missing `etcd` binary fails the test with the package to install: a
//! skipped test would hide that the etcd backend is unchecked.
//!
//! Shared by the arbiter crate's tests and the multi-process tests
//! (`tests/etcd.rs`), which use different parts of it.
#![allow(dead_code)]

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a member may take to answer `/health` (generous: CI machines
/// are small and tests start several etcds at once).
const HEALTHY_WITHIN: Duration = Duration::from_secs(60);

/// One etcd member process.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// An etcd cluster of one or more members; see the module docs.
pub struct Etcd {
    members: Vec<Member>,
    /// Server certificate and key: clients then speak TLS (peers do not).
    tls: Option<(PathBuf, PathBuf)>,
    /// More flags for every member.
    extra: Vec<String>,
    initial_cluster: String,
    token: String,
    _dir: tempfile::TempDir,
}

/// Fails the test, naming the Debian package, when `etcd` cannot be run.
fn require_etcd() {
    match Command::new("etcd").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("`etcd --version` failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(e) => panic!(
            "the etcd backend's tests start a real etcd, but `etcd` cannot be run ({e}): install Debian's package etcd-server (apt-get install etcd-server)"
        ),
    }
}

/// `n` distinct ports drawn at random from 20000–32767: below Linux's
/// ephemeral range (32768–60999), so never one a port-0 listener was given.
fn random_ports(n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    while ports.len() < n {
        let mut b = [0u8; 2];
        getrandom::fill(&mut b).unwrap();
        let p = 20000 + u16::from_le_bytes(b) % 12768;
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    ports
}

/// Starts this many times on fresh ports before giving up.
const START_ATTEMPTS: usize = 8;

impl Etcd {
    /// Starts an `n`-member cluster and waits until every member is healthy.
    pub fn start(n: usize) -> Etcd {
        Etcd::start_with(n, None, &[])
    }

    /// Like [`Etcd::start`], with more flags for every member.
    pub fn start_with_flags(n: usize, flags: &[&str]) -> Etcd {
        Etcd::start_with(n, None, flags)
    }

    /// Like [`Etcd::start`], serving clients over TLS with `cert` and `key`.
    #[cfg(feature = "etcd-tls")]
    pub fn start_tls(n: usize, cert: &Path, key: &Path) -> Etcd {
        Etcd::start_with(n, Some((cert.to_path_buf(), key.to_path_buf())), &[])
    }

    fn start_with(n: usize, tls: Option<(PathBuf, PathBuf)>, flags: &[&str]) -> Etcd {
        require_etcd();
        for attempt in 1..=START_ATTEMPTS {
            let dir = tempfile::tempdir().unwrap();
            let unique = dir.path().file_name().unwrap().to_string_lossy().replace('.', "");
            let ports = random_ports(2 * n);
            let members: Vec<Member> = (0..n)
                .map(|i| Member {
                    name: format!("m{i}-{unique}"),
                    client_port: ports[2 * i],
                    peer_port: ports[2 * i + 1],
                    data_dir: dir.path().join(format!("m{i}.etcd")),
                    log: dir.path().join(format!("m{i}.log")),
                    child: None,
                })
                .collect();
            let initial_cluster =
                members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)).collect::<Vec<_>>().join(",");
            let token = format!("understudy-test-{unique}");
            let extra = flags.iter().map(|f| f.to_string()).collect();
            let mut etcd = Etcd { members, tls: tls.clone(), extra, initial_cluster, token, _dir: dir };
            for i in 0..n {
                etcd.spawn(i);
            }
            match (0..n).try_for_each(|i| etcd.try_wait_healthy(i)) {
                Ok(()) => return etcd,
                Err(why) => eprintln!("etcd start attempt {attempt}: {why}; again on other ports"),
            }
        }
        panic!("etcd did not start in {START_ATTEMPTS} attempts on random ports (see the messages above)");
    }

    fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let log = File::options().create(true).append(true).open(&m.log).unwrap();
        let mut cmd = Command::new("etcd");
        if let Some((cert, key)) = &self.tls {
            cmd.arg("--cert-file").arg(cert).arg("--key-file").arg(key);
        }
        let child = cmd
            .args(&self.extra)
            .args(["--name", &m.name, "--data-dir"])
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster, "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning etcd");
        self.members[i].child = Some(child);
    }

    /// `etcd://` URL naming every member.
    pub fn url(&self) -> String {
        let eps: Vec<String> = self.members.iter().map(|m| format!("127.0.0.1:{}", m.client_port)).collect();
        format!("etcd://{}", eps.join(","))
    }

    /// `etcd://` URL naming member `i` alone.
    pub fn member_url(&self, i: usize) -> String {
        format!("etcd://127.0.0.1:{}", self.members[i].client_port)
    }

    /// `HOST:PORT` of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }

    /// Runs `etcdctl ARGS` against member `i` and returns its stdout; panics
    /// with its stderr when it fails.
    pub fn etcdctl(&self, i: usize, args: &[&str]) -> String {
        let out = self.etcdctl_command(i, args).output().expect("running etcdctl (Debian package etcd-client)");
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn etcdctl_command(&self, i: usize, args: &[&str]) -> Command {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={scheme}://{}", self.endpoint(i)))
            .args(["--dial-timeout=2s", "--command-timeout=3s"]);
        if self.tls.is_some() {
            cmd.args(["--insecure-transport=false", "--insecure-skip-tls-verify"]);
        }
        cmd.args(args).stdin(Stdio::null());
        cmd
    }

    /// SIGKILL, as a crash: no chance to flush anything.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to member `i`: a stopped etcd still
    /// completes TCP handshakes (the kernel does) but never answers.
    pub fn signal(&self, i: usize, signal: &str) {
        let pid = self.members[i].child.as_ref().expect("member is running").id();
        let ok = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().unwrap().success();
        assert!(ok, "kill -{signal} {pid} failed");
    }

    /// Starts member `i` again on its data directory and ports.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} is running");
        self.spawn(i);
        self.wait_healthy(i);
    }

    /// Waits until member `i` answers as itself, with a leader, or fails
    /// with the tail of its log.
    pub fn wait_healthy(&mut self, i: usize) {
        if let Err(why) = self.try_wait_healthy(i) {
            panic!("{why}");
        }
    }

    /// Waits until member `i` answers: `member list` names this cluster's
    /// members (not another test's etcd on the same port) and `endpoint
    /// health` (a linearizable read) succeeds. `Err` when a port was taken
    /// or the member did not come up in time, with the tail of its log.
    fn try_wait_healthy(&mut self, i: usize) -> Result<(), String> {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        loop {
            let listed = self.etcdctl_command(i, &["member", "list"]).output();
            let ours = matches!(&listed, Ok(o) if o.status.success()
                && String::from_utf8_lossy(&o.stdout).contains(&self.members[i].name));
            if let (true, Ok(o)) = (ours, self.etcdctl_command(i, &["endpoint", "health"]).output()) {
                if o.status.success() {
                    return Ok(());
                }
            }
            let m = &mut self.members[i];
            if let Some(status) = m.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                m.child = None;
                return Err(format!(
                    "etcd member {} exited ({status}) before it was healthy; its log:\n{}",
                    m.name,
                    tail(&m.log)
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("etcd member {} not healthy within {HEALTHY_WITHIN:?}; its log:\n{}", m.name, tail(&m.log)));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// The last lines of a log, for failure messages.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
