//! The `halyard` binary: parse arguments, run the command, map errors to an
//! exit status. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    halyard::allocator::limit_arenas();
    let cli = halyard::cli::Cli::parse();
    match halyard::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // Each cause once: see `describe`.
            eprintln!("error: {}", halyard::cli::describe(err.chain()));
            ExitCode::from(1)
        }
    }
}
