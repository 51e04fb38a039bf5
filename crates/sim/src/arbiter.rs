//! The simulated arbiter: calls travel over the simulated network (and
//! fail when it is cut or down); the record changes by the arbiter crate's
//! real rules.

use understudy_arbiter::rules::{decide_add_member, decide_claim, decide_publish, Decision};
use understudy_arbiter::{Claim, Update};
use understudy_core::{ArbiterView, ClaimOutcome, Command, Event, UpdateOutcome};

use crate::machine::CLUSTER;
use crate::world::{addrs, Action, World};

impl World {
    /// An arbiter call arrives: apply the real rules to the record.
    pub fn arbiter_call(&mut self, node: usize, inc: u64, cmd: Command) {
        if !self.net.arbiter_reachable(node) {
            if let Some(ev) = error_event(&cmd) {
                let d = self.rng.range(200, 1000);
                self.at(d, Action::Reply { node, inc, ev });
            }
            return;
        }
        let me = addrs(node);
        let rec = self.record.as_ref();
        let ev = match &cmd {
            Command::ReadArbiter => Some(Event::ArbiterRead(Ok(rec.map(|r| ArbiterView {
                epoch: r.epoch,
                primary_node: r.primary.node.clone(),
                primary_repl: r.primary.repl.clone(),
                primary_client: r.primary.client.clone(),
                members: r.members.clone(),
            })))),
            Command::Claim { epoch } => {
                let outcome = match decide_claim(CLUSTER, rec, *epoch, &me) {
                    Ok(Decision::Write(r)) => {
                        self.note(format!("arbiter grants epoch {epoch} to n{node}"));
                        self.record = Some(r);
                        ClaimOutcome::Granted
                    }
                    Ok(Decision::Answer(Claim::Granted(_))) => ClaimOutcome::Granted,
                    Ok(Decision::Answer(Claim::Superseded(r))) => {
                        ClaimOutcome::Superseded { current: r.epoch, holder: r.primary.node }
                    }
                    Ok(Decision::Answer(Claim::NotMember(r))) => ClaimOutcome::NotMember { current: r.epoch },
                    Err(e) => ClaimOutcome::Error(e.to_string()),
                };
                Some(Event::ClaimDone { epoch: *epoch, outcome })
            }
            Command::AddMember { epoch, node: member } => {
                let outcome = match decide_add_member(CLUSTER, rec, *epoch, &me.node, member) {
                    Ok(Decision::Write(r)) => {
                        self.note(format!("arbiter adds {member} to epoch {epoch}"));
                        self.record = Some(r);
                        UpdateOutcome::Applied
                    }
                    Ok(Decision::Answer(Update::Applied(_))) => UpdateOutcome::Applied,
                    Ok(Decision::Answer(Update::Superseded(r))) => {
                        UpdateOutcome::Superseded { current: r.map_or(0, |r| r.epoch) }
                    }
                    Err(e) => UpdateOutcome::Error(e.to_string()),
                };
                Some(Event::AddMemberDone { epoch: *epoch, node: member.clone(), outcome })
            }
            Command::Publish { epoch, protected, .. } => match decide_publish(CLUSTER, rec, *epoch, &me.node, None, *protected) {
                Ok(Decision::Write(r)) => {
                    self.record = Some(r);
                    None
                }
                // What the status lane of a real node reports.
                Ok(Decision::Answer(Update::Superseded(Some(r)))) if r.epoch > *epoch => {
                    Some(Event::HigherEpoch { epoch: r.epoch })
                }
                _ => None,
            },
            _ => None,
        };
        if let Some(mut ev) = ev {
            // The reply travels back; if the node is cut off by then it is
            // lost (the call may have been applied all the same).
            let d = self.rng.range(1, 5);
            if self.net.lossy && self.rng.chance(0.02) {
                // A status publish has no error answer: its answer is lost.
                match error_event(&cmd) {
                    Some(e) => ev = e,
                    None => return,
                }
            }
            self.at(d, Action::Reply { node, inc, ev });
        }
    }
}

/// What a node sees when its call times out.
fn error_event(cmd: &Command) -> Option<Event> {
    Some(match cmd {
        Command::ReadArbiter => Event::ArbiterRead(Err("arbiter unreachable".into())),
        Command::Claim { epoch } => Event::ClaimDone { epoch: *epoch, outcome: ClaimOutcome::Error("unreachable".into()) },
        Command::AddMember { epoch, node } => {
            Event::AddMemberDone { epoch: *epoch, node: node.clone(), outcome: UpdateOutcome::Error("unreachable".into()) }
        }
        _ => return None,
    })
}
