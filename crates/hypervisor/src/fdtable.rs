//! The guest's file descriptors, as virtual state of the gate. It changes
//! only through host calls and their recorded results, so it is identical in
//! record and replay mode; in record mode the world maps connection ids to
//! real sockets, and on every replica the filesystem (`fs`) maps file and
//! directory ids to its own copies. Fd numbers are allocated lowest-free,
//! so replay sees the same numbers.
//!
//! Layout at start: 0–2 stdio, 3 the listening socket (when the guest has
//! one), then the mapped directories in flag order.

use understudy_wire::codec::{put_varint, Reader};
use understudy_wire::WireError;

use crate::abi::{rights_of, RIGHTS_ALL};

/// The listening socket's descriptor, when the guest has one.
pub const LISTENER_FD: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdKind {
    Stdin,
    Stdout,
    Stderr,
    Listener,
    /// An accepted connection. `id` is its deterministic connection number.
    Conn {
        id: u64,
        read_shut: bool,
        write_shut: bool,
        reset: bool,
    },
    /// An open file of a mapped directory (`fs` object `id`).
    File {
        id: u64,
    },
    /// A directory: a mapped one (`preopen`) or one opened below it.
    Dir {
        id: u64,
        preopen: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fd {
    pub kind: FdKind,
    pub nonblock: bool,
    /// Writes go to the end of the file (`FDFLAGS_APPEND`).
    pub append: bool,
    /// Other fdflags the guest set (DSYNC, RSYNC, SYNC), reported back.
    pub sync_flags: u16,
    /// What the descriptor may do, and what descriptors opened through it may.
    pub rights: u64,
    pub inheriting: u64,
}

impl Fd {
    pub fn new(kind: FdKind) -> Fd {
        Fd { kind, nonblock: false, append: false, sync_flags: 0, rights: RIGHTS_ALL, inheriting: RIGHTS_ALL }
    }
}

#[derive(Debug)]
pub struct FdTable {
    fds: Vec<Option<Fd>>,
    next_conn: u64,
}

impl Default for FdTable {
    fn default() -> Self {
        FdTable::new(true, 0)
    }
}

impl FdTable {
    /// Stdio, the listener at fd 3 if there is one, then `preopens` mapped
    /// directories (filesystem objects 0, 1, …).
    pub fn new(listener: bool, preopens: usize) -> FdTable {
        let mut fds = vec![Some(Fd::new(FdKind::Stdin)), Some(Fd::new(FdKind::Stdout)), Some(Fd::new(FdKind::Stderr))];
        if listener {
            fds.push(Some(Fd::new(FdKind::Listener)));
        }
        for id in 0..preopens as u64 {
            let rights = rights_of(true, true, false);
            fds.push(Some(Fd { rights, ..Fd::new(FdKind::Dir { id, preopen: true }) }));
        }
        FdTable { fds, next_conn: 1 }
    }

    /// Opens `fd` at the lowest free number.
    pub fn insert(&mut self, fd: Fd) -> u32 {
        let slot = match self.fds.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.fds.push(None);
                self.fds.len() - 1
            }
        };
        self.fds[slot] = Some(fd);
        slot as u32
    }

    /// `fd_renumber`: `from` takes the place of `to` (which is closed and
    /// returned); `from` is free afterwards.
    pub fn renumber(&mut self, from: u32, to: u32) -> Result<Option<Fd>, ()> {
        if self.get(from).is_none() || self.get(to).is_none() {
            return Err(());
        }
        if from == to {
            return Ok(None);
        }
        let f = self.fds[from as usize].take();
        Ok(std::mem::replace(&mut self.fds[to as usize], f))
    }

    pub fn get(&self, fd: u32) -> Option<Fd> {
        self.fds.get(fd as usize).copied().flatten()
    }

    pub fn get_mut(&mut self, fd: u32) -> Option<&mut Fd> {
        self.fds.get_mut(fd as usize).and_then(Option::as_mut)
    }

    /// Id the next accepted connection will get.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn
    }

    /// Allocates the lowest free fd for a newly accepted connection.
    pub fn accept(&mut self, nonblock: bool) -> (u32, u64) {
        let id = self.next_conn;
        self.next_conn += 1;
        let fd = Fd { nonblock, ..Fd::new(FdKind::Conn { id, read_shut: false, write_shut: false, reset: false }) };
        (self.insert(fd), id)
    }

    pub fn close(&mut self, fd: u32) -> Option<Fd> {
        self.fds.get_mut(fd as usize).and_then(Option::take)
    }

    /// Appends the table (for a snapshot).
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_varint(out, self.next_conn);
        put_varint(out, self.fds.len() as u64);
        for f in &self.fds {
            let Some(f) = f else {
                out.push(0);
                continue;
            };
            let (kind, id, flags) = match f.kind {
                FdKind::Stdin => (1, 0, 0),
                FdKind::Stdout => (2, 0, 0),
                FdKind::Stderr => (3, 0, 0),
                FdKind::Listener => (4, 0, 0),
                FdKind::Conn { id, read_shut, write_shut, reset } => {
                    (5, id, u8::from(read_shut) | u8::from(write_shut) << 1 | u8::from(reset) << 2)
                }
                FdKind::File { id } => (6, id, 0),
                FdKind::Dir { id, preopen } => (7, id, u8::from(preopen)),
            };
            out.push(kind);
            out.push(u8::from(f.nonblock) | flags << 1 | u8::from(f.append) << 4);
            if kind >= 5 {
                put_varint(out, id);
            }
            put_varint(out, u64::from(f.sync_flags));
            put_varint(out, f.rights);
            put_varint(out, f.inheriting);
        }
    }

    /// Reads what [`FdTable::encode`] wrote.
    pub fn decode(r: &mut Reader<'_>) -> Result<FdTable, WireError> {
        let bad = |detail: String| WireError::Malformed { what: "fd table", detail };
        let next_conn = r.varint()?;
        let n = r.varint()?;
        if n > 1 << 20 {
            return Err(bad(format!("{n} descriptors")));
        }
        let mut fds = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let kind = r.u8()?;
            if kind == 0 {
                fds.push(None);
                continue;
            }
            let flags = r.u8()?;
            let id = if kind >= 5 { r.varint()? } else { 0 };
            let kind = match kind {
                1 => FdKind::Stdin,
                2 => FdKind::Stdout,
                3 => FdKind::Stderr,
                4 => FdKind::Listener,
                5 => {
                    if id >= next_conn {
                        return Err(bad(format!("connection {id} not below the next id {next_conn}")));
                    }
                    FdKind::Conn { id, read_shut: flags & 2 != 0, write_shut: flags & 4 != 0, reset: flags & 8 != 0 }
                }
                6 => FdKind::File { id },
                7 => FdKind::Dir { id, preopen: flags & 2 != 0 },
                k => return Err(bad(format!("descriptor kind {k}"))),
            };
            let sync_flags = u16::try_from(r.varint()?).map_err(|_| bad("fdflags out of range".into()))?;
            let (rights, inheriting) = (r.varint()?, r.varint()?);
            fds.push(Some(Fd { kind, nonblock: flags & 1 != 0, append: flags & 16 != 0, sync_flags, rights, inheriting }));
        }
        Ok(FdTable { fds, next_conn })
    }

    /// Go-live: connections of the old primary no longer exist.
    pub fn reset_all_conns(&mut self) -> usize {
        let mut n = 0;
        for f in self.fds.iter_mut().flatten() {
            if let FdKind::Conn { reset, .. } = &mut f.kind {
                *reset = true;
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_fd_is_reused_and_ids_are_not() {
        let mut t = FdTable::default();
        assert_eq!(t.accept(false), (4, 1));
        assert_eq!(t.accept(true), (5, 2));
        assert!(t.close(4).is_some());
        assert_eq!(t.accept(false), (4, 3));
        assert_eq!(t.reset_all_conns(), 2);
        assert!(matches!(t.get(5).unwrap().kind, FdKind::Conn { reset: true, .. }));
        assert!(t.close(9).is_none());
    }

    #[test]
    fn listener_and_preopens_come_first_in_that_order() {
        let mut t = FdTable::new(true, 2);
        assert_eq!(t.get(3).unwrap().kind, FdKind::Listener);
        assert_eq!(t.get(4).unwrap().kind, FdKind::Dir { id: 0, preopen: true });
        assert_eq!(t.get(5).unwrap().kind, FdKind::Dir { id: 1, preopen: true });
        assert_eq!(t.insert(Fd::new(FdKind::File { id: 9 })), 6);
        let t2 = FdTable::new(false, 1);
        assert_eq!(t2.get(3).unwrap().kind, FdKind::Dir { id: 0, preopen: true });
        assert_eq!(t.renumber(6, 4).unwrap().map(|f| f.kind), Some(FdKind::Dir { id: 0, preopen: true }));
        assert_eq!(t.get(4).unwrap().kind, FdKind::File { id: 9 });
        assert!(t.get(6).is_none() && t.renumber(6, 4).is_err());
    }

    #[test]
    fn the_table_survives_encoding() {
        let mut t = FdTable::new(true, 1);
        t.insert(Fd { append: true, sync_flags: 2, rights: 7, inheriting: 3, ..Fd::new(FdKind::File { id: 4 }) });
        t.accept(false);
        t.accept(true);
        t.close(4);
        if let Some(f) = t.get_mut(5) {
            f.kind = FdKind::Conn { id: 2, read_shut: true, write_shut: false, reset: true };
        }
        let mut b = Vec::new();
        t.encode(&mut b);
        let mut back = FdTable::decode(&mut Reader::new(&b, "t")).unwrap();
        assert_eq!((back.fds.clone(), back.next_conn), (t.fds.clone(), t.next_conn));
        assert_eq!(back.accept(false), t.accept(false));
    }
}
