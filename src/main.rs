//! The `huescan` binary: parse, run, print the error chain once, map to an exit code: 2 for a command line
//! clap rejects (clap exits itself), 1 for a command that ran and failed.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = huescan::cli::Cli::parse();
    huescan::cli::init_logging(&cli.global);
    match huescan::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // A closed pipe (`huescan store inspect x | head`) is not an error.
            if err
                .chain()
                .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
            {
                return ExitCode::SUCCESS;
            }
            // stderr may itself be closed or full; there is nobody left to tell, so the exit code says it.
            let _ = writeln!(std::io::stderr(), "error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
