//! Command-line interface: what was typed (clap structs) and the wiring to the library. No maths here.

// Doc comments here are clap's `--help` text first, where `<out>/x` placeholders read right; rustdoc would take
// them for HTML tags.
#![allow(rustdoc::invalid_html_tags)]

/// `println!` that returns the write error instead of panicking (a closed pipe, `/dev/full`); expands to a `?`,
/// so use it only in functions returning `anyhow::Result`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::print_line(format_args!($($arg)*))?
    };
}

pub mod commands;
pub mod output;
mod progress;
pub mod values;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

pub use progress::Progress;

/// Where, and in what shape, does a vision-language model hold colour hue inside, and is that shape causal?
///
/// huescan renders hue stimuli, runs Qwen2.5-VL (or a known-answer colour autoencoder) live, caches
/// per-layer hidden states, discovers the hue manifold per layer with Supervised MDS, and steers inside the
/// model.
#[derive(Debug, Parser)]
#[command(name = "huescan", version = VERSION, about, long_about = None, propagate_version = true, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// `huescan --version`: the package version, the commit it was built from and the compiled-in backends.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("HUESCAN_GIT_COMMIT"),
    "; features: ",
    env!("HUESCAN_FEATURES"),
    ")"
);

/// Shown under `huescan --help`; README's "Exit codes" says the same.
const EXIT_CODES: &str = "Exit codes: 0 success; 1 the command ran and failed (bad input file, model error, a \
store that fails verification); 2 the command line is wrong (unknown flag, missing or malformed argument).";

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// No progress bars or summaries on stderr (errors are still printed).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Lift the caps on generated tokens, bootstrap/permutation counts and stimulus-set sizes.
    #[arg(long, global = true)]
    pub allow_large: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scan a checkpoint in one command: render the sets, extract every layer, analyse, write the report.
    /// Resumable: re-run the same command after a kill.
    Scan(commands::scan::ScanArgs),
    /// Ask a Qwen2.5-VL model a question about one image (greedy answer).
    Ask(commands::ask::AskArgs),
    /// The whole pipeline offline in under a minute on the colour autoencoder (a model whose hue wheel is
    /// known to exist): render, train, extract, analyse.
    Demo(commands::demo::DemoArgs),
    /// Stimulus sets: render them, list the bundled ones.
    #[command(subcommand)]
    Stimuli(StimuliCommand),
    /// Run a model over a rendered stimulus set and store per-layer hidden states.
    Extract(commands::extract::ExtractArgs),
    /// Discover the hue manifold in stored activations (SMDS layer scan, discovery, held-out test,
    /// arbitration, projection); no model needed.
    Analyze(commands::analyze::AnalyzeArgs),
    /// Write the HTML report (figures as SVG + PNG, tables) of a run folder; works offline.
    Report(commands::report::ReportArgs),
    /// Activation stores: inspect and verify.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Merge the shard stores of a sharded run (`--shard i/n`) into one store.
    Merge(commands::store::MergeArgs),
    /// Steer inside the model along hue directions from a store; write sweep tables and steering vectors.
    Steer(commands::steer::SteerArgs),
    /// Print a shell completion script: `huescan completions bash > ~/.local/share/bash-completion/completions/huescan`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum StimuliCommand {
    /// Render a stimulus set (a spec file or a bundled name) to PNGs + stimuli.json.
    Render(commands::stimuli::RenderArgs),
    /// List the bundled stimulus sets.
    List,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Print what a store holds and verify every layer (checksums, shapes, NaN/Inf).
    Inspect(commands::store::InspectArgs),
    /// Export a store as NumPy .npz (X_<layer> per layer, hue_deg, sample_id), or its stimulus set as a
    /// Hugging Face `datasets` image folder (images + metadata.jsonl).
    Export(commands::store::ExportArgs),
}

/// Sets up `tracing` on stderr: warnings by default, more with -v, nothing but errors with --quiet; plain
/// sentences, coloured only for a terminal ([`output`]).
pub fn init_logging(global: &GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("huescan={level}")));
    let colour = output::use_colour(&crate::env::ProcessEnv, output::stderr_is_terminal());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .event_format(output::Sentence { colour })
        .try_init();
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let progress = Progress::new(cli.global.quiet);
    values::set_allow_large(cli.global.allow_large);
    match cli.command {
        Command::Stimuli(StimuliCommand::Render(args)) => commands::stimuli::render(&args, &progress),
        Command::Stimuli(StimuliCommand::List) => commands::stimuli::list(),
        Command::Extract(args) => commands::extract::run(&args, &progress),
        Command::Analyze(args) => commands::analyze::run(&args, &progress),
        Command::Demo(args) => commands::demo::run(&args, &progress),
        Command::Ask(args) => commands::ask::run(&args, &progress),
        Command::Scan(args) => commands::scan::run(&args, &progress),
        Command::Report(args) => commands::report::run(&args, &progress),
        Command::Store(StoreCommand::Inspect(args)) => commands::store::inspect(&args),
        Command::Store(StoreCommand::Export(args)) => commands::store::export(&args, &progress),
        Command::Merge(args) => commands::store::merge(&args, &progress),
        Command::Steer(args) => commands::steer::run(&args, &progress),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            // Into a buffer first: clap_complete panics on a closed pipe, main turns the error into exit 0.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "huescan", &mut script);
            std::io::stdout().write_all(&script)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes one line to stdout and flushes it. A closed pipe comes back as `BrokenPipe`, which `main` turns into
/// a quiet exit 0 (`huescan stimuli list | head -1`); any other failure (a full disk) is an error that says
/// it was standard output that could not be written.
pub(crate) fn print_line(line: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| anyhow::Error::new(crate::fsx::Error::io("cannot write", "<standard output>", e)))
}

/// The defaults of a flattened settings struct, as clap gives them for an empty command line: the `Default` of
/// every settings struct, so a default is written once (in its `#[arg(default_value_t = ...)]`) and `scan`
/// composes the same settings the single commands use.
pub(crate) fn flag_defaults<T: Args + clap::FromArgMatches>() -> T {
    let cmd = T::augment_args(clap::Command::new("defaults"));
    let matches = cmd.try_get_matches_from(["defaults"]).expect("every flag of a settings struct has a default");
    T::from_arg_matches(&matches).expect("the defaults parse")
}

/// Resolves a path argument that must exist, with a sentence naming it if not.
pub(crate) fn existing(path: &Path, what: &str) -> anyhow::Result<PathBuf> {
    if path.exists() {
        Ok(path.to_path_buf())
    } else {
        anyhow::bail!("{what} `{}` does not exist", path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::commands::analyze::AnalyzeSettings;
    use super::commands::scan::PipelineArgs;
    use super::commands::steer::SteerSettings;
    use crate::settings;

    // `scan` builds the single commands' settings from these defaults, so they must be the flags' own.
    #[test]
    fn settings_structs_default_to_their_flags_defaults() {
        let a = AnalyzeSettings::default();
        assert_eq!((a.permutations, a.bootstrap, a.seed), (settings::PERMUTATIONS, settings::BOOTSTRAP, 0));
        assert_eq!((a.layers.as_str(), a.w_test), ("all", settings::W_TEST));
        assert_eq!(a.shapes, crate::manifold::Shape::NOTEBOOK.to_vec(), "{}", settings::SHAPES);
        assert_eq!((a.mode, a.layer), (crate::manifold::LabelMode::Periodic, None));
        let s = SteerSettings::default();
        assert_eq!(s.alphas.as_str(), settings::ALPHAS_SPEC);
        assert_eq!(super::commands::steer::Directions::kinds(&s.direction), crate::steer::DirectionKind::ALL.to_vec());
        assert_eq!((s.normalise, s.lift), (crate::steer::Normalisation::default(), crate::steer::Lift::default()));
        assert_eq!((s.smds_alpha, s.tolerance, s.max_new_tokens), (settings::SMDS_ALPHA, settings::TOLERANCE_DEG, 4));
        let p = PipelineArgs::default();
        assert_eq!(
            (p.pool, p.layers.as_str(), p.runtime.device.as_str()),
            (crate::model::Pooling::default(), "residual", "cpu")
        );
        assert_eq!((p.lift, p.runtime.dtype), (crate::steer::Lift::default(), None));
        assert_eq!(
            (p.permutations, p.max_new_tokens, p.batch_size),
            (settings::PERMUTATIONS, settings::MAX_NEW_TOKENS, None)
        );
    }
}
