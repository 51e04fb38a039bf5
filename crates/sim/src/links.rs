//! The simulated runtime's I/O: the bytes of the logging channels, joins
//! and snapshot transfers on the simulated network, and the backup's
//! executor — what `understudy-node`'s tokio tasks do with sockets and
//! threads, calling the same `Replica` methods.

use understudy_core::SnapshotError;
use understudy_node::framed::{ChanError, FrameReader};
use understudy_node::machine::App;
use understudy_node::snapshot::{join_answer, JoinRefused, LoadStep, SnapshotLoad};
use understudy_node::transfer::ExecStep;

use crate::machine::LogSm;
use crate::net::{Link, Msg};
use crate::world::{Action, World};

impl World {
    /// `Io::connect`: node `node` opens a logging channel to `primary`.
    pub fn connect(&mut self, node: usize, primary: usize, epoch: u64, gen: u64) {
        let id = self.next_link;
        self.next_link += 1;
        let (inc, pinc) = (self.nodes[node].inc, self.nodes[primary].inc);
        self.links.insert(
            id,
            Link {
                backup: (node, inc),
                primary: (primary, pinc),
                gen,
                epoch,
                backup_conn: None,
                primary_conn: None,
                snapshot_seq: 0,
                last_at: [0, 0],
                open: true,
                joined: false,
            },
        );
        let up = self.nodes[primary].alive && primary != node;
        if up && self.net.reachable(node, primary) && self.net.reachable(primary, node) {
            let d = self.rng.range(1, 5);
            self.at(d, Action::JoinArrives { link: id });
        } else {
            self.links.get_mut(&id).expect("inserted").open = false;
            let d = self.rng.range(100, 2000);
            self.at(d, Action::JoinFails { node, inc, gen, reason: "connect failed".into() });
        }
    }

    /// The join reaches the primary: its runtime registers the joiner.
    pub fn join_arrives(&mut self, link: u64) -> usize {
        let l = self.links[&link].clone();
        let p = l.primary.0;
        if !l.open {
            return p; // the joiner is gone: the connection was reset
        }
        let name = self.nodes[l.backup.0].name.clone();
        let client = self.nodes[l.backup.0].rep.opts().advertise_client.clone();
        // What the joiner's hello says (`listen::my_hello`).
        let resume = self.nodes[l.backup.0].rep.resume_point();
        let conn = self.nodes[p].rep.joiner_arrived(name, l.backup.1, client, l.epoch, resume);
        self.links.get_mut(&link).expect("exists").primary_conn = Some(conn);
        self.nodes[p].links.insert(conn, link);
        p
    }

    pub fn join_fails(&mut self, node: usize, gen: u64, reason: String) {
        if self.nodes[node].rep.join_gen() == gen {
            let error = ChanError::Protocol(reason);
            self.nodes[node].rep.join_failed("(simulated)", JoinRefused::from(error));
        }
    }

    /// The joiner's snapshot connection reaches the primary: the snapshot
    /// taken for it travels whole (its own connection, so the misbehaving
    /// transport does not touch it), as the real stream's frames.
    pub fn snapshot_asked(&mut self, link: u64) -> usize {
        let l = self.links[&link].clone();
        let p = l.primary.0;
        let reachable = self.net.reachable(l.backup.0, p) && self.net.reachable(p, l.backup.0);
        let name = self.nodes[l.backup.0].name.clone();
        let pending = if reachable { self.nodes[p].rep.take_snapshot_stream(&name, l.backup.1) } else { None };
        let msg = match pending {
            Some(mut stream) => {
                let mut bytes = Vec::new();
                while let Some(f) = stream.next_frame() {
                    bytes.extend_from_slice(&f);
                }
                self.nodes[p].rep.snapshot_sent(bytes.len() as u64);
                Msg::Snapshot(bytes)
            }
            None if reachable => Msg::SnapshotRefused("no snapshot is waiting for this node".into()),
            None => Msg::SnapshotRefused("the primary cannot be reached".into()),
        };
        let size = match &msg {
            Msg::Snapshot(b) => b.len() as u64 / 16_000,
            _ => 0,
        };
        let d = self.rng.range(1, 3) + size;
        let (to, inc) = l.backup;
        self.at(d, Action::Deliver { link, to, inc, msg });
        p
    }

    /// Sends on a link from `from` to the other side.
    pub fn send(&mut self, link: u64, from: usize, msg: Msg) {
        let Some(l) = self.links.get(&link) else { return };
        if !l.open && !matches!(msg, Msg::Closed) {
            return;
        }
        let ((to, inc), dir) = l.other(from);
        let start = self.net.open_at(from, to, self.now);
        let mut at = start + self.rng.range(1, 3);
        let lossy = self.net.lossy;
        let reorder = lossy && self.rng.chance(0.01);
        if !reorder {
            let l = self.links.get_mut(&link).expect("exists");
            at = at.max(l.last_at[dir]);
            l.last_at[dir] = at;
        }
        let dup = lossy && matches!(msg, Msg::Bytes(_)) && self.rng.chance(0.01);
        let a = Action::Deliver { link, to, inc, msg };
        if dup {
            self.at(at - self.now + 1, a.clone());
        }
        self.at(at - self.now, a);
    }

    /// A writer's turn: the runtime's send buffer of `conn` goes on the wire.
    pub fn write_out(&mut self, node: usize, conn: u64) {
        let Some(&link) = self.nodes[node].links.get(&conn) else { return };
        let Some((bytes, closing)) = self.nodes[node].rep.take_out(conn, Vec::new()) else { return };
        if !bytes.is_empty() {
            self.send(link, node, Msg::Bytes(bytes));
        }
        if closing {
            self.nodes[node].rep.drop_conn(conn);
        }
    }

    /// The runtime forgot `conn`: its socket closes.
    pub fn dropped(&mut self, node: usize, conn: u64) {
        if let Some(link) = self.nodes[node].links.remove(&conn) {
            self.nodes[node].readers.remove(&link);
            self.close(link, node);
        }
    }

    pub fn close(&mut self, link: u64, by: usize) {
        if self.links.get(&link).is_some_and(|l| l.open) {
            self.send(link, by, Msg::Closed);
            self.links.get_mut(&link).expect("exists").open = false;
        }
    }

    /// Something arrives at node `to` on `link`.
    pub fn deliver(&mut self, link: u64, to: usize, msg: Msg) {
        let Some(l) = self.links.get(&link).cloned() else { return };
        let conn = l.conn_of(to).filter(|c| self.nodes[to].links.get(c) == Some(&link));
        let max = self.nodes[to].rep.opts().frame_bytes_max;
        match (msg, conn) {
            (Msg::Bytes(b), Some(conn)) => {
                let n = &mut self.nodes[to];
                let reader = n.readers.entry(link).or_insert_with(|| FrameReader::new(max));
                reader.push(&b);
                let result =
                    if to == l.primary.0 { n.rep.on_backup_frames(conn, reader) } else { n.rep.on_primary_frames(conn, reader) };
                if let Err(why) = result {
                    n.rep.channel_broken(conn, why);
                }
            }
            (Msg::Bytes(b), None) if to == l.backup.0 && !l.joined => self.join_answered(link, b, max),
            (Msg::Closed, Some(conn)) => self.nodes[to].rep.channel_broken(conn, "closed by the peer".into()),
            (Msg::Closed, None) if to == l.backup.0 && !l.joined => {
                self.links.get_mut(&link).expect("exists").joined = true; // answered
                let gen = l.gen;
                self.join_fails(to, gen, ChanError::Eof.to_string());
            }
            (Msg::Snapshot(b), _) => self.load_snapshot(link, b, max),
            (Msg::SnapshotRefused(why), _) => {
                if let Some(conn) = l.backup_conn {
                    self.nodes[to].rep.snapshot_failed(l.gen, conn, why);
                }
            }
            _ => {}
        }
    }

    /// The first bytes on a join's link: the primary's answer.
    fn join_answered(&mut self, link: u64, bytes: Vec<u8>, max: u64) {
        let l = self.links[&link].clone();
        let (to, primary) = (l.backup.0, l.primary);
        let mut reader = FrameReader::new(max);
        reader.push(&bytes);
        let answer = match reader.next_frame() {
            Ok(Some((h, p))) => join_answer(h, p).map(|answer| (answer, h.epoch)),
            Ok(None) => return,
            Err(e) => Err(JoinRefused::from(ChanError::from(e))),
        };
        self.links.get_mut(&link).expect("exists").joined = true;
        let ((snapshot_seq, partial), epoch) = match answer {
            Ok(x) => x,
            Err(refused) => {
                if self.nodes[to].rep.join_gen() == l.gen {
                    self.nodes[to].rep.join_failed("(simulated)", refused);
                }
                return self.close(link, to);
            }
        };
        let pname = self.nodes[primary.0].name.clone();
        let Some(conn) = self.nodes[to].rep.joined(l.gen, pname, primary.1, epoch, snapshot_seq, partial) else {
            return self.close(link, to);
        };
        let how = if partial { "partial catch-up from" } else { "snapshot at" };
        self.partial_joins += u64::from(partial);
        self.note(format!("n{to} joins n{} (link {link}, {how} seq {snapshot_seq}, epoch {epoch})", primary.0));
        let lk = self.links.get_mut(&link).expect("exists");
        lk.backup_conn = Some(conn);
        lk.snapshot_seq = snapshot_seq;
        let n = &mut self.nodes[to];
        n.links.insert(conn, link);
        n.executor = Some((l.gen, conn));
        // The joiner opens its snapshot connection after reading the answer
        // (none for a partial catch-up).
        if !partial {
            let d = self.rng.range(1, 5);
            self.at(d, Action::SnapshotAsked { link });
        }
        // Frames after the answer, in the same write.
        let n = &mut self.nodes[to];
        if let Err(why) = n.rep.on_primary_frames(conn, &mut reader) {
            n.rep.channel_broken(conn, why);
        }
        self.nodes[to].readers.insert(link, reader);
    }

    /// The snapshot stream arrives: checked and restored into a fresh
    /// machine, which the runtime installs.
    fn load_snapshot(&mut self, link: u64, bytes: Vec<u8>, max: u64) {
        let l = self.links[&link].clone();
        let (to, Some(conn)) = (l.backup.0, l.backup_conn) else { return };
        let mut load = SnapshotLoad::new(l.snapshot_seq);
        let mut machine = App::new(LogSm::default());
        let mut reader = FrameReader::new(max);
        reader.push(&bytes);
        let result = loop {
            let (h, p) = match reader.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break Err("the snapshot stream ended early".to_string()),
                Err(e) => break Err(e.to_string()),
            };
            match load.on_frame(h, p) {
                Ok(LoadStep::Began) => {}
                Ok(LoadStep::Chunk(data)) => {
                    if let Err(SnapshotError(e)) = understudy_node::machine::Machine::restore_chunk(&mut machine, data) {
                        break Err(e);
                    }
                }
                Ok(LoadStep::End) => {
                    break understudy_node::machine::Machine::restore_finish(&mut machine).map_err(|e| e.0);
                }
                Err(e) => break Err(e.to_string()),
            }
        };
        match result {
            Ok(()) => {
                self.note(format!("n{to} loaded the snapshot at seq {} ({} bytes)", l.snapshot_seq, load.bytes));
                self.nodes[to].rep.install_snapshot(l.gen, machine, l.snapshot_seq, load.bytes);
            }
            Err(why) => self.nodes[to].rep.snapshot_failed(l.gen, conn, why),
        }
    }

    pub fn schedule_exec(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        if n.executor.is_none() || n.exec_scheduled {
            return;
        }
        n.exec_scheduled = true;
        let inc = n.inc;
        let d = self.rng.range(0, self.cfg.exec_delay_ms);
        self.at(d, Action::Exec { node, inc });
    }

    /// The backup's executor runs one slice (of a random size: a slow
    /// backup lags).
    pub fn execute(&mut self, node: usize) {
        self.nodes[node].exec_scheduled = false;
        let Some((gen, conn)) = self.nodes[node].executor else { return };
        let budget = self.rng.range(1, 64) as usize;
        match self.nodes[node].rep.execute_slice(gen, conn, budget) {
            ExecStep::Done => self.nodes[node].executor = None,
            ExecStep::More => self.schedule_exec(node),
            ExecStep::Idle => {}
        }
    }
}
