//! Clients and the nemesis: crashes (kill -9 and power cuts), freezes
//! (SIGSTOP), one-way and two-way partitions, arbiter isolation and outages.

use std::collections::VecDeque;

use understudy_core::RoleName;

use crate::model::{OutKind, Output};
use crate::world::{Action, World};

/// How often a power cut also rots a sector (of one node).
const CORRUPT_SECTOR_CHANCE: f64 = 0.25;

impl World {
    /// A client sends one request to a node that believes it is primary —
    /// stale ones included: that is the case the output rule is for.
    pub fn client(&mut self) -> Result<(), String> {
        let now = self.now;
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                let n = &self.nodes[i];
                n.alive && n.stalled_until <= now && n.rep.core().is_primary()
            })
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let node = candidates[self.rng.pick(candidates.len())];
        if !self.nodes[node].rep.intake_open() {
            // Its connection waits until the runtime says the intake changed.
            self.nodes[node].parked += 1;
            return Ok(());
        }
        let epoch = self.nodes[node].rep.core().epoch();
        // Late in the settling phase clients only read: a read must not need
        // a later write to be released (its barrier entry carries it).
        let reads_only = self.healed_at.is_some_and(|t| now >= t + self.cfg.settle_ms / 2);
        if self.rng.chance(0.7) && !reads_only {
            let op = self.next_op();
            let mut reply = Vec::new();
            let seq = self.nodes[node].rep.apply_write(&op.to_le_bytes(), &mut reply);
            let idx = u64::from_le_bytes(reply[..8].try_into().expect("LogSm replies with the write's index"));
            self.nodes[node].outputs.push_back(Output { tag: seq, queued_at: now, epoch, kind: OutKind::Write { idx, op } });
        } else {
            let n = &mut self.nodes[node];
            let mut reply = Vec::new();
            let tag = n.rep.read(&[], &mut reply);
            let state_len = u64::from_le_bytes(reply[..8].try_into().expect("LogSm answers a read with its length"));
            n.rep.kick_barrier();
            n.outputs.push_back(Output { tag, queued_at: now, epoch, kind: OutKind::Read { state_len, arrival: now } });
        }
        self.after(node)
    }

    /// The failure model is one machine at a time: crash a node only when
    /// no other node is down and the victim is not the only holder of the
    /// cluster's state — a primary needs a live in-sync backup, a backup (or
    /// one going live) needs a live primary. A restarted node is empty: it
    /// holds nothing until it is in sync again.
    fn may_crash(&self, victim: usize) -> bool {
        if self.nodes.iter().any(|n| !n.alive) {
            return false;
        }
        let v = &self.nodes[victim].rep.core();
        let pair = |primary: usize, backup: usize| self.pair(primary, backup);
        match v.role_name() {
            RoleName::Primary => (0..self.nodes.len()).any(|b| b != victim && pair(victim, b)),
            RoleName::Backup => (0..self.nodes.len()).any(|p| p != victim && pair(p, victim)),
            // Mid-claim: who holds the state is in flight.
            RoleName::GoingLive => false,
            // A claim of the first epoch may be granted with its answer
            // lost: the node is then the (empty) cluster's only primary.
            RoleName::Starting if v.is_claiming() => false,
            RoleName::Starting | RoleName::Joining | RoleName::Halted => true,
        }
    }

    /// A live primary protected by `backup` (a live in-sync backup of its
    /// epoch).
    fn pair(&self, primary: usize, backup: usize) -> bool {
        let (pn, bn) = (&self.nodes[primary], &self.nodes[backup]);
        let (p, b) = (pn.rep.core(), bn.rep.core());
        let s = p.status();
        pn.alive
            && bn.alive
            && primary != backup
            && p.is_primary()
            && s.protected
            && s.peer.as_deref() == Some(bn.name.as_str())
            && b.role_name() == RoleName::Backup
            && b.epoch() == p.epoch()
    }

    pub fn nemesis(&mut self) -> Result<(), String> {
        let n = self.nodes.len();
        let victim = self.rng.pick(n);
        // (Planned stops are an extra kind, so runs without them keep the
        // random streams — and the regression seeds — they always had.)
        // So is the whole-cluster power loss of durable runs (kind 7).
        let kinds = 6 + usize::from(self.cfg.planned_stops) + usize::from(self.cfg.durable);
        let kind = match self.rng.pick(kinds) {
            6 if !self.cfg.planned_stops => 7,
            k => k,
        };
        match kind {
            0 if self.may_crash(victim) => {
                let fin = self.rng.chance(0.5);
                self.note(format!("nemesis: {} n{victim}", if fin { "kill -9" } else { "power cut" }));
                self.crash(victim, fin);
                if !fin && self.cfg.durable {
                    // A node that resumes from its disk may hold the only
                    // copy of the state (after a whole-cluster power loss):
                    // a second rotten disk then loses it, which no protocol
                    // survives and the model excludes (seed 2000098).
                    let only_copy = self.nodes[victim].rep.core().resumes_from_disk();
                    let corrupt = self.rng.chance(CORRUPT_SECTOR_CHANCE) && !only_copy;
                    self.disk_power_loss(victim, corrupt);
                }
                let d = self.rng.range(200, 3000);
                self.at(d, Action::Restart { node: victim });
            }
            1 => {
                let d = self.rng.range(100, 2000);
                self.note(format!("nemesis: SIGSTOP n{victim} for {d} ms"));
                self.nodes[victim].stalled_until = self.nodes[victim].stalled_until.max(self.now + d);
            }
            2 | 3 => {
                let other = (victim + 1 + self.rng.pick(n - 1)) % n;
                let d = self.rng.range(100, 3000);
                let both = self.rng.chance(0.6);
                self.note(format!("nemesis: cut n{victim} -> n{other}{} for {d} ms", if both { " both ways" } else { "" }));
                let heal = self.now + d;
                self.net.add_cut(victim, other, heal);
                self.at(d, Action::HealCut { from: victim, to: other });
                if both {
                    self.net.add_cut(other, victim, heal);
                    self.at(d, Action::HealCut { from: other, to: victim });
                }
            }
            4 => {
                let d = self.rng.range(100, 3000);
                self.note(format!("nemesis: n{victim} cannot reach the arbiter for {d} ms"));
                self.net.arbiter_cut.insert(victim);
                self.at(d, Action::HealArbiterCut { node: victim });
            }
            5 => {
                let d = self.rng.range(100, 3000);
                self.note(format!("nemesis: arbiter down for {d} ms"));
                self.net.arbiter_down = true;
                self.at(d, Action::ArbiterUp);
            }
            // An operator stops a node (SIGTERM) under the same rule as a
            // crash: never the only holder of the state.
            6 if self.may_crash(victim) && self.nodes[victim].alive => {
                // A frozen process handles the request when it resumes.
                let (inc, switchover) = (self.nodes[victim].inc, self.rng.chance(0.5));
                self.at(0, Action::Stop { node: victim, inc, switchover });
            }
            7 if (0..n).any(|p| (0..n).any(|b| self.pair(p, b))) => self.power_loss(),
            _ => {}
        }
        Ok(())
    }

    /// Every machine of the cluster loses power at once (with appendfsync
    /// always, no acknowledged write may be lost: issue 14). Only while the
    /// cluster is protected, so that two members hold every acknowledged
    /// write on disk; a sector rots on at most one node, so that a member
    /// with a complete log survives. Nodes already down lose their page
    /// cache too; their restart is scheduled already.
    fn power_loss(&mut self) {
        let n = self.nodes.len();
        let corrupt = self.rng.chance(CORRUPT_SECTOR_CHANCE).then(|| self.rng.pick(n));
        self.power_losses += 1;
        self.note(format!("nemesis: the whole cluster loses power (power loss #{})", self.power_losses));
        for i in 0..n {
            let was_alive = self.nodes[i].alive;
            if was_alive {
                self.crash(i, false);
            }
            self.disk_power_loss(i, corrupt == Some(i));
            if was_alive {
                let d = self.rng.range(200, 3000);
                self.at(d, Action::Restart { node: i });
            }
        }
    }

    /// An operator stops node `node`: `understudy switchover` (a primary
    /// hands over, then rejoins as backup) or SIGTERM.
    pub fn operator_stop(&mut self, node: usize, switchover: bool) -> Result<(), String> {
        if !self.may_crash(node) {
            // The rule is checked when the request is handled (a frozen
            // node handles it late): a backup whose primary died meanwhile
            // is the only holder of the state (simulator, seed 30007906).
            self.note(format!("operator: n{node} is not stopped (it may hold the only copy of the state now)"));
            return Ok(());
        }
        if switchover && self.nodes[node].rep.core().is_primary() {
            let answer = self.nodes[node].rep.request_switchover();
            self.note(format!("operator: switchover of n{node}: {answer:?}"));
        } else {
            self.note(format!("operator: SIGTERM n{node}"));
            self.nodes[node].rep.feed(understudy_core::Event::Stop);
        }
        self.after(node)
    }

    /// The process ends: everything in memory is gone. `fin`: the kernel
    /// closes its connections (kill -9, halt); otherwise silence (power cut).
    pub fn crash(&mut self, node: usize, fin: bool) {
        let me = (node, self.nodes[node].inc);
        let links: Vec<u64> =
            self.links.iter().filter(|(_, l)| l.open && (l.backup == me || l.primary == me)).map(|(id, _)| *id).collect();
        for link in links {
            if fin {
                self.close(link, node);
            } else {
                self.links.get_mut(&link).expect("exists").open = false;
            }
        }
        let n = &mut self.nodes[node];
        n.alive = false;
        n.parked = 0;
        n.outputs.clear();
        n.links.clear();
        n.readers.clear();
        n.executor = None;
        n.exec_scheduled = false;
        self.disk_down(node);
    }

    pub fn restart(&mut self, node: usize) -> Result<(), String> {
        if self.nodes[node].alive {
            return Ok(());
        }
        let (cfg, durable, clock) = (self.cfg.protocol.clone(), self.cfg.durable, self.clock.clone());
        let n = &mut self.nodes[node];
        n.inc += 1;
        (n.rep, n.fx) = crate::machine::replica(&n.name, n.inc, cfg, durable, clock);
        n.alive = true;
        n.outputs = VecDeque::new();
        n.stalled_until = 0;
        n.last_epoch = 0;
        n.primary_of = None;
        self.recover_disk(node)?;
        let n = &mut self.nodes[node];
        n.rep.start();
        let inc = n.inc;
        self.note(format!("n{node} starts (incarnation {inc})"));
        self.at(1, Action::Tick { node, inc });
        self.after(node)
    }

    pub fn next_op(&mut self) -> u64 {
        self.op_counter += 1;
        self.op_counter
    }
}
