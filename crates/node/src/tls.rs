//! TLS on the client port: `--tls-cert FILE --tls-key FILE` make it speak
//! TLS only (as Redis's `tls-port` with `port 0`), `--tls-ca FILE` also
//! asks every client for a certificate signed by that CA (Redis's
//! `tls-auth-clients yes`). rustls with the ring provider; the files are
//! PEM, read once at start. [`ClientTls`] is the other side, for tools
//! that connect to such nodes (`understudy sentinel`).
//!
//! Errors name the flag and the file. Nothing read from a key file is ever
//! shown: a key that does not parse is reported without its bytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// How long a client has to finish its TLS handshake before its connection
/// is dropped (the handshake runs in the connection's own task, so a slow
/// one holds up no other client).
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The client port's TLS settings, loaded and checked.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    /// `--tls-ca` was given: clients must present a certificate it signed.
    pub verifies_clients: bool,
    /// `--tls-cert`, as given (for the log).
    pub cert_file: PathBuf,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No key material: only what the log may show.
        f.debug_struct("ServerTls").field("cert_file", &self.cert_file).field("verifies_clients", &self.verifies_clients).finish()
    }
}

impl ServerTls {
    /// The TLS of `--tls-cert`, `--tls-key` and `--tls-ca`; None when none
    /// is given. A flag without its partner is an error naming the missing
    /// flag.
    pub fn from_flags(cert: Option<&Path>, key: Option<&Path>, ca: Option<&Path>) -> Result<Option<ServerTls>, String> {
        let (cert, key) = match (cert, key) {
            (None, None) => {
                return match ca {
                    Some(ca) => Err(format!(
                        "--tls-ca {} needs --tls-cert and --tls-key: the client port's certificate and key",
                        ca.display()
                    )),
                    None => Ok(None),
                };
            }
            (Some(c), None) => {
                return Err(format!("--tls-cert {} needs --tls-key: the certificate's private key (PEM)", c.display()))
            }
            (None, Some(k)) => return Err(format!("--tls-key {} needs --tls-cert: its certificate (PEM)", k.display())),
            (Some(c), Some(k)) => (c, k),
        };
        let provider = provider();
        let chain = certificates(cert, "--tls-cert")?;
        let private = private_key(key, "--tls-key")?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = match ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = roots(ca, "--tls-ca")?;
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder.with_single_cert(chain, private).map_err(|e| key_error(e, cert, key))?;
        Ok(Some(ServerTls { config: Arc::new(config), verifies_clients: ca.is_some(), cert_file: cert.to_path_buf() }))
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }

    /// For the log line that names the client port.
    pub fn describe(&self) -> String {
        let clients = if self.verifies_clients { "client certificates required" } else { "no client certificates" };
        format!("TLS with {}, {clients}", self.cert_file.display())
    }
}

/// What a client of TLS nodes needs: the CA that signed their certificates
/// (`--tls-ca`) and, for nodes that ask for one, its own certificate
/// (`--tls-cert`, `--tls-key`).
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

/// A TLS connection over a blocking socket.
pub type ClientStream = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

impl ClientTls {
    /// None without `--tls-ca`; `--tls-cert` and `--tls-key` go together
    /// and need `--tls-ca`.
    pub fn from_flags(ca: Option<&Path>, cert: Option<&Path>, key: Option<&Path>) -> Result<Option<ClientTls>, String> {
        let Some(ca) = ca else {
            return match cert.or(key) {
                Some(_) => Err("--tls-cert and --tls-key need --tls-ca: the CA that signed the nodes' certificates".into()),
                None => Ok(None),
            };
        };
        let provider = provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots(ca, "--tls-ca")?);
        let config = match (cert, key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(c), Some(k)) => {
                let chain = certificates(c, "--tls-cert")?;
                builder.with_client_auth_cert(chain, private_key(k, "--tls-key")?).map_err(|e| key_error(e, c, k))?
            }
            (Some(c), None) => {
                return Err(format!("--tls-cert {} needs --tls-key: the certificate's private key (PEM)", c.display()))
            }
            (None, Some(k)) => return Err(format!("--tls-key {} needs --tls-cert: its certificate (PEM)", k.display())),
        };
        Ok(Some(ClientTls { config: Arc::new(config) }))
    }

    /// Starts TLS on `tcp`, a connection to `host` (a name or an IP
    /// address, which the node's certificate must name). The handshake
    /// happens on the first read or write.
    pub fn wrap(&self, host: &str, tcp: std::net::TcpStream) -> std::io::Result<ClientStream> {
        let name = ServerName::try_from(host.to_string()).map_err(|e| std::io::Error::other(format!("{host:?}: {e}")))?;
        let conn = rustls::ClientConnection::new(self.config.clone(), name).map_err(std::io::Error::other)?;
        Ok(rustls::StreamOwned::new(conn, tcp))
    }
}

/// ring, named rather than left to rustls' process-wide default (which
/// another crate's feature could make ambiguous).
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {flag} {}: {e}", path.display()))
}

/// Every certificate in a PEM file; at least one.
fn certificates(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path, flag)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{flag} {}: not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{flag} {}: no certificate in it (no -----BEGIN CERTIFICATE----- block)", path.display()));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1). What the file
/// holds is never quoted.
fn private_key(path: &Path, flag: &str) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read(path, flag)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        let why = match e {
            pem::Error::NoItemsFound => "no private key in it (no -----BEGIN PRIVATE KEY----- block, nor RSA or EC)",
            pem::Error::Base64Decode(_) | pem::Error::IllegalSectionStart { .. } | pem::Error::MissingSectionEnd { .. } => {
                "not valid PEM"
            }
            _ => "unreadable as a PEM private key",
        };
        format!("{flag} {}: {why}", path.display())
    })
}

/// The CA certificates of `--tls-ca`.
fn roots(path: &Path, flag: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certificates(path, flag)? {
        roots.add(c).map_err(|e| format!("{flag} {}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

/// An error of pairing a certificate with its key, naming both flags.
fn key_error(e: rustls::Error, cert: &Path, key: &Path) -> String {
    use rustls::{Error, InconsistentKeys};
    match e {
        Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => format!(
            "--tls-key {} does not match --tls-cert {}: the certificate is for another key",
            key.display(),
            cert.display()
        ),
        Error::General(why) => format!("--tls-key {}: {why}", key.display()),
        e => format!("--tls-cert {} with --tls-key {}: {e}", cert.display(), key.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_without_its_partner_names_the_missing_one() {
        let p = |s: &'static str| Some(Path::new(s));
        let e = ServerTls::from_flags(p("/c.pem"), None, None).unwrap_err();
        assert!(e.contains("--tls-cert /c.pem needs --tls-key"), "{e}");
        let e = ServerTls::from_flags(None, p("/k.pem"), None).unwrap_err();
        assert!(e.contains("needs --tls-cert"), "{e}");
        let e = ServerTls::from_flags(None, None, p("/ca.pem")).unwrap_err();
        assert!(e.contains("--tls-ca /ca.pem needs --tls-cert and --tls-key"), "{e}");
        assert!(ServerTls::from_flags(None, None, None).unwrap().is_none());
        let e = ServerTls::from_flags(p("/nonexistent/c.pem"), p("/nonexistent/k.pem"), None).unwrap_err();
        assert!(e.starts_with("reading --tls-cert /nonexistent/c.pem: "), "{e}");
        let e = ClientTls::from_flags(None, p("/c.pem"), p("/k.pem")).unwrap_err();
        assert!(e.contains("need --tls-ca"), "{e}");
        assert!(ClientTls::from_flags(None, None, None).unwrap().is_none());
    }

    #[test]
    fn files_without_the_right_pem_block_name_the_flag_and_never_show_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let secretish = dir.path().join("bad-key.pem");
        std::fs::write(&secretish, "-----BEGIN PRIVATE KEY-----\nTOPSECRET!!!\n-----END PRIVATE KEY-----\n").unwrap();
        let e = certificates(&junk, "--tls-cert").unwrap_err();
        assert!(e.contains("--tls-cert") && e.contains("junk.pem") && e.contains("no certificate"), "{e}");
        let e = private_key(&junk, "--tls-key").unwrap_err();
        assert!(e.contains("--tls-key") && e.contains("no private key"), "{e}");
        let e = private_key(&secretish, "--tls-key").unwrap_err();
        assert!(e.contains("--tls-key") && !e.contains("TOPSECRET"), "{e}");
    }
}
