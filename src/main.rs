//! `understudy`: keeps a running program alive when the machine under it
//! dies. See README.md for the commands; `understudy --help` for flags.

mod bench;
mod cli;
mod demo;
mod logger;
mod wasm_cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // A panic is a broken invariant: fail-stop the whole process (a replica
    // that limps on with one task dead is worse than a dead replica).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::exit(101);
    }));
    let args = cli::Cli::parse();
    if let Err(e) = logger::init(args.log_level.as_deref()) {
        eprintln!("understudy: {e}");
        return ExitCode::from(2);
    }
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("understudy: error: {e:#}");
            ExitCode::from(1)
        }
    }
}
