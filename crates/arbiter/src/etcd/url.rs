//! The `etcd://` URL: endpoints, optional credentials, optional TLS files.
//!
//! ```text
//! etcd://[USER[:PASSWORD]@]HOST:PORT[,HOST:PORT…][/][?ca=FILE[&cert=FILE&key=FILE]]
//! ```
//!
//! Credentials may instead come from the environment
//! ([`USER_ENV`], [`PASSWORD_ENV`]), which keeps the password out of `ps`
//! and shell history; what the URL says wins. `ca`, `cert` and `key` are PEM
//! files: `ca` switches TLS on (build with the cargo feature `etcd-tls`),
//! `cert` and `key` add a client certificate.

use std::fmt;
use std::path::PathBuf;

/// Environment variable naming the etcd user when the URL has none.
pub const USER_ENV: &str = "UNDERSTUDY_ETCD_USER";
/// Environment variable holding the etcd password when the URL has none.
pub const PASSWORD_ENV: &str = "UNDERSTUDY_ETCD_PASSWORD";

/// An etcd user and password. `Debug` never shows the password: targets end
/// up in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("user", &self.user).field("password", &"<redacted>").finish()
    }
}

/// PEM files for TLS to etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the etcd servers' certificates.
    pub ca: PathBuf,
    /// Client certificate and key, for etcd's `--client-cert-auth`.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// A parsed `etcd://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTarget {
    /// `HOST:PORT` of each etcd member, in the order given.
    pub endpoints: Vec<String>,
    pub credentials: Option<Credentials>,
    pub tls: Option<TlsFiles>,
    /// The URL without the password, for logs and `describe()`.
    pub shown: String,
}

/// Parses `url`; `env` looks up an environment variable (a parameter so that
/// tests need not touch the process environment). Errors are the reason for
/// [`crate::ArbiterError::BadUrl`].
pub fn parse(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<EtcdTarget, String> {
    let rest = url.strip_prefix("etcd://").ok_or("expected etcd://HOST:PORT[,HOST:PORT…]")?;
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let main = main.strip_suffix('/').unwrap_or(main);
    let (userinfo, hosts) = match main.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, main),
    };
    if hosts.contains("://") {
        return Err("write each endpoint as HOST:PORT, without http:// (TLS is chosen with ?ca=FILE)".into());
    }
    if hosts.contains('/') {
        return Err("a path is not supported: understudy keeps its keys under /understudy/<cluster>/".into());
    }
    let endpoints = parse_endpoints(hosts)?;
    let credentials = credentials(userinfo, env)?;
    let tls = parse_query(query)?;
    let mut shown = String::from("etcd://");
    if let Some(c) = &credentials {
        shown.push_str(&c.user);
        shown.push('@');
    }
    shown.push_str(&endpoints.join(","));
    if !query.is_empty() {
        shown.push('?');
        shown.push_str(query);
    }
    Ok(EtcdTarget { endpoints, credentials, tls, shown })
}

fn parse_endpoints(hosts: &str) -> Result<Vec<String>, String> {
    if hosts.is_empty() {
        return Err("no endpoint: expected etcd://HOST:PORT[,HOST:PORT…]".into());
    }
    hosts
        .split(',')
        .map(|h| {
            crate::check_host_port(h).map_err(|e| format!("endpoint {h:?}: {e}"))?;
            Ok(h.to_string())
        })
        .collect()
}

/// The user and password from the URL, else from the environment. A user
/// without a password (or the reverse) is an error rather than a silent
/// unauthenticated connection.
fn credentials(userinfo: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Credentials>, String> {
    let (url_user, url_password) = match userinfo {
        None => (None, None),
        Some(u) => match u.split_once(':') {
            Some((user, password)) => (Some(user.to_string()), Some(password.to_string())),
            None => (Some(u.to_string()), None),
        },
    };
    if url_user.as_deref() == Some("") {
        return Err("empty user name before '@'".into());
    }
    let lookup = |name: &str| env(name).filter(|v| !v.is_empty());
    let user = url_user.or_else(|| lookup(USER_ENV));
    let password = url_password.or_else(|| lookup(PASSWORD_ENV));
    match (user, password) {
        (None, None) => Ok(None),
        (Some(user), Some(password)) => Ok(Some(Credentials { user, password })),
        (Some(user), None) => {
            Err(format!("etcd user {user:?} has no password: write etcd://{user}:PASSWORD@… or set {PASSWORD_ENV}"))
        }
        (None, Some(_)) => Err(format!("{PASSWORD_ENV} is set but no user is named: write etcd://USER@… or set {USER_ENV}")),
    }
}

/// `ca=FILE&cert=FILE&key=FILE`.
fn parse_query(query: &str) -> Result<Option<TlsFiles>, String> {
    let (mut ca, mut cert, mut key) = (None, None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| format!("query parameter {pair:?}: expected NAME=VALUE"))?;
        let slot = match k {
            "ca" => &mut ca,
            "cert" => &mut cert,
            "key" => &mut key,
            other => return Err(format!("unknown parameter {other:?}: expected ca=, cert= and key= (PEM files for TLS)")),
        };
        if v.is_empty() || slot.replace(PathBuf::from(v)).is_some() {
            return Err(format!("parameter {k:?} must be given once, with a file name"));
        }
    }
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("cert= and key= go together (the client certificate and its private key)".into()),
    };
    match ca {
        Some(ca) => Ok(Some(TlsFiles { ca, identity })),
        None if identity.is_some() => Err("cert= and key= need ca= too (the CA of the etcd servers)".into()),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn err(url: &str) -> String {
        parse(url, &no_env).unwrap_err()
    }

    #[test]
    fn endpoints_in_order_and_shown_without_password() {
        let t = parse("etcd://h1:2379,10.0.0.2:2379,[::1]:2379/", &no_env).unwrap();
        assert_eq!(t.endpoints, ["h1:2379", "10.0.0.2:2379", "[::1]:2379"]);
        assert_eq!((t.credentials, t.tls), (None, None));
        assert_eq!(t.shown, "etcd://h1:2379,10.0.0.2:2379,[::1]:2379");
        let t = parse("etcd://root:p@ss:w@rd@h1:2379", &no_env).unwrap();
        let c = t.credentials.unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("root", "p@ss:w@rd"));
        assert_eq!(t.shown, "etcd://root@h1:2379");
        assert!(!format!("{c:?}").contains("p@ss"), "Debug must not show the password");
    }

    #[test]
    fn credentials_come_from_the_environment_unless_the_url_has_them() {
        let env = |k: &str| match k {
            USER_ENV => Some("envuser".to_string()),
            PASSWORD_ENV => Some("envpass".to_string()),
            _ => None,
        };
        let c = parse("etcd://h:1", &env).unwrap().credentials.unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("envuser", "envpass"));
        let c = parse("etcd://u@h:1", &env).unwrap().credentials.unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("u", "envpass"));
        let only_password = |k: &str| (k == PASSWORD_ENV).then(|| "x".to_string());
        assert!(parse("etcd://h:1", &only_password).unwrap_err().contains(USER_ENV));
        assert!(err("etcd://u@h:1").contains(PASSWORD_ENV));
        assert!(err("etcd://@h:1").contains("empty user"));
    }

    #[test]
    fn tls_files_from_the_query() {
        let t = parse("etcd://h:1?ca=/ca.pem&cert=/c.pem&key=/k.pem", &no_env).unwrap();
        let tls = t.tls.unwrap();
        assert_eq!(tls.ca, PathBuf::from("/ca.pem"));
        assert_eq!(tls.identity, Some((PathBuf::from("/c.pem"), PathBuf::from("/k.pem"))));
        assert_eq!(t.shown, "etcd://h:1?ca=/ca.pem&cert=/c.pem&key=/k.pem");
        assert!(err("etcd://h:1?cert=/c.pem&key=/k.pem").contains("ca="));
        assert!(err("etcd://h:1?ca=/a&cert=/c.pem").contains("go together"));
        assert!(err("etcd://h:1?ca=/a&ca=/b").contains("once"));
        assert!(err("etcd://h:1?tls=1").contains("unknown parameter"));
    }

    #[test]
    fn bad_endpoints_are_named() {
        assert!(err("etcd://").contains("no endpoint"));
        assert!(err("etcd://h1:2379,,h2:2379").contains("endpoint \"\""));
        assert!(err("etcd://h1:2379,h2").contains("endpoint \"h2\""));
        assert!(err("etcd://h1:0").contains("port"));
        assert!(err("etcd://http://h1:2379").contains("without http://"));
        assert!(err("etcd://h1:2379/prefix").contains("path is not supported"));
    }
}
