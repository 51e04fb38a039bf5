//! The key-value service's front end: Redis's protocol (RESP2, RESP3
//! after `HELLO 3`) over [`Kv`], one [`FrontEnd`] among others. The
//! session (`understudy_kv::Session`) answers connection commands and
//! queues transactions; reads and writes go to the machine.

use std::ops::Range;

use understudy_kv::resp::{write_bulk, write_error, CommandParser};
use understudy_kv::session::{serves_on_backup, Dispatch, Session};
use understudy_kv::{encode_query, Kv};

use crate::service::{Access, FrontEnd, NodeView, Request};

/// The Redis-protocol front end.
pub struct Redis {
    /// `--request-bytes-max`: the largest command, and the largest
    /// transaction (it travels as one entry).
    request_bytes_max: usize,
}

impl Redis {
    pub fn new(request_bytes_max: usize) -> Redis {
        Redis { request_bytes_max }
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
        if !node.is_primary() && !serves_on_backup(&argv) {
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
            Dispatch::Info => {
                write_bulk(out, info(node, argv.get(1).copied()).as_bytes());
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
        let redis_role = if node.is_primary() { "master" } else { "slave" };
        t.push_str(&format!(
            "# Replication\r\nrole:{redis_role}\r\nunderstudy_role:{}\r\nepoch:{}\r\nprotected:{}\r\npeer:{}\r\npeer_in_sync:{}\r\nlag:{}\r\nlast_seq:{}\r\nexecuted_seq:{}\r\nrelease_upto:{}\r\nlog_bytes:{}\r\nlog_entries:{}\r\nsnapshot_bytes_sent:{}\r\nsnapshot_bytes_received:{}\r\n\r\n",
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
