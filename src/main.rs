//! The `huescan` binary: parse, run, print the error chain once, map to an exit code: 2 for a command line
//! clap rejects (clap exits itself), 1 for a command that ran and failed.
//!
//! The command line ([`cli`]) belongs to the binary, not to the library: it only wires typed settings to the
//! library's stages, and nothing in the library may depend on it.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

mod cli;

// The library's modules under the names `cli` has always used (`crate::model`, `crate::steer`): the command
// line reads like part of the crate while depending on the library only through its public API.
use huescan::{env, extract, fsx, manifold, model, nan_json, report, runinfo, settings, steer, stimuli, store};

fn main() -> ExitCode {
    env::limit_candle_spinning();
    model::nn::kernels::keep_freed_buffers();
    let cli = cli::Cli::parse();
    cli::init_logging(&cli.global);
    match cli::run(cli) {
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
