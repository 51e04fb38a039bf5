//! Exactly-once requests across failovers: a [`Session`] numbers each
//! request and, after a broken connection, a `-READONLY` redirect or a
//! timeout, sends the *same* request with the *same* number to whichever
//! node is primary now, until it gets an answer. The server's replicated
//! session table (`understudy_kv::exactly_once`) answers a request it has
//! already applied from its cache, so a retry is never applied twice
//! (DESIGN §3, "duplicate outputs after failover").
//!
//! ```no_run
//! use std::time::Duration;
//! use understudy_client::{Locator, Session, SessionOptions};
//!
//! let nodes = Locator::Nodes(vec!["10.0.0.1:6379".into(), "10.0.0.2:6379".into()]);
//! let mut s = Session::open(nodes, SessionOptions::default())?;
//! let n = s.call(&["INCR", "visits"])?; // applied exactly once, whatever fails meanwhile
//! # Ok::<(), understudy_client::SessionError>(())
//! ```
//!
//! On the wire: `US.SESSION <id>` once, then `US.CALL <id> <seq> <cmd> <arg>…`
//! per request. Reads may bypass the session (a plain `Conn`, or a `Cluster`).

use std::time::{Duration, Instant};

use understudy_arbiter::Arbiter;

use crate::resp::{encode, Conn, Reply};

/// Where the primary is.
pub enum Locator {
    /// Ask the arbiter of `cluster`, as the nodes do.
    Arbiter { arbiter: Box<dyn Arbiter>, cluster: String },
    /// Try these client addresses in turn; a backup's `-READONLY … primary
    /// at HOST:PORT` names the primary.
    Nodes(Vec<String>),
}

/// Timing of a [`Session`].
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Connect, read and write timeout of one attempt. A reply held longer
    /// (the output gate holds replies while a failover is decided) is asked
    /// for again with the same seq, which is safe.
    pub attempt_timeout: Duration,
    /// How long one call keeps trying before it returns
    /// [`SessionError::Timeout`].
    pub give_up_after: Duration,
    /// First pause between attempts; doubled up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            attempt_timeout: Duration::from_secs(2),
            give_up_after: Duration::from_secs(60),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_millis(250),
        }
    }
}

/// Why a call returned no answer. A command's own error (`-WRONGTYPE …`)
/// is an answer: it comes back as `Ok(Reply::Error(..))`.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No node answered in time; the request may or may not have been applied.
    #[error("no answer after {attempts} attempts in {waited:?}; last problem: {last}")]
    Timeout { attempts: u64, waited: Duration, last: String },
    /// The server forgot the session (expired, evicted, closed) while a
    /// request that had already been sent was unanswered: that request may
    /// or may not have been applied.
    #[error("request {seq}: the session is gone at the server and the request may or may not have been applied: {reply}")]
    Lost { seq: u64, reply: String },
    /// The server no longer keeps this request's reply (it was applied, or
    /// never was; see the message). Only a misuse of the window gets here.
    #[error("request {seq}: {reply}")]
    Stale { seq: u64, reply: String },
    /// The server answered something a session command never answers.
    #[error("unexpected answer to {what}: {reply:?}")]
    Protocol { what: String, reply: Reply },
    #[error("{0}")]
    Usage(String),
}

/// Counters, for tests and monitoring.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionStats {
    /// Requests numbered (one per command passed to `call`/`pipeline`).
    pub requests: u64,
    /// Attempts made, first tries included.
    pub attempts: u64,
    /// Requests sent again after a first send that got no answer.
    pub resent: u64,
    /// Connections opened.
    pub connects: u64,
    /// The session was opened again after the server had forgotten it
    /// while nothing was in flight.
    pub reopened: u64,
}

/// A client session: one request at a time (`call`) or a pipeline of up to
/// the server's window (`pipeline`). Not shared between threads: open one
/// per thread.
pub struct Session {
    locator: Locator,
    opts: SessionOptions,
    /// 128 random bits, in hex.
    id: String,
    /// The seq the next request gets.
    next_seq: u64,
    /// Replies the server keeps per session: the longest pipeline.
    window: usize,
    conn: Option<(String, Conn)>,
    /// The primary named by the last redirect.
    hint: Option<String>,
    /// Next entry of `Locator::Nodes` to try.
    next_node: usize,
    stats: SessionStats,
}

/// One request of an exchange.
struct Pending {
    cmd: Vec<Vec<u8>>,
    sent: bool,
    answer: Option<Answer>,
}

/// An answer, and whether it answered the first send of its request (then
/// an answer that says nothing ran means the request never ran anywhere).
struct Answer {
    reply: Reply,
    first_send: bool,
}

impl Session {
    /// Opens a new session with a random id at the primary.
    pub fn open(locator: Locator, opts: SessionOptions) -> Result<Session, SessionError> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).expect("the OS random source failed");
        let id = raw.iter().map(|b| format!("{b:02x}")).collect();
        let mut s = Session {
            locator,
            opts,
            id,
            next_seq: 1,
            window: 1,
            conn: None,
            hint: None,
            next_node: 0,
            stats: SessionStats::default(),
        };
        s.register()?;
        Ok(s)
    }

    /// The session id the server knows this session by.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The seq the next request will carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The longest pipeline the server accepts (its reply window).
    pub fn window(&self) -> usize {
        self.window
    }

    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Address of the node the current connection goes to.
    pub fn connected_to(&self) -> Option<&str> {
        self.conn.as_ref().map(|(a, _)| a.as_str())
    }

    /// Runs one command exactly once and returns its answer.
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply, SessionError> {
        let cmd: Vec<Vec<u8>> = args.iter().map(|a| a.as_ref().to_vec()).collect();
        Ok(self.pipeline(&[cmd])?.pop().expect("one answer per command"))
    }

    /// Runs up to `window()` commands, sent back to back, each exactly once;
    /// returns their answers in order.
    pub fn pipeline<A: AsRef<[u8]>>(&mut self, cmds: &[Vec<A>]) -> Result<Vec<Reply>, SessionError> {
        if cmds.len() > self.window {
            return Err(SessionError::Usage(format!(
                "a pipeline of {} requests exceeds the server's session window of {}",
                cmds.len(),
                self.window
            )));
        }
        let first_seq = self.next_seq;
        self.next_seq += cmds.len() as u64;
        self.stats.requests += cmds.len() as u64;
        let mut pending: Vec<Pending> = cmds
            .iter()
            .enumerate()
            .map(|(i, args)| {
                let mut cmd =
                    vec![b"US.CALL".to_vec(), self.id.as_bytes().to_vec(), (first_seq + i as u64).to_string().into_bytes()];
                cmd.extend(args.iter().map(|a| a.as_ref().to_vec()));
                Pending { cmd, sent: false, answer: None }
            })
            .collect();
        self.exchange(&mut pending)?;
        if self.refused_unsent(&pending) {
            // The server had forgotten the session and these requests reached
            // it once, were refused, and exist nowhere else: open the session
            // again and send them again.
            self.register()?;
            self.stats.reopened += 1;
            for p in pending.iter_mut().filter(|p| is_error(p.answer.as_ref(), "NOSESSION")) {
                *p = Pending { cmd: std::mem::take(&mut p.cmd), sent: false, answer: None };
            }
            self.exchange(&mut pending)?;
        }
        pending.into_iter().enumerate().map(|(i, p)| self.interpret(first_seq + i as u64, p)).collect()
    }

    /// Every `-NOSESSION` answer answered a first send.
    fn refused_unsent(&self, pending: &[Pending]) -> bool {
        let refused: Vec<&Answer> = pending.iter().filter_map(|p| p.answer.as_ref()).filter(|a| is_nosession(&a.reply)).collect();
        !refused.is_empty() && refused.iter().all(|a| a.first_send)
    }

    fn interpret(&self, seq: u64, p: Pending) -> Result<Reply, SessionError> {
        let a = p.answer.expect("exchange answers every request");
        match a.reply {
            Reply::Error(e) if e.starts_with("NOSESSION") => Err(SessionError::Lost { seq, reply: e }),
            Reply::Error(e) if e.starts_with("SESSIONOLD") => Err(SessionError::Stale { seq, reply: e }),
            reply => Ok(reply),
        }
    }

    /// `US.SESSION <id>`: idempotent, so it is simply retried.
    fn register(&mut self) -> Result<(), SessionError> {
        let cmd = vec![b"US.SESSION".to_vec(), self.id.as_bytes().to_vec()];
        let mut pending = vec![Pending { cmd, sent: false, answer: None }];
        self.exchange(&mut pending)?;
        let reply = pending.pop().and_then(|p| p.answer).expect("answered").reply;
        match &reply {
            Reply::Array(Some(v)) => match v[..] {
                [Reply::Int(_highest), Reply::Int(window)] if window >= 1 => {
                    self.window = window as usize;
                    Ok(())
                }
                _ => Err(SessionError::Protocol { what: "US.SESSION".into(), reply }),
            },
            _ => Err(SessionError::Protocol { what: "US.SESSION".into(), reply }),
        }
    }

    /// Sends the unanswered requests of `pending` until each has an answer
    /// that is not a redirect, or `give_up_after` passes.
    fn exchange(&mut self, pending: &mut [Pending]) -> Result<(), SessionError> {
        let start = Instant::now();
        let mut backoff = self.opts.backoff_min;
        let mut attempts = 0;
        loop {
            let Some(from) = pending.iter().position(|p| p.answer.is_none()) else { return Ok(()) };
            attempts += 1;
            self.stats.attempts += 1;
            let problem = match self.attempt(&mut pending[from..]) {
                Ok(()) => continue,
                Err(problem) => problem,
            };
            self.conn = None;
            if start.elapsed() >= self.opts.give_up_after {
                return Err(SessionError::Timeout { attempts, waited: start.elapsed(), last: problem });
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(self.opts.backoff_max);
        }
    }

    /// One attempt: sends every request of `pending` (all unanswered) on one
    /// connection and reads answers until one is missing.
    fn attempt(&mut self, pending: &mut [Pending]) -> Result<(), String> {
        debug_assert!(pending.iter().all(|p| p.answer.is_none()), "only unanswered requests are sent");
        self.connect()?;
        let (addr, conn) = self.conn.as_mut().expect("connected");
        let mut buf = Vec::new();
        pending.iter().for_each(|p| encode(&mut buf, &p.cmd));
        let first: Vec<bool> = pending.iter().map(|p| !p.sent).collect();
        self.stats.resent += first.iter().filter(|f| !**f).count() as u64;
        pending.iter_mut().for_each(|p| p.sent = true);
        conn.send_raw(&buf).map_err(|e| format!("sending to {addr}: {e}"))?;
        for (p, first_send) in pending.iter_mut().zip(first) {
            let reply = conn.read_reply().map_err(|e| format!("reading from {addr}: {e}"))?;
            if let Reply::Error(e) = &reply {
                if e.starts_with("READONLY") {
                    let problem = format!("{addr} is not the primary: {e}");
                    self.hint = redirect_target(e);
                    return Err(problem);
                }
            }
            p.answer = Some(Answer { reply, first_send });
        }
        Ok(())
    }

    /// Opens a connection to the primary, as the last redirect or the
    /// locator names it, unless one is open.
    fn connect(&mut self) -> Result<(), String> {
        if self.conn.is_none() {
            let addr = match self.hint.take() {
                Some(a) => a,
                None => self.locate()?,
            };
            let c = Conn::connect(&addr, self.opts.attempt_timeout).map_err(|e| format!("connecting to {addr}: {e}"))?;
            self.stats.connects += 1;
            self.conn = Some((addr, c));
        }
        Ok(())
    }

    fn locate(&mut self) -> Result<String, String> {
        match &self.locator {
            Locator::Arbiter { arbiter, cluster } => match arbiter.read(cluster) {
                Ok(Some(r)) => Ok(r.primary.client),
                Ok(None) => Err(format!("no primary registered for cluster {cluster:?}")),
                Err(e) => Err(format!("asking the arbiter: {e}")),
            },
            Locator::Nodes(nodes) if nodes.is_empty() => Err("Locator::Nodes lists no node".into()),
            Locator::Nodes(nodes) => {
                let a = nodes[self.next_node % nodes.len()].clone();
                self.next_node += 1;
                Ok(a)
            }
        }
    }
}

fn is_nosession(r: &Reply) -> bool {
    matches!(r, Reply::Error(e) if e.starts_with("NOSESSION"))
}

fn is_error(a: Option<&Answer>, prefix: &str) -> bool {
    a.is_some_and(|a| matches!(&a.reply, Reply::Error(e) if e.starts_with(prefix)))
}

/// The `HOST:PORT` after "primary at " in a `-READONLY` error, if any.
fn redirect_target(err: &str) -> Option<String> {
    let rest = &err[err.find("primary at ")? + "primary at ".len()..];
    let addr = rest.split_whitespace().next()?;
    addr.rsplit_once(':').filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()).map(|_| addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_name_the_primary() {
        let e = "READONLY You can't write against a read only replica. primary at 10.1.2.3:6379";
        assert_eq!(redirect_target(e).as_deref(), Some("10.1.2.3:6379"));
        assert_eq!(redirect_target("READONLY … primary at unknown (no primary yet)"), None);
        assert_eq!(redirect_target("READONLY nothing"), None);
    }
}
