//! Requests to the etcd members: one client per endpoint, failover between
//! them, bounded time, and etcd's errors turned into ours.
//!
//! Each endpoint gets its own client (a client balanced over all endpoints
//! keeps sending requests to a dead member, so a 3-member etcd that has lost
//! one member would fail a third of our calls); a request goes to the member
//! that answered last and, when that one is unreachable or has no leader,
//! to the next, all within [`CALL_BUDGET`].
//!
//! Sending a request again to another member is safe for every request we
//! make: reads are idempotent, and writes are transactions that compare the
//! record's revision, so a write that was in fact applied fails its compare
//! the second time and the caller sees its own record (see `mutate`).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tonic::{Code, Status};

use super::rpc::{chain, Client, Settings};
use super::url::EtcdTarget;
use super::{CONNECT_TIMEOUT, KEY_PREFIX, REQUEST_TIMEOUT};
use crate::ArbiterError;

/// Bound on one request across all endpoints: a dead etcd is reported as
/// [`ArbiterError::Unreachable`] within this time, and the node retries.
pub const CALL_BUDGET: Duration = Duration::from_secs(5);

/// Appended to errors of a write whose fate is unknown.
const WRITE_MAYBE_APPLIED: &str =
    "; the write may have been applied: read the record again (a repeated claim by its holder is answered Granted)";

/// What a request does, for messages.
#[derive(Debug, Clone, Copy)]
pub(super) enum Op {
    Read,
    Write,
}

impl Op {
    fn what(self) -> &'static str {
        match self {
            Op::Read => "reading the record",
            Op::Write => "writing the record",
        }
    }
}

/// The clients of one `etcd://` URL; see the module docs.
pub(super) struct Members {
    /// The URL without password, for messages.
    url: String,
    endpoints: Vec<String>,
    /// One per endpoint, connected by its first call; clones share the
    /// connection.
    clients: Vec<Client>,
    /// The endpoint that answered last, tried first.
    preferred: AtomicUsize,
}

impl Members {
    /// Prepares clients for `target`; contacts nobody. The error is the
    /// reason for [`ArbiterError::BadUrl`] (an unreadable TLS file).
    pub(super) fn new(target: &EtcdTarget) -> Result<Self, String> {
        let settings = Settings {
            connect_timeout: CONNECT_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            keep_alive: Duration::from_secs(2),
            credentials: target.credentials.as_ref().map(|c| (c.user.clone(), c.password.clone())),
            #[cfg(feature = "etcd-tls")]
            tls: target.tls.as_ref().map(tls_config).transpose()?,
        };
        let clients = target.endpoints.iter().map(|e| Client::new(e, settings.clone())).collect::<Result<_, _>>()?;
        Ok(Members { url: target.shown.clone(), endpoints: target.endpoints.clone(), clients, preferred: AtomicUsize::new(0) })
    }

    /// Runs `request` against the preferred member, then the others, until
    /// one answers or [`CALL_BUDGET`] is spent. `cluster` is for messages.
    pub(super) async fn request<T, F, Fut>(&self, op: Op, cluster: &str, request: F) -> Result<T, ArbiterError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed);
        let deadline = Instant::now() + CALL_BUDGET;
        let mut failures = Vec::new();
        for i in (0..n).map(|k| (first + k) % n) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let limit = left.min(REQUEST_TIMEOUT);
            let reason = match tokio::time::timeout(limit, request(self.clients[i].clone())).await {
                Ok(Ok(v)) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Ok(Err(e)) => self.classify(e, op, cluster)?,
                Err(_) => format!("no answer within {limit:.1?}"),
            };
            log::debug!("{}: {} at {}: {reason}", self.url, op.what(), self.endpoints[i]);
            failures.push(format!("{}: {reason}", self.endpoints[i]));
        }
        let maybe = if matches!(op, Op::Write) { WRITE_MAYBE_APPLIED } else { "" };
        let reason = format!("{} failed at every member ({}){maybe}", op.what(), failures.join("; "));
        Err(ArbiterError::Unreachable { url: self.url.clone(), reason })
    }

    /// Sorts an etcd error: `Ok(reason)` when another member may do better
    /// (this one is down, unreachable or without a leader), `Err` when the
    /// answer would be the same everywhere.
    fn classify(&self, status: Status, op: Op, cluster: &str) -> Result<String, ArbiterError> {
        let url = self.url.clone();
        let (code, msg) = (status.code(), status.message());
        match code {
            Code::Unauthenticated => Err(ArbiterError::Auth { url }),
            // Wrong password; or no credentials while etcd has auth enabled.
            Code::InvalidArgument if msg.contains("authentication failed") || msg.contains("user name is empty") => {
                Err(ArbiterError::Auth { url })
            }
            Code::PermissionDenied => Err(ArbiterError::Rejected {
                cluster: cluster.to_string(),
                reason: format!(
                    "etcd {url} denied {}: {msg} (grant the etcd user readwrite on the prefix {KEY_PREFIX}, e.g. `etcdctl role grant-permission ROLE --prefix=true readwrite {KEY_PREFIX}`)",
                    op.what()
                ),
            }),
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange | Code::Unimplemented => {
                Err(ArbiterError::Protocol { peer: url, detail: format!("{}: {msg} ({code:?})", op.what()) })
            }
            // Unavailable (down, unreachable, no leader, leader changed),
            // deadline, etc.; a transport error's causes say which.
            _ => Ok(format!("{} ({code:?})", chain(&status))),
        }
    }
}

#[cfg(feature = "etcd-tls")]
fn tls_config(t: &super::url::TlsFiles) -> Result<tonic::transport::ClientTlsConfig, String> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let mut c = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&t.ca)?));
    if let Some((cert, key)) = &t.identity {
        c = c.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(c)
}
