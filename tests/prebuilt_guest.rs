//! The guest `understudy demo` carries inside the binary
//! (guests/prebuilt/kvserver.wasm, committed) is what its source builds
//! to: `sh guests/build.sh --prebuilt DIR` rebuilds it, and the bytes must
//! be the same. Fails, never skips, when the C toolchain is missing
//! (scripts/install-deps installs it).

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_committed_demo_guest_is_what_its_source_builds_to() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let built = Command::new("sh").arg(root.join("guests/build.sh")).arg("--prebuilt").arg(out.path()).output().unwrap();
    assert!(
        built.status.success(),
        "sh guests/build.sh --prebuilt failed (exit {:?}):\n{}{}\ninstall the Debian packages clang lld wasi-libc \
         libclang-rt-14-dev-wasm32 (scripts/install-deps does)",
        built.status.code(),
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    let fresh = std::fs::read(out.path().join("kvserver.wasm")).unwrap();
    let committed = std::fs::read(root.join("guests/prebuilt/kvserver.wasm")).unwrap();
    assert!(
        fresh == committed,
        "guests/prebuilt/kvserver.wasm ({} bytes) differs from a rebuild of guests/kvserver.c ({} bytes): run \
         `sh guests/build.sh --prebuilt` and commit the result (or, if the source did not change, the toolchain's \
         version did: {})",
        committed.len(),
        fresh.len(),
        String::from_utf8_lossy(&Command::new("clang").arg("--version").output().map(|o| o.stdout).unwrap_or_default())
            .lines()
            .next()
            .unwrap_or("clang not found")
    );
}
