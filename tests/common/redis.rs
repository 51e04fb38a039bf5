//! Real Redis tools next to the pair: `redis-cli`, and a `redis-server`
//! for side-by-side comparisons.

use std::process::Command;
use std::time::Duration;

/// Runs redis-cli; a reply that never comes fails the call after 60 s
/// (coreutils' `timeout`) instead of hanging the test.
pub fn redis_cli(addr: &str, args: &[&str]) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new("timeout")
        .args(["60", "redis-cli", "-h", host, "-p", port])
        .args(args)
        .output()
        .expect("redis-cli is installed (Debian package redis-tools)");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A redis-server on a free port (its address in `.1`), stopped when
/// dropped; `replica_of` makes it a replica.
pub struct RedisServer(pub std::process::Child, pub String);

impl RedisServer {
    pub fn start(dir: &std::path::Path, name: &str, replica_of: Option<&str>) -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
        let mut c = Command::new("redis-server");
        c.args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir"]).arg(dir);
        c.args(["--dbfilename", &format!("{name}.rdb")]);
        if let Some(p) = replica_of {
            let (h, pp) = p.rsplit_once(':').unwrap();
            c.args(["--replicaof", h, pp]);
        }
        let child = c.stdout(std::process::Stdio::null()).spawn().expect("redis-server (Debian package redis-server)");
        let addr = format!("127.0.0.1:{port}");
        super::wait_for("redis-server to answer", Duration::from_secs(30), || {
            (redis_cli(&addr, &["PING"]) == "PONG").then_some(())
        });
        RedisServer(child, addr)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
