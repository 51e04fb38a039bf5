//! Makes a guest snapshottable while it keeps its call stack: Binaryen's
//! Asyncify transformation (`wasm-opt --asyncify`), which lets the host
//! unwind the guest's stack into linear memory at a host call and rewind it
//! later, here or in another process (see `snapshot.rs`).
//!
//! wasmtime 48 cannot capture a suspended call stack (its `guest_debug`
//! frames are read-only and stack switching is opaque), so the stack must
//! become data the guest itself can save and restore: Asyncify instruments
//! every function that may (transitively) call one of [`UNWIND_IMPORTS`]
//! to save its locals and resume at the call site. The cost measured on
//! the RESP guest is in `docs/PERFORMANCE.md`.
//!
//! The transformation runs once, on the node that starts the guest, with
//! the system's `wasm-opt` (Debian package `binaryen`; its output is
//! byte-identical across runs); the transformed module is what every
//! replica runs: a join ships it, so a joiner needs no binaryen.
//!
//! A module is refused for snapshots when it can change state that lives
//! outside linear memory and globals, which a snapshot does not carry:
//! `table.set`/`grow`/`fill`/`copy`/`init`, `elem.drop`, `data.drop`.

use std::path::PathBuf;
use std::process::Command;

use wasmtime::wasmparser::{Operator, Parser, Payload};

use crate::abi::MODULE;

/// The preview1 imports at which a guest can be unwound: every call that
/// may block, so a guest waiting for a client can be snapshotted without
/// waking it, plus the writes (a blocking send waits for room).
pub const UNWIND_IMPORTS: [&str; 6] = ["poll_oneoff", "sock_accept", "sock_recv", "sock_send", "fd_read", "fd_write"];

/// Exports the transformation adds.
pub(crate) const START_UNWIND: &str = "asyncify_start_unwind";
pub(crate) const STOP_UNWIND: &str = "asyncify_stop_unwind";
pub(crate) const START_REWIND: &str = "asyncify_start_rewind";
pub(crate) const STOP_REWIND: &str = "asyncify_stop_rewind";

/// Environment variable naming the `wasm-opt` to run (default: on PATH).
pub const WASM_OPT_ENV: &str = "UNDERSTUDY_WASM_OPT";

/// Why a module cannot be made snapshottable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    #[error(
        "`{program}` could not be run ({reason}): snapshots of a running guest need Binaryen's wasm-opt \
         (Debian: apt-get install binaryen; or set {WASM_OPT_ENV}=/path/to/wasm-opt)"
    )]
    NoWasmOpt { program: String, reason: String },
    #[error("wasm-opt --asyncify failed: {0}")]
    Failed(String),
    #[error("this guest cannot be snapshotted: {0}")]
    Unsupported(String),
}

/// The module already went through the transformation (it exports the
/// Asyncify functions).
pub fn is_transformed(module: &[u8]) -> bool {
    let mut found = 0;
    for payload in Parser::new(0).parse_all(module) {
        if let Ok(Payload::ExportSection(r)) = payload {
            for e in r.into_iter().flatten() {
                if [START_UNWIND, STOP_UNWIND, START_REWIND, STOP_REWIND].contains(&e.name) {
                    found += 1;
                }
            }
        }
    }
    found == 4
}

/// Refuses modules whose state is not all in linear memory and globals.
pub fn check_snapshottable(module: &[u8]) -> Result<(), TransformError> {
    let unsupported = |what: &str| TransformError::Unsupported(format!("its code uses {what}, state a snapshot does not carry"));
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(|e| TransformError::Unsupported(format!("malformed module: {e}")))?;
        match payload {
            Payload::MemorySection(r) if r.count() > 1 => return Err(TransformError::Unsupported("more than one memory".into())),
            Payload::CodeSectionEntry(body) => {
                let mut ops = body.get_operators_reader().map_err(|e| TransformError::Unsupported(e.to_string()))?;
                while !ops.eof() {
                    match ops.read().map_err(|e| TransformError::Unsupported(e.to_string()))? {
                        Operator::TableSet { .. } => return Err(unsupported("table.set")),
                        Operator::TableGrow { .. } => return Err(unsupported("table.grow")),
                        Operator::TableFill { .. } => return Err(unsupported("table.fill")),
                        Operator::TableCopy { .. } => return Err(unsupported("table.copy")),
                        Operator::TableInit { .. } => return Err(unsupported("table.init")),
                        Operator::ElemDrop { .. } => return Err(unsupported("elem.drop")),
                        Operator::DataDrop { .. } => return Err(unsupported("data.drop")),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn wasm_opt() -> String {
    std::env::var(WASM_OPT_ENV).unwrap_or_else(|_| "wasm-opt".into())
}

/// The version line of the `wasm-opt` that would run, e.g. `wasm-opt
/// version 108`.
pub fn wasm_opt_version() -> Result<String, TransformError> {
    let program = wasm_opt();
    let out = Command::new(&program)
        .arg("--version")
        .output()
        .map_err(|e| TransformError::NoWasmOpt { program: program.clone(), reason: e.to_string() })?;
    if !out.status.success() {
        let reason = format!("--version exited with {}", out.status);
        return Err(TransformError::NoWasmOpt { program, reason });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The `--pass-arg` that restricts unwinding to [`UNWIND_IMPORTS`].
fn imports_arg() -> String {
    let list: Vec<String> = UNWIND_IMPORTS.iter().map(|f| format!("{MODULE}.{f}")).collect();
    format!("asyncify-imports@{}", list.join(","))
}

/// Runs `wasm-opt --asyncify` on `module` (unless it is transformed
/// already) and returns the module every replica will run.
pub fn transform(module: &[u8]) -> Result<Vec<u8>, TransformError> {
    if is_transformed(module) {
        return Ok(module.to_vec());
    }
    check_snapshottable(module)?;
    wasm_opt_version()?;
    let dir = tempfile_dir().map_err(|e| TransformError::Failed(format!("a temporary directory: {e}")))?;
    let (input, output) = (dir.0.join("in.wasm"), dir.0.join("out.wasm"));
    std::fs::write(&input, module).map_err(|e| TransformError::Failed(format!("writing {}: {e}", input.display())))?;
    let out = Command::new(wasm_opt())
        .arg(&input)
        .args(["--asyncify", "--pass-arg", &imports_arg(), "-O2", "-o"])
        .arg(&output)
        .output()
        .map_err(|e| TransformError::NoWasmOpt { program: wasm_opt(), reason: e.to_string() })?;
    if !out.status.success() {
        return Err(TransformError::Failed(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    let bytes = std::fs::read(&output).map_err(|e| TransformError::Failed(format!("reading {}: {e}", output.display())))?;
    if !is_transformed(&bytes) {
        return Err(TransformError::Failed("the output does not export the asyncify functions".into()));
    }
    Ok(bytes)
}

/// A directory removed on drop (std has none; the crate's one dependency
/// for this would be tempfile).
struct TmpDir(PathBuf);

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> std::io::Result<TmpDir> {
    let mut n = [0u8; 8];
    let _ = getrandom_bytes(&mut n);
    let p = std::env::temp_dir().join(format!("understudy-asyncify-{}-{:016x}", std::process::id(), u64::from_le_bytes(n)));
    std::fs::create_dir(&p)?;
    Ok(TmpDir(p))
}

fn getrandom_bytes(b: &mut [u8]) -> bool {
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) == b.len() as isize }
}
