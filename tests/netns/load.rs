//! Client load from the test process (root namespace) into a partitioned
//! cluster: writers that follow the primary through the arbiter and record
//! every SET that was acknowledged, to be found on the survivor later.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use understudy_client::Reply;

use super::cluster::NsCluster;
use crate::common::wait_for;

pub struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<Vec<(String, String)>>>,
}

impl Load {
    /// `clients` writers; a request unanswered for `timeout` (held by a
    /// primary that cannot reach its backup, say) is abandoned — its write
    /// may or may not survive, and is not counted — and the writer asks the
    /// arbiter where the primary is again.
    pub fn start(c: &NsCluster, clients: usize, prefix: &str, timeout: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let threads = (0..clients)
            .map(|id| {
                let (stop, acked, prefix) = (stop.clone(), acked.clone(), prefix.to_string());
                let mut cl = c.cluster_client(timeout);
                std::thread::spawn(move || {
                    let mut done = Vec::new();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let (k, v) = (format!("{prefix}:{id}:{i}"), format!("{i}"));
                        i += 1;
                        match cl.try_call(&["SET", k.as_str(), v.as_str()]) {
                            Ok(Reply::Simple(s)) if s == "OK" => {
                                done.push((k, v));
                                acked.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(other) => panic!("SET {k}: unexpected reply {other:?}"),
                            Err(_) => std::thread::sleep(Duration::from_millis(20)),
                        }
                    }
                    done
                })
            })
            .collect();
        Load { stop, acked, threads }
    }

    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `n` more writes were acknowledged.
    pub fn wait_more(&self, n: u64, limit: Duration) {
        let target = self.acked() + n;
        wait_for(&format!("{n} more acknowledged writes"), limit, || (self.acked() >= target).then_some(()));
    }

    /// Stops the writers; returns every acknowledged write.
    pub fn stop(self) -> Vec<(String, String)> {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.into_iter().flat_map(|t| t.join().expect("load thread")).collect()
    }
}
