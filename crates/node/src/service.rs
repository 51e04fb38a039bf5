//! The application level as a library: a [`FrontEnd`] turns a client's
//! bytes into requests for a [`StateMachine`], and [`crate::Node`] runs the
//! pair with the output gate, joins, metrics and failover. The key-value
//! service is one such pair (`crate::redis`); `examples/` has two more and
//! docs/API.md explains the contract.
//!
//! Per connection the runtime calls [`FrontEnd::decode`] on the bytes it
//! has received, as long as it returns a request. What happens next depends
//! on the request's [`Access`]:
//!
//! | access | on the primary | on any other node |
//! | --- | --- | --- |
//! | `Write` | `op` is logged and applied ([`StateMachine::apply`]); the reply waits for the backup's ack of it | [`FrontEnd::redirect`] |
//! | `Read` | [`StateMachine::read`] answers `op`; the reply waits for acks of every write before it | [`FrontEnd::redirect`] |
//! | `Local` | the front end wrote the reply; it depends on no replicated state and leaves in order | same |
//! | `Status` | the front end wrote the reply from the [`NodeView`]; released as a read is | released at once |
//!
//! Then [`FrontEnd::encode`] puts the reply into the wire format, and the
//! reply joins the connection's queue at the output gate. Replies leave in
//! request order. A write may also push output to other connections
//! ([`FrontEnd::publisher`], [`FrontEnd::take_pushed`]: pub/sub messages),
//! held at their gates under the write's seq.

use std::rc::Rc;

use tokio::sync::Notify;
use understudy_core::{Seq, StateMachine, Status};

use crate::machine::App;
use crate::replica::{Replica, Stats};

/// What a request does with the replicated state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Changes it: `op` is an operation for [`StateMachine::apply`].
    Write,
    /// Reads it: `op` is a request for [`StateMachine::read`].
    Read,
    /// Does not touch it: the front end wrote the whole reply to `out`
    /// (a ping, a protocol error, a reply queued inside a transaction).
    Local,
    /// Reports the node's own state: the front end wrote the reply to `out`
    /// from the [`NodeView`] (role, replication, figures). On the primary it
    /// is released as a read is, since it may reveal an unacknowledged write.
    Status,
}

/// One decoded request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Bytes of the input it took (at least 1).
    pub len: usize,
    pub access: Access,
    /// Close the connection once this request's reply is written (a QUIT,
    /// `Connection: close`, or a protocol error the front end answered).
    pub close: bool,
}

impl Request {
    pub fn new(len: usize, access: Access) -> Request {
        Request { len, access, close: false }
    }

    /// The same request, closing the connection after its reply.
    pub fn then_close(self) -> Request {
        Request { close: true, ..self }
    }
}

/// A client protocol on top of a [`StateMachine`]. One value serves every
/// connection of a node (per-connection state lives in [`FrontEnd::Conn`]);
/// every call runs on the node's event loop, so none may block.
pub trait FrontEnd: 'static {
    type Machine: StateMachine + Send;
    /// State of one client connection (a parser's progress, a transaction
    /// being queued, the protocol version the client asked for).
    type Conn;

    /// A client connected; `id` is unique within this process.
    fn open(&self, id: u64) -> Self::Conn;

    /// Where the client connected from and to, once, right after `open`
    /// (the key-value service's CLIENT LIST shows it). Default: ignored.
    fn connected(&self, conn: &mut Self::Conn, peer: &Peer) {
        let _ = (conn, peer);
    }

    /// Decodes the request at the start of `input` (what was received and
    /// not consumed yet). `None`: no whole request yet; the runtime reads
    /// more and calls again with the longer input. Otherwise fill `op` (a
    /// write or a read; it arrives empty) or append the reply to `out` (a
    /// local or status reply), never both. A protocol error is a `Local`
    /// request that closes the connection, its error reply in `out`. The
    /// request's `len` is at least 1 and at most `input.len()` (checked: a
    /// front end that breaks this stops the node, as any broken invariant).
    fn decode(
        &self,
        conn: &mut Self::Conn,
        input: &[u8],
        node: &NodeView<'_, Self::Machine>,
        op: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Option<Request>;

    /// Puts the reply that `out[start..]` holds into the wire format, in
    /// place (a status line and headers around a body, a protocol version
    /// the client asked for). Called once for every request's reply.
    /// Default: the reply is already what the client reads.
    fn encode(&self, conn: &mut Self::Conn, out: &mut Vec<u8>, start: usize) {
        let _ = (conn, out, start);
    }

    /// After a write request's entry was logged as `seq` and its reply
    /// queued: wake what the write may concern (blocked clients). Messages
    /// to other connections go out as the write is applied
    /// ([`FrontEnd::publisher`], [`FrontEnd::take_pushed`]).
    fn written(&self, conn: &mut Self::Conn, seq: Seq) {
        let _ = (conn, seq);
    }

    /// Output other connections' writes pushed to `conn` since the last
    /// call: appended to `out`, and the tag (seq) it goes out under, so the
    /// output gate holds it as it holds a reply. `Err`: close the
    /// connection (the reason is logged), e.g. a subscriber that does not
    /// read what it is sent.
    fn take_pushed(&self, conn: &mut Self::Conn, out: &mut Vec<u8>) -> Result<Option<Seq>, String> {
        let _ = (conn, out);
        Ok(None)
    }

    /// Woken when output is pushed to `conn` (asked once, after `open`).
    fn push_waker(&self, conn: &Self::Conn) -> Option<Rc<Notify>> {
        let _ = conn;
        None
    }

    /// Whether `conn` holds back a request it could not serve yet (a
    /// blocking pop waiting for an element): the runtime decodes its input
    /// again whenever the connection is woken ([`FrontEnd::push_waker`])
    /// or [`FrontEnd::wake_at`] passes, until `decode` returns it.
    fn held(&self, conn: &Self::Conn) -> bool {
        let _ = conn;
        false
    }

    /// When a held request must be decoded again even if nothing woke it
    /// (its timeout).
    fn wake_at(&self, conn: &Self::Conn) -> Option<std::time::Instant> {
        let _ = conn;
        None
    }

    /// What delivers the messages the machine publishes (`Ctx::publish`)
    /// to this front end's connections, asked once when the node starts.
    /// Default: none (a message reaches nobody).
    fn publisher(&self) -> Option<crate::ctx::Publisher> {
        None
    }

    /// Whether `conn` only makes sense on the primary (a subscriber): it is
    /// closed once its node is not the primary, so its client reconnects.
    fn needs_primary(&self, conn: &Self::Conn) -> bool {
        let _ = conn;
        false
    }

    /// Answers a write or read that reached a node that is not the primary
    /// (a backup, or a node still starting): an error naming `primary`, the
    /// primary's client address when it is known.
    fn redirect(&self, conn: &mut Self::Conn, primary: Option<&str>, out: &mut Vec<u8>);
}

/// A client connection's ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The client's address.
    pub addr: std::net::SocketAddr,
    /// The node's address the client connected to.
    pub local: std::net::SocketAddr,
    /// The socket's file descriptor, -1 if unknown.
    pub fd: i64,
}

impl Peer {
    /// The ends of `stream`; None if the socket no longer knows them.
    pub fn of(stream: &tokio::net::TcpStream) -> Option<Peer> {
        use std::os::fd::AsRawFd;
        Some(Peer { addr: stream.peer_addr().ok()?, local: stream.local_addr().ok()?, fd: i64::from(stream.as_raw_fd()) })
    }
}

/// What a front end may look at while it decodes: the node's role and
/// replication state, its figures, and the machine (for a status reply).
pub struct NodeView<'a, M: StateMachine + Send> {
    r: &'a Replica<App<M>>,
}

impl<'a, M: StateMachine + Send> NodeView<'a, M> {
    pub(crate) fn new(r: &'a Replica<App<M>>) -> Self {
        NodeView { r }
    }

    /// True while this node is the live primary.
    pub fn is_primary(&self) -> bool {
        self.r.core.is_primary()
    }

    /// Role, epoch, peer, seqs, lag: what `understudy status` shows.
    pub fn status(&self) -> Status {
        self.r.core.status()
    }

    /// The highest seq whose outputs may leave.
    pub fn release_upto(&self) -> u64 {
        self.r.core.release_upto()
    }

    /// Log and state-transfer counters.
    /// The time a read would be answered at: the wall clock, never behind
    /// any logged op's recorded time.
    pub fn now_us(&self) -> u64 {
        crate::ctx::wall_us().max(self.r.record.floor.0)
    }

    pub fn stats(&self) -> &Stats {
        &self.r.stats
    }

    /// This node's disk (`--appendfsync`): its mode and figures; None
    /// when the state lives in memory only.
    pub fn disk(&self) -> Option<(understudy_durable::Fsync, &crate::disk_state::DiskStats)> {
        let mode = self.r.opts.persist.as_ref()?.fsync;
        Some((mode, self.r.disk_stats()?))
    }

    /// `--appendfsync`, if given (the state is then on disk too).
    pub fn appendfsync(&self) -> Option<understudy_durable::Fsync> {
        Some(self.r.opts.persist.as_ref()?.fsync)
    }

    /// `--client-listen`'s address (its port as given: see
    /// [`NodeView::listen_port`]).
    pub fn client_listen(&self) -> std::net::SocketAddr {
        self.r.opts.client_listen
    }

    /// The port clients connect to (as bound).
    pub fn listen_port(&self) -> u16 {
        self.r
            .opts
            .advertise_client
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(self.r.opts.client_listen.port())
    }

    /// 40 hex digits, new in every process (Redis's `run_id`).
    pub fn run_id(&self) -> String {
        let i = self.r.incarnation;
        format!("{:020x}{:020x}", i, i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// This node's name and its cluster's (`--node`, `--cluster`).
    pub fn node(&self) -> &str {
        &self.r.opts.node
    }

    pub fn cluster(&self) -> &str {
        &self.r.opts.cluster
    }

    /// The primary's client address, if known (this node's own when it is
    /// the primary).
    pub fn primary_client(&self) -> Option<&str> {
        self.r.primary_client.as_deref()
    }

    /// Primary: its backup's client address (INFO, ROLE), if known.
    pub fn backup_client(&self) -> Option<&str> {
        self.r.backup_client()
    }

    /// The replicated state, for a status reply (a key count). Never
    /// answer a client's read from it here: a `Read` request goes through
    /// the gate's rule for reads.
    pub fn machine(&self) -> &M {
        &self.r.machine.sm
    }
}
