//! Real etcd processes for the etcd backend's tests (DESIGN §7, rung 6:
//! "Debian's `etcd-server` for the etcd arbiter"): one or three members on
//! free loopback ports, each with its own data directory, killed with SIGKILL
//! when the guard drops.
//!
//! A missing `etcd` binary fails the test with the package to install: a
//! skipped test would hide that the etcd backend is unchecked.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
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

/// `n` distinct free loopback ports (all bound at once, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

impl Etcd {
    /// Starts an `n`-member cluster and waits until every member is healthy.
    pub fn start(n: usize) -> Etcd {
        Etcd::start_with(n, None)
    }

    /// Like [`Etcd::start`], serving clients over TLS with `cert` and `key`.
    #[cfg(feature = "etcd-tls")]
    pub fn start_tls(n: usize, cert: &Path, key: &Path) -> Etcd {
        Etcd::start_with(n, Some((cert.to_path_buf(), key.to_path_buf())))
    }

    fn start_with(n: usize, tls: Option<(PathBuf, PathBuf)>) -> Etcd {
        require_etcd();
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(2 * n);
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data_dir: dir.path().join(format!("m{i}.etcd")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster =
            members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port)).collect::<Vec<_>>().join(",");
        let token = format!("understudy-test-{}", dir.path().file_name().unwrap().to_string_lossy());
        let mut etcd = Etcd { members, tls, initial_cluster, token, _dir: dir };
        for i in 0..n {
            etcd.spawn(i);
        }
        for i in 0..n {
            etcd.wait_healthy(i);
        }
        etcd
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

    /// `HOST:PORT` of member `i`, for etcd-client in the tests.
    pub fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
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

    /// Waits until member `i` answers `/health` with a leader (with TLS:
    /// accepts connections; the test then retries its first call), or fails
    /// with the tail of its log.
    pub fn wait_healthy(&mut self, i: usize) {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        let port = self.members[i].client_port;
        loop {
            let up = match self.tls {
                None => health(port),
                Some(_) => TcpStream::connect(("127.0.0.1", port)).is_ok(),
            };
            if up {
                return;
            }
            let m = &mut self.members[i];
            if let Some(status) = m.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("etcd member {} exited ({status}) before it was healthy; its log:\n{}", m.name, tail(&m.log));
            }
            if Instant::now() > deadline {
                panic!("etcd member {} not healthy within {HEALTHY_WITHIN:?}; its log:\n{}", m.name, tail(&m.log));
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

/// `GET /health` on a client port: true once the member has a leader.
fn health(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

/// The last lines of a log, for failure messages.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
