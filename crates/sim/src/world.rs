//! The simulated cluster: nodes running the node runtime's real
//! [`Replica`](understudy_node::replica::Replica) (protocol core, command
//! handler, channels, joins, snapshot streaming, execution, output gate
//! watermark) over a seeded network, clock and arbiter (applying the
//! arbiter crate's real rules), with clients and a nemesis.

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::rc::Rc;

use understudy_arbiter::{ClusterRecord, NodeAddrs};
use understudy_core::{Command, Event, Millis};
use understudy_node::framed::FrameReader;

use crate::check::{Acked, Checker};
use crate::disk_state::{SimDisk, SnapStep};
use crate::machine::{Effects, SimReplica};
use crate::model::{OutKind, Output};
use crate::net::{Link, Msg, Net};
use crate::rng::Rng;
use crate::SimConfig;

/// Something that happens at a time.
#[derive(Debug, Clone)]
pub enum Action {
    Deliver {
        link: u64,
        to: usize,
        inc: u64,
        msg: Msg,
    },
    /// A join reaches the primary (handshake done).
    JoinArrives {
        link: u64,
    },
    JoinFails {
        node: usize,
        inc: u64,
        gen: u64,
        reason: String,
    },
    /// The joiner's snapshot connection reaches the primary.
    SnapshotAsked {
        link: u64,
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
    /// An operator's stop (SIGTERM) or switchover reaches the node.
    Stop {
        node: usize,
        inc: u64,
        switchover: bool,
    },
    Client,
    Nemesis,
    Restart {
        node: usize,
    },
    /// The node's disk thread fsyncs now and answers.
    DiskSync {
        node: usize,
        inc: u64,
    },
    /// The node's disk task writes the primary's open batch.
    DiskFlush {
        node: usize,
        inc: u64,
    },
    /// A step of a snapshot's write to the node's disk.
    DiskSnapshot {
        node: usize,
        inc: u64,
        id: u64,
        step: SnapStep,
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
    pub rep: SimReplica,
    pub fx: Rc<RefCell<Effects>>,
    /// Client replies held at the output gate, oldest first.
    pub outputs: VecDeque<Output>,
    /// SIGSTOP: actions for this node wait until then.
    pub stalled_until: Millis,
    pub last_epoch: u64,
    /// The epoch this node was last seen primary of (checked once per epoch).
    pub primary_of: Option<u64>,
    /// The runtime's connection ids → links.
    pub links: BTreeMap<u64, u64>,
    /// This side's frame reader of each link.
    pub readers: BTreeMap<u64, FrameReader>,
    /// The backup's executor: (join generation, channel), and whether an
    /// `Exec` is scheduled.
    pub executor: Option<(u64, u64)>,
    pub exec_scheduled: bool,
    /// Clients that reached this primary while its intake was closed: as a
    /// real node's connection tasks, they wait for `Io::intake_changed`.
    pub parked: u32,
    /// Its disk, in durable runs.
    pub disk: Option<SimDisk>,
}

impl Node {
    /// The writes the machine applied.
    pub fn ops(&self) -> &[u64] {
        &self.rep.machine().sm.ops
    }
}

pub struct World {
    pub cfg: SimConfig,
    pub now: Millis,
    pub clock: Rc<Cell<Millis>>,
    pub rng: Rng,
    queue: BinaryHeap<Reverse<(Millis, u64)>>,
    actions: BTreeMap<u64, Action>,
    next_id: u64,
    pub nodes: Vec<Node>,
    pub net: Net,
    pub links: BTreeMap<u64, Link>,
    pub next_link: u64,
    pub record: Option<ClusterRecord>,
    pub check: Checker,
    pub op_counter: u64,
    pub healed: bool,
    pub healed_at: Option<Millis>,
    /// Recent events, printed with a failure.
    pub trace: VecDeque<String>,
    pub steps: u64,
    /// Planned switchovers: handovers a backup received.
    pub handovers: u64,
    /// Whole-cluster power losses.
    pub power_losses: u64,
    /// Restarts that recovered state (seq > 0) from the node's disk.
    pub recoveries: u64,
    /// Disks that did not load, moved away by the operator.
    pub disk_wipes: u64,
    /// Claims of an epoch by a node that resumed from its disk.
    pub claims_from_disk: u64,
    /// Joins by partial catch-up.
    pub partial_joins: u64,
}

pub fn addrs(node: usize) -> NodeAddrs {
    NodeAddrs { node: format!("n{node}"), client: format!("n{node}:client"), repl: format!("n{node}") }
}

pub fn node_of(name: &str) -> usize {
    name.trim_start_matches('n').parse().expect("sim node names are n<i>")
}

impl World {
    pub fn new(seed: u64, cfg: SimConfig) -> World {
        let mut rng = Rng::new(seed);
        let net = Net { lossy: rng.chance(cfg.lossy_runs), ..Net::default() };
        let clock = Rc::new(Cell::new(0));
        let nodes = (0..cfg.nodes)
            .map(|i| {
                let name = format!("n{i}");
                let (rep, fx) = crate::machine::replica(&name, 0, cfg.protocol.clone(), cfg.durable, clock.clone());
                Node {
                    name,
                    inc: 0,
                    alive: false,
                    rep,
                    fx,
                    outputs: VecDeque::new(),
                    stalled_until: 0,
                    last_epoch: 0,
                    primary_of: None,
                    links: BTreeMap::new(),
                    readers: BTreeMap::new(),
                    executor: None,
                    exec_scheduled: false,
                    parked: 0,
                    disk: cfg.durable.then(SimDisk::default),
                }
            })
            .collect();
        let mut w = World {
            cfg,
            now: 0,
            clock,
            rng,
            queue: BinaryHeap::new(),
            actions: BTreeMap::new(),
            next_id: 0,
            nodes,
            net,
            links: BTreeMap::new(),
            next_link: 1,
            record: None,
            check: Checker::default(),
            op_counter: 0,
            healed: false,
            healed_at: None,
            trace: VecDeque::new(),
            steps: 0,
            handovers: 0,
            power_losses: 0,
            recoveries: 0,
            disk_wipes: 0,
            claims_from_disk: 0,
            partial_joins: 0,
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
            self.clock.set(t);
            let a = self.actions.remove(&id).expect("scheduled action");
            self.steps += 1;
            self.step(a)?;
        }
        self.now = until;
        self.clock.set(until);
        Ok(())
    }

    pub fn live(&self, node: usize, inc: u64) -> bool {
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

    /// The node an action is for, while it lives in the incarnation meant.
    fn target(&self, a: &Action) -> Option<(usize, u64)> {
        match a {
            Action::Deliver { to, inc, .. } => Some((*to, *inc)),
            Action::JoinArrives { link } | Action::SnapshotAsked { link } => self.links.get(link).map(|l| l.primary),
            Action::JoinFails { node, inc, .. }
            | Action::Reply { node, inc, .. }
            | Action::Exec { node, inc }
            | Action::DiskSync { node, inc }
            | Action::DiskFlush { node, inc }
            | Action::DiskSnapshot { node, inc, .. }
            | Action::Stop { node, inc, .. } => Some((*node, *inc)),
            _ => None,
        }
    }

    fn step(&mut self, a: Action) -> Result<(), String> {
        if let Some((node, inc)) = self.target(&a) {
            if !self.live(node, inc) || self.stalled(node, &a) {
                return Ok(());
            }
        }
        match a {
            Action::Deliver { link, to, msg, .. } => {
                self.deliver(link, to, msg);
                self.after(to)
            }
            Action::JoinArrives { link } => {
                let p = self.join_arrives(link);
                self.after(p)
            }
            Action::JoinFails { node, gen, reason, .. } => {
                self.join_fails(node, gen, reason);
                self.after(node)
            }
            Action::SnapshotAsked { link } => {
                let p = self.snapshot_asked(link);
                self.after(p)
            }
            Action::ArbiterCall { node, inc, cmd } => {
                self.arbiter_call(node, inc, cmd);
                Ok(())
            }
            Action::Reply { node, ev, .. } => {
                self.nodes[node].rep.feed(ev);
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
                self.nodes[node].rep.tick();
                self.after(node)
            }
            Action::Exec { node, .. } => {
                self.execute(node);
                self.after(node)
            }
            Action::Stop { node, switchover, .. } => self.operator_stop(node, switchover),
            Action::DiskSync { node, .. } => self.disk_sync(node),
            Action::DiskFlush { node, .. } => self.disk_flush(node),
            Action::DiskSnapshot { node, id, step, .. } => self.disk_snapshot(node, id, step),
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
            Action::Restart { node } => self.restart(node),
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

    /// After a node handled something: perform what its runtime asked of
    /// the world (writes, closes, arbiter calls, joins), release outputs,
    /// check what can be checked.
    pub fn after(&mut self, node: usize) -> Result<(), String> {
        loop {
            let fx = std::mem::take(&mut *self.nodes[node].fx.borrow_mut());
            // The disk first: what the step asked of it reached the disk
            // thread before anything else could happen to the process.
            self.perform_disk(node, fx.disk, fx.disk_wake)?;
            for line in fx.lines {
                if line == understudy_node::frames::HANDOVER_RECEIVED {
                    self.handovers += 1;
                }
                if line.contains("whose disk holds every write it acknowledged") {
                    self.claims_from_disk += 1;
                }
                self.note(format!("n{node}: {line}"));
            }
            if let Some(reason) = fx.refused {
                // Every simulated node is configured alike: nothing may make
                // one give up on its configuration.
                return Err(format!("n{node} refused to start: {reason}"));
            }
            if let Some(reason) = fx.halted {
                self.note(format!("n{node} halts: {reason}"));
                self.crash(node, true);
                let d = self.rng.range(100, 1500);
                self.at(d, Action::Restart { node });
                return Ok(());
            }
            let busy = !(fx.arbiter.is_empty() && fx.wake.is_empty() && fx.dropped.is_empty() && fx.connects.is_empty());
            let inc = self.nodes[node].inc;
            for cmd in fx.arbiter {
                let d = self.rng.range(1, 5);
                self.at(d, Action::ArbiterCall { node, inc, cmd });
            }
            for (repl, epoch, gen) in fx.connects {
                self.connect(node, node_of(&repl), epoch, gen);
            }
            for conn in fx.wake {
                self.write_out(node, conn);
            }
            for conn in fx.dropped {
                self.dropped(node, conn);
            }
            if fx.exec {
                self.schedule_exec(node);
            }
            if fx.intake_woken {
                self.nodes[node].parked = 0;
            }
            if !busy {
                break;
            }
        }
        let n = &mut self.nodes[node];
        let e = n.rep.core().epoch();
        if e < n.last_epoch {
            return Err(format!("node {node}'s epoch went backwards: {} -> {e}", n.last_epoch));
        }
        n.last_epoch = e;
        if n.rep.core().is_primary() && n.primary_of != Some(e) {
            n.primary_of = Some(e);
            self.note(format!("n{node} is primary of epoch {e}"));
            let ops = self.nodes[node].ops().to_vec();
            self.check.on_become_primary(node, e, &ops)?;
        }
        let n = &self.nodes[node];
        if n.parked > 0 && !n.rep.is_halted() && (!n.rep.core().is_primary() || n.rep.intake_open()) {
            // A real node's client tasks would wait forever: nothing woke them.
            return Err(format!(
                "n{node}: {} client(s) wait for an intake that is open (or a node no longer primary), and nothing woke them",
                n.parked
            ));
        }
        if self.nodes[node].rep.is_exiting() {
            // The stopped process ends (its connections closed after what
            // it wrote); an operator starts it again later, empty.
            self.note(format!("n{node} exits"));
            self.crash(node, true);
            let d = self.rng.range(200, 3000);
            self.at(d, Action::Restart { node });
            return Ok(());
        }
        self.release(node)
    }

    fn release(&mut self, node: usize) -> Result<(), String> {
        loop {
            let n = &self.nodes[node];
            let upto = n.rep.core().release_upto();
            let Some(o) = n.outputs.front().filter(|o| o.tag <= upto && n.rep.core().is_primary()).cloned() else {
                return Ok(());
            };
            self.nodes[node].outputs.pop_front();
            match o.kind {
                OutKind::Write { idx, op } => {
                    let later: Vec<(usize, Vec<u64>)> = (0..self.nodes.len())
                        .filter(|&x| {
                            let m = &self.nodes[x];
                            x != node && m.alive && m.rep.core().is_primary() && m.rep.core().epoch() > o.epoch
                        })
                        .map(|x| (x, self.nodes[x].ops().to_vec()))
                        .collect();
                    let later: Vec<(usize, &[u64])> = later.iter().map(|(x, l)| (*x, &l[..])).collect();
                    let a = Acked { idx, op, epoch: o.epoch, at: self.now };
                    self.check.on_write_released(a, node, &later)?;
                }
                OutKind::Read { state_len, arrival } => {
                    let ops = self.nodes[node].ops().to_vec();
                    self.check.on_read_released(node, o.epoch, state_len, arrival, &ops)?;
                }
            }
        }
    }
}
