//! One place that decides how long work is shown on stderr: an indicatif bar on a terminal; with stderr not a
//! terminal (a log file, a pipe, a Slurm job), one plain line every few seconds (`extracting: 120/360 (33 %),
//! 12.5/s, eta 19s`) and one when the work is done (`extracting: 360/360 done in 29s, 12.4/s`), so batch logs
//! show progress without control codes; nothing with `--quiet`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

/// A progress bar (all of indicatif's `ProgressBar` through `Deref`) whose `finish_and_clear` also writes the
/// closing plain line off a terminal.
pub struct Bar {
    inner: ProgressBar,
    plain: bool,
}

impl std::ops::Deref for Bar {
    type Target = ProgressBar;
    fn deref(&self) -> &ProgressBar {
        &self.inner
    }
}

impl Bar {
    pub fn finish_and_clear(&self) {
        self.inner.finish_and_clear();
        let (pos, len) = (self.inner.position(), self.inner.length().unwrap_or(0));
        if self.plain && len > 0 {
            let secs = self.inner.elapsed().as_secs_f64();
            let state = if pos >= len { "done" } else { "stopped" };
            let rate = if secs > 0.0 { format!(", {:.1}/s", pos as f64 / secs) } else { String::new() };
            eprintln!("{}: {pos}/{len} {state} in {secs:.1}s{rate}", self.inner.message());
        }
    }
}

/// Seconds between plain progress lines.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    quiet: bool,
    /// Whether `say` prints.
    chatty: bool,
    terminal: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress { quiet, chatty: !quiet, terminal: std::io::stderr().is_terminal() }
    }

    /// Progress bars but no summary lines: for steps inside a longer command that prints its own summary.
    pub fn quieter(&self) -> Self {
        Progress { chatty: false, ..*self }
    }

    /// A bar over `len` items with rate and ETA.
    pub fn bar(&self, len: u64, what: &str) -> Bar {
        let (target, template) = if self.quiet {
            (ProgressDrawTarget::hidden(), "")
        } else if self.terminal {
            (ProgressDrawTarget::stderr(), "{msg:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
        } else {
            let lines = PlainLines { last: Mutex::new(None), line: Mutex::new(String::new()) };
            (
                ProgressDrawTarget::term_like_with_hz(Box::new(lines), 1),
                "{msg}: {pos}/{len} ({percent} %), {per_sec}, eta {eta}",
            )
        };
        let bar = ProgressBar::with_draw_target(Some(len), target);
        bar.set_style(ProgressStyle::with_template(template).expect("static template").progress_chars("=> "));
        bar.set_message(what.to_string());
        Bar { inner: bar, plain: !self.quiet && !self.terminal }
    }

    /// Prints a line of user output on stderr unless quiet.
    pub fn say(&self, line: impl AsRef<str>) {
        if self.chatty {
            // A closed or full stderr must not turn finished work into a panic.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "{}", line.as_ref());
        }
    }
}

/// An indicatif "terminal" that turns redraws into plain lines: it keeps the text of each redraw and prints
/// it when [`PLAIN_INTERVAL`] has passed since the last line (the closing line is [`Bar::finish_and_clear`]'s).
#[derive(Debug)]
struct PlainLines {
    last: Mutex<Option<(Instant, String)>>,
    line: Mutex<String>,
}

impl PlainLines {
    fn emit(&self) {
        let text = std::mem::take(&mut *self.line.lock().unwrap_or_else(|e| e.into_inner()));
        let text = text.trim();
        // Before the first `set_length` the count reads `0/0`: nothing to report yet.
        if text.is_empty() || count(text).is_none_or(|(_, len)| len == 0) {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let due = last.as_ref().is_none_or(|(t, _)| t.elapsed() >= PLAIN_INTERVAL);
        let repeat = last.as_ref().is_some_and(|(_, l)| l == text);
        if due && !repeat && !is_complete(text) {
            eprintln!("{text}");
            *last = Some((Instant::now(), text.to_string()));
        }
    }
}

/// The first `pos/len` of a line.
fn count(line: &str) -> Option<(u64, u64)> {
    line.split_whitespace().find_map(|w| {
        let (a, b) = w.split_once('/')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    })
}

/// Whether a line's `pos/len` shows the work done (`len > 0`).
fn is_complete(line: &str) -> bool {
    count(line).is_some_and(|(a, b)| b > 0 && a == b)
}

impl TermLike for PlainLines {
    fn width(&self) -> u16 {
        200
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.line.lock().unwrap_or_else(|e| e.into_inner()).push_str(s);
        self.emit();
        Ok(())
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.line.lock().unwrap_or_else(|e| e.into_inner()).push_str(s);
        Ok(())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        self.emit();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_complete_when_its_count_is() {
        assert!(is_complete("rendering: 60/60 (100 %), 12/s, eta 0s"));
        assert!(!is_complete("rendering: 6/60 (10 %), 12/s, eta 4s"));
        assert!(!is_complete("rendering: 0/0 (0 %)"));
    }
}
