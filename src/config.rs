//! Where flags come from besides the command line, for `kv`, `wasm`,
//! `arbiter`, `status` and `sentinel`: an environment variable `UNDERSTUDY_<FLAG>`
//! (`--client-listen` is `UNDERSTUDY_CLIENT_LISTEN`) and a TOML file named
//! by `--config FILE` (or `UNDERSTUDY_CONFIG`) whose keys are the long flags
//! (`client-listen = "0.0.0.0:6379"`; `client_listen` is the same key).
//!
//! Precedence: command line > environment > file > default. The file is
//! applied as extra `--key=value` arguments right after the subcommand's
//! name, for exactly the flags neither the command line nor the environment
//! set (found by a first, lenient parse), so every value still goes through
//! clap and its parsers, and repeatable flags (`map-dir = ["a::/x"]`) are
//! replaced, not merged, by the same flag on the command line. A key no flag
//! has, or a value the flag does not take, fails before anything starts,
//! naming the key and the file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::builder::FalseyValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory as _, FromArgMatches as _};

use crate::cli::Cli;

/// The subcommands whose flags have environment variables and a config file.
pub const CONFIGURABLE: [&str; 5] = ["kv", "wasm", "arbiter", "status", "sentinel"];

/// `UNDERSTUDY_CLIENT_LISTEN` for `client-listen`.
pub fn env_name(long: &str) -> String {
    format!("UNDERSTUDY_{}", long.to_ascii_uppercase().replace('-', "_"))
}

/// The command line with an environment variable on every single-valued
/// flag of the configurable subcommands (the repeatable `--map-dir` and
/// `--env` have none: a list does not fit one variable unambiguously).
pub fn command() -> Command {
    let mut cmd = Cli::command();
    for name in CONFIGURABLE {
        cmd = cmd.mut_subcommand(name, |sub| sub.mut_args(with_env));
    }
    cmd
}

fn with_env(a: Arg) -> Arg {
    let Some(long) = a.get_long() else { return a };
    if a.get_env().is_some() || !matches!(a.get_action(), ArgAction::Set | ArgAction::SetTrue) {
        return a;
    }
    // clap keeps &'static names; this runs once per flag per process.
    let name: &'static str = Box::leak(env_name(long).into_boxed_str());
    let a = a.env(name);
    match a.get_action() {
        // UNDERSTUDY_FUEL=1, =true, =yes… set the flag; =0, =false, =no… do not.
        ArgAction::SetTrue => a.value_parser(FalseyValueParser::new()),
        _ => a,
    }
}

/// Which flags were set by the environment or the file: for notes on
/// errors that name a flag the command line does not show.
#[derive(Default, Debug)]
pub struct Origins {
    /// (`--flag`, where its value came from).
    set_by: Vec<(String, String)>,
}

impl Origins {
    /// A note for each flag `msg` names that the environment or the file set.
    pub fn notes(&self, msg: &str) -> String {
        let mut out = String::new();
        for (flag, origin) in &self.set_by {
            if mentions(msg, flag) && !out.contains(&format!("{flag} ")) {
                out.push_str(&format!("understudy: note: {flag} was set by {origin}\n"));
            }
        }
        out
    }
}

/// `msg` names `flag` as a whole word (`--dir` is not in `--dir-x`).
fn mentions(msg: &str, flag: &str) -> bool {
    msg.match_indices(flag).any(|(i, _)| {
        let next = msg[i + flag.len()..].chars().next();
        !next.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

/// Why the command line could not be parsed.
#[derive(Debug)]
pub enum Failure {
    /// clap's own error (also `--help` and `--version`, which are not failures).
    Clap(clap::Error),
    /// The config file: unreadable, not TOML, an unknown key or a bad value.
    Config(String),
}

/// Parses `argv` with the environment and the config file it names.
pub fn parse_from(argv: Vec<OsString>) -> Result<(Cli, Origins), (Failure, Origins)> {
    let cmd = command();
    let mut origins = Origins::default();
    // The lenient first parse: what the command line and environment set.
    let pre = cmd.clone().ignore_errors(true).try_get_matches_from(&argv);
    let mut argv = argv;
    if let Ok(pre) = &pre {
        if let Some((name, sub_m)) = pre.subcommand().filter(|(n, _)| CONFIGURABLE.contains(n)) {
            let sub = cmd.find_subcommand(name).expect("a known subcommand");
            origins.set_by = from_env(&cmd, pre, sub, sub_m);
            if let Ok(Some(file)) = sub_m.try_get_one::<PathBuf>("config") {
                match file_args(file, &cmd, pre, name, sub_m) {
                    Ok(extra) => {
                        let Some(at) = subcommand_index(&argv, &cmd).filter(|&i| argv[i] == *name) else {
                            let e =
                                format!("cannot find the subcommand {name:?} on the command line to apply {}", file.display());
                            return Err((Failure::Config(e), origins));
                        };
                        for (flag, key, _) in &extra {
                            origins.set_by.push((flag.clone(), format!("{key} in config file {}", file.display())));
                        }
                        argv.splice(at + 1..at + 1, extra.into_iter().map(|(_, _, a)| a));
                    }
                    Err(e) => return Err((Failure::Config(e), origins)),
                }
            }
        }
    }
    let parsed = cmd.try_get_matches_from(argv).and_then(|m| Cli::from_arg_matches(&m));
    match parsed {
        Ok(cli) => Ok((cli, origins)),
        Err(e) => Err((Failure::Clap(e), origins)),
    }
}

/// The flags the environment set, as (`--flag`, `$VAR`).
fn from_env(root: &Command, pre: &ArgMatches, sub: &Command, sub_m: &ArgMatches) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (cmd, m) in [(root, pre), (sub, sub_m)] {
        for a in cmd.get_arguments() {
            if let (Some(long), Some(var)) = (a.get_long(), a.get_env()) {
                if m.value_source(a.get_id().as_str()) == Some(ValueSource::EnvVariable) {
                    out.push((format!("--{long}"), format!("${}", var.to_string_lossy())));
                }
            }
        }
    }
    out
}

/// Where the subcommand's name is in `argv` (after any global flags).
fn subcommand_index(argv: &[OsString], root: &Command) -> Option<usize> {
    let mut i = 1;
    while i < argv.len() {
        let s = argv[i].to_str()?;
        if s == "--" {
            return None;
        }
        if let Some(flag) = s.strip_prefix("--") {
            let takes_value =
                !flag.contains('=') && root.get_arguments().any(|a| a.get_long() == Some(flag) && a.get_action().takes_values());
            i += if takes_value { 2 } else { 1 };
        } else if s.starts_with('-') {
            i += 1;
        } else {
            return Some(i);
        }
    }
    None
}

/// Reads `file` and returns, for each key the command line and the
/// environment left unset, (`--flag`, key, argument) for every argument it
/// becomes (none for `flag = false`, several for an array).
fn file_args(
    file: &Path,
    root: &Command,
    pre: &ArgMatches,
    name: &str,
    sub_m: &ArgMatches,
) -> Result<Vec<(String, String, OsString)>, String> {
    let sub = root.find_subcommand(name).expect("a known subcommand");
    let table = load(file)?;
    let mut out = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let at = format!("key {key:?} in config file {}", file.display());
        if seen.contains(&long) {
            return Err(format!("{at}: {long:?} is set twice (kebab-case and snake_case name the same key)"));
        }
        seen.push(long.clone());
        let Some((arg, m)) =
            find_flag(sub, sub_m, &long).or_else(|| find_flag(root, pre, &long).filter(|(a, _)| a.is_global_set()))
        else {
            if name == "status" && ["kv", "wasm"].iter().any(|n| root.find_subcommand(n).and_then(|c| flag(c, &long)).is_some()) {
                continue; // a node's setting: one file serves the node and `status --config`
            }
            return Err(unknown_key(&at, &long, name, sub, root));
        };
        let values = values_of(&at, arg, value)?;
        for v in &values {
            check_value(arg, v).map_err(|why| format!("{at}: {why}"))?;
        }
        if matches!(m.value_source(arg.get_id().as_str()), Some(ValueSource::CommandLine | ValueSource::EnvVariable)) {
            continue; // the command line and the environment win
        }
        let flag = format!("--{long}");
        for v in values {
            let a = if matches!(arg.get_action(), ArgAction::SetTrue) { flag.clone() } else { format!("{flag}={v}") };
            out.push((flag.clone(), key.clone(), OsString::from(a)));
        }
    }
    Ok(out)
}

/// Reads and parses the file: top-level keys only.
pub fn load(file: &Path) -> Result<toml::Table, String> {
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("cannot read config file {} (--config): {e}", file.display()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        format!("config file {} is not valid TOML: {}", file.display(), e.to_string().trim_end())
    })?;
    Ok(table)
}

/// The flag `--long` of `cmd`, if it can come from a file.
fn flag<'a>(cmd: &'a Command, long: &str) -> Option<&'a Arg> {
    cmd.get_arguments().find(|a| {
        a.get_long() == Some(long) && long != "config" && !matches!(a.get_action(), ArgAction::Help | ArgAction::Version)
    })
}

fn find_flag<'a>(cmd: &'a Command, m: &'a ArgMatches, long: &str) -> Option<(&'a Arg, &'a ArgMatches)> {
    flag(cmd, long).map(|a| (a, m))
}

fn unknown_key(at: &str, long: &str, name: &str, sub: &Command, root: &Command) -> String {
    if long == "config" {
        return format!("{at}: a config file cannot name another config file");
    }
    if sub.get_positionals().any(|p| p.get_id().as_str() == long) {
        return format!("{at}: {long} is an argument without a flag: give it on the command line");
    }
    let known: Vec<&str> = sub
        .get_arguments()
        .chain(root.get_arguments().filter(|a| a.is_global_set()))
        .filter_map(|a| a.get_long())
        .filter(|l| flag(sub, l).or_else(|| flag(root, l)).is_some())
        .collect();
    let near = known.iter().filter(|k| edit_distance(k, long) <= 2).min_by_key(|k| edit_distance(k, long));
    let hint = match near {
        Some(k) => format!("; did you mean {k:?}?"),
        None => String::new(),
    };
    format!("{at}: unknown key: `understudy {name}` has no flag --{long}{hint} (the keys are the long flags of `understudy {name} --help`)")
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The argument values a TOML value stands for.
fn values_of(at: &str, arg: &Arg, v: &toml::Value) -> Result<Vec<String>, String> {
    use toml::Value as V;
    match (arg.get_action(), v) {
        (ArgAction::SetTrue, V::Boolean(b)) => Ok(if *b { vec![String::new()] } else { vec![] }),
        (ArgAction::SetTrue, V::String(s)) => Err(format!("{at}: expected true or false (unquoted), not {s:?}")),
        (ArgAction::SetTrue, other) => Err(format!("{at}: expected true or false, not {}", other.type_str())),
        (ArgAction::Append, V::Array(items)) => items.iter().map(|i| scalar(at, i)).collect(),
        (_, V::Array(_)) => Err(format!("{at}: expected a single value, not a list (--{} is not repeatable)", long_of(arg))),
        (_, other) => Ok(vec![scalar(at, other)?]),
    }
}

fn long_of(arg: &Arg) -> &str {
    arg.get_long().unwrap_or_default()
}

fn scalar(at: &str, v: &toml::Value) -> Result<String, String> {
    use toml::Value as V;
    match v {
        V::String(s) => Ok(s.clone()),
        V::Integer(i) => Ok(i.to_string()),
        V::Float(f) => Ok(f.to_string()),
        V::Boolean(b) => Ok(b.to_string()),
        V::Datetime(d) => Ok(d.to_string()),
        V::Array(_) => Err(format!("{at}: expected a value, not a list inside a list")),
        V::Table(_) => Err(format!("{at}: expected a value, not a table (keys are top-level: `key = value`)")),
    }
}

/// Runs `arg`'s own parser over `v`, so that a bad value in the file is
/// reported with the file's name instead of as a command-line flag.
fn check_value(arg: &Arg, v: &str) -> Result<(), String> {
    if matches!(arg.get_action(), ArgAction::SetTrue) {
        return Ok(());
    }
    let probe = Arg::new("v").long("v").action(ArgAction::Set).value_parser(arg.get_value_parser().clone());
    let r = Command::new("understudy").arg(probe).try_get_matches_from([OsString::from("understudy"), format!("--v={v}").into()]);
    let Err(e) = r else { return Ok(()) };
    let (shown, flag) = (format!("{v:?}"), format!("--{}", long_of(arg)));
    let why = match e.kind() {
        ErrorKind::InvalidValue => match e.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(ok)) => format!("invalid value {shown} for {flag}: expected one of {}", ok.join(", ")),
            _ if v.is_empty() => format!("{flag} needs a value, not an empty string"),
            _ => format!("invalid value {shown} for {flag}"),
        },
        ErrorKind::ValueValidation => match std::error::Error::source(&e) {
            Some(s) if s.downcast_ref::<std::num::ParseIntError>().is_some() => {
                format!("invalid value {shown} for {flag}: expected a whole number ≥ 0 ({s})")
            }
            Some(s) => format!("invalid value {shown} for {flag}: {s}"),
            None => format!("invalid value {shown} for {flag}"),
        },
        _ => {
            let first = e.to_string().lines().next().unwrap_or_default().trim_start_matches("error: ").to_string();
            format!("invalid value {shown} for {flag}: {first}")
        }
    };
    Err(why)
}

/// The exit code for a command line that does not parse: 2, as clap's own,
/// except for `status`, whose 2 means "down": there it is 3 ("could not
/// read the status").
pub fn usage_exit_code(argv: &[OsString]) -> u8 {
    match subcommand_of(argv) {
        Some(s) if s == "status" => crate::status::exit::UNKNOWN,
        _ => 2,
    }
}

/// The subcommand `argv` names, if it can be found.
pub fn subcommand_of(argv: &[OsString]) -> Option<String> {
    subcommand_index(argv, &command()).and_then(|i| argv[i].to_str()).map(str::to_string)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
