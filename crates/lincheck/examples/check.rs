//! Checks a saved history (the text format of `History`, as
//! `tests/linearizability.rs` saves a failing run's) and prints the verdict.
//!
//! ```sh
//! cargo run --release -p understudy-lincheck --example check -- /tmp/understudy-lin-seed1-run0.history
//! ```

use std::process::ExitCode;

use understudy_lincheck::{check, History};

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: check HISTORY-FILE");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    let history: History = match text.parse() {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(2);
        }
    };
    match check(&history) {
        Ok(stats) => {
            println!("{stats}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{e}");
            ExitCode::FAILURE
        }
    }
}
