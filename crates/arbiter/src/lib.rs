//! # understudy-arbiter
//!
//! The external test-and-set of understudy (DESIGN §3, "test-and-set on
//! shared storage"). A replica serves only while it holds the current epoch
//! of its cluster, and it wins an epoch here, atomically:
//!
//! - **Promise 2, never two primaries**: each epoch is granted once, epochs
//!   only grow, and a deposed primary learns so on its next update.
//! - **Promise 4, an empty or lagging node never goes live**: epoch N+1 goes
//!   only to a *member* of epoch N, i.e. its primary or the backup the
//!   primary declared in sync ([`Arbiter::add_member`]).
//!
//! Per cluster the arbiter keeps one [`ClusterRecord`]. Backends implement the
//! [`Arbiter`] trait and are chosen by URL with [`connect`]:
//!
//! | URL | backend | test-and-set |
//! | --- | --- | --- |
//! | `understudy://HOST:PORT` | [`ArbiterClient`] of [`server`] (`understudy arbiter`) | one mutex, durable before the reply |
//! | `file:///shared/dir` | [`FileArbiter`] | `link(2)` of `epoch-<N>`, which fails if it exists |
//! | `etcd://HOST:PORT[,…]` | [`EtcdArbiter`] (cargo feature `etcd`, on by default) | one etcd transaction comparing the record's revision |
//!
//! # Layout
//!
//! - [`record`]: the record, the answers, the [`Arbiter`] trait.
//! - [`rules`]: the test-and-set rules as pure functions (and name checks).
//! - [`file`](mod@file): the shared-filesystem backend.
//! - [`etcd`]: the etcd backend (URL syntax, key layout, transactions).
//! - [`server`], [`store`]: the built-in server and its durable state.
//! - [`metrics`]: the built-in server's Prometheus metrics.
//! - [`client`]: the built-in server's client.
//! - [`proto`]: the messages between them, over `understudy_wire` frames.
//! - `durable`: fsynced atomic file writes used by both disk backends.

#![forbid(unsafe_code)]

pub mod client;
mod durable;
mod error;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod file;
pub mod metrics;
pub mod proto;
pub mod record;
pub mod rules;
pub mod server;
pub mod store;

use std::path::Path;

pub use client::ArbiterClient;
pub use error::ArbiterError;
#[cfg(feature = "etcd")]
pub use etcd::EtcdArbiter;
pub use file::FileArbiter;
pub use record::{Arbiter, BackupInfo, BackupState, Claim, ClusterRecord, NodeAddrs, Update, ANYONE};
pub use rules::validate_name;
pub use server::{serve, RunningServer, Server};

/// What [`connect`] accepts, for error messages.
const SCHEMES: &str =
    "understudy://HOST:PORT (the built-in `understudy arbiter`), file:///shared/dir, or etcd://HOST:PORT[,HOST:PORT…]";

/// Opens the arbiter named by `url` (the `--arbiter` flag). `secret` is the
/// content of `--secret-file`; the file backend does not use it.
///
/// Nothing is contacted yet for `understudy://` and `etcd://` (the arbiter
/// may be down while the pair is healthy); `file://` checks that the
/// directory exists.
pub fn connect(url: &str, secret: &[u8]) -> Result<Box<dyn Arbiter>, ArbiterError> {
    let bad = |reason: String| ArbiterError::BadUrl { url: url.to_string(), reason };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(bad(format!("expected {SCHEMES}")));
    };
    match scheme {
        "understudy" => {
            let addr = rest.strip_suffix('/').unwrap_or(rest);
            check_host_port(addr).map_err(bad)?;
            Ok(Box::new(ArbiterClient::new(addr, secret)))
        }
        "file" => {
            if !rest.starts_with('/') {
                return Err(bad("expected file:///abs/dir: three slashes, an empty host and an absolute path".into()));
            }
            Ok(Box::new(FileArbiter::open(Path::new(rest))?))
        }
        #[cfg(feature = "etcd")]
        "etcd" => Ok(Box::new(EtcdArbiter::open(url)?)),
        #[cfg(not(feature = "etcd"))]
        "etcd" => Err(bad(format!(
            "this build has no etcd backend (cargo feature `etcd` of understudy-arbiter); use {}",
            "understudy://HOST:PORT (run `understudy arbiter`) or file:///shared/dir"
        ))),
        other => Err(bad(format!("unknown scheme {other:?}; expected {SCHEMES}"))),
    }
}

/// Checks `HOST:PORT` (HOST may be a name, an IPv4 address or `[IPv6]`).
pub(crate) fn check_host_port(addr: &str) -> Result<(), String> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(format!("expected HOST:PORT, got {addr:?}"));
    };
    if host.is_empty() || host.contains('/') || (host.contains(':') && !host.starts_with('[')) {
        return Err(format!("bad host {host:?} (write an IPv6 address as [::1])"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("bad port {port:?}: expected 1-65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad_url_reason(url: &str) -> String {
        match connect(url, b"s") {
            Err(ArbiterError::BadUrl { reason, .. }) => reason,
            Err(other) => panic!("{url}: expected BadUrl, got {other}"),
            Ok(a) => panic!("{url}: expected BadUrl, got {}", a.describe()),
        }
    }

    #[test]
    fn urls_dispatch_to_their_backend() {
        let a = connect("understudy://127.0.0.1:7700", b"s").unwrap();
        assert_eq!(a.describe(), "understudy://127.0.0.1:7700");
        assert_eq!(connect("understudy://[::1]:7700/", b"s").unwrap().describe(), "understudy://[::1]:7700");
        let d = tempfile::tempdir().unwrap();
        let url = format!("file://{}", d.path().display());
        assert_eq!(connect(&url, b"").unwrap().describe(), url);
        #[cfg(feature = "etcd")]
        assert_eq!(connect("etcd://127.0.0.1:2379,[::1]:2379", b"").unwrap().describe(), "etcd://127.0.0.1:2379,[::1]:2379");
    }

    #[test]
    fn bad_urls_name_the_fix() {
        #[cfg(not(feature = "etcd"))]
        assert!(bad_url_reason("etcd://127.0.0.1:2379").contains("cargo feature `etcd`"));
        #[cfg(feature = "etcd")]
        assert!(bad_url_reason("etcd://127.0.0.1:2379,h2").contains("endpoint \"h2\""));
        assert!(bad_url_reason("http://x:1").contains("understudy://HOST:PORT"));
        assert!(bad_url_reason("127.0.0.1:7700").contains("file:///"));
        assert!(bad_url_reason("understudy://host").contains("HOST:PORT"));
        assert!(bad_url_reason("understudy://host:0").contains("port"));
        assert!(bad_url_reason("understudy://:7700").contains("host"));
        assert!(bad_url_reason("file://relative/dir").contains("three slashes"));
        assert!(bad_url_reason("file:///no/such/understudy/dir").contains("mounted"));
    }
}
