//! The container commands' subcommands (CLIENT, CONFIG, COMMAND, PUBSUB,
//! OBJECT, SCRIPT, SLOWLOG, MEMORY, ACL, XGROUP…) with Redis's arities,
//! their HELP replies, COMMAND itself, and the unknown-command error: what
//! every front end and the session check before a command runs.

use crate::cmd::keyspace::c_str;
use crate::cmd::{write_arity_error, Cmd, SPECS};
use crate::resp::{write_array_len, write_bulk, write_error, write_int, write_null, write_simple};
use crate::subcommands::{is_container, SUBCOMMANDS};

/// For a container command: an unknown subcommand or a wrong subcommand
/// arity is answered as Redis does (and, like other rejections, aborts an
/// open transaction). `COMMAND DOCS` is deliberately unknown: redis-cli
/// then falls back to its built-in help instead of showing none.
pub(crate) fn subcommand_ok(cmd: Cmd, argv: &[&[u8]], out: &mut Vec<u8>) -> bool {
    if !is_container(cmd) || argv.len() < 2 {
        return true;
    }
    let sub = SUBCOMMANDS.iter().find(|(c, name, _)| *c == cmd && argv[1].eq_ignore_ascii_case(name.as_bytes()));
    let container = cmd.spec().name;
    match sub {
        None => {
            let mut msg = b"ERR unknown subcommand '".to_vec();
            let shown = c_str(argv[1]);
            msg.extend_from_slice(&shown[..shown.len().min(128)]);
            msg.extend_from_slice(format!("'. Try {} HELP.", container.to_uppercase()).as_bytes());
            write_error(out, &msg);
            false
        }
        Some((_, name, arity)) => {
            let ok = if *arity >= 0 { argv.len() == *arity as usize } else { argv.len() >= arity.unsigned_abs() as usize };
            if !ok {
                write_arity_error(out, &format!("{container}|{name}"));
            }
            ok
        }
    }
}

/// Redis's error for an unknown command, naming it and its first
/// arguments (each cut at a NUL, 128 bytes in all), for every RESP front end.
pub fn unknown_command(argv: &[&[u8]], out: &mut Vec<u8>) {
    let mut msg = b"ERR unknown command '".to_vec();
    let name = c_str(argv[0]);
    msg.extend_from_slice(&name[..name.len().min(128)]);
    msg.extend_from_slice(b"', with args beginning with: ");
    let mut args_len = 0;
    for a in &argv[1..] {
        if args_len >= 128 {
            break;
        }
        let a = c_str(a);
        let part = &a[..a.len().min(128 - args_len)];
        msg.push(b'\'');
        msg.extend_from_slice(part);
        msg.extend_from_slice(b"' ");
        args_len += part.len() + 3;
    }
    write_error(out, &msg);
}

/// COMMAND [COUNT | INFO name… | LIST | HELP], in Redis 7.0's RESP2 shape.
pub(crate) fn command(argv: &[&[u8]], out: &mut Vec<u8>) {
    let sub = argv.get(1).map(|s| s.to_ascii_lowercase()).unwrap_or_default();
    match &sub[..] {
        b"" => {
            write_array_len(out, SPECS.len());
            SPECS.iter().for_each(|s| command_entry(s.cmd, out));
        }
        b"count" => write_int(out, SPECS.len() as i64),
        b"info" if argv.len() == 2 => command(&argv[..1], out),
        b"info" => {
            write_array_len(out, argv.len() - 2);
            for name in &argv[2..] {
                match Cmd::lookup(name) {
                    Some(c) => command_entry(c, out),
                    None => write_null(out),
                }
            }
        }
        b"list" => {
            write_array_len(out, SPECS.len());
            SPECS.iter().for_each(|s| write_bulk(out, s.name.as_bytes()));
        }
        _ => crate::resp::write_help(out, "COMMAND", &["(no subcommand)", "COUNT", "INFO [<command-name> ...]", "LIST"]),
    }
}

fn command_entry(cmd: Cmd, out: &mut Vec<u8>) {
    let s = cmd.spec();
    write_array_len(out, 10);
    write_bulk(out, s.name.as_bytes());
    write_int(out, i64::from(s.arity));
    write_array_len(out, s.flags.len());
    s.flags.iter().for_each(|f| write_simple(out, f.as_bytes()));
    write_int(out, i64::from(s.keys.0));
    write_int(out, i64::from(s.keys.1));
    write_int(out, i64::from(s.keys.2));
    crate::acl::write_categories(crate::acl::categories(cmd), out);
    // Tips, key specs, subcommands: none described.
    (0..3).for_each(|_| write_array_len(out, 0));
}
