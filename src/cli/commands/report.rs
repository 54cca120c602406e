//! `huescan report`: the HTML report of a run folder.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::cli::{existing, Progress};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run folder (holding analysis/<set>/ and, when present, stimuli/<set>/ and steering/<set>/).
    pub run: PathBuf,
    /// Where to write index.html and figures/ [default: RUN/report].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: &ReportArgs, progress: &Progress) -> anyhow::Result<ExitCode> {
    let run = existing(&args.run, "run folder")?;
    let out = args.out.clone().unwrap_or_else(|| run.join("report"));
    let _lock = crate::fsx::DirLock::acquire(&out, "report")?;
    let report = crate::report::build(&run, &out)?;
    progress.say(format!(
        "report of {} set(s) ({}) with {} figures: {}",
        report.sets.len(),
        report.sets.join(", "),
        report.figures.len(),
        report.index.display()
    ));
    Ok(ExitCode::SUCCESS)
}
