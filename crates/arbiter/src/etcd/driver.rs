//! A small tokio runtime behind the synchronous [`crate::Arbiter`] trait.
//!
//! etcd-client is async; nodes call the arbiter from plain threads. One
//! current-thread runtime runs on a dedicated thread for the life of the
//! backend, so the gRPC connection's background tasks (HTTP/2 pings,
//! reconnection) keep running between calls; callers block on their own
//! future with [`Handle::block_on`], which needs that thread to drive I/O and
//! timers (see its docs).

use std::future::Future;
use std::io;
use std::thread::JoinHandle;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// Owns the runtime thread; dropping it stops the runtime.
#[derive(Debug)]
pub(super) struct Driver {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Driver {
    pub(super) fn start() -> io::Result<Driver> {
        let rt = Builder::new_current_thread().enable_all().build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name("etcd-arbiter".into()).spawn(move || {
            // Err means the Driver was dropped without sending: stop too.
            let _ = rt.block_on(stopped);
        })?;
        Ok(Driver { handle, stop: Some(stop), thread: Some(thread) })
    }

    /// Makes the runtime current on this thread while the guard lives:
    /// creating a lazily connected gRPC channel spawns its task on it.
    pub(super) fn enter(&self) -> tokio::runtime::EnterGuard<'_> {
        self.handle.enter()
    }

    /// Runs `f` to completion on the calling thread. Must not be called from
    /// inside an async task (tokio panics): async callers use
    /// `spawn_blocking`, as the trait's docs ask.
    pub(super) fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.handle.block_on(f)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timers_run_for_callers_on_other_threads() {
        let d = Driver::start().unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                // Inside `async`: a timer must be created in the runtime's context.
                s.spawn(|| d.block_on(async { tokio::time::sleep(Duration::from_millis(20)).await }));
            }
        });
        assert_eq!(d.block_on(async { 7 }), 7);
    }
}
