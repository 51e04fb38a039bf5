//! `understudy`: keeps a running program alive when the machine under it
//! dies. See README.md for the commands; `understudy --help` for flags.

#![forbid(unsafe_code)]

mod cli;
mod config;
mod demo;
mod flags;
mod forget;
mod logger;
mod sentinel;
mod sentinel_cmd;
mod sentinel_reply;
mod sentinel_watch;
mod sim;
mod status;
mod switchover;
mod timeline;
mod wasm_cli;

use std::process::ExitCode;

use config::Failure;

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let sub = config::subcommand_of(&argv);
    let usage_code = config::usage_exit_code(&argv);
    let (args, origins) = match config::parse_from(argv) {
        Ok(parsed) => parsed,
        Err((Failure::Clap(e), _)) if !e.use_stderr() => e.exit(), // --help, --version
        Err((Failure::Clap(e), origins)) => {
            let text = e.render().to_string();
            eprint!("{text}{}", origins.notes(&text));
            if e.kind() == clap::error::ErrorKind::InvalidSubcommand && sub.as_deref() == Some("bench") {
                eprintln!(
                    "understudy: note: the benchmark is its own binary now: cargo run --release -p understudy-bench -- \
                     [--only kv,…] [--quick] (see README.md, \"Measuring it\")"
                );
            }
            let configurable = sub.as_deref().is_some_and(|s| config::CONFIGURABLE.contains(&s));
            if e.kind() == clap::error::ErrorKind::MissingRequiredArgument && configurable {
                eprintln!(
                    "understudy: note: a flag can also be set in the environment, UNDERSTUDY_<FLAG> (--repl-listen: \
                     UNDERSTUDY_REPL_LISTEN), or as a key of the --config FILE (repl-listen = \"…\")"
                );
            }
            return ExitCode::from(usage_code);
        }
        Err((Failure::Config(msg), _)) => {
            eprintln!("understudy: error: {msg}");
            return ExitCode::from(usage_code);
        }
    };
    if let Err(e) = logger::init(args.log_level.as_deref(), args.log_format, args.node_name()) {
        eprint!("understudy: {e}\n{}", origins.notes(&e));
        return ExitCode::from(usage_code);
    }
    if args.fail_stop() {
        fail_stop_on_panic();
    }
    if let (Some(f), Some(node)) = (args.config_file(), args.node_name()) {
        log::info!("{node} takes flags from the config file {}", f.display());
    }
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            let text = format!("{e:#}");
            eprint!("understudy: error: {text}\n{}", origins.notes(&text));
            ExitCode::from(1)
        }
    }
}

/// In a replica or the arbiter a panic is a broken invariant: fail-stop the
/// whole process (one that limps on with one task dead is worse than a dead
/// one), with the exit status of a panic, 101.
fn fail_stop_on_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::exit(101);
    }));
}
