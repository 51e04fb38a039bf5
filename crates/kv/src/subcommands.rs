//! What the session, scripts, the ACL and COMMAND share about commands
//! beyond the command table: the container commands' subcommands with
//! Redis's arities, PING/ECHO/SELECT, the Redis version we answer as, and
//! the default bound of a transaction. A leaf above `cmd` only.

use crate::cmd::{write_arity_error, Cmd, NOT_INT};
use crate::resp::{write_bulk, write_error, write_ok, write_simple};

/// The version HELLO reports: the Redis release whose replies we match.
pub const REDIS_VERSION: &str = "7.0.15";

/// Default bound of a transaction op, the node's default
/// `--request-bytes-max`: a transaction travels in one log frame, like a
/// request.
pub const TRANSACTION_BYTES_MAX: usize = 16 << 20;

/// Subcommands of the container commands, with Redis's arity.
pub(crate) const SUBCOMMANDS: &[(Cmd, &str, i32)] = &[
    (Cmd::Client, "id", 2),
    (Cmd::Client, "getname", 2),
    (Cmd::Client, "setname", 3),
    (Cmd::Client, "setinfo", 4),
    (Cmd::Client, "no-evict", 3),
    (Cmd::Client, "no-touch", 3),
    (Cmd::Client, "help", 2),
    (Cmd::Client, "list", -2),
    (Cmd::Client, "info", 2),
    (Cmd::Client, "kill", -3),
    (Cmd::Config, "get", -3),
    (Cmd::Config, "set", -4),
    (Cmd::Config, "resetstat", 2),
    (Cmd::Config, "help", 2),
    (Cmd::Config, "rewrite", 2),
    (Cmd::Command, "count", 2),
    (Cmd::Command, "info", -2),
    (Cmd::Command, "list", -2),
    (Cmd::Command, "help", 2),
    (Cmd::Pubsub, "channels", -2),
    (Cmd::Pubsub, "numsub", -2),
    (Cmd::Pubsub, "numpat", 2),
    (Cmd::Pubsub, "help", 2),
    (Cmd::Object, "encoding", 3),
    (Cmd::Object, "freq", 3),
    (Cmd::Object, "idletime", 3),
    (Cmd::Object, "refcount", 3),
    (Cmd::Object, "help", 2),
    (Cmd::Script, "load", 3),
    (Cmd::Script, "exists", -3),
    (Cmd::Script, "flush", -2),
    (Cmd::Script, "kill", 2),
    (Cmd::Script, "debug", 3),
    (Cmd::Script, "help", 2),
    (Cmd::Slowlog, "get", -2),
    (Cmd::Slowlog, "len", 2),
    (Cmd::Slowlog, "reset", 2),
    (Cmd::Slowlog, "help", 2),
    (Cmd::Memory, "usage", -3),
    (Cmd::Memory, "doctor", 2),
    (Cmd::Memory, "stats", 2),
    (Cmd::Memory, "malloc-stats", 2),
    (Cmd::Memory, "purge", 2),
    (Cmd::Memory, "help", 2),
    (Cmd::Acl, "cat", -2),
    (Cmd::Acl, "whoami", 2),
    (Cmd::Acl, "list", 2),
    (Cmd::Acl, "users", 2),
    (Cmd::Acl, "getuser", 3),
    (Cmd::Acl, "dryrun", -4),
    (Cmd::Acl, "log", -2),
    (Cmd::Acl, "setuser", -3),
    (Cmd::Acl, "deluser", -3),
    (Cmd::Acl, "load", 2),
    (Cmd::Acl, "save", 2),
    (Cmd::Acl, "genpass", -2),
    (Cmd::Acl, "help", 2),
    (Cmd::Xgroup, "create", -5),
    (Cmd::Xgroup, "setid", -5),
    (Cmd::Xgroup, "destroy", 4),
    (Cmd::Xgroup, "createconsumer", 5),
    (Cmd::Xgroup, "delconsumer", 5),
    (Cmd::Xgroup, "help", 2),
    (Cmd::Xinfo, "consumers", 4),
    (Cmd::Xinfo, "groups", 3),
    (Cmd::Xinfo, "stream", -3),
    (Cmd::Xinfo, "help", 2),
];

/// The container commands, whose subcommands [`SUBCOMMANDS`] lists.
pub(crate) fn is_container(cmd: Cmd) -> bool {
    matches!(
        cmd,
        Cmd::Client
            | Cmd::Config
            | Cmd::Command
            | Cmd::Pubsub
            | Cmd::Object
            | Cmd::Script
            | Cmd::Slowlog
            | Cmd::Memory
            | Cmd::Acl
            | Cmd::Xgroup
            | Cmd::Xinfo
    )
}

/// For a container command (CLIENT, CONFIG, COMMAND, PUBSUB, OBJECT,
/// SCRIPT, SLOWLOG, MEMORY, ACL): `Some` with the arity of subcommand `sub`, or `Some(None)` if
/// there is no such subcommand; `None` for other commands.
pub(crate) fn subcommand_arity(cmd: Cmd, sub: &[u8]) -> Option<Option<i32>> {
    if !is_container(cmd) {
        return None;
    }
    Some(SUBCOMMANDS.iter().find(|(c, name, _)| *c == cmd && sub.eq_ignore_ascii_case(name.as_bytes())).map(|s| s.2))
}

/// PING, ECHO and SELECT (arity checked), on a connection or in a script.
pub(crate) fn ping_echo_select(cmd: Cmd, argv: &[&[u8]], out: &mut Vec<u8>) {
    match cmd {
        Cmd::Ping if argv.len() > 2 => write_arity_error(out, "ping"),
        Cmd::Ping if argv.len() == 2 => write_bulk(out, argv[1]),
        Cmd::Ping => write_simple(out, b"PONG"),
        Cmd::Echo => write_bulk(out, argv[1]),
        Cmd::Select => match crate::num::parse_i64(argv[1]) {
            None => write_error(out, NOT_INT),
            Some(id) if i32::try_from(id).is_err() => {
                write_error(out, b"ERR value is out of range, value must between -2147483648 and 2147483647")
            }
            Some(0) => write_ok(out),
            Some(_) => write_error(out, b"ERR DB index is out of range"),
        },
        _ => write_error(out, b"ERR internal: not PING, ECHO or SELECT"),
    }
}

/// Redis's `clientSetNameOrReply`'s check: a client name is printable
/// ASCII without spaces; otherwise writes Redis's error and returns false.
pub fn check_client_name(name: &[u8], out: &mut Vec<u8>) -> bool {
    let ok = name.iter().all(|c| (b'!'..=b'~').contains(c));
    if !ok {
        write_error(out, b"ERR Client names cannot contain spaces, newlines or special characters.");
    }
    ok
}

/// `CLIENT SETINFO attr value`: accepted for `lib-name` and `lib-ver`
/// (client libraries send them on connect), as Redis 7.2 does; nothing is
/// kept.
pub fn client_setinfo(argv: &[&[u8]], out: &mut Vec<u8>) {
    let attr = argv[2].to_ascii_lowercase();
    if attr == b"lib-name" || attr == b"lib-ver" {
        write_ok(out);
    } else {
        let mut msg = b"ERR Unrecognized option '".to_vec();
        msg.extend_from_slice(crate::cmd::keyspace::c_str(argv[2]));
        msg.push(b'\'');
        write_error(out, &msg);
    }
}
