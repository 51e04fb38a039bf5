//! Following the primary of a cluster: ask the arbiter where it is, and ask
//! again when the connection breaks or a node answers READONLY.

use std::io;
use std::time::{Duration, Instant};

use understudy_arbiter::Arbiter;

use crate::resp::{Conn, Reply};

/// A connection to whichever node is primary.
pub struct Cluster {
    arbiter: Box<dyn Arbiter>,
    cluster: String,
    conn: Option<(String, Conn)>,
    timeout: Duration,
}

impl Cluster {
    pub fn new(arbiter: Box<dyn Arbiter>, cluster: impl Into<String>, timeout: Duration) -> Self {
        Cluster { arbiter, cluster: cluster.into(), conn: None, timeout }
    }

    /// The primary's client address and epoch, as the arbiter has them.
    pub fn primary(&self) -> Option<(String, u64)> {
        self.arbiter.read(&self.cluster).ok().flatten().map(|r| (r.primary.client, r.epoch))
    }

    /// Address of the node the current connection goes to.
    pub fn connected_to(&self) -> Option<&str> {
        self.conn.as_ref().map(|(a, _)| a.as_str())
    }

    fn connect(&mut self) -> io::Result<&mut Conn> {
        if self.conn.is_none() {
            let (addr, _) = self.primary().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no primary registered"))?;
            let c = Conn::connect(&addr, self.timeout)?;
            self.conn = Some((addr, c));
        }
        Ok(&mut self.conn.as_mut().expect("just set").1)
    }

    /// One attempt: sends the command to the current primary. A broken
    /// connection or a READONLY answer drops the connection (the next call
    /// looks the primary up again) and is returned as an error.
    pub fn try_call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<Reply> {
        let r = self.connect()?.call(args);
        match r {
            Ok(Reply::Error(e)) if e.starts_with("READONLY") => {
                self.conn = None;
                Err(io::Error::other(e))
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
            ok => ok,
        }
    }

    /// Retries `try_call` until it succeeds or `deadline` passes. Note that
    /// a write retried after a broken connection may be applied twice
    /// (at-least-once, DESIGN §3); use idempotent writes with this.
    pub fn call_until<A: AsRef<[u8]>>(&mut self, args: &[A], deadline: Instant) -> io::Result<Reply> {
        loop {
            match self.try_call(args) {
                Ok(r) => return Ok(r),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}
