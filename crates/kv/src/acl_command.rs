//! The ACL command (WHOAMI, USERS, LIST, GETUSER, CAT, DRYRUN, LOG, HELP)
//! over the users of [`crate::acl`].

use crate::acl::*;
use crate::acl_categories::CATEGORIES;
use crate::cmd::{Cmd, SPECS};
use crate::resp::{write_array_len, write_bulk, write_error, write_null, write_ok};
use crate::subcommands::SUBCOMMANDS;

/// `ACL <subcommand>`, its arity checked: `user` is the connection's.
pub fn command(users: &Users, user: &User, argv: &[&[u8]], out: &mut Vec<u8>) {
    let sub = argv[1].to_ascii_lowercase();
    match &sub[..] {
        b"whoami" => write_bulk(out, user.name.as_bytes()),
        b"users" => {
            write_array_len(out, users.users.len());
            users.users.keys().for_each(|n| write_bulk(out, n.as_bytes()));
        }
        b"list" => {
            write_array_len(out, users.users.len());
            users.users.values().for_each(|u| write_bulk(out, u.describe().as_bytes()));
        }
        b"cat" if argv.len() == 2 => {
            write_array_len(out, CATEGORIES.len());
            CATEGORIES.iter().for_each(|c| write_bulk(out, c.as_bytes()));
        }
        b"cat" if argv.len() == 3 => {
            let lower = argv[2].to_ascii_lowercase();
            let Some(bit) = CATEGORIES.iter().position(|c| c.as_bytes() == &lower[..]) else {
                let mut msg = b"ERR Unknown category '".to_vec();
                msg.extend_from_slice(argv[2]);
                msg.push(b'\'');
                return write_error(out, &msg);
            };
            let names: Vec<String> = (0..id_count()).filter(|&id| id_categories(id) & (1 << bit) != 0).map(fullname).collect();
            write_array_len(out, names.len());
            names.iter().for_each(|n| write_bulk(out, n.as_bytes()));
        }
        b"cat" => subcommand_syntax(argv[1], out),
        b"getuser" => match users.get(argv[2]) {
            None => write_null(out),
            Some(u) => getuser(u, out),
        },
        b"dryrun" => dryrun(users, argv, out),
        b"log" if argv.len() == 2 => write_array_len(out, 0),
        b"log" if argv.len() == 3 && argv[2].eq_ignore_ascii_case(b"reset") => write_ok(out),
        b"log" if argv.len() == 3 => match crate::num::parse_i64(argv[2]) {
            None => write_error(out, crate::cmd::NOT_INT),
            Some(_) => write_array_len(out, 0),
        },
        b"log" => subcommand_syntax(argv[1], out),
        b"setuser" | b"deluser" | b"load" | b"save" | b"genpass" => {
            let msg = format!(
                "ERR ACL {} is not supported by understudy: users come from --aclfile (the same file on both replicas)",
                String::from_utf8_lossy(&sub).to_uppercase()
            );
            write_error(out, msg.as_bytes());
        }
        _ => crate::resp::write_help(out, "ACL", ACL_HELP),
    }
}

/// Redis's `addReplySubcommandSyntaxError` for ACL.
fn subcommand_syntax(sub: &[u8], out: &mut Vec<u8>) {
    let mut msg = b"ERR unknown subcommand or wrong number of arguments for '".to_vec();
    msg.extend_from_slice(&sub[..sub.len().min(128)]);
    msg.extend_from_slice(b"'. Try ACL HELP.");
    write_error(out, &msg);
}

const ACL_HELP: &[&str] = &[
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOAD",
    "    Reload users from the ACL file.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SAVE",
    "    Save the current config to the ACL file.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
    "HELP",
    "    Prints this help.",
];

/// ACL GETUSER's reply (a map in RESP3, its flags a set).
fn getuser(u: &User, out: &mut Vec<u8>) {
    write_array_len(out, 12);
    write_bulk(out, b"flags");
    let flags: Vec<&str> = [(true, if u.enabled { "on" } else { "off" }), (u.nopass, "nopass")]
        .into_iter()
        .filter_map(|(on, f)| on.then_some(f))
        .collect();
    write_array_len(out, flags.len());
    flags.iter().for_each(|f| write_bulk(out, f.as_bytes()));
    write_bulk(out, b"passwords");
    write_array_len(out, u.passwords.len());
    u.passwords.iter().for_each(|p| write_bulk(out, hex(p).as_bytes()));
    write_bulk(out, b"commands");
    write_bulk(out, u.command_rules().as_bytes());
    write_bulk(out, b"keys");
    write_bulk(out, if u.allkeys { b"~*" } else { b"" });
    write_bulk(out, b"channels");
    write_bulk(out, if u.allchannels { b"&*" } else { b"" });
    write_bulk(out, b"selectors");
    write_array_len(out, 0);
}

/// ACL DRYRUN user command [arg …]: what the user would be answered.
fn dryrun(users: &Users, argv: &[&[u8]], out: &mut Vec<u8>) {
    let Some(u) = users.get(argv[2]) else {
        let mut msg = b"ERR User '".to_vec();
        msg.extend_from_slice(argv[2]);
        msg.extend_from_slice(b"' not found");
        return write_error(out, &msg);
    };
    let args = &argv[3..];
    let cmd =
        Cmd::lookup(args[0]).filter(|&c| args.len() < 2 || SUBS[c as usize].is_empty() || command_id(c, args) != c as usize);
    let Some(cmd) = cmd else {
        let mut msg = b"ERR Command '".to_vec();
        msg.extend_from_slice(args[0]);
        msg.extend_from_slice(b"' not found");
        return write_error(out, &msg);
    };
    let id = command_id(cmd, args);
    let arity = match id.checked_sub(SPECS.len()) {
        None => cmd.spec().arity,
        Some(i) => SUBCOMMANDS[i].2,
    };
    let argc = args.len() as i64;
    if (arity > 0 && i64::from(arity) != argc) || argc < -i64::from(arity) {
        return write_error(out, format!("ERR wrong number of arguments for '{}' command", fullname(id)).as_bytes());
    }
    match u.check(cmd, args) {
        Ok(()) => write_ok(out),
        Err(d) => write_bulk(out, &d.dryrun()),
    }
}
