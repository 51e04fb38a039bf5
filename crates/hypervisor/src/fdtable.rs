//! The guest's file descriptors, as virtual state of the gate. It changes
//! only through host calls and their recorded results, so it is identical in
//! record and replay mode; in record mode the world maps connection ids to
//! real sockets. Fd numbers are allocated lowest-free, so replay sees the
//! same numbers.

/// Preopened descriptors: 0–2 stdio, 3 the listening socket.
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fd {
    pub kind: FdKind,
    pub nonblock: bool,
}

#[derive(Debug)]
pub struct FdTable {
    fds: Vec<Option<Fd>>,
    next_conn: u64,
}

impl Default for FdTable {
    fn default() -> Self {
        let fd = |kind| Some(Fd { kind, nonblock: false });
        FdTable { fds: vec![fd(FdKind::Stdin), fd(FdKind::Stdout), fd(FdKind::Stderr), fd(FdKind::Listener)], next_conn: 1 }
    }
}

impl FdTable {
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
        let fd = Fd { kind: FdKind::Conn { id, read_shut: false, write_shut: false, reset: false }, nonblock };
        let slot = match self.fds.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.fds.push(None);
                self.fds.len() - 1
            }
        };
        self.fds[slot] = Some(fd);
        (slot as u32, id)
    }

    pub fn close(&mut self, fd: u32) -> Option<Fd> {
        self.fds.get_mut(fd as usize).and_then(Option::take)
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
}
