//! Arbiter calls off the event loop. Calls block (the trait is synchronous),
//! so they run on two threads: the *critical* lane (read, claim, add member)
//! in order, and the *status* lane (publish), which keeps only the newest
//! pending request so a slow arbiter never queues stale status — and never
//! delays a claim behind a publish.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::mpsc::UnboundedSender;
use understudy_arbiter::{Arbiter, ArbiterError, BackupInfo, BackupState, Claim, ClusterRecord, NodeAddrs, Update};
use understudy_core::{ArbiterView, BackupPhase, ClaimOutcome, Command, Event, UpdateOutcome};

enum Job {
    Read,
    Claim { epoch: u64 },
    AddMember { epoch: u64, node: String },
}

/// (epoch, backup, protected) of the newest status to publish.
type Publish = (u64, Option<BackupInfo>, bool);
type StatusSlot = Arc<(Mutex<Option<Publish>>, Condvar)>;

/// Handle to the two lanes. Results come back as core events.
pub struct ArbiterLanes {
    critical: std_mpsc::Sender<Job>,
    status: StatusSlot,
}

/// The part of the arbiter's record the protocol core reads.
pub fn view(r: &ClusterRecord) -> ArbiterView {
    ArbiterView {
        epoch: r.epoch,
        primary_node: r.primary.node.clone(),
        primary_repl: r.primary.repl.clone(),
        primary_client: r.primary.client.clone(),
        members: r.members.clone(),
    }
}

impl ArbiterLanes {
    pub fn start(arbiter: Arc<dyn Arbiter>, cluster: String, me: NodeAddrs, events: UnboundedSender<Event>) -> Self {
        let (tx, rx) = std_mpsc::channel::<Job>();
        let status: StatusSlot = Arc::new((Mutex::new(None), Condvar::new()));
        let (a2, c2, node2, s2, ev2) = (arbiter.clone(), cluster.clone(), me.node.clone(), status.clone(), events.clone());
        std::thread::Builder::new()
            .name("arbiter-critical".into())
            .spawn(move || {
                for job in rx {
                    if events.send(run_critical(&*arbiter, &cluster, &me, job)).is_err() {
                        return;
                    }
                }
            })
            .expect("spawn arbiter thread");
        std::thread::Builder::new()
            .name("arbiter-status".into())
            .spawn(move || status_lane(&*a2, &c2, &node2, &s2, &ev2))
            .expect("spawn arbiter thread");
        ArbiterLanes { critical: tx, status }
    }

    /// Sends an arbiter command to its lane; returns false for other commands.
    pub fn submit(&self, c: &Command) -> bool {
        let job = match c {
            Command::ReadArbiter => Job::Read,
            Command::Claim { epoch } => Job::Claim { epoch: *epoch },
            Command::AddMember { epoch, node } => Job::AddMember { epoch: *epoch, node: node.clone() },
            Command::Publish { epoch, backup, protected } => {
                let backup = backup.as_ref().map(|(node, phase, lag)| BackupInfo {
                    node: node.clone(),
                    state: match phase {
                        BackupPhase::Joining => BackupState::Joining,
                        BackupPhase::InSync => BackupState::InSync,
                    },
                    lag: *lag,
                });
                let (lock, cv) = &*self.status;
                *lock.lock().expect("status lane lock") = Some((*epoch, backup, *protected));
                cv.notify_one();
                return true;
            }
            _ => return false,
        };
        // The lane thread lives as long as the process.
        let _ = self.critical.send(job);
        true
    }
}

fn run_critical(arbiter: &dyn Arbiter, cluster: &str, me: &NodeAddrs, job: Job) -> Event {
    match job {
        Job::Read => match arbiter.read(cluster) {
            Ok(r) => Event::ArbiterRead(Ok(r.as_ref().map(view))),
            // Waiting cannot fix credentials.
            Err(e @ ArbiterError::Auth { .. }) => Event::ArbiterRefused { reason: e.to_string() },
            // The core says what it waits for (at growing intervals).
            Err(e) => {
                log::debug!("reading cluster {cluster:?} at {}: {e}", arbiter.describe());
                Event::ArbiterRead(Err(e.to_string()))
            }
        },
        Job::Claim { epoch } => {
            let outcome = match arbiter.claim(cluster, epoch, me) {
                Ok(Claim::Granted(_)) => ClaimOutcome::Granted,
                Ok(Claim::Superseded(r)) => ClaimOutcome::Superseded { current: r.epoch, holder: r.primary.node },
                Ok(Claim::NotMember(r)) => ClaimOutcome::NotMember { current: r.epoch },
                Err(e) => {
                    log::debug!("claiming epoch {epoch} at {}: {e}", arbiter.describe());
                    ClaimOutcome::Error(e.to_string())
                }
            };
            Event::ClaimDone { epoch, outcome }
        }
        Job::AddMember { epoch, node } => {
            let outcome = match arbiter.add_member(cluster, epoch, &me.node, &node) {
                Ok(Update::Applied(_)) => UpdateOutcome::Applied,
                Ok(Update::Superseded(r)) => UpdateOutcome::Superseded { current: r.map_or(0, |r| r.epoch) },
                Err(e) => {
                    log::debug!("adding member {node:?} to epoch {epoch} at {}: {e}", arbiter.describe());
                    UpdateOutcome::Error(e.to_string())
                }
            };
            Event::AddMemberDone { epoch, node, outcome }
        }
    }
}

fn status_lane(arbiter: &dyn Arbiter, cluster: &str, node: &str, slot: &StatusSlot, events: &UnboundedSender<Event>) {
    loop {
        let (epoch, backup, protected) = {
            let (lock, cv) = &**slot;
            let mut g = lock.lock().expect("status lane lock");
            while g.is_none() {
                g = cv.wait(g).expect("status lane lock");
            }
            g.take().expect("checked")
        };
        // Best effort: status is informational; the arbiter applies it only
        // if we still hold `epoch`. Its refusal says another node holds a
        // newer one: the core acts on that (a primary halts, unless the
        // newer epoch is the one it is claiming itself).
        match arbiter.publish(cluster, epoch, node, backup, protected) {
            Ok(Update::Superseded(Some(r))) if r.epoch > epoch => {
                if events.send(Event::HigherEpoch { epoch: r.epoch }).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => log::debug!("publishing status to {}: {e}", arbiter.describe()),
        }
    }
}
