//! How huescan writes to stderr: colour only for a terminal (`NO_COLOR` and `CLICOLOR_FORCE` respected, as
//! <https://no-color.org> and the `CLICOLOR` convention say), and log events as plain sentences
//! (`warning: …`), with no Rust module paths, so a log file or a Slurm output reads like the terminal.

use std::fmt;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::env::Env;

/// Whether to colour a stream: `NO_COLOR` (non-empty) turns colour off, `CLICOLOR_FORCE` (non-empty, not `0`)
/// turns it on, otherwise colour iff the stream is a terminal.
pub fn use_colour(env: &dyn Env, is_terminal: bool) -> bool {
    if env.var(crate::env::NO_COLOR).is_some_and(|v| !v.is_empty()) {
        false
    } else if env.var(crate::env::CLICOLOR_FORCE).is_some_and(|v| !v.is_empty() && v != "0") {
        true
    } else {
        is_terminal
    }
}

/// Whether stderr is a terminal.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// `warning: <message> (<field> <value>, …)`; `-v` adds the module to debug and trace lines only.
pub struct Sentence {
    pub colour: bool,
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.rest.push(format!("{} {value:?}", field.name()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.rest.push(format!("{} {value}", field.name()));
        }
    }
}

impl<S, N> FormatEvent<S, N> for Sentence
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let level = *event.metadata().level();
        let (word, code) = match level {
            Level::ERROR => ("error", "31"),
            Level::WARN => ("warning", "33"),
            Level::INFO => ("note", "36"),
            Level::DEBUG => ("debug", "2"),
            Level::TRACE => ("trace", "2"),
        };
        let mut f = Fields::default();
        event.record(&mut f);
        if self.colour {
            write!(w, "\x1b[{code}m{word}:\x1b[0m {}", f.message)?;
        } else {
            write!(w, "{word}: {}", f.message)?;
        }
        if !f.rest.is_empty() {
            write!(w, " ({})", f.rest.join(", "))?;
        }
        if level >= Level::DEBUG {
            write!(w, " [{}]", event.metadata().target())?;
        }
        writeln!(w)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn colour_follows_the_terminal_unless_no_color_or_clicolor_force_say_otherwise() {
        let env = |pairs: &[(&'static str, &'static str)]| pairs.iter().copied().collect::<HashMap<_, _>>();
        assert!(use_colour(&env(&[]), true));
        assert!(!use_colour(&env(&[]), false));
        assert!(!use_colour(&env(&[("NO_COLOR", "1")]), true));
        assert!(use_colour(&env(&[("NO_COLOR", "")]), true), "an empty NO_COLOR is unset");
        assert!(use_colour(&env(&[("CLICOLOR_FORCE", "1")]), false));
        assert!(!use_colour(&env(&[("CLICOLOR_FORCE", "0")]), false));
        assert!(!use_colour(&env(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]), true));
    }
}
