//! The key-value service's front end: Redis's protocol (RESP2, RESP3
//! after `HELLO 3`) over [`Kv`], one [`FrontEnd`] among others. The
//! session (`understudy_kv::Session`) answers connection commands and
//! queues transactions; reads and writes go to the machine.

use std::ops::Range;
use std::sync::Arc;

use understudy_core::RoleName;
use understudy_kv::resp::{write_array_len, write_bulk, write_error, write_int, CommandParser};
use understudy_kv::session::{command_name, serves_on_backup, Dispatch, Session};
use understudy_kv::{encode_query, Kv};

use crate::service::{Access, FrontEnd, NodeView, Request};

/// The Redis-protocol front end.
pub struct Redis {
    /// `--request-bytes-max`: the largest command, and the largest
    /// transaction (it travels as one entry).
    request_bytes_max: usize,
    /// The password clients must give (`--requirepass-file`), if any.
    password: Option<Arc<[u8]>>,
}

impl Redis {
    pub fn new(request_bytes_max: usize, password: Option<Arc<[u8]>>) -> Redis {
        Redis { request_bytes_max, password }
    }
}

/// One client connection: its session and the parser's progress (a large
/// command arriving in many reads is scanned once, not from its start on
/// every read).
pub struct RedisConn {
    session: Session,
    parser: CommandParser,
    args: Vec<Range<usize>>,
}

impl FrontEnd for Redis {
    type Machine = Kv;
    type Conn = RedisConn;

    fn open(&self, id: u64) -> RedisConn {
        let mut session = Session::new(id);
        session.set_op_bytes_max(self.request_bytes_max);
        session.set_password(self.password.clone());
        RedisConn { session, parser: CommandParser::default(), args: Vec::new() }
    }

    fn decode(
        &self,
        c: &mut RedisConn,
        input: &[u8],
        node: &NodeView<'_, Kv>,
        op: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Option<Request> {
        let len = match c.parser.parse(input, self.request_bytes_max, &mut c.args) {
            Ok(Some(n)) => n,
            Ok(None) => return None,
            Err(e) => {
                // Reply, then close (as Redis does).
                out.extend_from_slice(&e.to_resp());
                return Some(Request::new(input.len(), Access::Local).then_close());
            }
        };
        let argv: Vec<&[u8]> = c.args.iter().map(|a| &input[a.clone()]).collect();
        if argv.is_empty() {
            // A blank inline line: no reply, as in Redis.
            return Some(Request::new(len, Access::Local));
        }
        // An unauthenticated client learns nothing, not even where the
        // primary is: the session answers -NOAUTH.
        if !node.is_primary() && !serves_on_backup(&argv) && c.session.authenticated() {
            self.redirect(c, node.primary_client(), out);
            return Some(Request::new(len, Access::Local));
        }
        let req = match c.session.dispatch(&argv, op, out) {
            Dispatch::Done => Request::new(len, Access::Local),
            Dispatch::Read => {
                encode_query(op, &argv);
                Request::new(len, Access::Read)
            }
            Dispatch::Write => Request::new(len, Access::Write),
            Dispatch::Status => {
                match command_name(&argv) {
                    Some("role") => role(node, out),
                    // Every write this connection was answered is on the
                    // backup already; the reply leaves after this point's ack.
                    Some("wait") => write_int(out, i64::from(node.status().protected)),
                    _ => write_bulk(out, info(node, argv.get(1).copied()).as_bytes()),
                }
                Request::new(len, Access::Status)
            }
            Dispatch::Close => Request::new(len, Access::Local).then_close(),
        };
        c.session.expect_reply(&argv);
        Some(req)
    }

    fn encode(&self, c: &mut RedisConn, out: &mut Vec<u8>, start: usize) {
        c.session.encode_reply(out, start);
    }

    fn redirect(&self, _c: &mut RedisConn, primary: Option<&str>, out: &mut Vec<u8>) {
        let primary = primary.unwrap_or("unknown (no primary yet)");
        let msg = format!("READONLY You can't write against a read only replica. primary at {primary}");
        write_error(out, msg.as_bytes());
    }
}

/// `HOST:PORT` (or `[V6]:PORT`) as Redis prints it: host and port apart.
fn host_port(addr: &str) -> (&str, &str) {
    let (h, p) = addr.rsplit_once(':').unwrap_or((addr, "0"));
    (h.trim_start_matches('[').trim_end_matches(']'), p)
}

/// A replication id for the current epoch: Redis's is 40 hex digits that
/// change when a replica becomes primary; ours names the cluster's epoch.
fn replid(node: &NodeView<'_, Kv>) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    node.cluster().hash(&mut h);
    format!("{:024x}{:016x}", h.finish(), node.status().epoch)
}

/// ROLE, as Redis answers it. Offsets are log seqs (entries), not bytes.
fn role(node: &NodeView<'_, Kv>, out: &mut Vec<u8>) {
    let s = node.status();
    if node.is_primary() {
        write_array_len(out, 3);
        write_bulk(out, b"master");
        write_int(out, s.last_seq as i64);
        match node.backup_client().filter(|_| s.peer_in_sync) {
            Some(addr) => {
                let (h, p) = host_port(addr);
                write_array_len(out, 1);
                write_array_len(out, 3);
                write_bulk(out, h.as_bytes());
                write_bulk(out, p.as_bytes());
                write_bulk(out, s.last_seq.saturating_sub(s.lag).to_string().as_bytes());
            }
            None => write_array_len(out, 0),
        }
    } else {
        let (h, p) = host_port(node.primary_client().unwrap_or("?:0"));
        let state = match s.role {
            RoleName::Backup | RoleName::GoingLive => "connected",
            RoleName::Joining => "sync",
            _ => "connecting",
        };
        write_array_len(out, 5);
        write_bulk(out, b"slave");
        write_bulk(out, h.as_bytes());
        write_int(out, p.parse().unwrap_or(0));
        write_bulk(out, state.as_bytes());
        write_int(out, s.last_seq as i64);
    }
}

/// INFO's replication section in Redis's format (offsets are log seqs),
/// then what understudy adds.
fn replication(node: &NodeView<'_, Kv>, t: &mut String) {
    use std::fmt::Write as _;
    let s = node.status();
    if node.is_primary() {
        let backup = node.backup_client().filter(|_| s.peer.is_some());
        let _ = write!(t, "# Replication\r\nrole:master\r\nconnected_slaves:{}\r\n", u8::from(backup.is_some()));
        if let Some(addr) = backup {
            let (h, p) = host_port(addr);
            let state = if s.peer_in_sync { "online" } else { "send_bulk" };
            let offset = s.last_seq.saturating_sub(s.lag);
            let _ = write!(t, "slave0:ip={h},port={p},state={state},offset={offset},lag=0\r\n");
        }
    } else {
        let (h, p) = host_port(node.primary_client().unwrap_or("?:0"));
        let up = matches!(s.role, RoleName::Backup | RoleName::GoingLive);
        let _ = write!(
            t,
            "# Replication\r\nrole:slave\r\nmaster_host:{h}\r\nmaster_port:{p}\r\nmaster_link_status:{}\r\nmaster_last_io_seconds_ago:0\r\nmaster_sync_in_progress:{}\r\nslave_read_repl_offset:{}\r\nslave_repl_offset:{}\r\nslave_priority:100\r\nslave_read_only:1\r\nreplica_announced:1\r\nconnected_slaves:0\r\n",
            if up { "up" } else { "down" },
            u8::from(s.role == RoleName::Joining),
            s.last_seq,
            s.executed,
        );
    }
    let _ = write!(
        t,
        "master_failover_state:no-failover\r\nmaster_replid:{}\r\nmaster_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:{}\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:0\r\nrepl_backlog_size:0\r\nrepl_backlog_first_byte_offset:0\r\nrepl_backlog_histlen:0\r\n",
        replid(node),
        s.last_seq
    );
}

/// INFO, with a replication section that says what understudy knows.
fn info(node: &NodeView<'_, Kv>, section: Option<&[u8]>) -> String {
    let s = node.status();
    let stats = node.stats();
    let want = |name: &str| section.is_none_or(|x| x.eq_ignore_ascii_case(name.as_bytes()) || x.eq_ignore_ascii_case(b"all"));
    let mut t = String::new();
    if want("server") {
        t.push_str("# Server\r\nredis_version:7.0.15\r\nunderstudy_version:");
        t.push_str(env!("CARGO_PKG_VERSION"));
        t.push_str(&format!("\r\nunderstudy_node:{}\r\nunderstudy_cluster:{}\r\n\r\n", node.node(), node.cluster()));
    }
    if want("replication") {
        replication(node, &mut t);
        t.push_str(&format!(
            "understudy_role:{}\r\nepoch:{}\r\nprotected:{}\r\npeer:{}\r\npeer_in_sync:{}\r\nlag:{}\r\nlast_seq:{}\r\nexecuted_seq:{}\r\nrelease_upto:{}\r\nlog_bytes:{}\r\nlog_entries:{}\r\nsnapshot_bytes_sent:{}\r\nsnapshot_bytes_received:{}\r\n\r\n",
            s.role.as_str(),
            s.epoch,
            u8::from(s.protected),
            s.peer.as_deref().unwrap_or(""),
            u8::from(s.peer_in_sync),
            s.lag,
            s.last_seq,
            s.executed,
            node.release_upto(),
            stats.log_bytes,
            stats.log_entries,
            stats.snapshot_bytes_sent,
            stats.snapshot_bytes_received,
        ));
    }
    if want("keyspace") {
        t.push_str("# Keyspace\r\n");
        node.machine().info_keyspace(&mut t);
    }
    t
}
