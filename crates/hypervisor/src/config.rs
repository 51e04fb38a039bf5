//! What a guest is (module, args, env, limits) and how wasmtime is configured
//! so that two replicas execute it identically (DESIGN §3, "deterministic
//! replay"). Everything that must be equal on both sides goes into the
//! [`fingerprint`]; replicas whose fingerprints differ refuse to pair.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::event::EVENT_FORMAT_VERSION;

/// The wasmtime this crate is pinned to (`=48.0.8` in the workspace).
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Default bound on linear memory: 1 GiB.
pub const MEMORY_BYTES_MAX_DEFAULT: u64 = 1 << 30;
/// Default bound on the wasm stack (wasmtime's own default).
pub const STACK_BYTES_MAX_DEFAULT: usize = 512 * 1024;

/// Fuel is wasmtime's deterministic instruction counter. It costs guest CPU
/// (see the crate docs for the measurement), so it is off unless something
/// needs a position in the instruction stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fuel {
    pub enabled: bool,
    /// Stop the guest (a trap, identical on both replicas) after this much
    /// fuel; only meaningful with `enabled`.
    pub limit: Option<u64>,
}

/// A guest program and everything that determines its execution.
#[derive(Clone)]
pub struct GuestConfig {
    /// The module's bytes, as given (not instrumented).
    pub module: Arc<[u8]>,
    /// `argv[0]` as the guest sees it.
    pub program_name: String,
    /// Arguments after `argv[0]`.
    pub args: Vec<String>,
    /// Environment, in order.
    pub env: Vec<(String, String)>,
    /// `memory.grow` beyond this fails (returns -1) on every replica.
    pub memory_bytes_max: u64,
    /// Stack depth at which the guest traps with "call stack exhausted".
    pub stack_bytes_max: usize,
    pub fuel: Fuel,
    /// The guest's fd 3 is a listening socket (always in a cluster; in a
    /// standalone run, when `--guest-listen` is given or no directory is
    /// mapped). The mapped directories follow it.
    pub listener: bool,
    /// Host directories mapped into the guest (`--map-dir`), in fd order.
    /// Their guest paths are fingerprinted; their host paths are each
    /// replica's own.
    pub map_dirs: Vec<crate::fs::MapDir>,
    /// `--disk-bytes-max`: bytes of file contents each mapped directory may
    /// hold (`ENOSPC` beyond; see `fs`). Fingerprinted: every replica has
    /// the same limit, so the guest sees `ENOSPC` at the same call on all.
    pub disk_bytes_max: Option<u64>,
}

impl std::fmt::Debug for GuestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestConfig")
            .field("module_bytes", &self.module.len())
            .field("program_name", &self.program_name)
            .field("args", &self.args)
            .field("env", &self.env)
            .field("memory_bytes_max", &self.memory_bytes_max)
            .field("stack_bytes_max", &self.stack_bytes_max)
            .field("fuel", &self.fuel)
            .field("listener", &self.listener)
            .field("map_dirs", &self.map_dirs)
            .field("disk_bytes_max", &self.disk_bytes_max)
            .finish()
    }
}

impl GuestConfig {
    /// A guest with default limits, no args, no env, fuel off.
    pub fn new(module: impl Into<Arc<[u8]>>) -> Self {
        GuestConfig {
            module: module.into(),
            program_name: "guest.wasm".into(),
            args: Vec::new(),
            env: Vec::new(),
            memory_bytes_max: MEMORY_BYTES_MAX_DEFAULT,
            stack_bytes_max: STACK_BYTES_MAX_DEFAULT,
            fuel: Fuel::default(),
            listener: true,
            map_dirs: Vec::new(),
            disk_bytes_max: None,
        }
    }

    pub fn with_args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `argv` as the guest sees it.
    pub fn argv(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.program_name.as_str()).chain(self.args.iter().map(String::as_str))
    }

    /// `KEY=VALUE` strings as the guest sees them.
    pub fn environ(&self) -> impl Iterator<Item = String> + '_ {
        self.env.iter().map(|(k, v)| format!("{k}={v}"))
    }
}

/// SHA-256 of the module bytes.
pub fn module_digest(module: &[u8]) -> [u8; 32] {
    Sha256::digest(module).into()
}

/// The wasmtime configuration both replicas use.
///
/// - NaN canonicalization: float results that are NaN have one bit pattern
///   whatever the CPU produced.
/// - Relaxed SIMD off (and deterministic, should it be turned on), threads off
///   (the `threads` feature is not even compiled in), no shared memory.
/// - Fuel only when [`Fuel::enabled`].
/// - A fixed stack bound, so deep recursion traps at the same depth.
/// - Memory bounds are enforced by the store's limiter (see `machine.rs`).
pub fn engine_config(guest: &GuestConfig) -> wasmtime::Config {
    let mut c = wasmtime::Config::new();
    c.cranelift_nan_canonicalization(true);
    c.wasm_relaxed_simd(false);
    c.relaxed_simd_deterministic(true);
    c.shared_memory(false);
    c.wasm_multi_memory(false);
    c.wasm_memory64(false);
    c.consume_fuel(guest.fuel.enabled);
    c.max_wasm_stack(guest.stack_bytes_max);
    // Trap messages are part of what both replicas report; without backtraces
    // they are the plain trap description.
    c.wasm_backtrace_max_frames(None);
    c.cranelift_opt_level(wasmtime::OptLevel::Speed);
    // Snapshots read linear memory from another thread while the guest
    // runs (`snapshot.rs`) and track its writes by address: the memory
    // must stay where it is, and be plain anonymous memory (no copy-on-write
    // image of the module's data behind it).
    c.memory_may_move(false);
    c.memory_init_cow(false);
    c
}

/// A `Hasher` feeding SHA-256, so `Hash` impls give a stable digest.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        u64::from_le_bytes(self.0.clone().finalize()[..8].try_into().expect("8 bytes"))
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn put(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// Hex SHA-256 over everything that must be equal on both replicas: the event
/// format, the wasmtime version, wasmtime's own compatibility hash (compiler
/// flags including the CPU features code generation used, tunables, enabled
/// wasm features), the memory and stack bounds, the fuel settings, the module
/// bytes, args and env. As with VMware FT, replicas need compatible CPUs.
pub fn fingerprint(guest: &GuestConfig) -> Result<String, crate::HypervisorError> {
    let engine = wasmtime::Engine::new(&engine_config(guest)).map_err(|e| crate::HypervisorError::Engine(e.to_string()))?;
    let mut h = Sha256::new();
    put(&mut h, b"understudy-hypervisor");
    h.update(EVENT_FORMAT_VERSION.to_le_bytes());
    put(&mut h, WASMTIME_VERSION.as_bytes());
    let mut eh = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut eh);
    h.update(eh.0.finalize());
    h.update(guest.memory_bytes_max.to_le_bytes());
    h.update((guest.stack_bytes_max as u64).to_le_bytes());
    h.update([u8::from(guest.fuel.enabled)]);
    h.update(guest.fuel.limit.map_or(u64::MAX, |l| l).to_le_bytes());
    h.update(module_digest(&guest.module));
    for a in guest.argv() {
        put(&mut h, a.as_bytes());
    }
    h.update([0xff]);
    for e in guest.environ() {
        put(&mut h, e.as_bytes());
    }
    h.update([0xfe, u8::from(guest.listener)]);
    for d in &guest.map_dirs {
        put(&mut h, d.guest.as_bytes());
    }
    if let Some(limit) = guest.disk_bytes_max {
        h.update([0xfd]);
        h.update(limit.to_le_bytes());
    }
    Ok(hex(&h.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_covers_what_must_be_equal() {
        let module: &[u8] = b"\0asm\x01\0\0\0";
        let base = GuestConfig::new(module.to_vec());
        let fp = fingerprint(&base).unwrap();
        assert_eq!(fp, fingerprint(&base.clone()).unwrap(), "stable");
        let mut variants =
            vec![base.clone().with_args(["x"]), base.clone().with_env("K", "V"), GuestConfig::new(b"\0asm\x01\0\0\0\0".to_vec())];
        let mut c = base.clone();
        c.memory_bytes_max /= 2;
        variants.push(c);
        let mut c = base.clone();
        c.fuel.enabled = true;
        variants.push(c.clone());
        c.fuel.limit = Some(10);
        variants.push(c);
        let mut c = base.clone();
        c.stack_bytes_max *= 2;
        variants.push(c);
        for v in variants {
            assert_ne!(fingerprint(&v).unwrap(), fp, "{v:?}");
        }
        // Args and env are not confused with each other.
        assert_ne!(fingerprint(&base.clone().with_args(["K=V"])).unwrap(), fingerprint(&base.with_env("K", "V")).unwrap());
    }
}
