//! Certificates for TLS tests (openssl(1), which scripts/install-deps
//! installs), and redis-cli with TLS flags.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA, a server certificate for 127.0.0.1 and localhost, a client
/// certificate it signed, and a client certificate another CA signed.
pub struct Certs {
    dir: PathBuf,
}

impl Certs {
    pub fn make(dir: &Path) -> Certs {
        std::fs::create_dir_all(dir).unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl runs (scripts/install-deps installs it)");
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        for (ca, cn) in [("ca", "understudy test CA"), ("other-ca", "another CA")] {
            let (key, pem, subj) = (format!("{ca}.key"), format!("{ca}.pem"), format!("/CN={cn}"));
            run(&[&["req", "-x509"], &ec[..], &["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]].concat());
        }
        std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
            .unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for (name, ca, ext) in
            [("server", "ca", "server.ext"), ("client", "ca", "client.ext"), ("stranger", "other-ca", "client.ext")]
        {
            let (key, csr, pem, subj) =
                (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("/CN={name}"));
            run(&[&["req"], &ec[..], &["-keyout", &key, "-out", &csr, "-subj", &subj]].concat());
            let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_pem,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                ext,
            ]);
        }
        Certs { dir: dir.to_path_buf() }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// redis-cli's flags to reach the nodes: verify them against the CA,
    /// and present `client` (`client.pem`/`client.key`) if given.
    pub fn cli_flags(&self, client: Option<&str>) -> Vec<String> {
        let mut f = vec!["--tls".to_string(), "--cacert".into(), self.path("ca.pem")];
        if let Some(c) = client {
            f.extend(["--cert".into(), self.path(&format!("{c}.pem")), "--key".into(), self.path(&format!("{c}.key"))]);
        }
        f
    }

    /// The base64 lines of every private key: none may appear in a log.
    pub fn key_lines(&self) -> Vec<String> {
        ["ca.key", "server.key", "client.key", "stranger.key"]
            .iter()
            .flat_map(|k| std::fs::read_to_string(self.dir.join(k)).unwrap().lines().map(str::to_string).collect::<Vec<_>>())
            .filter(|l| !l.starts_with("-----") && l.len() > 16)
            .collect()
    }
}

/// Runs redis-cli with `flags` (TLS or none); its stdout and stderr. A
/// reply that never comes fails the call after 60 s instead of hanging.
pub fn redis_cli_with(addr: &str, flags: &[String], args: &[&str]) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let out = Command::new("timeout")
        .args(["60", "redis-cli", "-h", host, "-p", port])
        .args(flags)
        .args(args)
        .output()
        .expect("redis-cli is installed (Debian package redis-tools)");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)).trim().to_string()
}
