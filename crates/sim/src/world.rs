//! The simulated cluster: nodes running the real [`Core`], a runtime that
//! performs its commands the way `understudy-node` does, a network, an
//! arbiter applying the real rules, clients, and a nemesis.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use understudy_arbiter::{ClusterRecord, NodeAddrs};
use understudy_core::{Command, ConnId, Core, Event, Millis, Seq};

use crate::check::{Acked, Checker};
use crate::model::{OutKind, Output, Val};
use crate::net::{Conn, Msg, Net};

use crate::rng::Rng;
use crate::SimConfig;

/// Something that happens at a time.
#[derive(Debug, Clone)]
pub enum Action {
    Deliver {
        conn: ConnId,
        to: usize,
        inc: u64,
        msg: Msg,
    },
    /// A join request reaches the primary (handshake done).
    JoinArrives {
        conn: ConnId,
        primary: usize,
        epoch: u64,
    },
    JoinFails {
        node: usize,
        inc: u64,
        reason: String,
    },
    /// An arbiter call reaches the arbiter; its answer goes back to (node, inc).
    ArbiterCall {
        node: usize,
        inc: u64,
        cmd: Command,
    },
    Reply {
        node: usize,
        inc: u64,
        ev: Event,
    },
    Tick {
        node: usize,
        inc: u64,
    },
    Exec {
        node: usize,
        inc: u64,
    },
    Client,
    Nemesis,
    Restart {
        node: usize,
    },
    Resume {
        node: usize,
    },
    HealCut {
        from: usize,
        to: usize,
    },
    HealArbiterCut {
        node: usize,
    },
    ArbiterUp,
}

pub struct Node {
    pub name: String,
    pub inc: u64,
    pub alive: bool,
    pub core: Core,
    /// Backup before its snapshot is loaded: entries after `snapshot_seq`.
    pub prebuf: Vec<Val>,
    /// The machine: applied (primary) or received (backup) values by seq.
    pub log: Vec<Val>,
    pub executed: Seq,
    pub loaded: bool,
    pub snapshot_seq: Seq,
    pub outputs: VecDeque<Output>,
    /// SIGSTOP: actions for this node wait until then.
    pub stalled_until: Millis,
    /// Primary: the snapshot taken for a joiner, by its connection.
    pub pending_snapshot: Option<(ConnId, Vec<Val>)>,
    pub last_epoch: u64,
}

pub struct World {
    pub cfg: SimConfig,
    pub now: Millis,
    pub rng: Rng,
    queue: BinaryHeap<Reverse<(Millis, u64)>>,
    actions: BTreeMap<u64, Action>,
    next_id: u64,
    pub nodes: Vec<Node>,
    pub net: Net,
    pub conns: BTreeMap<ConnId, Conn>,
    pub next_conn_counter: ConnId,
    pub record: Option<ClusterRecord>,
    pub check: Checker,
    pub op_counter: u64,
    pub healed: bool,
    /// Recent events, printed with a failure.
    pub trace: VecDeque<String>,
    pub steps: u64,
    /// Planned switchovers: handovers a stopping primary sent.
    pub handovers: u64,
}

pub fn addrs(node: usize) -> NodeAddrs {
    NodeAddrs { node: format!("n{node}"), client: format!("n{node}:client"), repl: format!("n{node}") }
}

fn node_of(name: &str) -> usize {
    name.trim_start_matches('n').parse().expect("sim node names are n<i>")
}

impl World {
    pub fn new(seed: u64, cfg: SimConfig) -> World {
        let mut rng = Rng::new(seed);
        let net = Net { lossy: rng.chance(cfg.lossy_runs), ..Net::default() };
        let nodes = (0..cfg.nodes)
            .map(|i| Node {
                name: format!("n{i}"),
                inc: 0,
                alive: false,
                core: Core::new(cfg.protocol.clone(), format!("n{i}")),
                prebuf: Vec::new(),
                log: Vec::new(),
                executed: 0,
                loaded: false,
                snapshot_seq: 0,
                outputs: VecDeque::new(),
                stalled_until: 0,
                pending_snapshot: None,
                last_epoch: 0,
            })
            .collect();
        let mut w = World {
            cfg,
            now: 0,
            rng,
            queue: BinaryHeap::new(),
            actions: BTreeMap::new(),
            next_id: 0,
            nodes,
            net,
            conns: BTreeMap::new(),
            next_conn_counter: 1,
            record: None,
            check: Checker::default(),
            op_counter: 0,
            healed: false,
            trace: VecDeque::new(),
            steps: 0,
            handovers: 0,
        };
        for i in 0..w.nodes.len() {
            let at = w.rng.range(0, 300);
            w.at(at, Action::Restart { node: i });
        }
        w.at(50, Action::Client);
        w.at(500, Action::Nemesis);
        w
    }

    pub fn note(&mut self, s: String) {
        if self.trace.len() >= 400 {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("{:>7} ms  {s}", self.now));
    }

    pub fn at(&mut self, delay: Millis, a: Action) {
        let id = self.next_id;
        self.next_id += 1;
        self.actions.insert(id, a);
        self.queue.push(Reverse((self.now + delay, id)));
    }

    /// Runs until `until`; Err on the first violated invariant.
    pub fn run_until(&mut self, until: Millis) -> Result<(), String> {
        while let Some(Reverse((t, id))) = self.queue.peek().copied() {
            if t > until {
                break;
            }
            self.queue.pop();
            self.now = t;
            let a = self.actions.remove(&id).expect("scheduled action");
            self.steps += 1;
            self.step(a)?;
        }
        self.now = until;
        Ok(())
    }

    fn live(&self, node: usize, inc: u64) -> bool {
        let n = &self.nodes[node];
        n.alive && n.inc == inc
    }

    /// Defers an action for a stalled node until it resumes.
    fn stalled(&mut self, node: usize, a: &Action) -> bool {
        let until = self.nodes[node].stalled_until;
        if until > self.now {
            let delay = until - self.now;
            self.at(delay, a.clone());
            return true;
        }
        false
    }

    fn step(&mut self, a: Action) -> Result<(), String> {
        match a {
            Action::Deliver { conn, to, inc, ref msg } => {
                if !self.live(to, inc) || self.stalled(to, &a) {
                    return Ok(());
                }
                self.deliver(conn, to, msg.clone())?;
                self.after(to)
            }
            Action::JoinArrives { conn, primary, epoch } => {
                let inc = self.conns[&conn].primary.1;
                if !self.live(primary, inc) || self.stalled(primary, &a) {
                    return Ok(());
                }
                let backup = self.conns[&conn].backup.0;
                self.feed(primary, Event::JoinRequest { conn, node: format!("n{backup}"), epoch })?;
                self.after(primary)
            }
            Action::JoinFails { node, inc, ref reason } => {
                if !self.live(node, inc) || self.stalled(node, &a) {
                    return Ok(());
                }
                let reason = reason.clone();
                self.feed(node, Event::JoinFailed { reason, code: None, peer_epoch: None })?;
                self.after(node)
            }
            Action::ArbiterCall { node, inc, ref cmd } => {
                let cmd = cmd.clone();
                self.arbiter_call(node, inc, cmd);
                Ok(())
            }
            Action::Reply { node, inc, ref ev } => {
                if !self.live(node, inc) || self.stalled(node, &a) {
                    return Ok(());
                }
                let ev = ev.clone();
                self.feed(node, ev)?;
                self.after(node)
            }
            Action::Tick { node, inc } => {
                if !self.live(node, inc) {
                    return Ok(());
                }
                let tick = (self.cfg.protocol.heartbeat_ms / 5).max(1);
                self.at(tick, Action::Tick { node, inc });
                if self.nodes[node].stalled_until > self.now {
                    return Ok(());
                }
                let now = self.now;
                self.nodes[node].core.poll(now);
                self.after(node)
            }
            Action::Exec { node, inc } => {
                if !self.live(node, inc) || self.stalled(node, &a) {
                    return Ok(());
                }
                self.execute(node);
                self.after(node)
            }
            Action::Client => {
                let gap = self.rng.range(1, 8);
                self.at(gap, Action::Client);
                self.client()
            }
            Action::Nemesis => {
                if !self.healed {
                    let gap = self.rng.range(200, 1500);
                    self.at(gap, Action::Nemesis);
                    return self.nemesis();
                }
                Ok(())
            }
            Action::Restart { node } => {
                self.restart(node);
                Ok(())
            }
            Action::Resume { .. } => Ok(()),
            Action::HealCut { from, to } => {
                if self.net.cut.get(&(from, to)).is_some_and(|h| *h <= self.now) {
                    self.net.cut.remove(&(from, to));
                }
                Ok(())
            }
            Action::HealArbiterCut { node } => {
                self.net.arbiter_cut.remove(&node);
                Ok(())
            }
            Action::ArbiterUp => {
                self.net.arbiter_down = false;
                Ok(())
            }
        }
    }

    pub fn feed(&mut self, node: usize, ev: Event) -> Result<(), String> {
        let now = self.now;
        self.nodes[node].core.handle(now, ev);
        Ok(())
    }

    /// After a node handled something: perform its commands, release
    /// outputs, check what can be checked.
    pub fn after(&mut self, node: usize) -> Result<(), String> {
        loop {
            let cmds = self.nodes[node].core.take_commands();
            if cmds.is_empty() {
                break;
            }
            for c in cmds {
                self.command(node, c)?;
            }
        }
        let n = &mut self.nodes[node];
        let e = n.core.epoch();
        if e < n.last_epoch {
            return Err(format!("node {node}'s epoch went backwards: {} -> {e}", n.last_epoch));
        }
        n.last_epoch = e;
        self.release(node)
    }

    fn release(&mut self, node: usize) -> Result<(), String> {
        loop {
            let n = &self.nodes[node];
            let upto = n.core.release_upto();
            let Some(o) = n.outputs.front().filter(|o| o.tag <= upto && n.core.is_primary()).cloned() else {
                return Ok(());
            };
            self.nodes[node].outputs.pop_front();
            match o.kind {
                OutKind::Write { seq, op } => {
                    let later: Vec<(usize, Vec<Val>)> = (0..self.nodes.len())
                        .filter(|&x| {
                            let m = &self.nodes[x];
                            x != node && m.alive && m.core.is_primary() && m.core.epoch() > o.epoch
                        })
                        .map(|x| (x, self.nodes[x].log.clone()))
                        .collect();
                    let later: Vec<(usize, &[Val])> = later.iter().map(|(x, l)| (*x, &l[..])).collect();
                    let a = Acked { seq, op, epoch: o.epoch, at: self.now };
                    self.check.on_write_released(a, node, &later)?;
                }
                OutKind::Read { state_seq, arrival } => {
                    let log = self.nodes[node].log.clone();
                    self.check.on_read_released(node, o.epoch, state_seq, arrival, &log)?;
                }
            }
        }
    }

    fn command(&mut self, node: usize, c: Command) -> Result<(), String> {
        let inc = self.nodes[node].inc;
        match c {
            Command::ReadArbiter | Command::Claim { .. } | Command::AddMember { .. } | Command::Publish { .. } => {
                let d = self.rng.range(1, 5);
                self.at(d, Action::ArbiterCall { node, inc, cmd: c });
            }
            Command::Connect { repl, epoch } => self.connect(node, node_of(&repl), epoch),
            Command::AcceptJoin { conn, snapshot_seq } => {
                let snap = self.nodes[node].log[..snapshot_seq as usize].to_vec();
                self.nodes[node].pending_snapshot = Some((conn, snap.clone()));
                let epoch = self.nodes[node].core.epoch();
                self.send(conn, node, Msg::JoinAccepted { epoch, seq: snapshot_seq });
                // The joiner's snapshot connection, then the transfer time.
                self.send(conn, node, Msg::Snapshot { seq: snapshot_seq, log: snap });
            }
            Command::Reject { conn, code, .. } => {
                self.send(conn, node, Msg::Reject { code });
                self.close(conn, node);
            }
            Command::Close { conn, .. } => self.close(conn, node),
            Command::SendHeartbeat { conn, last_seq } => {
                let epoch = self.nodes[node].core.epoch();
                self.send(conn, node, Msg::Heartbeat { epoch, last_seq });
            }
            Command::SendAck { conn, ack } => {
                let epoch = self.nodes[node].core.epoch();
                self.send(conn, node, Msg::Ack { epoch, ack });
            }
            Command::SendInSync { conn } => {
                let epoch = self.nodes[node].core.epoch();
                self.send(conn, node, Msg::InSync { epoch });
            }
            Command::Release { .. } => {
                let n = &mut self.nodes[node];
                if n.core.barrier_needed() && n.core.stream_from().is_none() {
                    n.core.append();
                    n.log.push(Val::Barrier);
                }
            }
            Command::BecomePrimary { epoch, from_backup } => {
                self.note(format!("n{node} becomes primary of epoch {epoch} (from backup: {from_backup})"));
                let n = &mut self.nodes[node];
                n.pending_snapshot = None;
                let log = n.log.clone();
                self.check.on_become_primary(node, epoch, &log)?;
            }
            Command::ResetMachine => {
                let n = &mut self.nodes[node];
                n.log.clear();
                n.prebuf.clear();
                n.executed = 0;
                n.loaded = false;
            }
            // Every simulated node is configured alike: nothing may make
            // one give up on its configuration.
            Command::Refuse { reason } => return Err(format!("n{node} refused to start: {reason}")),
            Command::SendHandover { conn } => {
                self.handovers += 1;
                let epoch = self.nodes[node].core.epoch();
                self.send(conn, node, Msg::Handover { epoch });
            }
            // The stopped process ends (its connections closed after what
            // it sent); an operator starts it again later, empty.
            Command::Exit { reason } => {
                self.note(format!("n{node} stops: {reason}"));
                self.crash(node, true);
                let d = self.rng.range(200, 3000);
                self.at(d, Action::Restart { node });
            }
            Command::Notice { message } => self.note(format!("n{node}: {message}")),
            Command::Halt { reason } => {
                self.note(format!("n{node} halts: {reason}"));
                self.crash(node, true);
                let d = self.rng.range(100, 1500);
                self.at(d, Action::Restart { node });
            }
        }
        Ok(())
    }
}
