//! ACL users, the subset of Redis 7.0's ACL that an `--aclfile` declares:
//! `user <name> on|off >password <password #hash !hash nopass resetpass
//! ~* allkeys resetkeys &* allchannels resetchannels +@all -@all
//! allcommands nocommands +@category -@category +command -command
//! +command|subcommand -command|subcommand reset`. Key and channel patterns
//! other than `*` (and selectors) are refused when the file is read, naming
//! its line. Users come from the file only: `ACL SETUSER`, `DELUSER`,
//! `LOAD` and `SAVE` are refused, so both replicas (given the same file)
//! always have the same users.
//!
//! A user's commands are a bitmap over commands and subcommands, as in
//! Redis, and `ACL LIST` describes it as Redis 7.0 does: `+@all` or
//! `-@all`, the categories that fit best, then single commands (in the
//! command table's order; Redis's order is its hash table's). Passwords
//! are kept as their SHA-256, as Redis keeps them.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use sha2::{Digest, Sha256};

use crate::acl_categories::{self as cat, CATEGORIES};
use crate::cmd::{Cmd, SPECS};
use crate::resp::{write_array_len, write_simple};
use crate::subcommands::SUBCOMMANDS;

/// `NOPERM` errors, as Redis 7.0 words them.
pub const NOPERM_KEY: &[u8] = b"NOPERM this user has no permissions to access one of the keys used as arguments";
pub const NOPERM_CHANNEL: &[u8] = b"NOPERM this user has no permissions to access one of the channels used as arguments";

/// Ids of commands and subcommands: a top-level command is its `Cmd`
/// discriminant, a subcommand `SPECS.len()` plus its row in `SUBCOMMANDS`.
pub(crate) fn id_count() -> usize {
    SPECS.len() + SUBCOMMANDS.len()
}

/// Per `Cmd`: the rows of `SUBCOMMANDS` that are its subcommands.
pub(crate) static SUBS: LazyLock<Vec<Vec<usize>>> = LazyLock::new(|| {
    let mut subs = vec![Vec::new(); SPECS.len()];
    for (i, (c, _, _)) in SUBCOMMANDS.iter().enumerate() {
        subs[*c as usize].push(i);
    }
    subs
});

/// The id `argv` runs: its subcommand's if `cmd` has subcommands and
/// `argv[1]` names one, else the command's.
pub fn command_id(cmd: Cmd, argv: &[&[u8]]) -> usize {
    if let Some(sub) = argv.get(1) {
        for &i in &SUBS[cmd as usize] {
            if sub.eq_ignore_ascii_case(SUBCOMMANDS[i].1.as_bytes()) {
                return SPECS.len() + i;
            }
        }
    }
    cmd as usize
}

/// `get`, or `client|list` for a subcommand.
pub fn fullname(id: usize) -> String {
    match id.checked_sub(SPECS.len()) {
        None => SPECS[id].name.to_string(),
        Some(i) => format!("{}|{}", SUBCOMMANDS[i].0.spec().name, SUBCOMMANDS[i].1),
    }
}

/// A command's ACL categories, as a mask of `acl_categories` bits: the
/// ones its flags imply (Redis's `setImplicitACLCategories`) and the rest
/// from Redis 7.0's table.
pub fn categories(cmd: Cmd) -> u32 {
    let spec = cmd.spec();
    let explicit = cat::explicit(spec.name);
    let has = |f: &str| spec.flags.contains(&f);
    let mut m = explicit;
    if has("write") {
        m |= cat::WRITE;
    }
    if has("readonly") && explicit & cat::SCRIPTING == 0 {
        m |= cat::READ;
    }
    if has("admin") {
        m |= cat::ADMIN | cat::DANGEROUS;
    }
    if has("pubsub") {
        m |= cat::PUBSUB;
    }
    if has("fast") {
        m |= cat::FAST;
    }
    if has("blocking") {
        m |= cat::BLOCKING;
    }
    if m & cat::FAST == 0 {
        m |= cat::SLOW;
    }
    m
}

pub(crate) fn id_categories(id: usize) -> u32 {
    match id.checked_sub(SPECS.len()) {
        None => categories(SPECS[id].cmd),
        Some(_) => cat::subcommand(&fullname(id)),
    }
}

/// COMMAND INFO's categories: `@name` simple strings in Redis's order.
pub fn write_categories(mask: u32, out: &mut Vec<u8>) {
    write_array_len(out, mask.count_ones() as usize);
    for (i, name) in CATEGORIES.iter().enumerate() {
        if mask & (1 << i) != 0 {
            write_simple(out, format!("@{name}").as_bytes());
        }
    }
}

/// The position of the first key `argv` names, if it names any (a user
/// without `~*` may not run it).
fn first_key(cmd: Cmd, id: usize, argv: &[&[u8]]) -> Option<usize> {
    let spec = cmd.spec();
    if id >= SPECS.len() {
        // The subcommands with a key: MEMORY USAGE, OBJECT's, XGROUP's and XINFO's.
        let keyed = matches!(cmd, Cmd::Memory | Cmd::Object | Cmd::Xgroup | Cmd::Xinfo) && !argv[1].eq_ignore_ascii_case(b"help");
        return (keyed && argv.len() > 2).then_some(2);
    }
    if spec.keys.0 > 0 {
        let at = spec.keys.0 as usize;
        return (at < argv.len()).then_some(at);
    }
    if !spec.flags.contains(&"movablekeys") {
        return None;
    }
    if matches!(cmd, Cmd::Xread | Cmd::Xreadgroup) {
        // The keys follow STREAMS.
        let at = argv.iter().position(|a| a.eq_ignore_ascii_case(b"streams"))? + 1;
        return (at < argv.len()).then_some(at);
    }
    // Commands with a key count: EVAL's family at 2, the others at 1.
    // BLMPOP's and BZMPOP's after their timeout.
    let scripting = categories(cmd) & cat::SCRIPTING != 0;
    let count_at = if scripting || matches!(cmd, Cmd::Blmpop | Cmd::Bzmpop) { 2 } else { 1 };
    let n = argv.get(count_at).and_then(|n| crate::num::parse_i64(n)).unwrap_or(1);
    (n > 0 && count_at + 1 < argv.len()).then_some(count_at + 1)
}

/// The channels `argv` names, for a user without `&*`: PUBLISH's one,
/// every argument of SUBSCRIBE and PSUBSCRIBE.
fn channels<'a, 'b>(cmd: Cmd, argv: &'a [&'b [u8]]) -> &'a [&'b [u8]] {
    match cmd {
        Cmd::Publish => &argv[1..2],
        Cmd::Subscribe | Cmd::Psubscribe => &argv[1..],
        _ => &[],
    }
}

/// Why a user may not run a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// The command (its full name).
    Command(String),
    /// A key (the first one).
    Key(Vec<u8>),
    /// A channel.
    Channel(Vec<u8>),
}

impl Denied {
    /// The `-NOPERM` error of a command refused.
    pub fn error(&self) -> Vec<u8> {
        match self {
            Denied::Command(name) => format!("NOPERM this user has no permissions to run the '{name}' command").into_bytes(),
            Denied::Key(_) => NOPERM_KEY.to_vec(),
            Denied::Channel(_) => NOPERM_CHANNEL.to_vec(),
        }
    }

    /// ACL DRYRUN's answer.
    pub(crate) fn dryrun(&self) -> Vec<u8> {
        let (what, name) = match self {
            Denied::Command(name) => return format!("This user has no permissions to run the '{name}' command").into_bytes(),
            Denied::Key(k) => ("key", k),
            Denied::Channel(c) => ("channel", c),
        };
        let mut msg = b"This user has no permissions to access the '".to_vec();
        msg.extend_from_slice(name);
        msg.extend_from_slice(format!("' {what}").as_bytes());
        msg
    }
}

/// One user.
#[derive(Debug, Clone)]
pub struct User {
    pub(crate) name: String,
    pub(crate) enabled: bool,
    pub(crate) nopass: bool,
    /// SHA-256 of each password, in the order added.
    pub(crate) passwords: Vec<[u8; 32]>,
    pub(crate) allkeys: bool,
    pub(crate) allchannels: bool,
    /// Per command id: may run it.
    pub(crate) allowed: Vec<bool>,
    /// `+@all` came after any `-@all`: commands Redis has and understudy
    /// lacks are allowed too (ACL LIST starts with `+@all`).
    pub(crate) all_future: bool,
    /// Every command on every key and channel: nothing to check.
    pub(crate) unrestricted: bool,
}

fn sha256(pass: &[u8]) -> [u8; 32] {
    Sha256::digest(pass).into()
}

pub(crate) fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) {
        return None;
    }
    let mut h = [0u8; 32];
    for (i, b) in h.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(h)
}

impl User {
    /// A user as `ACL SETUSER` creates one: off, no password, no keys, no
    /// channels, no commands.
    fn new(name: &str) -> User {
        User {
            name: name.to_string(),
            enabled: false,
            nopass: false,
            passwords: Vec::new(),
            allkeys: false,
            allchannels: false,
            allowed: vec![false; id_count()],
            all_future: false,
            unrestricted: false,
        }
    }

    /// Redis's default user: `on nopass ~* &* +@all`, or with
    /// `requirepass`'s password instead of `nopass`.
    fn default_user(password: Option<&[u8]>) -> User {
        let mut u = User::new("default");
        for rule in ["on", "~*", "&*", "+@all"] {
            u.apply(rule).expect("a valid rule");
        }
        match password {
            Some(p) => u.passwords.push(sha256(p)),
            None => u.nopass = true,
        }
        u.finish();
        u
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Authenticates without a password (`nopass`).
    pub fn nopass(&self) -> bool {
        self.nopass
    }

    /// Whether `pass` is one of this user's passwords (any, for
    /// `nopass`); compared in constant time.
    pub fn password_ok(&self, pass: &[u8]) -> bool {
        if self.nopass {
            return true;
        }
        let h = sha256(pass);
        self.passwords.iter().fold(false, |ok, p| ok | (p.iter().zip(&h).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0))
    }

    fn finish(&mut self) {
        self.unrestricted = self.allkeys && self.allchannels && self.allowed.iter().all(|&a| a);
    }

    /// Whether this user may run `argv` (a known command with the right
    /// arity): commands that need no authentication always.
    pub fn check(&self, cmd: Cmd, argv: &[&[u8]]) -> Result<(), Denied> {
        if self.unrestricted || cmd.spec().flags.contains(&"no_auth") {
            return Ok(());
        }
        let id = command_id(cmd, argv);
        if !self.allowed[id] {
            return Err(Denied::Command(fullname(id)));
        }
        if !self.allkeys {
            if let Some(at) = first_key(cmd, id, argv) {
                return Err(Denied::Key(argv[at].to_vec()));
            }
        }
        if !self.allchannels {
            if let Some(c) = channels(cmd, argv).first() {
                return Err(Denied::Channel(c.to_vec()));
            }
        }
        Ok(())
    }

    /// Whether the exactly-once session commands (`US.*`) are allowed:
    /// they run other commands, so only for a user who may run anything.
    pub fn unrestricted(&self) -> bool {
        self.unrestricted
    }

    fn set_command(&mut self, cmd: usize, allow: bool) {
        set_command(&mut self.allowed, cmd, allow);
    }

    /// Applies one rule; `Err` says what is wrong with it. Returns a
    /// warning for a command Redis has and understudy lacks (nothing to
    /// allow or deny).
    fn apply(&mut self, rule: &str) -> Result<Option<String>, String> {
        let lower = rule.to_ascii_lowercase();
        match lower.as_str() {
            "on" => self.enabled = true,
            "off" => self.enabled = false,
            "nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            "resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            "~*" | "allkeys" => self.allkeys = true,
            "resetkeys" => self.allkeys = false,
            "&*" | "allchannels" => self.allchannels = true,
            "resetchannels" => self.allchannels = false,
            "+@all" | "allcommands" => {
                self.allowed.iter_mut().for_each(|a| *a = true);
                self.all_future = true;
            }
            "-@all" | "nocommands" => {
                self.allowed.iter_mut().for_each(|a| *a = false);
                self.all_future = false;
            }
            "reset" => {
                let name = std::mem::take(&mut self.name);
                *self = User::new(&name);
            }
            _ => return self.apply_other(rule, &lower),
        }
        Ok(None)
    }

    fn apply_other(&mut self, rule: &str, lower: &str) -> Result<Option<String>, String> {
        let (first, rest) = rule.split_at(1);
        match first {
            ">" => {
                let h = sha256(rest.as_bytes());
                if !self.passwords.contains(&h) {
                    self.passwords.push(h);
                }
                self.nopass = false;
            }
            "<" => {
                let h = sha256(rest.as_bytes());
                if !self.passwords.contains(&h) {
                    return Err("the password to remove is not one of the user's".into());
                }
                self.passwords.retain(|p| *p != h);
            }
            "#" | "!" => {
                let Some(h) = unhex(rest) else {
                    return Err("a password hash must be 64 lowercase hexadecimal digits".into());
                };
                if first == "#" {
                    if !self.passwords.contains(&h) {
                        self.passwords.push(h);
                    }
                    self.nopass = false;
                } else if !self.passwords.contains(&h) {
                    return Err("the password hash to remove is not one of the user's".into());
                } else {
                    self.passwords.retain(|p| *p != h);
                }
            }
            "~" | "%" => return Err(format!("key pattern '{rule}' is not supported (only ~* or allkeys: every key)")),
            "&" => return Err(format!("channel pattern '{rule}' is not supported (only &* or allchannels: every channel)")),
            "(" => return Err("selectors are not supported".into()),
            "+" | "-" => return self.apply_command_rule(first == "+", lower),
            _ => return Err(format!("unknown rule '{rule}'")),
        }
        Ok(None)
    }

    fn apply_command_rule(&mut self, allow: bool, lower: &str) -> Result<Option<String>, String> {
        let name = &lower[1..];
        if let Some(category) = name.strip_prefix('@') {
            let Some(bit) = CATEGORIES.iter().position(|c| *c == category) else {
                return Err(format!("unknown category '{category}'"));
            };
            set_category(&mut self.allowed, 1 << bit, allow);
            return Ok(None);
        }
        let (command, sub) = match name.split_once('|') {
            Some((c, s)) => (c, Some(s)),
            None => (name, None),
        };
        let Some(cmd) = Cmd::lookup(command.as_bytes()) else {
            if command.is_empty() || !command.bytes().all(|c| c.is_ascii_alphanumeric() || b"_-.".contains(&c)) {
                return Err(format!("unknown command '{name}'"));
            }
            return Ok(Some(format!("command '{name}' is not one understudy has: the rule allows or denies nothing")));
        };
        match sub {
            None => self.set_command(cmd as usize, allow),
            Some(sub) => {
                let id = command_id(cmd, &[command.as_bytes(), sub.as_bytes()]);
                if id == cmd as usize {
                    return Err(format!("unknown subcommand '{name}'"));
                }
                self.allowed[id] = allow;
            }
        }
        Ok(None)
    }

    /// The command rules as ACL LIST and ACL GETUSER show them, found as
    /// Redis 7.0's `ACLDescribeSelectorCommandRules` finds them: from
    /// `+@all` (removing) or `-@all` (adding), the category with the
    /// fewest differences from the user's commands among those with more
    /// in common than not, again until none fits; then single commands.
    pub(crate) fn command_rules(&self) -> String {
        let adding = !self.all_future;
        let mut rules = vec![String::from(if adding { "-@all" } else { "+@all" })];
        let mut fake = vec![!adding; id_count()];
        let mut temp = self.allowed.clone();
        let mut applied = [false; CATEGORIES.len()];
        loop {
            let mut best = None;
            let (mut min_diff, mut max_same) = (usize::MAX, 0);
            for (j, done) in applied.iter().enumerate() {
                if *done {
                    continue;
                }
                let (mut on, mut off) = (0, 0);
                for (id, &allowed) in temp.iter().enumerate() {
                    if id_categories(id) & (1 << j) != 0 {
                        if allowed {
                            on += 1;
                        } else {
                            off += 1;
                        }
                    }
                }
                let (diff, same) = if adding { (off, on) } else { (on, off) };
                if same > diff && (diff < min_diff || (diff == min_diff && same > max_same)) {
                    best = Some(j);
                    (min_diff, max_same) = (diff, same);
                }
            }
            let Some(j) = best else { break };
            rules.push(format!("{}@{}", if adding { '+' } else { '-' }, CATEGORIES[j]));
            set_category(&mut fake, 1 << j, adding);
            set_category(&mut temp, 1 << j, !adding);
            applied[j] = true;
        }
        for spec in SPECS {
            let top = spec.cmd as usize;
            let sign = |on: bool| if on { '+' } else { '-' };
            if self.allowed[top] != fake[top] {
                rules.push(format!("{}{}", sign(self.allowed[top]), spec.name));
                set_command(&mut fake, top, self.allowed[top]);
            }
            for &i in &SUBS[top] {
                let id = SPECS.len() + i;
                if self.allowed[id] != fake[id] {
                    rules.push(format!("{}{}", sign(self.allowed[id]), fullname(id)));
                    fake[id] = self.allowed[id];
                }
            }
        }
        rules.join(" ")
    }

    /// This user as a line of ACL LIST: `user default on nopass ~* &* +@all`.
    pub fn describe(&self) -> String {
        let mut s = format!("user {} {}", self.name, if self.enabled { "on" } else { "off" });
        if self.nopass {
            s.push_str(" nopass");
        }
        for p in &self.passwords {
            s.push_str(" #");
            s.push_str(&hex(p));
        }
        if self.allkeys {
            s.push_str(" ~*");
        }
        s.push_str(if self.allchannels { " &*" } else { " resetchannels" });
        s.push(' ');
        s.push_str(&self.command_rules());
        s
    }
}

/// Allows or denies command `cmd` and all its subcommands (Redis's
/// `ACLChangeSelectorPerm`).
fn set_command(allowed: &mut [bool], cmd: usize, allow: bool) {
    allowed[cmd] = allow;
    for &i in &SUBS[cmd] {
        allowed[SPECS.len() + i] = allow;
    }
}

/// `+@category` or `-@category`: the commands in it (with all their
/// subcommands), and the subcommands in it.
fn set_category(allowed: &mut [bool], flag: u32, allow: bool) {
    for spec in SPECS {
        if categories(spec.cmd) & flag != 0 {
            set_command(allowed, spec.cmd as usize, allow);
        }
        for &i in &SUBS[spec.cmd as usize] {
            if cat::subcommand(&fullname(SPECS.len() + i)) & flag != 0 {
                allowed[SPECS.len() + i] = allow;
            }
        }
    }
}

/// The users of a node, by name.
#[derive(Debug, Clone)]
pub struct Users {
    pub(crate) users: BTreeMap<String, Arc<User>>,
}

impl Default for Users {
    fn default() -> Users {
        Users::new(None)
    }
}

impl Users {
    /// Only the `default` user, with `requirepass`'s password if given.
    pub fn new(requirepass: Option<&[u8]>) -> Users {
        let mut users = BTreeMap::new();
        users.insert("default".to_string(), Arc::new(User::default_user(requirepass)));
        Users { users }
    }

    /// Reads an ACL file's `text` (`file` names it in errors, with the
    /// line). The `default` user is the file's if it declares one (then
    /// `requirepass` must be None), else as [`Users::new`]. Also returns
    /// warnings about rules for commands understudy does not have.
    pub fn parse(text: &str, file: &str, requirepass: Option<&[u8]>) -> Result<(Users, Vec<String>), String> {
        let mut users = Users::new(requirepass);
        let mut declared = Vec::new();
        let mut warnings = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let at = format!("{file}:{}", n + 1);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // As Redis: words separated by spaces, no quoting.
            let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            let [kw, name, rules @ ..] = &words[..] else {
                return Err(format!("{at}: a line is `user <name> <rule> ...`"));
            };
            if kw != "user" {
                return Err(format!("{at}: a line must start with the `user` keyword"));
            }
            if name.is_empty() || name.bytes().any(|c| c.is_ascii_whitespace() || c.is_ascii_control()) {
                return Err(format!("{at}: a user name cannot be empty or contain spaces"));
            }
            if declared.contains(name) {
                return Err(format!("{at}: user '{name}' is declared twice"));
            }
            if name == "default" && requirepass.is_some() {
                return Err(format!(
                    "{at}: the file declares the default user, whose password --requirepass-file also sets: give one or the other"
                ));
            }
            let mut u = User::new(name);
            for rule in rules {
                match u.apply(rule) {
                    Ok(Some(w)) => warnings.push(format!("{at}: {w}")),
                    Ok(None) => {}
                    Err(e) => return Err(format!("{at}: {e}")),
                }
            }
            u.finish();
            declared.push(name.clone());
            users.users.insert(name.clone(), Arc::new(u));
        }
        Ok((users, warnings))
    }

    pub fn get(&self, name: &[u8]) -> Option<&Arc<User>> {
        std::str::from_utf8(name).ok().and_then(|n| self.users.get(n))
    }

    pub fn default_user(&self) -> Arc<User> {
        self.users["default"].clone()
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<&[u8]> {
        line.split(' ').map(str::as_bytes).collect()
    }

    #[test]
    fn the_default_user_is_redis_s() {
        let users = Users::default();
        assert_eq!(users.default_user().describe(), "user default on nopass ~* &* +@all");
        let with = Users::new(Some(b"pw"));
        let d = with.default_user();
        assert!(d.password_ok(b"pw") && !d.password_ok(b"pW"));
        assert!(d.describe().starts_with("user default on #"));
    }

    #[test]
    fn a_file_declares_users_as_redis_lists_them() {
        let text = "# users\nuser ro on >rop ~* +@read\n\nuser nokeys on >p +@all\nuser dis off >p +@all ~*\nuser w on nopass ~* &* +@all -@dangerous +info -get +client|id\n";
        let (users, warnings) = Users::parse(text, "acl", None).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let ro = users.get(b"ro").unwrap();
        assert_eq!(
            ro.describe(),
            "user ro on #d1e909483b98bf9e8b8c2ae3e1688365ecb2e7b75286c9784646d3d76c1c0dc6 ~* resetchannels -@all +@read"
        );
        assert_eq!(
            users.get(b"nokeys").unwrap().describe(),
            "user nokeys on #148de9c5a7a44d19e56cd9ae1a554bf67847afb0c58f6e12fa29ac7ddfca9940 resetchannels +@all"
        );
        assert_eq!(
            users.get(b"w").unwrap().describe(),
            "user w on nopass ~* &* +@all -@admin -get -keys -flushall -flushdb -sort -sort_ro -restore"
        );
        let cmds = Users::parse("user c on -@all +set +get +client|setname", "f", None).unwrap().0;
        assert_eq!(cmds.get(b"c").unwrap().describe(), "user c on resetchannels -@all +get +set +client|setname");
        assert!(ro.check(Cmd::Get, &argv("get k")).is_ok());
        assert_eq!(ro.check(Cmd::Set, &argv("set k v")), Err(Denied::Command("set".into())));
        assert_eq!(ro.check(Cmd::Client, &argv("client list")), Err(Denied::Command("client|list".into())));
        assert_eq!(ro.check(Cmd::Publish, &argv("publish c m")), Err(Denied::Command("publish".into())));
        assert!(ro.check(Cmd::Auth, &argv("auth a b")).is_ok(), "no_auth commands are always allowed");
        let nokeys = users.get(b"nokeys").unwrap();
        assert_eq!(nokeys.check(Cmd::Get, &argv("get k")), Err(Denied::Key(b"k".to_vec())));
        assert_eq!(nokeys.check(Cmd::Publish, &argv("publish c m")), Err(Denied::Channel(b"c".to_vec())));
        assert_eq!(nokeys.check(Cmd::Zunion, &argv("zunion 2 a b")), Err(Denied::Key(b"a".to_vec())));
        assert!(nokeys.check(Cmd::Ping, &argv("ping")).is_ok());
        let w = users.get(b"w").unwrap();
        assert!(w.check(Cmd::Info, &argv("info")).is_ok(), "+info after -@dangerous");
        assert_eq!(w.check(Cmd::Flushall, &argv("flushall")), Err(Denied::Command("flushall".into())));
        assert_eq!(w.check(Cmd::Client, &argv("client kill id 1")), Err(Denied::Command("client|kill".into())));
        assert!(w.check(Cmd::Client, &argv("client id")).is_ok());
        assert_eq!(w.check(Cmd::Get, &argv("get k")), Err(Denied::Command("get".into())));
        assert!(!users.get(b"dis").unwrap().enabled());
    }

    #[test]
    fn bad_files_name_the_line() {
        let err = |text: &str| Users::parse(text, "users.acl", None).unwrap_err();
        assert_eq!(
            err("user a on\nuser b on ~foo*"),
            "users.acl:2: key pattern '~foo*' is not supported (only ~* or allkeys: every key)"
        );
        assert!(err("usr a on").starts_with("users.acl:1: a line must start"));
        assert!(err("user a +@nosuch").contains("unknown category 'nosuch'"));
        assert!(err("user a on\nuser a off").contains("declared twice"));
        assert!(err("user a +client|nosuch").contains("unknown subcommand"));
        assert!(Users::parse("user default on >x", "f", Some(b"y")).unwrap_err().contains("--requirepass-file"));
        let (_, warnings) = Users::parse("user a on +@all -debug", "f", None).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn categories_are_redis_s() {
        assert_eq!(categories(Cmd::Get), cat::READ | cat::STRING | cat::FAST);
        assert_eq!(categories(Cmd::Set), cat::WRITE | cat::STRING | cat::SLOW);
        assert_eq!(categories(Cmd::Keys), cat::KEYSPACE | cat::READ | cat::SLOW | cat::DANGEROUS);
        assert_eq!(
            id_categories(command_id(Cmd::Client, &argv("client kill"))),
            cat::ADMIN | cat::SLOW | cat::DANGEROUS | cat::CONNECTION
        );
    }
}
