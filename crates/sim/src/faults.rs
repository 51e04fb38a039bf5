//! Clients and the nemesis: crashes (kill -9 and power cuts), freezes
//! (SIGSTOP), one-way and two-way partitions, arbiter isolation and outages.

use std::collections::VecDeque;

use understudy_core::{Core, RoleName};

use crate::model::{OutKind, Output, Val};
use crate::world::{Action, World};

impl World {
    /// A client sends one request to a node that believes it is primary —
    /// stale ones included: that is the case the output rule is for.
    pub fn client(&mut self) -> Result<(), String> {
        let now = self.now;
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                let n = &self.nodes[i];
                n.alive && n.stalled_until <= now && n.core.is_primary() && n.core.intake_open()
            })
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        let node = candidates[self.rng.pick(candidates.len())];
        let epoch = self.nodes[node].core.epoch();
        if self.rng.chance(0.7) {
            let op = self.next_op();
            let seq = self.nodes[node].core.append();
            self.nodes[node].log.push(Val::Write(op));
            self.stream(node, seq, Val::Write(op));
            self.nodes[node].outputs.push_back(Output { tag: seq, epoch, kind: OutKind::Write { seq, op } });
        } else {
            let n = &mut self.nodes[node];
            let state_seq = n.core.status().last_seq;
            let tag = n.core.read_tag();
            n.outputs.push_back(Output { tag, epoch, kind: OutKind::Read { state_seq, arrival: now } });
            if n.core.barrier_needed() && n.core.stream_from().is_some() {
                let seq = n.core.append();
                n.log.push(Val::Barrier);
                self.stream(node, seq, Val::Barrier);
            }
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
        let v = &self.nodes[victim].core;
        // A live primary protected by `backup` (an in-sync backup of its epoch).
        let pair = |primary: usize, backup: usize| {
            let (p, b) = (&self.nodes[primary].core, &self.nodes[backup].core);
            let s = p.status();
            p.is_primary()
                && s.protected
                && s.peer.as_deref() == Some(self.nodes[backup].name.as_str())
                && b.role_name() == RoleName::Backup
                && b.epoch() == p.epoch()
        };
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

    pub fn nemesis(&mut self) -> Result<(), String> {
        let n = self.nodes.len();
        let victim = self.rng.pick(n);
        // (Planned stops are an extra kind, so runs without them keep the
        // random streams — and the regression seeds — they always had.)
        match self.rng.pick(if self.cfg.planned_stops { 7 } else { 6 }) {
            0 if self.may_crash(victim) => {
                let fin = self.rng.chance(0.5);
                self.note(format!("nemesis: {} n{victim}", if fin { "kill -9" } else { "power cut" }));
                self.crash(victim, fin);
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
                if self.rng.chance(0.5) && self.nodes[victim].core.is_primary() {
                    // `understudy switchover`: hand over, rejoin as backup.
                    let now = self.now;
                    let answer = self.nodes[victim].core.request_switchover(now);
                    self.note(format!("nemesis: switchover of n{victim}: {answer:?}"));
                } else {
                    self.note(format!("nemesis: SIGTERM n{victim}"));
                    self.feed(victim, understudy_core::Event::Stop)?;
                }
                return self.after(victim);
            }
            _ => {}
        }
        Ok(())
    }

    /// The process ends: everything in memory is gone. `fin`: the kernel
    /// closes its connections (kill -9, halt); otherwise silence (power cut).
    pub fn crash(&mut self, node: usize, fin: bool) {
        let conns: Vec<_> = self
            .conns
            .iter()
            .filter(|(_, c)| c.open && (c.backup == (node, self.nodes[node].inc) || c.primary == (node, self.nodes[node].inc)))
            .map(|(id, _)| *id)
            .collect();
        for conn in conns {
            if fin {
                self.close(conn, node);
            } else {
                self.conns.get_mut(&conn).expect("exists").open = false;
            }
        }
        let n = &mut self.nodes[node];
        n.alive = false;
        n.outputs.clear();
        n.pending_snapshot = None;
    }

    pub fn restart(&mut self, node: usize) {
        if self.nodes[node].alive {
            return;
        }
        let now = self.now;
        let cfg = self.cfg.protocol.clone();
        let n = &mut self.nodes[node];
        n.inc += 1;
        n.alive = true;
        n.core = Core::new(cfg, n.name.clone());
        n.prebuf.clear();
        n.log.clear();
        n.executed = 0;
        n.loaded = false;
        n.snapshot_seq = 0;
        n.outputs = VecDeque::new();
        n.stalled_until = 0;
        n.last_epoch = 0;
        n.core.start(now);
        let inc = n.inc;
        self.note(format!("n{node} starts (incarnation {inc})"));
        self.at(1, Action::Tick { node, inc });
        let _ = self.after(node);
    }

    pub fn next_op(&mut self) -> u64 {
        self.op_counter += 1;
        self.op_counter
    }
}
