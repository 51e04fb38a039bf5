//! An arbiter and key-value nodes of the real binary, each in its own
//! namespace of a [`Net`], driven from the test process as
//! `tests/common`'s `Harness` drives them on loopback.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use understudy_arbiter::{Arbiter, BackupState, ClusterRecord};
use understudy_client::Cluster;

use super::Net;
use crate::common::{serves_as_primary, wait_for, BIN, CLUSTER, SECRET};

/// Port of every node's client service and replication channel, and of the
/// arbiter (each host has its own port space).
pub const CLIENT_PORT: u16 = 6379;
pub const REPL_PORT: u16 = 7701;
pub const ARBITER_PORT: u16 = 7700;
/// The arbiter's host.
pub const ARBITER: &str = "x";

pub struct NsNode {
    pub child: Option<Child>,
    pub log: PathBuf,
}

pub struct NsCluster {
    pub dir: tempfile::TempDir,
    arbiter: Option<Child>,
    pub nodes: HashMap<String, NsNode>,
    pub node_args: Vec<String>,
    /// Dropped last: the processes above die before their namespaces.
    pub net: Net,
}

impl NsCluster {
    /// A topology with `nodes` and the arbiter host, and the arbiter running.
    pub fn new(nodes: &[&str]) -> NsCluster {
        let mut hosts = nodes.to_vec();
        hosts.push(ARBITER);
        let net = Net::new(&hosts);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), SECRET).unwrap();
        let log = std::fs::File::create(dir.path().join("arbiter.log")).unwrap();
        let listen = format!("{}:{ARBITER_PORT}", net.host(ARBITER).addr);
        let child = net
            .command(ARBITER, BIN)
            .args(["arbiter", "--listen", &listen, "--secret-file"])
            .arg(dir.path().join("secret"))
            .arg("--dir")
            .arg(dir.path().join("arbiter"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting the arbiter");
        let c = NsCluster { dir, arbiter: Some(child), nodes: HashMap::new(), node_args: Vec::new(), net };
        wait_for("the arbiter to listen", Duration::from_secs(20), || std::net::TcpStream::connect(&listen).ok());
        c
    }

    pub fn arbiter_url(&self) -> String {
        format!("understudy://{}:{ARBITER_PORT}", self.net.host(ARBITER).addr)
    }

    pub fn arbiter(&self) -> Box<dyn Arbiter> {
        understudy_arbiter::connect(&self.arbiter_url(), SECRET.as_bytes()).unwrap()
    }

    pub fn record(&self) -> Option<ClusterRecord> {
        self.arbiter().read(CLUSTER).ok().flatten()
    }

    pub fn client_addr(&self, name: &str) -> String {
        format!("{}:{CLIENT_PORT}", self.net.host(name).addr)
    }

    /// Starts (or restarts) node `name` in its namespace.
    pub fn start_node(&mut self, name: &str) {
        let addr = self.net.host(name).addr.clone();
        let (client, repl) = (format!("{addr}:{CLIENT_PORT}"), format!("{addr}:{REPL_PORT}"));
        let log = self.dir.path().join(format!("{name}.log"));
        let child = self
            .net
            .command(name, BIN)
            .args(["kv", "--cluster", CLUSTER, "--node", name, "--arbiter", &self.arbiter_url()])
            .args(["--client-listen", &client, "--repl-listen", &repl, "--secret-file"])
            .arg(self.dir.path().join("secret"))
            .arg("--dir")
            .arg(self.dir.path().join(name))
            .args(&self.node_args)
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap())
            .spawn()
            .expect("starting a node");
        self.nodes.insert(name.to_string(), NsNode { child: Some(child), log });
    }

    /// Whether node `name`'s process is still running.
    pub fn running(&mut self, name: &str) -> bool {
        let n = self.nodes.get_mut(name).expect("known node");
        match n.child.as_mut().map(|c| c.try_wait().expect("try_wait")) {
            Some(None) => true,
            Some(Some(_)) | None => false,
        }
    }

    /// Waits for node `name` to exit; returns its exit code.
    pub fn wait_exit(&mut self, name: &str, limit: Duration) -> Option<i32> {
        let n = self.nodes.get_mut(name).expect("known node");
        let c = n.child.as_mut().expect("node running");
        let status = wait_for(&format!("node {name} to exit"), limit, || c.try_wait().unwrap());
        n.child = None;
        status.code()
    }

    /// Waits until the arbiter names a primary of an epoch after `epoch`
    /// that serves (INFO says role:master); returns its record.
    pub fn wait_new_primary(&self, epoch: u64, limit: Duration) -> ClusterRecord {
        wait_for(&format!("a primary of an epoch after {epoch}"), limit, || {
            let r = self.record().filter(|r| r.epoch > epoch)?;
            serves_as_primary(&r.primary.client, None).then_some(r)
        })
    }

    pub fn wait_primary(&self, name: &str) -> ClusterRecord {
        wait_for(&format!("{name} to be primary"), Duration::from_secs(30), || {
            let r = self.record().filter(|r| r.primary.node == name)?;
            serves_as_primary(&self.client_addr(name), None).then_some(r)
        })
    }

    pub fn wait_in_sync(&self, name: &str) -> ClusterRecord {
        wait_for(&format!("{name} to be an in-sync backup"), Duration::from_secs(60), || {
            self.record().filter(|r| r.backup.as_ref().is_some_and(|b| b.node == name && b.state == BackupState::InSync))
        })
    }

    /// A client that follows the primary, from the test process.
    pub fn cluster_client(&self, timeout: Duration) -> Cluster {
        Cluster::new(self.arbiter(), CLUSTER, timeout)
    }

    /// `understudy status --json`, run from the test process.
    pub fn status_json(&self) -> serde_json::Value {
        let out = Command::new(BIN)
            .args(["status", "--arbiter", &self.arbiter_url(), "--cluster", CLUSTER, "--json", "--secret-file"])
            .arg(self.dir.path().join("secret"))
            .output()
            .unwrap();
        // 0 protected, 1 unprotected or joining, 2 primary down: all are
        // readings; 3 is a failure to read.
        assert!(matches!(out.status.code(), Some(0..=2)), "status: {:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn log_of(&self, name: &str) -> String {
        std::fs::read_to_string(&self.nodes[name].log).unwrap_or_default()
    }

    pub fn dump_logs(&self) {
        let mut names: Vec<&String> = self.nodes.keys().collect();
        names.sort();
        for n in names {
            eprintln!("===== log of {n} =====\n{}", self.log_of(n));
        }
        let arb = std::fs::read_to_string(self.dir.path().join("arbiter.log")).unwrap_or_default();
        eprintln!("===== log of the arbiter =====\n{arb}");
    }
}

impl Drop for NsCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        let children = self.nodes.values_mut().filter_map(|n| n.child.take()).chain(self.arbiter.take());
        for mut c in children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
