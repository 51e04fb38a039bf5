//! The product binary, `understudy`, whose nodes the bench starts: named by
//! `--understudy PATH`, or else the `understudy` next to this executable (the
//! same cargo target directory and profile). Started by `cargo run` or
//! `cargo test`, which build only this package, the bench first has cargo
//! build `understudy` in the same profile, so that it never measures a
//! binary older than its sources.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The workspace's manifest (the product package's).
const WORKSPACE_MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");

/// The `understudy` binary to start nodes with, checked to be one.
pub fn understudy(flag: Option<&Path>) -> Result<PathBuf> {
    let path = match flag {
        Some(p) => {
            if !p.is_file() {
                bail!("--understudy {}: no such file (build it with `cargo build --release`)", p.display());
            }
            p.to_path_buf()
        }
        None => {
            let me = std::env::current_exe().context("finding this executable (name the binary with --understudy PATH)")?;
            let next = me.with_file_name("understudy");
            // `cargo run`/`cargo test` tell the program they run which cargo
            // they are; a bench started by hand is not rebuilding anything.
            if let Some(cargo) = std::env::var_os("CARGO") {
                build_with(&cargo)?;
            }
            if !next.is_file() {
                bail!(
                    "the understudy binary is not at {} (next to this executable): build it with `cargo build --release` \
                     (or `cargo build --release -p understudy -p understudy-bench`), or name it with --understudy PATH",
                    next.display()
                );
            }
            next
        }
    };
    let shown = format!("--understudy {}", path.display());
    let out = Command::new(&path).arg("--version").output().with_context(|| format!("running {shown} --version"))?;
    let version = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !version.starts_with("understudy ") {
        bail!("{shown} is not the understudy binary: `--version` printed {:?}", version.trim());
    }
    Ok(path)
}

/// Has `cargo` build the product binary in this executable's profile.
fn build_with(cargo: &std::ffi::OsStr) -> Result<()> {
    let mut c = Command::new(cargo);
    c.args(["build", "--package", "understudy", "--bin", "understudy", "--manifest-path", WORKSPACE_MANIFEST]);
    if !cfg!(debug_assertions) {
        c.arg("--release");
    }
    eprintln!("understudy-bench: started by cargo, so cargo builds the understudy binary first (else: --understudy PATH)");
    let status = c.status().with_context(|| format!("running {c:?} (or name the binary with --understudy PATH)"))?;
    if !status.success() {
        bail!("{c:?} failed ({status}); name a built binary with --understudy PATH");
    }
    Ok(())
}
