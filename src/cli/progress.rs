//! One place that decides how long work is shown: indicatif bars on stderr, hidden with `--quiet` or when
//! stderr is not a terminal (so logs of batch jobs stay readable).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    quiet: bool,
    /// Whether `say` prints.
    chatty: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress { quiet, chatty: !quiet }
    }

    /// Progress bars but no summary lines: for steps inside a longer command that prints its own summary.
    pub fn quieter(&self) -> Self {
        Progress { quiet: self.quiet, chatty: false }
    }

    pub fn quiet(&self) -> bool {
        self.quiet
    }

    /// A bar over `len` items with rate and ETA.
    pub fn bar(&self, len: u64, what: &str) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(len), self.target());
        bar.set_style(
            ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        bar
    }

    /// Prints a line of user output on stderr unless quiet.
    pub fn say(&self, line: impl AsRef<str>) {
        if self.chatty {
            // A closed or full stderr must not turn finished work into a panic.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "{}", line.as_ref());
        }
    }

    fn target(&self) -> ProgressDrawTarget {
        if self.quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        }
    }
}
