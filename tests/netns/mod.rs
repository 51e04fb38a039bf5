//! Real partitions between hosts (DESIGN §7.4): every host of a test — each
//! replica and the arbiter — lives in its own Linux network namespace,
//! wired to a *router* namespace by a veth pair; the test process reaches
//! them through one more veth from the root namespace into the router.
//!
//! ```text
//!   root ns (test process, client load) ── 10.X.250.0/24 ──┐
//!   ns a (node a)   ── 10.X.1.0/24 ──┐                      │
//!   ns b (node b)   ── 10.X.2.0/24 ──┼── router ns (forwards, drops what `cut` says)
//!   ns x (arbiter)  ── 10.X.3.0/24 ──┘
//! ```
//!
//! Links are cut two ways: [`Net::cut`] drops the packets from one host to
//! another in the router (`ip rule … blackhole`: silent loss, one
//! direction, so asymmetric cuts are one call and the rest of the host's
//! traffic flows), and [`Net::link_down`] pulls a host's cable (`ip link set
//! … down` on its router-side veth). Needs root and iproute2 (CI runs the
//! tests as root): if `ip netns add` fails, the test fails and says so.
//! Everything is deleted in `Drop`, also when a test panics; names carry
//! the test process's pid, and namespaces left behind by a dead test
//! process are deleted by the next run.
//!
//! Requires `mod common;` in the including test crate (for `wait_for`, the
//! binary and the secret).

pub mod cluster;
pub mod load;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// `ip` from PATH, or where Debian puts it (PATH may lack /usr/sbin).
fn ip_bin() -> &'static str {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].into_iter().find(|p| std::path::Path::new(p).exists()).unwrap_or("ip")
}

/// Runs `ip <args>`; returns stderr on failure.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new(ip_bin()).args(args).output().map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Like [`ip`], panicking with the command on failure.
fn must(args: &[&str]) {
    if let Err(e) = ip(args) {
        panic!("{e}");
    }
}

/// One host of the topology.
pub struct Host {
    /// Its network namespace.
    pub ns: String,
    /// Its address (the only one besides loopback).
    pub addr: String,
    /// Its veth's peer in the router: `link_down` takes this one down.
    router_if: String,
}

/// A star of namespaces around a router, reachable from the test process.
pub struct Net {
    /// `ust-<pid>-<n>`: the prefix of every namespace of this topology.
    pub tag: String,
    router: String,
    hosts: BTreeMap<String, Host>,
    /// The route into the topology added in the root namespace.
    root_route: String,
    /// Active one-way cuts: (from, to) → `ip rule` preference.
    cuts: BTreeMap<(String, String), u32>,
    next_pref: u32,
}

const ROOT_NET: u8 = 250;

impl Net {
    /// Builds the topology with one namespace per name in `hosts`.
    pub fn new(hosts: &[&str]) -> Net {
        static N: AtomicU32 = AtomicU32::new(0);
        assert!(hosts.len() < ROOT_NET as usize, "one /24 per host");
        delete_stale_namespaces();
        let pid = std::process::id();
        let n = N.fetch_add(1, Ordering::Relaxed);
        let tag = format!("ust-{pid}-{n}");
        let router = format!("{tag}-router");
        if let Err(e) = ip(&["netns", "add", &router]) {
            panic!(
                "the partition tests need root and Linux network namespaces (iproute2): {e}\n\
                 run them as root (CI does); nothing was skipped"
            );
        }
        let x = pick_prefix(pid, n);
        // Short interface names (IFNAMSIZ is 16): u<pid hex><n hex><host index>.
        let ifbase = format!("u{pid:x}{n:x}");
        let mut net = Net {
            tag: tag.clone(),
            router: router.clone(),
            hosts: BTreeMap::new(),
            root_route: format!("10.{x}.0.0/16"),
            cuts: BTreeMap::new(),
            next_pref: 100,
        };
        must(&["-n", &router, "link", "set", "lo", "up"]);
        forwarding_on(&router);
        for (i, name) in hosts.iter().enumerate() {
            let k = i + 1;
            let ns = format!("{tag}-{name}");
            must(&["netns", "add", &ns]);
            let (inner, outer) = (format!("{ifbase}h{k}"), format!("{ifbase}r{k}"));
            must(&["link", "add", &inner, "netns", &ns, "type", "veth", "peer", "name", &outer, "netns", &router]);
            must(&["-n", &router, "addr", "add", &format!("10.{x}.{k}.1/24"), "dev", &outer]);
            must(&["-n", &router, "link", "set", &outer, "up"]);
            let addr = format!("10.{x}.{k}.2");
            must(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", &inner]);
            must(&["-n", &ns, "link", "set", &inner, "up"]);
            must(&["-n", &ns, "link", "set", "lo", "up"]);
            must(&["-n", &ns, "route", "add", "default", "via", &format!("10.{x}.{k}.1")]);
            net.hosts.insert(name.to_string(), Host { ns, addr, router_if: outer });
        }
        let (root_if, peer) = (format!("{ifbase}t"), format!("{ifbase}s"));
        must(&["link", "add", &root_if, "type", "veth", "peer", "name", &peer, "netns", &router]);
        must(&["-n", &router, "addr", "add", &format!("10.{x}.{ROOT_NET}.1/24"), "dev", &peer]);
        must(&["-n", &router, "link", "set", &peer, "up"]);
        must(&["addr", "add", &format!("10.{x}.{ROOT_NET}.2/24"), "dev", &root_if]);
        must(&["link", "set", &root_if, "up"]);
        must(&["route", "add", &net.root_route, "via", &format!("10.{x}.{ROOT_NET}.1")]);
        net
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts.get(name).unwrap_or_else(|| panic!("no host {name:?} in {}", self.tag))
    }

    /// `ip netns exec <ns of host> <program>`: the program runs as this
    /// host (`ip netns exec` execs it, so the child's pid is the program's).
    pub fn command(&self, host: &str, program: &str) -> Command {
        let mut c = Command::new(ip_bin());
        c.args(["netns", "exec", &self.host(host).ns, program]);
        c
    }

    /// Drops every packet from `from` to `to` in the router (one direction).
    pub fn cut(&mut self, from: &str, to: &str) {
        let key = (from.to_string(), to.to_string());
        if self.cuts.contains_key(&key) {
            return;
        }
        let pref = self.next_pref;
        self.next_pref += 1;
        let (src, dst) = (self.host(from).addr.clone(), self.host(to).addr.clone());
        must(&["-n", &self.router, "rule", "add", "pref", &pref.to_string(), "from", &src, "to", &dst, "blackhole"]);
        self.cuts.insert(key, pref);
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut_between(&mut self, a: &str, b: &str) {
        self.cut(a, b);
        self.cut(b, a);
    }

    /// Lets packets from `from` to `to` through again.
    pub fn heal(&mut self, from: &str, to: &str) {
        if let Some(pref) = self.cuts.remove(&(from.to_string(), to.to_string())) {
            must(&["-n", &self.router, "rule", "del", "pref", &pref.to_string()]);
        }
    }

    pub fn heal_between(&mut self, a: &str, b: &str) {
        self.heal(a, b);
        self.heal(b, a);
    }

    /// Removes every cut and brings every link up.
    pub fn heal_all(&mut self) {
        for (from, to) in self.cuts.keys().cloned().collect::<Vec<_>>() {
            self.heal(&from, &to);
        }
        for name in self.hosts.keys().cloned().collect::<Vec<_>>() {
            self.link_up(&name);
        }
    }

    /// Pulls `host`'s cable: its router-side veth goes down (the host's own
    /// side loses carrier; its addresses and routes stay).
    pub fn link_down(&self, host: &str) {
        must(&["-n", &self.router, "link", "set", &self.host(host).router_if, "down"]);
    }

    pub fn link_up(&self, host: &str) {
        must(&["-n", &self.router, "link", "set", &self.host(host).router_if, "up"]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veths and so their peers,
        // including the root namespace's (and its route).
        let _ = ip(&["route", "del", &self.root_route]);
        for h in self.hosts.values() {
            let _ = ip(&["netns", "del", &h.ns]);
        }
        let _ = ip(&["netns", "del", &self.router]);
    }
}

fn forwarding_on(ns: &str) {
    let out = Command::new(ip_bin())
        .args(["netns", "exec", ns, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])
        .output()
        .expect("running ip netns exec");
    assert!(out.status.success(), "enabling forwarding in {ns}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Picks X for 10.X.0.0/16, derived from the pid and topology number, that
/// no route of the root namespace touches yet.
fn pick_prefix(pid: u32, n: u32) -> u8 {
    let out = Command::new(ip_bin()).args(["-4", "route", "show", "table", "all"]).output().expect("ip route");
    let routes = String::from_utf8_lossy(&out.stdout).into_owned();
    (0..64u32)
        .map(|i| 64 + ((pid.wrapping_mul(31).wrapping_add(n * 7 + i)) % 128) as u8)
        .find(|x| !routes.contains(&format!("10.{x}.")))
        .expect("a free 10.X.0.0/16 for the test network")
}

/// Deletes `ust-<pid>-…` namespaces whose test process is gone (a test
/// killed before its `Drop` ran).
fn delete_stale_namespaces() {
    let Ok(out) = Command::new(ip_bin()).args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(pid) = name.strip_prefix("ust-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
